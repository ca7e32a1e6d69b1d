"""Chain starts: noise, data, persistent chains, the replay buffer, and the super-resolution and
recovery starts with their constraints."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
import torch
from _tiny import boxes_and_balls
from torch import Tensor

from stgconv.baselines.voxel import nearest_known_fill
from stgconv.mcmc import (
    DataGaussian,
    DataStart,
    NoiseInit,
    NoiseStart,
    PersistentChains,
    RecoveryStart,
    ReplayBuffer,
    data_plus_noise,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def roundtrip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Save and load a state dict the way a checkpoint does (no code executed on load)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ---------------------------------------------------------------------------------------------
# NoiseInit, NoiseStart, DataStart
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "std_per_scale"),
                         [("gaussian", 1.0), ("uniform", 1 / math.sqrt(3))])
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_noise_init_kind_and_scale(kind: str, std_per_scale: float, scale: float) -> None:
    n = 40000
    x = NoiseInit(kind, scale).sample((n // 4, 4), dtype=F64, generator=gen(0))
    assert x.shape == (n // 4, 4) and x.dtype == F64
    std = scale * std_per_scale
    # 5 SE bounds (false failure < 1e-6 each): SE(mean) = std / sqrt(n); SE(std) <= std / sqrt(n)
    # for both laws (Gaussian: std / sqrt(2n); uniform: std * sqrt(0.8 / 4n)).
    assert abs(x.mean().item()) < 5 * std / math.sqrt(n)
    assert abs(x.std().item() - std) < 5 * std / math.sqrt(n)
    if kind == "uniform":
        assert x.abs().max() <= scale
        assert x.abs().max() > 0.99 * scale  # fills the interval
    else:
        assert x.abs().max() > 3 * scale  # Gaussian tails, not a bounded law


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_noise_init_scale_zero_gives_zeros(kind: str) -> None:
    x = NoiseInit(kind, 0.0).sample((3, 2, 4, 4), generator=gen(1))
    assert x.shape == (3, 2, 4, 4)
    assert (x == 0).all()


def test_noise_init_reproducible_and_rejects_bad_settings() -> None:
    init = NoiseInit("gaussian", 1.0)
    assert torch.equal(init.sample((5, 3), generator=gen(2)), init.sample((5, 3), generator=gen(2)))
    assert not torch.equal(init.sample((5, 3), generator=gen(2)),
                           init.sample((5, 3), generator=gen(3)))
    with pytest.raises(ValueError, match="laplace"):
        NoiseInit("laplace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        NoiseInit("gaussian", -1.0)
    with pytest.raises(ValueError, match="nan"):  # its starts would all be NaN
        NoiseInit("uniform", float("nan"))
    with pytest.raises(ValueError, match="NoiseInit.sample: generator must be a torch.Generator"):
        init.sample((5, 3), generator=2)  # a seed where its generator goes


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool], ids=str)
def test_noise_init_names_a_dtype_that_is_not_floating_point(kind, dtype) -> None:
    """Failed inside torch ("normal_kernel_cpu" not implemented for 'Long'), as did noise added
    to such data (data_plus_noise, DataStart)."""
    with pytest.raises(ValueError, match=rf"floating point dtype, got {dtype}"):
        NoiseInit(kind).sample((2, 3), dtype=dtype, generator=gen(0))
    data = torch.ones(2, 3, dtype=dtype)
    with pytest.raises(ValueError, match=rf"floating point data, got {dtype}"):
        data_plus_noise(data, std=0.1, generator=gen(0))
    assert torch.equal(data_plus_noise(data, std=0.0), data)  # no noise: a copy, as before


# --------------------------------------------------------------------------- data Gaussian


def two_class_data(n: int = 4000) -> tuple[Tensor, Tensor]:
    """``(n, 1, 2, 2)`` float64 examples of two classes with known means and covariances:
    class 0 varies along one direction (std 2) plus isotropic std 0.1, class 1 is isotropic
    std 0.5 around another mean."""
    g = gen(0)
    labels = torch.arange(n) % 2
    direction = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64) / 2
    class0 = (2 * torch.randn(n, 1, generator=g, dtype=F64) * direction
              + 0.1 * torch.randn(n, 4, generator=g, dtype=F64))
    class1 = torch.tensor([3.0, 0, 0, -3.0], dtype=F64) + 0.5 * torch.randn(
        n, 4, generator=g, dtype=F64)
    x = torch.where(labels[:, None] == 0, class0, class1)
    return x.reshape(n, 1, 2, 2), labels


def test_data_gaussian_fits_each_class_mean_direction_and_residual() -> None:
    data, labels = two_class_data()
    fitted = DataGaussian.fit(data, labels, rank=1)
    assert fitted.means.shape == (2, 1, 2, 2) and fitted.factors.shape == (2, 1, 1, 2, 2)
    for k in range(2):
        torch.testing.assert_close(fitted.means[k], data[labels == k].mean(0))
    # Class 0's factor is its varying direction times its std 2; its residual the std 0.1.
    factor = fitted.factors[0, 0].flatten()
    assert factor.norm().item() == pytest.approx(2.0, rel=0.05)
    assert abs(factor @ torch.tensor([1.0, 1, -1, -1], dtype=F64) / 2) == pytest.approx(
        factor.norm().item(), rel=1e-3)
    assert fitted.residual_std[0].item() == pytest.approx(0.1, rel=0.05)
    assert fitted.residual_std[1].item() == pytest.approx(0.5, rel=0.05)
    torch.testing.assert_close(fitted.weights, torch.tensor([0.5, 0.5], dtype=F64))


def test_data_gaussian_samples_have_the_class_covariance() -> None:
    data, labels = two_class_data()
    fitted = DataGaussian.fit(data, labels, rank=2)
    for k in range(2):
        draws = fitted.sample((20000, 1, 2, 2), classes=torch.full((20000,), k),
                              generator=gen(1)).flatten(1)
        members = data[labels == k].flatten(1)
        torch.testing.assert_close(draws.mean(0), members.mean(0), atol=0.05, rtol=0)
        torch.testing.assert_close(draws.T.cov(), members.T.cov(), atol=0.1, rtol=0.05)


def test_data_gaussian_mixture_draws_follow_the_weights_and_any_leading_shape() -> None:
    data, labels = two_class_data()
    fitted = DataGaussian.fit(data[:1000], (labels[:1000] * 0), rank=0)  # one component
    assert fitted.means.shape == (1, 1, 2, 2) and fitted.factors.shape == (1, 0, 1, 2, 2)
    fitted = DataGaussian.fit(data, labels, rank=1)
    draws = fitted.sample((6000, 1, 2, 2), generator=gen(2)).flatten(1)
    # Class 1 sits near (3, 0, 0, -3): about half the draws are there.
    near_class1 = ((draws - torch.tensor([3.0, 0, 0, -3])).norm(dim=1) < 2.5).double().mean()
    assert near_class1.item() == pytest.approx(0.5, abs=0.03)
    assert fitted.sample((3, 2, 1, 2, 2), generator=gen(0)).shape == (3, 2, 1, 2, 2)
    a = fitted.sample((4, 1, 2, 2), generator=gen(5))
    torch.testing.assert_close(a, fitted.sample((4, 1, 2, 2), generator=gen(5)))
    # No chains, no draws, as NoiseInit's: torch.multinomial refused ("cannot sample
    # n_sample <= 0 samples").
    assert fitted.sample((0, 1, 2, 2), generator=gen(5)).shape == (0, 1, 2, 2)
    assert fitted.sample((0, 1, 2, 2), classes=torch.zeros(0, dtype=torch.long)).shape == (
        0, 1, 2, 2)


def test_data_gaussian_noise_share_replaces_that_share_of_marginal_draws_only() -> None:
    data, labels = two_class_data()
    data = data + 10  # far from the uniform noise in [-1, 1]
    fitted = DataGaussian.fit(data, labels, rank=1, noise=0.25, noise_scale=1.0)
    draws = fitted.sample((4000, 1, 2, 2), generator=gen(0)).flatten(1)
    is_noise = draws.abs().amax(1) <= 1
    assert is_noise.double().mean().item() == pytest.approx(0.25, abs=0.03)
    given = fitted.sample((500, 1, 2, 2), classes=torch.zeros(500, dtype=torch.long),
                          generator=gen(0))
    assert given.abs().amax() > 1 and (given.flatten(1).abs().amax(1) > 1).all()
    with pytest.raises(ValueError, match="noise must be in"):
        DataGaussian.fit(data, labels, noise=1.5)


def test_data_gaussian_state_round_trip_and_starts_buffers_and_persistent_chains() -> None:
    data, labels = two_class_data(200)
    fitted = DataGaussian.fit(data, labels, rank=1)
    rebuilt = DataGaussian.from_state(roundtrip(fitted.state_dict()))
    torch.testing.assert_close(fitted.sample((5, 1, 2, 2), generator=gen(3)),
                               rebuilt.sample((5, 1, 2, 2), generator=gen(3)))
    noisy = DataGaussian.from_state(fitted.state_dict(), noise=0.25, noise_scale=2.0)
    assert (noisy.noise, noisy.noise_scale) == (0.25, 2.0)  # settings, not part of the state
    x_pos = data[:4]
    assert ReplayBuffer(8, fitted).start(x_pos, torch.arange(4), generator=gen(0)).shape == (
        4, 1, 2, 2)
    chains = PersistentChains(200, fitted, chains_per_example=2)
    assert chains.start(x_pos, torch.arange(4), generator=gen(0)).shape == (8, 1, 2, 2)


def test_data_gaussian_components_fit_each_way_a_class_is_written() -> None:
    """A class made of two tight clusters (a 1 written upright and slanted, say) gets one
    Gaussian per cluster: draws of that class land on the clusters, not between them, and the
    density is higher on the clusters than at the class mean one Gaussian would put first."""
    n = 600
    g = gen(5)
    corners = torch.tensor([[2.0, 0, 0, 0], [0, 0, 0, 2.0]], dtype=F64)
    labels = torch.arange(n) % 2
    class0 = corners[torch.arange(n) % 4 // 2] + 0.1 * torch.randn(n, 4, generator=g, dtype=F64)
    class1 = torch.tensor([0, 3.0, 3.0, 0], dtype=F64) + 0.3 * torch.randn(n, 4, generator=g,
                                                                          dtype=F64)
    data = torch.where(labels[:, None] == 0, class0, class1).reshape(n, 1, 2, 2)
    fitted = DataGaussian.fit(data, labels, rank=1, components=2, generator=gen(1))
    assert fitted.component_classes.tolist() == [0, 0, 1, 1] and fitted.n_classes == 2
    assert torch.isclose(fitted.weights.sum(), torch.tensor(1.0, dtype=F64))
    found = sorted(fitted.means[:2].flatten(1).round().tolist())
    assert found == sorted(corners.tolist())
    draws = fitted.sample((2000, 1, 2, 2), classes=torch.zeros(2000, dtype=torch.long),
                          generator=gen(2)).flatten(1)
    to_corner = torch.cdist(draws, corners).min(1).values
    assert (to_corner < 0.6).float().mean() > 0.95  # on a cluster, not in between
    assert 0.4 < (draws[:, 0] > 1).float().mean() < 0.6  # the clusters' shares
    single = DataGaussian.fit(data, labels, rank=1)
    middle = corners.mean(0).reshape(1, 1, 2, 2)
    on_cluster = corners[:1].reshape(1, 1, 2, 2)
    assert fitted.log_prob(on_cluster) > fitted.log_prob(middle) + 5
    assert single.log_prob(on_cluster) < single.log_prob(middle) + 1
    # The fit travels whole; a state saved before components existed has one per class.
    rebuilt = DataGaussian.from_state(roundtrip(fitted.state_dict()))
    assert rebuilt.component_classes.tolist() == [0, 0, 1, 1]
    saved = single.state_dict()
    del saved["component_classes"]
    assert DataGaussian.from_state(saved).component_classes.tolist() == [0, 1]
    with pytest.raises(ValueError, match="components must be an int >= 1"):
        DataGaussian.fit(data, labels, components=0)
    # A cluster of one example (3 of class 0 and 2 of class 1 cannot make two pairs each)
    # joins its neighbour's: fewer components, each with a density.
    few = DataGaussian.fit(data[:5], labels[:5], components=2, generator=gen(1))
    assert few.component_classes.tolist() == [0, 1] and (few.residual_std > 0).all()


def test_data_gaussian_keeps_fewer_directions_than_its_smallest_class_spans() -> None:
    """Three examples of a class span two directions; keeping both would leave no residual
    variance, so a fit asked for 3 keeps 1 (n - 2), and has a density."""
    data, labels = two_class_data(6)
    fitted = DataGaussian.fit(data, labels, rank=3)
    assert fitted.factors.shape == (2, 1, 1, 2, 2) and (fitted.residual_std > 0).all()
    assert torch.isfinite(fitted.log_prob(data)).all()


def test_data_gaussian_log_prob_is_its_mixture_of_dense_gaussians() -> None:
    """``log_prob`` through each component's factor space equals the mixture of the dense
    ``N(mean_k, F_k F_k^T + residual_k^2 I)`` densities, and has a gradient in ``x``. In
    float64 throughout: weights of 200 and 199 examples in 399, which float32 rounds, are
    not."""
    data, labels = two_class_data(400)
    fitted = DataGaussian.fit(data[:399], labels[:399], rank=1)
    x = torch.randn(6, 1, 2, 2, generator=gen(5), dtype=F64).mul(2).requires_grad_()
    components = []
    for k in range(2):
        factors = fitted.factors[k].flatten(1)
        covariance = factors.T @ factors + fitted.residual_std[k] ** 2 * torch.eye(4, dtype=F64)
        normal = torch.distributions.MultivariateNormal(fitted.means[k].flatten(), covariance)
        components.append(normal.log_prob(x.flatten(1)) + fitted.weights[k].log())
    log_prob = fitted.log_prob(x)
    torch.testing.assert_close(log_prob, torch.logsumexp(torch.stack(components), 0),
                               rtol=1e-12, atol=1e-12)
    (gradient,) = torch.autograd.grad(log_prob.sum(), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_data_gaussian_log_prob_of_float32_samples_near_a_subspace_is_exact() -> None:
    """Data on a 3-D subspace plus noise of std 1e-3: the quadratic form cancels along the kept
    directions, and in float32 arithmetic log q was off by 0.22-1.4 nats (of 3600-6000) here;
    computed in float64, a float32 sample's log q is float64's rounded to float32."""
    g = gen(12)
    data = (torch.randn(12, 3, generator=g) @ torch.randn(3, 64, generator=g) / 3
            + 1e-3 * torch.randn(12, 64, generator=g)).reshape(12, 1, 8, 8)
    fitted = DataGaussian.fit(data, rank=4)
    x = data[:4] + 0.01 * torch.randn(4, 1, 8, 8, generator=g)
    log_prob = fitted.log_prob(x)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob.double(), fitted.log_prob(x.double()), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_data_gaussian_log_prob_of_half_precision_samples_is_float32(dtype) -> None:
    """Half precision failed inside the Cholesky factorisation; it is scored in float32."""
    data, labels = two_class_data(400)
    fitted = DataGaussian.fit(data.float(), labels, rank=1)
    x = torch.randn(6, 1, 2, 2, generator=gen(5)).to(dtype)
    log_prob = fitted.log_prob(x)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, fitted.log_prob(x.float()))


@pytest.mark.parametrize("call, message", [
    (lambda d, y: DataGaussian.fit(d, y, rank=-1), "rank must be an int >= 0, got -1"),
    # A float rank or count failed inside the fit, naming neither; True stood for 1.
    (lambda d, y: DataGaussian.fit(d, y, rank=2.0), "rank must be an int >= 0, got 2.0"),
    (lambda d, y: DataGaussian.fit(d, y, rank=True), "rank must be an int >= 0, got True"),
    (lambda d, y: DataGaussian.fit(d, y, components=2.0),
     "components must be an int >= 1, got 2.0"),
    (lambda d, y: DataGaussian.fit(torch.zeros_like(d), y).log_prob(d),
     "zero residual variance"),
    (lambda d, y: DataGaussian.fit(d, y, rank=1).log_prob(d.flatten(1)),
     r"scores samples of shape"),
    (lambda d, y: DataGaussian.fit(d[:3], torch.tensor([0, 1, 1])), "class 0 has 1 examples"),
    (lambda d, y: DataGaussian.fit(d, y).sample((2, 1, 3, 3)), r"samples of shape \(1, 2, 2\)"),
    (lambda d, y: DataGaussian.fit(d, y).sample((2, 1, 2, 2), classes=torch.zeros(3)),
     r"classes must be \(2,\)"),
    (lambda d, y: DataGaussian.fit(d, y).sample((2, 1, 2, 2), classes=torch.tensor([0, 2])),
     r"classes must be in 0 .. 1 \(the fitted classes\), got 0 .. 2"),
    (lambda d, y: DataGaussian.fit(d, y).sample((2, 1, 2, 2), classes=torch.tensor([-1, 0])),
     r"classes must be in 0 .. 1 \(the fitted classes\), got -1 .. 0"),
    (lambda d, y: DataGaussian.from_state({"means": d}), "lacks"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.full((2,), 0.5),
                               component_classes=torch.tensor([-1, 0])), "cover every class"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.full((2,), 0.5),
                               component_classes=torch.tensor([0, 2])), "cover every class"),
    # Each of these failed deep, or (short labels) blamed a class that only looked small.
    (lambda d, y: DataGaussian.fit(d, y[:5]),
     r"labels must be \(40,\), one per example of data \(40, 1, 2, 2\), got \(5,\)"),
    (lambda d, y: DataGaussian.fit(d, y + 0.5), "labels must be integers, got torch.float32"),
    (lambda d, y: DataGaussian.fit(d, y - 1), r"labels must be in 0 \.\. 0, got -1 \.\. 0"),
    (lambda d, y: DataGaussian.fit(d[:0]), "at least 2 examples, got 0"),
    (lambda d, y: DataGaussian.fit(d[:1]), "at least 2 examples, got 1"),
    (lambda d, y: DataGaussian.fit(d.masked_fill(d > 1, math.nan), y), "NaN or infinite"),
    (lambda d, y: DataGaussian.fit(d, y, rank=1).log_prob(d.long()),
     "scores floating point samples, got torch.int64"),
    # Silent before: a fit stored in uint8 (means cut, negative directions wrapped), and
    # draws cut to integers.
    (lambda d, y: DataGaussian.fit((d * 100).to(torch.uint8), y),
     "data must be floating point, as the model sees it, got torch.uint8"),
    (lambda d, y: DataGaussian.fit(d, y).sample((2, 1, 2, 2), dtype=torch.int64),
     "draws are made in a floating point dtype, got torch.int64"),
    # Silent before: weights of another sum drew as their shares and shifted log_prob by
    # log(sum); a negative one failed in torch.multinomial at the first draw; a negative
    # residual_std drew as its size; a NaN noise_scale made NaN starts.
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.tensor([0.5, 0.6])),
     r"weights must be >= 0 and sum to 1"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.tensor([0.5, 0.5001])),
     r"weights must be >= 0 and sum to 1 .* \(sum 1\.0001\)"),  # past float32's rounding
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.tensor([1.5, -0.5])),
     r"weights must be >= 0 and sum to 1"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.tensor([1.0, -1.0]),
                               torch.full((2,), 0.5)), r"residual_std must be >= 0"),
    (lambda d, y: DataGaussian.fit(d, y, noise=0.5, noise_scale=math.nan),
     "noise_scale finite and >= 0"),
    (lambda d, y: DataGaussian.fit(d, y, noise=-0.5), r"noise must be in \[0, 1\].*got -0\.5"),
    # An infinite one too (infinite starts), and a NaN residual_std (NaN draws).
    (lambda d, y: DataGaussian.fit(d, y, noise=0.5, noise_scale=math.inf),
     "noise_scale finite and >= 0"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.tensor([1.0, math.nan]),
                               torch.full((2,), 0.5)), r"residual_std must be >= 0"),
    # A damaged checkpoint's fit: NaN means drew NaN starts and scored NaN densities, an
    # infinite residual_std failed in torch's Cholesky.
    (lambda d, y: DataGaussian(d[:2].masked_fill(d[:2] > 0, math.nan), d[:2, None],
                               torch.ones(2), torch.full((2,), 0.5)),
     r"^a data Gaussian's means hold NaN or infinite values$"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None] * math.inf, torch.ones(2),
                               torch.full((2,), 0.5)),
     r"^a data Gaussian's factors hold NaN or infinite values$"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.tensor([1.0, math.inf]),
                               torch.full((2,), 0.5)),
     r"^a data Gaussian's residual_std hold NaN or infinite values$"),
    # Factors of another sample shape, and a class for each of three components of two.
    (lambda d, y: DataGaussian(d[:2], torch.zeros(2, 1, 1, 3, 3), torch.ones(2),
                               torch.full((2,), 0.5)),
     r"factors \(K, r, \*S\).*got \(2, 1, 2, 2\), \(2, 1, 1, 3, 3\)"),
    (lambda d, y: DataGaussian(d[:2], d[:2, None], torch.ones(2), torch.full((2,), 0.5),
                               component_classes=torch.tensor([0, 1, 1])),
     r"component_classes \(K,\), got .*\(3,\)$"),
])
def test_data_gaussian_rejects_bad_input(call, message: str) -> None:
    data, labels = two_class_data(40)
    with pytest.raises(ValueError, match=message):
        call(data, labels)


def test_data_gaussian_takes_the_limits_of_its_checks() -> None:
    """Shares that sum to 1 only up to float32's rounding (a third each), a residual_std and a
    noise_scale of 0."""
    data, _ = two_class_data(40)
    third = torch.full((3,), 1 / 3)
    assert float(third.double().sum()) != 1.0  # the rounding the check allows
    DataGaussian(data[:3], data[:3, None], torch.zeros(3), third)
    fit = DataGaussian.fit(data, noise=0.5, noise_scale=0.0)
    assert fit.noise_scale == 0.0
    assert DataGaussian.fit(data, noise=1.0).noise == 1.0  # every draw of no class is noise


def test_noise_start_gives_fresh_chains_per_example() -> None:
    x_pos = torch.randn(3, 2, 4, 4, generator=gen(4), dtype=F64)
    start = NoiseStart(NoiseInit("uniform", 0.1), chains_per_example=2)
    x0 = start.start(x_pos, torch.arange(3), generator=gen(5))
    assert x0.shape == (6, 2, 4, 4) and x0.dtype == F64
    assert x0.abs().max() <= 0.1
    start.keep(x0)  # stores nothing
    assert start.state_dict() == {}
    assert not torch.equal(start.start(x_pos, torch.arange(3), generator=gen(6)), x0)


def test_data_start_repeats_each_example() -> None:
    x_pos = torch.randn(3, 2, 4, 4, generator=gen(7), dtype=F64)
    x0 = DataStart(chains_per_example=3).start(x_pos, torch.arange(3))
    assert x0.shape == (9, 2, 4, 4)
    # Example i's chains are rows 3i, 3i+1, 3i+2, the same order PersistentChains uses.
    assert torch.equal(x0, x_pos.repeat_interleave(3, dim=0))
    assert torch.equal(x0[3:6], x_pos[1].expand(3, 2, 4, 4))
    x0.zero_()
    assert x_pos.abs().sum() > 0, "the start must be a copy, not a view of the data"


def test_data_start_adds_noise_of_the_given_std() -> None:
    x_pos = torch.randn(50, 1, 8, 8, generator=gen(8), dtype=F64)
    x0 = DataStart(noise_std=0.3, chains_per_example=2).start(x_pos, torch.arange(50),
                                                              generator=gen(9))
    eps = x0 - x_pos.repeat_interleave(2, dim=0)
    n = eps.numel()  # 6400 draws: SE(std) = 0.3 / sqrt(2n)
    assert abs(eps.std().item() - 0.3) < 5 * 0.3 / math.sqrt(2 * n)
    assert abs(eps.mean().item()) < 5 * 0.3 / math.sqrt(n)
    # Distinct noise for the copies of one example.
    assert not torch.equal(x0[0], x0[1])
    assert torch.equal(data_plus_noise(x_pos, std=0.0), x_pos)


# ---------------------------------------------------------------------------------------------
# PersistentChains
# ---------------------------------------------------------------------------------------------


def test_persistent_chains_continue_per_example() -> None:
    pc = PersistentChains(5, NoiseInit("gaussian", 1.0), chains_per_example=2)
    x_pos = torch.zeros(2, 1, 3, 3, dtype=F64)
    x0 = pc.start(x_pos, torch.tensor([1, 3]), generator=gen(10))
    assert x0.shape == (4, 1, 3, 3) and x0.dtype == F64
    initial = pc.chains.clone()  # (5, 2, 1, 3, 3)
    assert torch.equal(x0, initial[[1, 3]].flatten(0, 1))

    # Hand back finished chains whose values say which example and chain they belong to.
    finished = torch.arange(4, dtype=F64).reshape(4, 1, 1, 1).expand(4, 1, 3, 3) + 100.0
    pc.keep(finished)

    # Next batch uses examples 3 and 0: example 3's chains are the kept rows 2 and 3, example 0's
    # chains are still the untouched initial noise.
    x1 = pc.start(x_pos, torch.tensor([3, 0]), generator=gen(11))
    assert torch.equal(x1[:2], finished[2:])
    assert torch.equal(x1[2:], initial[0])
    # Example 1 kept rows 0 and 1; examples 2 and 4 never changed.
    assert torch.equal(pc.chains[1], finished[:2])
    assert torch.equal(pc.chains[[2, 4]], initial[[2, 4]])
    # The start is a copy: changing it (as an in-place sampler would) leaves the store alone.
    x1.fill_(-1.0)
    assert torch.equal(pc.chains[3], finished[2:])


def test_persistent_chains_state_dict_round_trip() -> None:
    init = NoiseInit("gaussian", 1.0)
    pc = PersistentChains(4, init, chains_per_example=3)
    assert pc.state_dict() == {}
    pc.load_state_dict({})  # a checkpoint from before the first start
    assert pc.chains is None
    x_pos = torch.zeros(2, 2, 4, 4)
    pc.start(x_pos, torch.tensor([0, 2]), generator=gen(12))
    pc.keep(torch.randn(6, 2, 4, 4, generator=gen(13)))

    restored = PersistentChains(4, init, chains_per_example=3)
    restored.load_state_dict(roundtrip(pc.state_dict()))
    idx, batch = torch.tensor([2, 1, 0]), torch.zeros(3, 2, 4, 4)
    # A fresh set would draw new noise from gen(99); the restored one must return the stored chains.
    assert torch.equal(restored.start(batch, idx, generator=gen(99)), pc.start(batch, idx))


def test_persistent_chains_shape_errors() -> None:
    init = NoiseInit("gaussian", 1.0)
    with pytest.raises(ValueError):
        PersistentChains(0, init)
    with pytest.raises(ValueError):
        PersistentChains(3, init, chains_per_example=0)
    pc = PersistentChains(3, init, chains_per_example=2)
    with pytest.raises(RuntimeError, match="before start"):
        pc.keep(torch.zeros(2, 1, 4, 4))
    pc.start(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), generator=gen(14))
    with pytest.raises(ValueError, match=r"\(1, 4, 4\).*\(1, 8, 8\)"):
        pc.start(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 2, \.\.\.\)"):
        pc.load_state_dict({"chains": torch.zeros(4, 2, 1, 4, 4)})
    with pytest.raises(ValueError):
        pc.load_state_dict({"chains": torch.zeros(3, 1, 1, 4, 4)})


@pytest.mark.parametrize("indices, problem", [
    (torch.tensor([0, 1]), r"indices must be \(3,\) integers.*got \(2,\) torch.int64"),
    (torch.tensor([0, 1, 1, 2]), r"indices must be \(3,\) integers.*got \(4,\)"),
    (torch.tensor([[0], [1], [2]]), r"indices must be \(3,\) integers.*got \(3, 1\)"),
    (torch.tensor([0.0, 1.0, 2.0]), r"indices must be \(3,\) integers.*torch.float32"),
    (torch.tensor([True, False, True]), r"indices must be \(3,\) integers.*torch.bool"),
    (torch.tensor([0, -1, 1]), r"indices must be in 0 \.\. 3 \(n_examples 4\), got -1 \.\. 1"),
    (torch.tensor([0, 4, 1]), r"indices must be in 0 \.\. 3 \(n_examples 4\), got 0 \.\. 4"),
    # A list or an array failed on "'list' object has no attribute 'dim'".
    ([0, 1, 2], r"^indices must be a torch.Tensor, got list"),
    (np.array([0, 1, 2]), r"^indices must be a torch.Tensor, got ndarray"),
], ids=["short", "long", "column", "float", "bool", "negative", "past the end", "list", "array"])
def test_persistent_chains_name_indices_that_are_not_one_per_example(indices, problem) -> None:
    """Indices of another length gave another number of chains without a word (so did a
    negative one, the chains of the last example); float indices failed inside indexing."""
    pc = PersistentChains(4, NoiseInit("gaussian", 1.0), chains_per_example=2)
    with pytest.raises(ValueError, match=problem):
        pc.start(torch.zeros(3, 1, 2, 2), indices, generator=gen(0))
    assert pc.chains is None  # nothing drawn for a refused start


@pytest.mark.parametrize("chains", [torch.zeros(5, 1, 2, 2), torch.zeros(6, 1, 1, 4),
                                    torch.zeros(6, 1, 2, 2, dtype=F64)],
                         ids=["count", "sample shape", "dtype"])
def test_persistent_chains_keep_names_chains_not_of_the_last_start(chains) -> None:
    """A wrong count, sample shape or dtype failed deep inside reshape or index_put."""
    pc = PersistentChains(4, NoiseInit("gaussian", 1.0), chains_per_example=2)
    pc.start(torch.zeros(3, 1, 2, 2), torch.tensor([0, 2, 1]), generator=gen(0))
    stored = pc.chains.clone()
    with pytest.raises(ValueError, match=r"keep takes the chains of the last start, "
                                         r"\(6, 1, 2, 2\) torch.float32, got"):
        pc.keep(chains)
    assert torch.equal(pc.chains, stored)


# ---------------------------------------------------------------------------------------------
# ReplayBuffer
# ---------------------------------------------------------------------------------------------


def rows(values: list[float], shape: tuple[int, ...] = (1, 2, 2)) -> Tensor:
    """A batch whose row i is filled with values[i], so stored rows can be identified."""
    v = torch.tensor(values, dtype=F64)
    return v.reshape(-1, *[1] * len(shape)).expand(len(values), *shape).clone()


def row_ids(x: Tensor) -> list[float]:
    return x.flatten(1)[:, 0].tolist()


def test_replay_buffer_fills_to_capacity_and_never_exceeds_it() -> None:
    buf = ReplayBuffer(5, NoiseInit("gaussian", 1.0))
    assert len(buf) == 0 and buf.state_dict() == {}
    buf.keep(rows([0, 1, 2]))
    assert len(buf) == 3
    buf.keep(rows([3, 4, 5, 6]))
    assert len(buf) == 5
    # Its room doubled from 3 to no more than the capacity: no row held that no chain fills.
    room = buf.samples.untyped_storage().nbytes() // buf.samples[0].nbytes
    assert room == 5
    buf.keep(rows([float(i) for i in range(7, 19)]))  # more than capacity in one go
    assert len(buf) == 5
    # Only the 5 newest of that batch survive.
    assert sorted(row_ids(buf.samples)) == [14, 15, 16, 17, 18]


def test_replay_buffer_moves_what_it_holds_only_as_its_room_doubles() -> None:
    """Filling a buffer of 64 one chain at a time moves the stored chains 6 times (its room
    doubling from 1): grown by each keep's chains, it copied every stored chain at every keep,
    a cost that rose with the fill. Each chain is kept all the same."""
    buf = ReplayBuffer(64, NoiseInit("gaussian", 1.0))
    moves, storage = 0, None
    for i in range(66):  # then overwrites the two oldest
        buf.keep(rows([i]))
        moves += storage is not None and buf.samples.data_ptr() != storage
        storage = buf.samples.data_ptr()
    assert moves == 6
    assert row_ids(buf.samples) == [64, 65, *range(2, 64)]


def test_a_checkpoint_of_a_filling_replay_buffer_holds_only_its_stored_chains() -> None:
    """The state of a buffer not yet full is its stored chains alone: saved as a view of the
    room they are kept in, a checkpoint would hold that whole room."""
    buf = ReplayBuffer(1000, NoiseInit("gaussian", 1.0))
    buf.keep(rows([float(i) for i in range(16)], (1, 16, 16)))
    buf.keep(rows([16.0], (1, 16, 16)))  # 17 chains of 2 kB in room for 32
    saved = io.BytesIO()
    torch.save(buf.state_dict(), saved)
    assert saved.tell() < 40_000
    restored = ReplayBuffer(1000, NoiseInit("gaussian", 1.0))
    restored.load_state_dict(roundtrip(buf.state_dict()))
    assert len(restored) == 17 and row_ids(restored.samples) == list(range(17))


def test_a_filling_replay_buffer_starts_chains_only_from_what_it_stored() -> None:
    """Its room outgrows its chains as it fills (3 chains in room for 4): what it counts and
    draws starts from is the chains kept, never the room's unwritten rows."""
    buf = ReplayBuffer(10, NoiseInit("uniform", 1.0), fresh=0.0)
    for i in range(3):
        buf.keep(rows([100.0 + i]))
    assert len(buf) == 3
    x0 = buf.start(torch.zeros(64, 1, 2, 2, dtype=F64), torch.arange(64), generator=gen(26))
    assert set(row_ids(x0)) == {100.0, 101.0, 102.0}


