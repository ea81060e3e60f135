"""``graftkit.auto`` for a generative task (speech recognition): rung 0, the pretrained model as it is (zero-shot
transcription with its own ``generate``), on every given backbone, then the trainable rungs (decoder-only, then
LoRA on the decoder) on the best one while each fits the budget and the previous one paid, chosen by the task's
primary validation metric (WER: lower is better), the test set scored after every decision.

There is no classical baseline or linear probe to stand on: a transcript has no classical estimator, and rung 0
is the reference every adapted model is compared with (Radford et al. 2022 report Whisper zero-shot first)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from graftkit.errors import ConfigError, GraftkitError
from graftkit.playbook.budget import format_seconds, peak_rss_mib
from graftkit.playbook.leaderboard import choose, write_leaderboard
from graftkit.playbook.steps import Run

logger = logging.getLogger(__name__)

# the ladder of an encoder-decoder: the whole decoder with the encoder frozen (the common recipe for a domain's
# vocabulary and acoustics), then LoRA adapters on the decoder (fewer parameters, the same frozen encoder)
GENERATIVE_LADDER = ("decoder-only", "lora")
NO_BASELINE = {"validation": {"score": float("-inf")}}  # nothing classical to lead: escalation follows the gains


def zero_shot(run: Run, spec: str, reason: str, graft_options: dict) -> None:
    """Rung 0 on ``spec``: fit nothing, transcribe the validation rows; its time per row is the forward cost the
    trainable rungs' estimates build on (a ``generate`` pass: the validation passes they make)."""
    from graftkit.graft import Graft

    started = time.perf_counter()
    try:
        model = Graft(backbone=spec, strategy="zero-shot", **graft_options).fit(run.train, validation=run.val)
    except GraftkitError as exc:
        run.row("zero-shot", spec, "zero-shot", "failed", f"{reason}; failed: {exc}",
                seconds=round(time.perf_counter() - started, 3))
        return
    seconds = round(time.perf_counter() - started, 3)
    run.forward_s[spec] = seconds / max(len(run.val), 1)
    summary = model.metrics_["validation"]
    sign = 1.0 if run.task.greater_is_better else -1.0
    row = run.row("zero-shot", spec, "zero-shot", "ran", reason,
                  validation={**summary, "score": sign * summary[run.metric]}, seconds=seconds,
                  peak_rss_mib=peak_rss_mib(), parameters=model.parameter_counts())
    run.models[row["step"]] = model


def auto_generative(table, task, *, backbones, clock, budget, budget_s, validation, test, seed, output, overwrite,
                    val_size, ladder, epochs, finetune_layers, min_gain_per_minute, graft_options, n_bootstrap,
                    load_like, track=None):
    """``auto``'s run for a ``task.generative`` task (``core.auto`` hands it over after reading the data)."""
    from graftkit.playbook.core import LADDER, AutoResult, _escalate

    if not backbones:
        raise ConfigError(f"auto on {task.kind} needs the encoder-decoder models to try, e.g. --backbones "
                          "openai/whisper-tiny.en or a local Whisper directory (backbones=); `graftkit models` lists "
                          "the installed encoders, which cannot write transcripts")
    ladder = list(GENERATIVE_LADDER) if list(ladder) == list(LADDER) else [s for s in ladder if s != "lp-ft"]
    roles = {table.modality: table.input_column, "label": table.label_column}
    if validation is None:
        train, val = task.split(table, test_size=val_size, seed=seed)
        validation_source = f"a {val_size:g} share of the data split as the {task.kind} task splits, seed {seed}"
    else:
        train, val = table, load_like(validation, roles)
        validation_source = f"the given validation data ({len(val)} rows)"
    test_table = None if test is None else load_like(test, roles)
    settings = {"backbones": backbones, "ladder": ladder, "epochs": epochs, "min_gain_per_minute": min_gain_per_minute,
                "seed": seed, "val_size": None if validation is not None else val_size, "train_rows": len(train),
                "validation_rows": len(val), "test_rows": None if test_table is None else len(test_table),
                "task": task.to_dict(), "metric": task.primary_metric, "second_metric": task.headline[1],
                "use_cache": False}
    run = Run(clock, train, val, test_table, task, settings)
    run.log("split", f"{len(train)} training rows, {len(val)} validation rows ({validation_source})"
            + (f", {len(test_table)} test rows scored after every decision" if test_table is not None else ""))
    for position, spec in enumerate(backbones, start=1):
        done = [row for row in run.rows if row["status"] == "ran"]
        if done:  # not the first: its validation pass must fit what is left
            fits, note = run.budget_note(max(row["seconds"] for row in done))
            if not fits:
                run.row("zero-shot", spec, "zero-shot", "skipped", f"skipped: would not fit the budget ({note})")
                continue
        zero_shot(run, spec, f"rung 0, always measured first: the pretrained model as it is ({position} of "
                  f"{len(backbones)})", graft_options)
    best = choose(run.rows)
    if best is None:
        for strategy in ladder:
            run.row("trainable", "-", strategy, "skipped", "skipped: no pretrained model transcribed, nothing to adapt")
    else:
        run.log("escalation", f"on {best['backbone']}, the best at rung 0 on validation ({run.metric} "
                f"{best['validation'][run.metric]:.4f})")
        _escalate(run, best["backbone"], ladder, epochs=epochs, layers=finetune_layers, min_gain=min_gain_per_minute,
                  graft_options=graft_options, baseline_row=NO_BASELINE)
    chosen = choose(run.rows)
    if chosen is not None:
        chosen["chosen"] = True
        runner = max((r for r in run.rows if r is not chosen and r["status"] == "ran"),
                     key=lambda r: r["validation"]["score"], default=None)
        chosen["chosen_reason"] = (f"best validation {run.metric} {chosen['validation'][run.metric]:.4f}" + (
            f"; next best {runner['backbone']} / {runner['strategy']} {runner['validation'][run.metric]:.4f}"
            if runner else ""))
    if test_table is not None:
        run.score_test(None, n_bootstrap, seed)
        run.log("test", f"scored {len(test_table)} test rows for every fitted row (after all decisions)")
    result = AutoResult(model=run.models.get(chosen["step"]) if chosen else None, chosen=chosen, shipped=chosen,
                        rows=run.rows, steps=run.steps, baseline=None, baseline_wins=False, message=None,
                        budget=budget if isinstance(budget, str) else format_seconds(budget_s), budget_s=budget_s,
                        seconds=clock.elapsed, validation_source=validation_source, settings=settings)
    if output is not None:
        if result.model is None:
            raise ConfigError(f"no model transcribed, so there is nothing to save in {str(output)!r}; see the "
                              "reasons: " + "; ".join(f"{r['backbone']}: {r['reason']}" for r in run.rows))
        result.model.save(Path(output), overwrite=overwrite)
        result.output = str(output)
        run.log("save", f"saved step {chosen['step']} to {output} with leaderboard.json and leaderboard.md")
        result.seconds = clock.elapsed
        write_leaderboard(Path(output), result)
        if track:
            from graftkit.tracking import log_model_run

            result.tracking = log_model_run(output, params={"budget": result.budget, "seed": seed,
                                                            "backbones": ",".join(map(str, backbones)),
                                                            "chosen_step": chosen["step"]},
                                            run_name=f"auto {Path(output).name}",
                                            artifacts=[Path(output) / "leaderboard.json",
                                                       Path(output) / "leaderboard.md"])
    return result
