"""The tasks package as a library (``stgconv.tasks``): training and synthesis run the same code for
every modality, and each modality's outputs are what it says. The command line over them is in
``test_cli.py``; recovery and the voxel tasks have files of their own."""

from __future__ import annotations

import errno
import fcntl
import importlib
import importlib.util
import io
import math
import os
import re
import shutil
import sys
import types
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from _tiny import (ROOT, SR_CONFIG, TINY, boxes_and_balls, captured, file_size_limit, png_size,
                   read_events, tiny_texture_run)
from PIL import Image

from stgconv.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stgconv.cli import main
from stgconv.config import TrainConfig, load_config
from stgconv.energy import image_energy
from stgconv.energy.rbm import RBM
from stgconv.io.atomic import WriteError, write_error
from stgconv.io.video import save_video
from stgconv.mcmc import DataGaussian, DataStart, Langevin
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.gibbs import BlockGibbs
from stgconv.evaluation.classification import cross_validate, eval_classification
from stgconv.evaluation.voxel import eval_recovery_3d, eval_super_resolution
from stgconv.tasks import demo, synthesize, train
from stgconv.tasks.fill_prior import train_fill_prior
from stgconv.tasks.recover_video import load_known
from stgconv.tasks.shortrun import interpolate, reconstruct
from stgconv.tasks.synthesize import synthesize_cooperative, synthesize_multigrid
from stgconv.tasks.voxel import recover_shape, super_resolve
from stgconv.tasks.train import ExistingRun
from stgconv.train import Trainer


def video_clip(path: Path) -> Path:
    """A 6-frame 8x8 grey clip: a bright bar moving right."""
    clip = torch.full((1, 6, 8, 8), -0.8)
    for t in range(6):
        clip[:, t, :, t] = 0.8
    return save_video(clip, path)


def shapes_file(path: Path) -> Path:
    np.savez(path, X=boxes_and_balls(4, 8)[:, 0].numpy().astype(np.uint8))
    return path


def data_overrides(modality: str, root: Path) -> list[str]:
    """``--set`` overrides for a tiny experiment of ``modality`` on files written under ``root``."""
    if modality == "image":
        return ["data.path=builtin:brick", "data.size=24", "model.layers=[[4, 5, 2], [4, 3, 1]]"]
    if modality == "video":
        # data.fps twice the clip's 25 (each frame taken twice): previews must play at it.
        return [f"data.path={video_clip(root / 'clip.mkv')}", "data.kind=video", "data.size=8",
                "data.frames=6", "data.fps=50", "model.arch=st_small",
                "model.layers=[[4, [3, 3, 3], 1, 1]]"]
    return [f"data.path={shapes_file(root / 'shapes.npz')}", "data.kind=voxels", "data.size=8",
            "data.mean=auto", "model.arch=desc32_small", "model.layers=[[4, 4, 2, 1]]",
            "model.reference_sigma=0.5", "sampler.clamp=[0.0, 1.0]"]


# What `synthesize` writes, per modality.
WRITTEN = {
    "image": {"synthesized.png", "synthesized.npy"},
    "video": {"synthesized.gif", "synthesized.mp4", "synthesized.npy"},
    "voxels": {"synthesized.png", "synthesized.npy"},
}


@pytest.mark.parametrize("modality", list(WRITTEN))
def test_train_then_synthesize_every_modality(modality: str, tmp_path: Path) -> None:
    written = WRITTEN[modality]
    config = load_config(None, [*data_overrides(modality, tmp_path), f"out_dir={tmp_path / 'run'}",
                                "device=cpu", "train.n_iterations=2", "train.sample_every=1",
                                "sampler.n_steps=2", "chains.chains_per_example=2"])
    run = train(config, progress=False)
    state = load_checkpoint(run)
    assert state["iteration"] == 2
    if modality == "voxels":  # the model's units: the training mean is resolved and stored
        assert 0.0 < state["config"]["data"]["mean"] < 1.0
    out = synthesize(run, tmp_path / "synthesis", n_samples=2, n_steps=2, device="cpu")
    assert {p.name for p in out.iterdir()} == written
    samples = np.load(out / "synthesized.npy")  # every sample, in the data's value range
    assert samples.dtype == np.float32 and len(samples) == 2
    assert samples.ndim == {"image": 4, "video": 5, "voxels": 4}[modality]
    # Occupancy, or grey levels 0-255 as the image and video files hold them (noise starts
    # reach well past the model's [-1, 1] there).
    low, high = (0.0, 1.0) if modality == "voxels" else (0.0, 255.0)
    assert samples.min() >= low and samples.max() <= high
    assert modality == "voxels" or samples.max() > 100
    chained = synthesize(run, tmp_path / "chains", n_samples=2, n_steps=1, start="chains",
                         device="cpu")
    assert {p.name for p in chained.iterdir()} == written
    if modality == "video":
        # The ST model is stationary in time: it samples a clip of any length.
        longer = synthesize(run, tmp_path / "longer", n_samples=1, n_steps=1, frames=9,
                            device="cpu")
        assert np.load(longer / "synthesized.npy").shape == (1, 1, 9, 8, 8)
        # Played at data.fps (it was 25 whatever the data's rate).
        for gif in (run / "observed.gif", run / "samples_000002.gif", run / "samples.gif",
                    out / "synthesized.gif"):
            with Image.open(gif) as frames:
                assert frames.info["duration"] == 20, gif


def test_previews_of_clips_read_at_their_own_rate_play_at_it(tmp_path: Path) -> None:
    """With data.fps null the clips are read at their source's rate, 10 fps here, and their
    previews played at 25 (2.5 times too fast): they play at the source's rate."""
    clip = torch.full((1, 6, 8, 8), -0.8)
    clip[:, :, 2:5, 2:5] = 0.8
    path = save_video(clip, tmp_path / "at10.mkv", fps=10)
    config = load_config(None, [*data_overrides("video", tmp_path), f"data.path={path}",
                                "data.fps=null", f"out_dir={tmp_path / 'run'}", "device=cpu",
                                "train.n_iterations=1", "sampler.n_steps=1",
                                "chains.chains_per_example=1"])
    run = train(config, progress=False)
    out = synthesize(run, tmp_path / "synthesis", n_samples=1, n_steps=1, device="cpu")
    for gif in (run / "observed.gif", run / "samples.gif", out / "synthesized.gif"):
        with Image.open(gif) as frames:
            assert frames.info["duration"] == 100, gif


def test_samples_smaller_than_the_net_takes_name_the_option_that_asked(tmp_path: Path) -> None:
    """--frames 2 of a net that takes 3 was refused as "input size (2, 8, 8) is smaller than
    the network's receptive field", naming no option; nothing is written."""
    config = load_config(None, [*data_overrides("video", tmp_path), "data.fps=null",
                                "model.layers=[[4, [3, 3, 3], 1]]", f"out_dir={tmp_path / 'run'}",
                                "device=cpu", "train.n_iterations=1", "sampler.n_steps=1",
                                "chains.chains_per_example=1"])
    run = train(config, progress=False)
    for asked, said in (({"frames": 2}, "(frames=2) are of size (2, 8, 8)"),
                        ({"size": 2, "frames": 4}, "(size=2, frames=4) are of size (4, 2, 2)")):
        with pytest.raises(ValueError, match=re.escape(
                f"the samples asked for {said}, smaller than the network's receptive field: it "
                "needs at least (3, 3, 3)")):
            synthesize(run, tmp_path / "out", n_samples=1, n_steps=1, device="cpu", **asked)
    assert not (tmp_path / "out").exists()


def test_a_synthesis_that_cannot_write_its_array_keeps_the_previous_one_whole(
        tmp_path: Path, monkeypatch) -> None:
    """A full disk at synthesized.npy: the new synthesized.png is not put beside the old array;
    the previous synthesis stays as it was, both files."""
    run = tiny_texture_run(tmp_path)
    out = synthesize(run, tmp_path / "synthesis", n_samples=2, n_steps=1, device="cpu")
    before = {name: (out / name).read_bytes() for name in WRITTEN["image"]}

    def full_disk(*_, **__) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(OSError, match="synthesized.npy"):
        synthesize(run, out, n_samples=3, n_steps=1, seed=1, device="cpu")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_synthesis_removes_an_earlier_ones_files_that_it_does_not_write(
        tmp_path: Path) -> None:
    """An image model's synthesis into a folder where a video model's (or a multi-grid or
    cooperative model's) was: its GIF and MP4, coarser grids, pyramid and proposals stayed
    beside the new synthesized.png and .npy, showing other samples; they go, the user's other
    files stay."""
    run = tiny_texture_run(tmp_path)
    out = tmp_path / "synthesis"
    out.mkdir()
    earlier = ["synthesized.gif", "synthesized.mp4", "synthesized_grid1.npy", "pyramid.png",
               "proposals.npy", "synthesized.npy"]
    kept = ["notes.txt", "synthesized_old.png", "my_pyramid.png"]
    for name in earlier + kept:
        (out / name).write_bytes(b"earlier")
    synthesize(run, out, n_samples=2, n_steps=1, device="cpu")
    assert {p.name for p in out.iterdir()} == WRITTEN["image"] | set(kept)
    # A folder that held no synthesis (no synthesized.npy) keeps a user's pyramid.png.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "pyramid.png").write_bytes(b"a photograph")
    synthesize(run, mine, n_samples=2, n_steps=1, device="cpu")
    assert {p.name for p in mine.iterdir()} == WRITTEN["image"] | {"pyramid.png"}


