"""Training: it learns (a Gaussian's moments exactly, a real texture's filter statistics
approximately), it resumes bit-for-bit from its checkpoints, a diverging run is reported, and
gradient accumulation averages its micro-batches. MultiGridTrainer steps every grid on the same
examples, learns, and resumes bit for bit. The checkpoint files themselves are tested in
``test_checkpoint.py``, the loss in ``test_losses.py``, short-run tools in ``test_shortrun.py``.

Everything runs on tiny CPU tensors; the two learning tests take a few seconds each.
"""

from __future__ import annotations

import copy
import errno
import importlib
import math
import re
import threading
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import (GRIDS, assert_same_step_inside_no_grad, gen, make_multigrid_trainer,
                   pattern_images, read_events, tiny_data, tiny_energy)
from torch import Tensor, nn

from stgconv.build import build_chain_start
from stgconv.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from stgconv.config import (ChainConfig, DataConfig, ExperimentConfig, TrainConfig,
                            config_to_dict)
from stgconv.data.image import load_training_images
from stgconv.energy import image_energy, video_energy
from stgconv.energy.base import EnergyModel
from stgconv.energy.compose import ProductOfExperts
from stgconv.io.atomic import WriteError
from stgconv.losses import contrastive_divergence
from stgconv.mcmc import (
    DataStart,
    Langevin,
    MultiGridSampler,
    NoiseInit,
    NoiseStart,
    NonFiniteEnergyError,
    PersistentChains,
)
from stgconv.ops import block_down, nearest_up
from stgconv.train import (
    DESCRIPTOR_ADVICE,
    MULTIGRID_ADVICE,
    DivergenceError,
    MultiGridTrainer,
    Trainer,
)

# --------------------------------------------------------------------------- training learns


class DiagonalGaussian(EnergyModel):
    """``E(x) = 0.5 * sum_i ((x_i - mu_i) / s_i)^2``: the model family holds the data law, and
    maximum likelihood over it is solved by the data's empirical mean and (biased) std."""

    def __init__(self, dim: int) -> None:
        super().__init__(reference_sigma=None)
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_s = nn.Parameter(torch.zeros(dim))

    def response(self, x: Tensor) -> Tensor:
        return -0.5 * ((x - self.mu) / self.log_s.exp()).pow(2).sum(dim=1)


def test_training_recovers_gaussian_mean_and_std() -> None:
    """Fit N(3, 0.5^2) in 2-D from mu = 0, s = 1 with persistent Langevin chains.

    Targets: the ML solution is the data's empirical mean m and std v^(1/2); exact Langevin with
    step delta on a Gaussian of std s has stationary variance 4 s^4 / (4 s^2 - delta^2), so the
    fixed point of training is the s whose *chain* variance equals v:
    s^2 = (v + sqrt(v^2 - v delta^2)) / 2 (0.5 % below sqrt(v) here).
    Tolerances: each iteration's chain moments carry Monte Carlo noise from 2000 chains
    (SE 0.011 for a mean, ~1.6 % for a std), which jitters the parameters by about that much
    around the fixed point once the learning rate is dropped. Over seeds 0-3 the errors were at
    most 0.007 (mean) and 0.7 % (std); the bounds below are 0.04 and 4 %.
    """
    g = gen(0)
    data = 3.0 + 0.5 * torch.randn(2000, 2, generator=g)
    m, v = data.mean(0), data.var(0, unbiased=False)
    delta = 0.1
    s_target = ((v + (v * v - v * delta**2).sqrt()) / 2).sqrt()

    energy = DiagonalGaussian(2)
    trainer = Trainer(
        energy,
        Langevin(n_steps=10, step_size=delta),  # exact: full noise, no clamp
        PersistentChains(2000, NoiseInit("gaussian", 1.0)),
        data,
        train=TrainConfig(batch_size=2000, lr=0.05),
        generator=g,
    )
    trainer.fit(150, progress=False)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.005
    trainer.fit(250, progress=False)

    s = energy.log_s.detach().exp()
    assert (energy.mu.detach() - m).abs().max() < 0.04, (energy.mu, m)
    assert ((s / s_target) - 1).abs().max() < 0.04, (s, s_target)
    # The chains themselves ended up distributed like the data.
    chains = trainer.chains.chains.flatten(0, 1)
    assert (chains.mean(0) - m).abs().max() < 0.06
    assert (chains.std(0) / v.sqrt() - 1).abs().max() < 0.08


def filter_statistics(x: Tensor) -> Tensor:
    """``(5, 3)`` statistics of images ``(B, 1, H, W)``: for the filters identity, horizontal and
    vertical difference, Laplacian and 3x3 box, the mean positive part, mean negative part and
    standard deviation of the responses."""
    bank = torch.stack([
        torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]),
        torch.tensor([[0.0, 0, 0], [-1, 1, 0], [0, 0, 0]]),
        torch.tensor([[0.0, -1, 0], [0, 1, 0], [0, 0, 0]]),
        torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]) / 2,
        torch.full((3, 3), 1 / 9),
    ]).unsqueeze(1)
    r = F.conv2d(x, bank)
    dims = (0, 2, 3)
    return torch.stack([r.relu().mean(dims), (-r).relu().mean(dims), r.std(dim=dims)], dim=1)


def statistics_distance(x: Tensor, observed: Tensor) -> float:
    """Mean relative difference of :func:`filter_statistics`."""
    target = filter_statistics(observed)
    return ((filter_statistics(x) - target).abs() / target.abs().clamp_min(1e-3)).mean().item()


def test_texture_training_matches_filter_statistics() -> None:
    """A small texture net learns the real brick photograph: the samples' filter statistics move
    from those of the chains' start (zeros) and of an untrained model's samples to the photo's.

    The brick's differences are anisotropic (horizontal 0.134, vertical 0.076 std at 48x48), which
    no untrained model's (isotropic noise) samples show, so the ratio is checked on its own.
    Measured with seeds 0-4 after 60 iterations: distance 0.12-0.21 against 0.92-0.95 for the
    untrained samples (0.93 for the zero start); horizontal/vertical std ratio 1.38-1.77 against
    1.00 (observed 1.76).
    """
    size, k = 48, 4
    observed = load_training_images("builtin:brick", kind="texture", size=size, channels=1)
    torch.manual_seed(0)
    energy = image_energy("texture", in_channels=1, layers=[[16, 5, 2], [16, 3, 1]],
                          reference_sigma=0.05)
    sampler = Langevin(n_steps=20, step_size=0.015, clamp=(-1.0, 1.0))
    start = torch.zeros(k, 1, size, size)
    untrained = sampler.run(energy, start, generator=gen(99))
    trainer = Trainer(energy, sampler,
                      PersistentChains(1, NoiseInit("gaussian", 0.0), chains_per_example=k),
                      observed, train=TrainConfig(batch_size=1, lr=0.01), generator=gen(0))
    trainer.fit(60, progress=False)
    samples = trainer.last_samples
    assert samples is not None and samples.shape == (k, 1, size, size)

    d_start = statistics_distance(start, observed)
    d_untrained = statistics_distance(untrained, observed)
    d_trained = statistics_distance(samples, observed)
    assert d_trained < 0.5 * d_untrained, (d_trained, d_untrained)
    assert d_trained < 0.5 * d_start, (d_trained, d_start)

    def anisotropy(x: Tensor) -> float:
        s = filter_statistics(x)[:, 2]
        return (s[1] / s[2]).item()

    assert anisotropy(observed) > 1.6
    assert anisotropy(untrained) < 1.1
    assert anisotropy(samples) > 1.25, anisotropy(samples)


# --------------------------------------------------------------------------- save and resume


MODES = ["noise", "data", "persistent", "buffer"]


def make_trainer(mode: str, *, init_seed: int = 0, accumulate: int = 1, lr: float = 0.01,
                 energy_l2: float = 0.0, betas: tuple[float, float] = (0.5, 0.999)) -> Trainer:
    data = tiny_data()
    chains = build_chain_start(
        # capacity 5 < 4 chains x 2 iterations: the ring buffer wraps before the interruption.
        ChainConfig(mode=mode, chains_per_example=2, init_scale=0.5, data_noise=0.1,
                    buffer_capacity=5, buffer_fresh=0.3),
        data.shape[0],
    )
    sampler = Langevin(n_steps=5, step_size=0.05, clamp=(-1.0, 1.0))
    return Trainer(tiny_energy(init_seed), sampler, chains, data,
                   train=TrainConfig(batch_size=2, accumulate=accumulate, lr=lr,
                                     energy_l2=energy_l2, betas=betas),
                   generator=gen(0), config={"chains": {"mode": mode}})


@pytest.mark.parametrize("mode", ["persistent", "buffer", "multigrid"])
def test_a_fit_keeps_its_statistics_and_chains_as_data(mode: str) -> None:
    """What a run keeps from step to step (the history fit returns, the last samples and data,
    the stored chains) holds no graph: a statistic kept as a tensor (a per-step read put off,
    as the host-traffic changes do) would hold its step's whole graph for the rest of the run."""
    trainer = make_multigrid_trainer() if mode == "multigrid" else make_trainer(mode)
    history = trainer.fit(3, progress=False)
    assert len(history) == 3
    assert all(type(value) is float for stats in history for value in stats.values())
    trainers = trainer.trainers if mode == "multigrid" else [trainer]
    for each in trainers:
        kept = [each.last_samples, each.last_data, *each.chains.state_dict().values()]
        assert all(x.grad_fn is None and not x.requires_grad for x in kept)


def test_cosine_lr_decay_schedules_the_descriptor_trainer() -> None:
    """train.lr_decay cosine: step i runs at lr (1 + cos(pi i / n)) / 2, n = n_iterations."""
    data = tiny_data()
    chains = build_chain_start(ChainConfig(mode="noise", chains_per_example=1), data.shape[0])
    trainer = Trainer(tiny_energy(0), Langevin(n_steps=1, step_size=0.05), chains, data,
                      train=TrainConfig(batch_size=2, lr=0.01, n_iterations=4,
                                        lr_decay="cosine"), generator=gen(0))
    for i in range(3):
        trainer.step()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
            0.005 * (1 + math.cos(math.pi * i / 4)))


