"""Read and write voxel grids: 3D ShapeNets ``.mat``, ``.binvox``, ``.npy``, ``.npz`` and HDF5.

At the file boundary a grid is a numpy array ``(R, R, R)`` and a batch of grids ``(N, R, R, R)``,
indexed ``[x, y, z]`` with the up axis last (axis 2), the convention of the ModelNet and ShapeNet
data in ``../shared/data/voxel``. Binary grids come back as uint8 in {0, 1} (compact, and exact
for every format); occupancy in ``[0, 1]`` (model samples) as float32. Inside stgconv the same
grids are float tensors ``(1, R, R, R)`` / ``(B, 1, R, R, R)``: :mod:`stgconv.data.voxel`
converts.

==========  ===========================================  =========================================
suffix      layout                                       notes
==========  ===========================================  =========================================
``.mat``    variable ``instance`` (3D ShapeNets)          MATLAB v5 (scipy) or v7.3 (h5py); stored
                                                         ``[y, x, z]``; written v5, int8 {0, 1}
``.binvox`` run-length encoded, one binary grid           Min's binvox format, read/written here
``.npy``    one array                                    ``(R, R, R)`` or ``(N, R, R, R)``
``.npz``    array ``X`` (or the only array)              written compressed, key ``X``
``.h5``     dataset ``voxels`` (or the only one)         gzip, one chunk per grid; ``.hdf5`` too
==========  ===========================================  =========================================

Grids must be cubic; every reader checks the shape and the values and names the file when they
are wrong.

3D ShapeNets' ``.mat`` grids hold the first two axes the other way round (``[y, x, z]``): read
as stored, each shared ``.mat`` chair matched its ModelNet ``.npz`` twin (the best of all 889
chairs at 30^3) with IoU 0.32 on average over 60 of them, and 0.74 with the axes swapped, as
the voxelized ``.off`` meshes agree. So they are swapped on reading and back on writing.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from torch import Tensor

from stgconv.checks import (
    as_array,
    as_int,
    check_flag,
    check_path,
    npz_array,
    open_npz,
    read_leading,
    read_npy,
    reading,
)
from stgconv.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write
from stgconv.io.h5 import check_inside, write_h5
from stgconv.io.matlab import read_mat

# h5py takes a while to import and most voxel files are not HDF5; it loads where one is read or
# written.
if TYPE_CHECKING:
    import h5py

VOXEL_SUFFIXES = (".mat", ".binvox", ".npy", ".npz", ".h5", ".hdf5")
"""Suffixes :func:`load_voxels` reads and :func:`save_voxels` writes."""

DEFAULT_KEYS = {".mat": "instance", ".npz": "X", ".h5": "voxels", ".hdf5": "voxels"}
"""The array each format's grids live under unless ``key=`` says otherwise."""

