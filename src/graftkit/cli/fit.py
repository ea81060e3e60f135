"""``graftkit fit`` and ``graftkit cv``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from graftkit.artifacts import check_destination
from graftkit.cli.options import (add_backbone_options, add_data_options, add_run_options, data_kwargs, emit_json,
                                  graft_kwargs)
from graftkit.data import load_data
from graftkit.errors import ConfigError
from graftkit.evaluation.cv import cross_validate
from graftkit.evaluation.metrics import format_table
from graftkit.graft import Graft

logger = logging.getLogger("graftkit.cli")


def register(commands) -> None:
    fit = commands.add_parser(
        "fit", help="fit a model on labelled data and save it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit a frozen pretrained backbone + head, report held-out metrics, write a model directory.",
        epilog="example:\n  graftkit fit train.csv --text review --label stars --test test.csv -o runs/reviews")
    fit.add_argument("data", help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders")
    fit.add_argument("-o", "--output", required=True, help="model directory to write")
    fit.add_argument("--overwrite", action="store_true", help="replace a model already in the output directory")
    fit.add_argument("--test", help="separate labelled test file (default: hold out --test-size of the data)")
    fit.add_argument("--test-size", type=float, default=0.2,
                     help="fraction held out, stratified, for the test metrics when --test is not given; 0 = none")
    add_data_options(fit)
    add_backbone_options(fit)
    add_run_options(fit)
    fit.set_defaults(run=run_fit)

    cv = commands.add_parser(
        "cv", help="k-fold cross-validation: mean ± std of accuracy and macro-F1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit cv train.csv --text review --label stars --folds 5")
    cv.add_argument("data", help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders")
    cv.add_argument("--folds", type=int, default=5, help="number of stratified folds (default: 5)")
    add_data_options(cv)
    add_backbone_options(cv)
    add_run_options(cv)
    cv.set_defaults(run=run_cv)


def _explain(table) -> None:
    for line in table.explanation:
        logger.info(line)


def run_fit(args) -> int:
    output = Path(args.output)
    check_destination(output, args.overwrite)  # fail before the work, not after
    table = load_data(args.data, **data_kwargs(args))
    if args.test:
        train = table
        roles = {table.modality: table.input_column, "label": table.label_column}
        test = load_data(args.test, **{**data_kwargs(args), **roles})
    elif args.test_size:
        if not 0 < args.test_size < 1:
            raise ConfigError(f"--test-size must be a fraction between 0 and 1 (or 0 for none); got {args.test_size}")
        train, test = table.split(test_size=args.test_size, seed=args.seed)
    else:
        train, test = table, None
    model = Graft(**graft_kwargs(args)).fit(train)
    result = {"train": model.metrics_["train"], "timings": model.timings_}
    if test is not None:
        metrics = model.evaluate(test)
        model.metrics_["test"] = {k: metrics[k] for k in ("n", "accuracy", "macro_f1")}
        result["test"] = metrics
    model.save(output, overwrite=args.overwrite)
    result["output"] = str(output)
    if args.json:
        emit_json(result)
    else:
        if test is not None:
            print(format_table(result["test"]))
        print(f"model written to {output}")
    return 0


def run_cv(args) -> int:
    table = load_data(args.data, **data_kwargs(args))
    result = cross_validate(lambda: Graft(**graft_kwargs(args)), table, k=args.folds, seed=args.seed)
    if args.json:
        emit_json(result)
    else:
        for name in ("accuracy", "macro_f1"):
            s = result["summary"][name]
            print(f"{name:9s} {s['mean']:.4f} ± {s['std']:.4f}  over {args.folds} folds  "
                  f"({', '.join(f'{v:.4f}' for v in s['values'])})")
    return 0
