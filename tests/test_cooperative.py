"""Cooperative learning: the generator net's shapes for every modality, the generator learning
to reproduce the revision, resume bit for bit, the config section's checks, and the CLI
(train, synthesize through the generator, latent interpolation) on tiny settings."""

from __future__ import annotations

import copy
import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import (assert_a_sample_too_large_is_refused_before_drawing,
                   assert_same_step_inside_no_grad, boxes_and_balls, gen, tiny_data, tiny_energy,
                   tiny_texture_run)
from PIL import Image
from test_train import DivergingOnce, assert_same
from torch import Tensor

from stgconv.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from stgconv.cli import main
from stgconv.config import CooperativeConfig, TrainConfig, load_config
from stgconv.cooperative import (
    CooperativeTrainer,
    GeneratorStart,
    LatentPosterior,
    generator_from_state,
    interpolate,
    is_cooperative,
    propose,
    propose_and_revise,
)
from stgconv.distributed import World
from stgconv.energy.video import video_energy
from stgconv.energy.voxel import voxel_energy
from stgconv.generator import ConvGenerator, build_generator, stage_plan
from stgconv.losses import contrastive_divergence
from stgconv.mcmc import Langevin, NoiseInit, NonFiniteEnergyError, PersistentChains
from stgconv.shortrun import latent_path
from stgconv.tasks import interpolate as interpolate_task
from stgconv.tasks import reconstruct, synthesize
from stgconv.train import DivergenceError, Trainer

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the generator net


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (3, 8, 16, 16), (1, 8, 8, 8),
                                   (1, 5, 6), (3, 2, 8, 8)])  # the last: sides under MIN_BASE
def test_the_generator_makes_examples_of_every_modality(shape) -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=6, out_shape=shape, width=2)
    x = net(net.sample_latent(3, generator=gen(0)))
    assert x.shape == (3, *shape)
    assert torch.isfinite(x).all() and x.std() > 0
    # Each example depends on its own z only (no batch statistics).
    z = net.sample_latent(2, generator=gen(1))
    assert torch.allclose(net(z)[:1], net(z[:1]), atol=1e-6)


def test_stage_plan_doubles_each_dimension_down_to_its_base() -> None:
    assert stage_plan((28, 28)) == ((7, 7), [(2, 2), (2, 2)])
    # 16 frames of 64x64: time is doubled in the last two stages only.
    assert stage_plan((16, 64, 64)) == ((4, 4, 4), [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)])
    # An odd side is never halved (9 halved would be 4, an 8-pixel example): 18 stops at 9.
    assert stage_plan((9, 18)) == ((9, 9), [(1, 2)])


def test_the_generator_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"out_shape must be"):
        ConvGenerator(latent_dim=4, out_shape=(16, 16))
    with pytest.raises(ValueError, match=r"z must be \(B, 4\)"):
        ConvGenerator(latent_dim=4, out_shape=(1, 8, 8))(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"z must be \(B, 4\), got \(2, 1, 4\)"):
        ConvGenerator(latent_dim=4, out_shape=(1, 8, 8))(torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="out_shape must be"):  # no 4-D examples
        ConvGenerator(latent_dim=4, out_shape=(1, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="latent_dim and width must be ints >= 1, got 4 and 0"):
        ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=0)
    with pytest.raises(ValueError, match="latent_dim and width must be ints >= 1, got 0 and 2"):
        ConvGenerator(latent_dim=0, out_shape=(1, 8, 8), width=2)
    smallest = ConvGenerator(latent_dim=1, out_shape=(1, 8, 8), width=1)
    assert smallest(smallest.sample_latent(1, generator=gen(0))).shape == (1, 1, 8, 8)


@pytest.mark.parametrize("given, said", [
    ({"out_shape": (1, 8.5, 8)}, r"out_shape must be .* positive int sizes, got \(1, 8.5, 8\)"),
    ({"out_shape": (True, 8, 8)}, r"out_shape must be .* positive int sizes, got \(True, 8, 8\)"),
    ({"latent_dim": 2.5}, r"latent_dim and width must be ints >= 1, got 2.5 and 2$"),
    ({"width": True}, r"latent_dim and width must be ints >= 1, got 4 and True$"),
], ids=["half a pixel", "bool channels", "float latent_dim", "bool width"])
def test_the_generator_refuses_sizes_that_are_no_ints(given: dict, said: str) -> None:
    """A side of 8.5 was truncated to 8 and True taken for one channel, without a word; a
    latent_dim of 2.5 failed inside torch ("type must be tuple of ints")."""
    with pytest.raises(ValueError, match="^" + said):
        ConvGenerator(**{"latent_dim": 4, "out_shape": (1, 8, 8), "width": 2, **given})


def test_a_generator_of_numpy_sizes_is_saved_as_plain_data(tmp_path: Path) -> None:
    """A numpy integer latent_dim or width was kept in the generator's config as it was: the
    trainer's first checkpoint, after the training up to it, refused to be written ("would
    hold objects other than tensors and plain data")."""
    net = ConvGenerator(latent_dim=np.int64(4), out_shape=(np.int64(1), 8, 8),
                        width=np.int64(2))
    assert net.config == {"latent_dim": 4, "out_shape": [1, 8, 8], "width": 2}
    assert all(type(n) is int for n in (net.config["latent_dim"], net.config["width"]))
    path = save_checkpoint({"generator_config": net.config}, tmp_path / "checkpoint.pt")
    assert load_checkpoint(path)["generator_config"] == net.config


@pytest.mark.parametrize("n", [2.5, True])
def test_a_latent_count_that_is_no_int_is_refused_naming_it(n: object) -> None:
    """It failed inside torch.randn ("received an invalid combination of arguments")."""
    with pytest.raises(ValueError, match=rf"^n must be an int >= 0, got {n}$"):
        ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=2).sample_latent(n)


def test_the_generator_is_a_linear_layer_then_nearest_doublings_and_3x3_convolutions() -> None:
    """The documented net, which a checkpoint's weights must fit: ReLU after the linear layer and
    after each stage's nearest doubling and 3x3 convolution; a last 3x3 convolution, unsquashed."""
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(2, 8, 16), width=2)
    z = net.sample_latent(2, generator=gen(0))
    convs = [layer for layer in net.body if isinstance(layer, torch.nn.Conv2d)]
    assert [(conv.kernel_size, conv.padding) for conv in convs] == [((3, 3), (1, 1))] * 3
    h = torch.relu(net.project(z).reshape(2, net.base_channels, *net.base))
    for conv, factor in zip(convs, stage_plan((8, 16))[1]):
        h = torch.relu(conv(torch.nn.functional.interpolate(h, scale_factor=factor)))
    torch.testing.assert_close(net(z), convs[-1](h))


def test_the_generators_config_is_plain_data_that_rebuilds_it() -> None:
    """The config goes into checkpoints, which load only plain types: a shape given as numpy
    integers is stored as ints, and the rebuilt net takes the same weights."""
    net = ConvGenerator(latent_dim=3, out_shape=np.array([1, 8, 8]), width=3)
    assert net.config == {"latent_dim": 3, "out_shape": [1, 8, 8], "width": 3}
    assert [type(n) for n in net.config["out_shape"]] == [int] * 3
    rebuilt = build_generator(net.config)
    rebuilt.load_state_dict(net.state_dict())
    z = net.sample_latent(2, generator=gen(0))
    assert rebuilt.config == net.config and torch.equal(rebuilt(z), net(z))


