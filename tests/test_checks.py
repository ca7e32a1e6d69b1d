"""The shared argument checks: counts are ints (numpy ints too, never bools or floats) at least
the minimum, frame sizes one positive int or a pair, voxel batches (B, 1, D, H, W), tensors within
the memory bound, output paths that can be written, damaged archives named; errors name the
argument and its value."""

from __future__ import annotations

import ast
import errno
import gc
import gzip
import io
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import tiny_data, tiny_energy
from torch import nn

from stgconv.checks import (
    MAX_ENTRIES,
    SEED_LIMIT,
    as_array,
    as_int,
    as_size,
    check_entries,
    check_output,
    check_bool_mask,
    check_cache_version,
    check_classes,
    check_finite_number,
    check_finite_observed,
    check_not_meta,
    check_path,
    check_seed,
    check_voxels,
    check_whole_labels,
    class_numbers,
    npz_array,
    npy_shape,
    npz_length,
    open_npz,
    read_npy,
    reading,
)
from stgconv.energy import voxel_energy
from stgconv.losses import contrastive_divergence
from stgconv.mcmc import DownsampleConsistency, Langevin
from stgconv.super_resolution import super_resolve_batch


def test_as_int_accepts_ints_of_any_kind() -> None:
    assert as_int(3, "n", minimum=1) == 3
    value = as_int(np.int64(5), "n", minimum=0)
    assert value == 5 and type(value) is int
    assert as_int(0, "n", minimum=0) == 0


@pytest.mark.parametrize("value", [True, 2.0, "3", None, 0, -4])
def test_as_int_refuses_other_values_naming_them(value) -> None:
    with pytest.raises(ValueError, match=rf"n_frames must be an int >= 1, got {value!r}"):
        as_int(value, "n_frames", minimum=1)


def test_check_seed_takes_every_seed_a_generator_of_each_rank_takes() -> None:
    assert check_seed(0) == 0
    value = check_seed(np.uint64(SEED_LIMIT - 1))
    assert value == 2**63 - 2**16 - 1 and type(value) is int


@pytest.mark.parametrize("value", [1.5, 3.0, True, "3", None, -1, SEED_LIMIT, 2**70])
def test_check_seed_refuses_other_values_naming_them(value) -> None:
    """torch's own messages for these named no seed (a float, a bool: "manual_seed expected a
    long"; 2^70: "Overflow when unpacking long long"), and -1 it took, wrapped round."""
    with pytest.raises(ValueError,
                       match=rf"--seed must be an int in \[0, 2\^63 - 2\^16\), got {value!r}$"):
        check_seed(value, "--seed")


def test_as_size() -> None:
    assert as_size(32) == (32, 32)
    assert as_size((24, np.int32(40))) == (24, 40)
    # One int as as_int takes it, for the square as for each side.
    assert as_size(np.int64(8)) == as_size(torch.tensor(8)) == (8, 8)
    for bad in (0, True, (32,), (32, 0), (32, 32, 3), "32", (32.0, 32)):
        with pytest.raises(ValueError, match="size must be a positive int or a pair"):
            as_size(bad)


def test_check_voxels_names_the_argument_and_the_shape() -> None:
    check_voxels(torch.zeros(2, 1, 4, 4, 4), "shapes")
    with pytest.raises(ValueError,
                       match=r"shapes must be voxels \(B, 1, D, H, W\), got \(2, 3, 4, 4, 4\)"):
        check_voxels(torch.zeros(2, 3, 4, 4, 4), "shapes")
    with pytest.raises(ValueError, match="got list"):
        check_voxels([1, 2], "shapes")


def test_check_entries_refuses_tensors_past_the_bound() -> None:
    check_entries((MAX_ENTRIES,), "fits")
    with pytest.raises(ValueError, match=r"--size 9 makes a \(2, 3, 100000, 100000\) tensor"):
        check_entries((2, 3, 100000, 100000), "--size 9")


def _super_resolve(low: np.ndarray) -> None:
    energy = voxel_energy("desc32_small", layers=[[2, 3, 1, 1]], reference_sigma=0.5)
    super_resolve_batch(energy, Langevin(n_steps=1), low, 4, generator=torch.Generator())


