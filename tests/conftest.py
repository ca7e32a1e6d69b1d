"""Fixtures every test module may use: the real data in ../shared/data, and the repository's
scripts (which are not importable packages)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """``../shared/data``: real clips, masks and voxel data, too large to ship with the tests.

    The test is skipped, naming what is missing, unless every path its ``shared_data`` marker
    lists (relative to that folder, e.g. ``@pytest.mark.shared_data("voxel/meshes")``; none
    listed: the folder itself) exists.
    """
    marker = request.node.get_closest_marker("shared_data")
    needed = [SHARED_DATA / part for part in (marker.args if marker and marker.args else ("",))]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        pytest.skip(f"real data not found at {', '.join(missing)} (../shared/data absent)")
    return SHARED_DATA


@pytest.fixture
def load_script() -> Callable[[str | Path], ModuleType]:
    """``load_script("datasets/video/prepare.py")``: the script (a path relative to the
    repository, or absolute) imported as a module, so its ``main(argv)`` runs in-process."""

    def load(path: str | Path) -> ModuleType:
        path = REPO / path
        spec = importlib.util.spec_from_file_location(f"_script_{path.parent.name}_{path.stem}",
                                                      path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