_GZIP_LEVEL = 4
_MATLAB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")  # MATLAB's isvarname, namelengthmax 63


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_voxels(path: str | Path, *, key: str | None = None, binary: bool = True,
                max_shapes: int | None = None) -> np.ndarray:
    """Read a voxel grid or a batch of grids.

    Args:
        path: a ``.mat``, ``.binvox``, ``.npy``, ``.npz``, ``.h5`` or ``.hdf5`` file.
        key: the variable (``.mat``), array (``.npz``) or dataset (HDF5, by its path inside
            groups: ``train/voxels``) to read. By default ``instance`` / ``X`` / ``voxels``, or
            the file's only array when that name is absent.
        binary: expect {0, 1} values (any dtype) and return uint8; with ``False`` accept
            occupancy in ``[0, 1]`` and return float32.
        max_shapes: keep only the first ``max_shapes`` grids of a batch; an ``.npy`` or
            ``.npz`` is read no further than those (a compressed archive decompressed whole);
            an HDF5 dataset too.

    Returns:
        ``(R, R, R)`` for one grid, ``(N, R, R, R)`` for a batch (a stored channel axis,
        ``(N, 1, R, R, R)``, is dropped); uint8 in {0, 1} or float32 in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``binary`` other than ``True`` or ``False``; an unknown suffix; a file
            that cannot be read (permission denied, an I/O error), a damaged or truncated one;
            no array under ``key`` (the message lists the arrays there are); a grid that is not
            cubic or not 3-D/4-D; values outside {0, 1} with ``binary=True`` or outside
            ``[0, 1]`` otherwise.
    """
    check_path(path, "path")
    path = Path(path)
    suffix = path.suffix.lower()
    binary = check_flag(binary, "binary")  # before the file is read
    if max_shapes is not None:
        max_shapes = as_int(max_shapes, "max_shapes", minimum=1)
    if suffix not in VOXEL_SUFFIXES:
        raise ValueError(f"cannot read voxels from {path}: suffix must be one of "
                         f"{', '.join(VOXEL_SUFFIXES)}, got {suffix!r}")
    if not path.is_file():
        raise FileNotFoundError(f"voxel file not found: {path}")
    try:
        with reading(path):  # a damaged compressed .npz or .mat fails inside zlib
            if suffix == ".binvox":
                array = _read_binvox(path)
            elif suffix == ".mat":
                array = _read_mat(path, key)
            elif suffix == ".npy":
                array = _read_npy(path, max_shapes)
            elif suffix == ".npz":
                array = _read_npz(path, key, max_shapes)
            else:
                array = _read_h5(path, key, max_shapes)
    except OSError as err:
        # A file that cannot be read (a disk's I/O error, permission denied) is bad input as a
        # damaged one is: a .binvox or .mat in a folder of hundreds failed naming none.
        raise ValueError(f"cannot read voxels from {path}: {err.strerror or err}") from err
    grids = check_grids(array, binary=binary, name=str(path))
    if grids.ndim == 4:
        grids = grids[:max_shapes]
    return np.ascontiguousarray(grids.swapaxes(-3, -2)) if suffix == ".mat" else grids


def check_grids(array: np.ndarray | Tensor, *, binary: bool = True, name: str = "the grid"
                ) -> np.ndarray:
    """Validate a grid ``(R, R, R)`` or batch ``(N, R, R, R)`` (or ``(N, 1, R, R, R)``).

    Returns:
        numpy ``(R, R, R)`` / ``(N, R, R, R)``: uint8 {0, 1} when ``binary``, else float32 in
        ``[0, 1]``.

    Raises:
        ValueError: ``binary`` other than ``True`` or ``False``; wrong number of dimensions, not
            cubic, or values out of range; the message starts with ``name``.
    """
    binary = check_flag(binary, "binary")
    array = as_array(array)
    if array.ndim == 5 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (3, 4):
        raise ValueError(f"{name}: expected a voxel grid (R, R, R) or a batch (N, R, R, R), got "
                         f"shape {array.shape}")
    if len(set(array.shape[-3:])) != 1:
        raise ValueError(f"{name}: expected cubic grids (R, R, R), got {array.shape[-3:]} "
                         f"(full shape {array.shape})")
    if array.shape[-1] == 0:
        raise ValueError(f"{name}: the grids are empty, shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8 if binary else np.float32)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name}: expected numeric voxel values, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    if binary:
        if array.dtype == np.uint8 and array.max(initial=0) <= 1:
            return array
        bad = array[(array != 0) & (array != 1)]
        if bad.size:
            raise ValueError(
                f"{name}: expected binary occupancy {{0, 1}}, found {bad.size} other values "
                f"(e.g. {bad.flat[0].item()!r})"
            )
        return array.astype(np.uint8)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name}: expected occupancy in [0, 1], got values in "
                         f"[{array.min()}, {array.max()}]")
    return array.astype(np.float32)


