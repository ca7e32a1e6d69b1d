"""``stgconv reconstruct`` and ``stgconv interpolate``: a short-run image model used as a
generator (:mod:`stgconv.shortrun`)."""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from stgconv import cooperative, shortrun
from stgconv.build import build_sampler, model_clamp, task_sampler
from stgconv.checks import check_entries, check_seed
from stgconv.checkpoint import load_model, warn_of_no_config, with_net_inputs
from stgconv.config import ExperimentConfig
from stgconv.cooperative import generator_from_state, is_cooperative
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_write_json, remove_unwritten, written_together
from stgconv.io.image import load_image, save_image_grid
from stgconv.mcmc import Langevin, NoiseInit, NonFiniteEnergyError
from stgconv.mcmc.base import LANGEVIN_ADVICE, STEP_ADVICE
from stgconv.modalities import modality_of

RECONSTRUCT_FILES = ("reconstruction.png", "reconstruction.json")
"""What :func:`reconstruct` writes into its output folder."""
INTERPOLATION_NAME = re.compile(r"interpolation\.(png|gif|mp4|npy)")
"""The names of the files :func:`interpolate` writes, of any model's path: an earlier path's
that a new one does not write are removed (:func:`stgconv.io.atomic.remove_unwritten`)."""


def _is_interpolation(name: str) -> bool:
    return INTERPOLATION_NAME.fullmatch(name) is not None


@written_together()
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
    """Reconstruct ``image`` by optimising the start of the model's short-run chain (a model
    trained from noise starts, ``chains.mode: noise``; any other image model warns).

    Writes ``reconstruction.png`` (target | reconstruction) and ``reconstruction.json`` into
    ``out_dir``: ``mse`` before each iteration's step, ``mse_first`` that of the start and
    ``mse_last`` that of the reconstruction written (after the last step), mean squared errors
    of pixels in the models' [-1, 1] (x 127.5^2 for grey levels 0-255).
    """
    seed = check_seed(seed)
    energy, config, state = _image_model(checkpoint, device)
    param = next(energy.parameters())
    target = load_image(image, channels=config.model.in_channels, size=config.data.size)
    # In the net's dtype, as synthesize's chains: a float64 model refused float32 starts.
    target = target.unsqueeze(0).to(param.device, param.dtype)
    sampler = _langevin(config)
    generator = torch.Generator(param.device).manual_seed(seed)
    init = _start_noise(config, checkpoint, state)
    z0 = init.sample(target.shape, device=param.device, dtype=param.dtype, generator=generator)
    with _advised("reconstruct"):
        _, x, losses = shortrun.reconstruct(
            energy, sampler, target, z0=z0, n_iterations=n_iterations, lr=lr,
            generator=generator
        )
    picture, table = (Path(out_dir) / name for name in RECONSTRUCT_FILES)
    save_image_grid(torch.cat([target, x]), picture, nrow=2)
    atomic_write_json(table,
                      {"mse_first": losses[0], "mse_last": float((x - target).pow(2).mean()),
                       "mse": losses})
    return Path(out_dir)


