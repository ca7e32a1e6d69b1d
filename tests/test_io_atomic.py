"""Atomic writes (``stgconv.io.atomic``): a reader sees the old file or the whole new one, never
a half-written one, and no temporary file is left behind whatever the writer does; the files
written together go into place together or not at all."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _tiny import file_size_limit

from stgconv.io import atomic
from stgconv.io.atomic import (
    WriteError,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    remove_temporaries,
    remove_unwritten,
    write_error,
    written_together,
)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Names in ``folder`` other than ``keep``: stray temporary files."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_result_appears_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    seen: dict[str, object] = {}

    def write(tmp: str) -> None:
        Path(tmp).write_text("new, first half")
        seen["during"] = path.read_text()  # the real name still holds the old file
        seen["tmp"] = Path(tmp)
        with open(tmp, "a") as file:
            file.write(", second half")

    assert atomic_write(str(path), write) == path  # a str path comes back as a Path
    assert seen["during"] == "old"
    assert path.read_text() == "new, first half, second half"
    tmp = seen["tmp"]
    # Beside the result (a rename across filesystems would not be atomic), hidden (so a folder
    # listing taken meanwhile skips it), and gone once renamed.
    assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp != path
    assert leftovers(tmp_path, {"out.txt"}) == []


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_writer_failing_midway_keeps_the_old_file(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old content")

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == b"old content"
    assert leftovers(tmp_path, {"out.bin"}) == []


def test_writer_failing_leaves_no_file_when_there_was_none(tmp_path: Path) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text("partial")
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        atomic_write(tmp_path / "new.txt", write)
    assert leftovers(tmp_path, set()) == []


def test_writer_that_removes_its_temporary_file(tmp_path: Path) -> None:
    # The rename fails; the error surfaces and the old file survives.
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(FileNotFoundError):
        atomic_write(path, os.unlink)
    assert path.read_text() == "old" and leftovers(tmp_path, {"out.txt"}) == []


def record_flushes_and_renames(monkeypatch) -> list[tuple[str, str]]:
    """From now on, every ``os.fsync`` (the path flushed) and ``os.replace`` (the destination),
    in order, as ``("fsync" | "replace", path)``."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return events


def test_the_file_is_on_disk_before_its_rename_and_the_rename_after(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """What survives a power cut: the temporary's data flushed before the rename, the folder
    (holding the rename) flushed after it; the rename alone orders only what a running system
    shows."""
    events = record_flushes_and_renames(monkeypatch)
    path = atomic_write_text(tmp_path / "out.txt", "durable")
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".out.txt.")  # the temporary, whole
    assert events[1][1] == str(path) and events[2][1] == str(tmp_path)


def test_without_replace_a_file_written_meanwhile_is_kept(tmp_path: Path) -> None:
    """replace=False: another process writing the file while this one works (past any check
    made before the work) keeps its file; this write is refused naming the file."""
    path = tmp_path / "cache.h5"

    def write_as_the_other_finishes(tmp: str) -> None:
        Path(tmp).write_text("ours")
        path.write_text("theirs")

    with pytest.raises(FileExistsError, match="written meanwhile") as caught:
        atomic_write(path, write_as_the_other_finishes, replace=False)
    assert caught.value.filename == str(path) and path.read_text() == "theirs"
    assert leftovers(tmp_path, {"cache.h5"}) == []
    path.unlink()
    atomic_write(path, lambda tmp: Path(tmp).write_text("ours"), replace=False)
    assert path.read_text() == "ours" and path.stat().st_nlink == 1
    assert leftovers(tmp_path, {"cache.h5"}) == []


def test_without_replace_a_link_refused_for_another_reason_is_the_writes_error(
        tmp_path: Path, monkeypatch) -> None:
    """Only a file system without hard links gets the rename: a link refused otherwise (here
    a full disk) is the write's error, naming the file, and nothing is put in place."""
    def full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", src, None, dst)

    monkeypatch.setattr(os, "link", full)
    path = tmp_path / "out.txt"
    with pytest.raises(WriteError, match=f"No space left on device: '{path}'"):
        atomic_write(path, lambda tmp: Path(tmp).write_text("ours"), replace=False)
    assert not path.exists() and leftovers(tmp_path, set()) == []


