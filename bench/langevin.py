"""Langevin step cost of the image energies: stgconv's sampler against a plain eager loop.

For every image preset (``texture``, ``object``, ``descriptor64``) this times
``Langevin(n_steps=K, step_size=d, clamp=(-1, 1)).run(energy, x0, generator=g)`` and the
ten-line loop a user would write by hand (:func:`eager_langevin`) on the same energy, in the
same process, with their repeats interleaved (A B A B ...) so that load from other processes on
a shared machine hits both alike. It reports the median ms per step, the GFLOP/s that implies
(FLOPs of one energy forward + input-gradient backward, counted by
``torch.utils.flop_counter.FlopCounterMode``) and ``speedup_vs_eager = eager_ms / stgconv_ms``.

Run from the repository root::

    PYTHONPATH=. python bench/langevin.py                      # full table
    PYTHONPATH=. python bench/langevin.py --quick --json /tmp/x.json   # smoke run, seconds
"""

from __future__ import annotations

import os
import sys

# Measured on 2 shared CPU cores: OpenMP worker threads that spin while idle (libgomp's
# default) fight other processes and each other for the cores, which made every step 1.5-3.4x
# slower and the timings erratic. libgomp reads OMP_WAIT_POLICY once, when `import torch` loads
# it, so setting it here, before that import, is enough (no re-exec needed); an explicit value
# in the environment wins. When main() is called in a process that has already imported torch
# (a test), setting it would change nothing, so the inherited policy is left and reported.
_TORCH_ALREADY_LOADED = "torch" in sys.modules
if not _TORCH_ALREADY_LOADED:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from stgconv.energy.image import IMAGE_PRESETS, image_energy  # noqa: E402
from stgconv.mcmc import Langevin  # noqa: E402
from stgconv.types import EnergyFn  # noqa: E402

CLAMP = (-1.0, 1.0)


def eager_langevin(
    energy: EnergyFn, x0: Tensor, *, n_steps: int, step_size: float, generator: torch.Generator
) -> Tensor:
    """The reference: the Langevin loop written out by hand, ``x0`` ``(B, *S)`` -> ``(B, *S)``."""
    x = x0.detach().clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        e = energy(x)
        (grad,) = torch.autograd.grad(e.sum(), x)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = (x - 0.5 * step_size**2 * grad + step_size * noise).detach().clamp(*CLAMP)
    return x


def stgconv_langevin(
    energy: EnergyFn, x0: Tensor, *, n_steps: int, step_size: float, generator: torch.Generator
) -> Tensor:
    """The library sampler with the same settings as :func:`eager_langevin`."""
    sampler = Langevin(n_steps=n_steps, step_size=step_size, clamp=CLAMP)
    return sampler.run(energy, x0, generator=generator)


Variant = Callable[..., Tensor]
VARIANTS: dict[str, Variant] = {"stgconv": stgconv_langevin, "eager": eager_langevin}


def step_flops(energy: EnergyFn, x: Tensor) -> int:
    """FLOPs of one Langevin step's network work: energy forward + gradient w.r.t. ``x`` only."""
    x = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        e = energy(x)
        # backward(inputs=) prunes to the input gradient just as autograd.grad does;
        # autograd.grad on a leaf trips FlopCounterMode's module hooks (torch 2.14).
        e.sum().backward(inputs=[x])
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_run(
    variant: Variant, energy: EnergyFn, x0: Tensor, *, n_steps: int, step_size: float, seed: int
) -> tuple[float, Tensor]:
    """Seconds for one ``n_steps`` chain run (device-synchronised) and its final state."""
    generator = torch.Generator(device=x0.device).manual_seed(seed)
    synchronize(x0.device)
    start = time.perf_counter()
    x = variant(energy, x0, n_steps=n_steps, step_size=step_size, generator=generator)
    synchronize(x0.device)
    return time.perf_counter() - start, x


