"""Conditional sampling as a projection applied after every sampler step.

A constraint never changes the update itself: the sampler proposes as usual and then calls
``project``. Every constraint here is an *affine orthogonal projection* ``x -> P x + c``, which is
what makes them idempotent and what lets MALA and HMC stay exact under them: those samplers move
only along ``P`` (the ``tangent`` map) and compute proposal densities there.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from stgconv.checks import check_bool_mask, check_not_meta, check_tensor
from stgconv.ops import block_down, nearest_up


class Constraint:
    """Base class. Subclasses implement ``project``; ``tangent`` defaults to ``P v``."""

    def project(self, x: Tensor) -> Tensor:
        """Map ``x`` ``(B, *S)`` onto the constraint set; idempotent."""
        raise NotImplementedError

    def tangent(self, v: Tensor) -> Tensor:
        """The linear part ``P v`` ``(B, *S)`` of the projection of ``v`` ``(B, *S)``: the
        directions a chain may move in.

        For an affine projection ``P x + c`` this equals ``project(v) - project(0)``.
        """
        return self.project(v) - self.project(torch.zeros_like(v))

    def held(self) -> Tensor | None:
        """Bool mask, broadcastable to the chains, of the entries ``project`` sets whatever the
        chain holds there (the known entries); ``None`` where it holds no entry as such (a
        block mean is a direction, not an entry). A gradient there never moves a chain, so
        Langevin neither steps along it nor reports it non-finite (but in a differentiable
        run, whose derivative passes through it); MALA and HMC move along the tangent, zero
        there."""
        return None

    def coarsen(self, factor: Sequence[int]) -> Constraint | None:
        """What this constraint says about ``block_down(x, factor)``: the constraint a coarser
        grid of a multi-grid chain must keep (``None``: it leaves that grid free)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be coarsened "
                                  "for multi-grid sampling")


def held_entries(constraint: object) -> Tensor | None:
    """:meth:`Constraint.held` of ``constraint``; ``None`` for a constraint of one's own that
    is no :class:`Constraint` (Langevin takes one with a ``project`` alone)."""
    return constraint.held() if isinstance(constraint, Constraint) else None


def tangent_of(constraint: object, v: Tensor) -> Tensor:
    """``constraint.tangent(v)`` for ``v`` ``(B, *S)``, or the default ``project(v) -
    project(0)`` of :meth:`Constraint.tangent` for a constraint of one's own with a
    ``project`` alone (Langevin takes one): its gradient clipping failed on "object has no
    attribute 'tangent'"."""
    tangent = getattr(constraint, "tangent", None)
    return tangent(v) if callable(tangent) else Constraint.tangent(constraint, v)


def _check_device(data: Tensor, x: Tensor, name: str, remedy: str) -> None:
    """``ValueError`` naming both devices unless the constraint's ``data`` (its argument
    ``name``) is on the chains' ``x`` ``(B, *S)`` device: a constraint on CUDA projecting CPU
    chains (or the reverse) failed in torch's words ("Expected all tensors to be on the same
    device"), naming neither the constraint nor its argument. ``remedy``: the constraint made
    again on the chains' device, ``{device}`` standing for it."""
    if data.device != x.device:
        raise ValueError(f"the chains are on {x.device} but the constraint's {name} on "
                         f"{data.device}: make the constraint on the chains' device "
                         f"({remedy.format(device=repr(str(x.device)))})")


def _check_kept(data: Tensor, x: Tensor, name: str) -> None:
    """``ValueError`` naming ``name`` unless the chains ``x`` ``(B, *S)`` hold every value of
    the constraint's ``data`` exactly in their dtype. Float64 known values under float32 chains
    were rounded to float32 without a word: the chain's known pixels then differed from the
    ones given, and the block means of a super-resolution from its ``low``. Refused rather
    than rounded (which dtype to keep is the caller's to choose, by converting the one or the
    other), but only where a value would change: float64 occupancies of 0 and 1, as numpy
    makes them, are kept exactly by float32 chains."""
    rounded = data.to(x.dtype).to(data.dtype)
    changed = rounded != data
    if bool(changed.any()):
        was, now = data[changed][0].item(), rounded[changed][0].item()
        raise ValueError(f"{name} is {data.dtype} and holds values that the chains' "
                         f"{x.dtype} would round ({was!r} to {now!r}): give {name} in the "
                         f"chains' dtype ({name}.to({x.dtype})), or run the chains in "
                         f"{data.dtype}")


