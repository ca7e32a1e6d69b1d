"""What every sampler shares: the per-step report, the non-finite check and the sampler
contract (the Metropolis-adjusted samplers' own helpers are in :mod:`stgconv.mcmc.metropolis`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor

from stgconv.checks import check_not_meta, refuse_inference_mode
from stgconv.mcmc.constraints import Constraint
from stgconv.types import EnergyFn


# What to try when a chain diverges, by what its sampler has to change: MALA and HMC take no
# gradient clipping or clamp (they sample exp(-E) itself; a config refuses both for them), and
# Gibbs sweeps take no step at all.
LANGEVIN_ADVICE = "try a smaller step size, gradient clipping or a value clamp"
STEP_ADVICE = "try a smaller step size"


class NonFiniteEnergyError(FloatingPointError):
    """A chain's energy or its gradient became NaN or infinite; ``step`` is 0-based, ``chains``
    the (0-based) chains it happened to at that step, where the sampler knows them; ``advice``
    what to change (the sampler's settings)."""

    def __init__(self, sampler: str, step: int, n_steps: int, chains: Sequence[int] = (), *,
                 advice: str = LANGEVIN_ADVICE) -> None:
        self.sampler = sampler
        self.step = step
        self.n_steps = n_steps
        self.chains = tuple(chains)
        self.advice = advice
        super().__init__(
            f"{sampler}: energy or its gradient became non-finite at step {step} of {n_steps}"
            f"{_in_chains(self.chains)}; the chain diverged ({advice})"
        )

    def __reduce__(self) -> tuple:
        # Rebuilt from its fields: BaseException's own pickle calls the class with the message
        # alone, which this __init__ refuses, and a process pool whose worker's chain diverged
        # broke (BrokenProcessPool) instead of raising this in the caller.
        return (partial(type(self), advice=self.advice),
                (self.sampler, self.step, self.n_steps, self.chains), self.__dict__)


# How many chains a divergence names; the count of the rest follows.
_CHAINS_NAMED = 5


def _in_chains(chains: Sequence[int]) -> str:
    """`` in chain 3`` / `` in chains 0, 2 and 7 more``, or nothing when none are known."""
    if not chains:
        return ""
    named = ", ".join(str(chain) for chain in chains[:_CHAINS_NAMED])
    more = f" and {len(chains) - _CHAINS_NAMED} more" if len(chains) > _CHAINS_NAMED else ""
    return f" in chain{'s' if len(chains) > 1 else ''} {named}{more}"


def on_grid(err: NonFiniteEnergyError, grid: int, shape: Sequence[int]) -> NonFiniteEnergyError:
    """The same divergence, naming the multi-grid grid (1 = coarsest modelled) it happened on."""
    where = "x".join(str(n) for n in shape)
    return NonFiniteEnergyError(f"{err.sampler} on grid {grid} ({where})", err.step, err.n_steps,
                                err.chains, advice=err.advice)


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of one sampler step, handed to the ``callback`` of ``run``.

    Attributes:
        step: 0-based step index.
        energy: ``(B,)`` energy of each chain at the start of the step (detached).
        grad_norm: ``(B,)`` L2 norm (float32 at least) of the part of each chain's energy
            gradient that moves it, before clipping: under a constraint its tangent
            (:meth:`~stgconv.mcmc.Constraint.tangent`: without the entries and block means
            the constraint holds), else the whole gradient; the same in every sampler (what
            Langevin's ``grad_clip`` bounds). Zeros for :class:`~stgconv.mcmc.BlockGibbs`,
            which takes no gradient.
        accepted: ``(B,)`` bool, whether each chain's proposal was accepted; ``None`` for
            unadjusted Langevin, which accepts everything.
    """

    step: int
    energy: Tensor
    grad_norm: Tensor
    accepted: Tensor | None = None


StepCallback = Callable[[StepInfo], None]


class Sampler(Protocol):
    """Holds settings only; the energy comes in with every call."""

    n_steps: int

    def run(
        self,
        energy: EnergyFn,
        x0: Tensor,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Chains ``(B, *S)`` after ``n_steps`` updates from ``x0`` ``(B, *S)`` under
        ``energy`` ``(B, *S) -> (B,)``, projected onto ``constraint`` after every step."""
        ...


def check_sampler(sampler: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``sampler`` has a ``run`` (the protocol is not
    checked at runtime) and runs one energy's chains (no :class:`MultiGridSampler`): a
    sampler's name or a step function failed later as "'str' object has no attribute
    'run'"."""
    # Here, not at the top: the multi-grid module builds on this one.
    from stgconv.mcmc.multigrid import MultiGridSampler

    if not callable(getattr(sampler, "run", None)):
        raise ValueError(f"{name} must be a sampler (Langevin, MALA, HMC: an object with run), "
                         f"got {type(sampler).__name__}")
    # Its run takes a list of energies, one per grid: where one energy's chains are run it
    # failed at the first chain, as "energies must be a sequence ...: pass [energy] for one
    # grid", advice a caller of recover or a trainer has no way to follow.
    if isinstance(sampler, MultiGridSampler):
        raise ValueError(f"{name} must run one energy's chains (Langevin, MALA, HMC), got a "
                         "MultiGridSampler, which samples a pyramid of energies: give one of "
                         "its grids' samplers, or run it with MultiGridSampler.run(energies, x0)")


def check_constraint(constraint: object, sampler: str, *,
                     needs: tuple[str, ...] = ("project",)) -> None:
    """``ValueError`` naming ``sampler`` unless ``constraint`` is ``None`` or has the methods
    ``needs`` (a :class:`Constraint` has them all): a mask of the known entries, or a
    projection function as score-based samplers take one, given in its place failed on
    "'Tensor' object has no attribute 'project'"."""
    if constraint is None or all(callable(getattr(constraint, name, None)) for name in needs):
        return
    hint = (": KnownEntries(observed, known) keeps the entries a mask marks"
            if isinstance(constraint, Tensor) else
            ": subclass Constraint and return the projection from its project"
            if callable(constraint) else "")
    raise ValueError(f"{sampler}: constraint must be a Constraint (KnownEntries, "
                     f"DownsampleConsistency, ...: an object with {' and '.join(needs)}), got "
                     f"{type(constraint).__name__}{hint}")


def check_start(x0: object, sampler: str) -> None:
    """``ValueError`` naming ``sampler`` unless ``x0`` is a float tensor of chain starts
    ``(B, *S)`` with values: integer or bool starts cannot carry a gradient, and failed inside
    torch; so did starts on the meta device (shapes only), in autocast."""
    # A 0-d tensor (one number, no batch dimension) failed inside torch: "len() of a 0-d
    # tensor".
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.dim() == 0:
        got = (type(x0).__name__ if not isinstance(x0, Tensor) else
               x0.dtype if not x0.is_floating_point() else "a 0-d tensor (x0[None]: one chain)")
        raise ValueError(f"{sampler}: x0 must be a float tensor (B, *S) of chain starts, got "
                         f"{got}")
    check_not_meta(x0, f"{sampler}: x0")


def check_energies(e: object, x: Tensor) -> None:
    """``ValueError`` unless ``e``, what an energy returned for ``x`` ``(B, *S)``, is real
    floating point energies ``(B,)``, naming what it got: an energy summed over the batch
    (shape ``()``) still gives every chain its gradient, but a Metropolis test would accept or
    reject all chains on their total; a complex energy failed in autograd ("grad can be
    implicitly created only for real scalar outputs"), an integer one as having no gradient."""
    if not isinstance(e, Tensor):
        raise ValueError(f"energy must return a tensor of shape (B,) = ({len(x)},), got "
                         f"{type(e).__name__}")
    if e.shape != x.shape[:1]:
        total = " (the batch's total: give one energy per chain)" if e.dim() == 0 else ""
        raise ValueError(f"energy must return shape (B,) = ({len(x)},), got {tuple(e.shape)}"
                         f"{total}")
    if not e.is_floating_point():
        raise ValueError(f"energy must return real floating point energies, got {e.dtype}")


def energy_and_grad(
    energy: EnergyFn, x: Tensor, *, create_graph: bool = False, bf16: bool = False
) -> tuple[Tensor, Tensor]:
    """Energies ``(B,)`` and their gradient ``(B, *S)`` with respect to ``x`` ``(B, *S)``.

    ``x`` must already require grad. The sum over the batch is differentiated, which gives each
    chain its own gradient because chains do not interact. ``bf16`` evaluates the network under
    bfloat16 autocast (the gradient still comes back in ``x``'s dtype). Gradients are on even
    inside ``torch.no_grad()``, where a caller who only samples may well be.

    Raises:
        RuntimeError: inside ``torch.inference_mode()``, which no block can turn autograd back
            on in.
        ValueError: energies not real floating point of shape ``(B,)``
            (:func:`check_energies`), or without a gradient in ``x``.
    """
    refuse_inference_mode("sampling needs the energy's gradient", "sample")
    with torch.enable_grad():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            e = energy(x)
        check_energies(e, x)
        # allow_unused: an energy of the parameters alone (x detached inside, or not read)
        # has a graph, but none through x, and autograd's own message names no energy.
        grad = None
        if e.requires_grad:
            (grad,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph,
                                          allow_unused=True)
        if grad is None:
            raise ValueError("the energy has no gradient with respect to x: it must be "
                             "computed from x by differentiable torch operations (not detached "
                             "or through numpy, not constant)")
    return e, grad


def nonfinite_flag(e: Tensor, grad: Tensor) -> Tensor:
    """``(B,)`` bool: does each chain have a non-finite energy ``e`` ``(B,)`` or gradient
    ``grad`` ``(B, *S)``?

    Kept as a tensor so the check costs no device synchronisation inside the loop; samplers
    gather the flags and raise once, naming the first bad step and its chains.
    """
    # A NaN or infinity anywhere makes a chain's sum non-finite: one reduction instead of a
    # full-size boolean tensor (measured 16x cheaper on a video-sized gradient), over the
    # chain's dimensions in whatever layout (flatten(1) would copy a channels-last gradient).
    # Summed in float32 at least: a float16 sum overflows past 65504, which 8000 healthy
    # gradient entries of 10 reached, and a chain that had not diverged was reported as
    # diverged. Only a finite gradient whose entries sum past ~3e38 could be flagged wrongly,
    # and that chain has diverged anyway.
    chain_dims = tuple(range(1, grad.dim()))
    wide = at_least_float32(grad.dtype)
    grad_totals = grad.sum(dim=chain_dims, dtype=wide) if chain_dims else grad.to(wide)
    return ~(torch.isfinite(e) & torch.isfinite(grad_totals))


def nonfinite_start(x: Tensor) -> Tensor:
    """``(B,)`` bool: does each chain's start ``x`` ``(B, *S)`` (after the constraint's
    projection) hold a NaN or an infinity? A tensor, read only when a chain is reported."""
    return ~per_chain_entries(torch.isfinite(x)).all(dim=1)


def raise_if_nonfinite(flags: list[Tensor], sampler: str, n_steps: int, *,
                       advice: str = LANGEVIN_ADVICE, start: Tensor | None = None) -> None:
    """Raise :class:`NonFiniteEnergyError` naming the first step whose flags (``(B,)`` bool
    :func:`nonfinite_flag`, one per step) are set, and the chains they are set for; a
    ``ValueError`` naming the chains instead where ``start`` (``(B,)``
    :func:`nonfinite_start`) says they started non-finite. Such a start was reported as a
    chain that diverged, with the advice of a smaller step size, though no setting of the
    sampler's was at fault (starts that hold NaN where entries are missing, under a constraint
    that keeps the known ones, say); under an energy that does not read the entry, a
    Metropolis-adjusted chain returned it without a word."""
    if not flags:
        return
    bad = torch.stack(flags)
    if start is not None:  # read with the steps' flags: no synchronisation of its own
        bad[0] |= start
    if bad.any():
        if start is not None and bool(start.any()):
            raise ValueError(f"{sampler}: x0 holds NaN or infinite values"
                             f"{_in_chains(start.nonzero()[:, 0].tolist())} (after the "
                             "constraint's projection, where one is given): chains must start "
                             "finite")
        step = int(bad.any(dim=1).nonzero()[0, 0])
        raise NonFiniteEnergyError(sampler, step, n_steps, bad[step].nonzero()[:, 0].tolist(),
                                   advice=advice)


def at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """``dtype``, or float32 where it is narrower (float16, bfloat16): what sums, norms and
    means over many entries are taken in, which overflow or round in half precision."""
    return torch.promote_types(dtype, torch.float32)


def per_chain_entries(values: Tensor) -> Tensor:
    """``(B, *S)`` -> ``(B, N)``, each chain's entries in a row. Chains of one number each
    (``S = ()``, a 1-D energy) get rows of one, and an empty batch ``(0, N)``: ``flatten(1)``
    raised IndexError on the first, ``reshape(len(values), -1)`` RuntimeError on the second."""
    return values.reshape(len(values), math.prod(values.shape[1:]))


def per_chain_norm(grad: Tensor) -> Tensor:
    """``(B, *S)`` -> ``(B,)`` L2 norm of each chain's ``grad``, in float32 at least: a float16
    norm overflows past 65504 (8000 entries of 1000), and gradient clipping by an infinite norm
    scaled a finite gradient to zero, so the chain stopped drifting without a word."""
    return torch.linalg.vector_norm(per_chain_entries(grad), dim=1,
                                    dtype=at_least_float32(grad.dtype))


def per_chain_sum(values: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
    """``(B, *S)`` -> ``(B,)`` sum over everything but the batch dimension, accumulated and
    returned in ``dtype`` (default ``values``' own)."""
    return per_chain_entries(values).sum(dim=1, dtype=dtype)


def broadcast_chains(values: Tensor, like: Tensor) -> Tensor:
    """Reshape per-chain ``(B,)`` values so they broadcast against ``like`` ``(B, *S)``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))