def assert_same(a, b, where: str = "state") -> None:
    """Recursive bitwise equality of nested dicts / lists / tensors / plain values."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b.keys())
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


# Both trainers on examples ``data`` (N, 1, 16, 16), their chains started from the data or its
# coarser grid; keywords go to the trainer.
ON_DATA = {
    "Trainer": lambda data, **kw: Trainer(tiny_energy(0), Langevin(n_steps=1, step_size=0.05),
                                          DataStart(), data, **kw),
    "MultiGridTrainer": lambda data, **kw: MultiGridTrainer(
        [tiny_energy(0)], [Langevin(n_steps=1, step_size=0.05)], data, [(1, 1), (16, 16)], **kw),
}


@pytest.mark.parametrize("make", ON_DATA.values(), ids=ON_DATA)
def test_data_that_is_no_tensor_is_refused_by_name(make) -> None:
    """A numpy array of examples failed at its first tensor method ("'numpy.ndarray' object
    has no attribute 'dim'"), naming neither the argument nor the conversion."""
    with pytest.raises(ValueError, match=r"data must be a torch.Tensor, got ndarray \(convert "
                                         r"it first: torch.as_tensor\(data\)\)"):
        make(tiny_data().numpy())


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
@pytest.mark.parametrize("make", ON_DATA.values(), ids=ON_DATA)
def test_data_holding_nan_or_infinity_is_refused_naming_how_much(make, bad: float) -> None:
    """Chains started from such data (or its coarser grid) stopped as chains that "diverged
    at step 0", advising a smaller step size: no setting was at fault."""
    data = tiny_data()
    data[1, 0, 2, :3] = bad
    with pytest.raises(ValueError, match=r"^data holds 3 NaN or infinite values \(of 768\): "
                                         r"training examples must be finite$"):
        make(data)


def test_a_trainer_checks_the_config_it_stores_as_a_config_file_is_checked(
        tmp_path: Path) -> None:
    """A config the CLI would refuse (a misspelt key, a negative lr) was stored as given, and
    reading the checkpoint back (load_model, train --resume) refused it only then, as a config
    "written by a newer version?"; an ExperimentConfig given as it is was stored as an object
    that a checkpoint loaded without executing code cannot hold. Both kinds of trainer refuse
    the first two, naming the key; the third is stored as its settings and read back."""
    data = tiny_data()
    pieces = (tiny_energy(), Langevin(n_steps=2, step_size=0.05), DataStart(), data)
    with pytest.raises(ValueError, match=r"^Trainer\(config=\.\.\.\): unknown config key\(s\) "
                                         r"train\.batch in section 'train'"):
        Trainer(*pieces, config={"train": {"batch": 2}})
    with pytest.raises(ValueError, match=r"^MultiGridTrainer\(config=\.\.\.\): train\.lr must "
                                         r"be positive, got -1"):
        MultiGridTrainer([tiny_energy() for _ in GRIDS[1:]], [Langevin(n_steps=2)] * 2,
                         pattern_images(), GRIDS, config={"train": {"lr": -1}})
    with pytest.raises(ValueError, match=r"^Trainer\(config=\.\.\.\) must be an ExperimentConfig "
                                         r"or a dict of its settings .*got str$"):
        Trainer(*pieces, config="configs/image/texture.yaml")
    config = ExperimentConfig(seed=3, data=DataConfig(size=16))
    trainer = Trainer(*pieces, train=TrainConfig(batch_size=2), config=config)
    assert trainer.config == config_to_dict(config)
    trainer.fit(1, progress=False)
    _, loaded, _ = load_model(trainer.save(tmp_path / "checkpoint.pt"), device="cpu")
    assert (loaded.seed, loaded.data.size) == (3, 16)


@pytest.mark.parametrize("mode", MODES)
def test_save_and_resume_restore_everything(tmp_path: Path, mode: str) -> None:
    trainer = make_trainer(mode)
    trainer.fit(2, progress=False)
    path = trainer.save(tmp_path / "run" / "checkpoint.pt")
    fresh = make_trainer(mode, init_seed=7)
    assert not torch.equal(next(fresh.energy.parameters()), next(trainer.energy.parameters()))
    fresh.resume(tmp_path / "run")  # the run folder is accepted too
    assert fresh.iteration == 2
    assert_same(trainer.state_dict(), fresh.state_dict())
    assert torch.equal(fresh.generator.get_state(), trainer.generator.get_state())
    if mode in ("persistent", "buffer"):
        assert fresh.chains.state_dict(), "the chain state must be in the checkpoint"
    state = load_checkpoint(path)
    assert state["config"] == {"chains": {"mode": mode}}
    assert state["model_config"] == trainer.energy.config


@pytest.mark.parametrize("mode", MODES)
def test_resume_takes_the_same_steps(tmp_path: Path, mode: str) -> None:
    straight = make_trainer(mode)
    straight.fit(4, progress=False)

    first = make_trainer(mode)
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)  # saved at the end
    del first
    second = make_trainer(mode, init_seed=7)
    second.resume(tmp_path / "checkpoint.pt")
    history = second.fit(4, progress=False)
    assert len(history) == 2 and second.iteration == 4

    for (name, a), b in zip(straight.energy.named_parameters(), second.energy.parameters()):
        assert torch.equal(a, b), name
    assert_same(straight.state_dict(), second.state_dict())


class OwnEnergy(nn.Module):
    """A user's energy: an ``nn.Module`` without the ``config`` the built ones carry."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 2, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).flatten(1).mean(1) + x.flatten(1).pow(2).sum(1) / 2


def test_a_trainer_without_a_generator_keeps_off_the_global_rng() -> None:
    """As its docstring says: without a generator a trainer draws from a fresh one at torch's
    fixed seed, so the global RNG is neither read (torch.manual_seed does not reach it: runs
    repeat each other) nor moved on."""
    samples = []
    for seed in (1, 2):
        trainer = Trainer(tiny_energy(0), Langevin(n_steps=2, step_size=0.05),
                          NoiseStart(NoiseInit()), tiny_data(), train=TrainConfig(batch_size=2))
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        trainer.step()
        assert torch.equal(torch.get_rng_state(), before)
        samples.append(trainer.last_samples)
    assert torch.equal(*samples)


def test_an_energy_of_the_users_own_saves_and_resumes(tmp_path: Path) -> None:
    """Its trainer failed at the first checkpoint, after the training ("'OwnEnergy' object has
    no attribute 'config'")."""
    def own_trainer(seed: int) -> Trainer:
        return Trainer(OwnEnergy(seed), Langevin(n_steps=2, step_size=0.05), DataStart(),
                       tiny_data(), train=TrainConfig(batch_size=2), generator=gen(0))

    straight = own_trainer(0)
    straight.fit(2, progress=False)
    first = own_trainer(0)
    first.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    second = own_trainer(7)
    second.resume(tmp_path / "checkpoint.pt")
    second.fit(2, progress=False)
    assert_same(straight.energy.state_dict(), second.energy.state_dict())
    # Not rebuilt from the checkpoint alone: said so, not as a ConvNet missing its arguments.
    with pytest.raises(CheckpointError, match="a model of the caller's own"):
        load_model(tmp_path / "checkpoint.pt", device="cpu")


@pytest.mark.parametrize(("batches", "message"), [
    (torch.tensor([0, 1]), r"batches must be a non-empty list of micro-batches, each dataset "
                           r"indices \(batch_size,\) \(e\.g\. \[indices\]\), got Tensor"),
    ([], r"batches must be a non-empty list of micro-batches, .*, got an empty list$"),
    ([torch.tensor([0, 3])], r"micro-batch 0 holds indices outside \[0, 3\) \(the training "
                             r"data's 3 examples\)"),
    ([[0, 1], [-1]], r"micro-batch 1 holds indices outside \[0, 3\)"),
    ([torch.tensor([0.0, 1.0])], r"micro-batch 0 must be integer dataset indices of shape "
                                 r"\(batch_size,\), got torch.float32 of shape \(2,\)"),
    ([torch.tensor([[0, 1]])], r"got torch.int64 of shape \(1, 2\)"),
], ids=["one-tensor", "empty", "past-the-end", "negative", "float", "2-d"])
def test_step_names_batches_that_are_no_micro_batches_of_indices(batches, message: str) -> None:
    """One tensor of indices was taken as that many micro-batches of one example, failing as an
    input "of shape (1, 16, 16)"; an index past the data failed in torch's indexing words. The
    weights stay as they were."""
    trainer = Trainer(tiny_energy(), Langevin(n_steps=2, step_size=0.05), DataStart(),
                      tiny_data(), train=TrainConfig(batch_size=2), generator=gen(0))
    weights = copy.deepcopy(trainer.energy.state_dict())
    with pytest.raises(ValueError, match=message):
        trainer.step(batches)
    assert_same(weights, trainer.energy.state_dict())
    assert trainer.iteration == 0
    # Lists and arrays of integers are indices too, as draw_batches' tensors are.
    trainer.step([[0, 1], np.array([2, 0])])
    assert trainer.iteration == 1


@pytest.mark.parametrize("kept", [5, 2])
def test_persistent_chains_kept_for_another_number_of_examples_are_refused(kept: int) -> None:
    """Five kept for three examples trained two that never ran, without a word; two failed at
    the first batch that drew the third example."""
    with pytest.raises(ValueError, match=rf"^the persistent chains are kept for {kept} examples, "
                                         r"the data has 3: build PersistentChains\(3, \.\.\.\)"):
        Trainer(tiny_energy(), Langevin(n_steps=2), PersistentChains(kept, NoiseInit()),
                tiny_data())
    Trainer(tiny_energy(), Langevin(n_steps=2), PersistentChains(3, NoiseInit()), tiny_data())


def test_a_cosine_schedule_refuses_iterations_past_its_end() -> None:
    """fit(4) of a trainer built for 2 cosine iterations took iterations 3 and 4 at rates
    climbing back to lr; now refused before any step, and a step() past it changes nothing."""
    trainer = Trainer(tiny_energy(), Langevin(n_steps=2, step_size=0.05), DataStart(),
                      tiny_data(), train=TrainConfig(batch_size=2, n_iterations=2,
                                                     lr_decay="cosine"), generator=gen(0))
    past = r"training to iteration {} runs past n_iterations=2, where the cosine learning-rate"
    with pytest.raises(ValueError, match=past.format(4)):
        trainer.fit(4, progress=False)
    assert trainer.iteration == 0
    trainer.fit(2, progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.lr / 2)
    weights = copy.deepcopy(trainer.energy.state_dict())
    with pytest.raises(ValueError, match=past.format(3)):
        trainer.step()
    assert trainer.iteration == 2
    assert_same(weights, trainer.energy.state_dict())


def test_a_multigrid_cosine_schedule_refuses_iterations_past_its_end_before_any_step() -> None:
    """MultiGridTrainer had no length check of its own: fit(4) of one built for 2 cosine
    iterations took 2 steps, then its grids refused the third, advising n_iterations=3."""
    energies = [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]) for _ in range(2)]
    trainer = MultiGridTrainer(energies, [Langevin(n_steps=1, step_size=0.05)] * 2,
                               pattern_images(), GRIDS, generator=gen(0),
                               train=TrainConfig(batch_size=2, n_iterations=2,
                                                 lr_decay="cosine"))
    with pytest.raises(ValueError, match=r"training to iteration 4 runs past n_iterations=2"):
        trainer.fit(4, progress=False)
    assert trainer.iteration == 0 and [t.iteration for t in trainer.trainers] == [0, 0]


def product(weight: float, sigma: float) -> ProductOfExperts:
    """A product of a texture ConvNet and a user's own energy; seeded, so two are the same."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        convnet = image_energy("texture", in_channels=1, layers=[[2, 5, 2]],
                               reference_sigma=sigma)
    return ProductOfExperts([convnet, OwnEnergy(0)], weights=[1.0, weight])


@pytest.mark.parametrize(("weight", "sigma", "differing"),
                         [(0.5, 1.0, "product_of_experts.weights"),
                          (1.0, 0.5, "product_of_experts.experts")],
                         ids=["weights", "an-experts-sigma"])
def test_a_product_of_experts_resumes_only_into_the_same_product(
        tmp_path: Path, weight: float, sigma: float, differing: str) -> None:
    """The product had no config, so its checkpoints stored none, and a resume into one of
    other weights, or of an expert with another reference sigma, went on without a word."""
    def trainer(energy: ProductOfExperts) -> Trainer:
        return Trainer(energy, Langevin(n_steps=2, step_size=0.05), DataStart(), tiny_data(),
                       train=TrainConfig(batch_size=2), generator=gen(0))

    trainer(product(1.0, 1.0)).fit(1, checkpoint_path=tmp_path / "checkpoint.pt",
                                   progress=False)
    same = trainer(product(1.0, 1.0))
    same.resume(tmp_path / "checkpoint.pt")
    assert same.iteration == 1
    other = trainer(product(weight, sigma))
    before = copy.deepcopy(other.energy.state_dict())
    with pytest.raises(ValueError, match=f"another network than this config builds "
                                         rf"\(differing: {differing}\)"):
        other.resume(tmp_path / "checkpoint.pt")
    assert_same(before, other.energy.state_dict())
    # Its callables are the caller's: not rebuilt from the checkpoint, and said so.
    with pytest.raises(CheckpointError, match="a model of the caller's own"):
        load_model(tmp_path / "checkpoint.pt", device="cpu")


@pytest.mark.parametrize(("energy", "got"), [(lambda x: x.flatten(1).pow(2).sum(1), "function"),
                                             (nn.Flatten(), "an nn.Module without parameters")],
                         ids=["function", "no-parameters"])
def test_an_energy_with_nothing_to_learn_is_refused_by_name(energy, got: str) -> None:
    """A function failed in Adam's setup ("'function' object has no attribute 'parameters'"),
    a module without parameters in Adam ("optimizer got an empty parameter list")."""
    with pytest.raises(ValueError, match=f"the energy to train must be an nn.Module with "
                                         f"parameters, got {got}"):
        Trainer(energy, Langevin(n_steps=2), DataStart(), tiny_data())


def test_a_resume_uses_its_own_learning_rate(tmp_path: Path) -> None:
    """Adam's moments come from the checkpoint; the learning rate and betas from the resuming
    run's config (else --set train.lr=... on a resume would be silently ignored)."""
    first = make_trainer("persistent")
    first.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    second = make_trainer("persistent", lr=0.001, betas=(0.9, 0.99))
    second.resume(tmp_path / "checkpoint.pt")
    assert [(g["lr"], g["betas"]) for g in second.optimizer.param_groups] == [(0.001, (0.9, 0.99))]
    assert_same(second.optimizer.state_dict()["state"], first.optimizer.state_dict()["state"])


