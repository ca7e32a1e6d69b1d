"""Seeded statistical tests of the samplers on analytic energies, plus the sampler contract.

How the tolerances are set: every statistical test runs many independent chains in parallel and
looks only at their final states, which are (after mixing) independent draws from the chain's
stationary law. A mean over N such draws has standard error SE = sqrt(Var / N), with ``Var`` taken
from the *target* (never from the samples, so a broken sampler cannot loosen its own bounds).
Bounds are 5 SE unless stated: a two-sided Gaussian tail P(|Z| > 5) = 5.7e-7, so the ~100
statistics checked in this file give a false-failure probability below 1e-4 for a random seed
(where a test documents a known O(h) Langevin bias, the margin left is stated next to it).
The seeds are fixed, so the outcome is deterministic; the argument says the seeds are not tuned.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _tiny import HostTraffic
from torch import Tensor

from stgconv.checks import MAX_STEP_SIZE
from stgconv.energy import image_energy
from stgconv.mcmc import (
    HMC,
    MALA,
    BlockGibbs,
    Constraint,
    Diagnostics,
    DownsampleConsistency,
    KnownEntries,
    KnownEntriesAndBlockMeans,
    Langevin,
    NonFiniteEnergyError,
    StepInfo,
)
from stgconv.mcmc import execution
from stgconv.mcmc import hmc as hmc_module
from stgconv.mcmc import langevin as langevin_module
from stgconv.mcmc import mala as mala_module
from stgconv.mcmc.base import energy_and_grad, nonfinite_flag, on_grid
from stgconv.mcmc.metropolis import metropolis_select
from stgconv.ops import block_down, nearest_up

F64 = torch.float64
N_SE = 5.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_within_se(estimate: Tensor, target: Tensor, se: Tensor, what: str,
                     n_se: float = N_SE) -> None:
    """Every entry of ``estimate`` lies within ``n_se`` standard errors of ``target``."""
    estimate, target, se = (torch.as_tensor(t, dtype=F64) for t in (estimate, target, se))
    z = (estimate - target) / se
    assert z.abs().max() < n_se, (
        f"{what}: estimate {estimate.tolist()} vs target {target.tolist()} "
        f"is {z.tolist()} standard errors off (bound {n_se})"
    )


class Quadratic2D:
    """``E(x) = 0.5 (x - mu)^T A (x - mu)`` for ``x`` ``(B, 2)``: the Gaussian N(mu, A^-1)."""

    def __init__(self, mu: Tensor, cov: Tensor) -> None:
        self.mu = mu
        self.cov = cov
        self.precision = torch.linalg.inv(cov)
        self.a, self.b, self.c = (float(v) for v in self.precision.flatten()[[0, 1, 3]])

    def __call__(self, x: Tensor) -> Tensor:
        r0, r1 = x[:, 0] - self.mu[0], x[:, 1] - self.mu[1]
        # Written out, not ``(r @ A) * r``: a float64 (B, 2) @ (2, 2) matmul is ~40x slower on
        # CPU, and these tests spend their time in thousands of tiny steps.
        return 0.5 * (self.a * r0**2 + 2 * self.b * r0 * r1 + self.c * r1**2)


def isotropic_energy(x: Tensor, *, mu: Tensor | float = 0.0, s: float = 1.0) -> Tensor:
    """``|x - mu|^2 / (2 s^2)`` summed per chain, for any ``(B, *S)`` layout."""
    return ((x - mu) ** 2).flatten(1).sum(dim=1) / (2 * s**2)


def standard_energy(x: Tensor) -> Tensor:
    return isotropic_energy(x)


def mean_cov_se(cov: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Standard errors of the sample mean ``(d,)`` and sample covariance ``(d, d)`` of ``n``
    independent Gaussian draws: Var(mean_i) = S_ii / n, Var(cov_ij) = (S_ii S_jj + S_ij^2) / n."""
    var = cov.diagonal()
    return (var / n).sqrt(), ((var[:, None] * var[None, :] + cov**2) / n).sqrt()


# ---------------------------------------------------------------------------------------------
# 2-D correlated Gaussian: mean and covariance
# ---------------------------------------------------------------------------------------------

GAUSS_MU = torch.tensor([1.0, -0.5], dtype=F64)
# Correlation 0.43; covariance eigenvalues 1.02 and 0.38, i.e. precision eigenvalues 0.98, 2.60.
GAUSS_COV = torch.tensor([[0.8, 0.3], [0.3, 0.6]], dtype=F64)
N_CHAINS = 4000

GAUSS_SAMPLERS = {
    # h = delta^2 / 2 = 0.008. Langevin's stationary covariance is (A (I - h A / 2))^-1, so the
    # largest relative bias is h * 2.60 / 2 = 1.0 %, on the 0.38-variance direction: about
    # 0.5 SE of a variance (SE = var * sqrt(2 / 4000) = 2.2 %). The slowest direction contracts
    # by 1 - h * 0.98 per step: 1000 steps shrink the start's offset by e^-7.9.
    "langevin": Langevin(n_steps=1000, step_size=0.1265),
    # Exact samplers: step sizes chosen for fast mixing (acceptance 0.93 and 0.99), not small bias.
    "mala": MALA(n_steps=100, step_size=0.6),
    "hmc": HMC(n_steps=30, step_size=0.3, n_leapfrog=5),
}


@pytest.mark.parametrize("name", list(GAUSS_SAMPLERS))
def test_correlated_gaussian_mean_and_covariance(name: str) -> None:
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    g = gen(1)
    # Broad start, centred away from mu, so a sampler that does not move fails.
    x0 = 3.0 * torch.randn(N_CHAINS, 2, generator=g, dtype=F64)
    x = GAUSS_SAMPLERS[name].run(energy, x0, generator=g)

    mean_se, cov_se = mean_cov_se(GAUSS_COV, N_CHAINS)
    assert_within_se(x.mean(dim=0), GAUSS_MU, mean_se, f"{name} mean")
    assert_within_se(torch.cov(x.T), GAUSS_COV, cov_se, f"{name} covariance")


# ---------------------------------------------------------------------------------------------
# Discretisation bias: plain Langevin is biased at a large step, MALA and HMC are not
# ---------------------------------------------------------------------------------------------


def test_large_step_langevin_bias_removed_by_mala_and_hmc() -> None:
    # E = x^2 / (2 s^2). Langevin x' = (1 - h/s^2) x + delta * eps with h = delta^2 / 2 has the
    # stationary variance v = delta^2 / (1 - (1 - h/s^2)^2) = s^2 / (1 - h / (2 s^2)).
    # With s = 1, delta = 1.2: h = 0.72, v = 1.5625 instead of 1.
    s, delta, n = 1.0, 1.2, 20000
    h = delta**2 / 2
    biased_var = s**2 / (1 - h / (2 * s**2))

    def se_var(v: float) -> float:  # SE of the sample variance of n Gaussian draws
        return v * math.sqrt(2 / n)

    # 5 SE of the true variance is 0.05; the bias is 0.56, more than 50 SE: the test separates them.
    assert biased_var - s**2 > 20 * se_var(s**2)

    def energy(x: Tensor) -> Tensor:
        return isotropic_energy(x, s=s)

    g = gen(2)
    x0 = 3.0 * torch.randn(n, 1, generator=g, dtype=F64)
    # Langevin contracts by 1 - h = 0.28 per step: 50 steps forget the start completely.
    lang = Langevin(n_steps=50, step_size=delta).run(energy, x0, generator=g)
    mala = MALA(n_steps=100, step_size=delta).run(energy, x0, generator=g)
    hmc = HMC(n_steps=50, step_size=delta, n_leapfrog=3).run(energy, x0, generator=g)

    assert_within_se(lang.var(), biased_var, se_var(biased_var), "Langevin variance vs biased v")
    assert_within_se(mala.var(), s**2, se_var(s**2), "MALA variance")
    assert_within_se(hmc.var(), s**2, se_var(s**2), "HMC variance")
    for name, x, var in [("Langevin", lang, biased_var), ("MALA", mala, s**2), ("HMC", hmc, s**2)]:
        assert_within_se(x.mean(), 0.0, math.sqrt(var / n), f"{name} mean")


# ---------------------------------------------------------------------------------------------
# Two-mode Gaussian mixture: crossing between modes, moments and mode weights
# ---------------------------------------------------------------------------------------------

MIX_CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.0]], dtype=F64)
MIX_WEIGHTS = torch.tensor([0.3, 0.7], dtype=F64)
MIX_STD = 0.7


def mixture_energy(x: Tensor) -> Tensor:
    """``-log sum_k w_k N(x; c_k, 0.7^2 I)`` up to a constant, ``x`` ``(B, 2)``."""
    x2sq = x[:, 1] ** 2
    log_w = MIX_WEIGHTS.log()
    left = log_w[0] - ((x[:, 0] - MIX_CENTRES[0, 0]) ** 2 + x2sq) / (2 * MIX_STD**2)
    right = log_w[1] - ((x[:, 0] - MIX_CENTRES[1, 0]) ** 2 + x2sq) / (2 * MIX_STD**2)
    return -torch.logaddexp(left, right)


def mixture_stats(x: Tensor) -> Tensor:
    """Per-chain statistics ``(B, 6)``: x1, x2, x1^2, x2^2, x1 x2, [x1 > 0]."""
    x1, x2 = x[:, 0], x[:, 1]
    return torch.stack([x1, x2, x1**2, x2**2, x1 * x2, (x1 > 0).to(x.dtype)], dim=1)


def mixture_truth() -> tuple[Tensor, Tensor]:
    """Exact expectations ``(6,)`` and per-draw standard deviations ``(6,)`` of mixture_stats."""
    w, m, v = MIX_WEIGHTS, MIX_CENTRES[:, 0], MIX_STD**2
    e_x1 = (w * m).sum()
    e_x1sq = v + (w * m**2).sum()
    e_x1_4 = (w * (m**4 + 6 * m**2 * v + 3 * v**2)).sum()
    p_right = (w * torch.special.ndtr(m / MIX_STD)).sum()
    means = torch.stack([e_x1, torch.tensor(0.0, dtype=F64), e_x1sq, torch.tensor(v, dtype=F64),
                         torch.tensor(0.0, dtype=F64), p_right])
    variances = torch.stack([
        e_x1sq - e_x1**2,            # Var x1
        torch.tensor(v, dtype=F64),  # Var x2
        e_x1_4 - e_x1sq**2,          # Var x1^2
        torch.tensor(2 * v**2, dtype=F64),  # Var x2^2 (x2 ~ N(0, v) in every component)
        e_x1sq * v,                  # Var x1 x2: x2 is independent of x1 and has mean 0
        p_right * (1 - p_right),     # Bernoulli
    ])
    return means, variances.sqrt()


MIX_SAMPLERS = {
    # h = 0.02. Langevin's O(h) bias widens each mode's variance by about h / 2 * (1 / 0.49)
    # = 2 %, i.e. 0.01 on E[x2^2] (0.9 SE) and on E[x1^2] (0.3 SE): a 4 SE margin remains
    # (false failure < 1e-4 per statistic). Measured relaxation of the mode weights from the
    # light mode: e-fold in ~270 steps, so 2000 steps leave e^-7.4 of the initial 0.69
    # imbalance, 0.0004 = 0.06 SE.
    "langevin": Langevin(n_steps=2000, step_size=0.2),
    # e-fold in ~30 MALA steps and ~12 HMC iterations (measured): 250 and 100 give e^-8.
    "mala": MALA(n_steps=250, step_size=0.8),
    "hmc": HMC(n_steps=100, step_size=0.35, n_leapfrog=6),
}


@pytest.mark.parametrize("name", list(MIX_SAMPLERS))
def test_gaussian_mixture_moments_and_mode_weights(name: str) -> None:
    g = gen(3)
    # Every chain starts in the light (0.3) mode: the heavy mode's 0.69 share of the chains can
    # only come from real crossings of the barrier at x1 = 0 (about 2.3 nats high).
    x0 = MIX_CENTRES[0] + MIX_STD * torch.randn(N_CHAINS, 2, generator=g, dtype=F64)
    assert (x0[:, 0] > 0).double().mean() < 0.05
    x = MIX_SAMPLERS[name].run(mixture_energy, x0, generator=g)

    means, stds = mixture_truth()
    assert_within_se(
        mixture_stats(x).mean(dim=0), means, stds / math.sqrt(N_CHAINS),
        f"{name} [E x1, E x2, E x1^2, E x2^2, E x1x2, P(x1>0)]",
    )


# ---------------------------------------------------------------------------------------------
# Acceptance rate
# ---------------------------------------------------------------------------------------------


def test_mala_acceptance_rate_decreases_with_step_size() -> None:
    g = gen(4)
    # Start at the target (10-D standard Gaussian) so the rates are stationary ones.
    x0 = torch.randn(1000, 10, generator=g, dtype=F64)
    rates = []
    for step_size in [0.1, 0.4, 0.8, 1.2, 1.6]:
        diag = Diagnostics()
        MALA(n_steps=20, step_size=step_size).run(standard_energy, x0, generator=g, callback=diag)
        assert len(diag.steps) == 20
        rates.append(diag.acceptance_rate)
    # 20000 decisions per rate: SE <= 0.0035 (less with correlation ignored); neighbouring rates
    # differ by > 0.1 (measured 1.00, 0.98, 0.84, 0.51, 0.14), so strict order is robust.
    assert all(0 < r <= 1 for r in rates), rates
    assert all(a > b + 0.01 for a, b in zip(rates, rates[1:])), rates
    assert rates[0] > 0.99 and rates[-1] < 0.5, rates


