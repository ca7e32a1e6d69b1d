"""The RBM against brute-force enumeration on tiny models: free energy, conditionals, partition
function, AIS, and blocked Gibbs sampling's stationary distribution and constraint."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from _tiny import gen

from stgconv.energy.rbm import RBM, ais_log_partition
from stgconv.mcmc import KnownEntries, NonFiniteEnergyError, StepInfo
from stgconv.mcmc.gibbs import BlockGibbs

F64 = torch.float64


def tiny_rbm(n_visible: int = 4, n_hidden: int = 3, seed: int = 0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, init_scale=1.0, generator=g).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.randn(n_visible, generator=g, dtype=F64))
        rbm.hidden_bias.copy_(torch.randn(n_hidden, generator=g, dtype=F64))
    return rbm


def states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=F64)


def joint_energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``E(v, h)`` for every pair: ``(len(v), len(h))``."""
    return -(v @ rbm.visible_bias)[:, None] - (h @ rbm.hidden_bias)[None, :] - v @ rbm.weight @ h.T


def test_free_energy_and_conditionals_match_enumeration() -> None:
    rbm = tiny_rbm()
    v, h = states(4), states(3)
    energy = joint_energy(rbm, v, h).detach()
    torch.testing.assert_close(rbm(v).detach(), -torch.logsumexp(-energy, dim=1))
    joint = torch.softmax(-energy.flatten(), 0).reshape(energy.shape)  # p(v, h)
    p_h_given_v = joint / joint.sum(1, keepdim=True)
    torch.testing.assert_close(rbm.hidden_probs(v).detach(), p_h_given_v @ h)
    p_v_given_h = joint / joint.sum(0, keepdim=True)
    torch.testing.assert_close(rbm.visible_mean(h).detach(), (p_v_given_h.T @ v))
    torch.testing.assert_close(torch.tensor(rbm.exact_log_partition(), dtype=F64),
                               torch.logsumexp(-energy.flatten(), 0))


def test_gaussian_visible_free_energy_matches_the_integral() -> None:
    """One visible unit: F(v) = -log sum_h exp(-E(v, h)) with the Gaussian term."""
    rbm = RBM(1, 2, visible="gaussian", init_scale=1.0,
              generator=torch.Generator().manual_seed(1)).double()
    v, h = torch.linspace(-3, 3, 7, dtype=F64)[:, None], states(2)
    energy = (0.5 * (v - rbm.visible_bias).pow(2).sum(1)[:, None]
              - (h @ rbm.hidden_bias)[None, :] - v @ rbm.weight @ h.T).detach()
    torch.testing.assert_close(rbm(v).detach(), -torch.logsumexp(-energy, dim=1))


def test_ais_estimates_the_exact_partition_function() -> None:
    rbm = tiny_rbm(n_visible=12, n_hidden=6, seed=2)
    exact = rbm.exact_log_partition()
    estimate, spread = ais_log_partition(rbm, n_chains=200, n_betas=2000,
                                         generator=torch.Generator().manual_seed(0))
    assert spread < 0.1
    assert estimate == pytest.approx(exact, abs=max(4 * spread, 0.02))


def test_the_ais_spread_is_the_spread_of_its_estimate() -> None:
    """The bootstrap spread AIS reports matches the standard deviation of its estimate over
    independent runs (within a factor of 2; 40 runs measure it to about 11%), not the variance
    or any other number under the bound of the test above."""
    rbm = tiny_rbm(n_visible=12, n_hidden=6, seed=2)
    runs = [ais_log_partition(rbm, n_chains=50, n_betas=100,
                              generator=torch.Generator().manual_seed(seed)) for seed in range(40)]
    estimates = torch.tensor([estimate for estimate, _ in runs])
    spreads = torch.tensor([spread for _, spread in runs])
    ratio = float(spreads.mean() / estimates.std())
    assert 0.5 < ratio < 2, ratio


def test_block_gibbs_samples_the_rbm_marginal() -> None:
    """Many chains after 30 sweeps: the histogram of the 16 visible states is p(v)."""
    rbm = tiny_rbm()
    v = states(4)
    p = torch.softmax(-rbm(v).detach(), 0)
    n = 20_000
    x = BlockGibbs(n_steps=30).run(rbm, torch.zeros(n, 4, dtype=F64),
                                   generator=torch.Generator().manual_seed(0))
    index = (x * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=F64)).sum(1).long()
    freq = torch.bincount(index, minlength=16).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-4).all(), (freq, p)


