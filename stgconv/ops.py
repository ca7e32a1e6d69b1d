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

import math
import operator
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stgconv.checks import as_int, check_generator, check_not_meta, check_tensor

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def check_block_factor(factor: Sequence[int]) -> tuple[int, ...]:
    """``factor`` as a tuple of ints ``>= 1``, one block size per trailing dim; else a
    ``ValueError`` naming it (a bare int included: ``(4, 4, 4)``, not ``4``, for voxels)."""
    # operator.index, not int(): a factor of 1.5 was truncated to blocks of 1 silently.
    try:
        checked = tuple(operator.index(f) for f in factor)
    except TypeError:
        checked = ()
    if not checked or any(f < 1 for f in checked):
        raise ValueError(f"factor must be a non-empty sequence of positive ints, one per "
                         f"trailing dim (e.g. (4, 4, 4) for voxels), got {factor!r}")
    return checked


def _check_factor(x: Tensor, factor: Sequence[int]) -> tuple[int, ...]:
    check_tensor(x, "x")  # a numpy array failed on "'numpy.ndarray' object has no attribute 'dim'"
    factor = check_block_factor(factor)
    if x.dim() < len(factor) + 1:
        raise ValueError(
            f"factor {factor} covers {len(factor)} trailing dims, but x has shape {tuple(x.shape)}"
        )
    return factor


def _check_float(x: Tensor, op: str) -> None:
    """``ValueError`` unless ``x`` is a float tensor: ``op`` averages or interpolates, which
    torch refuses (or rounds) for integer and bool tensors deep inside."""
    if not x.is_floating_point():
        raise ValueError(f"{op} averages, so x must be a float tensor, got {x.dtype} "
                         f"(convert it first, e.g. x.float())")


def _check_divisible(sizes: Sequence[int], factor: tuple[int, ...]) -> None:
    """``ValueError`` unless every trailing size ``sizes`` ``(N1, ..., Nk)`` is divisible by
    its block ``factor``: the blocks would not tile it."""
    if any(n % f for n, f in zip(sizes, factor)):
        raise ValueError(
            f"trailing shape {tuple(sizes)} is not divisible by block factor {factor}"
        )


def block_down(x: Tensor, factor: Sequence[int]) -> Tensor:
    """Average non-overlapping blocks over the trailing ``len(factor)`` dimensions.

    Args:
        x: float ``(*lead, N1, ..., Nk)`` with every ``Ni`` divisible by ``factor[i]``.
        factor: ``(f1, ..., fk)`` block size per trailing dimension, positive ints.

    Returns:
        ``(*lead, N1 // f1, ..., Nk // fk)``.
    """
    factor = _check_factor(x, factor)
    _check_float(x, "block_down")
    k = len(factor)
    lead, sizes = x.shape[:-k], x.shape[-k:]
    _check_divisible(sizes, factor)
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


def linear_up(x: Tensor, factor: Sequence[int]) -> Tensor:
    """Multilinear interpolation between entry centres (``align_corners=False``) up by
    ``factor`` in the 1 to 3 trailing dimensions; the borders repeat the edge entries.

    Unlike :func:`nearest_up` it does not keep block means; project it with
    ``y - nearest_up(block_down(y) - x)`` where a constraint needs them.

    Args:
        x: float ``(*lead, n1, ..., nk)``, ``k <= 3``.
        factor: ``(f1, ..., fk)``.

    Returns:
        ``(*lead, n1 * f1, ..., nk * fk)``.
    """
    factor = _check_factor(x, factor)
    _check_float(x, "linear_up")
    k = len(factor)
    if k not in _LINEAR_MODES:
        raise ValueError(f"linear_up covers 1 to 3 trailing dims, got factor {factor}")
    lead, sizes = x.shape[:-k], x.shape[-k:]
    if 0 in sizes:  # torch interpolates no side of size 0: nothing to interpolate, as nearest_up
        return x.new_empty((*lead, *(n * f for n, f in zip(sizes, factor))))
    up = F.interpolate(x.reshape(-1, 1, *sizes), scale_factor=factor, mode=_LINEAR_MODES[k],
                       align_corners=False)
    return up.reshape(*lead, *up.shape[2:])


