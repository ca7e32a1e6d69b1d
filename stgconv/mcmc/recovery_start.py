"""Recovery training (3D descriptor net): chains complete randomly hidden entries of each example.

A sibling of :class:`stgconv.mcmc.starts.SuperResolutionStart`: the negative samples are the
model's own completions of corrupted training examples, so the model learns exactly what the
recovery task asks of it (the authors' ``rec_exp.py`` trains this way).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from stgconv.mcmc.constraints import Constraint, KnownEntries

Fill = Callable[[Tensor, Tensor], Tensor]
"""``fill(observed (B, *S), known) -> (B, *S)``: a classical completion to start chains from."""


class RecoveryStart:
    """Each call to :meth:`start` hides a fresh random ``missing`` fraction of every example's
    entries; the chain starts from ``fill`` of what remains, and :meth:`constraint` (for the same
    batch) keeps the observed entries fixed.

    Args:
        missing: fraction of entries hidden, in ``(0, 1)``; each entry independently.
        fill: the starting completion (e.g. :func:`stgconv.voxel_baselines.nearest_known_fill`).
    """

    def __init__(self, missing: float, fill: Fill) -> None:
        if not 0.0 < missing < 1.0:
            raise ValueError(f"missing must be in (0, 1), got {missing}")
        self.missing = missing
        self.fill = fill
        self.chains_per_example = 1
        self._known: Tensor | None = None

    def start(self, x_pos: Tensor, indices: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Chain starts ``(B, *S)``; remembers the mask for :meth:`constraint`."""
        draw = torch.rand(x_pos.shape, generator=generator, device=x_pos.device)
        self._known = draw >= self.missing
        return self.fill(x_pos, self._known)

    def constraint(self, x_pos: Tensor) -> Constraint:
        if self._known is None or self._known.shape != x_pos.shape:
            raise RuntimeError("constraint() needs the start() of the same batch first")
        return KnownEntries(x_pos, self._known)

    def keep(self, x_neg: Tensor) -> None:
        self._known = None

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass
