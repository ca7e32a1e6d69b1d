"""Voxel datasets: a ModelNet-style tree of small meshes written to tmp_path -> HDF5 cache ->
VoxelShapes, .npz sources, load_voxel_shapes over every kind of source, the prepare script, bad
input, and the real data of ../shared/data/voxel (skipped when absent)."""

from __future__ import annotations

import os
import pickle
import re
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _tiny import ANOTHER_CACHE, cache_written_meanwhile, fill, linked_copy, refused_before_building
from torch.utils.data import DataLoader

from stgconv.data.voxel import (
    MODELNET10_CATEGORIES,
    VoxelShapes,
    build_modelnet_cache,
    cache_up_axis,
    find_modelnet_meshes,
    load_voxel_shapes,
)
from stgconv.io.atomic import WriteError
from stgconv.io.voxel import pad_to, save_voxels

R = 12
CUBE = ("OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
        + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")
TETRA = "OFF4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"  # quirk
# A 4 x 2 x 1 box (the cube's faces): which axis is up changes its grid.
BOX = ("OFF\n8 6 0\n" + "".join(f"{4 * x} {2 * y} {z}\n" for x in (0, 1) for y in (0, 1)
                                for z in (0, 1)) + CUBE.split("\n", 10)[10])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ModelNet layout: 2 categories x {train, test} x (a cube, a tetrahedron)."""
    root = tmp_path / "ModelNet"
    for category in ("table", "chair"):
        for split in ("train", "test"):
            folder = root / category / split
            folder.mkdir(parents=True)
            (folder / f"{category}_{split}_0002.off").write_text(TETRA)
            (folder / f"{category}_{split}_0010.off").write_text(CUBE)
    (root / "README.txt").write_text("not a category")
    (root / ".DS_Store").mkdir()
    return root


@pytest.fixture
def cache(tree: Path, tmp_path: Path) -> Path:
    return build_modelnet_cache(tree, tmp_path / "cache.h5", resolution=R)


def test_find_modelnet_meshes(tree: Path) -> None:
    names, meshes = find_modelnet_meshes(tree)
    assert names == list(MODELNET10_CATEGORIES)  # labels agree with the shared .npz files
    assert [(m.name, label, split) for m, label, split in meshes[:4]] == [
        ("chair_train_0002.off", 2, 0), ("chair_train_0010.off", 2, 0),
        ("chair_test_0002.off", 2, 1), ("chair_test_0010.off", 2, 1)]
    names, meshes = find_modelnet_meshes(tree, categories=["table", "chair"], splits=["test"])
    assert names == ["table", "chair"] and len(meshes) == 4
    assert [label for _, label, _ in meshes] == [0, 0, 1, 1]
    (tree / "mug" / "train").mkdir(parents=True)  # not a ModelNet10 category
    names, _ = find_modelnet_meshes(tree)
    assert names == ["chair", "mug", "table"]
    assert find_modelnet_meshes(tree, splits=["test"])[0] == list(MODELNET10_CATEGORIES)  # no mug
    # The split index is into SPLIT_NAMES, whatever splits were asked and in what order.
    _, meshes = find_modelnet_meshes(tree, splits=["test", "train"])
    assert [(m.parent.name, split) for m, _, split in meshes[:4]] == [
        ("test", 1), ("test", 1), ("train", 0), ("train", 0)]
    # Alphabetical labels are plain name order, not the folders' natural order.
    for name in ("mug10", "mug9"):
        (tree / name / "train").mkdir(parents=True)
    assert find_modelnet_meshes(tree)[0] == ["chair", "mug", "mug10", "mug9", "table"]
    with pytest.raises(ValueError, match="sofa"):
        find_modelnet_meshes(tree, categories=["sofa"])
    with pytest.raises(ValueError, match="splits"):
        find_modelnet_meshes(tree, splits="train")
    with pytest.raises(ValueError, match="distinct"):  # every mesh would be taken twice
        find_modelnet_meshes(tree, splits=["train", "train"])


def test_a_category_of_a_test_folder_alone_is_a_category(tree: Path) -> None:
    (tree / "mug" / "test").mkdir(parents=True)
    (tree / "mug" / "test" / "mug_0001.off").write_text(CUBE)
    names, meshes = find_modelnet_meshes(tree)
    assert names == ["chair", "mug", "table"]  # alphabetical: mug is no ModelNet10 category
    assert [(m.name, split) for m, label, split in meshes if label == 1] == [("mug_0001.off", 1)]


def test_trees_laid_out_otherwise_are_refused_naming_their_folders(tree: Path,
                                                                   tmp_path: Path) -> None:
    """ModelNet40.zip unpacked into a folder of its own (ModelNet40/ beside __MACOSX/), and 3D
    ShapeNets' volumetric_data/<category>/30/{train,test}/*.mat: the refusal names the folders
    the path holds (not __MACOSX) and, for .mat grids, the folder to give, not prepare.py (which
    reads meshes only)."""
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    tree.rename(unpacked / "ModelNet40")
    (unpacked / "__MACOSX" / "ModelNet40" / "chair" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"not a ModelNet-style tree \(it holds the folders "
                                         r"ModelNet40\)$"):
        find_modelnet_meshes(unpacked)
    assert len(find_modelnet_meshes(unpacked / "ModelNet40")[1]) == 8
    volumetric = tmp_path / "volumetric_data"
    for category in ("bed", "chair"):
        for split in ("train", "test"):
            save_voxels(np.zeros((30, 30, 30)), volumetric / category / "30" / split
                        / f"{category}_000000001_1.mat")
    for folder, held in ((volumetric, "bed, chair"), (volumetric / "chair" / "30", "test, train")):
        with pytest.raises(ValueError, match=rf"\(it holds the folders {held}\); give the folder "
                                             r"that holds them .*volumetric_data/<category>/30/"):
            load_voxel_shapes(folder)
    assert load_voxel_shapes(volumetric / "chair" / "30" / "train").shape == (1, 1, 30, 30, 30)


def test_cache_layout(cache: Path, tree: Path) -> None:
    with h5py.File(cache, "r") as h5:
        voxels = h5["voxels"]
        assert voxels.shape == (8, R, R, R) and voxels.dtype == np.uint8
        assert voxels.chunks == (1, R, R, R) and voxels.compression == "gzip"
        assert set(np.unique(voxels[()])) == {0, 1}
        assert list(h5["label"][()]) == [2, 2, 2, 2, 8, 8, 8, 8]
        assert list(h5["split"][()]) == [0, 0, 1, 1, 0, 0, 1, 1]
        assert h5["source"].asstr()[0] == "chair/train/chair_train_0002.off"
        assert list(h5.attrs["categories"]) == list(MODELNET10_CATEGORIES)
        assert list(h5.attrs["split_names"]) == ["train", "test"]
        assert h5.attrs["resolution"] == R and h5.attrs["margin"] == 1
        assert len(h5.attrs["skipped"]) == 0
        tetra, cube = voxels[0], voxels[1]
    # The cube fills R - 2 voxels per side; the tetrahedron (a sixth of it) less.
    assert cube.sum() == (R - 2) ** 3
    assert 0.1 < tetra.sum() / cube.sum() < 0.35
    # A suffix in capitals is still a cache's; the up axis asked for is recorded.
    upper = build_modelnet_cache(tree, cache.parent / "upper.HDF5", resolution=4, up_axis=0)
    with h5py.File(upper, "r") as h5:
        assert h5.attrs["up_axis"] == 0
    assert len(VoxelShapes(upper)) == 8
    assert not list(cache.parent.glob("*.tmp"))


def test_a_cache_takes_the_up_axis_it_was_voxelized_with(tree: Path, cache: Path,
                                                          tmp_path: Path) -> None:
    """A cache of y-up meshes was refused data.up_axis 1 ("voxel grids, read as stored"), so a
    run trained on it could not record which way up its meshes stood; another axis is still
    refused, naming the cache's."""
    y_up = build_modelnet_cache(tree, tmp_path / "y_up.h5", resolution=4, up_axis=1)
    assert (cache_up_axis(y_up), cache_up_axis(cache)) == (1, 2)
    assert torch.equal(load_voxel_shapes(y_up, up_axis=1), load_voxel_shapes(y_up))
    with pytest.raises(ValueError, match=r"^up_axis=0 \(data\.up_axis, --up-axis\) disagrees "
                                         r"with \S*y_up\.h5, a cache voxelized from meshes of up "
                                         r"axis 1, .*give 1$"):
        load_voxel_shapes(y_up, up_axis=0)
    np.savez(tmp_path / "grids.npz", X=np.zeros((1, 4, 4, 4), np.uint8))
    assert cache_up_axis(tmp_path / "grids.npz") is None
    assert cache_up_axis(tmp_path / "absent.h5") is None


def test_a_caches_up_axis_is_read_in_one_open(cache: Path, tmp_path: Path,
                                             monkeypatch) -> None:
    """cache_up_axis opened the file twice, once for its layout and once for the attribute;
    a file of another layout is still no cache of an up axis."""
    opened, File = [], h5py.File
    monkeypatch.setattr(h5py, "File", lambda path, *args, **kwargs: (
        opened.append(Path(path)) or File(path, *args, **kwargs)))
    assert cache_up_axis(cache) == 2
    assert opened == [cache]
    with File(tmp_path / "other.h5", "w") as h5:
        h5["voxels"] = np.zeros((1, 2, 2, 2), np.uint8)
    assert cache_up_axis(tmp_path / "other.h5") is None


def test_voxel_shapes(cache: Path) -> None:
    data = VoxelShapes(cache)
    assert len(data) == 8 and data.resolution == R
    shape, label = data[0]
    assert shape.shape == (1, R, R, R) and shape.dtype == torch.float32
    assert label == 2 and isinstance(label, int)
    assert set(shape.unique().tolist()) == {0.0, 1.0}
    assert data.classes == list(MODELNET10_CATEGORIES)
    assert data.sources[0].endswith("chair_train_0002.off")
    assert torch.equal(data[-1][0], data[7][0])
    with pytest.raises(IndexError):
        data[8]

    train = VoxelShapes(cache, split="train")
    assert len(train) == 4 and list(train.targets) == [2, 2, 8, 8]
    tables = VoxelShapes(cache, categories=["table"], split="test", pad_to=16)
    assert len(tables) == 2 and list(tables.targets) == [8, 8]
    both = VoxelShapes(cache, categories=["table", "chair"])  # every category asked is kept
    assert list(both.targets) == [2, 2, 2, 2, 8, 8, 8, 8]
    padded, _ = tables[1]
    assert padded.shape == (1, 16, 16, 16) and padded.sum() == (R - 2) ** 3
    assert "split='test'" in repr(tables) and "n=2" in repr(tables)

    batch = tables.stack()
    assert batch.shape == (2, 1, 16, 16, 16)
    assert torch.equal(batch[1], padded)

    voxels, labels = next(iter(DataLoader(train, batch_size=4)))
    assert voxels.shape == (4, 1, R, R, R) and labels.tolist() == [2, 2, 8, 8]
    clone = pickle.loads(pickle.dumps(train))  # no h5py handle travels
    assert torch.equal(clone[3][0], train[3][0])
    train.close()


def test_a_cache_rebuilt_after_its_labels_were_read_is_refused(cache: Path, tree: Path) -> None:
    # Another process's prepare.py renames its cache into place between the dataset's index
    # and its first read (a build replaces a cache there by default): the shapes would be the
    # new cache's, the labels the old one's.
    train = VoxelShapes(cache, split="train")
    build_modelnet_cache(tree, cache, resolution=R, categories=["table"])
    with pytest.raises(ValueError, match="cache.h5 was replaced"):
        train.stack()
    assert list(VoxelShapes(cache, split="train").targets) == [0, 0]  # read again: the new one


def test_voxel_shapes_errors(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be"):
        VoxelShapes(cache, split="val")
    with pytest.raises(ValueError, match=r"unknown categories \['lamp'\]"):
        VoxelShapes(cache, categories=["lamp"])
    with pytest.raises(ValueError, match="list of names"):
        VoxelShapes(cache, categories="chair")
    with pytest.raises(ValueError, match="pad_to"):
        VoxelShapes(cache, pad_to=8)
    with pytest.raises(FileNotFoundError):
        VoxelShapes(tmp_path / "none.h5")
    with pytest.raises(ValueError, match="is a folder; labelled shapes are an .npz"):
        VoxelShapes(tmp_path)  # it exists: not "not found"
    other = save_voxels(np.zeros((2, 4, 4, 4)), tmp_path / "plain.h5")
    with pytest.raises(ValueError, match="not a stgconv voxel cache"):
        VoxelShapes(other)
    with pytest.raises(ValueError, match="load_voxel_shapes"):
        VoxelShapes(save_voxels(np.zeros((4, 4, 4)), tmp_path / "g.npy"))
    with pytest.raises(ValueError, match=r"data.split: all \(split=None in Python\)"):
        VoxelShapes(save_voxels(np.zeros((2, 4, 4, 4)), tmp_path / "g.npz"), split="train")


def test_a_cache_of_another_format_version_is_refused(cache: Path, tmp_path: Path) -> None:
    import h5py

    newer = tmp_path / "newer.h5"
    newer.write_bytes(cache.read_bytes())
    with h5py.File(newer, "r+") as h5:
        h5.attrs["format_version"] = 2
    with pytest.raises(ValueError, match="format version 2, this stgconv reads version 1"):
        VoxelShapes(newer)


def test_a_cache_whose_datasets_disagree_is_refused(cache: Path, tmp_path: Path) -> None:
    """Grids that are no cubes, or a label short, are no cache of ours; labels stored in
    another integer type read as int64."""
    for name, array in (("voxels", np.zeros((8, R, R, R + 1), np.uint8)),
                        ("label", np.zeros(7, np.int64)), ("label", np.zeros(8, np.int32))):
        edited = tmp_path / f"{name}_{array.shape}_{array.dtype}.h5"
        edited.write_bytes(cache.read_bytes())
        with h5py.File(edited, "r+") as h5:
            del h5[name]
            h5[name] = array
        if array.dtype == np.int32:
            assert VoxelShapes(edited).targets.dtype == np.int64
            continue
        with pytest.raises(ValueError, match="not a stgconv voxel cache"):
            VoxelShapes(edited)


def test_a_cache_whose_data_lie_in_another_file_is_refused(cache: Path, tmp_path: Path) -> None:
    """A cache handed over may keep its rows' bytes in any file here (HDF5 external storage):
    they were read as the shapes."""
    import h5py

    other = tmp_path / "other.bin"
    relinked = tmp_path / "relinked.h5"
    relinked.write_bytes(cache.read_bytes())
    with h5py.File(relinked, "r+") as h5:
        shape, dtype = h5["voxels"].shape, h5["voxels"].dtype
        other.write_bytes(bytes(int(np.prod(shape)) * dtype.itemsize))
        del h5["voxels"]
        h5.create_dataset("voxels", shape, dtype, external=[(str(other), 0, other.stat().st_size)])
    with pytest.raises(ValueError, match=r"relinked\.h5: dataset '/voxels' keeps its data in "
                                         r"another file \(external raw files \(.*other\.bin"):
        VoxelShapes(relinked)
    # Every dataset it reads, through an external link too: the labels, splits and sources
    # are read at once, the shapes later through the same file.
    target = tmp_path / "target.h5"
    target.write_bytes(cache.read_bytes())
    for name in ("voxels", "label", "split", "source"):
        linked = linked_copy(cache, name, target)
        with pytest.raises(ValueError, match=rf"linked_{name}\.h5: an external link in it leads "
                                             rf"to dataset '/{name}' of .*target\.h5"):
            VoxelShapes(linked)


def test_npz_sources(tmp_path: Path) -> None:
    grids = (np.random.default_rng(0).random((5, 6, 6, 6)) < 0.4).astype(np.uint8)
    np.savez_compressed(tmp_path / "labelled.npz", X=grids, y=np.array([2, 2, 1, 9, 2]))
    data = VoxelShapes(tmp_path / "labelled.npz", categories=["chair"], pad_to=8)
    assert len(data) == 3 and list(data.indices) == [0, 1, 4]
    shape, label = data[2]
    assert shape.shape == (1, 8, 8, 8) and label == 2
    assert torch.equal(shape[0, 1:7, 1:7, 1:7], torch.from_numpy(grids[4]).float())
    inverted = VoxelShapes(tmp_path / "labelled.npz", pad_to=8, transform=lambda s: 1 - s)
    assert inverted[0][0][0, 0, 0, 0] == 1  # transformed once padded
    with pytest.raises(ValueError, match="no split information"):
        VoxelShapes(tmp_path / "labelled.npz", split="train")

    np.savez(tmp_path / "bare.npz", X=grids)
    bare = VoxelShapes(tmp_path / "bare.npz")
    assert bare[0][1] == -1 and bare.classes is None and list(bare.targets) == [-1] * 5
    with pytest.raises(ValueError, match="does not name its categories"):
        VoxelShapes(tmp_path / "bare.npz", categories=["chair"])

    np.savez(tmp_path / "column.npz", X=grids, y=np.array([[2], [2], [1], [9], [2]], np.uint8))
    column = VoxelShapes(tmp_path / "column.npz").targets  # Keras (N, 1), int64 as documented
    assert column.dtype == np.int64 and list(column) == [2, 2, 1, 9, 2]
    np.savez(tmp_path / "table.npz", X=grids, y=np.zeros((5, 2), np.int64))
    with pytest.raises(ValueError, match=r"y must hold N=5 labels .*got \(5, 2\)"):
        VoxelShapes(tmp_path / "table.npz")
    np.savez(tmp_path / "halves.npz", X=grids, y=np.array([0, 1, 0.5, 1, 0]))
    with pytest.raises(ValueError, match=r"halves.npz: y must be whole class numbers"):
        VoxelShapes(tmp_path / "halves.npz")
    # Classes stored as doubles (MATLAB, pandas) are the classes they name.
    np.savez(tmp_path / "doubles.npz", X=grids, y=np.array([2.0, 2.0, 1.0, 9.0, 2.0]))
    doubles = VoxelShapes(tmp_path / "doubles.npz").targets
    assert doubles.dtype == np.int64 and list(doubles) == [2, 2, 1, 9, 2]
    # Names that would merge two classes, or leave a label unnamed (every test shape was
    # relabelled, or an IndexError later).
    np.savez(tmp_path / "twice.npz", X=grids, y=np.array([0, 1, 0, 1, 0]),
             categories=np.array(["box", "box"]))
    with pytest.raises(ValueError, match=r"categories must be distinct names"):
        VoxelShapes(tmp_path / "twice.npz")
    np.savez(tmp_path / "short.npz", X=grids, y=np.array([0, 1, 2, 1, 0]),
             categories=np.array(["box", "ball"]))
    with pytest.raises(ValueError, match=r"y holds label 2 but categories names 2 classes"):
        VoxelShapes(tmp_path / "short.npz")

    np.savez(tmp_path / "named.npz", X=grids, y=np.arange(5) % 2,
             categories=np.array(["cup", "mug"]))
    assert len(VoxelShapes(tmp_path / "named.npz", categories=["mug"])) == 2

    np.savez(tmp_path / "soft.npz", X=np.full((2, 4, 4, 4), 0.25, np.float32))
    assert VoxelShapes(tmp_path / "soft.npz")[1][0].max().item() == 0.25
    np.savez(tmp_path / "objects.npz", X=grids, y=np.array([2, "chair", 1, 9, 2], dtype=object))
    with pytest.raises(ValueError, match=r"cannot read array 'y' of .*objects.npz: Object"):
        VoxelShapes(tmp_path / "objects.npz")
    # Names as pandas' .unique() gives them: how to save them so that they load is said.
    np.savez(tmp_path / "pandas.npz", X=grids, y=np.arange(5) % 2,
             categories=np.array(["cup", "mug"], dtype=object))
    with pytest.raises(ValueError, match=re.escape(
            "allow_pickle=False; it holds Python objects, never unpickled here: save numbers as "
            "a numeric array and names as text (`np.asarray(names, dtype=str)`)")):
        VoxelShapes(tmp_path / "pandas.npz")
    # One grid (R, R, R) is a batch of one, as the evaluations read the same file.
    np.savez(tmp_path / "one.npz", X=grids[2])
    one = VoxelShapes(tmp_path / "one.npz")
    assert len(one) == 1 and torch.equal(one[0][0], torch.from_numpy(grids[2]).float()[None])
    np.savez(tmp_path / "flat.npz", X=np.zeros((2, 4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="cubic"):
        VoxelShapes(tmp_path / "flat.npz")
    np.savez(tmp_path / "counts.npz", X=np.full((2, 4, 4, 4), 2, np.uint8))
    with pytest.raises(ValueError, match="binary"):
        VoxelShapes(tmp_path / "counts.npz")
    np.savez(tmp_path / "nox.npz", Y=grids, labels=np.zeros(len(grids), np.int64))
    with pytest.raises(ValueError, match="no array 'X'"):
        VoxelShapes(tmp_path / "nox.npz")


def test_npz_category_names_as_a_column(tmp_path: Path) -> None:
    # A (K, 1) column of names (a MATLAB cell array, a DataFrame's values) names K classes, as
    # (N, 1) labels are N labels; each row once read as the name "['cup']".
    grids = np.zeros((4, 3, 3, 3), np.uint8)
    np.savez(tmp_path / "column.npz", X=grids, y=np.array([0, 1, 1, 0]),
             categories=np.array([["cup"], ["mug"]]))
    column = VoxelShapes(tmp_path / "column.npz", categories=["mug"])
    assert column.classes == ["cup", "mug"] and list(column.indices) == [1, 2]
    np.savez(tmp_path / "table.npz", X=grids, y=np.array([0, 1, 1, 0]),
             categories=np.array([["cup", "tall"], ["mug", "short"]]))
    with pytest.raises(ValueError, match=r"table.npz: categories must be names \(K,\) or "
                                         r"\(K, 1\), got \(2, 2\)"):
        VoxelShapes(tmp_path / "table.npz")


def test_load_voxel_shapes_from_every_source(cache: Path, tree: Path, tmp_path: Path) -> None:
    batch = load_voxel_shapes(cache, split="test", categories=["chair"])
    assert batch.shape == (2, 1, R, R, R) and batch.dtype == torch.float32
    assert load_voxel_shapes(cache, max_shapes=3, pad_to=14).shape == (3, 1, 14, 14, 14)
    assert load_voxel_shapes(cache, max_shapes=3, pad_to=R).shape == (3, 1, R, R, R)
    # Shapes larger than the side asked: the file and the setting named (`stgconv train` on a
    # user's 48^3 grids with data.size 32 said only "cannot pad grids of side 48 to ... 32").
    with pytest.raises(ValueError, match=re.escape(f"the shapes in {cache} are {R}^3, larger "
                                                   f"than the side {R - 1} they are padded to "
                                                   "(pad_to, a model's data.size)")):
        load_voxel_shapes(cache, max_shapes=3, pad_to=R - 1)
    # Shapes much smaller than the side asked (a voxel config without data.size padded every
    # grid to the default 64^3 without a word), named with the setting; a few voxels' padding
    # (30 -> 32 for ModelNet10) is as the shapes are meant to be trained.
    with pytest.warns(UserWarning, match=re.escape(
            f"the shapes in {cache} are {R}^3, padded with empty voxels to {2 * R}^3 (pad_to, "
            f"a model's data.size): 8 times the voxels; set data.size: {R} to train")):
        assert load_voxel_shapes(cache, max_shapes=1, pad_to=2 * R).shape == (1, 1, *[2 * R] * 3)
    # Nor a side the model refuses (it advised R, which a net of a larger receptive field then
    # refused).
    with pytest.warns(UserWarning, match=re.escape(
            f"set data.size: {R + 1}, the smallest the net takes, to train nearest the data's "
            "own side")):
        load_voxel_shapes(cache, max_shapes=1, pad_to=2 * R, smallest_side=R + 1)
    with pytest.warns(UserWarning, match=re.escape(
            f"data.size {2 * R} is the smallest the net takes: give model.layers with smaller "
            "filters or strides to train nearer the data's own side")):
        load_voxel_shapes(cache, max_shapes=1, pad_to=2 * R, smallest_side=2 * R)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_voxel_shapes(cache, max_shapes=1, pad_to=2 * R - 1)

    # A folder of voxel files, several formats, natural name order, category prefixes.
    folder = tmp_path / "voxels"
    cube = np.zeros((6, 6, 6), np.uint8)
    cube[1:5, 1:5, 1:5] = 1
    save_voxels(cube, folder / "chair_10.binvox")
    save_voxels(cube[None] * 0, folder / "chair_2.mat")
    save_voxels(np.stack([cube, cube]), folder / "desk_1.npy")
    (folder / "notes.txt").write_text("ignored")
    everything = load_voxel_shapes(folder)
    assert everything.shape == (4, 1, 6, 6, 6)
    assert everything[0].sum() == 0 and everything[1].sum() == 64  # chair_2 before chair_10
    chairs = load_voxel_shapes(folder, categories=["chair"], pad_to=8)
    assert chairs.shape == (2, 1, 8, 8, 8)
    assert load_voxel_shapes(folder, max_shapes=1).shape == (1, 1, 6, 6, 6)
    assert load_voxel_shapes(folder / "desk_1.npy").shape == (2, 1, 6, 6, 6)

    # A folder of meshes, voxelized on the fly.
    meshes = load_voxel_shapes(tree / "chair" / "train", resolution=10)
    assert meshes.shape == (2, 1, 10, 10, 10) and meshes[1].sum() == 8**3
    # At the side they are padded to (a model's data.size), not at 32 and then padded.
    padded = load_voxel_shapes(tree / "chair" / "train", pad_to=10)
    assert torch.equal(padded, meshes)

    with pytest.raises(ValueError, match="resolution=8"):
        load_voxel_shapes(folder, resolution=8)
    with pytest.raises(ValueError, match="resolution=8"):
        load_voxel_shapes(cache, resolution=8)
    with pytest.raises(ValueError, match="no shapes"):
        load_voxel_shapes(folder, categories=["sofa"])
    with pytest.raises(ValueError, match="split"):
        load_voxel_shapes(folder, split="train")
    with pytest.raises(ValueError, match="prepare.py"):
        load_voxel_shapes(tree)  # a ModelNet tree: build a cache first
    points = tmp_path / "points"
    points.mkdir()
    (points / "dot.off").write_text("OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n")
    with pytest.raises(ValueError, match=r"dot\.off: the mesh has zero extent"):
        load_voxel_shapes(points)
    (folder / "table_1.off").write_text(CUBE)
    with pytest.raises(ValueError, match="mixes"):
        load_voxel_shapes(folder)
    save_voxels(np.zeros((4, 4, 4)), tmp_path / "other" / "a.npy")
    save_voxels(np.zeros((5, 5, 5)), tmp_path / "other" / "b.npy")
    with pytest.raises(ValueError, match="share one size"):
        load_voxel_shapes(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        load_voxel_shapes(tmp_path / "missing")


def test_broken_mesh_in_tree(tree: Path, tmp_path: Path) -> None:
    broken = tree / "table" / "test" / "table_test_0005.off"
    broken.write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match="table_test_0005.off"):
        build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8)
    assert not (tmp_path / "c.h5").exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.warns(UserWarning) as warned:
        out = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, skip_unreadable=True)
    with h5py.File(out, "r") as h5:
        assert h5["voxels"].shape[0] == 8
        # One "path: reason" per mesh, as the clip cache lists its skipped sources.
        assert h5.attrs["skipped"][0].startswith(f"{broken}: ")
        # The warning says the same: it read "skipping mesh FILE has no faces (3 vertices)".
        assert [str(w.message) for w in warned] == [f"skipping {h5.attrs['skipped'][0]}"]
    with pytest.raises(ValueError, match=r"\.h5 or \.hdf5"):
        build_modelnet_cache(tree, tmp_path / "c.npz")
    with pytest.raises(ValueError, match="margin"):
        build_modelnet_cache(tree, tmp_path / "d.h5", resolution=4, margin=2)


@pytest.mark.filterwarnings("ignore:skipping")
def test_a_tree_whose_every_mesh_is_skipped_writes_no_cache(tree: Path, tmp_path: Path) -> None:
    for mesh in tree.glob("*/*/*.off"):
        mesh.write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")  # no faces
    with pytest.raises(ValueError, match="no shapes to write: all 8 meshes were skipped"):
        build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, skip_unreadable=True)
    assert not (tmp_path / "c.h5").exists() and not list(tmp_path.glob("*.tmp"))


def test_skip_unreadable_skips_a_link_to_a_missing_mesh(tree: Path, tmp_path: Path) -> None:
    link = tree / "table" / "test" / "table_test_0009.off"
    link.symlink_to(tmp_path / "unmounted" / "table_test_0009.off")
    with pytest.raises(ValueError, match="table_test_0009.off: a link to"):
        build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8)
    with pytest.warns(UserWarning, match="skipping .*table_test_0009.off"):
        out = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, skip_unreadable=True)
    with h5py.File(out, "r") as h5:
        assert h5["voxels"].shape[0] == 8
        assert list(h5.attrs["skipped"]) == [f"{link}: mesh not found: {link}"]


