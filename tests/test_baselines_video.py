"""Classical video recovery baselines: the fill contract over every baseline and mask type, and
each baseline's defining property on a video it must recover exactly. The real-clip check
(errors as the recovery issue measured them) skips when ../shared/data is absent; the metrics
themselves are tested in ``test_metrics.py``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import stgconv.baselines.video as video_baselines
from stgconv.baselines.video import (
    FILLS,
    biharmonic_inpainting,
    motion_compensated_interpolation,
    neighbour_average,
    temporal_interpolation,
    temporal_neighbours,
)
from stgconv.data.masks import load_mask_mat, missing_frames, occluded_region, salt_and_pepper
from stgconv.io.video import load_video
from stgconv.metrics import missing_mae_255

C, T, H, W = 3, 10, 24, 24


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clip(seed: int = 0) -> torch.Tensor:
    return torch.rand(C, T, H, W, generator=gen(seed)) * 2 - 1


def make_mask(kind: str) -> torch.Tensor:
    """A ``known`` mask of each kind the baselines must handle."""
    if kind == "missing_frames":
        return missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    if kind == "region":
        return occluded_region(T, H, W, size=10, generator=gen(2))
    if kind == "fixed_region":
        return occluded_region(T, H, W, size=10, moving=False, generator=gen(3))
    if kind == "salt_and_pepper":
        return salt_and_pepper(T, H, W, fraction=0.4, generator=gen(4))
    if kind == "blocks":
        return salt_and_pepper(T, H, W, fraction=0.4, block=4, generator=gen(5))
    if kind == "per_channel":  # (C, T, H, W), differing between channels
        return torch.rand(C, T, H, W, generator=gen(6)) > 0.3
    if kind == "channel_frame_gone":  # one channel of one frame entirely missing
        known = salt_and_pepper(T, H, W, fraction=0.2, generator=gen(7)).expand(C, T, H, W).clone()
        known[1, 4] = False
        return known
    raise AssertionError(kind)


MASK_KINDS = ["missing_frames", "region", "fixed_region", "salt_and_pepper", "blocks",
              "per_channel", "channel_frame_gone"]


# ---------------------------------------------------------------------------------------------
# The contract, for every baseline and every mask type
# ---------------------------------------------------------------------------------------------


def test_registry_names():
    assert set(FILLS) == {"temporal_interpolation", "biharmonic", "neighbour_average",
                          "motion_compensated"}
    assert FILLS == {"temporal_interpolation": temporal_interpolation,
                     "biharmonic": biharmonic_inpainting, "neighbour_average": neighbour_average,
                     "motion_compensated": motion_compensated_interpolation}


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("name", sorted(FILLS))
def test_observed_entries_exact_and_missing_filled(name, kind):
    truth = clip()
    known = make_mask(kind)
    full = known.expand(truth.shape)
    assert (~full).any() and full.any()
    # The missing entries of the input must never be read: NaN there must not leak out.
    video = torch.where(full, truth, torch.nan)
    before = video.clone()
    out = FILLS[name](video, known)
    assert out.shape == truth.shape and out.dtype == truth.dtype
    assert torch.equal(out[full], truth[full])  # bit for bit
    assert torch.isfinite(out).all()
    # Fills stay within the range of the data (all three are averages / clipped).
    assert out.min() >= truth.min() - 1e-5 and out.max() <= truth.max() + 1e-5
    assert torch.equal(video.isnan(), before.isnan())  # input untouched
    assert torch.equal(video[full], before[full])


@pytest.mark.parametrize("name", sorted(FILLS))
def test_float64_and_3d_mask(name):
    truth = clip().double()
    known = make_mask("region")  # (T, H, W) broadcasts over channels
    out = FILLS[name](truth, known)
    assert out.dtype == torch.float64
    assert torch.equal(out[known.expand(truth.shape)], truth[known.expand(truth.shape)])


@pytest.mark.parametrize("name", sorted(FILLS))
def test_a_clip_that_requires_grad_fills_as_its_values(name):
    """A clip another network made: motion compensation failed in numpy ("Can't call numpy()
    on Tensor that requires grad"), the other fills took it."""
    video, known = clip(), make_mask("region")
    out = FILLS[name](video.clone().requires_grad_(True), known)
    assert torch.equal(out.detach(), FILLS[name](video, known))
    out.sum().backward()  # on the caller's graph as a value, not written in place


@pytest.mark.parametrize("name", sorted(FILLS))
def test_bad_input(name):
    fill = FILLS[name]
    video, known = clip(), make_mask("region")
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        fill(video[None], known)
    with pytest.raises(ValueError, match="does not match"):
        fill(video, known[:, :-1])
    with pytest.raises(ValueError, match="bool"):
        fill(video, known.float())
    with pytest.raises(ValueError, match="no observed entry"):
        fill(video, torch.zeros_like(known))
    with pytest.raises(ValueError, match="float tensor in"):  # 0-255 frames, not [-1, 1]
        fill((video * 127.5 + 127.5).to(torch.uint8), known)
    bad = video.clone()
    bad[0, 0, 0, 0] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        fill(bad, torch.ones_like(known))


@pytest.mark.parametrize("name", sorted(FILLS))
def test_nothing_missing_returns_the_video(name):
    video = clip()
    assert torch.equal(FILLS[name](video, torch.ones(T, H, W, dtype=torch.bool)), video)


# ---------------------------------------------------------------------------------------------
# temporal_interpolation
# ---------------------------------------------------------------------------------------------


def linear_in_time() -> torch.Tensor:
    """``a + b * t`` with a different ``a``, ``b`` per pixel and channel; stays inside [-1, 1]."""
    a = torch.rand(C, 1, H, W, generator=gen(10)) - 0.5
    b = (torch.rand(C, 1, H, W, generator=gen(11)) - 0.5) / T
    return a + b * torch.arange(T, dtype=torch.float32).view(1, T, 1, 1)


@pytest.mark.parametrize("kind", ["missing_frames", "region", "salt_and_pepper", "per_channel"])
def test_temporal_interpolation_exact_on_linear_video(kind):
    video = linear_in_time()
    known = make_mask(kind).expand(video.shape).clone()
    known[:, 0] = known[:, -1] = True  # interpolation, not holding at the ends
    out = temporal_interpolation(video, known)
    torch.testing.assert_close(out, video, atol=1e-6, rtol=0)


def test_temporal_interpolation_weights():
    video = torch.zeros(1, 5, 1, 1)
    video[0, 0], video[0, 4] = 1.0, -1.0
    known = torch.tensor([True, False, False, False, True]).view(1, 5, 1, 1)
    out = temporal_interpolation(video, known).flatten()
    torch.testing.assert_close(out, torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0]))


