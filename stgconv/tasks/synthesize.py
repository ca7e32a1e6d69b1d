"""``stgconv synthesize``: sample a trained model (one net, or coarse to fine over its grids)."""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from stgconv.build import (chain_init, model_clamp, multigrid_bases, multigrid_sampler,
                           task_sampler)
from stgconv.checkpoint import (check_finite_chains, damaged_fit, is_multigrid, load_checkpoint,
                                model_from_state, multigrid_from_state,
                                resolve_checkpoint_path, warn_of_no_config, with_net_inputs)
from stgconv.checks import as_int, check_entries, check_seed
from stgconv.config import ExperimentConfig, example_shape, resolve_device
from stgconv.cooperative import generator_from_state, is_cooperative, propose_and_revise
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.generator import ConvGenerator
from stgconv.io.atomic import remove_unwritten, written_together
from stgconv.mcmc import DataGaussian, NonFiniteEnergyError
from stgconv.modalities import modality_of
from stgconv.types import EnergyFn


# What a multi-grid or cooperative model cannot change: each refuses any of the three.
MULTIGRID_FIXED = ("a multi-grid model samples its fixed pyramid from the base grid: size, frames "
                   "and start='chains' do not apply")
COOPERATIVE_FIXED = ("a cooperative model samples through its generator, which makes examples of "
                     "the training shape: size, frames and start='chains' do not apply")

# The names of every file a synthesis writes, of any model (the finest grid, a multi-grid
# model's coarser grids and pyramid, a cooperative model's proposals): those of an earlier
# synthesis into the folder that this one does not write are removed (remove_unwritten).
RESULT_NAME = re.compile(r"(synthesized(_grid\d+)?|pyramid|proposals)\.(png|gif|mp4|npy)")


def is_result(name: str) -> bool:
    """Whether a file named ``name`` is one that a synthesis writes (:data:`RESULT_NAME`)."""
    return RESULT_NAME.fullmatch(name) is not None


