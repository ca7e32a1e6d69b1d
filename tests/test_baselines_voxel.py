"""Classical voxel baselines: the up-samplers (nearest keeps the block means, trilinear keeps a
constant), the block-mean down-sampling, and the recovery fills (nearest known voxel, neighbour
majority), which keep every observed voxel. Real-data checks run on ../shared/data/voxel and
skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import ROOT, boxes_and_balls

from stgconv.baselines.voxel import (
    FILLS,
    UPSAMPLERS,
    downsample,
    nearest_known_fill,
    nearest_upsample,
    neighbour_majority,
    trilinear_binary_upsample,
    trilinear_upsample,
)
from stgconv.config import load_config
from stgconv.metrics import voxel_errors, voxel_iou
from stgconv.modalities import VOXELS
from stgconv.ops import linear_up


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registries() -> None:
    assert UPSAMPLERS == {"nearest": nearest_upsample, "trilinear": trilinear_upsample,
                          "trilinear_binary": trilinear_binary_upsample}
    assert FILLS == {"nearest_known": nearest_known_fill, "neighbour_majority": neighbour_majority}


# --------------------------------------------------------------------------- super-resolution


def test_sr_baselines() -> None:
    low = torch.full((1, 1, 2, 2, 2), 0.25)
    assert torch.equal(trilinear_upsample(low, 4), torch.full((1, 1, 8, 8, 8), 0.25))
    x = boxes_and_balls(2, 8)
    assert torch.equal(downsample(nearest_upsample(downsample(x, 2), 2), 2), downsample(x, 2))
    with pytest.raises(ValueError, match="does not divide"):
        downsample(x, 3)
    for upsample in UPSAMPLERS.values():
        with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
            upsample(low[:, 0], 2)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        downsample(x[:, 0], 2)  # block means over (D, H, W) would pass for (H, W, ?)


def test_trilinear_binary_keeps_the_counts_and_follows_the_interpolation() -> None:
    """A lone occupied block beside an empty one: its 8 of 64 voxels go where trilinear
    interpolation is highest, the corner farthest from the empty neighbours."""
    x = boxes_and_balls(3, 8)
    low = downsample(x, 4)
    out = trilinear_binary_upsample(low, 4)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(downsample(out, 4), low, atol=0, rtol=0)
    low = torch.zeros(1, 1, 2, 2, 2)
    low[..., 0, 0, 0] = 8 / 64
    out = trilinear_binary_upsample(low, 4)
    expected = torch.zeros(1, 1, 8, 8, 8)
    expected[..., :2, :2, :2] = 1.0
    assert torch.equal(out, expected)


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("name", sorted(FILLS))
def test_fills_keep_the_observed_voxels(name: str) -> None:
    truth = boxes_and_balls(2, 8)
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.7
    observed = torch.where(known, truth, torch.full_like(truth, 0.5))
    out = FILLS[name](observed, known)
    assert out.shape == truth.shape and out.dtype == truth.dtype
    assert torch.equal(out[known], truth[known])
    assert set(out[~known].unique().tolist()) <= {0.0, 1.0}  # copies or votes, never the 0.5
    with pytest.raises(ValueError, match="bool"):
        FILLS[name](observed, known.float())


@pytest.mark.parametrize("name", sorted(FILLS))
def test_fills_name_a_nan_or_infinity_at_an_observed_voxel(name: str) -> None:
    """It was copied into the result (and, for the majority vote, counted), where the video
    fills refuse it; at a missing voxel it is still never read."""
    observed = boxes_and_balls(1, 4)
    known = torch.ones(observed.shape, dtype=torch.bool)
    known[..., 0, 0, 0] = False
    observed[..., 0, 0, 0] = float("nan")
    assert torch.isfinite(FILLS[name](observed, known)).all()
    for bad in (float("nan"), float("inf")):
        spoiled = observed.clone()
        spoiled[..., 1, 1, 1] = bad  # an observed voxel
        with pytest.raises(ValueError, match=r"observed has NaN or infinite values at observed "
                                             r"entries \(known=True\)"):
            FILLS[name](spoiled, known)


def test_recovery_baselines() -> None:
    truth = torch.zeros(1, 1, 5, 5, 5)
    truth[..., :, :, 3:] = 1  # the top two layers are full
    known = torch.zeros_like(truth, dtype=torch.bool)
    known[..., 0, 0, 0] = known[..., 4, 4, 4] = True
    filled = nearest_known_fill(truth, known)
    assert filled[..., 0, 0, 1] == 0 and filled[..., 4, 4, 3] == 1
    known = torch.rand(truth.shape, generator=gen(0)) >= 0.5
    vote = neighbour_majority(torch.where(known, truth, torch.zeros_like(truth)), known)
    assert torch.equal(vote[known], truth[known])
    assert set(vote.unique().tolist()) <= {0.0, 1.0}
    assert (vote != truth).float().mean() < 0.15


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data("voxel/beds_64_train.npz")
def test_real_beds_baselines_on_the_held_out_beds(shared_data: Path) -> None:
    """The super-resolution protocol's held-out set: the last 43 of the shared 64^3 beds, 16^3
    block means. Nearest keeps them exactly; the baselines' scores are the ones the eval table
    reports (measured: nearest error 0.0353, trilinear pooled IoU 0.900; over all 443 beds
    the issue measured 0.036 and 0.871; trilinear_binary mean IoU 0.901)."""
    grids = np.load(shared_data / "voxel" / "beds_64_train.npz")["X"][-43:]
    beds = torch.from_numpy(grids).float()[:, None]
    low = downsample(beds, 4)
    nearest, trilinear = nearest_upsample(low, 4), trilinear_upsample(low, 4)
    torch.testing.assert_close(downsample(nearest, 4), low)
    assert voxel_errors(nearest, beds).mean() == pytest.approx(0.0353, abs=5e-4)
    pooled = ((trilinear >= 0.5) & (beds > 0)).sum() / ((trilinear >= 0.5) | (beds > 0)).sum()
    assert pooled == pytest.approx(0.900, abs=2e-3)
    binary = trilinear_binary_upsample(low, 4)
    assert voxel_iou(binary, beds).mean() == pytest.approx(0.901, abs=2e-3)


@pytest.mark.shared_data("voxel/modelnet10_30_train.npz")  # the config's data.path
def test_real_chairs_baselines_fill_them(shared_data: Path) -> None:
    config = load_config(ROOT / "configs" / "voxel" / "recovery_chairs_quick.yaml",
                         ["data.max_images=3"])
    chairs = VOXELS.load(config.data)
    known = torch.rand(chairs.shape, generator=gen(0)) >= 0.7
    observed = torch.where(known, chairs, torch.zeros_like(chairs))
    for fill in (nearest_known_fill, neighbour_majority):
        error = voxel_errors(fill(observed, known), chairs, where=~known).mean()
        assert error < 0.1  # most voxels are empty space around a chair


def test_neighbour_majority_leaves_a_tie_empty() -> None:
    """Occupied needs more than half the known neighbours: one of two is a tie, empty."""
    observed = torch.zeros(1, 1, 1, 1, 3)
    observed[..., 0] = 1.0
    known = torch.tensor([True, False, True]).view(1, 1, 1, 1, 3)
    assert neighbour_majority(observed, known)[..., 1].item() == 0.0


def test_nearest_known_fill_leaves_a_shape_with_nothing_observed_at_zero() -> None:
    # A slice without any observed voxel is 0, whatever its (ignored) missing values hold.
    observed = torch.full((2, 1, 4, 4, 4), 0.7)
    known = torch.zeros(2, 1, 4, 4, 4, dtype=torch.bool)
    known[0, :, :2] = True
    filled = nearest_known_fill(observed, known)
    assert torch.equal(filled[1], torch.zeros(1, 4, 4, 4))
    assert torch.allclose(filled[0], torch.full((1, 4, 4, 4), 0.7))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_nearest_known_fill_copies_values_of_any_float_dtype(dtype: torch.dtype) -> None:
    """bfloat16 failed in numpy ("Got unsupported ScalarType BFloat16"); the copied values
    come back exactly, in the input's dtype."""
    observed = boxes_and_balls(2, 8) * 0.5 + 0.25  # 0.25 and 0.75: exact in every float dtype
    known = torch.rand(observed.shape, generator=torch.Generator().manual_seed(0)) < 0.4
    filled = nearest_known_fill(observed.to(dtype), known)
    assert filled.dtype == dtype
    assert torch.equal(filled.float(), nearest_known_fill(observed, known))


