"""The report's multi-label sections: the tuned per-label thresholds against a fixed 0.5, per-label
reliability before / after the label temperatures, and the per-label table."""

from __future__ import annotations

from graftkit.report.common import (
    card,
    metric_name,
    metrics_of,
    num,
    signed,
    table,
    task_section,
)
from graftkit.report.svg import esc, reliability_svg
from graftkit.tasks import MultiLabel

FIXED = "fixed_threshold_0.5"
MAX_CHARTS = 12  # per-label reliability diagrams drawn (the labels with the most positive test rows)
LOWER_IS_BETTER = ("hamming_loss",)


@task_section(MultiLabel, "cards")
def cards(record: dict | None) -> str:
    metrics = metrics_of(record)
    fixed = metrics.get(FIXED) or {}
    if fixed.get("micro_f1") is None:
        return ""
    return card("micro-F1 at a fixed 0.5", num(fixed["micro_f1"]), f"tuned thresholds: {num(metrics.get('micro_f1'))}")


@task_section(MultiLabel, "lead")
def thresholds(record: dict | None) -> str:
    metrics = metrics_of(record)
    fixed = metrics.get(FIXED)
    if not fixed:
        return ""
    rows = []
    for key, at_half in fixed.items():
        tuned = metrics.get(key)
        change = None if tuned is None or at_half is None else tuned - at_half
        rows.append([esc(metric_name(key) + (" (lower is better)" if key in LOWER_IS_BETTER else "")), num(tuned),
                     num(at_half), signed(change)])
    shown = table(["on the test data", "tuned per-label thresholds", "fixed 0.5", "change"], rows, {1, 2, 3})
    fit = (record or {}).get("calibration_fit") or {}
    source = (f"read from {esc(fit['thresholds_from'])}" if fit.get("thresholds_from") else
              f"each chosen to maximise that label's F1 on {esc(fit.get('fitted_on') or 'held-out data')}")
    notes = "".join(f" {esc(note)}" for note in fit.get("threshold_notes") or [])
    how = (f"A label is predicted when its probability reaches its own threshold, {source} (Lipton et al. 2014); "
           f"the same model decided at a fixed 0.5 is shown beside it. The thresholds are in the per-label table.{notes}")
    return (f"<h2 id='thresholds'>Decision thresholds: tuned against 0.5</h2>{shown}"
            f"<p class='note' style='max-width:640px'>{how}</p>")


@task_section(MultiLabel, "lead")
def calibration(record: dict | None) -> str:
    metrics = metrics_of(record)
    cal = metrics.get("calibration")
    if not cal or not cal.get("per_label"):
        return ("<h2 id='calibration'>Per-label calibration</h2><p class='note'>No calibration results saved.</p>"
                if metrics else "")
    support = {r["label"]: r["support"] for r in metrics.get("per_label", [])}
    rows = [[esc(r["label"]), num(r["temperature"]), support.get(r["label"], "–"), num(r["ece_before"]),
             num(r["ece_after"]), signed(None if r["ece_before"] is None or r["ece_after"] is None
                                         else r["ece_after"] - r["ece_before"])] for r in cal["per_label"]]
    shown = table(["label", "temperature T", "positives", "ECE before", "ECE after", "change"], rows,
                  {1, 2, 3, 4, 5}, css="per-label-calibration")
    drawn = sorted(cal["per_label"], key=lambda r: (-support.get(r["label"], 0), r["label"]))[:MAX_CHARTS]
    charts = "".join(f"<div class='panel'>{_chart(r)}</div>" for r in drawn)
    which = ("one per label" if len(drawn) == len(cal["per_label"]) else
             f"the {len(drawn)} labels with the most positive test rows, of {len(cal['per_label'])}")
    fit = (record or {}).get("calibration_fit") or {}
    how = (f"Each label's logit is divided by its own temperature (Guo et al. 2017), fitted on "
           f"{esc(fit.get('fitted_on') or 'held-out data')}; status: {esc(cal.get('status', ''))}. A label's "
           "reliability diagram treats it as a yes / no prediction: confidence is the probability of the more likely "
           f"answer, accuracy how often that answer is right (15 bins). Diagrams: {esc(which)}.")
    return (f"<h2 id='calibration'>Per-label calibration</h2><div class='row'><div class='scroll'>{shown}</div>"
            f"<p class='note' style='max-width:520px'>{how}</p></div><div class='row' style='margin-top:10px'>"
            f"{charts}</div>")


def _shorten(label, limit: int = 40) -> str:
    text = str(label)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _chart(row: dict) -> str:
    return reliability_svg(row["reliability_before"], row["reliability_after"], ece_before=row["ece_before"] or 0.0,
                           ece_after=row["ece_after"] or 0.0, title=f"Reliability: {_shorten(row['label'])}", width=340,
                           height=250)


@task_section(MultiLabel, "details")
def per_label(record: dict | None) -> str:
    metrics = metrics_of(record)
    if not metrics.get("per_label"):
        return ""
    predicted = metrics.get("predicted_label_counts") or {}
    rows = [[esc(r["label"]), num(r["precision"], 3), num(r["recall"], 3), num(r["f1"], 3),
             num(r.get("average_precision"), 3), num(r.get("threshold"), 3), r["support"],
             predicted.get(r["label"], "–")]
            for r in sorted(metrics["per_label"], key=lambda r: (r["f1"], r["label"]))]
    shown = table(["label", "precision", "recall", "F1", "AP", "threshold", "positives (support)", "predicted"], rows,
                  {1, 2, 3, 4, 5, 6, 7}, css="per-label")
    return (f"<h2 id='per-label'>Per-label results</h2><p class='note'>Worst F1 first. {len(rows)} labels; each decided "
            f"at its tuned threshold; AP is threshold-free (– where the label has no positive test row).</p>"
            f"<div class='scroll'>{shown}</div>")
