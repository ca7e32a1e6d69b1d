"""Checkpoints: plain data round-trips; a file that would run code on load, a damaged, empty or
foreign file is refused with :class:`CheckpointError`; ``load_model`` and ``load_multigrid``
rebuild the saved energies and each refuses the other's checkpoints.

Saving and resuming a whole training run (single or multi-grid) is in ``test_train.py``.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import struct
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import GRIDS, gen, make_multigrid_trainer, pattern_images

from stgconv.checkpoint import (
    VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    load_multigrid,
    load_weights,
    previous_path,
    save_checkpoint,
    with_net_inputs,
)
from stgconv.config import (
    DataConfig,
    ExperimentConfig,
    GridConfig,
    InitializerConfig,
    MultiGridConfig,
    config_to_dict,
)
from stgconv.energy import ConvNetEnergy, image_energy, voxel_energy
from stgconv.energy.rbm import RBM
from stgconv.initializer import Initializer, initializer_from_state
from stgconv.io.atomic import WriteError
from stgconv.learned_fill import FillNet, load_fill_prior, save_fill_prior
from stgconv.mcmc import DataStart, Langevin
from stgconv.train import Trainer


def tiny_energy(seed: int) -> ConvNetEnergy:
    torch.manual_seed(seed)
    return image_energy("texture", in_channels=1, layers=[[4, 3, 1]], reference_sigma=0.5)


def test_checkpoint_round_trip_plain_data(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0), "nested": {"n": 3, "s": "x", "l": [1.5, None]}}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["format"] == "stgconv-checkpoint"
    assert loaded["w"].dtype == state["w"].dtype and torch.equal(loaded["w"], state["w"])
    assert loaded["nested"] == state["nested"]
    save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "run")["nested"] == state["nested"]  # a run folder works


def test_a_checkpoints_tensors_load_where_map_location_puts_them(tmp_path: Path) -> None:
    """A GPU run's checkpoint reads onto the CPU (or the meta device, holding no data) as
    asked, not onto the device it was saved from."""
    path = save_checkpoint({"w": torch.arange(3.0)}, tmp_path / "c.pt")
    assert load_checkpoint(path)["w"].device == torch.device("cpu")
    loaded = load_checkpoint(path, map_location="meta")["w"]
    assert loaded.is_meta and loaded.shape == (3,)


class RunsCode:
    """Unpickling this calls ``Path.write_text(marker, ...)``: code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran on load"))


def test_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"format": "stgconv-checkpoint", "version": 1, "model": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load") as refusal:
        load_checkpoint(path)
    assert not marker.exists()
    # It names the object, without torch's advice on how to allow it (how it would run).
    assert "GLOBAL" in str(refusal.value) and "safe_globals" not in str(refusal.value)
    # The file is a real exploit: an unrestricted unpickler does run the payload.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran on load"


class CallsGetcwd:
    """Unpickling this calls ``os.getcwd``, harmless, from a module that torch blocks."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_a_global_of_a_blocked_module_is_refused_naming_it(tmp_path: Path) -> None:
    """torch words this refusal "Trying to load unsupported GLOBAL posix.getcwd whose module
    posix is blocked": no "Unsupported global" on its line, and it is no damage."""
    path = tmp_path / "blocked.pt"
    torch.save({"format": "stgconv-checkpoint", "version": 1, "x": CallsGetcwd()}, path)
    with pytest.raises(CheckpointError, match=rf"^refusing to load .*: .*GLOBAL "
                                              rf"{os.getcwd.__module__}\.getcwd"):
        load_checkpoint(path)


ADVICE = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` "
          "will likely succeed, but it can result in arbitrary code execution. Do it only if you "
          "got the file from a trusted source.")
REFUSAL = ("WeightsUnpickler error: Unsupported global: GLOBAL pathlib.PosixPath was not an "
           "allowed global by default. Please use `torch.serialization.add_safe_globals("
           "[PosixPath])` to allowlist this global if you trust this class/function.")


@pytest.mark.parametrize("message", [f"{ADVICE} {REFUSAL}", f"{ADVICE}\n\n\t{REFUSAL}"],
                         ids=["one line", "a line of its own"])
def test_the_refusal_names_the_object_without_torchs_advice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """Older torch wrote its advice to retry with weights_only=False and the refused object on
    one line (its message plus the unpickler's error); the refusal passed the advice on. Newer
    torch puts the object on a line of its own, named whole from its first word."""
    path = save_checkpoint({"x": torch.arange(3.0)}, tmp_path / "c.pt")

    def refusal_of_torch(*args, **kwargs):
        raise pickle.UnpicklingError(message)

    monkeypatch.setattr(torch, "load", refusal_of_torch)
    with pytest.raises(CheckpointError) as refusal:
        load_checkpoint(path)
    assert str(refusal.value).endswith(": WeightsUnpickler error: Unsupported global: GLOBAL "
                                       "pathlib.PosixPath was not an allowed global by default.")
    assert "weights_only" not in str(refusal.value)


def test_a_byte_changed_anywhere_loads_the_same_or_is_named(tmp_path: Path) -> None:
    """Every single-byte change of a small checkpoint: a CheckpointError naming the file, or
    (bytes no reader checks: a timestamp, padding) the same contents. A change in the archive's
    directory failed zipfile with NotImplementedError (a compression method) or a
    UnicodeDecodeError that named nothing."""
    whole = save_checkpoint({"x": torch.arange(3.0)}, tmp_path / "whole.pt").read_bytes()
    changed = tmp_path / "changed.pt"
    for offset in range(len(whole)):
        changed.write_bytes(whole[:offset] + bytes([whole[offset] ^ 0x96]) + whole[offset + 1:])
        try:
            state = load_checkpoint(changed)
        except CheckpointError as err:
            assert "changed.pt" in str(err), (offset, str(err))
        else:
            assert torch.equal(state["x"], torch.arange(3.0)), offset


