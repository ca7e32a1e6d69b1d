"""Voxel energies: cost of a Langevin step and a training iteration, stgconv against eager loops.

For every voxel preset in ``--nets`` (``desc32_small`` at 32^3 and ``desc64_small`` at 64^3,
batch 8, by default; the paper's ``desc32`` and ``desc64_sr`` with ``--paper``, meant for a GPU)
this times, in one process, each pair with its repeats interleaved (A B, B A, ...) so that load
from other processes hits both alike:

- one Langevin step: ``Langevin(n_steps=K, step_size=d, clamp=(-1, 1)).run`` against the
  ten-line loop :func:`bench.common.eager_langevin`, on the same energy;
- one training iteration: ``stgconv.train.Trainer.step`` with persistent chains against the same
  iteration written out by hand (the pair of ``bench/video.py``,
  :func:`bench.video.training_stats`).

It reports median ms per step and per iteration, GFLOP/s (FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode``), the ratios eager / stgconv, and the peak memory
of one K-step Langevin run and of one training iteration of each variant: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before the call; on CPU the growth of
the resident set (``VmHWM`` after the call minus ``VmRSS`` before it, the high-water mark reset
through ``/proc/self/clear_refs``) in a fresh subprocess whose glibc returns every block of
128 KiB or more to the system when it is freed (``MALLOC_MMAP_THRESHOLD_``). Both measure a
call after one warm-up call.

Run from the repository root::

    python -m bench.voxel                             # CPU table, small presets
    python -m bench.voxel --paper --device cuda       # the paper's nets, on a GPU
    python -m bench.voxel --quick --json /tmp/v.json  # smoke run, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import copy
import math
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from bench.video import BETAS, eager_training_iteration, make_trainer, training_stats
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.voxel import VOXEL_PRESETS, voxel_energy
from stgconv.losses import contrastive_divergence

ROOT = Path(__file__).resolve().parents[1]
SMALL_NETS = ["desc32_small", "desc64_small"]
PAPER_NETS = ["desc32", "desc64_sr"]
SMALL_BATCH = 8
PAPER_BATCH = 20  # train.batch_size of configs/voxel/*_paper.yaml
QUICK_SIZE = 16
# glibc serves blocks of at least this many bytes with mmap and unmaps them on free, so the
# resident set follows the live tensors. Without a fixed value glibc raises the threshold (up
# to 32 MiB) after the first large free, later blocks come from a heap that keeps freed memory
# resident, and the growth measured after a warm-up call reads too low.
MMAP_THRESHOLD = 128 * 1024


def make_inputs(net: str, *, batch: int, size: int, seed: int, device: torch.device
                ) -> tuple[ConvNetEnergy, Tensor, Tensor]:
    """The network (seeded weights), the chains' start ``x0`` and the "observed" shapes, both
    ``(batch, 1, size, size, size)`` uniform in ``[-1, 1]`` (the cost does not depend on the
    values)."""
    torch.manual_seed(seed)  # the network's initial weights
    energy = voxel_energy(net, size=size).to(device)
    shape = (batch, 1, size, size, size)
    generator = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    data = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    return energy, x0, data


def update_flops(energy: ConvNetEnergy, data: Tensor, samples: Tensor) -> int:
    """FLOPs of a training iteration's update: ``E(data)``, ``E(samples)`` and the backward of
    ``mean E(data) - mean E(samples)`` to the weights (the optimizer step is not counted)."""
    net = copy.deepcopy(energy)
    with FlopCounterMode(display=False) as counter:
        loss, _ = contrastive_divergence(net, data, samples)
        loss.backward()
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------
# Peak memory
# --------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_growth_mb(run: Callable[[], object], device: torch.device) -> float:
    """MiB that one call of ``run`` needs above what is allocated before it, after one warm-up
    call (so one-off allocations, e.g. Adam's moments, count as held, not as peak).

    CUDA: ``max_memory_allocated`` (tensors, exact). CPU: peak resident set minus the resident
    set before the call; only meaningful in a process set up as :func:`memory_probe` is.
    """
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before = _proc_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM (peak RSS) to the current RSS (Linux >= 4.0)
    run()
    return (_proc_status_kib("VmHWM") - before) / 1024


def memory_stats(net: str, *, batch: int, size: int, timing: common.Timing, lr: float) -> dict:
    """Peak growth (MiB) of one K-step Langevin run and of one training iteration, stgconv and
    eager, in this process (see :func:`peak_growth_mb`)."""
    energy, x0, data = make_inputs(net, batch=batch, size=size, seed=timing.seed,
                                   device=timing.device)

    def step(name: str) -> Callable[[], Tensor]:
        extra = {"precision": timing.precision} if name == "stgconv" else {}
        return lambda: common.VARIANTS[name](
            energy, x0, n_steps=timing.n_steps, step_size=timing.step_size,
            generator=torch.Generator(timing.device).manual_seed(timing.seed), **extra)

    trainer = make_trainer(copy.deepcopy(energy), data, x0, timing, lr=lr)
    eager_energy, eager_chains = copy.deepcopy(energy), x0.clone()
    optimizer = torch.optim.Adam(eager_energy.parameters(), lr=lr, betas=BETAS)
    generator = torch.Generator(timing.device).manual_seed(timing.seed)

    def eager_iteration() -> Tensor:
        return eager_training_iteration(eager_energy, optimizer, data, eager_chains,
                                        n_steps=timing.n_steps, step_size=timing.step_size,
                                        generator=generator)

    def tensor_mb(tensors: Sequence[Tensor]) -> float:
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    result = {
        "peak_memory_mb": peak_growth_mb(step("stgconv"), timing.device),
        "eager_peak_memory_mb": peak_growth_mb(step("eager"), timing.device),
        "iteration_peak_memory_mb": peak_growth_mb(trainer.step, timing.device),
        "eager_iteration_peak_memory_mb": peak_growth_mb(eager_iteration, timing.device),
    }
    moments = [t for state in trainer.optimizer.state.values() for t in state.values()
               if isinstance(t, Tensor)]
    # What a training run holds between iterations: weights, Adam's moments, data, chains.
    result["held_memory_mb"] = tensor_mb([*trainer.energy.parameters(), *moments, data,
                                          trainer.chains.chains])
    return result


def memory_probe(spec: dict) -> dict:
    """:func:`memory_stats` for ``spec`` (the keywords, ``timing`` as a dict); what the CPU
    subprocess of :func:`cpu_memory_stats` runs."""
    torch.set_num_threads(spec.pop("threads"))
    timing = common.Timing(**{**spec.pop("timing"), "device": torch.device("cpu")})
    return memory_stats(timing=timing, **spec)


def cpu_memory_stats(net: str, *, batch: int, size: int, timing: common.Timing, lr: float
                     ) -> dict:
    """:func:`memory_stats` on CPU, in a fresh Python process with a fixed mmap threshold (the
    parent's heap, after the timed runs, would hide part of the growth)."""
    spec = {"net": net, "batch": batch, "size": size, "lr": lr,
            "threads": torch.get_num_threads(),
            "timing": {**timing.__dict__, "device": "cpu"}}
    code = ("import json, sys; from bench.voxel import memory_probe; "
            "print(json.dumps(memory_probe(json.loads(sys.argv[1]))))")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the memory probe for {net} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# One row
# --------------------------------------------------------------------------------------------


def bench_net(net: str, *, batch: int, size: int, timing: common.Timing, iterations: int,
              lr: float, memory: bool) -> dict:
    """One table row: the Langevin step pair, the training iteration pair, then the memory."""
    energy, x0, data = make_inputs(net, batch=batch, size=size, seed=timing.seed,
                                   device=timing.device)
    row = {
        "net": net,
        "batch": batch,
        "shape": [batch, 1, size, size, size],
        **common.langevin_step_stats(energy, x0, timing),
        **training_stats(energy, data, x0, timing, iterations=iterations, lr=lr),
    }
    flops = timing.n_steps * row["gflop_per_step"] * 1e9 + update_flops(energy, data, x0)
    row["gflop_per_iteration"] = flops / 1e9
    row["iteration_gflops"] = flops / 1e9 / (row["ms_per_iteration"] / 1e3)
    if not memory:
        # Every memory key, as a measured row has them (None: not measured).
        row.update(dict.fromkeys(column.key for column in MEMORY_COLUMNS))
        row["memory_method"] = "not measured (--no-memory)"
    elif timing.device.type == "cuda":
        row.update(memory_stats(net, batch=batch, size=size, timing=timing, lr=lr))
        row["memory_method"] = "torch.cuda.max_memory_allocated - memory_allocated before the call"
    else:
        row.update(cpu_memory_stats(net, batch=batch, size=size, timing=timing, lr=lr))
        row["memory_method"] = ("peak RSS growth (VmHWM after - VmRSS before, clear_refs reset) "
                                f"in a subprocess, MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}")
    return row


COLUMNS = [
    *common.STEP_COLUMNS,
    common.Column("stgconv ms/iter", "ms_per_iteration", ">15", ".2f"),
    common.Column("eager ms/iter", "eager_ms_per_iteration", ">13", ".2f"),
    common.Column("iter GFLOP/s", "iteration_gflops", ">12", ".1f"),
    common.Column("iter speedup", "iteration_speedup_vs_eager", ">12", ".2f", "x"),
    common.Column("iter paired", "iteration_speedup_paired", ">11", ".2f", "x"),
]
MEMORY_COLUMNS = [
    common.Column("step MB", "peak_memory_mb", ">8", ".1f"),
    common.Column("eager step MB", "eager_peak_memory_mb", ">13", ".1f"),
    common.Column("iter MB", "iteration_peak_memory_mb", ">8", ".1f"),
    common.Column("eager iter MB", "eager_iteration_peak_memory_mb", ">13", ".1f"),
    common.Column("held MB", "held_memory_mb", ">8", ".1f"),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument(
        "--nets", nargs="+", choices=sorted(VOXEL_PRESETS), default=None,
        help=f"default: {' '.join(SMALL_NETS)} ({' '.join(PAPER_NETS)} with --paper)",
    )
    parser.add_argument("--batch", type=int, default=None,
                        help=f"shapes (default {SMALL_BATCH}, --paper {PAPER_BATCH})")
    parser.add_argument("--size", type=int, default=None,
                        help="grid side D (default: each preset's, 32 or 64)")
    common.add_timing_arguments(parser, steps=5, repeats=9)
    parser.add_argument(
        "--iterations", type=int, default=1, help="training iterations per timed run"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (both loops)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory measurement (on CPU a subprocess per net)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--paper", action="store_true",
        help=f"the paper's nets desc32 (32^3) and desc64_sr (64^3), batch {PAPER_BATCH} (a GPU)",
    )
    sizes.add_argument(
        "--quick", action="store_true",
        help=f"smoke run: the small nets at batch 2, {QUICK_SIZE}^3, K 2, 1 repeat (options "
             "given explicitly win)",
    )
    args = common.parse_arguments(
        parser, argv, quick={"batch": 2, "size": QUICK_SIZE, "steps": 2, "repeats": 1}
    )
    if args.nets is None:
        args.nets = PAPER_NETS if args.paper else SMALL_NETS
    if args.batch is None:
        args.batch = PAPER_BATCH if args.paper else SMALL_BATCH
    given = ["size"] if args.size is not None else []
    timing = common.check_arguments(
        parser, args, ["batch", "steps", "iterations", "repeats", *given]
    )
    if not 0 < args.lr < math.inf:  # NaN too; inf: the training step's traceback
        parser.error(f"--lr must be a positive number, got {args.lr}")

    sizes = {net: args.size or VOXEL_PRESETS[net]["size"] for net in args.nets}
    for net, size in sizes.items():  # before any is timed: only these errors are refusals
        try:
            voxel_energy(net, size=size).check_size((size,) * 3)
        except ValueError as err:  # e.g. a --size the preset's strides cannot take
            parser.error(f"{net} at {size}^3: {err}")

    env = common.environment(timing)
    rows = [{**bench_net(net, batch=args.batch, size=size, timing=timing,
                         iterations=args.iterations, lr=args.lr, memory=args.memory), **env}
            for net, size in sizes.items()]
    notes = (
        f"K = {timing.n_steps} Langevin steps per timed run and per training iteration; "
        f"stgconv's Langevin in {timing.precision} (eager loops and training updates fp32); "
        "medians over interleaved repeats; GFLOP/s = counted FLOPs / stgconv ms; "
        "speedup = eager / stgconv; paired = median of per-repeat ratios"
    )
    columns = COLUMNS + (MEMORY_COLUMNS if args.memory else [])
    table = common.format_table(
        "Voxel Langevin step and training iteration cost", notes, columns, rows, env
    )
    if args.memory:
        table += f"\n# MB: peak MiB above what a call starts with, {rows[0]['memory_method']}"
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
