"""Products of experts: energies add (with weights and views), the sum samples the product, and
every sampler and chain start takes the sum as any energy (seeded; mean bounds of 5 standard
errors of the target, as tests/test_mcmc_samplers.py argues)."""

from __future__ import annotations

import io
import math
from functools import partial
from types import MappingProxyType

import pytest
import torch
from torch import nn

from stgconv.energy.classifier import ClassifierEnergy
from stgconv.energy.compose import ProductOfExperts
from stgconv.energy.image import image_energy
from stgconv.mcmc import (
    HMC,
    MALA,
    Langevin,
    MultiGridSampler,
    NoiseInit,
    PersistentChains,
    ReplayBuffer,
)
from stgconv.ops import block_down

F64 = torch.float64
N_CHAINS = 2000


def gaussian(mean: float, var: float):
    return lambda x: (x - mean).pow(2).flatten(1).sum(1) / (2 * var)


def test_weighted_sum_with_views() -> None:
    a, b = gaussian(0.0, 1.0), gaussian(1.0, 2.0)
    x = torch.randn(4, 2, 3)
    poe = ProductOfExperts([a, b], weights=[2.0, 0.5], views=[None, lambda t: t[:, :1]])
    torch.testing.assert_close(poe(x), 2.0 * a(x) + 0.5 * b(x[:, :1]))
    assert ProductOfExperts([a, b], weights=[1.0, 0.0])(x).equal(a(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_the_sum_keeps_the_inputs_dtype(dtype) -> None:
    x = torch.randn(3, 2, dtype=dtype)
    assert ProductOfExperts([gaussian(0.0, 1.0)])(x).dtype == dtype


def test_the_product_of_two_gaussians_is_sampled() -> None:
    """N(-1, 1) x N(2, 0.5) is N(1, 1/3), the energy of precision a = 3. Langevin on the summed
    energy is linear, ``x' = m + c (x - m) + delta eps`` with ``c = 1 - a delta^2 / 2``, so from
    x0 = 0 its law after n steps is exactly N(m (1 - c^n), delta^2 (1 - c^2n) / (1 - c^2)): the
    product's moments with the unadjusted chain's known O(step^2) bias (1.7% on the variance
    here). Bounds: 5 standard errors of that law, which a product whose experts were weighted
    or summed wrongly (10% off in the energy's scale) misses by far."""
    poe = ProductOfExperts([gaussian(-1.0, 1.0), gaussian(2.0, 0.5)])
    n, n_steps, delta, m, a = 20_000, 250, 0.15, 1.0, 3.0
    c = 1 - a * delta**2 / 2
    mean, var = m * (1 - c**n_steps), delta**2 * (1 - c ** (2 * n_steps)) / (1 - c**2)
    x = Langevin(n_steps=n_steps, step_size=delta).run(
        poe, torch.zeros(n, 1, dtype=F64), generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(x.var().item() - var) < 5 * var * math.sqrt(2 / n)


def test_module_experts_are_registered_and_move_with_the_product() -> None:
    net = image_energy("texture", in_channels=1)
    poe = ProductOfExperts([net, gaussian(0.0, 1.0)])
    assert sum(p.numel() for p in poe.parameters()) == sum(p.numel() for p in net.parameters())
    assert set(poe.state_dict()) == {"_extra_state",
                                     *(f"registered.0.{k}" for k in net.state_dict())}


class Settings:
    """A user's own settings object, no dict."""


class OwnNet(nn.Module):
    """A module of the caller's own that keeps its settings as ``config``, as many do."""

    def __init__(self, config: object) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.flatten(1).pow(2).sum(1)


@pytest.mark.parametrize("config, stored", [
    (Settings(), {}),
    # A read-only mapping is a config like a dict: it was dropped, so a resume into a product
    # of the expert under other settings went on without a word.
    (MappingProxyType({"width": 3}), {"width": 3}),
])
def test_an_experts_config_of_its_own_kind_is_no_config_of_the_product(config, stored) -> None:
    """Its state_dict() failed ("'Settings' object is not iterable"): it reads the experts'
    config mappings, and such a module has none."""
    net = image_energy("texture", in_channels=1, layers=[[2, 3, 1]])
    poe = ProductOfExperts([net, OwnNet(config)], weights=[1.0, 0.5])
    experts = poe.state_dict()["_extra_state"]["product_of_experts"]["experts"]
    assert experts == [{"name": "ConvNetEnergy", "config": net.config},
                       {"name": "OwnNet", "config": stored}]


def test_a_class_conditional_experts_classifier_is_registered_once_and_moves() -> None:
    classifier = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    poe = ProductOfExperts([classifier.conditional(0), classifier.conditional(2)])
    assert list(poe.parameters()) == list(classifier.parameters())
    poe.double()  # the classifier with it: float64 chains are evaluated in float64
    assert poe(torch.zeros(2, 1, 2, 2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"experts": []}, "at least one expert"),
    ({"experts": [gaussian(0, 1)], "weights": [1.0, 2.0]}, "as many weights"),
    ({"experts": [gaussian(0, 1)], "weights": [math.nan]}, "finite and >= 0"),
    ({"experts": [gaussian(0, 1)], "weights": [-1.0]}, "finite and >= 0"),
    ({"experts": [gaussian(0, 1)], "weights": [math.inf]}, "finite and >= 0"),
    ({"experts": [gaussian(0, 1), gaussian(1, 1)], "weights": [0.0, 0.0]}, "above 0"),
    # What load_model returns, given whole: "'tuple' object is not callable" at the first call.
    ({"experts": [gaussian(0, 1), (gaussian(0, 1), {}, {})]},
     r"^expert 1 is a tuple, not an energy \(a callable \(B, \*S\) -> \(B,\)\): load_model "
     r"returns \(energy, config, state\), the energy first$"),
    ({"experts": [3.0]}, r"^expert 0 is a float, not an energy \(a callable \(B, \*S\) -> "
                         r"\(B,\)\)$"),
])
def test_bad_products_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ProductOfExperts(**kwargs)


def test_an_expert_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        ProductOfExperts([lambda x: x.sum()])(torch.zeros(2, 3))
    # In one line, by its place and class: its repr, the whole network, filled the message.
    with pytest.raises(ValueError, match=r"^expert 1 \(Linear\) returned \(2, 1\), expected "
                                         r"\(2,\)$"):
        ProductOfExperts([lambda x: x.sum(1), nn.Linear(3, 1)])(torch.zeros(2, 3))


# --------------------------------------------------------------------------- every sampler


def classifier_times_gaussian() -> ProductOfExperts:
    """``E(x | y=2) + |x|^2 / 2`` of a linear classifier whose class ``c`` has logit
    ``4 x_c``: ``-4 x_2 + |x|^2 / 2``, the Gaussian ``N((0, 0, 4), I)``."""
    classifier = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        classifier.weight.copy_(4.0 * torch.eye(3))
    return ProductOfExperts([ClassifierEnergy(classifier).conditional(2), gaussian(0.0, 1.0)])


# name -> (product, its mean (= mode), its per-coordinate variance, the chains' start)
PRODUCTS = {
    "two quadratics": (lambda: ProductOfExperts([gaussian(-1.0, 1.0), gaussian(2.0, 0.5)]),
                       torch.tensor([1.0, 1.0]), 1 / 3, -3.0),
    "classifier + quadratic": (classifier_times_gaussian, torch.tensor([0.0, 0.0, 4.0]), 1.0,
                               0.0),
}
SAMPLERS = {
    "langevin": Langevin(n_steps=400, step_size=0.2),
    "mala": MALA(n_steps=300, step_size=0.5),
    "hmc": HMC(n_steps=60, step_size=0.3, n_leapfrog=5),
}


def assert_near_mode(x: torch.Tensor, mode: torch.Tensor, var: float, start: float) -> None:
    """The chains' mean is within 5 standard errors of the product's mode, and nearer than
    where they started."""
    se = math.sqrt(var / len(x))
    error = (x.mean(0) - mode.to(x.dtype)).abs()
    assert error.max() < 5 * se, (x.mean(0), mode)
    assert error.max() < (start - mode).abs().max()


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("product", PRODUCTS)
def test_every_sampler_moves_the_chains_to_the_products_mode(sampler: str, product: str) -> None:
    make, mode, var, start = PRODUCTS[product]
    x0 = torch.full((N_CHAINS, len(mode)), start, dtype=F64)
    x = SAMPLERS[sampler].run(make(), x0, generator=torch.Generator().manual_seed(0))
    assert_near_mode(x, mode, var, start)


def test_multigrid_sampling_runs_a_product_on_every_grid() -> None:
    """1x1 -> 2x2 -> 4x4, the two-quadratic product on each grid: the finest grid's pixels
    have the product's mean."""
    product = PRODUCTS["two quadratics"][0]()
    sampler = MultiGridSampler(samplers=(SAMPLERS["langevin"], SAMPLERS["mala"]),
                               factors=((2, 2), (2, 2)))
    grids = sampler.run([product, product], torch.full((N_CHAINS, 1, 1, 1), -3.0, dtype=F64),
                        generator=torch.Generator().manual_seed(0))
    assert [tuple(g.shape[2:]) for g in grids] == [(1, 1), (2, 2), (4, 4)]
    assert_near_mode(grids[-1].flatten(1), torch.ones(16), 1 / 3, -3.0)


@pytest.mark.parametrize("kind", ["persistent", "buffer"])
def test_persistent_and_buffer_starts_carry_chains_to_the_mode(kind: str) -> None:
    """Short runs that each continue stored chains (the buffer: 5% fresh noise each round)
    reach the mode that one short run from noise does not."""
    make, mode, var, _ = PRODUCTS["two quadratics"]
    init = NoiseInit("uniform", 1.0)
    starts = (PersistentChains(N_CHAINS, init) if kind == "persistent"
              else ReplayBuffer(N_CHAINS, init, fresh=0.05))
    short = Langevin(n_steps=40, step_size=0.2)
    x_pos, indices = torch.zeros(N_CHAINS, 2, dtype=F64), torch.arange(N_CHAINS)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = short.run(make(), starts.start(x_pos, indices, generator=generator),
                      generator=generator)
        starts.keep(x)
    assert_near_mode(x, mode, var, 0.0)


def test_an_expert_refusing_its_input_is_named() -> None:
    """Of two nets of one class, the one whose input size x (or its view) misses."""
    texture = image_energy("texture", in_channels=1, layers=[[2, 3, 1]])
    tied = image_energy("object", in_channels=1, image_size=4, layers=[[2, 3, 2, 1]])
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"^expert 1 \(ConvNetEnergy\): expected input of shape "
                                         r"\('B', 1, 4, 4\), got \(2, 1, 8, 8\)$"):
        ProductOfExperts([texture, tied])(x)
    halves = partial(block_down, factor=(2, 2))
    assert ProductOfExperts([texture, tied], views=[None, halves])(x).shape == (2,)


