"""`stgconv recover` and `stgconv eval recovery`: the scripted-evaluation contract on a tiny
clip."""

from __future__ import annotations

import importlib
import io
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from _tiny import read_events

from stgconv.baselines.video import (
    biharmonic_inpainting,
    neighbour_average,
    temporal_interpolation,
)
from stgconv.cli import main
from stgconv.config import QUICK_RECOVERY_CONFIG, load_config
from stgconv.evaluation.tensorboard import frame_comparison, log_evaluation
from stgconv.evaluation.video_recovery import eval_recovery, format_table
from stgconv.io.image import to_unit
from stgconv.io.video import frame_rate, load_video, save_video
from stgconv.metrics import missing_mae_255
from stgconv.recovery import (always_missing, holdout_like, interpolation_spread,
                              spread_step_scale)
from stgconv.tasks.recover_video import load_known

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--frames", "12", "--size", "32", "--quiet", "--set", "train.n_iterations=2",
        "--set", "recovery.average_last=1", "--set", "recovery.warmup=1", "--set", "device=cpu",
        "--set", "recovery.learned.iterations=3"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A moving sinusoid, 12 frames of 32x32 at 10 fps, stored losslessly."""
    t, y, x = torch.meshgrid(torch.arange(12.0), torch.arange(32.0), torch.arange(32.0),
                             indexing="ij")
    wave = torch.sin(0.4 * x + 0.3 * y - 0.5 * t) * 0.6
    video = torch.stack([wave, wave.roll(3, 2), -wave])
    path = tmp_path_factory.mktemp("clip") / "wave.mkv"
    save_video(video, path, fps=10)
    return path


def quick_config(*overrides: str):
    """recovery_quick.yaml at the tiny schedule of ``TINY``, with ``overrides``."""
    return load_config(QUICK_RECOVERY_CONFIG, [
        "train.n_iterations=2", "recovery.average_last=1", "recovery.warmup=1", "device=cpu",
        "recovery.learned.iterations=1", "recovery.learned.patterns=1",
        "recovery.learned.crop_size=8", *overrides])


def salt_and_pepper_clip(clip: Path, config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(truth, known, held_out)``: the tiny clip under salt_and_pepper:0.5 and the holdout the
    task draws from it (seed + 1, fraction 0.3)."""
    truth = load_video(clip, n_frames=12, size=32)
    known = load_known("salt_and_pepper:0.5", tuple(truth.shape[1:]),
                       seed=config.seed).expand_as(truth)
    hidden = holdout_like(known, fraction=0.3,
                          generator=torch.Generator().manual_seed(config.seed + 1))
    return truth, known, hidden.expand_as(known) & known


def recorded_keywords(monkeypatch, module, name: str) -> list[dict]:
    """The keyword arguments of each call to ``module.name`` from now on (it still runs)."""
    calls, original = [], getattr(module, name)

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


def test_eval_recovery_writes_the_json_contract(clip, tmp_path, capsys):
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "missing_frames:0.5",
                 "--json", str(out), "--tensorboard", str(tmp_path / "tb"), *TINY]) == 0
    table = json.loads(out.read_text())
    assert "0-255" in table["unit"]
    assert set(table["errors"]) == {"stgconv", "temporal_interpolation", "biharmonic",
                                    "neighbour_average", "motion_compensated"}
    assert all(np.isfinite(e) and e >= 0 for e in table["errors"].values())
    assert table["missing_fraction"] == pytest.approx(0.5)
    # The config as run: the clip's frames, size and colour, not the config file's.
    assert (table["config"]["data"]["frames"], table["config"]["data"]["size"]) == (12, 32)
    assert table["config"]["model"]["in_channels"] == 3
    # No --out: no recovery files were written, and none is named (it named the config's
    # out_dir, outputs/recovery, where nothing was).
    assert table["config"]["out_dir"] is None
    printed = capsys.readouterr().out
    assert "temporal_interpolation" in printed
    assert f"wrote {out}, {tmp_path / 'tb'}" in printed  # every output the run wrote
    # The same scores and a comparison frame, read back from TensorBoard's event file.
    events = read_events(tmp_path / "tb")
    assert events.Scalars("recovery/error/stgconv")[0].value == pytest.approx(
        table["errors"]["stgconv"], rel=1e-6)
    assert {f"recovery/error/{name}" for name in table["errors"]} <= set(events.Tags()["scalars"])
    (image,) = events.Images("recovery/occluded | start | stgconv | truth")
    assert (image.width, image.height) == (4 * 32, 32)


@pytest.mark.parametrize("command", [
    # One iteration: were the refusal lost, the test would train 3000 (11 minutes) to fail.
    ["fill-prior", "{clip}", "--out", "{clip}", "--iterations", "1"],
    ["eval", "recovery", "--video", "{clip}", "--mask", "{mask}", "--json", "{mask}"],
    ["eval", "recovery", "--video", "{clip}", "--mask", "region:8", "--json", "{clip}"],
    # recover writes recovered.npy into --out: a mask of that name there was replaced.
    ["recover", "--video", "{clip}", "--mask", "{out_mask}", "--out", "{folder}"],
    # eval recovery --out writes what recover writes: the mask was replaced the same way.
    ["eval", "recovery", "--video", "{clip}", "--mask", "{out_mask}", "--out", "{folder}"],
], ids=["fill-prior", "eval-mask", "eval-video", "recover-into-the-masks-folder",
        "eval-into-the-masks-folder"])
def test_an_output_that_is_an_input_is_refused(clip, tmp_path, capsys, command):
    """The input would be replaced once the work is done (a prior written over the clip, the
    table over the mask): refused first, both files left as they were."""
    mask = tmp_path / "mask.npy"
    np.save(mask, np.zeros((12, 32, 32), dtype=bool))
    out_mask = tmp_path / "recovered.npy"
    np.save(out_mask, np.zeros((12, 32, 32), dtype=bool))
    before = {path: path.read_bytes() for path in (clip, mask, out_mask)}
    names = {"{clip}": clip, "{mask}": mask, "{out_mask}": out_mask, "{folder}": tmp_path}
    args = list(command)
    for name, path in names.items():
        args = [a.replace(name, str(path)) for a in args]
    assert main([*args, *TINY[:4]]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and "writing it would replace it" in err, err
    assert {path: path.read_bytes() for path in (clip, mask, out_mask)} == before


def test_a_clip_shorter_than_frames_names_the_option(clip, tmp_path, capsys):
    """The reader named its own parameter only (n_frames=13), which a user of recover never
    sets: it is --frames (the task's frames)."""
    assert main(["recover", "--video", str(clip), "--mask", "region:8", "--frames", "13",
                 "--size", "32", "--out", str(tmp_path / "out"), "--set", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stgconv recover: error: asked for n_frames=13 from start_frame=0, "
                          f"but {clip} has 12 frames"), err
    assert err.rstrip().endswith("(n_frames is frames, --frames)"), err
    assert not (tmp_path / "out").exists()


def test_recover_writes_clips_and_metrics(clip, tmp_path):
    out = tmp_path / "run"
    (out / "tb").mkdir(parents=True)  # an earlier run's --tensorboard: no training run's
    assert main(["recover", "--video", str(clip), "--mask", "region:12", "--out", str(out),
                 *TINY]) == 0
    assert {"recovered.mp4", "recovered.npy", "comparison.mp4", "metrics.json",
            "config.yaml"} <= {p.name for p in out.iterdir()}
    # Played at the clip's rate (they were 25 fps whatever the clip's).
    assert frame_rate(out / "recovered.mp4") == frame_rate(out / "comparison.mp4") == 10
    metrics = json.loads((out / "metrics.json").read_text())
    # The uncompressed clip scores as the metrics say (the mean absolute error on the missing
    # pixels, 0-255), so programs can score it themselves.
    recovered = torch.from_numpy(np.load(out / "recovered.npy"))
    truth = load_video(clip, n_frames=12, size=32)  # as TINY says
    seed = load_config(None).seed
    known = load_known("region:12", tuple(truth.shape[1:]), seed=seed).expand_as(truth)
    assert recovered.shape == truth.shape and recovered.dtype == torch.float32
    assert torch.equal(recovered[known], truth[known])
    assert missing_mae_255(recovered, truth, known) == pytest.approx(
        metrics["errors"]["stgconv"], rel=1e-5)
    # The start's row is named by the fill that scored best on the held-out entries.
    holdout_errors = metrics["start_holdout_errors"]
    assert set(metrics["errors"]) == {"stgconv",
                                      f"init ({min(holdout_errors, key=holdout_errors.get)})"}
    # The saved config is the one that ran: the clip read, its channels, frames and size, this
    # folder.
    ran = load_config(out / "config.yaml")
    assert ran.data.path == str(clip)
    assert (ran.data.channels, ran.data.frames, ran.data.size) == (3, 12, 32)
    assert (ran.model.in_channels, ran.model.image_size) == (3, 32)
    assert ran.out_dir == str(out)


def test_a_grey_config_recovers_the_clip_in_grey(clip, tmp_path):
    """data.channels 1 read the clip in colour all the same, and the config.yaml written beside
    the result said data.channels 3: the clip is read grey (luma, as training reads clips), its
    model grey; a colour clip given under it is refused naming both."""
    out = tmp_path / "run"
    assert main(["recover", "--video", str(clip), "--mask", "region:12", "--out", str(out),
                 *TINY, "--set", "data.channels=1", "--set", "recovery.init=temporal_interpolation",
                 "--set", "recovery.holdout=0"]) == 0
    recovered = np.load(out / "recovered.npy")
    assert recovered.shape == (1, 12, 32, 32)
    grey = load_video(clip, n_frames=12, size=32, channels=1)
    known = load_known("region:12", (12, 32, 32), seed=load_config(None).seed).expand_as(grey)
    assert torch.equal(torch.from_numpy(recovered)[known], grey[known])
    ran = load_config(out / "config.yaml")
    assert (ran.data.channels, ran.model.in_channels) == (1, 1)
    task = importlib.import_module("stgconv.tasks.recover_video")
    with pytest.raises(ValueError, match=re.escape(
            "clip is (3, 12, 32, 32): my clip read at frames=12, size=32 at data.channels 1 is "
            "(1, 12, 32, 32) (a colour clip, and the config's data.channels is 1: give a grey "
            "one, or set data.channels 3)")):
        task.recover_video(quick_config("data.channels=1"), "my clip", "region:12", frames=12,
                           size=32, clip=load_video(clip, n_frames=12, size=32))


def test_a_clip_read_at_data_fps_plays_at_it(clip, tmp_path):
    """Every other frame of the 10 fps clip: the videos play at 5 fps (they were 10, so a clip
    read at 2 fps from a 60 fps file played 30 times too fast)."""
    out = tmp_path / "run"
    assert main(["recover", "--video", str(clip), "--mask", "region:12", "--out", str(out),
                 *TINY, "--frames", "6", "--set", "data.fps=5"]) == 0
    assert frame_rate(out / "recovered.mp4") == frame_rate(out / "comparison.mp4") == 5
    assert np.load(out / "recovered.npy").shape == (3, 6, 32, 32)


def test_an_odd_size_is_written_too(clip, tmp_path):
    """recovered.mp4's codec needs an even size: it gets a white column and row, and the exact
    clip is in recovered.npy (save_video refused, after the whole recovery had run)."""
    out = tmp_path / "run"
    assert main(["recover", "--video", str(clip), "--mask", "region:12", "--out", str(out),
                 *TINY, "--size", "33"]) == 0
    assert np.load(out / "recovered.npy").shape == (3, 12, 33, 33)
    assert load_video(out / "recovered.mp4").shape == (3, 12, 34, 34)


def test_a_still_clip_is_recovered_not_refused(tmp_path):
    """Every hidden pixel's observed ends agree, so the interpolation spread that scales the
    chain's steps is 0 everywhere (it was normalised by its own root mean square, 0/0)."""
    still = torch.linspace(-0.8, 0.8, 32)[None, None, :, None].expand(3, 12, 32, 32)
    path = save_video(still.contiguous(), tmp_path / "still.mkv")
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(path), "--mask", "region:8", "--json",
                 str(out), *TINY, "--set", "recovery.learned.crop_size=8",
                 "--set", "recovery.learned.patterns=2"]) == 0
    errors = json.loads(out.read_text())["errors"]
    assert errors["temporal_interpolation"] == 0.0
    assert errors["stgconv"] < 1.0


