"""Experiment configuration: typed, frozen dataclasses with defaults in code.

YAML files in ``configs/`` override only what differs from these defaults, and ``--set key=value``
overrides (dotted keys, YAML-parsed values) apply on top. Unknown keys and values of the wrong
type are errors that name the key. The resolved configuration is a plain dict
(:func:`config_to_dict`) so it can live inside a checkpoint that loads without executing code.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import reprlib
import types
import typing
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar

import torch
import yaml

from stgconv.checks import (
    FLOAT32_MAX,
    FLOAT32_TINY,
    check_clamp,
    check_entries,
    check_fps,
    check_seed,
    check_step_size,
    check_up_axis,
)
from stgconv.energy.base import layer_row_problem
from stgconv.energy.classifier import CLASSIFIER_ARCHS
from stgconv.energy.image import IMAGE_PRESETS
from stgconv.energy.video import VIDEO_ARCHS
from stgconv.energy.voxel import VOXEL_PRESETS
from stgconv.io.atomic import atomic_write_text

# The quick CPU recovery config that `recover`, `fill-prior` and `eval recovery` read without
# --config: package data beside this module, so an installed copy (a wheel, no checkout) has it.
QUICK_RECOVERY_CONFIG = Path(__file__).resolve().parent / "configs" / "recovery_quick.yaml"


@dataclass(frozen=True)
class ModelConfig:
    """Which energy network to build (see :mod:`stgconv.energy`)."""

    # Images: "texture" / "object" (Xie et al. 2016 generative ConvNet settings),
    # "descriptor64", "descriptor16", "descriptor4" (Gao et al. 2018, multi-grid learning).
    # Videos (STGConvNet): "st" / "st_small" (stationary), "fc_s" / "fc_s_small" (spatially fully
    # connected). Voxels (3D descriptor net): "desc32", "desc64_sr", "desc32_small", "desc64_small".
    # Classifiers read as energies (JEM; the `jem` section trains them): "digit_classifier" (28x28),
    # "wide_resnet" (WRN-28-10, 32x32).
    arch: Literal[
        "texture", "object", "descriptor64", "descriptor16", "descriptor4",
        "st", "st_small", "fc_s", "fc_s_small",
        "desc32", "desc64_sr", "desc32_small", "desc64_small",
        "digit_classifier", "wide_resnet",
    ] = "texture"
    # The data's channels and the examples' side (a multigrid grid's size), filled in when the
    # net is built (null: not set); a value set must be the data's (see fill_model).
    in_channels: int | None = None
    # Read by architectures with a fully connected head; stationary ones take any size.
    image_size: int | None = None
    # Replaces the preset's conv stack: rows of [out_channels, kernel, stride] or
    # [out_channels, kernel, stride, padding]; kernel, stride and padding may be per-dimension
    # lists ([t, h, w] for videos).
    layers: tuple[tuple[int | tuple[int, ...], ...], ...] | None = None
    # Replaces the preset's nonlinearity after each convolution (null: the preset's).
    activation: Literal["relu", "leaky_relu"] | None = None
    # sigma of the Gaussian reference term |x|^2 / (2 sigma^2); null drops it (short-run models).
    # Small, as in the original descriptor code (0.016 on [-1, 1] pixels): every Gaussian piece
    # of the model has covariance sigma^2 I, so sigma sets the grain left in the samples.
    reference_sigma: float | None = 0.05
    # Classifier architectures only: the number of classes (logits), and whether the density
    # p(x) ∝ exp(s logsumexp f(x)) learns its own scale s (stgconv.energy.classifier).
    n_classes: int = 10
    density_scale: bool = False


@dataclass(frozen=True)
class SamplerConfig:
    """MCMC settings; ``kind`` picks the algorithm. MALA and HMC read ``n_steps``,
    ``step_size`` (and HMC ``n_leapfrog``, which must stay at its default for the others); the
    Langevin-only temperature, annealing, clipping, precision and CUDA graph must stay at their
    defaults for them, and they never clamp their chains: ``clamp`` is refused for them where
    nothing else reads it (see ``_check_exact_sampler_clamps``)."""

    kind: Literal["langevin", "mala", "hmc"] = "langevin"
    n_steps: int = 20
    # Chain length when the trained model is put to use (synthesize, super-resolve, the voxel
    # evaluations) and no --steps is given; null: n_steps. A model trained with short chains can
    # gain from longer ones at use (measured for recovery of chairs: bench/README.md).
    task_steps: int | None = None
    step_size: float = 0.015
    # Langevin only (stgconv.mcmc.Langevin): the noise's multiplier (1: exact Langevin; below 1
    # the short-run, JEM-style sampler; 0: gradient descent on E), its schedule over a chain's
    # steps, and a bound on each chain's gradient norm (null: none).
    noise_scale: float = 1.0
    noise_anneal: Literal["none", "linear", "cosine"] = "none"
    grad_clip: float | None = None
    # The pixel range: early in training the learned f can have huge gradients, and unclamped
    # chains then run off and wreck the next update. In data units: for voxels, occupancy
    # ([0, 1]); the voxel tasks shift it by data.mean into the model's units.
    clamp: tuple[float, float] | None = (-1.0, 1.0)
    n_leapfrog: int = 5
    # HMC only: each chain's step size drawn every iteration uniform in step_size * [1 - j,
    # 1 + j], j in [0, 1): a fixed trajectory length that matches a direction's period comes
    # back where it started and never mixes there (stgconv.mcmc.HMC). 0: the fixed step.
    step_jitter: float = 0.0
    # Langevin only: "auto" runs the energy network in bfloat16 where a CUDA device computes in
    # it natively and the test in stgconv.mcmc.execution finds it faithful, else (on a CPU
    # always) in fp32; "fp32" and "bf16" force one (bench/README.md: what each gave, net by net).
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Langevin only: on CUDA, replay the steps as one captured CUDA graph (stgconv.mcmc.graphs).
    cuda_graph: bool = True


@dataclass(frozen=True)
class ChainConfig:
    """Where each training iteration's chains start (see :mod:`stgconv.mcmc.starts`). A
    setting of another mode than ``mode`` (``buffer_capacity`` of "buffer", ``factor`` of
    "super_resolution" ...) must stay at its default, as must ``init_rank`` and ``init_noise``
    without ``init: data_gaussian``."""

    # "super_resolution": each chain starts at the up-sampling (`upsample`) of its example's
    # block_down(x, factor) and keeps block_down(x) equal to it (3D descriptor net
    # super-resolution training).
    # "recovery": each iteration hides a random `missing` fraction of every example's entries;
    # chains start from the nearest-known fill and keep the observed entries (the authors'
    # recovery training, but with the observed entries clamped at every step, where rec_exp.py
    # resets them after the chain: stgconv.mcmc.starts.RecoveryStart).
    mode: Literal[
        "noise", "data", "persistent", "buffer", "super_resolution", "recovery",
    ] = "persistent"
    # Chains per training example: each iteration samples batch_size * chains_per_example.
    chains_per_example: int = 8
    # "data_gaussian": Gaussians fitted to the training data, one per class for a JEM run
    # (stgconv.mcmc.init.DataGaussian; stored in the checkpoint for synthesis); modes "noise",
    # "persistent" and "buffer" only.
    init: Literal["gaussian", "uniform", "data_gaussian"] = "gaussian"
    # Gaussian std, or half-width of the uniform range; 0 starts every chain at zero.
    init_scale: float = 0.0
    # data_gaussian: principal directions kept per component (the rest is isotropic), and the
    # share of fresh chains (of no given class) started from uniform noise U(-init_scale,
    # init_scale) instead, so some chains explore far from the data.
    init_rank: int = 64
    init_noise: float = 0.0
    # "data": the std of the Gaussian noise added to the examples the chains start from.
    data_noise: float = 0.0
    # "buffer": the replay buffer keeps this many finished chains (the oldest replaced first),
    # and this share of each iteration's chains starts afresh from chains.init instead.
    buffer_capacity: int = 10000
    buffer_fresh: float = 0.05
    # super_resolution: block size in every spatial dim (4: 16^3 -> 64^3).
    factor: int = 4
    # super_resolution: the chains' start, in training and in the super-resolution tasks:
    # "linear" (trilinear for voxels, made consistent with the low resolution) or "nearest".
    # Measured on held-out beds (bench/README.md, voxel_eval.py), linear starts the chain
    # closer to the shape than block-constant nearest.
    upsample: Literal["linear", "nearest"] = "linear"
    # recovery: fraction of entries hidden in each training example.
    missing: float = 0.7


@dataclass(frozen=True)
class DataConfig:
    """Training data.

    ``texture``: one image file or ``builtin:<name>``; ``objects``: a folder of images;
    ``video``: a video file, a folder of frames, a folder of videos (one clip each) or an HDF5
    clip cache (``datasets/video/prepare.py``); ``video_frames``: the same sources as ``video``,
    every frame of every clip taken as one image (object images from real footage); ``voxels``:
    an ``.npz`` (``X``, ``y``), an HDF5 shape cache (``datasets/voxel/prepare.py``), a voxel file,
    or a folder of voxel files or meshes.
    """

    path: str = "builtin:brick"
    kind: Literal["texture", "objects", "video", "video_frames", "voxels"] = "texture"
    # Image side, frame side for videos (frames are resized to size x size), or voxel grid side
    # (smaller grids are zero-padded to it, e.g. ModelNet's 30^3 to 32^3).
    size: int = 64
    # Images and videos: read as grey (1) or RGB (3), whatever the files hold.
    channels: Literal[1, 3] = 1
    # Keep only N images, clips or shapes (null: all): a folder's first N, an .npz of images'
    # fixed random N (such files are ordered by class or writer). Not for data.kind texture.
    max_images: int | None = None
    # Videos (and video_frames) only: clip length, first frame, and frame rate to resample to
    # (null: as stored).
    frames: int = 16
    start_frame: int = 0
    fps: float | None = None
    # Voxels only: keep these categories (names, e.g. [chair]) and this split.
    categories: tuple[str, ...] | None = None
    split: Literal["train", "test", "all"] = "all"
    # Voxels only, for a folder of meshes: their up axis (0 = x, 1 = y, 2 = z), turned to the
    # grids' last axis as they are voxelized. ModelNet is z-up (2); ShapeNet and most .obj files
    # are y-up (1), and read as z-up they lie on their side. Voxel files are read as stored (up =
    # the last axis): a value other than 2 for them is refused when they are read, but for a
    # shape cache (datasets/voxel/prepare.py) the up axis it was voxelized with, which a run
    # trained on it records here, so meshes given to the model later are turned as its were.
    up_axis: Literal[0, 1, 2] = 2
    # Voxels only: the model sees occupancy minus this value, as in the authors' code, which
    # subtracts the training shapes' mean occupancy (so the Gaussian reference and the chains'
    # zero start sit at the mean shape density, not at "empty"). "auto" computes it from the
    # training shapes and the resolved config stores the number; null subtracts nothing.
    mean: float | Literal["auto"] | None = None


@dataclass(frozen=True)
class TrainConfig:
    """How the parameters learn (Adam); stgconv.train.Trainer reads it."""

    n_iterations: int = 150
    batch_size: int = 16
    lr: float = 0.01
    betas: tuple[float, float] = (0.5, 0.999)
    # The weight of mean(E^2) over data and samples in the loss: keeps energies near zero
    # where they would otherwise drift (JEM's advice when a run diverges).
    energy_l2: float = 0.0
    # Micro-batches of batch_size whose gradients are averaged before each Adam step: a larger
    # batch in the memory of one.
    accumulate: int = 1
    # 0: none on the way (the checkpoint and the samples at the end are written all the same;
    # TensorBoard gets no samples).
    checkpoint_every: int = 50
    sample_every: int = 25
    # "cosine": Adam's rate follows lr * (1 + cos(pi * iteration / n_iterations)) / 2, so the
    # last iterations refine at small rates (single-grid descriptor training; a JEM run sets
    # jem.lr_decay). Recovery of held-out chairs: IoU 0.799 / 0.794 -> 0.808 / 0.802 (seeds 0
    # / 1, bench/README.md "voxel_eval.py").
    lr_decay: Literal["none", "cosine"] = "none"
    # Every sample_every iterations and at the end, also into TensorBoard (RUN/tb): the
    # samples (image grids, a clip's frames, a voxel sample's surface as a mesh) and every
    # layer's weight and gradient norms; README "Outputs" states the cost (12-836 ms a time,
    # measured).
    log_media: bool = True

    def __post_init__(self) -> None:
        # Checked here, not only by ExperimentConfig: the trainers take a TrainConfig built in
        # Python, where accumulate=0 made steps that learnt nothing, lr=inf made the weights
        # NaN, and lr=-1 or batch_size=0 failed in torch's words or the first step's.
        _check_number_types("train", self)
        for name in ("n_iterations", "batch_size", "accumulate", "lr"):
            _check_positive(f"train.{name}", getattr(self, name))
        for name in ("checkpoint_every", "sample_every", "energy_l2"):
            _check_not_negative(f"train.{name}", getattr(self, name))
        _check_betas("train.betas", self.betas)
        _check_finite_floats("train", self)


# The names of stgconv.baselines.video.FILLS (a test keeps them equal); spelled out here so that
# reading a config does not load scikit-image.
VIDEO_FILLS = ("temporal_interpolation", "biharmonic", "neighbour_average", "motion_compensated")


LEARNED_FILL_LOSSES = ("squared", "squared_then_absolute")
LEARNED_FILL_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class LearnedFillConfig:
    """The learned fill (:func:`stgconv.learned_fill.learned_fill`): a small ConvNet trained on
    the incomplete clip's own observed entries, hidden in the shape of its missing ones, to
    correct the first of ``fills``."""

    # Classical fills the net reads (names of stgconv.baselines.video.FILLS); it corrects the
    # first, or with a recovery.holdout the one that scores best on the held-out entries. Each is
    # recomputed for every hidden pattern (biharmonic only in the frames the pattern changes), so
    # slow ones (motion_compensated: a minute or more per 70x150x150 clip) cost that many times
    # over.
    fills: tuple[str, ...] = ("temporal_interpolation", "neighbour_average", "biharmonic")
    # Further classical fills that only compete, on the held-out entries, to start the chain
    # (the learned fill and `fills` always do); each is computed once without the held-out
    # entries, and again with them only if it wins; never once per pattern.
    starts: tuple[str, ...] = ("motion_compensated",)
    # Adam steps of the net on the clip (after a prior's, if any), and its hidden layers'
    # channels (stgconv.learned_fill.FillNet).
    iterations: int = 800
    width: int = 48
    # Crops of 2 frames: the net works per frame (time enters through its inputs).
    crop_frames: int = 2
    # Side of each crop, and crops per step; Adam's learning rate.
    crop_size: int = 64
    batch: int = 8
    lr: float = 0.001
    # Hidden patterns drawn (each with its fills recomputed without the hidden entries: the
    # cost, and the memory of (F + 3) x C float copies of the clip each, F = len(fills));
    # every batch takes crops from all of them.
    patterns: int = 12
    # Share of the frames that get hidden entries in each pattern (holdout_like's fraction; what
    # a mask hides in every frame is moved within the frame and hidden in every frame).
    hide_fraction: float = 0.3
    # "squared" error at the hidden entries, or "squared_then_absolute": squared for the first
    # half of the iterations, absolute error (what recovery is scored by) for the second.
    loss: str = "squared_then_absolute"
    # A net trained beforehand on complete clips to start from, then trained `iterations` more
    # on this clip: a file written by `stgconv fill-prior` (it must read the same set of
    # `fills`, with the same width), or null to start from an untrained net.
    prior: str | None = None
    # "bf16": the net computes under bfloat16 autocast (its correction is added to the fill in
    # float32). On a CPU with native bfloat16 (AVX512-BF16) it trained twice as fast, and a
    # 70x150x150 recovery took 22% less time at the same error (bench/README.md, "bfloat16 for
    # the learned fill"); where bfloat16 is emulated it is many times slower (a warning says
    # so). "fp32", the default, gives the same result on every machine.
    precision: str = "fp32"
    # Train on crops seen as they are or turned half a turn and played backwards, at random
    # (the same motion: (x, y, t) -> (-x, -y, -t) keeps every velocity), and average the two
    # views' fills: twice the examples of the clip's motion for the same steps; the fill costs
    # two passes of the net instead of one (about 2-4 CPU s a clip). Measured on the shared clips,
    # three seeds: better in 12 of the 18 frame and block cases, about 1% on the mean ratio to
    # the best classical fill, but worse in 5 of 8 runs on two animal clips (bench/README.md,
    # "The clip turned and played backwards").
    symmetric: bool = True


def check_learned_fill(settings: LearnedFillConfig) -> None:
    """``ValueError`` naming the ``recovery.learned`` key that is out of range."""
    # Built in Python (learned_fill and fill_prior take the section), an iterations or batch
    # of 1.5 failed in range() or torch.randint, naming no key; fills="biharmonic" was read
    # letter by letter.
    _check_number_types("recovery.learned", settings)
    if not settings.fills:
        raise ValueError("recovery.learned.fills must name at least one classical fill")
    for key in ("fills", "starts"):
        if isinstance(getattr(settings, key), str):
            raise ValueError(f"recovery.learned.{key} must be a list of fill names, got "
                             f"{getattr(settings, key)!r}")
        unknown = [name for name in getattr(settings, key) if name not in VIDEO_FILLS]
        if unknown:
            raise ValueError(f"recovery.learned.{key}: unknown fill(s) {unknown}; choose from "
                             f"{list(VIDEO_FILLS)}")
        # The net read a fill named twice twice, where a prior made under these settings reads
        # it once: a recovery from that prior was refused, after the clip's fills were made.
        twice = [name for i, name in enumerate(getattr(settings, key))
                 if name in getattr(settings, key)[:i]]
        if twice:
            raise ValueError(f"recovery.learned.{key} names {twice[0]} twice: name each fill "
                             "once")
    for name in ("iterations", "width", "crop_frames", "crop_size", "batch", "patterns"):
        _check_positive(f"recovery.learned.{name}", getattr(settings, name))
    _check_positive("recovery.learned.lr", settings.lr)
    if not 0 < settings.hide_fraction <= 1:
        raise ValueError(f"recovery.learned.hide_fraction must be in (0, 1], "
                         f"got {settings.hide_fraction}")
    if settings.loss not in LEARNED_FILL_LOSSES:
        raise ValueError(f"recovery.learned.loss must be one of {list(LEARNED_FILL_LOSSES)}, "
                         f"got {settings.loss!r}")
    if settings.precision not in LEARNED_FILL_PRECISIONS:
        raise ValueError(f"recovery.learned.precision must be one of "
                         f"{list(LEARNED_FILL_PRECISIONS)}, got {settings.precision!r}")
    _check_finite_floats("recovery.learned", settings)
    if settings.prior == "":  # else "fill prior not found: " once the clip had loaded
        raise ValueError("recovery.learned.prior must name a file written by stgconv "
                         "fill-prior, or be null (no prior), got ''")


@dataclass(frozen=True)
class RecoveryConfig:
    """Learning from incomplete data (:func:`stgconv.recovery.recover`)."""

    # The completion chain starts from this fill: a classical baseline or the observed mean.
    # "learned": the learned fill (section `learned`), or, when the holdout says one of the
    # classical fills it reads or `learned.starts` does better on held-out entries, that fill.
    # "biharmonic" (per frame) is the strongest classical fill of scattered missing pixels.
    init: Literal["temporal_interpolation", "motion_compensated", "neighbour_average",
                  "biharmonic", "mean", "learned"] = "temporal_interpolation"
    learned: LearnedFillConfig = field(default_factory=LearnedFillConfig)
    # Completions of the last iterations averaged into the result (posterior-mean estimate).
    average_last: int = 10
    # Iterations that learn the model on the fixed starting fill before the completion moves.
    warmup: int = 0
    # A gentler sampler for the completion chain (e.g. no noise, few small clipped steps);
    # null: the synthesis sampler.
    completion: SamplerConfig | None = None
    # Per-entry scale of the completion's moves: "interpolation_spread" moves an entry in
    # proportion to (|next observed - previous observed|)^step_scale_power, so entries the
    # temporal fill is sure of (static pixels) stay put.
    step_scale: Literal["none", "interpolation_spread"] = "none"
    step_scale_power: float = 2.0
    # Share of frames whose observed entries (shaped like the mask) are hidden from the loop and
    # used to choose the returned estimate, the untouched start included; 0 turns it off. What
    # a mask hides in every frame is moved within the frame and held out in every frame.
    holdout: float = 0.0


@dataclass(frozen=True)
class GridConfig:
    """One modelled grid of a multi-grid experiment: its size, its energy net, its chains."""

    # Image side, frame side for videos, or voxel grid side.
    size: int = 4
    # Videos only: clip length on this grid; null keeps every frame (spatial grids only).
    frames: int | None = None
    # The grid's net; channels and size are filled in from the data and `size`.
    model: ModelConfig = field(default_factory=ModelConfig)
    # This grid's chains: keys given here override the experiment's `sampler` section (see
    # load_config); null uses that section as is.
    sampler: SamplerConfig | None = None


@dataclass(frozen=True)
class MultiGridConfig:
    """Multi-grid modelling (Gao et al. 2018): one energy per grid of a block-average pyramid.

    The base grid is not modelled: its values are the training examples' own block means there
    (for images on 1x1, their mean colours), and synthesis starts from one of them (or, with
    ``base_rank``, from a draw of a Gaussian fitted to them). Each grid in
    ``grids`` (coarse to fine, the last one at the data's size) is trained with short chains
    started from the nearest up-sampling of its example's coarser grid, and sampled from the
    up-sampled result of the grid below. Every size must divide the next one.
    """

    base_size: int = 1
    # Videos only: base clip length; null keeps every frame.
    base_frames: int | None = None
    # Where synthesis takes its base grids from. null: a random training example's own (for
    # images on 1x1 a real mean colour; on a larger base grid that copies the example's layout
    # there). An int: draws of a Gaussian fitted to the training examples' base grids with that
    # many principal directions (stgconv.mcmc.DataGaussian), clamped to the sampler's range, so
    # that samples get layouts no training example had.
    base_rank: int | None = None
    grids: tuple[GridConfig, ...] = ()
    # true: each grid refines the one below, in training and sampling: its chains keep the block
    # means of the coarser grid (as super-resolution does), so the models learn detail given the
    # layout and the coarse grids' variety reaches the finest samples. false: the paper's free
    # chains, which may redraw the layout.
    consistent: bool = False


@dataclass(frozen=True)
class CooperativeConfig:
    """Cooperative learning (Xie et al., CoopNets): a generator ``z -> x`` proposes each
    iteration's chain starts, the experiment's sampler revises them on the descriptor's energy
    (``sampler.n_steps`` is the revision length), the descriptor learns from the revised samples
    and the generator learns to reproduce them (:mod:`stgconv.cooperative`). The ``chains``
    section then only gives ``chains_per_example``, the proposals per training example."""

    latent_dim: int = 64
    # Channels of the generator's last stage; each earlier stage doubles them (up to 8x).
    width: int = 32
    lr: float = 0.001
    betas: tuple[float, float] = (0.5, 0.999)
    # Langevin steps on z, toward the posterior of the revised sample, before the generator
    # learns (the original CoopNets); 0 regresses on the z that made the proposal, which is
    # known (MCMC teaching, Xie et al. AAAI 2018).
    inference_steps: int = 0
    inference_step_size: float = 0.1
    # The generator's observation noise in that posterior: p(x | z) = N(G(z), sigma^2 I).
    inference_sigma: float = 0.3

    def __post_init__(self) -> None:
        # Here, not only by ExperimentConfig: CooperativeTrainer takes one built in Python.
        _check_number_types("cooperative", self)
        for key in ("latent_dim", "width", "lr", "inference_step_size", "inference_sigma"):
            _check_positive(f"cooperative.{key}", getattr(self, key))
        # The latent inference is a Langevin chain, which refuses a step past the same bound.
        check_step_size(self.inference_step_size, prefix="cooperative.inference_")
        _check_not_negative("cooperative.inference_steps", self.inference_steps)
        _check_betas("cooperative.betas", self.betas)
        _check_finite_floats("cooperative", self)
        if self.inference_steps == 0:
            _refuse_unread("cooperative", self, ("inference_step_size", "inference_sigma"),
                           "applies to the latent inference only, which cooperative."
                           "inference_steps 0 turns off")


@dataclass(frozen=True)
class InitializerConfig:
    """A learned initializer for the conditional tasks on voxel shapes
    (:mod:`stgconv.initializer`): a feed-forward net proposes each chain's start, from the block
    means (``chains.mode: super_resolution``) or from the observed voxels (``chains.mode:
    recovery``), in training and in the tasks, and learns from the training shapes by binary
    cross-entropy while the descriptor learns to revise its proposals. Needs ``data.kind:
    voxels``."""

    # Super-resolution: block sizes it learns, one net each (null: [chains.factor]); the
    # evaluations also run 32^3 -> 64^3 (factor 2) with a 16^3 -> 64^3 model.
    factors: tuple[int, ...] | None = None
    # Recovery: the filler works on a grid this many times coarser, each cell carrying its
    # fold^3 voxels as channels (the grid side must be a multiple).
    fold: int = 2
    # The net's channels and its number of 3^k convolutions (at least 2; residual in the middle).
    width: int = 64
    depth: int = 6
    # Initializer updates after each descriptor update, each on `batch_size` random shapes.
    steps: int = 15
    batch_size: int = 8
    lr: float = 0.001
    # Train on random block-aligned cubes of this many coarse cells a side (null: whole shapes),
    # so the net of every block size costs the same per step.
    crop: int | None = 16
    # Flip each batch along the last axis at random. Voxel grids keep their up axis last, so
    # this is the shape upside down; turns and mirrors about the up axis instead (the 8
    # symmetries of the square) did no better on held-out beds and chairs (bench/README.md,
    # voxel_eval.py, 2026-12-02).
    mirror: bool = True

    def __post_init__(self) -> None:
        # Here, not only by ExperimentConfig: InitializerTrainer takes one built in Python. The
        # factors and fold, which read the data and the chains, are checked with them.
        _check_number_types("initializer", self)
        for key in ("width", "steps", "batch_size", "lr", "fold"):
            _check_positive(f"initializer.{key}", getattr(self, key))
        if not self.depth >= 2:
            raise ValueError(f"initializer.depth must be >= 2, got {self.depth!r}")
        if self.crop is not None:
            _check_positive("initializer.crop", self.crop)
        _check_finite_floats("initializer", self)


@dataclass(frozen=True)
class JEMConfig:
    """Hybrid training of a classifier read as an energy (JEM, Grathwohl et al. 2020;
    :class:`stgconv.jem.HybridTrainer`): each step minimises

    ``cross_entropy(f(x), y) + px_weight * [mean E(x) - mean E(x~)]
    + pxy_weight * [mean E(x, y) - mean E(x~_y, y)]``

    with ``x~`` drawn by the experiment's sampler from the marginal energy, started from the
    ``chains`` section's starts (the replay buffer: ``1 - chains.buffer_fresh`` stored chains,
    the rest fresh starts from ``chains.init``), and
    ``x~_y`` from the batch's class energies, each from a fresh start of its class (the
    fitted Gaussian's component, the chains' noise, or the example itself for chains from the
    data; never from the marginal's stored chains); ``train.energy_l2`` penalises the squared
    energies of both contrastive terms. The data are an ``.npz`` holding labels beside the
    images."""

    # The .npz array holding the labels of data.path's x_train, integers 0 .. n_classes - 1.
    labels: str = "y_train"
    px_weight: float = 1.0
    pxy_weight: float = 0.0
    # Examples of each batch that enter the contrastive terms (and chains run for them); null:
    # the whole batch. The sampling dominates a step's cost, so a smaller share buys more
    # classifier steps in the same time.
    px_batch: int | None = None
    # "cosine": Adam's rate follows lr * (1 + cos(pi * iteration / train.n_iterations)) / 2,
    # the usual classifier schedule: the last epochs at small rates buy the accuracy that a
    # constant rate leaves on the table within a fixed CPU budget.
    lr_decay: Literal["none", "cosine"] = "none"
    # Data augmentation: every example of a batch moved by a random whole-pixel shift of up to
    # this many pixels along each axis (edges repeated; stgconv.ops.random_shift), as JEM's
    # own training does, so the classifier does not learn where on the grid a stroke sits.
    shift: int = 0
    # A step whose mean sample energy sits further than this from the data's has diverged: the
    # model has made its samples (or the data) extremely likely, the known failure of JEM's
    # p(x) term, after which the classifier is ruined too.
    max_energy_gap: float = 1000.0
    # The second expert of the out-of-distribution score (stgconv eval ood): Gaussians fitted
    # to the training digits, up to reference_components per class (one per k-means cluster)
    # with reference_rank principal directions each, kept in the checkpoint as "reference". A class
    # written in several ways gets a Gaussian per way, a sharper density than the chains'
    # blurred one-per-class start. 0: that start (chains.init data_gaussian) serves instead.
    reference_components: int = 0
    reference_rank: int = 64
    # A third expert of that score: one Gaussian per class over the trained classifier's
    # penultimate features (what its last layer reads; Lee et al. 2018 detect outliers by such
    # Gaussians alone) with feature_rank principal directions, fitted when training ends to up
    # to 500 training examples of each class and kept in the final checkpoint as
    # "feature_reference". It sees what the network has learnt to tell apart, where the pixel
    # Gaussians see only strokes. 0: none.
    feature_rank: int = 0

    def __post_init__(self) -> None:
        # Here, not only by ExperimentConfig: HybridTrainer takes one built in Python, where a
        # negative weight failed in the first step as "a contrastive term of weight -1.0 needs
        # 1 to 6 samples, got None", and a shift of -1 as random_shift's "max_shift must be
        # an int >= 0". jem.shift's upper bound reads data.size and jem.px_batch's
        # train.batch_size: checked where those are known (_check_jem; HybridTrainer by
        # check_px_batch).
        _check_number_types("jem", self)
        for key in ("px_weight", "pxy_weight", "shift", "reference_components",
                    "reference_rank", "feature_rank"):
            _check_not_negative(f"jem.{key}", getattr(self, key))
        _check_positive("jem.max_energy_gap", self.max_energy_gap)
        _check_finite_floats("jem", self)
        if self.reference_components == 0:
            _refuse_unread("jem", self, ("reference_rank",),
                           "applies to the fitted reference Gaussians only, which jem."
                           "reference_components 0 turns off")


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment. The defaults are the quick-start run: the generative ConvNet's
    texture setting learning scikit-image's real brick photograph at 64x64 on a CPU in minutes."""

    # A label, saved with the run's settings; the run's folder is out_dir, which the name does
    # not change.
    name: str = "experiment"
    # The random draws of the run (initial weights, chains, generated masks) follow it.
    seed: int = 0
    # "auto" (CUDA where there is one, else the CPU), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    out_dir: str = "runs/experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    chains: ChainConfig = field(default_factory=ChainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    # Set: train one model per grid instead of one model (the `model` and `chains` sections are
    # then unused, and refused unless left at their defaults; `sampler` is every grid's
    # default).
    multigrid: MultiGridConfig | None = None
    # Set: train the descriptor cooperatively with a generator that proposes its chain starts.
    cooperative: CooperativeConfig | None = None
    # Set: train a classifier architecture as JEM (cross-entropy + the contrastive terms).
    jem: JEMConfig | None = None
    # Set: super-resolution or recovery chains (voxels) start at a learned initializer's
    # proposals.
    initializer: InitializerConfig | None = None

    def __post_init__(self) -> None:
        _check_section_types("", self)
        check_seed(self.seed)
        # Before the checks of the chains, whose advice fits one kind of run: a JEM config
        # given a cooperative section was told about chains.init for cooperative runs first.
        if self.jem is not None and (self.multigrid is not None or self.cooperative is not None):
            raise ValueError("jem trains one classifier: remove the multigrid / cooperative "
                             "section")
        check_sampler("sampler", self.sampler)
        if self.multigrid is None:  # else unused, and refused unless left at its defaults
            _check_model("model", self.model, self.data)
        if self.recovery.completion is not None:
            check_sampler("recovery.completion", self.recovery.completion)
        _check_positive("chains.chains_per_example", self.chains.chains_per_example)
        _check_positive("data.size", self.data.size)
        _check_positive("data.frames", self.data.frames)
        # Checked here, not only where the clip is read: --print-config showed a negative
        # data.start_frame or a data.fps of 0 as valid, and the reader named "fps", a key no
        # config has.
        _check_not_negative("data.start_frame", self.data.start_frame)
        if self.data.fps is not None:
            check_fps(self.data.fps, "data.fps")
        if self.data.max_images is not None:
            _check_positive("data.max_images", self.data.max_images)
        # The file's reader checks the Literal; a config built in Python is checked here, before
        # the first mesh's voxelization would refuse the value without naming the key.
        check_up_axis(self.data.up_axis, "data.up_axis")
        _check_positive("recovery.average_last", self.recovery.average_last)
        if not 0.0 <= self.recovery.holdout < 1.0:
            raise ValueError(f"recovery.holdout must be in [0, 1) (a share of the frames; 0: "
                             f"none), got {self.recovery.holdout!r}")
        if not (math.isfinite(self.recovery.step_scale_power)
                and self.recovery.step_scale_power >= 0):
            raise ValueError(f"recovery.step_scale_power must be a finite number >= 0, got "
                             f"{self.recovery.step_scale_power!r}")
        check_learned_fill(self.recovery.learned)
        # Only the learned fill reads a prior: beside a classical init it was dropped without a
        # word, and the recovery ran as if no prior had been made.
        if self.recovery.learned.prior is not None and self.recovery.init != "learned":
            raise ValueError(f"recovery.learned.prior is read only by the learned fill, and "
                             f"recovery.init is {self.recovery.init!r}: set recovery.init: "
                             f"learned, or leave the prior out")
        _check_positive("chains.buffer_capacity", self.chains.buffer_capacity)
        example = example_shape(self.data)
        check_entries(example, f"data.size={self.data.size}"
                      + (f", data.frames={self.data.frames}" if self.data.kind == "video" else ""))
        if self.chains.mode == "buffer":
            check_entries((self.chains.buffer_capacity, *example),
                          f"chains.buffer_capacity={self.chains.buffer_capacity}")
        for key in ("init_scale", "data_noise"):
            if getattr(self.chains, key) < 0:
                raise ValueError(f"chains.{key} must be >= 0, got {getattr(self.chains, key)}")
        if self.chains.init_rank < 0:
            raise ValueError(f"chains.init_rank must be >= 0, got {self.chains.init_rank}")
        if not 0.0 <= self.chains.init_noise <= 1.0:
            raise ValueError(f"chains.init_noise must be in [0, 1], got {self.chains.init_noise}")
        if self.chains.init == "data_gaussian" and (
                self.chains.mode not in ("noise", "persistent", "buffer")
                or self.multigrid is not None or self.cooperative is not None):
            raise ValueError("chains.init 'data_gaussian' starts the chains of chains.mode "
                             "'noise', 'persistent' or 'buffer' of a single-grid descriptor or "
                             f"JEM run; this config has chains.mode {self.chains.mode!r}"
                             + (" and a multigrid section" if self.multigrid is not None else "")
                             + (" and a cooperative section" if self.cooperative is not None
                                else ""))
        # 1 keeps every training chain at its example (block_down(x, 1) is x): nothing learnt.
        if not self.chains.factor >= 2:
            raise ValueError(f"chains.factor must be >= 2, got {self.chains.factor!r}")
        if self.chains.mode == "super_resolution" and any(
                side % self.chains.factor for side in example[1:]):
            # Else refused once training had started, as "trailing shape (4, 12, 12) is not
            # divisible by block factor (3, 3, 3)", naming no setting.
            sides = (f"data.frames {self.data.frames}, data.size {self.data.size}"
                     if self.data.kind == "video" else f"data.size {self.data.size}")
            raise ValueError(f"chains.factor {self.chains.factor} must divide every side of the "
                             f"training examples ({sides}): chains.mode 'super_resolution' "
                             "starts each chain from its example's blocks of that side")
        if not 0.0 < self.chains.missing < 1.0:
            raise ValueError(f"chains.missing must be in (0, 1), got {self.chains.missing}")
        if isinstance(self.data.mean, float) and not 0.0 <= self.data.mean <= 1.0:
            raise ValueError(f"data.mean must be in [0, 1] (an occupancy), 'auto' or null, "
                             f"got {self.data.mean}")
        if not 0.0 <= self.chains.buffer_fresh <= 1.0:
            raise ValueError(f"chains.buffer_fresh must be in [0, 1], "
                             f"got {self.chains.buffer_fresh}")
        if self.train.lr_decay != "none" and (self.multigrid is not None
                                              or self.jem is not None):
            raise ValueError("train.lr_decay schedules single-grid descriptor training: "
                             + ("a JEM run sets jem.lr_decay" if self.jem is not None
                                else "remove it with a multigrid section"))
        if self.multigrid is not None:
            _check_multigrid(self.multigrid, self.data)
        if self.cooperative is not None:
            _check_cooperative(self.cooperative, multigrid=self.multigrid is not None)
        _check_jem(self)
        if self.initializer is not None:
            _check_initializer(self)
        _check_unread_settings(self)


