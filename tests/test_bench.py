"""Benchmarks stay runnable: a tiny smoke run of each bench script writes its JSON table."""

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_langevin_bench_quick_writes_json_rows(tmp_path):
    main = runpy.run_path(str(BENCH / "langevin.py"))["main"]
    out = tmp_path / "langevin.json"
    assert main(["--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {row["net"] for row in rows} == {"texture", "object", "descriptor64"}
    for row in rows:
        assert row["ms_per_step"] > 0 and row["gflops"] > 0 and row["speedup_vs_eager"] > 0
