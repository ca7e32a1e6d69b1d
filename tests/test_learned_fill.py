"""The learned fill: a ConvNet trained on a clip's own observed entries to correct classical
fills."""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import warnings
from dataclasses import replace
from functools import partial

import pytest
import torch
from _tiny import HostTraffic

from stgconv.baselines.video import FILLS, temporal_interpolation
from stgconv.config import LEARNED_FILL_LOSSES, VIDEO_FILLS, LearnedFillConfig, load_config
from stgconv.data.masks import missing_frames, salt_and_pepper
from stgconv.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stgconv.learned_fill import (
    NEIGHBOUR_INPUTS,
    FillNet,
    _crop,
    _crop_centres,
    _loss,
    _turned_backwards,
    apply_fill,
    fill_inputs,
    fill_prior,
    learned_fill,
    load_fill_prior,
    prior_example,
    save_fill_prior,
    useful_shifts,
)
from stgconv.mcmc.execution import native_bfloat16

# One view of the clip (the measured errors below are its); the default symmetric fill (two
# views) has its own test.
FAST = LearnedFillConfig(iterations=150, crop_frames=8, crop_size=16, patterns=4, symmetric=False)
TEMPORAL, NEIGHBOUR = FILLS["temporal_interpolation"], FILLS["neighbour_average"]


def wave() -> torch.Tensor:
    """A moving sinusoid, 3 x 12 x 32 x 32: each pixel changes fast in time but slowly in space,
    so the missing pixels' spatial neighbours predict them better than their own past and
    future do."""
    t, y, x = torch.meshgrid(torch.arange(12.0), torch.arange(32.0), torch.arange(32.0),
                             indexing="ij")
    pattern = torch.sin(0.4 * x + 0.3 * y - 1.3 * t) * 0.6
    return torch.stack([pattern, pattern.roll(3, 2), -pattern])


def pixels_missing(fraction: float = 0.5, seed: int = 0) -> torch.Tensor:
    return salt_and_pepper(12, 32, 32, fraction=fraction,
                           generator=torch.Generator().manual_seed(seed))


def missing_error(filled: torch.Tensor, truth: torch.Tensor, known: torch.Tensor) -> float:
    return (filled - truth).abs()[~known.expand_as(truth)].mean().item()


def test_the_config_names_every_classical_fill():
    assert VIDEO_FILLS == tuple(FILLS)


def test_an_untrained_net_returns_the_first_fill_and_keeps_observed_entries():
    video, known = wave(), pixels_missing()
    inputs = fill_inputs(video, known, [TEMPORAL(video, known), NEIGHBOUR(video, known)])
    assert inputs.shape == (3 * (2 + NEIGHBOUR_INPUTS), 12, 32, 32)
    visible = known.expand_as(video)[None].float()
    out = FillNet(3, 2, width=4)(inputs[None], visible)
    assert torch.equal(out, inputs[None, :3])
    with pytest.raises(ValueError, match="width"):
        FillNet(3, 2, width=0)


@pytest.mark.parametrize("loss", LEARNED_FILL_LOSSES)
def test_learning_on_hidden_observed_entries_beats_the_fill_it_corrects(loss):
    video, known = wave(), pixels_missing()
    # Missing values are never read: NaN there changes nothing.
    observed = torch.where(known, video, torch.nan)
    torch.manual_seed(0)
    settings = replace(FAST, loss=loss)
    net, losses = learned_fill(observed, known, [TEMPORAL, NEIGHBOUR], settings=settings,
                               generator=torch.Generator().manual_seed(0))
    assert len(losses) == FAST.iterations and all(map(torch.isfinite, torch.tensor(losses)))
    made = [TEMPORAL(observed, known), NEIGHBOUR(observed, known)]
    filled = apply_fill(net, observed, known, made, symmetric=False)
    assert torch.equal(filled[known.expand_as(video)], video[known.expand_as(video)])
    assert filled.abs().max() <= 1
    temporal = missing_error(TEMPORAL(observed, known), video, known)
    learned = missing_error(filled, video, known)
    # Measured: temporal 0.48, learned 0.25 with either loss (the net leans on the spatial
    # neighbours).
    assert learned < 0.6 * temporal
    # Same seeds, same net.
    torch.manual_seed(0)
    again, _ = learned_fill(observed, known, [TEMPORAL, NEIGHBOUR], settings=settings,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(apply_fill(again, observed, known, made, symmetric=False), filled)


@pytest.mark.skipif(not native_bfloat16(torch.device("cpu")),
                    reason="needs a CPU with native bfloat16 (emulated, it is many times slower)")
def test_bfloat16_arithmetic_learns_and_keeps_observed_entries():
    """precision "bf16": the net under bfloat16 autocast, the fill and the observed entries in
    float32."""
    video, known = wave(), pixels_missing()
    observed = torch.where(known, video, torch.nan)
    torch.manual_seed(0)
    net, losses = learned_fill(observed, known, [TEMPORAL, NEIGHBOUR],
                               settings=replace(FAST, precision="bf16"),
                               generator=torch.Generator().manual_seed(0))
    made = [TEMPORAL(observed, known), NEIGHBOUR(observed, known)]
    filled = apply_fill(net, observed, known, made, precision="bf16", symmetric=False)
    assert filled.dtype == torch.float32 and all(map(torch.isfinite, torch.tensor(losses)))
    assert torch.equal(filled[known.expand_as(video)], video[known.expand_as(video)])
    # Measured: 0.25, as in fp32 (temporal interpolation: 0.48).
    assert missing_error(filled, video, known) < 0.6 * missing_error(made[0], video, known)


def test_bfloat16_without_native_support_warns_that_it_is_slow(monkeypatch):
    monkeypatch.setattr("stgconv.learned_fill.native_bfloat16", lambda device: False)
    video, known = wave(), pixels_missing()
    made = [TEMPORAL(video, known)]
    with pytest.warns(RuntimeWarning, match="no native bfloat16") as record:
        filled = apply_fill(FillNet(3, 1, width=4), video, known, made, precision="bf16")
    assert [warning.filename for warning in record] == [__file__]  # the caller's line
    assert torch.equal(filled, made[0])  # an untrained net returns the first fill
    monkeypatch.setattr("stgconv.learned_fill.native_bfloat16", lambda device: True)
    with warnings.catch_warnings():  # native: nothing to warn of
        warnings.simplefilter("error")
        apply_fill(FillNet(3, 1, width=4), video, known, made, precision="bf16")


def test_training_in_bfloat16_without_native_support_warns_at_the_callers_line(monkeypatch):
    """learned_fill and fill_prior reach the warning one call deeper than apply_fill: it named
    their own line in stgconv/learned_fill.py."""
    monkeypatch.setattr("stgconv.learned_fill.native_bfloat16", lambda device: False)
    video, known = wave()[:, :4, :8, :8], pixels_missing()[:4, :8, :8]
    settings = replace(FAST, iterations=1, batch=1, precision="bf16")
    with pytest.warns(RuntimeWarning, match="no native bfloat16") as record:
        learned_fill(video, known, [TEMPORAL], settings=settings,
                     generator=torch.Generator().manual_seed(0))
        fill_prior([prior_example(video, known, {"temporal_interpolation": TEMPORAL})],
                   settings=settings, iterations=1, generator=torch.Generator().manual_seed(0))
    assert [warning.filename for warning in record] == [__file__] * 2


def test_an_unknown_precision_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="recovery.learned.precision"):
        learned_fill(wave(), pixels_missing(), [TEMPORAL],
                     settings=replace(FAST, precision="fp16"))
    # apply_fill takes it as an argument, not from a config: "bf-16" ran in fp32 unnoticed.
    video, known = wave(), pixels_missing()
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\], "
                                         r"got 'bf-16'"):
        apply_fill(FillNet(3, 1, width=4), video, known, [TEMPORAL(video, known)],
                   precision="bf-16")


