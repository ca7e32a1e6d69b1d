"""One model trained by several processes: ``torchrun --nproc_per_node N -m stgconv train ...``.

Each process (rank) holds a shard of the training examples (rows ``rank::world_size``, the
round-robin split of ``DistributedSampler`` without its shuffling and its padding: when the
processes do not divide the examples, shards differ by one) and the chains of its own examples, runs
its chains on its own generator (seeded ``seed + rank``), and after every backward pass the
parameter gradients are averaged over all ranks, each rank's weighted by its batch size (so a step
on whole shards of unequal size has the gradient of one batch of all the examples), and every rank
takes the same optimizer step from the same parameters: data-parallel training. The averaging is an
explicit all-reduce rather than a ``DistributedDataParallel`` wrapper because the energy is called
three ways per iteration (the chain's gradient in ``x``, the data term and the sample term of the
loss), which does not fit DDP's one-forward-one-backward reducer; the arithmetic is the same.

Checkpoints stay single files: every rank's chain state and generator state is gathered to rank 0
(only: the other ranks' state dicts lack them), which writes the checkpoint atomically; a resumed
run shards it again, for the same or another number of processes. The backend follows the device:
NCCL on CUDA, Gloo on the CPU.
"""

from __future__ import annotations

import gc
import hashlib
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from stgconv.config import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: ``rank`` in ``[0, size)``, and the
    ``device`` it trains on. ``owns_group``: :func:`shutdown` and :func:`abandon` destroy the
    process group, false for one the caller had made (:func:`from_environment`)."""

    rank: int
    size: int
    device: torch.device
    owns_group: bool = True

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs and draws progress."""
        return self.rank == 0

    def shard(self, n: int) -> Tensor:
        """This rank's example indices ``(n_local,)``: ``rank, rank + size, ...`` below ``n``.

        Raises:
            ValueError: fewer examples than processes (a rank would have none).
        """
        if n < self.size:
            raise ValueError(f"{n} training examples cannot be shared by {self.size} processes: "
                             "every process needs at least one; use fewer processes")
        return torch.arange(self.rank, n, self.size)

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter], *,
                          weight: float = 1.0) -> None:
        """Replace every parameter's gradient by its mean over the ranks, this rank's
        counted ``weight`` times (its batch size: the mean of per-example means is then the
        mean over all the ranks' examples); one all-reduce of them all flattened together."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([*(g.reshape(-1) * weight for g in grads),
                          grads[0].new_full((1,), weight)])
        _collective(dist.all_reduce, flat)
        flat = flat[:-1] / flat[-1]
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def average(self, values: dict[str, float], *, weight: float = 1.0) -> dict[str, float]:
        """The mean over the ranks of each value, this rank's counted ``weight`` times (for
        logs: the loss of the whole step)."""
        keys = sorted(values)
        flat = torch.tensor([*(values[k] * weight for k in keys), weight], dtype=torch.float64,
                            device=self.device)
        _collective(dist.all_reduce, flat)
        return dict(zip(keys, (flat[:-1] / flat[-1]).tolist()))

    def gather(self, value: Any) -> list[Any] | None:
        """``value`` of every rank, in rank order, on rank 0 (``None`` on the others, which
        write nothing); tensors travel on the CPU."""
        gathered: list[Any] | None = [None] * self.size if self.is_main else None
        _collective(dist.gather_object, _to_cpu(value), gathered, dst=0)
        return gathered

    def barrier(self) -> None:
        _collective(dist.barrier)

    def check_same(self, counts: dict[str, int], digests: dict[str, int] | None = None
                   ) -> None:
        """Raise ``ValueError`` on every rank unless every rank holds the same ``counts``
        (``{what: count}``, what each process read from its own machine's files; each rank's
        value named) and ``digests`` (``{what:`` :func:`digest` ``}``; the ranks whose differ
        from rank 0's named). A collective: it returns once every rank has called it."""
        digests = digests or {}
        mine = torch.tensor([*counts.values(), *digests.values()], dtype=torch.long,
                            device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        _collective(dist.all_gather, every, mine)
        held = torch.stack(every).tolist()  # (size, len(counts) + len(digests))
        differing = [f"{what}: " + ", ".join(f"{row[i]} in process {rank}"
                                             for rank, row in enumerate(held))
                     for i, what in enumerate(counts) if len({row[i] for row in held}) > 1]
        for i, what in enumerate(digests, start=len(counts)):
            others = [str(rank) for rank, row in enumerate(held) if row[i] != held[0][i]]
            if others:
                differing.append(f"{what} of process{'es' if len(others) > 1 else ''} "
                                 f"{', '.join(others)} differ from process 0's")
        if differing:
            raise ValueError(f"the training processes read different files "
                             f"({'; '.join(differing)}): every machine needs the same config "
                             "and training data (read by the same library versions) and, to "
                             "resume, the same run folder at the same path (a shared file "
                             "system, or identical copies)")


def digest(data: bytes | Tensor) -> int:
    """A 63-bit digest of ``data`` (SHA-256's first bytes), for :meth:`World.check_same` to
    compare what the processes read without sending it. A tensor's values are hashed in its
    own memory (a copy on the CPU where it lies elsewhere): as bytes, a whole data set was
    copied once more in every process."""
    if isinstance(data, Tensor):
        data = data.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


class PeerFailedError(RuntimeError):
    """An exchange with the other training processes failed: most often because one of them
    stopped, with its own error."""


def _collective(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return operation(*args, **kwargs)
    except RuntimeError as err:
        # Gloo and NCCL report a peer that stopped as a RuntimeError of their own; the line
        # that explains it is the peer's error, printed by that process.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PeerFailedError(f"{operation.__name__} across the training processes failed, "
                              "most likely because another process stopped (its error is "
                              f"printed by that process): {reason}") from err


def launched_rank() -> int:
    """This process's rank as ``torchrun`` set it (0 for a single process): who prints.

    A ``RANK`` left in the environment of a single process (a shell that once ran torchrun, a
    scheduler's own variable) does not make it rank 1 of one, which kept its report silent."""
    if launched_world_size() <= 1:
        return 0
    rank = _launched("RANK")
    if rank is None or rank >= launched_world_size():
        given = "unset" if rank is None else repr(os.environ["RANK"])
        raise ValueError(f"environment variable WORLD_SIZE is {launched_world_size()} but RANK "
                         f"is {given}: torchrun sets both, RANK below WORLD_SIZE; unset "
                         "WORLD_SIZE to run one process")
    return rank


def launched_world_size() -> int:
    """How many processes ``torchrun`` started (1 without it)."""
    size = _launched("WORLD_SIZE")
    return 1 if size is None else size


def _launched(name: str) -> int | None:
    """The whole number >= 0 that torchrun put in the environment variable ``name``, ``None``
    where unset; anything else is ``ValueError`` naming it (was a traceback from ``int``)."""
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"environment variable {name} is {value!r}, not a whole number >= 0 "
                         "as torchrun sets it: unset it to run one process")
    return number


def from_environment(device: str = "auto") -> World | None:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK`` and its rendezvous variables); ``None`` for a single process.

    ``device`` is the config's: on CUDA each process takes ``cuda:LOCAL_RANK`` and NCCL, on the
    CPU Gloo.
    """
    size = launched_world_size()
    if size <= 1:
        return None
    rank, local_rank = launched_rank(), _launched("LOCAL_RANK") or 0
    target = resolve_device(device)
    if target.type == "cuda":
        if target.index is not None:
            raise ValueError(f"device {device!r} names one GPU, but under torchrun process k "
                             "trains on cuda:k (its LOCAL_RANK): set device to cuda")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} of this machine needs cuda:{local_rank}, "
                             f"but {torch.cuda.device_count()} GPU(s) are visible: start at "
                             "most that many with torchrun --nproc_per_node")
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    # A group the caller made (for collectives of its own around the training) stays theirs:
    # destroyed at the end, their next collective failed as uninitialized.
    joined = dist.is_initialized()
    if not joined:
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return World(rank=rank, size=size, device=target, owns_group=not joined)


def shutdown(world: World | None) -> None:
    """Leave the process group once every rank is done (no rank exits while another still
    writes or waits), destroying it where :attr:`World.owns_group`."""
    if world is not None and dist.is_initialized():
        world.barrier()
        if world.owns_group:
            dist.destroy_process_group()
            # Free Gloo's process group (and join its threads) now, not during interpreter
            # exit: left to exit, a rank aborted ("terminate called without an active
            # exception") in 5 of 70 two-process CPU runs under load here, after training had
            # finished; 0 of 80 with this collection.
            gc.collect()


def abandon(world: World | None) -> None:
    """Leave the process group after this process failed, without waiting for the others.
    Gloo's group is freed now: left to the interpreter's exit, its threads aborted the process
    ("terminate called without an active exception", SIGABRT instead of the exit status the
    error gives) once in a full test run under load. NCCL's is left to the exit, as torchrun
    stops the process anyway: destroying a communicator that a failed collective still holds
    can hang."""
    if (world is not None and world.owns_group and dist.is_initialized()
            and dist.get_backend() == "gloo"):
        dist.destroy_process_group()
        gc.collect()


def interleave(shards: list[Tensor]) -> Tensor:
    """Rows sharded round-robin (rank ``r`` of ``size = len(shards)`` holds rows ``r::size``,
    ``(n_r, *S)``) back in their global order: ``(sum n_r, *S)``."""
    total = sum(len(s) for s in shards)
    out = shards[0].new_empty((total, *shards[0].shape[1:]))
    for rank, rows in enumerate(shards):
        out[rank::len(shards)] = rows
    return out


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def merge_chain_states(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """One checkpointable chain state from every rank's (rank order): persistent chains
    ``(n_local, k, *S)`` back in example order ``(N, k, *S)``, replay-buffer samples
    concatenated, with each rank's count and next slot (``rank_lengths``, ``rank_next``) so
    that as many processes get their own buffers back; stateless starts stay empty."""
    if any("chains" in state for state in states):
        return {"chains": interleave([state["chains"] for state in states])}
    stored = [state["samples"] for state in states if "samples" in state]
    if not stored:
        return {}
    empty = stored[0][:0]  # a rank whose buffer holds nothing yet
    samples = [state.get("samples", empty) for state in states]
    return {"samples": torch.cat(samples), "next": torch.tensor(0),
            "rank_lengths": torch.tensor([len(rows) for rows in samples]),
            "rank_next": torch.tensor([int(state.get("next", 0)) for state in states])}


def shard_chain_state(state: dict[str, Tensor], world: World | None, *,
                      capacity: int | None = None) -> dict[str, Tensor]:
    """This rank's part of a checkpoint's chain state (written by any number of processes, as
    :func:`merge_chain_states` returns it): of persistent chains ``(N, k, *S)``, those of its
    examples, ``(n_local, k, *S)``; its own replay buffer when as many processes wrote it
    (so their resume is exact, as a single process's is), else every ``size``-th sample (at
    most ``capacity``)."""
    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    if "chains" in state:
        return state if size == 1 else {"chains": state["chains"][rank::size]}
    if "samples" in state:
        if "rank_lengths" not in state:  # one process wrote it
            if size == 1 and (capacity is None or len(state["samples"]) <= capacity):
                return state
        elif len(state["rank_lengths"]) == size:
            own = state["samples"].split(state["rank_lengths"].tolist())[rank]
            if capacity is None or len(own) <= capacity:
                return {"samples": own, "next": state["rank_next"][rank]}
        samples = state["samples"][rank::size]
        return {"samples": samples[:capacity] if capacity is not None else samples,
                "next": torch.tensor(0)}
    return state


def gather_generators(generator: torch.Generator, world: World | None) -> dict[str, Any]:
    """The checkpoint entries of the random state: ``generator`` (rank 0's), and with several
    processes ``generators`` (every rank's, in rank order)."""
    states = world.gather(generator.get_state()) if world is not None else None
    if states is None:  # one process, or not rank 0 (whose state dict is the one written)
        return {"generator": generator.get_state()}
    return {"generator": states[0], "generators": states}


def take_generator(generator: torch.Generator, state: dict[str, Any], world: World | None
                   ) -> None:
    """Restore this rank's random state from a checkpoint. Written by as many processes as now
    run, each rank continues its own stream exactly; written by another number, every rank
    starts a fresh stream seeded from the config's seed, the iteration and its rank (the run
    continues, not bit for bit as an uninterrupted run would). So does a run resumed on another
    kind of device than wrote it (a CUDA generator's state is its seed and offset, a CPU one's a
    Mersenne Twister's), with a warning."""
    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    states = state.get("generators", [state["generator"]])
    if len(states) == size:
        # RNG states are CPU byte tensors even for CUDA generators.
        own = states[rank].cpu()
        if own.shape == generator.get_state().shape:
            generator.set_state(own)
            return
        warnings.warn(f"the checkpoint's random state is another kind of generator's than this "
                      f"{generator.device.type} one (written on another device): the run "
                      "continues from a fresh stream seeded from the config's seed and the "
                      "iteration", stacklevel=2)
    seed = int(state.get("config", {}).get("seed", 0))
    generator.manual_seed(seed + 1_000_003 * (int(state["iteration"]) + 1) + rank)