def test_latents_are_drawn_where_the_generator_is() -> None:
    net = ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=2).to("meta")
    assert net.sample_latent(3).device.type == "meta"


def test_latents_are_drawn_in_the_generators_dtype() -> None:
    """Drawn in torch's default dtype, a float64 generator's own latents were refused by its
    first layer ("mat1 and mat2 must have the same dtype"); a float32 net draws as before."""
    net = ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=2)
    assert torch.equal(net.sample_latent(3, generator=gen(0)), torch.randn(3, 4, generator=gen(0)))
    net.double()
    assert net(net.sample_latent(3, generator=gen(0))).dtype == torch.float64
    assert net.sample_latent(3, device="meta").device.type == "meta"  # where the caller says
    with pytest.raises(ValueError, match=r"expected z of dtype torch.float64 \(the network's\), "
                                         r"got torch.float32"):
        net(torch.zeros(3, 4))


def test_a_generator_is_built_on_the_meta_device_and_says_its_shapes() -> None:
    """Built under torch.device("meta") (shapes first, weights later), it read a count from a
    tensor made there, which holds no value."""
    with torch.device("meta"):
        net = ConvGenerator(latent_dim=4, out_shape=(1, 8, 8), width=2)
    assert net.project.weight.device.type == "meta"
    assert net.extra_repr() == "latent_dim=4, out_shape=(1, 8, 8)"


# --------------------------------------------------------------------------- training


class FixedRevision:
    """A sampler whose revision of any proposal is the same fixed example."""

    n_steps = 1

    def __init__(self, target: Tensor) -> None:
        self.target = target

    def run(self, energy, x0, *, constraint=None, generator=None, callback=None) -> Tensor:
        return self.target.expand_as(x0).clone()


def make_trainer(*, init_seed: int = 0, inference_steps: int = 0, lr: float = 0.01,
                 sampler=None, data: Tensor | None = None, inference_sigma: float = 0.3,
                 world: World | None = None) -> CooperativeTrainer:
    data = tiny_data(size=8) if data is None else data
    energy = tiny_energy(init_seed)
    torch.manual_seed(init_seed + 1)
    net = ConvGenerator(latent_dim=4, out_shape=data.shape[1:], width=4)
    # fp32: "auto" may time bfloat16 against fp32 on this CPU, and a timing is no bit-exact
    # choice for the resume tests.
    sampler = sampler or Langevin(n_steps=3, step_size=0.05, clamp=(-1.0, 1.0), precision="fp32")
    # The step size only where inference runs: without inference steps it is refused, unread.
    inference = ({"inference_steps": inference_steps, "inference_step_size": 0.05,
                  "inference_sigma": inference_sigma} if inference_steps else {})
    cooperative = CooperativeConfig(latent_dim=4, width=4, lr=lr, **inference)
    return CooperativeTrainer(energy, net, sampler, data, cooperative=cooperative,
                              chains_per_example=2, train=TrainConfig(batch_size=2),
                              generator=gen(0), config={"cooperative": {}}, world=world)


def test_cooperative_settings_given_as_a_dict_are_refused_naming_the_section() -> None:
    """They failed at their first read, as "'dict' object has no attribute 'lr'"."""
    with pytest.raises(ValueError, match=r"^cooperative must be a CooperativeConfig \("
                                         r"CooperativeConfig\(\*\*settings\) for a dict of "
                                         r"them\) or None, got dict$"):
        CooperativeTrainer(tiny_energy(), ConvGenerator(latent_dim=4, out_shape=(1, 8, 8)),
                           Langevin(n_steps=1), tiny_data(size=8), cooperative={"lr": 0.1})


def test_a_step_inside_no_grad_is_the_same_step() -> None:
    """The descriptor's and the generator's backward passes failed inside torch.no_grad()."""
    assert_same_step_inside_no_grad(make_trainer)


def test_the_generator_learns_to_reproduce_a_fixed_revision() -> None:
    target = torch.linspace(-0.8, 0.8, 64).reshape(1, 1, 8, 8)
    trainer = make_trainer(sampler=FixedRevision(target))
    z = trainer.generator_net.sample_latent(16, generator=gen(5))
    before = (trainer.generator_net(z) - target).pow(2).mean().item()
    history = trainer.fit(40, progress=False)
    after = (trainer.generator_net(z) - target).pow(2).mean().item()
    assert after < 0.1 * before, (before, after)
    assert history[-1]["generator_mse"] < 0.1 * history[0]["generator_mse"]


@pytest.mark.parametrize("inference_steps", [0, 2])
def test_every_generator_step_moves_it_toward_that_steps_revised_samples(
        inference_steps: int) -> None:
    """On a real descriptor and Langevin revision: after each step the generator is closer to
    the revised samples it was taught with (at the latents it was taught with) than before."""
    trainer = make_trainer(inference_steps=inference_steps, lr=0.003)
    taught: list[tuple[Tensor, Tensor]] = []
    take = trainer.proposals.take

    def recording_take() -> list[tuple[Tensor, Tensor]]:
        pairs = take()
        taught.extend(pairs)
        return pairs

    trainer.proposals.take = recording_take
    for _ in range(5):
        taught.clear()
        before = copy.deepcopy(trainer.generator_net)
        stats = trainer.step()
        (z, revised), = taught
        assert revised.shape == (4, 1, 8, 8)
        if inference_steps == 0:
            # The logged error is the mean square of the step's own pairs, before its update.
            assert stats["generator_mse"] == pytest.approx(
                (before(z) - revised).pow(2).mean().item())
            after = (trainer.generator_net(z) - revised).pow(2).mean().item()
            assert after < stats["generator_mse"]
        else:  # taught at the latents inferred from the revision, not at the proposal's
            assert stats["generator_mse"] != pytest.approx(
                (before(z) - revised).pow(2).mean().item())
    assert {"loss", "e_pos", "e_neg", "generator_mse"} <= set(stats)


def test_latent_posterior_is_an_energy_per_example() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.randn(4, 3)
    target = net(z).detach()
    posterior = LatentPosterior(net, target, sigma=0.3)
    assert torch.allclose(posterior(z), z.pow(2).sum(1) / 2, atol=1e-5)
    assert posterior(z).shape == (4,)


def test_generator_start_pairs_each_revision_with_its_latents() -> None:
    torch.manual_seed(0)
    start = GeneratorStart(ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2),
                           chains_per_example=2)
    x0 = start.start(tiny_data(size=8)[:2], torch.arange(2), generator=gen(0))
    assert x0.shape == (4, 1, 8, 8) and not x0.requires_grad
    with pytest.raises(ValueError, match="not those of the last start"):
        start.keep(x0[:3])
    start.keep(x0 + 1)
    with pytest.raises(ValueError, match="not those of the last start"):
        start.keep(x0)  # a second keep for one start would pair the latents twice
    (z, revised), = start.take()
    assert z.shape == (4, 3) and torch.equal(revised, x0 + 1)
    assert start.take() == []
    with pytest.raises(ValueError, match=r"the generator makes examples \(1, 8, 8\)"):
        start.start(tiny_data(size=16), torch.arange(3))


def test_training_chains_start_where_synthesis_does() -> None:
    """Bounded by the sampler's clamp, as propose bounds synthesis's starts: a generator whose
    unsquashed output leaves the data's range does not start training's chains out there."""
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(20)
    start = GeneratorStart(net, clamp=(-1.0, 1.0))
    x0 = start.start(tiny_data(size=8)[:4], torch.arange(4), generator=gen(0))
    start.keep(x0)
    (z, _), = start.take()
    assert x0.abs().max() <= 1 and torch.equal(x0, propose(net, z, clamp=(-1.0, 1.0)))
    assert net(z).abs().max() > 1  # what the start was bounded from


