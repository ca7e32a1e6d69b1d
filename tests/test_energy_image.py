"""The image energies: the Gaussian reference term is exactly ``|x|^2 / (2 sigma^2)``; the
stationary (``"sum"``) head is size-agnostic and shift-invariant; bad inputs fail with messages
that name the expected shape. The contract every preset meets (``(B,)``, differentiable, per
example, rebuilt from its config) is in ``test_energy.py``."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from stgconv.energy import IMAGE_PRESETS, ConvNetEnergy, image_energy

SIZE = 64  # the texture preset's receptive field is 57 pixels, so 64 is the smallest round size
CHANNELS = 1
BATCH = 2


def make(arch: str, **kw) -> ConvNetEnergy:
    torch.manual_seed(0)
    return image_energy(arch, in_channels=CHANNELS, image_size=SIZE, **kw)


def images(batch: int = BATCH, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, CHANNELS, size, size,
                      generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("arch", sorted(IMAGE_PRESETS))
@pytest.mark.parametrize("sigma", [0.05, 1.0])
def test_reference_term(arch: str, sigma: float) -> None:
    energy = make(arch, reference_sigma=sigma).double()
    x = images().double()
    expected = -energy.response(x) + x.flatten(1).pow(2).sum(1) / (2 * sigma**2)
    torch.testing.assert_close(energy(x), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("arch", sorted(IMAGE_PRESETS))
def test_no_reference_term(arch: str) -> None:
    energy = make(arch, reference_sigma=None)
    x = images()
    assert energy.reference_sigma is None
    assert torch.equal(energy(x), -energy.response(x))


def test_a_reference_sigma_past_1e154_is_no_reference_term() -> None:
    """Its square overflows a float: ``sigma**2`` raised OverflowError (a traceback from
    ``stgconv train --set model.reference_sigma=1e300``, which the config now refuses as past
    float32's range); the term's limit is 0."""
    energy = make("texture", reference_sigma=1e300)
    x = images()
    assert torch.equal(energy(x), -energy.response(x))


@pytest.mark.parametrize("sigma", [0.0, math.nan, math.inf])
def test_bad_reference_sigma(sigma: float) -> None:
    # NaN passed: every energy was NaN, and the first chain stopped as one that diverged.
    with pytest.raises(ValueError, match="reference_sigma must be finite and > 0"):
        image_energy("texture", reference_sigma=sigma)


def test_sum_head_accepts_any_size() -> None:
    energy = make("texture")
    for size in (SIZE, SIZE + 17):
        assert energy(images(size=size)).shape == (BATCH,)


def test_sum_head_is_shift_invariant_by_the_total_stride() -> None:
    """Content inside a large zero canvas, moved by the total stride (3), gives the same response.

    Every output position whose receptive field (57 px) touches the content lies inside the
    canvas in both placements, and every other position sees only zeros, so the summed response
    is the same set of numbers in a different order: equal up to float64 summation rounding.
    A shift of 1 pixel is not a multiple of the stride and must change it (the check is not
    vacuous).
    """
    energy = make("texture").double()
    patch = images(batch=1, size=12).double()
    canvas, offset = 144, 63  # 63 >= 57 and 144 - (66 + 12) >= 57: the content never sees a border

    def placed(shift: int) -> torch.Tensor:
        x = torch.zeros(1, CHANNELS, canvas, canvas, dtype=torch.float64)
        o = offset + shift
        x[..., o : o + 12, o : o + 12] = patch
        return x

    base = energy.response(placed(0))
    torch.testing.assert_close(energy.response(placed(3)), base, rtol=1e-12, atol=1e-9)
    assert not torch.allclose(energy.response(placed(1)), base, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(IMAGE_PRESETS))
def test_wrong_channel_count(arch: str) -> None:
    energy = make(arch)
    x = torch.zeros(BATCH, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"expected input of shape \('B', 1"):
        energy(x)


@pytest.mark.parametrize("arch", sorted(IMAGE_PRESETS))
def test_wrong_rank(arch: str) -> None:
    energy = make(arch)
    with pytest.raises(ValueError, match="expected input of shape"):
        energy(torch.zeros(CHANNELS, SIZE, SIZE))


@pytest.mark.parametrize("arch", [a for a in sorted(IMAGE_PRESETS)
                                  if IMAGE_PRESETS[a]["head"] == "linear"])
def test_linear_head_rejects_other_sizes(arch: str) -> None:
    energy = make(arch)
    with pytest.raises(ValueError, match=rf"expected input of shape \('B', 1, {SIZE}, {SIZE}\)"):
        energy(images(size=SIZE // 2))


def test_too_small_for_receptive_field() -> None:
    energy = make("texture")
    smallest = energy.smallest_size()
    needs = f"receptive field: it needs at least {smallest}"
    with pytest.raises(ValueError, match=re.escape(needs)):
        energy(images(size=32))
    # The smallest size is the smallest: one less on either side is refused, it is not.
    side_h, side_w = smallest
    energy.check_size((side_h, side_w))
    for size in ((side_h - 1, side_w), (side_h, side_w - 1)):
        with pytest.raises(ValueError, match="receptive field"):
            energy.check_size(size)


@pytest.mark.parametrize(("arch", "convolutions", "activation"), [
    ("texture", [(100, 15, 3, 0), (70, 9, 1, 0), (30, 7, 1, 0)], nn.ReLU),
    ("object", [(100, 7, 2, 3), (64, 5, 1, 2)], nn.ReLU),
    ("descriptor64", [(64, 5, 2, 2), (128, 5, 2, 2), (256, 5, 2, 2), (512, 5, 2, 2)],
     nn.LeakyReLU),
    ("descriptor16", [(96, 5, 2, 2), (128, 3, 1, 1), (256, 3, 1, 1), (512, 3, 1, 1)],
     nn.LeakyReLU),
    ("descriptor4", [(96, 5, 2, 2), (128, 3, 1, 1), (256, 3, 1, 1)], nn.LeakyReLU),
])
def test_presets_are_the_papers_nets(arch: str, convolutions: list, activation: type) -> None:
    """(filters, kernel side, stride, padding) of every convolution and the activation, as the
    module docstring gives them from the papers (the texture net unpadded, the others padded
    by half a kernel, as the authors' "same" padding)."""
    layers = list(image_energy(arch, in_channels=CHANNELS, image_size=16).modules())
    assert [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in layers
            if isinstance(m, nn.Conv2d)] == convolutions
    assert {type(m) for m in layers if isinstance(m, (nn.ReLU, nn.LeakyReLU))} == {activation}


def test_the_defaults_are_rgb_64x64_with_a_reference_sigma_of_1() -> None:
    energy = image_energy("texture")
    assert energy.reference_sigma == 1.0
    assert energy(torch.zeros(1, 3, SIZE, SIZE)).shape == (1,)
    assert image_energy("object").input_size == (64, 64)  # image_size 64


def test_unknown_arch() -> None:
    with pytest.raises(ValueError, match="unknown image architecture 'unet'"):
        image_energy("unet")


def test_custom_layers_and_activation() -> None:
    energy = image_energy("object", in_channels=1, image_size=16, layers=[[8, 3, 1], [8, 3, 1]],
                          activation="leaky_relu")
    assert energy.config["layers"] == [[8, 3, 1], [8, 3, 1]]
    assert energy.config["activation"] == "leaky_relu"
    assert energy(torch.zeros(2, 1, 16, 16)).shape == (2,)


def test_an_empty_layer_list_is_refused_not_replaced_by_the_preset() -> None:
    with pytest.raises(ValueError, match="at least one convolution"):
        image_energy("texture", layers=[])


def test_linear_head_input_size_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        image_energy("object", in_channels=1, image_size=4, layers=[[8, 5, 1]])


def test_a_linear_head_refuses_a_free_side() -> None:
    with pytest.raises(ValueError, match=r"head='linear' needs input_size with 2 sizes"):
        ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[[2, 3, 1]], head="linear",
                      input_size=(None, 8))


def test_a_network_of_one_by_one_convolutions_fits_a_single_pixel() -> None:
    point = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[(2, 1, 1)])
    assert point.smallest_size() == (1, 1)
    wide = ConvNetEnergy(spatial_dims=2, in_channels=1, layers=[(2, (1, 3), 1)])
    assert wide.smallest_size() == (1, 3)