def test_neighbour_majority_widens_until_it_sees_an_observed_voxel() -> None:
    # Deep inside a hidden block the vote comes from the wider neighbourhood, not a blind 0.
    observed = torch.ones(1, 1, 9, 9, 9)
    known = torch.ones(1, 1, 9, 9, 9, dtype=torch.bool)
    known[..., 2:7, 2:7, 2:7] = False
    assert torch.equal(neighbour_majority(observed, known), observed)


@pytest.mark.parametrize("factor", [0, -2])
def test_downsample_refuses_a_factor_below_one(factor: int) -> None:
    with pytest.raises(ValueError):
        downsample(torch.zeros(1, 1, 4, 4, 4), factor)


def test_neighbour_majority_counts_an_observed_half_as_occupied() -> None:
    """Occupied means ``>= 0.5``: a lone observed 0.5 fills its neighbours."""
    observed = torch.zeros(1, 1, 3, 3, 3)
    observed[0, 0, 1, 1, 1] = 0.5
    known = torch.zeros_like(observed, dtype=torch.bool)
    known[0, 0, 1, 1, 1] = True
    out = neighbour_majority(observed, known)
    assert out[0, 0, 1, 1, 1] == 0.5 and bool((out[~known] == 1).all())


def test_neighbour_majority_ignores_the_values_at_missing_voxels() -> None:
    """Only observed voxels vote: missing ones full of 1 do not outvote observed empties."""
    known = torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool)
    known[..., ::3, ::3, ::3] = True
    observed = torch.where(known, torch.zeros(()), torch.ones(()))
    assert not neighbour_majority(observed, known).any()


