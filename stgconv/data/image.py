"""Image datasets: one texture image, or a folder of object images."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from stgconv.io.image import IMAGE_SUFFIXES, load_image


class ImageFolder(Dataset):
    """All images directly inside ``root`` (sorted by name), as ``(C, size, size)`` in ``[-1, 1]``.

    Args:
        root: a folder of image files.
        size: every image is centre-cropped to a square and resized to ``size x size``.
        channels: 1 (grey) or 3 (RGB).
        max_images: keep only the first ``max_images`` files.
        transform: applied to each ``(C, H, W)`` tensor.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        size: int,
        channels: int = 3,
        max_images: int | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {self.root}")
        self.files = files[:max_images] if max_images is not None else files
        self.size = size
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        image = load_image(self.files[index], channels=self.channels, size=self.size)
        return self.transform(image) if self.transform is not None else image

    def extra_repr(self) -> str:
        return f"root={self.root}, size={self.size}, channels={self.channels}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()}, n={len(self)})"


def load_training_images(path: str | Path, *, kind: str, size: int, channels: int,
                         max_images: int | None = None) -> Tensor:
    """Training tensor ``(N, C, size, size)`` in ``[-1, 1]``.

    ``kind="texture"``: ``path`` is one image (or ``builtin:<name>``), N = 1.
    ``kind="objects"``: ``path`` is a folder of images.
    """
    if kind == "texture":
        return load_image(path, channels=channels, size=size).unsqueeze(0)
    if kind == "objects":
        dataset = ImageFolder(path, size=size, channels=channels, max_images=max_images)
        return torch.stack([dataset[i] for i in range(len(dataset))])
    raise ValueError(f"data kind must be 'texture' or 'objects', got {kind!r}")
