"""``graftkit fewshot``: the K-shot protocol (SetFit / MTEB): the same seeded draws of K rows per class for
every strategy, mean ± std of the primary metric and the wall time per draw."""

from __future__ import annotations

import argparse

from graftkit.cli.options import (add_data_options, add_run_options, add_task_options, data_kwargs, emit_json,
                                  positive_int, task_kwargs)
from graftkit.data import load_data
from graftkit.errors import ConfigError
from graftkit.evaluation.fewshot import fewshot
from graftkit.graft import Graft


def register(commands) -> None:
    parser = commands.add_parser(
        "fewshot", help="K labelled rows per class, repeated draws: mean ± std per strategy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw K rows per class from DATA (seeded, --repeats times), fit every strategy on the same "
                    "draws and score each on the same test rows (--test FILE, else a held-out --test-size share "
                    "of DATA that no draw touches). A strategy is NAME or NAME:key=value,key=value with the "
                    "strategy's parameters, e.g. linear-probe:label_init=true or contrastive:num_iterations=5.",
        epilog="example:\n  graftkit fewshot train.csv --test test.csv --shots 8 --repeats 10 "
               "--strategies zero-shot linear-probe linear-probe:label_init=true contrastive")
    parser.add_argument("data", help="CSV / TSV / JSONL / Parquet file the shots are drawn from")
    parser.add_argument("--test", metavar="FILE", help="labelled test file (default: a --test-size share of DATA)")
    parser.add_argument("--test-size", type=float, default=0.5,
                        help="share of DATA held out for testing when no --test is given (default: 0.5)")
    parser.add_argument("--max-test", type=positive_int, metavar="N",
                        help="score on a stratified, seeded sample of N test rows (default: all)")
    parser.add_argument("--shots", type=positive_int, default=8, help="labelled rows per class per draw (default: 8)")
    parser.add_argument("--repeats", type=positive_int, default=10, help="draws (default: 10)")
    parser.add_argument("--strategies", nargs="+", default=["zero-shot", "linear-probe"], metavar="STRATEGY",
                        help="NAME or NAME:key=value,... (default: zero-shot linear-probe)")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="the body every strategy starts from")
    parser.add_argument("--label-descriptions", metavar="FILE",
                        help="class -> description (JSON / CSV) for zero-shot and label_init=true strategies")
    parser.add_argument("--template", help="wraps each description, e.g. 'This message is about {}.'")
    add_data_options(parser)
    add_task_options(parser)
    add_run_options(parser)
    parser.set_defaults(run=run_fewshot)


def _value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_strategies(specs: list[str], descriptions=None, template=None) -> dict[str, dict]:
    """``NAME[:key=value,...]`` -> {spec: Graft settings}; the description flags go to the strategies that read
    them (zero-shot; linear-probe with label_init)."""
    from graftkit.strategies import get_strategy

    out = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        params = {}
        for part in filter(None, rest.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--strategies {spec!r}: write parameters as key=value, separated by commas")
            params[key.strip()] = _value(value.strip())
        fields = get_strategy(name, **params).field_names()  # unknown names / parameters fail here, named
        reads = "label_descriptions" in fields and (name == "zero-shot" or params.get("label_init"))
        if reads and descriptions is not None:
            params.setdefault("label_descriptions", descriptions)
        if reads and template is not None:
            params.setdefault("template", template)
        if spec in out:
            raise ConfigError(f"--strategies names {spec!r} twice")
        out[spec] = {"strategy": name, **params}
    return out


def format_fewshot(result: dict) -> str:
    width = max(len("strategy"), *(len(n) for n in result["strategies"]))
    lines = [f"{result['shots']}-shot, {result['repeats']} draws, {result['classes']} classes, "
             f"{result['test_rows']} test rows, backbone {result['backbone']}",
             f"{'strategy':<{width}}  {result['metric']:>17}  {'s / draw':>14}"]
    for name, row in result["strategies"].items():
        lines.append(f"{name:<{width}}  {row['mean']:>8.4f} ± {row['std']:.4f}  "
                     f"{row['seconds_mean']:>6.1f} ± {row['seconds_std']:.1f}")
    return "\n".join(lines)


def run_fewshot(args) -> int:
    strategies = parse_strategies(args.strategies, args.label_descriptions, args.template)
    columns = data_kwargs(args)
    train = load_data(args.data, **columns)
    base = Graft(backbone=args.backbone, batch_size=args.batch_size, seed=args.seed, cache_dir=args.cache_dir,
                 use_cache=not args.no_cache, device=args.device, extract_runtime=args.extract_runtime,
                 calibrate=not args.no_calibration, progress=False,
                 **task_kwargs(args))
    task = base.infer_task(train)
    if args.test:
        test = load_data(args.test, **{**columns, "drop_missing": False})
    else:
        if not 0 < args.test_size < 1:
            raise ConfigError(f"--test-size must be in (0, 1); got {args.test_size}")
        train, test = task.split(train, test_size=args.test_size, seed=args.seed)
    if args.max_test and len(test) > args.max_test:
        _, test = task.split(test, test_size=args.max_test / len(test), seed=args.seed)
    result = fewshot(base, train, test, strategies, shots=args.shots, repeats=args.repeats, seed=args.seed)
    if args.json:
        emit_json(result)
    else:
        print(format_fewshot(result))
    return 0