def test_an_interpolation_removes_an_earlier_ones_files_that_it_does_not_write(
        tmp_path: Path) -> None:
    """As synthesize: a cooperative video model's interpolation.gif stayed beside an image
    model's new interpolation.png and .npy."""
    from stgconv.tasks import interpolate

    run = tiny_texture_run(tmp_path)
    out = tmp_path / "path"
    out.mkdir()
    for name in ("interpolation.gif", "interpolation.mp4", "interpolation.npy",
                 "interpolation_notes.txt"):
        (out / name).write_bytes(b"earlier")
    with pytest.warns(RuntimeWarning, match="not from noise starts"):
        interpolate(run, out, n_points=2, device="cpu")
    assert {p.name for p in out.iterdir()} == {"interpolation.png", "interpolation.npy",
                                               "interpolation_notes.txt"}


def test_continuing_the_chains_refuses_another_size_naming_it(tmp_path: Path) -> None:
    run = tiny_texture_run(tmp_path)
    with pytest.raises(ValueError, match=r"stored chains; got size=12, frames=None"):
        synthesize(run, tmp_path / "chains", n_samples=1, n_steps=1, start="chains", size=12,
                   device="cpu")


def test_continuing_the_chains_takes_every_chain_of_an_example(tmp_path: Path) -> None:
    """The one example's 2 persistent chains are 2 stored chains: 2 samples; 1 sample continues
    the first of them in the checkpoint's order (chains started apart, then without noise: a
    chain continued again comes out the same)."""
    run = tiny_texture_run(tmp_path, "chains.chains_per_example=2", "chains.init_scale=1.0",
                           "sampler.noise_scale=0.0")
    out = synthesize(run, tmp_path / "chains", n_samples=2, n_steps=1, start="chains",
                     device="cpu")
    both = np.load(out / "synthesized.npy")
    assert len(both) == 2 and not np.allclose(both[0], both[1], atol=1.0)
    first = synthesize(run, tmp_path / "first", n_samples=1, n_steps=1, start="chains",
                       device="cpu")
    np.testing.assert_allclose(np.load(first / "synthesized.npy"), both[:1], rtol=0, atol=1e-3)


def test_task_warnings_point_at_the_callers_line(tmp_path: Path) -> None:
    """A library caller's warning names its own line, not the wrapper that writes a task's
    files together (contextlib)."""
    from stgconv.tasks import interpolate

    run = tiny_texture_run(tmp_path)  # one persistent chain
    with pytest.warns(UserWarning, match="keeps 1 chains") as caught:
        synthesize(run, tmp_path / "chains", n_samples=2, n_steps=1, start="chains",
                   device="cpu")
    with pytest.warns(RuntimeWarning, match="not from noise starts") as also:
        interpolate(run, tmp_path / "path", n_points=2, device="cpu")
    assert [w.filename for w in [*caught, *also]] == [__file__] * 2


def test_voxel_synthesis_keeps_every_sample_beyond_the_preview(tmp_path: Path) -> None:
    """The preview renders 16 shapes; the result array holds all of them, in occupancy."""
    config = load_config(None, [*data_overrides("voxels", tmp_path), f"out_dir={tmp_path / 'run'}",
                                "device=cpu", "train.n_iterations=1", "train.sample_every=0",
                                "sampler.n_steps=1", "chains.chains_per_example=1"])
    out = synthesize(train(config, progress=False), tmp_path / "synthesis", n_samples=17,
                     n_steps=1, device="cpu")
    grids = np.load(out / "synthesized.npy")
    assert grids.shape == (17, 8, 8, 8)
    assert grids.min() >= 0.0 and grids.max() <= 1.0


@pytest.mark.parametrize("noise_scale", [0.0, 0.5])
def test_samples_from_one_start_without_noise_are_told_to_be_copies(noise_scale: float,
                                                                     tmp_path: Path) -> None:
    """The shipped voxel super-resolution and recovery configs start fresh chains at one point
    and run them without noise: every sample is the same, which is said; with noise they
    differ and nothing is said."""
    config = load_config(None, [*data_overrides("voxels", tmp_path), f"out_dir={tmp_path / 'run'}",
                                "device=cpu", "train.n_iterations=1", "train.sample_every=0",
                                "sampler.n_steps=1", "chains.chains_per_example=1",
                                "chains.init_scale=0.0", f"sampler.noise_scale={noise_scale}"])
    run = train(config, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = synthesize(run, tmp_path / "synthesis", n_samples=3, n_steps=2, device="cpu")
    grids = np.load(out / "synthesized.npy")
    told = [w for w in caught if "are all the same" in str(w.message)]
    if noise_scale == 0:
        assert [str(w.message) for w in told] == [
            "the 3 samples are all the same: they start at one point (chains.init_scale 0) and "
            "the chain adds no noise (sampler.noise_scale 0)"]
        assert told[0].filename == __file__
        assert np.array_equal(grids[0], grids[1]) and np.array_equal(grids[0], grids[2])
    else:
        assert told == []
        assert not np.array_equal(grids[0], grids[1])


@pytest.mark.parametrize("modality", list(WRITTEN))
def test_training_logs_samples_and_norms_into_tensorboard(modality: str, tmp_path: Path) -> None:
    """Read back from the event file: the samples (images, a clip's frames, a voxel mesh and its
    volume fraction), every layer's weight and gradient norm, the energies; none with
    train.log_media false."""

    def events(log_media: bool):
        out = tmp_path / f"run_{log_media}"
        config = load_config(None, [*data_overrides(modality, tmp_path), f"out_dir={out}",
                                    "device=cpu", "train.n_iterations=2", "train.sample_every=1",
                                    "sampler.n_steps=2", "chains.chains_per_example=2",
                                    f"train.log_media={str(log_media).lower()}"])
        train(config, progress=False)
        return read_events(out / "tb")

    media = events(True)
    logged = media.Tags()
    assert {"train/e_pos", "train/e_neg", "train/loss"} <= set(logged["scalars"])
    assert any(t.startswith("weights/") for t in logged["scalars"])
    assert any(t.startswith("gradients/") for t in logged["scalars"])
    if modality == "image":
        assert "samples" in logged["images"]
    elif modality == "video":
        assert {"samples", "samples/frames"} <= set(logged["images"])  # the clips as a GIF video
        with Image.open(io.BytesIO(media.Images("samples")[-1].encoded_image_string)) as gif:
            assert gif.info["duration"] == 20  # at data.fps 50, as the run folder's GIFs
    else:
        assert "samples/volume_fraction" in logged["scalars"]
    quiet = events(False).Tags()
    assert not any(t.startswith(("weights/", "samples")) for t in quiet["scalars"])
    assert not quiet["images"]


def test_tensorboard_gets_the_last_iterations_samples_as_the_run_folder_does(
        tmp_path: Path) -> None:
    """3 iterations sampled every 2: samples_000002 and the final samples.png in the folder,
    and TensorBoard's pictures and norms at 2 and at 3 (they stopped at 2 beside curves to 3);
    samples_000003 is not written, samples.png holds them."""
    run = tiny_texture_run(tmp_path, "train.n_iterations=3", "train.sample_every=2")
    assert {p.name for p in run.glob("samples*")} == {"samples.png", "samples_000002.png"}
    events = read_events(run / "tb")
    assert [e.step for e in events.Images("samples")] == [2, 3]
    assert [e.step for e in events.Scalars("weights/features.0.weight")] == [2, 3]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]


