"""Learning from incomplete data: recover missing entries while learning the model from them.

Xie et al. (STGConvNet) recover occluded or missing video frames by alternating

(a) a chain on the *missing* entries with the observed ones held by the :class:`KnownEntries`
    constraint, which completes the data under the current model, and
(b) one training step (:meth:`stgconv.train.Trainer.step`) that treats the current completion
    as the observed data and persistent synthesis chains as the samples.

Both run on the unchanged engine: any :class:`~stgconv.mcmc.base.Sampler` (Langevin, MALA, HMC)
moves the completion. The same loop serves any layout ``(C, *S)``: videos, images, voxels. The
result is the average of the completions over the last ``average_last`` iterations, a Monte
Carlo estimate of the posterior mean, which removes the per-step noise a single chain state
carries.

Refining a classical fill only helps where the model's gradient at that fill points towards the
truth; with models learned for a few CPU minutes it mostly does not (the measurements are in
``bench/README.md``, section ``recovery.py``). Hence the options of :func:`recover`, each of which
removes one way the loop can damage a good fill: ``warmup`` (learn before moving the
completion), a gentler :class:`CompletionChain` with a diagonal preconditioner ``step_scale``
(:class:`Preconditioned`: entries the fill is sure of stay put) and a ``holdout`` of observed
entries that chooses how far to refine, the untouched start included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from stgconv.baselines import mean_fill
from stgconv.baselines.video import observed_frames_around
from stgconv.checks import (
    check_bool_mask,
    check_clamp,
    check_dtype_for,
    check_finite_observed,
    check_generator,
    check_not_meta,
    expand_mask,
    is_int,
    is_real_scalar,
)
from stgconv.config import TrainConfig
from stgconv.console import progress_bar
from stgconv.energy.base import EnergyModel
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.constraints import KnownEntries
from stgconv.mcmc.init import NoiseInit
from stgconv.mcmc.persistent import PersistentChains
from stgconv.train import Trainer
from stgconv.types import EnergyFn


@dataclass
class RecoveryResult:
    """``recovered``: ``(C, *S)`` the estimate; ``synthesized``: ``(n_chains, C, *S)`` the
    synthesis chains after the last iteration;
    ``history``: one dict of statistics per iteration (``loss``, ``e_pos``, ``e_neg``;
    ``holdout_error`` (mean absolute, in the data's units) with a ``holdout``);
    ``selected_iteration``: with a ``holdout``, the iteration whose estimate was returned
    (``-1``: the start, before any iteration), else the last iteration."""

    recovered: Tensor
    synthesized: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    selected_iteration: int = -1


def _bool_mask(name: str, mask: Tensor, observed: Tensor, *, meaning: str = "True = observed"
               ) -> Tensor:
    check_bool_mask(mask, name, meaning=meaning)
    check_not_meta(mask, name)
    return expand_mask(mask.to(observed.device), observed, name, "observed")


def interpolation_spread(observed: Tensor, known: Tensor) -> Tensor:
    """Per missing entry, how unsure temporal interpolation is: ``|x[b] - x[a]|``, the spread of
    the observed values at the previous (``a``) and next (``b``) observed frame of that pixel and
    channel, which the interpolated value lies between.

    Zero where both ends agree (a static pixel: interpolation is exact there on real clips far
    more often than not), large at moving edges, where most of its error is. Entries with only
    one observed end (before the first or after the last observed frame), where nothing bounds
    the change, get the root-mean-square spread of the two-ended ones (a typical value: the
    largest would let those frames dominate any normalisation); observed entries get 0. Meant as
    ``step_scale`` of a :class:`CompletionChain`, to a power and normalised:
    :func:`spread_step_scale`.

    Args:
        observed: ``(C, T, *S)`` (time on dim 1); values at missing entries are ignored.
        known: bool, broadcastable to ``observed``, True = observed.

    Returns:
        ``(C, T, *S)``, ``>= 0``.

    Raises:
        ValueError: ``known`` not a bool mask broadcasting to ``observed``, ``observed`` not
            ``(C, T, ...)`` or not finite at an observed entry.
    """
    known = _bool_mask("known", known, observed)
    if observed.dim() < 2:
        raise ValueError(f"observed must be (C, T, ...), got {tuple(observed.shape)}")
    # As recover's check: a NaN at an observed entry came back as NaN spreads, a step scale
    # that CompletionChain's own check then blamed on the step scale, not on observed.
    check_finite_observed(observed, known, "observed")
    T = observed.shape[1]
    _, prev, nxt = observed_frames_around(known.expand(observed.shape))
    values = torch.where(known, observed, 0)
    spread = (values.gather(1, nxt.clamp(max=T - 1)) - values.gather(1, prev.clamp(min=0))).abs()
    both = (prev >= 0) & (nxt < T)
    two_ended = spread[both & ~known]
    typical = two_ended.pow(2).mean().sqrt() if two_ended.numel() else spread.new_tensor(1.0)
    spread = torch.where(both, spread, typical)
    return torch.where(known, torch.zeros_like(spread), spread)


def spread_step_scale(observed: Tensor, known: Tensor, *, power: float = 1.0) -> Tensor:
    """A :class:`CompletionChain` ``step_scale``: :func:`interpolation_spread` to ``power``,
    divided by its root mean square over the missing entries, so that the completion sampler's
    step size keeps its meaning whatever the clip's motion (the typical missing entry moves as
    the plain sampler would).

    Where every missing entry's observed ends agree (a still clip, a static background) the
    spread is 0 everywhere and is returned as is: interpolation is taken as exact there and the
    chain moves nothing.

    Args:
        observed: ``(C, T, *S)`` (time on dim 1); values at missing entries are ignored.
        known: bool, broadcastable to ``observed``, True = observed (with a ``holdout`` of
            :func:`recover`: ``known & ~holdout``, the entries the loop sees).
        power: finite, ``>= 0`` (the config's ``recovery.step_scale_power``).

    Returns:
        ``(C, T, *S)``, ``>= 0``; 0 at observed entries (for ``power > 0``).
    """
    if not (math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    spread = interpolation_spread(observed, known) ** power
    typical = spread[~_bool_mask("known", known, observed)].pow(2).mean().sqrt()
    return spread / typical if typical > 0 else spread


class Preconditioned:
    """The energy of ``z`` for ``x = start + scale * z``: a diagonal preconditioner as an energy.

    A sampler run on it from ``z = 0`` moves ``x`` by ``-(delta^2 / 2) scale^2 grad E +
    delta scale eps`` per Langevin step (the same stationary law as plain Langevin, different
    short-run moves); entries with ``scale = 0`` never move. A constraint on ``x`` that keeps
    entries fixed is :meth:`constraint` on ``z``.

    Args:
        energy: ``(B, *S) -> (B,)``.
        start: ``(B, *S)``, the point ``z = 0`` maps to.
        scale: ``>= 0``, broadcastable to ``start``.
    """

    def __init__(self, energy: EnergyFn, start: Tensor, scale: Tensor) -> None:
        self.energy = energy
        self.start = start
        self.scale = scale

    def __call__(self, z: Tensor) -> Tensor:
        """``E(start + scale * z)`` ``(B,)`` of ``z`` ``(B, *S)``."""
        return self.energy(self.to_x(z))

    def to_x(self, z: Tensor) -> Tensor:
        """``start + scale * z``, ``(B, *S)``."""
        return self.start + self.scale * z

    def constraint(self, known: Tensor) -> KnownEntries:
        """Hold the ``known`` entries (bool, broadcastable to ``start`` ``(B, *S)``) of ``x``
        (those of ``start``): ``z = 0`` there."""
        return KnownEntries(torch.zeros_like(self.start), known)


@dataclass(frozen=True)
class CompletionChain:
    """How the completion moves in each iteration: ``sampler`` on the energy with the visible
    entries held; with a ``step_scale``, through :class:`Preconditioned`.

    Refining a good start wants a gentler chain than synthesis from scratch: no noise, small
    steps, a bounded step (Langevin's ``grad_clip``).

    Args:
        sampler: any sampler. With a ``step_scale`` it runs on ``z``, so give it no clamp of
            its own (a clamp would bound ``z``, not ``x``) and set ``clamp`` here instead.
        step_scale: ``>= 0``, broadcastable to the example ``(C, *S)``: the per-entry scale of
            the moves; entries at 0 never move.
        clamp: ``(low, high)`` bounds of the preconditioned completion after each run.
    """

    sampler: Sampler
    step_scale: Tensor | None = None
    clamp: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_clamp(self.clamp)
        # A number failed only inside recover ("'float' object has no attribute 'to'").
        if self.step_scale is not None and not isinstance(self.step_scale, Tensor):
            raise ValueError(f"step_scale must be a tensor or None, got "
                             f"{type(self.step_scale).__name__} {self.step_scale!r} (for one "
                             "scale everywhere: torch.tensor(scale))")

    def move(self, energy: EnergyFn, completion: Tensor, constraint: KnownEntries, *,
             generator: torch.Generator | None = None) -> Tensor:
        """One run on ``constraint`` from ``completion`` ``(1, C, *S)`` (projected onto it
        first); returns ``(1, C, *S)``."""
        check_generator(generator, "CompletionChain.move")
        if self.step_scale is None:
            return self.sampler.run(energy, completion, constraint=constraint, generator=generator)
        # The chain holds z at 0 on the known entries, so x keeps the start's values there:
        # a start off the constraint (a caller's fill of every entry) fed the energy its
        # fill, not the observed values, at every step, and only the result was projected.
        preconditioned = Preconditioned(energy, constraint.project(completion), self.step_scale)
        z = self.sampler.run(preconditioned, torch.zeros_like(completion),
                             constraint=preconditioned.constraint(constraint.known),
                             generator=generator)
        moved = preconditioned.to_x(z)
        if self.clamp is not None:
            moved = moved.clamp(*self.clamp)
        return constraint.project(moved)


def recover(
    energy: EnergyModel,
    sampler: Sampler,
    observed: Tensor,
    known: Tensor,
    *,
    init: Tensor | None = None,
    train: TrainConfig | None = None,
    n_chains: int = 2,
    chain_init: NoiseInit = NoiseInit("gaussian", 0.0),
    average_last: int = 10,
    warmup: int = 0,
    completion: CompletionChain | None = None,
    holdout: Tensor | None = None,
    select: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> RecoveryResult:
    """Recover the missing entries of one example while learning ``energy`` from it.

    Iteration ``i`` moves the completion (``completion``; not during the first ``warmup``
    iterations), then takes one :meth:`~stgconv.train.Trainer.step` with the completion as the
    data: the synthesis chains (``sampler``, persistent) and one Adam step on
    ``mean E(completion) - mean E(chains)``. It works inside ``torch.no_grad()`` (the steps turn
    autograd back on), not inside ``torch.inference_mode()``.

    Args:
        energy: trained in place; a recovery stopped part way (a chain that diverged, an
            interrupt) leaves it as trained so far, so load it again before another try.
        sampler: runs the synthesis chains (and the completion, unless ``completion``).
        observed: ``(C, *S)``; values at missing entries are ignored (they may be NaN).
        known: bool, broadcastable to ``observed``; True = observed.
        init: ``(C, *S)`` starting completion (e.g. a classical fill); default: the observed
            mean (:func:`stgconv.baselines.mean_fill`). With a ``holdout``, its held-out
            entries should hold a fill made *without* them (they are scored against the
            observed values).
        train: ``n_iterations`` and the optimiser (``lr``, ``betas``, ``energy_l2``), as for
            :class:`~stgconv.train.Trainer`; default :class:`~stgconv.config.TrainConfig`.
        n_chains: synthesis chains, persistent across iterations, started from ``chain_init``.
        average_last: iterations whose completions are averaged into the result; at most
            ``n_iterations - warmup``.
        warmup: the first ``warmup`` iterations learn the model on the fixed ``init``, so the
            completion chain starts under a model that already fits the example.
        completion: how the completion moves; default ``CompletionChain(sampler)``.
        holdout: bool, broadcastable, a subset of ``known``: observed entries hidden from the
            loop (treated as missing) and used to choose the estimate: the start or the running
            estimate of an iteration after the warm-up, whichever has the smallest mean absolute
            error on them (earliest on ties). Give it the structure of the real missing entries
            (:func:`holdout_like`), and build ``init`` (all of it: a fill of the missing
            entries beside held-out ones that saw them carries them into the loop) and the step
            scale from ``known & ~holdout``. The returned estimate keeps every observed entry.
        select: without a ``holdout``, return the running estimate of this iteration (``-1``:
            the start) and stop there: a choice made with a holdout, repeated on every observed
            entry (the schedule, e.g. the learning rate's, is the full one's).
        generator: every random draw (chains, noise) comes from it.

    Returns:
        :class:`RecoveryResult`; ``recovered`` keeps every observed entry exactly.

    Raises:
        ValueError: a non-bool or non-broadcasting mask, nothing observed, ``observed`` not
            floating point, a tensor on the meta device, non-finite observed entries or
            ``init``, a ``holdout`` outside ``known`` or covering all of it, a negative or
            non-finite step scale, ``warmup``/``average_last``/``train.n_iterations``/
            ``n_chains`` out of range, a ``select`` that is no such iteration.
    """
    train = train if train is not None else TrainConfig()
    check_generator(generator, "recover")
    # Data, not part of a graph: the training steps backpropagate into the energy alone (an
    # observed clip that required grad failed on the second "backward through the graph").
    observed = observed.detach()
    check_not_meta(observed, "observed")
    check_not_meta(init, "init")
    # Else the chains' start failed, naming noise ("noise is drawn in a floating point dtype").
    if not observed.is_floating_point():
        raise ValueError(f"observed must be floating point, got {observed.dtype} (convert it "
                         f"first, e.g. observed.float())")
    # Here, where the trainer below named the completion it learns from "data" (the net's own
    # check, at the first step, "x").
    check_dtype_for(observed, energy, "observed")
    init = init.detach() if init is not None else None
    check_schedule(train.n_iterations, n_chains, warmup, average_last)
    # A select of 1.5 failed in range(), naming no argument; True was taken as iteration 1.
    if select is not None and (holdout is not None or not is_int(select)
                               or not (select == -1 or warmup <= select < train.n_iterations)):
        raise ValueError(f"select must be -1 or an iteration in [warmup, n_iterations) = "
                         f"[{warmup}, {train.n_iterations}), without a holdout; got {select}")
    known, visible, holdout = _masks(observed, known, holdout)
    if init is None:
        init = mean_fill(observed[None], visible[None])[0]
    completion = _checked(completion if completion is not None else CompletionChain(sampler),
                          observed)
    constraint = KnownEntries(observed[None], visible[None])
    current = _start(constraint, init, observed)
    chains = PersistentChains(1, chain_init, chains_per_example=n_chains)
    # Drawn before the first move of the completion, which may draw noise too.
    chains.load_state_dict({"chains": chain_init.sample(
        (1, n_chains, *observed.shape), device=observed.device, dtype=observed.dtype,
        generator=generator)})
    trainer = Trainer(energy, sampler, chains, current.clone(), train=train, generator=generator)
    estimate = _Estimate(current, observed, holdout, train.n_iterations - average_last)
    history = []
    iterations = train.n_iterations if select is None else select + 1
    for iteration in progress_bar(range(iterations), disable=not progress, desc="recover"):
        if iteration >= warmup:
            current = completion.move(energy, current, constraint, generator=trainer.generator)
            trainer.data.copy_(current)
        record = trainer.step([torch.zeros(1, dtype=torch.long, device=observed.device)])
        record.update(estimate.add(current, iteration, selectable=iteration >= warmup))
        history.append(record)
    full = KnownEntries(observed[None], known[None])  # held-out entries restored
    return RecoveryResult(recovered=full.project(estimate.result())[0],
                          synthesized=chains.chains[0], history=history,
                          selected_iteration=estimate.selected)


def check_schedule(n_iterations: int, n_chains: int, warmup: int, average_last: int, *,
                   names: tuple[str, str, str, str] = ("n_iterations", "n_chains", "warmup",
                                                       "average_last")) -> None:
    """``ValueError`` naming the argument of :func:`recover`'s schedule that is out of range
    (callers with a slow start to make check it before making it); ``names``: what the
    caller's user calls the four (e.g. config keys)."""
    iterations, chains, warm, last = names
    # A warmup of 0.5 or average_last of 1.5 was taken and rounded by the loop's comparisons.
    for value, name in zip((n_iterations, n_chains, warmup, average_last), names):
        if not is_int(value):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if n_iterations < 1:
        raise ValueError(f"{iterations} must be >= 1, got {n_iterations}")
    if n_chains < 1:
        raise ValueError(f"{chains} must be >= 1, got {n_chains}")
    if not 0 <= warmup < n_iterations:
        raise ValueError(f"{warm} must be in [0, {iterations}) = [0, {n_iterations}), got "
                         f"{warmup}")
    if not 1 <= average_last <= n_iterations - warmup:
        raise ValueError(f"{last} must be in [1, {iterations} - {warm}] = "
                         f"[1, {n_iterations - warmup}], got {average_last}")


def _masks(observed: Tensor, known: Tensor, holdout: Tensor | None
           ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``known``, ``visible`` (what the loop sees) and ``holdout``, checked and expanded to
    ``observed``'s shape."""
    known = _bool_mask("known", known, observed)
    if not known.any():
        raise ValueError("nothing is observed: recovery needs at least one known entry")
    check_finite_observed(observed, known, "observed")
    if holdout is None:
        return known, known, None
    holdout = _bool_mask("holdout", holdout, observed, meaning="True = held out")
    if (holdout & ~known).any():
        raise ValueError("holdout must only mark observed entries (a subset of known)")
    if not holdout.any():
        raise ValueError("holdout marks no entry")
    visible = known & ~holdout
    if not visible.any():
        raise ValueError("holdout covers every observed entry: nothing is left to learn from")
    return known, visible, holdout


def _checked(completion: CompletionChain, observed: Tensor) -> CompletionChain:
    """``completion`` with its step scale checked and expanded to ``(1, C, *S)``."""
    step_scale = completion.step_scale
    if step_scale is None:
        return completion
    try:
        # Detached as observed is: a scale made of a clip that requires grad (spread_step_scale
        # of another network's output) put every move on its graph, and the second training
        # step failed ("Trying to backward through the graph a second time").
        step_scale = step_scale.detach().to(observed).expand_as(observed).unsqueeze(0)
    except RuntimeError as err:
        raise ValueError(f"step_scale {tuple(step_scale.shape)} does not broadcast to observed "
                         f"{tuple(observed.shape)}") from err
    bad = ~(torch.isfinite(step_scale) & (step_scale >= 0))
    if bad.any():
        raise ValueError(f"step_scale must be finite and >= 0; {int(bad.sum())} of "
                         f"{bad.numel()} entries are not (e.g. {step_scale[bad][0].item()})")
    return replace(completion, step_scale=step_scale)


def _start(constraint: KnownEntries, init: Tensor, observed: Tensor) -> Tensor:
    """The first completion ``(1, C, *S)``: ``init`` in ``observed``'s dtype and device, with
    the visible entries projected in."""
    if init.shape != observed.shape:
        raise ValueError(f"init {tuple(init.shape)} must match observed {tuple(observed.shape)}")
    completion = constraint.project(init.to(observed).unsqueeze(0).clone())
    if not torch.isfinite(completion).all():
        raise ValueError("init has NaN or infinite values at missing entries")
    return completion


class _Estimate:
    """The running estimate: the mean of the completions from iteration ``average_from`` on,
    or, with a ``holdout``, the estimate that fits the held-out entries best (the start
    included)."""

    def __init__(self, start: Tensor, observed: Tensor, holdout: Tensor | None,
                 average_from: int) -> None:
        self.observed, self.holdout, self.average_from = observed, holdout, average_from
        self.total, self.count, self.last = torch.zeros_like(start), 0, start
        self.best, self.best_error, self.selected = start.clone(), float("inf"), -1
        if holdout is not None:
            self.best_error = self._holdout_error(start)

    def _holdout_error(self, estimate: Tensor) -> float:
        return (estimate[0][self.holdout] - self.observed[self.holdout]).abs().mean().item()

    def add(self, completion: Tensor, iteration: int, *, selectable: bool) -> dict[str, float]:
        """Take iteration ``iteration``'s completion; returns ``holdout_error`` with a holdout."""
        if iteration >= self.average_from:
            self.total += completion
            self.count += 1
        self.last = completion
        self.selected = iteration if self.holdout is None else self.selected
        if self.holdout is None:
            return {}
        current = self.total / self.count if self.count else completion
        error = self._holdout_error(current)
        if selectable and error < self.best_error:
            self.best, self.best_error, self.selected = current.clone(), error, iteration
        return {"holdout_error": error}

    def result(self) -> Tensor:
        """The holdout's choice, else the running estimate of the last iteration taken (the
        start before any)."""
        if self.holdout is not None or self.selected == -1:
            return self.best
        return self.total / self.count if self.count else self.last


def _check_video_mask(known: Tensor) -> None:
    """``ValueError`` unless ``known`` is a bool ``(T, H, W)`` or ``(C, T, H, W)`` with values:
    a float mask failed in ``~`` ("only implemented on integer and Boolean-type tensors"), a
    frame's ``(H, W)`` with an IndexError, one on the meta device in ``bool()``."""
    check_bool_mask(known, "known")
    check_not_meta(known, "known")
    if known.dim() not in (3, 4):  # time on dim -3: a video's two spatial dims after it
        raise ValueError(f"known must be (T, H, W) or (C, T, H, W), got {tuple(known.shape)}")


def hiding_shifts(known: Tensor) -> list[int]:
    """The time shifts ``s`` (1 to T - 1) under which the missing pattern of frame ``t - s``
    (mod ``T``: the first frames take the last ones') covers observed entries of frame ``t``;
    ``known`` bool ``(T, H, W)`` or ``(C, T, H, W)`` (on short clips some shifts cover none:
    every other frame missing, shifted by two; a mask the same in every frame has none:
    :func:`spatial_shifts`); ``ValueError`` for another mask."""
    _check_video_mask(known)
    missing = ~known
    return [shift for shift in range(1, known.shape[-3])
            if bool((missing.roll(shift, dims=-3) & known).any())]


Shift = int | tuple[int, int]
"""How :func:`holdout_like` moves the missing pattern onto observed entries: a number of frames
(:func:`hiding_shifts`) or, for the entries missing in every frame (a fixed occluder), an offset
``(dy, dx)`` in pixels within each frame (:func:`spatial_shifts`)."""

SPATIAL_SHIFT_LIMIT = 4096
"""At most this many offsets are listed, evenly spaced among those that qualify, so that a large
frame's list stays short."""

SPATIAL_COVERAGE = 0.9
"""The share of the most that any offset moves of the missing pattern onto observed entries
inside the frame that an offset must move: below it, the held-out entries look less like the
missing ones than they are alike."""

SPATIAL_LEAST_MOVED = 0.5
"""The share of the missing pattern that the best offset must move onto observed entries: an
occluder and a hold-out in its shape (what the learned fill trains under) move together, and
no offset may keep both inside the frame, but one of the two moves whole."""


def always_missing(known: Tensor) -> Tensor:
    """The entries ``known`` (bool ``(T, H, W)`` or ``(C, T, H, W)``) hides in every frame, bool
    ``(C, 1, H, W)`` (``C = 1`` for ``(T, H, W)``): a fixed occluder, which no frame shows."""
    return (~known).reshape(-1, *known.shape[-3:]).all(dim=1, keepdim=True)


def hidden_whole_cause(known: Tensor) -> str:
    """Why observed entries hidden like the missing ones of ``known`` (bool ``(T, H, W)`` or
    ``(C, T, H, W)``; :func:`holdout_like`, the learned fill's patterns) can be all of them, for
    a refusal to say: too few observed frames, or entries missing in every frame (a fixed
    occluder) so large that, moved within the frame, they cover the rest of it (a half-frame
    occluder, which every frame shows the other half of, was blamed on its frames)."""
    if not bool(always_missing(known).any()):
        return "too few observed frames"
    occluder = ("the entries it hides in every frame cover so much of the frame that, moved "
                "within it, they cover the rest")
    return f"too few observed frames, or {occluder}" if hiding_shifts(known) else occluder


def spatial_shifts(known: Tensor) -> list[tuple[int, int]]:
    """For the entries a mask hides in every frame (a fixed occluder, which no shift in time
    moves onto observed entries, alone or beside missing entries that change from frame to
    frame; each channel its own where they differ), the offsets ``(dy, dx)`` that move nearly
    the most of them (a frame's, its channels together) that any offset moves inside the frame
    onto entries observed in some frame, without wrapping round its edges
    (:data:`SPATIAL_COVERAGE` of that most: all of it for an occluder small enough to move
    whole), at most :data:`SPATIAL_SHIFT_LIMIT` of them, evenly spaced among those; empty for a
    mask that hides no entry in every frame, or one whose fixed entries cover too much of the
    frame to move half of them (:data:`SPATIAL_LEAST_MOVED`) onto observed ones.

    Args:
        known: bool ``(T, H, W)`` or ``(C, T, H, W)``, True = observed.

    Returns:
        ``[(dy, dx), ...]`` in row-major order: the pattern moved by ``dy`` rows down and ``dx``
        columns right.

    Raises:
        ValueError: another mask (not bool, another layout, on the meta device).
    """
    _check_video_mask(known)
    missing = always_missing(known)[:, 0]  # (C, H, W), C = 1 for (T, H, W)
    n_missing = int(missing.sum())
    if n_missing == 0:
        return []
    H, W = missing.shape[-2:]
    # How many missing entries each offset moves onto observed ones inside the frame: the
    # cross-correlation of the missing and observed maps, zero-padded so nothing wraps (an FFT:
    # a direct count is H * W products for each of the ~4 * H * W offsets).
    size = (2 * H, 2 * W)
    spectrum = (torch.fft.rfft2(missing.double().cpu(), s=size).conj()
                * torch.fft.rfft2((~missing).double().cpu(), s=size))
    landed = torch.fft.irfft2(spectrum, s=size).sum(0).round()  # landed[dy % 2H, dx % 2W]
    # Rolled so that row-major order runs from the offset (1 - H, 1 - W) to (H - 1, W - 1).
    landed = landed.roll((H - 1, W - 1), dims=(0, 1))[:2 * H - 1, :2 * W - 1]
    most = float(landed.max())
    if most < SPATIAL_LEAST_MOVED * n_missing:
        return []
    offsets = (landed >= SPATIAL_COVERAGE * most).nonzero() - torch.tensor([H - 1, W - 1])
    # Thinned after the count, not by a coarser grid of offsets tried: a grid of every other
    # row missed every offset of a mask of every other row missing (interlacing).
    step = max(1, -(-len(offsets) // SPATIAL_SHIFT_LIMIT))
    return [(dy, dx) for dy, dx in offsets[::step].tolist()]


def shifted_in_frame(mask: Tensor, offset: tuple[int, int]) -> Tensor:
    """``mask`` bool ``(..., H, W)`` moved ``offset = (dy, dx)`` (rows down, columns right)
    within each frame: what moves past an edge is dropped, what enters is False."""
    dy, dx = offset
    H, W = mask.shape[-2:]
    moved = torch.zeros_like(mask)
    if abs(dy) < H and abs(dx) < W:
        moved[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            mask[..., max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return moved


def holdout_like(
    known: Tensor, *, fraction: float = 0.2, shift: Shift | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Observed entries to hold out, shaped like the missing ones: the missing pattern of frame
    ``t - shift`` (mod ``T``) laid over frame ``t`` (whole frames for missing-frame masks, a
    block for region masks), restricted to observed entries, on a random ``fraction`` of the
    frames where that hides something (at least one frame); or the entries missing in every
    frame (a fixed occluder) moved within the frame, in every frame as the occluder is.

    Args:
        known: bool ``(T, H, W)`` or ``(C, T, H, W)``, True = observed (time on dim -3).
        fraction: share of the eligible frames that get held-out entries, in ``(0, 1]`` (a
            shift in time only).
        shift: a :data:`Shift`: frames (an int) or an offset ``(dy, dx)`` in pixels (which
            moves the entries missing in every frame alone: refused for a mask with none); default
            the time shift nearest ``T // 2`` under which the pattern hides something (on short
            clips ``T // 2`` may hide nothing: every other frame missing and ``T // 2`` even)
            and, where the mask also hides entries in every frame, one of
            :func:`spatial_shifts` drawn from ``generator``: both held out together, so that a
            fixed occluder beside missing frames is held out too.

    Returns:
        bool, ``known``'s shape, a subset of ``known``.
    """
    _check_video_mask(known)
    if not (is_real_scalar(fraction) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    fraction = float(fraction)  # a 0-d tensor passed the check and failed in round()
    check_generator(generator, "holdout_like")
    if not bool(known.any()):
        raise ValueError("the mask leaves no entry observed: there is nothing to recover from")
    if bool(known.all()):
        raise ValueError("the mask hides no entry: there is nothing to recover")
    if shift is not None:
        return _held_out(known, shift, fraction, generator)
    T = known.shape[-3]

    def distance_from_middle(s: int) -> tuple[int, int]:
        return abs(s - T // 2), s  # ties: the earlier shift

    shifts: list[Shift] = []
    if (frames := hiding_shifts(known)):
        shifts.append(min(frames, key=distance_from_middle))
    if (offsets := spatial_shifts(known)):
        shifts.append(offsets[int(torch.randint(len(offsets), (1,), generator=generator))])
    if not shifts:
        raise _no_holdout("any shift in time or space")
    held = [_held_out(known, one, fraction, generator) for one in shifts]
    return held[0] if len(held) == 1 else held[0] | held[1]


def _held_out(known: Tensor, shift: Shift, fraction: float, generator: torch.Generator | None
              ) -> Tensor:
    """:func:`holdout_like` for one ``shift`` (checked here)."""
    dim = known.dim() - 3
    T = known.shape[dim]
    if isinstance(shift, tuple):
        # The fixed occluder alone: a moved frame-to-frame pattern (whole missing frames moved
        # stay on themselves) is the time shifts' to hold out.
        offset = _offset(shift)
        fixed = always_missing(known).reshape(*known.shape[:-3], 1, *known.shape[-2:])
        if not bool(fixed.any()):  # else refused as if nothing observed lay under the move
            raise ValueError("an offset (dy, dx) moves the entries the mask hides in every "
                             "frame, and this one hides none in every frame: give a shift in "
                             "time (hiding_shifts)")
        candidates, moved = shifted_in_frame(fixed, offset) & known, f"{shift} pixels"
    else:
        candidates, moved = (~known).roll(_frames(shift), dims=dim) & known, f"{shift} frames"
    other = [d for d in range(known.dim()) if d != dim]
    eligible = candidates.any(dim=other).nonzero().flatten().cpu()  # frames it would touch
    if eligible.numel() == 0:
        raise _no_holdout(moved)
    if isinstance(shift, tuple):
        # In every frame, as the fixed pattern it moves: held out in some frames only, the
        # entries would be filled from the others (temporal interpolation exactly), where the
        # missing ones have no frame that shows them; the fill that won such a holdout (measured
        # on boiling water: temporal interpolation, 1.5x the error of the best fill) lost.
        return candidates
    n = max(1, round(fraction * eligible.numel()))
    frames = eligible[torch.randperm(eligible.numel(), generator=generator)[:n]]
    chosen = torch.zeros(T, dtype=torch.bool)
    chosen[frames] = True
    shape = [1] * known.dim()
    shape[dim] = T
    return candidates & chosen.view(shape).to(known.device)


def _no_holdout(moved: str) -> ValueError:
    return ValueError(f"no frame has observed entries under the missing pattern moved by {moved}, "
                      f"so no hold-out shaped like it exists; set recovery.holdout: 0 to recover "
                      f"without the hold-out check")


def _frames(shift: object) -> int:
    """A time shift given to :func:`holdout_like`, checked: ``roll`` took a float's whole part
    without a word."""
    if not is_int(shift):
        raise ValueError(f"shift must be a number of frames or an offset (dy, dx) in pixels, "
                         f"got {shift!r}")
    return int(shift)


def _offset(shift: tuple) -> tuple[int, int]:
    """An offset ``(dy, dx)`` given to :func:`holdout_like`, checked."""
    if len(shift) != 2 or not all(is_int(step) for step in shift):
        raise ValueError(f"an offset shift must be (dy, dx), two whole numbers of pixels, "
                         f"got {shift!r}")
    return int(shift[0]), int(shift[1])
