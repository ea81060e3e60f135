"""The report's domain-shift section, for every task: when the evaluation record holds a measured ``domain_shift``
(``evaluate --target FILE``), the proxy A-distance, the MMD test, the sample sizes, the verdict, and what it means
for the test figures and what to do about it. A record without one (no target given) shows nothing."""

from __future__ import annotations

from graftkit.evaluation.shift import LARGE_PAD, MMD_ALPHA
from graftkit.report.common import card, every_task_section, num, table
from graftkit.report.svg import esc

ADVICE = {
    "large": ("The target inputs look different from the training inputs to this backbone, so the test figures "
              "above, measured on data like the training data, may overstate how well the model does on the target. "
              "Adapt it: domain-adversarial training toward the target (DANN: <code>graftkit fit ... --adapt-to "
              "TARGET</code>) or, for text, continued pretraining on the target texts (TAPT: <code>graftkit pretrain "
              "TARGET -o DIR</code>, then fit on DIR); <code>graftkit auto DATA --target TARGET</code> tries both. "
              "Label a sample of target rows to see which helps: the target's labels are what tells."),
    "moderate": ("The test tells the two apart, but a linear classifier does so poorly: the test figures are a rough "
                 "guide to the target. Label a sample of target rows to check them before adapting (DANN: "
                 "<code>--adapt-to TARGET</code>; text: <code>graftkit pretrain TARGET -o DIR</code>)."),
    "none": ("The target looks like the training data to this backbone: the test figures are a fair guide to it "
             "and no adaptation is called for."),
}


def _measured(record: dict | None) -> dict | None:
    shift = (record or {}).get("domain_shift")
    return shift if isinstance(shift, dict) and "verdict" in shift else None


def _degree(shift: dict) -> str:
    if shift.get("large"):
        return "large"
    return "moderate" if shift["mmd"]["p_value"] < MMD_ALPHA else "none"


def _rows(side: dict) -> str:
    total = side.get("of")
    return f"{side['rows']} (a seeded sample of {total})" if total and total != side["rows"] else str(side["rows"])


@every_task_section("cards")
def shift_card(record: dict | None) -> str:
    shift = _measured(record)
    if shift is None:
        return ""
    return card("domain shift (proxy A-distance)", f"{shift['proxy_a_distance']['pad']:.2f}",
                f"{esc(_degree(shift))}; MMD p = {shift['mmd']['p_value']:.3g}")


@every_task_section("details")
def shift_section(record: dict | None) -> str:
    shift = _measured(record)
    if shift is None:
        return ""
    pad, mmd, degree = shift["proxy_a_distance"], shift["mmd"], _degree(shift)
    rows = [["proxy A-distance (0: the domains cannot be told apart, 2: always)", num(pad["pad"], 3)],
            ["domain classifier's cross-validated error", f"{100 * pad['error']:.1f}%"],
            ["rows per side (proxy A-distance)", num(pad["rows"])],
            ["MMD² (unbiased, RBF kernel)", num(mmd["mmd2"], 5)],
            ["kernel bandwidth (median heuristic)", num(mmd["bandwidth"], 4)],
            ["MMD permutation p-value", num(mmd["p_value"], 4)],
            ["rows per side (MMD)", num(mmd["rows"])],
            ["source rows", esc(f"{_rows(shift['source'])} of {shift['source']['data']}")],
            ["target rows", esc(f"{_rows(shift['target'])} of {shift['target']['data']}")]]
    how = (f"Proxy A-distance: a logistic-regression domain classifier on the backbone's pooled features, "
           f"cross-validated, PAD = 2(1 − 2·error) (Ben-David et al. 2007). MMD: kernel two-sample test "
           f"(Gretton et al. 2012). The shift is called large when PAD &gt; {LARGE_PAD:g} and the MMD test rejects "
           f"at p &lt; {MMD_ALPHA:g}.")
    css = "warn" if degree == "large" else "note"
    return (f"<h2 id='domain-shift'>Domain shift</h2><div class='{css}'><b>{esc(shift['verdict'])}.</b> "
            f"{ADVICE[degree]}</div><div class='row'><div>{table(['source vs target', ''], rows, {1})}</div>"
            f"<p class='note' style='max-width:520px'>{how}</p></div>")
