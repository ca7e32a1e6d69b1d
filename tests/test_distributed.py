"""Training on several processes (stgconv.distributed): two Gloo processes on the CPU.

The averaged gradient of one step equals the single-process gradient on both ranks' data and
samples together; ``torchrun ... -m stgconv train`` writes one checkpoint that loads in one
process, resumes exactly with the same number of processes and continues with another; the
sharding of chain states round-trips; only process 0 writes into the run folder; processes that
read different files stop before training; SIGTERM unwinds a torchrun process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from stgconv import distributed
from stgconv.checkpoint import load_checkpoint, load_model, load_multigrid
from stgconv.cli import main
from stgconv.config import ExperimentConfig, TrainConfig, load_config
from stgconv.distributed import (
    PeerFailedError,
    World,
    abandon,
    digest,
    from_environment,
    gather_generators,
    interleave,
    merge_chain_states,
    shard_chain_state,
    shutdown,
    take_generator,
)
from stgconv.energy import image_energy
from stgconv.losses import contrastive_divergence
from stgconv.mcmc import Langevin, NoiseInit, PersistentChains
from stgconv.tasks import synthesize, train
from stgconv.tasks.train import _sigterm_held, _terminated_as_exit
from stgconv.train import DivergenceError, MultiGridTrainer, Trainer

N_EXAMPLES = 6
BATCH = 2
GRIDS = ("multigrid.grids=[{size: 4, model: {arch: texture, layers: [[4, 3, 1, 1]]}}, "
         "{size: 8, model: {arch: object, layers: [[4, 3, 2, 1]]}}]")
"""A two-grid model of :func:`tiny_run`'s images (a ``--set`` value)."""
ONE_NET = ("--set", "model.arch=object", "--set", "model.layers=[[4, 3, 2, 1]]",
           "--set", "chains.chains_per_example=2")
"""The net of :func:`tiny_run`; a multigrid run gives its grids instead (``"--set", GRIDS``),
and its own ``model`` and ``chains`` sections would be refused."""


def tiny_energy() -> torch.nn.Module:
    torch.manual_seed(0)
    return image_energy("texture", in_channels=1, layers=[[4, 3, 1], [4, 3, 1]],
                        reference_sigma=0.5)


