"""Chain-start strategies used by training: where each iteration's negative chains begin.

A strategy's ``start`` gives the chains for a batch of training examples and ``keep`` hands the
finished chains back, so persistent and replay-buffer strategies can store them. The sampler itself
never sees any of this.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from stgconv.checks import as_int, check_finite_number, check_generator
from stgconv.mcmc.constraints import Constraint, DownsampleConsistency, KnownEntries
from stgconv.mcmc.init import DataGaussian, NoiseInit, check_init, data_plus_noise
from stgconv.ops import block_down, block_upsampler, check_block_factor, nearest_up
from stgconv.types import Fill


class ChainStart(Protocol):
    chains_per_example: int

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Chain starts ``(B * chains_per_example, *S)`` for examples ``x_pos`` ``(B, *S)``
        whose dataset indices are ``indices`` ``(B,)``; a ``generator`` that is not a
        ``torch.Generator`` is refused, by starts that draw nothing too."""
        ...

    def constraint(self, x_pos: Tensor) -> Constraint | None:
        """The projection the chains of ``x_pos`` ``(B, *S)`` must stay on (``None``: free
        chains)."""
        ...

    def keep(self, x_neg: Tensor) -> None:
        """Receive the finished chains ``(B * chains_per_example, *S)`` of the last ``start``."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """The stored chains a checkpoint keeps (``{}`` for starts that store none)."""
        ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the stored chains of :meth:`state_dict`."""
        ...


def _check_chains_per_example(chains_per_example: int) -> None:
    """As :class:`ReplayBuffer` and :class:`PersistentChains` check it: 0 gave no chains at
    all, silently, and 1.5 failed inside torch at the first start (``repeat_interleave``,
    ``randn``)."""
    as_int(chains_per_example, "chains_per_example", minimum=1)


