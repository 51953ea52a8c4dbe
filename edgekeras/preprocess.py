"""The exact preprocessing a model card describes: image pixels -> model input -> quantized tensor.

One image reader for all of edgekeras (training, calibration, evaluation, the bench harness) and the
reference the Android demo's Java core reproduces byte for byte. Each step is the one the card's
`preprocessing` names (see `edgekeras.card`: DECODE, GRAYSCALE, RESIZE, NORMALIZE, ROUNDING):

1. decode to 8-bit RGB (PIL; alpha dropped, EXIF orientation not applied);
2. 1-channel models: L = 0.299 R + 0.587 G + 0.114 B in float64;
3. resize to the card's image size: bilinear, half-pixel centres, no antialiasing, edges clamped, float64;
4. float32, channel order (rgb / bgr), then (x - mean) / std in float32;
5. integer inputs: q = clamp(rint(x * float32(1 / scale)) + zero_point), half to even, as LiteRT's default
   kernels quantize.

numpy only (PIL to decode files); no TensorFlow.

Example:
    x = preprocess_image("cat.png", card.preprocessing)          # float32 (h, w, c)
    q = quantize(x[None], "int8", card.inputs[0].quantization)   # what an int8 file takes
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .card import GRAYSCALE_WEIGHTS, Preprocessing, Quantization
from .errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_INT_RANGES = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max) for t in (np.int8, np.uint8, np.int16, np.int32)}


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as 8-bit RGB pixels, shape (height, width, 3). Alpha is dropped, EXIF is not applied.

    Raises:
        BadInput: the file is missing or not a readable image (the message names PIL's reason).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    # PIL reports broken files as OSError (UnidentifiedImageError), ValueError, SyntaxError (bad PNG chunks) or
    # DecompressionBombError.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadInput(f"{Path(path).name} is not a readable image ({type(e).__name__}: {e})") from e


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """RGB pixels (..., 3) -> luma (..., 1) in float64: 0.299 R + 0.587 G + 0.114 B, unrounded, in that order."""
    a = np.asarray(rgb, dtype=np.float64)
    wr, wg, wb = GRAYSCALE_WEIGHTS
    return (wr * a[..., 0] + wg * a[..., 1] + wb * a[..., 2])[..., None]


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower, upper) and weights of the upper one, for each output position (float64)."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    return lower, upper, src - floor


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (h, w, c) to (height, width, c): bilinear, half-pixel centres, no antialiasing, in float64.

    The same arithmetic as `tf.image.resize(..., "bilinear", antialias=False)`, in float64 and in a fixed
    order (see `edgekeras.card.RESIZE`), so another language can reproduce it bit for bit.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.shape[0] == height and a.shape[1] == width:
        return a
    y0, y1, ty = _axis_weights(a.shape[0], height)
    x0, x1, tx = _axis_weights(a.shape[1], width)
    tx = tx[None, :, None]
    top_rows, bottom_rows = a[y0], a[y1]
    top = top_rows[:, x0] + (top_rows[:, x1] - top_rows[:, x0]) * tx
    bottom = bottom_rows[:, x0] + (bottom_rows[:, x1] - bottom_rows[:, x0]) * tx
    return top + (bottom - top) * ty[:, None, None]


def image_pixels(source: str | os.PathLike | np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Steps 1-3 and the float32 cast: an image file (or 8-bit RGB array) -> float32 pixels (height, width,
    channels)."""
    rgb = decode_image(source) if not isinstance(source, np.ndarray) else np.asarray(source)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BadInput(f"expected RGB pixels of shape (height, width, 3), got {rgb.shape}")
    a = to_grayscale(rgb) if channels == 1 else rgb.astype(np.float64)
    return resize_bilinear(a, height, width).astype(np.float32)


def normalize(pixels: np.ndarray, p: Preprocessing) -> np.ndarray:
    """Step 4: float32 pixels 0-255 (..., c) in RGB -> model input, as the card's preprocessing says."""
    x = np.asarray(pixels, dtype=np.float32)
    if p.channel_order == "bgr" and x.shape[-1] == 3:
        x = x[..., ::-1]
    p.check_channels(x.shape[-1], "preprocessing")
    mean = np.asarray(p.mean, np.float32)
    std = np.asarray(p.std, np.float32)
    return ((x - mean) / std).astype(np.float32)


def preprocess_image(source: str | os.PathLike | np.ndarray, p: Preprocessing,
                     channels: int | None = None) -> np.ndarray:
    """Steps 1-4: an image file -> the float32 model input (height, width, channels) the card describes.

    Raises:
        BadInput: the card has no image size or colour (not an image model).
    """
    if not p.image_size or p.color not in ("rgb", "grayscale"):
        raise BadInput(f"preprocessing {p.name!r} describes no image (image_size {p.image_size}, color {p.color})",
                       fix="feed this model arrays of its input shape, not images")
    channels = channels or (1 if p.color == "grayscale" else 3)
    return normalize(image_pixels(source, int(p.image_size[0]), int(p.image_size[1]), channels), p)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order; hidden files and folders are skipped."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def quantize(x: np.ndarray, dtype, q: Quantization | None) -> np.ndarray:
    """Float values -> the file's input dtype, with its affine quantization when it has one.

    q = clamp(rint(float32(x) * float32(1 / scale)) + zero_point): LiteRT's default kernels' rule
    (`edgekeras.card.ROUNDING`).
    """
    dtype = np.dtype(dtype)
    if q is None or q.scale == 0 or dtype.kind == "f":
        return np.asarray(x).astype(dtype, copy=False)
    lo, hi = _INT_RANGES[dtype]
    inv = np.float32(1.0) / np.float32(q.scale)
    scaled = np.rint(np.asarray(x, np.float32) * inv)
    return np.clip(scaled + np.float32(q.zero_point), lo, hi).astype(dtype)


def dequantize(x: np.ndarray, q: Quantization | None) -> np.ndarray:
    """An output in the file's dtype -> float32: (q - zero_point) * scale."""
    if q is None or q.scale == 0:
        return np.asarray(x).astype(np.float32, copy=False)
    return ((np.asarray(x).astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)).astype(np.float32)
