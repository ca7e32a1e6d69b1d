"""What each speed lever gives the Langevin step, one lever at a time, on every reference net.

For each net it times, interleaved in one process, K steps of:

- ``eager``: the plain fp32 loop written out by hand (``common.eager_langevin``), the reference;
- ``default``: ``stgconv.Langevin`` as a config with no precision key runs it (``"auto"``:
  fp32 on a device without native bfloat16; a CUDA graph on CUDA);
- ``fp32``: ``Langevin(precision="fp32", cuda_graph=False)``, the library's plain loop; every
  lever below is this plus one change;
- ``cuda_graph`` (CUDA only): the steps replayed as one captured CUDA graph;
- ``channels_last``: the same with the net's weights and the chains in ``channels_last``
  (``channels_last_3d`` for 5-D inputs);
- ``bf16``: ``Langevin(precision="bf16")``, the net under bfloat16 autocast;
- ``bf16+channels_last``: both;
- ``compile`` (with ``--compile``): the energy wrapped in ``torch.compile`` (fp32); its first
  call's seconds are reported as ``compile_s``.

Every variant runs from the same start with the same noise stream. For the variants that change
the arithmetic, the errors of the learned part ``f`` (``ConvNetEnergy.response``; the Gaussian
reference term is exact in every variant and would hide them) against fp32 at the start are
reported: ``response_rel_err``, max over the batch of ``|f - f_fp32| / |f_fp32|``, and
``grad_rel_err``, max over the batch of ``|grad f - grad f_fp32| / |grad f_fp32|`` (L2), so a
lever's speed can be weighed against what it changes.

    python -m bench.levers --json levers.json
    python -m bench.levers --nets texture --compile
    python -m bench.levers --quick --json /tmp/levers.json   # smoke run
"""

from __future__ import annotations

# First, before torch: it sets OMP_WAIT_POLICY, which libgomp reads when torch loads it.
from bench import common  # isort: skip

import copy
import statistics
import time
from functools import partial
from typing import Callable, Sequence

import torch
from torch import Tensor

from stgconv.config import ModelConfig
from stgconv.mcmc import Langevin
from stgconv.modalities import IMAGE, VIDEO, VOXELS, Modality

# net -> (modality, input shape (B, C, *S)): the image nets at the bench/langevin.py setting,
# the small video presets at bench/video.py's, the small voxel preset at 32^3.
NETS: dict[str, tuple[Modality, tuple[int, ...]]] = {
    "texture": (IMAGE, (16, 3, 64, 64)),
    "object": (IMAGE, (16, 3, 64, 64)),
    "descriptor64": (IMAGE, (16, 3, 64, 64)),
    "st_small": (VIDEO, (2, 3, 16, 64, 64)),
    "fc_s_small": (VIDEO, (2, 3, 16, 64, 64)),
    "desc32_small": (VOXELS, (8, 1, 32, 32, 32)),
}
QUICK_SHAPES = {"texture": (2, 3, 64, 64), "st_small": (1, 3, 4, 16, 16),
                "desc32_small": (2, 1, 16, 16, 16)}


def build(net: str, shape: tuple[int, ...], seed: int, device: torch.device
          ) -> tuple[torch.nn.Module, Tensor]:
    modality, _ = NETS[net]
    torch.manual_seed(seed)
    energy = modality.energy(ModelConfig(arch=net, in_channels=shape[1], image_size=shape[-1]))
    x0 = torch.rand(shape, generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    return energy.to(device), x0.to(device)


def relative_errors(energy: torch.nn.Module, x: Tensor, *, bf16: bool, channels_last: bool
                    ) -> dict[str, float]:
    """Errors of the learned part ``f`` and of its input gradient against fp32 at ``x``."""

    def energy_and_grad(model: torch.nn.Module, inputs: Tensor, autocast: bool
                        ) -> tuple[Tensor, Tensor]:
        inputs = inputs.detach().requires_grad_(True)
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=autocast):
            e = model.response(inputs).float()
        (g,) = torch.autograd.grad(e.sum(), inputs)
        return e.detach().double(), g.detach().double().flatten(1)

    e_ref, g_ref = energy_and_grad(energy, x, False)
    variant, inputs = energy, x
    if channels_last:
        variant, inputs = to_channels_last(energy, x)
    e, g = energy_and_grad(variant, inputs, bf16)
    return {"response_rel_err": ((e - e_ref).abs() / e_ref.abs().clamp(min=1e-12)).max().item(),
            "grad_rel_err": ((g - g_ref).norm(dim=1)
                             / g_ref.norm(dim=1).clamp(min=1e-12)).max().item()}


def to_channels_last(energy: torch.nn.Module, x: Tensor) -> tuple[torch.nn.Module, Tensor]:
    """A copy of the net and the input in ``channels_last`` (``_3d`` for 5-D inputs)."""
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return copy.deepcopy(energy).to(memory_format=fmt), x.contiguous(memory_format=fmt)


def run_chain(chain: Callable[..., Tensor], energy: Callable[[Tensor], Tensor], x0: Tensor,
              generator: torch.Generator, seed: int) -> Tensor:
    """``chain(energy, x0, generator=...)`` with the noise stream of ``seed`` every time, the
    same for every variant: one generator per variant, re-seeded (a kept CUDA graph is tied to
    its generator object, as in training, where one generator serves every iteration)."""
    return chain(energy, x0, generator=generator.manual_seed(seed))


