"""Meshes, voxel files and voxel renders: small meshes written to tmp_path in every format
(both OFF header styles, OBJ quads), solid voxelization, each voxel format's round trip, bad input,
and the real ModelNet/3D ShapeNets data of ../shared/data/voxel (skipped when absent)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import scipy.io
import torch
from PIL import Image

from _tiny import fill, write_mat_v73
from stgconv.io.atomic import WriteError
from stgconv.io.matlab import read_mat
from stgconv.io.mesh import (
    MissingLibraryError,
    _ply_ascii_number,
    _ply_take,
    _write_ply,
    load_mesh,
    mesh_from_voxels,
    normalize_mesh,
    save_mesh_from_voxels,
    voxelize,
    voxelize_file,
)
from stgconv.io.render import render_views, render_voxels, voxel_sheet
from stgconv.io.voxel import check_grids, load_voxels, pad_to, save_voxels, to_tensor

# A unit cube [0, 1]^3 as 6 quads (outward winding).
CUBE_VERTICES = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
CUBE_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def cube_triangles() -> np.ndarray:
    return np.array([(q[0], q[k], q[k + 1]) for q in CUBE_QUADS for k in (1, 2)], dtype=np.int64)


def write_off(path: Path, vertices: np.ndarray, polygons: list, *, joined: bool = False) -> Path:
    """OFF with the counts on their own line, or ModelNet's quirk: 'OFF8 6 0' on one line."""
    head = f"OFF{len(vertices)} {len(polygons)} 0\n" if joined else \
        f"OFF\n# a comment\n{len(vertices)} {len(polygons)} 0\n"
    body = "".join(f"{x:g} {y:g} {z:g}\n" for x, y, z in vertices)
    body += "".join(f"{len(p)} {' '.join(map(str, p))}\n" for p in polygons)
    path.write_text(head + body)
    return path


def open3d_mesh(vertices: np.ndarray, faces: np.ndarray) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                     o3d.utility.Vector3iVector(faces.astype(np.int32)))
    mesh.compute_triangle_normals()  # the STL writer needs them
    return mesh


def interior(grid: np.ndarray) -> np.ndarray:
    """Occupied voxels whose 6 neighbours are all occupied: present only in solid grids."""
    g = np.pad(grid.astype(bool), 1)
    core = g[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (1, -1):
            core &= np.roll(g, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return core


# --------------------------------------------------------------------------------------------
# Meshes
# --------------------------------------------------------------------------------------------


def test_off_header_styles_and_quads(tmp_path: Path) -> None:
    plain = write_off(tmp_path / "plain.off", CUBE_VERTICES, CUBE_QUADS)
    joined = write_off(tmp_path / "joined.off", CUBE_VERTICES, CUBE_QUADS, joined=True)
    v1, f1 = load_mesh(plain)
    v2, f2 = load_mesh(joined)
    assert v1.dtype == np.float64 and v1.shape == (8, 3)
    assert f1.dtype == np.int64 and f1.shape == (12, 3)  # 6 quads -> 12 triangles
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(f1, cube_triangles())
    # Triangles and quads in one file: rows of different lengths.
    mixed = write_off(tmp_path / "mixed.off", CUBE_VERTICES, cube_quads_then_triangles())
    np.testing.assert_array_equal(load_mesh(mixed)[1], cube_triangles())


@pytest.mark.parametrize("joined", [False, True])  # with and without a '#' comment line
def test_off_lines_of_spaces_and_spaces_around_values_are_no_rows(tmp_path: Path,
                                                                  joined: bool) -> None:
    """Blank lines, lines of spaces only and spaces around the values (as editors leave them)
    count as no row, or the rows after them are read one line off."""
    path = write_off(tmp_path / "spaced.off", CUBE_VERTICES, CUBE_QUADS, joined=joined)
    path.write_text("".join(f"  {line} \n   \n\n" for line in path.read_text().splitlines()))
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_VERTICES)
    np.testing.assert_array_equal(faces, cube_triangles())


def test_obj_quads_are_kept(tmp_path: Path) -> None:
    # open3d's own OBJ reader drops quads; ours triangulates them. Slash and negative indices.
    lines = ["# cube", "o cube"] + [f"v {x:g} {y:g} {z:g}" for x, y, z in CUBE_VERTICES]
    lines += ["vn 0 0 1", "vt 0 0"]
    for q in CUBE_QUADS[:3]:
        lines.append("f " + " ".join(f"{i + 1}/1/1" for i in q))
    for q in CUBE_QUADS[3:]:
        lines.append("f " + " ".join(str(i - 8) for i in q))  # -8 is the first vertex
    path = tmp_path / "cube.obj"
    path.write_text("\n".join(lines) + "\n")
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_VERTICES)
    np.testing.assert_array_equal(faces, cube_triangles())


def test_obj_vertex_colours_are_ignored(tmp_path: Path) -> None:
    # "v x y z r g b", a common extension (and "v x y z w").
    path = tmp_path / "coloured.obj"
    path.write_text("v 0 0 0 1 0 0\nv 1 0 0 1 0 0\nv 0 1 0 1 0 0\nf 1 2 3\n")
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


