"""What the ``stgconv`` command and ``tools/`` call, one file per use: each task takes plain
arguments and raises a clear error on bad input; most write their outputs into a folder they
return (``recover_video`` returns its report and writes only given ``out_dir``,
``train_fill_prior`` writes one file, ``load_known`` reads a mask)."""

from stgconv.tasks.demo import demo
from stgconv.tasks.fill_prior import train_fill_prior
from stgconv.tasks.recover_video import load_known, recover_video
from stgconv.tasks.shortrun import interpolate, reconstruct
from stgconv.tasks.synthesize import synthesize, synthesize_multigrid
from stgconv.tasks.train import train
from stgconv.tasks.voxel import recover_shape, super_resolve

__all__ = ["demo", "interpolate", "load_known", "reconstruct", "recover_shape", "recover_video",
           "super_resolve", "synthesize", "synthesize_multigrid", "train", "train_fill_prior"]