def bench_net(net: str, shape: tuple[int, ...], timing: common.Timing, *, compile_: bool
              ) -> list[dict]:
    energy, x0 = build(net, shape, timing.seed, timing.device)
    k, delta = timing.n_steps, timing.step_size
    noise_seed = timing.seed + 2  # a stream apart from the weights' (seed) and x0's (seed + 1)

    def library(model: Callable[[Tensor], Tensor], start: Tensor, precision: str,
                cuda_graph: bool = False) -> Callable[[], Tensor]:
        sampler = Langevin(n_steps=k, step_size=delta, clamp=common.CLAMP, precision=precision,
                           cuda_graph=cuda_graph)
        return partial(run_chain, sampler.run, model, start, torch.Generator(start.device),
                       noise_seed)

    last_energy, last_x0 = to_channels_last(energy, x0)
    runs: dict[str, Callable[[], Tensor]] = {
        "eager": partial(run_chain, partial(common.eager_langevin, n_steps=k, step_size=delta),
                         energy, x0, torch.Generator(x0.device), noise_seed),
        "default": library(energy, x0, "auto", cuda_graph=True),
        "fp32": library(energy, x0, "fp32"),
        "channels_last": library(last_energy, last_x0, "fp32"),
        "bf16": library(energy, x0, "bf16"),
        "bf16+channels_last": library(last_energy, last_x0, "bf16"),
    }
    if timing.device.type == "cuda":
        runs["cuda_graph"] = library(energy, x0, "fp32", cuda_graph=True)
    compile_s: dict[str, float] = {}
    if compile_:
        # On CUDA also "reduce-overhead": the compiled forward and backward replayed as CUDA
        # graphs, for the small nets whose steps are mostly kernel-launch time there.
        modes = {"compile": "default"}
        if timing.device.type == "cuda":
            modes["compile_graphs"] = "reduce-overhead"
        for name, mode in modes.items():
            compiled = torch.compile(energy, mode=mode)
            started = time.perf_counter()
            library(compiled, x0, "fp32")()
            common.synchronize(timing.device)
            compile_s[name] = time.perf_counter() - started
            runs[name] = library(compiled, x0, "fp32")
    auto = Langevin(n_steps=k, step_size=delta).execution(energy, x0)
    seconds, _ = common.interleaved(runs, repeats=timing.repeats, warmup=timing.warmup,
                                    device=timing.device)
    ms = {name: 1e3 * statistics.median(s) / k for name, s in seconds.items()}
    rows = []
    for name in runs:
        row = {"net": net, "variant": name, "shape": list(shape), "n_steps": k,
               "ms_per_step": ms[name], "speedup_vs_eager": ms["eager"] / ms[name],
               "speedup_vs_default": ms["default"] / ms[name], "response_rel_err": 0.0,
               "grad_rel_err": 0.0, "compile_s": compile_s.get(name)}
        bf16 = name.startswith("bf16") or (name == "default" and auto.bf16)
        channels_last = "channels_last" in name or (
            name == "default" and auto.layout is not None)
        row["ran_in"] = common.describe_execution(auto) if name == "default" else (
            "bf16" if bf16 else "fp32")
        if bf16 or channels_last:
            row.update(relative_errors(energy, x0, bf16=bf16, channels_last=channels_last))
        rows.append(row)
    return rows


COLUMNS = [
    common.Column("net", "net", "<13"),
    common.Column("variant", "variant", "<19"),
    common.Column("ran in", "ran_in", "<18"),
    common.Column("ms/step", "ms_per_step", ">9", ".1f"),
    common.Column("vs eager", "speedup_vs_eager", ">9", ".2f", "x"),
    common.Column("vs default", "speedup_vs_default", ">11", ".2f", "x"),
    common.Column("f err", "response_rel_err", ">9", ".1e"),
    common.Column("grad err", "grad_rel_err", ">9", ".1e"),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=None,
                        help=f"default: all ({', '.join(QUICK_SHAPES)} with --quick)")
    parser.add_argument("--compile", dest="compile_", action="store_true",
                        help="also time torch.compile of the energy (compiles once per net)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny shapes of {', '.join(QUICK_SHAPES)}: a smoke run")
    common.add_timing_arguments(parser, steps=5, repeats=5, precision=False)
    args = parser.parse_args(argv)
    timing = common.check_arguments(parser, args, ("steps", "repeats"))
    nets = args.nets or list(QUICK_SHAPES if args.quick else NETS)
    unsized = [net for net in nets if args.quick and net not in QUICK_SHAPES]
    if unsized:
        parser.error(f"--quick has tiny shapes for {', '.join(QUICK_SHAPES)} only, not "
                     f"{', '.join(unsized)}")
    rows = []
    for net in nets:
        shape = QUICK_SHAPES[net] if args.quick else NETS[net][1]
        rows += [{**row, **common.environment(timing)}
                 for row in bench_net(net, shape, timing, compile_=args.compile_)]
    table = common.format_table(
        "Langevin step, one lever at a time",
        f"K = {timing.n_steps}; median of {timing.repeats} interleaved repeats; speedups = "
        "ms of eager (or default) / ms of the variant; errors against fp32 at the start",
        COLUMNS, rows, common.environment(timing))
    common.report(table, rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