def block_top_k(x: Tensor, low: Tensor, factor: Sequence[int]) -> Tensor:
    """The binary tensor with block means ``low`` closest to ``x``: in every block the
    ``round(low * block size)`` entries largest in ``x`` become 1, the others 0 (ties broken by
    position, first wins).

    Where ``low`` holds block means of a binary tensor, ``block_down(result) == low`` exactly;
    other means are rounded to the nearest count.

    Args:
        x: ``(*lead, N1, ..., Nk)``: scores, higher = more likely occupied.
        low: ``(*lead, N1 // f1, ..., Nk // fk)`` in ``[0, 1]``.
        factor: ``(f1, ..., fk)``.

    Returns:
        ``x``'s shape and dtype, entries in {0, 1}.

    Raises:
        ValueError: trailing sizes of ``x`` not divisible by ``factor``, ``low`` not of that
            shape, or not in ``[0, 1]`` (NaN included); NaN in ``x`` (infinite scores rank as
            such); either on the meta device.
    """
    factor = _check_factor(x, factor)
    check_tensor(low, "low")  # a numpy array failed on "has no attribute 'isnan'"
    # Else "Tensor.item() cannot be called on meta tensors", naming neither.
    check_not_meta(x, "x")
    check_not_meta(low, "low")
    k = len(factor)
    lead, sizes = x.shape[:-k], x.shape[-k:]
    # Else sizes of 5 in blocks of 2 passed the shape check of low (5 // 2 = 2 blocks) and
    # failed in a reshape inside torch ("shape '[1, 1, 2, 2, 2, 2]' is invalid for input of
    # size 20").
    _check_divisible(sizes, factor)
    coarse = tuple(n // f for n, f in zip(sizes, factor))
    if tuple(low.shape) != (*lead, *coarse):
        raise ValueError(f"low {tuple(low.shape)} is not x {tuple(x.shape)} block-reduced by "
                         f"{factor} (expected {(*lead, *coarse)})")
    # A NaN mean became a count of no entry and a mean past [0, 1] was clamped, and a NaN score
    # ranked first: a binary result whose block means were not low, or that hid a diverged
    # chain, without a word (trilinear_binary_upsample of a NaN low came back empty).
    if low.isnan().any():
        raise ValueError(f"low has {int(low.isnan().sum())} NaN values; expected block means "
                         "in [0, 1]")
    if ((low < 0) | (low > 1)).any():
        raise ValueError(f"low must be block means in [0, 1], got values in "
                         f"[{low.min().item():.4g}, {low.max().item():.4g}]")
    if x.isnan().any():
        raise ValueError(f"x has {int(x.isnan().sum())} NaN scores: no block can be ranked "
                         "with them")
    split: list[int] = []
    for n, f in zip(sizes, factor):
        split += [n // f, f]
    n_lead = len(lead)
    # Gather each block's entries into one last dim: (*lead, n1, ..., nk, f1 * ... * fk).
    to_blocks = (*range(n_lead), *(n_lead + 2 * i for i in range(k)),
                 *(n_lead + 2 * i + 1 for i in range(k)))
    # The block size spelt out: a -1 cannot be inferred from a tensor with no entries.
    block_size = math.prod(factor)
    blocks = x.reshape(*lead, *split).permute(to_blocks).reshape(*lead, *coarse, block_size)
    order = blocks.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(block_size, device=x.device).expand_as(order))
    counts = (low * block_size).round().to(rank.dtype)
    chosen = (rank < counts.unsqueeze(-1)).to(x.dtype)
    back = [0] * len(to_blocks)
    for position, dim in enumerate(to_blocks):
        back[dim] = position
    chosen = chosen.reshape(*lead, *coarse, *factor).permute(back)
    return chosen.reshape(x.shape)


BLOCK_UPSAMPLERS = {"nearest": nearest_up, "linear": linear_up}
"""Name -> ``up(x (*lead, n1, ..., nk), factor) -> (*lead, n1 * f1, ..., nk * fk)``."""


def block_upsampler(name: str) -> Callable[[Tensor, Sequence[int]], Tensor]:
    """The up-sampling :data:`BLOCK_UPSAMPLERS` names ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in BLOCK_UPSAMPLERS:
        raise ValueError(f"upsample must be one of {sorted(BLOCK_UPSAMPLERS)}, got {name!r}")
    return BLOCK_UPSAMPLERS[name]


def factor_between(fine: Sequence[int], coarse: Sequence[int]) -> tuple[int, ...]:
    """The block factor that takes trailing sizes ``fine`` down to ``coarse``.

    Args:
        fine: ``(N1, ..., Nk)``.
        coarse: ``(n1, ..., nk)`` with every ``ni`` dividing ``Ni``.

    Returns:
        ``(N1 // n1, ..., Nk // nk)``.
    """
    try:  # operator.index, not int(): a size of 2.5 was truncated to 2 silently
        fine, coarse = tuple(map(operator.index, fine)), tuple(map(operator.index, coarse))
    except TypeError:
        raise ValueError(f"grid sizes must be ints, got {tuple(fine)} and {tuple(coarse)}"
                         ) from None
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


def random_shift(x: Tensor, max_shift: int, *, generator: torch.Generator | None = None
                 ) -> Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` (any dtype, bool masks too) moved by its own
    whole-pixel offset, uniform in ``[-max_shift, max_shift]`` along each axis; the edge rows
    and columns fill the space it leaves (a digit's empty border stays empty). Returns
    ``(B, C, H, W)``; ``max_shift`` 0 returns ``x`` itself."""
    check_tensor(x, "x")  # an array failed on "'numpy.ndarray' object has no attribute 'dim'"
    if x.dim() != 4:
        raise ValueError(f"random_shift takes images (B, C, H, W), got {tuple(x.shape)}")
    max_shift = as_int(max_shift, "max_shift", minimum=0)  # else torch's pad
    check_generator(generator, "random_shift")
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator,
                            device=x.device) - max_shift
    # Source indices clamped to the edges: what replicate padding gives, without a padded copy,
    # and for every dtype (torch has no replicate padding of bool tensors).
    rows = (offsets[:, :1] + torch.arange(h, device=x.device)).clamp(0, h - 1)  # (B, H)
    cols = (offsets[:, 1:] + torch.arange(w, device=x.device)).clamp(0, w - 1)  # (B, W)
    kept_rows = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
    return kept_rows.gather(3, cols[:, None, None, :].expand(b, c, h, w))