def test_skip_unreadable_skips_a_mesh_that_fails_to_read(tree: Path, tmp_path: Path,
                                                          unreadable_npy: Path) -> None:
    """A mesh whose read fails (a disk's I/O error, permission denied) is skipped as a damaged
    one is; the build stopped on it, blaming the cache it was writing ('[Errno 5] Input/output
    error: c.h5', a write error), with skip_unreadable or without."""
    mesh = tree / "table" / "test" / "table_test_0009.off"
    mesh.symlink_to(unreadable_npy)
    with pytest.raises(ValueError, match="cannot read mesh .*table_test_0009.off: Input/output"):
        build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8)
    with pytest.warns(UserWarning, match="skipping .*table_test_0009.off: cannot read mesh"):
        out = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, skip_unreadable=True)
    with h5py.File(out, "r") as h5:
        assert h5["voxels"].shape[0] == 8
        assert list(h5.attrs["skipped"]) == [f"{mesh}: cannot read mesh {mesh}: Input/output "
                                             "error"]


def test_names_that_are_not_utf8(tree: Path, tmp_path: Path) -> None:
    """A zip made on Windows unpacks with its Latin-1 (or CP437) name bytes: such a mesh is read
    and recorded with the bytes escaped; writing its name failed after the whole build, naming
    no file."""
    folder = tree / "chair" / "train"
    try:
        (folder / os.fsdecode(b"chair_caf\xe9.off")).write_text(CUBE)
        (folder / os.fsdecode(b"chair_bris\xe9.off")).write_text("OFF\n3 0 0\n")
    except (OSError, UnicodeError):  # a file system that takes UTF-8 names only
        pytest.skip("this file system refuses names that are not UTF-8")
    with pytest.warns(UserWarning, match="skipping"):
        out = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, categories=["chair"],
                                   splits=["train"], skip_unreadable=True)
    dataset = VoxelShapes(out)
    assert dataset.sources == ["chair/train/chair_caf\\xe9.off", "chair/train/chair_train_0002.off",
                               "chair/train/chair_train_0010.off"]
    with h5py.File(out, "r") as h5:
        assert h5.attrs["skipped"][0].startswith(f"{folder}/chair_bris\\xe9.off: ")