def test_what_loading_would_refuse_is_refused_when_saving(tmp_path: Path) -> None:
    """A numpy number in a config saved, and then every checkpoint of the run, the kept
    previous one too, was refused on resuming; now the save is refused, the old file kept."""
    import threading

    import numpy as np

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"config": {"lr": 0.01}}, path)
    # The last two pickle cannot write at all: they failed as pickle's own AttributeError
    # ("Can't pickle local object") and TypeError, naming no checkpoint.
    for other, refused in ((np.float64(0.01), "GLOBAL"), (tmp_path, "GLOBAL"),
                           (np.zeros(2), "GLOBAL"), (lambda: 0.01, "local object"),
                           (threading.Lock(), "cannot pickle '_thread.lock' object")):
        with pytest.raises(CheckpointError, match=r"refusing to write checkpoint .*checkpoint"
                           rf".pt: it would hold objects other than tensors and plain data"
                           rf".*{refused}"):
            save_checkpoint({"config": {"lr": other}}, path, keep_previous=True)
    assert load_checkpoint(path)["config"] == {"lr": 0.01}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_an_unreadable_checkpoint_names_the_one_it_replaced(tmp_path: Path) -> None:
    """A damaged checkpoint.pt beside checkpoint_previous.pt: the error says how to go on
    (the README's advice); without a backup it says nothing of one."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"x": torch.zeros(2)}, path)
    save_checkpoint({"x": torch.ones(2)}, path, keep_previous=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: the file is damaged or truncated "
                       r".*; the checkpoint it replaced is kept as .*checkpoint_previous\.pt: "
                       r"copy it over checkpoint\.pt to go on from there$"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint_previous.pt").unlink()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert "replaced" not in str(info.value)


def resealed_with(checkpoint: Path, path: Path, pickled: bytes) -> Path:
    """``checkpoint`` with ``pickled`` over its pickled data after the protocol's two bytes,
    written to ``path`` as an archive whose checksums are made for them: torch's reader meets
    them."""
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(path, "w") as out:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith("data.pkl"):
                data = data[:2] + pickled + data[2 + len(pickled):]
            out.writestr(entry, data)
    return path


def test_unreadable_checkpoints(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="garbage.pt: it is not a file torch.save wrote"):
        load_checkpoint(garbage)
    # Damage inside a real checkpoint: cut short, or its pickled data overwritten.
    whole = save_checkpoint({"x": torch.zeros(2)}, tmp_path / "whole.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: the file is damaged or truncated"):
        load_checkpoint(cut)
    pickle_start = whole.index(b"\x80\x02", whole.index(b"data.pkl")) + 2  # protocol 2
    scrambled = tmp_path / "scrambled.pt"
    scrambled.write_bytes(whole[:pickle_start] + bytes([0x96]) * 8 + whole[pickle_start + 8:])
    with pytest.raises(CheckpointError, match="scrambled.pt: its data is damaged"):
        load_checkpoint(scrambled)
    resealed = resealed_with(tmp_path / "whole.pt", tmp_path / "resealed.pt", bytes([0x96]) * 8)
    with pytest.raises(CheckpointError, match=r"resealed.pt: its data is damaged \(torch's "
                                              r"reader stopped on bytes it cannot parse\)"):
        load_checkpoint(resealed)
    # Bytes torch's reader parses, then fails on with an error of its own kind (a KeyError for
    # the memo entry 5, never stored): damaged all the same.
    unknown_entry = resealed_with(tmp_path / "whole.pt", tmp_path / "memo.pt", b"h\x05.")
    with pytest.raises(CheckpointError, match=r"memo.pt: the file is damaged or truncated \(5\)"):
        load_checkpoint(unknown_entry)
    # Bytes changed inside a tensor: torch's reader would load them as other weights; the
    # archive's checksums do not match.
    weights = save_checkpoint({"w": torch.arange(1000.0)}, tmp_path / "weights.pt").read_bytes()
    middle = weights.index(torch.arange(1000.0).numpy().tobytes()[400:408])
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(weights[:middle] + bytes(8) + weights[middle + 8:])
    with pytest.raises(CheckpointError, match=r"flipped.pt: its data is damaged \(.*data/0 does "
                                              r"not match its checksum\)"):
        load_checkpoint(flipped)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: the file is empty"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)  # a folder without checkpoint.pt
    plain = tmp_path / "plain.pt"
    for foreign in ({"a": 1}, [1, 2]):  # a dict without the format, or no dict at all
        torch.save(foreign, plain)
        with pytest.raises(CheckpointError, match="plain.pt is not an stgconv checkpoint$"):
            load_checkpoint(plain)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match="not a file torch.save wrote"):
        load_checkpoint(pickled)
    # A whole zip archive of another kind is not called damaged (its backup would not help).
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, x=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"arrays.npz is not a checkpoint: a zip archive "
                                              r"without the data.pkl .* \(holding x.npy\)"):
        load_checkpoint(arrays)
    future = save_checkpoint({"x": torch.zeros(2)}, tmp_path / "future.pt")
    state = torch.load(future, weights_only=True)
    torch.save({**state, "version": 99}, future)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(future)


def test_a_file_opening_with_pk_but_no_zip_header_is_foreign_not_damaged(tmp_path: Path) -> None:
    """The whole 4-byte header is what torch.save writes: a file that only opens with "PK" (an
    empty zip, a foreign format) is no checkpoint, not a damaged one."""
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"PK\x05\x06" + bytes(60))
    with pytest.raises(CheckpointError, match="foreign.pt: it is not a file torch.save wrote"):
        load_checkpoint(foreign)


def test_a_checkpoint_of_another_version_or_none_is_refused(tmp_path: Path) -> None:
    """Only this version loads: the one just after it and one naming no version are refused."""
    path = save_checkpoint({"x": torch.zeros(2)}, tmp_path / "c.pt")
    state = torch.load(path, weights_only=True)
    del state["version"]
    for version in (VERSION + 1, VERSION - 1, None):
        torch.save(state if version is None else {**state, "version": version}, path)
        with pytest.raises(CheckpointError, match=f"version {version}, expected {VERSION}$"):
            load_checkpoint(path)


@pytest.mark.parametrize("n_arrays, listed", [(3, "a.npy, b.npy, c.npy)"),
                                              (4, "a.npy, b.npy, c.npy, ...)")])
def test_a_foreign_zip_archive_lists_at_most_three_of_its_names(tmp_path: Path, n_arrays: int,
                                                                listed: str) -> None:
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, **{name: np.zeros(1) for name in "abcd"[:n_arrays]})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(arrays)
    assert str(info.value).endswith(f"(holding {listed}")


def test_a_missing_checkpoint_names_the_one_it_replaced(tmp_path: Path) -> None:
    """checkpoint.pt removed (a model found bad) beside checkpoint_previous.pt: "checkpoint not
    found" alone left the run's way back unsaid."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"x": torch.zeros(2)}, path)
    save_checkpoint({"x": torch.ones(2)}, path, keep_previous=True)
    path.unlink()
    with pytest.raises(CheckpointError, match=rf"^checkpoint not found: {re.escape(str(path))}; "
                       r"the checkpoint it replaced is kept as .*checkpoint_previous\.pt: copy it "
                       r"over checkpoint\.pt to go on from there$"):
        load_checkpoint(tmp_path)


