"""Image datasets: one texture image, a folder of object images, or an array of images in an
``.npz`` file (the Keras layout of MNIST and its kin)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from stgconv.checks import (as_int, class_numbers, npz_array, npz_length, npz_shape,
                             open_npz)
from stgconv.data.base import NamedDataset, nearer_size_advice
from stgconv.data.video import CACHE_SUFFIXES
from stgconv.io.folder import distinct_files, folder_names, list_files
from stgconv.io.image import (
    IMAGE_SUFFIXES,
    UNREAD_IMAGE_SUFFIXES,
    builtin_image,
    check_channels,
    from_levels,
    load_image,
    luma,
)

NPZ_CHUNK = 4096
"""Images of an ``.npz`` converted at a time by :func:`load_npz_images`."""


class ImageFolder(NamedDataset):
    """All images directly inside ``root`` (hidden files skipped, in natural name order: ``img2``
    before ``img10``, as frame folders are read), as ``(C, size, size)`` in ``[-1, 1]``; the
    folders inside are not read (a warning names them), and a link to another of its images
    is read once (:func:`~stgconv.io.folder.distinct_files`).

    Args:
        root: a folder of image files.
        size: every image is centre-cropped to a square and resized to ``size x size``.
        channels: 1 (grey) or 3 (RGB).
        max_images: keep only the first ``max_images`` files.
        transform: applied to each ``(C, H, W)`` tensor.

    Raises:
        ValueError: ``size`` or ``max_images`` not an int >= 1, ``channels`` not 1 or 3, or
            no image file in ``root``.
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
        if self.root.is_file():
            raise ValueError(f"{self.root} is a file, not a folder of images")
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        # Checked here, not at the first image: Pillow's "height and width must be > 0" named
        # neither, and a max_images of -1 dropped the last file silently.
        self.size = as_int(size, "size", minimum=1)
        check_channels(channels)
        if max_images is not None:
            max_images = as_int(max_images, "max_images", minimum=1)
        # An image and a link to it (cover.jpg -> photo3.jpg) trained as two, as a video folder's
        # did: read once.
        files = distinct_files(list_files(self.root, IMAGE_SUFFIXES), "image")
        held = folder_names(self.root)
        # Links to nothing too: never read, they are no reason to refuse the folder's images.
        unread = sorted({path.suffix.lower() for path in list_files(
            self.root, UNREAD_IMAGE_SUFFIXES, dangling_links=True)})
        convert = (f"its {'/'.join(unread)} files are not read: convert them to PNG or JPEG"
                   if unread else "")
        # Images saved one array a file (.npy) were refused as "no image files" alone, which did
        # not say how arrays are read; an .npz of the data beside a preview image was left out,
        # the preview trained on alone.
        arrays = sorted({path.suffix.lower() for path in list_files(
            self.root, (".npy", ".npz"), dangling_links=True)})
        as_arrays = (f"its {'/'.join(arrays)} files are not read: images as arrays are read "
                     "from one .npz file whose x_train holds them all (numpy.savez(path, "
                     "x_train=images)), given in the folder's place" if arrays else "")
        if not files:
            # A folder per class (torchvision's ImageFolder layout) read as no images at all.
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {self.root}"
                             + (f" (it holds the folders {held}; folders inside are not read: "
                                f"give the folder that holds the images)" if held else "")
                             + (f"; {convert}" if unread else "")
                             + (f"; {as_arrays}" if arrays else ""))
        if unread:  # a phone's HEIC photos beside its JPEGs were left out without a word
            warnings.warn(f"{self.root}: {convert} ({len(files)} readable images beside them)",
                          RuntimeWarning, stacklevel=2)
        if arrays:
            warnings.warn(f"{self.root}: {as_arrays}; only the {len(files)} image files beside "
                          "them are read", RuntimeWarning, stacklevel=2)
        if held:
            # Else a tree of one folder per class with a stray image beside them trained on that
            # image alone (or stopped as "a Gaussian fit needs at least 2 examples, got 1").
            warnings.warn(f"{self.root}: the folders inside it ({held}) are not read, only the "
                          f"image files directly in it ({len(files)})", RuntimeWarning,
                          stacklevel=2)
        self.files = files[:max_images] if max_images is not None else files
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        image = load_image(self.files[index], channels=self.channels, size=self.size)
        return self.transform(image) if self.transform is not None else image

    def extra_repr(self) -> str:
        return f"root={self.root}, size={self.size}, channels={self.channels}"


def _centre_square_side(path: str | Path) -> int:
    """The side of the centre square :func:`load_image` crops the image ``path`` (a file it has
    read, or ``builtin:<name>``) to, from the file's header: decoded again at its own size into
    floats, a 12-megapixel photograph took 2.1 s to load instead of 0.8 s. ``min(W, H)`` is the
    same for the image turned upright by its EXIF orientation."""
    text = str(path)
    if text.startswith("builtin:"):
        return min(builtin_image(text.removeprefix("builtin:")).size)
    with Image.open(path) as image:
        return min(image.size)


