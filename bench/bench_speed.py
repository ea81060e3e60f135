"""Speed close to the hardware (issue 17), each comparison measured side by side in one run.

audio: FSDD spoken digits with the Whisper tiny.en encoder (../shared/models/whisper-tiny.en), the 30 s padded
window against each clip's own length (rounded up to whole seconds). The same clips are embedded by both in
alternating chunks (the order flips per chunk), so a busy machine slows both alike; then a leave-one-speaker-out
logistic-regression probe (graftkit's LogRegHead, C by 5-fold CV) on each feature set.

    python bench/bench_speed.py audio --per-digit 10        # 5 speakers x 10 digits x 10 takes = 500 clips
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, machine, save, shared

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")


def fsdd_clips(per_digit: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    recordings = shared("data", "fsdd", "recordings")
    files = [recordings / f"{digit}_{speaker}_{take}.wav"
             for speaker in SPEAKERS for digit in range(10) for take in range(per_digit)]
    return ([str(f) for f in files], np.array([int(f.name.split("_")[0]) for f in files]),
            np.array([f.name.split("_")[1] for f in files]))


def loso_accuracy(features: np.ndarray, digits: np.ndarray, speakers: np.ndarray) -> dict:
    from graftkit.tasks.heads import LogRegHead

    folds = {}
    for speaker in SPEAKERS:
        test = speakers == speaker
        head = LogRegHead.fit(features[~test], digits[~test], seed=0)  # digits 0..9: class i is column i
        folds[speaker] = float((head.logits(features[test]).argmax(1) == digits[test]).mean())
    return {"mean": float(np.mean(list(folds.values()))), "folds": folds}


def audio(args) -> dict:
    import torch

    from graftkit.backbones import load_backbone
    from graftkit.features.extract import extract_features

    torch.set_num_threads(args.threads)
    files, digits, speakers = fsdd_clips(args.per_digit)
    model = str(shared("models", "whisper-tiny.en"))
    backbones = {"padded": load_backbone(model, window="padded")}
    for bucket in args.bucket_seconds:
        backbones[f"clip-{bucket:g}s"] = load_backbone(model, window="clip", bucket_seconds=bucket)
    names = list(backbones)
    order = np.random.default_rng(0).permutation(len(files))  # chunks mix speakers and digits
    chunks = np.array_split(order, args.chunks)
    features = {name: np.empty((len(files), 384), dtype=np.float32) for name in names}
    seconds = {name: [] for name in names}
    print(f"{len(files)} FSDD clips in {len(chunks)} chunks, {args.threads} threads; {load()}", flush=True)
    for i, chunk in enumerate(chunks):
        for name in (names if i % 2 == 0 else names[::-1]):  # alternate which runs first
            start = time.perf_counter()
            features[name][chunk] = extract_features(backbones[name], [files[j] for j in chunk],
                                                     batch_size=args.batch_size, progress=False)
            seconds[name].append(time.perf_counter() - start)
        print(f"chunk {i + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.1f} s" for n in names) + f"; {load()}", flush=True)
    accuracy = {name: loso_accuracy(features[name], digits, speakers) for name in names}
    result = {"machine": machine(), "clips": len(files), "threads": args.threads, "batch_size": args.batch_size,
              "seconds": {n: float(sum(s)) for n, s in seconds.items()},
              "clips_per_s": {n: len(files) / float(sum(s)) for n, s in seconds.items()},
              "speedup_total": {n: float(sum(seconds["padded"]) / sum(seconds[n])) for n in names[1:]},
              "speedup_median_chunk": {n: float(np.median([p / c for p, c in zip(seconds["padded"], seconds[n])]))
                                       for n in names[1:]},
              "loso_accuracy": accuracy, "settings": {n: b.settings() for n, b in backbones.items()}}
    for name in names:
        acc = accuracy[name]
        speed = "" if name == "padded" else (f", {result['speedup_total'][name]:.1f}x faster than padded (median "
                                             f"chunk ratio {result['speedup_median_chunk'][name]:.1f}x)")
        print(f"{name}: {result['seconds'][name]:.1f} s ({result['clips_per_s'][name]:.1f} clips/s{speed}); "
              f"leave-one-speaker-out probe {100 * acc['mean']:.2f}% "
              f"({', '.join(f'{s} {100 * a:.1f}' for s, a in acc['folds'].items())})")
    save("speed_audio", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audio", help="Whisper tiny.en on FSDD: padded vs own-length")
    a.add_argument("--per-digit", type=int, default=10, help="takes per speaker and digit (FSDD has 50)")
    a.add_argument("--chunks", type=int, default=6, help="alternating timing chunks")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a machine other jobs share, 2 threads lose to preemption)")
    a.add_argument("--bucket-seconds", type=float, nargs="+", default=[1.0, 2.0],
                   help="own-length bucket sizes to run (graftkit's default: 2)")
    a.set_defaults(run=audio)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
