"""The maximum-likelihood (analysis-by-synthesis) objective, and JEM's hybrid of it with a
classifier's cross-entropy, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stgconv.checks import check_classes, check_finite_number, check_not_meta, check_tensor
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.mcmc.base import check_energies
from stgconv.types import EnergyFn


def contrastive_divergence(
    energy: EnergyFn, x_pos: Tensor, x_neg: Tensor, *, energy_l2: float = 0.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean E(x_pos) - mean E(x_neg)`` (+ ``energy_l2 * mean(E^2)`` over both).

    Its gradient in the parameters is the maximum-likelihood gradient estimate: push energy down
    on data, up on samples. The samples are constants: they are detached here, so no gradient
    reaches a chain that kept its graph (``create_graph``).

    Args:
        x_pos: ``(B, *S)`` observed examples.
        x_neg: ``(M, *S)`` synthesized examples; ``M`` may differ from ``B``.

    Returns:
        The scalar loss and detached diagnostics ``e_pos``, ``e_neg`` (means).

    Raises:
        FloatingPointError: if any energy is NaN or infinite, or the loss overflows.
        ValueError: an ``energy_l2`` that is negative or no finite number, data and samples
            of different shapes, no data or no samples, either on the meta device, or
            energies not real floating point ``(B,)`` and ``(M,)``.
    """
    # NaN and negative weights dropped the penalty without a word; an infinite one made an
    # infinite loss, and a string failed on the comparison.
    check_finite_number(energy_l2, "energy_l2")
    check_tensor(x_pos, "x_pos")
    check_tensor(x_neg, "x_neg")
    # Else the finiteness check failed inside torch: "Tensor.item() cannot be called on meta
    # tensors".
    check_not_meta(x_pos, "x_pos")
    check_not_meta(x_neg, "x_neg")
    if x_pos.shape[1:] != x_neg.shape[1:]:
        raise ValueError(
            f"data {tuple(x_pos.shape)} and samples {tuple(x_neg.shape)} differ in sample shape"
        )
    # The mean energy of no example is NaN: the loss came back NaN without a word.
    if len(x_pos) == 0 or len(x_neg) == 0:
        raise ValueError(f"data {tuple(x_pos.shape)} and samples {tuple(x_neg.shape)} must each "
                         "hold at least one example")
    e_pos, e_neg = energy(x_pos), energy(x_neg.detach())
    # Else an energy summed over the batch, or (B, K), gave a loss weighted by the batch sizes.
    check_energies(e_pos, x_pos)
    check_energies(e_neg, x_neg)
    loss = e_pos.mean() - e_neg.mean()
    if energy_l2 > 0:
        loss = loss + energy_l2 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    # One check of the loss, which any non-finite energy makes non-finite too: finite energies
    # can still overflow it (1e20 squared by the penalty is past float32), and that infinite
    # loss came back as a number to step on.
    if not torch.isfinite(loss):
        if torch.isfinite(e_pos).all() and torch.isfinite(e_neg).all():
            largest = max(e_pos.abs().max().item(), e_neg.abs().max().item())
            where = " in the energy_l2 penalty, which squares them" if energy_l2 > 0 else ""
            raise FloatingPointError(f"the training loss is {loss.item()} from finite energies "
                                     f"(largest |E| {largest:.3g}): it overflowed {loss.dtype}"
                                     f"{where}")
        raise FloatingPointError(
            "non-finite energy in the training loss "
            f"(data: {int((~torch.isfinite(e_pos)).sum())} of {e_pos.numel()}, "
            f"samples: {int((~torch.isfinite(e_neg)).sum())} of {e_neg.numel()})"
        )
    return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}


