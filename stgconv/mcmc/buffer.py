"""Replay buffer of past chain states (Du & Mordatch 2019; Grathwohl et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.checks import as_int, check_finite_number
from stgconv.mcmc.init import DataGaussian, NoiseInit, check_init


class ReplayBuffer:
    """Chains start from stored past samples, a fraction ``fresh`` of them from new noise.

    The buffer fills up to ``capacity`` with finished chains (oldest replaced first) and is saved
    in checkpoints through ``state_dict``.
    """

    def __init__(
        self, capacity: int, init: NoiseInit | DataGaussian, *, fresh: float = 0.05,
        chains_per_example: int = 1,
    ) -> None:
        # as_int: a capacity of 4.5 failed inside torch once the buffer filled, 1.5 chains
        # per example at the first start.
        as_int(capacity, "capacity", minimum=1)
        as_int(chains_per_example, "chains_per_example", minimum=1)
        check_init(init, "ReplayBuffer")
        # A number first: a string failed on "'<=' not supported", and True passed as 1.
        check_finite_number(fresh, "fresh")
        if not 0.0 <= fresh <= 1.0:
            raise ValueError(f"fresh must be in [0, 1], got {fresh}")
        self.capacity = capacity
        self.init = init
        self.fresh = fresh
        self.chains_per_example = chains_per_example
        # The stored chains are its first _count rows; room for more is made by _reserve.
        self._storage: Tensor | None = None
        self._count = 0
        self._next = 0  # oldest entry, overwritten next once the buffer is full

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (f"ReplayBuffer(capacity={self.capacity}, fresh={self.fresh}, "
                f"chains_per_example={self.chains_per_example}, init={self.init!r}, "
                f"stored={len(self)})")

    @property
    def samples(self) -> Tensor | None:
        """The stored chains ``(n_stored, *S)`` (a view, in slot order); ``None`` before any
        is kept."""
        return None if self._storage is None else self._storage[: self._count]

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
        if (self.samples.dtype, self.samples.device) != (x0.dtype, x0.device):
            # Else float32 samples were promoted into a float64 batch's chains without a word
            # (and keep then refused them), and samples on another device failed inside torch.
            raise ValueError(f"replay buffer holds samples {self.samples.dtype} on "
                             f"{self.samples.device}, the batch is {x0.dtype} on {x0.device}: "
                             "give examples of the samples' dtype and device, or load samples "
                             "converted to the batch's")
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
        added = x_neg[: self.capacity - self._count]
        self._reserve(self._count + len(added), x_neg)
        self._storage[self._count : self._count + len(added)] = added
        self._count += len(added)
        x_neg = x_neg[len(added) :]
        if len(x_neg):
            # Full: overwrite the oldest entries, ring-buffer style.
            slots = (self._next + torch.arange(len(x_neg), device=x_neg.device)) % self.capacity
            self._storage[slots] = x_neg
            self._next = (self._next + len(x_neg)) % self.capacity

    def _reserve(self, n_stored: int, like: Tensor) -> None:
        """Room for ``n_stored`` chains like ``like`` ``(M, *S)``, the stored ones kept. The room
        grows to at least twice what it was (at most the capacity), so all its growing while the
        buffer fills copies fewer chains than the buffer holds. Grown by each keep's chains, it
        copied every stored chain at every keep, a cost that rose with the fill (capacity 10000,
        32 MNIST chains an iteration: 0.2 ms at the start, 18 ms at the end, 4.5 s over the 312
        iterations of filling, one thread)."""
        room = 0 if self._storage is None else len(self._storage)
        if self._storage is not None and n_stored <= room:
            return
        storage = like.new_empty((min(self.capacity, max(n_stored, 2 * room)), *like.shape[1:]))
        if self._storage is not None:
            storage[: self._count] = self.samples
        self._storage = storage

    def state_dict(self) -> dict[str, Tensor]:
        """``{"samples": (n_stored, *S), "next": 0-dim}`` (``next``: the slot overwritten
        next), or ``{}`` while empty."""
        if self._storage is None:
            return {}
        # A copy while filling: saved, a view would write its whole room.
        samples = self._storage if self._count == len(self._storage) else self.samples.clone()
        return {"samples": samples, "next": torch.tensor(self._next)}

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
        if samples is None:
            self._storage, self._count = None, 0
        else:  # copied: later in-place updates must not write into the caller's tensor
            self._storage, self._count = samples.clone(), len(samples)
        self._next = next_slot
