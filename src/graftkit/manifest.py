"""The schema of ``manifest.json`` (versioned) and its signature.

``Manifest`` is the schema: its fields and their types are what ``validate`` checks, top level first, then the
nested entries in ``NESTED`` that loading reads. Every failure is one ``ArtifactError`` naming the field
(``'hyperparameters.batch_size' must be an integer``).

``digest`` holds the sha256 of each entry's canonical JSON, written at save time. A changed entry (a reordered
``task.labels``, an edited temperature, a new ``files`` hash) no longer matches its digest and is refused naming
the entry: the label order and every setting that changes predictions are covered, not only the files. One value
is left out of the digest on purpose: ``backbone.source.spec``, the base model's location, which a user may edit
when the base moved; the base's weights are verified against ``backbone.source.files`` whatever the location.

Schema history: 1 (``format_version: 1``, no ``schema_version``, no ``digest``): migrated on read (``migrate``),
its entries unsigned; ``labels.json`` is still read back and compared with ``task.labels``, which catches a
reordered label list. 2: ``schema_version`` and ``digest``. A newer schema than this graftkit knows is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import types
import typing
from pathlib import Path

from graftkit.errors import ArtifactError

logger = logging.getLogger(__name__)

FORMAT = "graftkit-model"
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
HEAD = "head.safetensors"
LABELS = "labels.json"
UNSIGNED = ("digest",)
LOCATION = ("backbone", "source", "spec")  # may be edited: the base's weights are verified by their hashes


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``manifest.json`` (schema 2). Loading reads every field below; ``training`` only for trained models."""

    format: str
    schema_version: int
    created: str
    task: dict
    input: dict
    backbone: dict
    strategy: dict
    head: dict
    hyperparameters: dict
    seed: int
    versions: dict
    data: dict
    timings: dict
    metrics: dict
    calibration: dict | None
    files: dict
    digest: dict
    training: dict | None = None

    def as_dict(self) -> dict:
        """The manifest as the dict the rest of graftkit reads (``training`` only when present)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if data["training"] is None:
            data.pop("training")
        return data


# nested entries loading reads: dotted path -> type
NESTED = {"task.kind": str, "input.modality": str, "input.column": str, "backbone.source": dict,
          "backbone.source.spec": str, "backbone.source.files": dict, "backbone.settings": dict, "strategy.name": str,
          "head.kind": str, "hyperparameters.batch_size": int}
REQUIRED_FILES = (HEAD, LABELS)
_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
          type(None): "null", bool: "true or false"}


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _signed_view(key: str, value):
    if key == LOCATION[0] and isinstance(value, dict) and isinstance(value.get(LOCATION[1]), dict):
        value = {**value, LOCATION[1]: {k: v for k, v in value[LOCATION[1]].items() if k != LOCATION[2]}}
    return value


def sign(manifest: dict) -> dict:
    """The ``digest`` entry of ``manifest``: sha256 of each signed entry's canonical JSON."""
    plain = json.loads(json.dumps(manifest))  # tuples -> lists, as the file will hold them
    return {key: hashlib.sha256(_canonical(_signed_view(key, value))).hexdigest()
            for key, value in sorted(plain.items()) if key not in UNSIGNED}


def _allowed(hint) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(typing.get_args(hint))
    return (hint,)


def _fits(value, kinds: tuple) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _expected(kinds: tuple) -> str:
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def _field_error(file: Path, name: str, problem: str) -> ArtifactError:
    return ArtifactError(f"{file}: {problem}; the manifest was edited or damaged: restore it or refit the model"
                         .replace("{name}", repr(name)))


def migrate(manifest: dict, file: Path) -> dict:
    """A schema-1 manifest (``format_version: 1``) in today's form; its entries carry no digest."""
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _field_error(file, "schema_version", "the field {name} is missing")
    if version > 1:
        raise ArtifactError(f"{file}: the field 'format_version' is {version}, newer than this graftkit reads; "
                            "upgrade graftkit")
    logger.warning("%s was written by an older graftkit (manifest schema 1, unsigned); it loads, and labels.json is "
                   "checked against it, but save it again to sign its entries", file)
    migrated = {k: v for k, v in manifest.items() if k != "format_version"}
    return {"timings": {}, "versions": {}, "created": "", "calibration": None, **migrated,
            "schema_version": SCHEMA_VERSION, "digest": {}}


