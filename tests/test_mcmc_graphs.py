"""What decides whether a Langevin chain's captured CUDA graph may draw from a generator and may
be kept for the next run; both are read on the host, so they are checked here without a GPU
(tests/test_gpu.py replays the graphs themselves)."""

from __future__ import annotations

import pytest
import torch

from stgconv.mcmc.graphs import graph_generator_ok, weights_key


def test_the_default_generator_is_always_captured_and_an_explicit_one_where_torch_can(
        monkeypatch) -> None:
    assert graph_generator_ok(None)
    assert graph_generator_ok(torch.Generator())  # this torch registers generators
    # A torch whose graphs cannot register a generator (before 2.6).
    monkeypatch.setattr(torch.cuda, "CUDAGraph", type("CUDAGraph", (), {}))
    assert graph_generator_ok(None)
    assert not graph_generator_ok(torch.Generator())


def test_an_energy_that_is_no_module_keeps_no_graph() -> None:
    assert weights_key(lambda x: x.flatten(1).sum(1)) is None


def test_the_weights_key_lists_where_every_parameter_and_buffer_lives() -> None:
    net = torch.nn.BatchNorm1d(3)
    expected = tuple(t.data_ptr() for t in (net.weight, net.bias, net.running_mean,
                                            net.running_var, net.num_batches_tracked))
    assert weights_key(net) == expected


@pytest.mark.parametrize("move", ["load_state_dict", "optimizer_step"])
def test_weights_updated_in_place_keep_their_key(move: str) -> None:
    """A graph reads the weights where they live: an update in place is seen by the replay."""
    net = torch.nn.Linear(3, 1)
    before = weights_key(net)
    if move == "load_state_dict":
        net.load_state_dict(torch.nn.Linear(3, 1).state_dict())
    else:
        net(torch.ones(2, 3)).sum().backward()
        torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert weights_key(net) == before


@pytest.mark.parametrize("which", ["parameter", "buffer"])
def test_weights_moved_elsewhere_change_the_key(which: str) -> None:
    """``.to()`` keeps the Parameter objects but moves their data: a graph captured on the old
    addresses would read freed memory, so the key must change with them, buffers included."""
    net = torch.nn.Linear(3, 1) if which == "parameter" else torch.nn.BatchNorm1d(3)
    before = weights_key(net)
    if which == "parameter":
        net.double()
    else:
        net.running_mean = torch.zeros(3)
    assert weights_key(net) != before
