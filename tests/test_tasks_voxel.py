"""Voxel tasks: super-resolution keeps block means exact and, trained end to end on tiny shapes,
beats its own starting point; recovery keeps the observed voxels; the CLI contract (train and
synthesize for voxels, super-resolve a grid or a mesh) on tiny files in tmp_path; bad inputs
exit 2.

The baselines are tested in ``test_baselines_voxel.py``, the scores in ``test_metrics.py``, the
voxel units and previews in ``test_modalities.py``, the evaluations in
``test_evaluation_voxel.py`` and ``test_evaluation_classification.py``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat
from _tiny import (SR_CONFIG, boxes_and_balls, captured, spans, trained_y_up,
                   write_y_up_post)
from torch import Tensor

from stgconv.baselines import mean_fill
from stgconv.baselines.voxel import (downsample, nearest_known_fill, nearest_upsample,
                                     trilinear_upsample)
from stgconv.build import task_sampler
from stgconv.checkpoint import save_checkpoint
from stgconv.cli import main
from stgconv.config import TrainConfig, config_to_dict, load_config
from stgconv.data.voxel import load_voxel_shapes
from stgconv.io.mesh import voxelize_file
from stgconv.energy.base import ConvNetEnergy
from stgconv.mcmc import Langevin, SuperResolutionStart
from stgconv.metrics import voxel_errors, voxel_iou
from stgconv.modalities import VOXELS
from stgconv.ops import block_down
from stgconv.initializer import Initializer
from stgconv.super_resolution import super_resolve_batch
from stgconv.tasks.voxel import (check_factor, default_recovery_init, factor_or_trained,
                                 load_initializer, load_voxel_model, on_model_grid,
                                 recover_batch, recover_padded)
from stgconv.train import Trainer


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_energy(size: int, *, seed: int = 0) -> ConvNetEnergy:
    torch.manual_seed(seed)
    return ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[8, 4, 2, 1], [8, 3, 1, 1]],
                         head="sum", input_size=(size,) * 3, reference_sigma=0.5)


# --------------------------------------------------------------------------- super-resolution


def test_tiny_super_resolution_beats_its_starting_point() -> None:
    """16^3 boxes and balls from their 4^3 block means: 25 training iterations of the SR chain
    start halve the error of the nearest up-sampling the chains start from (seed 0: 0.076 ->
    0.048; the bound leaves room for platform differences)."""
    size, factor = 16, 4
    train, test = boxes_and_balls(32, size, seed=0), boxes_and_balls(16, size, seed=1)
    energy = tiny_energy(size)
    sampler = Langevin(n_steps=10, step_size=0.1, noise_scale=0.0, clamp=(0.0, 1.0))
    trainer = Trainer(energy, sampler, SuperResolutionStart((factor,) * 3), train,
                      train=TrainConfig(batch_size=8, lr=0.01), generator=gen(1))
    trainer.fit(25, progress=False)
    low = downsample(test, factor)
    ours = super_resolve_batch(energy, sampler, low, factor)
    start = nearest_upsample(low, factor)
    ours_error = voxel_errors(ours, test).mean().item()
    start_error = voxel_errors(start, test).mean().item()
    assert ours_error < 0.8 * start_error, (ours_error, start_error)
    assert voxel_iou(ours, test).mean() > voxel_iou(start, test).mean()


@pytest.mark.parametrize("offset", [0.0, 0.13])
@pytest.mark.parametrize("binary", [True, False])
def test_super_resolution_keeps_the_low_resolution_exact(offset: float, binary: bool) -> None:
    energy = tiny_energy(8)
    # Block means of a binary grid, as the evaluations make them: whole counts per block.
    low = downsample((torch.rand(3, 1, 8, 8, 8, generator=gen(0)) > 0.6).float(), 4)
    sampler = Langevin(n_steps=5, step_size=0.3, noise_scale=1.0, clamp=(-offset, 1 - offset))
    out = super_resolve_batch(energy, sampler, low, 4, offset=offset, binary=binary,
                              generator=gen(1))
    assert out.shape == (3, 1, 8, 8, 8)
    torch.testing.assert_close(block_down(out, (4, 4, 4)), low, atol=1e-6, rtol=0)
    if binary:
        assert set(out.unique().tolist()) <= {0.0, 1.0}
    else:
        # The chain did move inside blocks, away from its (projected) trilinear start.
        start = trilinear_upsample(low, 4)
        start = start - nearest_upsample(downsample(start, 4) - low, 4)
        assert not torch.allclose(out, start, atol=1e-4)


def test_super_resolution_starts_where_the_config_says() -> None:
    """With a step too small to move, the chain is its start: the up-sampling, made consistent."""
    low = downsample((torch.rand(2, 1, 8, 8, 8, generator=gen(0)) > 0.5).float(), 4)
    sampler = Langevin(n_steps=1, step_size=1e-8, noise_scale=0.0)
    energy = tiny_energy(8)
    nearest = super_resolve_batch(energy, sampler, low, 4, upsample="nearest", binary=False)
    torch.testing.assert_close(nearest, nearest_upsample(low, 4))
    linear = super_resolve_batch(energy, sampler, low, 4, upsample="linear", binary=False)
    trilinear = trilinear_upsample(low, 4)
    torch.testing.assert_close(linear,
                               trilinear - nearest_upsample(downsample(trilinear, 4) - low, 4))
    with pytest.raises(ValueError, match="upsample must be one of"):
        super_resolve_batch(energy, sampler, low, 4, upsample="cubic")


@pytest.mark.parametrize("low, message", [
    # Failed inside torch ("Subtraction, the `-` operator, with a bool tensor").
    (torch.ones(1, 1, 2, 2, 2, dtype=torch.bool),
     r"float block means in \[0, 1\], got torch.bool"),
    # Kept by the chain, then clamped by the binary result: its block means were not low.
    (torch.full((1, 1, 2, 2, 2), 1.5), r"occupancy in \[0, 1\], got values in \[1.5, 1.5\]"),
    (torch.full((1, 1, 2, 2, 2), -0.25), r"occupancy in \[0, 1\], got values in \[-0.25, "),
    (torch.full((1, 1, 2, 2, 2), math.nan), "low has NaN or infinite values"),
], ids=["bool", "above one", "below zero", "nan"])
def test_super_resolution_refuses_low_that_is_no_occupancy(low: Tensor, message: str) -> None:
    sampler = Langevin(n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match=message):
        super_resolve_batch(tiny_energy(8), sampler, low, 4, generator=gen(0))


@pytest.mark.parametrize("side, factor", [(4, 4), (2, 2), (3, 4)])
def test_super_resolution_names_low_and_factor_that_miss_the_models_side(side: int,
                                                                        factor: int) -> None:
    """An 8^3 model: the energy refused the up-sampled start ("expected input of shape ('B', 1,
    8, 8, 8), got (1, 1, 16, 16, 16)"), naming neither low nor factor."""
    low = torch.full((1, 1, side, side, side), 0.5)
    with pytest.raises(ValueError, match=re.escape(
            f"low (1, 1, {side}, {side}, {side}) up-sampled by factor {factor} is "
            f"{(side * factor,) * 3}, but the model takes (8, 8, 8)")):
        super_resolve_batch(tiny_energy(8), Langevin(n_steps=1, step_size=0.1), low, factor)


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("init", ["nearest_known", "neighbour_majority", "mean"])
def test_recovery_keeps_known_voxels_exact(init: str) -> None:
    truth = boxes_and_balls(2, 8)
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.7
    observed = torch.where(known, truth, torch.full_like(truth, 0.5))
    sampler = Langevin(n_steps=4, step_size=0.3, noise_scale=1.0, clamp=(-0.1, 0.9))
    out = recover_batch(tiny_energy(8), sampler, observed, known, offset=0.1, init=init,
                        generator=gen(1))
    assert torch.equal(out[known], truth[known])
    assert not torch.equal(out[~known], observed[~known])


