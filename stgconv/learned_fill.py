"""A fill learned from the incomplete clip itself: a small ConvNet that corrects classical fills.

The network reads classical fills of the clip (e.g. neighbour averaging and temporal
interpolation) and where entries are observed, and adds a correction to the first fill at the
missing entries. It is trained on the clip alone, without any ground truth: observed entries are
hidden in the shape of the clip's own missing ones (:func:`stgconv.recovery.holdout_like`: the
missing pattern of another frame laid over a frame), the classical fills are recomputed without
them, and the network learns to predict their observed values (squared error) from random
space-time crops. This is the self-supervised idea of Noise2Self (Batson & Royer, 2019) applied
to inpainting: what the fills get wrong on hidden observed entries is what they get wrong on the
missing ones, so far as the two look alike.

Why it exists next to the descriptor's recovery (:mod:`stgconv.recovery`): a descriptor learned
for a few CPU minutes has a gradient at a classical fill that is nearly orthogonal to the fill's
error, so refining the fill by sampling gains 0-3%; trained for the same minutes on the question
the fill answers, this network gains much more where the mask leaves observed context around
every missing entry (salt-and-pepper pixels), and little where whole frames or large blocks are
missing (``bench/README.md``, ``recovery.py``, states the numbers).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from stgconv.checks import as_int
from stgconv.config import LearnedFillConfig, check_learned_fill
from stgconv.recovery import holdout_like
from stgconv.types import Fill


class FillNet(nn.Module):
    """``(fills, visible) -> corrected first fill``, a stationary 3-D ConvNet over ``(T, H, W)``.

    Four 3-D convolutions (the first 3x5x5, then 3x3x3, ReLU between; receptive field 9 frames x
    11x11 pixels); the last one starts at zero, so an untrained net returns the first fill.

    Args:
        channels: ``C``, channels of the clip.
        n_fills: ``F``, classical fills read.
        width: channels of the hidden layers.
    """

    def __init__(self, channels: int, n_fills: int, width: int) -> None:
        super().__init__()
        self.channels = as_int(channels, "channels", minimum=1)
        as_int(n_fills, "n_fills", minimum=1)
        as_int(width, "width", minimum=1)
        self.layers = nn.Sequential(
            nn.Conv3d(channels * (n_fills + 1), width, (3, 5, 5), padding=(1, 2, 2)), nn.ReLU(),
            nn.Conv3d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv3d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv3d(width, channels, 3, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, fills: Tensor, visible: Tensor) -> Tensor:
        """``fills`` ``(B, F * C, T, H, W)`` (fill ``f`` in channels ``f*C : (f+1)*C``),
        ``visible`` ``(B, C, T, H, W)`` float, 1 = observed; returns ``(B, C, T, H, W)``: the
        first fill, corrected where ``visible`` is 0."""
        first = fills[:, :self.channels]
        correction = self.layers(torch.cat([fills, visible], dim=1))
        return torch.where(visible > 0, first, first + correction)


def learned_fill(
    observed: Tensor,
    known: Tensor,
    fills: Sequence[Fill],
    *,
    settings: LearnedFillConfig = LearnedFillConfig(),
    generator: torch.Generator | None = None,
) -> tuple[FillNet, list[float]]:
    """Train a :class:`FillNet` on one incomplete clip; returns it and its loss per iteration.

    Args:
        observed: ``(C, T, H, W)``; values at missing entries are never read.
        known: bool, broadcastable to ``observed``, True = observed. Every entry the net learns
            from is one of these.
        fills: classical fills ``fill(video, known) -> (C, T, H, W)``
            (:data:`stgconv.baselines.video.FILLS`); the net corrects the first.
        settings: the training schedule (the ``recovery.learned`` config section).
        generator: every random draw (patterns, crops; the net's initial weights come from
            torch's global generator, as for every model here).

    Returns:
        ``(net, losses)``; apply with :func:`apply_fill`.

    Raises:
        ValueError: no fill given, a clip that is not ``(C, T, H, W)``, bad settings, or a mask
            with no observed entry under another frame's missing pattern (nothing to learn from).
    """
    if not fills:
        raise ValueError("learned_fill needs at least one classical fill to correct")
    if observed.dim() != 4:
        raise ValueError(f"observed must be (C, T, H, W), got {tuple(observed.shape)}")
    check_learned_fill(settings)
    known = known.to(observed.device).expand_as(observed)
    C, T, H, W = observed.shape
    crop = (min(settings.crop_frames, T), min(settings.crop_size, H), min(settings.crop_size, W))
    net = FillNet(C, len(fills), settings.width).to(observed.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    losses: list[float] = []
    for iteration in range(settings.iterations):
        if iteration % settings.redraw_every == 0:
            shift = int(torch.randint(1, max(T, 2), (1,), generator=generator))
            try:
                hidden = holdout_like(known, fraction=settings.hide_fraction, shift=shift,
                                      generator=generator)
            except ValueError as err:
                raise ValueError(
                    f"the learned fill learns from observed entries hidden like the missing "
                    f"ones of another frame, and this mask has none under a shift of {shift} "
                    f"frames (e.g. the same pixels missing in every frame): choose a classical "
                    f"recovery.init for it") from err
            visible = known & ~hidden
            inputs = torch.cat([fill(observed, visible) for fill in fills])
        batch = [_crop(hidden, crop, generator) for _ in range(settings.batch)]
        predicted = net(torch.stack([inputs[where] for where in batch]),
                        torch.stack([visible[where] for where in batch]).to(observed.dtype))
        target = torch.stack([observed[where] for where in batch])
        mask = torch.stack([hidden[where] for where in batch])
        loss = (predicted - target)[mask].pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return net.eval(), losses


def apply_fill(net: FillNet, observed: Tensor, known: Tensor, filled: Sequence[Tensor]
               ) -> Tensor:
    """The learned fill of ``observed`` ``(C, T, H, W)`` under ``known``: ``(C, T, H, W)``,
    observed entries kept bit for bit, clamped to ``[-1, 1]`` (the data's range).

    ``filled``: the classical fills the net was trained on, in its order, each made of
    ``observed`` under the same ``known`` (``fill(observed, known)``, ``(C, T, H, W)``); given
    made rather than as functions, so a caller that also scores them computes them once.
    """
    known = known.to(observed.device).expand_as(observed)
    with torch.no_grad():
        corrected = net(torch.cat(list(filled))[None], known[None].to(observed.dtype))[0]
    return torch.where(known, observed, corrected.clamp(-1, 1))


def _crop(hidden: Tensor, size: tuple[int, int, int], generator: torch.Generator | None
          ) -> tuple[slice, ...]:
    """A random ``size`` crop of ``(T, H, W)`` around a random hidden entry (so every crop
    teaches something)."""
    positions = hidden.flatten(1).any(0).nonzero().flatten()
    at = positions[int(torch.randint(positions.numel(), (1,), generator=generator))].item()
    centre = torch.unravel_index(torch.tensor(at), hidden.shape[1:])
    where = [slice(None)]
    for c, n, s in zip(centre, hidden.shape[1:], size):
        low = int(torch.randint(max(0, int(c) - s + 1), min(int(c), n - s) + 1, (1,),
                                generator=generator))
        where.append(slice(low, low + s))
    return tuple(where)
