"""stgconv: energy-based generative ConvNets for images, videos and voxels.

``E(x) = -f(x; theta) + |x|^2 / (2 sigma^2)``, sampled by Langevin dynamics (or MALA / HMC) and
learned by analysis by synthesis. See the README for the tour.
"""

from stgconv.config import ExperimentConfig, TrainConfig, load_config
from stgconv.energy import ConvNetEnergy, EnergyModel, image_energy
from stgconv.losses import contrastive_divergence
from stgconv.mcmc import (
    HMC,
    MALA,
    DownsampleConsistency,
    KnownEntries,
    Langevin,
    MultiGridSampler,
)
from stgconv.train import MultiGridTrainer, Trainer
from stgconv.version import __version__

__all__ = [
    "HMC",
    "MALA",
    "ConvNetEnergy",
    "DownsampleConsistency",
    "EnergyModel",
    "ExperimentConfig",
    "KnownEntries",
    "Langevin",
    "MultiGridSampler",
    "MultiGridTrainer",
    "TrainConfig",
    "Trainer",
    "__version__",
    "contrastive_divergence",
    "image_energy",
    "load_config",
]
