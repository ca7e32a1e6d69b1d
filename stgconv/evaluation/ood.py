"""Out-of-distribution detection with a classifier read as an energy (JEM; ``stgconv eval ood``).

Each score is higher for inputs the model takes for its own data; the table gives each score's
AUROC of telling the inliers from the outliers (:func:`stgconv.metrics.auroc`), and with inlier
labels the classifier's accuracy and expected calibration error (15 bins) on the inliers.

- ``"stgconv"``, the recommended score: the log-density of a product of two experts, the model
  and the Gaussians fitted to its training data (``chains.init: data_gaussian``, kept in the
  checkpoint), ``-E(x) + beta log q(x)``. ``beta`` is set from the inliers alone, so that
  ``beta log q`` spreads :data:`REFERENCE_SHARE` times as widely over them as ``-E`` does.
  Without a fitted ``q`` in the checkpoint it is ``-E(x)`` alone.
  Why the product: each expert misses what the other catches. On MNIST (bench/README.md,
  "jem.py") the JEM energy alone ranks inverted digits above the test digits (AUROC 0.000:
  white backgrounds, where no chain ever went) and tells silhouettes of solid objects from
  digits no better than chance (0.53-0.55), while ``log q`` separates both (1.000, 0.967); the
  energy adds to ``q`` on rendered letters (0.896 -> 0.912).
- ``"energy"``: ``-E(x)``, ``log p(x)`` of the model alone up to a constant (``logsumexp_y
  f(x)[y]``, times the learnt density scale ``s``). A JEM model was trained to make it high on
  the data and low on its own samples; a plain classifier was not.
- ``"reference"``: ``log q(x)`` alone (only with a fitted ``q``).
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
from stgconv.mcmc.init import DataGaussian
from stgconv.metrics import auroc, expected_calibration_error

SCORES = ("stgconv", "max_softmax", "max_logit", "energy", "reference")
"""The scores :func:`ood_scores` returns, the recommended one first (``"reference"`` only for a
model with a fitted reference)."""

REFERENCE_SHARE = 4.0
"""How much more widely ``beta log q`` spreads over the inliers than ``-E`` in the recommended
score. Measured on MNIST's constructed outliers (bench/README.md, "jem.py"): equal spreads (1)
let the energy's misses through (silhouettes 0.90-0.92, flipped digits 0.79-0.82); with 4 the
product is at most 0.013 below ``q`` alone on every set and keeps the energy's gain on letters
(0.896 -> 0.912)."""

ECE_BINS = 15


def load_classifier(checkpoint: str | Path, *, device: str = "auto"
                    ) -> tuple[ClassifierEnergy, ExperimentConfig, DataGaussian | None]:
    """The trained classifier energy (eval mode, on ``device``), its config and the Gaussians
    fitted to its training data: the run's ``jem.reference_components`` fit, else its chains'
    start (``chains.init: data_gaussian``), else ``None``.

    Raises:
        ValueError: the checkpoint holds a model that is not a classifier (the descriptors'
            energies have no classes to score).
    """
    energy, config, state = load_model(checkpoint, device=device)
    if not isinstance(energy, ClassifierEnergy):
        raise ValueError(f"{checkpoint} holds a {config.model.arch!r} energy, not a classifier: "
                         "eval ood needs a classifier model (model.arch digit_classifier or "
                         "wide_resnet, trained with a jem section)")
    fitted = state.get("reference", state.get("init"))
    reference = DataGaussian.from_state(fitted) if fitted is not None else None
    return energy, config, reference


@torch.no_grad()
def classifier_outputs(energy: ClassifierEnergy, x: Tensor, *, batch_size: int = 500
                       ) -> tuple[Tensor, Tensor]:
    """Logits ``(N, K)`` and marginal energies ``E(x)`` ``(N,)`` (float64, CPU) of images ``x``
    ``(N, C, H, W)``, ``batch_size`` at a time.

    Raises:
        FloatingPointError: a non-finite logit or energy (reported, never scored).
    """
    param = next(energy.parameters())
    logits, energies = [], []
    for batch in x.split(batch_size):
        batch_logits = energy.logits(batch.to(param.device, param.dtype))
        logits.append(batch_logits.double().cpu())
        energies.append(energy.marginal_energy(batch_logits).double().cpu())
    outputs = torch.cat(logits), torch.cat(energies)
    for name, value in zip(("logits", "energies"), outputs):
        bad = ~torch.isfinite(value.reshape(len(x), -1)).all(1)
        if bad.any():
            raise FloatingPointError(f"the classifier gave non-finite {name} for "
                                     f"{int(bad.sum())} of {len(x)} images")
    return outputs


@torch.no_grad()
def reference_log_prob(reference: DataGaussian, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """``log q(x)`` ``(N,)`` (float64, CPU) of images ``x`` ``(N, C, H, W)`` under the fitted
    Gaussians, ``batch_size`` at a time."""
    device = reference.means.device
    return torch.cat([reference.log_prob(batch.to(device, torch.float64)).cpu()
                      for batch in x.split(batch_size)])


def reference_weight(energies: Tensor, log_q: Tensor) -> float:
    """``beta`` of the recommended score from the inliers' energies ``(N,)`` and reference
    log-densities ``(N,)``: ``REFERENCE_SHARE * std(-E) / std(log q)``.

    Raises:
        ValueError: fewer than two inliers, or inliers whose log-densities do not vary (the
            spread sets the weight).
    """
    if len(log_q) < 2 or not float(log_q.std()) > 0:
        raise ValueError(f"the {len(energies)} inliers' scores do not vary, so they cannot set "
                         "the weight of the reference density: give at least two different "
                         "inliers")
    return REFERENCE_SHARE * float(energies.std()) / float(log_q.std())


def ood_scores(logits: Tensor, energies: Tensor, log_q: Tensor | None = None, *,
               weight: float | None = None) -> dict[str, Tensor]:
    """The scores of :data:`SCORES` ``(N,)`` from logits ``(N, K)``, the model's marginal
    energies ``(N,)`` and, for a model with a fitted reference, ``log q(x)`` ``(N,)`` and its
    ``weight`` (:func:`reference_weight`); higher = more like the training data."""
    scores = {"stgconv": -energies,
              "max_softmax": torch.softmax(logits, dim=1).max(dim=1).values,
              "max_logit": logits.max(dim=1).values,
              "energy": -energies}
    if log_q is not None:
        if weight is None:
            raise ValueError("a reference's log-densities need its weight")
        scores["stgconv"] = -energies + weight * log_q
        scores["reference"] = log_q
    return scores


def score_images(energy: ClassifierEnergy, reference: DataGaussian | None, x: Tensor, *,
                 weight: float | None = None, batch_size: int = 500
                 ) -> tuple[Tensor, dict[str, Tensor], float | None]:
    """Logits ``(N, K)``, every score of :func:`ood_scores` ``(N,)`` and the reference's weight,
    for images ``x`` ``(N, C, H, W)``: with ``weight`` ``None`` (the inliers) it is set from
    these images (:func:`reference_weight`); pass the inliers' weight for the outliers. The
    weight is ``None`` without a reference.

    Raises:
        FloatingPointError: non-finite logits or energies.
        ValueError: inliers too few or too alike to weigh the reference.
    """
    logits, energies = classifier_outputs(energy, x, batch_size=batch_size)
    if reference is None:
        return logits, ood_scores(logits, energies), None
    log_q = reference_log_prob(reference, x, batch_size=batch_size)
    weight = reference_weight(energies, log_q) if weight is None else weight
    return logits, ood_scores(logits, energies, log_q, weight=weight), weight


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
    "max_logit": c, "energy": d, "reference": e}, "accuracy": acc, "ece": e}``, ``accuracy``
    and ``ece`` ``None`` (JSON ``null``) without inlier labels, plus ``"reference_weight"``
    (``beta`` of the recommended score; ``None``, and no ``"reference"`` AUROC, for a model
    without a fitted reference), ``"n_inliers"``, ``"n_outliers"``, ``"seconds"``.

    Raises:
        ValueError: a missing or unreadable file, no ``x_test``, images of another type or
            shape, no images, labels that do not match the images or the model's classes, or a
            checkpoint that is not a classifier, or inliers too few or too alike to weigh
            the reference.
        FloatingPointError: non-finite logits or energies.
    """
    started = time.perf_counter()
    energy, config, reference = load_classifier(checkpoint, device=device)
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
    inlier_logits, inlier_scores, weight = score_images(energy, reference, images["inliers"],
                                                        batch_size=batch_size)
    _, outlier_scores, _ = score_images(energy, reference, images["outliers"], weight=weight,
                                        batch_size=batch_size)
    scores = {"inliers": inlier_scores, "outliers": outlier_scores}
    table: dict[str, Any] = {
        "auroc": {score: auroc(scores["inliers"][score], scores["outliers"][score])
                  for score in scores["inliers"]},
        "accuracy": None, "ece": None, "reference_weight": weight,
        "n_inliers": len(images["inliers"]), "n_outliers": len(images["outliers"]),
    }
    if labels is not None:
        probabilities = torch.softmax(inlier_logits, dim=1)
        table["accuracy"] = float((probabilities.argmax(1) == labels).double().mean())
        table["ece"] = expected_calibration_error(probabilities, labels, bins=ECE_BINS)
    table["seconds"] = time.perf_counter() - started
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def format_ood_table(table: dict[str, Any]) -> str:
    """The table of :func:`eval_ood` as text."""
    recommended = ("the model's -E(x)" if table["reference_weight"] is None else
                   f"-E(x) + {table['reference_weight']:.3g} log q(x), q the Gaussians fitted "
                   "to the training data")
    lines = [f"OOD detection: {table['n_inliers']} inliers vs {table['n_outliers']} outliers "
             f"(AUROC, 1 = separated; 'stgconv' = {recommended})",
             f"{'score':<14}{'AUROC':>8}"]
    lines += [f"{name:<14}{value:>8.4f}" for name, value in table["auroc"].items()]
    if table["accuracy"] is not None:
        lines.append(f"inliers: accuracy {table['accuracy']:.4f}, ECE ({ECE_BINS} bins) "
                     f"{table['ece']:.4f}")
    else:
        lines.append("inliers: no y_test, so no accuracy or ECE")
    return "\n".join(lines)


__all__ = ["SCORES", "REFERENCE_SHARE", "load_classifier", "classifier_outputs",
           "reference_log_prob", "reference_weight", "ood_scores", "score_images", "eval_ood",
           "format_ood_table"]
