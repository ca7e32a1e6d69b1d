"""Write files so that a crash or an error never leaves a half-written result behind.

A file is written to a temporary ``.<name>.<pid>-<random>.tmp`` beside it and renamed into place.
The writer's process id in the name lets any later write into the folder tell a temporary that
a killed process left (its process is gone) from one still being written, and remove the first
kind only: no command has to own the folder for its debris to be cleaned up. Within
:func:`written_together`, the files of one result (a picture and its ``.npy``) go into place
together or not at all.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
import tempfile
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from stgconv.checks import SPECIAL_FILE


# The characters of a file's name its temporary keeps: 40 of up to 4 bytes each, with the pid
# and the random part, stay under the 255 bytes of a name.
TEMPORARY_NAME_CHARS = 40

# Windows: a folder cannot be opened to flush it (os.open refuses it, PermissionError), and
# os.kill has no signal 0: whatever the signal, it ends the process (TerminateProcess).
_WINDOWS = sys.platform == "win32"

# Inside written_together: each destination's temporary, written whole and not yet renamed.
_waiting: ContextVar[dict[Path, str] | None] = ContextVar("_waiting", default=None)
# Inside written_together: the folders whose earlier results not written again go at its end,
# each with the test of a result's name (remove_unwritten).
_unwritten: ContextVar[list[tuple[Path, Callable[[str], bool]]] | None] = ContextVar(
    "_unwritten", default=None)


class WriteError(OSError):
    """Writing an output failed part-way, after the checks a command makes up front: a full
    disk, a quota, an I/O error, its folder removed or made read-only meanwhile. The file
    system's failure, not the input's: the CLI exits 1 for it, not 2. ``filename`` is the file
    (or folder) being written, never a temporary. Made by :func:`write_error`."""

    def __reduce__(self) -> tuple:
        # Rebuilt by write_error: the subclasses it makes (a WriteError that is also a
        # FileNotFoundError, ...) are made at run time, and pickle, which finds a class by its
        # name, refused them, so a process pool's worker could not hand one back.
        return write_error, (self.errno, self.strerror, self.filename), self.__dict__


def write_error(number: int, reason: str, path: str | Path) -> WriteError:
    """A :class:`WriteError` naming ``path`` that is also the subclass of ``OSError`` its
    errno makes (``FileNotFoundError``, ``PermissionError``, ...), as ``OSError(number, ...)``
    would be: a caller catching those still does."""
    return _write_error_class(type(OSError(number, reason)))(number, reason, str(path))


@cache
def _write_error_class(kind: type[OSError]) -> type[WriteError]:
    return WriteError if kind is OSError else type(kind.__name__, (WriteError, kind), {})


def atomic_write(path: str | Path, write: Callable[[str], None], *, replace: bool = True
                 ) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX filesystems, so readers see either the old file or the whole
    new one; the file is flushed to the disk before it and the folder after, so a power cut
    leaves the same choice. On any error the temporary file is removed and ``path`` is
    untouched. Temporaries that killed writers left in the folder are removed first
    (:func:`remove_temporaries`). A ``path`` that is a symbolic link writes its target, as
    ``open`` would: the rename would otherwise replace the link with a file. A ``path`` that
    is a device, a named pipe or a socket is refused (``ValueError``).

    ``replace=False``: a file at ``path`` is never replaced, not even one that another process
    put there while ``write`` ran (a check before the work would let that through):
    ``FileExistsError`` naming ``path``. Not within :func:`written_together`.
    """
    if not replace and _waiting.get() is not None:
        raise ValueError("atomic_write(replace=False) puts its file in place at once, not "
                         "together with others: call it outside written_together")
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):
        # The rename would replace the device or pipe itself (/dev/null, for root).
        raise ValueError(f"cannot write {path}: it is {SPECIAL_FILE}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        # mkdir names the folder it could not make ("Not a directory: 'a_file/sub'", "File
        # exists: 'a_file'"), not the file asked for nor the file in the way.
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise write_error(err.errno, err.strerror, path) from err
        raise write_error(errno.ENOTDIR, f"{blocker} is a file, not a folder", path) from err
    remove_temporaries(path.parent)
    try:
        # The name shortened in the temporary's: with the pid and the random part a name near
        # the file system's 255 bytes would not fit.
        fd, tmp = tempfile.mkstemp(dir=path.parent,
                                   prefix=f".{path.name[:TEMPORARY_NAME_CHARS]}.{os.getpid()}-",
                                   suffix=".tmp")
    except OSError as err:  # a folder that takes no new file: name the file asked for
        raise write_error(err.errno, err.strerror, path) from err
    os.close(fd)
    # mkstemp makes the file private (0600); give the result the mode any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        # On disk before the rename, and the rename on disk after it: without both, a power
        # cut can leave the new name on an empty or partial file (the rename alone only orders
        # what readers of a running system see).
        _sync(tmp)
        if (waiting := _waiting.get()) is not None:
            if (earlier := waiting.pop(path, None)) is not None:  # written twice: the last wins
                os.unlink(earlier)
            waiting[path] = tmp
            return path
        if replace:
            os.replace(tmp, path)
        else:
            _put_beside(tmp, path)
        _sync(path.parent)
    except OSError as err:
        # An error about another file (a source the writer reads) is the writer's own.
        if err.errno is None or (err.filename not in (None, tmp) and err.filename2 != tmp):
            raise
        # A writer given a file object (a full disk under np.save or torch.save) raises the
        # system's error without a file name, others name the temporary, which the user never
        # asked for, or the file they copy and the temporary (shutil.copyfile keeping
        # checkpoint_previous.pt): name the file it was writing.
        raise write_error(err.errno, err.strerror, path) from err
    finally:
        if tmp not in (_waiting.get() or {}).values():
            _discard(tmp)
    return path


def _put_beside(tmp: str, path: Path) -> None:
    """Give the whole ``tmp`` the name ``path`` unless that exists: a hard link is made, or
    refused, in one step (``FileExistsError``). A file system without hard links gets the
    rename, after a check that leaves a moment for another process's file to be replaced."""
    exists = FileExistsError(errno.EEXIST, "it exists: written meanwhile (by another "
                             "process?) and not replaced", str(path))
    try:
        os.link(tmp, path)
    except FileExistsError as err:
        raise exists from err
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if path.exists():
            raise exists from err
        os.replace(tmp, path)


def _discard(tmp: str) -> None:
    """Remove a temporary that did not go into place, if it is still there. One that cannot be
    removed (its folder made read-only meanwhile) is left for :func:`remove_temporaries` once
    this process has ended: the unlink's error would hide the one that stopped the write."""
    with suppress(OSError):
        os.unlink(tmp)


@contextmanager
def written_together() -> Iterator[None]:
    """Within the block, :func:`atomic_write` writes each file whole under its temporary name
    and puts none in place; when the block ends without an error they all go into place, on an
    error (a full disk at the last file, an interrupt) none does and the earlier files stay as
    they were. A result's files (``synthesized.png`` and ``synthesized.npy``, a table's JSON and
    its pictures) are then all of one run, never a new picture beside an old array. Nested
    blocks join the outermost."""
    if _waiting.get() is not None:
        yield
        return
    waiting: dict[Path, str] = {}
    unwritten: list[tuple[Path, Callable[[str], bool]]] = []
    token, unwritten_token = _waiting.set(waiting), _unwritten.set(unwritten)
    try:
        yield
    except BaseException:
        for tmp in waiting.values():
            _discard(tmp)
        raise
    finally:
        _waiting.reset(token)
        _unwritten.reset(unwritten_token)
    try:
        # A folder in a file's place refuses its rename: found before any rename, none goes
        # into place (the picture renamed, the array refused, a new picture sat beside the
        # old array).
        for path in waiting:
            if path.is_dir():
                raise write_error(errno.EISDIR, os.strerror(errno.EISDIR), path)
        for path, tmp in waiting.items():  # renames take no space: a full disk stops none
            try:
                os.replace(tmp, path)
            except OSError as err:  # it names the temporary as well, never asked for
                raise write_error(err.errno, err.strerror, path) from err
    finally:  # a rename refused (the name now a folder) leaves no temporaries behind
        for tmp in waiting.values():
            _discard(tmp)
    written = {Path(os.path.realpath(path)) for path in waiting}
    removed_from = set()
    for folder, is_result in unwritten:
        for path in (folder.iterdir() if folder.is_dir() else ()):
            if (is_result(path.name) and path.is_file() and not path.is_symlink()
                    and Path(os.path.realpath(path)) not in written):
                path.unlink(missing_ok=True)
                removed_from.add(folder)
    for folder in {path.parent for path in waiting} | removed_from:
        _sync(folder)


def remove_unwritten(folder: str | Path, is_result: Callable[[str], bool]) -> None:
    """Within :func:`written_together`: when its files have gone into place, remove the files
    directly in ``folder`` whose names ``is_result`` takes for a result's and that the block
    did not write, an earlier result's that this one has none of (a video's
    ``synthesized.gif`` beside an image's new ``synthesized.png``, a multi-grid run's
    ``pyramid.png``), which would show other samples than the files beside them. Nothing is
    removed when the block fails. A link is left alone (its target is not the result's).

    Raises:
        ValueError: called outside :func:`written_together`, where no block's files say which
            are this result's.
    """
    unwritten = _unwritten.get()
    if unwritten is None:
        raise ValueError("remove_unwritten needs the files written together: call it within "
                         "written_together")
    unwritten.append((Path(folder), is_result))


def _sync(path: str | Path) -> None:
    """Flush a file's or a folder's contents to the disk. Not a folder on Windows, where none
    can be opened: NTFS journals a rename itself."""
    if _WINDOWS and os.path.isdir(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ".<name>.<pid>-<random>.tmp", and a writer's own helper files named after it (".tmp.ply");
# DOTALL: a name may hold a newline; \Z, not $, which also matches before a last newline.
_TEMPORARY = re.compile(r"^\..+\.(\d+)-\w+\.tmp(\.\w+)?\Z", re.DOTALL)


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` whose writing process no
    longer exists (killed mid-write); returns them. Temporaries of live processes, and files
    not named like them, are left alone. On Windows none is removed: a process there cannot
    be asked whether it exists without ending it (``os.kill``).

    A process id is unique on one machine only: two machines writing into one shared folder at
    the same moment could take each other's temporaries for debris (a run folder has one owner,
    so this needs two runs given the same folder from different machines).
    """
    stale = []
    for path in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and not _process_exists(int(match.group(1))):
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale


def _process_exists(pid: int) -> bool:
    if _WINDOWS:  # no asking there without ending the process: kept, as a live writer's
        return True
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OverflowError:
        return False  # no process has an id that large
    return True


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` to ``path`` as indented JSON (``indent=1``), atomically.

    Raises:
        ValueError: a NaN or infinite number in ``data``, named by its keys (``errors.stgconv``,
            ``history[3].loss``): JSON has no such number, and Python's ``NaN`` / ``Infinity``
            stop the strict readers that compare results (jq, JavaScript's ``JSON.parse``,
            Go); a result that holds one is reported, never written.
    """
    try:
        text = json.dumps(data, indent=1, allow_nan=False)
    except ValueError:
        # json's own message names no key: looked for only when there is one to name.
        where = _non_finite(data)
        if where is None:
            raise
        raise ValueError(f"cannot write {path}: {where or 'the value'} is not a finite number, "
                         "which JSON cannot hold") from None
    return atomic_write_text(path, text)


def _non_finite(data: Any, where: str = "", within: frozenset[int] = frozenset()
                ) -> str | None:
    """The keys leading to the first NaN or infinite number in ``data`` (dicts, lists and
    tuples as JSON writes them; ``""`` for ``data`` itself), or ``None`` if it has none.
    ``within``: the ids of the containers ``data`` is inside of."""
    if isinstance(data, float):
        return None if math.isfinite(data) else where
    if id(data) in within:  # a value that holds itself: json's own error says so
        return None
    items = (data.items() if isinstance(data, dict)
             else enumerate(data) if isinstance(data, (list, tuple)) else ())
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(data, (list, tuple))
                            else f"{where}.{key}" if where else str(key), within | {id(data)})
        if found is not None:
            return found
    return None


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write a numeric ``array`` to ``path`` (``.npy``) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:  # a file object: np.save would append ".npy" to a name
            np.save(_Stream(file), array, allow_pickle=False)

    return atomic_write(path, write)


class _Stream:
    """A file that numpy writes through ``write``: given a real file it calls
    ``ndarray.tofile``, which reports a full disk as "32768 requested and 8064 written", an
    OSError without the system's errno, so without the reason or the file's name."""

    def __init__(self, file: Any) -> None:
        self.write = file.write


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write numeric ``arrays`` to ``path`` as a compressed ``.npz``, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:  # a file object: np.savez would append ".npz" to a name
            np.savez_compressed(file, **arrays)

    return atomic_write(path, write)