@pytest.mark.parametrize("suffix", [".ply", ".stl"])
def test_ply_and_stl_through_open3d(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cube{suffix}"
    assert o3d.io.write_triangle_mesh(str(path), open3d_mesh(CUBE_VERTICES, cube_triangles()))
    vertices, faces = load_mesh(path)
    assert len(faces) == 12
    grid = voxelize(vertices, faces, 12, margin=1)
    assert grid[1:11, 1:11, 1:11].all() and grid.sum() == 10**3


@pytest.mark.parametrize("use, needed_for", [
    ("render", "rendering voxel grids"),
    ("stl", "reading the STL mesh {stl}"),
    ("voxelize", "voxelizing meshes"),
])
def test_open3d_without_its_system_library_says_what_to_install(
        tmp_path: Path, use: str, needed_for: str, request: pytest.FixtureRequest) -> None:
    """open3d loads libusb-1.0 (and libGL, ...), which pip does not install: where it was
    absent, rendering, reading an STL or voxelizing a mesh failed in an ImportError naming only
    the .so file. load_mesh must not take it for a bad mesh (a cache build would skip every
    STL)."""
    stl = tmp_path / "cube.stl"
    assert o3d.io.write_triangle_mesh(str(stl), open3d_mesh(CUBE_VERTICES, cube_triangles()))
    request.getfixturevalue("open3d_without_libusb")
    calls = {"render": lambda: render_views(np.ones((4, 4, 4)), size=8),
             "stl": lambda: load_mesh(stl),
             "voxelize": lambda: voxelize(CUBE_VERTICES, cube_triangles(), 8)}
    with pytest.raises(MissingLibraryError) as caught:
        calls[use]()
    assert str(caught.value).startswith(f"{needed_for.format(stl=stl)} needs open3d, which "
                                        f"failed to import (libusb-1.0.so.0: cannot open")
    assert str(caught.value).endswith(
        "install the system libraries it loads, which pip does not install (libusb-1.0.so.0, "
        "libGL.so.1, libEGL.so.1, libX11.so.6, libudev.so.1; Debian, Ubuntu: apt-get install "
        "libusb-1.0-0 libgl1 libegl1 libx11-6 libudev1)")


def test_open3d_missing_altogether_is_named_without_a_system_library(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not every failed import is a missing system library's: one of open3d itself names no
    library to install."""
    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d then fails
    with pytest.raises(MissingLibraryError, match=r"^rendering voxel grids needs open3d, which "
                                                  r"failed to import \(import of open3d "
                                                  r"halted; None in sys.modules\)$"):
        render_views(np.ones((4, 4, 4)), size=8)


@pytest.mark.parametrize("suffix", [".off", ".obj", ".ply", ".stl"])
def test_every_format_gives_the_same_solid_cube(tmp_path: Path, suffix: str) -> None:
    if suffix == ".off":
        path = write_off(tmp_path / "c.off", CUBE_VERTICES, CUBE_QUADS, joined=True)
    elif suffix == ".obj":
        path = tmp_path / "c.obj"
        path.write_text("".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
                        + "".join("f " + " ".join(str(i + 1) for i in q) + "\n"
                                  for q in CUBE_QUADS))
    else:
        path = tmp_path / f"c{suffix}"
        o3d.io.write_triangle_mesh(str(path), open3d_mesh(CUBE_VERTICES, cube_triangles()))
    grid = voxelize(*load_mesh(path), 16, margin=2)
    assert grid.dtype == bool and grid.shape == (16, 16, 16)
    # The cube spans exactly 12 voxels, 2 empty ones on each side.
    expected = np.zeros((16, 16, 16), bool)
    expected[2:14, 2:14, 2:14] = True
    np.testing.assert_array_equal(grid, expected)


def test_voxelize_exact_cube_without_normalizing() -> None:
    # [-0.3, 0.3]^3 in a 16^3 grid over [-0.5, 0.5]^3 covers voxel coordinates 3.2 .. 12.8.
    vertices = CUBE_VERTICES * 0.6 - 0.3
    grid = voxelize(vertices, cube_triangles(), 16, normalize=False)
    expected = np.zeros((16, 16, 16), bool)
    expected[3:13, 3:13, 3:13] = True
    np.testing.assert_array_equal(grid, expected)
    # Parts outside the cube are cut off (not pressed onto the border): a cube over
    # [-0.2, 1.8]^3 leaves only its three near faces, voxels 2..7, in an 8^3 grid.
    cut = voxelize(CUBE_VERTICES * 2 - 0.2, cube_triangles(), 8, normalize=False)
    assert cut.sum() == 3 * 36 - 3 * 6 + 1 and not cut[:2].any()


def test_voxelize_without_normalizing_cuts_triangles_far_larger_than_the_cube() -> None:
    """open3d visits every voxel of a triangle's bounding box, inside the grid or not: a mesh
    in other units than the cube's (a square 2,000 wide at 8^3) never returned. Cut to the
    cube first, it gives the grid of the same plane cut just outside the cube, and a mesh
    wholly outside gives an empty grid."""
    square = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    grid = voxelize(square * 1000, faces, 8, normalize=False)
    np.testing.assert_array_equal(grid, voxelize(square * 0.7, faces, 8, normalize=False))
    assert grid[:, :, 3:5].all() and grid.sum() == 2 * 64
    assert not voxelize(square * 1000 + [0, 0, 2], faces, 8, normalize=False).any()


def test_an_hdf5_batch_is_stored_one_chunk_per_grid(tmp_path: Path) -> None:
    # A chunk per grid: reading one shape decompresses that shape only.
    import h5py

    path = save_voxels(np.zeros((3, 4, 4, 4), np.uint8), tmp_path / "batch.h5")
    with h5py.File(path, "r") as h5:
        assert h5["voxels"].chunks == (1, 4, 4, 4)


def test_max_shapes_of_an_hdf5_batch_reads_no_further_than_those(tmp_path: Path) -> None:
    """The grids past the first 2 are damaged on disk, and --max-shapes 2 reads them not: an
    HDF5 file was read whole (a 64^3 cache, 1.3 GB, for 4 shapes to score), as an .npy no
    longer was."""
    import h5py

    grids = (np.arange(5 * 64).reshape(5, 4, 4, 4) % 3 == 0).astype(np.uint8)
    path = save_voxels(grids, tmp_path / "batch.h5")
    with h5py.File(path, "r") as h5:  # one gzip chunk per grid, where each lies in the file
        chunks = [h5["voxels"].id.get_chunk_info(i) for i in range(5)]
    with open(path, "r+b") as file:
        for chunk in chunks[2:]:
            file.seek(chunk.byte_offset)
            file.write(b"\xff" * chunk.size)
    np.testing.assert_array_equal(load_voxels(path, max_shapes=2), grids[:2])
    with pytest.raises(ValueError, match="cannot read HDF5 file"):  # the damage is real
        load_voxels(path)


@pytest.mark.parametrize(("vertices", "up_axis", "margin", "message"), [
    (CUBE_VERTICES, 3, 0.0, "up_axis must be 0, 1 or 2"),
    (np.ones((3, 3)), 2, 0.0, "zero extent"),  # all vertices in one point
    # margin 0.5 leaves a side of 1 - 2 * 0.5 = 0: every vertex would collapse onto the origin.
    (CUBE_VERTICES, 2, 0.5, r"margin must be in \[0, 0.5\), got 0.5"),
    # A negative margin would scale the shape past the cube's faces.
    (CUBE_VERTICES, 2, -0.1, r"margin must be in \[0, 0.5\), got -0.1"),
    # A margin read from a file as text failed comparing it: "'<=' not supported".
    (CUBE_VERTICES, 2, "0.1", r"margin must be a number, got '0.1'"),
    (np.zeros((0, 3)), 2, 0.0, r"shape \(V, 3\) with V >= 1, got \(0, 3\)"),
    # NaN bounds would make every vertex NaN without a word.
    (np.vstack([CUBE_VERTICES, [np.nan, 0, 0]]), 2, 0.0, "NaN or infinite coordinates"),
])
def test_normalize_mesh_refuses_what_it_cannot_place(vertices, up_axis, margin, message) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_mesh(vertices, up_axis=up_axis, margin=margin)


@pytest.mark.parametrize("scale", [1e-310, 1e308])
def test_normalize_mesh_places_a_mesh_of_coordinates_near_float64s_limits(scale) -> None:
    """Coordinates of 1e308 overflowed the extent (every vertex went to 0: a shape of one
    voxel) and those of 1e-310 its reciprocal (infinite coordinates, on which voxelize never
    returned): such a mesh is placed as the same mesh at unit size."""
    unit = normalize_mesh(CUBE_VERTICES * 2 - 1, margin=0.1)
    np.testing.assert_allclose(normalize_mesh((CUBE_VERTICES * 2 - 1) * scale, margin=0.1),
                               unit)


def test_normalize_mesh_refuses_an_extent_too_small_to_scale() -> None:
    vertices = np.array([[1.0, 0, 0], [1, 1e-320, 0], [1, 0, 1e-320]])
    with pytest.raises(ValueError, match=r"extent \(1e-320\) is too small to scale"):
        normalize_mesh(vertices)


def test_voxelize_file_names_a_mesh_it_cannot_voxelize(tmp_path: Path) -> None:
    path = write_off(tmp_path / "point.off", np.zeros((3, 3)), [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"point\.off: the mesh has zero extent"):
        voxelize_file(path, 8)


def test_voxelize_keeps_a_triangle_lying_on_the_top_face_of_the_cube() -> None:
    """open3d puts a coordinate of exactly 0.5 at index R, outside the grid: a triangle in the
    plane z = 0.5 is voxelized mirrored, into the top layer, not lost."""
    vertices = np.array([[-0.4, -0.4, 0.5], [0.4, -0.4, 0.5], [-0.4, 0.4, 0.5]])
    grid = voxelize(vertices, np.array([[0, 1, 2]]), 4, normalize=False)
    assert grid[:, :, 3].sum() == 12 and grid.sum() == 12


@pytest.mark.parametrize("resolution", [8, 12, 20, 30])
def test_voxelize_keeps_a_triangle_lying_on_a_voxel_boundary_inside_the_cube(resolution) -> None:
    """open3d rounds a coordinate on a boundary between voxels to one side, and tests the
    triangle against that voxel's box, rounded its own way: a shelf in the middle of a mesh
    (normalized to z = 0, a boundary for an even side) came out on one side at 8^3 and 30^3,
    and vanished at 12^3 and 20^3. It takes the voxels on both sides, as it touches both."""
    shelf = np.array([[0, 0, 0.5], [1, 0, 0.5], [1, 1, 0.5], [0, 1, 0.5]])
    post = np.array([[0, 0, 0], [0.01, 0, 0], [0, 0, 1]])  # sets the height: the shelf at 0
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    grid = voxelize(np.vstack([shelf, post]), faces, resolution, margin=1)
    middle = resolution // 2
    assert grid[1:-1, 1:-1, middle - 1:middle + 1].all()
    # Without normalizing: a square in the plane between voxels k - 1 and k along x.
    k = resolution // 4
    square = np.array([[0, -0.2, -0.2], [0, 0.2, -0.2], [0, 0.2, 0.2], [0, -0.2, 0.2]])
    square[:, 0] = -0.5 + k / resolution
    grid = voxelize(square, faces[:2], resolution, normalize=False)
    assert np.nonzero(grid.any(axis=(1, 2)))[0].tolist() == [k - 1, k]


@pytest.mark.parametrize("header", ["COFF", "NOFF", "CNOFF", "STCNOFF"])
def test_off_vertex_colour_columns_are_ignored(tmp_path: Path, header: str) -> None:
    # Extra vertex columns (colours, normals, texture coordinates) and a face's colour.
    path = tmp_path / "coloured.off"
    path.write_text(f"{header}\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 255 0 0 255\n"
                    "0 1 0 255 0 0 255\n3 0 1 2 255 0 0\n")
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


def test_voxelize_fills_intersecting_parts() -> None:
    # Two closed boxes crossing like a plus sign. Ray parity counts two crossings in their
    # overlap and calls it "outside"; the solid grid must hold the union.
    low, high = np.array([-0.41, -0.11, -0.11]), np.array([0.41, 0.11, 0.11])
    box_a = low + CUBE_VERTICES * (high - low)
    box_b = box_a[:, [1, 0, 2]]
    vertices = np.concatenate([box_a, box_b])
    faces = np.concatenate([cube_triangles(), cube_triangles() + 8])
    grid = voxelize(vertices, faces, 20, normalize=False)
    # In voxel coordinates the long sides span 1.8 .. 18.2, the short ones 7.8 .. 12.2.
    expected = np.zeros((20, 20, 20), bool)
    expected[1:19, 7:13, 7:13] = True
    expected[7:13, 1:19, 7:13] = True
    np.testing.assert_array_equal(grid, expected)


def test_voxelize_keeps_thin_sheets() -> None:
    # A single square (zero thickness): no inside, but its surface voxels must survive.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    grid = voxelize(vertices, faces, 8, margin=1, normalize=True)
    assert grid.any() and grid.sum() >= 36
    assert np.ptp(np.argwhere(grid)[:, 2]) <= 1  # one or two layers in z


def test_up_axis_and_normalize() -> None:
    tall_y = CUBE_VERTICES * [1.0, 4.0, 1.0] + 10  # a y-up post, far from the origin
    v = normalize_mesh(tall_y, up_axis=1, margin=0.1)
    np.testing.assert_allclose(v.max(axis=0) - v.min(axis=0), [0.2, 0.2, 0.8])
    np.testing.assert_allclose((v.max(axis=0) + v.min(axis=0)) / 2, 0, atol=1e-12)
    grid = voxelize(tall_y, cube_triangles(), 16, up_axis=1)
    extent = np.ptp(np.argwhere(grid), axis=0) + 1
    assert extent[2] == 14 and extent[0] < 6 and extent[1] < 6  # tall along axis 2


@pytest.mark.parametrize("name, text, message", [
    ("empty.off", "", "not an OFF file"),
    ("garbage.off", "hello world\n1 2 3\n", "not an OFF file"),
    ("offset.off", "OFFSET 3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "not an OFF file"),
    ("header_only.off", "OFF\n", "no vertex/face counts"),
    ("one_count.off", "OFF\n3\n0 0 0\n1 0 0\n0 1 0\n", "expected 'n_vertices n_faces"),
    ("nofaces.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
    ("truncated.off", "OFF\n8 6 0\n0 0 0\n1 0 0\n", "truncated"),
    ("nan.off", "OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n", "NaN"),
    ("range.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
    ("negative.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 -1\n", "out of range"),
    ("range_quad.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 9\n", "out of range"),
    # A polygon's index equal to the vertex count: the convexity test must not look it up.
    ("past_quad.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 4\n", "out of range"),
    # Negative counts (slicing by them would silently drop lines).
    ("negative_faces.off", "OFF\n3 -1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "negative counts"),
    ("negative_vertices.off", "OFF\n-3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "negative counts"),
    ("word_counts.off", "OFF\nthree 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
     "expected 'n_vertices n_faces n_edges' after the OFF header, got 'three 1 0'"),
    # The vertices counted, not their coordinates: one vertex holds both NaN and inf.
    ("nan_inf.off", "OFF\n3 1 0\n0 0 0\nnan inf 0\n0 1 0\n3 0 1 2\n",
     "has 1 vertices with NaN"),
    ("edge.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "n >= 3"),
    ("words.off", "OFF\n3 1 0\n0 0 zero\n1 0 0\n0 1 0\n3 0 1 2\n", "cannot parse"),
    # 2 + 4 coordinates: as many as 2 vertices need, but the second line's 4th is no vertex's.
    ("shifted.off", "OFF\n3 1 0\n0 0\n0 1 0 0\n0 1 0\n3 0 1 2\n",
     "vertex line '0 0' has fewer than 3"),
    # 5 + 3 indices: as many as 2 triangles need, but the second lists only 2 vertices.
    ("shifted_faces.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2 3\n3 0 1\n",
     "n >= 3"),
    # Four tokens a line, as triangles have, but a quad listing 3 corners; after a triangle too.
    ("short_quad.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "n >= 3"),
    ("triangle_and_short_quad.off", "OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n4 0 1 2\n",
     "face line '4 0 1 2' does not list n >= 3"),
    ("empty.obj", "# nothing\n", "no faces"),
    ("range.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "out of range"),
    ("bad.obj", "v 0 0\nf 1 2 3\n", "fewer than 3"),
    ("edge.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2\n", "fewer than 3 corners"),
    ("garbage.ply", "not a ply file\n", "not a PLY file"),
    ("no_end.ply", "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n",
     "not a PLY file: its header has no 'end_header' line"),
    ("plx.ply", "plx\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n",
     "not a PLY file: it does not start with 'ply'"),
    ("garbage.stl", "", "neither a binary STL"),
    pytest.param("empty.stl", "\0" * 84, "no faces", id="binary STL of no triangles"),
])
def test_broken_meshes(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_mesh(path)
    assert name in str(info.value)


def test_mesh_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.off"):
        load_mesh(tmp_path / "missing.off")
    (tmp_path / "folder.off").mkdir()
    with pytest.raises(FileNotFoundError, match=r"mesh not found: .*folder\.off"):
        load_mesh(tmp_path / "folder.off")
    (tmp_path / "cube.fbx").write_text("x")
    with pytest.raises(ValueError, match="suffix"):
        load_mesh(tmp_path / "cube.fbx")
    with pytest.raises(ValueError, match="margin"):
        voxelize(CUBE_VERTICES, cube_triangles(), 8, margin=4)
    with pytest.raises(ValueError, match="resolution must be an int >= 2, got 1"):
        voxelize(CUBE_VERTICES, cube_triangles(), 1, margin=0)
    with pytest.raises(ValueError, match=r"vertices must have shape \(V, 3\), got \(8, 2\)"):
        voxelize(CUBE_VERTICES[:, :2], cube_triangles(), 8, normalize=False)
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        voxelize(CUBE_VERTICES, np.zeros((2, 4), int), 8)
    with pytest.raises(ValueError, match="an int array"):
        voxelize(CUBE_VERTICES, cube_triangles().astype(float), 8)
    with pytest.raises(ValueError, match="no faces"):
        voxelize(CUBE_VERTICES, np.zeros((0, 3), int), 8)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".OBJ"])
def test_save_mesh_from_voxels(tmp_path: Path, suffix: str) -> None:
    grid = np.zeros((16, 16, 16), np.uint8)
    grid[3:13, 4:12, 5:11] = 1
    path = save_mesh_from_voxels(torch.from_numpy(grid)[None].float(), tmp_path / f"m{suffix}")
    vertices, faces = load_mesh(path)
    assert len(faces) > 0
    # The 0.5 iso-surface lies half a voxel outside the occupied voxel centres.
    np.testing.assert_allclose(vertices.min(axis=0), [2.5, 3.5, 4.5], atol=1e-5)
    np.testing.assert_allclose(vertices.max(axis=0), [12.5, 11.5, 10.5], atol=1e-5)
    # Voxelizing the surface again gives the box back (up to the boundary layer).
    again = voxelize((vertices + 0.5) / 16 - 0.5, faces, 16, normalize=False)
    assert again[3:13, 4:12, 5:11].all() and again.sum() <= 12 * 10 * 8
    assert not list(tmp_path.glob("*.tmp"))
    # Normals point out (a viewer shading one side sees it lit): the faces' signed volume is
    # the box's 10 x 8 x 6 less its cut corners and edges, positive (inside out, negative).
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
    assert 0.9 * 480 < volume < 480
    # Vertices off the half-voxel steps (a grid of other values) are kept to 1e-6.
    soft = grid * 0.7  # the 0.5 iso-surface lies 2/7 of a voxel out from the centres
    written, _ = load_mesh(save_mesh_from_voxels(soft, tmp_path / f"soft{suffix}"))
    np.testing.assert_allclose(written, mesh_from_voxels(soft)[0], atol=1e-6)


def test_save_mesh_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no voxel exceeds"):
        save_mesh_from_voxels(np.zeros((8, 8, 8)), tmp_path / "empty.ply")
    with pytest.raises(ValueError, match=r"\.ply or \.obj"):
        save_mesh_from_voxels(np.ones((8, 8, 8)), tmp_path / "m.stl")
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        mesh_from_voxels(np.ones((8, 8)))
    with pytest.raises(ValueError, match="NaN"):  # not "no surface"
        mesh_from_voxels(np.pad(np.ones((2, 2, 2)), 1, constant_values=np.nan))
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Voxel files
# --------------------------------------------------------------------------------------------


def random_grids(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".mat", ".binvox", ".npy", ".npz", ".h5", ".hdf5"])
def test_single_grid_round_trip(tmp_path: Path, suffix: str) -> None:
    grid = random_grids(9, 9, 9)
    path = save_voxels(torch.from_numpy(grid).bool(), tmp_path / f"g{suffix}")
    back = load_voxels(path)
    assert back.dtype == np.uint8 and back.shape == (9, 9, 9)
    np.testing.assert_array_equal(back, grid)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("suffix", [".mat", ".npy", ".npz", ".h5"])
@pytest.mark.parametrize("n", [3, 0])
def test_batch_round_trip(tmp_path: Path, suffix: str, n: int) -> None:
    """Batches of any size, the empty one too (its .h5 was an h5py chunking error)."""
    grids = random_grids(n, 6, 6, 6, seed=1)
    path = save_voxels(grids[:, None], tmp_path / f"b{suffix}")  # (N, 1, R, R, R) accepted
    np.testing.assert_array_equal(load_voxels(path), grids)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("max_shapes, kept", [(3, 3), (80, 50)])
def test_max_shapes_decompresses_only_those_grids_of_an_npz(tmp_path: Path, monkeypatch,
                                                             order: str, max_shapes: int,
                                                             kept: int) -> None:
    """The first grids only are decompressed (of 2,000 64^3 grids, 524 MB were to keep 4);
    grids stored in Fortran order, which do not come first in the file, are read whole."""
    grids = random_grids(50, 8, 8, 8, seed=4)
    np.savez_compressed(tmp_path / "b.npz", X=np.asarray(grids, order=order))
    read, original = [], zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read",
                        lambda member, n=-1: read.append(len(data := original(member, n)))
                        or data)
    np.testing.assert_array_equal(load_voxels(tmp_path / "b.npz", max_shapes=max_shapes),
                                  grids[:kept])
    # In C order, the kept grids' bytes and the .npy header (128 bytes here) at most.
    assert order == "F" or sum(read) <= kept * 512 + 128


def test_max_shapes_keeps_one_grid_whole_and_names_a_file_that_ends_before(tmp_path: Path
                                                                          ) -> None:
    np.savez_compressed(tmp_path / "one.npz", X=random_grids(6, 6, 6))
    np.testing.assert_array_equal(load_voxels(tmp_path / "one.npz", max_shapes=2),
                                  random_grids(6, 6, 6))
    np.save(tmp_path / "cut.npy", random_grids(4, 6, 6, 6))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:len(data) - 300])
    with pytest.raises(ValueError, match=r"cannot read \.npy file .*cut\.npy: the array ends "
                                         r"before its first 4 entries"):
        load_voxels(tmp_path / "cut.npy", max_shapes=4)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".mat"])
def test_occupancy_round_trip(tmp_path: Path, suffix: str) -> None:
    grids = np.random.default_rng(2).random((2, 5, 5, 5)).astype(np.float32)
    grids[0, 0, 0, :2] = 0.0, 1.0  # some voxels exactly empty or full: still occupancy
    path = save_voxels(grids, tmp_path / f"p{suffix}")
    back = load_voxels(path, binary=False)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, grids)
    # The message says what is wrong, not which Python argument to pass: CLI users read it too.
    with pytest.raises(ValueError, match=r"expected binary occupancy \{0, 1\}, found 248 other"):
        load_voxels(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".mat"])
def test_an_empty_batch_of_occupancy_round_trips(tmp_path: Path, suffix: str) -> None:
    """No values, no range to check: the minimum of an empty array was a numpy error."""
    path = save_voxels(np.zeros((0, 5, 5, 5), np.float32), tmp_path / f"e{suffix}")
    back = load_voxels(path, binary=False)
    assert back.shape == (0, 5, 5, 5) and back.dtype == np.float32


@pytest.mark.parametrize("suffix", [".npy", ".mat"])
def test_bfloat16_grids_are_written_as_their_values(tmp_path: Path, suffix: str) -> None:
    """numpy has no bfloat16: "Got unsupported ScalarType BFloat16" from save_voxels and
    check_grids. Binary values are stored as uint8, others as float32 (exact for bfloat16)."""
    binary = torch.from_numpy(random_grids(2, 4, 4, 4, seed=3)).bfloat16()
    path = save_voxels(binary, tmp_path / f"b{suffix}")
    np.testing.assert_array_equal(load_voxels(path), binary.to(torch.uint8).numpy())
    levels = binary * 0.5 + 0.25  # 0.25 and 0.75: exact in bfloat16
    path = save_voxels(levels, tmp_path / f"p{suffix}")
    np.testing.assert_array_equal(load_voxels(path, binary=False), levels.float().numpy())
    np.testing.assert_array_equal(check_grids(levels, binary=False), levels.float().numpy())


def test_binvox_axis_order_and_runs(tmp_path: Path) -> None:
    # binvox stores x slowest, then z, then y: voxel [x=1, y=2, z=3] of 4^3 is number 1*16+3*4+2.
    grid = np.zeros((4, 4, 4), np.uint8)
    grid[1, 2, 3] = 1
    data = save_voxels(grid, tmp_path / "one.binvox").read_bytes()
    header, runs = data.split(b"data\n", 1)
    # translate and scale put the grid on the cube [-0.5, 0.5]^3, as voxelize's grids lie.
    assert header == b"#binvox 1\ndim 4 4 4\ntranslate -0.5 -0.5 -0.5\nscale 1.0\n"
    assert list(runs) == [0, 30, 1, 1, 0, 33]
    # Runs longer than 255 are split: a full 8^3 grid is 512 = 255 + 255 + 2 ones.
    full = save_voxels(np.ones((8, 8, 8)), tmp_path / "full.binvox").read_bytes()
    assert list(full.split(b"data\n", 1)[1]) == [1, 255, 1, 255, 1, 2]
    assert load_voxels(tmp_path / "full.binvox").all()


def test_3d_shapenets_mat_layout(tmp_path: Path) -> None:
    """3D ShapeNets' grids are stored [y, x, z]: read and written with the first two axes
    swapped (test_real_mat_chairs_lie_as_their_modelnet_twins shows why)."""
    grid = random_grids(30, 30, 30, seed=3)
    scipy.io.savemat(tmp_path / "chair_000000001_1.mat", {"instance": grid.astype(np.int8)})
    np.testing.assert_array_equal(load_voxels(tmp_path / "chair_000000001_1.mat"),
                                  grid.swapaxes(0, 1))
    save_voxels(grid, tmp_path / "ours.mat")
    stored = scipy.io.loadmat(tmp_path / "ours.mat")["instance"]
    assert stored.dtype == np.int8
    np.testing.assert_array_equal(stored, grid.swapaxes(0, 1))
    np.testing.assert_array_equal(load_voxels(tmp_path / "ours.mat"), grid)


def test_a_matlab_v73_file_reads_as_its_v5_twin(tmp_path: Path) -> None:
    """MATLAB writes large variables (and, by preference, all) as v7.3, which is HDF5: it was
    refused with advice to read it as HDF5, which (renamed .h5) gave the axes reversed."""
    grid = random_grids(6, 6, 6, seed=4)
    batch = random_grids(3, 6, 6, 6, seed=5)
    scipy.io.savemat(tmp_path / "v5.mat", {"instance": grid.astype(np.int8)})
    write_mat_v73(tmp_path / "v73.mat", {"instance": grid.astype(np.int8),
                                         "label": np.ones((1, 1))})
    np.testing.assert_array_equal(load_voxels(tmp_path / "v73.mat"),
                                  load_voxels(tmp_path / "v5.mat"))
    write_mat_v73(tmp_path / "logical.mat", {"shapes": batch})
    np.testing.assert_array_equal(load_voxels(tmp_path / "logical.mat"), batch.swapaxes(1, 2))


def test_an_empty_matlab_v73_variable_reads_as_its_v5_twin(tmp_path: Path) -> None:
    """MATLAB's v7.3 stores ``zeros(0, 5)`` as its dimensions flagged MATLAB_empty: they were
    read as the variable, the uint64 array [0, 5]. One without a class reads as a double, as
    does one of a class without a numeric type (a cell)."""
    import h5py

    scipy.io.savemat(tmp_path / "v5.mat", {"none": np.zeros((0, 5)), "flags": np.zeros((3, 0),
                                                                                      bool),
                                           "counts": np.zeros((0, 2), np.int32),
                                           "ids": np.zeros((0, 3), np.int64),
                                           "ratios": np.zeros((2, 0), np.float32),
                                           "classless": np.zeros((0, 5))})
    path = write_mat_v73(tmp_path / "v73.mat", {"label": np.ones((1, 1))})
    with h5py.File(path, "a") as h5:
        for name, dims, matlab_class in (("none", [0, 5], "double"), ("flags", [3, 0], "logical"),
                                         ("counts", [0, 2], "int32"), ("ids", [0, 3], "int64"),
                                         ("ratios", [2, 0], "single"),
                                         ("classless", [0, 5], None), ("cells", [0, 4], "cell")):
            # The classless one's dimensions as a column: read flat however they are stored.
            shape = (-1, 1) if matlab_class is None else (-1,)
            dataset = h5.create_dataset(name, data=np.array(dims, np.uint64).reshape(shape))
            if matlab_class is not None:
                dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
            dataset.attrs["MATLAB_empty"] = np.uint8(1)
    v5, v73 = read_mat(tmp_path / "v5.mat"), read_mat(path)
    for name in ("none", "flags", "counts", "ids", "ratios", "classless"):
        assert (v73[name].shape, v73[name].dtype) == (v5[name].shape, v5[name].dtype)
    assert (v73["cells"].shape, v73["cells"].dtype) == ((0, 4), np.float64)
    np.testing.assert_array_equal(v73["label"], np.ones((1, 1)))


@pytest.mark.parametrize("room", [0, 8192])
def test_an_h5_write_to_a_full_disk_is_a_write_error_naming_the_file(small_disk: Path,
                                                                    room: int) -> None:
    """HDF5 writing to a full disk itself failed with a RuntimeError ("Can't decrement id ref
    count") or an OSError in a page of its own words naming the temporary, and its close could
    end the process with a segfault; now the system's error, naming the file, as every writer."""
    fill(small_disk / "filler", leaving=room)
    path = small_disk / "grids.h5"
    grids = np.random.default_rng(0).random((8, 16, 16, 16), dtype=np.float32)  # 128 KiB
    with pytest.raises(WriteError, match=rf"^\[Errno 28\] No space left on device: '{path}'$"):
        save_voxels(grids, path)
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_an_hdf5_file_without_matlab_s_header_is_named_as_such(tmp_path: Path) -> None:
    """h5py writes a .mat of C-order arrays without MATLAB's v7.3 header: scipy's "Unknown mat
    file type, version 0, 0" said nothing of HDF5 or of the axis order it leaves unknown."""
    import h5py

    path = tmp_path / "python.mat"
    with h5py.File(path, "w") as h5:
        h5["instance"] = random_grids(4, 4, 4, seed=1)
    with pytest.raises(ValueError, match=r"python\.mat: it is HDF5 without the 512-byte header "
                                         r"MATLAB writes"):
        load_voxels(path)


@pytest.mark.parametrize(("damage", "message"), [
    ("a variable of no type", r"cannot read MATLAB file .*damaged\.mat: Expecting miMATRIX"),
    ("compressed bytes", r"cannot read .*damaged\.mat: the file is damaged or truncated"),
])
def test_read_mat_names_a_damaged_file(tmp_path: Path, damage: str, message: str) -> None:
    """The mask loader reads .mat files too: read_mat's own error names the file, whatever
    scipy raised (a TypeError for a type MATLAB has none of, zlib's error for its bytes)."""
    path = tmp_path / "damaged.mat"
    scipy.io.savemat(path, {"x": np.arange(64.0).reshape(8, 8)},
                     do_compression=damage == "compressed bytes")
    data = bytearray(path.read_bytes())
    if damage == "a variable of no type":
        data[128] = 0xFF  # the first variable's type, after the 128-byte header
    else:
        data[140:170] = bytes(b ^ 0x55 for b in data[140:170])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=message):
        read_mat(path)


def test_a_truncated_matlab_v73_file_is_named(tmp_path: Path) -> None:
    # Its header says v7.3, its HDF5 body is cut short: h5py's OSError names no problem.
    path = write_mat_v73(tmp_path / "cut.mat", {"instance": random_grids(6, 6, 6, seed=4)})
    path.write_bytes(path.read_bytes()[:1024])
    with pytest.raises(ValueError, match=f"cannot read MATLAB v7.3 .*{path.name}: .*truncated"):
        load_voxels(path)


@pytest.mark.parametrize("signature", [b"SNOD", b"HEAP", b"TREE"])
def test_an_hdf5_file_with_a_damaged_structure_is_named(tmp_path: Path, signature) -> None:
    """A damaged byte in an HDF5 file's groups (a symbol table, its heap, its B-tree) made
    h5py raise RuntimeError ('Object visitation failed (bad local heap signature)'), where a
    truncated file is its OSError: a traceback naming no file, from a .h5 and a v7.3 .mat
    alike."""
    import h5py

    with h5py.File(tmp_path / "shapes.h5", "w") as h5:
        h5["voxels"] = random_grids(2, 4, 4, 4)
    write_mat_v73(tmp_path / "shapes.mat", {"instance": random_grids(4, 4, 4).astype(np.int8)})
    for name, reader in (("shapes.h5", "HDF5 file"), ("shapes.mat", "MATLAB v7.3")):
        path = tmp_path / name
        path.write_bytes(path.read_bytes().replace(signature, b"XXXX"))
        with pytest.raises(ValueError, match=rf"cannot read {reader} .*{name}: .*signature"):
            load_voxels(path)


def test_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", a=random_grids(4, 4, 4), b=random_grids(2, 4, 4, 4))
    with pytest.raises(ValueError,
                       match=r"no array 'X' and 2 others \(a, b\); name the shapes' array 'X'"):
        load_voxels(tmp_path / "two.npz")
    assert load_voxels(tmp_path / "two.npz", key="b").shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"no array 'c'; it holds \['a', 'b'\]"):
        load_voxels(tmp_path / "two.npz", key="c")
    np.savez(tmp_path / "one.npz", shapes=random_grids(4, 4, 4))
    assert load_voxels(tmp_path / "one.npz").shape == (4, 4, 4)  # the only array
    save_voxels(random_grids(4, 4, 4), tmp_path / "k.h5", key="grids")
    assert load_voxels(tmp_path / "k.h5").shape == (4, 4, 4)


def test_hdf5_datasets_inside_groups_are_named_by_path(tmp_path: Path) -> None:
    """An HDF5 file that keeps its grids in groups (train/voxels, test/voxels) was said to hold
    no arrays at all; its datasets are listed by path now, and one alone is read."""
    import h5py

    with h5py.File(tmp_path / "split.h5", "w") as h5:
        for split, n in (("train", 3), ("test", 2)):
            h5.create_group(split)["voxels"] = random_grids(n, 4, 4, 4)
    with pytest.raises(ValueError, match=r"no array 'voxels' and 2 others "
                                         r"\(test/voxels, train/voxels\)"):
        load_voxels(tmp_path / "split.h5")
    assert load_voxels(tmp_path / "split.h5", key="test/voxels").shape == (2, 4, 4, 4)
    assert load_voxels(tmp_path / "split.h5", key="/train/voxels").shape == (3, 4, 4, 4)
    with h5py.File(tmp_path / "one.h5", "w") as h5:
        h5.create_group("shapes")["grids"] = random_grids(4, 4, 4)
    np.testing.assert_array_equal(load_voxels(tmp_path / "one.h5"), random_grids(4, 4, 4))


def test_hdf5_data_kept_in_another_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A file from elsewhere may keep a dataset's bytes in any file of this machine (external
    raw storage, a virtual dataset, an external link): they were read as the grids."""
    import h5py

    other = tmp_path / "other.bin"
    other.write_bytes(bytes(4 ** 3))
    with h5py.File(tmp_path / "raw.h5", "w") as h5:
        h5.create_dataset("voxels", (4, 4, 4), "u1", external=[(str(other), 0, 4 ** 3)])
    with h5py.File(tmp_path / "target.h5", "w") as h5:
        h5["voxels"] = random_grids(4, 4, 4)
    with h5py.File(tmp_path / "virtual.h5", "w") as h5:
        layout = h5py.VirtualLayout((4, 4, 4), "u1")
        layout[:] = h5py.VirtualSource(str(tmp_path / "target.h5"), "voxels", (4, 4, 4))
        h5.create_virtual_dataset("voxels", layout)
    write_mat_v73(tmp_path / "linked.mat", {})
    with h5py.File(tmp_path / "linked.mat", "r+") as h5:
        h5["instance"] = h5py.ExternalLink(str(tmp_path / "target.h5"), "/voxels")
    for name, where in (("raw.h5", r"external raw files \(.*other\.bin\)"),
                        ("virtual.h5", r"a virtual dataset over .*target\.h5"),
                        ("linked.mat", r"an external link in it leads to dataset '/voxels' of "
                                       r".*target\.h5")):
        with pytest.raises(ValueError, match=rf"{name}: .*{where}.*only data inside the file"):
            load_voxels(tmp_path / name)


def test_a_header_declaring_more_than_memory_is_a_value_error_naming_the_file(
        tmp_path: Path) -> None:
    """numpy and h5py allocate the declared shape before reading: a 200-byte file declaring
    8 TiB stopped every reader with a MemoryError traceback."""
    import h5py

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6,) * 3})
    (tmp_path / "huge.npy").write_bytes(header.getvalue())
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("X.npy", header.getvalue())
    with h5py.File(tmp_path / "huge.h5", "w") as h5:
        h5.create_dataset("voxels", (10 ** 6,) * 3, "f8", chunks=(1, 1, 8))
    write_mat_v73(tmp_path / "huge.mat", {})
    with h5py.File(tmp_path / "huge.mat", "r+") as h5:
        h5.create_dataset("instance", (10 ** 6,) * 3, "f8", chunks=(1, 1, 8))
    for name in ("huge.npy", "huge.npz", "huge.h5", "huge.mat"):
        with pytest.raises(ValueError, match=rf"{name}.*declares more than memory holds"):
            load_voxels(tmp_path / name)


def test_an_npz_archive_named_npy_is_refused_naming_the_format(tmp_path: Path) -> None:
    # np.load returned the archive, open, and the grid check then saw an array of shape (1,).
    np.savez(tmp_path / "shapes.npz", X=np.zeros((2, 4, 4, 4), np.uint8))
    (tmp_path / "shapes.npz").rename(tmp_path / "shapes.npy")
    with pytest.raises(ValueError, match=r"cannot read \.npy file .*shapes\.npy: the magic"):
        load_voxels(tmp_path / "shapes.npy")


@pytest.mark.parametrize("max_shapes", [None, 1])
def test_an_npy_header_cut_short_is_a_value_error_naming_the_file(tmp_path: Path,
                                                                   max_shapes) -> None:
    """numpy parses the header with Python's tokenizer, whose TokenError ('EOF in multi-line
    statement') on an unclosed brace escaped every reader as itself: a raw traceback for one
    damaged byte of a .npy, or of an .npz's member."""
    np.save(tmp_path / "shapes.npy", np.zeros((2, 4, 4, 4), np.uint8))
    cut = (tmp_path / "shapes.npy").read_bytes().replace(b"}", b" ", 1)
    (tmp_path / "shapes.npy").write_bytes(cut)
    with zipfile.ZipFile(tmp_path / "shapes.npz", "w") as archive:
        archive.writestr("X.npy", cut)
    for name in ("shapes.npy", "shapes.npz"):
        with pytest.raises(ValueError, match=rf"{name}.*header is damaged"):
            load_voxels(tmp_path / name, max_shapes=max_shapes)


