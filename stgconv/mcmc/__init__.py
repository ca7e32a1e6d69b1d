"""One MCMC engine for every modality: samplers take the energy as an argument (blocked Gibbs
sampling takes an RBM, whose conditionals it uses)."""

from stgconv.mcmc.base import NonFiniteEnergyError, Sampler, StepInfo
from stgconv.mcmc.buffer import ReplayBuffer
from stgconv.mcmc.constraints import (
    Constraint,
    DownsampleConsistency,
    KnownEntries,
    KnownEntriesAndBlockMeans,
)
from stgconv.mcmc.diagnostics import Diagnostics
from stgconv.mcmc.gibbs import BlockGibbs
from stgconv.mcmc.hmc import HMC
from stgconv.mcmc.init import DataGaussian, NoiseInit, data_plus_noise
from stgconv.mcmc.langevin import Langevin
from stgconv.mcmc.mala import MALA
from stgconv.mcmc.multigrid import MultiGridSampler
from stgconv.mcmc.persistent import PersistentChains
from stgconv.mcmc.starts import (
    ChainStart,
    CoarseStart,
    DataStart,
    NoiseStart,
    RecoveryStart,
    SuperResolutionStart,
)

__all__ = [
    "HMC",
    "BlockGibbs",
    "MALA",
    "ChainStart",
    "CoarseStart",
    "Constraint",
    "DataGaussian",
    "DataStart",
    "Diagnostics",
    "DownsampleConsistency",
    "KnownEntries",
    "KnownEntriesAndBlockMeans",
    "Langevin",
    "MultiGridSampler",
    "NoiseInit",
    "NoiseStart",
    "NonFiniteEnergyError",
    "PersistentChains",
    "RecoveryStart",
    "ReplayBuffer",
    "Sampler",
    "StepInfo",
    "SuperResolutionStart",
    "data_plus_noise",
]
