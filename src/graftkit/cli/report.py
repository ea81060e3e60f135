"""``graftkit report DIR``: one self-contained HTML page of a model directory's saved results."""

from __future__ import annotations

import argparse

from graftkit.cli.options import emit_json


def register(commands) -> None:
    report = commands.add_parser(
        "report", help="write one self-contained HTML report of a model directory's saved results",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Render manifest.json and evaluation.json of a model directory as one HTML file: metrics, "
                    "CV spread, per-class table, confusion matrix, reliability diagram, PR / ROC curves, learning "
                    "curve, transfer gain, leakage and the manifest. Inline SVG, no scripts, no network. The "
                    "results come from `graftkit fit ... --test` / `--test-size` or `graftkit evaluate DIR DATA "
                    "--save`; the report computes nothing.",
        epilog="example:\n"
               "  graftkit fit train.csv --test test.csv --learning-curve -o runs/reviews\n"
               "  graftkit report runs/reviews                  # writes runs/reviews/report.html\n"
               "  graftkit report runs/reviews -o review.html")
    report.add_argument("model", help="model directory written by `graftkit fit`")
    report.add_argument("-o", "--output", help="HTML file to write (default: MODEL/report.html)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    report.add_argument("--json", action="store_true", help="print the written path as JSON")
    report.set_defaults(run=run_report)


def _written_by_graftkit(path) -> bool:
    """A report graftkit rendered (regenerated freely at its default place), not a file of the user's."""
    from graftkit.report.html import REPORT_MARK

    try:
        return REPORT_MARK.encode() in path.read_bytes()
    except OSError:
        return False


def run_report(args) -> int:
    from pathlib import Path

    from graftkit.errors import ArtifactError
    from graftkit.report import write_report

    if args.output and Path(args.output).expanduser().exists() and not args.overwrite:
        raise ArtifactError(f"report output {args.output!r} exists; pass --overwrite to replace it or choose another "
                            "-o FILE")
    default = Path(args.model).expanduser() / "report.html"
    if not args.output and default.is_file() and not args.overwrite and not _written_by_graftkit(default):
        raise ArtifactError(f"{str(default)!r} exists and is not a report graftkit wrote; pass --overwrite to replace "
                            "it, or -o FILE to write the report elsewhere")
    from graftkit.atomic import output_lock

    target = Path(args.output).expanduser() if args.output else default
    with output_lock(target):
        path = write_report(args.model, args.output)
    if args.json:
        emit_json({"report": str(path)})
    else:
        print(f"report written to {path}")
    return 0