@pytest.mark.parametrize("edit, reason", [
    (lambda state: {**state, "model": {}}, "Missing key"),
    (lambda state: {k: v for k, v in state.items() if k != "optimizer"}, "'optimizer'"),
    (lambda state: {**state, "iteration": None}, "int\\(\\) argument"),
], ids=["weights of another net", "no optimizer state", "no iteration count"])
def test_a_checkpoint_missing_what_a_resume_needs_is_refused_naming_the_file(
        tmp_path: Path, edit, reason: str) -> None:
    """A load error of torch's (RuntimeError), a key the checkpoint lacks (KeyError) or a
    value of the wrong type (TypeError) is a CheckpointError naming the file, as the
    command line reports it in one line."""
    trainer = make_trainer("noise")
    trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    path = save_checkpoint(edit(load_checkpoint(tmp_path / "checkpoint.pt")),
                           tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=rf"(?s)cannot resume from .*other\.pt: .*{reason}"):
        make_trainer("noise").resume(path)


def test_a_run_resumed_on_another_kind_of_device_reseeds_with_a_warning(tmp_path: Path
                                                                        ) -> None:
    """A CUDA generator's state (16 bytes: seed and offset) cannot set a CPU one: the run
    continues from a stream seeded from the iteration, the same on every such resume."""
    first = make_trainer("persistent")
    first.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["generator"] = torch.zeros(16, dtype=torch.uint8)  # as a CUDA run writes it
    save_checkpoint(state, tmp_path / "cuda" / "checkpoint.pt")
    generators = []
    for _ in range(2):
        resumed = make_trainer("persistent")
        with pytest.warns(UserWarning, match="another kind of generator's than this cpu one"):
            resumed.resume(tmp_path / "cuda" / "checkpoint.pt")
        assert resumed.iteration == 1
        assert_same(resumed.energy.state_dict(), first.energy.state_dict())
        resumed.step()
        generators.append(resumed.generator.get_state())
    assert torch.equal(*generators)


def test_fit_writes_periodic_checkpoints(tmp_path: Path) -> None:
    trainer = make_trainer("persistent")
    seen = []

    def record(t: Trainer, stats: dict[str, float]) -> None:
        path = tmp_path / "checkpoint.pt"
        seen.append(load_checkpoint(path)["iteration"] if path.exists() else None)

    # on_iteration runs before that iteration's checkpoint is written.
    trainer.fit(3, checkpoint_path=tmp_path / "checkpoint.pt", checkpoint_every=2,
                on_iteration=record, progress=False)
    assert seen == [None, None, 2]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 3
    # The checkpoint it replaced is kept, and no temporary file is left.
    assert load_checkpoint(tmp_path / "checkpoint_previous.pt")["iteration"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint_previous.pt"]


@pytest.mark.parametrize("kwargs, message", [
    ({"n_iterations": 2.5}, "n_iterations must be an int >= 0, got 2.5"),
    ({"n_iterations": -1}, "n_iterations must be an int >= 0, got -1"),
    ({"n_iterations": 2, "checkpoint_every": -1}, "checkpoint_every must be an int >= 0, got -1"),
])
def test_fit_refuses_counts_that_are_not_whole_numbers(kwargs: dict, message: str) -> None:
    """fit(2.5) trained 3 iterations and fit(-1) none, and a negative checkpoint_every wrote no
    periodic checkpoint, each without a word."""
    trainer = make_trainer("noise")
    with pytest.raises(ValueError, match=f"^{message}$"):
        trainer.fit(**kwargs, progress=False)
    assert trainer.iteration == 0


def test_on_iteration_is_handed_each_iterations_statistics() -> None:
    seen: list[dict[str, float]] = []
    history = make_trainer("noise").fit(3, on_iteration=lambda _, stats: seen.append(stats),
                                        progress=False)
    assert seen == history and seen[0] != seen[2]


def test_a_tensorboard_event_that_cannot_be_written_stops_fit_naming_the_folder(
        tmp_path: Path, monkeypatch) -> None:
    """tensorboard writes from its own thread: an event it failed to write after the writer's
    last call (the disk full by then) was printed as that thread's traceback and raised again
    naming no file. Now one error names the folder."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    log_dir = tmp_path / "tb"

    def full_by_the_time_it_is_written(*_: object) -> None:
        time.sleep(0.05)  # the writer's last call has returned
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_full_from_now(writer, _: Trainer) -> None:
        monkeypatch.setattr(RecordWriter, "write", full_by_the_time_it_is_written)
        writer.add_scalar("samples/volume_fraction", 0.5, 1)

    with pytest.raises(WriteError, match=re.escape(
            f"No space left on device (TensorBoard events): '{log_dir}'")):
        make_trainer("persistent").fit(1, log_dir=log_dir, progress=False,
                                       on_log=disk_full_from_now)
    assert thread_errors == []


@pytest.mark.parametrize("killed_at, every", [(3, 2), (2, 1)],
                         ids=["resumed at 2", "resumed at 1"])
def test_a_resumed_run_logs_each_iteration_once(tmp_path: Path, killed_at: int,
                                                every: int) -> None:
    """Iterations a killed run logged after its last checkpoint are taken again on resume;
    TensorBoard shows the resumed run's values for them, not both."""
    def kill(trainer: Trainer, _: dict) -> None:
        if trainer.iteration == killed_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_trainer("persistent").fit(4, checkpoint_path=tmp_path / "checkpoint.pt",
                                       checkpoint_every=every, log_dir=tmp_path / "tb",
                                       on_iteration=kill, progress=False)
    # TensorBoard reads event files in name order, which is the second they were opened, then
    # a per-process counter compared as text ("10" before "9"): a resume within the killed
    # run's second (a real resume comes later) could be read first.
    time.sleep(1.01 - time.time() % 1)
    resumed = make_trainer("persistent", lr=0.001)
    resumed.resume(tmp_path / "checkpoint.pt")
    history = resumed.fit(4, log_dir=tmp_path / "tb", progress=False)
    logged = [(e.step, e.value) for e in read_events(tmp_path / "tb").Scalars("train/loss")]
    assert [step for step, _ in logged] == [1, 2, 3, 4]
    resumed_at = 4 - len(history)
    assert [value for _, value in logged[resumed_at:]] == pytest.approx([s["loss"]
                                                                         for s in history])


def test_resume_rejects_chains_of_another_run(tmp_path: Path) -> None:
    """Chains of another count are refused, and the refusal changes nothing: a caller who
    catches it and trains on must not train from the checkpoint's weights and moments."""
    trainer = make_trainer("persistent")
    trainer.fit(1, progress=False)
    trainer.save(tmp_path / "checkpoint.pt")
    other = make_trainer("persistent")
    other.chains = PersistentChains(3, NoiseInit(), chains_per_example=4)
    before = [p.clone() for p in other.energy.parameters()]
    with pytest.raises(ValueError, match=r"\(2 for each of 3 training examples\), expected "
                                         r"\(3, 4, ...\): the run that saved them had another "
                                         r"number of training examples or of chains per example"):
        other.resume(tmp_path / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, other.energy.parameters()))
    assert not other.optimizer.state and other.iteration == 0


@pytest.mark.parametrize("saved, resumed", [("buffer", "persistent"), ("persistent", "buffer"),
                                            ("persistent", "noise")])
def test_a_resume_that_drops_the_checkpoints_chains_says_so(tmp_path: Path, saved: str,
                                                            resumed: str) -> None:
    """Resumed with another chains.mode, the run's chains start afresh: said, not silent."""
    trainer = make_trainer(saved)
    trainer.fit(1, progress=False)
    trainer.save(tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match=r"training chains \((chains|samples, next)\) are not "
                                         r"of this run's chains\.mode"):
        make_trainer(resumed).resume(tmp_path / "checkpoint.pt")


def test_a_resume_of_chains_that_keep_nothing_says_nothing(tmp_path: Path) -> None:
    """Only chains the checkpoint holds and this run drops are worth a warning."""
    make_trainer("noise").fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_trainer("noise").resume(tmp_path / "checkpoint.pt")


OTHER_SHAPE = r"\(another data.size.* no --set that changes it"


@pytest.mark.parametrize("data, said", [
    (tiny_data(size=12), r"chains are of shape \(1, 16, 16\), this run's examples \(1, 12, 12\) "
     + OTHER_SHAPE),
    (tiny_data().expand(-1, 3, -1, -1), r"chains are of shape \(1, 16, 16\), this run's examples "
     r"\(3, 16, 16\) " + OTHER_SHAPE),
    (tiny_data().double(), r"chains are torch.float32, this run's examples torch.float64: train "
     r"on examples of the checkpoint's dtype \(data.to\(torch.float32\)\)"),
], ids=["data.size", "data.channels", "data.dtype"])
@pytest.mark.parametrize("mode", ["persistent", "buffer"])
def test_resume_refuses_chains_of_other_examples_before_loading(tmp_path: Path, mode: str,
                                                                data: Tensor, said: str) -> None:
    """A texture net takes any size, so only the chains tell that data.size changed; the
    refusal says so before anything is loaded (it was a shape error at the next step). Float32
    chains resumed into a float64 run were loaded without a word, and the first step failed:
    the network's check named an ``x`` the caller never passed, a buffer refused the chains it
    had run itself."""
    trainer = make_trainer(mode)
    trainer.fit(1, progress=False)
    trainer.save(tmp_path / "checkpoint.pt")
    other = make_trainer(mode, init_seed=3)
    other.data = data
    other.energy.to(data.dtype)
    before = [p.clone() for p in other.energy.parameters()]
    with pytest.raises(CheckpointError, match=said):
        other.resume(tmp_path / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, other.energy.parameters()))


def test_checkpoint_every_without_a_checkpoint_path_is_refused_before_the_first_step() -> None:
    """fit(4, checkpoint_every=2) without a path trained to the end and saved nothing."""
    trainer = make_trainer("noise")
    with pytest.raises(ValueError, match=r"^checkpoint_every=2 writes checkpoints to "
                                         r"checkpoint_path, which is None: give checkpoint_path"):
        trainer.fit(4, checkpoint_every=2, progress=False)
    assert trainer.iteration == 0


