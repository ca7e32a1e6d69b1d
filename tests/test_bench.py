"""Benchmarks stay runnable: a tiny smoke run of each bench script writes its JSON table."""

import json
import runpy
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


@pytest.fixture
def bench_main(monkeypatch):
    """``main`` of a bench script; the scripts import ``bench.common``, so the repo root goes on
    ``sys.path`` as ``PYTHONPATH=.`` puts it there for a command-line run."""
    monkeypatch.syspath_prepend(str(ROOT))

    def load(script: str):
        return runpy.run_path(str(BENCH / script))["main"]

    return load


def test_langevin_bench_quick_writes_json_rows(tmp_path, bench_main):
    main = bench_main("langevin.py")
    out = tmp_path / "langevin.json"
    assert main(["--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {row["net"] for row in rows} == {"texture", "object", "descriptor64"}
    for row in rows:
        assert row["ms_per_step"] > 0 and row["gflops"] > 0 and row["speedup_vs_eager"] > 0


def test_video_bench_quick_writes_json_rows(tmp_path, bench_main):
    main = bench_main("video.py")
    out = tmp_path / "video.json"
    assert main(["--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["net"] for row in rows] == ["st_small", "fc_s_small"]
    for row in rows:
        assert row["shape"] == [1, 3, 12, 32, 32] and row["batch"] == 1 and row["n_steps"] == 2
        for key in ("ms_per_step", "ms_per_iteration", "gflops", "speedup_vs_eager",
                    "iteration_speedup_vs_eager"):
            assert row[key] > 0, key
        assert {"device", "torch", "threads"} <= set(row)
        # Same seeds: the library and the eager loops sampled the same chains and trained the
        # same network, up to float rounding.
        assert row["max_abs_diff"] < 1e-5 and row["iteration_max_abs_diff"] < 1e-5
        assert row["iteration_update_rel_diff"] < 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_video_bench_cuda_without_a_gpu_is_a_clear_error(bench_main, capsys):
    main = bench_main("video.py")
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_recovery_bench_quick_writes_json_rows(tmp_path):
    main = runpy.run_path(str(BENCH / "recovery.py"))["main"]
    out = tmp_path / "recovery.json"
    assert main(["--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(row["clip"], row["mask"]) for row in rows] == [("wave", "missing_frame"),
                                                            ("wave", "region")]
    for row in rows:
        assert {"stgconv", "temporal_interpolation"} <= set(row["errors"])
