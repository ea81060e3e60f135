"""``graftkit pretrain``: continued masked-LM pretraining of a text encoder on unlabelled in-domain text (DAPT, or
TAPT on the labelled data's own texts); writes a backbone directory that ``--backbone DIR`` takes."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields

from graftkit.cli.options import add_threads_option

logger = logging.getLogger(__name__)

HELP = {
    "steps": "optimiser steps (default 300)", "batch_size": "documents per step (default 32)",
    "learning_rate": "peak learning rate (default 5e-5)", "mlm_probability": "share of tokens masked (default 0.15)",
    "max_length": "tokens per document, the rest truncated (default 128)",
    "warmup": "fraction of the steps with linear warm-up (default 0.06)", "weight_decay": "AdamW weight decay",
    "save_steps": "a sealed checkpoint every N steps (with --checkpoint-dir; default 100)", "seed": "random seed",
}


def register(commands) -> None:
    from graftkit.training.pretrain import PretrainConfig

    parser = commands.add_parser(
        "pretrain", help="continue masked-LM pretraining of a text backbone on unlabelled in-domain text",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  graftkit pretrain reviews.txt --backbone all-MiniLM-L6-v2 -o runs/minilm-reviews\n"
               "  graftkit pretrain train.csv --column text -o runs/minilm-tapt   # TAPT on the labelled texts\n"
               "  graftkit fit train.csv --backbone runs/minilm-reviews -o runs/model")
    parser.add_argument("unlabelled", help="a text file (one document per line), or a table (CSV / TSV / JSONL / "
                                           "Parquet; labelled data too: its text column is read)")
    parser.add_argument("--column", help="the table's text column (default: inferred as for fit)")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="text encoder to continue (default "
                                                                       "all-MiniLM-L6-v2): packaged name, dir or Hub id")
    parser.add_argument("--revision", help="Hub revision of --backbone")
    parser.add_argument("-o", "--output", required=True, help="directory for the pretrained backbone")
    parser.add_argument("--overwrite", action="store_true", help="replace a pretrained backbone in --output")
    parser.add_argument("--whole-word-mask", action="store_true", help="mask whole words, not word pieces")
    for spec in fields(PretrainConfig):
        if spec.name == "whole_word_mask":
            continue
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=type(spec.default), default=spec.default,
                            help=HELP.get(spec.name))
    parser.add_argument("--checkpoint-dir", help="keep sealed checkpoints here (resumable)")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the backbone's own code")
    parser.add_argument("--json", action="store_true", help="print the lineage as JSON")
    add_threads_option(parser)
    parser.set_defaults(run=run_pretrain)


def run_pretrain(args) -> int:
    from graftkit.training.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    result = pretrain(args.unlabelled, args.output, backbone=args.backbone, column=args.column, config=config,
                      revision=args.revision, checkpoint_dir=args.resume or args.checkpoint_dir,
                      resume=bool(args.resume), overwrite=args.overwrite, device=args.device,
                      progress=not args.quiet, trust_remote_code=args.trust_remote_code)
    lineage = result.lineage
    if args.json:
        print(json.dumps(lineage, indent=1))
    else:
        head = " (new MLM head initialised, decoder tied to the embeddings)" if lineage["mlm_head"]["initialised"] else ""
        print(f"pretrained {lineage['base']['spec']} for {lineage['steps']} steps on {lineage['corpus']['documents']} "
              f"documents in {lineage['seconds']:.0f}s{head}; MLM loss {lineage['loss']['first']:.3f} -> "
              f"{lineage['loss']['last']:.3f}\nbackbone: {result.path}  (use: --backbone {result.path})")
    return 0
