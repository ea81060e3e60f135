"""``graftkit fit`` and ``graftkit cv``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from graftkit.artifacts import check_destination
from graftkit.atomic import output_lock
from graftkit.cli.eval_options import (
    add_evaluation_options,
    evaluation_kwargs,
    format_evaluation,
)
from graftkit.cli.options import (
    add_backbone_options,
    add_data_options,
    add_run_options,
    add_task_options,
    data_kwargs,
    emit_json,
    graft_kwargs,
    strategy_kwargs,
    task_kwargs,
)
from graftkit.cli.train_options import (
    add_training_options,
    interrupted,
    remove_checkpoints,
    training_kwargs,
)
from graftkit.data import load_data
from graftkit.errors import ConfigError
from graftkit.evaluation.cv import cross_validate
from graftkit.evaluation.suite import evaluate_model, save_evaluation
from graftkit.graft import Graft, check_device
from graftkit.strategies import get_strategy
from graftkit.tracking import check_tracker, log_cv, log_model_run
from graftkit.training.distributed import is_main_process

logger = logging.getLogger("graftkit.cli")


def register(commands) -> None:
    fit = commands.add_parser(
        "fit", help="fit a model on labelled data and save it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit a frozen pretrained backbone + head, report held-out metrics, write a model directory.",
        epilog="example:\n  graftkit fit train.csv --text review --label stars --test test.csv -o runs/reviews")
    fit.add_argument("data", nargs="?",
                     help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders (may be left out with "
                          "--strategy zero-shot --label-descriptions FILE: a model with no labelled rows)")
    fit.add_argument("-o", "--output", required=True, help="model directory to write")
    fit.add_argument("--overwrite", action="store_true", help="replace a model already in the output directory")
    fit.add_argument("--test", help="separate labelled test file (default: hold out --test-size of the data)")
    fit.add_argument("--test-size", type=float, default=0.2,
                     help="fraction held out, stratified, for the test metrics when --test is not given; 0 = none")
    add_data_options(fit)
    add_task_options(fit)
    add_backbone_options(fit)
    add_run_options(fit)
    add_training_options(fit)
    add_evaluation_options(fit, fit=True)
    fit.set_defaults(run=run_fit)

    cv = commands.add_parser(
        "cv", help="k-fold cross-validation: mean ± std of the task's headline metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  graftkit cv train.csv --text review --label stars --folds 5\n"
               "  graftkit cv reviews.csv --label Rating --text Title Review --numeric Age --categorical Dept  # fused")
    cv.add_argument("data", help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders")
    cv.add_argument("--folds", type=int, default=5, help="number of folds, split as the task splits (default: 5)")
    add_data_options(cv, several_inputs=True)
    add_task_options(cv)
    add_backbone_options(cv)
    add_run_options(cv)
    cv.set_defaults(run=run_cv)


def _explain(table) -> None:
    for line in table.explanation:
        logger.info(line)


def _check_settings(args) -> None:
    """Flags that are wrong whatever the data: fail before reading or embedding anything."""
    get_strategy(args.strategy, **strategy_kwargs(args))
    task_kwargs(args)
    check_device(args.device)


def run_fit(args) -> int:
    """Hold the output's lock for the whole run (main process only: under torchrun every rank runs this)."""
    output = Path(args.output).expanduser()
    check_destination(output, args.overwrite)  # fail before the work, not after
    if not is_main_process():
        return _fit(args, output)
    with output_lock(output):
        return _fit(args, output)


def _fit(args, output: Path) -> int:
    _check_settings(args)
    check_tracker(args.track)
    training = training_kwargs(args, output, strategy_kwargs(args))
    existed = bool(training.get("checkpoint_dir")) and Path(training["checkpoint_dir"]).exists()
    state = {"saved": False}
    try:
        return _fit_and_save(args, output, training, state)
    except KeyboardInterrupt:  # say what is left: the checkpoints to resume from, or nothing
        raise interrupted(training, existed, output, state["saved"]) from None