def test_replay_buffer_ring_overwrites_oldest_first() -> None:
    buf = ReplayBuffer(4, NoiseInit("gaussian", 1.0))
    buf.keep(rows([0, 1, 2]))
    buf.keep(rows([3, 4]))  # fills slot 3, then overwrites the oldest (slot 0)
    assert row_ids(buf.samples) == [4, 1, 2, 3]
    buf.keep(rows([5, 6]))
    assert row_ids(buf.samples) == [4, 5, 6, 3]
    buf.keep(rows([7, 8, 9]))  # wraps around: slots 3, 0, 1
    assert row_ids(buf.samples) == [8, 9, 6, 7]
    assert int(buf.state_dict()["next"]) == 2  # the slot overwritten next, not a count


def test_replay_buffer_empty_start_is_fresh_noise() -> None:
    buf = ReplayBuffer(10, NoiseInit("uniform", 1.0), fresh=0.0, chains_per_example=2)
    x_pos = torch.zeros(3, 1, 2, 2, dtype=F64)
    x0 = buf.start(x_pos, torch.arange(3), generator=gen(20))
    assert x0.shape == (6, 1, 2, 2) and x0.dtype == F64
    assert x0.abs().max() <= 1.0 and x0.abs().min() > 0


def test_replay_buffer_fresh_one_gives_only_noise_and_zero_gives_only_stored() -> None:
    stored = rows([100.0 + i for i in range(8)])  # far outside U(-1, 1)
    x_pos = torch.zeros(64, 1, 2, 2, dtype=F64)
    idx = torch.arange(64)

    all_fresh = ReplayBuffer(8, NoiseInit("uniform", 1.0), fresh=1.0)
    all_fresh.keep(stored)
    x0 = all_fresh.start(x_pos, idx, generator=gen(21))
    assert x0.abs().max() <= 1.0

    none_fresh = ReplayBuffer(8, NoiseInit("uniform", 1.0), fresh=0.0)
    none_fresh.keep(stored)
    x0 = none_fresh.start(x_pos, idx, generator=gen(22))
    assert set(row_ids(x0)) <= set(row_ids(stored))
    assert all(torch.equal(r, r.flatten()[0].expand_as(r))
               for r in x0), "rows must be whole samples"
    # 64 uniform picks from 8 rows: all 8 appear except with probability < 8 (7/8)^64 = 0.002;
    # with this seed they do.
    assert set(row_ids(x0)) == set(row_ids(stored))
    # The start is a copy.
    x0.fill_(0.0)
    assert none_fresh.samples.min() >= 100.0