def test_a_category_folder_named_not_in_utf8(tree: Path, tmp_path: Path) -> None:
    """A category folder of such a name failed the same way, after the whole build."""
    try:
        (tree / "chair").rename(tree / os.fsdecode(b"chaise_caf\xe9"))
    except (OSError, UnicodeError):  # a file system that takes UTF-8 names only
        pytest.skip("this file system refuses names that are not UTF-8")
    out = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=8, splits=["train"])
    assert VoxelShapes(out).classes[0] == "chaise_caf\\xe9"


def test_a_cache_built_on_a_full_disk_is_a_write_error_naming_it(tree: Path,
                                                                  small_disk: Path) -> None:
    """Was HDF5's RuntimeError ("Can't decrement id ref count"), or a segfault at its close."""
    fill(small_disk / "filler", leaving=4096)
    out = small_disk / "cache.h5"
    with pytest.raises(WriteError, match=rf"^\[Errno 28\] No space left on device: '{out}'$"):
        build_modelnet_cache(tree, out, resolution=24)
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_prepare_script(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                        load_script) -> None:
    prepare = load_script("datasets/voxel/prepare.py")
    out = tmp_path / "mn.h5"
    assert prepare.main([str(tree), str(out), "--resolution", "8", "--quiet",
                         "--categories", "chair", "--splits", "train"]) == 0
    printed = capsys.readouterr().out
    assert "shapes:  2 (train 2, test 0)" in printed and "0 chair 2" in printed
    assert len(VoxelShapes(out)) == 2
    assert prepare.main([str(tree), str(out), "--quiet"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert prepare.main([str(tree), str(out), "--quiet", "--overwrite"]) == 0
    assert prepare.main([str(tree), str(tmp_path / "x.npz"), "--quiet"]) == 2
    # Named as argparse names the script in its own refusals.
    assert capsys.readouterr().err == (f"python datasets/voxel/prepare.py: error: OUT must end "
                                       f"in .h5 or .hdf5, got {tmp_path / 'x.npz'}\n")
    assert prepare.main([str(tmp_path / "none"), str(tmp_path / "y.h5"), "--quiet"]) == 2
    assert prepare.main([str(tree), str(tmp_path / "z.h5"), "--categories", "lamp"]) == 2
    assert "lamp" in capsys.readouterr().err


def test_prepare_script_without_stderr_builds_without_a_progress_bar(
        tree: Path, tmp_path: Path, load_script, monkeypatch) -> None:
    """Under `2>&-` sys.stderr is None: the progress bar failed writing to it (AttributeError),
    and the build stopped without a word."""
    prepare = load_script("datasets/voxel/prepare.py")
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "mn.h5"
    assert prepare.main([str(tree), str(out), "--resolution", "8", "--categories", "chair",
                         "--splits", "train"]) == 0
    assert len(VoxelShapes(out)) == 2


def test_prepare_script_passes_its_options_to_the_cache(tree: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture,
                                                        load_script) -> None:
    """The script's cache is the library's with the options given (--resolution, --margin,
    --up-axis); with --skip-unreadable a mesh that cannot be read is left out, and counted."""
    prepare = load_script("datasets/voxel/prepare.py")
    (tree / "chair" / "train" / "chair_train_0003.off").write_text("not a mesh")
    # The box's grid changes with the up axis (the cube's and tetrahedron's alike).
    (tree / "table" / "train" / "table_train_0004.off").write_text(BOX)
    out = tmp_path / "mn.h5"
    assert prepare.main([str(tree), str(out), "--resolution", "10", "--margin", "2",
                         "--up-axis", "0", "--skip-unreadable", "--quiet"]) == 0
    assert ", 1 skipped" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="chair_train_0003.off is not an OFF file"):
        expected = build_modelnet_cache(tree, tmp_path / "expected.h5", resolution=10,
                                        margin=2, up_axis=0, skip_unreadable=True)
    with h5py.File(out, "r") as made, h5py.File(expected, "r") as library:
        assert np.array_equal(made["voxels"][()], library["voxels"][()])
    (tree / "chair" / "train" / "chair_train_0003.off").unlink()
    default = build_modelnet_cache(tree, tmp_path / "default.h5", resolution=10)
    with h5py.File(out, "r") as made, h5py.File(default, "r") as library:
        assert not np.array_equal(made["voxels"][()], library["voxels"][()])


def test_prepare_script_defaults_and_its_exact_summary(tree: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture,
                                                      load_script, monkeypatch) -> None:
    """Without options the grid is 32 voxels a side, a margin of 1, z up; the summary leaves
    out a category without shapes and times a skipped mesh too (it was read)."""
    prepare = load_script("datasets/voxel/prepare.py")
    chairs = tree / "chair" / "train"
    (chairs / "chair_train_0004.off").write_text(BOX)  # its grid shows the up axis
    (chairs / "chair_train_0003.off").write_text("not a mesh")
    for mesh in (tree / "table" / "train").iterdir():
        mesh.unlink()
    build = prepare.run_build
    # A fixed build time, so the time per mesh is known: 1.2 s over 3 shapes and 1 skipped.
    monkeypatch.setattr(prepare, "run_build", lambda *args, **kw: (build(*args, **kw)[0], 1.2))
    out = tmp_path / "mn.h5"
    assert prepare.main([str(tree), str(out), "--categories", "chair", "table",
                         "--splits", "train", "--skip-unreadable", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["  shapes:  3 (train 3, test 0), 1 skipped",
                         "  labels:  0 chair 3",
                         "  shape:   (3, 32, 32, 32) uint8 (N, R, R, R), z up",
                         f"  on disk: {out.stat().st_size / 2**20:.1f} MiB",
                         "  time:    1.2 s (300 ms per mesh)"]
    with pytest.warns(UserWarning, match="chair_train_0003.off is not an OFF file"):
        expected = build_modelnet_cache(tree, tmp_path / "expected.h5", resolution=32, margin=1,
                                        up_axis=2, categories=["chair", "table"],
                                        splits=("train",), skip_unreadable=True)
    with h5py.File(out, "r") as made, h5py.File(expected, "r") as library:
        assert np.array_equal(made["voxels"][()], library["voxels"][()])


def test_prepare_keeps_a_cache_another_process_wrote_during_its_build(
        tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture, load_script,
        monkeypatch) -> None:
    """As the video script's: without --overwrite, a cache put in place meanwhile is kept."""
    prepare = load_script("datasets/voxel/prepare.py")
    out = tmp_path / "mn.h5"
    cache_written_meanwhile(monkeypatch, "stgconv.data.voxel", out)
    assert prepare.main([str(tree), str(out), "--resolution", "8", "--quiet"]) == 2
    assert "written meanwhile" in capsys.readouterr().err
    assert out.read_bytes() == ANOTHER_CACHE


def test_a_cache_already_there_is_refused_before_any_mesh_is_voxelized(
        tree: Path, tmp_path: Path, monkeypatch) -> None:
    refused_before_building(monkeypatch, "stgconv.data.voxel",
                            lambda out: build_modelnet_cache(tree, out, resolution=R,
                                                             overwrite=False),
                            tmp_path / "mn.h5")


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.shared_data("voxel/modelnet10_30_train.npz")
def test_real_modelnet10_npz(shared_data: Path) -> None:
    path = shared_data / "voxel" / "modelnet10_30_train.npz"
    data = VoxelShapes(path, pad_to=32)
    assert len(data) == 3991 and data.resolution == 32
    assert np.bincount(data.targets).tolist() == [106, 515, 889, 200, 200, 465, 200, 680, 392,
                                                  344]
    shape, label = data[0]
    assert shape.shape == (1, 32, 32, 32) and label == 0
    assert shape[0, 0].sum() == 0 and shape[0, :, :, -1].sum() == 0  # the padding
    chairs = load_voxel_shapes(path, categories=["chair"], max_shapes=16, pad_to=32)
    assert chairs.shape == (16, 1, 32, 32, 32)
    assert set(chairs.unique().tolist()) == {0.0, 1.0}


@pytest.mark.shared_data("voxel/chairs_30_mat", "voxel/beds_64_train.npz")
def test_real_chairs_folder_and_beds(shared_data: Path) -> None:
    voxel_data = shared_data / "voxel"
    chairs = load_voxel_shapes(voxel_data / "chairs_30_mat", max_shapes=2, pad_to=32)
    assert chairs.shape == (2, 1, 32, 32, 32) and 0 < chairs.mean() < 0.5
    beds = load_voxel_shapes(voxel_data / "beds_64_train.npz", max_shapes=4, resolution=64)
    assert beds.shape == (4, 1, 64, 64, 64)


def _labelled_npz(path: Path, labels: list[int]) -> Path:
    """Shapes of one voxel each (4^3) with the given labels, as an .npz of X and y."""
    grids = np.zeros((len(labels), 4, 4, 4), dtype=np.uint8)
    for i in range(len(labels)):
        grids[i, i % 4, 0, 0] = 1
    np.savez(path, X=grids, y=np.array(labels))
    return path


def test_negative_indices_reach_the_first_shape(tmp_path) -> None:
    shapes = VoxelShapes(_labelled_npz(tmp_path / "s.npz", [3, 1, 2]))
    first, label = shapes[-3]
    assert label == 3 and torch.equal(first, shapes[0][0])
    with pytest.raises(TypeError):
        shapes[0.5]


def test_an_npz_suffix_in_capitals_is_still_labelled_shapes(tmp_path) -> None:
    upper = _labelled_npz(tmp_path / "s.npz", [3, 1, 2]).rename(tmp_path / "s.NPZ")
    assert load_voxel_shapes(upper, categories=["desk"]).shape == (1, 1, 4, 4, 4)


def test_an_h5_of_labelled_grids_naming_no_categories_reads_as_plain_grids(tmp_path) -> None:
    """Only a file naming its categories is a cache; another tool's grids and labels are
    read as grids."""
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["voxels"] = np.ones((2, 4, 4, 4), np.uint8)
        h5["label"] = np.array([0, 1])
    assert load_voxel_shapes(tmp_path / "plain.h5").shape == (2, 1, 4, 4, 4)


def test_labels_past_modelnet10_are_not_given_its_names(tmp_path) -> None:
    assert VoxelShapes(_labelled_npz(tmp_path / "a.npz", [0, 9])).classes[9] == "toilet"
    shapes = VoxelShapes(_labelled_npz(tmp_path / "b.npz", [0, 10]))
    assert shapes.classes is None and not shapes.classes_stored


def test_a_label_of_minus_one_in_the_file_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"m.npz: y has negative labels \(-1\)"):
        VoxelShapes(_labelled_npz(tmp_path / "m.npz", [0, -1]))


def test_voxel_shapes_split_keeps_that_splits_shapes_only(tmp_path) -> None:
    root = tmp_path / "tree"
    for split, mesh in (("train", CUBE), ("test", TETRA)):
        (root / "chair" / split).mkdir(parents=True)
        (root / "chair" / split / f"chair_{split}_0001.off").write_text(mesh)
    cache = build_modelnet_cache(root, tmp_path / "c.h5", resolution=8)
    everything = VoxelShapes(cache)
    for split in ("train", "test"):
        part = VoxelShapes(cache, split=split)
        assert len(part) == 1 and part.sources == [f"chair/{split}/chair_{split}_0001.off"]
        row = everything.sources.index(part.sources[0])
        assert torch.equal(part[0][0], everything[row][0])


CUBE_6 = np.pad(np.ones((4, 4, 4), np.uint8), 1)  # a 6^3 grid holding a 4^3 cube


def test_max_shapes_cuts_a_folder_file_holding_a_batch(tmp_path) -> None:
    folder = tmp_path / "voxels"
    save_voxels(np.stack([CUBE_6] * 3), folder / "a_1.npy")
    save_voxels(CUBE_6, folder / "b_2.npy")
    assert load_voxel_shapes(folder, max_shapes=2).shape == (2, 1, 6, 6, 6)
    assert load_voxel_shapes(folder, max_shapes=4).shape == (4, 1, 6, 6, 6)


def test_max_shapes_reads_only_the_folder_files_it_needs(tmp_path) -> None:
    folder = tmp_path / "voxels"
    save_voxels(CUBE_6, folder / "a_1.npy")
    (folder / "b_2.npy").write_bytes(b"not a numpy file")
    assert load_voxel_shapes(folder, max_shapes=1).shape == (1, 1, 6, 6, 6)


def test_folder_categories_match_the_whole_name_before_the_underscore(tmp_path) -> None:
    folder = tmp_path / "voxels"
    save_voxels(CUBE_6, folder / "chair_1.npy")
    save_voxels(np.stack([CUBE_6] * 2), folder / "chairlift_1.npy")
    assert load_voxel_shapes(folder, categories=["chair"]).shape == (1, 1, 6, 6, 6)


def test_a_margin_of_half_the_resolution_is_refused(tmp_path) -> None:
    # Refused before the tree is read (tmp_path is none): not once per mesh, minutes later.
    with pytest.raises(ValueError, match="leaves no voxels"):
        build_modelnet_cache(tmp_path, tmp_path / "c.h5", resolution=4, margin=2)
    with pytest.raises(ValueError, match="up_axis must be 0, 1 or 2, got 3"):
        build_modelnet_cache(tmp_path, tmp_path / "c.h5", up_axis=3)


def test_a_filtered_cache_stacks_the_shapes_it_keeps(tmp_path) -> None:
    # The test split's one shape is the tetrahedron, the cache's second row.
    for split, mesh in (("train", CUBE), ("test", TETRA)):
        (tmp_path / "tree" / "chair" / split).mkdir(parents=True)
        (tmp_path / "tree" / "chair" / split / "chair_1.off").write_text(mesh)
    cache = build_modelnet_cache(tmp_path / "tree", tmp_path / "c.h5", resolution=8)
    test = VoxelShapes(cache, split="test")
    assert list(test.indices) == [1]
    assert torch.equal(test.stack()[0], test[0][0]) and test[0][0].sum() < 6**3
    assert torch.equal(test.stack(max_shapes=1), test.stack())  # the first kept, not row 0


def test_a_mesh_folder_is_voxelized_at_the_resolution_then_padded(tree: Path) -> None:
    folder = tree / "chair" / "train"
    assert torch.equal(load_voxel_shapes(folder, resolution=8, pad_to=10),
                       pad_to(load_voxel_shapes(folder, resolution=8), 10))


def test_a_plain_h5_whose_array_is_named_voxels_is_a_voxel_file(tmp_path) -> None:
    # Not taken for a shape cache (which also has labels and categories).
    path = save_voxels(CUBE_6, tmp_path / "grid.h5", key="voxels")
    assert load_voxel_shapes(path).shape == (1, 1, 6, 6, 6)


def test_a_plain_voxel_file_refuses_categories_and_split(tmp_path) -> None:
    path = save_voxels(CUBE_6, tmp_path / "grid.npy")
    for options in ({"categories": ["chair"]}, {"split": "train"}):
        with pytest.raises(ValueError, match="need labelled shapes"):
            load_voxel_shapes(path, **options)


def test_a_selection_no_shape_meets_names_itself_and_how_to_leave_it_out(tree: Path,
                                                                         tmp_path: Path) -> None:
    """A shipped chairs config keeps its data.categories: [chair] under --data: a plain file, an
    .npz without labels and a folder whose names have no chair_ were refused in the library's
    words alone ("categories/split need labelled shapes"), never naming what was asked or how to
    leave it out; a split alone that kept nothing read "no shapes in c.h5 and split='test'"."""
    plain = save_voxels(CUBE_6, tmp_path / "grid.npy")
    np.savez(tmp_path / "bare.npz", X=CUBE_6[None])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "seat.off").write_text(CUBE)
    train_only = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=4, splits=["train"])
    leave_out = r"categories=None takes every shape \(in a config, data\.categories: null"
    cases = [
        (plain, {"categories": ["chair"]}, r"^categories=\['chair'\] need labelled shapes .*"
         r"grid\.npy is a plain voxel file, read whole: leave them out \(in a config, "
         r"data\.categories: null\)$"),
        (plain, {"split": "train"}, r"^split='train' need .*\(in a config, data\.split: all\)$"),
        (tmp_path / "bare.npz", {"categories": ["chair"]},
         r"^categories=\['chair'\] but .*bare\.npz does not name its categories .*; " + leave_out),
        (tmp_path / "mine", {"categories": ["chair"]},
         r"^no shapes in .*mine for categories=\['chair'\] \(a folder's files are kept by their "
         r"names: <category>_\.\.\.\); " + leave_out),
        (train_only, {"split": "test"}, r"^no shapes in .*c\.h5 for split='test'$"),
    ]
    for path, options, message in cases:
        with pytest.raises(ValueError, match=message):
            load_voxel_shapes(path, **options)


