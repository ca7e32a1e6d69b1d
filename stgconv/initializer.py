"""Learned initializers for the conditional tasks: fast thinking before the descriptor's slow
thinking.

Super-resolution and recovery here are conditional sampling: the descriptor's chain fills in
what the condition leaves open (the detail inside each block, keeping ``block_down(x) == low``;
the missing voxels, keeping the observed ones). Where that chain starts matters as much as how
long it runs (``bench/README.md``, ``voxel_eval.py``). So, as in the cooperative conditional
learning of Xie et al. ("Cooperative Training of Fast Thinking Initializer and Slow Thinking
Solver for Conditional Learning", TPAMI 2021), a feed-forward network learns to propose the
start directly from the condition, and the descriptor's chain revises it.

Both networks work on a coarser grid: each coarse cell carries its block's ``f^d`` fine entries
as channels (space-to-depth), so a 3-D ConvNet on a 16^3 grid with 64 channels sees 64^3 detail
at the cost of a 16^3 grid. They output one logit per fine entry, added to a fixed logit of a
classical guess (:class:`BlockUpsampler`: the trilinear up-sampling of ``low``;
:class:`MaskedFiller`: the nearest-known fill), so an untrained network proposes that guess.
Their training is supervised: the training shapes give the pairs (block means or a randomly
masked shape, the shape), and they minimise binary cross-entropy on occupancy
(:class:`InitializerTrainer`, one descriptor step then a few initializer steps per iteration).
Unlike the authors, who teach the initializer the solver's revisions, we teach it the data,
which these pairs give exactly; the revisions would also teach it the solver's errors.

Binary occupancy only (voxel shapes): the logits are the log-odds of "occupied".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgconv.baselines.voxel import nearest_known_fill
from stgconv.checks import as_int, check_bool_mask, check_dtype, check_generator, expand_mask
from stgconv.config import InitializerConfig, TrainConfig
from stgconv.distributed import World
from stgconv.energy.base import EnergyModel
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.starts import ChainStart, RecoveryStart, SuperResolutionStart
from stgconv.ops import block_down, linear_up
from stgconv.train import (
    Companion,
    CompanionTrainer,
    DivergenceError,
    companion_from_state,
    training_step,
)

# The classical guess (trilinear up-sampling, nearest-known fill) enters the logits as
# GUIDE_LOGIT * (p - 1/2): steep enough that an untrained net is a sharpened classical guess
# (0.9 occupancy -> probability 0.96), and monotone, so it ranks entries as the guess does.
GUIDE_LOGIT = 8.0
# The key of the recovery filler among an Initializer's nets (the others are block sizes).
RECOVERY = "recovery"

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def space_to_depth(x: Tensor, factor: int) -> Tensor:
    """``(B, C, N1, ..., Nk) -> (B, C * f^k, N1/f, ..., Nk/f)``: each block's entries as
    channels; every ``Ni`` a multiple of ``f``."""
    b, c, *sizes = x.shape
    if any(size % factor for size in sizes):  # else the reshape fails, naming neither
        raise ValueError(f"space_to_depth: the sizes {tuple(sizes)} of x {tuple(x.shape)} must "
                         f"be multiples of the factor {factor}")
    k = len(sizes)
    split = [n for size in sizes for n in (size // factor, factor)]
    x = x.reshape(b, c, *split)
    order = (0, 1, *(3 + 2 * i for i in range(k)), *(2 + 2 * i for i in range(k)))
    return x.permute(order).reshape(b, c * factor**k, *(size // factor for size in sizes))


def depth_to_space(x: Tensor, factor: int) -> Tensor:
    """The inverse of :func:`space_to_depth`: ``(B, C * f^k, n1, ..., nk) -> (B, C, n1 * f,
    ..., nk * f)``."""
    b, cf, *coarse = x.shape
    k = len(coarse)
    if cf % factor**k:  # else the reshape fails, naming neither
        raise ValueError(f"depth_to_space: the channels {cf} of x {tuple(x.shape)} must be a "
                         f"multiple of factor^{k} = {factor}^{k} = {factor**k}")
    c = cf // factor**k
    x = x.reshape(b, c, *(factor,) * k, *coarse)
    order = (0, 1, *(n for i in range(k) for n in (2 + k + i, 2 + i)))
    return x.permute(order).reshape(b, c, *(n * factor for n in coarse))


class _CoarseNet(nn.Module):
    """The residual ConvNet both initializers share, on a grid ``fold`` times coarser than the
    shape: ``depth`` 3^k convolutions with ReLU, residual in the middle, ``in_channels`` in and
    ``fold^k`` logits per coarse cell out. The last convolution starts at zero, so an untrained
    net adds nothing to the fixed guess its subclass adds it to."""

    def __init__(self, in_channels: int, fold: int, *, spatial_dims: int, width: int,
                 depth: int) -> None:
        super().__init__()
        if spatial_dims not in _CONVS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
        as_int(width, "width", minimum=1)
        as_int(depth, "depth", minimum=2)
        self.spatial_dims = spatial_dims
        conv = _CONVS[spatial_dims]
        self.first = conv(in_channels, width, 3, padding=1)
        self.body = nn.ModuleList(conv(width, width, 3, padding=1) for _ in range(depth - 2))
        self.last = conv(width, fold**spatial_dims, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def correction(self, coarse: Tensor, fold: int) -> Tensor:
        """``(B, in_channels, n1, ..., nk) -> (B, 1, n1 * fold, ..., nk * fold)``."""
        h = F.relu(self.first(coarse))
        for layer in self.body:
            h = h + F.relu(layer(h))
        return depth_to_space(self.last(h), fold)


class BlockUpsampler(_CoarseNet):
    """Super-resolution: ``low (B, 1, n1, ..., nk) -> logits (B, 1, n1 * f, ..., nk * f)`` of
    fine occupancy.

    Its input is ``low`` and the trilinear up-sampling of ``low`` folded into channels
    (:func:`space_to_depth`); its output is added to ``GUIDE_LOGIT * (trilinear - 1/2)``, so an
    untrained net ranks every block's entries as the trilinear up-sampling does.

    Args:
        factor: block size ``f``.
        spatial_dims: ``k``, 1 to 3 (3 for voxels).
        width: channels of the hidden layers.
        depth: convolutions, at least 2.
    """

    def __init__(self, factor: int, *, spatial_dims: int = 3, width: int = 64, depth: int = 6
                 ) -> None:
        self.factor = as_int(factor, "factor", minimum=2)
        super().__init__(1 + factor**spatial_dims, factor, spatial_dims=spatial_dims,
                         width=width, depth=depth)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    def forward(self, low: Tensor) -> Tensor:
        """Logits ``(B, 1, n1 * f, ..., nk * f)`` of fine occupancy from block means ``low``
        ``(B, 1, n1, ..., nk)`` in ``[0, 1]``."""
        if low.dim() != self.spatial_dims + 2 or low.shape[1] != 1:
            raise ValueError(f"low must be (B, 1, {', '.join(['n'] * self.spatial_dims)}), got "
                             f"{tuple(low.shape)}")
        check_dtype(low, next(self.parameters()).dtype, "low")  # as ConvNetEnergy's check
        trilinear = linear_up(low, (self.factor,) * self.spatial_dims).clamp(0.0, 1.0)
        coarse = torch.cat([low, space_to_depth(trilinear, self.factor)], dim=1)
        return self.correction(coarse, self.factor) + GUIDE_LOGIT * (trilinear - 0.5)


class MaskedFiller(_CoarseNet):
    """Recovery: ``(observed, known) (B, 1, *S) -> logits (B, 1, *S)`` of occupancy.

    Its input is the observed entries (0 where missing), the mask and the nearest-known fill
    (:func:`stgconv.baselines.voxel.nearest_known_fill`), folded by ``fold`` into channels; its
    output is added to ``GUIDE_LOGIT * (fill - 1/2)``, so an untrained net proposes the
    nearest-known fill.

    Args:
        fold: the coarse grid's block size (every side of ``S`` must be a multiple).
        spatial_dims, width, depth: as :class:`BlockUpsampler`.
    """

    def __init__(self, fold: int = 2, *, spatial_dims: int = 3, width: int = 64,
                 depth: int = 6) -> None:
        self.fold = as_int(fold, "fold", minimum=1)
        super().__init__(3 * fold**spatial_dims, fold, spatial_dims=spatial_dims, width=width,
                         depth=depth)

    def extra_repr(self) -> str:
        return f"fold={self.fold}"

    def forward(self, observed: Tensor, known: Tensor) -> Tensor:
        """Logits ``(B, 1, *S)`` of occupancy from ``observed`` ``(B, 1, *S)`` in ``[0, 1]``
        (read only where ``known``, bool, broadcastable to it)."""
        if observed.dim() != self.spatial_dims + 2 or observed.shape[1] != 1:
            raise ValueError(f"observed must be (B, 1, {', '.join(['S'] * self.spatial_dims)}), "
                             f"got {tuple(observed.shape)}")
        if any(n % self.fold for n in observed.shape[2:]):
            raise ValueError(f"the grid {tuple(observed.shape[2:])} is not a multiple of the "
                             f"filler's fold {self.fold}")
        check_dtype(observed, next(self.parameters()).dtype, "observed")  # as ConvNetEnergy's
        check_bool_mask(known, "known")
        known = expand_mask(known, observed, "known", "observed")
        seen = torch.where(known, observed, torch.zeros_like(observed))
        fill = nearest_known_fill(seen, known)
        inputs = torch.cat([seen, known.to(observed.dtype), fill], dim=1)
        return (self.correction(space_to_depth(inputs, self.fold), self.fold)
                + GUIDE_LOGIT * (fill - 0.5))


class Initializer(nn.Module):
    """The proposals of one model: a :class:`BlockUpsampler` per block size it serves (e.g. 4,
    16^3 -> 64^3, and 2, 32^3 -> 64^3) and/or a :class:`MaskedFiller` for recovery.

    Args:
        factors: super-resolution block sizes, distinct, each at least 2 (may be empty).
        recovery: also a recovery filler, on a grid ``fold`` times coarser.
        spatial_dims, width, depth: as :class:`BlockUpsampler`.
    """

    def __init__(self, factors: Sequence[int] = (), *, recovery: bool = False, fold: int = 2,
                 spatial_dims: int = 3, width: int = 64, depth: int = 6) -> None:
        super().__init__()
        factors = [as_int(f, "factor", minimum=2) for f in factors]
        if len(set(factors)) != len(factors) or not (factors or recovery):
            raise ValueError(f"an initializer needs distinct super-resolution factors or a "
                             f"recovery filler, got factors {factors}, recovery {recovery}")
        nets: dict[str, nn.Module] = {
            str(f): BlockUpsampler(f, spatial_dims=spatial_dims, width=width, depth=depth)
            for f in factors}
        if recovery:
            nets[RECOVERY] = MaskedFiller(fold, spatial_dims=spatial_dims, width=width,
                                          depth=depth)
        self.nets = nn.ModuleDict(nets)
        self.config = {"factors": factors, "recovery": recovery, "fold": fold,
                       "spatial_dims": spatial_dims, "width": width, "depth": depth}

    @property
    def factors(self) -> list[int]:
        return [int(f) for f in self.nets if f != RECOVERY]

    @property
    def recovers(self) -> bool:
        return RECOVERY in self.nets

    def serves(self, factor: int) -> bool:
        return str(factor) in self.nets

    def logits(self, low: Tensor, factor: int) -> Tensor:
        """``(B, 1, n1, ..., nk) -> (B, 1, n1 * f, ..., nk * f)`` log-odds of occupancy.

        Raises:
            ValueError: no net of block size ``factor``.
        """
        if not self.serves(factor):
            raise ValueError(f"this initializer learned block sizes {self.factors}, not {factor}")
        return self.nets[str(factor)](low)

    @torch.no_grad()
    def propose(self, low: Tensor, factor: int) -> Tensor:
        """Occupancy probabilities ``(B, 1, n1 * f, ..., nk * f)`` in ``[0, 1]``, the chain's
        start (not yet consistent with ``low``: the sampler projects it)."""
        return torch.sigmoid(self.logits(low, factor))

    def fill_logits(self, observed: Tensor, known: Tensor) -> Tensor:
        """``(B, 1, *S)`` log-odds of occupancy of every entry; reads ``observed`` only where
        ``known`` (bool, broadcastable).

        Raises:
            ValueError: no recovery filler.
        """
        if not self.recovers:
            raise ValueError("this initializer has no recovery filler (it was trained for "
                             f"super-resolution with block sizes {self.factors})")
        return self.nets[RECOVERY](observed, known)

    @torch.no_grad()
    def propose_fill(self, observed: Tensor, known: Tensor) -> Tensor:
        """``(B, 1, *S)`` occupancy: ``observed`` ``(B, 1, *S)`` where ``known`` (bool,
        broadcastable), the filler's probabilities elsewhere (a :data:`stgconv.types.Fill`)."""
        return torch.where(known, observed, torch.sigmoid(self.fill_logits(observed, known)))


