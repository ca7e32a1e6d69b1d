"""Cooperative learning (Xie et al., CoopNets, TPAMI 2018; "MCMC teaching", AAAI 2018).

A descriptor (any energy net of :mod:`stgconv.energy`) and a generator ``G: z -> x``
(:class:`~stgconv.generator.ConvGenerator`) learn together. Every iteration:

1. the generator proposes: ``z ~ N(0, I)``, ``x0 = G(z)`` (:class:`GeneratorStart`, a chain start
   like any other, so the descriptor's step is :class:`~stgconv.train.Trainer`'s own);
2. the configured sampler revises ``x0`` on the descriptor's energy: ``x = sampler.run(E, x0)``;
3. the descriptor learns from the data and the revised ``x`` (the contrastive loss);
4. the generator learns to reproduce the revision: ``mean |G(z) - x|^2`` with the ``z`` that
   made the proposal (MCMC teaching), or with ``z`` first moved by Langevin toward the
   posterior ``p(z | x)`` (:class:`LatentPosterior`, the original CoopNets).

So the chains start where the model puts its mass and can stay short. Synthesis is the same
two moves: :func:`propose_and_revise`; :func:`interpolate` walks between two latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from stgconv.checks import as_int, check_clamp, check_generator, check_tensor
from stgconv.config import (CooperativeConfig, ExperimentConfig, TrainConfig,
                            section_or_default)
from stgconv.distributed import World
from stgconv.energy.base import EnergyModel
from stgconv.generator import ConvGenerator, build_generator
from stgconv.mcmc.base import NonFiniteEnergyError, Sampler
from stgconv.mcmc.constraints import Constraint
from stgconv.mcmc.langevin import Langevin
from stgconv.shortrun import latent_path, run_each
from stgconv.train import (
    Companion,
    CompanionTrainer,
    DivergenceError,
    companion_from_state,
    training_step,
)


class GeneratorStart:
    """Chain starts proposed by a generator: ``G(z)`` for fresh ``z ~ N(0, I)``.

    It remembers each ``z`` with the revised chains handed back by :meth:`keep`, so the trainer
    can teach the generator (:meth:`take`); nothing is kept between iterations. ``clamp``: the
    revising sampler's bounds in the model's units (:func:`propose`), so training's chains start
    where synthesis's do.
    """

    def __init__(self, generator_net: ConvGenerator, *, chains_per_example: int = 1,
                 clamp: tuple[float, float] | None = None) -> None:
        as_int(chains_per_example, "chains_per_example", minimum=1)  # as every start's
        check_clamp(clamp)  # here, not at the first start, as a sampler's own clamp is
        self.generator_net = generator_net
        self.chains_per_example = chains_per_example
        self.clamp = clamp
        self._latent: Tensor | None = None
        self._pairs: list[tuple[Tensor, Tensor]] = []

    def start(self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
              ) -> Tensor:
        """``G(z)`` ``(B * chains_per_example, *S)`` for examples ``x_pos`` ``(B, *S)``."""
        if tuple(x_pos.shape[1:]) != self.generator_net.out_shape:
            raise ValueError(f"the generator makes examples {self.generator_net.out_shape}, the "
                             f"data are {tuple(x_pos.shape[1:])}")
        z = self.generator_net.sample_latent(len(x_pos) * self.chains_per_example,
                                             device=x_pos.device, generator=generator)
        self._latent = z
        return propose(self.generator_net, z, clamp=self.clamp).to(x_pos.dtype)

    def constraint(self, x_pos: Tensor) -> Constraint | None:
        """None: the chains of ``x_pos`` ``(B, *S)`` move freely."""
        return None

    def keep(self, x_neg: Tensor) -> None:
        """Pair the revised chains ``(B * chains_per_example, *S)`` with the latents of the
        last :meth:`start`."""
        if self._latent is None or len(self._latent) != len(x_neg):
            raise ValueError(f"keep got {len(x_neg)} chains, not those of the last start")
        self._pairs.append((self._latent, x_neg.detach()))
        self._latent = None

    def take(self) -> list[tuple[Tensor, Tensor]]:
        """Every ``(z, revised x)`` pair since the last call: ``(M, latent_dim)``,
        ``(M, *S)``."""
        pairs, self._pairs = self._pairs, []
        return pairs

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class LatentPosterior:
    """The energy of ``z`` given an example: ``|x - G(z)|^2 / (2 sigma^2) + |z|^2 / 2``, an
    :data:`~stgconv.types.EnergyFn` ``(B, latent_dim) -> (B,)`` for any sampler.

    Args:
        target: ``(B, *S)`` the examples ``x``.
        sigma: the generator's observation noise.
    """

    def __init__(self, generator_net: ConvGenerator, target: Tensor, *, sigma: float) -> None:
        self.generator_net = generator_net
        self.target = target
        self.sigma = sigma

    def __call__(self, z: Tensor) -> Tensor:
        """The energy ``(B,)`` of latents ``z`` ``(B, latent_dim)``."""
        residual = (self.target - self.generator_net(z)).flatten(1)
        return residual.pow(2).sum(1) / (2 * self.sigma**2) + z.pow(2).sum(1) / 2


class CooperativeTrainer(CompanionTrainer):
    """Cooperative learning of ``energy`` and ``generator_net`` on ``data``.

    The descriptor's step is :meth:`Trainer.step` with :class:`GeneratorStart` as the chain
    start; the generator then takes one Adam step on ``mean |G(z) - revised|^2`` over the
    iteration's chains. ``step`` adds ``generator_mse`` (that loss before the step: how far the
    revision moved the proposals, or with ``inference_steps`` how far the revised samples lie
    from ``G`` of their inferred latents) to the descriptor's statistics.

    Args:
        energy, sampler, data, train, generator, config, world: as :class:`Trainer` (``sampler``
            revises the proposals; ``generator`` is the random source of everything, ``z``
            included).
        generator_net: ``G``, whose ``out_shape`` must be the examples' ``(C, *S)``.
        cooperative: the generator's learning settings.
        chains_per_example: proposals per training example.
        clamp: the sampler's bounds in the model's units, applied to the proposals as
            synthesis does (:class:`GeneratorStart`).
    """

    def __init__(
        self,
        energy: EnergyModel,
        generator_net: ConvGenerator,
        sampler: Sampler,
        data: Tensor,
        *,
        cooperative: CooperativeConfig | None = None,
        chains_per_example: int = 1,
        clamp: tuple[float, float] | None = None,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: ExperimentConfig | dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        cooperative = section_or_default(cooperative, CooperativeConfig, "cooperative")
        self.proposals = GeneratorStart(generator_net, chains_per_example=chains_per_example,
                                        clamp=clamp)
        super().__init__(energy, sampler, self.proposals, data, train=train, generator=generator,
                         config=config, world=world)
        self.generator_net = generator_net
        self.companion = Companion("generator", generator_net, lr_setting="cooperative.lr",
                                   lr=cooperative.lr,
                                   betas=tuple(cooperative.betas),
                                   missing="the checkpoint holds no generator: it is not a "
                                           "cooperative run")
        self.generator_optimizer = self.companion.optimizer
        self.inference_sigma = cooperative.inference_sigma
        # The posterior's energy is a new closure every step: nothing to capture or cast.
        self.inference = (Langevin(n_steps=cooperative.inference_steps,
                                   step_size=cooperative.inference_step_size, precision="fp32",
                                   cuda_graph=False)
                          if cooperative.inference_steps > 0 else None)

    @training_step
    def step(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """One update of the descriptor and one of the generator; returns the descriptor's
        ``loss``, ``e_pos``, ``e_neg`` and ``generator_mse``. ``batches``: dataset indices
        ``(batch_size,)`` of each micro-batch (default: :meth:`draw_batches`).

        Neither net moves until both gradients are computed, so a step stopped part way (a
        chain of the latent inference that diverged, an interrupt) leaves both as they were, as
        :meth:`Trainer.step` does. Updated first, the descriptor took a second update when the
        step was retried."""
        # A step stopped part way left the pairs of the chains it had run: the generator
        # learns from this step's alone.
        self.proposals.take()
        stats = self.compute_gradients(batches)
        pairs = self.proposals.take()
        self.generator_optimizer.zero_grad(set_to_none=True)
        mse = 0.0
        for z, revised in pairs:
            if self.inference is not None:
                posterior = LatentPosterior(self.generator_net, revised, sigma=self.inference_sigma)
                try:
                    z = self.inference.run(posterior, z, generator=self.generator)
                except NonFiniteEnergyError as err:  # else taken for the descriptor's sampler
                    raise NonFiniteEnergyError(
                        f"{err.sampler} of the generator's latent inference "
                        "(cooperative.inference_step_size)", err.step, err.n_steps,
                        err.chains, advice="lower cooperative.inference_step_size") from err
            loss = (self.generator_net(z) - revised).pow(2).mean()
            if not torch.isfinite(loss):
                raise DivergenceError(f"non-finite generator loss at iteration "
                                      f"{self.iteration + 1}: {loss.item()}",
                                      advice=f"lower {self.companion.lr_setting}")
            (loss / len(pairs)).backward()
            mse += loss.item() / len(pairs)
        totals = {"generator_mse": mse}
        if self.world is not None:
            self.world.average_gradients(self.generator_net.parameters(), weight=self.batch_size)
            totals = self.world.average(totals, weight=self.batch_size)
        # The same updates as the descriptor's before the generator's gradient: that gradient
        # reads the revised chains and the generator alone.
        self.apply_gradients()
        self.generator_optimizer.step()
        return {**stats, **totals}


def is_cooperative(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds a generator (:class:`CooperativeTrainer`)."""
    return "generator_model" in state


