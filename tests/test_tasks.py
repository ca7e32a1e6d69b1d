"""The tasks package as a library (``stgconv.tasks``): training and synthesis run the same code for
every modality, and each modality's outputs are what it says. The command line over them is in
``test_cli.py``; recovery and the voxel tasks have files of their own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import boxes_and_balls
from PIL import Image

from stgconv.checkpoint import load_checkpoint
from stgconv.config import load_config
from stgconv.io.video import save_video
from stgconv.tasks import synthesize, train


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
    low, high = (0.0, 1.0) if modality == "voxels" else (-1.0, 1.0)
    assert samples.min() >= low and samples.max() <= high
    chained = synthesize(run, tmp_path / "chains", n_samples=2, n_steps=1, start="chains",
                         device="cpu")
    assert {p.name for p in chained.iterdir()} == written
    if modality == "video":  # played at data.fps (it was 25 whatever the data's rate)
        for gif in (run / "observed.gif", run / "samples.gif", out / "synthesized.gif"):
            with Image.open(gif) as frames:
                assert frames.info["duration"] == 20, gif


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


@pytest.mark.parametrize("modality", list(WRITTEN))
def test_training_logs_samples_and_norms_into_tensorboard(modality: str, tmp_path: Path) -> None:
    """Read back from the event file: the samples (images, a clip's frames, a voxel mesh and its
    volume fraction), every layer's weight and gradient norm, the energies; none with
    train.log_media false."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def tags(log_media: bool) -> dict[str, list[str]]:
        out = tmp_path / f"run_{log_media}"
        config = load_config(None, [*data_overrides(modality, tmp_path), f"out_dir={out}",
                                    "device=cpu", "train.n_iterations=2", "train.sample_every=1",
                                    "sampler.n_steps=2", "chains.chains_per_example=2",
                                    f"train.log_media={str(log_media).lower()}"])
        train(config, progress=False)
        events = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "tensors": 0})
        events.Reload()
        return events.Tags()

    logged = tags(True)
    assert {"train/e_pos", "train/e_neg", "train/loss"} <= set(logged["scalars"])
    assert any(t.startswith("weights/") for t in logged["scalars"])
    assert any(t.startswith("gradients/") for t in logged["scalars"])
    if modality == "image":
        assert "samples" in logged["images"]
    elif modality == "video":
        assert {"samples", "samples/frames"} <= set(logged["images"])  # the clips as a GIF video
    else:
        assert "samples/volume_fraction" in logged["scalars"]
    quiet = tags(False)
    assert not any(t.startswith(("weights/", "samples")) for t in quiet["scalars"])
    assert not quiet["images"]