def _fit_and_save(args, output: Path, training: dict, state: dict) -> int:
    if args.test_size and not 0 < args.test_size < 1:
        raise ConfigError(f"--test-size must be a fraction between 0 and 1 (or 0 for none); got {args.test_size}")
    if args.cv and (args.cv < 2 or not (args.test or args.test_size)):
        raise ConfigError(f"--cv {args.cv}: cross-validation needs K >= 2 and a test split to save it beside "
                          "(--test FILE or --test-size); or run `graftkit cv`")
    if args.data is None:  # zero-shot from class descriptions alone
        return _fit_without_rows(args, output, state)
    table = load_data(args.data, **data_kwargs(args))
    settings = Graft(**graft_kwargs(args))
    task = settings.infer_task(table)  # a single class, a text target of a regression, ... fail here
    if args.test:
        train = table
        roles = {table.modality: table.input_column, "label": table.label_column}
        test = load_data(args.test, **{**data_kwargs(args), **roles})
        task.encode(test)  # before the work
    elif args.test_size:
        train, test = task.split(table, test_size=args.test_size, seed=args.seed)
    else:
        train, test = table, None
    validation = None
    if training and args.validation:
        roles = {table.modality: table.input_column, "label": table.label_column}
        validation = load_data(args.validation, **{**data_kwargs(args), **roles})
    adapt_to = strategy_kwargs(args).get("adapt_to")
    if test is not None and adapt_to:  # domain-adversarial target = the test inputs: leakage
        from graftkit.data.unlabelled import load_unlabelled, warn_if_test_rows

        warn_if_test_rows(load_unlabelled(adapt_to, modality=table.modality), test, "--adapt-to")
    model = settings.clone(task=task.kind, **training).fit(train, validation=validation)
    result = {"train": model.metrics_["train"], "timings": model.timings_, "parameters": model.parameter_counts()}
    record = None
    if test is not None:  # the evaluation record (evaluation.json) that `graftkit report` renders
        cv = (cross_validate(settings.clone(task=task.kind, calibrate=False), train, k=args.cv, seed=args.seed)
              if args.cv else None)
        record = evaluate_model(model, test, train=train, cv=cv, **evaluation_kwargs(args))
        metrics = record["metrics"]
        model.metrics_["test"] = {k: metrics.get(k) for k in ("n", *task.headline)}
        result["test"] = metrics
        result["evaluation"] = {k: record[k] for k in ("leakage", "baseline", "scratch", "forgetting",
                                                       "learning_curve", "cv")}
    model.save(output, overwrite=args.overwrite)
    state["saved"] = True
    remove_checkpoints(args, training)
    if not is_main_process():  # data-parallel run (torchrun): the main process reports
        return 0
    if record is not None:
        save_evaluation(output, record)
    result["output"] = str(output)
    if args.track:
        result["tracking"] = log_model_run(output, params={"command": "fit", "data": args.data})
    if args.json:
        emit_json(result)
    else:
        if test is not None:
            print(model.task_.format_metrics(result["test"]))
            print("\n".join(format_evaluation(record)))
        counts = result["parameters"]
        print(f"trained {counts['trainable']:,} of {counts['total']:,} parameters ({100 * counts['share']:.3g}%)")
        print(f"model written to {output}" + (f" (with evaluation.json: `graftkit report {output}`)"
                                              if record is not None else ""))
        if args.track:
            print(f"MLflow run {result['tracking']['run_id']} in {result['tracking']['tracking_uri']} (model: "
                  f"{result['tracking']['model_uri']})")
    return 0


def _fit_without_rows(args, output: Path, state: dict) -> int:
    """``graftkit fit --strategy zero-shot --label-descriptions FILE -o DIR``: no data, so no test metrics;
    ``graftkit evaluate`` scores it on labelled rows later."""
    if args.test:
        raise ConfigError("--test needs training DATA; fit without data, then run `graftkit evaluate DIR TEST`")
    model = Graft(**graft_kwargs(args)).fit()
    model.save(output, overwrite=args.overwrite)
    state["saved"] = True
    result = {"output": str(output), "classes": list(model.task_.labels), "parameters": model.parameter_counts()}
    if args.json:
        emit_json(result)
    else:
        print(f"zero-shot model over {len(result['classes'])} classes written to {output} (no labelled rows: not "
              "calibrated; `graftkit evaluate` it on labelled data)")
    return 0


def run_cv(args) -> int:
    _check_settings(args)
    check_tracker(args.track)
    table = load_data(args.data, **data_kwargs(args))
    if table.roles is not None:  # a multi-input table: the fusion model's folds (cli/fuse.py)
        from graftkit.cli.fuse import fusion_cv

        result, settings = fusion_cv(args, table)
    else:
        # fold scores do not depend on a temperature: skip fitting it (thresholds and intervals are still fitted)
        settings = {**graft_kwargs(args), "calibrate": False}
        result = cross_validate(Graft(**settings), table, k=args.folds, seed=args.seed)
    if args.track:
        params = {**{k: v for k, v in settings.items() if k not in ("cache_dir", "use_cache", "progress")},
                  "folds": args.folds, "data": args.data}
        result["tracking"] = log_cv(result, params=params, run_name=f"cv {Path(args.data).name}")
    if args.json:
        emit_json(result)
    else:
        print(f"task: {result['task']}")
        for name, s in result["summary"].items():
            print(f"{name:9s} {s['mean']:.4f} ± {s['std']:.4f}  over {args.folds} folds  "
                  f"({', '.join(f'{v:.4f}' for v in s['values'])})")
    return 0