def test_hmc_acceptance_rate_and_langevin_reports_one() -> None:
    g = gen(5)
    x0 = torch.randn(1000, 10, generator=g, dtype=F64)
    small, large = Diagnostics(), Diagnostics()
    HMC(n_steps=10, step_size=0.1, n_leapfrog=3).run(standard_energy, x0, generator=g,
                                                     callback=small)
    HMC(n_steps=10, step_size=1.6, n_leapfrog=3).run(standard_energy, x0, generator=g,
                                                     callback=large)
    assert 0.99 < small.acceptance_rate <= 1.0
    assert 0.0 < large.acceptance_rate < 0.6  # measured 0.29
    assert all(s.accepted is not None and s.accepted.dtype == torch.bool for s in small.steps)

    lang = Diagnostics()
    Langevin(n_steps=3, step_size=0.1).run(standard_energy, x0, generator=g, callback=lang)
    assert lang.acceptance_rate == 1.0
    assert all(s.accepted is None for s in lang.steps)


@pytest.mark.parametrize("sampler", [MALA(n_steps=1, step_size=0.1),
                                     HMC(n_steps=1, step_size=0.1, n_leapfrog=1)])
def test_metropolis_samplers_refuse_a_projection_that_is_not_affine(sampler) -> None:
    """A box (a clamp) as a constraint was taken: the proposals moved along its default
    tangent, the proposal densities were taken there, and the chain sampled something else
    without a word. An affine constraint of one's own is still taken."""
    class Box(Constraint):
        def project(self, x: Tensor) -> Tensor:
            return x.clamp(0.0, 1.0)

    class FirstEntryIsOne(Constraint):
        def project(self, x: Tensor) -> Tensor:
            return torch.cat([torch.ones_like(x[:, :1]), x[:, 1:]], dim=1)

    x0 = torch.rand(3, 4, generator=gen(3), dtype=F64)
    name = type(sampler).__name__
    with pytest.raises(ValueError, match=rf"^{name}: the constraint Box does not project "
                                         rf"affinely .*use Langevin"):
        sampler.run(standard_energy, x0, constraint=Box(), generator=gen(4))
    x = sampler.run(standard_energy, x0, constraint=FirstEntryIsOne(), generator=gen(4))
    assert (x[:, 0] == 1.0).all()


def test_hmc_step_jitter_mixes_where_the_trajectory_matches_a_period() -> None:
    """Twenty leapfrog steps of 2 pi / 20 on a standard Gaussian turn each chain almost a whole
    period: every trajectory comes back near its start, is accepted, and the chains started at
    3 stay there. Each chain's step drawn in [0.7, 1.3] of it breaks the period: they mix."""
    x0 = torch.full((2000, 1), 3.0, dtype=F64)
    kept, jittered = (
        HMC(n_steps=20, step_size=2 * math.pi / 20, n_leapfrog=20, step_jitter=jitter).run(
            standard_energy, x0, generator=gen(8))
        for jitter in (0.0, 0.3))
    assert abs(float(kept.mean()) - 3.0) < 0.1 and float(kept.var()) < 0.05
    assert abs(float(jittered.mean())) < 0.15 and abs(float(jittered.var()) - 1.0) < 0.15
    same = HMC(n_steps=20, step_size=2 * math.pi / 20, n_leapfrog=20, step_jitter=0.3).run(
        standard_energy, x0, generator=gen(8))
    assert torch.equal(same, jittered)


def test_mala_log_acceptance_ratio_keeps_float32_proposal_terms_exact() -> None:
    """The proposal densities' squared norms (1.6e7 here: 16 entries 1000 apart; half of a
    10^6-entry video's count, 5e5, is rounded alike) cancel in the ratio: summed apart in
    float32 it was off by up to 0.44 on these values; entry by entry, summed in float64, it
    matches float64 arithmetic on the same float32 values."""
    g = gen(40)
    x = torch.randn(4, 16, generator=g)
    y = x + 1000 + torch.randn(4, 16, generator=g)
    g_x, g_y, e_x, e_y = (torch.randn(*shape, generator=g) for shape in [(4, 16)] * 2 + [(4,)] * 2)
    x64, y64, gx64, gy64 = (t.double() for t in (x, y, g_x, g_y))
    half_step = 0.5  # step size 1
    expected = e_x.double() - e_y.double() + (((y64 - x64 + half_step * gx64) ** 2).sum(1)
                                              - ((x64 - y64 + half_step * gy64) ** 2).sum(1)) / 2
    got = mala_module.log_acceptance_ratio(x, y, e_x, e_y, g_x, g_y, step_size=1.0)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=0.01)


def test_hmc_log_acceptance_ratio_keeps_float32_kinetic_energies_exact() -> None:
    """Kinetic energies of 8e6 (momenta near 1000) cancel in ``H_start - H_end``: taken apart in
    float32 it was off by up to 0.58 on these values; entry by entry, summed in float64, it
    matches float64 arithmetic on the same float32 values."""
    g = gen(41)
    p_start, p_end = (1000 + torch.randn(4, 16, generator=g) for _ in range(2))
    e_x, e_y = torch.randn(4, generator=g), torch.randn(4, generator=g)
    expected = e_x.double() - e_y.double() + 0.5 * ((p_start.double() ** 2).sum(1)
                                                    - (p_end.double() ** 2).sum(1))
    got = hmc_module.log_acceptance_ratio(e_x, e_y, p_start, p_end)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=0.01)


def test_a_float64_ratio_draws_the_float32_chains_uniforms() -> None:
    """The ratio is float64 now; the uniforms stay those a float32 chain drew before (a seed
    gives the same chain): each decision is the float32 uniform's against the ratio."""
    u = torch.rand(64, generator=torch.Generator().manual_seed(5))
    margin = torch.tensor([1e-6, -1e-6], dtype=torch.float64).repeat(32)
    chains = (torch.zeros(64, 2), torch.zeros(64), torch.zeros(64, 2))
    _, accept = metropolis_select(torch.log(u).double() + margin, chains, chains,
                                  generator=torch.Generator().manual_seed(5))
    assert torch.equal(accept, margin > 0)


