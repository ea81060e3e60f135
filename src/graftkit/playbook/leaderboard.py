"""The ``auto`` leaderboard: choosing by validation, the test metric ± bootstrap std, and the table as text /
Markdown / JSON (written atomically into the artifact directory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graftkit.atomic import write_text_atomic

MEMORY_NOTE = ("memory: the process's peak resident set size (resource.getrusage ru_maxrss) when the step ended; "
               "it never decreases, so a step's figure includes the steps before it")
# simpler first: on a validation tie the cheaper rung wins
COMPLEXITY = {"zero-shot": 0.5, "linear-probe": 1, "decoder-only": 2, "finetune": 2, "lora": 3, "lp-ft": 4,
              "full": 5}  # by strategy; the baseline is 0


def bootstrap_std(task, y, outputs, calibration=None, n_bootstrap: int = 1000, seed: int = 0) -> float:
    """Standard deviation of the task's primary metric over ``n_bootstrap`` resamples of the test rows (seeded):
    a mean of per-row scores where the metric is one (accuracy), else recomputed per resample."""
    y, outputs = np.asarray(y), np.asarray(outputs)
    if len(y) < 2:
        return 0.0
    index = np.random.default_rng(seed).integers(0, len(y), size=(n_bootstrap, len(y)))
    draws = task.resampled_primary(y, outputs, index, calibration)
    return float(draws.std(ddof=1))


def choose(rows: list[dict]) -> dict | None:
    """The row with the best validation score (the task's primary metric; then macro-F1 where the task has it,
    then the simpler rung). Test figures are never read here."""
    ran = [row for row in rows if row["status"] == "ran" and row.get("validation")]
    if not ran:
        return None
    return max(ran, key=lambda r: (r["validation"]["score"], r["validation"].get("macro_f1") or 0.0, -_complexity(r)))


def _complexity(row: dict) -> float:
    if row["kind"] == "baseline":
        return 0
    return COMPLEXITY.get(row.get("strategy"), 9) + (0.5 if row.get("adaptation") else 0)  # a tie: unadapted wins


def _cell(value, digits=4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _params(parameters) -> str:
    if not parameters:
        return "-"
    count = parameters["trainable"]
    text = f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)
    return f"{text} ({100 * parameters['share']:.2f}%)"


SHORT = {"accuracy": "acc", "macro_f1": "F1", "micro_f1": "micro-F1", "r2": "R²", "rmse": "RMSE"}


def columns(metric: str = "accuracy", second: str = "macro_f1") -> tuple[str, ...]:
    short, other = SHORT.get(metric, metric), SHORT.get(second, second)
    return ("step", "backbone", "strategy", "status", f"val {short}", f"val {other}", f"test {short} ± std", "seconds",
            "peak MiB", "trainable params")


def table_cells(row: dict, metric: str = "accuracy", second: str = "macro_f1") -> list[str]:
    val, test = row.get("validation") or {}, row.get("test")
    test_text = "-" if not test else f"{test[metric]:.4f} ± {test['score_std']:.4f}"
    seconds = "-" if row.get("seconds") is None else f"{row['seconds']:.1f}"
    if row["status"] == "skipped" and row.get("estimated_s") is not None:
        seconds = f"(est {row['estimated_s']:.0f})"
    status = "ran, stopped at budget" if row.get("stopped_at_budget") else row["status"]
    strategy = row["strategy"] + (f" + {row['adaptation']}" if row.get("adaptation") else "")  # DANN / TAPT
    return [str(row["step"]) + ("*" if row.get("chosen") else ""), row["backbone"], strategy, status,
            _cell(val.get(metric)), _cell(val.get(second)), test_text, seconds,
            _cell(row.get("peak_rss_mib"), 0), _params(row.get("parameters"))]


def _names(result) -> tuple[str, str]:
    settings = getattr(result, "settings", None) or {}
    return settings.get("metric", "accuracy"), settings.get("second_metric", "macro_f1")


def format_text(result) -> str:
    names = _names(result)
    header = columns(*names)
    cells = [list(header)] + [table_cells(row, *names) for row in result.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells]
    lines.append("")
    lines.extend(_explanations(result))
    return "\n".join(lines)


def format_markdown(result) -> str:
    lines = ["# graftkit auto leaderboard", "",
             f"Budget {result.budget} ({result.budget_s:.0f}s); used {result.seconds:.1f}s. Chosen by validation "
             f"{_names(result)[0]} ({result.validation_source}); test metrics were computed after every decision.", "",
             "| " + " | ".join(columns(*_names(result))) + " | reason |", "|" + "---|" * (len(columns()) + 1)]
    for row in result.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row, *_names(result)))
                     + f" | {row['reason'].replace('|', '/')} |")
    lines.append("")
    lines.extend(f"- {line}" for line in _explanations(result))
    lines.append("")
    lines.append("## Steps")
    lines.append("")
    lines.extend(f"{i}. **{s['action']}** ({s['elapsed_s']:.1f}s): {s['reason']}" for i, s in
                 enumerate(result.steps, start=1))
    return "\n".join(lines) + "\n"


def _explanations(result) -> list[str]:
    lines = []
    for row in result.rows:
        lines.append(f"step {row['step']} {row['backbone']} / {row['strategy']}: {row['reason']}")
    if result.message:
        lines.append(result.message)
    shift = getattr(result, "domain_shift", None)
    if shift and shift.get("decision"):
        lines.append(f"domain shift to {shift['target']['data']}: {shift['decision']}")
    if result.chosen is not None:
        lines.append(f"chosen: step {result.chosen['step']} ({result.chosen['backbone']} / "
                     f"{result.chosen['strategy']}): {result.chosen['chosen_reason']}")
    if result.shipped is not None and result.shipped is not result.chosen:
        lines.append(f"saved model: step {result.shipped['step']} ({result.shipped['backbone']} / "
                     f"{result.shipped['strategy']}), the best pretrained candidate on validation")
    short = SHORT.get(_names(result)[0], _names(result)[0])
    lines.append(f"* = chosen; test {short} ± std: bootstrap standard deviation over the test rows; {MEMORY_NOTE}")
    return lines


def _atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def write_leaderboard(folder: Path, result) -> tuple[Path, Path]:
    """``leaderboard.json`` and ``leaderboard.md`` in ``folder``, each written to a temporary file and renamed."""
    folder = Path(folder)
    json_path, md_path = folder / "leaderboard.json", folder / "leaderboard.md"
    _atomic_write(json_path, json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
    _atomic_write(md_path, format_markdown(result))
    return json_path, md_path
