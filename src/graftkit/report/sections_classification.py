"""The report's single-label classification sections: temperature-scaling calibration, precision / recall /
ROC, the confusion matrix and the per-class table."""

from __future__ import annotations

from graftkit.report.common import card, metrics_of, num, signed, table, task_section
from graftkit.report.svg import curve_svg, esc, heatmap_svg, reliability_svg
from graftkit.tasks import Classification


@task_section(Classification, "cards")
def cards(record: dict | None) -> str:
    metrics = metrics_of(record)
    out = []
    cal = metrics.get("calibration")
    if cal and "ece_before" in cal:
        out.append(card("ECE (15 bins)", f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f}",
                        f"temperature T = {cal['temperature']:.3f}"))
    thresholds = metrics.get("thresholds")
    if thresholds and thresholds.get("roc_auc") is not None:
        out.append(card("ROC AUC / AP", f"{thresholds['roc_auc']:.3f} / {thresholds['average_precision']:.3f}",
                        esc(thresholds["averaging"])))
    return "".join(out)


@task_section(Classification, "lead")
def calibration(record: dict | None) -> str:
    cal = metrics_of(record).get("calibration")
    if not cal:
        return "<h2 id='calibration'>Calibration</h2><p class='note'>No calibration results saved.</p>"
    fit = (record or {}).get("calibration_fit") or {}
    rows = [[name, num(cal[f"{key}_before"]), num(cal[f"{key}_after"]), signed(cal[f"{key}_after"] - cal[f"{key}_before"])]
            for name, key in (("ECE (15 equal-width bins)", "ece"), ("MCE", "mce"), ("NLL", "nll"), ("Brier", "brier"))]
    shown = table(["on the test data", "before", f"after T = {cal['temperature']:.4f}", "change"], rows, {1, 2, 3})
    how = (f"Temperature scaling (Guo et al. 2017): the logits are divided by T, fitted on "
           f"{esc(fit.get('fitted_on') or 'held-out data')}; status: {esc(cal.get('status', fit.get('status', '')))}. "
           "It never changes the predicted class, so accuracy is the same before and after.")
    chart = reliability_svg(cal["reliability_before"], cal["reliability_after"], ece_before=cal["ece_before"],
                            ece_after=cal["ece_after"])
    return (f"<h2 id='calibration'>Calibration</h2><div class='row'><div class='panel'>{chart}</div>"
            f"<div>{shown}<p class='note' style='max-width:520px'>{how}</p></div></div>")


@task_section(Classification, "lead")
def thresholds(record: dict | None) -> str:
    found = metrics_of(record).get("thresholds")
    if not found:
        return ""
    curves = found.get("curves") or {}
    charts = []
    if curves.get("pr"):
        charts.append(curve_svg(curves["pr"]["recall"], curves["pr"]["precision"], title="Precision-recall curve",
                                x_label="recall", y_label="precision", label=f"AP {found['average_precision']:.3f}"))
    if curves.get("roc"):
        charts.append(curve_svg(curves["roc"]["fpr"], curves["roc"]["tpr"], title="ROC curve",
                                x_label="false positive rate", y_label="true positive rate", diagonal=True,
                                label=f"AUC {found['roc_auc']:.3f}", corner="bottom-right"))
    par, rap = found["precision_at_recall"], found["recall_at_precision"]
    macro = found["macro"]
    rows = [
        [f"precision at recall ≥ {found['target_recall']:g}", num(par.get("precision")), num(par.get("threshold")),
         num(macro.get("precision_at_recall"))],
        [f"recall at precision ≥ {found['target_precision']:g}", num(rap.get("recall")), num(rap.get("threshold")),
         num(macro.get("recall_at_precision"))],
        ["average precision", num(found["average_precision"]), "", num(macro.get("average_precision"))],
        ["ROC AUC", num(found["roc_auc"]), "", num(macro.get("roc_auc"))],
    ]
    shown = table(["", found["averaging"], "threshold", "macro mean over classes (one-vs-rest)"], rows, {1, 2, 3})
    panels = "".join(f"<div class='panel'>{c}</div>" for c in charts)
    return (f"<h2 id='thresholds'>Precision, recall and ROC</h2><div class='row'>{panels}</div>"
            f"<div style='margin-top:10px'>{shown}</div>")


@task_section(Classification, "details")
def confusion(record: dict | None) -> str:
    matrix = metrics_of(record).get("confusion_matrix")
    if not matrix:
        return ""
    labels = matrix["labels"]
    pairs = []
    for i, row in enumerate(matrix["matrix"]):
        for j, count in enumerate(row):
            if i != j and count:
                pairs.append((count, labels[i], labels[j]))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    top = table(["true class", "predicted as", "rows"], [[esc(t), esc(p), c] for c, t, p in pairs[:15]], {2})
    return (f"<h2 id='confusion'>Confusion matrix</h2><div class='row'><div class='panel scroll'>"
            f"{heatmap_svg(matrix['matrix'], labels)}</div><div><h3>Most frequent confusions</h3>{top}</div></div>")


@task_section(Classification, "details")
def per_class(record: dict | None) -> str:
    metrics = metrics_of(record)
    if not metrics.get("per_class"):
        return ""
    rows = []
    for r in sorted(metrics["per_class"], key=lambda r: (r["f1"], r["label"])):
        rows.append([esc(r["label"]), num(r["precision"], 3), num(r["recall"], 3), num(r["f1"], 3), r["support"],
                     num(r.get("average_precision"), 3), num(r.get("roc_auc"), 3),
                     num(r.get("precision_at_recall"), 3), num(r.get("recall_at_precision"), 3)])
    target_r = metrics.get("thresholds", {}).get("target_recall", 0.9)
    target_p = metrics.get("thresholds", {}).get("target_precision", 0.9)
    shown = table(["class", "precision", "recall", "F1", "support", "AP", "ROC AUC", f"P @ R≥{target_r:g}",
                   f"R @ P≥{target_p:g}"], rows, {1, 2, 3, 4, 5, 6, 7, 8}, css="per-class")
    return (f"<h2 id='per-class'>Per-class results</h2><p class='note'>Worst F1 first. {len(rows)} classes.</p>"
            f"<div class='scroll'>{shown}</div>")
