"""``stgconv synthesize``: sample a trained model (one net, or coarse to fine over its grids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stgconv.build import multigrid_sampler, task_sampler
from stgconv.checkpoint import is_multigrid, load_checkpoint, model_from_state, multigrid_from_state
from stgconv.checks import as_int, check_entries
from stgconv.config import ExperimentConfig, example_shape, resolve_device
from stgconv.energy.base import ConvNetEnergy
from stgconv.mcmc import NoiseInit
from stgconv.modalities import modality_of


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
    ``synthesized.gif`` and ``synthesized.mp4`` for videos, ``synthesized.png`` (renders) for
    voxels, and for every modality ``synthesized.npy``, every sample as float32 in the data's
    value range: ``(N, C, H, W)`` images, ``(N, C, T, H, W)`` videos, ``(N, D, H, W)`` voxel
    occupancies.

    Args:
        n_steps: chain length (default: the config's `sampler.task_steps`, else its training
            chain length).
        size: image or frame side; only stationary models (texture, ST) can change it.
        frames: clip length for video models (default: the training length); any length works
            for the ST and FC_S models, which are stationary in time.
        start: ``"noise"`` (fresh chains from the training init) or ``"chains"`` (continue the
            checkpoint's persistent chains or replay buffer).
    """
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    size = None if size is None else as_int(size, "size", minimum=1)
    frames = None if frames is None else as_int(frames, "frames", minimum=1)
    if start not in ("noise", "chains"):
        raise ValueError(f"start must be 'noise' or 'chains', got {start!r}")
    target = resolve_device(device)
    state = load_checkpoint(checkpoint, map_location=target)
    if is_multigrid(state):
        if size is not None or frames is not None or start != "noise":
            raise ValueError("a multi-grid model samples its fixed pyramid from the base grid: "
                             "size, frames and start='chains' do not apply")
        energies, config = multigrid_from_state(state, checkpoint)
        check_entries((n_samples, *example_shape(config.data)), f"{n_samples} samples")
        return synthesize_multigrid([e.to(target) for e in energies], config, state["base"],
                                    out_dir, n_samples=n_samples, n_steps=n_steps, seed=seed)
    energy, config = model_from_state(state, checkpoint)
    energy = energy.to(target)
    modality = modality_of(config)
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    if start == "chains":
        if size is not None or frames is not None:
            raise ValueError("size and frames cannot change when continuing the stored chains")
        x0 = _stored_chains(config, state)[:n_samples].to(param.device)
    else:
        shape = modality.sample_shape(energy, config, n_samples, size=size, frames=frames)
        check_entries(shape, f"{n_samples} samples" + (f" of side {size}" if size else "")
                      + (f" of {frames} frames" if frames else ""))
        init = NoiseInit(config.chains.init, config.chains.init_scale)
        x0 = init.sample(shape, device=param.device, dtype=param.dtype, generator=generator)
    samples = task_sampler(config, n_steps=n_steps).run(energy, x0, generator=generator)
    out = Path(out_dir)
    modality.save_samples(modality.to_data(samples, config), out / "synthesized")
    return out


def synthesize_multigrid(energies: list[ConvNetEnergy], config: ExperimentConfig,
                         base: torch.Tensor, out_dir: str | Path, *, n_samples: int = 16,
                         n_steps: int | None = None, seed: int = 0) -> Path:
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
    modality = modality_of(config)
    grids = [modality.to_data(grid, config) for grid in grids]
    out = Path(out_dir)
    modality.save_samples(grids[-1], out / "synthesized")
    for k, grid in enumerate(grids[1:-1], start=1):
        modality.save_grid(grid, out / f"synthesized_grid{k}")
    modality.save_pyramid(grids, out / "pyramid")
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
