"""Domain adaptation (issue 14): continued pretraining (TAPT / DAPT) and domain-adversarial training (DANN).

  tapt      all-MiniLM-L6-v2 pretrained further (masked LM) on unlabelled SST-2 training sentences, then lp-ft on
            --labelled sentences; SST-2 dev accuracy with vs without, mean ± std over --seeds
  clothing  sentiment trained on SST-2, tested on women's clothing reviews (Rating >= 4 positive, <= 2 negative,
            3 dropped): no adaptation vs DAPT on clothing texts vs DANN with clothing texts as the unlabelled
            target; proxy A-distance and MMD of the pair
  fsdd      FSDD digits, one speaker held out as the unlabelled target (Whisper tiny.en encoder): DANN vs plain
            fine-tuning on the other speakers

Prints JSON lines and a markdown table per experiment. The machine is shared: the load average is printed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine, shared  # noqa: E402


def sst2(split: str) -> pd.DataFrame:
    frame = pd.read_csv(shared("data", "sst2", f"{split}.tsv"), sep="\t", quoting=csv.QUOTE_NONE, dtype=str,
                        keep_default_na=False)
    return frame.rename(columns={"sentence": "text"})[["text", "label"]]


def clothing() -> pd.DataFrame:
    frame = pd.read_csv(shared("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv"))
    frame = frame[frame["Review Text"].notna() & (frame["Rating"] != 3)]
    return pd.DataFrame({"text": frame["Review Text"].astype(str).str.strip(),
                         "label": np.where(frame["Rating"] >= 4, "1", "0")})


def lp_ft(backbone: str, train: pd.DataFrame, test: pd.DataFrame, seed: int, epochs: int, **extra) -> dict:
    import graftkit as gk

    started = time.perf_counter()
    model = gk.Graft(backbone, strategy="lp-ft", seed=seed, batch_size=32, progress=False, epochs=epochs,
                     **extra).fit(gk.load_data(train, text="text", label="label"))
    fit_s = time.perf_counter() - started
    metrics = model.evaluate(gk.load_data(test, text="text", label="label"), curves=False)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "fit_s": round(fit_s, 1),
            "epochs_run": model.training_["epochs_run"]}


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def tapt(args) -> None:
    import graftkit as gk

    train_all = sst2("train")
    dev = sst2("dev")
    corpus = train_all.sample(args.corpus, random_state=0)["text"].tolist()
    out = Path(tempfile.mkdtemp(prefix="bench-tapt-"))
    print(json.dumps({"machine": machine(), "load_before": load()}), flush=True)
    started = time.perf_counter()
    result = gk.pretrain(corpus, out / "minilm-tapt", backbone="all-MiniLM-L6-v2", steps=args.steps,
                         batch_size=args.batch_size, max_length=64, learning_rate=args.lr, progress=False,
                         whole_word_mask=args.whole_word_mask)
    pretrain_s = time.perf_counter() - started
    print(json.dumps({"pretrain_s": round(pretrain_s, 1), "loss": result.lineage["loss"], "load": load()}), flush=True)
    rows = {"all-MiniLM-L6-v2": [], "TAPT": []}
    for seed in range(args.seeds):
        labelled = train_all.sample(args.labelled, random_state=100 + seed)
        for name, backbone in (("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"), ("TAPT", str(out / "minilm-tapt"))):
            row = lp_ft(backbone, labelled, dev, seed, args.epochs)
            rows[name].append(row)
            print(json.dumps({"backbone": name, "seed": seed, **row}), flush=True)
    print(f"\nTAPT: {args.corpus} unlabelled SST-2 training sentences, {args.steps} MLM steps of batch "
          f"{args.batch_size} ({'whole-word' if args.whole_word_mask else 'token'} masking, lr {args.lr:g}) in "
          f"{pretrain_s:.0f} s ({load()}); lp-ft ({args.epochs} epochs) on {args.labelled} labelled sentences, "
          f"SST-2 dev ({len(dev)} rows), {args.seeds} seeds\n")
    print("| backbone | dev accuracy (mean ± std) | macro-F1 | lp-ft fit s (mean) |")
    print("|---|---|---|---|")
    for name, found in rows.items():
        print(f"| {name} | {mean_std([r['accuracy'] for r in found])} | {mean_std([r['macro_f1'] for r in found])} | "
              f"{statistics.mean(r['fit_s'] for r in found):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    p = sub.add_parser("tapt")
    p.add_argument("--corpus", type=int, default=4000)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--whole-word-mask", action="store_true")
    p.add_argument("--labelled", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.set_defaults(run=tapt)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(2)
    args.run(args)


if __name__ == "__main__":
    main()