def _read_binvox(path: Path) -> np.ndarray:
    with path.open("rb") as file:
        first = file.readline()
        if not first.startswith(b"#binvox"):
            raise ValueError(f"{path} is not a binvox file: it starts with {first[:20]!r}")
        version = first.split()[1:2]
        if version not in ([b"1"], [b"2"]):
            raise ValueError(f"{path}: binvox version {first.strip()!r} is not 1 or 2, the "
                             f"versions read here")
        dims = None
        while True:
            line = file.readline()
            if not line:
                raise ValueError(f"{path} is truncated: the binvox header has no 'data' line")
            words = line.split()
            if words and words[0] == b"data":
                break
            if words and words[0] == b"dim":
                try:
                    dims = tuple(int(word) for word in words[1:])
                except ValueError:
                    dims = ()
                if len(dims) != 3 or min(dims) < 1:
                    raise ValueError(f"{path}: bad binvox 'dim' line {line.strip()!r}")
        if dims is None:
            raise ValueError(f"{path}: the binvox header has no 'dim' line")
        raw = np.frombuffer(file.read(), dtype=np.uint8)
    if len(set(dims)) != 1:
        raise ValueError(f"{path}: expected cubic grids (R, R, R), the binvox header says {dims}")
    if len(raw) % 2:
        raise ValueError(f"{path} is truncated or corrupt: odd number of run-length bytes")
    values, counts = raw[::2], raw[1::2]
    # math.prod, exact: numpy's int64 product wraps, and 4194304^3 (2^66) came out as 0, the
    # voxels of an empty file, which then failed to reshape without naming it.
    if counts.sum() != math.prod(dims):
        raise ValueError(f"{path} is truncated or corrupt: its runs hold {int(counts.sum())} "
                         f"voxels, the header announces {dims} = {math.prod(dims)}")
    if version == [b"2"]:
        # Version 2 (binvox_merge) gives each set voxel the number of its part, 1 to 255:
        # occupied all the same.
        values = np.minimum(values, 1)
    # binvox runs over x (slowest), z, y (fastest): reorder to [x, y, z], z up.
    return np.repeat(values, counts).reshape(dims).transpose(0, 2, 1)


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    return _pick(path, read_mat(path), key, ".mat")


