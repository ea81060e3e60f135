"""Multi-label classification and regression on real data: the classical baseline, the MiniLM probe and the
trainable strategies, side by side on the same split (issue "Tasks as a layer of their own").

    python bench/bench_tasks.py regression --rows 5000 --epochs 2
    python bench/bench_tasks.py multilabel --train 3000 --epochs 2

- regression: women's clothing reviews, Rating (1-5) from Review Text, ``--task regression``; a seeded sample of
  ``--rows`` reviews split 80/20 by the regression task (target-binned); R², RMSE, MAE, Spearman; the coverage of
  the 0.9 split-conformal interval on the test rows; train time.
- multilabel: CoNLL-2003 sentences labelled with the set of entity types they mention (PER / LOC / ORG / MISC,
  empty allowed); a seeded ``--train`` sample of the train split, the whole test split; micro / macro-F1 and subset
  accuracy with the tuned per-label thresholds, and the same model at a fixed 0.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import graftkit as gk
from graftkit.evaluation.baselines import run_baseline
from graftkit.tasks import infer_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clothing_reviews, conll_entity_sets, machine, save  # noqa: E402

STRATEGIES = ("linear-probe", "finetune", "lp-ft", "lora")


def _splits(args):
    if args.mode == "regression":
        frame = clothing_reviews().sample(n=args.rows, random_state=args.seed)
        table = gk.load_data(frame, text="text", label="rating")
        task = infer_task(table, "regression")
        train, test = task.split(table, test_size=0.2, seed=args.seed)
        return task, train, test
    train_frame = conll_entity_sets("train")
    if args.train:
        train_frame = train_frame.sample(n=args.train, random_state=args.seed)
    test_frame = conll_entity_sets("test")
    train = gk.load_data(train_frame, text="text", label="types")
    test = gk.load_data(test_frame, text="text", label="types")
    task = infer_task(train, "multilabel-classification", label_sep="|")
    return task, train, test


def _row(name, task, metrics, seconds, extra=None) -> dict:
    row = {"model": name, "seconds": round(seconds, 1), **{k: metrics.get(k) for k in ("n", *task.headline)}}
    return {**row, **(extra or {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["regression", "multilabel"])
    parser.add_argument("--rows", type=int, default=5000, help="regression: reviews sampled before the 80/20 split")
    parser.add_argument("--train", type=int, default=3000, help="multilabel: training sentences sampled (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task, train, test = _splits(args)
    print(f"{machine()}\n{task.kind}: {len(train)} training rows, {len(test)} test rows")
    rows = []
    started = time.perf_counter()
    baseline = run_baseline(train, test, task, seed=args.seed)
    rows.append(_row(baseline["name"], task, {**baseline, "n": baseline["n_test"]}, time.perf_counter() - started))
    print(rows[-1], flush=True)
    for strategy in args.strategies:
        params = {} if strategy == "linear-probe" else {"epochs": args.epochs}
        started = time.perf_counter()
        model = gk.Graft(strategy=strategy, batch_size=args.batch_size, seed=args.seed, progress=False,
                         task=task.kind, task_options={"label_sep": "|"} if task.kind != "regression" else {},
                         **params).fit(train)
        seconds = time.perf_counter() - started
        metrics = model.evaluate(test, curves=False)
        extra = {"parameters_trained": model.parameter_counts()["trainable"]}
        if "interval" in metrics:
            extra["interval_0.9"] = {k: metrics["interval"].get(k) for k in ("level", "coverage", "half_width")}
        if "fixed_threshold_0.5" in metrics:
            extra["fixed_0.5"] = metrics["fixed_threshold_0.5"]
            extra["thresholds"] = dict(zip(task.labels, np.round(model.calibration_["thresholds"], 3).tolist()))
        rows.append(_row(f"all-MiniLM-L6-v2 + {strategy}", task, metrics, seconds, extra))
        print(rows[-1], flush=True)
    save(f"tasks-{args.mode}", {"machine": machine(), "task": task.kind, "train_rows": len(train),
                                "test_rows": len(test), "epochs": args.epochs, "rows": rows})
    print()
    print("| model | " + " | ".join(task.headline) + " | train s |")
    print("|---|" + "---|" * (len(task.headline) + 1))
    for row in rows:
        print(f"| {row['model']} | " + " | ".join("-" if row[k] is None else f"{row[k]:.4f}" for k in task.headline)
              + f" | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