def test_block_gibbs_samples_the_gaussian_visible_marginal() -> None:
    """Gaussian visible units: with ``E(v, h) = |v - a|^2 / 2 - b.h - v.W h``, integrating v out
    gives ``p(h) ∝ exp(b.h + a.W h + |W h|^2 / 2)`` and ``v | h ~ N(a + W h, I)``, so each visible
    unit's law is a mixture of unit-variance Gaussians over the 8 hidden states: its mean,
    variance and the variance of its sample variance are exact sums. Bounds are 5 standard
    errors of that law."""
    rbm = RBM(2, 3, visible="gaussian", init_scale=0.8, generator=gen(3)).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.tensor([0.5, -1.0], dtype=F64))
        rbm.hidden_bias.copy_(torch.tensor([1.2, -1.5, 0.6], dtype=F64))
    h = states(3)
    centres = (rbm.visible_bias + h @ rbm.weight.T).detach()  # (8, 2): E[v | h]
    wh = (h @ rbm.weight.T).detach()
    p_h = torch.softmax(h @ rbm.hidden_bias.detach() + wh @ rbm.visible_bias.detach()
                        + 0.5 * (wh**2).sum(1), 0)
    mean = p_h @ centres
    offsets = centres - mean
    var = 1 + p_h @ offsets**2
    fourth = p_h @ (offsets**4 + 6 * offsets**2 + 3)  # E[(d + z)^4], z ~ N(0, 1)
    n = 20_000
    x = BlockGibbs(n_steps=20).run(rbm, torch.zeros(n, 2, dtype=F64), generator=gen(4))
    assert ((x.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all(), (x.mean(0), mean)
    assert ((x.var(0) - var).abs() < 5 * ((fourth - var**2) / n).sqrt()).all(), (x.var(0), var)


def test_block_gibbs_with_known_units_samples_the_exact_conditional() -> None:
    """Units 0 and 1 observed as 1, 0: the chains' completions of units 2 and 3 follow
    ``p(v_2, v_3 | v_0, v_1) ∝ exp(-F(v))`` over the four completions (5 binomial standard
    errors each); conditioning on unclamped units, or clamping only at the end, misses it."""
    rbm = tiny_rbm()
    with torch.no_grad():
        rbm.weight.mul_(2.0)  # couple the units strongly, so the conditional is far from p(v)
    completions = states(2)
    full = torch.cat([torch.tensor([1.0, 0.0], dtype=F64).expand(4, 2), completions], 1)
    p = torch.softmax(-rbm(full).detach(), 0)
    n = 20_000
    known = torch.tensor([True, True, False, False])
    x = BlockGibbs(n_steps=20).run(rbm, torch.zeros(n, 4, dtype=F64),
                                   constraint=KnownEntries(full[0], known), generator=gen(5))
    assert (x[:, :2] == full[0, :2]).all()
    freq = torch.bincount((x[:, 2] * 2 + x[:, 3]).long(), minlength=4).double() / n
    assert ((freq - p).abs() < 5 * (p * (1 - p) / n).sqrt()).all(), (freq, p)


def test_block_gibbs_keeps_known_visible_units_and_checks_its_model() -> None:
    rbm = tiny_rbm()
    observed = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=F64).expand(50, 4)
    known = torch.tensor([True, True, False, False]).expand(50, 4)
    x = BlockGibbs(n_steps=5).run(rbm, torch.zeros(50, 4, dtype=F64),
                                  constraint=KnownEntries(observed, known),
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[known], observed[known])
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # Visible units laid out as 2x2 images come back in that layout, the known ones kept.
    image = BlockGibbs(n_steps=2).run(rbm, torch.zeros(50, 1, 2, 2, dtype=F64),
                                      constraint=KnownEntries(observed.reshape(50, 1, 2, 2),
                                                              known.reshape(50, 1, 2, 2)),
                                      generator=gen(0))
    assert image.shape == (50, 1, 2, 2)
    assert torch.equal(image.reshape(50, 4)[known], observed[known])
    with pytest.raises(TypeError, match="RBM"):
        BlockGibbs().run(lambda t: t.sum(1), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="n_steps"):
        BlockGibbs(n_steps=0)


def test_bad_models_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="visible"):
        RBM(4, 3, visible="poisson")
    with pytest.raises(ValueError, match="n_hidden >= 1, got 4, 0"):
        RBM(4, 0)
    with pytest.raises(ValueError, match="n_hidden >= 1, got 0, 3"):
        RBM(0, 3)
    with pytest.raises(ValueError, match="4 visible units"):
        RBM(4, 3)(torch.zeros(2, 5))
    assert math.isfinite(RBM(4, 3)(torch.zeros(2, 2, 2)).sum().item())  # any (B, *S) layout


