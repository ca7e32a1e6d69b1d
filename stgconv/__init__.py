"""stgconv: energy-based generative ConvNets for images, videos and voxels.

``E(x) = -f(x; theta) + |x|^2 / (2 sigma^2)``, sampled by Langevin dynamics (or MALA / HMC) and
learned by analysis by synthesis. See the README for the tour.
"""

import os
import sys

# Before torch loads libgomp, which reads it once: idle OpenMP threads then sleep instead of
# spinning. Spinning threads fight any other busy process for the cores; measured on 2 shared
# cores, one Langevin step of the MNIST config's net took 246 ms with torch's 2 threads
# spinning against another process and 26 ms with them passive (bench/README.md has the bench
# runs: 1.5-3.4x). A value the user set wins; so does torch already loaded by the caller.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from stgconv.config import ExperimentConfig, TrainConfig, load_config  # noqa: E402
from stgconv.energy import (  # noqa: E402
    ConvNetEnergy,
    EnergyModel,
    image_energy,
    video_energy,
    voxel_energy,
)
from stgconv.losses import contrastive_divergence  # noqa: E402
from stgconv.mcmc import (  # noqa: E402
    HMC,
    MALA,
    DownsampleConsistency,
    KnownEntries,
    Langevin,
    MultiGridSampler,
    NonFiniteEnergyError,
)
from stgconv.train import MultiGridTrainer, Trainer  # noqa: E402
from stgconv.version import __version__  # noqa: E402

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
    "NonFiniteEnergyError",
    "TrainConfig",
    "Trainer",
    "__version__",
    "contrastive_divergence",
    "image_energy",
    "load_config",
    "video_energy",
    "voxel_energy",
]