def test_an_expert_giving_one_energy_for_the_whole_batch_is_refused() -> None:
    """An expert must return one energy per example: a length-1 result that would
    broadcast over the batch is an error, not silently added to every chain."""
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        ProductOfExperts([lambda x: x.sum().reshape(1)])(torch.zeros(3, 2))


def test_an_expert_of_weight_zero_is_never_evaluated() -> None:
    """Weight 0 switches an expert off: it is not called at all, so an expert that would
    fail (or return inf, where 0 * inf is NaN) on this input does not matter."""
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("a switched-off expert was evaluated")

    poe = ProductOfExperts([lambda x: x.pow(2).sum(1), broken], weights=[1.0, 0.0])
    torch.testing.assert_close(poe(torch.ones(2, 3)), torch.full((2,), 3.0))


def test_a_partial_of_a_module_is_registered_and_moves_as_a_partial_of_its_method() -> None:
    """``partial(net, ...)`` is as natural an expert as ``partial(net.forward, ...)``, but its
    module was not registered: the product's parameters, state_dict() and .double() left it
    out, so a Trainer of the product never trained (nor saved) that net."""
    net = OwnNet({"width": 3})
    poe = ProductOfExperts([partial(net), gaussian(0.0, 1.0)])
    assert list(poe.parameters()) == list(net.parameters())
    assert set(poe.state_dict()) == {"_extra_state", "registered.0.scale"}
    poe.double()
    assert net.scale.dtype == torch.float64


