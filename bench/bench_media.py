"""Images and audio: a pretrained backbone's linear probe against a no-transfer baseline on the same split.

CIFAR-10 (JPEG): a seeded stratified subset (default 5,000 train / 1,000 test images) is unpacked into
image folders; ``Graft(backbone="efficientnet-lite0")`` linear probe vs raw pixels + graftkit's logistic
regression head (standardised, C by 5-fold CV, the same head the probe uses).

FSDD (spoken digits, 8 kHz, 5 speakers): leave-one-speaker-out, the Whisper tiny.en encoder
(``backbone=".../whisper-tiny.en"``) linear probe vs log-mel statistics (mean and standard deviation over
time of a 40-band log-mel spectrogram, numpy / scipy only) + the same head. The features of every clip are
computed once (the feature cache serves the other folds).

    python bench/bench_media.py                       # both; all 5 speaker folds
    python bench/bench_media.py --only audio --speakers theo
    python bench/bench_media.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from common import Clock, load, machine, save, shared
from PIL import Image
from scipy import signal

from graftkit import Graft
from graftkit.data import load_data
from graftkit.tasks.heads import LogRegHead


def head_baseline(X_train, y_train, X_test, y_test) -> tuple[float, float]:
    """graftkit's default logistic regression head (standardised, C by CV) on hand-made features."""
    labels = sorted(set(y_train))
    index = {label: i for i, label in enumerate(labels)}
    with Clock() as clock:
        head = LogRegHead.fit(X_train, np.array([index[v] for v in y_train]), seed=0)
    predicted = [labels[i] for i in head.predict_proba(X_test).argmax(axis=1)]
    return float(np.mean(np.array(predicted) == np.array(y_test))), clock.wall


def probe(backbone: str, train, test, cache: str) -> dict:
    model = Graft(backbone=backbone, cache_dir=cache, progress=False)
    with Clock() as fit_clock:
        model.fit(train)
    with Clock() as test_clock:
        metrics = model.evaluate(test)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "fit_s": fit_clock.wall,
            "extraction_s": model.timings_["extraction_s"], "embedded": model.timings_["embedded_rows"],
            "head_s": model.timings_["head_s"], "evaluate_s": test_clock.wall}