def test_categories_must_be_distinct_names(tree: Path) -> None:
    with pytest.raises(ValueError, match="list of distinct names"):
        find_modelnet_meshes(tree, categories=["chair", "chair"])
    with pytest.raises(ValueError, match="got the string 'chair'"):
        load_voxel_shapes(tree / "chair" / "train", categories="chair")


def test_max_shapes_cuts_a_plain_voxel_file_batch(tmp_path) -> None:
    path = save_voxels(np.stack([CUBE_6] * 3), tmp_path / "batch.npy")
    assert load_voxel_shapes(path, max_shapes=2).shape == (2, 1, 6, 6, 6)


def test_npz_category_names_stored_as_bytes_read_as_text(tmp_path) -> None:
    """Names as h5py reads fixed-length strings (numpy 'S' arrays) were taken as "b'chair'",
    so the file's own names matched no category and printed wrong."""
    path = tmp_path / "bytes.npz"
    np.savez(path, X=np.zeros((2, 4, 4, 4), np.uint8), y=np.array([0, 1]),
             categories=np.array([b"chair", b"table"]))
    shapes = VoxelShapes(path, categories=["table"])
    assert shapes.classes == ["chair", "table"] and list(shapes.targets) == [1]


def test_an_npz_of_one_unnamed_array_reads_as_its_grids(tmp_path) -> None:
    """np.savez(file, grids) names the array arr_0: load_voxels read it as the only array,
    while the datasets refused it for lacking X."""
    grids = np.stack([CUBE_6] * 3)
    np.savez(tmp_path / "unnamed.npz", grids)
    assert len(VoxelShapes(tmp_path / "unnamed.npz")) == 3
    assert load_voxel_shapes(tmp_path / "unnamed.npz").shape == (3, 1, 6, 6, 6)
    np.savez(tmp_path / "two.npz", grids, grids)
    with pytest.raises(ValueError, match=r"no array 'X' \(it holds \['arr_0', 'arr_1'\]\)"):
        VoxelShapes(tmp_path / "two.npz")


