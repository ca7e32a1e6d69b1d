"""Classical fills of the missing entries of a video: what learned recovery is compared against.

Every baseline is a pure function ``fill(video, known) -> filled`` with

- ``video``: float ``(C, T, H, W)`` in ``[-1, 1]``; its missing entries are never read (they may
  hold anything, NaN included),
- ``known``: bool, ``(C, T, H, W)`` or anything that broadcasts to it (e.g. ``(T, H, W)``),
  ``True`` = observed (the convention of :mod:`stgconv.data.masks`),
- ``filled``: ``(C, T, H, W)``, same dtype and device as ``video``; observed entries are returned
  bit for bit, only missing entries are filled.

They work for every mask type (whole missing frames, a moving occluded block, salt-and-pepper).
:data:`FILLS` maps the names used in evaluation tables to the functions.

Which one wins depends on the mask, see ``issues show 3`` and the docstrings below:

- ``temporal_interpolation``: per-pixel linear interpolation in time. Strong whenever every
  pixel is observed in some nearby frame (all three mask types of the shared masks).
- ``biharmonic``: spatial (per-frame, 2-D) biharmonic inpainting. It ignores time, so it is
  weak on the moving-block masks; whole missing frames have nothing to inpaint from, and there
  it IS temporal interpolation (see :func:`biharmonic_inpainting`).
- ``neighbour_average``: diffusion over space-time, the harmonic (Laplace) fill in 3-D.
- ``motion_compensated``: temporal interpolation along motion trajectories instead of fixed
  pixels, the optical flow (TV-L1) estimated on the fill itself and refined in rounds; what
  temporal interpolation misses where things move.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.registration import optical_flow_tvl1
from skimage.restoration import inpaint_biharmonic
from torch import Tensor

from stgconv.checks import as_int, check_bool_mask, check_finite_observed, check_not_meta
from stgconv.data.masks import check_mask_matches
from stgconv.types import Fill


def _prepare(video: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """Validate; return ``video`` and ``known`` expanded to ``(C, T, H, W)``."""
    if not isinstance(video, Tensor) or video.dim() != 4:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"expected a video of shape (C, T, H, W), got {shape}")
    if not video.is_floating_point():
        raise ValueError(f"video must be a float tensor in [-1, 1], got dtype {video.dtype}")
    check_not_meta(video, "video")
    check_not_meta(known, "known")
    check_mask_matches(known, video)
    known = known.to(video.device).expand(video.shape)
    if not known.any():
        raise ValueError("known has no observed entry: there is nothing to fill from")
    check_finite_observed(video, known, "video")
    return video, known


def _observed_mean(video: Tensor, known: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean of the observed entries over ``dims`` (kept as size 1) and whether any exists."""
    count = known.sum(dim=dims, keepdim=True)
    total = torch.where(known, video, 0).sum(dim=dims, keepdim=True)
    return total / count.clamp(min=1), count > 0


def _mean_fill(video: Tensor, known: Tensor) -> Tensor:
    """``(C, T, H, W)``: per channel and frame, the mean of that frame's observed pixels; where a
    frame has none, the channel's observed mean over the clip; where the channel has none, the
    mean of all observed entries."""
    overall = video[known].mean()
    channel, channel_has = _observed_mean(video, known, (1, 2, 3))  # (C, 1, 1, 1)
    frame, frame_has = _observed_mean(video, known, (2, 3))  # (C, T, 1, 1)
    fill = torch.where(channel_has, channel, overall)
    fill = torch.where(frame_has, frame, fill)
    return fill.expand(video.shape)


