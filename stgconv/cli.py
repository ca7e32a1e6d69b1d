"""The ``stgconv`` command: ``stgconv <task> ...``; every task is also in :mod:`stgconv.tasks`,
every evaluation in :mod:`stgconv.evaluation`."""

from __future__ import annotations

import argparse
import copy
import io
import math
import os
import re
import shlex
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Sequence, get_args

import torch

from stgconv import tasks
from stgconv.checkpoint import FILENAME, CheckpointError, load_checkpoint, unreadable_config
from stgconv.checks import FLOAT32_MAX, check_output, check_seed
from stgconv.config import (
    QUICK_RECOVERY_CONFIG,
    RESUMED_MODEL_ADVICE,
    ExperimentConfig,
    ModelOfOtherData,
    UnknownKeys,
    apply_overrides,
    check_float32_setting,
    config_from_settings,
    config_to_dict,
    config_yaml,
    expand_home,
    load_config,
    parse_override,
    read_yaml,
    resolve_device,
    without_unread_settings,
)
from stgconv.console import tell
from stgconv.data.voxel import cache_up_axis
from stgconv.distributed import PeerFailedError, launched_rank, launched_world_size
from stgconv.evaluation import classification, ood, video_recovery, voxel
from stgconv.io.atomic import WriteError
from stgconv.io.mesh import MESH_SUFFIXES, MissingLibraryError
from stgconv.io.tensorboard import check_log_dir
from stgconv.io.voxel import VOXEL_SUFFIXES
from stgconv.tasks.fill_prior import DEFAULT_MASKS
from stgconv.tasks.recover_video import RECOVER_FILES
from stgconv.tasks.shortrun import RECONSTRUCT_FILES
from stgconv.tasks.train import RUN_OUTPUTS, Terminated
from stgconv.tasks.voxel import BATCH_SIZE, RECOVER_SHAPE_FILES, SUPER_RESOLVE_FILES, RecoveryInit
from stgconv.version import __version__

# As help shows QUICK_RECOVERY_CONFIG: the whole path of a deep install is longer than a help
# line, and argparse would cut it in two.
SHIPPED_RECOVERY_CONFIG = "the shipped stgconv/configs/recovery_quick.yaml"

# Errors a user can cause and fix (FloatingPointError: a diverging chain, loss or training run,
# including NonFiniteEnergyError and DivergenceError; OSError: a file system that refuses a read
# or a write, e.g. a full disk or a folder without write permission, its message naming the
# path; PeerFailedError: under torchrun, another process stopped, its own error printed by it;
# MissingLibraryError: open3d cannot load, for want of a system library its message names);
# anything else is a bug and keeps its traceback. They exit 2, but for WriteError, an output
# that failed part-way after the checks up front (a disk filled meanwhile), which exits 1.
USER_ERRORS = (ValueError, OSError, CheckpointError, FloatingPointError, PeerFailedError,
               MissingLibraryError)


RECOVERY_INITS = list(get_args(RecoveryInit))
SEED_HELP = "seed of every random choice (noise, chain starts, subsets)"
TENSORBOARD_HELP = ("also log the scores and the comparison pictures into TensorBoard here "
                    "(tensorboard --logdir DIR)")
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (a GPU when there is one)"
# --up-axis, as datasets/voxel/prepare.py's: ShapeNet and most .obj meshes are y-up (1), and
# read z-up they were voxelized lying on their side.
UP_AXES = ("0=x 1=y 2=z (ModelNet: 2; ShapeNet: 1); default: the model's data.up_axis, as it "
           "saw a folder of meshes or the cache it was trained on (2 for one trained on grids)")

# The smallest value of each count option, checked before any work so that a refusal names the
# option typed rather than the library parameter it is passed as (--steps is n_steps, --num is
# n_samples, ...). synthesize --steps may be 0: a cooperative model's generator alone; a path
# (--points) has its two ends; a --factor of 1 leaves nothing to super-resolve.
LEAST_COUNT = {"num": 1, "steps": 1, "size": 1, "frames": 1, "iterations": 1, "points": 2,
               "folds": 2, "per_class": 1, "max_shapes": 1, "batch_size": 1, "factor": 2}


