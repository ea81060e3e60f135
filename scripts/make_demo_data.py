"""Rebuild the embedded demo sample (src/graftkit/demo_data/) from the full Banking77 release.

Usage: python scripts/make_demo_data.py ../shared/data/banking77
Deterministic: the first 12 training and 6 test utterances of every intent, in file order.
"""

import csv
import shutil
import sys
from collections import defaultdict
from pathlib import Path

PER_CLASS = {"train": 12, "test": 6}


def main(source: Path) -> None:
    target = Path(__file__).resolve().parent.parent / "src" / "graftkit" / "demo_data"
    target.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        kept, counts = [], defaultdict(int)
        with open(source / f"{split}.csv", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if counts[row["category"]] < per_class:
                    counts[row["category"]] += 1
                    kept.append(row)
        with open(target / f"banking77_{split}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "category"])
            writer.writeheader()
            writer.writerows(kept)
    shutil.copy(source / "LICENSE_CC-BY-4.0.txt", target / "LICENSE_CC-BY-4.0.txt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
