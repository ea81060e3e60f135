"""``graftkit report DIR``: one self-contained HTML file from a model directory's ``manifest.json`` and
``evaluation.json``. Charts are inline SVG, styles inline, no script and no external resource, so the file
opens anywhere (and offline). The report renders saved results only; it computes nothing. Every string that
comes from the user's data or files (labels, texts, paths, sources) is HTML-escaped."""

from __future__ import annotations

import json
from pathlib import Path

from graftkit.atomic import write_text_atomic
from graftkit.errors import ArtifactError
from graftkit.report.svg import (
    bars_svg,
    curve_svg,
    esc,
    heatmap_svg,
    learning_curve_svg,
    reliability_svg,
)

REPORT = "report.html"

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



def _num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def _signed(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(), css: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td class='n'>{cell}</td>" if i in numeric else f"<td>{cell}</td>"
                        for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(key: str, value: str, detail: str = "") -> str:
    return (f"<div class='card'><div class='k'>{esc(key)}</div><div class='v'>{value}</div>"
            f"<div class='d'>{detail}</div></div>")


def _skipped(section: dict | None) -> str | None:
    if section is None:
        return "not in this evaluation record"
    return section.get("skipped")


# -- sections -----------------------------------------------------------------------------------------------


def _summary(manifest: dict, record: dict | None) -> str:
    cards = []
    metrics = (record or {}).get("metrics")
    if metrics:
        cards.append(_card("test accuracy", _num(metrics["accuracy"]), f"n = {metrics['n']}"))
        cards.append(_card("macro-F1", _num(metrics["macro_f1"])))
        cal = metrics.get("calibration")
        if cal:
            cards.append(_card("ECE (15 bins)", f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f}",
                               f"temperature T = {cal['temperature']:.3f}"))
        thresholds = metrics.get("thresholds")
        if thresholds and thresholds.get("roc_auc") is not None:
            cards.append(_card("ROC AUC / AP", f"{thresholds['roc_auc']:.3f} / {thresholds['average_precision']:.3f}",
                               esc(thresholds["averaging"])))
    else:
        test = manifest.get("metrics", {}).get("test")
        if test:
            cards.append(_card("test accuracy (manifest)", _num(test["accuracy"]), f"n = {test['n']}"))
    baseline = (record or {}).get("baseline") or {}
    gain = baseline.get("transfer_gain")
    if gain:
        cards.append(_card("transfer gain vs baseline", _signed(gain["gain"]),
                           f"95% CI {_signed(gain['ci95'][0], 3)} to {_signed(gain['ci95'][1], 3)}"))
    gain = ((record or {}).get("scratch") or {}).get("transfer_gain")
    if gain:
        cards.append(_card("transfer gain vs scratch", _signed(gain["gain"]),
                           f"95% CI {_signed(gain['ci95'][0], 3)} to {_signed(gain['ci95'][1], 3)}"))
    forgetting = (record or {}).get("forgetting") or {}
    if "cka" in forgetting:
        cards.append(_card("feature CKA vs pretrained", f"{forgetting['cka']:.3f}", "1 = unchanged"))
    leak = (record or {}).get("leakage") or {}
    if "leaked" in leak:
        cards.append(_card("leaked test rows", str(leak["leaked"]),
                           f"{100 * leak['share']:.1f}% of {leak['n_test']}" + (" (dropped)" if leak.get("dropped") else "")))
    cv = (record or {}).get("cv") or {}
    if cv.get("summary"):
        acc = cv["summary"]["accuracy"]
        cards.append(_card(f"{len(cv['folds'])}-fold CV accuracy", f"{acc['mean']:.3f} ± {acc['std']:.3f}"))
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
    status = ((record.get("metrics") or {}).get("calibration") or {}).get("status", "")
    if status.startswith("skipped"):
        out.append(f"<div class='warn'><b>Calibration:</b> {esc(status)}</div>")
    return "".join(out)


