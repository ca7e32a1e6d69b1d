"""Voxel energies: the presets refuse other sizes with a message naming the expected shape and
keep the authors' reference term; the config builds them with any layers. The contract every
preset meets (``(B, 1, D, D, D) -> (B,)``, differentiable, per example, rebuilt from its config)
is in ``test_energy.py``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stgconv.config import ModelConfig
from stgconv.energy import build_from_config
from stgconv.energy.voxel import VOXEL_PRESETS, voxel_energy
from stgconv.modalities import VOXELS


@pytest.mark.parametrize("arch", sorted(VOXEL_PRESETS))
def test_presets_keep_the_authors_reference_term(arch: str) -> None:
    """The Gaussian reference of the authors' code (sigma 0.5) is on by default."""
    assert voxel_energy(arch, size=16).reference_sigma == 0.5


@pytest.mark.parametrize("arch", ["desc32_small", "desc64_small"])
def test_wrong_size_names_the_expected_shape(arch: str) -> None:
    energy = voxel_energy(arch)
    side = VOXEL_PRESETS[arch]["size"]
    with pytest.raises(ValueError, match=rf"\('B', 1, {side}, {side}, {side}\)"):
        energy(torch.zeros(1, 1, side // 2, side // 2, side // 2))
    with pytest.raises(ValueError, match="expected input of shape"):
        energy(torch.zeros(1, side, side, side))  # no channel axis


@pytest.mark.parametrize(("arch", "side", "convolutions", "features"), [
    # (32 + 2 * 7 - 16) // 3 + 1 = 11, then (11 + 2 * 3 - 6) // 2 + 1 = 6 positions a side
    ("desc32", 32, [(200, 16, 3, 7), (100, 6, 2, 3)], 100 * 6 ** 3),
    ("desc64_sr", 64, [(200, 16, 3, 7)], 200 * 21 ** 3),  # (64 + 2 * 7 - 16) // 3 + 1 = 21
    ("desc64_small", 64, [(16, 8, 4, 2), (32, 4, 2, 1)], 32 * 8 ** 3),
])
def test_the_papers_presets_are_the_authors_nets(arch: str, side: int, convolutions: list,
                                                 features: int) -> None:
    """The grid side and (filters, kernel side, stride, padding) of every convolution, as in
    the module docstring (the small preset: its structure with fewer, smaller filters), then a
    fully connected layer from every top response to one score."""
    energy = voxel_energy(arch)
    assert energy.input_size == (side, side, side)
    assert [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
            for m in energy.modules() if isinstance(m, nn.Conv3d)] == convolutions
    assert [(m.in_features, m.out_features) for m in energy.modules()
            if isinstance(m, nn.Linear)] == [(features, 1)]


def test_unknown_arch_lists_the_presets() -> None:
    with pytest.raises(ValueError, match="desc32_small"):
        voxel_energy("desc16")
    with pytest.raises(ValueError, match="unknown voxel architecture 'desc16'"):
        voxel_energy("desc16", layers=[[2, 4, 2, 1]])  # its own layers name no preset either


def test_no_layers_or_a_side_of_0_is_refused_not_replaced_by_the_presets() -> None:
    with pytest.raises(ValueError, match="at least one convolution"):
        voxel_energy("desc32_small", layers=[])
    with pytest.raises(ValueError, match="sides must be ints >= 1"):
        voxel_energy("desc32_small", size=0)


def test_a_grid_too_small_for_the_layers_names_the_smallest_they_take() -> None:
    """stgconv train on 3^3 grids said only 'too small for these layers', not the side the
    voxel net takes, as an image net's receptive-field refusal does."""
    voxel_energy("desc32_small", size=4)
    with pytest.raises(ValueError, match=r"input_size \(3, 3, 3\) is too small for these "
                                         r"layers: they need at least \(4, 4, 4\)"):
        voxel_energy("desc32_small", size=3)


def test_the_activation_is_relu_unless_another_is_asked_for() -> None:
    def activations(**kwargs) -> set[type]:
        return {type(m) for m in voxel_energy("desc32_small", size=16, **kwargs).modules()
                if isinstance(m, (nn.ReLU, nn.LeakyReLU))}

    assert activations() == {nn.ReLU}
    assert activations(activation="leaky_relu") == {nn.LeakyReLU}


def test_config_builds_voxel_energies_that_rebuild_from_their_config() -> None:
    energy = VOXELS.energy(ModelConfig(arch="desc32_small", image_size=16, reference_sigma=0.5,
                                      layers=((4, 4, 2, 1), (4, 3, 2, 1))))
    assert energy.input_size == (16, 16, 16) and energy.spatial_dims == 3
    assert [tuple(layer) for layer in energy.config["layers"]] == [(4, 4, 2, 1), (4, 3, 2, 1)]
    rebuilt = build_from_config(energy.config)
    rebuilt.load_state_dict(energy.state_dict())
    x = torch.rand(3, 1, 16, 16, 16)
    assert torch.equal(rebuilt(x), energy(x))
