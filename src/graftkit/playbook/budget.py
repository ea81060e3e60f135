"""Budgets and cost estimates for ``graftkit.auto``: parse "20m" / "90s" / "1h30m", the clock, the process's
peak memory, and the time estimate of a trainable step from what was measured."""

from __future__ import annotations

import os
import re
import resource
import sys
import time

from graftkit.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smh])")

# cost of one training pass over a row relative to one inference forward pass of the same row (forward with
# activations kept + backward + optimiser step); "full" and "lp-ft" back-propagate through every group (lp-ft's
# probe head comes from the feature cache), LoRA and the top groups of "finetune" through fewer, but the
# backward still runs down to the lowest trained group
TRAIN_FACTOR = {"finetune": 3.0, "lora": 3.0, "lp-ft": 4.0, "full": 4.0}
STEP_OVERHEAD_S = 5.0  # loading the backbone again, the Trainer's set-up, checkpoints
# one continued-pretraining (masked-LM) step over a row relative to one inference forward pass: forward and backward
# through every layer plus the vocabulary-sized decoder on every token (MiniLM: 30k x 384 per token, about half the
# encoder's own multiply-adds)
PRETRAIN_FACTOR = 5.0


def parse_budget(budget) -> float:
    """Seconds from ``"20m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or a number of seconds; ConfigError otherwise."""
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        seconds = float(budget)
    elif isinstance(budget, str) and budget.strip():
        text = budget.strip().lower()
        parts = _PART.findall(text)
        if not parts or _PART.sub("", text).strip():
            raise ConfigError(f"budget {budget!r} is not a duration; write it as a number and a unit: s, m or h, e.g. "
                              "90s, 20m, 1h or 1h30m (budget= / --budget)")
        seconds = sum(float(value) * _UNITS[unit] for value, unit in parts)
    else:
        raise ConfigError(f"budget {budget!r} is not a duration; write e.g. 90s, 20m or 1h (budget= / --budget)")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"budget {budget!r} must be a positive duration, e.g. 90s, 20m or 1h (budget= / --budget)")
    return seconds


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KiB on Linux


def process_seconds() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where it cannot be read): a command-line budget is a
    wall-clock promise, and importing torch and transformers on a busy 2-core machine took 27 s of a 10-minute one."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            now = float(uptime.read().split()[0])
        return max(0.0, now - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22 of stat: the start time
    except (OSError, ValueError, IndexError):
        return 0.0


class Clock:
    """The budget's clock; ``spent``: seconds of the budget gone before it started (the process's start-up)."""

    def __init__(self, budget_s: float, spent: float = 0.0):
        self.budget_s = budget_s
        self.started = time.perf_counter() - spent

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self, reserve: float = 0.0) -> float:
        return self.budget_s - self.elapsed - reserve


def estimate_trainable(strategy: str, *, forward_s_per_row: float, train_rows: int, val_rows: int, epochs: int,
                       correction: float = 1.0, feature_rows: int = 0, target_rows: int = 0) -> tuple[float, str]:
    """Seconds a trainable step should take, and how the figure was reached: every pass it makes.

    ``TRAIN_FACTOR × forward × train rows × epochs`` (training) ``+ forward × val rows × (epochs + 1)`` (the
    per-epoch evaluation and the calibration pass, whose outputs the validation metrics reuse) ``+ forward ×
    feature_rows`` (the pretrained features of the training rows, for the standardisation and LP-FT's probe: 0 when
    the probe's feature cache holds them) ``+ STEP_OVERHEAD_S``, times ``correction`` = measured / estimated of the
    previous trainable step. The training metrics cost nothing: they come from the training loop's own outputs.
    ``target_rows``: unlabelled target rows trained on per epoch besides the training rows (domain-adversarial
    training pairs every source row with a target row, forward and backward through the same layers).
    """
    factor = TRAIN_FACTOR.get(strategy, 4.0)
    raw = (forward_s_per_row * (factor * (train_rows + target_rows) * epochs + val_rows * (epochs + 1) + feature_rows)
           + STEP_OVERHEAD_S)
    rows = f"({train_rows} + {target_rows} target) rows" if target_rows else f"{train_rows} rows"
    basis = (f"{factor:g} x forward {forward_s_per_row * 1000:.2f} ms/row x {rows} x {epochs} epoch(s) "
             f"+ {epochs + 1} validation passes" + (f" + {feature_rows} rows' pretrained features" if feature_rows
                                                     else "") + f" + {STEP_OVERHEAD_S:g}s set-up")
    if correction != 1.0:
        basis += f", x {correction:.2f} (measured / estimated time of the previous trainable step)"
    return raw * correction, basis


def estimate_pretrain(steps: int, *, forward_s_per_row: float, batch_size: int,
                      correction: float = 1.0) -> tuple[float, str]:
    """Seconds ``steps`` continued-pretraining steps of ``batch_size`` documents should take:
    ``PRETRAIN_FACTOR × forward × batch × steps + STEP_OVERHEAD_S``, times ``correction`` (measured / estimated of
    the previous trainable step, as for every rung)."""
    raw = forward_s_per_row * PRETRAIN_FACTOR * batch_size * steps + STEP_OVERHEAD_S
    basis = (f"{PRETRAIN_FACTOR:g} x forward {forward_s_per_row * 1000:.2f} ms/row x {batch_size} documents x {steps} "
             f"step(s) + {STEP_OVERHEAD_S:g}s set-up")
    if correction != 1.0:
        basis += f", x {correction:.2f} (measured / estimated time of the previous trainable step)"
    return raw * correction, basis


def pretrain_steps_that_fit(seconds: float, *, forward_s_per_row: float, batch_size: int, correction: float = 1.0,
                            most: int) -> int:
    """The most continued-pretraining steps (at most ``most``) whose estimate fits ``seconds``; 0 when none does."""
    per_step = forward_s_per_row * PRETRAIN_FACTOR * batch_size * correction
    room = seconds - STEP_OVERHEAD_S * correction
    if room <= 0:
        return 0
    return int(min(most, room // per_step)) if per_step > 0 else most
