"""Scaling: training iterations per second over processes, and how an iteration's cost grows.

Two tables, both of ``stgconv.train.Trainer.step`` (K Langevin steps on persistent chains, the
loss ``mean E(data) - mean E(samples)``, backward, one Adam step), with the trainer built as
``stgconv train`` builds it (the repository's quick config of the modality, ``stgconv.build``,
the modality's energy) on synthetic data of the right shape (uniform in [-1, 1]; voxels: random
binary occupancy):

- **processes**: the same experiment trained by 1 and 2 processes launched as users launch
  ``stgconv train``: 2 processes with ``python -m torch.distributed.run --standalone
  --nproc_per_node 2 -m bench.scaling --worker ...`` (Gloo), 1 process with ``python -m
  bench.scaling --worker ...``; the same batch per process, so 2 processes handle twice the
  examples per iteration. ``OMP_NUM_THREADS`` is set per process: 1 process x 2 threads and
  2 processes x 1 thread use the same 2 cores; 1 process x 1 thread is the other baseline. Each
  worker trains ``--warmup`` untimed iterations, then rank 0 times ``--iterations`` iterations
  between two barriers and writes its timing to a JSON file that this script reads.
- **growth**: in this process, with torch's default threads, ms per iteration as the batch
  (image net), the clip length (video net) and the grid side (voxel net) grow, and the fit
  ``ms = a * size^b`` (least squares on the logs).

Run from the repository root::

    python -m bench.scaling --json scaling.json     # both tables, ~6.5 min on 2 cores
    python -m bench.scaling --tables processes --net st_small
    python -m bench.scaling --quick --json /tmp/s.json   # smoke run
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from stgconv import distributed
from stgconv.build import build_chain_start, model_sampler
from stgconv.config import ExperimentConfig, load_config
from stgconv.distributed import World
from stgconv.modalities import modality_of
from stgconv.train import Trainer

ROOT = Path(__file__).resolve().parents[1]

# What a user trains for each net: the repository's quick config of its modality. The bench
# keeps its model, sampler, chain and optimizer settings and replaces the data.
CONFIGS = {
    "texture": "configs/image/texture_brick.yaml",  # the defaults: grey 64x64, K = 20
    "st_small": "configs/video/st_quick.yaml",  # RGB 16x64x64 clips, K = 20
    "desc32_small": "configs/voxel/synthesis_chairs_quick.yaml",  # 32^3, K = 20, no noise
}

# (processes, threads per process): 1x2 and 2x1 share the same 2 cores.
SETUPS = [(1, 1), (1, 2), (2, 1)]
# A launch pays 5-12 s of torch imports and teardown here (the workers' and torchrun's), so the
# smoke run launches only one process and two.
QUICK_SETUPS = [(1, 1), (2, 1)]


class Series(NamedTuple):
    """One growth series: ``net`` trained on ``batch`` examples of side ``side`` and ``frames``
    frames, with the quantity ``grows`` taking ``sizes``."""

    net: str
    grows: str  # "batch", "frames" or "side"
    sizes: tuple[int, ...]
    batch: int
    side: int
    frames: int = 16


SERIES = [
    Series("texture", "batch", (1, 4, 16, 64), batch=1, side=64),
    Series("st_small", "frames", (16, 35, 70), batch=2, side=64),
    Series("desc32_small", "side", (16, 32, 64), batch=2, side=32),
]
QUICK_SERIES = [
    Series("texture", "batch", (1, 2), batch=1, side=64),  # its receptive field: 57
    Series("st_small", "frames", (4, 8), batch=1, side=16),
    # Not 8^3: there the same seed trained desc32_small to different losses run to run on this
    # CPU, and its noise-free chains went non-finite in 4 of 6 quick runs; 16^3 and 24^3 repeat
    # bit for bit.
    Series("desc32_small", "side", (16, 24), batch=1, side=16),
]


# --------------------------------------------------------------------------- the experiment


def experiment(net: str, *, batch: int, side: int, frames: int, steps: int | None, seed: int
               ) -> ExperimentConfig:
    """``net``'s quick config with ``batch`` examples per process (one chain each), frames of
    ``side`` (grid side for voxels), clips of ``frames`` frames, ``steps`` Langevin steps (None:
    the config's), on the CPU."""
    overrides = [f"train.batch_size={batch}", "chains.chains_per_example=1", f"data.size={side}",
                 f"seed={seed}", "device=cpu"]
    if load_config(ROOT / CONFIGS[net]).data.kind == "video":  # images and voxels have none
        overrides.append(f"data.frames={frames}")
    if steps is not None:
        overrides.append(f"sampler.n_steps={steps}")
    return load_config(ROOT / CONFIGS[net], overrides)


def check_fits(config: ExperimentConfig) -> None:
    """``ValueError`` naming the smallest size when ``config``'s examples are smaller than its
    net's receptive field (checked before a launch: a worker's error would come back as its
    traceback)."""
    modality = modality_of(config)
    grid = modality.grid_shape(config.data.size, config.data.frames, config.data)
    model = replace(config.model, in_channels=config.data.channels, image_size=grid[-1])
    modality.energy(model).check_size(grid)


def synthetic_data(config: ExperimentConfig, n: int, *, seed: int) -> Tensor:
    """``n`` examples ``(n, C, *grid)`` in data units: uniform in [-1, 1], voxels binary
    occupancy (10% full). The cost of an iteration does not depend on the values."""
    modality = modality_of(config)
    shape = (n, config.data.channels,
             *modality.grid_shape(config.data.size, config.data.frames, config.data))
    generator = torch.Generator().manual_seed(seed)
    if modality.name == "voxels":
        return (torch.rand(shape, generator=generator) < 0.1).float()
    return torch.rand(shape, generator=generator) * 2 - 1


def build_trainer(config: ExperimentConfig, data: Tensor, world: World | None) -> Trainer:
    """The trainer ``stgconv train`` builds for a single-net ``config`` (see
    ``stgconv.tasks.train``): units fitted on all of ``data`` ``(N, C, *grid)``, this rank's shard,
    its own generator (``seed + rank``), the same initial weights on every rank."""
    modality = modality_of(config)
    config = modality.fit_units(config, data)
    data = data - modality.offset(config)
    if world is not None:
        data = data[world.shard(len(data))]
    rank = world.rank if world is not None else 0
    generator = torch.Generator().manual_seed(config.seed + rank)
    torch.manual_seed(config.seed)
    model = replace(config.model, in_channels=data.shape[1], image_size=data.shape[-1])
    config = replace(config, model=model)
    return Trainer(
        modality.energy(model), model_sampler(config),
        build_chain_start(config.chains, data.shape[0], spatial_dims=data.dim() - 2), data,
        train=config.train, generator=generator, world=world,
    )


# --------------------------------------------------------------------------- processes table


def worker(args: argparse.Namespace) -> int:
    """One process of a launch: train, time ``args.iterations`` iterations on rank 0 between
    barriers, and (rank 0) write the timing to ``args.out``."""
    world = distributed.from_environment("cpu")
    config = experiment(args.net, batch=args.batch, side=args.size, frames=args.frames,
                        steps=args.steps, seed=args.seed)
    # The same examples in every launch: two per-process batches, so that each of 2 processes
    # holds one batch and a single process draws one batch of the two.
    data = synthetic_data(config, 2 * args.batch, seed=args.seed)
    trainer = build_trainer(config, data, world)
    for _ in range(args.warmup):
        trainer.step()
    if world is not None:
        world.barrier()
    start = time.perf_counter()
    iteration_s = []
    for _ in range(args.iterations):
        begin = time.perf_counter()
        trainer.step()
        iteration_s.append(time.perf_counter() - begin)
    if world is not None:
        world.barrier()  # the clock stops when the slowest rank is done
    total_s = time.perf_counter() - start
    allreduce_ms = None
    if world is not None:
        # The gradient all-reduce alone (the step's communication), on the last step's gradients.
        times = []
        for _ in range(5):
            world.barrier()
            begin = time.perf_counter()
            world.average_gradients(trainer.energy.parameters())
            times.append(time.perf_counter() - begin)
        allreduce_ms = 1e3 * statistics.median(times)
    if world is None or world.is_main:
        timing = {
            "processes": world.size if world is not None else 1,
            "threads_per_process": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "batch_per_process": trainer.batch_size,
            "shape": list(trainer.data.shape[1:]),
            "n_steps": config.sampler.n_steps,
            "iterations": args.iterations,
            "warmup": args.warmup,
            "total_s": total_s,
            "iteration_ms_runs": [1e3 * t for t in iteration_s],
            "allreduce_ms": allreduce_ms,
            "parameters": sum(p.numel() for p in trainer.energy.parameters()),
            "torch": torch.__version__,
        }
        Path(args.out).write_text(json.dumps(timing, indent=2))
    distributed.shutdown(world)
    return 0


def launch(processes: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    """One training run in ``processes`` processes of ``threads`` threads, started as users
    start ``stgconv train``: several processes with ``python -m torch.distributed.run``, one
    process plainly (no process group either way: ``from_environment`` returns None for one
    process, so torchrun would only add its own start-up, ~4 s of importing torch here).
    Returns rank 0's timing. torchrun's logs go beside ``out``: left to itself, torchrun makes
    a ``torchelastic_*`` folder in the system's temporary folder per launch and never removes
    it."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone",
                     "--nproc_per_node", str(processes), "--log-dir", str(out.parent / "torchrun")]
    command = [
        *launcher, "-m", "bench.scaling", "--worker",
        "--out", str(out), "--net", args.net, "--batch", str(args.batch), "--size", str(args.size),
        "--frames", str(args.frames), "--iterations", str(args.iterations),
        "--warmup", str(args.warmup), "--seed", str(args.seed),
    ]
    if args.steps is not None:
        command += ["--steps", str(args.steps)]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{processes} x {threads} launch failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def processes_rows(args: argparse.Namespace, setups: Sequence[tuple[int, int]]) -> list[dict]:
    """A row per ``(processes, threads)`` setup: medians over ``args.rounds`` launches, the
    setups' order reversed every round (so that slow drift in the machine's load hits them
    alike)."""
    runs: dict[tuple[int, int], list[dict]] = {setup: [] for setup in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for processes, threads in setups if round_ % 2 == 0 else setups[::-1]:
                out = Path(tmp) / f"{processes}x{threads}_{round_}.json"
                runs[processes, threads].append(launch(processes, threads, args, out))
    rows = []
    for (processes, threads), timings in runs.items():
        per_s = [t["iterations"] / t["total_s"] for t in timings]
        first = timings[0]
        iterations_per_s = statistics.median(per_s)
        examples = first["batch_per_process"] * processes
        row = {
            "table": "processes",
            "setup": f"{processes} proc x {threads} thr",
            "processes": processes,
            "threads_per_process": threads,
            "cores_used": processes * threads,
            "net": args.net,
            "batch_per_process": first["batch_per_process"],
            "examples_per_iteration": examples,
            "shape": first["shape"],
            "n_steps": first["n_steps"],
            "iterations": first["iterations"],
            "warmup": first["warmup"],
            "rounds": args.rounds,
            "iterations_per_s": iterations_per_s,
            "examples_per_s": iterations_per_s * examples,
            "ms_per_iteration": 1e3 / iterations_per_s,
            "iterations_per_s_runs": per_s,
            "iteration_ms_runs": [t["iteration_ms_runs"] for t in timings],
            "allreduce_ms": (statistics.median(t["allreduce_ms"] for t in timings)
                             if processes > 1 else 0.0),
            "parameters": first["parameters"],
            "worker_threads": first["threads_per_process"],
            "omp_wait_policy": first["omp_wait_policy"],
            "torch": first["torch"],
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg()[0],  # 1 min, when the last launch ended
        }
        rows.append(row)
    by_setup = {(row["processes"], row["threads_per_process"]): row for row in rows}
    for row in rows:
        # Against one process with one thread: the data-parallel speed-up (ideal 2 for two
        # processes with a core each); against one process with two threads: whether processes
        # use the same two cores better than threads do.
        for baseline in ((1, 1), (1, 2)):
            if baseline in by_setup:
                row[f"scaling_vs_{baseline[0]}x{baseline[1]}"] = (
                    row["examples_per_s"] / by_setup[baseline]["examples_per_s"])
    return rows


PROCESS_COLUMNS = [
    common.Column("setup", "setup", "<17"),
    common.Column("cores", "cores_used", ">5"),
    common.Column("batch/proc", "batch_per_process", ">10"),
    common.Column("ex/iter", "examples_per_iteration", ">7"),
    common.Column("ms/iter", "ms_per_iteration", ">9", ".1f"),
    common.Column("iter/s", "iterations_per_s", ">7", ".3f"),
    common.Column("examples/s", "examples_per_s", ">10", ".2f"),
    common.Column("all-reduce ms", "allreduce_ms", ">13", ".2f"),
    common.Column("vs 1x1", "scaling_vs_1x1", ">7", ".2f", "x"),
    common.Column("vs 1x2", "scaling_vs_1x2", ">7", ".2f", "x"),
]


# --------------------------------------------------------------------------- growth table


def growth_rows(series: Series, *, steps: int | None, repeats: int, warmup: int, seed: int
                ) -> list[dict]:
    """A row per size of ``series``: median ms per ``Trainer.step`` over ``repeats`` runs, the
    sizes interleaved (order flipped every repeat), after ``warmup`` untimed steps of each."""
    trainers = {}
    for size in series.sizes:
        shape = {"batch": series.batch, "side": series.side, "frames": series.frames,
                 series.grows: size}
        config = experiment(series.net, batch=shape["batch"], side=shape["side"],
                            frames=shape["frames"], steps=steps, seed=seed)
        data = synthetic_data(config, shape["batch"], seed=seed)
        trainers[size] = (build_trainer(config, data, None), config)

    def run(trainer: Trainer):
        return trainer.step

    seconds, _ = common.interleaved(
        {str(size): run(trainer) for size, (trainer, _) in trainers.items()},
        repeats=repeats, warmup=warmup, device=torch.device("cpu"),
    )
    rows = []
    for size, (trainer, config) in trainers.items():
        ms = [1e3 * t for t in seconds[str(size)]]
        rows.append({
            "table": "growth",
            "net": series.net,
            "grows": series.grows,
            "size": size,
            "batch": trainer.batch_size,
            "shape": list(trainer.data.shape[1:]),
            "n_steps": config.sampler.n_steps,
            "repeats": repeats,
            "ms_per_iteration": statistics.median(ms),
            "ms_per_iteration_min": min(ms),
            "ms_per_iteration_runs": ms,
            "load_average": os.getloadavg()[0],
        })
    return rows


def power_fit(sizes: Sequence[float], ms: Sequence[float]) -> tuple[float, float]:
    """``(a, b)`` of ``ms = a * size^b``, least squares on ``log ms = log a + b log size``."""
    b, log_a = statistics.linear_regression([math.log(s) for s in sizes],
                                            [math.log(m) for m in ms])
    return math.exp(log_a), b


def fit_row(rows: Sequence[dict]) -> dict:
    """The fit of one series' rows, and the exponent between its two largest sizes."""
    sizes = [row["size"] for row in rows]
    ms = [row["ms_per_iteration"] for row in rows]
    a, b = power_fit(sizes, ms)
    return {
        "table": "fit",
        "net": rows[0]["net"],
        "grows": rows[0]["grows"],
        "sizes": sizes,
        "sizes_text": "/".join(str(size) for size in sizes),
        "ms_per_iteration": ms,
        "a": a,
        "b": b,
        # Between the two largest sizes: what the next doubling costs, with less of the fixed
        # per-iteration cost that flattens the fit at the small sizes.
        "b_last": math.log(ms[-1] / ms[-2]) / math.log(sizes[-1] / sizes[-2]),
    }


GROWTH_COLUMNS = [
    common.Column("net", "net", "<13"),
    common.Column("grows", "grows", "<7"),
    common.Column("size", "size", ">5"),
    common.Column("batch", "batch", ">5"),
    common.Column("example shape", "shape", "<14"),
    common.Column("K", "n_steps", ">3"),
    common.Column("ms/iter", "ms_per_iteration", ">9", ".1f"),
    common.Column("best ms", "ms_per_iteration_min", ">9", ".1f"),
]
FIT_COLUMNS = [
    common.Column("net", "net", "<13"),
    common.Column("grows", "grows", "<7"),
    common.Column("sizes", "sizes_text", "<10"),
    common.Column("a (ms)", "a", ">9", ".2f"),
    common.Column("b", "b", ">5", ".2f"),
    common.Column("b (last two)", "b_last", ">12", ".2f"),
]


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--tables", nargs="+", choices=["processes", "growth"],
                        default=["processes", "growth"])
    parser.add_argument("--net", choices=list(CONFIGS), default="texture",
                        help="the processes table's net and its quick config (default texture)")
    parser.add_argument("--batch", type=int, default=8,
                        help="examples per process of the processes table (default 8)")
    parser.add_argument("--size", type=int, default=None,
                        help="frame / grid side of the processes table (default: the config's)")
    parser.add_argument("--frames", type=int, default=16,
                        help="clip length of the processes table (video nets; default 16)")
    parser.add_argument("--steps", type=int, default=None,
                        help="K, Langevin steps per iteration (default: the configs', 20)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="timed iterations per launch of the processes table (default 10)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed iterations per launch first (default 2; the growth table: 1)")
    parser.add_argument("--rounds", type=int, default=3, help="launches per setup (default 3)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed iterations per size of a growth series, after one untimed "
                        "(default 5)")
    parser.add_argument("--seed", type=common.seed_number, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1x1 and 2x1 only, tiny shapes, K 2, 1 round, 1 repeat "
                             "(options given explicitly win)")
    parser.add_argument("--json", metavar="FILE", type=common.json_path,
                        help="also write the rows as a JSON list")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = common.parse_arguments(parser, argv, quick={
        "batch": 1, "steps": 2, "iterations": 2, "warmup": 1, "rounds": 1, "repeats": 1,
        "frames": 4})
    if args.worker:
        return worker(args)
    series, setups = (QUICK_SERIES, QUICK_SETUPS) if args.quick else (SERIES, SETUPS)
    for name in ("batch", "frames", "iterations", "rounds", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("size", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.size is None:
        args.size = load_config(ROOT / CONFIGS[args.net]).data.size
    if "processes" in args.tables:
        try:
            check_fits(experiment(args.net, batch=args.batch, side=args.size, frames=args.frames,
                                  steps=args.steps, seed=args.seed))
        except ValueError as err:
            parser.error(f"--net {args.net}: {err}")

    started = time.perf_counter()
    rows: list[dict] = []
    tables = []
    if "processes" in args.tables:
        process_rows = processes_rows(args, setups)
        rows += process_rows
        columns = [c for c in PROCESS_COLUMNS if c.key in process_rows[0]]
        notes = (
            f"Trainer.step of {args.net} ({CONFIGS[args.net]}), {args.batch} examples per process, "
            f"K = {process_rows[0]['n_steps']}; 2 processes: torchrun --standalone, Gloo; "
            "OMP_NUM_THREADS = "
            "threads per process (1x2 and 2x1 share the same 2 cores); median over "
            f"{args.rounds} launches of {args.iterations} iterations timed on rank 0 between "
            f"barriers after {args.warmup} untimed; vs AxB = examples/s / examples/s of A proc x "
            "B thr"
        )
        tables.append(common.format_table("processes", notes, columns, process_rows,
                                          process_environment(process_rows[0])))
    if "growth" in args.tables:
        growth: list[dict] = []
        fits = []
        for one in series:
            series_rows = growth_rows(one, steps=args.steps, repeats=args.repeats, warmup=1,
                                      seed=args.seed)
            growth += series_rows
            fits.append(fit_row(series_rows))
        env = common.environment(common.Timing(
            n_steps=growth[0]["n_steps"], step_size=0.0, repeats=args.repeats,
            warmup=args.warmup, device=torch.device("cpu"), seed=args.seed))
        growth = [{**row, **env} for row in growth]
        fits = [{**row, **env} for row in fits]
        rows += growth + fits
        notes = (
            "one process, Trainer.step with the quick configs' settings (one chain per example); "
            f"median ms over {args.repeats} interleaved repeats after 1 untimed; "
            "fit ms = a * size^b on the logs"
        )
        tables.append(common.format_table("growth", notes, GROWTH_COLUMNS, growth, env))
        tables.append("\n".join(
            [" ".join(f"{c.title:{c.align}}" for c in FIT_COLUMNS)]
            + [" ".join(c.cell(row) for c in FIT_COLUMNS) for row in fits]))
    tables.append(f"# {time.perf_counter() - started:.0f} s")
    common.report("\n\n".join(tables), rows, args)
    return 0


def process_environment(row: dict) -> dict:
    """The table header's environment for the processes table (the workers', not this
    process's: the thread count is per setup)."""
    return {
        "device": "cpu",
        "torch": row["torch"],
        "threads": "1 or 2",
        "omp_wait_policy": row["omp_wait_policy"],
        "omp_wait_policy_set_by_script": True,
        "cpu_count": row["cpu_count"],
    }


if __name__ == "__main__":
    status = main()
    if "--worker" in sys.argv[1:]:
        # A launched worker leaves without the interpreter's teardown: with torch loaded it
        # takes 1-2 s of CPU here, which every launch would pay (the timing is written and the
        # process group is gone by now).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
