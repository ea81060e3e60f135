"""Adaptation strategies on images and audio (issues 3 and 4): each strategy fitted on the same seeded subset,
scored on held-out data — accuracy, fit time, trained share, artifact size, peak memory (each strategy runs in
its own process, so its peak is its own).

cifar10: EfficientNet-Lite0 (PyPI package), a seeded stratified subset of the CIFAR-10 JPEG train split, and
test images from the test split.
fsdd: the Whisper tiny.en encoder (../shared/models/whisper-tiny.en) on spoken digits; four speakers train,
the fifth (``--test-speaker``) is the test set, so the score is on an unseen voice.

    python bench/bench_media_strategies.py cifar10 --per-class 50 --epochs 2
    python bench/bench_media_strategies.py fsdd --per-digit 10 --epochs 2
    python bench/bench_media_strategies.py cifar10 --strategies linear-probe lora full
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Clock, machine, save, shared  # noqa: E402

DEFAULT_STRATEGIES = ["linear-probe", "finetune", "full", "gradual", "lp-ft", "lora"]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")


def cifar10(per_class: int, test_per_class: int, seed: int, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = {}
    with zipfile.ZipFile(shared("data", "cifar10_jpg", "cifar10_jpg.zip")) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        for split, count in (("train", per_class), ("test", test_per_class)):
            by_class: dict[str, list[str]] = {}
            for n in names:
                parts = n.split("/")
                if parts[-3] == split:
                    by_class.setdefault(parts[-2], []).append(n)
            chosen = [n for label in sorted(by_class) for n in rng.choice(sorted(by_class[label]), count, replace=False)]
            archive.extractall(folder, members=chosen)
            frames[split] = pd.DataFrame({"image": [str(folder / n) for n in chosen],
                                          "label": [n.split("/")[-2] for n in chosen]})
    return frames["train"], frames["test"]


def fsdd(per_digit: int, test_speaker: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    recordings = shared("data", "fsdd", "recordings")
    rows = [{"audio": str(p), "label": p.name.split("_")[0], "speaker": p.name.split("_")[1]}
            for p in sorted(recordings.glob("*.wav"))]
    frame = pd.DataFrame(rows)
    test = frame[frame["speaker"] == test_speaker]
    train = frame[frame["speaker"] != test_speaker].groupby(["speaker", "label"]).sample(per_digit, random_state=seed)
    return train[["audio", "label"]], test.groupby("label").sample(min(per_digit * 2, 50), random_state=seed)[
        ["audio", "label"]]


def run_one(args) -> None:
    """One strategy in this process; prints one JSON line."""
    import torch

    import graftkit as gk

    torch.set_num_threads(args.threads)
    train, test = pd.read_csv(args.train_csv), pd.read_csv(args.test_csv)
    column = "image" if "image" in train else "audio"
    train_t, test_t = (gk.load_data(f, label="label", **{column: column}) for f in (train, test))
    params = json.loads(args.params)
    if args.strategy != "linear-probe":
        params.setdefault("epochs", args.epochs)
    with Clock() as clock:
        model = gk.Graft(args.backbone, strategy=args.strategy, progress=False, seed=args.seed,
                         batch_size=args.batch_size, **params).fit(train_t)
    metrics = model.evaluate(test_t, curves=False)
    with tempfile.TemporaryDirectory() as out:
        saved = model.save(Path(out) / "m")
        size = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file()) / 1e6
    counts = model.parameter_counts()
    training = getattr(model, "training_", None) or {}
    print(json.dumps({"strategy": args.strategy, "params": params, "accuracy": metrics["accuracy"],
                      "macro_f1": metrics["macro_f1"], "fit_s": round(clock.wall, 1), "trainable": counts["trainable"],
                      "share": counts["share"], "artifact_mb": round(size, 3),
                      "epochs_run": training.get("epochs_run"), "best_epoch": training.get("best_epoch"),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def compare(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{args.data}-"))
    if args.data == "cifar10":
        train, test = cifar10(args.per_class, args.test_per_class, args.seed, folder)
        backbone = args.backbone or "efficientnet-lite0"
    else:
        train, test = fsdd(args.per_digit, args.test_speaker, args.seed)
        backbone = args.backbone or str(shared("models", "whisper-tiny.en"))
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    print(f"{args.data}: {len(train)} training rows, {len(test)} test rows, backbone {backbone}", flush=True)
    rows = []
    for strategy in args.strategies:
        command = [sys.executable, __file__, "one", "--strategy", strategy, "--train-csv", str(folder / "train.csv"),
                   "--test-csv", str(folder / "test.csv"), "--backbone", backbone, "--epochs", str(args.epochs),
                   "--seed", str(args.seed), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--params", args.params]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"{strategy} failed:\n{done.stderr[-3000:]}", flush=True)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| strategy | test accuracy | macro-F1 | fit s | epochs (best) | trained (share) | artifact MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        epochs = f"{r['epochs_run']} ({r['best_epoch']})" if r["epochs_run"] else "-"
        lines.append(f"| {r['strategy']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['fit_s']} | {epochs} | "
                     f"{r['trainable']:,} ({100 * r['share']:.2f}%) | {r['artifact_mb']:.2f} | {r['peak_rss_mb']} |")
    print("\n".join(lines))
    save(f"media_strategies_{args.data}", {"machine": machine(), "settings": vars(args), "backbone": backbone,
                                           "train_rows": len(train), "test_rows": len(test), "rows": rows,
                                           "table": lines})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["cifar10", "fsdd", "one"])
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES)
    parser.add_argument("--backbone", help="default: efficientnet-lite0 (cifar10), whisper-tiny.en (fsdd)")
    parser.add_argument("--per-class", type=int, default=50, help="cifar10: training images per class")
    parser.add_argument("--test-per-class", type=int, default=50, help="cifar10: test images per class")
    parser.add_argument("--per-digit", type=int, default=10, help="fsdd: training clips per digit and speaker")
    parser.add_argument("--test-speaker", default="theo", choices=SPEAKERS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="{}", help="extra strategy parameters as JSON, for every strategy")
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    parser.add_argument("--train-csv", help=argparse.SUPPRESS)
    parser.add_argument("--test-csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run_one(args) if args.data == "one" else compare(args)


if __name__ == "__main__":
    main()