def test_a_checkpoint_path_that_is_a_folder_is_refused_before_the_first_step(tmp_path: Path
                                                                             ) -> None:
    """A run's folder given for the checkpoint failed with IsADirectoryError at the first
    checkpoint, after the training up to it (the whole fit's, with no periodic one)."""
    trainer = make_trainer("noise")
    with pytest.raises(ValueError, match=rf"^checkpoint_path {re.escape(str(tmp_path))} is a "
                                         r"folder, not a file$"):
        trainer.fit(2, checkpoint_path=tmp_path, progress=False)
    # Path() drops a final separator: "runs/new/" was trained into a file named new.
    with pytest.raises(ValueError, match=r"^checkpoint_path .*new/ ends in '/', a folder"):
        trainer.fit(2, checkpoint_path=f"{tmp_path / 'new'}/", progress=False)
    assert trainer.iteration == 0 and list(tmp_path.iterdir()) == []


def test_a_fit_to_an_iteration_the_trainer_is_past_is_refused(tmp_path: Path) -> None:
    """A trainer resumed at iteration 2 and asked for fit(1), one more iteration as its caller
    thought, trained nothing and wrote no checkpoint, without a word."""
    trainer = make_trainer("noise")
    trainer.fit(2, progress=False)
    with pytest.raises(ValueError, match=r"this trainer is at iteration 2, past n_iterations=1: "
                                         r"for 1 more, fit\(3\)$"):
        trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    assert trainer.iteration == 2 and list(tmp_path.iterdir()) == []
    assert trainer.fit(2, progress=False) == []  # already there: nothing to do, nothing said


def test_a_buffer_resumed_from_a_larger_one_keeps_its_capacity() -> None:
    """The first ``capacity`` (5) samples of a checkpoint's larger buffer, as a run of more
    processes would hand them on, not a refusal."""
    trainer = make_trainer("buffer")
    trainer.fit(2, progress=False)
    state = trainer.state_dict()
    held = torch.cat([state["chains"]["samples"]] * 2)
    other = make_trainer("buffer")
    other.load_state_dict({**state, "chains": {"samples": held, "next": torch.tensor(0)}})
    assert torch.equal(other.chains.state_dict()["samples"], held[:5])


# --------------------------------------------------------------------------- failures


def test_diverging_training_is_reported() -> None:
    trainer = make_trainer("persistent")
    with torch.no_grad():
        next(trainer.energy.parameters()).fill_(math.nan)
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.step()


@pytest.mark.parametrize("cause", ["weights", "energies"])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cause: str) -> None:
    path = tmp_path / "checkpoint.pt"
    trainer = make_trainer("persistent")
    trainer.fit(2, checkpoint_path=path, checkpoint_every=1, progress=False)
    if cause == "weights":  # Adam's first steps move every weight by about lr
        for group in trainer.optimizer.param_groups:
            group["lr"] = 1e30
    else:
        monkeypatch.setattr("stgconv.train.MAX_ABS_ENERGY", 0.0)
    with pytest.raises(DivergenceError, match=r"diverged at iteration 3: .* past the bound of "
                                              r".*checkpoint\.pt keeps iteration 2"):
        trainer.fit(5, checkpoint_path=path, checkpoint_every=1, progress=False)
    assert load_checkpoint(path)["iteration"] == 2
    assert load_checkpoint(tmp_path / "checkpoint_previous.pt")["iteration"] == 1


@pytest.mark.parametrize("into", ["other.pt", None], ids=["another file", "no file"])
def test_a_resumed_run_that_diverges_before_its_own_checkpoint_names_the_one_it_resumed_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into: str | None) -> None:
    """Resumed from a.pt, fitting into another file (or none) and diverging in its first step:
    the last good model is a.pt's iteration 2; the file it fits into holds nothing yet."""
    make_trainer("persistent").fit(2, checkpoint_path=tmp_path / "a.pt", progress=False)
    resumed = make_trainer("persistent")
    resumed.resume(tmp_path / "a.pt")
    monkeypatch.setattr("stgconv.train.MAX_ABS_ENERGY", 0.0)
    with pytest.raises(DivergenceError, match=rf"diverged at iteration 3: .*"
                                              rf"{re.escape(str(tmp_path / 'a.pt'))} keeps "
                                              rf"iteration 2, the last good model"):
        resumed.fit(4, checkpoint_path=into and tmp_path / into, progress=False)
    assert not (tmp_path / "other.pt").exists()


def test_a_model_that_diverged_in_its_last_update_is_never_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step's statistics are measured before its update: an update that sends the energies
    past their bound (weights still within theirs) is caught before the checkpoint, which
    keeps the model before it."""
    path = tmp_path / "checkpoint.pt"
    trainer = make_trainer("persistent")
    trainer.fit(2, checkpoint_path=path, checkpoint_every=1, progress=False)
    with torch.no_grad():
        typical = trainer.energy(trainer.last_data).abs().max().item()
    monkeypatch.setattr("stgconv.train.MAX_ABS_ENERGY", 100 * typical)
    step = trainer.step

    def exploding_step() -> dict[str, float]:
        stats = step()
        with torch.no_grad():
            for parameter in trainer.energy.parameters():
                parameter.mul_(10.0)  # every layer: energies grow ~10^depth, weights 10x
        return stats

    monkeypatch.setattr(trainer, "step", exploding_step)
    with pytest.raises(DivergenceError, match=r"iteration 3: the updated model's energy .* past "
                                              r"the bound .*checkpoint\.pt keeps iteration 2"):
        trainer.fit(5, checkpoint_path=path, checkpoint_every=1, progress=False)
    assert load_checkpoint(path)["iteration"] == 2


def test_a_multigrid_model_diverged_on_its_coarsest_grid_is_never_saved(monkeypatch) -> None:
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    with torch.no_grad():
        typical = max(energy(x).abs().max().item() for energy, x in trainer.probes())
        for parameter in trainer.trainers[0].energy.parameters():
            parameter.mul_(100.0)
    monkeypatch.setattr("stgconv.train.MAX_ABS_ENERGY", 100 * typical)
    with pytest.raises(DivergenceError, match="the updated model's energy"):
        trainer.check_saved_model()


def test_multigrid_divergence_is_caught_on_every_grid(tmp_path: Path) -> None:
    trainer = make_multigrid_trainer()
    for group in trainer.trainers[0].optimizer.param_groups:  # the coarsest grid only
        group["lr"] = 1e30
    with pytest.raises(DivergenceError, match=r"iteration 1: weight grid1/\S+ is 1e\+30, .*no "
                                              r"checkpoint was written") as info:
        trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()
    # A grid whose own sampler section sets step_size reads no sampler.step_size, which was
    # the advice.
    assert "multigrid.grids[i].sampler.step_size" in str(info.value)


def test_a_single_model_divergence_names_the_shared_step_size() -> None:
    """One model's run has no multigrid.grids[i] to name (the multigrid advice)."""
    trainer = make_trainer("persistent")
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e30
    with pytest.raises(DivergenceError) as info:
        trainer.fit(1, progress=False)
    assert str(info.value).endswith(f"({DESCRIPTOR_ADVICE})"), info.value
    assert info.value.advice == DESCRIPTOR_ADVICE  # kept on the error fit raises


def test_a_multigrid_run_whose_energies_diverge_names_the_grids_step_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An energy past its bound names no weight to take advice from: the run's own advice,
    a grid's step size, not the shared sampler.step_size a grid of its own may not read."""
    trainer = make_multigrid_trainer()
    monkeypatch.setattr("stgconv.train.MAX_ABS_ENERGY", 0.0)
    with pytest.raises(DivergenceError, match="past the bound") as info:
        trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    assert str(info.value).endswith(f"({MULTIGRID_ADVICE})"), info.value


def test_trainer_rejects_bad_data() -> None:
    for data in (torch.zeros(5), torch.zeros(0, 1, 4, 4)):
        with pytest.raises(ValueError, match=r"\(N, \*S\) with N >= 1"):
            Trainer(tiny_energy(), Langevin(), PersistentChains(1, NoiseInit()), data)
    # Images as they come from a file: the first step failed naming the chain start or noise
    # ("noise is drawn in a floating point dtype, got torch.uint8"), not the data.
    for dtype in (torch.uint8, torch.int64):
        with pytest.raises(ValueError, match=rf"data must be floating point examples, got "
                                             rf"{dtype}"):
            Trainer(tiny_energy(), Langevin(), PersistentChains(2, NoiseInit()),
                    tiny_data(2).to(dtype))


@pytest.mark.parametrize("sampler, chains, said", [
    (Langevin(n_steps=1), NoiseInit(), r"chains must be a chain start \(NoiseStart, DataStart, "
     r"PersistentChains, ReplayBuffer, \.\.\.\), got NoiseInit \(which says where fresh chains "
     r"start: pass NoiseStart\(NoiseInit\(\.\.\.\)\), or PersistentChains or ReplayBuffer"),
    (NoiseInit(), Langevin(n_steps=1), r"sampler must be a sampler \(Langevin, MALA, HMC: an "
     r"object with run\), got NoiseInit$"),
    (Langevin(n_steps=1), None, r"chains must be a chain start .*\), got NoneType$"),
], ids=["init for start", "swapped", "none"])
def test_a_chain_init_or_swapped_pieces_are_refused_naming_what_to_pass(sampler, chains,
                                                                       said: str) -> None:
    """A NoiseInit (where fresh chains start) given for NoiseStart(NoiseInit()), or the sampler
    and the chains swapped, failed as "'NoiseInit' object has no attribute
    'chains_per_example'"."""
    with pytest.raises(ValueError, match="^" + said):
        Trainer(tiny_energy(), sampler, chains, tiny_data())


@pytest.mark.parametrize("make", ON_DATA.values(), ids=ON_DATA)
def test_train_settings_given_as_a_dict_are_refused_naming_the_section(make) -> None:
    """They failed at their first read, as "'dict' object has no attribute 'batch_size'"."""
    with pytest.raises(ValueError, match=r"^train must be a TrainConfig \(TrainConfig\(\*\*"
                                         r"settings\) for a dict of them\) or None, got dict$"):
        make(tiny_data(), train={"lr": 0.1})


def test_data_of_another_dtype_than_the_net_is_refused_naming_the_data() -> None:
    """Clips from numpy (float64) beside a float32 video net: the first step's chains were
    refused as "expected x of dtype torch.float32", an x the caller never passed; a multi-grid
    trainer's alike. The step names the data; converted since, the model trains."""
    clips = torch.rand(1, 3, 4, 10, 10, dtype=torch.float64)
    said = (r"^expected data of dtype torch.float32 \(the network's\), got torch.float64: "
            r"convert it \(data.to\(torch.float32\)\) or the model")
    trainer = Trainer(video_energy("st_small"), Langevin(n_steps=1),
                      PersistentChains(1, NoiseInit()), clips)
    with pytest.raises(ValueError, match=said):
        trainer.step()
    energies = [video_energy("fc_s_small", frame_size=(n, n)) for n in (5, 10)]
    multigrid = MultiGridTrainer(energies, [Langevin(n_steps=1)] * 2, clips,
                                 [(1, 1, 1), (2, 5, 5), (4, 10, 10)])
    with pytest.raises(ValueError, match=said):
        multigrid.step()
    trainer.energy.double()
    assert math.isfinite(trainer.step()["loss"]) and trainer.iteration == 1


def test_multigrid_trainer_rejects_integer_data_naming_it() -> None:
    """It failed in block_down, naming that function's argument x, not data."""
    energies = [tiny_energy() for _ in GRIDS[1:]]
    with pytest.raises(ValueError, match=r"data must be floating point examples, got "
                                         r"torch.uint8"):
        MultiGridTrainer(energies, [Langevin()] * len(energies),
                         pattern_images().to(torch.uint8), GRIDS)