@cache
def _type_hints(section_class: type) -> dict[str, Any]:
    """The evaluated annotations of a section's dataclass: evaluated once per class, not at every
    config made (most of the time a ``dataclasses.replace`` of a config took)."""
    return typing.get_type_hints(section_class)


def _check_section_types(key: str, section: Any) -> None:
    """``ValueError`` naming the section of ``section`` (at ``key``, "" for the experiment)
    that is not of its dataclass, or the text setting that is no str, as the file's reader
    refuses them (:func:`_coerce`). Built in Python, ``train={"lr": 0.01}`` failed on a missing
    attribute, and ``out_dir=Path(...)`` trained, then failed to write config.yaml in PyYAML's
    words ("cannot represent an object")."""
    hints = _type_hints(type(section))
    for f in dataclasses.fields(section):
        name, value, tp = f"{key}{f.name}", getattr(section, f.name), hints[f.name]
        options = (typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType)
                   else (tp,))
        if value is None and type(None) in options:
            continue
        sections = [option for option in options if dataclasses.is_dataclass(option)]
        listed = [typing.get_args(option)[0] for option in options
                  if typing.get_origin(option) is tuple
                  and dataclasses.is_dataclass(typing.get_args(option)[0])]
        if sections:
            if not isinstance(value, sections[0]):
                raise ValueError(f"{name} must be a {sections[0].__name__}, got "
                                 f"{type(value).__name__} {value!r}")
            _check_section_types(f"{name}.", value)
        elif listed:
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"{name} must be a list of {listed[0].__name__}, got {value!r}")
            for i, entry in enumerate(value):
                if not isinstance(entry, listed[0]):
                    raise ValueError(f"{name}[{i}] must be a {listed[0].__name__}, got "
                                     f"{type(entry).__name__} {entry!r}")
                _check_section_types(f"{name}[{i}].", entry)
        elif str in options and not isinstance(value, str):
            hint = ": give str(path)" if isinstance(value, os.PathLike) else ""
            raise ValueError(f"{name} must be a str, got {value!r}{hint}")