@pytest.mark.parametrize("max_shapes", [0, -1, 2.5, True])
def test_stack_names_a_max_shapes_that_is_not_a_positive_count(tmp_path, max_shapes) -> None:
    """-1 dropped the last shape, 0 kept none and True one, all silently; 2.5 failed in the
    slice; load_voxel_shapes refuses them all the same."""
    shapes = VoxelShapes(_labelled_npz(tmp_path / "shapes.npz", [0, 1, 2]))
    with pytest.raises(ValueError, match=rf"max_shapes must be an int >= 1, got {max_shapes!r}"):
        shapes.stack(max_shapes)
    assert len(shapes.stack(2)) == 2 and len(shapes.stack()) == 3


@pytest.mark.parametrize("splits", [[], ["val"], ["train", "val"]])
def test_find_modelnet_meshes_names_splits_that_are_no_split_names(tree: Path, splits) -> None:
    with pytest.raises(ValueError, match=r"splits must be a non-empty sequence of distinct "
                                         r"\('train', 'test'\)"):
        find_modelnet_meshes(tree, splits=splits)


def test_a_file_given_as_the_tree_is_not_found_as_a_folder(tmp_path: Path) -> None:
    (tmp_path / "ModelNet10.zip").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match=r"not found \(or not a folder\)"):
        find_modelnet_meshes(tmp_path / "ModelNet10.zip")