def test_an_npy_file_that_fails_to_read_is_a_value_error_naming_it(unreadable_npy: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read \.npy file .*unreadable\.npy: \[Errno 5\]"):
        load_voxels(unreadable_npy)


@pytest.mark.parametrize(("suffix", "reader"), [(".binvox", "voxels from"),
                                                (".mat", "MATLAB file")])
def test_a_binvox_or_mat_file_that_fails_to_read_names_itself(unreadable_npy: Path,
                                                              tmp_path: Path, suffix,
                                                              reader) -> None:
    """They failed with the system's '[Errno 5] Input/output error' alone: in a folder of
    889 .mat chairs, no word of which one."""
    grid = tmp_path / f"chair{suffix}"
    grid.symlink_to(unreadable_npy)
    with pytest.raises(ValueError, match=rf"cannot read {reader} .*chair\{suffix}: Input/out"):
        load_voxels(grid)


@pytest.mark.parametrize("suffix", [".off", ".obj", ".ply", ".stl"])
def test_a_mesh_that_fails_to_read_is_a_value_error_naming_it(unreadable_npy: Path,
                                                              tmp_path: Path, suffix) -> None:
    """A disk's I/O error (or permission denied) is an unreadable mesh as a damaged one is: it
    came out as '[Errno 5] Input/output error', naming no file."""
    mesh = tmp_path / f"chair{suffix}"
    mesh.symlink_to(unreadable_npy)
    with pytest.raises(ValueError, match=rf"cannot read mesh .*chair\{suffix}: Input/output"):
        load_mesh(mesh)


def test_voxel_file_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match=r"cubic.*\(4, 5, 4\)"):
        load_voxels(tmp_path / "flat.npy")
    np.save(tmp_path / "image.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(R, R, R\) or a batch \(N, R, R, R\)"):
        load_voxels(tmp_path / "image.npy")
    np.save(tmp_path / "nothing.npy", np.zeros((0, 0, 0), np.uint8))
    with pytest.raises(ValueError, match=r"the grids are empty, shape \(0, 0, 0\)"):
        load_voxels(tmp_path / "nothing.npy")  # it padded into an empty training shape
    for name, value, dtype in (("counts.npy", 2, np.uint8), ("minus.npy", -1, np.int8)):
        np.save(tmp_path / name, np.full((4, 4, 4), value, dtype))
        with pytest.raises(ValueError, match=rf"binary occupancy \{{0, 1\}}, found 64 other "
                                             rf"values \(e\.g\. {value}\)"):
            load_voxels(tmp_path / name)
    np.save(tmp_path / "big.npy", np.full((4, 4, 4), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_voxels(tmp_path / "big.npy", binary=False)
    with pytest.raises(ValueError, match="one binary grid"):
        save_voxels(random_grids(2, 4, 4, 4), tmp_path / "b.binvox")
    with pytest.raises(ValueError, match="one binary grid"):
        save_voxels(np.full((4, 4, 4), 0.5), tmp_path / "half.binvox")
    with pytest.raises(ValueError, match="cubic"):
        save_voxels(np.zeros((4, 4, 5)), tmp_path / "x.npy")
    with pytest.raises(ValueError, match=r"integer values in \[2, 2\]"):
        save_voxels(np.full((4, 4, 4), 2, np.uint8), tmp_path / "x.npz")
    with pytest.raises(ValueError, match="NaN"):
        save_voxels(torch.full((4, 4, 4), float("nan")), tmp_path / "x.h5")
    with pytest.raises(ValueError, match="suffix"):
        save_voxels(np.zeros((4, 4, 4)), tmp_path / "x.vox")
    good = save_voxels(random_grids(8, 8, 8), tmp_path / "cut.binvox").read_bytes()
    (tmp_path / "cut.binvox").write_bytes(good[:-2])
    with pytest.raises(ValueError, match="truncated"):
        load_voxels(tmp_path / "cut.binvox")
    # 4194304^3 voxels: 2^66, which an int64 product wrapped to 0, an empty file's voxels.
    (tmp_path / "wrapped.binvox").write_bytes(b"#binvox 1\ndim 4194304 4194304 4194304\ndata\n")
    with pytest.raises(ValueError, match=r"wrapped\.binvox is truncated or corrupt: its runs "
                                         r"hold 0 voxels, the header announces \(4194304, "
                                         r"4194304, 4194304\) = 73786976294838206464$"):
        load_voxels(tmp_path / "wrapped.binvox")
    for name in ("junk.binvox", "junk.npz", "junk.h5", "junk.mat", "junk.npy"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 10)
        with pytest.raises(ValueError, match=name):
            load_voxels(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_voxels(tmp_path / "none.npy")
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(FileNotFoundError, match=r"voxel file not found: .*folder\.npy"):
        load_voxels(tmp_path / "folder.npy")
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "b.binvox").exists()


@pytest.mark.parametrize("name", ["damaged.npz", "damaged.mat"])
def test_a_damaged_compressed_file_is_named(tmp_path: Path, name: str) -> None:
    """Their compressed bytes damaged, the reading fails inside zlib, whose error is no
    ValueError: it is turned into one naming the file."""
    path = save_voxels(random_grids(4, 16, 16, 16), tmp_path / name)
    data = bytearray(path.read_bytes())
    data[200:400] = bytes(b ^ 0x55 for b in data[200:400])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{name}.*damaged or truncated"):
        load_voxels(path)


def test_pad_to() -> None:
    grids = np.ones((2, 30, 30, 30), np.uint8)
    padded = pad_to(grids, 32)
    assert padded.shape == (2, 32, 32, 32) and padded.dtype == np.uint8
    assert padded.sum() == grids.sum() and padded[:, 1:31, 1:31, 1:31].all()
    odd = pad_to(torch.ones(1, 31, 31, 31), 32)  # extra voxel at the high end
    assert isinstance(odd, torch.Tensor) and odd.shape == (1, 32, 32, 32)
    assert odd[0, :31, :31, :31].all() and not odd[0, 31].any()
    assert pad_to(grids, 30) is not None
    with pytest.raises(ValueError, match="smaller"):
        pad_to(grids, 16)
    for flat in (np.ones((4, 4, 5)), np.ones((4, 4))):
        with pytest.raises(ValueError, match=r"expected cubic grids \(\.\.\., R, R, R\)"):
            pad_to(flat, 8)
    for smaller in (np.ones((4, 4, 4)), torch.ones(1, 4, 4, 4)):  # torch would crop
        with pytest.raises(ValueError, match="smaller size 3"):
            pad_to(smaller, 3)


# --------------------------------------------------------------------------------------------
# Renders
# --------------------------------------------------------------------------------------------


def test_render_writes_a_picture(tmp_path: Path) -> None:
    cube = np.zeros((16, 16, 16), np.uint8)
    cube[4:12, 4:12, 4:12] = 1
    small = np.zeros((4, 4, 4))
    small[1:3, 1:3, 1:3] = 1
    path = render_voxels([cube, torch.from_numpy(small)[None], np.zeros((8, 8, 8))],
                         tmp_path / "r.png", views=((-60, 25), (30, 10)), size=64,
                         titles=["cube", "small", "empty"])
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] == 3 * (2 * 64 + 4) - 4
    assert (image < 250).any(axis=-1).mean() > 0.02           # not blank
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # shaded, not flat
    # The picture itself, as written, and writable (TensorBoard takes it through torch).
    sheet = voxel_sheet([cube, torch.from_numpy(small)[None], np.zeros((8, 8, 8))],
                        views=((-60, 25), (30, 10)), size=64, titles=["cube", "small", "empty"])
    assert np.array_equal(sheet, image) and sheet.flags.writeable
    batch = torch.from_numpy(np.stack([cube, cube]))[:, None].float()  # (N, 1, D, H, W)
    render_voxels(batch, tmp_path / "b.png", size=32)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match=r"\.png"):
        render_voxels(cube, tmp_path / "r.jpg")
    with pytest.raises(ValueError, match="views"):
        render_voxels(cube, tmp_path / "v.png", views=((0, 120),))
    with pytest.raises(ValueError, match="titles"):
        render_voxels(cube, tmp_path / "t.png", titles=["a", "b"])