def generator_from_state(state: dict[str, Any], checkpoint: str | Path) -> ConvGenerator:
    """The generator (eval mode, on CPU) of a loaded cooperative checkpoint.

    Raises:
        CheckpointError: the checkpoint holds no generator, or not a loadable one.
    """
    return companion_from_state(state, "generator", build_generator, checkpoint,
                                missing=f"{checkpoint} holds no generator (not a cooperative run)")


@torch.no_grad()
def propose(generator_net: ConvGenerator, z: Tensor, *,
            clamp: tuple[float, float] | None = None) -> Tensor:
    """``G(z)``: ``(N, latent_dim)`` -> ``(N, *out_shape)``, without a graph, bounded by
    ``clamp`` (the revising sampler's: its chains stay in the data's range, the generator's
    unsquashed output need not).

    Raises:
        ValueError: ``clamp`` not two real numbers ``low < high`` (torch's clamp set every
            entry to ``high`` without a word where ``low >= high``).
    """
    check_clamp(clamp)
    x = generator_net(z)
    return x if clamp is None else x.clamp(*clamp)


def _in_descriptor_dtype(proposals: Tensor, energy: EnergyModel) -> Tensor:
    """``proposals`` ``(N, *out_shape)`` in the dtype of ``energy``'s weights: a float64
    descriptor trained beside a float32 generator (the trainer casts the proposals to the
    data's dtype) refused them at synthesis ("expected x of dtype torch.float64"), with advice
    to convert what a command's user cannot."""
    weight = next(energy.parameters(), None)
    return proposals if weight is None else proposals.to(weight.dtype)


