"""Issue 5's figures: calibration (ECE before / after temperature scaling), transfer gain against the classical
baseline and against the same architecture from scratch, learning curves, and the planted-duplicate leakage
test. Every figure comes from a plain `graftkit fit ... --test ...` run whose evaluation.json this script reads,
so RESULTS.md can quote the exact commands.

    python bench/bench_evaluation.py prepare            # SST-2 subset + dev as CSV, a CIFAR-10 subset as folders
    python bench/bench_evaluation.py run NAME [NAME...]  # the graftkit commands of each experiment (see EXPERIMENTS)
    python bench/bench_evaluation.py leakage            # planted duplicates in Banking77, all-MiniLM-L6-v2
    python bench/bench_evaluation.py summary            # the markdown tables for RESULTS.md

Outputs go to bench/out/ (ignored by git): data/, models/<NAME>/ (model + evaluation.json + report.html),
logs/<NAME>.log and evaluation_*.json.
"""

from __future__ import annotations

import csv
import json
import random
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, Clock, machine, save, shared  # noqa: E402

DATA, MODELS, LOGS = OUT / "data", OUT / "models", OUT / "logs"
B77 = "../shared/data/banking77"
SST2_TRAIN_ROWS = 8000          # stratified subset of SST-2 train for the probe (all 67k embed for an hour here)
SST2_FINETUNE_ROWS = 2000       # and for fine-tuning (twice: pretrained and from scratch) on 2 shared CPU cores
B77_FINETUNE_PER_CLASS = 30     # Banking77 rows per intent for fine-tuning (2,310 of 10,003; the rarest has 35)
CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 300, 200

EXPERIMENTS = {
    "banking77-probe": f"fit {B77}/train.csv --test {B77}/test.csv --text text --label category "
                       "--learning-curve --seeds 5 --scratch",
    "banking77-full": f"fit bench/out/data/banking77_train_30pc.csv --test {B77}/test.csv --text text "
                      "--label category --strategy full --epochs 3 --scratch",
    "sst2-probe": "fit bench/out/data/sst2_train.csv --test bench/out/data/sst2_dev.csv --text sentence --label label "
                  "--learning-curve --shots 4,8,16,32,64,256 --seeds 5 --scratch",
    "sst2-full": "fit bench/out/data/sst2_train_2k.csv --test bench/out/data/sst2_dev.csv --text sentence "
                 "--label label --strategy full --epochs 3 --scratch",
    "cifar10-probe": "fit bench/out/data/cifar10/train --test bench/out/data/cifar10/test --backbone efficientnet-lite0 "
                     "--learning-curve --shots 4,8,16,32,64,128 --seeds 5",
}


def prepare() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    names = {"0": "negative", "1": "positive"}

    def read(name):
        frame = pd.read_csv(shared("data", "sst2", name), sep="\t", quoting=csv.QUOTE_NONE, dtype=str,
                            keep_default_na=False)
        return frame.assign(label=frame["label"].map(names))

    train = read("train.tsv")
    subset = train.groupby("label").sample(frac=SST2_TRAIN_ROWS / len(train), random_state=0)  # stratified
    subset.sample(frac=1.0, random_state=0).to_csv(DATA / "sst2_train.csv", index=False)
    small = subset.groupby("label").sample(frac=SST2_FINETUNE_ROWS / len(subset), random_state=0)
    small.sample(frac=1.0, random_state=0).to_csv(DATA / "sst2_train_2k.csv", index=False)
    banking = pd.read_csv(shared("data", "banking77", "train.csv"))
    banking.groupby("category").sample(n=B77_FINETUNE_PER_CLASS, random_state=0).to_csv(
        DATA / "banking77_train_30pc.csv", index=False)
    read("dev.tsv").to_csv(DATA / "sst2_dev.csv", index=False)
    rng = random.Random(0)
    if (DATA / "cifar10").is_dir():
        print(f"{DATA / 'cifar10'} exists; CIFAR-10 subset kept")
        return
    with zipfile.ZipFile(shared("data", "cifar10_jpg", "cifar10_jpg.zip")) as archive:
        by_folder: dict[tuple[str, str], list[str]] = {}
        for name in archive.namelist():
            if name.endswith(".jpg"):
                split, label, _ = name.split("/")
                by_folder.setdefault((split, label), []).append(name)
        for (split, label), files in sorted(by_folder.items()):
            keep = CIFAR_TRAIN_PER_CLASS if split == "train" else CIFAR_TEST_PER_CLASS
            target = DATA / "cifar10" / split / label
            target.mkdir(parents=True, exist_ok=True)
            for name in rng.sample(sorted(files), keep):
                (target / Path(name).name).write_bytes(archive.read(name))
    print(f"SST-2: {len(subset)} train rows (stratified, seed 0), dev {len(read('dev.tsv'))}; CIFAR-10: "
          f"{CIFAR_TRAIN_PER_CLASS} train / {CIFAR_TEST_PER_CLASS} test images per class -> {DATA}")