class DefaultsFormatter(argparse.HelpFormatter):
    """Every optional option's help ends with what happens when it is left out, unless its text
    already says (``default``); flags read ``off`` (a flag left out is not given, whatever the
    value it stores: ``--no-memory``'s default True read "on"), unset options ``not set``. An
    option without a help text still shows its default (argparse prints nothing for it)."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and action.option_strings:
            action = copy.copy(action)
            action.help = self._get_help_string(action)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or re.search(r"\bdefault\b", text)):  # "defaults" says nothing of its own
            return text
        if action.nargs == 0:
            shown = "off"
        elif action.default is None or action.default == []:
            shown = "not set"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})".strip()


def _parser() -> argparse.ArgumentParser:
    # No abbreviated options (--prin for --print-config): a script relying on one breaks, or
    # means another option, once a later version adds an option of the same start.
    parser = argparse.ArgumentParser(
        prog="stgconv", description="Energy-based generative ConvNets: train, synthesize, recover.",
        formatter_class=DefaultsFormatter, allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "train", help="train a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML file overriding the defaults (none: defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.lr=0.001 (repeatable)")
    p.add_argument("--data", help="training data path (same as --set data.path=...; default: the "
                                  "config's)")
    p.add_argument("--out", help="run folder (same as --set out_dir=...; default: the config's)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's checkpoint (without a config file: "
                        "with the run's own config.yaml, or the settings the checkpoint holds "
                        "where that is gone; a config file must match it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the run folder (its files are removed first)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the config the run would train with (defaults, CONFIG, --set, "
                        "--data, --out; checked as train checks it) as YAML, and stop: no data is "
                        "read and nothing written (the channels and size the data decides stay "
                        "unset)")

    p = _command(sub, "synthesize", help="sample from a trained model")
    p.add_argument("checkpoint", help="checkpoint.pt or its run folder")
    p.add_argument("--out", help="output folder (default: <run folder>/synthesis)")
    p.add_argument("-n", "--num", type=int, default=16, help="number of samples")
    p.add_argument("--steps", type=int, help="sampler steps; for a cooperative model the "
                                             "revision steps after its generator, 0 for none "
                                             "(default: the config's sampler.task_steps, else "
                                             "the training chain length)")
    p.add_argument("--size", type=int, help="image/frame side (stationary models: texture, st)")
    p.add_argument("--frames", type=int, help="clip length (video models)")
    p.add_argument("--start", choices=["noise", "chains"], default="noise",
                   help="fresh chains from noise, or continue the checkpoint's stored chains, "
                        "one chain per sample, the first ones in the order it keeps them "
                        "(the first examples' persistent chains, the replay buffer's first "
                        "slots)")
    p.add_argument("--class", dest="classes", type=int, action="append", metavar="K",
                   help="classifier (JEM) models: sample class K's energy E(x, K) = -f(x)[K] "
                        "(+ (1 - s) logsumexp f(x) with a learnt density scale s) (repeatable: "
                        "-n samples per class, one row per class in the PNG, class-major in "
                        "the .npy)")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = _command(sub, "reconstruct", help="reconstruct an image through a short-run chain")
    p.add_argument("checkpoint", help="an image model (checkpoint.pt or its run folder)")
    p.add_argument("image", help="the image to reconstruct")
    p.add_argument("--out", help="output folder (default: <run folder>/reconstruction)")
    p.add_argument("--iterations", type=int, default=100,
                   help="optimisation steps on the chain's start")
    p.add_argument("--lr", type=float, default=0.05, help="their learning rate")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = _command(sub, "interpolate",
                 help="samples between two short-run chain starts, or between two latents "
                      "of a cooperative model's generator")
    p.add_argument("checkpoint", help="an image model or any cooperative model (checkpoint.pt "
                                      "or its run folder)")
    p.add_argument("--out", help="output folder (default: <run folder>/interpolation)")
    p.add_argument("--points", type=int, default=8, help="samples along the path")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = _command(sub, "recover", help="recover the masked pixels of a clip (learning from it)")
    _recovery_arguments(p)
    p.add_argument("--out", help="output folder (default: a --set out_dir=..., else "
                                 "outputs/recovery)")

    p = _command(sub, "fill-prior",
                 help="train the learned fill's prior on complete clips (for "
                      "recovery.learned.prior)")
    p.add_argument("videos", nargs="+", help="complete clips: video files or folders of frames, "
                                             "each cut into windows of --frames frames")
    p.add_argument("--out", dest="prior_path", required=True, metavar="FILE",
                   help="the prior file to write")
    p.add_argument("--iterations", type=int, default=3000, help="training iterations")
    p.add_argument("--frames", type=int, help="frames per window (default 70)")
    p.add_argument("--size", type=int, help="frames resized to SIZE x SIZE (default 150)")
    # "extend", not a default list extended: a second --masks replaced the first without a
    # word, and the windows were never hidden under the masks it named.
    p.add_argument("--masks", nargs="+", action="extend", metavar="MASK",
                   help="masks each window is hidden under, as --mask of `recover` reads them "
                        "(region:F or fixed_region:F with F < 1: a block F of the frame's "
                        "side; repeatable) (default: " + " ".join(DEFAULT_MASKS) + ")")
    p.add_argument("--config", help="YAML config whose recovery.learned section sets the fills, "
                                    "width and training schedule but its iterations (--iterations "
                                    "here), and whose data.start_frame and data.fps pick each "
                                    "clip's frames as recover picks them "
                                    f"(default: {SHIPPED_RECOVERY_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    # Not a default of its own: the config's seed (--set seed=N) was ignored without a word.
    p.add_argument("--seed", type=int, help=f"{SEED_HELP} (default: the config's seed)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")

    p = _command(sub, "super-resolve", help="super-resolve a low-resolution voxel grid or a mesh")
    p.add_argument("checkpoint",
                   help="a high-resolution voxel model (checkpoint.pt or its run folder)")
    p.add_argument("input", help="low-resolution grid(s) (.npy/.npz/.mat/.binvox/.h5; occupancy "
                                 "in [0, 1], side = model side / factor) or a mesh "
                                 "(.off/.obj/.ply/.stl, voxelized at the model's side, then "
                                 "block-averaged)")
    p.add_argument("--factor", type=int,
                   help="block size (default: the one the model was trained for, chains.factor; "
                        "4, 16^3 -> 64^3, for a model not trained to super-resolve)")
    p.add_argument("--out", help="output folder (default: <run folder>/super_resolution)")
    p.add_argument("--soft", action="store_true",
                   help="write the chain's occupancy in [0, 1] instead of the binary shape with "
                        "each block's count of occupied voxels")
    p.add_argument("--up-axis", type=int, choices=(0, 1, 2),
                   help=f"the mesh's up axis, {UP_AXES}; a mesh INPUT only (a voxel file is "
                        "read as stored, up = its last axis)")
    _voxel_chain_arguments(p)

    p = _command(sub, "recover-shape",
                 help="fill the unobserved voxels of a shape with a trained voxel model")
    p.add_argument("checkpoint", help="a voxel model (checkpoint.pt or its run folder)")
    p.add_argument("input", help="grid(s) (.npy/.npz/.mat/.binvox/.h5; occupancy in [0, 1] "
                                 "everywhere, the unobserved voxels' ignored; side up to the "
                                 "model's)")
    p.add_argument("--known", required=True,
                   help="voxel file of the same shape in {0, 1}: 1 = observed, 0 = to fill")
    p.add_argument("--init", choices=RECOVERY_INITS,
                   help="the chain's starting fill (default: the model's learned initializer "
                        "where it was trained with one, else nearest_known)")
    p.add_argument("--out", help="output folder (default: <run folder>/recovered_shapes)")
    _voxel_chain_arguments(p)

    p = _command(sub, "eval", help="evaluations that compare stgconv with classical baselines")
    evals = p.add_subparsers(dest="evaluation", required=True)
    p = _command(evals, "recovery", help="video recovery error, ours and the baselines'")
    _recovery_arguments(p)
    p.add_argument("--out", help="also write the recovered clips and metrics here")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the table as JSON")
    p.add_argument("--tensorboard", metavar="DIR", help=TENSORBOARD_HELP)

    p = _command(evals, "super-resolution",
                 help="voxel super-resolution of pooled shapes: ours, nearest, trilinear, "
                      "trilinear_binary")
    _voxel_eval_arguments(p)
    p.add_argument("--factor", type=int,
                   help="block size (default: the one the model was trained for, chains.factor; "
                        "4 for a model not trained to super-resolve)")
    p.add_argument("--soft", action="store_true",
                   help="score our chain's occupancy in [0, 1] instead of the binary shape")

    p = _command(evals, "recovery-3d",
                 help="recovery of randomly hidden voxels: ours and the "
                      "nearest-known / neighbour-majority fills")
    _voxel_eval_arguments(p)
    p.add_argument("--missing", type=float, default=0.7, help="fraction hidden (default 0.7)")
    p.add_argument("--init", choices=RECOVERY_INITS,
                   help="the chain's starting fill (default: the model's learned initializer "
                        "where it was trained with one, else nearest_known)")

    p = _command(evals, "classification",
                 help="cross-validated accuracy of a linear "
                      "classifier on the descriptor's features")
    p.add_argument("--checkpoint", required=True,
                   help="a voxel model (checkpoint.pt or run folder)")
    p.add_argument("--shapes", required=True, help=".npz with X (N, R, R, R) and labels y, or "
                   "a voxel cache (.h5, of which its train split)")
    p.add_argument("--test", help="fit on --shapes and measure on this file's shapes (same "
                                  "layout, a cache's test split; classes matched by name when "
                                  "both files name them, every class also among --shapes') "
                                  "instead of cross-validating")
    p.add_argument("--folds", type=int, default=5,
                   help="cross-validation folds (without --test)")
    p.add_argument("--per-class", type=int, help="a random subset of this many shapes per class")
    p.add_argument("--l2", type=float, default=1e-2, help="L2 weight of the logistic regression")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the table as JSON")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = _command(evals, "ood",
                 help="out-of-distribution detection by a classifier (JEM) model: AUROC "
                      "of its scores, accuracy and calibration on the inliers")
    p.add_argument("--checkpoint", required=True, help="a classifier model (checkpoint.pt or "
                                                       "its run folder)")
    p.add_argument("--inliers", required=True,
                   help=".npz with x_test uint8 (N, H, W) or (N, H, W, C), C 1 to 4, "
                        "resized to the model's input, and optionally labels y_test (then "
                        "accuracy and ECE)")
    p.add_argument("--outliers", help=".npz with x_test, as --inliers (left out: no AUROC, "
                                      "only the labelled inliers' accuracy and ECE)")
    p.add_argument("--json", dest="json_path", metavar="FILE",
                   help="write the table as JSON: {\"auroc\": {\"stgconv\" (recommended: "
                        "-E(x) + beta log q(x) + gamma log r(phi(x)), q and r the Gaussians "
                        "fitted to the data and to the network's features of it), "
                        "\"max_softmax\", \"max_logit\", \"energy\", \"reference\", "
                        "\"features\"} (null without --outliers), \"accuracy\", \"ece\" (null "
                        "without y_test), "
                        "\"reference_weight\", \"feature_weight\", ...}")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)

    p = _command(sub, "demo", help="the quick start: learn a real texture, then synthesize")
    p.add_argument("--out", help="output folder (default: a --set out_dir=..., else "
                                 "outputs/demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo's run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _recovery_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", required=True,
                   help="a video file or a folder of frames, read at the config's "
                        "data.channels (the shipped config's 3: in colour, a grey clip as three "
                        "equal channels; 1: in grey, by luma)")
    p.add_argument("--mask", required=True,
                   help="a mask file, 1 = missing (.mat: variable 'masks', or the file's one "
                        "3-D/4-D array, (H, W, T[, C]); .npy: (T, H, W) / (C, T, H, W)); one "
                        "frame's mask for every frame (an image, white = missing, fitted to "
                        "--size; a .npy (H, W)); or missing_frames:F, region:SIDE (a block "
                        "moving from frame to frame), fixed_region:SIDE (one in the same place "
                        "in every frame), salt_and_pepper:F (generated from the config's seed), "
                        "or several joined by + (fixed_region:20+missing_frames:0.3: a logo "
                        "and dropped frames)")
    p.add_argument("--frames", type=int,
                   help="N frames (default 70), the first ones unless the config's "
                        "data.start_frame or data.fps says otherwise")
    p.add_argument("--size", type=int, help="frames resized to SIZE x SIZE (default 150)")
    p.add_argument("--config", help=f"YAML config (default: {SHIPPED_RECOVERY_CONFIG})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _voxel_chain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="sampler steps (default: the config's "
                                             "sampler.task_steps, else the training chain length)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="shapes per chain batch")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _voxel_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a voxel model (checkpoint.pt or run folder)")
    p.add_argument("--shapes", required=True, help="ground truth: .npz with X (N, D, D, D) "
                   "{0, 1}, another voxel file, or a folder of voxel files or meshes (voxelized "
                   "at the model's side)")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="write the table as JSON")
    p.add_argument("--out", help="also write renders (comparison.png) and our grids here")
    p.add_argument("--tensorboard", metavar="DIR", help=TENSORBOARD_HELP)
    p.add_argument("--max-shapes", type=int, help="only the first N shapes")
    p.add_argument("--up-axis", type=int, choices=(0, 1, 2),
                   help=f"the meshes' up axis, {UP_AXES}; a folder of meshes only (voxel "
                        "files are read as stored, up = their last axis)")
    _voxel_chain_arguments(p)


def _out_dir_overrides(args: argparse.Namespace) -> list[object]:
    """The values of the ``--set out_dir=...`` overrides, in order (none for a command
    without --set)."""
    return [value for path, value in map(parse_override, getattr(args, "overrides", []))
            if path == ["out_dir"]]


def _train_config(args: argparse.Namespace) -> str | Path | None:
    """The file whose settings train starts from: the YAML file given, else for --resume the
    run's own config.yaml (the defaults would train it on other data), or its checkpoint
    where that is gone (:func:`_checkpoint_config`), else none (the defaults)."""
    if args.config is not None or not args.resume:
        return args.config
    # The folder as train will see it: --out, else a --set out_dir=..., else the default's
    # (the other overrides are the run's to check, not the defaults').
    given = _out_dir_overrides(args)
    folder = args.out if args.out is not None else given[-1] if given else load_config().out_dir
    if not isinstance(folder, str):  # --set out_dir=2024: the config's load names it
        return None
    out = Path(expand_home(folder))  # as train takes it: "--set out_dir=~/runs/a" is under home
    saved = out / "config.yaml"
    if args.out is None and not given and not out.exists():
        # Typed inside a run folder, `stgconv train --resume` looked for runs/experiment there
        # and said only "checkpoint not found: runs/experiment/checkpoint.pt". (A default folder
        # that is there, with checkpoint_previous.pt alone say, is the resume's to judge.)
        raise FileNotFoundError(f"--resume continues the run in a folder: name it with --out RUN "
                                f"(or give RUN/config.yaml); there is no {folder} here, the "
                                "default out_dir")
    checkpoint = out / FILENAME
    if saved.is_file() and checkpoint.is_file() and not read_yaml(saved):
        # Read as the defaults, it was refused as "holds another network ... resume with the
        # run's own config.yaml", the empty file named as the remedy.
        raise ValueError(f"{saved} is empty, where a run's config.yaml holds all its settings: "
                         f"remove it to resume from the settings {checkpoint} holds (written "
                         "back at its first save), or give the run's config file")
    if not saved.is_file() and checkpoint.is_file():
        # The checkpoint holds the run's resolved settings, as its config.yaml did; the
        # defaults would train the run on other data, or refuse it for another network.
        return checkpoint
    return saved if saved.is_file() else None


def _checkpoint_config(checkpoint: Path, args: argparse.Namespace, values: dict[str, str]
                       ) -> ExperimentConfig:
    """The config that ``train --resume`` continues the run of ``checkpoint`` with, its
    config.yaml gone: the settings the checkpoint holds, under ``--set`` and ``values``.
    The resume writes them back to config.yaml at its first save."""
    settings = load_checkpoint(checkpoint, map_location="meta").get("config")
    if not isinstance(settings, dict):  # a Trainer of a program's own module saves none
        raise FileNotFoundError(f"{checkpoint.parent / 'config.yaml'} not found, and {checkpoint} "
                                "holds no settings: give the run's config file")
    source = f"checkpoint {checkpoint}'s config"
    # Its out_dir is where the run was trained, not the folder --resume found it in.
    values = {**values, "out_dir": str(checkpoint.parent)}
    try:
        return config_from_settings(
            without_unread_settings(settings, source, args.overrides, values), source,
            args.overrides, values)
    except UnknownKeys as err:
        # A key of the checkpoint's own, as reading it for a model says it (a --set's alone is
        # the user's typo).
        if source not in err.sources:
            raise
        raise unreadable_config(checkpoint, err) from err


def _check_config_of_another_run(config: ExperimentConfig, args: argparse.Namespace,
                                 values: dict[str, str]) -> None:
    """Refuse ``train RUN/config.yaml --resume`` where RUN was moved or copied: the file's
    out_dir still names the folder it was trained in, so the run there was continued (a copy's
    original) or, gone, was looked for there, never the RUN the user named."""
    given = Path(args.config)
    folder = given.parent
    if given.name != "config.yaml" or not (folder / FILENAME).is_file():
        return
    if "out_dir" in values or _out_dir_overrides(args):
        return  # the folder to resume is given, and the config only compared with its own
    out = Path(config.out_dir)
    if out.resolve() != folder.resolve():
        # A relative out_dir is kept as typed, from the folder train ran in: from another, it
        # names another run though this one never moved.
        where, why = ((config.out_dir, "the run was moved or copied") if out.is_absolute() else
                      (f"{config.out_dir}, from this folder {out.resolve()}",
                       "the run was moved or copied, or trained from another folder"))
        raise ValueError(f"{given} is the config of the run in {folder}, but its out_dir is "
                         f"{where} ({why}), where --resume would look instead: stgconv train "
                         f"--out {shlex.quote(str(folder))} --resume")


def _check_resumed_config(config: ExperimentConfig, args: argparse.Namespace,
                          values: dict[str, str]) -> None:
    """Refuse ``train CONFIG --resume`` where CONFIG differs from the run's own config.yaml:
    the run's ``--data`` and ``--set`` values, kept only there, would be silently replaced."""
    saved = Path(config.out_dir) / "config.yaml"
    if not saved.is_file():
        return
    run, given = (_dotted(config_to_dict(load_config(path, args.overrides, values,
                                                     saved=path is saved)))
                  for path in (saved, args.config))
    # The run's config.yaml holds what it learnt from its data: the mean occupancy, and a
    # shape cache's up axis where CONFIG leaves the default.
    if given.get("data.mean") == "auto":
        del given["data.mean"]
        run.pop("data.mean", None)
    if (given.get("data.up_axis") == 2 != run.get("data.up_axis")
            and run.get("data.up_axis") == cache_up_axis(given["data.path"])):
        del given["data.up_axis"], run["data.up_axis"]
    differing = [key for key in sorted(run.keys() | given.keys()) if run.get(key) != given.get(key)
                 # Where the run lives, what it runs on and how far it trains may change
                 # between sessions; a net's channels and input size come from the data.
                 and key not in ("out_dir", "device", "train.n_iterations")
                 and not key.endswith(("model.in_channels", "model.image_size"))]
    if differing:
        shown = "; ".join(f"{key}: {run.get(key)!r} in the run, {given.get(key)!r} in CONFIG"
                          for key in differing[:4])
        more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
        # The folder named, not left to be found: without CONFIG, a folder that came from its
        # out_dir is no longer given, and `train --resume` looked in the default's.
        raise ValueError(f"{args.config} is not the run's config ({saved}): {shown}{more}; "
                         "resume without CONFIG to continue the run as it was configured "
                         f"(stgconv train --out {shlex.quote(config.out_dir)} --resume; "
                         "--set KEY=VALUE changes a setting)")


