"""Super-resolution of voxel occupancy with a model of the high resolution: the chain that
``stgconv super-resolve``, the voxel evaluation and a Python script all run.

A voxel model usually sees occupancy minus the training shapes' mean (``offset``, see
:mod:`stgconv.modalities.voxel`), so its Gaussian reference is centred at the mean density. The
block-mean constraint is affine and the shift a constant, so the chain runs in the model's units
(``block_down(x - m) == low - m``) and only the ends convert: arguments and results here are
occupancy, the sampler (its clamp included) is in the model's units.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stgconv.checks import check_dtype_for, check_flag, check_generator, check_tensor, is_int
from stgconv.initializer import Initializer
from stgconv.mcmc import DownsampleConsistency
from stgconv.mcmc.base import Sampler, check_sampler
from stgconv.ops import block_top_k, block_upsampler
from stgconv.types import EnergyFn


def super_resolve_batch(energy: EnergyFn, sampler: Sampler, low: Tensor, factor: int, *,
                        offset: float = 0.0, upsample: str = "linear", binary: bool = True,
                        initializer: Initializer | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """Super-resolve low-resolution occupancy with a model of the high resolution.

    The chain starts at the ``initializer``'s proposal when it serves ``factor``
    (:mod:`stgconv.initializer`), else at ``upsample`` of ``low``
    (:data:`stgconv.ops.BLOCK_UPSAMPLERS`, the config's ``chains.upsample``), and keeps
    ``block_down(x, f) == low`` after every step (the start too).

    Args:
        energy: ``(B, 1, D, D, D) -> (B,)``: a :class:`~stgconv.energy.base.ConvNetEnergy`, whose
            ``input_size`` is checked against ``low``'s side times ``factor``, or any energy
            of one's own (a function, an ``nn.Module``).
        low: ``(B, 1, d, d, d)`` block means in ``[0, 1]``; ``d * factor`` must be the model's side.
        factor: block size ``f``.
        offset: what the model subtracts from occupancy (the training mean; with a config,
            :meth:`~stgconv.modalities.Modality.offset`); ``sampler`` runs on occupancy minus
            ``offset``, so its clamp is in those units (e.g. ``(-offset, 1 - offset)``).
        binary: make the result a shape: in every block the ``round(low * f^3)`` voxels the
            chain ranks highest are occupied (:func:`stgconv.ops.block_top_k`), so block means
            stay ``low`` for the block means of any binary grid. ``False`` returns the chain.

    Returns:
        ``(B, 1, d*f, d*f, d*f)`` occupancy: {0, 1} when ``binary``; else the chain itself, with
        ``block_down(out, f) == low`` (not clamped: the clamp would move block means; score it
        with a clamp).

    Raises:
        ValueError: ``low`` not ``(B, 1, d, d, d)`` float block means in ``[0, 1]`` (NaN
            included) or not of the network's dtype (an ``nn.Module``'s), ``d * factor`` not
            the model's side, ``factor`` not an int ``>= 1`` (the up-sampling's check), an
            unknown ``upsample``.
    """
    check_generator(generator, "super_resolve_batch")  # before the start's work
    check_sampler(sampler, "sampler")
    binary = check_flag(binary, "binary")
    check_tensor(low, "low")
    # Else the energy refused the up-sampled grid ("expected input of shape ('B', 1, 8, 8, 8),
    # got (2, 8, 8, 8)" for a (2, 2, 2, 2) low), naming neither low nor its shape.
    if low.dim() != 5 or low.shape[1] != 1:
        raise ValueError(f"low must be voxels (B, 1, d, d, d), got {tuple(low.shape)}")
    # A bool grid failed inside torch at `low - offset`; block means past [0, 1] were kept by
    # the chain and then clamped by the binary result without a word (its block means then
    # not low). NaN passes here: the constraint names it.
    if not low.is_floating_point():
        raise ValueError(f"low must be float block means in [0, 1], got {low.dtype} (convert "
                         "it first, e.g. low.float())")
    if ((low < 0) | (low > 1)).any():
        raise ValueError(f"low must be block means of occupancy in [0, 1], got values in "
                         f"[{low.min().item():.4g}, {low.max().item():.4g}]")
    # Else the energy refused the up-sampled start ("expected input of shape ('B', 1, 16, 16,
    # 16), got (2, 1, 32, 32, 32)" for an 8^3 low and factor 4), naming neither low nor factor.
    # An energy of one's own (a function, a module) states no input size: its
    # ``energy.input_size`` failed as an AttributeError naming neither energy nor low.
    high = tuple(n * factor for n in low.shape[2:]) if is_int(factor) and factor >= 1 else None
    input_size = getattr(energy, "input_size", None)
    if input_size is not None and high is not None and any(
            side is not None and side != n for side, n in zip(input_size, high)):
        raise ValueError(f"low {tuple(low.shape)} up-sampled by factor {factor} is {high}, but "
                         f"the model takes {input_size}: low's side times factor must "
                         "be the model's side")
    # As recover's observed: else the network's first layer refused the start in torch's
    # words ("Input type (double) and bias type (float) should be the same"), an energy of
    # one's own, or a model's check named its input "x", neither naming low.
    check_dtype_for(low, energy, "low")
    blocks = (factor,) * 3
    low_model = low - offset
    if initializer is not None and initializer.serves(factor):
        x0 = initializer.propose(low, factor) - offset
    else:
        x0 = block_upsampler(upsample)(low_model, blocks)
    x = sampler.run(energy, x0, constraint=DownsampleConsistency(low_model, blocks),
                    generator=generator) + offset
    return block_top_k(x, low, blocks) if binary else x