def build_initializer(config: dict[str, Any]) -> Initializer:
    """An untrained :class:`Initializer` from its ``config`` (as stored in checkpoints)."""
    return Initializer(config["factors"], recovery=config["recovery"], fold=config["fold"],
                       spatial_dims=config["spatial_dims"], width=config["width"],
                       depth=config["depth"])


class InitializerStart(SuperResolutionStart):
    """Chain starts proposed by the initializer from each example's block means, in the model's
    units (occupancy minus ``offset``), kept consistent with them: the super-resolution start
    and constraint (:class:`~stgconv.mcmc.starts.SuperResolutionStart`), the start learned.

    Args:
        initializer: serves ``factor``.
        factor: block size of the training chains, over ``spatial_dims`` trailing dims.
        offset: the model's occupancy offset (:meth:`stgconv.modalities.Modality.offset`).
    """

    def __init__(self, initializer: Initializer, factor: int, *, spatial_dims: int = 3,
                 offset: float = 0.0) -> None:
        if not initializer.serves(factor):
            raise ValueError(f"the initializer learns block sizes {initializer.factors}; the "
                             f"training chains need {factor}")
        super().__init__((factor,) * spatial_dims)
        self.initializer, self.block, self.offset = initializer, factor, offset

    def start(self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
              ) -> Tensor:
        """The initializer's proposal ``(B, 1, *S)`` from the block means of ``x_pos``
        ``(B, 1, *S)`` (no draw: ``generator`` is only checked, as every start's)."""
        check_generator(generator, "InitializerStart.start")
        low = block_down(x_pos, self.factor) + self.offset
        return self.initializer.propose(low, self.block) - self.offset