def load_training_images(path: str | Path, *, kind: str, size: int, channels: int,
                         max_images: int | None = None, smallest_side: int = 1) -> Tensor:
    """Training tensor ``(N, C, size, size)`` in ``[-1, 1]``.

    ``kind="texture"``: ``path`` is one image (or ``builtin:<name>``), N = 1.
    ``kind="objects"``: ``path`` is a folder of images, or an ``.npz`` file whose ``x_train``
    holds them (:func:`load_npz_images`).
    ``smallest_side``: the smallest side of the examples the net to be trained takes; the
    warning of images enlarged more than twice advises no smaller data.size.
    """
    if Path(path).suffix.lower() in CACHE_SUFFIXES and Path(path).is_file():
        # Else Pillow's "cannot find loader for this HDF5 file" for a cache of the prepare
        # scripts given to a run without a video or voxel config (image kinds by default).
        raise ValueError(f"{path} is an HDF5 file, which data.kind {kind} does not read: a clip "
                         "cache (stgconv.data.video.build_clip_cache) trains with data.kind "
                         "video, a shape cache (stgconv.data.voxel.build_modelnet_cache) with "
                         "data.kind voxels (--set data.kind=video or data.kind=voxels, or a "
                         "config file's data: kind:)")
    if kind == "texture":
        source = Path(path)
        many = ("a folder" if source.is_dir() else
                "an .npz file" if source.suffix.lower() == ".npz" and source.is_file() else None)
        if many is not None:
            # Else "is a folder, not an image file" / "not an image file Pillow can identify",
            # which did not say that the other kind reads such data.
            raise ValueError(f"{path} is {many}: data.kind texture learns from one image "
                             f"file; data.kind objects reads {many} of images")
        texture = load_image(path, channels=channels, size=size)
        side = _centre_square_side(path)
        if size > 2 * side:
            # A 12x12 tile, enlarged 5x, was learned as the blur of itself without a word.
            warnings.warn(f"texture {path} is {side}x{side} (its centre square) and is enlarged "
                          f"{size / side:.1f}x to data.size {size}: the model learns the "
                          f"enlargement's blur; "
                          + nearer_size_advice(side, size, smallest_side,
                                               as_is=f"set data.size={side} to learn it as it is"),
                          stacklevel=2)
        return texture.unsqueeze(0)
    if kind == "objects" and Path(path).suffix.lower() == ".npz":
        images = load_npz_images(path, size=size, channels=channels, max_images=max_images)
        with open_npz(path) as archive:
            shape = npz_shape(archive, "x_train")
        if shape is not None and len(shape) >= 3:
            _warn_enlarged(path, [min(shape[1:3])] * len(images), size,
                           smallest_side=smallest_side)
        return images
    if kind == "objects" and Path(path).is_file():
        # Else "is a file, not a folder of images", which did not say that an .npz is read too
        # (images saved by numpy.save, an .npy, are a user's first try), nor that data.kind
        # texture learns from one image file.
        suffix = Path(path).suffix.lower()
        hint = ("; data.kind texture learns from one image file" if suffix in IMAGE_SUFFIXES
                else "; numpy.savez(path, x_train=images) writes the images as one"
                if suffix == ".npy" else "")
        raise ValueError(f"{path} is a file: data.kind objects reads a folder of images or an "
                         f".npz file whose x_train holds them{hint}")
    if kind == "objects":
        dataset = ImageFolder(path, size=size, channels=channels, max_images=max_images)
        # Read before their sides are: Pillow's header read, unguarded, met a text file named
        # .png with its own "cannot identify image file" and an image too large to decode with
        # a traceback; read_image names the file and what is wrong.
        images = torch.stack([dataset[i] for i in range(len(dataset))])
        sides = [_centre_square_side(file) for file in dataset.files]
        _warn_enlarged(path, sides, size, names=[file.name for file in dataset.files],
                       smallest_side=smallest_side)
        return images
    raise ValueError(f"data kind must be 'texture' or 'objects', got {kind!r}")


