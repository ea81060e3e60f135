"""Backbone families register themselves here; ``load_backbone`` picks the family for a spec.

Adding a family is one module that calls ``register_family`` and is imported in ``backbones/__init__``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.sources import resolve_source
from graftkit.errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)

# family name -> (claims(config_dict) -> bool, build(source, **options) -> Backbone)
_FAMILIES: dict[str, tuple[Callable[[dict], bool], Callable[..., Backbone]]] = {}


def register_family(name: str, claims: Callable[[dict], bool], build: Callable[..., Backbone]) -> None:
    _FAMILIES[name] = (claims, build)


def families() -> list[str]:
    return sorted(_FAMILIES)


def recorded_settings(family: str | None, settings: dict) -> dict:
    """The backbone settings a manifest recorded, completed with the family's ``legacy_settings`` for the keys it
    predates: a model saved before a setting existed is rebuilt as it ran, not with today's default."""
    build = _FAMILIES.get(family or "", (None, None))[1]
    return {**getattr(build, "legacy_settings", {}), **settings}


def _read_config(source: BackboneSource) -> dict:
    try:
        return json.loads((Path(source.path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"backbone {source.spec!r}: config.json is unreadable ({exc}); re-save the model") from None


def _build(name: str, build: Callable[..., Backbone], source: BackboneSource, options: dict) -> Backbone:
    try:
        inspect.signature(build).bind(source, **options)
    except TypeError:
        known = [p for p in inspect.signature(build).parameters if p not in ("self", "source", "trust_remote_code")]
        unknown = sorted(set(options) - set(known) - {"trust_remote_code"})
        named = ", ".join(unknown) or ", ".join(options)
        raise ConfigError(f"backbone {source.spec!r} (family {name}) has no setting {named}; its settings are: "
                          f"{', '.join(known) or 'none'}") from None
    return build(source, **options)


def load_backbone(spec: str, *, revision: str | None = None, trust_remote_code: bool = False,
                  **options) -> Backbone:
    """Resolve ``spec`` (packaged short name, local directory or Hub id) and build its backbone."""
    source, hint = resolve_source(spec, revision)
    if hint != "hf":
        return _build(hint, _FAMILIES[hint][1], source, options)
    config = _read_config(source)
    for name, (claims, build) in _FAMILIES.items():
        if claims(config):
            logger.info("backbone %s: family %s (model_type %r)", source.spec, name, config.get("model_type"))
            return _build(name, build, source, {"trust_remote_code": trust_remote_code, **options})
    raise BackboneError(f"backbone {source.spec!r} has model_type {config.get('model_type')!r}, which no "
                        f"graftkit family handles ({', '.join(families())})")


def _builder_of(source_path: Path, family_hint: str | None):
    """The build function of the family that reads this model (its claim on ``config.json`` decides, as
    ``load_backbone`` does), or None."""
    if family_hint and family_hint != "hf":
        return _FAMILIES.get(family_hint, (None, None))[1]
    try:
        config = json.loads((source_path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return next((build for claims, build in _FAMILIES.values() if claims(config)), None)


def family_of(source_path: Path) -> str | None:
    """The name of the family that claims the model in ``source_path`` (``graftkit models``), or None."""
    build = _builder_of(source_path, None)
    return next((name for name, (_, b) in _FAMILIES.items() if b is build), None) if build else None


def _modalities_of(source_path: Path, family_hint: str | None) -> tuple:
    """The modalities a model reads: its family's (an image-text model's towers read two)."""
    build = _builder_of(source_path, family_hint)
    return tuple(getattr(build, "modalities", None) or (getattr(build, "modality", None),))


def modalities_of(spec: str) -> tuple:
    """The modalities the model ``spec`` reads, from its config and family, without building it."""
    source, hint = resolve_source(spec)
    return _modalities_of(Path(source.path), hint)


def _weights_bytes(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix in (
        ".safetensors", ".pth", ".pt", ".bin")]
    return sum(f.stat().st_size for f in files)


def installed_backbones(modality: str) -> list[dict]:
    """The backbones ready on this machine that read ``modality`` (``graftkit models``' sources: installed packages
    and the Hugging Face cache's newest snapshots), cheapest first by the size of their weights (a forward pass
    costs in proportion to the parameters). Each: ``{"name", "source", "family", "bytes"}`` (an image-text model is
listed under both modalities; its family takes the tower that reads the data)."""
    from graftkit.backbones.sources import PACKAGED

    found = []
    for entry in PACKAGED.values():
        if not entry.installed():
            continue
        try:
            path = entry.path()
        except Exception as exc:  # noqa: BLE001 - a broken package is not a candidate
            logger.warning("backbone package %s is installed but unusable (%s); skipping it", entry.name, exc)
            continue
        if modality in _modalities_of(path, entry.family):
            found.append({"name": entry.name, "source": "package", "family": entry.family,
                          "bytes": _weights_bytes(path)})
    try:
        from huggingface_hub import scan_cache_dir

        repos = [r for r in scan_cache_dir().repos if r.repo_type == "model"]
    except Exception:  # noqa: BLE001 - no cache folder, or one the scanner cannot read: nothing cached
        repos = []
    for repo in repos:
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        snapshot = Path(newest.snapshot_path) if newest is not None else None
        if snapshot is not None and modality in _modalities_of(snapshot, None):
            found.append({"name": repo.repo_id, "source": "hub-cache", "family": family_of(snapshot),
                          "bytes": _weights_bytes(snapshot)})
    return sorted(found, key=lambda c: (c["bytes"], c["name"]))