def temporal_interpolation(video: Tensor, known: Tensor) -> Tensor:
    """Fill each missing entry by linear interpolation in time at its own pixel and channel.

    For a missing entry at frame ``t`` whose pixel (in the same channel) is observed at frames
    ``a < t`` (the last such) and ``b > t`` (the first such), the fill is
    ``x[a] + (t - a) / (b - a) * (x[b] - x[a])``. Before the pixel's first observed frame and
    after its last one, the nearest observed value is held (no extrapolation). A pixel never
    observed in any frame gets the mean of the observed pixels of its frame (same channel); if
    that frame has no observed pixel, the channel's observed mean over the whole clip.

    Vectorised over pixels: the indices of the previous and next observed frame come from a
    cumulative max/min along time.

    Args:
        video: float ``(C, T, H, W)`` in ``[-1, 1]``.
        known: bool, broadcastable to ``(C, T, H, W)``, ``True`` = observed.

    Returns:
        ``(C, T, H, W)``: observed entries unchanged, missing ones interpolated.

    Raises:
        ValueError: a video that is not ``(C, T, H, W)`` float, a mask that is not bool or does
            not broadcast, no observed entry at all, or non-finite observed values.
    """
    video, known = _prepare(video, known)
    before, after, weight = _temporal_neighbours(video, known)
    return torch.where(known, video, before + weight * (after - before))


def temporal_neighbours(video: Tensor, known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What :func:`temporal_interpolation` blends at each entry, unblended: ``(before, after,
    weight)``, each ``(C, T, H, W)``.

    ``before``/``after``: the entry's pixel (same channel) at its last observed frame ``a <= t``
    and its first observed frame ``b >= t`` (the entry itself where observed); where one side
    has no observed frame it takes the other side's value, where neither has, the fill of
    :func:`temporal_interpolation` for never-observed pixels. ``weight``: ``(t - a) / (b - a)``
    in ``[0, 1]`` (0 where observed or one-sided), so the interpolation is ``before + weight *
    (after - before)``. A learner given both ends can follow motion between them, which the
    blend has already averaged away.

    Args and raises: as :func:`temporal_interpolation`.
    """
    return _temporal_neighbours(*_prepare(video, known))


def observed_frames_around(known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For a bool mask ``(C, T, *S)`` (time on dim 1, True = observed): the frame index ``t``
    of every entry, the last observed frame ``<= t`` at its place (-1 if none) and the first
    ``>= t`` (``T`` if none), each long, ``known``'s shape."""
    check_bool_mask(known, "known")
    T = known.shape[1]
    shape = [1, T] + [1] * (known.dim() - 2)
    t = torch.arange(T, device=known.device).view(shape).expand(known.shape)
    prev = torch.where(known, t, -1).cummax(dim=1).values
    nxt = torch.where(known, t, T).flip(1).cummin(dim=1).values.flip(1)
    return t, prev, nxt


def _temporal_neighbours(video: Tensor, known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`temporal_neighbours` of an already validated, expanded clip and mask."""
    T = video.shape[1]
    t, prev, nxt = observed_frames_around(known)
    has_prev, has_next = prev >= 0, nxt < T
    # Indices clamped into range; where a side is absent its gathered value is never used.
    before = video.gather(1, prev.clamp(min=0))
    after = video.gather(1, nxt.clamp(max=T - 1))
    never = _mean_fill(video, known)
    before = torch.where(has_prev, before, torch.where(has_next, after, never))
    after = torch.where(has_next, after, before)
    both = has_prev & has_next
    span = (nxt - prev).clamp(min=1).to(video.dtype)
    weight = torch.where(both, (t - prev).to(video.dtype) / span, 0)
    return before, after, weight


def biharmonic_inpainting(video: Tensor, known: Tensor, *,
                         reuse: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Spatial biharmonic inpainting, frame by frame (``skimage.restoration.inpaint_biharmonic``).

    Each frame is inpainted on its own, in 2-D, with all channels in one call (``channel_axis``)
    when the frame's mask is the same in every channel, else channel by channel. It never looks
    at other frames, which is the point of this baseline: what space alone can recover.
    scikit-image clips each inpainted frame to the range of its observed values (per channel).

    Fallback: a frame (of a channel) with no observed pixel has nothing to inpaint from; its
    entries are filled by :func:`temporal_interpolation` instead. So with whole-missing-frame
    masks this baseline gives exactly temporal interpolation, and an evaluation table should
    say so rather than present it as a spatial result.

    Runs on the CPU in numpy (the result is moved back to ``video``'s device and dtype). Cost
    grows with the number of missing pixels per frame (measured times: the ``recovery.py``
    table of ``bench/README.md``).

    Args:
        video: float ``(C, T, H, W)`` in ``[-1, 1]``.
        known: bool, broadcastable to ``(C, T, H, W)``, ``True`` = observed.
        reuse: ``(known_before, filled_before)``, the mask and the result of an earlier call on
            the same ``video``: frames whose mask is the same there, and that have observed
            pixels in every channel, are copied from ``filled_before`` rather than inpainted
            again (bit for bit what inpainting them gives). For a caller that fills many masks
            differing from one in a few frames, as the learned fill's hidden patterns do.

    Returns:
        ``(C, T, H, W)``: observed entries unchanged, missing ones inpainted.
    """
    video, known = _prepare(video, known)
    frames = torch.where(known, video, 0).detach().cpu().double().numpy()  # (C, T, H, W)
    missing = (~known).cpu().numpy()
    out = frames.copy()
    if reuse is not None:
        check_mask_matches(reuse[0], video)
        if reuse[1].shape != video.shape:
            raise ValueError(f"reuse: the earlier fill has shape {tuple(reuse[1].shape)}, the "
                             f"video {tuple(video.shape)}")
        missing_before = (~reuse[0].expand(video.shape)).cpu().numpy()
        filled_before = reuse[1].detach().cpu().double().numpy()
    no_data = np.zeros(missing.shape[:2], dtype=bool)  # (C, T): channel-frames with no pixel
    for t in range(frames.shape[1]):
        miss_t = missing[:, t]  # (C, H, W)
        if not miss_t.any():
            continue
        if (reuse is not None and (miss_t == missing_before[:, t]).all()
                and not miss_t.all(axis=(1, 2)).any()):
            out[:, t] = filled_before[:, t]
            continue
        if (miss_t == miss_t[:1]).all():  # one mask for all channels: one call
            if miss_t[0].all():
                no_data[:, t] = True
                continue
            image = np.moveaxis(frames[:, t], 0, -1)  # (H, W, C)
            filled = inpaint_biharmonic(image, miss_t[0], channel_axis=-1)
            out[:, t] = np.moveaxis(filled, -1, 0)
            continue
        for c in range(frames.shape[0]):
            if not miss_t[c].any():
                continue
            if miss_t[c].all():
                no_data[c, t] = True
                continue
            out[c, t] = inpaint_biharmonic(frames[c, t], miss_t[c])
    filled = torch.from_numpy(out).to(device=video.device, dtype=video.dtype)
    if no_data.any():
        fallback = torch.from_numpy(no_data).to(video.device)[:, :, None, None]
        filled = torch.where(fallback, temporal_interpolation(video, known), filled)
    return torch.where(known, video, filled)


def _neighbour_sum(x: Tensor) -> Tensor:
    """Sum over the in-bounds 6-neighbours in ``(T, H, W)`` of a ``(C, T, H, W)`` tensor.

    Out-of-bounds neighbours count as zero, so with ``x`` = a 0/1 validity mask this gives the
    number of valid neighbours.
    """
    total = torch.zeros_like(x)
    for dim in (1, 2, 3):
        n = x.shape[dim]
        if n < 2:
            continue
        total.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1))  # neighbour before
        total.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1))  # neighbour after
    return total


