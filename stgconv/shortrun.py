"""Short-run MCMC as a generator (Nijkamp et al. 2019): reconstruction and interpolation.

A K-step Langevin chain from noise ``z`` is a map ``x = M(z)``. Fixing the chain's noise sequence
(by replaying the same generator state) makes ``M`` a deterministic, differentiable function of
``z``, which is what both operations need.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stgconv.checks import (
    as_int,
    check_finite_number,
    check_generator,
    check_not_meta,
    check_tensor,
)
from stgconv.mcmc.base import NonFiniteEnergyError, Sampler
from stgconv.mcmc.init import NoiseInit
from stgconv.mcmc.langevin import Langevin
from stgconv.types import EnergyFn


def _replayed(generator: torch.Generator, state: Tensor) -> torch.Generator:
    generator.set_state(state)
    return generator


def reconstruct(
    energy: EnergyFn,
    sampler: Langevin,
    target: Tensor,
    *,
    z0: Tensor,
    n_iterations: int = 200,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, list[float]]:
    """Find the chain start ``z`` whose K-step chain lands on ``target``.

    Minimises ``mean |M(z) - target|^2`` over ``z`` with Adam, back-propagating through the whole
    chain (``create_graph``); the chain's noise is the same at every iteration.

    It works inside ``torch.no_grad()`` (the optimisation turns autograd back on for itself;
    what it returns is detached), not inside ``torch.inference_mode()``.

    Args:
        target: ``(B, *S)`` images to reconstruct.
        z0: ``(B, *S)`` initial chain starts (e.g. the noise the model was trained from).
        generator: its current state fixes the chain's noise; it is restored afterwards.
            Default: a new ``torch.Generator`` (torch's default seed), so the chain's noise is
            the same in every call that passes none (the global RNG is not read).

    Returns:
        ``(z, M(z), losses)``: the optimised starts, their reconstructions ``(B, *S)`` (the
        differentiable chain's, the map that was optimised) and the loss per iteration.

    Raises:
        NonFiniteEnergyError: the chain diverged.
        FloatingPointError: the mean squared error, or its gradient in the starts, became
            non-finite (a chain far from the target, without a clamp).
        ValueError: ``sampler`` not a :class:`Langevin`, ``target`` and ``z0`` not tensors of
            one shape with entries, either of them not finite or not floating point,
            ``n_iterations`` not an int >= 1, or ``lr`` not a finite number >= 0 (0 keeps
            ``z0``).
    """
    # MALA and HMC failed at the first chain ("unexpected keyword argument 'create_graph'"), the
    # two arguments swapped as "'function' object has no attribute 'run'".
    if not isinstance(sampler, Langevin):
        raise ValueError(f"sampler must be a Langevin sampler (reconstruct differentiates "
                         f"through its chain; a Metropolis test has no gradient), got "
                         f"{type(sampler).__name__}: reconstruct(energy, sampler, target, ...)")
    check_tensor(target, "target")  # else "'numpy.ndarray' object has no attribute 'numel'"
    check_tensor(z0, "z0")
    if target.shape != z0.shape:
        raise ValueError(f"target {tuple(target.shape)} and z0 {tuple(z0.shape)} must match")
    if not z0.is_floating_point():  # it is optimised: autograd takes no integer tensor
        raise ValueError(f"z0 must be floating point chain starts, got {z0.dtype}")
    if not target.is_floating_point():  # grey levels 0-255 were "reconstructed" as they are
        raise ValueError(f"target must be floating point pixels in [-1, 1], got {target.dtype} "
                         "(grey levels 0-255 convert with stgconv.io.image.from_levels)")
    # as_int: 2.0 failed in range() naming no argument, and True ran one iteration.
    as_int(n_iterations, "n_iterations", minimum=1)
    # A negative or NaN rate was Adam's "Invalid learning rate", an infinite one a chain that
    # "diverged", naming no argument.
    check_finite_number(lr, "lr")
    if target.numel() == 0:  # the mean squared error of nothing is NaN at every iteration
        raise ValueError(f"target {tuple(target.shape)} holds no entries: nothing to "
                         "reconstruct")
    # A NaN in the target made the loss, and so z after the first Adam step, NaN: the chain
    # then "diverged" with the advice to lower lr. A NaN in z0 blamed the sampler's settings.
    for name, values in (("target", target), ("z0", z0)):
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{name} holds NaN or infinite values: {name} must be finite")
    check_generator(generator, "reconstruct")
    generator = generator if generator is not None else torch.Generator(target.device)
    state = generator.get_state()
    z = z0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    losses: list[float] = []

    def chain(start: Tensor) -> Tensor:
        try:
            return sampler.run(energy, start, generator=_replayed(generator, state),
                               create_graph=True)
        except NonFiniteEnergyError as err:
            if not losses:  # from z0 itself: the sampler's settings are at fault
                raise
            # Adam's steps took the starts where the chain diverges: the advice to change the
            # sampler (step size, clipping, clamp) sent users to settings that were not the
            # cause of reconstruct --lr 1e30.
            raise NonFiniteEnergyError(
                err.sampler, err.step, err.n_steps, err.chains,
                advice=f"its starts, after {len(losses)} Adam step(s) of lr {lr:g}, are where "
                       "it diverges: lower lr") from err

    # Restored however the call ends: a chain that diverged left the generator where its noise
    # had taken it, and a retry with a lower lr, given the same generator, optimised the map
    # of another chain noise.
    try:
        # Inside torch.no_grad() the loss had no graph: autograd.grad failed ("element 0 of
        # tensors does not require grad").
        with torch.enable_grad():
            for _ in range(n_iterations):
                x = chain(z)
                loss = (x - target).pow(2).mean()
                # Only z is optimised: autograd.grad leaves the model's parameter gradients
                # alone.
                (z.grad,) = torch.autograd.grad(loss, z)
                value = loss.item()
                _check_finite_step(value, z.grad, x, len(losses) + 1, n_iterations)
                optimizer.step()
                losses.append(value)
        # The chain that was optimised, not the ordinary run: on a device with native bfloat16
        # that one may evaluate the network in bfloat16 (precision "auto"), a slightly
        # different map.
        x = chain(z.detach())
    finally:
        generator.set_state(state)
    return z.detach(), x.detach(), losses


def _check_finite_step(loss: float, grad: Tensor, x: Tensor, iteration: int,
                       n_iterations: int) -> None:
    """``FloatingPointError`` unless ``loss`` and its gradient ``grad`` in the starts are
    finite: a chain that ran finite but far from the target (no clamp) overflowed the squared
    error, Adam's step made the starts NaN, and the next chain refused them as an "x0" that
    "holds NaN", which the caller never gave."""
    if math.isfinite(loss) and bool(torch.isfinite(grad).all()):
        return
    raise FloatingPointError(
        f"reconstruct: the mean squared error ({loss:g}) or its gradient in the starts "
        f"became non-finite at iteration {iteration} of {n_iterations}, where the chain's "
        f"samples reach |x| = {x.detach().abs().max().item():.3g}")


def interpolate(
    energy: EnergyFn,
    sampler: Langevin,
    z_start: Tensor,
    z_end: Tensor,
    *,
    n_points: int = 8,
    init: NoiseInit | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run the chain from points between two starts, with the same chain noise for each.

    Uses the path of :func:`noise_path`, every point of which is distributed as the starts.

    Args:
        z_start, z_end: ``(*S)`` single chain starts, drawn from ``init`` (a
            :class:`~stgconv.mcmc.NoiseInit`; default: Gaussian).

    Returns:
        ``(n_points, *S)`` samples along the path.

    Raises:
        ValueError: as :func:`noise_path` and :func:`run_each`.
    """
    check_generator(generator, "shortrun.interpolate")
    init = init if init is not None else NoiseInit("gaussian")
    return run_each(energy, sampler, noise_path(init, z_start, z_end, n_points=n_points),
                    generator=generator)


def noise_path(init: NoiseInit, z_start: Tensor, z_end: Tensor, *, n_points: int = 8) -> Tensor:
    """Points from ``z_start`` to ``z_end`` ``(*S)``, two draws of ``init``, each of which is
    again a draw of ``init``: :func:`latent_path` for Gaussian noise; uniform noise is mapped to
    Gaussian noise (``u = scale * erf(z / sqrt(2))``), walked there and mapped back (walked as
    it is, a midpoint would reach past ``scale`` and be bell-shaped: not a start the model
    learnt from). Returns ``(n_points, *S)``.

    Raises:
        ValueError: ``init`` not a :class:`~stgconv.mcmc.NoiseInit`, or ends as
            :func:`latent_path` refuses them.
    """
    # Else "'str' object has no attribute 'kind'" for the config's kind given in its place, and
    # the same for a DataGaussian, whose draws no such path keeps alike.
    if not isinstance(init, NoiseInit):
        kind = f" (for the kind {init!r}: NoiseInit({init!r}))" if isinstance(init, str) else ""
        raise ValueError(f"init must be the NoiseInit the starts were drawn from, got "
                         f"{type(init).__name__}{kind}")
    _check_ends(z_start, z_end)
    if init.kind == "gaussian" or init.scale == 0:
        return latent_path(z_start, z_end, n_points=n_points)
    # Off the interval's ends, where erfinv is infinite: torch.rand's 0 gives -scale exactly.
    edge = 1 - torch.finfo(z_start.dtype).eps

    def to_gaussian(u: Tensor) -> Tensor:
        return math.sqrt(2) * torch.erfinv((u / init.scale).clamp(-edge, edge))

    path = latent_path(to_gaussian(z_start), to_gaussian(z_end), n_points=n_points)
    return init.scale * torch.erf(path / math.sqrt(2))


def latent_path(z_start: Tensor, z_end: Tensor, *, n_points: int = 8) -> Tensor:
    """``z(a) = sqrt(1 - a^2) z_start + a z_end`` at ``n_points`` equal angles ``asin(a)`` in
    ``[0, pi/2]``: for two independent ``N(0, I)`` draws every point is again ``N(0, I)``.

    Args:
        z_start, z_end: ``(*S)``.

    Returns:
        ``(n_points, *S)``, from ``z_start`` to ``z_end``.

    Raises:
        ValueError: ends that are not finite floating point tensors of one shape, or
            ``n_points`` not an int >= 1.
    """
    _check_ends(z_start, z_end)
    # as_int: 2.5 or True failed inside torch.linspace, naming no argument.
    as_int(n_points, "n_points", minimum=1)
    angles = torch.linspace(0, math.pi / 2, n_points, device=z_start.device, dtype=z_start.dtype)
    weights = angles.sin().reshape(-1, *[1] * z_start.dim())
    return (1 - weights**2).sqrt() * z_start + weights * z_end


def _check_ends(z_start: Tensor, z_end: Tensor) -> None:
    """``ValueError`` unless a path's ends are finite, floating point and of one shape: integer
    ends made the path's angles integers too (0, ..., 0, 1 radian: a path that never reached
    ``z_end``), without a word; a NaN in one end made every point NaN (``0 * NaN`` at the
    other end), which a cooperative path without a sampler returned as its samples."""
    check_tensor(z_start, "z_start")  # else "'numpy.ndarray' object has no attribute ..."
    check_tensor(z_end, "z_end")
    if z_start.shape != z_end.shape:
        raise ValueError(f"z_start {tuple(z_start.shape)} and z_end {tuple(z_end.shape)} "
                         "must match")
    if not (z_start.is_floating_point() and z_end.is_floating_point()):
        raise ValueError(f"z_start and z_end must be floating point chain starts, got "
                         f"{z_start.dtype} and {z_end.dtype}")
    for name, end in (("z_start", z_start), ("z_end", z_end)):
        check_not_meta(end, name)  # else "Tensor.item() cannot be called on meta tensors"
        if not bool(torch.isfinite(end).all()):
            raise ValueError(f"{name} holds NaN or infinite values: {name} must be finite")


def run_each(energy: EnergyFn, sampler: Sampler, starts: Tensor, *,
             generator: torch.Generator | None = None) -> Tensor:
    """The chain from each of ``starts`` ``(N, *S)`` on its own, every one with the same noise
    (the generator's current state, restored afterwards; default: a new ``torch.Generator``,
    as in :func:`reconstruct`); returns ``(N, *S)`` (no samples for no starts).

    Raises:
        ValueError: ``starts`` not a tensor, or holding NaN or infinite values (naming the
            first start that does).
        NonFiniteEnergyError: a chain diverged, naming its start's index in ``starts``.
    """
    check_generator(generator, "run_each")
    check_tensor(starts, "starts")  # else "'list' object has no attribute 'device'"
    # Each chain runs as a batch of one, so the sampler would name every bad start "chain 0".
    for index, start in enumerate(starts):
        if not bool(torch.isfinite(start).all()):
            raise ValueError(f"starts[{index}] (of {len(starts)}) holds NaN or infinite values: "
                             "chains must start finite")
    generator = generator if generator is not None else torch.Generator(starts.device)
    state = generator.get_state()
    # Every chain replays the same generator state, so all chains see the same noise and
    # differences between the results come from the starts alone. Restored however the call
    # ends, as in reconstruct.
    samples = []
    try:
        for index, start in enumerate(starts):
            try:
                samples.append(sampler.run(energy, start.unsqueeze(0),
                                           generator=_replayed(generator, state)))
            except NonFiniteEnergyError as err:
                raise NonFiniteEnergyError(err.sampler, err.step, err.n_steps, (index,),
                                           advice=err.advice) from err
    finally:
        generator.set_state(state)
    return torch.cat(samples) if samples else starts.detach().clone()
