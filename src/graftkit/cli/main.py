"""Entry point: builds the parser from the command modules and turns every graftkit error into one
line on stderr and exit code 2 (never a traceback for bad input)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback

from graftkit import __version__
from graftkit.cli import auto, demo, export, fewshot, fit, fuse, merge, models, pretrain, rank, report, serve, use
from graftkit.cli import suggest as suggest_command
from graftkit.cli.run_scope import run_scope
from graftkit.cli.train_options import Interrupted
from graftkit.errors import GraftkitError
from graftkit.threads import set_threads

COMMAND_MODULES = (fit, use, merge, export, models, rank, auto, report, serve, demo, pretrain, suggest_command, fewshot,
                   fuse)


# OS errors a user's environment causes (a full disk, a read-only folder, a name too long), with the fix
USER_ERRNOS = {errno.ENOSPC: "free some space or write elsewhere (-o, --cache-dir, TMPDIR)",
               errno.EDQUOT: "free some space or write elsewhere (-o, --cache-dir, TMPDIR)",
               errno.EROFS: "the file system is read-only: write elsewhere (-o, --cache-dir)",
               errno.ENAMETOOLONG: "use a shorter path", errno.ELOOP: "the path loops through symbolic links",
               errno.EMFILE: "too many open files: raise `ulimit -n`"}


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


def entry() -> int:
    """The ``graftkit`` console script: ``main`` told how long this process ran before it (imports), which a
    wall-clock budget (``auto --budget``) counts. ``main`` called in a process doing other work counts none."""
    from graftkit.playbook.budget import process_seconds

    return main(startup_s=process_seconds())


def main(argv: list[str] | None = None, startup_s: float = 0.0) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.startup_s = startup_s
    if not args.command:
        parser.print_help()
        return 2
    _configure_logging(args.quiet)
    try:
        with run_scope(args):  # the run's own temporary directory (compile caches too), removed at the end
            if hasattr(args, "threads"):  # the commands that compute: one thread setting for torch, BLAS, tokenizers
                set_threads(args.threads)
            return int(args.run(args) or 0)
    except GraftkitError as exc:
        print(f"graftkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # fit says what its run left behind (checkpoints to resume from)
        note = str(exc) if isinstance(exc, Interrupted) else "interrupted; nothing was written"
        print(f"graftkit: {note}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader closed early (`| head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        print(f"graftkit: error: {exc.strerror}: {exc.filename!r}; check the path and its permissions", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            return _internal_error()
        where = f": {exc.filename!r}" if exc.filename else ""
        print(f"graftkit: error: {exc.strerror or exc}{where}; {USER_ERRNOS[exc.errno]}", file=sys.stderr)
        return 2
    except MemoryError:
        print("graftkit: error: out of memory; lower --batch-size, or use a smaller backbone or fewer rows",
              file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch's (CUDA / MPS): a batch too large for the device
            print(f"graftkit: error: the device ran out of memory ({str(exc).splitlines()[0][:120]}); lower "
                  "--batch-size, or use --device cpu", file=sys.stderr)
            return 2
        return _internal_error()


def _internal_error() -> int:
    """A bug, not bad input: keep the traceback, and say where to send it."""
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
