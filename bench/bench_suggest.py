"""``graftkit suggest --simulate`` on Banking77 and SST-2 with all-MiniLM-L6-v2: accuracy after 5 rounds of 2 labels
per class picked by ``suggest`` (hybrid, uncertainty, diversity) against random picks and against the peer tool
modAL's ``margin_sampling`` (modAL-python 0.4.2.1, an ``ActiveLearner`` around scikit-learn's
``LogisticRegression``), mean ± std over 5 seeds, in one run on the same starts and the same cached features.

Protocol (``graftkit.active.simulate``): the pool is a seeded random 4,000 rows of the training split (the cap keeps
embedding within the shared 2 cores), the test part the data set's own held-out split (Banking77 test, 3,080 rows;
SST-2 dev, 872 rows). Each seed starts from 2 labelled rows per class (the same for every arm); each round adds 2 rows
per class (SST-2: 4, Banking77: 154); after each round graftkit's linear probe (logistic regression, C by CV,
temperature-calibrated) is refitted on the labelled rows and scored on the test part. modAL picks with its own
LogisticRegression (scikit-learn defaults, max_iter 1000) refitted on the labelled rows; every arm is scored by
the same graftkit probe.

    python bench/bench_suggest.py                 # both sets, 5 seeds, 5 rounds
    python bench/bench_suggest.py --quick         # SST-2 only, 2 seeds, 2 rounds
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import warnings

import numpy as np
import pandas as pd
from common import Clock, load, machine, save, shared
from sklearn.linear_model import LogisticRegression

from graftkit import Graft
from graftkit.active import METHODS, simulate
from graftkit.cli.suggest import format_simulation
from graftkit.data import load_data


def modal_margin(X_labelled, y_labelled, X_rest, k, seed):
    """modAL's margin sampling: its ActiveLearner fits the estimator on the labelled rows and queries ``k``."""
    from modAL.models import ActiveLearner
    from modAL.uncertainty import margin_sampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner = ActiveLearner(estimator=LogisticRegression(max_iter=1000, random_state=seed),
                                query_strategy=margin_sampling, X_training=X_labelled, y_training=y_labelled)
        positions, _ = learner.query(X_rest, n_instances=k)
    return positions


def tables(name: str):
    if name == "banking77":
        return (load_data(shared("data", "banking77", "train.csv"), text="text", label="category"),
                load_data(shared("data", "banking77", "test.csv"), text="text", label="category"))
    read = dict(sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    train = pd.read_csv(shared("data", "sst2", "train.tsv"), **read)
    dev = pd.read_csv(shared("data", "sst2", "dev.tsv"), **read)
    return (load_data(train, text="sentence", label="label"), load_data(dev, text="sentence", label="label"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sets", nargs="+", default=["sst2", "banking77"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool-cap", type=int, default=4000)
    parser.add_argument("--C", type=float, help="fix the probe's C (default: chosen by CV every round)")
    parser.add_argument("--cache-dir", help="feature cache (default: a fresh temporary one, so embedding is timed)")
    args = parser.parse_args()
    progress = logging.getLogger("graftkit.active.simulate")  # one line per seed and arm, as it goes
    progress.addHandler(logging.StreamHandler())
    progress.setLevel(logging.INFO)
    if args.quick:
        args.sets, args.seeds, args.rounds = ["sst2"], 2, 2
    print(machine())
    print(load(), "at the start")
    results = {}
    cache = args.cache_dir or tempfile.mkdtemp(prefix="bench-suggest-")  # fresh: the embedding time is real
    for name in args.sets:
        train, test = tables(name)
        base = Graft("all-MiniLM-L6-v2", strategy="linear-probe", cache_dir=cache, progress=False, C=args.C)
        with Clock() as clock:
            result = simulate(train, test, methods=tuple(args.methods), rounds=args.rounds, seeds=args.seeds,
                              pool_cap=args.pool_cap, base=base, pickers={"modAL margin": modal_margin})
        result["wall_s"], result["cpu_s"], result["C"] = round(clock.wall, 1), round(clock.cpu, 1), args.C
        results[name] = result
        print(f"\n== {name} ({clock.wall:.0f} s wall, {clock.cpu:.0f} s CPU; embedding {result['seconds']['embedding']} s)")
        print(format_simulation(result))
        final = result["final"]
        random = final["random"]["accuracy"]["mean"]
        for arm, point in final.items():
            acc = point["accuracy"]
            print(f"  after {args.rounds} rounds, {arm:>12}: {acc['mean']:.4f} ± {acc['std']:.4f} "
                  f"({acc['mean'] - random:+.4f} vs random)")
        print(load())
    save("suggest_" + "_".join(args.sets) + ("_quick" if args.quick else ""), {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
