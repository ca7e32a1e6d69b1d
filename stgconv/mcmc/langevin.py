"""Unadjusted Langevin dynamics, the workhorse sampler of descriptor models."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from stgconv.checks import (
    as_int,
    check_clamp,
    check_finite_number,
    check_generator,
    check_step_size,
)
from stgconv.mcmc.base import (
    StepCallback,
    StepInfo,
    broadcast_chains,
    check_constraint,
    check_start,
    energy_and_grad,
    nonfinite_flag,
    nonfinite_start,
    per_chain_entries,
    per_chain_norm,
    raise_if_nonfinite,
)
from stgconv.mcmc.constraints import Constraint, held_entries, tangent_of
from stgconv.mcmc.execution import (
    AUTO,
    FP32,
    PRECISIONS,
    Execution,
    Precision,
    check_chains_independent,
    native_bfloat16,
)
from stgconv.mcmc.graphs import graph_generator_ok, run_as_cuda_graph, weights_key
from stgconv.types import EnergyFn


@dataclass(frozen=True)
class Langevin:
    """``x <- x - (delta^2 / 2) grad E(x) + s * delta * eps``, ``eps ~ N(0, I)``.

    Args:
        n_steps: number of updates per ``run``.
        step_size: ``delta``, at most :data:`stgconv.checks.MAX_STEP_SIZE` (1e3).
        noise_scale: ``s``; 1 is exact Langevin, smaller values give the short-run
            (JEM-style) sampler, 0 turns the noise off (gradient descent on E). Each step's
            noise std ``s * delta`` has the same bound.
        noise_anneal: multiply the noise at step ``t`` of ``n`` by 1 ("none"),
            ``1 - t / n`` ("linear") or ``(1 + cos(pi t / n)) / 2`` ("cosine").
        grad_clip: if set, each chain's gradient is rescaled so that the step it takes is at
            most this L2 norm (times ``delta^2 / 2``): under a constraint, the norm of its
            tangent (the entries the constraint holds never move).
        clamp: if set, ``(low, high)`` bounds the values after every step, before the
            constraint's projection, which wins where they disagree (a block-mean projection
            can move values past the bounds: clamp the result where it must hold).
        precision: how the energy network is evaluated; the chain itself always stays in its
            own dtype. ``"fp32"``: as given. ``"bf16"``: under bfloat16 autocast. ``"auto"``:
            bfloat16 (in the faster layout) on a CUDA device that computes in it natively, for a
            float32 chain with noise, where its gradient error stays small against the chain's
            noise and it measures faster, else as given (always on a CPU, native bfloat16 or
            not: :func:`~stgconv.mcmc.execution.auto_may_use_bfloat16`);
            :mod:`stgconv.mcmc.execution` states the test and its tolerance, and
            ``bench/README.md`` the measured speed-ups and errors.
        cuda_graph: on CUDA, replay the steps as one captured CUDA graph
            (:mod:`stgconv.mcmc.graphs`) unless a callback or annealed noise needs Python at
            every step; the chain computes the same values either way.
    """

    n_steps: int = 30
    step_size: float = 0.01
    noise_scale: float = 1.0
    noise_anneal: Literal["none", "linear", "cosine"] = "none"
    grad_clip: float | None = None
    clamp: tuple[float, float] | None = None
    precision: Precision = "auto"
    cuda_graph: bool = True

    def __post_init__(self) -> None:
        # as_int: a float count failed in the run, and True ran one step.
        as_int(self.n_steps, "n_steps", minimum=1)
        # Written so NaN fails too: a NaN noise_scale ran the chain without noise (its noise
        # std never compares > 0), a NaN step size passed as a diverging chain.
        check_finite_number(self.noise_scale, "noise_scale")
        check_step_size(self.step_size, noise_scale=self.noise_scale)
        if self.noise_anneal not in ("none", "linear", "cosine"):
            raise ValueError(f"noise_anneal must be none/linear/cosine, got {self.noise_anneal!r}")
        if self.grad_clip is not None:
            check_finite_number(self.grad_clip, "grad_clip", positive=True)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_clamp(self.clamp)
        if self.clamp is not None:
            # Two floats whatever the bounds came as (a list, 0-d tensors): the sampler is part
            # of the key its kept CUDA graph is found by, and a list made that lookup fail on
            # CUDA ("unhashable type: 'list'"), tensors (hashed by identity) a new capture at
            # every run of a sampler rebuilt with the same bounds.
            object.__setattr__(self, "clamp", (float(self.clamp[0]), float(self.clamp[1])))

    def noise_factor(self, step: int) -> float:
        """Noise multiplier at 0-based ``step``, before ``noise_scale``."""
        if self.noise_anneal == "linear":
            return 1.0 - step / self.n_steps
        if self.noise_anneal == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * step / self.n_steps))
        return 1.0

    def run(
        self,
        energy: EnergyFn,
        x0: Tensor,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        create_graph: bool = False,
    ) -> Tensor:
        """Run ``n_steps`` updates from ``x0``.

        Args:
            energy: ``(B, *S) -> (B,)``.
            x0: ``(B, *S)`` chain starts; not modified.
            constraint: projected after every step (and once on ``x0``).
            generator: source of the Gaussian noise.
            callback: receives a :class:`StepInfo` per step.
            create_graph: keep the whole chain differentiable with respect to ``x0`` and the
                energy's parameters (short-run reconstruction); slower and memory-hungry. It
                asks for a graph, so it builds one inside ``torch.no_grad()`` too, as
                ``torch.autograd.grad``'s own ``create_graph`` does.

        Returns:
            ``(B, *S)`` final states, detached unless ``create_graph``.

        Raises:
            NonFiniteEnergyError: naming the first step with a non-finite energy or gradient
                (at the entries the constraint leaves free, :meth:`Constraint.held`; at every
                entry in a differentiable run, whose derivative passes through them all).
            ValueError: ``x0`` not a float tensor with values (the meta device has none) or, as
                projected, holding NaN or infinite values (said after the run), a
                ``generator`` that is not a ``torch.Generator``, a ``constraint`` without a
                ``project`` (a mask, a function), energies not real floating point ``(B,)`` or
                without a gradient in ``x``, or an energy module with batch normalisation or
                dropout in training mode.
        """
        check_start(x0, "Langevin")
        check_generator(generator, "Langevin")
        check_constraint(constraint, "Langevin")
        check_chains_independent(energy, "Langevin")
        if self.precision == "bf16" and not native_bfloat16(x0.device):
            warnings.warn(
                f"precision='bf16' on {x0.device}, which has no native bfloat16: autocast there "
                "was 8.6-36x slower than fp32 (bench/levers.py of the source tree); use "
                "precision='fp32'",
                RuntimeWarning, stacklevel=2)
        if create_graph:
            # Inside torch.no_grad() the states after the first lost their graph, and the
            # second step failed in autograd ("One of the differentiated Tensors does not
            # require grad").
            with torch.enable_grad():
                return self._run_differentiable(energy, x0, constraint, generator, callback)
        x = x0.detach().clone()
        if constraint is not None:
            x = constraint.project(x)
        start_bad = nonfinite_start(x)
        execution = self.execution(energy, x)
        if execution.layout is not None:
            x = x.contiguous(memory_format=execution.layout)
        # The projection resets the entries the constraint holds, so their gradient never
        # moves the chain: zeroed before the check, as MALA and HMC take the tangent before
        # theirs. An energy whose gradient is infinite at a known value (sqrt|x| at a known 0)
        # was reported as a diverged chain here alone; at a free entry it still is.
        held = held_entries(constraint)
        # Contiguous whatever x's layout, so a seed gives the same noise in every layout.
        noise = torch.empty(x.shape, device=x.device, dtype=x.dtype)
        half_step = 0.5 * self.step_size**2

        def step(index: int) -> Tensor:
            """One update of ``x`` in place (the same buffer throughout, as a CUDA graph needs);
            returns the step's non-finite flags ``(B,)``."""
            x.requires_grad_(True)
            e, grad = energy_and_grad(energy, x, bf16=execution.bf16)
            x.requires_grad_(False)
            if held is not None:
                grad = grad.masked_fill(held, 0.0)
            flag = nonfinite_flag(e, grad)
            moving_norm = (_moving_norm(grad, constraint)
                           if callback is not None or self.grad_clip is not None else None)
            if callback is not None:
                callback(StepInfo(step=index, energy=e.detach(), grad_norm=moving_norm))
            if self.grad_clip is not None:
                grad = _clipped(grad, moving_norm, self.grad_clip)
            x.add_(grad, alpha=-half_step)
            noise_std = self.noise_scale * self.step_size * self.noise_factor(index)
            if noise_std > 0:
                noise.normal_(generator=generator)
                x.add_(noise, alpha=noise_std)
            if self.clamp is not None:
                x.clamp_(*self.clamp)
            if constraint is not None:
                x.copy_(constraint.project(x))
            return flag

        flags: list[Tensor] = []
        if self._graphable(x, callback, generator):
            weights = weights_key(energy)
            keep = None if constraint is not None or weights is None else (
                energy, (self, tuple(x.shape), x.dtype, x.device, execution, generator, weights))
            x, flags = run_as_cuda_graph(step, x, self.n_steps, generator, keep=keep,
                                         buffers=(noise,))
        for index in range(len(flags), self.n_steps):  # all of them, unless a graph ran them
            flags.append(step(index))
        # The last update is never fed back into the energy; its result is checked directly.
        # After the clamp, which hides nothing: it keeps a NaN, and takes an update that
        # overflowed to +-inf from a finite energy and gradient to the bound that the update's
        # exact (huge, finite) value would have been clamped to.
        flags[-1] = flags[-1] | ~per_chain_entries(torch.isfinite(x)).all(dim=1)
        raise_if_nonfinite(flags, "Langevin", self.n_steps, start=start_bad)
        return x if execution.layout is None else x.contiguous()

    def _run_differentiable(
        self, energy: EnergyFn, x0: Tensor, constraint: Constraint | None,
        generator: torch.Generator | None, callback: StepCallback | None,
    ) -> Tensor:
        """``run(create_graph=True)``: every state a new tensor, the chain differentiable."""
        # autograd.grad needs a start that requires grad even when only the energy's
        # parameters are wanted (x0 drawn from noise); later states inherit it. A copy: an x0
        # made under torch.inference_mode() takes no requires_grad outside it ("Setting
        # requires_grad=True on inference tensor outside InferenceMode is not allowed").
        x = x0 if x0.requires_grad else x0.detach().clone().requires_grad_(True)
        if constraint is not None:
            x = constraint.project(x)
        start_bad = nonfinite_start(x)
        bf16 = self.precision == "bf16"  # "auto": fp32, see execution()
        flags: list[Tensor] = []
        for index in range(self.n_steps):
            e, grad = energy_and_grad(energy, x, create_graph=True, bf16=bf16)
            # Checked at every entry, the held ones too (unlike run): the chain's derivative
            # passes through the energy's gradient everywhere, and one infinite at a held
            # entry (sqrt|x| at a known 0), zeroed, would leave the run finite and the
            # parameters' gradient NaN. The projection resets those entries: nothing to zero.
            flags.append(nonfinite_flag(e, grad))
            moving_norm = (_moving_norm(grad, constraint)
                           if callback is not None or self.grad_clip is not None else None)
            if callback is not None:
                callback(StepInfo(step=index, energy=e.detach(), grad_norm=moving_norm.detach()))
            if self.grad_clip is not None:
                # Not detached: the clipping's scale depends on x too, and the chain's
                # derivative must include that (a detached norm left out a term wherever
                # clipping bit).
                grad = _clipped(grad, moving_norm, self.grad_clip)
            x = x - 0.5 * self.step_size**2 * grad
            noise_std = self.noise_scale * self.step_size * self.noise_factor(index)
            if noise_std > 0:
                x = x + noise_std * torch.randn(
                    x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
            if constraint is not None:
                x = constraint.project(x)
        flags[-1] = flags[-1] | ~per_chain_entries(torch.isfinite(x)).all(dim=1)
        raise_if_nonfinite(flags, "Langevin", self.n_steps, start=start_bad)
        return x

    def execution(self, energy: EnergyFn, x: Tensor) -> Execution:
        """How a run from ``x`` ``(B, *S)`` evaluates the network (``"auto"``: see
        :mod:`stgconv.mcmc.execution`). Differentiable runs (``create_graph``) under ``"auto"``
        stay in fp32: their parameter gradients pass through every step, and the noise test
        does not bound that error."""
        if self.precision == "fp32":
            return FP32
        if self.precision == "bf16":
            return Execution(bf16=True)
        # The test bounds the error against the noise the chain accumulates; annealed, that is
        # the root mean square of the steps' noise, not the first step's.
        annealed = math.sqrt(sum(self.noise_factor(t) ** 2 for t in range(self.n_steps))
                             / self.n_steps)
        return AUTO.choose(energy, x, step_size=self.step_size, n_steps=self.n_steps,
                           noise_scale=self.noise_scale * annealed)

    def _graphable(self, x: Tensor, callback: StepCallback | None,
                   generator: torch.Generator | None) -> bool:
        """Whether the steps can replay as one captured CUDA graph: on CUDA, with nothing that
        runs Python per step (a callback) or changes per step (annealed noise)."""
        return (self.cuda_graph and x.device.type == "cuda" and callback is None
                and self.noise_anneal == "none" and graph_generator_ok(generator))


def _moving_norm(grad: Tensor, constraint: Constraint | None) -> Tensor:
    """Each chain's L2 norm ``(B,)`` (float32 at least) of the part of ``grad`` ``(B, *S)``
    that moves it: under a ``constraint``, its tangent. The entries a constraint holds never
    move, and where a known pixel disagrees with the model its large gradient there shrank
    the clipped step of the free entries."""
    return per_chain_norm(grad if constraint is None else tangent_of(constraint, grad))


def _clipped(grad: Tensor, grad_norm: Tensor, grad_clip: float) -> Tensor:
    """``grad`` ``(B, *S)`` scaled so each chain's norm (``grad_norm`` ``(B,)``, float32 at
    least) is at most ``grad_clip``, in ``grad``'s dtype: the float32 scale would otherwise turn
    a float16 chain's update, and so the chain, into float32."""
    scale = (grad_clip / (grad_norm + 1e-12)).clamp(max=1.0)
    return (grad * broadcast_chains(scale, grad)).to(grad.dtype)