class _Stateless:
    """Starts that keep nothing between iterations and leave the chains free."""

    def constraint(self, x_pos: Tensor) -> Constraint | None:
        return None

    def keep(self, x_neg: Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class NoiseStart(_Stateless):
    """Short-run training: every iteration starts fresh chains from noise."""

    def __init__(self, init: NoiseInit | DataGaussian, *, chains_per_example: int = 1) -> None:
        _check_chains_per_example(chains_per_example)
        check_init(init, "NoiseStart")
        self.init = init
        self.chains_per_example = chains_per_example

    def __repr__(self) -> str:
        return f"NoiseStart(init={self.init!r}, chains_per_example={self.chains_per_example})"

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draws ``(B * chains_per_example, *S)`` of ``init`` for ``x_pos`` ``(B, *S)``."""
        shape = (x_pos.shape[0] * self.chains_per_example, *x_pos.shape[1:])
        return self.init.sample(shape, device=x_pos.device, dtype=x_pos.dtype, generator=generator)


class DataStart(_Stateless):
    """Contrastive divergence: chains start at the training examples plus Gaussian noise."""

    def __init__(self, *, noise_std: float = 0.0, chains_per_example: int = 1) -> None:
        _check_chains_per_example(chains_per_example)
        check_finite_number(noise_std, "noise_std")
        self.noise_std = noise_std
        self.chains_per_example = chains_per_example

    def __repr__(self) -> str:
        return (f"DataStart(noise_std={self.noise_std}, "
                f"chains_per_example={self.chains_per_example})")

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Each example of ``x_pos`` ``(B, *S)`` ``chains_per_example`` times in a row, plus
        noise: ``(B * chains_per_example, *S)``."""
        repeated = x_pos.repeat_interleave(self.chains_per_example, dim=0)
        return data_plus_noise(repeated, std=self.noise_std, generator=generator)


class CoarseStart(_Stateless):
    """Multi-grid training (Gao et al. 2018): each chain starts from the nearest up-sampling of
    its example's next coarser grid, ``nearest_up(block_down(x, factor))``, and moves freely.

    A short, non-persistent chain from there teaches the grid's model what the coarser grid
    leaves out, which is exactly the move the coarse-to-fine sampler asks of it.

    Args:
        factor: block size from this grid to the coarser one over the trailing dims, e.g.
            ``(4, 4)`` for 16x16 images whose coarser grid is 4x4.
    """

    def __init__(self, factor: tuple[int, ...]) -> None:
        # Checked here: a bare int failed as "'int' object is not iterable".
        self.factor = check_block_factor(factor)
        self.chains_per_example = 1

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """``(B, *S)``, the nearest up-sampling of ``x_pos`` ``(B, *S)``'s block means (no
        draw: ``generator`` is only checked, as every start's)."""
        check_generator(generator, "CoarseStart.start")
        return nearest_up(block_down(x_pos, self.factor), self.factor)


class SuperResolutionStart(CoarseStart):
    """Super-resolution training (3D descriptor net): each chain starts from the up-sampled
    low-resolution version of its example and stays consistent with it.

    The low resolution of ``x_pos`` is ``block_down(x_pos, factor)``; chains start at its
    ``upsample`` (:data:`stgconv.ops.BLOCK_UPSAMPLERS`; ``"linear"`` is projected onto the
    constraint by the sampler) and, through :meth:`constraint`, keep ``block_down(x) == low``
    after every step, so the model learns what detail to add inside each block, from the start
    the super-resolution tasks use.

    Args:
        factor: block size over the trailing dims, e.g. ``(4, 4, 4)`` for voxels.
        upsample: ``"linear"`` (default) or ``"nearest"``.
    """

    def __init__(self, factor: tuple[int, ...], *, upsample: str = "linear") -> None:
        super().__init__(factor)
        self.upsample = block_upsampler(upsample)

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """``(B, *S)``, the ``upsample`` of ``x_pos`` ``(B, *S)``'s block means (no draw:
        ``generator`` is only checked, as every start's)."""
        check_generator(generator, "SuperResolutionStart.start")
        return self.upsample(block_down(x_pos, self.factor), self.factor)

    def constraint(self, x_pos: Tensor) -> Constraint:
        """Keeps the block means of ``x_pos`` ``(B, *S)``."""
        return DownsampleConsistency(block_down(x_pos, self.factor), self.factor)


class RecoveryStart:
    """Recovery training (3D descriptor net; the authors' ``rec_exp.py``): the negative samples
    are the model's own completions of corrupted training examples, so the model learns exactly
    what the recovery task asks of it. Each call to :meth:`start` hides a fresh random
    ``missing`` fraction of every example's entries; the chain starts from ``fill`` of what
    remains, and :meth:`constraint` (for the same batch) keeps the observed entries fixed.
    ``rec_exp.py`` differs: it draws one mask per shape for the whole run (exactly 30% kept),
    fills the rest with the shape's observed mean and resets the observed voxels once, after a
    free chain; here a fresh mask, a configurable fill and the projection after every step.

    Args:
        missing: fraction of entries hidden, in ``(0, 1)``; each entry independently.
        fill: the starting completion (e.g. :func:`stgconv.baselines.voxel.nearest_known_fill`).
    """

    def __init__(self, missing: float, fill: Fill) -> None:
        if not 0.0 < missing < 1.0:
            raise ValueError(f"missing must be in (0, 1), got {missing}")
        self.missing = missing
        self.fill = fill
        self.chains_per_example = 1
        self._known: Tensor | None = None

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Chain starts ``(B, *S)`` for ``x_pos`` ``(B, *S)``; remembers the mask for
        :meth:`constraint`."""
        check_generator(generator, "RecoveryStart.start")
        draw = torch.rand(x_pos.shape, generator=generator, device=x_pos.device)
        self._known = draw >= self.missing
        return self.fill(x_pos, self._known)

    def constraint(self, x_pos: Tensor) -> Constraint:
        """Keeps the entries of ``x_pos`` ``(B, *S)`` that the last :meth:`start` kept."""
        if self._known is None or self._known.shape != x_pos.shape:
            raise RuntimeError("constraint() needs the start() of the same batch first")
        return KnownEntries(x_pos, self._known)

    def keep(self, x_neg: Tensor) -> None:
        """Forget the mask of the last :meth:`start` (``x_neg`` ``(B, *S)`` is not stored)."""
        self._known = None

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass
