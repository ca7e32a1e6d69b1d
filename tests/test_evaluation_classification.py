"""`stgconv eval classification`: the JSON contract (the trained descriptor's features against
random-init and raw-voxel controls, accuracies in [0, 1], per-class counts under ModelNet10
names) on tiny labelled shapes and a tiny trained model in tmp_path; unlabelled shapes exit 2."""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny import boxes_and_balls
from torch import nn

from stgconv.checks import FLOAT32_MAX
from stgconv.cli import main
from stgconv.energy.base import ConvNetEnergy
from stgconv.evaluation.classification import (balanced_subset, cross_validate,
                                               descriptor_features, eval_classification,
                                               fit_logistic, format_accuracy_table,
                                               stratified_folds, train_test_accuracy)


@pytest.fixture
def files(trained_voxel_run: dict[str, Path]) -> dict[str, Path]:
    """Tiny shapes (16^3, labelled box/ball) and a super-resolution model trained on them."""
    return trained_voxel_run


def test_eval_classification_json_contract(files, tmp_path) -> None:
    out = tmp_path / "cls.json"
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--folds", "2", "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert set(table["accuracy"]) == {"stgconv", "random_init", "raw_voxels"}
    assert all(0 <= a <= 1 for a in table["accuracy"].values())
    assert table["per_class_counts"] == {"bathtub": 6, "bed": 6}  # y < 10: ModelNet10 names
    assert table["n_shapes"] == 12 and table["n_test_shapes"] is None  # no test file
    # The run learnt (without labels) from these very shapes: said, as the controls did not.
    assert "the descriptor was trained (without labels) on the shapes it is scored on" in (
        table["protocol"])
    assert table["protocol"].startswith("stratified 2-fold cross-validation on ")  # kept too


def test_features_are_taken_a_chunk_of_shapes_at_a_time(files, tmp_path, monkeypatch) -> None:
    """Only FEATURE_CHUNK shapes are float32 at a time, the fitted and the test shapes alike
    (all of 20,000 32^3 grids at once took 5.2 GB), and the chunks change no accuracy."""
    import shutil

    import stgconv.evaluation.classification as classification

    test = shutil.copy(files["shapes"], tmp_path / "test.npz")
    sizes = []
    real = classification.descriptor_features

    def spy(energy, shapes, **settings):
        sizes.append(len(shapes))
        return real(energy, shapes, **settings)

    def accuracies(chunk: int) -> dict:
        monkeypatch.setattr(classification, "FEATURE_CHUNK", chunk)
        return classification.eval_classification(files["run"], files["shapes"], test=test,
                                                  device="cpu")["accuracy"]

    whole = accuracies(100)
    sizes.clear()
    monkeypatch.setattr(classification, "descriptor_features", spy)
    assert accuracies(5) == whole
    # Two energies (trained, untrained) over the 12 fitted shapes, then the 12 test shapes.
    assert sizes == [5, 5, 5, 5, 2, 2] * 2


def test_the_protocol_claims_no_more_shapes_per_class_than_the_file_has(files, tmp_path
                                                                         ) -> None:
    out = tmp_path / "cls.json"
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--folds", "2", "--per-class", "10", "--json", str(out),
                 "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["per_class_counts"] == {"bathtub": 6, "bed": 6}
    assert "up to 10 random shapes per class" in table["protocol"]


def test_unlabelled_shapes_exit_2_with_a_message(files, tmp_path, capsys) -> None:
    np.savez(tmp_path / "unlabelled.npz", X=np.zeros((4, 16, 16, 16), np.uint8))
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(tmp_path / "unlabelled.npz")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "labels" in err, err


def test_a_test_file_is_measured_after_fitting_on_the_shapes(files, tmp_path) -> None:
    """--test: fitted on --shapes, scored on the test file's shapes; its classes must be among
    the training ones."""
    shapes = np.load(files["shapes"])
    test = tmp_path / "test.npz"
    np.savez(test, X=shapes["X"][::2], y=shapes["y"][::2])
    out = tmp_path / "cls.json"
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--test", str(test), "--json", str(out),
                 "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert set(table["accuracy"]) == {"stgconv", "random_init", "raw_voxels"}
    assert all(0 <= a <= 1 for a in table["accuracy"].values())
    assert table["std"] == {"stgconv": None, "random_init": None, "raw_voxels": None}
    assert table["test"] == str(test) and "measured on the 6 shapes" in table["protocol"]
    assert table["n_shapes"] == 12 and table["n_test_shapes"] == 6
    assert "trained (without labels) on the shapes it is scored on" not in table["protocol"]
    assert "test file's shapes" in table["unit"] and "cross-validation" not in table["unit"]
    # The test shapes are half of the training shapes: raw voxels separate boxes from balls.
    assert table["accuracy"]["raw_voxels"] == 1.0
    other = tmp_path / "other.npz"
    np.savez(other, X=shapes["X"][:2], y=np.array([7, 7]))
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--test", str(other)]) == 2


