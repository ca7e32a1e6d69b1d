"""What every dataset class here shares."""

from __future__ import annotations

from torch.utils.data import Dataset


def nearer_size_advice(own_side: int, size: int, smallest_side: int, *, as_is: str) -> str:
    """What to set to learn training examples of side ``own_side``, enlarged or padded to
    data.size ``size``, at or nearer their own side, where the net to be trained takes examples
    of ``smallest_side`` or more: ``as_is`` (the advice of ``own_side``) where the net takes it.
    The warnings advised a 12x12 tile's own side, which the net then refused as smaller than its
    receptive field."""
    if own_side >= smallest_side:
        return as_is
    # Only at that size itself: under it the net refuses data.size too, and smallest_side is
    # the side to set.
    if size == smallest_side:
        return (f"data.size {size} is the smallest the net takes: give model.layers with smaller "
                "filters or strides to train nearer the data's own side")
    return (f"set data.size: {smallest_side}, the smallest the net takes, to train nearest the "
            "data's own side (model.layers with smaller filters or strides go lower)")


class NamedDataset(Dataset):
    """A dataset whose ``repr`` is its class, its :meth:`extra_repr` and its length, as
    ``nn.Module`` prints its settings: ``VoxelShapes(root=..., resolution=32, n=3991)``."""

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        settings = self.extra_repr()
        return f"{type(self).__name__}({settings + ', ' if settings else ''}n={len(self)})"
