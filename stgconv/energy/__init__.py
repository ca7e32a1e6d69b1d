"""Energy networks, one file per modality; all map ``(B, *S)`` to ``(B,)``."""

from typing import Any

from stgconv.energy.base import ConvNetEnergy, EnergyModel
from stgconv.energy.classifier import ClassifierEnergy, digit_classifier, wide_resnet
from stgconv.energy.compose import ProductOfExperts
from stgconv.energy.image import IMAGE_PRESETS, image_energy
from stgconv.energy.rbm import RBM, ais_log_partition

__all__ = ["IMAGE_PRESETS", "ClassifierEnergy", "ConvNetEnergy", "EnergyModel",
           "ProductOfExperts", "RBM", "ais_log_partition", "build_from_config",
           "digit_classifier", "image_energy", "wide_resnet"]


def build_from_config(config: dict[str, Any]) -> ConvNetEnergy:
    """Rebuild an energy from its plain-data ``config`` (as stored in checkpoints)."""
    return ConvNetEnergy(**config)
