"""The report's regression sections: predicted against true values (the residual plot) and the coverage of the
split-conformal prediction intervals on the test rows."""

from __future__ import annotations

from graftkit.report.common import card, metrics_of, num, table, task_section
from graftkit.report.svg import esc, scatter_svg
from graftkit.tasks import Regression


def _target(record: dict | None) -> str:
    labels = ((record or {}).get("task") or {}).get("labels") or ["target"]
    return str(labels[0])


@task_section(Regression, "cards")
def cards(record: dict | None) -> str:
    interval = metrics_of(record).get("interval") or {}
    if interval.get("coverage") is None:
        return ""
    return card(f"{interval['level']:.0%} interval coverage", f"{interval['coverage']:.1%}",
                f"prediction ± {interval['half_width']:.4g}")


@task_section(Regression, "lead")
def residuals(record: dict | None) -> str:
    metrics = metrics_of(record)
    found = metrics.get("residuals")
    if not found or not found.get("target"):
        return ""
    target = _target(record)
    interval = metrics.get("interval") or {}
    chart = scatter_svg(found["target"], found["predicted"], title="Predicted against true",
                        x_label=f"true {target}", y_label=f"predicted {target}", band=interval.get("half_width"))
    shown = len(found["target"])
    rows = [[name, num(metrics.get(key))] for name, key in (("R²", "r2"), ("RMSE", "rmse"), ("MAE", "mae"),
                                                            ("Spearman ρ", "spearman"))]
    note = (f"{shown} of the {metrics.get('n')} test rows" + (" (an even subsample)" if shown != metrics.get("n") else "")
            + ". Points on the dashed line y = x are exact; above it the model over-predicts, below it it "
            "under-predicts." + (" The dotted lines mark the prediction interval." if interval.get("half_width")
                                 else ""))
    return (f"<h2 id='residuals'>Residuals</h2><div class='row'><div class='panel'>{chart}</div><div>"
            f"{table(['on the test data', ''], rows, {1})}<p class='note' style='max-width:420px'>{esc(note)}</p>"
            "</div></div>")


@task_section(Regression, "lead")
def intervals(record: dict | None) -> str:
    interval = metrics_of(record).get("interval")
    if not interval:
        return ""
    if interval.get("skipped") or interval.get("coverage") is None:
        return (f"<h2 id='intervals'>Prediction intervals</h2><p class='note'>No interval at level "
                f"{num(interval.get('level'))}: {esc(interval.get('skipped') or 'no coverage measured')}.</p>")
    rows = [["nominal level", f"{interval['level']:.0%}"], ["coverage on the test rows", f"{interval['coverage']:.1%}"],
            ["half-width (prediction ± q)", num(interval["half_width"])], ["mean width", num(interval.get("mean_width"))],
            ["held-out residuals q was read from", num(interval.get("held_out_residuals"))]]
    fit = (record or {}).get("calibration_fit") or {}
    how = (f"Split-conformal intervals (Lei et al. 2018): q is a quantile of the absolute residuals on "
           f"{esc(fit.get('fitted_on') or 'held-out rows')}; with exchangeable rows the interval covers a new row's "
           f"target with probability at least the nominal level (a little less assured when the residuals are cross-fitted "
           "out of fold). Coverage here is the share of test rows inside it.")
    return (f"<h2 id='intervals'>Prediction intervals</h2><div class='row'><div>{table(['', ''], rows, {1})}</div>"
            f"<p class='note' style='max-width:520px'>{how}</p></div>")
