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