def _check_unread_settings(config: ExperimentConfig) -> None:
    """Refuse a setting that this kind of run never reads (see :func:`_refuse_unread`)."""
    data, chains, model = config.data, config.chains, config.model
    _check_shared_sampler_is_read(config)
    _check_exact_sampler_clamps(config)
    if config.recovery.step_scale != "interpolation_spread":
        _refuse_unread("recovery", config.recovery, ("step_scale_power",),
                       f"applies to recovery.step_scale 'interpolation_spread' only: "
                       f"recovery.step_scale {config.recovery.step_scale!r} ignores it")
    if data.kind == "voxels":
        _refuse_unread("data", data, ("channels",), "voxel grids have one channel")
    if data.kind not in ("video", "video_frames"):
        _refuse_unread("data", data, ("frames", "start_frame", "fps"),
                       f"applies to videos only: data.kind {data.kind!r} ignores it")
    if data.kind == "texture":
        # A texture run given data.max_images=3 trained on its one image without a word.
        _refuse_unread("data", data, ("max_images",), "data.kind 'texture' learns from one "
                       "image")
    if data.kind != "voxels":
        _refuse_unread("data", data, ("categories", "split", "mean", "up_axis"),
                       f"applies to voxels only: data.kind {data.kind!r} ignores it")
    if config.multigrid is not None:
        # Earlier runs saved in_channels 1 and image_size 64 here, the defaults then: read as
        # unset, so that only a value a user chose is refused.
        model = dataclasses.replace(
            model, in_channels=None if model.in_channels == 1 else model.in_channels,
            image_size=None if model.image_size == 64 else model.image_size)
        every = [f.name for f in dataclasses.fields(ModelConfig)]
        _refuse_unread("model", model, every, "a multigrid run builds each grid's net from "
                       "multigrid.grids[i].model")
        every = [f.name for f in dataclasses.fields(ChainConfig)]
        _refuse_unread("chains", chains, every, "a multigrid run starts each grid's chains from "
                       "the grid below")
        return
    if config.cooperative is not None:
        every = [f.name for f in dataclasses.fields(ChainConfig) if f.name != "chains_per_example"]
        _refuse_unread("chains", chains, every, "a cooperative run's generator proposes every "
                       "chain start (of the chains section it reads chains_per_example only)")
        return
    mode = f"chains.mode {chains.mode!r} ignores it"
    if chains.mode in ("super_resolution", "recovery"):
        _refuse_unread("chains", chains, ("chains_per_example",),
                       f"{mode} (one chain per example)")
    for name, reader in (("data_noise", "data"), ("buffer_capacity", "buffer"),
                         ("buffer_fresh", "buffer"), ("factor", "super_resolution"),
                         ("missing", "recovery")):
        if chains.mode != reader:
            _refuse_unread("chains", chains, (name,), f"applies to chains.mode {reader!r} only: "
                           + mode)
    if chains.init != "data_gaussian":
        _refuse_unread("chains", chains, ("init_rank", "init_noise"),
                       f"applies to chains.init 'data_gaussian' only: chains.init "
                       f"{chains.init!r} ignores it")


