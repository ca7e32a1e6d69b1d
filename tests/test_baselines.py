"""The fill shared by every modality (``stgconv.baselines.mean_fill``): missing entries at the
mean of their own example's observed entries, observed entries kept, missing values never read.
The per-modality baselines are in ``test_baselines_video.py`` and ``test_baselines_voxel.py``."""

from __future__ import annotations

import math

import pytest
import torch

from stgconv.baselines import mean_fill


def test_mean_fill_uses_each_examples_own_observed_mean() -> None:
    observed = torch.tensor([[[1.0, 3.0], [math.nan, 8.0]],
                             [[-1.0, math.nan], [math.nan, math.nan]]])[:, None]  # (2, 1, 2, 2)
    known = ~observed.isnan()
    filled = mean_fill(observed, known)
    assert filled.shape == observed.shape and torch.isfinite(filled).all()
    assert torch.equal(filled[known], observed[known])
    assert filled[0, 0, 1, 0] == 4.0  # (1 + 3 + 8) / 3
    assert torch.equal(filled[1, 0][~known[1, 0]], torch.full((3,), -1.0))


def test_mean_fill_broadcasts_a_shared_mask() -> None:
    observed = torch.arange(8.0).view(2, 1, 4)
    known = torch.tensor([True, False, True, False])  # the same for every example
    filled = mean_fill(observed, known)
    assert torch.equal(filled, torch.tensor([[[0.0, 1.0, 2.0, 1.0]], [[4.0, 5.0, 6.0, 5.0]]]))


def test_mean_fill_names_a_mask_that_is_not_bool_or_does_not_broadcast() -> None:
    """Both failed inside torch (torch.where's "expected condition to be a boolean tensor",
    expand_as's "The expanded size of the tensor ..."), naming neither argument."""
    observed = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"known must be a bool tensor \(True = observed\), got "
                                         r"torch.float32"):
        mean_fill(observed, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"known \(4, 3\) does not broadcast to observed "
                                         r"\(2, 3\)"):
        mean_fill(observed, torch.ones(4, 3, dtype=torch.bool))


def test_mean_fill_fills_examples_of_one_entry_and_names_non_finite_observed_entries() -> None:
    """A batch (B,) of single entries failed in flatten(1) ("Dimension out of range"); a NaN or
    infinity at an observed entry turned every missing entry of its example into it, where the
    video fills refuse it."""
    filled = mean_fill(torch.tensor([2.0, math.nan, 5.0]), torch.tensor([True, False, True]))
    assert torch.equal(filled, torch.tensor([2.0, 0.0, 5.0]))  # nothing observed: 0, as (B, *S)
    with pytest.raises(ValueError, match=r"observed must be a batch \(B, \*S\), got a 0-d tensor"):
        mean_fill(torch.tensor(1.0), torch.tensor(True))
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match=r"observed has NaN or infinite values at observed "
                                             r"entries \(known=True\)"):
            mean_fill(torch.tensor([[bad, 1.0]]), torch.tensor([[True, False]]))


@pytest.mark.parametrize("on_meta", ["observed", "known"])
def test_mean_fill_names_a_tensor_on_the_meta_device(on_meta: str) -> None:
    """Shapes without values failed inside torch ("Tensor.item() cannot be called on meta
    tensors", or torch.nonzero's missing meta implementation)."""
    tensors = {"observed": torch.zeros(2, 3), "known": torch.ones(2, 3, dtype=torch.bool)}
    tensors[on_meta] = tensors[on_meta].to("meta")
    with pytest.raises(ValueError, match=f"^{on_meta} is on the meta device"):
        mean_fill(**tensors)
