"""What differs per modality, one file each; generic code asks :func:`modality_of`.

Adding a modality: a :class:`Modality` subclass in a file of its own here, listed in
:data:`MODALITIES`, plus its energy nets (``stgconv/energy/``) and its data loading
(``stgconv/data/``).
"""

from stgconv.config import ExperimentConfig
from stgconv.modalities.base import Modality
from stgconv.modalities.image import IMAGE
from stgconv.modalities.video import VIDEO
from stgconv.modalities.voxel import VOXELS

MODALITIES: tuple[Modality, ...] = (IMAGE, VIDEO, VOXELS)


def modality_of(config: ExperimentConfig) -> Modality:
    """The modality that serves ``config.data.kind``."""
    for modality in MODALITIES:
        if config.data.kind in modality.data_kinds:
            return modality
    kinds = [kind for modality in MODALITIES for kind in modality.data_kinds]
    raise ValueError(f"data.kind {config.data.kind!r} is served by no modality; "
                     f"choose from {kinds}")


__all__ = ["IMAGE", "MODALITIES", "VIDEO", "VOXELS", "Modality", "modality_of"]
