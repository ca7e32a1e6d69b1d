"""Which entries of a video are observed: the ``known`` masks of recovery experiments.

Convention: a bool tensor ``known`` of shape ``(T, H, W)`` or ``(C, T, H, W)``, ``True`` = observed.
It broadcasts against a video ``(C, T, H, W)`` or a batch ``(B, C, T, H, W)``. Files that store
the opposite convention are converted at their loader (:func:`load_mask`).

What the shared masks (``../shared/data/video/masks``, from the STGConvNet recovery experiments)
contain, measured on all ten files (flag, ocean, playing, sea_world, windmill x 2 types):

- uint8 ``(H, W, T, C) = (150, 150, 70, 3)``, values {0, 1}, 1 = missing; the three channels are
  identical in every file (a pixel is missing in all channels or in none).
- ``*_missing_frame_type.mat``: exactly 35 of the 70 frames (50%) missing entirely, every other
  frame fully observed; a different random set per clip. The end frames are NOT protected:
  sea_world misses frame 0, flag/ocean/playing/sea_world miss frame 69.
  :func:`missing_frames` mirrors this (``keep_ends=False`` by default).
- ``*_region_type.mat``: one 60x60 block missing in every frame (3600 / 22500 = 16% of each
  frame). The block jumps: its top-left corner is drawn independently in each frame over the
  whole frame (corners span 0..90 = 150 - 60 in both axes; consecutive frames move it by up to
  ~80 px), not a smooth motion and not a fixed block. So most occluded pixels are observed in
  neighbouring frames. :func:`occluded_region` mirrors this (``moving=True`` by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from stgconv.checks import (
    as_int,
    as_size,
    check_bool_mask,
    check_generator,
    check_not_meta,
    is_real_scalar,
    read_npy,
)
from stgconv.io.image import IMAGE_SUFFIXES, read_image, to_channels
from stgconv.io.matlab import read_mat
from stgconv.io.video import is_animated


def load_mask(path: str | Path, *, frames: int | None = None,
              size: int | tuple[int, int] | None = None) -> Tensor:
    """Read a mask file with 1 = MISSING: a ``.npy`` array ``(T, H, W)`` or ``(C, T, H, W)``
    (the video layout), one frame's mask that holds in every frame (a fixed occluder: a logo, a
    scratch) as an image file or a 2-D ``.npy`` ``(H, W)``, or anything else as a MATLAB
    ``.mat`` file (:func:`load_mask_mat`).

    An image is read as images are (:func:`~stgconv.io.image.read_image`: upright), any
    transparency over black (a mask drawn as a layer: what is left unpainted is observed), made
    grey, and white (grey level >= 128) is missing, black observed, as inpainting tools read
    masks. Given ``size`` ``(H, W)``, an image of another size is fitted to frames resized to
    it, as a clip's frames are (the aspect not kept): a pixel there is missing wherever that
    resize (bilinear, antialiased) blends any missing pixel of the image into it.

    Args:
        frames: ``T``, how many frames a one-frame mask (an image, a 2-D array) is repeated
            over; needed for those.
        size: the clip's ``(H, W)`` (one int: square, as a clip's ``size`` is), to which an
            image mask is fitted and which a 2-D array must have.

    Returns:
        bool ``(C, T, H, W)``, ``True`` = observed; a 3-D array gives ``(1, T, H, W)``, a
        one-frame mask ``(1, frames, H, W)``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a folder, an unreadable file, an ``.npz`` archive, one of another layout,
            values other than 0 and 1 (an array's), an image of the grey levels 0 and 1 only
            (a 0/1 array saved as an image), a 2-D array not of ``size``, or a one-frame mask
            without ``frames``.
    """
    path = Path(path)
    # One int, as load_video and the CLI's --size take it, failed as "'int' object is not
    # iterable"; (0, 0) in PIL's words, naming no argument.
    size = as_size(size) if size is not None else None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        # Read as MATLAB's, it was "cannot read MATLAB file m.npz: Unknown mat file type".
        raise ValueError(f"{_check_file(path)}: a .npz file is no mask file; masks are .mat "
                         "(H, W, T[, C]), .npy (T, H, W) / (C, T, H, W) or (H, W) arrays, 1 = "
                         "missing (np.save one), or images, white = missing")
    if suffix in IMAGE_SUFFIXES:
        frame = _image_mask(_check_file(path), size)
    elif suffix != ".npy":
        return load_mask_mat(path)
    else:
        _check_file(path)
        try:
            missing = read_npy(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read mask file {path}: not a numeric .npy array ({err})"
                             ) from err
        if missing.ndim in (3, 4):
            return torch.from_numpy(_observed(missing[None] if missing.ndim == 3 else missing,
                                              str(path)))
        if missing.ndim != 2:
            raise ValueError(f"{path} has shape {missing.shape}; expected (H, W) (one mask for "
                             "every frame), (T, H, W) or (C, T, H, W)")
        frame = _observed(missing, str(path))
        if size is not None and frame.shape != tuple(size):
            # Else named by the (1, T, H, W) it was repeated to, as if the file lacked frames.
            raise ValueError(f"{path} is one frame's mask (H, W) = {frame.shape}, the clip's "
                             f"frames are {tuple(size)}: a 2-D .npy mask must have their size "
                             "(an image mask is fitted to it)")
    if frames is None:
        raise ValueError(f"{path} is one frame's mask, which holds in every frame: give the "
                         "number of frames to repeat it over (frames=)")
    as_int(frames, "frames", minimum=1)
    return torch.from_numpy(frame).expand(1, frames, *frame.shape).contiguous()


def _image_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """``True`` = observed ``(H, W)`` of the image mask ``path`` (:func:`load_mask`)."""
    try:
        # Transparency over black: what a mask drawn as a layer leaves unpainted is observed.
        image = read_image(path, what="mask image", background=0)
    except ValueError as err:
        if is_animated(path):  # "save the one wanted" made one frame a fixed occluder
            raise ValueError(f"mask image {path} is an animation (several frames): an image "
                             "mask is one frame's, held in every frame; a mask per frame is a "
                             ".npy array (T, H, W), 1 = missing") from err
        raise
    levels = np.asarray(to_channels(image, 1))
    # 16-bit levels 0 and 1 are both 0 once made 8-bit (1 * 255 / 65535 rounds to 0). Opened
    # from a file object, as read_image opens it, so that Pillow maps no pixels.
    with open(path, "rb") as handle, Image.open(handle) as stored:
        deep = stored.mode.startswith("I") and stored.getextrema() == (0, 1)
    if levels.max() == 1 or deep:
        # A 0/1 array saved as an image (1 = missing, as in a .npy mask) is all black: read as
        # observed everywhere, refused only as "the mask hides nothing", naming no cause.
        white = 65535 if deep else 255
        raise ValueError(f"mask image {path} holds only the grey levels 0 and 1, both black "
                         f"(observed): draw the missing pixels white ({white}; multiply a 0/1 "
                         f"array by {white} before saving it as an image)")
    # Float: in 8 bits a small share of a missing pixel rounds to 0, observed.
    missing = Image.fromarray((levels >= 128).astype(np.float32))
    if size is not None and (missing.height, missing.width) != tuple(size):
        # The filter load_video resizes the clip's frames with, so > 0 wherever the occluder's
        # colour enters a frame's pixel. BOX (the image pixels whose centres fall in it) left a
        # ring of blended occluder observed, kept in the recovery as a faint outline.
        missing = missing.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(missing) == 0


def _check_file(path: Path) -> Path:
    """``path``, or the error that says why it is no mask file to read."""
    if path.is_dir():  # "not found" sent the user looking for what is there
        raise ValueError(f"{path} is a folder, not a mask file (.mat, .npy or an image)")
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    return path


def load_mask_mat(path: str | Path, *, key: str | None = None) -> Tensor:
    """Read a MATLAB mask stored as uint8 ``(H, W, T, C)`` with 1 = MISSING; return ``known``.

    Args:
        path: a ``.mat`` file, any version (:func:`stgconv.io.matlab.read_mat`).
        key: the variable holding the mask; by default ``masks``, or where the file has none
            of that name its one 3-D or 4-D array (a mask saved under another name).

    Returns:
        bool ``(C, T, H, W)``, ``True`` = observed (``known = (mask == 0)``, transposed). A 3-D
        ``(H, W, T)`` variable gives ``(1, T, H, W)``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a folder, an unreadable file, no ``key`` and not one 3-D/4-D array
            instead (the message lists the variables), a variable that is not 3-D/4-D, or
            values other than 0 and 1.
    """
    path = _check_file(Path(path))
    try:
        contents = read_mat(path)
    except ValueError as err:
        raise ValueError(f"{err}; masks are .mat (H, W, T[, C]) or .npy (T, H, W) / "
                         f"(C, T, H, W) arrays, 1 = missing") from err
    names = list(contents)
    arrays = [name for name in names if np.ndim(contents[name]) in (3, 4)]
    if key is None:
        key = "masks" if "masks" in contents or len(arrays) != 1 else arrays[0]
    if key not in contents:
        raise ValueError(f"{path} has no variable {key!r}; it holds: {', '.join(names) or 'none'}"
                         + (" (and more than one 3-D/4-D array to read instead)"
                            if len(arrays) > 1 else ""))
    missing = np.asarray(contents[key])
    if missing.ndim == 3:
        missing = missing[..., None]
    if missing.ndim != 4:
        raise ValueError(
            f"{path}[{key!r}] has shape {missing.shape}; expected (H, W, T, C) or (H, W, T)"
        )
    # (H, W, T, C) -> (C, T, H, W).
    return torch.from_numpy(_observed(missing.transpose(3, 2, 0, 1), f"{path}[{key!r}]"))


def _observed(missing: np.ndarray, name: str) -> np.ndarray:
    """``missing`` (0/1 numbers or bools, 1 = missing) as bool ``True`` = observed."""
    if not (np.issubdtype(missing.dtype, np.number) or missing.dtype == bool):
        raise ValueError(f"{name} has dtype {missing.dtype}; expected 0/1 numbers")
    values = np.unique(missing)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(str(v) for v in values[:10])
        # A mask saved from an 8-bit picture holds 0 and 255: the fix is one division.
        levels = (" (an 8-bit picture's 0 and 255: save mask / 255)"
                  if np.isin(values, (0, 255)).all() else "")
        raise ValueError(f"{name} must hold only 0 (observed) and 1 (missing); "
                         f"found values {shown}{levels}")
    return np.ascontiguousarray(missing == 0)


def _check_dims(T: int, H: int, W: int) -> None:
    for name, value in (("T", T), ("H", H), ("W", W)):
        as_int(value, name, minimum=1)


def _check_fraction(fraction: float) -> float:
    """``fraction`` as a float, or ``ValueError`` unless it is a real number in ``[0, 1]``: a
    0-d tensor passed the check and failed in ``round()``."""
    if not (is_real_scalar(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return float(fraction)


def missing_frames(
    T: int, H: int, W: int, *, fraction: float, keep_ends: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hide ``round(fraction * T)`` whole frames, chosen uniformly at random.

    Args:
        fraction: share of frames missing, in ``[0, 1]``. The shared masks use 0.5 of 70 frames.
        keep_ends: keep the first and last frame observed (so temporal interpolation never has
            to extrapolate). Off by default, as in the shared masks, which do hide end frames.
        generator: a CPU ``torch.Generator`` for reproducible masks.

    Returns:
        ``known`` bool ``(T, H, W)``, ``True`` = observed; each frame is all True or all False.
    """
    _check_dims(T, H, W)
    fraction = _check_fraction(fraction)
    check_generator(generator, "missing_frames")
    n_missing = round(fraction * T)
    candidates = torch.arange(1, T - 1) if keep_ends else torch.arange(T)
    if n_missing > len(candidates):
        raise ValueError(
            f"cannot hide {n_missing} of T={T} frames (fraction={fraction}) with keep_ends=True; "
            f"at most {len(candidates)} frames can be missing"
        )
    order = torch.randperm(len(candidates), generator=generator)
    known_frames = torch.ones(T, dtype=torch.bool)
    known_frames[candidates[order[:n_missing]]] = False
    return known_frames[:, None, None].expand(T, H, W).clone()


def occluded_region(
    T: int, H: int, W: int, *, size: int | tuple[int, int], moving: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hide one ``size`` block per frame, placed uniformly at random inside the frame.

    Args:
        size: block ``(h, w)``, or one int for a square block (the shared masks: 60 of 150).
        moving: draw the block's position independently in every frame, as the shared region
            masks do; ``False`` keeps one random position for all frames.
        generator: a CPU ``torch.Generator`` for reproducible masks.

    Returns:
        ``known`` bool ``(T, H, W)``, ``True`` = observed; exactly ``h * w`` pixels of each frame
        are False.
    """
    _check_dims(T, H, W)
    bh, bw = as_size(size)
    if bh > H or bw > W:
        raise ValueError(f"block {bh}x{bw} does not fit in a {H}x{W} frame")
    check_generator(generator, "occluded_region")
    n_positions = T if moving else 1
    # Corners uniform over every position that keeps the block inside the frame.
    tops = torch.randint(0, H - bh + 1, (n_positions,), generator=generator)
    lefts = torch.randint(0, W - bw + 1, (n_positions,), generator=generator)
    if not moving:
        tops, lefts = tops.expand(T), lefts.expand(T)
    rows = torch.arange(H)[None, :, None]
    cols = torch.arange(W)[None, None, :]
    in_rows = (rows >= tops[:, None, None]) & (rows < tops[:, None, None] + bh)
    in_cols = (cols >= lefts[:, None, None]) & (cols < lefts[:, None, None] + bw)
    return ~(in_rows & in_cols)


def salt_and_pepper(
    T: int, H: int, W: int, *, fraction: float, block: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hide random pixels (``block=1``) or random ``block x block`` tiles, independently per frame.

    Each frame is cut into a grid of ``ceil(H / block) x ceil(W / block)`` tiles (edge tiles are
    cropped) and exactly ``round(fraction * n_tiles)`` of them are hidden, so the missing share is
    exact when ``block`` divides ``H`` and ``W``.

    Args:
        fraction: share of tiles missing in each frame, in ``[0, 1]``.
        block: tile side in pixels.
        generator: a CPU ``torch.Generator`` for reproducible masks.

    Returns:
        ``known`` bool ``(T, H, W)``, ``True`` = observed.
    """
    _check_dims(T, H, W)
    fraction = _check_fraction(fraction)
    block = as_int(block, "block", minimum=1)
    check_generator(generator, "salt_and_pepper")
    gh, gw = -(-H // block), -(-W // block)
    n_missing = round(fraction * gh * gw)
    # Ranking i.i.d. uniforms picks exactly n_missing tiles per frame, uniformly at random.
    ranks = torch.rand(T, gh * gw, generator=generator).argsort(dim=1).argsort(dim=1)
    known_tiles = (ranks >= n_missing).reshape(T, gh, gw)
    known = known_tiles.repeat_interleave(block, dim=1).repeat_interleave(block, dim=2)
    return known[:, :H, :W].contiguous()


def check_mask_matches(known: Tensor, video: Tensor) -> None:
    """Raise ``ValueError`` unless ``known`` is a bool mask that broadcasts to ``video``'s shape,
    with values (not on the meta device: the callers read it).

    Args:
        known: bool ``(T, H, W)`` or ``(C, T, H, W)`` (any shape that broadcasts), True = observed.
        video: ``(C, T, H, W)`` or ``(B, C, T, H, W)``.
    """
    check_bool_mask(known, "known")
    check_not_meta(known, "known")
    try:
        shape = torch.broadcast_shapes(known.shape, video.shape)
    except RuntimeError:
        shape = None
    if shape != video.shape:
        raise ValueError(
            f"mask known {tuple(known.shape)} does not match video {tuple(video.shape)}; "
            f"expected (T, H, W) or (C, T, H, W) matching the video's last dimensions"
        )