def _warn_enlarged(path: str | Path, sides: list[int], size: int, *,
                   names: list[str] | None = None, smallest_side: int = 1) -> None:
    """Warn where some of the training images ``path`` holds, of centre-square ``sides``, are
    enlarged more than twice to ``size``: as for a texture, a folder of thumbnails (or MNIST's
    28x28 digits) at data.size 64 was learned as the blur of its enlargements without a word.
    ``names``: the images' file names (a folder's), to name the smallest; ``smallest_side``: as
    :func:`load_training_images` takes it."""
    enlarged = [side for side in sides if size > 2 * side]
    if not enlarged:
        return
    smallest = min(enlarged)
    which = (f"the smallest, {names[sides.index(smallest)]}, is" if names is not None
             else "each is")
    warnings.warn(f"{len(enlarged)} of the {len(sides)} images in {path} "
                  f"{'is' if len(enlarged) == 1 else 'are'} enlarged more than twice to "
                  f"data.size {size} ({which} {smallest}x{smallest} (its centre square), "
                  f"enlarged {size / smallest:.1f}x): the model learns the enlargements' blur; "
                  + nearer_size_advice(
                      smallest, size, smallest_side,
                      as_is=f"a data.size nearer {smallest} learns them as they are")
                  + _leave_out_advice(len(enlarged), len(sides), names is not None),
                  stacklevel=3)


def _leave_out_advice(n_enlarged: int, n_images: int, folder: bool) -> str:
    """The end of :func:`_warn_enlarged`'s warning where only some of a folder's images are
    enlarged: a thumbnail among photos was answered with the thumbnail's side as data.size,
    which would shrink every photo to it."""
    if not folder or n_enlarged == n_images:
        return ""
    rest = n_images - n_enlarged
    return (f"; or move {'it' if n_enlarged == 1 else 'those'} out of the folder: the other "
            f"{rest} image{'' if rest == 1 else 's'} {'is' if rest == 1 else 'are'} not "
            "enlarged so")


def load_npz_images(path: str | Path, *, key: str = "x_train", size: int, channels: int,
                    max_images: int | None = None) -> Tensor:
    """The images of array ``key`` of an ``.npz`` file as float32 ``(N, channels, size, size)``
    in ``[-1, 1]``.

    The array is ``(N, H, W)`` (grey) or ``(N, H, W, C)`` with ``C`` 1 or 3, or 2 or 4 with
    alpha (composited over white), uint8 0-255 (the Keras layout of MNIST, Fashion-MNIST and
    CIFAR). Grey becomes RGB by repetition, RGB grey by its luma as image files do
    (:func:`~stgconv.io.image.luma`); as image files are, every image is centre-cropped to a
    square and resized (bilinear, antialiased) to ``size``. With ``max_images``, a fixed random
    subset (seed 0, kept in file order): such files are often ordered by class or by writer,
    so their first ``N`` would not be a fair sample.

    Raises:
        ValueError: not a readable ``.npz``, no array ``key`` (the message lists those there),
            an array of another shape or type, one colour image without its batch axis
            ((H, W, 3) or (H, W, 4)), levels 0 and 1 only (binarized images),
            ``size`` or ``max_images`` not an int >= 1, or ``channels`` not 1 or 3.
    """
    size = as_int(size, "size", minimum=1)  # else torch's interpolate, after the read
    check_channels(channels)  # else grey repeated into 2 channels, or none
    with open_npz(path) as archive:
        if key not in archive.files:
            # numpy.savez(path, images) names the array arr_0, and the list alone did not say
            # how to name it.
            raise ValueError(f"{path}: no array {key!r} (it has "
                             f"{', '.join(archive.files) or 'no arrays'})"
                             + (f": numpy.savez(path, {key}=images) saves the images under that "
                                "name" if "arr_0" in archive.files else ""))
        images = npz_array(archive, key, path)
    if images.dtype != np.uint8 or not (
            images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 2, 3, 4))):
        raise ValueError(f"{path}: {key} must be uint8 (N, H, W) or (N, H, W, C) with C 1 to 4, "
                         f"got {images.dtype} {images.shape}" + _layout_advice(images))
    if len(images) == 0:
        raise ValueError(f"{path}: {key} holds no images")
    if images.ndim == 3 and images.shape[2] in (3, 4) and min(images.shape[:2]) >= 12:
        # One colour picture saved without its batch axis was read as its rows: H grey images
        # 3 or 4 pixels wide, trained on with only the enlargement warning to say so. (Grey
        # images that narrow, 12 or more of them at least 12 rows high, are no data set.)
        height, width, channels_saved = images.shape
        raise ValueError(f"{path}: {key} {images.shape} reads as {height} grey images of "
                         f"{width}x{channels_saved} pixels; one colour image (H, W, C)? save it "
                         f"with a batch axis, numpy.savez(path, {key}=image[None])")
    if 0 in images.shape[1:3]:
        raise ValueError(f"{path}: {key}'s images have no pixels: (N, H, W) = "
                         f"{images.shape[:3]}")
    if images.max() == 1:
        # Binarized images saved as 0/1 (binarized MNIST) were read as grey levels 0 and 1 of
        # 255: every image black, and trained on without a word.
        raise ValueError(f"{path}: {key} holds only the levels 0 and 1, which of 0-255 are "
                         "black; save binarized images as 0 and 255 (multiply them by 255)")
    rows = npz_subset(len(images), max_images)
    # float32 as documented, not torch's default dtype (which a caller may have made float64).
    x = torch.empty(len(rows), channels, size, size, dtype=torch.float32)
    # A chunk at a time: converted whole, the images passed through several full-size copies
    # (RGB as uint32 for their luma, floats before and after scaling), 6x the result's memory
    # for 100,000 32x32 RGB images made 28x28 grey (1.9 GB).
    for start in range(0, len(rows), NPZ_CHUNK):
        chunk = rows[start:start + NPZ_CHUNK]
        x[start:start + len(chunk)] = _as_pixels(images[chunk], size, channels)
    return x