def test_render_up_axis_is_up() -> None:
    post = np.zeros((16, 16, 16))
    post[7:9, 7:9, 1:15] = 1  # tall along axis 2
    image = render_views(post, views=((0, 0), (90, 0)), size=64)
    assert image.shape == (2, 64, 64, 3) and image.dtype == np.uint8
    for view in image:
        rows, cols = np.nonzero((view < 250).any(axis=-1))
        assert np.ptp(rows) > 4 * np.ptp(cols)  # tall on screen
    assert (render_views(np.zeros((8, 8, 8)), size=16) == 255).all()


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.shared_data("voxel/meshes")
def test_real_meshes_voxelize_solid(shared_data: Path) -> None:
    for name in ("chair_0002.off", "dresser_0003.off", "monitor_0466.off"):
        vertices, faces = load_mesh(shared_data / "voxel" / "meshes" / name)
        grid = voxelize(vertices, faces, 64)
        assert grid.shape == (64, 64, 64) and grid.any()
        assert interior(grid).sum() > 100, name  # solid, not a shell
        extent = np.ptp(np.argwhere(grid), axis=0) + 1
        assert extent.max() == 62, name  # margin 1
    assert interior(grid).sum() / grid.sum() > 0.3


@pytest.mark.shared_data("voxel/chairs_30_mat")
def test_real_chairs_mat(shared_data: Path) -> None:
    files = sorted((shared_data / "voxel" / "chairs_30_mat").glob("*.mat"))[:2]
    assert len(files) == 2
    grids = [load_voxels(file) for file in files]
    for grid in grids:
        assert grid.shape == (30, 30, 30) and grid.dtype == np.uint8
        assert 0 < grid.mean() < 0.5 and set(np.unique(grid)) == {0, 1}
        # 3D ShapeNets keeps 3 empty voxels on each side (24^3 objects in 30^3).
        assert not grid[:3].any() and not grid[-3:].any()
    assert (grids[0] != grids[1]).any()


@pytest.mark.shared_data("voxel/chairs_30_mat", "voxel/modelnet10_30_train.npz")
def test_real_mat_chairs_lie_as_their_modelnet_twins(shared_data: Path) -> None:
    """3D ShapeNets stores [y, x, z]: read, the k-th shared .mat chair overlaps the k-th chair
    of ModelNet10's .npz (the same training chairs in the same order), and its mirror image
    across x = y (the grid as stored) does not."""
    voxel_data = shared_data / "voxel"
    data = np.load(voxel_data / "modelnet10_30_train.npz")
    chairs = data["X"][data["y"] == 2].astype(bool)
    files = sorted((voxel_data / "chairs_30_mat").glob("*.mat"))[:6]
    for k, file in enumerate(files):
        grid = load_voxels(file).astype(bool)
        read = (grid & chairs[k]).sum() / (grid | chairs[k]).sum()
        stored = grid.swapaxes(0, 1)
        as_stored = (stored & chairs[k]).sum() / (stored | chairs[k]).sum()
        assert read > 0.5 and read > as_stored + 0.2, (file.name, read, as_stored)


@pytest.mark.shared_data("voxel/meshes", "voxel/modelnet10_30_train.npz")
def test_real_meshes_match_3d_shapenets_grids(shared_data: Path) -> None:
    # The same ModelNet10 training meshes as voxelized by 3D ShapeNets (24^3 in 30^3).
    voxel_data = shared_data / "voxel"
    data = np.load(voxel_data / "modelnet10_30_train.npz")
    X, y = data["X"], data["y"]
    for name, label, index in (("chair_0004.off", 2, 3), ("desk_0006.off", 3, 5),
                               ("dresser_0003.off", 4, 2)):
        grid = voxelize(*load_mesh(voxel_data / "meshes" / name), 30, margin=3)
        reference = X[y == label][index].astype(bool)
        iou = (grid & reference).sum() / (grid | reference).sum()
        assert iou > 0.9, (name, iou)


def test_occupancy_below_zero_is_refused(tmp_path) -> None:
    grid = np.full((4, 4, 4), 0.5, dtype=np.float32)
    grid[1, 2, 3] = -0.25
    np.save(tmp_path / "g.npy", grid)
    with pytest.raises(ValueError, match=r"g\.npy: expected occupancy in \[0, 1\]"):
        load_voxels(tmp_path / "g.npy", binary=False)


def test_a_binvox_file_with_an_odd_byte_count_is_named_as_truncated(tmp_path: Path) -> None:
    """binvox data are (value, count) byte pairs: a file with a stray last byte is refused as
    truncated or corrupt, naming the odd byte count, even where its counts add up."""
    path = save_voxels(np.ones((2, 2, 2), np.uint8), tmp_path / "cube.binvox")
    path.write_bytes(path.read_bytes() + b"\x01")
    with pytest.raises(ValueError, match="odd number of run-length bytes"):
        load_voxels(path)


@pytest.mark.parametrize("dims", ["0 0 0", "-2 -2 -2"])
def test_a_binvox_header_with_sides_below_one_is_refused(tmp_path: Path, dims: str) -> None:
    """A binvox 'dim' line must give three sides >= 1: zero or negative sides are named as a
    bad 'dim' line, not reported as an empty grid or a run-length mismatch."""
    path = tmp_path / "bad.binvox"
    path.write_bytes(f"#binvox 1\ndim {dims}\ntranslate 0 0 0\nscale 1\ndata\n".encode())
    with pytest.raises(ValueError, match="bad binvox 'dim' line"):
        load_voxels(path)


def test_save_voxels_names_the_range_of_negative_integer_grids(tmp_path: Path) -> None:
    """An integer grid holding -1 is refused with the integer range it spans, like one holding
    2 (both are outside {0, 1})."""
    grid = np.zeros((2, 2, 2), np.int64)
    grid[0, 0, 0] = -1
    grid[1, 1, 1] = 1
    with pytest.raises(ValueError, match=r"got integer values in \[-1, 1\]"):
        save_voxels(grid, tmp_path / "g.npy")
    assert not (tmp_path / "g.npy").exists()


def test_a_face_index_equal_to_the_vertex_count_is_out_of_range(tmp_path: Path) -> None:
    """Face indices are 0 .. V - 1: an index equal to the number of vertices is refused."""
    path = tmp_path / "past.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n")
    with pytest.raises(ValueError, match="face indices out of range"):
        load_mesh(path)


