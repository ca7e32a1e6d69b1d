"""How a Langevin chain evaluates its energy network: the arithmetic (fp32 or bfloat16 autocast)
and the memory layout, chosen per net, input shape and device when left to ``"auto"``.

bfloat16 pays only where the hardware computes in it (``bench/README.md``: emulated, it was
8.6-36x slower than fp32), and it changes the chain: its gradient differs from fp32's by a few
percent (4-9% of the learned part's gradient on the reference nets). ``"auto"`` takes it only
where that difference is small against what the chain does anyway. Over ``K`` steps the chain
adds Gaussian noise of norm about ``s * delta * sqrt(K * D)`` (``D`` entries per chain); a
bfloat16 gradient error ``dg`` that kept one direction at every step would move it by
``K * (delta^2 / 2) * |dg|``. Their ratio,

    ``chain_error = sqrt(K) * delta * |dg| / (2 * s * sqrt(D))``,

is the worst-case share of the chain's own randomness that bfloat16 can take; ``"auto"`` uses
bfloat16 while it stays under :data:`BF16_CHAIN_ERROR` for every chain, measured at the chain's
start, and checks again every :data:`RECHECK_EVERY` runs because training moves the weights.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from stgconv.types import EnergyFn

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CHAIN_ERROR = 0.1
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


def channels_last_format(x: Tensor) -> torch.memory_format | None:
    """The channels-last layout for an image ``(B, C, H, W)`` or volume ``(B, C, D, H, W)`` batch
    on CUDA, where cuDNN's bfloat16 tensor-core convolutions want it; ``None`` elsewhere (on the
    CPU it was 0.56-1.00x, bench/README.md)."""
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
        inputs = x.detach().requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            e = energy(inputs)
        (grad,) = torch.autograd.grad(e.float().sum(), inputs)
        return grad.detach().float().flatten(1)

    difference = (gradient(True) - gradient(False)).norm(dim=1)
    if noise_scale == 0:
        return torch.full_like(difference, math.inf)
    entries = x[0].numel()
    return math.sqrt(n_steps) * step_size * difference / (2 * noise_scale * math.sqrt(entries))


@dataclass
class _Verdict:
    bf16: bool
    runs_until_check: int


class AutoPrecision:
    """Remembers, per energy (weakly: a dropped energy takes its entries with it), input shape
    and device, whether bfloat16 passed its check, and re-checks every ``recheck_every`` runs."""

    def __init__(self, *, tolerance: float = BF16_CHAIN_ERROR, recheck_every: int = RECHECK_EVERY
                 ) -> None:
        self.tolerance = tolerance
        self.recheck_every = recheck_every
        self._verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def use_bf16(
        self, energy: EnergyFn, x: Tensor, *, step_size: float, n_steps: int, noise_scale: float
    ) -> bool:
        """Whether the chain from ``x`` ``(B, *S)`` should run its network in bfloat16."""
        if not native_bfloat16(x.device) or noise_scale == 0:
            return False
        try:
            per_energy = self._verdicts.setdefault(energy, {})
        except TypeError:  # an energy that cannot be weakly referenced: check every run
            per_energy = {}
        key = (tuple(x.shape[1:]), x.dtype, str(x.device))
        verdict = per_energy.get(key)
        if verdict is None or verdict.runs_until_check == 0:
            error = bf16_chain_error(energy, x, step_size=step_size, n_steps=n_steps,
                                     noise_scale=noise_scale)
            # One host sync per check, not per step: the verdict steers the whole run.
            verdict = _Verdict(bool((error <= self.tolerance).all()), self.recheck_every)
            per_energy[key] = verdict
        verdict.runs_until_check -= 1
        return verdict.bf16


AUTO = AutoPrecision()