def test_a_folder_where_the_checkpoint_should_be_is_not_found(tmp_path: Path) -> None:
    """A folder named checkpoint.pt is no checkpoint: not found, as a missing one (it failed
    with IsADirectoryError)."""
    (tmp_path / "run" / "checkpoint.pt").mkdir(parents=True)
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoint.pt"):
        with pytest.raises(CheckpointError, match="checkpoint not found"):
            load_checkpoint(path)


def test_a_device_or_named_pipe_given_as_the_checkpoint_is_named_as_such(tmp_path: Path
                                                                       ) -> None:
    """/dev/null or a FIFO exists: "not found" was wrong, and reading a FIFO would wait."""
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for path in (fifo, Path(os.devnull)):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(info.value) == (f"checkpoint {path} is not a regular file (a device, a named "
                                   "pipe or a socket): give a checkpoint.pt file or the run "
                                   "folder holding it")


def test_an_archive_error_without_words_is_named_by_its_kind(tmp_path: Path,
                                                             monkeypatch) -> None:
    path = save_checkpoint({"x": torch.zeros(2)}, tmp_path / "c.pt")

    def unreadable(*_: object) -> None:
        raise EOFError

    monkeypatch.setattr(zipfile, "ZipFile", unreadable)
    with pytest.raises(CheckpointError, match=r"c\.pt: the file is damaged or truncated "
                                              r"\(EOFError\)$"):
        load_checkpoint(path)


def test_a_zip_archive_listing_no_entries_says_it_holds_nothing(tmp_path: Path) -> None:
    """An archive whose local header opens it as torch.save's do, and whose directory at its
    end lists no entry."""
    path = tmp_path / "listless.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", b"x")
    whole = path.read_bytes()
    directory = whole.rindex(b"PK\x01\x02")  # the central directory, then its end record
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, 0, directory, 0)
    path.write_bytes(whole[:directory] + end)
    with pytest.raises(CheckpointError, match=r"listless\.zip is not a checkpoint: .* \(holding "
                                              r"nothing\)$"):
        load_checkpoint(path)


def multigrid_config() -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(size=8), multigrid=MultiGridConfig(
        base_size=2, grids=(GridConfig(size=4), GridConfig(size=8))))


def test_load_model_keeps_a_float64_models_dtype(tmp_path: Path) -> None:
    """Rebuilt in float32 and loaded into it, a float64 model came back as float32 and refused
    float64 inputs; it comes back as saved, giving the same energies. Its weights hold digits
    past float32's: loaded into a float32 net before its move to float64, they were rounded."""
    energy = tiny_energy(0).double()
    with torch.no_grad():
        for parameter in energy.parameters():
            parameter.mul_(1 + 2.0**-40)
    path = save_checkpoint({"config": config_to_dict(ExperimentConfig(name="f64")),
                            "model_config": energy.config, "model": energy.state_dict()},
                           tmp_path / "checkpoint.pt")
    loaded, _, _ = load_model(path, device="cpu")
    assert next(loaded.parameters()).dtype == torch.float64
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    assert torch.equal(loaded(x), energy(x))


def _saved_energy(path: Path) -> Path:
    energy = tiny_energy(0)
    return save_checkpoint({"config": config_to_dict(ExperimentConfig(name="rng")),
                            "model_config": energy.config, "model": energy.state_dict()}, path)


def _saved_initializer(path: Path) -> Path:
    net = Initializer([2], spatial_dims=2, width=2, depth=2)
    return save_checkpoint({"initializer_model": net.state_dict(),
                            "initializer_config": net.config}, path)