def _over_relaxation(filling_sweeps: int) -> float:
    """The over-relaxation factor of :func:`neighbour_average`'s sweeps once every entry is
    filled, from how many sweeps the filling took: the fill grows inward about two entries a
    sweep, so its holes are about ``4 * filling_sweeps`` entries across, and for a hole ``n``
    entries across successive over-relaxation converges fastest near ``2 / (1 + sin(pi / n))``
    (Young's optimum for the Laplacian on a grid of that width)."""
    return 2 / (1 + math.sin(math.pi / (4 * filling_sweeps)))


def neighbour_average(
    video: Tensor, known: Tensor, *, max_iters: int = 2000, tol: float = 1e-5
) -> Tensor:
    """Diffusion fill over space-time: each missing entry becomes the mean of its 6-neighbours.

    Missing entries start at the observed mean of their channel. Sweeps then replace every
    missing entry by the mean of those of its 6 neighbours in ``(T, H, W)`` (same channel,
    inside the clip) that are observed or already filled; an entry with no such neighbour waits,
    so the fill grows inward from the observed entries and the starting mean is only what an
    entry keeps if the sweeps stop before reaching it. Each sweep updates the entries with
    ``t + h + w`` even, then those with it odd (red-black Gauss-Seidel: twice the speed of
    updating all at once, same result). Once everything is filled the sweeps converge to the
    discrete harmonic fill: the solution of Laplace's equation on the missing entries with the
    observed ones held fixed, which does not depend on the start. From then on each move is
    over-relaxed by a factor set by the width of the holes (:func:`_over_relaxation`): plain
    sweeps converge in about the square of the width (a 60x60 block missing in every frame of
    a 30-frame 150x150 clip stopped at the 2,000 sweeps still 0.70 off on the 0-255 scale, in
    55 s), over-relaxed ones in about the width (137 sweeps, 0.023 off, 7 s; bench/README.md,
    "A fixed occluder").

    Args:
        video: float ``(C, T, H, W)`` in ``[-1, 1]``.
        known: bool, broadcastable to ``(C, T, H, W)``, ``True`` = observed.
        max_iters: at most this many sweeps.
        tol: stop once every entry is filled and no entry moved by more than ``tol`` in the
            last sweep (units of the ``[-1, 1]`` scale; 1e-5 is 0.0013 on the 0-255 scale).
            The error left is larger than the last change, by ``1 / (1 - rate)`` for the
            convergence rate of the sweeps, so keep ``tol`` small; but in float32, rounding
            keeps changes near 1e-7, so a ``tol`` below ~1e-6 may run all ``max_iters``
            (``bench/README.md``, ``recovery.py``: how many sweeps 1e-5 took on real clips).

    Returns:
        ``(C, T, H, W)``: observed entries unchanged, missing ones filled.
    """
    max_iters = as_int(max_iters, "max_iters", minimum=1)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    video, known = _prepare(video, known)
    channel, channel_has = _observed_mean(video, known, (1, 2, 3))
    start = torch.where(channel_has, channel, video[known].mean())
    x = torch.where(known, video, start).detach().clone()
    # A channel with no observed entry keeps its start: no sweep reaches it from an observed one.
    missing = ~known & channel_has
    _, T, H, W = video.shape
    parity = (torch.arange(T).view(T, 1, 1) + torch.arange(H).view(1, H, 1)
              + torch.arange(W).view(1, 1, W)) % 2
    colours = [missing & (parity == p).to(video.device) for p in (0, 1)]
    valid = (~missing).to(video.dtype)  # 1 where observed, already filled or kept
    count = _neighbour_sum(valid)  # valid neighbours; fixed once every entry is valid
    filling = True  # some entry is still neither observed nor filled
    relaxation = 1.0  # plain Gauss-Seidel while filling
    for sweep in range(1, max_iters + 1):
        change = 0.0
        for colour in colours:
            if filling:
                count = _neighbour_sum(valid)
            update = colour & (count > 0)
            mean = _neighbour_sum(x * valid if filling else x) / count.clamp(min=1)
            step = torch.where(update, mean - x, 0)
            if relaxation != 1.0:
                step *= relaxation
            x += step
            change = max(change, step.abs().max().item())
            if filling:
                valid = torch.where(update, 1, valid)
        if filling and bool(valid.all()):
            filling = False
            count = _neighbour_sum(valid)  # the final count: every in-clip neighbour
            relaxation = _over_relaxation(sweep)
        if not filling and change <= tol:
            break
    return torch.where(known, video, x)


