"""The same engine on CUDA: skipped cleanly on machines without a GPU."""

import pytest
import torch

from stgconv.energy import image_energy
from stgconv.mcmc import HMC, MALA, KnownEntries, Langevin

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