def test_bad_inputs_exit_2_with_a_message(clip, tmp_path, capsys, monkeypatch):
    mat = tmp_path / "mask.mat"  # the shared masks' layout (H, W, T, C), 1 = missing
    scipy.io.savemat(mat, {"masks": np.zeros((150, 150, 70, 3), np.uint8)})
    two_channels = tmp_path / "two_channels.mat"  # the clip's frames and size, not its channels
    scipy.io.savemat(two_channels, {"masks": np.zeros((32, 32, 12, 2), np.uint8)})
    # Masks that would broadcast over the 12 frames of 32x32: another experiment's, refused.
    column, frame = tmp_path / "column.npy", tmp_path / "frame.npy"
    np.save(column, np.ones((12, 32, 1), np.uint8))
    np.save(frame, np.ones((1, 32, 32), np.uint8))
    cases = [
        (["--video", str(clip), "--mask", str(mat)], "(H, W, T, C) read as (C, T, H, W)"),
        (["--video", str(clip), "--mask", str(two_channels)],
         "does not match video (3, 12, 32, 32); expected (T, H, W) or (C, T, H, W) matching the "
         "video's last dimensions (the .mat mask's (H, W, T, C) read as (C, T, H, W))"),
        # The files' own shapes, not the (1, T, H, W) they are read as.
        (["--video", str(clip), "--mask", str(column)], "is (12, 32, 1), the clip (T, H, W) "
                                                        "(12, 32, 32): a mask file must have"),
        (["--video", str(clip), "--mask", str(frame)], "is (1, 32, 32), the clip"),
        (["--video", str(tmp_path / "nope.mp4"), "--mask", "region:8"], "nope.mp4"),
        (["--video", str(clip), "--mask", "region:x"], "not a number"),
        (["--video", str(clip), "--mask", "missing_frames:0.5", "--set", "model.archx=1"], "archx"),
        (["--video", str(clip), "--mask", "region:8", "--config",
          str(ROOT / "configs" / "video" / "multigrid_flag_quick.yaml")],
         "this config's multigrid section would be ignored"),
        (["--video", str(clip), "--mask", "region:8", "--config",
          str(ROOT / "configs" / "video" / "coop_fire_pot_quick.yaml")],
         "this config's cooperative section would be ignored"),
        (["--video", str(clip), "--mask", "region:8", "--config",
          str(ROOT / "configs" / "image" / "jem_mnist_quick.yaml")],
         "this config's jem section would be ignored"),
        (["--video", str(clip), "--mask", "region:8", "--config",
          str(ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml")],
         "this config's initializer section would be ignored"),
        # Once the clip was read: "unknown video architecture 'texture'".
        (["--video", str(clip), "--mask", "region:8", "--config",
          str(ROOT / "configs" / "image" / "texture_brick.yaml")],
         "recovery learns a video model from the clip: the config's data.kind must be 'video'"),
    ]
    for args, message in cases:
        assert main(["eval", "recovery", *args, *TINY]) == 2
        assert message in capsys.readouterr().err

    # A chain schedule that cannot run is refused before the learned fill is trained (minutes
    # on a real clip), and nothing is written.
    def must_not_train(*args, **kwargs):
        raise AssertionError("the learned fill was trained before the schedule was checked")

    # (stgconv.tasks exports a function of the module's name, so the module by import_module.)
    monkeypatch.setattr(importlib.import_module("stgconv.tasks.recover_video"), "learned_fill",
                        must_not_train)
    out = tmp_path / "table.json"
    for setting, message in [
        ("recovery.warmup=2", "recovery.warmup must be in [0, train.n_iterations) = [0, 2), got 2"),
        ("recovery.step_scale_power=-1", "recovery.step_scale_power must be a finite number >= 0"),
        ("recovery.completion.grad_clip=-5", "recovery.completion.grad_clip must be positive"),
        ("model.reference_sigma=0", "model.reference_sigma must be positive"),
        ("recovery.holdout=1.5", "recovery.holdout must be in [0, 1)"),
        ("recovery.learned.prior=nope.pt", "fill prior not found: nope.pt"),
        ("chains.init=data_gaussian", "chains.init: noise kind must be"),
    ]:
        assert main(["eval", "recovery", "--video", str(clip), "--mask", "missing_frames:0.5",
                     "--json", str(out), *TINY, "--set", "recovery.init=learned",
                     "--set", "recovery.holdout=0.3", "--set", setting]) == 2, setting
        assert message in capsys.readouterr().err, setting
    # Too small for the descriptor: its smallest input is named.
    for mask, message in (("missing_frames:0", "the mask hides nothing"),
                          ("missing_frames:1", "the mask hides every entry")):
        assert main(["recover", "--video", str(clip), "--mask", mask,
                     "--out", str(tmp_path / "run"), *TINY]) == 2
        assert message in capsys.readouterr().err, mask
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "missing_frames:0.5",
                 "--json", str(out), *TINY, "--size", "8"]) == 2
    assert "smaller than the network's receptive field: it needs at least (" in (
        capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "run").exists()


def test_a_clip_too_small_for_the_network_names_what_to_change(clip, tmp_path, capsys) -> None:
    """Two frames, as a short clip of the user's: "input size (2, 32, 32) is smaller than the
    network's receptive field" named neither the clip nor the options that set its size."""
    assert main(["recover", "--video", str(clip), "--mask", "region:8",
                 "--out", str(tmp_path / "run"), *TINY, "--frames", "2"]) == 2
    assert re.search(r"error: input size \(2, 32, 32\) is smaller than the network's receptive "
                     r"field: it needs at least \(3, \d+, \d+\) \(the clip's frames, height and "
                     r"width, for model\.arch 'st_small'\): recover more frames or at a larger "
                     r"size \(--frames, --size\), or choose another model\.arch\n$",
                     capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_masks_the_learned_fill_or_holdout_cannot_use_say_what_to_set(clip, tmp_path, capsys):
    """Each message names every setting to change, in one go (the fixed mask's first message
    named only the hold-out, and after that was set, a second one the start)."""
    fixed = np.zeros((32, 32, 12, 3), np.uint8)  # the shared .mat layout (H, W, T, C), 1 = missing
    fixed[:24] = 1  # the same rows missing in every frame, too many to move onto observed ones
    first_only = np.ones((32, 32, 12, 3), np.uint8)
    first_only[:, :, 0] = 0  # only the first frame observed
    first_two = first_only.copy()
    first_two[:, :, 1] = 0  # the holdout hides one, the learned fill's patterns the other
    # The left half missing in every frame, moved whole onto the right half: blamed on "too few
    # observed frames", where every frame shows half of itself.
    half = np.zeros((32, 32, 12, 3), np.uint8)
    half[:, :16] = 1
    occluder = ("(the entries it hides in every frame cover so much of the frame that, moved "
                "within it, they cover the rest)")
    for name, mask in (("fixed", fixed), ("first_only", first_only), ("first_two", first_two),
                       ("half", half)):
        scipy.io.savemat(tmp_path / f"{name}.mat", {"masks": mask})
    learned = [*TINY, "--set", "recovery.init=learned"]
    cases = [
        ("fixed", ["--set", "recovery.holdout=0.3"],
         "choose a classical recovery.init for it and recovery.holdout: 0"),
        # Both the holdout and the learned fill refuse it: one message names both settings
        # (it named the holdout's, and once that was set, the learned fill's).
        ("first_only", ["--set", "recovery.holdout=0.3"],
         "recovery.holdout and the learned fill (recovery.init: learned) each hide every "
         "observed entry of this mask (too few observed frames): set recovery.holdout: 0 and "
         "choose a classical recovery.init for it"),
        ("first_only", ["--set", "recovery.holdout=0"],
         "the learned fill hides observed entries shaped like the missing ones to learn from, "
         "and on this mask that hides every observed entry"),
        # Sent to a classical start alone, where the hold-out's frame given back keeps the
        # learned fill.
        ("first_two", ["--set", "recovery.holdout=0.3"],
         "that hides every observed entry (too few observed frames): choose a classical "
         "recovery.init for it; or set recovery.holdout: 0, which leaves it the observed "
         "entries the holdout hides"),
        ("half", ["--set", "recovery.holdout=0.3"],
         "recovery.holdout and the learned fill (recovery.init: learned) each hide every "
         f"observed entry of this mask {occluder}: set recovery.holdout: 0 and choose a "
         "classical recovery.init for it"),
        # A classical start: the holdout's refusal alone.
        ("half", ["--set", "recovery.holdout=0.3", "--set", "recovery.init=biharmonic"],
         f"recovery.holdout hides every observed entry of this mask {occluder}: set "
         "recovery.holdout: 0"),
        ("half", ["--set", "recovery.holdout=0"],
         f"and on this mask that hides every observed entry {occluder}: choose a classical "
         "recovery.init for it"),
    ]
    for name, args, message in cases:
        assert main(["recover", "--video", str(clip), "--mask", str(tmp_path / f"{name}.mat"),
                     "--out", str(tmp_path / "run"), *learned, *args]) == 2
        assert message in capsys.readouterr().err, (name, args)
    assert not (tmp_path / "run").exists()


def test_eval_recovery_from_the_learned_fill_names_its_start(clip, tmp_path):
    learned = ["--set", "recovery.init=learned", "--set", "recovery.learned.crop_size=8",
               "--set", "recovery.learned.patterns=2"]
    tables = {}
    for holdout in (0.0, 0.3):
        out = tmp_path / f"table{holdout}.json"
        assert main(["eval", "recovery", "--video", str(clip), "--mask", "salt_and_pepper:0.5",
                     "--json", str(out), *TINY, *learned,
                     "--set", f"recovery.holdout={holdout}"]) == 0
        tables[holdout] = json.loads(out.read_text())
    # Without a holdout nothing can overrule the learned fill; with one, the fill that scored
    # best on the held-out entries starts the chain.
    assert tables[0.0]["start"]["fill"] == "learned"
    assert tables[0.0]["start"]["holdout_errors"] == {}
    errors = tables[0.3]["start"]["holdout_errors"]
    assert set(errors) == {"learned", "temporal_interpolation", "neighbour_average",
                           "biharmonic", "motion_compensated"}
    assert errors[tables[0.3]["start"]["fill"]] == min(errors.values())
    for table in tables.values():
        assert np.isfinite(table["start"]["error"]) and table["start"]["error"] >= 0
        assert set(table["errors"]) == {"stgconv", "temporal_interpolation", "biharmonic",
                                        "neighbour_average", "motion_compensated"}


def test_a_fixed_occluder_is_recovered_with_the_learned_fill_and_a_holdout(clip, tmp_path):
    """A logo drawn once for every frame, with the default start (learned) and a holdout: both
    hide observed pixels in the logo's shape elsewhere in the frame (they were refused: no
    other frame shows the logo's pixels), and the start that scored best there wins."""
    logo = np.zeros((32, 32), np.uint8)
    logo[20:28, 4:14] = 255
    Image.fromarray(logo).save(tmp_path / "logo.png")
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clip), "--mask", str(tmp_path / "logo.png"),
                 "--json", str(out), *TINY, "--set", "recovery.init=learned",
                 "--set", "recovery.learned.crop_size=8", "--set", "recovery.learned.patterns=2",
                 "--set", "recovery.holdout=0.3"]) == 0
    table = json.loads(out.read_text())
    assert table["missing_fraction"] == pytest.approx(80 / 1024)
    errors = table["start"]["holdout_errors"]
    assert set(errors) == {"learned", "temporal_interpolation", "neighbour_average",
                           "biharmonic", "motion_compensated"}
    assert all(math.isfinite(error) for error in errors.values())
    assert errors[table["start"]["fill"]] == min(errors.values())