@pytest.mark.parametrize("number", sorted({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}))
def test_without_replace_and_without_hard_links_a_file_there_is_kept(tmp_path: Path, number: int,
                                                                     monkeypatch) -> None:
    """A file system without hard links (FAT, some network mounts): checked, then renamed."""
    def refused(*_: object) -> None:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(os, "link", refused)
    path = atomic_write_text(tmp_path / "out.txt", "first")
    with pytest.raises(FileExistsError, match="written meanwhile"):
        atomic_write(path, lambda tmp: Path(tmp).write_text("second"), replace=False)
    path.unlink()
    atomic_write(path, lambda tmp: Path(tmp).write_text("third"), replace=False)
    assert path.read_text() == "third" and leftovers(tmp_path, {"out.txt"}) == []
    with written_together(), pytest.raises(ValueError, match="outside written_together"):
        atomic_write(path, lambda tmp: Path(tmp).write_text("fourth"), replace=False)


def test_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.txt"
    assert atomic_write_text(path, "deep") == path
    assert path.read_text() == "deep"
    assert leftovers(path.parent, {"c.txt"}) == []


def test_result_gets_the_mode_of_a_new_file(tmp_path: Path) -> None:
    # mkstemp makes a private 0600 file; the result must get 0666 less the umask instead.
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
        # The umask is read by setting it: the process's own is put back, or every file it
        # made afterwards would be writable by anyone.
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_text_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    atomic_write_text(path, "a much longer first version\n")
    assert atomic_write_text(path, "short") == path
    assert path.read_text() == "short"  # no tail of the longer version


def test_json_round_trip_and_indent(tmp_path: Path) -> None:
    data = {"psnr": [31.5, 28.25], "name": "ours", "nested": {"n": 3, "ok": True, "none": None}}
    path = atomic_write_json(tmp_path / "m.json", data)
    assert json.loads(path.read_text()) == data
    assert path.read_text().splitlines()[1] == ' "psnr": ['  # indent=1


def holding_itself() -> dict:
    data: dict = {"v": [1.0]}
    data["v"].append(data)
    return data


@pytest.mark.parametrize(("data", "error", "message"), [
    ({"v": object()}, TypeError, "not JSON serializable"),
    # Refused by json for another reason than a non-finite number: its own error, not a search
    # for a NaN that is not there (nor one going round the cycle until Python's recursion limit).
    ({"v": 10**5000}, ValueError, "Exceeds the limit"),
    (holding_itself(), ValueError, "Circular reference detected"),
])
def test_json_unserializable_keeps_the_old_file(tmp_path: Path, data: object,
                                                error: type[Exception], message: str) -> None:
    path = tmp_path / "m.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(error, match=message):
        atomic_write_json(path, data)
    assert json.loads(path.read_text()) == {"v": 1}
    assert leftovers(tmp_path, {"m.json"}) == []


