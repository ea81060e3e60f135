"""The report of a fusion model directory (``fusion.json`` + ``evaluation.json``; issue 12): its subtitle, the
feature-group importance (how much the task's primary metric drops on the test rows when each group's columns —
a media column's embedding, all columns of one modality, the tabular columns — are permuted together; computed by
``fusion/importance.py`` when the record was written), and its manifest: the columns with their roles and
encoders, the head, the calibration. The task's own sections and the common ones (summary, transfer gain over the
TF-IDF + tabular baseline, cross-validation) are rendered as for any model."""

from __future__ import annotations

import json

from graftkit.report.common import metric_name, metrics_of, model_section, num, table
from graftkit.report.svg import bars_svg, esc


@model_section("fusion", "subtitle")
def subtitle(manifest: dict, record: dict | None, task) -> str:
    data, test = manifest.get("data", {}), (record or {}).get("test") or {}
    return (f"fusion model ({esc(manifest.get('head_name'))} head) on {esc(data.get('source'))} ({data.get('rows')} "
            "rows)" + (f"; evaluated on {esc(test.get('source'))} ({test.get('rows')} rows)" if test else "")
            + (f", evaluated {esc(record.get('created'))}" if record else ""))


@model_section("fusion", "lead")
def importance(manifest: dict, record: dict | None, task) -> str:
    found = metrics_of(record).get("feature_groups")
    if not found:
        return ("<h2 id='feature-groups'>Feature-group importance</h2><p class='note'>Not measured: no evaluation "
                "record with test rows (graftkit fuse with a test split, or auto with --test).</p>")
    groups = sorted(found["groups"].items(), key=lambda kv: -kv[1]["drop"])
    name = metric_name(found["metric"])
    chart = bars_svg([(group, g["drop"]) for group, g in groups], title=f"Drop of test {name} when permuted",
                     y_label=f"{name} drop")
    rows = [[esc(group), g["columns"], num(g["drop"]), num(g["std"])] for group, g in groups]
    shown = table(["feature group", "features", f"{name} drop", "± std"], rows, {1, 2, 3})
    n = metrics_of(record).get("n")
    note = (f"Permutation importance on the {esc(n)} test rows: each group's columns are shuffled across the rows "
            f"together (a row keeps its own embedding, it loses its link to the target), {found['repeats']} "
            f"permutations, the mean drop of {esc(name)} from {num(found['baseline'])} and its spread. A group near "
            "zero adds nothing the others do not carry; a negative drop is noise.")
    notes = "".join(f"<p class='note'>{esc(line)}</p>" for line in metrics_of(record).get("notes") or [])
    return (f"<h2 id='feature-groups'>Feature-group importance</h2><div class='row'><div class='panel'>{chart}</div>"
            f"<div>{shown}<p class='note' style='max-width:520px'>{note}</p>{notes}</div></div>")


@model_section("fusion", "manifest")
def manifest_section(manifest: dict, record: dict | None, task) -> str:
    featurizer = manifest["featurizer"]
    rows = []
    for role in ("media", "numeric", "categorical"):
        for entry in featurizer["roles"].get(role, []):
            column, modality = (entry if role == "media" else (entry, role))
            encoder = featurizer["encoders"].get(column, {})
            how = (f"{encoder.get('kind')} {encoder.get('spec')}" + (f" ({encoder['strategy']})" if encoder.get("strategy")
                                                                   else "") if encoder else "")
            if role == "categorical":
                how = f"{len(featurizer['categories'].get(column, []))} categories kept"
            rows.append([esc(column), esc(modality), esc(how)])
    data = manifest.get("data", {})
    calibration = manifest.get("calibration") or {}
    facts = [["head", esc(f"{manifest.get('head_name')} ({', '.join(f'{k}={v}' for k, v in manifest['head'].items() if not isinstance(v, (list, dict)))})")],
             ["reduction", esc(f"{featurizer.get('reduce')} to {featurizer.get('components')}" if featurizer.get("reduce")
                               else "none")],
             ["task", esc(task.describe().replace("`", "") if task else manifest["task"].get("kind"))],
             ["calibration", esc(calibration.get("fitted_on") or calibration.get("status") or "none")],
             ["training data", esc(f"{data.get('source')} — {data.get('rows')} rows, fingerprint "
                                   f"{str(data.get('fingerprint'))[:16]}")],
             ["seed", esc(manifest.get("seed"))]]
    full = esc(json.dumps(manifest, indent=2, ensure_ascii=False))
    return (f"<h2 id='manifest'>Manifest</h2><h3>Columns</h3>{table(['column', 'role', 'encoder'], rows)}"
            f"<h3>Model</h3>{table(['', ''], facts)}<details><summary>fusion.json</summary><pre>{full}</pre></details>")
