"""`stgconv fill-prior`: the learned fill's prior trained on complete clips, and recoveries that
start from it (`recovery.learned.prior`)."""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from stgconv.cli import main
from stgconv.checkpoint import load_checkpoint
from stgconv.config import LearnedFillConfig
from stgconv.io.video import save_video
from stgconv.build import seeded_weights
from stgconv.learned_fill import FillNet, load_fill_prior
from stgconv.tasks.fill_prior import DEFAULT_MASKS, train_fill_prior

SMALL = ["--frames", "6", "--size", "16", "--iterations", "3",
         "--set", "recovery.learned.crop_size=8", "--set", "recovery.learned.width=8"]
TINY_RECOVERY = ["--frames", "12", "--size", "16", "--quiet", "--set", "train.n_iterations=2",
                 "--set", "recovery.average_last=1", "--set", "recovery.warmup=1",
                 "--set", "device=cpu", "--set", "recovery.learned.iterations=3",
                 "--set", "recovery.learned.crop_size=8", "--set", "recovery.learned.width=8",
                 "--set", "recovery.learned.patterns=2", "--set", "recovery.learned.starts=[]"]


def wave_clip(folder: Path, name: str, speed: float, frames: int = 12) -> Path:
    t, y, x = torch.meshgrid(torch.arange(float(frames)), torch.arange(16.0),
                             torch.arange(16.0), indexing="ij")
    pattern = torch.sin(0.5 * x + 0.3 * y - speed * t) * 0.6
    return save_video(torch.stack([pattern, pattern.roll(3, 2), -pattern]), folder / name)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [wave_clip(folder, "a.mkv", 0.7), wave_clip(folder, "b.mkv", 1.1, frames=13)]


def test_fill_prior_writes_a_prior_a_recovery_starts_from(clips, tmp_path, capsys):
    prior = tmp_path / "prior.pt"
    assert main(["fill-prior", *map(str, clips), "--out", str(prior), *SMALL]) == 0
    # Two windows of 6 frames from each clip (13 frames: the last is left), three masks each.
    assert "12 examples (3 masks) from 2 videos" in capsys.readouterr().out
    net, fills = load_fill_prior(prior)
    assert set(fills) == {"temporal_interpolation", "neighbour_average", "biharmonic"}
    assert (net.channels, net.n_fills, net.width) == (3, 3, 8)
    table = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clips[0]), "--mask", "missing_frames:0.5",
                 "--json", str(table), *TINY_RECOVERY,
                 "--set", f"recovery.learned.prior={prior}"]) == 0
    assert json.loads(table.read_text())["errors"]["stgconv"] >= 0


def test_a_grey_config_trains_a_grey_prior_its_recovery_takes(clips, tmp_path):
    """fill-prior read the clips in colour whatever data.channels said; a grey recovery (its
    clip read grey) would then refuse the prior. Both read data.channels."""
    prior = tmp_path / "prior.pt"
    assert main(["fill-prior", str(clips[0]), "--out", str(prior), *SMALL, "--masks",
                 "region:0.5", "--set", "data.channels=1"]) == 0
    assert load_fill_prior(prior)[0].channels == 1
    table = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clips[0]), "--mask", "region:8",
                 "--json", str(table), *TINY_RECOVERY, "--set", "data.channels=1",
                 "--set", f"recovery.learned.prior={prior}"]) == 0
    assert json.loads(table.read_text())["config"]["model"]["in_channels"] == 1


