"""Learning from incomplete data (:func:`stgconv.recovery.recover`) on tiny synthetic clips: the
clamp (observed entries never change), the warm-up and the separate completion sampler, a tiny
end-to-end recovery that lowers the error versus its start, and bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from stgconv import recovery
from stgconv.config import TrainConfig
from stgconv.baselines.video import temporal_interpolation
from stgconv.data.masks import missing_frames, salt_and_pepper
from stgconv.energy.video import video_energy
from stgconv.mcmc import HMC, MALA, KnownEntries, Langevin
from stgconv.metrics import missing_mae_255
from stgconv.recovery import (CompletionChain, check_schedule, hidden_whole_cause, hiding_shifts,
                              holdout_like, interpolation_spread, recover, shifted_in_frame,
                              spatial_shifts, spread_step_scale)

T, H, W = 12, 12, 12
TINY_LAYERS = [[8, (3, 5, 5), (1, 1, 1)], [8, (3, 3, 3), (1, 1, 1)]]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_energy(seed: int = 0, channels: int = 1):
    torch.manual_seed(seed)
    return video_energy("st_small", in_channels=channels, layers=TINY_LAYERS, reference_sigma=0.5)


def moving_sinusoid() -> torch.Tensor:
    """``(1, T, H, W)``: a diagonal grating, period 8 px, moving 1 px per frame, in [-0.6, 0.6]."""
    t = torch.arange(T, dtype=torch.float32).view(T, 1, 1)
    h = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    w = torch.arange(W, dtype=torch.float32).view(1, 1, W)
    return (0.6 * torch.sin(2 * math.pi * (h + w - t) / 8)).unsqueeze(0)


@dataclass(frozen=True)
class CountingLangevin(Langevin):
    """A Langevin sampler that records how many chains each ``run`` call moved."""

    calls: tuple = ()  # a mutable list inside a frozen dataclass: ([],)

    def run(self, energy, x0, **kwargs):
        self.calls[0].append(x0.shape[0])
        return super().run(energy, x0, **kwargs)


def test_observed_entries_never_change() -> None:
    torch.manual_seed(0)
    observed = torch.rand(2, T, H, W, generator=gen(1)) * 2 - 1
    known = salt_and_pepper(T, H, W, fraction=0.4, generator=gen(2))
    gentle = CompletionChain(Langevin(n_steps=2, step_size=0.05))
    for kwargs in ({}, {"warmup": 2, "completion": gentle}):
        result = recover(
            tiny_energy(channels=2), Langevin(n_steps=3, step_size=0.1), observed, known,
            train=TrainConfig(n_iterations=4), average_last=2, n_chains=1, generator=gen(3),
            **kwargs,
        )
        mask = known.expand_as(observed)
        assert torch.equal(result.recovered[mask], observed[mask])
        assert result.recovered.shape == observed.shape
        assert torch.isfinite(result.recovered).all()
        assert len(result.history) == 4


def test_an_observed_clip_or_init_that_requires_grad_recovers_as_its_data() -> None:
    """Data that requires grad (a clip some other network made) put the completion on its
    graph, and the second training step failed inside autograd."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)

    def run(data: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        return recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), data, known,
                       init=init, train=TrainConfig(n_iterations=2), average_last=1,
                       n_chains=1, generator=gen(2)).recovered

    plain = run(observed, observed)
    leaf = observed.clone().requires_grad_(True)
    assert torch.equal(run(leaf, leaf), plain)
    assert torch.equal(run(observed, leaf * 1.0), plain)


def test_a_step_scale_made_of_a_clip_that_requires_grad_moves_as_its_values() -> None:
    """spread_step_scale of a clip another network made (as ``stgconv recover``'s task makes
    it of a clip given to it) put every move of the completion on that graph, and the second
    training step failed ("Trying to backward through the graph a second time")."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)

    def run(data: torch.Tensor) -> torch.Tensor:
        chain = CompletionChain(Langevin(n_steps=1, step_size=0.1),
                                step_scale=spread_step_scale(data, known))
        return recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), data, known,
                       train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                       completion=chain, generator=gen(2)).recovered

    assert torch.equal(run(observed.clone().requires_grad_(True)), run(observed))


def test_a_start_the_holdout_keeps_from_an_observed_clip_that_requires_grad_is_data() -> None:
    """The default start (the visible mean) of a clip that requires grad, kept by the holdout
    over a chain that only moves away (huge noisy steps): it comes back as data, not as a
    tensor on the caller's graph."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    holdout = holdout_like(known, fraction=0.5, generator=gen(4))
    leaf = torch.where(known, truth, 0.0).requires_grad_(True)
    result = recover(tiny_energy(), Langevin(n_steps=3, step_size=3.0), leaf, known,
                     train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                     holdout=holdout, generator=gen(2))
    assert result.selected_iteration == -1 and not result.recovered.requires_grad


def test_a_nan_at_a_held_out_observed_entry_is_refused() -> None:
    """The loop never sees held-out entries, so only the check of every observed entry finds
    a NaN there (it would make every holdout error NaN and come back as an observed value)."""
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    holdout = holdout_like(known, fraction=0.5, generator=gen(4))
    observed = torch.zeros(1, T, H, W)
    observed[tuple(holdout.expand_as(observed).nonzero()[0].tolist())] = float("nan")
    with pytest.raises(ValueError, match="observed has NaN or infinite values at observed"):
        recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), observed, known,
                train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                holdout=holdout, generator=gen(2))


def test_recovery_inside_no_grad_is_the_same_recovery() -> None:
    """Its training steps failed inside torch.no_grad() ("element 0 of tensors does not
    require grad"), where a caller who thinks of recovery as inference may well be."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))

    def run() -> torch.Tensor:
        return recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                       train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                       generator=gen(2)).recovered

    plain = run()
    with torch.no_grad():
        assert torch.equal(run(), plain)


def test_warmup_holds_the_start_and_completion_sampler_moves_it() -> None:
    """During warm-up the completion is the start (its error is constant); afterwards the
    completion sampler, not the synthesis sampler, moves it."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    synthesis = CountingLangevin(n_steps=2, step_size=0.1, calls=([],))
    completion = CountingLangevin(n_steps=2, step_size=0.1, calls=([],))
    result = recover(
        tiny_energy(), synthesis, observed, known, train=TrainConfig(n_iterations=5), warmup=3,
        average_last=2, n_chains=3, completion=CompletionChain(completion), generator=gen(2),
        holdout=holdout_like(known, fraction=0.5, generator=gen(3)),
    )
    # The held-out entries are completed like the missing ones: their error tracks the moves.
    errors = [record["holdout_error"] for record in result.history]
    assert errors[0] == errors[1] == errors[2]
    assert errors[3] != errors[2]
    assert synthesis.calls[0] == [3] * 5  # the 3 synthesis chains, every iteration
    assert completion.calls[0] == [1] * 2  # the completion, after the warm-up only