def test_the_turned_backwards_view_is_what_the_clip_turned_and_played_backwards_gives():
    """The net's inputs for the view must be those of the clip turned half a turn and played
    backwards (frame order aside: the net works frame by frame)."""
    video, known = wave(), frames_missing(0).expand(3, -1, -1, -1)
    pattern = [~known, known, fill_inputs(video, known, [TEMPORAL(video, known)]), video]
    turned = [part.flip(-3, -2, -1) for part in (video, known)]
    expected = fill_inputs(*turned, [TEMPORAL(*turned)]).flip(1)
    hidden, visible, inputs, target = _turned_backwards(pattern, 3)
    torch.testing.assert_close(inputs, expected)
    assert not torch.allclose(pattern[2].flip(-2, -1), inputs)  # before and after swapped
    assert torch.equal(target, video.flip(-2, -1)) and torch.equal(visible, known.flip(-2, -1))


def test_a_symmetric_fill_is_the_same_for_the_clip_turned_and_played_backwards():
    video, known = wave(), pixels_missing()
    observed = torch.where(known, video, torch.nan)
    torch.manual_seed(0)
    net, _ = learned_fill(observed, known, [TEMPORAL], settings=replace(FAST, symmetric=True),
                          generator=torch.Generator().manual_seed(0))

    def fill(clip, mask):
        return apply_fill(net, clip, mask, [TEMPORAL(clip, mask)], symmetric=True)

    def turned_backwards(clip):
        return clip.flip(-3, -2, -1)

    filled = fill(observed, known)
    assert torch.equal(filled[known.expand_as(video)], video[known.expand_as(video)])
    torch.testing.assert_close(
        turned_backwards(fill(turned_backwards(observed), turned_backwards(known))), filled)
    # A single view is not symmetric by itself: the average is what makes it so.
    one_view = apply_fill(net, observed, known, [TEMPORAL(observed, known)], symmetric=False)
    assert not torch.allclose(one_view, filled)
    # Measured: 0.31 (temporal interpolation 0.48; the net trained on one view: 0.25).
    assert missing_error(filled, video, known) < 0.75 * missing_error(TEMPORAL(observed, known),
                                                                      video, known)


def drifting_texture(frames: int = 16, size: int = 32, shift: int = 2) -> torch.Tensor:
    """``(3, frames, size, size)``: smoothed noise translating ``shift`` pixels per frame to the
    right (not a sinusoid: the blend of its two ends is no rescaled copy of the middle)."""
    noise = torch.rand(3, 1, size, size + shift * frames,
                       generator=torch.Generator().manual_seed(3))
    blur = torch.ones(3, 1, 5, 5) / 25
    smooth = torch.nn.functional.conv2d(noise.transpose(0, 1), blur, padding=2, groups=3)[0]
    smooth = (smooth - smooth.mean()) / smooth.std() * 0.4
    return torch.stack([smooth[:, :, shift * (frames - t):][:, :, :size] for t in range(frames)],
                       dim=1).clamp(-1, 1)


def test_whole_missing_frames_of_a_moving_texture_are_learned_from_the_frames_around_them():
    """Interpolating at a fixed pixel blends two places of the texture; the net reads the frames
    on both sides of a gap apart (the temporal neighbours), learns from observed frames hidden
    whole where the motion went, and fills the missing frames far better."""
    video = drifting_texture()
    known = missing_frames(16, 32, 32, fraction=0.4, generator=torch.Generator().manual_seed(1))
    observed = torch.where(known, video, torch.nan)
    torch.manual_seed(0)
    settings = LearnedFillConfig(iterations=300, crop_frames=8, crop_size=24, patterns=8)
    net, _ = learned_fill(observed, known, [TEMPORAL], settings=settings,
                          generator=torch.Generator().manual_seed(0))
    made = [TEMPORAL(observed, known)]
    temporal = missing_error(made[0], video, known)
    learned = missing_error(apply_fill(net, observed, known, made), video, known)
    # Measured: temporal 0.18, learned 0.10.
    assert learned < 0.6 * temporal, (learned, temporal)


def test_a_short_clip_learns_from_the_shifts_that_hide_something():
    """Every other frame missing: shifted by an even number of frames the missing pattern lies
    over missing frames only, so only odd shifts can hide observed entries; every pattern is
    drawn from those."""
    video = wave()
    known = torch.ones(12, 32, 32, dtype=torch.bool)
    known[::2] = False
    torch.manual_seed(0)
    net, losses = learned_fill(video, known, [TEMPORAL], settings=replace(FAST, iterations=5),
                               generator=torch.Generator().manual_seed(0))
    assert len(losses) == 5 and all(map(torch.isfinite, torch.tensor(losses)))
    assert not net.training  # returned ready to apply


def block_missing() -> torch.Tensor:
    """``known`` (12, 32, 32) of :func:`wave`'s frames: an 8x8 block missing in every frame."""
    known = torch.ones(12, 32, 32, dtype=torch.bool)
    known[:, 10:18, 12:20] = False
    return known


