"""Voxel datasets: a ModelNet-style mesh tree voxelized once into an HDF5 cache, a Dataset over
such a cache or an ``.npz``, and one call that loads training shapes from any voxel source.

A shape is a float32 tensor ``(1, R, R, R)`` with occupancy in ``[0, 1]``, indexed ``[x, y, z]``
with the up axis last (the convention of ``../shared/data/voxel``); a batch is
``(N, 1, R, R, R)``.

Cache layout (format 1), written by :func:`build_modelnet_cache` /
``python datasets/voxel/prepare.py``::

    voxels  uint8  (N, R, R, R)  {0, 1}, one gzip chunk per shape, [x, y, z] with z up
    label   int64  (N,)          index into attrs["categories"]
    split   uint8  (N,)          index into attrs["split_names"] = ["train", "test"]
    source  utf-8  (N,)          the mesh each shape came from, relative to the tree's root
    attrs: format_version, categories, split_names, resolution, margin, up_axis, layout,
           method, created_by, skipped (one "path: reason" per mesh left out)
"""

from __future__ import annotations

import errno
import operator
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from stgconv.checks import (
    as_int,
    check_cache_version,
    check_output,
    check_up_axis,
    class_numbers,
    npz_array,
    open_npz,
)
from stgconv.console import progress_bar
from stgconv.data.base import NamedDataset, nearer_size_advice
from stgconv.io.atomic import atomic_write
from stgconv.io.folder import folder_names, list_files, list_folders
from stgconv.io.h5 import LazyH5, as_text, check_inside, to_text, write_h5
from stgconv.io.mesh import MESH_SUFFIXES, voxelize_file
from stgconv.io.voxel import VOXEL_SUFFIXES, check_grids, load_voxels, to_tensor
from stgconv.io.voxel import pad_to as pad_grids
from stgconv.version import __version__

# h5py takes a while to import; it loads where a cache is built or read.
if TYPE_CHECKING:
    import h5py

MODELNET10_CATEGORIES = ("bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand",
                         "sofa", "table", "toilet")
"""ModelNet10's label order, used by every ``y`` in ``../shared/data/voxel``."""

CACHE_SUFFIXES = (".h5", ".hdf5")
CACHE_FORMAT_VERSION = 1
CACHE_BUILDER = ("stgconv.data.voxel.build_modelnet_cache (from the command line: "
                 "datasets/voxel/prepare.py of the source tree)")
"""How messages tell a user to make a shape cache: the script is not in an installed copy."""
SPLIT_NAMES = ("train", "test")

_GZIP_LEVEL = 4
_METHOD = ("stgconv.io.mesh.voxelize: bounding box centred, longest side scaled to "
           "resolution - 2 * margin voxels; surface voxels + axis carving + enclosed cavities "
           "filled")

# A shipped config's categories ([chair]) stay in force under --data: the way out, in its words.
_EVERY_CATEGORY = ("categories=None takes every shape (in a config, data.categories: null, e.g. "
                   "--set data.categories=null)")


# --------------------------------------------------------------------------------------------
# Building the cache
# --------------------------------------------------------------------------------------------


