"""The "auto" execution of Langevin chains: bfloat16 only where the device computes in it, its
gradient error is small against the chain's noise and it is faster; otherwise exactly the fp32
chain."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from stgconv.energy import image_energy
from stgconv.mcmc import Langevin
from stgconv.mcmc import execution
from stgconv.mcmc.execution import (
    FP32,
    AutoExecution,
    Execution,
    bf16_chain_error,
    channels_last_format,
)


class LinearEnergy(torch.nn.Module):
    """``E(x) = x . w`` through a matrix product, which autocast runs in bfloat16: the bf16
    gradient is ``w`` rounded to bfloat16, so its error is known exactly."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return (x.flatten(1) @ self.w.unsqueeze(1)).squeeze(1)


def linear_energy(scale: float = 1.0) -> LinearEnergy:
    w = torch.randn(48, generator=torch.Generator().manual_seed(0)) * scale
    return LinearEnergy(w)


def test_chain_error_is_the_bf16_gradient_error_against_the_chains_noise() -> None:
    energy = linear_energy(100.0)
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    error = bf16_chain_error(energy, x, step_size=0.02, n_steps=16, noise_scale=0.5)
    rounding = (energy.w.detach().bfloat16().float() - energy.w.detach()).norm()
    assert rounding > 0  # the weights are not exactly representable in bfloat16
    expected = math.sqrt(16) * 0.02 * rounding / (2 * 0.5 * math.sqrt(48))
    torch.testing.assert_close(error, expected.expand(3), rtol=1e-5, atol=0)
    assert torch.isinf(bf16_chain_error(energy, x, step_size=0.02, n_steps=16,
                                        noise_scale=0.0)).all()
    # Without noise nothing hides an error, even none at all (a gradient bfloat16 keeps exact).
    assert torch.isinf(bf16_chain_error(lambda v: v.flatten(1).sum(1), x, step_size=0.02,
                                        n_steps=16, noise_scale=0.0)).all()


def test_the_chain_error_checks_the_energy_as_the_chain_does() -> None:
    """On a GPU it is the first evaluation of an "auto" run's energy: one of the wrong shape
    passed it, and one without a gradient in x failed in autograd ("The differentiated Tensor
    at index 0 appears to not have been used in the graph")."""
    energy = linear_energy()
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    settings = {"step_size": 0.02, "n_steps": 16, "noise_scale": 0.5}
    with pytest.raises(ValueError, match=r"energy must return shape \(B,\) = \(3,\), got \(3, 1\)"):
        bf16_chain_error(lambda v: energy(v)[:, None], x, **settings)
    with pytest.raises(ValueError, match="the energy has no gradient with respect to x"):
        bf16_chain_error(lambda v: energy(v.detach()), x, **settings)


@pytest.mark.parametrize("native", [False, True])
def test_auto_is_the_fp32_chain_where_it_may_not_use_bfloat16(monkeypatch, native: bool) -> None:
    """No native bfloat16, or a CPU that has it: "auto" runs the fp32 chain exactly."""
    monkeypatch.setattr(execution, "native_bfloat16", lambda device: native)
    assert not execution.auto_may_use_bfloat16(torch.device("cpu"))
    torch.manual_seed(0)
    energy = image_energy("descriptor64", in_channels=1, image_size=16)
    x0 = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    runs = {p: Langevin(n_steps=3, step_size=0.05, precision=p).run(
        energy, x0, generator=torch.Generator().manual_seed(3)) for p in ("auto", "fp32")}
    assert torch.equal(runs["auto"], runs["fp32"])


def pretend_native_and_fast(monkeypatch, bf16_speedup: float) -> AutoExecution:
    """Native bfloat16 pretended (the CPU's emulation computes the same roundings) and timings
    replaced by ``bf16_speedup``: the verdict then rests on the error test alone."""
    monkeypatch.setattr(execution, "auto_may_use_bfloat16", lambda device: True)
    monkeypatch.setattr(execution, "gradient_seconds",
                        lambda energy, x, how: 1.0 / bf16_speedup if how.bf16 else 1.0)
    auto = AutoExecution()
    monkeypatch.setattr(execution, "AUTO", auto)
    monkeypatch.setattr("stgconv.mcmc.langevin.AUTO", auto)
    return auto


