"""Multi-grid modelling (Gao et al. 2018): constraints coarsened per grid, the coarse-to-fine
sampler's hand-off from grid to grid, conditional multi-grid sampling that keeps what it observed,
MultiGridTrainer (it learns, it resumes bit for bit, its checkpoints load only as multi-grid ones)
and the config / CLI path for images, videos and voxels on tiny files in tmp_path.

The pyramid operators themselves (factor_between, pyramid) are tested in test_ops.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import Tensor, nn

from stgconv.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_multigrid,
)
from stgconv.cli import main
from stgconv.config import (
    DataConfig,
    ExperimentConfig,
    GridConfig,
    MultiGridConfig,
    TrainConfig,
    config_to_dict,
    load_config,
)
from stgconv.energy import image_energy
from stgconv.io.video import load_video, save_video
from stgconv.mcmc import (
    HMC,
    MALA,
    DataStart,
    DownsampleConsistency,
    KnownEntries,
    Langevin,
    MultiGridSampler,
    NonFiniteEnergyError,
)
from stgconv.ops import block_down, nearest_up, pyramid
from stgconv.tasks import synthesize_multigrid
from stgconv.train import MultiGridTrainer, Trainer

F64 = torch.float64
# float64 for the constraint algebra: its identities hold to rounding, ~1e-15 relative.
TOL = {"rtol": 0.0, "atol": 1e-12}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> Tensor:
    return torch.randn(shape, generator=gen(seed), dtype=dtype)


# --------------------------------------------------------------------------- coarsened constraints


def test_known_entries_coarsen_keeps_whole_blocks_only() -> None:
    observed = rand((2, 3, 8, 8), seed=0)
    known = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    known[..., :4, :4] = True  # one whole 4x4 block, i.e. four whole 2x2 blocks
    known[..., 4, 4] = True  # a lone entry: its 2x2 and 4x4 blocks are only partly known
    constraint = KnownEntries(observed, known)

    coarse = constraint.coarsen((2, 2))
    assert coarse is not None and coarse.known.shape == coarse.observed.shape == (2, 3, 4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(coarse.known, expected.expand(2, 3, 4, 4))
    # Known coarse entries hold their block's mean.
    means = block_down(observed, (2, 2))
    assert torch.equal(coarse.observed[coarse.known], means[coarse.known])

    coarser = constraint.coarsen((4, 4))
    assert coarser is not None
    assert torch.equal(coarser.known[0, 0], torch.tensor([[True, False], [False, False]]))
    torch.testing.assert_close(coarser.observed[..., 0, 0], observed[..., :4, :4].mean((-2, -1)),
                               **TOL)
    # No 8x8 block is whole: the base grid is left free.
    assert constraint.coarsen((8, 8)) is None
    # A factor of ones is no coarsening at all.
    assert constraint.coarsen((1, 1)) is constraint


def test_known_entries_coarsen_all_missing_is_none_and_all_known_is_the_pyramid() -> None:
    observed = rand((1, 1, 4, 4), seed=1)
    nothing = KnownEntries(observed, torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    assert nothing.coarsen((2, 2)) is None
    everything = KnownEntries(observed, torch.ones(1, 1, 4, 4, dtype=torch.bool)).coarsen((4, 4))
    assert everything is not None and everything.known.all()
    torch.testing.assert_close(everything.observed, block_down(observed, (4, 4)), **TOL)


def test_known_entries_coarsen_broadcasts_a_shared_mask() -> None:
    """One spatial mask for every chain and channel, as recovery uses it."""
    observed = rand((3, 2, 4, 4), seed=2)
    known = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    known[..., 2:, 2:] = True
    coarse = KnownEntries(observed, known).coarsen((2, 2))
    assert coarse is not None and coarse.known.shape == coarse.observed.shape == (3, 2, 2, 2)
    assert coarse.known[..., 1, 1].all() and coarse.known.sum() == 3 * 2
    torch.testing.assert_close(coarse.observed[..., 1, 1], observed[..., 2:, 2:].mean((-2, -1)),
                               **TOL)
    x = rand((3, 2, 2, 2), seed=3)
    p = coarse.project(x)
    assert torch.equal(p[..., 1, 1], coarse.observed[..., 1, 1])
    assert torch.equal(p[..., 0, :], x[..., 0, :])


def test_known_entries_coarse_constraint_holds_for_every_fine_feasible_point() -> None:
    """What coarsening promises: block_down of any x that keeps the fine constraint already
    keeps the coarse one, so the coarse grid's chain never contradicts the fine grid's."""
    observed = rand((2, 1, 8, 8), seed=4)
    known = torch.rand(2, 1, 8, 8, generator=gen(5)) < 0.7
    known[0, 0, :4, 4:] = True
    fine = KnownEntries(observed, known)
    for factor in [(2, 2), (4, 4)]:
        coarse = fine.coarsen(factor)
        assert coarse is not None and coarse.known.any()
        for seed in range(3):
            low = block_down(fine.project(rand((2, 1, 8, 8), seed=10 + seed)), factor)
            torch.testing.assert_close(coarse.project(low), low, **TOL)


# name -> (low shape, super-resolution factor f, coarsening factor g, expected new factor):
# g dividing f leaves blocks of f / g; f dividing g sees low averaged by g / f (the coarse grid is
# then fully determined: factor of ones); mixed per dim, e.g. a video refined in time only.
SR_COARSEN = {
    "g-divides-f": ((2, 3, 2, 2), (4, 4), (2, 2), (2, 2)),
    "g-equals-f": ((2, 3, 2, 2), (4, 4), (4, 4), (1, 1)),
    "f-divides-g": ((2, 3, 4, 4), (2, 2), (8, 8), (1, 1)),
    "mixed": ((2, 3, 2, 2), (4, 4), (8, 2), (1, 2)),
    "video-mixed": ((1, 3, 4, 2, 2), (1, 4, 4), (2, 2, 8), (1, 2, 1)),
    "voxel": ((2, 1, 2, 2, 2), (4, 4, 4), (2, 2, 2), (2, 2, 2)),
}


@pytest.mark.parametrize("case", list(SR_COARSEN))
def test_downsample_consistency_coarsen(case: str) -> None:
    low_shape, f, g, expected = SR_COARSEN[case]
    low = rand(low_shape, seed=20)
    fine = DownsampleConsistency(low, f)
    coarse = fine.coarsen(g)
    assert coarse.factor == expected
    k = len(f)
    fine_shape = (*low_shape[:-k], *(n * s for n, s in zip(low_shape[-k:], f)))
    coarse_shape = (*low_shape[:-k], *(n // s for n, s in zip(fine_shape[-k:], g)))
    # The coarse constraint's own promise: its projection keeps block_down == its low.
    p = coarse.project(rand(coarse_shape, seed=21))
    assert p.shape == coarse_shape
    torch.testing.assert_close(block_down(p, coarse.factor), coarse.low, **TOL)
    # And the coarse low is what the fine constraint implies: any fine feasible point, averaged
    # by g, already satisfies it.
    for seed in range(3):
        x = block_down(fine.project(rand(fine_shape, seed=22 + seed)), g)
        torch.testing.assert_close(coarse.project(x), x, **TOL)
    if all(s == 1 for s in expected):  # fully determined: every point projects to one
        torch.testing.assert_close(p, coarse.low, **TOL)


@pytest.mark.parametrize(("g", "message"), [((3, 3), "divide one another"),
                                            ((8, 3), "divide one another"),
                                            ((2,), "cover the constraint's dims")])
def test_downsample_consistency_coarsen_errors(g: tuple[int, ...], message: str) -> None:
    fine = DownsampleConsistency(rand((1, 1, 2, 2), seed=0), (4, 4))
    with pytest.raises(ValueError, match=message):
        fine.coarsen(g)


# --------------------------------------------------------------------------- sampler hand-off


class RecordingQuadratic(nn.Module):
    """``E(x) = 0.5 |x|^2`` per chain, remembering the first input it is evaluated at (the
    chain's start, since the sampler evaluates the energy there first)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.first is None:
            self.first = x.detach().clone()
        return 0.5 * x.flatten(1).pow(2).sum(dim=1)


# Images 1x1 -> 2x2 -> 8x8 -> 16x16, and videos refined in space first, then in time too.
HANDOFF = {
    "image": ((3, 2, 1, 1), ((2, 2), (4, 4), (2, 2))),
    "video": ((2, 3, 2, 1, 1), ((1, 4, 4), (2, 2, 2))),
}


@pytest.mark.parametrize("case", list(HANDOFF))
def test_each_grid_starts_from_the_upsampled_grid_below(case: str) -> None:
    base_shape, factors = HANDOFF[case]
    step = 0.1
    # One noiseless step on 0.5 |x|^2 multiplies x by 1 - step^2 / 2: every grid's result is
    # known from its start, so both the starts and the results can be checked.
    sampler = MultiGridSampler(tuple(Langevin(n_steps=1, step_size=step, noise_scale=0.0)
                                     for _ in factors), factors)
    energies = [RecordingQuadratic() for _ in factors]
    x0 = rand(base_shape, seed=0)
    grids = sampler.run(energies, x0)

    assert len(grids) == len(factors) + 1
    assert torch.equal(grids[0], x0)  # no constraint: the base is handed on as given
    shape = base_shape
    for k, (energy, factor) in enumerate(zip(energies, factors), start=1):
        k_dims = len(factor)
        shape = (*shape[:-k_dims], *(n * f for n, f in zip(shape[-k_dims:], factor)))
        assert grids[k].shape == shape
        assert energy.first is not None
        assert torch.equal(energy.first, nearest_up(grids[k - 1], factor))
        torch.testing.assert_close(grids[k], (1 - step**2 / 2) * energy.first, **TOL)
    # Every chain moved, so a grid handing on its start instead of its result would fail above.
    for k, energy in enumerate(energies, start=1):
        assert not torch.equal(grids[k], energy.first)


GRID_SAMPLERS = {
    "langevin": Langevin(n_steps=2, step_size=0.2),
    "mala": MALA(n_steps=2, step_size=0.3),
    "hmc": HMC(n_steps=2, step_size=0.2, n_leapfrog=2),
}


@pytest.mark.parametrize("constraint_kind", ["known", "downsample"])
@pytest.mark.parametrize("name", list(GRID_SAMPLERS))
def test_each_grid_chain_starts_on_its_coarsened_constraint(name: str, constraint_kind: str
                                                            ) -> None:
    """The up-sampled start of a grid is off that grid's constraint; the first energy
    evaluation on every grid must already satisfy it (the start is projected first)."""
    factors = ((2, 2), (2, 2))
    sampler = MultiGridSampler((GRID_SAMPLERS[name],) * 2, factors)
    truth = rand((2, 1, 4, 4), seed=3)
    if constraint_kind == "known":
        known = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
        known[:, :, :2, :2] = True  # one whole 2x2 block: known on the middle grid too
        known[:, :, 3, 3] = True
        constraint = KnownEntries(truth, known)
    else:
        constraint = DownsampleConsistency(block_down(truth, (2, 2)), (2, 2))
    energies = [RecordingQuadratic(), RecordingQuadratic()]
    sampler.run(energies, rand((2, 1, 1, 1), seed=4) + 3.0, constraint=constraint, generator=gen(5))
    for k, energy in enumerate(energies, start=1):
        grid_constraint = constraint.coarsen(sampler.factor_to_finest(k))
        assert grid_constraint is not None and energy.first is not None
        off = grid_constraint.project(energy.first) - energy.first
        assert off.abs().max() <= 1e-12, f"grid {k}: the chain's first state is off the constraint"


def test_multigrid_sampler_is_deterministic_given_the_generator() -> None:
    factors = ((2, 2), (2, 2))
    sampler = MultiGridSampler((Langevin(n_steps=3, step_size=0.2),) * 2, factors)
    energies = [RecordingQuadratic(), RecordingQuadratic()]
    x0 = rand((4, 1, 2, 2), seed=1, dtype=torch.float32)
    first = sampler.run(energies, x0, generator=gen(7))
    again = sampler.run(energies, x0, generator=gen(7))
    other = sampler.run(energies, x0, generator=gen(8))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.allclose(first[-1], other[-1])
    assert all(not g.requires_grad for g in first)


def test_multigrid_sampler_argument_errors() -> None:
    langevin = Langevin(n_steps=1)
    sampler = MultiGridSampler((langevin, langevin), ((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="1 energies for 2 grids"):
        sampler.run([RecordingQuadratic()], torch.zeros(1, 1, 1, 1))
    with pytest.raises(ValueError, match="3 energies for 2 grids"):
        sampler.run([RecordingQuadratic()] * 3, torch.zeros(1, 1, 1, 1))
    with pytest.raises(ValueError, match="one factor per modelled grid"):
        MultiGridSampler((langevin, langevin), ((2, 2),))
    with pytest.raises(ValueError, match="at least one"):
        MultiGridSampler((), ())
    with pytest.raises(ValueError, match="same dims"):
        MultiGridSampler((langevin, langevin), ((2, 2), (1, 2, 2)))
    assert sampler.factor_to_finest(0) == (4, 4)
    assert sampler.factor_to_finest(2) == (1, 1)


# --------------------------------------------------------------------------- conditional sampling


def tiny_energies(n_grids: int, *, seed: int = 0) -> list[nn.Module]:
    """Untrained small stationary image nets, one per grid: enough to move the chains."""
    torch.manual_seed(seed)
    return [image_energy("texture", in_channels=1, layers=[[4, 3, 1, 1], [4, 3, 1, 1]],
                         reference_sigma=0.5) for _ in range(n_grids)]


def test_multigrid_recovery_keeps_the_observed_entries() -> None:
    """Recovery through base 1x1 -> 2x2 -> 4x4 -> 8x8: the finest grid's known entries are
    bit-exact and every coarser grid's fully known blocks hold the observed block means."""
    factors = ((2, 2), (2, 2), (2, 2))
    observed = rand((3, 1, 8, 8), seed=30, dtype=torch.float32)
    known = torch.rand(3, 1, 8, 8, generator=gen(31)) < 0.6
    known[:, :, :4, :4] = True  # a whole 4x4 block, so the 2x2 grid has a known entry
    constraint = KnownEntries(observed, known)
    sampler = MultiGridSampler((Langevin(n_steps=5, step_size=0.3),) * 3, factors)
    x0 = torch.zeros(3, 1, 1, 1)
    grids = sampler.run(tiny_energies(3), x0, constraint=constraint, generator=gen(32))

    assert [tuple(g.shape[-2:]) for g in grids] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    finest = grids[-1]
    assert torch.equal(finest[known], observed[known])
    assert not torch.allclose(finest[~known], torch.zeros(()))  # the free entries moved
    for k, grid in enumerate(grids[:-1]):
        factor = sampler.factor_to_finest(k)
        whole = block_down((~known).float(), factor) == 0
        means = block_down(observed, factor)
        torch.testing.assert_close(grid[whole], means[whole], rtol=0, atol=1e-6)
        if k == 1:
            assert whole[:, :, 0, 0].all() and not whole.all()
    assert torch.equal(grids[0], x0)  # no 8x8 block is whole: the base stays free


def test_multigrid_fully_observed_gives_the_pyramid() -> None:
    observed = rand((2, 1, 8, 8), seed=33, dtype=torch.float32)
    constraint = KnownEntries(observed, torch.ones(1, 1, 8, 8, dtype=torch.bool))
    sampler = MultiGridSampler((Langevin(n_steps=2, step_size=0.3),) * 2, ((2, 2), (4, 4)))
    grids = sampler.run(tiny_energies(2), torch.zeros(2, 1, 1, 1), constraint=constraint,
                        generator=gen(34))
    for grid, level in zip(grids, pyramid(observed, [(1, 1), (2, 2), (8, 8)])):
        torch.testing.assert_close(grid, level, rtol=0, atol=1e-6)


def test_multigrid_super_resolution_keeps_block_means() -> None:
    """Super-resolution 2x2 -> 8x8 sampled through 1x1 -> 2x2 -> 4x4 -> 8x8: the 2x2 grid and
    the base are fully determined by the input, the finer grids keep its block means."""
    low = rand((3, 1, 2, 2), seed=40, dtype=torch.float32)
    constraint = DownsampleConsistency(low, (4, 4))
    sampler = MultiGridSampler((Langevin(n_steps=5, step_size=0.3),) * 3, ((2, 2),) * 3)
    grids = sampler.run(tiny_energies(3), torch.zeros(3, 1, 1, 1), constraint=constraint,
                        generator=gen(41))
    torch.testing.assert_close(grids[0], low.mean((-2, -1), keepdim=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(grids[1], low, rtol=0, atol=1e-6)
    torch.testing.assert_close(block_down(grids[2], (2, 2)), low, rtol=0, atol=1e-6)
    torch.testing.assert_close(block_down(grids[3], (4, 4)), low, rtol=0, atol=1e-6)
    # The detail inside the blocks was sampled, not left flat.
    assert (grids[3] - nearest_up(low, (4, 4))).abs().max() > 1e-2


# --------------------------------------------------------------------------- training

GRIDS = [(1, 1), (4, 4), (8, 8)]  # base, then the two modelled grids


def pattern_images(n: int = 8, *, seed: int = 0) -> Tensor:
    """``(n, 3, 8, 8)`` in [-1, 1]: a random colour per image plus horizontal stripes of period
    4 whose phase differs per image, so every grid of the pyramid has its own structure."""
    g = gen(seed)
    colour = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    rows = torch.arange(8).reshape(1, 1, 8, 1)
    phase = torch.randint(0, 4, (n, 1, 1, 1), generator=g)
    stripes = 0.4 * torch.cos(torch.pi * (rows + phase) / 2)
    return (colour + stripes).expand(n, 3, 8, 8).clone()


def multigrid_config() -> dict:
    """The resolved config a multi-grid checkpoint must carry (plain data)."""
    return config_to_dict(ExperimentConfig(
        data=DataConfig(kind="objects", size=8, channels=3),
        multigrid=MultiGridConfig(grids=(GridConfig(size=4), GridConfig(size=8))),
    ))


def make_multigrid_trainer(*, init_seed: int = 0) -> MultiGridTrainer:
    torch.manual_seed(init_seed)
    energies = [image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1], [4, 3, 1, 1]],
                             reference_sigma=0.5) for _ in GRIDS[1:]]
    samplers = [Langevin(n_steps=3, step_size=0.1, clamp=(-1.0, 1.0)),
                Langevin(n_steps=2, step_size=0.05, clamp=(-1.0, 1.0))]
    return MultiGridTrainer(energies, samplers, pattern_images(), GRIDS,
                            train=TrainConfig(batch_size=3, lr=0.01), generator=gen(0),
                            config=multigrid_config())


def weights(energy: nn.Module) -> list[Tensor]:
    """Copies of the convolution weights. (Not the biases: the summed head's top bias adds the
    same constant to the data's and the samples' energies, so the loss never moves it.)"""
    return [p.detach().clone() for name, p in energy.named_parameters() if name.endswith("weight")]


def test_multigrid_trainer_steps_every_grid_on_the_same_examples(monkeypatch) -> None:
    trainer = make_multigrid_trainer()
    # Record the batches each grid's Trainer.step is handed: the grids must learn from the same
    # examples, or the coarse-to-fine chain would join models of different data.
    seen: list[list[Tensor]] = [[] for _ in trainer.trainers]
    for k, grid in enumerate(trainer.trainers):
        def recording_step(batches=None, *, _grid=grid, _seen=seen[k]):
            assert batches is not None, "every grid must be handed the shared batch"
            _seen.append([b.clone() for b in batches])
            return type(_grid).step(_grid, batches)
        monkeypatch.setattr(grid, "step", recording_step)
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


def test_multigrid_trainer_rejects_mismatched_grids() -> None:
    energy = image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]])
    sampler = Langevin(n_steps=1)
    with pytest.raises(ValueError, match="one energy and one sampler per modelled grid"):
        MultiGridTrainer([energy], [sampler, sampler], pattern_images(), GRIDS)
    with pytest.raises(ValueError, match=r"finest grid"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [(1, 1), (4, 4)])
    with pytest.raises(ValueError, match=r"\(3, 3\) does not divide \(8, 8\)"):
        MultiGridTrainer([energy], [sampler], pattern_images(), [(3, 3), (8, 8)])