def bench_net(
    net: str,
    *,
    batch: int,
    channels: int,
    size: int,
    n_steps: int,
    step_size: float,
    repeats: int,
    warmup: int,
    device: torch.device,
    seed: int,
) -> dict:
    """One table row: both variants on one preset, repeats interleaved."""
    torch.manual_seed(seed)  # the network's initial weights
    energy = image_energy(net, in_channels=channels, image_size=size).to(device)
    x0 = torch.rand(
        batch, channels, size, size, generator=torch.Generator().manual_seed(seed)
    ).to(device) * 2 - 1
    flops = step_flops(energy, x0)

    for _ in range(warmup):
        for variant in VARIANTS.values():
            time_run(variant, energy, x0, n_steps=n_steps, step_size=step_size, seed=seed)

    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    finals: dict[str, Tensor] = {}
    names = list(VARIANTS)
    for rep in range(repeats):
        # Interleaved, the order flipped every repeat (A B, B A, A B, ...): a burst of load from
        # another process lands on neighbouring runs of both variants, and a slow drift in the
        # machine's speed does not always favour the one that runs first.
        for name in names if rep % 2 == 0 else names[::-1]:
            t, finals[name] = time_run(
                VARIANTS[name], energy, x0, n_steps=n_steps, step_size=step_size, seed=seed
            )
            seconds[name].append(t)

    ms = {name: [1e3 * t / n_steps for t in ts] for name, ts in seconds.items()}
    ms_stgconv = statistics.median(ms["stgconv"])
    ms_eager = statistics.median(ms["eager"])
    return {
        "net": net,
        "batch": batch,
        "shape": [batch, channels, size, size],
        "n_steps": n_steps,
        "step_size": step_size,
        "repeats": repeats,
        "ms_per_step": ms_stgconv,
        "eager_ms_per_step": ms_eager,
        # Best-of: on a machine shared with other work, the run least disturbed by it.
        "ms_per_step_min": min(ms["stgconv"]),
        "eager_ms_per_step_min": min(ms["eager"]),
        "ms_per_step_runs": ms["stgconv"],
        "eager_ms_per_step_runs": ms["eager"],
        "gflop_per_step": flops / 1e9,
        "gflops": flops / 1e9 / (ms_stgconv / 1e3),
        "eager_gflops": flops / 1e9 / (ms_eager / 1e3),
        "speedup_vs_eager": ms_eager / ms_stgconv,
        # Median of the per-repeat ratios of the two runs timed back to back: less sensitive
        # to load that changes between repeats than the ratio of the medians above.
        "speedup_paired": statistics.median(
            [e / s for e, s in zip(ms["eager"], ms["stgconv"])]
        ),
        # Same seed, same noise stream: the two chains must agree up to float rounding, which
        # shows both variants did the same work.
        "max_abs_diff": float((finals["stgconv"] - finals["eager"]).abs().max()),
    }


def environment(device: torch.device, threads: int) -> dict:
    return {
        "device": str(device),
        "torch": torch.__version__,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        # False when torch was imported before this module: the policy is then whatever the
        # process started with, and the value above may not be what libgomp read.
        "omp_wait_policy_set_by_script": not _TORCH_ALREADY_LOADED,
        "cpu_count": os.cpu_count(),
    }


def format_table(rows: Sequence[dict], env: dict) -> str:
    if env["omp_wait_policy_set_by_script"]:
        policy = f"OMP_WAIT_POLICY={env['omp_wait_policy']} (the script sets PASSIVE unless given)"
    else:
        policy = f"OMP_WAIT_POLICY={env['omp_wait_policy']} (inherited: torch was loaded first)"
    lines = [
        f"# Langevin step cost, {env['device']}, torch {env['torch']}, {env['threads']} threads, "
        f"{policy}, {env['cpu_count']} CPUs visible",
        "# medians over interleaved repeats; GFLOP/s = (forward + input-grad FLOPs) / stgconv "
        "ms/step; speedup = eager / stgconv ms/step; paired = median of per-repeat ratios",
    ]
    header = (
        f"{'net':<13} {'batch':>5} {'input shape':<18} {'stgconv ms/step':>15} "
        f"{'eager ms/step':>13} {'GFLOP/s':>8} {'speedup':>8} {'paired':>7}"
    )
    lines += [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(
            f"{r['net']:<13} {r['batch']:>5} {shape:<18} {r['ms_per_step']:>15.2f} "
            f"{r['eager_ms_per_step']:>13.2f} {r['gflops']:>8.1f} {r['speedup_vs_eager']:>7.2f}x "
            f"{r['speedup_paired']:>6.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nets", nargs="+", choices=sorted(IMAGE_PRESETS), default=list(IMAGE_PRESETS)
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="H = W of the images")
    parser.add_argument("--steps", type=int, default=5, help="K, Langevin steps per timed run")
    parser.add_argument("--step-size", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per variant first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: batch 2, size 64, K 3, 1 repeat"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.steps, args.repeats = 2, 64, 3, 1
    for name in ("batch", "channels", "size", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    env = environment(device, torch.get_num_threads())
    rows = []
    for net in args.nets:
        row = bench_net(
            net,
            batch=args.batch,
            channels=args.channels,
            size=args.size,
            n_steps=args.steps,
            step_size=args.step_size,
            repeats=args.repeats,
            warmup=args.warmup,
            device=device,
            seed=args.seed,
        )
        rows.append({**row, **env})
    print(format_table(rows, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
