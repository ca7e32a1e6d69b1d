"""``stgconv recover``: recover the masked pixels of a clip while learning the model from it.

The clip is the first ``frames`` frames, each resized to ``size x size``; the mask comes from a
``.mat`` file of the original experiments or a ``.npy`` array, or is generated. The recovery
itself is :func:`stgconv.recovery.recover` on the video modality's energy net.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stgconv.baselines import mean_fill
from stgconv.baselines.video import FILLS, biharmonic_inpainting
from stgconv.build import build_sampler, seeded_weights
from stgconv.checks import (check_entries, check_not_meta, check_output, check_path, check_seed,
                            npy_shape)
from stgconv.config import ExperimentConfig, RecoveryConfig, resolve_device, save_config
from stgconv.data.masks import (
    check_mask_matches,
    load_mask,
    missing_frames,
    occluded_region,
    salt_and_pepper,
)
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_save_npy, atomic_write_json, written_together
from stgconv.io.image import IMAGE_SUFFIXES
from stgconv.io.video import TooFewFramesError, frame_rate, load_video, save_comparison
from stgconv.learned_fill import (
    FillNet,
    apply_fill,
    check_patterns,
    check_prior_fits,
    learned_fill,
    load_fill_prior,
    useful_shifts,
)
from stgconv.mcmc import NoiseInit
from stgconv.metrics import missing_mae_255
from stgconv.modalities import VIDEO
from stgconv.recovery import (
    CompletionChain,
    RecoveryResult,
    check_schedule,
    hidden_whole_cause,
    holdout_like,
    recover,
    spread_step_scale,
)
from stgconv.tasks.train import training_files
from stgconv.types import Fill

UNIT = "mean absolute error over the missing pixels, 0-255 scale"
REGION_KINDS = ("region", "fixed_region")  # a block side: moving, fixed
MASK_KINDS = ("missing_frames", *REGION_KINDS, "salt_and_pepper")


# What recover writes into its folder: also the names the CLI keeps an input file from being
# replaced by.
RECOVER_FILES = ("recovered.mp4", "recovered.npy", "comparison.mp4", "config.yaml", "metrics.json")


def load_known(mask: str | Path, shape: tuple[int, int, int], *, seed: int = 0) -> Tensor:
    """A ``known`` mask (True = observed) for clips of ``shape = (T, H, W)``.

    ``mask`` is a ``.mat`` file of the original experiments or a ``.npy`` array ``(T, H, W)`` /
    ``(C, T, H, W)`` (both 1 = missing, converted here), one frame's mask for every frame (an
    image, white = missing, fitted to the clip's size; a ``.npy`` ``(H, W)``: see
    :func:`~stgconv.data.masks.load_mask`), or a generated mask:
    ``missing_frames:FRACTION``, ``region:SIDE`` (a moving SIDE x SIDE block per frame),
    ``fixed_region:SIDE`` (one such block in the same place in every frame) or
    ``salt_and_pepper:FRACTION``, drawn from ``seed`` (an existing file of such a name is read
    as a file), or several of them joined by ``+``, each entry missing where any of them hides
    it (``fixed_region:20+missing_frames:0.3``: a logo and dropped frames; each drawn as it is
    drawn alone, so two parts of one kind draw the same). Bool ``(T, H, W)``
    when generated, ``(C, T, H, W)`` from a file (``C`` may be 1); either broadcasts against
    the clip ``(C, T, H, W)``.
    """
    seed = check_seed(seed)
    if not isinstance(mask, str | os.PathLike):
        # A known tensor or array of the caller's own failed in pathlib ("expected str, bytes
        # or os.PathLike object").
        raise ValueError(f"mask must be a file's path or a generated mask "
                         f"({', '.join(f'{name}:...' for name in MASK_KINDS)}), got "
                         f"{type(mask).__name__}: np.save an array of 1 = missing, (T, H, W)")
    text = str(mask)
    parts = [part.strip() for part in text.split("+")]  # "a:1 + b:2" as typed in quotes
    if len(parts) > 1 and not Path(text).is_file():
        if "" in parts:  # else named as the generated mask '' that does not exist
            raise ValueError(f"mask {text!r} has an empty part between or beside its '+': "
                             "join generated masks as fixed_region:20+missing_frames:0.3")
        # A kind without its value ("missing_frames") is no generated mask: each part is, else
        # it was read as a file of that name, the mask typed unnamed.
        kinds = [part.partition(":")[0] for part in parts]
        generated = [kind in MASK_KINDS and ":" in part for kind, part in zip(kinds, parts)]
        if all(generated):
            known = torch.ones(shape, dtype=torch.bool)
            for part in parts:
                try:
                    known &= load_known(part, shape, seed=seed)
                except ValueError as err:
                    raise ValueError(f"mask {text!r}: {err}") from err
            return known
        if not Path(text).exists():  # as for one generated mask's typo
            unknown = kinds[generated.index(False)]
            why = (f"{unknown!r} needs its value, {unknown}:..." if unknown in MASK_KINDS else
                   f"{unknown!r} is no generated mask: "
                   f"{', '.join(f'{name}:...' for name in MASK_KINDS)}")
            raise FileNotFoundError(f"mask file not found: {text} ({why})")
    kind, sep, value = text.partition(":")
    if sep and kind in MASK_KINDS and not Path(text).is_file():
        generator = torch.Generator().manual_seed(seed)
        try:
            number = float(value)
        except ValueError as err:
            raise ValueError(f"mask {text!r}: {value!r} is not a number") from err
        if not math.isfinite(number):
            raise ValueError(f"mask {text!r}: {value!r} is not a finite number")
        try:
            if kind == "missing_frames":
                return missing_frames(*shape, fraction=number, generator=generator)
            if kind in REGION_KINDS:
                if number != int(number):
                    raise ValueError("the block side must be a whole number")
                return occluded_region(*shape, size=int(number), moving=kind == "region",
                                       generator=generator)
            return salt_and_pepper(*shape, fraction=number, generator=generator)
        except ValueError as err:
            raise ValueError(f"mask {text!r}: {err}") from err
    if sep and not Path(text).exists():  # "regoin:8" is a typo more often than a file name
        raise FileNotFoundError(f"mask file not found: {text} (generated masks are "
                                f"{', '.join(f'{name}:...' for name in MASK_KINDS)})")
    if text in MASK_KINDS and not Path(text).exists():  # as for a part of joined masks
        raise FileNotFoundError(f"mask file not found: {text} ({text!r} needs its value, "
                                f"{text}:...)")
    known = load_mask(mask, frames=shape[0], size=shape[1:])
    if tuple(known.shape[1:]) != tuple(shape):
        # Not broadcast: a (T, H, 1) or (1, H, W) file is another experiment's mask.
        suffix = Path(text).suffix.lower()
        read = ("" if suffix in (".npy", *IMAGE_SUFFIXES)
                else " (its (H, W, T, C) read as (C, T, H, W))")
        # A (T, H, W, C) array, as readers stack frames, is refused by a shape that does not
        # say which axis is out of place.
        last = (" (this one's channels come last: a .npy mask is (C, T, H, W), "
                "np.moveaxis(mask, -1, 0))"
                if suffix == ".npy" and tuple(known.shape[:3]) == tuple(shape) else "")
        # The file's own shape: a (T, H, W) array is read as (1, T, H, W), and named so it was
        # shown with an axis the file does not have.
        own = npy_shape(text) if suffix == ".npy" else None
        raise ValueError(f"mask file {text} is {own or tuple(known.shape)}{read}, the clip "
                         f"(T, H, W) {tuple(shape)}: a mask file must have the clip's frames "
                         f"and size{last}")
    return known


@written_together()
def recover_video(
    config: ExperimentConfig,
    video: str | Path,
    mask: str | Path,
    *,
    frames: int = 70,
    size: int = 150,
    clip: Tensor | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Hide the masked pixels of a clip, recover them, and score the result.

    The clip is ``video`` as :func:`load_clip` reads it at ``frames`` and ``size``, from the
    config's ``data.start_frame`` at its ``data.fps`` (the first frames at the clip's rate by
    default): ``clip`` when given (read before: a caller recovering one clip under several masks
    reads it once), else read here.

    Returns a dict with ``recovered`` ``(C, T, H, W)``, ``truth``, ``known``, ``init`` (the
    starting fill), ``start`` (``fill``: its name, ``recovery.init`` or with ``init: learned``
    the fill the holdout chose; ``holdout_errors``: each candidate's mean absolute error on the
    held-out entries, in the data's [-1, 1] units: x 127.5 for grey levels),
    ``error``/``init_error`` (:data:`UNIT`), ``selected_iteration``, ``seconds`` and
    ``config`` (as run: the clip's channels, frames and size, the model built for them). With
    ``out_dir`` (not a training run's folder, refused: its ``config.yaml`` would be replaced),
    writes ``recovered.mp4`` (to watch, at the clip's frame rate, ``data.fps`` where set, 25
    fps for a frame folder; a ``clip`` given with the name of no file needs ``data.fps``; an
    odd height or width gets one white row or column, as its codec needs even ones),
    ``recovered.npy`` (``(C, T, H, W)`` float32 in [-1, 1],
    exact), ``comparison.mp4`` (occluded | recovered | ground truth), ``config.yaml`` and
    ``metrics.json`` there.
    """
    if not isinstance(config, ExperimentConfig):  # a YAML file's path failed on .multigrid
        raise ValueError(f"config must be an ExperimentConfig, got {type(config).__name__} "
                         "(stgconv.config.load_config reads a YAML file into one)")
    unused = [name for name in ("multigrid", "cooperative", "initializer", "jem")
              if getattr(config, name) is not None]
    if unused:  # its top-level model would be learned instead, without a word
        raise ValueError(f"recovery learns one descriptor (the config's model section) from the "
                         f"clip; this config's {unused[0]} section would be ignored: remove it")
    if config.data.kind != "video":  # the clip's frames and size would be refused as its data
        raise ValueError(f"recovery learns a video model from the clip: the config's data.kind "
                         f"must be 'video' (and its model.arch a video one), got "
                         f"{config.data.kind!r}")
    device = resolve_device(config.device)
    if out_dir is not None:  # a file there failed after the whole recovery, "File exists"
        check_output(out_dir, "out_dir")
        for name in RECOVER_FILES:
            # A folder of an output's name failed after the whole recovery ("Is a directory"),
            # the outputs put in place before it left beside it.
            check_output(Path(out_dir) / name, "the output", folder=False)
    if out_dir is not None and (trained := training_files(out_dir)):
        # Its config.yaml would replace the run's, which the run's --resume reads.
        raise ValueError(f"{out_dir} holds a training run ({trained[0].name}, ...): recovering "
                         "into it would replace its config.yaml; write into another folder")
    if clip is None:
        # The config's start and rate choose the clip as they do for training: left out,
        # the first frames were recovered while config.yaml recorded the ones asked for.
        clip = load_clip(video, frames=frames, size=size, start_frame=config.data.start_frame,
                         fps=config.data.fps, channels=config.data.channels)
    else:
        _check_clip(clip, video, frames=frames, size=size, channels=config.data.channels)
    # Data: a clip another network made is recovered and reported as its values.
    truth = clip.detach().to(device)
    known = load_known(mask, tuple(truth.shape[1:]), seed=config.seed).to(device)
    try:
        check_mask_matches(known, truth)
    except ValueError as err:
        if str(mask).lower().endswith(".mat"):  # the user knows the file's own layout
            raise ValueError(f"{err} (the .mat mask's (H, W, T, C) read as (C, T, H, W))") from err
        raise
    known = known.expand_as(truth)
    observed = torch.where(known, truth, torch.zeros_like(truth))
    # Read before the work: a clip given with the name of no file (an array of the caller's)
    # failed on it after the whole recovery, with nothing written.
    fps = _frame_rate(config, video) if out_dir is not None else None
    started = time.perf_counter()
    result, init, start = _recover(config, observed, known, progress=progress)
    seconds = time.perf_counter() - started
    report = {
        "recovered": result.recovered, "truth": truth, "known": known, "init": init,
        "error": missing_mae_255(result.recovered, truth, known),
        "init_error": missing_mae_255(init, truth, known), "start": start,
        "selected_iteration": result.selected_iteration, "seconds": seconds,
        "config": _as_run(config, truth, video=video),
    }
    if out_dir is not None:
        # The config the outputs were written by, in report as in their config.yaml: eval
        # recovery's JSON named the config's own out_dir, where nothing was written.
        report["config"] = replace(report["config"], out_dir=str(out_dir))
        _save(out_dir, report["config"], report, result, video=video, mask=mask, fps=fps)
    return report