def examples() -> torch.Tensor:
    return torch.rand(N_EXAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1


STEP_CASES = {"equal batches": (N_EXAMPLES, BATCH),
              "shards of 3 and 2 examples, each whole": (5, 4)}
"""``(n_examples, batch_size)`` of each one-step case :func:`one_step_of_each_case` runs."""


def one_step_of_each_case(rank: int, size: int, store: str, out: str) -> None:
    """Rank ``rank`` of ``size``: for each of STEP_CASES, one training step on its shard of the
    first ``n_examples`` by a fresh trainer; saves its batch, its samples and the (averaged)
    gradient as ``{case}-rank{rank}.pt``. (One launch for every case: each launch starts two
    Python processes that import torch.)"""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    world = World(rank=rank, size=size, device=torch.device("cpu"))
    for case, (n_examples, batch_size) in STEP_CASES.items():
        energy = tiny_energy()
        shard = examples()[:n_examples][world.shard(n_examples)]
        chains = PersistentChains(len(shard), NoiseInit("gaussian", 0.5), chains_per_example=2)
        trainer = Trainer(energy, Langevin(n_steps=3, step_size=0.05), chains, shard,
                          train=TrainConfig(batch_size=batch_size),
                          generator=torch.Generator().manual_seed(10 + rank), world=world)
        batch = torch.arange(trainer.batch_size)
        trainer.step([batch])
        torch.save({"x_pos": shard[batch], "x_neg": trainer.last_samples,
                    "grads": [p.grad.clone() for p in energy.parameters()]},
                   f"{out}/{case}-rank{rank}.pt")
    # The library's own exit (barrier, destroy, collect): a bare destroy_process_group left
    # Gloo's threads to the interpreter's exit, and a rank aborted there ("terminate called
    # without an active exception") in 2 of 28 runs of this test.
    shutdown(world)


@pytest.fixture(scope="module")
def one_step_on_two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one_step")
    mp.spawn(one_step_of_each_case, args=(2, str(out / "store"), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("case", STEP_CASES)
def test_averaged_gradient_equals_the_single_process_gradient(one_step_on_two_processes: Path,
                                                              case: str) -> None:
    ranks = [torch.load(one_step_on_two_processes / f"{case}-rank{r}.pt", weights_only=True)
             for r in range(2)]
    for a, b in zip(ranks[0]["grads"], ranks[1]["grads"]):
        assert torch.equal(a, b)  # every rank steps with the same gradient
    # The samples differ per rank (own chains, own generator): the gradient is not trivial.
    assert not torch.allclose(ranks[0]["x_neg"][:4], ranks[1]["x_neg"][:4])
    energy = tiny_energy()
    loss, _ = contrastive_divergence(energy, torch.cat([r["x_pos"] for r in ranks]),
                                     torch.cat([r["x_neg"] for r in ranks]))
    loss.backward()
    # Equal up to float32 summation order (two half-batch means averaged vs one mean: 5e-6 of
    # the gradient's norm here, most of it in a bias whose terms cancel to 7e-5). Shards of 3
    # and 2: the plain mean of the two ranks' means weighted the second's examples 1/4 each
    # instead of 1/5 (20% off).
    averaged = torch.cat([g.flatten() for g in ranks[0]["grads"]])
    single = torch.cat([p.grad.flatten() for p in energy.parameters()])
    assert (averaged - single).norm() <= 1e-4 * single.norm()


def test_chain_states_shard_and_merge_back() -> None:
    chains = torch.arange(7 * 2).view(7, 2, 1).float()
    worlds = [World(rank=r, size=3, device=torch.device("cpu")) for r in range(3)]
    shards = [shard_chain_state({"chains": chains}, w)["chains"] for w in worlds]
    assert [len(s) for s in shards] == [3, 2, 2]
    assert torch.equal(shards[1], chains[1::3])
    assert torch.equal(merge_chain_states([{"chains": s} for s in shards])["chains"], chains)
    assert torch.equal(interleave([w.shard(7) for w in worlds]), torch.arange(7))
    # Replay buffers: concatenated, then every rank takes every size-th sample up to capacity;
    # one process keeps a state that fits whole (its resume is exact).
    merged = merge_chain_states([{"samples": torch.zeros(4, 1)}, {},
                                 {"samples": torch.ones(3, 1)}])
    assert merged["samples"].shape == (7, 1)
    assert shard_chain_state(merged, worlds[0], capacity=2)["samples"].shape == (2, 1)
    single = {"samples": torch.zeros(5, 1), "next": torch.tensor(3)}
    assert shard_chain_state(single, None, capacity=8) is single
    # As many processes as wrote the buffers get their own back, with their next slot: a
    # resume continues exactly (every size-th sample mixed the ranks' buffers, next reset).
    own = [{"samples": torch.full((3, 1), float(r)), "next": torch.tensor(r)} for r in range(3)]
    merged = merge_chain_states(own)
    for world, state in zip(worlds, own):
        back = shard_chain_state(merged, world, capacity=3)
        assert torch.equal(back["samples"], state["samples"]) and int(back["next"]) == world.rank
    two = [World(rank=r, size=2, device=torch.device("cpu")) for r in range(2)]
    assert shard_chain_state(merged, two[1], capacity=8)["samples"].flatten().tolist() == [
        0.0, 1.0, 1.0, 2.0]  # another count: every size-th sample
    assert merge_chain_states([{}, {}]) == {}


def test_a_rank_whose_buffer_is_empty_gets_its_empty_buffer_back() -> None:
    """Every rank keeps its place in the merged buffers, one that holds nothing yet too, so as
    many processes resume exactly."""
    cpu = torch.device("cpu")
    merged = merge_chain_states([{"samples": torch.zeros(2, 1), "next": torch.tensor(1)}, {},
                                 {"samples": torch.ones(3, 1), "next": torch.tensor(2)}])
    backs = [shard_chain_state(merged, World(rank=r, size=3, device=cpu), capacity=4)
             for r in range(3)]
    assert [len(back["samples"]) for back in backs] == [2, 0, 3]
    assert [int(back["next"]) for back in backs] == [1, 0, 2]


def test_one_process_takes_at_most_its_capacity_of_a_larger_buffer() -> None:
    state = {"samples": torch.arange(5.0).view(5, 1), "next": torch.tensor(3)}
    assert shard_chain_state(state, None, capacity=2)["samples"].flatten().tolist() == [0.0, 1.0]


def test_one_process_keeps_the_next_slot_of_a_buffer_at_its_capacity() -> None:
    state = {"samples": torch.arange(4.0).view(4, 1), "next": torch.tensor(2)}
    assert int(shard_chain_state(state, None, capacity=4)["next"]) == 2


def test_a_rank_other_than_0_writes_only_its_own_generator(monkeypatch) -> None:
    """Rank 1 receives nothing from the gather (rank 0 writes the checkpoint)."""
    monkeypatch.setattr(dist, "gather_object", lambda *args, **kwargs: None)
    g = torch.Generator().manual_seed(3)
    written = gather_generators(g, World(rank=1, size=2, device=torch.device("cpu")))
    assert written.keys() == {"generator"} and torch.equal(written["generator"], g.get_state())


def test_generators_continue_per_rank_or_reseed_for_another_count() -> None:
    states = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    checkpoint = {"generator": states[0], "generators": states, "iteration": 4,
                  "config": {"seed": 7}}
    g = torch.Generator()
    take_generator(g, checkpoint, World(rank=1, size=2, device=torch.device("cpu")))
    assert torch.equal(g.get_state(), states[1])
    take_generator(g, checkpoint, None)  # one process now: a fresh, seeded stream
    assert not torch.equal(g.get_state(), states[0])
    first = torch.rand(3, generator=g)
    take_generator(g, checkpoint, None)
    assert torch.equal(torch.rand(3, generator=g), first)


def test_logged_values_are_the_mean_over_every_ranks_examples(monkeypatch) -> None:
    """Rank 0's loss 1 over 3 examples and rank 1's 5 over 1 (its sum and weight added by the
    all-reduce): the whole step's loss is 8 / 4."""
    monkeypatch.setattr(dist, "all_reduce", lambda flat: flat.add_(torch.tensor([5.0, 1.0],
                                                                                dtype=flat.dtype)))
    world = World(rank=0, size=2, device=torch.device("cpu"))
    assert world.average({"loss": 1.0}, weight=3.0) == {"loss": 2.0}


@pytest.mark.parametrize("theirs, said", [
    ([6, 2], "iteration resumed from: 1 in process 0, 2 in process 1"),
    ([5, 2], "training examples: 6 in process 0, 5 in process 1; iteration resumed from: 1 in "
             "process 0, 2 in process 1"),
], ids=["one count", "two counts"])
def test_processes_that_differ_in_a_count_are_stopped_naming_each(monkeypatch, theirs: list[int],
                                                                  said: str) -> None:
    """Process 1 read the same examples but resumed from another iteration, or read other
    examples too: every differing count is named, with each process's value."""
    def all_gather(every: list[torch.Tensor], mine: torch.Tensor) -> None:
        every[0].copy_(mine)
        every[1].copy_(torch.tensor(theirs))

    monkeypatch.setattr(dist, "all_gather", all_gather)
    world = World(rank=0, size=2, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=rf"read different files \({re.escape(said)}\): every"):
        world.check_same({"training examples": 6, "iteration resumed from": 1})


@pytest.mark.parametrize("theirs, said", [
    ([[6, 11, 7], [6, 11, 7], [6, 11, 7]], None),
    ([[6, 11, 7], [6, 12, 7], [6, 11, 7]], "settings of process 1 differ from process 0's"),
    ([[6, 11, 7], [6, 11, 8], [6, 11, 9]], "example values of processes 1, 2 differ from "
                                           "process 0's"),
], ids=["same", "one process's settings", "two processes' examples"])
def test_processes_that_read_other_settings_or_examples_are_stopped(monkeypatch, theirs,
                                                                    said) -> None:
    """Another config file (a learning rate) or other images of the same count trained a model
    of mixed settings, or on shards of other examples, without a word: their digests are
    compared, and the processes whose differ from process 0's named."""
    def all_gather(every: list[torch.Tensor], mine: torch.Tensor) -> None:
        for gathered, row in zip(every, theirs):
            gathered.copy_(torch.tensor(row))

    monkeypatch.setattr(dist, "all_gather", all_gather)
    world = World(rank=0, size=3, device=torch.device("cpu"))
    check = partial(world.check_same, {"training examples": 6},
                    digests={"settings": 11, "example values": 7})
    if said is None:
        check()
    else:
        with pytest.raises(ValueError, match=rf"^the training processes read different files "
                                             rf"\({re.escape(said)}\): every machine needs the "
                                             "same config and training data"):
            check()
    assert digest(b"a") == digest(b"a") != digest(b"b")
    assert 0 <= digest(b"a") < 2**63


def test_a_tensors_digest_is_of_its_values_without_a_copy_of_them() -> None:
    """The examples' digest took their bytes, a copy of the whole data set in every process;
    a tensor is hashed in its own memory, as its bytes would be, whatever its dtype."""
    values = torch.arange(1 << 20, dtype=torch.float32).reshape(256, 4096)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        hashed = digest(values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hashed == digest(values.numpy().tobytes())
    assert peak < values.numel() * values.element_size() // 8, peak
    assert digest(values.t()) == digest(values.t().contiguous().numpy().tobytes())
    assert digest(values.bfloat16()) != digest(values.half())


def test_rank_0_alone_is_the_main_process() -> None:
    assert [World(rank=r, size=3, device=torch.device("cpu")).is_main for r in range(3)] == [
        True, False, False]


def test_more_processes_than_examples_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="3 training examples cannot be shared by 4 processes"):
        World(rank=0, size=4, device=torch.device("cpu")).shard(3)


def test_a_stopped_peer_is_one_line_naming_the_process(monkeypatch, capsys, tmp_path: Path
                                                        ) -> None:
    """Under torchrun each failing process prints one line saying which it is; a collective
    that fails because a peer stopped says so instead of a Gloo traceback."""
    def closed(*_: object, **__: object) -> None:
        raise RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:53650.\nmore")

    monkeypatch.setattr(dist, "all_reduce", closed)
    world = World(rank=0, size=2, device=torch.device("cpu"))
    with pytest.raises(PeerFailedError, match="another process stopped .* Connection closed by "
                                              r"peer \[127.0.0.1\]:53650.$"):
        world.average({"loss": 1.0})
    # A peer that failed after the last exchange (writing its samples): the same at the end.
    monkeypatch.setattr(dist, "barrier", closed)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    with pytest.raises(PeerFailedError, match="across the training processes failed"):
        shutdown(world)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--data", str(tmp_path / "none.npy"), "--out", str(tmp_path / "run"),
                 "--set", "data.kind=voxels", "--set", "model.arch=desc32_small"]) == 2
    assert capsys.readouterr().err.startswith(
        "stgconv train: error (process 1 of 2): voxel shapes not found")


def test_only_process_0_reports_what_the_command_wrote(monkeypatch, capsys, tmp_path: Path
                                                       ) -> None:
    """Under torchrun one report for the whole run, process 0's; the others print none."""
    monkeypatch.setattr("stgconv.tasks.train", lambda *_, **__: tmp_path / "run")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, report in (("0", f"stgconv train: wrote {tmp_path / 'run'} ("), ("1", "")):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "--out", str(tmp_path / "run")]) == 0
        out = capsys.readouterr().out
        assert out.startswith(report) and bool(out) == bool(report), (rank, out)


