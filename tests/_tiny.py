"""Tiny inputs shared by several test files (``from _tiny import boxes_and_balls``: pytest puts
``tests/`` on ``sys.path``): images and an image energy, voxel shapes; the tiny voxel run trained
on them is conftest.py's ``trained_voxel_run`` fixture. Seeded generators and float64 noise
(``gen``, ``rand``); for multi-grid models, striped images and a tiny MultiGridTrainer on them
(``pattern_images``, ``make_multigrid_trainer``), and a tiny multi-grid config file and an
in-process CLI call (``write_config``, ``run_cli``); labelled images for JEM (``labelled_bars``,
trained on by conftest.py's ``trained_jem_run``); a MATLAB v7.3 file as MATLAB writes one
(``write_mat_v73``); what would make a GPU wait for the host, counted on the CPU
(``HostTraffic``); a GIF's frame duration (``gif_frame_ms``); a file-size limit that fails
writes as a full disk does (``file_size_limit``); a check that a block leaves torch's
process-wide settings as it found them (``torch_settings_kept``, which conftest.py wraps around
every test).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import re
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from stgconv import checks
from stgconv.cli import main
from stgconv.config import (
    DataConfig,
    ExperimentConfig,
    GridConfig,
    MultiGridConfig,
    TrainConfig,
    config_to_dict,
    load_config,
)
from stgconv.energy import ConvNetEnergy, image_energy
from stgconv.mcmc import Langevin
from stgconv.tasks import synthesize, train
from stgconv.train import MultiGridTrainer

ROOT = Path(__file__).resolve().parents[1]
SR_CONFIG = ROOT / "configs" / "voxel" / "super_resolution_quick.yaml"
JEM_CONFIG = ROOT / "configs" / "image" / "jem_mnist_quick.yaml"

F64 = torch.float64

TINY = ["--set", "data.size=16", "--set", "model.layers=[[4,4,2,1],[4,3,2,1]]",
        "--set", "train.n_iterations=2", "--set", "sampler.n_steps=3", "--set", "device=cpu",
        "--set", "train.sample_every=0", "--quiet"]
"""``stgconv train`` options that make the super-resolution config a CPU second's run."""


JEM_TINY = ["--set", "model.n_classes=3", "--set", "train.n_iterations=2",
            "--set", "train.batch_size=4", "--set", "jem.px_batch=2", "--set", "sampler.n_steps=2",
            "--set", "chains.buffer_capacity=8", "--set", "train.sample_every=0",
            "--set", "device=cpu", "--quiet"]
"""``stgconv train`` options that make the JEM config a CPU second's run on
:func:`labelled_bars`."""