# Without further starts, the learned fill trained wildly (3 steps of lr 0.05) so that the fill it
# corrects wins at either value of the held-out entries: the holdout scores its candidates on
# those values by design, and at the tiny schedule the learned fill is within 0.1% of the fill
# it corrects, a near tie that either value of theirs may break.
@pytest.mark.parametrize("starts, learned", [
    (["neighbour_average"], []),
    ([], ["recovery.learned.iterations=3", "recovery.learned.lr=0.05"]),
])
def test_the_loop_that_chooses_never_sees_the_held_out_entries(clip, monkeypatch, starts,
                                                                learned):
    """With a holdout the chain's length is chosen on a loop that started from a fill made
    without the held-out entries everywhere: changing their values changes nothing it sees (its
    start once filled the missing entries beside them from them). The answer then repeats that
    choice from the fill made with every observed entry. For a further start that wins the
    holdout (neighbour_average), and for the fill the learned fill corrects."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    calls = recorded_keywords(monkeypatch, task, "recover")
    config = quick_config("recovery.init=learned",
                          "recovery.learned.fills=[temporal_interpolation]",
                          f"recovery.learned.starts={starts}", "recovery.holdout=0.3", *learned)
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    visible = known & ~held_out
    seen = []
    for shift in (0.0, 0.5):
        observed = torch.where(known, truth + shift * held_out, 0.0)
        calls.clear()
        result, init, start = task._recover(config, observed, known, progress=False)
        choosing, answering = calls
        assert torch.equal(choosing["holdout"], held_out) and choosing["select"] is None
        assert answering["holdout"] is None and answering["select"] == result.selected_iteration
        assert torch.equal(answering["init"], init)
        seen.append((choosing["init"], start["fill"]))
    assert seen[0][1] == seen[1][1] == (starts[0] if starts else "temporal_interpolation")
    assert torch.equal(seen[0][0], seen[1][0])
    if starts:  # the winner's fill: without the held-out entries to choose, with them to answer
        observed = torch.where(known, truth + 0.5 * held_out, 0.0)
        torch.testing.assert_close(seen[1][0], neighbour_average(observed, visible))
        torch.testing.assert_close(init, neighbour_average(observed, known))


@pytest.mark.parametrize("mask, error, message", [
    ("salt_and_pepper:1.5", ValueError, r"mask 'salt_and_pepper:1\.5': fraction must be in"),
    ("region:99", ValueError, r"mask 'region:99': block 99x99 does not fit"),
    ("region:inf", ValueError, r"mask 'region:inf': 'inf' is not a finite number"),
    ("regoin:8", FileNotFoundError, r"mask file not found: regoin:8 \(generated masks are "
                                    r"missing_frames:\.\.\., region:\.\.\., "
                                    r"fixed_region:\.\.\., salt_and_pepper"),
    # A mask of the caller's own, as a tensor or an array: a TypeError from pathlib.
    (torch.ones(4, 16, 16, dtype=torch.bool), ValueError,
     r"^mask must be a file's path or a generated mask \(missing_frames:\.\.\., .*\), got "
     r"Tensor: np.save an array of 1 = missing"),
    (np.zeros((4, 16, 16)), ValueError, r"got ndarray: "),
    # Joined masks: the part at fault named within the whole.
    ("fixed_region:4+regoin:3", FileNotFoundError,
     r"mask file not found: fixed_region:4\+regoin:3 \('regoin' is no generated mask"),
    # A kind without its value was read as a file of that name, the whole mask unnamed.
    ("fixed_region:4+missing_frames", FileNotFoundError,
     r"mask file not found: fixed_region:4\+missing_frames \('missing_frames' needs its "
     r"value, missing_frames:\.\.\.\)$"),
    # So it was alone: "mask file not found: missing_frames", nothing more.
    ("missing_frames", FileNotFoundError,
     r"^mask file not found: missing_frames \('missing_frames' needs its value, "
     r"missing_frames:\.\.\.\)$"),
    ("fixed_region:4+", ValueError, r"^mask 'fixed_region:4\+' has an empty part between or "
                                    r"beside its '\+'"),
    ("fixed_region:4++missing_frames:0.5", ValueError, r"has an empty part"),
    ("fixed_region:40+missing_frames:0.5", ValueError,
     r"^mask 'fixed_region:40\+missing_frames:0.5': mask 'fixed_region:40': block 40x40 does "
     r"not fit"),
])
def test_a_wrong_mask_is_named_as_typed(mask, error, message) -> None:
    with pytest.raises(error, match=message):
        load_known(mask, (4, 16, 16))


def test_a_mask_file_named_like_a_generated_mask_is_read_as_the_file(tmp_path, monkeypatch
                                                                      ) -> None:
    monkeypatch.chdir(tmp_path)
    hidden = np.zeros((4, 16, 16), dtype=bool)
    hidden[1] = True
    np.save("region:6.npy", hidden)
    assert torch.equal(load_known("region:6.npy", (4, 16, 16)), ~torch.from_numpy(hidden)[None])


def test_a_channels_last_npy_mask_is_named_so(tmp_path) -> None:
    """A (T, H, W, C) array, as frames are stacked by most readers, was refused as "(4, 16, 16,
    3), the clip (T, H, W) (4, 16, 16)", which did not say which axis was out of place."""
    hidden = np.zeros((4, 16, 16, 3), np.uint8)
    hidden[:, 2:6, 2:6] = 1
    np.save(tmp_path / "last.npy", hidden)
    with pytest.raises(ValueError, match=r"^mask file .*last\.npy is \(4, 16, 16, 3\), the clip "
                                         r"\(T, H, W\) \(4, 16, 16\): a mask file must have "
                                         r"the clip's frames and size \(this one's channels come "
                                         r"last: a \.npy mask is \(C, T, H, W\), "
                                         r"np\.moveaxis\(mask, -1, 0\)\)$"):
        load_known(tmp_path / "last.npy", (4, 16, 16))
    np.save(tmp_path / "first.npy", np.moveaxis(hidden, -1, 0))
    assert torch.equal(load_known(tmp_path / "first.npy", (4, 16, 16)),
                       torch.from_numpy(np.moveaxis(hidden, -1, 0) == 0))


def test_a_one_frame_mask_file_is_fitted_to_the_clip(tmp_path) -> None:
    """An image drawn at the video's own size is fitted to the clip's frames (T, H, W) and holds
    in each; a 2-D array of another size than the clip's frames is refused by its shape."""
    grey = np.zeros((32, 32), np.uint8)
    grey[8:16, 0:4] = 255
    Image.fromarray(grey).save(tmp_path / "logo.png")
    expected = torch.ones(1, 4, 16, 16, dtype=torch.bool)
    # Halved, each frame pixel blends the image rows (and columns) whose centres lie within 2
    # of its own: the logo's rows 8-15 reach rows 3-8, its columns 0-3 columns 0-2.
    expected[..., 3:9, 0:3] = False
    assert torch.equal(load_known(tmp_path / "logo.png", (4, 16, 16)), expected)
    np.save(tmp_path / "small.npy", np.zeros((8, 8), np.uint8))
    # Named by its own shape, not the (1, 4, 8, 8) it was repeated to.
    with pytest.raises(ValueError, match=r"small\.npy is one frame's mask \(H, W\) = \(8, 8\), "
                                         r"the clip's frames are \(16, 16\)"):
        load_known(tmp_path / "small.npy", (4, 16, 16))


