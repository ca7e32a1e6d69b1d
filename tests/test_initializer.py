"""The learned super-resolution initializer: its layout, that an untrained one is the trilinear
guess, that it learns what trilinear cannot, its checkpointing, and its config checks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _tiny import (
    SR_CONFIG,
    HostTraffic,
    assert_same_step_inside_no_grad,
    boxes_and_balls,
    gen,
    tiny_energy,
)
from test_train import assert_same
from torch import Tensor

from stgconv.baselines.voxel import downsample, nearest_known_fill, trilinear_binary_upsample
from stgconv.checkpoint import CheckpointError, load_checkpoint
from stgconv.config import InitializerConfig, TrainConfig, load_config
from stgconv.energy.base import ConvNetEnergy
from stgconv.initializer import (
    GUIDE_LOGIT,
    BlockUpsampler,
    Initializer,
    InitializerStart,
    InitializerTrainer,
    MaskedFiller,
    build_initializer,
    depth_to_space,
    has_initializer,
    initializer_from_state,
    space_to_depth,
)
from stgconv.mcmc import Langevin
from stgconv.metrics import voxel_errors
from stgconv.ops import block_down, block_top_k, linear_up
from stgconv.super_resolution import super_resolve_batch
from stgconv.train import DivergenceError, Trainer

FAST = InitializerConfig(factors=(2,), width=8, depth=3, steps=10, batch_size=8, lr=0.01,
                         crop=None, mirror=False)
ROOT = Path(__file__).resolve().parents[1]
RECOVERY_CONFIG = ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml"


def corner_shapes(n: int, seed: int) -> Tensor:
    """``(n, 1, 8, 8, 8)``: each 2^3 block is empty or holds one voxel, always its first corner.
    Its block mean (1/8) says a voxel is there, not where; trilinear guesses from the
    neighbours, a learner sees it is always the same corner."""
    occupied = (torch.rand(n, 1, 4, 4, 4, generator=gen(seed)) < 0.4).float()
    x = torch.zeros(n, 1, 8, 8, 8)
    x[..., ::2, ::2, ::2] = occupied
    return x


def voxel_energy(size: int) -> ConvNetEnergy:
    torch.manual_seed(0)
    return ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[4, 3, 1, 1]], head="sum",
                         input_size=(size,) * 3, reference_sigma=0.5)


def make_trainer(*, settings: InitializerConfig = FAST, init_seed: int = 0,
                 recovery: bool = False) -> InitializerTrainer:
    data = corner_shapes(16, seed=0)
    torch.manual_seed(init_seed)
    initializer = Initializer(() if recovery else settings.factors, recovery=recovery,
                              fold=settings.fold, width=settings.width, depth=settings.depth)
    return InitializerTrainer(voxel_energy(data.shape[-1]), initializer,
                              Langevin(n_steps=2, step_size=0.1, noise_scale=0.0), data - 0.1,
                              settings=settings, factor=2, missing=0.7, offset=0.1,
                              train=TrainConfig(batch_size=4, lr=0.01), generator=gen(1))


@pytest.mark.parametrize(("shift", "got"), [(0.0, "from 0.1 to 1.1"),
                                             (-0.5, "from -0.4 to 0.6")])
def test_data_that_is_not_occupancy_minus_the_offset_is_refused(shift: float, got: str) -> None:
    """The initializer's cross-entropy took occupancy given as the data (the offset 0.1 not
    subtracted) without a word, its targets then 0.1 and 1.1."""
    data = corner_shapes(4, seed=0) + shift
    with pytest.raises(ValueError, match=rf"data \+ offset lies in \[0, 1\], got data \+ "
                                         rf"offset {got}: subtract the offset"):
        InitializerTrainer(voxel_energy(8), Initializer([2], width=2, depth=2),
                           Langevin(n_steps=1, step_size=0.1), data, settings=FAST, factor=2,
                           offset=0.1, generator=gen(1))


@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (2, 1, 4, 8, 12)])
def test_space_to_depth_puts_each_block_in_the_channels(shape) -> None:
    x = torch.randn(shape, generator=gen(0))
    folded = space_to_depth(x, 2)
    k = len(shape) - 2
    assert folded.shape == (shape[0], shape[1] * 2**k, *(n // 2 for n in shape[2:]))
    assert torch.equal(depth_to_space(folded, 2), x)
    # The channel mean of a coarse cell is its block's mean.
    means = folded.reshape(shape[0], shape[1], 2**k, *folded.shape[2:]).mean(2)
    torch.testing.assert_close(means, block_down(x, (2,) * k))


def test_each_net_of_an_initializer_says_its_block_size() -> None:
    """nn.Module's repr shows the convolutions, not the block size a net up-samples by or
    the fold of the filler's coarse grid."""
    initializer = Initializer([4], recovery=True, fold=2, spatial_dims=2, width=2, depth=2)
    assert initializer.nets["4"].extra_repr() == "factor=4"
    assert initializer.nets["recovery"].extra_repr() == "fold=2"