def test_voxelize_refuses_a_margin_of_half_the_resolution() -> None:
    """margin voxels on each side must leave some inside: 2 * margin == resolution is refused
    with that reason."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match="leaves no voxels inside a grid of 4"):
        voxelize(vertices, faces, 4, margin=2)


def test_a_voxel_flag_other_than_true_or_false_is_refused_by_its_name(tmp_path: Path) -> None:
    """normalize="no" voxelized the mesh normalized, and binary="no" read occupancy as binary
    (a string is true): the caller asked for the other without a word."""
    with pytest.raises(ValueError, match="normalize must be True or False, got 'no'"):
        voxelize(CUBE_VERTICES - 0.5, cube_triangles(), 4, normalize="no")
    path = save_voxels(random_grids(4, 4, 4), tmp_path / "g.npy")
    with pytest.raises(ValueError, match="binary must be True or False, got 'no'"):
        load_voxels(path, binary="no")
    with pytest.raises(ValueError, match="binary must be True or False, got None"):
        check_grids(random_grids(4, 4, 4), binary=None)


def test_a_batch_of_grids_is_not_taken_for_one_grid_with_a_channel() -> None:
    """mesh_from_voxels accepts (D, H, W) or (1, D, H, W); a batch of two grids is refused, not
    meshed from its first grid."""
    with pytest.raises(ValueError, match="expected a voxel grid"):
        mesh_from_voxels(np.ones((2, 3, 3, 3)))


def test_a_grid_whose_maximum_equals_the_level_has_no_surface() -> None:
    """No voxel exceeds the level when the grid's maximum equals it: mesh_from_voxels returns
    empty arrays (marching cubes would fail to find a surface), of the documented dtypes."""
    vertices, faces = mesh_from_voxels(np.full((3, 3, 3), 0.5), level=0.5)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64


def test_the_surface_of_one_voxel_is_an_octahedron_around_its_centre() -> None:
    """The 0.5 iso-surface of a lone voxel (centre 0) crosses each axis half a voxel out."""
    vertices, faces = mesh_from_voxels(np.ones((1, 1, 1), bool))
    assert vertices.dtype == np.float64 and faces.dtype == np.int64 and faces.shape == (8, 3)
    expected = np.concatenate([np.eye(3) * 0.5, np.eye(3) * -0.5])
    np.testing.assert_array_equal(np.unique(vertices, axis=0), np.unique(expected, axis=0))


def test_render_refuses_a_tiny_panel() -> None:
    # A panel side under 8 pixels is refused by name.
    with pytest.raises(ValueError, match="size"):
        render_views(np.ones((4, 4, 4)), size=4)


def test_render_hit_mask_of_a_centred_cube_is_symmetric() -> None:
    # Pixel centres are symmetric about the view centre: a centred cube renders symmetric.
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    hit = (render_views(cube, views=((0, 0),), size=16)[0] < 250).any(axis=-1)
    assert np.array_equal(hit, hit[:, ::-1]) and np.array_equal(hit, hit[::-1])


def test_render_upper_half_of_a_grid_shows_in_the_upper_half_of_the_picture() -> None:
    # Axis 2 points up on screen: a block high in the grid is drawn in the top rows.
    grid = np.zeros((16, 16, 16))
    grid[6:10, 6:10, 9:15] = 1
    rows, _ = np.nonzero((render_views(grid, views=((0, 0),), size=32)[0] < 250).any(axis=-1))
    assert rows.max() < 16


def test_render_sheet_is_sized_to_its_shapes(tmp_path: Path) -> None:
    # No empty columns for a single shape; a partial last row still gets its own row.
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    with Image.open(render_voxels(cube, tmp_path / "one.png", size=16, columns=4)) as one:
        assert one.size == (16, 16)
    with Image.open(render_voxels([cube] * 5, tmp_path / "five.png", size=16, columns=2)) as five:
        assert five.size == (2 * 16 + 4, 3 * 16 + 2 * 4)


def test_render_from_straight_above_and_below() -> None:
    # Elevations of exactly +90 and -90 degrees (top and bottom views) are valid views.
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    images = render_views(cube, views=((0, 90), (0, -90)), size=16)
    assert (images < 250).any(axis=-1).any(axis=(1, 2)).all()


def test_render_views_refuses_a_view_past_the_pole_or_no_view() -> None:
    # render_views itself checks its views, not only voxel_sheet (the library's entry points).
    for views in (((0, 120),), ()):
        with pytest.raises(ValueError, match="elevation"):
            render_views(np.ones((4, 4, 4)), views=views, size=8)


def test_bfloat16_grids_mesh_and_render_as_their_float32_values() -> None:
    """A bfloat16 grid (a model run in bfloat16) is a float grid like any other: numpy has no
    bfloat16, and the grids' own conversion failed ("Got unsupported ScalarType BFloat16")."""
    cube = torch.zeros(8, 8, 8)
    cube[2:6, 2:6, 2:6] = 1
    half = cube.to(torch.bfloat16)
    for got, want in zip(mesh_from_voxels(half), mesh_from_voxels(cube)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(voxel_sheet(half, size=16), voxel_sheet(cube, size=16))


def test_render_takes_an_upper_case_png_suffix(tmp_path: Path) -> None:
    path = render_voxels(np.ones((4, 4, 4)), tmp_path / "shape.PNG", size=8)
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_render_from_above_shows_the_near_side_low() -> None:
    """A camera above looks down: of two blocks at one height, the one nearer the camera is
    drawn lower in the picture (seen from below it would be drawn higher)."""
    def mean_row(x: slice) -> float:
        grid = np.zeros((16, 16, 16))
        grid[x, 6:10, 6:10] = 1
        rows, _ = np.nonzero((render_views(grid, views=((0, 40),), size=32)[0] < 250).any(-1))
        return rows.mean()

    near, far = mean_row(slice(11, 15)), mean_row(slice(1, 5))  # azimuth 0: camera on +x
    assert near > far + 4


def test_render_a_full_grid_fits_inside_its_panel() -> None:
    # The whole grid's box fits every view with a white border: no edge of the picture is hit.
    for view in ((-60.0, 25.0), (45.0, 35.0), (0.0, 0.0), (10.0, 90.0)):
        for grid in (np.ones((8, 8, 8)), np.ones((4, 6, 8))):
            hit = (render_views(grid, views=(view,), size=32)[0] < 250).any(-1)
            assert hit.any() and not (hit[0].any() or hit[-1].any() or hit[:, 0].any()
                                      or hit[:, -1].any()), (view, grid.shape)


def test_render_does_not_depend_on_the_triangles_winding(monkeypatch) -> None:
    """Faces wound either way are lit alike (each normal is turned to the camera): marching
    cubes' winding is not guaranteed."""
    grid = np.zeros((8, 8, 8))
    grid[2:6, 2:6, 1:7] = 1
    outward = render_views(grid, size=32)

    def inward(grid: object, level: float) -> tuple[np.ndarray, np.ndarray]:
        vertices, faces = mesh_from_voxels(grid, level=level)
        return vertices, faces[:, ::-1]

    monkeypatch.setattr("stgconv.io.render.mesh_from_voxels", inward)
    assert np.array_equal(render_views(grid, size=32), outward)


def test_render_sheet_puts_fewer_shapes_a_row_when_the_views_are_many() -> None:
    # Default columns: up to 4 shapes a row, at most 8 panels: with 3 views, 2 shapes a row.
    sheet = voxel_sheet([np.zeros((4, 4, 4))] * 4, views=((0, 0), (90, 0), (180, 0)), size=8)
    assert sheet.shape[:2] == (2 * 8 + 4, 2 * (3 * 8 + 4) - 4)
    sheet = voxel_sheet([np.zeros((4, 4, 4))] * 5, size=8)  # one view: 4 shapes a row
    assert sheet.shape[:2] == (2 * (8 + 4) - 4, 4 * (8 + 4) - 4)


@pytest.mark.parametrize("views", [((-60, 25),), ((0, 0), (90, 0))])
def test_render_sheet_frames_each_shape(views) -> None:
    # An empty grid renders white on white: its grey frame, round all its views, shows where
    # it is.
    sheet = voxel_sheet(np.zeros((8, 8, 8)), views=views, size=16)
    for edge in (sheet[0], sheet[-1], sheet[:, 0], sheet[:, -1]):
        assert (edge == 200).all()
    assert (sheet[1:-1, 1:-1] == 255).all()


def test_render_sheet_cuts_a_long_title_at_its_shapes_cell() -> None:
    sheet = voxel_sheet([np.zeros((4, 4, 4))] * 2, size=64, titles=["x" * 40, ""])
    assert (sheet[:14, 64 + 4:] == 255).all()  # the second shape's title band stays blank


@pytest.mark.parametrize("grids", [[], np.zeros((0, 8, 8, 8))], ids=["list", "batch"])
def test_render_sheet_refuses_no_shapes(grids) -> None:
    with pytest.raises(ValueError, match="N >= 1|non-empty"):
        voxel_sheet(grids)


@pytest.mark.parametrize("view", [(float("nan"), 0.0), (float("inf"), 10.0)])
def test_render_refuses_a_view_that_is_not_a_finite_angle(view) -> None:
    with pytest.raises(ValueError, match="views"):
        render_views(np.ones((4, 4, 4)), views=(view,), size=8)


@pytest.mark.parametrize("grids", [[np.zeros((2, 4, 4, 4))], np.zeros((1, 2, 4, 4, 4))],
                         ids=["batch in a list", "two channels"])
def test_render_sheet_refuses_grids_of_several_channels(grids) -> None:
    # Not drawn as their first grid or channel without a word.
    with pytest.raises(ValueError, match="expected"):
        voxel_sheet(grids, size=8)


def test_render_views_of_a_grid_with_its_channel_axis_are_the_grids() -> None:
    grid = np.zeros((4, 6, 8))
    grid[1:3, 1:5, 2:7] = 1
    np.testing.assert_array_equal(render_views(grid[None], size=16), render_views(grid, size=16))


def test_render_rays_start_outside_the_whole_grid() -> None:
    """A block at the side of the grid nearest the camera is drawn, in a long grid too (the
    grid's longest side sets the scale), and so is one in the corner a diagonal view faces,
    sqrt(3) / 2 of the scale from the centre along the view."""
    cube, post, corner = np.zeros((16, 16, 16)), np.zeros((2, 2, 16)), np.zeros((16, 16, 16))
    cube[13:, 6:10, 6:10] = 1  # azimuth 0: the camera on +x
    post[:, :, 13:] = 1  # seen from straight above
    corner[13:, 13:, 13:] = 1  # all of it over half the scale along the view from (45, 35)
    for grid, view in ((cube, (0.0, 0.0)), (post, (0.0, 90.0)), (corner, (45.0, 35.0))):
        assert (render_views(grid, views=(view,), size=16)[0] < 250).any(), grid.shape


def test_render_lights_a_shape_from_the_upper_left() -> None:
    # Of a cube's two side faces seen corner-on, the one on the left is the brighter.
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    image = render_views(cube, views=((45.0, 0.0),), size=32)[0].astype(float)
    hit = (image < 250).any(-1)
    left, right = (image[:, half][hit[:, half]].mean() for half in (np.s_[:16], np.s_[16:]))
    assert left > right + 20


def test_render_shades_a_face_seen_head_on_by_its_lights() -> None:
    """A face turned to the camera: headlight 0.3 + 0.3, key light 0.55 * cos 54.3 degrees
    (the key at the camera's upper left, 1.2 up and 0.7 left), times the albedo
    (0.62, 0.74, 0.92), to the nearest level: (145.7, 173.8, 216.1)."""
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    image = render_views(cube, views=((0.0, 0.0),), size=32)[0]
    assert tuple(image[16, 16]) == (146, 174, 216)


def test_render_lights_every_visible_face_at_least_by_the_headlight() -> None:
    """The key light only adds: a face turned from it (a cube's bottom seen from a little
    below) is as bright as the headlight alone makes it (0.3 of the red albedo 0.62), not
    darker."""
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    for view in ((0.0, -10.0), (-60.0, 25.0)):
        image = render_views(cube, views=(view,), size=32)[0]
        hit = (image < 250).any(-1)
        assert image[..., 0][hit].min() >= round(0.3 * 0.62 * 255), view


def test_render_sheet_lays_shapes_out_row_by_row_below_their_titles() -> None:
    empty, full = np.zeros((4, 4, 4)), np.ones((4, 4, 4))
    sheet = voxel_sheet([empty, full, empty], size=16, columns=2, titles=["", "", ""])
    cell = 14 + 16 + 4  # title, panel, gap
    assert sheet.shape[:2] == (2 * cell - 4, 2 * (16 + 4) - 4)
    drawn = (sheet < 200).any(-1)  # shaded pixels; frames are grey 200
    assert drawn[14:30, 20:].any() and drawn.sum() == drawn[14:30, 20:].sum()


def test_render_sheet_titles_a_shape_across_all_its_views() -> None:
    # A shape's cell holds its views side by side: its title may run across all of them.
    sheet = voxel_sheet(np.zeros((4, 4, 4)), views=((0, 0), (90, 0)), size=64, titles=["x" * 40])
    assert (sheet[:14, 80:128] < 255).any()


def test_normalize_mesh_turns_the_up_axis_last_and_centres_the_box() -> None:
    """A rotation (cyclic axes: y-up x, y, z becomes z, x, y), never a mirror; the bounding
    box, not the vertices' mean, is centred; the longest side spans 1 - 2 * margin."""
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0],
                       [0.0, 0.0, 4.0]])
    out = normalize_mesh(points, up_axis=1, margin=0.1)
    np.testing.assert_allclose(out, (points[:, [2, 0, 1]] - [2.0, 0.5, 1.0]) * 0.2)


def test_a_cup_open_at_the_top_stays_hollow() -> None:
    # A box without its lid (not closed): its inside sees the outside along +z, so it is not
    # carved full; only a voxel walled in along all three axes is.
    quads = [q for q in CUBE_QUADS if not all(CUBE_VERTICES[i][2] == 1 for i in q)]
    faces = np.array([(q[0], q[k], q[k + 1]) for q in quads for k in (1, 2)])
    grid = voxelize(CUBE_VERTICES, faces, 10)  # the box spans voxels 1 to 8
    assert grid[1:9, 1:9, 1].all() and grid[1, 1:9, 1:9].all()  # its bottom and a wall
    assert not grid[2:8, 2:8, 2:9].any()


def test_a_box_with_a_triangle_missing_is_carved_where_it_is_walled_in() -> None:
    """Its edges round the hole have one triangle each, so it is open: the voxels under the
    other half of that face (surface on all six sides) are filled, the wedge that sees out
    through the hole is not. Taken for closed, the whole box stayed hollow."""
    grid = voxelize(CUBE_VERTICES, cube_triangles()[1:], 10)  # the x = 0 face's y < z half gone
    assert grid[2:8, 7, 2].all() and not grid[2:8, 2, 7].any()


def test_a_cube_filling_the_grid_without_normalizing_fills_every_voxel() -> None:
    # Its top face lies on z = 0.5, the grid's upper bound, which open3d puts at index R.
    assert voxelize(CUBE_VERTICES - 0.5, cube_triangles(), 4, normalize=False).all()


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_a_mesh_written_to_a_full_disk_is_a_write_error_naming_the_file(small_disk: Path,
                                                                         suffix: str) -> None:
    """open3d's .ply writer answered only False: "open3d could not write", no reason, taken for
    bad input (exit 2). Now the system's error, naming the file (the CLI's exit 1)."""
    fill(small_disk / "filler", leaving=0)
    path = small_disk / f"shape{suffix}"
    with pytest.raises(WriteError, match=rf"^\[Errno 28\] No space left on device: '{path}'$"):
        save_mesh_from_voxels(np.ones((3, 3, 3)), path)
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def write_ply(path: Path, vertices, polygons) -> Path:
    """An ASCII PLY of ``vertices`` and ``polygons`` (lists of corners)."""
    path.write_text(f"ply\nformat ascii 1.0\nelement vertex {len(vertices)}\nproperty float x\n"
                    f"property float y\nproperty float z\nelement face {len(polygons)}\n"
                    "property list uchar int vertex_indices\nend_header\n"
                    + "".join(f"{x} {y} {z}\n" for x, y, z in vertices)
                    + "".join(f"{len(p)} {' '.join(map(str, p))}\n" for p in polygons))
    return path


def test_a_truncated_ply_is_refused(tmp_path: Path) -> None:
    """open3d's legacy reader returns what it read before the file ran out (8 of a cube's 12
    triangles here), voxelized without a word before."""
    path = write_ply(tmp_path / "cut.ply", CUBE_VERTICES, cube_triangles())
    path.write_text(path.read_text()[:-40])
    with pytest.raises(ValueError, match=r"cut\.ply: the PLY file is truncated or malformed"):
        load_mesh(path)


def test_a_binary_ply_list_longer_than_the_file_is_named_before_numpy_sees_it(
        tmp_path: Path) -> None:
    """A first face claiming 4e9 corners (a uint length) in a file of 12 bytes more: refused as
    the data ending inside a row, before numpy is asked for a row type of 4e9 values (its own
    error, "dimension does not fit into a C int", named no row)."""
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty double x\n"
              "property double y\nproperty double z\nelement face 1\n"
              "property list uint int vertex_indices\nend_header\n")
    path = tmp_path / "long_list.ply"
    path.write_bytes(header.encode() + np.eye(3).tobytes()
                     + np.array([4_000_000_000], "<u4").tobytes()
                     + np.array([0, 1, 2], "<i4").tobytes())
    with pytest.raises(ValueError, match=r"long_list\.ply: .*element 'face': the data ends "
                                         r"inside a row"):
        load_mesh(path)


def test_vertices_no_face_uses_do_not_move_the_shape() -> None:
    """Normalising by every vertex, one stray at x = 100 shrank a cube to 4 voxels at 16^3."""
    stray = np.vstack([CUBE_VERTICES, [[100.0, 0, 0]]])
    np.testing.assert_array_equal(voxelize(stray, cube_triangles(), 16),
                                  voxelize(CUBE_VERTICES, cube_triangles(), 16))


def l_prism() -> tuple[np.ndarray, list[list[int]]]:
    """A prism on an L: two concave hexagonal caps listed from a corner that does not see the
    whole L (a fan from it covers area outside), and six quads; area 2 * 3 + 8."""
    corners = [(2, 1), (1, 1), (1, 2), (0, 2), (0, 0), (2, 0)]
    n = len(corners)
    vertices = np.array([(x, y, 0) for x, y in corners] + [(x, y, 1) for x, y in corners], float)
    polygons = [list(range(n))[::-1], list(range(n, 2 * n))]
    polygons += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return vertices, polygons


