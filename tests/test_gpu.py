"""The same engine on CUDA: skipped cleanly on machines without a GPU."""

import pytest
import torch

from stgconv.config import TrainConfig
from stgconv.energy import image_energy
from stgconv.mcmc import HMC, MALA, KnownEntries, Langevin, MultiGridSampler
from stgconv.train import MultiGridTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("sampler", [Langevin(n_steps=5, step_size=0.01), MALA(n_steps=5, step_size=0.01),
                                     HMC(n_steps=2, step_size=0.01, n_leapfrog=3)])
def test_samplers_run_on_cuda_and_match_cpu_seeded_shapes(sampler):
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    generator = torch.Generator("cuda").manual_seed(0)
    x0 = torch.zeros(4, 3, 64, 64, device="cuda")
    known = torch.zeros_like(x0, dtype=torch.bool)
    known[..., :8] = True
    observed = torch.full_like(x0, 0.5)
    x = sampler.run(energy, x0, constraint=KnownEntries(observed, known), generator=generator)
    assert x.device.type == "cuda" and x.shape == x0.shape
    assert torch.isfinite(x).all()
    assert torch.equal(x[known], observed[known])
    again = sampler.run(energy, x0, constraint=KnownEntries(observed, known),
                        generator=torch.Generator("cuda").manual_seed(0))
    assert torch.equal(x, again)


def test_multigrid_training_and_sampling_on_cuda():
    """The coarse-to-fine sampler and the multi-grid trainer keep every tensor on the GPU, and
    the observed pixels stay exact through the grids."""
    generator = torch.Generator("cuda").manual_seed(0)
    sizes = [(1, 1), (4, 4), (16, 16)]
    energies = [image_energy("descriptor4", in_channels=3, image_size=4, layers=[[8, 3, 1, 1]]),
                image_energy("descriptor16", in_channels=3, image_size=16, layers=[[8, 5, 2, 2]])]
    energies = [e.cuda() for e in energies]
    langevin = Langevin(n_steps=3, step_size=0.01, clamp=(-1.0, 1.0))
    data = torch.rand(6, 3, 16, 16, generator=generator, device="cuda") * 2 - 1
    trainer = MultiGridTrainer(energies, [langevin] * 2, data, sizes,
                               train=TrainConfig(batch_size=4), generator=generator)
    trainer.fit(2, progress=False)
    assert all(x.device.type == "cuda" for x in trainer.last_samples)
    known = torch.rand(6, 1, 16, 16, generator=generator, device="cuda") > 0.5
    grids = MultiGridSampler((langevin,) * 2, ((4, 4), (4, 4))).run(
        energies, trainer.base, constraint=KnownEntries(data, known), generator=generator)
    assert [tuple(g.shape[2:]) for g in grids] == sizes
    assert torch.equal(grids[-1].expand_as(data)[known.expand_as(data)], data[known.expand_as(data)])


def test_auto_precision_runs_bf16_channels_last_and_returns_a_plain_tensor():
    """On a GPU with native bfloat16 an untrained net (its gradient error far under the
    tolerance) runs in bfloat16 and channels-last; the chain comes back contiguous, close to
    the fp32 chain driven by the same noise."""
    from stgconv.mcmc.execution import native_bfloat16

    if not native_bfloat16(torch.device("cuda")):
        pytest.skip("this GPU has no native bfloat16")
    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=3, image_size=64).cuda()
    x0 = torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1
    auto = Langevin(n_steps=5, step_size=0.01)
    assert auto.use_bf16(energy, x0)
    runs = {p: Langevin(n_steps=5, step_size=0.01, precision=p).run(
        energy, x0, generator=torch.Generator("cuda").manual_seed(1)) for p in ("auto", "fp32")}
    assert runs["auto"].is_contiguous()
    moved = (runs["fp32"] - x0).norm()
    assert (runs["auto"] - runs["fp32"]).norm() < 0.05 * moved
