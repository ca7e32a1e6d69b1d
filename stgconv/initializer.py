"""A learned initializer for super-resolution: fast thinking before the descriptor's slow thinking.

Super-resolution here is conditional sampling: given a shape's block means ``low``, the
descriptor's chain fills in the detail inside each block while keeping ``block_down(x) == low``
(:class:`~stgconv.mcmc.DownsampleConsistency`). Where that chain starts matters more than how
long it runs (``bench/README.md``, ``voxel_eval.py``): a trilinear start plus 5 steps beat longer
chains. So, as in the cooperative conditional learning of Xie et al. ("Cooperative Training of
Fast Thinking Initializer and Slow Thinking Solver for Conditional Learning", TPAMI 2021), a
feed-forward network learns to propose the start directly from ``low``, and the descriptor's
chain revises it.

The network (:class:`BlockUpsampler`) works on the coarse grid: each coarse cell carries its
block's ``f^d`` fine entries as channels (space-to-depth), so a 3-D ConvNet on a 16^3 grid with
64 channels sees 64^3 detail at the cost of a 16^3 grid. It outputs one logit per fine entry,
added to a fixed logit of the trilinear up-sampling, so an untrained network ranks every block's
entries exactly as the trilinear up-sampling does. Its training is supervised: the training
shapes give the pairs ``(block_down(x), x)``, and it minimises binary cross-entropy on occupancy
(:class:`InitializerTrainer`, one descriptor step then a few initializer steps per iteration).
Unlike the authors, who teach the initializer the solver's revisions, we teach it the data,
which these pairs give exactly; the revisions would also teach it the solver's errors.

Binary occupancy only (voxel shapes): the logits are the log-odds of "occupied".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgconv.checkpoint import CheckpointError
from stgconv.checks import as_int
from stgconv.config import InitializerConfig, TrainConfig
from stgconv.distributed import World
from stgconv.energy.base import EnergyModel
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.starts import SuperResolutionStart
from stgconv.ops import block_down, linear_up
from stgconv.train import Trainer

# The trilinear up-sampling enters the logits as TRILINEAR_LOGIT * (p - 1/2): steep enough that
# an untrained net is a sharpened trilinear guess (0.9 occupancy -> probability 0.96), and
# monotone, so the ranking inside every block is the trilinear one.
TRILINEAR_LOGIT = 8.0

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def space_to_depth(x: Tensor, factor: int) -> Tensor:
    """``(B, C, N1, ..., Nk) -> (B, C * f^k, N1/f, ..., Nk/f)``: each block's entries as channels."""
    b, c, *sizes = x.shape
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
    c = cf // factor**k
    x = x.reshape(b, c, *(factor,) * k, *coarse)
    order = (0, 1, *(n for i in range(k) for n in (2 + k + i, 2 + i)))
    return x.permute(order).reshape(b, c, *(n * factor for n in coarse))