def learned_and_made(video: torch.Tensor, known: torch.Tensor, fills: list
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The learned fill of ``video`` under ``known`` (60 steps of FAST, seeded) and the classical
    ``fills`` it read, each made of the observed entries."""
    observed = torch.where(known, video, torch.nan)
    torch.manual_seed(0)
    net, _ = learned_fill(observed, known, fills, settings=replace(FAST, iterations=60),
                          generator=torch.Generator().manual_seed(0))
    made = [fill(observed, known) for fill in fills]
    return apply_fill(net, observed, known, made, symmetric=False), made


def test_a_fixed_occluder_is_learned_from_its_shape_moved_within_the_frame():
    """The same block missing in every frame: no other frame shows its pixels, so the net
    learns from observed pixels hidden in its shape elsewhere in the frame, and fills the
    block better than the spatial fill it corrects."""
    video, known = wave(), block_missing()
    filled, made = learned_and_made(video, known, [NEIGHBOUR, TEMPORAL])
    neighbour = missing_error(made[0], video, known)
    learned = missing_error(filled, video, known)
    # Measured: neighbour averaging 0.31, learned 0.089 (the old refusal: no frame shows the
    # block's pixels, and no shift in time hides observed ones like it).
    assert learned < 0.5 * neighbour, (learned, neighbour)


def test_a_fixed_occluder_beside_missing_frames_is_learned_with_them():
    """A block missing in every frame and two whole frames missing: the net learns from both
    kinds of gap at once, and fills the block better than the spatial fill, where it learned
    whole frames alone before (the block filled as the temporal fill it corrects fills it:
    no frame shows those pixels)."""
    video, known = wave(), block_missing()
    known[[4, 8]] = False
    learned, made = learned_and_made(video, known, [TEMPORAL, NEIGHBOUR])
    block = block_missing()
    block[[4, 8]] = True  # the block in the frames that show the rest
    frames = torch.ones_like(known)
    frames[[4, 8]] = False
    # Measured on the block: neighbour averaging 0.31, temporal 0.39, learned 0.17 (0.44 when
    # it learned whole frames alone); on the frames: temporal 0.29, learned 0.23.
    on_block = missing_error(learned, video, block)
    assert on_block < 0.7 * missing_error(made[1], video, block), on_block
    assert missing_error(learned, video, frames) < missing_error(made[0], video, frames)


def test_bad_input_is_refused():
    video, known = wave(), pixels_missing()
    with pytest.raises(ValueError, match="at least one"):
        learned_fill(video, known, [])
    # FILLS itself, names to fills, failed making a pattern ("'str' object is not callable").
    with pytest.raises(ValueError, match=r"^fills must be fill functions, fill\(video, known\), "
                                         r"got 'temporal_interpolation' \(of FILLS"):
        learned_fill(video, known, FILLS)
    for clip, mask in ((video[0], known), (video[0, 0], known[0]), (video[None], known)):
        with pytest.raises(ValueError, match=r"observed must be \(C, T, H, W\)"):
            learned_fill(clip, mask, [TEMPORAL])
    with pytest.raises(ValueError, match="learned_fill: generator must be"):
        learned_fill(video, known, [TEMPORAL], settings=FAST, generator=0)  # a seed
    with pytest.raises(ValueError, match="hides in every frame covers too much of the frame"):
        static = torch.ones(12, 32, 32, dtype=torch.bool)
        static[:, :24] = False  # 3/4 of the frame: no offset moves 90% of it onto the rest
        learned_fill(video, static, [TEMPORAL])
    with pytest.raises(ValueError, match="recovery.learned.iterations"):
        learned_fill(video, known, [TEMPORAL], settings=LearnedFillConfig(iterations=0))
    # Refused as a mask whose pattern hides nothing under any shift ("choose a classical
    # recovery.init"), for a clip with nothing to fill or nothing to learn from.
    for mask, what in ((torch.ones_like(known), "hides no entry"),
                       (torch.zeros_like(known), "observes no entry")):
        with pytest.raises(ValueError, match=f"^the mask {what}: the learned fill needs both"):
            learned_fill(video, mask, [TEMPORAL], settings=FAST)
    with pytest.raises(ValueError, match="^observed is on the meta device"):
        learned_fill(video.to("meta"), known, [TEMPORAL], settings=FAST)
    # Named by the first fill's argument ("video has NaN ..."), which is not this function's.
    with pytest.raises(ValueError, match="^observed has NaN or infinite values at observed"):
        learned_fill(torch.where(known, torch.nan, video), known, [TEMPORAL], settings=FAST)
    # The meta mask failed inside torch ("Cannot copy out of meta tensor; no data!").
    for bad_mask in (known[:, :16, :16], known.float(), known.to("meta")):
        with pytest.raises(ValueError, match="known"):
            learned_fill(video, bad_mask, [TEMPORAL], settings=FAST)
        net = FillNet(3, 1, width=4)
        with pytest.raises(ValueError, match="known"):
            apply_fill(net, video, bad_mask, [TEMPORAL(video, known)])
    with pytest.raises(ValueError, match="n_fills must be an int >= 1, got 0"):
        FillNet(3, 0, width=4)  # a net that corrects no fill


def test_a_diverging_fill_training_stops_naming_its_rate(monkeypatch):
    video, known = wave(), pixels_missing()
    # Counted from 0, as the losses are: the untrained first step is finite, the second is not.
    with pytest.raises(FloatingPointError, match=r"diverged at iteration 1: .*recovery.learned.lr"):
        learned_fill(video, known, [TEMPORAL], settings=replace(FAST, lr=1e30),
                     generator=torch.Generator().manual_seed(0))
    # A loss that overflows to infinity (not NaN) stops the training too.
    module = importlib.import_module("stgconv.learned_fill")
    loss = module._loss
    monkeypatch.setattr(module, "_loss", lambda *args, **kwargs: loss(*args, **kwargs) * math.inf)
    with pytest.raises(FloatingPointError, match=r"diverged at iteration 0: loss inf;"):
        learned_fill(video, known, [TEMPORAL], settings=replace(FAST, iterations=2),
                     generator=torch.Generator().manual_seed(0))


def test_a_float64_clip_is_filled_by_the_float32_net():
    video, known = wave().double(), pixels_missing()
    net, _ = learned_fill(video, known, [TEMPORAL], settings=replace(FAST, iterations=2),
                          generator=torch.Generator().manual_seed(0))
    filled = apply_fill(net, video, known, [TEMPORAL(video, known)], symmetric=False)
    assert filled.dtype == torch.float64 and torch.isfinite(filled).all()
    assert torch.equal(filled[known.expand_as(video)], video[known.expand_as(video)])


def trained_in(block, train):
    """``train()``'s net (its first weights from torch's seed 0) and losses, called in
    ``block``."""
    torch.manual_seed(0)
    with block:
        net, losses = train()
    return net.state_dict(), losses


def test_a_clip_that_requires_grad_is_learned_from_as_its_values():
    """The net's training steps backpropagated into a clip another network made, filling the
    caller's .grad; a prior example of one kept its graph."""
    video, known = wave()[:, :6, :16, :16], pixels_missing()[:6, :16, :16]
    leaf = video.clone().requires_grad_(True)
    settings = replace(FAST, iterations=2, patterns=1, width=4, batch=2)

    def train(clip):
        return trained_in(contextlib.nullcontext(), partial(
            learned_fill, clip, known, [TEMPORAL], settings=settings,
            generator=torch.Generator().manual_seed(0)))

    (weights, losses), (weights_of_values, losses_of_values) = train(leaf), train(video)
    assert leaf.grad is None and losses == losses_of_values
    assert all(torch.equal(weights[name], weights_of_values[name]) for name in weights)
    assert not any(part.requires_grad for part in prior_example(leaf, known, {"t": TEMPORAL}))


@pytest.mark.parametrize("prior", [False, True], ids=["learned_fill", "fill_prior"])
def test_a_fill_trained_inside_no_grad_is_the_same_and_inference_mode_is_refused(prior):
    """The backward pass failed inside torch.no_grad() ("element 0 of tensors does not require
    grad"), where a caller making a fill, which feels like inference, may well be; inside
    torch.inference_mode(), where no block turns autograd back on, it is refused naming why."""
    video, known = wave()[:, :6, :16, :16], pixels_missing()[:6, :16, :16]
    settings = replace(FAST, iterations=2, patterns=1, width=4, batch=2)
    if prior:
        def train():
            return fill_prior([prior_example(video, known, {"t": TEMPORAL})], settings=settings,
                              iterations=2, generator=torch.Generator().manual_seed(0))
    else:
        def train():
            return learned_fill(video, known, [TEMPORAL], settings=settings,
                                generator=torch.Generator().manual_seed(0))
    weights, losses = trained_in(contextlib.nullcontext(), train)
    weights_no_grad, losses_no_grad = trained_in(torch.no_grad(), train)
    assert losses_no_grad == losses
    assert all(torch.equal(weights[name], weights_no_grad[name]) for name in weights)
    with pytest.raises(RuntimeError, match=r"trains a network, which torch.inference_mode\(\) "
                                           r"turns off: train it outside it"):
        trained_in(torch.inference_mode(), train)