def test_a_cache_is_fitted_on_its_train_split_and_tested_on_its_test_split(files, tmp_path,
                                                                           capsys) -> None:
    """A voxel cache holds both splits: as --shapes its train shapes, as --test its test
    shapes (it was fitted and measured on all of them, test shapes included); an .npz given
    as both would be measured on what it was fitted on, and is refused."""
    import h5py

    from stgconv.data.voxel import CACHE_FORMAT_VERSION

    shapes = np.load(files["shapes"])
    cache = tmp_path / "shapes.h5"
    with h5py.File(cache, "w") as h5:
        h5["voxels"], h5["label"] = shapes["X"], shapes["y"]
        h5["split"] = np.arange(len(shapes["y"])) % 3 == 0  # every third shape: test (1)
        h5.attrs["categories"] = ["bathtub", "bed"]
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
    out = tmp_path / "cls.json"
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(cache), "--test", str(cache), "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["n_shapes"] == 8 and table["n_test_shapes"] == 4
    assert "measured on the 4 shapes" in table["protocol"]
    assert "(its train split)" in table["protocol"] and "(its test split)" in table["protocol"]
    # A cache (its suffix in capitals too) whose test split is empty has nothing to measure.
    no_test = tmp_path / "no_test.H5"
    with h5py.File(no_test, "w") as h5:
        h5["voxels"], h5["label"] = shapes["X"], shapes["y"]
        h5["split"] = np.zeros(len(shapes["y"]), dtype=bool)
        h5.attrs["categories"] = ["bathtub", "bed"]
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(cache), "--test", str(no_test), "--device", "cpu"]) == 2
    assert f"{no_test} holds no test shapes" in capsys.readouterr().err
    # The same file by another path too.
    npz = Path(files["shapes"])
    for test in (npz, npz.parent / ".." / npz.parent.name / npz.name):
        capsys.readouterr()
        assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                     str(npz), "--test", str(test)]) == 2
        assert "would be measured on the shapes it was fitted on" in capsys.readouterr().err


def test_a_diverged_checkpoint_is_named_not_fitted(files, tmp_path, capsys) -> None:
    """A NaN weight made NaN features, and the logistic fit a traceback (exit 1); the weights
    are now named as the checkpoint loads."""
    from stgconv.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(files["run"])
    state["model"]["features.0.bias"][0] = float("nan")
    save_checkpoint(state, tmp_path / "diverged.pt")
    assert main(["eval", "classification", "--checkpoint", str(tmp_path / "diverged.pt"),
                 "--shapes", str(files["shapes"]), "--folds", "2", "--device", "cpu"]) == 2
    assert "the weights features.0.bias hold NaN or infinite values" in capsys.readouterr().err


def test_class_names_stored_in_one_file_only_must_agree_with_the_other_s_numbers(
        files, tmp_path, capsys) -> None:
    """A file without names reads its labels as ModelNet10's (0 bathtub, 1 bed, ...): beside
    a file whose stored names number the classes otherwise, matching by name swapped every
    label without a word (accuracy 1 - the right one). Refused; names that agree pass."""
    shapes = np.load(files["shapes"])
    named = {}
    for order in (["bed", "bathtub"], ["bathtub", "bed"]):
        named[order[0]] = tmp_path / f"{order[0]}_first.npz"
        np.savez(named[order[0]], X=shapes["X"], y=shapes["y"], categories=np.array(order))
    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, X=shapes["X"][::2], y=shapes["y"][::2])
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(named["bed"]), "--test", str(unnamed), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{named['bed']} names its classes and {unnamed} does not" in err, err
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(named["bathtub"]), "--test", str(unnamed), "--device", "cpu"]) == 0
    # Names that are no ModelNet10 class at all: the same question, not "classes the training
    # shapes lack: ['bathtub', 'bed']", names the unnamed file never gave.
    boxes = tmp_path / "boxes.npz"
    np.savez(boxes, X=shapes["X"], y=shapes["y"], categories=np.array(["box", "ball"]))
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(boxes), "--test", str(unnamed), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{boxes} names its classes and {unnamed} does not" in err, err


def test_a_damaged_test_file_is_named(files, tmp_path, capsys) -> None:
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(files["shapes"]), "--test", str(damaged)]) == 2
    assert str(damaged) in capsys.readouterr().err


@pytest.mark.parametrize("labels, args, message", [
    ("one class", [], "at least two classes"),
    ("one of a class", [],
     "5-fold cross-validation needs at least 5 shapes of every class; 'bed' has 1"),
    ("one of a class", ["--per-class", "1", "--folds", "2"], "needs at least 2 shapes"),
    ("both", ["--folds", "1"], "folds must be >= 2"),
    ("both", ["--l2", "-1"], "l2 must be finite and >= 0, got -1"),
])
def test_shapes_no_classifier_can_be_measured_on_exit_2(files, tmp_path, capsys, labels, args,
                                                        message) -> None:
    """Refused with the reason, not scored 0.0 or NaN (a class absent from a fold's training
    part) nor crashed in the optimiser (one class, a negative weight)."""
    shapes = np.load(files["shapes"])
    y = {"one class": np.zeros(12, np.int64), "one of a class": np.r_[np.zeros(11), 1],
         "both": shapes["y"]}[labels].astype(np.int64)
    path = tmp_path / "shapes.npz"
    np.savez(path, X=shapes["X"], y=y[:, None] if labels == "both" else y)  # (N, 1) labels too
    out = tmp_path / "cls.json"
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(files["run"]), "--shapes",
                 str(path), *args, "--json", str(out), "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_stratified_folds_balance_fold_sizes_across_classes() -> None:
    # Four classes of one example: were each class to start at fold 0, fold 0 would hold all.
    fold = stratified_folds(torch.tensor([0, 1, 2, 3]), 2, generator=gen(0))
    assert torch.bincount(fold, minlength=2).tolist() == [2, 2]
    # Two classes of two over four folds: the second class starts where the first stopped, at
    # fold 2, not one fold on (which fills fold 1 twice and leaves fold 3 empty).
    fold = stratified_folds(torch.tensor([0, 0, 1, 1]), 4, generator=gen(0))
    assert torch.bincount(fold, minlength=4).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("labels, l2, least_bias", [([0, 0, 1, 1], 1.0, 0.0),
                                                     ([0, 1, 1, 1], 10.0, 0.2)])
