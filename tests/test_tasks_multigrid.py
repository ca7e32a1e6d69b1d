"""Multi-grid runs end to end (``stgconv train`` / ``stgconv synthesize`` and
``stgconv.tasks.synthesize_multigrid``) for images, videos and voxels on tiny files in tmp_path:
the run folder's pyramids and per-grid outputs, ``--resume``, options that do not apply, seeding.

The sampler is tested in test_mcmc_multigrid.py, the trainer in test_train.py, the multigrid
config section (and its CLI errors) in test_config.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import (assert_a_sample_too_large_is_refused_before_drawing, gif_frame_ms, run_cli,
                   write_config)
from PIL import Image

from stgconv.checkpoint import load_checkpoint, load_multigrid
from stgconv.cli import main
from stgconv.io.video import load_video, save_video
from stgconv.tasks import synthesize, synthesize_multigrid


def image_folder(root: Path, n: int = 4) -> Path:
    """``n`` 8x8 RGB PNGs: a colour gradient, different per image."""
    root.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 8, dtype=np.float64)
    for i in range(n):
        pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (8, 1)),
                           np.full((8, 8), 60.0 * i)], axis=-1)
        Image.fromarray(pixels.astype(np.uint8)).save(root / f"image_{i}.png")
    return root


def video_folder(root: Path, n: int = 2, *, fps: float = 25) -> Path:
    """``n`` clips of 6 frames at ``fps``, 3 x 8 x 8, each a bright bar moving right."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clip = torch.full((3, 6, 8, 8), -0.8)
        for t in range(6):
            clip[:, t, :, (t + 2 * i) % 8] = 0.8
        save_video(clip, root / f"clip_{i}.mkv", fps=fps)
    return root


def voxel_file(path: Path, n: int = 4) -> Path:
    """``.npz`` with ``X`` ``(n, 8, 8, 8)`` {0, 1}: boxes of different extents."""
    grids = np.zeros((n, 8, 8, 8), np.uint8)
    for i in range(n):
        grids[i, 1:7 - i % 2, 2:6, 1 + i % 3:7] = 1
    np.savez(path, X=grids)
    return path


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


TINY_IMAGE_NETS = [
    {"size": 4, "model": {"arch": "texture", "layers": [[4, 3, 1, 1], [4, 3, 1, 1]]}},
    # The finest grid with a fully connected head, whose input size comes from the grid, and
    # chains of its own.
    {"size": 8, "model": {"arch": "object", "layers": [[4, 3, 2, 1]]},
     "sampler": {"n_steps": 3, "step_size": 0.03}},
]


@pytest.mark.parametrize("arch, said", [
    ("texture", "the examples of multigrid.grids[0], at multigrid.grids[0].size 2, do not fit "
                "multigrid.grids[0].model.arch 'texture': input size (2, 2) is smaller than the "
                "network's receptive field: it needs at least (3, 3); raise "
                "multigrid.grids[0].size or give multigrid.grids[0].model.layers with smaller "
                "filters or strides"),
    # A fully connected head is sized by the grid as the net is built.
    ("object", "multigrid.grids[0].model, at multigrid.grids[0].size 2: input_size (2, 2) is "
               "too small for these layers: they need at least (3, 3)"),
])
def test_a_grid_smaller_than_its_net_is_refused_before_training(tmp_path: Path, capsys,
                                                                arch: str, said: str) -> None:
    """Refused at the grid's first chain in the net's words ("input size (2, 2) is smaller
    ..."), naming no grid, as single-grid training did before its examples were checked."""
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images")), "size": 8,
            "channels": 3}
    grids = [{"size": 2, "model": {"arch": arch, "layers": [[4, 3, 1]]}}, TINY_IMAGE_NETS[1]]
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, {"grids": grids}, out=run)
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2 and err == f"stgconv train: error: {said}\n", err
    assert not run.exists()


