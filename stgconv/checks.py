"""Argument checks shared by the readers, datasets and tasks: the error names the argument and
repeats its bad value."""

from __future__ import annotations

import operator


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