def test_float64_energies_draw_the_uniforms_in_float64() -> None:
    """The uniforms take the chain's and the energies' dtype together: a float32 chain whose
    energy sums in float64 (for an exact test) draws them in float64."""
    u = torch.rand(64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    margin = torch.tensor([1e-9, -1e-9], dtype=torch.float64).repeat(32)
    chains = (torch.zeros(64, 2), torch.zeros(64, dtype=torch.float64), torch.zeros(64, 2))
    _, accept = metropolis_select(torch.log(u) + margin, chains, chains,
                                  generator=torch.Generator().manual_seed(5))
    assert torch.equal(accept, margin > 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_chains_draw_float32_uniforms(dtype: torch.dtype) -> None:
    """A bfloat16 uniform came out 0 one draw in 500 (float16: one in 4000), and its log, -inf,
    accepted any proposal: 0.2% of proposals of ratio e^-50 were taken. Half-precision chains
    draw the float32 chain's uniforms, whose decisions follow the ratio."""
    n = 100_000
    chains = (torch.zeros(n, 2, dtype=dtype), torch.zeros(n, dtype=dtype),
              torch.zeros(n, 2, dtype=dtype))
    _, accept = metropolis_select(torch.full((n,), -50.0, dtype=F64), chains, chains,
                                  generator=gen(5))
    assert not accept.any()
    u = torch.rand(64, generator=gen(5))
    margin = torch.tensor([1e-6, -1e-6], dtype=F64).repeat(32)
    _, accept = metropolis_select(torch.log(u).double() + margin,
                                  tuple(c[:64] for c in chains), tuple(c[:64] for c in chains),
                                  generator=gen(5))
    assert torch.equal(accept, margin > 0)


def test_acceptance_ratios_sum_their_entry_terms_in_float64() -> None:
    """Entry terms that cancel (2^25, 1, -2^25) sum to 1 in float64 and to 0 in float32, whose
    spacing at 2^25 is 4: the entry-by-entry form keeps the large squared norms out of the
    terms, and the float64 sum keeps a chain's many terms from rounding each other away."""
    zero, ones = torch.zeros(1), torch.ones(1, 3)
    # MALA, step size 1, equal gradients 1: each term is -2 (y - x).
    y = torch.tensor([[-2.0**24, -0.5, 2.0**24]])
    assert mala_module.log_acceptance_ratio(torch.zeros(1, 3), y, zero, zero, ones, ones,
                                            step_size=1.0).tolist() == [-0.5]
    # HMC: each term is p_start^2 - p_end^2.
    p_start, p_end = torch.tensor([[8192.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 8192.0]])
    assert hmc_module.log_acceptance_ratio(zero, zero, p_start, p_end).tolist() == [0.5]


def test_acceptance_ratios_take_the_energy_difference_in_float64() -> None:
    """Energies of half-precision chains, 60000 and -60000, are apart by more than float16
    holds (65504): their difference, taken in their dtype, was infinite. Energies an energy
    sums in float64, 2^30 + 0.5 and 2^30, are apart by 0.5, which float32 (spacing 128 there)
    rounds away."""
    for e_x, e_y, drop in ((torch.tensor([6e4], dtype=torch.float16),
                            torch.tensor([-6e4], dtype=torch.float16), 120000.0),
                           (torch.tensor([2.0**30 + 0.5], dtype=F64),
                            torch.tensor([2.0**30], dtype=F64), 0.5)):
        still = torch.zeros(1, 3, dtype=e_x.dtype)  # no move, no gradient, no momentum
        assert mala_module.log_acceptance_ratio(still, still, e_x, e_y, still, still,
                                                step_size=1.0).tolist() == [drop]
        assert hmc_module.log_acceptance_ratio(e_x, e_y, still, still).tolist() == [drop]

# ---------------------------------------------------------------------------------------------
# Exact acceptance probabilities: one step from the target itself, on N(0, 1)
# ---------------------------------------------------------------------------------------------


def expected_under_two_normals(integrand) -> float:
    """``E[integrand(a, b)]`` for independent ``a, b ~ N(0, 1)``, by the trapezoid rule on a
    grid over [-9, 9]^2 (error far below 1e-6 for the bounded integrands here)."""
    t = torch.linspace(-9.0, 9.0, 1801, dtype=F64)
    a, b = torch.meshgrid(t, t, indexing="ij")
    density = torch.exp(-(a**2 + b**2) / 2) / (2 * math.pi)
    return torch.trapezoid(torch.trapezoid(density * integrand(a, b), t), t).item()


def mala_acceptance_on_standard_normal(delta: float) -> float:
    """Stationary acceptance rate of MALA on E = x^2 / 2. With ``h = delta^2 / 2`` the proposal
    is ``y = (1 - h) x + delta xi`` and, as ``(y - a x)^2 - (x - a y)^2 = (y^2 - x^2)(1 - a^2)``
    for ``a = 1 - h``, the log Metropolis-Hastings ratio reduces to ``delta^2 (x^2 - y^2) / 8``:
    the proposal-density term cancels all but a ``delta^2 / 4`` share of the energy
    difference."""
    h = delta**2 / 2

    def accept(x: Tensor, xi: Tensor) -> Tensor:
        y = (1 - h) * x + delta * xi
        return torch.exp(delta**2 * (x**2 - y**2) / 8).clamp(max=1.0)

    return expected_under_two_normals(accept)


def hmc_acceptance_on_standard_normal(eps: float, n_leapfrog: int) -> float:
    """Stationary acceptance rate of HMC on E = x^2 / 2: a leapfrog step is the linear map
    ``(x, p) -> (x', p')`` below, so ``H(end) - H(start)`` is a quadratic form in the start."""
    one_step = torch.tensor([[1 - eps**2 / 2, eps], [-eps * (1 - eps**2 / 4), 1 - eps**2 / 2]],
                            dtype=F64)
    m = torch.linalg.matrix_power(one_step, n_leapfrog)

    def accept(x: Tensor, p: Tensor) -> Tensor:
        x_end, p_end = m[0, 0] * x + m[0, 1] * p, m[1, 0] * x + m[1, 1] * p
        return torch.exp((x**2 + p**2 - x_end**2 - p_end**2) / 2).clamp(max=1.0)

    return expected_under_two_normals(accept)


STATIONARY_CASES = {
    # Step sizes with acceptance well inside (0, 1), where a wrong ratio shows most.
    "mala-1.0": (MALA(n_steps=1, step_size=1.0), lambda: mala_acceptance_on_standard_normal(1.0)),
    "mala-1.3": (MALA(n_steps=1, step_size=1.3), lambda: mala_acceptance_on_standard_normal(1.3)),
    "mala-1.6": (MALA(n_steps=1, step_size=1.6), lambda: mala_acceptance_on_standard_normal(1.6)),
    "hmc-1.2x3": (HMC(n_steps=1, step_size=1.2, n_leapfrog=3),
                  lambda: hmc_acceptance_on_standard_normal(1.2, 3)),
    "hmc-1.5x2": (HMC(n_steps=1, step_size=1.5, n_leapfrog=2),
                  lambda: hmc_acceptance_on_standard_normal(1.5, 2)),
}


@pytest.mark.parametrize("case", list(STATIONARY_CASES))
def test_one_step_from_the_target_accepts_at_the_exact_rate_and_stays_on_it(case: str) -> None:
    """Chains that start as exact N(0, 1) draws take one step. The acceptance rate must be the
    analytic one (a proposal density off by a factor, a sign or a term moves it), and the chains
    must still be N(0, 1) (an exact kernel leaves its target invariant after every single step,
    so no mixing time hides a bias). One step per chain: the decisions are independent, and the
    bounds are 5 binomial / Gaussian standard errors of the target's values."""
    sampler, exact_rate = STATIONARY_CASES[case]
    n = 200_000
    g = gen(40)
    x0 = torch.randn(n, 1, generator=g, dtype=F64)
    diag = Diagnostics()
    x = sampler.run(standard_energy, x0, generator=g, callback=diag)
    rate = exact_rate()
    assert 0.3 < rate < 0.95, rate  # the decisions are informative at this step size
    assert_within_se(diag.acceptance_rate, rate, math.sqrt(rate * (1 - rate) / n),
                     f"{case} acceptance rate")
    assert_within_se(x.mean(), 0.0, math.sqrt(1 / n), f"{case} mean after one step")
    assert_within_se(x.var(), 1.0, math.sqrt(2 / n), f"{case} variance after one step")
    # E[x^4] = 3 with Var(x^4) = 105 - 9 = 96.
    assert_within_se((x**4).mean(), 3.0, math.sqrt(96 / n), f"{case} fourth moment after one step")


# ---------------------------------------------------------------------------------------------
# Contract over every sampler: shapes, inputs untouched, reproducibility, errors
# ---------------------------------------------------------------------------------------------

ALL_SAMPLERS = {
    "langevin": Langevin(n_steps=5, step_size=0.1),
    "mala": MALA(n_steps=5, step_size=0.3),
    "hmc": HMC(n_steps=3, step_size=0.2, n_leapfrog=3),
}
LAYOUTS = {"flat": (6, 5), "image": (4, 2, 6, 6), "video": (2, 1, 3, 4, 4)}


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_sampler_contract(name: str, layout: str) -> None:
    sampler = ALL_SAMPLERS[name]
    x0 = torch.randn(LAYOUTS[layout], generator=gen(6))
    before = x0.clone()
    x = sampler.run(standard_energy, x0, generator=gen(7))
    assert x.shape == x0.shape and x.dtype == x0.dtype
    assert torch.equal(x0, before), "x0 was modified"
    assert torch.isfinite(x).all()
    assert not torch.equal(x, x0), "the chains did not move"
    assert not x.requires_grad


# Every path that reduces over a chain's entries: Langevin's clipping and callback norms, the
# Metropolis samplers' acceptance sums.
PER_CHAIN_SAMPLERS = {
    **ALL_SAMPLERS,
    "langevin_clipped": Langevin(n_steps=5, step_size=0.1, grad_clip=0.5),
}


@pytest.mark.parametrize("name", list(PER_CHAIN_SAMPLERS))
def test_chains_of_one_number_each_move_as_chains_of_one_entry(name: str) -> None:
    """``(B,)`` chains of a 1-D energy are ``(B, *S)`` with ``S = ()``; MALA, HMC and Langevin
    with clipping or a callback raised IndexError from ``flatten(1)``. They must take exactly
    the steps of the same chains as ``(B, 1)``."""
    x0 = torch.randn(6, generator=gen(6))
    scalar = PER_CHAIN_SAMPLERS[name].run(lambda x: 0.5 * x**2, x0, generator=gen(7),
                                          callback=Diagnostics())
    column = PER_CHAIN_SAMPLERS[name].run(standard_energy, x0[:, None], generator=gen(7),
                                          callback=Diagnostics())
    assert scalar.shape == (6,)
    assert torch.equal(scalar, column[:, 0])
    assert not torch.equal(scalar, x0)


@pytest.mark.parametrize("name", list(PER_CHAIN_SAMPLERS))
def test_an_empty_batch_of_chains_comes_back_empty(name: str) -> None:
    """Langevin's final check reshaped ``(0, 3)`` to ``(0, -1)`` and failed in torch ("cannot
    reshape tensor of 0 elements"), where MALA and HMC gave the empty batch back."""
    x = PER_CHAIN_SAMPLERS[name].run(standard_energy, torch.empty(0, 3, dtype=F64),
                                     generator=gen(7), callback=Diagnostics())
    assert x.shape == (0, 3) and x.dtype == F64


def test_one_number_and_empty_chains_pass_the_bfloat16_choice_of_precision_auto(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, precision "auto" first measures bfloat16's gradient error per chain, which
    flattened ``(B,)`` chains with ``flatten(1)`` and read ``x[0]`` of an empty batch (both
    IndexError). The CPU never takes that path: it is made to here."""
    monkeypatch.setattr(execution, "auto_may_use_bfloat16", lambda device: True)
    sampler = Langevin(n_steps=3, step_size=0.1)  # precision "auto", with noise
    x0 = torch.randn(6, generator=gen(6))
    scalar = sampler.run(lambda x: 0.5 * x**2, x0, generator=gen(7))
    column = sampler.run(standard_energy, x0[:, None], generator=gen(7))
    assert scalar.shape == (6,) and torch.equal(scalar, column[:, 0])
    assert sampler.run(standard_energy, torch.empty(0, 3), generator=gen(7)).shape == (0, 3)


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_same_seed_same_chains_different_seed_different(name: str) -> None:
    sampler = ALL_SAMPLERS[name]
    x0 = torch.randn(8, 3, 4, 4, generator=gen(8))
    a = sampler.run(standard_energy, x0, generator=gen(9))
    b = sampler.run(standard_energy, x0, generator=gen(9))
    c = sampler.run(standard_energy, x0, generator=gen(10))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_energy_of_wrong_shape_is_a_value_error(name: str) -> None:
    def column_energy(x: Tensor) -> Tensor:  # (B, 1) instead of (B,)
        return standard_energy(x)[:, None]

    with pytest.raises(ValueError, match=r"\(B,\)"):
        ALL_SAMPLERS[name].run(column_energy, torch.randn(4, 3), generator=gen(0))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_starts_that_are_not_float_tensors_and_energies_without_a_gradient_are_named(
        name: str) -> None:
    """Integer or bool starts (binary data, say) and a numpy array failed inside torch
    ("only Tensors of floating point dtype can require gradients"), a 0-d start (one number,
    no batch dimension) there too ("len() of a 0-d tensor"); an energy computed off
    the autograd graph failed in autograd ("element 0 of tensors does not require grad")."""
    sampler = ALL_SAMPLERS[name]
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    for bad, got in ((torch.ones(4, 3, dtype=torch.long), "torch.int64"),
                     (torch.ones(4, 3, dtype=torch.bool), "torch.bool"),
                     (np.zeros((4, 3)), "ndarray"),
                     (torch.tensor(1.0), r"a 0-d tensor \(x0\[None\]: one chain\)$")):
        with pytest.raises(ValueError, match=f"{label}: x0 must be a float tensor .* got {got}"):
            sampler.run(standard_energy, bad, generator=gen(0))
    with pytest.raises(ValueError, match="the energy has no gradient with respect to x"):
        sampler.run(lambda x: standard_energy(x.detach()), torch.randn(4, 3), generator=gen(0))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_an_energy_summed_over_the_batch_is_named_as_the_total(name: str) -> None:
    """The sum gives every chain its right gradient, so the mistake hides; MALA and HMC would
    accept or reject all chains on it."""
    with pytest.raises(ValueError, match=r"got \(\) \(the batch's total: give one energy per "):
        ALL_SAMPLERS[name].run(lambda x: standard_energy(x).sum(), torch.randn(4, 3),
                               generator=gen(0))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_energies_that_are_not_real_numbers_are_named_by_their_dtype(name: str) -> None:
    """A complex energy failed in autograd ("grad can be implicitly created only for real
    scalar outputs"); an integer one was said to have no gradient, which hid why; an array
    failed as having no ``shape`` attribute."""
    for dtype in (torch.complex64, torch.int64):
        with pytest.raises(ValueError, match=f"real floating point energies, got {dtype}"):
            ALL_SAMPLERS[name].run(lambda x, dtype=dtype: standard_energy(x).to(dtype),
                                   torch.randn(4, 3), generator=gen(0))
    with pytest.raises(ValueError, match=r"a tensor of shape \(B,\) = \(4,\), got ndarray"):
        ALL_SAMPLERS[name].run(lambda x: standard_energy(x).detach().numpy(),
                               torch.randn(4, 3), generator=gen(0))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_an_energy_of_its_parameters_alone_has_no_gradient_in_x(name: str) -> None:
    """x detached inside a module: the energy has a graph (its weights'), none through x, and
    autograd failed ("The differentiated Tensor at index 0 appears to not have been used in
    the graph")."""
    layer = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="the energy has no gradient with respect to x"):
        ALL_SAMPLERS[name].run(lambda x: layer(x.detach()).squeeze(1), torch.randn(4, 3),
                               generator=gen(0))


class Normalised(torch.nn.Module):
    """``E(x) = |layer(x)|^2 / 2`` through a batch-norm or dropout ``layer``."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return standard_energy(self.layer(x))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
@pytest.mark.parametrize("make_layer", [lambda: torch.nn.BatchNorm1d(3),
                                        lambda: torch.nn.Dropout(0.5),
                                        lambda: torch.nn.Dropout1d(0.5)],
                         ids=["batchnorm", "dropout", "channel_dropout"])
def test_layers_that_couple_or_randomise_chains_in_training_mode_are_refused(
        name: str, make_layer) -> None:
    """A module is in training mode until .eval(): batch norm made each chain's energy depend
    on the others (and sampling moved its running statistics), dropout made it random; the
    chains were drawn without a word. In eval mode both are per-chain functions and sample."""
    energy = Normalised(make_layer())
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    x0 = torch.randn(4, 3, generator=gen(0))
    kind = type(energy.layer).__name__
    with pytest.raises(ValueError, match=f"{label}: the energy's {kind} layer 'layer' is in "
                                         r"training mode.*call \.eval\(\)"):
        ALL_SAMPLERS[name].run(energy, x0, generator=gen(1))
    assert ALL_SAMPLERS[name].run(energy.eval(), x0, generator=gen(1)).shape == x0.shape


class Attending(torch.nn.Module):
    """``E(x) = |attention(x)|^2 / 2`` over chains ``(B, 3, 4)`` (3 tokens of 4 features)."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(4, 1, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return standard_energy(self.attention(x, x, x, need_weights=False)[0])


class Recurrent(torch.nn.Module):
    """``E(x) = |lstm(x)|^2 / 2`` over chains ``(B, 3, 4)``."""

    def __init__(self, dropout: float, num_layers: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 4, num_layers=num_layers, dropout=dropout,
                                  batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return standard_energy(self.lstm(x)[0])


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_attention_and_stacked_rnns_that_drop_units_in_training_mode_are_refused(name) -> None:
    """They apply their dropout rate themselves, with no dropout layer inside to find: in
    training mode the chains moved on a random energy without a word. Without a rate (or a
    single recurrent layer, which drops nothing) or in eval mode they sample."""
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    x0 = torch.randn(2, 3, 4, generator=gen(0))
    for energy, kind, layer in ((Attending(0.1), "MultiheadAttention", "attention"),
                                (Recurrent(0.1, 2), "LSTM", "lstm")):
        with pytest.raises(ValueError, match=f"{label}: the energy's {kind} layer '{layer}' is "
                                             r"in training mode, where it drops other units"):
            ALL_SAMPLERS[name].run(energy, x0, generator=gen(1))
        assert ALL_SAMPLERS[name].run(energy.eval(), x0, generator=gen(1)).shape == x0.shape
    with pytest.warns(UserWarning, match="num_layers greater than 1"):  # torch's own word
        single_layer = Recurrent(0.1, 1)
    for energy in (Attending(0.0), Recurrent(0.0, 2), single_layer):
        assert ALL_SAMPLERS[name].run(energy, x0, generator=gen(1)).shape == x0.shape


class ProjectOnly:
    """A constraint of the caller's own that is no :class:`Constraint`: a ``project`` alone."""

    def project(self, x: Tensor) -> Tensor:
        return x


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_a_mask_or_a_function_given_as_the_constraint_is_named(name: str) -> None:
    """A mask of the known entries, or a projection function (as score-based samplers take
    one), failed on "'Tensor' object has no attribute 'project'"; MALA and HMC also move
    along the constraint's tangent, which an object with a project alone lacked."""
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    x0 = torch.randn(2, 3, generator=gen(0))
    needs = "project" if name == "langevin" else "project and tangent"
    for constraint, got in ((x0 > 0, r"Tensor: KnownEntries\(observed, known\) keeps"),
                            (lambda x: x, r"function: subclass Constraint"),
                            (3, "int$")):
        with pytest.raises(ValueError, match=rf"^{label}: constraint must be a Constraint "
                                             rf"\(KnownEntries, DownsampleConsistency, \.\.\.: an "
                                             rf"object with {needs}\), got {got}"):
            ALL_SAMPLERS[name].run(standard_energy, x0, constraint=constraint, generator=gen(1))
    if name == "langevin":
        assert ALL_SAMPLERS[name].run(standard_energy, x0, constraint=ProjectOnly()).shape == (2, 3)
    else:
        with pytest.raises(ValueError, match=r"got ProjectOnly$"):
            ALL_SAMPLERS[name].run(standard_energy, x0, constraint=ProjectOnly())


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_a_partial_of_a_plain_function_is_an_energy(name: str) -> None:
    """Only a partial of a module's method leads to the module: a partial of a function has
    no module behind it, and samples as the function does."""
    x0 = torch.randn(4, 3, generator=gen(0))
    shifted = partial(isotropic_energy, mu=2.0)
    torch.testing.assert_close(
        ALL_SAMPLERS[name].run(shifted, x0, generator=gen(1)),
        ALL_SAMPLERS[name].run(lambda x: isotropic_energy(x, mu=2.0), x0, generator=gen(1)))


class OwnEnergyMethod:
    """A model of the caller's own, no module, that evaluates its energy by its own ``energy``
    method. Its hundredth look-up of ``energy`` in one run raises: a loop that never ends
    fails the test instead of hanging it."""

    def __init__(self) -> None:
        self.layer = torch.nn.Linear(3, 1)
        self.lookups = 0

    def __getattribute__(self, name: str):
        if name == "energy":
            object.__setattr__(self, "lookups", object.__getattribute__(self, "lookups") + 1)
            if object.__getattribute__(self, "lookups") >= 100:
                raise RecursionError("energy looked up 100 times in one run")
        return object.__getattribute__(self, name)

    def energy(self, x: Tensor) -> Tensor:
        return self.layer(x).squeeze(1) + standard_energy(x)

    def __call__(self, x: Tensor) -> Tensor:
        return self.energy(x)


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_an_object_with_an_energy_method_of_its_own_samples(name: str) -> None:
    """Taken for a wrapper that keeps the energy it evaluates as ``.energy``, such an object,
    or its bound method, led to the method and back to itself for ever: the sampler hung before
    its first step. Either samples as the function it evaluates does."""
    model = OwnEnergyMethod()
    x0 = torch.randn(4, 3, generator=gen(0))
    expected = ALL_SAMPLERS[name].run(lambda x: model.layer(x).squeeze(1) + standard_energy(x),
                                      x0, generator=gen(1))
    for energy in (model, model.energy):
        model.lookups = 0
        torch.testing.assert_close(ALL_SAMPLERS[name].run(energy, x0, generator=gen(1)),
                                   expected)


def test_a_layer_in_training_mode_is_found_through_wrappers_and_nesting() -> None:
    """A partial of a module's method (a class-conditional energy's form) is the module's, and
    so are the method itself (``model.energy``) and a partial of the module, whose chains were
    drawn without a word."""
    module = Normalised(torch.nn.Dropout(0.5))
    for energy in (partial(module.forward), module.forward, partial(module)):
        with pytest.raises(ValueError, match="Dropout layer 'layer' is in training mode"):
            ALL_SAMPLERS["langevin"].run(energy, torch.randn(4, 3, generator=gen(0)),
                                         generator=gen(1))
    # A layer inside another is named by its path.
    nested = Normalised(torch.nn.Sequential(torch.nn.Identity(), torch.nn.Dropout(0.5)))
    with pytest.raises(ValueError, match="Dropout layer 'layer.1' is in training mode"):
        ALL_SAMPLERS["langevin"].run(nested, torch.randn(4, 3, generator=gen(0)),
                                     generator=gen(1))
    # A module keeping the energy it wraps as .energy is checked whole, its own layers too.
    wrapper = Normalised(torch.nn.Dropout(0.5))
    wrapper.energy = Normalised(torch.nn.Identity())
    with pytest.raises(ValueError, match="Dropout layer 'layer' is in training mode"):
        ALL_SAMPLERS["langevin"].run(wrapper, torch.randn(4, 3, generator=gen(0)),
                                     generator=gen(1))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_batchnorm_without_running_statistics_is_refused_in_eval_mode_too(name: str) -> None:
    """Without running statistics batch norm normalises by the batch's in eval mode as well:
    .eval() did not make the chains independent, and they were sampled without a word."""
    energy = Normalised(torch.nn.BatchNorm1d(3, track_running_stats=False)).eval()
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    with pytest.raises(ValueError, match=f"{label}: the energy's BatchNorm1d layer 'layer' keeps "
                                         r"no running statistics \(track_running_stats=False\)"):
        ALL_SAMPLERS[name].run(energy, torch.randn(4, 3, generator=gen(0)), generator=gen(1))


class NaNAtCall:
    """Quadratic energy that returns NaN for every chain on its ``bad_call``-th call (0-based)."""

    def __init__(self, bad_call: int) -> None:
        self.bad_call = bad_call
        self.calls = 0

    def __call__(self, x: Tensor) -> Tensor:
        e = standard_energy(x)
        if self.calls == self.bad_call:
            e = e * float("nan")
        self.calls += 1
        return e


# Energy calls per step: Langevin evaluates once at the start of each step; MALA evaluates the
# start once and then one proposal per step; HMC the start once and then n_leapfrog per iteration.
# The error must name the step *during which* the bad value appeared, in [0, n_steps).
NAN_CASES = [
    ("langevin", Langevin(n_steps=10, step_size=0.1), 0, 0),
    ("langevin", Langevin(n_steps=10, step_size=0.1), 6, 6),
    ("langevin", Langevin(n_steps=10, step_size=0.1), 9, 9),
    ("mala", MALA(n_steps=10, step_size=0.3), 0, 0),  # the start
    ("mala", MALA(n_steps=10, step_size=0.3), 1 + 4, 4),  # proposal of step 4
    ("mala", MALA(n_steps=10, step_size=0.3), 1 + 9, 9),  # proposal of the last step
    ("hmc", HMC(n_steps=10, step_size=0.2, n_leapfrog=5), 0, 0),
    ("hmc", HMC(n_steps=10, step_size=0.2, n_leapfrog=5), 1 + 3 * 5 + 2, 3),  # leapfrog 2 of it. 3
    ("hmc", HMC(n_steps=10, step_size=0.2, n_leapfrog=5), 1 + 9 * 5 + 4, 9),
]


@pytest.mark.parametrize(("name", "sampler", "bad_call", "step"), NAN_CASES,
                         ids=[f"{c[0]}-call{c[2]}" for c in NAN_CASES])
def test_nonfinite_energy_raises_naming_the_step(name: str, sampler, bad_call: int,
                                                 step: int) -> None:
    energy = NaNAtCall(bad_call)
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    with pytest.raises(NonFiniteEnergyError,
                       match=f"^{label}: .* at step {step} of {sampler.n_steps}") as info:
        sampler.run(energy, torch.randn(5, 3, generator=gen(11)), generator=gen(12))
    assert info.value.step == step
    # MALA and HMC reject the NaN proposal, yet the error is still raised: nothing is hidden.
    assert energy.calls > bad_call


# The words of a divergence's advice, and the sampler field each asks to change.
ADVISED_FIELDS = {"step size": "step_size", "gradient clipping": "grad_clip",
                  "value clamp": "clamp"}


@pytest.mark.parametrize("sampler", [Langevin(n_steps=4, step_size=0.1),
                                     MALA(n_steps=4, step_size=0.3),
                                     HMC(n_steps=4, step_size=0.2, n_leapfrog=2)],
                         ids=["langevin", "mala", "hmc"])
def test_a_divergence_advises_only_what_its_sampler_takes(sampler) -> None:
    """MALA and HMC have no gradient clipping or clamp (a config refuses both for them), yet
    their divergence advised them: each advice names settings its own sampler has, kept when
    the grid is named and through a pickle."""
    import pickle

    with pytest.raises(NonFiniteEnergyError) as info:
        sampler.run(NaNAtCall(2), torch.randn(5, 3, generator=gen(11)), generator=gen(12))
    advice = str(info.value).rpartition("diverged (")[2]
    named = [field for words, field in ADVISED_FIELDS.items() if words in advice]
    # Each it has, too: Langevin's clipping and clamp are remedies of its own.
    assert named == [field for field in ADVISED_FIELDS.values() if hasattr(sampler, field)], advice
    on_a_grid = on_grid(info.value, 2, (4, 4))
    for err in (on_a_grid, pickle.loads(pickle.dumps(on_a_grid))):
        assert str(err).endswith(f"diverged ({advice}") and err.advice == info.value.advice


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
@pytest.mark.parametrize("bad_chains", [[2], [0, 1, 3, 4, 5, 6, 7]])
def test_nonfinite_energy_names_the_chains_it_happened_in(name: str, bad_chains: list[int]
                                                          ) -> None:
    """An energy undefined for some inputs (a log of a negative value, say) failed naming the
    step alone, so the caller could not tell which chains to look at."""
    chosen = torch.zeros(8, dtype=torch.bool)
    chosen[bad_chains] = True

    def energy(x: Tensor) -> Tensor:
        return torch.where(chosen, math.nan, standard_energy(x))

    with pytest.raises(NonFiniteEnergyError, match=r"at step 0 of \d+ in chains? [0-9, ]+") as info:
        ALL_SAMPLERS[name].run(energy, torch.randn(8, 3, generator=gen(0)), generator=gen(1))
    assert info.value.chains == tuple(bad_chains)
    named = "chain 2" if bad_chains == [2] else "chains 0, 1, 3, 4, 5 and 2 more"
    assert f"{named};" in str(info.value)
    assert on_grid(info.value, 2, (4, 4)).chains == tuple(bad_chains)


def first_entry_energy(x: Tensor) -> Tensor:
    """``x[:, 0]^2 / 2``: an energy that reads each chain's first entry alone."""
    return 0.5 * x[:, 0] ** 2


@pytest.mark.parametrize("energy", [standard_energy, first_entry_energy],
                         ids=["reading every entry", "reading the first"])
@pytest.mark.parametrize("name", [*ALL_SAMPLERS, "langevin, differentiable"])
def test_a_start_holding_nan_where_the_constraint_leaves_it_is_refused_as_a_start(
        name: str, energy) -> None:
    """Starts that mark missing entries with NaN, under a constraint that keeps the known ones:
    the NaN at chain 2's known entry is projected away, chain 1's at a free entry stays. That
    chain was reported as one that diverged (at step 0, or at the last under an energy that
    does not read the entry), with the advice of a smaller step size, and MALA and HMC
    returned it without a word; it is named as a start that holds NaN."""
    known = torch.tensor([[True, False, False]] * 4)
    x0 = torch.randn(4, 3, generator=gen(0), dtype=F64)
    x0[1, 2] = x0[2, 0] = math.nan
    constraint = KnownEntries(torch.zeros(4, 3, dtype=F64), known)
    said = r"^(Langevin|MALA|HMC): x0 holds NaN or infinite values in chain 1 \(after the "
    with pytest.raises(ValueError, match=said + "constraint's projection"):
        if name == "langevin, differentiable":
            ALL_SAMPLERS["langevin"].run(energy, x0, constraint=constraint, generator=gen(1),
                                         create_graph=True)
        else:
            ALL_SAMPLERS[name].run(energy, x0, constraint=constraint, generator=gen(1))


@pytest.mark.parametrize("chains, said", [
    ((), "of 10; the chain"),
    ((0, 1, 2, 3, 4), "of 10 in chains 0, 1, 2, 3, 4; "),
    ((0, 1, 2, 3, 4, 5), "of 10 in chains 0, 1, 2, 3, 4 and 1 more; "),
], ids=["unknown", "five", "six"])
def test_a_divergence_names_five_chains_and_counts_the_rest(chains: tuple, said: str) -> None:
    assert said in str(NonFiniteEnergyError("Langevin", 3, 10, chains))


def test_a_divergence_names_the_chains_of_its_first_step_alone() -> None:
    """Chain 1 diverges at step 0 and chain 3 at step 2: the error is step 0's, in chain 1."""
    calls = []

    def energy(x: Tensor) -> Tensor:
        bad = {0: 1, 2: 3}.get(len(calls))
        calls.append(None)
        e = standard_energy(x)
        return e if bad is None else e.index_fill(0, torch.tensor([bad]), math.nan)

    with pytest.raises(NonFiniteEnergyError, match="at step 0 of 4 in chain 1;") as info:
        Langevin(n_steps=4, step_size=0.1).run(energy, torch.randn(5, 2, generator=gen(0)),
                                              generator=gen(1))
    assert info.value.chains == (1,)


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_last_update_that_overflows_names_its_chain_alone(create_graph: bool) -> None:
    """Chain 0's last update overflows one of its entries to inf from a finite energy and
    gradient (a move of 5e5 x 1e36); chain 1 does not move: the divergence is chain 0's
    alone."""
    weight = torch.tensor([[1e36, 0.0], [0.0, 0.0]])
    x0 = torch.zeros(2, 2)
    sampler = Langevin(n_steps=1, step_size=MAX_STEP_SIZE, noise_scale=0.0)
    with pytest.raises(NonFiniteEnergyError, match="at step 0 of 1 in chain 0;") as info:
        sampler.run(lambda x: -(x * weight).sum(dim=1), x0, create_graph=create_graph)
    assert info.value.chains == (0,)


def test_langevin_nonfinite_once_past_threshold() -> None:
    # E = -sum(x) where x <= 3.2 and NaN beyond: noise-free Langevin from 0 moves every entry by
    # h = 0.5 per step, so the state at the start of step t is 0.5 t; first > 3.2 at t = 7.
    def energy(x: Tensor) -> Tensor:
        return torch.where(x > 3.2, torch.full_like(x, float("nan")), -x).sum(dim=1)

    sampler = Langevin(n_steps=20, step_size=1.0, noise_scale=0.0)
    with pytest.raises(NonFiniteEnergyError, match="Langevin.*step 7 of 20") as info:
        sampler.run(energy, torch.zeros(3, 2, dtype=F64))
    assert info.value.step == 7
    # Below the threshold nothing is raised.
    Langevin(n_steps=6, step_size=1.0, noise_scale=0.0).run(energy, torch.zeros(3, 2, dtype=F64))


# ---------------------------------------------------------------------------------------------
# Langevin options
# ---------------------------------------------------------------------------------------------


def test_langevin_without_noise_is_gradient_descent() -> None:
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    x0 = torch.randn(7, 2, generator=gen(13), dtype=F64)
    n, delta = 25, 0.3
    h = delta**2 / 2
    sampler = Langevin(n_steps=n, step_size=delta, noise_scale=0.0)
    a = sampler.run(energy, x0, generator=gen(14))
    b = sampler.run(energy, x0, generator=gen(15))
    assert torch.equal(a, b), "noise_scale=0 must not depend on the generator"
    # Nor draw from it: the caller's next draws stay those it would make without the chain.
    g = gen(14)
    for create_graph in (False, True):
        sampler.run(energy, x0, generator=g, create_graph=create_graph)
        assert torch.equal(g.get_state(), gen(14).get_state()), create_graph
    # x_n = mu + (I - h A)^n (x0 - mu)
    contraction = torch.linalg.matrix_power(torch.eye(2, dtype=F64) - h * energy.precision, n)
    expected = GAUSS_MU + (x0 - GAUSS_MU) @ contraction.T
    torch.testing.assert_close(a, expected, rtol=1e-10, atol=1e-12)


def flat_energy(x: Tensor) -> Tensor:
    """Zero energy: Langevin moves by noise only."""
    return (0.0 * x).flatten(1).sum(dim=1)


class Recorder:
    """Wraps an energy and keeps every state it was evaluated at (``x`` at the start of each
    step)."""

    def __init__(self, energy) -> None:
        self.energy = energy
        self.states: list[Tensor] = []

    def __call__(self, x: Tensor) -> Tensor:
        self.states.append(x.detach().clone())
        return self.energy(x)


def test_langevin_clamp_keeps_values_in_bounds() -> None:
    # Pure noise of std 2 per step would leave [-1, 1] at once; the clamp must hold it there.
    x0 = torch.zeros(500, 4, dtype=F64)
    x = Langevin(n_steps=10, step_size=2.0, clamp=(-1.0, 1.0)).run(flat_energy, x0,
                                                                   generator=gen(16))
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert (x == -1.0).any() and (x == 1.0).any(), "the clamp was never active"
    unclamped = Langevin(n_steps=10, step_size=2.0).run(flat_energy, x0, generator=gen(16))
    assert unclamped.abs().max() > 1.0


@pytest.mark.parametrize("create_graph", [False, True])
def test_langevin_constraint_wins_over_the_clamp(create_graph: bool) -> None:
    """The clamp comes before the projection: known entries observed outside the clamp's
    range stay as observed, free entries stay inside it."""
    observed = torch.full((3, 4), 2.0, dtype=F64)
    known = torch.tensor([True, False, True, False]).expand(3, 4)
    sampler = Langevin(n_steps=3, step_size=1.0, clamp=(-1.0, 1.0))
    x = sampler.run(flat_energy, torch.zeros(3, 4, dtype=F64), generator=gen(16),
                    constraint=KnownEntries(observed, known), create_graph=create_graph)
    assert (x[known] == 2.0).all()
    assert x[~known].abs().max() <= 1.0


@pytest.mark.parametrize("create_graph", [False, True])
def test_langevin_reports_the_gradient_norm_before_clipping(create_graph: bool) -> None:
    x0 = torch.randn(5, 3, generator=gen(21), dtype=F64) * 10
    infos: list[StepInfo] = []
    Langevin(n_steps=2, step_size=0.1, grad_clip=0.5).run(
        standard_energy, x0, generator=gen(22), callback=infos.append,
        create_graph=create_graph)
    torch.testing.assert_close(infos[0].grad_norm, x0.norm(dim=1))  # |grad E(x0)| = |x0|


@pytest.mark.parametrize("create_graph", [False, True])
def test_langevin_clips_a_float16_gradient_whose_norm_is_past_float16s_range(
        create_graph: bool) -> None:
    """8000 gradient entries of 1000 have norm 89443, past float16's 65504: the norm came out
    infinite, the clip scaled the gradient to zero and the chain stood still (and reported an
    infinite norm). Taken in float32, the clipped step has length h * clip, the chain stays
    float16, and the norm is reported."""
    infos: list[StepInfo] = []
    x0 = torch.zeros(1, 8000, dtype=torch.float16)
    x = Langevin(n_steps=1, step_size=0.1, noise_scale=0.0, grad_clip=1.0).run(
        lambda v: 1000 * v.flatten(1).sum(1), x0, callback=infos.append,
        create_graph=create_graph)
    assert x.dtype == torch.float16
    assert float(x.detach().float().norm()) == pytest.approx(0.5 * 0.1**2, rel=1e-2)
    assert float(infos[0].grad_norm) == pytest.approx(1000 * math.sqrt(8000), rel=1e-3)


@pytest.mark.parametrize("sampler", [MALA(n_steps=1, step_size=1e-3),
                                     HMC(n_steps=1, step_size=1e-3, n_leapfrog=1)])
def test_metropolis_samplers_report_a_float16_gradient_norm_past_float16s_range(
        sampler: MALA | HMC) -> None:
    """As for Langevin: a float16 chain's gradient norm of 89443 was reported as infinite."""
    infos: list[StepInfo] = []
    sampler.run(lambda v: 1000 * v.flatten(1).sum(1), torch.zeros(1, 8000, dtype=torch.float16),
                generator=torch.Generator().manual_seed(0), callback=infos.append)
    assert float(infos[0].grad_norm) == pytest.approx(1000 * math.sqrt(8000), rel=1e-3)


@pytest.mark.parametrize("create_graph", [False, True])
def test_langevin_clips_the_step_the_constraint_leaves_free(create_graph: bool) -> None:
    """The clip took the norm of the whole gradient, the held entries' too: a known entry far
    from the model's mode (gradient 1000 there) shrank the free entries' clipped step (gradient
    norm 2, clip 1) 500-fold. Under a constraint the norm is of the gradient's tangent, so the
    free entries move by h * clip; the block-mean constraint's tangent likewise."""
    h = 0.5 * 0.1**2
    x0 = torch.tensor([[1000.0, 1.0, 1.0, 1.0, 1.0]], dtype=F64)  # gradient x0 of |x|^2 / 2
    known = torch.tensor([[True, False, False, False, False]])
    x = Langevin(n_steps=1, step_size=0.1, noise_scale=0.0, grad_clip=1.0).run(
        standard_energy, x0, constraint=KnownEntries(x0, known), create_graph=create_graph)
    torch.testing.assert_close(x.detach()[0, 1:], torch.full((4,), 1.0 - h * 0.5, dtype=F64))
    assert x[0, 0] == 1000.0
    x0 = torch.tensor([[[5.0, 1.0, -1.0, 0.5]]], dtype=F64)  # block means 2 and -0.25
    means = DownsampleConsistency(block_down(x0, (2,)), (2,))
    x = Langevin(n_steps=1, step_size=0.1, noise_scale=0.0, grad_clip=1.0).run(
        standard_energy, x0, constraint=means, create_graph=create_graph)
    tangent = means.tangent(x0)  # the step's direction: (3, -3, -0.75, 0.75)
    torch.testing.assert_close(x.detach() - x0, -h * tangent / tangent.norm())


def test_langevin_grad_clip_bounds_displacement() -> None:
    # E = 50 |x|^2: gradient norm 100 |x| >> clip for |x| ~ 1 (about 2.8 for 8 dims).
    def steep(x: Tensor) -> Tensor:
        return 50.0 * (x**2).sum(dim=1)

    clip, delta, n = 1.0, 0.1, 6
    h = delta**2 / 2
    x0 = torch.randn(64, 8, generator=gen(17), dtype=F64)
    rec = Recorder(steep)
    x = Langevin(n_steps=n, step_size=delta, noise_scale=0.0, grad_clip=clip).run(rec, x0)
    path = torch.stack([*rec.states, x])  # (n + 1, B, 8)
    step_len = (path[1:] - path[:-1]).norm(dim=-1)  # (n, B)
    assert (step_len <= h * clip * (1 + 1e-9)).all()
    # While the gradient exceeds the clip (true throughout: |x| stays > 0.01), the step is exactly
    # h * clip along -grad.
    grad_norm = 100.0 * path[:-1].norm(dim=-1)
    active = grad_norm > clip
    assert active.float().mean() > 0.9
    torch.testing.assert_close(step_len[active], torch.full_like(step_len[active], h * clip))
    unclipped = Langevin(n_steps=1, step_size=delta, noise_scale=0.0).run(steep, x0)
    assert ((unclipped - x0).norm(dim=1) > 10 * h * clip).all()


def test_langevin_linear_anneal_shrinks_last_noise() -> None:
    # Zero energy, so each step's displacement is pure noise of std delta * (1 - t / n).
    n, delta, b = 5, 1.0, 4000
    x0 = torch.zeros(b, 2, dtype=F64)
    rec = Recorder(flat_energy)
    x = Langevin(n_steps=n, step_size=delta, noise_anneal="linear").run(rec, x0, generator=gen(18))
    path = torch.stack([*rec.states, x])
    increments = (path[1:] - path[:-1]).flatten(1)  # (n, 2B)
    stds = increments.std(dim=1)
    expected = torch.tensor([delta * (1 - t / n) for t in range(n)], dtype=F64)
    # SE of a sample std from 8000 Gaussian draws: sigma / sqrt(2 * 8000).
    assert_within_se(stds, expected, expected / math.sqrt(2 * 2 * b), "annealed noise std")
    assert stds[-1] < 0.5 * stds[0]

    plain = Recorder(flat_energy)
    y = Langevin(n_steps=n, step_size=delta).run(plain, x0, generator=gen(18))
    last = (y - plain.states[-1]).std()
    assert_within_se(last, delta, delta / math.sqrt(2 * 2 * b), "un-annealed last noise std")


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("anneal", ["none", "linear", "cosine"])
@pytest.mark.parametrize("noise_scale", [0.3, 1.0])
def test_short_run_langevin_law_on_a_gaussian_is_the_exact_one(noise_scale: float, anneal: str,
                                                               create_graph: bool) -> None:
    """On E = x^2 / (2 s^2) a Langevin step is linear, ``x' = c x + sigma_t eps`` with
    ``c = 1 - h / s^2``, ``h = delta^2 / 2`` and ``sigma_t = noise_scale * delta * f(t)``, so
    after ``n`` steps from ``x0`` the chain is exactly N(c^n x0, sum_t c^(2 (n-1-t)) sigma_t^2):
    the short-run (JEM) sampler's law at any length, not only in the limit. A drift factor off
    by 2, or a noise scaled by noise_scale^2 or sqrt(noise_scale), misses it; the differentiable
    chain of short-run training is a loop of its own and is held to the same law."""
    s, delta, n_steps, x0_value, n = 1.2, 0.7, 8, 2.0, 20_000
    sampler = Langevin(n_steps=n_steps, step_size=delta, noise_scale=noise_scale,
                       noise_anneal=anneal)
    c = 1 - delta**2 / 2 / s**2
    mean = c**n_steps * x0_value
    var = sum(c ** (2 * (n_steps - 1 - t)) * (noise_scale * delta * sampler.noise_factor(t)) ** 2
              for t in range(n_steps))
    x = sampler.run(lambda x: isotropic_energy(x, s=s), torch.full((n, 1), x0_value, dtype=F64),
                    generator=gen(41), create_graph=create_graph).detach()
    assert_within_se(x.mean(), mean, math.sqrt(var / n), f"mean after {n_steps} steps")
    assert_within_se(x.var(), var, var * math.sqrt(2 / n), f"variance after {n_steps} steps")


def test_langevin_noise_factor_schedules() -> None:
    lin = Langevin(n_steps=4, noise_anneal="linear")
    cos = Langevin(n_steps=4, noise_anneal="cosine")
    none = Langevin(n_steps=4)
    assert [lin.noise_factor(t) for t in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert cos.noise_factor(0) == 1.0 and cos.noise_factor(2) == pytest.approx(0.5)
    assert cos.noise_factor(3) == pytest.approx((1 + math.cos(0.75 * math.pi)) / 2)
    assert [none.noise_factor(t) for t in range(4)] == [1.0] * 4


@pytest.mark.parametrize(
    "kwargs",
    [{"n_steps": 0}, {"step_size": 0.0}, {"noise_scale": -1.0}, {"noise_anneal": "exp"},
     {"grad_clip": 0.0}, {"clamp": (1.0, -1.0)}, {"clamp": (1.0, 1.0)},
     # Taken until the first step failed inside torch's clamp_.
     {"clamp": (-1.0, 0.0, 1.0)}, {"clamp": ("a", "b")}, {"clamp": 1.0}, {"clamp": (False, True)},
     # NaN passed every `<= 0` check: a NaN noise_scale then ran the chain without noise.
     {"noise_scale": math.nan}, {"step_size": math.nan}, {"step_size": math.inf},
     {"grad_clip": math.nan}],
)
def test_langevin_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Langevin(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(MALA, {"n_steps": 0}), (MALA, {"step_size": -1.0}), (HMC, {"n_steps": 0}),
     (HMC, {"n_leapfrog": 0}), (HMC, {"step_size": 0.0}), (MALA, {"step_size": math.nan}),
     (HMC, {"step_size": math.nan}), (MALA, {"step_size": math.inf}),
     (HMC, {"step_jitter": 1.0}), (HMC, {"step_jitter": -0.1}), (HMC, {"step_jitter": math.nan})],
)
def test_mala_hmc_reject_bad_settings(cls, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [Langevin, MALA, HMC])
def test_a_step_past_the_config_files_bound_is_refused_at_construction(cls) -> None:
    """``Langevin(step_size=1e30)`` was taken, and its first step failed inside torch ("value
    cannot be converted to type float without overflow"); a config file's step has the bound."""
    cls(step_size=MAX_STEP_SIZE)
    just_past = math.nextafter(MAX_STEP_SIZE, math.inf)
    for step in (just_past, 1e30):
        message = f"step_size must be at most 1000, got {step!r}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            cls(step_size=step)


def test_langevin_refuses_noise_past_the_step_bound() -> None:
    """Each step's noise std, ``noise_scale * step_size``, has the step's bound, as a config
    file's has: at 1e300 it overflowed float32 in the first step."""
    Langevin(step_size=0.5, noise_scale=2 * MAX_STEP_SIZE)
    with pytest.raises(ValueError, match=r"^noise_scale times step_size \(each step's noise\) "
                                         r"must be at most 1000, got 1e\+300 x 0.5$"):
        Langevin(step_size=0.5, noise_scale=1e300)


@pytest.mark.parametrize("cls", [Langevin, MALA, HMC, BlockGibbs])
@pytest.mark.parametrize("count", [2.5, True])
def test_step_counts_must_be_ints(cls, count) -> None:
    """A float count failed in the run ("'float' object cannot be interpreted as an
    integer"), and True ran one step."""
    names = ("n_steps", "n_leapfrog") if cls is HMC else ("n_steps",)
    for name in names:
        with pytest.raises(ValueError, match=rf"{name} must be an int >= 1, got {count}"):
            cls(**{name: count})


def test_samplers_built_without_settings_run_their_documented_chains() -> None:
    """What ``Langevin()``, ``MALA()``, ``HMC()`` and ``BlockGibbs()`` run (BlockGibbs: one
    sweep, CD-1): a changed default would change every chain built without settings, without a
    word."""
    plain = Langevin()
    assert (plain.n_steps, plain.step_size, plain.noise_scale, plain.noise_anneal) == (
        30, 0.01, 1.0, "none")
    assert (plain.grad_clip, plain.clamp, plain.precision, plain.cuda_graph) == (
        None, None, "auto", True)
    assert (MALA().n_steps, MALA().step_size) == (30, 0.01)
    assert (HMC().n_steps, HMC().step_size, HMC().n_leapfrog) == (10, 0.01, 5)
    assert BlockGibbs().n_steps == 1


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_callback_gets_one_step_info_per_step(name: str) -> None:
    sampler = ALL_SAMPLERS[name]
    x0 = torch.randn(6, 2, 3, 3, generator=gen(19), dtype=F64)
    infos: list[StepInfo] = []
    sampler.run(standard_energy, x0, generator=gen(20), callback=infos.append)
    assert [i.step for i in infos] == list(range(sampler.n_steps))
    for info in infos:
        assert info.energy.shape == (6,) and info.grad_norm.shape == (6,)
        assert not info.energy.requires_grad
    # Step 0 reports the start: E(x0) and |grad E(x0)| = |x0| for the standard Gaussian.
    torch.testing.assert_close(infos[0].energy, standard_energy(x0))
    torch.testing.assert_close(infos[0].grad_norm, x0.flatten(1).norm(dim=1))


# ---------------------------------------------------------------------------------------------
# create_graph: differentiating through the chain
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [Langevin(n_steps=3, step_size=0.1),
                                     MALA(n_steps=3, step_size=0.1),
                                     HMC(n_steps=2, step_size=0.1, n_leapfrog=2)])
def test_samplers_run_inside_no_grad_and_name_inference_mode(sampler) -> None:
    """A caller who only samples may wrap it in torch.no_grad(): the chains are the same as
    outside it (they failed: "element 0 of tensors does not require grad"). Inside
    torch.inference_mode() no gradient can be had: said, not torch's message."""
    def energy(x: Tensor) -> Tensor:
        return x.pow(2).flatten(1).sum(1)

    x0 = torch.zeros(2, 4)
    outside = sampler.run(energy, x0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        inside = sampler.run(energy, x0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inside, outside)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="torch.inference_mode"):
        sampler.run(energy, x0, generator=torch.Generator().manual_seed(0))


def test_create_graph_gradient_flows_to_x0() -> None:
    # Additive noise does not depend on x0, so d x_n / d x0 = (I - h A)^n exactly and
    # d sum(x_n) / d x0 = 1^T (I - h A)^n for every chain.
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    n, delta = 8, 0.4
    h = delta**2 / 2
    x0 = torch.randn(5, 2, generator=gen(21), dtype=F64).requires_grad_(True)
    out = Langevin(n_steps=n, step_size=delta).run(energy, x0, generator=gen(22), create_graph=True)
    assert out.requires_grad
    out.sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()
    jac = torch.linalg.matrix_power(torch.eye(2, dtype=F64) - h * energy.precision, n)
    torch.testing.assert_close(x0.grad, (torch.ones(2, dtype=F64) @ jac).expand(5, 2))


def test_create_graph_runs_from_a_start_made_under_inference_mode() -> None:
    """As the plain run does: the start took requires_grad in place, which torch refuses an
    inference tensor outside inference mode. The chain is the one from an ordinary start."""
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    with torch.inference_mode():
        x0 = torch.randn(3, 2, generator=gen(24), dtype=F64)
    sampler = Langevin(n_steps=3, step_size=0.4)
    torch.testing.assert_close(sampler.run(energy, x0, generator=gen(25), create_graph=True),
                               sampler.run(energy, x0.clone(), generator=gen(25)))


def test_create_graph_builds_its_graph_inside_no_grad() -> None:
    """create_graph asks for a differentiable chain, as torch.autograd.grad's own does even
    inside torch.no_grad(): there the states after the first lost their graph and the second
    step failed in autograd ("One of the differentiated Tensors does not require grad")."""
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    x0 = torch.randn(3, 2, generator=gen(24), dtype=F64).requires_grad_(True)
    sampler = Langevin(n_steps=3, step_size=0.4)
    outside = sampler.run(energy, x0, generator=gen(25), create_graph=True)
    with torch.no_grad():
        inside = sampler.run(energy, x0, generator=gen(25), create_graph=True)
    assert inside.requires_grad
    torch.testing.assert_close(torch.autograd.grad(inside.sum(), x0)[0],
                               torch.autograd.grad(outside.sum(), x0)[0])


def test_create_graph_gradient_flows_to_energy_parameters() -> None:
    # Short-run reconstruction: x0 is noise (no grad) and the energy's parameter is what we
    # differentiate. E = theta |x|^2 / 2 without noise gives x_n = (1 - h theta)^n x0, so
    # d sum(x_n) / d theta = -n h (1 - h theta)^(n-1) sum(x0).
    theta = torch.tensor(1.5, dtype=F64, requires_grad=True)

    def energy(x: Tensor) -> Tensor:
        return 0.5 * theta * (x**2).sum(dim=1)

    n, delta = 6, 0.5
    h = delta**2 / 2
    x0 = torch.randn(4, 3, generator=gen(23), dtype=F64)
    out = Langevin(n_steps=n, step_size=delta, noise_scale=0.0).run(energy, x0, create_graph=True)
    out.sum().backward()
    expected = -n * h * (1 - h * theta.detach()) ** (n - 1) * x0.sum()
    torch.testing.assert_close(theta.grad, expected)
    assert not x0.requires_grad


def test_create_graph_derivative_through_clipping_matches_finite_differences() -> None:
    """Where grad_clip bites, the clipped step's scale depends on x too; the chain's derivative
    must include it (a detached norm dropped that term: diagonal 0.76 against 0.95)."""
    def energy(x: Tensor) -> Tensor:
        return (x**4).sum(dim=1) / 4 + x[:, 0] * x[:, 1]

    sampler = Langevin(n_steps=3, step_size=0.5, noise_scale=0.0, grad_clip=0.3)
    x0 = torch.tensor([[1.2, -0.7, 0.9]], dtype=F64)
    assert (x0**3).norm() > 0.3  # clipping bites on the first step at least

    def chain(x: Tensor) -> Tensor:
        return sampler.run(energy, x, create_graph=True)[0]

    jacobian = torch.autograd.functional.jacobian(chain, x0)[:, 0]
    step = 1e-6
    finite = torch.stack([(chain(x0 + step * e) - chain(x0 - step * e)) / (2 * step)
                          for e in torch.eye(3, dtype=F64)[:, None]], dim=1)
    torch.testing.assert_close(jacobian, finite, atol=1e-7, rtol=1e-6)


def test_a_clipped_chain_where_the_gradient_vanishes_has_a_finite_derivative() -> None:
    """At a stationary point the clip's scale ``clip / |grad|`` is infinite (clamped to 1), and
    its derivative, though multiplied by the clamp's zero, turned the whole chain's derivative
    into NaN without the small guard in the norm. There the clip does not bite: the step is
    ``x - h x`` on ``E = |x|^2 / 2``, whose derivative is ``1 - h``."""
    x0 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]], dtype=F64, requires_grad=True)
    x = Langevin(n_steps=1, step_size=0.5, noise_scale=0.0, grad_clip=1.0).run(
        standard_energy, x0, create_graph=True)
    (derivative,) = torch.autograd.grad(x.sum(), x0)
    assert torch.isfinite(derivative).all()
    assert derivative[0].tolist() == [1 - 0.5**2 / 2] * 3


# ---------------------------------------------------------------------------------------------
# Constraints inside the samplers
# ---------------------------------------------------------------------------------------------


def random_constraint(kind: str, batch: int, g: torch.Generator
                      ) -> KnownEntries | DownsampleConsistency:
    """A recovery (``"known"``: half the entries of ``(batch, 2, 4, 4)``) or super-resolution
    (``"downsample"``: 2x2 block means) constraint with random values."""
    if kind == "known":
        observed = torch.randn(batch, 2, 4, 4, generator=g, dtype=F64)
        return KnownEntries(observed, torch.rand(batch, 2, 4, 4, generator=g) < 0.5)
    return DownsampleConsistency(torch.randn(batch, 2, 2, 2, generator=g, dtype=F64), (2, 2))


@pytest.mark.parametrize("constraint_kind", ["known", "downsample"])
def test_langevin_keeps_constraint_exact(constraint_kind: str) -> None:
    g = gen(24)
    x0 = torch.randn(8, 2, 4, 4, generator=g, dtype=F64)
    constraint = random_constraint(constraint_kind, 8, g)
    x = Langevin(n_steps=20, step_size=0.3).run(standard_energy, x0, constraint=constraint,
                                                generator=g)
    if isinstance(constraint, KnownEntries):
        known = constraint.known
        assert torch.equal(x[known], constraint.observed[known])
        assert not torch.equal(x[~known], x0[~known])
    else:
        torch.testing.assert_close(block_down(x, (2, 2)), constraint.low, rtol=0, atol=1e-12)


@pytest.mark.parametrize("constraint_kind", ["known", "downsample"])
@pytest.mark.parametrize("name", [*ALL_SAMPLERS, "langevin, differentiable"])
def test_every_energy_evaluation_is_on_the_constraint(name: str, constraint_kind: str) -> None:
    """The start ``x0`` is off the constraint; a sampler must project it before its first
    gradient, so the energy never sees a state the constraint forbids (the first included).
    Langevin's differentiable chain (``create_graph``, short-run training) is a path of its
    own."""
    g = gen(25)
    x0 = torch.randn(4, 2, 4, 4, generator=g, dtype=F64)
    constraint = random_constraint(constraint_kind, 4, g)
    assert not torch.allclose(constraint.project(x0), x0)
    recorder = Recorder(standard_energy)
    if name == "langevin, differentiable":
        ALL_SAMPLERS["langevin"].run(recorder, x0, constraint=constraint, generator=g,
                                     create_graph=True)
    else:
        ALL_SAMPLERS[name].run(recorder, x0, constraint=constraint, generator=g)
    assert recorder.states
    for k, state in enumerate(recorder.states):
        torch.testing.assert_close(constraint.project(state), state, rtol=0, atol=1e-12,
                                   msg=f"evaluation {k} is off the constraint")


EXACT_SAMPLERS = {
    "mala": MALA(n_steps=150, step_size=0.6),
    "hmc": HMC(n_steps=40, step_size=0.4, n_leapfrog=4),
}


@pytest.mark.parametrize("name", list(EXACT_SAMPLERS))
def test_known_entries_isotropic_free_coordinates(name: str) -> None:
    # Isotropic N(mu, s^2 I) on an image layout: the free coordinates are independent of the
    # clamped ones, so their conditional law is the marginal N(mu_i, s^2). Pooling the
    # standardised free coordinates gives n ~ 1000 * 14 independent N(0, 1) draws.
    g = gen(25)
    b, s = 1000, 0.8
    shape = (b, 2, 4, 4)
    mu = torch.randn(shape[1:], generator=g, dtype=F64)
    known = torch.rand(shape[1:], generator=g) < 0.55  # shared by all chains
    observed = torch.full(shape[1:], 5.0, dtype=F64)  # far from mu: must not leak into free coords
    constraint = KnownEntries(observed, known)
    x0 = 2.0 * torch.randn(shape, generator=g, dtype=F64)

    def energy(x: Tensor) -> Tensor:
        return isotropic_energy(x, mu=mu, s=s)

    x = EXACT_SAMPLERS[name].run(energy, x0, constraint=constraint, generator=g)
    assert torch.equal(x[:, known], observed[known].expand(b, -1))
    z = ((x - mu) / s)[:, ~known]
    n = z.numel()
    assert n > 5000
    assert_within_se(z.mean(), 0.0, 1 / math.sqrt(n), f"{name} free mean")
    assert_within_se(z.var(), 1.0, math.sqrt(2 / n), f"{name} free variance")


@pytest.mark.parametrize("name", list(EXACT_SAMPLERS))
def test_known_entries_correlated_conditional(name: str) -> None:
    # Correlated 2-D Gaussian with x2 observed at c: x1 | x2 = c is Gaussian with
    # mean mu1 + S12 / S22 (c - mu2) and variance S11 - S12^2 / S22, unlike the marginal.
    energy = Quadratic2D(GAUSS_MU, GAUSS_COV)
    c = 1.5
    cond_mean = GAUSS_MU[0] + GAUSS_COV[0, 1] / GAUSS_COV[1, 1] * (c - GAUSS_MU[1])
    cond_var = GAUSS_COV[0, 0] - GAUSS_COV[0, 1] ** 2 / GAUSS_COV[1, 1]
    observed = torch.tensor([0.0, c], dtype=F64)
    known = torch.tensor([False, True])
    g = gen(26)
    x0 = 3.0 * torch.randn(N_CHAINS, 2, generator=g, dtype=F64)
    x = EXACT_SAMPLERS[name].run(energy, x0, constraint=KnownEntries(observed, known), generator=g)
    assert (x[:, 1] == c).all()
    assert_within_se(x[:, 0].mean(), cond_mean, (cond_var / N_CHAINS).sqrt(), f"{name} cond. mean")
    assert_within_se(x[:, 0].var(), cond_var, cond_var * math.sqrt(2 / N_CHAINS),
                     f"{name} cond. var")


@pytest.mark.parametrize("sampler", [MALA(n_steps=300, step_size=0.5),
                                     HMC(n_steps=150, step_size=0.4, n_leapfrog=2),
                                     Langevin(n_steps=300, step_size=0.5)])
def test_block_means_hold_to_rounding_in_float32_however_long_the_chain(sampler) -> None:
    """Moves along the constraint's tangent keep block means only up to rounding; unprojected,
    that rounding adds up over a chain's steps (5 units in the last place after 300 MALA
    steps at values near 30)."""
    g = gen(0)
    low = 30 + torch.randn(64, 1, 2, 2, generator=g)
    constraint = DownsampleConsistency(low, (2, 2))
    x0 = 30 + torch.randn(64, 1, 4, 4, generator=g)

    def energy(x: Tensor) -> Tensor:
        return 0.5 * ((x - 30) ** 2).flatten(1).sum(1)

    x = sampler.run(energy, x0, constraint=constraint, generator=gen(1))
    ulp = torch.finfo(torch.float32).eps * 32  # one unit in the last place at 32
    assert (block_down(x, (2, 2)) - low).abs().max() <= 1.5 * ulp


@pytest.mark.parametrize("name", list(EXACT_SAMPLERS))
def test_downsample_consistency_conditional(name: str) -> None:
    # N(mu, s^2 I) given block means equal to low: x = project(mu) + P z with z ~ N(0, s^2 I),
    # P the projection that removes block means. So (1) every entry has mean project(mu)[i]:
    # one entry per block is independent of the other blocks, var s^2 (1 - 1/4); (2) the squared
    # deviations of a 2x2 block from its mean sum to s^2 chi^2_3 (mean 3, variance 6 in units s^2).
    g = gen(27)
    b, s, factor = 1500, 0.9, (2, 2)
    mu = torch.randn(1, 4, 4, generator=g, dtype=F64)
    low = torch.randn(b, 1, 2, 2, generator=g, dtype=F64)
    constraint = DownsampleConsistency(low, factor)
    x0 = 2.0 * torch.randn(b, 1, 4, 4, generator=g, dtype=F64)

    def energy(x: Tensor) -> Tensor:
        return isotropic_energy(x, mu=mu, s=s)

    x = EXACT_SAMPLERS[name].run(energy, x0, constraint=constraint, generator=g)
    torch.testing.assert_close(block_down(x, factor), low, rtol=0, atol=1e-12)
    dev = x - constraint.project(mu.expand(b, 1, 4, 4))
    corner = dev[..., ::2, ::2]  # (b, 1, 2, 2): one entry per block
    n = corner.numel()
    assert_within_se(corner.mean(), 0.0, math.sqrt(0.75 * s**2 / n), f"{name} entry mean")
    q = block_down(dev**2, factor) * 4 / s**2  # (b, 1, 2, 2) ~ chi^2_3
    assert_within_se(q.mean(), 3.0, math.sqrt(6 / q.numel()), f"{name} block chi^2 mean")
    # The block means of dev are zero by construction, so nearest_up(block_down) removes nothing.
    torch.testing.assert_close(nearest_up(block_down(dev, factor), factor), torch.zeros_like(dev),
                               rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:precision='bf16'")  # a CPU without native bfloat16 warns
def test_bf16_precision_follows_the_fp32_chain_closely() -> None:
    """bfloat16 autocast changes the network's arithmetic, not the chain's: on a conv energy the
    bf16 chain stays within a small distance of the fp32 chain driven by the same noise."""
    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=1, image_size=64, reference_sigma=0.5)
    x0 = torch.rand(2, 1, 64, 64, generator=gen(5)) * 2 - 1
    runs = {p: Langevin(n_steps=5, step_size=0.05, precision=p).run(energy, x0, generator=gen(6))
            for p in ("fp32", "bf16")}
    assert runs["bf16"].dtype == torch.float32
    moved = (runs["fp32"] - x0).norm()
    assert (runs["bf16"] - runs["fp32"]).norm() < 0.05 * moved
    with pytest.raises(ValueError, match="precision"):
        Langevin(precision="fp8")


def test_diagnostics_summaries_follow_the_chain() -> None:
    """Gradient descent on |x|^2 / 2 from x0: energy and gradient norm fall at every step, and the
    summaries are the per-step means over chains."""
    x0 = torch.full((3, 2), 2.0, dtype=F64)
    diag = Diagnostics()
    Langevin(n_steps=4, step_size=0.5, noise_scale=0.0).run(
        lambda x: 0.5 * x.pow(2).sum(1), x0, callback=diag
    )
    energies, norms = diag.mean_energy, diag.mean_grad_norm
    assert len(energies) == len(norms) == 4
    assert energies[0] == pytest.approx(4.0) and norms[0] == pytest.approx(math.sqrt(8.0))
    assert all(a > b for a, b in zip(energies, energies[1:]))
    assert all(a > b for a, b in zip(norms, norms[1:]))
    assert diag.acceptance_rate == 1.0


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
@pytest.mark.parametrize("held", ["none", "known", "block-means"])
def test_the_gradient_norm_is_of_the_part_that_moves_the_chain_in_every_sampler(
        name: str, held: str) -> None:
    """Under a constraint, MALA and HMC reported the norm of the tangent they move along and
    Langevin that of the whole gradient, the entries the projection resets included (a
    known pixel the model disagrees with dominated it): all three report the tangent's now,
    the norm Langevin clips. |x|^2 / 2 has gradient x: the norm at the start is that of the
    start's tangent (its free entries; its detail beside the block means)."""
    x0 = torch.randn(3, 2, 4, generator=gen(0), dtype=F64) * 10
    constraint = {"none": None,
                  "known": KnownEntries(torch.full((2, 4), 50.0, dtype=F64),
                                        torch.tensor([True, False, False, True]).expand(2, 4)),
                  "block-means": DownsampleConsistency(torch.full((3, 1, 2), 50.0, dtype=F64),
                                                       (2, 2))}[held]
    start = x0 if constraint is None else constraint.project(x0)
    moving = start if constraint is None else constraint.tangent(start)
    diag = Diagnostics()
    ALL_SAMPLERS[name].run(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), x0,
                           constraint=constraint, generator=gen(1), callback=diag)
    torch.testing.assert_close(diag.steps[0].grad_norm, moving.flatten(1).norm(dim=1))


def test_langevin_clips_and_reports_under_a_constraint_with_a_project_alone() -> None:
    """A constraint of one's own with a project and no tangent (Langevin takes one) failed
    on "'ProjectOnly' object has no attribute 'tangent'" once a gradient clip or a callback
    asked for the norm of the gradient that moves the chain; it is the default tangent's."""
    x0 = torch.randn(2, 3, generator=gen(0), dtype=F64) * 10
    diag = Diagnostics()
    x = Langevin(n_steps=1, step_size=0.1, noise_scale=0.0, grad_clip=1.0).run(
        lambda v: 0.5 * v.pow(2).sum(1), x0, constraint=ProjectOnly(), callback=diag)
    torch.testing.assert_close(diag.steps[0].grad_norm, x0.norm(dim=1))
    torch.testing.assert_close((x0 - x).norm(dim=1), torch.full((2,), 0.5 * 0.1**2, dtype=F64))


def test_the_acceptance_rate_counts_every_chain_of_runs_of_other_batch_sizes() -> None:
    """One collector passed to a run of 4 chains and then to one of 2 failed in torch.stack;
    the rate is over every decision: 8 accepted of 10."""
    diag = Diagnostics()
    for accepted in (torch.ones(4, dtype=torch.bool),) * 2 + (torch.zeros(2, dtype=torch.bool),):
        n = len(accepted)
        diag(StepInfo(step=0, energy=torch.zeros(n), grad_norm=torch.zeros(n), accepted=accepted))
    assert diag.acceptance_rate == pytest.approx(0.8, abs=1e-7)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_warns_where_the_device_has_no_native_bfloat16(native: bool, monkeypatch) -> None:
    """Emulated bfloat16 was 8.6-36x slower than fp32 (bench/levers.py): say so, once a run."""
    monkeypatch.setattr(langevin_module, "native_bfloat16", lambda device: native)
    sampler = Langevin(n_steps=1, step_size=0.1, precision="bf16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.run(standard_energy, torch.zeros(2, 3), generator=gen(0))
        Langevin(n_steps=1, step_size=0.1).run(standard_energy, torch.zeros(2, 3),
                                               generator=gen(0))  # fp32 never warns
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == ([] if native else
                        ["precision='bf16' on cpu, which has no native bfloat16: autocast there "
                         "was 8.6-36x slower than fp32 (bench/levers.py of the source tree); "
                         "use precision='fp32'"])


def _coupled_quadratic(x: Tensor) -> Tensor:
    """E = |x|^2 / 2 + 0.3 x_0 x_1 per example, any ``(B, *S)``."""
    flat = x.flatten(1)
    return 0.5 * (flat**2).sum(1) + 0.3 * flat[:, 0] * flat[:, 1]


def test_the_differentiable_chain_is_the_plain_chain_with_every_option() -> None:
    """create_graph=True runs its own loop (no in-place updates): it must apply the same
    noise annealing, gradient clip, value clamp and projection as the fast one."""
    x0 = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    known = torch.zeros(4, 6, dtype=torch.bool)
    known[:, :2] = True
    constraint = KnownEntries(torch.full((4, 6), 0.3, dtype=torch.float64), known)
    sampler = Langevin(n_steps=6, step_size=0.7, noise_anneal="linear", clamp=(-0.5, 0.5),
                       grad_clip=1.0, precision="fp32")
    plain = sampler.run(_coupled_quadratic, x0, constraint=constraint,
                        generator=torch.Generator().manual_seed(1))
    differentiable = sampler.run(_coupled_quadratic, x0, constraint=constraint,
                                 generator=torch.Generator().manual_seed(1), create_graph=True)
    torch.testing.assert_close(differentiable.detach(), plain, rtol=0, atol=1e-12)


def test_a_gradient_clip_above_every_gradient_changes_nothing() -> None:
    """The clip only shrinks: gradients under it (|grad| ~ 0.2 here) are left bit for bit."""
    x0 = 0.1 * torch.randn(5, 3, generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    options = dict(n_steps=4, step_size=0.3, noise_scale=0.0, precision="fp32")
    torch.testing.assert_close(Langevin(grad_clip=100.0, **options).run(_coupled_quadratic, x0),
                               Langevin(**options).run(_coupled_quadratic, x0), rtol=0, atol=0)


class InfAtStart:
    """+inf energy on the first call only, its gradient finite (the proposal is then accepted:
    ``inf - finite``), so only the start's own flag reports it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: Tensor) -> Tensor:
        e = standard_energy(x)
        if self.calls == 0:
            e = e + float("inf")
        self.calls += 1
        return e


@pytest.mark.parametrize("sampler", [MALA(n_steps=3, step_size=0.3),
                                     HMC(n_steps=3, step_size=0.2, n_leapfrog=2)],
                         ids=["mala", "hmc"])
def test_a_nonfinite_start_is_reported_even_when_the_chain_leaves_it(sampler) -> None:
    """An infinite energy at the start alone: the first proposal is finite and accepted, and
    the chain runs on from it, yet the start is reported as step 0."""
    with pytest.raises(NonFiniteEnergyError, match="at step 0 of 3"):
        sampler.run(InfAtStart(), torch.randn(4, 3, generator=gen(0)), generator=gen(1))


class NaNEnergyAtCall:
    """NaN energy (finite gradient) on one call: nothing propagates to later leapfrog steps."""

    def __init__(self, bad_call: int) -> None:
        self.bad_call, self.calls = bad_call, 0

    def __call__(self, x: Tensor) -> Tensor:
        e = standard_energy(x)
        if self.calls == self.bad_call:
            e = e + float("nan")
        self.calls += 1
        return e


def test_hmc_reports_a_nonfinite_value_in_the_middle_of_a_trajectory() -> None:
    """Call 1 + 1 is leapfrog 1 of 3 of iteration 0; the trajectory ends finite, and the
    value met on the way is still reported."""
    with pytest.raises(NonFiniteEnergyError, match="at step 0 of 2"):
        HMC(n_steps=2, step_size=0.1, n_leapfrog=3).run(
            NaNEnergyAtCall(2), torch.randn(4, 3, generator=gen(0)), generator=gen(1))


def test_mala_rejects_a_zero_step_size() -> None:
    """A step of 0 never moves the chain: refused, as a negative one is."""
    with pytest.raises(ValueError, match="step_size"):
        MALA(step_size=0.0)


def test_diagnostics_average_energy_and_gradient_norm_over_chains() -> None:
    diag = Diagnostics()
    diag(StepInfo(0, torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])))
    diag(StepInfo(1, torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])))
    assert diag.mean_energy == [2.0, 0.0]
    assert diag.mean_grad_norm == [3.0, 0.5]


def test_diagnostics_acceptance_rate_counts_every_step_and_chain() -> None:
    """3 of 4 decisions accepted over two steps; plain Langevin's steps (no decisions) are
    left out of the rate."""
    diag = Diagnostics()
    zeros = torch.zeros(2)
    diag(StepInfo(0, zeros, zeros, torch.tensor([True, True])))
    diag(StepInfo(1, zeros, zeros))
    diag(StepInfo(2, zeros, zeros, torch.tensor([False, True])))
    assert diag.acceptance_rate == 0.75


def test_diagnostics_before_any_step_have_no_means() -> None:
    """Read before a run (a logger reporting every iteration, some without sampling), the
    summaries failed inside torch ("stack expects a non-empty TensorList")."""
    diag = Diagnostics()
    assert diag.mean_energy == [] and diag.mean_grad_norm == []
    assert diag.acceptance_rate == 1.0


def test_diagnostics_of_a_float64_chain_keep_float64() -> None:
    """Averaged in float32, 1e8 + 1 came back as 1e8 (float32's spacing there is 8)."""
    diag = Diagnostics()
    diag(StepInfo(0, torch.tensor([1e8 + 1, 1e8 + 1], dtype=F64),
                  torch.tensor([1e8 + 1, 1e8 + 1], dtype=F64)))
    assert diag.mean_energy == [1e8 + 1] and diag.mean_grad_norm == [1e8 + 1]


@pytest.mark.parametrize("create_graph", [False, True])
def test_langevin_reports_a_last_step_that_leaves_the_finite_range(create_graph: bool) -> None:
    """The last update is never fed back into the energy, so its result is checked on its
    own: a finite start whose single step overflows to infinity raises, it is not returned."""
    def steep(x: torch.Tensor) -> torch.Tensor:
        return 1e38 * x.flatten(1).sum(1)  # energy and gradient finite at 0

    sampler = Langevin(n_steps=1, step_size=10.0, noise_scale=0.0, precision="fp32",
                       cuda_graph=False)
    with pytest.raises(NonFiniteEnergyError):
        # The step moves x by 50 * 1e38: inf.
        sampler.run(steep, torch.zeros(1, 1), create_graph=create_graph)


def test_a_divergence_on_a_grid_keeps_its_step_and_names_the_grid() -> None:
    err = on_grid(NonFiniteEnergyError("langevin", 3, 10), 2, (4, 4))
    assert (err.step, err.n_steps) == (3, 10)
    assert "langevin on grid 2 (4x4)" in str(err) and "at step 3 of 10" in str(err)


def test_a_divergence_crosses_a_process_boundary_whole() -> None:
    """A process pool sends its worker's exception pickled; rebuilt from its message alone,
    this one failed (TypeError), and the pool broke (BrokenProcessPool) instead of raising it."""
    import copy
    import pickle

    err = on_grid(NonFiniteEnergyError("langevin", 3, 10, [1, 4]), 2, (4, 4))
    err.add_note("while fitting grid 2")  # kept, as any attribute set on it
    for twin in (pickle.loads(pickle.dumps(err)), copy.deepcopy(err)):
        assert type(twin) is NonFiniteEnergyError and str(twin) == str(err)
        assert (twin.sampler, twin.step, twin.n_steps, twin.chains) == (err.sampler, 3, 10,
                                                                        (1, 4))
        assert "in chains 1, 4;" in str(twin) and twin.__notes__ == ["while fitting grid 2"]


def test_energy_and_grad_refuses_one_energy_for_the_whole_batch() -> None:
    x = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"energy must return shape \(B,\) = \(2,\)"):
        energy_and_grad(lambda v: v.sum().reshape(1), x)


def test_a_non_finite_gradient_alone_is_flagged_for_its_chain() -> None:
    grad = torch.tensor([[0.0, float("nan")], [1.0, 1.0]])
    assert nonfinite_flag(torch.zeros(2), grad).tolist() == [True, False]
    assert not nonfinite_flag(torch.zeros(2), torch.ones(2, 2)).any()
    # Chains of one number each: the gradient is (B,), each entry a chain's own.
    assert nonfinite_flag(torch.zeros(2), torch.tensor([math.nan, 1.0])).tolist() == [True, False]


def test_float16_energies_that_sum_past_float16s_range_are_not_flagged() -> None:
    """Two chains' energies of 40000 sum to 80000, past float16's largest value (65504): summed
    in float16, healthy chains were flagged as diverged."""
    still = torch.zeros(2, 2, dtype=torch.float16)
    assert not nonfinite_flag(torch.tensor([4e4, 4e4], dtype=torch.float16), still).any()
    assert nonfinite_flag(torch.tensor([4e4, math.inf], dtype=torch.float16), still).any()


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_a_float16_chain_whose_gradient_sums_past_float16s_range_is_not_diverged(name: str
                                                                                 ) -> None:
    """8000 gradient entries of 10 sum to 80000, past float16's largest value (65504): summed
    in float16 the flag was infinite and every sampler reported a healthy chain as diverged at
    step 0; summed in float32 the chain runs, and an infinite energy is still reported. (The
    small step keeps the energy itself, 10 * sum(x), within float16's range.)"""
    sampler = replace(ALL_SAMPLERS[name], step_size=0.01)
    x0 = torch.zeros(2, 8000, dtype=torch.float16)
    x = sampler.run(lambda v: 10 * v.flatten(1).sum(1), x0, generator=gen(42))
    assert x.dtype == torch.float16 and torch.isfinite(x).all()
    with pytest.raises(NonFiniteEnergyError, match="at step 0 of"):
        sampler.run(lambda v: v.flatten(1).sum(1) + math.inf, x0, generator=gen(42))


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_a_seed_for_a_generator_and_starts_without_values_are_named(name: str) -> None:
    """generator=0 failed inside torch's first draw ("randn() received an invalid combination of
    arguments"), starts on the meta device inside autocast ("unsupported autocast device_type
    'meta'")."""
    sampler = ALL_SAMPLERS[name]
    label = {"langevin": "Langevin", "mala": "MALA", "hmc": "HMC"}[name]
    with pytest.raises(ValueError, match=rf"{label}: generator must be a torch.Generator or None, "
                                         rf"got int 0"):
        sampler.run(standard_energy, torch.randn(4, 3), generator=0)
    with pytest.raises(ValueError, match=f"{label}: x0 is on the meta device"):
        sampler.run(standard_energy, torch.zeros(4, 3, device="meta"))


@pytest.mark.parametrize("sampler", [
    Langevin(n_steps=2, step_size=0.01, grad_clip=1.0, clamp=(-1.0, 1.0)),
    MALA(n_steps=2, step_size=0.01),
    HMC(n_steps=2, step_size=0.01, n_leapfrog=2),
], ids=["langevin", "mala", "hmc"])
@pytest.mark.parametrize("kind", ["free", "known", "known_and_block_means"])
def test_sampler_steps_read_nothing_back_to_the_host(sampler, kind: str) -> None:
    """The hot loops gather their non-finite flags as tensors and read them once: a read per
    step would wait for a GPU's queue every step (and cannot be captured in a CUDA graph).
    Three times the steps, the same reads (HostTraffic counts on the CPU what would wait)."""
    energy = image_energy("descriptor16", in_channels=3, image_size=8, layers=[[4, 3, 1, 1]])
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    known = KnownEntries(x0, torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
                         .expand_as(x0) > 0.5)
    both = KnownEntriesAndBlockMeans(known, DownsampleConsistency(torch.zeros(2, 3, 4, 4), (2, 2)))
    constraint = {"free": None, "known": known, "known_and_block_means": both}[kind]

    def host_traffic(n_steps: int) -> int:
        with HostTraffic() as traffic:
            replace(sampler, n_steps=n_steps).run(energy, x0, constraint=constraint,
                                                  generator=torch.Generator().manual_seed(2))
        return traffic.reads + traffic.scans

    assert host_traffic(6) == host_traffic(2)


@pytest.mark.parametrize("create_graph", [False, True], ids=["in_place", "differentiable"])
def test_langevin_names_the_step_whose_gradient_alone_is_non_finite(create_graph: bool) -> None:
    """A finite energy whose gradient is not (sqrt|x| at 0) is reported at that step and chain,
    not a step later, where the update's NaN has reached the energy."""
    x0 = torch.ones(3, 2)
    x0[1, 0] = 0.0
    with pytest.raises(NonFiniteEnergyError) as info:
        Langevin(n_steps=3, step_size=0.1, noise_scale=0.0).run(
            lambda x: x.abs().sqrt().sum(dim=1), x0, create_graph=create_graph)
    assert (info.value.step, info.value.chains) == (0, (1,))


def sqrt_abs_energy(x: Tensor) -> Tensor:
    """``sum sqrt|x| + |x|^2 / 2``: finite everywhere, its gradient not finite at 0."""
    return x.abs().sqrt().sum(dim=1) + 0.5 * x.pow(2).sum(dim=1)


@pytest.mark.parametrize("name", list(ALL_SAMPLERS))
def test_a_nonfinite_gradient_where_the_constraint_holds_the_chain_is_no_divergence(
        name: str) -> None:
    """sqrt|x| with its known entries at 0: MALA and HMC move along the constraint's tangent
    and took no notice of the gradient there, Langevin reported a diverged chain at step 0
    though the projection resets those entries. All three run now, the known entries kept;
    a free entry at 0 is still reported."""
    x0 = torch.randn(3, 4, generator=gen(0), dtype=F64) + 3.0
    known = torch.tensor([True, False, True, False])
    constraint = KnownEntries(torch.zeros(4, dtype=F64), known)
    sampler = ALL_SAMPLERS[name]
    x = sampler.run(sqrt_abs_energy, x0, constraint=constraint, generator=gen(1))
    assert (x[:, known] == 0).all() and x[:, ~known].isfinite().all()
    x0[1, 1] = 0.0  # a free entry where the gradient is not finite
    with pytest.raises(NonFiniteEnergyError, match=r"at step 0 of \d+ in chain 1;"):
        sampler.run(sqrt_abs_energy, x0, constraint=constraint, generator=gen(1))


def test_a_differentiable_langevin_run_reports_a_nonfinite_gradient_at_held_entries_too() -> None:
    """Its derivative passes through the energy's gradient at every entry: zeroed at the
    known ones as run zeroes it, sqrt|x| at a known 0 gives a finite chain and a NaN gradient
    in the energy's parameters, with no word of where it came from. Reported at the step."""
    weight = torch.tensor(1.0, dtype=F64, requires_grad=True)
    x0 = torch.randn(3, 4, generator=gen(0), dtype=F64) + 3.0
    constraint = KnownEntries(torch.zeros(4, dtype=F64), torch.tensor([True, False] * 2))
    with pytest.raises(NonFiniteEnergyError, match=r"at step 0 of 2 in chains 0, 1, 2;"):
        Langevin(n_steps=2, step_size=0.1).run(
            lambda x: weight * sqrt_abs_energy(x), x0, constraint=constraint,
            generator=gen(1), create_graph=True)


def test_a_nan_log_ratio_is_rejected() -> None:
    """A diverged proposal's NaN ratio must keep the chain where it was (an infinite one is
    always accepted)."""
    current = (torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3))
    proposal = (torch.ones(2, 3), torch.ones(2), torch.ones(2, 3))
    (x, e, grad), accept = metropolis_select(torch.tensor([math.nan, math.inf], dtype=F64),
                                             current, proposal, generator=gen(0))
    assert accept.tolist() == [False, True]
    assert x[:, 0].tolist() == e.tolist() == grad[:, 0].tolist() == [0.0, 1.0]


def test_only_a_chain_without_callback_or_annealed_noise_replays_as_a_cuda_graph(
        monkeypatch) -> None:
    """Annealed noise changes at every step and a callback runs Python at every step: neither
    replays as one captured graph. The choice reads the chain's device type alone, so it is
    checked here without a GPU."""
    on_cuda = SimpleNamespace(device=torch.device("cuda"))
    assert Langevin()._graphable(on_cuda, None, None)
    for anneal in ("linear", "cosine"):
        assert not Langevin(noise_anneal=anneal)._graphable(on_cuda, None, None)
    assert not Langevin()._graphable(on_cuda, print, None)
    assert not Langevin(cuda_graph=False)._graphable(on_cuda, None, None)
    assert not Langevin()._graphable(SimpleNamespace(device=torch.device("cpu")), None, None)
    # An explicit generator only where this torch can register it with a graph.
    assert Langevin()._graphable(on_cuda, None, gen(0))
    monkeypatch.setattr(langevin_module, "graph_generator_ok", lambda generator: False)
    assert not Langevin()._graphable(on_cuda, None, gen(0))


@pytest.mark.parametrize("bounds", [[-1, 1], (torch.tensor(-1.0), torch.tensor(1.0))])
def test_clamp_bounds_of_any_form_key_the_kept_cuda_graph_as_two_floats(bounds) -> None:
    """The sampler is part of the key a kept CUDA graph is looked up by: bounds given as a list
    made the lookup fail ("unhashable type: 'list'"), and tensors, hashed by identity, missed
    the graph a sampler with the same bounds had captured."""
    sampler = Langevin(clamp=bounds)
    assert sampler.clamp == (-1.0, 1.0)
    assert all(type(bound) is float for bound in sampler.clamp)
    assert {sampler: "kept graph"}.get(Langevin(clamp=(-1.0, 1.0))) == "kept graph"


def test_langevin_clips_a_small_gradient_to_the_bound_exactly() -> None:
    """A gradient of norm 0.02 clipped to 0.01 is halved: the guard against a zero norm in the
    clip's scale is too small to shift it."""
    x = Langevin(n_steps=1, step_size=1.0, noise_scale=0.0, grad_clip=0.01).run(
        lambda v: 0.01 * v.flatten(1).sum(1), torch.zeros(1, 4))
    torch.testing.assert_close(x, torch.full((1, 4), -0.0025), rtol=1e-6, atol=0)


def test_a_divergence_names_a_grid_of_unequal_sides_in_their_order() -> None:
    err = on_grid(NonFiniteEnergyError("Langevin", 0, 2), 1, (4, 8, 16))
    assert "Langevin on grid 1 (4x8x16)" in str(err)


def test_a_divergence_advises_langevins_remedies_unless_told_otherwise() -> None:
    err = NonFiniteEnergyError("Langevin", 3, 10)
    assert str(err).endswith("the chain diverged (try a smaller step size, gradient clipping or "
                             "a value clamp)")


def test_bf16_evaluates_the_energy_in_bfloat16_and_returns_the_gradient_in_xs_dtype() -> None:
    layer = torch.nn.Linear(3, 1)
    seen = []

    def energy(v: Tensor) -> Tensor:
        out = layer(v)
        seen.append(out.dtype)
        return out.squeeze(1).float()

    x = torch.randn(2, 3, generator=gen(0), requires_grad=True)
    e, grad = energy_and_grad(energy, x, bf16=True)
    assert seen == [torch.bfloat16] and e.shape == (2,) and grad.dtype == torch.float32
    energy_and_grad(energy, x)
    assert seen[1] == torch.float32