def test_a_tree_of_empty_split_folders_has_no_meshes(tmp_path: Path) -> None:
    (tmp_path / "tree" / "chair" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no meshes \(.*\) under .*tree/<category>/"
                                         r"\{train,test\}/"):
        find_modelnet_meshes(tmp_path / "tree")


@pytest.mark.parametrize("option, message", [
    ({"resolution": 1, "margin": 0}, "resolution must be an int >= 2, got 1"),
    ({"margin": -1}, "margin must be an int >= 0, got -1"),
])
def test_build_names_a_grid_side_or_margin_out_of_range(tree: Path, tmp_path: Path, option,
                                                        message: str) -> None:
    # Up front: not found by voxelizing each mesh, which skip_unreadable would skip.
    with pytest.raises(ValueError, match=f"^{message}$"):
        build_modelnet_cache(tree, tmp_path / "c.h5", skip_unreadable=True, **option)
    assert not (tmp_path / "c.h5").exists()


def test_the_cache_stores_its_labels_splits_and_margin_as_documented(tree: Path,
                                                                     tmp_path: Path) -> None:
    cache = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=4, margin=0,
                                 categories=["chair"], splits=["train"])
    with h5py.File(cache, "r") as h5:
        assert h5["label"].dtype == np.int64 and h5["split"].dtype == np.uint8
        assert h5.attrs["margin"] == 0 and h5.attrs["resolution"] == 4
        assert h5["voxels"][1].sum() == 4**3  # the cube, voxelized with no margin
    assert VoxelShapes(cache).classes_stored