def test_fit_logistic_minimises_the_penalised_loss(labels: list[int], l2: float,
                                                   least_bias: float) -> None:
    """At the optimum the gradient of the penalised loss vanishes, in the weight and in the
    bias, which the penalty leaves out: three examples of class 1 to one of class 0 put the
    bias far from 0."""
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]], dtype=torch.float64)
    y = torch.tensor(labels)
    model = fit_logistic(x, y, 2, l2=l2)
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y) + 0.5 * l2 * model.weight.pow(2).sum()
    loss.backward()
    assert model.weight.grad.abs().max() < 1e-4 and model.weight.abs().max() < 1.0
    assert model.bias.grad.abs().max() < 1e-4
    assert model.bias.abs().max() >= least_bias


def test_fit_logistic_leaves_torchs_global_generator_alone() -> None:
    x, y = torch.randn(8, 3, generator=gen(0)), torch.arange(8) % 2
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fit_logistic(x, y, 2)
    assert torch.equal(torch.rand(3), expected)


def test_descriptor_features_never_pool_to_more_cells_than_the_map_has() -> None:
    # A 2^3 map asked for 4^3 cells keeps its 2^3 (not up-sampled to more cells than it has).
    torch.manual_seed(0)
    energy = ConvNetEnergy(spatial_dims=3, in_channels=1, layers=[[3, 4, 4, 0], [2, 1, 1, 0]],
                           head="sum", input_size=(8, 8, 8), reference_sigma=0.5)
    features = descriptor_features(energy, torch.rand(2, 1, 8, 8, 8, generator=gen(0)), cells=4)
    assert features.shape == (2, 3 * 2**3)
    # Its conv layers alone have no activation to take features from: named, not left to
    # torch.cat's "expected a non-empty list".
    energy.features = nn.Sequential(*[m for m in energy.features if isinstance(m, nn.Conv3d)])
    with pytest.raises(ValueError, match="no activation layer"):
        descriptor_features(energy, torch.rand(2, 1, 8, 8, 8, generator=gen(0)))
    # No cells: no features, fitted to the chance accuracy reported as the model's.
    for cells in (0, -1, 2.5):
        with pytest.raises(ValueError, match=rf"^cells must be an int >= 1, got {cells}$"):
            descriptor_features(energy, torch.rand(2, 1, 8, 8, 8), cells=cells)


def test_test_features_are_standardised_with_the_training_statistics() -> None:
    """Shifting every test feature by the same amount changes the prediction: the test set's
    own mean would standardise the shift away (a classifier must not see the test set)."""
    train = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[-0.5], [0.5]], dtype=torch.float64)
    assert train_test_accuracy(train, labels, test, torch.tensor([0, 1])) == 1.0
    assert train_test_accuracy(train, labels, test + 10, torch.tensor([1, 1])) == 1.0
    # Training features far from 0: the test features, standardised as they were, fall on
    # either side of the boundary (unstandardised, both far past it).
    assert train_test_accuracy(train + 10, labels, test + 10, torch.tensor([0, 1])) == 1.0


def test_the_test_accuracy_is_of_the_classifier_fitted_on_the_training_shapes() -> None:
    """Test labels that contradict the training ones score 0: a classifier fitted on the test
    set (which it then scores) would score 1."""
    train = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[-1.5], [1.5]], dtype=torch.float64)
    assert train_test_accuracy(train, labels, test, torch.tensor([1, 0])) == 0.0


def test_fewer_than_two_folds_or_no_shape_per_class_are_refused() -> None:
    """Counts given as floats (2.0) failed in Python's words ("'float' object cannot be
    interpreted as an integer"), naming neither."""
    labels = torch.tensor([0, 1, 0, 1])
    for folds in (1, 2.0):
        with pytest.raises(ValueError, match=f"folds must be an int >= 2, got {folds}"):
            stratified_folds(labels, folds, generator=gen(0))
    for per_class in (0, 2.5):
        with pytest.raises(ValueError, match=f"per_class must be an int >= 1, got {per_class}"):
            balanced_subset(labels, per_class, generator=gen(0))
    with pytest.raises(ValueError, match="stratified_folds: generator must be a torch.Generator"):
        stratified_folds(torch.tensor([0, 1, 0, 1]), 2, generator=0)


