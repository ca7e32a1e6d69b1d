"""Pictures of voxel grids a person can look at, rendered headless on the CPU.

Each grid's iso-surface (marching cubes at ``level``) is ray-cast with open3d's
``RaycastingScene`` (Embree, CPU) through an orthographic camera and shaded with a headlight and a
key light. No OpenGL context, display, EGL or Vulkan is involved, so it works the same on a
laptop, a headless server and CI, prints nothing, and takes a few milliseconds per view.
(open3d's ``Visualizer(visible=False)`` also renders headless where Mesa's EGL is installed, but
it logs GLFW errors on every call and fails where EGL is missing; matplotlib's ``ax.voxels``
takes ~17 s for one 64^3 grid.)

The camera looks at the centre of the grid from ``(azimuth, elevation)`` in degrees: azimuth
about the up axis (grid axis 2, z), 0 looking along -x, counter-clockwise from above;
elevation above the horizon. Every grid is drawn at the same scale (the whole grid's box fits
each panel), so sizes compare across panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, ImageDraw

from stgconv.checks import as_array, as_int
from stgconv.io.image import save_picture
from stgconv.io.mesh import import_open3d, mesh_from_voxels

# open3d takes ~1.5 s to import; it loads where a grid is drawn (import_open3d).
if TYPE_CHECKING:
    import open3d as o3d

DEFAULT_VIEWS = ((-60.0, 25.0),)
"""One oblique view from the -y side, a little above: ``((azimuth, elevation), ...)``."""

_COLOUR = np.array([0.62, 0.74, 0.92])  # surface albedo (light steel blue)
_BACKGROUND = 255
_TITLE_HEIGHT = 14


def render_views(grid: object, *, views: Sequence[tuple[float, float]] = DEFAULT_VIEWS,
                 size: int = 256, level: float = 0.5) -> np.ndarray:
    """Render one voxel grid from each view.

    Args:
        grid: ``(D, H, W)`` or ``(1, D, H, W)`` occupancy (numpy or torch, bool/int/float),
            up axis = axis 2.
        views: ``(azimuth, elevation)`` pairs in degrees (see the module docstring).
        size: side of each square view in pixels.
        level: the iso-value drawn (0.5 for {0, 1} grids and occupancy probabilities).

    Returns:
        uint8 ``(V, size, size, 3)``, white where the rays miss (an empty grid renders white).
    """
    o3d = import_open3d("rendering voxel grids")
    views = _check_views(views)
    size = as_int(size, "size", minimum=8)
    vertices, faces = mesh_from_voxels(grid, level=level)
    shape = np.asarray(grid.shape[-3:], dtype=np.float64)
    images = np.full((len(views), size, size, 3), _BACKGROUND, dtype=np.uint8)
    if len(faces) == 0:
        return images
    # Grid coordinates -> a cube of side 1 centred at the origin (voxel i centred at i).
    extent = shape.max()
    points = (vertices - (shape - 1) / 2) / extent
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(points.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    half = 0.5 * shape / extent  # the grid's box, whose projection every view must contain
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    for k, (azimuth, elevation) in enumerate(views):
        images[k] = _render_one(scene, corners, azimuth, elevation, size)
    return images


def _render_one(scene: o3d.t.geometry.RaycastingScene, corners: np.ndarray, azimuth: float,
                elevation: float, size: int) -> np.ndarray:
    o3d = import_open3d("rendering voxel grids")
    az, el = np.radians(azimuth), np.radians(elevation)
    towards_camera = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(towards_camera, right)
    # Orthographic: the half-width that holds the projected box, with a small border.
    half = 1.04 * max(np.abs(corners @ right).max(), np.abs(corners @ up).max())
    offsets = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in (-1, 1)
    u = offsets[None, :, None] * half * right          # columns: left -> right
    v = -offsets[:, None, None] * half * up            # rows: top -> bottom
    origins = u + v + 2.0 * towards_camera            # (size, size, 3), outside the unit cube
    directions = np.broadcast_to(-towards_camera, origins.shape)
    ray_array = np.concatenate([origins, directions], axis=-1).reshape(-1, 6)
    hits = scene.cast_rays(o3d.core.Tensor(ray_array.astype(np.float32)))
    hit = np.isfinite(hits["t_hit"].numpy())
    normals = hits["primitive_normals"].numpy()
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # Face every normal towards the camera (the winding of marching-cubes triangles is not
    # guaranteed), then light with a headlight (so no visible face is black) plus a key light
    # from the upper left of the camera, which sets tops, fronts and sides apart.
    facing = normals @ towards_camera
    normals *= np.where(facing < 0, -1.0, 1.0)[:, None]
    key = towards_camera + 1.2 * up - 0.7 * right
    key /= np.linalg.norm(key)
    shade = 0.3 + 0.3 * np.abs(facing) + 0.55 * np.clip(normals @ key, 0, 1)
    pixels = np.full((size * size, 3), float(_BACKGROUND))
    pixels[hit] = 255 * np.clip(shade[hit, None] * _COLOUR, 0, 1)
    return pixels.reshape(size, size, 3).round().astype(np.uint8)


def render_voxels(
    grids: object, path: str | Path, *, views: Sequence[tuple[float, float]] = DEFAULT_VIEWS,
    size: int = 192, level: float = 0.5, columns: int | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Write :func:`voxel_sheet`'s picture of ``grids`` (the other arguments are its) to the
    ``.png`` ``path``, atomically; returns ``path`` as a ``Path``."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"render path must end in .png, got {path}")
    sheet = voxel_sheet(grids, views=views, size=size, level=level, columns=columns,
                        titles=titles)
    return save_picture(sheet, path)


def voxel_sheet(
    grids: object, *, views: Sequence[tuple[float, float]] = DEFAULT_VIEWS, size: int = 192,
    level: float = 0.5, columns: int | None = None, titles: Sequence[str] | None = None,
) -> np.ndarray:
    """One picture of one or more voxel grids, each seen from every view, tiled in a grid:
    ``(height, width, 3)`` uint8.

    Args:
        grids: one grid ``(D, H, W)`` / ``(1, D, H, W)``, a batch ``(N, D, H, W)`` /
            ``(N, 1, D, H, W)``, or a list of grids of any sizes (numpy or torch); up axis =
            the last axis. Each grid's cube fills its panel, so a 16^3 grid and its 64^3
            super-resolution line up.
        views: ``(azimuth, elevation)`` pairs in degrees; each shape gets one panel per view,
            side by side.
        size: side of one panel in pixels.
        level: the iso-value drawn.
        columns: shapes per row (default: up to 4, fewer when the views are many).
        titles: one caption per shape (e.g. its file name or label), drawn above its panels.
    """
    batch = _as_batch(grids)
    views = _check_views(views)
    if titles is not None and len(titles) != len(batch):
        raise ValueError(f"got {len(titles)} titles for {len(batch)} shapes")
    if columns is None:
        columns = max(1, min(len(batch), 8 // len(views) or 1, 4))
    columns = as_int(columns, "columns", minimum=1)
    columns = min(columns, len(batch))
    rows = -(-len(batch) // columns)
    gap, title = 4, _TITLE_HEIGHT if titles is not None else 0
    cell_w, cell_h = len(views) * size + gap, size + title + gap
    sheet = Image.new("RGB", (columns * cell_w - gap, rows * cell_h - gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, grid in enumerate(batch):
        left, top = (n % columns) * cell_w, (n // columns) * cell_h
        panels = render_views(grid, views=views, size=size, level=level)
        sheet.paste(Image.fromarray(np.concatenate(list(panels), axis=1)), (left, top + title))
        # A thin frame per shape, so white-on-white borders and empty grids are still visible.
        draw.rectangle([left, top + title, left + len(views) * size - 1, top + title + size - 1],
                       outline=(200, 200, 200))
        if titles is not None:
            draw.text((left + 2, top + 1), str(titles[n])[: max(4, cell_w // 7)], fill=(0, 0, 0))
    return np.array(sheet)  # writable: torch.from_numpy warns on a read-only array


def _as_batch(grids: object) -> list[np.ndarray]:
    if isinstance(grids, (list, tuple)):  # grids of different sizes, e.g. 16^3 next to 64^3
        batch = [as_array(grid) for grid in grids]
        batch = [grid[0] if grid.ndim == 4 and grid.shape[0] == 1 else grid for grid in batch]
        if not batch or any(grid.ndim != 3 for grid in batch):
            raise ValueError(
                f"expected a non-empty list of voxel grids (D, H, W) or (1, D, H, W), got shapes "
                f"{[tuple(grid.shape) for grid in batch]}"
            )
        return batch
    array = as_array(grids)
    if array.ndim == 5 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 3:
        array = array[None]
    # (1, D, H, W) is one grid with its channel axis or a batch of one: the same picture.
    if array.ndim != 4 or len(array) == 0:
        raise ValueError(
            f"expected a voxel grid (D, H, W) / (1, D, H, W), a batch (N, D, H, W) / "
            f"(N, 1, D, H, W) with N >= 1, or a list of grids; got shape {tuple(array.shape)}"
        )
    return list(array)


def _check_views(views: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    try:
        checked = [(float(azimuth), float(elevation)) for azimuth, elevation in views]
    except (TypeError, ValueError):
        checked = []
    if not checked or not all(np.isfinite(view).all() and -90 <= view[1] <= 90
                              for view in checked):
        raise ValueError(f"views must be (azimuth, elevation) pairs in degrees with elevation "
                         f"in [-90, 90], got {views!r}")
    return checked


__all__ = ["DEFAULT_VIEWS", "render_views", "render_voxels"]
