"""block_down / nearest_up: shapes, values against torch's pooling, and the projection properties
that super-resolution and multigrid sampling rely on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stgconv.ops import block_down, nearest_up

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
def test_non_divisible_shape_is_a_value_error(shape: tuple[int, ...], factor: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="not divisible"):
        block_down(rand(shape), factor)


@pytest.mark.parametrize("factor", [(), (0, 2), (2, -1)])
@pytest.mark.parametrize("op", [block_down, nearest_up])
def test_bad_factor_is_a_value_error(op, factor: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="factor"):
        op(rand((2, 4, 4)), factor)


@pytest.mark.parametrize("op", [block_down, nearest_up])
def test_factor_longer_than_tensor_is_a_value_error(op) -> None:
    # (4, 4) has no batch dim left over for factor (2, 2): the error names the shape.
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        op(rand((4, 4)), (2, 2))