def _dotted(data: dict, prefix: str = "") -> dict[str, object]:
    """A nested config dict as ``{"train.lr": 0.01, "multigrid.grids.0.size": 4, ...}``."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            value = dict(enumerate(value))
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# The clip's length and side where --frames and --size are left out: the recovery experiments'.
CLIP_DEFAULTS = {"frames": 70, "size": 150}


def _recovery_config(args: argparse.Namespace) -> tuple[ExperimentConfig, int, int]:
    """The config of recover, eval recovery and fill-prior, and the clip's frames and side."""
    # "is not None": an empty --config or --device (an unset shell variable) was taken for
    # none given, the shipped config and the config's device used without a word.
    path = Path(args.config) if args.config is not None else QUICK_RECOVERY_CONFIG
    config = load_config(path, args.overrides,
                         {"device": args.device} if args.device is not None else None)
    # What the file and --set name, not the section's values: data.frames 16 is also the
    # default of a config that names none.
    named = apply_overrides(read_yaml(path), args.overrides).get("data") or {}
    given = {key: getattr(args, key) for key in CLIP_DEFAULTS}
    for key, default in CLIP_DEFAULTS.items():
        # These commands read the clip's shape from the flags: a config's own data.frames or
        # data.size (--set data.frames=8) gave way to the flag's default without a word.
        chosen = getattr(config.data, key)
        if given[key] is None and key in named and chosen != default:
            raise ValueError(f"data.{key} is {chosen}, but this command takes the clip's {key} "
                             f"from --{key}, not from the config: pass --{key} {chosen} (or "
                             f"--{key} {default}, its default)")
    return (config, *(default if given[key] is None else given[key]
                      for key, default in CLIP_DEFAULTS.items()))


