"""``stgconv.io.h5.LazyH5``: a read-only HDF5 handle opened on first use in each process, never
pickled, never shared across a fork, and closed on request; ``stream_h5``'s writes past a
failure."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import pytest
from _tiny import file_size_limit

from stgconv.io.h5 import LazyH5, _KeptWrites, _interrupts_kept, as_text, stream_h5, write_h5

DATA = np.arange(12, dtype=np.int16).reshape(3, 4)
REPO = Path(__file__).resolve().parents[1]


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


def test_a_pickled_dataset_refuses_a_file_replaced_after_its_index_was_read(tmp_path: Path
                                                                           ) -> None:
    """What a spawned worker gets: the index's file travels with it, the handle does not."""
    path = tmp_path / "t.h5"
    _write_table(path, DATA)
    clone = pickle.loads(pickle.dumps(IndexedTable(path)))
    _write_table(path, DATA[::-1] + 100)
    with pytest.raises(ValueError, match=r"t\.h5 was replaced"):
        clone.row(0)


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


CTRL_C_AS_HDF5_CLOSES = """
import ctypes, functools, os, signal, sys, traceback
from pathlib import Path
from stgconv.io import h5
from stgconv.io.atomic import atomic_write

# HDF5 calls flush as it closes the file, then truncate: C's raise, with no Python frame, as
# Ctrl-C lands while HDF5 runs its own code; Python raises it on entering truncate.
h5._KeptWrites.flush = functools.partial(getattr(ctypes.CDLL(None), "raise"), signal.SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)  # started in the background: ignored
out = Path(sys.argv[1]) / "out.h5"
try:
    atomic_write(out, functools.partial(h5.stream_h5, fill=lambda f, check: f.create_dataset(
        "x", data=list(range(10)))))
    print("written")
except KeyboardInterrupt as err:
    del h5._KeptWrites.flush  # not again as the stream's file object is freed
    raisers = [frame.name for frame in traceback.extract_tb(err.__traceback__)]
    print("interrupted, raised by the check:", "check" in raisers, os.listdir(sys.argv[1]))
"""


