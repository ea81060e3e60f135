"""``graftkit auto``: rank, probe, escalate within a time budget, choose by validation, write the model and its
leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from graftkit.atomic import output_lock
from graftkit.cli.options import (
    add_data_options,
    add_run_options,
    add_task_options,
    data_kwargs,
    emit_json,
    positive_int,
    task_kwargs,
)
from graftkit.playbook import LADDER, STEPS, auto, format_text, parse_budget
from graftkit.playbook.core import DEFAULT_MIN_GAIN_PER_MINUTE
from graftkit.playbook.domain import DEFAULT_PRETRAIN_STEPS, PRETRAINED_SUFFIX
from graftkit.playbook.fusion import check_auto_destination


def register(commands) -> None:
    parser = commands.add_parser(
        "auto", help="rank backbones, probe, escalate to fine-tuning within a time budget, choose by validation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The playbook in one command: the classical baseline; LogME ranks the backbones; linear probes "
                    "on the top ones; then fine-tuning of the top groups, LoRA (when installed) and full fine-tuning "
                    "of the best probed backbone, each only when its estimated time fits the remaining budget and the "
                    "previous step's validation gain per minute justified it (always while the classical baseline "
                    "still leads). The choice is by validation; the test set is scored only afterwards. Writes the "
                    "model, leaderboard.json and leaderboard.md.",
        epilog="examples:\n"
               "  graftkit auto train.csv --backbones all-MiniLM-L6-v2 /models/all-mpnet-base-v2 --budget 20m "
               "-o runs/auto\n"
               "  graftkit auto train.csv --backbones all-MiniLM-L6-v2 --budget 90s --test test.csv -o runs/auto\n"
               "  graftkit auto train.csv --target unlabelled_target.txt --budget 20m -o runs/auto\n"
               "  graftkit auto reviews.csv --label Rating --text Title Review --numeric Age --categorical Dept "
               "--budget 10m -o runs/fused  # several inputs per row: the fusion playbook")
    parser.add_argument("data", help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders")
    parser.add_argument("--backbones", nargs="+", metavar="BACKBONE",
                        help="candidates: packaged names, local directories or Hub ids (default: the 3 cheapest "
                             "installed models that read the data, as `graftkit models` lists them)")
    parser.add_argument("--budget", default="20m", help="time budget: 90s, 20m, 1h or 1h30m (default: 20m)")
    parser.add_argument("-o", "--output", required=True, help="model directory to write (with the leaderboard)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in the output directory")
    parser.add_argument("--validation", metavar="FILE",
                        help="labelled validation file every candidate is chosen on (default: hold out --val-size)")
    parser.add_argument("--val-size", type=float, default=0.2,
                        help="fraction of the data held out, stratified, for validation (default: 0.2)")
    parser.add_argument("--test", metavar="FILE", help="labelled test file, scored after every decision")
    parser.add_argument("--target", metavar="FILE",
                        help="unlabelled target-domain inputs (text lines, a table, a media folder): the shift to them "
                             "is measured and, when large, DANN and (text) continued pretraining are added as rungs")
    parser.add_argument("--pretrain-steps", type=positive_int, default=DEFAULT_PRETRAIN_STEPS,
                        help="with --target: most continued-pretraining steps, cut to what the budget allows "
                             f"(default: {DEFAULT_PRETRAIN_STEPS}; the backbone goes to OUTPUT{PRETRAINED_SUFFIX})")
    parser.add_argument("--label-descriptions", metavar="FILE",
                        help="class -> description (JSON / CSV): zero-shot runs as rung 0 (it also runs when the "
                             "class names are words, not ids such as 0 / 1 / LABEL_3)")
    parser.add_argument("--template", help="wraps each description for zero-shot, e.g. 'This message is about {}.'")
    parser.add_argument("--ladder", nargs="*", choices=STEPS, default=list(LADDER), metavar="STRATEGY",
                        help=f"escalation steps after the probe, in order, from {', '.join(STEPS)} "
                             f"(default: {' '.join(LADDER)}); "
                             "--ladder with nothing after it stops at the probe")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs of each trainable step (default: 3)")
    parser.add_argument("--probe-top", type=positive_int, default=2,
                        help="how many of the ranked backbones get a linear probe (default: 2)")
    parser.add_argument("--min-gain-per-minute", type=float, default=DEFAULT_MIN_GAIN_PER_MINUTE,
                        help="stop escalating once a step gained fewer validation points (of the task's primary metric) per minute "
                             f"(default: {DEFAULT_MIN_GAIN_PER_MINUTE:g})")
    add_data_options(parser, several_inputs=True)
    add_task_options(parser)
    add_run_options(parser)
    parser.set_defaults(run=run_auto)


def run_auto(args) -> int:
    parse_budget(args.budget)  # a bad budget fails before anything is read
    check_auto_destination(Path(args.output).expanduser(), args.overwrite)
    with output_lock(args.output):
        return _auto(args)


def _auto(args) -> int:
    result = auto(args.data, backbones=args.backbones, budget=args.budget, validation=args.validation,
                  test=args.test, seed=args.seed, output=args.output, overwrite=args.overwrite,
                  val_size=args.val_size, ladder=args.ladder, epochs=args.epochs, probe_top=args.probe_top,
                  min_gain_per_minute=args.min_gain_per_minute, batch_size=args.batch_size,
                  cache_dir=args.cache_dir, use_cache=not args.no_cache, device=args.device,
                  extract_runtime=args.extract_runtime,
                  calibrate=not args.no_calibration, track=args.track, label_descriptions=args.label_descriptions,
                  template=args.template, target=args.target, pretrain_steps=args.pretrain_steps,
                  spent=args.startup_s, **task_kwargs(args), **data_kwargs(args))
    if args.json:
        emit_json({**result.to_dict(), **({"tracking": result.tracking} if result.tracking else {})})
        return 0
    print("".join(f"{step['reason']}\n" for step in result.steps if step["action"] == "backbones"), end="")
    print(format_text(result))
    print(f"model and leaderboard (leaderboard.md, leaderboard.json) written to {result.output}")
    return 0
