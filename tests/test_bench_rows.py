"""What the multi-grid, recovery, voxel evaluation, features and cooperative benches put in their
rows, tables and run folders, with their trainings and chains stubbed (the runs themselves:
tests/test_bench.py)."""

import itertools
import json
import os
import runpy
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from stgconv.config import load_config

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "configs/image/multigrid_animals_quick.yaml"


@pytest.fixture
def bench(load_script, monkeypatch):
    """A bench script as a module (its ``from bench import common`` needs the repository)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return lambda name: load_script(f"bench/{name}.py")


def test_chains_of_their_own_count_their_own_steps(bench):
    """Grids of 2, 3 and 9 steps: 14 gradient evaluations per chain, for the multi-grid
    config and for its single-grid twin (a run of its own name), whatever the shared
    section's chain length."""
    multigrid = bench("multigrid")
    config = load_config(ANIMALS)
    own = tuple(replace(grid, sampler=replace(config.sampler, n_steps=n))
                for grid, n in zip(config.multigrid.grids, (2, 3, 9)))
    mixed = replace(config, multigrid=replace(config.multigrid, grids=own))
    single = multigrid.single_grid(mixed)
    assert multigrid.gradient_evaluations(mixed) == multigrid.gradient_evaluations(single) == 14
    assert single.name == config.name + "_single" != config.name


def test_samples_leave_a_picture_of_every_grid_in_the_run(tmp_path, bench, monkeypatch):
    """The grids sampled after training are drawn into ``<run>/bench_pyramid.png``: a row of
    each grid's 2 images (16x16 each, up-sampled: 2 rows of 2)."""
    multigrid = bench("multigrid")
    config = load_config(ANIMALS)
    grids = [torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 16, 16)]
    monkeypatch.setattr(multigrid, "tasks", SimpleNamespace(train=lambda cfg, **kw: tmp_path))
    monkeypatch.setattr(multigrid, "load_multigrid",
                        lambda run, device: ([], config, {"base": torch.zeros(1)}))
    monkeypatch.setattr(multigrid, "multigrid_bases", lambda *args, generator: None)
    monkeypatch.setattr(multigrid, "multigrid_sampler",
                        lambda trained: SimpleNamespace(run=lambda *args, generator: grids))
    *_, run = multigrid.train_and_sample(config, 2, 0)
    with Image.open(run / "bench_pyramid.png") as picture:
        width, height = picture.size
    assert run == tmp_path and width == height and 32 <= width < 48


def test_multigrid_table_shows_only_the_columns_its_rows_fill(bench):
    """Voxel rows have no image statistics: their table has no empty columns for them."""
    rows = [{"modality": "voxel", "method": "multi-grid", "volume_fraction": 0.25}]
    assert bench("multigrid").format_table(rows).splitlines() == [
        "| modality | method | volume_fraction |", "|---|---|---|",
        "| voxel | multi-grid | 0.250 |"]


def test_recovery_table_names_the_config_and_sets_ours_against_the_best(bench, monkeypatch,
                                                                        capsys, tmp_path):
    """The printed table's title names the config (not its file), and its ``x best`` column
    is ours over the best baseline (1.0 / 2.0), not their difference; the JSON row holds the
    seed the case ran (here a --set's), which the rows did not say."""
    recovery = bench("recovery")
    table = {"errors": {"stgconv": 1.0, "spatial": 2.0}, "seconds": {}, "selected_iteration": 0,
             "start": {"fill": "spatial", "error": 2.0}, "unit": "0-255"}
    monkeypatch.setattr(recovery, "eval_recovery", lambda *args, **kw: table)
    out = tmp_path / "rows.json"
    assert recovery.main(["--quick", "--masks", "region", "--set", "seed=3",
                          "--json", str(out)]) == 0
    title, *_, row = capsys.readouterr().out.splitlines()[-4:]
    assert title.endswith(f"ours = config {load_config(recovery.QUICK_RECOVERY_CONFIG).name}")
    assert row.split() == ["wave", "region", "1.00", "2.00", "0.500", "spatial", "(2.00)"]
    [saved] = json.loads(out.read_text())
    assert saved["seed"] == 3


def test_recovery_table_widens_the_clip_column_for_long_names(bench):
    """A clip named ``actions/18_zebra`` (16 characters) gets a column 2 wider than its name,
    so the header's columns stay over the rows' ones."""
    recovery = bench("recovery")
    row = {"clip": "actions/18_zebra", "mask": "region", "errors": {"stgconv": 1.0},
           "stgconv_over_best_baseline": 0.5, "start": {"fill": "spatial", "error": 2.0}}
    _, header, rule, line = recovery.format_rows([row], "quick").splitlines()
    assert header.index("mask") == line.index("region") == 18
    assert len(rule) == len(header) and line.index("1.00") + 4 == header.index("stgconv") + 7


