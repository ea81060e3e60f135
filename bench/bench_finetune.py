"""Fine-tuning benchmarks (issue 3): strategies compared on one data set, and training-step throughput of the
graftkit engine against a plain Hugging Face Trainer run of the same model, batch and threads.

Strategies: each variant runs in its own process (so that its peak memory is its own), on a seeded
stratified subset: linear-probe, finetune (top 2), full, gradual, lp-ft, and each trainable one with
L2-SP. Reported: held-out accuracy / macro-F1, fit time, peak resident memory.

Throughput: the graftkit engine (strategy ``full``, every layer trains; with its default length-grouped batches,
and with uniformly random ones, the plain run's batches) and a plain ``Trainer`` on
``AutoModelForSequenceClassification`` of the same folder, same batch size and torch threads, alternating
in rounds on this (shared) machine; the figures are ratios of median and of mean step times (step = collate +
forward + backward + optimiser step), with the spread over rounds.

Components: the same two models and the same batch outside any Trainer, each part of a step timed
alternately in one process (collate, forward + backward, optimiser step): where a throughput gap would come
from, without the run-to-run noise of whole training runs on a shared machine.

    python bench/bench_finetune.py strategies --data banking77 --per-class 20 --epochs 3
    python bench/bench_finetune.py strategies --data sst2 --train 2000
    python bench/bench_finetune.py strategies --variants peft --data sst2 --train 2000
    python bench/bench_finetune.py throughput --rounds 5 --steps 30
    python bench/bench_finetune.py components --reps 12
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import Clock, machine, save, shared

VARIANTS = {
    "engine": [("linear-probe", {}), ("finetune", {}), ("full", {}), ("gradual", {}), ("lp-ft", {}),
               ("finetune", {"l2_sp": 0.01}), ("full", {"l2_sp": 0.01}), ("gradual", {"l2_sp": 0.01}),
               ("lp-ft", {"l2_sp": 0.01})],
    # issue 4: full fine-tuning against the parameter-efficient strategies, each at its own default learning rate
    "peft": [("linear-probe", {}), ("full", {}), ("lora", {}), ("adapters", {}), ("ia3", {}), ("bitfit", {})],
}


def load_split(name: str, per_class: int, train_rows: int, test_rows: int, seed: int):
    """(train, test) frames with columns text, label."""
    if name == "banking77":
        train = pd.read_csv(shared("data", "banking77", "train.csv")).rename(columns={"category": "label"})
        test = pd.read_csv(shared("data", "banking77", "test.csv")).rename(columns={"category": "label"})
    elif name == "sst2":
        import csv

        read = lambda split: pd.read_csv(shared("data", "sst2", f"{split}.tsv"), sep="\t", quoting=csv.QUOTE_NONE,  # noqa: E731
                                         dtype=str, keep_default_na=False).rename(columns={"sentence": "text"})
        train, test = read("train"), read("dev")
    else:
        sys.exit(f"unknown data set {name!r}; use banking77 or sst2")
    if per_class:
        train = train.groupby("label").sample(per_class, random_state=seed)
    elif train_rows:
        train = train.sample(min(train_rows, len(train)), random_state=seed)
    if test_rows:
        test = test.sample(min(test_rows, len(test)), random_state=seed)
    return train[["text", "label"]], test[["text", "label"]]


def run_variant(args) -> None:
    """One fit in this process; prints one JSON line (accuracy, times, peak memory)."""
    import torch

    import graftkit as gk

    torch.set_num_threads(args.threads)
    train, test = load_split(args.data, args.per_class, args.train, args.test, args.seed)
    params = json.loads(args.params)
    if args.strategy != "linear-probe":
        params.setdefault("epochs", args.epochs)
    with Clock() as clock:
        model = gk.Graft(args.backbone, strategy=args.strategy, batch_size=args.batch_size, seed=args.seed,
                         progress=False, cache_dir=args.cache_dir, **params)
        model.fit(gk.load_data(train, text="text", label="label"))
    metrics = model.evaluate(gk.load_data(test, text="text", label="label"), curves=False)
    training = getattr(model, "training_", None) or {}
    with tempfile.TemporaryDirectory() as folder:  # what a user stores per task
        saved = model.save(Path(folder) / "model")
        artifact_mb = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()) / 1e6
    print(json.dumps({"strategy": args.strategy, "params": params, "accuracy": metrics["accuracy"],
                      "macro_f1": metrics["macro_f1"], "fit_s": round(clock.wall, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "epochs_run": training.get("epochs_run"), "best_epoch": training.get("best_epoch"),
                      "ece_before": metrics["calibration"]["ece_before"], "ece_after": metrics["calibration"]["ece_after"],
                      "temperature": metrics["calibration"]["temperature"],
                      "trainable_share": model.parameter_counts()["share"],
                      "trainable": model.parameter_counts()["trainable"], "artifact_mb": round(artifact_mb, 3)}))


def strategies(args) -> None:
    rows = []
    cache = tempfile.mkdtemp(prefix="bench-finetune-cache-")
    def label(strategy, params):
        return strategy + ("+l2sp" if params.get("l2_sp") else "")

    chosen = [(s, p) for s, p in VARIANTS[args.variants] if not args.only or label(s, p) in args.only]
    for strategy, params in chosen:
        command = [sys.executable, __file__, "variant", "--strategy", strategy, "--params", json.dumps(params),
                   "--cache-dir", cache, *_shared_flags(args)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{strategy} {params} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| strategy | L2-SP | accuracy | macro-F1 | fit s | peak RSS MB | epochs (best) | trained (share) | "
             "artifact MB | ECE before → after T |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = f"{r['trainable']:,} ({100 * r['trainable_share']:.2f}%)"
        epochs = f"{r['epochs_run']} ({r['best_epoch']})" if r["epochs_run"] else "-"
        lines.append(f"| {r['strategy']} | {r['params'].get('l2_sp', '-')} | {r['accuracy']:.4f} | "
                     f"{r['macro_f1']:.4f} | {r['fit_s']} | {r['peak_rss_mb']} | {epochs} | {share} | "
                     f"{r['artifact_mb']:.2f} | {r['ece_before']:.4f} → {r['ece_after']:.4f} |")
    print("\n".join(lines))
    save(f"finetune_{args.variants}_{args.data}", {"machine": machine(), "settings": vars(args), "rows": rows,
                                              "table": lines})


def _shared_flags(args) -> list[str]:
    return ["--data", args.data, "--per-class", str(args.per_class), "--train", str(args.train), "--test",
            str(args.test), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed",
            str(args.seed), "--threads", str(args.threads), "--backbone", args.backbone]


class StepTimer:
    """Times of the optimiser steps of an epoch: the first from its own start (its batch already collated), each
    later one from the end of the step before (collate + forward + backward + optimiser step)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_epoch_begin(self, *a, **k):
                timer.last = None

            def on_step_begin(self, *a, **k):
                if timer.last is None:
                    timer.last = time.perf_counter()

            def on_step_end(self, *a, **k):
                now = time.perf_counter()
                timer.steps.append(now - timer.last)
                timer.last = now

        self.steps, self.last, self.callback = [], None, Callback()


