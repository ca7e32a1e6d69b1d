"""Checkpoints that load without executing code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data (dicts, lists,
numbers, strings): weights, optimizer state, RNG state, chain state and the resolved config.
It is read with ``torch.load(weights_only=True)``, whose unpickler refuses anything else, so a
file crafted to run code on load is rejected with :class:`CheckpointError`. :func:`load_model`
rebuilds the trained energy from the config stored beside its weights.
"""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import torch

from stgconv.build import resolve_device
from stgconv.config import ExperimentConfig, config_from_dict
from stgconv.energy import build_from_config
from stgconv.energy.base import ConvNetEnergy
from stgconv.io.atomic import atomic_write

FORMAT = "stgconv-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """The file is missing, not an stgconv checkpoint, or not plain data."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` (plain data and tensors only) to ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write(path, partial(torch.save, payload))


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder holding ``checkpoint.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without executing any code."""
    path = resolve_checkpoint_path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data "
            f"(a checkpoint must load without executing code): {err}"
        ) from err
    # A damaged file can fail anywhere in torch's reader (IndexError, KeyError, ...): whatever
    # the parse error, the answer is the same.
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an stgconv checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, expected {VERSION}")
    return state


def load_model(checkpoint: str | Path, *, device: str = "auto"
               ) -> tuple[ConvNetEnergy, ExperimentConfig, dict[str, Any]]:
    """The trained energy (eval mode, on ``device``), its config and the raw checkpoint.

    Raises:
        CheckpointError: not a checkpoint, or one that does not describe a model.
    """
    target = resolve_device(device)
    state = load_checkpoint(checkpoint, map_location=target)
    try:
        config = config_from_dict(ExperimentConfig, state["config"])
        energy = build_from_config(state["model_config"])
        energy.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} does not describe a model: {err}") from err
    return energy.to(target).eval(), config, state