def test_replay_buffer_fresh_fraction() -> None:
    buf = ReplayBuffer(4, NoiseInit("uniform", 1.0), fresh=0.3)
    buf.keep(rows([100.0, 101.0, 102.0, 103.0]))
    n = 4000
    x0 = buf.start(torch.zeros(n, 1, 2, 2, dtype=F64), torch.arange(n), generator=gen(23))
    share = (x0.flatten(1)[:, 0].abs() <= 1.0).double().mean().item()
    # Binomial: SE = sqrt(0.3 * 0.7 / 4000) = 0.0072; 5 SE bound.
    assert abs(share - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)


def test_replay_buffer_picks_stored_samples_uniformly_and_fresh_chains_anywhere() -> None:
    """Each chain is fresh with probability ``fresh``, wherever it sits in the batch (the first
    chains are not the fresh ones), and otherwise restarts from a stored sample drawn uniformly.
    5 binomial standard errors per share."""
    buf = ReplayBuffer(8, NoiseInit("uniform", 1.0), fresh=0.25)
    buf.keep(rows([100.0 + i for i in range(8)]))
    n = 16_000
    x0 = buf.start(torch.zeros(n, 1, 2, 2, dtype=F64), torch.arange(n), generator=gen(25))
    first = x0.flatten(1)[:, 0]
    fresh = first.abs() <= 1.0
    for half in (fresh[: n // 2], fresh[n // 2 :]):
        share = half.double().mean().item()
        assert abs(share - 0.25) < 5 * math.sqrt(0.25 * 0.75 / len(half)), share
    counts = torch.bincount((first[~fresh] - 100).long(), minlength=8).double()
    p = 0.75 / 8
    assert len(counts) == 8
    assert ((counts / n - p).abs() < 5 * math.sqrt(p * (1 - p) / n)).all(), counts.tolist()


def test_replay_buffer_state_dict_round_trip() -> None:
    init = NoiseInit("gaussian", 1.0)
    buf = ReplayBuffer(4, init, fresh=0.0)
    buf.keep(rows([0, 1, 2, 3]))
    buf.keep(rows([4, 5]))  # full, oldest entry now in slot 2
    assert row_ids(buf.samples) == [4, 5, 2, 3]
    restored = ReplayBuffer(4, init, fresh=0.0)
    restored.load_state_dict(roundtrip(buf.state_dict()))
    assert torch.equal(restored.samples, buf.samples)
    # Same ring position: the next keep overwrites the same slots in both.
    buf.keep(rows([6, 7, 8]))
    restored.keep(rows([6, 7, 8]))
    assert torch.equal(restored.samples, buf.samples)
    assert row_ids(buf.samples) == [8, 5, 6, 7]
    x_pos = torch.zeros(16, 1, 2, 2, dtype=F64)
    assert torch.equal(restored.start(x_pos, torch.arange(16), generator=gen(24)),
                       buf.start(x_pos, torch.arange(16), generator=gen(24)))
    # An empty buffer round-trips to empty.
    empty = ReplayBuffer(4, init)
    empty.load_state_dict(roundtrip(ReplayBuffer(4, init).state_dict()))
    assert len(empty) == 0
    # Also over chains it held: what it restores is the saved buffer, not what it had.
    restored.load_state_dict({})
    assert len(restored) == 0 and restored.samples is None and restored.state_dict() == {}


def test_replay_buffer_capacity_and_fresh_errors() -> None:
    init = NoiseInit("gaussian", 1.0)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, init)
    with pytest.raises(ValueError, match="chains_per_example"):
        ReplayBuffer(4, init, chains_per_example=0)
    for fresh in (-0.1, 1.5):
        with pytest.raises(ValueError, match="fresh"):
            ReplayBuffer(4, init, fresh=fresh)
    small = ReplayBuffer(3, init)
    with pytest.raises(ValueError, match="capacity is 3"):
        small.load_state_dict({"samples": torch.zeros(5, 1, 2, 2), "next": torch.tensor(0)})


@pytest.mark.parametrize("upsample", ["nearest", "linear"])
def test_super_resolution_start_begins_and_stays_consistent_with_the_low_resolution(upsample):
    from stgconv.mcmc import Langevin, SuperResolutionStart
    from stgconv.ops import BLOCK_UPSAMPLERS, block_down

    g = torch.Generator().manual_seed(0)
    x_pos = torch.rand(3, 1, 8, 8, 8, generator=g)
    start = SuperResolutionStart((4, 4, 4), upsample=upsample)
    x0 = start.start(x_pos, torch.arange(3), generator=g)
    low = block_down(x_pos, (4, 4, 4))
    torch.testing.assert_close(x0, BLOCK_UPSAMPLERS[upsample](low, (4, 4, 4)))
    torch.testing.assert_close(block_down(start.constraint(x_pos).project(x0), (4, 4, 4)), low)
    assert not torch.equal(x0, x_pos)  # the detail inside each block is what must be learned
    x = Langevin(n_steps=5, step_size=0.1).run(
        lambda v: v.flatten(1).pow(2).sum(1), x0, constraint=start.constraint(x_pos), generator=g
    )
    torch.testing.assert_close(block_down(x, (4, 4, 4)), low, rtol=0, atol=1e-6)
    assert start.state_dict() == {}
    with pytest.raises(ValueError, match="upsample must be one of"):
        SuperResolutionStart((4, 4, 4), upsample="cubic")


@pytest.mark.parametrize("factor", [4, (), (4, 0, 4), (2.5, 2, 2)])
def test_coarse_starts_refuse_a_bad_factor_when_made_naming_it(factor) -> None:
    # A bare int failed as "'int' object is not iterable" (SuperResolutionStart(4) is what a
    # reader of DownsampleConsistency(low, factor) writes first); 0 and 2.5 only in a step.
    from stgconv.mcmc import CoarseStart, SuperResolutionStart

    for start in (CoarseStart, SuperResolutionStart):
        with pytest.raises(ValueError, match=r"factor must be a non-empty sequence of positive "
                                             r"ints, one per trailing dim \(e.g. \(4, 4, 4\) "
                                             r"for voxels\), got "):
            start(factor)
    assert SuperResolutionStart([2, 2]).factor == (2, 2)


def test_coarse_starts_take_each_factor_along_its_own_axis() -> None:
    """Blocks of 2 x 1 x 4 over (D, H, W): the coarse start is each block's mean repeated over
    the block, and the super-resolution start keeps those means."""
    from stgconv.mcmc import CoarseStart, SuperResolutionStart
    from stgconv.ops import block_down

    x_pos = torch.rand(2, 1, 4, 2, 8, generator=gen(0))
    means = x_pos.reshape(2, 1, 2, 2, 2, 1, 2, 4).mean((3, 5, 7))
    expected = means.repeat_interleave(2, 2).repeat_interleave(4, 4)
    coarse = CoarseStart((2, 1, 4)).start(x_pos, torch.arange(2))
    torch.testing.assert_close(coarse, expected, rtol=0, atol=1e-6)
    start = SuperResolutionStart((2, 1, 4), upsample="nearest")
    torch.testing.assert_close(start.start(x_pos, torch.arange(2)), coarse, rtol=0, atol=0)
    kept = start.constraint(x_pos).project(torch.rand_like(x_pos))
    torch.testing.assert_close(block_down(kept, (2, 1, 4)), means, rtol=0, atol=1e-6)


def test_recovery_start_clamps_the_known_entries_of_its_batch() -> None:
    x = boxes_and_balls(3, 8)
    start = RecoveryStart(0.7, nearest_known_fill)
    with pytest.raises(RuntimeError, match=r"start\(\) of the same batch"):
        start.constraint(x)
    x0 = start.start(x, torch.arange(3), generator=gen(0))
    known = start.constraint(x).known
    assert 0.25 < known.float().mean() < 0.35
    assert torch.equal(x0[known], x[known])
    moved = start.constraint(x).project(torch.rand_like(x))
    assert torch.equal(moved[known], x[known])
    for missing in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="missing"):
            RecoveryStart(missing, nearest_known_fill)