def step_figures(steps: list[float]) -> dict:
    """median: of the steps after the first (the figure of earlier runs: one typical batch); mean: of every step,
    the epoch's time per batch (length-grouped batches put the longest first, so the median alone would flatter
    them)."""
    return {"median": statistics.median(steps[1:]), "mean": statistics.fmean(steps)}


def _graftkit_steps(path, frame, batch_size, steps, group_by_length: bool = True) -> list[float]:
    import graftkit as gk

    timer = StepTimer()
    rows = frame.head(batch_size * (steps + 1))
    gk.Graft(str(path), strategy="full", batch_size=batch_size, progress=False, epochs=1, val_size=0, patience=0,
             calibrate=False, group_by_length=group_by_length).fit(gk.load_data(rows, text="text", label="label"),
                                                                   callbacks=[timer.callback])
    return timer.steps


def _graftkit_random_steps(path, frame, batch_size, steps) -> list[float]:
    """graftkit with uniformly random batches: the plain Trainer's batches, so only the loop around them differs."""
    return _graftkit_steps(path, frame, batch_size, steps, group_by_length=False)


def _plain_steps(path, frame, batch_size, steps) -> list[float]:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    rows = frame.head(batch_size * (steps + 1))
    labels = {label: i for i, label in enumerate(sorted(rows["label"].unique()))}
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(rows["text"].tolist(), truncation=True, max_length=256)
    dataset = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                "labels": labels[label]} for i, label in enumerate(rows["label"])]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels), dtype=torch.float32)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, num_train_epochs=1,
                                      learning_rate=5e-5, warmup_steps=0.1, save_strategy="no", eval_strategy="no",
                                      logging_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                                      seed=0, data_seed=0)  # graftkit's seed: the same batches in the same order
        Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=[timer.callback]).train()
    return timer.steps


def throughput(args) -> None:
    import torch

    from graftkit.backbones.sources import resolve_source

    torch.set_num_threads(args.threads)
    path = Path(resolve_source(args.backbone)[0].path)
    train, _ = load_split(args.data, 0, 0, 0, args.seed)
    frame = train.sample(frac=1.0, random_state=args.seed)
    rounds = []
    for round_ in range(args.rounds):
        order = [("graftkit", _graftkit_steps), ("graftkit_random", _graftkit_random_steps), ("plain", _plain_steps)]
        if round_ % 2:
            order.reverse()
        times = {name: step_figures(run(path, frame, args.batch_size, args.steps)) for name, run in order}
        ratios = {f"{arm}_{figure}_ratio": times["plain"][figure] / times[arm][figure]
                  for arm in ("graftkit", "graftkit_random") for figure in ("median", "mean")}
        rounds.append({**times, **ratios})
        print(json.dumps(rounds[-1]), flush=True)
    summary = {}
    for key in rounds[0]:
        if key.endswith("_ratio"):  # the median over rounds of each per-round ratio, with its range
            values = [r[key] for r in rounds]
            summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    print(json.dumps(summary))
    save(f"finetune_throughput_{args.data}", {"machine": machine(), "settings": vars(args), "rounds": rounds,
                                              "summary": summary})