def test_a_classifier_shared_by_two_experts_is_registered_once() -> None:
    classifier = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
    poe = ProductOfExperts([classifier.conditional(0), classifier.conditional(2)])
    assert len(poe.registered) == 1
    assert set(poe.state_dict()) == {"_extra_state",
                                     *(f"registered.0.{k}" for k in classifier.state_dict())}


def test_a_product_refuses_more_views_than_experts() -> None:
    with pytest.raises(ValueError, match="as many weights and views"):
        ProductOfExperts([lambda x: x.flatten(1).sum(1)], views=[None, None])


def test_the_product_keeps_views_of_its_own() -> None:
    """The caller's list changed later does not change the product."""
    views = [None]
    product = ProductOfExperts([gaussian(1.0, 1.0)], views=views)
    views[0] = torch.neg
    assert torch.equal(product(torch.ones(2, 1)), torch.zeros(2))


def test_the_product_keeps_experts_of_its_own() -> None:
    """The caller's list of experts changed later does not change the product."""
    experts = [gaussian(1.0, 1.0)]
    product = ProductOfExperts(experts)
    experts[0] = gaussian(0.0, 1.0)
    assert torch.equal(product(torch.ones(2, 1)), torch.zeros(2))


def test_a_class_fixed_as_a_scalar_tensor_is_shown_as_its_value() -> None:
    product = ProductOfExperts([ClassifierEnergy(nn.Identity()).conditional(torch.tensor(1))])
    assert product.extra_repr() == ("experts=[ClassifierEnergy.class_energy(y=tensor(1))], "
                                    "weights=[1.0]")


