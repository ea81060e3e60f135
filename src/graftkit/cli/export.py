"""``graftkit export``: a fitted model for another runtime (ONNX: backbone + head as one graph, checked on export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from graftkit.cli.options import emit_json
from graftkit.data import load_data
from graftkit.errors import ConfigError


def register(commands) -> None:
    export = commands.add_parser(
        "export", help="export a fitted text model as one ONNX graph (fp32 or int8), checked against PyTorch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  graftkit export runs/intent --format onnx --quantize int8 -o runs/intent-onnx\n"
               "  graftkit predict runs/intent-onnx new.csv --runtime onnx")
    export.add_argument("model", help="model directory written by `graftkit fit`")
    export.add_argument("--format", dest="export_format", choices=["onnx"], required=True, help="target format")
    export.add_argument("--quantize", choices=["int8"], help="onnxruntime dynamic int8 quantisation of the weights")
    export.add_argument("-o", "--output", required=True, help="directory to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export in --output")
    export.add_argument("--check-data", metavar="FILE",
                        help="texts to check the graph against PyTorch on (the model's input column; default: 16 "
                             "built-in sentences)")
    export.add_argument("--tolerance", type=float, default=1e-3,
                        help="fp32: largest allowed |ONNX - PyTorch| of the raw outputs (default: 0.001)")
    export.add_argument("--min-agreement", type=float, default=0.9,
                        help="int8: least share of check rows whose prediction must equal PyTorch's (default: 0.9)")
    export.add_argument("--json", action="store_true", help="print the check as JSON")
    export.set_defaults(run=run_export)


def run_export(args) -> int:
    from graftkit.export import export_onnx

    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance must be > 0; got {args.tolerance}")
    if not 0 < args.min_agreement <= 1:
        raise ConfigError(f"--min-agreement must be in (0, 1]; got {args.min_agreement}")
    check_data = None
    if args.check_data:
        check_data = load_data(args.check_data, require_label=False).items()
    check = export_onnx(args.model, args.output, quantize=args.quantize, overwrite=args.overwrite,
                        check_data=check_data, tolerance=args.tolerance, min_agreement=args.min_agreement)
    if args.json:
        emit_json(check)
    else:
        print(f"wrote {Path(args.output) / 'model.onnx'} ({args.quantize or 'fp32'}): on {check['rows']} check rows "
              f"max |raw - PyTorch| {check['max_abs_diff_raw']:.2e}, predictions agree on "
              f"{100 * check['prediction_agreement']:.1f}%")
    return 0
