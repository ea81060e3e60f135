"""``graftkit report DIR``: one self-contained HTML file from a model directory's ``manifest.json`` and
``evaluation.json``. Charts are inline SVG, styles inline, no script and no external resource, so the file
opens anywhere (and offline). The report renders saved results only; it computes nothing. Every string that
comes from the user's data or files (labels, texts, paths, sources) is HTML-escaped.

This module holds the sections every task has (summary, warnings, learning curve, transfer gain, forgetting,
leakage, cross-validation, manifest), reading metric names from the record; each task's own sections live in
``sections_<task>.py`` and register themselves with ``common.task_section``; ``sections_domain.py`` (the domain
shift) registers with ``common.every_task_section``."""

from __future__ import annotations

import json
from pathlib import Path

from graftkit.atomic import write_text_atomic
from graftkit.errors import ArtifactError, GraftkitError
from graftkit.report import (  # noqa: F401
    sections_classification,
    sections_domain,
    sections_fusion,
    sections_multilabel,
    sections_regression,
    sections_tokens,
    sections_transcripts,
)
from graftkit.report.common import (
    card,
    metric_name,
    metrics_of,
    model_section_for,
    num,
    signed,
    skipped,
    table,
    task_sections,
)
from graftkit.report.svg import bars_svg, esc, learning_curve_svg
from graftkit.tasks import task_from_dict

