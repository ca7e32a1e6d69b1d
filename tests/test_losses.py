"""The training loss: ``mean E(x_pos) - mean E(x_neg)`` (plus the optional ``energy_l2`` term),
whose parameter gradient is the maximum-likelihood estimate (data minus samples); the samples
are constants; a non-finite energy and a shape mismatch are errors, never a number."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny import tiny_data, tiny_energy
from torch import Tensor, nn

from stgconv.losses import contrastive_divergence


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Linear(nn.Module):
    """``E(x) = <w, x>``: its parameter gradient is the input itself."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5])[:dim])

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w


def test_value_and_gradient_on_a_known_energy() -> None:
    """Hand-computed: E(pos) = (1, 3), E(neg) = (-1, 0, 4); the gradient in w is
    mean(x_pos) - mean(x_neg), the maximum-likelihood direction. The data are not constants
    (only the samples are): their gradient is w / 2 each; the statistics carry no graph."""
    energy = Linear(3)
    x_pos = torch.tensor([[1.0, 0.0, 0.0], [1.0, -1.0, 0.0]], requires_grad=True)
    x_neg = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -2.0, 0.0]])
    loss, stats = contrastive_divergence(energy, x_pos, x_neg)
    assert loss.item() == pytest.approx(2.0 - 1.0)
    assert stats["e_pos"].item() == pytest.approx(2.0)
    assert stats["e_neg"].item() == pytest.approx(1.0)
    assert not stats["e_pos"].requires_grad and not stats["e_neg"].requires_grad
    loss.backward()
    torch.testing.assert_close(energy.w.grad, x_pos.detach().mean(0) - x_neg.mean(0))
    torch.testing.assert_close(x_pos.grad, energy.w.detach().expand(2, 3) / 2)

    # energy_l2 adds l2 * (mean E(pos)^2 + mean E(neg)^2) = 0.1 * (5 + 17/3).
    l2, _ = contrastive_divergence(energy, x_pos, x_neg, energy_l2=0.1)
    assert l2.item() == pytest.approx(1.0 + 0.1 * (5.0 + 17.0 / 3.0))


def test_contrastive_divergence_value_and_gradient() -> None:
    energy = tiny_energy()
    x_pos, x_neg = tiny_data(3), tiny_data(5).flip(-1).requires_grad_(True)
    loss, stats = contrastive_divergence(energy, x_pos, x_neg)
    expected = energy(x_pos).mean() - energy(x_neg).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["e_pos"], energy(x_pos).mean())
    torch.testing.assert_close(stats["e_neg"], energy(x_neg).mean())
    loss.backward()
    assert x_neg.grad is None  # samples are constants of the loss
    assert all(p.grad is not None for p in energy.parameters())

    l2, _ = contrastive_divergence(energy, x_pos, x_neg, energy_l2=0.1)
    reg = 0.1 * (energy(x_pos).pow(2).mean() + energy(x_neg).pow(2).mean())
    torch.testing.assert_close(l2, expected + reg)


def test_contrastive_divergence_errors() -> None:
    energy = tiny_energy()
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 16\).*\(2, 1, 12, 12\)"):
        contrastive_divergence(energy, tiny_data(2), tiny_data(2, size=12))

    def nan_energy(x: Tensor) -> Tensor:
        e = energy(x)
        return torch.where(torch.arange(len(e)) == 1, torch.full_like(e, math.nan), e)

    with pytest.raises(FloatingPointError, match=r"data: 1 of 3"):
        contrastive_divergence(nan_energy, tiny_data(3), tiny_data(3))


def test_no_data_or_no_samples_is_refused_not_a_nan_loss() -> None:
    """The mean energy of no example is NaN: the loss (and JEM's cross-entropy) came back NaN
    without a word."""
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    x = torch.ones(2, 3)
    for x_pos, x_neg in ((x[:0], x), (x, x[:0])):
        with pytest.raises(ValueError, match=r"must each hold at least one example"):
            contrastive_divergence(Linear(3), x_pos, x_neg)
    assert contrastive_divergence(Linear(3), x[:1], x[:1])[0].item() == 0.0  # one of each will do
    with pytest.raises(ValueError, match=r"examples \(0, 3\) hold no example"):
        hybrid_loss(ClassifierEnergy(nn.Linear(3, 2)), x[:0], torch.zeros(0, dtype=torch.long),
                    None, px_weight=0.0)


