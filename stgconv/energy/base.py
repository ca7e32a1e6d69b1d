"""Descriptor energies: ``E(x) = -f(x; theta) + |x|^2 / (2 sigma^2)``.

``f`` is a ConvNet (the paper's "scoring function"); the optional Gaussian reference term makes
``p(x)`` an exponential tilting of white noise, as in Xie et al.; short-run models drop it
(``reference_sigma=None``). Every energy maps ``(B, *S)`` to ``(B,)``.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from stgconv.checks import (
    as_int,
    check_device,
    check_dtype,
    check_finite_number,
    check_tensor,
    is_int,
)
from stgconv.mcmc.base import at_least_float32


class EnergyModel(nn.Module):
    """Base class: subclasses implement :meth:`response`, the ConvNet score ``f(x)``.

    ``self.config`` holds the constructor keyword arguments (plain data), so a model can be
    rebuilt from a checkpoint without pickled classes. ``state_dict()`` holds the weights
    alone, as any module's: the settings, ``reference_sigma`` among them (which changes the
    energy as a weight does), are in ``config``, so a checkpoint of one's own keeps both
    (:func:`stgconv.energy.build_from_config` rebuilds the model from ``config``); loaded into
    a model built with another ``reference_sigma``, the weights give another energy.
    """

    def __init__(self, *, reference_sigma: float | None = 1.0) -> None:
        super().__init__()
        # NaN too: every energy was NaN, and the first chain stopped as one that "diverged",
        # advising a smaller step size.
        if reference_sigma is not None:
            check_finite_number(reference_sigma, "reference_sigma", positive=True)
        self.reference_sigma = reference_sigma
        self.config: dict[str, Any] = {}

    def response(self, x: Tensor) -> Tensor:
        """``f(x; theta)``: ``(B, *S) -> (B,)``; higher means more probable."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Energy ``(B,)`` of ``x`` ``(B, *S)``, float32 at least (a half-precision model's
        sums over the whole input overflow float16)."""
        energy = -self.response(x)
        if self.reference_sigma is not None:
            # sigma * sigma, not sigma**2: the same number, but past 1e154 a float's power
            # raises OverflowError where the product is inf (no reference term, its limit).
            variance = self.reference_sigma * self.reference_sigma
            # Summed in float32 at least: a float16 model's |x|^2 over a clip of 3x16x64x64
            # entries of 0.7 is 96k, past float16's 65504, and every chain "diverged" at step 0.
            squares = x.flatten(1).pow(2).sum(dim=1, dtype=at_least_float32(x.dtype))
            energy = energy + squares / (2 * variance)
        return energy

    def extra_repr(self) -> str:
        return f"reference_sigma={self.reference_sigma}"


Activation = Literal["relu", "leaky_relu"]


def make_activation(name: Activation) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {name!r}")


# The entries of a ``layers`` row and the least value each takes.
_LAYER_ENTRIES = (("out_channels", 1), ("kernel", 1), ("stride", 1), ("padding", 0))


def layer_row_problem(row: Sequence[Any], spatial_dims: int
                      ) -> tuple[int | None, str, str] | None:
    """What makes ``row`` of a ``layers`` list no convolution of ``spatial_dims`` dimensions:
    ``(None, "", "")`` for a row that is not ``[out_channels, kernel, stride[, padding]]``,
    ``(j, name, "must be ..., got ...")`` for its entry ``j``, ``None`` when it is one. The
    net and the config both check rows with it, each naming the row its own way."""
    if len(row) not in (3, 4):
        return None, "", ""
    for j, (name, least) in enumerate(_LAYER_ENTRIES[:len(row)]):
        value = row[j]
        per_dimension = isinstance(value, (tuple, list))
        if per_dimension and (name == "out_channels" or len(value) != spatial_dims):
            expected = ("one int" if name == "out_channels"
                        else f"one int or {spatial_dims} (one per dimension)")
            return j, name, f"must be {expected}, got {list(value)}"
        entries = value if per_dimension else (value,)
        # Floats and bools failed inside torch: a kernel of 2.5 when the net was built, a
        # stride of 1.5 only at its first call ("conv2d() received an invalid combination").
        if not all(is_int(entry) for entry in entries):
            return j, name, f"must be {'ints' if per_dimension else 'an int'}, got {value!r}"
        if min(entries) < least:
            return j, name, f"must be >= {least}, got {value!r}"
    return None


class ConvNetEnergy(EnergyModel):
    """A stack of convolutions (2-D for images, 3-D for videos and voxels) and a head.

    Args:
        spatial_dims: 2 (``(B, C, H, W)``) or 3 (``(B, C, T, H, W)`` / ``(B, C, D, H, W)``).
        in_channels: ``C``.
        layers: rows ``(out_channels, kernel, stride[, padding])``; ``kernel`` and ``stride``
            may be ints or per-dimension tuples.
        head: ``"sum"`` sums the last layer's responses over all positions and channels, which
            makes the model stationary (textures, dynamic textures) and size-agnostic;
            ``"linear"`` flattens and applies a fully connected layer (objects), which needs
            ``input_size``.
        input_size: the size ``(H, W)`` or ``(T, H, W)`` inputs must have; required by the
            ``"linear"`` head. With the ``"sum"`` head, ``None`` entries leave a dimension free
            (a spatially fully connected video model fixes ``H, W`` but not ``T``).
        activation: after every convolution (except the top one under the ``"sum"`` head).
        reference_sigma: see :class:`EnergyModel`.
    """

    def __init__(
        self,
        *,
        spatial_dims: Literal[2, 3],
        in_channels: int,
        layers: Sequence[Sequence[Any]],
        head: Literal["sum", "linear"] = "sum",
        input_size: Sequence[int | None] | None = None,
        activation: Activation = "relu",
        reference_sigma: float | None = 1.0,
    ) -> None:
        super().__init__(reference_sigma=reference_sigma)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        # 0 built a net of no input, its energy the reference term alone; 2.5 failed inside
        # torch as "in_channels must be divisible by groups".
        as_int(in_channels, "in_channels", minimum=1)
        # Rows in a list, a tuple or a numpy array, which has no truth value ("not layers"
        # failed on it); one that is none of them (None) failed in len() as a TypeError.
        if not isinstance(layers, (Sequence, np.ndarray)):
            raise ValueError(f"layers must be a list of rows (out_channels, kernel, stride[, "
                             f"padding]), got {type(layers).__name__} {layers!r}")
        if len(layers) == 0:
            raise ValueError("layers must hold at least one convolution")
        if head not in ("sum", "linear"):
            raise ValueError(f"head must be 'sum' or 'linear', got {head!r}")
        if head == "linear" and (
            input_size is None or len(input_size) != spatial_dims or None in input_size
        ):
            raise ValueError(
                f"head='linear' needs input_size with {spatial_dims} sizes, got {input_size}"
            )
        if input_size is not None and len(input_size) != spatial_dims:
            raise ValueError(f"input_size needs {spatial_dims} entries, got {input_size}")
        # A side of 2.5 (image_size=2.5) failed inside torch ("type must be tuple of ints").
        if input_size is not None and any(n is not None and not (is_int(n) and n >= 1)
                                          for n in input_size):
            raise ValueError(f"input_size sides must be ints >= 1, got {input_size}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        blocks: list[nn.Module] = []
        channels = in_channels
        for depth, row in enumerate(layers, start=1):
            problem = layer_row_problem(row, spatial_dims)
            if problem is not None:
                entry, name, why = problem
                if entry is None:
                    raise ValueError(f"each layer is (out_channels, kernel, stride[, padding]), "
                                     f"got {tuple(row)}")
                raise ValueError(f"layer {depth} {tuple(row)}: {name} {why}")
            out_channels, kernel, stride = row[:3]
            padding = row[3] if len(row) == 4 else 0
            blocks.append(conv(channels, out_channels, kernel, stride, padding))
            # The summed head reads the top layer linearly: a ReLU there can switch every top
            # unit off, leaving f flat in x and the chains without a gradient to follow.
            if head == "linear" or depth < len(layers):
                blocks.append(make_activation(activation))
            channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.input_size = tuple(input_size) if input_size is not None else None
        self.head_kind = head
        if head == "linear":
            if not self._fits(self.input_size):
                # The smallest that fits, as check_size says it: a voxel net's grid side (every
                # one has this head) was refused without a word of the side it takes.
                raise ValueError(f"input_size {self.input_size} is too small for these layers: "
                                 f"they need at least {self.smallest_size()}")
            # At least one output per side and channel: _fits, and the checks above.
            with torch.no_grad():
                probe = self.features(torch.zeros(1, in_channels, *self.input_size))
            self.head = nn.Linear(probe.numel(), 1)
        # Python numbers: a numpy one (an int of an array's shape, say) kept here made a trainer
        # train up to its first checkpoint and then refuse to write it ("would hold objects
        # other than tensors and plain data").
        self.config = _plain_numbers({
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "layers": [list(r) for r in layers],
            "head": head,
            "input_size": list(input_size) if input_size is not None else None,
            "activation": activation,
            "reference_sigma": reference_sigma,
        })

    def extra_repr(self) -> str:
        size = "" if self.input_size is None else f"input_size={self.input_size}, "
        return f"head={self.head_kind!r}, {size}{super().extra_repr()}"

    def _check(self, x: Tensor) -> None:
        check_tensor(x, "x")  # a numpy array failed as "'numpy.ndarray' has no attribute 'dim'"
        free = ["*" if n is None else n for n in (self.input_size or [None] * self.spatial_dims)]
        expected = ("B", self.in_channels, *free)
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape {expected}, got {tuple(x.shape)}")
        if self.input_size is not None and any(
            n is not None and n != got for n, got in zip(self.input_size, x.shape[2:])
        ):
            raise ValueError(f"expected input of shape {expected}, got {tuple(x.shape)}")
        # The dtype of a stored parameter: reading a weight under a parametrization
        # (spectral_norm, weight_norm) computes it, which ran spectral_norm's power iteration
        # twice per call.
        weight = next(self.parameters())
        check_dtype(x, weight.dtype, "x")
        check_device(x, weight.device, "x")

    def _fits(self, size: Sequence[int]) -> bool:
        """Does every convolution get an input at least as large as its (padded) kernel?"""
        for block in self.features:
            if isinstance(block, (nn.Conv2d, nn.Conv3d)):
                dims = list(zip(size, block.kernel_size, block.stride, block.padding))
                if any(n + 2 * p < k for n, k, _, p in dims):
                    return False
                size = [(n + 2 * p - k) // s + 1 for n, k, s, p in dims]
        return True

    def smallest_size(self) -> tuple[int, ...]:
        """The smallest spatial size ``(n1, ..., nk)`` of an input every convolution fits
        (each side on its own: the sides do not constrain each other)."""
        unbounded = 1 << 20
        sides = []
        for dim in range(self.spatial_dims):
            side = 1
            while not self._fits([side if d == dim else unbounded
                                  for d in range(self.spatial_dims)]):
                side += 1
            sides.append(side)
        return tuple(sides)

    def check_size(self, size: Sequence[int]) -> None:
        """``ValueError`` naming the smallest size that fits when an input of spatial size
        ``size`` ``(n1, ..., nk)`` is smaller than the network's receptive field (tasks with a
        slow start call it before starting)."""
        # Else sizes of another length were compared as far as they went (zip): a clip's
        # (H, W) for a video net, or one side for an image net, passed whatever they were.
        if len(size) != self.spatial_dims:
            raise ValueError(f"size must hold {self.spatial_dims} spatial sizes, one per "
                             f"dimension of the input past (B, C), got {tuple(size)}")
        if not self._fits(size):
            raise ValueError(f"input size {tuple(size)} is smaller than the network's receptive "
                             f"field: it needs at least {self.smallest_size()}")

    def response(self, x: Tensor) -> Tensor:
        self._check(x)
        # Checked before running: torch's own error for a too-small input is a RuntimeError
        # that does not say which input size the network needs.
        self.check_size(x.shape[2:])
        h = self.features(x)
        if self.head_kind == "sum":
            # In float32 at least, as the reference term (a float16 model's top responses over
            # a whole clip overflow float16); the gradient in h is the same ones.
            return h.flatten(1).sum(dim=1, dtype=at_least_float32(h.dtype))
        return self.head(h.flatten(1)).squeeze(1)


def _plain_numbers(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples) with every numpy number made the Python
    number it holds, which checkpoints keep."""
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_numbers(item) for item in value)
    return value.item() if isinstance(value, np.generic) else value
