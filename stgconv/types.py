"""Tensor layouts used across stgconv and the one callable type every sampler consumes.

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