@pytest.mark.parametrize("suffix", [".off", ".obj"])
def test_concave_polygons_keep_their_shape(tmp_path: Path, suffix: str) -> None:
    """Split as fans they covered area outside the L (15-16 instead of 14), and the same mesh
    read from a PLY (open3d clips ears) voxelized differently."""
    vertices, polygons = l_prism()
    if suffix == ".off":
        path = write_off(tmp_path / "l.off", vertices, polygons)
    else:
        path = tmp_path / "l.obj"
        path.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
                        + "".join(f"f {' '.join(str(i + 1) for i in p)}\n" for p in polygons))
    v, f = load_mesh(path)
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert area.sum() / 2 == pytest.approx(2 * 3 + 8)
    ply = write_ply(tmp_path / "l.ply", vertices, polygons)
    np.testing.assert_array_equal(voxelize(v, f, 24), voxelize(*load_mesh(ply), 24))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_concave_polygon_keeps_its_shape_across_every_axis(tmp_path: Path, axis: int,
                                                             reverse: bool) -> None:
    """An L (area 3) lying across each axis, its corners listed either way round: its triangles
    cover the L, all turned the way it is (a plane seen from the wrong side turns a polygon's
    reflex corner into a convex one)."""
    corners = [(2, 1), (1, 1), (1, 2), (0, 2), (0, 0), (2, 0)]  # counter-clockwise
    corners = corners[::-1] if reverse else corners
    vertices = np.zeros((6, 3))
    # (a, b) on the axes after ``axis`` in cyclic order: listed counter-clockwise, it faces +axis.
    vertices[:, [(axis + 1) % 3, (axis + 2) % 3]] = corners
    v, f = load_mesh(write_off(tmp_path / "l.off", vertices, [list(range(6))]))
    facing = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, axis] / 2
    facing = -facing if reverse else facing
    assert len(f) == 4 and (facing > 0).all()
    assert facing.sum() == pytest.approx(3)


def test_a_convex_polygon_with_a_straight_corner_is_fanned_from_its_first_corner(
        tmp_path: Path) -> None:
    """Going straight on at a corner is no turn the wrong way: the square stays convex."""
    vertices = np.array([(0, 0, 0), (2, 0, 0), (2, 1, 0), (2, 2, 0), (0, 2, 0)], float)
    path = write_off(tmp_path / "square.off", vertices, [list(range(5))])
    np.testing.assert_array_equal(load_mesh(path)[1], [[0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_a_concave_polygon_of_many_corners_is_clipped_quickly_and_exactly(tmp_path: Path) -> None:
    """A spiral arm of 1,000 corners, three turns: each ear search scanned the corners from the
    first, testing each against every corner, in Python (11 s for this spiral); its triangles,
    all turning the spiral's way, cover its area."""
    turn = np.linspace(0, 6 * np.pi, 500)
    outward = np.stack([(1 + turn) * np.cos(turn), (1 + turn) * np.sin(turn)], 1)
    inward = np.stack([(0.5 + turn) * np.cos(turn), (0.5 + turn) * np.sin(turn)], 1)[::-1]
    corners = np.concatenate([outward, inward])
    vertices = np.concatenate([corners, np.zeros((len(corners), 1))], 1)
    v, f = load_mesh(write_off(tmp_path / "spiral.off", vertices, [list(range(len(corners)))]))
    turns = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, 2] / 2
    x, y = v[:, 0], v[:, 1]
    area = (x @ np.roll(y, -1) - y @ np.roll(x, -1)) / 2  # the shoelace formula
    assert len(f) == len(corners) - 2 and (turns > 0).all()
    assert turns.sum() == pytest.approx(area)


def test_a_crossing_polygon_is_fanned_where_no_ear_is_left(tmp_path: Path) -> None:
    """Two concave hexagons clipped together: one crosses itself, and after two ears none is
    left, so its last four corners are fanned; the L beside it is clipped to the end."""
    crossing = [(1, 2), (0, 1), (1, 0), (0, 0), (2, 1), (2, 0)]
    l_cap = [(2, 1), (1, 1), (1, 2), (0, 2), (0, 0), (2, 0)]
    vertices = np.array([(x, y, 0) for x, y in crossing + l_cap], float)
    path = write_off(tmp_path / "two.off", vertices, [list(range(6)), list(range(6, 12))])
    np.testing.assert_array_equal(load_mesh(path)[1], [
        [5, 0, 1], [5, 1, 2], [2, 3, 4], [2, 4, 5],  # two ears, then a fan from corner 2
        [11, 6, 7], [7, 8, 9], [7, 9, 10], [7, 10, 11]])


@pytest.mark.parametrize("corners, triangles", [
    # Crossing: cutting corner 0 frees corner 3, whose triangle held 0 (on an edge).
    ([(1, 1), (0, 0), (1, 0), (0, 1), (1, 2)], [[4, 0, 1], [2, 3, 4], [1, 2, 4]]),
    # Crossing without an ear: fanned from the start, once.
    ([(3, 1), (4, 0), (0, 4), (4, 3), (4, 4)], [[0, 1, 2], [0, 2, 3], [0, 3, 4]]),
    # Corner 3 on the line from 4 to 0: on an edge of corner 0's triangle, no ear then.
    ([(0, 2), (3, 4), (1, 1), (2, 2), (4, 2)], [[0, 1, 2], [2, 3, 4], [0, 2, 4]]),
], ids=["freed", "no_ear", "on_an_edge"])
def test_concave_polygons_get_the_triangles_of_an_ear_search_one_at_a_time(
        tmp_path: Path, corners: list[tuple[int, int]], triangles: list[list[int]]) -> None:
    """The triangles of the earlier search (each cut found afresh from the first corner),
    where ears kept from cut to cut could go wrong; beside a convex pentagon, fanned."""
    pentagon = [(0, 0), (2, 0), (3, 1), (2, 3), (0, 2)]
    vertices = np.array([(x, y, 0) for x, y in pentagon + corners], float)
    path = write_off(tmp_path / "two.off", vertices, [list(range(5)), list(range(5, 10))])
    np.testing.assert_array_equal(load_mesh(path)[1], [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
                                  + (np.array(triangles) + 5).tolist())


def revolved(profile: list[tuple[float, float]], n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The closed surface swept by turning ``profile`` ((r, z) from the axis back to the axis)
    about the z axis in ``n`` steps."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rings = profile[1:-1]
    vertices = [(0, 0, profile[0][1])]
    vertices += [(r * np.cos(a), r * np.sin(a), z) for r, z in rings for a in angles]
    vertices.append((0, 0, profile[-1][1]))

    def at(ring: int, i: int) -> int:
        return 1 + ring * n + i % n

    faces = [(0, at(0, i + 1), at(0, i)) for i in range(n)]
    for k in range(len(rings) - 1):
        for i in range(n):
            faces += [(at(k, i), at(k, i + 1), at(k + 1, i + 1)),
                      (at(k, i), at(k + 1, i + 1), at(k + 1, i))]
    last = len(vertices) - 1
    faces += [(last, at(len(rings) - 1, i), at(len(rings) - 1, i + 1)) for i in range(n)]
    return np.array(vertices, float), np.array(faces)


@pytest.mark.parametrize("stored", ["shared", "per_triangle", "with_a_degenerate_triangle"])
def test_a_watertight_bottle_stays_hollow(stored: str) -> None:
    """A bottle with walls (every edge shared by two triangles), open at its neck: carving
    filled its cavity but for a column under the neck (6,996 voxels against 3,424). Closed
    too with each triangle's own copies of its corners (as STL stores them) or with a
    triangle of no area."""
    profile = [(0, 0), (1, 0), (1, 2), (0.3, 2.6), (0.3, 3.2), (0.2, 3.2), (0.2, 2.6),
               (0.9, 2.0), (0.9, 0.1), (0, 0.1)]  # outer wall up, round the lip, inner wall down
    vertices, faces = revolved(profile)
    if stored == "per_triangle":
        vertices, faces = vertices[faces].reshape(-1, 3), np.arange(faces.size).reshape(-1, 3)
    elif stored == "with_a_degenerate_triangle":
        faces = np.vstack([faces, [faces[0, 0], faces[0, 0], faces[0, 1]]])
    grid = voxelize(vertices, faces, 32, margin=1)
    assert not grid[9:13, 14:18, 14].any()  # inside, beside the neck's column, mid height
    assert grid.sum() < 4000


def test_a_mesh_of_triangles_of_no_area_only_is_carved_as_an_open_one() -> None:
    """Its triangles of no area dropped, no edge is left to make it closed: it is carved (a
    voxel with needles on all six sides is inside), not left as its shell."""
    corners = []
    for axis in range(3):
        for sign in (-1, 1):
            centre, half = np.zeros(3), np.zeros(3)
            centre[axis], half[(axis + 1) % 3] = 0.3 * sign, 0.1
            corners += [centre - half, centre + half, centre + half]  # a needle
    grid = voxelize(np.array(corners), np.arange(18).reshape(6, 3), 16, normalize=False)
    assert grid[8, 8, 8]


@pytest.mark.parametrize("name, data", [
    ("bom.off", "\ufeff" + "OFF\n8 6 0\n"
     + "".join(f"{x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
     + "".join(f"4 {' '.join(map(str, q))}\n" for q in CUBE_QUADS)),
    ("bom.obj", "\ufeff" + "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
     + "".join(f"f {' '.join(str(i + 1) for i in q)}\n" for q in CUBE_QUADS)),
    ("latin1.obj", "g St\xfchle\n" + "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
     + "".join(f"f {' '.join(str(i + 1) for i in q)}\n" for q in CUBE_QUADS)),
    # Windows PowerShell's '>' and Notepad's "Unicode" write UTF-16 with its byte order mark:
    # its zero bytes were refused as 'not a text file (binary meshes are not supported ...)'.
    ("utf16-le.obj", "\ufeff" + "".join(f"v {x:g} {y:g} {z:g}\r\n" for x, y, z in CUBE_VERTICES)
     + "".join(f"f {' '.join(str(i + 1) for i in q)}\r\n" for q in CUBE_QUADS)),
    ("utf16-be.off", "\ufeff" + "OFF\n8 6 0\n"
     + "".join(f"{x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
     + "".join(f"4 {' '.join(map(str, q))}\n" for q in CUBE_QUADS)),
])
def test_a_byte_order_mark_or_latin_1_text_reads(tmp_path: Path, name: str, data: str) -> None:
    """Windows editors start files with a UTF-8 byte order mark (the OFF header was refused, an
    OBJ lost its first vertex); a Latin-1 group name made the file 'not a text file'."""
    path = tmp_path / name
    encoding = {"latin1": "latin-1", "utf16-le": "utf-16-le", "utf16-be": "utf-16-be"}
    path.write_bytes(data.encode(encoding.get(name.split(".")[0], "utf-8")))
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_VERTICES)
    assert len(faces) == 12


def test_a_binary_off_is_refused_as_not_text(tmp_path: Path) -> None:
    path = tmp_path / "bin.off"
    path.write_bytes(b"OFF BINARY\n\x00\x00\x00\x08\x00\x00\x00\x06")
    with pytest.raises(ValueError, match=r"bin\.off: not a text file"):
        load_mesh(path)


def test_an_obj_negative_index_before_the_first_vertex_is_named_as_written(tmp_path) -> None:
    """'f -4 -2 -1' after 3 vertices counts back past the first: it was turned into -1 and
    refused as 'face indices ... span [-1, 2]', a number the file does not hold."""
    path = tmp_path / "back.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 -2 -1\nv 0 0 1\n")
    with pytest.raises(ValueError, match=r"back\.obj: face line 'f -4 -2 -1' counts back past "
                                         r"the first vertex: 3 vertices come before it"):
        load_mesh(path)


def test_obj_index_zero_is_refused_and_continued_lines_join(tmp_path: Path) -> None:
    """OBJ counts vertices from 1 (negative indices back from the last): 0 was read as the next
    vertex to come. A line ending in a backslash continues on the next (it was an int error)."""
    vertices = "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
    zero = tmp_path / "zero.obj"
    zero.write_text(vertices[:24] + "f 0 1 2\n" + vertices[24:])
    with pytest.raises(ValueError, match=r"zero\.obj.*uses index 0"):
        load_mesh(zero)
    continued = tmp_path / "continued.obj"
    continued.write_text(vertices + "".join(f"f {q[0] + 1} {q[1] + 1} \\\n  {q[2] + 1} {q[3] + 1}\n"
                                            for q in CUBE_QUADS))
    assert len(load_mesh(continued)[1]) == 12
    # No space before the backslash: the next line's values are still values of their own.
    glued = tmp_path / "glued.obj"
    glued.write_text(vertices + "f 1 2\\\n4\n")
    assert load_mesh(glued)[1].tolist() == [[0, 1, 3]]
    # A backslash on the file's last line continues into nothing: the face is kept.
    last = tmp_path / "last.obj"
    last.write_text(vertices + "f 1 2 4 \\\n")
    assert load_mesh(last)[1].tolist() == [[0, 1, 3]]


def test_geometry_above_the_cube_is_cut_off_without_normalizing() -> None:
    """Beyond the upper face open3d lists voxel index R, which was put on the last layer (a
    plate at z = 0.55 drew 64 voxels there); below the lower face it was cut off."""
    plate = np.array([[-0.4, -0.4, 0.55], [0.4, -0.4, 0.55], [0.4, 0.4, 0.55], [-0.4, 0.4, 0.55]])
    vertices = np.vstack([CUBE_VERTICES * 0.25 - 0.125, plate])
    faces = np.vstack([cube_triangles(), [[8, 9, 10], [8, 10, 11]]])
    assert not voxelize(vertices, faces, 8, normalize=False)[:, :, 7].any()


def test_geometry_below_the_cube_is_cut_off_without_normalizing() -> None:
    """Below the lower face open3d lists voxel index -1, which numpy would put on the top
    layer: a plate at z = -0.55 must draw nothing there."""
    plate = np.array([[-0.4, -0.4, -0.55], [0.4, -0.4, -0.55], [0.4, 0.4, -0.55],
                      [-0.4, 0.4, -0.55]])
    vertices = np.vstack([CUBE_VERTICES * 0.3 - 0.15, plate])
    faces = np.vstack([cube_triangles(), [[8, 9, 10], [8, 10, 11]]])
    grid = voxelize(vertices, faces, 8, normalize=False)
    expected = np.zeros((8, 8, 8), bool)
    expected[2:6, 2:6, 2:6] = True  # the small cube, voxel coordinates 2.8 to 5.2
    np.testing.assert_array_equal(grid, expected)


def test_the_longest_side_spans_the_grid_less_its_margins_and_the_others_keep_its_scale() -> None:
    """A 12 x 6.1 x 6.1 box at 16^3 with margin 2: 12 voxels long, 2 empty on each side, and
    6.1 voxels across, centred (voxel coordinates 4.95 to 11.05): 8 voxels."""
    grid = voxelize(CUBE_VERTICES * [12, 6.1, 6.1], cube_triangles(), 16, margin=2)
    expected = np.zeros((16, 16, 16), bool)
    expected[2:14, 4:12, 4:12] = True
    np.testing.assert_array_equal(grid, expected)


def test_binvox_version_2_part_numbers_are_occupied_voxels(tmp_path: Path) -> None:
    """binvox_merge writes '#binvox 2', each set voxel holding its part's number (1-255): such
    files were refused as not binary."""
    grid = random_grids(4, 4, 4, seed=3)
    data = save_voxels(grid, tmp_path / "one.binvox").read_bytes()
    header, runs = data.split(b"data\n", 1)
    parts = np.frombuffer(runs, np.uint8).copy()
    parts[::2] *= 7  # set runs now hold part 7
    (tmp_path / "two.binvox").write_bytes(header.replace(b"#binvox 1", b"#binvox 2") + b"data\n"
                                          + parts.tobytes())
    np.testing.assert_array_equal(load_voxels(tmp_path / "two.binvox"), grid)
    (tmp_path / "three.binvox").write_bytes(data.replace(b"#binvox 1", b"#binvox 3"))
    with pytest.raises(ValueError, match=r"three.binvox: binvox version b'#binvox 3' is not 1"):
        load_voxels(tmp_path / "three.binvox")


def test_binvox_runs_as_long_as_a_count_byte_holds_write_no_empty_run(tmp_path: Path) -> None:
    """A run of exactly 255 voxels is one (value, 255) pair: no (value, 0) pair after it,
    which other binvox readers take for a broken file."""
    flat = np.zeros(512, np.uint8)  # binvox order: x slowest, then z, then y
    flat[255:] = 1
    grid = flat.reshape(8, 8, 8).transpose(0, 2, 1)  # back to [x, y, z]
    path = save_voxels(grid, tmp_path / "g.binvox")
    data = path.read_bytes().split(b"data\n", 1)[1]
    values, counts = np.frombuffer(data, np.uint8)[::2], np.frombuffer(data, np.uint8)[1::2]
    assert counts.min() >= 1 and values.tolist() == [0, 1, 1] and counts.tolist() == [255, 255, 2]
    np.testing.assert_array_equal(load_voxels(path), grid)


def test_check_grids_refuses_grids_that_are_not_cubic_or_hold_channels() -> None:
    for shape in ((2, 3, 3), (1, 2, 3, 3)):  # the first grid axis differs
        with pytest.raises(ValueError, match="expected cubic grids"):
            check_grids(np.zeros(shape))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 3, 3, 3\)"):  # 2 channels, not 1
        check_grids(np.zeros((2, 2, 3, 3, 3)))


def test_check_grids_names_a_non_binary_value_and_returns_float32_occupancy() -> None:
    """The example in the message is a value that is not 0 or 1 (the first voxel is 0 here),
    complex values are no occupancy, and occupancy comes back as float32 whatever it was."""
    grid = np.zeros((3, 3, 3), np.int64)
    grid[1, 2, 0] = 3
    with pytest.raises(ValueError, match=r"found 1 other values \(e\.g\. 3\)"):
        check_grids(grid)
    with pytest.raises(ValueError, match="expected numeric voxel values, got dtype complex128"):
        check_grids(np.ones((2, 2, 2), complex))
    occupancy = check_grids(np.full((2, 2, 2), 0.25), binary=False)
    assert occupancy.dtype == np.float32
    np.testing.assert_array_equal(occupancy, 0.25)


def test_bool_grids_read_as_binary_uint8_or_as_float32_occupancy(tmp_path: Path) -> None:
    """A bool file read as occupancy (binary=False) came back uint8, not the documented
    float32."""
    grid = random_grids(4, 4, 4).astype(bool)
    np.save(tmp_path / "bool.npy", grid)
    for binary, dtype in ((True, np.uint8), (False, np.float32)):
        read = load_voxels(tmp_path / "bool.npy", binary=binary)
        assert read.dtype == dtype
        np.testing.assert_array_equal(read, grid)


def test_an_upper_case_voxel_suffix_reads_back_what_was_written(tmp_path: Path) -> None:
    grid = random_grids(4, 4, 4)
    path = save_voxels(grid, tmp_path / "g.NPY")
    np.testing.assert_array_equal(load_voxels(path), grid)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".mat"])
def test_grids_saved_under_a_key_are_read_back_under_it(tmp_path: Path, suffix: str) -> None:
    grid = random_grids(4, 4, 4)
    path = save_voxels(grid, tmp_path / f"k{suffix}", key="grids")
    np.testing.assert_array_equal(load_voxels(path, key="grids"), grid)


@pytest.mark.parametrize(("suffix", "key"), [(".h5", ""), (".h5", "train/"), (".h5", "/"),
                                             (".hdf5", "a/./b"), (".npz", ""), (".npz", 5)])
def test_a_key_naming_no_array_is_refused_naming_the_file(tmp_path: Path, suffix, key) -> None:
    """h5py's own words named neither file nor key ('expected bytes, str found', 'name already
    exists' for "/"), and numpy's ('keywords must be strings') neither."""
    path = tmp_path / f"g{suffix}"
    with pytest.raises(ValueError, match=rf"g\{suffix}: key {re.escape(repr(key))} names no"):
        save_voxels(random_grids(4, 4, 4), path, key=key)
    assert not path.exists()


@pytest.mark.parametrize("key", ["_grids", "1grid", "my grid", "chair-1", "g" * 64])
def test_a_mat_key_matlab_takes_for_no_variable_is_refused(tmp_path: Path, key: str) -> None:
    """scipy's savemat skips a name starting with '_' (a warning only) and writes the others
    MATLAB cannot load by name: save_voxels reported a .mat written that held no grids."""
    with pytest.raises(ValueError, match=rf"key {re.escape(repr(key))} .*MATLAB variable name"):
        save_voxels(random_grids(4, 4, 4), tmp_path / "g.mat", key=key)
    assert not (tmp_path / "g.mat").exists()
    path = save_voxels(random_grids(4, 4, 4), tmp_path / "g.mat", key="g" * 63)
    assert list(read_mat(path)) == ["g" * 63]


@pytest.mark.parametrize(("header", "runs", "message"), [
    (b"#voxels 1\ndim 2 2 2\ndata\n", [1, 8], r"bad\.binvox is not a binvox file"),
    (b"#binvox 1\ndim 2 2 2\n", [1, 8], r"bad\.binvox is truncated: the binvox header has no "
                                        r"'data' line"),
    (b"#binvox 1\ndim two 2 2\ndata\n", [1, 8], r"bad\.binvox: bad binvox 'dim' line"),
    (b"#binvox 1\ndim 2 2\ndata\n", [1, 4], r"bad\.binvox: bad binvox 'dim' line"),
    (b"#binvox 1\ntranslate 0 0 0\ndata\n", [1, 8], r"bad\.binvox: the binvox header has no "
                                                    r"'dim' line"),
    (b"#binvox 1\ndim 2 2 3\ndata\n", [1, 12], r"bad\.binvox: expected cubic grids \(R, R, R\), "
                                               r"the binvox header says \(2, 2, 3\)"),
])
def test_a_binvox_header_that_is_wrong_is_named(tmp_path: Path, header: bytes, runs: list,
                                                message: str) -> None:
    path = tmp_path / "bad.binvox"
    path.write_bytes(header + bytes(runs))
    with pytest.raises(ValueError, match=message):
        load_voxels(path)


@pytest.mark.parametrize("size", [32.0, True])
def test_pad_to_takes_an_int_size_only(size: object) -> None:
    with pytest.raises(ValueError, match=rf"size must be an int >= 1, got {size!r}"):
        pad_to(np.ones((4, 4, 4)), size)


def test_to_tensor_gives_float32_grids_with_a_channel_axis() -> None:
    for shape, expected in (((2, 2, 2), (1, 2, 2, 2)), ((3, 2, 2, 2), (3, 1, 2, 2, 2))):
        tensor = to_tensor(np.ones(shape, np.uint8))
        assert tensor.dtype == torch.float32 and tensor.shape == expected
    # A view with negative strides (a flipped grid), which torch cannot take as it is.
    flipped = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)[::-1]
    np.testing.assert_array_equal(to_tensor(flipped)[0].numpy(), [[[4, 5], [6, 7]],
                                                                   [[0, 1], [2, 3]]])


