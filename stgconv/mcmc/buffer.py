"""Replay buffer of past chain states (Du & Mordatch 2019; Grathwohl et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.mcmc.init import DataGaussian, NoiseInit


class ReplayBuffer:
    """Chains start from stored past samples, a fraction ``fresh`` of them from new noise.

    The buffer fills up to ``capacity`` with finished chains (oldest replaced first) and is saved
    in checkpoints through ``state_dict``.
    """

    def __init__(
        self, capacity: int, init: NoiseInit | DataGaussian, *, fresh: float = 0.05,
        chains_per_example: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if chains_per_example < 1:
            raise ValueError(f"chains_per_example must be >= 1, got {chains_per_example}")
        if not 0.0 <= fresh <= 1.0:
            raise ValueError(f"fresh must be in [0, 1], got {fresh}")
        self.capacity = capacity
        self.init = init
        self.fresh = fresh
        self.chains_per_example = chains_per_example
        self.samples: Tensor | None = None  # (n_stored, *S)
        self._next = 0  # oldest entry, overwritten next once the buffer is full

    def __len__(self) -> int:
        return 0 if self.samples is None else self.samples.shape[0]

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Chain starts ``(B * chains_per_example, *S)`` for ``x_pos`` ``(B, *S)``: stored
        samples, a share ``fresh`` of them (all while the buffer is empty) from ``init``."""
        n = x_pos.shape[0] * self.chains_per_example
        kw = dict(device=x_pos.device, dtype=x_pos.dtype, generator=generator)
        x0 = self.init.sample((n, *x_pos.shape[1:]), **kw)
        if len(self) == 0:
            return x0
        if self.samples.shape[1:] != x0.shape[1:]:
            raise ValueError(
                f"replay buffer holds samples of shape {tuple(self.samples.shape[1:])}, "
                f"batch has {tuple(x0.shape[1:])}"
            )
        from_buffer = torch.rand(n, device=x_pos.device, generator=generator) >= self.fresh
        picks = torch.randint(len(self), (n,), device=x_pos.device, generator=generator)
        return torch.where(from_buffer.reshape(-1, *[1] * (x0.dim() - 1)), self.samples[picks], x0)

    def constraint(self, x_pos: Tensor) -> None:
        """None: the chains of ``x_pos`` ``(B, *S)`` move freely."""
        return None

    def keep(self, x_neg: Tensor) -> None:
        """Store the finished chains ``x_neg`` ``(M, *S)``, replacing the oldest once full;
        their sample shape and dtype must be those stored."""
        if self.samples is not None and (x_neg.shape[1:] != self.samples.shape[1:]
                                         or x_neg.dtype != self.samples.dtype):
            raise ValueError(f"replay buffer holds samples {tuple(self.samples.shape[1:])} "
                             f"{self.samples.dtype}, got chains {tuple(x_neg.shape)} "
                             f"{x_neg.dtype}")
        x_neg = x_neg.detach()[-self.capacity :]
        if self.samples is None:
            self.samples = x_neg.new_empty((0, *x_neg.shape[1:]))
        room = self.capacity - len(self)
        if room > 0:
            self.samples = torch.cat([self.samples, x_neg[:room]])
            x_neg = x_neg[room:]
        if len(x_neg):
            # Full: overwrite the oldest entries, ring-buffer style.
            slots = (self._next + torch.arange(len(x_neg), device=x_neg.device)) % self.capacity
            self.samples[slots] = x_neg
            self._next = (self._next + len(x_neg)) % self.capacity

    def state_dict(self) -> dict[str, Tensor]:
        """``{"samples": (n_stored, *S), "next": 0-dim}`` (``next``: the slot overwritten
        next), or ``{}`` while empty."""
        if self.samples is None:
            return {}
        return {"samples": self.samples, "next": torch.tensor(self._next)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`'s ``{"samples": (n_stored, *S), "next": 0-dim}``
        (``{}``: empty), ``n_stored`` at most ``capacity``; the samples are copied."""
        samples = state.get("samples")
        if samples is not None and samples.shape[0] > self.capacity:
            raise ValueError(
                f"checkpoint buffer holds {samples.shape[0]} samples, capacity is {self.capacity}"
            )
        next_slot = int(state["next"]) if "next" in state else 0
        if not 0 <= next_slot < self.capacity:
            raise ValueError(f"checkpoint buffer's next slot is {next_slot}, outside 0 .. "
                             f"{self.capacity - 1} (capacity {self.capacity})")
        # A copy: later in-place updates must not write into the caller's tensor.
        self.samples = None if samples is None else samples.clone()
        self._next = next_slot
