"""Constraint contract: every constraint is an idempotent affine orthogonal projection that keeps
what it must keep, over images, voxels and videos; coarsened for the grids of a multi-grid model,
it keeps whole blocks only and is implied by the fine constraint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import gen
from torch import Tensor

from stgconv.mcmc import (
    Constraint,
    DownsampleConsistency,
    KnownEntries,
    KnownEntriesAndBlockMeans,
    Langevin,
    MultiGridSampler,
)
from stgconv.ops import block_down

F64 = torch.float64
# float64 throughout: the affine identities hold to rounding, ~1e-15 relative.
TOL = dict(rtol=0.0, atol=1e-12)


def rand(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# name -> (chain shape, factor): 2-D images (f, f), 3-D voxels (f, f, f), videos in space only
# (1, f, f) and in space-time (2, f, f).
DOWN_CASES = {
    "image-f2": ((3, 2, 8, 8), (2, 2)),
    "image-f4": ((3, 2, 8, 8), (4, 4)),
    "voxel-f2": ((2, 1, 8, 8, 8), (2, 2, 2)),
    "voxel-f4": ((2, 1, 8, 8, 8), (4, 4, 4)),
    "video-1f2": ((2, 3, 4, 8, 8), (1, 2, 2)),
    "video-1f4": ((2, 3, 4, 8, 8), (1, 4, 4)),
    "video-2f2": ((2, 3, 4, 8, 8), (2, 2, 2)),
    "video-2f4": ((2, 3, 4, 8, 8), (2, 4, 4)),
}
# name -> (chain shape, shape of the known mask): a mask per entry, and masks that broadcast
# (one spatial mask for every chain and channel; whole known frames of a video).
KNOWN_CASES = {
    "image-entries": ((3, 2, 8, 8), (3, 2, 8, 8)),
    "image-shared-mask": ((3, 2, 8, 8), (1, 1, 8, 8)),
    "voxel-entries": ((2, 1, 8, 8, 8), (2, 1, 8, 8, 8)),
    "video-entries": ((2, 3, 4, 8, 8), (2, 3, 4, 8, 8)),
    "video-known-frames": ((2, 3, 4, 8, 8), (1, 1, 4, 1, 1)),
}


def make_down(case: str) -> tuple[DownsampleConsistency, tuple[int, ...]]:
    shape, factor = DOWN_CASES[case]
    low = block_down(rand(shape, seed=1), factor)  # any low-res tensor of the right shape
    return DownsampleConsistency(low, factor), shape


def make_known(case: str) -> tuple[KnownEntries, tuple[int, ...]]:
    shape, mask_shape = KNOWN_CASES[case]
    known = torch.rand(mask_shape, generator=torch.Generator().manual_seed(2)) < 0.5
    if case == "video-known-frames":
        known = torch.tensor([True, False, True, False]).reshape(mask_shape)
    assert known.any() and not known.all()
    return KnownEntries(rand(shape, seed=3), known), shape


# name -> (KNOWN_CASES name, DOWN_CASES name): recovery on a grid that refines the one below.
BOTH_CASES = {
    "image-entries-f2": ("image-entries", "image-f2"),
    "image-shared-mask-f4": ("image-shared-mask", "image-f4"),
    "voxel-entries-f2": ("voxel-entries", "voxel-f2"),
    "video-entries-2f2": ("video-entries", "video-2f2"),
    "video-known-frames-1f2": ("video-known-frames", "video-1f2"),
}


def make_both(case: str) -> tuple[KnownEntriesAndBlockMeans, tuple[int, ...]]:
    known_case, down_case = BOTH_CASES[case]
    known, shape = make_known(known_case)
    return KnownEntriesAndBlockMeans(known, make_down(down_case)[0]), shape


def all_constraints() -> list[tuple[str, Constraint, tuple[int, ...]]]:
    return [(f"down-{c}", *make_down(c)) for c in DOWN_CASES] + [
        (f"known-{c}", *make_known(c)) for c in KNOWN_CASES
    ] + [(f"both-{c}", *make_both(c)) for c in BOTH_CASES]


CONSTRAINTS = all_constraints()
IDS = [c[0] for c in CONSTRAINTS]


# ---------------------------------------------------------------------------------------------
# Contract shared by every constraint
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "constraint", "shape"), CONSTRAINTS, ids=IDS)
def test_project_is_idempotent_and_moves_generic_points(name, constraint, shape) -> None:
    x = rand(shape, seed=10)
    p = constraint.project(x)
    assert p.shape == x.shape
    torch.testing.assert_close(constraint.project(p), p, **TOL)
    assert not torch.allclose(p, x), "a generic point should not already satisfy the constraint"


@pytest.mark.parametrize(("name", "constraint", "shape"), CONSTRAINTS, ids=IDS)
def test_tangent_is_linear_idempotent_and_self_adjoint(name, constraint, shape) -> None:
    u, v = rand(shape, seed=11), rand(shape, seed=12)
    t = constraint.tangent
    torch.testing.assert_close(t(2.5 * u - 0.5 * v), 2.5 * t(u) - 0.5 * t(v), **TOL)
    torch.testing.assert_close(t(t(u)), t(u), **TOL)
    # Self-adjoint: the projection is orthogonal, which MALA's and HMC's densities assume.
    torch.testing.assert_close((t(u) * v).sum(), (u * t(v)).sum(), rtol=1e-12, atol=1e-10)
    # The default definition of the base class: tangent(v) = project(v) - project(0).
    torch.testing.assert_close(t(v), Constraint.tangent(constraint, v), **TOL)


@pytest.mark.parametrize(("name", "constraint", "shape"), CONSTRAINTS, ids=IDS)
def test_moving_along_tangent_stays_feasible(name, constraint, shape) -> None:
    x = constraint.project(rand(shape, seed=13))  # feasible
    v = rand(shape, seed=14)
    step = constraint.tangent(v)
    assert step.abs().max() > 0.1
    torch.testing.assert_close(constraint.project(x + step), constraint.project(x) + step, **TOL)
    # And the projection is the nearest feasible point: x - project(x) is orthogonal to the tangent.
    y = rand(shape, seed=15)
    residual = y - constraint.project(y)
    torch.testing.assert_close((residual * step).sum(), torch.tensor(0.0, dtype=F64),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize(("name", "constraint", "shape"), CONSTRAINTS, ids=IDS)
def test_held_entries_are_those_the_projection_resets(name, constraint, shape) -> None:
    """Langevin ignores the gradient where ``held`` says the projection sets the entry
    whatever the chain holds: there, and nowhere else, a step changes nothing (a block mean
    is held as a direction, by no entry)."""
    held = constraint.held()
    assert (held is None) == name.startswith("down-")
    if held is None:
        return
    held = torch.broadcast_to(held, shape)
    x = constraint.project(rand(shape, seed=16))
    step = torch.zeros(shape, dtype=F64).masked_fill(held, 5.0)
    torch.testing.assert_close(constraint.project(x + step), x, **TOL)
    assert (constraint.tangent(rand(shape, seed=17))[held] == 0).all()
    moved = constraint.project(x + torch.zeros(shape, dtype=F64).masked_fill(~held, 5.0))
    assert (moved != x)[~held].any()


@pytest.mark.parametrize("case", list(BOTH_CASES))
def test_known_entries_and_block_means_keep_both(case: str) -> None:
    """The known entries clamped exactly, and the mean of every block with a free entry at its
    target; a block without one keeps its observed values."""
    constraint, shape = make_both(case)
    p = constraint.project(rand(shape, seed=16))
    known = torch.broadcast_to(constraint.known.known, shape)
    assert torch.equal(p[known], torch.broadcast_to(constraint.known.observed, shape)[known])
    factor = constraint.means.factor
    has_free = block_down((~known).to(F64), factor) > 0
    assert has_free.any()
    low = torch.broadcast_to(constraint.means.low, has_free.shape)
    torch.testing.assert_close(block_down(p, factor)[has_free], low[has_free], **TOL)


# ---------------------------------------------------------------------------------------------
# KnownEntries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(KNOWN_CASES))
def test_known_entries_clamped_exactly_and_free_entries_untouched(case: str) -> None:
    constraint, shape = make_known(case)
    x = rand(shape, seed=20)
    p = constraint.project(x)
    known = constraint.known.expand(shape)
    observed = constraint.observed.expand(shape)
    assert torch.equal(p[known], observed[known])
    assert torch.equal(p[~known], x[~known])
    v = constraint.tangent(rand(shape, seed=21))
    assert (v[known] == 0).all() and (v[~known] != 0).all()


def test_known_entries_rejects_non_bool_mask() -> None:
    observed = rand((2, 1, 4, 4), seed=0)
    for bad in [torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.uint8)]:
        with pytest.raises(ValueError, match="bool"):
            KnownEntries(observed, bad)
    # A numpy mask of bools is not taken for a bool tensor ("got bool" would mislead).
    with pytest.raises(ValueError, match="bool tensor .* got ndarray"):
        KnownEntries(observed, np.ones((2, 1, 4, 4), dtype=bool))
    known = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    # An array failed on "has no attribute 'detach'", a meta tensor in torch's words ("Tensor
    # on device cpu is not on the expected device meta!"), naming neither argument.
    with pytest.raises(ValueError, match="^observed must be a torch.Tensor, got ndarray"):
        KnownEntries(observed.numpy(), known)
    for pair, name in (((observed.to("meta"), known), "observed"),
                       ((observed, known.to("meta")), "known")):
        with pytest.raises(ValueError, match=f"^{name} is on the meta device"):
            KnownEntries(*pair)


def test_known_entries_rejects_non_broadcastable_mask() -> None:
    observed = rand((2, 1, 4, 4), seed=0)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\)"):
        KnownEntries(observed, torch.ones(2, 1, 4, 5, dtype=torch.bool))


def test_constraints_refuse_non_finite_values_to_keep() -> None:
    """A NaN observed at a known entry (or in the block means) was clamped into every chain,
    and the sampler then reported a divergence at step 0, blaming its step size. NaN at a
    missing entry is allowed: it is never read."""
    observed = rand((2, 1, 4, 4), seed=0)
    known = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    known[..., 0] = True
    KnownEntries(observed.masked_fill(~known, float("nan")), known)
    with pytest.raises(ValueError, match="observed has NaN or infinite values at known entries"):
        KnownEntries(observed.masked_fill(known, float("inf")), known)
    for bad in (float("nan"), float("inf"), -float("inf")):
        low = rand((2, 1, 2, 2), seed=1)
        low[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="low has NaN or infinite values"):
            DownsampleConsistency(low, (2, 2))


def test_downsample_consistency_names_block_means_on_the_meta_device() -> None:
    """As KnownEntries' observed: a meta ``low`` failed in torch's words, "Tensor.item() cannot
    be called on meta tensors", naming no argument."""
    with pytest.raises(ValueError, match="^low is on the meta device"):
        DownsampleConsistency(rand((2, 1, 2, 2), seed=1).to("meta"), (2, 2))