# A grid's sampler section built in Python holds the default clamp, not the shared one.
DEFAULT_CLAMP = SamplerConfig.clamp


def _check_shared_sampler_is_read(config: ExperimentConfig) -> None:
    """Refuse a Langevin-only (HMC-only) setting of the shared sampler section when every grid
    of a multigrid run sets another kind in its own section: no grid inherits it
    (:func:`_grid_sampler`), so it would go unread."""
    if config.multigrid is None:
        return
    kinds = {(grid.sampler or config.sampler).kind for grid in config.multigrid.grids}
    for kind, names in (("langevin", LANGEVIN_ONLY), ("hmc", HMC_ONLY)):
        if kind not in kinds:
            _refuse_unread("sampler", config.sampler, names,
                           f"no multigrid grid's sampler is {kind!r} (each grid's sampler "
                           "section sets its own kind)")
    # A grid that inherits a shared setting holds its value; where every grid holds another,
    # each set its own, and the shared one went unread (the clamp aside, which drawn base grids
    # read: multigrid.base_rank).
    own = [grid.sampler for grid in config.multigrid.grids]
    if all(sampler is not None for sampler in own):
        names = [f.name for f in dataclasses.fields(SamplerConfig)
                 if not (f.name == "clamp" and config.multigrid.base_rank is not None)
                 and all(getattr(sampler, f.name) != getattr(config.sampler, f.name)
                         for sampler in own)]
        _refuse_unread("sampler", config.sampler, names,
                       "every multigrid grid's sampler section sets its own")


def _check_exact_sampler_clamps(config: ExperimentConfig) -> None:
    """Refuse a ``clamp`` set for MALA or HMC where nothing reads it (null, no clamp, is what
    they do): those samplers never clamp their chains (they sample exp(-E) itself), so a clamp
    set for them (a voxel run's [0, 1]) was ignored without a word. The experiment's clamp is
    read beside its chains by a cooperative generator's proposals, a multigrid run's drawn base
    grids (``multigrid.base_rank``), a grid whose own sampler is Langevin and keeps it, and a
    video completion preconditioned by ``recovery.step_scale`` without a sampler of its own."""
    shared, multigrid, recovery = config.sampler, config.multigrid, config.recovery
    grid_samplers = [grid.sampler or shared for grid in multigrid.grids] if multigrid else []
    read_beside_chains = (
        config.cooperative is not None
        or (multigrid is not None and multigrid.base_rank is not None)
        or (recovery.step_scale == "interpolation_spread" and recovery.completion is None)
        or any(s.kind == "langevin" and s.clamp == shared.clamp for s in grid_samplers))
    if shared.kind != "langevin" and shared.clamp is not None and not read_beside_chains:
        _refuse_unread("sampler", shared, ("clamp",),
                       f"sampler.kind {shared.kind!r} never clamps its chains")
    for i, sampler in enumerate(grid_samplers):
        # A grid's section inherits the shared clamp (read or refused above): only one of its
        # own is the grid's to refuse.
        if sampler.kind != "langevin" and sampler.clamp not in (shared.clamp, DEFAULT_CLAMP,
                                                                None):
            key = f"multigrid.grids[{i}].sampler"
            raise UnreadSetting(
                f"{key}.clamp is {_shown(sampler.clamp)}, but {key}.kind {sampler.kind!r} never "
                f"clamps its chains; leave {key}.clamp out (the sampler section's, "
                f"{_shown(shared.clamp)}, is inherited)", key=f"{key}.clamp",
                default=shared.clamp)
    completion = recovery.completion
    if (completion is not None and completion.kind != "langevin" and completion.clamp is not None
            and recovery.step_scale != "interpolation_spread"):
        _refuse_unread("recovery.completion", completion, ("clamp",),
                       f"recovery.completion.kind {completion.kind!r} never clamps its chains "
                       f"(recovery.step_scale {recovery.step_scale!r}: nothing else bounds them)")


# The architectures each data.kind's modality builds (stgconv.modalities): another one failed
# only once the data had loaded, as an "unknown ... architecture" that named no key.
IMAGE_ARCHS = (*IMAGE_PRESETS, *CLASSIFIER_ARCHS)
ARCHS_OF_KIND = {"texture": IMAGE_ARCHS, "objects": IMAGE_ARCHS, "video_frames": IMAGE_ARCHS,
                 "video": VIDEO_ARCHS, "voxels": tuple(VOXEL_PRESETS)}


def spatial_dims(data: DataConfig) -> int:
    """How many dimensions the examples of ``data`` span: 2 for images, 3 for videos (time and
    space) and voxels."""
    return 3 if data.kind in ("video", "voxels") else 2


def _check_model(key: str, model: ModelConfig, data: DataConfig) -> None:
    """``ValueError`` naming the key under ``key`` (a ``model`` section) that the data's modality
    cannot build, or that the architecture leaves unread."""
    archs = ARCHS_OF_KIND.get(data.kind)
    if archs is None:  # a kind given in Python, past the type check: modality_of names it
        return
    if model.arch not in archs:
        raise ValueError(f"{key}.arch {model.arch!r} is not an architecture for data.kind "
                         f"{data.kind!r}; choose from {list(archs)}")
    # The data's, filled in once read (fill_model): one that no data has (0 channels) was
    # shown valid by --print-config and refused only once the data had loaded.
    for name in ("in_channels", "image_size", "reference_sigma"):
        if getattr(model, name) is not None:
            _check_positive(f"{key}.{name}", getattr(model, name))
    # As fill_model refuses it, but before any work: --print-config showed model.in_channels 1
    # beside data.channels 3 as valid, and train refused it only once the data had loaded.
    channels = example_shape(data)[0]
    if model.in_channels is not None and model.in_channels != channels:
        whose = ("voxel grids have one channel" if data.kind == "voxels" else
                 f"data.channels is {data.channels}")
        raise ModelOfOtherData(f"{key}.in_channels is {model.in_channels}, but {whose}",
                               f"the net is built for the data; leave {key}.in_channels out "
                               "(or null)")
    if model.layers is not None:
        _check_layers(f"{key}.layers", model.layers, spatial_dims=spatial_dims(data))
    if model.arch in CLASSIFIER_ARCHS:
        _refuse_unread(key, model, ("layers", "activation", "reference_sigma"),
                       f"{key}.arch {model.arch!r} is a classifier, whose network is fixed")
    else:
        _refuse_unread(key, model, ("n_classes",),
                       f"applies to classifier architectures only, not {model.arch!r}")


# Why a resumed run's model section differs from its data, and what to do: its config.yaml
# (or checkpoint) holds the values its data gave, so leaving them out (the advice for a config
# of the user's) is no way to resume it.
RESUMED_MODEL_ADVICE = ("the run's network was built for the data it was trained on: resume "
                        "with that data (its data.path, data.channels and data.size), or train a "
                        "new run")


class ModelOfOtherData(ValueError):
    """A model section's ``in_channels`` that the data section does not give: ``problem`` says
    which, ``advice`` what to do with a config of the user's (a resumed run's own takes
    :data:`RESUMED_MODEL_ADVICE`)."""

    def __init__(self, problem: str, advice: str) -> None:
        super().__init__(f"{problem}: {advice}")
        self.problem, self.advice = problem, advice

    def __reduce__(self) -> tuple:
        # BaseException's pickle passes the message alone, which __init__ does not take.
        return type(self), (self.problem, self.advice)


