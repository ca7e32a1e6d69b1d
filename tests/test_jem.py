"""JEM: the hybrid loss against a hand-built gradient, the trainer (the p(x, y) term samples the
class energies, resume bit for bit, divergence stopped with advice and the last good checkpoint
kept), the config's and data's checks, and ``stgconv train`` end to end on tiny labelled images
(the checkpoint rebuilds the classifier without pickles)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import JEM_CONFIG, JEM_TINY, assert_same_step_inside_no_grad, gen, labelled_bars
from test_train import assert_same
from torch import Tensor, nn

from stgconv.build import chain_init
from stgconv.checkpoint import load_checkpoint, load_model
from stgconv.cli import main
from stgconv.config import JEMConfig, TrainConfig, load_config
from stgconv.distributed import World
from stgconv.energy.classifier import ClassifierEnergy, classifier_energy, digit_classifier
from stgconv.evaluation.ood import load_classifier, score_images
from stgconv.jem import (JEM_ADVICE, HybridTrainer, class_examples, fit_feature_reference,
                         fit_ood_weights, fit_temperature, held_examples)
from stgconv.losses import hybrid_loss
from stgconv.mcmc import DataGaussian, Langevin, NoiseInit, ReplayBuffer
from stgconv.mcmc.starts import NoiseStart
from stgconv.train import DESCRIPTOR_ADVICE, DivergenceError

F64 = torch.float64

# --------------------------------------------------------------------------- the hybrid loss


def linear_energy(seed: int = 0) -> ClassifierEnergy:
    """Logits ``W x + b`` of 4 inputs into 3 classes, float64."""
    torch.manual_seed(seed)
    return ClassifierEnergy(nn.Linear(4, 3).double())


def reference_gradient(linear: nn.Linear, x: Tensor, y: Tensor, x_neg: Tensor, x_neg_y: Tensor,
                       *, px: float, pxy: float, l2: float) -> tuple[Tensor, Tensor]:
    """d loss / d (W, b) written out for logits ``W x + b``:
    cross-entropy ``(softmax - onehot) x^T``; ``E(x) = -logsumexp`` so ``dE/dW = -softmax x^T``;
    ``E(x, y) = -(W x + b)[y]`` so ``dE/dW = -onehot(y) x^T``; ``l2 E^2`` adds ``2 l2 E dE``."""
    m = len(x_neg)

    def logits(inputs: Tensor) -> Tensor:
        return inputs @ linear.weight.T + linear.bias

    def mean_outer(coef: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """mean over examples of ``coef[i] x[i]^T`` (for W) and ``coef[i]`` (for b)."""
        return coef.T @ inputs / len(inputs), coef.mean(0)

    def marginal(inputs: Tensor) -> tuple[Tensor, Tensor]:  # E and dE/dlogits
        z = logits(inputs)
        return -torch.logsumexp(z, 1), -torch.softmax(z, 1)

    def conditional(inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        onehot = F.one_hot(labels, 3).to(F64)
        return -(logits(inputs) * onehot).sum(1), -onehot

    grad_w, grad_b = mean_outer(torch.softmax(logits(x), 1) - F.one_hot(y, 3).to(F64), x)
    for weight, (e_pos, d_pos), (e_neg, d_neg), x_p, x_n in (
            (px, marginal(x[:m]), marginal(x_neg), x[:m], x_neg),
            (pxy, conditional(x[:m], y[:m]), conditional(x_neg_y, y[:m]), x[:m], x_neg_y)):
        for sign, energies, d, inputs in ((1, e_pos, d_pos, x_p), (-1, e_neg, d_neg, x_n)):
            w, b = mean_outer((sign + 2 * l2 * energies)[:, None] * d, inputs)
            grad_w, grad_b = grad_w + weight * w, grad_b + weight * b
    return grad_w, grad_b


def test_hybrid_loss_is_cross_entropy_plus_the_weighted_contrastive_terms() -> None:
    energy = linear_energy()
    x, y = torch.randn(5, 4, generator=gen(1), dtype=F64), torch.tensor([0, 1, 2, 1, 0])
    x_neg, x_neg_y = (torch.randn(3, 4, generator=gen(s), dtype=F64) for s in (2, 3))
    loss, stats = hybrid_loss(energy, x, y, x_neg, x_neg_y=x_neg_y, px_weight=0.7,
                              pxy_weight=0.3, energy_l2=0.1)
    e_pos, e_neg = energy(x[:3]), energy(x_neg)
    e_pos_y, e_neg_y = energy.class_energy(x[:3], y[:3]), energy.class_energy(x_neg_y, y[:3])
    ce = F.cross_entropy(energy.logits(x), y)
    expected = (ce + 0.7 * (e_pos.mean() - e_neg.mean()
                            + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean()))
                + 0.3 * (e_pos_y.mean() - e_neg_y.mean()
                         + 0.1 * (e_pos_y.pow(2).mean() + e_neg_y.pow(2).mean())))
    torch.testing.assert_close(loss, expected)
    # The p(x, y) statistics are the class energies of the batch's own labels.
    torch.testing.assert_close(stats["e_pos_y"], e_pos_y.mean().detach())
    torch.testing.assert_close(stats["e_neg_y"], e_neg_y.mean().detach())
    torch.testing.assert_close(stats["ce"], ce.detach())
    # With both contrastive weights 0 it is the plain classifier's loss, and needs no samples.
    plain, plain_stats = hybrid_loss(energy, x, y, None, px_weight=0.0)
    torch.testing.assert_close(plain, ce)
    assert "e_pos" not in plain_stats


@pytest.mark.parametrize("px, pxy, l2", [(1.0, 0.0, 0.0), (0.5, 2.0, 0.1), (0.0, 1.0, 0.3)])
def test_hybrid_loss_gradient_matches_the_hand_built_one(px: float, pxy: float, l2: float
                                                         ) -> None:
    energy = linear_energy()
    x, y = torch.randn(6, 4, generator=gen(1), dtype=F64), torch.tensor([0, 1, 2, 2, 1, 0])
    x_neg, x_neg_y = (torch.randn(4, 4, generator=gen(s), dtype=F64) for s in (2, 3))
    loss, _ = hybrid_loss(energy, x, y, x_neg if px else None,
                          x_neg_y=x_neg_y if pxy else None, px_weight=px, pxy_weight=pxy,
                          energy_l2=l2)
    linear = energy.classifier
    grad_w, grad_b = torch.autograd.grad(loss, [linear.weight, linear.bias])
    want_w, want_b = reference_gradient(linear, x, y, x_neg, x_neg_y, px=px, pxy=pxy, l2=l2)
    torch.testing.assert_close(grad_w, want_w.detach())
    torch.testing.assert_close(grad_b, want_b.detach())


@pytest.mark.parametrize("kwargs, message", [
    ({"x_neg": None}, "needs 1 to 5 samples, got None"),
    ({"x_neg": torch.zeros(6, 4, dtype=F64)}, "needs 1 to 5 samples"),
    ({"x_neg": torch.zeros(0, 4, dtype=F64)}, "needs 1 to 5 samples"),
    ({"x_neg": torch.zeros(2, 4, dtype=F64), "pxy_weight": 1.0}, "needs 1 to 5 samples, got None"),
    ({"x_neg": torch.zeros(2, 3, dtype=F64)}, "differ in sample shape"),
    ({"x_neg": torch.zeros(2, 4, dtype=F64), "y_pos": torch.zeros(4, dtype=torch.long)},
     r"labels must be \(5,\)"),
])
def test_hybrid_loss_refuses_missing_or_misshapen_samples(kwargs: dict, message: str) -> None:
    args = {"y_pos": torch.zeros(5, dtype=torch.long), **kwargs}
    with pytest.raises(ValueError, match=message):
        hybrid_loss(linear_energy(), torch.zeros(5, 4, dtype=F64), args.pop("y_pos"),
                    args.pop("x_neg"), **args)


def test_hybrid_loss_refuses_non_finite_logits() -> None:
    energy = linear_energy()
    with torch.no_grad():
        energy.classifier.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite logits .*\(5 of 15\)"):
        hybrid_loss(energy, torch.ones(5, 4, dtype=F64), torch.zeros(5, dtype=torch.long), None,
                    px_weight=0.0)


# --------------------------------------------------------------------------- the trainer


def tiny_labelled(n: int = 6) -> tuple[Tensor, Tensor]:
    """``(n, 1, 4, 4)`` images in [-1, 1] and their classes ``i % 3``."""
    return torch.rand(n, 1, 4, 4, generator=gen(100)) * 2 - 1, torch.arange(n) % 3


def make_trainer(*, init_seed: int = 0, sampler=None, init=None, reference=None,
                 **jem) -> HybridTrainer:
    torch.manual_seed(init_seed)
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.SiLU(),
                                            nn.Linear(8, 3)))
    data, labels = tiny_labelled()
    return HybridTrainer(
        energy, sampler or Langevin(n_steps=2, step_size=0.1, clamp=(-1.0, 1.0)),
        ReplayBuffer(8, init or NoiseInit("uniform", 1.0), fresh=0.3), data, labels,
        jem=JEMConfig(**{"px_batch": 2, "pxy_weight": 0.5, **jem}), reference=reference,
        train=TrainConfig(batch_size=4, lr=0.01, energy_l2=0.1), generator=gen(0))


def test_jem_settings_given_as_a_dict_are_refused_naming_the_section() -> None:
    """They failed at their first read, as "'dict' object has no attribute 'px_batch'"."""
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    with pytest.raises(ValueError, match=r"^jem must be a JEMConfig \(JEMConfig\(\*\*settings\) "
                                         r"for a dict of them\) or None, got dict$"):
        HybridTrainer(energy, Langevin(n_steps=1), ReplayBuffer(8, NoiseInit()),
                      *tiny_labelled(), jem={"px_batch": 2})


def test_a_step_inside_no_grad_is_the_same_step() -> None:
    """Its backward pass failed inside torch.no_grad()."""
    assert_same_step_inside_no_grad(make_trainer)


def test_divergence_is_the_trainers_and_past_jems_energy_gap() -> None:
    trainer = make_trainer(max_energy_gap=10.0)
    at_the_bound = {"loss": 0.0, "e_pos": 0.0, "e_neg": 10.0}
    trainer.check_divergence(at_the_bound)
    with pytest.raises(DivergenceError, match="past jem.max_energy_gap = 10"):
        trainer.check_divergence({**at_the_bound, "e_neg": 10.5})
    with pytest.raises(DivergenceError, match="the samples' mean energy 10.5 is 10.5 from"):
        trainer.check_divergence({**at_the_bound, "e_pos_y": 0.0, "e_neg_y": 10.5})
    with pytest.raises(DivergenceError, match="loss is nan"):  # the plain trainer's check
        trainer.check_divergence({**at_the_bound, "loss": math.nan})
    # Samples far below the data's energy are as far gone as samples far above it.
    with pytest.raises(DivergenceError, match="the samples' mean energy -10.5 is 10.5 from"):
        trainer.check_divergence({**at_the_bound, "e_neg": -10.5})


@pytest.mark.parametrize("fitted_as", ["reference", "init"])
def test_the_last_state_weighs_the_pixel_gaussians_however_they_were_fitted(
        fitted_as: str) -> None:
    """jem.reference_components' fit, or the chains' fitted start: without a feature fit, the
    last checkpoint still holds the weight eval ood scores that expert with."""
    data, labels = tiny_labelled()
    trainer = make_trainer(**{fitted_as: DataGaussian.fit(data, labels, rank=1)})
    trainer.n_iterations = 1
    trainer.fit(1, progress=False)
    weights = trainer.state_dict()["ood_weights"]
    assert weights["reference"] > 0 and weights["features"] is None


def test_a_step_reports_every_term_and_learns() -> None:
    trainer = make_trainer()
    history = trainer.fit(3, progress=False)
    assert set(history[0]) == {"loss", "ce", "accuracy", "e_pos", "e_neg", "e_pos_y", "e_neg_y"}
    assert trainer.iteration == 3 and trainer.last_samples.shape == (2, 1, 4, 4)
    # Each step's marginal chains (2) went into the buffer; the class chains never do.
    assert len(trainer.chains) == 6


def test_the_buffer_keeps_the_marginal_chains_end_states() -> None:
    """What a step stores is where its p(x) chains ended (the samples the loss used), not where
    they started: a buffer of starts would never carry a chain past one run's steps."""
    trainer = make_trainer()
    for step in range(2):
        trainer.step()
        assert torch.equal(trainer.chains.samples[2 * step:], trainer.last_samples)