@pytest.mark.parametrize("command", [
    ["synthesize", "run"], ["eval", "recovery", "--video", "c.npy", "--mask", "m.npy"],
    ["demo"], ["fill-prior", "clips", "--out", "prior"]])
def test_commands_but_train_refuse_several_torchrun_processes(monkeypatch, capsys, tmp_path,
                                                                command: list[str]) -> None:
    """Each process ran the whole command: the work N times over, N processes writing the
    same outputs (on CUDA, all on one GPU). Refused before any work; one process is fine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(command) == 2
    assert re.fullmatch(rf"stgconv {command[0]}.*: error \(process 1 of 2\): stgconv "
                        rf"{command[0]}.* runs as one process, but torchrun started 2 "
                        r"\(WORLD_SIZE=2\): run it without torchrun \(train alone is "
                        r"data-parallel\)\n", capsys.readouterr().err)
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert main(["synthesize", "run"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_only_process_0_prints_the_resolved_config(monkeypatch, capsys, tmp_path: Path) -> None:
    """``torchrun ... train --print-config > run.yaml`` got one copy of every key per process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, shown in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", "--out", str(tmp_path / "run"), "--print-config"]) == 0
        out = capsys.readouterr().out
        assert (out.count("\nseed: ") == 1 if shown else out == ""), (rank, out)
    assert not (tmp_path / "run").exists()


def test_sigterm_unwinds_a_torchrun_process() -> None:
    """torchrun stops the other processes of a failed run by SIGTERM: it must unwind (the new
    run's cleanup, the folder's lock) as an exception, and only while training."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, _terminated_as_exit(True):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_held_sigterm_waits_for_the_block_though_another_thread_takes_it() -> None:
    """The system gives a SIGTERM that the main thread blocks to another thread (gloo's, the
    progress bar's), and Python runs the handler in the main thread all the same: the hold
    cannot rest on the main thread's signal mask."""
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    ran = []
    try:
        with pytest.raises(SystemExit) as stopped, _terminated_as_exit(True), _sigterm_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler would run here
            ran.append("the whole block")
    finally:
        done.set()
        other.join()
    assert ran == ["the whole block"] and stopped.value.code == 143


def test_a_sigterm_handled_as_the_hold_begins_is_held_and_leaves_no_mask(monkeypatch) -> None:
    """Python runs a pending handler at its next check, which may come as soon as the call that
    blocks SIGTERM returns: the signal is held then too, and the main thread's mask is restored
    at the end (raised there, the hold never began and SIGTERM stayed blocked in the main
    thread for good)."""
    task = sys.modules["stgconv.tasks.train"]
    block = signal.pthread_sigmask

    def block_then_handle(how: int, mask: object) -> object:
        previous = block(how, mask)
        if how == signal.SIG_BLOCK:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        return previous

    mask_before = block(signal.SIG_BLOCK, [])
    monkeypatch.setattr(task.signal, "pthread_sigmask", block_then_handle)
    ran = []
    try:
        with pytest.raises(SystemExit) as stopped, _terminated_as_exit(True), _sigterm_held():
            ran.append("the whole block")
    finally:
        monkeypatch.undo()
        blocked = signal.SIGTERM in block(signal.SIG_SETMASK, mask_before)
    assert ran == ["the whole block"] and stopped.value.code == 143 and not blocked


def test_a_sigterm_kept_for_a_hold_is_not_raised_again_by_a_later_one() -> None:
    """A second SIGTERM handled as a hold ends, after its count is down but before it raises
    the one it kept, is raised at once; the kept one goes with it, not left for a later hold in
    the same process (a resumed run in one interpreter) to raise."""
    task = sys.modules["stgconv.tasks.train"]
    with _terminated_as_exit(True):
        task._held.signal = signal.SIGTERM  # kept by a hold that has just counted itself out
        with pytest.raises(SystemExit):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        ran = []
        with _sigterm_held():
            ran.append("the later hold")
    assert ran == ["the later hold"]


def test_a_hold_blocks_sigterm_in_its_thread_and_lets_it_through_after() -> None:
    """Where no other thread takes it and no handler is set (one process, not torchrun),
    SIGTERM's default action, ending the process, waits for the held block: the block runs
    with SIGTERM in its thread's mask, and the mask is as it was after."""
    with _sigterm_held():
        inside = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGTERM in inside and signal.SIGTERM not in after


@pytest.mark.parametrize("handled_at_once", [False, True],
                         ids=["masked until the end", "handled in the inner block"])
def test_a_sigterm_during_a_nested_hold_waits_for_the_outermost_block(
        handled_at_once: bool) -> None:
    """Holds nest (a cleanup inside a removal): a SIGTERM in the inner one is raised once the
    outer block has run too, not where the inner one ends. Masked, it reaches the handler only
    as the outer block ends; another thread that takes it has the handler run at once, inside
    the inner block, which keeps it all the same."""
    ran = []
    with pytest.raises(SystemExit) as stopped, _terminated_as_exit(True), _sigterm_held():
        with _sigterm_held():
            if handled_at_once:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            else:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)  # the handler would run here
            ran.append("the inner block")
        ran.append("the outer block")
    assert ran == ["the inner block", "the outer block"] and stopped.value.code == 143