# -- CIFAR-10 -----------------------------------------------------------------------------------------
def unpack_cifar(folder: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """A seeded stratified subset of the zip's train / test images, as ``folder/<split>/<class>/NNNN.jpg``."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(shared("data", "cifar10_jpg", "cifar10_jpg.zip")) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        for split, count in per_class.items():
            by_class: dict[str, list[str]] = {}
            for name in names:
                if name.startswith(split + "/"):
                    by_class.setdefault(name.split("/")[1], []).append(name)
            for members in by_class.values():
                for name in rng.choice(sorted(members), size=count, replace=False):
                    archive.extract(name, folder)


def pixels(table) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).ravel() / 255.0
                     for path in table.items()])


def run_images(args, cache: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        with Clock() as unpack_clock:
            unpack_cifar(Path(scratch), {"train": args.images_train // 10, "test": args.images_test // 10})
        train, test = load_data(Path(scratch) / "train"), load_data(Path(scratch) / "test")
        result = {"train": len(train), "test": len(test), "unpack_s": unpack_clock.wall,
                  "efficientnet_lite0": probe("efficientnet-lite0", train, test, cache)}
        with Clock() as pixel_clock:
            X_train, X_test = pixels(train), pixels(test)
        accuracy, head_s = head_baseline(X_train, train.labels(), X_test, test.labels())
    result["raw_pixels"] = {"accuracy": accuracy, "features_s": pixel_clock.wall, "head_s": head_s}
    lite = result["efficientnet_lite0"]
    print(f"CIFAR-10 {len(train)} train / {len(test)} test: efficientnet-lite0 probe {100 * lite['accuracy']:.2f}% "
          f"(fit {lite['fit_s']:.0f}s: extraction {lite['extraction_s']:.0f}s + head {lite['head_s']:.1f}s; "
          f"test extraction {lite['evaluate_s']:.0f}s) vs raw pixels + logistic regression {100 * accuracy:.2f}% "
          f"(head {head_s:.1f}s)", flush=True)
    return result


# -- FSDD ---------------------------------------------------------------------------------------------
def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters evenly spaced on the HTK mel scale from 0 Hz to Nyquist, shape (n_mels, n_fft//2+1)."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(0.0, to_mel(rate / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)))


def log_mel_stats(path: str, n_mels: int = 40) -> np.ndarray:
    """Mean and standard deviation over time of a log-mel spectrogram (25 ms windows, 10 ms hop)."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    window, hop = int(0.025 * rate), int(0.010 * rate)
    samples = np.pad(samples, (0, max(0, window - len(samples))))
    _, _, spectrum = signal.stft(samples, fs=rate, nperseg=window, noverlap=window - hop, nfft=256, padded=False,
                                 boundary=None)
    mel = np.log(mel_filterbank(rate, 256, n_mels) @ (np.abs(spectrum) ** 2) + 1e-10)
    return np.concatenate([mel.mean(axis=1), mel.std(axis=1)])


def run_audio(args, cache: str) -> dict:
    folder = shared("data", "fsdd", "recordings")
    files = sorted(folder.glob("*.wav"))
    frame = pd.DataFrame({"path": [str(f) for f in files], "digit": [f.name.split("_")[0] for f in files],
                          "speaker": [f.name.split("_")[1] for f in files],
                          "index": [int(f.stem.split("_")[2]) for f in files]})
    frame = frame[frame["index"] < args.clips_per_digit].reset_index(drop=True)
    with Clock() as mel_clock:
        mel = np.stack([log_mel_stats(p) for p in frame["path"]])
    speakers = args.speakers.split(",") if args.speakers else sorted(frame["speaker"].unique())
    folds = {}
    for speaker in speakers:
        held_out = (frame["speaker"] == speaker).to_numpy()
        train = load_data(frame.loc[~held_out, ["path", "digit"]], audio="path", label="digit")
        test = load_data(frame.loc[held_out, ["path", "digit"]], audio="path", label="digit")
        whisper = probe(str(shared("models", "whisper-tiny.en")), train, test, cache)
        accuracy, head_s = head_baseline(mel[~held_out], frame["digit"][~held_out].tolist(), mel[held_out],
                                         frame["digit"][held_out].tolist())
        folds[speaker] = {"train": len(train), "test": len(test), "whisper_tiny_en": whisper,
                          "log_mel": {"accuracy": accuracy, "head_s": head_s}}
        print(f"FSDD, test speaker {speaker} ({len(test)} clips; train {len(train)} from the other speakers): "
              f"Whisper tiny.en encoder probe {100 * whisper['accuracy']:.2f}% (embedded {whisper['embedded']} + "
              f"test; fit {whisper['fit_s']:.0f}s, test {whisper['evaluate_s']:.0f}s) vs log-mel stats + "
              f"logistic regression {100 * accuracy:.2f}%", flush=True)
    means = {name: float(np.mean([f[name]["accuracy"] for f in folds.values()])) for name in ("whisper_tiny_en", "log_mel")}
    print(f"FSDD mean over {len(folds)} held-out speakers: Whisper {100 * means['whisper_tiny_en']:.2f}% vs "
          f"log-mel {100 * means['log_mel']:.2f}% (log-mel features for {len(frame)} clips: {mel_clock.wall:.1f}s)")
    return {"clips": len(frame), "log_mel_features_s": mel_clock.wall, "folds": folds, "mean_accuracy": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["images", "audio"])
    parser.add_argument("--images-train", type=int, default=5000)
    parser.add_argument("--images-test", type=int, default=1000)
    parser.add_argument("--clips-per-digit", type=int, default=50, help="per speaker and digit (FSDD has 50)")
    parser.add_argument("--speakers", help="held-out speakers, comma-separated (default: every speaker)")
    parser.add_argument("--quick", action="store_true", help="200 / 100 images; 5 clips per digit, one fold")
    args = parser.parse_args()
    if args.quick:
        args.images_train, args.images_test, args.clips_per_digit = 200, 100, 5
        args.speakers = args.speakers or "theo"
    print(machine())
    print(f"{load()} at the start")
    result = {"machine": machine()}
    with tempfile.TemporaryDirectory() as cache:
        if args.only in (None, "images"):
            result["cifar10"] = run_images(args, cache)
        if args.only in (None, "audio"):
            result["fsdd"] = run_audio(args, cache)
    save("media" + ("_quick" if args.quick else ""), result)


if __name__ == "__main__":
    main()