def test_pad_to_puts_the_odd_voxel_at_the_high_end_for_numpy_as_for_torch() -> None:
    grids = np.ones((1, 3, 3, 3), np.uint8)
    padded = pad_to(grids, 6)
    assert padded.shape == (1, 6, 6, 6) and padded.sum() == 27
    assert padded[0, 1:4, 1:4, 1:4].all()
    np.testing.assert_array_equal(padded, pad_to(torch.from_numpy(grids), 6).numpy())


def test_to_tensor_names_arrays_that_are_not_grids_and_marching_cubes_a_nan_level() -> None:
    """A 2-D array became (2, 1, 2) and a 5-D one 6-D, silently; a NaN level gave an empty
    surface (no voxel "exceeds" NaN)."""
    for shape in ((2, 2), (1, 1, 2, 2, 2)):
        with pytest.raises(ValueError, match=rf"expected voxel grids \(R, R, R\) or "
                                             rf"\(N, R, R, R\), got shape {re.escape(str(shape))}"):
            to_tensor(np.zeros(shape))
    assert to_tensor(np.zeros((2, 2, 2))).shape == (1, 2, 2, 2)
    with pytest.raises(ValueError, match="level must be a finite iso-value, got nan"):
        mesh_from_voxels(np.ones((2, 2, 2)), level=float("nan"))


TETRAHEDRON_VERTICES = np.vstack([np.zeros(3), np.eye(3)])
TETRAHEDRON = [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]


def write_binary_ply(path: Path, vertices, faces, *, header_vertices: int) -> Path:
    """A binary PLY (as stgconv writes them) whose header announces ``header_vertices``."""
    _write_ply(str(path), np.asarray(vertices, float), np.asarray(faces))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"element vertex %d\n" % len(vertices),
                                  b"element vertex %d\n" % header_vertices, 1))
    return path


def test_a_binary_ply_whose_vertex_count_misstates_the_data_is_refused_not_a_crash(
        tmp_path: Path) -> None:
    """open3d's reader trusts the header: one vertex more (the faces read from the wrong bytes)
    or one fewer (the last face's index past the count) was a segmentation fault that killed
    the process, so it is tried in a child process."""
    more = write_binary_ply(tmp_path / "more.ply", TETRAHEDRON_VERTICES, TETRAHEDRON,
                            header_vertices=5)
    fewer = write_binary_ply(tmp_path / "fewer.ply", TETRAHEDRON_VERTICES, TETRAHEDRON,
                             header_vertices=3)
    child = (f"from stgconv.io.mesh import load_mesh\n"
             f"for path in ({str(more)!r}, {str(fewer)!r}):\n"
             "    try:\n        load_mesh(path)\n"
             "    except ValueError as err:\n        print(err)\n")
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    assert re.search(r"more\.ply: PLY face 0 lists 0 corners", result.stdout)
    assert re.search(r"fewer\.ply: the PLY file is malformed \(data follows its last element",
                     result.stdout)


@pytest.mark.parametrize("name, polygons, message", [
    # open3d kept the face before (0 corners) or read whatever followed (1, 2) as the face.
    ("two.ply", [[0, 1, 2], [0, 1]], "face 1 lists 2 corners"),
    ("none.ply", [[0, 1, 2], []], "face 1 lists 0 corners"),
    # A negative length (signed count type) dropped the face; in the first row, numpy's
    # error (a negative dimension) named no list.
    ("negative.ply", (3, -1), "a list of length -1"),
    ("negative_first.ply", (-1, 3), "a list of length -1"),
])
def test_ply_faces_of_fewer_than_three_corners_are_refused(tmp_path: Path, name: str,
                                                            polygons, message: str) -> None:
    path = tmp_path / name
    if isinstance(polygons, tuple):  # binary, the rows' list lengths
        header = ("ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty double x\n"
                  "property double y\nproperty double z\nelement face 2\n"
                  "property list char int vertex_indices\nend_header\n")
        face = np.dtype([("n", "i1"), ("corners", "<i4", (3,))])
        path.write_bytes(header.encode() + np.eye(3).tobytes()
                         + np.array([(n, [0, 1, 2]) for n in polygons], face).tobytes())
    else:
        write_ply(path, np.eye(3), polygons)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}: .*{message}"):
        load_mesh(path)


@pytest.mark.parametrize("name, edit, message", [
    # The header counts 2 of the 4 faces: open3d read 2 and dropped the rest without a word.
    ("few_faces.ply", lambda text: text.replace("element face 4", "element face 2"),
     "data follows its last element"),
    # The last face's line missing: the header counts more rows than the file holds.
    ("missing_row.ply", lambda text: text.replace("3 1 2 3\n", ""),
     "element 'face': the header announces 4 rows, 3 lines follow"),
    # One vertex more than the data: open3d read the faces shifted (a vertex (3, 0, 1)).
    ("more_vertices.ply", lambda text: text.replace("element vertex 4", "element vertex 5"),
     "row '3 0 1 2' does not hold the values"),
    # An index after a triangle's three: open3d ignored it.
    ("long_row.ply", lambda text: text.replace("\n3 1 2 3\n", "\n3 1 2 3 0\n"),
     "row '3 1 2 3 0' does not hold the values"),
    # A row short of a value raised IndexError, which named no file (a traceback in the CLI).
    ("short_row.ply", lambda text: text.replace("\n1.0 0.0 0.0\n", "\n1.0 0.0\n"),
     "row '1.0 0.0' does not hold the values"),
    # x alone: open3d made up y and z.
    ("only_x.ply", lambda text: re.sub(r"^(\d\.\d) \S+ \S+$", r"\1", text, flags=re.MULTILINE)
     .replace("property float y\nproperty float z\n", ""),
     "no 'vertex' element with scalar properties x, y"),
    # Indices of a float type: open3d rounded 2.5 down.
    ("fractional.ply", lambda text: text.replace("property list uchar int",
                                                 "property list uchar float")
     .replace("\n3 0 1 3\n", "\n3 0 1 2.5\n"), "face 1 has a fractional vertex index"),
    # Indices of an integer type that it does not hold (read as one table, then row by row to
    # name the row): 2.5 truncated, and 259 and -253 wrapped into a uchar, are 2 and 3.
    ("fractional_int.ply", lambda text: text.replace("\n3 0 1 3\n", "\n3 0 1 2.5\n"),
     "row '3 0 1 2.5' holds a value that is no i4"),
    ("fractional_uint.ply", lambda text: text.replace("list uchar int", "list uchar uint")
     .replace("\n3 0 1 3\n", "\n3 0 1 2.5\n"), "row '3 0 1 2.5' holds a value that is no u4"),
    ("uchar_259.ply", lambda text: text.replace("list uchar int", "list uchar uchar")
     .replace("\n3 0 1 3\n", "\n3 0 1 259\n"), "row '3 0 1 259' holds a value that is no u1"),
    ("uchar_minus_253.ply", lambda text: text.replace("list uchar int", "list uchar uchar")
     .replace("\n3 0 1 3\n", "\n3 0 1 -253\n"), "row '3 0 1 -253' holds a value that is no u1"),
    # Rows as long as the others, but a list length that does not fit them; a negative one.
    ("short_list.ply", lambda text: text.replace("\n3 0 1 3\n", "\n2 0 1 3\n"),
     "row '2 0 1 3' does not hold the values"),
    ("negative_list.ply", lambda text: text.replace("list uchar int", "list char int")
     .replace("\n3 0 1 3\n", "\n-1 0 1 3\n"), "row '-1 0 1 3' has a list of length -1"),
    # Every vertex row a value longer than the header's properties.
    ("long_rows.ply", lambda text: re.sub(r"^(\d\.\d \S+ \S+)$", r"\1 0", text,
                                          flags=re.MULTILINE),
     "row '0.0 0.0 0.0 0' does not hold the values"),
    # x and y alone; x a list (without the check: a KeyError, a numpy error naming no file).
    ("no_z.ply", lambda text: re.sub(r"^(\d\.\d \S+) \S+$", r"\1", text, flags=re.MULTILINE)
     .replace("property float z\n", ""), "no 'vertex' element with scalar properties x, y"),
    ("list_x.ply", lambda text: re.sub(r"^(\d\.\d \S+ \S+)$", r"1 \1", text, flags=re.MULTILINE)
     .replace("property float x", "property list uchar float x"),
     "no 'vertex' element with scalar properties x, y"),
    # Header lines the reader cannot follow.
    ("negative_count.ply", lambda text: text.replace("element face 4", "element face -4"),
     "bad PLY header line 'element face -4'"),
    ("property_first.ply", lambda text: text.replace("format ascii 1.0\n",
                                                     "format ascii 1.0\nproperty float w\n"),
     "bad PLY header line 'property float w'"),
    ("float_lengths.ply", lambda text: text.replace("list uchar int", "list float int"),
     "bad PLY header line 'property list float int vertex_indices'"),
    ("no_version.ply", lambda text: text.replace("format ascii 1.0", "format ascii"),
     "bad PLY header line 'format ascii'"),
    ("no_format.ply", lambda text: text.replace("format ascii 1.0\n", ""),
     "the PLY header has no valid 'format' line"),
    ("no_properties.ply", lambda text: text.replace("end_header", "element empty 3\nend_header"),
     "PLY element 'empty' has no properties"),
])
def test_a_ply_read_wrong_before_is_refused(tmp_path: Path, name: str, edit, message: str
                                            ) -> None:
    path = write_ply(tmp_path / name, TETRAHEDRON_VERTICES, TETRAHEDRON)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}: .*{re.escape(message)}"):
        load_mesh(path)


