"""Short-run MCMC as a generator: ``reconstruct`` finds chain starts whose chain lands on the
target (the error falls), ``interpolate`` runs the same chain noise from points between two
starts; both replay the generator's state and leave it as they found it.

The CLI commands over these (``stgconv reconstruct`` / ``interpolate``) are in ``test_cli.py``.
"""

from __future__ import annotations

import pytest
import torch

from stgconv import shortrun
from stgconv.energy import ConvNetEnergy, image_energy
from stgconv.mcmc import MALA, Langevin


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shortrun_model() -> tuple[ConvNetEnergy, Langevin]:
    torch.manual_seed(3)
    energy = image_energy("texture", in_channels=1, layers=[[8, 3, 1], [8, 3, 1]],
                          reference_sigma=None)
    return energy, Langevin(n_steps=5, step_size=0.1, noise_scale=0.5)


def test_reconstruct_reduces_the_error() -> None:
    energy, sampler = shortrun_model()
    target = torch.rand(2, 1, 12, 12, generator=gen(100)) * 2 - 1
    g = gen(5)
    z0 = torch.randn(target.shape, generator=gen(6))
    state = g.get_state()
    z, x, losses = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=15, lr=0.1,
                                        generator=g)
    assert len(losses) == 15
    assert losses[-1] < 0.8 * losses[0]
    assert z.shape == x.shape == target.shape
    assert not z.requires_grad and not x.requires_grad
    # x is the chain from z under the replayed noise, and the generator is left as it was found.
    assert torch.equal(g.get_state(), state)
    torch.testing.assert_close(x, sampler.run(energy, z, generator=gen(5)))
    # Only z is optimised: the model's parameters get no gradient.
    assert all(p.grad is None for p in energy.parameters())
    with pytest.raises(ValueError, match="must match"):
        shortrun.reconstruct(energy, sampler, target, z0=z0[:1])
    with pytest.raises(ValueError, match=r"target \(2, 1, 12, 12\) and z0 \(2, 1, 6, 24\) must"):
        shortrun.reconstruct(energy, sampler, target, z0=z0.reshape(2, 1, 6, 24))  # as many
    with pytest.raises(ValueError, match="n_iterations"):
        shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=0)
    # MALA failed at the first chain ("unexpected keyword argument 'create_graph'"), the two
    # arguments swapped on "'function' object has no attribute 'run'".
    for wrong, got in (((energy, MALA(n_steps=2)), "MALA"), ((sampler, energy), "Conv")):
        with pytest.raises(ValueError, match=f"^sampler must be a Langevin sampler .*got {got}"):
            shortrun.reconstruct(*wrong, target, z0=z0)


def test_reconstruct_inside_no_grad_is_the_same_reconstruction() -> None:
    """A notebook may wrap the call in torch.no_grad(), as it may a sampler's: the loss there
    had no graph and autograd failed ("One of the differentiated Tensors does not require
    grad"). inference_mode, where no block can turn autograd back on, is named."""
    energy, sampler = shortrun_model()
    target = torch.rand(1, 1, 12, 12, generator=gen(100)) * 2 - 1
    z0 = torch.randn(target.shape, generator=gen(6))
    outside = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=2,
                                   generator=gen(5))
    with torch.no_grad():
        inside = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=2,
                                      generator=gen(5))
    assert inside[2] == outside[2]
    assert torch.equal(inside[0], outside[0]) and torch.equal(inside[1], outside[1])
    with torch.inference_mode(), pytest.raises(RuntimeError, match="torch.inference_mode"):
        shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=1)