def test_a_step_of_several_micro_batches_reports_their_mean(monkeypatch) -> None:
    """Each term's loss and statistics are the mean over the step's micro-batches, as its
    gradient is, not the last micro-batch's."""
    import stgconv.jem

    terms = []

    def recording(*args, **kwargs):
        loss, stats = hybrid_loss(*args, **kwargs)
        terms.append({"loss": loss.item(), **{key: value.item() for key, value in stats.items()}})
        return loss, stats

    monkeypatch.setattr(stgconv.jem, "hybrid_loss", recording)
    stats = make_trainer().step([torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 0, 2])])
    assert len(terms) == 2 and terms[0] != terms[1]
    assert stats == pytest.approx({key: (terms[0][key] + terms[1][key]) / 2 for key in terms[0]})


class RecordingSampler:
    """A Langevin sampler that remembers, for each run, the energy it was given at the starts
    and, before the step changes the weights, the model's marginal and per-class energies
    there."""

    def __init__(self) -> None:
        self.inner = Langevin(n_steps=1, step_size=0.1)
        self.model: ClassifierEnergy | None = None
        self.runs: list[tuple[Tensor, Tensor, Tensor]] = []

    def run(self, energy, x0, **kwargs) -> Tensor:
        with torch.no_grad():
            per_class = -self.model.logits(x0)
            self.runs.append((energy(x0), self.model(x0), per_class))
        return self.inner.run(energy, x0, **kwargs)


def test_the_pxy_term_samples_the_class_energies_of_the_batch() -> None:
    sampler = RecordingSampler()
    trainer = make_trainer(sampler=sampler, px_weight=0.0, pxy_weight=1.0, px_batch=3)
    sampler.model = trainer.energy
    batch = torch.tensor([4, 0, 2, 1])  # classes 1, 0, 2, 1
    stats = trainer.step([batch])
    (given, marginal, per_class), = sampler.runs
    # The chains ran on E(x, y) of the first px_batch examples' own classes, not the marginal.
    torch.testing.assert_close(given, per_class[torch.arange(3), torch.tensor([1, 0, 2])])
    assert not torch.allclose(given, marginal)
    assert "e_pos" not in stats and "e_pos_y" in stats


def test_class_chains_start_in_their_own_class_and_leave_the_store_alone() -> None:
    """Each p(x, y) chain starts from its class's component of the fitted Gaussian (they started
    from the marginal's store or from any class's start: 10 of 30 in their own class in a
    review's run) and nothing is written into the chain store, which holds the marginal's."""
    data, labels = tiny_labelled(30)
    data = data * 0.05 + (labels.float() - 1).view(-1, 1, 1, 1) * 0.8  # three separate clusters
    init = DataGaussian.fit(data, labels, rank=2)
    sampler = RecordingSampler()
    trainer = make_trainer(sampler=sampler, px_weight=0.0, pxy_weight=1.0, px_batch=4)
    trainer.data, trainer.labels, trainer.batch_size, trainer.px_batch = data, labels, 30, 30
    trainer.chains = ReplayBuffer(8, init, fresh=0.05)
    starts = []
    original = sampler.run

    def recording(energy, x0, **kwargs):
        starts.append(x0)
        return original(energy, x0, **kwargs)

    sampler.run, sampler.model = recording, trainer.energy
    trainer.step([torch.arange(30)])
    (x0,) = starts
    nearest = (x0.flatten(1)[:, None] - init.means.flatten(1)[None]).norm(dim=2).argmin(1)
    assert torch.equal(nearest, labels)
    assert len(trainer.chains) == 0