@pytest.mark.filterwarnings("ignore:precision='bf16'")  # this CPU may emulate bfloat16
@pytest.mark.parametrize(("scale", "speedup", "chosen"),
                         [(1.0, 2.0, "bf16"), (1e4, 2.0, "fp32"), (1.0, 1.05, "fp32")])
def test_auto_takes_bf16_only_within_the_tolerance_and_when_faster(
        monkeypatch, scale: float, speedup: float, chosen: str) -> None:
    """A small gradient error and a real gain run the bf16 chain step for step; a large error,
    or a gain under BF16_MIN_SPEEDUP, the fp32 chain."""
    pretend_native_and_fast(monkeypatch, speedup)
    energy = linear_energy(scale)
    x0 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    sampler = Langevin(n_steps=4, step_size=0.01)
    error = bf16_chain_error(energy, x0, step_size=0.01, n_steps=4, noise_scale=1.0)
    assert bool((error <= execution.BF16_CHAIN_ERROR).all()) == (scale == 1.0)

    def run(precision: str) -> Tensor:
        return Langevin(n_steps=4, step_size=0.01, precision=precision).run(
            energy, x0, generator=torch.Generator().manual_seed(5))

    assert torch.equal(sampler.run(energy, x0, generator=torch.Generator().manual_seed(5)),
                       run(chosen))
    assert not torch.equal(run("bf16"), run("fp32"))  # the two choices really differ here


def test_the_auto_check_runs_inside_no_grad_and_names_inference_mode(monkeypatch) -> None:
    """The chain's steps turn autograd on inside torch.no_grad(), where a caller who only
    samples may be; the check before them did not: "element 0 of tensors does not require
    grad" at the first run of each shape wherever "auto" may use bfloat16 (a CUDA device with
    it natively). inference_mode is named, as the steps name it, not autograd's message."""
    monkeypatch.setattr(execution, "auto_may_use_bfloat16", lambda device: True)
    auto = AutoExecution()
    monkeypatch.setattr("stgconv.mcmc.langevin.AUTO", auto)
    energy = linear_energy()
    x0 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        Langevin(n_steps=2, step_size=0.01).run(energy, x0)  # the real check, timings too
        assert execution.gradient_seconds(energy, x0, FP32, repeats=1) >= 0
    assert energy in auto._verdicts
    fresh = linear_energy()
    with torch.inference_mode(), pytest.raises(
            RuntimeError, match=r"^sampling needs the energy's gradient, which "
                                r"torch.inference_mode\(\) turns off: sample outside it"):
        Langevin(n_steps=2, step_size=0.01).run(fresh, x0)


@pytest.mark.parametrize("anneal", ["linear", "cosine"])
def test_auto_weighs_the_error_against_annealed_noise_as_it_is(monkeypatch, anneal: str) -> None:
    """With annealed noise the chain accumulates less of it than at full strength: an error
    that full noise would hide (0.85 of the tolerance) is too large for an annealed chain."""
    pretend_native_and_fast(monkeypatch, 2.0)
    x0 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    unit = bf16_chain_error(linear_energy(), x0, step_size=0.01, n_steps=4, noise_scale=1.0)
    energy = linear_energy(0.85 * execution.BF16_CHAIN_ERROR / float(unit.max()))
    for noise_anneal, chosen in (("none", Execution(bf16=True)), (anneal, FP32)):
        sampler = Langevin(n_steps=4, step_size=0.01, noise_anneal=noise_anneal)
        assert sampler.execution(energy, x0) == chosen, noise_anneal
        execution.AUTO._verdicts.clear()  # a verdict is kept per energy and shape