def test_visible_units_of_another_dtype_are_named() -> None:
    """Binary data as bool or uint8 (or float64 data) failed inside the matmul ("expected m1
    and m2 to have the same dtype"), in the free energy and in blocked Gibbs sampling."""
    rbm = tiny_rbm().float()
    for data in (torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 4, dtype=torch.uint8),
                 torch.ones(2, 4, dtype=torch.float64)):
        with pytest.raises(ValueError, match=rf"dtype torch.float32 \(the RBM's\), got "
                                             rf"{data.dtype}"):
            rbm(data)
        with pytest.raises(ValueError, match="the RBM's"):
            BlockGibbs().run(rbm, data, generator=gen(0))


def test_gibbs_names_a_start_that_is_no_batch_of_visible_units() -> None:
    """As the other samplers name it: an array failed on "no attribute 'detach'", one number
    inside the RBM's reshape ("Dimension out of range")."""
    rbm = tiny_rbm()
    for start, got in ((np.zeros((2, 4)), "ndarray"), (torch.tensor(1.0, dtype=F64),
                                                        r"a 0-d tensor \(x0\[None\]")):
        with pytest.raises(ValueError, match=rf"^BlockGibbs: x0 must be a tensor \(B, \*S\) of "
                                             rf"visible units, got {got}"):
            BlockGibbs().run(rbm, start, generator=gen(0))


def test_gibbs_names_a_mask_given_as_the_constraint() -> None:
    """It failed on "'Tensor' object has no attribute 'project'"."""
    rbm = tiny_rbm()
    with pytest.raises(ValueError, match=r"^BlockGibbs: constraint must be a Constraint .*got "
                                         r"Tensor: KnownEntries\(observed, known\)"):
        BlockGibbs().run(rbm, torch.zeros(2, 4, dtype=F64),
                         constraint=torch.ones(2, 4, dtype=torch.bool), generator=gen(0))


def test_a_non_finite_rbm_is_reported_by_gibbs_and_ais() -> None:
    """NaN weights made NaN conditionals, which drew 0 or 1 as if nothing were wrong: Gibbs
    returned finite samples and AIS a NaN log Z, neither saying so."""
    rbm = tiny_rbm()
    with torch.no_grad():
        rbm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteEnergyError, match="BlockGibbs: .* at step 0 of 3"):
        BlockGibbs(n_steps=3).run(rbm, torch.ones(2, 4, dtype=F64), generator=gen(0))
    with pytest.raises(FloatingPointError, match="AIS estimate of log Z is nan"):
        ais_log_partition(rbm, n_chains=4, n_betas=3, generator=gen(0))
    rbm = tiny_rbm()
    with pytest.raises(NonFiniteEnergyError, match="at step 0"):  # a NaN start, too
        BlockGibbs(n_steps=3).run(rbm, torch.full((2, 4), float("nan"), dtype=F64),
                                  generator=gen(0))


@pytest.mark.parametrize("value", [math.nan, -math.inf], ids=["nan", "infinite"])
def test_gibbs_names_the_chains_whose_free_energy_is_not_finite(value: float) -> None:
    start = torch.ones(4, 4, dtype=F64)
    start[1, 2] = start[3, 0] = value  # a free energy of NaN, or of -inf
    with pytest.raises(NonFiniteEnergyError, match="at step 0 of 2 in chains 1, 3;") as info:
        BlockGibbs(n_steps=2).run(tiny_rbm(), start, generator=gen(0))
    assert info.value.chains == (1, 3)