def test_a_loaded_replay_buffer_does_not_write_into_the_loaded_tensor() -> None:
    stored = torch.arange(4, dtype=torch.float64).reshape(4, 1).expand(4, 3).clone()
    before = stored.clone()
    buffer = ReplayBuffer(4, NoiseInit("gaussian", 1.0))
    buffer.load_state_dict({"samples": stored, "next": torch.tensor(0)})
    buffer.keep(torch.full((2, 3), 9.0, dtype=torch.float64))
    assert torch.equal(stored, before)


def test_replay_buffer_refuses_a_checkpoint_one_sample_over_capacity() -> None:
    buffer = ReplayBuffer(3, NoiseInit("gaussian", 1.0))
    with pytest.raises(ValueError, match="holds 4 samples, capacity is 3"):
        buffer.load_state_dict({"samples": torch.zeros(4, 1, 2, 2), "next": torch.tensor(0)})
    for next_slot in (3, -1):  # was accepted: no keep ever makes it
        with pytest.raises(ValueError, match=rf"next slot is {next_slot}, outside 0 \.\. 2"):
            buffer.load_state_dict({"samples": torch.zeros(3, 1, 2, 2),
                                    "next": torch.tensor(next_slot)})
        assert len(buffer) == 0
    buffer.load_state_dict({"samples": torch.zeros(3, 1, 2, 2), "next": torch.tensor(0)})
    assert len(buffer) == 3


