"""block_down / nearest_up: shapes, values against torch's pooling, and the projection properties
that super-resolution and multigrid sampling rely on; factor_between / pyramid: the block-average
pyramids of multi-grid models (down-then-up keeping block means is checked for every case in
test_up_down_projection_properties)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stgconv.mcmc import DownsampleConsistency
from stgconv.ops import (
    block_down,
    block_top_k,
    block_upsampler,
    check_block_factor,
    factor_between,
    linear_up,
    nearest_up,
    pyramid,
    random_shift,
)

F64 = torch.float64

# (shape, factor): images (f, f), voxels (f, f, f), videos (1, f, f) and (ft, f, f), plus a
# single trailing dim and extra leading dims to show that only the trailing dims are touched.
CASES = {
    "image-2": ((3, 2, 8, 12), (2, 2)),
    "image-4x2": ((3, 2, 8, 12), (4, 2)),
    "voxel-2": ((2, 1, 8, 8, 8), (2, 2, 2)),
    "video-space": ((2, 3, 5, 8, 8), (1, 2, 2)),
    "video-spacetime": ((2, 3, 4, 8, 8), (2, 4, 4)),
    "1d": ((4, 9), (3,)),
    "extra-lead": ((2, 3, 2, 4, 6), (2, 3)),
}


def rand(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("case", list(CASES))
def test_shapes(case: str) -> None:
    shape, factor = CASES[case]
    k = len(factor)
    x = rand(shape)
    low = block_down(x, factor)
    assert low.shape == (*shape[:-k], *(n // f for n, f in zip(shape[-k:], factor)))
    assert nearest_up(low, factor).shape == x.shape
    assert low.dtype == x.dtype


def pool_reference(x: torch.Tensor, factor: tuple[int, ...]) -> torch.Tensor:
    """Block means via torch's avg_pool on a (N, C, *spatial) view."""
    k = len(factor)
    lead = x.shape[:-k]
    flat = x.reshape(-1, 1, *x.shape[-k:])
    pooled = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[k](flat, factor, factor)
    return pooled.reshape(*lead, *pooled.shape[2:])


@pytest.mark.parametrize("case", list(CASES))
def test_block_down_is_block_mean_and_nearest_up_repeats(case: str) -> None:
    shape, factor = CASES[case]
    x = rand(shape, seed=1)
    torch.testing.assert_close(block_down(x, factor), pool_reference(x, factor))
    low = rand(block_down(x, factor).shape, seed=2)
    up = low
    for i, f in enumerate(factor):
        up = up.repeat_interleave(f, dim=low.dim() - len(factor) + i)
    assert torch.equal(nearest_up(low, factor), up)


@pytest.mark.parametrize("case", list(CASES))
def test_up_down_projection_properties(case: str) -> None:
    shape, factor = CASES[case]
    x = rand(shape, seed=3)

    def proj(t: torch.Tensor) -> torch.Tensor:
        return nearest_up(block_down(t, factor), factor)

    p = proj(x)
    # Keeps every block's mean ...
    torch.testing.assert_close(block_down(p, factor), block_down(x, factor), rtol=0, atol=1e-12)
    # ... is idempotent ...
    torch.testing.assert_close(proj(p), p, rtol=0, atol=1e-12)
    # ... and orthogonal (self-adjoint), so x - P x is orthogonal to every block-constant tensor.
    y = rand(shape, seed=4)
    torch.testing.assert_close((proj(x) * y).sum(), (x * proj(y)).sum())
    torch.testing.assert_close(((x - p) * proj(y)).sum(), torch.tensor(0.0, dtype=F64),
                               rtol=0, atol=1e-10)
    # down(up(low)) is the identity on the coarse grid (to rounding: a mean of equal numbers).
    low = block_down(x, factor)
    torch.testing.assert_close(block_down(nearest_up(low, factor), factor), low, rtol=0, atol=1e-14)
    # Not a tautology: P changes a generic x whenever some factor exceeds 1.
    assert not torch.allclose(p, x)