@pytest.mark.parametrize("override, message", [
    ("recovery.learned.fills=[optical]", "unknown fill"),
    ("recovery.learned.fills=[]", "at least one"),
    # Taken: the net read the fill twice, a prior made under these settings read it once, and
    # a recovery from that prior under the same settings was refused, after the clip's fills.
    ("recovery.learned.fills=[biharmonic,temporal_interpolation,biharmonic]",
     r"^recovery.learned.fills names biharmonic twice: name each fill once$"),
    ("recovery.learned.starts=[motion_compensated,motion_compensated]",
     r"^recovery.learned.starts names motion_compensated twice"),
    ("recovery.learned.hide_fraction=0", "hide_fraction"),
    ("recovery.learned.lr=-1", "recovery.learned.lr"),
    ("recovery.learned.crop_size=0", "recovery.learned.crop_size"),
    ("recovery.learned.loss=absolute", "recovery.learned.loss"),
    ("recovery.learned.widht=3", "widht"),
    ("recovery.learned.symmetric=maybe", "recovery.learned.symmetric"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ["recovery.init=learned", override])


@pytest.mark.parametrize(("change", "message"), [
    # Built in Python these failed in range() or torch.randint naming no key, ran as 1, or
    # read the name letter by letter ("unknown fill(s) ['b', 'i', ...]").
    ({"iterations": 1.5}, "recovery.learned.iterations must be an integer, got 1.5"),
    ({"patterns": 1.5}, "recovery.learned.patterns must be an integer, got 1.5"),
    ({"batch": True}, "recovery.learned.batch must be an integer, got True"),
    ({"lr": math.inf}, "recovery.learned.lr must be a finite number, got inf"),
    ({"fills": "biharmonic"}, "recovery.learned.fills must be a list of fill names, got"),
])
def test_settings_built_in_python_are_checked_as_a_file_s_are(change, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        learned_fill(wave(), pixels_missing(), [TEMPORAL], settings=replace(FAST, **change))


def moving_wave(phase: float, speed: float, frames: int = 12) -> torch.Tensor:
    """A sinusoid moving ``speed`` radians a frame, 3 x frames x 32 x 32."""
    t, y, x = torch.meshgrid(torch.arange(float(frames)), torch.arange(32.0), torch.arange(32.0),
                             indexing="ij")
    pattern = torch.sin(0.4 * x + 0.3 * y - speed * t + phase) * 0.6
    return torch.stack([pattern, pattern.roll(3, 2), -pattern])


def frames_missing(seed: int) -> torch.Tensor:
    return missing_frames(12, 32, 32, fraction=0.4, generator=torch.Generator().manual_seed(seed))


def test_a_prior_example_puts_the_fill_that_errs_least_first():
    """Scattered pixels of a fast wave: the spatial fill errs least (see ``wave``), so it comes
    first whatever the order asked; the truth is the target at exactly the missing entries."""
    video, known = wave(), pixels_missing()
    hidden, visible, inputs, target = prior_example(
        video, known, {"temporal_interpolation": TEMPORAL, "neighbour_average": NEIGHBOUR})
    observed = torch.where(known, video, 0.0)
    assert missing_error(NEIGHBOUR(observed, known), video, known) < missing_error(
        TEMPORAL(observed, known), video, known)
    assert torch.allclose(inputs[:3].float(), NEIGHBOUR(observed, known), atol=1e-3)
    assert torch.allclose(inputs[3:6].float(), TEMPORAL(observed, known), atol=1e-3)
    assert torch.equal(hidden, ~known.expand_as(video)) and torch.equal(visible, ~hidden)
    assert inputs.dtype == target.dtype == torch.half
    assert torch.allclose(target.float(), video, atol=1e-3)
    for every_entry in (torch.ones_like(known), torch.zeros_like(known)):
        with pytest.raises(ValueError, match="both observed and missing"):
            prior_example(video, every_entry, {"temporal_interpolation": TEMPORAL})


def test_a_prior_example_names_a_clip_or_mask_it_cannot_use() -> None:
    video, known = wave(), pixels_missing()
    temporal = {"temporal_interpolation": TEMPORAL}
    with pytest.raises(ValueError, match=r"truth must be \(C, T, H, W\), got \(12, 32, 32\)"):
        prior_example(video[0], known, temporal)
    for bad_mask in (known[:, :16, :16], known.float(), known.to("meta")):
        with pytest.raises(ValueError, match="known"):
            prior_example(video, bad_mask, temporal)
    with pytest.raises(ValueError, match="^truth is on the meta device"):
        prior_example(video.to("meta"), known, temporal)
    with pytest.raises(ValueError, match="^fills must be a dict of fill functions by name"):
        prior_example(video, known, [TEMPORAL])  # failed on "has no attribute 'values'"
    # Made, it was refused only by fill_prior, as a net of "n_fills 0".
    with pytest.raises(ValueError, match="^a prior example needs at least one classical fill"):
        prior_example(video, known, {})


def test_a_prior_trained_on_other_clips_fills_a_new_clip_better_than_its_first_fill():
    """Complete waves of other phases and speeds teach what a missing frame of a moving wave
    holds; a wave it never saw, with a mask it never saw, is filled better than by the
    temporal interpolation it corrects, before any training on that clip."""
    fills = {"temporal_interpolation": TEMPORAL}
    examples = [prior_example(moving_wave(phase, speed), frames_missing(seed), fills)
                for seed, (phase, speed) in enumerate([(0.0, 0.9), (1.0, 1.1), (2.0, 1.3),
                                                       (3.0, 1.0), (4.0, 1.2)])]
    torch.manual_seed(0)
    settings = LearnedFillConfig(crop_frames=8, crop_size=24, width=16)
    net, losses = fill_prior(examples, settings=settings, iterations=200,
                             generator=torch.Generator().manual_seed(0))
    assert len(losses) == 200
    video, known = moving_wave(0.5, 1.15), frames_missing(9)
    made = [TEMPORAL(video, known)]
    temporal = missing_error(made[0], video, known)
    prior = missing_error(apply_fill(net, video, known, made), video, known)
    # Measured: temporal 0.44, prior 0.15 (one view: 0.13).
    assert prior < 0.6 * temporal, (prior, temporal)


def test_learned_fill_starts_from_the_prior_and_leaves_it_as_it_was():
    video, known = wave(), pixels_missing()
    torch.manual_seed(1)
    prior = FillNet(3, 2, width=8)
    torch.nn.init.normal_(prior.layers[-1].weight, std=0.01)  # not the zero start
    before = {name: value.clone() for name, value in prior.state_dict().items()}
    made = [TEMPORAL(video, known), NEIGHBOUR(video, known)]
    # A learning rate too small to move it: the result is the prior's fill.
    tiny = replace(FAST, iterations=2, width=8, lr=1e-12)
    net, _ = learned_fill(video, known, [TEMPORAL, NEIGHBOUR], settings=tiny, initial=prior,
                          generator=torch.Generator().manual_seed(0))
    assert net is not prior
    assert all(torch.equal(value, before[name]) for name, value in prior.state_dict().items())
    from_prior = apply_fill(prior, video, known, made)
    assert not torch.equal(from_prior, apply_fill(FillNet(3, 2, width=8), video, known, made))
    assert torch.allclose(apply_fill(net, video, known, made), from_prior, atol=1e-6)
    with pytest.raises(ValueError, match="hidden width"):
        learned_fill(video, known, [TEMPORAL, NEIGHBOUR], settings=FAST, initial=prior)
    with pytest.raises(ValueError, match="number of classical fills is 2"):
        learned_fill(video, known, [TEMPORAL], settings=tiny, initial=prior)
    with pytest.raises(ValueError, match="channels is 3, this recovery's 1"):
        learned_fill(video[:1], known, [TEMPORAL, NEIGHBOUR], settings=tiny, initial=prior)


def test_learned_fill_from_a_prior_draws_only_from_its_generator() -> None:
    """Started from a prior (no weights drawn), the symmetric fill's crops and turns come from
    ``generator``: torch's global generator in another state changes nothing."""
    video, known = wave(), pixels_missing()
    torch.manual_seed(1)
    prior = FillNet(3, 1, width=8)
    runs = []
    for seed in (2, 3):
        torch.manual_seed(seed)
        runs.append(learned_fill(video, known, [TEMPORAL], initial=prior,
                                 settings=replace(FAST, iterations=3, width=8, symmetric=True),
                                 generator=torch.Generator().manual_seed(0))[1])
    assert runs[0] == runs[1]


def test_a_saved_prior_loads_as_it_was_and_nothing_else_passes_for_one(tmp_path):
    torch.manual_seed(0)
    net = FillNet(3, 2, width=8)
    torch.nn.init.normal_(net.layers[-1].weight)
    path = save_fill_prior(net, ["temporal_interpolation", "neighbour_average"],
                           tmp_path / "prior.pt", trained_on=["a.avi"])
    loaded, fills = load_fill_prior(path)
    assert fills == ("temporal_interpolation", "neighbour_average")
    assert (loaded.channels, loaded.n_fills, loaded.width) == (3, 2, 8)
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 net.state_dict().values()))
    save_checkpoint({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a fill prior"):
        load_fill_prior(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"fill prior not found: .*missing\.pt "
                                              r"\(`stgconv fill-prior` makes one\)"):
        load_fill_prior(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"fill prior .* is a folder; give the file "
                                              r"`stgconv fill-prior --out FILE` wrote$"):
        load_fill_prior(tmp_path)
    with pytest.raises(ValueError, match="2 fills, 1 named"):
        save_fill_prior(net, ["temporal_interpolation"], tmp_path / "bad.pt")
    # Written as given, names of no strings made a file that does not load, and a string was
    # kept letter by letter.
    for fills, trained_on in (([1, 2], ()), ("ab", ()), (["a", "b"], "clip.mp4")):
        with pytest.raises(ValueError, match=r"^(fills|trained_on) must be a list of names"):
            save_fill_prior(net, fills, tmp_path / "bad.pt", trained_on=trained_on)
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"width": 4}, "in loading state_dict"),
    ({"fills": None}, "'fills'"),
    ({"fills": [1, 2]}, "its fills are not names"),
    ({"channels": "three"}, "channels"),
    ({"weights": {}}, "in loading state_dict"),  # every weight missing
])
def test_a_damaged_prior_is_named_not_a_traceback(tmp_path, change, message) -> None:
    """A prior whose record disagrees with its weights, or lacks a key, is a CheckpointError
    naming the file (the CLI's one-line exit 2), not a RuntimeError or KeyError traceback."""
    net = FillNet(3, 2, width=8)
    path = save_fill_prior(net, ["temporal_interpolation", "neighbour_average"],
                           tmp_path / "prior.pt")
    state = {**load_checkpoint(path), **change}
    save_checkpoint({key: value for key, value in state.items() if value is not None}, path)
    with pytest.raises(CheckpointError, match=rf"fill prior .*prior\.pt is not loadable: .*"
                                              rf"{message}"):
        load_fill_prior(path)


