"""Every score we report: the video recovery error on the 0-255 scale and PSNR (missing entries
only), and the voxel error and IoU per shape; bad inputs are refused, never scored."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stgconv.data.masks import occluded_region
from stgconv.metrics import (
    auroc,
    expected_calibration_error,
    missing_mae_255,
    pooled_iou,
    voxel_errors,
    voxel_iou,
)

C, T, H, W = 3, 10, 24, 24


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clip(seed: int = 0) -> torch.Tensor:
    return torch.rand(C, T, H, W, generator=gen(seed)) * 2 - 1


def region() -> torch.Tensor:
    """A ``known`` mask ``(T, H, W)``: a moving 10x10 square is missing."""
    return occluded_region(T, H, W, size=10, generator=gen(2))


# ---------------------------------------------------------------------------------------------
# video recovery
# ---------------------------------------------------------------------------------------------


def test_missing_mae_255_scale():
    truth = clip()
    known = region()
    recovered = truth + 2 / 127.5  # 2 grey levels everywhere...
    recovered[known.expand(truth.shape)] += 1.0  # ...and observed entries, which do not count
    assert missing_mae_255(recovered, truth, known) == pytest.approx(2.0, rel=1e-6)
    assert missing_mae_255(truth - 2 / 127.5, truth, known) == pytest.approx(2.0, rel=1e-6)
    assert missing_mae_255(truth, truth, known) == 0.0
    # Only the missing entries: one missing entry off by 1.0 -> 127.5 / n_missing.
    off = truth.clone()
    missing = ~known.expand(truth.shape)
    first = missing.nonzero()[0].tolist()
    off[tuple(first)] += 1.0
    assert missing_mae_255(off, truth, known) == pytest.approx(127.5 / missing.sum().item())


def test_missing_mae_255_errors():
    truth, known = clip(), region()
    with pytest.raises(ValueError, match="differ in shape"):
        missing_mae_255(truth[:, :-1], truth, known)
    with pytest.raises(ValueError, match="no missing entry"):
        missing_mae_255(truth, truth, torch.ones_like(known))
    with pytest.raises(ValueError, match="bool"):
        missing_mae_255(truth, truth, known.float())
    with pytest.raises(ValueError, match="does not match"):
        missing_mae_255(truth, truth, known[:, 1:])
    bad = truth.clone()
    bad[~known.expand(truth.shape)] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        missing_mae_255(bad, truth, known)
    # Frames as a file holds them (0-255) were scored as if on [-1, 1], 127.5 times too large.
    frames = ((truth + 1) * 127.5).round().to(torch.uint8)
    for recovered, truth_, name in ((frames, truth, "recovered"), (truth, frames, "truth")):
        with pytest.raises(ValueError, match=rf"{name} must be floating point values on "
                                             rf"\[-1, 1\], got torch.uint8"):
            missing_mae_255(recovered, truth_, known)


# ---------------------------------------------------------------------------------------------
# voxels
# ---------------------------------------------------------------------------------------------


def test_voxel_scores() -> None:
    truth = torch.zeros(2, 1, 4, 4, 4)
    truth[0, 0, :2] = 1
    pred = truth.clone()
    pred[0, 0, 2] = 0.75  # 16 voxels wrong by 0.75, now inside the 0.5 level
    errors = voxel_errors(pred, truth)
    torch.testing.assert_close(errors, torch.tensor([0.75 * 16 / 64, 0.0], dtype=torch.float64))
    torch.testing.assert_close(voxel_iou(pred, truth),
                               torch.tensor([32 / 48, 1.0], dtype=torch.float64))
    where = torch.zeros_like(truth, dtype=torch.bool)
    where[:, :, 2] = True
    assert voxel_errors(pred, truth, where=where)[0] == 0.75
    assert voxel_errors(pred + 5, truth)[1] == 1.0  # clamped to [0, 1] before scoring


def test_voxel_scores_refuse_bad_input() -> None:
    truth = torch.zeros(2, 1, 4, 4, 4)
    for score in (voxel_errors, voxel_iou):
        with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\), got \(2, 4, 4, 4\)"):
            score(truth[:, 0], truth[:, 0])
        with pytest.raises(ValueError, match=r"differ; expected the same \(B, 1, D, H, W\)"):
            score(truth[:1], truth)
    with pytest.raises(ValueError, match="NaN"):
        voxel_errors(torch.full_like(truth, math.nan), truth)
    # A NaN is never >= 0.5: scored, a diverged shape would match an empty truth with IoU 1.
    with pytest.raises(ValueError, match="pred holds NaN"):
        voxel_iou(torch.full_like(truth, math.nan), truth)
    with pytest.raises(ValueError, match="truth holds NaN"):
        voxel_iou(truth, torch.full_like(truth, math.nan))
    where = torch.zeros_like(truth, dtype=torch.bool)
    where[0] = True  # shape 1 has nothing to score
    with pytest.raises(ValueError, match="no voxel to score"):
        voxel_errors(truth, truth, where=where)


def test_voxel_errors_refuse_infinite_values_and_a_bad_where() -> None:
    """An infinite (diverged) voxel is refused, not clamped into a plain 0 or 1 and scored; so
    is one in truth, named as truth's. ``where`` must be a bool mask that broadcasts: a float
    one would weight the voxels, a mismatched one failed inside torch."""
    truth = torch.zeros(2, 1, 4, 4, 4)
    pred = truth.clone()
    pred[1, 0, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="pred holds NaN or infinite values"):
        voxel_errors(pred, truth)
    with pytest.raises(ValueError, match="truth holds NaN or infinite values"):
        voxel_errors(truth, pred)
    with pytest.raises(ValueError, match="where must be a bool tensor"):
        voxel_errors(truth, truth, where=torch.full_like(truth, 0.5))
    with pytest.raises(ValueError, match=r"where \(3, 1, 4, 4, 4\) does not broadcast to pred "
                                         r"\(2, 1, 4, 4, 4\)"):
        voxel_errors(truth, truth, where=torch.ones(3, 1, 4, 4, 4, dtype=torch.bool))


def test_auroc_against_brute_force_pairs() -> None:
    from stgconv.metrics import auroc

    g = torch.Generator().manual_seed(0)
    inliers = torch.randint(0, 6, (40,), generator=g).double()  # ties on purpose
    outliers = torch.randint(0, 6, (30,), generator=g).double() - 1
    pairs = (inliers[:, None] > outliers[None, :]).double() + 0.5 * (
        inliers[:, None] == outliers[None, :]).double()
    assert auroc(inliers, outliers) == pytest.approx(pairs.mean().item(), abs=1e-12)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([float("nan")]), torch.tensor([1.0]))


def test_expected_calibration_error() -> None:
    from stgconv.metrics import expected_calibration_error

    # Confidence 0.8 everywhere, right 8 times in 10: calibrated.
    probs = torch.tensor([[0.8, 0.2]] * 10)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-6)
    # Always confident (0.95) and right half the time: |0.5 - 0.95| = 0.45.
    assert expected_calibration_error(torch.tensor([[0.95, 0.05]] * 4),
                                      torch.tensor([0, 1, 0, 1])) == pytest.approx(0.45)
    # Two bins: (0.6, right) and (0.9, wrong): (|1 - 0.6| + |0 - 0.9|) / 2.
    assert expected_calibration_error(torch.tensor([[0.6, 0.4], [0.1, 0.9]]),
                                      torch.tensor([0, 0])) == pytest.approx(0.65)


def test_auroc_and_ece_name_arrays_that_are_not_tensors() -> None:
    """A user's own scores or probabilities as numpy arrays or lists failed with an
    AttributeError on .dim(), naming no argument."""
    scores, probabilities = torch.tensor([1.0, 2.0]), torch.full((2, 2), 0.5)
    for call, name in ((lambda: auroc(np.array([1.0, 2.0]), scores), "inlier_scores"),
                       (lambda: auroc(scores, [0.0, 1.0]), "outlier_scores"),
                       (lambda: expected_calibration_error(probabilities.numpy(),
                                                           torch.tensor([0, 1])),
                        "probabilities"),
                       (lambda: expected_calibration_error(probabilities, np.array([0, 1])),
                        "labels")):
        with pytest.raises(ValueError, match=rf"^{name} must be a torch.Tensor, got "):
            call()


def test_auroc_ties_by_hand() -> None:
    from stgconv.metrics import auroc

    # Pairs (inlier, outlier): (1, 2) 0, (1, 0) 1, (2, 2) 1/2 twice, (2, 0) 1 twice: 4 of 6.
    assert auroc(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 0.0])) == pytest.approx(4 / 6)
    # Every score the same: no information, 1/2.
    assert auroc(torch.full((3,), 7.0), torch.full((5,), 7.0)) == 0.5
    with pytest.raises(ValueError, match="non-empty"):
        auroc(torch.tensor([]), torch.tensor([1.0]))


def test_expected_calibration_error_bins_by_hand() -> None:
    from stgconv.metrics import expected_calibration_error

    # Confidences 0.6 (float32: 0.60000002, just above the edge 9/15) and 0.62 share bin 9,
    # (9/15, 10/15]; 0.9 sits alone in bin 13, (13/15, 14/15]. Bin 9: 2 examples, 1 right, mean
    # confidence 0.61 -> gap 0.11; bin 13: wrong at 0.9 -> 0.9. ECE = (2 * 0.11 + 0.9) / 3.
    probs = torch.tensor([[0.6, 0.4], [0.38, 0.62], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx((2 * 0.11 + 0.9) / 3)
    # One bin: the gap of the averages.
    assert expected_calibration_error(probs, labels, bins=1) == pytest.approx(
        abs(1 / 3 - (0.6 + 0.62 + 0.9) / 3))
    # 15 bins by default: 0.61 and 0.69 fall in bins 9 and 10, gaps 0.39 and 0.69 (10 bins
    # would pool them in (0.6, 0.7]: |1/2 - 0.65| = 0.15).
    apart = torch.tensor([[0.61, 0.39], [0.31, 0.69]], dtype=torch.float64)
    assert expected_calibration_error(apart, torch.tensor([0, 0])) == pytest.approx(
        (0.39 + 0.69) / 2)


@pytest.mark.parametrize("probs, labels, message", [
    (torch.tensor([[float("nan"), 0.5]]), torch.tensor([0]), "NaN or infinite"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), r"labels must be in 0 \.\. 1"),
    (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "no examples"),
    (torch.tensor([0.5, 0.5]), torch.tensor([0]), r"must be \(N, K\)"),
    # The other side of each check: inf beside NaN, a label below 0, a 1-D prediction.
    (torch.tensor([[float("inf"), 0.5]]), torch.tensor([0]), "NaN or infinite"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([-1]), r"labels must be in 0 \.\. 1"),
    (torch.tensor([0.7]), torch.tensor([0]), r"must be \(N, K\)"),  # (1,) matches labels (1,)
    # One label for two rows: it broadcast against both predictions.
    (torch.tensor([[0.6, 0.4], [0.3, 0.7]]), torch.tensor([0]), r"must be \(N, K\)"),
    # Logits given for probabilities, and fractional labels, scored silently before.
    (torch.tensor([[2.5, -1.0]]), torch.tensor([0]), r"must be in \[0, 1\].*\[-1, 2\.5\]"),
    # Above 1 only (no negative value for the lower bound's check to catch).
    (torch.tensor([[1.5, 0.2]]), torch.tensor([0]), r"must be in \[0, 1\].*\[0\.2, 1\.5\]"),
    # Below 0 only (no value above 1 for the upper bound's check to catch).
    (torch.tensor([[1.0, -0.2]]), torch.tensor([0]), r"must be in \[0, 1\].*\[-0\.2, 1\]"),
    (torch.tensor([[0.6, 0.4]]), torch.tensor([0.5]), "whole class numbers"),
])
def test_expected_calibration_error_refuses_bad_input(probs, labels, message) -> None:
    from stgconv.metrics import expected_calibration_error

    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, labels)


def test_expected_calibration_error_bins_are_closed_on_the_right() -> None:
    """With 2 bins, confidence 0.5 is the top of bin 0 (0, 0.5], not the bottom of bin 1: right
    at 0.5 and wrong at 0.75 are two bins of gaps 0.5 and 0.75 (one bin would give 0.125)."""
    from stgconv.metrics import expected_calibration_error

    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx((0.5 + 0.75) / 2)


def test_expected_calibration_error_refuses_zero_bins_and_bins_a_zero_confidence_first() -> None:
    """bins 0 is refused (not a division by no examples); a confidence of exactly 0 (a row of
    zeros: nothing rules it out) counts in bin 0, as the bins' comment says, not past its
    start."""
    from stgconv.metrics import expected_calibration_error

    with pytest.raises(ValueError, match="bins must be an int >= 1, got 0"):
        expected_calibration_error(torch.tensor([[0.6, 0.4]]), torch.tensor([0]), bins=0)
    # One class, so the prediction is class 0 whatever the ties: right at confidence 0 and
    # right at 0.9, bins 0 and 13, gaps 1 and 0.1.
    probs = torch.tensor([[0.0], [0.9]], dtype=torch.float64)
    assert expected_calibration_error(probs, torch.tensor([0, 0])) == pytest.approx(0.55)


def test_expected_calibration_error_names_bins_that_are_not_an_int_and_bool_labels() -> None:
    """bins 2.5 or True failed inside torch's bincount ("argument 'minlength' must be int");
    bool labels were scored as classes 0 and 1, where check_classes refuses them."""
    from stgconv.metrics import expected_calibration_error

    probs, labels = torch.tensor([[0.6, 0.4], [0.3, 0.7]]), torch.tensor([0, 1])
    for bins in (2.5, True):
        with pytest.raises(ValueError, match=rf"bins must be an int >= 1, got {bins!r}"):
            expected_calibration_error(probs, labels, bins=bins)
    for bins in (np.int64(2), torch.tensor(2)):  # what as_int takes, as every count
        assert expected_calibration_error(probs, labels, bins=bins) == pytest.approx(0.35)
    with pytest.raises(ValueError, match=r"labels must be class numbers 0 \.\. K - 1, got "
                                         r"torch.bool"):
        expected_calibration_error(probs, labels.bool())


def test_auroc_refuses_infinite_and_non_vector_scores() -> None:
    """Infinite scores are refused as NaN ones are (the message says both); scores must be
    (N,): an (N, 1) column is refused by name, not left to fail in the rank bookkeeping."""
    from stgconv.metrics import auroc

    with pytest.raises(ValueError, match="outlier_scores has NaN or infinite values"):
        auroc(torch.tensor([1.0, 2.0]), torch.tensor([float("-inf"), 0.0]))
    with pytest.raises(ValueError, match=r"inlier_scores must be a non-empty \(N,\) tensor, "
                                         r"got \(2, 1\)"):
        auroc(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0]))


def test_auroc_and_ece_refuse_complex_values() -> None:
    """The AUROC cast complex scores to float64, dropping their imaginary parts with a
    warning, and scored the rest; the ECE failed inside torch ("min_all" not implemented)."""
    with pytest.raises(ValueError, match=r"^outlier_scores must be real scores, got "
                                         r"torch.complex64$"):
        auroc(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 3.0]) * (1 + 1j))
    with pytest.raises(ValueError, match=r"^probabilities must be real, got torch.complex64$"):
        expected_calibration_error(PROBABILITIES.to(torch.complex64), LABELS)


def test_voxel_iou_counts_a_half_as_occupied() -> None:
    pred = torch.full((1, 1, 2, 2, 2), 0.5)
    assert voxel_iou(pred, torch.ones_like(pred)).item() == 1.0
    # In the truth too: a soft truth's 0.5 is occupied, as the prediction's is.
    assert voxel_iou(torch.ones_like(pred), pred).item() == 1.0
    # Just below a half is empty: no overlap with a full truth.
    assert voxel_iou(torch.full_like(pred, 0.45), torch.ones_like(pred)).item() == 0.0


@pytest.mark.parametrize("threshold", [math.nan, math.inf, "0.5"])
def test_voxel_iou_refuses_a_threshold_that_is_no_finite_number(threshold) -> None:
    """A NaN threshold left every voxel of both grids empty, and shapes that share no voxel
    scored a perfect IoU of 1."""
    pred = torch.zeros(1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        voxel_iou(pred, torch.ones_like(pred), threshold=threshold)


def test_pooled_iou_of_empty_shapes_is_each_shapes() -> None:
    """Shapes all empty and predicted empty pool to 1, as voxel_iou scores each of them."""
    empty = torch.zeros(2, 1, 2, 2, 2)
    assert voxel_iou(empty, empty).tolist() == [1.0, 1.0]
    assert pooled_iou(0, 0) == 1.0
    assert pooled_iou(0, 3) == 0.0 and pooled_iou(5, 6) == 5 / 6


@pytest.mark.parametrize("counts", [(5, 4), (-1, 3)])
def test_pooled_iou_refuses_counts_no_shapes_give(counts: tuple[int, int]) -> None:
    """The counts in the wrong order scored 1.25 without a word."""
    with pytest.raises(ValueError, match="0 <= intersection <= union"):
        pooled_iou(*counts)


def test_missing_mae_255_is_computed_in_float64() -> None:
    """Differences below float32's resolution still count: float64 clips are scored in float64,
    not rounded to float32 first (which would make this error 0)."""
    truth = clip().double()
    known = region()
    recovered = truth + 1e-9
    assert missing_mae_255(recovered, truth, known) == pytest.approx(1e-9 * 127.5, rel=1e-3)


def test_voxel_scores_name_a_truth_that_is_not_a_voxel_tensor() -> None:
    """A numpy truth passed the shape comparison, then failed inside torch.isfinite."""
    pred = torch.zeros(2, 1, 4, 4, 4)
    for score in (voxel_errors, voxel_iou):
        with pytest.raises(ValueError, match=r"truth must be voxels \(B, 1, D, H, W\), got "
                                             r"ndarray"):
            score(pred, pred.numpy())


def _on_meta(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, device="meta")


CLIP = torch.zeros(1, 2, 2, 2)
SOME_KNOWN = torch.tensor([True, False]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
VOXELS = torch.zeros(1, 1, 2, 2, 2)
PROBABILITIES = torch.full((2, 2), 0.5)
LABELS = torch.tensor([0, 1])


@pytest.mark.parametrize("score, arguments, name", [
    (missing_mae_255, (_on_meta(CLIP), CLIP, SOME_KNOWN), "recovered"),
    (missing_mae_255, (CLIP, _on_meta(CLIP), SOME_KNOWN), "truth"),
    (missing_mae_255, (CLIP, CLIP, _on_meta(SOME_KNOWN)), "known"),
    (voxel_errors, (_on_meta(VOXELS), VOXELS), "pred"),
    (voxel_errors, (VOXELS, _on_meta(VOXELS)), "truth"),
    (lambda *a: voxel_errors(*a, where=_on_meta(VOXELS.bool())), (VOXELS, VOXELS), "where"),
    (voxel_iou, (_on_meta(VOXELS), VOXELS), "pred"),
    (auroc, (_on_meta(LABELS.float()), LABELS.float()), "inlier_scores"),
    (auroc, (LABELS.float(), _on_meta(LABELS.float())), "outlier_scores"),
    (expected_calibration_error, (_on_meta(PROBABILITIES), LABELS), "probabilities"),
    (expected_calibration_error, (PROBABILITIES, _on_meta(LABELS)), "labels"),
])
def test_scores_name_a_tensor_on_the_meta_device(score, arguments, name: str) -> None:
    """Tensors holding shapes but no values failed deep inside torch ("Cannot copy out of meta
    tensor; no data!", "Tensor.item() cannot be called on meta tensors"), or, for where,
    blamed a broadcast of equal shapes."""
    with pytest.raises(ValueError, match=f"^{name} is on the meta device, which holds shapes "
                                         "but no values"):
        score(*arguments)


def test_expected_calibration_error_takes_whole_float_labels_as_classes() -> None:
    """As class_entropy does: labels read from a float array (0., 1., 2.) are the classes they
    name, not refused as check_classes refuses them for training, where a float class would be
    cut to another one by indexing; here they are only compared with the predictions. An
    infinite label failed with an OverflowError instead of being named."""
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
    as_classes = expected_calibration_error(probs, torch.tensor([0, 1, 2]))
    assert expected_calibration_error(probs, torch.tensor([0.0, 1.0, 2.0])) == as_classes
    for not_a_class in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="labels must be whole class numbers, got NaN or "
                                             "infinite values"):
            expected_calibration_error(probs, torch.tensor([0.0, 1.0, not_a_class]))
