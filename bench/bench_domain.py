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
from common import load, machine, shared


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
                         batch_size=args.batch_size, max_length=48, learning_rate=args.lr, progress=True,
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


def clothing_experiment(args) -> None:
    import graftkit as gk
    from graftkit.evaluation.shift import shift_between

    source = sst2("train").sample(args.labelled, random_state=0)
    reviews = clothing().sample(frac=1.0, random_state=0)
    test = pd.concat([reviews[reviews.label == c].head(args.test // 2) for c in ("0", "1")])
    unlabelled = reviews.drop(test.index).head(args.target)[["text"]]
    out = Path(tempfile.mkdtemp(prefix="bench-clothing-"))
    target_csv = out / "clothing_unlabelled.csv"
    unlabelled.to_csv(target_csv, index=False)
    print(json.dumps({"machine": machine(), "load_before": load(), "source_rows": len(source), "test_rows": len(test),
                      "target_rows": len(unlabelled)}), flush=True)
    probe = gk.Graft("all-MiniLM-L6-v2", strategy="linear-probe", progress=False)
    probe.task_ = None
    shift = shift_between(probe.features(gk.load_data(source, text="text", label="label"), pooled=True),
                          probe.features(gk.load_data(unlabelled, text="text", require_label=False), pooled=True))
    print(json.dumps({"shift": shift}), flush=True)
    started = time.perf_counter()
    if "dapt" in args.methods:
        gk.pretrain(str(target_csv), out / "minilm-dapt", backbone="all-MiniLM-L6-v2", column="text",
                    steps=args.steps, batch_size=args.batch_size, max_length=128, learning_rate=args.lr, progress=True)
    dapt_s = time.perf_counter() - started
    rows = []
    methods = {"none": ("no adaptation", "all-MiniLM-L6-v2", {}),
               "dapt": (f"DAPT ({args.steps} MLM steps on the clothing texts)", str(out / "minilm-dapt"), {}),
               "dann": (f"DANN (clothing texts as the unlabelled target, weight {args.adapt_weight:g})",
                        "all-MiniLM-L6-v2", {"adapt_to": str(target_csv), "adapt_weight": args.adapt_weight})}
    for name, backbone, extra in (methods[m] for m in args.methods):
        row = {"method": name, **lp_ft(backbone, source, test, 0, args.epochs, **extra)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    pad, mmd = shift["proxy_a_distance"], shift["mmd"]
    print(f"\nSST-2 -> clothing: lp-ft ({args.epochs} epochs) on {len(source)} SST-2 sentences, tested on {len(test)} "
          f"clothing reviews (balanced); target {len(unlabelled)} unlabelled reviews; DAPT {dapt_s:.0f} s; "
          f"proxy A-distance {pad['pad']:.3f} (domain-classifier error {pad['error']:.3f}), MMD² {mmd['mmd2']:.4f} "
          f"(p={mmd['p_value']}); {load()}\n")
    print("| method | clothing accuracy | macro-F1 | fit s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['fit_s']:.0f} |")


def fsdd_experiment(args) -> None:
    import graftkit as gk
    from graftkit.evaluation.shift import shift_between

    folder = shared("data", "fsdd", "recordings")
    files = sorted(folder.glob("*.wav"))
    frame = pd.DataFrame({"audio": [str(f) for f in files], "label": [f.name.split("_")[0] for f in files],
                          "speaker": [f.name.split("_")[1] for f in files],
                          "index": [int(f.stem.split("_")[2]) for f in files]})
    held = frame[frame.speaker == args.speaker]
    source = frame[(frame.speaker != args.speaker) & (frame["index"] < args.per_digit)][["audio", "label"]]
    test = held[held["index"] < args.test_per_digit][["audio", "label"]]
    target = held[held["index"] >= 50 - args.target_per_digit][["audio"]]
    out = Path(tempfile.mkdtemp(prefix="bench-fsdd-"))
    target_csv = out / "target.csv"
    target.to_csv(target_csv, index=False)
    backbone = str(shared("models", "whisper-tiny.en"))
    print(json.dumps({"machine": machine(), "load_before": load(), "source_rows": len(source), "test_rows": len(test),
                      "target_rows": len(target), "held_out": args.speaker}), flush=True)
    probe = gk.Graft(backbone, strategy="linear-probe", progress=False)
    shift = shift_between(probe.features(gk.load_data(source, audio="audio", label="label"), pooled=True),
                          probe.features(gk.load_data(target, audio="audio", require_label=False), pooled=True))
    print(json.dumps({"shift": shift}), flush=True)
    rows = []
    for name, extra in (("plain fine-tuning", {}), ("DANN", {"adapt_to": str(target_csv)})):
        started = time.perf_counter()
        model = gk.Graft(backbone, strategy="finetune", seed=0, batch_size=16, progress=False, epochs=args.epochs,
                         **extra).fit(gk.load_data(source, audio="audio", label="label"))
        fit_s = time.perf_counter() - started
        metrics = model.evaluate(gk.load_data(test, audio="audio", label="label"), curves=False)
        row = {"method": name, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
               "fit_s": round(fit_s, 1), "domain": model.training_.get("domain_adaptation")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    pad = shift["proxy_a_distance"]
    print(f"\nFSDD, speaker {args.speaker} held out: finetune ({args.epochs} epochs, top 2 groups) on {len(source)} clips "
          f"of the other speakers, tested on {len(test)} clips of {args.speaker}; target {len(target)} unlabelled clips "
          f"of {args.speaker}; proxy A-distance {pad['pad']:.3f}, MMD² {shift['mmd']['mmd2']:.4f} "
          f"(p={shift['mmd']['p_value']}); {load()}\n")
    print("| method | held-out speaker accuracy | macro-F1 | fit s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['fit_s']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    p = sub.add_parser("tapt")
    p.add_argument("--corpus", type=int, default=3000)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--whole-word-mask", action="store_true")
    p.add_argument("--labelled", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.set_defaults(run=tapt)
    p = sub.add_parser("clothing")
    p.add_argument("--labelled", type=int, default=500)
    p.add_argument("--test", type=int, default=400)
    p.add_argument("--target", type=int, default=800)
    p.add_argument("--methods", nargs="+", choices=("none", "dapt", "dann"), default=["none", "dapt", "dann"])
    p.add_argument("--adapt-weight", type=float, default=1.0, help="DANN's weight of the domain loss")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=2)
    p.set_defaults(run=clothing_experiment)
    p = sub.add_parser("fsdd")
    p.add_argument("--speaker", default="theo")
    p.add_argument("--per-digit", type=int, default=6, help="clips per digit per source speaker")
    p.add_argument("--test-per-digit", type=int, default=10)
    p.add_argument("--target-per-digit", type=int, default=15)
    p.add_argument("--epochs", type=int, default=3)
    p.set_defaults(run=fsdd_experiment)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(2)
    args.run(args)


if __name__ == "__main__":
    main()