def test_data_of_the_callers_graph_trains_as_data() -> None:
    """Data computed from a tensor that requires grad (a notebook's normalisation of it) failed
    in the second step ("Trying to backward through the graph a second time"), a multi-grid
    trainer's already in its first step (the grids' levels shared the graph), and the caller's
    tensor gathered every step's gradient in its .grad."""
    raw = tiny_data(4).requires_grad_(True)
    trainer = Trainer(tiny_energy(), Langevin(n_steps=1), PersistentChains(4, NoiseInit()),
                      raw * 1.0, train=TrainConfig(batch_size=2), generator=gen(0))
    trainer.step()
    trainer.step()
    leaf = Trainer(tiny_energy(), Langevin(n_steps=1), PersistentChains(4, NoiseInit()), raw,
                   train=TrainConfig(batch_size=2), generator=gen(0))
    leaf.step()
    images = pattern_images().requires_grad_(True)
    grids = MultiGridTrainer(
        [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]) for _ in range(2)],
        [Langevin(n_steps=1)] * 2, images * 1.0, [(1, 1), (4, 4), (8, 8)],
        train=TrainConfig(batch_size=2), generator=gen(0))
    grids.step()
    assert raw.grad is None and images.grad is None
    assert not grids.state_dict()["base"].requires_grad  # saved as data, not the graph's


def test_a_batch_larger_than_the_data_is_the_data() -> None:
    """The batch size weighs each rank's statistics and gradients: it counts the examples a
    micro-batch really has."""
    data = tiny_data(n=3)
    trainer = Trainer(tiny_energy(), Langevin(n_steps=1), PersistentChains(3, NoiseInit()), data,
                      train=TrainConfig(batch_size=64), generator=gen(0))
    assert trainer.batch_size == 3 and [len(b) for b in trainer.draw_batches()] == [3]


def test_chains_too_many_for_memory_are_refused_before_training() -> None:
    """A micro-batch's chains are batch_size x chains_per_example examples: 8 of 2^26 entries
    are past the limit of 2^28 that 4 examples alone are not."""
    data = torch.zeros(()).expand(4, 1, 2**13, 2**13)  # a view: no memory behind it
    with pytest.raises(ValueError, match=r"a batch of 4 examples with 2 chains each .* over the "
                                         r"limit"):
        Trainer(tiny_energy(), Langevin(), DataStart(chains_per_example=2), data,
                train=TrainConfig(batch_size=4))


def test_log_norms_writes_each_weights_norm_and_its_last_gradients() -> None:
    trainer = make_trainer("persistent")
    trainer.step()
    scalars = {}

    class Writer:
        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars[tag] = (value, step)

    trainer.log_norms(Writer())
    for name, parameter in trainer.energy.named_parameters():
        assert scalars[f"weights/{name}"] == (pytest.approx(parameter.norm().item()), 1)
        assert scalars[f"gradients/{name}"] == (pytest.approx(parameter.grad.norm().item()), 1)


def test_a_nan_weight_or_energy_after_an_update_is_divergence(tmp_path: Path,
                                                              monkeypatch) -> None:
    """NaN compares false with every bound: it must still count as past it."""
    trainer = make_trainer("persistent")
    trainer.fit(1, progress=False)
    monkeypatch.setattr(trainer, "probes",
                        lambda: [(lambda x: torch.full((len(x),), math.nan), trainer.last_data)])
    with pytest.raises(DivergenceError, match="the updated model's energy .* is nan"):
        trainer.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()
    with torch.no_grad():
        next(trainer.energy.parameters()).view(-1)[0] = math.nan
    with pytest.raises(DivergenceError, match=r"weight \S+ is nan"):
        trainer.check_divergence({})


def test_the_saved_model_check_reads_the_steps_samples_too() -> None:
    """Samples far from the data, where the updated model's energy overflows while it stays
    finite at the data, are divergence."""
    trainer = make_trainer("persistent")
    trainer.fit(1, progress=False)
    trainer.check_saved_model()
    trainer.last_samples = torch.full_like(trainer.last_samples, 1e30)
    with pytest.raises(DivergenceError, match="the updated model's energy at the step's data or "
                                              "samples is inf"):
        trainer.check_saved_model()


def test_a_chain_that_diverges_on_a_grid_names_that_grid() -> None:
    trainer = make_multigrid_trainer()
    with torch.no_grad():
        next(trainer.trainers[0].energy.parameters()).fill_(math.nan)
    with pytest.raises(NonFiniteEnergyError, match=r"Langevin on grid 1 \(4x4\)"):
        trainer.step()


class DivergingOnce:
    """A sampler whose first run raises as a diverging chain does; later runs are ``sampler``'s
    (as the same step retried with a smaller step size would run)."""

    def __init__(self, sampler: Langevin) -> None:
        self.sampler, self.n_steps, self.failed = sampler, sampler.n_steps, False

    def run(self, energy, x0, **kw) -> Tensor:
        if not self.failed:
            self.failed = True
            raise NonFiniteEnergyError("Langevin", 0, self.n_steps, [1])
        return self.sampler.run(energy, x0, **kw)


@pytest.mark.parametrize("mode", ["persistent", "buffer"])
def test_a_step_stopped_by_a_diverging_chain_changes_no_weight(mode: str) -> None:
    """What fit's and step's docstrings promise a caller who retries with a smaller step size:
    the weights, Adam's state, the stored chains and the iteration as they were."""
    trainer = make_trainer(mode)
    trainer.fit(1, progress=False)
    before = copy.deepcopy(trainer.state_dict())
    trainer.sampler = DivergingOnce(trainer.sampler)
    with pytest.raises(NonFiniteEnergyError):
        trainer.fit(2, progress=False)
    after = trainer.state_dict()
    del before["generator"], after["generator"]  # the retry draws afresh
    assert_same(before, after)
    assert len(trainer.fit(2, progress=False)) == 1 and trainer.iteration == 2


def test_a_multigrid_step_stopped_on_a_grid_moves_no_grid(tmp_path: Path) -> None:
    """A chain diverging on the finest grid stopped the step after the coarser grids had taken
    their update: retried (after a smaller step size, as the error advises), those grids took
    a second one, and stayed a step ahead of the others in weights, Adam's state and iteration,
    in every later checkpoint too. (And last_samples mixed the stopped step's coarse chains
    with the step before's fine ones.)"""
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    before = copy.deepcopy(trainer.state_dict())
    samples = trainer.last_samples
    trainer.trainers[1].sampler = DivergingOnce(trainer.trainers[1].sampler)
    with pytest.raises(NonFiniteEnergyError, match="on grid 2"):
        trainer.step()
    # The first step's chains on both grids, not the stopped step's on grid 1 beside them.
    assert all(new is old for new, old in zip(trainer.last_samples, samples))
    after = trainer.state_dict()
    for k, (old, new) in enumerate(zip(before["grids"], after["grids"]), start=1):
        assert new["iteration"] == 1, f"grid {k}"
        assert_same(old["model"], new["model"], f"grid {k}")
        assert_same(old["optimizer"], new["optimizer"], f"grid {k}")
    trainer.fit(3, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert [grid["iteration"] for grid in saved["grids"]] == [3, 3] and saved["iteration"] == 3


class Interrupting:
    """A sampler whose chains the user stops (Ctrl-C: a KeyboardInterrupt, not an Exception)."""

    n_steps = 1

    def run(self, energy, x0, **kw) -> Tensor:
        raise KeyboardInterrupt


def test_a_multigrid_step_interrupted_on_a_grid_keeps_every_grids_last_chains_and_data() -> None:
    trainer = make_multigrid_trainer()
    assert trainer.last_samples is None  # no step has finished: no grid has chains to show
    trainer.fit(1, progress=False)
    last = [(grid.last_samples, grid.last_data) for grid in trainer.trainers]
    trainer.trainers[1].sampler = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        trainer.step()
    for k, (grid, (samples, data)) in enumerate(zip(trainer.trainers, last), start=1):
        assert grid.last_samples is samples and grid.last_data is data, f"grid {k}"


# --------------------------------------------------------------------------- accumulation


class Recording:
    """Wraps a sampler and keeps every call's input and output."""

    def __init__(self, sampler: Langevin) -> None:
        self.sampler = sampler
        self.n_steps = sampler.n_steps
        self.calls: list[tuple[Tensor, Tensor]] = []

    def run(self, energy, x0, **kw) -> Tensor:
        out = self.sampler.run(energy, x0, **kw)
        self.calls.append((x0.clone(), out.clone()))
        return out


class RecordingStart:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.chains_per_example = inner.chains_per_example
        self.batches: list[Tensor] = []

    def start(self, x_pos, indices, *, generator=None):
        self.batches.append(x_pos.clone())
        return self.inner.start(x_pos, indices, generator=generator)

    def constraint(self, x_pos):
        return self.inner.constraint(x_pos)

    def keep(self, x_neg) -> None:
        self.inner.keep(x_neg)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state) -> None:
        self.inner.load_state_dict(state)


def test_gradient_accumulation_averages_micro_batches() -> None:
    trainer = make_trainer("noise", accumulate=2)
    trainer.sampler = Recording(trainer.sampler)
    trainer.chains = RecordingStart(trainer.chains)
    before = copy.deepcopy(trainer.energy)
    stats = trainer.step()

    assert len(trainer.sampler.calls) == 2 and len(trainer.chains.batches) == 2
    for (x0, _), x_pos in zip(trainer.sampler.calls, trainer.chains.batches):
        assert x_pos.shape == (2, 1, 16, 16)  # batch_size per micro-batch
        assert x0.shape == (4, 1, 16, 16)  # x chains_per_example
    assert not torch.equal(trainer.sampler.calls[0][0], trainer.sampler.calls[1][0])

    # The accumulated gradient is the mean of the two micro-batch losses' gradients.
    terms = [contrastive_divergence(before, x_pos, x_neg)
             for x_pos, (_, x_neg) in zip(trainer.chains.batches, trainer.sampler.calls)]
    losses = [loss for loss, _ in terms]
    expected = torch.autograd.grad((losses[0] + losses[1]) / 2, list(before.parameters()))
    for p, g in zip(trainer.energy.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)
    assert stats["loss"] == pytest.approx((losses[0].item() + losses[1].item()) / 2, rel=1e-5)
    for key in ("e_pos", "e_neg"):  # so are the reported energies
        assert stats[key] == pytest.approx(sum(s[key].item() for _, s in terms) / 2, rel=1e-5)
    assert trainer.iteration == 1


def test_the_energy_l2_penalty_reaches_the_loss() -> None:
    trainer = make_trainer("noise", energy_l2=0.5)
    stats = trainer.compute_gradients()
    plain, _ = contrastive_divergence(trainer.energy, trainer.last_data, trainer.last_samples)
    penalised, _ = contrastive_divergence(trainer.energy, trainer.last_data,
                                          trainer.last_samples, energy_l2=0.5)
    assert stats["loss"] == pytest.approx(penalised.item(), rel=1e-5)
    assert penalised.item() != pytest.approx(plain.item(), rel=1e-3)


def test_a_step_inside_no_grad_is_the_same_step_and_inference_mode_is_refused() -> None:
    """Inside torch.no_grad() the backward pass failed ("element 0 of tensors does not require
    grad"), though the samplers turn autograd back on for themselves. inference_mode, where no
    block can, is refused before the step draws anything (persistent chains drawn there could
    never be updated again)."""
    outside, inside = make_trainer("persistent"), make_trainer("persistent")
    stats = outside.step()
    with torch.no_grad():
        assert inside.step() == stats
    assert_same(outside.state_dict(), inside.state_dict())
    fresh = make_trainer("persistent")
    before = fresh.generator.get_state()
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"inference_mode\(\) turns "
                                                                    r"off: train outside it"):
        fresh.step()
    assert fresh.chains.chains is None and torch.equal(fresh.generator.get_state(), before)