def test_factor_one_is_identity() -> None:
    x = rand((2, 3, 4, 4))
    assert torch.equal(block_down(x, (1, 1)), x)
    assert torch.equal(nearest_up(x, (1, 1, 1)), x)


@pytest.mark.parametrize(
    ("shape", "factor"),
    [((2, 3, 8, 9), (2, 2)), ((2, 1, 6, 8, 8), (4, 2, 2)), ((4, 10), (3,))],
)
def test_non_divisible_shape_is_a_value_error(shape: tuple[int, ...],
                                              factor: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not divisible"):
        block_down(rand(shape), factor)


@pytest.mark.parametrize("factor", [(), (0, 2), (2, -1)])
@pytest.mark.parametrize("op", [block_down, nearest_up])
def test_bad_factor_is_a_value_error(op, factor: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="factor"):
        op(rand((2, 4, 4)), factor)


@pytest.mark.parametrize("factor", [(1.5, 2), (2.0, 2), 2])
@pytest.mark.parametrize("op", [block_down, nearest_up])
def test_a_factor_of_non_ints_is_refused_not_truncated(op, factor) -> None:
    """int() made a factor of 1.5 blocks of 1, silently; a bare int failed inside a loop."""
    with pytest.raises(ValueError, match="factor must be a non-empty sequence of positive ints"):
        op(rand((2, 4, 4)), factor)
    with pytest.raises(ValueError, match="factor must be a non-empty sequence of positive ints"):
        DownsampleConsistency(rand((2, 2, 2)), factor)


@pytest.mark.parametrize("factor", [np.array([2, 2]), torch.tensor([2, 2])])
def test_a_factor_of_numpy_or_torch_ints_is_read_as_python_ints(factor) -> None:
    """The factor comes back, is kept by a start and is repeated in errors as the ints it holds,
    never as ``np.int64(2)`` (which json.dumps refuses) or ``tensor(2)``."""
    checked = check_block_factor(factor)
    assert checked == (2, 2) and all(type(f) is int for f in checked)
    with pytest.raises(ValueError, match=r"^trailing shape \(3, 4\) is not divisible by block "
                                         r"factor \(2, 2\)$"):
        block_down(rand((1, 3, 4)), factor)


@pytest.mark.parametrize("dtype", [torch.long, torch.uint8, torch.bool])
@pytest.mark.parametrize("op", [block_down, linear_up])
def test_averaging_an_integer_tensor_is_named(op, dtype) -> None:
    """torch's mean() and interpolate refuse (or, for uint8, round) integer tensors deep
    inside; the error names the op and the dtype."""
    with pytest.raises(ValueError, match=f"{op.__name__} averages, so x must be a float "
                                         f"tensor, got {dtype}"):
        op(torch.ones(2, 4, 4, dtype=dtype), (2, 2))


def top_k_of_half(x: torch.Tensor, factor: tuple[int, ...]) -> torch.Tensor:
    """block_top_k keeping half of every block of ``x``."""
    return block_top_k(x, torch.full((2, 2), 0.5, dtype=x.dtype), factor)


@pytest.mark.parametrize("op", [block_down, nearest_up, linear_up, top_k_of_half])
def test_factor_longer_than_tensor_is_a_value_error(op) -> None:
    # (4, 4) has no batch dim left over for factor (2, 2): the error names the shape.
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        op(rand((4, 4)), (2, 2))


# --------------------------------------------------------------------------- pyramids

# name -> (shape, trailing sizes coarse to fine): the image pyramid of Gao et al. (1, 4, 16, 64),
# videos refined in space only (T kept) and in space-time, and voxels.
PYRAMIDS = {
    "image": ((2, 3, 64, 64), [(1, 1), (4, 4), (16, 16), (64, 64)]),
    "video-space": ((2, 3, 6, 16, 16), [(6, 1, 1), (6, 4, 4), (6, 16, 16)]),
    "video-spacetime": ((2, 3, 8, 16, 16), [(1, 1, 1), (2, 4, 4), (8, 16, 16)]),
    "voxel": ((2, 1, 8, 8, 8), [(1, 1, 1), (2, 2, 2), (8, 8, 8)]),
}


@pytest.mark.parametrize("case", list(PYRAMIDS))
def test_pyramid_shapes_and_levels_are_block_means_of_each_other(case: str) -> None:
    shape, sizes = PYRAMIDS[case]
    x = rand(shape, seed=5)
    levels = pyramid(x, sizes)
    k = len(sizes[0])
    assert [tuple(level.shape) for level in levels] == [(*shape[:-k], *s) for s in sizes]
    # The finest level is x itself (a factor of ones); each level holds x's block means.
    assert torch.equal(levels[-1], x)
    coarsest = levels[0]
    torch.testing.assert_close(coarsest, block_down(x, factor_between(shape[-k:], sizes[0])),
                               rtol=0, atol=0)
    if case == "image":  # the 1x1 base is each image's mean colour
        torch.testing.assert_close(coarsest[..., 0, 0], x.mean((-2, -1)), rtol=0, atol=1e-12)
    # Consistency across levels: averaging level k + 1 by the step factor gives level k, which is
    # what lets each grid's chain start from the up-sampled grid below it.
    for coarse, fine in itertools.pairwise(levels):
        step = factor_between(fine.shape[-k:], coarse.shape[-k:])
        torch.testing.assert_close(block_down(fine, step), coarse, rtol=0, atol=1e-12)


def test_pyramid_accepts_any_order() -> None:
    x = rand((2, 1, 8, 8), seed=6)
    fine_first = pyramid(x, [(8, 8), (2, 2)])
    assert [tuple(t.shape[-2:]) for t in fine_first] == [(8, 8), (2, 2)]
    assert torch.equal(fine_first[1], block_down(x, (4, 4)))


def test_factor_between() -> None:
    assert factor_between((64, 64), (4, 4)) == (16, 16)
    assert factor_between((16, 32, 32), (16, 8, 8)) == (1, 4, 4)
    assert factor_between([8, 8, 8], [8, 8, 8]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("fine", "coarse", "message"),
    [
        ((8, 8), (3, 3), r"\(3, 3\) does not divide \(8, 8\)"),
        ((4, 4), (8, 8), r"\(8, 8\) does not divide \(4, 4\)"),  # "coarse" larger than fine
        ((8, 8), (4,), r"\(4,\) does not match the dims of \(8, 8\)"),
        ((8, 8, 8), (4, 4), r"\(4, 4\) does not match the dims of \(8, 8, 8\)"),
        # Named, though the message says the dims do not match (reported as misleading).
        ((8, 8), (0, 8), r"\(0, 8\)"),
        # int() truncated 2.5 to 2 and gave blocks of 2 silently, as _check_factor once did.
        ((4, 4), (2.5, 2), r"grid sizes must be ints, got \(4, 4\) and \(2\.5, 2\)"),
        ((4.5, 4), (2, 2), r"grid sizes must be ints, got \(4\.5, 4\) and \(2, 2\)"),
    ],
)
def test_factor_between_errors_name_the_sizes(fine, coarse, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factor_between(fine, coarse)


def test_pyramid_rejects_non_dividing_sizes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 3\) does not divide \(8, 8\)"):
        pyramid(rand((1, 1, 8, 8), seed=8), [(1, 1), (3, 3), (8, 8)])


@pytest.mark.parametrize("case", [c for c in CASES if len(CASES[c][1]) <= 3])
def test_linear_up_is_torch_interpolate_over_the_trailing_dims(case: str) -> None:
    shape, factor = CASES[case]
    k = len(factor)
    low = block_down(rand(shape), factor)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[k]
    flat = low.reshape(-1, 1, *low.shape[-k:])
    expected = F.interpolate(flat, scale_factor=factor, mode=mode, align_corners=False)
    torch.testing.assert_close(linear_up(low, factor), expected.reshape(shape))
    with pytest.raises(ValueError, match="1 to 3 trailing dims"):
        linear_up(rand((1, 2, 2, 2, 2)), (2, 2, 2, 2))


@pytest.mark.parametrize("case", list(CASES))
def test_block_top_k_is_the_closest_binary_tensor_with_the_block_means(case: str) -> None:
    """Every block gets its count, on its highest entries; a binary tensor is its own result."""
    shape, factor = CASES[case]
    x = rand(shape)
    binary = (rand(shape, seed=1) > 0.3).to(F64)
    low = block_down(binary, factor)
    out = block_top_k(x, low, factor)
    torch.testing.assert_close(block_down(out, factor), low, atol=1e-12, rtol=0)
    assert torch.equal(block_top_k(binary, low, factor), binary)
    # Within every block the lowest chosen entry scores at least as high as the highest other.
    k = len(factor)
    flat = x.reshape(-1, 1, *shape[-k:])
    chosen = out.reshape(flat.shape) > 0
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[k]
    lowest_chosen = -pool(torch.where(chosen, -flat, -torch.inf), factor, factor)
    highest_left = pool(torch.where(chosen, -torch.inf, flat), factor, factor)
    assert (lowest_chosen >= highest_left).all()


def test_linear_up_of_a_side_of_size_zero_is_empty_as_nearest_up() -> None:
    """It failed in the reshape before the interpolation ("cannot reshape tensor of 0
    elements"), and torch interpolates no side of size 0."""
    for shape, factor in (((2, 1, 0, 4), (2, 2)), ((0, 1, 0, 4), (2, 2)), ((3, 0), (2,))):
        x = torch.zeros(shape, dtype=F64)
        up = linear_up(x, factor)
        assert up.shape == nearest_up(x, factor).shape and up.dtype == F64


def test_block_top_k_checks_the_low_shape() -> None:
    with pytest.raises(ValueError, match="block-reduced"):
        block_top_k(torch.zeros(1, 8, 8), torch.zeros(1, 3, 4), (2, 2))


def test_block_top_k_refuses_sizes_its_blocks_do_not_tile() -> None:
    """Sides of 5 in blocks of 2 passed the check of low (two blocks each) and failed in a
    reshape inside torch ("shape '[1, 2, 2, 2, 2]' is invalid for input of size 20")."""
    with pytest.raises(ValueError, match=r"trailing shape \(5, 4\) is not divisible by block "
                                         r"factor \(2, 2\)"):
        block_top_k(torch.zeros(1, 5, 4), torch.zeros(1, 2, 2), (2, 2))


@pytest.mark.parametrize("x, low, name", [
    (torch.zeros(1, 4, 4, device="meta"), torch.zeros(1, 2, 2), "x is on the meta device"),
    (torch.zeros(1, 4, 4), torch.zeros(1, 2, 2, device="meta"), "low is on the meta device"),
    (torch.zeros(1, 4, 4), np.zeros((1, 2, 2)), "low must be a torch.Tensor"),
    (np.zeros((1, 4, 4)), torch.zeros(1, 2, 2), "x must be a torch.Tensor"),
], ids=["meta x", "meta low", "numpy low", "numpy x"])
def test_block_top_k_names_an_argument_without_values(x, low, name: str) -> None:
    """Each failed inside torch or numpy ("Tensor.item() cannot be called on meta tensors",
    "'numpy.ndarray' object has no attribute 'isnan'"), naming no argument."""
    with pytest.raises(ValueError, match=f"^{name}"):
        block_top_k(x, low, (2, 2))


@pytest.mark.parametrize("op", [block_down, nearest_up, linear_up, random_shift])
def test_an_array_given_for_x_is_named(op) -> None:
    """It failed on "'numpy.ndarray' object has no attribute 'dim'"."""
    second = 1 if op is random_shift else (2, 2)  # a shift, else a factor
    with pytest.raises(ValueError, match=r"^x must be a torch.Tensor, got ndarray"):
        op(np.zeros((1, 1, 4, 4), dtype=np.float32), second)


@pytest.mark.parametrize("low, scores, message", [
    # A NaN mean became a count of no entry: trilinear_binary_upsample came back empty.
    (torch.full((1, 2, 2), math.nan), torch.zeros(1, 4, 4), r"low has 4 NaN values"),
    # Clamped to 1: a block of every entry, whose mean is not low's.
    (torch.full((1, 2, 2), 1.5), torch.zeros(1, 4, 4), r"in \[0, 1\], got values in \[1.5, 1.5\]"),
    (torch.full((1, 2, 2), -0.25), torch.zeros(1, 4, 4), r"got values in \[-0.25, -0.25\]"),
    # A NaN score (a diverged chain) ranked first and came out as an occupied entry.
    (torch.full((1, 2, 2), 0.25), torch.zeros(1, 4, 4).index_fill_(2, torch.tensor([0]), math.nan),
     r"x has 4 NaN scores"),
], ids=["nan low", "low above one", "low below zero", "nan scores"])
def test_block_top_k_refuses_means_no_binary_tensor_has_and_nan_scores(low, scores,
                                                                         message) -> None:
    with pytest.raises(ValueError, match=message):
        block_top_k(scores, low, (2, 2))


def test_block_top_k_ranks_infinite_scores_last_or_first() -> None:
    """-inf marks entries never to choose (the evaluation's padding), +inf ones always to."""
    scores = torch.tensor([[[-math.inf, 0.0], [1.0, math.inf]]])
    torch.testing.assert_close(block_top_k(scores, torch.full((1, 1, 1), 0.75), (2, 2)),
                               torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]))


