"""Langevin steps replayed as one captured CUDA graph.

On a GPU the small reference nets' steps are mostly launch overhead: an H200 ran a texture-net
step (4.25 GFLOP at batch 16) in about 1.5 ms, a few percent of what its arithmetic needs. A
captured graph replays the whole step (forward, input gradient, update, noise, clamp,
projection, non-finite flag) with one launch.

A chain without a constraint keeps its captured graph for the next run with the same energy,
weights (by address), shape, settings and generator, which is what training's every iteration
is: the next run copies its start into the graph's buffer and replays, with no capture. A chain
with a constraint (whose tensors the graph would bake in) is captured afresh at every run. The
weights are read where they live, so in-place updates (an optimizer step, ``load_state_dict``)
are seen; weights that moved (``.to()``) change the key and are captured again.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Hashable

import torch
from torch import Tensor

# Real steps run eagerly on a side stream before the capture: lazy initialisation (cuDNN and
# cuBLAS handles, autograd's buffers) must not happen inside it (torch.cuda.graph's rules).
WARMUP_STEPS = 2
# Graphs kept per energy, oldest dropped first: enough for a few shapes (multi-grid, sampling
# at another batch size) without holding every step's activations for ever.
KEPT_PER_ENERGY = 8


def graph_generator_ok(generator: torch.Generator | None) -> bool:
    """Whether a capture can draw from ``generator``: the default CUDA generator always can, an
    explicit one where this torch can register it with the graph."""
    return generator is None or hasattr(torch.cuda.CUDAGraph, "register_generator_state")


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    x: Tensor  # the chain's buffer: the graph reads and writes it in place
    flag: Tensor  # the step's (B,) non-finite flags, rewritten by every replay
    keep_alive: tuple[Tensor, ...]  # other buffers the graph uses (the noise)


_CAPTURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_key(energy: object) -> tuple[int, ...] | None:
    """Addresses of a module's parameters and buffers (``None`` for other energies, whose
    tensors cannot be listed, so their graphs are never kept)."""
    if not isinstance(energy, torch.nn.Module):
        return None
    return tuple(t.data_ptr() for t in (*energy.parameters(), *energy.buffers()))


def run_as_cuda_graph(
    step: Callable[[int], Tensor], x: Tensor, n_steps: int, generator: torch.Generator | None,
    *, keep: tuple[object, Hashable] | None = None, buffers: tuple[Tensor, ...] = (),
) -> tuple[Tensor, list[Tensor]]:
    """Run ``step(index)`` (an in-place update of ``x`` ``(B, *S)`` returning its ``(B,)``
    non-finite flags) for ``index`` 0 .. ``n_steps - 1`` as replays of one captured step.

    ``keep``: ``(energy, key)`` to keep the captured graph under (and to replay a graph kept
    before, when its key matches: then ``x`` is only copied in); ``buffers``: the other tensors
    ``step`` writes (kept alive with the graph).

    Returns the chain and the flags of the steps run: all of them, or only the warm-up steps'
    when the step cannot be captured (an energy that synchronises with the host, say), the
    caller then running the rest eagerly on ``x``; none for a chain too short to gain.
    """
    # Streams, capture and replay act on the current device: a chain on another GPU (cuda:1
    # with cuda:0 current) would be captured as an empty graph and never move.
    with torch.cuda.device(x.device):
        return _run_as_cuda_graph(step, x, n_steps, generator, keep=keep, buffers=buffers)


def _run_as_cuda_graph(
    step: Callable[[int], Tensor], x: Tensor, n_steps: int, generator: torch.Generator | None,
    *, keep: tuple[object, Hashable] | None, buffers: tuple[Tensor, ...],
) -> tuple[Tensor, list[Tensor]]:
    if keep is not None:
        captured = _CAPTURED.get(keep[0], {}).get(keep[1])
        if captured is not None:
            captured.x.copy_(x)
            flags = []
            for _ in range(n_steps):
                captured.graph.replay()
                flags.append(captured.flag.clone())
            return captured.x.clone(), flags
    if n_steps <= WARMUP_STEPS + 1:
        return x, []
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
    caller = torch.cuda.current_stream()
    try:
        with torch.cuda.graph(graph):
            flag = step(WARMUP_STEPS)  # recorded, not run: the replays below run it
    except RuntimeError:
        # torch's graph exit puts the caller's stream back only after capture_end, which a
        # failed capture makes raise: the eager steps would go on on the capture's stream.
        torch.cuda.set_stream(caller)
        _close_failed_capture(graph, generator, x.device)
        return x, flags
    for _ in range(WARMUP_STEPS, n_steps):
        graph.replay()
        flags.append(flag.clone())  # the graph writes every step's flag into one buffer
    if keep is None:
        return x, flags
    kept = _CAPTURED.setdefault(keep[0], {})
    if len(kept) >= KEPT_PER_ENERGY:  # weights replaced, not updated, at every run: no leak
        del kept[next(iter(kept))]
    kept[keep[1]] = _Captured(graph, x, flag, buffers)
    return x.clone(), flags  # x is now the kept graph's buffer, which later runs overwrite


def _close_failed_capture(graph: torch.cuda.CUDAGraph, generator: torch.Generator | None,
                          device: torch.device) -> None:
    """Leave the generators as a capture that never happened would.

    A capture that fails midway never reaches its end, so the generators it registered (the
    default CUDA generator and ``generator``) go on counting their draws as the graph's: the
    caller's next eager draw, from either, raised "Offset increment outside graph capture
    encountered unexpectedly". Dropping the failed graph and ending one empty capture over the
    same generators returns them to eager drawing, at the offsets they had before the failed
    capture (a capture's draws never advance them)."""
    graph.reset()
    closing = torch.cuda.CUDAGraph()
    if generator is not None:
        closing.register_generator_state(generator)
    with torch.cuda.graph(closing):
        torch.zeros(1, device=device)  # one node: an empty graph warns that it is empty
