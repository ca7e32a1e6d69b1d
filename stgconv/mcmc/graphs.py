"""Langevin steps replayed as one captured CUDA graph.

On a GPU the small reference nets' steps are mostly kernel launches: an H200 ran a texture-net
step (4.25 GFLOP at batch 16) in about 1.5 ms, a few percent of what its arithmetic needs. A
captured graph replays the whole step (forward, input gradient, update, noise, clamp,
projection, non-finite flag) as one launch. The chain's buffers stay where they are, and the
weights are read where they live, so the graph sees the current state at every replay; it is
captured afresh at every run, so weights that moved (``.to()``, a new optimizer state) are never
read from a stale address.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

# Real steps run eagerly on a side stream before the capture: lazy initialisation (cuDNN and
# cuBLAS handles, autograd's buffers) must not happen inside it (torch.cuda.graph's rules).
WARMUP_STEPS = 2


def graph_generator_ok(generator: torch.Generator | None) -> bool:
    """Whether a capture can draw from ``generator``: the default CUDA generator always can, an
    explicit one where this torch can register it with the graph."""
    return generator is None or hasattr(torch.cuda.CUDAGraph, "register_generator_state")


def run_as_cuda_graph(step: Callable[[int], Tensor], n_steps: int,
                      generator: torch.Generator | None) -> list[Tensor]:
    """Run ``step(index)`` (an in-place update returning its 0-dim non-finite flag) for
    ``index`` 0 .. ``n_steps - 1``: the first :data:`WARMUP_STEPS` eagerly, the rest as replays
    of one captured step. Returns the flags of the steps run: all of them, or only the warm-up
    steps' if the step cannot be captured (an energy that synchronises with the host, say), in
    which case the caller runs the rest eagerly; none for chains too short to gain."""
    if n_steps <= WARMUP_STEPS + 1:
        return []
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    flags = []
    with torch.cuda.stream(side):
        for index in range(WARMUP_STEPS):
            flags.append(step(index))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)
    try:
        with torch.cuda.graph(graph):
            flag = step(WARMUP_STEPS)  # recorded, not run: the replays below run it
    except RuntimeError:
        return flags
    for _ in range(WARMUP_STEPS, n_steps):
        graph.replay()
        flags.append(flag.clone())  # the graph writes every step's flag into one buffer
    return flags
