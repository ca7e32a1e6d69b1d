"""The start and the accept/reject step shared by the Metropolis-adjusted samplers (MALA, HMC).

Under a constraint both samplers move only in its tangent space, so the gradient they see is
projected there (:func:`evaluate_on_constraint`) and the proposal densities stay exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.checks import check_generator
from stgconv.mcmc.base import (
    StepCallback,
    StepInfo,
    at_least_float32,
    broadcast_chains,
    check_constraint,
    check_start,
    energy_and_grad,
    nonfinite_flag,
    per_chain_norm,
)
from stgconv.mcmc.constraints import Constraint
from stgconv.mcmc.execution import check_chains_independent
from stgconv.types import EnergyFn


def evaluate_on_constraint(
    energy: EnergyFn, x: Tensor, constraint: Constraint | None
) -> tuple[Tensor, Tensor]:
    """Detached energies ``(B,)`` and gradient ``(B, *S)`` at ``x``, the gradient restricted to the
    constraint's tangent space (the directions MALA and HMC move in)."""
    x = x.detach().requires_grad_(True)
    e, grad = energy_and_grad(energy, x)
    if constraint is not None:
        grad = constraint.tangent(grad)
    return e.detach(), grad


def metropolis_select(
    log_ratio: Tensor,
    current: tuple[Tensor, Tensor, Tensor],
    proposal: tuple[Tensor, Tensor, Tensor],
    *,
    generator: torch.Generator | None = None,
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """Accept each chain's proposal with probability ``min(1, exp(log_ratio))``.

    Args:
        log_ratio: ``(B,)`` log acceptance ratio; NaN compares False, so it is rejected.
        current, proposal: ``(x, energy, grad)`` with shapes ``(B, *S)``, ``(B,)``, ``(B, *S)``.

    Returns:
        The new ``(x, energy, grad)`` and the ``(B,)`` bool acceptance decisions.
    """
    # Drawn in the chain's and energies' dtype, not the (float64) ratio's: a seed's uniforms,
    # hence its chain, do not depend on the precision the ratio is computed in. Float32 at
    # least: a bfloat16 uniform came out 0 one draw in 500 (float16: one in 4000), and its log,
    # -inf, accepted any proposal, one of ratio e^-50 too.
    uniform = torch.rand(log_ratio.shape, generator=generator, device=log_ratio.device,
                         dtype=at_least_float32(torch.promote_types(current[0].dtype,
                                                                    current[1].dtype)))
    accept = torch.log(uniform) < log_ratio
    mask = broadcast_chains(accept, current[0])
    x = torch.where(mask, proposal[0], current[0])
    e = torch.where(accept, proposal[1], current[1])
    grad = torch.where(mask, proposal[2], current[2])
    return (x, e, grad), accept


def metropolis_start(
    energy: EnergyFn, x0: Tensor, constraint: Constraint | None, sampler: str,
    generator: torch.Generator | None,
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """Where a Metropolis-adjusted chain starts: ``(x, energy, grad)`` at ``x0`` ``(B, *S)``
    projected onto the constraint (shapes ``(B, *S)``, ``(B,)``, ``(B, *S)``), and the ``(B,)``
    flags of a non-finite start. ``x0`` is not modified; one that is not a float tensor, a
    ``generator`` that is not a ``torch.Generator``, a ``constraint`` without a ``project`` and
    a ``tangent``, or an energy module with batch normalisation or dropout in training mode is
    refused, naming ``sampler``."""
    check_start(x0, sampler)
    check_generator(generator, sampler)
    # tangent too: the proposals move along it.
    check_constraint(constraint, sampler, needs=("project", "tangent"))
    check_chains_independent(energy, sampler)
    x = x0.detach().clone()
    if constraint is not None:
        x = constraint.project(x)
        _check_affine(constraint, x, sampler)
    e, grad = evaluate_on_constraint(energy, x, constraint)
    return (x, e, grad), nonfinite_flag(e, grad)


def _check_affine(constraint: Constraint, x: Tensor, sampler: str) -> None:
    """``ValueError`` naming ``sampler`` where ``constraint``'s projection is seen not to be
    affine from the start ``x`` ``(B, *S)`` (on it): the proposals move along its tangent and
    their densities are taken there, which for a box or a sphere means nothing, and the chain
    then sampled something else without a word. One probe, ``x + 1``: an affine projection
    moves by the tangent of any step."""
    step = x + 1.0
    moved = constraint.project(x + step) - x
    along = constraint.tangent(step)
    off = per_chain_norm(moved - along)
    if bool((off > 1e-3 * (per_chain_norm(along) + 1.0)).any()):
        raise ValueError(
            f"{sampler}: the constraint {type(constraint).__name__} does not project affinely "
            "(from the start, the projection of a step differs from the step's tangent): "
            f"{sampler} moves along the tangent and is exact only for affine projections "
            "(KnownEntries, DownsampleConsistency, ...); use Langevin, which projects after "
            "every step")


def metropolis_step(
    step: int,
    log_ratio: Tensor,
    current: tuple[Tensor, Tensor, Tensor],
    proposal: tuple[Tensor, Tensor, Tensor],
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`metropolis_select`, reported to ``callback`` as step ``step`` (the energy and
    gradient norm of ``current``, and the acceptance decisions); returns the new
    ``(x, energy, grad)``."""
    chosen, accept = metropolis_select(log_ratio, current, proposal, generator=generator)
    if callback is not None:
        callback(StepInfo(step, current[1], per_chain_norm(current[2]), accept))
    return chosen
