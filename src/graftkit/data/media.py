"""Decoding of one image or audio clip, with errors that name the row and the file."""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from math import gcd
from pathlib import Path

import numpy as np

from graftkit.errors import DataError

# The largest image (width x height) decoded: PIL's own decompression-bomb limit (about 89 million pixels, a 0.25 GiB
# RGB buffer) unless changed with ``max_image_pixels`` (CLI ``--max-image-pixels``); 0 or None: no limit.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
_limits = {"max_image_pixels": DEFAULT_MAX_IMAGE_PIXELS}


@contextmanager
def max_image_pixels(limit: int | None):
    """Images above ``limit`` pixels are refused (naming the file and ``--max-image-pixels``) while this holds."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise DataError(f"max_image_pixels must be an integer >= 0 (0: no limit); got {limit!r} (--max-image-pixels)")
    previous = _limits["max_image_pixels"]
    _limits["max_image_pixels"] = limit or None
    try:
        yield
    finally:
        _limits["max_image_pixels"] = previous


def _describe(item) -> str:
    if isinstance(item, (str, Path)):
        return f"file {str(item)!r}"
    if isinstance(item, dict) and item.get("path"):
        return f"file {item['path']!r}"
    return "in-memory value"


def _open_source(item, where: str):
    """A path or file-like object for a media reference (path, bytes, or a HF datasets dict)."""
    if isinstance(item, dict):
        if item.get("bytes"):
            return io.BytesIO(item["bytes"])
        item = item.get("path")
    if isinstance(item, bytes):
        return io.BytesIO(item)
    if isinstance(item, (str, Path)):
        if not Path(item).is_file():
            raise DataError(f"{where}: {_describe(item)} does not exist; check the path (relative paths are "
                            "read from the data file's folder)")
        return str(item)
    raise DataError(f"{where}: expected a file path or encoded bytes, got {type(item).__name__}")


ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}  # not "LAB", whose A is a colour axis
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}


def to_rgb(image):
    """RGB with the right scaling: PIL's own ``convert("RGB")`` clips 16-bit and float images (``I;16``, ``I``,
    ``F``) at 255, which turns a 16-bit PNG white; those are scaled from their full range instead. EXIF
    orientation is applied, and palette / alpha images are composited on white."""
    from PIL import Image, ImageOps

    transparency = "transparency" in image.info
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ALPHA_MODES or transparency or "transparency" in image.info:  # alpha, or a tRNS key
        if image.mode in PREMULTIPLIED:  # La / RGBa: PIL converts them to RGB only through their straight form
            image = image.convert(PREMULTIPLIED[image.mode])
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(item, where: str):
    """An RGB PIL image from a path, bytes, a HF ``{'bytes', 'path'}`` dict or a PIL image. An image larger than
    the pixel limit (``max_image_pixels``) is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        _check_size(item.size, item, where)
        return to_rgb(item)
    source = _open_source(item, where)
    limit = _limits["max_image_pixels"]
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = limit  # PIL's own guard at our limit (also where a format checks late), as an error
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _opened(Image, source) as image:
                _check_size(image.size, item, where)  # the header's size, before any pixel is decoded
                return to_rgb(image)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(item, where, None) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: {_describe(item)} cannot be decoded as an image ({exc.__class__.__name__}); "
                        "replace or remove it") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextmanager
def _opened(Image, source):
    """``Image.open`` with PIL's size guard off for the header read only, so that our check names the size."""
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(source)
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    with image:
        yield image


def _too_large(item, where: str, size) -> DataError:
    limit = _limits["max_image_pixels"]
    shape = f" ({size[0]} x {size[1]} = {size[0] * size[1]:,} pixels)" if size else ""
    return DataError(f"{where}: {_describe(item)} is too large to decode safely{shape}: the limit is {limit:,} pixels "
                     "(a decompression-bomb guard); downscale it, or raise the limit with --max-image-pixels N "
                     "(max_image_pixels) if you trust the file")


def _check_size(size, item, where: str) -> None:
    limit = _limits["max_image_pixels"]
    if limit is not None and size[0] * size[1] > limit:
        raise _too_large(item, where, size)


def load_audio(item, sampling_rate: int, where: str) -> np.ndarray:
    """Mono float32 samples at ``sampling_rate`` from a path, bytes or a HF ``{'array', 'sampling_rate'}`` dict."""
    if isinstance(item, dict) and item.get("array") is not None:
        samples, rate = np.asarray(item["array"], dtype=np.float32), int(item["sampling_rate"])
    else:
        import soundfile

        source = _open_source(item, where)
        try:
            samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise DataError(f"{where}: {_describe(item)} is not a readable audio file ({str(exc).strip()}); "
                            "replace or remove it") from None
        samples = samples.mean(axis=1)
    if samples.ndim > 1:
        samples = samples.mean(axis=-1)
    if samples.size == 0:
        raise DataError(f"{where}: {_describe(item)} holds no audio (0 samples); replace or remove it")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise DataError(f"{where}: {_describe(item)} holds {bad} non-finite sample(s) (NaN or infinity); a model "
                        "would learn nothing from it: replace or remove it")
    return resample(samples, rate, sampling_rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy), the standard band-limited method."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    divisor = gcd(rate, target)
    return resample_poly(samples, target // divisor, rate // divisor).astype(np.float32)