def test_multigrid_resume_takes_the_same_steps(tmp_path: Path) -> None:
    """2 iterations, save, resume into a differently initialised trainer, 2 more == 4 straight."""
    straight = make_multigrid_trainer()
    straight.fit(4, progress=False)

    first = make_multigrid_trainer()
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    del first
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


def test_multigrid_resume_rejects_a_different_number_of_grids(tmp_path: Path) -> None:
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    path = trainer.save(tmp_path / "checkpoint.pt")
    one_grid = MultiGridTrainer([image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]])],
                                [Langevin(n_steps=1)], pattern_images(), [(4, 4), (8, 8)])
    with pytest.raises(ValueError, match="holds 2 grids, this run has 1"):
        one_grid.resume(path)


def test_multigrid_checkpoint_loads_only_as_multigrid(tmp_path: Path) -> None:
    trainer = make_multigrid_trainer()
    trainer.fit(1, progress=False)
    path = trainer.save(tmp_path / "multigrid" / "checkpoint.pt")

    energies, config, state = load_multigrid(path, device="cpu")
    assert config.multigrid is not None and [g.size for g in config.multigrid.grids] == [4, 8]
    assert len(energies) == 2 and all(not e.training for e in energies)
    for loaded, trained in zip(energies, trainer.energies):
        for (name, p), q in zip(loaded.state_dict().items(), trained.state_dict().values()):
            assert torch.equal(p, q), name
    assert torch.equal(state["base"], trainer.base)
    assert state["grid_sizes"] == [list(s) for s in GRIDS]
    with pytest.raises(CheckpointError, match="load_multigrid"):
        load_model(path, device="cpu")

    single = Trainer(image_energy("texture", in_channels=3, layers=[[4, 3, 1, 1]]),
                     Langevin(n_steps=1), DataStart(), pattern_images(), generator=gen(0),
                     config=config_to_dict(ExperimentConfig()))
    single_path = single.save(tmp_path / "single" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="load_model"):
        load_multigrid(single_path, device="cpu")


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


