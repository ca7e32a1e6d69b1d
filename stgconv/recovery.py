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

Refining a classical fill (measured on the shared video clips, issue 3)
-----------------------------------------------------------------------
Starting the completion from a strong classical fill (temporal interpolation) and letting the
model refine it only works when the model's gradient at that fill points towards the truth. With
a model learned for a few CPU minutes it mostly does not: the cosine between ``-grad E`` on the
missing entries and the residual ``truth - fill`` stays at 0.00-0.03, even for a model learned on
the *true* clip. Any sizeable move then raises the error, because the error is concentrated: a
quarter to a half of the missing entries are already exact after interpolation (static pixels
whose two observed ends agree) and a small share at moving edges carries most of it. Hence the
options below, each of which removes one way the loop damaged the fill:

- ``warmup``: learn the model on the fixed start before touching it, so the completion is never
  moved by an untrained network (with the Gaussian reference term and a small ``sigma`` an
  untrained model drags every missing entry towards 0);
- ``completion_sampler``: a separate, gentler sampler for the completion (no noise, small steps,
  ``grad_clip`` bounding each step's move) while the synthesis chains keep exploring;
- ``step_scale``: a diagonal preconditioner: per-entry scale of the completion's moves, e.g. the
  spread of the two observed ends each interpolated entry lies between
  (:func:`interpolation_spread`), so entries the fill is sure of stay put;
- ``holdout``: observed entries hidden from the loop and completed like the missing ones; the
  iteration whose estimate fits them best is returned (the start included), which chooses how
  far to refine from the data alone: not at all where the model does not help.

Together (the quick CPU recovery config: ``st_small``, sigma 0.5, 15 warm-up + 15 refinement
iterations, a few CPU minutes per 70x150x150 clip) they turn the naive loop's 3.5 -> 39 on
boiling_water into: boiling_water 3.51 / 4.01 (the start kept: the hold-out showed refining hurts
there), flag 7.34 -> 7.30 / 10.25 -> 10.20, fire_pot 10.47 -> 10.16 / 12.92 -> 12.66 (missing
frames / region masks, 0-255 error against temporal interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    """``recovered``: ``(C, *S)`` the estimate; ``synthesized``: the synthesis chains;
    ``history``: one dict of statistics per iteration (``loss``, ``e_pos``, ``e_neg``; ``error``
    when a ``truth_error`` was given; ``holdout_error`` (0-1 units of the data, mean absolute)
    with a ``holdout``); ``selected_iteration``: with a ``holdout``, the iteration whose estimate
    was returned (``-1``: the start, before any iteration), else the last iteration."""

    recovered: Tensor
    synthesized: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    selected_iteration: int = -1


def _bool_mask(name: str, mask: Tensor, observed: Tensor) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor, got {got}")
    try:
        return mask.to(observed.device).expand_as(observed)
    except RuntimeError as err:
        raise ValueError(
            f"{name} {tuple(mask.shape)} does not broadcast to observed {tuple(observed.shape)}"
        ) from err


def interpolation_spread(observed: Tensor, known: Tensor) -> Tensor:
    """Per missing entry, how unsure temporal interpolation is: ``|x[b] - x[a]|``, the spread of
    the observed values at the previous (``a``) and next (``b``) observed frame of that pixel and
    channel, which the interpolated value lies between.

    Zero where both ends agree (a static pixel: interpolation is exact there on real clips far
    more often than not), large at moving edges, where most of its error is. Entries with only
    one observed end (before the first or after the last observed frame), where nothing bounds
    the change, get the root-mean-square spread of the two-ended ones (a typical value: the
    largest would let those frames dominate any normalisation); observed entries get 0. Meant as
    ``step_scale`` for :func:`recover` (after any power and normalisation the caller chooses).

    Args:
        observed: ``(C, T, *S)`` (time on dim 1); values at missing entries are ignored.
        known: bool, broadcastable to ``observed``, True = observed.

    Returns:
        ``(C, T, *S)``, ``>= 0``.
    """
    known = _bool_mask("known", known, observed)
    if observed.dim() < 2:
        raise ValueError(f"observed must be (C, T, ...), got {tuple(observed.shape)}")
    T = observed.shape[1]
    shape = [1, T] + [1] * (observed.dim() - 2)
    t = torch.arange(T, device=observed.device).view(shape).expand(observed.shape)
    prev = torch.where(known, t, -1).cummax(dim=1).values
    nxt = torch.where(known, t, T).flip(1).cummin(dim=1).values.flip(1)
    values = torch.where(known, observed, 0)
    spread = (values.gather(1, nxt.clamp(max=T - 1)) - values.gather(1, prev.clamp(min=0))).abs()
    both = (prev >= 0) & (nxt < T)
    two_ended = spread[both & ~known]
    typical = two_ended.pow(2).mean().sqrt() if two_ended.numel() else spread.new_tensor(1.0)
    spread = torch.where(both, spread, typical)
    return torch.where(known, torch.zeros_like(spread), spread)


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
    step_scale: Tensor | None = None,
    holdout: Tensor | None = None,
) -> RecoveryResult:
    """Recover the missing entries of one example while learning ``energy`` from it.

    Iteration ``i`` runs the synthesis chains (``sampler``), moves the completion
    (``completion_sampler``; not during the first ``warmup`` iterations) and takes one Adam step
    on ``mean E(completion) - mean E(chains)``.

    Args:
        energy: trained in place with Adam (``lr``, ``betas``).
        sampler: runs the synthesis chains (and the completion, unless ``completion_sampler``).
        observed: ``(C, *S)``; values at missing entries are ignored (they may be NaN).
        known: bool, broadcastable to ``observed``; True = observed.
        init: ``(C, *S)`` starting completion (e.g. a classical fill); default: the observed
            entries and the observed mean elsewhere. With a ``holdout``, its held-out entries
            should hold a fill made *without* them (they are scored against the observed values).
        n_chains: synthesis chains, persistent across iterations, started from ``chain_init``.
        average_last: iterations whose completions are averaged into the result; at most
            ``n_iterations - warmup``.
        truth_error: optional ``(C, *S) -> float`` evaluated on the running estimate each
            iteration (for reporting only; it never feeds back).
        warmup: the first ``warmup`` iterations learn the model on the fixed ``init`` (the
            completion is not moved), so the completion chain starts under a model that already
            fits the clip instead of an untrained one.
        completion_sampler: sampler for the completion chain; default ``sampler``. Refining a
            good start wants a gentler chain than synthesis from scratch: ``noise_scale`` 0
            (descent to the nearby mode instead of a sample, whose per-entry noise only adds
            error), small steps, ``grad_clip`` to bound each step's move whatever the scale the
            energy has grown to.
        step_scale: ``>= 0``, broadcastable to ``observed``: a diagonal preconditioner ``m`` for
            the completion chain, which runs in ``z`` with ``x = x_start + m * z``: each step moves
            ``x`` by ``-(delta^2 / 2) m^2 grad E + delta m eps`` (the same stationary law as plain
            Langevin, different short-run moves). Entries with ``m = 0`` never move. The
            ``completion_sampler``'s ``clamp`` is applied to ``x`` after each run; its
            ``grad_clip`` bounds ``|m * grad E|``.
        holdout: bool, broadcastable, a subset of ``known``: observed entries hidden from the
            loop (treated as missing) and used to choose the estimate: the start or the running
            estimate of an iteration after the warm-up, whichever has the smallest mean absolute
            error on them (earliest on ties). Give it the structure of the real missing entries
            (e.g. :func:`holdout_like`), and build ``init`` and ``step_scale`` from
            ``known & ~holdout`` (a ``step_scale`` of 0 there would freeze the held-out entries and
            the start would always be chosen). The returned estimate keeps every observed entry,
            held-out ones included.

    Returns:
        :class:`RecoveryResult`; ``recovered`` keeps every observed entry exactly.

    Raises:
        ValueError: a non-bool or non-broadcasting mask, nothing observed, non-finite observed
            entries or ``init``, a ``holdout`` outside ``known`` or covering all of it, a negative
            or non-finite ``step_scale``, ``warmup``/``average_last``/``n_iterations``/``n_chains``
            out of range.
    """
    known = _bool_mask("known", known, observed)
    if not known.any():
        raise ValueError("nothing is observed: recovery needs at least one known entry")
    if not torch.isfinite(observed[known]).all():
        raise ValueError("observed has NaN or infinite values at known entries")
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    if not 0 <= warmup < n_iterations:
        raise ValueError(f"warmup must be in [0, n_iterations) = [0, {n_iterations}), got {warmup}")
    if not 1 <= average_last <= n_iterations - warmup:
        raise ValueError(
            f"average_last must be in [1, n_iterations - warmup] = [1, {n_iterations - warmup}], "
            f"got {average_last}"
        )
    visible = known
    if holdout is not None:
        holdout = _bool_mask("holdout", holdout, observed)
        if (holdout & ~known).any():
            raise ValueError("holdout must only mark observed entries (a subset of known)")
        if not holdout.any():
            raise ValueError("holdout marks no entry")
        visible = known & ~holdout
        if not visible.any():
            raise ValueError("holdout covers every observed entry: nothing is left to learn from")
    if init is None:
        init = torch.where(visible, observed, observed[visible].mean())
    if init.shape != observed.shape:
        raise ValueError(f"init {tuple(init.shape)} must match observed {tuple(observed.shape)}")
    if completion_sampler is None:
        completion_sampler = sampler
    constraint = KnownEntries(observed.unsqueeze(0), visible.unsqueeze(0))
    full = KnownEntries(observed.unsqueeze(0), known.unsqueeze(0))  # held-out entries restored
    completion = constraint.project(init.unsqueeze(0).clone())
    if not torch.isfinite(completion).all():
        raise ValueError("init has NaN or infinite values at missing entries")
    if step_scale is not None:
        try:
            step_scale = step_scale.to(observed).expand_as(observed).unsqueeze(0)
        except RuntimeError as err:
            raise ValueError(
                f"step_scale {tuple(step_scale.shape)} does not broadcast to observed "
                f"{tuple(observed.shape)}"
            ) from err
        if not (torch.isfinite(step_scale).all() and (step_scale >= 0).all()):
            raise ValueError("step_scale must be finite and >= 0")
        z_sampler = replace(completion_sampler, clamp=None)
        z_constraint = KnownEntries(torch.zeros_like(completion), visible.unsqueeze(0))

    def holdout_error(estimate: Tensor) -> float:
        return (estimate[0][holdout] - observed[holdout]).abs().mean().item()

    chains = chain_init.sample(
        (n_chains, *observed.shape), device=observed.device, dtype=observed.dtype,
        generator=generator,
    )
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=betas)
    running_sum = torch.zeros_like(completion)
    n_averaged = 0
    history = []
    best, best_error, selected = completion.clone(), float("inf"), n_iterations - 1
    if holdout is not None:
        best_error, selected = holdout_error(completion), -1
    for iteration in tqdm(range(n_iterations), disable=not progress, desc="recover"):
        if iteration >= warmup:
            if step_scale is None:
                completion = completion_sampler.run(
                    energy, completion, constraint=constraint, generator=generator
                )
            else:
                start = completion

                def preconditioned(z: Tensor) -> Tensor:
                    return energy(start + step_scale * z)

                z = z_sampler.run(
                    preconditioned, torch.zeros_like(start),
                    constraint=z_constraint, generator=generator,
                )
                completion = start + step_scale * z
                if completion_sampler.clamp is not None:
                    completion = completion.clamp(*completion_sampler.clamp)
                completion = constraint.project(completion)
        chains = sampler.run(energy, chains, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss, stats = contrastive_divergence(energy, completion, chains)
        loss.backward()
        optimizer.step()
        if iteration >= n_iterations - average_last:
            running_sum += completion
            n_averaged += 1
        estimate = running_sum / n_averaged if n_averaged else completion
        record = {
            "loss": loss.item(), "e_pos": stats["e_pos"].item(), "e_neg": stats["e_neg"].item()
        }
        if truth_error is not None:
            record["error"] = truth_error(full.project(estimate)[0])
        if holdout is not None:
            record["holdout_error"] = holdout_error(estimate)
            if iteration >= warmup and record["holdout_error"] < best_error:
                best, best_error, selected = estimate.clone(), record["holdout_error"], iteration
        history.append(record)
    if holdout is None:
        best = running_sum / n_averaged
    return RecoveryResult(
        recovered=full.project(best)[0], synthesized=chains, history=history,
        selected_iteration=selected,
    )


def holdout_like(
    known: Tensor, *, fraction: float = 0.2, shift: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Observed entries to hold out, shaped like the missing ones: the missing pattern of frame
    ``t - shift`` laid over frame ``t`` (whole frames for missing-frame masks, a block for region
    masks), restricted to observed entries, on a random ``fraction`` of the frames where that
    hides something (at least one frame).

    Args:
        known: bool ``(C, T, *S)`` or ``(T, *S)``, True = observed (time on dim -3 for videos:
            the first dim of ``(T, H, W)``, the second of ``(C, T, H, W)``).
        fraction: share of the eligible frames that get held-out entries, in ``(0, 1]``.
        shift: time offset of the borrowed pattern; default ``T // 2``.

    Returns:
        bool, ``known``'s shape, a subset of ``known``.
    """
    if known.dtype != torch.bool:
        raise ValueError(f"known must be a bool tensor, got {known.dtype}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    dim = known.dim() - 3
    if dim < 0:
        raise ValueError(f"known must be (T, H, W) or (C, T, H, W), got {tuple(known.shape)}")
    T = known.shape[dim]
    candidates = (~known).roll(T // 2 if shift is None else shift, dims=dim) & known
    other = [d for d in range(known.dim()) if d != dim]
    eligible = candidates.any(dim=other).nonzero().flatten().cpu()  # frames it would touch
    if eligible.numel() == 0:
        raise ValueError("no frame has observed entries under the shifted missing pattern; "
                         "try another shift")
    n = max(1, round(fraction * eligible.numel()))
    frames = eligible[torch.randperm(eligible.numel(), generator=generator)[:n]]
    chosen = torch.zeros(T, dtype=torch.bool)
    chosen[frames] = True
    shape = [1] * known.dim()
    shape[dim] = T
    return candidates & chosen.view(shape).to(known.device)
