"""MultiGridSampler (Gao et al. 2018): the coarse-to-fine sampler's hand-off from grid to grid,
conditional multi-grid sampling that keeps what it observed, and a diverging grid named.

Constraint.coarsen is tested in test_mcmc_constraints.py, the pyramid operators in test_ops.py,
MultiGridTrainer in test_train.py, multi-grid checkpoints in test_checkpoint.py, the multigrid
config section in test_config.py and multi-grid train / synthesize runs in
test_tasks_multigrid.py.
"""

from __future__ import annotations

import pytest
import torch
from _tiny import gen, rand
from torch import Tensor, nn

from stgconv.config import TrainConfig
from stgconv.energy import image_energy
from stgconv.mcmc import (
    HMC,
    MALA,
    DownsampleConsistency,
    KnownEntries,
    Langevin,
    MultiGridSampler,
    NoiseInit,
    NoiseStart,
    NonFiniteEnergyError,
)
from stgconv.ops import block_down, nearest_up, pyramid
from stgconv.recovery import recover
from stgconv.super_resolution import super_resolve_batch
from stgconv.train import Trainer

# float64 for the constraint algebra: its identities hold to rounding, ~1e-15 relative.
TOL = {"rtol": 0.0, "atol": 1e-12}


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


def test_a_consistent_multigrid_keeps_every_grid_on_the_one_below() -> None:
    """Free chains on a quadratic energy drift every block mean towards 0; with ``consistent``
    each grid's block means stay the samples of the grid below, the base's mean colour to the
    finest grid, also where a task clamps known entries (one fully known block switched the
    consistency off for its whole grid)."""
    factors = ((2, 2), (4, 4))
    samplers = (Langevin(n_steps=3, step_size=0.3),) * 2
    x0 = rand((3, 2, 1, 1), seed=2) + 2.0
    free = MultiGridSampler(samplers, factors).run([RecordingQuadratic()] * 2, x0,
                                                   generator=gen(0))
    grids = MultiGridSampler(samplers, factors, consistent=True).run(
        [RecordingQuadratic()] * 2, x0, generator=gen(0))
    assert not torch.allclose(block_down(free[1], (2, 2)), free[0], atol=1e-3)
    for k, factor in enumerate(factors, start=1):
        torch.testing.assert_close(block_down(grids[k], factor), grids[k - 1], rtol=0, atol=1e-12)
        assert not torch.equal(grids[k], nearest_up(grids[k - 1], factor))  # detail was added
    truth = rand((3, 2, 8, 8), seed=5)
    known = KnownEntries(truth, torch.ones_like(truth, dtype=torch.bool))
    observed = MultiGridSampler(samplers, factors, consistent=True).run(
        [RecordingQuadratic()] * 2, x0, constraint=known, generator=gen(0))
    torch.testing.assert_close(observed[-1], truth, **TOL)
    # The top-left 4x4 quarter known, the rest missing: grid 1's top-left entry is clamped to
    # the quarter's mean, the base and the other entries are free.
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :4] = True
    partly = MultiGridSampler(samplers, factors, consistent=True).run(
        [RecordingQuadratic()] * 2, x0, constraint=KnownEntries(truth, mask), generator=gen(0))
    assert torch.equal(partly[-1][..., :4, :4], truth[..., :4, :4])
    for k, factor in enumerate(factors, start=1):
        torch.testing.assert_close(block_down(partly[k], factor), partly[k - 1], rtol=0,
                                   atol=1e-12)
    # Super-resolution of 8x8 blocks: the grids' finer block means imply the task's.
    low = rand((3, 2, 1, 1), seed=6)
    refined = MultiGridSampler(samplers, factors, consistent=True).run(
        [RecordingQuadratic()] * 2, x0, constraint=DownsampleConsistency(low, (8, 8)),
        generator=gen(0))
    torch.testing.assert_close(block_down(refined[-1], (8, 8)), low, rtol=0, atol=1e-12)
    for k, factor in enumerate(factors, start=1):
        torch.testing.assert_close(block_down(refined[k], factor), refined[k - 1], rtol=0,
                                   atol=1e-12)


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
    # One energy for the list: a function failed on its len(), and a Sequential of two layers
    # ran each layer as a grid's energy. A ModuleList of the grids' energies is a list.
    for single in (RecordingQuadratic(), nn.Sequential(nn.Identity(), nn.Identity())):
        with pytest.raises(ValueError, match=r"^energies must be a sequence of one energy per "
                                             rf"modelled grid, coarse to fine \(2\), got one "
                                             rf"energy \({type(single).__name__}\)"):
            sampler.run(single, torch.zeros(1, 1, 1, 1))
    # A mask given as the constraint failed on "'Tensor' object has no attribute 'project'".
    with pytest.raises(ValueError, match=r"^MultiGridSampler: constraint must be a Constraint "
                                         r"\(.*an object with project and coarsen\), got Tensor"):
        sampler.run([RecordingQuadratic()] * 2, torch.zeros(1, 1, 1, 1),
                    constraint=torch.ones(1, 1, 4, 4, dtype=torch.bool))
    grids = nn.ModuleList([RecordingQuadratic(), RecordingQuadratic()])
    assert [x.shape[-1] for x in sampler.run(grids, torch.zeros(1, 1, 1, 1))] == [1, 2, 4]
    for factors in (((2, 2),), ((2, 2),) * 3):
        with pytest.raises(ValueError, match=rf"^{len(factors)} grid factors for 2 samplers; "
                                             "expected one factor per modelled grid"):
            MultiGridSampler((langevin, langevin), factors)
    # Named as the multi-grid sampler's argument, before any grid's chain sees it.
    with pytest.raises(ValueError, match="^MultiGridSampler: generator must be a torch.Generator"):
        sampler.run([RecordingQuadratic()] * 2, torch.zeros(1, 1, 1, 1), generator=0)
    # Named as the first grid's sampler's start, or failed on .detach.
    for base, got in ((torch.zeros(1, 1, 1, 1, dtype=torch.long), "torch.int64"),
                      ([[[[0.0]]]], "list")):
        with pytest.raises(ValueError, match=f"^MultiGridSampler: x0 must be a float tensor "
                                             rf"\(B, \*S\) of chain starts, got {got}$"):
            sampler.run([RecordingQuadratic()] * 2, base)
    with pytest.raises(ValueError, match="at least one"):
        MultiGridSampler((), ())
    # A sampler's name or a step function failed at the run: "'str' object has no attribute".
    for other in ("langevin", lambda energy, x: x):
        with pytest.raises(ValueError, match=r"^samplers\[1\] must be a sampler \(Langevin"):
            MultiGridSampler((langevin, other), ((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="same dims"):
        MultiGridSampler((langevin, langevin), ((2, 2), (1, 2, 2)))
    # A factor of 1.5 was taken until the run, a bare int failed on its len().
    for factors in (((2, 2), (0, 2)), ((2, 2), (1.5, 2)), (2, 2)):
        with pytest.raises(ValueError, match="positive ints"):
            MultiGridSampler((langevin, langevin), factors)
    assert sampler.factor_to_finest(0) == (4, 4)
    assert sampler.factor_to_finest(2) == (1, 1)
    # A grid past the finest answered (1, 1), and -1 the last step's factor.
    for grid in (3, -1):
        with pytest.raises(ValueError, match=rf"grid must be .*, got {grid}"):
            sampler.factor_to_finest(grid)


@pytest.mark.parametrize("constraint", [
    KnownEntries(torch.zeros(2, 1, 6, 6), torch.ones(2, 1, 6, 6, dtype=torch.bool)),
    KnownEntries(torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.bool)),
    DownsampleConsistency(torch.zeros(2, 1, 2, 2), (2, 2)),
], ids=["not divisible", "divisible", "block means"])
def test_a_constraint_for_another_finest_grid_is_named(constraint) -> None:
    """Such a constraint failed while it was coarsened for the base grid ("trailing shape (6, 6)
    is not divisible by block factor (4, 4)"), or on a coarse grid's chains against its
    coarsened form, naming neither the finest grid nor the constraint as given."""
    langevin = Langevin(n_steps=1)
    sampler = MultiGridSampler((langevin, langevin), ((2, 2), (2, 2)))
    with pytest.raises(ValueError, match=r"the constraint refuses the chains of the finest grid "
                                         r"\(2, 1, 8, 8\) \(x0 \(2, 1, 2, 2\) times the factors "
                                         r"\(4, 4\)\): the chains have shape \(2, 1, 8, 8\)"):
        sampler.run([RecordingQuadratic()] * 2, torch.zeros(2, 1, 2, 2), constraint=constraint)


def test_a_constraint_refusing_the_finest_grids_dtype_is_not_said_not_to_fit() -> None:
    """A float64 observed that float32 chains would round fits the finest grid's shape: it was
    refused as "the constraint does not fit the finest grid (1, 1, 4, 4) ...: observed is
    torch.float64 and holds values that the chains' torch.float32 would round"."""
    langevin = Langevin(n_steps=1)
    sampler = MultiGridSampler((langevin,), ((4, 4),))
    tenth = KnownEntries(torch.full((1, 1, 4, 4), 0.1, dtype=torch.float64),
                         torch.ones(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^the constraint refuses the chains of the finest grid "
                                         r"\(1, 1, 4, 4\) .*: observed is torch.float64 and "
                                         r"holds values that the chains' torch.float32 would "
                                         r"round"):
        sampler.run([RecordingQuadratic()], torch.zeros(1, 1, 1, 1), constraint=tenth)


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


class _Exploding(nn.Module):
    """An energy whose value is NaN: any chain on it diverges at its first step."""

    def forward(self, x: Tensor) -> Tensor:
        return (x * float("nan")).flatten(1).sum(dim=1)


def test_a_diverging_grid_is_named() -> None:
    langevin = Langevin(n_steps=2, step_size=0.01)
    sampler = MultiGridSampler((langevin, langevin), ((2, 2), (2, 2)))
    with pytest.raises(NonFiniteEnergyError, match=r"Langevin on grid 2 \(4x4\).*step 0 of 2"):
        sampler.run([RecordingQuadratic(), _Exploding()], torch.zeros(2, 1, 1, 1))
    # The grid's own dims, whatever leads them: two lead dims, then none.
    with pytest.raises(NonFiniteEnergyError, match=r"Langevin on grid 2 \(4x4\)"):
        sampler.run([RecordingQuadratic(), _Exploding()], torch.zeros(2, 5, 1, 1, 1))
    flat = MultiGridSampler((langevin, langevin), ((2,), (2,)))
    with pytest.raises(NonFiniteEnergyError, match=r"Langevin on grid 2 \(4\)"):
        flat.run([RecordingQuadratic(), _Exploding()], torch.zeros(2, 1))


def _half_square(x: Tensor) -> Tensor:
    return 0.5 * x.flatten(1).pow(2).sum(1)


def test_consistent_multigrid_keeps_a_super_resolution_that_does_not_nest() -> None:
    """Task blocks (1, 4, 4) against grid blocks (2, 2, 2): neither nests, so the finest grid
    must keep the task's constraint, not the grid below's block means."""
    low = torch.randn(2, 1, 4, 2, 2, generator=gen(0))
    task = DownsampleConsistency(low, (1, 4, 4))
    sampler = MultiGridSampler((Langevin(n_steps=3, step_size=0.1),), ((2, 2, 2),),
                               consistent=True)
    x0 = torch.randn(2, 1, 2, 4, 4, generator=gen(1))
    grids = sampler.run([_half_square], x0, constraint=task, generator=gen(2))
    assert grids[-1].shape == (2, 1, 4, 8, 8)
    torch.testing.assert_close(block_down(grids[-1], (1, 4, 4)), low, rtol=0, atol=1e-5)


def test_multigrid_base_is_a_copy_of_x0() -> None:
    """The returned base does not alias x0: writing into it leaves x0 as it was."""
    x0 = torch.zeros(2, 1, 1, 1)
    grids = MultiGridSampler((Langevin(n_steps=1, step_size=0.1),), ((2, 2),)).run(
        [_half_square], x0, generator=gen(0))
    grids[0].add_(1.0)
    assert torch.equal(x0, torch.zeros(2, 1, 1, 1))


def test_a_multigrid_sampler_given_where_one_energy_is_sampled_is_named() -> None:
    """Its run takes a list of energies: recover and super_resolve_batch failed at the first
    chain with "pass [energy] for one grid", which their callers cannot do, and a trainer or a
    multi-grid sampler of one took it as a grid's sampler. Each refuses it up front."""
    pyramid_sampler = MultiGridSampler((Langevin(n_steps=1, step_size=0.1),), ((2, 2),))
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten(), nn.Linear(16, 1),
                        nn.Flatten(0))
    observed = rand((1, 4, 4), seed=0).float()
    known = torch.ones(1, 4, 4, dtype=torch.bool)
    known[0, 0, 0] = False
    refused = "must run one energy's chains .* got a MultiGridSampler"
    with pytest.raises(ValueError, match=f"^sampler {refused}"):
        recover(net, pyramid_sampler, observed, known, train=TrainConfig(n_iterations=2),
                average_last=1, generator=gen(0))
    with pytest.raises(ValueError, match=f"^sampler {refused}"):
        super_resolve_batch(_half_square, pyramid_sampler, torch.full((1, 1, 2, 2, 2), 0.5), 2)
    with pytest.raises(ValueError, match=f"^sampler {refused}"):
        Trainer(net, pyramid_sampler, NoiseStart(NoiseInit()), observed[None])
    with pytest.raises(ValueError, match=fr"^samplers\[0\] {refused}"):
        MultiGridSampler((pyramid_sampler,), ((2, 2),))