def test_recovery_table_shows_each_methods_whole_name_over_its_column(bench):
    """``temporal_interpolation`` (22 characters) was cut to ``temporal_interpolati``."""
    row = {"clip": "flag", "mask": "region", "start": {"fill": "learned", "error": 2.0},
           "errors": {"stgconv": 1.0, "temporal_interpolation": 3.0, "biharmonic": 4.0},
           "stgconv_over_best_baseline": 0.33}
    _, header, rule, line = bench("recovery").format_rows([row], "quick").splitlines()
    assert header.split()[2:5] == ["stgconv", "temporal_interpolation", "biharmonic"]
    for name, value in (("stgconv", "1.00"), ("temporal_interpolation", "3.00"),
                        ("biharmonic", "4.00")):  # each number ends under its name
        assert line.index(value) + len(value) == header.index(name) + len(name)


def test_a_mask_that_does_not_fit_names_the_clips_it_was_checked_against(bench, capsys):
    """The refusal of a mask too large for the clips' frames says which frames and size the
    clips are read at, so the user knows which option to change."""
    with pytest.raises(SystemExit) as exit_info:
        bench("recovery").main(["--quick", "--size", "8", "--masks", "region"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "region: mask 'region:12': block 12x12 does not fit in a 8x8 frame (clips of --frames "
        "12, --size 8)")


def voxel_table(errors: tuple[float, float], **settings) -> dict:
    """A voxel evaluation's table of stgconv and one baseline, "nearest": their errors, and
    the IoU, pooled IoU and seconds of each at 2, 3 and 100 times its error."""
    scores = dict(zip(("stgconv", "nearest"), errors))
    return {"errors": scores, **{key: {name: factor * value for name, value in scores.items()}
                                 for key, factor in (("iou", 2), ("iou_pooled", 3),
                                                     ("seconds", 100))}, **settings}


def test_voxel_eval_report_names_each_setting_and_lines_up_its_rows(bench):
    """The printed report: each task's settings (the hidden fraction as a percentage, the grid
    padded to the model's), a row per method with its own error, IoU, pooled IoU and seconds,
    a rule as wide as the header, each model's training and whether its data is disjoint."""
    voxel_eval = bench("voxel_eval")
    start = {"method": "trilinear", "error": 0.25, "iou": 0.5, "iou_pooled": 0.625,
             "seconds": 1.5}
    results = {
        "super-resolution": voxel_table((0.1, 0.2), low_size=16, size=64, n_shapes=43,
                                        shapes="w/beds_test43.npz", steps=30, binary=True,
                                        start=start),
        "super-resolution-32": voxel_table((0.05, 0.1), low_size=32),
        "recovery-3d": voxel_table((0.2, 0.1), missing_fraction=0.7, seed=3, n_shapes=40,
                                   shapes="w/chairs_test40.npz", size=30, model_size=32,
                                   steps=50, init="nearest_known"),
    }
    trained = {"checkpoint": "w/sr", "config": "sr_quick", "arch": "desc64", "iterations": 100,
               "train_seconds": 12.4, "disjoint": True, "why": "trained on beds_train400.npz"}
    reused = {"checkpoint": "r/rec", "config": "rec", "arch": "desc32", "iterations": 7,
              "train_seconds": None, "disjoint": False, "why": "cannot verify"}
    models = {"super-resolution": trained, "super-resolution-32": trained,
              "recovery-3d": reused}
    env = {"device": "cpu", "torch": "2.x", "threads": 2, "seed": 3}
    lines = voxel_eval.format_report(results, models, env).splitlines()
    assert lines[:5] == [
        "# Voxel evaluation, cpu, torch 2.x, 2 threads, seed 3",
        "# super-resolution: 16^3 block means -> 64^3 (super-resolution-32: 32^3 -> 64^3, the "
        "same model), 43 held-out shapes (beds_test43.npz), 30 steps; error = mean |x - truth| "
        "over all voxels; stgconv's shapes binary (True) from the trilinear start",
        "# recovery-3d: 70.0% of the voxels hidden (seed 3), 40 held-out shapes "
        "(chairs_test40.npz, 30^3 padded to 32^3), 50 steps from nearest_known; error over the "
        "missing voxels",
        "# IoU = of the 0.5 level, mean over shapes; IoU pooled = over all shapes' voxels",
        "task                 method                 error     IoU  IoU pooled  seconds"]
    assert lines[5] == "-" * len(lines[4])
    assert [line.split() for line in lines[6:13]] == [
        ["super-resolution", "stgconv", "0.1000", "0.2000", "0.3000", "10.0"],
        ["super-resolution", "start:trilinear", "0.2500", "0.5000", "0.6250", "1.5"],
        ["super-resolution", "nearest", "0.2000", "0.4000", "0.6000", "20.0"],
        ["super-resolution-32", "stgconv", "0.0500", "0.1000", "0.1500", "5.0"],
        ["super-resolution-32", "nearest", "0.1000", "0.2000", "0.3000", "10.0"],
        ["recovery-3d", "stgconv", "0.2000", "0.4000", "0.6000", "20.0"],
        ["recovery-3d", "nearest", "0.1000", "0.2000", "0.3000", "10.0"]]
    assert lines[14] == ("#   model w/sr (sr_quick, desc64, 100 iterations, trained here in 12 s); "
                         "disjoint: trained on beds_train400.npz")
    assert lines[-1] == ("#   model r/rec (rec, desc32, 7 iterations, reused); WARNING: cannot "
                         "verify")


def test_voxel_eval_trains_on_the_device_given_and_replaces_its_own_run(bench, monkeypatch,
                                                                       tmp_path):
    """A training reads its split, run folder, device and overrides into the config, and a
    re-run replaces the run folder it made before."""
    voxel_eval = bench("voxel_eval")
    calls = []
    monkeypatch.setattr(voxel_eval, "tasks", SimpleNamespace(
        train=lambda config, **kwargs: calls.append((config, kwargs)) or tmp_path))
    run, _ = voxel_eval.train_model(voxel_eval.SR_CONFIG, "beds.npz", tmp_path / "run",
                                    device="cpu", overrides=["seed=4"], progress=False)
    ((config, kwargs),) = calls
    assert (config.data.path, config.out_dir, config.device, config.seed) == (
        "beds.npz", str(tmp_path / "run"), "cpu", 4)
    assert run == tmp_path and kwargs == {"overwrite": True, "progress": False}


def test_voxel_eval_names_a_missing_modelnet_file_before_writing_a_split(bench, tmp_path):
    """The beds are there, the ModelNet file is not: the error names it (and the options that
    help), and no work folder is made."""
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "beds_64_train.npz", X=np.zeros((44, 2, 2, 2), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"voxel data not found: \S*modelnet10_30_train"
                                                r"\.npz \(expected .*--data DIR"):
        bench("voxel_eval").make_splits(tmp_path / "data", tmp_path / "work")
    assert not (tmp_path / "work").exists()
    # The beds file itself for the folder: named as such, not as "not found: FILE/beds...".
    with pytest.raises(FileNotFoundError, match=r"^--data \S*beds_64_train\.npz is a file: give "
                                                r"the folder that holds beds_64_train\.npz and"):
        bench("voxel_eval").make_splits(tmp_path / "data" / "beds_64_train.npz",
                                        tmp_path / "work")


def test_features_bench_table_and_protocol_by_default(bench, monkeypatch, tmp_path, capsys):
    """With the runs stubbed: by default seeds 0 and 1 are evaluated after 150 and 300
    iterations on a 0.2 split (here 8 fitted, 2 held out), on the CPU, by the --budget-s from
    now; a relative --config is the one in the folder it was given from (the trainings run
    from the repository); each accuracy and margin is printed in its own column, a margin
    with its sign."""
    features = bench("features")
    grids = np.zeros((10, 2, 2, 2), np.uint8)
    np.savez(tmp_path / "shapes.npz", X=grids, y=np.arange(10) % 2)
    runs = []

    def run_seed(seed, args, split, deadline):
        runs.append((seed, args, deadline))
        return [{"seed": seed, "iterations": 150, "learned": 0.5, "untrained": 0.625,
                 "raw_voxels": 0.25, "learned_minus_untrained": -0.125,
                 "learned_minus_raw": 0.25, "train_wall_s": 61.0, "eval_s": 4.0}]

    monkeypatch.setattr(features, "run_seed", run_seed)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(features.CONFIG.read_text())
    before = time.monotonic()
    assert features.main(["--shapes", "shapes.npz", "--work", "w", "--config", "c.yaml",
                          "--budget-s", "60", "--set", "model.arch=desc32_small"]) == 0
    after = time.monotonic()
    assert sorted(seed for seed, _, _ in runs) == [0, 1]
    for _, args, deadline in runs:
        assert (args.at, args.config, args.device) == ([150, 300], tmp_path / "c.yaml", "cpu")
        assert before + 60 <= deadline <= after + 60
    comment, header, rule, *rows = capsys.readouterr().out.splitlines()
    assert comment == ("# held-out accuracy of a linear read-out, shapes.npz: 8 fitted, 2 held "
                       "out (split seed 0); device cpu; overrides model.arch=desc32_small")
    assert header.split() == ["seed", "iter", "learned", "untrained", "raw", "-untrained",
                              "-raw", "train", "s", "eval", "s"] and len(rule) == len(header)
    assert [row.split() for row in rows] == [
        [seed, "150", "0.500", "0.625", "0.250", "-0.125", "+0.250", "61", "4"]
        for seed in ("0", "1")]


def test_features_bench_quick_is_a_smoke_run(bench, monkeypatch):
    """--quick evaluates after 1 and 2 iterations: it kept the defaults' 150 and 300, which
    made the smoke run take about five minutes on two cores (a given --at still wins)."""
    features = bench("features")
    segments = []

    def run_seed(seed, args, split, deadline):
        segments.append(args.at)
        return []

    monkeypatch.setattr(features, "run_seed", run_seed)
    assert features.main(["--quick", "--seeds", "0"]) == 0
    assert features.main(["--quick", "--seeds", "0", "--at", "3"]) == 0
    assert segments == [[1, 2], [3]]


def coop_script(monkeypatch) -> dict:
    """bench/coop.py's globals, run as a script is (its dataclass needs a module in
    ``sys.modules`` while it is defined, which ``load_script`` does not register)."""
    monkeypatch.syspath_prepend(str(ROOT))
    return runpy.run_path(str(ROOT / "bench" / "coop.py"))


def test_coop_tables_show_the_default_steps_then_each_curve_against_the_target(monkeypatch):
    """The first table: the rows at their default chain length and the references, with only
    the columns they fill; the second: each curve's metric by chain length (blank where a
    curve has no such length), the common target and the steps to it ("never": not reached)."""
    run = {"task": "digits", "seed": 0, "iterations": 7, "train_cpu_s": 2.5,
           "sample_cpu_s": 0.25, "class_entropy": 0.5, "curve_metric": "frechet",
           "common_target": 2.0}
    rows = [{**run, "method": "cooperative", "steps": 0, "default_steps": False, "frechet": 3.0,
             "steps_to_target": 5},
            {**run, "method": "cooperative", "steps": 5, "default_steps": True, "frechet": 1.0,
             "steps_to_target": 5},
            {**run, "method": "descriptor (noise)", "steps": 5, "default_steps": True,
             "frechet": 4.0, "steps_to_target": None},
            {"task": "digits", "seed": 0, "method": "reference: other test digits",
             "frechet": 0.5, "class_entropy": 0.875}]
    assert coop_script(monkeypatch)["format_tables"](rows).splitlines() == [
        "| task | seed | method | iterations | train_cpu_s | steps | sample_cpu_s | frechet | "
        "class_entropy |",
        "|---|---|---|---|---|---|---|---|---|",
        "| digits | 0 | cooperative | 7 | 2.500 | 5 | 0.250 | 1.000 | 0.500 |",
        "| digits | 0 | descriptor (noise) | 7 | 2.500 | 5 | 0.250 | 4.000 | 0.500 |",
        "| digits | 0 | reference: other test digits |  |  |  |  | 0.500 | 0.875 |",
        "",
        "| task | seed | method | metric | 0 | 5 | target | steps to target |",
        "|---|---|---|---|---|---|---|---|",
        "| digits | 0 | cooperative | frechet | 3.000 | 1.000 | 2.000 | 5 |",
        "| digits | 0 | descriptor (noise) | frechet |  | 4.000 | 2.000 | never |"]


def test_voxel_eval_runs_each_task_on_its_own_model_and_keeps_each_report(bench, monkeypatch,
                                                                          tmp_path):
    """A given run folder serves its own task (none trained); a trained one shows its seconds
    and its progress bars unless --quiet; each evaluation writes its own folder and JSON; the
    RBM gets --rbm-updates; the run's seconds count from its start, the evaluations' from
    theirs."""
    voxel_eval = bench("voxel_eval")
    trainings, evaluations, rbms = [], [], []
    monkeypatch.setattr(voxel_eval, "train_model", lambda config, train_file, out, **kw: (
        trainings.append(kw["progress"]) or (out, 2.0)))
    monkeypatch.setattr(voxel_eval, "training_source", lambda checkpoint, **kw: {
        "checkpoint": str(checkpoint)})

    def evaluation(checkpoint, shapes, **kw):
        evaluations.append((str(checkpoint), kw["out_dir"].name, kw["json_path"].name))
        return {key: {"stgconv": 0.5} for key in ("errors", "iou", "iou_pooled", "seconds")}

    monkeypatch.setattr(voxel_eval.voxel, "eval_super_resolution", evaluation)
    monkeypatch.setattr(voxel_eval.voxel, "eval_recovery_3d", evaluation)
    monkeypatch.setattr(voxel_eval, "rbm_recovery_row", lambda *args, **kw: rbms.append(
        kw["updates"]) or {"error": 0.25, "iou": 0.75, "iou_pooled": 0.75, "seconds": 2.0})
    splits = {f"{kind}_{part}": {"path": f"{kind}_{part}.npz", "n": 3}
              for kind in ("beds", "chairs") for part in ("train", "test")}
    options = dict(seed=0, quick=False, device="cpu", missing=0.5, rbm=8, rbm_updates=3)
    # A clock one second on at each reading: the run's start, the evaluations' start, their end
    # and the run's end.
    monkeypatch.setattr(voxel_eval, "time",
                        SimpleNamespace(perf_counter=itertools.count().__next__))
    given = voxel_eval.run(SimpleNamespace(sr_checkpoint="sr_run", recovery_checkpoint="rec_run",
                                           quiet=True, **options), splits, tmp_path)
    assert trainings == [] and rbms == [3]
    assert evaluations == [("sr_run", "sr_eval", "sr_eval.json"),
                           ("sr_run", "sr32_eval", "sr32_eval.json"),
                           ("rec_run", "recovery_eval", "recovery_eval.json")]
    assert [model["train_seconds"] for model in given["models"].values()] == [None] * 3
    assert (given["eval_seconds"], given["seconds"]) == (1, 3)
    trained = voxel_eval.run(SimpleNamespace(sr_checkpoint=None, recovery_checkpoint=None,
                                             quiet=False, **options), splits, tmp_path)
    assert trainings == [True, True]
    assert [model["train_seconds"] for model in trained["models"].values()] == [2.0] * 3


def test_features_steps_add_their_output_to_the_seeds_log_in_order(bench, monkeypatch,
                                                                   tmp_path):
    """Each step's command line, then what the step wrote (to the file itself, as a process
    does), one step after the other in the one log."""
    features = bench("features")

    def run(command, *, stdout, **kwargs):
        os.write(stdout.fileno(), f"{command[3]} output\n".encode())
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    log = tmp_path / "seed0.log"
    features.stgconv("train", "--quiet", log=log)
    features.stgconv("eval", "classification", log=log)
    assert log.read_text().splitlines() == ["$ stgconv train --quiet", "train output",
                                            "$ stgconv eval classification", "eval output"]


@pytest.mark.parametrize("work", [False, True])
def test_features_bench_failure_names_the_logs_only_where_they_are_kept(
        bench, monkeypatch, capsys, tmp_path, work):
    """A failed step's one line points to the logs in --work; without --work they were in a
    temporary folder, gone by then, so it names none."""
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1))
    given = ["--work", str(tmp_path / "w")] if work else []
    with pytest.raises(SystemExit) as exit_info:
        bench("features").main(["--quick", "--seeds", "0", "--at", "1", *given])
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert "stgconv train exited 1" in last
    assert last.endswith(f" (logs in {tmp_path / 'w'})") if work else "logs in" not in last


def test_coop_image_scores_give_the_samples_spread_and_as_many_references(monkeypatch):
    """An image model's row has the spread of its samples (not of the data), and the real
    images it is set against are as many as the samples."""
    coop = coop_script(monkeypatch)
    data = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setitem(coop["Scorer"].__init__.__globals__, "modality_of",
                        lambda config: SimpleNamespace(load=lambda settings: data))
    monkeypatch.setattr(coop["multigrid"], "image_references", lambda images, n: [
        {"method": "reference", "images": len(images), "samples": n}])
    scorer = coop["Scorer"]("animals", coop["PAIRS"]["animals"], SimpleNamespace(data=None),
                            mnist=None, seed=0, quick=True)
    assert scorer(torch.zeros(4, 3, 16, 16))["spread"] == 0.0
    assert scorer.references(None, 5) == [{"method": "reference", "images": 6, "samples": 5}]