def test_temporal_interpolation_holds_at_the_ends():
    video = linear_in_time()
    known = torch.ones(T, H, W, dtype=torch.bool)
    known[:2] = False  # first two frames missing
    known[-3:] = False  # last three frames missing
    known[5] = False
    out = temporal_interpolation(video, known)
    assert torch.equal(out[:, 0], video[:, 2]) and torch.equal(out[:, 1], video[:, 2])
    for t in (T - 3, T - 2, T - 1):
        assert torch.equal(out[:, t], video[:, T - 4])
    torch.testing.assert_close(out[:, 5], video[:, 5], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_temporal_neighbours_are_the_ends_the_interpolation_blends(kind):
    video, known = clip(), make_mask(kind)
    observed = torch.where(known, video, torch.nan)
    before, after, weight = temporal_neighbours(observed, known)
    assert torch.isfinite(torch.stack([before, after, weight])).all()
    assert ((weight >= 0) & (weight <= 1)).all()
    blend = torch.where(known, observed, before + weight * (after - before))
    assert torch.equal(blend, temporal_interpolation(observed, known))
    seen = known.expand_as(video)
    assert torch.equal(before[seen], video[seen]) and torch.equal(after[seen], video[seen])
    assert (weight[seen] == 0).all()


def test_temporal_neighbours_of_a_gap():
    video = torch.arange(6.0).view(1, 6, 1, 1) / 10
    known = torch.tensor([False, True, False, False, True, False]).view(1, 6, 1, 1)
    before, after, weight = (x.flatten() for x in temporal_neighbours(video, known))
    # Frame 0: only a later observation (0.1) on either side; 2 and 3 between 0.1 and 0.4;
    # 5: only the earlier one.
    torch.testing.assert_close(before, torch.tensor([0.1, 0.1, 0.1, 0.1, 0.4, 0.4]))
    torch.testing.assert_close(after, torch.tensor([0.1, 0.1, 0.4, 0.4, 0.4, 0.4]))
    torch.testing.assert_close(weight, torch.tensor([0, 0, 1 / 3, 2 / 3, 0, 0]))


def test_temporal_interpolation_never_observed_pixel_gets_frame_mean():
    video = clip()
    known = torch.ones(C, T, H, W, dtype=torch.bool)
    known[:, :, 3, 4] = False  # this pixel is never observed
    known[:, 2] = False  # and frame 2 is missing entirely (in every channel)
    out = temporal_interpolation(video, known)
    frame_mean = torch.where(known, video, 0).sum((2, 3)) / known.sum((2, 3)).clamp(min=1)
    for t in range(T):
        if t == 2:  # no observed pixel in the frame: the channel's mean over the clip
            expected = torch.stack([video[c][known[c]].mean() for c in range(C)])
        else:
            expected = frame_mean[:, t]
        torch.testing.assert_close(out[:, t, 3, 4], expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# neighbour_average
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_neighbour_average_keeps_a_constant_video(kind):
    video = torch.full((C, T, H, W), 0.3)
    out = neighbour_average(video, make_mask(kind))
    torch.testing.assert_close(out, video, atol=1e-6, rtol=0)


def test_neighbour_average_converges_to_the_harmonic_fill():
    # Constant in space, linear in time: discrete-harmonic, so interior missing frames are
    # recovered exactly once the sweeps have converged.
    video = linear_in_time()[:, :, :1, :1].expand(C, T, H, W).contiguous()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(12))
    out = neighbour_average(video, known, tol=1e-8)
    torch.testing.assert_close(out, video, atol=1e-5, rtol=0)


def test_neighbour_average_stops_at_max_iters():
    video, known = clip(), make_mask("region")
    one = neighbour_average(video, known, max_iters=1)
    many = neighbour_average(video, known)
    assert not torch.allclose(one, many)
    with pytest.raises(ValueError, match="max_iters"):
        neighbour_average(video, known, max_iters=0)
    for bad in (-1.0, float("nan")):  # NaN: no change is <= it, so no sweep stops early
        with pytest.raises(ValueError, match="tol"):
            neighbour_average(video, known, tol=bad)
    # tol 0 is a tol (run every sweep unless nothing moves), not an error.
    assert torch.equal(neighbour_average(video, known, tol=0.0, max_iters=1), one)
    for bad in (-1.0, float("nan")):  # taken by the motion-compensated fill, every sweep run
        with pytest.raises(ValueError, match=r"^tol must be >= 0, got"):
            motion_compensated_interpolation(video, known, tol=bad)


# ---------------------------------------------------------------------------------------------
# biharmonic_inpainting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["region", "salt_and_pepper", "blocks", "per_channel"])
def test_biharmonic_recovers_a_plane(kind):
    # A plane is biharmonic, so it is recovered exactly where the 5x5 stencil fits: missing
    # pixels at least 2 px from the frame's edge (at the edge scikit-image truncates the
    # stencil, errors there reach ~0.03).
    h = torch.linspace(-0.6, 0.6, H).view(1, 1, H, 1)
    w = torch.linspace(-0.3, 0.3, W).view(1, 1, 1, W)
    slope = torch.tensor([1.0, -0.5, 0.2]).view(C, 1, 1, 1)
    video = (slope * h + w + 0.1 * torch.arange(T).view(1, T, 1, 1) / T).expand(C, T, H, W)
    known = make_mask(kind).expand(C, T, H, W).clone()
    border = torch.ones(H, W, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    known |= border
    out = biharmonic_inpainting(video.contiguous(), known)
    torch.testing.assert_close(out, video, atol=1e-6, rtol=0)


def test_biharmonic_whole_missing_frames_fall_back_to_temporal_interpolation():
    video, known = clip(), make_mask("missing_frames")
    assert torch.equal(biharmonic_inpainting(video, known), temporal_interpolation(video, known))
    # A channel-frame with no pixel falls back; the rest of that frame is inpainted spatially.
    known = make_mask("channel_frame_gone")
    out = biharmonic_inpainting(video, known)
    assert torch.equal(out[1, 4], temporal_interpolation(video, known)[1, 4])
    for c in (0, 2):  # as each channel alone inpaints it, not the fallback of channel 1
        alone = biharmonic_inpainting(video[c:c + 1], known[c:c + 1])[0, 4]
        torch.testing.assert_close(out[c, 4], alone, atol=1e-6, rtol=0)


# Whole missing frames have no pixel to inpaint spatially, so nothing there to reuse.
@pytest.mark.parametrize("kind", [kind for kind in MASK_KINDS if kind != "missing_frames"])
def test_biharmonic_reusing_an_earlier_fill_is_bit_identical_and_skips_unchanged_frames(kind):
    """A mask differing from an earlier one in two frames (its pixels there hidden like another
    frame's missing ones, as the learned fill's patterns do): the result with ``reuse`` is the
    result without, bit for bit, and frames with the same mask really are copied (a marked
    earlier fill shows through there and nowhere else). A fixed region hides the same pixels
    in every frame: there the changed frames are the same, and every frame is copied."""
    video, known = clip(), make_mask(kind).expand(C, T, H, W)
    earlier = biharmonic_inpainting(video, known)
    changed = known.clone()
    changed[:, 2] &= known[:, 5]
    changed[:, 7] &= known[:, 1]
    fresh = biharmonic_inpainting(video, changed)
    assert torch.equal(biharmonic_inpainting(video, changed, reuse=(known, earlier)), fresh)
    marked = biharmonic_inpainting(video, changed, reuse=(known, earlier + 10))
    copied = (changed == known).flatten(2).all(2).all(0) & changed.flatten(2).any(2).all(0)
    assert copied.any() and (kind == "fixed_region") == bool(copied.all())
    missing = ~changed
    for t in range(T):
        difference = (marked[:, t] - fresh[:, t])[missing[:, t]]
        if copied[t] and difference.numel():
            torch.testing.assert_close(difference, torch.full_like(difference, 10.0))
        else:
            assert torch.equal(difference, torch.zeros_like(difference))


def test_biharmonic_reuse_of_another_shape_is_refused():
    video, known = clip(), make_mask("region")
    with pytest.raises(ValueError, match="earlier fill has shape"):
        biharmonic_inpainting(video, known, reuse=(known, video[:, :5]))
    with pytest.raises(ValueError, match="known must be a bool"):  # its mask is checked too
        biharmonic_inpainting(video, known, reuse=(known.float(), video))


def moving_pattern(shift: float = 1.0, frames: int = 10, size: int = 32) -> torch.Tensor:
    """``(3, frames, size, size)``: a smooth periodic pattern translating ``shift`` pixels per
    frame to the right (the known flow), a different phase per channel."""
    rows = torch.arange(size, dtype=torch.float64).view(1, 1, size, 1)
    cols = torch.arange(size, dtype=torch.float64).view(1, 1, 1, size)
    t = torch.arange(frames, dtype=torch.float64).view(1, frames, 1, 1)
    phase = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).view(3, 1, 1, 1)
    x = cols - shift * t
    return (0.6 * torch.sin(2 * torch.pi * x / 16 + phase)
            * torch.cos(2 * torch.pi * rows / 32)).float()


@pytest.mark.parametrize("still_channel", [False, True])
def test_motion_compensated_follows_a_known_translation(still_channel: bool):
    """A block hidden for four frames over a pattern moving 1 px per frame: interpolating at a
    fixed pixel blends two phases of the pattern; following the flow does not. The flow is of
    the channels' mean: a channel that does not move (flat) does not hide the others' motion."""
    video = moving_pattern()
    if still_channel:
        video[0] = 0.0
    known = torch.ones(10, 32, 32, dtype=torch.bool)
    known[3:7, 10:22, 10:22] = False
    observed = torch.where(known, video, torch.nan)
    missing = ~known.expand_as(video)
    errors = {name: (fill(observed, known) - video)[missing].abs().mean().item()
              for name, fill in (("temporal", temporal_interpolation),
                                 ("motion", motion_compensated_interpolation))}
    assert errors["motion"] < 0.25 * errors["temporal"], errors
    assert errors["motion"] < 0.03, errors


def test_motion_compensated_is_temporal_interpolation_on_a_still_scene():
    """No motion: the trajectories are the fixed pixels, and both fills agree."""
    video = moving_pattern(shift=0.0, frames=T, size=H)
    known = make_mask("missing_frames")
    observed = torch.where(known, video, torch.nan)
    torch.testing.assert_close(motion_compensated_interpolation(observed, known),
                               temporal_interpolation(observed, known), rtol=0, atol=2e-3)


def test_motion_compensated_rejects_no_rounds():
    with pytest.raises(ValueError, match="rounds"):
        motion_compensated_interpolation(clip(), make_mask("region"), rounds=0)
    with pytest.raises(ValueError, match="max_sweeps"):  # not temporal interpolation unsaid
        motion_compensated_interpolation(clip(), make_mask("region"), max_sweeps=0)


# ---------------------------------------------------------------------------------------------
# The real clips of the recovery protocol (skipped without ../shared/data)
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared_data("video/flag.avi", "video/masks")
def test_flag_errors_match_issue(shared_data: Path):
    # Issue 3's protocol (first 70 frames at 150x150, the flag masks) and its measured errors.
    video = load_video(shared_data / "video" / "flag.avi", n_frames=70, size=150)
    masks = shared_data / "video" / "masks"
    for name, kind, expected in (("temporal_interpolation", "missing_frame", 7.3),
                                 ("temporal_interpolation", "region", 10.3),
                                 ("biharmonic", "region", 46.8)):
        known = load_mask_mat(masks / f"flag_{kind}_type.mat")
        observed = torch.where(known, video, torch.nan)
        error = missing_mae_255(FILLS[name](observed, known), video, known)
        assert error == pytest.approx(expected, abs=0.1), (name, kind)


def test_neighbour_average_does_not_stop_before_every_entry_is_filled() -> None:
    """With a loose ``tol`` the sweeps still go on until every missing entry has been reached:
    the start (the channel's observed mean, 1/3 here) is never returned, as it would be if a
    small ``change`` stopped the sweeps while entries were still unfilled."""
    video = torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0, 0, -1.0]).view(1, 1, 1, 9)
    known = torch.tensor([True, True] + [False] * 6 + [True]).view(1, 1, 1, 9)
    out = neighbour_average(video, known, tol=10.0)
    assert not torch.isclose(out[0, 0, 0, 4], torch.tensor(1 / 3))