class InitializerTrainer(CompanionTrainer):
    """The descriptor learns its conditional task from chains that start at the initializer's
    proposals; after each of its steps the initializer takes ``settings.steps`` supervised
    steps on random batches of the training shapes: binary cross-entropy of
    ``logits(block_down(x))`` against ``x`` for every block size it serves, and for a recovery
    filler of ``fill_logits`` against ``x`` on a fresh random ``missing`` fraction of hidden
    entries (scored there only).

    With a recovery filler the training chains are recovery chains
    (:class:`~stgconv.mcmc.starts.RecoveryStart`, started from the filler's proposal), else
    super-resolution chains of block size ``factor`` (:class:`InitializerStart`).

    Args:
        energy, sampler, data, train, generator, config, world: as :class:`Trainer`; ``data``
            in the model's units, ``offset`` below them (occupancy = data + offset, in {0, 1}).
        initializer: the proposals' nets (their parameters get their own Adam).
        settings: the initializer's learning settings.
        factor: super-resolution: block size of the descriptor's chains (``chains.factor``).
        missing: recovery: fraction of entries hidden (``chains.missing``).
    """

    def __init__(
        self,
        energy: EnergyModel,
        initializer: Initializer,
        sampler: Sampler,
        data: Tensor,
        *,
        settings: InitializerConfig,
        factor: int | None = None,
        missing: float | None = None,
        offset: float = 0.0,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        self.initializer, self.settings, self.offset = initializer, settings, offset
        start: ChainStart
        if initializer.recovers:
            if missing is None:
                raise ValueError("a recovery filler needs the fraction of missing entries")
            start = RecoveryStart(missing, self._proposed_fill)
        else:
            if factor is None:
                # Given missing, the caller meant recovery: naming the block size alone sent
                # them looking for a factor their run has no use for.
                hint = ("" if missing is None else f"; missing={missing:g} is for recovery, "
                        "whose initializer has a filler (Initializer(..., recovery=True))")
                raise ValueError(f"a super-resolution initializer needs the chains' block size "
                                 f"(factor){hint}")
            start = InitializerStart(initializer, factor, spatial_dims=data.dim() - 2,
                                     offset=offset)
        self.missing = missing
        super().__init__(energy, sampler, start, data, train=train, generator=generator,
                         config=config, world=world)
        # Binary cross-entropy takes any target without a word: occupancy passed as the data,
        # the offset not subtracted, trained the initializer towards "occupancies" of up to
        # 1 + offset. The tolerance lets occupancy - offset + offset round off.
        low, high = (self.data.min().item() + offset, self.data.max().item() + offset)
        if low < -1e-5 or high > 1 + 1e-5:
            raise ValueError(f"data must be occupancy minus offset {offset:g} (the model's "
                             f"units), so that data + offset lies in [0, 1], got data + offset "
                             f"from {low:g} to {high:g}: subtract the offset from occupancy")
        self.companion = Companion("initializer", initializer, lr_setting="initializer.lr",
                                   lr=settings.lr,
                                   missing="the checkpoint holds no initializer: it was trained "
                                           "without an initializer section")

    def _proposed_fill(self, observed: Tensor, known: Tensor) -> Tensor:
        """The filler's proposal in the model's units (a :data:`stgconv.types.Fill`)."""
        return self.initializer.propose_fill(observed + self.offset, known) - self.offset

    def _initializer_batch(self) -> Tensor:
        """Occupancy ``(b, 1, *S)`` of a random batch, flipped along the last axis (a voxel
        grid's up axis) at random when ``settings.mirror``."""
        n = self.data.shape[0]
        indices = torch.randperm(n, generator=self.generator, device=self.generator.device)
        x = self.data[indices[: min(self.settings.batch_size, n)].to(self.data.device)]
        x = x + self.offset
        if self.settings.mirror:
            # Chosen on the device, not read back: a Python `if` on the draw waited for a
            # GPU's queue at every initializer step.
            flip = torch.rand((), generator=self.generator, device=self.generator.device) < 0.5
            x = torch.where(flip.to(x.device), x.flip(-1), x)
        return x

    def _crop(self, x: Tensor, fold: int) -> Tensor:
        """A random cube of ``settings.crop`` coarse cells (``crop * fold`` entries, aligned
        to the coarse grid) a side of every shape, or all of ``x`` when it is no larger: every
        net then costs about the same per step."""
        if self.settings.crop is None:
            return x
        for dim, n in enumerate(x.shape[2:], start=2):
            cells = min(self.settings.crop, n // fold)
            corner = torch.randint(n // fold - cells + 1, (), generator=self.generator,
                                   device=self.generator.device)
            # Gathered by indices on the device: slicing needs the corner on the host, a read
            # back from a GPU per axis and net at every initializer step.
            rows = corner * fold + torch.arange(cells * fold, device=corner.device)
            x = x.index_select(dim, rows.to(x.device))
        return x

    def _losses(self, x: Tensor) -> list[Tensor]:
        """Each net's loss on the occupancy batch ``x``."""
        losses = []
        for factor in self.initializer.factors:
            part = self._crop(x, factor)
            low = block_down(part, (factor,) * (part.dim() - 2))
            losses.append(F.binary_cross_entropy_with_logits(
                self.initializer.logits(low, factor), part))
        if self.initializer.recovers:
            part = self._crop(x, self.initializer.config["fold"])
            known = torch.rand(part.shape, generator=self.generator,
                               device=self.generator.device).to(part.device) >= self.missing
            logits = self.initializer.fill_logits(part, known)
            # Summed over the hidden voxels, then divided: a crop that happens to hide none
            # (a small chains.missing) teaches nothing, where a mean over none would be NaN.
            hidden = ~known
            losses.append(F.binary_cross_entropy_with_logits(
                logits, part, weight=hidden.to(part.dtype), reduction="sum")
                / hidden.sum().clamp(min=1))
        return losses

    @training_step
    def step(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """One descriptor update, then ``settings.steps`` initializer updates; returns the
        descriptor's ``loss``, ``e_pos``, ``e_neg`` and ``initializer_bce`` (the mean over the
        initializer's steps and nets, before each step). ``batches``: dataset indices
        ``(batch_size,)`` of each micro-batch (default: :meth:`draw_batches`).

        Stopped during the initializer's updates (an interrupt, its non-finite loss), the step
        leaves the descriptor's update taken and counted in :attr:`iteration`, and the
        initializer's updates made so far."""
        stats = super().step(batches)
        losses: list[Tensor] = []
        for _ in range(self.settings.steps):
            self.companion.optimizer.zero_grad(set_to_none=True)
            batch = self._initializer_batch()
            step_losses = self._losses(batch)
            for loss in step_losses:
                loss.backward()
            losses += [loss.detach() for loss in step_losses]
            if self.world is not None:
                self.world.average_gradients(self.initializer.parameters(), weight=len(batch))
            self.companion.optimizer.step()
        # Read once, after the steps, as the samplers read their non-finite flags: a read per
        # step waited for a GPU's queue each time. A non-finite loss still stops training
        # before anything is saved.
        values = torch.stack(losses).tolist()
        bad = next((value for value in values if not math.isfinite(value)), None)
        if bad is not None:
            raise DivergenceError(f"non-finite initializer loss at iteration "
                                  f"{self.iteration}: {bad}",
                                  advice=f"lower {self.companion.lr_setting}")
        totals = {"initializer_bce": sum(value / len(values) for value in values)}
        if self.world is not None:
            totals = self.world.average(totals, weight=min(self.settings.batch_size,
                                                           self.data.shape[0]))
        return {**stats, **totals}


def has_initializer(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds an initializer (:class:`InitializerTrainer`)."""
    return "initializer_model" in state


def initializer_from_state(state: dict[str, Any], checkpoint: str | Path) -> Initializer:
    """The initializer (eval mode, on CPU) of a loaded checkpoint.

    Raises:
        CheckpointError: the checkpoint holds none, or not a loadable one.
    """
    return companion_from_state(state, "initializer", build_initializer, checkpoint,
                                missing=f"{checkpoint} holds no initializer")


__all__ = ["GUIDE_LOGIT", "RECOVERY", "BlockUpsampler", "Initializer", "InitializerStart",
           "InitializerTrainer", "MaskedFiller", "build_initializer", "depth_to_space",
           "has_initializer", "initializer_from_state", "space_to_depth"]
