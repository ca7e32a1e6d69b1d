"""Energy networks, one file per modality (image, video, voxel) or family (classifier,
compose, rbm); all map ``(B, *S)`` to ``(B,)``."""

from typing import Any, Callable

from stgconv.energy.base import ConvNetEnergy, EnergyModel
from stgconv.energy.classifier import (
    CLASSIFIER_ARCHS,
    ClassifierEnergy,
    classifier_energy,
    digit_classifier,
    wide_resnet,
)
from stgconv.energy.compose import ProductOfExperts
from stgconv.energy.image import IMAGE_PRESETS, image_energy
from stgconv.energy.rbm import RBM, ais_log_partition
from stgconv.energy.video import VIDEO_ARCHS, video_energy
from stgconv.energy.voxel import VOXEL_PRESETS, voxel_energy

__all__ = ["CLASSIFIER_ARCHS", "IMAGE_PRESETS", "VIDEO_ARCHS", "VOXEL_PRESETS", "ClassifierEnergy",
           "ConvNetEnergy", "EnergyModel", "ProductOfExperts", "RBM", "ais_log_partition",
           "build_from_config", "classifier_energy", "digit_classifier", "energy_builder",
           "image_energy", "video_energy", "voxel_energy", "wide_resnet"]


def build_from_config(config: dict[str, Any]) -> ConvNetEnergy | ClassifierEnergy | RBM:
    """Rebuild an energy from its plain-data ``config`` (as stored in checkpoints), by
    :func:`energy_builder`."""
    return energy_builder(config)(**config)


def energy_builder(config: dict[str, Any]
                   ) -> Callable[..., ConvNetEnergy | ClassifierEnergy | RBM]:
    """What rebuilds an energy from its plain-data ``config``, called with it as keyword
    arguments: a classifier preset when it names one of :data:`CLASSIFIER_ARCHS`, an RBM for
    an RBM's (:attr:`RBM.config`: a Trainer's checkpoint of an RBM was refused as describing
    no model), else a ConvNet energy."""
    if config.get("arch") in CLASSIFIER_ARCHS:
        return classifier_energy
    if "n_visible" in config:
        return RBM
    return ConvNetEnergy
