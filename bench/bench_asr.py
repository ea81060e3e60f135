"""Speech recognition on FSDD with Whisper tiny.en (issue "Token classification and speech recognition"): train on
four speakers, test on the fifth; WER of the zero-shot model, decoder-only fine-tuning and decoder LoRA, on the
clean test clips and on the same clips with white noise at 10 dB SNR, with and without audio augmentation in
training (graftkit's audio augmenter: gain, time shift, white noise at 10-40 dB SNR, frequency / time masks).

    python bench/bench_asr.py --per-speaker 20 --test 30 --epochs 3

Training clips: ``--per-speaker`` per training speaker (george, jackson, lucas, nicolas), digits balanced, take
indices 5.. (the README's training range); test clips: ``--test`` of the held-out speaker (theo), digits balanced.
WER / CER on Whisper's English normaliser with a 95% bootstrap interval over utterances; trainable share and the
size of the saved artifact's trained-weights file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import torch

import graftkit as gk
from graftkit.training.augment import GaussianNoise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Clock, load, machine, save, shared

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_SPEAKERS = ("george", "jackson", "lucas", "nicolas")
TEST_SPEAKER = "theo"


def clips(speaker: str, count: int, first: int) -> pd.DataFrame:
    folder = shared("data", "fsdd", "recordings")
    files = [folder / f"{d}_{speaker}_{first + i}.wav" for i in range((count + 9) // 10) for d in range(10)][:count]
    return pd.DataFrame({"audio": [str(f) for f in files], "transcript": [DIGITS[int(f.name[0])] for f in files]})


def noisy_copy(frame: pd.DataFrame, folder: Path, snr_db: float = 10.0, seed: int = 0) -> pd.DataFrame:
    """The same clips with white noise at ``snr_db`` (graftkit's GaussianNoise at a fixed SNR), seeded per clip."""
    folder.mkdir(parents=True, exist_ok=True)
    noise, paths = GaussianNoise(snr_db=(snr_db, snr_db)), []
    for i, path in enumerate(frame["audio"]):
        samples, rate = soundfile.read(path, dtype="float32")
        out = folder / Path(path).name
        soundfile.write(out, noise(samples, np.random.default_rng([seed, i])), rate)
        paths.append(str(out))
    return frame.assign(audio=paths)


def table(frame):
    return gk.load_data(frame, audio="audio", label="transcript")


def scored(graft, test, noisy) -> dict:
    out = {}
    for name, frame in (("clean", test), ("noisy_10db", noisy)):
        with Clock() as clock:
            metrics = graft.evaluate(table(frame))
        out[name] = {"wer": metrics["wer"], "wer_interval": metrics["wer_interval"], "cer": metrics["cer"],
                     "seconds": round(clock.wall, 1), "misses": metrics["misses"][:3]}
        print(f"  {name}: WER {metrics['wer']:.3f} [{metrics['wer_interval'][0]:.3f}, "
              f"{metrics['wer_interval'][1]:.3f}]  CER {metrics['cer']:.3f}  ({clock.wall:.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-speaker", type=int, default=20)
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    model = str(shared("models", "whisper-tiny.en"))
    print(machine(), "|", load(), "| torch threads", torch.get_num_threads(), flush=True)
    train = pd.concat([clips(s, args.per_speaker, 5) for s in TRAIN_SPEAKERS], ignore_index=True)
    test = clips(TEST_SPEAKER, args.test, 0)
    work = Path(tempfile.mkdtemp(prefix="bench-asr-"))
    noisy = noisy_copy(test, work / "noisy")
    print(f"train: {len(train)} clips ({args.per_speaker} per speaker, {', '.join(TRAIN_SPEAKERS)}); test: "
          f"{len(test)} clips of {TEST_SPEAKER} (clean and with white noise at 10 dB SNR)", flush=True)
    common = {"backbone": model, "task": "speech-recognition", "batch_size": args.batch_size, "progress": False}
    trained = {"epochs": args.epochs, "val_size": 0.0, "patience": 0}
    runs = [("zero-shot", "zero-shot", {}),
            ("decoder-only", "decoder-only", {**trained, "learning_rate": 1e-4}),
            ("decoder LoRA", "lora", {**trained, "learning_rate": 1e-3}),
            ("decoder-only + augment", "decoder-only", {**trained, "learning_rate": 1e-4, "augment": True})]
    results = []
    for name, strategy, params in runs:
        print(f"{name}:", flush=True)
        graft = gk.Graft(strategy=strategy, **common, **params)
        with Clock() as clock:
            graft.fit(table(train))
        row = {"run": name, "strategy": strategy, "params": params, "fit_s": round(clock.wall, 1),
               "parameters": graft.parameter_counts()}
        folder = graft.save(work / name.replace(" ", "_").replace("+", "plus"))
        files = json.loads((folder / "manifest.json").read_text())["files"]
        weights = [f for f in files if f.endswith(".safetensors") and f != "head.safetensors"]
        row["artifact_weights"] = {f: (folder / f).stat().st_size for f in weights}
        row["artifact_mb"] = round(sum((folder / f).stat().st_size for f in files) / 2 ** 20, 2)
        print(f"  fit {clock.wall:.0f} s; trains {row['parameters']['trainable']:,} of "
              f"{row['parameters']['total']:,} ({100 * row['parameters']['share']:.1f}%); artifact "
              f"{row['artifact_mb']} MB ({', '.join(weights) or 'no weights'})", flush=True)
        row.update(scored(graft, test, noisy))
        results.append(row)
        save("bench_asr", {"machine": machine(), "train_clips": len(train), "test_clips": len(test), "runs": results})
        del graft
    print("\n| run | trainable | artifact | fit s | WER clean [95% CI] | WER noisy 10 dB [95% CI] | CER clean | CER noisy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        c, n = r["clean"], r["noisy_10db"]
        print(f"| {r['run']} | {100 * r['parameters']['share']:.1f}% ({r['parameters']['trainable'] / 1e6:.2f} M) | "
              f"{r['artifact_mb']} MB | {r['fit_s']:.0f} | {c['wer']:.3f} [{c['wer_interval'][0]:.3f}, "
              f"{c['wer_interval'][1]:.3f}] | {n['wer']:.3f} [{n['wer_interval'][0]:.3f}, {n['wer_interval'][1]:.3f}] | "
              f"{c['cer']:.3f} | {n['cer']:.3f} |")
    save("bench_asr", {"machine": machine(), "train_clips": len(train), "test_clips": len(test), "runs": results})


if __name__ == "__main__":
    main()