def command(name: str) -> str:
    return f"graftkit {EXPERIMENTS[name]} -o bench/out/models/{name} --overwrite"


def run(names: list[str]) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    for name in names:
        line = command(name)
        print(f"$ {line}", flush=True)
        with Clock() as clock, open(LOGS / f"{name}.log", "w") as log:
            result = subprocess.run(shlex.split(line), stdout=log, stderr=subprocess.STDOUT,
                                    cwd=Path(__file__).resolve().parents[1])
        print(f"  exit {result.returncode}, {clock.wall / 60:.1f} min wall, log {LOGS / f'{name}.log'}", flush=True)
        if result.returncode:
            sys.exit(result.returncode)


def _typo(sentence: str, rng: random.Random) -> str:
    words = sentence.split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return sentence + "s"
    i = rng.choice(candidates)
    j = rng.randrange(len(words[i]) - 1)
    w = words[i]
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def _extra_word(sentence: str, rng: random.Random) -> str:
    words = sentence.split()
    words.insert(rng.randrange(len(words) + 1), rng.choice(["please", "just", "really", "now"]))
    return " ".join(words)


def leakage() -> None:
    """The planted-duplicate figure (same protocol as tests/test_evaluation.py, with per-kind detail)."""
    import graftkit as gk
    from graftkit.evaluation.leakage import near_duplicates, nearest_train, normalize_text, text_near_duplicates

    folder = shared("data", "banking77")
    train_frame = pd.read_csv(folder / "train.csv").sample(2000, random_state=0).reset_index(drop=True)
    test_frame = pd.read_csv(folder / "test.csv").sample(1000, random_state=0).reset_index(drop=True)
    rng = random.Random(0)
    edits = {"exact": lambda s: s, "case": lambda s: s.upper() if rng.random() < 0.5 else s.lower(),
             "typo": lambda s: _typo(s, rng), "extra word": lambda s: _extra_word(s, rng)}
    planted, kinds = [], []
    for n, position in enumerate(rng.sample(range(len(train_frame)), 200)):
        kind = list(edits)[n % 4]
        planted.append({"text": edits[kind](train_frame.text[position]), "category": train_frame.category[position]})
        kinds.append(kind)
    test_all = pd.concat([test_frame, pd.DataFrame(planted)], ignore_index=True)
    train = gk.load_data(train_frame, text="text", label="category")
    test = gk.load_data(test_all, text="text", label="category")
    model = gk.Graft(progress=False)
    train_features, test_features = model.features(train), model.features(test)
    report = near_duplicates(train, test, train_features, test_features)
    flagged = set(report["test_positions"])
    train_words = [set(normalize_text(t).split()) for t in train_frame.text]

    def distinct(text):
        words = set(normalize_text(text).split())
        return all(len(words & w) < 0.5 * len(words | w) for w in train_words)

    distinct_rows = [p for p in range(len(test_frame)) if distinct(test_frame.text[p])]
    base = len(test_frame)
    per_kind = {kind: float(np.mean([base + i in flagged for i, k in enumerate(kinds) if k == kind])) for kind in edits}
    cosine, _ = nearest_train(test_features, train_features)
    ratio, _ = text_near_duplicates(train_frame.text.tolist(), test_all.text.tolist())
    alone = {kind: {"embedding >= 0.98": float(np.mean([cosine[base + i] >= 0.98 for i, k in enumerate(kinds) if k == kind])),
                    "median cosine": float(np.median([cosine[base + i] for i, k in enumerate(kinds) if k == kind])),
                    "median text similarity": float(np.median([ratio[base + i] for i, k in enumerate(kinds) if k == kind]))}
             for kind in edits}
    result = {
        "machine": machine(), "train_rows": len(train_frame), "test_rows": len(test_frame), "planted": len(planted),
        "recall": len(flagged & set(range(base, len(test_all)))) / len(planted), "recall_per_kind": per_kind,
        "distinct_test_rows": len(distinct_rows),
        "false_positive_rate_distinct": len(flagged & set(distinct_rows)) / len(distinct_rows),
        "flagged_original_test_rows": len(flagged & set(range(base))),
        "median_cosine_distinct": float(np.median(cosine[distinct_rows])),
        "detectors_alone_per_kind": alone, "report_counts": {k: report[k] for k in ("exact", "text", "embedding")},
    }
    save("evaluation_leakage", result)
    print(json.dumps(result, indent=1))


