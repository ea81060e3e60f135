"""Which backbone embeds which media column of a multi-input table, from the entries a user writes: ``COLUMN=SPEC``
(that column), ``MODALITY=SPEC`` (every column of that modality) or a bare ``SPEC``, which serves every media
modality of the table that the model reads (a text encoder the text columns, an image-text model such as CLIP both
the image and the text columns, each through its own tower). Columns nobody names get ``encoders.DEFAULT_BACKBONES``.
"""

from __future__ import annotations

from graftkit.backbones.registry import modalities_of
from graftkit.data.roles import MEDIA
from graftkit.errors import ConfigError


def parse_entry(entry: str) -> tuple[str | None, str]:
    """``(target, spec)``: target a column or modality name, or None for a bare spec."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"a backbone must be SPEC, COLUMN=SPEC or MODALITY=SPEC; got {entry!r} (--backbone)")
    name, sep, spec = entry.partition("=")
    if sep and not (name.strip() and spec.strip()):
        raise ConfigError(f"--backbone {entry!r}: give COLUMN=SPEC, MODALITY=SPEC or SPEC")
    return (name.strip(), spec.strip()) if sep else (None, entry.strip())


def assign_backbones(entries, roles) -> dict:
    """``FusionModel``'s ``backbones=`` (column / modality -> spec) for a table with ``roles``."""
    entries = [entries] if isinstance(entries, str) else list(entries or [])
    media = dict(roles.media)
    out: dict[str, str] = {}
    for entry in entries:
        target, spec = parse_entry(entry)
        if target is not None:
            if target not in media and target not in MEDIA:
                raise ConfigError(f"--backbone {entry!r}: {target!r} is neither a media column of this table "
                                  f"({', '.join(media) or 'none'}) nor a modality ({', '.join(MEDIA)})")
            out[target] = spec
            continue
        reads = [m for m in dict.fromkeys(media.values()) if m in modalities_of(spec)]
        if not reads:
            raise ConfigError(f"backbone {spec!r} reads {', '.join(modalities_of(spec))}, but the media columns of this "
                              f"table hold {', '.join(dict.fromkeys(media.values())) or 'nothing'}; name a backbone "
                              "for them or COLUMN=SPEC (--backbone)")
        for modality in reads:
            out.setdefault(modality, spec)
    return out