def labelled_bars(path: Path, n: int = 6, *, n_classes: int = 3, varied: bool = False) -> Path:
    """An MNIST-layout ``.npz`` at ``path``: ``x_train`` ``(n, 28, 28)`` uint8, a vertical bar
    whose column says the class, and ``y_train`` ``(n,)`` those classes ``i % n_classes``.
    ``varied``: the bars of a class differ in height (else a class's images are identical)."""
    labels = np.arange(n) % n_classes
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        top = 4 + 2 * (i // n_classes) if varied else 4
        images[i, top:24, 6 + 7 * label: 9 + 7 * label] = 255
    np.savez(path, x_train=images, y_train=labels)
    return path


def boxes_and_balls(n: int, size: int, *, seed: int = 0) -> Tensor:
    """``(n, 1, size, size, size)`` {0, 1}: axis-aligned boxes (even i) and balls (odd i) of
    random centres and sizes."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size) + 0.5] * 3, indexing="ij"))
    out = []
    for i in range(n):
        centre = size * (0.3 + 0.4 * torch.rand(3, generator=g)).view(3, 1, 1, 1)
        radius = size * (0.15 + 0.2 * torch.rand(1, generator=g))
        if i % 2:
            out.append(((grid - centre).pow(2).sum(0) <= radius**2).float())
        else:
            out.append(((grid - centre).abs() <= radius).all(0).float())
    return torch.stack(out)[:, None]


def write_y_up_post(path: Path) -> Path:
    """A closed box 1 x 4 x 1 as an ``.obj`` at ``path``: a post standing along y, the up axis
    of ShapeNet and most ``.obj`` files. Voxelized z-up it lies on its side, along array axis 1."""
    corners = "".join(f"v {x} {y} {z}\n" for x in (0, 1) for y in (0, 4) for z in (0, 1))
    # Each side a quad, wound outwards, 1-based.
    sides = ("1 2 4 3", "5 7 8 6", "1 5 6 2", "3 4 8 7", "1 3 7 5", "2 6 8 4")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(corners + "".join(f"f {side}\n" for side in sides))
    return path


def trained_y_up(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Every voxel model ``module`` loads (its ``load_voxel_model``) read as one trained on
    y-up meshes (``data.up_axis: 1``)."""
    loader = importlib.import_module(module)
    load = loader.load_voxel_model

    def y_up(*args, **kwargs):
        energy, config, state = load(*args, **kwargs)
        data = dataclasses.replace(config.data, up_axis=1)
        return energy, dataclasses.replace(config, data=data), state

    monkeypatch.setattr(loader, "load_voxel_model", y_up)


def spans(occupied: np.ndarray | Tensor) -> tuple[int, ...]:
    """How many voxels the occupied (True) ones of a grid span along each axis."""
    index = np.argwhere(np.asarray(occupied))
    return tuple(int(n) for n in index.max(axis=0) - index.min(axis=0) + 1)


def tiny_energy(seed: int = 0) -> ConvNetEnergy:
    """A two-layer grey texture energy, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return image_energy("texture", in_channels=1, layers=[[8, 3, 1], [8, 3, 1]],
                        reference_sigma=0.5)


def tiny_data(n: int = 3, size: int = 16) -> Tensor:
    """``(n, 1, size, size)`` uniform in ``[-1, 1]``, always the same."""
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(100)) * 2 - 1


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> Tensor:
    return torch.randn(shape, generator=gen(seed), dtype=dtype)


GRIDS = [(1, 1), (4, 4), (8, 8)]  # base, then the two modelled grids


def assert_same_step_inside_no_grad(make_trainer) -> None:
    """Two trainers made alike take the same first step, one of them inside torch.no_grad()
    (whose backward passes failed there before the steps turned autograd back on)."""
    outside, inside = make_trainer(), make_trainer()
    stats = outside.step()
    with torch.no_grad():
        assert inside.step() == stats


class HostTraffic(TorchDispatchMode):
    """Counts, while active, the operations that stop a GPU's queue until the host has what it
    asked for, run on any device: ``reads`` of a value back to the host (``.item()``,
    ``bool()``, ``int()``, ``if`` of a tensor), ``scans`` (``nonzero`` and indexing by a bool
    mask, whose result's size is read back) and ``uploads`` (copies from the CPU to the meta
    device, which stands in for a GPU here: a copy from the host to a GPU waits for its
    queue). On the CPU none of them waits: the counts say what would on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = self.scans = self.uploads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        elif func is torch.ops.aten.nonzero.default or (
                func is torch.ops.aten.index.Tensor
                and any(t.dtype == torch.bool for t in inputs[1:])):
            self.scans += 1
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            tensors = inputs + [t for t in tree_leaves(result) if isinstance(t, Tensor)]
            if (any(t.device.type == "cpu" for t in inputs)
                    and any(t.device.type == "meta" for t in tensors)):
                self.uploads += 1
        return result


def pattern_images(n: int = 8, *, seed: int = 0) -> Tensor:
    """``(n, 3, 8, 8)`` in [-1, 1]: a random colour per image plus horizontal stripes of period
    4 whose phase differs per image, so every grid of the pyramid has its own structure."""
    g = gen(seed)
    colour = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    rows = torch.arange(8).reshape(1, 1, 8, 1)
    phase = torch.randint(0, 4, (n, 1, 1, 1), generator=g)
    stripes = 0.4 * torch.cos(torch.pi * (rows + phase) / 2)
    return (colour + stripes).expand(n, 3, 8, 8).clone()


def multigrid_config_dict() -> dict:
    """The resolved config a multi-grid checkpoint must carry (plain data)."""
    return config_to_dict(ExperimentConfig(
        data=DataConfig(kind="objects", size=8, channels=3),
        multigrid=MultiGridConfig(grids=(GridConfig(size=4), GridConfig(size=8))),
    ))


def make_multigrid_trainer(*, init_seed: int = 0, consistent: bool = False) -> MultiGridTrainer:
    torch.manual_seed(init_seed)
    energies = [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1], [4, 3, 1, 1]],
                             reference_sigma=0.5) for _ in GRIDS[1:]]
    samplers = [Langevin(n_steps=3, step_size=0.1, clamp=(-1.0, 1.0)),
                Langevin(n_steps=2, step_size=0.05, clamp=(-1.0, 1.0))]
    return MultiGridTrainer(energies, samplers, pattern_images(), GRIDS, consistent=consistent,
                            train=TrainConfig(batch_size=3, lr=0.01), generator=gen(0),
                            config=multigrid_config_dict())


