"""Linear-probe head fit time on Banking77 (10,003 x 384 features, 77 classes): before and after.

"before" is the head as first written: ``LogisticRegressionCV`` (5 folds, Cs 0.001..10, neg log-loss)
at scikit-learn's default tolerance 1e-4, refitted at the chosen C. "after" is ``LogRegHead.fit``
now: the CV ranks C with fits to tolerance 1e-3, then the final fit continues from the CV refit to 1e-4.
Both run on the same standardised features (from graftkit's feature cache), alternately, several times.

    python bench/bench_head.py
    python bench/bench_head.py --quick
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from common import OUT, Clock, load, machine, save, shared
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from graftkit import Graft
from graftkit.data import load_data
from graftkit.tasks.heads import Head, LogRegHead


def before(X, y):
    """The previous head: LogisticRegressionCV at tolerance 1e-4 with its own refit."""
    scaling = Head.scaling(X, True)
    model = LogisticRegressionCV(Cs=[0.001, 0.01, 0.1, 1.0, 10.0], cv=StratifiedKFold(5, shuffle=True, random_state=0),
                                 max_iter=1000, random_state=0, scoring="neg_log_loss", n_jobs=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.fit((X - scaling["mean"]) / scaling["scale"], y)
    return lambda Z: model.predict_proba((Z - scaling["mean"]) / scaling["scale"]), float(np.ravel(model.C_)[0])


def after(X, y):
    head = LogRegHead.fit(X, y, seed=0)
    return head.predict_proba, head.info["C"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2,000 train rows, 1 repeat")
    args = parser.parse_args()

    train = load_data(shared("data", "banking77", "train.csv"), text="text", label="category")
    test = load_data(shared("data", "banking77", "test.csv"), text="text", label="category")
    if args.quick:
        train, args.repeats = train.subset(range(0, len(train), 5)), 1
    graft = Graft(backbone="all-MiniLM-L6-v2", cache_dir=OUT / "feature-cache", progress=False)
    X, X_test = graft.features(train), graft.features(test)  # embedded once, then read from the cache
    labels = sorted(set(train.labels()))
    y = np.array([labels.index(v) for v in train.labels()])
    y_test = np.array([labels.index(v) for v in test.labels()])
    print(machine())
    print(f"{load()} at the start")
    print(f"head fit on {X.shape[0]} x {X.shape[1]} features, {len(labels)} classes; {args.repeats} alternating repeats")
    result = {"machine": machine(), "rows": X.shape[0], "runs": {"before": [], "after": []}}
    for repeat in range(args.repeats):
        for name, fit in ((("before", before), ("after", after)) if repeat % 2 == 0 else (("after", after), ("before", before))):
            with Clock() as clock:
                predict_proba, C = fit(X, y)
            probabilities = predict_proba(X_test)
            run = {"seconds": clock.wall, "C": C, "accuracy": 100 * float((probabilities.argmax(1) == y_test).mean()),
                   "log_loss": float(log_loss(y_test, probabilities, labels=range(len(labels))))}
            result["runs"][name].append(run)
            print(f"{name:6s}: {run['seconds']:6.1f}s  C={C:g}  test accuracy {run['accuracy']:.2f}  "
                  f"test log-loss {run['log_loss']:.4f}", flush=True)
    mean = {name: float(np.mean([r["seconds"] for r in runs])) for name, runs in result["runs"].items()}
    print(f"mean fit time: before {mean['before']:.1f}s, after {mean['after']:.1f}s -> "
          f"{mean['before'] / mean['after']:.2f}x faster")
    save("head" + ("_quick" if args.quick else ""), {**result, "mean_seconds": mean})


if __name__ == "__main__":
    main()