def test_the_same_seed_makes_the_same_prior(clips, tmp_path):
    settings = LearnedFillConfig(crop_size=8, width=8)
    paths = [train_fill_prior(clips[:1], tmp_path / f"p{i}.pt", settings=settings,
                              iterations=3, frames=6, size=16, seed=4) for i in range(2)]
    (a, _), (b, _) = map(load_fill_prior, paths)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def test_bad_input_exits_2_before_any_work(clips, tmp_path, capsys, monkeypatch):
    prior = tmp_path / "prior.pt"
    wrong_size = tmp_path / "mask.npy"  # a mask file for other windows than SMALL's
    np.save(wrong_size, np.zeros((3, 7, 7), np.uint8))
    cases = [
        ([str(clips[0]), "--out", str(prior), *SMALL, "--frames", "40"], "fewer than frames=40"),
        # One frame short of a window (12 of 13): no window to cut, refused by its name.
        ([str(clips[0]), "--out", str(prior), *SMALL, "--frames", "13"], "fewer than frames=13"),
        # The config's data.start_frame picks where the windows begin: 4 of the 12 frames left.
        ([str(clips[0]), "--out", str(prior), *SMALL, "--set", "data.start_frame=8"],
         "has 4 frames from frame 8, fewer than frames=6"),
        ([str(clips[0]), "--out", str(tmp_path), *SMALL], "is a folder, not a file"),
        ([str(clips[0]), "--out", str(prior), *SMALL, "--masks", "region:x"],
         "'x' is not a number"),
        ([str(clips[0]), "--out", str(prior), *SMALL, "--iterations", "0"], "iterations"),
        ([str(clips[0]), str(tmp_path / "nope.mp4"), "--out", str(prior), *SMALL],
         "not found: ['" + str(tmp_path / "nope.mp4")),
        ([str(clips[0]), "--out", str(prior), *SMALL, "--frames", "0"], "frames"),
        ([str(clips[0]), "--out", str(prior), *SMALL, "--set", "recovery.learned.widht=3"],
         "widht"),
        # The same clip twice counted its windows twice among the prior's examples.
        ([str(clips[0]), str(clips[0]), "--out", str(prior), *SMALL],
         f"{clips[0]} is given twice: give each video once"),
        ([str(clips[0]), os.path.relpath(clips[0]), "--out", str(prior), *SMALL],
         f"{os.path.relpath(clips[0])} is given twice (also as {clips[0]})"),
        ([str(clips[0]), "--out", str(prior), *SMALL, "--masks", str(wrong_size)],
         "a mask file must have the clip's frames and size (windows of --frames 6"),
    ]
    for args, message in cases:
        assert main(["fill-prior", *args]) == 2
        assert message in capsys.readouterr().err
        assert not prior.exists()
    # A recovery whose prior does not fit its settings stops before training the learned fill.
    assert main(["fill-prior", str(clips[0]), "--out", str(prior), *SMALL]) == 0

    def must_not_train(*args, **kwargs):
        raise AssertionError("the learned fill was trained before the prior was checked")

    monkeypatch.setattr(importlib.import_module("stgconv.tasks.recover_video"), "learned_fill",
                        must_not_train)
    table = tmp_path / "table.json"
    for override, message in [
        ("recovery.learned.width=16", "hidden width (recovery.learned.width) is 8"),
        ("recovery.learned.fills=[temporal_interpolation]", "reads the fills"),
        ("recovery.learned.fills=[temporal_interpolation,neighbour_average,biharmonic,"
         "motion_compensated]", "reads the fills"),
        (f"recovery.learned.prior={tmp_path / 'missing.pt'}", "not found"),
        ("recovery.holdout=0", "needs recovery.holdout > 0"),
    ]:
        args = ["eval", "recovery", "--video", str(clips[0]), "--mask", "missing_frames:0.5",
                "--json", str(table), *TINY_RECOVERY, "--set", f"recovery.learned.prior={prior}",
                "--set", override]
        assert main(args) == 2
        assert message in capsys.readouterr().err
        assert not table.exists()


def test_fill_prior_and_recovery_leave_the_callers_global_rng_as_it_was(clips, tmp_path):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    prior = tmp_path / "prior.pt"
    assert main(["fill-prior", str(clips[0]), "--out", str(prior), *SMALL]) == 0
    assert torch.equal(torch.get_rng_state(), before)
    assert main(["eval", "recovery", "--video", str(clips[0]), "--mask", "missing_frames:0.5",
                 "--json", str(tmp_path / "table.json"), *TINY_RECOVERY,
                 "--set", "recovery.init=learned"]) == 0
    assert torch.equal(torch.get_rng_state(), before)