def _check_clip(clip: object, video: str | Path, *, frames: int, size: int,
                channels: int) -> None:
    """``ValueError`` unless ``clip`` is what :func:`load_clip` reads from ``video`` at the
    config's ``data.channels`` ``channels``: a float32 tensor ``(channels, frames, size, size)``
    of finite values in [-1, 1]. Grey levels 0-255 were scored as such (errors of thousands "on
    the 0-255 scale"), a NaN under the mask was refused only after the whole recovery, float64
    failed in the network asking for a model the caller never holds, and a numpy array failed
    with an AttributeError."""
    read = f"{video} read at frames={frames}, size={size}"
    shape = (channels, frames, size, size)
    if not isinstance(clip, Tensor):
        raise ValueError(f"clip is not a tensor but {type(clip).__name__}: {read} is a float32 "
                         f"tensor {shape} (torch.from_numpy for an array)")
    check_not_meta(clip, "clip")  # its values are read here
    clip = clip.detach()  # read as values, without torch's warning for one that requires grad
    if tuple(clip.shape) != shape:
        # A colour clip under a grey config was recovered in colour, its config.yaml saying
        # data.channels 3: the model the config describes was not the one that ran.
        colour = {1: "grey", 3: "colour"}
        other = (f" (a {colour[clip.shape[0]]} clip, and the config's data.channels is "
                 f"{channels}: give a {colour[channels]} one, or set data.channels "
                 f"{clip.shape[0]})" if clip.dim() == 4 and clip.shape[0] in colour
                 and clip.shape[0] != channels else "")
        raise ValueError(f"clip is {tuple(clip.shape)}: {read} at data.channels {channels} is "
                         f"{shape}{other}")
    if clip.dtype != torch.float32:  # the model the config builds is float32
        raise ValueError(f"clip is {clip.dtype}: {read} is float32 (clip.float())")
    bad = int((~torch.isfinite(clip)).sum())
    if bad:
        raise ValueError(f"clip holds {bad} NaN or infinite values: {read} holds none")
    low, high = float(clip.min()), float(clip.max())
    if low < -1.0 or high > 1.0:
        raise ValueError(f"clip holds values in [{low:g}, {high:g}]: {read} is in [-1, 1] "
                         "(grey level v of 0-255 is v / 127.5 - 1)")


