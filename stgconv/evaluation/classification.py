"""Learned features for classification: a trained descriptor's conv layers + a linear classifier.

As in the 3D descriptor net paper (and the authors' ``train_classification.py``), a descriptor is
trained without labels, the responses of each of its conv layers (after the activation) are
max-pooled over a coarse grid of cells and concatenated, and a linear classifier is trained on
them. Here the classifier is multinomial logistic regression with an L2 penalty on standardized
features, fitted by L-BFGS in torch, and accuracy is measured by stratified k-fold
cross-validation (feature standardization is fitted on each training fold only).

Two controls run in the same call so the number means something: the same architecture with
freshly initialized weights (are the *learned* filters better than random ones?) and logistic
regression on the voxels themselves (block-averaged 2x2x2 on grids of an even side).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stgconv.build import seeded_weights
from stgconv.checks import (
    FLOAT32_MAX,
    as_int,
    check_classes,
    check_finite_number,
    check_generator,
    check_path,
    check_seed,
    check_tensor,
)
from stgconv.config import ExperimentConfig
from stgconv.data.voxel import CACHE_SUFFIXES, MODELNET10_CATEGORIES, VoxelShapes
from stgconv.energy import build_from_config
from stgconv.energy.base import ConvNetEnergy
from stgconv.evaluation.tensorboard import check_outputs
from stgconv.io.atomic import atomic_write_json
from stgconv.io.voxel import pad_to
from stgconv.modalities import VOXELS
from stgconv.modalities.voxel import grid_side
from stgconv.ops import block_down
from stgconv.tasks.voxel import load_voxel_model

UNIT = "accuracy (fraction correct) of stratified k-fold cross-validation, mean over folds"
TEST_UNIT = "accuracy (fraction correct) on the test file's shapes"

FEATURE_CHUNK = 256
"""Shapes made float32 at a time to take their features: all of them at once held every grid
as float32, twice while stacked (20,000 grids of 32^3: 5.2 GB), where only their features are
kept."""


@torch.no_grad()
def descriptor_features(energy: ConvNetEnergy, shapes: Tensor, *, cells: int = 4,
                        batch_size: int = 64) -> Tensor:
    """Max-pooled responses of every conv layer of ``energy``, concatenated.

    Args:
        energy: a :class:`ConvNetEnergy`; each activation's output ``(B, C_l, n, n, n)`` is
            max-pooled to ``(B, C_l, c, c, c)`` with ``c = min(cells, n)`` (adaptive pooling).
        shapes: ``(N, 1, D, D, D)`` in the model's units (occupancy minus its offset).

    Returns:
        ``(N, sum_l C_l * c_l^3)`` float32 on the CPU.

    Raises:
        ValueError: ``cells`` not an int >= 1 (0 gave no features, and eval classification
            reported the chance accuracy of a classifier of nothing as the model's).
    """
    cells = as_int(cells, "cells", minimum=1)
    param = next(energy.parameters())
    rows = []
    for batch in shapes.split(batch_size):
        h = batch.to(device=param.device, dtype=param.dtype)
        parts = []
        for module in energy.features:
            h = module(h)
            if not isinstance(module, (nn.Conv2d, nn.Conv3d)):
                side = min(cells, h.shape[-1])
                pool = F.adaptive_max_pool3d if h.dim() == 5 else F.adaptive_max_pool2d
                parts.append(pool(h, side).flatten(1))
        if not parts:
            raise ValueError("the energy has no activation layer to take features from")
        rows.append(torch.cat(parts, dim=1).float().cpu())
    return torch.cat(rows)


def stratified_folds(labels: Tensor, folds: int, *, generator: torch.Generator | None = None
                     ) -> Tensor:
    """Fold index ``(N,)`` in ``[0, folds)`` of each of ``labels`` ``(N,)``: each class dealt
    round-robin over the folds in a random order, so every fold holds about ``1/folds`` of
    each class."""
    folds = as_int(folds, "folds", minimum=2)  # 2.0 failed in Python's words, not named
    check_generator(generator, "stratified_folds")
    fold = torch.empty(len(labels), dtype=torch.long)
    offset = 0
    for label in labels.unique():
        members = (labels == label).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        fold[members] = (torch.arange(len(members)) + offset) % folds
        offset += len(members)  # start the next class where this one stopped: balanced sizes
    return fold


def fit_logistic(features: Tensor, labels: Tensor, n_classes: int, *, l2: float = 1e-2,
                 max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression: minimise ``CE + l2 * |W|^2 / 2`` by L-BFGS.

    Args:
        features: ``(N, F)`` (standardize them first).
        labels: ``(N,)`` int64 in ``[0, n_classes)``.

    Returns:
        The fitted ``nn.Linear(F, n_classes)``.
    """
    # skip_init: nn.Linear's own initialisation would draw from torch's global generator,
    # only to be overwritten.
    model = nn.utils.skip_init(nn.Linear, features.shape[1], n_classes, dtype=features.dtype,
                               device=features.device)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(features), labels) + 0.5 * l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