def _layout_advice(images: np.ndarray) -> str:
    """How to save ``images``, which :func:`load_npz_images` refuses, as it reads them, where
    the fault is a common one: pixels as floats (``[0, 1]``, as torchvision and scikit-image
    make them), 16-bit or other integers, and PyTorch's channels-first layout; else ``""``."""
    advice = []
    if images.dtype != np.uint8:
        advice.append("save levels 0-255 as uint8" + (
            " (floats in [0, 1]: (images * 255).round().astype(numpy.uint8))"
            if images.dtype.kind == "f" else
            " (16-bit levels: (images / 257).round().astype(numpy.uint8))"
            if images.dtype == np.uint16 else ""))
    if images.ndim == 4 and images.shape[1] in (1, 2, 3, 4) and images.shape[-1] > 4:
        advice.append("channels first (PyTorch's (N, C, H, W))? numpy.moveaxis(images, 1, -1) "
                      "puts them last")
    return "".join(f"; {line}" for line in advice)


def _as_pixels(images: np.ndarray, size: int, channels: int) -> Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` images as :func:`load_npz_images` returns
    them: ``(N, channels, size, size)`` in ``[-1, 1]``."""
    if images.ndim == 4 and images.shape[-1] in (2, 4):
        images = _over_white(images)
    if images.ndim == 4 and images.shape[-1] == 3 and channels == 1:
        images = luma(images)
    height, width = images.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    images = images[:, top:top + side, left:left + side]
    x = from_levels(torch.from_numpy(images).float())
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    if x.shape[2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).clamp(-1.0, 1.0)
    return x


def _over_white(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` with alpha last (grey + alpha, RGBA) composited over white, as
    image files with transparency are read (:func:`stgconv.io.image.read_image`): the colour
    of a transparent pixel means nothing."""
    alpha = images[..., -1:].astype(np.float64) / 255.0
    return np.round(images[..., :-1] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def npz_subset(n: int, max_images: int | None) -> np.ndarray:
    """Indices ``(min(n, max_images),)`` (int64, ascending) of the ``max_images`` of ``n``
    examples that :func:`load_npz_images` keeps: a fixed random subset (seed 0) in file order;
    all ``n`` of them without ``max_images`` (an int >= 1: a slice to -1 dropped the last
    example silently)."""
    if max_images is not None:
        max_images = as_int(max_images, "max_images", minimum=1)
    if max_images is None or max_images >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:max_images])


def load_npz_labels(path: str | Path, *, key: str = "y_train", images: str = "x_train",
                    max_images: int | None = None) -> Tensor:
    """The class numbers ``(N,)`` (int64) of array ``key`` of an ``.npz`` file for the images of
    array ``images``: the same subset that :func:`load_npz_images` keeps with ``max_images``.
    The array is ``(N,)`` or ``(N, 1)`` (Keras keeps CIFAR's labels so).

    Raises:
        ValueError: no array ``key`` (the message lists those there), not whole numbers
            (integers, or floats such as 3.0), not one label per image, or negative.
    """
    with open_npz(path) as archive:
        if key not in archive.files:
            raise ValueError(f"{path}: no labels {key!r} (it has {', '.join(archive.files)})")
        labels = npz_array(archive, key, path)
        n_images = npz_length(archive, images, path) if images in archive.files else None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{path}: {key} must be labels (N,) or (N, 1), got {labels.shape}")
    labels = class_numbers(labels, f"{path}: {key}")
    if len(labels) != n_images:
        # images= named where the two arrays' splits differ, since key="y_test" alone still
        # counted x_train's images and the message gave no way out; of one split the file is
        # at fault, and the argument meant nothing to a command's user.
        other_split = key.partition("_")[2] != images.partition("_")[2]
        raise ValueError(f"{path}: {key} holds {len(labels)} labels for "
                         f"{n_images or 'no'} {images} images, where one per image is needed"
                         + ("; images= names the array they label (e.g. images='x_test' with "
                            "key='y_test')" if other_split else ""))
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{path}: {key} has negative labels ({labels.min()})")
    return torch.from_numpy(labels[npz_subset(len(labels), max_images)])