def test_tiny_recovery_lowers_the_error_versus_its_start() -> None:
    """Half the frames of a drifting grating missing, started from the plain mean fill: learning
    the model from the incomplete clip and completing it under the model recovers the grating
    (error 46 -> 21 on the 0-255 scale at this seed; asserted: below 70% of the start)."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    start = torch.where(known, observed, observed[known.expand_as(observed)].mean())
    start_error = missing_mae_255(start, truth, known)
    result = recover(
        tiny_energy(), Langevin(n_steps=20, step_size=0.1, clamp=(-1, 1)), observed, known,
        train=TrainConfig(n_iterations=40, lr=0.003), average_last=5, generator=gen(0),
    )
    error = missing_mae_255(result.recovered, truth, known)
    assert error < 0.7 * start_error, (error, start_error)


COMPLETION_SAMPLERS = {
    "langevin": Langevin(n_steps=3, step_size=0.1),
    "mala": MALA(n_steps=3, step_size=0.1),
    "hmc": HMC(n_steps=2, step_size=0.1, n_leapfrog=2),
}


@pytest.mark.parametrize("name", list(COMPLETION_SAMPLERS))
def test_step_scale_zero_entries_never_move(name: str) -> None:
    """The preconditioned completion moves only where ``step_scale > 0``, whichever sampler
    runs it (the preconditioning is an energy, the known entries a constraint)."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    init = torch.where(known, observed, 0.1)
    frozen = torch.zeros(1, T, H, W, dtype=torch.bool)
    frozen[..., : H // 2, :] = True  # the top half of every frame may not move
    scale = torch.where(frozen, 0.0, 1.0)
    result = recover(
        tiny_energy(), Langevin(n_steps=3, step_size=0.1), observed, known, init=init,
        train=TrainConfig(n_iterations=3), average_last=2, n_chains=1, generator=gen(2),
        completion=CompletionChain(COMPLETION_SAMPLERS[name], step_scale=scale, clamp=(-1, 1)),
    )
    missing = ~known.expand_as(observed)
    assert torch.equal(result.recovered[missing & frozen], init[missing & frozen])
    assert not torch.equal(result.recovered[missing & ~frozen], init[missing & ~frozen])


def test_an_init_of_another_dtype_starts_as_its_copy_in_the_clips() -> None:
    """A float64 classical fill for a float32 clip starts the same chains as its float32 copy
    (it was a dtype error inside the ConvNet)."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    init = torch.where(known, observed, 0.1)

    def run(start: torch.Tensor) -> torch.Tensor:
        return recover(tiny_energy(), Langevin(n_steps=2, step_size=0.1, clamp=(-1, 1)),
                       observed, known, init=start, train=TrainConfig(n_iterations=2),
                       average_last=1, n_chains=1, generator=gen(2)).recovered

    assert torch.equal(run(init.double()), run(init))


def test_holdout_is_restored_and_selects_the_start_when_nothing_beats_it() -> None:
    """A start that is exact on the held-out entries cannot be beaten there: the result is the
    start itself (``selected_iteration == -1``), with every observed entry in place."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    holdout = holdout_like(known, fraction=0.5, generator=gen(4))
    assert holdout.any() and not (holdout & ~known).any()
    observed = torch.where(known, truth, float("nan"))  # missing values are never read
    init = torch.where(known, truth, 0.0)  # held-out entries exact
    result = recover(
        tiny_energy(), Langevin(n_steps=3, step_size=0.1, clamp=(-1, 1)), observed, known,
        init=init, train=TrainConfig(n_iterations=4), warmup=1, average_last=2, n_chains=1,
        holdout=holdout,
        generator=gen(2),
    )
    assert result.selected_iteration == -1
    assert torch.equal(result.recovered, init)
    assert all("holdout_error" in record for record in result.history)


def test_select_repeats_a_choice_as_the_holdout_makes_it() -> None:
    """``select=k`` returns the running estimate of iteration k, the one a holdout choosing k
    returns: the completion itself before the averaging starts, the average of the completions
    since then after; -1 the start; the last iteration the plain result, bit for bit."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    init = torch.where(known, observed, 0.1)

    def run(**kwargs):
        torch.manual_seed(0)  # the same energy for every run
        return recover(tiny_energy(), Langevin(n_steps=2, step_size=0.1), observed, known,
                       init=init, train=TrainConfig(n_iterations=5), warmup=1, average_last=2,
                       n_chains=1, generator=gen(2), **kwargs)

    completions = []
    completion = CompletionChain(Langevin(n_steps=2, step_size=0.1))
    original = completion.move

    def recording(*args, **kwargs):
        completions.append(original(*args, **kwargs)[0])
        return completions[-1][None]

    object.__setattr__(completion, "move", recording)
    plain = run(completion=completion)
    assert len(completions) == 4  # iterations 1-4 move it (warm-up 1)
    assert torch.equal(run(select=4).recovered, plain.recovered)
    assert torch.equal(run(select=3).recovered, completions[2])  # iteration 3 averages itself
    assert torch.equal(run(select=2).recovered, completions[1])  # before the averaging: itself
    assert torch.equal(run(select=-1).recovered, init)
    assert run(select=2).selected_iteration == 2
    holdout = holdout_like(known, generator=gen(4))
    for select, kwargs in ((0, {}), (5, {}), (2, {"holdout": holdout})):
        with pytest.raises(ValueError, match="select must be -1 or an iteration in"):
            run(select=select, **kwargs)


def test_holdout_like_borrows_the_missing_pattern() -> None:
    known = missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    holdout = holdout_like(known, fraction=1.0, shift=1, generator=gen(0))
    assert holdout.shape == known.shape and not (holdout & ~known).any()
    frames = holdout.any(dim=(1, 2))
    assert torch.equal(frames, ~known.all(dim=(1, 2)).roll(1) & known.all(dim=(1, 2)))
    assert holdout[frames].all()  # whole frames, like the mask's own missing frames
    for fraction in (0.0, 1.5, "0.5", True):  # a string failed in a comparison, True was 1
        with pytest.raises(ValueError, match=rf"fraction must be in \(0, 1\], got {fraction!r}"):
            holdout_like(known, fraction=fraction)
    # A 0-d tensor passes the check as the number it holds: it failed after it, in round().
    assert torch.equal(holdout_like(known, fraction=torch.tensor(0.5), generator=gen(0)),
                       holdout_like(known, fraction=0.5, generator=gen(0)))
    with pytest.raises(ValueError, match="bool"):
        holdout_like(known.float())
    with pytest.raises(ValueError, match=r"bool tensor \(True = observed\), got ndarray"):
        holdout_like(known.numpy())
    # The messages name what the user can change (there is no "shift" option in a config).
    with pytest.raises(ValueError, match="no entry observed"):
        holdout_like(torch.zeros_like(known))
    with pytest.raises(ValueError, match="hides no entry"):
        holdout_like(torch.ones_like(known))
    mostly_missing = torch.zeros_like(known)
    mostly_missing[:, : H // 4] = True  # the same rows missing in every frame, 3/4 of them
    with pytest.raises(ValueError, match="any shift in time or space.*recovery.holdout: 0"):
        holdout_like(mostly_missing)
    for shift in (1.5, (1,), (1, 2, 3), (0.5, 1)):
        with pytest.raises(ValueError, match="shift must be"):
            holdout_like(known, shift=shift)
    # Time is dim -3: a (C, T, D, H, W) mask would be read with D as time.
    with pytest.raises(ValueError, match=r"\(T, H, W\) or \(C, T, H, W\)"):
        holdout_like(known[None, None].expand(1, 2, T, H, W))


@pytest.mark.parametrize("frames", [8, 12])
def test_holdout_like_takes_a_shift_that_hides_something(frames) -> None:
    """Every other frame missing (a frame rate to double) with T // 2 even: the pattern moved by
    T // 2 lands on missing frames only, so the default shift is the nearest one that hides
    observed frames (it was refused, telling the user to turn the hold-out off)."""
    known = torch.ones(frames, H, W, dtype=torch.bool)
    known[1::2] = False
    holdout = holdout_like(known, fraction=0.3, generator=gen(0))
    held_frames = holdout.any(dim=(1, 2))
    assert held_frames.any() and not (holdout & ~known).any()
    assert holdout[held_frames].all()  # whole frames, like the missing ones
    eligible = frames // 2  # every observed (even) frame lies under a moved missing one
    assert held_frames.sum() == max(1, round(0.3 * eligible))
    with pytest.raises(ValueError, match="moved by 2 frames"):
        holdout_like(known, shift=2)


def fixed_block(top: int = 3, left: int = 4, side: int = 3) -> torch.Tensor:
    """``known`` ``(T, H, W)``: one ``side`` x ``side`` block missing, the same in every frame
    (a fixed occluder)."""
    known = torch.ones(T, H, W, dtype=torch.bool)
    known[:, top:top + side, left:left + side] = False
    return known


def test_spatial_shifts_move_a_fixed_occluder_onto_observed_pixels() -> None:
    """Every offset listed moves at least 90% of the block inside the frame onto observed
    pixels, and every whole-pixel offset that moves all of it so is listed (a 12-pixel frame
    has far fewer offsets than the list's limit)."""
    known = fixed_block()
    missing = ~known[0]
    offsets = spatial_shifts(known)
    assert offsets == spatial_shifts(known.expand(3, T, H, W))  # channels that agree
    for dy in range(-H + 1, H):
        for dx in range(-W + 1, W):
            landed = int((shifted_in_frame(missing, (dy, dx)) & ~missing).sum())
            assert ((dy, dx) in offsets) == (landed >= 0.9 * 9), (dy, dx, landed)
    assert (0, 3) in offsets and (0, 2) not in offsets and (-3, 0) in offsets
    assert (-4, 0) not in offsets  # 1 row of 3 moved past the top edge: 6 of 9 land
    moving = known.clone()
    moving[1] = fixed_block(top=7, left=8)[1]  # one frame's block elsewhere: no longer fixed
    assert spatial_shifts(moving) == []
    # Moved by 2 rows, the block keeps one row missing in every frame: that row is the fixed
    # occluder, which moves as it would alone.
    moving[1] = fixed_block(top=5)[1]
    assert spatial_shifts(moving) == spatial_shifts(fixed_block(top=5) | known)
    assert spatial_shifts(fixed_block(0, 0, side=10)) == []  # 100 of 144 missing
    assert spatial_shifts(torch.ones_like(known)) == []


def test_spatial_shifts_find_the_odd_rows_that_move_every_other_row_onto_observed_ones() -> None:
    """Interlacing on a frame of 66 rows: every other row missing. Only an odd number of rows
    moves them onto observed ones (a column moves 3/4 of them): -5 to 7, where at most 3 of
    the 33 rows leave the frame. Offsets tried on a grid of every other row (a frame over 64
    rows) found none and refused the mask as covering too much of the frame."""
    known = torch.ones(2, 66, 4, dtype=torch.bool)
    known[:, ::2] = False
    assert spatial_shifts(known) == [(-5, 0), (-3, 0), (-1, 0), (1, 0), (3, 0), (5, 0), (7, 0)]


def test_spatial_shifts_list_at_most_their_limit_evenly_spaced(monkeypatch) -> None:
    """One pixel missing at the top left of a 4 x 4 frame: 15 offsets move it onto an observed
    one, (0, 1) to (3, 3) in row-major order; a limit of 4 keeps every 4th of them."""
    known = torch.ones(1, 4, 4, dtype=torch.bool)
    known[:, 0, 0] = False
    monkeypatch.setattr(recovery, "SPATIAL_SHIFT_LIMIT", 4)
    assert spatial_shifts(known) == [(0, 1), (1, 1), (2, 1), (3, 1)]


def test_a_fixed_occluder_beside_missing_frames_is_held_out_too() -> None:
    """A logo in every frame and whole frames missing: the default hold-out hides observed
    frames (the missing frames moved in time) and the logo moved within the frame, in every
    frame. Held out in time alone, the logo's pixels were never scored: the learned fill that
    had never learned them (60 grey levels off on a waving flag, neighbour averaging 20) won."""
    known = fixed_block()
    known[[2, 7]] = False
    holdout = holdout_like(known, fraction=0.5, generator=gen(0))
    assert not (holdout & ~known).any()
    logo = ~fixed_block()[0]
    beside = holdout & ~holdout.all(dim=(1, 2), keepdim=True)  # the frames not held out whole
    moved = beside[0]
    assert moved.sum() == logo.sum() and not (moved & logo).any()  # the logo's shape, moved
    held_frames = [t for t in range(T) if (holdout[t] | ~known[t]).all()]
    assert len(held_frames) > 2  # observed frames held out whole, besides the missing two
    for t in range(T):
        if t not in held_frames:
            assert torch.equal(holdout[t], moved)  # in every frame, as the logo is
    # Each shift alone holds out its own kind: a time shift leaves the logo where no frame
    # shows it (nothing to hold out there), an offset moves the logo only.
    assert not holdout_like(known, shift=5, fraction=1.0)[:, logo].any()
    by_offset = holdout_like(known, shift=(0, 3))
    assert torch.equal(by_offset, shifted_in_frame(logo, (0, 3)).expand(T, H, W) & known)
    # An offset for a mask that hides no entry in every frame (a block moving from frame to
    # frame) was refused as if the block moved by it covered no observed entry.
    moving = fixed_block()
    moving[1] = fixed_block(top=7, left=8)[1]
    with pytest.raises(ValueError, match=r"^an offset \(dy, dx\) moves the entries the mask hides "
                                         r"in every frame, and this one hides none in every "
                                         r"frame: give a shift in time"):
        holdout_like(moving, shift=(0, 3))


def test_a_fixed_occluder_of_each_channel_its_own_moves_within_the_frame() -> None:
    """Two channels with blocks in different places, the third all observed, each the same in
    every frame: offsets move 90% of the channels' missing pixels together onto observed ones,
    and the hold-out is each channel's block moved. Channels that differ were taken for a mask
    that changes and refused as covering too much of the frame."""
    known = torch.ones(3, T, H, W, dtype=torch.bool)
    known[0], known[1] = fixed_block(), fixed_block(top=7, left=7, side=4)
    missing = ~known[:, 0]
    offsets = spatial_shifts(known)
    for dy in range(-H + 1, H):
        for dx in range(-W + 1, W):
            landed = int((shifted_in_frame(missing, (dy, dx)) & ~missing).sum())
            assert ((dy, dx) in offsets) == (landed >= 0.9 * (9 + 16)), (dy, dx, landed)
    assert (0, -4) in offsets and (0, -3) not in offsets  # one column of 4 still on its block
    holdout = holdout_like(known, fraction=1.0, generator=gen(0))
    assert holdout[0].any() and holdout[1].any() and not holdout[2].any()
    assert not (holdout & ~known).any()


def test_an_occluder_and_a_hold_out_in_its_shape_still_move() -> None:
    """What the learned fill trains under with a holdout: the occluder and its moved copy, which
    move together. No offset keeps both inside the frame and off each other (it needed 90% of
    both: refused, `stgconv recover --mask fixed_region:20 --size 64` among them), but moving
    one of them whole onto observed pixels is as near the occluder's shape as they come."""
    known = fixed_block(0, 0, side=6)
    known[:, 6:, 6:] = False  # the hold-out, in the opposite corner
    offsets = spatial_shifts(known)
    assert (0, 6) in offsets and (6, 0) in offsets  # the first block moved right, or down
    missing = ~known[0]
    for offset in offsets:
        landed = int((shifted_in_frame(missing, offset) & ~missing).sum())
        assert landed >= 0.9 * 36, (offset, landed)


def test_shifted_in_frame_drops_what_leaves_the_frame() -> None:
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = mask[:, 3, 3] = True
    moved = shifted_in_frame(mask, (1, 1))
    assert moved[:, 1, 1].all() and int(moved.sum()) == 2  # (3, 3) left the frame
    assert not shifted_in_frame(mask, (4, 0)).any()
    assert torch.equal(shifted_in_frame(mask, (0, 0)), mask)


def test_holdout_like_moves_a_fixed_occluder_within_the_frame() -> None:
    """A mask the same in every frame has no time shift: the held-out pixels are the block
    moved to observed pixels of the same frame (drawn by the generator), in every frame as the
    block is, whatever ``fraction`` (held out in some frames only, temporal interpolation
    filled them exactly from the others and won the holdout); an offset given is taken as
    is."""
    known = fixed_block()
    holdout = holdout_like(known, fraction=0.25, generator=gen(0))
    assert not (holdout & ~known).any()
    block = holdout[0]
    assert int(block.sum()) >= 0.9 * 9 and torch.equal(holdout, block.expand(T, H, W))
    rows, cols = block.nonzero().unbind(1)  # one block of at most 3 x 3
    assert int(rows.max() - rows.min()) <= 2 and int(cols.max() - cols.min()) <= 2
    observed = torch.where(known, moving_sinusoid(), 0.0)
    temporal = temporal_interpolation(observed, known & ~holdout)[0]
    observed = observed[0]
    assert not torch.equal(temporal[holdout], observed[holdout])  # no frame shows them
    draws = {tuple(holdout_like(known, generator=gen(seed)).any(0).nonzero()[0].tolist())
             for seed in range(6)}
    assert len(draws) > 1  # not always the same place
    given = holdout_like(known, fraction=1.0, shift=(0, 3))
    assert torch.equal(given, shifted_in_frame(~known, (0, 3)))
    with pytest.raises(ValueError, match=r"moved by \(0, 12\) pixels"):
        holdout_like(known, shift=(0, 12))  # past the frame's edge


def test_holdout_like_holds_out_at_least_one_frame_of_a_small_fraction() -> None:
    """0.1 of 4 eligible frames rounds to none: it takes one (an empty holdout was refused by
    recover as marking no entry)."""
    known = missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    holdout = holdout_like(known, fraction=0.1, shift=1, generator=gen(0))
    assert holdout.any(dim=(1, 2)).sum() == 1


def test_holdout_like_draws_its_frames_at_random() -> None:
    """One of 4 eligible frames, drawn by the generator: not always the first."""
    known = missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    draws = {tuple(holdout_like(known, fraction=0.25, shift=1, generator=gen(seed))
                   .any(dim=(1, 2)).nonzero().flatten().tolist()) for seed in range(8)}
    assert len(draws) > 1 and all(len(frames) == 1 for frames in draws)


def test_holdout_like_takes_the_hiding_shift_nearest_half_the_clip() -> None:
    """Frames 1, 2, 5, 6 of 8 missing: moved by 4 they land on missing frames only; moved by 3
    (the nearest, the smaller of 3 and 5) they hide frames 0 and 4, moved by 1 frames 3 and
    7."""
    known = torch.ones(8, H, W, dtype=torch.bool)
    known[[1, 2, 5, 6]] = False
    for seed in range(4):
        holdout = holdout_like(known, fraction=1.0, generator=gen(seed))
        assert holdout.any(dim=(1, 2)).nonzero().flatten().tolist() == [0, 4]


def test_interpolation_spread() -> None:
    """|x[b] - x[a]| between the observed ends; the typical spread where only one end exists;
    zero at observed entries."""
    video = torch.tensor([0.0, 9.0, 0.5, 9.0, 0.5, 9.0]).view(1, 6, 1, 1)
    known = torch.tensor([True, False, True, False, False, True]).view(1, 6, 1, 1)
    spread = interpolation_spread(video, known).flatten().tolist()
    assert spread == pytest.approx([0.0, 0.5, 0.0, 8.5, 8.5, 0.0])
    known = torch.tensor([False, True, False, True, False, False]).view(1, 6, 1, 1)
    video = torch.tensor([9.0, 0.0, 9.0, 0.4, 9.0, 9.0]).view(1, 6, 1, 1)
    spread = interpolation_spread(video, known).flatten().tolist()
    assert spread == pytest.approx([0.4, 0.0, 0.4, 0.0, 0.4, 0.4])
    # No two-ended entry at all: the one-ended ones get 1, there being no typical spread.
    known = torch.tensor([False, True, False]).view(1, 3, 1, 1)
    spread = interpolation_spread(torch.tensor([9.0, 0.2, 9.0]).view(1, 3, 1, 1), known)
    assert spread.flatten().tolist() == [1.0, 0.0, 1.0]


def test_the_spreads_name_a_non_finite_observed_value() -> None:
    """A NaN or an infinity at an observed entry came back as non-finite spreads without a
    word (a step scale recover then refused as 'step_scale must be finite'); at a missing
    entry it is never read."""
    known = torch.tensor([True, False, True, False, False, True]).view(1, 6, 1, 1)
    video = torch.tensor([0.0, 9.0, 0.5, 9.0, 0.5, 9.0]).view(1, 6, 1, 1)
    assert torch.equal(interpolation_spread(video.masked_fill(~known, math.nan), known),
                       interpolation_spread(video, known))
    for bad in (math.nan, math.inf):
        for spread in (interpolation_spread, spread_step_scale):
            with pytest.raises(ValueError, match="^observed has NaN or infinite values at "
                                                 "observed entries"):
                spread(video.masked_fill(known, bad), known)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_spread_step_scale_is_the_spread_at_unit_rms_over_the_missing_entries(power) -> None:
    """The spread (0.5, 8.5, 8.5 at the missing entries, as above) to ``power``, divided by its
    root mean square there; 0 at observed entries; a (T, H, W) mask as its expanded self."""
    video = torch.tensor([0.0, 9.0, 0.5, 9.0, 0.5, 9.0]).view(1, 6, 1, 1).expand(2, 6, 1, 1)
    known = torch.tensor([True, False, True, False, False, True]).view(6, 1, 1)
    scale = spread_step_scale(video, known, power=power)
    assert scale.shape == (2, 6, 1, 1)
    spread = torch.tensor([0.0, 0.5, 0.0, 8.5, 8.5, 0.0]) ** power
    rms = math.sqrt((0.5 ** (2 * power) + 2 * 8.5 ** (2 * power)) / 3)
    for channel in scale:
        assert channel.flatten().tolist() == pytest.approx((spread / rms).tolist())
    assert torch.equal(scale, spread_step_scale(video, known.expand(2, 6, 1, 1), power=power))


def test_spread_step_scale_takes_the_spread_to_the_power_one_by_default() -> None:
    video = torch.tensor([0.0, 9.0, 0.5, 9.0, 0.5, 9.0]).view(1, 6, 1, 1)
    known = torch.tensor([True, False, True, False, False, True]).view(6, 1, 1)
    assert torch.equal(spread_step_scale(video, known),
                       spread_step_scale(video, known, power=1.0))


def test_spread_step_scale_of_a_still_clip_is_zero_not_nan() -> None:
    """Every missing entry's ends agree: interpolation is exact, nothing moves (0 / 0 was NaN
    where the RMS was divided by without a check)."""
    still = torch.ones(1, 5, 2, 2)
    known = torch.tensor([True, False, True, False, True]).view(5, 1, 1)
    assert torch.equal(spread_step_scale(still, known), torch.zeros(1, 5, 2, 2))


def test_spread_step_scale_of_power_zero_is_one_everywhere() -> None:
    """``power`` 0, which the config allows, is the plain sampler: every entry's spread to the
    power 0 is 1 (observed ones too, 0 ** 0), already at unit RMS."""
    video = torch.tensor([0.0, 9.0, 0.5, 9.0, 0.5, 9.0]).view(1, 6, 1, 1)
    known = torch.tensor([True, False, True, False, False, True]).view(6, 1, 1)
    assert torch.equal(spread_step_scale(video, known, power=0.0), torch.ones(1, 6, 1, 1))


@pytest.mark.parametrize("observed, known, power, match", [
    (torch.zeros(1, 3, 2), torch.ones(3, 2, dtype=torch.bool), -1.0, "power must be a finite"),
    (torch.zeros(1, 3, 2), torch.ones(3, 2, dtype=torch.bool), math.nan, "power must be a finite"),
    (torch.zeros(1, 3, 2), torch.ones(3, 2, dtype=torch.bool), math.inf, "power must be a finite"),
    (torch.zeros(1, 3, 2), torch.ones(3, 2), 1.0, "known"),
    (torch.zeros(1, 3, 2), torch.ones(4, 2, dtype=torch.bool), 1.0, "known"),
    (torch.zeros(3), torch.ones(3, dtype=torch.bool), 1.0, r"observed must be \(C, T, ...\)"),
])
def test_spread_step_scale_refuses_bad_input_naming_it(observed, known, power, match) -> None:
    with pytest.raises(ValueError, match=match):
        spread_step_scale(observed, known, power=power)


@pytest.mark.parametrize("step_scale", [0.5, [1.0]])
def test_a_step_scale_that_is_no_tensor_is_refused_when_the_chain_is_made(step_scale) -> None:
    """It failed only inside recover ("'float' object has no attribute 'to'")."""
    with pytest.raises(ValueError, match=r"^step_scale must be a tensor or None, got "
                                         r"(float 0.5|list \[1.0\]) \(for one scale"):
        CompletionChain(Langevin(), step_scale=step_scale)


def test_a_completion_clamp_of_no_range_is_refused() -> None:
    """torch's clamp with low >= high set every entry to high without a word."""
    with pytest.raises(ValueError, match=r"clamp must be \(low, high\), two real numbers"):
        CompletionChain(Langevin(), step_scale=torch.ones(1), clamp=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"clamp must be \(low, high\), two real numbers"):
        CompletionChain(Langevin(), step_scale=torch.ones(1), clamp=(1.0, 1.0))
    # A third bound failed only after the chain's run, in torch's clamp.
    with pytest.raises(ValueError, match=r"clamp must be \(low, high\), two real numbers"):
        CompletionChain(Langevin(), step_scale=torch.ones(1), clamp=(-1.0, 0.0, 1.0))
    # Bounds of a tensor's own range (clamp=(x.min(), x.max())) are taken, as torch takes them.
    bounds = torch.tensor([-1.0, 1.0])
    assert CompletionChain(Langevin(), step_scale=torch.ones(1),
                           clamp=(bounds.min(), bounds.max())).clamp == (bounds[0], bounds[1])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"known": torch.ones(1, T, H, W)}, "bool"),
        ({"known": torch.zeros(1, T, H, W, dtype=torch.bool)}, "nothing is observed"),
        ({"known": torch.ones(1, T + 1, H, W, dtype=torch.bool)}, "broadcast"),
        ({"average_last": 0}, "average_last"),
        ({"average_last": 5}, "average_last"),
        # "warmup must": the average_last message names warmup too ("n_iterations - warmup").
        ({"warmup": 4}, r"warmup must be in \[0, n_iterations\)"),
        ({"warmup": -1}, r"warmup must be in \[0, n_iterations\)"),
        ({"warmup": 2, "average_last": 3}, "average_last"),
        ({"init": torch.zeros(1, T, H, W + 1)}, "init"),
        ({"init": torch.full((1, T, H, W), float("nan"))}, "init"),
        ({"n_chains": 0}, "n_chains"),
        ({"observed": torch.full((1, T, H, W), float("nan"))}, "observed"),
        # A clip as a file holds it failed naming the chains' noise, not observed.
        ({"observed": torch.zeros(1, T, H, W, dtype=torch.uint8)},
         r"observed must be floating point, got torch.uint8"),
        # A clip from numpy beside a float32 net was named "data" (the completion the trainer
        # learns from), and the net's own check would have said "x".
        ({"observed": torch.zeros(1, T, H, W, dtype=torch.float64)},
         r"^expected observed of dtype torch.float32 \(the network's\), got torch.float64"),
        ({"completion": CompletionChain(Langevin(), step_scale=-torch.ones(1, T, H, W))},
         rf"step_scale must be finite and >= 0; {T * H * W} of {T * H * W} entries are not "
         r"\(e.g. -1.0\)"),
        ({"completion": CompletionChain(Langevin(), step_scale=torch.full((1, T, H, W), math.inf))},
         rf"step_scale must be finite and >= 0; {T * H * W} of {T * H * W} entries are not "
         r"\(e.g. inf\)"),
        ({"completion": CompletionChain(Langevin(), step_scale=torch.ones(1, T, H + 1, W))},
         "step_scale"),
        ({"holdout": torch.ones(1, T, H, W, dtype=torch.bool)}, "holdout"),
        ({"holdout": torch.zeros(1, T, H, W, dtype=torch.bool)}, "holdout"),
        # The holdout is the whole of known (the same mask as the arguments' known).
        ({"holdout": salt_and_pepper(T, H, W, fraction=0.3, generator=gen(0))},
         "holdout covers every observed entry"),
        ({"generator": 0}, "recover: generator must be a torch.Generator"),
        # Shapes without values failed inside torch ("Cannot copy out of meta tensor; no
        # data!", "Tensor.item() cannot be called on meta tensors").
        ({"observed": torch.zeros(1, T, H, W, device="meta")}, "^observed is on the meta"),
        ({"known": torch.ones(T, H, W, dtype=torch.bool, device="meta")}, "^known is on the meta"),
        ({"init": torch.zeros(1, T, H, W, device="meta")}, "^init is on the meta"),
        ({"holdout": torch.ones(T, H, W, dtype=torch.bool, device="meta")},
         "^holdout is on the meta"),
        # 1.5 failed in range() naming no argument; True was taken as iteration 1.
        ({"select": 1.5}, r"select must be -1 or an iteration .* got 1.5"),
        ({"select": True}, r"select must be -1 or an iteration .* got True"),
    ],
)
def test_bad_input_raises_value_error(change: dict, match: str) -> None:
    arguments = {
        "observed": torch.zeros(1, T, H, W),
        "known": salt_and_pepper(T, H, W, fraction=0.3, generator=gen(0)),
        "train": TrainConfig(n_iterations=4),
        "average_last": 2,
        "n_chains": 1,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), **arguments)