def test_a_video_descriptor_learns_cooperatively() -> None:
    clips = torch.rand(2, 3, 4, 8, 8, generator=gen(3)) * 2 - 1
    torch.manual_seed(0)
    energy = video_energy("st_small", layers=[[4, 3, 2, 1], [4, 2, 1]], reference_sigma=0.5)
    net = ConvGenerator(latent_dim=4, out_shape=clips.shape[1:], width=2)
    trainer = CooperativeTrainer(energy, net, Langevin(n_steps=2, step_size=0.05), clips,
                                 train=TrainConfig(batch_size=2), generator=gen(0))
    trainer.fit(2, progress=False)
    assert trainer.last_samples.shape == (2, 3, 4, 8, 8)


# --------------------------------------------------------------------------- save and resume


@pytest.mark.parametrize("inference_steps", [0, 2])
def test_resume_takes_the_same_steps(tmp_path: Path, inference_steps: int) -> None:
    straight = make_trainer(inference_steps=inference_steps)
    straight.fit(4, progress=False)

    first = make_trainer(inference_steps=inference_steps)
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    del first
    second = make_trainer(init_seed=7, inference_steps=inference_steps)
    assert not torch.equal(next(second.generator_net.parameters()),
                           next(straight.generator_net.parameters()))
    second.resume(tmp_path / "checkpoint.pt")
    assert second.fit(4, progress=False) and second.iteration == 4
    assert_same(straight.state_dict(), second.state_dict())
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert {"generator_model", "generator_config", "generator_optimizer"} <= set(state)


def test_resume_refuses_another_generator_or_a_descriptor_run(tmp_path: Path) -> None:
    trainer = make_trainer()
    trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    other = CooperativeTrainer(tiny_energy(), ConvGenerator(latent_dim=5, out_shape=(1, 8, 8)),
                               Langevin(n_steps=1), tiny_data(size=8))
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match="generator .* is not the one this config builds.*"
                                         "no --set that changes it"):
        other.resume(tmp_path / "checkpoint.pt")
    assert_same(before, other.state_dict())  # refused before anything loads, the energy too


def test_a_cooperative_run_refuses_to_resume_a_descriptor_run(tmp_path: Path) -> None:
    data = tiny_data(size=8)
    Trainer(tiny_energy(), Langevin(n_steps=1), PersistentChains(len(data), NoiseInit()),
            data).fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    with pytest.raises(CheckpointError, match="holds no generator: it is not a cooperative run"):
        make_trainer().resume(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="holds no generator \\(not a cooperative run\\)"):
        generator_from_state(load_checkpoint(tmp_path / "checkpoint.pt"), "run")
    config = ConvGenerator(latent_dim=5, out_shape=(1, 8, 8)).config
    with pytest.raises(CheckpointError, match="holds no loadable generator"):  # weights damaged
        generator_from_state({"generator_model": [1], "generator_config": config}, "run")
    other = ConvGenerator(latent_dim=4, out_shape=(1, 8, 8)).state_dict()  # another net's
    with pytest.raises(CheckpointError, match="(?s)holds no loadable generator: .*size mismatch"):
        generator_from_state({"generator_model": other, "generator_config": config}, "run")


def test_a_float64_generator_comes_back_as_float64() -> None:
    """Rebuilt from its config in float32 and loaded into that, a float64 generator came back
    as float32; it comes back as saved."""
    net = ConvGenerator(latent_dim=5, out_shape=(1, 8, 8)).double()
    loaded = generator_from_state({"generator_model": net.state_dict(),
                                   "generator_config": net.config}, "run")
    assert next(loaded.parameters()).dtype == torch.float64
    assert not loaded.training  # rebuilt to sample with, in eval mode
    z = torch.randn(2, 5, dtype=torch.float64)
    assert torch.equal(loaded(z), net.eval()(z))


def test_a_step_stopped_by_the_latent_inference_moves_neither_net() -> None:
    """The descriptor took its update before the generator's inference chain ran: stopped
    there, and retried as the error advises, the descriptor took a second one, and the error
    named only "Langevin", which reads as the descriptor's sampler."""
    trainer = make_trainer(inference_steps=2)
    trainer.fit(1, progress=False)
    before = copy.deepcopy(trainer.state_dict())
    trainer.inference = DivergingOnce(trainer.inference)
    with pytest.raises(NonFiniteEnergyError, match=r"^Langevin of the generator's latent "
                                                   r"inference \(cooperative\.inference_step_"
                                                   r"size\): .* at step 0 of 2 in chain 1;"
                       ) as info:
        trainer.step()
    assert info.value.chains == (1,)
    # Its own step size, not Langevin's clipping or clamp, which the cooperative section lacks.
    assert str(info.value).endswith("(lower cooperative.inference_step_size)"), info.value
    after = trainer.state_dict()
    del before["generator"], after["generator"]  # the retry draws afresh
    assert_same(before, after)
    trainer.step()
    assert trainer.iteration == 2