def load_clip(video: str | Path, *, frames: int, size: int, start_frame: int = 0,
              fps: float | None = None, channels: int = 3) -> Tensor:
    """The clip a recovery of ``video`` works on, ``(channels, frames, size, size)`` in [-1, 1]:
    ``frames`` frames from ``start_frame`` (the first ones by default), picked at ``fps`` where
    given (:func:`~stgconv.io.video.load_video`'s resampling), each resized to ``size x size``,
    in colour or grey (``channels`` 1: luma, as training clips are made grey; the config's
    ``data.channels``). ``FileNotFoundError`` or ``ValueError`` (``load_video``'s) where it
    cannot be read or has fewer frames."""
    check_path(video, "video")
    # Before the clip is read and resized: a mistyped --size would take all memory there.
    check_entries((channels, frames, size, size), f"a clip of {frames} frames of {size}x{size}")
    try:
        return load_video(video, start_frame=start_frame, n_frames=frames, size=size, fps=fps,
                          channels=channels)
    except TooFewFramesError as err:  # the reader's parameters, named as here and as typed
        config = ("; start_frame and fps are the config's data.start_frame and data.fps"
                  if start_frame or fps is not None else "")
        raise TooFewFramesError(f"{err} (n_frames is frames, --frames{config})") from err


def _as_run(config: ExperimentConfig, clip: Tensor, *, video: str | Path | None = None
            ) -> ExperimentConfig:
    """``config`` as the recovery of ``clip`` ``(C, T, H, W)`` runs it: the clip's channels
    (data.channels's, checked), frames and size, the model built for them, and the ``video``
    it was read from (data.path)."""
    channels, frames, height, width = clip.shape
    data = replace(config.data, channels=channels, frames=frames,
                   size=width if height == width else config.data.size,
                   path=config.data.path if video is None else str(video))
    model = replace(config.model, in_channels=channels, image_size=width)
    return replace(config, data=data, model=model)


