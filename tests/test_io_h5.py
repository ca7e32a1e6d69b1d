"""``stgconv.io.h5.LazyH5``: a read-only HDF5 handle opened on first use in each process, never
pickled, never shared across a fork, and closed on request; ``stream_h5``'s writes past a
failure."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from _tiny import file_size_limit

from stgconv.io.h5 import LazyH5, _KeptWrites

DATA = np.arange(12, dtype=np.int16).reshape(3, 4)


class Table(LazyH5):
    def __init__(self, root: Path) -> None:
        self.root = root

    def row(self, i: int) -> np.ndarray:
        return self._h5()["data"][i]


class IndexedTable(Table):
    """A Table that reads its length in ``__init__``, as the datasets read their index."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        with self._open_index() as h5:
            self.length = len(h5["data"])


def _write_table(path: Path, data: np.ndarray) -> None:
    """Write ``data`` as another process rebuilding the file does: whole, then renamed over it."""
    tmp = path.with_name(".t.h5.tmp")
    with h5py.File(tmp, "w") as h5:
        h5["data"] = data
    os.replace(tmp, path)


@pytest.fixture
def table(tmp_path: Path) -> Table:
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = DATA
    return Table(path)


def test_opens_on_first_use_read_only_and_once(table: Table) -> None:
    assert table._file is None  # nothing opened by construction
    handle = table._h5()
    assert isinstance(handle, h5py.File) and handle.mode == "r" and handle
    assert table._h5() is handle  # the same handle on later calls
    assert np.array_equal(table.row(2), DATA[2])
    assert table._pid == os.getpid()
    table.close()


def test_close_closes_and_next_use_reopens(table: Table) -> None:
    handle = table._h5()
    table.close()
    assert not handle  # the h5py file is really closed, not just forgotten
    assert table._file is None and table._pid is None
    table.close()  # twice is fine
    again = table._h5()
    assert again is not handle and again
    assert np.array_equal(table.row(0), DATA[0])
    table.close()


def test_close_before_any_use(table: Table) -> None:
    table.close()
    assert table._file is None
    assert np.array_equal(table.row(1), DATA[1])
    table.close()


def test_missing_file_fails_on_first_use(tmp_path: Path) -> None:
    table = Table(tmp_path / "missing.h5")  # construction touches nothing
    with pytest.raises(FileNotFoundError):
        table._h5()
    assert table._file is None


def test_pickle_carries_no_handle_and_keeps_the_original_open(table: Table) -> None:
    handle = table._h5()
    clone = pickle.loads(pickle.dumps(table))  # an h5py.File itself cannot be pickled
    assert clone._file is None and clone._pid is None and clone.root == table.root
    assert table._file is handle and handle  # pickling left the original's handle alone
    assert np.array_equal(clone.row(1), DATA[1])
    assert clone._file is not handle
    clone.close()
    assert handle  # closing the clone does not close the original's handle
    table.close()


def _child_uses_inherited(table: Table, inherited: h5py.File) -> None:
    # In a forked child: the parent's handle is abandoned, a new one opened; closing in the
    # child must not call close() on the inherited handle (HDF5 state shared with the parent).
    if not (table._file is inherited and table._pid != os.getpid()):
        raise SystemExit(3)
    own = table._h5()
    if own is inherited or table._pid != os.getpid():
        raise SystemExit(4)
    if not np.array_equal(own["data"][()], DATA):
        raise SystemExit(5)
    table._file = inherited  # as after fork, before any access: close() must leave it open
    table._pid = os.getppid()
    table.close()
    if not inherited or table._file is not None:
        raise SystemExit(6)
    own.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_handle(table: Table) -> None:
    handle = table._h5()
    child = multiprocessing.get_context("fork").Process(target=_child_uses_inherited,
                                                        args=(table, handle))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert table._file is handle and handle  # the parent's handle is untouched
    assert np.array_equal(table.row(2), DATA[2])
    table.close()


def test_rows_are_read_from_the_file_the_index_came_from_or_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    _write_table(path, DATA)
    table = IndexedTable(path)
    assert np.array_equal(table.row(2), DATA[2])  # the same file: read as ever
    table.close()
    _write_table(path, DATA[::-1] + 100)  # rebuilt meanwhile: its rows are not the index's
    with pytest.raises(ValueError, match=r"t\.h5 was replaced .* open it again"):
        table.row(0)
    assert table._file is None  # nothing kept open: the next use refuses it too
    again = IndexedTable(path)  # made again: the new file
    assert np.array_equal(again.row(0), DATA[-1] + 100)
    again.close()


def open_files(path: Path) -> list[h5py.h5f.FileID]:
    """The HDF5 handles of this process open on ``path``."""
    return [file for file in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
            if Path(os.fsdecode(file.name)) == path]


@pytest.mark.parametrize("change", ["renamed in with the old time and size",
                                    "rewritten in place", "grown in place, its time put back"])
def test_a_file_changed_in_any_part_of_its_identity_is_refused(tmp_path: Path,
                                                               change: str) -> None:
    """The file is told by device, inode, modification time and size, each needed: a file
    renamed in with the old one's time and size (as one given a freed inode's number would
    look), one rewritten in place, one grown in place with its time put back. The refused
    handle is closed, not left open on the file until the error is gone."""
    path = tmp_path / "t.h5"
    _write_table(path, DATA)
    table = IndexedTable(path)
    before = os.stat(path)
    if change == "renamed in with the old time and size":
        _write_table(path, DATA[::-1] + 100)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif change == "rewritten in place":
        with h5py.File(path, "r+") as h5:
            h5["data"][...] = DATA[::-1]
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # a later write
    else:
        with open(path, "ab") as file:
            file.write(bytes(16))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    changed = [before.st_ino != after.st_ino, before.st_mtime_ns != after.st_mtime_ns,
               before.st_size != after.st_size]
    assert sum(changed) == 1, changed  # each case changes one part only
    with pytest.raises(ValueError, match=r"t\.h5 was replaced") as refused:
        table.row(0)
    assert refused.value and open_files(path) == []  # the error (and its frame) still held


def test_writes_past_a_refused_one_are_kept_and_read_back(tmp_path: Path) -> None:
    """What HDF5 reads after a failed write is what it wrote (so that it closes the file
    cleanly), the bytes before the failure from the file, those after from memory."""
    written = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        with file_size_limit(6_000):
            kept.write(written[:5_000])
            kept.check()
            kept.seek(3_000)
            kept.write(written[3_000:])  # refused from byte 6,000 on
        kept.seek(0)
        assert kept.read() == written and kept.tell() == 10_000
        with pytest.raises(OSError, match=r"^\[Errno 27\] File too large$"):
            kept.check()
    assert (tmp_path / "f").read_bytes() == written[:6_000]


def test_an_interrupt_in_a_write_waits_for_the_check(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C in the system call: raised into HDF5, it failed the write as a full disk does."""
    def interrupted(*_) -> int:
        raise KeyboardInterrupt

    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        monkeypatch.setattr(os, "pwrite", interrupted)
        assert kept.write(b"header") == 6
        monkeypatch.undo()
        kept.seek(0)
        assert kept.read() == b"header"
        with pytest.raises(KeyboardInterrupt):
            kept.check()