def shifted_square(shift: float, x: torch.Tensor) -> torch.Tensor:
    return (x - shift).pow(2).flatten(1).sum(1)


def test_the_repr_names_every_argument_a_partial_fixes() -> None:
    """Positional ones too, not only keywords (a class-conditional energy's class)."""
    product = ProductOfExperts([partial(shifted_square, 2.0)])
    assert product.extra_repr() == "experts=[shifted_square(2.0)], weights=[1.0]"


def texture_product(sigma: float, weights: list[float], y: int = 1, *,
                    seed: int = 1) -> ProductOfExperts:
    """A texture net of reference term ``sigma`` and a classifier's class ``y``, weighted, its
    weights drawn with ``seed``."""
    torch.manual_seed(seed)
    classifier = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    texture = image_energy("texture", in_channels=1, layers=[[2, 3, 1]], reference_sigma=sigma)
    return ProductOfExperts([texture, classifier.conditional(y)], weights=weights)


@pytest.mark.parametrize(("build", "message"), [
    pytest.param(lambda: texture_product(0.5, [1.0, 0.5]), None, id="built alike"),
    pytest.param(lambda: texture_product(0.5, [1.0, 2.0]),
                 r"^this state was saved from another product of experts \(differing: "
                 r"product_of_experts\.weights\): build that product to load it$",
                 id="other weights"),
    pytest.param(lambda: texture_product(0.5, [1.0, 0.5], y=2),
                 r"\(differing: product_of_experts\.experts\)", id="another class"),
    pytest.param(lambda: texture_product(1.0, [1.0, 0.5]),
                 r"\(differing: product_of_experts\.experts\)", id="another reference term"),
])
def test_a_saved_product_loads_only_into_one_built_alike(build, message) -> None:
    """The state (saved and read back without pickled code) gives the saved energy in a
    product built as it was; a product of other weights, another class or another reference
    term is refused before any weight is copied, not given the weights for another energy."""
    saved = texture_product(0.5, [1.0, 0.5], seed=0)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    product = build()
    before = product(x).detach()
    assert not torch.equal(before, saved(x))
    if message is None:
        product.load_state_dict(state)
        assert torch.equal(product(x), saved(x))
        return
    with pytest.raises(ValueError, match=message):
        product.load_state_dict(state)
    assert torch.equal(product(x), before)
