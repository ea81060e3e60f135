"""``graftkit predict`` and ``graftkit evaluate``: use a saved model on new data, in a new process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from graftkit.atomic import output_lock, write_atomic
from graftkit.cli.eval_options import (
    add_evaluation_options,
    evaluation_kwargs,
    format_evaluation,
)
from graftkit.cli.options import add_data_options, add_threads_option, data_kwargs, emit_json, positive_int
from graftkit.data import load_data
from graftkit.errors import ArtifactError, ConfigError
from graftkit.fusion.model import is_fusion_model
from graftkit.loading import load_model
from graftkit.scoring.regression import check_level


def register(commands) -> None:
    predict = commands.add_parser(
        "predict", help="predict labels for new data with a saved model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit predict runs/reviews new.csv -o predictions.csv")
    predict.add_argument("model", help="model directory written by `graftkit fit`")
    predict.add_argument("data", help="data file or folder (a label column is not needed)")
    predict.add_argument("-o", "--output", help="CSV file to write (default: stdout)")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    predict.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                         help="onnx: MODEL is a directory written by `graftkit export --format onnx`, run with "
                              "onnxruntime (default: torch)")
    _add_common(predict)
    predict.set_defaults(run=run_predict)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy, macro-F1, per-class table and confusion matrix on labelled data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit evaluate runs/reviews test.csv --json\n"
               "  graftkit evaluate runs/reviews test.csv --train train.csv --learning-curve --save\n"
               "  graftkit report runs/reviews")
    evaluate.add_argument("model", help="model directory written by `graftkit fit`")
    evaluate.add_argument("data", help="labelled data file or folder")
    _add_common(evaluate)
    add_evaluation_options(evaluate, fit=False)
    evaluate.add_argument("--target", metavar="FILE",
                          help="unlabelled target-domain data: report the domain shift from the training rows (else "
                               "the test rows) to it (proxy A-distance, MMD)")
    evaluate.set_defaults(run=run_evaluate)


def _add_common(parser) -> None:
    add_data_options(parser)
    parser.add_argument("--batch-size", type=positive_int, help="examples per forward pass (default: as fitted)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(parser)
    parser.add_argument("--cache-dir", help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--thresholds", metavar="FILE",
                        help="multi-label: a JSON object label -> decision threshold in (0, 1), used instead of the "
                             "tuned ones")
    parser.add_argument("--interval", type=float, metavar="LEVEL",
                        help="regression: level of the prediction intervals (default: the level fitted, 0.9)")


def _load(args, require_label: bool):
    if is_fusion_model(args.model):  # a multi-input model (graftkit fuse): its own loader reads its roles
        from graftkit.cli.fuse import load_for_predict

        return load_for_predict(args, require_label)
    if args.interval is not None:
        check_level(args.interval)
    if getattr(args, "runtime", "torch") == "onnx":
        from graftkit.export import load_onnx

        model = load_onnx(args.model)
    else:
        if (Path(args.model) / "onnx.json").is_file():
            raise ConfigError(f"{args.model} is an ONNX export; pass --runtime onnx to run it with onnxruntime")
        model = load_model(args.model, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if args.batch_size is not None:
        model.batch_size = args.batch_size
    if args.thresholds:
        model.use_thresholds(_read_json(args.thresholds), source=args.thresholds)
    known = {model.input_["modality"]: model.input_["column"], "label": model.input_.get("label_column")}
    return model, load_data(args.data, require_label=require_label, known_columns=known, **data_kwargs(args))


def _read_json(path: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--thresholds file {path!r} does not exist; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); write an object such as {{\"PER\": 0.4}}") from None


def run_predict(args) -> int:
    if args.output and Path(args.output).is_dir():
        raise ArtifactError(f"output {args.output!r} is a directory; give a CSV file path (-o FILE)")
    _refuse_existing(args)
    if args.output and not args.json:
        with output_lock(Path(args.output).expanduser()):  # a second process writing the same file is refused
            return _predict(args)
    return _predict(args)


def _refuse_existing(args) -> None:
    if args.output and Path(args.output).exists() and not args.overwrite:
        raise ArtifactError(f"output file {args.output!r} exists; pass --overwrite or choose another -o")


def _predict(args) -> int:
    model, table = _load(args, require_label=False)
    options = {"level": args.interval} if args.interval is not None else {}
    records = model.predict_records(table, **options)
    frame = pd.DataFrame([{"row": row, **record} for row, record in zip(table.frame.index, records)])
    if args.json:
        emit_json(frame.to_dict(orient="records"))
    elif args.output:
        _refuse_existing(args)  # again: another process may have written it while this one predicted
        _write_atomic(frame, Path(args.output))
    else:
        frame.to_csv(sys.stdout, index=False)
    return 0


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda handle: frame.to_csv(handle, index=False))


def run_evaluate(args) -> int:
    _refuse_saved_evaluation(args)
    if args.save:  # the model directory's lock: not while a fit --overwrite or another evaluate --save writes it
        with output_lock(Path(args.model).expanduser()):
            return _evaluate(args)
    return _evaluate(args)


def _refuse_saved_evaluation(args) -> None:
    if args.save and (Path(args.model).expanduser() / "evaluation.json").exists() and not args.overwrite:
        raise ArtifactError(f"{Path(args.model) / 'evaluation.json'} exists (the results saved by fit or an earlier "
                            "evaluate); pass --overwrite to replace it, or drop --save")


def _evaluate(args) -> int:
    from graftkit.evaluation.suite import evaluate_model, save_evaluation

    if is_fusion_model(args.model):  # a multi-input model: its own record (cli/fuse.py)
        from graftkit.cli.fuse import evaluate_saved

        return evaluate_saved(args)
    model, table = _load(args, require_label=True)
    train = None
    if args.train:
        roles = {table.modality: table.input_column, "label": table.label_column}
        train = load_data(args.train, **{**data_kwargs(args), **roles})
    record = evaluate_model(model, table, train=train, interval=args.interval, target=args.target,
                            **evaluation_kwargs(args))
    metrics = record["metrics"]
    if args.save:
        _refuse_saved_evaluation(args)
        save_evaluation(args.model, record)
    if args.json:
        extra = {k: record[k] for k in ("leakage", "baseline", "scratch", "forgetting", "learning_curve", "domain_shift")
                 if "skipped" not in record[k]}
        emit_json({**metrics, **extra})
    else:
        print(model.task_.format_metrics(metrics))
        print("\n".join(format_evaluation(record)))
        if args.save:
            print(f"evaluation saved to {Path(args.model) / 'evaluation.json'}; `graftkit report {args.model}` renders it")
    return 0