def test_replay_buffer_refuses_a_batch_of_another_sample_shape() -> None:
    """Stored (1, 2, 2) samples must not broadcast silently into a (3, 2, 2) batch."""
    buffer = ReplayBuffer(4, NoiseInit("gaussian", 1.0))
    buffer.keep(torch.zeros(4, 1, 2, 2))
    with pytest.raises(ValueError, match=r"samples of shape \(1, 2, 2\), batch has \(3, 2, 2\)"):
        buffer.start(torch.zeros(2, 3, 2, 2), torch.arange(2), generator=gen(0))


@pytest.mark.parametrize("batch, said", [
    (torch.zeros(2, 1, 2, 2, dtype=F64), "torch.float64 on cpu"),
    (torch.zeros(2, 1, 2, 2, device="meta"), "torch.float32 on meta"),
], ids=["dtype", "device"])
def test_stored_chains_refuse_a_batch_of_another_dtype_or_device(batch: Tensor, said: str
                                                                  ) -> None:
    """As a batch of another sample shape is refused: a float64 batch got float32 persistent
    chains back without a word (and a buffer's samples were promoted, to be refused by keep),
    and chains on another device failed inside torch."""
    persistent = PersistentChains(2, NoiseInit())
    persistent.start(torch.zeros(2, 1, 2, 2), torch.arange(2), generator=gen(0))
    with pytest.raises(ValueError, match=rf"^persistent chains are torch.float32 on cpu, the "
                                         rf"batch {said}: give examples of the chains' dtype"):
        persistent.start(batch, torch.arange(2), generator=gen(0))
    buffer = ReplayBuffer(4, NoiseInit())
    buffer.keep(torch.zeros(4, 1, 2, 2))
    with pytest.raises(ValueError, match=rf"^replay buffer holds samples torch.float32 on cpu, "
                                         rf"the batch is {said}: give examples of the samples'"):
        buffer.start(batch, torch.arange(2), generator=gen(0))


