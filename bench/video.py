"""Video energies: cost of a Langevin step and a training iteration, stgconv against eager loops.

For every video preset in ``--nets`` (``st_small`` and ``fc_s_small`` on CPU clips by default;
the papers' ``st`` and ``fc_s`` with ``--paper``, meant for a GPU) this times, in one process,
each pair with its repeats interleaved (A B, B A, ...) so that load from other processes hits
both alike:

- one Langevin step: ``Langevin(n_steps=K, step_size=d, clamp=(-1, 1)).run`` against the
  ten-line loop :func:`bench.common.eager_langevin`, on the same energy;
- one training iteration: ``stgconv.train.Trainer.step`` with persistent chains (K Langevin
  steps on the chains, then ``mean E(data) - mean E(samples)``, backward, one Adam step) against
  the same iteration written out by hand (:func:`eager_training_iteration`), each on its own copy
  of the same network, data and chains.

It reports median ms per step and per iteration, the GFLOP/s of a step (FLOPs of one energy
forward + input-gradient backward, counted by ``torch.utils.flop_counter.FlopCounterMode``) and
the ratios eager / stgconv.

Run from the repository root::

    python -m bench.video                             # CPU table, small presets
    python -m bench.video --paper --device cuda       # the papers' sizes, on a GPU
    python -m bench.video --quick --json /tmp/v.json  # smoke run, seconds
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import copy
import math
import sys
from typing import Sequence

import torch
from torch import Tensor

from stgconv.config import TrainConfig
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.video import VIDEO_ARCHS, frame_size_for, video_energy
from stgconv.mcmc import Langevin, NoiseInit, PersistentChains
from stgconv.train import Trainer

SMALL_NETS = ["st_small", "fc_s_small"]
# Paper-scale clips, 100 x 100 frames: 70 of them for ST (its synthesis clips), 32 for FC_S.
PAPER_NETS = ["st", "fc_s"]
PAPER_FRAMES = {"st": 70, "fc_s": 32}
PAPER_SIZE = 100
BETAS = (0.5, 0.999)  # Trainer's default, given to both training loops


def eager_training_iteration(
    energy: ConvNetEnergy,
    optimizer: torch.optim.Optimizer,
    data: Tensor,
    chains: Tensor,
    *,
    n_steps: int,
    step_size: float,
    generator: torch.Generator,
) -> Tensor:
    """The reference: one persistent-chain training iteration written out by hand.

    ``data`` and ``chains`` are ``(N, C, T, H, W)``; the chains of the whole (shuffled) dataset
    are sampled and written back in place. Consumes ``generator`` in the order ``Trainer.step``
    does, so both make the same updates. Returns the loss.
    """
    indices = torch.randperm(data.shape[0], generator=generator, device=generator.device)
    indices = indices.to(data.device)
    x_pos = data[indices]
    x_neg = common.eager_langevin(
        energy, chains[indices], n_steps=n_steps, step_size=step_size, generator=generator
    )
    chains[indices] = x_neg
    loss = energy(x_pos).mean() - energy(x_neg).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_trainer(energy: ConvNetEnergy, data: Tensor, chains0: Tensor, timing: common.Timing,
                 *, lr: float) -> Trainer:
    """The Trainer that :func:`training_stats` times: persistent chains starting at ``chains0``,
    one batch of all ``N`` examples, Adam ``(lr, BETAS)``."""
    persistent = PersistentChains(data.shape[0], NoiseInit())
    persistent.load_state_dict({"chains": chains0.unsqueeze(1)})  # (N, chains_per_example=1, *S)
    sampler = Langevin(n_steps=timing.n_steps, step_size=timing.step_size, clamp=common.CLAMP,
                       precision=timing.precision)
    return Trainer(energy, sampler, persistent, data,
                   train=TrainConfig(batch_size=data.shape[0], lr=lr, betas=BETAS),
                   generator=torch.Generator(timing.device).manual_seed(timing.seed))


def training_stats(
    energy: ConvNetEnergy,
    data: Tensor,
    chains0: Tensor,
    timing: common.Timing,
    *,
    iterations: int,
    lr: float,
) -> dict:
    """Both training loops from the same network, data ``(N, *S)`` and chains ``(N, *S)``, each
    timed run ``iterations`` iterations, repeats interleaved."""
    trainer = make_trainer(copy.deepcopy(energy), data, chains0, timing, lr=lr)
    eager_energy, eager_chains = copy.deepcopy(energy), chains0.clone()
    eager_optimizer = torch.optim.Adam(eager_energy.parameters(), lr=lr, betas=BETAS)
    eager_generator = torch.Generator(timing.device).manual_seed(timing.seed)

    def run_trainer() -> None:
        for _ in range(iterations):
            trainer.step()

    def run_eager() -> None:
        for _ in range(iterations):
            eager_training_iteration(
                eager_energy, eager_optimizer, data, eager_chains,
                n_steps=timing.n_steps, step_size=timing.step_size, generator=eager_generator,
            )

    seconds, _ = common.interleaved(
        {"stgconv": run_trainer, "eager": run_eager},
        repeats=timing.repeats, warmup=timing.warmup, device=timing.device,
    )
    ms = {name: [1e3 * t / iterations for t in ts] for name, ts in seconds.items()}
    speedup, paired = common.speedups(ms)
    return {
        "iterations": iterations,
        "lr": lr,
        **common.timing_summary(ms, "iteration"),
        "iteration_speedup_vs_eager": speedup,
        "iteration_speedup_paired": paired,
        # Same start, same random stream, same number of iterations: both loops must have
        # drawn the same chains (up to float rounding) and made the same updates. Not the
        # largest weight difference: Adam divides by the gradient's size, so a weight whose
        # gradient is ~0 moves by up to lr either way on a rounding difference (measured: 74 of
        # fc_s's 45M weights), while the update as a whole agrees to ~1e-5.
        "iteration_max_abs_diff": float((trainer.chains.chains[:, 0] - eager_chains).abs().max()),
        "iteration_update_rel_diff": relative_difference(energy, trainer.energy, eager_energy),
    }


def relative_difference(start: ConvNetEnergy, a: ConvNetEnergy, b: ConvNetEnergy) -> float:
    """``|theta_a - theta_b| / |theta_a - theta_start|`` over all parameters (L2 norms)."""
    with torch.no_grad():
        flat = [torch.cat([p.flatten() for p in net.parameters()]) for net in (start, a, b)]
        return float((flat[1] - flat[2]).norm() / (flat[1] - flat[0]).norm())


def bench_net(
    net: str,
    *,
    batch: int,
    channels: int,
    frames: int,
    size: int,
    timing: common.Timing,
    iterations: int,
    lr: float,
) -> dict:
    """One table row: the Langevin step pair, then the training iteration pair, on one preset."""
    torch.manual_seed(timing.seed)  # the network's initial weights
    energy = video_energy(net, in_channels=channels,
                          frame_size=frame_size_for(net, size)
                          ).to(timing.device)
    shape = (batch, channels, frames, size, size)
    generator = torch.Generator().manual_seed(timing.seed)
    x0 = (torch.rand(shape, generator=generator) * 2 - 1).to(timing.device)
    data = (torch.rand(shape, generator=generator) * 2 - 1).to(timing.device)  # "observed" clips
    return {
        "net": net,
        "batch": batch,
        "shape": list(shape),
        **common.langevin_step_stats(energy, x0, timing),
        **training_stats(energy, data, x0, timing, iterations=iterations, lr=lr),
    }


COLUMNS = [
    *common.STEP_COLUMNS,
    common.Column("stgconv ms/iter", "ms_per_iteration", ">15", ".2f"),
    common.Column("eager ms/iter", "eager_ms_per_iteration", ">13", ".2f"),
    common.Column("iter speedup", "iteration_speedup_vs_eager", ">12", ".2f", "x"),
    common.Column("iter paired", "iteration_speedup_paired", ">11", ".2f", "x"),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument(
        "--nets", nargs="+", choices=list(VIDEO_ARCHS), default=None,
        help=f"default: {' '.join(SMALL_NETS)} ({' '.join(PAPER_NETS)} with --paper)",
    )
    parser.add_argument("--batch", type=int, default=None, help="clips (default 2, --paper 1)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument(
        "--frames", type=int, default=None,
        help="T (default 16; --paper: "
        f"{PAPER_FRAMES['st']} for st, {PAPER_FRAMES['fc_s']} for fc_s)",
    )
    parser.add_argument(
        "--size", type=int, default=None,
        help=f"H = W of the frames (default 64, --paper {PAPER_SIZE})",
    )
    common.add_timing_arguments(parser, steps=5, repeats=9)
    parser.add_argument(
        "--iterations", type=int, default=1, help="training iterations per timed run"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (both loops)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--paper", action="store_true",
        help="the papers' clips: st at 3x70x100x100, fc_s at 3x32x100x100, batch 1 (for a GPU)",
    )
    sizes.add_argument(
        "--quick", action="store_true",
        help="smoke run: st_small and fc_s_small at 1x3x12x32x32, K 2, 1 repeat (options "
             "given explicitly win)",
    )
    args = common.parse_arguments(
        parser, argv, quick={"batch": 1, "frames": 12, "size": 32, "steps": 2, "repeats": 1}
    )
    if args.nets is None:
        args.nets = PAPER_NETS if args.paper else SMALL_NETS
    if args.batch is None:
        args.batch = 1 if args.paper else 2
    given = [name for name in ("frames", "size") if getattr(args, name) is not None]
    timing = common.check_arguments(
        parser, args, ["batch", "channels", "steps", "iterations", "repeats", *given]
    )
    if not 0 < args.lr < math.inf:  # NaN too; inf: the training step's traceback
        parser.error(f"--lr must be a positive number, got {args.lr}")

    clips = {}  # net -> (frames, size)
    for net in args.nets:  # before any is timed: only these errors are refusals
        paper = args.paper and net in PAPER_FRAMES
        frames = args.frames or (PAPER_FRAMES[net] if paper else 16)
        size = args.size or (PAPER_SIZE if paper else 64)
        try:
            video_energy(net, in_channels=args.channels,
                         frame_size=frame_size_for(net, size)
                         ).check_size((frames, size, size))
        except ValueError as err:  # e.g. clips below the net's receptive field
            parser.error(f"{net} at {frames}x{size}x{size}: {err}")
        clips[net] = frames, size

    env = common.environment(timing)
    rows = [{**bench_net(net, batch=args.batch, channels=args.channels, frames=frames,
                         size=size, timing=timing, iterations=args.iterations, lr=args.lr),
             **env} for net, (frames, size) in clips.items()]
    notes = (
        f"K = {timing.n_steps} Langevin steps per timed run and per training iteration; medians "
        "over interleaved repeats; GFLOP/s = (forward + input-grad FLOPs) / stgconv ms/step; "
        "speedup = eager / stgconv; paired = median of per-repeat ratios"
    )
    table = common.format_table(
        "Video Langevin step and training iteration cost", notes, COLUMNS, rows, env
    )
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