# ---------------------------------------------------------------------------------------------
# DownsampleConsistency
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(DOWN_CASES))
def test_downsample_consistency_matches_low_and_keeps_detail(case: str) -> None:
    constraint, shape = make_down(case)
    factor = constraint.factor
    x = rand(shape, seed=30)
    p = constraint.project(x)
    torch.testing.assert_close(block_down(p, factor), constraint.low, **TOL)
    # Only block means change: the correction p - x is constant on every block.
    torch.testing.assert_close(constraint.tangent(p - x), torch.zeros_like(x), **TOL)
    # Tangent directions have zero block means.
    v = constraint.tangent(rand(shape, seed=31))
    torch.testing.assert_close(block_down(v, factor), torch.zeros_like(constraint.low), **TOL)


def test_downsample_consistency_broadcasts_one_low_over_chains() -> None:
    low = rand((1, 2, 4, 4), seed=0)
    constraint = DownsampleConsistency(low, (2, 2))
    p = constraint.project(rand((5, 2, 8, 8), seed=1))
    torch.testing.assert_close(block_down(p, (2, 2)), low.expand(5, 2, 4, 4), **TOL)


@pytest.mark.parametrize("bad_shape", [(3, 2, 8, 6), (3, 2, 16, 16), (3, 2, 4, 4)])
def test_downsample_consistency_wrong_shape_is_a_value_error(bad_shape: tuple[int, ...]) -> None:
    constraint = DownsampleConsistency(rand((3, 2, 4, 4), seed=0), (2, 2))
    with pytest.raises(ValueError, match=r"x factor \(2, 2\) = \(3, 2, 8, 8\) does not fit"):
        constraint.project(rand(bad_shape, seed=1))