def test_ctrl_c_while_hdf5_runs_is_raised_once_it_closed_the_stream(tmp_path: Path) -> None:
    """Raised into the method HDF5 had called, it failed the write as a full disk does: at
    close HDF5 2.0 crashed the process (a segfault), or it closed the file as if written."""
    done = subprocess.run([sys.executable, "-c", CTRL_C_AS_HDF5_CLOSES, str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "interrupted, raised by the check: True []\n", "")


def refused_from_byte_6000(file: BinaryIO, *, seed: int) -> tuple[_KeptWrites, bytes]:
    """The kept writes of ``file`` (unbuffered) once 10,000 random bytes (none zero) were
    written to it and the system refused them from byte 6,000 on; and those bytes."""
    written = np.random.default_rng(seed).integers(1, 256, 10_000, dtype=np.uint8).tobytes()
    kept = _KeptWrites(file.fileno())
    with file_size_limit(6_000):
        kept.write(written)
    return kept, written


def test_bytes_cut_past_a_refused_write_read_as_zeros_once_the_file_grows(tmp_path: Path
                                                                           ) -> None:
    """Cut, they were only forgotten (the file not truncated after the failure): the kept
    pages and the file behind them showed them again."""
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept, written = refused_from_byte_6000(file, seed=1)
        kept.seek(2_000)
        kept.truncate()  # at the position, as a file's
        kept.truncate(9_000)
        kept.seek(0)
        assert kept.read() == written[:2_000] + bytes(7_000)


def test_a_refused_truncate_is_raised_by_the_check(tmp_path: Path) -> None:
    """Its bytes read as zeros all the same."""
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        with file_size_limit(1_000):
            assert kept.truncate(5_000) == 5_000
        assert kept.read() == bytes(5_000)
        with pytest.raises(OSError, match=r"^\[Errno 27\] File too large$"):
            kept.check()


def test_ctrl_c_in_the_fills_own_code_is_raised_there(tmp_path: Path) -> None:
    """Only where HDF5 called the stream is it kept for the check."""
    (tmp_path / "f.h5").touch()  # as atomic_write makes its temporary
    # Python's own handler, as in a terminal (a process started in the background ignores it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    went_on = []

    def fill(h5: h5py.File, check) -> None:
        h5["x"] = DATA
        signal.raise_signal(signal.SIGINT)
        went_on.append(True)

    try:
        with pytest.raises(KeyboardInterrupt):
            stream_h5(str(tmp_path / "f.h5"), fill)
        assert went_on == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_stream_reads_writes_and_seeks_as_a_file(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        kept.write(b"0123456789")
        assert kept.seek(0) == 0 and kept.read(4) == b"0123" and kept.tell() == 4
        assert kept.seek(0) == 0 and kept.read() == b"0123456789"
        kept.seek(0)
        kept.write(b"abc")  # over bytes read before: no copy of them kept
        assert kept.seek(-4, os.SEEK_END) == 6 and kept.seek(-5, os.SEEK_CUR) == 1
        assert kept.read() == b"bc3456789" and kept.read() == b""
        kept.seek(20)  # past the end
        assert kept.read() == b"" and kept.tell() == 20


def test_writes_after_a_refused_one_stay_in_memory(tmp_path: Path) -> None:
    """Those that the system would take too: the file ends at the refusal."""
    written = np.random.default_rng(2).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        with file_size_limit(6_000):
            kept.write(written[:5_000])
            kept.write(written[5_000:])  # refused from byte 6,000 on, in the second page
            kept.seek(0)
            kept.write(b"new")
        kept.seek(0)
        assert kept.read() == b"new" + written[3:]
    assert (tmp_path / "f").read_bytes() == written[:6_000]


def test_a_kept_write_over_two_pages_keeps_the_rest_of_the_second(tmp_path: Path) -> None:
    """After a refusal, a write that ends inside a kept page changes only its own bytes."""
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept, written = refused_from_byte_6000(file, seed=3)
        kept.seek(100)
        kept.write(bytes(5_000))  # pages 0 and 1, ending inside page 1
        kept.seek(0)
        assert kept.read() == written[:100] + bytes(5_000) + written[5_100:]


def test_a_read_after_a_refusal_starts_at_its_offset_inside_a_page(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept, written = refused_from_byte_6000(file, seed=5)
        kept.seek(4_100)  # in page 1, kept since the refusal
        assert kept.read(3_000) == written[4_100:7_100]


def test_a_kept_write_past_the_end_of_the_file_lands_at_its_offset(tmp_path: Path) -> None:
    """After a refusal, a write past the end of what was written leaves zeros before it, in
    a kept page the file holds only the start of."""
    with open(tmp_path / "f", "w+b", buffering=0) as file:
        kept, written = refused_from_byte_6000(file, seed=4)
        kept.seek(12_000)  # inside page 2, past the 10,000 bytes written
        kept.write(b"end")
        kept.seek(0)
        assert kept.read() == written + bytes(2_000) + b"end"


def test_a_stream_written_from_another_thread_is_whole(tmp_path: Path) -> None:
    """Python sets signal handlers from its main thread only: a stream written in another
    leaves Ctrl-C as it is and is written as ever."""
    (tmp_path / "f.h5").touch()  # as atomic_write makes its temporary
    failures = []

    def write() -> None:
        try:
            stream_h5(str(tmp_path / "f.h5"), lambda h5, check: h5.create_dataset("x", data=DATA))
        except BaseException as err:
            failures.append(err)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert failures == []
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert np.array_equal(h5["x"][:], DATA)


def test_ctrl_c_ignored_stays_ignored_while_a_stream_is_written(tmp_path: Path) -> None:
    """A process that ignores SIGINT (started in the background) writes on through one."""
    (tmp_path / "f.h5").touch()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def fill(h5: h5py.File, check) -> None:
        h5["x"] = DATA
        signal.raise_signal(signal.SIGINT)
        h5["y"] = DATA

    try:
        stream_h5(str(tmp_path / "f.h5"), fill)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert np.array_equal(h5["y"][:], DATA)


def test_as_text_reads_fixed_length_strings_as_utf8() -> None:
    assert as_text("café.mkv".encode()) == "café.mkv"
    assert as_text("café.mkv") == "café.mkv"
    # Bytes that are not UTF-8 (a name made elsewhere) read as to_text writes them.
    assert as_text(b"caf\xe9.mkv") == "caf\\xe9.mkv"


def test_ctrl_c_after_a_refused_write_leaves_the_refusal_to_be_raised(tmp_path: Path) -> None:
    """The first failure is the one the check raises: an interrupt in a method HDF5 called
    later does not replace it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(tmp_path / "f", "w+b", buffering=0) as file:
            kept = _KeptWrites(file.fileno())
            with file_size_limit(1_000):
                kept.write(bytes(5_000))
            with _interrupts_kept(kept):  # as if Ctrl-C landed in one of kept's methods
                signal.getsignal(signal.SIGINT)(signal.SIGINT, kept._pages(0, 1).gi_frame)
            with pytest.raises(BaseException) as raised:  # an interrupt would end the session
                kept.check()
            assert isinstance(raised.value, OSError) and raised.value.errno == errno.EFBIG
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_handled_with_no_frame_is_raised_as_ever(tmp_path: Path) -> None:
    """Python may run the handler with no frame (none of its code running): the interrupt is
    raised as the handler found would raise it, not kept for the check."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(tmp_path / "f", "w+b", buffering=0) as file:
            kept = _KeptWrites(file.fileno())
            with _interrupts_kept(kept), pytest.raises(KeyboardInterrupt):
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            assert kept.failure is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_check_given_to_fill_raises_once_a_write_failed(tmp_path: Path) -> None:
    """So that a fill stops at its next part, little kept in memory."""
    (tmp_path / "f.h5").touch()  # as atomic_write makes its temporary
    went_on = []

    def fill(h5: h5py.File, check) -> None:
        h5["x"] = np.zeros(100_000, np.uint8)  # past the limit, written at once
        check()
        went_on.append(True)

    with file_size_limit(20_000), pytest.raises(OSError, match=r"^\[Errno 27\] "):
        stream_h5(str(tmp_path / "f.h5"), fill)
    assert went_on == []


def test_write_h5_writes_what_a_dataset_the_fill_kept_open_holds(tmp_path: Path) -> None:
    """The image is taken before the file closes: what an object still open holds is in it."""
    still_open = []
    write_h5(str(tmp_path / "f.h5"),
             lambda h5: still_open.append(h5.create_dataset("x", data=DATA)))
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert np.array_equal(h5["x"][:], DATA)