# --------------------------------------------------------------------------- config, CLI, tasks

# Every grid's model and chains kept tiny: the CLI runs below take about a second each.
SAMPLER = {"n_steps": 2, "step_size": 0.05}
TRAIN = {"n_iterations": 2, "batch_size": 2, "sample_every": 1, "checkpoint_every": 0}


def write_config(path: Path, data: dict, multigrid: dict, *, out: Path) -> Path:
    config = {"name": "multigrid", "device": "cpu", "out_dir": str(out), "data": data,
              "sampler": SAMPLER, "train": TRAIN, "multigrid": multigrid}
    path.write_text(yaml.safe_dump(config))
    return path


def image_folder(root: Path, n: int = 4) -> Path:
    """``n`` 8x8 RGB PNGs: a colour gradient, different per image."""
    root.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, 8, dtype=np.float64)
    for i in range(n):
        pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (8, 1)),
                           np.full((8, 8), 60.0 * i)], axis=-1)
        Image.fromarray(pixels.astype(np.uint8)).save(root / f"image_{i}.png")
    return root


def video_folder(root: Path, n: int = 2) -> Path:
    """``n`` clips of 6 frames, 3 x 8 x 8, each a bright bar moving right."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clip = torch.full((3, 6, 8, 8), -0.8)
        for t in range(6):
            clip[:, t, :, (t + 2 * i) % 8] = 0.8
        save_video(clip, root / f"clip_{i}.mkv")
    return root


def voxel_file(path: Path, n: int = 4) -> Path:
    """``.npz`` with ``X`` ``(n, 8, 8, 8)`` {0, 1}: boxes of different extents."""
    grids = np.zeros((n, 8, 8, 8), np.uint8)
    for i in range(n):
        grids[i, 1:7 - i % 2, 2:6, 1 + i % 3:7] = 1
    np.savez(path, X=grids)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


TINY_IMAGE_NETS = [
    {"size": 4, "model": {"arch": "texture", "layers": [[4, 3, 1, 1], [4, 3, 1, 1]]}},
    # The finest grid with a fully connected head, whose input size comes from the grid, and
    # chains of its own.
    {"size": 8, "model": {"arch": "object", "layers": [[4, 3, 2, 1]]},
     "sampler": {"n_steps": 3, "step_size": 0.03}},
]


@pytest.mark.parametrize("kind", ["objects", "video_frames"])
def test_image_multigrid_train_and_synthesize(tmp_path: Path, kind: str, capsys) -> None:
    if kind == "objects":
        data = {"kind": "objects", "path": str(image_folder(tmp_path / "images")), "size": 8,
                "channels": 3}
    else:  # every frame of every clip is one image
        data = {"kind": "video_frames", "path": str(video_folder(tmp_path / "clips")), "size": 8,
                "channels": 3, "frames": 2}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, {"grids": TINY_IMAGE_NETS}, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    # 2 iterations of sample_every 1: the finest grid's chains after each, and the pyramids.
    for name in ("checkpoint.pt", "config.yaml", "observed.png", "samples.png",
                 "samples_000001.png", "samples_000002.png"):
        assert (run / name).is_file(), name
    n = 4  # 4 images (objects) or 2 clips x 2 frames (video_frames)
    # One row per grid (1x1, 4x4, 8x8, nearest up-sampled to 8x8), one column per example.
    assert png_size(run / "observed_pyramid.png") == (n * 10 + 2, 3 * 10 + 2)
    # The training chains exist on the modelled grids only (4x4, 8x8), a batch of 2 each.
    assert png_size(run / "samples_pyramid.png") == (2 * 10 + 2, 2 * 10 + 2)
    energies, resolved, state = load_multigrid(run, device="cpu")
    assert state["iteration"] == 2 and len(energies) == 2
    assert [g.model.image_size for g in resolved.multigrid.grids] == [4, 8]
    assert all(g.model.in_channels == 3 for g in resolved.multigrid.grids)
    assert state["base"].shape == (n, 3, 1, 1)

    code, err = run_cli(["synthesize", str(run), "-n", "3"], capsys)
    assert code == 0, err
    out = run / "synthesis"
    assert png_size(out / "synthesized.png") == (3 * 10 + 2, 10 + 2)
    assert png_size(out / "synthesized_grid1.png") == (3 * 6 + 2, 6 + 2)  # 4x4 samples
    assert png_size(out / "pyramid.png") == (3 * 10 + 2, 3 * 10 + 2)
    assert not (out / "synthesized_grid2.png").exists()  # the finest grid is `synthesized`


def test_video_multigrid_refines_time_too(tmp_path: Path, capsys) -> None:
    """Clips of 4 frames at 8x8 through 1x1x1 -> 2x4x4 (a temporal grid) -> 4x8x8."""
    data = {"kind": "video", "path": str(video_folder(tmp_path / "clips")), "size": 8,
            "channels": 3, "frames": 4}
    st = {"arch": "st_small", "layers": [[4, [3, 3, 3], 1, 1], [4, [3, 3, 3], 1, 1]]}
    multigrid = {"base_frames": 1, "grids": [{"size": 4, "frames": 2, "model": st},
                                             {"size": 8, "model": st}]}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    for name in ("observed_pyramid.gif", "samples_pyramid.gif", "samples.gif", "samples.mp4"):
        assert (run / name).is_file(), name
    state = load_checkpoint(run)
    assert state["grid_sizes"] == [[1, 1, 1], [2, 4, 4], [4, 8, 8]]
    assert state["base"].shape == (2, 3, 1, 1, 1)

    code, err = run_cli(["synthesize", str(run), "-n", "2"], capsys)
    assert code == 0, err
    for name in ("synthesized.gif", "synthesized.mp4", "synthesized_grid1.gif", "pyramid.gif"):
        assert (run / "synthesis" / name).is_file(), name
    frames = load_video(run / "synthesis" / "synthesized_grid1.gif")
    assert frames.shape[1] == 2  # the temporal grid's clips have 2 frames


def test_voxel_multigrid_train_and_synthesize(tmp_path: Path, capsys) -> None:
    """Shapes of 8^3 through 1^3 -> 4^3 -> 8^3, the model seeing occupancy minus its mean."""
    data = {"kind": "voxels", "path": str(voxel_file(tmp_path / "shapes.npz")), "size": 8,
            "mean": "auto"}
    multigrid = {"grids": [
        {"size": 4, "model": {"arch": "desc32_small", "layers": [[4, 3, 1, 1]]}},
        {"size": 8, "model": {"arch": "desc32_small", "layers": [[4, 4, 2, 1]]}},
    ]}
    run = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=run)

    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 0, err
    for name in ("observed_pyramid.png", "samples_pyramid.png", "samples.png", "samples.npy"):
        assert (run / name).is_file(), name
    energies, resolved, state = load_multigrid(run, device="cpu")
    assert [e.input_size for e in energies] == [(4, 4, 4), (8, 8, 8)]
    mean = resolved.data.mean
    assert isinstance(mean, float) and 0 < mean < 1
    # The base grid holds each shape's occupancy in the model's units.
    shapes = torch.from_numpy(np.load(tmp_path / "shapes.npz")["X"]).float()
    torch.testing.assert_close(state["base"].flatten(), shapes.mean((1, 2, 3)) - mean)

    code, err = run_cli(["synthesize", str(run), "-n", "2"], capsys)
    assert code == 0, err
    out = run / "synthesis"
    for name in ("synthesized.png", "pyramid.png"):
        png_size(out / name)
    # A 4^3 grid's block means rarely reach the render's 0.5 level: values only, no render.
    assert not (out / "synthesized_grid1.png").exists()
    grids = np.load(out / "synthesized_grid1.npy")
    assert grids.shape == (2, 4, 4, 4) and grids.min() >= 0 and grids.max() <= 1
    assert np.load(out / "synthesized.npy").shape == (2, 8, 8, 8)


OBJECTS = {"kind": "objects", "path": "unused", "size": 8, "channels": 3}
VIDEO = {"kind": "video", "path": "unused", "size": 8, "frames": 4}


@pytest.mark.parametrize(
    ("data", "multigrid", "message"),
    [
        pytest.param(OBJECTS, {"grids": []}, "multigrid.grids is empty", id="no-grids"),
        pytest.param(OBJECTS, {"grids": [{"size": 4}]},
                     r"multigrid.grids\[-1\].size = 4.*data.size = 8", id="finest-not-data-size"),
        pytest.param(OBJECTS, {"base_size": 2, "grids": [{"size": 4}, {"size": 8}, {"size": 16}]},
                     "data.size = 8", id="finest-beyond-data-size"),
        pytest.param(OBJECTS, {"grids": [{"size": 3}, {"size": 8}]},
                     r"every multigrid size must divide.*\[1, 3, 8\]", id="sizes-not-dividing"),
        pytest.param(OBJECTS, {"grids": [{"size": 0}, {"size": 8}]},
                     r"multigrid\.grids\[0\]\.size must be positive", id="size-zero"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "frames": 2}]}, "videos only",
                     id="frames-on-images"),
        pytest.param(OBJECTS, {"base_frames": 1, "grids": [{"size": 8}]}, "videos only",
                     id="base-frames-on-images"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "steps": 3}]},
                     r"multigrid\.grids\[0\]\.steps", id="unknown-grid-key"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "model": {"arch": "nope"}}]},
                     r"multigrid\.grids\[0\]\.model\.arch", id="bad-grid-model"),
        pytest.param(OBJECTS, {"grid": [{"size": 8}]}, r"multigrid\.grid\b",
                     id="unknown-multigrid-key"),
        pytest.param(VIDEO, {"grids": [{"size": 8, "frames": 2}]}, "must keep every frame",
                     id="finest-drops-frames"),
        pytest.param(VIDEO, {"grids": [{"size": 4, "frames": 3}, {"size": 8}]},
                     r"every multigrid frames must divide the next finer one, got \[4, 3, 4\].*"
                     r"base_frames",
                     id="frames-not-dividing"),
    ],
)
def test_bad_multigrid_config_exits_2_naming_the_problem(tmp_path: Path, capsys, data: dict,
                                                         multigrid: dict, message: str) -> None:
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=tmp_path / "run")
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_cli_resume_continues_a_multigrid_run(tmp_path: Path) -> None:
    """``train --resume`` up to 4 iterations after 2 ends where 4 straight iterations do."""
    data = {"kind": "objects", "path": str(image_folder(tmp_path / "images")), "size": 8,
            "channels": 3}
    config = str(write_config(tmp_path / "config.yaml", data, {"grids": TINY_IMAGE_NETS},
                              out=tmp_path / "unused"))
    four = ["--set", "train.n_iterations=4", "--quiet"]
    assert main(["train", config, *four, "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", config, "--quiet", "--out", str(tmp_path / "resumed")]) == 0
    assert load_checkpoint(tmp_path / "resumed")["iteration"] == 2
    assert main(["train", config, *four, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    straight, resumed = (load_checkpoint(tmp_path / name) for name in ("straight", "resumed"))
    assert resumed["iteration"] == 4
    for k, (a, b) in enumerate(zip(straight["grids"], resumed["grids"]), start=1):
        for name in a["model"]:
            assert torch.equal(a["model"][name], b["model"][name]), f"grid {k}: {name}"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multigrid")
    data = {"kind": "objects", "path": str(image_folder(root / "images")), "size": 8,
            "channels": 3}
    config = write_config(root / "config.yaml", data, {"grids": TINY_IMAGE_NETS}, out=root / "run")
    assert main(["train", str(config), "--quiet"]) == 0
    return root / "run"


@pytest.mark.parametrize("args", [["--size", "16"], ["--frames", "4"], ["--start", "chains"]])
def test_synthesize_options_that_do_not_apply_to_multigrid(image_run: Path, capsys,
                                                           args: list[str]) -> None:
    code, err = run_cli(["synthesize", str(image_run), "-n", "2", *args], capsys)
    assert code == 2
    assert "multi-grid" in err and "do not apply" in err, err


def test_synthesize_multigrid_is_seeded(image_run: Path, tmp_path: Path) -> None:
    energies, config, state = load_multigrid(image_run, device="cpu")
    outs = [synthesize_multigrid(energies, config, state["base"], tmp_path / name, n_samples=2,
                                 seed=seed) for name, seed in [("a", 0), ("b", 0), ("c", 1)]]
    pixels = [np.asarray(Image.open(out / "synthesized.png")) for out in outs]
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])


def test_grid_sampler_overrides_the_experiment_sampler_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"kind": "voxels", "size": 8},
        "sampler": {"step_size": 0.1, "clamp": [0.0, 1.0], "n_steps": 20},
        "multigrid": {"grids": [{"size": 4, "sampler": {"n_steps": 5}}, {"size": 8}]},
    }))
    config = load_config(path)
    coarse, fine = config.multigrid.grids
    assert coarse.sampler.n_steps == 5
    assert (coarse.sampler.step_size, coarse.sampler.clamp) == (0.1, (0.0, 1.0))
    assert fine.sampler is None  # the experiment's section as is


def test_a_grid_no_finer_than_the_one_below_is_refused() -> None:
    with pytest.raises(ValueError, match="no finer than the grid below"):
        load_config(None, ["data.size=8", "multigrid={base_size: 8, grids: [{size: 8}]}"])


class _Exploding(nn.Module):
    """An energy whose value is NaN: any chain on it diverges at its first step."""

    def forward(self, x: Tensor) -> Tensor:
        return (x * float("nan")).flatten(1).sum(dim=1)


def test_a_diverging_grid_is_named() -> None:
    langevin = Langevin(n_steps=2, step_size=0.01)
    sampler = MultiGridSampler((langevin, langevin), ((2, 2), (2, 2)))
    with pytest.raises(NonFiniteEnergyError, match=r"Langevin on grid 2 \(4x4\).*step 0 of 2"):
        sampler.run([RecordingQuadratic(), _Exploding()], torch.zeros(2, 1, 1, 1))