def test_interpolate_endpoints_and_shape() -> None:
    energy, sampler = shortrun_model()
    z_start, z_end = torch.randn(2, 1, 12, 12, generator=gen(7))
    g = gen(8)
    state = g.get_state()
    path = shortrun.interpolate(energy, sampler, z_start, z_end, n_points=3, generator=g)
    assert path.shape == (3, 1, 12, 12)
    assert torch.equal(g.get_state(), state)
    torch.testing.assert_close(path[0], sampler.run(energy, z_start[None], generator=gen(8))[0])
    torch.testing.assert_close(path[-1], sampler.run(energy, z_end[None], generator=gen(8))[0])
    assert not torch.allclose(path[1], path[0]) and not torch.allclose(path[1], path[2])
    with pytest.raises(ValueError, match="must match"):
        shortrun.interpolate(energy, sampler, z_start, z_end[:, :6])
    with pytest.raises(ValueError, match=r"z_start \(1, 12, 12\) and z_end \(1, 6, 24\) must"):
        shortrun.interpolate(energy, sampler, z_start, z_end.reshape(1, 6, 24))  # as many entries
    with pytest.raises(ValueError, match="n_points"):
        shortrun.interpolate(energy, sampler, z_start, z_end, n_points=0)


def test_reconstruct_replays_one_chain_noise_and_steps_at_the_rate_given() -> None:
    """At a rate of 0 the start never moves, so every iteration runs the same chain: the same
    noise replayed each time gives the same loss (fresh noise per iteration moved it, and a
    rate other than the one given moved the start)."""
    energy, sampler = shortrun_model()
    target = torch.rand(1, 1, 8, 8, generator=gen(100)) * 2 - 1
    z0 = torch.randn(target.shape, generator=gen(6))
    z, _, losses = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=3, lr=0.0,
                                        generator=gen(5))
    assert torch.equal(z, z0)
    assert losses[0] == losses[1] == losses[2]


def test_the_default_chain_noise_is_not_the_global_rngs() -> None:
    """Without a generator, reconstruct and interpolate run the noise of a new generator: the
    same in every call, whatever the global RNG's state (it is not read)."""
    energy, sampler = shortrun_model()
    target = torch.rand(1, 1, 8, 8, generator=gen(100)) * 2 - 1
    z0 = torch.randn(target.shape, generator=gen(6))
    ends = torch.randn(2, 1, 8, 8, generator=gen(7))
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        _, x, _ = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=1)
        runs.append((x, shortrun.interpolate(energy, sampler, *ends, n_points=2)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_reconstruct_reports_the_mean_squared_error_of_each_iterate() -> None:
    """The first loss reconstruct reports is the mean (not the sum) of the squared error between
    the chain from z0 and the target, under the generator's replayed noise."""
    torch.manual_seed(3)
    energy = image_energy("texture", in_channels=1, layers=[[4, 3, 1]], reference_sigma=None)
    sampler = Langevin(n_steps=2, step_size=0.1, noise_scale=0.5)
    target = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z0 = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    _, _, losses = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=1,
                                        generator=torch.Generator().manual_seed(5))
    start = sampler.run(energy, z0, generator=torch.Generator().manual_seed(5))
    assert losses[0] == pytest.approx(float((start - target).pow(2).mean()), rel=1e-5)


def test_reconstruct_leaves_the_callers_start_untouched() -> None:
    """reconstruct optimises a copy of z0: the tensor the caller passed keeps its values."""
    torch.manual_seed(3)
    energy = image_energy("texture", in_channels=1, layers=[[4, 3, 1]], reference_sigma=None)
    sampler = Langevin(n_steps=2, step_size=0.1, noise_scale=0.5)
    target = torch.zeros(1, 1, 8, 8)
    z0 = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    kept = z0.clone()
    z, _, _ = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=2, lr=0.1)
    assert torch.equal(z0, kept)
    assert not torch.equal(z, kept)


