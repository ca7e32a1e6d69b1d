"""Analysis by synthesis: the maximum-likelihood training loop of descriptor models.

Each iteration draws a batch of observed examples, starts chains for it (noise, data, persistent
chains or a replay buffer), runs the sampler on the *current* energy, and takes one Adam step on
``mean E(data) - mean E(samples)``. Everything random flows from one ``torch.Generator``, whose
state is checkpointed, so a resumed run takes exactly the step an uninterrupted run would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from stgconv.checkpoint import load_checkpoint, save_checkpoint
from stgconv.energy.base import EnergyModel
from stgconv.losses import contrastive_divergence
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.starts import ChainStart


class Trainer:
    """Fits ``energy`` to ``data`` by maximum likelihood with MCMC samples.

    Args:
        energy: the model; its parameters are optimised with Adam.
        sampler: any sampler (``Langevin``, ``MALA``, ``HMC``).
        chains: where each iteration's chains start (:mod:`stgconv.mcmc.starts`).
        data: ``(N, *S)`` all training examples, on the training device.
        batch_size: examples per micro-batch (capped at ``N``).
        accumulate: micro-batches whose gradients are summed before each optimizer step.
        lr, betas: Adam settings.
        energy_l2: weight of the ``mean(E^2)`` penalty that keeps energies near zero.
        generator: the single source of randomness (batches, chain starts, sampler noise).
        config: plain-data resolved config, stored in checkpoints.
    """

    def __init__(
        self,
        energy: EnergyModel,
        sampler: Sampler,
        chains: ChainStart,
        data: Tensor,
        *,
        batch_size: int = 16,
        accumulate: int = 1,
        lr: float = 0.01,
        betas: tuple[float, float] = (0.5, 0.999),
        energy_l2: float = 0.0,
        generator: torch.Generator | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        if data.dim() < 2 or data.shape[0] < 1:
            raise ValueError(f"data must be (N, *S) with N >= 1, got {tuple(data.shape)}")
        self.energy = energy
        self.sampler = sampler
        self.chains = chains
        self.data = data
        self.batch_size = min(batch_size, data.shape[0])
        self.accumulate = accumulate
        self.energy_l2 = energy_l2
        self.generator = generator if generator is not None else torch.Generator(data.device)
        self.optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=betas)
        self.config = config or {}
        self.iteration = 0
        self.last_samples: Tensor | None = None

    def step(self) -> dict[str, float]:
        """One optimizer update; returns the loss and mean energies of data and samples."""
        self.optimizer.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "e_pos": 0.0, "e_neg": 0.0}
        for _ in range(self.accumulate):
            indices = torch.randperm(
                self.data.shape[0], generator=self.generator, device=self.generator.device
            )[: self.batch_size].to(self.data.device)
            x_pos = self.data[indices]
            x0 = self.chains.start(x_pos, indices, generator=self.generator)
            x_neg = self.sampler.run(self.energy, x0, constraint=self.chains.constraint(x_pos),
                                     generator=self.generator)
            self.chains.keep(x_neg)
            loss, stats = contrastive_divergence(self.energy, x_pos, x_neg, energy_l2=self.energy_l2)
            (loss / self.accumulate).backward()
            totals["loss"] += loss.item() / self.accumulate
            totals["e_pos"] += stats["e_pos"].item() / self.accumulate
            totals["e_neg"] += stats["e_neg"].item() / self.accumulate
            self.last_samples = x_neg
        self.optimizer.step()
        self.iteration += 1
        return totals

    def fit(
        self,
        n_iterations: int,
        *,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        log_dir: str | Path | None = None,
        progress: bool = True,
        on_iteration: Callable[["Trainer", dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``self.iteration == n_iterations`` (so a resumed trainer continues).

        Writes a checkpoint every ``checkpoint_every`` iterations and at the end when
        ``checkpoint_path`` is set, and TensorBoard scalars when ``log_dir`` is set.
        """
        writer = SummaryWriter(str(log_dir)) if log_dir is not None else None
        history = []
        bar = tqdm(total=n_iterations, initial=self.iteration, disable=not progress, desc="train")
        try:
            while self.iteration < n_iterations:
                stats = self.step()
                history.append(stats)
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3g}", e_pos=f"{stats['e_pos']:.3g}",
                                e_neg=f"{stats['e_neg']:.3g}")
                if writer is not None:
                    for key, value in stats.items():
                        writer.add_scalar(f"train/{key}", value, self.iteration)
                if on_iteration is not None:
                    on_iteration(self, stats)
                due = checkpoint_every > 0 and self.iteration % checkpoint_every == 0
                if checkpoint_path is not None and (due or self.iteration == n_iterations):
                    self.save(checkpoint_path)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return history

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "model": self.energy.state_dict(),
            "model_config": self.energy.config,
            "optimizer": self.optimizer.state_dict(),
            "chains": self.chains.state_dict(),
            "generator": self.generator.get_state(),
            "config": self.config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.energy.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.chains.load_state_dict(state["chains"])
        # RNG states are CPU byte tensors even for CUDA generators.
        self.generator.set_state(state["generator"].cpu())
        self.iteration = int(state["iteration"])

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(self.state_dict(), path)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        self.load_state_dict(load_checkpoint(path, map_location=self.data.device))