def test_a_torchrun_process_training_off_the_main_thread_keeps_sigterms_action() -> None:
    """Python sets signal handlers from the main thread only (elsewhere signal.signal raises
    ValueError): training called from a program's thread pool trains, SIGTERM's action left as
    the program set it."""
    before = signal.getsignal(signal.SIGTERM)
    seen, errors = [], []

    def work() -> None:
        try:
            with _terminated_as_exit(True):
                seen.append(signal.getsignal(signal.SIGTERM))
        except BaseException as err:  # reported below: a thread's error is not the test's
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == [] and seen == [before]


class CallersStop(Exception):
    """Raised by the SIGTERM handler a caller of ``train`` set."""


def callers_handler(*_: object) -> None:
    raise CallersStop


def test_a_failed_training_process_frees_its_gloo_group_without_waiting(monkeypatch,
                                                                        tmp_path: Path) -> None:
    """A process whose training failed leaves its Gloo group at once (no barrier: the others
    may be gone); left to the interpreter's exit, Gloo's threads aborted it (SIGABRT) once in a
    full test run."""
    task = sys.modules["stgconv.tasks.train"]
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        monkeypatch.setattr(distributed, "from_environment",
                            lambda device: World(rank=0, size=1, device=torch.device("cpu")))
        monkeypatch.setattr(task, "_fit", failing_new_run([]))
        monkeypatch.setattr(World, "barrier", lambda self: pytest.fail("waited for the others"))
        with pytest.raises(ValueError, match="a refused input"):
            train(load_config(None, [f"out_dir={tmp_path / 'run'}", "device=cpu"]))
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_process_group_the_caller_made_is_left_to_the_caller(monkeypatch,
                                                               tmp_path: Path) -> None:
    """Under torchrun, a caller that had made the process group for collectives of its own
    had it destroyed when a training ended or failed (its next collective: "Default process
    group has not been initialized"). A one-process group stands in for torchrun's."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
        world = from_environment("cpu")
        shutdown(world)
        abandon(world)
        assert dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_train_unwinds_on_sigterm_under_torchrun_and_leaves_a_single_process_handler_alone(
        monkeypatch, tmp_path: Path) -> None:
    """``train`` under torchrun turns a SIGTERM during training into ``SystemExit(143)``, so a
    new run that torchrun stops removes what it wrote, and its lock, as any failed new run does;
    one process keeps the SIGTERM handler its caller set."""
    task = sys.modules["stgconv.tasks.train"]  # stgconv.tasks exports a function of its name
    out = tmp_path / "run"

    def stopped_while_training(config: ExperimentConfig, world: World | None, folder: Path,
                               **_: object) -> Path:
        (folder / "config.yaml").write_text("the new run's")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
        return folder

    monkeypatch.setattr(task, "_fit", stopped_while_training)
    config = load_config(None, [f"out_dir={out}", "device=cpu"])
    before = signal.signal(signal.SIGTERM, callers_handler)
    try:
        monkeypatch.setattr(distributed, "from_environment",
                            lambda device: World(rank=0, size=2, device=torch.device("cpu")))
        with pytest.raises(SystemExit) as stopped:
            train(config)
        assert stopped.value.code == 143
        assert not out.exists()
        monkeypatch.setattr(distributed, "from_environment", lambda device: None)
        with pytest.raises(CallersStop):
            train(config)
    finally:
        signal.signal(signal.SIGTERM, before)


def failing_new_run(writes: list[str]) -> Callable[..., Path]:
    """A ``_fit`` that writes ``writes`` into the run folder, then refuses its input."""

    def fit(config: ExperimentConfig, world: World | None, folder: Path, **_: object) -> Path:
        for name in writes:
            (folder / name).write_text("the new run's")
        raise ValueError("a refused input")

    return fit


def sigterm_in_unlink(monkeypatch, nth: int = 1) -> None:
    """torchrun's SIGTERM arrives while the ``nth`` file is being removed."""
    unlink = Path.unlink
    removing = []

    def unlink_once_stopped(path: Path, *args: object, **kwargs: object) -> None:
        removing.append(path.name)
        if len(removing) == nth:
            os.kill(os.getpid(), signal.SIGTERM)
            # Time for the signal to reach Python's handler while this removal is going on:
            # with the main thread holding SIGTERM the system gives it to another thread if
            # there is one (the suite leaves some), and a busy machine may run that thread only
            # after the removal, which then meets no signal at all.
            time.sleep(0.05)
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink_once_stopped)


@pytest.mark.parametrize("writes", [["config.yaml", "observed.png"], []],
                         ids=["the run's files", "the lock and folder"])
def test_a_sigterm_during_a_failed_runs_cleanup_waits_for_it(monkeypatch, tmp_path: Path,
                                                              writes: list[str]) -> None:
    """A process of a failed new run stopped by torchrun while removing what it wrote still
    removes all of it (leftovers would make the next run ask for --overwrite); the SIGTERM comes
    after, as ``SystemExit(143)`` over the error it was cleaning up after."""
    task = sys.modules["stgconv.tasks.train"]
    monkeypatch.setattr(task, "_fit", failing_new_run(writes))
    monkeypatch.setattr(distributed, "from_environment",
                        lambda device: World(rank=0, size=2, device=torch.device("cpu")))
    sigterm_in_unlink(monkeypatch)
    out = tmp_path / "new" / "run"
    with pytest.raises(SystemExit) as stopped:
        train(load_config(None, [f"out_dir={out}", "device=cpu"]))
    assert stopped.value.code == 143
    assert isinstance(stopped.value.__context__, ValueError)
    assert not (tmp_path / "new").exists()