@pytest.mark.parametrize(("call", "name"), [
    (lambda array: tiny_energy()(array), "x"),
    (lambda array: contrastive_divergence(tiny_energy(), array, torch.as_tensor(array)), "x_pos"),
    (lambda array: contrastive_divergence(tiny_energy(), torch.as_tensor(array), array), "x_neg"),
    (lambda array: DownsampleConsistency(array, (2, 2)), "low"),
    (lambda array: _super_resolve(np.zeros((1, 1, 8, 8, 8), np.float32)), "low"),
], ids=["energy", "data", "samples", "downsample-consistency", "super-resolve"])
def test_library_calls_name_a_numpy_array_given_for_a_tensor(call, name: str) -> None:
    """Each failed in attribute or torch words ("'numpy.ndarray' object has no attribute
    'dim'", "isfinite(): argument 'input' must be Tensor"), naming neither the argument nor
    what to do."""
    with pytest.raises(ValueError, match=rf"^{name} must be a torch.Tensor, got ndarray \(convert "
                                         rf"it first: torch.as_tensor\({name}\)\)$"):
        call(np.zeros((2, 1, 8, 8), np.float32))


@pytest.mark.parametrize("folder", [True, False])
def test_check_output_refuses_paths_blocked_by_a_file_or_folder(tmp_path: Path,
                                                                 folder: bool) -> None:
    a_file, a_folder = tmp_path / "f", tmp_path / "d"
    a_file.write_text("x")
    a_folder.mkdir()
    assert (check_output(tmp_path / "new" / "deeper", "out", folder=folder)
            == tmp_path / "new" / "deeper")
    assert check_output(a_folder if folder else a_file, "out", folder=folder)
    with pytest.raises(ValueError, match="is a file, not a folder" if folder
                       else "is a folder, not a file"):
        check_output(a_file if folder else a_folder, "--out", folder=folder)
    with pytest.raises(ValueError,
                       match=f"--out {a_file}/x/y lies under {a_file}, which is a file"):
        check_output(a_file / "x" / "y", "--out", folder=folder)


def test_a_dash_for_an_output_is_refused_not_made_a_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``--json -`` (many tools' standard output) wrote a file named '-' in the working
    folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^--json - would be a file named '-' \(it does not "
                                         r"mean the standard output here\): give a path$"):
        check_output("-", "--json", folder=False)
    with pytest.raises(ValueError, match=r"^--out - would be a folder named '-'"):
        check_output("-", "--out")
    assert check_output("./-", "--json", folder=False) == Path("-")
    assert list(tmp_path.iterdir()) == []


def test_a_file_path_ending_in_a_slash_is_refused_not_made_a_file_of_the_folders_name(
        tmp_path: Path) -> None:
    """``fill-prior --out priors/`` (or ``--json tables/``) wrote a file named ``priors``:
    ``Path`` drops the slash that says the user meant a folder."""
    with pytest.raises(ValueError, match=rf"^--out {tmp_path}/priors/ ends in '/', a folder: "
                                         r"give the path of a file to write \(in it\)$"):
        check_output(f"{tmp_path}/priors/", "--out", folder=False)
    assert check_output(f"{tmp_path}/tables/", "--out") == tmp_path / "tables"  # a folder: fine
    assert list(tmp_path.iterdir()) == []


def test_an_empty_output_path_is_refused_not_taken_for_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty path (``out_dir: ""`` in a config, an unset variable in a script) is the
    working folder to ``Path``: a run was written there, among the user's own files."""
    monkeypatch.chdir(tmp_path)
    for folder in (True, False):
        with pytest.raises(ValueError, match=r"^out_dir is empty \(''\), which would be the "
                                             r"working folder: give a path \('\.' for that "
                                             r"folder\)$"):
            check_output("", "out_dir", folder=folder)
    assert check_output(".", "out_dir") == Path(".")
    assert list(tmp_path.iterdir()) == []


def test_check_output_names_a_named_pipe_in_the_way_as_such(tmp_path: Path) -> None:
    """A named pipe where a folder should be, or above the path, was called a file."""
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"^--out .*pipe is a device, a named pipe or a socket, "
                                         r"not a folder$"):
        check_output(tmp_path / "pipe", "--out")
    with pytest.raises(ValueError, match=r"^--json .*pipe/x\.json lies under .*pipe, which is a "
                                         r"device, a named pipe or a socket$"):
        check_output(tmp_path / "pipe" / "x.json", "--json", folder=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_check_output_refuses_a_file_path_that_is_a_device_or_pipe(tmp_path: Path) -> None:
    """--json /dev/null passed, and the file written was renamed over the device."""
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match=f"--json {tmp_path}/fifo is not a regular file "
                                         r"\(a device, a named pipe or a socket\)"):
        check_output(tmp_path / "fifo", "--json", folder=False)


