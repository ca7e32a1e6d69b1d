"""Write files so that a crash or an error never leaves a half-written result behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX filesystems, so readers see either the old file or the whole
    new one. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp makes the file private (0600); give the result the mode any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        # A writer given a file object (a full disk under np.save or torch.save) raises the
        # system's error without a file name: name the file it was writing.
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when its process
    was killed mid-write (``.<name>.<random>.tmp``); returns them.

    Call it only where no other process may be writing into ``folder`` at the same time (a
    run folder under its lock), or a write in progress loses its file.
    """
    leftovers = [path for path in Path(folder).glob(".*.tmp") if path.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` to ``path`` as indented JSON (``indent=1``), atomically."""
    return atomic_write_text(path, json.dumps(data, indent=1))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write a numeric ``array`` to ``path`` (``.npy``) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:  # a file object: np.save would append ".npy" to a name
            np.save(file, array, allow_pickle=False)

    return atomic_write(path, write)