def test_interpolation_spread_gives_one_ended_entries_the_rms_spread() -> None:
    """Two-ended spreads 1 and 3: one-ended entries get their rms, sqrt((1 + 9) / 2), not the
    largest, 3."""
    observed = torch.tensor([[0.0, 0.0], [9.0, 9.0], [1.0, 3.0], [9.0, 9.0]]).view(1, 4, 1, 2)
    known = torch.tensor([True, False, True, False]).view(1, 4, 1, 1).expand(1, 4, 1, 2)
    spread = interpolation_spread(observed, known)
    torch.testing.assert_close(spread[0, 1, 0], torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(spread[0, 3, 0], torch.full((2,), 5.0 ** 0.5))


def test_completion_clamp_bounds_the_moves_and_keeps_observed_entries() -> None:
    """Observed values outside the clamp stay, restored after it; moved entries are clamped:
    pulled towards 5, they stop at its upper bound 0.1."""
    start = torch.tensor([0.5, -0.8, 0.0, 0.0]).view(1, 1, 4)
    known = torch.tensor([True, True, False, False]).view(1, 1, 4)
    chain = CompletionChain(Langevin(n_steps=5, step_size=0.5, noise_scale=0.0),
                            step_scale=torch.ones(1, 1, 4), clamp=(-0.1, 0.1))

    def pull_to_five(x: torch.Tensor) -> torch.Tensor:
        return (x - 5).pow(2).flatten(1).sum(1)

    moved = chain.move(pull_to_five, start, KnownEntries(start, known), generator=gen(0))
    assert torch.equal(moved[known], start[known])
    assert torch.equal(moved[~known], torch.full((2,), 0.1))


@pytest.mark.parametrize("name", ["langevin", "mala", "hmc"])
def test_a_preconditioned_completion_is_projected_before_its_first_energy(name: str) -> None:
    """A completion off the constraint (a caller's own fill of the whole clip) given to a
    step-scaled chain: the chain moves ``completion + scale * z`` with ``z`` held at 0 on the
    known entries, so every state the energy saw kept the fill's values there, not the
    observed ones, and only the result was projected. Without a step scale the sampler
    projects its start itself."""
    samplers = {"langevin": Langevin(n_steps=2, step_size=0.1),
                "mala": MALA(n_steps=2, step_size=0.1),
                "hmc": HMC(n_steps=2, step_size=0.1, n_leapfrog=2)}
    observed = torch.randn(1, 2, 4, 4, generator=gen(0), dtype=torch.float64)
    known = torch.rand(1, 2, 4, 4, generator=gen(1)) < 0.5
    constraint = KnownEntries(observed, known)
    fill = torch.zeros_like(observed)  # off the constraint at every known entry
    seen = []

    def energy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return x.pow(2).flatten(1).sum(1)

    for step_scale in (None, torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)):
        seen.clear()
        chain = CompletionChain(samplers[name], step_scale=step_scale)
        moved = chain.move(energy, fill, constraint, generator=gen(2))
        assert seen and torch.equal(moved[known], observed[known])
        for k, state in enumerate(seen):
            assert torch.equal(state[known], observed[known]), f"evaluation {k} is off it"


