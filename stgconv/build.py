"""Turn config sections into the objects they describe."""

from __future__ import annotations

import torch

from stgconv.config import (
    ChainConfig,
    DataConfig,
    ModelConfig,
    MultiGridConfig,
    SamplerConfig,
)
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.image import IMAGE_PRESETS, image_energy
from stgconv.energy.video import video_energy
from stgconv.energy.voxel import VOXEL_PRESETS, voxel_energy
from stgconv.mcmc import HMC, MALA, Langevin, NoiseInit, PersistentChains, ReplayBuffer
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.recovery_start import RecoveryStart
from stgconv.mcmc.starts import ChainStart, DataStart, NoiseStart, SuperResolutionStart
from stgconv.ops import factor_between
from stgconv.voxel_baselines import nearest_known_fill


def build_energy(model: ModelConfig) -> ConvNetEnergy:
    """An image energy, a video energy for frames of ``image_size x image_size``, or a voxel
    energy for grids of ``image_size^3``."""
    if model.arch in VOXEL_PRESETS:
        return voxel_energy(
            model.arch,
            size=model.image_size,
            layers=model.layers,
            activation=model.activation or "relu",
            reference_sigma=model.reference_sigma,
        )
    if model.arch not in IMAGE_PRESETS:
        return video_energy(
            model.arch,
            in_channels=model.in_channels,
            frame_size=(model.image_size, model.image_size),
            layers=model.layers,
            activation=model.activation or "relu",
            reference_sigma=model.reference_sigma,
        )
    return image_energy(
        model.arch,
        in_channels=model.in_channels,
        image_size=model.image_size,
        layers=model.layers,
        activation=model.activation,
        reference_sigma=model.reference_sigma,
    )


def build_sampler(sampler: SamplerConfig, *, n_steps: int | None = None) -> Sampler:
    """The configured sampler; ``n_steps`` overrides the configured chain length."""
    steps = n_steps if n_steps is not None else sampler.n_steps
    if sampler.kind == "langevin":
        return Langevin(
            n_steps=steps,
            step_size=sampler.step_size,
            noise_scale=sampler.noise_scale,
            noise_anneal=sampler.noise_anneal,
            grad_clip=sampler.grad_clip,
            clamp=sampler.clamp,
            precision=sampler.precision,
        )
    if sampler.kind == "mala":
        return MALA(n_steps=steps, step_size=sampler.step_size)
    return HMC(n_steps=steps, step_size=sampler.step_size, n_leapfrog=sampler.n_leapfrog)


def build_chain_start(chains: ChainConfig, n_examples: int, *, spatial_dims: int | None = None
                      ) -> ChainStart:
    """The configured chain start; ``spatial_dims`` (3 for voxels ``(B, 1, D, H, W)``) is
    needed by ``super_resolution``, whose block covers every spatial dim."""
    init = NoiseInit(chains.init, chains.init_scale)
    k = chains.chains_per_example
    if chains.mode == "super_resolution":
        if spatial_dims is None:
            raise ValueError("chains.mode='super_resolution' needs the data's spatial_dims")
        return SuperResolutionStart((chains.factor,) * spatial_dims)
    if chains.mode == "recovery":
        return RecoveryStart(chains.missing, nearest_known_fill)
    if chains.mode == "noise":
        return NoiseStart(init, chains_per_example=k)
    if chains.mode == "data":
        return DataStart(noise_std=chains.data_noise, chains_per_example=k)
    if chains.mode == "persistent":
        return PersistentChains(n_examples, init, chains_per_example=k)
    return ReplayBuffer(chains.buffer_capacity, init, fresh=chains.buffer_fresh, chains_per_example=k)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def grid_sizes(multigrid: MultiGridConfig, data: DataConfig) -> list[tuple[int, ...]]:
    """Trailing sizes of the base grid and every modelled grid, coarse to fine: ``(s, s)`` for
    images, ``(frames, s, s)`` for videos, ``(s, s, s)`` for voxels."""

    def size(side: int, frames: int | None) -> tuple[int, ...]:
        if data.kind == "video":
            return (frames if frames is not None else data.frames, side, side)
        return (side,) * (3 if data.kind == "voxels" else 2)

    return [size(multigrid.base_size, multigrid.base_frames),
            *(size(grid.size, grid.frames) for grid in multigrid.grids)]


def grid_factors(sizes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """Block factor from each grid of ``sizes`` (coarse to fine) to the next finer one."""
    return tuple(factor_between(fine, coarse) for coarse, fine in zip(sizes, sizes[1:]))