# check_schedule's arguments as the config names them.
SCHEDULE_KEYS = ("train.n_iterations", "chains.chains_per_example", "recovery.warmup",
                 "recovery.average_last")


def _recover(config: ExperimentConfig, observed: Tensor, known: Tensor, *, progress: bool
             ) -> tuple[RecoveryResult, Tensor, dict[str, Any]]:
    """The recovery the config describes, its starting fill ``(C, T, H, W)`` and what chose it
    (``fill``: its name, ``holdout_errors``: see :func:`_start_fill`)."""
    settings = config.recovery
    # Everything that can refuse the config or the mask is checked before the learned fill's
    # minutes.
    if bool(known.all()):
        raise ValueError("the mask hides nothing: there is no missing entry to recover")
    if not bool(known.any()):
        raise ValueError("the mask hides every entry: there is no observed one to recover from")
    check_schedule(config.train.n_iterations, config.chains.chains_per_example, settings.warmup,
                   settings.average_last, names=SCHEDULE_KEYS)
    try:
        NoiseInit(config.chains.init, config.chains.init_scale)
    except ValueError as err:
        raise ValueError(f"chains.init: {err} (recovery's chains start from noise)") from err
    check_fits_network(config, observed)
    prior = _load_prior(settings, channels=observed.shape[0])
    if settings.init == "learned":
        try:
            useful_shifts(known)
        except ValueError as err:  # then no hold-out shaped like the missing entries exists
            also = " and recovery.holdout: 0" if settings.holdout > 0 else ""
            raise ValueError(f"{err}{also}") from err
    holdout, visible = None, known
    if settings.holdout > 0:
        holdout = holdout_like(known, fraction=settings.holdout,
                               generator=torch.Generator().manual_seed(config.seed + 1))
        holdout = holdout.expand_as(observed)
        visible = known & ~holdout
    if settings.init == "learned":
        _check_learned_patterns(config, known, visible)
    if not visible.any():
        raise ValueError(f"recovery.holdout hides every observed entry of this mask "
                         f"({hidden_whole_cause(known)}): set recovery.holdout: 0")
    init, unseen, start, holdout_errors = _start_fill(config, observed, known, holdout, prior)
    if holdout is None:
        return (_loop(config, observed, known, init, progress=progress), init,
                {"fill": start, "holdout_errors": holdout_errors})
    # The holdout chooses how far to refine on a loop that never saw the held-out entries, not
    # even through the fill of the missing entries beside them (a chain that pulls a held-out
    # entry towards such a fill scored better there for a false reason); the answer is that
    # choice made again with every observed entry.
    choice = _loop(config, observed, known, unseen, holdout=holdout, progress=progress)
    result = _loop(config, observed, known, init, select=choice.selected_iteration,
                   progress=progress)
    # The history is the choosing loop's: its held-out errors are what chose.
    return (replace(result, history=choice.history), init,
            {"fill": start, "holdout_errors": holdout_errors})