@pytest.mark.parametrize("save, load", [
    (_saved_energy, lambda path: load_model(path, device="cpu")),
    (_saved_initializer, lambda path: initializer_from_state(load_checkpoint(path), path)),
    (lambda path: save_fill_prior(FillNet(1, 1, 2), ["temporal_interpolation"], path),
     load_fill_prior),
], ids=["model", "companion", "fill_prior"])
def test_a_load_leaves_the_callers_random_stream_where_it_was(save, load, tmp_path: Path
                                                              ) -> None:
    """Each net rebuilt from a checkpoint drew initial weights (overwritten by the saved ones)
    from torch's global generator: a seeded script drew other numbers after a load."""
    path = save(tmp_path / "checkpoint.pt")
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    load(path)
    assert torch.equal(torch.rand(4), expected)


def test_load_model_rebuilds_the_saved_energy_and_refuses_multigrid(tmp_path: Path) -> None:
    energy = tiny_energy(0)
    config = ExperimentConfig(name="single")
    path = save_checkpoint({"config": config_to_dict(config), "model_config": energy.config,
                            "model": energy.state_dict()}, tmp_path / "single" / "checkpoint.pt")
    loaded, loaded_config, state = load_model(path.parent, device="cpu")
    assert loaded_config == config and not loaded.training
    assert loaded.config == energy.config and state["model_config"] == energy.config
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), energy(x))
    with pytest.raises(CheckpointError, match="single-model checkpoint.*load_model"):
        load_multigrid(path, device="cpu")
    # Weights that do not fit the stored architecture are not a model.
    save_checkpoint({"config": config_to_dict(config), "model_config": energy.config,
                     "model": tiny_energy(0).state_dict() | {"extra": torch.zeros(1)}},
                    tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not describe a model"):
        load_model(tmp_path / "bad.pt", device="cpu")
    # Nor are weights that are no state dict (an AttributeError inside).
    save_checkpoint({"config": config_to_dict(config), "model_config": energy.config,
                     "model": [torch.zeros(1)]}, tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="does not describe a model"):
        load_model(tmp_path / "list.pt", device="cpu")
    # Nor is a config that is no mapping (an AttributeError in looking for unread settings).
    save_checkpoint({"config": [config_to_dict(config)], "model_config": energy.config,
                     "model": energy.state_dict()}, tmp_path / "config_list.pt")
    with pytest.raises(CheckpointError, match="does not describe a model"):
        load_model(tmp_path / "config_list.pt", device="cpu")
    # Nor is one without its run's config.
    save_checkpoint({"model_config": energy.config, "model": energy.state_dict()},
                    tmp_path / "no_config.pt")
    with pytest.raises(CheckpointError, match="does not describe a model: 'config'"):
        load_model(tmp_path / "no_config.pt", device="cpu")
    # Nor is one without the model's config (not one of the caller's own, which saves {}).
    save_checkpoint({"config": config_to_dict(config), "model": energy.state_dict()},
                    tmp_path / "no_model_config.pt")
    with pytest.raises(CheckpointError, match="does not describe a model: 'model_config'"):
        load_model(tmp_path / "no_model_config.pt", device="cpu")


@pytest.mark.parametrize("change, reason", [
    ({"in_channels": 0}, "does not describe a model: .*in_channels must be an int >= 1"),
    # It was "does not describe a model: ConvNetEnergy.__init__() got an unexpected keyword
    # argument 'dilation'", without the hint a config's unknown key gets.
    ({"dilation": 2}, r"holds a model this stgconv cannot build \(written by a newer "
                      r"version\?\): unknown model_config key\(s\) dilation; valid keys: "
                      r"activation, head"),
], ids=["a value its net refuses", "a setting of a newer version"])
def test_a_model_config_its_net_refuses_does_not_describe_a_model(tmp_path: Path, change: dict,
                                                                  reason: str) -> None:
    """The net's own ValueError, or a key it does not take named as one, not a traceback out
    of load_model."""
    energy = tiny_energy(0)
    path = save_checkpoint({"config": config_to_dict(ExperimentConfig()),
                            "model_config": {**energy.config, **change},
                            "model": energy.state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=rf"checkpoint \S+checkpoint\.pt {reason}"):
        load_model(path, device="cpu")


def test_a_config_whose_data_size_its_net_is_not_tied_to_is_named(tmp_path: Path) -> None:
    """An edited data.size failed the chains it shaped, as "the data Gaussian makes samples of
    shape (1, 28, 28), asked for (2, 1, 24, 24)", naming neither checkpoint nor setting."""
    energy = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 1]], head="linear",
                           input_size=[8, 8])
    saved = {size: save_checkpoint(
        {"config": config_to_dict(ExperimentConfig(data=DataConfig(size=size))),
         "model_config": energy.config, "model": energy.state_dict()}, tmp_path / f"{size}.pt")
        for size in (8, 12)}
    assert load_model(saved[8], device="cpu")[1].data.size == 8
    with pytest.raises(CheckpointError, match=re.escape(
            f"checkpoint {saved[12]}'s config has data.size 12, but its net is tied to 8x8 inputs "
            "(its model_config): set data.size back to 8")):
        load_model(saved[12], device="cpu")


def config_less(energy: ConvNetEnergy, path: Path) -> tuple[ConvNetEnergy, ExperimentConfig,
                                                              Path]:
    """``energy`` saved as a Trainer given no config saves it (the defaults' config), loaded:
    ``(energy, config, path)``."""
    path = save_checkpoint({"config": {}, "model_config": energy.config,
                            "model": energy.state_dict()}, path)
    loaded, config, _ = load_model(path, device="cpu")
    return loaded, config, path