def _calibration(record: dict | None) -> str:
    cal = ((record or {}).get("metrics") or {}).get("calibration")
    if not cal:
        return "<h2 id='calibration'>Calibration</h2><p class='note'>No calibration results saved.</p>"
    fit = (record or {}).get("calibration_fit") or {}
    rows = [[name, _num(cal[f"{key}_before"]), _num(cal[f"{key}_after"]), _signed(cal[f"{key}_after"] - cal[f"{key}_before"])]
            for name, key in (("ECE (15 equal-width bins)", "ece"), ("MCE", "mce"), ("NLL", "nll"), ("Brier", "brier"))]
    table = _table(["on the test data", "before", f"after T = {cal['temperature']:.4f}", "change"], rows, {1, 2, 3})
    how = (f"Temperature scaling (Guo et al. 2017): the logits are divided by T, fitted on "
           f"{esc(fit.get('fitted_on') or 'held-out data')}; status: {esc(cal.get('status', fit.get('status', '')))}. "
           "It never changes the predicted class, so accuracy is the same before and after.")
    chart = reliability_svg(cal["reliability_before"], cal["reliability_after"], ece_before=cal["ece_before"],
                            ece_after=cal["ece_after"])
    return (f"<h2 id='calibration'>Calibration</h2><div class='row'><div class='panel'>{chart}</div>"
            f"<div>{table}<p class='note' style='max-width:520px'>{how}</p></div></div>")


def _thresholds(record: dict | None) -> str:
    thresholds = ((record or {}).get("metrics") or {}).get("thresholds")
    if not thresholds:
        return ""
    curves = thresholds.get("curves") or {}
    charts = []
    if curves.get("pr"):
        charts.append(curve_svg(curves["pr"]["recall"], curves["pr"]["precision"], title="Precision-recall curve",
                                x_label="recall", y_label="precision",
                                label=f"AP {thresholds['average_precision']:.3f}"))
    if curves.get("roc"):
        charts.append(curve_svg(curves["roc"]["fpr"], curves["roc"]["tpr"], title="ROC curve",
                                x_label="false positive rate", y_label="true positive rate", diagonal=True,
                                label=f"AUC {thresholds['roc_auc']:.3f}", corner="bottom-right"))
    par, rap = thresholds["precision_at_recall"], thresholds["recall_at_precision"]
    macro = thresholds["macro"]
    rows = [
        [f"precision at recall ≥ {thresholds['target_recall']:g}", _num(par.get("precision")), _num(par.get("threshold")),
         _num(macro.get("precision_at_recall"))],
        [f"recall at precision ≥ {thresholds['target_precision']:g}", _num(rap.get("recall")), _num(rap.get("threshold")),
         _num(macro.get("recall_at_precision"))],
        ["average precision", _num(thresholds["average_precision"]), "", _num(macro.get("average_precision"))],
        ["ROC AUC", _num(thresholds["roc_auc"]), "", _num(macro.get("roc_auc"))],
    ]
    table = _table(["", thresholds["averaging"], "threshold", "macro mean over classes (one-vs-rest)"], rows,
                   {1, 2, 3})
    panels = "".join(f"<div class='panel'>{c}</div>" for c in charts)
    return f"<h2 id='thresholds'>Precision, recall and ROC</h2><div class='row'>{panels}</div><div style='margin-top:10px'>{table}</div>"