def test_a_step_retried_after_an_interrupt_learns_from_its_own_chains_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt after the chains ran (here in the descriptor's loss) left their pair with
    the proposals, and the retried step's generator learnt from it beside its own: it is the
    step a trainer that never stopped takes from the same weights and generator state."""
    interrupted, straight = make_trainer(), make_trainer()

    def interrupting(*args, **kwargs):
        monkeypatch.setattr("stgconv.train.contrastive_divergence", contrastive_divergence)
        raise KeyboardInterrupt

    monkeypatch.setattr("stgconv.train.contrastive_divergence", interrupting)
    with pytest.raises(KeyboardInterrupt):
        interrupted.step()
    assert interrupted.iteration == 0
    batches = interrupted.draw_batches()
    straight.generator.set_state(interrupted.generator.get_state())
    assert interrupted.step(batches) == straight.step(batches)
    assert_same(interrupted.state_dict(), straight.state_dict())


def test_a_float64_cooperative_run_takes_its_steps() -> None:
    """Its chain starts came from latents drawn in float32, which the float64 generator
    refused at the first step."""
    trainer = make_trainer(data=tiny_data(size=8).double())
    trainer.energy.double()
    trainer.generator_net.double()
    assert all(math.isfinite(value) for value in trainer.step().values())


def test_a_generator_whose_loss_overflows_is_reported() -> None:
    """The proposals are clamped, the generator's output is not: an output of 1e30 starts
    finite chains but its loss overflows float32, which must stop the step, not reach Adam."""
    data = tiny_data(n=4, size=8)
    net = ConvGenerator(latent_dim=4, out_shape=data.shape[1:], width=2)
    with torch.no_grad():
        net.body[-1].bias.fill_(1e30)
    trainer = CooperativeTrainer(tiny_energy(0), net, FixedRevision(torch.zeros(1, 1, 8, 8)),
                                 data, clamp=(-1.0, 1.0), train=TrainConfig(batch_size=2),
                                 generator=gen(0))
    with pytest.raises(FloatingPointError, match="non-finite generator loss at iteration 1: inf"):
        trainer.step()


def test_a_generator_diverging_in_fit_names_its_rate_and_the_last_good_checkpoint(
        tmp_path: Path) -> None:
    """The README's divergence promise for the generator's own loss: it said neither which
    checkpoint keeps the last good model nor what to change."""
    path = tmp_path / "checkpoint.pt"
    trainer = make_trainer(sampler=FixedRevision(torch.zeros(1, 1, 8, 8)))
    trainer.fit(1, checkpoint_path=path, progress=False)
    with torch.no_grad():
        trainer.generator_net.body[-1].bias.fill_(1e30)
    with pytest.raises(DivergenceError, match=r"non-finite generator loss at iteration 2: inf; "
                                              rf"{re.escape(str(path))} keeps iteration 1, the "
                                              r"last good model \(lower cooperative\.lr\)$"):
        trainer.fit(3, checkpoint_path=path, progress=False)
    assert load_checkpoint(path)["iteration"] == 1


def test_a_resume_names_generator_weights_that_are_not_finite(tmp_path: Path) -> None:
    """Only the descriptor's weights were checked: a checkpoint whose generator held a NaN
    weight resumed, and its first step said the chains started at NaN."""
    path = make_trainer().save(tmp_path / "checkpoint.pt")
    state = load_checkpoint(path)
    first = next(iter(state["generator_model"]))
    state["generator_model"][first] = torch.full_like(state["generator_model"][first], math.nan)
    save_checkpoint(state, path)
    trainer = make_trainer()
    with pytest.raises(CheckpointError, match=rf"checkpoint .*: the weights generator/"
                                              rf"{re.escape(first)} hold NaN or infinite"):
        trainer.resume(path)
    assert trainer.iteration == 0


def test_a_run_without_the_generator_refuses_to_resume_a_cooperative_run(tmp_path: Path
                                                                         ) -> None:
    make_trainer().fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    data = tiny_data(size=8)
    plain = Trainer(tiny_energy(), Langevin(n_steps=1),
                    PersistentChains(len(data), NoiseInit("gaussian", 0.5)), data)
    with pytest.raises(CheckpointError, match="also holds a trained generator net.* no --set that "
                                              "changes it"):
        plain.resume(tmp_path / "checkpoint.pt")  # its next checkpoint would drop the generator


def test_a_cooperative_run_refuses_a_checkpoint_that_holds_another_trained_net() -> None:
    """Its own generator is no other net, an initializer is: its next checkpoint would drop it."""
    state = {**make_trainer().state_dict(), "initializer_model": {}}
    with pytest.raises(ValueError, match="also holds a trained initializer net"):
        make_trainer().load_state_dict(state)


def test_a_resume_uses_its_own_generator_learning_rate(tmp_path: Path) -> None:
    make_trainer().fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    second = make_trainer(lr=0.0005)
    second.resume(tmp_path / "checkpoint.pt")
    assert [g["lr"] for g in second.generator_optimizer.param_groups] == [0.0005]


def test_a_diverged_generator_weight_is_named_with_its_own_learning_rate() -> None:
    """The divergence message names the weight and the setting that moves it: for the
    generator that is cooperative.lr, not the descriptor's train.lr."""
    trainer = make_trainer(lr=1e30)  # Adam's first step moves every generator weight by ~lr
    message = (r"weight generator/\S+ is 1e\+30, past the bound of 1e\+06; no checkpoint .*"
               r"\(lower cooperative\.lr\)$")
    with pytest.raises(DivergenceError, match=message):
        trainer.fit(1, progress=False)


def test_interpolation_runs_from_one_latent_to_the_other() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(2, 3)
    path = interpolate(tiny_energy(), net, None, z[0], z[1], n_points=5)
    assert path.shape == (5, 1, 8, 8)
    assert torch.allclose(path[0], net(z[:1])[0], atol=1e-6)
    assert torch.allclose(path[-1], net(z[1:])[0], atol=1e-6)
    revised = interpolate(tiny_energy(), net, Langevin(n_steps=2, step_size=0.05), z[0], z[1],
                          n_points=5, generator=gen(0))
    assert revised.shape == (5, 1, 8, 8) and not torch.equal(revised, path)


def test_interpolation_names_an_end_that_is_no_single_latent() -> None:
    """A batch of one latent, (1, latent_dim), was named as a z of shape (n_points, 1,
    latent_dim) that the caller never passed."""
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"^z_start must be one latent \(3,\), got \(1, 3\)$"):
        interpolate(tiny_energy(), net, None, z[:1], z[1:], n_points=3)
    with pytest.raises(ValueError, match=r"^z_end must be one latent \(3,\), got \(2,\)$"):
        interpolate(tiny_energy(), net, None, z[0], z[1, :2], n_points=3)


def test_interpolation_refuses_an_end_that_is_not_finite_naming_it() -> None:
    """A NaN in one latent made every point of the path NaN (0 * NaN at the other end): not
    revised, they came back as the interpolation without a word; revised, as a chain start
    that "holds NaN", naming no latent."""
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.randn(2, 3)
    z[1, 2] = float("nan")
    for sampler in (None, Langevin(n_steps=1)):
        with pytest.raises(ValueError, match=r"^z_end holds NaN or infinite values: z_end must "
                                             r"be finite$"):
            interpolate(tiny_energy(), net, sampler, z[0], z[1], n_points=3)
    with pytest.raises(ValueError, match=r"^z_start holds NaN or infinite values"):
        latent_path(torch.full((3,), float("inf")), z[0], n_points=2)


def test_synthesis_refuses_latents_that_are_not_finite_naming_them() -> None:
    """NaN latents made NaN proposals: without a sampler they came back as the samples, with
    one they were refused as a chain start "x0" that "holds NaN", which was never passed."""
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.randn(2, 3)
    z[1, 0] = float("inf")
    for sampler in (None, Langevin(n_steps=1)):
        with pytest.raises(ValueError, match=r"^z holds NaN or infinite values: latents must be "
                                             r"finite$"):
            propose_and_revise(tiny_energy(), net, sampler, z)
    with pytest.raises(ValueError, match=r"^z must be a torch.Tensor, got ndarray"):
        propose_and_revise(tiny_energy(), net, None, z.numpy())


def test_interpolation_revises_every_point_with_the_same_chain_noise() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(3)
    # A path of two points from a latent to itself: both start alike, only noise could part them.
    sampler = Langevin(n_steps=2, step_size=0.05, precision="fp32")
    assert torch.equal(*interpolate(tiny_energy(), net, None, z, z, n_points=2))
    assert torch.equal(*interpolate(tiny_energy(), net, sampler, z, z, n_points=2,
                                    generator=gen(0)))


# --------------------------------------------------------------------------- config


COOP_CONFIG = ROOT / "configs" / "image" / "coop_mnist_quick.yaml"