def test_auto_checks_once_per_shape_then_again_after_recheck_every_runs(monkeypatch) -> None:
    pretend_native_and_fast(monkeypatch, 2.0)
    auto = AutoExecution(recheck_every=3)
    energy = linear_energy()
    x = torch.zeros(2, 3, 4, 4)
    settings = {"step_size": 0.01, "n_steps": 4, "noise_scale": 1.0}
    calls = []
    for _ in range(7):
        before = energy.calls
        assert auto.choose(energy, x, **settings) == Execution(bf16=True)
        calls.append(energy.calls - before)
    assert calls == [2, 0, 0, 2, 0, 0, 2]  # a check: the error test's bf16 and fp32 evaluation
    before = energy.calls
    auto.choose(energy, torch.zeros(2, 48), **settings)  # a new shape: its own check
    assert energy.calls - before == 2
    assert auto.choose(energy, x, step_size=0.01, n_steps=4, noise_scale=0.0) == FP32
    before = energy.calls
    auto.choose(energy, torch.zeros(5, 3, 4, 4), **settings)  # another batch of the same chains
    assert energy.calls == before


def test_energies_made_afresh_per_run_share_their_networks_verdict(monkeypatch) -> None:
    """A class-conditional energy (a new partial at every training step) and a preconditioned
    one (a new wrapper at every recovery move) are checked once, not at every run; another
    wrapping of the same network, and the bare network, are checked on their own."""
    from torch import nn

    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.recovery import Preconditioned

    auto = pretend_native_and_fast(monkeypatch, 2.0)
    checks = []
    check = auto._check
    monkeypatch.setattr(auto, "_check", lambda energy, x, **kw: checks.append(energy)
                        or check(energy, x, **kw))
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2])
    sampler = Langevin(n_steps=2, step_size=0.01)
    for make in (lambda: energy.conditional(labels),
                 lambda: Preconditioned(energy, x, torch.ones_like(x)), lambda: energy):
        for _ in range(3):
            sampler.execution(make(), x)
    assert len(checks) == 3 and len(auto._verdicts) == 1


def test_an_energy_that_cannot_be_weakly_referenced_is_checked_at_every_run(monkeypatch
                                                                          ) -> None:
    """Its verdict cannot be kept, but it is still made: bfloat16 where the check allows it."""

    class Slotted:
        __slots__ = ("net",)

        def __init__(self) -> None:
            self.net = linear_energy()

        def __call__(self, x: Tensor) -> Tensor:
            return self.net(x)

    auto = pretend_native_and_fast(monkeypatch, 2.0)
    energy = Slotted()
    for _ in range(2):
        assert auto.choose(energy, torch.zeros(2, 48), step_size=0.01, n_steps=4,
                           noise_scale=1.0) == Execution(bf16=True)
    assert energy.net.calls == 4 and len(auto._verdicts) == 0


def test_gradient_seconds_times_the_energy_gradient() -> None:
    energy = linear_energy()
    seconds = execution.gradient_seconds(energy, torch.zeros(2, 48), FP32)
    assert seconds > 0 and energy.calls == 4  # one untimed call, then three timed