@pytest.mark.parametrize("kind", ["objects", "video_frames"])
def test_image_multigrid_train_and_synthesize(tmp_path: Path, kind: str, capsys,
                                             monkeypatch) -> None:
    if kind == "objects":
        data = {"kind": "objects", "path": str(image_folder(tmp_path / "images")), "size": 8,
                "channels": 3}
    else:  # every frame of every clip is one image
        data = {"kind": "video_frames", "path": str(video_folder(tmp_path / "clips")), "size": 8,
                "channels": 3, "frames": 2}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, {"grids": TINY_IMAGE_NETS}, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    # 2 iterations of sample_every 1: the finest grid's chains after each, and the pyramids.
    for name in ("checkpoint.pt", "config.yaml", "observed.png", "samples.png",
                 "samples_000001.png", "samples_000002.png"):
        assert (run / name).is_file(), name
    n = 4  # 4 images (objects) or 2 clips x 2 frames (video_frames)
    # One row per grid (1x1, 4x4, 8x8, nearest up-sampled to 8x8), one column per example.
    assert png_size(run / "observed_pyramid.png") == (n * 10 + 2, 3 * 10 + 2)
    # The training chains exist on the modelled grids only (4x4, 8x8), a batch of 2 each.
    assert png_size(run / "samples_pyramid.png") == (2 * 10 + 2, 2 * 10 + 2)
    energies, resolved, state = load_multigrid(run, device="cpu")
    assert state["iteration"] == 2 and len(energies) == 2
    assert [g.model.image_size for g in resolved.multigrid.grids] == [4, 8]
    assert all(g.model.in_channels == 3 for g in resolved.multigrid.grids)
    assert state["base"].shape == (n, 3, 1, 1)

    task = importlib.import_module("stgconv.tasks.synthesize")
    sampler, steps = task.multigrid_sampler, []

    def recording(config, *, n_steps=None):
        steps.append(n_steps)
        return sampler(config, n_steps=n_steps)

    monkeypatch.setattr(task, "multigrid_sampler", recording)
    code, err = run_cli(["synthesize", str(run), "-n", "3", "--steps", "1"], capsys)
    assert code == 0, err
    assert steps == [1]  # every grid's chain as long as --steps says
    out = run / "synthesis"
    assert png_size(out / "synthesized.png") == (3 * 10 + 2, 10 + 2)
    assert png_size(out / "synthesized_grid1.png") == (3 * 6 + 2, 6 + 2)  # 4x4 samples
    coarse = np.load(out / "synthesized_grid1.npy")  # every grid for programs to score
    assert coarse.shape == (3, 3, 4, 4) and coarse.dtype == np.float32
    assert coarse.min() >= 0 and coarse.max() <= 255 and coarse.max() > 1  # grey levels
    assert png_size(out / "pyramid.png") == (3 * 10 + 2, 3 * 10 + 2)
    assert not (out / "synthesized_grid2.png").exists()  # the finest grid is `synthesized`


def test_every_grids_net_takes_the_datas_channels_and_the_grids_size(tmp_path: Path,
                                                                       capsys) -> None:
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images", n=2)), "size": 8,
            "channels": 1}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, {"grids": TINY_IMAGE_NETS}, out=run)
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    _, resolved, _ = load_multigrid(run, device="cpu")
    assert [(g.model.in_channels, g.model.image_size)
            for g in resolved.multigrid.grids] == [(1, 4), (1, 8)]
    # What the data decided is no difference from the config file the run was trained from.
    code, err = run_cli(["train", str(config), "--resume", "--set", "train.n_iterations=3",
                         "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_a_grids_image_size_other_than_its_size_is_refused(tmp_path: Path, capsys) -> None:
    """It was replaced by the grid's size without a word."""
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images", n=2)), "size": 8,
            "channels": 1}
    grids = [TINY_IMAGE_NETS[0], {**TINY_IMAGE_NETS[1], "model": {
        **TINY_IMAGE_NETS[1]["model"], "image_size": 16}}]
    config = write_config(tmp_path / "config.yaml", data, {"grids": grids}, out=tmp_path / "run")
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2 and "multigrid.grids[1].model.image_size is 16, but the data give 8 " \
        "(multigrid.grids[1].size)" in err


def test_a_consistent_run_shows_its_finest_chains_and_keeps_them_on_the_grid_below(
        tmp_path: Path, capsys, monkeypatch) -> None:
    from stgconv.mcmc.starts import SuperResolutionStart
    from stgconv.train import MultiGridTrainer

    fitted = []
    fit = MultiGridTrainer.fit
    monkeypatch.setattr(MultiGridTrainer, "fit", lambda self, *args, **kwargs: fitted.append(
        self) or fit(self, *args, **kwargs))
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images", n=2)), "size": 8,
            "channels": 3}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data,
                          {"grids": TINY_IMAGE_NETS, "consistent": True}, out=run)
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    assert all(isinstance(t.chains, SuperResolutionStart) for t in fitted[0].trainers)
    assert png_size(run / "samples.png") == (2 * 10 + 2, 10 + 2)  # 8x8 chains, not 4x4


def test_a_fitted_base_needs_two_examples_before_training(tmp_path: Path, capsys) -> None:
    """multigrid.base_rank on one example trained to the end, and only synthesis failed."""
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images", n=1)), "size": 8,
            "channels": 3}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data,
                          {"grids": TINY_IMAGE_NETS, "base_rank": 0}, out=run)
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2 and "needs at least 2; this run has 1" in err, err
    assert not run.exists()