# Every dtype a chain can have: those a coarsened constraint takes (_take_every_dtype).
_CHAIN_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def _take_every_dtype(coarse: KnownEntries | DownsampleConsistency) -> None:
    """Make ``coarse``, a constraint that ``coarsen`` made, take chains of every dtype: its
    data are block means of the values given, which a coarse grid's chains round as they
    round their own block means. Float64 occupancies of 0 and 1, kept exactly by float32
    chains on the finest grid, have means over 9 entries (4/9) that float32 rounds: a
    multi-grid chain refused them on a coarse grid, naming observed and a value it was never
    given. The finest grid's constraint, the one given, still refuses values its chains
    would round (:class:`~stgconv.mcmc.MultiGridSampler` projects onto it first)."""
    coarse._kept_in = set(_CHAIN_DTYPES)


def _check_fits(x: Tensor, shape: Sequence[int], made_for: str, *, exact_dims: int = 0) -> None:
    """``ValueError`` unless a constraint whose tensors have ``shape`` maps chains ``x``
    ``(B, *S)`` to chains of ``x``'s own shape (its last ``exact_dims`` sizes equal, not
    broadcast): torch would broadcast the chains to another batch, or fail deep inside.

    Samplers project at every step, so the shapes are compared here dim by dim (``shape``
    broadcasts to ``x``'s own shape when each of its trailing sizes is 1 or ``x``'s):
    ``torch.broadcast_shapes`` took 10-25 us a call, longer than the projection of a small
    chain itself."""
    fits = len(shape) <= x.dim() and all(
        size in (1, own) for size, own in zip(reversed(shape), reversed(x.shape)))
    if not fits or (exact_dims and x.shape[-exact_dims:] != tuple(shape[-exact_dims:])):
        raise ValueError(f"the chains have shape {tuple(x.shape)}, which a constraint made for "
                         f"{made_for} does not fit")