def hybrid_loss(
    energy: ClassifierEnergy, x_pos: Tensor, y_pos: Tensor, x_neg: Tensor | None, *,
    x_neg_y: Tensor | None = None, px_weight: float = 1.0, pxy_weight: float = 0.0,
    energy_l2: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """JEM's objective (Grathwohl et al. 2020): ``-log p(y | x)`` plus the contrastive terms of
    ``log p(x)`` and, optionally, ``log p(x, y)``:

    ``cross_entropy(f(x_pos), y_pos)
    + px_weight * [mean E(x_pos[:M]) - mean E(x_neg)]
    + pxy_weight * [mean E(x_pos[:M], y_pos[:M]) - mean E(x_neg_y, y_pos[:M])]``

    each contrastive term with its ``energy_l2`` penalty (:func:`contrastive_divergence`).
    The contrastive terms read the first ``M = len(x_neg)`` examples of the batch (a random
    batch, so a random sub-batch): the sampling they need costs far more than the classifier's
    term.

    Args:
        energy: the classifier as an energy.
        x_pos: ``(B, *S)`` labelled examples; ``y_pos``: ``(B,)`` their classes.
        x_neg: ``(M, *S)`` samples of the marginal energy, ``M <= B``; ``None`` when
            ``px_weight`` is 0.
        x_neg_y: ``(M, *S)`` samples of ``E(x, y_pos[:M])``; needed when ``pxy_weight > 0``.

    Returns:
        The scalar loss and detached diagnostics: ``ce``, ``accuracy`` (of the batch) and, with
        the p(x) term, ``e_pos``, ``e_neg``; with the p(x, y) term, ``e_pos_y``, ``e_neg_y``.

    Raises:
        FloatingPointError: a non-finite logit or energy.
        ValueError: an ``energy`` without logits, ``x_pos`` or ``y_pos`` not a tensor or on
            the meta device, no examples, labels of another shape, not integers or not in
            ``0 .. K - 1``, or a weight negative or not finite.
    """
    # A negative weight trains the model to make the data less likely than its samples; it
    # passed, or failed as a contrastive term "of weight -1.0" that "needs 1 to 6 samples".
    check_finite_number(px_weight, "px_weight")
    check_finite_number(pxy_weight, "pxy_weight")
    # Each failed inside: a plain energy on "'function' object has no attribute 'logits'",
    # arrays on ".is_floating_point", meta examples in the classifier's first layer.
    if not callable(getattr(energy, "logits", None)):
        raise ValueError(f"energy must be a classifier read as an energy (a ClassifierEnergy, "
                         f"with logits), got {type(energy).__name__}")
    for name, value in (("x_pos", x_pos), ("y_pos", y_pos)):
        check_tensor(value, name)
        check_not_meta(value, name)
    if y_pos.shape != x_pos.shape[:1]:
        raise ValueError(f"labels must be ({len(x_pos)},) for examples {tuple(x_pos.shape)}, "
                         f"got {tuple(y_pos.shape)}")
    if len(x_pos) == 0:  # the cross-entropy of no example is NaN, which came back unreported
        raise ValueError(f"examples {tuple(x_pos.shape)} hold no example")
    logits = energy.logits(x_pos)
    if not torch.isfinite(logits).all():
        raise FloatingPointError(f"non-finite logits in the training loss "
                                 f"({int((~torch.isfinite(logits)).sum())} of {logits.numel()})")
    # Once a step, beside the synchronisation just made: cross_entropy's own IndexError names
    # no argument, and on a GPU a bad label is a device-side assert.
    check_classes(y_pos, "labels", n_classes=logits.shape[1])
    loss = F.cross_entropy(logits, y_pos.long())
    stats = {"ce": loss.detach(),
             "accuracy": (logits.detach().argmax(1) == y_pos).float().mean()}
    for weight, samples, energy_fn, names in (
            (px_weight, x_neg, energy, ("e_pos", "e_neg")),
            (pxy_weight, x_neg_y, None, ("e_pos_y", "e_neg_y"))):
        if weight == 0:
            continue
        if samples is None or not 1 <= len(samples) <= len(x_pos):
            raise ValueError(f"a contrastive term of weight {weight} needs 1 to {len(x_pos)} "
                             f"samples, got {None if samples is None else tuple(samples.shape)}")
        m = len(samples)
        term, term_stats = contrastive_divergence(
            energy_fn if energy_fn is not None else energy.conditional(y_pos[:m]),
            x_pos[:m], samples, energy_l2=energy_l2)
        loss = loss + weight * term
        stats[names[0]], stats[names[1]] = term_stats["e_pos"], term_stats["e_neg"]
    return loss, stats