def test_a_config_less_checkpoint_is_given_its_nets_input_channels(tmp_path: Path) -> None:
    """A Trainer given no config saves the defaults, whose model.in_channels is unset: the
    commands take the net's own, with data.channels to match (a config of model.in_channels 3
    beside data.channels 1 is refused), and refuse a net that names none (an RBM)."""
    energy = image_energy("texture", in_channels=3, layers=[[4, 3, 1]])
    loaded, config, path = config_less(energy, tmp_path / "checkpoint.pt")
    assert config == ExperimentConfig()  # as saved
    filled = with_net_inputs(loaded, config, path)
    assert filled == replace(config, model=replace(config.model, in_channels=3),
                             data=replace(config.data, channels=3))
    assert with_net_inputs(loaded, filled, path) is filled
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match=r"the RBM of .*checkpoint\.pt names no channels"):
        with_net_inputs(rbm, config, path)


def test_a_checkpoint_of_a_models_channels_beside_the_default_datas_is_read(
        tmp_path: Path) -> None:
    """A Trainer saves its caller's config as given: model.in_channels 3 beside the default
    data.channels 1 was read before the config check refused the pair, and then the
    checkpoint was 'does not describe a model'. Its data take the net's channels."""
    energy = image_energy("texture", in_channels=3, layers=[[4, 3, 1]])
    settings = config_to_dict(ExperimentConfig())
    settings["model"]["in_channels"] = 3
    path = save_checkpoint({"config": settings, "model_config": energy.config,
                            "model": energy.state_dict()}, tmp_path / "checkpoint.pt")
    config = load_model(path, device="cpu")[1]
    assert (config.model.in_channels, config.data.channels) == (3, 3)


def test_a_colour_multigrid_checkpoint_of_the_old_model_defaults_keeps_its_channels(
        tmp_path: Path) -> None:
    """Earlier multigrid runs saved the unread top-level model.in_channels as 1 (the default
    then) beside data.channels 3: taken as the net's channels, the run's data became grey."""
    config = ExperimentConfig(data=DataConfig(size=8, channels=3), multigrid=MultiGridConfig(
        base_size=2, grids=(GridConfig(size=4), GridConfig(size=8))))
    settings = config_to_dict(config)
    settings["model"].update(in_channels=1, image_size=64)
    grids = [{"model_config": energy.config, "model": energy.state_dict()} for energy in
             (image_energy("texture", in_channels=3, layers=[[4, 3, 1]]) for _ in range(2))]
    path = save_checkpoint({"config": settings, "grids": grids, "base": torch.rand(3, 3, 2, 2)},
                           tmp_path / "checkpoint.pt")
    assert load_multigrid(path, device="cpu")[1].data.channels == 3


@pytest.mark.parametrize("device", ["cpu:0", "auto-detect", "mps"])
def test_a_device_the_checkpoint_cannot_load_onto_is_named_not_called_damage(
        tmp_path: Path, device: str) -> None:
    """torch's reader fails on a map_location it cannot restore onto (a device the machine
    lacks, "cuda" on a CPU machine included) as on damaged bytes: a whole checkpoint was
    reported "damaged or truncated"."""
    path = save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=f"device '{device}' is not a device") as refused:
        load_checkpoint(path, map_location=device)
    assert "damaged" not in str(refused.value)
    loaded = load_checkpoint(path, map_location=torch.device("cpu"))
    assert loaded["model"]["w"].device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_loading_onto_cuda_without_it_says_so(tmp_path: Path) -> None:
    path = save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="device 'cuda' requested .* CUDA is not available"):
        load_checkpoint(path, map_location="cuda")


def test_a_fill_prior_given_for_a_model_is_named(tmp_path: Path) -> None:
    """The other file of this format (stgconv fill-prior's) was said to "not describe a model:
    'model_config'", the key it lacks."""
    path = save_fill_prior(FillNet(1, 1, 2), ["temporal_interpolation"], tmp_path / "prior.pt")
    for load in (load_model, load_multigrid):
        with pytest.raises(CheckpointError, match=r"prior\.pt is a learned fill's prior \(stgconv "
                                                  r"fill-prior\), not a model's checkpoint"):
            load(path, device="cpu")


def test_a_config_less_checkpoint_takes_the_side_its_net_is_tied_to(tmp_path: Path) -> None:
    """A net with a fully connected head built for 8x8 images, saved with the defaults (side
    64): synthesize, reconstruct and interpolate shape their images by data.size, and the net
    refused 64x64 with its own shape error (``--size 8``: "tied to 64x64 inputs")."""
    energy = image_energy("object", in_channels=1, image_size=8, layers=[[2, 3, 2, 1]])
    loaded, config, path = config_less(energy, tmp_path / "checkpoint.pt")
    filled = with_net_inputs(loaded, config, path)
    assert (filled.data.size, filled.model.image_size, filled.model.in_channels) == (8, 8, 1)
    oblong = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 2, 1]], head="linear",
                           input_size=(8, 12))
    loaded, config, path = config_less(oblong, tmp_path / "oblong.pt")
    with pytest.raises(ValueError, match=r"tied to 8x12 \(height x width\) inputs, which are "
                                         r"not square"):
        with_net_inputs(loaded, config, path)


def test_a_config_less_checkpoint_of_a_net_of_other_inputs_is_refused(tmp_path: Path) -> None:
    """A voxel net saved with the defaults, whose data are images: refused naming both, not
    sampled as images for the net to refuse them."""
    energy = voxel_energy("desc32_small", size=8, layers=[[2, 4, 2, 1]])
    loaded, config, path = config_less(energy, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"takes 3-D inputs, but its config's data are 2-D "
                                         r"\(data.kind 'texture': the defaults"):
        with_net_inputs(loaded, config, path)