@pytest.mark.parametrize("chains", [torch.zeros(2, 1, 2, 3), torch.zeros(2, 1, 2, 2, dtype=F64)],
                         ids=["sample shape", "dtype"])
@pytest.mark.parametrize("stored", [1, 4], ids=["room left", "full"])
def test_replay_buffer_keep_names_chains_unlike_those_stored(chains, stored) -> None:
    """With room left, other sample shapes failed inside torch.cat and float64 chains turned
    the whole buffer float64; once full, both failed inside index_put."""
    buffer = ReplayBuffer(4, NoiseInit("gaussian", 1.0))
    buffer.keep(torch.zeros(stored, 1, 2, 2))
    with pytest.raises(ValueError, match=r"replay buffer holds samples \(1, 2, 2\) "
                                         r"torch.float32, got chains"):
        buffer.keep(chains)
    assert len(buffer) == stored and buffer.samples.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_example_numbers_and_classes_of_any_integer_dtype_index_as_numbers(dtype) -> None:
    """torch indexes with a uint8 tensor as with a mask: persistent chains of examples
    (2, 0, 1) came back as those of examples 0 and 2, and a data Gaussian's draws of classes
    (1, 1, 0) failed on the mask's shape; int8 and int16 indices failed inside torch."""
    chains = PersistentChains(3, NoiseInit(), chains_per_example=2)
    chains.start(torch.zeros(3, 1), torch.arange(3), generator=gen(0))
    chains.keep(torch.arange(6.0)[:, None])
    started = chains.start(torch.zeros(3, 1), torch.tensor([2, 0, 1], dtype=dtype))
    assert started.flatten().tolist() == [4.0, 5.0, 0.0, 1.0, 2.0, 3.0]
    chains.keep(started + 10)  # kept for the examples it started
    assert chains.chains.flatten().tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    data = torch.cat([torch.zeros(4, 1, 2, 2), torch.full((4, 1, 2, 2), 5.0)])
    gaussian = DataGaussian.fit(data + torch.randn(8, 1, 2, 2, generator=gen(1)) * 0.01,
                                torch.tensor([0] * 4 + [1] * 4), rank=1)
    draws = gaussian.sample((3, 1, 2, 2), classes=torch.tensor([1, 1, 0], dtype=dtype),
                            generator=gen(2))
    assert draws.mean((1, 2, 3)).round().tolist() == [5.0, 5.0, 0.0]


def test_persistent_chains_keep_once_per_start() -> None:
    pc = PersistentChains(3, NoiseInit("gaussian", 1.0))
    x_pos = torch.zeros(2, 1, 2, 2)
    pc.start(x_pos, torch.tensor([0, 1]), generator=gen(0))
    pc.keep(torch.ones(2, 1, 2, 2))
    with pytest.raises(RuntimeError, match="before start"):
        pc.keep(torch.ones(2, 1, 2, 2))


def test_persistent_chains_start_an_empty_batch_with_no_chains() -> None:
    pc = PersistentChains(3, NoiseInit("gaussian", 1.0), chains_per_example=2)
    start = pc.start(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), generator=gen(0))
    assert start.shape == (0, 1, 2, 2)


def test_loaded_persistent_chains_do_not_write_into_the_loaded_tensor() -> None:
    stored = torch.zeros(3, 1, 1, 2, 2)
    pc = PersistentChains(3, NoiseInit("gaussian", 1.0))
    pc.load_state_dict({"chains": stored})
    pc.start(torch.zeros(1, 1, 2, 2), torch.tensor([1]))
    pc.keep(torch.full((1, 1, 2, 2), 9.0))
    assert torch.equal(stored, torch.zeros(3, 1, 1, 2, 2))


def test_persistent_chains_draw_their_first_noise_from_the_generator() -> None:
    x_pos = torch.zeros(2, 1, 2, 2)
    idx = torch.tensor([0, 1])

    def first(seed: int) -> Tensor:
        pc = PersistentChains(2, NoiseInit("gaussian", 1.0), chains_per_example=2)
        return pc.start(x_pos, idx, generator=gen(seed))

    torch.manual_seed(123)
    a = first(5)
    torch.manual_seed(456)  # the global RNG must play no part
    assert torch.equal(a, first(5))
    assert not torch.equal(a, first(6))


def test_recovery_start_hides_entries_drawn_from_the_generator() -> None:
    x = boxes_and_balls(2, 8)

    def known(seed: int) -> Tensor:
        start = RecoveryStart(0.5, nearest_known_fill)
        start.start(x, torch.arange(2), generator=gen(seed))
        return start.constraint(x).known

    torch.manual_seed(123)
    first = known(5)
    torch.manual_seed(456)  # the global RNG must play no part
    assert torch.equal(first, known(5))
    assert not torch.equal(first, known(6))


def test_recovery_start_hides_each_examples_entries_apart() -> None:
    x = boxes_and_balls(2, 8)
    start = RecoveryStart(0.5, nearest_known_fill)
    start.start(x, torch.arange(2), generator=gen(0))
    known = start.constraint(x).known
    assert not torch.equal(known[0], known[1])


def test_recovery_start_never_reads_the_entries_it_hides() -> None:
    """The chain starts from the fill of the kept entries alone: other values at the hidden
    entries (under the same mask) start the same chains, the hidden truth shows in none."""
    x = boxes_and_balls(2, 8)
    start = RecoveryStart(0.5, nearest_known_fill)
    x0 = start.start(x, torch.arange(2), generator=gen(3))
    hidden = ~start.constraint(x).known
    other = torch.where(hidden, 1 - x, x)
    assert torch.equal(start.start(other, torch.arange(2), generator=gen(3)), x0)


@pytest.mark.parametrize("store", ["persistent", "buffer"])
def test_stored_chains_are_kept_without_their_graph(store: str) -> None:
    """Chains handed back with a graph (a differentiable run) are stored as data: a graph kept
    would hold every step's activations for as long as the chains."""
    init = NoiseInit("gaussian", 1.0)
    chains = PersistentChains(2, init) if store == "persistent" else ReplayBuffer(4, init)
    chains.start(torch.zeros(2, 1, 2, 2), torch.arange(2), generator=gen(0))
    chains.keep(torch.ones(2, 1, 2, 2, requires_grad=True) * 2)
    stored = next(iter(chains.state_dict().values()))
    assert not stored.requires_grad and stored.grad_fn is None


def test_kmeans_draws_each_next_centre_in_proportion_to_its_squared_distance() -> None:
    """k-means++, not farthest-first: from a start at 0 or 1 (points 0, 1, 3, two of each)
    the near point is drawn now and then, and the seeds alone (no Lloyd iterations) then
    split 0 from 1; farthest-first would take 3 every time and never split them."""
    from stgconv.mcmc.init import _kmeans

    points = torch.tensor([0.0, 0.0, 1.0, 1.0, 3.0, 3.0], dtype=F64)[:, None]
    splits = [_kmeans(points, 2, iterations=0, generator=gen(seed)) for seed in range(100)]
    apart = sum(int(clusters[0] != clusters[2]) for clusters in splits)
    assert 2 <= apart <= 25  # probability 0.1 each (1/3 x 0.1 + 1/3 x 0.2)