@pytest.mark.parametrize("shift", [0, 1])
def test_resume_takes_the_same_steps(tmp_path: Path, shift: int) -> None:
    straight = make_trainer(shift=shift)
    straight.fit(4, progress=False)
    first = make_trainer(shift=shift)
    first.fit(2, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    del first
    second = make_trainer(init_seed=7, shift=shift)
    second.resume(tmp_path / "checkpoint.pt")
    assert second.fit(4, progress=False) and second.iteration == 4
    assert_same(straight.state_dict(), second.state_dict())


@pytest.mark.filterwarnings("ignore:the calibration temperature is the end of its search")
def test_a_finished_trainer_fits_the_weights_it_loads_at_its_last_iteration() -> None:
    """The final fits were kept by iteration alone: another run's last state loaded into a
    finished trainer saved the fits of the weights it had replaced."""
    finished, other = make_trainer(), make_trainer(init_seed=1)
    for trainer in (finished, other):
        trainer.n_iterations = 1
        trainer.step()
    before = finished.state_dict()["temperature"]
    theirs = other.state_dict()
    assert theirs["temperature"] != before  # else the test could not tell
    finished.load_state_dict(theirs)
    assert finished.state_dict()["temperature"] == theirs["temperature"]


def test_final_fits_that_fail_leave_the_last_checkpoint_without_them(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The fits eval ood scores with are taken in the last save: one that failed there (here
    examples too alike to weigh the experts) raised out of the save, and the run's end since its
    last checkpoint was lost. The checkpoint is written without them, with a warning."""
    def too_alike(*_: object, **__: object) -> None:
        raise ValueError("the inliers are too alike to weigh the experts")

    monkeypatch.setattr("stgconv.jem.fit_temperature", too_alike)
    trainer = make_trainer()
    trainer.n_iterations = 1
    with pytest.warns(RuntimeWarning, match=r"^the last checkpoint is saved without the fits "
                                            r"eval ood scores with \(temperature, score "
                                            r"weights\): the inliers are too alike"):
        assert trainer.fit(1, checkpoint_path=tmp_path / "checkpoint.pt", progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == 1 and "temperature" not in state


def test_divergence_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = make_trainer()
    path = tmp_path / "checkpoint.pt"
    trainer.fit(1, checkpoint_path=path, progress=False)
    good = load_checkpoint(path)
    trainer.jem = replace(trainer.jem, max_energy_gap=1e-9)  # any gap is now too far
    with pytest.raises(DivergenceError) as info:
        trainer.fit(3, checkpoint_path=path, progress=False)
    message = str(info.value)
    assert "JEM's contrastive term diverged at iteration 2" in message
    assert message.endswith(f"{path} keeps iteration 1, the last good model ({JEM_ADVICE})")
    # JEM's advice alone: the descriptor's was added after it, naming another setting.
    assert info.value.advice == JEM_ADVICE and message.count(JEM_ADVICE) == 1
    assert DESCRIPTOR_ADVICE not in message
    assert_same(load_checkpoint(path)["model"], good["model"])


def test_the_trainer_refuses_bad_labels() -> None:
    trainer = make_trainer()
    data, labels = tiny_labelled()
    args = (trainer.energy, trainer.sampler, trainer.chains, data)
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. 2"):
        HybridTrainer(*args, labels + 1)
    with pytest.raises(ValueError, match=r"labels must be \(6,\)"):
        HybridTrainer(*args, labels[:5])
    with pytest.raises(ValueError, match=r"labels must be \(6,\), one per example, got \(6, 1\)"):
        HybridTrainer(*args, labels[:, None])
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. 2 .*got -1 \.\. 1"):
        HybridTrainer(*args, labels - 1)
    # As hybrid_loss refuses them: .long() truncated 1.5 to class 1, and bool labels were
    # taken for classes 0 and 1.
    with pytest.raises(ValueError, match=r"labels must be integers, got torch.float32"):
        HybridTrainer(*args, labels + 0.5)
    with pytest.raises(ValueError, match=r"labels must be integers, got torch.bool"):
        HybridTrainer(*args, labels > 0)
    # A numpy array or list of classes failed at its first tensor method ("'list' object has
    # no attribute 'shape'").
    for given, kind in ((labels.numpy(), "ndarray"), (labels.tolist(), "list")):
        with pytest.raises(ValueError, match=rf"labels must be a torch.Tensor, got {kind} "
                                             r"\(convert it first: torch.as_tensor\(labels\)\)"):
            HybridTrainer(*args, given)
    with pytest.raises(ValueError, match=r"labels are on meta, the data on cpu: move the "
                                         r"labels to the data's device$"):
        HybridTrainer(*args, labels.to("meta"))
    # The feature fit runs when training ends: what would fail it is refused before training.
    one_of_class_2 = torch.tensor([0, 1, 0, 1, 0, 2])
    with pytest.raises(ValueError, match=re.escape(
            "class 2 has 1 examples (at least 2 needed): set jem.feature_rank: 0")):
        HybridTrainer(*args, one_of_class_2, jem=JEMConfig(feature_rank=2))
    # The classifier's last class with no example at all is short too; labels that stop
    # short of the classifier's classes suggest the class count that fits them as well.
    with pytest.raises(ValueError, match=re.escape(
            "class 2 has 0 examples, past the labels' last class 1 of model.n_classes = 3 (at "
            "least 2 needed): set model.n_classes: 2 or jem.feature_rank: 0")):
        HybridTrainer(*args, labels % 2, jem=JEMConfig(feature_rank=2))
    # Under torchrun process 0 fits on its share: the message says where the class is short.
    with pytest.raises(ValueError, match=r"class 2 has 1 examples in process 0's share of the "
                                         r"examples \(0, 2, 4, \.\.\.\)"):
        HybridTrainer(*args, one_of_class_2, jem=JEMConfig(feature_rank=2),
                      world=World(rank=0, size=2, device=torch.device("cpu")))
    # The other processes fit nothing: their share may lack a class's examples.
    HybridTrainer(*args, one_of_class_2, jem=JEMConfig(feature_rank=2),
                  world=World(rank=1, size=2, device=torch.device("cpu")))
    headless = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.SiLU()))
    with pytest.raises(ValueError, match="nn.Linear"):
        HybridTrainer(headless, *args[1:], labels, jem=JEMConfig(feature_rank=2))


def test_the_trainer_refuses_a_reference_it_could_not_score_the_data_with() -> None:
    """The reference is read only when training ends: a fit of other examples failed there,
    after the whole run, and another object at the first save."""
    data, labels = tiny_labelled()
    with pytest.raises(ValueError, match=re.escape(
            "reference is a fit of examples (1, 8, 8), the data's are (1, 4, 4): fit it to")):
        make_trainer(reference=DataGaussian.fit(torch.rand(6, 1, 8, 8, generator=gen(1)),
                                                labels, rank=1))
    with pytest.raises(ValueError, match="reference must be a DataGaussian .*, got Tensor$"):
        make_trainer(reference=data)


def test_the_trainer_refuses_reference_components_without_a_reference() -> None:
    """The trainer fits no reference (stgconv train does): jem.reference_components with none
    given was dropped without a word, and the run kept no pixel expert."""
    with pytest.raises(ValueError, match=re.escape(
            "jem.reference_components is 2, but the trainer fits no reference: pass reference="
            "DataGaussian.fit(data, labels, rank=jem.reference_rank, components=")):
        make_trainer(reference_components=2)


def test_the_trainer_checks_the_shift_as_a_config_file_does() -> None:
    """A JEMConfig built in Python: a shift of 30 on 4x4 images trained on the smeared edges
    that replace the moved images, without a word."""
    for shift in (2, 30):
        with pytest.raises(ValueError, match=rf"^jem.shift must be in \[0, the images' smaller "
                                             rf"side / 2 = 2\), got {shift}$"):
            make_trainer(shift=shift)
    assert make_trainer(shift=1).jem.shift == 1


def test_the_trainer_checks_px_batch_as_a_config_file_does() -> None:
    """A JEMConfig built in Python: px_batch 0 took the whole batch, and one past the batch
    was cut to it, without a word."""
    trainer = make_trainer()
    data, labels = tiny_labelled()
    args = (trainer.energy, trainer.sampler, trainer.chains, data, labels)
    for px_batch in (0, 5):
        with pytest.raises(ValueError, match=rf"jem.px_batch must be in \[1, train.batch_size = "
                                             rf"4\] or null, got {px_batch}"):
            HybridTrainer(*args, jem=JEMConfig(px_batch=px_batch), train=TrainConfig(batch_size=4))


def test_the_trainer_refuses_the_train_sections_lr_decay_as_a_config_file_does() -> None:
    """A JEM run's schedule is jem.lr_decay: TrainConfig(lr_decay="cosine") was replaced by
    JEMConfig's "none" without a word, and the run trained at a constant rate."""
    trainer = make_trainer()
    data, labels = tiny_labelled()
    with pytest.raises(ValueError, match=re.escape(
            "train.lr_decay is 'cosine', but a JEM run's schedule is jem.lr_decay: set "
            "JEMConfig(lr_decay='cosine') instead")):
        HybridTrainer(trainer.energy, trainer.sampler, trainer.chains, data, labels,
                      jem=JEMConfig(), train=TrainConfig(batch_size=4, lr_decay="cosine"))


# --------------------------------------------------------------------------- config and data


@pytest.mark.parametrize("overrides, message", [
    (["model.arch=texture"], "jem trains a classifier architecture, got model.arch 'texture'"),
    (["jem=null"], "model.arch 'digit_classifier' is a classifier: add a jem section"),
    # Named first: the config's chains.init data_gaussian was refused as a cooperative run's.
    (["cooperative={}"], "jem trains one classifier: remove the multigrid / cooperative section"),
    (["cooperative={}", "chains.init=gaussian"],
     "jem trains one classifier: remove the multigrid / cooperative section"),
    (["jem.px_batch=0"], r"jem.px_batch must be in \[1, train.batch_size = 64\]"),
    (["jem.px_batch=65"], r"jem.px_batch must be in \[1, train.batch_size = 64\]"),
    (["jem.px_weight=-1"], "jem.px_weight must be >= 0"),
    (["jem.max_energy_gap=0"], "jem.max_energy_gap must be positive"),
    (["jem.shift=-1"], "jem.shift must be >= 0, got -1"),
    (["jem.shift=14"], r"jem.shift must be in \[0, data.size / 2 = 14\)"),
    (["chains.chains_per_example=2"], "chains.chains_per_example must be 1"),
    (["chains.mode=data", "chains.init=uniform"], "chains.mode 'data' does not apply"),
    (["data.kind=texture"], "jem needs labelled images"),
    (["model.n_classes=1"], "model.n_classes must be >= 2"),
    (["train.lr_decay=cosine"], "a JEM run sets jem.lr_decay"),
    (["jem.labelz=y"], "unknown config key.*jem.labelz"),
    (["chains.init_rank=-1"], "chains.init_rank must be >= 0"),
    (["jem.reference_components=-1"], "jem.reference_components must be >= 0"),
    (["jem.reference_rank=-1"], "jem.reference_rank must be >= 0"),
    (["jem.feature_rank=-1"], "jem.feature_rank must be >= 0"),
    (["chains.init_noise=2"], r"chains.init_noise must be in \[0, 1\]"),
    (["model.arch=texture", "model.density_scale=true", "jem=null"],
     "model.density_scale applies to classifier architectures"),
    (["chains.init=data_gaussian", "chains.mode=super_resolution"],
     "chains.init 'data_gaussian' starts the chains of chains.mode 'noise', 'persistent' or "
     "'buffer'"),
    (["chains.init=data_gaussian", "jem=null", "model.arch=texture", "cooperative={}"],
     "chains.init 'data_gaussian' .* and a cooperative section"),
])
def test_config_checks_the_jem_section(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(JEM_CONFIG, overrides)


def test_the_jem_sections_limits_are_allowed() -> None:
    # Every example of the batch in the contrastive terms; an .npz suffix in capitals.
    config = load_config(JEM_CONFIG, ["jem.px_batch=64", "data.path=DIGITS.NPZ"])
    assert config.jem.px_batch == config.train.batch_size == 64


def test_a_classifier_needs_the_jem_section() -> None:
    with pytest.raises(ValueError, match="'digit_classifier' is a classifier: add a jem section"):
        load_config(None, ["model.arch=digit_classifier"])


def test_the_shipped_jem_config_loads() -> None:
    config = load_config(JEM_CONFIG)
    assert config.jem is not None and config.model.arch == "digit_classifier"


def test_the_paper_scale_config_trains_on_keras_cifar_layout(tmp_path: Path) -> None:
    """configs/image/jem_cifar10_paper.yaml on four 32x32 RGB images with Keras' CIFAR labels
    ``(N, 1)``: one iteration of the WRN-28-10 with one SGLD step."""
    data = tmp_path / "cifar.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x_train=rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
             y_train=np.array([[0], [3], [9], [3]]))
    run = tmp_path / "run"
    assert main(["train", str(JEM_CONFIG.parent / "jem_cifar10_paper.yaml"), "--data",
                 str(data), "--out", str(run), "--set", "train.n_iterations=1", "--set",
                 "train.batch_size=2", "--set", "sampler.n_steps=1", "--set",
                 "train.sample_every=0", "--set", "device=cpu", "--quiet"]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["model_config"] == {"arch": "wide_resnet", "n_classes": 10, "in_channels": 3,
                                     "image_size": 32}


@pytest.mark.parametrize("arrays, message", [
    ({"y_train": None}, "no labels 'y_train' (it has x_train) (jem.labels names the labels "
                        "array)"),
    ({"y_train": np.array([0, 1, 2, 5, 0, 1])}, "holds class 5, past model.n_classes = 3"),
    # No images= advice: a library argument, which the command's user cannot pass.
    ({"y_train": np.array([0, 1])}, "holds 2 labels for 6 x_train images, where one per image "
                                    "is needed (jem.labels names the labels array)\n"),
    ({"y_train": np.full(6, 0.5)}, "must be whole class numbers, got fractions"),
])
def test_train_refuses_missing_or_bad_labels(tmp_path: Path, capsys, arrays: dict,
                                             message: str) -> None:
    with np.load(labelled_bars(tmp_path / "bars.npz")) as archive:
        content = {"x_train": archive["x_train"], **arrays}
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in content.items() if v is not None})
    code = main(["train", str(JEM_CONFIG), "--data", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "run"), *JEM_TINY])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("stgconv train: error:")