def cross_validate(features: Tensor, labels: Tensor, *, folds: int = 5, l2: float = 1e-2,
                   seed: int = 0) -> dict[str, Any]:
    """Stratified k-fold accuracy of :func:`fit_logistic` on ``features`` ``(N, F)`` with
    ``labels`` ``(N,)``.

    Returns:
        ``{"accuracy": mean over folds, "std": their std, "folds": [per-fold accuracy]}``.
    """
    seed = check_seed(seed)
    folds = as_int(folds, "folds", minimum=2)  # a string failed in the comparison below
    _check_examples(features, labels, "features", "labels")
    counts = torch.bincount(labels)
    if int(counts[counts > 0].min()) < folds:  # a fold would test a class it never fitted
        raise ValueError(f"{folds}-fold cross-validation needs at least {folds} examples of "
                         f"every class; one has {int(counts[counts > 0].min())}")
    fold = stratified_folds(labels.cpu(), folds, generator=torch.Generator().manual_seed(seed)
                            ).to(labels.device)
    n_classes = int(labels.max()) + 1
    accuracies = []
    for k in range(folds):
        train, test = fold != k, fold == k
        mean = features[train].mean(0)
        std = features[train].std(0).clamp(min=1e-6)  # constant features (empty corners) stay 0
        model = fit_logistic((features[train] - mean) / std, labels[train], n_classes, l2=l2)
        with torch.no_grad():
            predicted = model((features[test] - mean) / std).argmax(1)
        accuracies.append((predicted == labels[test]).double().mean().item())
    return {"accuracy": float(np.mean(accuracies)), "std": float(np.std(accuracies)),
            "folds": accuracies}


def train_test_accuracy(train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor,
                        *, l2: float = 1e-2) -> float:
    """Accuracy on ``test`` ``(M, F)``, ``test_labels`` ``(M,)``, of :func:`fit_logistic`
    fitted on ``train`` ``(N, F)``, ``train_labels`` ``(N,)`` (standardized with the training
    features' statistics)."""
    _check_examples(train, train_labels, "train", "train_labels")
    _check_examples(test, test_labels, "test", "test_labels")
    if test.shape[1] != train.shape[1]:
        raise ValueError(f"test has {test.shape[1]} features and train {train.shape[1]}; "
                         "expected the same")
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    model = fit_logistic((train - mean) / std, train_labels, n_classes, l2=l2)
    with torch.no_grad():
        predicted = model((test - mean) / std).argmax(1)
    return (predicted == test_labels).double().mean().item()


def _check_examples(features: Tensor, labels: Tensor, name: str, labels_name: str) -> None:
    """``ValueError`` unless ``features`` are finite floats ``(N, F)`` and ``labels`` classes
    ``(N,)`` (integers >= 0). A user's own arrays failed deep inside (numpy: in
    ``torch.bincount``; NaN: L-BFGS's "value cannot be converted to type float without
    overflow"; float labels: the loss's target dtype)."""
    check_tensor(features, name)
    check_tensor(labels, labels_name)
    if features.dim() != 2 or not features.is_floating_point() or len(features) == 0:
        raise ValueError(f"{name} must be float features (N, F) with N >= 1, got "
                         f"{features.dtype} {tuple(features.shape)}")
    if labels.shape != features.shape[:1]:
        raise ValueError(f"{labels_name} must be ({len(features)},) for {name} "
                         f"{tuple(features.shape)}, got {tuple(labels.shape)}")
    check_classes(labels, labels_name)
    if int(labels.min()) < 0:
        raise ValueError(f"{labels_name} must be classes >= 0, got {int(labels.min())}")
    bad = int((~torch.isfinite(features)).sum())
    if bad:
        raise ValueError(f"{name} hold {bad} NaN or infinite values; refusing to classify them")


