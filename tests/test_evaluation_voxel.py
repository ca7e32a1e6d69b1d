"""`stgconv eval super-resolution` and `stgconv eval recovery-3d`: the JSON contract (ours and
every baseline, errors and IoU in [0, 1], the protocol's settings) on tiny shapes and a tiny
trained model in tmp_path; bad inputs exit 2 with a message naming the problem."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import (SR_CONFIG, TINY, boxes_and_balls, read_events, spans, trained_y_up,
                   write_y_up_post)

from stgconv.baselines.voxel import FILLS, UPSAMPLERS, downsample, nearest_upsample
from stgconv.build import task_sampler
from stgconv.cli import main
from stgconv.data.voxel import load_voxel_shapes
from stgconv.evaluation.voxel import (START_NAMES, _run_methods, _start_scores, eval_recovery_3d,
                                      eval_super_resolution, load_eval_shapes, random_known)
from stgconv.initializer import Initializer
from stgconv.io.mesh import voxelize_file
from stgconv.io.voxel import to_tensor
from stgconv.metrics import voxel_errors, voxel_iou
from stgconv.modalities import VOXELS
from stgconv.ops import BLOCK_UPSAMPLERS, block_top_k
from stgconv.super_resolution import super_resolve_batch
from stgconv.tasks.voxel import load_initializer, load_voxel_model, recover_padded


@pytest.fixture
def files(trained_voxel_run: dict[str, Path]) -> dict[str, Path]:
    """Tiny shapes (16^3, labelled box/ball) and a super-resolution model trained on them."""
    return trained_voxel_run


def smaller_shapes(folder: Path, side: int = 14) -> np.ndarray:
    """Three ``side^3`` shapes, for the 16^3 model of ``files``: written as
    ``folder/small.npz``."""
    shapes = boxes_and_balls(3, side)[:, 0].numpy().astype(np.uint8)
    np.savez(folder / "small.npz", X=shapes)
    return shapes


def test_eval_super_resolution_json_contract(files, tmp_path, capsys) -> None:
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--factor", "4", "--json", str(out),
                 "--out", str(tmp_path / "renders"), "--device", "cpu", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    # The closing line names every output written, the renders' folder too.
    assert f"wrote {out}, {tmp_path / 'renders'} (" in printed
    table = json.loads(out.read_text())
    assert set(table["errors"]) == set(table["iou"]) == {"stgconv", "nearest", "trilinear",
                                                         "trilinear_binary"}
    assert all(0 <= v <= 1 for part in ("errors", "iou") for v in table[part].values())
    assert table["n_shapes"] == 12 and table["factor"] == 4 and "[0, 1]" in table["unit"]
    assert table["binary"] is True and table["upsample"] == "linear"
    # The seed of our chains' noise, as recovery-3d's table keeps it: the run can be repeated.
    assert table["seed"] == 3
    # The quick config trains an initializer; the table scores it alone, as our chain's start.
    assert table["start"]["method"] == "initializer"
    assert 0 <= table["start"]["error"] <= 1 and 0 <= table["start"]["iou"] <= 1
    ours = np.load(tmp_path / "renders" / "stgconv.npy")
    assert set(np.unique(ours).tolist()) <= {0.0, 1.0}
    assert (tmp_path / "renders" / "comparison.png").is_file()
    assert "trilinear_binary" in printed
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--soft", "--json", str(out), "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["binary"] is False
    # A block size the initializer did not learn starts at the config's up-sampling.
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--factor", "8", "--json", str(out), "--device",
                 "cpu", "--tensorboard", str(tmp_path / "tb")]) == 0
    assert json.loads(out.read_text())["start"]["method"] == "trilinear"
    # TensorBoard files the render under this task's name.
    assert read_events(tmp_path / "tb").Tags()["images"] == ["super-resolution/comparison"]


@pytest.mark.parametrize("side, low_pad", [(14, 1), (13, 1)])
def test_eval_super_resolution_pads_smaller_shapes_and_scores_them_on_their_grid(
        files, tmp_path, capsys, side: int, low_pad: int) -> None:
    """14^3 shapes under the 16^3 model: padded (centred) before they are down-sampled, as
    training pads them; every method scored on the 14^3 grid (was refused). 13^3 shapes: an
    odd padding, its extra voxel at the high end of each axis, cropped back from there."""
    shapes = smaller_shapes(tmp_path, side)
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "small.npz"), "--factor", "4", "--json", str(out),
                 "--out", str(tmp_path / "renders"), "--device", "cpu"]) == 0
    assert f"super-resolution 4^3 -> 16^3 (scored on the shapes' {side}^3) on 3 shapes" in \
        capsys.readouterr().out
    table = json.loads(out.read_text())
    assert table["size"] == side and table["model_size"] == 16 and table["low_size"] == 4
    ours = np.load(tmp_path / "renders" / "stgconv.npy")
    assert ours.shape[-3:] == (side, side, side)
    # Nearest up-sampling of the padded shapes' block means, cropped, scored by hand.
    padded = np.pad(shapes, [(0, 0)] + [(low_pad, 16 - side - low_pad)] * 3).astype(np.float32)
    means = padded.reshape(3, 4, 4, 4, 4, 4, 4).mean(axis=(2, 4, 6))
    crop = slice(low_pad, low_pad + side)
    nearest = means.repeat(4, 1).repeat(4, 2).repeat(4, 3)[:, crop, crop, crop]
    assert table["errors"]["nearest"] == pytest.approx(np.abs(nearest - shapes).mean(), rel=1e-5)


def test_eval_super_resolution_of_shapes_reaching_their_grids_faces_keeps_every_voxel(
        files, tmp_path) -> None:
    """14^3 shapes that fill their grid to its faces, under the 16^3 model: the binary results
    place each block's count inside the shapes' grid, none in the padding that cropping drops
    (ours lost about a tenth of these voxels there)."""
    shapes = np.zeros((2, 14, 14, 14), np.uint8)
    shapes[0, :, :, :5] = 1  # a slab on the floor
    shapes[1, 3:11, 3:11, :] = 1  # a pillar from floor to ceiling
    np.savez(tmp_path / "faces.npz", X=shapes)
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "faces.npz"), "--factor", "4", "--json", str(out),
                 "--out", str(tmp_path / "renders"), "--device", "cpu"]) == 0
    ours = np.load(tmp_path / "renders" / "stgconv.npy")
    padded = [np.pad(grids, [(0, 0)] + [(1, 1)] * 3).reshape(2, 4, 4, 4, 4, 4, 4).sum((2, 4, 6))
              for grids in (ours, shapes)]
    np.testing.assert_array_equal(*padded)
    # trilinear_binary keeps the counts too: on a shape that fills whole blocks it is exact.
    table = json.loads(out.read_text())
    assert table["errors"]["trilinear_binary"] < 0.05
    # Ours and its start rank the voxels inside by their scores, not only keep the counts:
    # as close as trilinear_binary (ranked among the inside voxels after a top-k made with the
    # padding, ours was three times as far, the start placed counts in the padding: 13 times).
    bound = table["errors"]["trilinear_binary"] + 0.005
    assert table["errors"]["stgconv"] <= bound and table["start"]["error"] <= bound


def test_eval_recovery_3d_json_contract(files, tmp_path) -> None:
    # 14^3 shapes under the 16^3 model: padded for the model, scored on their own grid.
    smaller_shapes(tmp_path)
    out = tmp_path / "rec.json"
    assert main(["eval", "recovery-3d", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "small.npz"), "--missing", "0.7", "--json", str(out),
                 "--tensorboard", str(tmp_path / "tb"), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert set(table["errors"]) == {"stgconv", "nearest_known", "neighbour_majority"}
    # A model without a recovery filler starts at the nearest-known fill, scored alone as the
    # baseline of that name is.
    assert table["init"] == table["start"]["method"] == "nearest_known"
    assert table["start"]["error"] == pytest.approx(table["errors"]["nearest_known"], rel=1e-6)
    assert table["start"]["iou"] == pytest.approx(table["iou"]["nearest_known"], rel=1e-6)
    # Only TensorBoard asked for the render: it is there, and no render folder was left behind.
    events = read_events(tmp_path / "tb")
    for method, iou in table["iou"].items():
        assert events.Scalars(f"recovery-3d/iou/{method}")[0].value == pytest.approx(iou, rel=1e-6)
    assert events.Tags()["images"] == ["recovery-3d/comparison"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.json", "small.npz", "tb"]
    assert table["missing_fraction"] == pytest.approx(0.7, abs=0.03)
    assert table["size"] == 14 and table["model_size"] == 16 and "missing" in table["unit"]


def test_eval_recovery_3d_refuses_an_unknown_init_before_reading_the_shapes(files,
                                                                            tmp_path) -> None:
    from stgconv.evaluation.voxel import eval_recovery_3d

    with pytest.raises(ValueError, match="init must be one of .*, got 'bogus'"):
        eval_recovery_3d(files["run"], tmp_path / "not_there.npz", init="bogus")


def test_eval_recovery_3d_start_of_a_baseline_fill_is_that_baselines_row(files, tmp_path) -> None:
    """14^3 shapes that fill their grid to its faces, under the 16^3 model: ``start:
    nearest_known`` scores the fill the ``nearest_known`` row scores (it was made on the padded
    grid, whose empty padding emptied the missing voxels of the faces)."""
    shapes = np.zeros((2, 14, 14, 14), np.uint8)
    shapes[0, :, :, :5] = 1
    shapes[1, 3:11, 3:11, :] = 1
    np.savez(tmp_path / "faces.npz", X=shapes)
    out = tmp_path / "rec.json"
    assert main(["eval", "recovery-3d", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "faces.npz"), "--init", "nearest_known", "--steps", "1",
                 "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["start"]["error"] == table["errors"]["nearest_known"]
    assert table["start"]["iou"] == table["iou"]["nearest_known"]


def test_shapes_from_a_folder_of_voxel_files(files, tmp_path, capsys) -> None:
    """--shapes takes a folder as training does (one .npy per shape, natural name order): the
    same table as the .npz of the same shapes; soft values are refused as ground truth."""
    shapes = np.load(files["shapes"])["X"][:3]
    folder = tmp_path / "shapes"
    folder.mkdir()
    for i, shape in enumerate(shapes):
        np.save(folder / f"shape_{i}.npy", shape)
    np.savez(tmp_path / "same.npz", X=shapes)
    tables = []
    for source in (folder, tmp_path / "same.npz"):
        out = tmp_path / f"{source.stem}.json"
        assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                     str(source), "--json", str(out), "--device", "cpu"]) == 0
        tables.append(json.loads(out.read_text()))
    assert tables[0]["n_shapes"] == 3 and tables[0]["iou"] == tables[1]["iou"]
    np.save(folder / "shape_3.npy", shapes[0] * 0.5)
    capsys.readouterr()
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(folder), "--device", "cpu"]) == 2
    assert "must be binary occupancy" in capsys.readouterr().err


def test_a_folder_of_meshes_is_voxelized_at_the_models_side(files, tmp_path) -> None:
    folder = tmp_path / "meshes"
    folder.mkdir()
    corners = "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 2) for z in (0, 1))
    faces = "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n"
    (folder / "block.off").write_text(f"OFF\n8 6 0\n{corners}{faces}")
    for task in ("super-resolution", "recovery-3d"):
        out = tmp_path / f"{task}.json"
        assert main(["eval", task, "--checkpoint", str(files["run"]), "--shapes", str(folder),
                     "--json", str(out), "--device", "cpu"]) == 0
        assert json.loads(out.read_text())["size"] == 16  # the 16^3 model's, not 32


def test_eval_shapes_turn_a_mesh_folders_up_axis_to_the_grids_last(tmp_path: Path) -> None:
    """A folder of y-up meshes (ShapeNet, most .obj files) was voxelized z-up, the shapes lying
    on their side; up_axis=1 stands them along array axis 2."""
    write_y_up_post(tmp_path / "meshes" / "post.obj")
    assert spans(load_eval_shapes(tmp_path / "meshes", mesh_side=8)[0, 0] > 0) == (2, 6, 2)
    standing = load_eval_shapes(tmp_path / "meshes", mesh_side=8, up_axis=1)
    assert spans(standing[0, 0] > 0) == (2, 2, 6)  # 8^3 less a margin of 1 each side


def test_the_voxel_evaluations_read_meshes_with_the_up_axis_given(files, tmp_path) -> None:
    """--up-axis reaches the shapes each evaluation scores: super-resolution keeps the block
    counts of the post standing along array axis 2, recovery its voxels where observed."""
    post = write_y_up_post(tmp_path / "meshes" / "post.obj")
    standing, lying = (torch.from_numpy(voxelize_file(post, 16, up_axis=axis)).float()
                       for axis in (1, 2))
    for task in ("super-resolution", "recovery-3d"):
        out = tmp_path / task
        assert main(["eval", task, "--checkpoint", str(files["run"]), "--shapes",
                     str(tmp_path / "meshes"), "--up-axis", "1", "--steps", "1", "--out",
                     str(out), "--device", "cpu"]) == 0
        ours = torch.from_numpy(np.load(out / "stgconv.npy"))[0]
        if task == "super-resolution":
            torch.testing.assert_close(downsample(ours[None, None], 4),
                                       downsample(standing[None, None], 4))
        else:
            # The voxels the evaluation hid: drawn from its seed (0) as it draws them.
            known = random_known((1, 1, 16, 16, 16), 0.7,
                                 generator=torch.Generator().manual_seed(0))[0, 0]
            assert torch.equal(ours[known], standing[known])
            assert not torch.equal(ours[known], lying[known])


def test_the_voxel_evaluations_read_meshes_with_the_models_up_axis_unless_given(
        files, tmp_path, monkeypatch) -> None:
    """A model trained on y-up meshes (data.up_axis 1) was scored on such meshes voxelized z-up,
    lying on their side, unless --up-axis 1 was typed again; voxel grids are still read as
    stored for it. The JSON says which axis the meshes were turned with (null for grids)."""
    trained_y_up(monkeypatch, "stgconv.evaluation.voxel")
    post = write_y_up_post(tmp_path / "meshes" / "post.obj")
    for given, axis in (([], 1), (["--up-axis", "2"], 2)):
        out = tmp_path / f"up_{axis}"
        assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                     str(tmp_path / "meshes"), *given, "--steps", "1", "--out", str(out),
                     "--json", str(out / "table.json"), "--device", "cpu"]) == 0
        ours = torch.from_numpy(np.load(out / "stgconv.npy"))[None]
        voxelized = torch.from_numpy(voxelize_file(post, 16, up_axis=axis)).float()
        torch.testing.assert_close(downsample(ours, 4), downsample(voxelized[None, None], 4))
        assert json.loads((out / "table.json").read_text())["up_axis"] == axis
    np.savez(tmp_path / "shapes.npz", X=voxelized.numpy().astype(np.uint8)[None])
    assert main(["eval", "recovery-3d", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "shapes.npz"), "--steps", "1", "--device", "cpu", "--json",
                 str(tmp_path / "grids.json")]) == 0
    assert json.loads((tmp_path / "grids.json").read_text())["up_axis"] is None


def test_a_bad_chain_length_is_refused_before_the_shapes_are_read(files, tmp_path) -> None:
    """n_steps=0 was refused after the shapes were read (a folder of meshes voxelized at the
    model's side first), as super-resolve's was; the shapes here do not exist, so a late check
    would name them instead."""
    for evaluate in (eval_super_resolution, eval_recovery_3d):
        with pytest.raises(ValueError, match="n_steps"):
            evaluate(files["run"], tmp_path / "absent", n_steps=0, device="cpu")


def test_an_up_axis_for_voxel_grids_is_refused(tmp_path: Path) -> None:
    """Grids are read as stored (up = their last axis): up_axis=1 would look like it had turned
    them."""
    np.savez(tmp_path / "shapes.npz", X=np.zeros((1, 4, 4, 4), np.uint8))
    (tmp_path / "grids").mkdir()
    np.save(tmp_path / "grids" / "a.npy", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"^up_axis=1 \(data\.up_axis, --up-axis\) turns meshes "
                                         r"as they are voxelized, but \S*shapes\.npz holds voxel"):
        load_eval_shapes(tmp_path / "shapes.npz", up_axis=1)
    with pytest.raises(ValueError, match=r"^up_axis=1 \(data\.up_axis, --up-axis\) turns meshes "
                                         r"as they are voxelized, but \S*grids holds voxel grids"):
        load_eval_shapes(tmp_path / "grids", up_axis=1)
    with pytest.raises(ValueError, match=r"^up_axis must be 0, 1 or 2, got -1"):
        load_eval_shapes(tmp_path / "grids", up_axis=-1)


def test_bad_inputs_exit_2_with_a_message(files, tmp_path, capsys) -> None:
    run = str(files["run"])
    np.savez(tmp_path / "big.npz", X=np.zeros((2, 20, 20, 20), np.uint8))
    (tmp_path / "tetra.off").write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
                                        "3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n")
    sr_eval = ["eval", "super-resolution", "--checkpoint", run, "--device", "cpu", "--shapes"]
    cases = [
        # Refused as a voxel file of the wrong suffix ("suffix must be one of .mat, ..."),
        # which said nothing of the folder of meshes the evaluation reads.
        ([*sr_eval, str(tmp_path / "tetra.off")],
         r"tetra\.off is a mesh; meshes are read from a folder, each voxelized at the model's "
         r"side: give the folder that holds it"),
        ([*sr_eval, str(tmp_path / "big.npz")], r"\(N, 16, 16, 16\)"),
        ([*sr_eval, str(files["shapes"]), "--factor", "5"], "does not divide"),
        (["eval", "recovery-3d", "--checkpoint", run, "--shapes", str(tmp_path / "big.npz")],
         "padded"),
        (["eval", "recovery-3d", "--checkpoint", run, "--shapes", str(files["shapes"]),
          "--missing", "1.5"], r"--missing must be a number in \(0, 1\), got 1\.5"),
        # Refused before any work: the evaluation would otherwise run first and fail at the end.
        ([*sr_eval, str(files["shapes"]), "--tensorboard", str(tmp_path / "big.npz")],
         r"--tensorboard .*big\.npz is a file"),
        # A super-resolution model has no recovery filler to start from, which it holds
        # ("this one has none" sent its user looking for one).
        (["eval", "recovery-3d", "--checkpoint", run, "--shapes", str(files["shapes"]),
          "--init", "initializer"], "needs a model trained with a recovery initializer .*; "
         "this one has a super-resolution initializer only: choose one of"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and re.search(message, err), (argv, err)


@pytest.mark.parametrize("evaluation", ["eval_super_resolution", "eval_recovery_3d"])
@pytest.mark.parametrize("output, message", [
    # A JSON path that is a folder failed after the work (IsADirectoryError), out_dir's files
    # already in place; an out_dir that is a file with "File exists".
    ("json_path", r"^json_path .*made is a folder, not a file$"),
    ("out_dir", r"^out_dir .*taken is a file, not a folder$"),
    ("tensorboard", r"^tensorboard .*taken is a file, not a folder$"),
])
def test_outputs_a_library_caller_cannot_write_are_refused_before_the_work(
        tmp_path, monkeypatch, evaluation: str, output: str, message: str) -> None:
    module = importlib.import_module("stgconv.evaluation.voxel")

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(module, "load_voxel_model", no_work)
    (tmp_path / "made").mkdir()
    (tmp_path / "taken").write_text("a file")
    outputs = {"out_dir": tmp_path / "out", "json_path": tmp_path / "table.json",
               "tensorboard": tmp_path / "tb",
               output: tmp_path / ("made" if output == "json_path" else "taken")}
    with pytest.raises(ValueError, match=message):
        getattr(module, evaluation)("run", "shapes.npz", device="cpu", **outputs)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["made", "taken"]


def test_a_factor_of_1_is_refused_by_the_library_too(files, tmp_path) -> None:
    """block_down(x, 1) is x: every method, the baselines too, scored a perfect copy of the
    shapes, a table of zeros that measured nothing."""
    from stgconv import tasks
    from stgconv.evaluation.voxel import eval_super_resolution

    with pytest.raises(ValueError, match=re.escape("factor must be an int >= 2, got 1")):
        eval_super_resolution(files["run"], files["shapes"], factor=1, device="cpu")
    np.save(tmp_path / "low.npy", np.zeros((16, 16, 16), np.float32))
    with pytest.raises(ValueError, match=re.escape("factor must be an int >= 2, got 1")):
        tasks.super_resolve(files["run"], tmp_path / "low.npy", tmp_path / "out", factor=1,
                            device="cpu")
    assert not (tmp_path / "out").exists()


def test_a_binary_other_than_true_or_false_is_refused_before_the_work(files, tmp_path) -> None:
    """binary="no" (a caller's value read from its own options) was taken as true: the results
    were made binary, and the table recorded "binary": "no"."""
    from stgconv import tasks

    message = re.escape("binary must be True or False, got 'no'")
    with pytest.raises(ValueError, match=message):  # the shapes do not exist: checked first
        eval_super_resolution(files["run"], tmp_path / "absent", binary="no", device="cpu")
    with pytest.raises(ValueError, match=message):
        tasks.super_resolve(files["run"], tmp_path / "absent.npy", tmp_path / "out",
                            binary="no", device="cpu")
    assert not (tmp_path / "out").exists()
    energy, config, _ = load_voxel_model(files["run"], device="cpu")
    with pytest.raises(ValueError, match=message):
        super_resolve_batch(energy, task_sampler(config), torch.zeros(1, 1, 4, 4, 4), 4,
                            binary="no")


def test_run_methods_clamp_outputs_and_pooled_iou_of_empty_is_that_of_each_shape() -> None:
    # Outputs are clamped to [0, 1]; empty shapes predicted empty have a pooled IoU of 1, as
    # each shape's IoU is, not 0 / 0 nor the 0 of no overlap (which read as the worst score
    # beside an "iou" of 1 for the same perfect results).
    empty = torch.zeros(2, 1, 4, 4, 4)
    _, kept = _run_methods({"m": lambda x: x * 3 - 1}, [(torch.rand(2, 1, 4, 4, 4),)], empty,
                           None, unit="u", keep={"m": 2})
    assert kept["m"].min() >= 0 and kept["m"].max() <= 1
    table, _ = _run_methods({"m": lambda x: x}, [(empty,)], empty, None, unit="u")
    assert table["iou"]["m"] == table["iou_pooled"]["m"] == 1.0


@pytest.mark.parametrize("missing", [0.0, 1.0, "0.5", True])
def test_random_known_refuses_nothing_or_everything_missing(missing: float) -> None:
    """And a share given as a string (which failed in the comparison's words) or a bool."""
    with pytest.raises(ValueError, match=rf"^missing must be a number in \(0, 1\), got "
                                         rf"{re.escape(repr(missing))}$"):
        random_known((1, 1, 2, 2, 2), missing)
    with pytest.raises(ValueError, match="random_known: generator must be a torch.Generator"):
        random_known((1, 1, 2, 2, 2), 0.5, generator=0)


@pytest.mark.parametrize("max_shapes", ["1", "2"])  # one shape alone as well
def test_eval_recovery_3d_refuses_a_fraction_that_hides_no_voxel_of_a_shape_before_the_chains(
        files, tmp_path, capsys, monkeypatch, max_shapes: str) -> None:
    """--missing 1e-9 hid nothing of a 16^3 shape: refused by the scores ("a shape has no voxel
    to score (where is empty)") only after every method had run on every shape."""
    import stgconv.evaluation.voxel as voxel_eval

    def no_chain(*args, **kwargs):
        raise AssertionError("a chain ran before the hidden voxels were checked")

    monkeypatch.setattr(voxel_eval, "recover_padded", no_chain)
    assert main(["eval", "recovery-3d", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--missing", "1e-9", "--max-shapes", max_shapes,
                 "--json", str(tmp_path / "t.json"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"error: missing 1e-09 hid no voxel of shape 0 of {files['shapes']} (16^3" in err, err
    assert not (tmp_path / "t.json").exists()


def test_eval_shapes_from_one_file_keep_only_max_shapes(tmp_path: Path) -> None:
    # --max-shapes limits the shapes read from a single .npz as it does from a folder.
    np.savez(tmp_path / "s.npz", X=np.zeros((5, 4, 4, 4), np.uint8))
    assert load_eval_shapes(tmp_path / "s.npz", max_shapes=2).shape == (2, 1, 4, 4, 4)
    # A file of one grid is one shape, not a grid cut to its first 2 slices.
    np.save(tmp_path / "one.npy", np.ones((4, 4, 4), np.uint8))
    assert load_eval_shapes(tmp_path / "one.npy", max_shapes=2).shape == (1, 1, 4, 4, 4)


@pytest.mark.parametrize("load", [load_eval_shapes, load_voxel_shapes])
def test_max_shapes_of_one_file_reads_no_further_than_those(tmp_path: Path, load) -> None:
    # Cut after the header and 2 of its 5 grids, the file holds what --max-shapes 2 reads:
    # all 2,000 64^3 grids of an .npz were decompressed (524 MB) to score 4.
    grids = (np.arange(5 * 64).reshape(5, 4, 4, 4) % 3 == 0).astype(np.uint8)
    np.save(tmp_path / "s.npy", grids)
    data = (tmp_path / "s.npy").read_bytes()
    (tmp_path / "s.npy").write_bytes(data[:len(data) - 3 * 64])
    np.testing.assert_array_equal(load(tmp_path / "s.npy", max_shapes=2).numpy(),
                                  grids[:2, None].astype(np.float32))


def test_eval_shapes_from_one_file_become_float_only_for_max_shapes(tmp_path, monkeypatch) -> None:
    # Each kept grid is 4x its uint8 as float32: all of a big file's converted first cost
    # gigabytes for a few shapes.
    from stgconv.evaluation import voxel

    converted = []
    monkeypatch.setattr(voxel, "to_tensor", lambda grids: converted.append(grids.shape)
                        or to_tensor(grids))
    np.savez(tmp_path / "s.npz", X=np.zeros((5, 4, 4, 4), np.uint8))
    load_eval_shapes(tmp_path / "s.npz", max_shapes=2)
    assert converted == [(2, 4, 4, 4)]


@pytest.mark.parametrize("evaluation", ["eval_super_resolution", "eval_recovery_3d"])
def test_shapes_larger_than_the_model_are_refused_before_they_become_float(
        files, tmp_path, monkeypatch, evaluation: str) -> None:
    # The side is known from the file's uint8 grids: converting all of them first (4x their
    # size as float32) took 0.5 GB for 500 64^3 grids under a 32^3 model.
    from stgconv.evaluation import voxel

    converted = []
    monkeypatch.setattr(voxel, "to_tensor", lambda grids: converted.append(grids.shape)
                        or to_tensor(grids))
    np.savez(tmp_path / "big.npz", X=np.zeros((2, 20, 20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"big\.npz holds 20\^3 grids; this model takes "
                                         r"\(N, 16, 16, 16\)"):
        getattr(voxel, evaluation)(files["run"], tmp_path / "big.npz", device="cpu")
    assert converted == []


def test_eval_shapes_from_a_folder_larger_than_max_side_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((20, 20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"big holds 20\^3 grids; this model takes "
                                         r"\(N, 16, 16, 16\)"):
        load_eval_shapes(folder, max_side=16)
    assert load_eval_shapes(folder, max_side=20).shape == (1, 1, 20, 20, 20)


def test_no_eval_shapes_are_refused_as_such_whatever_their_side(tmp_path: Path) -> None:
    np.save(tmp_path / "none.npy", np.zeros((0, 20, 20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"none\.npy holds no shapes"):
        load_eval_shapes(tmp_path / "none.npy", max_side=16)


def test_eval_shapes_refuse_max_shapes_below_one(tmp_path: Path) -> None:
    """And one given as a float: 2.0 failed as a slice index, in Python's words."""
    np.save(tmp_path / "shapes.npy", np.zeros((2, 4, 4, 4), np.uint8))
    for max_shapes in (0, 2.0):
        with pytest.raises(ValueError, match=f"max_shapes must be an int >= 1, got {max_shapes}"):
            load_eval_shapes(tmp_path / "shapes.npy", max_shapes=max_shapes)


def test_eval_super_resolution_scores_its_start_made_binary_and_soft_output_when_asked(
        files, tmp_path, capsys) -> None:
    """From the config's trilinear up-sampling (factor 8: a block size the initializer did not
    learn) the start made binary is the trilinear_binary baseline, scored the same; --soft
    scores (and writes) the chain's soft occupancy, not a shape. The start is named as the
    trilinear rows are (it was "linear", the config's name, beside them); the JSON's upsample
    keeps the config's name."""
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--factor", "8", "--json", str(out),
                 "--device", "cpu"]) == 0
    assert "start: trilinear " in capsys.readouterr().out
    table = json.loads(out.read_text())
    assert (table["start"]["method"], table["upsample"]) == ("trilinear", "linear")
    assert table["steps"] == 5  # the config's sampler.task_steps, the chain's length
    for key, part in (("error", "errors"), ("iou", "iou"), ("iou_pooled", "iou_pooled")):
        assert table["start"][key] == pytest.approx(table[part]["trilinear_binary"], rel=1e-6)
    assert main(["eval", "super-resolution", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--soft", "--json", str(out),
                 "--out", str(tmp_path / "soft"), "--device", "cpu"]) == 0
    soft = np.load(tmp_path / "soft" / "stgconv.npy")
    assert soft.shape == (12, 16, 16, 16)
    assert not set(np.unique(soft).tolist()) <= {0.0, 1.0}


def test_eval_super_resolution_starts_at_the_configs_upsampling(nearest_voxel_run,
                                                                tmp_path) -> None:
    """Factor 8 (not learned by the initializer): the start is the config's nearest
    up-sampling made binary, and the table scores exactly that."""
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(nearest_voxel_run["run"]),
                 "--shapes", str(nearest_voxel_run["shapes"]), "--factor", "8",
                 "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["upsample"] == table["start"]["method"] == "nearest"
    truth = torch.from_numpy(np.load(nearest_voxel_run["shapes"])["X"]).float()[:, None]
    low = downsample(truth, 8)
    start = block_top_k(nearest_upsample(low, 8), low, (8, 8, 8))
    assert table["start"]["error"] == pytest.approx(voxel_errors(start, truth).mean().item(),
                                                    rel=1e-6)


def test_numpy_and_torch_numbers_from_a_sweep_are_written_as_json_numbers(files, tmp_path
                                                                        ) -> None:
    """A Python caller's numbers from np.arange, np.float32 or a 0-d tensor: the tables kept
    them as given, and the JSON file refused them ("Object of type int64 is not JSON
    serializable") after the whole evaluation."""
    sr = eval_super_resolution(files["run"], files["shapes"], factor=np.int64(4),
                               n_steps=torch.tensor(1), max_shapes=np.int64(2),
                               json_path=tmp_path / "sr.json", device="cpu")
    assert json.loads((tmp_path / "sr.json").read_text())["factor"] == 4
    assert (type(sr["factor"]), type(sr["low_size"]), type(sr["steps"])) == (int, int, int)
    recovery = eval_recovery_3d(files["run"], files["shapes"], missing=np.float32(0.5),
                                n_steps=np.int64(1), max_shapes=2,
                                json_path=tmp_path / "r3d.json", device="cpu")
    written = json.loads((tmp_path / "r3d.json").read_text())
    assert (written["missing"], written["steps"]) == (0.5, 1)
    assert (type(recovery["missing"]), type(recovery["steps"])) == (float, int)


def test_eval_super_resolution_soft_scores_its_start_soft(nearest_voxel_run, tmp_path) -> None:
    """--soft scores our chain's soft occupancy, and its start as the chain starts: soft (the
    nearest up-sampling, whose block means are already low's, is the nearest baseline), not
    made binary, which showed the chain losing what the binarisation alone had gained."""
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(nearest_voxel_run["run"]),
                 "--shapes", str(nearest_voxel_run["shapes"]), "--factor", "8", "--soft",
                 "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["binary"] is False and table["start"]["method"] == "nearest"
    for key, part in (("error", "errors"), ("iou", "iou"), ("iou_pooled", "iou_pooled")):
        assert table["start"][key] == pytest.approx(table[part]["nearest"], rel=1e-6)
    assert table["start"]["error"] != pytest.approx(table["errors"]["trilinear_binary"])


@pytest.mark.parametrize("trained, factor", [("nearest_voxel_run", 8), ("trained_voxel_run", 4)])
def test_eval_super_resolution_scores_the_chain_super_resolve_batch_runs(request, tmp_path,
                                                                         trained, factor) -> None:
    """--soft writes ours: the chain of super_resolve_batch with the checkpoint's offset,
    up-sampling (factor 8, unlearned: the nearest run's start) and initializer (factor 4, which
    it learned), a batch of 8 at a time on one generator: each checked here, as the eval's
    start, binary table and baselines would not change if one were dropped."""
    paths = request.getfixturevalue(trained)
    run = paths["run"]
    assert main(["eval", "super-resolution", "--checkpoint", str(run), "--shapes",
                 str(paths["shapes"]), "--factor", str(factor), "--soft",
                 "--json", str(tmp_path / "sr.json"), "--out", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    energy, config, state = load_voxel_model(run, device="cpu")
    initializer = load_initializer(state, run)
    assert VOXELS.offset(config) != 0
    assert (config.chains.upsample == "nearest" if factor == 8 else initializer.serves(factor))
    low = downsample(torch.from_numpy(np.load(paths["shapes"])["X"]).float()[:, None], factor)
    generator = torch.Generator().manual_seed(0)
    expected = torch.cat([
        super_resolve_batch(energy, task_sampler(config), batch, factor,
                            offset=VOXELS.offset(config), upsample=config.chains.upsample,
                            binary=False, initializer=initializer, generator=generator)
        for batch in low.split(8)]).clamp(0.0, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "stgconv.npy"), expected[:, 0].numpy(),
                               atol=1e-6)


def test_table_means_over_shapes_of_the_scored_voxels_and_pools_iou() -> None:
    """Errors: per shape over ``where`` only, then the mean over shapes; IoU of ``>= 0.5``
    (0.5 itself occupied): the mean of per-shape IoUs, and pooled over all voxels."""
    truth = torch.zeros(2, 1, 2, 2, 2)
    truth[0].view(-1)[:4] = 1  # 4 occupied
    truth[1].view(-1)[0] = 1  # 1 occupied
    pred = truth.clone()
    pred[1].view(-1)[1] = 0.5  # one more, at exactly the level: IoU 1/2 for shape 1
    where = torch.zeros_like(truth, dtype=torch.bool)
    where[:, :, 0] = True  # the first 4 voxels of each shape
    table, _ = _run_methods({"m": lambda x: x}, [(pred,)], truth, where, unit="u")
    assert table["errors"]["m"] == pytest.approx((0.0 + 0.5 / 4) / 2)
    assert table["iou"]["m"] == pytest.approx((1.0 + 0.5) / 2)
    assert table["iou_pooled"]["m"] == (4 + 1) / (4 + 2)  # exactly: it was rounded to float32


def test_run_methods_score_a_chunk_of_shapes_at_a_time(monkeypatch) -> None:
    """SCORE_CHUNK shapes of a batch at a time (every shape at once took 36 bytes a voxel in
    float64 differences), and neither the chunks nor the batches change a score."""
    from stgconv.evaluation import voxel

    truth = (torch.rand(5, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    pred = torch.rand(5, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    where = torch.rand(5, 1, 4, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.3

    def scores(batches: list[tuple[torch.Tensor, ...]]) -> dict:
        table, _ = _run_methods({"m": lambda x: x}, batches, truth, where, unit="u")
        return {part: table[part] for part in ("errors", "iou", "iou_pooled")}

    whole = scores([(pred,)])
    # Each shape's scores as voxel_errors (float64) and voxel_iou give them, means in float64.
    assert whole["errors"]["m"] == voxel_errors(pred, truth, where=where).mean().item()
    assert whole["iou"]["m"] == voxel_iou(pred, truth).double().mean().item()
    scored = []
    monkeypatch.setattr(voxel, "SCORE_CHUNK", 2)
    monkeypatch.setattr(voxel, "voxel_errors", lambda pred, truth, **settings:
                        scored.append(len(pred)) or voxel_errors(pred, truth, **settings))
    assert scores([(pred,)]) == whole
    assert scored == [2, 2, 1]
    assert scores([(part,) for part in pred.split(3)]) == whole  # batches of 3 and 2
    with pytest.raises(ValueError, match=r"m's results \(2, 1, 4, 4, 4\) and their shapes "
                                         r"\(3, 1, 4, 4, 4\) differ"):
        _run_methods({"m": lambda x: x[:2]}, [(pred[:3],), (pred[3:],)], truth, where,
                     unit="u")
    with pytest.raises(ValueError, match=r"m's results \(5, 1, 4, 4, 2\) and their shapes "
                                         r"\(5, 1, 4, 4, 4\) differ"):
        _run_methods({"m": lambda x: x[..., :2]}, [(pred,)], truth, where, unit="u")


def test_run_methods_keep_only_the_outputs_asked_for() -> None:
    """Each method keeps its first ``keep[name]`` outputs (all of them where it asks for more),
    whatever the batches, as they were made (float64 here); a method not named keeps none."""
    truth = torch.zeros(5, 1, 2, 2, 2)
    pred = torch.rand(5, 1, 2, 2, 2, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    _, kept = _run_methods({name: lambda x: x for name in "abcd"},
                           [(part,) for part in pred.split(2)], truth, None, unit="u",
                           keep={"a": 3, "b": 5, "c": 7})
    assert set(kept) == {"a", "b", "c"}
    torch.testing.assert_close(kept["a"], pred[:3], rtol=0, atol=0)
    torch.testing.assert_close(kept["b"], pred, rtol=0, atol=0)
    torch.testing.assert_close(kept["c"], pred, rtol=0, atol=0)  # no rows past the shapes


def test_eval_recovery_3d_scores_each_batch_before_running_the_next(files, monkeypatch) -> None:
    """Every output is scored as soon as it is made, not all at the end (which kept every
    method's output for every shape: 1.5 GB per 1,000 32^3 shapes)."""
    import stgconv.evaluation.voxel as evaluation
    from stgconv.evaluation.voxel import eval_recovery_3d

    scored, seen = [], []
    monkeypatch.setattr(evaluation, "voxel_iou", lambda pred, truth:
                        scored.append(len(pred)) or voxel_iou(pred, truth))
    fill = FILLS["nearest_known"]
    monkeypatch.setattr(evaluation, "FILLS", {"nearest_known": lambda observed, known:
                                              seen.append(len(scored)) or fill(observed, known)})
    eval_recovery_3d(files["run"], files["shapes"], max_shapes=3, n_steps=1, batch_size=1,
                     device="cpu")
    # Shapes scored when the baseline runs on each batch: ours of that batch and both of every
    # batch before it.
    assert seen == [1, 3, 5]


def test_eval_recovery_3d_hides_voxels_drawn_from_its_seed(files, monkeypatch) -> None:
    """The same --seed hides the same voxels, another seed others."""
    import stgconv.evaluation.voxel as evaluation

    class Drawn(Exception):
        """Raised once the mask is drawn: the chains are not what is looked at."""

    masks = []

    def drawn(*args, **kwargs):
        masks.append(random_known(*args, **kwargs))
        raise Drawn

    monkeypatch.setattr(evaluation, "random_known", drawn)
    for seed in (0, 0, 1):
        with pytest.raises(Drawn):
            evaluation.eval_recovery_3d(files["run"], files["shapes"], seed=seed, device="cpu")
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_run_methods_score_every_chunk_without_a_mask(monkeypatch) -> None:
    """No mask (super-resolution scores every voxel): each chunk of shapes is scored, none
    dropped (zipped with a single ``None``, only the first chunk was)."""
    from stgconv.evaluation import voxel

    truth = (torch.rand(5, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    pred = torch.rand(5, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    whole, _ = _run_methods({"m": lambda x: x}, [(pred,)], truth, None, unit="u")
    monkeypatch.setattr(voxel, "SCORE_CHUNK", 2)
    chunked, _ = _run_methods({"m": lambda x: x}, [(pred,)], truth, None, unit="u")
    assert {k: chunked[k] for k in ("errors", "iou", "iou_pooled")} == {
        k: whole[k] for k in ("errors", "iou", "iou_pooled")}


def test_run_methods_add_up_the_seconds_of_every_batch() -> None:
    import time

    def slow(x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x

    table, _ = _run_methods({"slow": slow}, [(torch.zeros(1, 1, 2, 2, 2),)] * 3,
                            torch.zeros(3, 1, 2, 2, 2), None, unit="u")
    assert table["seconds"]["slow"] >= 0.06


@pytest.mark.parametrize("protocol, head", [
    ({"task": "recovery-3d", "missing_fraction": 0.7, "init": "mean"},
     "recovery of 70.0% missing voxels on 2 shapes of s (5 steps from mean)"),
    ({"task": "super-resolution", "low_size": 4, "size": 14, "model_size": 16},
     "super-resolution 4^3 -> 16^3 (scored on the shapes' 14^3) on 2 shapes of s (5 steps)"),
])
def test_format_voxel_table_lists_the_lowest_error_first(protocol: dict, head: str) -> None:
    """Each method's error, mean IoU (not the pooled one) and seconds, lowest error first,
    then the start alone."""
    from stgconv.evaluation.voxel import format_voxel_table

    table = {**protocol, "n_shapes": 2, "shapes": "s", "steps": 5,
             "errors": {"a": 0.3, "b": 0.1, "c": 0.2}, "iou": {"a": 0.5, "b": 0.9, "c": 0.7},
             "iou_pooled": {"a": 0.45, "b": 0.85, "c": 0.65},
             "seconds": {"a": 1.5, "b": 2.5, "c": 3.5},
             "start": {"method": "m", "error": 0.25, "iou": 0.6, "iou_pooled": 0.55,
                       "seconds": 4.5}}
    assert format_voxel_table(table).splitlines() == [
        head,
        "method                  error      IoU   seconds",
        "b                      0.1000   0.9000       2.5",
        "c                      0.2000   0.7000       3.5",
        "a                      0.3000   0.5000       1.5",
        "start: m               0.2500   0.6000       4.5",
    ]


def test_format_voxel_table_keeps_its_columns_for_a_long_start_name() -> None:
    """recovery-3d --init neighbour_majority: "start: neighbour_majority" is 25 characters, and
    its row's numbers stood 5 columns right of the others'."""
    from stgconv.evaluation.voxel import format_voxel_table

    table = {"task": "recovery-3d", "missing_fraction": 0.7, "init": "neighbour_majority",
             "n_shapes": 2, "shapes": "s", "steps": 5,
             "errors": {"stgconv": 0.1, "neighbour_majority": 0.2},
             "iou": {"stgconv": 0.9, "neighbour_majority": 0.8},
             "seconds": {"stgconv": 1.0, "neighbour_majority": 2.0},
             "start": {"method": "neighbour_majority", "error": 0.2, "iou": 0.8, "seconds": 2.0}}
    assert format_voxel_table(table).splitlines()[1:] == [
        "method                        error      IoU   seconds",
        "stgconv                      0.1000   0.9000       1.0",
        "neighbour_majority           0.2000   0.8000       2.0",
        "start: neighbour_majority    0.2000   0.8000       2.0",
    ]


def test_eval_recovery_3d_renders_only_the_observed_voxels_as_its_input(
        files, tmp_path, monkeypatch) -> None:
    """The comparison's first panel is each shape with its hidden voxels empty (the seeded
    mask), not the ground truth."""
    import stgconv.evaluation.voxel as evaluation
    from stgconv.evaluation.voxel import eval_recovery_3d

    seen = {}

    def sheet(panels, **settings):
        seen.update(panels=panels, columns=settings["columns"], titles=settings["titles"])
        picture = np.full((2, 3, 3), 255, np.uint8)  # 2 rows of 3 pixels
        picture[1, 2] = (0, 51, 102)
        return picture

    monkeypatch.setattr(evaluation, "voxel_sheet", sheet)
    monkeypatch.setattr(evaluation, "log_evaluation", lambda folder, task, table, pictures:
                        seen.update(pictures=pictures))
    eval_recovery_3d(files["run"], files["shapes"], missing=0.7, max_shapes=2, n_steps=1,
                     out_dir=tmp_path / "out", tensorboard=tmp_path / "tb", device="cpu")
    # TensorBoard is given the render on [0, 1], (C, H, W): white is 1, not 255.
    expected = torch.ones(3, 2, 3)
    expected[:, 1, 2] = torch.tensor([0.0, 0.2, 0.4])
    torch.testing.assert_close(seen["pictures"]["comparison"], expected)
    truth = load_eval_shapes(files["shapes"], max_shapes=2)
    known = random_known(tuple(truth.shape), 0.7, generator=torch.Generator().manual_seed(0))
    # One row per shape: observed | nearest_known | neighbour_majority | stgconv | truth.
    assert seen["columns"] == 5 and len(seen["panels"]) == 2 * 5
    first = torch.as_tensor(seen["panels"][0])
    torch.testing.assert_close(first, torch.where(known[0], truth[0], torch.zeros(())))
    # Ours (as stgconv.npy holds it) then the truth, each under its own title.
    ours = torch.from_numpy(np.load(tmp_path / "out" / "stgconv.npy"))[0]
    assert not torch.equal(ours, truth[0, 0])
    assert seen["titles"][:5] == ["observed", "nearest_known", "neighbour_majority", "stgconv",
                                  "truth"]
    assert torch.equal(torch.as_tensor(seen["panels"][3])[0], ours)
    assert torch.equal(torch.as_tensor(seen["panels"][4]), truth[0])


def test_eval_super_resolution_of_a_model_not_trained_for_it_has_no_trained_factor(
        tmp_path) -> None:
    """A model trained with recovery chains was taught no block size: trained_factor null
    (its config's chains.factor is only a default)."""
    np.savez(tmp_path / "shapes.npz", X=boxes_and_balls(12, 16)[:, 0].numpy().astype(np.uint8))
    assert main(["train", str(SR_CONFIG), "--data", str(tmp_path / "shapes.npz"),
                 "--out", str(tmp_path / "run"), *TINY, "--set", "chains.mode=recovery",
                 "--set", "initializer=null"]) == 0
    out = tmp_path / "sr.json"
    assert main(["eval", "super-resolution", "--checkpoint", str(tmp_path / "run"),
                 "--shapes", str(tmp_path / "shapes.npz"), "--json", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["trained_factor"] is None


@pytest.mark.parametrize("evaluation", ["super-resolution", "recovery-3d"])
def test_a_batch_past_the_largest_index_is_one_batch_of_every_shape(files, tmp_path, capsys,
                                                                    evaluation: str) -> None:
    """--batch-size 10^20 failed in torch's split, its message ("Overflow when unpacking long
    long") naming no option; any batch of at least the shapes' number is one batch."""
    tables = []
    for batch in ("2", str(10**20)):
        out = tmp_path / f"{batch}.json"
        assert main(["eval", evaluation, "--checkpoint", str(files["run"]), "--shapes",
                     str(files["shapes"]), "--max-shapes", "2", "--steps", "1", "--batch-size",
                     batch, "--json", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
        tables.append(json.loads(out.read_text()))
    assert tables[0]["errors"] == tables[1]["errors"]


@pytest.mark.parametrize("evaluation", ["eval_super_resolution", "eval_recovery_3d"])
def test_the_seed_picks_the_noise_of_our_chains(files, tmp_path, monkeypatch,
                                                evaluation: str) -> None:
    """With chains that draw noise (the tiny run's draw none) and the hidden voxels held
    fixed: the same seed gives the same result, another seed another."""
    import dataclasses

    import stgconv.evaluation.voxel as voxel_eval

    sampler, mask = voxel_eval.task_sampler, voxel_eval.random_known
    monkeypatch.setattr(voxel_eval, "task_sampler", lambda config, **settings:
                        dataclasses.replace(sampler(config, **settings), noise_scale=1.0))
    monkeypatch.setattr(voxel_eval, "random_known", lambda shape, missing, generator:
                        mask(shape, missing, generator=torch.Generator().manual_seed(0)))
    soft = {"binary": False} if evaluation == "eval_super_resolution" else {}

    def ours(seed: int, out: Path) -> np.ndarray:
        getattr(voxel_eval, evaluation)(files["run"], files["shapes"], max_shapes=2, n_steps=1,
                                        seed=seed, out_dir=out, device="cpu", **soft)
        return np.load(out / "stgconv.npy")

    first = ours(0, tmp_path / "a")
    np.testing.assert_array_equal(ours(0, tmp_path / "b"), first)
    assert not np.array_equal(ours(1, tmp_path / "c"), first)


def test_eval_recovery_3d_runs_recover_padded_from_the_models_filler(files, tmp_path,
                                                                     monkeypatch) -> None:
    """A model with a recovery filler (an untrained one stands in) starts there by default:
    ours is recover_padded's chain with the checkpoint's sampler and offset, 8 shapes a batch,
    on the voxels hidden by --seed; the start is scored as the filler fills them; the table
    reports the fraction hidden and the seed."""
    import stgconv.evaluation.voxel as voxel_eval

    torch.manual_seed(0)
    filler = Initializer(recovery=True, width=4, depth=2).eval()
    monkeypatch.setattr(voxel_eval, "load_initializer", lambda *args, **kwargs: filler)
    table = voxel_eval.eval_recovery_3d(files["run"], files["shapes"], seed=3, out_dir=tmp_path,
                                        device="cpu")
    energy, config, _ = load_voxel_model(files["run"], device="cpu")
    truth = torch.from_numpy(np.load(files["shapes"])["X"]).float()[:, None]
    known = torch.rand(truth.shape, generator=torch.Generator().manual_seed(3)) >= 0.7
    observed = torch.where(known, truth, torch.zeros(()))
    expected = torch.cat([
        recover_padded(energy, task_sampler(config), part, part_known,
                       offset=VOXELS.offset(config), init="initializer", initializer=filler)
        for part, part_known in zip(observed.split(8), known.split(8))]).clamp(0.0, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "stgconv.npy"), expected[:, 0].numpy(),
                               atol=1e-6)
    assert table["init"] == table["start"]["method"] == "initializer"
    start = filler.propose_fill(observed, known)  # the model's own grid: nothing padded
    assert table["start"]["error"] == pytest.approx(
        voxel_errors(start, truth, where=~known).mean().item(), rel=1e-6)
    assert table["missing_fraction"] == pytest.approx((~known).sum().item() / known.numel(),
                                                      rel=1e-6)
    assert table["seed"] == 3


def test_start_scores_time_the_start_alone(monkeypatch) -> None:
    """The start's seconds are its own, summed over the batches (a clock that ticks once per
    reading stands in for the real one)."""
    from stgconv.evaluation import voxel

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 1.0
            return self.now

    monkeypatch.setattr(voxel, "time", Clock())
    truth = torch.zeros(3, 1, 2, 2, 2)
    scores = _start_scores("m", lambda x: x, [(part,) for part in truth.split(1)], truth, None,
                           unit="u")
    assert scores["seconds"] == 3.0 and scores["method"] == "m"


def test_eval_super_resolution_renders_the_low_resolution_as_its_input(files, tmp_path,
                                                                     monkeypatch) -> None:
    """The comparison's first panel is each shape's block means (of the shapes padded for the
    model), titled with their side; then every up-sampling, ours and the truth."""
    import stgconv.evaluation.voxel as voxel_eval

    seen = {}

    def sheet(panels, **settings):
        seen.update(panels=panels, columns=settings["columns"], titles=settings["titles"])
        return np.full((2, 2, 3), 255, np.uint8)

    monkeypatch.setattr(voxel_eval, "voxel_sheet", sheet)
    shapes = smaller_shapes(tmp_path)  # 14^3 under the 16^3 model: padded by 1 on every side
    voxel_eval.eval_super_resolution(files["run"], tmp_path / "small.npz", n_steps=1,
                                     out_dir=tmp_path / "out", device="cpu")
    assert seen["columns"] == 6 and seen["titles"][:6] == [
        "low 4^3", "nearest", "trilinear", "trilinear_binary", "stgconv", "truth"]
    means = np.pad(shapes[0], 1).reshape(4, 4, 4, 4, 4, 4).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(np.asarray(seen["panels"][0])[0], means, atol=1e-6)


def test_eval_recovery_3d_names_a_later_shape_that_hides_no_voxel(files, monkeypatch) -> None:
    """Every shape is checked, not only the first: here the second hides nothing."""
    import stgconv.evaluation.voxel as voxel_eval

    def hidden_in_the_first_only(shape, missing, generator):
        known = torch.ones(shape, dtype=torch.bool)
        known[0, 0, 0, 0, 0] = False
        return known

    monkeypatch.setattr(voxel_eval, "random_known", hidden_in_the_first_only)
    with pytest.raises(ValueError, match=r"hid no voxel of shape 1 of "):
        voxel_eval.eval_recovery_3d(files["run"], files["shapes"], max_shapes=2, device="cpu")


@pytest.mark.parametrize("evaluate", [eval_super_resolution, eval_recovery_3d])
def test_shapes_or_a_checkpoint_given_as_data_are_refused_by_name(evaluate, tmp_path) -> None:
    """Grids in memory failed in pathlib ("expected str, bytes or os.PathLike object, not
    ndarray"), naming no argument; the shapes are refused before the model is loaded (its
    absence is not what is reported)."""
    grids = boxes_and_balls(2, 16)[:, 0]
    for data in (grids, grids.numpy()):
        with pytest.raises(ValueError, match="^shapes must be a file's path"):
            evaluate(tmp_path / "no_run", data, device="cpu")
        with pytest.raises(ValueError, match="^checkpoint must be a file's path"):
            evaluate(data, tmp_path / "shapes.npz", device="cpu")
    with pytest.raises(ValueError, match="^path must be a file's path"):
        load_eval_shapes(grids)


def test_the_voxel_tasks_refuse_grids_given_as_data_by_name(tmp_path) -> None:
    """super_resolve and recover_shape failed in pathlib ("expected str, bytes or os.PathLike
    object, not ndarray") for grids in memory, naming no argument."""
    from stgconv import tasks

    grids = boxes_and_balls(2, 16)[:, 0].numpy()
    with pytest.raises(ValueError, match="^source must be a file's path"):
        tasks.super_resolve(tmp_path / "no_run", grids, tmp_path / "out")
    with pytest.raises(ValueError, match="^source must be a file's path"):
        tasks.recover_shape(tmp_path / "no_run", grids, tmp_path / "known.npy", tmp_path / "out")
    with pytest.raises(ValueError, match="^known must be a file's path"):
        tasks.recover_shape(tmp_path / "no_run", tmp_path / "a.npy", grids > 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_fraction_out_of_range_is_named_as_typed_before_the_work(tmp_path, capsys
                                                                          ) -> None:
    """The CLI named its other options with their dashes, this one as 'missing must be ...',
    and only after the model was loaded and the shapes read (no checkpoint here: not what is
    reported)."""
    assert main(["eval", "recovery-3d", "--checkpoint", str(tmp_path / "no_run"), "--shapes",
                 str(tmp_path / "shapes.npz"), "--missing", "1"]) == 2
    assert "error: --missing must be a number in (0, 1), got 1.0" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^missing must be a number in \(0, 1\), got 0$"):
        eval_recovery_3d(tmp_path / "no_run", tmp_path / "shapes.npz", missing=0)


def test_every_chain_upsampling_names_its_start_by_a_baseline_row() -> None:
    """The start of super-resolution is named by the baseline row of the config's
    chains.upsample: an up-sampling left out would fail the evaluation at its end."""
    assert set(START_NAMES) == set(BLOCK_UPSAMPLERS)
    assert set(START_NAMES.values()) <= set(UPSAMPLERS)
