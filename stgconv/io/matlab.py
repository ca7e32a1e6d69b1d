"""MATLAB ``.mat`` files: every version MATLAB writes, read alike.

Versions 4 to 7 are MATLAB's own format (scipy reads them); version 7.3, which MATLAB writes for
variables over 2 GB and wherever a user made it the default, is HDF5 with a 512-byte text
header: one dataset per variable, stored column-major, so h5py sees every array's axes
reversed (MATLAB's ``N x 30 x 30 x 30`` as ``(30, 30, 30, N)``). :func:`read_mat` turns them
back, so a variable reads the same from either version.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import scipy.io

from stgconv.checks import reading


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """The variables of the MATLAB file ``path`` by name, each indexed as MATLAB indexes it.

    Only arrays: a v7.3 file's structs and cells (HDF5 groups, and the ``#refs#`` and
    ``#subsystem#`` groups that hold their contents) are left out.

    Raises:
        ValueError: naming the file, when it is not a ``.mat`` file either version reads.
    """
    path = Path(path)
    with reading(path):  # a damaged compressed variable fails inside zlib: named as such
        try:
            variables = scipy.io.loadmat(str(path))
        except NotImplementedError:  # scipy's answer to a v7.3 file
            return _read_v73(path)
        except (zlib.error, EOFError):
            raise
        except Exception as err:  # a damaged file: ValueError, TypeError, IndexError, even
            # UnboundLocalError from inside scipy (seen fuzzing)
            raise ValueError(f"cannot read MATLAB file {path}: {err}") from err
    return {name: value for name, value in variables.items() if not name.startswith("__")}


def _read_v73(path: Path) -> dict[str, np.ndarray]:
    import h5py  # slow to import, and most files are not HDF5

    try:
        with h5py.File(path, "r") as h5:
            return {name: item[()].T for name, item in h5.items()
                    if isinstance(item, h5py.Dataset)}
    except OSError as err:
        raise ValueError(f"cannot read MATLAB v7.3 (HDF5) file {path}: {err}") from err
