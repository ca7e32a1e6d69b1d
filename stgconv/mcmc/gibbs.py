"""Blocked Gibbs sampling for restricted Boltzmann machines, with the engine's contract."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stgconv.checks import as_int, check_generator, check_not_meta
from stgconv.energy.rbm import RBM
from stgconv.mcmc.base import (
    NonFiniteEnergyError,
    StepCallback,
    StepInfo,
    check_constraint,
)
from stgconv.mcmc.constraints import Constraint


# A sweep has no step to shorten: the free energy is non-finite where the start is, or where
# the RBM's weights and biases are (or are large enough to overflow it).
GIBBS_ADVICE = "the start or the RBM's weights are not finite, or too large"


@dataclass(frozen=True)
class BlockGibbs:
    """``n_steps`` sweeps of ``h ~ p(h | v)``, ``v ~ p(v | h)``; CD-k's and PCD's sampler.

    Raises :class:`~stgconv.mcmc.NonFiniteEnergyError` when the free energy of the start or of
    the end is not finite. A constraint is projected after every sweep (and once on ``x0``): with
    :class:`~stgconv.mcmc.KnownEntries` the known visible units stay as observed, so the chain
    samples the missing ones given the rest (recovery).
    """

    n_steps: int = 1

    def __post_init__(self) -> None:
        # as_int: a float count failed in the run, and True ran one step.
        as_int(self.n_steps, "n_steps", minimum=1)

    @torch.no_grad()
    def run(self, energy: RBM, x0: Tensor, *, constraint: Constraint | None = None,
            generator: torch.Generator | None = None, callback: StepCallback | None = None
            ) -> Tensor:
        """``x0`` ``(B, *S)`` (``n_visible`` entries per example) -> ``(B, *S)``."""
        if not isinstance(energy, RBM):
            raise TypeError(f"BlockGibbs samples RBMs (their conditionals), got "
                            f"{type(energy).__name__}")
        check_generator(generator, "BlockGibbs")
        # An array failed on "no attribute 'detach'", one number (no batch) inside the RBM's
        # reshape ("Dimension out of range"); other dtypes the RBM names itself.
        if not isinstance(x0, Tensor) or x0.dim() == 0:
            got = "a 0-d tensor (x0[None]: one chain)" if isinstance(x0, Tensor) else (
                type(x0).__name__)
            raise ValueError(f"BlockGibbs: x0 must be a tensor (B, *S) of visible units, got "
                             f"{got}")
        check_not_meta(x0, "BlockGibbs: x0")
        check_constraint(constraint, "BlockGibbs")
        v = x0.detach().clone()
        if constraint is not None:
            v = constraint.project(v)
        # Non-finite conditionals do not show in the samples (a NaN probability draws 0): the
        # free energy of the start, and of the end (large weights overflow), tells.
        _raise_if_nonfinite(energy(v), 0, self.n_steps)
        for step in range(self.n_steps):
            if callback is not None:
                callback(StepInfo(step=step, energy=energy(v),
                                  grad_norm=torch.zeros(len(v), device=v.device)))
            h = energy.sample_hidden(v, generator=generator)
            v = energy.sample_visible(h, generator=generator).reshape(x0.shape)
            if constraint is not None:
                v = constraint.project(v)
        _raise_if_nonfinite(energy(v), self.n_steps - 1, self.n_steps)
        return v


def _raise_if_nonfinite(free_energy: Tensor, step: int, n_steps: int) -> None:
    """:class:`NonFiniteEnergyError` at ``step`` naming the chains whose ``free_energy``
    ``(B,)`` is not finite."""
    bad = ~torch.isfinite(free_energy)
    if bad.any():
        raise NonFiniteEnergyError("BlockGibbs", step, n_steps, bad.nonzero()[:, 0].tolist(),
                                   advice=GIBBS_ADVICE)