@pytest.mark.parametrize("mode", ["persistent", "buffer", "multigrid"])
def test_a_resume_inside_inference_mode_trains_on_as_one_outside_it(tmp_path: Path,
                                                                     mode: str) -> None:
    """A checkpoint read inside torch.inference_mode() (a caller who evaluates and then goes
    on training) gave inference tensors as chains and Adam's state: the resume went through
    and the next fit, outside it, failed at their first in-place update."""
    make = make_multigrid_trainer if mode == "multigrid" else partial(make_trainer, mode)
    make().fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    outside, inside = make(), make()
    outside.resume(tmp_path / "checkpoint.pt")
    with torch.inference_mode():
        inside.resume(tmp_path / "checkpoint.pt")
    outside.fit(2, progress=False)
    inside.fit(2, progress=False)
    assert inside.iteration == 2
    assert_same(outside.state_dict(), inside.state_dict())


# --------------------------------------------------------------------------- multi-grid


def weights(energy: nn.Module) -> list[Tensor]:
    """Copies of the convolution weights. (Not the biases: the summed head's top bias adds the
    same constant to the data's and the samples' energies, so the loss never moves it.)"""
    return [p.detach().clone() for name, p in energy.named_parameters() if name.endswith("weight")]


def test_multigrid_trainer_steps_every_grid_on_the_same_examples(monkeypatch) -> None:
    trainer = make_multigrid_trainer()
    # Record the batches each grid's Trainer.compute_gradients is handed: the grids must learn
    # from the same examples, or the coarse-to-fine chain would join models of different data.
    seen: list[list[Tensor]] = [[] for _ in trainer.trainers]
    for k, grid in enumerate(trainer.trainers):
        def recording_step(batches=None, *, _grid=grid, _seen=seen[k]):
            assert batches is not None, "every grid must be handed the shared batch"
            _seen.append([b.clone() for b in batches])
            return type(_grid).compute_gradients(_grid, batches)
        monkeypatch.setattr(grid, "compute_gradients", recording_step)
    before = [weights(e) for e in trainer.energies]

    history = trainer.fit(3, progress=False)

    assert trainer.iteration == 3 and len(history) == 3
    for stats in history:
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
        assert {"grid1/loss", "grid2/loss", "loss"} <= stats.keys()
        assert stats["loss"] == stats["grid2/loss"]  # the top-level numbers are the finest grid's
    # The batches: one draw per iteration, the same indices for every grid, and they vary.
    assert len(seen[0]) == len(seen[1]) == 3
    for a, b in zip(*seen):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(seen[0][0][0], s[0]) for s in seen[0][1:])
    # Every grid's model learned something.
    for k, (energy, old) in enumerate(zip(trainer.energies, before), start=1):
        assert all(not torch.equal(p, q) for p, q in zip(weights(energy), old)), f"grid {k}"
    samples = trainer.last_samples
    assert samples is not None
    assert [tuple(s.shape) for s in samples] == [(3, 3, 4, 4), (3, 3, 8, 8)]
    # Each grid trains on the data's own block means there.
    data = pattern_images()
    assert torch.equal(trainer.base, block_down(data, (8, 8)))
    torch.testing.assert_close(trainer.trainers[0].data, block_down(data, (2, 2)))


def test_a_consistent_multigrid_trainer_keeps_each_grids_chains_on_the_grid_below() -> None:
    """``consistent``: every grid's training chains keep the block means of their examples'
    coarser grid (the free trainer's chains do not), so each model learns detail given layout."""
    data = pattern_images()
    for consistent in (False, True):
        trainer = make_multigrid_trainer(consistent=consistent)
        trainer.fit(1, progress=False)
        samples = trainer.last_samples
        assert samples is not None
        for k, (coarse, fine) in enumerate(zip(GRIDS, GRIDS[1:])):
            factor = tuple(f // c for f, c in zip(fine, coarse))
            examples = block_down(data, tuple(n // c for n, c in zip(data.shape[-2:], coarse)))
            means = block_down(samples[k], factor)
            # Distance of each chain's block means to the nearest example's coarser grid.
            gap = (means[:, None] - examples[None]).flatten(2).abs().amax(2).amin(1)
            if consistent:
                assert gap.max() < 1e-5, (k, gap)
                # Started, as the free trainer's chains, from the nearest up-sampling.
                grid = trainer.trainers[k]
                start = grid.chains.start(grid.data, torch.arange(len(data)))
                assert torch.equal(start, nearest_up(block_down(grid.data, factor), factor))
            else:
                assert gap.max() > 1e-3, (k, gap)


def test_a_multigrid_step_inside_no_grad_is_the_same_and_inference_mode_draws_nothing() -> None:
    """The grids' steps now run inside the multi-grid step's own autograd block; the batch was
    drawn before inference_mode was refused, so a refused step still moved the generator."""
    assert_same_step_inside_no_grad(make_multigrid_trainer)
    fresh = make_multigrid_trainer()
    before = fresh.generator.get_state()
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"inference_mode\(\)"):
        fresh.step()
    assert torch.equal(fresh.generator.get_state(), before)


def test_multigrid_trainer_rejects_mismatched_grids() -> None:
    energy = image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]])
    sampler = Langevin(n_steps=1)
    with pytest.raises(ValueError, match="one energy and one sampler per modelled grid"):
        MultiGridTrainer([energy], [sampler, sampler], pattern_images(), GRIDS)
    with pytest.raises(ValueError, match="one energy and one sampler per modelled grid"):
        MultiGridTrainer([energy], [sampler], pattern_images(), GRIDS)  # GRIDS models two
    with pytest.raises(ValueError, match=r"finest grid"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [(1, 1), (4, 4)])
    with pytest.raises(ValueError, match="^a multi-grid trainer needs at least one modelled"):
        MultiGridTrainer([], [], pattern_images(), [(8, 8)])  # the data as its own base grid
    with pytest.raises(ValueError, match=r"\(3, 3\) does not divide \(8, 8\)"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [(3, 3), (8, 8)])
    with pytest.raises(ValueError, match=r"grid_sizes\[1\] \(4\.5, 4\.5\): a size must be an int"):
        MultiGridTrainer([energy, energy], [sampler, sampler], pattern_images(),
                         [(1, 1), (4.5, 4.5), (8, 8)])
    with pytest.raises(ValueError, match=r"grid_sizes\[0\] \(0, 0\): a size must be an int >= 1"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [(0, 0), (8, 8)])
    with pytest.raises(ValueError, match=r"grid_sizes\[0\] must be the trailing sizes of a grid, "
                                         r"one per dim, e.g. \(4, 4\) for images, got 1$"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [1, 8])  # sides, not sizes


def test_multigrid_resume_takes_the_same_steps(tmp_path: Path) -> None:
    """2 iterations, save, resume into a differently initialised trainer, 2 more == 4 straight."""
    straight = make_multigrid_trainer()
    straight.fit(4, progress=False)

    first = make_multigrid_trainer()
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    del first
    # The grids share the trainer's generator: its state is saved once, not once per grid.
    assert all("generator" not in grid for grid in load_checkpoint(tmp_path)["grids"])
    second = make_multigrid_trainer(init_seed=7)
    assert not torch.equal(next(second.energies[0].parameters()),
                           next(straight.energies[0].parameters()))
    second.resume(tmp_path)  # the run folder is accepted too
    assert second.iteration == 2
    history = second.fit(4, progress=False)
    assert len(history) == 2 and second.iteration == 4

    for k, (a, b) in enumerate(zip(straight.energies, second.energies), start=1):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), f"grid {k}: {name}"
    for a, b in zip(straight.last_samples, second.last_samples):
        assert torch.equal(a, b)
    assert torch.equal(straight.generator.get_state(), second.generator.get_state())


def test_a_checkpoint_of_another_network_is_refused_naming_what_differs() -> None:
    trainer = make_trainer("noise")
    state = trainer.state_dict()
    state["model_config"] = {**state["model_config"], "kernel_sizes": [3]}
    with pytest.raises(ValueError, match="another network .*differing: kernel_sizes"):
        trainer.check_state(state)
    state = trainer.state_dict()
    state["model"] = {}  # no weights: loaded without a word, the net would stay as built
    with pytest.raises(RuntimeError, match="Missing key"):
        trainer.load_state_dict(state)


@pytest.mark.parametrize("held, differing", [
    (lambda own: {key: value for key, value in own.items() if key != "in_channels"},
     "in_channels"),
    (lambda own: [own], "model_config"),
], ids=["a setting it lacks", "no mapping"])
def test_a_checkpoints_network_is_compared_setting_by_setting(held, differing: str) -> None:
    """A setting only this run's network has is named too; a model_config that is no mapping
    is named as a whole (it failed with an AttributeError)."""
    trainer = make_trainer("noise")
    state = trainer.state_dict()
    state["model_config"] = held(state["model_config"])
    with pytest.raises(ValueError, match=rf"another network .*\(differing: {differing}\)"):
        trainer.check_state(state)


def test_a_multigrid_resume_refused_on_a_finer_grid_changes_no_grid(tmp_path: Path) -> None:
    """The coarser grids were loaded before the finest grid's network was found another."""
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    trainer.save(tmp_path / "checkpoint.pt")
    torch.manual_seed(5)
    other = MultiGridTrainer(
        [image_energy("texture", in_channels=3, layers=layers, reference_sigma=0.5)
         for layers in ([[4, 3, 1, 1], [4, 3, 1, 1]], [[4, 5, 1, 1], [4, 3, 1, 1]])],
        [Langevin(n_steps=2)] * 2, pattern_images(), GRIDS, train=TrainConfig(batch_size=3),
        generator=gen(0))
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(CheckpointError, match="another network .*differing: layers"):
        other.resume(tmp_path / "checkpoint.pt")
    assert_same(before, other.state_dict())


def test_a_multigrid_checkpoint_naming_no_grid_sizes_is_refused() -> None:
    """Without its grid sizes a checkpoint cannot show its nets were trained on this run's
    grids."""
    trainer = make_multigrid_trainer()
    state = trainer.state_dict()
    del state["grid_sizes"]
    with pytest.raises(ValueError, match=r"the checkpoint's grids are \[\], this run's \[\(1, 1\)"):
        trainer.load_state_dict(state)


def test_a_multigrid_trainer_refuses_a_grid_no_finer_than_the_one_below() -> None:
    """Its chains started at the examples themselves, and the grid's model learned from
    chains that never left them, without a word (a config's multigrid section refused it)."""
    energies = [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]) for _ in range(2)]
    with pytest.raises(ValueError, match=r"^grid_sizes\[2\] \(8, 8\) is no finer than the grid "
                                         r"below it: each modelled grid must refine the last"):
        MultiGridTrainer(energies, [Langevin(n_steps=1)] * 2, pattern_images(),
                         [(1, 1), (8, 8), (8, 8)])


def test_multigrid_resume_rejects_a_different_number_of_grids(tmp_path: Path) -> None:
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    path = trainer.save(tmp_path / "checkpoint.pt")
    one_grid = MultiGridTrainer([image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]])],
                                [Langevin(n_steps=1)], pattern_images(), [(4, 4), (8, 8)])
    with pytest.raises(ValueError, match="holds 2 grids, this run has 1"):
        one_grid.resume(path)
    with pytest.raises(ValueError, match="holds no grids, this run has 1"):  # a single model's
        one_grid.load_state_dict(make_trainer("noise").state_dict())
    # And the other way: the single model was told the checkpoint holds "another network
    # (differing: model_config)", the key a multi-grid checkpoint keeps per grid.
    with pytest.raises(CheckpointError, match=r"cannot resume from .*: the checkpoint is a "
                                              r"multi-grid run's \(one model per grid\), this "
                                              r"run trains one model"):
        make_trainer("noise").resume(path)
    # As many grids, of other sizes: the stationary nets would load, and the coarsest would
    # learn to refine another base grid.
    torch.manual_seed(0)
    other = MultiGridTrainer(
        [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1], [4, 3, 1, 1]],
                      reference_sigma=0.5) for _ in range(2)],
        [Langevin(n_steps=1), Langevin(n_steps=1)], pattern_images(), [(2, 2), (4, 4), (8, 8)],
        train=TrainConfig(batch_size=3))
    with pytest.raises(CheckpointError, match=r"grids are \[\(1, 1\), \(4, 4\), \(8, 8\)\], "
                                              r"this run's \[\(2, 2\).* no --set that changes it"):
        other.resume(path)