def test_gibbs_reports_a_chain_that_overflows_from_a_finite_start() -> None:
    """Weights so large that the first sweep's visible units overflow the free energy: the
    start is finite, the end is not, and the error names the last sweep."""
    rbm = RBM(4, 3, visible="gaussian").double()
    with torch.no_grad():
        rbm.weight.fill_(1e200)
        rbm.hidden_bias.fill_(50.0)  # every hidden unit on: v = W h, about 3e200
    assert torch.isfinite(rbm(torch.zeros(2, 4, dtype=F64))).all()
    with pytest.raises(NonFiniteEnergyError, match="BlockGibbs: .* at step 2 of 3") as info:
        BlockGibbs(n_steps=3).run(rbm, torch.zeros(2, 4, dtype=F64), generator=gen(0))
    # A sweep has no step size, clipping or clamp, which Langevin's advice named.
    assert str(info.value).endswith("(the start or the RBM's weights are not finite, or too "
                                    "large)"), info.value


@pytest.mark.parametrize("mode", ["cd", "pcd"])
def test_cd_and_pcd_learn_a_tiny_known_distribution(mode: str) -> None:
    """Two modes (1100 and 0011, 45% each) and a little of everything else: trained on the
    engine's Trainer with blocked Gibbs (CD-1 from the data, PCD from persistent chains), the
    RBM's exact p(v) puts most of its mass on the modes and is close to the data's."""
    from stgconv.config import TrainConfig
    from stgconv.mcmc import DataStart, NoiseInit, PersistentChains
    from stgconv.train import Trainer

    g = torch.Generator().manual_seed(0)
    v = states(4)
    target = torch.full((16,), 0.1 / 14, dtype=F64)
    target[12], target[3] = 0.45, 0.45  # 1100 and 0011
    data = v[torch.multinomial(target, 2000, replacement=True, generator=g)].float()
    rbm = RBM(4, 4, init_scale=0.1, generator=g)
    chains = (DataStart() if mode == "cd"
              else PersistentChains(2000, NoiseInit("uniform", 1.0)))
    trainer = Trainer(rbm, BlockGibbs(n_steps=1), chains, data,
                      train=TrainConfig(batch_size=100, lr=0.05, betas=(0.5, 0.999)),
                      generator=g)
    for _ in range(400):
        trainer.step()
    with torch.no_grad():
        model = torch.softmax(-rbm.double()(v), 0)
    kl = (target * (target / model).log()).sum().item()
    # A uniform model scores KL 1.56; CD-1 is biased (it weighs the two modes unevenly).
    assert model[[12, 3]].sum() > 0.75 and kl < 0.2, (model, kl)


@pytest.mark.parametrize("data, shown", [
    ([[-1.0, 0.5], [0.0, 1.0]], "from -1 to 1"),      # images as the loaders give them
    ([[0.0, 255.0], [3.0, 1.0]], "from 0 to 255"),    # grey levels
    ([[0.0, 1.0], [1.0, 1.5]], "from 0 to 1.5"),
], ids=["minus_one_to_one", "grey_levels", "above_one"])
def test_a_binary_rbm_refuses_training_data_outside_0_1(data, shown: str) -> None:
    """Its units are 0 or 1: data elsewhere trained without a word against samples of 0s and
    1s. Probabilities in [0, 1] train, and a Gaussian-visible RBM takes any real data."""
    from stgconv.mcmc import DataStart
    from stgconv.train import Trainer
    with pytest.raises(ValueError, match=f"data must lie in \\[0, 1\\].* got values {shown}: "):
        Trainer(RBM(2, 2, generator=gen(0)), BlockGibbs(), DataStart(), torch.tensor(data))
    probabilities = torch.tensor([[0.2, 1.0], [0.0, 0.7]])
    Trainer(RBM(2, 2, generator=gen(0)), BlockGibbs(), DataStart(), probabilities)
    Trainer(RBM(2, 2, visible="gaussian", generator=gen(0)), BlockGibbs(), DataStart(),
            torch.tensor(data))


def test_a_trainers_checkpoint_of_an_rbm_loads_as_that_rbm(tmp_path) -> None:
    """Its config (n_visible, n_hidden, visible) was rebuilt as a ConvNet energy's, and
    load_model refused the checkpoint as describing no model."""
    from stgconv.checkpoint import load_model
    from stgconv.config import TrainConfig
    from stgconv.mcmc import DataStart
    from stgconv.train import Trainer

    g = torch.Generator().manual_seed(0)
    rbm = RBM(4, 3, visible="gaussian", generator=g)
    data = torch.rand(6, 4, generator=g)
    trainer = Trainer(rbm, BlockGibbs(n_steps=1), DataStart(), data,
                      train=TrainConfig(batch_size=3), generator=g)
    trainer.step()
    loaded, _, _ = load_model(trainer.save(tmp_path / "checkpoint.pt"), device="cpu")
    assert isinstance(loaded, RBM) and loaded.config == rbm.config
    with torch.no_grad():
        assert torch.equal(loaded(data), rbm(data))