@pytest.mark.parametrize("word, kind", [("259", "u1"), ("-253", "u1"), ("-1", "u4"),
                                        ("128", "i1"), ("2147483648.0", "i4")])
def test_a_ply_text_value_outside_its_type_is_refused_by_the_reader_itself(word: str,
                                                                            kind: str) -> None:
    """The refusal of 259 for a uchar (above) was NumPy 2's OverflowError: NumPy 1.x, which
    pyproject admits, stored it as 3 with a DeprecationWarning no user sees, and the face took
    vertex 3. The reader's own check is what holds on either."""
    with pytest.raises(ValueError, match=f"outside {kind}'s range"):
        _ply_ascii_number(word, kind)
    assert _ply_ascii_number("255", "u1") == 255 and _ply_ascii_number("-128.0", "i1") == -128


def test_ply_vertex_properties_are_read_by_name_in_any_order(tmp_path: Path) -> None:
    """open3d refused z, y, x ("no faces"); big-endian and float indices read as their values."""
    path = write_ply(tmp_path / "zyx.ply", CUBE_VERTICES[:, ::-1], cube_triangles())
    path.write_text(path.read_text().replace("property float x\nproperty float y\nproperty "
                                             "float z", "property float z\nproperty float y\n"
                                             "property float x"))
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_VERTICES)
    np.testing.assert_array_equal(faces, cube_triangles())


def test_a_binary_ply_face_with_a_scalar_before_its_list_is_read_as_one_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list's length was looked for at the row's start, over the scalar: never the first
    row's, so every face went through the row-by-row reader (~50x slower), value by value. A
    second list's length is looked for past the first list's length and values."""
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty double x\n"
              "property double y\nproperty double z\nelement face 4\nproperty uchar flags\n"
              "property list uchar int vertex_indices\nproperty list uchar float texcoord\n"
              "end_header\n")
    faces = np.zeros(4, [("flags", "u1"), ("n", "u1"), ("corners", "<i4", (3,)), ("m", "u1"),
                         ("uv", "<f4", (6,))])
    faces["flags"], faces["n"], faces["corners"], faces["m"] = 7, 3, TETRAHEDRON, 6
    path = tmp_path / "flags.ply"
    path.write_bytes(header.encode() + TETRAHEDRON_VERTICES.astype("<f8").tobytes()
                     + faces.tobytes())
    reads = []

    def counted(*args):
        reads.append(args)
        return _ply_take(*args)

    monkeypatch.setattr("stgconv.io.mesh._ply_take", counted)
    vertices, triangles = load_mesh(path)
    np.testing.assert_array_equal(vertices, TETRAHEDRON_VERTICES)
    np.testing.assert_array_equal(triangles, TETRAHEDRON)
    assert len(reads) == 2  # the first row's two list lengths, then one table


@pytest.mark.parametrize("quads", [6, 1])  # one row too: numpy reads a single line flat
def test_an_ascii_ply_of_rows_alike_is_read_as_one_table(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         quads: int) -> None:
    """Value by value (~50x slower) only where one table fails, to name the row that is wrong."""
    path = write_ply(tmp_path / "cube.ply", CUBE_VERTICES, CUBE_QUADS[:quads])
    monkeypatch.setattr("stgconv.io.mesh._ply_ascii_values",
                        lambda *args: pytest.fail("read value by value"))
    vertices, faces = load_mesh(path)
    np.testing.assert_array_equal(vertices, CUBE_VERTICES)
    np.testing.assert_array_equal(faces, cube_triangles()[:2 * quads])


@pytest.mark.parametrize("name, text", [
    ("huge.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999\n"),
    ("huge.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 99999999999999999999\n"),
])
def test_a_face_index_past_64_bits_is_refused(tmp_path: Path, name: str, text: str) -> None:
    """It raised OverflowError, which the CLI does not take for bad input (a traceback)."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{re.escape(name)} has a face index too large"):
        load_mesh(path)


@pytest.mark.parametrize("joined", [False, True])
def test_off_lines_past_its_counts_are_refused(tmp_path: Path, joined: bool) -> None:
    """A face count too small dropped the faces past it without a word; counted from the
    header's own line when it holds the counts too ('OFF8 5 0')."""
    path = write_off(tmp_path / "few.off", CUBE_VERTICES, CUBE_QUADS, joined=joined)
    path.write_text(path.read_text().replace("8 6 0", "8 5 0"))
    with pytest.raises(ValueError, match=r"few\.off: .*5 faces, but 1 more lines follow"):
        load_mesh(path)


def cube_stl_facets() -> list[str]:
    """The cube's 12 triangles as the facets of an ascii STL."""
    return ["facet normal 0 0 0\nouter loop\n" + "".join(
        f"vertex {x} {y} {z}\n" for x, y, z in CUBE_VERTICES[t]) + "endloop\nendfacet\n"
        for t in cube_triangles()]


def test_a_truncated_ascii_stl_is_refused(tmp_path: Path) -> None:
    """open3d kept the facets before the text ended: half the cube, voxelized without a word."""
    path = tmp_path / "cut.stl"
    facets = "".join(cube_stl_facets())
    path.write_text(f"solid cube\n{facets}endsolid cube\n")
    assert len(load_mesh(path)[1]) == 12
    path.write_text(f"solid cube\n{facets[:len(facets) // 2]}")
    with pytest.raises(ValueError, match=r"cut\.stl: neither a binary STL .* truncated"):
        load_mesh(path)


def binary_ply(order: str, vertices, polygons, *, vertex: str, count: str, index: str,
               vertex_name: str | None = None) -> bytes:
    """A binary PLY of byte order ``order`` ("<" or ">") and the given numpy types, each face
    written as its own row (so rows of different lengths can follow one another); the vertex
    type named ``vertex_name`` in the header when given."""
    names = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int", "u4": "uint"}
    vertex_name = vertex_name or names[vertex]
    header = (f"ply\nformat binary_{'little' if order == '<' else 'big'}_endian 1.0\n"
              f"element vertex {len(vertices)}\n"
              + "".join(f"property {vertex_name} {axis}\n" for axis in "xyz")
              + f"element face {len(polygons)}\n"
              f"property list {names[count]} {names[index]} vertex_indices\nend_header\n")
    rows = [np.array([len(p)], order + count).tobytes() + np.array(p, order + index).tobytes()
            for p in polygons]
    return header.encode() + np.asarray(vertices).astype(order + vertex).tobytes() + b"".join(rows)


@pytest.mark.parametrize("name, kind", [
    ("char", "i1"), ("int8", "i1"), ("uchar", "u1"), ("uint8", "u1"), ("short", "i2"),
    ("int16", "i2"), ("ushort", "u2"), ("uint16", "u2"), ("int", "i4"), ("int32", "i4"),
    ("uint", "u4"), ("uint32", "u4"), ("float", "f4"), ("float32", "f4"), ("double", "f8"),
    ("float64", "f8")])
def test_binary_ply_coordinates_of_every_scalar_type_read_as_written(tmp_path: Path, name: str,
                                                                     kind: str) -> None:
    """Both names of each PLY 1.0 type, at the ends of its range: a signed type read as an
    unsigned one (or the other way), or at another width, moves the vertices."""
    low, high = (np.iinfo(kind).min, np.iinfo(kind).max) if kind[0] in "iu" else (-1.5, 0.1)
    vertices = np.array([[low, 0, 0], [0, high, 0], [0, 0, 1]], np.float64)
    path = tmp_path / f"{name}.ply"
    path.write_bytes(binary_ply("<", vertices, [[0, 1, 2]], vertex=kind, count="u1", index="i4",
                                vertex_name=name))
    read, faces = load_mesh(path)
    np.testing.assert_array_equal(read, vertices.astype(kind))
    np.testing.assert_array_equal(faces, [[0, 1, 2]])


def cube_quads_then_triangles() -> list[list[int]]:
    """The cube's first three quads, then the other three split as :func:`cube_triangles` splits
    them: triangulated, the same triangles in the same order."""
    return CUBE_QUADS[:3] + cube_triangles()[6:].tolist()


@pytest.mark.parametrize("name, write, vertices, faces", [
    # Written on Windows: every line ends in \r\n (the header was refused).
    ("crlf.ply", lambda path: write_ply(path, TETRAHEDRON_VERTICES, TETRAHEDRON).write_bytes(
        path.read_bytes().replace(b"\n", b"\r\n")), TETRAHEDRON_VERTICES, TETRAHEDRON),
    # Header lines other writers add: 'obj_info', a blank one, 'end_header' with a space after.
    ("obj_info.ply", lambda path: write_ply(path, TETRAHEDRON_VERTICES, TETRAHEDRON).write_text(
        path.read_text().replace("format ascii 1.0\n", "format ascii 1.0\nobj_info by hand\n\n")
        .replace("end_header\n", "end_header \n")), TETRAHEDRON_VERTICES, TETRAHEDRON),
    # An element of no rows (edges), and blank lines between and after the rows.
    ("no_edges.ply", lambda path: write_ply(path, TETRAHEDRON_VERTICES, TETRAHEDRON).write_text(
        path.read_text().replace("end_header", "element edge 0\nproperty int vertex1\nend_header")
        .replace("\n3 0 1 2\n", "\n\n3 0 1 2\n") + "\n\n"), TETRAHEDRON_VERTICES, TETRAHEDRON),
    # The spec's other name of the face list.
    ("vertex_index.ply", lambda path: write_ply(path, TETRAHEDRON_VERTICES, TETRAHEDRON)
     .write_text(path.read_text().replace("vertex_indices", "vertex_index")),
     TETRAHEDRON_VERTICES, TETRAHEDRON),
    # Doubles keep every digit (0.1 is no float32).
    ("double.ply", lambda path: write_ply(path, TETRAHEDRON_VERTICES / 10, TETRAHEDRON)
     .write_text(path.read_text().replace("float", "double")), TETRAHEDRON_VERTICES / 10,
     TETRAHEDRON),
    # A newline after the binary data, as some writers end every file.
    ("newline.ply", lambda path: path.write_bytes(write_binary_ply(
        path, TETRAHEDRON_VERTICES, TETRAHEDRON, header_vertices=4).read_bytes() + b"\n"),
     TETRAHEDRON_VERTICES, TETRAHEDRON),
    # Big-endian float32 vertices and int list lengths, quads then triangles (read row by row).
    ("big_endian.ply", lambda path: path.write_bytes(binary_ply(
        ">", CUBE_VERTICES, cube_quads_then_triangles(), vertex="f4", count="i4", index="i4")),
     CUBE_VERTICES, cube_triangles()),
    # Triangle strips of no rows after the faces (they were taken for a truncated file).
    ("no_strips.ply", lambda path: path.write_bytes(binary_ply(
        "<", TETRAHEDRON_VERTICES, TETRAHEDRON, vertex="f8", count="u1", index="i4").replace(
        b"end_header", b"element tristrips 0\nproperty list int int vertex_indices\nend_header")),
     TETRAHEDRON_VERTICES, TETRAHEDRON),
    # Indices written as whole floats, read row by row (quads then triangles) as they were
    # in one table: "3.0" is vertex 3 in either path.
    ("float_indices.ply", lambda path: write_ply(
        path, CUBE_VERTICES, [[float(i) for i in face] for face in cube_quads_then_triangles()]),
     CUBE_VERTICES, cube_triangles()),
    # One face: the list ends exactly where the file does.
    ("one_face.ply", lambda path: path.write_bytes(binary_ply(
        "<", TETRAHEDRON_VERTICES, TETRAHEDRON[:1], vertex="f8", count="u1", index="u4")),
     TETRAHEDRON_VERTICES, TETRAHEDRON[:1]),
])
def test_ply_files_as_other_writers_lay_them_out_read(tmp_path: Path, name: str, write,
                                                      vertices, faces) -> None:
    path = tmp_path / name
    write(path)
    read_vertices, read_faces = load_mesh(path)
    np.testing.assert_array_equal(read_vertices, vertices)
    np.testing.assert_array_equal(read_faces, faces)


@pytest.mark.parametrize("name, edit, message", [
    ("no_solid.stl", lambda text: text.replace("solid cube\n", "cube\n", 1),
     "neither a binary STL"),
    ("no_endfacet.stl", lambda text: text.replace("endfacet\n", "", 1), "neither a binary STL"),
    # Every facet whole, but no 'endsolid': the text may have been cut between two facets.
    ("no_endsolid.stl", lambda text: text.replace("endsolid cube\n", ""), "neither a binary STL"),
    ("two_corners.stl", lambda text: text.replace("vertex 0.0 0.0 0.0\n", "", 1),
     "neither a binary STL"),
    ("four_corners.stl", lambda text: text.replace("endloop", "vertex 0.0 0.0 0.0\nendloop", 1),
     "neither a binary STL"),
    # open3d stops at 'endsolid': the 6 facets after it were dropped without a word.
    ("ends_early.stl", lambda text: text.replace(cube_stl_facets()[6],
                                                 "endsolid cube\n" + cube_stl_facets()[6]),
     "the ascii STL has 12 facets, but only 6 read \\(facets after an 'endsolid'"),
    # open3d stops at a number it cannot read: in the first facet, none read, which was
    # called 'has no faces (or open3d cannot read it)' of a file of 12.
    ("bad_number.stl", lambda text: text.replace("vertex 0.0 0.0 0.0", "vertex 0.0 O.0 0.0", 1),
     "the ascii STL has 12 facets, but only 0 read \\(.*a bad number in one"),
])
def test_an_ascii_stl_whose_facets_do_not_add_up_is_refused(tmp_path: Path, name: str, edit,
                                                           message: str) -> None:
    path = tmp_path / name
    path.write_text(edit(f"solid cube\n{''.join(cube_stl_facets())}endsolid cube\n"))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}: {message}"):
        load_mesh(path)


@pytest.mark.parametrize("name, data, message", [
    # An element of no rows with a list, as the faces of an empty surface: its first row's
    # length was looked for past the data's end ("truncated or malformed", not "no faces").
    ("no_faces.ply", binary_ply("<", TETRAHEDRON_VERTICES, [], vertex="f8", count="u1",
                                index="i4"), "has no faces"),
    # Vertices of fixed size, one short: named by the bytes they need before any row is read.
    ("short_vertices.ply", binary_ply("<", TETRAHEDRON_VERTICES, [], vertex="f8", count="u1",
                                      index="i4")[:-24],
     "element 'vertex': 4 rows need 96 bytes, 72 are left"),
    # Bytes after faces read row by row (of different lengths) were let through.
    ("after_quads.ply", binary_ply("<", CUBE_VERTICES, cube_quads_then_triangles(), vertex="f8",
                                   count="u1", index="i4") + b"\1",
     "data follows its last element"),
])
def test_a_binary_ply_of_no_faces_or_with_bytes_after_them_is_refused(tmp_path: Path, name: str,
                                                                      data: bytes,
                                                                      message: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*{message}"):
        load_mesh(path)


def test_grids_given_as_data_are_refused_by_name() -> None:
    """load_voxels reads a file: an array failed in pathlib, naming no argument."""
    with pytest.raises(ValueError, match="^path must be a file's path"):
        load_voxels(np.zeros((2, 8, 8, 8)))