def test_a_sigterm_while_overwrite_removes_the_old_run_waits_for_it(monkeypatch,
                                                                      tmp_path: Path) -> None:
    """A process stopped by torchrun while --overwrite removes the old run removes all of it
    (stopped part way, it left the old run without its checkpoint); the SIGTERM comes after."""
    task = sys.modules["stgconv.tasks.train"]
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "config.yaml", "observed.png"):
        (out / name).write_text("the old run's")

    def replacing(config: ExperimentConfig, world: World | None, folder: Path, *,
                  replace_old_run: Callable[[], None], **_: object) -> Path:
        replace_old_run()
        return folder

    monkeypatch.setattr(task, "_fit", replacing)
    monkeypatch.setattr(distributed, "from_environment",
                        lambda device: World(rank=0, size=2, device=torch.device("cpu")))
    sigterm_in_unlink(monkeypatch, nth=2)
    with pytest.raises(SystemExit) as stopped:
        train(load_config(None, [f"out_dir={out}", "device=cpu"]), overwrite=True)
    assert stopped.value.code == 143
    assert list(out.iterdir()) == []


def test_cli_says_a_process_was_stopped_by_sigterm_and_what_failed_before(
        monkeypatch, tmp_path: Path, capsys) -> None:
    task = sys.modules["stgconv.tasks.train"]
    monkeypatch.setattr(task, "_fit", failing_new_run(["config.yaml"]))
    monkeypatch.setattr(distributed, "from_environment",
                        lambda device: World(rank=0, size=2, device=torch.device("cpu")))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    sigterm_in_unlink(monkeypatch)
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 143
    assert capsys.readouterr().err.splitlines() == [
        "stgconv train: error (process 0 of 2): a refused input",
        "stgconv train: stopped by SIGTERM (process 0 of 2): another training process failed, "
        "or the job was stopped"]


def stopped_while_training(error: Exception | None) -> Callable[..., Path]:
    """A ``_fit`` that writes the run's config, then raises ``error`` (a SIGTERM comes while its
    run is removed), or with ``None`` is stopped by a SIGTERM while it trains."""

    def fit(config: ExperimentConfig, world: World | None, folder: Path, **_: object) -> Path:
        (folder / "config.yaml").write_text("the new run's")
        if error is not None:
            raise error
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
        return folder

    return fit