def test_reconstruct_returns_the_chain_it_optimised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ordinary run may evaluate the network in bfloat16 under precision "auto" (on a device
    with native bfloat16), the differentiable one never does: the reconstruction returned is the
    differentiable chain's, the map whose error was minimised. Forced here on the CPU by making
    the ordinary run choose bfloat16."""
    from stgconv.mcmc.execution import Execution

    energy, sampler = shortrun_model()
    monkeypatch.setattr(Langevin, "execution", lambda self, energy, x: Execution(bf16=True))
    target = torch.rand(2, 1, 12, 12, generator=gen(100)) * 2 - 1
    z0 = torch.randn(target.shape, generator=gen(6))
    z, x, _ = shortrun.reconstruct(energy, sampler, target, z0=z0, n_iterations=2, lr=0.1,
                                   generator=gen(5))
    optimised = sampler.run(energy, z, generator=gen(5), create_graph=True).detach()
    ordinary = sampler.run(energy, z, generator=gen(5))
    assert not torch.allclose(ordinary, optimised, rtol=0, atol=1e-4)  # the forcing bites
    torch.testing.assert_close(x, optimised)


def test_latent_path_keeps_the_variance_of_gaussian_starts() -> None:
    """Each point of the latent path is sqrt(1 - a^2) z_start + a z_end with a = sin(angle):
    the middle of three points weighs both ends by sqrt(1/2), so squared weights sum to 1."""
    import math

    from stgconv.shortrun import latent_path

    z_start, z_end = torch.ones(2, 2), torch.full((2, 2), 2.0)
    path = latent_path(z_start, z_end, n_points=3)
    torch.testing.assert_close(path[1], math.sqrt(0.5) * (z_start + z_end))
    torch.testing.assert_close(path[0], z_start)
    torch.testing.assert_close(path[2], z_end)


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_every_point_between_two_uniform_starts_is_a_uniform_start(scale: float) -> None:
    """A model trained from U(-scale, scale) starts is interpolated through such starts: the
    Gaussian path walked on uniform noise would put the midpoint past scale, bell-shaped."""
    from stgconv.mcmc.init import NoiseInit
    from stgconv.shortrun import noise_path

    init = NoiseInit("uniform", scale)
    g = gen(7)
    z_start, z_end = init.sample((100_000,), generator=g), init.sample((100_000,), generator=g)
    path = noise_path(init, z_start, z_end, n_points=5)
    torch.testing.assert_close(path[0], z_start, rtol=0, atol=1e-6)
    torch.testing.assert_close(path[-1], z_end, rtol=0, atol=1e-6)
    se = 0.5 / 100_000**0.5  # of a share near one half
    for point in path:
        assert point.abs().max() <= scale
        for quarter in (0.25, 0.5, 0.75):  # the uniform's quantiles, within 5 standard errors
            share = (point <= scale * (2 * quarter - 1)).float().mean().item()
            assert abs(share - quarter) < 5 * se, (quarter, share)


def test_a_uniform_path_takes_starts_at_the_ends_of_the_range_and_of_scale_zero() -> None:
    """torch.rand's 0 gives a start of exactly -scale, where the map to Gaussian noise is
    infinite; the path stays finite and still ends at z_end. A scale of 0 starts every chain
    at 0, and so does every point between two such starts."""
    from stgconv.mcmc.init import NoiseInit
    from stgconv.shortrun import noise_path

    z_start, z_end = torch.tensor([-2.0, 2.0, 0.5]), torch.tensor([1.0, -2.0, -0.5])
    path = noise_path(NoiseInit("uniform", 2.0), z_start, z_end, n_points=4)
    assert torch.isfinite(path).all() and path.abs().max() <= 2.0
    torch.testing.assert_close(path[-1], z_end, rtol=0, atol=1e-5)
    zeros = torch.zeros(3)
    assert torch.equal(noise_path(NoiseInit("uniform", 0.0), zeros, zeros, n_points=3),
                       torch.zeros(3, 3))


def test_interpolate_walks_the_path_of_the_starts_noise() -> None:
    from stgconv.mcmc.init import NoiseInit
    from stgconv.shortrun import noise_path, run_each

    energy, sampler = shortrun_model()
    init = NoiseInit("uniform", 1.0)
    z_start, z_end = init.sample((1, 8, 8), generator=gen(1)), init.sample((1, 8, 8),
                                                                          generator=gen(2))
    path = shortrun.interpolate(energy, sampler, z_start, z_end, n_points=3, init=init,
                                generator=gen(3))
    expected = run_each(energy, sampler, noise_path(init, z_start, z_end, n_points=3),
                        generator=gen(3))
    assert torch.equal(path, expected)
    gaussian = shortrun.interpolate(energy, sampler, z_start, z_end, n_points=3,
                                    generator=gen(3))  # the default path: another midpoint
    assert not torch.equal(path[1], gaussian[1])


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_integer_starts_are_named_not_walked_with_integer_angles(kind: str) -> None:
    """Integer ends made latent_path's angles integers, 0 but the last, 1 not pi/2 (a path that
    stayed at z_start and never reached z_end), without a word; noise_path's uniform walk
    failed in finfo, and reconstruct's integer z0 in requires_grad_."""
    from stgconv.mcmc.init import NoiseInit

    ends = torch.zeros(1, 4, 4, dtype=torch.long), torch.ones(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"z_start and z_end must be floating point chain "
                                         r"starts, got torch.int64 and torch.int64"):
        shortrun.noise_path(NoiseInit(kind), *ends, n_points=3)
    with pytest.raises(ValueError, match=r"got torch.float32 and torch.int64"):
        shortrun.noise_path(NoiseInit(kind), ends[0].float(), ends[1], n_points=3)
    energy, sampler = shortrun_model()
    with pytest.raises(ValueError, match=r"z0 must be floating point chain starts, got "
                                         r"torch.int64"):
        shortrun.reconstruct(energy, sampler, ends[1][None].float(), z0=ends[0][None],
                             n_iterations=1, generator=gen(0))