def test_an_untrained_initializer_ranks_every_block_as_trilinear_does() -> None:
    shapes = boxes_and_balls(4, 16)
    torch.manual_seed(0)
    initializer = Initializer([4, 2], width=4, depth=2)
    for factor in (4, 2):
        low = downsample(shapes, factor)
        ours = block_top_k(initializer.logits(low, factor), low, (factor,) * 3)
        assert torch.equal(ours, trilinear_binary_upsample(low, factor))
    with pytest.raises(ValueError, match=r"learned block sizes \[4, 2\], not 8"):
        initializer.logits(downsample(shapes, 8), 8)
    with pytest.raises(ValueError, match="distinct"):
        Initializer([2, 2])


def test_it_learns_where_each_block_keeps_its_voxel() -> None:
    trainer = make_trainer()
    history = trainer.fit(15, progress=False)
    assert history[-1]["initializer_bce"] < history[0]["initializer_bce"] / 2
    assert {"loss", "e_pos", "e_neg"} <= set(history[-1])
    test = corner_shapes(16, seed=5)
    low = downsample(test, 2)
    with torch.no_grad():
        learned = block_top_k(trainer.initializer.logits(low, 2), low, (2, 2, 2))
    learned_error = voxel_errors(learned, test).mean().item()
    trilinear_error = voxel_errors(trilinear_binary_upsample(low, 2), test).mean().item()
    assert trilinear_error > 0.05 and learned_error < trilinear_error / 4


def test_super_resolution_starts_at_the_proposal_made_consistent() -> None:
    shapes = corner_shapes(4, seed=2)
    torch.manual_seed(0)
    initializer = Initializer([2], width=4, depth=2)
    with torch.no_grad():
        initializer.nets["2"].last.bias.fill_(0.7)  # a proposal far from the block means
    low = downsample(shapes, 2)
    proposal = initializer.propose(low, 2)
    assert not torch.allclose(block_down(proposal, (2, 2, 2)), low)
    still = Langevin(n_steps=1, step_size=1e-8, noise_scale=0.0)
    energy = voxel_energy(8)
    out = super_resolve_batch(energy, still, low, 2, binary=False, initializer=initializer)
    torch.testing.assert_close(block_down(out, (2, 2, 2)), low)
    # Projection adds one value per block: the ranking inside each block is the proposal's.
    assert torch.equal(block_top_k(out, low, (2, 2, 2)), block_top_k(proposal, low, (2, 2, 2)))
    # A block size it did not learn starts at the config's up-sampling instead.
    coarse = downsample(boxes_and_balls(2, 8), 4)
    trilinear = super_resolve_batch(energy, still, coarse, 4, initializer=initializer)
    assert torch.equal(trilinear, trilinear_binary_upsample(coarse, 4))


def test_an_untrained_filler_proposes_the_nearest_known_fill_and_reads_only_known() -> None:
    shapes = boxes_and_balls(3, 16)
    known = torch.rand(shapes.shape, generator=gen(3)) >= 0.7
    torch.manual_seed(0)
    initializer = Initializer(recovery=True, width=4, depth=2)
    proposal = initializer.propose_fill(shapes, known)
    assert torch.equal(proposal[known], shapes[known])
    assert torch.equal(proposal > 0.5, nearest_known_fill(shapes, known) > 0.5)
    garbage = torch.where(known, shapes, torch.full_like(shapes, 7.0))
    assert torch.equal(initializer.propose_fill(garbage, known)[~known], proposal[~known])
    with pytest.raises(ValueError, match="not a multiple of the filler's fold 2"):
        initializer.fill_logits(shapes[..., :15, :15, :15], known[..., :15, :15, :15])
    with pytest.raises(ValueError, match="no recovery filler"):
        Initializer([2]).fill_logits(shapes, known)
    with pytest.raises(ValueError, match="needs distinct super-resolution factors or a recovery"):
        Initializer()