@pytest.mark.parametrize("weights", [{"px_weight": -1.0}, {"pxy_weight": -1.0},
                                     {"px_weight": math.nan}])
def test_hybrid_loss_refuses_a_negative_or_nan_weight(weights: dict[str, float]) -> None:
    """A negative weight rewards the data's energy going up: it passed (with the samples it
    asks for), or failed as a term that "needs 1 to 2 samples, got None"."""
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    x = torch.ones(2, 3)
    name = next(iter(weights))
    with pytest.raises(ValueError, match=rf"{name} must be finite and >= 0, got"):
        hybrid_loss(ClassifierEnergy(nn.Linear(3, 2)), x, torch.zeros(2, dtype=torch.long), x,
                    x_neg_y=x, **weights)


@pytest.mark.parametrize("energy_l2", [-1.0, math.nan, math.inf, "0.1"])
def test_an_energy_l2_that_is_negative_or_no_finite_number_is_refused(energy_l2) -> None:
    """A negative or NaN weight dropped the penalty without a word, an infinite one made an
    infinite loss, and a string failed on a comparison in Python's words."""
    with pytest.raises(ValueError, match=r"energy_l2 must be (finite and >= 0|a number), got"):
        contrastive_divergence(Linear(3), torch.zeros(2, 3), torch.ones(2, 3),
                               energy_l2=energy_l2)


@pytest.mark.parametrize(("reshape", "got"), [(lambda e: e.sum(), r"\(\)"),
                                             (lambda e: e[:, None].expand(-1, 2), r"\(2, 2\)")],
                         ids=["batch-total", "per-class"])
def test_energies_not_one_per_example_are_refused_not_averaged(reshape, got: str) -> None:
    """An energy summed over the batch (or one per class) made a loss without a word: the
    data's total minus the samples', each weighted by its batch's size."""
    energy = Linear(3)
    with pytest.raises(ValueError, match=rf"energy must return shape \(B,\) = \(2,\), got {got}"):
        contrastive_divergence(lambda x: reshape(energy(x)), torch.ones(2, 3), torch.ones(2, 3))


@pytest.mark.parametrize("wrong", [2, 3], ids=["data", "samples"])
def test_the_data_and_the_samples_energies_are_each_checked(wrong: int) -> None:
    """Data of 2 examples and 3 samples: the energy sums the batch of ``wrong`` alone."""
    energy = Linear(3)

    def uneven(x: Tensor) -> Tensor:
        return energy(x).sum() if len(x) == wrong else energy(x)

    with pytest.raises(ValueError, match=rf"shape \(B,\) = \({wrong},\), got \(\)"):
        contrastive_divergence(uneven, torch.ones(2, 3), torch.ones(3, 3))


def test_an_infinite_sample_energy_raises() -> None:
    """An infinite energy on the samples alone (a chain that ran off) is reported too."""
    energy = Linear(3)
    x_pos = torch.zeros(2, 3)
    x_neg = torch.tensor([[0.0, 0.0, 0.0], [math.inf, 0.0, 0.0]])
    with pytest.raises(FloatingPointError, match=r"data: 0 of 2, samples: 1 of 2"):
        contrastive_divergence(energy, x_pos, x_neg)