def test_a_recoverys_learned_fill_starts_from_its_prior_or_its_seeds_net(clips, tmp_path,
                                                                           monkeypatch):
    """recovery.learned.prior is the net the learned fill trains from; without one, the
    untrained net is drawn from the config's seed."""
    prior = tmp_path / "prior.pt"
    assert main(["fill-prior", str(clips[0]), "--out", str(prior), *SMALL]) == 0
    task = importlib.import_module("stgconv.tasks.recover_video")
    trained = task.learned_fill
    starts = []

    def learned_fill(*args, initial, **kwargs):
        starts.append({k: v.clone() for k, v in initial.state_dict().items()})
        return trained(*args, initial=initial, **kwargs)

    monkeypatch.setattr(task, "learned_fill", learned_fill)
    for given in ([f"recovery.learned.prior={prior}"], ["seed=3", "recovery.init=learned"]):
        assert main(["eval", "recovery", "--video", str(clips[0]), "--mask",
                     "missing_frames:0.5", *TINY_RECOVERY,
                     *(a for value in given for a in ("--set", value))]) == 0
    net, fills = load_fill_prior(prior)
    with seeded_weights(3):
        untrained = FillNet(net.channels, net.n_fills, net.width)
    for start, expected in zip(starts, (net, untrained)):
        assert all(torch.equal(start[k], v) for k, v in expected.state_dict().items())
    assert len(starts) == 2


def two_window_clip(folder: Path) -> Path:
    t, y, x = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), torch.arange(16.0),
                             indexing="ij")
    pattern = torch.sin(0.5 * x + 0.3 * y - 0.7 * t) * 0.6
    return save_video(torch.stack([pattern, pattern.roll(3, 2), -pattern]), folder / "c.mkv")


FILL_PRIOR_TASK = importlib.import_module("stgconv.tasks.fill_prior")
PRIOR = dict(settings=LearnedFillConfig(crop_size=8, width=8), iterations=1, frames=4, size=16)


def test_fill_prior_refuses_one_frame_windows_and_no_videos(tmp_path: Path) -> None:
    # Windows of one frame and an empty video list are refused up front, naming the problem.
    clip = two_window_clip(tmp_path)
    with pytest.raises(ValueError, match="frames must be an int >= 2"):
        train_fill_prior([clip], tmp_path / "p.pt", **{**PRIOR, "frames": 1})
    with pytest.raises(ValueError, match="at least one video"):
        train_fill_prior([], tmp_path / "p.pt", **PRIOR)
    with pytest.raises(FileNotFoundError, match=re.escape(f"not found: ['{tmp_path / 'no.mkv'}']")):
        train_fill_prior([clip, tmp_path / "no.mkv"], tmp_path / "p.pt", **PRIOR)


@pytest.mark.parametrize("videos, masks, message", [
    ("clip.mkv", ["region:2"],
     r"^videos must be a list of video paths, got str 'clip\.mkv' \(\[path\] for one\)$"),
    (Path("clip.mkv"), ["region:2"],
     rf"^videos must be a list of video paths, got {type(Path()).__name__} "),
    (["clip.mkv"], "region:2",
     r"^masks must be a list of masks, got str 'region:2' \(\[mask\] for one\)$"),
])
def test_fill_prior_refuses_one_path_or_mask_not_in_a_list(tmp_path: Path, videos, masks,
                                                           message) -> None:
    """One video's path was read letter by letter ("video(s) not found: ['c', 'l', ...]"), as a
    Path failed in iteration (TypeError) and one mask as the mask file 'r'."""
    with pytest.raises(ValueError, match=message):
        train_fill_prior(videos, tmp_path / "p.pt", **{**PRIOR, "masks": masks})


@pytest.fixture
def no_video_read(monkeypatch) -> None:
    """A video read fails the test: what is refused is refused before the work starts."""
    def must_not_read(*args, **kwargs):
        raise AssertionError("a video was read before the settings were checked")

    monkeypatch.setattr(FILL_PRIOR_TASK, "load_video", must_not_read)


@pytest.mark.parametrize("changed, message", [
    ({"settings": LearnedFillConfig(crop_size=8, width=0)}, "recovery.learned.width"),
    ({"iterations": 0}, "iterations must be an int >= 1, got 0"),
    ({"frames": 2, "size": 7000}, "a window of 2 frames of 7000x7000 makes"),
    ({"masks": []}, "at least one mask"),
], ids=["settings", "iterations", "window", "no mask"])
def test_fill_prior_refuses_bad_settings_before_reading_a_video(tmp_path: Path, no_video_read,
                                                                changed, message) -> None:
    """Called from Python (the command line checks its options itself), not after making
    every window's fills."""
    with pytest.raises(ValueError, match=message):
        train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt", **{**PRIOR, **changed})
    assert not (tmp_path / "p.pt").exists()


