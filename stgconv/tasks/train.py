"""What the CLI and ``tools/`` call: train, synthesize, reconstruct, interpolate, demo.

Each task takes plain arguments, writes its outputs into a folder it returns, and raises a clear
error on bad input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from stgconv import shortrun, voxel_tasks
from stgconv.build import (
    build_chain_start,
    build_energy,
    build_sampler,
    grid_factors,
    grid_sizes,
    resolve_device,
)
from stgconv.checkpoint import (
    FILENAME,
    is_multigrid,
    load_checkpoint,
    load_model,
    model_from_state,
    multigrid_from_state,
)
from stgconv.config import (
    DataConfig,
    ExperimentConfig,
    MultiGridConfig,
    config_to_dict,
    load_config,
    save_config,
)
from stgconv.data.image import load_training_images
from stgconv.data.video import load_training_clips
from stgconv.data.voxel import load_voxel_shapes
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_save_npy, atomic_write_json
from stgconv.io.image import load_image, save_image_grid
from stgconv.io.preview import PreviewKind, save_preview, save_pyramid
from stgconv.mcmc import Langevin, MultiGridSampler, NoiseInit
from stgconv.mcmc.base import Sampler
from stgconv.train import MultiGridTrainer, Trainer


def train(config: ExperimentConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the configured model; returns the run folder.

    The folder gets ``config.yaml`` (resolved), ``checkpoint.pt``, ``observed``, ``samples_<it>``
    every ``train.sample_every`` iterations and ``samples`` (the final chains) as PNG grids for
    images, GIFs (and a final MP4) for videos, or renders (PNG) and ``.npy`` occupancy grids for
    voxels, and TensorBoard logs under ``tb/``. A multi-grid experiment (``multigrid`` section)
    trains one model per grid; ``observed``/``samples`` then show the finest grid, and
    ``observed_pyramid``/``samples_pyramid`` every grid. With ``resume``, training continues
    from the folder's checkpoint up to ``train.n_iterations``.
    """
    device = resolve_device(config.device)
    out = Path(config.out_dir)
    data = load_training_data(config.data).to(device)
    if config.data.kind == "voxels":
        # The model sees occupancy minus the training mean (see stgconv.voxel_tasks).
        config = voxel_tasks.resolve_mean(config, data)
        data = data - voxel_tasks.model_offset(config)
    generator = torch.Generator(device).manual_seed(config.seed)
    torch.manual_seed(config.seed)  # parameter initialisation
    trainer: Trainer | MultiGridTrainer
    if config.multigrid is not None:
        config = _resolve_grid_models(config, channels=data.shape[1])
        trainer = MultiGridTrainer(
            [build_energy(grid.model).to(device) for grid in config.multigrid.grids],
            grid_samplers(config),
            data,
            grid_sizes(config.multigrid, config.data),
            generator=generator,
            config=config_to_dict(config),
            **_optimisation(config),
        )
    else:
        model_config = replace(config.model, in_channels=data.shape[1], image_size=data.shape[-1])
        config = replace(config, model=model_config)
        trainer = Trainer(
            build_energy(config.model).to(device),
            voxel_tasks.model_sampler(config),
            build_chain_start(config.chains, data.shape[0], spatial_dims=data.dim() - 2),
            data,
            generator=generator,
            config=config_to_dict(config),
            **_optimisation(config),
        )
    checkpoint = out / FILENAME
    if resume:
        trainer.resume(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    kind = preview_kind(config)

    def preview(batch: torch.Tensor, stem: Path, **options: Any) -> None:
        if kind == "voxels":
            batch = voxel_tasks.to_occupancy(batch, config)
        save_preview(batch, stem, kind=kind, **options)

    preview(data, out / "observed")

    def finest(samples: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return samples[-1] if isinstance(samples, list) else samples

    def save_samples(t: Trainer | MultiGridTrainer, _: dict[str, float]) -> None:
        every = config.train.sample_every
        if every > 0 and t.iteration % every == 0 and t.last_samples is not None:
            preview(finest(t.last_samples), out / f"samples_{t.iteration:06d}")

    trainer.fit(
        config.train.n_iterations,
        checkpoint_path=checkpoint,
        checkpoint_every=config.train.checkpoint_every,
        log_dir=out / "tb",
        progress=progress,
        on_iteration=save_samples,
    )
    if trainer.last_samples is not None:
        preview(finest(trainer.last_samples), out / "samples", formats=(".gif", ".mp4"))
    if isinstance(trainer, MultiGridTrainer):
        # Each grid's training chains start from the data's coarser grid, so the observed pyramid
        # is the picture to set beside the samples' (which has no base row: the base is data).
        levels = [trainer.base, *(t.data for t in trainer.trainers)]
        for name, grids in (("observed", levels), ("samples", trainer.last_samples)):
            if grids is not None:
                if kind == "voxels":
                    grids = [voxel_tasks.to_occupancy(g, config) for g in grids]
                save_pyramid(grids, out / f"{name}_pyramid", kind=kind)
    return out


def _optimisation(config: ExperimentConfig) -> dict[str, Any]:
    return {"batch_size": config.train.batch_size, "accumulate": config.train.accumulate,
            "lr": config.train.lr, "betas": config.train.betas,
            "energy_l2": config.train.energy_l2}


def _resolve_grid_models(config: ExperimentConfig, *, channels: int) -> ExperimentConfig:
    """Fill every grid's model with the data's channels and the grid's size."""
    multigrid = _multigrid(config)
    grids = tuple(replace(grid, model=replace(grid.model, in_channels=channels,
                                              image_size=grid.size))
                  for grid in multigrid.grids)
    return replace(config, multigrid=replace(multigrid, grids=grids))


def grid_samplers(config: ExperimentConfig, *, n_steps: int | None = None) -> list[Sampler]:
    """Each modelled grid's sampler (its own section, else the experiment's), coarse to fine."""
    return [voxel_tasks.model_sampler(config, sampler=grid.sampler, n_steps=n_steps)
            for grid in _multigrid(config).grids]


def multigrid_sampler(config: ExperimentConfig, *, n_steps: int | None = None) -> MultiGridSampler:
    """The coarse-to-fine sampler of a multi-grid experiment; ``n_steps`` overrides every
    grid's chain length."""
    return MultiGridSampler(tuple(grid_samplers(config, n_steps=n_steps)),
                            grid_factors(grid_sizes(_multigrid(config), config.data)))


def _multigrid(config: ExperimentConfig) -> MultiGridConfig:
    if config.multigrid is None:
        raise ValueError(f"experiment {config.name!r} has no multigrid section")
    return config.multigrid


def preview_kind(config: ExperimentConfig) -> PreviewKind:
    """How to show this experiment's examples: ``"image"``, ``"video"`` or ``"voxels"``."""
    if config.data.kind in ("video", "voxels"):
        return config.data.kind
    return "image"


def load_training_data(data: DataConfig) -> torch.Tensor:
    """The training examples: images ``(N, C, H, W)`` (``video_frames``: ``N`` = clips x
    frames), clips ``(N, C, T, H, W)`` or voxel
    occupancy ``(N, 1, D, D, D)`` in ``[0, 1]`` (grids smaller than ``data.size`` are padded)."""
    if data.kind == "voxels":
        return load_voxel_shapes(
            data.path, categories=data.categories,
            split=None if data.split == "all" else data.split,
            max_shapes=data.max_images, pad_to=data.size,
        )
    if data.kind in ("video", "video_frames"):
        clips = load_training_clips(
            data.path, n_frames=data.frames, size=data.size, start_frame=data.start_frame,
            fps=data.fps, max_clips=data.max_images,
        )
        clips = clips[:, :1] if data.channels == 1 else clips
        if data.kind == "video_frames":  # (N, C, T, H, W) -> (N * T, C, H, W)
            return clips.transpose(1, 2).flatten(0, 1)
        return clips
    return load_training_images(
        data.path, kind=data.kind, size=data.size, channels=data.channels,
        max_images=data.max_images,
    )


def synthesize(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    n_samples: int = 16,
    n_steps: int | None = None,
    size: int | None = None,
    frames: int | None = None,
    start: str = "noise",
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Sample from a trained model into ``out_dir``: ``synthesized.png`` for images,
    ``synthesized.gif`` and ``synthesized.mp4`` for videos, ``synthesized.png`` (renders) and
    ``synthesized.npy`` for voxels.

    Args:
        n_steps: chain length (default: the training chain length).
        size: image or frame side; only stationary models (texture, ST) can change it.
        frames: clip length for video models (default: the training length); any length works
            for the ST and FC_S models, which are stationary in time.
        start: ``"noise"`` (fresh chains from the training init) or ``"chains"`` (continue the
            checkpoint's persistent chains or replay buffer).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    target = resolve_device(device)
    state = load_checkpoint(checkpoint, map_location=target)
    if is_multigrid(state):
        if size is not None or frames is not None or start != "noise":
            raise ValueError("a multi-grid model samples its fixed pyramid from the base grid: "
                             "size, frames and start='chains' do not apply")
        energies, config = multigrid_from_state(state, checkpoint)
        return synthesize_multigrid([e.to(target) for e in energies], config, state["base"],
                                    out_dir, n_samples=n_samples, n_steps=n_steps, seed=seed)
    energy, config = model_from_state(state, checkpoint)
    energy = energy.to(target)
    if config.data.kind == "voxels":
        if size is not None or frames is not None:
            raise ValueError("size and frames do not apply to voxel models (fixed grid size)")
        if start not in ("noise", "chains"):
            raise ValueError(f"start must be 'noise' or 'chains', got {start!r}")
        x0 = _stored_chains(config, state)[:n_samples] if start == "chains" else None
        return voxel_tasks.synthesize_voxels(energy, config, out_dir, start=x0,
                                             n_samples=n_samples, n_steps=n_steps, seed=seed)
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    sampler = build_sampler(config.sampler, n_steps=n_steps)
    is_video = energy.spatial_dims == 3
    if frames is not None and not is_video:
        raise ValueError("frames only applies to video models")
    if start == "chains":
        if size is not None or frames is not None:
            raise ValueError("size and frames cannot change when continuing the stored chains")
        x0 = _stored_chains(config, state)[:n_samples].to(param.device)
    elif start == "noise":
        side = size if size is not None else config.data.size
        fixed_size = energy.head_kind != "sum" or (energy.input_size is not None)
        if side != config.data.size and fixed_size:
            raise ValueError(
                f"this model is tied to {config.data.size}x{config.data.size} inputs; "
                f"size={side} needs a stationary model (texture, st)"
            )
        clip = (frames if frames is not None else config.data.frames,) if is_video else ()
        init = NoiseInit(config.chains.init, config.chains.init_scale)
        shape = (n_samples, config.model.in_channels, *clip, side, side)
        x0 = init.sample(shape, device=param.device, dtype=param.dtype, generator=generator)
    else:
        raise ValueError(f"start must be 'noise' or 'chains', got {start!r}")
    samples = sampler.run(energy, x0, generator=generator)
    out = Path(out_dir)
    save_preview(samples, out / "synthesized", kind="video" if is_video else "image",
                 formats=(".gif", ".mp4"))
    return out


def synthesize_multigrid(energies: list[ConvNetEnergy], config: ExperimentConfig, base: torch.Tensor,
                         out_dir: str | Path, *, n_samples: int = 16, n_steps: int | None = None,
                         seed: int = 0) -> Path:
    """Coarse-to-fine samples of a multi-grid model into ``out_dir``: ``synthesized`` (finest
    grid, as :func:`synthesize`), ``synthesized_grid<k>`` for every coarser modelled grid ``k``
    (1 = coarsest; voxels: ``.npy`` only) and ``pyramid`` (every grid of the first samples side
    by side).

    Args:
        energies: one per modelled grid, coarse to fine.
        base: ``(N, *lead, *S_0)`` the training examples at the base grid, in the model's units;
            every chain starts from a random one of them (for images: a real mean colour).
        n_steps: every grid's chain length (default: each grid's training chain length).
    """
    param = next(energies[0].parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    picks = torch.randint(len(base), (n_samples,), generator=generator, device=param.device)
    grids = multigrid_sampler(config, n_steps=n_steps).run(
        energies, base.to(param.device)[picks], generator=generator)
    kind = preview_kind(config)
    if kind == "voxels":
        grids = [voxel_tasks.to_occupancy(g, config) for g in grids]
    out = Path(out_dir)
    save_preview(grids[-1], out / "synthesized", kind=kind, formats=(".gif", ".mp4"))
    for k, grid in enumerate(grids[1:-1], start=1):
        if kind == "voxels":
            # A coarse grid's block means rarely reach the 0.5 level a render draws; its
            # picture is in the pyramid (drawn at half each grid's maximum), its values here.
            atomic_save_npy(out / f"synthesized_grid{k}.npy", grid[:, 0].cpu().numpy())
        else:
            save_preview(grid, out / f"synthesized_grid{k}", kind=kind)
    save_pyramid(grids, out / "pyramid", kind=kind)
    return out


def _stored_chains(config: ExperimentConfig, state: dict[str, Any]) -> torch.Tensor:
    chains = state.get("chains", {})
    if "chains" in chains:
        return chains["chains"].flatten(0, 1)
    if "samples" in chains:
        return chains["samples"]
    raise ValueError(
        f"the checkpoint keeps no chains (training used chains.mode={config.chains.mode!r}); "
        "use start='noise'"
    )


def reconstruct(
    checkpoint: str | Path,
    image: str | Path,
    out_dir: str | Path,
    *,
    n_iterations: int = 100,
    lr: float = 0.05,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Reconstruct ``image`` by optimising the start of the model's short-run chain.

    Writes ``reconstruction.png`` (target | reconstruction) and ``reconstruction.json`` (MSE per
    iteration, first and last) into ``out_dir``.
    """
    energy, config, _ = load_model(checkpoint, device=device)
    param = next(energy.parameters())
    target = load_image(image, channels=config.model.in_channels, size=config.data.size)
    target = target.unsqueeze(0).to(param.device)
    sampler = _langevin(config)
    generator = torch.Generator(param.device).manual_seed(seed)
    init = NoiseInit(config.chains.init, max(config.chains.init_scale, 1e-3))
    z0 = init.sample(target.shape, device=param.device, generator=generator)
    _, x, losses = shortrun.reconstruct(
        energy, sampler, target, z0=z0, n_iterations=n_iterations, lr=lr, generator=generator
    )
    out = Path(out_dir)
    save_image_grid(torch.cat([target, x]), out / "reconstruction.png", nrow=2)
    atomic_write_json(out / "reconstruction.json",
                      {"mse_first": losses[0], "mse_last": losses[-1], "mse": losses})
    return out


def interpolate(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    n_points: int = 8,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Samples along a path between two noise starts; writes ``interpolation.png``."""
    energy, config, _ = load_model(checkpoint, device=device)
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    init = NoiseInit(config.chains.init, max(config.chains.init_scale, 1e-3))
    shape = (config.model.in_channels, config.data.size, config.data.size)
    z_start = init.sample(shape, device=param.device, generator=generator)
    z_end = init.sample(shape, device=param.device, generator=generator)
    path = shortrun.interpolate(
        energy, _langevin(config), z_start, z_end, n_points=n_points, generator=generator
    )
    return save_image_grid(path, Path(out_dir) / "interpolation.png", nrow=n_points).parent


def _langevin(config: ExperimentConfig) -> Langevin:
    sampler = build_sampler(config.sampler)
    if not isinstance(sampler, Langevin):
        raise ValueError(
            f"reconstruction and interpolation need a Langevin short-run model, "
            f"this one was trained with {config.sampler.kind!r}"
        )
    return sampler


def demo(out_dir: str | Path = "outputs/demo", *, overrides: Sequence[str] = (),
         progress: bool = True) -> Path:
    """The quick start: learn the built-in brick texture (a real photograph shipped with
    scikit-image), then synthesize by running the model's persistent chains 5x longer.

    Persistent chains are the model's samples in the original method; fresh chains from zero
    need many more steps (``stgconv synthesize RUN --steps 100``).
    """
    config = load_config(None, [f"out_dir={Path(out_dir)}", *overrides])
    run = train(config, progress=progress)
    synthesize(run, run / "synthesis", n_samples=8, start="chains",
               n_steps=5 * config.sampler.n_steps, device=config.device)
    return run