def test_recover_batch_names_observed_of_another_dtype_than_the_model() -> None:
    """Float64 occupancies (numpy's default) for a float32 model were refused by the network's
    own check, after the fill, as "expected x of dtype torch.float32": an x the caller never
    passed. Named as recover names its observed and super_resolve_batch its low."""
    truth = boxes_and_balls(1, 8).double()
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.7
    with pytest.raises(ValueError, match=r"^expected observed of dtype torch.float32 \(the "
                                         r"network's\), got torch.float64: convert it "
                                         r"\(observed.to\(torch.float32\)\)"):
        recover_batch(tiny_energy(8), Langevin(n_steps=1), truth, known, generator=gen(1))


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def files(trained_voxel_run: dict[str, Path]) -> dict[str, Path]:
    """Tiny shapes (16^3, labelled box/ball) and a super-resolution model trained on them."""
    return trained_voxel_run


def test_train_stores_the_mean_and_renders_voxels(files) -> None:
    run = files["run"]
    assert {"checkpoint.pt", "config.yaml", "observed.png", "observed.npy", "samples.png",
            "samples.npy"} <= {p.name for p in run.iterdir()}
    config = load_config(run / "config.yaml")
    assert config.data.mean == pytest.approx(float(np.load(files["shapes"])["X"].mean()))
    assert config.chains.mode == "super_resolution"


def test_synthesize_writes_voxels(files, tmp_path) -> None:
    assert main(["synthesize", str(files["run"]), "--out", str(tmp_path), "-n", "2",
                 "--steps", "2", "--device", "cpu"]) == 0
    grids = np.load(tmp_path / "synthesized.npy")
    assert grids.shape == (2, 16, 16, 16) and grids.min() >= 0 and grids.max() <= 1
    assert (tmp_path / "synthesized.png").is_file()


def test_super_resolve_a_grid_and_a_mesh(files, tmp_path) -> None:
    low = downsample(torch.from_numpy(np.load(files["shapes"])["X"][:1]).float()[:, None], 4)
    np.save(tmp_path / "low.npy", low[0, 0].numpy())
    assert main(["super-resolve", str(files["run"]), str(tmp_path / "low.npy"), "--factor", "4",
                 "--out", str(tmp_path / "grid"), "--device", "cpu"]) == 0
    high = np.load(tmp_path / "grid" / "super_resolved.npy")
    assert high.shape == (1, 16, 16, 16)
    assert set(np.unique(high).tolist()) <= {0.0, 1.0}  # a shape, with the input's block counts
    torch.testing.assert_close(downsample(torch.from_numpy(high)[:, None], 4), low)
    assert main(["super-resolve", str(files["run"]), str(tmp_path / "low.npy"), "--soft",
                 "--out", str(tmp_path / "soft"), "--device", "cpu"]) == 0
    soft = np.load(tmp_path / "soft" / "super_resolved.npy")
    assert len(np.unique(soft)) > 2 and soft.min() >= 0 and soft.max() <= 1
    # One shape: its 0.5 iso-surface too.
    assert ({"super_resolved.png", "super_resolved.npy", "super_resolved.ply"}
            <= {p.name for p in (tmp_path / "grid").iterdir()})
    cube = tmp_path / "meshes" / "cube.off"  # ModelNet's quirk: "OFF" and the counts on one line
    cube.parent.mkdir()
    cube.write_text("OFF8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1)
                                            for z in (0, 1))
                    + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")
    assert main(["super-resolve", str(files["run"]), str(cube), "--out", str(tmp_path / "mesh"),
                 "--device", "cpu"]) == 0
    from_mesh = np.load(tmp_path / "mesh" / "super_resolved.npy")
    assert from_mesh.shape == (1, 16, 16, 16)
    # Its low resolution is the one a model trained on a folder of meshes sees: voxelized with
    # the same margin (a cube filling the whole grid would leave every block full).
    trained_on = load_voxel_shapes(cube.parent, resolution=16)
    torch.testing.assert_close(downsample(torch.from_numpy(from_mesh)[:, None], 4),
                               downsample(trained_on, 4))


