"""Sample-quality statistics: zero on identical sets, ordered sensibly on known random processes,
exact on hand-computed voxel cases, and loud on bad shapes or NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stgconv.evaluation import quality
from stgconv.evaluation.quality import (
    EPS,
    FILTER_NAMES,
    class_entropy,
    filter_statistics,
    filter_statistics_distance,
    frechet_distance,
    nearest_iou,
    power_spectrum,
    power_spectrum_distance,
    spread,
    video_statistics_distance,
)


def smooth_field(shape: tuple[int, ...], *, sigma: float, seed: int) -> torch.Tensor:
    """Stationary Gaussian random field on the torus: white noise blurred over the last two dims
    by a Gaussian of std ``sigma`` pixels (in Fourier space), scaled to pixel std 0.3."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    fy = torch.fft.fftfreq(shape[-2], dtype=torch.float64)
    fx = torch.fft.fftfreq(shape[-1], dtype=torch.float64)
    gain = torch.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None].square() + fx[None, :].square()))
    field = torch.fft.ifft2(torch.fft.fft2(noise) * gain).real
    return (0.3 * field / field.std()).float()


def white_noise(shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    return 0.3 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# Filter statistics
# --------------------------------------------------------------------------------------------


def test_filter_statistics_layout_follows_the_bank_and_channels():
    # A ramp along the width, steeper in channel 1: dx is constant; dy, the Laplacian and the
    # (even, zero-sum) Gabors all cancel on a linear ramp.
    ramp = torch.arange(16, dtype=torch.float64) / 100
    x = torch.stack([ramp, 2 * ramp]).reshape(1, 2, 1, 16).expand(3, 2, 12, 16).float()
    stats = filter_statistics(x).reshape(3, len(FILTER_NAMES), 2)
    mean, std = stats[0], stats[1]
    dx, dy = FILTER_NAMES.index("dx"), FILTER_NAMES.index("dy")
    assert mean[dx].tolist() == pytest.approx([0.01, 0.02])
    assert std[dx].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert stats[:, dy].abs().max() < 1e-7
    assert stats[:, FILTER_NAMES.index("laplacian"):].abs().max() < 1e-7
    assert stats.dtype == torch.float64


def test_filter_distance_is_zero_for_identical_sets():
    x = smooth_field((4, 3, 16, 16), sigma=1.5, seed=0)
    assert filter_statistics_distance(x, x.clone()) == 0.0


def test_filter_distance_separates_noise_from_the_same_smooth_process():
    data = smooth_field((16, 1, 32, 32), sigma=2.0, seed=0)
    same_process = smooth_field((16, 1, 32, 32), sigma=2.0, seed=1)
    noise = white_noise((16, 1, 32, 32), seed=2)  # same pixel std, no spatial correlation
    near = filter_statistics_distance(same_process, data)
    far = filter_statistics_distance(noise, data)
    assert near < 0.1
    assert far > 1.0
    assert far > 10 * near


def grating(side: int, wavelength: float, degrees: float) -> torch.Tensor:
    """``(1, 1, side, side)`` cosine varying along ``degrees`` from the width axis (rows down)."""
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float64),
                                torch.arange(side, dtype=torch.float64), indexing="ij")
    angle = math.radians(degrees)
    u = cols * math.cos(angle) + rows * math.sin(angle)
    return torch.cos(2 * math.pi * u / wavelength)[None, None]


def test_gabors_have_zero_sum_unit_norm_and_their_named_wavelength_and_angle():
    gabors = quality.filter_bank()[FILTER_NAMES.index("gabor1_0"):]
    assert gabors.sum(dim=(1, 2)).abs().max() < 1e-12
    torch.testing.assert_close(gabors.square().sum(dim=(1, 2)),
                               torch.ones(8, dtype=torch.float64))
    for sigma in (1, 2):
        names = [f"gabor{sigma}_{degrees}" for degrees in (0, 45, 90, 135)]
        for degrees in (0, 45, 90, 135):
            mean_abs = filter_statistics(grating(40, 4 * sigma, degrees)).reshape(3, 12)[2]
            responses = mean_abs[[FILTER_NAMES.index(name) for name in names]]
            assert names[int(responses.argmax())] == f"gabor{sigma}_{degrees}"
    # gabor2_0 is tuned to its wavelength 8: half or twice that excites it less. (Sigma 1's
    # envelope spans barely one wavelength, too few cycles for so sharp a tuning.)
    tuned = [filter_statistics(grating(40, wavelength, 0)).reshape(3, 12)[
        2, FILTER_NAMES.index("gabor2_0")] for wavelength in (4, 8, 16)]
    assert tuned[1] > max(tuned[0], tuned[2])


