"""The restricted Boltzmann machine: where energy-based learning began.

Visible units ``v`` (binary, or real-valued with a unit-variance Gaussian), binary hidden units
``h``, joint energy ``E(v, h) = -a.v - b.h - v.W h`` (Gaussian visible: ``|v - a|^2 / 2 - b.h -
v.W h``). Summing out ``h`` gives the free energy, which is what the samplers and the trainer
see (:meth:`RBM.forward`):

- binary: ``F(v) = -a.v - sum_j softplus(b_j + (v W)_j)``,
- Gaussian: ``F(v) = |v - a|^2 / 2 - sum_j softplus(b_j + (v W)_j)``.

Both conditionals factorise, which blocked Gibbs sampling (:class:`stgconv.mcmc.BlockGibbs`)
uses: ``p(h_j = 1 | v) = sigmoid(b_j + (v W)_j)``; ``p(v_i = 1 | h) = sigmoid(a_i + (W h)_i)``
(binary) or ``v | h ~ N(a + W h, I)`` (Gaussian). Inputs of any shape ``(B, *S)`` are flattened
to ``(B, n_visible)``.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgconv.checks import check_batch, check_device, check_generator
from stgconv.mcmc.base import at_least_float32

Visible = Literal["binary", "gaussian"]


class RBM(nn.Module):
    """``n_visible`` x ``n_hidden`` RBM; ``forward`` is the free energy ``(B, *S) -> (B,)``."""

    def __init__(self, n_visible: int, n_hidden: int, *, visible: Visible = "binary",
                 init_scale: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise ValueError(f"need n_visible, n_hidden >= 1, got {n_visible}, {n_hidden}")
        if visible not in ("binary", "gaussian"):
            raise ValueError(f"visible must be 'binary' or 'gaussian', got {visible!r}")
        check_generator(generator, "RBM")
        self.visible = visible
        self.weight = nn.Parameter(
            init_scale * torch.randn(n_visible, n_hidden, generator=generator))
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))

    @property
    def config(self) -> dict[str, object]:
        """Plain data that rebuilds the model (stored in checkpoints)."""
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "visible": self.visible}

    @property
    def n_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.weight.shape[1]

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible!r}"

    def check_training_data(self, data: Tensor) -> None:
        """``ValueError`` unless the examples ``data`` ``(N, *S)`` of a binary RBM lie in
        [0, 1] (0s and 1s, or the probabilities of a 1): images as the loaders give them, in
        [-1, 1], or grey levels 0-255 trained without a word on values its units never take,
        against samples of 0s and 1s. Gaussian visible units take any real data."""
        if self.visible != "binary":
            return
        low, high = data.min().item(), data.max().item()
        if low < 0 or high > 1:
            raise ValueError(f"a binary RBM's visible units are 0 or 1, so its data must lie in "
                             f"[0, 1] (0s and 1s, or their probabilities), got values from "
                             f"{low:g} to {high:g}: binarise them (images in [-1, 1]: "
                             f"(x > 0).float()), or use RBM(..., visible='gaussian')")

    def _flat(self, units: Tensor, layer: Literal["visible", "hidden"] = "visible") -> Tensor:
        """``units`` ``(B, *S)`` of ``layer`` as ``(B, n)``, or ``ValueError`` naming the layer
        unless they are a tensor ``(B, *S)`` with its ``n`` entries per example, on the RBM's
        device and of its dtype."""
        # Else an array failed on "order must be str, not int", a 0-d tensor on "Dimension out
        # of range", units on another device in the matmul, none naming the layer.
        symbol = layer[0]  # v or h, as in the formulas
        check_batch(units, symbol)
        check_device(units, self.weight.device, symbol)
        flat = units.flatten(1)
        n = self.n_visible if layer == "visible" else self.n_hidden
        if flat.shape[1] != n:
            raise ValueError(f"expected {n} {layer} units per example, got {tuple(units.shape)}")
        # Binary data often comes as bool or uint8, which the matmul refused deep inside.
        if flat.dtype != self.weight.dtype:
            raise ValueError(f"expected {layer} units of dtype {self.weight.dtype} (the RBM's), "
                             f"got {units.dtype}: convert them (binary data: {symbol}.float(), "
                             f"0s and 1s)")
        return flat

    def hidden_input(self, v: Tensor) -> Tensor:
        """``b + v W``, ``(B, n_hidden)``, of ``v`` ``(B, *S)``."""
        return self.hidden_bias + self._flat(v) @ self.weight

    def forward(self, v: Tensor) -> Tensor:
        """The free energy ``F(v)``, ``(B,)``, of ``v`` ``(B, *S)``."""
        flat = self._flat(v)
        hidden = F.softplus(self.hidden_input(flat)).sum(1)
        if self.visible == "binary":
            return -(flat @ self.visible_bias) - hidden
        return 0.5 * (flat - self.visible_bias).pow(2).sum(1) - hidden

    def hidden_probs(self, v: Tensor) -> Tensor:
        """``p(h = 1 | v)``, ``(B, n_hidden)``, of ``v`` ``(B, *S)``."""
        return torch.sigmoid(self.hidden_input(v))

    def visible_mean(self, h: Tensor) -> Tensor:
        """``E[v | h]``, ``(B, n_visible)``, of ``h`` ``(B, n_hidden)``: ``p(v = 1 | h)``
        (binary) or ``a + W h``."""
        activation = self.visible_bias + self._flat(h, "hidden") @ self.weight.T
        return torch.sigmoid(activation) if self.visible == "binary" else activation

    def sample_hidden(self, v: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``h ~ p(h | v)``, ``(B, n_hidden)``, of ``v`` ``(B, *S)``."""
        check_generator(generator, "RBM.sample_hidden")
        return _bernoulli(self.hidden_probs(v), generator)

    def sample_visible(self, h: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``v ~ p(v | h)``, ``(B, n_visible)``, of ``h`` ``(B, n_hidden)``."""
        check_generator(generator, "RBM.sample_visible")
        mean = self.visible_mean(h)
        if self.visible == "binary":
            return _bernoulli(mean, generator)
        return mean + torch.randn(mean.shape, generator=generator, device=mean.device,
                                  dtype=mean.dtype)

    @torch.no_grad()
    def exact_log_partition(self) -> float:
        """``log Z`` by enumerating the hidden states (binary visible units): for tiny models,
        as the reference of :func:`ais_log_partition`; ``log Z = logsumexp_h [b.h + sum_i
        softplus(a_i + (W h)_i)]``."""
        if self.visible != "binary":
            raise ValueError(f"exact_log_partition enumerates binary visible models only; this "
                             f"one's visible units are {self.visible!r}")
        if self.n_hidden > 20:
            raise ValueError(f"2^{self.n_hidden} hidden states are too many to enumerate")
        states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.n_hidden)),
                              dtype=self.weight.dtype, device=self.weight.device)
        log_terms = states @ self.hidden_bias + F.softplus(
            self.visible_bias + states @ self.weight.T).sum(1)
        return float(torch.logsumexp(log_terms.double(), 0))


def _bernoulli(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """0/1 draws in ``probs``' dtype, each 1 with its probability in ``probs`` ``(B, n)``.

    The uniforms are float32 at least: bfloat16 ones came out 0 one draw in 500, so a unit of
    probability 1e-4 was on 18 times too often (float16: 3 times)."""
    uniform = torch.rand(probs.shape, generator=generator, device=probs.device,
                         dtype=at_least_float32(probs.dtype))
    return (uniform < probs).to(probs.dtype)


@torch.no_grad()
def ais_log_partition(rbm: RBM, *, n_chains: int = 100, n_betas: int = 10_000,
                      base_visible_bias: Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[float, float]:
    """``log Z`` of a binary RBM by annealed importance sampling (Salakhutdinov & Murray 2008).

    The path runs from a base model with visible biases ``base_visible_bias`` ``(n_visible,)``
    only (default 0; the data's base rates give a better start) to the RBM, through ``log
    p*_beta(v) = (1 - beta) a0.v + beta a.v + sum_j softplus(beta (b + v W)_j)``, ``n_betas``
    temperatures evenly spaced, one Gibbs sweep at each. Returns the estimate and its spread:
    the standard deviation of ``log`` of the mean importance weight over bootstrap resamples of
    the chains (how much the estimate would move with other chains).

    Raises:
        FloatingPointError: the estimate is not finite (a parameter is not): reported, since
            a NaN ``log Z`` would make every likelihood computed from it NaN.
        ValueError: an RBM whose visible units are not binary, fewer than 2 chains or
            temperatures, or ``base_visible_bias`` of another shape.
    """
    if rbm.visible != "binary":
        raise ValueError(f"ais_log_partition is for binary visible units; this RBM's are "
                         f"{rbm.visible!r}")
    if n_chains < 2 or n_betas < 2:
        raise ValueError(f"need n_chains >= 2 and n_betas >= 2, got {n_chains}, {n_betas}")
    if base_visible_bias is not None and base_visible_bias.shape != (rbm.n_visible,):
        raise ValueError(f"base_visible_bias must be ({rbm.n_visible},), one per visible unit, "
                         f"got {tuple(base_visible_bias.shape)}")
    check_generator(generator, "ais_log_partition")
    device, dtype = rbm.weight.device, torch.float64
    a0 = (torch.zeros(rbm.n_visible) if base_visible_bias is None else base_visible_bias)
    a0, a = a0.to(device, dtype), rbm.visible_bias.to(dtype)
    b, w = rbm.hidden_bias.to(dtype), rbm.weight.to(dtype)

    def log_p(v: Tensor, beta: float) -> Tensor:
        return (v @ ((1 - beta) * a0 + beta * a)
                + F.softplus(beta * (b + v @ w)).sum(1))

    v = _bernoulli(torch.sigmoid(a0).expand(n_chains, -1), generator)
    log_w = torch.zeros(n_chains, device=device, dtype=dtype)
    betas = torch.linspace(0.0, 1.0, n_betas).tolist()
    for previous, beta in zip(betas, betas[1:]):
        log_w += log_p(v, beta) - log_p(v, previous)
        h = _bernoulli(torch.sigmoid(beta * (b + v @ w)), generator)
        v = _bernoulli(torch.sigmoid((1 - beta) * a0 + beta * (a + h @ w.T)), generator)
    log_z0 = F.softplus(a0).sum() + rbm.n_hidden * math.log(2.0)
    log_mean = torch.logsumexp(log_w, 0) - math.log(n_chains)
    resamples = torch.randint(n_chains, (200, n_chains), generator=generator, device=device)
    spread = (torch.logsumexp(log_w[resamples], 1) - math.log(n_chains)).std()
    log_z = float(log_z0 + log_mean)
    if not math.isfinite(log_z):
        raise FloatingPointError(f"the AIS estimate of log Z is {log_z}: the RBM's parameters or "
                                 "the base biases are not finite")
    return log_z, float(spread)