def test_reading_names_the_damaged_file() -> None:
    with (pytest.raises(ValueError, match=r"cannot read shapes\.npz: the file is damaged .*BadZip"),
          reading("shapes.npz")):
        raise zipfile.BadZipFile("File is not a zip file")


def test_check_voxels_refuses_a_6d_batch() -> None:
    with pytest.raises(ValueError, match=r"x must be voxels .*\(2, 1, 4, 4, 4, 1\)"):
        check_voxels(torch.zeros(2, 1, 4, 4, 4, 1), "x")


def test_as_array_takes_a_tensor_that_requires_grad() -> None:
    np.testing.assert_array_equal(as_array(torch.ones(2, requires_grad=True)), np.ones(2))


def test_as_array_reads_bfloat16_as_float32() -> None:
    """numpy has no bfloat16 type: torch's .numpy() failed on one."""
    got = as_array(torch.tensor([0.5, -2.0], dtype=torch.bfloat16))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [0.5, -2.0])


def test_check_not_meta_refuses_a_meta_tensor() -> None:
    with pytest.raises(ValueError, match=r"x is on the meta device"):
        check_not_meta(torch.empty(2, device="meta"), "x")


def test_check_finite_observed_takes_nan_at_unobserved_entries() -> None:
    values, known = torch.tensor([1.0, float("nan")]), torch.tensor([True, False])
    check_finite_observed(values, known, "x")
    check_finite_observed(values.numpy(), known.numpy(), "x")


def test_check_bool_mask_names_the_dtype_it_got() -> None:
    with pytest.raises(ValueError, match=r"known must be a bool tensor \(True = observed\), got "
                                         r"torch.uint8"):
        check_bool_mask(torch.ones(2, dtype=torch.uint8), "known")


def test_check_classes_of_no_class_refuses_every_label() -> None:
    """n_classes = 0 leaves no valid class: 0 .. -1 is empty."""
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. -1, got 0 \.\. 0"):
        check_classes(torch.tensor([0]), "labels", n_classes=0)


def test_check_classes_refuses_bool_classes() -> None:
    with pytest.raises(ValueError, match=r"labels must be integers, got torch.bool"):
        check_classes(torch.tensor([True, False]), "labels")


def test_check_whole_labels_reads_only_floating_point_labels() -> None:
    """Integers are whole by their type, and bool labels (which torch cannot round) are left to
    the callers' own checks."""
    check_whole_labels(torch.tensor([0, 3]), "labels")
    check_whole_labels(torch.tensor([True, False]), "labels")


def test_check_classes_refuses_a_negative_class() -> None:
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. 1, got -1 \.\. 1"):
        check_classes(torch.tensor([-1, 1]), "labels", n_classes=2)


def test_check_voxels_refuses_a_4d_batch() -> None:
    with pytest.raises(ValueError, match=r"x must be voxels .*\(2, 1, 4, 4\)"):
        check_voxels(torch.zeros(2, 1, 4, 4), "x")


@pytest.mark.parametrize("found", [0, 2, None])
def test_check_cache_version_refuses_any_other_version(found) -> None:
    with pytest.raises(ValueError, match="rebuild it with prepare.py"):
        check_cache_version(found, 1, "c.h5", rebuild="prepare.py")
    check_cache_version(1, 1, "c.h5", rebuild="prepare.py")


def test_reading_names_a_truncated_gzip_stream() -> None:
    data = gzip.compress(b"x" * 1000)[:-8]
    with pytest.raises(ValueError, match="cannot read a.gz: the file is damaged or truncated"):
        with reading("a.gz"):
            gzip.GzipFile(fileobj=io.BytesIO(data)).read()


def test_check_entries_refuses_one_entry_over_the_limit() -> None:
    check_entries((2**14, 2**14), "x")  # exactly 2^28: allowed
    with pytest.raises(ValueError, match="over the limit"):
        check_entries((2**14, 2**14 + 1), "x")


def test_open_npz_says_not_found_for_a_missing_file_and_names_a_folder(tmp_path: Path) -> None:
    """A missing path is FileNotFoundError (numpy's own would be an OSError read as "not a
    readable .npz"); a folder is a ValueError naming it, not numpy's IsADirectoryError."""
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        with open_npz(tmp_path / "missing.npz"):
            pass
    (tmp_path / "shapes.npz").mkdir()
    with pytest.raises(ValueError, match=r"shapes\.npz: not a readable \.npz file"):
        with open_npz(tmp_path / "shapes.npz"):
            pass


