"""Every script in ``examples/`` runs its ``--smoke`` mode as a user would run it: a fresh
process, from another folder, with ``--data`` pointing nowhere (a smoke run makes its own tiny
data and must not need ``../shared``), and writes the numbers it prints as finite JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Each example and the numbers its JSON must hold.
EXPECTED = {
    "video_recovery.py": {"error_stgconv", "error_temporal_interpolation", "best_classical",
                          "ratio_to_best_classical"},
    "voxel_super_resolution.py": {"iou_stgconv", "iou_trilinear", "iou_trilinear_binary"},
    "compose_experts.py": {"smoothness_langevin_A_plus_B", "energy_A_hmc", "hmc_acceptance"},
    "jem_ood.py": {"accuracy", "auroc_energy", "auroc_max_softmax", "auroc_stgconv"},
}


def test_every_example_is_covered():
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_smoke_run_writes_its_numbers(script, tmp_path):
    out = tmp_path / "report" / "numbers.json"  # its folder made, as --out's is (was a traceback)
    # This checkout's stgconv, not whichever clone the environment's editable install names;
    # one thread: a few processes' worth of torch threads on 2 shared cores slowed each run.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(EXAMPLES / script), "--smoke", "--json", str(out),
               "--data", str(tmp_path / "no_such_data")]
    if "--out" in (EXAMPLES / script).read_text():
        command += ["--out", str(tmp_path / "outputs")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    numbers = json.loads(out.read_text())
    assert EXPECTED[script] <= set(numbers)
    for name, value in numbers.items():
        assert isinstance(value, str) or math.isfinite(value), (name, value)
        assert name in done.stdout  # what it writes is what it printed


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_without_its_data_says_so_in_one_line(script, tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    missing = tmp_path / "no_such_data"
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(missing), "--json", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    assert f"error: {missing} not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_refuses_an_abbreviated_option(script, tmp_path, capsys):
    """``--smok`` or ``--jso`` would break, or mean another option, once the example gains one of
    the same start. (With the data missing, an example taking the abbreviation stops at once
    too, on the data.)"""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    missing = tmp_path / "no_such_data"
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(missing), "--jso", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: unrecognized arguments: --jso {tmp_path / 'numbers.json'}")
    assert list(tmp_path.iterdir()) == []


def load_example(script: str):
    """``examples/script`` as a module (not run), so a test can watch what its main calls."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_voxel_example_runs_the_chain_on_centred_occupancy_from_the_trilinear_start(
        tmp_path, monkeypatch):
    """The smoke run's numbers are finite whatever offset or start the script passes, so the
    call is watched: it passes the offset from the sampler's clamp and trilinear up-sampling."""
    example = load_example("voxel_super_resolution.py")
    calls = []

    def spy(energy, sampler, low, factor, **settings):
        calls.append((sampler, settings))
        return example_super_resolve(energy, sampler, low, factor, **settings)

    example_super_resolve = example.super_resolve_batch
    monkeypatch.setattr(example, "super_resolve_batch", spy)
    with torch.random.fork_rng(devices=[]):  # the script seeds torch's global generator
        example.main(["--smoke", "--json", str(tmp_path / "numbers.json"),
                      "--out", str(tmp_path / "outputs")])
    [(sampler, settings)] = calls
    # The sampler's clamp is occupancy's [0, 1] in the model's units: (-mean, 1 - mean).
    assert settings["offset"] == -sampler.clamp[0] > 0
    assert settings["upsample"] == "linear" and settings.get("binary", True)


def test_video_example_preconditions_its_completion_by_the_spread(tmp_path, monkeypatch):
    """The smoke run's numbers are finite without the step scale too, so the completion chain
    is watched: it is given ``step_scale``, the spread of the observed entries."""
    example = load_example("video_recovery.py")
    scales = []

    def spy(sampler, **settings):
        scales.append(settings.get("step_scale"))
        return example_chain(sampler, **settings)

    example_chain = example.CompletionChain
    monkeypatch.setattr(example, "CompletionChain", spy)
    with torch.random.fork_rng(devices=[]):  # the script seeds torch's global generator
        example.main(["--smoke", "--json", str(tmp_path / "numbers.json"),
                      "--out", str(tmp_path / "outputs")])
    [scale] = scales
    assert scale is not None and bool(scale.isfinite().all()) and scale.max() > 0
