"""Sample-quality statistics: how close generated images, videos and voxel shapes are to real data.

Used to compare samplers (e.g. single-grid vs multigrid chains) by what their samples look like,
not by their energies. Every function is pure and deterministic, works in float64, and refuses
NaN or infinite inputs (a diverged chain is reported, never scored).

- :func:`filter_statistics` / :func:`filter_statistics_distance`: mean, std and mean ``|r|`` of
  the responses ``r`` to a fixed bank of 12 small filters (:data:`FILTER_NAMES`), compared as
  relative differences. Texture statistics in the spirit of the FRAME / descriptor papers.
- :func:`power_spectrum` / :func:`power_spectrum_distance`: radially averaged log10 power.
- :func:`video_statistics_distance`: the filter statistics of the frames plus the same three
  statistics of the frame differences (motion).
- :func:`nearest_iou`: per generated shape, the best IoU with any reference shape.
- :func:`frechet_distance` (features of any network, e.g. a digit classifier's) and
  :func:`spread` (how different the samples are from one another) and :func:`class_entropy`.

Layouts are those of :mod:`stgconv.types`: images ``(B, C, H, W)`` and videos ``(B, C, T, H, W)``
in ``[-1, 1]``, voxels ``(N, 1, D, H, W)`` (or ``(N, D, H, W)``) of occupancy in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stgconv.checks import as_int, check_not_meta, check_whole_labels

FILTER_NAMES = (
    "identity", "dx", "dy", "laplacian",
    "gabor1_0", "gabor1_45", "gabor1_90", "gabor1_135",
    "gabor2_0", "gabor2_45", "gabor2_90", "gabor2_135",
)
"""The filter bank, in order: first differences ``dx = x[.., j+1] - x[.., j]`` (along the width)
and ``dy`` (along the height), the 3x3 Laplacian, and cosine-phase Gabors with envelope std
``sigma`` in {1, 2} pixels (``gabor<sigma>_<angle>``), wavelength ``4 sigma`` and the carrier
varying along the angle in degrees from the width axis; each Gabor has zero sum (so it ignores
flat regions) and unit L2 norm (so white noise of std ``s`` responds with std ``s``)."""

FILTER_SIZE = 11
"""Side of every filter: responses are taken on the valid ``(H - 10, W - 10)`` region only, so
no padding is ever measured. A Gabor of sigma 2 is truncated at 2.5 sigma."""

STATISTICS = ("mean", "std", "mean_abs")
"""The statistics of each response, pooled over the batch and all valid positions."""

EPS = 1e-3
"""Floor on the data's scale in relative differences: an eighth of one 8-bit grey level on
``[-1, 1]``, so a difference only becomes absolute where the data barely vary at all."""

POWER_FLOOR = 1e-12
"""Floor on a ring's mean power before the log10: far below 8-bit quantisation noise (~5e-6), it
keeps the spectrum of constant images finite (-12) instead of ``-inf``."""

_CHUNK_ELEMENTS = 2**24
"""Float64 values (128 MiB) held at once by one chunk of filter responses or Fourier powers."""


def _check_finite_float(x: Tensor, name: str, layout: str, dims: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != dims:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be {layout}, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be float {layout}, got dtype {x.dtype}")
    _check_nonempty_finite(x, name, layout, count="B")


def _check_nonempty_finite(x: Tensor, name: str, layout: str, *, count: str) -> None:
    if x.shape[0] == 0:
        raise ValueError(f"{name} must be {layout} with {count} >= 1, got {tuple(x.shape)}")
    # Else the finiteness check failed inside torch: "Tensor.item() cannot be called on meta
    # tensors", naming no argument.
    check_not_meta(x, name)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} {layout} holds {int((~torch.isfinite(x)).sum())} NaN or "
                         f"infinite values; refusing to score them")


def _check_channels(samples: Tensor, data: Tensor, layout: str) -> None:
    if samples.shape[1] != data.shape[1]:
        raise ValueError(f"samples {tuple(samples.shape)} and data {tuple(data.shape)} differ in "
                         f"channels; expected the same C in {layout}")


def _chunks(x: Tensor, values_per_item: int) -> tuple[Tensor, ...]:
    """``x`` split along the batch so one chunk makes at most ~``_CHUNK_ELEMENTS`` values."""
    return x.split(max(1, _CHUNK_ELEMENTS // max(1, values_per_item)))


def _pooled_statistics(x: Tensor, respond: Callable[[Tensor], Tensor], values_per_item: int
                       ) -> Tensor:
    """Mean, std and mean ``|r|`` of ``r = respond(chunk)`` ``(b, K, P)``, pooled over the
    batch and the ``P`` positions of every chunk of ``x``: ``(3, K)`` float64.

    Accumulates sums of ``r``, ``r^2`` and ``|r|`` in float64; ``var = E[r^2] - E[r]^2`` loses
    nothing that matters at the ``[-1, 1]`` scale."""
    total = None
    count = 0
    for chunk in _chunks(x, values_per_item):
        r = respond(chunk.double())
        sums = torch.stack([r.sum(dim=(0, 2)), r.square().sum(dim=(0, 2)),
                            r.abs().sum(dim=(0, 2))])
        total = sums if total is None else total + sums
        count += r.shape[0] * r.shape[2]
    mean, square, absolute = total / count
    std = (square - mean.square()).clamp(min=0.0).sqrt()
    return torch.stack([mean, std, absolute])


def _statistics_distance(samples: Tensor, data: Tensor) -> float:
    """Mean relative difference of ``(3, K)`` statistics (rows :data:`STATISTICS`).

    ``std`` and ``mean_abs`` are scales: ``|s - d| / max(d, EPS)``. A mean is compared in units
    of the data's std of the same response, ``|s_mean - d_mean| / max(d_std, EPS)``: the means of
    zero-sum filters are ~0, and dividing by them would let sampling noise dominate."""
    scale = data[1].clamp(min=EPS)
    relative = torch.stack([
        (samples[0] - data[0]).abs() / scale,
        (samples[1] - data[1]).abs() / scale,
        (samples[2] - data[2]).abs() / data[2].clamp(min=EPS),
    ])
    return relative.mean().item()


def _gabor(sigma: float, angle: float, coords: Tensor) -> Tensor:
    y, x = coords
    u = x * math.cos(angle) + y * math.sin(angle)
    envelope = torch.exp(-(x.square() + y.square()) / (2 * sigma**2))
    carrier = torch.cos(2 * math.pi * u / (4 * sigma))
    # Subtract the envelope times the carrier's weighted mean (not a constant): the kernel sums
    # to zero while staying localised, as a truncated cosine Gabor otherwise would not.
    kernel = envelope * (carrier - (envelope * carrier).sum() / envelope.sum())
    return kernel / kernel.square().sum().sqrt()


def filter_bank() -> Tensor:
    """The fixed filters :data:`FILTER_NAMES`: ``(12, 11, 11)`` float64, centred at ``[5, 5]``."""
    radius = FILTER_SIZE // 2
    bank = torch.zeros(len(FILTER_NAMES), FILTER_SIZE, FILTER_SIZE, dtype=torch.float64)
    bank[0, radius, radius] = 1.0
    bank[1, radius, radius:radius + 2] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    bank[2, radius:radius + 2, radius] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    bank[3, radius - 1:radius + 2, radius - 1:radius + 2] = torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"))
    index = 4
    for sigma in (1.0, 2.0):
        for degrees in (0, 45, 90, 135):
            bank[index] = _gabor(sigma, math.radians(degrees), coords)
            index += 1
    return bank


def _check_images(x: Tensor, name: str, *, min_side: int) -> None:
    layout = f"images (B, C, H, W) with H, W >= {min_side}"
    _check_finite_float(x, name, layout, 4)
    if min(x.shape[2:]) < min_side:
        raise ValueError(f"{name} must be {layout}, got {tuple(x.shape)}")


def _filter_responses(bank: Tensor) -> Callable[[Tensor], Tensor]:
    def respond(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # Every channel through every filter separately: (b * c, 1, h, w) -> (b * c, F, h', w').
        r = F.conv2d(x.reshape(b * c, 1, h, w), bank.to(x.device).unsqueeze(1))
        return r.reshape(b, c * bank.shape[0], -1)
    return respond


def filter_statistics(x: Tensor) -> Tensor:
    """Statistics of the responses to :func:`filter_bank`, per filter and channel.

    Args:
        x: images ``(B, C, H, W)`` in ``[-1, 1]``, float, ``H, W >= 11``.

    Returns:
        ``(3 * 12 * C,)`` float64, laid out as ``reshape(3, 12, C)``: :data:`STATISTICS` x
        :data:`FILTER_NAMES` x channel; each pooled over the batch and the valid positions.

    Raises:
        ValueError: ``x`` is not ``(B, C, H, W)`` float with ``B >= 1`` and ``H, W >= 11``, or
            holds NaN/infinite values.
    """
    _check_images(x, "x", min_side=FILTER_SIZE)
    return _image_statistics(x).flatten()


def _image_statistics(x: Tensor) -> Tensor:
    """``(3, 12, C)`` statistics of validated images ``(B, C, H, W)``."""
    bank = filter_bank()
    channels = x.shape[1]
    stats = _pooled_statistics(x, _filter_responses(bank), x[0].numel() * bank.shape[0])
    return stats.reshape(3, channels, bank.shape[0]).transpose(1, 2)


def filter_statistics_distance(samples: Tensor, data: Tensor) -> float:
    """Mean relative difference between the :func:`filter_statistics` of two image sets.

    Each std and mean ``|r|`` counts as ``|s - d| / max(d, EPS)``; each mean as
    ``|s_mean - d_mean| / max(d_std, EPS)`` (the data's std of the same filter and channel), so
    the ~0 means of the zero-sum filters do not blow up. The average runs over all
    ``3 * 12 * C`` statistics. Not symmetric: ``data`` sets the scale.

    Args:
        samples: images ``(B, C, H, W)`` in ``[-1, 1]``, ``H, W >= 11``.
        data: images ``(B', C, H', W')``, the same ``C``; sizes may differ.

    Returns:
        ``>= 0``; ``0.0`` for identical sets. About ``0.5`` means statistics off by half.

    Raises:
        ValueError: a shape is not ``(B, C, H, W)`` with ``H, W >= 11``, the channels differ, or a
            value is NaN/infinite.
    """
    _check_images(samples, "samples", min_side=FILTER_SIZE)
    _check_images(data, "data", min_side=FILTER_SIZE)
    _check_channels(samples, data, "(B, C, H, W)")
    return _statistics_distance(_image_statistics(samples).flatten(1),
                                _image_statistics(data).flatten(1))


def _ring_index(h: int, w: int, device: torch.device) -> Tensor:
    """``(h, w)`` ring of each FFT frequency: ``round(|f| * min(h, w))`` with ``|f|`` in cycles
    per pixel, so ring ``k`` holds the frequencies near ``k / min(h, w)``."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=device)
    radius = (fy[:, None].square() + fx[None, :].square()).sqrt()
    return (radius * min(h, w)).round().long()


def power_spectrum(x: Tensor) -> Tensor:
    """Radially averaged power spectrum, in log10.

    Each image channel has its mean removed, and its power ``|FFT|^2 / (H W)`` (white noise of
    std ``s`` gives ``s^2`` at every frequency) is averaged over the batch, the channels and
    the frequencies of each ring; the log10 is taken of that mean, floored at
    :data:`POWER_FLOOR`.

    Args:
        x: images ``(B, C, H, W)``, float, ``H, W >= 2``.

    Returns:
        ``(min(H, W) // 2,)`` float64: entry ``k`` is the ring at ``(k + 1) / min(H, W)`` cycles
        per pixel, from the lowest frequency to Nyquist. The DC term (zero once the mean is
        removed) and the corner frequencies beyond Nyquist are left out.

    Raises:
        ValueError: ``x`` is not ``(B, C, H, W)`` float with ``B >= 1`` and ``H, W >= 2``, or holds
            NaN/infinite values.
    """
    _check_images(x, "x", min_side=2)
    h, w = x.shape[2:]
    power = torch.zeros(h, w, dtype=torch.float64, device=x.device)
    for chunk in _chunks(x, 2 * x[0].numel()):  # complex128 = two float64 per value
        chunk = chunk.double()
        centred = chunk - chunk.mean(dim=(2, 3), keepdim=True)
        power += torch.fft.fft2(centred).abs().square().sum(dim=(0, 1)) / (h * w)
    power /= x.shape[0] * x.shape[1]
    n_bins = min(h, w) // 2
    ring = _ring_index(h, w, x.device).flatten()
    kept = (ring >= 1) & (ring <= n_bins)
    sums = torch.bincount(ring[kept] - 1, weights=power.flatten()[kept], minlength=n_bins)
    counts = torch.bincount(ring[kept] - 1, minlength=n_bins)
    return (sums / counts).clamp(min=POWER_FLOOR).log10()


def power_spectrum_distance(samples: Tensor, data: Tensor) -> float:
    """Mean absolute difference of the :func:`power_spectrum` of two image sets, in decades.

    Args:
        samples: images ``(B, C, H, W)``, ``H, W >= 2``.
        data: images ``(B', C, H, W)``: the same ``C, H, W`` (the rings depend on the size).

    Returns:
        ``mean_k |log10 P_samples[k] - log10 P_data[k]|``; ``0.0`` for identical sets, and for
        circular shifts of them. ``1.0`` means a factor 10 in power on average.

    Raises:
        ValueError: a shape is not ``(B, C, H, W)``, the ``C, H, W`` differ, or a value is
            NaN/infinite.
    """
    _check_images(samples, "samples", min_side=2)
    _check_images(data, "data", min_side=2)
    if samples.shape[1:] != data.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape)} and data {tuple(data.shape)} differ; "
                         f"expected (B, C, H, W) with the same C, H, W")
    return (power_spectrum(samples) - power_spectrum(data)).abs().mean().item()