def test_fill_prior_refuses_a_mask_file_of_other_channels_before_reading_a_video(
        tmp_path: Path, no_video_read) -> None:
    """Its frames and size fit, its two channels do not broadcast to the clips' three."""
    mask = tmp_path / "two_channels.npy"
    np.save(mask, np.zeros((2, PRIOR["frames"], PRIOR["size"], PRIOR["size"]), np.uint8))
    with pytest.raises(ValueError, match="does not match video"):
        train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt", masks=[str(mask)],
                         **PRIOR)


@pytest.mark.parametrize("mask, hidden", [("missing_frames:1", "every entry"),
                                          ("region:0.99", "every entry"),
                                          ("salt_and_pepper:0", "nothing")])
def test_fill_prior_refuses_a_mask_that_hides_all_or_nothing_before_reading_a_video(
        tmp_path: Path, no_video_read, mask: str, hidden: str) -> None:
    """No example can be made of it: refused, naming it, only once the videos were read and
    filled ("a prior example needs a mask with both ...", no mask named)."""
    with pytest.raises(ValueError, match=rf"^mask \S+: it hides {hidden} of a window"):
        train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt",
                         masks=["missing_frames:0.5", mask], **PRIOR)
    assert not (tmp_path / "p.pt").exists()


def test_fill_prior_names_the_mask_and_window_whose_random_draw_hides_nothing(
        tmp_path: Path, monkeypatch) -> None:
    """A random mask is drawn anew for each window, after the check up front: a draw that
    hides nothing is refused naming the mask, the frames and the video."""
    original = FILL_PRIOR_TASK.load_known
    calls = []

    def second_draw_hides_nothing(mask, shape, *, seed):
        calls.append(seed)
        known = original(mask, shape, seed=seed)
        return torch.ones_like(known) if len(calls) == 2 else known

    monkeypatch.setattr(FILL_PRIOR_TASK, "load_known", second_draw_hides_nothing)
    clip = two_window_clip(tmp_path)
    with pytest.raises(ValueError, match=rf"^mask salt_and_pepper:0.5 on frames 0..3 of "
                                         rf"{re.escape(str(clip))}: a prior example needs"):
        train_fill_prior([clip], tmp_path / "p.pt", **{**PRIOR, "masks": ["salt_and_pepper:0.5"]})


def test_fill_prior_cuts_whole_windows_at_the_asked_size(tmp_path: Path, monkeypatch) -> None:
    """A clip exactly --frames long is one window, resized to --size (the 16x16 clip to 8x8)."""
    windows = []
    original = FILL_PRIOR_TASK.prior_example

    def recording(window, known, fills):
        windows.append(tuple(window.shape))
        return original(window, known, fills)

    monkeypatch.setattr(FILL_PRIOR_TASK, "prior_example", recording)
    train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt",
                     **{**PRIOR, "frames": 8, "size": 8, "masks": ["missing_frames:0.5"]})
    assert windows == [(3, 8, 8, 8)]


def test_fill_prior_seeds_the_nets_weights_and_its_training(tmp_path: Path, monkeypatch) -> None:
    """The seed reaches the net's initial weights and the training's own draws, and the prior
    records the videos' names."""
    original = FILL_PRIOR_TASK.fill_prior
    seeds = []

    def recording(examples, *, generator, **kwargs):
        seeds.append((torch.initial_seed(), generator.initial_seed()))
        return original(examples, generator=generator, **kwargs)

    monkeypatch.setattr(FILL_PRIOR_TASK, "fill_prior", recording)
    prior = train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt", seed=4, **PRIOR)
    assert seeds == [(4, 4)]
    assert load_checkpoint(prior)["trained_on"] == ["c.mkv"]


@pytest.mark.parametrize("losses, final", [(range(150), "99.5000"), ([1.0, 2.0], "1.5000")],
                         ids=["150", "2"])
def test_fill_prior_reports_the_mean_of_its_last_100_losses(tmp_path: Path, monkeypatch, capsys,
                                                             losses, final: str) -> None:
    """One iteration's loss is noisy: the summary's final loss is the mean of the last 100
    (50 .. 149), or of every loss where there are fewer; it counts the examples, masks and
    videos (one)."""
    original = FILL_PRIOR_TASK.fill_prior

    def fixed_losses(examples, **kwargs):
        net, _ = original(examples, **kwargs)
        return net, [float(loss) for loss in losses]

    monkeypatch.setattr(FILL_PRIOR_TASK, "fill_prior", fixed_losses)
    train_fill_prior([two_window_clip(tmp_path)], tmp_path / "p.pt",
                     **{**PRIOR, "masks": ["missing_frames:0.5"]})
    assert (f"2 examples (1 mask) from 1 video; final loss {final};"
            in capsys.readouterr().out)


