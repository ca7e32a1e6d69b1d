"""Voxel energies ``(B, 1, D, H, W) -> (B,)``: the 3D descriptor network (Xie et al., CVPR 2018).

- ``desc32``: the paper's 32^3 network: 200 filters 16^3 stride 3, 100 filters 6^3 stride 2
  ("same" padding, as in the authors' code), then a fully connected layer to one score.
- ``desc64_sr``: the 64^3 network of the authors' super-resolution code: 200 filters 16^3
  stride 3, then the fully connected score. Padded 7 on every side: 21^3 positions, where
  their "same" padding (7 before, 8 after) gives 22^3; every voxel is seen either way.
- ``desc32_small`` / ``desc64_small``: the same structures with fewer, smaller filters for CPUs.

All grids are cubic: ``D = H = W = size``.
"""

from __future__ import annotations

from typing import Any, Sequence

from stgconv.energy.base import Activation, ConvNetEnergy

VOXEL_PRESETS: dict[str, dict[str, Any]] = {
    "desc32": {"size": 32, "layers": [[200, 16, 3, 7], [100, 6, 2, 3]]},
    "desc64_sr": {"size": 64, "layers": [[200, 16, 3, 7]]},
    "desc32_small": {"size": 32, "layers": [[32, 8, 2, 3], [32, 4, 2, 1]]},
    "desc64_small": {"size": 64, "layers": [[16, 8, 4, 2], [32, 4, 2, 1]]},
}


def voxel_energy(
    arch: str,
    *,
    size: int | None = None,
    layers: Sequence[Sequence[Any]] | None = None,
    activation: Activation = "relu",
    reference_sigma: float | None = 0.5,
) -> ConvNetEnergy:
    """Build a voxel energy from a preset.

    Args:
        arch: one of :data:`VOXEL_PRESETS`.
        size: grid side (default: the preset's); the fully connected head fixes it.
        layers: rows ``(out_channels, kernel, stride[, padding])`` replacing the preset's.
        reference_sigma: 0.5 as in the authors' code.

    Returns:
        the energy, ``(B, 1, D, D, D) -> (B,)``, ``D`` the grid side.
    """
    if arch not in VOXEL_PRESETS:
        raise ValueError(f"unknown voxel architecture {arch!r}; choose from "
                         f"{sorted(VOXEL_PRESETS)}")
    preset = VOXEL_PRESETS[arch]
    side = size if size is not None else preset["size"]
    return ConvNetEnergy(
        spatial_dims=3,
        in_channels=1,
        layers=layers if layers is not None else preset["layers"],
        head="linear",
        input_size=(side, side, side),
        activation=activation,
        reference_sigma=reference_sigma,
    )
