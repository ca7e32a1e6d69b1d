"""Out-of-distribution detection with a classifier read as an energy (JEM; ``stgconv eval ood``).

Each score is higher for inputs the model takes for its own data; the table gives each score's
AUROC of telling the inliers from the outliers (:func:`stgconv.metrics.auroc`), and with inlier
labels the classifier's accuracy and expected calibration error (15 bins) on the inliers.

- ``"stgconv"``, the recommended score: ``logsumexp_y f(x)[y]``, which orders inputs as
  ``log p(x) = -E(x)`` does (it is ``-E(x)``, or ``-E(x) / s`` for a model with a learnt
  density scale ``s > 0``). A JEM model was trained to make it high on the data and low on its
  own samples; a plain classifier was not, which is what the JEM benchmark shows.
- ``"max_softmax"``: ``max_y p(y | x)``, the classic classifier baseline (Hendrycks & Gimpel,
  ICLR 2017).
- ``"max_logit"``: ``max_y f(x)[y]``, the largest logit (``-min_y E(x, y)`` in JEM's own form).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stgconv.checkpoint import load_model
from stgconv.checks import reading
from stgconv.config import ExperimentConfig
from stgconv.data.image import load_npz_images, load_npz_labels
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.io.atomic import atomic_write_json
from stgconv.metrics import auroc, expected_calibration_error

SCORES = ("stgconv", "max_softmax", "max_logit")
"""The scores :func:`ood_scores` returns, the recommended one first."""

ECE_BINS = 15


def load_classifier(checkpoint: str | Path, *, device: str = "auto"
                    ) -> tuple[ClassifierEnergy, ExperimentConfig]:
    """The trained classifier energy (eval mode, on ``device``) and its config.

    Raises:
        ValueError: the checkpoint holds a model that is not a classifier (the descriptors'
            energies have no classes to score).
    """
    energy, config, _ = load_model(checkpoint, device=device)
    if not isinstance(energy, ClassifierEnergy):
        raise ValueError(f"{checkpoint} holds a {config.model.arch!r} energy, not a classifier: "
                         "eval ood needs a classifier model (model.arch digit_classifier or "
                         "wide_resnet, trained with a jem section)")
    return energy, config


@torch.no_grad()
def classifier_logits(energy: ClassifierEnergy, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Logits ``(N, K)`` (float64, CPU) of images ``x`` ``(N, C, H, W)``, ``batch_size`` at a time.

    Raises:
        FloatingPointError: a non-finite logit (reported, never scored).
    """
    param = next(energy.parameters())
    logits = torch.cat([energy.logits(batch.to(param.device, param.dtype)).double().cpu()
                        for batch in x.split(batch_size)])
    if not torch.isfinite(logits).all():
        raise FloatingPointError(f"the classifier gave non-finite logits for "
                                 f"{int((~torch.isfinite(logits)).any(1).sum())} of {len(x)} "
                                 f"images")
    return logits


def ood_scores(logits: Tensor) -> dict[str, Tensor]:
    """Every score of :data:`SCORES` ``(N,)`` from logits ``(N, K)``; higher = more like the
    training data."""
    return {"stgconv": torch.logsumexp(logits, dim=1),
            "max_softmax": torch.softmax(logits, dim=1).max(dim=1).values,
            "max_logit": logits.max(dim=1).values}


def _test_labels(path: str | Path) -> Tensor | None:
    """``y_test`` of the ``.npz`` at ``path``, or ``None`` when it has none."""
    with np.load(path, allow_pickle=False) as archive:
        has_labels = "y_test" in archive.files
    return load_npz_labels(path, key="y_test", images="x_test") if has_labels else None


def eval_ood(checkpoint: str | Path, inliers: str | Path, outliers: str | Path, *,
             json_path: str | Path | None = None, device: str = "auto", batch_size: int = 500
             ) -> dict[str, Any]:
    """Out-of-distribution detection by a classifier model's scores (module docstring).

    ``inliers`` and ``outliers`` are ``.npz`` files with ``x_test``, uint8 ``(N, H, W)`` or
    ``(N, H, W, C)`` (C 1 or 3), converted to the model's input as its training data were
    (:func:`stgconv.data.image.load_npz_images`: channels repeated or averaged, sides resized).
    The inliers' optional ``y_test`` ``(N,)`` (classes ``0 .. K - 1``) adds the accuracy and
    ECE; the outliers' labels are not read.

    Returns (and writes to ``json_path``) ``{"auroc": {"stgconv": a, "max_softmax": b,
    "max_logit": c}, "accuracy": acc, "ece": e}``, ``accuracy`` and ``ece`` ``None`` (JSON
    ``null``) without inlier labels, plus ``"n_inliers"``, ``"n_outliers"``, ``"seconds"``.

    Raises:
        ValueError: a missing or unreadable file, no ``x_test``, images of another type or
            shape, no images, labels that do not match the images or the model's classes, or a
            checkpoint that is not a classifier.
        FloatingPointError: non-finite logits.
    """
    started = time.perf_counter()
    energy, config = load_classifier(checkpoint, device=device)
    n_classes = config.model.n_classes
    images = {}
    for name, path in (("inliers", inliers), ("outliers", outliers)):
        with reading(path):
            images[name] = load_npz_images(path, key="x_test", size=config.data.size,
                                           channels=config.data.channels)
    with reading(inliers):
        labels = _test_labels(inliers)
    if labels is not None and labels.max() >= n_classes:
        raise ValueError(f"{inliers}: y_test has class {int(labels.max())}, but the model has "
                         f"{n_classes} classes (0 .. {n_classes - 1})")
    logits = {name: classifier_logits(energy, x, batch_size=batch_size)
              for name, x in images.items()}
    scores = {name: ood_scores(value) for name, value in logits.items()}
    table: dict[str, Any] = {
        "auroc": {score: auroc(scores["inliers"][score], scores["outliers"][score])
                  for score in SCORES},
        "accuracy": None, "ece": None,
        "n_inliers": len(images["inliers"]), "n_outliers": len(images["outliers"]),
    }
    if labels is not None:
        probabilities = torch.softmax(logits["inliers"], dim=1)
        table["accuracy"] = float((probabilities.argmax(1) == labels).double().mean())
        table["ece"] = expected_calibration_error(probabilities, labels, bins=ECE_BINS)
    table["seconds"] = time.perf_counter() - started
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def format_ood_table(table: dict[str, Any]) -> str:
    """The table of :func:`eval_ood` as text."""
    lines = [f"OOD detection: {table['n_inliers']} inliers vs {table['n_outliers']} outliers "
             f"(AUROC, 1 = separated; 'stgconv' = logsumexp of the logits, ordered as -E(x))",
             f"{'score':<14}{'AUROC':>8}"]
    lines += [f"{name:<14}{value:>8.4f}" for name, value in table["auroc"].items()]
    if table["accuracy"] is not None:
        lines.append(f"inliers: accuracy {table['accuracy']:.4f}, ECE ({ECE_BINS} bins) "
                     f"{table['ece']:.4f}")
    else:
        lines.append("inliers: no y_test, so no accuracy or ECE")
    return "\n".join(lines)


__all__ = ["SCORES", "load_classifier", "classifier_logits", "ood_scores", "eval_ood",
           "format_ood_table"]
