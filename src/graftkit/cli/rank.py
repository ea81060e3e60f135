"""``graftkit rank``: which backbone (and which layer) to start from, by transferability scores."""

from __future__ import annotations

import argparse
import math

from graftkit.cli.options import (add_data_options, add_run_options, add_task_options, data_kwargs, emit_json,
                                  positive_int, task_kwargs)
from graftkit.selection.rank import SCORE_HELP, SCORES, rank

COLUMNS = {"logme": 8, "leep": 8, "nce": 8, "hscore": 9, "hscore_reg": 10, "knn": 6, "linear": 6}


def register(commands) -> None:
    parser = commands.add_parser(
        "rank", help="rank candidate backbones (and layers) by transferability scores",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score each candidate on frozen features of a stratified sample: " +
                    "; ".join(f"{name}: {text}" for name, text in SCORE_HELP.items()) +
                    ". Higher is better for every score. Features go to the feature cache, so fitting the "
                    "chosen backbone afterwards embeds nothing again.",
        epilog="examples:\n"
               "  graftkit rank train.csv --backbones all-MiniLM-L6-v2 /models/all-mpnet-base-v2 "
               "random:all-MiniLM-L6-v2\n"
               "  graftkit rank train.csv --backbones all-MiniLM-L6-v2 --layers 2 4 out --json\n"
               "  graftkit rank photos/ --backbones efficientnet-lite0 efficientnet-lite2 efficientnet-lite0@5\n"
               "  graftkit rank reviews.csv --label Rating --text Title Review --numeric Age --backbones "
               "all-MiniLM-L6-v2 /models/all-mpnet-base-v2  # on the fused features")
    parser.add_argument("data", help="CSV / TSV / JSONL / Parquet file, or a folder of class sub-folders")
    parser.add_argument("--backbones", nargs="+", required=True, metavar="BACKBONE",
                        help="candidates: packaged names, local directories or Hub ids; SPEC@K for layer K of a "
                             "model, random:SPEC for a randomly initialised copy (a sanity-check control); on a "
                             "multi-input table COLUMN=SPEC / MODALITY=SPEC fixes the backbone of other columns")
    parser.add_argument("--layers", nargs="+", metavar="LAYER",
                        help="layers scored for every backbone without its own @K: integers (0 = embeddings / "
                             "stem, -1 = last) or 'out' for the model's output (default: out)")
    parser.add_argument("--sample", type=positive_int, default=2000,
                        help="stratified sample of rows scored, the only rows embedded (default: 2000)")
    parser.add_argument("--scores", nargs="+", choices=SCORES, default=list(SCORES), metavar="SCORE",
                        help=f"scores to compute (default: all of {', '.join(SCORES)})")
    parser.add_argument("--rank-by", choices=SCORES, default="logme",
                        help="score that orders the table (default: logme)")
    add_data_options(parser, several_inputs=True)
    add_task_options(parser)
    add_run_options(parser)
    parser.set_defaults(run=run_rank)


def _number(value) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def _params(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


def format_ranking(ranking) -> str:
    rows = ranking.rows
    names = [s for s in SCORES if any(s in row["scores"] for row in rows)]
    width = max(len("candidate"), *(len(row["candidate"]) for row in rows))
    header = (f"{'rank':>4}  {'candidate':<{width}}  " + "  ".join(f"{n:>{max(COLUMNS[n], len(n))}}" for n in names)
              + f"  {'extract_s':>9}  {'params':>7}  licence")
    lines = [header]
    for row in rows:
        shared = "*" if row["extraction"]["shared_by"] > 1 else " "
        lines.append(f"{row['rank']:>4}  {row['candidate']:<{width}}  "
                     + "  ".join(f"{_number(row['scores'].get(n)):>{max(COLUMNS[n], len(n))}}" for n in names)
                     + f"  {row['extraction']['seconds']:>8.1f}{shared}  {_params(row['params']):>7}  "
                     + (row["licence"] or "unknown"))
    notes: dict[str, tuple[dict, dict]] = {}  # reason -> (scores, candidates), in order of appearance
    for row in rows:
        for name, reason in row["skipped"].items():
            skipped, where = notes.setdefault(reason, ({}, {}))
            skipped[name], where[row["candidate"]] = None, None
    data = ranking.data
    targets = (f"{data['classes']} classes" if data.get("classes") is not None
               else f"a {data.get('task')} target ({data.get('targets')} column(s))")
    lines.append(f"\nranked by {ranking.rank_by} (higher is better) on {data['rows']} rows, {targets}; "
                 f"extraction {ranking.timings['extraction_s']:.1f}s, scores {ranking.timings['scores_s']:.1f}s")
    if data.get("modality") == "multi-input":
        fixed = ", ".join(f"{k}={v}" for k, v in data["fixed"].items())
        lines.append("scored on the fused features (standardised): each candidate embeds "
                     + "; ".join(f"{row['candidate']}: {', '.join(row['columns'])}" for row in rows)
                     + ", beside the other media columns' backbones" + (f" ({fixed})" if fixed else "")
                     + " and the tabular columns")
    if any(row["extraction"]["shared_by"] > 1 for row in rows):
        lines.append("* layers of one model share one forward pass: the time is the pass's, counted once")
    for reason, (skipped, where) in notes.items():
        lines.append(f"- {', '.join(skipped)} skipped for {', '.join(where)}: {reason}")
    return "\n".join(lines)


def run_rank(args) -> int:
    ranking = rank(args.data, args.backbones, layers=args.layers, sample=args.sample, seed=args.seed,
                   scores=args.scores, rank_by=args.rank_by, batch_size=args.batch_size, cache_dir=args.cache_dir,
                   use_cache=not args.no_cache, device=args.device, extract_runtime=args.extract_runtime,
                   **task_kwargs(args), **data_kwargs(args))
    if args.json:
        emit_json(ranking.to_dict())
    else:
        print(format_ranking(ranking))
    return 0
