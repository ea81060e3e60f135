"""Entry point: builds the parser from the command modules and turns every graftkit error into one
line on stderr and exit code 2 (never a traceback for bad input)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from graftkit import __version__
from graftkit.cli import auto, demo, fit, merge, models, rank, report, use
from graftkit.errors import GraftkitError
from graftkit.threads import set_threads

COMMAND_MODULES = (fit, use, merge, models, rank, auto, report, demo)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.exit(2, f"graftkit: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graftkit", description="Adapt a pretrained model to your labelled data.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="example:\n  graftkit fit reviews.csv --text review --label stars -o runs/reviews")
    parser.add_argument("--version", action="version", version=f"graftkit {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="graftkit: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "huggingface_hub", "transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _configure_logging(args.quiet)
    try:
        if hasattr(args, "threads"):  # the commands that compute: one thread setting for torch, BLAS, tokenizers
            set_threads(args.threads)
        return int(args.run(args) or 0)
    except GraftkitError as exc:
        print(f"graftkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graftkit: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader closed early (`| head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        print(f"graftkit: error: {exc.strerror}: {exc.filename!r}; check the path and its permissions", file=sys.stderr)
        return 2
    except Exception:  # a bug, not bad input: keep the traceback, and say where to send it
        traceback.print_exc()
        print("graftkit: internal error (the traceback above); please report it with the command you ran",
              file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's own flush at exit does not raise a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


if __name__ == "__main__":
    sys.exit(main())