def fill_model(model: ModelConfig, key: str, *, in_channels: int, image_size: int,
               size_of: str, resumed: bool = False) -> ModelConfig:
    """``model`` (the section at ``key``) with the data's ``in_channels`` and ``image_size``
    (``size_of`` names whose size it is) filled in. ``ValueError`` for a value set that differs:
    replaced without a word, a 3 set for grey images looked like a colour net. ``resumed``: the
    section is a resumed run's own, filled in from the data it was trained on."""
    for name, value, whose in (("in_channels", in_channels, "their channels"),
                               ("image_size", image_size, size_of)):
        given = getattr(model, name)
        if given is not None and given != value:
            advice = (RESUMED_MODEL_ADVICE if resumed else
                      f"the net is built for the data; leave {key}.{name} out (or null)")
            raise ValueError(f"{key}.{name} is {given!r}, but the data give {value} ({whose}): "
                             f"{advice}")
    return dataclasses.replace(model, in_channels=in_channels, image_size=image_size)


def _check_layers(key: str, layers: Sequence[Sequence[Any]], *, spatial_dims: int) -> None:
    """``ValueError`` naming the row of ``layers`` (at ``key``) that is no convolution of
    ``spatial_dims`` dimensions: found only once the data had loaded, in the net's words
    ("layer 1 ..."), or, for a per-dimension list of the wrong length, as a traceback from
    inside torch."""
    if not layers:
        raise ValueError(f"{key} must hold at least one convolution, or be null (the preset's)")
    for i, row in enumerate(layers):
        problem = layer_row_problem(row, spatial_dims)
        if problem is not None:
            j, name, why = problem
            if j is None:
                raise ValueError(f"{key}[{i}] must be [out_channels, kernel, stride] or "
                                 f"[out_channels, kernel, stride, padding], got {list(row)}")
            raise ValueError(f"{key}[{i}][{j}] ({name}) {why}")


def example_shape(data: DataConfig) -> tuple[int, ...]:
    """The shape of one training example as ``data`` describes it: ``(C, H, W)`` images,
    ``(C, T, H, W)`` videos, ``(1, D, H, W)`` voxels."""
    if data.kind == "voxels":
        return (1, data.size, data.size, data.size)
    if data.kind == "video":
        return (data.channels, data.frames, data.size, data.size)
    return (data.channels, data.size, data.size)


# The settings of a sampler section that one kind of sampler reads and the others refuse.
LANGEVIN_ONLY = ("noise_scale", "noise_anneal", "grad_clip", "precision", "cuda_graph")
HMC_ONLY = ("n_leapfrog", "step_jitter")


def check_sampler(key: str, sampler: SamplerConfig) -> None:
    """``ValueError`` naming the setting of ``sampler`` (the section at ``key``) that is out of
    range, or set though its ``kind`` never reads it (:class:`UnreadSetting`)."""
    _check_positive(f"{key}.n_steps", sampler.n_steps)
    if sampler.task_steps is not None:
        _check_positive(f"{key}.task_steps", sampler.task_steps)
    _check_positive(f"{key}.step_size", sampler.step_size)
    if sampler.noise_scale < 0:
        raise ValueError(f"{key}.noise_scale must be >= 0, got {sampler.noise_scale!r}")
    check_step_size(sampler.step_size, noise_scale=sampler.noise_scale, prefix=f"{key}.")
    if sampler.grad_clip is not None:
        _check_positive(f"{key}.grad_clip", sampler.grad_clip)
    _check_positive(f"{key}.n_leapfrog", sampler.n_leapfrog)
    if not 0.0 <= sampler.step_jitter < 1.0:  # written so that NaN fails too
        raise ValueError(f"{key}.step_jitter must be in [0, 1) (a share of the step size), got "
                         f"{sampler.step_jitter!r}")
    if sampler.clamp is not None:
        # As the samplers check it: a section built in Python with three bounds failed here
        # as "too many values to unpack".
        try:
            check_clamp(sampler.clamp)
        except ValueError:
            raise ValueError(f"{key}.clamp must be [low, high] with low < high, or null, got "
                             f"{list(sampler.clamp)}") from None
    if sampler.kind != "langevin":
        # MALA and HMC sample exp(-E) itself, in fp32 and step by step: a temperature,
        # annealing, clipping, precision or CUDA graph set for them would be ignored without a
        # word.
        _refuse_unread(key, sampler, LANGEVIN_ONLY,
                       f"applies to Langevin only: {key}.kind {sampler.kind!r} ignores it")
    if sampler.kind != "hmc":
        _refuse_unread(key, sampler, HMC_ONLY,
                       f"applies to HMC only: {key}.kind {sampler.kind!r} ignores it")


class UnreadSetting(ValueError):
    """The config sets ``key`` (a dotted path) away from its ``default``, and the run it
    describes never reads it."""

    def __init__(self, message: str, *, key: str, default: Any) -> None:
        super().__init__(message)
        self.key, self.default = key, default

    def __reduce__(self) -> tuple:
        # As NonFiniteEnergyError's: BaseException's pickle passes the message alone.
        return partial(type(self), key=self.key, default=self.default), self.args, self.__dict__


def _refuse_unread(key: str, section: Any, names: Sequence[str], why: str) -> None:
    """:class:`UnreadSetting` naming the first of ``names`` that config ``section`` (at
    ``key``) sets away from its default, where ``why`` says what leaves it unread: kept, it
    would look like a setting that took effect."""
    # From the fields, not from type(section)(): a section's own __post_init__ calls this.
    fields = {f.name: f for f in dataclasses.fields(section)}
    for name in names:
        f = fields[name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        value = getattr(section, name)
        if value != default:
            shown = _shown(default)
            raise UnreadSetting(f"{key}.{name} is {value!r}, but {why}; set {key}.{name}={shown} "
                                "(its default) or leave it out", key=f"{key}.{name}",
                                default=default)


def _shown(value: Any) -> str:
    """``value`` as ``--set`` takes it: ``null``, ``true``, ``[-1.0, 1.0]`` for a tuple (the
    tuple's own ``(-1.0, 1.0)`` reads back as a string)."""
    if value is None:
        return "null"
    return str(list(value)) if isinstance(value, tuple) else str(value).lower()


def _check_multigrid(multigrid: MultiGridConfig, data: DataConfig) -> None:
    if not multigrid.grids:
        raise ValueError("multigrid.grids is empty: list the modelled grids, coarse to fine")
    sizes = [multigrid.base_size, *(grid.size for grid in multigrid.grids)]
    frames = [multigrid.base_frames, *(grid.frames for grid in multigrid.grids)]
    for key, value in (("multigrid.base_size", sizes[0]), ("multigrid.base_frames", frames[0])):
        if value is not None:
            _check_positive(key, value)
    if multigrid.base_rank is not None and not multigrid.base_rank >= 0:
        raise ValueError(f"multigrid.base_rank must be >= 0 or null, got {multigrid.base_rank!r}")
    for i, grid in enumerate(multigrid.grids):
        _check_positive(f"multigrid.grids[{i}].size", grid.size)
        _check_model(f"multigrid.grids[{i}].model", grid.model, data)
        if grid.model.arch in CLASSIFIER_ARCHS:
            raise ValueError(f"multigrid.grids[{i}].model.arch {grid.model.arch!r} is a "
                             "classifier: a multigrid run learns a descriptor net per grid")
        _refuse_unread(f"multigrid.grids[{i}].model", grid.model, ("density_scale",),
                       "applies to classifier architectures only")
        if grid.sampler is not None:
            check_sampler(f"multigrid.grids[{i}].sampler", grid.sampler)
        if grid.frames is not None:
            _check_positive(f"multigrid.grids[{i}].frames", grid.frames)
    if sizes[-1] != data.size:
        raise ValueError(f"the finest grid (multigrid.grids[-1].size = {sizes[-1]}) must be the "
                         f"data's size (data.size = {data.size})")
    if data.kind != "video" and any(n is not None for n in frames):
        raise ValueError("multigrid frames (base_frames, grids[i].frames) apply to videos only "
                         "(data.kind = video)")
    frames = [data.frames if n is None else n for n in frames]
    if frames[-1] != data.frames:
        raise ValueError(f"the finest grid must keep every frame (data.frames = {data.frames}), "
                         f"got {frames[-1]}")
    # What made the frames: a base_frames of 1 was told that a null one keeps every frame, and
    # a --set data.frames=6 over configs/video/multigrid_flag_quick.yaml ([1, 4, 6, 6]) was not
    # told that its grids without frames took 6.
    kept = []
    if multigrid.base_frames is None:
        kept.append("a null base_frames keeps every frame: set multigrid.base_frames for grids "
                    "coarser in time")
    if any(grid.frames is None for grid in multigrid.grids):
        kept.append(f"a grid without frames keeps every frame, data.frames = {data.frames}")
    hint = {"size": "", "frames": f" ({'; '.join(kept)})" if kept else ""}
    for name, values in (("size", sizes), ("frames", frames)):
        for coarse, fine in zip(values, values[1:]):
            if fine % coarse:
                raise ValueError(f"every multigrid {name} must divide the next finer one, got "
                                 f"{values} (coarse to fine, base first){hint[name]}")
    for k in range(1, len(sizes)):
        if (sizes[k], frames[k]) == (sizes[k - 1], frames[k - 1]):
            extent = (f"size {sizes[k]}, {frames[k]} frames" if data.kind == "video"
                      else f"size {sizes[k]}")
            raise ValueError(f"multigrid grid {k - 1} ({extent}) is no finer than the grid "
                             "below it: each grid must refine the last")


def _check_cooperative(cooperative: CooperativeConfig, *, multigrid: bool) -> None:
    if multigrid:
        raise ValueError("cooperative and multigrid are set: a cooperative generator proposes "
                         "one model's chains; remove one of the two sections")


def _check_initializer(config: ExperimentConfig) -> None:
    initializer = config.initializer
    if (config.chains.mode not in ("super_resolution", "recovery") or config.data.kind != "voxels"
            or config.multigrid is not None or config.cooperative is not None):
        raise ValueError("initializer proposes the super-resolution or recovery chains of one "
                         "voxel model: it needs chains.mode super_resolution or recovery, "
                         "data.kind voxels and no multigrid or cooperative section (got "
                         f"chains.mode {config.chains.mode!r}, data.kind {config.data.kind!r})")
    if config.chains.mode == "super_resolution":
        _refuse_unread("initializer", initializer, ("fold",),
                       "applies to recovery (chains.mode recovery) only: a super-resolution "
                       "initializer works on the blocks of initializer.factors")
    if config.chains.mode == "recovery":
        if initializer.factors is not None:
            raise ValueError("initializer.factors are super-resolution block sizes; a recovery "
                             "run (chains.mode recovery) learns a filler: remove them")
        if config.data.size % initializer.fold:
            raise ValueError(f"initializer.fold {initializer.fold} must divide data.size "
                             f"{config.data.size}")
        return
    factors = initializer_factors(config)
    if not factors or len(set(factors)) != len(factors) or not all(
            isinstance(f, int) and f >= 2 and config.data.size % f == 0 for f in factors):
        raise ValueError(f"initializer.factors must be distinct ints >= 2 dividing data.size "
                         f"{config.data.size}, got {list(factors)}")
    if config.chains.factor not in factors:
        raise ValueError(f"initializer.factors {list(factors)} must include chains.factor "
                         f"{config.chains.factor}: the training chains start at its proposals")


def initializer_factors(config: ExperimentConfig) -> tuple[int, ...]:
    """The super-resolution block sizes the config's initializer learns
    (``initializer.factors``, by default ``chains.factor``); empty without an initializer
    section or for a recovery run."""
    if config.initializer is None or config.chains.mode != "super_resolution":
        return ()
    factors = config.initializer.factors
    return tuple(factors) if factors is not None else (config.chains.factor,)


def _check_jem(config: ExperimentConfig) -> None:
    classifier = config.model.arch in ("digit_classifier", "wide_resnet")
    if config.model.n_classes < 2:
        raise ValueError(f"model.n_classes must be >= 2, got {config.model.n_classes}")
    jem = config.jem
    if jem is None:
        if classifier:
            raise ValueError(f"model.arch {config.model.arch!r} is a classifier: add a jem "
                             "section (its labels and loss weights) to train it")
        if config.model.density_scale:
            raise ValueError(f"model.density_scale applies to classifier architectures "
                             f"(digit_classifier, wide_resnet), not {config.model.arch!r}")
        return
    if not classifier:
        raise ValueError(f"jem trains a classifier architecture, got model.arch "
                         f"{config.model.arch!r}: set model.arch to digit_classifier or "
                         "wide_resnet")
    if config.data.kind != "objects" or not config.data.path.lower().endswith(".npz"):
        raise ValueError(f"jem needs labelled images: data.kind objects and data.path an .npz "
                         f"with x_train and {jem.labels}, got {config.data.kind} "
                         f"{config.data.path!r}")
    if config.chains.chains_per_example != 1:
        raise ValueError("jem runs one chain per example of the contrastive sub-batch: "
                         f"chains.chains_per_example must be 1, got "
                         f"{config.chains.chains_per_example}")
    if config.chains.mode not in ("noise", "persistent", "buffer"):
        raise ValueError(f"jem samples from noise, persistent chains or the replay buffer; "
                         f"chains.mode {config.chains.mode!r} does not apply")
    check_shift(jem, config.data.size)
    check_px_batch(jem, config.train.batch_size)


def section_or_default(section: Any, kind: type, name: str) -> Any:
    """``section``, or ``kind()`` (its defaults) for ``None``; ``ValueError`` naming ``name``
    unless it is a ``kind``: a trainer given a dict of settings failed at its first read as
    "'dict' object has no attribute 'batch_size'"."""
    if section is None:
        return kind()
    if not isinstance(section, kind):
        raise ValueError(f"{name} must be a {kind.__name__} ({kind.__name__}(**settings) for a "
                         f"dict of them) or None, got {type(section).__name__}")
    return section


def check_shift(jem: JEMConfig, side: int, side_name: str = "data.size") -> None:
    """``ValueError`` unless ``jem.shift`` (>= 0, checked by JEMConfig) is below half the
    images' ``side`` (``side_name`` in the message): a larger shift moves most of an image off
    its grid, and HybridTrainer trained on the smeared edges that replace it without a
    word."""
    if jem.shift >= side // 2:
        raise ValueError(f"jem.shift must be in [0, {side_name} / 2 = {side // 2}), got "
                         f"{jem.shift}")


def check_px_batch(jem: JEMConfig, batch_size: int) -> None:
    """``ValueError`` unless ``jem.px_batch`` is null or in ``[1, batch_size]`` (that of
    ``train.batch_size``): HybridTrainer took 0 for the whole batch, and cut a larger one to
    it, without a word."""
    if jem.px_batch is not None and not 1 <= jem.px_batch <= batch_size:
        raise ValueError(f"jem.px_batch must be in [1, train.batch_size = {batch_size}] or "
                         f"null, got {jem.px_batch}")


def _check_positive(key: str, value: float) -> None:
    if not value > 0:  # NaN too
        raise ValueError(f"{key} must be positive, got {value!r}")


def _check_betas(key: str, betas: Sequence[float]) -> None:
    """``ValueError`` naming ``key`` unless ``betas`` are Adam's two, each in ``[0, 1)``: built
    in Python, a section took one (Adam then failed with an IndexError) or three (the first
    step failed unpacking them), where the file's reader refuses both."""
    if len(betas) != 2:
        raise ValueError(f"{key} must have 2 entries, got {list(betas)}")
    if not all(0.0 <= beta < 1.0 for beta in betas):
        raise ValueError(f"{key} must be in [0, 1), got {list(betas)}")


def _check_not_negative(key: str, value: float) -> None:
    if not value >= 0:  # NaN too
        raise ValueError(f"{key} must be >= 0, got {value!r}")


def _check_number_types(key: str, section: Any) -> None:
    """``ValueError`` naming the int setting of ``section`` (at ``key``) that is no integer, or
    the float setting that is no number, as the file's reader refuses them (:func:`_coerce`).
    Called before the range checks: built in Python, a train.batch_size of 2.5 failed in the
    first step in Python's words ("slice indices must be integers"), an accumulate of True ran
    as 1, and an lr of "0.1" failed in the range check's comparison ("'>' not supported between
    instances of 'str' and 'int')."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.type not in ("int", "int | None", "float", "float | None") or (
                value is None and f.type.endswith("| None")):
            continue
        kind = numbers.Integral if f.type.startswith("int") else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            what = "an integer" if kind is numbers.Integral else "a number"
            raise ValueError(f"{key}.{f.name} must be {what}, got {value!r}")


def _check_finite_floats(key: str, section: Any) -> None:
    """``ValueError`` naming the float setting of ``section`` (at ``key``) that is infinite
    (or NaN) or past float32's range, as the file's reader refuses it (:func:`_coerce`): a
    section built in Python gets the same checks. Called after the range checks, whose
    messages name a NaN already."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if not isinstance(value, float):
            continue
        if not math.isfinite(value):
            raise ValueError(f"{key}.{f.name} must be a finite number, got {value!r}")
        check_float32_setting(f"{key}.{f.name}", value)


def check_float32_setting(key: str, value: float) -> None:
    """``ValueError`` naming ``key`` where float32 does not hold the finite setting ``value``
    as a number of its size. Most settings scale float32 tensors: past float32's range they
    are infinite there (Adam failed with a traceback at train.lr: 1e300), and nearer 0 than
    its smallest normal number 0 or a few bits (train.lr: 1e-50 trained nothing, without a
    word); the few compared in Python (jem.max_energy_gap) mean nothing more past those bounds
    than at them."""
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{key} must be within float32's range (at most {FLOAT32_MAX:.4g} "
                         f"in size), got {value!r}")
    if 0 < abs(value) < FLOAT32_TINY:
        held = float(torch.tensor(value, dtype=torch.float32))
        raise ValueError(f"{key} is {value!r}, which float32 (the tensors it scales) holds as "
                         f"{held!r}: a setting other than 0 must be at least "
                         f"{FLOAT32_TINY:.4g} in size (float32's smallest normal number)")


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads ``1e-3`` (no dot) as a *string*; YAML 1.2 and every
    user typing ``--set train.lr=1e-4`` mean a float. This loader adds that float form."""


class _Dumper(yaml.SafeDumper):
    """Writes what :class:`_Loader` reads back: a string that it would read as that float
    (a run called ``1e3``, a --data path ``2e5``) is quoted, where PyYAML's dumper left it bare
    and the run's config.yaml no longer loaded (``name must be a str, got 1000.0``)."""