_FEATURES = torch.arange(12.0).reshape(6, 2)
_LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("features, labels, message", [
    # A user's own arrays, and features a network of theirs made NaN: each failed deep inside
    # (in torch.bincount, in L-BFGS "cannot be converted to type float", in the loss).
    (_FEATURES.numpy(), _LABELS, r"^features must be a torch.Tensor, got ndarray"),
    (_FEATURES, _LABELS.numpy(), r"^labels must be a torch.Tensor, got ndarray"),
    (_FEATURES.long(), _LABELS, r"^features must be float features \(N, F\) with N >= 1, got "
                                r"torch.int64 \(6, 2\)$"),
    (_FEATURES[:, 0], _LABELS, r"^features must be float features \(N, F\)"),
    (_FEATURES, _LABELS.double(), r"^labels must be integers, got torch.float64$"),
    (_FEATURES, _LABELS - 1, r"^labels must be classes >= 0, got -1$"),
    (_FEATURES.index_put((torch.tensor([2]),), torch.tensor(float("nan"))), _LABELS,
     r"^features hold 2 NaN or infinite values; refusing to classify them$"),
])
def test_cross_validation_refuses_features_and_labels_of_other_kinds(features, labels, message
                                                                     ) -> None:
    with pytest.raises(ValueError, match=message):
        cross_validate(features, labels, folds=3)


@pytest.mark.parametrize("test, test_labels, message", [
    (_FEATURES[:2, :1], _LABELS[:2], r"^test has 1 features and train 2; expected the same$"),
    (_FEATURES[:2].numpy(), _LABELS[:2], r"^test must be a torch.Tensor, got ndarray"),
    (_FEATURES[:2], _LABELS[:2].float(), r"^test_labels must be integers, got torch.float32$"),
    (_FEATURES[:2] * math.inf, _LABELS[:2], r"^test hold 4 NaN or infinite values"),
])
def test_the_test_accuracy_refuses_features_and_labels_of_other_kinds(test, test_labels, message
                                                                      ) -> None:
    with pytest.raises(ValueError, match=message):
        train_test_accuracy(_FEATURES, _LABELS, test, test_labels)


def test_a_json_path_that_is_a_folder_is_refused_before_the_features_are_taken(
        tmp_path, monkeypatch) -> None:
    """It failed after the work, with an IsADirectoryError."""
    module = importlib.import_module("stgconv.evaluation.classification")
    monkeypatch.setattr(module, "load_voxel_model", None)  # reached, a TypeError
    with pytest.raises(ValueError, match=rf"^json_path {re.escape(str(tmp_path))} is a folder, "
                                         "not a file$"):
        module.eval_classification("run", "shapes.npz", json_path=tmp_path)


def test_a_balanced_subset_is_a_random_draw_of_each_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 10)
    draws = {tuple(balanced_subset(labels, 3, generator=gen(seed)).tolist()) for seed in range(5)}
    assert len(draws) > 1
    assert all(sum(index < 10 for index in draw) == 3 for draw in draws)


def test_cross_validation_refuses_folds_some_class_cannot_fill() -> None:
    """Called directly, as eval classification does after its own check: a class with fewer
    examples than folds leaves a fold that tests it unfitted, or empty (accuracy NaN)."""
    features = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert 0 <= cross_validate(features, labels, folds=3)["accuracy"] <= 1
    # Labels that skip a number (0 and 2): no example of 1 is no class short of examples, and
    # the classifier has a row for every number up to the largest.
    assert 0 <= cross_validate(features, 2 * labels, folds=3)["accuracy"] <= 1
    with pytest.raises(ValueError, match="4-fold cross-validation needs at least 4 examples"):
        cross_validate(features, labels, folds=4)
    with pytest.raises(ValueError, match=r"labels must be \(6,\)"):
        cross_validate(features, labels[:, None], folds=3)
    # A count given as a string failed in the comparison's words, naming neither.
    with pytest.raises(ValueError, match=r"^folds must be an int >= 2, got '3'$"):
        cross_validate(features, labels, folds="3")


