"""Multi-grid sampling (Gao et al., CVPR 2018): one energy per grid of a pyramid, coarse to fine.

The coarsest ("base") grid is not modelled: it comes from the data (for images, a training
image's mean colour on the 1x1 grid). Each finer grid's chain starts from the nearest up-sampling
of the grid below it and runs that grid's own sampler on that grid's own energy. The chains are
plain runs of the one engine (:class:`stgconv.mcmc.Langevin`, MALA or HMC); this class only hands
results from grid to grid.

A constraint is given on the finest grid and each coarser grid keeps what it implies there
(:meth:`stgconv.mcmc.constraints.Constraint.coarsen`): fully observed blocks are clamped to their
means for recovery, block means stay equal to the low-resolution input for super-resolution.

``consistent=True`` makes each grid a refinement of the one below: a free chain keeps the block
means of the coarser sample (:class:`~stgconv.mcmc.constraints.DownsampleConsistency`), so the
layouts the coarse grids drew survive to the finest one and the models add detail only (trained
for it with ``multigrid.consistent``, see :class:`stgconv.train.MultiGridTrainer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from stgconv.checks import as_int, check_generator
from stgconv.mcmc.base import (
    NonFiniteEnergyError,
    Sampler,
    check_constraint,
    check_sampler,
    check_start,
    on_grid,
)
from stgconv.mcmc.constraints import (
    Constraint,
    DownsampleConsistency,
    KnownEntries,
    KnownEntriesAndBlockMeans,
)
from stgconv.ops import check_block_factor, nearest_up
from stgconv.types import EnergyFn


@dataclass(frozen=True)
class MultiGridSampler:
    """Coarse-to-fine sampling over the grids of a pyramid.

    Args:
        samplers: one sampler per modelled grid, coarse to fine (chain length and step size may
            differ per grid).
        factors: ``factors[k]`` is the block factor from grid ``k`` to grid ``k + 1`` over the
            trailing dims, grid 0 being the base: ``((4, 4), (4, 4), (4, 4))`` for images
            1x1 -> 4x4 -> 16x16 -> 64x64, ``(1, 4, 4)`` per step for spatial video grids,
            ``(2, 4, 4)`` to also refine time. One entry per sampler.
        consistent: every grid's chain keeps the block means of the grid below, together with
            the task constraint where one is given (known entries clamped and each block's
            mean kept by its free entries; super-resolution's block means nest with them).
    """

    samplers: tuple[Sampler, ...]
    factors: tuple[tuple[int, ...], ...]
    consistent: bool = False

    def __post_init__(self) -> None:
        if not self.samplers:
            raise ValueError("a multi-grid sampler needs at least one modelled grid")
        for k, sampler in enumerate(self.samplers):
            check_sampler(sampler, f"samplers[{k}]")
        if len(self.factors) != len(self.samplers):
            raise ValueError(f"{len(self.factors)} grid factors for {len(self.samplers)} samplers; "
                             "expected one factor per modelled grid")
        # check_block_factor: a factor of 1.5 passed here and failed only in the run, and a
        # bare int (2 for (2, 2)) failed as "object of type 'int' has no len()".
        try:
            dims = {len(check_block_factor(f)) for f in self.factors}
        except ValueError:
            dims = set()
        if len(dims) != 1:
            raise ValueError(f"factors must be positive ints over the same dims, "
                             f"got {self.factors}")

    def factor_to_finest(self, grid: int) -> tuple[int, ...]:
        """Block factor between grid ``grid`` (0 = base) and the finest grid (all ones there)."""
        # Else a grid past the finest answered all ones, and a negative one counted from the
        # finest down, as list indices do.
        if not as_int(grid, "grid", minimum=0) <= len(self.factors):
            raise ValueError(f"grid must be 0 (the base) .. {len(self.factors)} (the finest), "
                             f"got {grid}")
        dims = len(self.factors[0])
        return tuple(math.prod(f[d] for f in self.factors[grid:]) for d in range(dims))

    def run(
        self,
        energies: Sequence[EnergyFn],
        x0: Tensor,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Sample every grid, coarse to fine.

        Args:
            energies: one per modelled grid, coarse to fine; ``energies[k]`` takes
                ``(B, *lead, *S_{k+1})``.
            x0: ``(B, *lead, *S_0)`` base-grid values (e.g. ``(B, C, 1, 1)`` mean colours).
            constraint: on the finest grid ``(B, *lead, *S_K)``; each grid keeps its coarsened
                form (the base grid included).
            generator: source of every chain's noise.

        Returns:
            ``[x_0, x_1, ..., x_K]``: the (projected) base and every grid's samples, each
            ``(B, *lead, *S_k)``, detached.

        Raises:
            NonFiniteEnergyError: naming the grid and the step where a chain diverged.
            ValueError: another number of energies (or one energy for the list), ``x0`` not a
                float tensor, or a constraint without ``project`` and ``coarsen`` or that
                refuses the finest grid's chains (another shape, device, or a dtype that would
                round its values).
        """
        # One energy given for the list: a function failed on "object of type 'function' has
        # no len()", and an nn.Sequential of as many layers as grids ran each layer as a grid's
        # energy.
        if callable(energies) and not isinstance(energies, (Sequence, nn.ModuleList)):
            raise ValueError(f"energies must be a sequence of one energy per modelled grid, "
                             f"coarse to fine ({len(self.samplers)}), got one energy "
                             f"({type(energies).__name__}): pass [energy] for one grid")
        if len(energies) != len(self.samplers):
            raise ValueError(f"{len(energies)} energies for {len(self.samplers)} grids; expected "
                             "one energy per modelled grid, coarse to fine")
        check_generator(generator, "MultiGridSampler")
        # Else an integer base was named as the first grid's sampler's start (a list failed
        # on .detach): neither is what the caller passed.
        check_start(x0, "MultiGridSampler")
        # coarsen too: each coarser grid keeps what the constraint says there.
        check_constraint(constraint, "MultiGridSampler", needs=("project", "coarsen"))
        if constraint is not None:
            self._check_fits_finest(constraint, x0)
        base = x0.detach().clone()
        base_constraint = self._constraint_at(constraint, 0)
        if base_constraint is not None:
            base = base_constraint.project(base)
        grids = [base]
        for k, (sampler, energy, factor) in enumerate(zip(self.samplers, energies, self.factors)):
            start = nearest_up(grids[-1], factor)
            keep = self._constraint_at(constraint, k + 1)
            if self.consistent:
                keep = _with_block_means(keep, DownsampleConsistency(grids[-1], factor))
            try:
                grids.append(sampler.run(energy, start, generator=generator, constraint=keep))
            except NonFiniteEnergyError as err:
                raise on_grid(err, k + 1, start.shape[-len(factor):]) from err
        return grids

    def _check_fits_finest(self, constraint: Constraint, x0: Tensor) -> None:
        """``ValueError`` naming the finest grid when ``constraint`` refuses its chains
        (coarsening it for another grid fails first, with a message about block factors
        alone). Refused, not "does not fit": the constraint's own reason may be the chains'
        dtype or device, and a float64 observed that float32 chains would round was said not
        to fit a grid whose shape it fitted."""
        factor = self.factor_to_finest(0)
        lead, base_size = x0.shape[:-len(factor)], x0.shape[-len(factor):]
        finest = (*lead, *(n * f for n, f in zip(base_size, factor)))
        try:
            constraint.project(x0.new_zeros(finest))
        except ValueError as err:
            raise ValueError(f"the constraint refuses the chains of the finest grid {finest} "
                             f"(x0 {tuple(x0.shape)} times the factors {factor}): {err}") from err

    def _constraint_at(self, constraint: Constraint | None, grid: int) -> Constraint | None:
        if constraint is None:
            return None
        return constraint.coarsen(self.factor_to_finest(grid))


def _with_block_means(task: Constraint | None, means: DownsampleConsistency) -> Constraint:
    """A grid's task constraint and the block means of the grid below, kept together. The grid
    below kept the task's coarser form, so block means at least as coarse as the task's own
    blocks imply the task's, and the task's block means, where its blocks are the finer ones,
    imply these; blocks nested neither way (a video's (1, 4, 4) against (2, 2, 2)) keep the
    task's alone."""
    if task is None:
        return means
    if isinstance(task, KnownEntries):
        return KnownEntriesAndBlockMeans(task, means)
    if isinstance(task, DownsampleConsistency) and all(
            f % g == 0 for f, g in zip(task.factor, means.factor)):
        return means
    return task