def test_fill_prior_picks_the_frames_of_the_configs_start_frame_and_fps(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Windows are cut from the frames a recovery of that config reads (data.start_frame,
    data.fps), so the prior learns the motion between frames at the rate it will fill: 9 flat
    frames at 20 fps, frame t at grey -0.8 + 0.2 t, from frame 2 at 10 fps are frames 2 4 6 8."""
    levels = -0.8 + 0.2 * torch.arange(9.0)
    clip = save_video(levels.view(1, 9, 1, 1).expand(3, 9, 8, 8), tmp_path / "steps.mkv", fps=20)
    windows = []
    original = FILL_PRIOR_TASK.prior_example

    def recording(window, known, fills):
        windows.append(((window.mean((0, 2, 3)) + 0.8) / 0.2).round().tolist())
        return original(window, known, fills)

    monkeypatch.setattr(FILL_PRIOR_TASK, "prior_example", recording)
    assert main(["fill-prior", str(clip), "--out", str(tmp_path / "p.pt"), *SMALL,
                 "--frames", "2", "--size", "8", "--masks", "missing_frames:0.5",
                 "--set", "data.start_frame=2", "--set", "data.fps=10"]) == 0
    assert windows == [[2.0, 4.0], [6.0, 8.0]]


def test_the_default_masks_are_the_experiments_three_kinds() -> None:
    """The block is 40% of the side: the experiments' 60 pixels of 150."""
    assert [FILL_PRIOR_TASK._mask_spec(mask, 150) for mask in DEFAULT_MASKS] == [
        "missing_frames:0.5", "region:60", "salt_and_pepper:0.5"]
    assert FILL_PRIOR_TASK._mask_spec("fixed_region:0.4", 150) == "fixed_region:60"
    assert (FILL_PRIOR_TASK._mask_spec("fixed_region:0.2+missing_frames:0.3", 150)
            == "fixed_region:30+missing_frames:0.3")  # each of the masks joined


def test_fill_prior_draws_each_windows_mask_anew_at_the_asked_size(tmp_path: Path,
                                                                  monkeypatch) -> None:
    # region:1 is a 1-pixel block (not the whole frame); each window gets its own draw.
    clip = two_window_clip(tmp_path)
    masks = []
    original = FILL_PRIOR_TASK.prior_example

    def recording(window, known, fills):
        masks.append(known.clone())
        return original(window, known, fills)

    monkeypatch.setattr(FILL_PRIOR_TASK, "prior_example", recording)
    train_fill_prior([clip], tmp_path / "p.pt", masks=["region:1"], **PRIOR)
    assert len(masks) == 2
    assert all(int((~known).flatten(1).sum(1).max()) == 1 for known in masks)
    assert not torch.equal(masks[0], masks[1])


def test_fill_prior_region_fraction_rounds_to_at_least_one_pixel(tmp_path: Path) -> None:
    # region:0.01 of a 16-pixel frame is a block of one pixel, not an empty (refused) block.
    clip = two_window_clip(tmp_path)
    assert train_fill_prior([clip], tmp_path / "p.pt", masks=["region:0.01"], **PRIOR).is_file()


def test_fill_prior_masks_given_twice_are_both_used(tmp_path: Path, monkeypatch) -> None:
    """``--masks A --masks B`` hides the windows under both, as ``--masks A B`` does: the second
    ``--masks`` replaced the first, and the prior never saw mask A, without a word."""
    used = []
    monkeypatch.setattr(importlib.import_module("stgconv.tasks"), "train_fill_prior",
                        lambda videos, out, **kwargs: used.append(kwargs["masks"]) or Path(out))
    common = ["fill-prior", str(two_window_clip(tmp_path)), "--out", str(tmp_path / "p.pt")]
    assert main([*common, "--masks", "region:2", "--masks", "missing_frames:0.5"]) == 0
    assert main([*common, "--masks", "region:2", "missing_frames:0.5"]) == 0
    assert main(common) == 0  # left out: the experiments' three kinds
    assert used == [["region:2", "missing_frames:0.5"]] * 2 + [list(DEFAULT_MASKS)]