def test_open_npz_closes_the_archive_when_the_block_ends(tmp_path: Path) -> None:
    """The archive is closed on leaving the block, whether it ends or raises: no file handle
    is left open (an open one keeps the file locked on Windows and warns under -W error)."""
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    with open_npz(tmp_path / "a.npz") as archive:
        assert archive["x"].tolist() == [0, 1, 2]
    assert archive.zip is None and archive.fid is None
    with pytest.raises(KeyError):
        with open_npz(tmp_path / "a.npz") as archive:
            archive["y"]
    assert archive.zip is None and archive.fid is None


def test_open_npz_leaves_no_file_open_when_the_archive_is_damaged(tmp_path: Path) -> None:
    """A file that starts as a zip but is none: the error names it, and the file is closed
    (numpy's np.load(path) left it open: a ResourceWarning at garbage collection)."""
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="damaged.npz: the file is damaged or truncated"):
            with open_npz(damaged):
                pass
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_read_npy_never_unpickles_and_closes_its_file(tmp_path: Path) -> None:
    np.save(tmp_path / "grid.npy", np.arange(3))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(read_npy(tmp_path / "grid.npy"), np.arange(3))
        with pytest.raises(ValueError, match="Object arrays cannot be loaded"):
            read_npy(tmp_path / "objects.npy")
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_open_npz_never_unpickles(tmp_path: Path) -> None:
    # A pickle named .npz: np.load may unpickle it only when allowed to, which runs its code.
    (tmp_path / "pickled.npz").write_bytes(pickle.dumps({"X": 1}))
    with pytest.raises(ValueError, match=r"pickled\.npz: not a readable \.npz file \(not a zip"):
        with open_npz(tmp_path / "pickled.npz"):
            pass


def test_an_npz_member_that_is_no_npy_array_is_refused_naming_it(tmp_path: Path) -> None:
    """numpy hands such a member over as its bytes: its bytes were counted as the images, and
    images read from it failed with a traceback."""
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x_train.npy", b"not an array")
    with open_npz(tmp_path / "d.npz") as archive:
        for read in (npz_array, npz_length):
            with pytest.raises(ValueError, match=r"cannot read array 'x_train' of .*d\.npz: "
                                                 r"it is not a \.npy array"):
                read(archive, "x_train", tmp_path / "d.npz")


def test_check_output_names_a_folder_that_is_a_link_to_nothing(tmp_path: Path) -> None:
    """Every command printed '[Errno 17] File exists' for such an --out."""
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"--out .*dangling is a symbolic link to nothing "
                                         r"\(.*nowhere\): make its target"):
        check_output(tmp_path / "dangling", "--out")
    (tmp_path / "nowhere").mkdir()
    assert check_output(tmp_path / "dangling", "--out") == tmp_path / "dangling"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a folder that takes no file")