def test_recovery_start_constraint_needs_the_start_of_that_same_batch() -> None:
    x = boxes_and_balls(3, 8)
    start = RecoveryStart(0.5, nearest_known_fill)
    start.start(x, torch.arange(3), generator=gen(0))
    with pytest.raises(RuntimeError, match=r"start\(\) of the same batch"):
        start.constraint(x[:1])
    with pytest.raises(RuntimeError, match=r"start\(\) of the same batch"):
        start.constraint(x[..., :4])  # as many examples, each of another shape
    start.constraint(x)
    start.keep(x)
    with pytest.raises(RuntimeError, match=r"start\(\) of the same batch"):
        start.constraint(x)


def test_super_resolution_start_upsamples_linearly_by_default() -> None:
    from stgconv.mcmc import SuperResolutionStart
    from stgconv.ops import BLOCK_UPSAMPLERS, block_down

    x_pos = torch.rand(2, 1, 4, 4, 4, generator=gen(0))
    low = block_down(x_pos, (2, 2, 2))
    x0 = SuperResolutionStart((2, 2, 2)).start(x_pos, torch.arange(2))
    torch.testing.assert_close(x0, BLOCK_UPSAMPLERS["linear"](low, (2, 2, 2)))
    assert not torch.allclose(x0, BLOCK_UPSAMPLERS["nearest"](low, (2, 2, 2)))


def test_data_plus_noise_without_noise_is_a_copy() -> None:
    x = torch.zeros(2, 3)
    data_plus_noise(x, std=0.0).add_(1.0)
    assert torch.equal(x, torch.zeros(2, 3))


CHAIN_COUNTS = {
    "noise start chains": (lambda n: NoiseStart(NoiseInit(), chains_per_example=n),
                           "chains_per_example"),
    "data start chains": (lambda n: DataStart(chains_per_example=n), "chains_per_example"),
    "persistent chains": (lambda n: PersistentChains(4, NoiseInit(), chains_per_example=n),
                          "chains_per_example"),
    "persistent examples": (lambda n: PersistentChains(n, NoiseInit()), "n_examples"),
    "buffer chains": (lambda n: ReplayBuffer(4, NoiseInit(), chains_per_example=n),
                      "chains_per_example"),
    "buffer capacity": (lambda n: ReplayBuffer(n, NoiseInit()), "capacity"),
}


@pytest.mark.parametrize("case", list(CHAIN_COUNTS))
@pytest.mark.parametrize("count", [0, 1.5, True])
def test_chain_counts_must_be_whole_and_positive(case: str, count: object) -> None:
    """0 chains per example gave an empty batch of chains, silently; a count of 1.5 was kept
    until torch failed on it (``randn`` or ``repeat_interleave`` at the first start, a buffer's
    slicing once it filled); ``True`` stood for 1."""
    make, name = CHAIN_COUNTS[case]
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got {count!r}$"):
        make(count)


@pytest.mark.parametrize("make, owner", [
    (lambda init: PersistentChains(2, init), "PersistentChains"),
    (lambda init: ReplayBuffer(4, init), "ReplayBuffer"),
    (lambda init: NoiseStart(init), "NoiseStart"),
])
def test_starts_refuse_an_init_that_draws_nothing_when_made(make, owner: str) -> None:
    """A config's kind given for the init (``PersistentChains(n, "gaussian")``) was kept until
    the first start failed on "'str' object has no attribute 'sample'"."""
    with pytest.raises(ValueError, match=rf"^{owner}: init must draw fresh chain starts "
                                         r"\(NoiseInit, DataGaussian\), got str 'gaussian' "
                                         r"\(for chains.init's kind: NoiseInit\('gaussian'\)\)$"):
        make("gaussian")
    with pytest.raises(ValueError, match=rf"^{owner}: init must .*, got NoneType None$"):
        make(None)


@pytest.mark.parametrize("fresh", ["0.1", None, True])
def test_a_replay_buffers_fresh_share_that_is_no_number_is_named(fresh: object) -> None:
    """A string or None failed on "'<=' not supported between instances", and True passed
    as a share of 1."""
    with pytest.raises(ValueError,
                       match=rf"^fresh must be a number, got {re.escape(repr(fresh))}$"):
        ReplayBuffer(4, NoiseInit(), fresh=fresh)


def test_noise_and_data_starts_refuse_bad_noise() -> None:
    """A NaN noise std gave all-NaN starts, silently (the sampler then blamed its step size); a
    negative std passed as its absolute value."""
    for bad in (math.nan, -0.1, math.inf):
        with pytest.raises(ValueError, match="noise_std must be finite and >= 0"):
            DataStart(noise_std=bad)
        with pytest.raises(ValueError, match="std must be finite and >= 0"):
            data_plus_noise(torch.zeros(2, 3), std=bad, generator=gen(0))


def test_data_gaussian_fit_residual_is_the_unbiased_variance_per_dimension() -> None:
    """With rank 0 the isotropic variance is the unbiased total variance over the dimensions."""
    data = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]], dtype=F64)
    fit = DataGaussian.fit(data, rank=0)
    torch.testing.assert_close(fit.residual_std[0] ** 2, data.var(0, unbiased=True).sum() / 2)


def test_data_gaussian_fit_keeps_at_most_dims_minus_one_directions() -> None:
    """A rank past the dimensions keeps dims - 1 directions, leaving one for the isotropic
    rest: keeping all of them would divide the rest's variance by zero dimensions."""
    data = torch.randn(20, 1, 2, 2, generator=gen(0), dtype=F64)
    fit = DataGaussian.fit(data, rank=10)
    assert fit.factors.shape == (1, 3, 1, 2, 2)
    assert torch.isfinite(fit.residual_std).all() and fit.has_density


def test_data_gaussian_fit_of_examples_on_a_line_has_no_density() -> None:
    """Examples spanning one direction leave only SVD rounding error past it (~1e-33): counted
    as variance it would give the component a residual of ~1e-17 and a density that exists
    only by rounding; zeroed, the component has none, and says so."""
    direction = torch.randn(9, generator=gen(0), dtype=F64)
    steps = torch.randn(6, 1, generator=gen(1), dtype=F64)
    fit = DataGaussian.fit((steps * direction + 0.3).reshape(6, 1, 3, 3), rank=3)
    assert fit.residual_std.tolist() == [0.0] and not fit.has_density


def test_data_gaussian_fit_of_an_isotropic_class_has_finite_factors() -> None:
    """+-0.2 e_i in 10 dimensions: every direction has the same variance, and the rest's mean
    can exceed a kept direction's by rounding; the kept variance less the rest is clamped at
    0 before its square root (else NaN)."""
    eye = torch.eye(10, dtype=F64)
    fit = DataGaussian.fit(torch.cat([eye, -eye]) * 0.2, rank=3)
    assert torch.isfinite(fit.factors).all() and torch.isfinite(fit.residual_std).all()


def test_data_gaussian_fit_weighs_each_class_by_its_share_of_the_examples() -> None:
    """The mixture weights are the classes' shares of the data (2 and 6 of 8), not equal."""
    data = torch.randn(8, 3, generator=gen(0), dtype=F64)
    fit = DataGaussian.fit(data, torch.tensor([0, 1, 1, 0, 1, 1, 1, 1]), rank=0)
    assert fit.weights.tolist() == [0.25, 0.75]


def test_data_gaussian_class_draws_use_the_component_of_that_class() -> None:
    """component_classes need not be sorted: component k belongs to class component_classes[k]."""
    means = torch.tensor([[10.0], [-10.0]])
    g = DataGaussian(means, torch.zeros(2, 0, 1), torch.zeros(2), torch.tensor([0.5, 0.5]),
                     component_classes=torch.tensor([1, 0]))
    x = g.sample((2, 1), classes=torch.tensor([0, 1]), generator=gen(0))
    assert x.flatten().tolist() == [-10.0, 10.0]


def test_the_stateful_starts_say_their_settings_and_what_they_hold() -> None:
    """They printed as ``<...ReplayBuffer object at 0x...>``: nothing of their capacity, how
    full they are, or where fresh chains start."""
    x = torch.zeros(4, 1, 2, 2)
    buffer = ReplayBuffer(8, NoiseInit("uniform", 0.5), fresh=0.1)
    buffer.keep(x)
    assert repr(buffer) == ("ReplayBuffer(capacity=8, fresh=0.1, chains_per_example=1, "
                            "init=NoiseInit(kind='uniform', scale=0.5), stored=4)")
    # By default 5% of the chains start afresh from standard normal noise (JEM's setting).
    assert repr(ReplayBuffer(8, NoiseInit())) == (
        "ReplayBuffer(capacity=8, fresh=0.05, chains_per_example=1, "
        "init=NoiseInit(kind='gaussian', scale=1.0), stored=0)")
    fitted = DataGaussian.fit(torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)),
                              torch.arange(6) % 2, rank=1)
    chains = PersistentChains(4, fitted, chains_per_example=2)
    assert repr(chains) == (
        "PersistentChains(n_examples=4, chains_per_example=2, init=DataGaussian(components=2, "
        "classes=2, rank=1, sample_shape=(1, 2, 2), noise=0.0, noise_scale=1.0), chains=None)")
    chains.start(x, torch.arange(4))
    assert repr(chains).endswith("chains=(4, 2, 1, 2, 2))")