# Every grid's model and chains kept tiny: the multi-grid CLI runs take about a second each.
MULTIGRID_SAMPLER = {"n_steps": 2, "step_size": 0.05}
MULTIGRID_TRAIN = {"n_iterations": 2, "batch_size": 2, "sample_every": 1, "checkpoint_every": 0}


def write_config(path: Path, data: dict, multigrid: dict, *, out: Path) -> Path:
    config = {"name": "multigrid", "device": "cpu", "out_dir": str(out), "data": data,
              "sampler": MULTIGRID_SAMPLER, "train": MULTIGRID_TRAIN, "multigrid": multigrid}
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def tiny_texture_run(root: Path, *extra: str) -> Path:
    """A one-iteration 8x8 grey texture model trained into ``root / 'run'``."""
    config = load_config(None, ["data.path=builtin:brick", "data.size=8", "data.channels=1",
                                "model.arch=texture", "model.layers=[[2, 3, 1]]",
                                f"out_dir={root / 'run'}", "device=cpu", "train.n_iterations=1",
                                "train.sample_every=0", "sampler.n_steps=1",
                                "chains.chains_per_example=1", *extra])
    return train(config, progress=False)


def assert_a_sample_too_large_is_refused_before_drawing(run: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    """``synthesize`` of 3 samples from ``run`` (a model whose samples hold over 500 entries
    together) fails naming the count once ``MAX_ENTRIES`` is 500, before anything is drawn or
    its output folder made."""
    monkeypatch.setattr(checks, "MAX_ENTRIES", 500)
    with pytest.raises(ValueError, match="3 samples makes a"):
        synthesize(run, tmp_path / "out", n_samples=3, device="cpu")
    assert not (tmp_path / "out").exists()


def png_size(path: Path) -> tuple[int, int]:
    """The (width, height) of a PNG file."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def gif_frame_ms(path: Path) -> int:
    """How long a GIF shows its first frame, in ms (every preview's frames last as long)."""
    with Image.open(path) as gif:
        return gif.info["duration"]


def read_events(log_dir: Path):
    """The TensorBoard events written into ``log_dir``, every one kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0,
                                                           "tensors": 0})
    events.Reload()
    return events


def captured(monkeypatch, module: str, name: str) -> dict:
    """Replace ``name`` of ``module`` (a writer called ``(items, path, **options)``) with one
    that records what it was given: ``items`` and the options."""
    drawn: dict = {}

    def fake(items, path, **options):
        drawn.update(items=items, **options)
        return Path(path)

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return drawn


def linked_copy(cache: Path, name: str, target: Path) -> Path:
    """A copy of the HDF5 file ``cache`` beside it, ``linked_<name>.h5``, whose dataset ``name``
    is an external link to the same dataset of ``target``: data a reader must not take from
    another file."""
    import h5py

    linked = cache.with_name(f"linked_{name}.h5")
    linked.write_bytes(cache.read_bytes())
    with h5py.File(linked, "r+") as h5:
        del h5[name]
        h5[name] = h5py.ExternalLink(str(target), f"/{name}")
    return linked


def write_mat_v73(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A .mat as MATLAB's save -v7.3 writes it: HDF5 behind a 512-byte text header, one dataset
    per variable, column-major (h5py sees the axes reversed), its class in an attribute."""
    import h5py

    classes = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "logical",
               np.dtype(np.float64): "double"}
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5.create_group("#refs#")["a"] = np.zeros(2, np.uint64)  # an empty cell's marker
        for name, array in variables.items():
            dataset = h5.create_dataset(name, data=array.T)
            dataset.attrs["MATLAB_class"] = np.bytes_(classes[array.dtype])
    with open(path, "r+b") as file:
        file.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116)
                   + bytes(8) + b"\x00\x02IM")
    return path