def test_super_resolve_turns_the_meshs_up_axis_to_the_grids_last(files, tmp_path) -> None:
    """A y-up mesh (ShapeNet, most .obj files) was voxelized z-up, lying on its side, with no
    way to say otherwise; with --up-axis 1 the block means the chain keeps are those of the post
    standing along array axis 2."""
    post = write_y_up_post(tmp_path / "post.obj")
    assert main(["super-resolve", str(files["run"]), str(post), "--up-axis", "1", "--steps", "1",
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    low = downsample(torch.from_numpy(np.load(tmp_path / "out" / "super_resolved.npy"))[:, None],
                     4)
    standing = torch.from_numpy(voxelize_file(post, 16, up_axis=1).astype(np.float32))
    torch.testing.assert_close(low, downsample(standing[None, None], 4))
    assert spans(low[0, 0] > 0) == (2, 2, 4)  # 16^3 in 4^3 blocks: the post is 4 x 4 x 14


def test_super_resolve_reads_a_mesh_with_the_models_up_axis_unless_given(
        files, tmp_path, monkeypatch) -> None:
    """A model trained on y-up meshes (data.up_axis 1) had such a mesh voxelized z-up, lying on
    its side, unless --up-axis 1 was typed again; a voxel file is still read as stored."""
    trained_y_up(monkeypatch, "stgconv.tasks.voxel")
    post = write_y_up_post(tmp_path / "post.obj")
    for given, axis in (([], 1), (["--up-axis", "2"], 2)):
        out = tmp_path / f"up_{axis}"
        assert main(["super-resolve", str(files["run"]), str(post), *given, "--steps", "1",
                     "--out", str(out), "--device", "cpu"]) == 0
        low = downsample(torch.from_numpy(np.load(out / "super_resolved.npy"))[:, None], 4)
        voxelized = torch.from_numpy(voxelize_file(post, 16, up_axis=axis).astype(np.float32))
        torch.testing.assert_close(low, downsample(voxelized[None, None], 4))
    np.save(tmp_path / "low.npy", low[0, 0].numpy())
    assert main(["super-resolve", str(files["run"]), str(tmp_path / "low.npy"), "--steps", "1",
                 "--out", str(tmp_path / "grid"), "--device", "cpu"]) == 0


def test_an_up_axis_for_a_voxel_file_is_refused_before_the_work(tmp_path, capsys) -> None:
    """A grid is read as stored (up = its last axis): --up-axis 1 would look like it had turned
    it. Refused before the checkpoint is read (there is none here)."""
    np.save(tmp_path / "low.npy", np.zeros((4, 4, 4), np.float32))
    assert main(["super-resolve", str(tmp_path / "no_run"), str(tmp_path / "low.npy"),
                 "--up-axis", "1", "--out", str(tmp_path / "out")]) == 2
    assert re.search(r"error: up_axis=1 \(--up-axis\) turns a mesh as it is voxelized, but "
                     r"\S*low\.npy is no mesh", capsys.readouterr().err)
    from stgconv.tasks import super_resolve

    with pytest.raises(ValueError, match=r"^up_axis must be 0, 1 or 2, got 3 \(the meshes' up "):
        super_resolve(tmp_path / "no_run", tmp_path / "post.obj", tmp_path / "out", up_axis=3)


def test_super_resolve_warns_of_grids_whose_every_block_is_empty_or_full(files, tmp_path,
                                                                         capsys) -> None:
    """A shape voxelized straight at the low side holds block means 0 and 1 only: each block
    keeps its count, all or none, so the result is the nearest up-sampling, and the command
    says so; the block means of finer shapes get no warning."""
    shapes = torch.from_numpy(np.load(files["shapes"])["X"][:2]).float()[:, None]
    low = downsample(shapes, 4)
    binary = torch.cat([low[:1], (low[1:] >= 0.5).float()])
    np.save(tmp_path / "fractions.npy", low[:, 0].numpy())
    np.save(tmp_path / "binary.npy", binary[:, 0].numpy())
    for name in ("fractions", "binary"):
        capsys.readouterr()
        assert main(["super-resolve", str(files["run"]), str(tmp_path / f"{name}.npy"),
                     "--out", str(tmp_path / name), "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        if name == "fractions":
            assert "warning" not in err, err
    assert re.search(r"warning: 1 of the 2 grids of \S*binary\.npy \(the first: grid 1\) hold "
                     r"only block means 0 and 1", err), err
    high = torch.from_numpy(np.load(tmp_path / "binary" / "super_resolved.npy"))[:, None]
    torch.testing.assert_close(high[1:], nearest_upsample(binary[1:], 4))


@pytest.mark.parametrize("task", ["super_resolve", "recover_shape"])
def test_an_out_dir_a_library_caller_cannot_write_is_refused_before_the_work(
        tmp_path, monkeypatch, task: str) -> None:
    """It failed after the chains had run, in the file system's words ("[Errno 17] File
    exists: 'taken'"); the CLI checked its --out, a script's call did not."""
    from stgconv.tasks import voxel

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(voxel, "load_voxel_model", no_work)
    (tmp_path / "taken").write_text("a file")
    inputs = (["low.npy"] if task == "super_resolve" else ["shapes.npy", "known.npy"])
    with pytest.raises(ValueError, match=r"out_dir \S*taken is a file, not a folder"):
        getattr(voxel, task)("run", *inputs, tmp_path / "taken", device="cpu")


def test_a_factor_of_1_is_refused() -> None:
    """With factor 1 the low resolution is the shape itself: every method scores a copy."""
    with pytest.raises(ValueError, match=r"factor must be an int >= 2, got 1"):
        check_factor(16, 1)


def test_bad_inputs_exit_2_with_a_message(files, tmp_path, capsys) -> None:
    run = str(files["run"])
    np.save(tmp_path / "flat.npy", np.zeros((4, 4, 2), np.float32))
    np.save(tmp_path / "low8.npy", np.zeros((8, 8, 8), np.float32))
    np.save(tmp_path / "low2.npy", np.zeros((2, 2, 2), np.float32))
    np.save(tmp_path / "low3.npy", np.zeros((3, 3, 3), np.float32))
    np.save(tmp_path / "none.npy", np.zeros((0, 4, 4, 4), np.float32))
    (tmp_path / "empty.off").write_text("OFF\n0 0 0\n")
    (tmp_path / "shape.txt").write_text("0 1 0")
    cases = [
        (["super-resolve", run, str(tmp_path / "shape.txt")],
         r"cannot read .*shape.txt: expected a voxel file \(.*\) or a mesh \(.*\)"),
        (["super-resolve", run, str(tmp_path / "flat.npy")], "cubic"),
        # A side another factor takes: which one (a model trained for factor 2 refused its own
        # low resolution under the default 4, not saying so).
        (["super-resolve", run, str(tmp_path / "low8.npy")],
         r"\(N, 4, 4, 4\); 8\^3 grids take factor 2 \(--factor 2\)\n"),
        (["super-resolve", run, str(tmp_path / "low2.npy")],
         r"\(N, 4, 4, 4\); 2\^3 grids take factor 8 \(--factor 8\)\n"),
        (["super-resolve", run, str(tmp_path / "low3.npy")], r"\(N, 4, 4, 4\)\n"),
        (["super-resolve", run, str(tmp_path / "low8.npy"), "--factor", "3"],
         r"does not divide the model's grid side 16; choose one of \[2, 4, 8, 16\]"),
        (["super-resolve", run, str(tmp_path / "empty.off")], "no faces"),
        (["super-resolve", run, str(tmp_path / "none.npy")],
         r"none\.npy holds no grids: nothing to super-resolve"),
        (["super-resolve", run, str(tmp_path / "nope.npy")], "nope.npy"),
        (["super-resolve", str(tmp_path), str(tmp_path / "low8.npy")], "checkpoint not found"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and re.search(message, err), (argv, err)


def _voxel_task_inputs(tmp_path: Path, shapes: np.ndarray) -> dict[str, list[str]]:
    """Each voxel command's input arguments for ``shapes`` ``(N, 16, 16, 16)``, saved under
    ``tmp_path``: super-resolve their 4^3 block means, recover-shape every other voxel."""
    np.save(tmp_path / "low.npy", downsample(torch.from_numpy(shapes)[:, None], 4)[:, 0].numpy())
    np.save(tmp_path / "shapes.npy", shapes)
    np.save(tmp_path / "known.npy", (np.arange(shapes.size) % 2).reshape(shapes.shape))
    return {"super-resolve": [str(tmp_path / "low.npy")],
            "recover-shape": [str(tmp_path / "shapes.npy"), "--known", str(tmp_path / "known.npy")]}


@pytest.mark.parametrize("command", ["super-resolve", "recover-shape"])
def test_a_file_of_many_shapes_runs_its_chains_a_batch_at_a_time(files, tmp_path, monkeypatch,
                                                                   command) -> None:
    """8 shapes a chain by default, as eval's --batch-size (every shape of a file in one chain
    held the network's activations of all of them: 2,000 32^3 grids took 3 GB), every shape
    comes back, and the render shows the first 4 (their panels: input | nearest | ours for
    super-resolve, observed | ours for recover-shape)."""
    import stgconv.tasks.voxel as voxel_tasks

    chained = []
    name = {"super-resolve": "super_resolve_batch", "recover-shape": "recover_padded"}[command]
    real = getattr(voxel_tasks, name)

    def spy(energy, sampler, batch, *args, **settings):
        chained.append(len(batch))
        return real(energy, sampler, batch, *args, **settings)

    monkeypatch.setattr(voxel_tasks, name, spy)
    drawn = captured(monkeypatch, "stgconv.tasks.voxel", "render_voxels")
    args = _voxel_task_inputs(tmp_path, boxes_and_balls(10, 16)[:, 0].numpy())
    out = tmp_path / "out"
    argv = [command, str(files["run"]), *args[command], "--out", str(out), "--steps", "1",
            "--device", "cpu"]
    assert main(argv) == 0
    assert chained == [8, 2]
    titles = {"super-resolve": ["input 4^3", "nearest", "stgconv"],
              "recover-shape": ["observed", "stgconv"]}[command]
    assert drawn["titles"] == titles * 4 and drawn["columns"] == len(titles)
    ours = np.load(next(out.glob("*.npy")))
    assert len(ours) == 10
    # Each row: the input (the observed voxels only), the nearest up-sampling, ours as written.
    low = np.load(tmp_path / "low.npy")
    inputs = {"super-resolve": low,
              "recover-shape": np.load(tmp_path / "shapes.npy") * np.load(tmp_path / "known.npy")}
    for i in range(4):
        row = [np.asarray(panel)[0] for panel in drawn["items"][i * len(titles):][:len(titles)]]
        np.testing.assert_array_equal(row[0], inputs[command][i])
        np.testing.assert_array_equal(row[-1], ours[i])
        if command == "super-resolve":
            np.testing.assert_array_equal(row[1], low[i].repeat(4, 0).repeat(4, 1).repeat(4, 2))
    assert main([*argv, "--batch-size", "4"]) == 0
    assert chained[2:] == [4, 4, 2]
    # Past the largest tensor index, every shape at once: torch's split failed on it.
    assert main([*argv, "--batch-size", str(2**70)]) == 0
    assert chained[5:] == [10]


@pytest.mark.parametrize("batch_size", [0, True, 2.5])
def test_a_batch_size_that_is_not_a_positive_count_is_refused_naming_it(files, tmp_path,
                                                                         batch_size) -> None:
    """Called from Python (the CLI checks its own --batch-size), a batch size that is no
    positive int is named before anything runs or is written."""
    from stgconv.tasks.voxel import recover_shape, super_resolve

    np.save(tmp_path / "low.npy", np.full((4, 4, 4), 0.5, np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((8, 8, 8), np.float32))
    np.save(tmp_path / "known.npy", np.arange(512).reshape(8, 8, 8) % 2)
    message = rf"^batch_size must be an int >= 1, got {batch_size}$"
    with pytest.raises(ValueError, match=message):
        super_resolve(files["run"], tmp_path / "low.npy", tmp_path / "out", n_steps=1,
                      batch_size=batch_size, device="cpu")
    with pytest.raises(ValueError, match=message):
        recover_shape(files["run"], tmp_path / "shape.npy", tmp_path / "known.npy",
                      tmp_path / "out", n_steps=1, batch_size=batch_size, device="cpu")
    assert not (tmp_path / "out").exists()


def test_a_bad_chain_length_is_refused_before_the_inputs_are_read(files, tmp_path) -> None:
    """n_steps=0 was refused after the inputs were read (a mesh voxelized at the model's side
    first); the inputs here do not exist, so a late check would name them instead."""
    from stgconv.tasks.voxel import recover_shape, super_resolve

    with pytest.raises(ValueError, match="n_steps"):
        super_resolve(files["run"], tmp_path / "absent.obj", tmp_path / "out", n_steps=0,
                      device="cpu")
    with pytest.raises(ValueError, match="n_steps"):
        recover_shape(files["run"], tmp_path / "absent.npy", tmp_path / "known.npy",
                      tmp_path / "out", n_steps=0, device="cpu")


def test_recover_shape_keeps_what_was_observed_and_fills_the_rest(files, tmp_path) -> None:
    """Two 14^3 shapes under the 16^3 model (padded for it), 60% hidden: the observed voxels
    come back unchanged, the hidden ones filled, a render beside them; one shape adds a mesh."""
    shapes = boxes_and_balls(2, 14)[:, 0].numpy()
    known = (np.random.default_rng(0).random(shapes.shape) >= 0.6).astype(np.uint8)
    np.save(tmp_path / "partial.npy", np.where(known > 0, shapes, 0.5).astype(np.float32))
    np.save(tmp_path / "known.npy", known)
    np.save(tmp_path / "one.npy", shapes[0])
    np.save(tmp_path / "one_known.npy", known[0])
    out = tmp_path / "out"
    assert main(["recover-shape", str(files["run"]), str(tmp_path / "one.npy"), "--known",
                 str(tmp_path / "one_known.npy"), "--out", str(out), "--device", "cpu"]) == 0
    assert np.load(out / "recovered.npy").shape == (1, 14, 14, 14)
    assert (out / "recovered.ply").is_file()
    # Two shapes into the same folder: no mesh, and the first run's, of another shape, goes.
    assert main(["recover-shape", str(files["run"]), str(tmp_path / "partial.npy"), "--known",
                 str(tmp_path / "known.npy"), "--out", str(out), "--device", "cpu"]) == 0
    recovered = np.load(out / "recovered.npy")
    assert recovered.shape == (2, 14, 14, 14) and recovered.dtype == np.float32
    np.testing.assert_array_equal(recovered[known > 0], shapes[known > 0])
    assert recovered.min() >= 0 and recovered.max() <= 1
    assert not np.array_equal(recovered[known == 0], np.full((known == 0).sum(), 0.5))
    assert (out / "recovered.png").is_file() and not (out / "recovered.ply").exists()


@pytest.fixture
def noisy_unclamped_chains(monkeypatch) -> None:
    """The voxel tasks' chains draw noise and clamp nothing (the tiny run's have neither noise
    nor that need): what they draw is what their seed picks."""
    import dataclasses

    import stgconv.tasks.voxel as voxel_tasks

    real = voxel_tasks.task_sampler

    def noisy_unclamped(config, **settings):
        return dataclasses.replace(real(config, **settings), clamp=None, noise_scale=1.0,
                                   step_size=1.0)

    monkeypatch.setattr(voxel_tasks, "task_sampler", noisy_unclamped)


def test_recover_shape_batches_continue_one_noise_stream_and_clamp_to_occupancy(
        files, tmp_path, noisy_unclamped_chains) -> None:
    """With a noisy chain and no clamp of its own: two copies of a shape in batches of one
    draw their own noise, as they would in one batch (were each batch reseeded, both would
    get the same), and the result is occupancy in [0, 1]."""
    import stgconv.tasks.voxel as voxel_tasks

    shape = boxes_and_balls(1, 16)[0, 0].numpy()
    np.save(tmp_path / "twins.npy", np.stack([shape, shape]))
    known = np.arange(shape.size).reshape(shape.shape) % 2
    np.save(tmp_path / "known.npy", np.stack([known, known]))
    voxel_tasks.recover_shape(files["run"], tmp_path / "twins.npy", tmp_path / "known.npy",
                              tmp_path / "out", n_steps=1, batch_size=1, device="cpu")
    first, second = np.load(tmp_path / "out" / "recovered.npy")
    assert not np.array_equal(first, second)
    assert first.min() >= 0 and first.max() <= 1


@pytest.mark.parametrize("command", ["super-resolve", "recover-shape"])
def test_the_seed_picks_the_noise_of_the_chains(files, tmp_path, noisy_unclamped_chains,
                                                command) -> None:
    """--seed seeds the chains' noise: the same seed gives the same result, another seed
    another (the tiny run's own chains draw no noise: there no seed changes anything)."""
    args = _voxel_task_inputs(tmp_path, boxes_and_balls(2, 16)[:, 0].numpy())[command]

    def result(seed: int, out: Path) -> np.ndarray:
        assert main([command, str(files["run"]), *args, "--steps", "1", "--seed", str(seed),
                     "--out", str(out), "--device", "cpu"]) == 0
        return np.load(next(out.glob("*.npy")))

    first = result(0, tmp_path / "a")
    np.testing.assert_array_equal(result(0, tmp_path / "b"), first)
    assert not np.array_equal(result(1, tmp_path / "c"), first)


def test_recover_shape_bad_inputs_exit_2_with_a_message(files, tmp_path, capsys) -> None:
    run = str(files["run"])
    np.save(tmp_path / "shape.npy", np.zeros((8, 8, 8), np.float32))
    np.save(tmp_path / "big.npy", np.zeros((20, 20, 20), np.float32))
    np.save(tmp_path / "known7.npy", np.ones((7, 7, 7), np.uint8))
    np.save(tmp_path / "all.npy", np.ones((8, 8, 8), np.uint8))
    np.save(tmp_path / "none.npy", np.zeros((8, 8, 8), np.uint8))
    np.save(tmp_path / "twos.npy", np.full((8, 8, 8), 2, np.uint8))
    np.save(tmp_path / "big_known.npy", np.eye(20, dtype=np.uint8)[None].repeat(20, 0))
    np.save(tmp_path / "two.npy", np.zeros((2, 8, 8, 8), np.float32))
    one_blind = np.zeros((2, 8, 8, 8), np.uint8)
    one_blind[0, :4] = 1  # the first shape half observed, the second not at all
    np.save(tmp_path / "one_blind.npy", one_blind)
    savemat(tmp_path / "known.mat", {"instance": np.ones((8, 8, 8), np.uint8)})
    cases = [
        ("shape.npy", "known.mat", r"must both be \.mat files or neither"),
        ("two.npy", "one_blind.npy", "no voxel as observed in some shape"),
        ("shape.npy", "known7.npy", "must match"),
        ("shape.npy", "all.npy", "every voxel as observed"),
        ("shape.npy", "none.npy", "no voxel as observed"),
        ("shape.npy", "twos.npy", r"twos\.npy: expected binary occupancy \{0, 1\}.*e\.g\. 2\)$"),
        # Named among the files: "the shapes are 20^3 grids" said not which.
        ("big.npy", "big_known.npy", r"big\.npy holds 20\^3 grids; this model takes "
                                     r"\(N, 16, 16, 16\)"),
        ("shape.npy", "missing.npy", "missing.npy"),
    ]
    for shape, known, message in cases:
        capsys.readouterr()
        argv = ["recover-shape", run, str(tmp_path / shape), "--known", str(tmp_path / known),
                "--out", str(tmp_path / "out"), "--device", "cpu"]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and re.search(message, err), (argv, err)
        assert not (tmp_path / "out" / "recovered.npy").exists()


def test_on_model_grid_crops_back_what_it_padded_and_marks_padding_known() -> None:
    # An odd padding (5 -> 8) is cropped back exactly, and the padding counts as known.
    observed = torch.rand(1, 1, 5, 5, 5, generator=gen(7))
    known = torch.rand(observed.shape, generator=gen(8)) >= 0.5
    seen = {}

    def identity(o, k):
        seen["known"] = k
        return o

    assert torch.equal(on_model_grid(identity, observed, known, 8), observed)
    assert int((~seen["known"]).sum()) == int((~known).sum())


def test_a_grid_one_voxel_larger_than_the_models_is_refused_naming_the_models(
        monkeypatch) -> None:
    """By recover_padded too, before its start is filled."""
    import stgconv.tasks.voxel as voxel_tasks

    grids = torch.zeros(1, 1, 9, 9, 9)
    message = r"the shapes are 9\^3 grids; this model takes \(N, 8, 8, 8\)"
    with pytest.raises(ValueError, match=message):
        on_model_grid(lambda observed, known: observed, grids, grids.bool(), 8)

    def no_start(*args, **kwargs):
        raise AssertionError("the start was filled before the grid was checked")

    monkeypatch.setattr(voxel_tasks, "recovery_start", no_start)
    with pytest.raises(ValueError, match=message):
        recover_padded(tiny_energy(8), Langevin(n_steps=1, step_size=0.1), grids, grids.bool())


@pytest.mark.parametrize("recover", [recover_batch, recover_padded], ids=["batch", "padded"])
def test_a_recovery_names_itself_for_a_generator_that_is_not_one(recover, monkeypatch) -> None:
    """Refused before the start is filled, naming the function called (not the sampler's or
    another function's run inside it)."""
    import stgconv.tasks.voxel as voxel_tasks

    def no_fill(*args, **kwargs):
        raise AssertionError("the start was filled before the generator was checked")

    monkeypatch.setattr(voxel_tasks, "recovery_fill", no_fill)
    monkeypatch.setattr(voxel_tasks, "recovery_start", no_fill)
    observed = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=rf"^{recover.__name__}: generator must be a "
                                         r"torch\.Generator"):
        recover(tiny_energy(8), Langevin(n_steps=1, step_size=0.1), observed,
                observed < 0.5, generator=0)


def test_a_shape_reaching_its_grids_faces_starts_from_the_fill_of_its_own_grid() -> None:
    """A full 5^3 shape under an 8^3 model: the nearest-known start is the baseline's, made on
    the shape's grid (made on the padded grid, the empty padding emptied the missing voxels of
    the faces). A chain that cannot move returns it."""
    truth = torch.ones(1, 1, 5, 5, 5)
    known = torch.rand(truth.shape, generator=gen(3)) >= 0.7
    observed = torch.where(known, truth, torch.zeros(()))
    still = Langevin(n_steps=1, step_size=1e-12, noise_scale=0.0)
    out = recover_padded(tiny_energy(8), still, observed, known, init="nearest_known")
    torch.testing.assert_close(out, nearest_known_fill(observed, known))


def test_default_recovery_init_prefers_a_recovery_filler() -> None:
    assert default_recovery_init(Initializer(recovery=True, width=4, depth=2)) == "initializer"
    assert default_recovery_init(Initializer([2], width=4, depth=2)) == "nearest_known"
    assert default_recovery_init(None) == "nearest_known"


def test_super_resolve_refuses_a_model_of_another_modality(trained_jem_run: dict[str, Path],
                                                           tmp_path: Path, capsys) -> None:
    # An image model's checkpoint is refused with exit 2, naming the voxel model needed.
    np.save(tmp_path / "low.npy", np.zeros((4, 4, 4), np.float32))
    assert main(["super-resolve", str(trained_jem_run["run"]), str(tmp_path / "low.npy"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "needs a voxel model" in capsys.readouterr().err


def test_a_voxel_net_saved_without_its_config_is_named_so(tmp_path: Path, capsys) -> None:
    """A voxel model a Trainer given no config saved (as examples/voxel_super_resolution.py
    trains one) holds the defaults' config: it was refused as "a 'texture' model", though its
    net is a voxel net; the config is what is missing."""
    energy = tiny_energy(8)
    save_checkpoint({"config": {}, "model_config": energy.config, "model": energy.state_dict()},
                    tmp_path / "run" / "checkpoint.pt")
    np.save(tmp_path / "low.npy", np.zeros((2, 2, 2), np.float32))
    assert main(["super-resolve", str(tmp_path / "run"), str(tmp_path / "low.npy"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert re.search(r"the net of .*run takes 3-D \(voxel\) inputs, but its config's data are "
                     r"'texture' \(the defaults, where a Trainer was given no config\)",
                     capsys.readouterr().err)


def test_a_video_model_with_its_config_is_named_a_video_model(tmp_path: Path, capsys) -> None:
    """A video model's net is 3-D as a voxel net is: one saved with its config was called a
    voxel net saved "where a Trainer was given no config", which its config is not."""
    energy = tiny_energy(8)
    config = config_to_dict(load_config(None, ["data.kind=video", "model.arch=st_small",
                                               "data.size=8"]))  # the size the net is tied to
    save_checkpoint({"config": config, "model_config": energy.config,
                     "model": energy.state_dict()}, tmp_path / "run" / "checkpoint.pt")
    np.save(tmp_path / "low.npy", np.zeros((2, 2, 2), np.float32))
    assert main(["super-resolve", str(tmp_path / "run"), str(tmp_path / "low.npy"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "holds a model of data.kind 'video'; this task needs a voxel model" in err
    assert "given no config" not in err


def test_eval_classification_of_a_classifier_points_to_eval_ood(trained_jem_run: dict[str, Path],
                                                                capsys) -> None:
    """A JEM user asking eval classification for the classifier's accuracy was told only that
    a voxel model is needed; the command that reports it is named."""
    assert main(["eval", "classification", "--checkpoint", str(trained_jem_run["run"]),
                 "--shapes", str(trained_jem_run["data"]), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "needs a voxel model (data.kind: voxels); a classifier (JEM) model's accuracy and "
        "calibration are reported by stgconv eval ood")


@pytest.mark.parametrize("command", ["super-resolve", "recover-shape", "eval-json",
                                     "eval super-resolution", "eval recovery-3d"])
def test_an_input_the_command_would_write_over_is_refused(files, tmp_path, capsys, command):
    """super-resolve of clash/super_resolved.npy into clash/ replaced the input with its result
    (recover-shape's recovered.npy likewise, and an eval's --out its stgconv.npy over the
    --shapes of that name), and eval's --json onto a run's config.yaml made the run
    unresumable: refused first, every file as it was."""
    clash = tmp_path / "clash"
    clash.mkdir()
    low = (np.random.default_rng(0).random((4, 4, 4)) > 0.5).astype(np.float32)
    np.save(clash / "super_resolved.npy", low)
    np.save(clash / "recovered.npy", np.zeros((16, 16, 16), np.float32))
    np.save(clash / "known.npy", np.ones((16, 16, 16), np.uint8))
    np.save(clash / "stgconv.npy", np.load(files["shapes"])["X"][:2])
    run = str(files["run"])
    argv = {"super-resolve": ["super-resolve", run, str(clash / "super_resolved.npy"),
                              "--out", str(clash)],
            "recover-shape": ["recover-shape", run, str(clash / "recovered.npy"), "--known",
                              str(clash / "known.npy"), "--out", str(clash)],
            # With an --out not made yet: the --json is checked all the same.
            "eval-json": ["eval", "super-resolution", "--checkpoint", run, "--shapes",
                          str(files["shapes"]), "--out", str(tmp_path / "new"), "--json",
                          str(files["run"] / "config.yaml")],
            **{f"eval {name}": ["eval", name, "--checkpoint", run, "--shapes",
                                str(clash / "stgconv.npy"), "--out", str(clash)]
               for name in ("super-resolution", "recovery-3d")}}
    watched = [*clash.iterdir(), files["run"] / "config.yaml"]
    before = {path: path.read_bytes() for path in watched}
    assert main([*argv[command], "--device", "cpu"]) == 2
    assert re.search(r"is the input .*: writing it would replace it", capsys.readouterr().err)
    assert {path: path.read_bytes() for path in watched} == before


def test_super_resolution_starts_at_the_initializers_proposal_where_it_serves_the_factor(
) -> None:
    """With a step too small to move, the chain is its start: the learned initializer's
    proposal made consistent when it serves the factor, else the config's up-sampling."""
    low = downsample((torch.rand(2, 1, 8, 8, 8, generator=gen(0)) > 0.5).float(), 4)
    sampler = Langevin(n_steps=1, step_size=1e-8, noise_scale=0.0)
    energy = tiny_energy(8)
    initializer = Initializer([4], width=4, depth=2)
    out = super_resolve_batch(energy, sampler, low, 4, offset=0.13, upsample="linear",
                              binary=False, initializer=initializer)
    proposal = initializer.propose(low, 4)
    torch.testing.assert_close(out, proposal - nearest_upsample(downsample(proposal, 4) - low, 4))
    # An initializer of another block size is not asked: the up-sampling is the start.
    other = super_resolve_batch(energy, sampler, low, 4, upsample="linear", binary=False,
                                initializer=Initializer([2], width=4, depth=2))
    trilinear = trilinear_upsample(low, 4)
    torch.testing.assert_close(other,
                               trilinear - nearest_upsample(downsample(trilinear, 4) - low, 4))


def test_recovery_starts_at_its_fill_in_occupancy() -> None:
    """With a step too small to move, the chain is its start: the fill ``init`` names, of
    occupancy, whatever the model's offset (the chain runs offset below it)."""
    truth = boxes_and_balls(2, 8)
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.7
    observed = torch.where(known, truth, torch.zeros_like(truth))
    sampler = Langevin(n_steps=1, step_size=1e-8, noise_scale=0.0)
    for init, fill in (("nearest_known", nearest_known_fill), ("mean", mean_fill)):
        out = recover_batch(tiny_energy(8), sampler, observed, known, offset=0.1, init=init)
        torch.testing.assert_close(out, fill(observed, known), msg=init)


def test_super_resolve_runs_the_models_chain_from_its_learned_start(files, tmp_path) -> None:
    """The CLI runs what super_resolve_batch runs with the checkpoint's initializer, sampler,
    offset and up-sampling (the tiny model learned block sizes 4 and 2)."""
    low = downsample(torch.from_numpy(np.load(files["shapes"])["X"][:2]).float()[:, None], 4)
    np.save(tmp_path / "low.npy", low[:, 0].numpy())
    assert main(["super-resolve", str(files["run"]), str(tmp_path / "low.npy"), "--soft",
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    energy, config, state = load_voxel_model(files["run"], device="cpu")
    initializer = load_initializer(state, files["run"])
    assert initializer is not None and initializer.serves(4)
    expected = super_resolve_batch(energy, task_sampler(config), low, 4,
                                   offset=VOXELS.offset(config), upsample=config.chains.upsample,
                                   binary=False, initializer=initializer,
                                   generator=gen(0)).clamp(0.0, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "super_resolved.npy"),
                               expected[:, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("init, filler", [(None, False), ("mean", False), (None, True)],
                         ids=["default", "--init mean", "default of a model with a filler"])
def test_recover_shape_runs_the_models_chain_from_its_fill(files, tmp_path, monkeypatch, init,
                                                           filler) -> None:
    """The CLI runs what recover_padded runs with the checkpoint's sampler, start (by default
    the model's own: its recovery filler where it has one, an untrained one standing in here,
    else the nearest-known fill) and offset (the training mean: the chain runs that far below
    occupancy), on two 14^3 shapes padded for the 16^3 model."""
    import stgconv.tasks.voxel as voxel_tasks

    torch.manual_seed(0)
    recovery = Initializer(recovery=True, width=4, depth=2).eval()
    if filler:
        monkeypatch.setattr(voxel_tasks, "load_initializer", lambda *args, **kwargs: recovery)
    shapes = boxes_and_balls(2, 14)
    known = torch.rand(shapes.shape, generator=gen(2)) >= 0.6
    np.save(tmp_path / "shapes.npy", shapes[:, 0].numpy())
    np.save(tmp_path / "known.npy", known[:, 0].numpy().astype(np.uint8))
    assert main(["recover-shape", str(files["run"]), str(tmp_path / "shapes.npy"), "--known",
                 str(tmp_path / "known.npy"), "--out", str(tmp_path / "out"),
                 "--device", "cpu", *(["--init", init] if init else [])]) == 0
    energy, config, state = load_voxel_model(files["run"], device="cpu")
    initializer = recovery if filler else load_initializer(state, files["run"])
    assert VOXELS.offset(config) > 0  # the training mean, about 0.09
    expected = recover_padded(energy, task_sampler(config), torch.where(known, shapes, 0.0),
                              known, offset=VOXELS.offset(config),
                              init=init or ("initializer" if filler else "nearest_known"),
                              initializer=initializer,
                              generator=gen(0)).clamp(0.0, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "recovered.npy"),
                               expected[:, 0].numpy(), atol=1e-6)


def test_a_recovery_on_the_models_own_grid_is_the_batch_recovery() -> None:
    """Nothing is padded on grids of the model's side: recover_padded runs recover_batch's
    chain, offset below occupancy as asked."""
    truth = boxes_and_balls(2, 8)
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.7
    observed = torch.where(known, truth, torch.zeros_like(truth))
    sampler, energy = Langevin(n_steps=2, step_size=0.1), tiny_energy(8)
    padded, batch = (recover(energy, sampler, observed, known, offset=0.3, init="mean",
                             generator=gen(1)) for recover in (recover_padded, recover_batch))
    torch.testing.assert_close(padded, batch)


def test_recover_shape_reads_the_source_only_where_observed(files, tmp_path) -> None:
    """Values at unobserved voxels are ignored: the same result and the same render (its
    "observed" panel shows the observed voxels only) whatever the source holds there."""
    shape = boxes_and_balls(1, 16)[0, 0].numpy()
    known = (np.random.default_rng(1).random(shape.shape) >= 0.6).astype(np.uint8)
    np.save(tmp_path / "known.npy", known)
    for name, hidden in (("zeros", 0.0), ("ones", 1.0)):
        np.save(tmp_path / f"{name}.npy", np.where(known > 0, shape, hidden).astype(np.float32))
        assert main(["recover-shape", str(files["run"]), str(tmp_path / f"{name}.npy"),
                     "--known", str(tmp_path / "known.npy"), "--out", str(tmp_path / name),
                     "--device", "cpu"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "zeros" / "recovered.npy"),
                                  np.load(tmp_path / "ones" / "recovered.npy"))
    assert ((tmp_path / "zeros" / "recovered.png").read_bytes()
            == (tmp_path / "ones" / "recovered.png").read_bytes())


def test_super_resolve_of_an_empty_shape_writes_no_mesh(files, tmp_path) -> None:
    """A single shape with no occupied voxel has no 0.5 iso-surface: the array and the render
    are written, no mesh."""
    np.save(tmp_path / "empty.npy", np.zeros((4, 4, 4), np.float32))
    assert main(["super-resolve", str(files["run"]), str(tmp_path / "empty.npy"),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert not np.load(tmp_path / "out" / "super_resolved.npy").any()
    assert (tmp_path / "out" / "super_resolved.png").is_file()
    assert not (tmp_path / "out" / "super_resolved.ply").exists()


def test_recover_shape_of_an_empty_batch_says_there_is_nothing(files, tmp_path, capsys) -> None:
    np.save(tmp_path / "none.npy", np.zeros((0, 8, 8, 8), np.float32))
    np.save(tmp_path / "none_known.npy", np.zeros((0, 8, 8, 8), np.uint8))
    assert main(["recover-shape", str(files["run"]), str(tmp_path / "none.npy"), "--known",
                 str(tmp_path / "none_known.npy"), "--out", str(tmp_path / "out"),
                 "--device", "cpu"]) == 2
    assert "holds no grids" in capsys.readouterr().err


def test_recovery_fill_refuses_an_unknown_init() -> None:
    from stgconv.tasks.voxel import recovery_fill

    with pytest.raises(ValueError, match="init must be one of"):
        recovery_fill("bogus")
    with pytest.raises(ValueError, match="recovery initializer .*; this one has none: "):
        recovery_fill("initializer")


@pytest.mark.parametrize("fixture, upsample", [("trained_voxel_run", "linear"),
                                               ("nearest_voxel_run", "nearest")])
def test_super_resolve_starts_at_the_configs_upsampling_for_an_unlearned_factor(
        fixture, upsample, request, tmp_path) -> None:
    """Factor 8, which the initializer did not learn: the chain starts at the config's
    up-sampling (the default trilinear one, or nearest), as super_resolve_batch does with it."""
    run = request.getfixturevalue(fixture)["run"]
    low = downsample(boxes_and_balls(2, 16, seed=3), 8)
    np.save(tmp_path / "low.npy", low[:, 0].numpy())
    assert main(["super-resolve", str(run), str(tmp_path / "low.npy"), "--factor", "8",
                 "--soft", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    energy, config, state = load_voxel_model(run, device="cpu")
    assert config.chains.upsample == upsample
    expected = super_resolve_batch(energy, task_sampler(config), low, 8,
                                   offset=VOXELS.offset(config), upsample=upsample,
                                   binary=False, initializer=load_initializer(state, run),
                                   generator=gen(0)).clamp(0.0, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "super_resolved.npy"),
                               expected[:, 0].numpy(), atol=1e-6)


def test_a_factor_left_out_is_the_one_the_model_was_trained_for() -> None:
    """A model trained for 32^3 -> 64^3 (chains.factor 2) refused its own low resolution under
    the default 4; one not trained to super-resolve takes 4, and a factor given is kept."""
    for overrides, expected in ((["chains.factor=2"], 2), ([], 4),
                                (["chains.mode=noise", "initializer=null"], 4)):
        config = load_config(SR_CONFIG, overrides)
        assert factor_or_trained(None, config) == expected, overrides
        assert factor_or_trained(8, config) == 8
