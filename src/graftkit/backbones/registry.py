"""Backbone families register themselves here; ``load_backbone`` picks the family for a spec.

Adding a family is one module that calls ``register_family`` and is imported in ``backbones/__init__``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from graftkit.backbones.base import Backbone, BackboneSource
from graftkit.backbones.sources import resolve_source
from graftkit.errors import BackboneError

logger = logging.getLogger(__name__)

# family name -> (claims(config_dict) -> bool, build(source, **options) -> Backbone)
_FAMILIES: dict[str, tuple[Callable[[dict], bool], Callable[..., Backbone]]] = {}


def register_family(name: str, claims: Callable[[dict], bool], build: Callable[..., Backbone]) -> None:
    _FAMILIES[name] = (claims, build)


def families() -> list[str]:
    return sorted(_FAMILIES)


def _read_config(source: BackboneSource) -> dict:
    try:
        return json.loads((Path(source.path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"backbone {source.spec!r}: config.json is unreadable ({exc}); re-save the model") from None


def load_backbone(spec: str, *, revision: str | None = None, trust_remote_code: bool = False,
                  **options) -> Backbone:
    """Resolve ``spec`` (packaged short name, local directory or Hub id) and build its backbone."""
    source, hint = resolve_source(spec, revision)
    if hint != "hf":
        return _FAMILIES[hint][1](source, **options)
    config = _read_config(source)
    for name, (claims, build) in _FAMILIES.items():
        if claims(config):
            logger.info("backbone %s: family %s (model_type %r)", source.spec, name, config.get("model_type"))
            return build(source, trust_remote_code=trust_remote_code, **options)
    raise BackboneError(f"backbone {source.spec!r} has model_type {config.get('model_type')!r}, which no "
                        f"graftkit family handles ({', '.join(families())})")