def test_neighbour_majority_falls_back_to_the_nearest_known_beyond_its_widest_radius() -> None:
    """A voxel that sees no observed one within 7^3 copies the nearest observed voxel."""
    observed = torch.zeros(1, 1, 1, 1, 9)
    observed[..., 0] = 1.0
    known = torch.zeros_like(observed, dtype=torch.bool)
    known[..., 0] = True
    assert torch.equal(neighbour_majority(observed, known), torch.ones_like(observed))


def test_neighbour_majority_votes_at_the_next_radius_before_any_fallback() -> None:
    """The centre of a hidden 3^3 core votes over the 5^3 shell around it (mostly empty): not
    the nearest observed voxel (a full face centre)."""
    observed = torch.zeros(1, 1, 5, 5, 5)
    for face in ((2, 2, 0), (2, 2, 4), (2, 0, 2), (2, 4, 2), (0, 2, 2), (4, 2, 2)):
        observed[(0, 0, *face)] = 1.0
    known = torch.ones_like(observed, dtype=torch.bool)
    known[..., 1:4, 1:4, 1:4] = False
    assert neighbour_majority(observed, known)[0, 0, 2, 2, 2].item() == 0.0


def test_nearest_known_fill_copies_the_nearest_observed_voxel() -> None:
    """Along a line observed at both ends (1 and 0): each hidden voxel takes its nearer end."""
    from stgconv.baselines.voxel import nearest_known_fill

    observed = torch.tensor([1.0, 0.3, 0.3, 0.3, 0.0]).view(1, 1, 5, 1, 1)
    known = torch.tensor([True, False, False, False, True]).view(1, 1, 5, 1, 1)
    filled = nearest_known_fill(observed, known).flatten()
    assert filled[[0, 1, 3, 4]].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert filled[2].item() in (0.0, 1.0)  # a tie: scipy's choice


def test_nearest_known_fill_names_a_tensor_without_batch_and_channel_axes() -> None:
    with pytest.raises(ValueError, match=r"observed must be \(B, C, \*S\), got \(3,\)"):
        nearest_known_fill(torch.zeros(3), torch.tensor([True, False, False]))


def test_nearest_known_fill_copies_within_each_channel_under_a_broadcast_mask() -> None:
    """Each ``(b, c)`` copies its own known entries, not a nearer one of another channel; a
    mask of one example serves the whole batch."""
    observed = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]]).view(1, 2, 3)
    known = torch.tensor([[True, False, False], [False, False, True]]).view(1, 2, 3)
    expected = torch.tensor([[1.0] * 3, [5.0] * 3]).view(1, 2, 3)
    assert torch.equal(nearest_known_fill(observed, known), expected)
    batch = torch.cat([observed, 2 * observed])
    assert torch.equal(nearest_known_fill(batch, known), torch.cat([expected, 2 * expected]))