def test_video_multigrid_refines_time_too(tmp_path: Path, capsys) -> None:
    """Clips of 4 frames at 8x8 through 1x1x1 -> 2x4x4 (a temporal grid) -> 4x8x8, read at
    their 10 fps. Every preview plays at that rate, the temporal grid's frames (each the mean
    of 2) for 200 ms; the pyramids and coarse grids played at 25 fps whatever data.fps said."""
    data = {"kind": "video", "path": str(video_folder(tmp_path / "clips", fps=10)), "size": 8,
            "channels": 3, "frames": 4, "fps": 10}
    st = {"arch": "st_small", "layers": [[4, [3, 3, 3], 1, 1], [4, [3, 3, 3], 1, 1]]}
    multigrid = {"base_frames": 1, "grids": [{"size": 4, "frames": 2, "model": st},
                                             {"size": 8, "model": st}]}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    for name in ("observed_pyramid.gif", "samples_pyramid.gif", "samples.gif", "samples.mp4"):
        assert (run / name).is_file(), name
    for name in ("observed_pyramid.gif", "samples_pyramid.gif", "samples.gif"):
        assert gif_frame_ms(run / name) == 100, name
    state = load_checkpoint(run)
    assert state["grid_sizes"] == [[1, 1, 1], [2, 4, 4], [4, 8, 8]]
    assert state["base"].shape == (2, 3, 1, 1, 1)

    code, err = run_cli(["synthesize", str(run), "-n", "2"], capsys)
    assert code == 0, err
    for name in ("synthesized.gif", "synthesized.mp4", "synthesized_grid1.gif", "pyramid.gif"):
        assert (run / "synthesis" / name).is_file(), name
    frames = load_video(run / "synthesis" / "synthesized_grid1.gif")
    assert frames.shape[1] == 2  # the temporal grid's clips have 2 frames
    assert gif_frame_ms(run / "synthesis" / "synthesized_grid1.gif") == 200
    for name in ("synthesized.gif", "pyramid.gif"):
        assert gif_frame_ms(run / "synthesis" / name) == 100, name
    assert np.load(run / "synthesis" / "synthesized_grid1.npy").shape == (2, 3, 2, 4, 4)


def test_a_video_grid_shorter_than_its_net_takes_is_named_before_training(tmp_path: Path,
                                                                        capsys) -> None:
    """A temporal grid of 2 frames under a net of 3-frame filters was refused once the progress
    bar had started, as "input size (2, 4, 4) is smaller than the network's receptive field",
    naming no grid."""
    data = {"kind": "video", "path": str(video_folder(tmp_path / "clips")), "size": 8,
            "channels": 3, "frames": 4}
    st = {"arch": "st_small", "layers": [[4, [3, 3, 3], 1]]}
    multigrid = {"base_frames": 1, "grids": [{"size": 4, "frames": 2, "model": st},
                                             {"size": 8, "model": st}]}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=run)
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2 and "the examples of multigrid.grids[0], at multigrid.grids[0].frames 2" \
        in err, err
    assert "input size (2, 4, 4) is smaller than the network's receptive field" in err, err
    assert not run.exists()