def _learning_curve(record: dict | None) -> str:
    section = (record or {}).get("learning_curve")
    reason = _skipped(section)
    if reason:
        return f"<h2 id='learning-curve'>Learning curve</h2><p class='note'>Not measured: {esc(reason)}.</p>"
    points, extrapolation = section["points"], section.get("extrapolation")
    rows = [["all" if p.get("all") else p["per_class"], p["n_train"], _num(p["accuracy"]["mean"]),
             _num(p["accuracy"]["std"]), _num(p["macro_f1"]["mean"]), len(p["accuracy"]["values"])] for p in points]
    table = _table(["per class", "train rows", "accuracy", "± std", "macro-F1", "seeds"], rows, {1, 2, 3, 4, 5})
    extra = ""
    if extrapolation:
        if extrapolation.get("status") == "fitted":
            target_rows = [[f"{t['accuracy']:.0%}", t["per_class"] if t["per_class"] is not None else
                            (f"&gt; {t['at_least']}" if t.get("at_least") else "–"), esc(t["status"])]
                           for t in extrapolation["targets"]]
            extra = (f"<h3>How many labels? (fit a = {extrapolation['a']:.3f}, b = {extrapolation['b']:.3f}, "
                     f"c = {extrapolation['c']:.3f}, rmse {extrapolation['rmse']:.4f})</h3>"
                     + _table(["target accuracy", "labelled examples per class", "status"], target_rows, {1}))
        else:
            extra = f"<p class='note'>{esc(extrapolation.get('status'))}</p>"
    chart = learning_curve_svg(points, extrapolation)
    return (f"<h2 id='learning-curve'>Learning curve</h2><div class='row'><div class='panel'>{chart}</div><div>"
            f"{table}{extra}<p class='note' style='max-width:520px'>{esc(section['head'])}; {section['seeds']} seeds "
            f"per size, {section['n_test']} test rows.</p></div></div>")


def _gain_row(what: str, gain: dict, model_f1: float, other_f1: float) -> list:
    return [esc(what), _num(gain["model"]), _num(gain["baseline"]), _signed(gain["gain"]),
            f"{_signed(gain['ci95'][0])} to {_signed(gain['ci95'][1])}", _signed(model_f1 - other_f1)]


def _transfer(record: dict | None) -> str:
    baseline, scratch = (record or {}).get("baseline"), (record or {}).get("scratch")
    reasons = [r for r in (_skipped(baseline), _skipped(scratch)) if r]
    if len(reasons) == 2:
        return (f"<h2 id='transfer'>Transfer gain</h2><p class='note'>No baseline: {esc(reasons[0])}. No "
                f"from-scratch run: {esc(reasons[1])}.</p>")
    model_f1 = record["metrics"]["macro_f1"]
    bars, rows, notes = [], [], []
    for section, what in ((baseline, "classical baseline"), (scratch, "same architecture from scratch")):
        if _skipped(section):
            notes.append(f"No {what}: {esc(_skipped(section))}.")
            continue
        gain = section["transfer_gain"]
        if not bars:
            bars.append((gain["model_name"], gain["model"]))
        bars.append((section["name"], gain["baseline"]))
        rows.append(_gain_row(f"vs {what}", gain, model_f1, section["macro_f1"]))
    if not _skipped(baseline):
        notes.insert(0, f"Classical baseline: {esc(baseline['name'])} (C = {baseline['C']:g}, chosen by "
                        f"cross-validation), fitted on the same {baseline['n_train']} training rows, scored on the "
                        f"same {baseline['n_test']} test rows.")
    if not _skipped(scratch):
        notes.append(f"From scratch: {esc(scratch['name'])}, the same strategy and settings from random weights "
                     f"({scratch['seconds']:g} s).")
    chart = bars_svg(bars, title="Test accuracy: pretrained start vs baselines", y_label="accuracy", y_max=1.0)
    table = _table(["gain of the pretrained start", "pretrained", "other", "accuracy gain", "95% paired bootstrap",
                    "macro-F1 gain"], rows, {1, 2, 3, 5})
    return (f"<h2 id='transfer'>Transfer gain</h2><div class='row'><div class='panel'>{chart}</div><div>{table}"
            f"<p class='note' style='max-width:560px'>{' '.join(notes)}</p></div></div>")


