"""The shared argument checks: counts are ints (numpy ints too, never bools or floats) at least
the minimum, frame sizes one positive int or a pair, voxel batches (B, 1, D, H, W), tensors within
the memory bound, output paths that can be written, damaged archives named; errors name the
argument and its value."""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stgconv.checks import (
    MAX_ENTRIES,
    as_int,
    as_size,
    check_entries,
    check_output,
    check_cache_version,
    check_voxels,
    open_npz,
    reading,
)


def test_as_int_accepts_ints_of_any_kind() -> None:
    assert as_int(3, "n", minimum=1) == 3
    value = as_int(np.int64(5), "n", minimum=0)
    assert value == 5 and type(value) is int
    assert as_int(0, "n", minimum=0) == 0


@pytest.mark.parametrize("value", [True, 2.0, "3", None, 0, -4])
def test_as_int_refuses_other_values_naming_them(value) -> None:
    with pytest.raises(ValueError, match=rf"n_frames must be an int >= 1, got {value!r}"):
        as_int(value, "n_frames", minimum=1)


def test_as_size() -> None:
    assert as_size(32) == (32, 32)
    assert as_size((24, np.int32(40))) == (24, 40)
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
        with pytest.raises(ValueError, match=f"--out {path} cannot be written: /proc takes no new "
                                             "file"):
            check_output(path, "--out", folder=folder)
    check_output(tmp_path, "--out")
    check_output(tmp_path / "new" / "table.json", "--json", folder=False)
    assert list(tmp_path.iterdir()) == []