def _read_npy(path: Path, max_shapes: int | None) -> np.ndarray:
    try:
        if max_shapes is not None:
            with open(path, "rb") as file:
                # A batch is (N, R, R, R) or (N, 1, R, R, R); one grid is read whole.
                leading = read_leading(file, max_shapes, min_ndim=4)
            if leading is not None:
                return leading
        return read_npy(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read .npy file {path}: {err}") from err


def _read_npz(path: Path, key: str | None, max_shapes: int | None) -> np.ndarray:
    with open_npz(path) as archive:
        name = _pick_name(path, list(archive.files), key, ".npz")
        if max_shapes is not None and f"{name}.npy" in archive.zip.namelist():
            with archive.zip.open(f"{name}.npy") as member:
                try:
                    leading = read_leading(member, max_shapes, min_ndim=4)
                except ValueError as err:
                    raise ValueError(f"cannot read array {name!r} of {path}: {err}") from err
            if leading is not None:
                return leading
        return npz_array(archive, name, path)


def _read_h5(path: Path, key: str | None, max_shapes: int | None) -> np.ndarray:
    import h5py

    names: list[str] = []

    def add_dataset(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            names.append(name)

    try:
        with h5py.File(path, "r") as h5:
            h5.visititems(add_dataset)  # inside groups too, by path: "train/voxels"
            key = key.lstrip("/") if key else key  # h5py's absolute path names the same one
            dataset = check_inside(h5, h5[_pick_name(path, names, key, path.suffix.lower())])
            # A batch's first max_shapes alone, as of an .npy: --max-shapes 4 of a 64^3 cache
            # read every grid of it (ModelNet10's 4,899: 1.3 GB) to keep 4.
            if max_shapes is not None and dataset.ndim >= 4:
                return dataset[:max_shapes]
            return dataset[()]
    except (OSError, RuntimeError) as err:  # RuntimeError: a damaged group, heap or B-tree
        raise ValueError(f"cannot read HDF5 file {path}: {err}") from err
    except MemoryError as err:  # h5py allocates the shape the file declares before reading
        raise ValueError(f"cannot read HDF5 file {path}: it declares more than memory holds "
                         f"({err})") from err


def _pick(path: Path, arrays: dict[str, np.ndarray], key: str | None, suffix: str) -> np.ndarray:
    return arrays[_pick_name(path, list(arrays), key, suffix)]


def _pick_name(path: Path, names: list[str], key: str | None, suffix: str) -> str:
    if key is not None:
        if key not in names:
            raise ValueError(f"{path} has no array {key!r}; it holds {names or 'nothing'}")
        return key
    default = DEFAULT_KEYS[suffix]
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise ValueError(f"{path} has no array {default!r} and {len(names)} others "
                     f"({', '.join(names) or 'none'}); name the shapes' array {default!r} "
                     f"(or pass key= to the library's readers)")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def save_voxels(grids: np.ndarray | Tensor, path: str | Path, *, key: str | None = None
                ) -> Path:
    """Write a voxel grid or a batch of grids (atomically).

    Binary grids are stored as uint8 {0, 1} (int8 in ``.mat``, as 3D ShapeNets does), other
    occupancy in ``[0, 1]`` as float32 (not for ``.binvox``; threshold first, e.g.
    ``grid > 0.5``).

    Args:
        grids: ``(R, R, R)`` or ``(N, R, R, R)`` (or ``(N, 1, R, R, R)``), numpy or torch.
        path: ``.mat``, ``.binvox`` (one grid only), ``.npy``, ``.npz`` or ``.h5``/``.hdf5``.
        key: the variable / array / dataset name (default ``instance`` / ``X`` / ``voxels``);
            a ``.mat`` variable's must be one MATLAB takes (a letter, then letters, digits or
            underscores, 63 at most).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: an unknown suffix; a grid of the wrong shape or with values outside
            ``[0, 1]``; a batch or non-binary values for ``.binvox``; a ``.mat`` key that is
            no MATLAB variable name, another key that names no array.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VOXEL_SUFFIXES:
        raise ValueError(f"cannot write voxels to {path}: suffix must be one of "
                         f"{', '.join(VOXEL_SUFFIXES)}, got {suffix!r}")
    array = as_array(grids)
    # Integer and bool grids must be binary; float grids may be, and are then stored as uint8.
    integral = array.dtype == bool or np.issubdtype(array.dtype, np.integer)
    if integral and array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"grids for {path}: expected occupancy {{0, 1}} or in [0, 1], got "
                         f"integer values in [{array.min()}, {array.max()}]")
    array = check_grids(array, binary=integral, name=f"grids for {path}")
    if array.dtype != np.uint8 and np.isin(array, (0, 1)).all():
        array = array.astype(np.uint8)
    name = key if key is not None else DEFAULT_KEYS.get(suffix)
    if suffix == ".binvox":
        if array.ndim != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"a .binvox file holds one binary grid (R, R, R); got shape {array.shape} "
                f"with {'binary' if array.dtype == np.uint8 else 'non-binary'} values "
                f"(threshold first, e.g. grid > 0.5, and write one grid per file)"
            )
        write = partial(_write_binvox, array)
    elif suffix == ".mat":
        if not (isinstance(name, str) and _MATLAB_NAME.fullmatch(name)):
            # scipy's savemat skips a name starting with "_" (a warning only: a .mat of no
            # variable) and writes the others, which MATLAB cannot load by name.
            raise ValueError(f"cannot write voxels to {path}: key {name!r} is no MATLAB "
                             "variable name (a letter, then up to 62 letters, digits or "
                             "underscores)")
        stored = array.astype(np.int8) if array.dtype == np.uint8 else array
        write = partial(_write_mat, {name: np.ascontiguousarray(stored.swapaxes(-3, -2))})
    elif suffix == ".npy":
        return atomic_save_npy(path, array)
    # An HDF5 key is a path of names: "train/voxels".
    elif not (isinstance(name, str) and name and (suffix == ".npz" or all(
            part not in ("", ".") for part in name.removeprefix("/").split("/")))):
        raise ValueError(f"cannot write voxels to {path}: key {name!r} names no array (a name; "
                         "in HDF5 a path of names, as train/voxels)")
    elif suffix == ".npz":
        return atomic_save_npz(path, **{name: array})
    else:
        write = partial(write_h5, fill=partial(_fill_h5, array, name))
    return atomic_write(path, write)


def _write_binvox(grid: np.ndarray, tmp: str) -> None:
    side = grid.shape[0]
    flat = np.ascontiguousarray(grid.transpose(0, 2, 1)).ravel()  # [x, y, z] -> binvox x, z, y
    # Runs of equal values, each split into pieces of at most 255 (a count is one byte).
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    lengths = np.diff(np.r_[starts, flat.size])
    pieces = -(-lengths // 255)
    values = np.repeat(flat[starts], pieces)
    counts = np.full(pieces.sum(), 255, dtype=np.int64)
    ends = np.cumsum(pieces) - 1
    counts[ends] = lengths - 255 * (pieces - 1)
    # translate/scale map voxel centres into the unit cube [-0.5, 0.5]^3, stgconv's mesh frame.
    header = (f"#binvox 1\ndim {side} {side} {side}\ntranslate -0.5 -0.5 -0.5\nscale 1.0\n"
              f"data\n").encode("ascii")
    with open(tmp, "wb") as file:
        file.write(header)
        file.write(np.stack([values, counts], axis=1).astype(np.uint8).tobytes())


def _write_mat(arrays: dict[str, np.ndarray], tmp: str) -> None:
    with open(tmp, "wb") as file:
        scipy.io.savemat(file, arrays, do_compression=True)


def _fill_h5(array: np.ndarray, name: str, h5: h5py.File) -> None:
    chunks = array.shape if array.ndim == 3 else (1, *array.shape[1:])
    # An empty batch has no chunk to compress (h5py refuses a chunk larger than the data).
    compress = dict(chunks=chunks, compression="gzip", compression_opts=_GZIP_LEVEL)
    dataset = h5.create_dataset(name, data=array, **(compress if array.size else {}))
    dataset.attrs["layout"] = "(R, R, R) or (N, R, R, R) indexed [x, y, z], z up"


# --------------------------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------------------------


def pad_to(grids: np.ndarray | Tensor, size: int) -> np.ndarray | Tensor:
    """Pad the last three (cubic) axes with zeros to ``size``, centred.

    E.g. the 30^3 ModelNet10 grids to the 32^3 the networks take: one empty voxel per side.
    When ``size - R`` is odd the extra voxel goes to the high end of each axis.

    Args:
        grids: ``(..., R, R, R)``, numpy or torch.
        size: the new side, ``>= R``.

    Returns:
        ``(..., size, size, size)``, the same type, dtype and device as ``grids``.
    """
    size = as_int(size, "size", minimum=1)
    shape = tuple(grids.shape)
    if len(shape) < 3 or len(set(shape[-3:])) != 1:
        raise ValueError(f"expected cubic grids (..., R, R, R), got shape {shape}")
    side = shape[-1]
    if size < side:
        raise ValueError(f"cannot pad grids of side {side} to the smaller size {size}")
    low = (size - side) // 2
    high = size - side - low
    if isinstance(grids, Tensor):
        return F.pad(grids, (low, high) * 3)
    return np.pad(grids, [(0, 0)] * (len(shape) - 3) + [(low, high)] * 3)


def to_tensor(grids: np.ndarray) -> Tensor:
    """numpy ``(R, R, R)`` / ``(N, R, R, R)`` -> float32 ``(1, R, R, R)`` / ``(N, 1, R, R, R)``."""
    if grids.ndim not in (3, 4):  # else a channel axis went into the wrong place silently
        raise ValueError(f"expected voxel grids (R, R, R) or (N, R, R, R), got shape "
                         f"{tuple(grids.shape)}")
    tensor = torch.from_numpy(np.ascontiguousarray(grids)).float()
    return tensor.unsqueeze(0) if tensor.dim() == 3 else tensor.unsqueeze(1)


__all__ = ["VOXEL_SUFFIXES", "DEFAULT_KEYS", "load_voxels", "save_voxels", "check_grids",
           "pad_to", "to_tensor"]