def test_the_filler_learns_what_the_nearest_known_fill_cannot() -> None:
    # Only first corners of 2^3 blocks are ever occupied: a filler learns that every other
    # voxel is empty, while the nearest-known fill copies occupied neighbours into them. A
    # hidden first corner stays a coin (occupied with probability 0.4, unrelated to the rest),
    # so the best mean error is 2 * 0.4 * 0.6 / 8 = 0.06.
    trainer = make_trainer(recovery=True)
    history = trainer.fit(20, progress=False)
    assert history[-1]["initializer_bce"] < history[0]["initializer_bce"] / 2
    test = corner_shapes(16, seed=5)
    known = torch.rand(test.shape, generator=gen(6)) >= 0.7
    learned = trainer.initializer.propose_fill(test, known)
    learned_error = voxel_errors(learned, test, where=~known).mean().item()
    fill_error = voxel_errors(nearest_known_fill(test, known), test, where=~known).mean().item()
    assert learned_error < 0.07 < 0.1 < fill_error


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_an_initializer_diverging_in_fit_names_its_rate_and_the_last_good_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: float) -> None:
    """Its non-finite loss said neither which checkpoint keeps the last good model nor what to
    change (the README's divergence promise). An infinite loss (logits overflowed to inf) stops
    it as a NaN does."""
    path = tmp_path / "checkpoint.pt"
    trainer = make_trainer(settings=replace(FAST, steps=1))
    trainer.fit(1, checkpoint_path=path, progress=False)
    # The loss alone: NaN weights would already stop the descriptor's chains, which start
    # from the initializer's guess.
    monkeypatch.setattr(trainer, "_losses",
                        lambda batch: [torch.tensor(bad, requires_grad=True)])
    with pytest.raises(DivergenceError, match=rf"non-finite initializer loss at iteration 2: "
                                              rf"{bad}; "
                                              r".*checkpoint\.pt keeps iteration 1, the last "
                                              r"good model \(lower initializer\.lr\)$"):
        trainer.fit(3, checkpoint_path=path, progress=False)
    assert load_checkpoint(path)["iteration"] == 1


@pytest.mark.parametrize("recovery", [False, True])
def test_resume_takes_the_same_steps(tmp_path: Path, recovery: bool) -> None:
    straight = make_trainer(recovery=recovery)
    straight.fit(4, progress=False)
    first = make_trainer(recovery=recovery)
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    second = make_trainer(init_seed=7, recovery=recovery)
    second.resume(tmp_path / "checkpoint.pt")
    second.fit(4, progress=False)
    assert_same(straight.state_dict(), second.state_dict())
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert has_initializer(state)
    assert initializer_from_state(state, "ckpt").config == straight.initializer.config
    wider = make_trainer(settings=InitializerConfig(factors=(2,), width=6, depth=3),
                         recovery=recovery)
    with pytest.raises(CheckpointError, match="initializer .* is not the one this config builds"):
        wider.resume(tmp_path / "checkpoint.pt")
    plain = Trainer(voxel_energy(16), Langevin(n_steps=1), wider.chains, wider.data)
    with pytest.raises(CheckpointError, match="also holds a trained initializer net"):
        plain.resume(tmp_path / "checkpoint.pt")
    del state["initializer_model"]
    assert not has_initializer(state)
    with pytest.raises(CheckpointError, match="holds no initializer"):
        initializer_from_state(state, "ckpt")


@pytest.mark.parametrize(("override", "message"), [
    ("initializer.factors=[3]", "distinct ints >= 2 dividing data.size"),
    ("initializer.factors=[1, 4]", "distinct ints >= 2 dividing data.size"),
    ("initializer.factors=[4, 4]", r"distinct ints >= 2 dividing data.size 64, got \[4, 4\]"),
    ("initializer.factors=[2]", "must include chains.factor 4"),
    ("initializer.width=0", "initializer.width must be positive"),
    ("initializer.depth=1", "initializer.depth must be >= 2"),
    ("initializer.crop=0", "initializer.crop must be positive"),
    ("initializer.mirror=sometimes", "initializer.mirror must be a bool"),
    ("initializer.nope=1", "unknown config key"),
    ("chains.mode=persistent", "needs chains.mode super_resolution or recovery"),
    ("initializer.fold=0", "initializer.fold must be positive"),
])
def test_bad_initializer_settings_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(SR_CONFIG, [override])


@pytest.mark.parametrize(("override", "message"), [
    ("initializer.factors=[2]", "a recovery run .* learns a filler: remove them"),
    ("initializer.fold=5", "initializer.fold 5 must divide data.size 32"),
])
def test_bad_recovery_initializer_settings_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(RECOVERY_CONFIG, ["initializer={}", override])


def _voxel_energy(size: int) -> ConvNetEnergy:
    torch.manual_seed(0)
    return ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[4, 3, 1, 1]], head="sum",
                         input_size=(size,) * 3, reference_sigma=0.5)


