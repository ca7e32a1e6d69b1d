"""Read and write images. Pixel values live in ``[-1, 1]`` inside stgconv."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
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
    """The decoded image file ``path``, or ``ValueError`` ("cannot read <what> <path>: ...")
    when Pillow cannot read it."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()  # the copy stays usable once the file is closed
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as 8-bit grey (``channels`` 1) or RGB (3). 16-bit grey (PNG, TIFF: Pillow's
    "I;16" modes) is scaled to 8 bits first: Pillow's own conversion clips it at 255, which
    turns nearly every pixel white."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image.mode.startswith("I;16"):
        levels = np.asarray(image).astype(np.float64) / 257.0  # 65535 -> 255
        image = Image.fromarray(np.round(levels).astype(np.uint8))  # (H, W) uint8: mode L
    return image.convert("L" if channels == 1 else "RGB")


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
    # torchvision takes seconds to import (it loads torch._dynamo); only writing a grid pays.
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2, pad_value=1.0)
    array = ((grid + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    return atomic_write(path, partial(Image.fromarray(array).save, format="PNG"))
