"""What the multi-grid and recovery benches put in their rows, tables and run folders, with
their trainings and chains stubbed (the runs themselves: tests/test_bench.py)."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

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
                                                                        capsys):
    """The printed table's title names the config (not its file), and its ``x best`` column
    is ours over the best baseline (1.0 / 2.0), not their difference."""
    recovery = bench("recovery")
    table = {"errors": {"stgconv": 1.0, "spatial": 2.0}, "seconds": {}, "selected_iteration": 0,
             "start": {"fill": "spatial", "error": 2.0}, "unit": "0-255"}
    monkeypatch.setattr(recovery, "eval_recovery", lambda *args, **kw: table)
    assert recovery.main(["--quick", "--masks", "region"]) == 0
    title, *_, row = capsys.readouterr().out.splitlines()[-4:]
    assert title.endswith(f"ours = config {load_config(recovery.QUICK_RECOVERY_CONFIG).name}")
    assert row.split() == ["wave", "region", "1.00", "2.00", "0.500", "spatial", "(2.00)"]


def test_recovery_table_widens_the_clip_column_for_long_names(bench):
    """A clip named ``actions/18_zebra`` (16 characters) gets a column 2 wider than its name,
    so the header's columns stay over the rows' ones."""
    recovery = bench("recovery")
    row = {"clip": "actions/18_zebra", "mask": "region", "errors": {"stgconv": 1.0},
           "stgconv_over_best_baseline": 0.5, "start": {"fill": "spatial", "error": 2.0}}
    _, header, rule, line = recovery.format_rows([row], "quick").splitlines()
    assert header.index("mask") == line.index("region") == 18
    assert len(rule) == len(header) and line.index("1.00") + 4 == header.index("stgconv") + 7


def test_a_mask_that_does_not_fit_names_the_clips_it_was_checked_against(bench, capsys):
    """The refusal of a mask too large for the clips' frames says which frames and size the
    clips are read at, so the user knows which option to change."""
    with pytest.raises(SystemExit) as exit_info:
        bench("recovery").main(["--quick", "--size", "8", "--masks", "region"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "region: mask 'region:12': block 12x12 does not fit in a 8x8 frame (clips of --frames "
        "12, --size 8)")
