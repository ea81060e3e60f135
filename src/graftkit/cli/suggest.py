"""``graftkit suggest``: which unlabelled rows to label next (a CSV for annotators), and ``--simulate``: whether
the suggestions beat random picks on a labelled set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graftkit.active import METHODS, simulate, suggest
from graftkit.cli.options import add_data_options, add_threads_option, data_kwargs, emit_json, positive_int, seed
from graftkit.errors import ArtifactError, ConfigError
from graftkit.graft import DEFAULT_BACKBONE, Graft
from graftkit.loading import load_model

METHOD_HELP = ("hybrid (default): the 10 x N least sure rows, then one per uncertainty-weighted k-means cluster "
               "(Zhdanov 2019); uncertainty: the N least sure rows (--measure); diversity: one row per k-means "
               "cluster of the backbone embeddings")


def register(commands) -> None:
    parser = commands.add_parser(
        "suggest", help="which unlabelled rows to label next (uncertainty, diversity, or both), as a CSV",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rank an unlabelled pool for annotation with a fitted model. Rows already in DATA (the "
                    "labelled set; matched by content after normalising case, punctuation and spacing) and "
                    "repeats within the pool are never suggested. The CSV holds row (the pool's data-row number), "
                    "rank, score, reason and the pool's own columns. With --simulate, DATA is a labelled set and "
                    "the command measures accuracy against the number of labels for suggested against random "
                    "picks (mean ± std over --seeds), refitting a linear probe on cached features each round.",
        epilog="examples:\n"
               "  graftkit suggest labelled.csv --model runs/intents --unlabelled pool.csv -n 50 -o to_label.csv\n"
               "  graftkit suggest train.csv --simulate --test test.csv --rounds 5 --seeds 5 --pool-cap 4000")
    parser.add_argument("data", help="the labelled data (rows suggested never repeat them); with --simulate, the "
                                     "labelled set the simulation draws from")
    parser.add_argument("--model", metavar="DIR", help="model directory written by `graftkit fit` (required unless "
                                                       "--simulate; there it gives the backbone)")
    parser.add_argument("--unlabelled", metavar="POOL", help="the rows to choose from (same input column as the model)")
    parser.add_argument("-n", type=positive_int, default=50, help="rows to suggest (default: 50; a smaller pool is "
                                                                   "suggested whole, with a warning)")
    parser.add_argument("--how", choices=METHODS, default="hybrid", help=METHOD_HELP)
    parser.add_argument("--measure", choices=["margin", "entropy"],
                        help="uncertainty measure (default: margin): 1 - the gap between the top two classes / a "
                             "label's distance to its threshold; or the normalised entropy")
    parser.add_argument("-o", "--output", help="CSV file to write (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--seed", type=seed, default=0, help="k-means seed (default: 0)")
    sim = parser.add_argument_group("simulation (--simulate)")
    sim.add_argument("--simulate", action="store_true", help="simulate rounds of labelling on DATA instead")
    sim.add_argument("--test", metavar="FILE", help="held-out test set (default: a seeded 20%% split of DATA)")
    sim.add_argument("--methods", nargs="+", choices=METHODS, default=["hybrid"], metavar="HOW",
                     help=f"suggest methods compared with random picks (default: hybrid; any of {', '.join(METHODS)})")
    sim.add_argument("--rounds", type=positive_int, default=5, help="labelling rounds (default: 5)")
    sim.add_argument("--per-round", type=positive_int, help="rows labelled per round (default: 2 per class)")
    sim.add_argument("--start", type=positive_int, help="rows labelled before the first round, spread over the "
                                                        "classes (default: --per-round)")
    sim.add_argument("--seeds", type=positive_int, default=5, help="repeats with other start sets (default: 5)")
    sim.add_argument("--pool-cap", type=positive_int, metavar="N",
                     help="embed only a seeded random N of the pool rows (default: all)")
    sim.add_argument("--backbone", help=f"backbone of the probes (default: --model's, else {DEFAULT_BACKBONE})")
    add_data_options(parser)
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=positive_int, help="examples per forward pass (default: as fitted, or 32)")
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(run)
    run.add_argument("--cache-dir", help="feature cache folder")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.set_defaults(run=run_suggest)


def run_suggest(args) -> int:
    if args.simulate:
        return _simulate(args)
    if not args.model:
        raise ConfigError("graftkit suggest needs --model DIR (the fitted model that ranks the pool), or --simulate")
    if not args.unlabelled:
        raise ConfigError("graftkit suggest needs --unlabelled POOL: the file of rows to choose from")
    if args.output and Path(args.output).exists() and not args.overwrite:  # before any embedding
        raise ArtifactError(f"output file {args.output!r} exists; pass --overwrite or choose another -o")
    model = load_model(args.model, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache)
    if args.batch_size is not None:
        model.batch_size = args.batch_size
    columns = data_kwargs(args)
    result = suggest(model, args.unlabelled, args.n, how=args.how, labelled=args.data, measure=args.measure,
                     seed=args.seed, columns={k: columns[k] for k in ("text", "image", "audio", "format", "encoding")})
    for note in result.notes:
        print(f"graftkit: {note}", file=sys.stderr)
    if args.json:
        emit_json({"method": result.method, "pool_rows": result.pool_rows, "candidates": result.candidates,
                   "notes": result.notes, "rows": result.frame.to_dict(orient="records")})
    if args.output:
        result.write(args.output, overwrite=args.overwrite)
        print(f"graftkit: {len(result.frame)} rows to label ({result.method}) written to {args.output}", file=sys.stderr)
    elif not args.json:
        result.frame.to_csv(sys.stdout, index=False)
    return 0


def _simulate(args) -> int:
    if args.unlabelled or args.output:
        raise ConfigError("--simulate hides the labels of DATA itself; drop --unlabelled / -o (use --json to keep "
                          "the result)")
    settings = {"cache_dir": args.cache_dir, "use_cache": not args.no_cache, "device": args.device,
                "progress": False}
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.model:
        fitted = load_model(args.model, device=args.device, cache_dir=args.cache_dir, use_cache=not args.no_cache)
        base = fitted.clone(strategy="linear-probe", checkpoint_dir=None, resume=False, **settings)
        if args.backbone:
            base.backbone = args.backbone
    else:
        base = Graft(args.backbone or DEFAULT_BACKBONE, strategy="linear-probe", **settings)
    result = simulate(args.data, args.test, methods=tuple(args.methods), rounds=args.rounds, per_round=args.per_round,
                      start=args.start, seeds=args.seeds, pool_cap=args.pool_cap, measure=args.measure, base=base,
                      columns=data_kwargs(args))
    if args.json:
        emit_json(result)
    else:
        print(format_simulation(result))
    return 0


def format_simulation(result: dict) -> str:
    metric = result["metric"]
    arms = list(result["curves"])
    lines = [f"{result['source']}: pool {result['pool']} ({result['n_pool']} after repeats), test {result['test']} "
             f"({result['n_test']} rows); start {result['start']}, {result['rounds']} rounds of "
             f"{result['per_round']}, {result['seeds']} seeds; {metric} mean ± std",
             "labels  " + "  ".join(f"{arm:>17}" for arm in arms)]
    for step in range(result["rounds"] + 1):
        cells = [f"{result['curves'][a][step][metric]['mean']:.4f} ± {result['curves'][a][step][metric]['std']:.4f}"
                 for a in arms]
        lines.append(f"{result['curves'][arms[0]][step]['labels']:>6}  " + "  ".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)