def _frames(x: Tensor) -> Tensor:
    """``(B, C, T, H, W) -> (B T, C, H, W)``."""
    return x.transpose(1, 2).flatten(0, 1)


def _frame_differences(x: Tensor) -> Tensor:
    """``(b, C, T, H, W) -> (b, C, (T - 1) H W)``: ``x[:, :, t + 1] - x[:, :, t]``."""
    return (x[:, :, 1:] - x[:, :, :-1]).flatten(2)


def video_statistics_distance(samples: Tensor, data: Tensor) -> dict[str, float]:
    """How far generated clips are from real ones, in appearance and in motion.

    Args:
        samples: videos ``(B, C, T, H, W)`` in ``[-1, 1]``, ``T >= 2``, ``H, W >= 11``.
        data: videos ``(B', C, T', H', W')``, the same ``C``; the other sizes may differ.

    Returns:
        ``{"spatial": d, "temporal": d}``. ``spatial`` is :func:`filter_statistics_distance` of
        all frames taken as images. ``temporal`` compares, per channel, the mean, std and mean
        ``|.|`` of the frame differences ``x[:, :, 1:] - x[:, :, :-1]`` pooled over clips, times
        and pixels, with the same relative differences (a mean in units of the data's std). A
        static clip against moving data scores about ``2 / 3``; identical sets score ``0.0``.

    Raises:
        ValueError: a shape is not ``(B, C, T, H, W)`` with ``T >= 2`` and ``H, W >= 11``, the
            channels differ, or a value is NaN/infinite.
    """
    layout = "videos (B, C, T, H, W) with T >= 2 and H, W >= 11"
    for name, x in (("samples", samples), ("data", data)):
        _check_finite_float(x, name, layout, 5)
        if x.shape[2] < 2 or min(x.shape[3:]) < FILTER_SIZE:
            raise ValueError(f"{name} must be {layout}, got {tuple(x.shape)}")
    _check_channels(samples, data, "(B, C, T, H, W)")
    spatial = _statistics_distance(_image_statistics(_frames(samples)).flatten(1),
                                   _image_statistics(_frames(data)).flatten(1))
    temporal = _statistics_distance(
        _pooled_statistics(samples, _frame_differences, samples[0].numel()),
        _pooled_statistics(data, _frame_differences, data[0].numel()))
    return {"spatial": spatial, "temporal": temporal}


