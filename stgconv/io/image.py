"""Read and write images. Pixel values live in ``[-1, 1]`` inside stgconv."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from skimage import data as skimage_data
from torch import Tensor

from stgconv.io.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# scikit-image ships these real photographs; they are the embedded default data.
BUILTIN_IMAGES = ("brick", "grass", "gravel", "camera", "coffee", "astronaut", "rocket")


def to_tensor(array: np.ndarray) -> Tensor:
    """uint8 ``(H, W)`` or ``(H, W, C)`` -> float ``(C, H, W)`` in ``[-1, 1]``."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 127.5 - 1.0


def read_image(path: Path, *, what: str = "image") -> Image.Image:
    """The decoded image file ``path`` upright, with 8-bit samples (:func:`_eight_bit`), or
    ``ValueError`` ("cannot read <what> <path>: ...") when it cannot be read so.

    Upright: a photo whose EXIF orientation says it was taken turned is turned as every viewer
    shows it (a phone's portrait JPEG is stored sideways)."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return _eight_bit(ImageOps.exif_transpose(opened))  # a copy, usable once closed
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err
    except Image.DecompressionBombError as err:  # not an OSError: Pillow's guard on pixel count
        raise ValueError(f"cannot read {what} {path}: it is too large to decode ({err}); "
                         "resize it first") from err


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8-bit samples. 16-bit grey (Pillow's "I;16" modes, and "I", in which older
    Pillow opens 16-bit PNGs) is scaled by 255 / 65535 and float grey ("F") in [0, 1] by 255:
    Pillow's own conversion clips them at 255, which turns nearly every pixel white (or, for
    floats, black). Other ranges are refused rather than guessed."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    levels = np.asarray(image, dtype=np.float64)
    top = 1.0 if image.mode == "F" else 65535.0
    if levels.size and not (np.isfinite(levels).all() and levels.min() >= 0
                            and levels.max() <= top):
        raise ValueError(f"its {image.mode!r} samples run from {levels.min()} to "
                         f"{levels.max()}, outside 0..{top:g}, the range read for that mode")
    return Image.fromarray(np.round(levels * (255.0 / top)).astype(np.uint8))  # mode L


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` (8-bit samples, as :func:`read_image` gives) as grey (``channels`` 1: ITU-R
    601 luma, Pillow's ``convert("L")``) or RGB (3)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return image.convert("L" if channels == 1 else "RGB")


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3)`` RGB -> uint8 ``(...)`` grey, bit for bit as Pillow's ``convert("L")``
    computes it (ITU-R 601 weights in 16-bit fixed point, rounded), so arrays and image files
    are made grey alike."""
    weights = np.array([19595, 38470, 7471], dtype=np.uint32)
    return ((rgb.astype(np.uint32) @ weights + 0x8000) >> 16).astype(np.uint8)


def _resize(image: Image.Image, size: int | None, crop_square: bool) -> Image.Image:
    if crop_square:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def load_image(
    path: str | Path, *, channels: int = 3, size: int | None = None, crop_square: bool = True
) -> Tensor:
    """Load an image file or ``builtin:<name>`` as ``(C, H, W)`` in ``[-1, 1]``.

    Args:
        channels: 1 (grey) or 3 (RGB).
        size: if given, the (centre-cropped square) image is resized to ``size x size``.
        crop_square: centre-crop to a square before resizing.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a readable image, or an unknown builtin name.
    """
    text = str(path)
    if text.startswith("builtin:"):
        image = builtin_image(text.removeprefix("builtin:"))
    else:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not an image file")
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image = read_image(path)
    image = _resize(to_channels(image, channels), size, crop_square)
    return to_tensor(np.asarray(image))


def builtin_image(name: str) -> Image.Image:
    """One of the real photographs bundled with scikit-image (see :data:`BUILTIN_IMAGES`)."""
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"unknown builtin image {name!r}; choose from {', '.join(BUILTIN_IMAGES)}")
    return Image.fromarray(getattr(skimage_data, name)())


def save_image_grid(images: Tensor, path: str | Path, *, nrow: int = 8) -> Path:
    """Write ``(B, C, H, W)`` images in ``[-1, 1]`` as one PNG grid, atomically."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    if not torch.isfinite(images).all():  # else written as grey levels nobody could tell apart
        raise ValueError("images contain NaN or infinite values; refusing to write them")
    # torchvision takes seconds to import (it loads torch._dynamo); only writing a grid pays.
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2, pad_value=1.0)
    array = ((grid + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    return atomic_write(path, partial(Image.fromarray(array).save, format="PNG"))