def stripe_contrast(x: Tensor) -> float:
    """Mean squared difference across each pair of columns (2j, 2j + 1) minus the same across
    pairs of rows: the detail inside the 2x2 blocks that a vertical-stripe image has and that a
    block-constant image (or isotropic noise) lacks."""
    across_columns = (x[..., 0::2] - x[..., 1::2]).pow(2).mean()
    across_rows = (x[..., 0::2, :] - x[..., 1::2, :]).pow(2).mean()
    return (across_columns - across_rows).item()


def test_multigrid_training_learns_the_detail_the_coarse_grid_lacks() -> None:
    """One modelled grid (4x4 base -> 8x8) on images whose fine structure is vertical stripes of
    period 2: the coarse start is block-constant (contrast 0), the data's contrast is 0.64.

    After 20 iterations, chains from the coarse starts add the stripes. Measured with init and
    training seeds 0-11: contrast 0.59-0.93 after training against -0.02 for an untrained model
    from the same starts; the bounds below (> 0.32, closer to the data than the start, and
    untrained < 0.1) leave a margin of about 2x on each side.
    """
    g = gen(100)
    coarse = torch.rand(16, 1, 4, 4, generator=g) - 0.5
    data = nearest_up(coarse, (2, 2)) + 0.4 * torch.tensor([1.0, -1.0]).repeat(4)
    sampler = Langevin(n_steps=10, step_size=0.1, clamp=(-1.5, 1.5))

    def model() -> nn.Module:
        torch.manual_seed(0)
        return image_energy("texture", in_channels=1, layers=[[8, 3, 1, 1], [8, 3, 1, 1]],
                            reference_sigma=0.5)

    trainer = MultiGridTrainer([model()], [sampler], data, [(4, 4), (8, 8)],
                               train=TrainConfig(batch_size=16, lr=0.01), generator=gen(0))
    trainer.fit(20, progress=False)
    chain = MultiGridSampler((sampler,), ((2, 2),))
    base = block_down(data, (2, 2))
    _, trained = chain.run(trainer.energies, base, generator=gen(99))
    _, untrained = chain.run([model()], base, generator=gen(99))

    target, start = stripe_contrast(data), stripe_contrast(nearest_up(base, (2, 2)))
    assert target == pytest.approx(0.64, abs=1e-5) and start == pytest.approx(0.0, abs=1e-6)
    assert stripe_contrast(untrained) < 0.1 * target, stripe_contrast(untrained)
    assert stripe_contrast(trained) > 0.5 * target, stripe_contrast(trained)
    assert abs(stripe_contrast(trained) - target) < abs(start - target)


@pytest.mark.parametrize("wrote, kept", [
    (["config.yaml", "observed.png", "tb"], []),  # refused or diverged at once: nothing to keep
    (["config.yaml", "observed.png", "samples_000025.png"],
     ["config.yaml", "observed.png", "samples_000025.png"]),  # samples to look at stay
    (["config.yaml", "observed.png", "checkpoint.pt"],
     ["config.yaml", "observed.png", "checkpoint.pt"]),  # a checkpoint to resume from stays
])
def test_a_new_run_failing_before_its_first_checkpoint(tmp_path: Path, monkeypatch, wrote,
                                                       kept) -> None:
    """What a new run wrote before failing goes with it unless it had made samples; a file no
    run writes stays either way."""
    from stgconv.config import load_config

    # (stgconv.tasks exports a function of the module's name, so the module by import_module.)
    task = importlib.import_module("stgconv.tasks.train")

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def fails(config, world, folder, **_):
        for name in wrote:
            (folder / name).mkdir() if name == "tb" else (folder / name).write_text("x")
        raise ValueError("boom")

    monkeypatch.setattr(task, "_fit", fails)
    with pytest.raises(ValueError, match="boom"):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    lock = [".lock"] if kept else []  # a folder holding a run keeps its (released) lock file
    assert sorted(p.name for p in out.iterdir()) == sorted([*kept, *lock, "notes.txt"])


def test_a_new_run_stopped_by_ctrl_c_before_writing_leaves_no_folder(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """Ctrl-C (a KeyboardInterrupt, which is no Exception) cleans up as a failure does: the
    folders the run made go, with the lock file in them."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(task, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        task.train(load_config(None, [f"out_dir={tmp_path / 'new' / 'run'}", "device=cpu"]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop_at, kept", [
    (1, []),  # stopped in its first iteration: nothing trained, nothing to keep
    (2, ["config.yaml", "observed.png", "tb"]),  # the curves of what it trained stay
])
def test_a_new_run_the_user_stops_keeps_its_logs_once_it_has_trained(tmp_path: Path,
                                                                    monkeypatch, stop_at,
                                                                    kept) -> None:
    """With checkpoint_every 0 and no samples yet, Ctrl-C after an hour's training took the
    run's TensorBoard logs with it, as if it had been refused at its start."""
    from stgconv.config import load_config
    from stgconv.train import Trainer

    task = importlib.import_module("stgconv.tasks.train")
    step = Trainer.step
    calls = []

    def stopped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", stopped)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu", "data.size=16",
                                      "model.layers=[[4,4,2,1],[4,3,2,1]]", "sampler.n_steps=1",
                                      "train.n_iterations=5", "train.checkpoint_every=0",
                                      "train.sample_every=0"]), progress=False)
    if kept:
        assert sorted(p.name for p in out.iterdir()) == sorted([*kept, ".lock"])
        assert any((out / "tb").iterdir())
    else:
        assert not out.exists()  # the folder it made goes too


@pytest.mark.parametrize("before, started, kept", [
    # folders another command could have made, and a killed run's files kept until the new
    # run has started
    (["interpolation/notes.txt", "synthesis/a.txt"], False, ["interpolation", "synthesis"]),
    (["config.yaml", "observed.png"], False, ["config.yaml", "observed.png"]),
    (["config.yaml", "observed.png"], True, []),  # replaced: the new run's config goes too
])
def test_a_failed_new_run_removes_only_what_it_made(tmp_path: Path, monkeypatch, before,
                                                   started, kept) -> None:
    """A new run that fails before its first checkpoint takes its own files with it, never
    files that were in the folder before it started (with --overwrite, the old run's files go
    only once the new run has started)."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    for name in before:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("the user's")

    def fails(config, world, folder, *, replace_old_run, **_):
        if started:
            replace_old_run()
        for name in ("tb", "observed.gif", "config.yaml"):
            if not (folder / name).exists():
                (folder / name).mkdir() if name == "tb" else (folder / name).write_text("new")
        raise ValueError("boom")

    monkeypatch.setattr(task, "_fit", fails)
    with pytest.raises(ValueError, match="boom"):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]), overwrite=True)
    lock = [".lock"] if "config.yaml" in kept else []
    assert sorted(p.name for p in out.iterdir()) == sorted([*kept, *lock]), started
    for name in before:
        assert not (out / name).exists() or (out / name).read_text() == "the user's"


@pytest.mark.parametrize("folder", ["tb", "synthesis"])
@pytest.mark.parametrize("overwrite, named", [
    (True, "--overwrite would remove .*{folder}, which holds the training data"),
    (False, "already holds a run .*: continue it with --resume, move the training data .*data.png "
            "out of .*{folder} \\(--overwrite would remove it with the run\\), or train into"),
])
def test_overwrite_refuses_to_remove_a_run_folder_that_holds_the_data(
        tmp_path: Path, overwrite: bool, named: str, folder: str) -> None:
    """Data kept under one of the old run's folders (tb/), or under another command's output
    that --overwrite removes with the run (synthesize's synthesis/: a synthesized texture
    learnt in turn was removed once the new run had started), would go with it. Without
    --overwrite the refusal does not advise it (it advised --overwrite, refused in turn)."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    (out / folder).mkdir(parents=True)
    (out / folder / "data.png").write_bytes(b"the training data")
    (out / "checkpoint.pt").write_bytes(b"the run's")  # a run --resume could continue
    with pytest.raises(task.ExistingRun, match=named.format(folder=folder)):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu",
                                      f"data.path={out / folder / 'data.png'}"]),
                   overwrite=overwrite)
    assert (out / folder / "data.png").read_bytes() == b"the training data"


@pytest.mark.parametrize("checkpoint, named", [
    (True, "run already holds a run (checkpoint.pt, samples.png): continue it with --resume, "
           "replace it with --overwrite, or train into another folder"),
    (False, "run holds the files of a run that saved no checkpoint (samples.png): replace them "
            "with --overwrite, or train into another folder"),
])
def test_a_new_run_over_an_earlier_one_says_what_to_do(tmp_path: Path, checkpoint: bool,
                                                       named: str) -> None:
    """A finished or killed run's folder, its files listed; the data elsewhere."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    out.mkdir()
    (out / "samples.png").write_bytes(b"the run's")
    if checkpoint:
        (out / "checkpoint.pt").write_bytes(b"the run's")
    with pytest.raises(task.ExistingRun, match=re.escape(named)):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert (out / "samples.png").read_bytes() == b"the run's"


def test_a_run_into_its_data_folder_is_refused_before_it_writes(tmp_path: Path) -> None:
    """The run's observed.png and samples.png among the images: a resumed run read five
    examples where it had trained on three."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"the training data")
    # The same folder spelt otherwise: through a link to it.
    (tmp_path / "link").symlink_to(images)
    with pytest.raises(ValueError, match="is the training data folder .* train into another"):
        task.train(load_config(None, [f"out_dir={tmp_path / 'link'}", "device=cpu",
                                      f"data.path={images}"]))
    assert [p.name for p in images.iterdir()] == ["a.png"]


def test_a_config_with_an_empty_out_dir_is_refused_before_it_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``out_dir: ""`` (or ``--set 'out_dir=""'``) trained into the working folder, its
    checkpoint, config.yaml, samples and tb/ among the user's files, where ``--out ''`` is
    refused."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"^out_dir is empty \(''\), which would be the working "
                                         r"folder"):
        task.train(load_config(None, ['out_dir=""', "device=cpu"]))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_config_with_an_empty_data_path_is_refused_not_read_as_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``data.path: ""`` with ``data.kind: objects`` trained on the images that happened to be
    in the working folder, where ``--data ''`` is refused."""
    from stgconv.config import load_config

    from stgconv.io.image import save_image_grid

    task = importlib.import_module("stgconv.tasks.train")
    monkeypatch.chdir(tmp_path)
    save_image_grid(torch.zeros(1, 1, 8, 8), tmp_path / "holiday.png")
    with pytest.raises(ValueError, match=r"^data\.path is empty \(''\), which would be the "
                                         r"working folder"):
        task.train(load_config(None, [f"out_dir={tmp_path / 'run'}", "device=cpu",
                                      "data.kind=objects", 'data.path=""', "data.size=8"]))
    assert [p.name for p in tmp_path.iterdir()] == ["holiday.png"]


def test_a_first_run_beside_its_data_folder_is_not_refused(tmp_path: Path, monkeypatch) -> None:
    """The run folder not made yet is no data folder: the two are compared only once it is
    there (a first run with a data folder must not fail on the comparison)."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"the training data")
    monkeypatch.setattr(task, "_fit", lambda config, world, folder, **_: folder)
    out = tmp_path / "run"
    assert task.train(load_config(None, [f"out_dir={out}", "device=cpu",
                                         f"data.path={images}"])) == out
    assert [p.name for p in images.iterdir()] == ["a.png"]