def test_tensorboard_gets_no_samples_when_sample_every_is_0(tmp_path: Path) -> None:
    """train.sample_every 0: TensorBoard gets no samples and no norms, not even at the end
    (config.py says so), though samples.png is written and the curves are logged."""
    run = tiny_texture_run(tmp_path, "train.n_iterations=2")
    assert (run / "samples.png").is_file()
    events = read_events(run / "tb")
    assert not events.Tags()["images"]
    assert not any(t.startswith("weights/") for t in events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


def test_synthesize_refuses_an_empty_class_list_and_zero_steps(tmp_path: Path) -> None:
    """synthesize says what is wrong with classes=[] (name at least one class) and with 0 chain
    steps for a model that is not cooperative (its samples need a chain)."""
    run = tiny_texture_run(tmp_path)
    with pytest.raises(ValueError, match="classes is empty"):
        synthesize(run, tmp_path / "a", n_samples=1, classes=[], device="cpu")
    # Two rows of one class, looking like two classes' (--class 0 --class 0), were drawn.
    with pytest.raises(ValueError, match=r"^classes names class 0 more than once \(\[0, 2, 0\]"
                                         r"\): name each class once"):
        synthesize(run, tmp_path / "a", n_samples=1, classes=[0, 2, 0], device="cpu")
    with pytest.raises(ValueError, match="cooperative models only"):
        synthesize(run, tmp_path / "b", n_samples=1, n_steps=0, device="cpu")
    assert not (tmp_path / "b").exists()


def test_continuing_stored_chains_takes_the_chains_of_every_example(tmp_path: Path) -> None:
    """start='chains' continues the persistent chains of all training examples (examples x
    chains per example), not only those of the first example."""
    import warnings

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 60 + 100 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    run = tiny_texture_run(tmp_path, "data.kind=objects", f"data.path={folder}",
                            "chains.mode=persistent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fewer stored chains than asked would warn
        out = synthesize(run, tmp_path / "s", n_samples=2, n_steps=1, start="chains",
                         device="cpu")
    assert np.load(out / "synthesized.npy").shape == (2, 1, 8, 8)


def test_train_refuses_resume_and_overwrite_together(tmp_path: Path) -> None:
    """train with both resume and overwrite is refused up front (one continues the folder's run,
    the other replaces it), before anything is written."""
    config = load_config(None, ["data.path=builtin:brick", "data.size=8",
                                f"out_dir={tmp_path / 'run'}", "device=cpu"])
    with pytest.raises(ValueError, match="choose one"):
        train(config, resume=True, overwrite=True, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_folder_of_four_run_files_is_refused_naming_all_four(tmp_path: Path) -> None:
    for name in ("checkpoint.pt", "config.yaml", "observed.png", "samples.png"):
        (tmp_path / name).write_text("x")
    config = load_config(None, ["data.path=builtin:brick", f"out_dir={tmp_path}", "device=cpu"])
    with pytest.raises(ExistingRun, match=r"already holds a run \(checkpoint\.pt, config\.yaml, "
                                          r"observed\.png, samples\.png\): continue it"):
        train(config, progress=False)


def test_overwrite_removes_a_linked_folder_of_the_old_run_not_what_it_leads_to(
        tmp_path: Path) -> None:
    """A run whose tb/ links to a shared log folder: --overwrite removed the old checkpoint,
    then failed ("Cannot call rmtree on a symbolic link"), neither run left."""
    run = tiny_texture_run(tmp_path)
    shutil.move(run / "tb", tmp_path / "shared_logs")
    (run / "tb").symlink_to(tmp_path / "shared_logs")
    logs = sorted((tmp_path / "shared_logs").iterdir())
    train(load_config(run / "config.yaml", ["train.n_iterations=1"]), overwrite=True,
          progress=False)
    assert (run / "checkpoint.pt").is_file() and not (run / "tb").is_symlink()
    assert sorted((tmp_path / "shared_logs").iterdir()) == logs


def test_a_resume_refuses_a_run_file_that_links_elsewhere(tmp_path: Path) -> None:
    """A run folder from elsewhere whose samples.png links to a file of the user's: the
    resume replaced that file with the run's picture."""
    run = tiny_texture_run(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's")
    (run / "samples.png").unlink()
    (run / "samples.png").symlink_to(notes)
    config = load_config(run / "config.yaml", ["train.n_iterations=2"])
    with pytest.raises(ValueError, match=r"samples\.png is a symbolic link to .*notes\.txt: "
                                         r"resuming would replace that file"):
        train(config, resume=True, progress=False)
    assert notes.read_text() == "the user's"
    # A link to nothing (written through, it makes that file), and the checkpoint itself.
    (run / "samples.png").unlink()
    (run / "samples.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ValueError, match=r"samples\.png is a symbolic link to .*nowhere\.png"):
        train(config, resume=True, progress=False)
    (run / "samples.png").unlink()
    shutil.move(run / "checkpoint.pt", tmp_path / "kept.pt")
    (run / "checkpoint.pt").symlink_to(tmp_path / "kept.pt")
    kept = (tmp_path / "kept.pt").read_bytes()
    with pytest.raises(ValueError, match=r"checkpoint\.pt is a symbolic link to .*kept\.pt"):
        train(config, resume=True, progress=False)
    assert (tmp_path / "kept.pt").read_bytes() == kept
    assert not (tmp_path / "nowhere.png").exists()
    # A linked folder is the user's setup (tb/ on a shared log folder): resumed through.
    (run / "checkpoint.pt").unlink()
    shutil.move(tmp_path / "kept.pt", run / "checkpoint.pt")
    shutil.move(run / "tb", tmp_path / "shared_logs")
    (run / "tb").symlink_to(tmp_path / "shared_logs")
    assert train(config, resume=True, progress=False) == run


def test_overwrite_removes_the_old_models_reconstruction_too(tmp_path: Path) -> None:
    """train --overwrite removes what the other commands wrote into the run folder by default
    (here reconstruction/), so the new model's folder holds none of the old model's outputs."""
    run = tiny_texture_run(tmp_path)
    (run / "reconstruction").mkdir()
    (run / "reconstruction" / "reconstruction.json").write_text("{}")
    (run / "synthesis").mkdir()
    (run / "recovered_shapes").mkdir()
    (run / "checkpoint_previous.pt").write_bytes(b"the old model's")

    config = load_config(run / "config.yaml", ["train.n_iterations=1"])
    train(config, overwrite=True, progress=False)
    assert not any((run / name).exists() for name in ("reconstruction", "synthesis",
                                                      "recovered_shapes"))
    assert (run / "checkpoint.pt").is_file()
    # A resume falls back on the previous checkpoint: the old model's is gone.
    assert not (run / "checkpoint_previous.pt").exists()


def test_training_files_leave_out_config_and_tensorboard(tmp_path: Path) -> None:
    """training_files lists what only training writes (checkpoints, observed, samples), not
    config.yaml or tb/, which other commands write into their own folders too."""
    from stgconv.tasks.train import training_files

    # Pictures and arrays by the run's exact names: the user's samples_00002.png (5 digits),
    # samples_cat.png and samples.png.orig (a copy kept aside) are not the run's.
    # A multi-grid run's pyramids are the run's too.
    for name in ("config.yaml", "checkpoint.pt", "observed.png", "observed.npy",
                 "samples_000002.png", "samples_00002.png", "samples_cat.png",
                 "samples.png.orig", "samples_pyramid.png", "observed_pyramid.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tb").mkdir()
    names = {p.name for p in training_files(tmp_path)}
    assert names == {"checkpoint.pt", "observed.png", "observed.npy", "samples_000002.png",
                     "samples_pyramid.png", "observed_pyramid.png"}
    assert training_files(tmp_path / "checkpoint.pt") == []  # a file is no folder of files


def test_samples_are_written_every_sample_every_iterations_only(tmp_path: Path) -> None:
    """With train.sample_every=2 a 3-iteration run writes samples_000002 and the final samples,
    not samples_000001 or samples_000003."""
    run = tiny_texture_run(tmp_path, "train.n_iterations=3", "train.sample_every=2")
    names = {p.name for p in run.glob("samples*")}
    assert names == {"samples_000002.png", "samples.png"}


def train_two_voxel_shapes(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A one-iteration run on two 8^3 shapes with data.mean=auto; the run and the shapes."""
    shapes = np.zeros((2, 8, 8, 8), np.uint8)
    shapes[0, 2:6, 2:6, 2:6] = 1
    shapes[1, 1:7, 3:5, 0:8] = 1
    np.savez(tmp_path / "shapes.npz", X=shapes)
    config = load_config(None, [f"data.path={tmp_path / 'shapes.npz'}", "data.kind=voxels",
                                "data.size=8", "data.mean=auto", "model.arch=desc32_small",
                                "model.layers=[[2, 4, 2, 1]]", "model.reference_sigma=0.5",
                                "sampler.clamp=[0.0, 1.0]", f"out_dir={tmp_path / 'run'}",
                                "device=cpu", "train.n_iterations=1", "train.sample_every=0",
                                "sampler.n_steps=1", "chains.chains_per_example=1"])
    return train(config, progress=False), shapes


def test_a_voxel_runs_observed_array_is_the_training_shapes(tmp_path: Path) -> None:
    """With data.mean=auto the model sees occupancy minus the mean, and observed.npy converts
    back: it holds the training shapes exactly, in occupancy."""
    run, shapes = train_two_voxel_shapes(tmp_path)
    np.testing.assert_array_equal(np.load(run / "observed.npy"), shapes.astype(np.float32))


def test_a_voxel_runs_samples_array_is_its_last_chains_in_occupancy(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """samples.npy converts the final chains back from the model's units as observed.npy
    does: occupancy, not occupancy minus the training mean."""
    last, fit = [], Trainer.fit

    def keeps_the_last_samples(self, *args, **kwargs):
        fitted = fit(self, *args, **kwargs)
        last.append(self.last_samples)
        return fitted

    monkeypatch.setattr(Trainer, "fit", keeps_the_last_samples)
    run, _ = train_two_voxel_shapes(tmp_path)
    mean = load_checkpoint(run)["config"]["data"]["mean"]
    np.testing.assert_allclose(np.load(run / "samples.npy"),
                               (last[0] + mean).clamp(0.0, 1.0)[:, 0].numpy(), atol=1e-6)


def test_a_video_run_writes_its_final_samples_as_gif_and_mp4(tmp_path: Path) -> None:
    """The final samples of a video run are written as samples.gif and samples.mp4 (the
    periodic samples_<it> previews are GIFs only)."""
    clip = torch.full((1, 4, 8, 8), -0.8)
    for t in range(4):
        clip[:, t, :, t] = 0.8
    path = save_video(clip, tmp_path / "clip.mkv")
    config = load_config(None, [f"data.path={path}", "data.kind=video", "data.size=8",
                                "data.frames=4", "model.arch=st_small",
                                "model.layers=[[2, [3, 3, 3], 1, 1]]",
                                f"out_dir={tmp_path / 'run'}", "device=cpu",
                                "train.n_iterations=1", "train.sample_every=1",
                                "sampler.n_steps=1", "chains.chains_per_example=1"])
    run = train(config, progress=False)
    assert (run / "samples.gif").is_file() and (run / "samples.mp4").is_file()
    assert not (run / "samples_000001.mp4").exists()


def test_a_new_run_shows_its_config_and_data_before_its_first_iteration(tmp_path: Path,
                                                                        monkeypatch) -> None:
    """config.yaml and observed are there to look at while a new run trains, not only from its
    first checkpoint (the resumed run's rule)."""
    from stgconv.train import Trainer

    seen = []
    fit = Trainer.fit

    def looks_first(self, *args, **kwargs):
        seen.append({path.name for path in (tmp_path / "run").iterdir()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", looks_first)
    tiny_texture_run(tmp_path)
    assert {"config.yaml", "observed.png"} <= seen[0]


def test_the_model_is_sized_by_the_examples_loaded_not_the_data_settings(
        tmp_path: Path, monkeypatch) -> None:
    """The net's input side comes from the examples the loader returned (here 8 x 8 where
    data.size says 16): a head sized by the settings would not fit them. (Its channels are
    data.channels', which a model.in_channels set is checked against as the config is read.)"""
    image = importlib.import_module("stgconv.modalities.image")
    examples = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setattr(image.ImageModality, "load", lambda self, data, **options: examples)
    config = load_config(None, ["data.path=builtin:brick", "data.size=16", "data.channels=3",
                                "model.arch=object", "model.layers=[[4, 3, 2, 1]]",
                                f"out_dir={tmp_path / 'run'}", "device=cpu",
                                "train.n_iterations=1", "train.sample_every=0",
                                "sampler.n_steps=1", "chains.chains_per_example=1"])
    run = train(config, progress=False)
    model = load_config(run / "config.yaml").model
    assert (model.in_channels, model.image_size) == (3, 8)


def test_a_textures_enlargement_warning_advises_a_size_the_net_takes(tmp_path: Path) -> None:
    """A 6x6 tile at data.size 32 was advised data.size=6, which the net (15x15 filters) then
    refused as smaller than its receptive field; the advice is the smallest it takes."""
    Image.new("L", (6, 6), 90).save(tmp_path / "tile.png")
    with pytest.warns(UserWarning, match=re.escape(
            "set data.size: 15, the smallest the net takes, to train nearest")):
        tiny_texture_run(tmp_path, f"data.path={tmp_path / 'tile.png'}", "data.size=32",
                         "model.layers=[[2, 15, 1]]")
    # Taken, it trains, and the size is not advised again.
    with pytest.warns(UserWarning, match=re.escape(
            "data.size 15 is the smallest the net takes: give model.layers with smaller filters "
            "or strides to train nearer the data's own side")):
        tiny_texture_run(tmp_path / "again", f"data.path={tmp_path / 'tile.png'}",
                         "data.size=15", "model.layers=[[2, 15, 1]]")


@pytest.mark.parametrize("setting, message", [
    # Refused as the config is read, beside the data.channels that gives them.
    ("model.in_channels=3", r"model\.in_channels is 3, but data\.channels is 1"),
    # 64: the default it had, which any size set was replaced by as well
    ("model.image_size=64", r"model\.image_size is 64, but the data give 8 \(the examples' "
                            r"width\)"),
], ids=["in_channels", "image_size"])
def test_a_model_setting_other_than_the_examples_is_refused(tmp_path: Path, setting: str,
                                                            message: str) -> None:
    """The net was built for the examples whatever these said: a 3 set for grey images trained
    a grey net without a word."""
    with pytest.raises(ValueError, match=rf"^{message}: the net is built for the data; leave "
                                         rf"{setting.split('=')[0]} out \(or null\)$"):
        tiny_texture_run(tmp_path, setting)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_runs_config_with_its_filled_in_model_trains_again(tmp_path: Path) -> None:
    """A run's config.yaml holds the channels and size the data gave, as earlier runs' do."""
    run = tiny_texture_run(tmp_path)
    config = load_config(run / "config.yaml", [f"out_dir={tmp_path / 'again'}"])
    assert (config.model.in_channels, config.model.image_size) == (1, 8)
    assert (train(config, progress=False) / "checkpoint.pt").is_file()


def test_train_refuses_an_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("mine")
    with pytest.raises(ValueError, match=f"out_dir {tmp_path / 'run'} is a file"):
        train(load_config(None, [f"out_dir={tmp_path / 'run'}", "device=cpu"]))
    assert (tmp_path / "run").read_text() == "mine"


def test_a_run_removes_the_temporaries_a_killed_run_left_before_its_own_work(
        tmp_path: Path) -> None:
    """Even a run refused before writing anything (whose writes would also clear them)."""
    run = tmp_path / "run"
    run.mkdir()
    # pid 4194304 is past the largest pid_max: no live process has it
    debris = run / ".checkpoint.pt.4194304-abc123.tmp"
    debris.write_bytes(b"half a checkpoint")
    with pytest.raises(FileNotFoundError, match="give the training data with --data"):
        train(load_config(None, [f"out_dir={run}", "device=cpu",
                                 f"data.path={tmp_path / 'missing.png'}"]))
    assert not debris.exists()


def test_a_run_resumed_from_another_folder_says_where_its_relative_data_path_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's config keeps data.path as typed; resumed elsewhere it was "image not found:
    t.png" alone."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "a" / "t.png")
    monkeypatch.chdir(tmp_path / "a")
    run = tiny_texture_run(tmp_path, "data.path=t.png")
    monkeypatch.chdir(tmp_path / "b")
    config = load_config(run / "config.yaml", ["train.n_iterations=2"])
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"image not found: t.png (the run's relative data.path is read from the current "
            f"folder {tmp_path / 'b'}): give the training data with --data PATH")):
        train(config, resume=True, progress=False)


def after_checkpoint(monkeypatch: pytest.MonkeyPatch, act: Callable[[], None],
                     iteration: int | None = None) -> None:
    """Call ``act()`` (what happens to the run folder meanwhile) once a training run has saved
    its checkpoint of ``iteration``, or after every save."""
    from stgconv.train import Trainer

    save = Trainer.save

    def save_then_act(self, path):
        saved = save(self, path)
        if iteration is None or self.iteration == iteration:
            act()
        return saved

    monkeypatch.setattr(Trainer, "save", save_then_act)


@pytest.mark.parametrize("tensorboard_folder_made_again", [False, True])
def test_a_run_folder_removed_while_training_is_not_made_again(
        tmp_path: Path, monkeypatch, tensorboard_folder_made_again: bool) -> None:
    """The checkpoint written after the removal made the folder again, holding no config.yaml
    (nothing --resume could take), and a failed run's cleanup then failed on the lock file
    that went with the folder. Now the run stops with one error naming the folder, from
    TensorBoard's writer or, where that goes on (its folder made again), the run's own check
    before its next write. The folders above it that the run made go too."""
    root = tmp_path / "made"
    run = root / "run"

    def folder_removed():
        shutil.rmtree(run)
        if tensorboard_folder_made_again:
            (run / "tb").mkdir(parents=True)

    after_checkpoint(monkeypatch, folder_removed)
    with pytest.raises(WriteError, match=f"run folder was removed while training.*'{run}"):
        tiny_texture_run(root, "train.n_iterations=2", "train.checkpoint_every=1")
    assert not root.exists()  # what the run made again of it (tb) goes with the failed run


def test_a_removed_run_folder_met_first_by_tensorboard_is_named_as_removed(
        tmp_path: Path, monkeypatch) -> None:
    """TensorBoard's writer thread re-raises its failure at the next event, so it could meet
    the removed folder before the run's own check: the run then stopped with "No such file or
    directory (TensorBoard events)", or the check's error, by the threads' timing."""
    run = tmp_path / "run"

    def removed_and_seen_by_tensorboard():
        shutil.rmtree(run)
        raise write_error(errno.ENOENT, "No such file or directory (TensorBoard events)",
                          run / "tb")

    after_checkpoint(monkeypatch, removed_and_seen_by_tensorboard, 1)
    with pytest.raises(WriteError, match=f"run folder was removed while training.*'{run}"):
        tiny_texture_run(tmp_path, "train.n_iterations=2", "train.checkpoint_every=1")


@pytest.fixture
def trainers(monkeypatch) -> list:
    """The trainers the runs of the test fit, in order."""
    from stgconv.train import Trainer

    fitted = []
    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, *args, **kwargs: fitted.append(self) or fit(
        self, *args, **kwargs))
    return fitted


def test_a_resumed_run_rewrites_its_config_once_it_has_saved(tmp_path: Path) -> None:
    run = tiny_texture_run(tmp_path)
    train(load_config(run / "config.yaml", ["train.n_iterations=2"]), resume=True,
          progress=False)
    assert load_config(run / "config.yaml").train.n_iterations == 2


def test_a_run_writes_its_config_once_not_at_every_checkpoint(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A new run writes config.yaml (and observed) as it starts, a resumed one at its first
    checkpoint: not again at each later checkpoint."""
    task = importlib.import_module("stgconv.tasks.train")
    saved, save = [], task.save_config
    monkeypatch.setattr(task, "save_config",
                        lambda config, path: saved.append(path) or save(config, path))
    run = tiny_texture_run(tmp_path, "train.n_iterations=3", "train.checkpoint_every=1")
    assert saved == [run / "config.yaml"]
    train(load_config(run / "config.yaml", ["train.n_iterations=5"]), resume=True,
          progress=False)
    assert saved == [run / "config.yaml"] * 2


def test_the_models_size_is_the_examples_width(tmp_path: Path, monkeypatch) -> None:
    """model.image_size is filled with the examples' width, as a refusal of another size says:
    8 x 12 examples give 12."""
    image = importlib.import_module("stgconv.modalities.image")
    examples = torch.rand(2, 1, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setattr(image.ImageModality, "load", lambda self, data, **options: examples)
    run = tiny_texture_run(tmp_path)
    assert load_config(run / "config.yaml").model.image_size == 12


def test_cooperative_training_starts_the_configs_chains_within_the_samplers_clamp(
        tmp_path: Path, trainers: list) -> None:
    train(load_config(ROOT / "configs" / "image" / "coop_mnist_quick.yaml", [
        "data.kind=texture", "data.max_images=null", "data.path=builtin:brick",
        "data.size=8", "model.arch=texture",
        "model.layers=[[2, 3, 1]]", "cooperative.latent_dim=2", "cooperative.width=2",
        "train.n_iterations=1", "train.batch_size=2", "sampler.n_steps=1",
        "train.sample_every=0", "device=cpu", "sampler.clamp=[0.1, 0.5]",
        "chains.chains_per_example=2", f"out_dir={tmp_path / 'run'}"]), progress=False)
    chains = trainers[0].chains
    assert (chains.chains_per_example, chains.clamp) == (2, (0.1, 0.5))


def test_a_plain_run_starts_its_chains_from_the_fitted_gaussian_asked(tmp_path: Path,
                                                                      monkeypatch) -> None:
    fits, fit = [], DataGaussian.fit
    monkeypatch.setattr(DataGaussian, "fit",
                        lambda *args, **kwargs: fits.append(kwargs) or fit(*args, **kwargs))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):  # a Gaussian fit needs two examples
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(images / f"{i}.png")
    run = tiny_texture_run(tmp_path, "data.kind=objects", f"data.path={images}",
                           "chains.init=data_gaussian", "chains.init_noise=0.5",
                           "chains.init_scale=0.3", "chains.init_rank=1")
    assert load_checkpoint(run)["init"]["means"].shape == (1, 1, 8, 8)
    # The fit's rank, the share of chains started from noise and that noise's scale, as
    # configured.
    assert (fits[0]["rank"], fits[0]["noise"], fits[0]["noise_scale"]) == (1, 0.5, 0.3)


@pytest.mark.parametrize("mode", ["super_resolution", "recovery"])
def test_a_learned_initializer_trains_in_the_models_units_for_the_chains_mode(
        tmp_path: Path, trainers: list, mode: str) -> None:
    """Its proposals are shifted by the run's occupancy mean (data.mean auto), and a recovery
    run's initializer learns the recovery filler."""
    extra = ["--set", "initializer.factors=null"] if mode == "recovery" else []
    assert main(["train", str(SR_CONFIG), "--data", str(shapes_file(tmp_path / "shapes.npz")),
                 "--out", str(tmp_path / "run"), *TINY, "--set", f"chains.mode={mode}",
                 "--set", "initializer.width=4", "--set", "initializer.depth=2",
                 "--set", "initializer.steps=1", *extra]) == 0
    trainer = trainers[0]
    mean = load_config(tmp_path / "run" / "config.yaml").data.mean
    assert trainer.offset == pytest.approx(mean) != 0
    assert trainer.initializer.recovers == (mode == "recovery")


def test_training_leaves_the_callers_global_rng_as_it_was(tmp_path: Path) -> None:
    torch.manual_seed(99)
    before = torch.get_rng_state()
    first = load_checkpoint(tiny_texture_run(tmp_path / "a"))["model"]
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)  # another caller's state: the run's weights still come from its seed alone
    second = load_checkpoint(tiny_texture_run(tmp_path / "b"))["model"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_run_without_progress_draws_no_progress_bar(tmp_path: Path, capsys) -> None:
    tiny_texture_run(tmp_path, "train.n_iterations=2")  # progress=False
    assert capsys.readouterr().err == ""


def test_a_runs_first_weights_and_chain_stream_come_from_its_seed(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Another seed gives other starting weights, and the trainer's stream is seeded by it."""
    task = importlib.import_module("stgconv.tasks.train")
    starts = []

    class Recorded(Trainer):
        def __init__(self, energy, *args, generator, **kwargs) -> None:
            starts.append(({name: value.clone() for name, value in energy.state_dict().items()},
                           generator.initial_seed()))
            super().__init__(energy, *args, generator=generator, **kwargs)

    monkeypatch.setattr(task, "Trainer", Recorded)
    for seed in (1, 2):
        tiny_texture_run(tmp_path / str(seed), f"seed={seed}")
    (first, first_seed), (second, second_seed) = starts
    assert (first_seed, second_seed) == (1, 2)
    assert any(not torch.equal(first[name], second[name]) for name in first)


def demo_without_work(monkeypatch: pytest.MonkeyPatch, run: Path) -> tuple[dict, dict]:
    """Stand-ins for the demo's training, which returns ``run``, and its synthesis: what each
    was given (the training's config and options; the synthesis's arguments)."""
    trained: dict = {}
    monkeypatch.setattr(importlib.import_module("stgconv.tasks.demo"), "train",
                        lambda config, **kwargs: trained.update(config=config, **kwargs) or run)
    return trained, captured(monkeypatch, "stgconv.tasks.demo", "synthesize")


def test_the_demo_continues_every_stored_chain_five_times_longer(tmp_path: Path,
                                                                 monkeypatch) -> None:
    _, asked = demo_without_work(monkeypatch, tmp_path / "run")
    run = demo(tmp_path, overrides=["sampler.n_steps=7", "chains.chains_per_example=3"])
    assert run == asked["items"] == tmp_path / "run"  # the run training made, returned
    assert (asked["n_samples"], asked["n_steps"], asked["start"]) == (3, 35, "chains")


def test_the_demo_passes_its_options_on_and_takes_a_replay_buffer(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A replay buffer also keeps chains to continue; overwrite, progress and the config's
    device reach the training and the synthesis."""
    trained, asked = demo_without_work(monkeypatch, tmp_path / "run")
    demo(tmp_path, overrides=["chains.mode=buffer", "device=cpu"], overwrite=True,
         progress=False)
    assert trained.keys() - {"config"} == {"overwrite", "progress"}
    assert (trained["overwrite"], trained["progress"]) == (True, False)
    assert asked["device"] == "cpu"


def test_the_demo_by_default_trains_into_outputs_demo_with_a_bar_and_replaces_nothing(
        tmp_path: Path, monkeypatch) -> None:
    """A library caller's ``demo()`` is the command's ``stgconv demo``: the run goes to
    ``outputs/demo`` under the working folder, with a progress bar, and an earlier run there is
    refused rather than replaced."""
    monkeypatch.chdir(tmp_path)
    trained, _ = demo_without_work(monkeypatch, tmp_path / "run")
    demo()
    assert trained["config"].out_dir == str(Path("outputs") / "demo")
    assert (trained["overwrite"], trained["progress"]) == (False, True)


@pytest.mark.parametrize(("setting", "named"), [
    ("chains.mode=data", "(got chains.mode='data')"),
    ("cooperative={}", "(got chains.mode='persistent', cooperative)"),
    ("multigrid={grids: [{size: 64, model: {arch: descriptor64}}]}",
     "(got chains.mode='persistent', multigrid)"),
])
def test_the_demo_names_a_setting_whose_run_keeps_no_chains_to_continue(
        tmp_path: Path, monkeypatch, setting: str, named: str) -> None:
    demo_without_work(monkeypatch, tmp_path / "run")  # a setting let through trains no run
    with pytest.raises(ValueError, match="the demo synthesizes by continuing") as refused:
        demo(tmp_path, overrides=[setting])
    assert named in str(refused.value)


def test_the_demos_out_wins_over_an_out_dir_setting(tmp_path: Path, monkeypatch) -> None:
    """As every command's own option does: --out is the demo's, out_dir=... in --set is not."""
    trained, _ = demo_without_work(monkeypatch, tmp_path / "run")
    demo(tmp_path / "out", overrides=[f"out_dir={tmp_path / 'set'}"])
    assert trained["config"].out_dir == str(tmp_path / "out")


def test_the_demo_passes_an_empty_out_dir_on_as_empty(tmp_path: Path, monkeypatch) -> None:
    """``demo("")`` became out_dir "." (the working folder) on its way to the training, which
    refuses an empty out_dir."""
    trained, _ = demo_without_work(monkeypatch, tmp_path / "run")
    demo("")
    assert trained["config"].out_dir == ""


def test_the_demo_passes_another_refusal_of_its_training_on_as_it_is(tmp_path: Path,
                                                                     monkeypatch) -> None:
    def refuses(config, **kwargs) -> Path:
        raise ValueError("data.path holds no images")

    monkeypatch.setattr(importlib.import_module("stgconv.tasks.demo"), "train", refuses)
    with pytest.raises(ValueError, match="^data.path holds no images$"):
        demo(tmp_path)


def test_the_demo_refuses_an_earlier_run_naming_its_own_options(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier run's")
    with pytest.raises(ExistingRun, match="holds an earlier run: replace it with --overwrite, "
                                          "or give the demo another --out") as refused:
        demo(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path} holds an earlier run")
    assert isinstance(refused.value.__cause__, ExistingRun)  # training's own refusal, kept
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"an earlier run's"


@pytest.fixture(scope="module")
def texture_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_texture_run(tmp_path_factory.mktemp("texture"))


def test_synthesize_refuses_an_unknown_start(texture_run: Path, tmp_path: Path) -> None:
    for start in ("zero", "data"):  # "data" is a training chains.mode, no start here
        with pytest.raises(ValueError, match=f"start must be 'noise' or 'chains', got '{start}'"):
            synthesize(texture_run, tmp_path, n_samples=1, n_steps=1, start=start, device="cpu")
    # The stored chains have their own size: another would be silently ignored.
    with pytest.raises(ValueError, match="size and frames cannot change when continuing"):
        synthesize(texture_run, tmp_path, n_samples=1, size=24, start="chains", device="cpu")
    with pytest.raises(ValueError, match="size and frames cannot change when continuing"):
        synthesize(texture_run, tmp_path, n_samples=1, frames=4, start="chains", device="cpu")


def test_synthesize_refuses_no_samples_and_samples_past_the_entry_limit(texture_run: Path,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"n_samples must be an int >= 1, got 0"):
        synthesize(texture_run, tmp_path, n_samples=0, n_steps=1, device="cpu")
    for name in ("size", "frames"):  # as typed to the library, where no option checked them
        with pytest.raises(ValueError, match=f"{name} must be an int >= 1, got 0"):
            synthesize(texture_run, tmp_path, n_samples=1, n_steps=1, device="cpu",
                       **{name: 0})
    with pytest.raises(ValueError, match=r"1099511627776 samples makes a .* over the limit"):
        synthesize(texture_run, tmp_path, n_samples=2**40, n_steps=1, device="cpu")


def test_too_few_stored_chains_are_told_at_the_callers_line(texture_run: Path,
                                                            tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="the checkpoint keeps") as told:
        synthesize(texture_run, tmp_path, n_samples=1000, n_steps=1, start="chains",
                   device="cpu")
    assert told[0].filename == __file__


def test_synthesis_is_seeded(texture_run: Path, tmp_path: Path) -> None:
    def samples(name: str, seed: int) -> np.ndarray:
        out = synthesize(texture_run, tmp_path / name, n_samples=2, n_steps=2, seed=seed,
                         device="cpu")
        return np.load(out / "synthesized.npy")

    first = samples("a", 1)
    np.testing.assert_array_equal(samples("b", 1), first)
    assert not np.array_equal(samples("c", 2), first)


# Every library entry point that takes a seed, called with paths that do not exist: the seed
# is refused before any of them is read, and nothing is written.
SEEDED_ENTRY_POINTS = {
    "synthesize": lambda absent, out, seed: synthesize(absent, out, seed=seed),
    "synthesize_cooperative": lambda absent, out, seed: synthesize_cooperative(
        None, None, None, out, seed=seed),
    "synthesize_multigrid": lambda absent, out, seed: synthesize_multigrid(
        [], None, None, out, seed=seed),
    "reconstruct": lambda absent, out, seed: reconstruct(absent, absent, out, seed=seed),
    "interpolate": lambda absent, out, seed: interpolate(absent, out, seed=seed),
    "recover_shape": lambda absent, out, seed: recover_shape(absent, absent, absent, out,
                                                             seed=seed),
    "super_resolve": lambda absent, out, seed: super_resolve(absent, absent, out, seed=seed),
    "train_fill_prior": lambda absent, out, seed: train_fill_prior([absent], out / "prior.pt",
                                                                   seed=seed),
    "load_known": lambda absent, out, seed: load_known("missing_frames:0.5", (4, 3, 3),
                                                       seed=seed),
    "eval_super_resolution": lambda absent, out, seed: eval_super_resolution(
        absent, absent, seed=seed, out_dir=out),
    "eval_recovery_3d": lambda absent, out, seed: eval_recovery_3d(absent, absent, seed=seed,
                                                                   out_dir=out),
    "eval_classification": lambda absent, out, seed: eval_classification(
        absent, absent, seed=seed, json_path=out / "t.json"),
    "cross_validate": lambda absent, out, seed: cross_validate(
        torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), seed=seed),
}


@pytest.mark.parametrize("seed", [1.5, -1, 2**70])
@pytest.mark.parametrize("entry_point", SEEDED_ENTRY_POINTS)
def test_every_seeded_entry_point_refuses_a_seed_torch_would_not_take_as_given(
        entry_point: str, seed: object, tmp_path: Path) -> None:
    """torch's messages named no seed (1.5: "manual_seed expected a long, but got float";
    2^70: "Overflow when unpacking long long"), and -1 it took, wrapped round, where the CLI
    and the configs refuse it."""
    with pytest.raises(ValueError,
                       match=rf"^seed must be an int in \[0, 2\^63 - 2\^16\), got {seed}$"):
        SEEDED_ENTRY_POINTS[entry_point](tmp_path / "absent", tmp_path / "out", seed)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("starts", ["noise", "class Gaussians"])
def test_synthesis_from_fresh_starts_is_seeded(tmp_path: Path, trained_jem_run: dict[str, Path],
                                               starts: str) -> None:
    """The seed draws the fresh starts too, not only the chains' noise (the run above starts
    from fitted Gaussians): noise, and a JEM run's Gaussians fitted to each class."""
    if starts == "noise":
        run, classes = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=gaussian",
                                        "chains.init_scale=1.0"), None
    else:
        run, classes = trained_jem_run["run"], [1]
    first, second = (np.load(synthesize(run, tmp_path / name, n_samples=2, n_steps=1, seed=3,
                                        classes=classes, device="cpu") / "synthesized.npy")
                     for name in "ab")
    np.testing.assert_array_equal(first, second)


def test_synthesis_runs_the_chain_length_asked(texture_run: Path, tmp_path: Path) -> None:
    """n_steps sets the chain length; unset, the run's own (1 step here)."""
    def samples(name: str, n_steps: int | None) -> np.ndarray:
        return np.load(synthesize(texture_run, tmp_path / name, n_samples=2, n_steps=n_steps,
                                  device="cpu") / "synthesized.npy")

    one = samples("one", 1)
    np.testing.assert_array_equal(samples("default", None), one)
    assert not np.array_equal(samples("three", 3), one)


def test_continuing_the_chains_takes_the_first_examples_chains_first(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Two examples of two chains each: two samples continue the first example's two chains
    (example by example, as the checkpoint keeps them), not the first chain of each."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 60 + 100 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    run = tiny_texture_run(tmp_path, "data.kind=objects", f"data.path={folder}",
                           "chains.mode=persistent", "chains.chains_per_example=2",
                           "chains.init_scale=1.0")
    module = importlib.import_module("stgconv.tasks.synthesize")
    starts = []

    class Still:
        def run(self, energy, x0, *, generator=None):
            starts.append(x0)
            return x0

    monkeypatch.setattr(module, "task_sampler", lambda config, n_steps: Still())
    synthesize(run, tmp_path / "s", n_samples=2, n_steps=1, start="chains", device="cpu")
    stored = load_checkpoint(run)["chains"]["chains"]  # (examples, chains per example, ...)
    assert stored.shape[:2] == (2, 2)
    torch.testing.assert_close(starts[0], stored[0])


def python_trainers_checkpoint(path: Path, energy: torch.nn.Module, sampler: Sampler,
                               data: torch.Tensor) -> Path:
    """The checkpoint of a Trainer built in Python and given no config: its config is the
    defaults, which leave model.in_channels unset."""
    trainer = Trainer(energy, sampler, DataStart(), data, train=TrainConfig(batch_size=2),
                      generator=torch.Generator().manual_seed(0))
    return trainer.save(path / "checkpoint.pt")


def test_a_python_trainers_checkpoint_is_sampled_with_its_nets_channels(tmp_path: Path) -> None:
    """Shaped by the unset model.in_channels, synthesize and interpolate failed with a
    TypeError from inside check_entries; the net's own 3 channels shape them."""
    from stgconv.tasks import interpolate

    torch.manual_seed(0)
    energy = image_energy("texture", in_channels=3, layers=[[4, 3, 1]], reference_sigma=0.5)
    run = python_trainers_checkpoint(tmp_path, energy, Langevin(n_steps=1),
                                     torch.rand(2, 3, 8, 8) * 2 - 1)
    # Not "trained with chains.mode 'persistent'", the defaults' mode, which the checkpoint
    # does not say; nor does it say the sampler, which the defaults' stands in for (synthesize
    # said nothing of it).
    said = (r"holds no config \(a Trainer given no config=\), so {} is the defaults' \(20 "
            r"Langevin steps of size 0.015\), which may not be the one it learned with: give "
            r"the trainer its config \(config=stgconv.config.config_to_dict\(...\)\) to use "
            r"its own$")
    with pytest.warns(RuntimeWarning, match=said.format("the chain synthesize runs")) as warned:
        out = synthesize(run, tmp_path / "synthesis", n_samples=2, n_steps=1, device="cpu")
    assert [warning.filename for warning in warned] == [__file__]
    assert np.load(out / "synthesized.npy").shape[:2] == (2, 3)
    said = said.format("the chain from noise that reconstruct and interpolate run")
    with pytest.warns(RuntimeWarning, match=said) as warned:
        out = interpolate(run, tmp_path / "path", n_points=2, device="cpu")
    assert len(warned) == 1
    assert np.load(out / "interpolation.npy").shape[:2] == (2, 3)
    # A gray picture is reconstructed as the net's 3 channels (read as its own 1, it failed).
    from PIL import Image

    from stgconv.tasks import reconstruct

    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "gray.png")
    with pytest.warns(RuntimeWarning, match=said):
        out = reconstruct(run, tmp_path / "gray.png", tmp_path / "reconstruction",
                          n_iterations=1, device="cpu")
    assert (out / "reconstruction.json").is_file()


def test_an_rbms_checkpoint_is_refused_by_the_commands_that_shape_images(tmp_path: Path) -> None:
    from stgconv.tasks import interpolate

    rbm = RBM(4, 3, visible="gaussian", generator=torch.Generator().manual_seed(0))
    run = python_trainers_checkpoint(tmp_path, rbm, BlockGibbs(n_steps=1), torch.rand(4, 4))
    with pytest.raises(ValueError, match="the RBM of .* names no channels of its inputs"):
        synthesize(run, tmp_path / "synthesis", n_samples=2, n_steps=1, device="cpu")
    with pytest.raises(ValueError, match="the RBM of .* names no channels of its inputs"):
        interpolate(run, tmp_path / "path", n_points=2, device="cpu")
    assert not (tmp_path / "synthesis").exists() and not (tmp_path / "path").exists()


def test_class_synthesis_draws_one_row_per_class(trained_jem_run: dict[str, Path],
                                                tmp_path: Path) -> None:
    synthesize(trained_jem_run["run"], tmp_path, classes=[2, 0, 1], n_samples=2, n_steps=1,
               device="cpu")
    # One row of n_samples 28-pixel images per class (2 pixels of padding).
    assert png_size(tmp_path / "synthesized.png") == (2 * 30 + 2, 3 * 30 + 2)


def test_stored_chains_give_n_samples_for_every_class(trained_jem_run: dict[str, Path],
                                                      tmp_path: Path) -> None:
    out = synthesize(trained_jem_run["run"], tmp_path, classes=[0, 2], n_samples=2, n_steps=1,
                     start="chains", device="cpu")
    assert np.load(out / "synthesized.npy").shape == (4, 1, 28, 28)


@pytest.fixture(scope="module")
def clamped_coop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-iteration cooperative texture model whose sampler clamps to [0.1, 0.5]."""
    out = tmp_path_factory.mktemp("coop") / "run"
    config = load_config(ROOT / "configs" / "image" / "coop_mnist_quick.yaml", [
        "data.kind=texture", "data.max_images=null", "data.path=builtin:brick",
        "data.size=16", "model.arch=texture",
        "model.layers=[[4, 3, 2], [4, 3, 1]]", "cooperative.latent_dim=4",
        "cooperative.width=2", "train.n_iterations=2", "train.batch_size=2",
        "sampler.n_steps=2", "train.sample_every=0", "device=cpu", "sampler.clamp=[0.1, 0.5]",
        f"out_dir={out}"])
    return train(config, progress=False)


def test_cooperative_proposals_keep_to_the_samplers_clamp(clamped_coop_run: Path,
                                                          tmp_path: Path) -> None:
    out = synthesize(clamped_coop_run, tmp_path, n_samples=4, n_steps=0, device="cpu")
    proposals = np.load(out / "proposals.npy")  # grey levels: the clamp's 0.1 and 0.5
    assert proposals.min() >= 140.25 and proposals.max() <= 191.25


def test_cooperative_proposals_are_written_in_the_datas_range(clamped_coop_run: Path,
                                                              tmp_path: Path,
                                                              monkeypatch) -> None:
    module = importlib.import_module("stgconv.tasks.synthesize")
    revise = module.propose_and_revise

    def overshooting(*args, **kwargs):
        proposals, samples = revise(*args, **kwargs)
        return proposals * 0 + 3.0, samples

    monkeypatch.setattr(module, "propose_and_revise", overshooting)
    out = synthesize(clamped_coop_run, tmp_path, n_samples=2, n_steps=0, device="cpu")
    assert np.load(out / "proposals.npy").max() == 255.0  # 3.0 clamped to the data's white


OTHER_RUN = {".lock": "process 1 on elsewhere\n", "config.yaml": "name: another run\n"}


@pytest.mark.parametrize("removed_at, others", [
    (1, OTHER_RUN), (2, OTHER_RUN),
    # The other run only just started: its lock file is all it has, which a cleanup that
    # found no run files would take, and the folder with it.
    (1, {".lock": OTHER_RUN[".lock"]}),
])
def test_a_run_folder_retaken_by_another_run_is_left_to_it(tmp_path: Path, monkeypatch,
                                                           removed_at: int,
                                                           others: dict[str, str]) -> None:
    """The folder removed after a checkpoint and made again by another run (its lock file and
    config there): this run stops before writing into it, and its cleanup takes none of the
    other run's files. Only a lock file's presence was checked, so the run went on writing its
    checkpoints and samples over the other run's."""
    run = tmp_path / "run"

    def folder_retaken():
        shutil.rmtree(run)
        run.mkdir()
        for name, text in others.items():
            (run / name).write_text(text)

    after_checkpoint(monkeypatch, folder_retaken, removed_at)
    with pytest.raises(WriteError, match=f"run folder was removed while training.*'{run}'"):
        tiny_texture_run(tmp_path, "train.n_iterations=2", "train.checkpoint_every=1")
    assert {path.name: path.read_text() for path in run.iterdir()} == others


def test_a_lock_file_of_undecodable_words_still_says_the_folder_is_in_use(tmp_path: Path
                                                                         ) -> None:
    """The owner's words are shown as far as they read: bytes that are no UTF-8 (a lock file
    written by another program) failed with a UnicodeDecodeError instead."""
    lock = tmp_path / "run" / ".lock"
    lock.parent.mkdir()
    lock.write_bytes(b"\xffprocess 1\n")
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="is in use by \ufffdprocess 1 "):
            tiny_texture_run(tmp_path)


def test_a_held_lock_file_without_words_names_another_process(tmp_path: Path) -> None:
    """An owner that has written no words yet (or a program that writes none) is named as
    another process, not as nothing."""
    lock = tmp_path / "run" / ".lock"
    lock.parent.mkdir()
    lock.write_bytes(b"")
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=r"is in use by another process \("):
            tiny_texture_run(tmp_path)


def test_a_lock_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """The owner's words are the run's first write: a full disk there raised the system's error
    without a file name, which the CLI reported as the input's fault (exit 2), not the disk's."""
    with pytest.raises(WriteError) as failure:
        with file_size_limit(0):
            tiny_texture_run(tmp_path)
    assert failure.value.filename == str(tmp_path / "run" / ".lock")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_replaced_by_a_file_while_training_stops_and_leaves_the_file(
        tmp_path: Path, monkeypatch) -> None:
    """The cleanup unlinked the lock file under what was now a file: its NotADirectoryError
    hid why the run stopped."""
    run = tmp_path / "run"

    def folder_replaced():
        shutil.rmtree(run)
        run.write_text("a file now\n")

    after_checkpoint(monkeypatch, folder_replaced)
    # TensorBoard's writer thread may meet the file first (as where the folder is removed).
    noticed = r"run folder was removed while training|\(TensorBoard events\)"
    with pytest.raises(WriteError, match=f"({noticed}).*'{run}"):
        tiny_texture_run(tmp_path, "train.n_iterations=2", "train.checkpoint_every=1")
    assert run.read_text() == "a file now\n"


@pytest.mark.parametrize("removed_at", [1, 2])
def test_a_run_folder_removed_after_a_checkpoint_stops_before_the_next_write(
        tmp_path: Path, monkeypatch, removed_at: int) -> None:
    """Removed after the first of two checkpoints, the run stops before the second (which made
    the folder again, a checkpoint without config.yaml); removed after the last, before its
    final samples. The folders above it that the run made go with it."""
    root = tmp_path / "made"
    run = root / "run"

    def folder_removed():
        shutil.rmtree(run)
        (run / "tb").mkdir(parents=True)  # TensorBoard's writer goes on

    after_checkpoint(monkeypatch, folder_removed, removed_at)
    with pytest.raises(WriteError, match=f"run folder was removed while training.*'{run}'"):
        tiny_texture_run(root, "train.n_iterations=2", "train.checkpoint_every=1")
    assert not root.exists()


class WindowsLocks(types.ModuleType):
    """msvcrt's lock of a byte, as Windows answers it (EACCES while another handle holds the
    file), played by flock; each lock's offset recorded."""

    LK_NBLCK = 2

    def __init__(self) -> None:
        super().__init__("msvcrt")
        self.offsets: list[int] = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert mode == self.LK_NBLCK and nbytes == 1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermissionError(errno.EACCES, "Permission denied") from None
        self.offsets.append(os.lseek(fd, 0, os.SEEK_CUR))


def test_the_train_task_imports_where_there_is_no_fcntl(monkeypatch) -> None:
    """Windows has no fcntl: imported at the top of stgconv.tasks.train, it failed the import
    of the CLI, so every command (``stgconv --help`` too)."""
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", WindowsLocks())
    task = importlib.import_module("stgconv.tasks.train")
    spec = importlib.util.spec_from_file_location("train_on_windows", task.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    assert module.fcntl is None and module.msvcrt is sys.modules["msvcrt"]


def test_a_run_folder_is_locked_and_a_failed_run_cleaned_up_without_fcntl(
        tmp_path: Path, monkeypatch) -> None:
    """Windows: msvcrt locks a byte past the owner's line (a locked byte is unreadable to the
    other runs, which name the owner from that line); neither it nor signal masks are
    missed; and a failed run's error is its own, not the refusal to remove its open lock
    file."""
    task = importlib.import_module("stgconv.tasks.train")
    locks = WindowsLocks()
    monkeypatch.setattr(task, "fcntl", None)
    monkeypatch.setattr(task, "msvcrt", locks, raising=False)
    monkeypatch.delattr(task.signal, "pthread_sigmask")
    unlink = Path.unlink

    def windows_unlink(path: Path, missing_ok: bool = False) -> None:
        if path.name == ".lock":  # held open by the run, whenever it would be removed
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", windows_unlink)
    run = tiny_texture_run(tmp_path)
    assert (run / "checkpoint.pt").is_file()
    assert locks.offsets and min(locks.offsets) > len(f"process {os.getpid()} on ") + 255
    config = load_config(run / "config.yaml", ["train.n_iterations=2"])
    assert task.train(config, overwrite=True, progress=False) == run  # held, unmasked
    (run / ".lock").write_text("process 1 on elsewhere\n")
    with open(run / ".lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="is in use by process 1 on elsewhere"):
            task.train(config, resume=True, progress=False)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad.npz"):
        tiny_texture_run(tmp_path / "failing", "data.kind=objects", f"data.path={bad}")
    assert [path.name for path in (tmp_path / "failing" / "run").iterdir()] == [".lock"]


@pytest.mark.parametrize("settings, item", [
    (["chains.mode=persistent"], "chains.chains"),
    (["chains.mode=buffer", "chains.buffer_capacity=4"], "chains.samples"),
], ids=["persistent", "buffer"])
def test_stored_chains_that_are_not_finite_are_named_with_the_checkpoint(
        tmp_path: Path, settings: list[str], item: str) -> None:
    """An edited checkpoint's NaN persistent chains or replay buffer were refused by the sampler
    ("x0 holds NaN or infinite values in chain 0 ...: chains must start finite"), naming
    neither the file nor the stored chains, by synthesize --start chains and by a resume."""
    run = tiny_texture_run(tmp_path, *settings)
    path = run / "checkpoint.pt"
    state = load_checkpoint(path)
    name = item.split(".")[1]
    state["chains"][name] = torch.full_like(state["chains"][name], math.nan)
    save_checkpoint(state, path)
    said = (rf"^checkpoint {re.escape(str(path))}: its stored training chains \({item}\) hold "
            r"NaN or infinite values \(an edited file, or another program's\): ")
    with pytest.raises(CheckpointError, match=said + r"start from noise \(--start noise\)$"):
        synthesize(run, tmp_path / "out", start="chains", n_steps=1, device="cpu")
    config = load_config(run / "config.yaml", ["train.n_iterations=2"])
    with pytest.raises(CheckpointError, match=said + "use an earlier checkpoint$"):
        train(config, resume=True, progress=False)
    assert load_checkpoint(path)["iteration"] == 1


def data_gaussian_run(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of two 8x8 images and a tiny run on them whose chains start from Gaussians
    fitted to them (a fit needs two examples)."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(images / f"{i}.png")
    return images, tiny_texture_run(tmp_path, "data.kind=objects", f"data.path={images}",
                                    "chains.mode=noise", "chains.init=data_gaussian")


def test_a_stored_data_gaussian_that_is_not_finite_is_named_with_the_checkpoint(
        tmp_path: Path) -> None:
    """synthesize of a model whose chains start from Gaussians fitted to its data, the fit
    edited to NaN: refused as "a data Gaussian's means hold NaN or infinite values", naming
    neither the file nor the stored fit."""
    _, run = data_gaussian_run(tmp_path)
    path = run / "checkpoint.pt"
    state = load_checkpoint(path)
    state["init"]["means"] = torch.full_like(state["init"]["means"], math.nan)
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: its fitted Gaussians "
                                              r"'init' are damaged: a data Gaussian's means hold "
                                              r"NaN or infinite values$"):
        synthesize(run, tmp_path / "out", n_steps=1, device="cpu")


def test_reconstruct_and_interpolate_refuse_a_model_started_from_fitted_gaussians(
        tmp_path: Path) -> None:
    """They optimise and walk a noise start; a model whose chains start from Gaussians fitted to
    its data has none to give: refused naming chains.init, nothing written."""
    images, run = data_gaussian_run(tmp_path)
    message = (r"\(chains.init data_gaussian\); reconstruct optimises a noise start and "
               r"interpolate walks between two, so they take models trained from gaussian or "
               r"uniform noise$")
    with pytest.raises(ValueError, match=message):
        reconstruct(run, images / "0.png", tmp_path / "rec", n_iterations=1, device="cpu")
    with pytest.raises(ValueError, match=message):
        interpolate(run, tmp_path / "path", n_points=2, device="cpu")
    assert not (tmp_path / "rec").exists() and not (tmp_path / "path").exists()


def test_a_diverging_reconstruction_or_interpolation_advises_what_the_command_can_change(
        tmp_path: Path) -> None:
    """The sampler's own advice (a smaller step size, gradient clipping, a clamp) named
    settings reconstruct and interpolate have no option for: they run the model's chain as
    trained. After reconstruct's Adam steps, its advice of a lower lr (--lr) is kept."""
    from stgconv.checkpoint import save_checkpoint
    from stgconv.mcmc import NonFiniteEnergyError

    state = load_checkpoint(tiny_texture_run(tmp_path, "chains.mode=noise",
                                             "chains.init=uniform"))
    state["config"]["sampler"].update(step_size=1000.0, n_steps=5, clamp=None, grad_clip=None)
    run = tmp_path / "diverging"
    save_checkpoint(state, run / "checkpoint.pt")
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    advice = (r"in chain 0; the chain diverged \(the sampler is the model's own, as its config "
              r"trained it, which {} keeps: the model diverges from these starts; another "
              r"--seed draws other starts, which may stay finite\)$")
    with pytest.raises(NonFiniteEnergyError, match=advice.format("reconstruct")):
        reconstruct(run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                    device="cpu")
    with pytest.raises(NonFiniteEnergyError, match=advice.format("interpolate")):
        interpolate(run, tmp_path / "path", n_points=2, device="cpu")
    assert not (tmp_path / "rec").exists() and not (tmp_path / "path").exists()


def test_a_diverging_synthesis_advises_what_synthesize_can_change(texture_run: Path,
                                                                   tmp_path: Path) -> None:
    """The sampler's own advice (a smaller step size, gradient clipping, a clamp) named
    settings synthesize has no option for: it keeps the model's sampler as trained."""
    from stgconv.checkpoint import save_checkpoint
    from stgconv.mcmc import NonFiniteEnergyError

    state = load_checkpoint(texture_run / "checkpoint.pt")
    state["config"]["sampler"].update(step_size=1000.0, clamp=None, grad_clip=None)
    run = tmp_path / "run"
    save_checkpoint(state, run / "checkpoint.pt")
    with pytest.raises(NonFiniteEnergyError, match=r"the chain diverged \(the sampler is the "
                                                   r"model's own, .* fewer steps \(--steps.* or "
                                                   r"the stored chains \(--start chains\)"):
        synthesize(run, tmp_path / "out", n_samples=1, n_steps=50, device="cpu")
    # The stored chains are advised only where they are not the start already and exist (a
    # multi-grid or cooperative model refuses --start chains).
    with pytest.raises(NonFiniteEnergyError) as diverged:
        synthesize(run, tmp_path / "out", n_samples=1, n_steps=50, start="chains", device="cpu")
    assert "fewer steps" in str(diverged.value) and "--start" not in str(diverged.value)
    del state["chains"]
    save_checkpoint(state, run / "checkpoint.pt")
    with pytest.raises(NonFiniteEnergyError) as diverged:
        synthesize(run, tmp_path / "out", n_samples=1, n_steps=50, device="cpu")
    assert "fewer steps" in str(diverged.value) and "--start" not in str(diverged.value)
    # An int for a list of one, in Python's words: "'int' object is not iterable".
    with pytest.raises(ValueError, match=r"classes must be a list of class numbers, got 1 "
                                         r"\(\[1\] for one class\)"):
        synthesize(texture_run, tmp_path / "out", n_samples=1, classes=1, device="cpu")
