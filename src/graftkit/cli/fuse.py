"""``graftkit fuse``: fit a model on a multi-input table (text / image / audio columns plus numeric and categorical
ones; ``--joint``: the encoder trained with the tabular columns before its output layer), evaluate it on a seeded held-out split (metrics, feature-group importance, optionally the TF-IDF + tabular
baseline and k-fold cv), and save it; ``graftkit predict`` reads the saved directory (``use.py`` hands a fusion
model to ``predict_fusion`` here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from graftkit.atomic import output_lock
from graftkit.cli.eval_options import evaluation_kwargs, leakage_line
from graftkit.cli.options import add_threads_option, emit_json, positive_int, seed
from graftkit.data import load_data
from graftkit.errors import ConfigError
from graftkit.fusion.assign import assign_backbones
from graftkit.fusion.cv import cross_validate_fusion, fusion_params
from graftkit.fusion.evaluation import evaluate_fusion, save_fusion_evaluation
from graftkit.fusion.model import ENCODERS, HEADS, FusionModel, load_fusion
from graftkit.tasks import TASK_KINDS


def register(commands) -> None:
    fuse = commands.add_parser(
        "fuse", help="fit text / image + tabular columns into one model (gradient-boosted trees by default)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit fuse reviews.csv --label Rating --text Title 'Review Text' --numeric Age "
               "--categorical 'Department Name' -o runs/fused\n  graftkit predict runs/fused new.csv\n"
               "  graftkit fuse reviews.csv --label Rating --text 'Review Text' --numeric Age --joint --strategy lora "
               "-o runs/joint")
    fuse.add_argument("data", help="CSV / TSV / JSONL / Parquet file")
    group = fuse.add_argument_group("column roles (any not named are inferred, with the reason printed, when no "
                                    "role is named at all)")
    for role, what in (("text", "free text"), ("image", "image file paths"), ("audio", "audio file paths"),
                       ("numeric", "numbers (blank = missing)"), ("categorical", "categories (blank = missing)")):
        group.add_argument(f"--{role}", nargs="+", metavar="COLUMN", help=f"column(s) holding {what}")
    fuse.add_argument("--label", required=True, metavar="COLUMN", help="the target column")
    fuse.add_argument("--task", choices=TASK_KINDS, help="what the target is (default: inferred)")
    fuse.add_argument("--backbone", nargs="+", default=[], metavar="[COLUMN=]SPEC",
                      help="backbone of every media column it reads (SPEC; an image-text model such as CLIP: the "
                           "image and the text columns, one tower each), or of one column / modality (COLUMN=SPEC, "
                           "text=SPEC); default all-MiniLM-L6-v2 for text, efficientnet-lite0 for images")
    fuse.add_argument("--head", choices=HEADS, help="gbdt (HistGradientBoosting, the default) or linear; --joint "
                                                     "trains its own linear output layer")
    fuse.add_argument("--encoder", choices=ENCODERS,
                      help="frozen (default); lora: first LoRA-tune each text backbone on the target, then embed "
                           "(two-stage); joint: as --joint")
    fuse.add_argument("--joint", action="store_true",
                      help="train the encoder of the text columns (joined; or of the one image / audio column) and "
                           "the output layer together on the engine, the tabular columns concatenated to the pooled "
                           "embedding before that layer")
    fuse.add_argument("--strategy", help="--joint: how the encoder trains (lora, the default; finetune, lp-ft, ...)")
    fuse.add_argument("--learning-rate", type=float, help="--joint / lora: learning rate of the output layer "
                                                          "(default: the strategy's)")
    fuse.add_argument("--tune-rows", type=positive_int, help="lora: train the adapter on this many rows at most")
    fuse.add_argument("--tune-epochs", type=positive_int, default=2, help="lora / --joint: epochs (default: 2)")
    fuse.add_argument("--reduce", choices=["pca", "svd"], help="reduce each media column's embeddings (fitted on "
                                                             "the training rows)")
    fuse.add_argument("--components", type=positive_int, default=64, help="dimensions kept by --reduce (64)")
    fuse.add_argument("--test-size", type=float, default=0.2, help="held-out share (default 0.2; 0: none)")
    fuse.add_argument("--cv", type=positive_int, metavar="K", help="also report K-fold cross-validation")
    fuse.add_argument("--baseline", action="store_true", help="also fit the TF-IDF + tabular GBDT baseline")
    fuse.add_argument("--seed", type=seed, default=0)
    fuse.add_argument("--batch-size", type=positive_int, default=32)
    fuse.add_argument("--cache-dir", help="feature cache folder")
    fuse.add_argument("--format", choices=["csv", "tsv", "jsonl", "parquet"])
    fuse.add_argument("--encoding", default="utf-8")
    fuse.add_argument("--drop-missing", action="store_true",
                      help="drop rows whose label is missing (blank, NA, N/A, nan, null, None, -, ?) and say how "
                           "many, instead of refusing them")
    fuse.add_argument("-o", "--output", help="model directory to write")
    fuse.add_argument("--overwrite", action="store_true", help="replace an existing model in -o")
    fuse.add_argument("--json", action="store_true", help="print the result as JSON")
    add_threads_option(fuse)
    fuse.set_defaults(run=run_fuse)


def read_table(args):
    roles = {r: getattr(args, r) for r in ("text", "image", "audio", "numeric", "categorical")}
    infer = not any(roles.values())
    options = {"label": args.label, "format": args.format, "encoding": args.encoding,
               "drop_missing": args.drop_missing}
    table = load_data(args.data, roles="infer" if infer else None, **options, **roles)
    if table.roles is None:  # one media column named and nothing else: still a (one-column) multi-input table
        table = load_data(args.data, roles="infer", **options, **roles)
    return table


def run_fuse(args) -> int:
    if not 0 <= args.test_size < 1:
        raise ConfigError(f"--test-size must be in [0, 1); got {args.test_size}")
    if args.output:
        from graftkit.fusion.model import check_destination

        check_destination(Path(args.output).expanduser(), args.overwrite)
    table = read_table(args)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    for line in table.explanation:
        say(f"roles: {line}")
    say(f"inputs: {table.roles.describe()}")
    if args.joint and args.encoder not in (None, "joint"):
        raise ConfigError(f"--joint trains the encoder itself; drop --encoder {args.encoder} or --joint")
    tune = {"epochs": args.tune_epochs}
    if args.learning_rate is not None:
        tune["learning_rate"] = args.learning_rate
    model = FusionModel(assign_backbones(args.backbone, table.roles), head=args.head, encoder="joint" if args.joint else
                        (args.encoder or "frozen"), strategy=args.strategy, reduce=args.reduce,
                        components=args.components, seed=args.seed, batch_size=args.batch_size,
                        cache_dir=args.cache_dir, task=args.task, tune_rows=args.tune_rows, tune_params=tune)
    from graftkit.tasks import infer_task

    task = infer_task(table, args.task)
    result: dict = {"roles": table.roles.to_dict(), "task": task.kind}
    train, test = task.split(table, test_size=args.test_size, seed=args.seed) if args.test_size else (table, None)
    model.fit(train)
    result["train"] = model.metrics_["train"]
    record = None
    if test is not None:  # the evaluation record (evaluation.json) that `graftkit report` renders
        record = evaluate_fusion(model, test, train=train, baseline=args.baseline, seed=args.seed)
        metrics = record["metrics"]
        result["test"] = {k: metrics[k] for k in (*task.headline, "n") if k in metrics}
        result["feature_groups"] = metrics["feature_groups"]
        result["notes"] = metrics["notes"]
        say(f"test: {task.format_metrics(metrics)}")
        say(importance_lines(metrics["feature_groups"], f"{len(test)} test rows"))
        if leakage_line(record["leakage"]):
            result["leakage"] = {k: record["leakage"][k] for k in ("leaked", "n_test", "exact", "text", "embedding")}
            say(leakage_line(record["leakage"]))
        if args.baseline:
            base = record["baseline"]
            result["baseline"] = {"name": base["name"], task.primary_metric: base[task.primary_metric],
                                  "transfer_gain": base["transfer_gain"]}
            say(f"baseline {base['name']}: {task.primary_metric} {base[task.primary_metric]:.4f} (gain of the fusion "
                f"model {base['transfer_gain']['gain']:+.4f})")
    if args.cv:
        result["cv"] = cross_validate_fusion(FusionModel(**{**fusion_params(model), "progress": False}), train,
                                             k=args.cv, seed=args.seed)
        say(format_cv(result["cv"]))
        if record is not None:
            record["cv"] = result["cv"]
    if args.output:
        with output_lock(Path(args.output).expanduser()):
            model.save(args.output, overwrite=args.overwrite)
            if record is not None:
                save_fusion_evaluation(args.output, record)
        say(f"saved {args.output}" + (f" with evaluation.json (`graftkit report {args.output}`)" if record else ""))
    if args.json:
        emit_json(result)
    return 0


def fusion_cv(args, table) -> tuple[dict, dict]:
    """``graftkit cv`` on a multi-input table: the fusion model's folds, and the settings they ran with. The
    default strategy (linear-probe) is frozen encoders + the GBDT head (``--head linear``: the linear one);
    ``--strategy lora`` is the two-stage recipe (``--epochs``: its tuning epochs)."""
    from graftkit.cli.options import strategy_kwargs
    from graftkit.fusion.encoders import DEFAULT_BACKBONES

    given = strategy_kwargs(args)
    if args.strategy not in ("linear-probe", "lora") or given.get("head", "linear") not in ("linear", "gbdt"):
        raise ConfigError(f"a multi-input table is cross-validated as a fusion model: --strategy linear-probe (frozen "
                          f"encoders, GBDT head; --head linear for the linear one) or --strategy lora (LoRA-tuned "
                          f"text encoders, then the trees); got --strategy {args.strategy}"
                          + (f" --head {given['head']}" if "head" in given else ""))
    # the CLI's default backbone is the fusion default for text; image / audio columns keep theirs
    entries = [] if args.backbone == DEFAULT_BACKBONES["text"] else [args.backbone]
    settings = {"backbones": assign_backbones(entries, table.roles), "head": "linear" if given.get("head") == "linear"
                else "gbdt", "encoder": "lora" if args.strategy == "lora" else "frozen", "seed": args.seed,
                "batch_size": args.batch_size, "cache_dir": args.cache_dir, "use_cache": not args.no_cache,
                "device": args.device, "task": args.task, "progress": False,
                "tune_params": {"epochs": given["epochs"]} if "epochs" in given else {}}
    result = cross_validate_fusion(FusionModel(**settings), table, k=args.folds, seed=args.seed)
    return result, {k: v for k, v in settings.items() if k not in ("cache_dir", "use_cache", "progress")}


def format_cv(result: dict) -> str:
    """The cv record as lines: how the folds were drawn, then mean ± std of each headline metric."""
    k = len(result["folds"])
    return "\n".join([f"cv ({k} folds): {result['split']}"] + [
        f"{name:9s} {s['mean']:.4f} ± {s['std']:.4f}  over {k} folds  ({', '.join(f'{v:.4f}' for v in s['values'])})"
        for name, s in result["summary"].items()])


def load_for_predict(args, require_label: bool):
    """``graftkit predict`` / ``evaluate`` on a fusion model directory: the model and the table read with its
    roles."""
    model = load_fusion(args.model, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    return model, read_like_model(model, args.data, args, require_label)


def read_like_model(model, data, args, require_label: bool):
    """``data`` read with the fitted model's roles and label; ``--drop-missing`` drops unlabelled rows where labels
    are read (evaluate; never predict)."""
    return load_data(data, require_label=require_label, format=args.format, encoding=args.encoding,
                     known_columns={"roles": model.featurizer_.roles.to_dict(), "label": model.label_column_},
                     label=model.label_column_ if require_label else None,
                     drop_missing=getattr(args, "drop_missing", False))


def importance_lines(groups: dict, rows: str) -> str:
    """The feature-group importance as printed lines, largest drop first."""
    head = f"feature-group importance (drop of {groups['metric']} when permuted, {groups['repeats']} repeats, {rows}):"
    return "\n".join([head] + [
        f"  {name:<24} {g['drop']:+.4f} ± {g['std']:.4f}  ({g['columns']} features)"
        for name, g in sorted(groups["groups"].items(), key=lambda kv: -kv[1]["drop"])])


def evaluate_saved(args) -> int:
    """``graftkit evaluate FUSION_DIR DATA``: the fusion model's evaluation record on labelled ``DATA`` (metrics,
    feature-group importance; the classical baseline and its transfer gain with ``--train``), printed, and with
    ``--save`` written to ``FUSION_DIR/evaluation.json`` for ``graftkit report``."""
    if args.target:
        raise ConfigError("--target measures a domain shift for one input column; a fusion model reads several: "
                          "drop --target")
    model, table = load_for_predict(args, require_label=True)
    train = read_like_model(model, args.train, args, require_label=True) if args.train else None
    options = {k: v for k, v in evaluation_kwargs(args).items()
               if k in ("leakage", "drop_leaked", "leakage_threshold", "text_threshold")}
    record = evaluate_fusion(model, table, train=train, baseline=train is not None and not args.no_baseline, seed=0,
                             **options)
    metrics = record["metrics"]
    if args.save:
        save_fusion_evaluation(args.model, record)
    if args.json:
        emit_json({**{k: v for k, v in metrics.items() if k != "feature_groups"},
                   "feature_groups": metrics["feature_groups"], "baseline": record["baseline"],
                   "leakage": record["leakage"]})
        return 0
    print(model.task_.format_metrics(metrics))
    print(importance_lines(metrics["feature_groups"], f"{len(table)} rows"))
    if leakage_line(record["leakage"]):
        print(leakage_line(record["leakage"]))
    if "skipped" not in record["baseline"]:
        base = record["baseline"]
        print(f"baseline {base['name']}: {model.task_.primary_metric} {base[model.task_.primary_metric]:.4f} "
              f"(gain of the fusion model {base['transfer_gain']['gain']:+.4f})")
    if args.save:
        print(f"evaluation saved to {Path(args.model) / 'evaluation.json'}; `graftkit report {args.model}` renders it")
    return 0


def records_frame(model, table) -> pd.DataFrame:
    records = model.predict_records(table)
    return pd.DataFrame([{"row": row, **record} for row, record in zip(table.frame.index, records)])
