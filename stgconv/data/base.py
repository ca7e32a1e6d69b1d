"""What every dataset class here shares."""

from __future__ import annotations

from torch.utils.data import Dataset


class NamedDataset(Dataset):
    """A dataset whose ``repr`` is its class, its :meth:`extra_repr` and its length, as
    ``nn.Module`` prints its settings: ``VoxelShapes(root=..., resolution=32, n=3991)``."""

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        settings = self.extra_repr()
        return f"{type(self).__name__}({settings + ', ' if settings else ''}n={len(self)})"