def components(args) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from graftkit.backbones.registry import load_backbone
    from graftkit.strategies import get_strategy
    from graftkit.training.data import BackboneCollator
    from graftkit.training.engine import build_model
    from graftkit.training.groups import optimizer_groups

    torch.set_num_threads(args.threads)
    train, _ = load_split(args.data, 0, 0, 0, args.seed)
    batch = train.sample(args.batch_size, random_state=args.seed)
    classes = sorted(train["label"].unique())
    labels = [classes.index(label) for label in batch["label"]]
    backbone, strategy = load_backbone(args.backbone), get_strategy("full", epochs=1)
    ours_collate = BackboneCollator(backbone)
    rows = [{"item": text, "where": "bench", "label": label} for text, label in zip(batch["text"], labels)]
    from graftkit.tasks import task_class

    task = task_class("classification")(classes=tuple(classes))
    ours = build_model(backbone, strategy, ours_collate(rows[:2])["inputs"], task, args.seed).train()
    ours_opt = torch.optim.AdamW(optimizer_groups(ours.head, ours.plan, strategy), lr=5e-5, fused=True)
    path = backbone.source.path
    tokenizer = AutoTokenizer.from_pretrained(path)
    plain = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(classes), dtype=torch.float32)
    plain.train()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=5e-5, fused=True)
    plain_collate = DataCollatorWithPadding(tokenizer)
    encoded = tokenizer(batch["text"].tolist(), truncation=True, max_length=256)
    features = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)]

    def timed_step(times, collate, loss, optimizer):
        with Clock() as c:
            inputs = collate()
        times["collate"].append(c.wall)
        with Clock() as c:
            loss(inputs).backward()
        times["forward_backward"].append(c.wall)
        with Clock() as c:
            optimizer.step()
            optimizer.zero_grad()
        times["optimizer"].append(c.wall)

    steps = {"graftkit": (lambda: ours_collate(rows), lambda b: ours(b["inputs"], b["labels"]).loss, ours_opt),
             "plain": (lambda: plain_collate(features), lambda b: plain(**b).loss, plain_opt)}
    parts = ("collate", "forward_backward", "optimizer")
    times = {name: {part: [] for part in parts} for name in ("graftkit", "plain")}
    for rep in range(args.reps):  # alternate, so both see the same machine; the first two warm up
        for name in ("graftkit", "plain")[:: 1 if rep % 2 else -1]:
            timed_step(times[name], *steps[name])
    medians = {name: {part: round(statistics.median(v[2:]) * 1000, 2) for part, v in parts.items()}
               for name, parts in times.items()}
    totals = {name: round(sum(parts.values()), 2) for name, parts in medians.items()}
    summary = {"median_ms": medians, "step_ms": totals, "ratio": round(totals["plain"] / totals["graftkit"], 4),
               "optimizer_groups": {"graftkit": len(ours_opt.param_groups), "plain": len(plain_opt.param_groups)}}
    print(json.dumps(summary))
    save(f"finetune_components_{args.data}", {"machine": machine(), "settings": vars(args), "summary": summary})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["strategies", "throughput", "components", "variant"])
    parser.add_argument("--data", default="sst2", help="sst2 or banking77 (default: sst2)")
    parser.add_argument("--per-class", type=int, default=0, help="training rows per class (0: use --train)")
    parser.add_argument("--train", type=int, default=2000, help="training rows, seeded sample (default: 2000)")
    parser.add_argument("--test", type=int, default=0, help="test rows, seeded sample (0: the whole test split)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--rounds", type=int, default=5, help="throughput: alternating rounds")
    parser.add_argument("--steps", type=int, default=30, help="throughput: optimiser steps per run")
    parser.add_argument("--reps", type=int, default=12, help="components: timed steps per model (2 warm up)")
    parser.add_argument("--variants", choices=sorted(VARIANTS), default="engine",
                        help="strategies: engine (issue 3's table) or peft (issue 4's; default: engine)")
    parser.add_argument("--only", nargs="+", metavar="VARIANT",
                        help="strategies: run only these variants (e.g. finetune gradual full+l2sp)")
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = {"strategies": strategies, "throughput": throughput, "components": components, "variant": run_variant}
    modes[args.mode](args)


if __name__ == "__main__":
    main()