def test_neighbour_majority_names_occupancy_that_is_not_float() -> None:
    """Bool occupancy failed inside the convolution ("compute_columns3d" not implemented for
    'Bool')."""
    known = torch.rand(1, 1, 4, 4, 4, generator=gen(0)) < 0.5
    with pytest.raises(ValueError, match="observed must be a float tensor of occupancy in "
                                         r"\[0, 1\], got torch.bool"):
        neighbour_majority(torch.ones(1, 1, 4, 4, 4, dtype=torch.bool), known)
    # Without its channel axis, a shape the convolution would take as one unbatched grid.
    with pytest.raises(ValueError, match=r"observed must be .*\(B, 1, D, H, W\)"):
        neighbour_majority(torch.ones(1, 4, 4, 4), known[0])


def test_upsampling_no_shapes_gives_no_shapes() -> None:
    """As the other up-samplings do; trilinear_binary failed in a reshape ("cannot reshape
    tensor of 0 elements ... ambiguous")."""
    for upsample in UPSAMPLERS.values():
        assert upsample(torch.zeros(0, 1, 2, 2, 2), 2).shape == (0, 1, 4, 4, 4)


@pytest.mark.parametrize("name", list(FILLS))
@pytest.mark.parametrize("on_meta", ["observed", "known"])
def test_fills_name_a_tensor_on_the_meta_device(name: str, on_meta: str) -> None:
    """Shapes without values failed inside torch ("Cannot copy out of meta tensor; no data!",
    "Tensor.item() cannot be called on meta tensors")."""
    tensors = {"observed": torch.zeros(1, 1, 2, 2, 2),
               "known": torch.tensor([True, False]).view(2, 1, 1).expand(2, 2, 2)}
    tensors[on_meta] = tensors[on_meta].to("meta")
    with pytest.raises(ValueError, match=f"^{on_meta} is on the meta device"):
        FILLS[name](**tensors)


def test_trilinear_upsample_clamps_values_outside_the_occupancy_range() -> None:
    """Interpolation between values in [0, 1] stays there; the stated clamp is what keeps a
    low resolution that strays outside it (another model's output) an occupancy."""
    low = torch.tensor([1.5, 0.5, -0.5, 0.25]).view(1, 1, 1, 2, 2).expand(1, 1, 2, 2, 2)
    up = trilinear_upsample(low.contiguous(), 2)
    assert up.min() == 0.0 and up.max() == 1.0
    assert torch.equal(up, linear_up(low.contiguous(), (2, 2, 2)).clamp(0.0, 1.0))


def test_neighbour_majority_votes_at_each_radius_in_turn() -> None:
    """A missing voxel takes the vote of the smallest neighbourhood (3^3, 5^3, 7^3) that holds
    an observed voxel: not a wider one's, nor the value of its nearest observed voxel."""
    # A row: the middle voxel sees two occupied at 2 (a vote of 1), two empty more at 3 (a tie).
    row = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 1, 7)
    known = torch.tensor([True, True, False, False, False, True, True]).view(row.shape)
    assert neighbour_majority(row, known).flatten().tolist() == [0, 1, 1, 1, 1, 1, 0]
    # A 7x7 plane observed on its border, occupied at the middle of each side: its centre sees
    # the border at 3 only, 4 of 24 occupied (empty), though its nearest observed are those 4.
    plane = torch.zeros(1, 1, 1, 7, 7)
    plane[..., 0, 3] = plane[..., 6, 3] = plane[..., 3, 0] = plane[..., 3, 6] = 1.0
    known = torch.ones_like(plane, dtype=torch.bool)
    known[..., 1:6, 1:6] = False
    assert neighbour_majority(plane, known)[0, 0, 0, 3, 3].item() == 0.0


def test_nearest_known_fill_measures_distance_alike_along_every_axis() -> None:
    """Euclidean over (D, H, W): a diagonal neighbour (at sqrt 2) is nearer than a voxel two
    steps along D."""
    observed = torch.zeros(1, 1, 3, 3, 3)
    known = torch.zeros_like(observed, dtype=torch.bool)
    known[0, 0, 2, 0, 0] = True  # empty, 2 away
    known[0, 0, 0, 1, 1] = True
    observed[0, 0, 0, 1, 1] = 1.0  # occupied, sqrt 2 away
    assert nearest_known_fill(observed, known)[0, 0, 0, 0, 0].item() == 1.0