@pytest.mark.parametrize(("data", "where"), [
    ({"errors": {"stgconv": 1.0, "fill": float("nan")}}, "errors.fill"),
    ({"history": [{"loss": 0.5}, {"loss": -np.inf}]}, r"history\[1\]\.loss"),
    # numpy's float64, as a mean over an array gives it (a float, written by json as one).
    ({"psnr": np.float64("nan")}, "psnr"),
    ({"size": (1.0, float("inf"))}, r"size\[1\]"),  # a tuple is written as a list
    (float("inf"), "the value"),
])
def test_json_refuses_a_non_finite_number_naming_it_and_keeps_the_old_file(
        tmp_path: Path, data: object, where: str) -> None:
    """Python wrote NaN and Infinity, which no JSON reader but Python's takes (jq, JSON.parse):
    a table that holds one is refused, naming the value, and nothing is written."""
    path = tmp_path / "m.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(ValueError, match=rf"m\.json: {where} is not a finite number"):
        atomic_write_json(path, data)
    assert json.loads(path.read_text()) == {"v": 1}
    assert leftovers(tmp_path, {"m.json"}) == []


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int64, np.bool_])
def test_npy_round_trip(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    path = atomic_save_npy(tmp_path / "grids.npy", array)
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == array.dtype and loaded.shape == (2, 3, 4)
    assert np.array_equal(loaded, array)


def test_npz_round_trip_is_compressed_under_exactly_the_given_name(tmp_path: Path) -> None:
    arrays = {"occupancy": np.zeros((8, 8, 8), np.float32), "labels": np.arange(3)}
    path = atomic_save_npz(tmp_path / "shapes.npz", **arrays)
    assert path == tmp_path / "shapes.npz" and leftovers(tmp_path, {"shapes.npz"}) == []
    with np.load(path, allow_pickle=False) as loaded:
        assert sorted(loaded) == sorted(arrays)
        for name, array in arrays.items():
            assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_a_folder_in_the_way_is_the_writes_error_not_a_special_file(tmp_path: Path) -> None:
    """A folder where the file should go fails the rename, naming the file (the CLI exits 1),
    and is left as it was; it is not called a device or pipe."""
    folder = tmp_path / "out.txt"
    folder.mkdir()
    with pytest.raises(WriteError) as failure:
        atomic_write_text(folder, "x")
    assert isinstance(failure.value, IsADirectoryError)
    assert failure.value.filename == str(folder)
    assert folder.is_dir() and leftovers(tmp_path, {"out.txt"}) == []


def test_npy_writes_exactly_the_given_name(tmp_path: Path) -> None:
    # np.save given a file name without ".npy" would append it; the helper must not.
    path = atomic_save_npy(tmp_path / "grid.bin", np.ones(3))
    assert path == tmp_path / "grid.bin"
    assert leftovers(tmp_path, set()) == ["grid.bin"]
    assert np.array_equal(np.load(path), np.ones(3))


def test_npy_refuses_object_arrays_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = atomic_save_npy(tmp_path / "a.npy", np.zeros(2))
    with pytest.raises(ValueError):
        atomic_save_npy(path, np.array([{"a": 1}, None], dtype=object))  # would need pickle
    assert np.array_equal(np.load(path), np.zeros(2))
    assert leftovers(tmp_path, {"a.npy"}) == []


def test_remove_temporaries_removes_only_what_a_killed_write_left(tmp_path: Path,
                                                                  dead_pid: int) -> None:
    killed = [f".checkpoint.pt.{dead_pid}-k2j4.tmp", f".mesh.ply.{dead_pid}-x1_y.tmp.ply",
              f".two\nlines.png.{dead_pid}-q7.tmp"]  # a name may hold a newline
    kept = [f".config.yaml.{os.getpid()}-x1.tmp", ".notes.k2j4.tmp", "checkpoint.pt", ".lock",
            "notes.tmp",
            f".notes.{dead_pid}-q7.tmp\n"]  # not a temporary's name: "$" matched before "\n"
    for name in killed + kept:
        (tmp_path / name).write_text("x")
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(killed)
    assert leftovers(tmp_path, set()) == sorted(kept)


def test_the_next_write_into_a_folder_removes_what_a_killed_write_left(tmp_path: Path,
                                                                     dead_pid: int) -> None:
    debris = tmp_path / f".samples.png.{dead_pid}-abc.tmp"
    debris.write_bytes(b"half a picture")
    atomic_write_text(tmp_path / "other.txt", "new")
    assert leftovers(tmp_path, {"other.txt"}) == []


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A child process killed in the middle of a write (no exception, no cleanup) leaves its
    temporary behind; the temporary carries the child's own process id, so the next write
    into the folder knows it for debris."""
    pid = os.fork()
    if pid == 0:  # the child: dies inside its writer
        try:
            atomic_write(tmp_path / "result.npy", lambda tmp: os._exit(0))
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    assert len(leftovers(tmp_path, set())) == 1  # the killed write's temporary
    atomic_write_text(tmp_path / "other.txt", "new")
    assert leftovers(tmp_path, {"other.txt"}) == []


def test_a_temporary_named_with_an_impossible_process_id_is_debris(tmp_path: Path) -> None:
    # No process has an id past what the kernel's kill() takes (OverflowError).
    debris = tmp_path / f".out.txt.{2**70}-abc.tmp"
    debris.write_text("x")
    assert remove_temporaries(tmp_path) == [debris]


def test_a_writers_error_without_a_number_keeps_its_message(tmp_path: Path) -> None:
    """An OSError with only a message (open3d's failed PLY write) is re-raised as it is:
    rebuilt as OSError(errno, strerror, path) it read '[Errno None] None: ...'."""
    def fails(tmp: str) -> None:
        raise OSError("open3d could not write the mesh")

    with pytest.raises(OSError, match="^open3d could not write the mesh$"):
        atomic_write(tmp_path / "mesh.ply", fails)
    assert leftovers(tmp_path, set()) == []


def test_a_full_disk_is_reported_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_text("old")

    def full_disk(tmp: str) -> None:  # what np.save / torch.save into a file object raise
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=f"No space left on device: '{path}'"):
        atomic_write(path, full_disk)
    assert path.read_text() == "old"
    assert leftovers(tmp_path, {"checkpoint.pt"}) == []


def test_a_full_disk_under_np_save_names_the_file_and_the_reason(tmp_path: Path) -> None:
    """numpy writes a real file with ndarray.tofile, whose error was "80000 requested and 4096
    written": neither the file nor why (no errno for the rest of the message)."""
    path = tmp_path / "synthesized.npy"
    with pytest.raises(WriteError, match=f"File too large: '{path}'"):
        with file_size_limit(4096):
            atomic_save_npy(path, np.zeros(10_000))
    assert leftovers(tmp_path, set()) == []


def test_a_failed_write_is_a_write_error_of_its_errnos_kind(tmp_path: Path) -> None:
    """WriteError (which the CLI exits 1 for, not 2) that is still the OSError subclass of its
    errno: a caller catching FileNotFoundError or PermissionError still does."""
    with pytest.raises(WriteError) as failure:
        atomic_write(tmp_path / "out.txt", os.unlink)  # the rename finds no temporary
    assert isinstance(failure.value, FileNotFoundError)
    assert failure.value.filename == str(tmp_path / "out.txt")
    # One class per errno, not one made for each failure (a caller may compare them).
    assert type(write_error(errno.ENOENT, "No such file", "a")) is type(failure.value)
    # Pickled as a process pool sends it: its class is made at run time, which pickle, finding
    # classes by name, refused.
    failure.value.add_note("while saving the samples")  # what a caller may add on its way up
    twin = pickle.loads(pickle.dumps(failure.value))
    assert type(twin) is type(failure.value) and str(twin) == str(failure.value)
    assert (twin.errno, twin.filename) == (failure.value.errno, failure.value.filename)
    assert twin.__notes__ == ["while saving the samples"]


def test_a_writers_error_about_another_file_names_that_file(tmp_path: Path) -> None:
    """A source the writer reads that is missing is the writer's own error, not a failed write:
    it keeps the source's name (taken for the destination's, it named a file that was never
    the problem) and is no WriteError (the CLI's exit 1)."""
    missing = tmp_path / "source.bin"

    def copies_a_missing_file(tmp: str) -> None:
        shutil.copyfile(missing, tmp)

    with pytest.raises(FileNotFoundError) as failure:
        atomic_write(tmp_path / "out.bin", copies_a_missing_file)
    assert failure.value.filename == str(missing)
    assert not isinstance(failure.value, WriteError)
    assert leftovers(tmp_path, set()) == []


def test_a_copy_onto_a_full_disk_names_the_file_written(tmp_path: Path) -> None:
    """shutil.copyfile's error names its source and the temporary it writes (keeping
    checkpoint_previous.pt): a failed write all the same, named after the file asked for."""
    source = tmp_path / "checkpoint.pt"
    source.write_bytes(bytes(10_000))
    path = tmp_path / "checkpoint_previous.pt"
    with pytest.raises(WriteError, match=rf"^\[Errno 27\] File too large: '{path}'$"):
        with file_size_limit(4096):
            atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
    assert leftovers(tmp_path, {"checkpoint.pt"}) == []


def test_a_temporary_that_cannot_be_removed_does_not_hide_the_error(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """An I/O error, then the folder gone read-only before the temporary could be removed: the
    unlink's error (naming the temporary) replaced the one that stopped the write."""
    path = tmp_path / "x.json"

    def io_error(tmp: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def read_only(name: str) -> None:
        raise OSError(errno.EROFS, "Read-only file system", name)

    monkeypatch.setattr(atomic.os, "unlink", read_only)
    with pytest.raises(WriteError, match=f"Input/output error: '{path}'"):
        atomic_write(path, io_error)
    with pytest.raises(KeyboardInterrupt):  # files written together: the same
        with written_together():
            atomic_write_text(path, "{}")
            raise KeyboardInterrupt


def test_errors_name_the_file_asked_for_not_its_temporary(tmp_path: Path, monkeypatch) -> None:
    """A folder that takes no new file (read-only, /proc) failed naming '.x.json.<pid>-<random>
    .tmp', a file the user never asked for; so did a writer whose own error names its path."""
    path = tmp_path / "x.json"

    def opens_by_name(tmp: str) -> None:
        os.open(tmp, os.O_CREAT | os.O_EXCL)  # a writer whose error names the temporary

    with pytest.raises(OSError, match=f"File exists: '{path}'"):
        atomic_write(path, opens_by_name)

    def read_only(**_: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".x.json.1-a.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(WriteError, match=f"Read-only file system: '{path}'"):
        atomic_write(path, lambda tmp: None)
    assert leftovers(tmp_path, set()) == []


def test_a_folder_named_like_a_killed_writers_temporary_is_left_alone(tmp_path,
                                                                      dead_pid: int) -> None:
    """Only files are debris: a folder whose name matches the temporary pattern of a dead
    process is neither removed nor an error for the next write into its parent."""
    folder = tmp_path / f".cache.{dead_pid}-abc.tmp"
    folder.mkdir()
    assert remove_temporaries(tmp_path) == []
    atomic_write_text(tmp_path / "out.txt", "x")
    assert folder.is_dir() and (tmp_path / "out.txt").read_text() == "x"


def test_a_temporary_of_another_users_live_process_is_kept(tmp_path, monkeypatch) -> None:
    """A process the writer may not signal (PermissionError) still exists: the temporary it
    is writing is not taken for debris."""
    def denied(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "kill", denied)
    temporary = tmp_path / ".result.json.1-abc.tmp"
    temporary.write_text("being written")
    assert atomic.remove_temporaries(tmp_path) == []
    assert temporary.exists()


def test_a_symbolic_link_writes_its_target_and_stays_a_link(tmp_path: Path) -> None:
    """The rename replaced the link itself with a file, and the target kept its old text."""
    target = tmp_path / "target.json"
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    atomic_write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and target.read_text() == "new"
    (tmp_path / "dangling.json").symlink_to(tmp_path / "missing.json")
    atomic_write_text(tmp_path / "dangling.json", "made")
    assert (tmp_path / "dangling.json").is_symlink()
    assert (tmp_path / "missing.json").read_text() == "made"


@pytest.mark.parametrize("name", ["fifo", "link"])
def test_a_named_pipe_or_device_is_refused_not_replaced(tmp_path: Path, name: str) -> None:
    """The rename put a regular file in the place of a device or pipe: `--json /dev/null` run
    as root replaced the system's /dev/null (a named pipe stands in for it here)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    with pytest.raises(ValueError, match=f"cannot write {fifo}: it is not a regular file"):
        atomic_write_json(tmp_path / name, {"a": 1})
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert leftovers(tmp_path, {"fifo", "link"}) == []


@pytest.mark.parametrize("letter", ["a", "é", "中"])
def test_a_name_near_the_file_systems_limit_is_written(tmp_path: Path, letter: str) -> None:
    """The temporary's name carried the whole name plus the pid and a random part: a legal
    240-character name was refused as 'File name too long'."""
    name = letter * (255 // len(letter.encode()) - 5) + ".json"
    atomic_write_text(tmp_path / name, "{}")
    assert (tmp_path / name).read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_files_written_together_go_into_place_at_the_blocks_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    with written_together():
        atomic_write_text(tmp_path / "a.txt", "new a")
        atomic_write_text(tmp_path / "b.txt", "first b")
        atomic_write_text(tmp_path / "b.txt", "new b")  # written twice: the last wins
        with written_together():  # a nested block joins the outer one
            atomic_save_npy(tmp_path / "c.npy", np.arange(3))
        # nothing in place yet, each file waiting whole under its temporary name
        assert (tmp_path / "a.txt").read_text() == "old a"
        assert not (tmp_path / "b.txt").exists() and not (tmp_path / "c.npy").exists()
        assert len(leftovers(tmp_path, {"a.txt"})) == 3
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert (tmp_path / "b.txt").read_text() == "new b"
    assert np.load(tmp_path / "c.npy").tolist() == [0, 1, 2]
    assert leftovers(tmp_path, {"a.txt", "b.txt", "c.npy"}) == []


def test_files_written_together_are_on_disk_before_their_renames_and_the_renames_after(
        tmp_path: Path, monkeypatch) -> None:
    """As for one file: each temporary flushed before any rename, and each folder holding a
    rename flushed after them (else a power cut could leave the names on empty files)."""
    events = record_flushes_and_renames(monkeypatch)
    (tmp_path / "sub").mkdir()
    with written_together():
        atomic_write_text(tmp_path / "a.txt", "a")
        atomic_write_text(tmp_path / "sub" / "b.txt", "b")
    assert [kind for kind, _ in events] == ["fsync", "fsync", "replace", "replace",
                                            "fsync", "fsync"]
    assert {path for _, path in events[4:]} == {str(tmp_path), str(tmp_path / "sub")}


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt()])
def test_files_written_together_stay_as_they_were_if_the_last_fails(tmp_path: Path,
                                                                     error: BaseException) -> None:
    """A full disk (or an interrupt) at a result's last file: its first file is not replaced
    either, so a picture never sits beside the array of another run."""
    (tmp_path / "result.png").write_text("old picture")
    (tmp_path / "result.npy").write_text("old array")

    def fail(_: str) -> None:
        raise error

    with pytest.raises(type(error)):
        with written_together():
            atomic_write_text(tmp_path / "result.png", "new picture")
            atomic_write_text(tmp_path / "new.txt", "new")
            atomic_write(tmp_path / "result.npy", fail)
    assert (tmp_path / "result.png").read_text() == "old picture"
    assert (tmp_path / "result.npy").read_text() == "old array"
    assert leftovers(tmp_path, {"result.png", "result.npy"}) == []


def test_an_earlier_results_files_not_written_again_go_once_the_new_ones_are_in_place(
        tmp_path: Path) -> None:
    """An earlier result's files that the new one has none of (a video's GIF beside an
    image's new PNG) are removed at the block's end, the new files and other files kept; a
    block that fails removes none."""
    for name in ("result.png", "result.gif", "notes.txt"):
        (tmp_path / name).write_text("earlier")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "mine.gif").write_text("a user's")
    (tmp_path / "linked.gif").symlink_to(tmp_path / "user" / "mine.gif")

    def is_result(name: str) -> bool:
        return name.endswith((".png", ".gif"))

    with pytest.raises(KeyboardInterrupt):
        with written_together():
            remove_unwritten(tmp_path, is_result)
            atomic_write_text(tmp_path / "result.png", "new")
            raise KeyboardInterrupt
    assert (tmp_path / "result.gif").read_text() == "earlier"
    with written_together():
        remove_unwritten(tmp_path, is_result)
        atomic_write_text(tmp_path / "result.png", "new")
        assert (tmp_path / "result.gif").exists()  # not before the new files are in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linked.gif", "notes.txt",
                                                          "result.png", "user"]
    assert (tmp_path / "result.png").read_text() == "new"
    with pytest.raises(ValueError, match="within written_together"):
        remove_unwritten(tmp_path, is_result)


def test_a_folder_in_the_way_of_a_file_written_together_puts_none_in_place(
        tmp_path: Path) -> None:
    """A folder named like the result's array (synthesize --out DIR with DIR/synthesized.npy a
    folder): the picture went into place, then the array's rename failed naming the temporary
    ('.synthesized.npy.<pid>-<random>.tmp' -> ...), a new picture beside no new array. None
    goes in place, and the error names the file, as a single write's does (the CLI exits 1)."""
    (tmp_path / "result.png").write_text("old picture")
    (tmp_path / "result.npy").mkdir()
    with pytest.raises(WriteError) as failure:
        with written_together():
            atomic_write_text(tmp_path / "result.png", "new picture")
            atomic_write_text(tmp_path / "result.npy", "new array")
    assert isinstance(failure.value, IsADirectoryError)
    assert failure.value.filename == str(tmp_path / "result.npy")
    assert ".tmp" not in str(failure.value)
    assert (tmp_path / "result.png").read_text() == "old picture"
    assert leftovers(tmp_path, {"result.png", "result.npy"}) == []


def test_a_rename_refused_at_the_blocks_end_leaves_no_temporaries(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        with written_together():
            atomic_write_text(tmp_path / "a.txt", "a")
            atomic_write_text(tmp_path / "b", "b")
            (tmp_path / "b").mkdir()  # the name is taken by a folder meanwhile
            (tmp_path / "b" / "inside").write_text("x")
    assert leftovers(tmp_path, {"a.txt", "b"}) == []


def test_on_windows_no_process_is_signalled_and_no_folder_opened(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Windows has no signal 0: ``os.kill(pid, 0)`` ends the process there, so a picture and
    its array written together (the second write looking through the folder for debris)
    ended the writer itself; and ``os.open`` refuses a folder, so flushing the folder after
    the rename failed every write."""
    signalled = []
    real_open = os.open

    def windows_open(path: str | Path, flags: int, *args: object) -> int:
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic, "_WINDOWS", True, raising=False)
    monkeypatch.setattr(atomic.os, "kill", lambda pid, signal: signalled.append(pid))
    monkeypatch.setattr(atomic.os, "open", windows_open)
    events = record_flushes_and_renames(monkeypatch)
    debris = tmp_path / ".result.json.1-abc.tmp"
    debris.write_text("left by a killed writer")
    with written_together():
        atomic_write_text(tmp_path / "picture.txt", "picture")
        atomic_write_text(tmp_path / "array.txt", "array")
    assert signalled == []
    # Each file's data is still flushed before its rename: only the folders are not.
    flushed = [Path(path).name for kind, path in events if kind == "fsync"]
    assert [name.split(f".{os.getpid()}-")[0] for name in flushed] == [".picture.txt", ".array.txt"]
    assert (tmp_path / "picture.txt").read_text() == "picture" and debris.exists()
    assert leftovers(tmp_path, {"picture.txt", "array.txt", debris.name}) == []


def test_a_file_in_the_way_of_the_folder_is_named(tmp_path: Path) -> None:
    """mkdir's error named the folder it could not make ("[Errno 20] Not a directory:
    'a_file/sub'" or "[Errno 17] File exists: 'a_file'"), neither the file asked for nor the
    file in the way."""
    (tmp_path / "a_file").write_text("x")
    for path in (tmp_path / "a_file" / "out.json", tmp_path / "a_file" / "sub" / "out.json"):
        with pytest.raises(NotADirectoryError, match=rf"{tmp_path / 'a_file'} is a file, not a "
                                                     rf"folder: '{path}'"):
            atomic_write_text(path, "{}")
    assert (tmp_path / "a_file").read_text() == "x"
