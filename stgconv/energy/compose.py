"""Energies add: a product of experts (Hinton 2002; Du & Mordatch 2019's compositional EBMs).

``p(x) ∝ prod_i p_i(v_i(x))^{w_i}`` has the energy ``E(x) = sum_i w_i E_i(v_i(x))``, so models
trained apart combine at sampling time into a conjunction none of them was trained for (a
class of one model and a style of another, say). Any sampler takes the sum like any energy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from functools import partial
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from stgconv.checks import check_batch, differing_keys
from stgconv.mcmc.execution import verdict_owner
from stgconv.types import EnergyFn

View = Callable[[Tensor], Tensor]

# The one key of :attr:`ProductOfExperts.config`: how a checkpoint's model config says it is a
# product's, which no config rebuilds.
PRODUCT_KEY = "product_of_experts"


class ProductOfExperts(nn.Module):
    """``E(x) = sum_i w_i E_i(v_i(x))``, ``(B, *S)`` -> ``(B,)``.

    Args:
        experts: energies ``E_i``, each ``(B, *S_i) -> (B,)``; modules among them, and the
            modules they wrap (a class-conditional energy's classifier), are registered
            (``.to()`` moves them, ``.parameters()`` lists them).
        weights: ``w_i`` (default all 1); 0 switches an expert off (not every one), a negative
            weight would make the product improper and is refused.
        views: ``v_i`` mapping ``x`` to what expert ``i`` reads (a crop, a down-sampling, a
            channel); ``None`` for ``x`` itself.
    """

    def __init__(self, experts: Sequence[EnergyFn], weights: Sequence[float] | None = None,
                 views: Sequence[View | None] | None = None) -> None:
        super().__init__()
        if not experts:
            raise ValueError("a product of experts needs at least one expert")
        for index, expert in enumerate(experts):
            if not callable(expert):  # else "'tuple' object is not callable" at the first call
                hint = (": load_model returns (energy, config, state), the energy first"
                        if isinstance(expert, tuple) else "")
                raise ValueError(f"expert {index} is a {type(expert).__name__}, not an energy "
                                 f"(a callable (B, *S) -> (B,)){hint}")
        weights = [1.0] * len(experts) if weights is None else [float(w) for w in weights]
        views = [None] * len(experts) if views is None else list(views)
        if len(weights) != len(experts) or len(views) != len(experts):
            raise ValueError(f"{len(experts)} experts need as many weights and views, got "
                             f"{len(weights)} and {len(views)}")
        if any(not (math.isfinite(w) and w >= 0) for w in weights):
            raise ValueError(f"weights must be finite and >= 0, got {weights}")
        if not any(weights):  # a constant energy: no sampler could move on it
            raise ValueError(f"at least one weight must be above 0, got {weights}")
        self.experts = list(experts)
        # Registered so that .to(), .parameters() and state_dict() see the modules, once each
        # (two class-conditional energies of one classifier wrap the same module).
        owners = (verdict_owner(expert)[0] for expert in experts)
        modules = {id(owner): owner for owner in owners if isinstance(owner, nn.Module)}
        self.registered = nn.ModuleList(modules.values())
        self.weights = weights
        self.views = views

    @property
    def config(self) -> dict[str, object]:
        """What sets this product apart from another of the same modules, as plain data:
        each expert (by :func:`_name`, with its module's ``config`` dict; ``{}`` for a module
        of the caller's own without one), its weight and its view. A Trainer stores it in its
        checkpoints, so that a resume into a product of other weights or experts is refused
        (with no config the check saw nothing to compare, and the run went on under the other
        product without a word). It rebuilds nothing: the product's callables are the caller's, so
        :func:`~stgconv.checkpoint.load_model` refuses its checkpoints as a model of the
        caller's own."""
        return {PRODUCT_KEY: {
            "experts": [{"name": _name(expert), "config": _config(expert)}
                        for expert in self.experts],
            "weights": list(self.weights),
            "views": [_name(view) for view in self.views]}}

    def get_extra_state(self) -> dict[str, object]:
        """:attr:`config`, kept in ``state_dict()``: the weights alone, loaded into a product
        built otherwise (other weights, another class fixed, experts in another order, another
        ``reference_sigma``), gave another energy without a word."""
        return self.config

    def set_extra_state(self, state: dict[str, object]) -> None:
        # Torch calls this before it copies any weight: a refusal leaves the product as it was.
        if state != self.config:
            differing = ", ".join(differing_keys(state, self.config)) or PRODUCT_KEY
            raise ValueError(f"this state was saved from another product of experts (differing: "
                             f"{differing}): build that product to load it")

    def extra_repr(self) -> str:
        # nn.Module's repr lists the registered modules only: not which class a
        # class-conditional expert fixes, nor the weights and views.
        settings = f"experts=[{', '.join(map(_name, self.experts))}], weights={self.weights}"
        if any(view is not None for view in self.views):
            settings += f", views=[{', '.join(map(_name, self.views))}]"
        return settings

    def forward(self, x: Tensor) -> Tensor:
        """``E(x)`` ``(B,)`` of ``x`` ``(B, *S)``."""
        # Else an array failed on "argument 'dtype' must be torch.dtype", a 0-d tensor on
        # "len() of a 0-d tensor", naming no argument.
        check_batch(x, "x")
        total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for index, (expert, weight, view) in enumerate(zip(self.experts, self.weights,
                                                            self.views)):
            if weight == 0:
                continue
            try:
                energy = expert(x if view is None else view(x))
            except ValueError as err:
                # An expert's refusal ("expected input of shape ('B', 1, 8, 8)") did not say
                # which of the experts, often of one class, refused x (or its view).
                raise ValueError(f"expert {index} ({_name(expert)}): {err}") from err
            if energy.shape != (len(x),):
                # Named by _name: a module's (or a bound method's) repr is its whole net.
                raise ValueError(f"expert {index} ({_name(expert)}) returned "
                                 f"{tuple(energy.shape)}, expected ({len(x)},)")
            total = total + weight * energy
        return total


def _config(expert: EnergyFn) -> dict[str, object]:
    """The ``config`` mapping of the module behind ``expert`` as a dict, else ``{}``: a module
    of the caller's own may keep a ``config`` of another kind (a dataclass), which made the
    product's ``state_dict()`` fail ("'Settings' object is not iterable")."""
    config = getattr(verdict_owner(expert)[0], "config", None)
    # Any mapping, as dict() took before: a read-only view of one is a config all the same.
    return dict(config) if isinstance(config, Mapping) else {}


def _name(function: Callable | None) -> str:
    """How the repr names an expert or a view: a module by its class, a bound method by its
    class and name, a ``partial`` by its function and what it fixes (a class-conditional
    energy: ``ClassifierEnergy.class_energy(y=1)``), any other callable by its name."""
    if function is None:
        return "None"
    if isinstance(function, partial):
        fixed = [*map(_value, function.args),
                 *(f"{key}={_value(value)}" for key, value in function.keywords.items())]
        return f"{_name(function.func)}({', '.join(fixed)})"
    if inspect.ismethod(function):
        return f"{type(function.__self__).__name__}.{function.__name__}"
    if isinstance(function, nn.Module):
        return type(function).__name__
    return getattr(function, "__name__", type(function).__name__)


def _value(value: object) -> str:
    """A fixed argument as :func:`_name` shows it: a tensor with dimensions by its shape
    (``y`` of a class per chain would print them all)."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return f"<tensor {tuple(value.shape)}>"
    return repr(value)