# --------------------------------------------------------------------------- end to end


def test_train_writes_a_jem_run_that_rebuilds_without_pickles(trained_jem_run: dict[str, Path]
                                                              ) -> None:
    run = trained_jem_run["run"]
    for name in ("checkpoint.pt", "config.yaml", "observed.png", "samples.png"):
        assert (run / name).is_file(), name
    # weights_only loading refuses anything but tensors and plain data.
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2
    assert state["model_config"] == {"arch": "digit_classifier", "n_classes": 3,
                                     "in_channels": 1, "image_size": 28, "density_scale": True}
    assert state["model"]["log_density_scale"].shape == ()
    energy, config, _ = load_model(run, device="cpu")
    assert isinstance(energy, ClassifierEnergy) and config.jem is not None
    rebuilt = classifier_energy(**state["model_config"])
    rebuilt.load_state_dict(state["model"])
    x = torch.rand(2, 1, 28, 28, generator=gen(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(energy.logits(x), rebuilt.logits(x))
    # The replay buffer holds the chains of both iterations' contrastive sub-batches.
    assert state["chains"]["samples"].shape == (4, 1, 28, 28)


def test_cosine_lr_decay_follows_the_iteration_count() -> None:
    """jem.lr_decay cosine: step i runs at lr (1 + cos(pi i / n)) / 2, from the iteration
    count, so a resumed run continues the schedule."""
    import math

    trainer = make_trainer(lr_decay="cosine")
    base, n = trainer.lr, trainer.n_iterations
    for i in range(2):
        trainer.step()
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
            base * 0.5 * (1 + math.cos(math.pi * i / n)))
    constant = make_trainer()  # lr_decay "none"
    constant.step()
    constant.step()
    assert constant.optimizer.param_groups[0]["lr"] == base


def test_data_gaussian_starts_train_and_class_synthesis_from_the_class_fits(tmp_path: Path
                                                                            ) -> None:
    """chains.init data_gaussian: the run keeps one Gaussian per class in its checkpoint, and
    `synthesize --class K` starts class K's chains from K's (the bars of a class are identical,
    so the start is exactly the class's bar, and one step keeps each sample nearest it)."""
    data = labelled_bars(tmp_path / "bars.npz")
    run = tmp_path / "run"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(run), *JEM_TINY,
                 "--set", "chains.init=data_gaussian", "--set", "chains.init_rank=4"]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["init"]["factors"].shape == (3, 0, 1, 28, 28)  # 2 examples: rank n - 2 = 0
    with np.load(data) as archive:
        bars = archive["x_train"][:3].astype(np.float32) / 255 * 2 - 1  # the model's units
    starts = chain_init(load_config(run / "config.yaml").chains, state["init"]).sample(
        (2, 1, 28, 28), classes=torch.tensor([2, 0]), generator=gen(0))
    np.testing.assert_allclose(starts[:, 0].numpy(), bars[[2, 0]], atol=1e-5)
    out = tmp_path / "samples"
    assert main(["synthesize", str(run), "-n", "2", "--class", "2", "--class", "0",
                 "--steps", "1", "--out", str(out)]) == 0
    samples = np.load(out / "synthesized.npy")[:, 0] / 127.5 - 1  # grey levels -> the model's
    nearest = ((samples[:, None] - bars[None]) ** 2).sum(axis=(2, 3)).argmin(axis=1)
    assert nearest.tolist() == [2, 2, 0, 0]