class Counted(torch.nn.Module):
    """A net whose state dict starts with an integer buffer, as a step counter would."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.linear = torch.nn.Linear(2, 2)


def test_load_weights_takes_the_dtype_of_the_floating_point_weights() -> None:
    """An integer entry says nothing of the net's dtype (and a net cannot be moved to it)."""
    saved = Counted().double().state_dict()
    assert next(iter(saved.values())).dtype == torch.long
    net = Counted()
    load_weights(net, saved)
    assert net.linear.weight.dtype == torch.float64 and net.count.dtype == torch.long


def single_model_checkpoint(path: Path, saved: dict) -> Path:
    """A tiny model's checkpoint whose run config is the plain data ``saved``, as an earlier
    stgconv may have written it."""
    energy = tiny_energy(0)
    return save_checkpoint({"config": saved, "model_config": energy.config,
                            "model": energy.state_dict()}, path)


def test_a_saved_setting_its_training_never_read_is_ignored_with_a_warning(
        tmp_path: Path) -> None:
    """The config refuses such settings now; a checkpoint an earlier stgconv wrote with one
    (it trained without it) still loads for synthesize and the evaluations, as trained."""
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["chains"]["buffer_capacity"] = 500  # chains.mode persistent never reads it
    saved["sampler"]["n_leapfrog"] = 3  # nor does Langevin
    path = single_model_checkpoint(tmp_path / "checkpoint.pt", saved)
    with pytest.warns(UserWarning, match=r"sets sampler\.n_leapfrog, chains\.buffer_capacity, "
                                         r"which its training never read"):
        _, config, _ = load_model(path, device="cpu")
    assert config == ExperimentConfig(name="single")
    grids = config_to_dict(multigrid_config())
    grids["multigrid"]["grids"][1]["model"]["n_classes"] = 3  # a descriptor has no classes
    models = [{"model_config": e.config, "model": e.state_dict()}
              for e in (tiny_energy(1), tiny_energy(2))]
    path = save_checkpoint({"config": grids, "grids": models, "base": torch.zeros(1)},
                           tmp_path / "grids.pt")
    with pytest.warns(UserWarning, match=r"multigrid\.grids\[1\]\.model\.n_classes"):
        _, config, _ = load_multigrid(path, device="cpu")
    assert config == multigrid_config()


def test_a_checkpoint_holding_a_since_withdrawn_setting_is_read_or_refused_as_older(
        tmp_path: Path) -> None:
    """Every run of 2026-12-01 saved recovery.learned.redraw_every, which no training reads: its
    checkpoint loads with a warning (it was refused as written "by a newer version"). An
    initializer trained under the withdrawn initializer.sr_loss is refused as an earlier
    version's."""
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["recovery"]["learned"]["redraw_every"] = 40  # the default of its day
    path = single_model_checkpoint(tmp_path / "checkpoint.pt", saved)
    with pytest.warns(UserWarning, match=r"sets recovery\.learned\.redraw_every, which its "
                                         r"training never read"):
        _, config, _ = load_model(path, device="cpu")
    assert config == ExperimentConfig(name="single")
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["initializer"] = {**config_to_dict(InitializerConfig()), "sr_loss": "block_rank"}
    path = single_model_checkpoint(tmp_path / "initializer.pt", saved)
    with pytest.raises(CheckpointError, match=r"initializer\.pt cannot be read by this stgconv: "
                                              r"initializer\.sr_loss is a setting of an earlier "
                                              r"stgconv, withdrawn: .* train a new one$"):
        load_model(path, device="cpu")


def test_a_saved_config_of_lists_shared_inside_one_another_is_refused_at_once(
        tmp_path: Path) -> None:
    """The checkpoint keeps them shared: nine levels of ten (1.5 kB for 10^9 values) took the
    config's load minutes, or all memory, to write them into its message ("train.lr must be
    a number, got [[[..."); six levels here, a million values."""
    shared: list = ["x"] * 10
    for _ in range(5):
        shared = [shared] * 10
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["train"]["lr"] = shared
    path = single_model_checkpoint(tmp_path / "checkpoint.pt", saved)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.pt's config: the config "
                                         r"holds more than 100000 values"):
        load_model(path, device="cpu")