def _default_out(args: argparse.Namespace) -> Path | None:
    """The folder the command writes into without --out (:data:`RUN_OUTPUTS`), or ``None``
    where --out is given or the command has none."""
    if getattr(args, "out", None) is not None or args.command not in RUN_OUTPUTS:
        return None
    run = Path(args.checkpoint)
    return (run if run.is_dir() else run.parent) / RUN_OUTPUTS[args.command]


def _out_for(args: argparse.Namespace) -> Path:
    """The command's output folder: --out, else its folder of the run's (checked)."""
    folder = _default_out(args)
    if folder is None:
        return Path(args.out)
    name = RUN_OUTPUTS[args.command]
    # A folder the user did not name, in a run folder perhaps from elsewhere: a file in it that
    # links to a file of the user's would have the output of its name written through it,
    # replacing what it leads to. A linked folder is followed, as train follows a linked tb/ (a
    # user's way to put outputs on another disk), and so is an --out named through a link.
    linked = ([p for p in folder.iterdir() if p.is_symlink() and not p.is_dir()]
              if folder.is_dir() else [])
    if linked:
        raise ValueError(f"{linked[0]} is a symbolic link to {os.readlink(linked[0])}: writing "
                         f"the outputs into the run's {name} folder would replace what it "
                         "leads to; remove the link, or give --out")
    return check_output(folder, "output folder")