def find_modelnet_meshes(
    root: str | Path, *, categories: Sequence[str] | None = None,
    splits: Sequence[str] = SPLIT_NAMES, dangling_links: bool = False,
) -> tuple[list[str], list[tuple[Path, int, int]]]:
    """The meshes of a ModelNet-style tree ``<root>/<category>/<split>/*.off``.

    Args:
        root: the tree (e.g. an unpacked ``ModelNet10``).
        categories: the categories to take, in label order; by default every folder of
            ``root`` that has one of ``splits`` inside, labelled in ModelNet10 order when they
            are all ModelNet10 categories (so labels agree with the shared ``.npz`` files, even
            for a subset), else alphabetically.
        splits: any of ``"train"``, ``"test"``.
        dangling_links: list links to nothing too (see :func:`stgconv.io.folder.list_files`).

    Returns:
        ``(category names, [(mesh path, label, split index), ...])``, meshes in natural name
        order within each category and split; ``label`` indexes the names, ``split index``
        :data:`SPLIT_NAMES`.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: bad ``splits``; an asked category without a folder; no mesh at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ModelNet tree not found (or not a folder): {root}")
    if (isinstance(splits, str) or not splits or not set(splits) <= set(SPLIT_NAMES)
            or len(set(splits)) != len(splits)):  # a repeated split would take its meshes twice
        raise ValueError(f"splits must be a non-empty sequence of distinct {SPLIT_NAMES}, got "
                         f"{splits!r}")
    # Plain name order for the alphabetical labels; a zip's __MACOSX is no category.
    found = sorted(p.name for p in list_folders(root)
                   if any((p / split).is_dir() for split in splits))
    if categories is None:
        if not found:
            raise ValueError(f"{root} has no <category>/{{{','.join(splits)}}}/ folders: not a "
                             f"ModelNet-style tree{_folders_held(root)}")
        names = (list(MODELNET10_CATEGORIES) if set(found) <= set(MODELNET10_CATEGORIES)
                 else found)
    else:
        names = [str(name) for name in categories]
        if isinstance(categories, str) or not names or len(set(names)) != len(names):
            raise ValueError(f"categories must be a list of distinct names, got {categories!r}")
        missing = [name for name in names if name not in found]
        if missing:
            raise ValueError(f"no {'/'.join(splits)} folder for categories {missing} in {root}; "
                             f"it has {found}")
    meshes = []
    for label, name in enumerate(names):
        for split in splits:
            folder = root / name / split
            if folder.is_dir():
                meshes += [(file, label, SPLIT_NAMES.index(split))
                           for file in list_files(folder, MESH_SUFFIXES,
                                                  dangling_links=dangling_links)]
    if not meshes:
        raise ValueError(f"no meshes ({', '.join(MESH_SUFFIXES)}) under {root}/<category>/"
                         f"{{{','.join(splits)}}}/")
    return names, meshes


def build_modelnet_cache(
    root: str | Path, out_path: str | Path, *, resolution: int = 32,
    categories: Sequence[str] | None = None, splits: Sequence[str] = SPLIT_NAMES,
    margin: int = 1, up_axis: int = 2, skip_unreadable: bool = False, progress: bool = False,
    overwrite: bool = True,
) -> Path:
    """Voxelize every mesh of a ModelNet-style tree into an HDF5 cache (written atomically).

    Args:
        root: ``<root>/<category>/{train,test}/*.off`` (``.obj``/``.ply``/``.stl`` too).
        out_path: the cache, ``.h5`` or ``.hdf5``.
        resolution: voxels per side ``R``.
        categories, splits: which meshes, and the label order (see :func:`find_modelnet_meshes`).
        margin, up_axis: passed to :func:`stgconv.io.mesh.voxelize` (ModelNet is z-up).
        skip_unreadable: leave out (and list in ``attrs["skipped"]``, with a warning) meshes
            that cannot be read (links to nothing too), instead of stopping at the first.
        progress: show a progress bar (tqdm) on stderr.
        overwrite: replace a cache already at ``out_path``. ``False``: refuse one there before
            the build, and once it is done one another process wrote meanwhile
            (``FileExistsError``).

    Returns:
        ``out_path`` as a ``Path``. Layout: see the module docstring.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: bad arguments; an unreadable mesh (unless ``skip_unreadable``); nothing
            left to write.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in CACHE_SUFFIXES:
        raise ValueError(f"the cache must end in {' or '.join(CACHE_SUFFIXES)}, got {out_path}")
    resolution = as_int(resolution, "resolution", minimum=2)
    margin = as_int(margin, "margin", minimum=0)
    if 2 * margin >= resolution:
        raise ValueError(f"margin={margin} leaves no voxels inside a grid of {resolution}")
    up_axis = check_up_axis(up_axis)
    check_output(out_path, "out_path", folder=False)  # a folder there: before the build
    if not overwrite and out_path.exists():
        # Before the build: found after it, the refusal came when every mesh had been
        # voxelized, and blamed "another process" for a cache that was there all along.
        raise FileExistsError(errno.EEXIST, "it exists; pass overwrite=True to replace it",
                              str(out_path))
    root = Path(root)
    names, meshes = find_modelnet_meshes(root, categories=categories, splits=splits,
                                         dangling_links=skip_unreadable)

    def fill(h5: h5py.File) -> None:
        _write_cache(h5, root, names, meshes, resolution=resolution, margin=margin,
                     up_axis=up_axis, skip_unreadable=skip_unreadable, progress=progress)

    return atomic_write(out_path, partial(write_h5, fill=fill), replace=overwrite)


def _write_cache(
    h5: h5py.File, root: Path, names: list[str], meshes: list[tuple[Path, int, int]], *,
    resolution: int, margin: int, up_axis: int, skip_unreadable: bool, progress: bool,
) -> None:
    import h5py

    side = (resolution,) * 3
    voxels = h5.create_dataset("voxels", shape=(0, *side), maxshape=(None, *side),
                               dtype=np.uint8, chunks=(1, *side), compression="gzip",
                               compression_opts=_GZIP_LEVEL)
    per_shape = {
        "label": h5.create_dataset("label", shape=(0,), maxshape=(None,), dtype=np.int64),
        "split": h5.create_dataset("split", shape=(0,), maxshape=(None,), dtype=np.uint8),
        "source": h5.create_dataset("source", shape=(0,), maxshape=(None,),
                                    dtype=h5py.string_dtype("utf-8")),
    }
    skipped: list[str] = []
    for path, label, split in progress_bar(meshes, desc="voxelizing", unit="mesh",
                                           disable=not progress):
        try:
            grid = voxelize_file(path, resolution, margin=margin, up_axis=up_axis)
        except (ValueError, FileNotFoundError) as err:  # it names the file
            if not skip_unreadable:
                raise
            skipped.append(f"{path}: {err}")  # one "path: reason" each, as the video cache's
            # As the video cache's too: "skipping FILE is not an OFF file" read as one clause.
            warnings.warn(f"skipping {skipped[-1]}", stacklevel=3)
            continue
        n = voxels.shape[0]
        for dataset in (voxels, *per_shape.values()):
            dataset.resize(n + 1, axis=0)
        voxels[n] = grid
        per_shape["label"][n] = label
        per_shape["split"][n] = split
        per_shape["source"][n] = to_text(path.relative_to(root).as_posix())
    if voxels.shape[0] == 0:
        raise ValueError(f"no shapes to write: all {len(meshes)} meshes were skipped "
                         f"({'; '.join(skipped)})")
    attrs = h5.attrs
    attrs["format_version"] = CACHE_FORMAT_VERSION
    attrs.create("categories", np.array([to_text(name) for name in names], dtype=object),
                 dtype=h5py.string_dtype("utf-8"))
    attrs.create("split_names", np.array(SPLIT_NAMES, dtype=object),
                 dtype=h5py.string_dtype("utf-8"))
    attrs["resolution"] = resolution
    attrs["margin"] = margin
    attrs["up_axis"] = up_axis
    attrs["layout"] = "voxels (N, R, R, R) uint8 {0, 1}, indexed [x, y, z], z up"
    attrs["method"] = _METHOD
    attrs["created_by"] = f"stgconv {__version__}"
    attrs.create("skipped", np.array([to_text(s) for s in skipped], dtype=object),
                 dtype=h5py.string_dtype("utf-8"))


# --------------------------------------------------------------------------------------------
# The Dataset
# --------------------------------------------------------------------------------------------


class VoxelShapes(LazyH5, NamedDataset):
    """Shapes of an HDF5 cache (:func:`build_modelnet_cache`) or an ``.npz`` with ``X`` (and
    optionally ``y``), as ``(voxels, label)`` pairs.

    ``dataset[i]`` is ``(float32 (1, R, R, R) in [0, 1], int label)``, always a pair: the label
    is ``-1`` when the source has none (so a classifier fails loudly on unlabelled data rather
    than learning class 0). Labels keep their values in the source: indices into ``classes``.

    An HDF5 cache is opened on first access in each process, never in ``__init__`` (which reads
    only the metadata), so the dataset is safe with ``DataLoader(num_workers > 0)``
    (:class:`stgconv.io.h5.LazyH5`). An ``.npz`` is read into memory in ``__init__`` (its
    compressed arrays cannot be read lazily).

    An ``.npz`` names its categories with a string array ``categories``; without one, labels
    below 10 are taken to be in ModelNet10 order (the convention of every ``y`` in
    ``../shared/data/voxel``).

    Args:
        root: the ``.h5``/``.hdf5`` cache or the ``.npz`` file.
        split: ``"train"`` or ``"test"`` (caches only; ``.npz`` files hold no split).
        categories: keep only these category names.
        pad_to: zero-pad every shape, centred, to this side (30 -> 32 for the ModelNet10 grids).
        transform: applied to each ``(1, R, R, R)`` tensor.

    Attributes:
        resolution: the side ``R`` of the returned shapes (after ``pad_to``).
        classes: the category names, index = label (``None`` when unknown).
        classes_stored: whether the file names them (a cache always does), rather than
            ``classes`` being ModelNet10's by the convention above.
        targets: the labels of the kept shapes, ``(len(self),)`` int64 (all ``-1`` when none).
        indices: their rows in the file.
        sources: their source paths (caches), else ``None``.
    """

    def __init__(self, root: str | Path, *, split: str | None = None,
                 categories: Sequence[str] | None = None, pad_to: int | None = None,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.pad_to = pad_to
        if split is not None and split not in SPLIT_NAMES:
            raise ValueError(f"split must be None or one of {SPLIT_NAMES}, got {split!r}")
        if self.root.is_dir():
            raise ValueError(f"{self.root} is a folder; labelled shapes are an .npz (X, y) or "
                             f"an HDF5 cache of {CACHE_BUILDER}")
        if not self.root.is_file():
            raise FileNotFoundError(f"voxel shapes not found: {self.root}")
        suffix = self.root.suffix.lower()
        self._array: np.ndarray | None = None
        self.classes_stored = True
        if suffix in CACHE_SUFFIXES:
            labels, splits, side, self.classes, sources = self._read_cache_metadata()
        elif suffix == ".npz":
            labels, splits, side, self.classes, sources = self._read_npz()
        else:
            raise ValueError(f"{self.root} is not a voxel cache (.h5/.hdf5) or an .npz; read "
                             f"other voxel files with stgconv.data.voxel.load_voxel_shapes")
        keep = np.ones(len(labels), dtype=bool)
        if split is not None:
            if splits is None:
                raise ValueError(f"split={split!r} but {self.root} holds no split information; "
                                 f"use data.split: all (split=None in Python)")
            keep &= splits == SPLIT_NAMES.index(split)
        self.categories = None if categories is None else list(categories)
        if categories is not None:
            keep &= np.isin(labels, self._category_labels(categories))
        self.indices = np.flatnonzero(keep)
        self.targets = labels[self.indices]
        self.sources = None if sources is None else [sources[i] for i in self.indices]
        if pad_to is not None:
            pad_to = as_int(pad_to, "pad_to", minimum=side)
        self.resolution = side if pad_to is None else pad_to

    def _read_cache_metadata(self) -> tuple:
        import h5py

        try:
            h5 = self._open_index()
        except OSError as err:
            raise ValueError(f"cannot read voxel cache {self.root}: {err}") from err
        with h5:
            voxels, label = h5.get("voxels"), h5.get("label")
            if (not isinstance(voxels, h5py.Dataset) or voxels.ndim != 4
                    or len(set(voxels.shape[1:])) != 1 or not isinstance(label, h5py.Dataset)
                    or label.shape != voxels.shape[:1] or "categories" not in h5.attrs):
                raise ValueError(
                    f"{self.root} is not a stgconv voxel cache: expected datasets 'voxels' "
                    f"(N, R, R, R) and 'label' (N,) and the attribute 'categories'; build one "
                    f"with {CACHE_BUILDER}"
                )
            check_cache_version(h5.attrs.get("format_version"), CACHE_FORMAT_VERSION, self.root,
                                rebuild=CACHE_BUILDER)
            check_inside(h5, voxels)  # its rows are read later, through this same file
            # Checked as an .npz's y and categories are: a cache written by another tool with
            # one category as a bare string read as its letters, and labels past the names (or
            # -1, "no label") were kept.
            labels = _labels(check_inside(h5, label)[()], f"{self.root}: label")
            splits = check_inside(h5, h5["split"])[()] if "split" in h5 else None
            sources = ([as_text(s) for s in check_inside(h5, h5["source"])[()]]
                       if "source" in h5 else None)
            classes = _class_names(h5.attrs["categories"], labels, str(self.root), "label")
            return labels, splits, voxels.shape[1], classes, sources

    def _read_npz(self) -> tuple:
        with open_npz(self.root) as archive:
            # The only array of an archive is its grids, as load_voxels reads it
            # (np.savez(file, grids) names it arr_0).
            only = archive.files[0] if len(archive.files) == 1 else None
            if "X" not in archive.files and only is None:
                raise ValueError(f"{self.root} has no array 'X' (it holds {archive.files}); "
                                 f"expected X (N, R, R, R) and optionally y (N,)")
            array = npz_array(archive, only or "X", self.root)
            labels = npz_array(archive, "y", self.root) if "y" in archive.files else None
            names = (npz_array(archive, "categories", self.root)
                     if "categories" in archive.files else None)
        grids = _checked(array, str(self.root))
        # One grid (R, R, R) is a batch of one, as a plain voxel file and the evaluations read
        # it: np.savez("bed.npz", X=grid) trained nothing but scored.
        self._array = grids[None] if grids.ndim == 3 else grids
        n = len(self._array)
        if labels is None:
            return np.full(n, -1, dtype=np.int64), None, self._array.shape[1], None, None
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:  # (N, 1), as Keras keeps labels
            labels = labels[:, 0]
        if labels.shape != (n,):
            raise ValueError(f"{self.root}: y must hold N={n} labels ((N,) or (N, 1)), got "
                             f"{labels.shape}")
        labels = _labels(labels, f"{self.root}: y")
        self.classes_stored = names is not None
        if names is not None:
            classes = _class_names(names, labels, str(self.root), "y")
        elif n and labels.max() < len(MODELNET10_CATEGORIES):
            classes = list(MODELNET10_CATEGORIES)
        else:
            classes = None
        return labels, None, self._array.shape[1], classes, None

    def _category_labels(self, categories: Sequence[str]) -> list[int]:
        if isinstance(categories, str):
            raise ValueError(f"categories must be a list of names, got the string "
                             f"{categories!r} (write [{categories!r}])")
        if self.classes is None:
            raise ValueError(f"categories={list(categories)} but {self.root} does not name its "
                             f"categories (labels y of ModelNet10's, or names in an array "
                             f"'categories'); {_EVERY_CATEGORY}")
        unknown = [name for name in categories if name not in self.classes]
        if unknown:
            raise ValueError(f"unknown categories {unknown} for {self.root}; it has "
                             f"{self.classes}")
        return [self.classes.index(name) for name in categories]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = operator.index(index)
        n = len(self.indices)
        if not -n <= index < n:
            raise IndexError(f"shape index {index} out of range for {n} shapes")
        row = int(self.indices[index % n])
        if self._array is not None:
            array = self._array[row]
        else:
            array = _checked(self._h5()["voxels"][row], f"{self.root}: shape {row}")
        shape = to_tensor(array)  # (1, R, R, R) float32
        if self.pad_to is not None:
            shape = pad_grids(shape, self.pad_to)
        if self.transform is not None:
            shape = self.transform(shape)
        return shape, int(self.targets[index % n])

    def stack(self, max_shapes: int | None = None) -> Tensor:
        """The first ``max_shapes`` shapes (all by default) as one ``(N, 1, R, R, R)`` tensor,
        read in one pass (``transform`` is not applied)."""
        if max_shapes is not None:  # a slice to -1 dropped the last shape silently
            max_shapes = as_int(max_shapes, "max_shapes", minimum=1)
        rows = self.indices if max_shapes is None else self.indices[:max_shapes]
        if self._array is not None:
            array = self._array[rows]
        else:
            # One read per shape (a chunk each): bounded memory, and no slow h5py point lists.
            voxels = self._h5()["voxels"]
            array = np.empty((len(rows), *voxels.shape[1:]), dtype=voxels.dtype)
            for i, row in enumerate(rows):
                voxels.read_direct(array, np.s_[row], np.s_[i])
            array = _checked(array, str(self.root))
        batch = to_tensor(array)
        return batch if self.pad_to is None else pad_grids(batch, self.pad_to)

    def extra_repr(self) -> str:
        parts = [f"root={self.root}", f"resolution={self.resolution}"]
        if self.split is not None:
            parts.append(f"split={self.split!r}")
        if self.categories is not None:
            parts.append(f"categories={self.categories}")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Loading training shapes from any source
# --------------------------------------------------------------------------------------------


def load_voxel_shapes(
    path: str | Path, *, categories: Sequence[str] | None = None, split: str | None = None,
    max_shapes: int | None = None, pad_to: int | None = None, resolution: int | None = None,
    margin: int = 1, up_axis: int = 2, mesh_side: int | None = None, smallest_side: int = 1,
) -> Tensor:
    """Training shapes as one float32 tensor ``(N, 1, R, R, R)`` in ``[0, 1]``.

    ``path`` may be:

    - an ``.npz`` (``X``, optional ``y``) or an HDF5 cache of :func:`build_modelnet_cache`:
      read through :class:`VoxelShapes` (``categories``/``split`` filter by label and split);
    - another voxel file (``.mat``, ``.binvox``, ``.npy``, a plain ``.h5``): one grid or a batch;
    - a folder of voxel files (``.mat``, ``.binvox``, ``.npy``), e.g.
      ``../shared/data/voxel/chairs_30_mat``, each one grid or a batch;
    - a folder of meshes (``.off``, ``.obj``, ``.ply``, ``.stl``), voxelized here at
      ``mesh_side`` (default ``resolution``, else ``pad_to``, else 32: at the side the caller
      pads to, which a model's data.size is) with ``margin`` and ``up_axis`` (slow for many
      meshes: build a cache with ``datasets/voxel/prepare.py`` instead).

    In folders, files are taken in natural name order, and ``categories`` keeps the files whose
    names start with ``<category>_`` (ModelNet's ``chair_0001.off``, 3D ShapeNets'
    ``chair_000000182_1.mat``).

    Args:
        max_shapes: keep the first ``max_shapes`` (in folders, only those files are read).
        pad_to: zero-pad, centred, to this side (30 -> 32); a mesh folder's grid side unless
            ``resolution`` is given.
        resolution: for mesh folders, the grid side; for voxel sources, the side the shapes
            must have (checked before ``pad_to``), or ``None`` to accept any.
        mesh_side: for mesh folders only, the grid side (voxel sources keep their own).
        up_axis: for mesh folders only, the meshes' up axis (0 = x, 1 = y, 2 = z; ModelNet: 2,
            ShapeNet and most ``.obj`` files: 1), turned to array axis 2. Voxel sources are
            read as stored, up = the last axis.
        smallest_side: the smallest grid side the model to be trained takes: the warning of
            grids padded to twice their side or more advises no smaller data.size.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unreadable file (named); grids that are not cubic, not in ``[0, 1]``,
            or of different sizes; a side other than ``resolution``; options the source cannot
            honour (``split`` for a folder, an ``up_axis`` other than 2 for voxel grids); a
            mesh file (meshes are read from a folder); no shapes left; a ``mesh_side`` not an
            int >= 2 or other than ``resolution``; an ``up_axis`` not 0, 1 or 2.
    """
    path = Path(path)
    up_axis = check_up_axis(up_axis)
    if max_shapes is not None:
        max_shapes = as_int(max_shapes, "max_shapes", minimum=1)
    if resolution is not None:
        resolution = as_int(resolution, "resolution", minimum=2)
    if mesh_side is not None:
        # Checked here: a 0 fell through to the default side 32, and a 1.5 was refused as
        # the first mesh's "resolution".
        mesh_side = as_int(mesh_side, "mesh_side", minimum=2)
        if resolution is not None and mesh_side != resolution:
            # Both give a mesh folder's side: mesh_side won and the shapes came back at it,
            # not at the resolution asked.
            raise ValueError(f"mesh_side={mesh_side} and resolution={resolution} disagree: "
                             f"both set the side meshes are voxelized at; give one")
    if not path.exists():
        raise FileNotFoundError(f"voxel shapes not found: {path}")
    if not path.is_dir() and path.suffix.lower() in MESH_SUFFIXES:
        # Else refused as a voxel file: with up_axis 1, as "voxel grids" whose up axis should
        # be left at 2, and left at 2 for its suffix.
        raise ValueError(f"{path} is a mesh; meshes are read from a folder, each voxelized at "
                         "the grid side (a model's data.size): give the folder that holds it")
    if not path.is_dir():  # a voxel file (a folder's files say which kind it holds)
        refuse_up_axis_of_grids(path, up_axis)
    if path.is_dir():
        if split is not None:
            raise ValueError(f"split={split!r} needs an HDF5 cache with splits; {path} is a "
                             f"folder (build a cache with {CACHE_BUILDER})")
        batch = _load_folder(path, categories, max_shapes, resolution, margin, up_axis,
                             mesh_side=mesh_side or resolution or pad_to or 32)
    elif path.suffix.lower() == ".npz" or (path.suffix.lower() in CACHE_SUFFIXES
                                            and _is_shape_cache(path)):
        dataset = VoxelShapes(path, split=split, categories=categories)
        batch = dataset.stack(max_shapes)
    else:
        if categories is not None or split is not None:
            in_config = " and ".join(
                [*([] if categories is None else ["data.categories: null"]),
                 *([] if split is None else ["data.split: all"])])
            raise ValueError(f"{_selection(categories, split)} need labelled shapes (.npz with "
                             f"y, or an HDF5 cache); {path} is a plain voxel file, read whole: "
                             f"leave them out (in a config, {in_config})")
        # The first max_shapes read alone: the whole batch became float32 to keep them.
        grids = load_voxels(path, binary=False, max_shapes=max_shapes)
        batch = to_tensor(grids[None] if grids.ndim == 3 else grids)
    if len(batch) == 0:
        asked = _selection(categories, split)
        kept_by_name = (" (a folder's files are kept by their names: <category>_...)"
                        if categories is not None and path.is_dir() else "")
        raise ValueError(f"no shapes in {path}" + (f" for {asked}{kept_by_name}" if asked else "")
                         + (f"; {_EVERY_CATEGORY}" if categories is not None else ""))
    side = batch.shape[-1]
    if resolution is not None and side != resolution and not path.is_dir():
        raise ValueError(f"the shapes in {path} are {side}^3 but resolution={resolution} was "
                         f"asked (use pad_to= to pad smaller grids)")
    if pad_to is not None and side > pad_to:  # pad_grids' own refusal named neither
        raise ValueError(f"the shapes in {path} are {side}^3, larger than the side {pad_to} "
                         f"they are padded to (pad_to, a model's data.size)")
    if pad_to is not None and pad_to >= 2 * side:
        # A voxel config without data.size padded 4^3 or 32^3 grids to the default 64^3
        # without a word: mostly empty space, trained on at 8 times the cost or more.
        warnings.warn(f"the shapes in {path} are {side}^3, padded with empty voxels to "
                      f"{pad_to}^3 (pad_to, a model's data.size): {(pad_to / side) ** 3:.0f} "
                      "times the voxels; "
                      + nearer_size_advice(
                          side, pad_to, smallest_side,
                          as_is=f"set data.size: {side} to train at their own side"),
                      stacklevel=2)
    return batch if pad_to is None else pad_grids(batch, pad_to)


def _labels(labels: np.ndarray, name: str) -> np.ndarray:
    """A file's class numbers ``(N,)`` as int64 (:func:`~stgconv.checks.class_numbers`), none
    negative: -1 means "no label" here."""
    labels = class_numbers(labels, name)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} has negative labels ({labels.min()})")
    return labels


def _class_names(names: object, labels: np.ndarray, where: str, key: str) -> list[str]:
    """The category names a file stores, ``(K,)``, ``(K, 1)`` or one bare name, as text,
    refused (naming ``where``) unless distinct and naming every one of its ``labels`` (under
    ``key``)."""
    names = np.atleast_1d(names)  # one name stored bare: its letters were read as names
    if names.ndim == 2 and names.shape[1] == 1:  # (K, 1), a column of names
        names = names[:, 0]
    if names.ndim != 1:  # else each row read as one name, "['chair']"
        raise ValueError(f"{where}: categories must be names (K,) or (K, 1), got {names.shape}")
    classes = [as_text(name) for name in names]
    # A repeated name would merge two classes; too few would leave labels unnamed.
    if len(set(classes)) != len(classes):
        raise ValueError(f"{where}: categories must be distinct names, got {classes}")
    if labels.size and labels.max() >= len(classes):
        raise ValueError(f"{where}: {key} holds label {int(labels.max())} but categories names "
                         f"{len(classes)} classes ({classes})")
    return classes


def _checked(array: np.ndarray, name: str) -> np.ndarray:
    """Grids ``(N, R, R, R)`` or ``(R, R, R)`` of an ``.npz`` or a cache, checked as any voxel
    file's (:func:`~stgconv.io.voxel.check_grids`): integer data must be binary and stays uint8
    (4x smaller than float32 in memory), float data occupancy in ``[0, 1]``. A cache's rows are
    checked as they are read: one written by another tool in the cache layout, 0/255 grids,
    trained as occupancies of 255."""
    binary = array.dtype == bool or np.issubdtype(array.dtype, np.integer)
    return check_grids(array, binary=binary, name=name)


def _selection(categories: Sequence[str] | None, split: str | None) -> str:
    """``categories=[...] and split='...'``, of those given, for a message."""
    return " and ".join([*([] if categories is None else [f"categories={list(categories)}"]),
                         *([] if split is None else [f"split={split!r}"])])


def refuse_up_axis_of_grids(source: str | Path, up_axis: int) -> None:
    """``ValueError`` for an ``up_axis`` other than 2 given for the voxel grids at ``source`` (a
    file or a folder): it turns meshes as they are voxelized, and grids are read as stored (up =
    the last axis), so it would look like a setting that took effect. A cache voxelized from
    meshes (:func:`cache_up_axis`) also takes their up axis: it says which way up the meshes
    stood, as a run trained on the cache records."""
    if up_axis == 2:
        return
    built_with = cache_up_axis(source)
    if up_axis == built_with:
        return
    if built_with is not None:
        raise ValueError(f"up_axis={up_axis} (data.up_axis, --up-axis) disagrees with {source}, "
                         f"a cache voxelized from meshes of up axis {built_with}, read as stored "
                         f"with up = the last axis: leave the up axis out or give {built_with}")
    raise ValueError(f"up_axis={up_axis} (data.up_axis, --up-axis) turns meshes as they are "
                     f"voxelized, but {source} holds voxel grids, read as stored with up = "
                     "the last axis: leave the up axis at 2")


def cache_up_axis(path: str | Path) -> int | None:
    """The up axis of the meshes the shape cache at ``path`` (:func:`build_modelnet_cache`) was
    voxelized from, or ``None`` for any other file (or a cache that does not record it)."""
    path = Path(path)
    if path.suffix.lower() not in CACHE_SUFFIXES or not path.is_file():
        return None
    # Opened once for the layout and the attribute both (it was opened twice): each open
    # reads the file's metadata again.
    with _read_hdf5(path) as h5:
        if not _holds_shapes(h5):
            return None
        recorded = h5.attrs.get("up_axis")
    # A hand-written cache's odd value is not an error here: its grids are read as stored.
    return int(recorded) if isinstance(recorded, (int, np.integer)) and recorded in (0, 1, 2) \
        else None


def _is_shape_cache(path: Path) -> bool:
    with _read_hdf5(path) as h5:
        return _holds_shapes(h5)


@contextmanager
def _read_hdf5(path: Path) -> Iterator[h5py.File]:
    """The HDF5 file at ``path``, open for reading; ``ValueError`` naming it where h5py cannot
    read it."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            yield h5
    except (OSError, RuntimeError) as err:  # RuntimeError: a damaged group, heap or B-tree
        raise ValueError(f"cannot read HDF5 file {path}: {err}") from err


def _holds_shapes(h5: h5py.File) -> bool:
    """Whether the open HDF5 file ``h5`` is laid out as a shape cache
    (:func:`build_modelnet_cache`)."""
    return "voxels" in h5 and "label" in h5 and "categories" in h5.attrs


def _folders_held(folder: Path) -> str:
    """`` (it holds the folders a, b, ...)`` for an error about ``folder``, or ``""``: it shows
    a tree unpacked one level too high (ModelNet10/ModelNet10/...) or laid out otherwise."""
    names = folder_names(folder)
    return f" (it holds the folders {names})" if names else ""


def _load_folder(folder: Path, categories: Sequence[str] | None, max_shapes: int | None,
                 resolution: int | None, margin: int, up_axis: int, *, mesh_side: int
                 ) -> Tensor:
    files = list_files(folder)
    voxel_files = [p for p in files if p.suffix.lower() in VOXEL_SUFFIXES]
    mesh_files = [p for p in files if p.suffix.lower() in MESH_SUFFIXES]
    if voxel_files and mesh_files:
        raise ValueError(f"{folder} mixes voxel files ({voxel_files[0].name}, ...) and meshes "
                         f"({mesh_files[0].name}, ...); keep one kind per folder")
    chosen = voxel_files or mesh_files
    if not chosen:
        # prepare.py reads meshes only: a 3D ShapeNets tree of .mat grids is read a folder at a
        # time.
        raise ValueError(
            f"no voxel files ({', '.join(VOXEL_SUFFIXES)}) or meshes ({', '.join(MESH_SUFFIXES)}) "
            f"in {folder}{_folders_held(folder)}; give the folder that holds them (folders "
            f"inside are not read; 3D ShapeNets: volumetric_data/<category>/30/train), or for a "
            f"ModelNet tree (<category>/{{train,test}}/*.off) build a cache with "
            f"{CACHE_BUILDER}"
        )
    if voxel_files:
        refuse_up_axis_of_grids(folder, up_axis)
    if categories is not None:
        if isinstance(categories, str):
            raise ValueError(f"categories must be a list of names, got the string "
                             f"{categories!r} (write [{categories!r}])")
        prefixes = tuple(f"{name}_" for name in categories)
        chosen = [p for p in chosen if p.name.startswith(prefixes)]
    grids: list[np.ndarray] = []
    count = 0
    for file in chosen:
        if max_shapes is not None and count >= max_shapes:
            break
        if mesh_files:
            grid = voxelize_file(file, mesh_side, margin=margin, up_axis=up_axis)
            array = grid[None].astype(np.uint8)
        else:
            array = load_voxels(file, binary=False)
            array = array[None] if array.ndim == 3 else array
            if grids and array.shape[1:] != grids[0].shape[1:]:
                raise ValueError(f"{file} holds {array.shape[1]}^3 grids but {chosen[0].name} "
                                 f"holds {grids[0].shape[1]}^3; all must share one size")
            if resolution is not None and array.shape[-1] != resolution:
                raise ValueError(f"{file} holds {array.shape[-1]}^3 grids but "
                                 f"resolution={resolution} was asked (use pad_to= to pad)")
        grids.append(array)
        count += len(array)
    if not grids:
        return torch.zeros(0, 1, 1, 1, 1)
    batch = np.concatenate(grids)[:max_shapes]
    return to_tensor(batch)


__all__ = ["MODELNET10_CATEGORIES", "SPLIT_NAMES", "CACHE_SUFFIXES", "find_modelnet_meshes",
           "build_modelnet_cache", "VoxelShapes", "cache_up_axis", "load_voxel_shapes",
           "refuse_up_axis_of_grids"]
