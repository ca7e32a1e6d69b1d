"""Image energies ``(B, C, H, W) -> (B,)``: the generative ConvNet presets.

- ``texture``: Xie et al. 2016 ("A Theory of Generative ConvNet"), stationary texture model:
  100 filters 15x15 stride 3, 70 filters 9x9, 30 filters 7x7, ReLU, responses summed over all
  positions, so it applies to any image size. Unpadded: where ``side - 15`` is not a multiple
  of 3 the stride-3 layer never reaches the last ``(side - 15) % 3`` rows and columns (one at
  64), which the samples leave at the reference's grey; sides 63 or 66 are seen whole. Zero
  padding (7, 4, 3) sees every pixel but was measured worse: on the demo's brick photograph
  its samples became a saturated grid of dots where the unpadded net's show courses of
  bricks (2026-12-02).
- ``object``: the same paper's object setting: 100 filters 7x7 stride 2, 64 filters 5x5, then a
  fully connected layer to one score.
- ``descriptor64``: the 64x64 net of Gao et al. 2018 (multi-grid learning): four 5x5 stride-2
  convolutions with 64/128/256/512 channels, leaky ReLU, fully connected score.
- ``descriptor16`` / ``descriptor4``: the same paper's nets for the 16x16 and 4x4 grids of its
  image pyramid: a 5x5 stride-2 convolution with 96 channels, then 3x3 convolutions (stride 1)
  with 128/256/512 (16x16) or 128/256 (4x4) channels, leaky ReLU, fully connected score.
  The authors' code (ruiqigao/Multigrid_learning, model.py and ops.py) also batch-normalises
  every convolution; these nets do not, so that an example's energy does not depend on the
  rest of its batch.
"""

from __future__ import annotations

from typing import Any, Sequence

from stgconv.energy.base import Activation, ConvNetEnergy

IMAGE_PRESETS: dict[str, dict[str, Any]] = {
    "texture": {
        "layers": [[100, 15, 3], [70, 9, 1], [30, 7, 1]],
        "head": "sum",
        "activation": "relu",
    },
    "object": {
        "layers": [[100, 7, 2, 3], [64, 5, 1, 2]],
        "head": "linear",
        "activation": "relu",
    },
    "descriptor64": {
        "layers": [[64, 5, 2, 2], [128, 5, 2, 2], [256, 5, 2, 2], [512, 5, 2, 2]],
        "head": "linear",
        "activation": "leaky_relu",
    },
    "descriptor16": {
        "layers": [[96, 5, 2, 2], [128, 3, 1, 1], [256, 3, 1, 1], [512, 3, 1, 1]],
        "head": "linear",
        "activation": "leaky_relu",
    },
    "descriptor4": {
        "layers": [[96, 5, 2, 2], [128, 3, 1, 1], [256, 3, 1, 1]],
        "head": "linear",
        "activation": "leaky_relu",
    },
}


def image_energy(
    arch: str,
    *,
    in_channels: int = 3,
    image_size: int = 64,
    layers: Sequence[Sequence[int]] | None = None,
    activation: Activation | None = None,
    reference_sigma: float | None = 1.0,
) -> ConvNetEnergy:
    """Build an image energy from a preset, optionally replacing its layers or activation.

    Args:
        arch: one of :data:`IMAGE_PRESETS`.
        in_channels: 1 (grey) or 3 (RGB).
        image_size: ``H = W`` for presets with a fully connected head; ignored by ``texture``.
        layers, activation: replace the preset's.
        reference_sigma: sigma of the Gaussian reference term ``|x|^2 / (2 sigma^2)``; 1.0 here,
            while a config's ``model.reference_sigma`` defaults to 0.05; ``None`` drops it.

    Returns:
        the energy, ``(B, C, H, W) -> (B,)``.
    """
    if arch not in IMAGE_PRESETS:
        raise ValueError(f"unknown image architecture {arch!r}; choose from "
                         f"{sorted(IMAGE_PRESETS)}")
    preset = IMAGE_PRESETS[arch]
    head = preset["head"]
    return ConvNetEnergy(
        spatial_dims=2,
        in_channels=in_channels,
        layers=layers if layers is not None else preset["layers"],
        head=head,
        input_size=(image_size, image_size) if head == "linear" else None,
        activation=activation or preset["activation"],
        reference_sigma=reference_sigma,
    )