def test_neighbour_average_sweeps_by_hand() -> None:
    """A pixel seen at frames 0 (value 0) and 3 (value 3). Sweep 1: frame 2 (t even) first,
    from frame 3 alone (frame 1 is not filled yet): 3; then frame 1 from frames 0 and 2: 1.5
    (colours of h + w alone put both in one colour: 0 and 3, each from one side). Filled in
    one sweep, the holes are about 4 entries across: later moves are over-relaxed by
    w = 2 / (1 + sin(pi / 4)). Sweep 2 moves frame 2 by w * (2.25 - 3), frame 1 by
    w * ((0 + x2) / 2 - 1.5); sweep 3 moves frame 2 by under 0.5 and frame 1 not at all (it
    is then its neighbours' mean): with tol 0.5 the sweeps stop after the third, by the
    largest move of any entry (frame 1's alone stopped them after the first, where it did
    not move), nearer the harmonic fill [0, 1, 2, 3] than plain sweeps came (1.03, 2.06)."""
    video = torch.tensor([0.0, 9.0, 9.0, 3.0]).view(1, 4, 1, 1)
    known = torch.tensor([True, False, False, True]).view(1, 4, 1, 1)
    out = neighbour_average(video, known, max_iters=1)
    assert out.flatten().tolist() == [0.0, 1.5, 3.0, 3.0]
    w = 2 / (1 + math.sin(math.pi / 4))
    x2 = 3 + w * (2.25 - 3)
    x1 = 1.5 + w * (x2 / 2 - 1.5)
    assert w * (3 - x2) > 0.5  # sweep 2 moved frame 2 by more than tol
    x2 += w * ((x1 + 3) / 2 - x2)
    x1 += w * (x2 / 2 - x1)
    out = neighbour_average(video, known, tol=0.5)
    assert out.flatten().tolist() == pytest.approx([0.0, x1, x2, 3.0], abs=1e-6)
    assert out.flatten().tolist() == pytest.approx([0.0, 0.98528, 1.97056, 3.0], abs=1e-5)