def _initializer_trainer(*, recovery: bool, crop: int | None = None, mirror: bool = False,
                         missing: float = 0.7) -> InitializerTrainer:
    settings = InitializerConfig(factors=(2,), width=4, depth=2, steps=1, batch_size=8,
                                 lr=0.01, crop=crop, mirror=mirror)
    data = (torch.rand(8, 1, 8, 8, 8, generator=gen(0)) < 0.4).float()
    torch.manual_seed(0)
    init = Initializer(() if recovery else (2,), recovery=recovery, width=4, depth=2)
    return InitializerTrainer(_voxel_energy(8), init,
                              Langevin(n_steps=1, step_size=0.1, noise_scale=0.0),
                              data, settings=settings, factor=2, missing=missing,
                              train=TrainConfig(batch_size=4, lr=0.01), generator=gen(1))


def test_initializer_crop_reaches_every_corner_and_takes_all_when_no_larger() -> None:
    # A crop as large as the grid has one corner; a smaller one reaches both ends.
    trainer = _initializer_trainer(recovery=False, crop=4)
    x = torch.rand(2, 1, 8, 8, 8, generator=gen(2))
    assert torch.equal(trainer._crop(x, 2), x)
    trainer = _initializer_trainer(recovery=False, crop=6)  # larger than the grid
    assert torch.equal(trainer._crop(x, 2), x)
    trainer = _initializer_trainer(recovery=False, crop=3)
    starts = {trainer._crop(torch.arange(8.0).expand(1, 1, 8, 8, 8), 2)[0, 0, 0, 0, 0].item()
              for _ in range(40)}
    assert starts == {0.0, 2.0}


def test_the_recovery_filler_is_cropped_to_whole_cells_of_its_fold() -> None:
    # crop=1 is one coarse cell of the filler's fold 2 a side: 2^3 entries, which it can fold.
    trainer = _initializer_trainer(recovery=True, crop=1)
    shapes = []
    real = trainer.initializer.fill_logits

    def spy(observed, known):
        shapes.append(tuple(observed.shape))
        return real(observed, known)

    trainer.initializer.fill_logits = spy
    trainer._losses(torch.rand(8, 1, 8, 8, 8, generator=gen(3)))
    assert shapes == [(8, 1, 2, 2, 2)]


def test_recovery_filler_loss_hides_the_missing_fraction_and_scores_only_it() -> None:
    # The filler sees 30% of the entries and is scored on the 70% hidden from it only.
    trainer = _initializer_trainer(recovery=True, missing=0.7)
    seen = {}
    real = trainer.initializer.fill_logits

    def spy(observed, known):
        seen["known"] = known
        seen["logits"] = real(observed, known)
        return seen["logits"]

    trainer.initializer.fill_logits = spy
    x = (torch.rand(8, 1, 8, 8, 8, generator=gen(3)) < 0.4).float()
    (loss,) = trainer._losses(x)
    known = seen["known"]
    assert abs(known.float().mean().item() - 0.3) < 0.05
    expected = torch.nn.functional.binary_cross_entropy_with_logits(seen["logits"][~known],
                                                                    x[~known])
    torch.testing.assert_close(loss, expected)


def test_a_filler_crop_that_hides_nothing_gives_a_zero_loss_not_nan() -> None:
    trainer = _initializer_trainer(recovery=True, missing=1e-12)  # every voxel stays known
    (loss,) = trainer._losses((torch.rand(8, 1, 8, 8, 8, generator=gen(3)) < 0.4).float())
    assert loss.item() == 0.0


def test_initializer_mirror_flips_about_half_the_batches() -> None:
    # Mirroring flips some batches, not all.
    trainer = _initializer_trainer(recovery=False, mirror=True)
    trainer.data = torch.arange(8.0).expand(8, 1, 8, 8, 8).clone()
    firsts = [trainer._initializer_batch()[0, 0, 0, 0, 0].item() for _ in range(40)]
    assert 0.0 in firsts and 7.0 in firsts


def test_initializer_mirror_flips_the_up_axis_only() -> None:
    """A mirrored batch is the shape flipped along its last axis, not turned in a plane."""
    trainer = _initializer_trainer(recovery=False, mirror=True)
    plane = torch.arange(8.0) + 10 * torch.arange(8.0)[:, None]  # differs along both axes
    trainer.data = plane.expand(8, 1, 8, 8, 8).clone()
    batches = [trainer._initializer_batch()[0, 0, 0] for _ in range(20)]
    assert all(torch.equal(b, plane) or torch.equal(b, plane.flip(-1)) for b in batches)
    assert any(torch.equal(b, plane.flip(-1)) for b in batches)


