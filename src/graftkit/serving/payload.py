"""Reading a predict request: the JSON body into the model's inputs, every refusal naming its field.

A row is ``{"text": "..."}`` (or the column name the model was fitted on); image and audio rows carry the file
bytes as base64. Nothing in a request is ever read as a path on the server. Media are checked from their headers
first (image width x height, clip frames / rate), so a decompression bomb is refused before it is decoded, then
decoded once by the backbone's own ``load_item`` so that an undecodable file fails here, naming the row.
"""

from __future__ import annotations

import base64
import binascii
import io
import json

from graftkit.errors import GraftkitError
from graftkit.serving.settings import ServeSettings

OPTIONS = {"interval": "regression: level of the prediction interval, in (0, 1)"}


class PayloadError(Exception):
    """A refused request: HTTP status, the field at fault, one line saying what to send instead."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict:
        return {"error": self.message, "field": self.field, "status": self.status}


def _type_name(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def parse_json(body: bytes):
    if not body:
        raise PayloadError(400, None, 'the request body is empty; send JSON such as {"inputs": [{"text": "..."}]}')
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise PayloadError(400, None, "the request body is not UTF-8 text; send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(400, None, f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                                      f"{exc.colno})") from None
    except RecursionError:
        raise PayloadError(400, None, "the request body nests JSON too deeply; send a flat list of rows") from None


def read_request(document, served, settings: ServeSettings) -> tuple[list, dict]:
    """``(inputs, options)`` of a parsed predict body for ``served`` (a ServedModel), or a PayloadError."""
    if not isinstance(document, dict):
        raise PayloadError(422, None, f"the body is a JSON {_type_name(document)}; send an object "
                                      '{"inputs": [...]}')
    unknown = sorted(set(document) - {"inputs", *OPTIONS})
    if unknown:
        raise PayloadError(422, unknown[0], f"unknown field {unknown[0]!r}; the body takes 'inputs' and "
                                            f"{', '.join(map(repr, OPTIONS))}")
    rows = document.get("inputs")
    if rows is None:
        raise PayloadError(422, "inputs", "the field 'inputs' is missing; send a list of rows such as "
                                          f'[{{"{served.input_keys[0]}": ...}}]')
    if not isinstance(rows, list):
        raise PayloadError(422, "inputs", f"'inputs' is a {_type_name(rows)}; it must be an array of rows")
    if not rows:
        raise PayloadError(422, "inputs", "'inputs' is empty; send at least one row")
    if len(rows) > settings.max_rows:
        raise PayloadError(413, "inputs", f"'inputs' has {len(rows)} rows; this server takes at most "
                                          f"{settings.max_rows} per request: split it")
    options = _options(document, served)
    return [_row(i, row, served, settings) for i, row in enumerate(rows)], options


def _options(document, served) -> dict:
    options = {}
    if "interval" in document:
        level = document["interval"]
        if "interval" not in served.graft.task_.options:
            raise PayloadError(422, "interval", f"'interval' applies to regression models; {served.name!r} is a "
                                                f"{served.graft.task_.kind} model")
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
            raise PayloadError(422, "interval", f"'interval' must be a number in (0, 1), got {json.dumps(level)[:40]}")
        options["level"] = float(level)
    return options


def _row(i: int, row, served, settings: ServeSettings):
    where = f"inputs[{i}]"
    keys = served.input_keys
    if not isinstance(row, dict):
        raise PayloadError(422, where, f"{where} is a {_type_name(row)}; each row is an object such as "
                                       f'{{"{keys[0]}": ...}}')
    given = [k for k in keys if k in row]
    extra = sorted(set(row) - set(keys))
    if extra:
        raise PayloadError(422, f"{where}.{extra[0]}", f"{where} has the unknown key {extra[0]!r}; model "
                                                       f"{served.name!r} reads {' or '.join(map(repr, keys))}")
    if not given:
        raise PayloadError(422, f"{where}.{keys[0]}", f"{where} has no {keys[0]!r}; model {served.name!r} reads "
                                                      f"{served.modality}")
    if len(given) > 1:
        raise PayloadError(422, where, f"{where} gives both {given[0]!r} and {given[1]!r}; give one")
    field = f"{where}.{given[0]}"
    value = row[given[0]]
    if served.modality == "text":
        return _text(value, field, settings)
    return _media(value, field, served, settings)


def _text(value, field: str, settings: ServeSettings) -> str:
    if not isinstance(value, str):
        raise PayloadError(422, field, f"{field} is a {_type_name(value)}; it must be a string")
    if not value.strip():
        raise PayloadError(422, field, f"{field} is blank; send some text")
    if len(value) > settings.max_text_chars:
        raise PayloadError(413, field, f"{field} has {len(value)} characters; this server takes at most "
                                       f"{settings.max_text_chars}")
    return value


def _media(value, field: str, served, settings: ServeSettings) -> bytes:
    kind = served.modality
    if not isinstance(value, str):
        raise PayloadError(422, field, f"{field} is a {_type_name(value)}; send the {kind} file's bytes as a base64 "
                                       "string")
    if len(value) > (settings.max_media_bytes + 2) // 3 * 4 + 4:
        raise PayloadError(413, field, f"{field} is over {settings.max_media_bytes} bytes; this server takes "
                                       f"smaller {kind} files")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(422, field, f"{field} is not base64; send the {kind} file's bytes base64-encoded "
                                       "(standard alphabet, padded)") from None
    if not data:
        raise PayloadError(422, field, f"{field} is empty; send the {kind} file's bytes")
    if len(data) > settings.max_media_bytes:
        raise PayloadError(413, field, f"{field} is {len(data)} bytes; this server takes at most "
                                       f"{settings.max_media_bytes}")
    (_check_image if kind == "image" else _check_audio)(data, field, settings)
    try:
        served.graft.loaded_backbone().load_item(data, field)
    except GraftkitError as exc:
        raise PayloadError(422, field, str(exc)) from None
    return data


def _check_image(data: bytes, field: str, settings: ServeSettings) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError:
        raise PayloadError(413, field, f"{field}: the image is too large to decode safely; send a smaller one") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PayloadError(422, field, f"{field} is not an image this server can decode (PNG, JPEG, WebP, ...)") from None
    if width * height > settings.max_pixels:
        raise PayloadError(413, field, f"{field} is {width}x{height} pixels; this server takes at most "
                                       f"{settings.max_pixels} pixels: downscale it")


def _check_audio(data: bytes, field: str, settings: ServeSettings) -> None:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise PayloadError(422, field, f"{field} is not an audio file this server can read (WAV, FLAC, OGG, ...)") from None
    if info.samplerate <= 0 or info.frames < 0:
        raise PayloadError(422, field, f"{field} has a damaged header ({info.samplerate} Hz, {info.frames} frames)")
    seconds = info.frames / info.samplerate
    if seconds > settings.max_audio_seconds:
        raise PayloadError(413, field, f"{field} is {seconds:.1f} s long; this server takes at most "
                                       f"{settings.max_audio_seconds:g} s")