@pytest.mark.parametrize("override, message", [
    ("cooperative.latent_size=3", "unknown config key.*cooperative.latent_size"),
    ("cooperative.latent_dim=0", "cooperative.latent_dim must be positive"),
    ("cooperative.lr=-1", "cooperative.lr must be positive"),
    ("cooperative.betas=[0.5, 1.0]", r"cooperative.betas must be in \[0, 1\)"),
    ("cooperative.inference_steps=-1", "cooperative.inference_steps must be >= 0"),
    ("cooperative.inference_sigma=0", "cooperative.inference_sigma must be positive"),
    ("cooperative.width=two", "cooperative.width must be an integer"),
    ("multigrid={grids: [{size: 28}]}", "cooperative and multigrid are set"),
])
def test_config_checks_the_cooperative_section(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(COOP_CONFIG, [override])


def test_the_shipped_cooperative_configs_load() -> None:
    for path in [COOP_CONFIG, ROOT / "configs/image/coop_animals_quick.yaml",
                 ROOT / "configs/video/coop_fire_pot_quick.yaml"]:
        assert load_config(path).cooperative is not None, path


# --------------------------------------------------------------------------- CLI


TINY = ["--set", "data.kind=texture", "--set", "data.max_images=null",
        "--set", "data.path=builtin:brick", "--set", "data.size=16",
        "--set", "model.arch=texture", "--set", "model.layers=[[4, 3, 2], [4, 3, 1]]",
        "--set", "cooperative.latent_dim=4", "--set", "cooperative.width=2",
        "--set", "train.n_iterations=2", "--set", "train.batch_size=2",
        "--set", "sampler.n_steps=2", "--set", "train.sample_every=1", "--set", "device=cpu",
        "--quiet"]


@pytest.fixture(scope="module")
def coop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coop") / "run"
    assert main(["train", str(COOP_CONFIG), *TINY, "--out", str(out)]) == 0
    return out


def test_synthesize_refuses_a_cooperative_sample_too_large_before_drawing_it(
        coop_run: Path, tmp_path: Path, monkeypatch) -> None:
    # Three 16x16 samples are 768 entries.
    assert_a_sample_too_large_is_refused_before_drawing(coop_run, tmp_path, monkeypatch)


def test_synthesize_refuses_what_a_cooperative_model_cannot_do(coop_run: Path,
                                                           tmp_path: Path) -> None:
    """Its generator makes no class: the classes would be silently ignored."""
    with pytest.raises(ValueError, match="not a classifier"):
        synthesize(coop_run, tmp_path / "out", classes=[0], device="cpu")
    with pytest.raises(ValueError, match="n_steps must be an int >= 0, got -1"):
        synthesize(coop_run, tmp_path / "out", n_steps=-1, device="cpu")
    with pytest.raises(ValueError, match="start='chains' do not apply"):
        synthesize(coop_run, tmp_path / "out", start="chains", device="cpu")


def test_train_writes_a_cooperative_run(coop_run: Path) -> None:
    assert (coop_run / "samples.png").is_file() and (coop_run / "samples_000002.png").is_file()
    energy, config, state = load_model(coop_run, device="cpu")
    assert config.cooperative is not None and state["iteration"] == 2
    net = generator_from_state(state, coop_run)
    assert net.out_shape == (1, 16, 16)


def test_synthesize_goes_through_the_generator(coop_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["synthesize", str(coop_run), "-n", "3", "--steps", "0", "--out",
                 str(tmp_path / "none"), "--device", "cpu"]) == 0
    proposals = np.load(tmp_path / "none" / "proposals.npy")
    assert proposals.shape == (3, 1, 16, 16)
    assert np.array_equal(proposals, np.load(tmp_path / "none" / "synthesized.npy"))
    assert main(["synthesize", str(coop_run), "-n", "3", "--steps", "2", "--out",
                 str(tmp_path / "two"), "--device", "cpu"]) == 0
    # The same seed draws the same latents; the revision moves the proposals.
    assert np.array_equal(proposals, np.load(tmp_path / "two" / "proposals.npy"))
    assert not np.array_equal(proposals, np.load(tmp_path / "two" / "synthesized.npy"))
    assert (tmp_path / "two" / "synthesized.png").is_file()
    assert main(["synthesize", str(coop_run), "-n", "3", "--steps", "0", "--seed", "1",
                 "--out", str(tmp_path / "seed 1"), "--device", "cpu"]) == 0
    assert not np.array_equal(proposals, np.load(tmp_path / "seed 1" / "proposals.npy"))
    capsys.readouterr()
    assert main(["synthesize", str(coop_run), "--size", "32", "--device", "cpu",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "cooperative model samples through its generator" in capsys.readouterr().err


def test_interpolate_walks_between_two_latents(coop_run: Path, tmp_path: Path) -> None:
    for again in ("first", "second"):  # the seed draws the latents: the same path twice
        assert main(["interpolate", str(coop_run), "--points", "4", "--seed", "3",
                     "--out", str(tmp_path / again), "--device", "cpu"]) == 0
    assert (tmp_path / "first" / "interpolation.png").is_file()
    assert np.array_equal(np.load(tmp_path / "first" / "interpolation.npy"),
                          np.load(tmp_path / "second" / "interpolation.npy"))


def test_interpolate_walks_from_the_first_latent_the_seed_draws_to_the_second(
        coop_run: Path, tmp_path: Path, monkeypatch) -> None:
    import stgconv.cooperative

    walk, ends = stgconv.cooperative.interpolate, []

    def recording(energy, net, sampler, z_start, z_end, **kwargs):
        ends.extend([z_start, z_end])
        return walk(energy, net, sampler, z_start, z_end, **kwargs)

    monkeypatch.setattr(stgconv.cooperative, "interpolate", recording)
    assert main(["interpolate", str(coop_run), "--points", "2", "--seed", "3",
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    net = generator_from_state(load_checkpoint(coop_run), coop_run)
    assert all(map(torch.equal, ends, net.sample_latent(2, generator=gen(3))))


@pytest.mark.parametrize("n_points", [3, 65])
def test_the_interpolation_preview_shows_points_spread_from_end_to_end(
        coop_run: Path, tmp_path: Path, monkeypatch, n_points: int) -> None:
    """Every point where the path has no more than the 64 a PNG shows, once each; else 64
    points at the nearest positions to even steps along it, both ends included."""
    from stgconv.modalities.image import ImageModality

    written: dict[str, Tensor] = {}

    def recording(name: str):
        write = getattr(ImageModality, name)

        def recorded(self, batch, stem, **kwargs):
            written[name] = batch
            return write(self, batch, stem, **kwargs)
        return recorded

    for name in ("preview", "save_array"):
        monkeypatch.setattr(ImageModality, name, recording(name))
    assert main(["interpolate", str(coop_run), "--points", str(n_points),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    at = np.round(np.linspace(0, n_points - 1, min(n_points, 64))).astype(int)
    assert len(set(at)) == len(at) and at[-1] == n_points - 1
    assert len(written["save_array"]) == n_points
    assert torch.equal(written["preview"], written["save_array"][at])


def test_a_cooperative_interpolation_too_large_is_refused_before_its_path(
        coop_run: Path, tmp_path: Path, monkeypatch) -> None:
    import stgconv.cooperative

    def drawn(*_, **__):
        raise AssertionError("the path was drawn")

    monkeypatch.setattr(stgconv.cooperative, "interpolate", drawn)
    with pytest.raises(ValueError, match=r"1048577 points makes a \(1048577, 1, 16, 16\) tensor"):
        interpolate_task(coop_run, tmp_path / "out", n_points=2**20 + 1, device="cpu")


def test_reconstructing_with_a_cooperative_model_warns_that_it_learned_from_its_generator(
        coop_run: Path, tmp_path: Path) -> None:
    Image.new("L", (16, 16)).save(tmp_path / "target.png")
    # Only reconstruct runs a chain from noise: interpolate walks the generator's latents, which
    # the warning said it did not do either ("that reconstruct and interpolate run").
    with pytest.warns(RuntimeWarning, match=r"trained from its generator's proposals, not from "
                                            r"noise starts: the 2-step chain from noise that "
                                            r"reconstruct runs is not the generator it learned "
                                            r"\(interpolate walks its generator's latents\)$"):
        reconstruct(coop_run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                    device="cpu")


@pytest.mark.parametrize("command, module, revises", [
    (["interpolate", "--points", "2"], "stgconv.cooperative", "interpolate"),
    (["synthesize", "-n", "1", "--steps", "1"], "stgconv.tasks.synthesize", "propose_and_revise"),
], ids=["interpolate", "synthesize"])
def test_a_command_revises_clamped_proposals_on_the_seeded_stream(
        coop_run: Path, tmp_path: Path, monkeypatch, command: list[str], module: str,
        revises: str) -> None:
    """The proposals of interpolate's path and of synthesize are bounded by the model's clamp
    and their chain noise comes from the --seed generator (without them: unbounded proposals,
    torch's default seed)."""
    owner = importlib.import_module(module)
    walk = getattr(owner, revises)
    asked = []

    def recording(*args, clamp=None, generator=None, **kwargs):
        asked.append((clamp, None if generator is None else generator.initial_seed()))
        return walk(*args, clamp=clamp, generator=generator, **kwargs)

    monkeypatch.setattr(owner, revises, recording)
    assert main([command[0], str(coop_run), *command[1:], "--seed", "3",
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert asked == [((-1.0, 1.0), 3)]


def test_train_resume_continues_a_cooperative_run(coop_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", str(COOP_CONFIG), *TINY, "--out", str(out)]) == 0
    assert main(["train", str(COOP_CONFIG), *TINY, "--set", "train.n_iterations=3",
                 "--out", str(out), "--resume"]) == 0
    assert load_checkpoint(out)["iteration"] == 3


def test_a_bad_cooperative_key_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", str(COOP_CONFIG), *TINY, "--set", "cooperative.latent=3",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stgconv train: error: --set cooperative.latent=3: unknown config "
                          "key(s) cooperative.latent")
    assert err.count("\n") == 1


@pytest.fixture
def video_clip(tmp_path: Path) -> Path:
    from stgconv.io.video import save_video

    return save_video(torch.rand(3, 8, 16, 16, generator=gen(0)) * 2 - 1, tmp_path / "clip.mp4")


@pytest.fixture
def voxel_shapes(tmp_path: Path) -> Path:
    path = tmp_path / "shapes.npz"
    np.savez(path, X=boxes_and_balls(6, 8)[:, 0].numpy().astype(np.uint8),
             y=np.zeros(6, dtype=np.int64))
    return path


SMALL = ["--set", "cooperative={latent_dim: 4, width: 2}", "--set", "train.n_iterations=2",
         "--set", "train.batch_size=2", "--set", "sampler.n_steps=2", "--set",
         "train.sample_every=0", "--set", "train.checkpoint_every=0", "--set", "device=cpu",
         "--quiet"]


def test_interpolate_names_a_config_less_voxel_checkpoint_as_synthesize_does(
        tmp_path: Path, capsys) -> None:
    """A CooperativeTrainer given no config= saves the defaults' images: synthesize refused its
    voxel model naming that, interpolate sampled its path and then failed at the preview as
    "expected images (N, C, H, W), got (2, 1, 8, 8, 8)"."""
    torch.manual_seed(0)
    energy = voxel_energy("desc32_small", size=8, layers=[[2, 4, 2, 1]])
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8, 8), width=2)
    shapes = boxes_and_balls(2, 8) - 0.5
    CooperativeTrainer(energy, net, Langevin(n_steps=1), shapes, train=TrainConfig(batch_size=2),
                       generator=gen(0)).save(tmp_path / "run" / "checkpoint.pt")
    for command in ("synthesize", "interpolate"):
        assert main([command, str(tmp_path / "run"), "--out", str(tmp_path / command),
                     "--device", "cpu"]) == 2
        assert (f"the net of {tmp_path / 'run'} takes 3-D inputs, but its config's data are "
                "2-D" in capsys.readouterr().err)
        assert not (tmp_path / command).exists()


@pytest.mark.parametrize("kind", ["video", "voxel"])
def test_a_video_and_a_voxel_cooperative_model_train_synthesize_and_interpolate(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if kind == "video":
        config = ROOT / "configs/video/coop_fire_pot_quick.yaml"
        data = request.getfixturevalue("video_clip")
        options = ["--set", "data.size=16", "--set", "data.frames=4", "--set", "data.fps=50"]
        shape = (3, 4, 16, 16)
    else:  # no shipped voxel cooperative config: the chairs config plus the section
        config = ROOT / "configs/voxel/synthesis_chairs_quick.yaml"
        data = request.getfixturevalue("voxel_shapes")
        # chains.init_scale=0: the chairs' noise start, which the generator replaces.
        options = ["--set", "data.size=8", "--set", "data.categories=null", "--set",
                   "model.layers=[[4, 4, 2, 1]]", "--set", "chains.init_scale=0"]
        shape = (8, 8, 8)  # occupancies, the channel dropped
    run = tmp_path / "run"
    assert main(["train", str(config), "--data", str(data), *options, *SMALL,
                 "--out", str(run)]) == 0
    assert generator_from_state(load_checkpoint(run), run).out_shape[-3:] == shape[-3:]
    assert main(["synthesize", str(run), "-n", "2", "--steps", "1", "--out",
                 str(tmp_path / "samples"), "--device", "cpu"]) == 0
    for stem in ("proposals", "synthesized"):
        assert np.load(tmp_path / "samples" / f"{stem}.npy").shape == (2, *shape)
    # More points than a preview shows (4 clips, 16 shapes): every point in the .npy (the voxel
    # preview's .npy of the 16 it shows replaced it), and the preview's clips spread from end
    # to end (it showed the first 4 of 8, never reaching the end).
    points = 7 if kind == "video" else 17
    assert main(["interpolate", str(run), "--points", str(points), "--out",
                 str(tmp_path / "path"), "--device", "cpu"]) == 0
    path = np.load(tmp_path / "path" / "interpolation.npy")
    assert path.shape == (points, *shape)
    # In the data's value range, as synthesize writes samples: grey levels 0-255, or voxel
    # occupancies in [0, 1] (the model's units are occupancy less the training mean).
    assert path.min() >= 0 and path.max() <= (255 if kind == "video" else 1)
    if kind == "video":
        with Image.open(tmp_path / "path" / "interpolation.gif") as gif:
            first = np.asarray(gif.convert("RGB"), dtype=np.float64)
            assert gif.info["duration"] == 20  # played at data.fps
        side = shape[-1]
        panels = [first[-side:, i * (side + 4):i * (side + 4) + side] for i in range(4)]

        def frame(point: int) -> np.ndarray:  # the first frame of a point, 0-255 (H, W, C)
            return path[point][:, 0].transpose(1, 2, 0)

        errors = [np.abs(panels[-1] - frame(point)).mean() for point in range(7)]
        assert int(np.argmin(errors)) == 6, errors
    else:
        assert list((tmp_path / "path").glob("interpolation.*"))


def test_latent_posterior_weighs_the_residual_by_two_sigma_squared() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.randn(2, 3)
    target = net(z).detach() + 1.0
    energy = LatentPosterior(net, target, sigma=0.5)(z)
    torch.testing.assert_close(energy, 64 / (2 * 0.25) + z.pow(2).sum(1) / 2)


def test_generator_widths_are_capped_at_eight_times_width() -> None:
    # 64x64 from width 2: the channels stop at 8 x width; the body starts with its ReLU.
    net = ConvGenerator(latent_dim=2, out_shape=(1, 64, 64), width=2)
    assert net.base == (4, 4) and net.base_channels == 16
    assert isinstance(net.body[0], torch.nn.ReLU)


def test_cooperative_synthesis_revises_the_proposals_by_default(tmp_path: Path) -> None:
    """Without n_steps a cooperative model's proposals are revised by its sampler's task
    chain (only n_steps=0 keeps them as they are)."""
    run = tiny_texture_run(tmp_path, "cooperative={latent_dim: 4, width: 2}",
                            "train.batch_size=1")
    from stgconv.tasks import synthesize

    out = synthesize(run, tmp_path / "s", n_samples=2, device="cpu")
    assert not np.array_equal(np.load(out / "proposals.npy"), np.load(out / "synthesized.npy"))


def record_taught(trainer: CooperativeTrainer) -> list[tuple[Tensor, Tensor]]:
    """The ``(latents, revised)`` pairs the generator is taught from, as ``trainer`` takes
    them."""
    taught = []
    take = trainer.proposals.take

    def recording_take():
        pairs = take()
        taught.extend(pairs)
        return pairs

    trainer.proposals.take = recording_take
    return taught


def test_generator_mse_is_the_mean_over_the_micro_batches() -> None:
    data = tiny_data(n=4, size=8)
    torch.manual_seed(1)
    net = ConvGenerator(latent_dim=4, out_shape=data.shape[1:], width=4)
    target = torch.linspace(-0.8, 0.8, 64).reshape(1, 1, 8, 8)
    trainer = CooperativeTrainer(tiny_energy(0), net, FixedRevision(target), data,
                                 cooperative=CooperativeConfig(latent_dim=4, width=4, lr=0.01),
                                 train=TrainConfig(batch_size=2, accumulate=2), generator=gen(0))
    taught = record_taught(trainer)
    snapshot = {k: v.clone() for k, v in net.state_dict().items()}
    stats = trainer.step()
    assert len(taught) == 2
    fresh = ConvGenerator(latent_dim=4, out_shape=data.shape[1:], width=4)
    fresh.load_state_dict(snapshot)
    with torch.no_grad():
        before = [(fresh(z) - revised).pow(2).mean().item() for z, revised in taught]
    assert abs(stats["generator_mse"] - sum(before) / 2) < 1e-5 * max(1.0, sum(before))
    # The gradient the step took (and TensorBoard's gradient norms show) is that mean's too.
    mean = sum((fresh(z) - revised).pow(2).mean() for z, revised in taught) / 2
    for expected, parameter in zip(torch.autograd.grad(mean, list(fresh.parameters())),
                                   net.parameters()):
        torch.testing.assert_close(parameter.grad, expected)


def test_propose_and_revise_draws_its_chain_noise_from_the_given_generator() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(2, 3)
    sampler = Langevin(n_steps=2, step_size=0.05)
    runs = [propose_and_revise(tiny_energy(), net, sampler, z, generator=gen(3))[1]
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = propose_and_revise(tiny_energy(), net, sampler, z, generator=gen(4))[1]
    assert not torch.equal(runs[0], other)


def test_a_float64_descriptor_beside_a_float32_generator_synthesizes_as_it_trained(
        tmp_path: Path) -> None:
    """The trainer casts the proposals to the data's dtype, so such a pair trains; synthesize
    and interpolate of its checkpoint then failed on "expected x of dtype torch.float64 (the
    network's)", advising a conversion their user cannot make. The proposals reach the
    descriptor in its dtype, as they do in training."""
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    energy = tiny_energy().double()
    z = torch.randn(2, 3)
    sampler = Langevin(n_steps=1, step_size=0.05, precision="fp32")
    proposals, revised = propose_and_revise(energy, net, sampler, z, generator=gen(3))
    assert proposals.dtype == revised.dtype == torch.float64
    torch.testing.assert_close(proposals, propose(net, z).double(), rtol=0, atol=0)
    path = interpolate(energy, net, None, z[0], z[1], n_points=2)
    torch.testing.assert_close(path, propose(net, z).double(), rtol=0, atol=0)
    trainer = CooperativeTrainer(energy, net, sampler, tiny_data(n=2, size=8).double(),
                                 train=TrainConfig(batch_size=2), generator=gen(0))
    run = trainer.save(tmp_path / "run" / "checkpoint.pt")
    with pytest.warns(RuntimeWarning, match="holds no config"):
        out = synthesize(run, tmp_path / "synthesis", n_samples=2, n_steps=1, device="cpu")
    assert np.load(out / "synthesized.npy").shape == (2, 1, 8, 8)
    with pytest.warns(RuntimeWarning, match="holds no config"):
        out = interpolate_task(run, tmp_path / "path", n_points=2, device="cpu")
    assert np.load(out / "interpolation.npy").shape == (2, 1, 8, 8)


def test_interpolating_a_config_less_checkpoint_names_the_sampler_that_stands_in(
        tmp_path: Path) -> None:
    """A CooperativeTrainer given no config= saves none of its sampler: interpolate revised the
    proposals with the defaults' as if it were the model's own, without a word."""
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    trainer = CooperativeTrainer(tiny_energy(), net, Langevin(n_steps=1), tiny_data(n=2, size=8),
                                 train=TrainConfig(batch_size=2), generator=gen(0))
    run = trainer.save(tmp_path / "run" / "checkpoint.pt")
    said = (r"holds no config \(a CooperativeTrainer given no config=\), so the sampler that "
            r"revises its generator's proposals is the defaults' \(20 Langevin steps of size "
            r"0.015\), which may not be the one it learned with: give the trainer its config "
            r"\(config=stgconv.config.config_to_dict\(...\)\) to use its own$")
    with pytest.warns(RuntimeWarning, match=said) as warned:
        interpolate_task(run, tmp_path / "path", n_points=2, device="cpu")
    assert [warning.filename for warning in warned] == [__file__]


def test_generator_start_refuses_zero_chains_per_example() -> None:
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    with pytest.raises(ValueError, match="chains_per_example must be an int >= 1"):
        GeneratorStart(net, chains_per_example=0)


def test_one_inference_step_teaches_the_generator_at_the_inferred_latents() -> None:
    trainer = make_trainer(inference_steps=1, lr=0.003)
    taught = record_taught(trainer)
    before = copy.deepcopy(trainer.generator_net)
    stats = trainer.step()
    (z, revised), = taught
    with torch.no_grad():
        at_proposal = (before(z) - revised).pow(2).mean().item()
    assert stats["generator_mse"] != pytest.approx(at_proposal)


@pytest.mark.parametrize("shape", [(1, 0, 8), (0, 8, 8)])
def test_the_generator_refuses_an_empty_example_shape(shape) -> None:
    with pytest.raises(ValueError, match="out_shape must be"):
        ConvGenerator(latent_dim=4, out_shape=shape)


@pytest.mark.parametrize("sigma", [CooperativeConfig().inference_sigma, 0.7])
def test_the_latent_inference_weighs_the_residual_by_cooperative_inference_sigma(
        sigma: float) -> None:
    trainer = make_trainer(inference_steps=1, inference_sigma=sigma)
    sigmas = []

    class Recording:
        def run(self, posterior, z, *, generator=None):
            sigmas.append(posterior.sigma)
            return z

    trainer.inference = Recording()
    trainer.step()
    assert sigmas and set(sigmas) == {sigma} != {1.0}


def test_cooperative_proposals_are_clamped_when_asked() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    proposals, revised = propose_and_revise(tiny_energy(), net, None, torch.randn(2, 3) * 10,
                                            clamp=(-0.01, 0.01))
    assert proposals.abs().max() == 0.01 and torch.equal(revised, proposals)


@pytest.mark.parametrize("clamp", [(1.0, -1.0), (0.5, 0.5), (math.nan, 1.0)])
def test_a_clamp_that_is_no_range_is_refused_naming_it(clamp: tuple[float, float]) -> None:
    """Bounds the wrong way round made every proposal their high bound (torch's clamp), and
    the trainer then learned from copies of one constant image, without a word; a NaN bound
    was reported as the chains' NaN start."""
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    said = r"^clamp must be \(low, high\), two real numbers with low < high"
    with pytest.raises(ValueError, match=said):
        propose_and_revise(tiny_energy(), net, None, torch.zeros(2, 3), clamp=clamp)
    with pytest.raises(ValueError, match=said):
        interpolate(tiny_energy(), net, None, torch.zeros(3), torch.ones(3), clamp=clamp)
    with pytest.raises(ValueError, match=said):
        CooperativeTrainer(tiny_energy(), net, Langevin(n_steps=1), tiny_data(size=8),
                           clamp=clamp)


def test_only_a_cooperative_state_is_cooperative() -> None:
    assert is_cooperative(make_trainer().state_dict())
    data = tiny_data(size=8)
    assert not is_cooperative(Trainer(tiny_energy(), Langevin(n_steps=1),
                                      PersistentChains(len(data), NoiseInit()), data).state_dict())


def test_generator_starts_come_in_the_datas_dtype() -> None:
    """A float32 generator proposing for float64 examples: its proposals, cast, are the
    chains' float64 starts."""
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    x0 = GeneratorStart(net).start(tiny_data(size=8)[:2].double(), torch.arange(2),
                                   generator=gen(0))
    assert x0.dtype == torch.float64
    torch.testing.assert_close(x0, propose(net, net.sample_latent(2, generator=gen(0))).double())


def test_the_latent_inference_takes_the_sections_steps_and_step_size() -> None:
    inference = make_trainer(inference_steps=2).inference  # inference_step_size 0.05
    assert (inference.n_steps, inference.step_size) == (2, 0.05)
    # In float32 always: the posterior is a new energy every step, nothing "auto" could time.
    assert inference.precision == "fp32"


def test_without_a_sampler_the_revision_is_the_unclamped_proposals_themselves() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    proposals, revised = propose_and_revise(tiny_energy(), net, None, torch.randn(2, 3) * 100)
    assert proposals.abs().max() > 1 and torch.equal(revised, proposals)


def test_interpolation_clamps_its_proposals_when_asked() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(2, 3) * 10
    path = interpolate(tiny_energy(), net, None, z[0], z[1], n_points=3, clamp=(-0.01, 0.01))
    assert path.abs().max() == 0.01
    latents = latent_path(z[0], z[1], n_points=3)
    torch.testing.assert_close(path, net(latents).clamp(-0.01, 0.01))


def test_cooperative_synthesis_names_a_seed_given_for_a_generator() -> None:
    """Without a sampler nothing is drawn, and the seed passed without a word."""
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2)
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="propose_and_revise: generator must be a torch"):
        propose_and_revise(tiny_energy(), net, None, z, generator=0)
    with pytest.raises(ValueError, match="cooperative.interpolate: generator must be a torch"):
        interpolate(tiny_energy(), net, None, z[0], z[1], n_points=2, generator=0)


class RecordingRevision(FixedRevision):
    """:class:`FixedRevision` that keeps the chain starts it was handed."""

    def __init__(self, target: Tensor) -> None:
        super().__init__(target)
        self.starts: list[Tensor] = []

    def run(self, energy, x0, *, constraint=None, generator=None, callback=None) -> Tensor:
        self.starts.append(x0)
        return super().run(energy, x0)


def test_the_trainer_bounds_its_chain_starts_by_its_clamp() -> None:
    """The trainer's ``clamp`` reaches the proposals its sampler starts from."""
    data = tiny_data(n=2, size=8)
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=data.shape[1:], width=2)
    with torch.no_grad():
        net.body[-1].bias.fill_(5.0)  # every unbounded proposal is far past 0.5
    sampler = RecordingRevision(torch.zeros(1, 1, 8, 8))
    trainer = CooperativeTrainer(tiny_energy(0), net, sampler, data, clamp=(-0.5, 0.5),
                                 train=TrainConfig(batch_size=2), generator=gen(0))
    trainer.step()
    (x0,) = sampler.starts
    assert x0.max() == 0.5 and x0.min() >= -0.5


def test_the_generator_learns_from_the_revision_as_a_constant() -> None:
    """A sampler whose output carries a graph (here through ``shift``) gets no gradient from
    the generator's loss: the revised chains are its target, not something it moves."""
    shift = torch.zeros((), requires_grad=True)

    class Shifting(FixedRevision):
        def run(self, energy, x0, *, constraint=None, generator=None, callback=None) -> Tensor:
            return super().run(energy, x0) + shift

    trainer = make_trainer(sampler=Shifting(torch.zeros(1, 1, 8, 8)))
    trainer.step()
    assert shift.grad is None


def test_the_generators_adam_takes_the_sections_betas() -> None:
    data = tiny_data(size=8)
    net = ConvGenerator(latent_dim=4, out_shape=data.shape[1:], width=2)
    cooperative = CooperativeConfig(latent_dim=4, width=2, betas=(0.25, 0.75))
    trainer = CooperativeTrainer(tiny_energy(0), net, Langevin(n_steps=1), data,
                                 cooperative=cooperative)
    assert [g["betas"] for g in trainer.generator_optimizer.param_groups] == [(0.25, 0.75)]


class OtherRank:
    """A fake all-reduce for rank 0 of two: the other rank adds a zero sum with weight 1, so
    a weighted mean of this rank's ``v`` over weight ``w`` comes out ``w v / (w + 1)``."""

    def __call__(self, flat: Tensor) -> None:
        flat[-1:] += 1


def test_with_several_processes_the_generators_gradient_and_error_are_weighted_means(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 of two, batch size 2, the other rank a zero gradient and error of weight 1: the
    generator's gradient and ``generator_mse`` are 2/3 of this rank's own, as the
    descriptor's are."""
    monkeypatch.setattr(torch.distributed, "all_reduce", OtherRank())
    alone = make_trainer(sampler=FixedRevision(torch.zeros(1, 1, 8, 8)))
    shared = make_trainer(sampler=FixedRevision(torch.zeros(1, 1, 8, 8)),
                          world=World(rank=0, size=2, device=torch.device("cpu")))
    own, averaged = alone.step(), shared.step()
    assert averaged["generator_mse"] == pytest.approx(own["generator_mse"] * 2 / 3, rel=1e-6)
    for one, both in zip(alone.generator_net.parameters(), shared.generator_net.parameters()):
        torch.testing.assert_close(both.grad, one.grad * 2 / 3)


def test_a_state_with_a_generator_config_but_no_weights_is_not_cooperative() -> None:
    config = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).config
    assert not is_cooperative({"generator_config": config})


def test_an_interpolation_has_eight_points_by_default() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(2, 3)
    assert interpolate(tiny_energy(), net, None, z[0], z[1]).shape == (8, 1, 8, 8)


def test_interpolation_draws_its_chain_noise_from_the_given_generator() -> None:
    torch.manual_seed(0)
    net = ConvGenerator(latent_dim=3, out_shape=(1, 8, 8), width=2).eval()
    z = torch.randn(2, 3)
    sampler = Langevin(n_steps=2, step_size=0.05, precision="fp32")
    runs = [interpolate(tiny_energy(), net, sampler, z[0], z[1], n_points=3, generator=gen(seed))
            for seed in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