def test_a_trained_filler_still_reads_only_known_entries() -> None:
    # A random last layer: an untrained filler's zero last layer would hide what it reads.
    torch.manual_seed(0)
    init = Initializer(recovery=True, width=4, depth=2)
    with torch.no_grad():
        init.nets["recovery"].last.weight.normal_()
    shapes = (torch.rand(2, 1, 8, 8, 8, generator=gen(4)) < 0.4).float()
    known = torch.rand(shapes.shape, generator=gen(5)) >= 0.5
    garbage = torch.where(known, shapes, torch.full_like(shapes, 7.0))
    torch.testing.assert_close(init.fill_logits(garbage, known), init.fill_logits(shapes, known))


def test_coarse_net_body_is_residual() -> None:
    torch.manual_seed(0)
    net = Initializer([2], width=4, depth=3).nets["2"]
    coarse = torch.rand(1, 9, 3, 3, 3, generator=gen(6))
    with torch.no_grad():
        net.last.weight.normal_()
        h = torch.relu(net.first(coarse))
        h = h + torch.relu(net.body[0](h))
        torch.testing.assert_close(net.correction(coarse, 2), depth_to_space(net.last(h), 2))


def test_an_untrained_upsampler_proposes_the_sharpened_trilinear_guess() -> None:
    torch.manual_seed(0)
    initializer = Initializer([2], width=4, depth=2)
    for level in (0.0, 0.5, 0.9, 1.0):
        low = torch.full((1, 1, 2, 2, 2), level)
        expected = torch.sigmoid(torch.tensor(GUIDE_LOGIT * (level - 0.5)))
        proposal = initializer.propose(low, 2)
        assert proposal.shape == (1, 1, 4, 4, 4)
        torch.testing.assert_close(proposal, expected.expand_as(proposal))
    # The module's own example: 0.9 occupancy -> probability 0.96.
    example = initializer.propose(torch.full((1, 1, 2, 2, 2), 0.9), 2)[0, 0, 0, 0, 0]
    assert abs(example - 0.96) < 0.01


def test_an_untrained_filler_proposes_the_sharpened_nearest_known_fill() -> None:
    """At a missing entry the untrained filler's probability is
    ``sigmoid(GUIDE_LOGIT * (fill - 1/2))`` of the nearest-known fill there."""
    torch.manual_seed(0)
    initializer = Initializer(recovery=True, width=4, depth=2)
    known = torch.ones(1, 1, 4, 4, 4, dtype=torch.bool)
    known[..., 1, 2, 3] = False
    for level in (0.0, 0.5, 0.9, 1.0):
        observed = torch.full((1, 1, 4, 4, 4), level)
        expected = torch.sigmoid(torch.tensor(GUIDE_LOGIT * (level - 0.5)))
        proposal = initializer.propose_fill(observed, known)
        torch.testing.assert_close(proposal[~known], expected.reshape(1))


def test_initializer_start_proposes_from_occupancy_and_returns_model_units() -> None:
    torch.manual_seed(0)
    initializer = Initializer([2], width=4, depth=2)
    occupancy = corner_shapes(3, seed=4)
    offset = 0.25
    start = InitializerStart(initializer, 2, offset=offset)
    x0 = start.start(occupancy - offset, torch.arange(3))
    expected = initializer.propose(block_down(occupancy, (2, 2, 2)), 2) - offset
    torch.testing.assert_close(x0, expected)


def test_initializer_start_names_a_generator_that_is_not_one() -> None:
    """It draws nothing, yet a seed passed for a generator is named as every start names it."""
    start = InitializerStart(Initializer([2], width=4, depth=2), 2)
    with pytest.raises(ValueError, match="InitializerStart.start: generator must be"):
        start.start(corner_shapes(1, seed=4), torch.arange(1), generator=0)


def test_super_resolution_training_chains_start_from_occupancy_in_model_units() -> None:
    """The trainer's chains get the model's offset (0.1): proposals from the block means of
    occupancy, returned in the model's units."""
    trainer = make_trainer()  # data in model units: occupancy - 0.1, offset 0.1
    x_pos = trainer.data[:2]
    x0 = trainer.chains.start(x_pos, torch.arange(2))
    expected = trainer.initializer.propose(block_down(x_pos + 0.1, (2, 2, 2)), 2) - 0.1
    torch.testing.assert_close(x0, expected)


def test_recovery_training_chains_hide_the_missing_fraction() -> None:
    """The chains start from the filler's proposal at ``missing`` (0.7) of the entries, drawn
    afresh, and keep the data at the others."""
    trainer = make_trainer(recovery=True)
    x_pos = trainer.data
    x0 = trainer.chains.start(x_pos, torch.arange(len(x_pos)), generator=gen(3))
    assert abs((x0 != x_pos).float().mean().item() - 0.7) < 0.03


