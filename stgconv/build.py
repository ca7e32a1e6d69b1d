"""Turn config sections into the objects they describe, for every modality."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor

from stgconv.baselines.voxel import nearest_known_fill
from stgconv.checkpoint import forked_global_rng
from stgconv.checks import check_generator
from stgconv.config import (
    ChainConfig,
    ExperimentConfig,
    MultiGridConfig,
    SamplerConfig,
    check_sampler,
)
from stgconv.mcmc import (
    HMC,
    MALA,
    DataGaussian,
    Langevin,
    MultiGridSampler,
    NoiseInit,
    PersistentChains,
    ReplayBuffer,
)
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.starts import (
    ChainStart,
    DataStart,
    NoiseStart,
    RecoveryStart,
    SuperResolutionStart,
)
from stgconv.modalities import modality_of
from stgconv.ops import factor_between


@contextmanager
def seeded_weights(seed: int) -> Iterator[None]:
    """Modules made in the block draw their initial weights from ``seed``, and the caller's
    global RNG is as it was afterwards: a task seeded by its config does not reset a library
    caller's stream. (``nn.Module`` initialisers read torch's global CPU generator; modules are
    made on the CPU and moved.) One such block runs at a time in the process
    (:func:`~stgconv.checkpoint.forked_global_rng`)."""
    with forked_global_rng():
        torch.random.default_generator.manual_seed(seed)
        yield


def build_sampler(sampler: SamplerConfig, *, n_steps: int | None = None) -> Sampler:
    """The configured sampler; ``n_steps`` overrides the configured chain length."""
    # A section built in Python gets the checks a config file's gets: an HMC step count set
    # for Langevin was ignored without a word, and a step past the bound ran.
    check_sampler("sampler", sampler)
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
            cuda_graph=sampler.cuda_graph,
        )
    if sampler.kind == "mala":
        return MALA(n_steps=steps, step_size=sampler.step_size)
    return HMC(n_steps=steps, step_size=sampler.step_size, n_leapfrog=sampler.n_leapfrog,
               step_jitter=sampler.step_jitter)


def chain_init(chains: ChainConfig, fitted: dict[str, Tensor] | None = None
               ) -> NoiseInit | DataGaussian:
    """Where fresh chains start: ``chains.init``'s noise, or for ``"data_gaussian"`` the
    Gaussians fitted to the training data, rebuilt from ``fitted`` (a checkpoint's ``"init"``
    entry, :meth:`DataGaussian.state_dict`)."""
    if chains.init != "data_gaussian":
        return NoiseInit(chains.init, chains.init_scale)
    if fitted is None:
        raise ValueError("chains.init 'data_gaussian' starts from Gaussians fitted to the "
                         "training data, and none were given (a checkpoint of such a run keeps "
                         "them as 'init')")
    return DataGaussian.from_state(fitted, noise=chains.init_noise, noise_scale=chains.init_scale)


def build_chain_start(chains: ChainConfig, n_examples: int, *, spatial_dims: int | None = None,
                      init: NoiseInit | DataGaussian | None = None) -> ChainStart:
    """The configured chain start; ``spatial_dims`` (3 for voxels ``(B, 1, D, H, W)``) is
    needed by ``super_resolution``, whose block covers every spatial dim; ``init`` (default
    :func:`chain_init`) starts fresh chains."""
    init = init if init is not None else chain_init(chains)
    k = chains.chains_per_example
    if chains.mode == "super_resolution":
        if spatial_dims is None:
            raise ValueError("chains.mode='super_resolution' needs the data's spatial_dims")
        return SuperResolutionStart((chains.factor,) * spatial_dims, upsample=chains.upsample)
    if chains.mode == "recovery":
        return RecoveryStart(chains.missing, nearest_known_fill)
    if chains.mode == "noise":
        return NoiseStart(init, chains_per_example=k)
    if chains.mode == "data":
        return DataStart(noise_std=chains.data_noise, chains_per_example=k)
    if chains.mode == "persistent":
        return PersistentChains(n_examples, init, chains_per_example=k)
    return ReplayBuffer(chains.buffer_capacity, init, fresh=chains.buffer_fresh,
                        chains_per_example=k)


def model_sampler(config: ExperimentConfig, *, sampler: SamplerConfig | None = None,
                  n_steps: int | None = None) -> Sampler:
    """The experiment's sampler (``sampler``, default ``config.sampler``) with its clamp moved
    from data units into the model's units (:meth:`stgconv.modalities.Modality.offset`);
    ``n_steps`` overrides the chain length."""
    sampler = sampler if sampler is not None else config.sampler
    return build_sampler(replace(sampler, clamp=model_clamp(config, sampler)), n_steps=n_steps)


def model_clamp(config: ExperimentConfig, sampler: SamplerConfig | None = None
                ) -> tuple[float, float] | None:
    """``sampler.clamp`` (default ``config.sampler``'s) in the model's units
    (:meth:`stgconv.modalities.Modality.offset`)."""
    clamp = (sampler if sampler is not None else config.sampler).clamp
    offset = modality_of(config).offset(config)
    if clamp is not None and offset:
        clamp = (clamp[0] - offset, clamp[1] - offset)
    return clamp


def task_sampler(config: ExperimentConfig, *, n_steps: int | None = None) -> Sampler:
    """The sampler a trained model is used with (synthesize, super-resolve, the voxel
    evaluations): :func:`model_sampler` with ``sampler.task_steps`` steps where the config sets
    them; ``n_steps`` overrides both."""
    return model_sampler(config, n_steps=n_steps if n_steps is not None
                         else config.sampler.task_steps)


def grid_sizes(config: ExperimentConfig) -> list[tuple[int, ...]]:
    """Trailing sizes of the base grid and every modelled grid of a multi-grid experiment,
    coarse to fine: ``(s, s)`` for images, ``(frames, s, s)`` for videos, ``(s, s, s)`` for
    voxels."""
    multigrid = multigrid_section(config)
    shape = modality_of(config).grid_shape
    return [shape(multigrid.base_size, multigrid.base_frames, config.data),
            *(shape(grid.size, grid.frames, config.data) for grid in multigrid.grids)]


def multigrid_section(config: ExperimentConfig) -> MultiGridConfig:
    """``config.multigrid``, which must be set."""
    if config.multigrid is None:
        raise ValueError(f"experiment {config.name!r} has no multigrid section")
    return config.multigrid


def grid_factors(sizes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """Block factor from each grid of ``sizes`` (coarse to fine) to the next finer one."""
    return tuple(factor_between(fine, coarse) for coarse, fine in zip(sizes, sizes[1:]))


def grid_samplers(config: ExperimentConfig, *, n_steps: int | None = None, task: bool = False
                  ) -> list[Sampler]:
    """Each modelled grid's sampler (its own section, else the experiment's), coarse to fine;
    with ``task``, as a trained model is used (:func:`task_sampler`): ``task_steps`` long where
    the section sets them. ``n_steps`` overrides every grid's chain length."""
    samplers = []
    for grid in multigrid_section(config).grids:
        section = grid.sampler if grid.sampler is not None else config.sampler
        steps = n_steps if n_steps is not None or not task else section.task_steps
        samplers.append(model_sampler(config, sampler=grid.sampler, n_steps=steps))
    return samplers