def recording_chain(completions: list) -> CompletionChain:
    chain = CompletionChain(Langevin(n_steps=2, step_size=0.1))
    original = chain.move

    def recording(*args, **kwargs):
        completions.append(original(*args, **kwargs))
        return completions[-1]

    object.__setattr__(chain, "move", recording)
    return chain


def test_the_result_averages_exactly_the_last_average_last_completions() -> None:
    """average_last=3 of 4 iterations averages the last 3 completions, not 2: the first
    iteration of the average counts."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    completions: list = []
    result = recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                     train=TrainConfig(n_iterations=4), average_last=3, n_chains=1,
                     completion=recording_chain(completions), generator=gen(2))
    torch.testing.assert_close(result.recovered, sum(completions[1:])[0] / 3)


def test_holdout_scores_the_running_average_and_restores_held_out_entries() -> None:
    """Holdout errors are those of the running average, not of the last completion, and
    held-out entries come back observed even when ``init`` is wrong there: restored from
    ``known``, not ``visible``."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    known = known.expand_as(truth)
    holdout = torch.zeros_like(known)
    holdout[:, 0, :3] = True  # part of an observed end frame
    init = torch.where(known & ~holdout, truth, 0.0)
    completions: list = []
    result = recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                     init=init, train=TrainConfig(n_iterations=3), average_last=3, n_chains=1,
                     holdout=holdout, completion=recording_chain(completions), generator=gen(2))
    for i, record in enumerate(result.history):
        mean = sum(completions[: i + 1])[0] / (i + 1)
        error = (mean[holdout] - truth[holdout]).abs().mean().item()
        assert record["holdout_error"] == pytest.approx(error, rel=1e-6)
    assert torch.equal(result.recovered[known], truth[known])