def test_neighbour_average_fills_a_wide_fixed_hole_in_a_few_hundred_sweeps() -> None:
    """A 56x56 block missing in every frame of a linear ramp (harmonic: its own fill): plain
    Gauss-Seidel sweeps converge in about the square of the width and are still off after
    200; over-relaxed ones are done."""
    t, y, x = torch.meshgrid(torch.arange(3.0), torch.arange(64.0), torch.arange(64.0),
                             indexing="ij")
    ramp = ((y + 2 * x) / 192 - 0.5)[None]
    known = torch.ones(1, 3, 64, 64, dtype=torch.bool)
    known[..., 4:60, 4:60] = False
    out = neighbour_average(ramp, known, max_iters=200)
    # Measured: 2.4e-5 over-relaxed; 0.055 (of the ramp's range of 1) with plain sweeps.
    assert (out - ramp).abs().max() < 1e-3


def test_neighbour_average_stops_when_a_channel_has_no_observed_entry(monkeypatch) -> None:
    """A per-channel mask that never shows one channel: no sweep can reach it, so it keeps its
    start (the mean of every observed entry) and the sweeps stop as for the other channels (all
    ``max_iters`` ran before, each for nothing)."""
    video = torch.rand(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = salt_and_pepper(4, 8, 8, fraction=0.5,
                            generator=torch.Generator().manual_seed(1)).expand(3, -1, -1, -1)
    known = known.clone()
    known[1] = False
    calls = []
    real = video_baselines._neighbour_sum
    monkeypatch.setattr(video_baselines, "_neighbour_sum", lambda x: calls.append(1) or real(x))
    out = neighbour_average(video, known, max_iters=500)
    assert len(calls) < 200
    assert torch.equal(out[1], torch.full_like(out[1], video[known].mean().item()))
    alone = neighbour_average(video[[0, 2]], known[[0, 2]], max_iters=500)
    assert torch.allclose(out[[0, 2]], alone, atol=1e-6)


def test_motion_compensated_averages_both_neighbour_frames() -> None:
    """Flat frames brightening linearly in time: no flow, so the fill is linear interpolation
    between the observed frames, from both neighbours (the previous frame's estimate alone
    would repeat frame 1)."""
    video = (torch.arange(6.0) * 0.2 - 0.5).view(1, 6, 1, 1).expand(1, 6, 8, 8).contiguous()
    known = torch.ones(6, 8, 8, dtype=torch.bool)
    known[2:4] = False
    out = motion_compensated_interpolation(video, known)
    torch.testing.assert_close(out, video, rtol=0, atol=1e-3)


def test_temporal_interpolation_fills_a_never_observed_channel_with_the_observed_mean() -> None:
    """A channel with no observed entry anywhere gets the mean of every observed entry (the
    last fallback of the never-observed fill), not zero."""
    video = clip() * 0.5 + 0.3  # observed mean near 0.3, far from 0
    known = torch.ones(C, T, H, W, dtype=torch.bool)
    known[1] = False  # channel 1 is never observed
    out = temporal_interpolation(video, known)
    expected = video[known].mean().item()
    torch.testing.assert_close(out[1], torch.full_like(out[1], expected), atol=1e-5, rtol=0)
    assert torch.equal(out[[0, 2]], video[[0, 2]])


def test_motion_compensated_sampling_clamps_to_the_frame_edge() -> None:
    """Where the flow points outside the frame the neighbour frame is read at its nearest edge
    (``padding_mode="border"``), not as zero."""
    frame = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]])  # (C, H, W) = (1, 2, 2)
    # (x = column, y = row) in [-1, 1], corners on the corner pixels' centres.
    grid = torch.tensor([[[[3.0, -1.0], [-3.0, 1.0]],
                          [[0.0, 5.0], [1.0, 1.0]]]])  # (1, H, W, 2)
    out = video_baselines._sample(frame, grid)
    torch.testing.assert_close(out, torch.tensor([[[0.4, 0.6], [0.7, 0.8]]]))