def test_the_lock_file_names_only_its_live_owner(tmp_path: Path, monkeypatch) -> None:
    """A killed owner's longer words are replaced whole, not overwritten in part; the lock is
    left empty once the run ends."""
    import os
    import socket

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("process 4194304 on " + "a-long-dead-host-name" * 4 + "\n")
    seen = []

    def reads_the_lock(config, world, folder, **_):
        seen.append((folder / ".lock").read_text())
        return folder

    monkeypatch.setattr(task, "_fit", reads_the_lock)
    task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert seen == [f"process {os.getpid()} on {socket.gethostname()}\n"]
    assert (out / ".lock").read_text() == ""


def test_the_lock_file_gets_the_mode_of_the_run_files(tmp_path: Path, monkeypatch) -> None:
    """Under a group's umask (002) the run's files are group-writable; its lock file was made
    0644 whatever the umask, so another member of the group could not open it to --resume."""
    import os

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    monkeypatch.setattr(task, "_fit", lambda config, world, folder, **_: folder)
    for umask in (0o002, 0o000):  # the umask's, not another fixed mode's
        (out / ".lock").unlink(missing_ok=True)
        old = os.umask(umask)
        try:
            task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
        finally:
            os.umask(old)
        assert (out / ".lock").stat().st_mode & 0o777 == 0o666 & ~umask


def descriptors_open_on(path: Path) -> int:
    """How many of this process's file descriptors are open on the file at ``path`` (Linux)."""
    import os

    at = os.stat(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            held = os.fstat(int(fd))
        except OSError:  # the listing's own descriptor, closed since
            continue
        count += (held.st_dev, held.st_ino) == (at.st_dev, at.st_ino)
    return count


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path: Path, monkeypatch) -> None:
    """The lock is exclusive: a run started while another trains into its folder (here from
    the same process, through a second open file) is refused, naming the owner."""
    import os

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    fits = []

    def starts_a_second_run(config, world, folder, **_):
        fits.append(folder)
        if len(fits) == 1:
            with pytest.raises(ValueError, match=f"is in use by process {os.getpid()} on ") as err:
                task.train(config)
            # The refused run's file is closed, not kept open by the error's frame (which a
            # notebook keeps as its last traceback): the first run's alone is open.
            assert err.value and descriptors_open_on(out / ".lock") == 1
        return folder

    monkeypatch.setattr(task, "_fit", starts_a_second_run)
    task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert fits == [out]


@pytest.mark.parametrize("error", [OSError(errno.ENOLCK, "No locks available"),
                                   KeyboardInterrupt("Ctrl-C")])
def test_a_lock_file_that_cannot_be_flocked_is_closed(tmp_path: Path, monkeypatch,
                                                      error: BaseException) -> None:
    """flock refused for want of locks (NFS without its lock manager), or Ctrl-C while it runs:
    the error is raised, and the lock file is not kept open by the error's frame."""
    import fcntl

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"

    def no_locks(file, operation):
        raise error

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(type(error), match=re.escape(str(error))) as err:
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert err.value and descriptors_open_on(out / ".lock") == 0


def test_a_lock_file_its_last_owner_removed_before_the_flock_is_taken_again(
        tmp_path: Path, monkeypatch) -> None:
    """A run failing at its start removes its lock file and its folder between another run's
    open of that file and its flock, which then succeeds on a file no one else can open: the
    run opens the lock file again, and a third run started meanwhile is refused."""
    import fcntl
    import os

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    flock, flocks, fits = fcntl.flock, [], []

    def last_owner_cleans_up(file, operation):
        flocks.append(file.fileno())
        if len(flocks) == 1:  # the failed run's cleanup (_owned), as it lands in this window
            (out / ".lock").unlink()
            out.rmdir()
        return flock(file, operation)

    def starts_a_third_run(config, world, folder, **_):
        fits.append(folder)
        with pytest.raises(ValueError, match=f"is in use by process {os.getpid()} on "):
            task.train(config)
        return folder

    monkeypatch.setattr(fcntl, "flock", last_owner_cleans_up)
    monkeypatch.setattr(task, "_fit", starts_a_third_run)
    task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert fits == [out] and len(flocks) == 3  # the removed file's, the new one's, the third's


def test_a_run_folder_removed_before_its_lock_file_is_made_is_made_again(
        tmp_path: Path, monkeypatch) -> None:
    """The failed run's cleanup removes the folder between this run's mkdir and its open of the
    lock file: made again, not "No such file or directory"; a lock file linking into a missing
    folder is still that error, not a loop."""
    import os

    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"
    open_file, opens = os.open, []

    def last_owner_cleans_up(path, *args, **kwargs):
        if Path(path) == out / ".lock":
            opens.append(path)
            if len(opens) == 1:
                out.rmdir()
        return open_file(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", last_owner_cleans_up)
    monkeypatch.setattr(task, "_fit", lambda config, world, folder, **_: folder)
    assert task.train(load_config(None, [f"out_dir={out}", "device=cpu"])) == out
    assert len(opens) == 2 and (out / ".lock").is_file()

    other = tmp_path / "other"
    other.mkdir()
    (other / ".lock").symlink_to(tmp_path / "missing" / "lock")
    with pytest.raises(FileNotFoundError):
        task.train(load_config(None, [f"out_dir={other}", "device=cpu"]))


def test_a_failed_run_keeps_a_folder_it_made_that_another_filled(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The folders a failed run made go only while empty: one that meanwhile holds another
    process's file stays, with the folders above it, and the run's own error is the one
    raised."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "a" / "run"

    def fails(config, world, folder, **_):
        (folder / "theirs.txt").write_text("another process's")
        raise ValueError("boom")

    monkeypatch.setattr(task, "_fit", fails)
    with pytest.raises(ValueError, match="boom"):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]


def test_a_failed_run_whose_folder_became_a_file_raises_its_own_error(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """The run folder removed while training and a file made in its place: the run's own
    error is raised (the cleanup raised NotADirectoryError removing a lock file inside that
    file), and the file is left as it is."""
    from stgconv.config import load_config

    task = importlib.import_module("stgconv.tasks.train")
    out = tmp_path / "run"

    def replaced_by_a_file(config, world, folder, **_):
        (folder / ".lock").unlink()
        folder.rmdir()
        folder.write_text("another process's")
        raise ValueError("boom")

    monkeypatch.setattr(task, "_fit", replaced_by_a_file)
    with pytest.raises(ValueError, match="boom"):
        task.train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert out.read_text() == "another process's"


def test_a_huge_negative_statistic_is_divergence() -> None:
    trainer = make_trainer("noise")
    with pytest.raises(DivergenceError, match="e_neg"):
        trainer.check_divergence({"loss": 0.0, "e_neg": -1e30})
    trainer.check_divergence({"loss": 0.0, "e_neg": -1e3})
    trainer.check_divergence({"loss": 1e20, "e_neg": -1e20})  # the bound itself is allowed
    with pytest.raises(DivergenceError, match="loss is nan"):  # NaN is past every bound
        trainer.check_divergence({"loss": math.nan, "e_neg": 0.0})


@pytest.mark.parametrize("size, shown", [(0.9e6, None), (1e6, None), (1.1e6, r"1\.1e\+06"),
                                         (-1.1e6, r"1\.1e\+06"), (1.25e6, r"1\.25e\+06")],
                         ids=["inside", "at the bound", "past it", "past it, negative",
                              "four digits"])
def test_a_weight_just_past_its_bound_is_divergence(size: float, shown: str | None) -> None:
    """The bound is on the size, the bound itself allowed; the message shows four digits."""
    trainer = make_trainer("noise")
    with torch.no_grad():
        next(trainer.energy.parameters()).view(-1)[0] = size
    if shown is None:
        trainer.check_divergence({})
    else:
        with pytest.raises(DivergenceError, match=rf"weight \S+ is {shown}, past the bound of "
                                                  r"1e\+06"):
            trainer.check_divergence({})


def test_a_step_whose_statistics_diverged_stops_fit(monkeypatch) -> None:
    """fit checks each step's statistics itself, also in a run that writes no checkpoint (where
    the updated model is never checked)."""
    trainer = make_trainer("noise")
    step = trainer.step
    monkeypatch.setattr(trainer, "step", lambda: {**step(), "e_neg": math.nan})
    with pytest.raises(DivergenceError, match=r"iteration 1: e_neg is nan, .* no checkpoint was "
                                              r"written"):
        trainer.fit(3, progress=False)
    assert trainer.iteration == 1


def test_a_resumed_trainer_knows_which_checkpoint_holds_its_last_good_model(
        tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    make_trainer("noise").fit(2, checkpoint_path=path, progress=False)
    second = make_trainer("noise", init_seed=7)
    assert second.saved_iteration is None
    second.resume(path)
    assert second.saved_iteration == 2


def test_a_stopped_fit_ends_its_progress_bars_line(capsys) -> None:
    """The bar is closed when fit stops, not when the traceback that holds it is dropped: the
    error printed while it is handled (the CLI's one line) starts a line of its own."""
    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    try:
        make_trainer("persistent").fit(2, progress=True, on_iteration=stop)
    except KeyboardInterrupt:  # as the CLI prints its error: the traceback still held
        assert capsys.readouterr().err.endswith("\n")
    else:
        pytest.fail("fit went on past its callback's KeyboardInterrupt")


def test_a_progress_bar_into_a_log_redraws_at_its_start_and_end(capsys, monkeypatch) -> None:
    """Every redraw is a carriage-return line that a log file keeps: the bar redrew at every
    iteration (its postfix refreshed it), 112 kB per 1,000 iterations of a tiny run."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    make_trainer("noise").fit(20, progress=True)
    assert capsys.readouterr().err.count("\r") <= 2


def test_every_progress_line_shows_the_values_of_the_iteration_it_counts(capsys,
                                                                         monkeypatch) -> None:
    """A redraw that the bar's update made (a log's line every LOG_MININTERVAL) showed
    iteration k's count beside iteration k - 1's loss: the postfix was set after it."""
    import stgconv.train as train_module
    from stgconv.console import progress_bar

    monkeypatch.setattr(train_module, "progress_bar",
                        lambda **options: progress_bar(mininterval=0, miniters=1, **options))
    trainer = make_trainer("noise")
    history = trainer.fit(3, progress=True)
    shown = re.findall(r"train: [^\r]*?(\d)/3 \[[^]]*, loss=([^,]+),", capsys.readouterr().err)
    assert {count for count, _ in shown} == {"1", "2", "3"}
    for count, loss in shown:
        assert loss == f"{history[int(count) - 1]['loss']:.3g}"
    trainer.fit(4, progress=True)  # a fit that continues counts on from the trainer's iteration
    assert set(re.findall(r"(\d)/4 \[", capsys.readouterr().err)) == {"3", "4"}


@pytest.mark.parametrize("kind", ["cooperative", "jem"])
def test_trainers_of_two_networks_keep_the_random_state_out_when_asked(kind: str) -> None:
    """``random_state=False`` (what a multi-grid run asks of its grids' trainers) is taken by
    every Trainer: the cooperative and JEM trainers' ``state_dict`` / ``load_state_dict``
    refused the keyword (TypeError)."""
    from stgconv.cooperative import CooperativeTrainer
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.generator import ConvGenerator
    from stgconv.jem import HybridTrainer

    data, sampler = tiny_data(4, 8), Langevin(n_steps=1, step_size=0.01)
    if kind == "cooperative":
        net = ConvGenerator(latent_dim=2, out_shape=(1, 8, 8))
        trainer = CooperativeTrainer(tiny_energy(), net, sampler, data, generator=gen(0))
    else:
        trainer = HybridTrainer(ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(64, 2))),
                                sampler, DataStart(), data, torch.tensor([0, 1, 0, 1]),
                                generator=gen(0))
    state = trainer.state_dict(random_state=False)
    assert "generator" not in state and "iteration" in state
    drawn = trainer.generator.get_state()
    trainer.load_state_dict({**trainer.state_dict(), "generator": gen(1).get_state()},
                            random_state=False)
    assert torch.equal(trainer.generator.get_state(), drawn)
