"""Langevin step cost of the image energies: stgconv's sampler against a plain eager loop.

For every image preset (``texture``, ``object``, ``descriptor64``) this times
``Langevin(n_steps=K, step_size=d, clamp=(-1, 1)).run(energy, x0, generator=g)`` and the
ten-line loop a user would write by hand (:func:`bench.common.eager_langevin`) on the same
energy, in the same process, with their repeats interleaved (A B A B ...) so that load from other
processes on a shared machine hits both alike. It reports the median ms per step, the GFLOP/s
that implies (FLOPs of one energy forward + input-gradient backward, counted by
``torch.utils.flop_counter.FlopCounterMode``) and ``speedup_vs_eager = eager_ms / stgconv_ms``.

Run from the repository root::

    python -m bench.langevin                      # full table
    python -m bench.langevin --quick --json /tmp/x.json   # smoke run, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import sys
from typing import Sequence

import torch

from stgconv.energy.image import IMAGE_PRESETS, image_energy


def bench_net(net: str, *, batch: int, channels: int, size: int, timing: common.Timing) -> dict:
    """One table row: both variants on one preset, repeats interleaved."""
    torch.manual_seed(timing.seed)  # the network's initial weights
    energy = image_energy(net, in_channels=channels, image_size=size).to(timing.device)
    x0 = torch.rand(
        batch, channels, size, size, generator=torch.Generator().manual_seed(timing.seed)
    ).to(timing.device) * 2 - 1
    return {
        "net": net,
        "batch": batch,
        "shape": [batch, channels, size, size],
        **common.langevin_step_stats(energy, x0, timing),
    }


NOTES = (
    "medians over interleaved repeats; GFLOP/s = (forward + input-grad FLOPs) / stgconv "
    "ms/step; speedup = eager / stgconv ms/step; paired = median of per-repeat ratios"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument(
        "--nets", nargs="+", choices=sorted(IMAGE_PRESETS),
        default=["texture", "object", "descriptor64"],
        help="image presets at full size (the multi-grid 4x4/16x16 nets are benched in "
             "multigrid.py)",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="H = W of the images")
    common.add_timing_arguments(parser, steps=5, repeats=9)
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke run: batch 2, size 64, K 3, 1 repeat (options given explicitly win)",
    )
    args = common.parse_arguments(
        parser, argv, quick={"batch": 2, "size": 64, "steps": 3, "repeats": 1}
    )
    timing = common.check_arguments(
        parser, args, ["batch", "channels", "size", "steps", "repeats"]
    )
    for net in args.nets:  # before any is timed: only these errors are refusals
        try:
            image_energy(net, in_channels=args.channels, image_size=args.size).check_size(
                (args.size, args.size))
        except ValueError as err:  # e.g. a --size below the net's receptive field
            parser.error(f"{net} at {args.size}x{args.size}: {err}")

    env = common.environment(timing)
    rows = [{**bench_net(net, batch=args.batch, channels=args.channels, size=args.size,
                         timing=timing), **env} for net in args.nets]
    title = f"Langevin step cost (stgconv in {timing.precision})"
    table = common.format_table(title, NOTES, common.STEP_COLUMNS, rows, env)
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
