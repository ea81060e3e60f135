"""Token classification on CoNLL-2003 (issue "Token classification and speech recognition"): the classical word-
feature baseline, the frozen MiniLM token probe and the trainable strategies, on the same split.

    python bench/bench_ner.py --train 4000 --epochs 2

A seeded ``--train`` sample of the training sentences (0: all 14,041), the whole test split (3,453 sentences,
5,648 entities); entity-level precision / recall / F1 in seqeval's strict IOB2 mode, token accuracy, train time.
all-MiniLM-L6-v2 lower-cases its input, which costs a tagger the capitalisation cue.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import graftkit as gk
from graftkit.evaluation.baselines import run_baseline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Clock, load, machine, save, shared  # noqa: E402

STRATEGIES = ("linear-probe", "finetune", "full", "lp-ft", "lora")


def read_conll(name: str, lowercase: bool):
    source = shared("data", "conll2003", name)
    if not lowercase:
        return gk.load_data(source)
    lines = source.read_text().splitlines(keepends=True)
    lowered = [line if line.startswith("-DOCSTART-") or not line.strip() else
               line.split(" ", 1)[0].lower() + " " + line.split(" ", 1)[1] for line in lines]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text("".join(lowered))
        return gk.load_data(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=4000, help="training sentences sampled (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="learning rate of the trainable strategies (default: each strategy's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--lowercase", action="store_true",
                        help="lower-case every token of train and test first: what the capitalisation cue is worth "
                             "(MiniLM lower-cases its input anyway; the word-feature baseline loses its shape cue)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = read_conll("train.txt", args.lowercase)
    if args.train:
        train = train.subset(train.frame.reset_index(drop=True).sample(n=args.train, random_state=args.seed).index)
    test = read_conll("test.txt", args.lowercase)
    print(f"{machine()}\n{load()}\nCoNLL-2003: {len(train)} training sentences, {len(test)} test sentences", flush=True)
    out_name = f"ner-conll2003-{args.train}{'-lower' if args.lowercase else ''}"
    rows = []
    if not args.no_baseline:
        task = gk.Graft().infer_task(train)
        with Clock() as clock:
            baseline = run_baseline(train, test, task, seed=args.seed)
        rows.append({"model": baseline["name"], "seconds": round(clock.wall, 1),
                     **{k: baseline.get(k) for k in ("f1", "precision", "recall", "token_accuracy")}})
        print(rows[-1], flush=True)
    for strategy in args.strategies:
        params = {} if strategy == "linear-probe" else {"epochs": args.epochs}
        if args.learning_rate is not None and strategy != "linear-probe":
            params["learning_rate"] = args.learning_rate
        started = time.perf_counter()
        model = gk.Graft(strategy=strategy, batch_size=args.batch_size, seed=args.seed, progress=False,
                         **params).fit(train)
        seconds = time.perf_counter() - started
        metrics = model.evaluate(test, curves=False)
        rows.append({"model": f"all-MiniLM-L6-v2 + {strategy}", "seconds": round(seconds, 1),
                     **{k: metrics[k] for k in ("f1", "precision", "recall", "token_accuracy")},
                     "per_type_f1": {k: round(v["f1"], 4) for k, v in metrics["per_type"].items()},
                     "ece": [metrics["calibration"]["ece_before"], metrics["calibration"]["ece_after"]],
                     "parameters_trained": model.parameter_counts()["trainable"], "load": load()})
        print(rows[-1], flush=True)
        save(out_name, {"machine": machine(), "train_sentences": len(train), "test_sentences": len(test),
                        "epochs": args.epochs, "learning_rate": args.learning_rate, "rows": rows})
    save(out_name, {"machine": machine(), "train_sentences": len(train), "test_sentences": len(test),
                    "epochs": args.epochs, "learning_rate": args.learning_rate, "rows": rows})
    print("\n| model | entity F1 | precision | recall | token accuracy | train s |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['f1']:.4f} | {row['precision']:.4f} | {row['recall']:.4f} | "
              f"{row['token_accuracy']:.4f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