def _check_learned_patterns(config: ExperimentConfig, known: Tensor, visible: Tensor) -> None:
    """Refuse, before the classical fills' minutes, a mask on which the learned fill would
    refuse its training patterns (:func:`~stgconv.learned_fill.check_patterns`) on the
    ``visible`` entries (``known`` less the holdout's), naming every setting to change: on a
    half-frame occluder the holdout's refusal came first, and once recovery.holdout: 0 was set,
    the learned fill's, after its classical fills; and "or set recovery.holdout: 0" was advised
    where the learned fill refused the mask without a holdout too."""
    settings = config.recovery

    def refusal(entries: Tensor) -> ValueError | None:
        try:  # the generator learned_fill gets, in the same state (_start_fill)
            check_patterns(entries, settings.learned,
                           generator=torch.Generator().manual_seed(config.seed + 2))
        except ValueError as err:
            return err
        return None

    without_holdout = refusal(known)
    if not visible.any():
        if without_holdout is not None:
            raise ValueError(f"recovery.holdout and the learned fill (recovery.init: learned) "
                             f"each hide every observed entry of this mask "
                             f"({hidden_whole_cause(known)}): set recovery.holdout: 0 and "
                             "choose a classical recovery.init for it") from without_holdout
        return  # the holdout's own refusal names the one setting
    if without_holdout is not None:
        raise without_holdout
    err = refusal(visible) if settings.holdout > 0 else None
    if err is not None:
        # A mask too thin for the learned fill once the holdout took its share.
        raise ValueError(f"{err}; or set recovery.holdout: 0, which leaves it the observed "
                         "entries the holdout hides") from err