def test_initializer_batches_are_occupancy_not_model_units() -> None:
    trainer = make_trainer()  # data in model units: occupancy - 0.1, offset 0.1
    batch = trainer._initializer_batch()
    assert batch.min() >= -1e-6 and batch.max() <= 1 + 1e-6
    torch.testing.assert_close(batch, batch.round())
    assert batch.max() > 0.5


def test_a_step_inside_no_grad_is_the_same_step() -> None:
    """The descriptor's and the initializer's backward passes failed inside torch.no_grad()."""
    assert_same_step_inside_no_grad(make_trainer)


def test_initializer_bce_is_the_mean_over_its_steps_not_the_sum() -> None:
    settings = replace(FAST, steps=4, batch_size=16, lr=1e-9)
    trainer = make_trainer(settings=settings)
    x = trainer.data + trainer.offset
    with torch.no_grad():
        logits = trainer.initializer.logits(block_down(x, (2, 2, 2)), 2)
        expected = F.binary_cross_entropy_with_logits(logits, x).item()
    stats = trainer.step()
    assert abs(stats["initializer_bce"] - expected) < 1e-3 * max(expected, 1e-3)


def test_every_net_of_an_initializer_learns_at_each_step() -> None:
    """An initializer with an up-sampler and a filler: one step moves both nets."""
    data = corner_shapes(8, seed=0)
    torch.manual_seed(0)
    initializer = Initializer([2], recovery=True, width=4, depth=2)
    trainer = InitializerTrainer(voxel_energy(8), initializer,
                                 Langevin(n_steps=1, step_size=0.1, noise_scale=0.0), data,
                                 settings=replace(FAST, steps=1), missing=0.7,
                                 train=TrainConfig(batch_size=4, lr=0.01), generator=gen(1))
    before = {name: p.clone() for name, p in initializer.named_parameters()}
    trainer.step()
    for net in ("2", "recovery"):
        assert any(not torch.equal(p, before[name]) for name, p in initializer.named_parameters()
                   if name.startswith(f"nets.{net}."))


def test_the_initializer_takes_settings_steps_updates_per_descriptor_step() -> None:
    settings = replace(FAST, steps=3)
    trainer = make_trainer(settings=settings)
    calls = []
    real = trainer.companion.optimizer.step

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    trainer.companion.optimizer.step = counting
    trainer.step()
    assert len(calls) == 3


def test_recovery_training_chains_start_at_the_filler_proposal_in_model_units() -> None:
    trainer = make_trainer(recovery=True)  # data in model units: occupancy - 0.1, offset 0.1
    occupancy = corner_shapes(2, seed=6)
    known = torch.rand(occupancy.shape, generator=gen(7)) >= 0.7
    got = trainer._proposed_fill(occupancy - 0.1, known)
    expected = trainer.initializer.propose_fill(occupancy, known) - 0.1
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got[known], (occupancy - 0.1)[known])


def test_an_initializer_net_needs_at_least_two_convolutions() -> None:
    with pytest.raises(ValueError, match="depth must be an int >= 2"):
        Initializer([2], width=4, depth=1)