class Still(Langevin):
    """A chain that never moves: it returns its start, projected."""

    def run(self, energy, x0, *, constraint=None, generator=None, callback=None):
        return constraint.project(x0.clone())


def test_holdout_keeps_the_earliest_estimate_on_ties() -> None:
    """A completion that never moves ties with the start every iteration: the start is kept
    (only a strictly lower held-out error replaces it)."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    known = known.expand_as(truth)
    holdout = torch.zeros_like(known)
    holdout[:, 0, :3] = True
    result = recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                     init=torch.where(known & ~holdout, truth, 0.0),
                     train=TrainConfig(n_iterations=3), average_last=2, n_chains=1,
                     holdout=holdout, completion=CompletionChain(Still(n_steps=1)),
                     generator=gen(2))
    assert result.selected_iteration == -1


def test_a_holdout_outside_known_is_refused() -> None:
    """A holdout hides observed entries, so it must lie within ``known``: one outside it is
    refused by name, not run to the end."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    with pytest.raises(ValueError, match="subset of known"):
        recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                holdout=~known, generator=gen(2))


def test_interpolation_spread_is_the_size_of_a_falling_change_too() -> None:
    """The spread is ``|x[b] - x[a]|``: a value that falls between the observed ends spreads as
    much as one that rises (a signed difference would be a negative step scale)."""
    video = torch.tensor([0.5, 9.0, 0.0, 9.0, 0.7]).view(1, 5, 1, 1)
    known = torch.tensor([True, False, True, False, True]).view(1, 5, 1, 1)
    spread = interpolation_spread(video, known).flatten().tolist()
    assert spread == pytest.approx([0.0, 0.5, 0.0, 0.7, 0.0])


