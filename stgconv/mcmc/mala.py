"""Metropolis-adjusted Langevin (MALA): a Langevin proposal plus an accept/reject test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stgconv.checks import as_int, check_step_size
from stgconv.mcmc.base import (
    STEP_ADVICE,
    StepCallback,
    nonfinite_flag,
    nonfinite_start,
    per_chain_sum,
    raise_if_nonfinite,
)
from stgconv.mcmc.constraints import Constraint
from stgconv.mcmc.metropolis import evaluate_on_constraint, metropolis_start, metropolis_step
from stgconv.types import EnergyFn


@dataclass(frozen=True)
class MALA:
    """Proposal ``y = x - (delta^2/2) grad E(x) + delta * eps``, accepted with probability
    ``min(1, exp(E(x) - E(y)) q(x | y) / q(y | x))``, ``q(y | x) = N(y; x - (delta^2/2) grad E(x),
    delta^2 I)``. Each chain accepts or rejects on its own, so the target is exact at any step size.

    With a constraint, proposals move along the constraint's ``tangent`` and the densities are
    taken there, which keeps the sampler exact on the constrained set.
    """

    n_steps: int = 30
    step_size: float = 0.01

    def __post_init__(self) -> None:
        # as_int: a float count failed in the run, and True ran one step.
        as_int(self.n_steps, "n_steps", minimum=1)
        check_step_size(self.step_size)

    def run(
        self,
        energy: EnergyFn,
        x0: Tensor,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Run ``n_steps`` proposals from ``x0`` ``(B, *S)``; returns ``(B, *S)``.

        ``callback`` receives each step's acceptance decisions (``StepInfo.accepted``); use
        :class:`stgconv.mcmc.Diagnostics` to get the acceptance rate.
        """
        delta, half_step = self.step_size, 0.5 * self.step_size**2
        (x, e_x, g_x), start_bad = metropolis_start(energy, x0, constraint, "MALA", generator)
        x_bad = nonfinite_start(x)
        flags: list[Tensor] = []  # flags[k]: a non-finite value met during step k
        for step in range(self.n_steps):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if constraint is not None:
                noise = constraint.tangent(noise)
            y = x - half_step * g_x + delta * noise
            if constraint is not None:
                # Moves along the tangent keep y on the constraint up to rounding, which would
                # add up over the steps; projecting removes only that rounding.
                y = constraint.project(y)
            e_y, g_y = evaluate_on_constraint(energy, y, constraint)
            flags.append(nonfinite_flag(e_y, g_y))
            log_ratio = log_acceptance_ratio(x, y, e_x, e_y, g_x, g_y, step_size=delta)
            x, e_x, g_x = metropolis_step(
                step, log_ratio, (x, e_x, g_x), (y, e_y, g_y), generator=generator,
                callback=callback,
            )
        # A non-finite start is reported as step 0, so the step always lies in [0, n_steps).
        flags[0] = flags[0] | start_bad
        raise_if_nonfinite(flags, "MALA", self.n_steps, advice=STEP_ADVICE, start=x_bad)
        return x


def log_acceptance_ratio(x: Tensor, y: Tensor, e_x: Tensor, e_y: Tensor, g_x: Tensor,
                         g_y: Tensor, *, step_size: float) -> Tensor:
    """MALA's ``(B,)`` float64 log acceptance ratio ``E(x) - E(y) + log q(x | y) - log q(y | x)``
    of the move from ``x`` to ``y`` ``(B, *S)``, with energies ``e_x``, ``e_y`` ``(B,)`` and
    gradients ``g_x``, ``g_y`` ``(B, *S)``.

    ``log q(x | y) - log q(y | x) = (|y - x + h g_x|^2 - |x - y + h g_y|^2) / (2 delta^2)``, ``h =
    delta^2 / 2``: each squared norm is about half the chain's entry count (the noise's), so
    taken apart in float32 a video's (10^6 entries) are 5e5 apiece, rounded to 0.03 each, and
    their difference, the part that matters, carries that error (measured 0.02-0.05 at 10^6).
    Entry by entry the difference is ``h (g_x + g_y) (h (g_y - g_x) - 2 (y - x))``, without the
    large terms; summed in float64. The energies are only as exact as the energy computed
    them (a float32 total of 5e5 is itself rounded to 0.03): an energy that sums in float64
    gives an exact test. Both residuals lie in a constraint's tangent space when the
    gradients were projected there, so this holds under a constraint too."""
    half_step = 0.5 * step_size**2
    proposal_terms = half_step * (g_x + g_y) * (half_step * (g_y - g_x) - 2 * (y - x))
    log_q_ratio = -per_chain_sum(proposal_terms, dtype=torch.float64) / (2 * step_size**2)
    return e_x.double() - e_y.double() + log_q_ratio