@written_together()
def synthesize(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    n_samples: int = 16,
    n_steps: int | None = None,
    size: int | None = None,
    frames: int | None = None,
    start: str = "noise",
    classes: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Sample from a trained model into ``out_dir``: ``synthesized.png`` for images,
    ``synthesized.gif`` and ``synthesized.mp4`` for videos, ``synthesized.png`` (renders) for
    voxels, and for every modality ``synthesized.npy``, every sample as float32 in the data's
    value range, as the data files hold it: ``(N, C, H, W)`` images and ``(N, C, T, H, W)``
    videos in grey levels 0-255 (unrounded; :func:`stgconv.io.image.from_levels` gives the
    models' [-1, 1]), ``(N, D, H, W)`` voxel occupancies in [0, 1]. A cooperative model's
    chains start at its generator's proposals (:func:`synthesize_cooperative`, which also
    writes ``proposals``). The files are written together, and where ``out_dir`` holds an
    earlier synthesis (its ``synthesized.npy``), its files that this one does not write
    (:func:`is_result`) are then removed.

    Args:
        n_steps: chain length (default: the config's `sampler.task_steps`, else its training
            chain length); for a cooperative model the revision steps, 0 allowed.
        size: image or frame side; only stationary models (texture, ST) can change it.
        frames: clip length for video models (default: the training length); the ST and FC_S
            models, stationary in time, take any length their filters fit (``st_small``: 3
            frames or more; a shorter clip, or a side under the filters', is refused).
        start: ``"noise"`` (fresh chains from the training init) or ``"chains"`` (continue the
            checkpoint's persistent chains or replay buffer: one chain per sample, the first ones in
            the order it keeps them, i.e. the first examples' chains or the buffer's first slots).
        classes: classifier (JEM) models only: sample the class-conditional energies
            ``E(x, y) = -f(x)[y]`` instead of the marginal, ``n_samples`` per class, class-major
            (sample ``i`` is of class ``classes[i // n_samples]``); ``synthesized.png`` then
            shows one row per class. Each class is named once.
    """
    seed = check_seed(seed)
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    size = None if size is None else as_int(size, "size", minimum=1)
    frames = None if frames is None else as_int(frames, "frames", minimum=1)
    if classes is not None:
        if not isinstance(classes, Sequence) or isinstance(classes, str):
            # An int failed in Python's words: "'int' object is not iterable".
            raise ValueError(f"classes must be a list of class numbers, got {classes!r} "
                             f"([{classes!r}] for one class)")
        classes = [as_int(k, "class", minimum=0) for k in classes]
        if not classes:
            raise ValueError("classes is empty: name at least one class, or pass None")
        if len(set(classes)) < len(classes):
            # Two rows of one class, drawn alike to look like two classes' (--class 0 --class 0).
            repeated = sorted({k for k in classes if classes.count(k) > 1})
            raise ValueError(f"classes names class {repeated[0]} more than once ({classes}): "
                             "name each class once (-n sets the samples of each)")
    target = resolve_device(device)
    # Once this synthesis is in place: an earlier one's files that it does not replace (a
    # video model's synthesized.gif beside an image model's synthesized.png) would show
    # other samples than its synthesized.npy. Only where that array marks an earlier
    # synthesis: a folder without one may hold a user's own pyramid.png.
    if (Path(out_dir) / "synthesized.npy").is_file():
        remove_unwritten(out_dir, is_result)
    state = load_checkpoint(checkpoint, map_location=target)
    if classes is not None and (is_multigrid(state) or is_cooperative(state)):
        raise ValueError(f"{checkpoint} is not a classifier (JEM) model: it has no classes to "
                         "sample from (--class)")
    check_steps(state, n_steps)
    check_start(state, start)
    if is_multigrid(state):
        if size is not None or frames is not None:
            raise ValueError(MULTIGRID_FIXED)
        energies, config = multigrid_from_state(state, checkpoint)
        check_entries((n_samples, *example_shape(config.data)), f"{n_samples} samples")
        return synthesize_multigrid([e.to(target) for e in energies], config, state["base"],
                                    out_dir, n_samples=n_samples, n_steps=n_steps, seed=seed)
    energy, config = model_from_state(state, checkpoint)
    config = with_net_inputs(energy, config, checkpoint)
    if not state.get("config"):  # sampled by the defaults' chain as if it were the model's own
        warn_of_no_config(checkpoint, config,
                          *(("CooperativeTrainer", "the sampler that revises its generator's "
                             "proposals") if is_cooperative(state)
                            else ("Trainer", "the chain synthesize runs")),
                          stacklevel=3)  # the caller's line, past written_together's wrapper
    energy = energy.to(target)
    if is_cooperative(state):
        if size is not None or frames is not None:
            raise ValueError(COOPERATIVE_FIXED)
        return synthesize_cooperative(energy, generator_from_state(state, checkpoint).to(target),
                                      config, out_dir, n_samples=n_samples, n_steps=n_steps,
                                      seed=seed)
    target_energy = energy if classes is None else _class_energy(energy, config, classes,
                                                                   n_samples, checkpoint)
    n_chains = n_samples * (1 if classes is None else len(classes))
    modality = modality_of(config)
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    if start == "chains":
        if size is not None or frames is not None:
            raise ValueError(f"size and frames cannot change when continuing the stored chains; "
                             f"got size={size}, frames={frames} (leave both unset)")
        check_finite_chains(state.get("chains"), resolve_checkpoint_path(checkpoint),
                            advice="start from noise (--start noise)")
        x0 = _stored_chains(state)[:n_chains].to(param.device)
        if classes is not None and len(x0) < n_chains:
            raise ValueError(f"the checkpoint keeps {len(x0)} chains, fewer than the {n_chains} "
                             f"samples asked for ({n_samples} per class); lower -n or start "
                             "from noise (--start noise)")
        if len(x0) < n_chains:  # without classes every stored chain is a sample: fewer, said
            warnings.warn(f"the checkpoint keeps {len(x0)} chains: {len(x0)} samples, not the "
                          f"{n_chains} asked for (--start noise makes any number)",
                          stacklevel=3)  # the caller's line, past written_together's wrapper
    else:
        shape = modality.sample_shape(energy, config, n_chains, size=size, frames=frames)
        check_entries(shape, f"{n_chains} samples" + (f" of side {size}" if size else "")
                      + (f" of {frames} frames" if frames else ""))
        _check_samples_fit(energy, shape, size=size, frames=frames)
        try:
            init = chain_init(config.chains, state.get("init"))
        except ValueError as err:  # the Gaussians fitted to the data, a damaged file's
            raise damaged_fit(resolve_checkpoint_path(checkpoint), "init", err) from err
        if isinstance(init, DataGaussian):
            # A class's chains start from its own component (JEM++'s informative start).
            of_class = (None if classes is None else torch.tensor(
                classes, device=param.device).repeat_interleave(n_samples))
            x0 = init.sample(shape, classes=of_class, device=param.device, dtype=param.dtype,
                             generator=generator)
        else:
            x0 = init.sample(shape, device=param.device, dtype=param.dtype, generator=generator)
            if (n_samples > 1 and init.scale == 0 and config.sampler.kind == "langevin"
                    and config.sampler.noise_scale == 0):
                # One start and a chain without noise: every sample would be one copy of the
                # same result (the voxel super-resolution and recovery configs, whose chains
                # start at a task's proposal in training), which no file shows.
                each = " of each class" if classes is not None else ""
                warnings.warn(f"the {n_samples} samples{each} are all the same: they start "
                              "at one point (chains.init_scale 0) and the chain adds no noise "
                              "(sampler.noise_scale 0)", stacklevel=3)
    # The stored chains are another start only where they exist and are not the start already.
    with _advised(stored_chains=start == "noise" and _stored_chains(state) is not None):
        samples = task_sampler(config, n_steps=n_steps).run(target_energy, x0,
                                                            generator=generator)
    samples = modality.to_data(samples, config)
    out = Path(out_dir)
    modality.save_samples(samples, out / "synthesized", fps=modality.playback_fps(config.data))
    if classes is not None:
        # Over the first-64 preview that save_samples wrote: one row per class.
        modality.save_rows(list(samples.split(n_samples)), out / "synthesized")
    return out


def _check_samples_fit(energy: ConvNetEnergy | ClassifierEnergy, shape: Sequence[int], *,
                       size: int | None, frames: int | None) -> None:
    """``ValueError`` naming ``size`` and ``frames`` (those given) where fresh samples of
    ``shape`` ``(N, C, *S)`` are smaller than ``energy``'s receptive field: the net's own
    refusal, "input size (2, 20, 20) is smaller ...", named no option that set it. A
    classifier's network checks its fixed input itself."""
    if not isinstance(energy, ConvNetEnergy):
        return
    try:
        energy.check_size(shape[2:])
    except ValueError as err:
        asked = [f"{name}={value}" for name, value in (("size", size), ("frames", frames))
                 if value is not None]
        if not asked:  # the training size, which the training data's check let through
            raise
        raise ValueError(f"the samples asked for ({', '.join(asked)}) are of size "
                         f"{tuple(shape[2:])}, smaller than the network's receptive field: it "
                         f"needs at least {energy.smallest_size()}") from err


def _class_energy(energy: ConvNetEnergy | ClassifierEnergy, config: ExperimentConfig,
                  classes: list[int], n_samples: int, checkpoint: str | Path) -> EnergyFn:
    """The class-conditional energy of ``n_samples`` chains per class of ``classes``
    (class-major), or ``ValueError`` for a model without classes or a class past its last."""
    if not isinstance(energy, ClassifierEnergy):
        raise ValueError(f"{checkpoint} is not a classifier (JEM) model (model.arch "
                         f"{config.model.arch!r}): it has no classes to sample from (--class)")
    n_classes = config.model.n_classes
    bad = [k for k in classes if k >= n_classes]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range: the model has {n_classes} classes, "
                         f"0 .. {n_classes - 1}")
    param = next(energy.parameters())
    labels = torch.tensor(classes, device=param.device).repeat_interleave(n_samples)
    return energy.conditional(labels)


def synthesize_cooperative(energy: ConvNetEnergy, generator_net: ConvGenerator,
                           config: ExperimentConfig, out_dir: str | Path, *, n_samples: int = 16,
                           n_steps: int | None = None, seed: int = 0) -> Path:
    """Samples of a cooperative model into ``out_dir``: ``proposals`` (the generator's ``G(z)``
    for ``z ~ N(0, I)``) and ``synthesized`` (those revised by the descriptor's sampler), each
    written as :func:`synthesize` writes its result.

    Args:
        n_steps: revision steps (default: the config's ``sampler.task_steps``, else its training
            chain length); 0 keeps the proposals unrevised.
    """
    seed = check_seed(seed)
    if n_steps is not None:
        n_steps = as_int(n_steps, "n_steps", minimum=0)
    check_entries((n_samples, *generator_net.out_shape), f"{n_samples} samples")
    param = next(energy.parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    z = generator_net.sample_latent(n_samples, device=param.device, generator=generator)
    sampler = None if n_steps == 0 else task_sampler(config, n_steps=n_steps)
    with _advised(stored_chains=False):
        proposals, samples = propose_and_revise(energy, generator_net, sampler, z,
                                                clamp=model_clamp(config), generator=generator)
    modality = modality_of(config)
    out, fps = Path(out_dir), modality.playback_fps(config.data)
    modality.save_samples(modality.to_data(proposals, config), out / "proposals", fps=fps)
    modality.save_samples(modality.to_data(samples, config), out / "synthesized", fps=fps)
    return out


def synthesize_multigrid(energies: list[ConvNetEnergy], config: ExperimentConfig,
                         base: torch.Tensor, out_dir: str | Path, *, n_samples: int = 16,
                         n_steps: int | None = None, seed: int = 0) -> Path:
    """Coarse-to-fine samples of a multi-grid model into ``out_dir``: ``synthesized`` (finest
    grid, as :func:`synthesize`), ``synthesized_grid<k>`` for every coarser modelled grid ``k``
    (1 = coarsest; a preview and ``.npy``, voxels ``.npy`` only) and ``pyramid`` (every grid
    of the first samples side by side).

    Args:
        energies: one per modelled grid, coarse to fine.
        base: ``(N, *lead, *S_0)`` the training examples at the base grid, in the model's units;
            every chain starts from a random one of them (for images: a real mean colour), or
            with ``multigrid.base_rank`` from a draw of a Gaussian fitted to them
            (:func:`stgconv.build.multigrid_bases`).
        n_steps: every grid's chain length (default: each grid's ``task_steps``, else its training
            chain length).
    """
    seed = check_seed(seed)
    param = next(energies[0].parameters())
    generator = torch.Generator(param.device).manual_seed(seed)
    starts = multigrid_bases(config, base.to(param.device), n_samples, generator=generator)
    with _advised(stored_chains=False):
        grids = multigrid_sampler(config, n_steps=n_steps).run(energies, starts,
                                                               generator=generator)
    modality = modality_of(config)
    grids = [modality.to_data(grid, config) for grid in grids]
    out, fps = Path(out_dir), modality.playback_fps(config.data)
    modality.save_samples(grids[-1], out / "synthesized", fps=fps)
    for k, grid in enumerate(grids[1:-1], start=1):
        modality.save_grid(grid, out / f"synthesized_grid{k}", fps=fps, frames=config.data.frames)
    modality.save_pyramid(grids, out / "pyramid", fps=fps)
    return out


@contextmanager
def _advised(*, stored_chains: bool) -> Iterator[None]:
    """A diverging chain's advice in this command's terms: the sampler's advice (a smaller step
    size, a clamp) named settings synthesize has no option for. ``stored_chains``: the
    checkpoint's chains are a start to advise (a multi-grid or cooperative model refuses them,
    and a chain that started there needs no such advice)."""
    also = " or the stored chains (--start chains)" if stored_chains else ""
    advice = ("the sampler is the model's own, as its config trained it, and synthesize keeps "
              "its step size: fewer steps (--steps; a short-run model learns the length of its "
              f"chain){also} may stay finite")
    try:
        yield
    except NonFiniteEnergyError as err:
        raise NonFiniteEnergyError(err.sampler, err.step, err.n_steps, err.chains,
                                   advice=advice) from err


def check_steps(state: dict[str, Any], n_steps: int | None) -> None:
    """Raise ``ValueError`` unless the model of the loaded checkpoint ``state`` samples with
    ``n_steps`` chain steps (``None``: the config's): 0 (no chain) is for cooperative models
    only. Cheap: callers check before work that would precede :func:`synthesize`."""
    if n_steps == 0 and not is_cooperative(state):
        raise ValueError("0 steps (no chain) is for cooperative models only: this model's "
                         "samples need at least 1 sampler step")


def check_start(state: dict[str, Any], start: str, *, n_chains: int | None = None) -> None:
    """Raise ``ValueError`` unless the model of the loaded checkpoint ``state`` can start its
    chains at ``start``: ``"noise"`` any model, ``"chains"`` a single net's model whose
    checkpoint keeps its chains (trained with persistent chains or a replay buffer), at least
    ``n_chains`` of them when given (what class-conditional sampling needs: :func:`synthesize`
    refuses fewer). Cheap, as :func:`check_steps`."""
    if start not in ("noise", "chains"):
        raise ValueError(f"start must be 'noise' or 'chains', got {start!r}")
    if start == "noise":
        return
    if is_multigrid(state):
        raise ValueError(MULTIGRID_FIXED)
    if is_cooperative(state):
        raise ValueError(COOPERATIVE_FIXED)
    if _stored_chains(state) is None:
        mode = state.get("config", {}).get("chains", {}).get("mode")
        raise ValueError(f"the checkpoint keeps no chains (training used chains.mode={mode!r}); "
                         "start from noise (--start noise)")
    kept = len(_stored_chains(state))
    if n_chains is not None and kept < n_chains:
        raise ValueError(f"the checkpoint keeps {kept} chains, fewer than the {n_chains} asked "
                         "for; start from noise (--start noise)")


def _stored_chains(state: dict[str, Any]) -> torch.Tensor | None:
    """The chains ``(N, *S)`` the checkpoint keeps (every example's, one after another), or
    ``None`` where it keeps none."""
    chains = state.get("chains", {})
    if "chains" in chains:
        return chains["chains"].flatten(0, 1)
    return chains.get("samples")