CLASSICAL = ["--set", "recovery.init=temporal_interpolation", "--set", "recovery.holdout=0"]
"""A recovery that starts from temporal interpolation, with no holdout: seconds, not minutes."""


def test_a_missing_frames_mask_hides_that_share_of_whole_frames() -> None:
    known = load_known("missing_frames:0.5", (6, 4, 4), seed=3)
    frames = known.flatten(1)
    assert (frames.all(1) | ~frames.any(1)).all()  # each frame hidden whole or not at all
    assert int((~frames.all(1)).sum()) == 3


def test_a_prior_beside_a_classical_start_is_refused_before_any_work(clip, tmp_path, capsys):
    """Only the learned fill reads recovery.learned.prior: beside a classical init the prior was
    dropped without a word and the recovery ran as if none had been made."""
    code = main(["recover", "--video", str(clip), "--mask", "region:12", "--out",
                 str(tmp_path / "run"), *TINY, *CLASSICAL,
                 "--set", "recovery.learned.prior=nope.pt"])
    assert code == 2
    assert ("recovery.learned.prior is read only by the learned fill, and recovery.init is "
            "'temporal_interpolation'") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["region", "fixed_region"])
def test_region_mask_with_a_fractional_side_is_refused(kind) -> None:
    # A generated region mask needs a whole-number block side, not a silently truncated one.
    with pytest.raises(ValueError, match=f"mask '{kind}:8.5': the block side must be a whole"):
        load_known(f"{kind}:8.5", (4, 16, 16))


def test_a_fixed_region_mask_hides_one_block_in_the_same_place_in_every_frame() -> None:
    """fixed_region keeps one place for every frame (drawn from the seed); region moves."""
    fixed = load_known("fixed_region:5", (6, 16, 16), seed=3)
    assert torch.equal(fixed, fixed[:1].expand_as(fixed))
    rows, cols = (~fixed[0]).nonzero().unbind(1)
    assert int((~fixed[0]).sum()) == 25 and int(rows.max() - rows.min()) == 4
    assert int(cols.max() - cols.min()) == 4
    places = {tuple((~load_known("fixed_region:5", (6, 16, 16), seed=seed)[0]).nonzero()[0]
                    .tolist()) for seed in range(4)}
    assert len(places) > 1
    moving = load_known("region:5", (6, 16, 16), seed=3)
    assert not torch.equal(moving, moving[:1].expand_as(moving))


def test_generated_masks_joined_by_a_plus_hide_what_any_of_them_hides() -> None:
    """A logo and dropped frames: each entry is missing where either mask hides it, each drawn
    as it is drawn alone."""
    shape = (6, 16, 16)
    both = load_known("fixed_region:5+missing_frames:0.5", shape, seed=3)
    assert torch.equal(both, load_known("fixed_region:5", shape, seed=3)
                       & load_known("missing_frames:0.5", shape, seed=3))
    assert int((~both.flatten(1)).all(1).sum()) == 3  # three frames hidden whole
    assert int(always_missing(both).sum()) == 25  # the block, in every frame
    # Spaces around the + (the mask typed in quotes) are no part of the masks.
    assert torch.equal(load_known("fixed_region:5 + missing_frames:0.5", shape, seed=3), both)