def test_reference_components_fit_the_ood_expert_per_cluster_of_each_class(tmp_path: Path
                                                                           ) -> None:
    """jem.reference_components keeps k-means-clustered class Gaussians as the checkpoint's
    "reference", which eval ood scores with instead of the chains' start."""
    data = labelled_bars(tmp_path / "bars.npz", 24, varied=True)  # 8 bars of each class
    run = tmp_path / "run"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(run), *JEM_TINY,
                 "--set", "jem.reference_components=2", "--set", "jem.reference_rank=4"]) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["reference"]["component_classes"].tolist() == [0, 0, 1, 1, 2, 2]
    assert state["init"]["means"].shape[0] == 3  # the chains still start one per class
    reference = load_classifier(run, device="cpu").reference
    assert reference is not None and reference.n_classes == 3 and len(reference.weights) == 6
    without = tmp_path / "without"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(without),
                 *JEM_TINY, "--set", "jem.reference_components=0",
                 "--set", "jem.reference_rank=64"]) == 0  # the file's 32 is then unread
    assert "reference" not in torch.load(without / "checkpoint.pt", weights_only=True)
    fallback = load_classifier(without, device="cpu").reference
    assert fallback is not None and len(fallback.weights) == 3  # the chains' start
    one = tmp_path / "one"  # one component per class is a reference fit too, without k-means
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(one), *JEM_TINY,
                 "--set", "jem.reference_components=1", "--set", "jem.reference_rank=4"]) == 0
    state = torch.load(one / "checkpoint.pt", weights_only=True)
    assert state["reference"]["component_classes"].tolist() == [0, 1, 2]
    # jem.reference_rank's 4 directions, not the chains' start's (chains.init_rank: 8 - 2).
    assert (state["reference"]["factors"].shape[1], state["init"]["factors"].shape[1]) == (4, 6)


def test_the_reference_fit_draws_from_the_runs_seed(tmp_path: Path, monkeypatch) -> None:
    """jem.reference_components' clustering draws from a stream of the config's seed: another
    seed, another fit."""
    streams, fit = [], DataGaussian.fit
    monkeypatch.setattr(DataGaussian, "fit", lambda *args, **kwargs: streams.append(
        kwargs.get("generator")) or fit(*args, **kwargs))
    data = labelled_bars(tmp_path / "bars.npz", 24, varied=True)
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(tmp_path / "run"),
                 *JEM_TINY, "--set", "jem.reference_components=2", "--set",
                 "jem.reference_rank=4", "--set", "seed=7"]) == 0
    assert [stream.initial_seed() for stream in streams if stream is not None] == [7]


@pytest.mark.parametrize("overrides, setting", [
    ([], "chains.init 'data_gaussian'"),  # the file's start, fitted first
    (["--set", "chains.init=gaussian"], "jem.reference_components"),
])
def test_a_gaussian_fit_too_few_examples_for_names_the_setting_that_asked_for_it(
        tmp_path: Path, capsys, overrides: list[str], setting: str) -> None:
    """Both fits refused a class of one example in the same words, naming neither setting."""
    data = labelled_bars(tmp_path / "bars.npz", 4)  # classes 0, 1, 2, 0
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(tmp_path / "run"),
                 *JEM_TINY, *overrides]) == 2
    assert (f"error: {setting} fits Gaussians to the training examples: class 1 has 1 examples"
            in capsys.readouterr().err)


def test_the_chains_fitted_start_takes_the_configs_share_of_noise(tmp_path: Path,
                                                                   monkeypatch) -> None:
    fits = []
    fit = DataGaussian.fit
    monkeypatch.setattr(DataGaussian, "fit", lambda *args, **kwargs: fits.append(
        fit(*args, **kwargs)) or fits[-1])
    assert main(["train", str(JEM_CONFIG), "--data", str(labelled_bars(tmp_path / "bars.npz")),
                 "--out", str(tmp_path / "run"), *JEM_TINY, "--set", "chains.init_noise=0.25",
                 "--set", "chains.init_scale=0.5"]) == 0
    start = fits[0]  # the chains' start is fitted first (the OOD references after it)
    assert (start.noise, start.noise_scale) == (0.25, 0.5)


def test_a_run_on_some_of_the_images_takes_their_labels(tmp_path: Path) -> None:
    """data.max_images picks the same examples of the images and of the labels."""
    data = labelled_bars(tmp_path / "bars.npz", 30, varied=True)
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(tmp_path / "run"),
                 *JEM_TINY, "--set", "data.max_images=12"]) == 0
    # Each class's fitted mean is bright in its own bar's columns (6 + 7c to 8 + 7c).
    means = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["init"]["means"]
    assert [(int(mean[0].sum(0).argmax()) - 6) // 7 for mean in means] == [0, 1, 2]


def test_the_reference_clusters_are_drawn_from_the_runs_seed_not_the_callers_rng(
        tmp_path: Path) -> None:
    """jem.reference_components' k-means draws from a generator of the config's seed: a run
    leaves its caller's global RNG as it was, and the same seed fits the same reference."""
    data = labelled_bars(tmp_path / "bars.npz", 24, varied=True)
    fitted = []
    for name, caller_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(tmp_path / name),
                     *JEM_TINY, "--set", "jem.reference_components=2",
                     "--set", "jem.reference_rank=0"]) == 0
        assert torch.equal(torch.get_rng_state(), before)
        fitted.append(load_checkpoint(tmp_path / name)["reference"])
    assert all(torch.equal(fitted[0][key], fitted[1][key]) for key in fitted[0]
               if isinstance(fitted[0][key], Tensor))


def test_the_last_checkpoint_holds_gaussians_of_the_trained_features(tmp_path: Path) -> None:
    """jem.feature_rank: the checkpoint of the run's last iteration, and only it (any later step
    would make the fit stale), holds one Gaussian per class over the trained network's
    penultimate features of the examples, which eval ood loads."""
    data = labelled_bars(tmp_path / "bars.npz", 24, varied=True)  # 8 bars of each class
    run = tmp_path / "run"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(run), *JEM_TINY,
                 "--set", "jem.feature_rank=3", "--set", "train.checkpoint_every=1"]) == 0
    assert "feature_reference" not in torch.load(run / "checkpoint_previous.pt",
                                                  weights_only=True)  # iteration 1 of 2
    assert "feature_reference" in torch.load(run / "checkpoint.pt", weights_only=True)
    model = load_classifier(run, device="cpu")
    energy, features = model.energy, model.feature_reference
    with np.load(data) as archive:
        x = torch.from_numpy(archive["x_train"]).float()[:, None] / 255 * 2 - 1  # model units
        y = torch.from_numpy(archive["y_train"])
    with torch.no_grad():
        phi = energy.features(x)
    assert features is not None and features.means.shape == (3, phi.shape[1])
    assert features.factors.shape[1] == 3  # feature_rank directions (8 bars span 7)
    for k in range(3):
        torch.testing.assert_close(features.means[k], phi[y == k].mean(0), rtol=0, atol=1e-5)
    # per_class: the first examples of each class, in the data's order.
    first_two = fit_feature_reference(energy, x, y, rank=0, per_class=2)
    for k in range(3):
        torch.testing.assert_close(first_two.means[k], phi[y == k][:2].mean(0), rtol=0,
                                   atol=1e-5)
    # Given an order, the first of each class in that order.
    backwards = torch.arange(len(y) - 1, -1, -1)
    last_two = fit_feature_reference(energy, x, y, rank=0, per_class=2, order=backwards)
    for k in range(3):
        torch.testing.assert_close(last_two.means[k], phi[y == k][-2:].mean(0), rtol=0,
                                   atol=1e-5)


