"""The ``auto`` leaderboard: choosing by validation, test accuracy ± bootstrap std, and the table as text /
Markdown / JSON (written atomically into the artifact directory)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

MEMORY_NOTE = ("memory: the process's peak resident set size (resource.getrusage ru_maxrss) when the step ended; "
               "it never decreases, so a step's figure includes the steps before it")
# simpler first: on a validation tie the cheaper rung wins
COMPLEXITY = {"linear-probe": 1, "finetune": 2, "lora": 3, "lp-ft": 4, "full": 5}  # by strategy; the baseline is 0


def bootstrap_std(correct: np.ndarray, n_bootstrap: int = 1000, seed: int = 0) -> float:
    """Standard deviation of the accuracy over ``n_bootstrap`` resamples of the test rows (seeded)."""
    correct = np.asarray(correct, dtype=float)
    if len(correct) < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    draws = correct[rng.integers(0, len(correct), size=(n_bootstrap, len(correct)))].mean(axis=1)
    return float(draws.std(ddof=1))


def choose(rows: list[dict]) -> dict | None:
    """The row with the best validation accuracy (then macro-F1, then the simpler rung). Test figures are
    never read here."""
    ran = [row for row in rows if row["status"] == "ran" and row.get("validation")]
    if not ran:
        return None
    return max(ran, key=lambda r: (r["validation"]["accuracy"], r["validation"]["macro_f1"], -_complexity(r)))


def _complexity(row: dict) -> int:
    return 0 if row["kind"] == "baseline" else COMPLEXITY.get(row.get("strategy"), 9)


def _cell(value, digits=4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _params(parameters) -> str:
    if not parameters:
        return "-"
    count = parameters["trainable"]
    text = f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)
    return f"{text} ({100 * parameters['share']:.2f}%)"


COLUMNS = ("step", "backbone", "strategy", "status", "val acc", "val F1", "test acc ± std", "seconds", "peak MiB",
           "trainable params")


def table_cells(row: dict) -> list[str]:
    val, test = row.get("validation") or {}, row.get("test")
    test_text = "-" if not test else f"{test['accuracy']:.4f} ± {test['accuracy_std']:.4f}"
    seconds = "-" if row.get("seconds") is None else f"{row['seconds']:.1f}"
    if row["status"] == "skipped" and row.get("estimated_s") is not None:
        seconds = f"(est {row['estimated_s']:.0f})"
    return [str(row["step"]) + ("*" if row.get("chosen") else ""), row["backbone"], row["strategy"], row["status"],
            _cell(val.get("accuracy")), _cell(val.get("macro_f1")), test_text, seconds,
            _cell(row.get("peak_rss_mib"), 0), _params(row.get("parameters"))]


def format_text(result) -> str:
    cells = [list(COLUMNS)] + [table_cells(row) for row in result.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(COLUMNS))).rstrip() for c in cells]
    lines.append("")
    lines.extend(_explanations(result))
    return "\n".join(lines)


def format_markdown(result) -> str:
    lines = ["# graftkit auto leaderboard", "",
             f"Budget {result.budget} ({result.budget_s:.0f}s); used {result.seconds:.1f}s. Chosen by validation "
             f"accuracy ({result.validation_source}); test metrics were computed after every decision.", "",
             "| " + " | ".join(COLUMNS) + " | reason |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in result.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row))
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
    if result.chosen is not None:
        lines.append(f"chosen: step {result.chosen['step']} ({result.chosen['backbone']} / "
                     f"{result.chosen['strategy']}): {result.chosen['chosen_reason']}")
    if result.shipped is not None and result.shipped is not result.chosen:
        lines.append(f"saved model: step {result.shipped['step']} ({result.shipped['backbone']} / "
                     f"{result.shipped['strategy']}), the best pretrained candidate on validation")
    lines.append(f"* = chosen; test acc ± std: bootstrap standard deviation over the test rows; {MEMORY_NOTE}")
    return lines


def _atomic_write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_leaderboard(folder: Path, result) -> tuple[Path, Path]:
    """``leaderboard.json`` and ``leaderboard.md`` in ``folder``, each written to a temporary file and renamed."""
    folder = Path(folder)
    json_path, md_path = folder / "leaderboard.json", folder / "leaderboard.md"
    _atomic_write(json_path, json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
    _atomic_write(md_path, format_markdown(result))
    return json_path, md_path