def multigrid_bases(config: ExperimentConfig, base: Tensor, n_samples: int, *,
                    generator: torch.Generator | None = None) -> Tensor:
    """``n_samples`` base grids ``(n_samples, *lead, *S_0)`` for a multi-grid experiment's
    synthesis, from the training examples' base grids ``base`` ``(N, *lead, *S_0)`` (model
    units): random ones of them, or with ``multigrid.base_rank`` draws of a Gaussian fitted to
    them, clamped to the sampler's range."""
    check_generator(generator, "multigrid_bases")  # before the Gaussian's fit
    rank = multigrid_section(config).base_rank
    if rank is None:
        picks = torch.randint(len(base), (n_samples,), generator=generator, device=base.device)
        return base[picks]
    draws = DataGaussian.fit(base, rank=rank).sample((n_samples, *base.shape[1:]),
                                                     generator=generator)
    clamp = model_clamp(config)
    return draws if clamp is None else draws.clamp(*clamp)


def multigrid_sampler(config: ExperimentConfig, *, n_steps: int | None = None) -> MultiGridSampler:
    """The coarse-to-fine sampler a trained multi-grid model is used with, as
    :func:`task_sampler` for one model: each grid's chain ``n_steps`` long, else its section's
    ``task_steps`` where set, else its training length."""
    return MultiGridSampler(tuple(grid_samplers(config, n_steps=n_steps, task=True)),
                            grid_factors(grid_sizes(config)),
                            consistent=multigrid_section(config).consistent)