@pytest.mark.parametrize("error", [RuntimeError("a bug"), None], ids=["a bug", "no error"])
def test_cli_shows_the_traceback_of_a_bug_a_sigterm_stopped_and_nothing_else_without_one(
        monkeypatch, tmp_path: Path, capsys, error: Exception | None) -> None:
    """An error that is not the user's keeps its traceback when the SIGTERM stops the process
    cleaning up after it; a process stopped while training has nothing to show but the stop."""
    task = sys.modules["stgconv.tasks.train"]
    monkeypatch.setattr(task, "_fit", stopped_while_training(error))
    monkeypatch.setattr(distributed, "from_environment",
                        lambda device: World(rank=0, size=2, device=torch.device("cpu")))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    if error is not None:
        sigterm_in_unlink(monkeypatch)
    assert main(["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]) == 143
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == ("stgconv train: stopped by SIGTERM (process 0 of 2): another training "
                         "process failed, or the job was stopped")
    if error is None:
        assert lines == lines[-1:]
    else:
        assert lines[0] == "Traceback (most recent call last):"
        assert lines[-2] == "RuntimeError: a bug"
    assert not (tmp_path / "run").exists()


def as_process_1_of_2_alike(monkeypatch) -> list[str]:
    """Make ``train`` run as process 1 of 2 whose peer holds what it holds: every collective
    gives this process's own values back (a sum over itself, a gather to process 0 that it
    only sends to). Returns the names of the collectives called, in order."""
    called: list[str] = []

    def collective(name: str, result: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            called.append(name)
            return result(*args, **kwargs)
        return call

    monkeypatch.setattr(distributed, "from_environment",
                        lambda device: World(rank=1, size=2, device=torch.device("cpu")))
    monkeypatch.setattr(dist, "all_reduce", collective("all_reduce", lambda tensor: None))
    monkeypatch.setattr(dist, "all_gather", collective(
        "all_gather", lambda every, tensor: [rows.copy_(tensor) for rows in every]))
    monkeypatch.setattr(dist, "gather_object", collective("gather_object",
                                                          lambda *_, **__: None))
    monkeypatch.setattr(dist, "barrier", collective("barrier", lambda: None))
    return called


@pytest.mark.parametrize("rank", [1, 0], ids=["process 1", "process 0"])
@pytest.mark.parametrize("net", [ONE_NET, ("--set", GRIDS)], ids=["one net", "multigrid"])
def test_process_0_alone_writes_the_run_folder(monkeypatch, tmp_path: Path,
                                               net: tuple[str, ...], rank: int) -> None:
    """Process 0 writes the run folder as one process would (its config, the observed data,
    the samples, a multi-grid run's pyramids, the checkpoint of every process's share); the
    others, which train alike, write nothing into it: not a checkpoint (theirs lack the other
    processes' chains), samples or pictures of their own chains, nor TensorBoard events (a
    second curve)."""
    called = as_process_1_of_2_alike(monkeypatch)
    if rank == 0:  # its peer's share gathered to it is its own again
        monkeypatch.setattr(distributed, "from_environment",
                            lambda device: World(rank=0, size=2, device=torch.device("cpu")))
        monkeypatch.setattr(dist, "gather_object",
                            lambda value, gathered, dst: gathered.__setitem__(slice(None),
                                                                              [value, value]))
    images = image_folder(tmp_path / "images")
    out = tmp_path / "run"
    config = load_config(None, [*tiny_run(images, 2, out, net=net)[9::2], "device=cpu",
                                f"data.path={images}", f"out_dir={out}",
                                "train.sample_every=1", "train.checkpoint_every=1"])
    assert train(config, progress=False) == out
    assert called.count("barrier") == 2  # a checkpoint at each iteration (process 0's)
    if rank == 1:
        assert not out.exists()
        return
    pictures = {"config.yaml", "observed.png", "samples_000001.png", "samples_000002.png",
                "samples.png"}
    if net[1] == GRIDS:
        pictures |= {"observed_pyramid.png", "samples_pyramid.png"}
    assert pictures <= {path.name for path in out.iterdir()}
    # Rank 0 trained on its shard of the examples, half of them; the checkpoint holds both.
    state = load_checkpoint(out)
    held = state["chains"]["chains"] if net == ONE_NET else state["base"]
    assert len(held) == N_EXAMPLES


def one_rank_trainer(rank: int) -> Trainer:
    """Rank ``rank`` of 2 training on its shard of :func:`examples` (no process group: the
    test replaces the collectives)."""
    world = World(rank=rank, size=2, device=torch.device("cpu"))
    shard = examples()[world.shard(N_EXAMPLES)]
    return Trainer(tiny_energy(), Langevin(n_steps=1, step_size=0.05),
                   PersistentChains(len(shard), NoiseInit("gaussian", 0.5)), shard,
                   train=TrainConfig(batch_size=BATCH), generator=torch.Generator().manual_seed(0),
                   world=world)


def test_process_1_draws_no_progress_bar(monkeypatch, capsys) -> None:
    """Every process drew its own bar, each a line of its own in the run's log."""
    as_process_1_of_2_alike(monkeypatch)
    one_rank_trainer(1).fit(1, progress=True)
    assert capsys.readouterr().err == ""


def test_a_peers_model_past_the_bound_stops_this_process_too(monkeypatch) -> None:
    """Every process decides on the sum of the processes' largest energies, so one whose own
    updated model stayed in bound stops with the peer whose model did not: averaged, the peer's
    1.5e20 beside this one's 0 was 0.75e20, inside the bound of 1e20, and only the peer
    stopped."""
    monkeypatch.setattr(dist, "all_reduce",
                        lambda flat: flat.add_(torch.tensor([1.5e20, 1.0], dtype=flat.dtype)))
    trainer = one_rank_trainer(0)
    trainer.last_data = examples()[:BATCH]
    monkeypatch.setattr(trainer, "probes",
                        lambda: [(lambda x: torch.zeros(len(x)), trainer.last_data)])
    with pytest.raises(DivergenceError, match="the updated model's energy .* is 1.5e\\+20"):
        trainer.check_saved_model()


def test_a_steps_statistics_are_the_mean_over_every_process(monkeypatch) -> None:
    """Each process's loss and energies enter the mean weighted by its batch size."""
    as_process_1_of_2_alike(monkeypatch)
    trainer = one_rank_trainer(1)
    monkeypatch.setattr(World, "average",
                        lambda self, values, *, weight: {key: float(weight) for key in values})
    assert trainer.step() == {"loss": BATCH, "e_pos": BATCH, "e_neg": BATCH}


def test_process_0_saves_every_processes_chains_and_base_grid(monkeypatch) -> None:
    """The peer here holds what process 0 holds: the checkpoint holds both, back in example
    order (each row twice), not process 0's alone."""
    monkeypatch.setattr(dist, "all_reduce", lambda flat: None)
    monkeypatch.setattr(dist, "gather_object",
                        lambda value, gathered, dst: gathered.__setitem__(slice(None),
                                                                          [value, value]))
    trainer = one_rank_trainer(0)
    trainer.step()
    own = trainer.chains.state_dict()["chains"]
    assert torch.equal(trainer.state_dict()["chains"]["chains"], own.repeat_interleave(2, 0))
    world = World(rank=0, size=2, device=torch.device("cpu"))
    grids = MultiGridTrainer([tiny_energy(), tiny_energy()], [Langevin(n_steps=1)] * 2,
                             examples()[world.shard(N_EXAMPLES)], [(1, 1), (4, 4), (8, 8)],
                             world=world)
    assert torch.equal(grids.state_dict()["base"], grids.base.repeat_interleave(2, 0))


def free_port() -> int:
    """A free port for the process group's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_torchrun_process(rank: int, port: int) -> None:
    """Make this process rank ``rank`` of 2 as torchrun would (its environment)."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def train_over_an_old_run(rank: int, port: int, config: ExperimentConfig, report: str) -> None:
    """Rank ``rank`` of 2 trains ``config`` over its folder's run (``--overwrite``); rank 1
    is refused at its start, after rank 0 has built its trainer."""
    as_torchrun_process(rank, port)
    if rank == 1:
        def refused(*_: object) -> None:
            time.sleep(2)
            raise ValueError("data not found on this machine")

        World.shard = refused  # type: ignore[method-assign]  # this process only
    try:
        train(config, overwrite=True, progress=False)
    except (ValueError, PeerFailedError) as err:
        Path(f"{report}{rank}").write_text(type(err).__name__)


def test_overwrite_removes_the_old_run_only_once_every_process_has_started(tmp_path: Path
                                                                            ) -> None:
    images = image_folder(tmp_path / "images")
    out = tmp_path / "run"
    assert main(tiny_run(images, 1, out)) == 0
    old = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    config = load_config(None, [f"data.path={images}", f"out_dir={out}", "device=cpu",
                                *tiny_run(images, 1, out)[9::2]])
    mp.spawn(train_over_an_old_run, args=(free_port(), config, str(tmp_path / "report")),
             nprocs=2)
    assert [(tmp_path / f"report{r}").read_text() for r in (0, 1)] == ["PeerFailedError",
                                                                       "ValueError"]
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == old


def resume_from_own_files(rank: int, port: int, configs: list[ExperimentConfig], report: str
                          ) -> None:
    """Rank ``rank`` of 2 resumes ``configs[rank]`` (its machine's data and run folder)."""
    as_torchrun_process(rank, port)
    try:
        train(configs[rank], resume=True, progress=False)
    except ValueError as err:
        Path(f"{report}{rank}").write_text(str(err))
        # Both refused at the same point: they leave the process group together.
        shutdown(World(rank=rank, size=2, device=torch.device("cpu")))


def test_processes_that_read_different_files_stop_before_training_saying_which(tmp_path: Path
                                                                               ) -> None:
    """Every process reads the data and the checkpoint it resumes from on its own machine; a
    process that read other files (here a data folder with one more image and a copy of the
    run an iteration older, and a config of another learning rate) stops every process before
    training, naming each one's values.
    Before, one more image trained on shards of other examples without a word, and an older
    checkpoint ended the run in a Gloo abort ("terminate called after throwing an instance of
    'gloo::EnforceNotMet'") once the processes' collectives no longer matched."""
    images = image_folder(tmp_path / "images")
    out, copy, more = tmp_path / "run", tmp_path / "copy", tmp_path / "more"
    assert main(tiny_run(images, 2, out, "--set", "train.checkpoint_every=1")) == 0
    # Process 1's machine holds the run as it was an iteration earlier, and one more image.
    shutil.copytree(out, copy)
    shutil.copy(copy / "checkpoint_previous.pt", copy / "checkpoint.pt")
    shutil.copytree(images, more)
    shutil.copy(images / "0.png", more / "extra.png")
    # And another config file: the learning rate (each machine's paths are its own).
    configs = [load_config(None, [*tiny_run(images, 3, out)[9::2], "device=cpu",
                                  f"data.path={data}", f"out_dir={folder}", f"train.lr={lr}"])
               for data, folder, lr in ((images, out, 0.01), (more, copy, 0.02))]
    mp.spawn(resume_from_own_files, args=(free_port(), configs, str(tmp_path / "report")),
             nprocs=2)
    for rank in (0, 1):
        assert (tmp_path / f"report{rank}").read_text().startswith(
            "the training processes read different files (training examples: 6 in process 0, "
            "7 in process 1; iteration resumed from: 2 in process 0, 1 in process 1; settings "
            "of process 1 differ from process 0's; example values of process 1 differ from "
            "process 0's): ")


# --------------------------------------------------------------------------- torchrun end to end


def image_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N_EXAMPLES):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def stgconv(args: list[str], *, processes: int, tmp_path: Path) -> None:
    """``stgconv ARGS`` in ``processes`` processes (torchrun) or one plain process.

    torchrun's log folder goes under ``tmp_path``: by default torchrun makes a
    ``torchelastic_*`` folder in the system's temporary folder for each launch and never
    removes it, so every run of the suite left more of them in /tmp."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", str(processes), "--log-dir", str(tmp_path / "torchrun")]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launcher, "-m", "stgconv", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # One report for the whole run, from rank 0.
    assert result.stdout.count("stgconv train: wrote") == (1 if args[0] == "train" else 0)


def tiny_run(images: Path, iterations: int, out: Path, *extra: str,
             net: tuple[str, ...] = ONE_NET) -> list[str]:
    return ["train", "--data", str(images), "--out", str(out), "--device", "cpu", "--quiet",
            "--set", "data.kind=objects", "--set", "data.size=8", "--set", "data.channels=3",
            *net, "--set", "train.batch_size=2", "--set", "sampler.n_steps=2",
            "--set", f"train.n_iterations={iterations}", *extra]


def test_torchrun_trains_one_checkpoint_that_resumes_and_loads_in_one_process(tmp_path: Path
                                                                              ) -> None:
    images = image_folder(tmp_path / "images")
    stgconv(tiny_run(images, 2, tmp_path / "resumed"), processes=2, tmp_path=tmp_path)
    state = load_checkpoint(tmp_path / "resumed")
    assert state["chains"]["chains"].shape == (N_EXAMPLES, 2, 3, 8, 8)  # every rank's chains
    # Each process its own random stream (noise, chain starts, batches); one seed for all
    # would give both halves of the batch the same chains.
    assert len(state["generators"]) == 2
    assert not torch.equal(state["generators"][0], state["generators"][1])
    energy, _, _ = load_model(tmp_path / "resumed", device="cpu")  # one process loads it
    assert energy(torch.zeros(1, 3, 8, 8)).shape == (1,)

    shutil.copytree(tmp_path / "resumed", tmp_path / "one_process")
    stgconv(tiny_run(images, 3, tmp_path / "resumed", "--resume"), processes=2,
            tmp_path=tmp_path)
    stgconv(tiny_run(images, 3, tmp_path / "straight"), processes=2, tmp_path=tmp_path)
    straight, resumed = (load_checkpoint(tmp_path / n) for n in ("straight", "resumed"))
    assert resumed["iteration"] == 3
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    assert torch.equal(straight["chains"]["chains"], resumed["chains"]["chains"])

    # Another number of processes continues the run from the same checkpoint.
    stgconv(tiny_run(images, 3, tmp_path / "one_process", "--resume"), processes=1,
            tmp_path=tmp_path)
    continued = load_checkpoint(tmp_path / "one_process")
    assert continued["iteration"] == 3 and "generators" not in continued
    assert continued["chains"]["chains"].shape == (N_EXAMPLES, 2, 3, 8, 8)


def test_torchrun_trains_a_multigrid_model(tmp_path: Path, monkeypatch) -> None:
    images = image_folder(tmp_path / "images")
    scratch = tmp_path / "system_tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    stgconv(tiny_run(images, 2, tmp_path / "run", net=("--set", GRIDS)), processes=2,
            tmp_path=tmp_path)
    assert list(scratch.glob("torchelastic_*")) == []  # torchrun's logs went to tmp_path
    energies, _, state = load_multigrid(tmp_path / "run", device="cpu")
    assert len(energies) == 2
    assert state["base"].shape == (N_EXAMPLES, 3, 1, 1)  # every example's base colour
    out = synthesize(tmp_path / "run", tmp_path / "synthesis", n_samples=2, device="cpu")
    assert (out / "synthesized.png").is_file()


def test_as_many_examples_as_processes_gives_each_one_example() -> None:
    # Exactly one example per process is enough: each rank gets its own.
    worlds = [World(rank=r, size=3, device=torch.device("cpu")) for r in range(3)]
    assert [w.shard(3).tolist() for w in worlds] == [[0], [1], [2]]


def test_a_reseeded_resume_gives_every_rank_its_own_stream() -> None:
    # Resumed with more processes than wrote it, the reseeded ranks draw different streams.
    checkpoint = {"generator": torch.Generator().manual_seed(1).get_state(), "iteration": 4,
                  "config": {"seed": 7}}
    draws = []
    for rank in range(2):
        g = torch.Generator()
        take_generator(g, checkpoint, World(rank=rank, size=2, device=torch.device("cpu")))
        draws.append(torch.rand(4, generator=g))
    assert not torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("changed", [{"iteration": 5}, {"config": {"seed": 8}}],
                         ids=["iteration", "seed"])
def test_a_reseeded_stream_follows_the_iteration_and_the_configs_seed(changed: dict) -> None:
    """Resumed at another iteration, or a run of another seed, the fresh stream is another."""
    checkpoint = {"generator": torch.Generator().manual_seed(1).get_state(), "iteration": 4,
                  "config": {"seed": 7}}
    draws = []
    for state in (checkpoint, {**checkpoint, **changed}):
        g = torch.Generator()
        take_generator(g, state, World(rank=0, size=2, device=torch.device("cpu")))
        draws.append(torch.rand(4, generator=g))
    assert not torch.equal(draws[0], draws[1])


def test_logged_values_pair_each_name_with_its_own_sum_across_ranks(monkeypatch) -> None:
    """Each rank's dict may list its names in another order: the all-reduce adds them in
    sorted order, so the other rank's ``a`` (10) meets this rank's ``a`` (2)."""
    monkeypatch.setattr(dist, "all_reduce", lambda flat: flat.add_(torch.tensor(
        [10.0, 20.0, 1.0], dtype=flat.dtype)))
    world = World(rank=0, size=2, device=torch.device("cpu"))
    assert world.average({"b": 1.0, "a": 2.0}) == {"a": 6.0, "b": 10.5}


def test_logged_values_are_averaged_in_double_precision(monkeypatch) -> None:
    """In float32, 1e8 + 1 came back as 1e8 (its spacing there is 8)."""
    monkeypatch.setattr(dist, "all_reduce", lambda flat: None)  # one rank's own values
    world = World(rank=0, size=2, device=torch.device("cpu"))
    assert world.average({"loss": 1e8 + 1.0}, weight=3.0) == {"loss": 1e8 + 1.0}


def test_gradients_of_unused_parameters_are_left_out_of_the_average(monkeypatch) -> None:
    """A parameter without a gradient (unused this step) keeps none; the others are averaged
    (the other rank: zeros of weight 1), and a model without any gradient sends nothing."""
    sent = []

    def all_reduce(flat: torch.Tensor) -> None:
        sent.append(len(flat))
        flat[-1:] += 1

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    world = World(rank=0, size=2, device=torch.device("cpu"))
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    used.grad = torch.tensor([3.0, 6.0, 9.0])
    world.average_gradients([used, unused], weight=2.0)
    assert used.grad.tolist() == [2.0, 4.0, 6.0] and unused.grad is None
    world.average_gradients([unused])
    assert sent == [4]


def test_gathered_values_arrive_detached_in_their_own_containers(monkeypatch) -> None:
    """Rank 0 receives every rank's value, tensors detached (a graph cannot be pickled),
    inside the same dicts, tuples and lists; every rank sends to rank 0."""
    received = {}

    def gather_object(value, gathered, dst):
        received["dst"] = dst
        if gathered is not None:  # rank 0's list to fill
            gathered[:] = [value, value]

    monkeypatch.setattr(dist, "gather_object", gather_object)
    x = torch.ones(2, requires_grad=True) * 2
    gathered = World(rank=0, size=2, device=torch.device("cpu")).gather(
        {"chains": (x, [x]), "step": 3})
    assert received["dst"] == 0 and len(gathered) == 2
    chains = gathered[1]["chains"]
    assert type(chains) is tuple and type(chains[1]) is list and gathered[1]["step"] == 3
    assert not chains[0].requires_grad and not chains[1][0].requires_grad
    assert torch.equal(chains[0], x.detach())
    received.clear()  # rank 1 sends to rank 0 too, and receives nothing
    assert World(rank=1, size=2, device=torch.device("cpu")).gather(x) is None
    assert received["dst"] == 0


def test_rank_0_writes_every_ranks_generator_and_its_own_as_the_generator(monkeypatch) -> None:
    states = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    monkeypatch.setattr(dist, "gather_object",
                        lambda value, gathered, dst: gathered.__setitem__(slice(None), states))
    written = gather_generators(torch.Generator().manual_seed(1),
                                World(rank=0, size=2, device=torch.device("cpu")))
    assert torch.equal(written["generator"], states[0])
    assert len(written["generators"]) == 2 and torch.equal(written["generators"][1], states[1])


def test_a_collective_failing_without_a_message_names_its_error_type(monkeypatch) -> None:
    def failing(*_: object) -> None:
        raise RuntimeError("")

    monkeypatch.setattr(dist, "all_reduce", failing)
    with pytest.raises(PeerFailedError, match=r"printed by that process\): RuntimeError$"):
        World(rank=0, size=2, device=torch.device("cpu")).average({"loss": 1.0})


def test_without_torchrun_the_process_is_rank_0_of_one(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (distributed.launched_rank(), distributed.launched_world_size()) == (0, 1)
    assert from_environment("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: no group either
    assert from_environment("cpu") is None and not dist.is_initialized()


@pytest.mark.parametrize("environment, said", [
    ({"WORLD_SIZE": ""}, "environment variable WORLD_SIZE is '', not a whole number"),
    ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE is 'two', not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "abc"}, "environment variable RANK is 'abc', not a whole"),
    ({"WORLD_SIZE": "2", "RANK": "-1"}, "environment variable RANK is '-1', not a whole"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is 2 but RANK is unset: torchrun sets both"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "WORLD_SIZE is 2 but RANK is '2': torchrun sets both"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x"}, "variable LOCAL_RANK is 'x', not"),
], ids=["empty size", "word size", "word rank", "negative rank", "no rank", "rank past size",
        "word local rank"])
def test_train_refuses_launch_variables_torchrun_never_sets_naming_the_variable(
        monkeypatch, capsys, tmp_path: Path, environment: dict[str, str], said: str) -> None:
    """Variables left in a user's environment were a traceback from ``int`` (or a KeyError for
    a WORLD_SIZE without RANK); train now stops with one line naming the variable, before
    anything is written."""
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    assert main(["train", "--set", "data.path=builtin:brick", "--device", "cpu", "--out",
                 str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stgconv train: error") and said in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("environment", [{"RANK": "1"}, {"RANK": "abc"},
                                         {"RANK": "1", "WORLD_SIZE": "1"}],
                         ids=["rank 1", "word rank", "rank 1 of one"])
def test_a_single_process_with_a_stray_rank_is_process_0_and_reports(
        monkeypatch, capsys, tmp_path: Path, environment: dict[str, str]) -> None:
    """One process (no WORLD_SIZE above 1) is process 0 whatever RANK says: a RANK of 1 left
    in the environment made every command keep quiet about what it wrote."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched_rank() == 0
    monkeypatch.setattr("stgconv.tasks.synthesize", lambda *_, **__: tmp_path / "out")
    assert main(["synthesize", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith(f"stgconv synthesize: wrote {tmp_path / 'out'} (")


def test_leaving_without_a_process_group_does_nothing(monkeypatch) -> None:
    """A run that failed before the group was made, or with one process, leaves quietly."""
    monkeypatch.setattr(World, "barrier", lambda self: pytest.fail("waited for the others"))
    assert not dist.is_initialized()
    shutdown(World(rank=0, size=2, device=torch.device("cpu")))
    shutdown(None)
    abandon(None)


def test_one_process_keeps_a_whole_buffer_without_a_capacity() -> None:
    state = {"samples": torch.arange(5.0).view(5, 1), "next": torch.tensor(3)}
    assert shard_chain_state(state, None) is state


def test_a_rank_whose_own_buffer_outgrew_its_capacity_takes_every_size_th_sample() -> None:
    """A smaller capacity on resume: the rank's own buffer would not fit, so it takes every
    size-th sample of all (up to its capacity) and starts writing at slot 0."""
    own = [{"samples": torch.full((3, 1), float(r)), "next": torch.tensor(2)} for r in range(2)]
    back = shard_chain_state(merge_chain_states(own),
                             World(rank=1, size=2, device=torch.device("cpu")), capacity=2)
    assert back["samples"].flatten().tolist() == [0.0, 1.0] and int(back["next"]) == 0


def test_a_checkpoint_without_a_seed_reseeds_as_seed_0() -> None:
    state = {"generator": torch.Generator().manual_seed(1).get_state(), "iteration": 4}
    draws = []
    for checkpoint in (state, {**state, "config": {"seed": 0}}):
        g = torch.Generator()
        take_generator(g, checkpoint, World(rank=0, size=2, device=torch.device("cpu")))
        draws.append(torch.rand(4, generator=g))
    assert torch.equal(draws[0], draws[1])