def test_an_unreadable_h5_is_named_as_a_cache_and_as_a_voxel_file(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"not an HDF5 file")
    with pytest.raises(ValueError, match="cannot read voxel cache .*damaged.h5"):
        VoxelShapes(damaged)
    with pytest.raises(ValueError, match="cannot read HDF5 file .*damaged.h5"):
        load_voxel_shapes(damaged)
    # A damaged group structure is h5py's RuntimeError, not its OSError: it escaped as itself.
    with h5py.File(damaged, "w") as h5:
        h5["voxels"] = np.zeros((2, R, R, R), np.uint8)
    damaged.write_bytes(damaged.read_bytes().replace(b"TREE", b"XXXX"))
    with pytest.raises(ValueError, match="cannot read HDF5 file .*damaged.h5: .*B-tree"):
        load_voxel_shapes(damaged)


def test_a_cache_whose_voxels_are_a_group_is_no_cache(cache: Path, tmp_path: Path) -> None:
    edited = tmp_path / "group.h5"
    edited.write_bytes(cache.read_bytes())
    with h5py.File(edited, "r+") as h5:
        del h5["voxels"]
        h5.create_group("voxels")
    with pytest.raises(ValueError, match="not a stgconv voxel cache"):
        VoxelShapes(edited)


@pytest.mark.parametrize("voxels, problem", [
    (np.full((8, R, R, R), 255, np.uint8), "expected binary occupancy {0, 1}"),
    (np.full((8, R, R, R), np.nan, np.float32), "NaN"),
    (np.full((8, R, R, R), -1.0, np.float32), r"expected occupancy in \[0, 1\]"),
])
def test_a_cache_of_grids_out_of_range_is_refused_naming_it(cache: Path, tmp_path: Path,
                                                             voxels, problem) -> None:
    """A cache's rows are checked as an .npz's grids are: one another tool wrote in the cache
    layout, with 0/255 grids, trained on occupancies of 255."""
    edited = tmp_path / "edited.h5"
    edited.write_bytes(cache.read_bytes())
    with h5py.File(edited, "r+") as h5:
        del h5["voxels"]
        h5["voxels"] = voxels
    with pytest.raises(ValueError, match=re.escape(str(edited)) + ".*" + problem):
        load_voxel_shapes(edited)
    with pytest.raises(ValueError, match=re.escape(f"{edited}: shape 0") + ".*" + problem):
        VoxelShapes(edited)[0]