def test_a_saved_config_with_a_key_this_version_does_not_know_is_named(tmp_path: Path) -> None:
    """It was called a file that "does not describe a model"."""
    energy = tiny_energy(0)
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["sampler"]["tempering"] = 2.0  # a later version's setting
    path = save_checkpoint({"config": saved, "model_config": energy.config,
                            "model": energy.state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"holds a config this stgconv cannot read \(written "
                                              r"by a newer version\?\): unknown config key\(s\) "
                                              r"sampler\.tempering"):
        load_model(path, device="cpu")
    # Also in a section a config may leave out (null), which was read as a plain error.
    saved = config_to_dict(ExperimentConfig(name="single"))
    saved["initializer"] = {**config_to_dict(InitializerConfig()), "tempering": 2.0}
    path = save_checkpoint({"config": saved, "model_config": energy.config,
                            "model": energy.state_dict()}, tmp_path / "optional.pt")
    with pytest.raises(CheckpointError, match=r"\(written by a newer version\?\): unknown "
                                              r"config key\(s\) initializer\.tempering"):
        load_model(path, device="cpu")


def test_load_multigrid_rebuilds_every_grid_and_refuses_a_single_model(tmp_path: Path) -> None:
    energies = [tiny_energy(1), tiny_energy(2)]
    config = multigrid_config()
    grids = [{"model_config": e.config, "model": e.state_dict()} for e in energies]
    base = torch.rand(3, 1, 2, 2)
    path = save_checkpoint({"config": config_to_dict(config), "grids": grids, "base": base},
                           tmp_path / "checkpoint.pt")
    loaded, loaded_config, state = load_multigrid(path, device="cpu")
    assert loaded_config == config and torch.equal(state["base"], base)
    x = torch.rand(2, 1, 8, 8)
    assert len(loaded) == 2 and all(not e.training for e in loaded)
    for got, want in zip(loaded, energies):
        assert torch.equal(got(x), want(x))
    assert not torch.equal(loaded[0](x), loaded[1](x))  # each grid its own weights, in order
    with pytest.raises(CheckpointError, match="multi-grid checkpoint.*load_multigrid"):
        load_model(path, device="cpu")
    # Even one holding no grid at all is no single model.
    save_checkpoint({"config": config_to_dict(config), "grids": [], "base": base},
                    tmp_path / "no_grid.pt")
    with pytest.raises(CheckpointError, match="multi-grid checkpoint"):
        load_model(tmp_path / "no_grid.pt", device="cpu")
    # Grids without the base grid (or a multigrid section) cannot be sampled.
    save_checkpoint({"config": config_to_dict(config), "grids": grids}, tmp_path / "no_base.pt")
    with pytest.raises(CheckpointError, match="base grid"):
        load_multigrid(tmp_path / "no_base.pt", device="cpu")
    # What a MultiGridTrainer given no config= saves: the message says what is missing.
    save_checkpoint({"config": {}, "grids": grids, "base": base}, tmp_path / "no_config.pt")
    with pytest.raises(CheckpointError, match="no multigrid section.*config="):
        load_multigrid(tmp_path / "no_config.pt", device="cpu")


@pytest.mark.parametrize("edit, said", [
    ({"grids": 3}, r"holds int, where its config models 2 \(multigrid.grids\)"),
    ({"grids": "first only"}, r"holds 1 grid, where its config models 2 \(multigrid.grids\)"),
    ({"base": torch.full((3, 1, 2, 2), math.nan)}, r"base grid must be .* got NaN or infinite"),
    ({"base": torch.ones(3, 1, 2, 2, dtype=torch.long)}, r"base grid must be .* got torch.int64"),
])
def test_an_edited_multigrid_checkpoint_is_named(tmp_path: Path, edit: dict, said: str) -> None:
    """Grids that are no list failed as a TypeError, another count than the config's as the
    sampler's "1 energies for 2 grids", a NaN base grid as the chains' NaN start."""
    grids = [{"model_config": e.config, "model": e.state_dict()}
             for e in (tiny_energy(1), tiny_energy(2))]
    state = {"config": config_to_dict(multigrid_config()), "grids": grids,
             "base": torch.rand(3, 1, 2, 2), **edit}
    if state["grids"] == "first only":
        state["grids"] = grids[:1]
    path = save_checkpoint(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(path))}.*{said}"):
        load_multigrid(path, device="cpu")


def test_multigrid_checkpoint_loads_only_as_multigrid(tmp_path: Path) -> None:
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    path = trainer.save(tmp_path / "multigrid" / "checkpoint.pt")

    energies, config, state = load_multigrid(path, device="cpu")
    assert config.multigrid is not None and [g.size for g in config.multigrid.grids] == [4, 8]
    assert len(energies) == 2 and all(not e.training for e in energies)
    for loaded, trained in zip(energies, trainer.energies):
        for (name, p), q in zip(loaded.state_dict().items(), trained.state_dict().values()):
            assert torch.equal(p, q), name
    assert torch.equal(state["base"], trainer.base)
    assert state["grid_sizes"] == [list(s) for s in GRIDS]
    with pytest.raises(CheckpointError, match="load_multigrid"):
        load_model(path, device="cpu")

    single = Trainer(image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]),
                     Langevin(n_steps=1), DataStart(), pattern_images(), generator=gen(0),
                     config=config_to_dict(ExperimentConfig()))
    single_path = single.save(tmp_path / "single" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="load_model"):
        load_multigrid(single_path, device="cpu")


def test_save_checkpoint_keeps_no_previous_unless_asked(tmp_path: Path) -> None:
    from stgconv.checkpoint import previous_path

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"iteration": 1}, path)
    save_checkpoint({"iteration": 2}, path)
    assert not previous_path(path).exists()
    save_checkpoint({"iteration": 3}, path, keep_previous=True)
    assert load_checkpoint(previous_path(path))["iteration"] == 2


def test_a_folder_given_for_a_checkpoint_to_save_is_refused_before_the_work(tmp_path: Path
                                                                         ) -> None:
    """trainer.save(RUN) failed with a bare IsADirectoryError once the state was serialized,
    and save("runs/mine/") wrote a file named mine."""
    trainer = Trainer(tiny_energy(0), Langevin(n_steps=1), DataStart(), pattern_images(),
                      generator=gen(0), config=config_to_dict(ExperimentConfig()))
    with pytest.raises(ValueError, match=rf"^checkpoint {re.escape(str(tmp_path))} is a folder, "
                                         r"not a file$"):
        trainer.save(tmp_path)
    with pytest.raises(ValueError, match=r"^checkpoint .*mine/ ends in '/', a folder: give"):
        save_checkpoint({"x": torch.zeros(2)}, f"{tmp_path / 'mine'}/")
    assert list(tmp_path.iterdir()) == [] and trainer.saved_path is None


