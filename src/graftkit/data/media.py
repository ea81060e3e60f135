"""Decoding of one image or audio clip, with errors that name the row and the file."""

from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np

from graftkit.errors import DataError


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


def to_rgb(image):
    """RGB with the right scaling: PIL's own ``convert("RGB")`` clips 16-bit and float images (``I;16``, ``I``,
    ``F``) at 255, which turns a 16-bit PNG white; those are scaled from their full range instead. EXIF
    orientation is applied, and palette / alpha images are composited on white."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("P", "PA", "LA", "RGBA") and ("transparency" in image.info or "A" in image.mode):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(item, where: str):
    """An RGB PIL image from a path, bytes, a HF ``{'bytes', 'path'}`` dict or a PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return to_rgb(item)
    source = _open_source(item, where)
    try:
        with Image.open(source) as image:
            return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{where}: {_describe(item)} is too large to decode safely ({exc}); downscale it, or raise "
                        "PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: {_describe(item)} cannot be decoded as an image ({exc.__class__.__name__}); "
                        "replace or remove it") from None


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