def test_fill_prior_refuses_examples_one_net_cannot_read() -> None:
    video, known = wave(), pixels_missing()
    temporal = {"temporal_interpolation": TEMPORAL}
    one = prior_example(video, known, temporal)
    two = prior_example(video, known, {**temporal, "neighbour_average": NEIGHBOUR})
    grey = prior_example(video[:1], known, temporal)
    # 2 channels of 3 fills: as many input groups as one's 3 channels of 1 fill (2 x 6 = 3 x 4).
    three = {**temporal, "neighbour_average": NEIGHBOUR, "again": TEMPORAL}
    two_channels = prior_example(video[:2], known, three)
    assert two_channels[2].shape[0] == one[2].shape[0]
    for examples in ([one, two], [one, grey], [one, two_channels]):
        with pytest.raises(ValueError, match="same channels and fills"):
            fill_prior(examples, iterations=1)
    with pytest.raises(ValueError, match="at least one example"):
        fill_prior([], iterations=1)
    with pytest.raises(ValueError, match="iterations must be"):
        fill_prior([one], iterations=0)  # an untrained net, passed off as a prior
    with pytest.raises(ValueError, match="recovery.learned.lr"):
        fill_prior([one], settings=replace(FAST, lr=-1.0), iterations=1)
    with pytest.raises(ValueError, match="fill_prior: generator must be"):
        fill_prior([one], settings=FAST, iterations=1, generator=0)  # a seed
    # Examples made one by one as they are read: refused as of "different channels and fills".
    settings = replace(FAST, iterations=1, width=4, batch=1)
    torch.manual_seed(0)
    net, _ = fill_prior((example for example in [one]), settings=settings, iterations=1)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(
        net.state_dict().values(), fill_prior([one], settings=settings, iterations=1)[0]
        .state_dict().values()))


def test_fill_prior_crops_examples_of_different_sizes_to_the_smallest() -> None:
    video, known = wave(), pixels_missing()
    temporal = {"temporal_interpolation": TEMPORAL}
    big = prior_example(video, known, temporal)
    small = prior_example(video[:, :, :8, :8], known[:, :8, :8], temporal)  # under the crop
    net, losses = fill_prior([big, small], settings=FAST, iterations=2,
                             generator=torch.Generator().manual_seed(0))
    assert len(losses) == 2 and all(map(math.isfinite, losses))
    assert not net.training  # returned ready to apply


def test_apply_fill_names_a_net_made_for_other_inputs() -> None:
    video = torch.zeros(3, 4, 8, 8)
    known = salt_and_pepper(4, 8, 8, fraction=0.5, generator=torch.Generator().manual_seed(0))
    made = [temporal_interpolation(video, known)]
    with pytest.raises(ValueError, match="the net reads 3 channels and 2 fills, given 3 and 1"):
        apply_fill(FillNet(3, 2, width=4), video, known, made)
    with pytest.raises(ValueError, match="the net reads 1 channels and 1 fills, given 3 and 1"):
        apply_fill(FillNet(1, 1, width=4), video, known, made)
    # A frame stack was taken as 4 channels ("the net reads 1 channels ..., given 4"), a fill
    # of another shape failed in torch.cat, and a NaN in a fill came out as the net's overflow.
    with pytest.raises(ValueError, match=r"^observed must be \(C, T, H, W\), got \(4, 8, 8\)"):
        apply_fill(FillNet(1, 1, width=4), video[0], known, [made[0][0]])
    with pytest.raises(ValueError,
                       match=r"^filled\[0\] is \(3, 2, 8, 8\), observed \(3, 4, 8, 8\)"):
        apply_fill(FillNet(3, 1, width=4), video, known, [made[0][:, :2]])
    with pytest.raises(ValueError, match=r"^filled\[0\] has NaN or infinite values"):
        apply_fill(FillNet(3, 1, width=4), video, known, [torch.full_like(video, math.nan)])


def test_squared_then_absolute_loss_is_squared_first() -> None:
    """"squared_then_absolute" is squared error in the first half, absolute in the second, not
    the reverse (no other fast test reads the loss)."""
    error = torch.tensor([0.5, -2.0])
    assert _loss(error, "squared_then_absolute", second_half=False).item() == pytest.approx(2.125)
    assert _loss(error, "squared_then_absolute", second_half=True).item() == pytest.approx(1.25)
    assert _loss(error, "squared", second_half=True).item() == pytest.approx(2.125)


