"""Video energies ``(B, C, T, H, W) -> (B,)``: the spatial-temporal generative ConvNet (STGConvNet).

- ``st``: spatially and temporally stationary (Xie, Zhu, Wu, CVPR 2017): 120 filters 15x15x15
  stride 7, 40 filters 7x7x7 stride 3, 20 filters 2x3x3 stride (1, 2, 2), the top layer's
  responses summed over every space-time position, so the model applies to clips of any size
  and length (dynamic textures: water, fire, smoke). The sizes are those of the ST net in the
  public TensorFlow STGConvNet code (zilongzheng/STGConvNet, src/model.py), whose "SAME"
  padding is replaced by symmetric padding of about half a kernel (same output sizes on 70
  frames of 100 or 224 pixels, except one more top position in time).
- ``fc_s``: spatially fully connected, stationary in time only (scenes whose layout matters,
  actions): 120 filters 5x5x5 stride 2, then 30 filters spanning the whole remaining frame and 5
  frames, then 10 temporal filters, summed over time: the FC_S descriptor of the authors'
  spatial-temporal CoopNets code (jianwen-xie/Spatial-Temporal-CoopNets,
  src/CoopNets_video.py). The STGConvNet TensorFlow code has other FC_S sizes (120 7x7x7, 30
  spanning the frame over 5 or 4 frames, 5 temporal filters of 2 frames).
- ``st_small`` / ``fc_s_small``: the same structures with fewer, smaller filters for CPU runs.

Kernels and strides are ``(t, h, w)``.
"""

from __future__ import annotations

from typing import Any, Sequence

from stgconv.checks import as_int
from stgconv.energy.base import Activation, ConvNetEnergy

# Zero padding of about half a kernel lets every frame and pixel, borders included, reach the top
# layer; without it the last frames of a clip whose length does not fit the strides get no
# gradient from f at all and stay at the reference mean.
ST_PRESETS: dict[str, list[list[Any]]] = {
    "st": [
        [120, (15, 15, 15), (7, 7, 7), (7, 7, 7)],
        [40, (7, 7, 7), (3, 3, 3), (3, 3, 3)],
        [20, (2, 3, 3), (1, 2, 2), (1, 1, 1)],
    ],
    "st_small": [
        [16, (5, 7, 7), (2, 3, 3), (2, 3, 3)],
        [16, (3, 4, 4), (1, 2, 2), (1, 1, 1)],
        [8, (2, 2, 2), (1, 1, 1)],
    ],
}
FC_S_WIDTHS: dict[str, tuple[int, int, int]] = {"fc_s": (120, 30, 10), "fc_s_small": (16, 8, 4)}
VIDEO_ARCHS = (*ST_PRESETS, *FC_S_WIDTHS)


def frame_size_for(arch: str, side: int) -> tuple[int, int] | None:
    """The ``frame_size`` :func:`video_energy` takes for square frames of ``side`` under
    ``arch``: ``(side, side)`` for the presets that span the frame, ``None`` (refused
    otherwise) for those whose filters slide over frames of any size."""
    return (side, side) if arch in FC_S_WIDTHS else None


def _fc_s_layers(widths: tuple[int, int, int], frame_size: Sequence[int]) -> list[list[Any]]:
    """The FC_S stack for frames of ``frame_size`` ``(H, W)``: layer 2 spans the whole frame."""
    height, width = ((n + 2 * 2 - 5) // 2 + 1 for n in frame_size)  # after 5x5x5, stride 2, pad 2
    first, second, third = widths
    return [
        [first, (5, 5, 5), (2, 2, 2), (2, 2, 2)],
        [second, (5, height, width), (2, 1, 1), (2, 0, 0)],
        [third, (5, 1, 1), (2, 1, 1), (2, 0, 0)],
    ]


def _frame_sides(frame_size: Sequence[Any]) -> tuple[int, int]:
    """``frame_size`` ``(H, W)`` as two Python ints, or ``ValueError`` naming it: a side of 0
    or 64.0 was refused as the net's ``input_size`` ``(None, 0, 4)``, an argument the caller
    never gave, letters failed inside the layers' arithmetic, and a tensor's sides were kept
    as tensors in the net's config."""
    try:
        height, width = (as_int(side, "frame_size", minimum=1) for side in frame_size)
    except ValueError:  # named with the whole pair, not the one side
        raise ValueError(f"frame_size must be (H, W), two ints >= 1, got {frame_size!r}"
                         ) from None
    return height, width


def video_energy(
    arch: str,
    *,
    in_channels: int = 3,
    frame_size: Sequence[int] | None = None,
    layers: Sequence[Sequence[Any]] | None = None,
    activation: Activation = "relu",
    reference_sigma: float | None = 0.05,
) -> ConvNetEnergy:
    """Build a video energy from a preset, optionally replacing its layer stack.

    Args:
        arch: one of :data:`VIDEO_ARCHS`.
        frame_size: ``(H, W)``; required by the ``fc_s`` presets, whose second layer spans the
            frame. The result then only accepts frames of that size (any number of frames).
            Refused for the ``st`` presets, whose filters slide over frames of any size.
        layers: rows ``(out_channels, kernel, stride[, padding])`` replacing the preset.

    Returns:
        the energy, ``(B, in_channels, T, H, W) -> (B,)``.
    """
    if arch not in VIDEO_ARCHS:
        raise ValueError(f"unknown video architecture {arch!r}; choose from {list(VIDEO_ARCHS)}")
    if frame_size is not None and arch not in FC_S_WIDTHS:
        # Ignored without a word, a caller took the net for one fixed to that frame size.
        raise ValueError(f"{arch} reads no frame_size (its filters slide over frames of any "
                         f"size; only {', '.join(FC_S_WIDTHS)} span the frame), got "
                         f"frame_size={frame_size!r}: leave it out")
    fixed_frame = frame_size is not None  # an st preset refused it above
    if arch in FC_S_WIDTHS and (layers is None or fixed_frame):
        # A bare side (frame_size=64 for square frames) failed as "object of type 'int' has
        # no len()".
        if frame_size is None or not hasattr(frame_size, "__len__") or len(frame_size) != 2:
            raise ValueError(f"{arch} needs frame_size=(H, W), got {frame_size}")
        frame_size = _frame_sides(frame_size)
        if layers is None:
            layers = _fc_s_layers(FC_S_WIDTHS[arch], frame_size)
    elif layers is None:
        layers = ST_PRESETS[arch]
    return ConvNetEnergy(
        spatial_dims=3,
        in_channels=in_channels,
        layers=layers,
        head="sum",
        input_size=(None, *frame_size) if fixed_frame else None,
        activation=activation,
        reference_sigma=reference_sigma,
    )
