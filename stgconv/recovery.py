"""Learning from incomplete data: recover missing entries while learning the model from them.

Xie et al. (STGConvNet) recover occluded or missing video frames by alternating

(a) Langevin on the *missing* entries with the observed ones clamped (the :class:`KnownEntries`
    projection wrapped around the ordinary update), which completes the data under the current
    model, and
(b) one learning step that treats the current completion as the observed data and fresh
    synthesized chains as the samples.

The same loop serves any layout ``(C, *S)``: videos, images, voxels. The result is the average of
the completions over the last ``average_last`` iterations, a Monte Carlo estimate of the posterior
mean, which removes the per-step Langevin noise a single chain state carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from stgconv.energy.base import EnergyModel
from stgconv.losses import contrastive_divergence
from stgconv.mcmc.constraints import KnownEntries
from stgconv.mcmc.init import NoiseInit
from stgconv.mcmc.langevin import Langevin


@dataclass
class RecoveryResult:
    """``recovered``: ``(C, *S)`` the estimate; ``history``: one dict of statistics per iteration
    (``loss``, ``e_pos``, ``e_neg`` and, when a ``truth_error`` was given, ``error``)."""

    recovered: Tensor
    synthesized: Tensor
    history: list[dict[str, float]] = field(default_factory=list)


def recover(
    energy: EnergyModel,
    sampler: Langevin,
    observed: Tensor,
    known: Tensor,
    *,
    init: Tensor | None = None,
    n_iterations: int = 100,
    lr: float = 0.01,
    betas: tuple[float, float] = (0.5, 0.999),
    n_chains: int = 2,
    chain_init: NoiseInit = NoiseInit("gaussian", 0.0),
    average_last: int = 10,
    generator: torch.Generator | None = None,
    truth_error: Callable[[Tensor], float] | None = None,
    progress: bool = False,
    warmup: int = 0,
    completion_sampler: Langevin | None = None,
) -> RecoveryResult:
    """Recover the missing entries of one example while learning ``energy`` from it.

    Args:
        energy: trained in place with Adam (``lr``, ``betas``).
        sampler: used for both the completion chain and the synthesis chains.
        observed: ``(C, *S)``; values at missing entries are ignored.
        known: bool, broadcastable to ``observed``; True = observed.
        init: ``(C, *S)`` starting completion (e.g. a classical fill); default: the observed
            entries and the observed mean elsewhere.
        n_chains: synthesis chains, persistent across iterations, started from ``chain_init``.
        average_last: iterations whose completions are averaged into the result.
        truth_error: optional ``(C, *S) -> float`` evaluated on the running estimate each
            iteration (for reporting only; it never feeds back).

    Returns:
        :class:`RecoveryResult`; ``recovered`` keeps every observed entry exactly.
    """
    if known.dtype != torch.bool:
        raise ValueError(f"known must be a bool tensor (True = observed), got {known.dtype}")
    known = known.expand_as(observed)
    if not known.any():
        raise ValueError("nothing is observed: recovery needs at least one known entry")
    if not 0 <= warmup < n_iterations:
        raise ValueError(f"warmup must be in [0, n_iterations), got {warmup} (n_iterations {n_iterations})")
    if not 1 <= average_last <= n_iterations - warmup:
        raise ValueError(
            f"average_last must be in [1, n_iterations - warmup] = [1, {n_iterations - warmup}], "
            f"got {average_last}"
        )
    if completion_sampler is None:
        completion_sampler = sampler
    if init is None:
        init = torch.where(known, observed, observed[known].mean())
    if init.shape != observed.shape:
        raise ValueError(f"init {tuple(init.shape)} must match observed {tuple(observed.shape)}")
    constraint = KnownEntries(observed.unsqueeze(0), known.unsqueeze(0))
    completion = constraint.project(init.unsqueeze(0).clone())
    chains = chain_init.sample(
        (n_chains, *observed.shape), device=observed.device, dtype=observed.dtype, generator=generator
    )
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=betas)
    running_sum = torch.zeros_like(completion)
    n_averaged = 0
    history = []
    for iteration in tqdm(range(n_iterations), disable=not progress, desc="recover"):
        if iteration >= warmup:
            completion = completion_sampler.run(
                energy, completion, constraint=constraint, generator=generator
            )
        chains = sampler.run(energy, chains, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss, stats = contrastive_divergence(energy, completion, chains)
        loss.backward()
        optimizer.step()
        if iteration >= n_iterations - average_last:
            running_sum += completion
            n_averaged += 1
        record = {"loss": loss.item(), "e_pos": stats["e_pos"].item(), "e_neg": stats["e_neg"].item()}
        if truth_error is not None:
            estimate = running_sum / n_averaged if n_averaged else completion
            record["error"] = truth_error(estimate[0])
        history.append(record)
    recovered = constraint.project(running_sum / n_averaged)[0]
    return RecoveryResult(recovered=recovered, synthesized=chains, history=history)