@written_together()
def interpolate(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    n_points: int = 8,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Samples along a path between two noise starts of an image model (trained from noise
    starts, as :func:`reconstruct` takes); writes every point to ``interpolation.npy``
    (``(n_points, C, H, W)`` grey levels 0-255, the data's value range, as
    :func:`~stgconv.tasks.synthesize.synthesize` writes samples) and the row
    ``interpolation.png``.

    A cooperative model (any modality) walks between two latents of its generator instead,
    each ``G(z)`` revised by the model's sampler (:func:`stgconv.cooperative.interpolate`), and
    writes every point to ``interpolation.npy`` (in the data's value range as above; voxels
    as occupancies ``(n_points, D, D, D)``) and its modality's preview ``interpolation.*`` (a
    PNG for images, a GIF for videos, renders for voxels) of as many points as the preview
    shows (4 clips, 16 shapes), spread along the path from end to end.

    The files are written together, and where ``out_dir`` holds an earlier path (its
    ``interpolation.npy``), its files that this one does not write
    (:data:`INTERPOLATION_NAME`) are then removed.
    """
    seed = check_seed(seed)
    # Once this path is in place: an earlier one's preview of another kind (a video model's
    # interpolation.gif beside an image model's new .png) would show other points. Only
    # where its array marks an earlier path, as synthesize does.
    if (Path(out_dir) / "interpolation.npy").is_file():
        remove_unwritten(out_dir, _is_interpolation)
    energy, config, state = load_model(checkpoint, device=device)
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    if is_cooperative(state):
        # As synthesize: a Trainer's config-less checkpoint of a video or voxel model failed
        # at its preview as "expected images (N, C, H, W)", after its path was sampled.
        config = with_net_inputs(energy, config, checkpoint)
        if not state.get("config"):
            # Revised by the defaults' sampler without a word, as if it were the model's own.
            warn_of_no_config(checkpoint, config, "CooperativeTrainer",
                              "the sampler that revises its generator's proposals",
                              stacklevel=3)  # the caller's line, past written_together's wrapper
        net = generator_from_state(state, checkpoint).to(param.device)
        check_entries((n_points, *net.out_shape), f"{n_points} points")
        z = net.sample_latent(2, generator=generator)
        with _advised("interpolate"):
            path = cooperative.interpolate(energy, net, task_sampler(config), z[0], z[1],
                                           n_points=n_points, clamp=model_clamp(config),
                                           generator=generator)
        modality = modality_of(config)
        path = modality.to_data(path, config)
        # The preview shows at most modality.most_shown points: spread along the path, both
        # ends included (the first ones would stop half way). Written first: a voxel preview
        # also writes the .npy of the shapes it shows, which every point must then replace.
        shown = torch.linspace(0, len(path) - 1, min(len(path), modality.most_shown))
        modality.preview(path[shown.round().long()], Path(out_dir) / "interpolation",
                         fps=modality.playback_fps(config.data))
        return modality.save_array(path, Path(out_dir) / "interpolation").parent
    config = _image_config(energy, config, checkpoint)
    shape = (config.model.in_channels, config.data.size, config.data.size)
    check_entries((n_points, *shape), f"{n_points} points")
    init = _start_noise(config, checkpoint, state)
    z_start = init.sample(shape, device=param.device, dtype=param.dtype, generator=generator)
    z_end = init.sample(shape, device=param.device, dtype=param.dtype, generator=generator)
    with _advised("interpolate"):
        path = shortrun.interpolate(energy, _langevin(config), z_start, z_end,
                                    n_points=n_points, init=init, generator=generator)
    modality = modality_of(config)
    modality.save_array(modality.to_data(path, config), Path(out_dir) / "interpolation")
    return save_image_grid(path, Path(out_dir) / "interpolation.png", nrow=n_points).parent


@contextmanager
def _advised(command: str) -> Iterator[None]:
    """A chain that diverged, advised in ``command``'s terms: the sampler's own advice (a
    smaller step size, gradient clipping, a clamp) named settings that reconstruct and
    interpolate have no option for, since they run the model's sampler as its config trained
    it. Other advice (reconstruct's lower lr, after its Adam steps: --lr) is kept."""
    try:
        yield
    except NonFiniteEnergyError as err:
        if err.advice not in (LANGEVIN_ADVICE, STEP_ADVICE):
            raise
        raise NonFiniteEnergyError(
            err.sampler, err.step, err.n_steps, err.chains,
            advice=f"the sampler is the model's own, as its config trained it, which {command} "
                   "keeps: the model diverges from these starts; another --seed draws other "
                   "starts, which may stay finite") from err


def _image_model(checkpoint: str | Path, device: str
                 ) -> tuple[ConvNetEnergy, ExperimentConfig, dict]:
    energy, config, state = load_model(checkpoint, device=device)
    return energy, _image_config(energy, config, checkpoint), state


def _image_config(energy: ConvNetEnergy, config: ExperimentConfig, checkpoint: str | Path
                  ) -> ExperimentConfig:
    """``config`` of an image model, its channels (and a net's tied side) filled in from the
    net where the checkpoint leaves them unset (:func:`~stgconv.checkpoint.with_net_inputs`);
    ``ValueError`` for another modality."""
    kind = modality_of(config).name
    if kind != "image":
        raise ValueError(f"{checkpoint} holds a {kind.removesuffix('s')} model; reconstruct and "
                         "interpolate take image models (interpolate: or cooperative models of "
                         "any kind)")
    return with_net_inputs(energy, config, checkpoint)


def _start_noise(config: ExperimentConfig, checkpoint: str | Path, state: dict) -> NoiseInit:
    """The noise that the short-run chains start from, the latent these tasks optimise (never
    exactly zero, or there is nothing to optimise)."""
    if config.chains.init == "data_gaussian":
        # Not "interpolate optimises": it walks between two starts.
        raise ValueError(f"{checkpoint} starts its chains from Gaussians fitted to its data "
                         "(chains.init data_gaussian); reconstruct optimises a noise start and "
                         "interpolate walks between two, so they take models trained from "
                         "gaussian or uniform noise")
    if is_cooperative(state):
        # Only reconstruct comes here with one: interpolate walks its generator's latents, which
        # the warning had said it did not do either.
        warnings.warn(f"{checkpoint} was trained from its generator's proposals, not from noise "
                      f"starts: the {config.sampler.n_steps}-step chain from noise that "
                      "reconstruct runs is not the generator it learned (interpolate walks its "
                      "generator's latents)", RuntimeWarning,
                      stacklevel=4)  # the caller's line, past written_together's wrapper
    elif not state.get("config"):
        # The defaults' chains.mode ('persistent') was named as how it was trained, which the
        # checkpoint does not say: a Trainer given no config= saves none of its sampler either.
        warn_of_no_config(checkpoint, config, "Trainer", "the chain from noise that "
                          "reconstruct and interpolate run", stacklevel=4)
    elif config.chains.mode != "noise":
        # It runs, but the chain from noise is not how this model makes its samples.
        warnings.warn(f"{checkpoint} was trained with chains.mode {config.chains.mode!r}, not "
                      f"from noise starts: the {config.sampler.n_steps}-step chain from noise "
                      "that reconstruct and interpolate run is not the generator it learned",
                      RuntimeWarning, stacklevel=4)
    return NoiseInit(config.chains.init, max(config.chains.init_scale, 1e-3))


def _langevin(config: ExperimentConfig) -> Langevin:
    sampler = build_sampler(config.sampler)
    if not isinstance(sampler, Langevin):
        raise ValueError(
            f"reconstruction and interpolation need a Langevin short-run model, "
            f"this one was trained with {config.sampler.kind!r}"
        )
    return sampler