def test_the_ood_weights_are_set_on_training_examples_the_feature_fit_did_not_read() -> None:
    """fit_ood_weights weighs the experts on the per_class examples of each class after those
    fit_feature_reference read (log r over its own fit's examples spreads narrower than over
    new ones), and on the fit's own when a class has no others."""
    torch.manual_seed(0)
    energy = ClassifierEnergy(digit_classifier(3, width=8))
    x = torch.rand(30, 1, 28, 28) * 2 - 1
    y = torch.arange(30) % 3  # 10 of each class
    reference = DataGaussian.fit(x, y, rank=2)
    features = fit_feature_reference(energy, x, y, rank=2, per_class=4)
    weights = fit_ood_weights(energy, x, y, reference=reference, feature_reference=features,
                              per_class=3, fit_per_class=4)
    fallback = fit_ood_weights(energy, x[:12], y[:12], reference=reference,
                               feature_reference=features, per_class=3, fit_per_class=4)
    after_the_fit = torch.cat([torch.nonzero(y == k)[4:7, 0] for k in range(3)])
    expected = score_images(energy, reference, x[after_the_fit], feature_reference=features)[2]
    assert weights == expected and weights["reference"] > 0 and weights["features"] > 0
    its_own = torch.cat([torch.nonzero(y[:12] == k)[:3, 0] for k in range(3)])
    assert fallback == score_images(energy, reference, x[its_own],
                                    feature_reference=features)[2]
    # Given an order, the examples after the fit's in that order (here the data's reversed).
    backwards = torch.arange(29, -1, -1)
    reordered = fit_ood_weights(energy, x, y, reference=reference, feature_reference=features,
                                per_class=3, fit_per_class=4, order=backwards)
    held = torch.cat([torch.nonzero(y == k)[:, 0].flip(0)[4:7] for k in range(3)])
    assert reordered == score_images(energy, reference, x[held], feature_reference=features)[2]


def test_the_feature_fit_names_a_batch_size_that_is_not_a_positive_int() -> None:
    energy = make_trainer().energy
    data, labels = tiny_labelled()
    with pytest.raises(ValueError, match=r"^batch_size must be an int >= 1, got 0$"):
        fit_feature_reference(energy, data, labels, rank=1, batch_size=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"per_class": -1}, r"^per_class must be an int >= 1, got -1$"),
    ({"per_class": 0}, r"^per_class must be an int >= 1, got 0$"),
    ({"per_class": 1.5}, r"^per_class must be an int >= 1, got 1.5$"),
    ({"per_class": 2, "skip": -1}, r"^skip must be an int >= 0, got -1$")])
def test_class_examples_name_counts_that_are_not_ints_in_range(kwargs, message) -> None:
    """Slices of a negative count took all but the last example of each class (per_class -1)
    or none (skip -1), without a word; a float failed in Python's slice words."""
    with pytest.raises(ValueError, match=message):
        class_examples(torch.tensor([0, 1, 0, 1, 0, 1]), **kwargs)


def test_class_examples_follow_the_order_given() -> None:
    """The trainer's fits read each class's examples in a seeded random order (a file's own
    order may follow its writers): the feature fit the first of each class in it, the weights
    the next, never the same ones."""
    y = torch.arange(30) % 3
    order = torch.randperm(30, generator=gen(5))
    first = class_examples(y, 2, order=order)
    assert first.tolist() == [int(i) for k in range(3) for i in order[y[order] == k][:2]]
    then = class_examples(y, 3, skip=2, order=order)
    assert len(then) == 9 and not set(first.tolist()) & set(then.tolist())
    assert torch.equal(class_examples(y, 2), torch.tensor([0, 3, 1, 4, 2, 5]))  # data order
    # Without or_first a class with nothing after its skip gives nothing (class 0: 2 of 2).
    assert class_examples(torch.tensor([0, 1, 1, 1, 0]), 2, skip=2).tolist() == [3]


def test_reconstruct_and_interpolate_refuse_a_data_gaussian_start(
        trained_jem_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    """They optimise a noise start, which a model started from fitted Gaussians has not."""
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    for args in (["interpolate", str(trained_jem_run["run"])],
                 ["reconstruct", str(trained_jem_run["run"]), str(image)]):
        assert main([*args, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "chains.init data_gaussian" in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()


def test_ood_weights_weigh_every_class_when_some_have_nothing_after_the_fit() -> None:
    """A class no larger than the fit gives its fit's own examples, the others those after the
    fit: not only the classes that happen to be larger (a set of other classes' proportions)."""
    torch.manual_seed(0)
    energy = ClassifierEnergy(digit_classifier(3, width=8))
    x = torch.rand(13, 1, 28, 28) * 2 - 1
    y = torch.arange(13) % 3  # 5, 4, 4: one example of class 0 left after the fit's 4
    reference = DataGaussian.fit(x, y, rank=2)
    features = fit_feature_reference(energy, x, y, rank=2, per_class=4)
    weights = fit_ood_weights(energy, x, y, reference=reference, feature_reference=features,
                              per_class=3, fit_per_class=4)
    weighed = torch.cat([torch.nonzero(y == 0)[4:, 0],
                         *(torch.nonzero(y == k)[:3, 0] for k in (1, 2))])
    assert weights == score_images(energy, reference, x[weighed], feature_reference=features)[2]


def test_held_examples_are_those_after_the_fit_else_the_fits_own_in_the_same_order() -> None:
    """held_examples takes each class's examples after the ``skip`` a fit read, in ``order``;
    a class with none after them gives its first ones in that same order, not in the data's."""
    y = torch.arange(8) % 2  # 4 of each class: 1 of each left after 3
    order = torch.randperm(8, generator=gen(3))
    assert held_examples(y, 5, skip=3, order=order).tolist() == [
        int(i) for k in range(2) for i in order[y[order] == k][3:]]
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # 4 and 7: class 0 has 1 left after 3
    order = torch.randperm(11, generator=gen(4))
    expected = [*(int(i) for i in order[y[order] == 0][3:]),
                *(int(i) for i in order[y[order] == 1][3:5])]
    assert held_examples(y, 2, skip=3, order=order).tolist() == expected
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1])  # class 0: nothing after 3, its first 2
    order = torch.randperm(9, generator=gen(4))
    expected = [*(int(i) for i in order[y[order] == 0][:2]),
                *(int(i) for i in order[y[order] == 1][3:5])]
    assert held_examples(y, 2, skip=3, order=order).tolist() == expected
    assert expected[:2] != class_examples(y, 2).tolist()[:2]  # the order given, not the data's


# An untrained net's logits: the temperature search ends at its bound, and says so.
@pytest.mark.filterwarnings("ignore:the calibration temperature is the end of its search")
def test_the_final_fits_read_the_examples_in_the_runs_seeded_order(monkeypatch) -> None:
    """When training ends the temperature is fitted to the examples after those the feature
    fit reads, and the feature fit and the score's weights read each class in one random
    order seeded by the run's seed (a file's own order may follow its writers)."""
    import stgconv.jem as jem

    seen: dict[str, tuple] = {}

    def spy(name: str, real):
        def call(*args, **kwargs):
            seen[name] = (args, kwargs)
            return real(*args, **kwargs)
        return call

    for name in ("fit_temperature", "fit_feature_reference", "fit_ood_weights"):
        monkeypatch.setattr(jem, name, spy(name, getattr(jem, name)))
    monkeypatch.setattr(jem, "FEATURE_FIT_PER_CLASS", 2)  # held: the 3rd and 4th of each class
    torch.manual_seed(0)
    energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.SiLU(),
                                            nn.Linear(8, 3)))
    data, labels = tiny_labelled(15)  # 5 of each class
    trainer = HybridTrainer(energy, Langevin(n_steps=1, step_size=0.1),
                            ReplayBuffer(8, NoiseInit("uniform", 1.0)), data, labels,
                            jem=JEMConfig(feature_rank=2), train=TrainConfig(batch_size=4),
                            generator=gen(0), config={"seed": 7})
    fitted = trainer._final_fits()
    order = torch.randperm(15, generator=torch.Generator().manual_seed(7))
    held = torch.cat([order[labels[order] == k][2:4] for k in range(3)])
    logits, fitted_labels = seen["fit_temperature"][0]
    assert torch.equal(fitted_labels, labels[held])
    with torch.no_grad():
        torch.testing.assert_close(logits, energy.logits(data[held]))
    for name in ("fit_feature_reference", "fit_ood_weights"):
        assert torch.equal(seen[name][1]["order"], order), name
    assert set(fitted) == {"temperature", "feature_reference", "ood_weights"}
    # The score's weights are set with the feature Gaussians just fitted, as eval ood scores.
    assert seen["fit_ood_weights"][1]["feature_reference"] is not None
    assert fitted["ood_weights"]["features"] is not None