def test_the_stateless_starts_say_their_settings() -> None:
    """They printed as ``<...NoiseStart object at 0x...>``, where the stateful ones say theirs."""
    assert repr(NoiseStart(NoiseInit("uniform", 0.5), chains_per_example=2)) == (
        "NoiseStart(init=NoiseInit(kind='uniform', scale=0.5), chains_per_example=2)")
    assert repr(DataStart(noise_std=0.1, chains_per_example=3)) == (
        "DataStart(noise_std=0.1, chains_per_example=3)")


def test_the_noise_and_data_starts_default_to_one_chain_per_example_without_noise() -> None:
    x_pos = torch.randn(3, 1, 2, 2, generator=gen(0))
    noise = NoiseStart(NoiseInit()).start(x_pos, torch.arange(3), generator=gen(1))
    assert noise.shape == (3, 1, 2, 2)
    assert torch.equal(DataStart().start(x_pos, torch.arange(3), generator=gen(1)), x_pos)


def test_every_start_gives_as_many_chains_per_example_as_it_says() -> None:
    """Training sizes its batch of chains by chains_per_example (its memory check and message):
    each start's start() must give that many chains per example."""
    from stgconv.mcmc import CoarseStart, SuperResolutionStart

    x_pos = boxes_and_balls(2, 4)
    for start in (NoiseStart(NoiseInit(), chains_per_example=3), DataStart(chains_per_example=2),
                  CoarseStart((2, 2, 2)), SuperResolutionStart((2, 2, 2)),
                  RecoveryStart(0.5, nearest_known_fill)):
        chains = start.start(x_pos, torch.arange(2), generator=gen(0))
        assert chains.shape == (2 * start.chains_per_example, *x_pos.shape[1:]), start


def test_kmeans_never_seeds_a_point_that_is_already_a_centre() -> None:
    """The next centre is drawn in proportion to the squared distance to the nearest one, so a
    copy of a centre (distance 0) is never drawn: two far groups of copies are always split,
    where uniform seeding put both seeds in one group half the time."""
    from stgconv.mcmc.init import _kmeans

    points = torch.tensor([0.0] * 4 + [10.0] * 4, dtype=F64)[:, None]
    for seed in range(20):
        assert _kmeans(points, 2, iterations=0, generator=gen(seed)).tolist() in (
            [0] * 4 + [1] * 4, [1] * 4 + [0] * 4)
        # Asked for a third centre where every point sits on one already: it stops at two.
        assert sorted(set(_kmeans(points, 3, generator=gen(seed)).tolist())) == [0, 1]


def test_kmeans_keeps_a_centre_that_loses_its_points_where_it_was() -> None:
    """Lloyd's update can leave a centre nearest to no point (these seven points, seed 2: the
    second centre's two points go to the others in the second round); it stays put and is
    merged away at the end, so the clusters do not depend on where the origin lies (moved to 0,
    it took points again)."""
    from stgconv.mcmc.init import _kmeans

    points = torch.tensor([[1, 2], [1, 10], [2, 0], [2, 9], [3, 9], [9, 0], [10, 4]], dtype=F64)
    clusters = _kmeans(points, 3, generator=gen(2)).tolist()
    assert clusters == [0, 0, 0, 0, 0, 1, 1]
    assert _kmeans(points + 100, 3, generator=gen(2)).tolist() == clusters


def test_data_gaussian_class_draws_follow_a_cycle_of_component_classes() -> None:
    """Components of classes (1, 2, 0): a class's component is found by class, not read off
    the components' classes as if they were the inverse map (the same for a swap of two)."""
    means = torch.tensor([[10.0], [20.0], [30.0]])
    g = DataGaussian(means, torch.zeros(3, 0, 1), torch.zeros(3), torch.full((3,), 1 / 3),
                     component_classes=torch.tensor([1, 2, 0]))
    x = g.sample((3, 1), classes=torch.tensor([0, 1, 2]), generator=gen(0))
    assert x.flatten().tolist() == [30.0, 10.0, 20.0]


def test_replay_buffer_starts_follow_the_generator_alone() -> None:
    """Which chains start fresh is drawn from the generator too: a seed gives the same mix of
    stored and fresh chains whatever the global random state."""
    buf = ReplayBuffer(8, NoiseInit("uniform", 1.0), fresh=0.5)
    buf.keep(rows([100.0 + i for i in range(8)]))  # far outside U(-1, 1)
    x_pos = torch.zeros(32, 1, 2, 2, dtype=F64)
    starts = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        starts.append(buf.start(x_pos, torch.arange(32), generator=gen(23)))
    assert torch.equal(starts[0], starts[1])
    stored = starts[0].flatten(1)[:, 0] >= 100
    assert 0 < stored.sum() < 32  # both kinds in the mix


def test_data_gaussian_draws_follow_the_generator_alone() -> None:
    """Which draws of no class are noise is drawn from the generator too, as the rest."""
    data, labels = two_class_data(40)
    fit = DataGaussian.fit(data, labels, rank=1, noise=0.5, noise_scale=10.0)
    draws = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        draws.append(fit.sample((64, 1, 2, 2), generator=gen(5)))
    assert torch.equal(draws[0], draws[1])
    noise = draws[0].abs().flatten(1).max(1).values > 6  # U(-10, 10), far from the data
    assert 0 < noise.sum() < 64


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_data_gaussian_fit_is_kept_in_the_datas_dtype_and_drawn_in_it_or_the_asked_one(
        dtype) -> None:
    data, labels = two_class_data(40)
    fit = DataGaussian.fit(data.to(dtype), labels, rank=1)
    assert {t.dtype for t in (fit.means, fit.factors, fit.residual_std, fit.weights)} == {dtype}
    assert fit.sample((3, 1, 2, 2), generator=gen(0)).dtype == dtype
    other = F64 if dtype == torch.float32 else torch.float32
    assert fit.sample((3, 1, 2, 2), dtype=other, generator=gen(0)).dtype == other


def test_data_plus_noise_draws_its_noise_from_the_generator_alone() -> None:
    x = torch.arange(6.0).view(2, 3)
    torch.manual_seed(0)
    noisy = data_plus_noise(x, std=0.5, generator=gen(7))
    torch.testing.assert_close(noisy, x + 0.5 * torch.randn(2, 3, generator=gen(7)),
                               rtol=0, atol=0)


def test_data_gaussian_weights_may_sum_to_one_up_to_k_float32_steps_and_no_further() -> None:
    """Four shares each 4 float32 steps above a quarter (eps / 4 each) sum to 1 + 4 eps, the
    most the check allows for K = 4 (shares rounded one by one, or by a softmax, drift past
    eps / 2); one step more is refused."""
    quarter = torch.full((4,), 0.25)
    step = torch.finfo(torch.float32).eps / 4  # one float32 step at 0.25
    weights = quarter + 4 * step
    assert float(weights.double().sum()) == 1 + 4 * torch.finfo(torch.float32).eps
    means = torch.zeros(4, 1)
    DataGaussian(means, torch.zeros(4, 0, 1), torch.zeros(4), weights)
    weights[0] += step
    with pytest.raises(ValueError, match="weights must be >= 0 and sum to 1"):
        DataGaussian(means, torch.zeros(4, 0, 1), torch.zeros(4), weights)


def test_data_gaussian_takes_a_component_of_weight_zero_and_never_draws_it() -> None:
    """Weights >= 0, as documented: a component with no share is kept, and draws of no class
    never come from it."""
    g = DataGaussian(torch.tensor([[10.0], [-10.0]]), torch.zeros(2, 0, 1), torch.zeros(2),
                     torch.tensor([1.0, 0.0]))
    assert g.sample((50, 1), generator=gen(0)).flatten().tolist() == [10.0] * 50


def test_data_gaussian_class_draws_pick_its_components_by_weight_from_the_generator() -> None:
    """Class 0 has components of weights 0.6 and 0.2: three of its draws in four come from the
    first (not half, as equal odds within the class would give), the same ones whatever the
    global random state."""
    g = DataGaussian(torch.tensor([[10.0], [20.0], [30.0]]), torch.zeros(3, 0, 1),
                     torch.zeros(3), torch.tensor([0.6, 0.2, 0.2]),
                     component_classes=torch.tensor([0, 0, 1]))
    draws = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        draws.append(g.sample((4000, 1), classes=torch.zeros(4000, dtype=torch.long),
                              generator=gen(3)))
    assert torch.equal(draws[0], draws[1])
    assert set(draws[0].flatten().tolist()) == {10.0, 20.0}
    assert (draws[0] == 10.0).double().mean().item() == pytest.approx(0.75, abs=0.03)


def test_kmeans_iterates_until_no_point_changes_cluster() -> None:
    """3, 3, 4, 5, 8, 9 in two: {3, 3, 4, 5} and {8, 9} (means 3.75 and 8.5) is the only split
    in which every point is nearest its own cluster's mean; some seedings (seed 2's) need more
    than one of Lloyd's rounds to reach it."""
    from stgconv.mcmc.init import _kmeans

    points = torch.tensor([5.0, 9.0, 4.0, 8.0, 3.0, 3.0], dtype=F64)[:, None]
    for seed in range(10):
        clusters = _kmeans(points, 2, generator=gen(seed)).tolist()
        low, high = clusters[0], clusters[1]
        assert low != high and clusters == [low, high, low, high, low, low], seed