def check_fits_network(config: ExperimentConfig, clip: Tensor) -> None:
    """``ValueError`` naming the smallest size that fits where a clip of ``clip``'s shape
    ``(C, T, H, W)`` (its values are not read) is smaller than the receptive field of the
    config's network: what a recovery checks before its learned fill's minutes."""
    try:
        _energy(config, clip).check_size(clip.shape[1:])
    except ValueError as err:  # "input size (2, 16, 16)" named neither the clip nor its flags
        raise ValueError(f"{err} (the clip's frames, height and width, for model.arch "
                         f"{config.model.arch!r}): recover more frames or at a larger size "
                         "(--frames, --size), or choose another model.arch") from err


def _energy(config: ExperimentConfig, observed: Tensor) -> ConvNetEnergy:
    """The untrained energy for ``observed`` ``(C, T, H, W)``: the same weights at every call
    (drawn after seeding with the config's seed)."""
    with seeded_weights(config.seed):
        return VIDEO.energy(_as_run(config, observed).model).to(observed.device)


def _loop(config: ExperimentConfig, observed: Tensor, known: Tensor, init: Tensor, *,
          holdout: Tensor | None = None, select: int | None = None, progress: bool
          ) -> RecoveryResult:
    """:func:`~stgconv.recovery.recover` as the config describes it, from ``init``, with a
    fresh energy; the completion's step scale from the entries the loop sees."""
    settings = config.recovery
    visible = known if holdout is None else known & ~holdout
    return recover(
        _energy(config, observed), build_sampler(config.sampler), observed, known, init=init,
        train=config.train, n_chains=config.chains.chains_per_example,
        chain_init=NoiseInit(config.chains.init, config.chains.init_scale),
        average_last=settings.average_last, warmup=settings.warmup,
        completion=_completion(config, observed, visible), holdout=holdout, select=select,
        generator=torch.Generator(observed.device).manual_seed(config.seed), progress=progress,
    )


