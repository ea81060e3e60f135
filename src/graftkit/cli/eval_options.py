"""Flags of the saved evaluation (``evaluation.json``) that ``fit`` and ``evaluate`` share."""

from __future__ import annotations

import argparse

from graftkit.evaluation.leakage import DEFAULT_TEXT_THRESHOLD, DEFAULT_THRESHOLD


def _numbers(kind, what: str):
    def parse(text: str):
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, e.g. "
                                             f"{'4,8,16' if kind is int else '0.8,0.9'}; got {text!r}") from None
    return parse


def add_evaluation_options(parser: argparse.ArgumentParser, *, fit: bool) -> None:
    group = parser.add_argument_group("evaluation record (evaluation.json in the model directory, for "
                                      "`graftkit report`)")
    group.add_argument("--no-baseline", action="store_true",
                       help="skip the classical baseline (TF-IDF / raw pixels / log-mel + logistic regression) and "
                            "the transfer gain over it")
    group.add_argument("--no-leakage", action="store_true",
                       help="skip the search for test rows that duplicate training rows")
    group.add_argument("--drop-leaked", action="store_true",
                       help="score the model without the test rows that duplicate training rows")
    group.add_argument("--leakage-threshold", type=float, default=DEFAULT_THRESHOLD,
                       help=f"feature cosine at or above which a test row is a near-duplicate (default: "
                            f"{DEFAULT_THRESHOLD}; depends on the backbone)")
    group.add_argument("--leakage-text-threshold", type=float, default=DEFAULT_TEXT_THRESHOLD,
                       help=f"normalised-text similarity at or above which a test text is an edited copy "
                            f"(default: {DEFAULT_TEXT_THRESHOLD})")
    group.add_argument("--scratch", action="store_true",
                       help="also train the same architecture from random weights with the same strategy and "
                            "settings, for the transfer gain against it (costs one more fit)")
    group.add_argument("--reference", metavar="FILE",
                       help="a labelled reference task (columns inferred) for forgetting: a linear probe on it "
                            "before vs after fine-tuning")
    group.add_argument("--learning-curve", action="store_true",
                       help="also measure accuracy against labelled examples per class (head fits on cached "
                            "features) and extrapolate how many labels a target accuracy needs")
    group.add_argument("--shots", type=_numbers(int, "integers"), default=[4, 8, 16, 32, 64],
                       help="learning-curve sizes, examples per class (default: 4,8,16,32,64, then all)")
    group.add_argument("--seeds", type=int, default=3, help="learning-curve repeats per size (default: 3)")
    group.add_argument("--target-accuracy", type=_numbers(float, "fractions"), default=[0.8, 0.9, 0.95],
                       help="accuracies to predict the label need for (default: 0.8,0.9,0.95)")
    group.add_argument("--at-recall", type=float, default=0.9,
                       help="report the precision reached at this recall (default: 0.9)")
    group.add_argument("--at-precision", type=float, default=0.9,
                       help="report the recall reached at this precision (default: 0.9)")
    if fit:
        group.add_argument("--cv", type=int, default=0, metavar="K",
                           help="also cross-validate the same settings on the training data with K stratified "
                                "folds and save mean ± std (default: 0, off; needs a test split)")
    else:
        group.add_argument("--save", action="store_true",
                           help="write the results into MODEL/evaluation.json for `graftkit report`")
        group.add_argument("--overwrite", action="store_true",
                           help="with --save: replace an evaluation.json the model directory already holds")
        group.add_argument("--train", metavar="FILE",
                           help="the training data (same columns): enables leakage, baseline and learning curve")


def evaluation_kwargs(args) -> dict:
    return {"baseline": not args.no_baseline, "leakage": not args.no_leakage, "drop_leaked": args.drop_leaked,
            "leakage_threshold": args.leakage_threshold, "text_threshold": args.leakage_text_threshold,
            "learning_curve": args.learning_curve, "shots": args.shots, "seeds": args.seeds,
            "targets": args.target_accuracy, "target_recall": args.at_recall, "target_precision": args.at_precision,
            "scratch": args.scratch, "reference": args.reference}


