"""Hybrid (Hamiltonian) Monte Carlo: leapfrog trajectories plus a Metropolis-Hastings test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stgconv.checks import as_int, check_finite_number, check_step_size
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
class HMC:
    """Each of ``n_steps`` iterations draws momentum ``p ~ N(0, I)``, integrates Hamilton's
    equations for ``H = E(x) + |p|^2 / 2`` with ``n_leapfrog`` leapfrog steps of size
    ``step_size``, and accepts the end point with probability ``min(1, exp(H_start - H_end))``
    per chain. One iteration costs ``n_leapfrog`` energy-gradient evaluations.

    With a constraint, momentum and forces are restricted to the constraint's ``tangent``, so the
    trajectory stays on the constrained set and the test stays exact there.

    ``step_jitter`` ``j`` in ``[0, 1)`` draws each chain's step size anew every iteration,
    uniform in ``step_size * [1 - j, 1 + j]`` (Neal, "MCMC using Hamiltonian dynamics", 2011):
    with one fixed trajectory length, a direction whose period it matches comes back where it
    started, accepted, and never mixes (0: the fixed step).
    """

    n_steps: int = 10
    step_size: float = 0.01
    n_leapfrog: int = 5
    step_jitter: float = 0.0

    def __post_init__(self) -> None:
        # as_int: a float count failed in the run, and True ran one step.
        as_int(self.n_steps, "n_steps", minimum=1)
        as_int(self.n_leapfrog, "n_leapfrog", minimum=1)
        check_step_size(self.step_size)
        check_finite_number(self.step_jitter, "step_jitter")
        if not 0.0 <= self.step_jitter < 1.0:
            raise ValueError(f"step_jitter must be in [0, 1) (a share of step_size), got "
                             f"{self.step_jitter!r}")

    def run(
        self,
        energy: EnergyFn,
        x0: Tensor,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Run ``n_steps`` HMC iterations from ``x0`` ``(B, *S)``; returns ``(B, *S)``."""
        (x, e_x, g_x), start_bad = metropolis_start(energy, x0, constraint, "HMC", generator)
        x_bad = nonfinite_start(x)
        flags: list[Tensor] = []  # flags[k]: a non-finite value met during iteration k
        for step in range(self.n_steps):
            eps = self._step_sizes(x, generator)
            p = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if constraint is not None:
                p = constraint.tangent(p)
            p_start = p
            y, e_y, g_y = x, e_x, g_x
            p = p - 0.5 * eps * g_y
            bad = torch.zeros_like(start_bad)
            for leap in range(self.n_leapfrog):
                y = y + eps * p
                if constraint is not None:  # rounding off the constraint, as in MALA
                    y = constraint.project(y)
                e_y, g_y = evaluate_on_constraint(energy, y, constraint)
                bad = bad | nonfinite_flag(e_y, g_y)
                p = p - (eps if leap < self.n_leapfrog - 1 else 0.5 * eps) * g_y
            flags.append(bad)
            # A diverged trajectory has a NaN ratio: rejected here, reported below.
            x, e_x, g_x = metropolis_step(
                step, log_acceptance_ratio(e_x, e_y, p_start, p), (x, e_x, g_x), (y, e_y, g_y),
                generator=generator, callback=callback,
            )
        # One flag per iteration (not per leapfrog step), a non-finite start counted as
        # iteration 0, so the reported step lies in [0, n_steps) like the callback's.
        flags[0] = flags[0] | start_bad
        raise_if_nonfinite(flags, "HMC", self.n_steps, advice=STEP_ADVICE, start=x_bad)
        return x

    def _step_sizes(self, x: Tensor, generator: torch.Generator | None) -> float | Tensor:
        """This iteration's step size: ``step_size``, or with a jitter one per chain of ``x``
        ``(B, *S)``, shaped ``(B, 1, ...)`` to broadcast."""
        if self.step_jitter == 0.0:
            return self.step_size
        u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator,
                       device=x.device, dtype=x.dtype)
        return self.step_size * (1.0 + self.step_jitter * (2.0 * u - 1.0))


def log_acceptance_ratio(e_x: Tensor, e_y: Tensor, p_start: Tensor, p_end: Tensor) -> Tensor:
    """HMC's ``(B,)`` float64 log acceptance ratio ``H_start - H_end = E(x) - E(y) + (|p_start|^2 -
    |p_end|^2) / 2`` of a trajectory from ``x`` to ``y`` (energies ``e_x``, ``e_y`` ``(B,)``) with
    momenta ``p_start``, ``p_end`` ``(B, *S)``.

    Each kinetic energy is about half the chain's entry count, so taken apart in float32 a
    video's (10^6 entries) are 5e5 apiece, rounded to 0.03 each, and their difference carries
    that error. Entry by entry it is ``(p_start - p_end) (p_start + p_end)``, without the large
    terms; summed in float64. The energies are only as exact as the energy computed them (see
    :func:`stgconv.mcmc.mala.log_acceptance_ratio`)."""
    kinetic_drop = 0.5 * per_chain_sum((p_start - p_end) * (p_start + p_end), dtype=torch.float64)
    return e_x.double() - e_y.double() + kinetic_drop
