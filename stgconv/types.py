"""Tensor layouts used across stgconv, the one callable type every sampler consumes, and the
shape of a classical fill.

Layouts (batch first, channels second):

- image: ``(B, C, H, W)``
- video: ``(B, C, T, H, W)``
- voxel: ``(B, 1, D, H, W)``
- energy: ``(B,)``, one value per sample; lower means more probable.

Samplers work on any ``(B, *S)`` layout: they only ever call an :data:`EnergyFn`.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

EnergyFn = Callable[[Tensor], Tensor]
"""Maps a batch ``(B, *S)`` to energies ``(B,)``; lower = more probable."""

Fill = Callable[[Tensor, Tensor], Tensor]
"""A classical completion ``fill(observed, known) -> filled``: ``known`` is bool and broadcasts to
``observed`` (True = observed); ``filled`` has ``observed``'s shape and keeps its observed entries.
Every registry of fills (:mod:`stgconv.baselines`) and every chain start from a fill takes it."""