def test_check_output_refuses_a_place_that_takes_no_new_file(tmp_path: Path) -> None:
    """/proc takes no file, though root's permissions allow it: the writers failed only after
    the work (TensorBoard's with a traceback from its own thread). The check leaves nothing
    where it may write."""
    for path, folder in (("/proc", True), ("/proc/stgconv_out", True),
                         ("/proc/stgconv.json", False)):
        with pytest.raises(ValueError, match=f"--out {path} cannot be written: the folder /proc "
                                             "does not accept new files$"):
            check_output(path, "--out", folder=folder)
    check_output(tmp_path, "--out")
    check_output(tmp_path / "new" / "table.json", "--json", folder=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs /proc, a folder that takes no file")
@pytest.mark.parametrize("path, place", [("/proc/self/nonexistent_dir/out.json", "/proc/self"),
                                         ("/proc/1/x.json", "/proc/1")])
def test_check_output_says_why_a_folder_that_exists_takes_no_file(path: str, place: str) -> None:
    """/proc answers a new file with ENOENT, and the message ended "(No such file or directory)"
    though the folder it named is there."""
    with pytest.raises(ValueError) as caught:
        check_output(path, "--json", folder=False)
    assert str(caught.value) == (f"--json {path} cannot be written: the folder {place} does not "
                                 "accept new files")


@pytest.mark.parametrize("code, reason", [
    (errno.EACCES, "is not writable"), (errno.EPERM, "is not writable"),
    (errno.EROFS, "is on a read-only file system"), (errno.ENOSPC, "is on a full disk"),
    (errno.EDQUOT, "is on a disk over its quota"),
    (errno.EIO, "takes no new file (Input/output error)")])
def test_check_output_names_the_reason_a_folder_refuses_a_file(tmp_path: Path, monkeypatch,
                                                               code: int, reason: str) -> None:
    """Root may write anywhere by permissions, so the refusals a user meets (a read-only or
    full disk, a folder of another user) are raised by hand; an unforeseen one keeps its own
    words."""
    def refused(**_: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    with pytest.raises(ValueError) as caught:
        check_output(tmp_path / "out.json", "--json", folder=False)
    assert str(caught.value) == (f"--json {tmp_path / 'out.json'} cannot be written: the folder "
                                 f"{tmp_path} {reason}")
    assert list(tmp_path.iterdir()) == []


def _seed_calls() -> dict:
    """Every public function or method taking ``generator=``, called with a seed instead:
    ``"module.qualname": (owner the error names, call)``. The objects are the smallest that
    reach the check; most calls used to fail inside torch's first draw ("randn() received an
    invalid combination of arguments"), the shortrun ones with "'int' object has no attribute
    'get_state'", and data_plus_noise with std 0, later calls of PersistentChains.start, the
    starts that draw nothing and the trainers (until their first step) took the seed."""
    from stgconv import build, cooperative, learned_fill, ops, recovery, shortrun
    from stgconv.baselines.video import FILLS as VIDEO_FILLS
    from stgconv.baselines.voxel import nearest_known_fill
    from stgconv.config import InitializerConfig, LearnedFillConfig
    from stgconv.data import masks
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.energy.rbm import RBM, ais_log_partition
    from stgconv.evaluation.classification import balanced_subset, stratified_folds
    from stgconv.evaluation.voxel import random_known
    from stgconv.generator import ConvGenerator
    from stgconv.initializer import Initializer, InitializerStart, InitializerTrainer
    from stgconv.jem import HybridTrainer
    from stgconv.mcmc import (HMC, MALA, BlockGibbs, DataGaussian, KnownEntries, Langevin,
                              MultiGridSampler, NoiseInit, PersistentChains, ReplayBuffer)
    from stgconv.mcmc.init import data_plus_noise
    from stgconv.mcmc.metropolis import metropolis_start
    from stgconv.mcmc.starts import (CoarseStart, DataStart, NoiseStart, RecoveryStart,
                                     SuperResolutionStart)
    from stgconv import super_resolution
    from stgconv.tasks import voxel as voxel_tasks
    from stgconv.train import MultiGridTrainer, Trainer

    x, idx, data = torch.zeros(2, 1, 4, 4), torch.arange(2), tiny_data(2, 8)
    sampler = Langevin(n_steps=1)
    net = ConvGenerator(latent_dim=2, out_shape=(1, 8, 8), width=2)
    clip = torch.zeros(1, 4, 4, 4)
    clip_known = torch.arange(4)[:, None, None].expand(4, 4, 4) % 2 == 0
    fill = VIDEO_FILLS["temporal_interpolation"]
    settings = LearnedFillConfig(iterations=1, patterns=1, width=2, crop_size=4, batch=1)
    voxels, voxels_known = torch.zeros(1, 1, 4, 4, 4), torch.ones(1, 1, 4, 4, 4, dtype=torch.bool)
    fitted = DataGaussian.fit(torch.rand(4, 3), rank=1)
    started = PersistentChains(2, NoiseInit())
    started.start(x, idx)
    return {
        "ops.random_shift": ("random_shift", lambda: ops.random_shift(x, 1, generator=0)),
        "mcmc.init.NoiseInit.sample": ("NoiseInit.sample",
                                       lambda: NoiseInit().sample((2,), generator=0)),
        "mcmc.init.data_plus_noise": ("data_plus_noise",
                                      lambda: data_plus_noise(x, std=0.0, generator=0)),
        "mcmc.init.DataGaussian.fit": ("DataGaussian.fit", lambda: DataGaussian.fit(
            torch.rand(4, 3), rank=1, generator=0)),
        "mcmc.init.DataGaussian.sample": ("DataGaussian.sample",
                                          lambda: fitted.sample((2, 3), generator=0)),
        "mcmc.starts.NoiseStart.start": ("NoiseInit.sample", lambda: NoiseStart(
            NoiseInit()).start(x, idx, generator=0)),
        "mcmc.starts.DataStart.start": ("data_plus_noise",
                                        lambda: DataStart().start(x, idx, generator=0)),
        "mcmc.starts.CoarseStart.start": ("CoarseStart.start", lambda: CoarseStart(
            (2, 2)).start(x, idx, generator=0)),
        "mcmc.starts.SuperResolutionStart.start": ("SuperResolutionStart.start",
                                                   lambda: SuperResolutionStart((2, 2)).start(
                                                       x, idx, generator=0)),
        "mcmc.starts.RecoveryStart.start": ("RecoveryStart.start", lambda: RecoveryStart(
            0.5, nearest_known_fill).start(x, idx, generator=0)),
        "mcmc.buffer.ReplayBuffer.start": ("NoiseInit.sample", lambda: ReplayBuffer(
            4, NoiseInit()).start(x, idx, generator=0)),
        "mcmc.persistent.PersistentChains.start": ("PersistentChains.start",
                                                   lambda: started.start(x, idx, generator=0)),
        "mcmc.langevin.Langevin.run": ("Langevin", lambda: sampler.run(
            tiny_energy(), x, generator=0)),
        "mcmc.mala.MALA.run": ("MALA", lambda: MALA(n_steps=1).run(tiny_energy(), x,
                                                                   generator=0)),
        "mcmc.hmc.HMC.run": ("HMC", lambda: HMC(n_steps=1).run(tiny_energy(), x, generator=0)),
        "mcmc.gibbs.BlockGibbs.run": ("BlockGibbs", lambda: BlockGibbs().run(
            RBM(16, 2), x, generator=0)),
        "mcmc.metropolis.metropolis_start": ("MALA", lambda: metropolis_start(
            tiny_energy(), x, None, "MALA", 0)),
        "mcmc.multigrid.MultiGridSampler.run": ("MultiGridSampler", lambda: MultiGridSampler(
            (sampler,), ((2, 2),)).run([tiny_energy()], x[..., :2, :2], generator=0)),
        "data.masks.missing_frames": ("missing_frames", lambda: masks.missing_frames(
            4, 2, 2, fraction=0.5, generator=0)),
        "data.masks.occluded_region": ("occluded_region", lambda: masks.occluded_region(
            4, 2, 2, size=1, generator=0)),
        "data.masks.salt_and_pepper": ("salt_and_pepper", lambda: masks.salt_and_pepper(
            4, 2, 2, fraction=0.5, generator=0)),
        "evaluation.classification.stratified_folds": ("stratified_folds", lambda:
                                                       stratified_folds(idx, 2, generator=0)),
        "evaluation.classification.balanced_subset": ("balanced_subset", lambda:
                                                      balanced_subset(idx, 1, generator=0)),
        "evaluation.voxel.random_known": ("random_known",
                                          lambda: random_known((2,), 0.5, generator=0)),
        "energy.rbm.RBM.__init__": ("RBM", lambda: RBM(4, 2, generator=0)),
        "energy.rbm.RBM.sample_hidden": ("RBM.sample_hidden", lambda: RBM(4, 2).sample_hidden(
            torch.zeros(1, 4), generator=0)),
        "energy.rbm.RBM.sample_visible": ("RBM.sample_visible", lambda: RBM(
            4, 2).sample_visible(torch.zeros(1, 2), generator=0)),
        "energy.rbm.ais_log_partition": ("ais_log_partition", lambda: ais_log_partition(
            RBM(4, 2), n_chains=2, n_betas=2, generator=0)),
        "generator.ConvGenerator.sample_latent": ("ConvGenerator.sample_latent",
                                                  lambda: net.sample_latent(2, generator=0)),
        "cooperative.GeneratorStart.start": ("ConvGenerator.sample_latent", lambda:
                                             cooperative.GeneratorStart(net).start(
                                                 data, idx, generator=0)),
        "cooperative.propose_and_revise": ("propose_and_revise", lambda:
                                           cooperative.propose_and_revise(
                                               tiny_energy(), net, None, torch.zeros(1, 2),
                                               generator=0)),
        "cooperative.interpolate": ("cooperative.interpolate", lambda: cooperative.interpolate(
            tiny_energy(), net, None, torch.zeros(2), torch.ones(2), generator=0)),
        "cooperative.CooperativeTrainer.__init__": ("CooperativeTrainer", lambda:
                                                    cooperative.CooperativeTrainer(
                                                        tiny_energy(), net, sampler, data,
                                                        generator=0)),
        "shortrun.reconstruct": ("reconstruct", lambda: shortrun.reconstruct(
            tiny_energy(), sampler, x, z0=x, generator=0)),
        "shortrun.interpolate": ("shortrun.interpolate", lambda: shortrun.interpolate(
            tiny_energy(), sampler, x[0], x[1], generator=0)),
        "shortrun.run_each": ("run_each", lambda: shortrun.run_each(tiny_energy(), sampler, x,
                                                                     generator=0)),
        "train.Trainer.__init__": ("Trainer", lambda: Trainer(
            tiny_energy(), sampler, NoiseStart(NoiseInit()), data, generator=0)),
        "train.MultiGridTrainer.__init__": ("MultiGridTrainer", lambda: MultiGridTrainer(
            [tiny_energy()], [sampler], data, [(4, 4), (8, 8)], generator=0)),
        "jem.HybridTrainer.__init__": ("HybridTrainer", lambda: HybridTrainer(
            ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(64, 3))), sampler,
            NoiseStart(NoiseInit()), data, idx, generator=0)),
        "initializer.InitializerStart.start": ("InitializerStart.start", lambda:
                                               InitializerStart(Initializer([2], spatial_dims=2),
                                                                2, spatial_dims=2).start(
                                                   x, idx, generator=0)),
        "initializer.InitializerTrainer.__init__": ("InitializerTrainer", lambda:
                                                    InitializerTrainer(
                                                        tiny_energy(), Initializer(
                                                            [2], spatial_dims=2, width=2,
                                                            depth=2), sampler, data,
                                                        settings=InitializerConfig(),
                                                        factor=2, generator=0)),
        "build.multigrid_bases": ("multigrid_bases", lambda: build.multigrid_bases(
            None, x, 2, generator=0)),
        "recovery.recover": ("recover", lambda: recovery.recover(
            tiny_energy(), sampler, data[0], data[0] > 0, generator=0)),
        "recovery.CompletionChain.move": ("CompletionChain.move", lambda:
                                          recovery.CompletionChain(sampler).move(
                                              tiny_energy(), data[:1],
                                              KnownEntries(data[:1], data[:1] > 0),
                                              generator=0)),
        "recovery.holdout_like": ("holdout_like", lambda: recovery.holdout_like(
            clip_known, generator=0)),
        "learned_fill.learned_fill": ("learned_fill", lambda: learned_fill.learned_fill(
            clip, clip_known, [fill], settings=settings, generator=0)),
        "learned_fill.check_patterns": ("check_patterns", lambda: learned_fill.check_patterns(
            clip_known, settings, generator=0)),
        "learned_fill.fill_prior": ("fill_prior", lambda: learned_fill.fill_prior(
            [learned_fill.prior_example(clip, clip_known, {"t": fill})], settings=settings,
            iterations=1, generator=0)),
        "super_resolution.super_resolve_batch": ("super_resolve_batch", lambda:
                                                 super_resolution.super_resolve_batch(
                                                     tiny_energy(), sampler, voxels, 2,
                                                     generator=0)),
        "tasks.voxel.recover_batch": ("recover_batch", lambda: voxel_tasks.recover_batch(
            tiny_energy(), sampler, voxels, voxels_known, generator=0)),
        "tasks.voxel.recover_padded": ("recover_padded", lambda: voxel_tasks.recover_padded(
            tiny_energy(), sampler, voxels, voxels_known, generator=0)),
    }