def test_block_gibbs_conditions_only_on_states_that_keep_the_known_units() -> None:
    """The start is off the constraint; every v the sampler conditions on (the first too) must
    already hold the observed units."""

    class Recording(RBM):
        def sample_hidden(self, v, *, generator=None):
            self.seen.append(v.detach().clone())
            return super().sample_hidden(v, generator=generator)

    rbm = Recording(4, 3, init_scale=1.0, generator=torch.Generator().manual_seed(0)).double()
    rbm.seen = []
    observed = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=F64).expand(8, 4)
    known = torch.tensor([True, True, False, False]).expand(8, 4)
    constraint = KnownEntries(observed, known)
    x0 = torch.full((8, 4), 0.5, dtype=F64)  # off the constraint
    BlockGibbs(n_steps=3).run(rbm, x0, constraint=constraint,
                              generator=torch.Generator().manual_seed(1))
    assert len(rbm.seen) == 3
    for v in rbm.seen:
        assert torch.equal(v[known], observed[known])


def test_gaussian_free_energy_is_centred_on_the_visible_bias() -> None:
    """Gaussian visible units: F(v) = |v - a|^2 / 2 - sum softplus(b + v W), so with W = 0
    and b = 0 the free energy is the squared distance to the bias a, up to a constant."""
    rbm = RBM(2, 1, visible="gaussian").double()
    with torch.no_grad():
        rbm.weight.zero_()
        rbm.visible_bias.copy_(torch.tensor([1.0, -2.0], dtype=torch.float64))
    v = torch.tensor([[1.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([0.0, 2.5], dtype=torch.float64) - math.log(2.0)
    torch.testing.assert_close(rbm(v).detach(), expected)


@pytest.mark.parametrize("biases", [(4.0, -4.0, 4.0, -4.0), (3.0, 1.0, 2.0, 2.0)], ids=str)
def test_ais_from_a_biased_base_model_estimates_the_exact_partition_function(
        biases: tuple[float, ...]) -> None:
    """AIS started from a base model with strong visible biases still recovers log Z: its
    Gibbs sweeps sample the interpolated model, base biases included, and its log Z is the
    base's own (biases that do not sum to 0 tell softplus(a0) from softplus(-a0))."""
    g = torch.Generator().manual_seed(0)
    rbm = RBM(4, 3, init_scale=1.0, generator=g).double()
    base = torch.tensor(biases, dtype=torch.float64)
    estimate, _ = ais_log_partition(rbm, n_chains=200, n_betas=500, base_visible_bias=base,
                                    generator=torch.Generator().manual_seed(1))
    assert estimate == pytest.approx(rbm.exact_log_partition(), abs=0.1)


def test_ais_with_one_step_is_importance_sampling_of_z_not_of_log_z() -> None:
    """With two temperatures AIS is plain importance sampling from the base model: the
    estimate is log of the mean importance weight, which converges to log Z (the mean of the
    log weights would fall short of it by the KL divergence)."""
    rbm = RBM(4, 3, init_scale=1.0, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64))
    estimate, _ = ais_log_partition(rbm, n_chains=20000, n_betas=2,
                                    generator=torch.Generator().manual_seed(1))
    assert estimate == pytest.approx(rbm.exact_log_partition(), abs=0.03)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_units_are_drawn_at_their_probability(dtype: torch.dtype) -> None:
    """Units of probability sigmoid(-9) = 1.2e-4 were on 18 times too often in bfloat16 (3
    times in float16): the uniforms were drawn in the RBM's dtype, in which they came out 0 one
    draw in 500. Both conditionals of a half-precision RBM draw float32 uniforms. Bound: 5
    Poisson standard errors of the expected count."""
    rbm = RBM(4, 4, init_scale=0.0).to(dtype)
    with torch.no_grad():
        rbm.hidden_bias.fill_(-9.0)
        rbm.visible_bias.fill_(-9.0)
    n = 50_000
    expected = 4 * n * torch.sigmoid(torch.tensor(-9.0, dtype=dtype)).item()  # 24.6
    zeros = torch.zeros(n, 4, dtype=dtype)
    for draws in (rbm.sample_hidden(zeros, generator=gen(0)),
                  rbm.sample_visible(zeros, generator=gen(1))):
        assert draws.dtype == dtype
        assert abs(draws.double().sum().item() - expected) < 5 * math.sqrt(expected)


def test_ais_with_one_step_from_a_biased_base_draws_its_chains_from_that_base() -> None:
    """One step is importance sampling from the base model, whose weights are right only for
    chains drawn from it: chains started elsewhere (its biases negated) gave log Z 8.69 for
    7.01. Many steps hide such a start, the first Gibbs sweep forgetting it."""
    rbm = RBM(4, 3, init_scale=1.0, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64))
    base = torch.tensor([2.0, -2.0, 1.0, -1.0], dtype=torch.float64)
    estimate, spread = ais_log_partition(rbm, n_chains=20000, n_betas=2, base_visible_bias=base,
                                         generator=torch.Generator().manual_seed(1))
    assert spread < 0.02
    assert estimate == pytest.approx(rbm.exact_log_partition(), abs=0.05)


def test_exact_log_partition_refuses_too_many_hidden_states() -> None:
    with pytest.raises(ValueError, match="too many to enumerate"):
        RBM(2, 21).exact_log_partition()
    # 20 are still enumerated (2^20 states, about a second): a zero RBM's Z is 2^21.
    zero = RBM(1, 20, init_scale=0.0)
    assert zero.exact_log_partition() == pytest.approx(21 * math.log(2.0))


def test_partition_functions_name_the_visible_units_they_refuse() -> None:
    gaussian = RBM(2, 2, visible="gaussian")
    with pytest.raises(ValueError, match="binary visible models only; .* are 'gaussian'"):
        gaussian.exact_log_partition()
    with pytest.raises(ValueError, match="binary visible units; .* are 'gaussian'"):
        ais_log_partition(gaussian, n_chains=2, n_betas=2)


def test_ais_needs_two_chains() -> None:
    with pytest.raises(ValueError, match="n_chains >= 2"):
        ais_log_partition(RBM(3, 2), n_chains=1, n_betas=10)
    # One temperature is the base model alone, no path: log Z would be the base's.
    with pytest.raises(ValueError, match=r"n_betas >= 2, got 10, 1"):
        ais_log_partition(RBM(3, 2), n_chains=10, n_betas=1)


@pytest.mark.parametrize("shape", [(2,), (1, 3), ()], ids=str)
def test_ais_names_base_biases_not_one_per_visible_unit(shape: tuple[int, ...]) -> None:
    """Each failed deep inside a product or a broadcast, naming no argument."""
    with pytest.raises(ValueError, match=rf"base_visible_bias must be \(3,\), one per visible "
                                         rf"unit, got {re.escape(str(shape))}"):
        ais_log_partition(RBM(3, 2, generator=gen(0)), n_chains=4, n_betas=3,
                          base_visible_bias=torch.zeros(shape), generator=gen(1))


def test_rbm_initial_weights_come_from_the_given_generator() -> None:
    first, again = RBM(4, 3, generator=gen(0)), RBM(4, 3, generator=gen(0))
    assert torch.equal(first.weight, again.weight)
    assert not torch.equal(first.weight, RBM(4, 3, generator=gen(1)).weight)


@pytest.mark.parametrize("visible", ["binary", "gaussian"])
def test_gibbs_chains_and_their_steps_follow_the_generator_alone(visible: str) -> None:
    """Two runs from the same seed are the same chains, whatever the global generator did in
    between; the callback sees every sweep's step, 0 first."""
    rbm = RBM(4, 3, visible=visible, init_scale=1.0, generator=gen(0)).double()
    x0 = torch.zeros(6, 4, dtype=F64)
    steps: list[int] = []
    first = BlockGibbs(n_steps=3).run(rbm, x0, generator=gen(1),
                                      callback=lambda info: steps.append(info.step))
    assert steps == [0, 1, 2]
    torch.rand(1)  # the global generator moves on
    assert torch.equal(BlockGibbs(n_steps=3).run(rbm, x0, generator=gen(1)), first)


def test_gibbs_reports_each_sweeps_starting_free_energy_and_no_gradient() -> None:
    """The callback sees the free energy of the state each sweep starts from (the start, then
    each sweep's result) and a gradient norm of 0: a sweep follows no gradient."""
    rbm = tiny_rbm()
    x0 = torch.zeros(6, 4, dtype=F64)
    infos: list[StepInfo] = []
    BlockGibbs(n_steps=2).run(rbm, x0, generator=gen(1), callback=infos.append)
    after_one = BlockGibbs(n_steps=1).run(rbm, x0, generator=gen(1))
    assert not torch.equal(after_one, x0)
    torch.testing.assert_close(infos[0].energy, rbm(x0))
    torch.testing.assert_close(infos[1].energy, rbm(after_one))
    assert all(torch.equal(info.grad_norm, torch.zeros(6)) for info in infos)


def test_ais_estimate_and_spread_follow_the_generator_alone() -> None:
    rbm = tiny_rbm()
    first = ais_log_partition(rbm, n_chains=8, n_betas=5, generator=gen(2))
    torch.rand(1)  # the global generator moves on
    assert ais_log_partition(rbm, n_chains=8, n_betas=5, generator=gen(2)) == first


def test_hidden_units_of_another_dtype_or_size_are_named() -> None:
    """float64 hidden units, or too many of them, failed inside the matmul of p(v | h) ("expected
    m1 and m2 to have the same dtype", "mat1 and mat2 shapes cannot be multiplied")."""
    rbm = RBM(4, 3)
    with pytest.raises(ValueError, match=r"expected hidden units of dtype torch.float32 \(the "
                                         r"RBM's\), got torch.float64: .*h.float\(\)"):
        rbm.sample_visible(torch.ones(2, 3, dtype=torch.float64), generator=gen(0))
    with pytest.raises(ValueError, match=r"expected 3 hidden units per example, got \(2, 5\)"):
        rbm.visible_mean(torch.ones(2, 5))


def test_gibbs_names_a_seed_given_for_a_generator() -> None:
    """generator=0 failed inside torch's first draw ("rand() received an invalid combination of
    arguments")."""
    with pytest.raises(ValueError, match="BlockGibbs: generator must be a torch.Generator or "
                                         "None, got int 0"):
        BlockGibbs().run(RBM(4, 3), torch.zeros(2, 4), generator=0)


def test_gibbs_names_a_start_on_the_meta_device() -> None:
    """As the other samplers name it (mcmc.base.check_start): it failed inside the RBM's
    matmul ("Tensor on device meta is not on the expected device cpu!")."""
    with pytest.raises(ValueError, match="^BlockGibbs: x0 is on the meta device, which holds "
                                         "shapes but no values"):
        BlockGibbs().run(RBM(4, 3), torch.zeros(2, 4, device="meta"))


def test_an_rbm_starts_with_normal_weights_of_scale_0_01_and_zero_biases() -> None:
    rbm = RBM(4, 3, generator=gen(0))
    torch.testing.assert_close(rbm.weight.detach(), 0.01 * torch.randn(4, 3, generator=gen(0)))
    assert not rbm.visible_bias.any() and not rbm.hidden_bias.any()


def test_the_rbm_its_draws_and_ais_name_a_seed_given_for_a_generator() -> None:
    """As BlockGibbs names it: generator=0 is named with the class or method given it."""
    with pytest.raises(ValueError, match="RBM: generator must be a torch.Generator"):
        RBM(4, 3, generator=0)
    with pytest.raises(ValueError, match="ais_log_partition: generator must be a torch"):
        ais_log_partition(RBM(3, 2), n_chains=2, n_betas=2, generator=0)
    for method in ("sample_hidden", "sample_visible"):
        with pytest.raises(ValueError, match=f"RBM.{method}: generator must be a torch"):
            getattr(tiny_rbm(), method)(torch.zeros(2, 4 if method == "sample_hidden" else 3),
                                        generator=0)


def test_gaussian_visible_draws_are_the_mean_plus_normal_noise_in_the_models_dtype() -> None:
    rbm = RBM(4, 3, visible="gaussian", init_scale=1.0, generator=gen(0)).double()
    h = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    expected = rbm.visible_mean(h) + torch.randn(1, 4, generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(rbm.sample_visible(h, generator=gen(1)), expected)
    half = rbm.to(torch.bfloat16)
    assert half.sample_visible(h.bfloat16(), generator=gen(1)).dtype == torch.bfloat16