def motion_compensated_interpolation(
    video: Tensor, known: Tensor, *, rounds: int = 2, tol: float = 1e-4, max_sweeps: int = 200
) -> Tensor:
    """Temporal interpolation along motion trajectories (motion-compensated frame interpolation
    for every mask type).

    Starts from :func:`temporal_interpolation`. Each round estimates the optical flow between
    consecutive frames of the current fill (TV-L1, ``skimage.registration.optical_flow_tvl1``,
    on the channel mean, both directions), then replaces every missing entry of frame ``t`` by
    the mean of frame ``t - 1`` and frame ``t + 1`` each sampled where the flow says the pixel
    came from and goes to (bilinear, edges clamped), sweeping forward and backward through the
    clip until no entry moves by more than ``tol`` (or ``max_sweeps``): the discrete linear
    interpolation along each trajectory between its observed ends, as temporal interpolation is
    along a fixed pixel. Later rounds see flow estimated on a better fill.

    Args:
        video: float ``(C, T, H, W)`` in ``[-1, 1]``.
        known: bool, broadcastable to ``(C, T, H, W)``, ``True`` = observed.
        rounds: flow estimations (each one TV-L1 per frame pair and direction: the cost).
        tol, max_sweeps: when the sweeps of a round stop.

    Returns:
        ``(C, T, H, W)``: observed entries unchanged, missing ones filled.

    Raises:
        ValueError: as :func:`temporal_interpolation`, ``rounds`` < 1, ``tol`` < 0 or NaN, or
            frames under 2x2 pixels (no flow to estimate) in a clip of more than one frame.
    """
    as_int(rounds, "rounds", minimum=1)
    as_int(max_sweeps, "max_sweeps", minimum=1)
    if not tol >= 0:  # a NaN or negative tol ran every sweep without a word
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    video, known = _prepare(video, known)
    x = temporal_interpolation(video, known)
    T = x.shape[1]
    if T < 2 or bool(known.all()):
        return x
    if min(x.shape[2:]) < 2:  # else scikit-image's "too small to calculate a numerical gradient"
        raise ValueError("motion-compensated interpolation estimates the optical flow between "
                         "frames, which needs frames of at least 2x2 pixels; the video's are "
                         f"{x.shape[2]}x{x.shape[3]}")
    # The sweeps work on values, as the other fills do: numpy took no clip that requires grad
    # (another network's output) for the flow, and autograd no fill written in place. The
    # observed entries are the clip's own again at the end.
    values, x = video.detach(), x.detach()
    for _ in range(rounds):
        to_previous, to_next = _flow_grids(x)
        for sweep in range(max_sweeps):
            order = range(T) if sweep % 2 == 0 else range(T - 1, -1, -1)
            change = 0.0
            for t in order:
                estimates = []
                if t > 0:
                    estimates.append(_sample(x[:, t - 1], to_previous[t - 1]))
                if t < T - 1:
                    estimates.append(_sample(x[:, t + 1], to_next[t]))
                new = torch.where(known[:, t], values[:, t], sum(estimates) / len(estimates))
                change = max(change, float((new - x[:, t]).abs().max()))
                x[:, t] = new
            if change <= tol:
                break
    return torch.where(known, video, x)


