"""Collect per-step sampler diagnostics without synchronising the device inside the loop."""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.mcmc.base import StepInfo, at_least_float32


class Diagnostics:
    """Pass as ``callback=`` to any sampler's ``run``; read the summaries afterwards.

    Example::

        diag = Diagnostics()
        x = MALA(n_steps=100, step_size=0.5).run(energy, x0, callback=diag)
        print(diag.acceptance_rate, diag.mean_energy[-1])
    """

    def __init__(self) -> None:
        self.steps: list[StepInfo] = []

    def __call__(self, info: StepInfo) -> None:
        self.steps.append(info)

    @property
    def mean_energy(self) -> list[float]:
        """Mean energy over chains, per step."""
        return _means([s.energy for s in self.steps])

    @property
    def mean_grad_norm(self) -> list[float]:
        """Mean gradient norm over chains, per step: of the part that moves them, under a
        constraint its tangent (:attr:`StepInfo.grad_norm`)."""
        return _means([s.grad_norm for s in self.steps])

    @property
    def acceptance_rate(self) -> float:
        """Fraction of accepted proposals over all steps and chains (1.0 for plain Langevin), of
        every run it was passed to."""
        decisions = [s.accepted for s in self.steps if s.accepted is not None]
        if not decisions:
            return 1.0
        # Concatenated, not stacked: runs of other batch sizes fed to one collector failed
        # ("stack expects each tensor to be equal size").
        return torch.cat(decisions).float().mean().item()


def _means(per_step: list[Tensor]) -> list[float]:
    """The mean of each ``(B,)`` tensor, in its dtype, float32 at least: a float64 chain's
    energies of 1e8 were averaged in float32, which rounds them to multiples of 8. No steps
    recorded yet: no means (torch.stack refused the empty list)."""
    if not per_step:
        return []
    return torch.stack([values.mean(dtype=at_least_float32(values.dtype))
                        for values in per_step]).tolist()