def balanced_subset(labels: Tensor, per_class: int, *, generator: torch.Generator | None = None
                    ) -> Tensor:
    """Sorted indices ``(M,)`` of up to ``per_class`` random examples of each class of
    ``labels`` ``(N,)``."""
    per_class = as_int(per_class, "per_class", minimum=1)
    check_generator(generator, "balanced_subset")
    picks = []
    for label in labels.unique():
        members = (labels == label).nonzero().squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


def eval_classification(
    checkpoint: str | Path, shapes: str | Path, *, test: str | Path | None = None,
    folds: int = 5, per_class: int | None = None, l2: float = 1e-2, cells: int = 4,
    seed: int = 0, json_path: str | Path | None = None, device: str = "auto",
) -> dict[str, Any]:
    """Accuracy of a linear classifier on the descriptor's features: cross-validated on
    ``shapes``, or with ``test`` fitted on ``shapes`` and measured on ``test``'s shapes.

    ``shapes`` (and ``test``) is an ``.npz`` with ``X`` ``(N, R, R, R)`` and labels ``y``, or an
    HDF5 cache, of which ``shapes`` reads the train split and ``test`` the test split (the same
    cache may be both; an ``.npz`` may not); grids smaller than the model's are zero-padded,
    centred (ModelNet10's 30^3 -> 32^3). ``test``'s classes must be among ``shapes``' (matched
    by name when both files name their classes, else by label); ``std`` and ``folds`` are then
    ``None``.

    Returns (and writes to ``json_path``) ``{"unit", "accuracy": {"stgconv": a,
    "random_init": a, "raw_voxels": a}, "std": {...}, "folds": {...}, "n_shapes",
    "per_class_counts", "n_test_shapes" (``None`` without ``test``), "n_features", "protocol",
    "seconds", ...}``.
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    # Past float32's largest value the penalty is infinite in the classifier's float32
    # features, and L-BFGS failed with a traceback.
    check_finite_number(l2, "l2")
    if l2 > FLOAT32_MAX:
        raise ValueError(f"l2 must be a finite number >= 0 and at most {FLOAT32_MAX:.4g} "
                         f"(float32's largest), got {l2!r}")
    if test is None:
        folds = as_int(folds, "folds", minimum=2)
    check_path(shapes, "shapes")  # before the model is loaded
    if test is not None:
        check_path(test, "test")
    check_outputs(json_path=json_path)
    energy, config, state = load_voxel_model(checkpoint, device=device)
    size = grid_side(energy)
    same_file = test is not None and Path(test).resolve() == Path(shapes).resolve()
    if same_file and not _has_splits(test):
        raise ValueError(f"--test {test} is --shapes: the classifier would be measured on the "
                         "shapes it was fitted on")
    dataset = _labelled_shapes(shapes, size, split="train")
    labels = torch.from_numpy(dataset.targets)
    generator = torch.Generator().manual_seed(seed)
    rows = (balanced_subset(labels, per_class, generator=generator) if per_class is not None
            else torch.arange(len(labels)))
    labels = labels[rows]
    # Relabel to 0..K-1 so a subset of classes still gives a K-way problem.
    classes, labels = labels.unique(return_inverse=True)
    _check_class_counts(shapes, labels, classes, dataset.classes, None if test else folds)
    # The untrained control's weights come from the seed.
    with seeded_weights(seed):
        random_energy = build_from_config(state["model_config"]).to(
            next(energy.parameters()).device)
    offset = VOXELS.offset(config)
    fit_on = next(energy.parameters()).device
    labels = labels.to(fit_on)

    def features_of(data: VoxelShapes, kept: Tensor) -> dict[str, Tensor]:
        """The features of the shapes ``kept`` (their indices) of ``data``."""
        chunks = []
        for chunk in kept.split(FEATURE_CHUNK):
            grids = pad_to(torch.stack([data[int(i)][0] for i in chunk]), size)
            chunks.append({
                "stgconv": descriptor_features(energy, grids - offset, cells=cells),
                "random_init": descriptor_features(random_energy, grids - offset, cells=cells),
                # Occupancy pooled 2x2x2 (16^3 = 4,096 values for 32^3 grids): about as many
                # dimensions as the small descriptor's features, and 8x cheaper to fit.
                "raw_voxels": (block_down(grids, (2, 2, 2)) if size % 2 == 0
                               else grids).flatten(1),
            })
        features = {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
        if not torch.isfinite(features["stgconv"]).all():
            raise ValueError(f"the features of {checkpoint} hold NaN or infinite values: its "
                             "weights diverged (train it again from its last good checkpoint)")
        # The linear classifiers are fitted where the model runs: on a GPU, L-BFGS over the
        # paper network's 19,200 features is seconds, on two CPU cores minutes.
        return {name: f.to(fit_on) for name, f in features.items()}

    features = features_of(dataset, rows)
    names = [dataset.classes[int(c)] if dataset.classes else str(int(c)) for c in classes]
    n_test_shapes = None
    if test is None:
        results = {name: cross_validate(f, labels, folds=folds, l2=l2, seed=seed)
                   for name, f in features.items()}
        protocol = f"stratified {folds}-fold cross-validation on {_part(dataset)}"
        scored = dataset
    else:
        test_labels, scored = _test_set(test, dataset, classes, size)
        test_labels = test_labels.to(fit_on)
        n_test_shapes = len(test_labels)
        test_features = features_of(scored, torch.arange(len(scored)))
        results = {name: {"accuracy": train_test_accuracy(f, labels, test_features[name],
                                                          test_labels, l2=l2),
                          "std": None, "folds": None}
                   for name, f in features.items()}
        protocol = (f"fitted on {_part(dataset)}, measured on the {len(test_labels)} shapes "
                    f"of {_part(scored)}")
    trained_on = _trained_on(config, scored)
    if trained_on:
        # Not hidden in the number: random_init and raw_voxels never saw these shapes.
        protocol += ("; the descriptor was trained (without labels) on the shapes it is "
                     "scored on: give --test held-out shapes for an unseen score")
    elif trained_on is None:
        protocol += (f"; the descriptor may have been trained (without labels) on the shapes "
                     f"it is scored on: its run's data.path {config.data.path!r} is relative "
                     "to the folder it was trained from and names no file from this one "
                     "(run from that folder to tell)")
    table = {
        "task": "classification",
        "unit": UNIT if test is None else TEST_UNIT,
        "accuracy": {name: r["accuracy"] for name, r in results.items()},
        "std": {name: r["std"] for name, r in results.items()},
        "folds": {name: r["folds"] for name, r in results.items()},
        "n_features": {name: int(f.shape[1]) for name, f in features.items()},
        "n_shapes": len(labels),
        "per_class_counts": dict(zip(names, torch.bincount(labels).tolist())),
        "n_test_shapes": n_test_shapes,
        "protocol": (protocol
                     + (f", up to {per_class} random shapes per class" if per_class else "")
                     + f"; features: conv-layer responses max-pooled to {cells}^3 cells; "
                     f"multinomial logistic regression, L2 {l2}, standardized features; "
                     f"random_init = the same architecture untrained; raw_voxels = occupancy"
                     + (" block-averaged 2x2x2" if size % 2 == 0 else
                        f" as it is (an odd side, {size}, has no 2x2x2 blocks)")),
        "seed": seed, "checkpoint": str(checkpoint), "shapes": str(shapes),
        "test": None if test is None else str(test),
        "seconds": time.perf_counter() - started,
    }
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def _labelled_shapes(path: str | Path, size: int, *, split: str) -> VoxelShapes:
    """The shapes of ``path``, checked to fit a model of side ``size`` and to carry labels: of
    a cache that records splits, its ``split`` part only (an ``.npz`` holds one set)."""
    dataset = VoxelShapes(path, split=split if _has_splits(path) else None)
    if len(dataset) == 0:
        raise ValueError(f"{path} holds no {split} shapes")
    if dataset.resolution > size:
        raise ValueError(f"{path} holds {dataset.resolution}^3 grids; this model takes "
                         f"(N, {size}, {size}, {size}) (smaller grids are padded)")
    if (dataset.targets < 0).any():
        raise ValueError(f"{path} has no labels y; classification needs them")
    return dataset


def _has_splits(path: str | Path) -> bool:
    """Whether ``path`` is a cache that records each shape's split."""
    if Path(path).suffix.lower() not in CACHE_SUFFIXES or not Path(path).is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return "split" in h5
    except OSError:
        return False  # VoxelShapes names what is wrong with it


