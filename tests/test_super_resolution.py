"""stgconv.super_resolution: the voxel super-resolution chain (its runs against the baselines,
its start and its exact block means are in test_tasks_voxel.py, where the CLI runs it)."""

from __future__ import annotations

import pytest
import torch

from stgconv.energy.base import ConvNetEnergy
from stgconv.mcmc import DownsampleConsistency, Langevin
from stgconv.ops import block_down, block_top_k, linear_up
from stgconv.super_resolution import super_resolve_batch


def tiny_energy(size: int) -> ConvNetEnergy:
    torch.manual_seed(0)
    return ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[4, 4, 2, 1], [4, 3, 1, 1]],
                         head="sum", input_size=(size,) * 3, reference_sigma=0.5)


def test_super_resolution_of_centred_occupancy_is_the_chain_in_the_models_units() -> None:
    """With ``offset`` m: the block means and the trilinear start shifted by -m, the chain kept
    on them, +m, then each block's count made binary; what a script had to write by hand."""
    mean, blocks = 0.3, (4, 4, 4)
    low = block_down((torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
                      > 0.6).float(), blocks)                                  # (2, 1, 2, 2, 2)
    energy = tiny_energy(8)
    sampler = Langevin(n_steps=3, step_size=0.3, noise_scale=1.0, clamp=(-mean, 1.0 - mean))
    ours = super_resolve_batch(energy, sampler, low, 4, offset=mean, upsample="linear",
                               generator=torch.Generator().manual_seed(1))
    chain = sampler.run(energy, linear_up(low - mean, blocks),
                        constraint=DownsampleConsistency(low - mean, blocks),
                        generator=torch.Generator().manual_seed(1)) + mean
    assert ours.shape == (2, 1, 8, 8, 8)
    assert torch.equal(ours, block_top_k(chain, low, blocks))
    assert torch.equal(block_down(ours, blocks), low)


@pytest.mark.parametrize("low, factor, match", [
    (torch.zeros(2, 2, 2, 2), 4, r"low must be voxels \(B, 1, d, d, d\), got \(2, 2, 2, 2\)"),
    (torch.zeros(1, 2, 2, 2, 2), 4, r"low must be voxels \(B, 1, d, d, d\), got \(1, 2, 2, 2, 2\)"),
    (torch.zeros(1, 1, 2, 2, 2), 4.0, "factor"),
    (torch.zeros(1, 1, 2, 2, 2), 0, "factor"),
])
def test_super_resolution_refuses_bad_input_naming_it(low, factor, match) -> None:
    """A wrong ``low`` was refused by the energy, naming the up-sampled grid's shape."""
    with pytest.raises(ValueError, match=match):
        super_resolve_batch(tiny_energy(8), Langevin(n_steps=1), low, factor)