def test_the_default_start_with_a_holdout_is_the_mean_of_the_visible_entries() -> None:
    """Without an ``init``, the start fills the missing and held-out entries with the mean of the
    entries the loop sees: the held-out values must not leak into the start that they score."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    known = known.expand_as(truth)
    holdout = torch.zeros_like(known)
    holdout[:, 0, :6] = True  # half of an observed end frame
    observed = torch.where(holdout, 0.9, truth)  # held-out values far from the rest
    result = recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), observed, known,
                     train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                     holdout=holdout, completion=CompletionChain(Still(n_steps=1)),
                     generator=gen(2))
    assert result.selected_iteration == -1  # nothing moves: the start is kept
    visible_mean = observed[known & ~holdout].mean()
    torch.testing.assert_close(result.recovered[~known],
                               visible_mean.expand(int((~known).sum())))
    assert torch.equal(result.recovered[known], observed[known])


def test_the_start_takes_the_observed_values_whatever_init_holds_there() -> None:
    """``init`` only fills the missing entries: its values at observed entries are replaced by
    the observed ones before the model learns from the start (during the warm-up too)."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    observed = torch.where(known, truth, 0.0)
    init = torch.where(known, observed, 0.1)

    def run(start: torch.Tensor) -> torch.Tensor:
        return recover(tiny_energy(), Langevin(n_steps=2, step_size=0.1), observed, known,
                       init=start, train=TrainConfig(n_iterations=3), warmup=2, average_last=1,
                       n_chains=1, generator=gen(2)).recovered

    assert torch.equal(run(torch.where(known, 0.9, init)), run(init))