def test_apply_fill_clamps_to_the_data_range_and_keeps_observed_entries() -> None:
    """A net whose correction overshoots (bias 5): the fill is clamped to [-1, 1], the data's
    range, and the observed entries are kept."""
    video = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = torch.ones(4, 6, 6, dtype=torch.bool)
    known[1:3, 2:4, 2:4] = False
    net = FillNet(1, 1, 2).eval()
    with torch.no_grad():
        net.layers[-1].bias.fill_(5.0)
    out = apply_fill(net, video, known, [temporal_interpolation(video, known)])
    assert torch.equal(out[0][known], video[0][known])
    assert torch.equal(out[0][~known], torch.ones(8))


@pytest.mark.parametrize("precision, missing", [("fp32", 8), ("bf16", 8), ("fp32", 1)])
def test_a_net_that_overflows_is_reported_not_clamped(precision: str, missing: int) -> None:
    """Every unit on (weights 0, biases 1: whatever the global RNG drew for the net), a last
    layer of weights 1e38 and bias 3e38 overflows (in bfloat16 as in float32): the infinite
    correction was clamped to 1 and returned as a fill; it is reported, down to a single
    missing entry."""
    video = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = torch.ones(4, 6, 6, dtype=torch.bool)
    known[(slice(1, 3), slice(2, 4), slice(2, 4)) if missing == 8 else (1, 2, 2)] = False
    net = FillNet(1, 1, 2).eval()
    with torch.no_grad():
        for layer in net.layers[::2]:
            layer.weight.zero_()
            layer.bias.fill_(1.0)
        net.layers[-1].weight.fill_(1e38)
        net.layers[-1].bias.fill_(3e38)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 emulated on this CPU: slow
        with pytest.raises(FloatingPointError, match=rf"non-finite values at {missing} missing "
                                                     rf"entries \(precision '{precision}'\)"):
            apply_fill(net, video, known, [temporal_interpolation(video, known)],
                       precision=precision)


def test_an_untrained_net_of_two_fills_returns_the_first_given() -> None:
    """apply_fill reads the fills in the order given: the first is the one corrected."""
    video, known = wave(), pixels_missing()
    made = [NEIGHBOUR(video, known), TEMPORAL(video, known)]
    out = apply_fill(FillNet(3, 2, width=4), video, known, made, symmetric=False)
    missing = ~known.expand_as(video)
    torch.testing.assert_close(out[missing], made[0].clamp(-1, 1)[missing])


def test_an_untrained_net_returns_the_first_fill_without_the_symmetric_view() -> None:
    """symmetric=False averages one view, not two: an untrained net returns the first fill,
    not half of it."""
    video = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = torch.ones(4, 6, 6, dtype=torch.bool)
    known[1:3, 2:4, 2:4] = False
    first = temporal_interpolation(video, known)
    out = apply_fill(FillNet(1, 1, 2).eval(), video, known, [first], symmetric=False)
    torch.testing.assert_close(out, first, rtol=0, atol=1e-6)


def test_every_crop_holds_the_hidden_entry_it_is_drawn_around() -> None:
    """A crop's lowest start is ``c - s + 1``, the lowest that still holds its centre ``c``:
    no crop misses its entry."""
    hidden = torch.zeros(1, 6, 9, 9, dtype=torch.bool)
    hidden[0, 4, 7, 5] = True
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        where = _crop(_crop_centres(hidden), hidden.shape[1:], (3, 4, 4), g)
        assert hidden[where].any()


def test_the_last_time_shift_is_useful_too() -> None:
    """T = 2: the only shift is 1 = T - 1, and it is found (a search stopping before T - 1
    finds none)."""
    known = torch.tensor([[False, True], [True, False]]).view(1, 2, 1, 2)
    assert useful_shifts(known) == ([1], [])


def test_the_net_sees_17_by_17_pixels_of_a_frame() -> None:
    """A change of the inputs at one pixel moves the correction within 8 pixels of it and no
    further (the receptive field the class states)."""
    torch.manual_seed(0)
    net = FillNet(1, 1, 8)
    with torch.no_grad():
        torch.nn.init.normal_(net.layers[-1].weight)
    inputs = torch.rand(1, 1 + NEIGHBOUR_INPUTS, 1, 21, 21,
                        generator=torch.Generator().manual_seed(1))
    changed = inputs.clone()
    changed[..., 10, 10] += 1.0
    visible = torch.zeros(1, 1, 1, 21, 21)
    with torch.no_grad():
        moved = (net(changed, visible) - net(inputs, visible))[0, 0, 0].abs() > 0
    rows, columns = moved.nonzero().unbind(1)
    assert [int(rows.min()), int(rows.max()), int(columns.min()), int(columns.max())] == [
        2, 18, 2, 18]


def test_a_net_with_a_correction_changes_only_the_entries_it_does_not_see() -> None:
    """FillNet returns the first fill, corrected only where ``visible`` is 0: a last layer that
    corrects everywhere (as after training) leaves the visible entries at the first fill."""
    g = torch.Generator().manual_seed(0)
    net = FillNet(2, 1, 4).eval()
    with torch.no_grad():
        net.layers[-1].bias.fill_(0.3)
    inputs = torch.rand(1, 2 * (1 + NEIGHBOUR_INPUTS), 3, 6, 6, generator=g)
    visible = (torch.rand(1, 2, 3, 6, 6, generator=g) > 0.5).float()
    with torch.no_grad():
        out = net(inputs, visible)
    first = inputs[:, :2]
    assert torch.equal(out[visible > 0], first[visible > 0])
    assert not torch.equal(out[visible == 0], first[visible == 0])


def test_the_correction_reads_where_entries_are_observed() -> None:
    """The net is given the mask: the same inputs under two masks that hide the same entries
    but for a few more under the second give those entries other corrections."""
    torch.manual_seed(0)
    net = FillNet(1, 1, 8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.layers[-1].weight)
    g = torch.Generator().manual_seed(1)
    inputs = torch.rand(1, 1 + NEIGHBOUR_INPUTS, 2, 8, 8, generator=g)
    one = (torch.rand(1, 1, 2, 8, 8, generator=g) > 0.3).float()
    other = one * (torch.rand(1, 1, 2, 8, 8, generator=g) > 0.3).float()  # hides more
    both = (one == 0) & (other == 0)
    with torch.no_grad():
        assert not torch.allclose(net(inputs, one)[both], net(inputs, other)[both])


def test_squared_then_absolute_switches_at_half_the_iterations(monkeypatch) -> None:
    """The first ``iterations // 2`` iterations train on squared error, the rest on absolute
    error: the loss does switch (2 iterations of 5, then 3)."""
    module = importlib.import_module("stgconv.learned_fill")
    halves = []

    def recording(error, kind, *, second_half):
        halves.append(second_half)
        return loss(error, kind, second_half=second_half)

    loss = module._loss
    monkeypatch.setattr(module, "_loss", recording)
    settings = replace(FAST, iterations=5, loss="squared_then_absolute")
    learned_fill(wave(), pixels_missing(), [TEMPORAL], settings=settings,
                 generator=torch.Generator().manual_seed(0))
    assert halves == [False, False, True, True, True]


def recorded_rates(monkeypatch) -> list[float]:
    """Adam's learning rate at each of its steps, from here on."""
    rates = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    return rates


