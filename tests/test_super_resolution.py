"""stgconv.super_resolution: the voxel super-resolution chain (its runs against the baselines,
its start and its exact block means are in test_tasks_voxel.py, where the CLI runs it), and
the chains that super-resolution training runs from its linear start."""

from __future__ import annotations

import pytest
import torch
from _tiny import boxes_and_balls, gen

from stgconv.config import TrainConfig
from stgconv.energy.base import ConvNetEnergy
from stgconv.mcmc import MALA, DownsampleConsistency, Langevin, SuperResolutionStart
from stgconv.ops import block_down, block_top_k, linear_up, nearest_up
from stgconv.super_resolution import super_resolve_batch
from stgconv.train import Trainer


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


def test_the_chain_keeps_block_means_under_the_offset_exact() -> None:
    """In the model's units the blocks emptier than the offset have negative means: the chain
    keeps them there, so ``binary=False`` returns block means ``low`` in every block."""
    low = block_down(boxes_and_balls(2, 8), (4, 4, 4))
    assert ((low > 0) & (low < 0.5)).any()
    chain = super_resolve_batch(tiny_energy(8), Langevin(n_steps=2, step_size=0.1), low, 4,
                                offset=0.5, binary=False, generator=gen(0))
    torch.testing.assert_close(block_down(chain, (4, 4, 4)), low, rtol=0, atol=1e-6)


def test_a_float64_model_super_resolves_into_float64_shapes() -> None:
    low = block_down(boxes_and_balls(1, 8), (4, 4, 4)).double()
    shape = super_resolve_batch(tiny_energy(8).double(), Langevin(n_steps=2, step_size=0.1),
                                low, 4, generator=gen(0))
    assert shape.dtype == torch.float64 and torch.equal(block_down(shape, (4, 4, 4)), low)


@pytest.mark.parametrize("low, factor, match", [
    (torch.zeros(2, 2, 2, 2), 4, r"low must be voxels \(B, 1, d, d, d\), got \(2, 2, 2, 2\)"),
    (torch.zeros(2, 1, 2, 2), 4, r"low must be voxels \(B, 1, d, d, d\), got \(2, 1, 2, 2\)"),
    (torch.zeros(1, 2, 2, 2, 2), 4, r"low must be voxels \(B, 1, d, d, d\), got \(1, 2, 2, 2, 2\)"),
    (torch.zeros(1, 1, 2, 2, 2), 4.0, "factor"),
    (torch.zeros(1, 1, 2, 2, 2), 0, "factor"),
])
def test_super_resolution_refuses_bad_input_naming_it(low, factor, match) -> None:
    """A wrong ``low`` was refused by the energy, naming the up-sampled grid's shape."""
    with pytest.raises(ValueError, match=match):
        super_resolve_batch(tiny_energy(8), Langevin(n_steps=1), low, factor)


@pytest.mark.parametrize("sampler", [Langevin(n_steps=2, step_size=0.1),
                                     MALA(n_steps=2, step_size=0.1)], ids=["langevin", "mala"])
def test_super_resolution_training_chains_see_only_states_on_the_low_resolution(sampler) -> None:
    """The linear start is off the block means it must keep: the sampler projects it before
    the first energy, so the model learns from chains that never left the constraint."""
    data = boxes_and_balls(1, 8)  # one example: every chain is that example's
    low = block_down(data, (4, 4, 4))
    assert not torch.allclose(block_down(linear_up(low, (4, 4, 4)), (4, 4, 4)), low)
    energy = tiny_energy(8)
    seen = []
    energy.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    Trainer(energy, sampler, SuperResolutionStart((4, 4, 4)), data,
            train=TrainConfig(batch_size=1), generator=torch.Generator().manual_seed(0)).step()
    assert len(seen) > 2  # the data and every state of the chain
    for x in seen:
        torch.testing.assert_close(block_down(x, (4, 4, 4)), low, rtol=0, atol=1e-6)


def test_super_resolution_starts_at_the_linear_upsampling_by_default() -> None:
    """With a step too small to move, the chain is its start: by default the trilinear
    up-sampling of ``low - offset`` with its block means made ``low - offset``, then + offset."""
    low, blocks, offset = block_down(boxes_and_balls(2, 8), (4, 4, 4)), (4, 4, 4), 0.25
    sampler = Langevin(n_steps=1, step_size=1e-8, noise_scale=0.0)
    chain = super_resolve_batch(tiny_energy(8), sampler, low, 4, offset=offset, binary=False)
    linear = linear_up(low - offset, blocks)
    expected = linear - nearest_up(block_down(linear, blocks) - (low - offset), blocks) + offset
    torch.testing.assert_close(chain, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(chain, nearest_up(low, blocks), atol=1e-3)


@pytest.mark.parametrize("own", ["function", "module"])
def test_super_resolution_takes_an_energy_of_ones_own(own: str) -> None:
    """A function or a plain ``nn.Module``, which state no ``input_size``, failed with an
    AttributeError on it; it super-resolves, keeping the block means, the same twice for one
    seed."""
    conv = torch.nn.Conv3d(1, 1, 3, padding=1)
    energy = ((lambda x: x.square().flatten(1).sum(1)) if own == "function" else
              torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.Linear(512, 1),
                                  torch.nn.Flatten(0)))
    low = block_down(boxes_and_balls(2, 8), (4, 4, 4))
    sampler = MALA(n_steps=2, step_size=0.1)
    chains = [super_resolve_batch(energy, sampler, low, 4, binary=False, generator=gen(3))
              for _ in range(2)]
    assert torch.equal(chains[0], chains[1])
    torch.testing.assert_close(block_down(chains[0], (4, 4, 4)), low, rtol=0, atol=1e-6)
    shape = super_resolve_batch(energy, sampler, low, 4, generator=gen(3))
    assert shape.shape == (2, 1, 8, 8, 8)
    assert torch.equal(block_down(shape, (4, 4, 4)), low)


@pytest.mark.parametrize("own", ["model", "module"])
def test_super_resolution_names_low_of_another_dtype_than_the_network(own: str) -> None:
    """float64 block means into a float32 network: a module of one's own failed in torch's
    words ("Input type (double) and bias type (float) should be the same"), a model named its
    input "x"; neither named low."""
    energy = (tiny_energy(8) if own == "model" else
              torch.nn.Sequential(torch.nn.Conv3d(1, 1, 3, padding=1), torch.nn.Flatten(),
                                  torch.nn.Linear(512, 1), torch.nn.Flatten(0)))
    low = block_down(boxes_and_balls(2, 8), (4, 4, 4)).double()
    with pytest.raises(ValueError, match=r"^expected low of dtype torch.float32 \(the "
                                         r"network's\), got torch.float64"):
        super_resolve_batch(energy, Langevin(n_steps=1), low, 4)
