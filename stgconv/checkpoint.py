"""Checkpoints that load without executing code.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data (dicts, lists,
numbers, strings): weights, optimizer state, RNG state, chain state and the resolved config.
It is read with ``torch.load(weights_only=True)``, whose unpickler refuses anything else, so a
file crafted to run code on load is rejected with :class:`CheckpointError`, as is a damaged one
(every record's CRC-32 is checked first). :func:`load_model` rebuilds the trained energy from the
config stored beside its weights.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import os
import pickle
import shutil
import threading
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn

from stgconv.checks import SPECIAL_FILE, check_output, check_path
from stgconv.config import (
    DataConfig,
    ExperimentConfig,
    UnknownKeys,
    WithdrawnSetting,
    config_from_dict,
    resolve_device,
    spatial_dims,
    without_unread_settings,
)
from stgconv.energy import build_from_config, energy_builder
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.energy.compose import PRODUCT_KEY
from stgconv.energy.rbm import RBM
from stgconv.io.atomic import atomic_write

FORMAT = "stgconv-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"
# torch.save's files are zip archives (torch >= 1.6); anything else is not a checkpoint.
ZIP_MAGIC = b"PK\x03\x04"
MSDOS_DIRECTORY = 0x10  # the directory bit of a zip entry's external attributes

FILL_PRIOR_KIND = "fill_prior"
"""The ``kind`` of a learned fill's prior (:func:`stgconv.learned_fill.save_fill_prior`): a file
of this format that holds no model."""

M = TypeVar("M", bound=nn.Module)

# Held by the block of forked_global_rng. Re-entrant: a seeded block may rebuild a net inside.
_global_rng_owner = threading.RLock()


class CheckpointError(ValueError):
    """The file is missing, not an stgconv checkpoint, or not plain data."""


def save_checkpoint(state: dict[str, Any], path: str | Path, *, keep_previous: bool = False
                    ) -> Path:
    """Atomically write ``state`` (plain data and tensors only) to ``path``.

    ``keep_previous``: first copy the checkpoint already at ``path`` (if any) to
    :func:`previous_path`, so a model that turns out bad later still has the one before it.
    ``path`` holds a whole checkpoint at every moment, a kill included.

    Raises:
        ValueError: ``path`` is a folder (a path ending in a separator included): refused
            before ``state`` is serialized.
        WriteError: the file could not be written (nothing is left at ``path`` but the
            checkpoint that was there).
        CheckpointError: ``state`` holds other objects (a numpy number in a config, a
            ``Path``), which :func:`load_checkpoint` would refuse: refused here, before any file
            is touched, rather than found on resuming, when every checkpoint of a run would be
            unreadable.
    """
    # A run's folder failed with a bare IsADirectoryError once the whole state was serialized,
    # and "runs/mine/" was written as a file named mine: check_output's refusals of those, not
    # its probe of the folder, which at every save of a run turned a disk refusing new files
    # part-way into a ValueError (exit 2) where the write's own WriteError (exit 1) says it.
    if Path(path).is_dir() or (isinstance(path, str) and path.endswith(("/", os.sep))):
        check_output(path, "checkpoint", folder=False)
    path = Path(path)
    # Serialized in memory, then written by Python: torch's own writer reports a full disk as
    # an "enforce fail ... unexpected pos" RuntimeError, Python's as the system's OSError.
    buffer = io.BytesIO()
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        # What pickle cannot write at all (a lambda, a generator, an open file) failed as its
        # own AttributeError or TypeError ("Can't pickle local object"), naming no checkpoint.
        raise CheckpointError(f"refusing to write checkpoint {path}: it would hold objects "
                              f"other than tensors and plain data: {err}") from err
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"refusing to write checkpoint {path}: it would hold objects "
                              "other than tensors and plain data, which loading refuses: "
                              f"{_refused_object(err)}") from err
    if keep_previous and path.is_file():
        atomic_write(previous_path(path), partial(shutil.copyfile, path))
    return atomic_write(path, partial(_write_bytes, buffer))


def _write_bytes(buffer: io.BytesIO, tmp: str) -> None:
    with open(tmp, "wb") as file:
        file.write(buffer.getbuffer())


def _refused_object(err: pickle.UnpicklingError) -> str:
    """The line of torch's ``weights_only`` refusal naming the object, up to its advice (which
    is to allow-list the object: exactly how a crafted file would run its code); empty when
    the unpickler stopped on damaged bytes instead."""
    refused = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
    # Older torch puts its advice to retry with weights_only=False on the same line, before the
    # sentence naming the object.
    sentence = refused[refused.rfind(". ", 0, refused.find("GLOBAL")) + 1:].strip()
    return sentence.split(" Please use ")[0]


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``checkpoint.pt`` ->
    ``checkpoint_previous.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_previous{path.suffix}")


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a checkpoint file or a run folder holding ``checkpoint.pt``."""
    check_path(path, "checkpoint")
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if path.exists() and not path.is_dir() and not path.is_file():
        # /dev/null or a named pipe is there, so "not found" sent the user looking for it.
        raise CheckpointError(f"checkpoint {path} is {SPECIAL_FILE}: give a checkpoint.pt "
                              "file or the run folder holding it")
    if not path.is_file():
        # A checkpoint.pt removed by hand (a bad model) beside the one it replaced: the way on.
        raise CheckpointError(f"checkpoint not found: {path}{_way_back(path)}")
    return path