def test_voxel_multigrid_train_and_synthesize(tmp_path: Path, capsys) -> None:
    """Shapes of 8^3 through 1^3 -> 4^3 -> 8^3, the model seeing occupancy minus its mean."""
    data = {"kind": "voxels", "path": str(voxel_file(tmp_path / "shapes.npz")), "size": 8,
            "mean": "auto"}
    multigrid = {"grids": [
        {"size": 4, "model": {"arch": "desc32_small", "layers": [[4, 3, 1, 1]]}},
        {"size": 8, "model": {"arch": "desc32_small", "layers": [[4, 4, 2, 1]]}},
    ]}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    for name in ("observed_pyramid.png", "samples_pyramid.png", "samples.png", "samples.npy"):
        assert (run / name).is_file(), name
    energies, resolved, state = load_multigrid(run, device="cpu")
    assert [e.input_size for e in energies] == [(4, 4, 4), (8, 8, 8)]
    mean = resolved.data.mean
    assert isinstance(mean, float) and 0 < mean < 1
    # The base grid holds each shape's occupancy in the model's units.
    shapes = torch.from_numpy(np.load(tmp_path / "shapes.npz")["X"]).float()
    torch.testing.assert_close(state["base"].flatten(), shapes.mean((1, 2, 3)) - mean)

    code, err = run_cli(["synthesize", str(run), "-n", "2"], capsys)
    assert code == 0, err
    out = run / "synthesis"
    for name in ("synthesized.png", "pyramid.png"):
        png_size(out / name)
    # A 4^3 grid's block means rarely reach the render's 0.5 level: values only, no render.
    assert not (out / "synthesized_grid1.png").exists()
    grids = np.load(out / "synthesized_grid1.npy")
    assert grids.shape == (2, 4, 4, 4) and grids.min() >= 0 and grids.max() <= 1
    assert np.load(out / "synthesized.npy").shape == (2, 8, 8, 8)
    # base_rank: the 1^3 bases come from a Gaussian fitted to the training shapes' occupancy.
    drawn = write_config(tmp_path / "drawn.yaml", data, {**multigrid, "base_rank": 0},
                         out=tmp_path / "drawn")
    code, err = run_cli(["train", str(drawn), "--quiet"], capsys)
    assert code == 0, err
    code, err = run_cli(["synthesize", str(tmp_path / "drawn"), "-n", "3"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "drawn" / "synthesis" / "synthesized.npy").shape == (3, 8, 8, 8)


def test_cli_resume_continues_a_multigrid_run(tmp_path: Path) -> None:
    """``train --resume`` up to 4 iterations after 2 ends where 4 straight iterations do."""
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images")), "size": 8,
            "channels": 3}
    config = str(write_config(tmp_path / "config.yaml", data, {"grids": TINY_IMAGE_NETS},
                              out=tmp_path / "unused"))
    four = ["--set", "train.n_iterations=4", "--quiet"]
    assert main(["train", config, *four, "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", config, "--quiet", "--out", str(tmp_path / "resumed")]) == 0
    assert load_checkpoint(tmp_path / "resumed")["iteration"] == 2
    assert main(["train", config, *four, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    straight, resumed = (load_checkpoint(tmp_path / name) for name in ("straight", "resumed"))
    assert resumed["iteration"] == 4
    for k, (a, b) in enumerate(zip(straight["grids"], resumed["grids"]), start=1):
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), f"grid {k}: {name}"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multigrid")
    data = {"kind": "objects", "path": str(image_folder(root / "images")), "size": 8,
            "channels": 3}
    config = write_config(root / "config.yaml", data, {"grids": TINY_IMAGE_NETS}, out=root / "run")
    assert main(["train", str(config), "--quiet"]) == 0
    return root / "run"


@pytest.mark.parametrize("args", [["--size", "16"], ["--frames", "4"], ["--start", "chains"]])
def test_synthesize_options_that_do_not_apply_to_multigrid(image_run: Path, capsys,
                                                           args: list[str]) -> None:
    code, err = run_cli(["synthesize", str(image_run), "-n", "2", *args], capsys)
    assert code == 2
    assert "multi-grid" in err and "do not apply" in err, err


def test_synthesize_refuses_a_multigrid_sample_too_large_before_drawing_it(
        image_run: Path, tmp_path: Path, monkeypatch) -> None:
    # Three 3x8x8 samples are 576 entries.
    assert_a_sample_too_large_is_refused_before_drawing(image_run, tmp_path, monkeypatch)


def test_synthesize_multigrid_is_seeded(image_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The seed draws the chains' noise and their starts from the base grid, called directly
    or through synthesize."""
    task = importlib.import_module("stgconv.tasks.synthesize")
    bases, seeds = task.multigrid_bases, []

    def recording(*args, generator, **kwargs):
        seeds.append(generator.initial_seed())
        return bases(*args, generator=generator, **kwargs)

    monkeypatch.setattr(task, "multigrid_bases", recording)
    energies, config, state = load_multigrid(image_run, device="cpu")
    outs = [synthesize_multigrid(energies, config, state["base"], tmp_path / name, n_samples=2,
                                 seed=seed) for name, seed in [("a", 0), ("b", 0), ("c", 1)]]
    pixels = [np.asarray(Image.open(out / "synthesized.png")) for out in outs]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])
    synthesize(image_run, tmp_path / "d", n_samples=2, n_steps=1, seed=5, device="cpu")
    assert seeds == [0, 0, 1, 5]  # synthesize passes its own seed on


def test_synthesize_refuses_classes_for_a_multigrid_model(image_run: Path, tmp_path: Path
                                                          ) -> None:
    """It has no classifier: the classes would be silently ignored."""
    with pytest.raises(ValueError, match="is not a classifier"):
        synthesize(image_run, tmp_path / "out", n_samples=1, classes=[0], device="cpu")
    assert not (tmp_path / "out").exists()