def fill(path: Path, *, leaving: int) -> None:
    """Write ``path`` until its disk is full, then free ``leaving`` bytes of it."""
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(bytes(4096))
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
        file.truncate(file.tell() - leaving)


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """In the block, a write past the first ``size`` bytes of a file fails with EFBIG ("File
    too large") at the system call, as a full disk or a quota fails it whatever library writes;
    no mount needed (RLIMIT_FSIZE, SIGXFSZ ignored). The limit binds the whole process, pytest's
    own output to a log file too: it must end with the block, before pytest reports the test."""
    resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is a POSIX limit")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # its default ends the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


ANOTHER_CACHE = b"the other process's cache"


def cache_written_meanwhile(monkeypatch: pytest.MonkeyPatch, module: str, out: Path) -> None:
    """Make the cache builder of ``module`` (``stgconv.data.video`` / ``.voxel``) find
    :data:`ANOTHER_CACHE` at ``out`` once its build has begun: another prepare.py of a sweep
    that finished first."""
    builder = importlib.import_module(module)
    write_cache = builder._write_cache

    def built_meanwhile_by_another(h5, *args, **kwargs) -> None:
        out.write_bytes(ANOTHER_CACHE)
        write_cache(h5, *args, **kwargs)

    monkeypatch.setattr(builder, "_write_cache", built_meanwhile_by_another)


def _torch_settings() -> dict[str, object]:
    return {"intra-op threads": torch.get_num_threads(), "default dtype": torch.get_default_dtype()}


@contextmanager
def torch_settings_kept() -> Iterator[None]:
    """The block leaves torch's process-wide settings (its intra-op thread count, its default
    dtype) as it found them; one that does not has them set back, then fails with an
    AssertionError naming them. A setting left changed binds every later test of the session:
    a bench script's ``main`` run in-process set one thread for all the files after
    test_bench.py, so what a test saw depended on which files ran before it."""
    before = _torch_settings()
    yield
    after = _torch_settings()
    if after != before:
        torch.set_num_threads(before["intra-op threads"])
        torch.set_default_dtype(before["default dtype"])
        changed = ", ".join(f"{name} {before[name]} -> {after[name]}" for name in before
                            if after[name] != before[name])
        raise AssertionError(f"torch's process-wide settings left changed ({changed}): set "
                             "them back, as later tests would run under them")


def refused_before_building(monkeypatch: pytest.MonkeyPatch, module: str,
                            build: Callable[[Path], object], out: Path) -> None:
    """``build(out)``, a cache builder of ``module`` called with ``overwrite=False`` where a
    cache is already at ``out``, is refused before its build begins (a ModelNet tree's
    minutes), naming the option that replaces it, and the cache there is kept as it was; a
    folder at ``out`` is refused before the build as well."""
    out.write_bytes(ANOTHER_CACHE)

    def begun(*_: object, **__: object) -> None:
        pytest.fail(f"{module} began a build of {out}, which exists")

    monkeypatch.setattr(importlib.import_module(module), "_write_cache", begun)
    with pytest.raises(FileExistsError, match="it exists; pass overwrite=True") as caught:
        build(out)
    assert caught.value.filename == str(out) and out.read_bytes() == ANOTHER_CACHE
    out.unlink()
    out.mkdir()  # a folder where the cache goes is refused before the build too
    with pytest.raises(ValueError, match=f"out_path {re.escape(str(out))} is a folder, not a"):
        build(out)
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