def test_micro_batches_average_their_gradients() -> None:
    """The gradient of a step over k micro-batches is their mean, not their sum."""
    def grads(batches):
        torch.manual_seed(0)
        energy = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
        data = torch.rand(6, 1, 4, 4) * 2 - 1
        labels = torch.tensor([0, 1, 2, 0, 1, 2])
        trainer = HybridTrainer(
            energy, Langevin(n_steps=1, step_size=0.1), ReplayBuffer(8, NoiseInit("uniform", 1.0)),
            data, labels, jem=JEMConfig(px_weight=0.0, pxy_weight=0.0),
            train=TrainConfig(batch_size=3, lr=0.01), generator=torch.Generator().manual_seed(0))
        trainer.step(batches)
        return [p.grad.clone() for p in trainer.energy.parameters()]

    batch = torch.tensor([0, 1, 2])
    for once, twice in zip(grads([batch]), grads([batch, batch])):
        torch.testing.assert_close(once, twice)


def test_train_refuses_a_label_equal_to_n_classes(tmp_path: Path, capsys) -> None:
    """Classes are 0 .. n_classes - 1: a label equal to model.n_classes is already out of range
    and refused before training (not only labels beyond it)."""

    import stgconv

    config = Path(stgconv.__file__).parents[1] / "configs" / "image" / "jem_mnist_quick.yaml"
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "bars.npz", x_train=images, y_train=np.arange(8) % 4)
    code = main(["train", str(config), "--data", str(tmp_path / "bars.npz"),
                 "--out", str(tmp_path / "run"), "--set", "model.n_classes=3",
                 "--set", "train.n_iterations=1", "--set", "train.batch_size=4",
                 "--set", "jem.px_batch=2", "--set", "sampler.n_steps=1",
                 "--set", "chains.buffer_capacity=8", "--set", "train.sample_every=0",
                 "--set", "device=cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "holds class 3, past model.n_classes = 3" in err


def test_class_synthesis_gives_each_class_a_block_of_chains(trained_jem_run, monkeypatch,
                                                             tmp_path: Path) -> None:
    """Class-conditional synthesis is class-major: with classes [0, 2] and 2 samples per class
    the chains' classes are 0, 0, 2, 2 (sample i is of class classes[i // n]); the chains run
    on those classes' energies, not on the marginal."""
    from stgconv.tasks import synthesize

    seen, sampled = [], []
    conditional = ClassifierEnergy.conditional

    def recording(self, y):
        seen.append(y.tolist())
        energy = conditional(self, y)

        def class_energy(x):
            sampled.append(len(x))
            return energy(x)

        return class_energy

    monkeypatch.setattr(ClassifierEnergy, "conditional", recording)
    synthesize(trained_jem_run["run"], tmp_path / "s", n_samples=2, n_steps=1, classes=[0, 2],
               device="cpu")
    assert seen == [[0, 0, 2, 2]]
    assert sampled and set(sampled) == {4}


def test_jem_refuses_chain_starts_with_several_chains_per_example() -> None:
    trainer = make_trainer()
    data, labels = tiny_labelled()
    chains = NoiseStart(NoiseInit("uniform", 1.0), chains_per_example=2)
    with pytest.raises(ValueError, match="one chain per example"):
        HybridTrainer(trainer.energy, trainer.sampler, chains, data, labels)


def test_jem_last_samples_are_the_class_chains_without_a_px_term() -> None:
    trainer = make_trainer(px_weight=0.0, pxy_weight=1.0)
    trainer.step()
    assert trainer.last_samples is not None
    assert trainer.last_samples.shape == (2, 1, 4, 4)


def test_jem_refits_the_ood_experts_when_training_goes_past_the_last_iteration() -> None:
    trainer = make_trainer(feature_rank=2)
    trainer.n_iterations = 1
    trainer.fit(1, progress=False)
    first = trainer.state_dict()["feature_reference"]
    trainer.fit(3, progress=False)
    later = trainer.state_dict()["feature_reference"]
    tensors = [key for key, value in first.items() if isinstance(value, torch.Tensor)]
    assert tensors
    assert any(not torch.equal(first[key], later[key]) for key in tensors)


def test_only_process_0_fits_the_ood_experts_when_training_ends(monkeypatch) -> None:
    """Under torchrun the checkpoint is process 0's state dict, fitted on its share; the other
    processes' states are gathered and dropped, so they fit nothing: a fit there would cost
    their time (CPU seconds per class at MNIST's size) and fail the run on a share that lacks
    a class's examples."""
    # Process 1's side of the checkpoint's gathers: it sends its state and receives nothing.
    monkeypatch.setattr(torch.distributed, "gather_object", lambda *args, **kwargs: None)
    trainer = make_trainer()
    data, _ = tiny_labelled()
    process_1 = HybridTrainer(trainer.energy, trainer.sampler, trainer.chains, data,
                              torch.tensor([0, 1, 0, 1, 0, 2]),  # one of class 2
                              jem=JEMConfig(feature_rank=2), train=TrainConfig(n_iterations=1),
                              world=World(rank=1, size=2, device=torch.device("cpu")))
    process_1.iteration = 1  # trained to the end
    state = process_1.state_dict()
    assert state["iteration"] == 1
    assert not {"temperature", "feature_reference", "ood_weights"} & set(state)


def test_jem_shift_moves_the_data_batch() -> None:
    trainer = make_trainer(shift=1)
    batch = torch.tensor([0, 1, 2, 3])
    trainer.step([batch])
    assert trainer.last_data.shape == trainer.data[batch].shape
    assert not torch.equal(trainer.last_data, trainer.data[batch])


def test_fit_temperature_finds_the_temperature_the_labels_were_drawn_at() -> None:
    """Labels drawn from softmax(z / 2.5): the fitted T is 2.5 to the grid's step (1%) and the
    sampling's spread; logits already calibrated give T near 1."""
    z = torch.randn(20000, 10, generator=gen(0)) * 4
    for true_t in (2.5, 1.0, 0.4):
        labels = torch.multinomial(torch.softmax(z / true_t, 1), 1, generator=gen(1))[:, 0]
        assert fit_temperature(z, labels) == pytest.approx(true_t, rel=0.05)
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(z, labels[:3])
    # Every example right by a margin: sharper is always likelier, and the grid's end is said.
    right = torch.nn.functional.one_hot(labels, 10).double() * 5
    with pytest.warns(UserWarning, match=r"end of its search, T = 0.05, .*classified right"
                      ) as said:
        assert fit_temperature(right, labels) == pytest.approx(0.05, rel=0.01)
    assert said[0].filename == __file__  # the warning names its caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_temperature(z, labels)  # an inside minimum: no word
    # Every example wrong by a margin: flatter is always likelier, the grid's other end.
    with pytest.warns(UserWarning, match=r"end of its search, T = 20, .*far from calibrated"):
        assert fit_temperature(-right, labels) == pytest.approx(20, rel=0.01)
    # One example wrong by a hair among ones right by little: still the low end, but not
    # "every example classified right".
    close = right / 25
    close[0, (labels[0] + 1) % 10] = 0.201
    with pytest.warns(UserWarning, match=r"end of its search, T = 0.05, .*far from calibrated"):
        assert fit_temperature(close, labels) == pytest.approx(0.05, rel=0.01)
    for bad in (float("nan"), float("inf")):  # reported, not fitted to the grid's end
        z[5, 2] = bad
        with pytest.raises(ValueError, match="logits of 1 of 20000 examples are not finite"):
            fit_temperature(z, labels)


def test_fit_temperature_takes_int32_classes_and_names_labels_that_are_not_classes() -> None:
    """cross_entropy takes int64 and uint8 classes only: int32 ones (numpy's on some systems)
    failed with "expected target dtype to be Long or Byte, but got Int"; a class past K with
    its "Target 3 is out of bounds", naming no argument."""
    z = torch.randn(6, 3, generator=gen(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    assert fit_temperature(z, labels.int()) == fit_temperature(z, labels)
    for bad, problem in ((labels + 1, r"labels must be in 0 \.\. 2, got 1 \.\. 3"),
                         (labels.float(), r"labels must be integers, got torch.float32")):
        with pytest.raises(ValueError, match=problem):
            fit_temperature(z, bad)


def test_fit_temperature_refuses_no_examples_and_unbatched_logits() -> None:
    """No examples (every temperature's NLL would be NaN) and (N,) logits (labels (N,) match
    their first dimension) are refused by name, not fitted or left to torch's own error; the
    non-finite count is of examples, not of entries."""
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    z = torch.zeros(4, 3)
    z[1] = float("nan")  # one example, three entries
    with pytest.raises(ValueError, match="logits of 1 of 4 examples are not finite"):
        fit_temperature(z, torch.zeros(4, dtype=torch.long))


def test_fit_temperature_is_the_likelihoods_minimum_to_a_1_percent_step_from_1_20_to_20() -> None:
    """The grid runs from 1/20 to 20 in steps of 1%: the fitted T is within half a step of the
    NLL's minimum found by a fine search, near both ends of the range as in the middle."""
    z = torch.randn(4000, 10, generator=gen(0), dtype=F64) * 4

    def nll(labels: Tensor, log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), labels))

    for true_t in (15.0, 6.0, 3.0, 1.3, 0.07):
        labels = torch.multinomial(torch.softmax(z / true_t, 1), 1, generator=gen(1))[:, 0]
        low, high = math.log(1 / 20), math.log(20)
        for _ in range(100):  # ternary search: the NLL has one minimum in log T
            a, b = low + (high - low) / 3, high - (high - low) / 3
            low, high = (low, b) if nll(labels, a) < nll(labels, b) else (a, high)
        assert fit_temperature(z, labels) == pytest.approx(math.exp(low), rel=0.006), true_t


def test_the_last_checkpoint_holds_the_temperature_fitted_on_training_examples(
        tmp_path: Path) -> None:
    """Whatever the experts, the run's last checkpoint (only it) keeps the temperature of
    p(y | x), fitted to the trained network's logits of the training examples."""
    data = labelled_bars(tmp_path / "bars.npz", 24, varied=True)
    run = tmp_path / "run"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(run), *JEM_TINY,
                 "--set", "jem.reference_components=0", "--set", "jem.reference_rank=64",
                 "--set", "chains.init=uniform",
                 "--set", "jem.feature_rank=0", "--set", "train.checkpoint_every=1"]) == 0
    assert "temperature" not in torch.load(run / "checkpoint_previous.pt", weights_only=True)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "ood_weights" not in state  # no expert to weigh: the temperature all the same
    model = load_classifier(run, device="cpu")
    with np.load(data) as archive:
        x = torch.from_numpy(archive["x_train"]).float()[:, None] / 255 * 2 - 1  # model units
        y = torch.from_numpy(archive["y_train"]).long()
    with torch.no_grad():
        logits = model.energy.logits(x)
    assert model.temperature == state["temperature"] == fit_temperature(logits, y)


