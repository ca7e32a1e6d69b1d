"""Persistent chains: one set of chains per training example, continued across iterations."""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.checks import as_int, check_generator, check_tensor
from stgconv.mcmc.init import DataGaussian, NoiseInit, check_init


class PersistentChains:
    """Keeps ``chains_per_example`` chains for each of ``n_examples`` training examples.

    As in the original descriptor code, the chains of an example continue from where the last
    iteration that used that example left them. They are created from ``init`` the first time
    they are needed, so their shape follows the data.
    """

    def __init__(self, n_examples: int, init: NoiseInit | DataGaussian, *,
                 chains_per_example: int = 1) -> None:
        # as_int: a count of 1.5 failed inside torch at the first start.
        as_int(n_examples, "n_examples", minimum=1)
        as_int(chains_per_example, "chains_per_example", minimum=1)
        check_init(init, "PersistentChains")
        self.n_examples = n_examples
        self.init = init
        self.chains_per_example = chains_per_example
        self.chains: Tensor | None = None  # (n_examples, chains_per_example, *S)
        self._last: Tensor | None = None

    def __repr__(self) -> str:
        chains = None if self.chains is None else tuple(self.chains.shape)
        return (f"PersistentChains(n_examples={self.n_examples}, "
                f"chains_per_example={self.chains_per_example}, init={self.init!r}, "
                f"chains={chains})")

    def start(
        self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """The stored chains ``(B * chains_per_example, *S)`` of examples ``indices`` ``(B,)``
        (``x_pos`` ``(B, *S)`` gives their shape the first time).

        ``indices`` are integers in ``0 .. n_examples - 1``; their range is checked only when
        they are on the CPU (on a GPU the check would stop its queue every iteration)."""
        check_generator(generator, "PersistentChains.start")  # drawn from the first time only
        check_tensor(indices, "indices")  # a list or an array failed on "has no attribute 'dim'"
        if (indices.dim() != 1 or len(indices) != len(x_pos) or indices.is_floating_point()
                or indices.is_complex() or indices.dtype == torch.bool):
            raise ValueError(f"indices must be ({len(x_pos)},) integers, one example number per "
                             f"example of the batch, got {tuple(indices.shape)} {indices.dtype}")
        if (indices.device.type == "cpu" and len(indices)
                and not 0 <= int(indices.min()) <= int(indices.max()) < self.n_examples):
            raise ValueError(f"indices must be in 0 .. {self.n_examples - 1} (n_examples "
                             f"{self.n_examples}), got {int(indices.min())} .. "
                             f"{int(indices.max())}")
        if self.chains is None:
            shape = (self.n_examples, self.chains_per_example, *x_pos.shape[1:])
            self.chains = self.init.sample(shape, device=x_pos.device, dtype=x_pos.dtype,
                                           generator=generator)
        if self.chains.shape[2:] != x_pos.shape[1:]:
            raise ValueError(
                f"persistent chains have sample shape {tuple(self.chains.shape[2:])}, "
                f"batch has {tuple(x_pos.shape[1:])}"
            )
        if (self.chains.dtype, self.chains.device) != (x_pos.dtype, x_pos.device):
            # Else the stored chains came back as they were kept: float32 chains for a float64
            # batch, to be run on the batch's network, and chains on another device failed
            # inside torch (in the indexing, or in the network).
            raise ValueError(f"persistent chains are {self.chains.dtype} on {self.chains.device}, "
                             f"the batch {x_pos.dtype} on {x_pos.device}: give examples of the "
                             "chains' dtype and device, or load chains converted to the batch's")
        # As int64: torch indexes with uint8 as with a mask (the chains of the examples whose
        # number is not 0, without a word but a deprecation warning), and refuses int8 or int16.
        self._last = indices.long()
        return self.chains[self._last].flatten(0, 1)

    def constraint(self, x_pos: Tensor) -> None:
        """None: the chains of ``x_pos`` ``(B, *S)`` move freely."""
        return None

    def keep(self, x_neg: Tensor) -> None:
        """Store the finished chains ``(B * chains_per_example, *S)`` of the last
        :meth:`start`'s examples."""
        if self._last is None or self.chains is None:
            raise RuntimeError("keep() called before start()")
        expected = (len(self._last) * self.chains_per_example, *self.chains.shape[2:])
        if tuple(x_neg.shape) != expected or x_neg.dtype != self.chains.dtype:
            raise ValueError(f"keep takes the chains of the last start, {expected} "
                             f"{self.chains.dtype}, got {tuple(x_neg.shape)} {x_neg.dtype}")
        self.chains[self._last] = x_neg.detach().reshape(-1, self.chains_per_example,
                                                         *x_neg.shape[1:])
        self._last = None

    def state_dict(self) -> dict[str, Tensor]:
        """``{"chains": (n_examples, chains_per_example, *S)}``, or ``{}`` before the first
        :meth:`start`."""
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`'s ``{"chains": (n_examples, chains_per_example, *S)}``
        (``{}``: none yet); the chains are copied."""
        chains = state.get("chains")
        if chains is not None and chains.shape[:2] != (self.n_examples, self.chains_per_example):
            # Why, not only the shapes: a run resumed after images were added to its data folder
            # was told "(5, 8, 3, 32, 32), expected (6, 8, ...)".
            raise ValueError(
                f"checkpoint holds chains of shape {tuple(chains.shape)} ({chains.shape[1]} "
                f"for each of {chains.shape[0]} training examples), expected "
                f"({self.n_examples}, {self.chains_per_example}, ...): the run that saved them "
                "had another number of training examples or of chains per example"
            )
        # A copy: later in-place updates must not write into the caller's tensor.
        self.chains = None if chains is None else chains.clone()