def test_the_learning_rate_decays_along_a_cosine(monkeypatch) -> None:
    """Adam's rate follows ``lr * (1 + cos(pi * i / iterations)) / 2`` over the iterations
    (the schedule steps every iteration: the rate is not left at ``lr``)."""
    rates = recorded_rates(monkeypatch)
    learned_fill(wave(), pixels_missing(), [TEMPORAL],
                 settings=replace(FAST, iterations=4, lr=0.01),
                 generator=torch.Generator().manual_seed(0))
    assert rates == pytest.approx([0.01 * (1 + math.cos(math.pi * i / 4)) / 2 for i in range(4)])


def test_a_prior_s_learning_rate_decays_over_its_own_iterations(monkeypatch) -> None:
    """fill_prior's ``iterations`` (4), not ``settings.iterations`` (150), set the cosine's
    length: the rate reaches its end, not 1% of the way."""
    rates = recorded_rates(monkeypatch)
    example = prior_example(wave(), pixels_missing(), {"temporal_interpolation": TEMPORAL})
    fill_prior([example], settings=replace(FAST, lr=0.01), iterations=4,
               generator=torch.Generator().manual_seed(0))
    assert rates == pytest.approx([0.01 * (1 + math.cos(math.pi * i / 4)) / 2 for i in range(4)])


def test_apply_fill_keeps_float64_observed_entries_bit_for_bit() -> None:
    """The float32 net does not round a float64 clip's observed entries: they are returned as
    given, not read back from the net's output."""
    video = torch.rand(1, 4, 6, 6, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(0)) * 2 - 1
    known = torch.ones(4, 6, 6, dtype=torch.bool)
    known[1:3, 2:4, 2:4] = False
    assert not torch.equal(video.float().double(), video)  # values float32 cannot hold
    out = apply_fill(FillNet(1, 1, 2).eval(), video, known, [temporal_interpolation(video, known)])
    assert out.dtype == torch.float64
    assert torch.equal(out[0][known], video[0][known])


# bf16 emulated where not native; other RuntimeWarnings (overflow, NaN) still show
@pytest.mark.filterwarnings("ignore:recovery.learned.precision 'bf16'")
def test_bf16_precision_computes_the_correction_in_bfloat16() -> None:
    """precision "bf16" runs the net under bfloat16 autocast: its correction is rounded as
    bfloat16 rounds (not the fp32 one), while the observed entries stay exact."""
    torch.manual_seed(0)
    net = FillNet(1, 1, 8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.layers[-1].weight, std=0.1)
    video = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    known = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5
    made = [temporal_interpolation(video, known)]
    fp32 = apply_fill(net, video, known, made, precision="fp32", symmetric=False)
    dtypes = set()
    net.layers[-1].register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    bf16 = apply_fill(net, video, known, made, precision="bf16", symmetric=False)
    assert dtypes == {torch.bfloat16}  # not float16, which also rounds
    assert torch.equal(bf16[0][known], video[0][known])
    assert not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0)


def test_symmetric_training_also_learns_from_the_turned_view(monkeypatch) -> None:
    """With ``symmetric`` some training crops are the clip turned half a turn and played
    backwards, not the plain view alone (and not every crop either)."""
    module = importlib.import_module("stgconv.learned_fill")
    turned = []

    def recording(pattern, channels):
        turned.append(pattern[0].shape)
        return turn(pattern, channels)

    turn = module._turned_backwards
    monkeypatch.setattr(module, "_turned_backwards", recording)
    learned_fill(wave(), pixels_missing(), [TEMPORAL],
                 settings=replace(FAST, iterations=2, symmetric=True),
                 generator=torch.Generator().manual_seed(0))
    assert 0 < len(turned) < 2 * FAST.batch  # some crops of the batches, not all


def test_a_crop_is_drawn_around_an_entry_hidden_in_one_channel_only() -> None:
    """Masks may differ between channels: an entry hidden in one channel only is a crop centre
    (centres hidden in every channel would be none here)."""
    hidden = torch.zeros(2, 4, 6, 6, dtype=torch.bool)
    hidden[1, 2, 3, 4] = True
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert hidden[_crop(_crop_centres(hidden), hidden.shape[1:], (2, 3, 3), g)].any()


@pytest.mark.parametrize(("rows", "columns"), [(8, 32), (32, 8)], ids=["low", "narrow"])
def test_a_clip_lower_than_the_crop_is_cropped_to_its_own_height_and_width(rows: int,
                                                                          columns: int) -> None:
    """A clip 8 high and 32 wide with 16-pixel crops: crops are 8 x 16 (not 16 rows of 8, as
    height and width swapped in the crop's size would ask); 8 wide, 16 x 8 (not the width
    bounded by the height)."""
    video = wave()[:, :, :rows, :columns]
    known = pixels_missing()[:, :rows, :columns]
    net, losses = learned_fill(video, known, [TEMPORAL], settings=replace(FAST, iterations=2),
                               generator=torch.Generator().manual_seed(0))
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


def test_crops_find_their_centres_once_not_on_the_clip_s_device_per_crop() -> None:
    """Each crop scanned its pattern's hidden entries for a centre and read one back: on a GPU
    two waits for its queue a crop, 16 an iteration at the default batch. The centres are found
    once per pattern, on the CPU; an iteration scans its hidden entries once, for its loss
    (HostTraffic counts on the CPU what would wait on a GPU)."""
    def scans(iterations: int) -> int:
        with HostTraffic() as traffic:
            learned_fill(wave(), pixels_missing(), [TEMPORAL],
                         settings=replace(FAST, iterations=iterations, batch=4),
                         generator=torch.Generator().manual_seed(0))
        return traffic.scans

    assert scans(3) - scans(1) == 2


def frames_computed(net: FillNet) -> list[int]:
    """How many frames (2-D images) each call of ``net``'s layers computes, from now on."""
    seen: list[int] = []
    net.layers.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    return seen


def test_training_computes_only_the_frames_of_a_crop_that_hide_an_entry(monkeypatch) -> None:
    """The net works frame by frame, so a crop's frames without a hidden entry teach nothing:
    8-frame crops of a clip that hides one pixel of frame 3, in one channel, give the net one
    frame a crop: not all 8, and not none (the entry is in the second channel, which a search
    of the first alone would miss). A second example hides a pixel of frame 6 far from the
    first's: its crops are drawn around its own entry, not the first example's."""
    module = importlib.import_module("stgconv.learned_fill")
    seen: list[list[int]] = []

    def recorded(*args) -> FillNet:
        net = FillNet(*args)
        seen.append(frames_computed(net))
        return net

    monkeypatch.setattr(module, "FillNet", recorded)
    video, known = wave()[:, :8], torch.ones(3, 8, 32, 32, dtype=torch.bool)
    known[1, 3, 5, 7] = False
    far = torch.ones(3, 8, 32, 32, dtype=torch.bool)
    far[0, 6, 30, 30] = False
    examples = [prior_example(video, mask, {"temporal_interpolation": TEMPORAL})
                for mask in (known, far)]
    _, losses = fill_prior(examples, settings=replace(FAST, batch=4, symmetric=True),
                           iterations=3, generator=torch.Generator().manual_seed(0))
    assert seen == [[4, 4, 4]] and all(math.isfinite(loss) for loss in losses)