def test_observed_frames_around_names_a_mask_that_is_not_bool() -> None:
    """A float mask failed inside torch.where ("expected condition to be a boolean tensor")."""
    with pytest.raises(ValueError, match=r"known must be a bool tensor \(True = observed\), got "
                                         r"torch.float32"):
        video_baselines.observed_frames_around(torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("name", list(FILLS))
@pytest.mark.parametrize("on_meta", ["video", "known"])
def test_fills_name_a_tensor_on_the_meta_device(name: str, on_meta: str) -> None:
    """Shapes without values failed inside torch ("Cannot copy out of meta tensor; no
    data!")."""
    tensors = {"video": torch.zeros(1, 2, 2, 2),
               "known": torch.tensor([True, False]).view(2, 1, 1).expand(2, 2, 2)}
    tensors[on_meta] = tensors[on_meta].to("meta")
    with pytest.raises(ValueError, match=f"^{on_meta} is on the meta device"):
        FILLS[name](**tensors)


def test_motion_compensated_of_a_single_frame_is_temporal_interpolation() -> None:
    """A clip of one frame has no neighbour frame to follow a motion into: the fill is the
    temporal interpolation's (its frame mean), not a division by no estimates."""
    video = clip()[:, :1]
    known = make_mask("region")[:1]
    torch.testing.assert_close(motion_compensated_interpolation(video, known),
                               temporal_interpolation(video, known), rtol=0, atol=0)


@pytest.mark.parametrize("frame", [(1, 13), (12, 1)])
def test_motion_compensated_names_frames_too_thin_for_the_flow(frame: tuple[int, int]) -> None:
    """A clip one pixel high or wide has no optical flow to estimate: it failed in scikit-image
    ("Shape of array too small to calculate a numerical gradient"), naming no argument."""
    video = torch.zeros(1, 4, *frame)
    known = torch.rand(4, *frame, generator=torch.Generator().manual_seed(0)) > 0.5
    with pytest.raises(ValueError, match=rf"^motion-compensated interpolation estimates the "
                                         rf"optical flow between frames, which needs frames of "
                                         rf"at least 2x2 pixels; the video's are "
                                         rf"{frame[0]}x{frame[1]}$"):
        motion_compensated_interpolation(video, known)


def test_neighbour_average_by_default_sweeps_a_long_gap_to_its_harmonic_fill() -> None:
    """A row of 21 pixels seen only at its ends, -1 and 1: its harmonic fill is the line
    between them. Each sweep shrinks the error by ~0.9 here, so the default tol is reached
    after ~95 sweeps (20 leave it 0.14 off); the default sweep limit must not cut them short."""
    line = torch.linspace(-1.0, 1.0, 21).view(1, 1, 1, 21)
    known = torch.zeros(1, 1, 1, 21, dtype=torch.bool)
    known[..., [0, -1]] = True
    out = neighbour_average(torch.where(known, line, 0.0), known)
    # The error left is at most the last change (<= tol) over 1 - 0.9: ~1e-4.
    torch.testing.assert_close(out, line, rtol=0, atol=2e-4)