def test_gabor_envelopes_have_their_named_std():
    """Across its carrier (along the height, at angle 0) a Gabor is its envelope times a
    constant: the rows beside the centre fall by exp(-1 / (2 sigma^2))."""
    bank = quality.filter_bank()
    for sigma in (1, 2):
        gabor = bank[FILTER_NAMES.index(f"gabor{sigma}_0")]
        assert float(gabor[6, 5] / gabor[5, 5]) == pytest.approx(math.exp(-1 / (2 * sigma**2)))


def test_the_identity_filter_reads_the_valid_region():
    x = white_noise((1, 1, 13, 17), seed=0)
    mean = filter_statistics(x).reshape(3, len(FILTER_NAMES))[0, FILTER_NAMES.index("identity")]
    assert float(mean) == pytest.approx(float(x[..., 5:-5, 5:-5].double().mean()))


def test_filter_statistics_and_spectrum_do_not_depend_on_chunking(monkeypatch):
    x = smooth_field((5, 2, 14, 13), sigma=1.0, seed=3)
    whole, spectrum = filter_statistics(x), power_spectrum(x)
    monkeypatch.setattr(quality, "_CHUNK_ELEMENTS", 1)  # one image per chunk
    torch.testing.assert_close(filter_statistics(x), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(power_spectrum(x), spectrum, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Power spectrum
# --------------------------------------------------------------------------------------------


def test_power_spectrum_of_white_noise_is_flat_at_its_variance():
    spectrum = power_spectrum(white_noise((16, 2, 32, 32), seed=0))
    assert spectrum.shape == (16,)
    assert spectrum.tolist() == pytest.approx([math.log10(0.09)] * 16, abs=0.15)


def test_power_spectrum_of_a_smooth_field_decays():
    spectrum = power_spectrum(smooth_field((8, 1, 32, 32), sigma=2.0, seed=0))
    assert spectrum.shape == (16,)
    assert spectrum[:4].min() > spectrum[-4:].max() + 3  # three decades at least
    assert (spectrum[1:] <= spectrum[:-1] + 1e-9).all()


def test_power_spectrum_rings_are_in_units_of_the_shorter_side():
    """A cosine of 2 cycles per 16 rows in 16 x 32 images: ring 2 of the shorter side, entry 1."""
    rows = torch.arange(16, dtype=torch.float64)[:, None].expand(16, 32)
    spectrum = power_spectrum(torch.cos(2 * math.pi * 2 * rows / 16)[None, None])
    assert spectrum.shape == (8,)
    assert int(spectrum.argmax()) == 1
    assert power_spectrum(white_noise((1, 1, 9, 11), seed=0)).shape == (4,)  # up to Nyquist


def test_power_spectrum_rings_round_the_radius():
    """A cosine of (2, 3) cycles per 16 pixels lies at radius sqrt(13) = 3.6: ring 4, entry 3."""
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    spectrum = power_spectrum(torch.cos(2 * math.pi * (2 * rows + 3 * cols) / 16)[None, None])
    assert int(spectrum.argmax()) == 3


def test_power_spectrum_distance_ignores_shifts_and_sees_noise():
    data = smooth_field((8, 1, 32, 32), sigma=2.0, seed=0)
    assert power_spectrum_distance(data, data) == 0.0
    shifted = torch.roll(data, shifts=(5, -3), dims=(2, 3))
    assert power_spectrum_distance(shifted, data) < 1e-12
    # A shift that is not circular: a window of the same field at another offset.
    big = smooth_field((8, 1, 48, 48), sigma=2.0, seed=4)
    window_shift = power_spectrum_distance(big[..., 7:39, 3:35], big[..., :32, :32])
    noise = power_spectrum_distance(white_noise((8, 1, 32, 32), seed=1), data)
    assert window_shift < 0.5
    assert noise > 3.0


def test_power_spectrum_distance_averages_the_absolute_ring_differences() -> None:
    """Unit cosines of 1 and 2 cycles per 16 rows in 16 x 16 images: power 128^2 / (16 * 16)
    = 64 at each of their two frequencies, a mean of 128 / 8 over the 8 frequencies of ring 1
    and 128 / 12 over the 12 of ring 2, every other ring at the floor (-12). Each set is above
    the other on one ring: the differences add, they do not cancel."""
    rows = torch.arange(16, dtype=torch.float64)[:, None].expand(16, 16)
    one, two = (torch.cos(2 * math.pi * k * rows / 16)[None, None] for k in (1, 2))
    expected = ((math.log10(16) + 12) + (math.log10(128 / 12) + 12)) / 8
    assert power_spectrum_distance(one, two) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------


def test_video_distance_detects_a_static_clip():
    flicker = smooth_field((4, 1, 6, 16, 16), sigma=1.5, seed=0)  # every frame independent
    other_flicker = smooth_field((4, 1, 6, 16, 16), sigma=1.5, seed=1)
    static = flicker[:, :, :1].expand(-1, -1, 6, -1, -1)  # one frame held for the whole clip

    assert video_statistics_distance(flicker, flicker) == {"spatial": 0.0, "temporal": 0.0}
    assert video_statistics_distance(static, static)["temporal"] == 0.0
    moving = video_statistics_distance(other_flicker, flicker)
    frozen = video_statistics_distance(static, flicker)
    assert moving["temporal"] < 0.1
    assert frozen["temporal"] > 0.6  # std and mean |diff| both off by 100 %
    assert frozen["spatial"] < 0.3  # each frame still looks right


def test_video_spatial_distance_is_of_every_frame() -> None:
    """Clips whose first frame matches the data's and whose later frames are flat: spatial is
    the filter distance of all frames taken as images, not of the first frames alone."""
    data = smooth_field((2, 1, 3, 12, 12), sigma=1.5, seed=0)
    samples = data.clone()
    samples[:, :, 1:] = 0.0
    spatial = video_statistics_distance(samples, data)["spatial"]
    frames = filter_statistics_distance(samples.transpose(1, 2).flatten(0, 1),
                                        data.transpose(1, 2).flatten(0, 1))
    assert spatial == pytest.approx(frames, rel=1e-12) and spatial > 0.3


# --------------------------------------------------------------------------------------------
# Voxels
# --------------------------------------------------------------------------------------------


def test_nearest_iou_exact_match_disjoint_and_hand_computed():
    reference = torch.zeros(3, 1, 2, 2, 2)
    reference[0].view(-1)[[1, 2, 3, 4]] = 1.0
    reference[1].view(-1)[[5, 6]] = 0.9
    reference[2].view(-1)[[0, 1, 2, 3, 4, 5, 6]] = 1.0
    samples = torch.zeros(3, 2, 2, 2)  # the other accepted layout, (N, D, H, W)
    samples[0] = reference[1, 0]  # equals a reference shape
    samples[1].view(-1)[7] = 1.0  # the one voxel no reference holds
    samples[2].view(-1)[[0, 1, 2]] = 0.5  # at the threshold: occupied
    iou = nearest_iou(samples, reference)
    # Sample 2 vs reference 0: {0,1,2} & {1,2,3,4} = 2 of 5; vs reference 2: 3 of 7.
    assert iou.tolist() == pytest.approx([1.0, 0.0, 3 / 7])
    assert iou.dtype == torch.float64


def test_nearest_iou_counts_exactly_past_half_precision():
    """13^3 = 2197 voxels, two of them off: 2195 / 2197 exactly (float16 would round 2195)."""
    full = torch.ones(1, 1, 13, 13, 13)
    holed = full.clone()
    holed.view(-1)[:2] = 0.0
    assert nearest_iou(holed, full).tolist() == [2195 / 2197]


def test_nearest_iou_empty_shapes():
    reference = torch.zeros(2, 1, 3, 3, 3)
    reference[1, 0, 1, 1, 1] = 1.0
    empty = torch.zeros(1, 1, 3, 3, 3)
    assert nearest_iou(empty, reference).tolist() == [1.0]  # empty matches empty
    assert nearest_iou(empty, reference[1:]).tolist() == [0.0]  # empty vs non-empty: disjoint


def test_nearest_iou_does_not_depend_on_batch():
    g = torch.Generator().manual_seed(0)
    samples = torch.rand(5, 1, 6, 6, 6, generator=g)
    reference = torch.rand(7, 1, 6, 6, 6, generator=g)
    chunked = nearest_iou(samples, reference, batch=2)
    assert torch.equal(chunked, nearest_iou(samples, reference, batch=1))
    assert torch.equal(chunked, nearest_iou(samples, reference))
    assert nearest_iou(samples[3:4], samples >= 0.5).tolist() == [1.0]  # bool occupancy


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

IMAGES = torch.zeros(2, 1, 16, 16)
VIDEOS = torch.zeros(2, 1, 3, 16, 16)
VOXELS = torch.zeros(2, 1, 4, 4, 4)


def with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[0] = math.nan
    return x


@pytest.mark.parametrize(("call", "message"), [
    (lambda: filter_statistics(torch.zeros(1, 16, 16)), r"\(B, C, H, W\)"),
    (lambda: filter_statistics(torch.zeros(2, 1, 10, 16)), r"\(B, C, H, W\) with H, W >= 11"),
    (lambda: filter_statistics(torch.zeros(0, 1, 16, 16)), "B >= 1"),
    (lambda: filter_statistics(torch.zeros(2, 1, 16, 16, dtype=torch.uint8)), "float"),
    (lambda: filter_statistics(torch.zeros(2, 1, 16, 10)), r"\(B, C, H, W\) with H, W >= 11"),
    (lambda: filter_statistics(IMAGES.tolist()), r"\(B, C, H, W\) with H, W >= 11, got list"),
    (lambda: filter_statistics(with_nan(IMAGES)), "NaN"),
    (lambda: filter_statistics(IMAGES.clone().fill_(math.inf)), "holds 512 NaN or infinite"),
    (lambda: filter_statistics(with_nan(IMAGES.clone().fill_(math.inf))), "holds 512 NaN"),
    (lambda: filter_statistics_distance(IMAGES, torch.zeros(2, 3, 16, 16)), r"same C"),
    (lambda: filter_statistics_distance(torch.zeros(2, 3, 16, 16), IMAGES), r"same C"),
    (lambda: filter_statistics_distance(IMAGES, torch.zeros(2, 1, 16, 10)),
     r"data must be images \(B, C, H, W\) with H, W >= 11"),
    (lambda: filter_statistics_distance(IMAGES, with_nan(IMAGES)), "NaN"),
    (lambda: power_spectrum(torch.zeros(2, 1, 1, 16)), r"\(B, C, H, W\) with H, W >= 2"),
    (lambda: power_spectrum_distance(IMAGES, torch.zeros(2, 1, 16, 18)), r"same C, H, W"),
    (lambda: power_spectrum_distance(IMAGES, IMAGES.expand(-1, 2, -1, -1)), r"same C, H, W"),
    (lambda: power_spectrum_distance(with_nan(IMAGES), IMAGES), "NaN"),
    (lambda: video_statistics_distance(IMAGES, VIDEOS), r"\(B, C, T, H, W\)"),
    (lambda: video_statistics_distance(VIDEOS[:, :, :1], VIDEOS), "T >= 2"),
    (lambda: video_statistics_distance(VIDEOS[:, :, :, :10], VIDEOS), "H, W >= 11"),
    (lambda: video_statistics_distance(VIDEOS, VIDEOS[..., :10]), "data must be .* H, W >= 11"),
    (lambda: video_statistics_distance(VIDEOS, VIDEOS.expand(-1, 2, -1, -1, -1)), "same C"),
    (lambda: video_statistics_distance(VIDEOS, with_nan(VIDEOS)), "NaN"),
    (lambda: nearest_iou(torch.zeros(2, 4, 4), VOXELS), r"\(N, 1, D, H, W\) or \(N, D, H, W\)"),
    (lambda: nearest_iou(torch.zeros(2, 2, 4, 4, 4), VOXELS), r"\(N, 1, D, H, W\)"),
    (lambda: nearest_iou(VOXELS, torch.zeros(2, 1, 4, 4, 5)), r"same \(D, H, W\)"),
    (lambda: nearest_iou(VOXELS, VOXELS[:0]), "N >= 1"),
    (lambda: nearest_iou(VOXELS, with_nan(VOXELS)), "NaN"),
    (lambda: nearest_iou(VOXELS, VOXELS, threshold=math.nan), "threshold"),
    (lambda: nearest_iou(VOXELS, VOXELS, threshold=math.inf), "threshold must be finite"),
    (lambda: nearest_iou(VOXELS, VOXELS, batch=0), "batch"),
    (lambda: class_entropy(torch.zeros(3, 1, dtype=torch.long), 2), r"non-empty \(N,\)"),
    (lambda: class_entropy(torch.zeros(0, dtype=torch.long), 2), r"non-empty \(N,\)"),
    (lambda: frechet_distance(with_nan(torch.zeros(3, 2)), torch.ones(3, 2)), "a .* holds 1 NaN"),
    # Arrays of a user's own features and labels: an AttributeError on .dim() before.
    (lambda: frechet_distance(np.zeros((3, 2)), torch.ones(3, 2)),
     r"^a must be \(N, F\) features with N >= 2, got ndarray$"),
    (lambda: frechet_distance(torch.ones(3, 2), [[0.0, 1.0]] * 3),
     r"^b must be \(N, F\) features with N >= 2, got list$"),
    (lambda: frechet_distance(torch.ones(0, 2), torch.ones(3, 2)),
     r"^a must be \(N, F\) features with N >= 2, got \(0, 2\)$"),
    (lambda: class_entropy(np.array([0, 1]), 2), r"^labels must be a non-empty \(N,\) tensor, got "
                                                 r"ndarray$"),
    (lambda: class_entropy([0, 1], 2), r"^labels must be a non-empty \(N,\) tensor, got list$"),
    # Two bool "classes" scored log 2; a float class count failed in bincount's words.
    (lambda: class_entropy(torch.tensor([True, False]), 2),
     r"^labels must be class numbers 0 \.\. n_classes - 1, got torch.bool$"),
    (lambda: class_entropy(torch.tensor([0, 1]), 2.5), r"^n_classes must be an int >= 1, got 2.5$"),
    (lambda: class_entropy(torch.tensor([0]), 0), r"^n_classes must be an int >= 1, got 0$"),
])
def test_bad_inputs_raise_naming_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _on_meta(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, device="meta")


@pytest.mark.parametrize(("call", "name"), [
    (lambda: filter_statistics(_on_meta(IMAGES)), "x"),
    (lambda: filter_statistics_distance(IMAGES, _on_meta(IMAGES)), "data"),
    (lambda: power_spectrum_distance(_on_meta(IMAGES), IMAGES), "samples"),
    (lambda: video_statistics_distance(VIDEOS, _on_meta(VIDEOS)), "data"),
    (lambda: nearest_iou(VOXELS, _on_meta(VOXELS)), "reference"),
    (lambda: frechet_distance(_on_meta(torch.zeros(3, 2)), torch.ones(3, 2)), "a"),
    (lambda: spread(_on_meta(torch.zeros(3, 2))), "x"),
    (lambda: class_entropy(_on_meta(torch.zeros(3, dtype=torch.long)), 2), "labels"),
])
def test_a_tensor_on_the_meta_device_is_named(call, name: str) -> None:
    """Tensors of shapes without values failed inside torch ("Tensor.item() cannot be called
    on meta tensors"), naming no argument, as the scores of stgconv.metrics name them."""
    with pytest.raises(ValueError, match=f"^{name} is on the meta device"):
        call()


@pytest.mark.parametrize(("call", "message"), [
    (lambda: nearest_iou(VOXELS, VOXELS, batch=1.5), r"^batch must be an int >= 1, got 1.5$"),
    (lambda: frechet_distance(torch.zeros(3, 0), torch.zeros(3, 0)),
     r"^a and b must hold at least one feature, got \(3, 0\) and \(3, 0\)$"),
    (lambda: spread(torch.tensor(1.0)), r"^spread needs at least 2 examples \(N, \.\.\.\), got "
                                        r"a 0-d tensor$"),
], ids=["float batch", "no features", "0-d spread"])
def test_arguments_torch_failed_on_are_named(call, message: str) -> None:
    """Each failed inside torch: a float batch in split ("must be tuple of ints, not float"),
    no features in a reshape ("cannot reshape tensor of 0 elements"), a 0-d tensor in len()."""
    with pytest.raises(ValueError, match=message):
        call()


def test_frechet_distance_of_gaussians_matches_the_closed_form() -> None:
    """Diagonal covariances: |mu_a - mu_b|^2 + sum (s_a - s_b)^2, from large samples."""
    from stgconv.evaluation.quality import frechet_distance

    g = torch.Generator().manual_seed(0)
    n = 200_000
    a = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    b = (torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.5, 2.0, 1.0])
         + torch.tensor([1.0, 0.0, -2.0]))
    expected = (1 + 0 + 4) + (0.5**2 + 0 + 0.5**2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="features"):
        frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="N >= 2"):  # one example has no covariance
        frechet_distance(a[:1], b)