@pytest.mark.parametrize("symmetric", [True, False])
def test_apply_fill_computes_only_the_frames_with_a_missing_entry_one_by_one(
        symmetric: bool) -> None:
    """Frames observed everywhere are not computed, the others one at a time, with the values
    the net gives the whole clip at once: not all 12 frames, each frame missing an entry once a
    view (none left out or computed twice), including a frame that misses an entry in the last
    channel alone. Without ``symmetric`` the one view is the clip as it is; no gradient is
    kept."""
    torch.manual_seed(0)
    net = FillNet(3, 1, 8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.layers[-1].weight, std=0.1)
    video, known = wave(), frames_missing(0).expand(3, -1, -1, -1).clone()
    observed_frame = int(known[0].flatten(1).all(1).nonzero()[0])
    known[2, observed_frame, 4, 4] = False  # the last channel's alone
    missing = int((~known).flatten(2).any(2).any(0).sum())
    assert 0 < missing < 12
    made = [TEMPORAL(video, known)]
    seen = frames_computed(net)
    filled = apply_fill(net, video, known, made, symmetric=symmetric)
    assert seen == [1] * ((2 if symmetric else 1) * missing) and not filled.requires_grad
    known = known.expand_as(video)
    inputs = fill_inputs(video, known, made)
    turned = _turned_backwards([known, known, inputs, video], 3)
    with torch.no_grad():
        plain = net(inputs[None], known[None].float())[0]
        back = net(turned[2][None], turned[1][None].float())[0].flip(-2, -1)
    whole = (plain + back) / 2 if symmetric else plain
    # To the rounding of float32: oneDNN may pick another kernel for one frame than for twelve
    # (measured: 1 unit in the last place here, none at the 70 x 150 x 150 clips).
    torch.testing.assert_close(filled, torch.where(known, video, whole.clamp(-1, 1)),
                               rtol=0, atol=1e-6)


def diagonal_gaps() -> tuple[torch.Tensor, torch.Tensor]:
    """A 1 x 4 x 4 x 4 clip (NaN where missing) whose frame ``t`` misses pixel ``(t, t)`` alone:
    another frame's missing pixel, laid over frame ``t``, names the shift it came from."""
    known = torch.ones(4, 4, 4, dtype=torch.bool)
    for t in range(4):
        known[t, t, t] = False
    video = torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return torch.where(known, video, torch.nan), known


def test_each_pattern_hides_observed_entries_where_another_frame_misses_them(monkeypatch):
    """Every one of ``patterns`` hides, in each frame (``hide_fraction`` 1), the pixel that a
    frame ``shift`` earlier misses, under more than one shift; its inputs are the fills made
    without the hidden entries, and the net sees neither them nor the missing ones (a 4-frame
    clip under 8-frame crops: each crop is the whole clip). The missing values are NaN, and
    neither the inputs nor the loss read them."""
    module = importlib.import_module("stgconv.learned_fill")
    observed, known = diagonal_gaps()
    patterns, seen = [], []

    def recorded_pattern(*args):
        patterns.append(make(*args))
        return patterns[-1]

    def recorded_net(*args) -> FillNet:
        net = FillNet(*args)
        net.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[1]))
        return net

    make = module._hidden_pattern
    monkeypatch.setattr(module, "_hidden_pattern", recorded_pattern)
    monkeypatch.setattr(module, "FillNet", recorded_net)
    settings = replace(FAST, iterations=2, batch=2, patterns=6, hide_fraction=1.0)
    _, losses = learned_fill(observed, known, [TEMPORAL], settings=settings,
                             generator=torch.Generator().manual_seed(0))
    assert len(patterns) == 6 and all(map(math.isfinite, losses))
    shifts = set()
    for hidden, visible, inputs, _ in patterns:
        shift = int(hidden[0, 0].nonzero()[0, 0]) * -1 % 4
        expected = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
        for t in range(4):
            expected[0, t, (t - shift) % 4, (t - shift) % 4] = True
        assert shift in (1, 2, 3) and torch.equal(hidden, expected)
        assert torch.equal(visible, known[None] & ~expected)
        torch.testing.assert_close(inputs, fill_inputs(observed, visible,
                                                       [TEMPORAL(observed, visible)]))
        shifts.add(shift)
    assert len(shifts) > 1
    # Each frame the net computes lacks two pixels: its missing one and its hidden one.
    assert all(torch.equal((v == 0).flatten(1).sum(1), torch.full((len(v),), 2)) for v in seen)


def test_each_training_step_follows_the_gradient_of_its_own_batch(monkeypatch) -> None:
    """Adam steps on the gradient of the current batch's loss, not on it added to the last
    batch's (the gradients are cleared between steps)."""
    module = importlib.import_module("stgconv.learned_fill")
    optimizers, own, stepped = [], [], []

    class Recording(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            optimizers.append(self)

        def step(self, closure=None):
            stepped.append([p.grad.clone() for p in self.param_groups[0]["params"]])
            return super().step(closure)

    def recording(error, kind, *, second_half):
        value = loss(error, kind, second_half=second_half)
        params = optimizers[-1].param_groups[0]["params"]
        own.append(torch.autograd.grad(value, params, retain_graph=True))
        return value

    loss = module._loss
    monkeypatch.setattr(torch.optim, "Adam", Recording)
    monkeypatch.setattr(module, "_loss", recording)
    learned_fill(wave(), pixels_missing(), [TEMPORAL], settings=replace(FAST, iterations=2),
                 generator=torch.Generator().manual_seed(0))
    assert len(stepped) == len(own) == 2
    for step, grads in zip(stepped, own):
        assert all(torch.equal(a, b) for a, b in zip(step, grads))


def test_crops_are_drawn_around_every_hidden_entry_and_stay_inside_the_grid() -> None:
    """Two hidden entries, one in a corner: 1-pixel crops land on each of them (the centre is
    drawn, not the first one taken), and 3 x 3 x 3 crops around the corner stay whole."""
    hidden = torch.zeros(1, 5, 6, 6, dtype=torch.bool)
    hidden[0, 1, 2, 3] = hidden[0, 4, 5, 5] = True
    g = torch.Generator().manual_seed(0)
    centres = _crop_centres(hidden)
    landed = {tuple(s.start for s in _crop(centres, hidden.shape[1:], (1, 1, 1), g)[1:])
              for _ in range(20)}
    assert landed == {(1, 2, 3), (4, 5, 5)}
    for _ in range(20):
        where = _crop(centres, hidden.shape[1:], (3, 3, 3), g)
        assert hidden[where].shape == (1, 3, 3, 3) and hidden[where].any()


def constant_fill(missing: float, observed_shift: float = 0.0):
    """A fill that puts ``missing`` at every missing entry and moves the observed ones by
    ``observed_shift``."""
    def fill(video: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return torch.where(known, video + observed_shift, torch.tensor(missing))
    return fill


def test_a_prior_example_ranks_fills_by_their_absolute_error_at_the_missing_entries() -> None:
    """The truth is 0 where missing: "half" errs by 0.5 there (and by 1 at every observed
    entry), "minus" by -0.7. The absolute error at the missing entries puts "half" first; a
    signed error, or one over every entry, would put "minus" first."""
    truth = torch.zeros(1, 4, 4, 4)
    known = pixels_missing()[:4, :4, :4]
    fills = {"minus": constant_fill(-0.7), "half": constant_fill(0.5, observed_shift=1.0)}
    _, _, inputs, _ = prior_example(truth, known, fills)
    assert torch.equal(inputs[0][~known], torch.full((int((~known).sum()),), 0.5).half())


def test_a_prior_example_s_fills_never_see_the_truth_at_missing_entries() -> None:
    """Two clips that differ only where the mask hides them give the same inputs, even to a fill
    that reads every entry it is given."""
    def reads_everything(video: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return video.clone()

    video, known = wave(), pixels_missing()
    other = torch.where(known, video, video.flip(0))
    inputs = [prior_example(clip, known, {"reads": reads_everything})[2] for clip in (video, other)]
    assert torch.equal(*inputs)