class StartsSampler:
    """A sampler whose chains stay at their starts, remembering each run's start and the
    constraint it was given."""

    def __init__(self) -> None:
        self.runs: list[tuple[Tensor, object]] = []

    def run(self, energy, x0, *, constraint=None, generator=None) -> Tensor:
        self.runs.append((x0, constraint))
        return x0


class TaggedConstraintBuffer(ReplayBuffer):
    """A replay buffer whose chains must keep a constraint (a tag stands for one)."""

    def constraint(self, x_pos: Tensor) -> object:
        return ("constraint of", len(x_pos))


def test_both_terms_chains_keep_the_chain_starts_constraint() -> None:
    sampler = StartsSampler()
    trainer = make_trainer(sampler=sampler, px_batch=3, pxy_weight=0.5)
    trainer.chains = TaggedConstraintBuffer(8, NoiseInit("uniform", 1.0))
    trainer.step([torch.arange(4)])
    assert [constraint for _, constraint in sampler.runs] == [("constraint of", 3)] * 2


def test_class_chains_of_a_noise_start_begin_at_its_noise_not_at_the_data() -> None:
    sampler = StartsSampler()
    trainer = make_trainer(sampler=sampler, px_weight=0.0, pxy_weight=1.0, px_batch=3)
    trainer.step([torch.arange(4)])
    (x0, _), = sampler.runs
    assert x0.shape == (3, 1, 4, 4) and x0.abs().max() <= 1
    assert not torch.equal(x0, trainer.data[:3])


def test_without_a_pxy_weight_no_class_chains_run() -> None:
    sampler = StartsSampler()
    stats = make_trainer(sampler=sampler, pxy_weight=0.0).step([torch.arange(4)])
    assert len(sampler.runs) == 1 and "e_pos_y" not in stats


def test_train_energy_l2_adds_its_penalty_to_jems_loss() -> None:
    losses = []
    for energy_l2 in (0.0, 0.1):
        trainer = make_trainer(sampler=StartsSampler())
        trainer.energy_l2 = energy_l2
        losses.append(trainer.step([torch.arange(4)])["loss"])
    assert losses[1] > losses[0]


class RecordingReplayBuffer(ReplayBuffer):
    """A replay buffer that remembers the examples and indices each chain start was asked for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[Tensor, Tensor]] = []

    def start(self, x_pos: Tensor, indices: Tensor, *, generator=None) -> Tensor:
        self.asked.append((x_pos.clone(), indices.clone()))
        return super().start(x_pos, indices, generator=generator)


def test_the_marginal_chains_start_from_the_first_px_batch_examples_of_the_batch() -> None:
    """The chain start gets the sub-batch's own examples and their dataset indices (a
    persistent chain is the example's own), not those of the batch's other examples."""
    trainer = make_trainer(px_batch=2)
    trainer.chains = RecordingReplayBuffer(8, NoiseInit("uniform", 1.0))
    batch = torch.tensor([4, 0, 2, 1])
    trainer.step([batch])
    (x_pos, indices), = trainer.chains.asked
    assert torch.equal(indices, torch.tensor([4, 0]))
    assert torch.equal(x_pos, trainer.data[[4, 0]])


def test_without_px_batch_the_contrastive_terms_take_the_whole_batch() -> None:
    trainer = make_trainer(px_batch=None)
    trainer.step([torch.arange(4)])
    assert trainer.px_batch == 4 and trainer.last_samples.shape == (4, 1, 4, 4)


def test_the_step_loss_weighs_each_contrastive_term_by_its_own_weight() -> None:
    """Without the energy penalty the loss is ``ce + px_weight (e_pos - e_neg) + pxy_weight
    (e_pos_y - e_neg_y)``, each term's weight from the jem section."""
    trainer = make_trainer(px_weight=0.25, pxy_weight=0.5)
    trainer.energy_l2 = 0.0
    stats = trainer.step([torch.arange(4)])
    expected = (stats["ce"] + 0.25 * (stats["e_pos"] - stats["e_neg"])
                + 0.5 * (stats["e_pos_y"] - stats["e_neg_y"]))
    assert stats["loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_the_runs_reference_fit_is_weighed_before_the_chains_fitted_start(monkeypatch) -> None:
    """With both pixel fits, eval ood scores with jem.reference_components' (the checkpoint's
    "reference"), so the weights are set on that one, not on the chains' start."""
    import stgconv.jem as jem

    weighed = []
    real = jem.fit_ood_weights

    def spy(*args, **kwargs):
        weighed.append(kwargs["reference"])
        return real(*args, **kwargs)

    monkeypatch.setattr(jem, "fit_ood_weights", spy)
    data, labels = tiny_labelled()
    reference = DataGaussian.fit(data, labels, rank=1)
    trainer = make_trainer(reference=reference, init=DataGaussian.fit(data, labels, rank=2))
    trainer.n_iterations = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained net: the temperature at its bound
        trainer.fit(1, progress=False)
        trainer.state_dict()
    assert weighed == [reference]


class HalvingWorld:
    """Stands in for the other processes: the mean over the ranks of each statistic and of
    each gradient is half this process's own."""

    def average(self, values: dict[str, float], *, weight: float) -> dict[str, float]:
        return {key: value / 2 for key, value in values.items()}

    def average_gradients(self, parameters, *, weight: float) -> None:
        for parameter in parameters:
            parameter.grad /= 2


def test_a_step_under_several_processes_takes_their_averaged_gradients_and_statistics() -> None:
    alone, shared = make_trainer(), make_trainer()
    shared.world = HalvingWorld()
    batch = [torch.arange(4)]
    stats, shared_stats = alone.compute_gradients(batch), shared.compute_gradients(batch)
    assert shared_stats == pytest.approx({key: value / 2 for key, value in stats.items()})
    for mine, averaged in zip(alone.energy.parameters(), shared.energy.parameters()):
        torch.testing.assert_close(averaged.grad, mine.grad / 2)