def test_recover_metrics_report_the_missing_fraction(clip: Path, tmp_path: Path) -> None:
    # metrics.json's missing_fraction is the share of hidden pixels, not of observed ones.
    out = tmp_path / "run"
    assert main(["recover", "--video", str(clip), "--mask", "missing_frames:0.25", "--out",
                 str(out), *TINY, *CLASSICAL]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["missing_fraction"] == pytest.approx(0.25)


def test_recovered_missing_pixels_respect_the_completion_clamp(clip: Path, tmp_path: Path
                                                               ) -> None:
    # recovery.completion.clamp bounds every recovered pixel, also with interpolation_spread.
    out = tmp_path / "run"
    assert main(["recover", "--video", str(clip), "--mask", "region:12", "--out", str(out),
                 *TINY, *CLASSICAL, "--set", "recovery.completion.clamp=[-0.2,0.2]"]) == 0
    recovered = np.load(out / "recovered.npy")
    known = load_known("region:12", (12, 32, 32), seed=load_config(None).seed)
    missing = ~known.expand(3, 12, 32, 32).numpy()
    assert np.abs(recovered[missing]).max() <= 0.2 + 1e-6


def test_a_preconditioned_completion_is_clamped_in_pixels_not_in_its_steps(clip: Path) -> None:
    """The sampler runs on z, the pixels' moves over their step scale: the completion's clamp
    bounds the pixels after each run, and the sampler gets none (it would bound z)."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.completion.clamp=[-0.2,0.2]")
    truth, known, _ = salt_and_pepper_clip(clip, config)
    chain = task._completion(config, torch.where(known, truth, 0.0), known)
    assert chain.step_scale is not None
    assert chain.sampler.clamp is None and tuple(chain.clamp) == (-0.2, 0.2)


def test_learned_fill_corrects_the_classical_fill_best_on_the_holdout(clip: Path, tmp_path: Path
                                                                      ) -> None:
    # A learned fill that barely trains returns the classical fill that erred least held out.
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "salt_and_pepper:0.5",
                 "--json", str(out), *TINY, "--set", "recovery.init=learned",
                 "--set", "recovery.holdout=0.3", "--set", "recovery.learned.lr=1e-12",
                 "--set", "recovery.learned.iterations=1", "--set", "recovery.learned.starts=[]",
                 "--set", "recovery.learned.crop_size=8",
                 "--set", "recovery.learned.patterns=1"]) == 0
    errors = json.loads(out.read_text())["start"]["holdout_errors"]
    classical = [errors[name] for name in ("temporal_interpolation", "neighbour_average",
                                           "biharmonic")]
    assert max(classical) > 1.01 * min(classical)
    assert errors["learned"] == pytest.approx(min(classical), rel=1e-4)


def test_eval_recovery_scores_ours_and_its_start(clip: Path, tmp_path: Path) -> None:
    # errors.stgconv is the recovery's own error (as metrics.json), start.error its start's.
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "region:12", "--json",
                 str(out), "--out", str(tmp_path / "run"), *TINY, *CLASSICAL]) == 0
    table = json.loads(out.read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert table["errors"]["stgconv"] == pytest.approx(metrics["errors"]["stgconv"], rel=1e-6)
    assert table["start"]["fill"] == "temporal_interpolation"
    assert table["start"]["error"] == pytest.approx(table["errors"]["temporal_interpolation"],
                                                    rel=1e-6)
    assert table["start"]["error"] != pytest.approx(table["errors"]["stgconv"], rel=1e-6)


def test_eval_recovery_writes_numpy_frames_and_size_as_json_numbers(clip: Path, tmp_path: Path
                                                                    ) -> None:
    """frames and size from a sweep's np.arange: the table kept them as given, and its JSON
    file refused them after the whole recovery; it holds them as Python ints."""
    table = eval_recovery(quick_config("recovery.init=temporal_interpolation",
                                       "recovery.holdout=0"),
                          clip, "region:8", frames=np.int64(12), size=np.int64(32),
                          json_path=tmp_path / "table.json")
    assert (type(table["frames"]), type(table["size"])) == (int, int)
    written = json.loads((tmp_path / "table.json").read_text())
    assert (written["frames"], written["size"]) == (12, 32)


def test_evaluation_scores_are_logged_at_the_given_step(tmp_path: Path) -> None:
    table = {"errors": {"filled": 0.25}, "iou": {"filled": 0.75}}
    log_evaluation(tmp_path, "task", table, {"pic": torch.rand(1, 4, 4)}, step=3)
    events = read_events(tmp_path)
    for tag, value in (("task/error/filled", 0.25), ("task/iou/filled", 0.75)):
        (scalar,) = events.Scalars(tag)
        assert scalar.step == 3 and scalar.value == pytest.approx(value)
    assert [image.step for image in events.Images("task/pic")] == [3]


@pytest.mark.parametrize("step", [0.7, -1, "3", True])
def test_a_step_that_is_no_whole_number_is_refused_before_anything_is_written(
        tmp_path: Path, step) -> None:
    """A sweep's setting given as the step (a missing fraction of 0.7) was truncated to 0, so
    every setting was logged at step 0, over the others; "3" and True were taken as 3 and 1."""
    log_dir = tmp_path / "tb"
    shown = re.escape(repr(step))
    with pytest.raises(ValueError, match=f"^step must be an int >= 0, got {shown}$"):
        log_evaluation(log_dir, "task", {"errors": {"filled": 0.25}}, {}, step=step)
    assert not log_dir.exists()


def test_every_evaluation_picture_and_score_is_logged_at_step_0_unless_told(tmp_path: Path) -> None:
    log_evaluation(tmp_path, "task", {"errors": {"filled": 0.25}},
                   {"pic": torch.rand(1, 4, 4), "other": torch.rand(3, 2, 2)})
    events = read_events(tmp_path)
    assert [scalar.step for scalar in events.Scalars("task/error/filled")] == [0]
    assert sorted(events.Tags()["images"]) == ["task/other", "task/pic"]
    assert [image.step for image in events.Images("task/other")] == [0]


def test_evaluation_pictures_are_logged_at_their_rounded_grey_levels(tmp_path: Path) -> None:
    """A frame's pixels (frame_comparison's to_unit of them) at the grey levels the video files
    hold them, round((x + 1) * 127.5): TensorBoard truncated the floats it was given, -0.6
    logged as 50 and 0 as 127."""
    from PIL import Image

    pixels = torch.tensor([-1.0, -0.6, -0.2, 0.0, 0.2, 0.6, 1.0])
    log_evaluation(tmp_path, "task", {}, {"pic": to_unit(pixels).reshape(1, 1, 7)})
    (image,) = read_events(tmp_path).Images("task/pic")
    levels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    np.testing.assert_array_equal(levels[0], [0, 51, 102, 128, 153, 204, 255])


def test_evaluation_pictures_out_of_range_are_clamped_before_being_rounded(
        tmp_path: Path) -> None:
    """Values past [0, 1] log as white and black: unclamped, 1.5 and -0.5 wrapped round the
    uint8 range to 126 and 128."""
    from PIL import Image

    log_evaluation(tmp_path, "task", {}, {"pic": torch.tensor([[[1.5, -0.5]]])})
    (image,) = read_events(tmp_path).Images("task/pic")
    levels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    np.testing.assert_array_equal(levels[0], [255, 0])


def test_evaluation_pictures_are_rounded_as_the_video_files_are_at_half_levels(
        tmp_path: Path) -> None:
    """Pixels whose level is exactly 64.5 and 254.5 in float32 log as the video file holds them
    (to_uint8: round half to even, 64 and 254), so the picture and the file never differ."""
    from PIL import Image

    from stgconv.io.video import to_uint8

    pixels = torch.tensor([-0.4941176474094391, 0.9960784316062927])
    assert ((pixels + 1) * 127.5).tolist() == [64.5, 254.5]  # the ties themselves
    log_evaluation(tmp_path, "task", {}, {"pic": to_unit(pixels).reshape(1, 1, 2)})
    (image,) = read_events(tmp_path).Images("task/pic")
    levels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    np.testing.assert_array_equal(levels[0], to_uint8(pixels.reshape(1, 1, 1, 2))[0, 0, :, 0])
    np.testing.assert_array_equal(levels[0], [64, 254])


def test_a_uint8_evaluation_picture_is_logged_at_its_own_grey_levels(tmp_path: Path) -> None:
    """A uint8 picture (a render's levels, as TensorBoard itself takes them) was clamped to
    [0, 1] as if it were floats: every level above 0 logged white."""
    from PIL import Image

    log_evaluation(tmp_path, "task", {}, {"pic": torch.tensor([[[0, 1, 128, 255]]],
                                                                dtype=torch.uint8)})
    (image,) = read_events(tmp_path).Images("task/pic")
    levels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
    np.testing.assert_array_equal(levels[0], [0, 1, 128, 255])


@pytest.mark.parametrize("table, pictures, message", [
    ({"errors": {"stgconv": float("nan"), "filled": 0.25}}, {},
     r"^table score errors\.stgconv must be finite and >= 0, got nan$"),
    ({"iou": {"filled": float("inf")}}, {}, r"^table score iou\.filled must be finite"),
    ({"errors": {"filled": None}}, {}, r"^table score errors\.filled must be a number, got None$"),
    ({}, {"pic": torch.tensor([[[0.5, float("nan")]]])},
     r"^picture 'pic' holds NaN or infinite values$"),
    ({}, {"pic": torch.ones(1, 2, 2, dtype=torch.int64)},
     r"^picture 'pic' must hold floats in \[0, 1\] or uint8 grey levels, got torch\.int64$"),
])
def test_non_finite_scores_and_pictures_are_refused_before_anything_is_written(
        tmp_path: Path, table, pictures, message) -> None:
    """A NaN score was logged as it came (the JSON table refuses it, after), a NaN pixel as
    black; neither is hidden now, and the folder is not made."""
    log_dir = tmp_path / "tb"
    with pytest.raises(ValueError, match=message):
        log_evaluation(log_dir, "task", table, pictures)
    assert not log_dir.exists()


def test_evaluation_scores_into_a_file_are_refused_naming_it(tmp_path: Path) -> None:
    """A library caller's TensorBoard folder that is a file is refused as the command's
    --tensorboard is, naming it, and the file is left as it was."""
    log_dir = tmp_path / "tb"
    log_dir.write_text("a file")
    with pytest.raises(ValueError, match=re.escape(f"the TensorBoard folder {log_dir} is a file")):
        log_evaluation(log_dir, "task", {"errors": {"filled": 0.25}}, {})
    assert log_dir.read_text() == "a file"


def test_frame_comparison_shows_the_frame_with_the_most_missing_pixels() -> None:
    known = torch.ones(1, 3, 2, 2, dtype=torch.bool)
    known[0, 1, :, :] = False  # frame 1 all missing
    known[0, 2, 0, 0] = False  # frame 2: one pixel
    clips = [torch.arange(3.0).reshape(1, 3, 1, 1).expand(1, 3, 2, 2) - 1] * 2  # frame t: t - 1
    picture = frame_comparison(clips, known)
    assert picture.shape == (1, 2, 4)
    torch.testing.assert_close(picture, torch.full((1, 2, 4), 0.5))  # frame 1's 0 -> 0.5


def test_frame_comparison_counts_every_channels_missing_pixels_and_keeps_colour() -> None:
    """Frame 1 hides a whole channel (6 pixels), frame 0 one pixel of each channel (3): frame 1
    is shown, each clip's frame as it is (colour, left to right) side by side."""
    generator = torch.Generator().manual_seed(0)
    clips = [torch.rand(3, 2, 2, 3, generator=generator) * 2 - 1 for _ in range(2)]
    known = torch.ones(3, 2, 2, 3, dtype=torch.bool)
    known[:, 0, 0, 0] = False
    known[2, 1] = False
    picture = frame_comparison(clips, known)
    assert picture.shape == (3, 2, 6)
    torch.testing.assert_close(picture[..., :3], to_unit(clips[0][:, 1]))
    torch.testing.assert_close(picture[..., 3:], to_unit(clips[1][:, 1]))


@pytest.mark.parametrize("mask_shape", [(4, 5, 6), (1, 4, 5, 6)])
def test_frame_comparison_reads_a_mask_that_broadcasts_to_the_clips(mask_shape) -> None:
    """A (T, H, W) mask, as generated masks are, shows the frame with the most missing pixels:
    frame 2 (its first three rows). Its H was counted as if it were T, and frame 0 shown."""
    generator = torch.Generator().manual_seed(0)
    clips = [torch.rand(3, 4, 5, 6, generator=generator) * 2 - 1 for _ in range(2)]
    known = torch.ones(4, 5, 6, dtype=torch.bool)
    known[2, :3] = False
    known[1, 4, 0] = False  # one pixel of frame 1, in the row no other frame misses
    picture = frame_comparison(clips, known.reshape(mask_shape))
    assert picture.shape == (3, 5, 12)
    torch.testing.assert_close(picture, torch.cat([(clip[:, 2] + 1) / 2 for clip in clips], -1))


@pytest.mark.parametrize("clips, known, message", [
    ([], torch.ones(1, 2, 2, 2, dtype=torch.bool), r"one or more \(C, T, H, W\) .* got \[\]$"),
    ([torch.zeros(1, 3, 2, 2, 2)], torch.ones(3, 2, 2, 2, dtype=torch.bool),
     r"tensors of one shape, got \[\(1, 3, 2, 2, 2\)\]$"),
    ([torch.zeros(3, 2, 2, 2), torch.zeros(3, 2, 2, 3)], torch.ones(2, 2, 2, dtype=torch.bool),
     r"got \[\(3, 2, 2, 2\), \(3, 2, 2, 3\)\]$"),
    ([np.zeros((3, 2, 2, 2))], torch.ones(2, 2, 2, dtype=torch.bool), r"got \['ndarray'\]$"),
    ([torch.zeros(3, 2, 2, 2)], torch.ones(2, 2, 2), r"known must be a bool tensor"),
    ([torch.zeros(3, 2, 2, 2)], torch.ones(2, 2, 3, dtype=torch.bool),
     r"mask known \(2, 2, 3\) does not match video \(3, 2, 2, 2\)"),
])
def test_frame_comparison_refuses_clips_and_masks_of_other_layouts(clips, known, message
                                                                   ) -> None:
    with pytest.raises(ValueError, match=message):
        frame_comparison(clips, known)


@pytest.mark.parametrize("picture, shown", [
    (torch.rand(4, 5, 3), r"\(4, 5, 3\)"),  # (H, W, C): logged as 4 channels of 5 x 3
    (torch.rand(4, 4), r"\(4, 4\)"),
    (torch.rand(2, 4, 4), r"\(2, 4, 4\)"),
    (np.zeros((3, 4, 4)), "ndarray"),
])
def test_evaluation_pictures_of_another_layout_are_refused_before_anything_is_written(
        tmp_path: Path, picture, shown) -> None:
    log_dir = tmp_path / "tb"
    with pytest.raises(ValueError, match=rf"picture 'pic' must be a \(C, H, W\) tensor with C 1 "
                                         rf"or 3, got {shown}$"):
        log_evaluation(log_dir, "task", {"errors": {"filled": 0.25}}, {"pic": picture})
    assert not log_dir.exists()


def test_the_history_is_the_choosing_loops_whose_held_out_entries_move(clip: Path) -> None:
    """With a holdout the returned history is the choosing loop's, not the answering loop's: one
    record per iteration with its held-out error. That loop's step scale comes from the entries
    it sees, so the held-out entries move like missing ones after the warm-up (a scale made
    from every observed entry is 0 at the held-out ones: they would never move)."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0.3")
    assert config.recovery.step_scale == "interpolation_spread"
    truth, known, _ = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    result, _, _ = task._recover(config, observed, known, progress=False)
    errors = [record["holdout_error"] for record in result.history]
    assert len(errors) == config.train.n_iterations
    assert errors[1] != errors[0]  # the completion moved the held-out entries


def test_the_learned_fill_never_learns_from_the_held_out_entries(clip: Path, monkeypatch
                                                                 ) -> None:
    """The net the holdout scores is trained without the held-out entries: changing their
    values leaves its weights as they were: it is not trained on every observed entry. Its
    draws are its own: from the holdout's stream (seed + 1) they would repeat the draws that
    chose the held-out entries."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    nets, streams = [], []

    def recording(*args, **kwargs):
        streams.append(kwargs["generator"].get_state())
        nets.append(train(*args, **kwargs)[0])
        return nets[-1], []

    train = task.learned_fill
    monkeypatch.setattr(task, "learned_fill", recording)
    config = quick_config("recovery.learned.fills=[temporal_interpolation]",
                          "recovery.learned.starts=[]", "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    for shift in (0.0, 0.5):
        observed = torch.where(known, truth + shift * held_out, 0.0)
        task._start_fill(config, observed, known, held_out, None)
    first, second = (net.state_dict() for net in nets)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(streams[0], torch.Generator().manual_seed(config.seed + 1).get_state())


def test_a_learned_start_keeps_every_observed_entry_the_holdout_hid(clip: Path) -> None:
    """When the learned fill wins the holdout (here: a net that cannot move, tying with the fill
    it corrects; ties go to it), the start the answer runs from is its fill with every observed
    entry, held-out ones included, not the fill the holdout scored, and its missing entries
    are the corrected fill's made with them too."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.learned.fills=[temporal_interpolation]",
                          "recovery.learned.starts=[]", "recovery.learned.lr=1e-12",
                          "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    init, unseen, start, _ = task._start_fill(config, observed, known, held_out, None)
    assert start == "learned"
    assert torch.equal(init[known], observed[known])
    assert not torch.equal(unseen[held_out], observed[held_out])  # the scored fill fills them
    missing = ~known
    torch.testing.assert_close(init[missing],
                               temporal_interpolation(observed, known)[missing])


def test_the_recovery_never_receives_the_hidden_pixels(clip: Path, monkeypatch) -> None:
    """The clip's values at the masked pixels never reach the recovery: what it is given is
    zero there (a recovery that read them would be scored on the truth it was handed)."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    given = []

    def recording(*args, **kwargs):
        given.append(args[2])
        return recover(*args, **kwargs)

    recover = task.recover
    monkeypatch.setattr(task, "recover", recording)
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    report = task.recover_video(config, clip, "region:12", frames=12, size=32)
    (observed,) = given
    assert torch.equal(observed[~report["known"]], torch.zeros(int((~report["known"]).sum())))


def test_the_classical_baselines_never_receive_the_hidden_pixels(clip: Path, monkeypatch
                                                                   ) -> None:
    """The baselines eval recovery scores are given zero at the masked pixels, as the recovery
    is (a fill handed the truth there would be scored on it)."""
    evaluation = importlib.import_module("stgconv.evaluation.video_recovery")
    given = []

    def recording(video, known):
        given.append((video, known))
        return torch.where(known, video, 0)

    monkeypatch.setattr(evaluation, "FILLS", {"recording": recording})
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    evaluation.eval_recovery(config, clip, "region:12", frames=12, size=32)
    ((video, known),) = given
    hidden = ~known.expand_as(video)
    assert hidden.any() and torch.equal(video[hidden], torch.zeros(int(hidden.sum())))


def test_a_classical_start_is_scored_by_its_fill_made_without_the_held_out_entries(
        clip: Path) -> None:
    """With a classical recovery.init and a holdout, the fill the choosing loop starts from is
    made without the held-out entries (changing their values changes nothing in it), the one
    the answer starts from with every observed entry."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=neighbour_average", "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    unseen = []
    for shift in (0.0, 0.5):
        observed = torch.where(known, truth + shift * held_out, 0.0)
        init, without, start, _ = task._start_fill(config, observed, known, held_out, None)
        assert start == "neighbour_average"
        assert torch.equal(init[known], observed[known])
        unseen.append(without)
    assert torch.equal(unseen[0], unseen[1])
    torch.testing.assert_close(unseen[1], neighbour_average(observed, known & ~held_out))


def test_biharmonic_inpainting_is_a_classical_start(clip: Path) -> None:
    """``recovery.init: biharmonic`` starts the chain from the per-frame biharmonic fill (the
    best classical fill of scattered pixels), the holdout's from the one without its entries."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=biharmonic", "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    init, without, start, _ = task._start_fill(config, observed, known, held_out, None)
    assert start == "biharmonic"
    torch.testing.assert_close(init, biharmonic_inpainting(observed, known))
    torch.testing.assert_close(without, biharmonic_inpainting(observed, known & ~held_out))


def test_the_step_scale_is_the_spread_at_unit_rms_over_the_entries_the_chain_moves(
        clip: Path) -> None:
    """``step_scale: interpolation_spread``: the spread (to ``step_scale_power``) divided by its
    root mean square over the entries the loop does not see, so the completion sampler's step
    size keeps its meaning whatever the clip's motion; 0 at the entries it sees."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    visible = known & ~held_out
    scale = task._completion(config, observed, visible).step_scale
    spread = interpolation_spread(observed, visible) ** config.recovery.step_scale_power
    torch.testing.assert_close(scale, spread / spread[~visible].pow(2).mean().sqrt())
    # What a Python user gets from the library, to the bit.
    assert torch.equal(scale, spread_step_scale(observed, visible,
                                                power=config.recovery.step_scale_power))
    assert scale[~visible].pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(scale[visible], torch.zeros(int(visible.sum())))


def test_the_comparison_clip_shows_the_masked_pixels_black(clip: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    """comparison.mp4 is occluded | recovered | ground truth: the first panel is the clip with
    its masked pixels at -1 (black), not the clip itself."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    written = {}

    def recording(videos, path, **kwargs):
        written[Path(path).name] = [video.clone() for video in videos]
        return save_comparison(videos, path, **kwargs)

    save_comparison = task.save_comparison
    monkeypatch.setattr(task, "save_comparison", recording)
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    report = task.recover_video(config, clip, "region:12", frames=12, size=32,
                                out_dir=tmp_path / "run")
    occluded, recovered, truth = written["comparison.mp4"]
    known = report["known"]
    assert torch.equal(occluded[~known], torch.full((int((~known).sum()),), -1.0))
    assert torch.equal(occluded[known], report["truth"][known])
    assert torch.equal(recovered, report["recovered"]) and torch.equal(truth, report["truth"])


@pytest.mark.parametrize(("setting", "frames", "picked"), [
    ("data.start_frame=2", 10, slice(2, 12)),
    ("data.fps=5", 6, slice(0, 12, 2)),  # half the clip's 10 fps: every other frame
])
def test_the_recovered_clip_starts_and_runs_at_the_configs_start_frame_and_fps(
        clip: Path, setting: str, frames: int, picked: slice) -> None:
    """``--set data.start_frame=2`` or ``data.fps=5`` chooses the frames recovered, as it does
    for training: the clip's first frames were recovered instead, while the config the run
    recorded named the start and rate asked for."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0", setting)
    report = task.recover_video(config, clip, "region:12", frames=frames, size=32)
    assert torch.equal(report["truth"], load_video(clip)[:, picked])


def test_a_clip_too_short_from_the_configs_start_frame_names_that_setting(clip: Path) -> None:
    task = importlib.import_module("stgconv.tasks.recover_video")
    with pytest.raises(ValueError, match=r"has 12 frames \(2 available from start_frame\) "
                                         r"\(n_frames is frames, --frames; start_frame and fps "
                                         r"are the config's data.start_frame and data.fps\)$"):
        task.recover_video(quick_config("data.start_frame=10"), clip, "region:12", frames=12,
                           size=32)


def _clip_with(value: float) -> torch.Tensor:
    """A clip of the tiny video's layout ``(3, 12, 32, 32)``, zero but for one ``value``."""
    frames = torch.zeros(3, 12, 32, 32)
    frames[0, 0, 0, 0] = value
    return frames


@pytest.mark.parametrize("given, message", [
    # A grey clip would learn a model of other channels than the video's.
    (torch.zeros(1, 12, 32, 32), r"clip is \(1, 12, 32, 32\): .* at data\.channels 3 is "
                                 r"\(3, 12, 32, 32\) \(a grey clip, and the config's "
                                 r"data\.channels is 3: give a colour one, or set "
                                 r"data\.channels 1\)$"),
    (torch.zeros(3, 12, 32), r"clip is \(3, 12, 32\): .* at data\.channels 3 is "
                             r"\(3, 12, 32, 32\)$"),
    (np.zeros((3, 12, 32, 32), np.float32), r"clip is not a tensor but ndarray: "),
    (torch.zeros(3, 12, 32, 32, dtype=torch.float64), r"clip is torch.float64: .* float32"),
    (torch.zeros(3, 12, 32, 32, dtype=torch.uint8), r"clip is torch.uint8: .* float32"),
    # Grey levels were scored as model values: errors in the thousands "on the 0-255 scale".
    (_clip_with(255.0), r"clip holds values in \[0, 255\]: .* is in \[-1, 1\] \(grey level v "),
    (_clip_with(-1.5), r"clip holds values in \[-1.5, 0\]: "),
    # Refused only after the whole recovery, where the NaN lay under the mask.
    (_clip_with(math.nan), r"clip holds 1 NaN or infinite values: .* holds none$"),
    (_clip_with(math.inf), r"clip holds 1 NaN or infinite values: "),
    # Its values are read: it failed in torch ("Tensor.item() cannot be called on meta").
    (torch.zeros(3, 12, 32, 32, device="meta"), r"^clip is on the meta device"),
])
def test_a_clip_read_before_must_be_the_videos_at_frames_and_size(clip: Path, given, message
                                                                   ) -> None:
    """A clip passed in is what load_clip reads from the video: float32 (3, T, S, S) of finite
    values in [-1, 1]; anything else is refused before any work, naming what it is."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    with pytest.raises(ValueError, match=message):
        task.recover_video(quick_config(), clip, "region:12", frames=12, size=32, clip=given)


def test_a_clip_that_requires_grad_recovers_as_its_values(clip: Path) -> None:
    """A clip another network made: the completion's step scale, made of it, carried its
    graph, and the second training step failed ("backward through the graph a second time")."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    given = load_video(clip, n_frames=8, size=16)
    reports = [task.recover_video(config, clip, "region:6", frames=8, size=16, clip=data)
               for data in (given, given.clone().requires_grad_(True))]
    assert torch.equal(reports[1]["recovered"], reports[0]["recovered"])
    assert not any(reports[1][key].requires_grad for key in ("truth", "init"))


@pytest.mark.parametrize(("video", "out", "error", "message"), [
    # The recovered videos play at the video file's rate: a clip given with the name of no
    # file failed on it after the whole recovery.
    ("my clip", "out", FileNotFoundError, r"^video my clip not found: .* data\.fps\)$"),
    # A file where the folder goes failed after the whole recovery, "File exists".
    (None, "taken", ValueError, r"^out_dir .*taken is a file, not a folder$"),
    # A folder of an output's name failed after the whole recovery ("Is a directory"), the
    # files renamed into place before it left there.
    (None, "busy", ValueError, r"^the output .*busy/comparison\.mp4 is a folder, not a file$"),
])
def test_outputs_that_cannot_be_written_are_refused_before_the_work(
        clip: Path, tmp_path: Path, monkeypatch, video, out, error, message) -> None:
    task = importlib.import_module("stgconv.tasks.recover_video")

    def refused(*args, **kwargs):
        raise AssertionError("the recovery ran")

    monkeypatch.setattr(task, "_recover", refused)
    (tmp_path / "taken").write_text("")
    (tmp_path / "busy" / "comparison.mp4").mkdir(parents=True)
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    with pytest.raises(error, match=message):
        task.recover_video(config, video or clip, "region:12", frames=12, size=32,
                           clip=load_video(clip, n_frames=12, size=32), out_dir=tmp_path / out)
    assert not (tmp_path / "out").exists()


def test_a_clip_of_no_file_is_written_at_the_configs_rate(clip: Path, tmp_path: Path) -> None:
    """Given data.fps, a clip with the name of no file needs none to play at."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0",
                          "data.fps=7")
    report = task.recover_video(config, "my clip", "region:12", frames=12, size=32,
                                clip=load_video(clip, n_frames=12, size=32), out_dir=tmp_path)
    assert frame_rate(tmp_path / "recovered.mp4") == 7
    # The config the outputs were written by, as their config.yaml says (eval recovery's JSON
    # named the config's own out_dir, where nothing was written).
    assert report["config"] == load_config(tmp_path / "config.yaml")
    assert report["config"].out_dir == str(tmp_path)


@pytest.mark.parametrize("config", [str(QUICK_RECOVERY_CONFIG), {"seed": 0}, None])
def test_a_config_that_is_not_one_is_refused_naming_how_to_read_one(config) -> None:
    """A YAML file's path, as the checkpoints of the voxel evaluations are given: an
    AttributeError on ``config.multigrid`` before."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    with pytest.raises(ValueError, match=rf"^config must be an ExperimentConfig, got "
                                         rf"{type(config).__name__} \(stgconv.config.load_config "
                                         r"reads a YAML file into one\)$"):
        task.recover_video(config, "v.mkv", "region:4", frames=2, size=8)


def test_a_generated_mask_is_drawn_from_the_configs_seed(clip: Path) -> None:
    """``--mask region:12`` with ``seed: 7`` is the mask load_known draws from seed 7, not from
    seed 0: that is the default seed, so no default config can tell the two apart."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0", "seed=7")
    report = task.recover_video(config, clip, "region:12", frames=12, size=32)
    expected = load_known("region:12", (12, 32, 32), seed=7).expand_as(report["known"])
    assert torch.equal(report["known"], expected)
    assert not torch.equal(expected, load_known("region:12", (12, 32, 32), seed=0).expand_as(
        expected))


def test_a_start_whose_held_out_error_is_not_finite_is_refused(clip: Path, monkeypatch
                                                                ) -> None:
    """A further start that fills NaN has a NaN held-out error, which ``min`` would pass over or
    keep depending on the order: refused by name instead."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    monkeypatch.setitem(task.FILLS, "motion_compensated",
                        lambda video, known: torch.full_like(video, float("nan")))
    config = quick_config("recovery.learned.fills=[temporal_interpolation]",
                          "recovery.learned.starts=[motion_compensated]", "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    with pytest.raises(FloatingPointError, match=r"\['motion_compensated'\] is not finite"):
        task._start_fill(config, observed, known, held_out, None)


def test_format_table_lists_the_best_method_first() -> None:
    """Sorted by error, lowest (best) first; the names in another order, so that a table
    sorted by name would differ."""
    table = {"video": "v.mp4", "mask": "region:8", "frames": 4, "size": 16,
             "missing_fraction": 0.25, "errors": {"a": 9.0, "b": 1.0, "c": 5.0},
             "seconds": {"a": 0.1, "b": 0.2, "c": 0.3}}
    lines = format_table(table).splitlines()
    assert "(4 frames, 16x16, 25.0% missing)" in lines[0]  # the fraction as a percentage
    assert [row.split()[0] for row in lines[2:]] == ["b", "c", "a"]
    assert lines[2].split() == ["b", "1.00", "0.2"]  # its error and its seconds


@pytest.mark.parametrize("fill", ["learned", "temporal_interpolation"])
def test_format_table_shows_the_fill_the_chain_started_from(fill: str) -> None:
    """The start's error is printed (the README: the table shows what sampling added), also
    for the learned fill, which has no row of its own; its seconds are inside ours. The
    columns stay aligned with the longest start's name."""
    table = {"video": "v.mp4", "mask": "region:8", "frames": 4, "size": 16,
             "missing_fraction": 0.25, "errors": {"stgconv": 2.0, "biharmonic": 5.0},
             "seconds": {"stgconv": 3.0, "biharmonic": 0.1},
             "start": {"fill": fill, "error": 2.5, "holdout_errors": {}}}
    lines = format_table(table).splitlines()
    assert lines[-1].split() == ["start:", fill, "2.50", "-"]
    assert len({len(line) for line in lines[1:]}) == 1  # header and rows in the same columns


def test_the_table_holds_the_reports_scores_settings_and_times(tmp_path: Path,
                                                               monkeypatch) -> None:
    """Each field eval_recovery adds, from a stand-in recovery report and one stand-in fill (no
    training): the fill's error over the missing pixels (0.4 of [-1, 1] is 51 grey levels), its
    seconds by the clock, the report's own config, and the mask the shown frame is chosen by."""
    evaluation = importlib.import_module("stgconv.evaluation.video_recovery")
    truth = torch.full((1, 3, 2, 2), 0.4)  # (C, T, H, W)
    known = torch.ones(1, 3, 2, 2, dtype=torch.bool)
    known[0, 1] = known[0, 2, 0, 0] = False  # 5 of 12 pixels missing
    report = {"truth": truth, "known": known, "error": 3.0, "seconds": 7.0, "init_error": 4.0,
              "start": {"fill": "zero"}, "selected_iteration": 2, "init": -truth,
              "recovered": truth, "config": quick_config("seed=5")}
    masks = []

    def comparison(clips, known):
        masks.append(known)
        return torch.zeros(1, 2, 8)

    monkeypatch.setattr(evaluation, "recover_video", lambda *args, **kwargs: report)
    monkeypatch.setattr(evaluation, "FILLS", {"zero": lambda observed, known: 0 * truth})
    monkeypatch.setattr(evaluation.time, "perf_counter", itertools.count(100.0, 2.5).__next__)
    monkeypatch.setattr(evaluation, "frame_comparison", comparison)
    monkeypatch.setattr(evaluation, "log_evaluation", lambda *args: None)
    out = tmp_path / "table.json"
    table = evaluation.eval_recovery(quick_config(), "v.mkv", "m.npy", frames=12, size=32,
                                     json_path=out, tensorboard=tmp_path)
    assert table["errors"] == {"stgconv": 3.0, "zero": pytest.approx(51.0)}
    assert table["seconds"] == {"stgconv": 7.0, "zero": 2.5}
    assert [table[key] for key in ("video", "mask", "frames", "size", "selected_iteration")] == [
        "v.mkv", "m.npy", 12, 32, 2]
    assert table["missing_fraction"] == pytest.approx(5 / 12)
    assert table["start"] == {"fill": "zero", "error": 4.0}
    assert table["config"]["seed"] == 5
    assert len(masks) == 1 and masks[0] is known
    assert json.loads(out.read_text())["seconds"] == table["seconds"]


def test_eval_recovery_reports_the_share_of_missing_pixels(clip: Path, tmp_path: Path) -> None:
    """missing_fraction is the hidden share, not the observed one (a mask hiding half the frames
    cannot tell them apart)."""
    out = tmp_path / "table.json"
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "missing_frames:0.25",
                 "--json", str(out), *TINY, *CLASSICAL]) == 0
    assert json.loads(out.read_text())["missing_fraction"] == pytest.approx(0.25)