def test_bad_proposal_net_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3, got 4"):
        BlockUpsampler(2, spatial_dims=4, width=4, depth=2)
    with pytest.raises(ValueError, match="factor must be an int >= 2"):
        BlockUpsampler(1, width=4, depth=2)
    with pytest.raises(ValueError, match="width must be an int >= 1, got 0"):
        BlockUpsampler(2, width=0, depth=2)
    with pytest.raises(ValueError, match="fold must be an int >= 1, got 0"):
        MaskedFiller(0, width=4, depth=2)
    with pytest.raises(ValueError, match=r"observed must be \(B, 1, S, S, S\), got "
                                         r"\(1, 2, 4, 4, 4\)"):
        MaskedFiller(2, width=4, depth=2)(torch.rand(1, 2, 4, 4, 4),
                                          torch.ones(1, 1, 4, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"the grid \(5, 4, 4\) is not a multiple of the filler's "
                                         r"fold 2"):
        MaskedFiller(2, width=4, depth=2)(torch.rand(1, 1, 5, 4, 4),
                                          torch.ones(1, 1, 5, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"low must be \(B, 1, n, n, n\), got \(1, 2, 2, 2, 2\)"):
        BlockUpsampler(2, width=4, depth=2)(torch.rand(1, 2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"learns block sizes \[2\]; the training chains need 4"):
        InitializerStart(Initializer([2], width=4, depth=2), 4)


def test_a_trainer_names_the_chain_setting_its_initializer_needs() -> None:
    data = corner_shapes(4, seed=0)
    for initializer, missing, message in (
            (Initializer(recovery=True, width=4, depth=2), None,
             "a recovery filler needs the fraction of missing entries"),
            (Initializer([2], width=4, depth=2), None,
             r"a super-resolution initializer needs the chains' block size \(factor\)$"),
            # A recovery run with a super-resolution initializer: told what it lacks.
            (Initializer([2], width=4, depth=2), 0.5,
             r"block size \(factor\); missing=0.5 is for recovery, whose initializer has a "
             r"filler \(Initializer\(\.\.\., recovery=True\)\)$")):
        with pytest.raises(ValueError, match=message):
            InitializerTrainer(voxel_energy(8), initializer, Langevin(n_steps=1, step_size=0.1),
                               data, settings=FAST, missing=missing)


def test_an_initializer_is_rebuilt_from_its_config() -> None:
    """As a checkpoint rebuilds it: a filler of fold 1 (no coarser grid) or 4 too."""
    for fold in (1, 4):
        made = Initializer(recovery=True, fold=fold, width=4, depth=2)
        rebuilt = build_initializer(made.config)
        rebuilt.load_state_dict(made.state_dict())
        assert rebuilt.nets["recovery"].fold == fold


def test_initializer_batches_hold_settings_batch_size_shapes() -> None:
    trainer = make_trainer(settings=replace(FAST, batch_size=4))  # 16 training shapes
    assert len(trainer._initializer_batch()) == 4
    assert not torch.equal(trainer._initializer_batch(), trainer._initializer_batch())  # drawn


def test_a_two_dimensional_super_resolution_initializer_trains() -> None:
    data = (torch.rand(8, 1, 8, 8, generator=gen(2)) < 0.4).float()
    torch.manual_seed(0)
    initializer = Initializer([2], spatial_dims=2, width=4, depth=2)
    trainer = InitializerTrainer(tiny_energy(), initializer,
                                 Langevin(n_steps=1, step_size=0.1, noise_scale=0.0), data,
                                 settings=replace(FAST, width=4, depth=2, steps=1),
                                 factor=2, train=TrainConfig(batch_size=4, lr=0.01),
                                 generator=gen(1))
    stats = trainer.step()
    assert math.isfinite(stats["initializer_bce"]) and math.isfinite(stats["loss"])


def test_the_filler_reads_the_observed_entries_the_mask_and_the_nearest_known_fill() -> None:
    """The filler's first convolution sees, folded into channels: the observed entries (0 where
    missing), the mask and the nearest-known fill."""
    net = MaskedFiller(fold=2, width=4, depth=2)
    observed = torch.rand(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    known = torch.rand(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) >= 0.5
    seen = {}

    def look(module, inputs, output) -> None:
        seen["x"] = inputs[0]

    net.first.register_forward_hook(look)
    net(observed, known)
    masked = torch.where(known, observed, torch.zeros(()))
    expected = torch.cat([masked, known.float(), nearest_known_fill(masked, known)], dim=1)
    torch.testing.assert_close(seen["x"], space_to_depth(expected, 2))


def test_the_upsampler_reads_the_block_means_and_their_trilinear_up_sampling() -> None:
    """The up-sampler's first convolution sees the block means, then their trilinear
    up-sampling (clamped to [0, 1]) folded into channels."""
    net = BlockUpsampler(2, spatial_dims=2, width=4, depth=2)
    low = torch.rand(1, 1, 3, 3, generator=gen(0))
    seen = {}

    def look(module, inputs, output) -> None:
        seen["x"] = inputs[0]

    net.first.register_forward_hook(look)
    net(low)
    trilinear = linear_up(low, (2, 2)).clamp(0.0, 1.0)
    torch.testing.assert_close(seen["x"], torch.cat([low, space_to_depth(trilinear, 2)], dim=1))


def test_a_coarse_cell_s_correction_reads_the_cells_two_away_and_no_further() -> None:
    """Two 3-wide convolutions: a coarse cell's logits depend on its neighbours' neighbours,
    which is what lets the net see the shape around a block."""
    torch.manual_seed(0)
    net = BlockUpsampler(2, spatial_dims=1, width=8, depth=2)
    coarse = torch.rand(1, 3, 8, generator=gen(1))
    changed = coarse.clone()
    changed[..., 0] += 1.0
    with torch.no_grad():
        net.last.weight.normal_()
        moved = (net.correction(changed, 2) - net.correction(coarse, 2)).abs()
    per_cell = moved.reshape(8, 2).amax(1)
    assert (per_cell[:3] > 1e-4).all() and (per_cell[3:] == 0).all()


def test_the_filler_takes_one_mask_broadcast_over_the_batch() -> None:
    """``known`` is broadcastable: one mask ``(1, 1, *S)`` for a batch of two."""
    from stgconv.initializer import Initializer

    initializer = Initializer(recovery=True, width=4, depth=2)
    observed = torch.rand(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    known = torch.rand(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) >= 0.5
    torch.testing.assert_close(initializer.propose_fill(observed, known),
                               initializer.propose_fill(observed, known.expand_as(observed)))


@pytest.mark.parametrize("known, problem", [
    (torch.ones(2, 1, 4, 4, 4), r"known must be a bool tensor \(True = observed\), got "
                                r"torch.float32"),
    (torch.ones(2, 1, 2, 4, 4, dtype=torch.bool), r"known \(2, 1, 2, 4, 4\) does not broadcast "
                                                  r"to observed \(1, 1, 4, 4, 4\)"),
    (torch.ones(2, 1, 4, 4, 4, dtype=torch.bool), r"known \(2, 1, 4, 4, 4\) does not broadcast "
                                                  r"to observed \(1, 1, 4, 4, 4\)"),
], ids=["float", "another grid", "another batch"])
def test_the_filler_names_a_mask_that_is_not_bool_or_does_not_broadcast(known, problem) -> None:
    """Each failed inside torch.where or expand_as, naming no argument."""
    from stgconv.initializer import Initializer

    initializer = Initializer(recovery=True, width=4, depth=2)
    observed = torch.rand(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=problem):
        initializer.propose_fill(observed, known)


def test_space_to_depth_names_sizes_that_are_not_multiples_of_the_factor() -> None:
    """The reshape failed ("shape '[1, 1, 2, 2, 2, 2]' is invalid for input of size 20")."""
    with pytest.raises(ValueError, match=r"space_to_depth: the sizes \(5, 4\) of x \(1, 1, 5, "
                                         r"4\) must be multiples of the factor 2"):
        space_to_depth(torch.zeros(1, 1, 5, 4), 2)


def test_depth_to_space_names_channels_that_are_not_a_multiple_of_the_block() -> None:
    """The reshape failed ("shape '[1, 1, 2, 2, 2, 2]' is invalid for input of size 20")."""
    for channels in (5, 3, 6):  # 6: a multiple of the factor, not of its square
        with pytest.raises(ValueError, match=rf"depth_to_space: the channels {channels} of x "
                                             rf"\(1, {channels}, 2, 2\) must be a multiple of "
                                             r"factor\^2 = 2\^2 = 4"):
            depth_to_space(torch.zeros(1, channels, 2, 2), 2)


def test_the_proposal_nets_name_an_input_of_another_dtype() -> None:
    """float64 block means or observed shapes failed inside the first convolution ("Input
    type (double) and bias type (float) should be the same")."""
    upsampler, filler = BlockUpsampler(2, width=4, depth=2), MaskedFiller(2, width=4, depth=2)
    with pytest.raises(ValueError, match=r"expected low of dtype torch.float32 \(the "
                                         r"network's\), got torch.float64"):
        upsampler(torch.rand(1, 1, 2, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected observed of dtype torch.float32 \(the "
                                         r"network's\), got torch.float64"):
        filler(torch.rand(1, 1, 4, 4, 4, dtype=torch.float64),
               torch.ones(1, 1, 4, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("recovery", [False, True], ids=["super-resolution", "recovery"])
def test_initializer_steps_read_nothing_back_until_their_losses_once(recovery: bool) -> None:
    """The mirror's draw, the crops' corners, the hidden entries (recovery) and each loss's
    check were read back to the host at every initializer step: on a GPU a wait for its queue
    each time, 6 to 10 a step and 15 steps an iteration by default. A trainer step now reads
    as much with 3 initializer steps as with 1 (HostTraffic counts on the CPU what would wait
    on a GPU)."""
    def host_traffic(steps: int) -> int:
        trainer = make_trainer(settings=replace(FAST, steps=steps, crop=2, mirror=True),
                               recovery=recovery)
        # Adam reads its step counts, which stay on the host on a GPU too (load_optimizer).
        trainer.companion.optimizer = torch.optim.SGD(trainer.initializer.parameters(), lr=0.01)
        with HostTraffic() as traffic:
            trainer.step()
        return traffic.reads + traffic.scans

    assert host_traffic(3) == host_traffic(1)
