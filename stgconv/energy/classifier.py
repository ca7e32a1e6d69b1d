"""Any classifier as an energy (JEM: Grathwohl et al., ICLR 2020), and small classifiers whose
energy path has no batch normalisation (its batch statistics would make one chain's energy
depend on the others in the batch).

A classifier's logits ``f(x)`` ``(B, K)`` define ``p(x, y) ∝ exp(f(x)[y])``, so

- ``E(x, y) = -f(x)[y]`` (:meth:`ClassifierEnergy.class_energy`),
- ``E(x) = -logsumexp_y f(x)[y]`` (the marginal; :meth:`ClassifierEnergy.forward`, what the
  samplers call),
- ``p(y | x) = softmax(f(x))``, the classifier itself (:meth:`ClassifierEnergy.log_prob_y`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from stgconv.types import EnergyFn


class ClassifierEnergy(nn.Module):
    """Energies of a classifier ``(B, *S) -> (B, K)`` logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def logits(self, x: Tensor) -> Tensor:
        """``(B, *S)`` -> ``(B, K)``."""
        logits = self.classifier(x)
        if logits.dim() != 2 or len(logits) != len(x):
            raise ValueError(f"the classifier must return (B, K) logits for B = {len(x)}, got "
                             f"{tuple(logits.shape)}")
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """The marginal energy ``-logsumexp_y f(x)[y]``, ``(B, *S)`` -> ``(B,)``."""
        return -torch.logsumexp(self.logits(x), dim=1)

    def class_energy(self, x: Tensor, y: Tensor | int) -> Tensor:
        """``-f(x)[y]``, ``(B,)``; ``y`` one class for every example or ``(B,)`` classes."""
        logits = self.logits(x)
        y = torch.as_tensor(y, device=logits.device).expand(len(x))
        return -logits.gather(1, y.long()[:, None])[:, 0]

    def log_prob_y(self, x: Tensor) -> Tensor:
        """``log p(y | x)``, ``(B, K)``."""
        return torch.log_softmax(self.logits(x), dim=1)

    def conditional(self, y: Tensor | int) -> EnergyFn:
        """The energy of ``x`` given class ``y`` (``-f(x)[y]``), for class-conditional
        sampling with any sampler."""
        return lambda x: self.class_energy(x, y)


def digit_classifier(n_classes: int = 10, *, in_channels: int = 1, width: int = 64) -> nn.Module:
    """A ConvNet for 28x28 images: three 3x3 convolutions (stride 1, 2, 2) of ``width``,
    ``2 width``, ``2 width`` channels with SiLU (smooth, so the input gradient a sampler follows
    is continuous), global average pooling, a linear layer to ``n_classes`` logits."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1), nn.SiLU(),
        nn.Conv2d(width, 2 * width, 3, 2, 1), nn.SiLU(),
        nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_classes))


class _WideBlock(nn.Module):
    """Pre-activation residual block without normalisation: ``x + conv(act(conv(act(x))))``
    (a 1x1 convolution on the skip path where the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(channels_in, channels_out, 3, stride, 1),
            nn.LeakyReLU(0.2), nn.Conv2d(channels_out, channels_out, 3, 1, 1))
        self.skip = (nn.Identity() if channels_in == channels_out and stride == 1
                     else nn.Conv2d(channels_in, channels_out, 1, stride))

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def wide_resnet(n_classes: int = 10, *, depth: int = 28, widen: int = 10, in_channels: int = 3
                ) -> nn.Module:
    """Wide-ResNet-``depth``-``widen`` for 32x32 images (JEM's paper-scale network, with its
    batch normalisation removed): three stages of ``(depth - 4) / 6`` blocks of 16, 32, 64 x
    ``widen`` channels (strides 1, 2, 2), global average pooling, linear logits."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"depth must be 6n + 4 with n >= 1, got {depth}")
    blocks_per_stage = (depth - 4) // 6
    widths: Sequence[int] = (16 * widen, 32 * widen, 64 * widen)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1)]
    channels = 16
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            layers.append(_WideBlock(channels, width, 2 if stage > 0 and block == 0 else 1))
            channels = width
    layers += [nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(channels, n_classes)]
    return nn.Sequential(*layers)
