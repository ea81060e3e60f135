"""Issue 12: text + tabular fusion on the women's clothing reviews (../shared/data/womens_clothing_reviews).

Seeded subsample of ROWS rows (the machine is 2 shared cores), seeded 80/20 split (stratified as the task
splits), two targets: Recommended IND (binary: accuracy, ROC-AUC) and Rating (regression: R², RMSE). Inputs:
Title + Review Text (MiniLM) + Age + Positive Feedback Count (numeric) + Division / Department / Class Name
(categorical). Rows per target:

  tabular-only GBDT | text-only MiniLM probe (linear head on both text columns' embeddings) |
  TF-IDF + tabular GBDT (classical baseline) | frozen fusion (MiniLM + tabular -> GBDT) |
  LoRA fusion (MiniLM LoRA-tuned on the target on TUNE_ROWS training rows, then its embeddings + tabular -> GBDT) |
  joint fusion (--joint: MiniLM LoRA-tuned on every training row with the tabular columns concatenated to its
  pooled embedding before the output layer, one engine run; fusion/joint.py)

plus the paired bootstrap (1,000 draws over test rows) of fusion minus each single source in the primary
metric, train / predict seconds per 1,000 rows, and the feature-group importance of the fusion models.

  PYTHONPATH=src python bench/bench_fusion.py --rows 2000 --tune-rows 600 [--joint --joint-epochs 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np
import pandas as pd
from sklearn.metrics import mean_squared_error, r2_score, roc_auc_score

from graftkit.data import load_data
from graftkit.fusion.baseline import ClassicalFusion
from graftkit.fusion.model import FusionModel
from graftkit.tasks import infer_task

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "womens_clothing_reviews",
                    "Womens Clothing E-Commerce Reviews.csv")
TEXT = ["Title", "Review Text"]
NUMERIC = ["Age", "Positive Feedback Count"]
CATEGORICAL = ["Division Name", "Department Name", "Class Name"]
REDUCE = {"reduce": "pca", "components": 64}  # per text column, fitted on the training rows
TARGETS = {"Recommended IND": "classification", "Rating": "regression"}


def scores(task, y, outputs) -> dict:
    if task.kind == "classification":
        positive = task.labels.index("1")
        return {"accuracy": float((outputs.argmax(1) == y).mean()),
                "roc_auc": float(roc_auc_score(y == positive, outputs[:, positive]))}
    pred = outputs.reshape(len(y), -1)[:, 0]
    return {"r2": float(r2_score(y, pred)), "rmse": float(np.sqrt(mean_squared_error(y, pred)))}


def bootstrap(task, y, a, b, draws=1000, seed=0) -> dict:
    index = np.random.default_rng(seed).integers(0, len(y), size=(draws, len(y)))
    diff = task.resampled_primary(y, a, index) - task.resampled_primary(y, b, index)
    return {"mean": float(task.primary(y, a) - task.primary(y, b)), "low": float(np.quantile(diff, 0.025)),
            "high": float(np.quantile(diff, 0.975))}


def tables(frame, label, split_seed=0):
    full = load_data(frame, label=label, text=TEXT, numeric=NUMERIC, categorical=CATEGORICAL)
    task = infer_task(full, TARGETS[label])
    train, test = task.split(full, test_size=0.2, seed=split_seed)

    def only(table, **roles):
        return load_data(table.frame, label=label, **roles)

    return task, train, test, only


def run_target(frame, label, args, log):
    task, train, test, only = tables(frame, label)
    y = task.encode(test)
    rows, outputs = {}, {}

    def record(name, fit_s, predict_s, out, extra=None):
        outputs[name] = out
        rows[name] = {**scores(task, y, out), "train_s_per_1k": 1000 * fit_s / len(train),
                      "predict_s_per_1k": 1000 * predict_s / len(test), **(extra or {})}
        log(f"{label} | {name} | " + json.dumps(rows[name]))

    # tabular only, and TF-IDF + tabular: the classical side
    for name, text in (("tabular-only GBDT", False), ("TF-IDF + tabular GBDT", True)):
        t0 = time.perf_counter()
        model = ClassicalFusion(task, text=text, seed=0).fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = model.raw_outputs(test)
        record(name, fit_s, time.perf_counter() - t0, task.outputs(raw, None))

    variants = [("text-only MiniLM probe", dict(head="linear"), only(train, text=TEXT), only(test, text=TEXT)),
                ("frozen fusion (MiniLM + tabular, GBDT)", dict(head="gbdt", **REDUCE), train, test)]
    if args.tune_rows:
        variants.append((f"LoRA fusion (MiniLM LoRA on {args.tune_rows} rows + tabular, GBDT)",
                         dict(head="gbdt", encoder="lora", **REDUCE, tune_rows=args.tune_rows,
                              tune_params={"epochs": args.tune_epochs}), train, test))
    if args.joint:  # trains on every training row: the costliest arm, so opt-in
        variants.append((f"joint fusion (MiniLM LoRA {args.joint_epochs} epoch(s) + tabular before the output layer)",
                         {"encoder": "joint", "strategy": "lora",
                          "tune_params": {"epochs": args.joint_epochs, "learning_rate": args.joint_lr}}, train, test))
    importance = {}
    for name, settings, tr, te in variants:
        # calibration_folds=0: a temperature / conformal residuals change none of these figures (arg-max, AUC
        # ranks, R², RMSE), and each fold is one more fit on 2 shared cores
        model = FusionModel(task=TARGETS[label], progress=False, cache_dir=args.cache_dir, calibration_folds=0,
                            **settings).fit(tr)
        metrics = model.evaluate(te, importance="fusion" in name)
        record(name, model.timings_["fit_s"], model.last_predict_s_, model.last_predictions_["outputs"],
               {k: model.timings_[k] for k in ("features_s", "train_s") if k in model.timings_})
        if "feature_groups" in metrics:
            importance[name] = metrics["feature_groups"]
            log(f"{label} | {name} | importance " + json.dumps(metrics["feature_groups"]["groups"]))
    fusion = [n for n in outputs if "fusion" in n]
    gains = {f"{f} - {single}": bootstrap(task, y, outputs[f], outputs[single])
             for f in fusion for single in ("tabular-only GBDT", "text-only MiniLM probe", "TF-IDF + tabular GBDT")}
    for k, v in gains.items():
        log(f"{label} | gain {task.primary_metric} | {k} | " + json.dumps(v))
    return {"rows": rows, "gains": gains, "importance": importance, "n_train": len(train), "n_test": len(test)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000, help="seeded subsample of the 23,486 rows (0: all)")
    parser.add_argument("--tune-rows", type=int, default=600, help="training rows the LoRA stage sees (0: skip)")
    parser.add_argument("--tune-epochs", type=int, default=1)
    parser.add_argument("--joint", action="store_true", help="also the joint fusion arm (LoRA on every training row)")
    parser.add_argument("--joint-epochs", type=int, default=1)
    # the output layer starts from scratch and one epoch is few steps: 5e-3 is what one epoch on 225 rows needed to
    # beat the majority class (tests/test_joint_fusion.py, slow test); lora's own default is 1e-3
    parser.add_argument("--joint-lr", type=float, default=5e-3)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="bench/fusion_results.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    if args.rows and args.rows < len(frame):
        frame = frame.sample(n=args.rows, random_state=0)
    print(f"rows {len(frame)}, load average {os.getloadavg()[0]:.1f} (2 shared cores)", flush=True)
    results = {"rows": len(frame), "load_average_start": os.getloadavg()}
    for label in args.targets:
        results[label] = run_target(frame, label, args, lambda line: print(line, flush=True))
    results["load_average_end"] = os.getloadavg()
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