def _trained_on(config: ExperimentConfig, shapes: VoxelShapes) -> bool | None:
    """Whether the model's training data held ``shapes`` (a file, or its split); ``None`` where
    it cannot be told: the run's ``data.split`` holds the scored split, and its ``data.path``
    is relative (kept as typed, from the folder the run was trained from), names no file from
    the current folder, and has the scored file's name. Resolved from here, it named another
    file, and a model scored on its own training shapes from another folder was reported
    without the note that says so."""
    data = config.data
    # Told by the split alone wherever the path is: a run of the train split never saw the
    # test split, however its data.path reads from here.
    if data.path is None or not (shapes.split is None or data.split in ("all", shapes.split)):
        return False
    path = Path(data.path)
    if not path.is_absolute() and not path.exists():
        return None if path.name == shapes.root.name else False
    return path.resolve() == shapes.root.resolve()


def _part(shapes: VoxelShapes) -> str:
    return f"{shapes.root}" + (f" (its {shapes.split} split)" if shapes.split else "")


def _check_class_counts(path: str | Path, labels: Tensor, classes: Tensor,
                        names: list[str] | None, folds: int | None) -> None:
    """Refuse shapes a linear classifier cannot be measured on: fewer than two classes, or,
    for cross-validation (``folds``), a class with fewer shapes than folds (some fold would
    test a class its training part lacks, or be empty, and score it 0 or NaN)."""
    counts = torch.bincount(labels, minlength=len(classes))
    named = [names[int(c)] if names else str(int(c)) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"{path}: classification needs shapes of at least two classes, got "
                         f"{len(labels)} of class {named[0] if named else 'none'}")
    if folds is not None and int(counts.min()) < folds:
        smallest = int(counts.argmin())
        raise ValueError(f"{path}: {folds}-fold cross-validation needs at least {folds} shapes "
                         f"of every class; {named[smallest]!r} has {int(counts[smallest])} "
                         f"(fewer --folds, more shapes per class, or --test FILE)")