def test_run_each_of_no_starts_is_no_samples() -> None:
    """It failed in torch.cat; the samplers themselves take an empty batch."""
    energy, sampler = shortrun_model()
    starts = torch.zeros(0, 1, 8, 8, requires_grad=True)
    samples = shortrun.run_each(energy, sampler, starts, generator=gen(0))
    assert samples.shape == (0, 1, 8, 8) and samples.dtype == torch.float32
    assert samples is not starts and not samples.requires_grad  # detached, as samples are


def test_run_each_names_the_start_whose_chain_diverged_or_started_non_finite() -> None:
    """Each chain runs as a batch of one, so the sampler named every diverging or non-finite
    start "chain 0", whichever point of an interpolation it was."""
    def blows_up_past_5(x: torch.Tensor) -> torch.Tensor:
        energy = x.flatten(1).pow(2).sum(1)
        return torch.where(x.flatten(1)[:, 0] > 5, torch.full_like(energy, float("inf")), energy)

    sampler = Langevin(n_steps=2, step_size=0.01, noise_scale=0.0)
    starts = torch.zeros(3, 1, 2, 2)
    starts[2, 0, 0, 0] = 10
    with pytest.raises(FloatingPointError, match=r"at step 0 of 2 in chain 2; the chain "
                                                 r"diverged \(try a smaller step size"):
        shortrun.run_each(blows_up_past_5, sampler, starts, generator=gen(0))
    starts[1, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^starts\[1\] \(of 3\) holds NaN or infinite "
                                         r"values: chains must start finite$"):
        shortrun.run_each(blows_up_past_5, sampler, starts, generator=gen(0))
    with pytest.raises(ValueError, match="starts must be a torch.Tensor, got list"):
        shortrun.run_each(blows_up_past_5, sampler, list(starts), generator=gen(0))


def test_reconstruct_refuses_a_target_with_no_entries() -> None:
    """An empty batch "reconstructed" with a NaN loss at every iteration."""
    energy, sampler = shortrun_model()
    empty = torch.zeros(0, 1, 8, 8)
    with pytest.raises(ValueError, match=r"target \(0, 1, 8, 8\) holds no entries"):
        shortrun.reconstruct(energy, sampler, empty, z0=empty, n_iterations=2)


def test_a_chain_that_diverges_after_adams_steps_names_the_learning_rate() -> None:
    """reconstruct --lr 1e30: Adam's first step took the starts to where the chain's energy
    overflows, and the advice named the sampler's step size, clipping and clamp."""
    def quartic(x: torch.Tensor) -> torch.Tensor:
        return x.pow(4).flatten(1).sum(1)

    sampler = Langevin(n_steps=2, step_size=0.01, noise_scale=0.0)
    target, start = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    with pytest.raises(FloatingPointError, match=r"diverged \(its starts, after 1 Adam step\(s\) "
                                                 r"of lr 1e\+30, are where it diverges: lower "
                                                 r"lr\)$"):
        shortrun.reconstruct(quartic, sampler, target, z0=start, n_iterations=3, lr=1e30)
    # Diverging from the given starts themselves is the sampler's to fix.
    with pytest.raises(FloatingPointError, match=r"diverged \(try a smaller step size"):
        shortrun.reconstruct(quartic, sampler, target, z0=start * 1e20, n_iterations=3)


