"""Argument checks shared by the readers, datasets, baselines, scores and tasks: the error names the argument and
repeats its bad value."""

from __future__ import annotations

import operator

from torch import Tensor


def as_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as a Python int, or ``ValueError`` unless it is an int ``>= minimum``.

    Ints and numpy integers pass (anything with ``__index__``); floats and bools do not, so a
    ``True`` or a ``2.0`` never stands in for a count.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def check_voxels(x: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is a voxel batch ``(B, 1, D, H, W)``."""
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be voxels (B, 1, D, H, W), got {shape}")


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """A frame size ``(H, W)`` from one positive int (square) or a pair of them."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        pair = tuple(as_int(s, "size", minimum=1) for s in pair)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"size must be a positive int or a pair (H, W) of them, got {size!r}")
    return pair