def propose_and_revise(
    energy: EnergyModel,
    generator_net: ConvGenerator,
    sampler: Sampler | None,
    z: Tensor,
    *,
    clamp: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Cooperative synthesis: the proposals ``G(z)`` and their revision by ``sampler`` on
    ``energy`` (``None``: no revision, the proposals themselves).

    Args:
        z: ``(N, latent_dim)`` latents.
        clamp: bounds of the proposals (:func:`propose`).

    Returns:
        ``(proposals, revised)``, both ``(N, *out_shape)`` in the dtype of ``energy``'s
        weights, as training hands the proposals to its sampler (in the data's dtype).

    Raises:
        ValueError: ``z`` not a tensor, or holding NaN or infinite values.
    """
    check_generator(generator, "propose_and_revise")
    check_tensor(z, "z")
    # Else NaN proposals came back as the samples without a sampler, and with one were refused
    # as a chain start "x0" that "holds NaN", which the caller never gave.
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z holds NaN or infinite values: latents must be finite")
    x0 = _in_descriptor_dtype(propose(generator_net, z, clamp=clamp), energy)
    if sampler is None:
        return x0, x0
    return x0, sampler.run(energy, x0, generator=generator)


def interpolate(
    energy: EnergyModel,
    generator_net: ConvGenerator,
    sampler: Sampler | None,
    z_start: Tensor,
    z_end: Tensor,
    *,
    n_points: int = 8,
    clamp: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Samples along the path between two latents (:func:`stgconv.shortrun.latent_path`):
    ``G(z)`` revised by ``sampler`` (``None``: not revised), every point with the same chain
    noise so the differences come from ``z`` alone.

    Args:
        z_start, z_end: ``(latent_dim,)``.
        clamp: bounds of the proposals (:func:`propose`).

    Returns:
        ``(n_points, *out_shape)``, in the dtype of ``energy``'s weights (as
        :func:`propose_and_revise`).

    Raises:
        ValueError: ends that are not ``(latent_dim,)`` (a batch of one, ``(1, latent_dim)``,
            was named as a ``z`` of shape ``(n_points, 1, latent_dim)`` never passed), or not
            finite.
    """
    check_generator(generator, "cooperative.interpolate")
    for name, end in (("z_start", z_start), ("z_end", z_end)):
        if isinstance(end, Tensor) and tuple(end.shape) != (generator_net.latent_dim,):
            raise ValueError(f"{name} must be one latent ({generator_net.latent_dim},), got "
                             f"{tuple(end.shape)}")
    starts = _in_descriptor_dtype(
        propose(generator_net, latent_path(z_start, z_end, n_points=n_points), clamp=clamp),
        energy)
    if sampler is None:
        return starts
    return run_each(energy, sampler, starts, generator=generator)