@pytest.mark.parametrize("y_kind, args, message", [
    ("two of a class", ["--folds", "3"], "3-fold cross-validation needs at least 3 shapes"),
    ("both", ["--folds", "2", "--l2", "inf"], "l2 must be finite and >= 0, got inf"),
    # Finite, but past float32's range: L-BFGS overflowed (a RuntimeError traceback).
    ("both", ["--folds", "2", "--l2", "1e39"], "at most 3.403e+38 (float32's largest), got 1e+39"),
])
def test_classification_refuses_too_few_shapes_per_fold_and_an_infinite_l2(
        trained_voxel_run, tmp_path: Path, capsys, y_kind: str, args: list, message: str) -> None:
    """k-fold cross-validation needs k shapes of every class (2 shapes of a class are too few
    for 3 folds), and the L2 weight must be finite in float32: refused with exit 2 and the
    reason."""
    shapes = np.load(trained_voxel_run["shapes"])
    y = np.r_[np.zeros(10), np.ones(2)] if y_kind == "two of a class" else shapes["y"]
    path = tmp_path / "shapes.npz"
    np.savez(path, X=shapes["X"], y=y.astype(np.int64))
    capsys.readouterr()
    assert main(["eval", "classification", "--checkpoint", str(trained_voxel_run["run"]),
                 "--shapes", str(path), *args, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("l2", [0.0, FLOAT32_MAX])
def test_an_l2_at_either_end_of_its_range_is_fitted(files, l2: float) -> None:
    # No penalty, or float32's largest (finite in float32: the weights start at 0).
    table = eval_classification(files["run"], files["shapes"], folds=2, l2=l2, device="cpu")
    assert all(0 <= a <= 1 for a in table["accuracy"].values())


def test_a_balanced_subset_comes_back_in_index_order() -> None:
    """balanced_subset returns the chosen indices sorted, so the subset keeps the file order."""
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    picks = balanced_subset(labels, 3, generator=torch.Generator().manual_seed(0))
    assert picks.tolist() == sorted(picks.tolist()) and len(picks) == 6
    assert torch.bincount(labels[picks]).tolist() == [3, 3]


@pytest.mark.parametrize("dims, conv, pool", [(3, nn.Conv3d, F.adaptive_max_pool3d),
                                               (2, nn.Conv2d, F.adaptive_max_pool2d)])
def test_descriptor_features_are_each_activations_max_over_its_cells(dims, conv, pool) -> None:
    """Every activation's map (after its non-linearity), max-pooled to ``cells`` cells a side,
    flattened and concatenated in layer order: of a volume's descriptor or an image's."""
    torch.manual_seed(0)
    # Three conv layers: two activations, whose features come in layer order.
    energy = ConvNetEnergy(spatial_dims=dims, in_channels=1,
                           layers=[[3, 4, 2, 1], [2, 3, 1, 1], [1, 2, 1, 0]], head="sum",
                           input_size=(8,) * dims, reference_sigma=0.5)
    shapes = torch.rand(2, 1, *(8,) * dims, generator=gen(0)) - 0.5
    expected, h = [], shapes
    with torch.no_grad():
        for module in energy.features:
            h = module(h)
            if not isinstance(module, conv):
                expected.append(pool(h, min(2, h.shape[-1])).flatten(1))
    torch.testing.assert_close(descriptor_features(energy, shapes, cells=2),
                               torch.cat(expected, dim=1))
    # Shapes of another dtype are read in the weights' dtype; the features are float32 always.
    features = descriptor_features(energy.double(), shapes.double(), cells=2)
    assert features.dtype == torch.float32
    torch.testing.assert_close(descriptor_features(energy, shapes, cells=2),
                               descriptor_features(energy.float(), shapes.double(), cells=2))


def test_stratified_folds_deal_each_class_in_a_random_order() -> None:
    labels = torch.tensor([0] * 6 + [1] * 6)
    draws = {tuple(stratified_folds(labels, 3, generator=gen(seed)).tolist()) for seed in range(5)}
    assert len(draws) > 1
    for draw in draws:  # and still two of each class in every fold
        fold = torch.tensor(draw)
        for label in (0, 1):
            assert torch.bincount(fold[labels == label], minlength=3).tolist() == [2, 2, 2]


def test_cross_validation_standardises_with_each_training_folds_own_statistics(
        monkeypatch) -> None:
    """Each fold's classifier is fitted on its training rows standardised by themselves
    (mean 0, std 1), and predicts its test rows standardised by those same statistics."""
    import stgconv.evaluation.classification as classification

    fitted, predicted = [], []
    real = classification.fit_logistic

    def spy(features, labels, n_classes, **settings):
        fitted.append(features.clone())
        model = real(features, labels, n_classes, **settings)
        model.register_forward_hook(lambda module, inputs, output: predicted.append(inputs[0]))
        return model

    monkeypatch.setattr(classification, "fit_logistic", spy)
    features = torch.randn(12, 3, generator=gen(0), dtype=torch.float64) * 5 + 3
    labels = torch.arange(12) % 2
    cross_validate(features, labels, folds=3, seed=0)
    fold = stratified_folds(labels, 3, generator=gen(0))
    assert len(fitted) == len(predicted) == 3
    for k in range(3):
        train, test = features[fold != k], features[fold == k]
        mean, std = train.mean(0), train.std(0)
        torch.testing.assert_close(fitted[k], (train - mean) / std)
        torch.testing.assert_close(predicted[k], (test - mean) / std)


def test_cross_validation_reports_the_mean_and_std_of_its_folds() -> None:
    features = torch.randn(30, 2, generator=gen(0))
    labels = (features[:, 0] + torch.randn(30, generator=gen(100)) > 0).long()
    result = cross_validate(features, labels, folds=3, seed=1)
    assert len(set(result["folds"])) == 3  # folds that differ: a median is not their mean
    assert result["accuracy"] == pytest.approx(float(np.mean(result["folds"])))
    assert result["std"] == pytest.approx(float(np.std(result["folds"])))
    # The seed deals the folds: another seed, other folds.
    assert cross_validate(features, labels, folds=3, seed=2)["folds"] != result["folds"]


def test_labels_that_skip_numbers_are_counted_under_their_own_names(
        trained_voxel_run, tmp_path) -> None:
    """Labels 3 and 7 (ModelNet10's desk and sofa) make a 2-way problem, counted by name."""
    shapes = np.load(trained_voxel_run["shapes"])
    keep = [0, 2, 4, 6, 8, 10, 1, 3, 5, 7]  # 6 boxes, 4 balls
    path = tmp_path / "shapes.npz"
    np.savez(path, X=shapes["X"][keep],
             y=np.where(shapes["y"][keep] == 0, 3, 7).astype(np.int64))
    out = tmp_path / "cls.json"
    assert main(["eval", "classification", "--checkpoint", str(trained_voxel_run["run"]),
                 "--shapes", str(path), "--folds", "2", "--json", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["per_class_counts"] == {"desk": 6, "sofa": 4}
    # Measured on a copy of the same shapes, their labels read in the same numbering: the
    # raw voxels of 10 boxes and balls are separable, every one classified right.
    copy = tmp_path / "copy.npz"
    copy.write_bytes(path.read_bytes())
    assert main(["eval", "classification", "--checkpoint", str(trained_voxel_run["run"]),
                 "--shapes", str(path), "--test", str(copy), "--json", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["accuracy"]["raw_voxels"] == 1.0
    # Labels past ModelNet10's (13 and 17) leave a file without names unnamed: a test file
    # that names its classes is then matched by label, as the docstring says.
    np.savez(path, X=shapes["X"][keep], y=np.where(shapes["y"][keep] == 0, 13, 17))
    np.savez(copy, X=shapes["X"][keep], y=np.where(shapes["y"][keep] == 0, 13, 17),
             categories=np.array([f"class {k}" for k in range(18)]))
    assert main(["eval", "classification", "--checkpoint", str(trained_voxel_run["run"]),
                 "--shapes", str(path), "--test", str(copy), "--json", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["accuracy"]["raw_voxels"] == 1.0


def described_shapes(monkeypatch) -> list[torch.Tensor]:
    """The shapes every later ``descriptor_features`` call is given, in call order."""
    import stgconv.evaluation.classification as classification

    inputs = []
    real = classification.descriptor_features

    def spy(energy, shapes, **settings):
        inputs.append(shapes.clone())
        return real(energy, shapes, **settings)

    monkeypatch.setattr(classification, "descriptor_features", spy)
    return inputs


def test_the_descriptor_sees_shapes_in_model_units_and_raw_voxels_are_pooled(
        trained_voxel_run, tmp_path, monkeypatch) -> None:
    """Both descriptors get occupancy minus the model's offset (its training mean), as it was
    trained on; the raw-voxel control is the 16^3 occupancy block-averaged 2x2x2 (8^3)."""
    import stgconv.evaluation.classification as classification
    from stgconv.modalities import VOXELS
    from stgconv.tasks.voxel import load_voxel_model

    inputs = described_shapes(monkeypatch)
    table = classification.eval_classification(trained_voxel_run["run"],
                                               trained_voxel_run["shapes"], folds=2,
                                               device="cpu")
    _, config, _ = load_voxel_model(trained_voxel_run["run"], device="cpu")
    offset = VOXELS.offset(config)
    assert offset != 0 and len(inputs) == 2
    truth = torch.from_numpy(np.load(trained_voxel_run["shapes"])["X"]).float()[:, None]
    for shapes in inputs:
        torch.testing.assert_close(shapes, truth - offset)
    assert table["n_features"]["raw_voxels"] == 8**3


def test_the_random_init_control_draws_its_weights_from_the_seed(trained_voxel_run,
                                                                 monkeypatch) -> None:
    """The untrained control's weights come from --seed, whatever torch's global generator
    holds: the same seed gives the same control, another seed another; so does the draw of
    --per-class shapes."""
    import stgconv.evaluation.classification as classification

    weights, drawn = [], []
    real = classification.descriptor_features

    def spy(energy, shapes, **settings):
        weights.append(next(energy.parameters()).detach().clone())
        drawn.append(shapes)
        return real(energy, shapes, **settings)

    monkeypatch.setattr(classification, "descriptor_features", spy)
    for global_seed, seed in ((1, 0), (2, 0), (1, 1)):
        torch.manual_seed(global_seed)
        table = classification.eval_classification(
            trained_voxel_run["run"], trained_voxel_run["shapes"], folds=2, per_class=3,
            seed=seed, device="cpu")
    random_init = weights[1::2]  # each run: the trained descriptor, then the control
    assert torch.equal(random_init[0], random_init[1])
    assert not torch.equal(random_init[0], random_init[2])
    assert torch.equal(drawn[0], drawn[2]) and not torch.equal(drawn[0], drawn[4])
    # The shapes drawn are the ones counted, not the file's 12.
    assert table["n_shapes"] == 6 and table["per_class_counts"] == {"bathtub": 3, "bed": 3}


def test_a_model_trained_on_a_split_was_trained_on_that_split_only(tmp_path) -> None:
    """The protocol's "trained on the shapes it is scored on" note: a model trained on a
    cache's train split saw that split (and not its test split); one trained on all saw both."""
    from types import SimpleNamespace

    from stgconv.evaluation.classification import _trained_on

    cache = tmp_path / "cache.h5"

    def config(split: str) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(path=str(cache), split=split))

    def shapes(split: str | None) -> SimpleNamespace:
        return SimpleNamespace(root=cache, split=split)

    assert _trained_on(config("train"), shapes("train"))
    assert not _trained_on(config("train"), shapes("test"))
    assert _trained_on(config("all"), shapes("test"))
    assert not _trained_on(config("all"), SimpleNamespace(root=tmp_path / "other.h5",
                                                          split="train"))
    # A file that records no splits was read whole, whatever split the run named.
    assert _trained_on(config("train"), shapes(None))


def test_a_relative_data_path_of_another_split_is_not_named_as_unknown(tmp_path,
                                                                       monkeypatch) -> None:
    """A run of a cache's train split, its data.path relative and naming no file from here,
    never saw the cache's test split: the splits tell, and the protocol said it "may have
    been trained" on the shapes scored."""
    from types import SimpleNamespace

    from stgconv.evaluation.classification import _trained_on

    config = SimpleNamespace(data=SimpleNamespace(path="cache.h5", split="train"))
    monkeypatch.chdir(tmp_path)  # no cache.h5 here
    elsewhere = tmp_path / "run_folder" / "cache.h5"
    assert _trained_on(config, SimpleNamespace(root=elsewhere, split="test")) is False
    assert _trained_on(config, SimpleNamespace(root=elsewhere, split="train")) is None


def test_a_relative_data_path_read_from_another_folder_is_named_as_unknown(
        files, tmp_path, monkeypatch) -> None:
    """A run trained with --data shapes.npz from its folder keeps data.path as typed: scored
    from another folder, that path named no file, and the protocol said nothing of training on
    the shapes scored; it now says it cannot tell. A relative path of another name is not
    the scored file."""
    from types import SimpleNamespace

    from stgconv.evaluation.classification import _trained_on

    def config(path: str) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(path=path, split="all"))

    scored = SimpleNamespace(root=files["shapes"], split=None)
    monkeypatch.chdir(tmp_path)
    assert _trained_on(config(files["shapes"].name), scored) is None
    assert _trained_on(config("other.npz"), scored) is False
    monkeypatch.chdir(files["shapes"].parent)  # the folder it was trained from
    assert _trained_on(config(files["shapes"].name), scored) is True
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = torch.load(files["run"] / "checkpoint.pt", weights_only=True)
    checkpoint["config"]["data"]["path"] = files["shapes"].name
    torch.save(checkpoint, run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    table = eval_classification(run, files["shapes"], folds=2, device="cpu")
    assert "may have been trained (without labels) on the shapes it is scored on: its run's " \
        f"data.path '{files['shapes'].name}' is relative" in table["protocol"]


def test_the_features_are_of_the_shapes_drawn_padded_to_the_models_side(trained_voxel_run,
                                                                          tmp_path,
                                                                          monkeypatch) -> None:
    """--per-class: the features fitted are those of the shapes drawn (each with its own
    label), not the file's first ones; 14^3 shapes, fitted and tested, are padded to the 16^3
    model's side as it was trained."""
    import stgconv.evaluation.classification as classification
    from stgconv.io.voxel import pad_to
    from stgconv.modalities import VOXELS
    from stgconv.tasks.voxel import load_voxel_model

    grids = boxes_and_balls(12, 14)[:, 0].numpy().astype(np.uint8)
    labels = np.arange(12) % 2
    np.savez(tmp_path / "shapes.npz", X=grids, y=labels)
    np.savez(tmp_path / "test.npz", X=grids[:4], y=labels[:4])
    inputs = described_shapes(monkeypatch)
    classification.eval_classification(trained_voxel_run["run"], tmp_path / "shapes.npz",
                                       test=tmp_path / "test.npz", per_class=3, seed=0,
                                       folds=1, device="cpu")  # no folds with a test file
    drawn = balanced_subset(torch.from_numpy(labels), 3, generator=torch.Generator().manual_seed(0))
    assert drawn.tolist() != list(range(6))  # the file's first 6 would pass unnoticed
    _, config, _ = load_voxel_model(trained_voxel_run["run"], device="cpu")
    padded = pad_to(torch.from_numpy(grids).float()[:, None], 16) - VOXELS.offset(config)
    assert len(inputs) == 4  # trained and untrained energy, fitted then tested shapes
    for shapes, expected in zip(inputs, [padded[drawn]] * 2 + [padded[:4]] * 2):
        torch.testing.assert_close(shapes, expected)


def test_non_finite_features_of_any_chunk_of_shapes_are_named(files, monkeypatch) -> None:
    """The check for a diverged descriptor covers every chunk of shapes, not only the first."""
    import stgconv.evaluation.classification as classification

    real = classification.descriptor_features

    def last_chunk_diverged(energy, shapes, **settings):
        features = real(energy, shapes, **settings)
        if len(shapes) == 2:  # the last of 12 shapes in chunks of 5
            features[-1, 0] = float("nan")
        return features

    monkeypatch.setattr(classification, "FEATURE_CHUNK", 5)
    monkeypatch.setattr(classification, "descriptor_features", last_chunk_diverged)
    with pytest.raises(ValueError, match=r"features of .* hold NaN or infinite values"):
        classification.eval_classification(files["run"], files["shapes"], folds=2, device="cpu")


def test_a_constant_feature_is_standardised_to_0_not_to_nan() -> None:
    """A feature that never changes (an empty corner of every grid) has std 0: it stays 0
    after standardising, and the classifier still separates on the others."""
    x = torch.tensor([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])[:, None]
    features = torch.cat([x, torch.ones(6, 1)], dim=1)
    labels = (x[:, 0] > 0).long()
    assert cross_validate(features, labels, folds=3)["accuracy"] == 1.0
    assert train_test_accuracy(features, labels, features, labels) == 1.0


@pytest.mark.parametrize("measured_on_a_test_file", [False, True])
def test_the_l2_and_seed_asked_for_reach_every_fit(files, tmp_path, monkeypatch,
                                                   measured_on_a_test_file: bool) -> None:
    """--l2 reaches every logistic fit, cross-validated or measured on --test; --seed deals
    the folds and is recorded; 2 shapes of each class are enough for 2 folds, and any number
    with a test file (no folds then)."""
    import shutil

    import stgconv.evaluation.classification as classification

    penalties, seeds = [], []
    real_fit, real_folds = classification.fit_logistic, classification.stratified_folds

    def fit(features, labels, n_classes, **settings):
        penalties.append(settings["l2"])
        return real_fit(features, labels, n_classes, **settings)

    def folds(labels, k, *, generator=None):
        seeds.append(generator.initial_seed())
        return real_folds(labels, k, generator=generator)

    monkeypatch.setattr(classification, "fit_logistic", fit)
    monkeypatch.setattr(classification, "stratified_folds", folds)
    if measured_on_a_test_file:
        test = shutil.copy(files["shapes"], tmp_path / "test.npz")
        settings = {"test": test}  # 5 folds by default: unread
    else:
        settings = {"folds": 2}
    table = eval_classification(files["run"], files["shapes"], per_class=2, l2=0.5, seed=3,
                                device="cpu", **settings)
    assert penalties == [0.5] * (3 if measured_on_a_test_file else 6)
    assert seeds == ([] if measured_on_a_test_file else [3] * 3)
    assert table["seed"] == 3 and table["n_shapes"] == 4
    assert ", L2 0.5," in table["protocol"]
    assert "raw_voxels = occupancy block-averaged 2x2x2" in table["protocol"]  # 16^3 grids


def test_two_files_that_name_their_classes_are_matched_by_name(files, tmp_path) -> None:
    """Both files store class names, numbered apart (bed is 0 in one, 1 in the other): each
    test label is read by its name, and the raw voxels classify every shape right."""
    shapes = np.load(files["shapes"])
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    np.savez(train, X=shapes["X"], y=shapes["y"], categories=np.array(["bed", "bathtub"]))
    np.savez(test, X=shapes["X"][::2], y=1 - shapes["y"][::2],
             categories=np.array(["bathtub", "bed"]))
    table = eval_classification(files["run"], train, test=test, device="cpu")
    assert table["accuracy"]["raw_voxels"] == 1.0


def test_files_eval_classification_cannot_read_are_named(files, tmp_path) -> None:
    """Grids larger than the model's side, a per-class count of 0, a cache that records no
    splits given as both --shapes and --test, and a damaged cache as --test: each a
    ValueError that says what is wrong."""
    import h5py

    from stgconv.data.voxel import CACHE_FORMAT_VERSION

    shapes = np.load(files["shapes"])
    large = tmp_path / "large.npz"
    np.savez(large, X=np.zeros((4, 18, 18, 18), np.uint8), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"holds 18\^3 grids; this model takes \(N, 16, 16, 16\)"):
        eval_classification(files["run"], large, folds=2, device="cpu")
    with pytest.raises(ValueError, match="per_class must be an int >= 1, got 0"):
        eval_classification(files["run"], files["shapes"], folds=2, per_class=0, device="cpu")
    with pytest.raises(ValueError, match="folds must be an int >= 2, got 2.0"):
        eval_classification(files["run"], files["shapes"], folds=2.0, device="cpu")
    # A string failed in math.isfinite's words ("must be real number, not str"), naming no l2.
    with pytest.raises(ValueError, match="l2 must be a number, got '0.1'$"):
        eval_classification(files["run"], files["shapes"], folds=2, l2="0.1", device="cpu")
    cache = tmp_path / "unsplit.h5"
    with h5py.File(cache, "w") as h5:
        h5["voxels"], h5["label"] = shapes["X"], shapes["y"]
        h5.attrs["categories"] = ["bathtub", "bed"]
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
    with pytest.raises(ValueError, match="would be measured on the shapes it was fitted on"):
        eval_classification(files["run"], cache, test=cache, device="cpu")
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=str(damaged)):
        eval_classification(files["run"], files["shapes"], test=damaged, device="cpu")


@pytest.mark.parametrize("test, first_line, stgconv_row", [
    (None, "classification of 12 shapes (u)", "stgconv           0.9167  0.0833     120"),
    ("t.npz", "classification of 12 shapes, fitted on them and measured on t.npz (u)",
     "stgconv           0.9167       -     120"),
])
def test_the_printed_table_has_a_row_of_each_features_numbers(test, first_line: str,
                                                              stgconv_row: str) -> None:
    std = None if test else 1 / 12
    table = {"n_shapes": 12, "unit": "u", "test": test,
             "accuracy": {"stgconv": 11 / 12, "raw_voxels": 1.0},
             "std": {"stgconv": std, "raw_voxels": None if test else 0.0},
             "n_features": {"stgconv": 120, "raw_voxels": 512}}
    assert format_accuracy_table(table).split("\n") == [
        first_line,
        "features        accuracy     std    dims",
        stgconv_row,
        "raw_voxels        1.0000" + ("       -" if test else "  0.0000") + "     512"]


def test_shapes_given_as_data_are_refused_by_name_before_the_model_loads(tmp_path) -> None:
    grids = np.zeros((2, 8, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="^shapes must be a file's path"):
        eval_classification(tmp_path / "no_run", grids)
    with pytest.raises(ValueError, match="^test must be a file's path"):
        eval_classification(tmp_path / "no_run", tmp_path / "shapes.npz", test=grids)