def load_checkpoint(path: str | Path, *,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without executing any code, its
    tensors onto ``map_location`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or such a
    ``torch.device``; ``"meta"``: shapes without data).

    Raises:
        ValueError: ``map_location`` is no such device, or one this machine lacks.
        CheckpointError: the file is missing, cannot be read, damaged, not a checkpoint, or
            not plain data.
    """
    # Checked first: torch's reader fails on a device it cannot restore onto as on damaged
    # bytes, so a whole checkpoint loaded onto "cuda" on a CPU machine was called damaged.
    if str(map_location) != "meta":
        map_location = resolve_device(str(map_location))
    path = resolve_checkpoint_path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(len(ZIP_MAGIC))
    except OSError as err:
        # A read the system failed (a disk's error, a file of no read permission) was its
        # reason alone, "[Errno 5] Input/output error", naming no file.
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err} (the "
                              "system's read failed, not the checkpoint's format)") from err
    if not head:
        raise _damaged(path, "the file is empty")
    if head != ZIP_MAGIC and path.suffix.lower() in (".yaml", ".yml"):
        # A run's config.yaml given for the run: "damaged, or another kind of file" sent the
        # user to look for what was wrong with it.
        raise CheckpointError(f"{path} is a config file (YAML), not a checkpoint: give the run "
                              f"folder, or the {FILENAME} in it")
    if head != ZIP_MAGIC:
        # Not what torch.save writes: torch's reader would fail on it with a parse error that
        # names a byte (KeyError 101, "Unsupported operand 150"), which tells a user nothing.
        raise _damaged(path, "it is not a file torch.save wrote (no zip archive header): "
                       "damaged, or another kind of file")
    _check_integrity(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # Only torch's line naming the refused object: the rest of its text suggests retrying
        # with weights_only=False, which is exactly how such a file would run its code.
        refused = _refused_object(err)
        if not refused:
            raise _damaged(path, "its data is damaged (torch's reader stopped on bytes it "
                           "cannot parse)") from err
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data "
            f"(a checkpoint must load without executing code): {refused}"
        ) from err
    except (MemoryError, torch.OutOfMemoryError) as err:
        # Not damage, as below: a busy GPU's whole checkpoint was called damaged, and the way
        # back offered (its checkpoint_previous.pt copied over it) would have replaced it.
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"cannot load checkpoint {path} onto {map_location}: out of "
                              f"memory ({reason}); free memory there, or load it onto another "
                              "device") from err
    # A damaged file can fail anywhere in torch's reader (IndexError, KeyError, ...): whatever
    # the parse error, the answer is the same.
    except Exception as err:  # noqa: BLE001
        reason = str(err) or type(err).__name__
        raise _damaged(path, f"the file is damaged or truncated ({reason})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an stgconv checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, "
                              f"expected {VERSION}")
    return state


def _check_integrity(path: Path) -> None:
    """``CheckpointError`` unless every record of the zip archive matches its CRC-32: torch's
    reader does not check them, so bytes changed inside a tensor would load as other weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            mismatched = archive.testzip()
            # torch's reader takes an entry whose MS-DOS attributes say "directory" for one and
            # reads its tensor from bytes it never wrote, while the checksums pass.
            as_directory = next((info.filename for info in archive.infolist()
                                 if info.external_attr & MSDOS_DIRECTORY), None)
            names = archive.namelist()
    # Changed bytes in the archive's directory fail zipfile anywhere: BadZipFile, an unknown
    # compression method (NotImplementedError), a name that does not decode (ValueError), ...
    except Exception as err:  # noqa: BLE001
        reason = str(err) or type(err).__name__
        raise _damaged(path, f"the file is damaged or truncated ({reason})") from err
    if mismatched is not None:
        raise _damaged(path, f"its data is damaged ({mismatched} does not match its checksum)")
    if not any(name.endswith("/data.pkl") for name in names):
        # A whole zip archive of another kind (an .npz, say), not a damaged checkpoint.
        raise CheckpointError(f"{path} is not a checkpoint: a zip archive without the data.pkl "
                              f"that torch.save writes (holding {', '.join(names[:3]) or 'nothing'}"
                              f"{', ...' if len(names) > 3 else ''})")
    if as_directory is not None:
        raise _damaged(path, f"its data is damaged ({as_directory} is marked as a folder)")


def _damaged(path: Path, reason: str) -> CheckpointError:
    """The error for a checkpoint file that cannot be read, saying where the one it replaced
    is kept when there is one (a run's way back)."""
    return CheckpointError(f"cannot read checkpoint {path}: {reason}{_way_back(path)}")


def _way_back(path: Path) -> str:
    """Where the checkpoint that ``path`` replaced is kept, if it is, as the end of an
    error's message; else ``""``."""
    backup = previous_path(path)
    if not backup.is_file():
        return ""
    return (f"; the checkpoint it replaced is kept as {backup}: copy it over {path.name} to go "
            "on from there")


def load_model(checkpoint: str | Path, *, device: str = "auto"
               ) -> tuple[ConvNetEnergy | ClassifierEnergy | RBM, ExperimentConfig, dict[str, Any]]:
    """The trained energy (eval mode, on ``device``; a classifier's for a JEM run, an RBM for
    a Trainer's checkpoint of one), its config (the defaults of
    :class:`~stgconv.config.ExperimentConfig` for a trainer given no ``config``) and the raw
    checkpoint.

    Raises:
        CheckpointError: not a checkpoint, one that does not describe a model, or a multi-grid
            checkpoint (one model per grid: :func:`load_multigrid`).
    """
    target = resolve_device(device)
    state = load_checkpoint(checkpoint, map_location=target)
    energy, config = model_from_state(state, checkpoint)
    return energy.to(target), config, state


def load_multigrid(checkpoint: str | Path, *, device: str = "auto"
                   ) -> tuple[list[ConvNetEnergy], ExperimentConfig, dict[str, Any]]:
    """A multi-grid run's energies (coarse to fine, eval mode, on ``device``), its config and
    the raw checkpoint, whose ``"base"`` holds the training examples at the base grid.

    Raises:
        CheckpointError: not a checkpoint, not a multi-grid one, or one without the base grid
            or a config with a ``multigrid`` section (a :class:`~stgconv.train.MultiGridTrainer`
            given no ``config``), without which its grids cannot be sampled.
    """
    target = resolve_device(device)
    state = load_checkpoint(checkpoint, map_location=target)
    energies, config = multigrid_from_state(state, checkpoint)
    return [energy.to(target) for energy in energies], config, state


def model_from_state(state: dict[str, Any], checkpoint: str | Path
                     ) -> tuple[ConvNetEnergy | ClassifierEnergy | RBM, ExperimentConfig]:
    """The energy (eval mode, on CPU) and config of a loaded single-model checkpoint."""
    _refuse_fill_prior(state, checkpoint)
    if is_multigrid(state):
        raise CheckpointError(f"{checkpoint} is a multi-grid checkpoint (one model per grid), "
                              "which this command does not take: stgconv synthesize samples it "
                              "(in Python: stgconv.checkpoint.load_multigrid)")
    energy, config = _energy(state, checkpoint), _config(state, checkpoint)
    sides = _net_sides(energy)
    if state.get("config") and None not in sides and config.data.size != sides[0] == sides[1]:
        # An edited config's: the chains were shaped by data.size and failed inside, as "the
        # data Gaussian makes samples of shape (1, 28, 28), asked for (2, 1, 24, 24)".
        raise CheckpointError(f"checkpoint {checkpoint}'s config has data.size "
                              f"{config.data.size}, but its net is tied to {sides[0]}x{sides[1]} "
                              f"inputs (its model_config): set data.size back to {sides[0]}")
    return energy, config


def _net_sides(energy: ConvNetEnergy | ClassifierEnergy | RBM) -> list[int | None]:
    """The height and width of the inputs ``energy`` is tied to (a clip's length before them
    is data.frames'), ``None`` where it takes any."""
    return (energy.config.get("input_size") or [energy.config.get("image_size")] * 2)[-2:]


def _refuse_fill_prior(state: dict[str, Any], checkpoint: str | Path) -> None:
    """``CheckpointError`` for a learned fill's prior, which was said to "not describe a
    model: 'model_config'" (the key it lacks)."""
    if state.get("kind") == FILL_PRIOR_KIND:
        raise CheckpointError(f"{checkpoint} is a learned fill's prior (stgconv fill-prior), not "
                              "a model's checkpoint: a video recovery starts from it "
                              "(--set recovery.learned.prior=FILE)")


def warn_of_no_config(checkpoint: str | Path, config: ExperimentConfig, trainer: str,
                      chain: str, *, stacklevel: int) -> None:
    """Warn that ``checkpoint`` holds no config (its ``trainer`` was given no ``config=``), so
    the ``chain`` a command runs (``"the chain synthesize runs"``) is the defaults' sampler of
    ``config``, which may not be the one the model learned with; ``stacklevel`` as
    :func:`warnings.warn`'s, counted from the caller."""
    sampler = config.sampler
    warnings.warn(f"{checkpoint} holds no config (a {trainer} given no config=), so {chain} is "
                  f"the defaults' ({sampler.n_steps} Langevin steps of size "
                  f"{sampler.step_size:g}), which may not be the one it learned with: give the "
                  "trainer its config (config=stgconv.config.config_to_dict(...)) to use its "
                  "own", RuntimeWarning, stacklevel=stacklevel + 1)


def with_net_inputs(energy: ConvNetEnergy | ClassifierEnergy | RBM, config: ExperimentConfig,
                    checkpoint: str | Path) -> ExperimentConfig:
    """The ``config`` of a loaded checkpoint's ``energy`` with what the data set in a run of
    ``stgconv train`` taken from the net where the config leaves it unset, as the defaults a
    Trainer given no config saves do: ``model.in_channels`` the net's own, and for a net tied to
    one square input side (a fully connected head) ``model.image_size`` and ``data.size`` that
    side. synthesize, reconstruct and interpolate shape their chains and images by them:
    ``None`` channels failed them with a ``TypeError``, and the defaults' side 64 failed a net of
    32x32 inputs with the net's shape error, naming no setting (and ``--size 32`` with "tied to
    64x64 inputs").

    Raises:
        ValueError: a net whose config names no input channels (an RBM's, of flat vectors), one
            of other inputs than the config's data (a video or voxel net under the defaults'
            images), or one tied to inputs that are not square.
    """
    if config.model.in_channels is not None:
        return config
    channels = energy.config.get("in_channels")
    if not isinstance(channels, int):
        raise ValueError(f"the {type(energy).__name__} of {checkpoint} names no channels of its "
                         "inputs (model.in_channels), by which this command shapes its chains: "
                         "sample it in Python")
    dims = energy.config.get("spatial_dims", 2)  # a classifier preset's: images
    if dims != spatial_dims(config.data):
        raise ValueError(f"the net of {checkpoint} takes {dims}-D inputs, but its config's data "
                         f"are {spatial_dims(config.data)}-D (data.kind {config.data.kind!r}: "
                         "the defaults, where a Trainer was given no config): give the Trainer "
                         "the run's config (config=stgconv.config.config_to_dict(...)) to "
                         "sample it with this command, or sample it in Python")
    model = dataclasses.replace(config.model, in_channels=channels)
    # The data's channels with them, which a config's model.in_channels must match.
    data = (config.data if config.data.kind == "voxels" else
            dataclasses.replace(config.data, channels=channels))
    sides = _net_sides(energy)
    if None not in sides:
        if len(set(sides)) != 1:
            raise ValueError(f"the net of {checkpoint} is tied to {sides[0]}x{sides[1]} "
                             "(height x width) inputs, which are not square (data.size): "
                             "sample it in Python")
        model = dataclasses.replace(model, image_size=sides[0])
        data = dataclasses.replace(data, size=sides[0])
    return dataclasses.replace(config, model=model, data=data)


def multigrid_from_state(state: dict[str, Any], checkpoint: str | Path
                         ) -> tuple[list[ConvNetEnergy], ExperimentConfig]:
    """The energies (coarse to fine, eval mode, on CPU) and config of a loaded multi-grid
    checkpoint."""
    _refuse_fill_prior(state, checkpoint)
    if not is_multigrid(state):
        raise CheckpointError(f"{checkpoint} is a single-model checkpoint; load it with "
                              "stgconv.checkpoint.load_model")
    config = _config(state, checkpoint)
    if "base" not in state:
        raise CheckpointError(f"checkpoint {checkpoint} holds grids but no base grid")
    if config.multigrid is None:
        raise CheckpointError(f"checkpoint {checkpoint} holds grids but its config has no "
                              "multigrid section (a MultiGridTrainer saves the config= it was "
                              "given)")
    # An edited file's: else grids that are no list failed as Python's TypeError, a count
    # other than its config's as the sampler's "1 energies for 2 grids", and a base grid of
    # NaN as the chains' NaN start, none of them naming the checkpoint.
    grids, base = state["grids"], state["base"]
    modelled = len(config.multigrid.grids)
    if not isinstance(grids, list) or len(grids) != modelled:
        held = (f"{len(grids)} grid{'' if len(grids) == 1 else 's'}" if isinstance(grids, list)
                else type(grids).__name__)
        raise CheckpointError(f"checkpoint {checkpoint} holds {held}, where its config models "
                              f"{modelled} (multigrid.grids): a list of one model per grid")
    if not (isinstance(base, Tensor) and base.is_floating_point()
            and bool(torch.isfinite(base).all())):
        got = (type(base).__name__ if not isinstance(base, Tensor) else
               base.dtype if not base.is_floating_point() else "NaN or infinite values")
        raise CheckpointError(f"checkpoint {checkpoint}'s base grid must be the training "
                              f"examples' finite float values there, got {got}")
    return [_energy(grid, checkpoint) for grid in grids], config


def is_multigrid(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds one model per grid (:class:`MultiGridTrainer`)."""
    return "grids" in state


def _config(state: dict[str, Any], checkpoint: str | Path) -> ExperimentConfig:
    try:
        data = without_unread_settings(state["config"], f"checkpoint {checkpoint}'s config")
        return config_from_dict(ExperimentConfig, _with_models_channels(data))
    except UnknownKeys as err:
        raise unreadable_config(checkpoint, err) from err
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} does not describe a model: {err}") from err


def _with_models_channels(settings: Any) -> Any:
    """A checkpoint's config ``settings`` with ``data.channels`` its ``model.in_channels``
    (1 or 3, images and videos) where the two differ. A Trainer saves the config its caller
    gives as given, and the net is built with its channels whatever the data section says:
    one that set model.in_channels 3 beside the default data.channels 1 was read as such, until
    the config check refused the pair, and its checkpoint as 'does not describe a model'.
    Not for a multigrid run, whose top-level model section builds no net: earlier runs saved
    its in_channels 1 (the default then) beside a colour run's data.channels 3."""
    # Not a dict: config_from_dict names what it is.
    if not isinstance(settings, dict) or settings.get("multigrid") is not None:
        return settings
    model, data = settings.get("model"), settings.get("data", {})
    channels = model.get("in_channels") if isinstance(model, dict) else None
    if (not isinstance(data, dict) or channels not in (1, 3) or data.get("kind") == "voxels"
            or data.get("channels", DataConfig.channels) == channels):
        return settings
    return {**settings, "data": {**data, "channels": channels}}


def unreadable_config(checkpoint: str | Path, err: UnknownKeys) -> CheckpointError:
    """The error for ``err``, keys of the config ``checkpoint`` holds that this stgconv lacks:
    a withdrawn setting as an earlier version's, other keys with the hint that a newer version
    wrote them."""
    if isinstance(err, WithdrawnSetting):
        return CheckpointError(f"checkpoint {checkpoint} cannot be read by this stgconv: {err}")
    return CheckpointError(f"checkpoint {checkpoint} holds a config this stgconv cannot read "
                           f"(written by a newer version?): {err}")


def rebuild(build: Callable[..., M], *args: Any) -> M:
    """``build(*args)``: a net whose weights a checkpoint's replace at once. Its modules draw
    their initial weights from a fork of torch's global generator: drawn from the generator
    itself, loading a model moved a library caller's random stream on (``torch.manual_seed(0)``,
    a load, and the caller's next draws differed), where a task seeded by its own seed leaves
    it (:func:`stgconv.build.seeded_weights`)."""
    with forked_global_rng():
        return build(*args)


@contextmanager
def forked_global_rng() -> Iterator[None]:
    """In the block, torch's global CPU generator may be seeded and drawn from; it is as it was
    afterwards. One block at a time in the process: the generator is process-wide, so two
    threads' blocks (two runs of a thread pool, a load beside a run) drew each other's weights
    and put back each other's state, and a run's initial weights were not its seed's alone.
    So the block should end once the modules are made: other threads' blocks wait for it
    (``stgconv fill-prior`` trains inside its own). A program's own draws from the global
    generator in other threads meanwhile are not kept out: random functions here take
    ``generator=`` for that."""
    with _global_rng_owner, torch.random.fork_rng(devices=[]):
        yield


def check_finite_weights(weights: object, checkpoint: str | Path) -> None:
    """``CheckpointError`` unless every floating-point tensor of ``weights`` (a ``state_dict``)
    is finite: a net of NaN weights gives NaN energies, which a sampler reports as a diverging
    chain ("try a smaller step size"), blaming settings that are not at fault. Training saves
    no such weights; an edited file or another program's can hold them."""
    bad = _not_finite(weights)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"checkpoint {checkpoint}: the weights {bad[0]}{more} hold NaN or "
                              "infinite values (a model that diverged, or an edited file): use "
                              "an earlier checkpoint, or train again")


def check_finite_chains(chains: object, checkpoint: str | Path, *,
                        advice: str = "use an earlier checkpoint") -> None:
    """``CheckpointError`` naming ``checkpoint`` and the stored item unless every
    floating-point tensor of ``chains`` (a checkpoint's ``"chains"`` entry: persistent chains'
    ``chains``, a replay buffer's ``samples``) is finite; ``advice`` says what to do instead.
    The sampler refused such chains as "x0 holds NaN or infinite values in chain 0 ...: chains
    must start finite", naming neither the file nor its stored chains. Training saves no such
    chains; an edited file or another program's can hold them."""
    bad = _not_finite(chains)
    if bad:
        raise CheckpointError(f"checkpoint {checkpoint}: its stored training chains "
                              f"(chains.{bad[0]}) hold NaN or infinite values (an edited file, "
                              f"or another program's): {advice}")


def damaged_fit(checkpoint: str | Path, key: str, err: ValueError) -> CheckpointError:
    """The error for the Gaussians a checkpoint keeps as ``key`` (a
    :meth:`~stgconv.mcmc.DataGaussian.state_dict`) that ``err`` refused: its own words named
    neither the checkpoint nor which fit."""
    return CheckpointError(f"{checkpoint}: its fitted Gaussians {key!r} are damaged: {err}")


def _not_finite(tensors: object) -> list[str]:
    """The names of the floating-point tensors of the dict ``tensors`` that hold NaN or
    infinite values (none where it is no dict: its loader names what it is)."""
    if not isinstance(tensors, dict):
        return []
    return [name for name, tensor in tensors.items()
            if isinstance(tensor, Tensor) and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())]


def load_weights(net: nn.Module, weights: dict[str, Tensor]) -> None:
    """Load ``weights`` (a ``state_dict``) into ``net``, rebuilt from its config, in the dtype
    they were saved in: a rebuilt net is float32, and loading alone copies into its parameters,
    so a float64 model came back as float32 without a word (refusing float64 inputs)."""
    saved = next((w.dtype for w in weights.values() if w.is_floating_point()), None)
    if saved is not None:
        net.to(saved)
    net.load_state_dict(weights)


def _energy(state: dict[str, Any], checkpoint: str | Path
            ) -> ConvNetEnergy | ClassifierEnergy | RBM:
    config = state.get("model_config")
    if config == {} or (isinstance(config, dict) and PRODUCT_KEY in config):
        # What a Trainer of the caller's own module (or a product of experts) saves: it was
        # built to a default ConvNet's arguments, and refused as missing three of them.
        raise CheckpointError(f"checkpoint {checkpoint} holds a model of the caller's own (no "
                              "config to rebuild it from): build the module again and resume "
                              "its Trainer from the checkpoint")
    if isinstance(config, dict):
        _refuse_unknown_model_keys(config, checkpoint)
    check_finite_weights(state.get("model"), checkpoint)
    try:
        energy = rebuild(build_from_config, state["model_config"])
        load_weights(energy, state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} does not describe a model: {err}") from err
    return energy.eval()


def _refuse_unknown_model_keys(config: dict[str, Any], checkpoint: str | Path) -> None:
    """``CheckpointError`` for a ``model_config`` key that this stgconv's net does not take,
    named with the hint its config's unknown keys get: it was "does not describe a model:
    ConvNetEnergy.__init__() got an unexpected keyword argument ...", naming no setting."""
    known = inspect.signature(energy_builder(config)).parameters
    unknown = sorted(set(map(str, config)) - set(known))
    if unknown:
        raise CheckpointError(f"checkpoint {checkpoint} holds a model this stgconv cannot build "
                              f"(written by a newer version?): unknown model_config key(s) "
                              f"{', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
