"""How a Langevin chain evaluates its energy network: the arithmetic (fp32 or bfloat16 autocast)
and the memory layout, chosen per net, input shape and device when left to ``"auto"``.

bfloat16 changes the chain: its gradient differs from fp32's by a few percent (4-9% of the
learned part's gradient on the reference nets). Over ``K`` steps the chain adds Gaussian noise
of norm about ``s * delta * sqrt(K * D)`` (``D`` entries per chain); a bfloat16 gradient error
``dg`` that kept one direction at every step would move it by ``K * (delta^2 / 2) * |dg|``.
Their ratio,

    ``chain_error = sqrt(K) * delta * |dg| / (2 * s * sqrt(D))``,

is the worst-case share of the chain's own randomness that bfloat16 can take. And bfloat16 does
not always pay: emulated on a CPU without bfloat16 instructions it was 8.6-36x slower than fp32,
and on an H200 the small reference nets, whose steps are mostly kernel launches, ran 0.2-0.8x
as fast with it while the paper-size ``fc_s`` ran 2.3x faster (``bench/README.md``). So
``"auto"`` measures: where a CUDA device computes in bfloat16 natively and ``chain_error`` stays
under :data:`BF16_CHAIN_ERROR` for every chain at the chain's start, it times one energy
gradient in fp32 and in bfloat16 (each layout on CUDA) and takes bfloat16 only when it is at
least :data:`BF16_MIN_SPEEDUP` times faster. The verdict is kept per energy, input shape and
device, and made again every :data:`RECHECK_EVERY` runs because training moves the weights.

On a CPU ``"auto"`` is always fp32 (:func:`auto_may_use_bfloat16`), even with native bfloat16.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from stgconv.checks import refuse_inference_mode
from stgconv.mcmc.base import energy_and_grad, per_chain_entries
from stgconv.types import EnergyFn

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CHAIN_ERROR = 0.1
BF16_MIN_SPEEDUP = 1.1
RECHECK_EVERY = 64


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: CUDA from compute capability 8.0,
    a CPU with bfloat16 instructions (AVX512-BF16 or AMX) as oneDNN reports it. Without it,
    bfloat16 autocast is emulated, and much slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False  # other backends: no known way to ask, so "auto" stays with fp32


def auto_may_use_bfloat16(device: torch.device) -> bool:
    """Whether ``"auto"`` considers bfloat16 on ``device``: CUDA with native bfloat16 only.

    A CPU with bfloat16 instructions (AVX512-BF16 on this project's AMD EPYC machine) ran the
    reference nets' energy gradients 1.3-1.9x faster in bfloat16 (descriptor64, texture,
    st_small; one thread). But a verdict resting on timings, checked again every
    :data:`RECHECK_EVERY` runs, gives one seed different chains from run to run, and a resumed
    run different chains from an uninterrupted one: CPU runs keep the bit-exact resume they
    promise, and a user who wants the speed asks for ``precision="bf16"``.
    """
    return device.type == "cuda" and native_bfloat16(device)


def channels_last_format(x: Tensor) -> torch.memory_format | None:
    """The channels-last layout for an image ``(B, C, H, W)`` or volume ``(B, C, D, H, W)`` batch
    on CUDA, the layout of cuDNN's tensor-core convolutions (``"auto"`` times it); ``None``
    elsewhere (on the CPU it was 0.56-1.00x, bench/README.md)."""
    if x.device.type != "cuda":
        return None
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())


def bf16_chain_error(
    energy: EnergyFn, x: Tensor, *, step_size: float, n_steps: int, noise_scale: float
) -> Tensor:
    """``(B,)`` worst-case share of a chain's accumulated noise that bfloat16's gradient error
    at ``x`` ``(B, *S)`` can take over ``n_steps`` steps (the module's docstring derives it);
    ``inf`` without noise, where nothing hides the error."""

    def gradient(bf16: bool) -> Tensor:
        # The chain's own evaluation, with its checks: this comes first in an "auto" run, and
        # an energy of the wrong shape or without a gradient in x failed here in autograd.
        _, grad = energy_and_grad(energy, x.detach().requires_grad_(True), bf16=bf16)
        return per_chain_entries(grad.detach().float())  # chains (B,) and (0, ...) too

    difference = (gradient(True) - gradient(False)).norm(dim=1)
    if noise_scale == 0:
        return torch.full_like(difference, math.inf)
    entries = math.prod(x.shape[1:])  # x[0] of an empty batch is out of range
    return math.sqrt(n_steps) * step_size * difference / (2 * noise_scale * math.sqrt(entries))


@dataclass(frozen=True)
class Execution:
    """How a run evaluates the network: under bfloat16 autocast or not, and in which layout
    (``None``: as the chain comes)."""

    bf16: bool = False
    layout: torch.memory_format | None = None


FP32 = Execution()


def gradient_seconds(energy: EnergyFn, x: Tensor, execution: Execution, *, repeats: int = 3
                     ) -> float:
    """Median seconds of one energy gradient at ``x`` ``(B, *S)`` run as ``execution``, after
    one untimed call (lazy initialisation, algorithm choice)."""
    inputs = x.detach() if execution.layout is None else x.detach().contiguous(
        memory_format=execution.layout)
    seconds = []
    for _ in range(repeats + 1):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        started = time.perf_counter()
        inputs.requires_grad_(True)
        with torch.enable_grad():  # as bf16_chain_error's
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=execution.bf16):
                e = energy(inputs)
            torch.autograd.grad(e.sum(), inputs)
        inputs.requires_grad_(False)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


@dataclass
class _Verdict:
    execution: Execution
    runs_until_check: int


def verdict_owner(energy: EnergyFn) -> tuple[object, tuple[str, ...]]:
    """The long-lived object whose ``"auto"`` verdicts ``energy`` shares, and how it wraps that
    object. Energies made afresh per run share their network's, else every run would be checked
    again, with its timed runs: class-conditional ones (a ``functools.partial`` of a bound
    method, :meth:`ClassifierEnergy.conditional`, new at every training step, or of the module
    itself) and wrappers that are not modules but keep the energy they evaluate as ``.energy``
    (recovery's ``Preconditioned``, new at every move). A bound method (``model.energy``, new
    at every attribute read) shares its object's: passed as it was, a module's batch
    normalisation in training mode went unseen, and its chains sampled no energy of their
    own."""
    wrapping: list[str] = []
    # The objects passed through, kept alive so that no identity is reused: an object of the
    # caller's own (no module) that evaluates its energy by its own ``energy`` method led from
    # itself to that method and back for ever, and the sampler hung before its first step.
    passed: list[object] = []
    while not any(energy is seen for seen in passed):
        passed.append(energy)
        if inspect.ismethod(energy):
            wrapping.append(energy.__func__.__name__)
            energy = energy.__self__
        elif isinstance(energy, partial) and inspect.ismethod(energy.func):
            wrapping.append(energy.func.__name__)
            energy = energy.func.__self__
        elif isinstance(energy, partial) and isinstance(energy.func, torch.nn.Module):
            # The module's, as a partial of its method is: partial(model, y=3) sampled past its
            # batch normalisation in training mode where partial(model.forward, y=3) was refused.
            energy = energy.func
        elif not isinstance(energy, torch.nn.Module) and callable(getattr(energy, "energy", None)):
            wrapping.append(type(energy).__name__)
            energy = energy.energy
        else:
            break
    return energy, tuple(wrapping)


def _batch_normalises(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _drops_units(module: nn.Module) -> bool:
    """A dropout layer, or attention or a stacked recurrent net given a dropout rate, which they
    apply themselves in training mode (no dropout layer inside them to find): a transformer's
    ``nn.MultiheadAttention(dropout=0.1)`` made its chains move on a random energy unseen."""
    if isinstance(module, nn.MultiheadAttention):
        return module.dropout > 0
    if isinstance(module, nn.RNNBase):  # dropped between its layers only
        return module.dropout > 0 and module.num_layers > 1
    return isinstance(module, nn.modules.dropout._DropoutNd)


# What makes a module in training mode no energy of each chain alone, by the layer's kind.
_TRAINING_MODE_LAYERS = (
    (_batch_normalises,
     "its batch statistics make each chain's energy depend on the other chains, and every "
     "evaluation moves its running statistics"),
    (_drops_units,
     "it drops other units at every evaluation, so the chains move on a random energy "
     "(and a Metropolis test compares two different ones)"),
)


def check_chains_independent(energy: EnergyFn, sampler: str) -> None:
    """``ValueError`` naming ``sampler`` and the layer when ``energy`` is a module (or wraps one,
    as :func:`verdict_owner` finds it) with batch normalisation or dropout in training mode: a
    module is in training mode until ``.eval()``, and the sampler then drew, without a word,
    from no fixed energy of each chain. Batch normalisation without running statistics
    (``track_running_stats=False``) is refused in eval mode too: it normalises by the batch's."""
    owner, _ = verdict_owner(energy)
    if not isinstance(owner, nn.Module):
        return
    for name, module in owner.named_modules():
        for applies, why in _TRAINING_MODE_LAYERS:
            if module.training and applies(module):
                raise ValueError(f"{sampler}: the energy's {type(module).__name__} layer "
                                 f"{name!r} is in training mode, where {why}: call .eval() on "
                                 "the energy before sampling, or leave the layer out")
        # Without running statistics batch norm normalises by the batch's in eval mode too.
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
            raise ValueError(f"{sampler}: the energy's {type(module).__name__} layer {name!r} "
                             "keeps no running statistics (track_running_stats=False), so even "
                             "in eval mode its batch statistics make each chain's energy depend "
                             "on the other chains: build it with track_running_stats=True, or "
                             "leave the layer out")


class AutoExecution:
    """Remembers, per energy (weakly: a dropped energy takes its entries with it), input shape
    and device, what the check chose, and checks again every ``recheck_every`` runs."""

    def __init__(self, *, tolerance: float = BF16_CHAIN_ERROR,
                 min_speedup: float = BF16_MIN_SPEEDUP, recheck_every: int = RECHECK_EVERY
                 ) -> None:
        self.tolerance = tolerance
        self.min_speedup = min_speedup
        self.recheck_every = recheck_every
        self._verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def choose(
        self, energy: EnergyFn, x: Tensor, *, step_size: float, n_steps: int, noise_scale: float
    ) -> Execution:
        """How the chain from ``x`` ``(B, *S)`` should evaluate the network."""
        # A float64 chain asked for more precision than fp32, not less.
        if not auto_may_use_bfloat16(x.device) or x.dtype != torch.float32 or noise_scale == 0:
            return FP32
        owner, wrapping = verdict_owner(energy)
        try:
            per_energy = self._verdicts.setdefault(owner, {})
        except TypeError:  # an energy that cannot be weakly referenced: check every run
            per_energy = {}
        key = (wrapping, tuple(x.shape[1:]), x.dtype, str(x.device))
        verdict = per_energy.get(key)
        if verdict is None or verdict.runs_until_check == 0:
            verdict = _Verdict(self._check(energy, x, step_size=step_size, n_steps=n_steps,
                                           noise_scale=noise_scale), self.recheck_every)
            per_energy[key] = verdict
        verdict.runs_until_check -= 1
        return verdict.execution

    def _check(self, energy: EnergyFn, x: Tensor, *, step_size: float, n_steps: int,
               noise_scale: float) -> Execution:
        # As the chain's own steps refuse it, before the check's gradients fail in autograd.
        refuse_inference_mode("sampling needs the energy's gradient", "sample")
        error = bf16_chain_error(energy, x, step_size=step_size, n_steps=n_steps,
                                 noise_scale=noise_scale)
        # One host sync per check, not per step: the verdict steers the whole run.
        if not bool((error <= self.tolerance).all()):
            return FP32
        candidates = [Execution(bf16=True)]
        layout = channels_last_format(x)
        if layout is not None:
            candidates.append(Execution(bf16=True, layout=layout))
        fp32_seconds = gradient_seconds(energy, x, FP32)
        seconds = {candidate: gradient_seconds(energy, x, candidate) for candidate in candidates}
        fastest = min(seconds, key=seconds.__getitem__)
        return fastest if fp32_seconds >= self.min_speedup * seconds[fastest] else FP32


AUTO = AutoExecution()
