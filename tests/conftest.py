"""Fixtures every test module may use: the real data in ../shared/data, the repository's
scripts (which are not importable packages), and one tiny trained voxel run and JEM run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from _tiny import (
    JEM_CONFIG,
    JEM_TINY,
    SR_CONFIG,
    TINY,
    boxes_and_balls,
    labelled_bars,
    torch_settings_kept,
)

from stgconv.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The modules whose warnings are ours to act on: the library, the repository's scripts (bench
# scripts run by runpy as "<run_path>" and imported as bench.*; tools/ and datasets/ scripts
# loaded by load_script as "_script_...", not by their folders' names, which third-party
# packages take) and the tests themselves (pytest imports them by their file names).
OWN_MODULES = r"(stgconv|bench|_script_\w+|<run_path>|test_\w+|_tiny|conftest)(\.|$)"


def pytest_configure(config: pytest.Config) -> None:
    """A deprecated API called from our own code fails the suite, so a dependency's next
    release cannot turn it into a break unannounced; a deprecation inside a third-party
    library, which we cannot change, stays a warning in the summary. (Here, not in
    pyproject.toml, whose hash names run.sh's environment: an edit there reinstalls it.)"""
    for category in ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning"):
        config.addinivalue_line("filterwarnings", f"error::{category}:{OWN_MODULES}")
    # One intra-op thread for every test, whatever the machine or the order of the files: the
    # tensors are tiny, and on 2 busy cores test_cli.py and test_energy.py took 43 s on two
    # threads against 37 s on one (with run.sh's passive OpenMP waits; 90-256 s against 38 s
    # with spinning ones).
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_settings_left_as_found() -> Iterator[None]:
    """Every test leaves torch's thread count and default dtype as it found them
    (:func:`_tiny.torch_settings_kept`); one that does not fails at its teardown, so that no
    test passes only because an earlier one changed them."""
    with torch_settings_kept():
        yield


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


@pytest.fixture(scope="session")
def dead_pid() -> int:
    """The process id of a process that has exited, as a killed writer's temporaries name it."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


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


@pytest.fixture(scope="session")
def trained_voxel_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny shapes (``"shapes"``: 12 of 16^3 in an ``.npz``, labelled box 0 / ball 1) and a
    super-resolution model trained on them (``"run"``), in a folder under ``"root"``.

    Trained once per session however many test files ask for it; the tests only read these
    files (they write their own results under ``tmp_path``).
    """
    return _super_resolution_run(tmp_path_factory.mktemp("voxel_run"))


@pytest.fixture(scope="session")
def nearest_voxel_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes and run of :func:`trained_voxel_run`, trained with ``chains.upsample:
    nearest`` (an up-sampling no test could tell from the default trilinear one otherwise)."""
    return _super_resolution_run(tmp_path_factory.mktemp("nearest_voxel_run"),
                                 "--set", "chains.upsample=nearest")


def _super_resolution_run(root: Path, *extra: str) -> dict[str, Path]:
    """12 boxes and balls of 16^3 in ``root / "shapes.npz"`` and a tiny super-resolution run
    trained on them (with the CLI arguments ``extra``) in ``root / "run"``."""
    shapes = boxes_and_balls(12, 16)[:, 0].numpy().astype(np.uint8)
    paths = {"shapes": root / "shapes.npz", "run": root / "run", "root": root}
    np.savez(paths["shapes"], X=shapes, y=np.arange(12) % 2)
    assert main(["train", str(SR_CONFIG), "--data", str(paths["shapes"]),
                 "--out", str(paths["run"]), *TINY, *extra]) == 0
    return paths


@pytest.fixture(scope="session")
def trained_jem_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Nine labelled 28x28 images of 3 classes (``"data"``, :func:`_tiny.labelled_bars`, bars
    of three heights in each class, so the run's fitted Gaussians have a density) and a
    JEM classifier trained on them for 2 iterations (``"run"``); read-only, as
    :func:`trained_voxel_run`."""
    root = tmp_path_factory.mktemp("jem_run")
    paths = {"data": labelled_bars(root / "bars.npz", 9, varied=True), "run": root / "run",
             "root": root}
    assert main(["train", str(JEM_CONFIG), "--data", str(paths["data"]),
                 "--out", str(paths["run"]), *JEM_TINY]) == 0
    return paths


@pytest.fixture
def unreadable_npy(tmp_path: Path) -> Path:
    """An ``.npy`` name for a regular file whose first read fails with EIO (a disk's read
    error, which root's permissions cannot bring about): a link to ``/proc/self/mem``, whose
    offset 0 is mapped in no process."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("no /proc/self/mem to make a file that cannot be read with")
    path = tmp_path / "unreadable.npy"
    path.symlink_to("/proc/self/mem")
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``tmp_path / "disk"``, for a real full disk; skipped where
    mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small disk with")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        why = (mounted.stderr.strip() or f"exit status {mounted.returncode}").splitlines()[0]
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root with CAP_SYS_ADMIN): "
                    f"{why}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


LIBUSB_MISSING = "libusb-1.0.so.0: cannot open shared object file: No such file or directory"
"""What ``import open3d`` raises where the system library libusb-1.0 is absent (seen with open3d
0.20 and the library hidden)."""


@pytest.fixture
def open3d_without_libusb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``import open3d`` fails as on a machine without libusb-1.0 (a minimal image where
    stgconv was installed with pip, which installs no system library): an ``open3d`` package
    whose import raises that ImportError comes first on ``sys.path``, the real one out of
    ``sys.modules`` until the test ends."""
    fake = tmp_path / "fake_open3d" / "open3d"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise ImportError({LIBUSB_MISSING!r})\n")
    monkeypatch.delitem(sys.modules, "open3d", raising=False)
    monkeypatch.syspath_prepend(str(fake.parent))