class KnownEntries(Constraint):
    """Clamp the known entries to their observed values (recovery, inpainting).

    Args:
        observed: ``(B, *S)`` or broadcastable to the chains; values at unknown entries are ignored.
        known: bool tensor broadcastable to ``observed``; ``True`` marks an observed entry that
            must never change. (Loaders convert masks that mark *missing* entries.)

    Raises:
        ValueError: ``observed`` no tensor, ``known`` not bool or not broadcasting, either on
            the meta device or the two on different devices, or a non-finite observed value at
            a known entry; in ``project``, chains it does not fit, on another device, or
            whose dtype would round a known value (float64 data under float32 chains: the
            known values are kept exactly as given, or refused).
    """

    def __init__(self, observed: Tensor, known: Tensor) -> None:
        check_tensor(observed, "observed")  # an array failed on "has no attribute 'detach'"
        check_bool_mask(known, "known")
        # Else torch's "Tensor on device cpu is not on the expected device meta!", naming
        # neither argument.
        check_not_meta(observed, "observed")
        check_not_meta(known, "known")
        if known.device != observed.device:
            raise ValueError(f"known is on {known.device}, observed on {observed.device}: make "
                             "both on the chains' device")
        try:
            torch.broadcast_shapes(known.shape, observed.shape)
        except RuntimeError as err:
            raise ValueError(
                f"known {tuple(known.shape)} does not broadcast against observed "
                f"{tuple(observed.shape)}"
            ) from err
        # Checked once here: clamped into every chain, a NaN there would surface as the
        # sampler's "chain diverged" at step 0, blaming the step size.
        if not torch.isfinite(torch.where(known, observed.detach(), 0)).all():
            raise ValueError("observed has NaN or infinite values at known entries; the known "
                             "entries must hold the observed values")
        # Data, not part of a graph: a chain projected onto it stays a leaf of its own.
        self.observed = observed.detach()
        self.known = known
        self._shape = torch.broadcast_shapes(known.shape, observed.shape)
        # The chains' dtypes found to keep the known values exactly (_check_kept): compared
        # once per dtype, at the sampler's first projection, before any step (a CUDA graph
        # captures no comparison that waits for the device).
        self._kept_in = {observed.dtype}
        # Written once: project runs at every sampler step.
        self._made_for = f"observed {tuple(observed.shape)} and known {tuple(known.shape)}"

    def __repr__(self) -> str:
        # Shapes, not values: the tensors are whole batches of chains.
        return (f"KnownEntries(observed={tuple(self.observed.shape)}, "
                f"known={tuple(self.known.shape)})")

    def project(self, x: Tensor) -> Tensor:
        _check_fits(x, self._shape, self._made_for)
        _check_device(self.observed, x, "observed",
                      "KnownEntries(observed.to({device}), known.to({device}))")
        if x.dtype not in self._kept_in:
            # The values at unknown entries are ignored, and may round.
            _check_kept(torch.where(self.known, self.observed, 0), x, "observed")
            self._kept_in.add(x.dtype)
        # In the chain's dtype, which holds every observed value (checked above; a coarsened
        # constraint's block means may round, as the chains' own do: _take_every_dtype).
        return torch.where(self.known, self.observed.to(x.dtype), x)

    def tangent(self, v: Tensor) -> Tensor:
        return v.masked_fill(self.known, 0.0)

    def held(self) -> Tensor:
        return self.known

    def coarsen(self, factor: Sequence[int]) -> KnownEntries | None:
        """A coarse entry is known when its whole block is; its value is the block's mean.

        Blocks that are only partly observed stay free on the coarse grid: their mean is not
        determined, and the finer grid clamps the observed part anyway.
        """
        if all(int(f) == 1 for f in factor):
            return self
        known, observed = torch.broadcast_tensors(self.known, self.observed)
        whole = block_down((~known).to(observed.dtype), factor) == 0
        if not whole.any():
            return None
        coarse = KnownEntries(block_down(observed, factor), whole)
        _take_every_dtype(coarse)
        return coarse


