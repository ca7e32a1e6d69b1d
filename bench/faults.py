"""Fault injection: a training run killed with SIGKILL at random moments, resumed each time,
must end bit-identical to an uninterrupted run and never leave a file that fails to load.

A tiny texture run (``--iterations`` iterations, a checkpoint after every one) is trained once
uninterrupted. Then the same run is started ``--kills`` times and killed with SIGKILL at a random
moment after its folder appears (uniform over half a run's length); after each kill the folder
is checked (every checkpoint loads, ``config.yaml`` loads) and the next start resumes from its
checkpoint, or starts over with ``--overwrite`` when the kill came before the first one. A last
start finishes the run. Reported: the kills, how many landed after a checkpoint existed, the
files that failed to load (must be 0), temporaries left after the final run (must be 0) and
whether the final model, chains and generator equal the uninterrupted run's bit for bit.

    python -m bench.faults --kills 20 --json faults.json     # a few minutes here
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from stgconv.checkpoint import CheckpointError, load_checkpoint
from stgconv.config import load_config

# The trainings run as `python -m stgconv` from here, without PYTHONPATH: the checkout this
# script is in, whatever folder the bench was started from.
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.path=builtin:brick", "--set", "data.size=32",
        "--set", "model.layers=[[8, 5, 2], [8, 3, 1]]", "--set", "sampler.n_steps=3",
        "--set", "chains.chains_per_example=2", "--set", "train.checkpoint_every=1",
        "--set", "train.sample_every=0", "--device", "cpu", "--quiet"]


def command(out: Path, iterations: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stgconv", "train", *TINY,
            "--set", f"train.n_iterations={iterations}", "--out", str(out), *extra]


def unloadable(run: Path) -> list[str]:
    """The run's files that exist but fail to load."""
    bad = []
    for path in run.glob("checkpoint*.pt"):
        try:
            load_checkpoint(path)
        except Exception as err:  # noqa: BLE001 - any failure to load is the finding
            bad.append(f"{path.name}: {err}")
    if (run / "config.yaml").exists():
        try:
            load_config(run / "config.yaml")
        except Exception as err:  # noqa: BLE001
            bad.append(f"config.yaml: {err}")
    return bad


def trained_to(run: Path) -> int | None:
    """The iteration of the run's checkpoint (``None``: none, or one that fails to load)."""
    try:
        return load_checkpoint(run / "checkpoint.pt")["iteration"]
    except CheckpointError:  # unloadable() counts the damaged ones
        return None


def same_run(a: Path, b: Path) -> bool:
    """Whether two runs' final checkpoints hold the same model, chains, optimizer and
    generator state, bit for bit."""
    x, y = load_checkpoint(a), load_checkpoint(b)

    def equal(u: object, v: object) -> bool:
        if isinstance(u, torch.Tensor):
            return isinstance(v, torch.Tensor) and u.shape == v.shape and torch.equal(u, v)
        if isinstance(u, dict):
            return isinstance(v, dict) and u.keys() == v.keys() and all(
                equal(u[k], v[k]) for k in u)
        if isinstance(u, (list, tuple)):
            return (isinstance(v, (list, tuple)) and len(u) == len(v)
                    and all(equal(p, q) for p, q in zip(u, v)))
        return u == v

    return all(equal(x[key], y[key]) for key in ("iteration", "model", "optimizer", "chains",
                                                  "generator"))


class ReferenceFailed(Exception):
    """The reference training (a plain ``stgconv train``) failed; the message ends with its
    error output."""


def kill_and_resume(work: Path, *, kills: int, iterations: int, seed: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.perf_counter()
    reference = subprocess.run(command(work / "reference", iterations), cwd=ROOT, env=env,
                               capture_output=True, text=True)
    if reference.returncode != 0:  # nothing to compare the killed runs with
        tail = " ".join(reference.stderr.split()[-80:])  # a traceback ends with its error
        raise ReferenceFailed(f"the uninterrupted reference training failed (exit "
                              f"{reference.returncode}): {tail}")
    run_s = time.perf_counter() - started
    rng = random.Random(seed)
    run = work / "killed"
    killed, after_checkpoint, bad = 0, 0, []
    for _ in range(kills):
        if trained_to(run) == iterations:  # the run ended between kills: a resume is refused
            break
        killed += 1
        extra = (["--resume"] if (run / "checkpoint.pt").exists()
                 else ["--overwrite"] if run.exists() else [])
        process = subprocess.Popen(command(run, iterations, *extra), cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.perf_counter() + 120
        while not (run / "config.yaml").exists() and process.poll() is None:
            if time.perf_counter() > deadline:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, run_s / 2))
        process.send_signal(signal.SIGKILL)
        process.wait()
        after_checkpoint += (run / "checkpoint.pt").exists()
        bad += unloadable(run)
    if trained_to(run) == iterations:
        final_exit, final_stderr = 0, ""
    else:
        extra = ["--resume"] if (run / "checkpoint.pt").exists() else ["--overwrite"]
        final = subprocess.run(command(run, iterations, *extra), cwd=ROOT, env=env,
                               capture_output=True, text=True)
        final_exit, final_stderr = final.returncode, final.stderr.strip()[-500:]
    return {
        "kills": killed, "iterations": iterations, "seed": seed,
        "kills_after_a_checkpoint": after_checkpoint,
        "unloadable_files": bad,
        "final_exit": final_exit, "final_stderr": final_stderr,
        "temporaries_left": sorted(p.name for p in run.glob(".*.tmp")),
        "bit_identical": final_exit == 0 and same_run(run, work / "reference"),
        "uninterrupted_run_s": run_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--kills", type=common.count(0), default=20)
    parser.add_argument("--iterations", type=common.count(1), default=6)
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--json", metavar="FILE", type=common.json_path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            row = kill_and_resume(Path(tmp), kills=args.kills, iterations=args.iterations,
                                  seed=args.seed)
        except ReferenceFailed as err:  # a run failure, not a refused input: exit 1
            print(f"{parser.prog}: {err}", file=sys.stderr)
            return 1
    table = "\n".join([
        f"# SIGKILL at random moments of a {args.iterations}-iteration run, then resume",
        f"kills {row['kills']} (after a checkpoint existed: {row['kills_after_a_checkpoint']}); "
        f"unloadable files {len(row['unloadable_files'])}; temporaries left "
        f"{len(row['temporaries_left'])}; final exit {row['final_exit']}; bit-identical to the "
        f"uninterrupted run: {row['bit_identical']}"])
    common.report(table, [row], args)
    ok = row["bit_identical"] and not row["unloadable_files"] and not row["temporaries_left"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
