"""The HDF5 file behind a Dataset, opened lazily in each process.

An h5py handle must not cross a ``fork``: a ``DataLoader(num_workers > 0)`` worker reading
through its parent's handle would share HDF5 state with it. So the file opens on first access in
each process, never in ``__init__``, and a pickled dataset (what spawned workers get) carries no
handle. HDF5 outputs are written whole by :func:`write_h5`, or as they are made by
:func:`stream_h5` where they may be too large to hold in memory.

A dataset reads its index (lengths, labels, settings) in ``__init__`` and its rows later, from
a handle opened again: :meth:`LazyH5._open_index` remembers which file the index came from, and
the later opens refuse another one (the cache rebuilt and renamed into place meanwhile, by a
``datasets/*/prepare.py`` of a sweep), whose rows would not match that index.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, FunctionType
from typing import TYPE_CHECKING, Callable, Iterator

# h5py takes a while to import and most runs never read HDF5; it loads where a file is opened.
if TYPE_CHECKING:
    import h5py


class LazyH5:
    """Mixin for a Dataset that reads the HDF5 file at ``self.root``.

    :meth:`_h5` is this process's read-only handle, opened on first use; :meth:`close` closes it.
    """

    root: Path
    _file: h5py.File | None = None
    _pid: int | None = None
    # The file the index was read from (see _open_index); None: not recorded, any file goes.
    _identity: tuple[int, int, int, int] | None = None

    def _open_index(self) -> h5py.File:
        """A read-only handle on ``self.root`` for ``__init__`` to read the index from (the
        caller closes it); :meth:`_h5` will read the rows from this same file only."""
        import h5py

        h5 = h5py.File(self.root, "r")
        self._identity = _identity(h5)
        return h5

    def _h5(self) -> h5py.File:
        import h5py

        if self._file is None or self._pid != os.getpid():
            # A handle inherited through fork is abandoned, not closed: closing it would act on
            # HDF5 state shared with the parent.
            h5 = h5py.File(self.root, "r")
            if self._identity is not None and _identity(h5) != self._identity:
                h5.close()
                raise ValueError(f"{self.root} was replaced (rebuilt by another process?) "
                                 "after its index was read here: its rows would not match "
                                 "that index; open it again")
            self._file, self._pid = h5, os.getpid()
        return self._file

    def close(self) -> None:
        """Close this process's handle (it reopens on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # spawned workers get the dataset pickled: no handle in it
        state["_file"], state["_pid"] = None, None
        return state


def write_h5(tmp: str, fill: Callable[[h5py.File], None]) -> None:
    """Write the HDF5 file that ``fill(h5)`` makes to ``tmp`` (an
    :func:`stgconv.io.atomic.atomic_write` temporary) in one plain write of its image.

    The file is made in memory (the whole of it, compressed, is held until written): HDF5
    writing to a full disk or past a quota itself failed with a ``RuntimeError`` or an
    ``OSError`` worded in its own terms and naming the temporary, and its close then could
    crash the process (a segfault, HDF5 2.0). A plain write fails with the system's error, which
    ``atomic_write`` turns into a :class:`~stgconv.io.atomic.WriteError` naming the file.
    """
    import h5py

    # backing_store=False: HDF5 never opens tmp; the name only tells the file from others open.
    with h5py.File(tmp, "w", driver="core", backing_store=False) as h5:
        fill(h5)
        h5.flush()  # the image alone leaves out what open objects hold (unreadable files)
        image = h5.id.get_file_image()
    with open(tmp, "wb") as file:
        file.write(image)


def stream_h5(tmp: str, fill: Callable[[h5py.File, Callable[[], None]], None]) -> None:
    """Write the HDF5 file that ``fill(h5, check)`` makes to ``tmp`` (an
    :func:`stgconv.io.atomic.atomic_write` temporary) as it is made, for files too large for
    :func:`write_h5` to hold in memory.

    HDF5 never sees a write fail: once one failed (a full disk, a quota), HDF5 2.0 crashed the
    process later (a segfault when its objects were freed, at the latest at exit), and its
    errors were worded in its own terms, naming the temporary. HDF5 writes through
    :class:`_KeptWrites`, which keeps the writes from the first one the system refused on in
    memory; ``fill`` calls ``check()`` between its parts (a source's clips), which raises the
    system's ``OSError`` once a write failed, so that little is kept, and HDF5 closes the file
    as if nothing had failed. ``atomic_write`` turns the error into a
    :class:`~stgconv.io.atomic.WriteError` naming the file. Ctrl-C while HDF5 writes is kept
    the same way (:func:`_interrupts_kept`).
    """
    import h5py

    with open(tmp, "r+b", buffering=0) as file:
        kept = _KeptWrites(file.fileno())
        with _interrupts_kept(kept), h5py.File(kept, "w") as h5:
            fill(h5, kept.check)
        kept.check()


@contextmanager
def _interrupts_kept(kept: _KeptWrites) -> Iterator[None]:
    """In the block, Ctrl-C handled in a method of ``kept`` (which HDF5 called) is kept as its
    failure, for :meth:`_KeptWrites.check` to raise; elsewhere it is raised as ever.

    Ctrl-C while HDF5 runs its own code (compressing chunks, closing the file) is raised on
    entering the next method HDF5 calls, before any of its code: out of reach of a ``try``
    there, it failed the write as a full disk does, and HDF5 2.0 crashed the process later
    (at close it even closed the file as if written, and the stream returned).
    """
    previous = signal.getsignal(signal.SIGINT)
    # Python runs signal handlers in the main thread only; one ignored or left to the system
    # raises nothing.
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if frame is None or frame.f_code not in _KEPT_CODE:
            previous(signum, frame)
            return
        try:
            previous(signum, frame)
        except BaseException as err:
            if kept.failure is None:
                kept.failure = err

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_PAGE = 4096  # the bytes kept together once a write failed


