"""Pure down/up-sampling over the trailing dimensions of a tensor.

One pair of operators serves images ``(B, C, H, W)`` with ``factor=(f, f)``, voxels
``(B, 1, D, H, W)`` with ``factor=(f, f, f)`` and videos ``(B, C, T, H, W)`` with
``factor=(1, f, f)`` (space only) or ``(ft, f, f)`` (space-time). ``factor`` covers the last
``len(factor)`` dimensions; earlier dimensions are untouched.

``block_down`` averages non-overlapping blocks and ``nearest_up`` repeats each entry over a block,
so ``nearest_up(block_down(x))`` is the orthogonal projection onto block-constant tensors: applying
it twice changes nothing and it keeps every block's mean. Super-resolution consistency and
multi-grid sampling rely on exactly these two properties.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor


def _check_factor(x: Tensor, factor: Sequence[int]) -> tuple[int, ...]:
    factor = tuple(int(f) for f in factor)
    if not factor or any(f < 1 for f in factor):
        raise ValueError(f"factor must be a non-empty sequence of positive ints, got {factor}")
    if x.dim() < len(factor) + 1:
        raise ValueError(
            f"factor {factor} covers {len(factor)} trailing dims, but x has shape {tuple(x.shape)}"
        )
    return factor


def block_down(x: Tensor, factor: Sequence[int]) -> Tensor:
    """Average non-overlapping blocks over the trailing ``len(factor)`` dimensions.

    Args:
        x: ``(*lead, N1, ..., Nk)`` with every ``Ni`` divisible by ``factor[i]``.
        factor: ``(f1, ..., fk)`` block size per trailing dimension.

    Returns:
        ``(*lead, N1 // f1, ..., Nk // fk)``.
    """
    factor = _check_factor(x, factor)
    k = len(factor)
    lead, sizes = x.shape[:-k], x.shape[-k:]
    if any(n % f for n, f in zip(sizes, factor)):
        raise ValueError(
            f"trailing shape {tuple(sizes)} is not divisible by block factor {factor}"
        )
    split: list[int] = []
    for n, f in zip(sizes, factor):
        split += [n // f, f]
    blocks = x.reshape(*lead, *split)
    block_dims = tuple(range(len(lead) + 1, len(lead) + 2 * k, 2))
    return blocks.mean(dim=block_dims)


def nearest_up(x: Tensor, factor: Sequence[int]) -> Tensor:
    """Repeat every entry over a block of size ``factor`` in the trailing dimensions.

    Args:
        x: ``(*lead, n1, ..., nk)``.
        factor: ``(f1, ..., fk)``.

    Returns:
        ``(*lead, n1 * f1, ..., nk * fk)``.
    """
    factor = _check_factor(x, factor)
    k = len(factor)
    lead, sizes = x.shape[:-k], x.shape[-k:]
    # Insert a singleton after every trailing dim and expand it: a view, then one copy.
    view_shape: list[int] = []
    expand_shape: list[int] = []
    for n, f in zip(sizes, factor):
        view_shape += [n, 1]
        expand_shape += [n, f]
    out = x.reshape(*lead, *view_shape).expand(*lead, *expand_shape)
    return out.reshape(*lead, *(n * f for n, f in zip(sizes, factor)))


def factor_between(fine: Sequence[int], coarse: Sequence[int]) -> tuple[int, ...]:
    """The block factor that takes trailing sizes ``fine`` down to ``coarse``.

    Args:
        fine: ``(N1, ..., Nk)``.
        coarse: ``(n1, ..., nk)`` with every ``ni`` dividing ``Ni``.

    Returns:
        ``(N1 // n1, ..., Nk // nk)``.
    """
    fine, coarse = tuple(int(n) for n in fine), tuple(int(n) for n in coarse)
    if len(fine) != len(coarse):
        raise ValueError(f"grid {coarse} does not match the dims of {fine}")
    if any(n < 1 for n in coarse):
        raise ValueError(f"grid {coarse} must have positive sizes")
    if any(big % small for big, small in zip(fine, coarse)):
        raise ValueError(f"grid {coarse} does not divide {fine}: every coarse size must divide "
                         f"the finer one")
    return tuple(big // small for big, small in zip(fine, coarse))


def pyramid(x: Tensor, sizes: Sequence[Sequence[int]]) -> list[Tensor]:
    """``x`` block-averaged down to each trailing size in ``sizes`` (coarse to fine or any order).

    Args:
        x: ``(*lead, N1, ..., Nk)``.
        sizes: trailing sizes ``(n1, ..., nk)``, each dividing ``(N1, ..., Nk)``.

    Returns:
        one tensor ``(*lead, n1, ..., nk)`` per entry of ``sizes``.
    """
    levels = []
    for size in sizes:
        k = len(tuple(size))
        levels.append(block_down(x, factor_between(x.shape[-k:], size)))
    return levels