def json_file(text: str) -> Path:
    """An argparse type for ``--json FILE`` in scripts built on the library (the examples):
    :func:`~stgconv.checks.check_output` as the options are read, so a path that cannot be
    written is argparse's one-line error (exit 2) before the work, not a traceback after it."""
    return _output_path(text, folder=False)


def output_folder(text: str) -> Path:
    """An argparse type for ``--out DIR`` in the examples, checked as :func:`json_file` checks
    a file: a file in the way was a ``FileExistsError`` traceback once the run had ended."""
    return _output_path(text, folder=True)


def seed_number(text: str) -> int:
    """An argparse type for a seed option of the examples and the bench scripts, checked as the
    commands check theirs (:func:`~stgconv.checks.check_seed`): a seed past 64 bits was
    torch's "Overflow when unpacking long long" traceback, a negative one wrapped round."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return check_seed(value, "a seed")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _output_path(text: str, *, folder: bool) -> Path:
    try:
        return check_output(text, "the folder" if folder else "the file", folder=folder)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# Each command's output options (argparse dests) as typed.
OUTPUT_OPTIONS = {"out": "--out", "prior_path": "--out", "json_path": "--json",
                  "tensorboard": "--tensorboard"}


# The files a command writes into its --out folder, where an input of the same name would be
# replaced (train's and synthesize's are refused otherwise or named per run). An eval's --out
# too: --shapes DIR/stgconv.npy --out DIR, or a --mask DIR/recovered.npy, was written over.
FOLDER_OUTPUTS = {"recover-shape": RECOVER_SHAPE_FILES, "super-resolve": SUPER_RESOLVE_FILES,
                  "reconstruct": RECONSTRUCT_FILES,
                  "recover": RECOVER_FILES, "eval recovery": RECOVER_FILES,
                  "eval super-resolution": voxel.EVAL_FILES, "eval recovery-3d": voxel.EVAL_FILES}

# The inputs (argparse dests) that may be a folder read for its every file of these suffixes:
# an --out that is that folder gets files the next run reads as inputs (--shapes DIR --out
# DIR: our stgconv.npy became shapes, more of them each run). A --video folder is read for its
# frame images, of which recover writes none.
FOLDER_INPUTS = {"shapes": VOXEL_SUFFIXES + MESH_SUFFIXES}


def _check_outputs_spare_inputs(args: argparse.Namespace) -> None:
    """Refuse an output path that is one of the command's input files, or an --out folder (or,
    without --out, the run's folder the command writes into) where the command writes a file
    of an input's name (and, for a run folder given as the checkpoint, its checkpoint or
    config): it would be replaced once the work is done, and the input lost. Refuse too an
    --out that is an input folder whose reader would take one of the files written there for
    an input (:data:`FOLDER_INPUTS`)."""
    inputs = [value for dest, given in vars(args).items() if dest not in OUTPUT_OPTIONS
              for value in (given if isinstance(given, list) else [given])
              # os.path.isfile, not Path.is_file: a text longer than a file's name may be (a
              # --set model.layers=...) names no file, where "File name too long" was the error.
              if isinstance(value, str) and os.path.isfile(value)]
    run = getattr(args, "checkpoint", None)
    for name in (FILENAME, "config.yaml"):  # a run folder: the files read
        if run is not None and (Path(run) / name).is_file():
            inputs.append(str(Path(run) / name))
    outputs = [(option, Path(out)) for dest, option in OUTPUT_OPTIONS.items()
               if (out := getattr(args, dest, None)) is not None]
    outputs += [("--out", path) for path in _folder_outputs(args)]
    # Without --out, the run's own output folder: recover-shape RUN RUN/recovered_shapes/
    # recovered.npy replaced the shape it read.
    if (folder := _default_out(args)) is not None:
        outputs += [("the output (no --out given)", folder / name)
                    for name in FOLDER_OUTPUTS.get(args.command, ())]
    for option, out in outputs:
        if not out.exists():
            continue
        for path in inputs:
            if out.samefile(path):
                raise ValueError(f"{option} {out} is the input {path}: writing it would replace "
                                 "it; write elsewhere")
    for dest, suffixes in FOLDER_INPUTS.items():
        folder = getattr(args, dest, None)
        read = [path for path in _folder_outputs(args) if path.suffix.lower() in suffixes]
        if (folder is not None and read and os.path.isdir(folder) and os.path.isdir(args.out)
                and os.path.samefile(args.out, folder)):
            raise ValueError(f"--out {args.out} is the --{dest} folder {folder}: the "
                             f"{read[0].name} written there would be read as one of its {dest} "
                             "by the next run; write elsewhere")


def _folder_outputs(args: argparse.Namespace) -> list[Path]:
    """The files the command writes into its --out folder (none without --out)."""
    command = " ".join(filter(None, (args.command, getattr(args, "evaluation", None))))
    folder = getattr(args, "out", None)
    return [] if folder is None else [Path(folder) / name
                                      for name in FOLDER_OUTPUTS.get(command, ())]


def _check_outputs_apart(args: argparse.Namespace) -> None:
    """Refuse a folder output (--out, --tensorboard) at or under the --json file's path: each
    passed its own check, and the command wrote the folder, then failed on the JSON file only
    after all its work, the folder's files left behind. Refuse too a --json that is one of the
    files written into --out: one of the two outputs replaced the other without a word. Paths
    compared with their links resolved: a --json through a link to the --out folder is in it."""
    # os.path.realpath, not Path.resolve: a link loop is a RuntimeError there.
    outputs = {dest: Path(os.path.realpath(value)) for dest in OUTPUT_OPTIONS
               if (value := getattr(args, dest, None)) is not None}
    table = outputs.pop("json_path", None)
    if table is None:
        return
    for path in _folder_outputs(args):
        if Path(os.path.realpath(path)) == table:
            raise ValueError(f"--json {args.json_path} is the {path.name} that the command "
                             f"writes into --out {args.out}: one would replace the other; give "
                             "the JSON file another path")
    for dest, folder in outputs.items():
        if folder == table or table in folder.parents:
            where = "is" if folder == table else "lies under"
            raise ValueError(f"{OUTPUT_OPTIONS[dest]} {getattr(args, dest)} {where} --json "
                             f"{args.json_path}: a folder cannot be where the JSON file goes; "
                             "give them different paths")


def _check_default_dtype() -> None:
    """``ValueError`` where the program calling :func:`main` set torch's default dtype to other
    than float32 (``torch.set_default_dtype(torch.float64)`` in a notebook): the commands make
    float32 data and models, as in a shell, and train, reconstruct, interpolate, recover and
    eval recovery failed on a mismatch between tensors they made themselves ("expected x of
    dtype torch.float64 (the network's)", advice their caller cannot follow)."""
    if torch.get_default_dtype() != torch.float32:
        raise ValueError(f"torch's default dtype is {torch.get_default_dtype()} (set by "
                         "torch.set_default_dtype), and the commands run in float32: call "
                         "torch.set_default_dtype(torch.float32) before stgconv.cli.main")


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse an out-of-range count, learning rate or seed, naming the option as typed."""
    for dest, least in LEAST_COUNT.items():
        value = getattr(args, dest, None)
        if dest == "steps" and args.command == "synthesize":
            least = 0
        if value is not None and value < least:
            raise ValueError(f"--{dest.replace('_', '-')} must be >= {least}, got {value}")
    lr = getattr(args, "lr", None)
    # Past float32's largest value Adam's step on the float32 chain start failed with a
    # traceback ("value cannot be converted to type float without overflow").
    if lr is not None and not (math.isfinite(lr) and 0 < lr <= FLOAT32_MAX):
        raise ValueError(f"--lr must be a finite number > 0 and at most {FLOAT32_MAX:.4g} "
                         f"(float32's largest), got {lr}")
    if lr is not None:  # 1e-50 is 0 in float32: the chain's start was optimised not at all
        check_float32_setting("--lr", lr)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed, "--seed")
    if getattr(args, "missing", None) is not None:  # eval recovery-3d's, else named 'missing'
        voxel.check_missing_fraction(args.missing, "--missing")


# The output folders of the commands that take a config's --set but write into --out, where
# it is left out: not argparse defaults, which replaced a --set out_dir=... without a word.
DEFAULT_OUT = {"demo": "outputs/demo", "recover": "outputs/recovery"}


def _out_or_out_dir(args: argparse.Namespace) -> str:
    """The folder of a :data:`DEFAULT_OUT` command: --out, else the last --set out_dir=...,
    else its default."""
    given = _out_dir_overrides(args)
    out = args.out if args.out is not None else given[-1] if given else DEFAULT_OUT[args.command]
    if not isinstance(out, str):  # --set out_dir=2024: as the config's load names it
        raise ValueError(f"out_dir must be a str, got {out!r}: quote it (out_dir='{out}')")
    return expand_home(out)


def _run(args: argparse.Namespace) -> Path | list[Path] | None:
    """Run the command; returns what it wrote (``None``: an eval that only printed)."""
    _check_default_dtype()
    _check_numbers(args)
    if args.command in DEFAULT_OUT:  # before the checks of --out below
        args.out = _out_or_out_dir(args)
    elif args.command != "train" and _out_dir_overrides(args):
        # fill-prior and eval recovery read a config but write only to their --out (--json ...):
        # a --set out_dir=... did nothing, without a word.
        raise ValueError(f"{args.command_parser.prog} does not read out_dir: remove --set "
                         "out_dir=..., and give --out for the outputs")
    # Before any work: a mistyped output path should not cost a training run.
    if getattr(args, "out", None) is not None:
        check_output(args.out, "--out")
    if getattr(args, "json_path", None) is not None:
        check_output(args.json_path, "--json", folder=False)
    if getattr(args, "tensorboard", None) is not None:
        check_log_dir(args.tensorboard, "--tensorboard")
    _check_outputs_spare_inputs(args)
    _check_outputs_apart(args)
    if args.command == "train":
        # Paths as typed: as YAML, "--out 2024" was a number and "--out 'run #2'" wrote to run.
        values = {key: value for key, value in (("data.path", args.data), ("out_dir", args.out),
                                                ("device", args.device)) if value is not None}
        # Without CONFIG, --resume reads the run's own config.yaml, or its checkpoint's.
        source = _train_config(args)
        try:
            config = (_checkpoint_config(source, args, values)
                      if args.config is None and args.resume and source is not None
                      and Path(source).name == FILENAME else
                      load_config(source, args.overrides, values,
                                  saved=args.resume and args.config is None))
        except ModelOfOtherData as err:
            if not args.resume:
                raise
            raise ValueError(f"{err.problem}: {RESUMED_MODEL_ADVICE}") from None
        if args.resume and args.config is not None:
            _check_config_of_another_run(config, args, values)
            _check_resumed_config(config, args, values)
        if args.print_config:
            # Under torchrun every process resolves the config; one prints it (each printing,
            # `torchrun ... --print-config > run.yaml` held every key twice).
            if launched_rank() == 0:
                print(config_yaml(config), end="")
            return None
        return tasks.train(config, resume=args.resume, overwrite=args.overwrite,
                           progress=not args.quiet)
    if args.command == "synthesize":
        return tasks.synthesize(
            args.checkpoint, _out_for(args), n_samples=args.num,
            n_steps=args.steps, size=args.size, frames=args.frames, start=args.start,
            classes=args.classes, seed=args.seed, device=args.device,
        )
    if args.command == "reconstruct":
        return tasks.reconstruct(
            args.checkpoint, args.image, _out_for(args),
            n_iterations=args.iterations, lr=args.lr, seed=args.seed, device=args.device,
        )
    if args.command == "interpolate":
        return tasks.interpolate(
            args.checkpoint, _out_for(args),
            n_points=args.points, seed=args.seed, device=args.device,
        )
    if args.command == "recover":
        config, frames, size = _recovery_config(args)
        report = tasks.recover_video(config, args.video, args.mask, frames=frames, size=size,
                                     out_dir=args.out, progress=not args.quiet)
        print(f"error on the missing pixels (0-255): {report['error']:.2f} "
              f"(starting fill: {report['init_error']:.2f})")
        return Path(args.out)
    if args.command == "fill-prior":
        config, frames, size = _recovery_config(args)
        return tasks.train_fill_prior(
            args.videos, args.prior_path, settings=config.recovery.learned,
            iterations=args.iterations, frames=frames, size=size,
            masks=list(DEFAULT_MASKS) if args.masks is None else args.masks,
            seed=config.seed if args.seed is None else args.seed,
            device=resolve_device(config.device), start_frame=config.data.start_frame,
            fps=config.data.fps, channels=config.data.channels,
        )
    if args.command == "super-resolve":
        return tasks.super_resolve(
            args.checkpoint, args.input, _out_for(args),
            factor=args.factor, n_steps=args.steps, binary=not args.soft,
            batch_size=args.batch_size, up_axis=args.up_axis, seed=args.seed,
            device=args.device,
        )
    if args.command == "recover-shape":
        return tasks.recover_shape(
            args.checkpoint, args.input, args.known,
            _out_for(args), init=args.init,
            n_steps=args.steps, batch_size=args.batch_size, seed=args.seed, device=args.device,
        )
    if args.command == "eval" and args.evaluation in ("super-resolution", "recovery-3d"):
        common = dict(n_steps=args.steps, batch_size=args.batch_size, max_shapes=args.max_shapes,
                      up_axis=args.up_axis, seed=args.seed, out_dir=args.out,
                      json_path=args.json_path, tensorboard=args.tensorboard, device=args.device)
        if args.evaluation == "super-resolution":
            table = voxel.eval_super_resolution(args.checkpoint, args.shapes, factor=args.factor,
                                                binary=not args.soft, **common)
        else:
            table = voxel.eval_recovery_3d(args.checkpoint, args.shapes,
                                           missing=args.missing, init=args.init, **common)
        print(voxel.format_voxel_table(table))
        return _written(args.json_path, args.out, args.tensorboard)
    if args.command == "eval" and args.evaluation == "classification":
        table = classification.eval_classification(
            args.checkpoint, args.shapes, test=args.test, folds=args.folds,
            per_class=args.per_class,
            l2=args.l2, seed=args.seed, json_path=args.json_path, device=args.device,
        )
        print(classification.format_accuracy_table(table))
        return _written(args.json_path)
    if args.command == "eval" and args.evaluation == "ood":
        table = ood.eval_ood(args.checkpoint, args.inliers, args.outliers,
                             json_path=args.json_path, device=args.device)
        print(ood.format_ood_table(table))
        return _written(args.json_path)
    if args.command == "eval":
        config, frames, size = _recovery_config(args)
        table = video_recovery.eval_recovery(
            config, args.video, args.mask, frames=frames, size=size,
            out_dir=args.out, json_path=args.json_path, tensorboard=args.tensorboard,
            progress=not args.quiet,
        )
        print(video_recovery.format_table(table))
        return _written(args.json_path, args.out, args.tensorboard)
    return tasks.demo(args.out, overrides=args.overrides, overwrite=args.overwrite,
                      progress=not args.quiet)


def _refuse_empty(args: argparse.Namespace) -> None:
    """Exit 2 on an empty value (an unset shell variable, say): as a path it is the current
    folder, so ``--out ''`` wrote there and ``--config ''`` was "not found: ."."""
    parser = args.command_parser
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if "" in (value if isinstance(value, list) else [value]):
            option = action.option_strings[0] if action.option_strings else action.metavar
            parser.error(f"{option or action.dest}: an empty value; give one")


def _written(*paths: str | None) -> list[Path]:
    """What an evaluation wrote: those of its output options that were given."""
    return [Path(path) for path in paths if path is not None]


def _command(commands: argparse._SubParsersAction, name: str, **kwargs: Any
             ) -> argparse.ArgumentParser:
    """A subcommand's parser, kept in its parsed arguments so that it refuses what it does not
    know itself ("stgconv train: error: ..."), as it refuses everything else; as the main
    parser, without abbreviated options."""
    parser = commands.add_parser(name, formatter_class=DefaultsFormatter, allow_abbrev=False,
                                 **kwargs)
    parser.set_defaults(command_parser=parser)
    return parser


# What the commands running in a program's threads share: held while one changes it.
_commands_lock = threading.Lock()
# The threads running a command, each with how its warnings are shown; while any runs,
# warnings.showwarning is _show_warning, over the function it replaced last (kept after: a
# program's catch_warnings block begun while a command ran puts _show_warning back at its end).
_warning_shown_by: dict[threading.Thread, Callable[[Warning | str], None]] = {}
_replaced_showwarning: list[Callable[..., None]] = [warnings.showwarning]
# The stdout streams that commands escape (_stdout_escaped), each with how many do now.
_escaping: dict[io.TextIOWrapper, int] = {}


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    show = _warning_shown_by.get(threading.current_thread())
    if show is None:  # a thread running no command: the program's own, shown as it would be
        _replaced_showwarning[0](message, category, filename, lineno, file, line)
    else:
        show(message)


@contextmanager
def _warnings_shown_by(show: Callable[[Warning | str], None]) -> Iterator[None]:
    """In the block, the warnings of this thread are shown by ``show``. One function for all
    threads running a command, installed by the first and put back by the last: each command's
    own, put back as ``warnings.catch_warnings`` does, left the first command's installed for
    good where two ran in a program's threads at once (the program's warnings named that
    command ever after), and named the other command in its warnings meanwhile."""
    thread = threading.current_thread()
    with _commands_lock:
        if warnings.showwarning is not _show_warning:
            _replaced_showwarning[0] = warnings.showwarning
            warnings.showwarning = _show_warning
        _warning_shown_by[thread] = show
    try:
        yield
    finally:
        with _commands_lock:
            del _warning_shown_by[thread]
            # Where the program installed its own meanwhile, it stays.
            if not _warning_shown_by and warnings.showwarning is _show_warning:
                warnings.showwarning = _replaced_showwarning[0]


def main(argv: Sequence[str] | None = None) -> int:
    with _stdout_escaped():
        try:
            code = _main(argv)
            if sys.stdout is not None:  # None where stdout was closed (>&-)
                # Here, not at exit, where a reader that has gone is reported by Python as an
                # "Exception ignored" traceback and exit status 120.
                sys.stdout.flush()
            return code
        except BrokenPipeError:
            # The reader of the output left (`stgconv eval ... | head -1`): end quietly, as a
            # program that SIGPIPE ends does (the recipe of Python's signal module
            # documentation); stdout goes to devnull so that Python's own flush at exit does
            # not fail again.
            with suppress(AttributeError, OSError):  # stdout closed (None) or not a file
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


@contextmanager
def _stdout_escaped() -> Iterator[None]:
    """In the block, what stdout's encoding cannot show (a path under PYTHONIOENCODING=ascii or
    a Latin-1 locale) is escaped, as Python does on stderr: it raised a UnicodeEncodeError after
    the work. Not where errors are handled otherwise (surrogateescape, under the C locale).
    Strict again when the last command writing to it ends: a program calling main (tests do)
    kept escaping its own output after; and where commands ran in two of its threads at once,
    the first to end made it strict while the other still wrote."""
    stdout = sys.stdout
    with _commands_lock:
        escaped = isinstance(stdout, io.TextIOWrapper) and (
            stdout in _escaping or stdout.errors == "strict")
        if escaped:
            if stdout not in _escaping:
                stdout.reconfigure(errors="backslashreplace")
            _escaping[stdout] = _escaping.get(stdout, 0) + 1
    try:
        yield
    finally:
        if escaped:
            with _commands_lock:
                _escaping[stdout] -= 1
                if not _escaping[stdout]:
                    del _escaping[stdout]
                    stdout.reconfigure(errors="strict")


def _main(argv: Sequence[str] | None) -> int:
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _refuse_empty(args)
    for dest, value in vars(args).items():  # a quoted "~/runs" means home, as unquoted
        if isinstance(value, str):
            setattr(args, dest, expand_home(value))
        elif isinstance(value, list):
            setattr(args, dest, [expand_home(v) if isinstance(v, str) else v for v in value])
    started = time.perf_counter()
    name = args.command_parser.prog  # "stgconv train", "stgconv eval ood": as argparse's errors

    def show_warning(message: Warning | str) -> None:
        # A warning is one line naming the command, as an error is, not Python's two lines
        # quoting the source line that raised it.
        tell(f"{name}: warning: {' '.join(str(message).split())}")

    # Under torchrun every process that fails prints its own line, so each names its process.
    # Variables torchrun did not set are train's to refuse (the others never read them), not
    # a traceback here.
    try:
        rank, size = launched_rank(), launched_world_size()
    except ValueError:
        rank, size = 0, 1
    where = f" (process {rank} of {size})" if size > 1 else ""

    def show_error(err: BaseException) -> None:
        # One line, whatever the library below wrote (some messages span several).
        tell(f"{name}: error{where}: {' '.join(str(err).split())}")

    try:
        # The filters a run changes are put back, and each run shows its warnings anew (where
        # Python's filter shows a repeat from one line once).
        with _warnings_shown_by(show_warning), warnings.catch_warnings():
            if size > 1 and args.command != "train":
                # Each process ran the whole command: the work N times over, N processes
                # writing the same outputs, and on CUDA all of them on one GPU.
                raise ValueError(f"{name} runs as one process, but torchrun started {size} "
                                 f"(WORLD_SIZE={size}): run it without torchrun (train alone "
                                 "is data-parallel)")
            out = _run(args)
    except BrokenPipeError:  # not the input's fault, nor the disk's: see main
        raise
    except WriteError as err:  # after the checks up front: not the input's fault
        show_error(err)
        return 1
    except USER_ERRORS as err:
        show_error(err)
        return 2
    except Terminated as stop:
        # The signal may have come while this process was cleaning up after its own error,
        # which the exit would otherwise hide.
        error = stop.__context__
        if isinstance(error, USER_ERRORS):
            show_error(error)
        elif error is not None and sys.stderr is not None:
            traceback.print_exception(error)
        tell(f"{name}: stopped by SIGTERM{where}: another training process failed, or the "
             "job was stopped")
        return stop.code
    except KeyboardInterrupt:
        # Every output is written whole (atomically) or not at all: nothing to clean up, and a
        # training run keeps its last checkpoint for --resume (which the other commands lack:
        # naming it after an interrupted synthesize sent users looking for it).
        resume = (" (--resume continues from the last checkpoint, where one was written)"
                  if args.command == "train" else "")
        tell(f"{name}: interrupted; outputs already written are whole{resume}")
        return 130
    # Under torchrun, one report for the whole run; none after a printed config, which stays
    # YAML that train reads back (stgconv train ... --print-config > mine.yaml).
    if rank == 0 and not getattr(args, "print_config", False):
        written = out if isinstance(out, list) else [] if out is None else [out]
        done = (f"wrote {', '.join(map(str, written))}" if written
                else "done (nothing written: no output option such as --json was given)")
        print(f"{name}: {done} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