class _KeptWrites(io.RawIOBase):
    """The open file ``fd`` as HDF5 reads and writes it in :func:`stream_h5`: every write
    succeeds, those from the first one the system refused on kept in memory (a page of
    :data:`_PAGE` bytes each); reads see them; :meth:`check` raises the refusal (or the
    interrupt that stopped a write)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd, self.position, self.size = fd, 0, 0
        self.failure: BaseException | None = None
        self.kept: dict[int, bytearray] = {}  # page number -> its bytes

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = offset + {os.SEEK_SET: 0, os.SEEK_CUR: self.position,
                                  os.SEEK_END: self.size}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self.position))
        if not self.kept:
            data = os.pread(self.fd, n, self.position)
            view[:n] = data.ljust(n, b"\0")  # a truncate past the end reads zeros
        else:
            for at, page, start, stop in self._pages(self.position, n):
                view[at:at + stop - start] = page[start:stop]
        self.position += n
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:
        data = memoryview(data).cast("B")
        if self.failure is None:
            try:
                done = 0
                while done < len(data):  # a write may stop short; the next says why
                    done += os.pwrite(self.fd, data[done:], self.position + done)
            # An interrupt too (Ctrl-C lands in the system call): raised into HDF5, it would
            # fail the write as a full disk does.
            except BaseException as err:
                self.failure = err
        if self.failure is not None:
            for at, page, start, stop in self._pages(self.position, len(data)):
                page[start:stop] = data[at:at + stop - start]
        self.position += len(data)
        self.size = max(self.size, self.position)
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        size = self.position if size is None else size
        if self.failure is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as err:
                self.failure = err
        if self.failure is not None:  # the file keeps the bytes cut: zeros, should it grow again
            for _, page, start, stop in self._pages(size, self.size - size):
                page[start:stop] = bytes(stop - start)
        self.size = size
        return size

    def _pages(self, offset: int, n: int) -> Iterator[tuple[int, bytearray, int, int]]:
        """``(at, page, start, stop)`` for the bytes ``offset`` to ``offset + n``: byte ``at``
        of them is ``page[start]``; the pages are kept (read from the file when new)."""
        at = 0
        while at < n:
            number, start = divmod(offset + at, _PAGE)
            if number not in self.kept:
                self.kept[number] = bytearray(os.pread(self.fd, _PAGE, number * _PAGE)
                                              .ljust(_PAGE, b"\0"))
            stop = min(_PAGE, start + n - at)
            yield at, self.kept[number], start, stop
            at += stop - start


# The code HDF5 runs when it reads or writes through _KeptWrites (see _interrupts_kept).
_KEPT_CODE = frozenset(method.__code__ for method in vars(_KeptWrites).values()
                       if isinstance(method, FunctionType))


def _identity(h5: h5py.File) -> tuple[int, int, int, int]:
    """The file behind an open handle: a file renamed into place over it has another inode,
    and a later one given a freed inode's number was written at another time."""
    stat = os.fstat(h5.id.get_vfd_handle())
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def check_inside(h5: h5py.File, dataset: h5py.Dataset) -> h5py.Dataset:
    """``dataset`` (read through the open file ``h5``), refused where its data lie in another
    file: behind an external link, in external raw files, or in a virtual dataset's sources.
    Such a file names any path on this machine (``/etc/shadow``, another user's data), whose
    bytes h5py would read as the array, from a file handed over by someone else.

    Raises:
        ValueError: naming the file, the dataset and the other file.
    """
    if dataset.file != h5:
        raise ValueError(f"{h5.filename}: an external link in it leads to dataset "
                         f"{dataset.name!r} of {dataset.file.filename}; only data inside the "
                         "file named are read")
    if dataset.external:
        elsewhere = f"external raw files ({', '.join(str(f[0]) for f in dataset.external)})"
    elif dataset.is_virtual:
        elsewhere = ("a virtual dataset over "
                     f"{', '.join(sorted({s.file_name for s in dataset.virtual_sources()}))}")
    else:
        return dataset
    raise ValueError(f"{h5.filename}: dataset {dataset.name!r} keeps its data in another file "
                     f"({elsewhere}); only data inside the file named are read")


def as_text(value: object) -> str:
    """A string stored in HDF5 as text: h5py reads fixed-length strings as ``bytes`` (and numpy
    keeps them so, in ``'S'`` arrays), variable-length ones as ``str``. Bytes that are not UTF-8
    (a name in a file made elsewhere) read as :func:`to_text` writes them, ``\\xe9``: decoded
    strictly, they failed with a ``UnicodeDecodeError`` that named no file."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def to_text(text: str) -> str:
    """``text`` (a path, or a message naming one) as HDF5's UTF-8 strings can hold it. A file
    name that is not UTF-8 (a zip made on Windows keeps its Latin-1 or CP437 bytes when unpacked
    here, and Python reads them as lone surrogates) has those bytes written ``\\xe9``: the
    write failed, after the whole build, with a message that named no file."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
