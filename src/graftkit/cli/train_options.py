"""``graftkit fit`` flags of the trainable strategies: checkpoints, resume, a validation file."""

from __future__ import annotations

import argparse
import os
import logging
import shutil
from pathlib import Path

from graftkit.errors import ConfigError
from graftkit.strategies import get_strategy
from graftkit.training.checkpoints import SEAL, checkpoints
from graftkit.training.distributed import is_main_process

logger = logging.getLogger("graftkit.cli")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (finetune, full, gradual, lp-ft)")
    group.add_argument("--validation", metavar="FILE",
                       help="labelled validation file for early stopping (default: hold out --val-size of the data)")
    group.add_argument("--checkpoint-dir", metavar="DIR",
                       help="where checkpoints are written each epoch (default: OUTPUT.checkpoints); removed once the "
                            "model is saved unless --keep-checkpoints")
    group.add_argument("--resume", metavar="DIR",
                       help="continue an interrupted run from the last complete checkpoint in DIR (run the same "
                            "command with --resume added)")
    group.add_argument("--keep-checkpoints", action="store_true", help="keep the checkpoints after the model is saved")


def training_kwargs(args, output: Path, strategy_params: dict) -> dict:
    """``checkpoint_dir`` / ``resume`` for ``Graft``; an error for training flags on a strategy that does not train."""
    trainable = getattr(get_strategy(args.strategy, **strategy_params), "trainable", False)
    given = [flag for flag, value in (("--resume", args.resume), ("--checkpoint-dir", args.checkpoint_dir),
                                      ("--validation", args.validation)) if value]
    if not trainable:
        if given:
            raise ConfigError(f"{given[0]} applies to trainable strategies (finetune, full, gradual, lp-ft), not to "
                              f"{args.strategy!r}")
        return {}
    if args.resume and args.checkpoint_dir and Path(args.resume).absolute() != Path(args.checkpoint_dir).absolute():
        raise ConfigError(f"--resume {args.resume} and --checkpoint-dir {args.checkpoint_dir} name different "
                          "directories; give only --resume DIR")
    folder = Path(args.resume or args.checkpoint_dir or f"{output}.checkpoints").expanduser()
    inside = _contains(folder, output) or _contains(output, folder)
    if inside:
        flag = "--resume" if args.resume else "--checkpoint-dir"
        raise ConfigError(f"{flag} {str(folder)!r} and -o {str(output)!r} contain one another; the checkpoints are "
                          "removed once the model is saved, so they need a folder of their own (e.g. "
                          f"{str(output)!r}.checkpoints)")
    return {"checkpoint_dir": str(folder), "resume": bool(args.resume)}


def _contains(outer: Path, inner: Path) -> bool:
    outer, inner = Path(os.path.abspath(outer)), Path(os.path.abspath(inner))
    return outer == inner or outer in inner.parents


def remove_checkpoints(args, kwargs: dict) -> None:
    """After the model is saved, the checkpoints have served their purpose (unless --keep-checkpoints)."""
    folder = kwargs.get("checkpoint_dir")
    if folder and not args.keep_checkpoints and is_main_process() and (Path(folder) / "graftkit-run.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("removed the training checkpoints in %s (--keep-checkpoints keeps them)", folder)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the line that says what the interrupted run left behind (``main`` prints it)."""


def interrupted(kwargs: dict, existed: bool, output: Path, saved: bool) -> Interrupted:
    """What is left after Ctrl-C, said truthfully: the sealed checkpoints are kept with the command that resumes
    from them; a checkpoint folder this run created and never completed an epoch in is removed."""
    if saved:
        return Interrupted(f"interrupted after the model was written to {output}; its evaluation.json may be missing "
                           f"(`graftkit evaluate {output} TEST --save` writes it)")
    folder = Path(kwargs["checkpoint_dir"]) if kwargs.get("checkpoint_dir") else None
    if folder is None or not folder.is_dir() or not is_main_process():
        return Interrupted("interrupted; nothing was written")
    sealed = [c for c in checkpoints(folder) if (c / SEAL).is_file()]
    if sealed:
        return Interrupted(f"interrupted; the model was not written; {len(sealed)} complete epoch checkpoint(s) are "
                           f"kept in {folder}: run the same command with --resume {folder} to continue, or delete "
                           "that folder")
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)
    return Interrupted("interrupted; nothing was written")
