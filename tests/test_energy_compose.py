"""Products of experts: energies add (with weights and views), the sum samples the product."""

from __future__ import annotations

import math

import pytest
import torch

from stgconv.energy.compose import ProductOfExperts
from stgconv.energy.image import image_energy
from stgconv.mcmc import Langevin


def gaussian(mean: float, var: float):
    return lambda x: (x - mean).pow(2).flatten(1).sum(1) / (2 * var)


def test_weighted_sum_with_views() -> None:
    a, b = gaussian(0.0, 1.0), gaussian(1.0, 2.0)
    x = torch.randn(4, 2, 3)
    poe = ProductOfExperts([a, b], weights=[2.0, 0.5], views=[None, lambda t: t[:, :1]])
    torch.testing.assert_close(poe(x), 2.0 * a(x) + 0.5 * b(x[:, :1]))
    assert ProductOfExperts([a, b], weights=[1.0, 0.0])(x).equal(a(x))


def test_the_product_of_two_gaussians_is_sampled() -> None:
    """N(-1, 1) x N(2, 0.5) is N(1, 1/3): Langevin on the summed energy finds its mean and
    variance (seeded, many chains)."""
    poe = ProductOfExperts([gaussian(-1.0, 1.0), gaussian(2.0, 0.5)])
    x = Langevin(n_steps=400, step_size=0.1).run(
        poe, torch.zeros(4000, 1), generator=torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(1.0, abs=0.05)
    # The unadjusted chain's variance is biased up by O(step^2): 1/3 within 10%.
    assert x.var().item() == pytest.approx(1 / 3, rel=0.1)


def test_module_experts_are_registered_and_move_with_the_product() -> None:
    net = image_energy("texture", in_channels=1)
    poe = ProductOfExperts([net, gaussian(0.0, 1.0)])
    assert sum(p.numel() for p in poe.parameters()) == sum(p.numel() for p in net.parameters())
    assert set(poe.state_dict()) == {f"registered.0.{k}" for k in net.state_dict()}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"experts": []}, "at least one"),
    ({"experts": [gaussian(0, 1)], "weights": [1.0, 2.0]}, "as many weights"),
    ({"experts": [gaussian(0, 1)], "weights": [math.nan]}, "finite and >= 0"),
    ({"experts": [gaussian(0, 1)], "weights": [-1.0]}, "finite and >= 0"),
])
def test_bad_products_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ProductOfExperts(**kwargs)


def test_an_expert_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        ProductOfExperts([lambda x: x.sum()])(torch.zeros(2, 3))