def _forgetting(record: dict | None) -> str:
    section = (record or {}).get("forgetting")
    reason = _skipped(section)
    if reason:
        return f"<h2 id='forgetting'>Forgetting</h2><p class='note'>Not measured: {esc(reason)}.</p>"
    drift = section["weight_drift"]
    chart = bars_svg([(g["group"], g["relative_change"]) for g in drift][-8:],
                     title="Relative weight change per layer group (top 8)", y_label="||ΔW|| / ||W||")
    rows = [[esc(g["group"]), g["parameters"], _num(g["relative_change"])] for g in drift]
    parts = [f"<p>Linear CKA between the pretrained and the adapted features of {section['probe_rows']} test rows: "
             f"<b>{section['cka']:.4f}</b> (1 = unchanged up to rotation and scale; Kornblith et al. 2019).</p>"]
    reference = section.get("reference")
    if reference:
        parts.append(_table(["reference task", "probe accuracy, pretrained", "adapted", "drop"],
                            [[esc(reference["source"]), _num(reference["accuracy_before"]),
                              _num(reference["accuracy_after"]), _signed(-reference["drop"])]], {1, 2, 3}))
    else:
        parts.append("<p class='note'>No reference task given (Python: reference=...; CLI: --reference FILE): what "
                     "fine-tuning cost on other tasks is not measured.</p>")
    if section.get("warning"):
        parts.insert(0, f"<div class='warn bad'><b>Forgetting:</b> {esc(section['warning'])}</div>")
    return (f"<h2 id='forgetting'>Forgetting</h2>{''.join(parts)}<div class='row'><div class='panel'>{chart}</div>"
            f"<div class='scroll'>{_table(['layer group', 'parameters', 'relative change'], rows, {1, 2})}</div></div>")


def _per_class(record: dict | None) -> str:
    metrics = (record or {}).get("metrics")
    if not metrics:
        return ""
    rows = []
    for r in sorted(metrics["per_class"], key=lambda r: (r["f1"], r["label"])):
        rows.append([esc(r["label"]), _num(r["precision"], 3), _num(r["recall"], 3), _num(r["f1"], 3), r["support"],
                     _num(r.get("average_precision"), 3), _num(r.get("roc_auc"), 3),
                     _num(r.get("precision_at_recall"), 3), _num(r.get("recall_at_precision"), 3)])
    target_r = metrics.get("thresholds", {}).get("target_recall", 0.9)
    target_p = metrics.get("thresholds", {}).get("target_precision", 0.9)
    table = _table(["class", "precision", "recall", "F1", "support", "AP", "ROC AUC", f"P @ R≥{target_r:g}",
                    f"R @ P≥{target_p:g}"], rows, {1, 2, 3, 4, 5, 6, 7, 8}, css="per-class")
    return (f"<h2 id='per-class'>Per-class results</h2><p class='note'>Worst F1 first. {len(rows)} classes.</p>"
            f"<div class='scroll'>{table}</div>")


def _confusion(record: dict | None) -> str:
    metrics = (record or {}).get("metrics")
    if not metrics:
        return ""
    matrix = metrics["confusion_matrix"]
    labels = matrix["labels"]
    pairs = []
    for i, row in enumerate(matrix["matrix"]):
        for j, count in enumerate(row):
            if i != j and count:
                pairs.append((count, labels[i], labels[j]))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    top = _table(["true class", "predicted as", "rows"], [[esc(t), esc(p), c] for c, t, p in pairs[:15]], {2})
    return (f"<h2 id='confusion'>Confusion matrix</h2><div class='row'><div class='panel scroll'>"
            f"{heatmap_svg(matrix['matrix'], labels)}</div><div><h3>Most frequent confusions</h3>{top}</div></div>")


def _leakage(record: dict | None) -> str:
    leak = (record or {}).get("leakage")
    reason = _skipped(leak)
    if reason:
        return f"<h2 id='leakage'>Leakage</h2><p class='note'>Not checked: {esc(reason)}.</p>"
    counts = (f"{leak['leaked']} of {leak['n_test']} test rows duplicate one of {leak['n_train']} training rows: "
              f"{leak['exact']} exact, {leak.get('text', 0)} edited copies (text), {leak.get('embedding', 0)} by "
              f"feature cosine; {leak['label_conflicts']} with a different label. Method: {esc(leak['method'])}."
              + (" The flagged rows were dropped before scoring." if leak.get("dropped") else ""))
    rows = [[esc(e["kind"]), _num(e["similarity"], 3), esc(e["test_row"]), esc(e["test_input"]), esc(e["test_label"]),
             esc(e["train_row"]), esc(e["train_input"]), esc(e["train_label"])] for e in leak["examples"]]
    table = _table(["kind", "similarity", "test row", "test input", "test label", "train row", "train input",
                    "train label"], rows, {1}, css="leakage") if rows else "<p class='note'>No duplicates found.</p>"
    return f"<h2 id='leakage'>Leakage</h2><p>{counts}</p><div class='scroll'>{table}</div>"


