"""The training run directory: which run it belongs to, which checkpoints are complete, where to resume.

Layout: ``DIR/graftkit-run.json`` (the run's identity: backbone, strategy, data, seed, ...) and the
Trainer's ``DIR/checkpoint-STEP/`` folders. The Trainer writes a checkpoint file by file; graftkit seals
it afterwards with ``graftkit-checkpoint.json`` (sha256 of every file, written by atomic rename). A
checkpoint without a seal was interrupted mid-write (kill -9) and is discarded on resume; a sealed one
whose files no longer match is corrupt and stops the resume with an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from graftkit.atomic import write_text_atomic
from graftkit.errors import ConfigError

logger = logging.getLogger(__name__)

RUN_FILE = "graftkit-run.json"
SEAL = "graftkit-checkpoint.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _write_atomic(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True))


def _file_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL and not p.name.endswith(".tmp")):
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        hashes[file.relative_to(folder).as_posix()] = digest.hexdigest()
    return hashes


def seal_checkpoint(folder: Path) -> None:
    _write_atomic(folder / SEAL, {"files": _file_hashes(folder)})


def verify_checkpoint(folder: Path) -> None:
    """Raise a one-line ConfigError when a sealed checkpoint's files are missing or changed."""
    try:
        expected = json.loads((folder / SEAL).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"checkpoint {folder} has an unreadable {SEAL}; it is corrupt: delete {folder} to resume "
                          "from the previous checkpoint") from None
    found = _file_hashes(folder)
    for name, digest in expected.items():
        if name not in found:
            raise ConfigError(f"checkpoint {folder} is corrupt: {name} is missing; delete {folder} to resume from "
                              "the previous checkpoint")
        if found[name] != digest:
            raise ConfigError(f"checkpoint {folder} is corrupt: {name} does not match its recorded hash; delete "
                              f"{folder} to resume from the previous checkpoint")


def stopped_at(checkpoint: Path) -> int | None:
    """The epoch count when the run had already decided to stop at ``checkpoint`` (early stopping), else None.

    The Trainer resets that decision when training begins, so a run resumed from such a checkpoint would
    train one epoch more than the uninterrupted run; the engine runs no further epochs instead.
    """
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        stop = state["stateful_callbacks"]["TrainerControl"]["args"]["should_training_stop"]
        return int(round(state["epoch"])) if stop else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoints(folder: Path) -> list[Path]:
    """The Trainer's checkpoint folders, newest (highest step) first."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _difference(stored: dict, identity: dict) -> str | None:
    for key in identity:
        if stored.get(key) != identity[key]:
            return key
    return None


def prepare_run(folder: Path, identity: dict, *, resume: bool, main_process: bool = True) -> Path | None:
    """Create (or check, when resuming) the run directory; return the checkpoint to resume from.

    Only the main process writes or deletes; the others just read (data-parallel runs share ``folder``).
    """
    folder = folder.expanduser().absolute()
    run_file = folder / RUN_FILE
    if not resume:
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"checkpoint directory {str(folder)!r} is a file; give a directory (--checkpoint-dir)")
        if folder.is_dir() and any(folder.iterdir()) and main_process:
            if run_file.is_file():
                raise ConfigError(f"checkpoint directory {str(folder)!r} already holds a training run; continue it "
                                  f"with --resume {folder} (resume=True) or choose an empty directory")
            raise ConfigError(f"checkpoint directory {str(folder)!r} is not empty and holds no graftkit training "
                              "run; choose an empty directory (--checkpoint-dir)")
        if main_process:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(run_file, identity)
        return None
    if not folder.is_dir():
        raise ConfigError(f"cannot resume: {str(folder)!r} does not exist; give the checkpoint directory of the "
                          "interrupted run (--resume DIR)")
    if not run_file.is_file():
        raise ConfigError(f"cannot resume: {str(folder)!r} holds no graftkit training run (no {RUN_FILE}); give the "
                          "checkpoint directory of the interrupted run (--resume DIR)")
    try:
        stored = json.loads(run_file.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"cannot resume: {run_file} is corrupt; start a new run in an empty directory") from None
    differs = _difference(stored, identity)
    if differs is not None:
        raise ConfigError(f"cannot resume: {str(folder)!r} belongs to another run (its {differs} differs from this "
                          "one's); resume with the same data, backbone and settings, or start a new run")
    for checkpoint in checkpoints(folder):
        if not (checkpoint / SEAL).is_file():
            if main_process:
                logger.warning("checkpoint %s was interrupted while being written; discarding it", checkpoint)
                shutil.rmtree(checkpoint, ignore_errors=True)
            continue
        verify_checkpoint(checkpoint)
        logger.info("resuming from %s", checkpoint)
        return checkpoint
    logger.warning("no complete checkpoint in %s yet; training starts from the beginning", folder)
    return None
