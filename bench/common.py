"""Small helpers shared by the benchmark scripts: where the ../shared assets are, the machine, timing."""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

SHARED = Path(os.environ.get("GRAFTKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
OUT = Path(__file__).resolve().parent / "out"


def shared(*parts: str) -> Path:
    """A path under ../shared; exits with the reason when the asset is absent (e.g. on a user's machine)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        sys.exit(f"{path} is absent: the benchmarks read the project's ../shared assets (set GRAFTKIT_SHARED)")
    return path


def sst2_frame(part: str = "train") -> pd.DataFrame:
    """SST-2's ``part`` (train / dev) as strings: ``sentence`` and ``label`` ("0" / "1")."""
    return pd.read_csv(shared("data", "sst2", f"{part}.tsv"), sep="\t", quoting=csv.QUOTE_NONE, dtype=str,
                       keep_default_na=False)


def sst2_sentences() -> list[str]:
    return sst2_frame()["sentence"].tolist()


def machine() -> str:
    import torch

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()} | {os.cpu_count()} CPU cores {model} | Python {platform.python_version()} | "
            f"torch {torch.__version__} | {datetime.date.today().isoformat()}")


def load() -> str:
    """The machine's load averages: on a shared machine, say how busy it was while the figures were taken."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


class Clock:
    """Wall time and this process's CPU time of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def save(name: str, result: dict) -> None:
    """Write the figures as JSON under bench/out/ (ignored by git) and say where."""
    OUT.mkdir(exist_ok=True)
    result = {**result, "load_at_end": load()}
    print(f"{result['load_at_end']} at the end")
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"figures written to {path}")


def conll_entity_sets(split: str) -> pd.DataFrame:
    """CoNLL-2003 sentences (``text``: the tokens joined by spaces) with the set of entity types they mention
    (``types``: ``|``-joined PER / LOC / ORG / MISC, empty when none); ``-DOCSTART-`` lines skipped."""
    rows, tokens, types = [], [], set()
    for line in shared("data", "conll2003", f"{split}.txt").read_text(encoding="utf-8").splitlines() + [""]:
        parts = line.split()
        if not parts:
            if tokens:
                rows.append({"text": " ".join(tokens), "types": "|".join(sorted(types))})
            tokens, types = [], set()
            continue
        if parts[0] == "-DOCSTART-":
            continue
        tokens.append(parts[0])
        if parts[-1] != "O":
            types.add(parts[-1].split("-", 1)[1])
    return pd.DataFrame(rows)


def clothing_reviews() -> pd.DataFrame:
    """Women's clothing reviews with a non-blank review text: ``text`` and the 1-5 ``rating`` (as text)."""
    frame = pd.read_csv(shared("data", "womens_clothing_reviews", "Womens Clothing E-Commerce Reviews.csv"),
                        dtype=str, keep_default_na=False)
    frame = frame[frame["Review Text"].str.strip() != ""]
    return pd.DataFrame({"text": frame["Review Text"].tolist(), "rating": frame["Rating"].tolist()})
