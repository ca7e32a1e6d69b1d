"""The maximum-likelihood (analysis-by-synthesis) objective as a pure function."""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.types import EnergyFn


def contrastive_divergence(
    energy: EnergyFn, x_pos: Tensor, x_neg: Tensor, *, energy_l2: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean E(x_pos) - mean E(x_neg)`` (+ ``energy_l2 * mean(E^2)`` over both).

    Its gradient in the parameters is the maximum-likelihood gradient estimate: push energy down
    on data, up on samples. The samples must be detached (they are constants here).

    Args:
        x_pos: ``(B, *S)`` observed examples.
        x_neg: ``(M, *S)`` synthesized examples; ``M`` may differ from ``B``.

    Returns:
        The scalar loss and detached diagnostics ``e_pos``, ``e_neg`` (means).

    Raises:
        FloatingPointError: if any energy is NaN or infinite.
    """
    if x_pos.shape[1:] != x_neg.shape[1:]:
        raise ValueError(
            f"data {tuple(x_pos.shape)} and samples {tuple(x_neg.shape)} differ in sample shape"
        )
    e_pos, e_neg = energy(x_pos), energy(x_neg.detach())
    if not (torch.isfinite(e_pos).all() and torch.isfinite(e_neg).all()):
        raise FloatingPointError(
            "non-finite energy in the training loss "
            f"(data: {int((~torch.isfinite(e_pos)).sum())} of {e_pos.numel()}, "
            f"samples: {int((~torch.isfinite(e_neg)).sum())} of {e_neg.numel()})"
        )
    loss = e_pos.mean() - e_neg.mean()
    if energy_l2 > 0:
        loss = loss + energy_l2 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}