def test_random_shift_moves_each_image_by_its_own_offset_within_range() -> None:
    """One bright pixel in the middle of each 9x9 image lands within max_shift of it, every
    offset of the range is drawn, and the empty border stays empty (edges repeated)."""
    x = torch.full((400, 1, 9, 9), -1.0)
    x[:, :, 4, 4] = 1.0
    shifted = random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert ((shifted == 1.0).flatten(1).sum(1) == 1).all()
    assert ((shifted == 1.0) | (shifted == -1.0)).all()
    where = (shifted[:, 0] == 1.0).nonzero()[:, 1:] - 4  # (400, 2) offsets
    assert where.abs().max() == 2
    assert len({tuple(offset) for offset in where.tolist()}) == 25
    # The content is moved, not changed: a shift of a ramp is the ramp offset by whole pixels.
    ramp = torch.arange(81.0).reshape(1, 1, 9, 9)
    moved = random_shift(ramp, 1, generator=torch.Generator().manual_seed(1))
    inner = moved[0, 0, 1:-1, 1:-1] - ramp[0, 0, 1:-1, 1:-1]
    assert torch.equal(inner, torch.full_like(inner, inner[0, 0].item()))
    assert inner[0, 0].item() in {dr * 9 + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def test_random_shift_zero_is_identity_and_bad_input_is_named() -> None:
    x = torch.randn(2, 3, 5, 5)
    assert random_shift(x, 0) is x
    with pytest.raises(ValueError, match=r"max_shift must be an int >= 0, got -1"):
        random_shift(x, -1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(3, 5, 5\)"):
        random_shift(x[0], 1)
    for shift in (0, 1):  # a seed for a generator: refused even where nothing is drawn
        with pytest.raises(ValueError, match="random_shift: generator must be a torch.Generator"):
            random_shift(x, shift, generator=0)


def test_random_shift_repeats_the_edge_rows_and_columns_into_the_space_it_leaves() -> None:
    """A shifted ramp is the ramp read at its row and column indices moved by the image's
    offset and clamped to the edges: what leaves at one side never comes back at the other."""
    ramp = torch.arange(49.0).reshape(1, 1, 7, 7).expand(200, 2, 7, 7)
    moved = random_shift(ramp, 3, generator=torch.Generator().manual_seed(0))
    centre = moved[:, 0, 3, 3].long()  # a shift of at most 3 reads it from inside the image
    rows = (centre[:, None] // 7 - 3 + torch.arange(7)).clamp(0, 6)
    cols = (centre[:, None] % 7 - 3 + torch.arange(7)).clamp(0, 6)
    expected = (rows[:, :, None] * 7 + cols[:, None, :]).float()
    assert torch.equal(moved, expected[:, None].expand(200, 2, 7, 7))


def test_random_shift_moves_bool_images_and_names_a_shift_that_is_not_an_int() -> None:
    """Bool images failed inside torch's padding ("replication_pad2d" not implemented for
    'Bool'), a max_shift of 1.5 or True in its arguments ("must be tuple of ints")."""
    masks = torch.rand(4, 2, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.5
    moved = random_shift(masks, 2, generator=torch.Generator().manual_seed(1))
    as_float = random_shift(masks.double(), 2, generator=torch.Generator().manual_seed(1))
    assert moved.dtype == torch.bool and torch.equal(moved, as_float == 1)
    for bad in (1.5, True):
        with pytest.raises(ValueError, match=rf"max_shift must be an int >= 0, got {bad!r}"):
            random_shift(masks, bad)
    # What as_int takes, as every count (refused by a check of its own, which worked before).
    for shift in (np.int64(2), torch.tensor(2)):
        assert torch.equal(random_shift(masks, shift, generator=torch.Generator().manual_seed(1)),
                           moved)


def test_block_top_k_breaks_ties_by_position() -> None:
    out = block_top_k(torch.zeros(1, 2, 2), torch.tensor([[[0.5]]]), (2, 2))
    assert torch.equal(out, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    # A 4x4x4 block, as voxel super-resolution's: past 16 entries the CPU's unstable sort
    # reorders ties.
    cube = block_top_k(torch.zeros(1, 4, 4, 4), torch.tensor([[[[0.5]]]]), (4, 4, 4))
    assert torch.equal(cube.flatten(), (torch.arange(64) < 32).float())


def test_block_top_k_rounds_the_counts() -> None:
    """A mean of 0.4 over 4 entries keeps 2 (1.6 rounded, not truncated), and the float32 block
    means of binary 3x3x3 blocks (k / 27, inexact) keep exactly k ones for every k."""
    x = torch.arange(4.0).reshape(1, 2, 2)
    assert block_top_k(x, torch.tensor([[[0.4]]]), (2, 2)).sum() == 2
    for k in range(28):
        grid = torch.zeros(1, 1, 3, 3, 3)
        grid.view(-1)[:k] = 1
        scores = torch.rand(1, 1, 3, 3, 3, generator=torch.Generator().manual_seed(k))
        assert block_top_k(scores, block_down(grid, (3, 3, 3)), (3, 3, 3)).sum() == k


def test_block_top_k_keeps_the_dtype_of_its_scores_not_of_the_means() -> None:
    for scores, means in ((F64, torch.float32), (torch.float32, F64)):
        out = block_top_k(rand((1, 4, 4)).to(scores), torch.full((1, 2, 2), 0.5, dtype=means),
                          (2, 2))
        assert out.dtype == scores and out.sum() == 8


def test_block_upsampler_names_nearest_and_linear_up_and_refuses_others() -> None:
    x = rand((1, 1, 2, 2))
    assert torch.equal(block_upsampler("nearest")(x, (2, 2)), nearest_up(x, (2, 2)))
    assert torch.equal(block_upsampler("linear")(x, (2, 2)), linear_up(x, (2, 2)))
    with pytest.raises(ValueError, match=r"upsample must be one of \['linear', 'nearest'\], "
                                         r"got 'cubic'"):
        block_upsampler("cubic")


def test_block_top_k_of_no_blocks_is_empty() -> None:
    """An empty batch failed in the reshape to blocks ("cannot reshape tensor of 0 elements")."""
    out = block_top_k(torch.zeros(0, 1, 4, 4), torch.zeros(0, 1, 2, 2), (2, 2))
    assert out.shape == (0, 1, 4, 4)