def _occupancy_grid(x: Tensor, name: str) -> tuple[int, ...]:
    layout = "occupancy (N, 1, D, H, W) or (N, D, H, W)"
    if not isinstance(x, Tensor) or x.dim() not in (4, 5) or (x.dim() == 5 and x.shape[1] != 1):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be {layout}, got {shape}")
    _check_nonempty_finite(x, name, layout, count="N")
    return tuple(x.shape[-3:])


def nearest_iou(samples: Tensor, reference: Tensor, *, threshold: float = 0.5,
                batch: int = 128) -> Tensor:
    """Per generated shape, the highest IoU with any reference shape (memorisation / coverage).

    Occupied means ``>= threshold``, as in :func:`stgconv.metrics.voxel_iou`. Two empty
    shapes count as identical (IoU 1); an empty and a non-empty one as disjoint (IoU 0).
    Intersections are a matmul of flattened 0/1 grids, ``batch`` shapes of each set at a time,
    so ``M ~ 800`` references at ``D = 32`` never hold more than ``2 * batch`` grids as floats.

    Args:
        samples: occupancy ``(N, 1, D, H, W)`` or ``(N, D, H, W)``, float (or bool) in ``[0, 1]``.
        reference: occupancy ``(M, 1, D, H, W)`` or ``(M, D, H, W)`` on the same ``D, H, W``.
        threshold: occupancy level, finite.
        batch: shapes per chunk, ``>= 1``.

    Returns:
        ``(N,)`` float64 in ``[0, 1]`` on the samples' device.

    Raises:
        ValueError: a shape is not ``(N, 1, D, H, W)`` / ``(N, D, H, W)``, the grids differ, a
            set is empty, a value is NaN/infinite, or ``threshold`` / ``batch`` is invalid.
    """
    grid = _occupancy_grid(samples, "samples")
    if _occupancy_grid(reference, "reference") != grid:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} "
                         f"differ in grid; expected the same (D, H, W) = {grid}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    # as_int: a batch of 1.5 failed inside torch's split ("must be tuple of ints, not float").
    batch = as_int(batch, "batch", minimum=1)
    voxels = math.prod(grid)
    # float32 sums of 0/1 are exact up to 2^24; beyond that (D > 256) count in float64.
    dtype = torch.float32 if voxels <= 2**24 else torch.float64
    device = samples.device
    best = []
    for sample_chunk in samples.reshape(len(samples), voxels).split(batch):
        a = (sample_chunk >= threshold).to(dtype)
        size_a = a.sum(dim=1, dtype=torch.float64)
        chunk_best = torch.zeros(len(a), dtype=torch.float64, device=device)
        for reference_chunk in reference.reshape(len(reference), voxels).split(batch):
            b = (reference_chunk.to(device) >= threshold).to(dtype)
            inter = (a @ b.T).double()
            union = size_a[:, None] + b.sum(dim=1, dtype=torch.float64)[None, :] - inter
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
            chunk_best = torch.maximum(chunk_best, iou.max(dim=1).values)
        best.append(chunk_best)
    return torch.cat(best)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` ``(N, F)`` and ``b``
    ``(M, F)``: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (the FID formula, on
    whatever features are given). ``tr((S_a S_b)^(1/2))`` is computed as the sum of the square
    roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric, so no complex
    round-off); float64 throughout."""
    for x, name in ((a, "a"), (b, "b")):
        # A numpy array's features failed with an AttributeError on .dim().
        if not isinstance(x, Tensor) or x.dim() != 2 or len(x) < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be (N, F) features with N >= 2, got {shape}")
        _check_finite_float(x, name, "(N, F)", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1]} features and b {b.shape[1]}; expected the same")
    if a.shape[1] == 0:  # else torch's "cannot reshape tensor of 0 elements into shape [0, -1]"
        raise ValueError(f"a and b must hold at least one feature, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(distance.clamp(min=0))


def spread(x: Tensor) -> float:
    """How different the examples of ``x`` ``(N, ...)`` are from one another: the per-entry std
    across the batch, averaged over entries (0 when every example is the same)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"spread needs a float tensor in the model's units, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() == 0 or len(x) < 2:  # len() of a 0-d tensor is a TypeError
        raise ValueError(f"spread needs at least 2 examples (N, ...), got "
                         f"{len(x) if x.dim() else 'a 0-d tensor'}")
    _check_nonempty_finite(x, "x", "(N, ...)", count="N")
    return x.double().std(dim=0).mean().item()


def class_entropy(labels: Tensor, n_classes: int) -> float:
    """Entropy (nats) of the histogram of integer ``labels`` ``(N,)`` over ``n_classes``: its
    maximum ``log(n_classes)`` when every class is equally frequent, 0 when one class takes
    all."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or len(labels) == 0:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a non-empty (N,) tensor, got {shape}")
    # Else bincount's TypeError for 2.5, and 0 named as "classes 0 .. -1".
    n_classes = as_int(n_classes, "n_classes", minimum=1)
    check_not_meta(labels, "labels")  # else "Tensor.item() cannot be called on meta tensors"
    if labels.dtype == torch.bool:  # as the ECE and check_classes: True, False are no classes
        raise ValueError("labels must be class numbers 0 .. n_classes - 1, got torch.bool")
    check_whole_labels(labels, "labels")
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        raise ValueError(f"labels must be classes 0 .. {n_classes - 1}, got "
                         f"{int(labels.min())} .. {int(labels.max())}")
    share = torch.bincount(labels.long(), minlength=n_classes).double() / len(labels)
    return float(-(share[share > 0] * share[share > 0].log()).sum())


__all__ = ["EPS", "FILTER_NAMES", "FILTER_SIZE", "POWER_FLOOR", "STATISTICS", "class_entropy",
           "filter_bank", "filter_statistics", "filter_statistics_distance", "frechet_distance",
           "nearest_iou", "power_spectrum", "power_spectrum_distance", "spread",
           "video_statistics_distance"]
