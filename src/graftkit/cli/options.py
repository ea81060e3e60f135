"""Flags shared by several commands. Strategy flags are generated from the strategy dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from graftkit.strategies.base import strategy_classes, strategy_names


def add_data_options(parser: argparse.ArgumentParser, label_required: bool = True) -> None:
    group = parser.add_argument_group("data columns (inferred when not given)")
    group.add_argument("--text", metavar="COLUMN", help="column holding the text")
    group.add_argument("--image", metavar="COLUMN", help="column holding image file paths")
    group.add_argument("--audio", metavar="COLUMN", help="column holding audio file paths")
    group.add_argument("--label", metavar="COLUMN", help="column holding the class label")
    group.add_argument("--format", choices=["csv", "tsv", "jsonl", "parquet"], help="file format (default: by suffix)")
    group.add_argument("--encoding", default="utf-8", help="text encoding of CSV / TSV / JSONL files (default: utf-8)")


def data_kwargs(args) -> dict:
    return {"text": args.text, "image": args.image, "audio": args.audio, "label": args.label,
            "format": args.format, "encoding": args.encoding}


def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--batch-size", type=int, default=32, help="examples per forward pass (default: 32)")
    group.add_argument("--seed", type=int, default=0, help="seed for splits and heads (default: 0)")
    group.add_argument("--cache-dir", help="feature cache folder (default: $GRAFTKIT_CACHE or ~/.cache/graftkit)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    group.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_backbone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone and strategy")
    group.add_argument("--backbone", default="all-MiniLM-L6-v2",
                       help="packaged model name, local directory or Hub id (default: all-MiniLM-L6-v2); "
                            "`graftkit models` lists what is here")
    group.add_argument("--revision", help="Hub revision (branch, tag or commit) to pin")
    group.add_argument("--pooling", help="feature pooling of text / vision / audio backbones, e.g. mean or cls")
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


def _add_strategy_fields(group) -> None:
    seen = set()
    for cls in strategy_classes():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in seen:
                continue
            seen.add(field.name)
            help_text = f"[{cls.name}] {field.metadata.get('help', '')} (default: {field.default})"
            group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"strategy__{field.name}",
                               type=_converter(hints[field.name]), default=None, help=help_text)


def strategy_kwargs(args) -> dict:
    return {k.split("__", 1)[1]: v for k, v in vars(args).items() if k.startswith("strategy__") and v is not None}


def graft_kwargs(args) -> dict:
    options = {"pooling": args.pooling} if args.pooling else {}
    return {"backbone": args.backbone, "strategy": args.strategy, "batch_size": args.batch_size, "seed": args.seed,
            "cache_dir": args.cache_dir, "use_cache": not args.no_cache, "device": args.device,
            "revision": args.revision, "trust_remote_code": args.trust_remote_code, "backbone_options": options,
            **strategy_kwargs(args)}


def emit_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