def _test_set(path: str | Path, train: VoxelShapes, classes: Tensor, size: int
              ) -> tuple[Tensor, VoxelShapes]:
    """The labels of the test shapes of ``path`` in the training set's 0..K-1 numbering
    (``classes``: the training labels kept, in that order), and the shapes, checked to fit a
    model of side ``size``."""
    dataset = _labelled_shapes(path, size, split="test")
    raw = torch.from_numpy(dataset.targets)
    if dataset.classes and train.classes:  # by name: the two files may number them apart
        index = {name: i for i, name in enumerate(train.classes)}
        unknown = sorted({dataset.classes[int(y)] for y in raw} - set(index))
        # One file's names are only ModelNet10's by convention: where they are not the other's
        # stored names, or number them otherwise, either reading could be the wrong one.
        conventional = dataset.classes_stored != train.classes_stored
        if unknown and not conventional:
            raise ValueError(f"{path} has classes the training shapes lack: {unknown}")
        by_name = raw if unknown else torch.tensor([index[dataset.classes[int(y)]] for y in raw])
        if conventional and (unknown or not torch.equal(by_name, raw)):
            named, unnamed = ((path, train.root) if dataset.classes_stored
                              else (train.root, path))
            convention = ", ".join(f"{y} {name}" for y, name in
                                   enumerate(MODELNET10_CATEGORIES[:3]))
            raise ValueError(f"{named} names its classes and {unnamed} does not, so its labels "
                             f"read as ModelNet10's ({convention}, ...), and the two files "
                             f"disagree on what a label means: store the class names in "
                             f"{unnamed} as an array 'categories'")
        raw = by_name
    position = {int(c): k for k, c in enumerate(classes)}
    missing = sorted({int(y) for y in raw} - set(position))
    if missing:
        raise ValueError(f"{path} has labels the training shapes (as selected) lack: {missing}")
    return torch.tensor([position[int(y)] for y in raw]), dataset


def format_accuracy_table(table: dict[str, Any]) -> str:
    measured = ("" if table.get("test") is None
                else f", fitted on them and measured on {table['test']}")
    lines = [f"classification of {table['n_shapes']} shapes{measured} ({table['unit']})",
             f"{'features':<14}{'accuracy':>10}{'std':>8}{'dims':>8}"]
    for name, accuracy in table["accuracy"].items():
        std = table["std"][name]
        lines.append(f"{name:<14}{accuracy:>10.4f}{'-' if std is None else f'{std:.4f}':>8}"
                     f"{table['n_features'][name]:>8}")
    return "\n".join(lines)


__all__ = ["descriptor_features", "stratified_folds", "fit_logistic", "cross_validate",
           "train_test_accuracy", "balanced_subset", "eval_classification",
           "format_accuracy_table"]