_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))


def _mapping_without_repeats(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A YAML mapping, refusing a key given twice: PyYAML keeps the last silently, so a second
    ``train:`` section would drop every value of the first. A key that a merge (``<<: *base``)
    brings in may be given again: overriding it is what a merge is for."""
    _refuse_merged_repeats(loader, node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # construct_mapping merges, the mapping's own keys winning
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, typing.Hashable):
            # As construct_mapping would refuse it: testing it for repeats raised a TypeError
            # (`? [a]` in a file, `{[a]: 1}` in a --set), a traceback instead of a message.
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found a key that is not a name ({key!r})", key_node.start_mark)
        if (type(key), key) in seen:  # with its type: 1 and True are equal keys in Python
            raise ValueError(f"config key {key!r} is given twice (line "
                             f"{key_node.start_mark.line + 1}); the second would silently replace "
                             "the first")
        seen.add((type(key), key))
    return loader.construct_mapping(node, deep=True)


def _refuse_merged_repeats(loader: _Loader, node: yaml.MappingNode) -> None:
    """Refuses a key that two mappings merged into ``node`` both give (``<<: [*a, *b]``, or
    ``<<: *a`` and ``<<: *b``). YAML's merge takes the first mapping's; PyYAML 6.0.4 takes the
    last's or the first's by the key's length (yaml/pyyaml#953), so ``train: {<<: [*fast,
    *base]}`` set the other learning rate than the file says, silently."""
    given: set[Any] = set()
    for key_node, merged in node.value:
        if key_node.tag != "tag:yaml.org,2002:merge":
            continue
        for mapping_node in merged.value if isinstance(merged, yaml.SequenceNode) else [merged]:
            if not isinstance(mapping_node, yaml.MappingNode):
                return  # PyYAML's own refusal names it
            keys = loader.construct_object(mapping_node, deep=True)
            repeated = sorted(given.intersection(keys), key=str)
            if repeated:
                raise ValueError(
                    f"config key {repeated[0]!r} is given by two of the mappings merged on line "
                    f"{key_node.start_mark.line + 1}; which one a merge keeps differs between "
                    "YAML readers: give the key beside the <<, where it replaces the merged ones")
            given.update(keys)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)

_BASE_60_OR_8 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|0[0-7_]+)$")


def _number_as_typed(loader: _Loader, node: yaml.ScalarNode) -> int | float:
    """An int or float scalar, refusing the YAML 1.1 forms that read as another number than the
    digits typed: ``1:30`` is 90 (base 60) and ``010`` is 8 (octal), silently, in a seed or a
    count (``07`` is 7 either way)."""
    number = (loader.construct_yaml_int(node) if node.tag.endswith(":int")
              else loader.construct_yaml_float(node))
    if _BASE_60_OR_8.match(node.value) and (
            ":" in node.value or int(node.value.replace("_", ""), 10) != number):
        kind = "base 60" if ":" in node.value else "octal"
        raise ValueError(f"the value {node.value} (line {node.start_mark.line + 1}) reads as "
                         f"{number} ({kind}, as YAML 1.1 has it): write the number in decimal, "
                         "or quote it for text")
    return number


_Loader.add_constructor("tag:yaml.org,2002:int", _number_as_typed)
_Loader.add_constructor("tag:yaml.org,2002:float", _number_as_typed)
# YAML 1.1 reads 2026-12-07 (and 2026-12-07 10:00:00) as a date, a type no setting takes: a run
# named for its day (name: 2026-12-07, or --set name=2026-12-07) was refused as "got
# datetime.date(2026, 12, 7)". Read as typed, text, as YAML 1.2 has it; the dumper quotes it.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)


def _yaml_load(stream: Any) -> Any:
    return yaml.load(stream, Loader=_Loader)


C = TypeVar("C")


class UnknownKeys(ValueError):
    """A config holds keys that no section of this stgconv has: ``keys``, dotted as
    ``train.lrr`` or ``multigrid.grids[1].bogus``; ``sources``: what holds them, where known
    (a file's path, ``--set train.lrr=1``: :func:`config_from_settings`)."""

    def __init__(self, message: str, keys: Sequence[str] = (), *,
                 sources: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.keys, self.sources = list(keys), list(sources)


# Settings an earlier stgconv had and this one has withdrawn: dotted key -> (what became of it,
# whether no training run read it). Every run of its time saved them (a run's config.yaml and
# checkpoint hold every setting), so they are named as such, not as unknown keys.
WITHDRAWN_SETTINGS: dict[str, tuple[str, bool]] = {
    "recovery.learned.redraw_every": (
        "since 2026-12-01 the learned fill draws its hidden patterns from a pool "
        "(recovery.learned.patterns); leave it out", True),
    "initializer.sr_loss": (
        "since 2026-12-02 super-resolution initializers learn by binary cross-entropy only, "
        "and one trained with it is not read: train a new one", False),
}


class WithdrawnSetting(UnknownKeys):
    """A config holds ``key``, a setting of an earlier stgconv (:data:`WITHDRAWN_SETTINGS`)."""

    def __init__(self, key: str) -> None:
        why, self.unread_by_training = WITHDRAWN_SETTINGS[key]
        super().__init__(f"{key} is a setting of an earlier stgconv, withdrawn: {why}")
        self.key = key

    def __reduce__(self) -> tuple:
        # As NonFiniteEnergyError's: BaseException's pickle passes the message, not the key.
        return type(self), (self.key,), self.__dict__


class WrongType(ValueError):
    """A config value of a type its key does not take (text where a number goes, say): ``key``,
    dotted as errors name it (``multigrid.grids[1].size``)."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple:
        # As UnreadSetting's: BaseException's pickle passes the message alone.
        return partial(type(self), key=self.key), self.args, self.__dict__


def config_from_dict(cls: type[C], data: dict[str, Any], *, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, checking every key and value type."""
    if not isinstance(data, dict):
        # Text, where a colon lacks its space (lr:0.002) or is missing (lr 0.002): YAML reads
        # the line as one string, which the bare "got 'lr:0.002'" did not explain.
        hint = (" (YAML reads it as text: write each key as key: value, a space after the "
                "colon, on its own line indented beneath the section)"
                if isinstance(data, str) else "")
        raise ValueError(f"config section {prefix.rstrip('.') or '<root>'} must be a mapping, "
                         f"got {data!r}{hint}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # a key YAML read as a number or a bool too
    withdrawn = [prefix + str(key) for key in unknown if prefix + str(key) in WITHDRAWN_SETTINGS]
    if withdrawn:
        raise WithdrawnSetting(withdrawn[0])
    if unknown:
        where = f" in section '{prefix.rstrip('.')}'" if prefix else ""
        keys = [prefix + str(k) for k in unknown]
        # `train.lr: 0.002` in a file, the --set form copied: YAML reads one key with a dot.
        dotted = [k for k in unknown if isinstance(k, str) and k.partition(".")[0] in names]
        hint = ""
        if dotted:
            section, _, rest = dotted[0].partition(".")
            hint = (f" ({dotted[0]} is how --set names it; in YAML, nest it: {section}: and, "
                    f"indented beneath, {rest}:)")
        raise UnknownKeys(f"unknown config key(s) {', '.join(keys)}{where}; "
                          f"valid keys: {', '.join(sorted(names))}{hint}", keys)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        # A section whose keys are all commented out reads as null: the defaults, as a section
        # left out (an optional section's null turned it off before this, in the Union branch).
        return config_from_dict(tp, {} if value is None else value, prefix=key + ".")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors: list[ValueError] = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ValueError as err:
                errors.append(err)
        # The first alternative is the common form (an int kernel before a per-dimension list),
        # its error kept whole: an optional section's unread, unknown or withdrawn key is named
        # as such (made a plain ValueError, it was no longer told apart from other errors).
        raise errors[0]
    if origin is Literal:
        # Types too: `True == 1` and `1.0 == 1` in Python, so `in` would let them through.
        if not any(type(value) is type(a) and value == a for a in args):
            words = all(isinstance(a, str) for a in args)
            raise WrongType(f"{key} must be one of {list(args)}, got "
                            f"{_shown_for_a_word(value) if words else repr(value)}", key=key)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise WrongType(f"{key} must be a list, got {value!r}", key=key)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise WrongType(f"{key} must have {len(args)} entries, got {value!r}", key=key)
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WrongType(f"{key} must be a number, got {_shown_given(value)}", key=key)
        # No setting means anything at NaN or infinity (null turns off the optional ones),
        # and a NaN passes every comparison-based check after this one.
        if not math.isfinite(value):
            raise WrongType(f"{key} must be a finite number, got {value!r}", key=key)
        try:
            check_float32_setting(key, value)
        except ValueError as err:  # named with what gave the value, as the others here
            raise WrongType(str(err), key=key) from None
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            # n_iterations: 1e4 is a float to YAML (and to Python): say which integer to write.
            fix = (f" (YAML reads 1e4 or 10000.0 as a float: write {int(value)})"
                   if isinstance(value, float) and value.is_integer() else "")
            raise WrongType(f"{key} must be an integer, got {_shown_given(value)}{fix}", key=key)
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            shown = _shown_for_a_word(value) if tp is str else _shown_given(value)
            raise WrongType(f"{key} must be a {tp.__name__}, got {shown}", key=key)
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")


def _shown_for_a_word(value: Any) -> str:
    """``value`` as the refusal of a word shows it. YAML 1.1 (PyYAML) reads a bare yes, no, on
    or off as a boolean: ``name: off`` was refused as "got False", which did not say where the
    boolean came from. Likewise a number: ``name: 007`` was refused as "got 7", ``name: 1e3`` as
    "got 1000.0", neither what the file says."""
    if isinstance(value, bool):
        return (f"{value!r} (YAML reads a bare yes, no, on, off, true or false as a boolean: "
                "quote the word)")
    if isinstance(value, numbers.Number):
        return f"{value!r} (YAML reads a bare number as a number: quote it for text)"
    return _shown_given(value)


def _shown_given(value: Any) -> str:
    """``value`` as a refusal shows it; None says where it came from: ``--set train.lr=$LR``
    with LR unset gives an empty value, which YAML reads as null ("got None" did not say so)."""
    if value is None:
        return "None (YAML reads an empty value, ~ or null as None)"
    return repr(value)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (lists for tuples) of a config dataclass."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.001"`` -> ``(["train", "lr"], 0.001)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override must look like key=value, got {text!r}")
    try:
        node = yaml.compose(raw, Loader=_Loader)
        value = _yaml_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"override {text!r}: the value is not valid YAML "
                         f"({_yaml_problem(err)})") from err
    except RecursionError as err:  # PyYAML reads nested values by recursion
        # Named by its key: the value, hundreds of brackets at least, would fill the line.
        raise ValueError(f"override of {key.strip()}: the value nests {NESTED_TOO_DEEPLY}"
                         ) from err
    except ValueError as err:  # a number typed in a form YAML 1.1 reads otherwise
        raise ValueError(f"override {text!r}: {err}") from err
    # YAML drops " #..." as a comment: a path "/runs/a #2/x.png" would silently become "/runs/a"
    comment = raw[node.end_mark.index if node is not None else 0:].strip()
    if comment:
        raise ValueError(f"override {text!r}: YAML reads {comment!r} as a comment and would drop "
                         f"it; quote the value ({key.strip()}='...' inside the shell's quotes), "
                         "or give a path with --data / --out, which take it whole")
    path = key.strip().split(".")
    if "" in path:
        # Else named as an unknown key "" ("unknown config key(s) ; valid keys: ...") or
        # "train." (a doubled or trailing dot).
        raise ValueError(f"override {text!r}: the key {key.strip()!r} has an empty part "
                         "between its dots; keys look like train.lr")
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str],
                    values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of nested dict ``data`` with ``key.sub=value`` overrides applied, then
    ``values`` (``{"key.sub": value}``, taken as they are: a path such as ``"my photo: a.png"``
    or ``"run #2"`` is a string, not YAML). An entry of a list is reached by its index, as
    ``multigrid.grids.1.size`` or ``multigrid.grids[1].size`` (how errors name it); a mapping
    given for a section changes only the keys it gives (``null`` first clears the section)."""
    # One string is a sequence of its characters: "train.lr=0.1" was refused as the override
    # 't', which does not say the list around it is missing.
    if isinstance(overrides, str):
        raise ValueError(f"overrides must be a list of key=value strings, got the string "
                         f"{overrides!r}: give [{overrides!r}]")
    merged = _deep_copy(data)
    typed = [(text, *parse_override(text)) for text in overrides]
    typed += [(f"{key}={value}", key.split("."), value) for key, value in (values or {}).items()]
    for text, path, value in typed:
        steps = [step for part in path for step in _indexed(part)]
        node: Any = merged
        absent = None  # the first section on the path that the config does not have
        for i, step in enumerate(steps):
            if isinstance(node, list):
                if not (step.isdigit() and int(step) < len(node)):
                    where = ".".join(steps[:i])
                    raise ValueError(f"override {text!r}: {where} is a list of {len(node)} "
                                     f"entries, indexed from 0 ({where}.0...): got {step!r}")
                step = int(step)
            elif not isinstance(node, dict):
                raise ValueError(f"override {text!r}: '{steps[i - 1]}' is not a config section")
            if i == len(steps) - 1:
                old = node[step] if isinstance(node, list) else node.get(step)
                try:
                    node[step] = _merged(old, value)
                except ValueError as err:  # its copy too large: named, as a file's is
                    raise ValueError(f"override of {'.'.join(steps)}: {err}") from err
            else:
                if isinstance(node, dict) and node.get(step) is None:
                    absent = absent or ".".join(steps[:i + 1])
                    if steps[i + 1].isdigit():  # an entry of a list the config does not have
                        where = ".".join(steps[:i + 1])
                        raise ValueError(
                            f"override {text!r}: the config gives no {absent}"
                            + (" section" if absent != where else "")
                            + f", so there is no {where} entry {steps[i + 1]} to change; set "
                            f"the whole list ({where}=[...])")
                    node[step] = {}  # absent, or null as a saved config.yaml writes it
                node = node[step]
    return merged


def _merged(old: Any, new: Any) -> Any:
    """``new`` over ``old``: a mapping over a mapping changes only the keys it gives (``--set
    sampler={n_steps: 40}`` keeps the file's step size and clamp, which replacing the section
    silently reset to the defaults); anything else replaces."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        # A copy: a later override changes it in place, which must reach neither the caller's
        # `values` nor the other places a YAML alias (`[&g {...}, *g]`) put the same object.
        return _deep_copy(new)
    return {**old, **{key: _merged(old.get(key), value) for key, value in new.items()}}


def _indexed(part: str) -> list[str]:
    """``"grids[1]"`` -> ``["grids", "1"]``; any other part as it is."""
    match = re.fullmatch(r"(.+?)((?:\[\d+\])+)", part)
    if match is None:
        return [part]
    return [match[1], *re.findall(r"\d+", match[2])]


# Far more values than any config holds (a multigrid config: a few hundred), and copied in a
# fraction of a second. A config whose YAML aliases repeat inside one another (the "billion
# laughs": nine lines of ten aliases each, 10^9 values, in 400 bytes) expands past it in
# _deep_copy: the copy took time and memory without end, before any check.
MOST_CONFIG_VALUES = 100_000
# The end of the message refusing a config whose nesting the recursion of PyYAML or of the
# copy below could not follow (a few hundred levels; a RecursionError's traceback otherwise).
NESTED_TOO_DEEPLY = "lists or mappings inside one another too deeply to read (hundreds of levels)"


def _deep_copy(data: Any) -> Any:
    """``data`` with every dict and list copied (an override changes them in place), each
    place it appears in a copy of its own. A list that holds itself (``&a [*a]`` in a --set)
    becomes a copy that holds itself, for the config's load to refuse, not a RecursionError.

    Raises:
        ValueError: the copy would hold more than :data:`MOST_CONFIG_VALUES` values.
    """
    copying: dict[int, Any] = {}  # id -> copy, of the containers above the one being copied
    n_values = 0

    def copied(value: Any) -> Any:
        nonlocal n_values
        n_values += 1
        if n_values > MOST_CONFIG_VALUES:
            raise ValueError(f"the config holds more than {MOST_CONFIG_VALUES} values once "
                             "each value it repeats (a YAML alias, *name) is written out: "
                             "repeats inside one another?")
        if not isinstance(value, (dict, list)):
            return value
        if id(value) in copying:
            return copying[id(value)]
        copy: Any = {} if isinstance(value, dict) else []
        copying[id(value)] = copy
        if isinstance(value, dict):
            copy.update((k, copied(v)) for k, v in value.items())
        else:
            copy.extend(copied(v) for v in value)
        del copying[id(value)]
        return copy

    try:
        return copied(data)
    except RecursionError as err:  # a checkpoint's config: unpickling nests without recursion
        raise ValueError(f"the config nests {NESTED_TOO_DEEPLY}") from err


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        # "not found" sent a user to look for a path that was there: a run folder, given
        # where its settings file goes (stgconv recover --config runs/a).
        inside = path / "config.yaml"
        hint = f"; the run's settings are {inside}" if inside.is_file() else ""
        raise FileNotFoundError(f"config file {path} is a folder, not a YAML file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        try:
            data = _yaml_load(fh)
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path} is not valid YAML: {_yaml_problem(err)}"
                             ) from err
        except UnicodeDecodeError as err:
            raise ValueError(f"config file {path} {_why_not_text(path)}") from err
        except RecursionError as err:  # PyYAML reads nested values by recursion
            raise ValueError(f"config file {path} nests {NESTED_TOO_DEEPLY}") from err
        except ValueError as err:  # a key given twice, a number YAML 1.1 reads otherwise
            raise ValueError(f"config file {path}: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        # What it holds instead: a list (lines of "- ..."), or one word or line of text, such
        # as a --set written into the file (train.lr=0.002), which YAML reads as a string.
        held = ("a list" if isinstance(data, list) else
                f"{reprlib.repr(data)} (key=value is --set's form; a file writes key: value)"
                if isinstance(data, str) and "=" in data else reprlib.repr(data))
        raise ValueError(f"config file {path} must hold a mapping (key: value lines) at the top "
                         f"level, got {held}")
    try:
        return _deep_copy(data)  # refused here, where the message can name the file
    except ValueError as err:
        raise ValueError(f"config file {path}: {err}") from err


def _why_not_text(path: Path) -> str:
    """Why ``path`` did not read as UTF-8: an archive (a checkpoint given where its run's
    settings go), or text saved in another encoding, e.g. a comment with an accent written by an
    editor in cp1252, where "a checkpoint?" would mislead."""
    if zipfile.is_zipfile(path):
        return ("is a zip archive, not YAML text (a checkpoint? continue a run with train --out "
                "RUN --resume)")
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return (f"is not UTF-8 text: byte 0x{data[err.start]:02x} on line {line} (save it as "
                "UTF-8)")
    return "is not UTF-8 text"  # changed while it was read


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (its own text spans several lines,
    quoting the input with a caret under it)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or err
    # PyYAML's words for a tab an editor put in ("found character '\t' that cannot start any
    # token") do not say what to do; YAML indents with spaces only, and PyYAML takes no tab
    # between the parts of a line either.
    fix = "; write spaces instead of the tab" if "'\\t'" in str(problem) else ""
    return f"{problem}{where}{fix}"


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                values: Mapping[str, Any] | None = None, *,
                saved: bool = False) -> ExperimentConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides, then
    ``values`` (``{"key.sub": value}``, not parsed: what a command's own options set).
    ``saved``: the file is a run's own ``config.yaml``, whose settings an earlier stgconv
    accepted but the run never read are reset, with a warning
    (:func:`without_unread_settings`); a config file of the user's is refused for them.

    A multi-grid grid's ``sampler`` section overrides the experiment's ``sampler`` section key by
    key, so a grid that only sets ``n_steps`` keeps the experiment's step size and clamp.
    A ``~`` heading ``data.path``, ``out_dir`` or ``recovery.learned.prior`` is the user's home
    folder, as a shell would make it (a quoted one would otherwise become a folder named ``~``).
    """
    data = read_yaml(path) if path is not None else {}
    if saved:
        data = without_unread_settings(data, str(path), overrides, values)
    return config_from_settings(data, None if path is None else str(path), overrides, values)


def config_from_settings(data: dict[str, Any], source: str | None,
                         overrides: Sequence[str] = (),
                         values: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """:func:`load_config` of the settings ``data`` (a nested dict, as a config file holds
    them), which its messages call ``source`` (a file's path, ``"checkpoint RUN/checkpoint.pt's
    config"``; ``None``: the defaults, ``data`` empty)."""
    given = apply_overrides(data, overrides, values)
    try:
        config = config_from_dict(ExperimentConfig, _inherit_grid_samplers(given))
    except UnknownKeys as err:
        # "unknown config key(s) bogus" left the user to find which of the file (a run's
        # hand-edited config.yaml, say) and the --set overrides held it.
        in_data = any(_source_holds_key(data, key) for key in err.keys)
        setting = [text for text in overrides if any(
            _source_holds_key(_override_as_dict(text), key) for key in err.keys)]
        sources = [str(source)] * in_data + [f"--set {text}" for text in setting]
        if not sources:  # a withdrawn setting, named as such, or a key of the command's own
            raise
        raise UnknownKeys(f"{' and '.join(sources)}: {err}", err.keys, sources=sources) from err
    except WrongType as err:
        # "train.lr must be a number, got 'fast'" left the user to find which of the file and
        # the --set overrides gave it; the value refused is that of the last one to set it.
        setter = _setter(err.key, data, source, overrides, values)
        if setter is None:
            raise
        raise WrongType(f"{setter}: {err}", key=err.key) from err
    learned = config.recovery.learned
    prior = None if learned.prior is None else expand_home(learned.prior)
    return dataclasses.replace(
        config, out_dir=expand_home(config.out_dir),
        data=dataclasses.replace(config.data, path=expand_home(config.data.path)),
        recovery=dataclasses.replace(config.recovery,
                                     learned=dataclasses.replace(learned, prior=prior)))


def trainer_settings(config: ExperimentConfig | dict[str, Any] | None, owner: str
                     ) -> dict[str, Any]:
    """The plain settings a trainer (``owner``) stores in its checkpoints for ``config``, which
    is an :class:`ExperimentConfig` (stored as :func:`config_to_dict` makes it), a dict of its
    settings, as a config file holds them (stored as given), or ``None`` (none).

    A dict is checked as ``stgconv`` checks a config file (:func:`config_from_settings`): it
    was stored unchecked, and a resume or ``load_model`` of the checkpoint refused the keys
    it did not know only then, as a config "written by a newer version?", or the values
    the config check would have refused.

    Raises:
        ValueError: ``config`` of another type, or settings a config file could not hold
            (unknown keys, values the config check refuses), naming ``owner``.
    """
    if config is None:
        return {}
    if isinstance(config, ExperimentConfig):
        return config_to_dict(config)
    source = f"{owner}(config=...)"
    if not isinstance(config, dict):
        raise ValueError(f"{source} must be an ExperimentConfig or a dict of its settings "
                         f"(stgconv.config.config_to_dict(...)), got {type(config).__name__}")
    try:
        config_from_settings(config, source)
    except (UnknownKeys, WrongType):
        raise  # each names the source itself
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err
    return config


def _setter(key: str, data: Any, source: str | None, overrides: Sequence[str],
            values: Mapping[str, Any] | None) -> str | None:
    """What gave dotted ``key`` (as errors name it) the value a config was built with, as
    :func:`config_from_settings` takes them: the last ``--set`` override holding it, else
    ``source`` where ``data`` holds it; None where ``values`` (a command's own options, named
    by the command) or none of them did."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", key)
    if any(dotted == name or dotted.startswith(f"{name}.") for name in values or {}):
        return None
    for text in reversed(overrides):
        if _source_holds_key(_override_as_dict(text), key):
            return f"--set {text}"
    return source if source is not None and _source_holds_key(data, key) else None


def _holds_key(data: Any, key: str) -> bool:
    """Whether nested ``data`` holds the dotted ``key`` (``train.lrr``, a list's entry by its
    index: ``multigrid.grids.1.bogus``; a key YAML read as a number may hold a dot itself, as
    ``train.0.001``)."""
    entries = (enumerate(data) if isinstance(data, list) else
               data.items() if isinstance(data, dict) else [])
    for name, value in entries:
        if not key.startswith(str(name)):
            continue
        rest = key[len(str(name)):]
        if rest == "" or rest.startswith(".") and _holds_key(value, rest[1:]):
            return True
    return False


def _override_as_dict(override: str) -> dict[str, Any]:
    """``"train.lr=0.1"`` as ``{"train": {"lr": 0.1}}``."""
    path, value = parse_override(override)
    # multigrid.grids[1].size as multigrid.grids.1.size, the form _source_holds_key looks for.
    for name in reversed([step for part in path for step in _indexed(part)]):
        value = {name: value}
    return value


def _source_holds_key(data: Any, key: str) -> bool:
    """:func:`_holds_key` for ``key`` as an error names it (``multigrid.grids[1].bogus``)."""
    return _holds_key(data, re.sub(r"\[(\d+)\]", r".\1", key))


def without_unread_settings(data: Any, source: str, overrides: Sequence[str] = (),
                            values: Mapping[str, Any] | None = None) -> Any:
    """``data``, a config that a run saved (its ``config.yaml``, its checkpoint's), with each
    setting that the run never read (:class:`UnreadSetting`) reset to its default and each
    withdrawn one that no training read (:data:`WITHDRAWN_SETTINGS`) left out, named in a
    warning that calls ``data`` ``source``: an earlier stgconv accepted them, and the run,
    trained without them, resumes and is used without them. Other problems are left for
    the config's own load to name. Looked for with ``overrides`` and ``values`` (as
    :func:`apply_overrides` takes them) applied, which ``data`` is returned without: an error
    of ``data`` that they fix hid its unread settings, which then stopped the resume too; one
    that they set is theirs, and refused."""
    try:
        # Refused here, where the loop below would take it for a problem the config's own load
        # names: a checkpoint's lists shared inside one another (pickle keeps them shared, 1.5
        # kB for 10^9 values) took that load minutes to write into its message, or all memory.
        data = _deep_copy(data)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    ignored: list[str] = []
    while isinstance(data, dict):
        try:
            given = apply_overrides(data, overrides, values)
            config_from_dict(ExperimentConfig, _inherit_grid_samplers(given))
            break
        except UnreadSetting as err:
            if err.key in ignored:
                raise
            ignored.append(err.key)
            data = apply_overrides(data, [], {err.key: err.default})
        except WithdrawnSetting as err:
            if err.key in ignored or not err.unread_by_training:
                raise
            ignored.append(err.key)
            data = _without_key(data, err.key)
        except (TypeError, ValueError):
            break
    if ignored:
        warnings.warn(f"{source} sets {', '.join(ignored)}, which its training never read (an "
                      "earlier stgconv accepted them): ignored", stacklevel=3)
    return data


def _without_key(data: Any, key: str) -> Any:
    """A copy of nested ``data`` without the dotted ``key`` (``data`` itself where it does not
    hold it: an override set it)."""
    if not isinstance(data, dict):
        return data
    head, _, rest = key.partition(".")
    if not rest:
        return {name: value for name, value in data.items() if name != head}
    return {**data, head: _without_key(data[head], rest)} if head in data else data


def expand_home(path: str) -> str:
    """``path`` with a leading ``~`` (or ``~user``) made the home folder; others as given."""
    return os.path.expanduser(path) if path.startswith("~") else path


def _inherit_grid_samplers(data: dict[str, Any]) -> dict[str, Any]:
    multigrid, shared = data.get("multigrid"), data.get("sampler", {})
    if not isinstance(multigrid, dict) or not isinstance(multigrid.get("grids"), list):
        return data  # nothing to inherit, or malformed: config_from_dict names the problem
    if not isinstance(shared, dict):
        return data
    grids = [{**grid, "sampler": _grid_sampler(shared, grid["sampler"])}
             if isinstance(grid, dict) and isinstance(grid.get("sampler"), dict) else grid
             for grid in multigrid["grids"]]
    # Last, so that a wrong key of the shared section is named there, where it was written,
    # not as the key of the first grid that inherited it (as when the file's multigrid section
    # came before its sampler section).
    shared_first = {key: value for key, value in data.items() if key != "multigrid"}
    return {**shared_first, "multigrid": {**multigrid, "grids": grids}}


def _grid_sampler(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A grid's sampler section ``own`` over the shared one, of whose keys it takes only those
    its kind reads: an HMC grid beside Langevin grids took the shared ``precision`` set for
    them, and was refused for a multigrid.grids[i].sampler.precision nobody had written."""
    kind = own.get("kind", shared.get("kind", SamplerConfig.kind))
    unread = (() if kind == "langevin" else LANGEVIN_ONLY) + (() if kind == "hmc" else HMC_ONLY)
    return {**{key: value for key, value in shared.items() if key not in unread}, **own}


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write ``config`` as YAML that :func:`load_config` reads back to the same config."""
    atomic_write_text(path, config_yaml(config))


def config_yaml(config: ExperimentConfig) -> str:
    """``config`` as the YAML text :func:`save_config` writes, every key with its value."""
    return yaml.dump(_own_grid_samplers(config_to_dict(config)), Dumper=_Dumper, sort_keys=False)


def _own_grid_samplers(data: dict[str, Any]) -> dict[str, Any]:
    """Each grid's ``sampler`` reduced to the keys where it differs from the shared section
    (the inverse of :func:`_inherit_grid_samplers`): a grid saved whole would pin the shared
    values it inherited, and a resumed run's ``--set sampler.step_size=...`` would not reach it."""
    multigrid, shared = data.get("multigrid"), data["sampler"]
    if multigrid is None:
        return data
    grids = [{**grid, "sampler": {key: value for key, value in grid["sampler"].items()
                                  if shared.get(key) != value}}
             if grid["sampler"] is not None else grid for grid in multigrid["grids"]]
    return {**data, "multigrid": {**multigrid, "grids": grids}}


def resolve_device(name: str) -> torch.device:
    """The device an ``ExperimentConfig.device`` names: ``"auto"`` picks CUDA when available;
    else ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    refusal = f"device {name!r} is not a device: use cpu, cuda, cuda:N or auto"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        # torch's message lists every device type it was built for, or (device=None) the
        # argument types torch.device takes.
        raise ValueError(refusal) from err
    # torch names more devices than the library runs on: meta, mps, xla ... (and cpu:0) failed
    # later, as a traceback or as a checkpoint "damaged" by the device it was loaded onto.
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index is not None):
        raise ValueError(refusal)
    if device.type == "cuda" and not torch.cuda.is_available():
        # Not "(by --device ...)": a Python caller's map_location or device= comes here too.
        raise ValueError(f"device {name!r} requested but CUDA is not available on this "
                         "machine: use cpu or auto (--device cpu, or device: cpu in a config)")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(f"device {name!r} requested but this machine has {count} CUDA "
                             f"device(s): cuda:0 .. cuda:{count - 1}")
    return device