SEED_CALLS = _seed_calls()

# Taking ``generator=`` but not checked on entry: the check itself, the samplers' steps after
# their checked start, the CUDA-graph replay of a checked Langevin run, the checkpointing of a
# trainer's own (checked) generator, and the protocols, which hold no code.
UNCHECKED = {"checks.check_generator",
             "mcmc.metropolis.metropolis_select", "mcmc.metropolis.metropolis_step",
             "mcmc.graphs.graph_generator_ok", "mcmc.graphs.run_as_cuda_graph",
             "distributed.gather_generators", "distributed.take_generator",
             "mcmc.base.Sampler.run", "mcmc.starts.ChainStart.start"}


@pytest.mark.parametrize("where", list(SEED_CALLS))
def test_every_random_function_names_a_seed_given_for_a_generator(where: str) -> None:
    owner, call = SEED_CALLS[where]
    with pytest.raises(ValueError, match=rf"^{re.escape(owner)}: generator must be a "
                                         r"torch.Generator or None, got int 0 \(for a seed: "):
        call()


def test_the_seed_check_covers_every_public_function_taking_a_generator() -> None:
    """So that a new random function cannot be left out of the test above: every public
    function and method of stgconv with a ``generator`` argument is in it or in UNCHECKED."""
    package = Path(__file__).resolve().parents[1] / "stgconv"
    found = set()
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            functions = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                functions = [(f"{node.name}.{item.name}", item) for item in node.body
                             if isinstance(item, ast.FunctionDef)]
            for name, function in functions:
                public = not function.name.startswith("_") or function.name == "__init__"
                arguments = function.args.args + function.args.kwonlyargs
                if public and any(argument.arg == "generator" for argument in arguments):
                    found.add(f"{module}.{name}")
    assert found == set(SEED_CALLS) | UNCHECKED


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -1e-9])
def test_check_finite_number_refuses_nan_infinities_and_negatives(value: float) -> None:
    with pytest.raises(ValueError, match=rf"^noise_std must be finite and >= 0, got {value}$"):
        check_finite_number(value, "noise_std")