def leakage_line(leak: dict | None) -> str | None:
    """The leakage record in one line (None when the search did not run)."""
    if not leak or "leaked" not in leak:
        return None
    return (f"leakage: {leak['leaked']} of {leak['n_test']} test rows duplicate training rows "
            f"({leak['exact']} exact, {leak['text']} edited text, {leak['embedding']} by features)"
            + (f" in every media column ({', '.join(leak['columns'])})" if leak.get("columns") else "")
            + ("; dropped before scoring" if leak.get("dropped") else ""))


def format_evaluation(record: dict) -> list[str]:
    """Plain-text lines for the parts of the record beyond the per-class table."""
    lines = []
    shift = record.get("domain_shift") or {}
    if "verdict" in shift:
        lines.append(f"domain shift to {shift['target']['data']} ({shift['target']['rows']} rows): {shift['verdict']}; "
                     f"MMD² {shift['mmd']['mmd2']:.4g} (p={shift['mmd']['p_value']:.3g})")
    cal = record["metrics"].get("calibration")
    if cal and "ece_before" in cal:
        lines.append(f"calibration: ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, NLL {cal['nll_before']:.4f} "
                     f"-> {cal['nll_after']:.4f} (temperature {cal['temperature']:.3f}; {cal['status']})")
    thresholds = record["metrics"].get("thresholds")
    if thresholds and thresholds.get("roc_auc") is not None:
        par = thresholds["precision_at_recall"]
        lines.append(f"ranking: ROC AUC {thresholds['roc_auc']:.4f}, AP {thresholds['average_precision']:.4f}, "
                     f"precision at recall {thresholds['target_recall']:g}: {par['precision']:.4f} "
                     f"({thresholds['averaging']})")
    baseline = record.get("baseline") or {}
    if "transfer_gain" in baseline:
        gain = baseline["transfer_gain"]
        lines.append(f"baseline ({baseline['name']}): {gain['metric']} {gain['baseline']:.4f}; transfer gain "
                     f"{gain['gain']:+.4f} (95% CI {gain['ci95'][0]:+.4f} to {gain['ci95'][1]:+.4f})")
        if gain["warning"]:
            lines.append(f"WARNING: {gain['warning']}")
    scratch = record.get("scratch") or {}
    if "transfer_gain" in scratch:
        gain = scratch["transfer_gain"]
        lines.append(f"from scratch ({scratch['name']}): {gain['metric']} {gain['baseline']:.4f}; transfer gain "
                     f"{gain['gain']:+.4f} (95% CI {gain['ci95'][0]:+.4f} to {gain['ci95'][1]:+.4f})")
        if gain["warning"]:
            lines.append(f"WARNING: {gain['warning']}")
    forgetting = record.get("forgetting") or {}
    if "cka" in forgetting:
        lines.append(f"forgetting: linear CKA {forgetting['cka']:.4f} between pretrained and adapted features; "
                     "largest relative weight change "
                     f"{max((g['relative_change'] for g in forgetting['weight_drift']), default=0):.4f}"
                     + (f"; reference probe {forgetting['reference']['accuracy_before']:.4f} -> "
                        f"{forgetting['reference']['accuracy_after']:.4f}" if forgetting.get("reference") else ""))
        if forgetting["warning"]:
            lines.append(f"WARNING: {forgetting['warning']}")
    line = leakage_line(record.get("leakage"))
    if line:
        lines.append(line)
    curve = record.get("learning_curve") or {}
    x, metric = curve.get("x", "per_class"), curve.get("metric", "accuracy")
    unit = "per class" if x == "per_class" else "rows"
    for point in curve.get("points", []):
        size = "all" if point.get("all") else point[x]
        lines.append(f"learning curve: {size} {unit} -> {metric} {point[metric]['mean']:.4f} ± "
                     f"{point[metric]['std']:.4f}")
    for target in (curve.get("extrapolation") or {}).get("targets", []):
        lines.append(f"labels for {target[metric]:.0%} {metric}: {target[x] or '-'} {unit} ({target['status']})")
    return lines
