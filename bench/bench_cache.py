"""Feature cache: the same experiment twice on Banking77 train, then the data set with 10% more rows.

A seeded 90% of the training rows is the base data set. Run 1 fits on it with a fresh cache
directory (every row is a forward pass), run 2 fits the same data again in a new ``Graft`` (the features
come from the cache), run 3 fits on the base plus the remaining 10% (only the new rows are embedded).
Each run is a whole ``Graft(...).fit(...)`` with the default linear probe: backbone load + content
keys + features + logistic regression head (C by 5-fold CV). The feature step is
``last_extraction_["seconds"]`` (hashing the rows, reading or computing their features).

    python bench/bench_cache.py
    python bench/bench_cache.py --quick
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import Clock, load, machine, save, shared

from graftkit import Graft
from graftkit.data import load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 rows instead of 10,003")
    args = parser.parse_args()

    data = load_data(shared("data", "banking77", "train.csv"), text="text", label="category")
    order = np.random.default_rng(0).permutation(len(data))[:1000 if args.quick else len(data)]
    n_base = int(round(0.9 * len(order)))
    base, grown = data.subset(order[:n_base]), data.subset(order)
    new_texts = set(grown.items()) - set(base.items())
    print(machine())
    print(f"{load()} at the start")
    print(f"Banking77 train: base {len(base)} rows, grown {len(grown)} rows ({len(new_texts)} new distinct texts)")

    runs = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, table in (("1 cold cache", base), ("2 same data again", base), ("3 +10% rows", grown)):
            model = Graft(backbone="all-MiniLM-L6-v2", cache_dir=cache, progress=False)
            with Clock() as clock:
                model.fit(table)
            runs[name] = {"rows": len(table), "embedded": model.last_extraction_["embedded"],
                          "feature_s": model.last_extraction_["seconds"], "head_s": model.timings_["head_s"],
                          "fit_s": clock.wall, "fit_minus_head_s": clock.wall - model.timings_["head_s"]}
            run = runs[name]
            print(f"run {name}: {run['rows']} rows, embedded {run['embedded']}; feature step {run['feature_s']:.2f}s, "
                  f"head {run['head_s']:.1f}s, whole fit {run['fit_s']:.1f}s (without the head "
                  f"{run['fit_minus_head_s']:.1f}s)", flush=True)
    cold, warm = runs["1 cold cache"], runs["2 same data again"]
    speedups = {key: cold[key] / warm[key] for key in ("feature_s", "fit_minus_head_s", "fit_s")}
    print(f"second run vs first: feature step {speedups['feature_s']:.0f}x faster, fit without the head "
          f"{speedups['fit_minus_head_s']:.1f}x, whole fit {speedups['fit_s']:.2f}x")
    grown_run = runs["3 +10% rows"]
    print(f"appending: last_extraction_['embedded'] = {grown_run['embedded']} "
          f"(expected {len(new_texts)}: the new distinct texts)")
    save("cache" + ("_quick" if args.quick else ""), {"machine": machine(), "runs": runs, "speedups": speedups,
                                                      "new_distinct_texts": len(new_texts)})


if __name__ == "__main__":
    main()