@pytest.mark.parametrize(("error", "reason"), [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore advice"),
     "CUDA out of memory. Tried to allocate 2.00 GiB"),
    (MemoryError(), "MemoryError"),
])
def test_a_checkpoint_that_does_not_fit_in_memory_is_not_called_damaged(
        tmp_path: Path, monkeypatch, error: Exception, reason: str) -> None:
    """Loaded onto a busy GPU, a whole checkpoint was "damaged or truncated", and the message
    offered to copy checkpoint_previous.pt over it."""
    path = save_checkpoint({"x": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    save_checkpoint({"x": torch.ones(2)}, path, keep_previous=True)

    def no_memory(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(torch, "load", no_memory)
    with pytest.raises(CheckpointError) as failure:
        load_checkpoint(path)
    assert str(failure.value) == (f"cannot load checkpoint {path} onto cpu: out of memory "
                                  f"({reason}); free memory there, or load it onto another "
                                  "device")


def test_a_save_is_not_a_probe_of_its_folder(tmp_path: Path, monkeypatch) -> None:
    """save_checkpoint ran check_output's probe of the folder (a file made and removed) at
    every save of a run, so a disk refusing new files part-way was a ValueError (exit 2), where
    the write's own WriteError (exit 1) says what failed; the save itself is the probe."""
    def refused(*_: object, **__: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("stgconv.checks.tempfile.TemporaryFile", refused)
    save_checkpoint({"x": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint.pt")["x"], torch.zeros(2))


def test_a_checkpoint_the_system_fails_to_read_is_named(unreadable_npy: Path) -> None:
    """A disk's read error was the system's reason alone ("stgconv synthesize: error: [Errno 5]
    Input/output error"), naming no file."""
    run = unreadable_npy.parent / "run"
    run.mkdir()
    (run / "checkpoint.pt").symlink_to(unreadable_npy)
    with pytest.raises(CheckpointError, match=r"^cannot read checkpoint .*run/checkpoint\.pt: "
                                              r"Input/output error \(the system's read failed"):
        load_model(run, device="cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="shutil.copyfile copies with os.sendfile on Linux only")
def test_a_full_disk_while_keeping_the_previous_checkpoint_names_that_file(
        tmp_path: Path, monkeypatch) -> None:
    """shutil.copyfile names its source and the temporary it copies into: the error read
    "checkpoint.pt -> .checkpoint_previous.pt.<pid>-<random>.tmp". Both checkpoints stay."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"iteration": 1}, path)
    save_checkpoint({"iteration": 2}, path, keep_previous=True)

    def full_disk(*_: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "sendfile", full_disk)
    with pytest.raises(WriteError) as failure:
        save_checkpoint({"iteration": 3}, path, keep_previous=True)
    assert str(failure.value) == (f"[Errno {errno.ENOSPC}] No space left on device: "
                                  f"'{previous_path(path)}'")
    assert load_checkpoint(path)["iteration"] == 2
    assert load_checkpoint(previous_path(path))["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt",
                                                          "checkpoint_previous.pt"]


def test_weights_that_are_not_finite_are_named_at_loading(tmp_path: Path) -> None:
    """A net of NaN weights (an edited file, another program's) gave NaN energies, which the
    sampler reported as a diverging chain, advising a smaller step size; resumed, training's
    first step did the same."""
    def trainer() -> Trainer:
        return Trainer(image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]),
                       Langevin(n_steps=1), DataStart(), pattern_images(), generator=gen(0),
                       config=config_to_dict(ExperimentConfig()))

    path = trainer().save(tmp_path / "checkpoint.pt")
    state = load_checkpoint(path)
    first = next(iter(state["model"]))
    state["model"][first] = torch.full_like(state["model"][first], math.nan)
    save_checkpoint(state, path)
    message = rf"checkpoint .*: the weights {re.escape(first)} hold NaN or infinite values"
    with pytest.raises(CheckpointError, match=message):
        load_model(path, device="cpu")
    with pytest.raises(CheckpointError, match=message):
        trainer().resume(path)


def test_a_multigrid_resume_names_a_grids_weights_that_are_not_finite(tmp_path: Path) -> None:
    """Only a single model's weights were checked: a multi-grid checkpoint with a NaN weight on
    a grid resumed, and its first step said the grid's chain diverged (a smaller step size)."""
    path = make_multigrid_trainer().save(tmp_path / "checkpoint.pt")
    state = load_checkpoint(path)
    first = next(iter(state["grids"][1]["model"]))
    state["grids"][1]["model"][first] = torch.full_like(state["grids"][1]["model"][first],
                                                        math.inf)
    save_checkpoint(state, path)
    trainer = make_multigrid_trainer()
    weights = [p.clone() for _, p in trainer.named_parameters()]
    with pytest.raises(CheckpointError, match=rf"checkpoint .*: the weights grid2/"
                                              rf"{re.escape(first)} hold NaN or infinite"):
        trainer.resume(path)
    assert trainer.iteration == 0
    assert all(torch.equal(w, p) for w, (_, p) in zip(weights, trainer.named_parameters()))


@pytest.mark.parametrize("load", [load_checkpoint, load_model, load_multigrid])
def test_a_checkpoint_given_as_data_is_refused_by_its_name(load) -> None:
    """A state dict's tensor or an array given for the checkpoint failed in pathlib, naming
    no argument."""
    for data in (np.zeros(3), torch.zeros(3)):
        with pytest.raises(ValueError, match="^checkpoint must be a file's path"):
            load(data)