def _flow_grids(x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Sampling grids for :func:`_sample` from the TV-L1 flow of ``x`` ``(C, T, H, W)``'s
    channel mean: ``to_previous[t - 1]`` locates frame ``t``'s pixels in frame ``t - 1``,
    ``to_next[t]`` in frame ``t + 1``; each ``(1, H, W, 2)``."""
    gray = x.mean(0).double().cpu().numpy()
    T, H, W = gray.shape
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")

    def grid(reference: np.ndarray, moving: np.ndarray) -> Tensor:
        # skimage: moving(r + flow(r)) ~ reference(r); grid_sample wants (x = col, y = row) in
        # [-1, 1] with the corners on the corner pixels' centres.
        flow_rows, flow_cols = optical_flow_tvl1(reference, moving)
        at = np.stack([2 * (cols + flow_cols) / max(W - 1, 1) - 1,
                       2 * (rows + flow_rows) / max(H - 1, 1) - 1], axis=-1)
        return torch.from_numpy(at).to(dtype=x.dtype, device=x.device).unsqueeze(0)

    to_previous = [grid(gray[t], gray[t - 1]) for t in range(1, T)]
    to_next = [grid(gray[t], gray[t + 1]) for t in range(T - 1)]
    return to_previous, to_next


def _sample(frame: Tensor, grid: Tensor) -> Tensor:
    """``frame`` ``(C, H, W)`` read at ``grid`` ``(1, H, W, 2)``: bilinear, edges clamped."""
    return F.grid_sample(frame.unsqueeze(0), grid, mode="bilinear", padding_mode="border",
                         align_corners=True).squeeze(0)


FILLS: dict[str, Fill] = {
    "temporal_interpolation": temporal_interpolation,
    "biharmonic": biharmonic_inpainting,
    "neighbour_average": neighbour_average,
    "motion_compensated": motion_compensated_interpolation,
}
"""Name in evaluation tables -> ``fill(video (C, T, H, W), known) -> filled (C, T, H, W)``."""