def test_a_preconditioned_chain_sees_the_observed_values_at_known_entries() -> None:
    """With a step scale that is not 0 at the known entries, the chain on ``z`` still evaluates
    the energy at the observed values there (``z = 0``): a missing entry pulled towards an
    observed one ends at that observed value."""
    start = torch.tensor([0.5, -0.8, 0.0, 0.0]).view(1, 1, 4)
    known = torch.tensor([True, True, False, False]).view(1, 1, 4)
    chain = CompletionChain(Langevin(n_steps=200, step_size=0.5, noise_scale=0.0),
                            step_scale=torch.ones(1, 1, 4))

    def pull_to_observed(x: torch.Tensor) -> torch.Tensor:  # entry 2 -> entry 0, 3 -> 1
        return ((x[..., 2] - x[..., 0]).pow(2) + (x[..., 3] - x[..., 1]).pow(2)).flatten(1).sum(1)

    moved = chain.move(pull_to_observed, start, KnownEntries(start, known), generator=gen(0))
    assert torch.equal(moved[known], start[known])
    torch.testing.assert_close(moved[~known], torch.tensor([0.5, -0.8]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("sampler", [MALA(n_steps=3, step_size=0.8),
                                     HMC(n_steps=2, step_size=0.6, n_leapfrog=3)],
                         ids=["mala", "hmc"])
def test_an_exact_preconditioned_chain_keeps_the_target_law(sampler) -> None:
    """``x = start + scale * z`` has a constant Jacobian, so an exact sampler on ``z`` is an exact
    (preconditioned) kernel for ``exp(-E(x))`` itself: completions that start as draws of an
    independent Gaussian ``N(mu_i, s_i^2)`` per entry are still such draws after the move,
    whatever the per-entry scales. Bounds: 5 standard errors of the target's values."""
    n = 20_000
    mu = torch.tensor([0.3, -0.5, 1.0, 0.2], dtype=torch.float64)
    s = torch.tensor([1.0, 0.8, 1.5, 0.6], dtype=torch.float64)
    scale = torch.tensor([1.0, 1.6, 0.5, 1.2], dtype=torch.float64).view(1, 1, 4)
    known = torch.tensor([True, False, False, False]).view(1, 1, 4)
    start = mu + s * torch.randn(n, 1, 4, generator=gen(0), dtype=torch.float64)
    start = torch.where(known, mu, start)

    def energy(x: torch.Tensor) -> torch.Tensor:
        return (((x - mu) / s) ** 2 / 2).flatten(1).sum(1)

    moved = CompletionChain(sampler, step_scale=scale).move(
        energy, start, KnownEntries(start, known), generator=gen(1))
    assert torch.equal(moved[..., 0], start[..., 0])
    free = moved[:, 0, 1:]
    assert not torch.equal(free, start[:, 0, 1:])
    z_mean = (free.mean(0) - mu[1:]) / (s[1:] / math.sqrt(n))
    z_var = (free.var(0) / s[1:] ** 2 - 1) / math.sqrt(2 / n)
    assert z_mean.abs().max() < 5 and z_var.abs().max() < 5, (z_mean, z_var)


@pytest.mark.parametrize("function", [hiding_shifts, holdout_like])
@pytest.mark.parametrize(("known", "match"), [
    # Failed in ~ ("only implemented on integer and Boolean-type tensors"), with an
    # IndexError, and in bool() ("cannot be called on meta tensors").
    (torch.ones(T, H, W), r"^known must be a bool tensor \(True = observed\), got torch.float32"),
    (torch.ones(H, W, dtype=torch.bool), r"^known must be \(T, H, W\) or \(C, T, H, W\), got"),
    (torch.ones(T, H, W, dtype=torch.bool, device="meta"), "^known is on the meta device"),
])
def test_hiding_shifts_and_holdout_like_name_a_mask_they_cannot_read(function, known,
                                                                     match) -> None:
    with pytest.raises(ValueError, match=match):
        function(known)


@pytest.mark.parametrize("shift", [1.5, True])
def test_holdout_like_names_a_shift_that_is_no_number_of_frames(shift) -> None:
    """It failed in torch's roll ("argument 'shifts' must be tuple of ints")."""
    known = missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    with pytest.raises(ValueError, match=rf"^shift must be a number of frames or an offset "
                                         rf"\(dy, dx\) in pixels, got {shift}"):
        holdout_like(known, shift=shift)


def test_hiding_shifts_lists_every_shift_that_covers_an_observed_entry() -> None:
    """One missing frame of 4 lands on an observed one under every shift, the last (T - 1) too;
    every other frame missing, moved by 2 it lands on missing frames only."""
    known = torch.ones(4, 2, 2, dtype=torch.bool)
    known[0] = False
    assert hiding_shifts(known) == [1, 2, 3]
    known[2] = False
    assert hiding_shifts(known[None]) == [1, 3]


def test_the_first_iteration_after_the_warm_up_is_a_holdout_candidate() -> None:
    """A completion exact on the held-out entries at iteration ``warmup`` and worse after it:
    the holdout chooses that iteration."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    known = known.expand_as(truth)
    holdout = torch.zeros_like(known)
    holdout[:, 0, :3] = True
    moves = iter([truth, torch.zeros_like(truth)])
    chain = CompletionChain(Still(n_steps=1))

    def exact_then_zero(energy, completion, constraint, *, generator=None):
        return constraint.project(next(moves)[None])

    object.__setattr__(chain, "move", exact_then_zero)
    result = recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
                     init=torch.where(known & ~holdout, truth, 0.0),
                     train=TrainConfig(n_iterations=3), warmup=1, average_last=2, n_chains=1,
                     holdout=holdout, completion=chain, generator=gen(2))
    assert result.selected_iteration == 1


def test_a_recovery_draws_only_from_its_generator() -> None:
    """The completion chain's noise comes from ``generator`` too: the global seed changes
    nothing."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))

    def run(global_seed: int) -> torch.Tensor:
        energy = tiny_energy()
        torch.manual_seed(global_seed)
        return recover(energy, Langevin(n_steps=2, step_size=0.1), truth, known,
                       train=TrainConfig(n_iterations=2), average_last=1, n_chains=1,
                       generator=gen(2)).recovered

    assert torch.equal(run(1), run(2))


def test_a_float64_clip_recovers_in_float64() -> None:
    """The synthesis chains start in the clip's dtype, which a float64 model takes."""
    truth = moving_sinusoid().double()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    result = recover(tiny_energy().double(), Langevin(n_steps=1, step_size=0.1), truth, known,
                     train=TrainConfig(n_iterations=1), average_last=1, n_chains=1,
                     generator=gen(2))
    assert result.synthesized.dtype == torch.float64
    assert result.recovered.dtype == torch.float64


def test_a_float64_step_scale_moves_a_float32_clip_in_float32() -> None:
    """A step scale of another dtype is taken in the clip's."""
    truth = moving_sinusoid()
    known = missing_frames(T, H, W, fraction=0.5, keep_ends=True, generator=gen(1))
    chain = CompletionChain(Langevin(n_steps=1, step_size=0.1),
                            step_scale=torch.ones(1, T, H, W, dtype=torch.float64))
    recorded: list = []
    original = chain.sampler.run

    def recording(energy, x0, **kwargs):
        recorded.append(energy(x0).dtype)
        return original(energy, x0, **kwargs)

    object.__setattr__(chain.sampler, "run", recording)
    recover(tiny_energy(), Langevin(n_steps=1, step_size=0.1), truth, known,
            train=TrainConfig(n_iterations=1), average_last=1, n_chains=1, completion=chain,
            generator=gen(2))
    assert recorded == [torch.float32]


def test_a_completion_chain_given_a_seed_names_itself() -> None:
    start = torch.zeros(1, 1, 2)
    constraint = KnownEntries(start, torch.tensor([True, False]).view(1, 1, 2))
    with pytest.raises(ValueError, match="CompletionChain.move: generator must be"):
        CompletionChain(Langevin(n_steps=1)).move(lambda x: x.flatten(1).sum(1), start,
                                                  constraint, generator=0)


def test_a_preconditioned_completion_draws_its_noise_from_the_generator_alone() -> None:
    """With a step scale the chain runs on z; its noise comes from ``generator`` too: the
    global seed changes nothing, the generator's seed does."""
    start = torch.zeros(1, 1, 4)
    constraint = KnownEntries(start, torch.tensor([True, False, False, False]).view(1, 1, 4))
    chain = CompletionChain(Langevin(n_steps=2, step_size=0.5), step_scale=torch.ones(1, 1, 4))
    moves = []
    for global_seed, seed in ((0, 3), (1, 3), (0, 4)):
        torch.manual_seed(global_seed)
        moves.append(chain.move(lambda x: x.pow(2).flatten(1).sum(1), start, constraint,
                                generator=gen(seed)))
    assert torch.equal(moves[0], moves[1]) and not torch.equal(moves[0], moves[2])


@pytest.mark.parametrize("schedule, message", [
    ((0, 1, 0, 1), "^iterations must be >= 1, got 0"),
    ((2, 0, 0, 1), "^chains must be >= 1, got 0"),
    ((2, 1, 2, 1), r"^warm must be in \[0, iterations\) = \[0, 2\), got 2"),
    ((2, 1, 1, 2), r"^last must be in \[1, iterations - warm\] = \[1, 1\], got 2"),
    ((2, 1, 0.5, 1), "^warm must be an int, got 0.5"),
    ((3, 1, 0, 1.5), "^last must be an int, got 1.5"),
    ((3, True, 0, 1), "^chains must be an int, got True"),
])
def test_check_schedule_names_each_bad_value_as_the_caller_calls_it(schedule, message) -> None:
    """Each message opens with the caller's name for the value (a config key, say)."""
    with pytest.raises(ValueError, match=message):
        check_schedule(*schedule, names=("iterations", "chains", "warm", "last"))


def test_holdout_like_draws_its_frames_from_the_generator_alone() -> None:
    known = missing_frames(T, H, W, fraction=0.5, generator=gen(1))
    holdouts = []
    for global_seed in range(4):
        torch.manual_seed(global_seed)
        holdouts.append(holdout_like(known, fraction=0.5, shift=1, generator=gen(5)))
    assert all(torch.equal(holdouts[0], other) for other in holdouts[1:])


def test_a_holdout_that_hides_everything_is_blamed_on_what_makes_it() -> None:
    """Frames, a fixed occluder, or (both in the mask) either."""
    first_only = torch.zeros(4, 6, 6, dtype=torch.bool)
    first_only[0] = True
    half = torch.ones(4, 6, 6, dtype=torch.bool)
    half[:, :, :3] = False  # moved 3 columns right, it covers the observed half
    both = half.clone()
    both[1:] = False
    occluder = ("the entries it hides in every frame cover so much of the frame that, moved "
                "within it, they cover the rest")
    assert hidden_whole_cause(first_only) == "too few observed frames"
    assert hidden_whole_cause(half) == occluder
    assert hidden_whole_cause(both) == f"too few observed frames, or {occluder}"
    assert torch.equal(holdout_like(half, generator=gen(0)), half)  # every observed entry
