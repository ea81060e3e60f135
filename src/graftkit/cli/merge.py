"""``graftkit merge``: fold a LoRA / IA3 / BitFit model's adapter into the base weights and write a
standalone model (plain transformers loads ``OUT/backbone``; ``graftkit predict OUT`` works as before)."""

from __future__ import annotations

import argparse
from pathlib import Path

from graftkit.artifacts import check_destination
from graftkit.loading import load_model
from graftkit.errors import ConfigError


def register(commands) -> None:
    merge = commands.add_parser(
        "merge", help="merge a parameter-efficient model's adapter into its base: a standalone model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit merge runs/intent-lora -o runs/intent-merged\n"
               "  python -c \"from transformers import AutoModel; AutoModel.from_pretrained('runs/intent-merged/"
               "backbone')\"")
    merge.add_argument("model", help="model directory written by `graftkit fit --strategy lora|ia3|bitfit`")
    merge.add_argument("-o", "--output", required=True, help="directory for the merged model")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing model in --output")
    merge.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    merge.set_defaults(run=run_merge)


def run_merge(args) -> int:
    from graftkit.training.efficient import merge_adaptation

    source, output = Path(args.model).expanduser(), Path(args.output).expanduser()
    if output.resolve() == source.resolve():
        raise ConfigError(f"--output {args.output!r} is the model being merged; write the merged model elsewhere")
    check_destination(output, args.overwrite)  # before the (slow) load: a bad -o fails at once
    model = load_model(source, device=args.device, progress=False)
    adaptation = getattr(model, "adaptation_", None)
    merge_adaptation(model)
    model.training_ = {**(model.training_ or {}), "merged_from": {"model": str(source.absolute()),
                                                                  **(adaptation.describe() if adaptation else {})}}
    model.save(output, overwrite=args.overwrite)
    print(f"merged {model.strategy_.name} adapter of {source} into {model.backbone}: standalone model in {output}")
    return 0