def test_downsample_consistency_refuses_chains_its_low_would_broadcast_over() -> None:
    """A video's one low-resolution frame is not every frame's: the blocked dims must match in
    size, not broadcast (the frames' block means all became that frame's)."""
    constraint = DownsampleConsistency(rand((2, 1, 1, 4, 4), seed=0), (1, 2, 2))
    with pytest.raises(ValueError, match=r"= \(2, 1, 1, 8, 8\) does not fit"):
        constraint.project(rand((2, 1, 3, 8, 8), seed=1))


@pytest.mark.parametrize("chains", [(1, 2, 8, 8), (3, 2, 16, 16)])
def test_known_entries_refuse_chains_they_do_not_fit(chains: tuple[int, ...]) -> None:
    """One chain against observed values for three was broadcast to three chains (a sampler
    returned another batch than it was given); another size failed inside torch.where."""
    constraint = KnownEntries(rand((3, 2, 8, 8), seed=0), torch.ones(3, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"chains have shape .* made for observed \(3, 2, 8, 8\) "
                                         r"and known \(3, 1, 8, 8\) does not fit"):
        constraint.project(rand(chains, seed=1))


def test_known_entries_refuse_one_chain_where_the_mask_holds_three() -> None:
    """The chains must fit the mask's batch too, not only the observed values': one chain
    against a mask for three was broadcast to three chains."""
    constraint = KnownEntries(rand((1, 2, 8, 8), seed=0), torch.ones(3, 1, 8, 8, dtype=torch.bool))
    assert constraint.project(rand((3, 2, 8, 8), seed=1)).shape == (3, 2, 8, 8)
    with pytest.raises(ValueError, match=r"chains have shape \(1, 2, 8, 8\), which a constraint "
                                         r"made for observed \(1, 2, 8, 8\) and known "
                                         r"\(3, 1, 8, 8\) does not fit"):
        constraint.project(rand((1, 2, 8, 8), seed=1))


@pytest.mark.parametrize("chains", [(1, 2, 8, 8), (3, 2, 8, 8), (0, 2, 8, 8), (4, 3, 2, 8, 8),
                                    (2, 8, 8), (3, 1, 8, 8), (3, 2, 8, 1), (3, 2, 8, 16)])
def test_constraints_take_the_chains_torch_broadcasts_their_data_over(
        chains: tuple[int, ...]) -> None:
    """project compares the shapes dim by dim (torch.broadcast_shapes cost more than the
    projection, at every step): it takes exactly the chains that torch broadcasts the
    constraint's data over without changing their shape, and keeps that shape."""
    try:
        fits = torch.broadcast_shapes(chains, (1, 2, 8, 8)) == chains
    except RuntimeError:
        fits = False
    x = rand(chains, seed=1)
    for constraint in (KnownEntries(rand((1, 2, 8, 8), seed=0),
                                    torch.ones(1, 1, 8, 8, dtype=torch.bool)),
                       DownsampleConsistency(rand((1, 2, 4, 4), seed=0), (2, 2))):
        if fits:
            assert constraint.project(x).shape == chains
        else:
            with pytest.raises(ValueError, match=r"does not fit"):
                constraint.project(x)


def test_constraints_keep_the_chains_dtype_and_carry_no_graph() -> None:
    """float32 data under float64 chains promoted nothing and lost nothing; data that requires
    grad made the projected start a non-leaf, which Langevin then failed to step."""
    observed = rand((2, 1, 4, 4), seed=0).float().requires_grad_(True)
    known = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    known[..., 0] = True
    for constraint in (KnownEntries(observed, known),
                       DownsampleConsistency(observed[..., ::2, ::2], (2, 2))):
        x = constraint.project(rand((2, 1, 4, 4), seed=1))
        assert x.dtype == F64 and not x.requires_grad
        out = Langevin(n_steps=2, step_size=0.1).run(
            lambda z: z.pow(2).flatten(1).sum(1), rand((2, 1, 4, 4), seed=2).float(),
            constraint=constraint, generator=torch.Generator().manual_seed(0))
        assert out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(KnownEntries(observed, known).project(x)[known],
                       observed.detach()[known].double())


@pytest.mark.parametrize("name", ["observed", "low"])
def test_constraints_refuse_chains_whose_dtype_would_round_their_values(name: str) -> None:
    """Float64 known values (or block means) under float32 chains were rounded to float32
    without a word: 0.1 came back as 0.10000000149, a pixel not the one given. Refused, naming
    both dtypes, a value and the conversion; chains of the data's dtype are taken, and so are
    float32 chains where no value rounds (float64 occupancies of 0 and 1, as numpy makes them),
    whatever the values at unknown entries."""
    def make(data: Tensor) -> Constraint:
        known = torch.tensor([True, True, True, False]).reshape(1, 1, 2, 2)
        return (KnownEntries(data, known) if name == "observed"
                else DownsampleConsistency(data, (2, 2)))

    chains = torch.zeros((1, 1, 4, 4) if name == "low" else (1, 1, 2, 2))
    tenth = make(torch.full((1, 1, 2, 2), 0.1, dtype=F64))
    message = (rf"^{name} is torch.float64 and holds values that the chains' torch.float32 "
               rf"would round \(0.1 to 0.10000000149011612\): give {name} in the chains' "
               rf"dtype \({name}.to\(torch.float32\)\), or run the chains in torch.float64$")
    with pytest.raises(ValueError, match=message):
        tenth.project(chains)
    with pytest.raises(ValueError, match=message):
        Langevin(n_steps=1).run(lambda z: z.pow(2).flatten(1).sum(1), chains, constraint=tenth)
    kept = tenth.project(chains.double())
    assert kept.dtype == F64 and (kept[..., 0, :] == 0.1).all()
    occupancy = torch.tensor([1.0, 0.0, 1.0, 0.1 if name == "observed" else 1.0], dtype=F64)
    kept = make(occupancy.reshape(1, 1, 2, 2)).project(chains)
    assert kept.dtype == torch.float32 and kept[0, 0, 0, 0] == 1.0


def test_constraints_name_both_devices_when_the_chains_are_on_another() -> None:
    """A constraint on CUDA projecting CPU chains (or the reverse) failed in torch's words
    ("Tensor on device meta is not on the expected device cpu!"), naming neither the
    constraint nor the way out. Chains on the meta device stand in for a GPU here."""
    known = KnownEntries(torch.zeros(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    means = DownsampleConsistency(torch.zeros(1, 2, 2), (2, 2))
    chains = torch.empty(2, 1, 4, 4, device="meta")
    for constraint, made in ((known, r"observed on cpu: make the constraint on the chains' "
                                      r"device \(KnownEntries\(observed.to\('meta'\), "
                                      r"known.to\('meta'\)\)\)$"),
                             (means, r"low on cpu: make the constraint on the chains' device "
                                     r"\(DownsampleConsistency\(low.to\('meta'\), factor\)\)$"),
                             (KnownEntriesAndBlockMeans(known, means), "observed on cpu")):
        with pytest.raises(ValueError, match=rf"^the chains are on meta but the constraint's "
                                             rf"{made}"):
            constraint.project(chains)


@pytest.mark.parametrize("factor", [(0, 2), (2, -2), (), (1.5, 2)])
def test_downsample_consistency_bad_factor_is_a_value_error(factor: tuple[int, ...]) -> None:
    """A block of 1.5 is named too, not truncated to blocks of 1."""
    with pytest.raises(ValueError, match="factor"):
        DownsampleConsistency(rand((3, 2, 4, 4), seed=0), factor)


def test_downsample_consistency_non_divisible_tangent_is_a_value_error() -> None:
    constraint = DownsampleConsistency(rand((3, 2, 4, 4), seed=0), (2, 2))
    with pytest.raises(ValueError, match="not divisible"):
        constraint.tangent(rand((3, 2, 7, 8), seed=1))


def test_a_constraint_of_ones_own_gets_the_default_tangent_and_is_not_coarsened() -> None:
    """A constraint without ``coarsen`` is named when a multi-grid chain asks for it: it must
    not leave the coarser grids free without a word."""
    class FirstEntryIsOne(Constraint):
        def project(self, x: Tensor) -> Tensor:
            out = x.clone()
            out[:, 0] = 1.0
            return out

    c = FirstEntryIsOne()
    v = rand((4, 3), seed=0)
    t = c.tangent(v)
    assert (t[:, 0] == 0).all() and torch.equal(t[:, 1:], v[:, 1:])
    with pytest.raises(NotImplementedError):
        Constraint().project(v)
    with pytest.raises(NotImplementedError,
                       match="^FirstEntryIsOne cannot be coarsened for multi-grid sampling$"):
        c.coarsen((2,))


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


def test_coarsened_constraints_take_float32_chains_that_round_their_block_means() -> None:
    """Float64 occupancies of 0 and 1 are taken by float32 chains (they hold them exactly), but
    a coarse grid's block means of them (4/9 over 3x3 blocks) round in float32: a multi-grid
    chain refused them there as "observed is torch.float64 and holds values that the chains'
    torch.float32 would round (0.444 ...)", a value the caller never gave. A coarse grid's
    chains round their own block means alike; the finest grid keeps the values given."""
    occupancy = (rand((1, 1, 6, 6), seed=0) > 0).to(F64)
    known = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    known[..., 0, 0] = False
    for constraint, factor in ((KnownEntries(occupancy, known), (3, 3)),
                               (DownsampleConsistency(occupancy, (2, 2)), (6, 6))):
        coarse = constraint.coarsen(factor)
        assert coarse is not None
        assert coarse.project(torch.zeros(1, 1, 2, 2)).dtype == torch.float32

    def energy(x: Tensor) -> Tensor:
        return x.pow(2).flatten(1).sum(1)

    sampler = Langevin(n_steps=2, step_size=0.1)
    grids = MultiGridSampler((sampler, sampler), ((2, 2), (3, 3))).run(
        [energy, energy], torch.zeros(1, 1, 1, 1), constraint=KnownEntries(occupancy, known),
        generator=torch.Generator().manual_seed(0))
    assert torch.equal(grids[-1][known], occupancy[known].float())


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
                                            ((2,), "cover the constraint's dims"),
                                            ((1, 2, 2), "cover the constraint's dims")])
def test_downsample_consistency_coarsen_errors(g: tuple[int, ...], message: str) -> None:
    fine = DownsampleConsistency(rand((1, 1, 2, 2), seed=0), (4, 4))
    with pytest.raises(ValueError, match=message):
        fine.coarsen(g)


def test_known_entries_coarsen_with_a_unit_factor_in_some_dims() -> None:
    """(1, 2, 2), a video's spatial-only coarsening: the coarse constraint lives on the coarse
    grid, and a partly observed block stays free there."""
    observed = torch.arange(16.0).view(1, 1, 2, 2, 4)  # (B, C, T, H, W)
    known = torch.ones_like(observed, dtype=torch.bool)
    known[..., 0, 0] = False  # the first block of each frame partly observed
    coarse = KnownEntries(observed, known).coarsen((1, 2, 2))
    assert coarse.known.shape == (1, 1, 2, 1, 2)
    assert coarse.known.flatten().tolist() == [False, True, False, True]
    torch.testing.assert_close(coarse.observed, block_down(observed, (1, 2, 2)))


def test_the_constraints_say_their_shapes_in_their_repr() -> None:
    """They printed as ``<...KnownEntries object at 0x...>``, where the samplers and the
    stateful starts say their settings."""
    known = KnownEntries(torch.zeros(2, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool))
    assert repr(known) == "KnownEntries(observed=(2, 1, 4, 4), known=(1, 1, 4, 4))"
    means = DownsampleConsistency(torch.zeros(2, 1, 2, 2), (2, 2))
    assert repr(means) == "DownsampleConsistency(low=(2, 1, 2, 2), factor=(2, 2))"
    assert repr(KnownEntriesAndBlockMeans(known, means)) == (
        f"KnownEntriesAndBlockMeans(known={known!r}, means={means!r})")


def test_a_wholly_known_block_stays_finite_in_a_float16_chain() -> None:
    """A block with no free entry spreads nothing: guarded by its free share being > 0, not by
    the share's 1e-30 floor alone, which float16 rounds to 0 (0 / 0 made the block NaN)."""
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2, :2] = True  # the top-left block wholly known
    both = KnownEntriesAndBlockMeans(
        KnownEntries(torch.arange(16.0).reshape(1, 4, 4), known),
        DownsampleConsistency(torch.zeros(1, 2, 2), (2, 2)))
    x = torch.randn(2, 1, 4, 4, generator=gen(3)).half()
    projected, tangent = both.project(x), both.tangent(x)
    assert projected[:, 0, :2, :2].tolist() == [[[0.0, 1.0], [4.0, 5.0]]] * 2
    assert torch.isfinite(projected).all() and torch.isfinite(tangent).all()
    assert (tangent[:, 0, :2, :2] == 0).all()