class DownsampleConsistency(Constraint):
    """Keep ``block_down(x, factor) == low`` exactly (super-resolution).

    ``project(x) = x - up(down(x)) + up(low)`` replaces each block's mean by the low-resolution
    value while keeping the detail inside the block.

    Args:
        low: ``(B, *lead, n1, ..., nk)`` low-resolution tensor.
        factor: ``(f1, ..., fk)`` block size over the trailing dims: ``(f, f)`` for images,
            ``(f, f, f)`` for voxels, ``(1, f, f)`` or ``(ft, f, f)`` for videos.

    Raises:
        ValueError: ``low`` no tensor, on the meta device or not finite, or a bad ``factor``;
            in ``project``, chains it does not fit, on another device, or whose dtype would
            round a value of ``low``, as :class:`KnownEntries`' ``observed``.
    """

    def __init__(self, low: Tensor, factor: Sequence[int]) -> None:
        check_tensor(low, "low")  # else torch.isfinite's "must be Tensor, not numpy.ndarray"
        # Else "Tensor.item() cannot be called on meta tensors", naming no argument.
        check_not_meta(low, "low")
        if not torch.isfinite(low).all():  # as KnownEntries' observed
            raise ValueError("low has NaN or infinite values; the block means to keep must be "
                             "finite")
        self.low = low.detach()  # data, not part of a graph, as KnownEntries' observed
        self._kept_in = {low.dtype}  # as KnownEntries' observed
        # nearest_up checks the factor first: int() would turn 1.5 into 1 silently.
        self._low_up = nearest_up(self.low, factor)
        self.factor = tuple(int(f) for f in factor)
        # Written once: project runs at every sampler step.
        self._made_for = (f"low {tuple(self.low.shape)} x factor {self.factor} = "
                          f"{tuple(self._low_up.shape)}")

    def __repr__(self) -> str:
        return f"DownsampleConsistency(low={tuple(self.low.shape)}, factor={self.factor})"

    def project(self, x: Tensor) -> Tensor:
        _check_fits(x, self._low_up.shape, self._made_for, exact_dims=len(self.factor))
        _check_device(self.low, x, "low", "DownsampleConsistency(low.to({device}), factor)")
        if x.dtype not in self._kept_in:
            _check_kept(self.low, x, "low")
            self._kept_in.add(x.dtype)
        return self.tangent(x) + self._low_up.to(x.dtype)

    def tangent(self, v: Tensor) -> Tensor:
        return v - nearest_up(block_down(v, self.factor), self.factor)

    def coarsen(self, factor: Sequence[int]) -> DownsampleConsistency:
        """On a grid coarser by ``factor`` the block means are still ``low``.

        Per dim, a coarsening ``g`` that divides this constraint's ``f`` leaves blocks of
        ``f / g``; one that ``f`` divides sees ``low`` itself averaged by ``g / f`` (the coarse
        grid is then fully determined there).
        """
        factor = tuple(int(g) for g in factor)
        if len(factor) != len(self.factor):
            raise ValueError(f"coarsening factor {factor} must cover the constraint's dims "
                             f"{self.factor}")
        if any(f % g and g % f for f, g in zip(self.factor, factor)):
            raise ValueError(f"coarsening factor {factor} and super-resolution factor "
                             f"{self.factor} must divide one another in every dim")
        low = block_down(self.low, tuple(max(g // f, 1) for f, g in zip(self.factor, factor)))
        coarse = DownsampleConsistency(low,
                                       tuple(max(f // g, 1) for f, g in zip(self.factor, factor)))
        _take_every_dtype(coarse)
        return coarse


class KnownEntriesAndBlockMeans(Constraint):
    """Both at once: the known entries of ``known`` clamped and every block's mean kept at
    ``means.low``, by moving the block's free entries alone (a multi-grid chain that recovers
    missing entries and refines the grid below it).

    ``project`` clamps, then shifts each block's free entries by one amount, the orthogonal
    projection onto both sets where they meet. A block with no free entry keeps its observed
    values: their mean is the block's target wherever the target was drawn under the coarsened
    constraint (:meth:`KnownEntries.coarsen` clamps such a block's coarse entry to it).

    Args:
        known: the entries to clamp; ``known.known`` broadcastable to the chains.
        means: the block means to keep (``means.factor`` blocks).
    """

    def __init__(self, known: KnownEntries, means: DownsampleConsistency) -> None:
        self.known = known
        self.means = means

    def __repr__(self) -> str:
        return f"KnownEntriesAndBlockMeans(known={self.known!r}, means={self.means!r})"

    def project(self, x: Tensor) -> Tensor:
        x = self.known.project(x)
        return x + self._spread(self.means.project(x) - x, x)

    def tangent(self, v: Tensor) -> Tensor:
        v = self.known.tangent(v)
        return v + self._spread(self.means.tangent(v) - v, v)

    def held(self) -> Tensor:
        return self.known.held()

    def _spread(self, deficit: Tensor, like: Tensor) -> Tensor:
        """Each block's total ``deficit`` (a block-constant ``(B, *S)``: what the block's mean
        lacks, at every entry) shared equally by its free entries."""
        factor = self.means.factor
        free = torch.broadcast_to(~self.known.known, like.shape).to(like.dtype)
        share = block_down(free, factor)  # the free entries' fraction of each block
        per_free = torch.where(share > 0, block_down(deficit, factor) / share.clamp_min(1e-30),
                               torch.zeros_like(share))
        return nearest_up(per_free, factor) * free