def _load_prior(settings: RecoveryConfig, *, channels: int) -> FillNet | None:
    """The learned fill's prior (``recovery.learned.prior``), checked against the settings
    before any work; ``None`` without one."""
    name = settings.learned.prior
    if name is None:
        return None
    if settings.holdout <= 0:
        raise ValueError("recovery.learned.prior needs recovery.holdout > 0: the prior corrects "
                         "the fill that errs least, and the held-out entries are what rank them")
    net, fills = load_fill_prior(name)
    if set(fills) != set(settings.learned.fills):
        raise ValueError(f"the fill prior {name} reads the fills {sorted(fills)}, "
                         f"recovery.learned.fills are {sorted(settings.learned.fills)}")
    check_prior_fits(net, channels, len(fills), settings.learned.width)
    return net


def _start_fill(config: ExperimentConfig, observed: Tensor, known: Tensor,
                holdout: Tensor | None, prior: FillNet | None
                ) -> tuple[Tensor, Tensor, str, dict[str, float]]:
    """The starting fill ``(C, T, H, W)``, the same fill made without the held-out entries (the
    fill itself without a holdout), its name and, when the holdout chose it, every candidate's
    mean absolute error on the held-out entries (units of the data in [-1, 1]; else empty). The
    fill is the configured classical one, or the learned fill (:mod:`stgconv.learned_fill`,
    trained on the visible entries only) unless the holdout says one of the classical fills it
    reads or ``learned.starts`` does better; with a holdout, the learned fill corrects the
    classical fill that scores best on it, starting from ``prior`` when given."""
    settings = config.recovery
    visible = known if holdout is None else known & ~holdout

    def fills_of(fill: Fill) -> tuple[Tensor, Tensor]:
        """``fill`` made with every observed entry and without the held-out ones."""
        full = fill(observed, known)
        return full, full if holdout is None else fill(observed, visible)

    def holdout_error(fill: Tensor) -> float:
        return (fill[holdout] - observed[holdout]).abs().mean().item()

    if settings.init != "learned":
        return *fills_of(partial(_fill, settings)), settings.init, {}
    names = list(settings.learned.fills)

    def refill(name: str, known_before: Tensor, filled_before: Tensor) -> Fill:
        """Fill ``name`` for a mask that differs from ``known_before`` in a few frames.
        Biharmonic inpainting goes frame by frame, and the holdout and each hidden pattern the
        net trains on change only some of the frames: the others are copied from the fill made
        before (on scattered pixels this fill is the dearest of the three)."""
        if name == "biharmonic":
            return partial(biharmonic_inpainting, reuse=(known_before, filled_before))
        return FILLS[name]

    # Each classical fill the net reads once: the same fills compete with it.
    made = {}
    for name in names:
        full = FILLS[name](observed, known)
        made[name] = (full, full if holdout is None else refill(name, known, full)(observed,
                                                                                 visible))
    if holdout is not None:
        # Which fill is best depends on the mask (spatial for scattered pixels, temporal for
        # whole frames): the net starts from it and learns only what it still gets wrong.
        def error_on_holdout(name: str) -> float:
            return holdout_error(made[name][1])

        names.sort(key=error_on_holdout)

    initial = prior
    if initial is None:
        # The untrained net alone is made in the seeded block, not trained there too: such
        # blocks run one at a time in the process (seeded_weights), and another thread's load
        # or run would wait for the whole training.
        with seeded_weights(config.seed):
            initial = FillNet(observed.shape[0], len(names), settings.learned.width)
    # Its patterns were checked before (_check_learned_patterns), with this generator.
    net, _ = learned_fill(observed, visible,
                          [refill(name, visible, made[name][1]) for name in names],
                          settings=settings.learned,
                          generator=torch.Generator().manual_seed(config.seed + 2),
                          initial=initial)
    how = {"precision": settings.learned.precision, "symmetric": settings.learned.symmetric}
    learned = apply_fill(net, observed, known, [made[name][0] for name in names], **how)
    if holdout is None:
        return learned, learned, "learned", {}
    unseen = apply_fill(net, observed, visible, [made[name][1] for name in names], **how)
    # The further starts are scored by their fill without the held-out entries; the fill with
    # every observed entry (as dear again: motion compensation takes about a minute) is made
    # only for the one that wins.
    without_holdout = {name: made[name][1] if name in made else FILLS[name](observed, visible)
                       for name in dict.fromkeys([*settings.learned.fills,
                                                  *settings.learned.starts])}
    errors = {"learned": holdout_error(unseen),
              **{name: holdout_error(fill) for name, fill in without_holdout.items()}}
    diverged = [name for name, error in errors.items() if not math.isfinite(error)]
    if diverged:  # min() would keep a NaN listed first
        raise FloatingPointError(f"the held-out error of the start fill(s) {diverged} is not "
                                 f"finite: {errors}")
    best = min(errors, key=errors.get)  # the learned fill on ties: it comes first
    if best == "learned":
        return learned, unseen, best, errors
    full = made[best][0] if best in made else FILLS[best](observed, known)
    return full, without_holdout[best], best, errors