@pytest.mark.parametrize("value", ["1", None, True, [1.0], torch.tensor([1.0, 2.0])])
def test_check_finite_number_names_a_value_that_is_no_number(value: object) -> None:
    """A string failed in math.isfinite's words ("must be real number, not str"), a tensor of
    several values in torch's ("only one element tensors can be converted"), True passed as
    1."""
    got = re.escape(repr(value))
    with pytest.raises(ValueError, match=rf"^grad_clip must be a number, got {got}$"):
        check_finite_number(value, "grad_clip", positive=True)


def test_check_finite_number_takes_zero_unless_positive() -> None:
    check_finite_number(0.0, "noise_scale")
    check_finite_number(1e-30, "step_size", positive=True)
    with pytest.raises(ValueError, match=r"^step_size must be finite and > 0, got 0.0$"):
        check_finite_number(0.0, "step_size", positive=True)


def test_class_numbers_take_every_int64_and_every_whole_double_up_to_2_to_the_53() -> None:
    """uint64 up to int64's largest and whole doubles up to 2^53 (the last at which every
    whole number is a double) are the classes they name; one past each is refused."""
    largest = np.iinfo(np.int64).max
    kept = class_numbers(np.array([0, 2**32, largest], np.uint64), "y")
    assert kept.dtype == np.int64 and kept.tolist() == [0, 2**32, largest]
    assert class_numbers(np.array([-(2.0**53), 2.0**53]), "y").tolist() == [-(2**53), 2**53]
    with pytest.raises(ValueError, match=r"^y must be class numbers, got 9223372036854775808$"):
        class_numbers(np.array([0, largest + 1], np.uint64), "y")
    with pytest.raises(ValueError, match=r"^y must be class numbers, got 1\.15e\+18$"):
        class_numbers(np.array([0.0, 2.0**60]), "y")


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64])
def test_class_numbers_of_no_labels_are_an_empty_int64_array(dtype) -> None:
    """A file of no shapes (or images) has no labels: nothing to check, not numpy's error
    for the largest of no values."""
    labels = class_numbers(np.zeros(0, dtype), "y")
    assert labels.dtype == np.int64 and labels.shape == (0,)


@pytest.mark.parametrize("data", [np.zeros(3), torch.zeros(3), b"shapes.npz"])
def test_check_path_names_the_argument_given_data_or_bytes(data) -> None:
    """pathlib's own TypeError ("expected str, bytes or os.PathLike object, not ndarray") named
    no argument."""
    with pytest.raises(ValueError, match=rf"^shapes must be a file's path \(a str or a "
                                         rf"pathlib.Path\), got {type(data).__name__}"):
        check_path(data, "shapes")
    check_path("shapes.npz", "shapes")
    check_path(Path("shapes.npz"), "shapes")


def test_npy_shape_reads_the_header_alone(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((6, 24, 24), np.uint8))
    assert npy_shape(tmp_path / "a.npy") == (6, 24, 24)
    np.save(tmp_path / "objects.npy", np.array([{}, []], dtype=object))
    assert npy_shape(tmp_path / "objects.npy") is None
    (tmp_path / "text.npy").write_text("no array")
    with pytest.raises(ValueError):
        npy_shape(tmp_path / "text.npy")
