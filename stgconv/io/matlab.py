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
from typing import TYPE_CHECKING

import numpy as np
import scipy.io

from stgconv.checks import reading
from stgconv.io.h5 import as_text, check_inside

if TYPE_CHECKING:
    import h5py


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """The variables of the MATLAB file ``path`` by name, each indexed as MATLAB indexes it.

    Only arrays: a v7.3 file's structs and cells (HDF5 groups, and the ``#refs#`` and
    ``#subsystem#`` groups that hold their contents) are left out.

    Raises:
        ValueError: naming the file, when it is not a ``.mat`` file either version reads or
            cannot be read at all (permission denied, an I/O error).
    """
    path = Path(path)
    with reading(path):  # a damaged compressed variable fails inside zlib: named as such
        try:
            variables = scipy.io.loadmat(str(path))
        except NotImplementedError:  # scipy's answer to a v7.3 file
            return _read_v73(path)
        except (zlib.error, EOFError):
            raise
        except OSError as err:  # permission denied, a disk's I/O error: named, as damage is
            raise ValueError(f"cannot read MATLAB file {path}: {err.strerror or err}") from err
        except Exception as err:  # a damaged file: ValueError, TypeError, IndexError, even
            # UnboundLocalError from inside scipy (seen fuzzing)
            if _is_bare_hdf5(path):  # scipy said "Unknown mat file type, version 0, 0"
                raise ValueError(
                    f"cannot read MATLAB file {path}: it is HDF5 without the 512-byte header "
                    "MATLAB writes before a v7.3 file (h5py writes none), so whether its arrays "
                    "are stored column-major, as MATLAB's are, or in C order is unknown; save "
                    "it with MATLAB or scipy.io.savemat") from err
            raise ValueError(f"cannot read MATLAB file {path}: {err}") from err
    return {name: value for name, value in variables.items() if not name.startswith("__")}


def _is_bare_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with HDF5's signature, where a v7.3 file has MATLAB's header."""
    with path.open("rb") as file:
        return file.read(8) == b"\x89HDF\r\n\x1a\n"


def _read_v73(path: Path) -> dict[str, np.ndarray]:
    import h5py  # slow to import, and most files are not HDF5

    try:
        with h5py.File(path, "r") as h5:
            return {name: _v73_array(check_inside(h5, item)) for name, item in h5.items()
                    if isinstance(item, h5py.Dataset)}
    except (OSError, RuntimeError) as err:  # RuntimeError: a damaged group, heap or B-tree
        raise ValueError(f"cannot read MATLAB v7.3 (HDF5) file {path}: {err}") from err
    except MemoryError as err:  # h5py allocates the shape the file declares before reading
        raise ValueError(f"cannot read MATLAB v7.3 (HDF5) file {path}: it declares more than "
                         f"memory holds ({err})") from err


# The numeric MATLAB classes as numpy dtypes (logical as uint8, as both versions read it).
_MATLAB_DTYPES = {"double": "float64", "single": "float32", "logical": "uint8",
                  **{f"{sign}int{bits}": f"{sign}int{bits}" for sign in ("", "u")
                     for bits in (8, 16, 32, 64)}}


def _v73_array(dataset: h5py.Dataset) -> np.ndarray:
    """A v7.3 variable as MATLAB indexes it. An empty array is stored as its dimensions
    (uint64, in MATLAB's order) flagged ``MATLAB_empty``: read as data, ``zeros(0, 5)`` came
    back as the array ``[0, 5]``, where a v5 file gives an empty ``(0, 5)``."""
    if not dataset.attrs.get("MATLAB_empty", 0):
        return dataset[()].T
    matlab_class = as_text(dataset.attrs.get("MATLAB_class", b"double"))
    dtype = _MATLAB_DTYPES.get(matlab_class, "float64")  # char, cell, struct: as scipy's double
    return np.zeros(tuple(int(n) for n in np.ravel(dataset[()])), dtype=dtype)