REPORT = "report.html"
REPORT_MARK = "Written by graftkit from manifest.json and evaluation.json"  # how `report` knows its own file
# The learning curve's x: its column header, and its unit (the extrapolation header and the axis label).
X_NAMES = {"per_class": ("per class", "labelled examples per class"), "rows": ("train rows", "training rows")}
PERCENT = ("accuracy", "subset_accuracy")  # target values shown as percentages

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
.sub{color:#5b6472;font-size:13px;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:12px;color:#5b6472}.card .v{font-size:22px;font-weight:600}.card .d{font-size:12px;color:#5b6472}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.panel{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px}
.warn{background:#fff4e5;border:1px solid #f0b35b;border-radius:8px;padding:8px 12px;margin:8px 0;font-size:14px}
.bad{background:#fdecec;border-color:#e08080}
.note{color:#5b6472;font-size:12px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{max-height:520px;overflow:auto;display:inline-block}
pre{background:#fff;border:1px solid #dde1e7;padding:10px;font-size:12px;overflow:auto;max-height:480px}
details summary{cursor:pointer;color:#1f5fa8}
"""


def _task(manifest: dict, record: dict | None):
    """The record's task (older records have none: the manifest's), or None for a kind this version lacks."""
    try:
        return task_from_dict((record or {}).get("task") or manifest["task"])
    except GraftkitError:
        return None


def _headline(task, metrics: dict) -> list[str]:
    if task is not None:
        return [k for k in task.headline if k in metrics]
    return [k for k, v in metrics.items() if k != "n" and isinstance(v, (int, float)) and not isinstance(v, bool)]


def _primary(task, metrics: dict) -> str:
    if task is not None:
        return task.primary_metric
    return next(iter(_headline(task, metrics)), "")


def _improves(task, key: str) -> bool:
    return task is None or task.metric_improves(key)


def _gain_card(what: str, gain: dict, metric: str) -> str:
    return card(f"transfer gain vs {what}", signed(gain["gain"]),
                f"{esc(metric_name(gain.get('metric', metric)))}, 95% CI {signed(gain['ci95'][0], 3)} to "
                f"{signed(gain['ci95'][1], 3)}")


# -- sections -----------------------------------------------------------------------------------------------


def _summary(manifest: dict, record: dict | None, task) -> str:
    cards = []
    metrics, source = metrics_of(record), ""
    if not metrics:
        metrics, source = manifest.get("metrics", {}).get("test") or {}, " (manifest)"
    for i, key in enumerate(_headline(task, metrics)):
        if i == 0:
            cards.append(card(f"test {metric_name(key)}{source}", num(metrics[key]), f"n = {esc(metrics.get('n'))}"))
        else:
            cards.append(card(metric_name(key), num(metrics[key])))
    cards.append(task_sections(task, "cards", record))
    primary = _primary(task, metrics)
    for section, what in (("baseline", "baseline"), ("scratch", "scratch")):
        gain = ((record or {}).get(section) or {}).get("transfer_gain")
        if gain:
            cards.append(_gain_card(what, gain, primary))
    forgetting = (record or {}).get("forgetting") or {}
    if "cka" in forgetting:
        cards.append(card("feature CKA vs pretrained", f"{forgetting['cka']:.3f}", "1 = unchanged"))
    leak = (record or {}).get("leakage") or {}
    if "leaked" in leak:
        cards.append(card("leaked test rows", str(leak["leaked"]),
                          f"{100 * leak['share']:.1f}% of {leak['n_test']}" + (" (dropped)" if leak.get("dropped") else "")))
    summary = ((record or {}).get("cv") or {}).get("summary")
    if summary:
        key = primary if primary in summary else next(iter(summary))
        cards.append(card(f"{len(record['cv']['folds'])}-fold CV {metric_name(key)}",
                          f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"))
    return f"<div class='cards'>{''.join(cards)}</div>"


def _warnings(record: dict | None) -> str:
    if record is None:
        return ("<div class='warn'>No evaluation record in this model directory: only the manifest is shown. Write "
                "one with <code>graftkit evaluate DIR TEST --save</code> (or fit with a test split).</div>")
    out = []
    if record.get("stale"):
        out.append("<div class='warn bad'>This evaluation record was written for an earlier fit of this model "
                   "directory (the head changed since); re-run <code>graftkit evaluate DIR TEST --save</code>.</div>")
    for section in ("baseline", "scratch"):
        gain = (record.get(section) or {}).get("transfer_gain") or {}
        if gain.get("warning"):
            title = ("Negative transfer" if gain["gain"] < 0 else "No transfer gain" if gain["gain"] == 0
                     else "Transfer gain")
            css = "warn bad" if gain.get("negative_transfer") else "warn"
            out.append(f"<div class='{css}'><b>{title}:</b> {esc(gain['warning'])}</div>")
    leak = record.get("leakage") or {}
    if leak.get("warning"):
        out.append(f"<div class='warn'><b>Leakage:</b> {esc(leak['warning'])}</div>")
    status = (metrics_of(record).get("calibration") or {}).get("status", "")
    if status.startswith("skipped"):
        out.append(f"<div class='warn'><b>Calibration:</b> {esc(status)}</div>")
    return "".join(out)


def _target_value(metric: str, value) -> str:
    if value is None:
        return "–"
    return f"{value:.0%}" if metric in PERCENT else f"{value:g}"


def _learning_curve(record: dict | None) -> str:
    section = (record or {}).get("learning_curve")
    reason = skipped(section)
    if reason:
        return f"<h2 id='learning-curve'>Learning curve</h2><p class='note'>Not measured: {esc(reason)}.</p>"
    points, extrapolation = section["points"], section.get("extrapolation")
    x, metric = section.get("x", "per_class"), section.get("metric", "accuracy")
    column, unit = X_NAMES.get(x, (x, x))
    others = [k for k, v in points[0].items() if isinstance(v, dict) and "mean" in v and k != metric]
    with_rows = x != "rows"  # else the x column already is the training rows
    rows = [["all" if p.get("all") else p[x], *([p["n_train"]] if with_rows else []), num(p[metric]["mean"]),
             num(p[metric]["std"]), *[num(p[k]["mean"]) for k in others], len(p[metric]["values"])] for p in points]
    headers = [column, *(["train rows"] if with_rows else []), metric_name(metric), "± std",
               *[metric_name(k) for k in others], "seeds"]
    shown = table(headers, rows, set(range(1, len(headers))))
    extra = ""
    if extrapolation:
        if extrapolation.get("status") == "fitted":
            target_rows = [[_target_value(metric, t.get(metric)), t[x] if t.get(x) is not None else
                            (f"&gt; {t['at_least']}" if t.get("at_least") else "–"), esc(t["status"])]
                           for t in extrapolation["targets"]]
            extra = (f"<h3>How many labels? (fit a = {extrapolation['a']:.3f}, b = {extrapolation['b']:.3f}, "
                     f"c = {extrapolation['c']:.3f}, rmse {extrapolation['rmse']:.4f})</h3>"
                     + table([f"target {metric_name(metric)}", unit, "status"], target_rows, {1}))
        else:
            extra = f"<p class='note'>{esc(extrapolation.get('status'))}</p>"
    chart = learning_curve_svg(points, extrapolation, x=x, metric=metric, x_label=unit,
                               y_label=f"test {metric_name(metric)}")
    return (f"<h2 id='learning-curve'>Learning curve</h2><div class='row'><div class='panel'>{chart}</div><div>"
            f"{shown}{extra}<p class='note' style='max-width:520px'>{esc(section['head'])}; {section['seeds']} seeds "
            f"per size, {section['n_test']} test rows.</p></div></div>")


def _difference(a, b):
    return None if a is None or b is None else a - b


def _transfer(record: dict | None, task) -> str:
    baseline, scratch = (record or {}).get("baseline"), (record or {}).get("scratch")
    reasons = [r for r in (skipped(baseline), skipped(scratch)) if r]
    if len(reasons) == 2:
        return (f"<h2 id='transfer'>Transfer gain</h2><p class='note'>No baseline: {esc(reasons[0])}. No "
                f"from-scratch run: {esc(reasons[1])}.</p>")
    metrics = record["metrics"]
    metric = next(s["transfer_gain"].get("metric", _primary(task, metrics))
                  for s in (baseline, scratch) if not skipped(s))
    others = [k for k in _headline(task, metrics) if k != metric]
    bars, rows, notes = [], [], []
    for section, what in ((baseline, "classical baseline"), (scratch, "same architecture from scratch")):
        if skipped(section):
            notes.append(f"No {what}: {esc(skipped(section))}.")
            continue
        gain = section["transfer_gain"]
        if not bars:
            bars.append((gain["model_name"], gain["model"]))
        bars.append((section["name"], gain["baseline"]))
        rows.append([esc(f"vs {what}"), num(gain["model"]), num(gain["baseline"]), signed(gain["gain"]),
                     f"{signed(gain['ci95'][0])} to {signed(gain['ci95'][1])}",
                     *[signed(_difference(metrics.get(k), section.get(k))) for k in others]])
    if not skipped(baseline):
        penalty = (baseline.get("penalty") or f"C={baseline['C']:g}").replace("=", " = ")
        notes.insert(0, f"Classical baseline: {esc(baseline['name'])} ({esc(penalty)}, chosen by "
                        f"cross-validation), fitted on the same {baseline['n_train']} training rows, scored on the "
                        f"same {baseline['n_test']} test rows.")
    if not skipped(scratch):
        notes.append(f"From scratch: {esc(scratch['name'])}, the same strategy and settings from random weights "
                     f"({scratch['seconds']:g} s).")
    name = metric_name(metric)
    chart = bars_svg(bars, title=f"Test {name}: pretrained start vs baselines", y_label=name,
                     y_max=1.0 if all(v <= 1.0 for _, v in bars) else None)
    headers = ["gain of the pretrained start", "pretrained", "other", f"{name} gain", "95% paired bootstrap",
               *[f"{metric_name(k)} gain" if _improves(task, k) else f"{metric_name(k)} change (lower is better)"
                 for k in others]]
    shown = table(headers, rows, {1, 2, 3, *range(5, len(headers))})
    return (f"<h2 id='transfer'>Transfer gain</h2><div class='row'><div class='panel'>{chart}</div><div>{shown}"
            f"<p class='note' style='max-width:560px'>{' '.join(notes)}</p></div></div>")


def _forgetting(record: dict | None, task) -> str:
    section = (record or {}).get("forgetting")
    reason = skipped(section)
    if reason:
        return f"<h2 id='forgetting'>Forgetting</h2><p class='note'>Not measured: {esc(reason)}.</p>"
    drift = section["weight_drift"]
    chart = bars_svg([(g["group"], g["relative_change"]) for g in drift][-8:],
                     title="Relative weight change per layer group (top 8)", y_label="||ΔW|| / ||W||")
    rows = [[esc(g["group"]), g["parameters"], num(g["relative_change"])] for g in drift]
    parts = [(f"<p>Linear CKA between the pretrained and the adapted features of {section['probe_rows']} test "
              f"rows: <b>{section['cka']:.4f}</b> (1 = unchanged up to rotation and scale; Kornblith et al. 2019).</p>")]
    reference = section.get("reference")
    if reference:
        # the values keep the accuracy_* names for every task: they are the reference task's primary metric
        name = metric_name(reference.get("metric", "accuracy"))
        parts.append(table(["reference task", f"probe {name}, pretrained", "adapted", "drop"],
                           [[esc(reference["source"]), num(reference["accuracy_before"]),
                             num(reference["accuracy_after"]), signed(-reference["drop"])]], {1, 2, 3}))
    else:
        parts.append("<p class='note'>No reference task given (Python: reference=...; CLI: --reference FILE): what "
                     "fine-tuning cost on other tasks is not measured.</p>")
    if section.get("warning"):
        parts.insert(0, f"<div class='warn bad'><b>Forgetting:</b> {esc(section['warning'])}</div>")
    return (f"<h2 id='forgetting'>Forgetting</h2>{''.join(parts)}<div class='row'><div class='panel'>{chart}</div>"
            f"<div class='scroll'>{table(['layer group', 'parameters', 'relative change'], rows, {1, 2})}</div></div>")


def _leakage(record: dict | None) -> str:
    leak = (record or {}).get("leakage")
    reason = skipped(leak)
    if reason:
        return f"<h2 id='leakage'>Leakage</h2><p class='note'>Not checked: {esc(reason)}.</p>"
    counts = (f"{leak['leaked']} of {leak['n_test']} test rows duplicate one of {leak['n_train']} training rows: "
              f"{leak['exact']} exact, {leak.get('text', 0)} edited copies (text), {leak.get('embedding', 0)} by "
              f"feature cosine; {leak['label_conflicts']} with a different label. Method: {esc(leak['method'])}."
              + (" The flagged rows were dropped before scoring." if leak.get("dropped") else ""))
    rows = [[esc(e["kind"]), num(e["similarity"], 3), esc(e["test_row"]), esc(e["test_input"]), esc(e["test_label"]),
             esc(e["train_row"]), esc(e["train_input"]), esc(e["train_label"])] for e in leak["examples"]]
    shown = table(["kind", "similarity", "test row", "test input", "test label", "train row", "train input",
                   "train label"], rows, {1}, css="leakage") if rows else "<p class='note'>No duplicates found.</p>"
    return (f"<h2 id='leakage'>Leakage</h2><p>{counts}</p>" + (f"<p class='note'>{esc(leak['scope'])}.</p>"
                                                               if leak.get("scope") else "")
            + f"<div class='scroll'>{shown}</div>" + _leakage_columns(leak.get("columns")))


def _leakage_columns(columns: dict | None) -> str:
    """A multi-input record's per-column counts: test rows repeating that column's value of some training row."""
    if not columns:
        return ""
    rows = [[esc(name), esc(c["modality"]), c["duplicated"], f"{100 * c['share']:.1f}%", c["exact"], c["text"],
             c["embedding"], c["blank_test_cells"]] for name, c in columns.items()]
    return ("<h3>Per input column</h3><p class='note'>Test rows whose cell in that column repeats a training row's "
            "(blank cells not counted); one repeated column alone is no leak.</p>"
            + table(["column", "modality", "test rows repeated", "share", "exact", "edited (text)", "feature cosine",
                     "blank test cells"], rows, {2, 3, 4, 5, 6, 7}))


def _cv(record: dict | None) -> str:
    cv = (record or {}).get("cv")
    reason = skipped(cv)
    if reason:
        return f"<h2 id='cv'>Cross-validation</h2><p class='note'>Not run: {esc(reason)}.</p>"
    summary = cv["summary"]
    keys = list(summary)
    rows = [[f["fold"], f["n_train"], f["n_test"], *[num(f.get(k)) for k in keys]] for f in cv["folds"]]
    rows.append(["mean ± std", "", "", *[f"{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in keys]])
    headers = ["fold", "train rows", "test rows", *[metric_name(k) for k in keys]]
    split = cv.get("split") or "stratified"  # records before the task described its folds
    return (f"<h2 id='cv'>Cross-validation</h2><p class='note'>{len(cv['folds'])} folds of the training data "
            f"({esc(split)}), same settings.</p>" + table(headers, rows, set(range(1, len(headers)))))


def _manifest(manifest: dict, task) -> str:
    source = manifest["backbone"]["source"]
    pinned = source.get("revision") or ", ".join(f"{name} sha256 {digest[:16]}…"
                                                  for name, digest in (source.get("files") or {}).items())
    strategy = ", ".join(f"{k}={v}" for k, v in manifest["strategy"].items() if k != "name")
    head = ", ".join(f"{k}={v}" for k, v in manifest["head"].items() if k != "kind")
    data = manifest.get("data", {})
    versions = ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items() if v)
    rows = [["backbone", esc(source.get("spec"))], ["source", esc(f"{source.get('kind')}: {pinned}")],
            ["licence", esc(source.get("licence") or "see the backbone")],
            ["strategy", esc(f"{manifest['strategy']['name']} ({strategy})")],
            ["head", esc(f"{manifest['head']['kind']} ({head})")],
            ["task", esc(task.describe().replace("`", "") if task else manifest["task"].get("kind"))],
            ["input", esc(f"{manifest['input']['modality']} column {manifest['input']['column']!r}")],
            ["training data", esc(f"{data.get('source')} — {data.get('rows')} rows, fingerprint "
                                  f"{str(data.get('fingerprint'))[:16]}")],
            ["seed", esc(manifest.get("seed"))], ["created", esc(manifest.get("created"))],
            ["versions", esc(versions)]]
    full = esc(json.dumps(manifest, indent=2, ensure_ascii=False))
    return (f"<h2 id='manifest'>Manifest</h2>{table(['', ''], rows)}<details><summary>manifest.json</summary>"
            f"<pre>{full}</pre></details>")


def _subtitle(manifest: dict, record: dict | None, task) -> str:
    source = manifest["backbone"]["source"]
    test = (record or {}).get("test") or {}
    return (f"{esc(source.get('spec'))} + {esc(manifest['strategy']['name'])} on {esc(manifest['data']['source'])}"
            f" ({manifest['data']['rows']} rows)"
            + (f"; evaluated on {esc(test.get('source'))} ({test.get('rows')} rows)" if test else "")
            + f"; model written {esc(manifest.get('created'))}"
            + (f", evaluated {esc(record.get('created'))}" if record else ""))


def render_report(manifest: dict, record: dict | None, *, name: str = "model") -> str:
    """The report's HTML text (UTF-8, no script, no external resources). A model kind other than a ``Graft``'s
    (a fusion model) brings its own subtitle, lead sections and manifest section (``common.model_section``)."""
    task = _task(manifest, record)
    subtitle = (model_section_for(manifest, "subtitle") or (lambda m, r, t: _subtitle(m, r, t)))(manifest, record, task)
    lead = model_section_for(manifest, "lead")
    shown = model_section_for(manifest, "manifest") or (lambda m, r, t: _manifest(m, t))
    body = "".join([
        f"<h1>graftkit report: {esc(name)}</h1><div class='sub'>{subtitle}</div>",
        _summary(manifest, record, task), _warnings(record), task_sections(task, "lead", record),
        lead(manifest, record, task) if lead else "",
        _learning_curve(record), _transfer(record, task), _forgetting(record, task),
        task_sections(task, "details", record), _leakage(record), _cv(record), shown(manifest, record, task),
        (f"<p class='note'>{REPORT_MARK}; self-contained (inline SVG, "
         "no scripts, no network).</p>"),
    ])
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<title>graftkit report: {esc(name)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>")


def write_report(model_dir, output=None) -> Path:
    """Render ``MODEL_DIR``'s report into ``output`` (default ``MODEL_DIR/report.html``), atomically."""
    from graftkit.artifacts import read_manifest
    from graftkit.evaluation.suite import read_evaluation
    from graftkit.fusion.model import is_fusion_model

    model_dir = Path(model_dir).expanduser()
    if is_fusion_model(model_dir):  # fusion.json + its own evaluation record (fusion/evaluation.py)
        from graftkit.fusion.evaluation import (
            read_fusion_evaluation,
            read_fusion_manifest,
        )

        manifest, record = read_fusion_manifest(model_dir), read_fusion_evaluation(model_dir)
    else:
        manifest, record = read_manifest(model_dir), read_evaluation(model_dir)
    output = Path(output).expanduser() if output else model_dir / REPORT
    if output.is_dir():
        raise ArtifactError(f"report output {str(output)!r} is a directory; give an .html file path (-o FILE)")
    output.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(manifest, record, name=model_dir.resolve().name)
    return write_text_atomic(output, text)