def _completion(config: ExperimentConfig, observed: Tensor, visible: Tensor) -> CompletionChain:
    """The completion chain the config describes: the recovery section's sampler (else the
    experiment's), preconditioned by the interpolation spread when ``step_scale`` asks."""
    settings = config.recovery
    sampler = settings.completion if settings.completion is not None else config.sampler
    if settings.step_scale != "interpolation_spread":
        return CompletionChain(build_sampler(sampler))
    step_scale = spread_step_scale(observed, visible, power=settings.step_scale_power)
    # The clamp bounds the completion, not the preconditioned z the sampler runs on.
    return CompletionChain(build_sampler(replace(sampler, clamp=None)), step_scale=step_scale,
                           clamp=sampler.clamp)


def _fill(settings: RecoveryConfig, observed: Tensor, known: Tensor) -> Tensor:
    """The configured starting fill of a clip ``(C, T, H, W)``."""
    if settings.init == "mean":
        return mean_fill(observed[None], known[None])[0]
    return FILLS[settings.init](observed, known)


def _frame_rate(config: ExperimentConfig, video: str | Path) -> float:
    """The rate the recovered clip plays at: the one its frames were picked at, ``data.fps``
    where set, else ``video``'s own (at the file's, a clip read at data.fps 2 from a 60 fps file
    played 30 times too fast), 25 for a frame folder, which states none."""
    if config.data.fps:
        return config.data.fps
    if not Path(video).exists():
        raise FileNotFoundError(f"video {video} not found: the recovered clip plays at its "
                                "frame rate (for a clip of no file, set the config's data.fps)")
    return frame_rate(video) or 25


def _save(out_dir: str | Path, config: ExperimentConfig, report: dict[str, Any],
          result: RecoveryResult, *, video: str | Path, mask: str | Path, fps: float) -> None:
    video_path, array_path, comparison_path, config_path, metrics_path = (
        Path(out_dir) / name for name in RECOVER_FILES)
    truth, known = report["truth"], report["known"]
    occluded = torch.where(known, truth, torch.full_like(truth, -1.0))
    # save_comparison of one clip: save_video would refuse an odd size after all the work.
    save_comparison([result.recovered], video_path, fps=fps)
    # The video files are compressed: programs that score the recovery read this one.
    atomic_save_npy(array_path, result.recovered.float().cpu().numpy())
    save_comparison([occluded, result.recovered, truth], comparison_path,
                    labels=["occluded", "recovered", "ground truth"], fps=fps)
    save_config(config, config_path)
    atomic_write_json(metrics_path, {
        "unit": UNIT,
        "video": str(video),
        "mask": str(mask),
        "missing_fraction": 1.0 - known.float().mean().item(),
        "errors": {"stgconv": report["error"],
                   f"init ({report['start']['fill']})": report["init_error"]},
        "start_holdout_errors": report["start"]["holdout_errors"],
        "seconds": report["seconds"],
        "selected_iteration": result.selected_iteration,
        "history": result.history,
    })