def test_the_logged_comparison_is_occluded_start_ours_truth(clip: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    """The TensorBoard frame shows, in its title's order, the clip with the masked pixels black,
    the starting fill, the recovery and the truth."""
    evaluation = importlib.import_module("stgconv.evaluation.video_recovery")
    reports, panels = [], []

    def recording_recovery(*args, **kwargs):
        reports.append(recover_video(*args, **kwargs))
        return reports[-1]

    def recording_comparison(clips, known):
        panels.append(list(clips))
        return comparison(clips, known)

    recover_video, comparison = evaluation.recover_video, evaluation.frame_comparison
    monkeypatch.setattr(evaluation, "recover_video", recording_recovery)
    monkeypatch.setattr(evaluation, "frame_comparison", recording_comparison)
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    evaluation.eval_recovery(config, clip, "region:12", frames=12, size=32,
                             tensorboard=tmp_path / "tb")
    (report,), (clips,) = reports, panels
    occluded, start, ours, truth = clips
    known = report["known"]
    assert torch.equal(occluded[~known], torch.full((int((~known).sum()),), -1.0))
    assert torch.equal(occluded[known], report["truth"][known])
    assert torch.equal(start, report["init"]) and torch.equal(ours, report["recovered"])
    assert not torch.equal(start, ours)
    assert torch.equal(truth, report["truth"])


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a folder that takes no file")
def test_a_tensorboard_folder_that_takes_no_file_is_one_line_before_any_work(
        clip, capsys, monkeypatch) -> None:
    """--tensorboard /proc failed only after the evaluation, and TensorBoard's writer thread
    printed its own traceback beside the error; log_evaluation itself raised from inside the
    writer."""
    def no_work(*args, **kwargs):
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(importlib.import_module("stgconv.evaluation.video_recovery"),
                        "eval_recovery", no_work)
    assert main(["eval", "recovery", "--video", str(clip), "--mask", "missing_frames:0.5",
                 "--tensorboard", "/proc", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("--tensorboard /proc cannot be written: the folder /proc "
                                      "does not accept new files") in err
    with pytest.raises(ValueError, match="the TensorBoard folder /proc/stgconv_tb cannot be "
                                         "written"):
        log_evaluation("/proc/stgconv_tb", "recovery", {"errors": {"ours": 1.0}}, {})


def test_a_clip_too_big_to_hold_is_refused_before_it_is_read(tmp_path) -> None:
    """Its colour channels count: one frame of 10000x10000 is 3e8 entries, past the limit, though
    its 1e8 pixels are not."""
    from stgconv.tasks.recover_video import load_clip

    with pytest.raises(ValueError, match=r"\(3, 1, 10000, 10000\) tensor .* over the limit"):
        load_clip(tmp_path / "unread.mkv", frames=1, size=10000)


def test_the_mean_start_is_the_clips_observed_mean_over_every_channel() -> None:
    task = importlib.import_module("stgconv.tasks.recover_video")
    observed = torch.tensor([-0.5, 0.0, 0.5])[:, None, None, None].repeat(1, 2, 4, 4)
    known = torch.ones(3, 2, 4, 4, dtype=torch.bool)
    known[:, 0, 0, 0] = False
    fill = task._fill(quick_config("recovery.init=mean").recovery, observed, known)
    assert torch.equal(fill[~known], torch.zeros(3)) and torch.equal(fill[known], observed[known])


def test_only_a_clip_without_the_frames_is_told_of_the_frames_option(clip, tmp_path) -> None:
    """load_clip names --frames where the clip is too short (a TooFewFramesError still), and
    leaves other errors of the reader as they were."""
    from stgconv.io.video import TooFewFramesError
    from stgconv.tasks.recover_video import load_clip

    with pytest.raises(TooFewFramesError, match=r"\(n_frames is frames, --frames\)$"):
        load_clip(clip, frames=13, size=8)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError) as err:
        load_clip(garbage, frames=2, size=8)
    assert str(err.value).startswith(f"cannot open video {garbage}"), err.value
    assert "--frames" not in str(err.value)


def test_a_mask_the_learned_fill_cannot_use_without_a_holdout_names_only_the_start() -> None:
    """The same rows missing in every frame, too many to move onto observed ones, with
    recovery.holdout already 0: the message asks for a classical start alone, not for the
    holdout the config already has."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    known = torch.ones(3, 12, 32, 32, dtype=torch.bool)
    known[:, :, :24] = False
    with pytest.raises(ValueError, match=r"choose a classical recovery\.init for it$"):
        task._recover(quick_config("recovery.holdout=0"), torch.zeros(3, 12, 32, 32), known,
                      progress=False)


def test_the_chains_run_the_configs_schedule(clip: Path, monkeypatch) -> None:
    """The warm-up, the iterations averaged and the chains per example reach the recovery as the
    config sets them (three different numbers, so that no two can be swapped unseen), and its
    draws come from the config's seed."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    calls = recorded_keywords(monkeypatch, task, "recover")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0", "seed=7",
                          "recovery.warmup=0", "recovery.average_last=1",
                          "chains.chains_per_example=2")
    truth, known, _ = salt_and_pepper_clip(clip, config)
    task._recover(config, torch.where(known, truth, 0.0), known, progress=False)
    (kwargs,) = calls
    assert (kwargs["warmup"], kwargs["average_last"], kwargs["n_chains"]) == (0, 1, 2)
    assert kwargs["generator"].initial_seed() == 7


@pytest.mark.parametrize("mask", ["missing_frames:0.5", "region:6", "salt_and_pepper:0.5"])
def test_every_generated_mask_is_drawn_from_the_seed_it_is_given(mask: str) -> None:
    """The same seed draws the same mask, another seed another one, for each kind of mask."""
    draws = [load_known(mask, (8, 16, 16), seed=seed) for seed in (3, 3, 4)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_an_upper_case_suffix_is_read_and_named_as_its_format(clip: Path, tmp_path: Path
                                                               ) -> None:
    """MASK.NPY is an array in the clip's (T, H, W) layout, not a .mat file read as (H, W, T, C);
    TWO.MAT is a .mat file, whose layout the message names."""
    column = tmp_path / "COLUMN.NPY"
    with column.open("wb") as file:  # np.save would add a second suffix to this name
        np.save(file, np.ones((12, 32, 1), np.uint8))
    with pytest.raises(ValueError) as err:
        load_known(column, (12, 32, 32))
    assert "is (12, 32, 1), the clip (T, H, W)" in str(err.value), err.value
    two_channels = tmp_path / "TWO.MAT"
    scipy.io.savemat(two_channels, {"masks": np.zeros((32, 32, 12, 2), np.uint8)})
    task = importlib.import_module("stgconv.tasks.recover_video")
    with pytest.raises(ValueError, match=r"\(the \.mat mask's \(H, W, T, C\) read as "
                                         r"\(C, T, H, W\)\)$"):
        task.recover_video(quick_config(), clip, two_channels, frames=12, size=32)


def test_the_report_and_metrics_name_what_ran(clip: Path, tmp_path: Path) -> None:
    """Without a holdout the answer is the last iteration's: the report and metrics.json say so
    (iteration 1 of 2), and metrics.json holds the video, the mask as typed, one history record
    per iteration and the report's seconds."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.init=temporal_interpolation", "recovery.holdout=0")
    report = task.recover_video(config, clip, "region:12", frames=12, size=32,
                                out_dir=tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["selected_iteration"] == metrics["selected_iteration"] == 1
    assert (metrics["video"], metrics["mask"]) == (str(clip), "region:12")
    assert len(metrics["history"]) == 2 and metrics["seconds"] == report["seconds"] > 0


def test_a_prior_read_from_as_many_other_fills_is_refused(monkeypatch) -> None:
    """A prior that reads three fills does not fit three other ones: the fills are compared by
    name, not by count."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    fills = ["temporal_interpolation", "neighbour_average", "biharmonic"]
    net = task.FillNet(3, len(fills), 8)
    monkeypatch.setattr(task, "load_fill_prior", lambda name: (net, fills))
    settings = quick_config("recovery.learned.prior=prior.pt", "recovery.learned.fills=["
                            "temporal_interpolation,neighbour_average,motion_compensated]").recovery
    with pytest.raises(ValueError, match=r"reads the fills \['biharmonic', 'neighbour_average', "
                                         r"'temporal_interpolation'\], recovery\.learned\.fills "
                                         r"are \['motion_compensated', "):
        task._load_prior(settings, channels=3)


def test_the_learned_fill_is_applied_as_its_settings_say(clip: Path, monkeypatch) -> None:
    """recovery.learned.precision and symmetric reach both fills the net makes (with every
    observed entry and without the held-out ones)."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    calls = recorded_keywords(monkeypatch, task, "apply_fill")
    config = quick_config("recovery.learned.fills=[temporal_interpolation]",
                          "recovery.learned.starts=[]", "recovery.holdout=0.3",
                          "recovery.learned.symmetric=false")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    task._start_fill(config, torch.where(known, truth, 0.0), known, held_out, None)
    assert calls == [{"precision": "fp32", "symmetric": False}] * 2


def test_an_unscaled_completion_runs_the_recovery_sections_sampler(clip: Path) -> None:
    """With ``step_scale: none`` the completion chain is recovery.completion's sampler (its
    clamp here), not the experiment's."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    config = quick_config("recovery.step_scale=none", "recovery.completion.clamp=[-0.2,0.2]")
    assert config.sampler.clamp != config.recovery.completion.clamp
    truth, known, _ = salt_and_pepper_clip(clip, config)
    chain = task._completion(config, torch.where(known, truth, 0.0), known)
    assert chain.step_scale is None and tuple(chain.sampler.clamp) == (-0.2, 0.2)


def test_a_classical_fill_that_beats_the_learned_one_starts_from_every_observed_entry(
        clip: Path, monkeypatch) -> None:
    """When a fill the net reads wins the holdout (here against a net that fills 1 everywhere),
    the answer starts from that fill made with every observed entry, the choosing loop from it
    made without the held-out ones."""
    task = importlib.import_module("stgconv.tasks.recover_video")
    monkeypatch.setattr(task, "apply_fill", lambda net, observed, known, filled, **how:
                        torch.where(known, observed, 1.0))
    config = quick_config("recovery.learned.fills=[temporal_interpolation,neighbour_average]",
                          "recovery.learned.starts=[]", "recovery.holdout=0.3")
    truth, known, held_out = salt_and_pepper_clip(clip, config)
    observed = torch.where(known, truth, 0.0)
    init, unseen, start, _ = task._start_fill(config, observed, known, held_out, None)
    fill = {"temporal_interpolation": temporal_interpolation,
            "neighbour_average": neighbour_average}[start]
    torch.testing.assert_close(init, fill(observed, known))
    torch.testing.assert_close(unseen, fill(observed, known & ~held_out))


@pytest.mark.parametrize("output, path, message", [
    # After the recovery's minutes: an IsADirectoryError, and "File exists".
    ("json_path", "", r"^json_path .* is a folder, not a file$"),
    ("out_dir", "file", r"^out_dir .*file is a file, not a folder$"),
    ("tensorboard", "file", r"^tensorboard .*file is a file, not a folder$"),
])
def test_eval_recovery_refuses_outputs_it_cannot_write_before_recovering(
        tmp_path: Path, monkeypatch, output: str, path: str, message: str) -> None:
    evaluation = importlib.import_module("stgconv.evaluation.video_recovery")
    monkeypatch.setattr(evaluation, "recover_video", None)  # reached, a TypeError
    (tmp_path / "file").write_text("a file")
    with pytest.raises(ValueError, match=message):
        evaluation.eval_recovery(quick_config(), "v.mkv", "m.npy", **{output: tmp_path / path})


def test_eval_recovery_hands_its_options_to_the_recovery(monkeypatch) -> None:
    """The clip read before, the output folder and the progress bar reach the recovery."""
    evaluation = importlib.import_module("stgconv.evaluation.video_recovery")
    truth = torch.zeros(3, 2, 4, 4)
    known = torch.ones(1, 2, 4, 4, dtype=torch.bool)
    known[0, 0, 0, 0] = False
    report = {"truth": truth, "known": known, "error": 1.0, "seconds": 1.0, "init_error": 2.0,
              "start": {"fill": "zero"}, "selected_iteration": 0, "init": truth,
              "recovered": truth, "config": quick_config()}
    calls = []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return report

    monkeypatch.setattr(evaluation, "recover_video", recording)
    monkeypatch.setattr(evaluation, "FILLS", {})
    config = quick_config()
    evaluation.eval_recovery(config, "v.mkv", "m.npy", frames=2, size=4, clip=truth,
                             out_dir="out", progress=True)
    ((args, kwargs),) = calls
    assert args == (config, "v.mkv", "m.npy") and kwargs.pop("clip") is truth
    assert kwargs == {"frames": 2, "size": 4, "out_dir": "out", "progress": True}


def test_a_clip_given_as_data_for_the_video_is_refused_by_name() -> None:
    """load_clip's video is a file (clip= takes a clip read before): an array failed in
    pathlib, naming no argument; load_video names its own argument."""
    from stgconv.io.video import load_video
    from stgconv.tasks.recover_video import load_clip

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="^video must be a file's path"):
        load_clip(frames, frames=2, size=8)
    with pytest.raises(ValueError, match="^path must be a file's path"):
        load_video(torch.as_tensor(frames))


def test_a_npy_mask_of_other_frames_is_shown_by_the_files_own_shape(tmp_path) -> None:
    """A (T, H, W) file is read as (1, T, H, W): a (6, 24, 24) file was shown as
    (1, 6, 24, 24), an axis the user's file does not have; a 4-D file keeps its own too."""
    np.save(tmp_path / "six.npy", np.zeros((6, 24, 24), np.uint8))
    with pytest.raises(ValueError, match=r"six\.npy is \(6, 24, 24\), the clip \(T, H, W\) "
                                         r"\(4, 24, 24\)"):
        load_known(tmp_path / "six.npy", (4, 24, 24))
    np.save(tmp_path / "six_4d.npy", np.zeros((1, 6, 24, 24), np.uint8))
    with pytest.raises(ValueError, match=r"six_4d\.npy is \(1, 6, 24, 24\), the clip"):
        load_known(tmp_path / "six_4d.npy", (4, 24, 24))
