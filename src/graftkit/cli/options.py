"""Flags shared by several commands. Strategy flags are generated from the strategy dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from graftkit.errors import ConfigError
from graftkit.scoring.regression import check_level
from graftkit.strategies.base import strategy_classes, strategy_names
from graftkit.tasks import TASK_KINDS, task_kinds


def positive_int(text: str) -> int:
    """argparse type for counts such as --batch-size: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """argparse type for --seed: an integer >= 0 (numpy's and scikit-learn's generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def add_data_options(parser: argparse.ArgumentParser, label_required: bool = True,
                     several_inputs: bool = False) -> None:
    """The data flags; ``several_inputs``: a command that also reads multi-input tables (several media columns,
    ``--numeric`` / ``--categorical`` columns, or ``--roles infer``) and hands them to the fusion model."""
    group = parser.add_argument_group("data columns (inferred when not given)")
    many = {"nargs": "+"} if several_inputs else {}
    several = " (several, or with --numeric / --categorical: a multi-input table)" if several_inputs else ""
    group.add_argument("--text", metavar="COLUMN", help=f"column holding the text{several}", **many)
    group.add_argument("--image", metavar="COLUMN", help=f"column holding image file paths{several}", **many)
    group.add_argument("--audio", metavar="COLUMN", help=f"column holding audio file paths{several}", **many)
    if several_inputs:
        group.add_argument("--numeric", nargs="+", metavar="COLUMN",
                           help="numeric column(s), blank = missing: a multi-input table (the media columns' "
                                "embeddings fused with the tabular columns)")
        group.add_argument("--categorical", nargs="+", metavar="COLUMN",
                           help="categorical column(s), blank = missing: a multi-input table")
        group.add_argument("--roles", choices=["infer"],
                           help="infer: read a multi-input table, every column but the label given a role (text, "
                                "image, audio, numeric, categorical) with the reason printed")
    group.add_argument("--label", metavar="COLUMN",
                       help="column holding the target: a class, a delimited label list, or a number")
    group.add_argument("--labels", metavar="COLUMN", nargs="+",
                       help="several 0/1 columns, one per label: a multi-label target")
    group.add_argument("--format", choices=["csv", "tsv", "jsonl", "parquet", "conll"],
                       help="file format (default: by suffix; .conll / .iob / .bio and CoNLL-looking .txt are conll)")
    group.add_argument("--encoding", default="utf-8", help="text encoding of CSV / TSV / JSONL files (default: utf-8)")
    group.add_argument("--max-image-pixels", type=non_negative_int, metavar="N",
                       help="refuse images larger than N pixels (width x height) before decoding them, a "
                            "decompression-bomb guard; 0: no limit (default: PIL's 89,478,485)")
    group.add_argument("--drop-missing", action="store_true",
                       help="drop rows whose label is missing (blank, NA, N/A, nan, null, None, -, ?) and say how "
                            "many, instead of refusing them")


def data_kwargs(args) -> dict:
    if args.label and args.labels:
        raise ConfigError("give --label COLUMN (one target column) or --labels A B C (one 0/1 column per label), "
                          "not both")
    def one(value):  # a one-column list (nargs="+") is that column
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    out = {"text": one(args.text), "image": one(args.image), "audio": one(args.audio),
           "label": args.labels or args.label, "format": args.format, "encoding": args.encoding,
           "drop_missing": args.drop_missing}
    out.update({role: getattr(args, role) for role in ("numeric", "categorical", "roles") if getattr(args, role, None)})
    return out


def add_task_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("task (inferred from the target when not given)")
    group.add_argument("--task", choices=TASK_KINDS, help="what the target is: " + ", ".join(task_kinds()) +
                       " (default: inferred, with the reason printed)")
    group.add_argument("--label-sep", metavar="SEP",
                       help="multi-label: the separator of the label list in the --label column (default: | when seen)")
    group.add_argument("--no-empty-labels", action="store_true",
                       help="multi-label: refuse rows with no label (default: an empty label set is legal)")
    group.add_argument("--interval", type=float, default=None, metavar="LEVEL",
                       help="regression: level of the split-conformal prediction intervals, in (0, 1) (default: 0.9)")
    group.add_argument("--regression-loss", choices=["mse", "huber"], default=None,
                       help="regression: the fine-tuning loss (default: mse)")
    group.add_argument("--tag-scheme", choices=["iob1", "iob2", "bioes"], default=None,
                       help="token classification: the scheme of the tags (default: detected; read as IOB2)")


def task_kwargs(args) -> dict:
    """``task`` and ``task_options`` for ``Graft`` from the task flags (only those given)."""
    options = {"label_sep": args.label_sep, "allow_empty": False if args.no_empty_labels else None,
               "interval": args.interval, "loss_function": args.regression_loss, "tag_scheme": args.tag_scheme}
    options = {k: v for k, v in options.items() if v is not None}
    if "interval" in options:
        check_level(options["interval"])
    return {"task": args.task, "task_options": options}


def add_threads_option(parser) -> None:
    parser.add_argument("--threads", type=positive_int,
                        help="threads for torch, BLAS and the tokenizers (default: one per physical core; on a "
                             "machine other jobs share, fewer can be faster)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--batch-size", type=positive_int, default=32, help="examples per forward pass (default: 32)")
    group.add_argument("--seed", type=seed, default=0, help="seed for splits and heads, >= 0 (default: 0)")
    group.add_argument("--cache-dir", help="feature cache folder (default: $GRAFTKIT_CACHE or ~/.cache/graftkit)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument("--extract-runtime", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto",
                       help="what embeds frozen (pretrained) features: onnxruntime for text encoders on the CPU when "
                            "it matches PyTorch on the first batch (auto, the default), torch, onnx, or onnx-int8 "
                            "(the graph quantised to int8: faster, features within cosine 0.97 of fp32's); "
                            "fine-tuning always runs in torch")
    add_threads_option(group)
    group.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    group.add_argument("--track", choices=["mlflow"],
                       help="log the run to MLflow (parameters, per-epoch history, metrics, evaluation and report, the "
                            "model as a pyfunc); $MLFLOW_TRACKING_URI, else ./mlruns beside the output")
    group.add_argument("--no-calibration", action="store_true",
                       help="do not fit a temperature on held-out logits (temperature scaling, Guo et al. 2017); "
                            "probabilities stay as the head gives them")


def add_backbone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone and strategy")
    group.add_argument("--backbone", default="all-MiniLM-L6-v2",
                       help="packaged model name, local directory or Hub id (default: all-MiniLM-L6-v2); "
                            "`graftkit models` lists what is here")
    group.add_argument("--revision", help="Hub revision (branch, tag or commit) to pin")
    group.add_argument("--pooling", help="feature pooling of text / vision / audio backbones, e.g. mean or cls")
    group.add_argument("--audio-window", choices=["clip", "padded"],
                       help="Whisper encoders: run each clip on its own length rounded up to 2 s steps (clip, "
                            "the default: a 1 s clip costs 2 s, not 30 s) or padded to Whisper's 30 s window")
    group.add_argument("--tower", choices=["vision", "text"],
                       help="CLIP / SigLIP models: the tower to use (default: the one that reads the input column)")
    group.add_argument("--clip-features", choices=["projected", "pooled"],
                       help="CLIP / SigLIP models: embeddings in the shared image-text space (projected, the "
                            "default) or the tower's pooled state before the projection (pooled)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="allow a Hub model to run its own Python code (off by default)")
    group.add_argument("--strategy", default="linear-probe", help=f"one of: {', '.join(strategy_names())}")
    _add_strategy_fields(group)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(annotation):
    text = str(annotation)
    if "bool" in text:
        return _parse_bool
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def strategy_flags() -> dict[str, dict]:
    """Each strategy field once, with its flag type, help and default per strategy. One flag serves every
    strategy with a field of that name, so the field must convert the same way in each (checked here)."""
    flags: dict[str, dict] = {}
    for cls in strategy_classes():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            convert = _converter(hints[field.name])
            entry = flags.setdefault(field.name, {"type": convert, "help": field.metadata.get("help", ""),
                                                  "defaults": {}})
            if entry["type"] is not convert:
                raise TypeError(f"strategy field {field.name!r} converts with {convert.__name__} in {cls.name!r} but "
                                f"with {entry['type'].__name__} in {', '.join(entry['defaults'])}; one CLI flag "
                                "serves them all, so give the fields the same type")
            entry["defaults"][cls.name] = field.default
    return flags


def _add_strategy_fields(group) -> None:
    for name, entry in strategy_flags().items():
        defaults = entry["defaults"]
        shown = (next(iter(defaults.values())) if len(set(map(repr, defaults.values()))) == 1
                 else ", ".join(f"{strategy} {value}" for strategy, value in defaults.items()))
        help_text = f"[{', '.join(defaults)}] {entry['help']} (default: {shown})".replace("%", "%%")
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"strategy__{name}", type=entry["type"],
                           default=None, metavar=name.upper(), help=help_text)


def strategy_kwargs(args) -> dict:
    return {k.split("__", 1)[1]: v for k, v in vars(args).items() if k.startswith("strategy__") and v is not None}


def graft_kwargs(args) -> dict:
    options = {"pooling": args.pooling} if args.pooling else {}
    if getattr(args, "audio_window", None):
        options["window"] = args.audio_window
    if getattr(args, "tower", None):
        options["tower"] = args.tower
    if getattr(args, "clip_features", None):
        options["features"] = args.clip_features
    task = task_kwargs(args) if hasattr(args, "task") else {}
    return {"backbone": args.backbone, "strategy": args.strategy, "batch_size": args.batch_size, "seed": args.seed,
            "cache_dir": args.cache_dir, "use_cache": not args.no_cache, "device": args.device,
            "extract_runtime": args.extract_runtime,
            "revision": args.revision, "trust_remote_code": args.trust_remote_code, "backbone_options": options,
            "calibrate": not args.no_calibration, **task, **strategy_kwargs(args)}


def emit_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