def _record(name: str) -> dict | None:
    path = MODELS / name / "evaluation.json"
    return json.loads(path.read_text()) if path.is_file() else None


def summary() -> None:
    rows = ["| experiment | test rows | accuracy | ECE before → after (T) | NLL before → after | classical baseline "
            "(gain, 95% CI) | same architecture from scratch (gain, 95% CI) |", "|---|---|---|---|---|---|---|"]
    curves = []
    for name in EXPERIMENTS:
        record = _record(name)
        if record is None:
            continue
        metrics, cal = record["metrics"], record["metrics"]["calibration"]

        def gain(section):
            g = (record.get(section) or {}).get("transfer_gain")
            return ("–" if not g else f"{g['baseline']:.4f} ({g['gain']:+.4f}, {g['ci95'][0]:+.3f} to "
                    f"{g['ci95'][1]:+.3f})")

        rows.append(f"| {name} | {metrics['n']} | {metrics['accuracy']:.4f} | {cal['ece_before']:.4f} → "
                    f"{cal['ece_after']:.4f} ({cal['temperature']:.3f}) | {cal['nll_before']:.4f} → "
                    f"{cal['nll_after']:.4f} | {gain('baseline')} | {gain('scratch')} |")
        curve = record.get("learning_curve") or {}
        if curve.get("points"):
            points = ", ".join(f"{'all' if p.get('all') else p['per_class']}: {p['accuracy']['mean']:.3f} ± "
                               f"{p['accuracy']['std']:.3f}" for p in curve["points"])
            extrapolation = curve["extrapolation"]
            targets = "; ".join(f"{t['accuracy']:.0%} → {t['per_class'] or ('>' + str(t.get('at_least')) if t.get('at_least') else '–')} "
                                f"({t['status'].split(':')[0]})" for t in extrapolation.get("targets", []))
            curves.append(f"- **{name}** (per class: mean ± std over {curve['seeds']} seeds): {points}. Fit: "
                          + (f"a = {extrapolation['a']:.3f}, b = {extrapolation['b']:.3f}, c = {extrapolation['c']:.3f}; "
                             f"labels per class for {targets}" if extrapolation.get("status") == "fitted"
                             else extrapolation.get("status", "")))
    print("\n".join(rows))
    print()
    print("\n".join(curves))
    print()
    for name in EXPERIMENTS:
        print(f"    {command(name)}")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("prepare", "run", "leakage", "summary"):
        sys.exit(__doc__)
    action = sys.argv[1]
    if action == "prepare":
        prepare()
    elif action == "run":
        run(sys.argv[2:] or list(EXPERIMENTS))
    elif action == "leakage":
        leakage()
    else:
        summary()