def _cv(record: dict | None) -> str:
    cv = (record or {}).get("cv")
    reason = _skipped(cv)
    if reason:
        return f"<h2 id='cv'>Cross-validation</h2><p class='note'>Not run: {esc(reason)}.</p>"
    summary = cv["summary"]
    rows = [[f["fold"], f["n_train"], f["n_test"], _num(f["accuracy"]), _num(f["macro_f1"])] for f in cv["folds"]]
    rows.append(["mean ± std", "", "", f"{summary['accuracy']['mean']:.4f} ± {summary['accuracy']['std']:.4f}",
                 f"{summary['macro_f1']['mean']:.4f} ± {summary['macro_f1']['std']:.4f}"])
    return (f"<h2 id='cv'>Cross-validation</h2><p class='note'>{len(cv['folds'])} stratified folds of the training "
            f"data, same settings.</p>" + _table(["fold", "train rows", "test rows", "accuracy", "macro-F1"], rows,
                                                 {1, 2, 3, 4}))


def _manifest(manifest: dict) -> str:
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
            ["task", esc(f"{manifest['task']['kind']}, {len(manifest['task']['labels'])} classes")],
            ["input", esc(f"{manifest['input']['modality']} column {manifest['input']['column']!r}")],
            ["training data", esc(f"{data.get('source')} — {data.get('rows')} rows, fingerprint "
                                  f"{str(data.get('fingerprint'))[:16]}")],
            ["seed", esc(manifest.get("seed"))], ["created", esc(manifest.get("created"))],
            ["versions", esc(versions)]]
    full = esc(json.dumps(manifest, indent=2, ensure_ascii=False))
    return (f"<h2 id='manifest'>Manifest</h2>{_table(['', ''], rows)}<details><summary>manifest.json</summary>"
            f"<pre>{full}</pre></details>")


def render_report(manifest: dict, record: dict | None, *, name: str = "model") -> str:
    """The report's HTML text (UTF-8, no script, no external resources)."""
    source = manifest["backbone"]["source"]
    test = (record or {}).get("test") or {}
    subtitle = (f"{esc(source.get('spec'))} + {esc(manifest['strategy']['name'])} on {esc(manifest['data']['source'])}"
                f" ({manifest['data']['rows']} rows)"
                + (f"; evaluated on {esc(test.get('source'))} ({test.get('rows')} rows)" if test else "")
                + f"; model written {esc(manifest.get('created'))}"
                + (f", evaluated {esc(record.get('created'))}" if record else ""))
    body = "".join([
        f"<h1>graftkit report: {esc(name)}</h1><div class='sub'>{subtitle}</div>",
        _summary(manifest, record), _warnings(record), _calibration(record), _thresholds(record),
        _learning_curve(record), _transfer(record), _forgetting(record), _confusion(record), _per_class(record), _leakage(record),
        _cv(record), _manifest(manifest),
        "<p class='note'>Written by graftkit from manifest.json and evaluation.json; self-contained (inline SVG, "
        "no scripts, no network).</p>",
    ])
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<title>graftkit report: {esc(name)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>")


def write_report(model_dir, output=None) -> Path:
    """Render ``MODEL_DIR``'s report into ``output`` (default ``MODEL_DIR/report.html``), atomically."""
    from graftkit.artifacts import read_manifest
    from graftkit.evaluation.suite import read_evaluation

    model_dir = Path(model_dir).expanduser()
    manifest = read_manifest(model_dir)
    record = read_evaluation(model_dir)
    output = Path(output).expanduser() if output else model_dir / REPORT
    if output.is_dir():
        raise ArtifactError(f"report output {str(output)!r} is a directory; give an .html file path (-o FILE)")
    output.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(manifest, record, name=model_dir.resolve().name)
    return write_text_atomic(output, text)