class BlockUpsampler(nn.Module):
    """``low (B, 1, n1, ..., nk) -> logits (B, 1, n1 * f, ..., nk * f)`` of fine occupancy.

    A residual ConvNet on the coarse grid (``depth`` 3^k convolutions, ReLU): its input is
    ``low`` and the trilinear up-sampling of ``low`` folded into channels (:func:`space_to_depth`),
    its output ``f^k`` logits per coarse cell, unfolded and added to
    ``TRILINEAR_LOGIT * (trilinear - 1/2)``. The last convolution starts at zero, so an untrained
    net gives that trilinear logit.

    Args:
        factor: block size ``f``.
        spatial_dims: ``k``, 1 to 3 (3 for voxels).
        width: channels of the hidden layers.
        depth: convolutions, at least 2.
    """

    def __init__(self, factor: int, *, spatial_dims: int = 3, width: int = 64, depth: int = 6
                 ) -> None:
        super().__init__()
        self.factor = as_int(factor, "factor", minimum=2)
        if spatial_dims not in _CONVS:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims
        as_int(width, "width", minimum=1)
        as_int(depth, "depth", minimum=2)
        conv = _CONVS[spatial_dims]
        block = factor**spatial_dims
        self.first = conv(1 + block, width, 3, padding=1)
        self.body = nn.ModuleList(conv(width, width, 3, padding=1) for _ in range(depth - 2))
        self.last = conv(width, block, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.config = {"factor": factor, "spatial_dims": spatial_dims, "width": width,
                       "depth": depth}

    def forward(self, low: Tensor) -> Tensor:
        if low.dim() != self.spatial_dims + 2 or low.shape[1] != 1:
            raise ValueError(f"low must be (B, 1, {', '.join(['n'] * self.spatial_dims)}), got "
                             f"{tuple(low.shape)}")
        trilinear = linear_up(low, (self.factor,) * self.spatial_dims).clamp(0.0, 1.0)
        h = F.relu(self.first(torch.cat([low, space_to_depth(trilinear, self.factor)], dim=1)))
        for layer in self.body:
            h = h + F.relu(layer(h))
        return (depth_to_space(self.last(h), self.factor)
                + TRILINEAR_LOGIT * (trilinear - 0.5))


class Initializer(nn.Module):
    """One :class:`BlockUpsampler` per block size it serves, e.g. 4 (16^3 -> 64^3) and 2
    (32^3 -> 64^3).

    Args:
        factors: the block sizes, distinct, each at least 2.
        spatial_dims, width, depth: as :class:`BlockUpsampler`.
    """

    def __init__(self, factors: Sequence[int], *, spatial_dims: int = 3, width: int = 64,
                 depth: int = 6) -> None:
        super().__init__()
        factors = [as_int(f, "factor", minimum=2) for f in factors]
        if not factors or len(set(factors)) != len(factors):
            raise ValueError(f"factors must be distinct and at least one, got {factors}")
        self.nets = nn.ModuleDict({str(f): BlockUpsampler(f, spatial_dims=spatial_dims,
                                                          width=width, depth=depth)
                                   for f in factors})
        self.config = {"factors": factors, "spatial_dims": spatial_dims, "width": width,
                       "depth": depth}

    @property
    def factors(self) -> list[int]:
        return [int(f) for f in self.nets]

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


def build_initializer(config: dict[str, Any]) -> Initializer:
    """An untrained :class:`Initializer` from its ``config`` (as stored in checkpoints)."""
    return Initializer(config["factors"], spatial_dims=config["spatial_dims"],
                       width=config["width"], depth=config["depth"])


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
        low = block_down(x_pos, self.factor) + self.offset
        return self.initializer.propose(low, self.block) - self.offset


class InitializerTrainer(Trainer):
    """The descriptor learns super-resolution from chains that start at the initializer's
    proposals; after each of its steps the initializer takes ``settings.steps`` supervised
    steps (binary cross-entropy of ``initializer(block_down(x))`` against ``x`` on random
    batches of the training shapes, for every block size it serves).

    Args:
        energy, sampler, data, train, generator, config, world: as :class:`Trainer`; ``data``
            in the model's units, ``offset`` below them (occupancy = data + offset, in {0, 1}).
        initializer: the proposals' net (its parameters get their own Adam).
        settings: the initializer's learning settings.
        factor: block size of the descriptor's training chains (``chains.factor``).
    """

    def __init__(
        self,
        energy: EnergyModel,
        initializer: Initializer,
        sampler: Sampler,
        data: Tensor,
        *,
        settings: InitializerConfig,
        factor: int,
        offset: float = 0.0,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        start = InitializerStart(initializer, factor, spatial_dims=data.dim() - 2, offset=offset)
        super().__init__(energy, sampler, start, data, train=train, generator=generator,
                         config=config, world=world)
        self.initializer = initializer
        self.settings = settings
        self.offset = offset
        self.initializer_optimizer = torch.optim.Adam(initializer.parameters(), lr=settings.lr)
        self.initializer_settings = {"lr": settings.lr}

    def _initializer_batch(self) -> Tensor:
        """Occupancy ``(b, 1, *S)`` of a random batch, mirrored along the last axis at random
        when ``settings.mirror``."""
        n = self.data.shape[0]
        indices = torch.randperm(n, generator=self.generator, device=self.generator.device)
        x = self.data[indices[: min(self.settings.batch_size, n)].to(self.data.device)]
        x = x + self.offset
        if self.settings.mirror and torch.rand((), generator=self.generator,
                                               device=self.generator.device) < 0.5:
            x = x.flip(-1)
        return x

    def _crop(self, x: Tensor, factor: int) -> Tensor:
        """A random block-aligned cube of ``settings.crop`` coarse cells (``crop * factor``
        entries) a side of every shape, or all of ``x`` when it is no larger: the nets of every
        block size then cost the same per step."""
        if self.settings.crop is None:
            return x
        slices = []
        for n in x.shape[2:]:
            cells = min(self.settings.crop, n // factor)
            corner = torch.randint(n // factor - cells + 1, (), generator=self.generator,
                                   device=self.generator.device).item()
            slices.append(slice(corner * factor, (corner + cells) * factor))
        return x[(slice(None), slice(None), *slices)]

    def step(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """One descriptor update, then ``settings.steps`` initializer updates; returns the
        descriptor's ``loss``, ``e_pos``, ``e_neg`` and ``initializer_bce`` (the mean over the
        initializer's steps and block sizes, before each step)."""
        stats = super().step(batches)
        total = 0.0
        factors = self.initializer.factors
        for _ in range(self.settings.steps):
            x = self._initializer_batch()
            self.initializer_optimizer.zero_grad(set_to_none=True)
            for factor in factors:
                part = self._crop(x, factor)
                low = block_down(part, (factor,) * (part.dim() - 2))
                loss = F.binary_cross_entropy_with_logits(self.initializer.logits(low, factor), part)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite initializer loss at iteration "
                                             f"{self.iteration}: {loss.item()}")
                loss.backward()
                total += loss.item() / (len(factors) * self.settings.steps)
            if self.world is not None:
                self.world.average_gradients(self.initializer.parameters())
            self.initializer_optimizer.step()
        totals = {"initializer_bce": total}
        if self.world is not None:
            totals = self.world.average(totals)
        return {**stats, **totals}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "initializer_model": self.initializer.state_dict(),
            "initializer_config": self.initializer.config,
            "initializer_optimizer": self.initializer_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "initializer_model" not in state:
            raise ValueError("the checkpoint holds no initializer: it was trained without an "
                             "initializer section")
        if state.get("initializer_config") != self.initializer.config:
            raise ValueError(f"the checkpoint's initializer {state.get('initializer_config')} is "
                             f"not the one this config builds ({self.initializer.config}); resume "
                             "with the run's own config.yaml, or train a new run")
        super().load_state_dict(state)
        self.initializer.load_state_dict(state["initializer_model"])
        self.initializer_optimizer.load_state_dict(state["initializer_optimizer"])
        for group in self.initializer_optimizer.param_groups:  # as Trainer: this run's settings
            group.update(self.initializer_settings)

    def parameters(self) -> list[Tensor]:
        return [*self.energy.parameters(), *self.initializer.parameters()]

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        return [*self.energy.named_parameters(),
                *((f"initializer/{name}", p) for name, p in self.initializer.named_parameters())]


def has_initializer(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds an initializer (:class:`InitializerTrainer`)."""
    return "initializer_model" in state


def initializer_from_state(state: dict[str, Any], checkpoint: str | Path) -> Initializer:
    """The initializer (eval mode, on CPU) of a loaded checkpoint.

    Raises:
        CheckpointError: the checkpoint holds none, or not a loadable one.
    """
    if not has_initializer(state):
        raise CheckpointError(f"{checkpoint} holds no initializer")
    try:
        net = build_initializer(state["initializer_config"])
        net.load_state_dict(state["initializer_model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds no loadable initializer: {err}"
                              ) from err
    return net.eval()


__all__ = ["BlockUpsampler", "Initializer", "InitializerStart", "InitializerTrainer",
           "TRILINEAR_LOGIT", "build_initializer", "depth_to_space", "has_initializer",
           "initializer_from_state", "space_to_depth"]