def validate(manifest, file: Path) -> Manifest:
    """``manifest`` (parsed JSON) checked against the schema, migrated from schema 1, and its digest verified."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{file} holds a JSON {type(manifest).__name__}, not an object; restore it or refit the "
                            "model")
    if manifest.get("format") != FORMAT:
        raise _field_error(file, "format", f"the field {{name}} is not {FORMAT!r}, so this is not a graftkit model "
                                           "manifest")
    legacy = "schema_version" not in manifest
    if legacy:
        manifest = migrate(manifest, file)
    version = manifest["schema_version"]
    if not _fits(version, (int,)):
        raise _field_error(file, "schema_version", f"the field {{name}} must be an integer; got {_kind(version)}")
    if version > SCHEMA_VERSION:
        raise ArtifactError(f"{file}: the field 'schema_version' is {version}, newer than this graftkit reads "
                            f"({SCHEMA_VERSION}); upgrade graftkit")
    if version < SCHEMA_VERSION:
        raise _field_error(file, "schema_version", f"the field {{name}} is {version}; schema 1 manifests have no "
                                                   "schema_version field")
    hints = typing.get_type_hints(Manifest)
    for field in dataclasses.fields(Manifest):
        kinds = _allowed(hints[field.name])
        if field.name not in manifest:
            if field.default is dataclasses.MISSING:
                raise _field_error(file, field.name, "the field {name} is missing")
            continue
        if not _fits(manifest[field.name], kinds):
            raise _field_error(file, field.name, f"the field {{name}} must be {_expected(kinds)}; got "
                                                 f"{_kind(manifest[field.name])}")
    for path, kind in NESTED.items():
        _check_nested(manifest, path, kind, file)
    _check_files(manifest["files"], file)
    if not legacy:
        _check_digest(manifest, file)
    return Manifest(**{f.name: manifest.get(f.name, f.default) for f in dataclasses.fields(Manifest)})


def _kind(value) -> str:
    return _NAMES.get(type(value), type(value).__name__)


def _check_nested(manifest: dict, path: str, kind, file: Path) -> None:
    value = manifest
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if part not in value:
            raise _field_error(file, ".".join(parts[:depth + 1]), "the field {name} is missing")
        value = value[part]
        if depth < len(parts) - 1 and not isinstance(value, dict):
            raise _field_error(file, ".".join(parts[:depth + 1]), f"the field {{name}} must be an object; got "
                                                                  f"{_kind(value)}")
    if not _fits(value, (kind,)):
        raise _field_error(file, path, f"the field {{name}} must be {_expected((kind,))}; got {_kind(value)}")


def _check_files(files: dict, file: Path) -> None:
    for name, digest in files.items():
        if not isinstance(digest, str) or len(digest) != 64:
            raise _field_error(file, f"files.{name}", "the field {name} must be a sha256 hex digest")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise _field_error(file, f"files.{name}", "the file name in {name} leaves the model directory")
    for name in REQUIRED_FILES:
        if name not in files:
            raise _field_error(file, "files", f"the field {{name}} does not list {name}, which loading reads")


def _check_digest(manifest: dict, file: Path) -> None:
    recorded = manifest["digest"]
    expected = sign(manifest)
    for key in sorted(set(recorded) | set(expected)):
        if key not in recorded:
            raise _field_error(file, f"digest.{key}", "the field {name} is missing")
        if not isinstance(recorded[key], str) or len(recorded[key]) != 64:
            raise _field_error(file, f"digest.{key}", "the field {name} must be a sha256 hex digest")
        if key not in expected:
            raise _field_error(file, key, "the field {name} was removed after the model was saved")
        if recorded[key] != expected[key]:
            raise _field_error(file, key, "the field {name} does not match its digest (it was changed after the "
                                          "model was saved)")