def test_a_caches_labels_and_names_are_checked_as_an_npzs(cache: Path, tmp_path: Path) -> None:
    """A cache written by another tool: one category stored as a bare string was read as its
    letters (['c', 'h', 'a', 'i', 'r']), and labels past its names, or -1 ("no label"), were
    kept; labels stored as whole floats are class numbers."""
    def edited(name: str, labels: np.ndarray, categories: object) -> Path:
        path = tmp_path / f"{name}.h5"
        path.write_bytes(cache.read_bytes())
        with h5py.File(path, "r+") as h5:
            del h5["label"]
            h5["label"] = labels
            h5.attrs["categories"] = categories
        return path

    bare = VoxelShapes(edited("bare", np.zeros(8, np.int64), "chair"), categories=["chair"])
    assert bare.classes == ["chair"] and len(bare) == 8
    assert VoxelShapes(edited("floats", np.ones(8), ["a", "b"])).targets.tolist() == [1] * 8
    with pytest.raises(ValueError, match=r"past\.h5: label holds label 1 but categories names 1 "
                                         r"classes \(\['chair'\]\)"):
        VoxelShapes(edited("past", np.arange(8) % 2, ["chair"]))
    with pytest.raises(ValueError, match=r"negative\.h5: label has negative labels \(-1\)"):
        VoxelShapes(edited("negative", np.arange(8) - 1, ["a", "b", "c", "d", "e", "f", "g"]))


def test_an_npz_naming_its_one_category_by_a_bare_string(tmp_path: Path) -> None:
    np.savez(tmp_path / "one.npz", X=np.stack([CUBE_6] * 2), y=np.zeros(2, np.int64),
             categories=np.array("chair"))
    shapes = VoxelShapes(tmp_path / "one.npz", categories=["chair"])
    assert shapes.classes == ["chair"] and len(shapes) == 2


@pytest.mark.parametrize("option, message", [
    ({"max_shapes": 0}, "max_shapes must be an int >= 1, got 0"),
    ({"resolution": 1}, "resolution must be an int >= 2, got 1"),
])
def test_load_voxel_shapes_names_a_count_or_side_out_of_range(tmp_path: Path, option,
                                                             message: str) -> None:
    folder = tmp_path / "voxels"
    save_voxels(CUBE_6, folder / "a_1.npy")
    with pytest.raises(ValueError, match=message):
        load_voxel_shapes(folder, **option)


def test_a_plain_voxel_file_of_fractional_occupancy_is_read(tmp_path: Path) -> None:
    path = save_voxels(np.full((4, 4, 4), 0.25, np.float32), tmp_path / "soft.npy")
    assert torch.equal(load_voxel_shapes(path), torch.full((1, 1, 4, 4, 4), 0.25))


def test_no_shapes_left_names_the_categories_and_split_asked(tree: Path, tmp_path: Path) -> None:
    cache = build_modelnet_cache(tree, tmp_path / "c.h5", resolution=4, splits=["train"])
    with pytest.raises(ValueError, match=r"no shapes in .*c\.h5 for categories=\['chair'\] and "
                                         r"split='test'; categories=None takes every shape"):
        load_voxel_shapes(cache, categories=["chair"], split="test")


def test_files_with_suffixes_in_capitals_are_read_from_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "voxels"
    save_voxels(CUBE_6, folder / "a_1.npy").rename(folder / "a_1.NPY")
    assert load_voxel_shapes(folder).shape == (1, 1, 6, 6, 6)
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "cube_1.OFF").write_text(CUBE)
    assert load_voxel_shapes(tmp_path / "meshes", mesh_side=4).shape == (1, 1, 4, 4, 4)


def test_max_shapes_counts_every_shape_of_a_folder_file(tmp_path: Path) -> None:
    folder = tmp_path / "voxels"
    save_voxels(np.stack([CUBE_6] * 2), folder / "a_1.npy")
    (folder / "b_2.npy").write_bytes(b"not a numpy file")
    assert load_voxel_shapes(folder, max_shapes=2).shape == (2, 1, 6, 6, 6)


def test_a_mesh_folder_is_voxelized_at_the_side_margin_and_up_axis_asked(tmp_path: Path) -> None:
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "box_1.off").write_text(BOX)
    assert load_voxel_shapes(folder, mesh_side=8).shape == (1, 1, 8, 8, 8)
    assert not torch.equal(load_voxel_shapes(folder, mesh_side=8, up_axis=0),
                           load_voxel_shapes(folder, mesh_side=8))
    assert (load_voxel_shapes(folder, mesh_side=8, margin=0).sum()
            > load_voxel_shapes(folder, mesh_side=8).sum())
    assert load_voxel_shapes(folder).shape == (1, 1, 32, 32, 32)  # the default side


@pytest.mark.parametrize("up_axis", [2, 1])
def test_a_mesh_file_is_refused_naming_the_folder_meshes_are_read_from(tmp_path: Path,
                                                                      up_axis: int) -> None:
    """data.path a mesh file with data.up_axis 1 was said to hold "voxel grids, read as
    stored: leave the up axis at 2", and left at 2 was refused for its suffix."""
    (tmp_path / "box_1.off").write_text(BOX)
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'box_1.off'} is a mesh; meshes are read from a folder, each voxelized "
            "at the grid side (a model's data.size): give the folder that holds it")):
        load_voxel_shapes(tmp_path / "box_1.off", mesh_side=8, up_axis=up_axis)


@pytest.mark.parametrize("options, message", [
    ({"mesh_side": 0}, "mesh_side must be an int >= 2, got 0"),
    ({"mesh_side": 1.5}, "mesh_side must be an int >= 2, got 1.5"),
    ({"mesh_side": 10, "resolution": 8}, "mesh_side=10 and resolution=8 disagree"),
])
def test_a_mesh_side_out_of_range_or_against_the_resolution_is_refused(
        tmp_path: Path, options: dict, message: str) -> None:
    folder = tmp_path / "meshes"
    folder.mkdir()
    (folder / "box_1.off").write_text(BOX)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_voxel_shapes(folder, **options)


def test_a_folder_of_grids_larger_than_the_resolution_is_refused(tmp_path: Path) -> None:
    save_voxels(CUBE_6, tmp_path / "voxels" / "a_1.npy")
    with pytest.raises(ValueError, match=r"a_1\.npy holds 6\^3 grids but resolution=4"):
        load_voxel_shapes(tmp_path / "voxels", resolution=4)


def test_an_npz_of_no_labelled_shapes_is_named_as_holding_none(tmp_path: Path) -> None:
    path = tmp_path / "none.npz"
    np.savez(path, X=np.zeros((0, 4, 4, 4), np.uint8), y=np.zeros(0, np.int64))
    assert len(VoxelShapes(path)) == 0
    with pytest.raises(ValueError, match=r"^no shapes in .*none\.npz$"):
        load_voxel_shapes(path)


def test_an_h5_of_named_categories_without_labels_reads_as_plain_grids(tmp_path) -> None:
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["voxels"] = np.ones((2, 4, 4, 4), np.uint8)
        h5.attrs["categories"] = ["chair"]
    assert load_voxel_shapes(tmp_path / "plain.h5").shape == (2, 1, 4, 4, 4)


def test_an_empty_folder_is_named_without_folders_it_does_not_hold(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"\) in .*empty; give the folder that holds them"):
        load_voxel_shapes(tmp_path / "empty")


def test_the_dataset_says_the_categories_it_keeps(tmp_path: Path) -> None:
    shapes = VoxelShapes(_labelled_npz(tmp_path / "s.npz", [3, 1, 2]), categories=["desk"])
    assert "categories=['desk']" in repr(shapes)


def test_the_cache_voxelizes_with_the_up_axis_asked(tmp_path: Path) -> None:
    (tmp_path / "tree" / "box" / "train").mkdir(parents=True)
    (tmp_path / "tree" / "box" / "train" / "box_1.off").write_text(BOX)
    grids = [VoxelShapes(build_modelnet_cache(tmp_path / "tree", tmp_path / f"{axis}.h5",
                                              resolution=8, up_axis=axis)).stack()
             for axis in (0, 2)]
    assert not torch.equal(*grids)