def test_gradient_seconds_leaves_out_the_first_call(monkeypatch) -> None:
    """The first call pays for lazy initialisation; the timing is of the calls after it."""
    clock = iter([0.0, 10.0, 10.0, 10.5])  # the first call takes 10 s, the second 0.5 s
    monkeypatch.setattr(execution, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert execution.gradient_seconds(linear_energy(), torch.zeros(2, 48), FP32,
                                      repeats=1) == 0.5


def test_gradient_seconds_is_the_median_of_the_timed_calls(monkeypatch) -> None:
    """Timed calls of 1 s, 5 s and 2 s (after an untimed 10 s): 2 s, neither the fastest nor
    the mean, so one lucky or unlucky call does not steer the verdict."""
    clock = iter([0.0, 10.0, 10.0, 11.0, 11.0, 16.0, 16.0, 18.0])
    monkeypatch.setattr(execution, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert execution.gradient_seconds(linear_energy(), torch.zeros(2, 48), FP32,
                                      repeats=3) == 2.0


def test_gradient_seconds_runs_the_execution_it_times() -> None:
    """Each candidate is timed as the chain would run it: under bfloat16 autocast or not, and
    with its inputs in the candidate's layout."""
    seen = []

    def energy(x: Tensor) -> Tensor:
        seen.append((x.is_contiguous(memory_format=torch.channels_last),
                     torch.is_autocast_enabled("cpu")))
        return x.flatten(1).sum(1)

    x = torch.zeros(2, 3, 4, 4)
    for how in (FP32, Execution(bf16=True), Execution(bf16=True, layout=torch.channels_last)):
        seen.clear()
        execution.gradient_seconds(energy, x, how, repeats=1)
        assert seen == [(how.layout is not None, how.bf16)] * 2, how


def test_auto_takes_the_fastest_candidate_and_weighs_it_against_fp32(monkeypatch) -> None:
    """Where channels-last is a candidate too (CUDA image batches), the faster of the two
    bfloat16 layouts is taken, and only when fp32 is at least min_speedup times slower."""
    monkeypatch.setattr(execution, "auto_may_use_bfloat16", lambda device: True)
    monkeypatch.setattr(execution, "channels_last_format", lambda x: torch.channels_last)
    seconds = {FP32: 1.0, Execution(bf16=True): 0.8,
               Execution(bf16=True, layout=torch.channels_last): 0.5}
    monkeypatch.setattr(execution, "gradient_seconds", lambda energy, x, how: seconds[how])
    settings = {"step_size": 0.01, "n_steps": 4, "noise_scale": 1.0}
    x = torch.zeros(2, 3, 4, 4)
    fastest = Execution(bf16=True, layout=torch.channels_last)
    assert AutoExecution().choose(linear_energy(), x, **settings) == fastest
    assert AutoExecution(min_speedup=2.0).choose(linear_energy(), x, **settings) == fastest
    assert AutoExecution(min_speedup=2.5).choose(linear_energy(), x, **settings) == FP32


def test_auto_takes_a_chain_error_equal_to_its_own_tolerance(monkeypatch) -> None:
    """The tolerance is the AutoExecution's own (not the default 0.1), and an error equal to it
    is within it."""
    pretend_native_and_fast(monkeypatch, 2.0)
    monkeypatch.setattr(execution, "bf16_chain_error",
                        lambda *args, **kwargs: torch.tensor([0.25, 0.5]))
    settings = {"step_size": 0.01, "n_steps": 4, "noise_scale": 1.0}
    x = torch.zeros(2, 48)
    assert AutoExecution(tolerance=0.5).choose(linear_energy(), x, **settings) == Execution(
        bf16=True)
    assert AutoExecution(tolerance=0.25).choose(linear_energy(), x, **settings) == FP32


def test_auto_defaults_are_the_documented_tolerance_speedup_and_recheck() -> None:
    auto = AutoExecution()
    assert (auto.tolerance, auto.min_speedup, auto.recheck_every) == (0.1, 1.1, 64)
    assert (execution.BF16_CHAIN_ERROR, execution.BF16_MIN_SPEEDUP,
            execution.RECHECK_EVERY) == (0.1, 1.1, 64)


def test_auto_verdicts_go_with_their_energy(monkeypatch) -> None:
    """A verdict is kept per energy, weakly: an energy dropped (a model of a finished run)
    takes its verdicts with it, instead of staying alive in them."""
    import gc

    auto = pretend_native_and_fast(monkeypatch, 2.0)
    energy = linear_energy()
    auto.choose(energy, torch.zeros(2, 48), step_size=0.01, n_steps=4, noise_scale=1.0)
    assert len(auto._verdicts) == 1
    del energy
    gc.collect()
    assert len(auto._verdicts) == 0


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_native_bfloat16_on_cuda_from_compute_capability_8(monkeypatch, capability: tuple,
                                                          native: bool) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    assert execution.native_bfloat16(torch.device("cuda")) is native


@pytest.mark.parametrize("supported", [False, True])
def test_native_bfloat16_on_the_cpu_is_onednns_answer(monkeypatch, supported: bool) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: supported)
    assert execution.native_bfloat16(torch.device("cpu")) is supported


def test_auto_keeps_a_float64_chain_in_fp32(monkeypatch) -> None:
    """A float64 chain asked for more precision than fp32: "auto" never lowers it."""
    pretend_native_and_fast(monkeypatch, 2.0)
    energy = LinearEnergy(torch.randn(48, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64))
    assert Langevin().execution(energy, torch.zeros(2, 48, dtype=torch.float64)) == FP32
    assert Langevin().execution(linear_energy(), torch.zeros(2, 48)) == Execution(bf16=True)


@pytest.mark.parametrize("anneal", ["none", "linear", "cosine"])
def test_auto_is_told_the_root_mean_square_of_the_annealed_noise(monkeypatch, anneal: str
                                                                  ) -> None:
    """The noise a chain accumulates over its steps, which bounds the bf16 error it hides, is
    ``noise_scale`` times the root mean square of the steps' noise factors."""
    told = []

    class Recording:
        def choose(self, energy, x, *, step_size, n_steps, noise_scale):
            told.append(noise_scale)
            return FP32

    monkeypatch.setattr("stgconv.mcmc.langevin.AUTO", Recording())
    sampler = Langevin(n_steps=4, step_size=0.01, noise_scale=0.5, noise_anneal=anneal)
    sampler.execution(linear_energy(), torch.zeros(2, 48))
    factors = torch.tensor([sampler.noise_factor(t) for t in range(4)], dtype=torch.float64)
    assert told == [pytest.approx(0.5 * float(factors.pow(2).mean().sqrt()))]


def test_explicit_precisions_and_differentiable_chains(monkeypatch) -> None:
    pretend_native_and_fast(monkeypatch, 2.0)
    x = torch.zeros(2, 48)
    assert Langevin(precision="bf16").execution(linear_energy(), x) == Execution(bf16=True)
    assert Langevin(precision="fp32").execution(linear_energy(), x) == FP32
    assert Langevin().execution(linear_energy(), x) == Execution(bf16=True)
    # "auto" keeps differentiable chains in fp32: the chain is the fp32 chain exactly.
    energy = linear_energy()
    x0 = torch.rand(2, 48, generator=torch.Generator().manual_seed(6), requires_grad=True)
    runs = [Langevin(n_steps=3, step_size=0.01, precision=p).run(
        energy, x0, generator=torch.Generator().manual_seed(7), create_graph=True)
        for p in ("auto", "fp32")]
    assert torch.equal(runs[0], runs[1])


def test_no_channels_last_on_the_cpu() -> None:
    assert channels_last_format(torch.zeros(2, 3, 4, 4)) is None  # it did not pay here
    assert channels_last_format(torch.zeros(2, 1, 4, 4, 4)) is None


def test_channels_last_is_chosen_by_the_batchs_dimensions_on_cuda() -> None:
    """The choice reads the device type and the dimension count alone: checked without a GPU."""
    cuda = torch.device("cuda")
    assert channels_last_format(SimpleNamespace(device=cuda, dim=lambda: 4)) == (
        torch.channels_last)
    assert channels_last_format(SimpleNamespace(device=cuda, dim=lambda: 5)) == (
        torch.channels_last_3d)
    assert channels_last_format(SimpleNamespace(device=cuda, dim=lambda: 3)) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_channels_last_only_for_image_and_volume_batches_on_cuda() -> None:
    assert channels_last_format(torch.zeros(2, 3, 4, 4, device="cuda")) == torch.channels_last
    assert channels_last_format(
        torch.zeros(2, 1, 4, 4, 4, device="cuda")) == torch.channels_last_3d
    assert channels_last_format(torch.zeros(2, 48, device="cuda")) is None


def test_native_bfloat16_answers_for_the_cpu() -> None:
    assert isinstance(execution.native_bfloat16(torch.device("cpu")), bool)
    assert not execution.auto_may_use_bfloat16(torch.device("cpu"))


def test_devices_it_cannot_ask_about_run_in_fp32_in_the_chains_layout() -> None:
    """Other backends (meta here) have no known way to tell native bfloat16: "auto" stays with
    fp32 there, and the chain keeps its own layout."""
    meta = torch.device("meta")
    assert not execution.native_bfloat16(meta) and not execution.auto_may_use_bfloat16(meta)
    assert channels_last_format(torch.zeros(2, 3, 4, 4, device=meta)) is None


def test_a_verdict_is_kept_per_device(monkeypatch) -> None:
    """The same chains on another device are timed there: a GPU's verdict is no CPU's."""
    auto = pretend_native_and_fast(monkeypatch, 2.0)
    checked = []
    monkeypatch.setattr(auto, "_check", lambda energy, x, **kw: checked.append(x.device) or FP32)
    energy = linear_energy()
    for device in ("cpu", "meta", "cpu", "meta"):
        auto.choose(energy, torch.zeros(2, 48, device=device), step_size=0.01, n_steps=4,
                    noise_scale=1.0)
    assert checked == [torch.device("cpu"), torch.device("meta")]


def test_auto_needs_every_chain_within_the_tolerance(monkeypatch) -> None:
    """bfloat16 is taken only when every chain's error is within the tolerance: one chain
    past it keeps the whole run in fp32, however much faster bfloat16 would be."""
    monkeypatch.setattr(execution, "auto_may_use_bfloat16", lambda device: True)
    monkeypatch.setattr(execution, "bf16_chain_error",
                        lambda *args, **kwargs: torch.tensor([0.0, 1.0]))
    monkeypatch.setattr(execution, "gradient_seconds",
                        lambda energy, x, how, **kwargs: 0.1 if how.bf16 else 1.0)
    chosen = execution.AutoExecution().choose(lambda x: x.flatten(1).sum(1), torch.zeros(2, 3),
                                              step_size=0.01, n_steps=4, noise_scale=1.0)
    assert chosen == execution.FP32


def test_a_chain_run_in_another_layout_is_the_same_chain_returned_contiguous(monkeypatch
                                                                            ) -> None:
    """Where the execution asks for channels_last (CUDA), the network sees that layout, the
    seeded noise is drawn as for a contiguous chain, and the chain comes back contiguous."""
    seen = []

    def energy(x: Tensor) -> Tensor:
        seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return 0.5 * x.pow(2).flatten(1).sum(1)  # its gradient is x, exact in any layout

    x0 = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = Langevin(n_steps=3, step_size=0.1, precision="fp32")
    contiguous = sampler.run(energy, x0, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(Langevin, "execution",
                        lambda self, energy, x: Execution(layout=torch.channels_last))
    seen.clear()
    x = sampler.run(energy, x0, generator=torch.Generator().manual_seed(1))
    assert seen == [True] * 3
    assert x.is_contiguous() and torch.equal(x, contiguous)


@pytest.mark.filterwarnings("ignore:precision='bf16'")  # this CPU may emulate bfloat16
def test_a_differentiable_bf16_chain_evaluates_the_network_in_bfloat16() -> None:
    """precision="bf16" holds for create_graph=True too: the chain is the plain bf16 chain,
    which the bfloat16 gradient (w rounded) moves away from the fp32 one."""
    energy = linear_energy()
    x0 = torch.rand(2, 48, generator=torch.Generator().manual_seed(6))

    def run(precision: str, create_graph: bool) -> Tensor:
        return Langevin(n_steps=3, step_size=0.5, precision=precision).run(
            energy, x0, generator=torch.Generator().manual_seed(7),
            create_graph=create_graph).detach()

    differentiable = run("bf16", True)
    torch.testing.assert_close(differentiable, run("bf16", False), rtol=0, atol=1e-6)
    assert (differentiable - run("fp32", True)).abs().max() > 1e-4