def test_a_chain_that_diverges_leaves_the_generator_as_it_was_found() -> None:
    """The generator's state is the chain's noise, replayed at every iteration and restored
    afterwards: a divergence left it where the noise had taken it, so a retry with a lower lr
    and the same generator optimised the map of another noise."""
    def quartic(x: torch.Tensor) -> torch.Tensor:
        return x.pow(4).flatten(1).sum(1)

    sampler = Langevin(n_steps=2, step_size=0.01, noise_scale=0.5)
    target, start = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    g = gen(5)
    state = g.get_state()
    with pytest.raises(FloatingPointError, match="lower lr"):
        shortrun.reconstruct(quartic, sampler, target, z0=start, n_iterations=3, lr=1e30,
                             generator=g)
    assert torch.equal(g.get_state(), state)
    with pytest.raises(FloatingPointError, match="diverged"):
        shortrun.run_each(quartic, sampler, torch.stack([start[0], start[0] * 1e20]),
                          generator=g)
    assert torch.equal(g.get_state(), state)


def test_float64_starts_walk_a_path_exact_to_float64() -> None:
    """The angles and the uniform walk's edge follow the starts' dtype: float32 ones were off
    by about 1e-7."""
    from stgconv.mcmc.init import NoiseInit

    f64 = torch.float64
    path = shortrun.latent_path(torch.ones(1, dtype=f64), torch.zeros(1, dtype=f64), n_points=4)
    expected = torch.tensor([[1.0], [3**0.5 / 2], [0.5], [0.0]], dtype=f64)  # cos of 0 ... pi/2
    torch.testing.assert_close(path, expected, rtol=0, atol=1e-15)
    z_start, z_end = torch.tensor([-2.0, 0.5], dtype=f64), torch.tensor([1.0, 2.0], dtype=f64)
    path = shortrun.noise_path(NoiseInit("uniform", 2.0), z_start, z_end, n_points=3)
    assert path.dtype == f64
    torch.testing.assert_close(path[[0, -1]], torch.stack([z_start, z_end]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("function, owner", [
    ("reconstruct", "reconstruct"), ("interpolate", "shortrun.interpolate"),
    ("run_each", "run_each")])
def test_a_seed_given_for_the_generator_is_named(function: str, owner: str) -> None:
    """A seed in place of the generator is refused naming the function, before any chain runs."""
    energy, sampler = shortrun_model()
    z = torch.zeros(1, 1, 4, 4)
    args = {"reconstruct": (z,), "interpolate": (z[0], z[0]), "run_each": (z,)}[function]
    kwargs = {"z0": z} if function == "reconstruct" else {}
    with pytest.raises(ValueError, match=rf"^{owner}: generator must be a torch.Generator"):
        getattr(shortrun, function)(energy, sampler, *args, generator=0, **kwargs)


def with_entry(value: float) -> torch.Tensor:
    """``(1, 1, 4, 4)`` zeros but one entry of ``value``."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = value
    return x


@pytest.mark.parametrize("given, said", [
    ({"target": with_entry(float("nan"))}, r"target holds NaN or infinite values: target must"),
    ({"z0": with_entry(float("inf"))}, r"z0 holds NaN or infinite values: z0 must be finite$"),
    ({"target": with_entry(0.5).numpy()}, r"target must be a torch.Tensor, got ndarray"),
    ({"z0": with_entry(0.5).numpy()}, r"z0 must be a torch.Tensor, got ndarray"),
    ({"n_iterations": 2.0}, r"n_iterations must be an int >= 1, got 2.0$"),
    ({"n_iterations": True}, r"n_iterations must be an int >= 1, got True$"),
    ({"target": with_entry(128.0).to(torch.uint8)},
     r"target must be floating point pixels in \[-1, 1\], got torch.uint8 \(grey levels"),
    ({"lr": float("nan")}, r"lr must be finite and >= 0, got nan$"),
    ({"lr": -1.0}, r"lr must be finite and >= 0, got -1.0$"),
], ids=["nan target", "inf z0", "array target", "array z0", "float count", "bool count",
        "grey levels", "nan rate", "negative rate"])
def test_reconstruct_refuses_what_it_cannot_optimise_naming_it(given: dict, said: str) -> None:
    """A NaN in the target made z NaN after Adam's first step, and the chain "diverged" with the
    advice to lower lr (one in z0 blamed the sampler's step size); arrays failed at a tensor
    method, 2.0 iterations in range(), naming no argument, and True ran one iteration. A uint8
    target of grey levels was reconstructed as they are, a NaN or negative rate was Adam's
    "Invalid learning rate"."""
    energy, sampler = shortrun_model()
    arguments = {"sampler": sampler, "target": with_entry(0.5), "z0": with_entry(0.0),
                 "n_iterations": 2, **given}
    with pytest.raises(ValueError, match="^" + said):
        shortrun.reconstruct(energy, arguments.pop("sampler"), arguments.pop("target"),
                             **arguments)


def test_a_path_between_arrays_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"^z_start must be a torch.Tensor, got ndarray"):
        shortrun.latent_path(torch.zeros(2).numpy(), torch.ones(2).numpy())


def test_a_path_between_meta_tensors_is_refused_naming_them() -> None:
    """Ends of shapes without values failed inside torch ("Tensor.item() cannot be called on
    meta tensors")."""
    with pytest.raises(ValueError, match=r"^z_start is on the meta device"):
        shortrun.latent_path(torch.zeros(2, device="meta"), torch.ones(2, device="meta"))


@pytest.mark.parametrize("n_points", [2.5, True])
def test_a_path_of_a_count_that_is_no_int_is_refused_naming_it(n_points: object) -> None:
    """2.5 or True failed inside torch.linspace ("received an invalid combination of
    arguments"), naming no argument."""
    with pytest.raises(ValueError, match=rf"^n_points must be an int >= 1, got {n_points}$"):
        shortrun.latent_path(torch.zeros(2), torch.ones(2), n_points=n_points)


def test_a_path_given_no_noise_init_is_refused_naming_it() -> None:
    """The config's kind, or a DataGaussian, given as init failed on "'str' object has no
    attribute 'kind'" (and the same for 'DataGaussian'), naming no argument."""
    from stgconv.mcmc import DataGaussian

    energy, sampler = shortrun_model()
    ends = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    with pytest.raises(ValueError, match=r"^init must be the NoiseInit the starts were drawn "
                                         r"from, got str \(for the kind 'uniform': "
                                         r"NoiseInit\('uniform'\)\)$"):
        shortrun.interpolate(energy, sampler, *ends, n_points=2, init="uniform")
    fitted = DataGaussian.fit(torch.rand(3, 1, 4, 4), rank=1)
    with pytest.raises(ValueError, match=r"^init must be .*, got DataGaussian$"):
        shortrun.noise_path(fitted, *ends, n_points=2)


def test_a_squared_error_that_overflows_is_named_not_taken_for_a_nan_start() -> None:
    """A chain that stayed finite but ran far from the target (no clamp) overflowed the squared
    error; Adam's step made the starts NaN, and the next chain refused them as an "x0 holds NaN"
    the caller never gave. The generator is left as it was found."""
    def saturating(x: torch.Tensor) -> torch.Tensor:  # a flat energy past x ~ 10: chains stop
        return -1e30 * torch.tanh(x).flatten(1).sum(1)

    sampler = Langevin(n_steps=2, step_size=0.01, noise_scale=0.0)
    g = gen(0)
    state = g.get_state()
    with pytest.raises(FloatingPointError, match=r"^reconstruct: the mean squared error \(inf\) "
                                                 r"or its gradient in the starts became "
                                                 r"non-finite at iteration 1 of 3, where the "
                                                 r"chain's samples reach \|x\| = 4\.95e\+25$"):
        shortrun.reconstruct(saturating, sampler, torch.zeros(1, 1, 2, 2),
                             z0=torch.full((1, 1, 2, 2), 0.1), n_iterations=3, generator=g)
    assert torch.equal(g.get_state(), state)