def test_spread_and_class_entropy() -> None:
    from stgconv.evaluation.quality import class_entropy, spread

    same = torch.ones(5, 1, 4, 4)
    assert spread(same) == 0.0
    assert spread(torch.tensor([[0.0], [2.0]])) == pytest.approx(math.sqrt(2.0))
    assert class_entropy(torch.arange(10).repeat(3), 10) == pytest.approx(math.log(10))
    assert class_entropy(torch.zeros(7, dtype=torch.long), 10) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        spread(same[:1])
    with pytest.raises(ValueError, match="holds 1 NaN"):
        spread(torch.tensor([[math.nan], [1.0]]))
    # A label past the classes would add a bin: entropy above log(n_classes).
    for labels in (torch.arange(4), torch.tensor([0, 2]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match=r"classes 0 \.\. 1"):
            class_entropy(labels, 2)
    # Fractional labels were cut to whole ones (0.5, 1.5 read as classes 0 and 1: log 2).
    with pytest.raises(ValueError, match="whole class numbers"):
        class_entropy(torch.tensor([0.5, 1.5]), 2)
    assert class_entropy(torch.tensor([0.0, 1.0]), 2) == pytest.approx(math.log(2))
    # An infinite label failed with an OverflowError, NaN was called a fraction.
    for not_a_class in (math.inf, math.nan):
        with pytest.raises(ValueError, match="whole class numbers, got NaN or infinite values"):
            class_entropy(torch.tensor([0.0, not_a_class]), 2)
    # Pixels in 0-255 or a list are not samples in the model's units.
    for not_float in (torch.full((2, 3), 200, dtype=torch.uint8), [[0.0], [1.0]]):
        with pytest.raises(ValueError, match="a float tensor in the model's units"):
            spread(not_float)


def test_frechet_distance_of_non_commuting_covariances_by_closed_form() -> None:
    """For 2x2 covariances tr((A B)^(1/2)) = sqrt(tr(A B) + 2 sqrt(det A det B)); rotated
    samples make A and B not commute, where a product of square roots would be wrong."""
    a = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = a @ torch.tensor([[2.0, 0.0], [0.0, 0.3]], dtype=torch.float64)
    rotation = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) / math.sqrt(2)
    b = torch.randn(60, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b = b @ torch.tensor([[1.5, 0.0], [0.0, 0.2]], dtype=torch.float64) @ rotation + 1.0
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    cross = math.sqrt(float((cov_a @ cov_b).trace())
                      + 2 * math.sqrt(float(cov_a.det() * cov_b.det())))
    expected = float((a.mean(0) - b.mean(0)).pow(2).sum() + cov_a.trace() + cov_b.trace())
    assert frechet_distance(a, b) == pytest.approx(expected - 2 * cross, rel=1e-9)


def test_spread_is_across_examples_not_within_one() -> None:
    assert spread(torch.arange(4.0).expand(3, 4)) == 0.0
    # Averaged over the entries: one entry of std sqrt 2 beside one that never varies.
    assert spread(torch.tensor([[0.0, 1.0], [2.0, 1.0]])) == pytest.approx(math.sqrt(2) / 2)


def test_temporal_statistics_are_of_consecutive_frames() -> None:
    """A clip flickering with period 2 (opposite phases in its two examples, so the mean frame
    difference is 0) against a static one: 2 / 3, which a lag other than 1 would not give."""
    wave = 0.5 * (-1.0) ** torch.arange(4.0)
    data = wave.view(1, 1, 4, 1, 1).expand(2, 1, 4, 11, 11).clone()
    data[1] *= -1
    static = torch.zeros(2, 1, 4, 11, 11)
    assert video_statistics_distance(static, data)["temporal"] == pytest.approx(2 / 3)


def test_temporal_statistics_are_per_channel() -> None:
    """Channel 0 moves and channel 1 stands still in the data; the samples swap them. Pooled over
    channels the two would look alike; per channel each is off."""
    moving = smooth_field((2, 1, 4, 11, 11), sigma=1.0, seed=0)
    still = moving[:, :, :1].expand(-1, -1, 4, -1, -1)
    data = torch.cat([moving, still], dim=1)
    samples = torch.cat([still, moving], dim=1)
    assert video_statistics_distance(samples, data)["temporal"] > 0.5


def test_a_constant_image_has_zero_not_nan_spread() -> None:
    """A flat image's responses do not vary: every std is 0, and rounding in E[r^2] - E[r]^2
    (slightly negative for this value and size) never turns into a NaN."""
    x = torch.full((1, 1, 17, 17), 0.95)
    stats = filter_statistics(x).reshape(3, 12, 1)
    assert torch.isfinite(stats).all()
    assert stats[1, 0, 0].item() == 0.0  # the identity filter's std


def test_mean_abs_is_compared_relative_to_the_datas_mean_abs() -> None:
    """Flat images 0.25 against flat data 0.5: only the identity filter responds; its mean
    is off by 0.25 in units of the data's std (0, floored at EPS), its mean |r| by half of
    the data's mean |r|; the average runs over all 36 statistics."""
    samples = torch.full((1, 1, 11, 11), 0.25, dtype=torch.float64)
    data = torch.full((2, 1, 12, 12), 0.5, dtype=torch.float64)
    expected = (0.25 / EPS + 0.25 / 0.5) / 36
    assert filter_statistics_distance(samples, data) == pytest.approx(expected, rel=1e-9)


def test_a_std_is_compared_relative_to_the_datas_std() -> None:
    """Frame differences 0.2 everywhere against data whose differences are 0.1 in one clip and
    0.3 in the other (mean 0.2, std 0.1, mean |.| 0.2): only the std is off, by all of the
    data's std, and the average runs over the 3 statistics."""
    def step(*heights: float) -> torch.Tensor:
        clips = torch.zeros(len(heights), 1, 2, 11, 11, dtype=torch.float64)
        clips[:, 0, 1] = torch.tensor(heights, dtype=torch.float64)[:, None, None]
        return clips
    temporal = video_statistics_distance(step(0.2), step(0.1, 0.3))["temporal"]
    assert temporal == pytest.approx(1 / 3)


def test_frechet_distance_of_a_rank_deficient_set_to_itself_is_zero() -> None:
    """Fewer examples than features give a singular covariance whose zero eigenvalues come
    out slightly negative: they count as 0, and the distance of the set to itself is 0."""
    a = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    distance = frechet_distance(a, a)
    # Unclamped, this set's round-off comes out at -1e-7: a distance is never negative.
    assert math.isfinite(distance) and 0.0 <= distance < 1e-6


def test_a_steady_drift_has_the_same_motion_at_any_length() -> None:
    """Every frame 0.1 brighter than the one before: the frame differences are the same 0.1 in
    a clip of 4 frames and one of 8, so their motion matches (differences from the first frame
    would grow with the length)."""
    def drift(frames: int) -> torch.Tensor:
        return (0.1 * torch.arange(frames) - 0.3).view(1, 1, frames, 1, 1).expand(
            2, 1, frames, 11, 11).contiguous()

    assert video_statistics_distance(drift(4), drift(8))["temporal"] == pytest.approx(0, abs=1e-3)


def test_a_spike_meets_the_centre_of_the_laplacian_and_the_differences() -> None:
    """An 11 x 11 image has one valid position, the centre: a spike there responds with the
    centre weight of each filter, -4 for the Laplacian and -1 for dx and dy."""
    spike = torch.zeros(1, 1, 11, 11)
    spike[0, 0, 5, 5] = 1.0
    mean = filter_statistics(spike).reshape(3, len(FILTER_NAMES))[0]
    assert [float(mean[FILTER_NAMES.index(name)]) for name in ("laplacian", "dx", "dy")] == [
        -4.0, -1.0, -1.0]


def test_a_difference_of_one_grey_level_between_flat_sets_counts_eight_data_floors() -> None:
    """The floor on the data's scale is an eighth of an 8-bit grey level on [-1, 1]: flat images
    one grey level off flat data have their identity mean off by about 8 of it."""
    grey = 2 / 255
    samples = torch.full((1, 1, 11, 11), 0.5 + grey, dtype=torch.float64)
    data = torch.full((1, 1, 11, 11), 0.5, dtype=torch.float64)
    expected = (grey / 1e-3 + grey / 0.5) / 36  # mean (floored scale) and mean |r|
    assert filter_statistics_distance(samples, data) == pytest.approx(expected, rel=1e-9)


def test_a_faint_spectrum_is_measured_below_quantisation_noise() -> None:
    """White noise of std 1e-4 has power 1e-8 at every ring, far above the floor; a constant
    image sits at the floor, 1e-12."""
    faint = 1e-4 * torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    assert power_spectrum(faint).tolist() == pytest.approx([-8.0] * 8, abs=0.3)
    assert power_spectrum(torch.full((1, 1, 8, 8), 0.3)).tolist() == [-12.0] * 4


def test_a_reference_voxel_at_the_threshold_is_occupied() -> None:
    reference = torch.zeros(1, 1, 2, 2, 2)
    reference.view(-1)[[0, 3]] = 0.5
    samples = torch.zeros(1, 1, 2, 2, 2)
    samples.view(-1)[[0, 3]] = 1.0
    assert nearest_iou(samples, reference).tolist() == [1.0]


def test_frechet_distance_of_float32_features_is_computed_in_float64() -> None:
    """Features far from 0 with a small spread: float32 covariances would lose their digits."""
    g = torch.Generator().manual_seed(0)
    a = 1000 + torch.randn(40, 3, generator=g)
    b = 1000.5 + 2 * torch.randn(50, 3, generator=g)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(a.double(), b.double()),
                                                   rel=1e-12)


def test_frechet_distance_of_one_feature_is_of_two_normals() -> None:
    """(m_a - m_b)^2 + (s_a - s_b)^2: means 1 and 2, variances 2 and 8 (std sqrt 2, 2 sqrt 2)."""
    a = torch.tensor([[0.0], [2.0]])
    b = torch.tensor([[0.0], [4.0]])
    assert frechet_distance(a, b) == pytest.approx(1 + 2, rel=1e-12)


def test_spread_of_bfloat16_samples_is_computed_in_float64() -> None:
    assert spread(torch.tensor([[0.0], [1.0]], dtype=torch.bfloat16)) == pytest.approx(
        math.sqrt(0.5), rel=1e-12)