def test_an_infinite_data_energy_raises_with_finite_samples() -> None:
    energy = Linear(3)
    x_pos = torch.tensor([[math.inf, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(FloatingPointError, match=r"data: 1 of 2, samples: 0 of 2"):
        contrastive_divergence(energy, x_pos, torch.zeros(2, 3))


def test_without_the_penalty_large_finite_energies_give_a_finite_loss() -> None:
    """energy_l2 = 0 takes no square of the energies: an energy of 1e20 squared overflows
    float32, and 0 times that infinity made a NaN loss."""
    x_pos = torch.tensor([[1e20, 0.0, 0.0]])
    loss, _ = contrastive_divergence(Linear(3), x_pos, torch.zeros(1, 3))
    assert loss.item() == pytest.approx(1e20)


def test_a_loss_that_overflows_from_finite_energies_raises() -> None:
    """The penalty squares the energies: finite ones of 1e20 overflow float32, and the loss came
    back infinite, a number for the caller to step on."""
    x_pos = torch.tensor([[1e20, 0.0, 0.0]])
    with pytest.raises(FloatingPointError, match=r"training loss is inf from finite energies "
                                                 r"\(largest \|E\| 1e\+20\): it overflowed "
                                                 r"torch.float32 in the energy_l2 penalty"):
        contrastive_divergence(Linear(3), x_pos, torch.zeros(1, 3), energy_l2=0.1)


@pytest.mark.parametrize("which", ["x_pos", "x_neg"])
def test_data_or_samples_on_the_meta_device_are_named(which: str) -> None:
    """Tensors of shapes without values failed inside torch ("Tensor.item() cannot be called
    on meta tensors")."""
    tensors = {"x_pos": torch.zeros(2, 3), "x_neg": torch.ones(2, 3)}
    tensors[which] = tensors[which].to("meta")
    with pytest.raises(ValueError, match=f"^{which} is on the meta device"):
        contrastive_divergence(lambda x: x.sum(1), **tensors)


def test_hybrid_loss_names_an_energy_without_logits_and_examples_without_values() -> None:
    """Each failed inside: "'function' object has no attribute 'logits'", "'numpy.ndarray'
    object has no attribute 'is_floating_point'", "Tensor on device cpu is not on the expected
    device meta!"."""
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    energy = ClassifierEnergy(nn.Linear(3, 2))
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^energy must be a classifier read as an energy \(a "
                                         r"ClassifierEnergy, with logits\), got function$"):
        hybrid_loss(lambda v: v.sum(1), x, y, x)
    for arguments, name in (((x.numpy(), y), "x_pos must be a torch.Tensor"),
                            ((x, y.numpy()), "y_pos must be a torch.Tensor"),
                            ((x.to("meta"), y), "x_pos is on the meta device"),
                            ((x, y.to("meta")), "y_pos is on the meta device")):
        with pytest.raises(ValueError, match=f"^{name}"):
            hybrid_loss(energy, *arguments, x)


def test_hybrid_loss_statistics_are_detached_and_a_weight_of_0_reads_no_samples() -> None:
    """The statistics are numbers to log, without a graph; a term of weight 0 is skipped even
    where its samples are given: no energy of them, no statistics."""
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    energy = ClassifierEnergy(nn.Linear(2, 2))
    x, y = torch.randn(3, 2, generator=gen(0)), torch.tensor([0, 1, 1])
    _, stats = hybrid_loss(energy, x, y, x[:2], x_neg_y=x[:2], px_weight=1.0, pxy_weight=0.5)
    assert set(stats) == {"ce", "accuracy", "e_pos", "e_neg", "e_pos_y", "e_neg_y"}
    assert not any(value.requires_grad for value in stats.values())
    _, stats = hybrid_loss(energy, x, y, x[:2], x_neg_y=x[:2], px_weight=0.0)
    assert set(stats) == {"ce", "accuracy"}


def test_hybrid_loss_reports_the_accuracy_of_the_top_logit() -> None:
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    identity = nn.Linear(2, 2).double()
    with torch.no_grad():
        identity.weight.copy_(torch.eye(2, dtype=torch.float64))
        identity.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    _, stats = hybrid_loss(ClassifierEnergy(identity), x, torch.tensor([0, 1, 1]), None,
                           px_weight=0.0)
    assert stats["accuracy"].item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("labels, problem", [
    (torch.tensor([0.0, 1.0, 1.5]), r"labels must be integers, got torch.float32"),
    (torch.tensor([0, 1, 2]), r"labels must be in 0 \.\. 1, "
                              r"got 0 \.\. 2"),
    (torch.tensor([0, -1, 1]), r"labels must be in 0 \.\. 1, got -1 \.\. 1"),
], ids=["float", "past K", "negative"])
def test_hybrid_loss_names_labels_that_are_not_classes(labels: Tensor, problem: str) -> None:
    """Float labels were truncated without a word (1.5 -> 1); labels outside 0 .. K - 1 gave
    cross_entropy's IndexError ("Target 2 is out of bounds"), which names no argument."""
    from stgconv.energy.classifier import ClassifierEnergy
    from stgconv.losses import hybrid_loss

    with pytest.raises(ValueError, match=problem):
        hybrid_loss(ClassifierEnergy(nn.Linear(2, 2)), torch.zeros(3, 2), labels, None,
                    px_weight=0.0)
