"""Out-of-distribution detection with a classifier read as an energy (JEM; ``stgconv eval ood``).

Each score is higher for inputs the model takes for its own data; the table gives each score's
AUROC of telling the inliers from the outliers (:func:`stgconv.metrics.auroc`), and with inlier
labels the classifier's accuracy and expected calibration error (15 bins) on the inliers.

- ``"stgconv"``, the recommended score: the log-density of a product of experts, the model,
  the Gaussians fitted to its training data (``jem.reference_components``, else the chains'
  start ``chains.init: data_gaussian``, kept in the checkpoint) and, with
  ``jem.feature_rank``, Gaussians fitted to the trained network's penultimate features of its
  training data: ``-E(x) + beta log q(x) + gamma log r(phi(x))``. ``beta`` and ``gamma`` are
  set on training examples when training ends (:func:`stgconv.jem.fit_ood_weights`, kept in
  the checkpoint as ``"ood_weights"``): ``beta log q`` spreads :data:`REFERENCE_SHARE` times as
  widely over them as ``-E`` does, and ``gamma log r`` :data:`FEATURE_SHARE` times as widely
  as the two before it; a checkpoint without them (an earlier iteration's, or one saved before
  they were kept) has them set the same way on the inliers, and the table says which. An
  expert the checkpoint does not hold is left out (``-E(x)`` alone without either).
  Why the product: each expert misses what the other catches. On MNIST (bench/README.md,
  "jem.py") the JEM energy alone ranks inverted digits above the test digits (AUROC 0.000:
  white backgrounds, where no chain ever went) and tells silhouettes of solid objects from
  digits no better than chance (0.53-0.55), while ``log q`` separates both (1.000, 0.967); the
  energy adds to ``q`` on rendered letters (0.896 -> 0.912). The feature expert sees what the
  pixel Gaussians cannot: whether the network's features of x look like those of some class
  (letters 0.943-0.948 -> 0.962-0.963, silhouettes 0.967 -> 0.979-0.980).
- ``"energy"``: ``-E(x)``, ``log p(x)`` of the model alone up to a constant (``logsumexp_y
  f(x)[y]``, times the learnt density scale ``s``). A JEM model was trained to make it high on
  the data and low on its own samples; a plain classifier was not.
- ``"reference"``: ``log q(x)`` alone (only with a fitted ``q``).
- ``"features"``: ``log r(phi(x))`` alone (only with a fitted ``r``): class-conditional
  Gaussians of the features, as Lee et al. (NeurIPS 2018) score them with one covariance
  shared by the classes; here each class has its own, of low rank.
- ``"max_softmax"``: ``max_y p(y | x)``, the classic classifier baseline (Hendrycks & Gimpel,
  ICLR 2017).
- ``"max_logit"``: ``max_y f(x)[y]``, the largest logit (``-min_y E(x, y)`` in JEM's own form,
  without a density scale).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stgconv.checkpoint import CheckpointError, damaged_fit, load_model
from stgconv.checks import as_int, check_path, check_tensor, open_npz, reading
from stgconv.config import ExperimentConfig
from stgconv.data.image import load_npz_images, load_npz_labels
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.evaluation.tensorboard import check_outputs
from stgconv.io.atomic import atomic_write_json
from stgconv.mcmc.init import DataGaussian
from stgconv.metrics import auroc, expected_calibration_error

SCORES = ("stgconv", "max_softmax", "max_logit", "energy", "reference", "features")
"""The scores :func:`ood_scores` returns, the recommended one first (``"reference"`` and
``"features"`` only for a model with that fitted expert)."""

REFERENCE_SHARE = 4.0
"""How much more widely ``beta log q`` spreads over the inliers than ``-E`` in the recommended
score. Measured on MNIST's constructed outliers (bench/README.md, "jem.py"): equal spreads (1)
let the energy's misses through (silhouettes 0.90-0.92, flipped digits 0.79-0.82); with 4 the
product is at most 0.013 below ``q`` alone on every set and keeps the energy's gain on letters
(0.896 -> 0.912)."""

FEATURE_SHARE = 1.0
"""How much more widely ``gamma log r`` spreads over the inliers than ``-E + beta log q`` in the
recommended score. Measured on MNIST's constructed outliers (bench/README.md, "jem.py", fifth
round): an equal share keeps the pixel experts' wins (noise, inverted digits) and adds the
features' on letters and silhouettes."""

ECE_BINS = 15


@dataclass(frozen=True)
class ClassifierModel:
    """A trained classifier energy and what eval ood scores it with.

    Attributes:
        energy: the classifier as an energy (eval mode).
        config: its run's config.
        reference: ``q``, the Gaussians fitted to its training data (the run's
            ``jem.reference_components`` fit, else its chains' start ``chains.init:
            data_gaussian``), or ``None`` (:func:`scoring_expert`).
        feature_reference: ``r``, those fitted to its features (``jem.feature_rank``), or
            ``None``.
        weights: ``{"reference": beta, "features": gamma}`` set on training examples when
            training ended (:func:`stgconv.jem.fit_ood_weights`), or ``None`` for a checkpoint
            that does not hold them.
        temperature: ``T`` of the reported class probabilities ``softmax(f(x) / T)``, fitted
            on training examples when training ended (:func:`stgconv.jem.fit_temperature`); 1
            for a checkpoint that does not hold one.
    """

    energy: ClassifierEnergy
    config: ExperimentConfig
    reference: DataGaussian | None
    feature_reference: DataGaussian | None
    weights: dict[str, float | None] | None
    temperature: float = 1.0


def scoring_expert(*fits: DataGaussian | None) -> DataGaussian | None:
    """The first of ``fits`` a checkpoint holds, as an expert of the recommended score: ``None``
    when it has no density (:attr:`DataGaussian.has_density`: fitted to examples too alike),
    so that it is left out rather than failing every score. ``q`` is a run's
    ``jem.reference_components`` fit, else its chains' fitted start; ``r`` its
    ``jem.feature_rank`` fit."""
    fit = next((fit for fit in fits if fit is not None), None)
    return fit if fit is not None and fit.has_density else None


def load_classifier(checkpoint: str | Path, *, device: str = "auto") -> ClassifierModel:
    """The trained classifier of a checkpoint (a run folder or its file), on ``device``, with
    its fitted experts and their weights (:class:`ClassifierModel`).

    Raises:
        ValueError: the checkpoint holds a model that is not a classifier (the descriptors'
            energies have no classes to score).
        CheckpointError: a stored temperature that is not a positive number, stored
            experts' weights that are not ``{"reference": w, "features": w}`` with each ``w``
            ``None`` or a number >= 0, or stored Gaussians that are not a fit's (NaN values,
            say).
    """
    energy, config, state = load_model(checkpoint, device=device)
    if not isinstance(energy, ClassifierEnergy):
        raise ValueError(f"{checkpoint} holds an energy of model.arch {config.model.arch!r}, not a "
                         "classifier: eval ood needs a classifier model (model.arch "
                         "digit_classifier or wide_resnet, trained with a jem section)")
    fits = {key: _stored_fit(state, key, checkpoint)
            for key in ("reference", "init", "feature_reference")}
    weights = state.get("ood_weights")
    temperature = state.get("temperature", 1.0)
    # A division by a temperature that is not a positive number would report NaN
    # probabilities; a bool is an int to Python, but no temperature training writes.
    if not (isinstance(temperature, float | int) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and temperature > 0):
        raise CheckpointError(f"{checkpoint}: its temperature {temperature!r} is not a "
                              "positive number; the checkpoint is damaged")
    if weights is not None and not _expert_weights(weights):
        # Read as they were, they failed later as "non-finite scores", naming no checkpoint.
        raise CheckpointError(f"{checkpoint}: its experts' weights {weights!r} are not "
                              '{"reference": w, "features": w} with each w null or a number '
                              ">= 0; the checkpoint is damaged")
    return ClassifierModel(
        energy=energy, config=config,
        reference=scoring_expert(fits["reference"], fits["init"]),
        feature_reference=scoring_expert(fits["feature_reference"]),
        weights=dict(weights) if weights is not None else None,
        temperature=float(temperature))


def _stored_fit(state: dict[str, Any], key: str, checkpoint: str | Path) -> DataGaussian | None:
    """The Gaussians a checkpoint keeps as ``key``, or ``None`` where it keeps none.

    Raises:
        CheckpointError: a stored fit that is no data Gaussian's state (its refusal named
            neither the checkpoint nor which fit).
    """
    if key not in state:
        return None
    try:
        return DataGaussian.from_state(state[key])
    except ValueError as err:
        raise damaged_fit(checkpoint, key, err) from err


def _expert_weights(weights: Any) -> bool:
    """Whether ``weights`` is what :func:`stgconv.jem.fit_ood_weights` stores."""
    return (isinstance(weights, dict) and set(weights) == {"reference", "features"}
            and all(w is None or (isinstance(w, float | int) and not isinstance(w, bool)
                                  and math.isfinite(w) and w >= 0) for w in weights.values()))


@torch.no_grad()
def classifier_outputs(energy: ClassifierEnergy, x: Tensor, *,
                       feature_reference: DataGaussian | None = None, batch_size: int = 500
                       ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Logits ``(N, K)``, marginal energies ``E(x)`` ``(N,)`` and, given the Gaussians fitted
    to the features, ``log r(phi(x))`` ``(N,)`` (else ``None``) of images ``x``
    ``(N, C, H, W)`` in the model's units, ``batch_size`` at a time; float64, CPU.

    Raises:
        FloatingPointError: a non-finite logit, energy or feature density (reported, never
            scored).
        ValueError: ``x`` not floating point (raw pixels) or holding no image, or
            ``batch_size`` not an int >= 1.
    """
    _check_model_units(x)
    batch_size = as_int(batch_size, "batch_size", minimum=1)  # else torch's split, unnamed
    param = next(energy.parameters())
    logits, energies, feature_log_r = [], [], []
    for batch in x.split(batch_size):
        batch = batch.to(param.device, param.dtype)
        if feature_reference is None:
            batch_logits = energy.logits(batch)
        else:
            features = energy.features(batch)
            batch_logits = energy.logits_of_features(features)
            feature_log_r.append(feature_reference.log_prob(
                features.to(feature_reference.means.device, torch.float64)).cpu())
        logits.append(batch_logits.double().cpu())
        energies.append(energy.marginal_energy(batch_logits).double().cpu())
    outputs = {"logits": torch.cat(logits), "energies": torch.cat(energies),
               "feature densities": torch.cat(feature_log_r) if feature_log_r else None}
    for name, value in outputs.items():
        if value is None:
            continue
        bad = ~torch.isfinite(value.reshape(len(x), -1)).all(1)
        if bad.any():
            raise FloatingPointError(f"the classifier gave non-finite {name} for "
                                     f"{int(bad.sum())} of {len(x)} images")
    return outputs["logits"], outputs["energies"], outputs["feature densities"]


@torch.no_grad()
def reference_log_prob(reference: DataGaussian, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """``log q(x)`` ``(N,)`` (float64, CPU) of images ``x`` ``(N, C, H, W)`` in the model's
    units under the fitted Gaussians, ``batch_size`` at a time (an int >= 1)."""
    _check_model_units(x)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    device = reference.means.device
    return torch.cat([reference.log_prob(batch.to(device, torch.float64)).cpu()
                      for batch in x.split(batch_size)])


def _check_model_units(x: Tensor) -> None:
    """Raw pixels (uint8 0-255) would be scored as model values, far outside the data; a
    numpy array failed with an AttributeError."""
    check_tensor(x, "images")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point in the model's units [-1, 1] (pixel "
                         f"value v of 0-255 is v / 127.5 - 1, as load_npz_images reads them), "
                         f"got {x.dtype}")
    if x.dim() < 1 or len(x) == 0:  # else torch's reshape of the outputs failed, unnamed
        raise ValueError(f"images must be (N, C, H, W) with N >= 1, got {tuple(x.shape)}")


def reference_weight(scores: Tensor, log_q: Tensor, *, share: float = REFERENCE_SHARE) -> float:
    """The weight of an expert's log-densities ``log_q`` ``(N,)`` of the inliers beside their
    ``scores`` ``(N,)`` so far: ``share * std(scores) / std(log q)`` (``beta`` of the
    recommended score from the energies ``-E`` with :data:`REFERENCE_SHARE`, ``gamma`` from
    ``-E + beta log q`` with :data:`FEATURE_SHARE`).

    Raises:
        ValueError: NaN or infinite scores or log-densities, fewer than two inliers, or
            inliers whose log-densities do not vary (the spread sets the weight).
    """
    # Else a NaN score made a NaN weight, kept in the checkpoint and scoring every image NaN,
    # and a NaN log-density was named as log-densities that "do not vary".
    for name, values in (("scores", scores), ("log_q", log_q)):
        if not torch.isfinite(values).all():
            raise ValueError(f"{name} holds {int((~torch.isfinite(values)).sum())} NaN or "
                             "infinite values: an expert's weight cannot be set from them")
    if len(log_q) < 2 or not float(log_q.std()) > 0:
        raise ValueError(f"the {len(log_q)} inliers' log-densities under an expert of the "
                         "score do not vary, so they cannot set its weight: give at least two "
                         "different inliers")
    return share * float(scores.std()) / float(log_q.std())


def ood_scores(logits: Tensor, energies: Tensor, log_q: Tensor | None = None, *,
               weight: float | None = None, feature_log_r: Tensor | None = None,
               feature_weight: float | None = None) -> dict[str, Tensor]:
    """The scores of :data:`SCORES` ``(N,)`` from logits ``(N, K)``, the model's marginal
    energies ``(N,)`` and, for a model with fitted experts, ``log q(x)`` ``(N,)`` with its
    ``weight`` and ``log r(phi(x))`` ``(N,)`` with its ``feature_weight``
    (:func:`reference_weight`); higher = more like the training data."""
    scores = {"stgconv": -energies,
              "max_softmax": torch.softmax(logits, dim=1).max(dim=1).values,
              "max_logit": logits.max(dim=1).values,
              "energy": -energies}
    for name, log_density, density_weight in (("reference", log_q, weight),
                                              ("features", feature_log_r, feature_weight)):
        if log_density is None:
            continue
        if density_weight is None:
            raise ValueError(f"the {name} expert's log-densities need its weight")
        scores["stgconv"] = scores["stgconv"] + density_weight * log_density
        scores[name] = log_density
    return scores


def score_images(energy: ClassifierEnergy, reference: DataGaussian | None, x: Tensor, *,
                 feature_reference: DataGaussian | None = None,
                 weights: dict[str, float | None] | None = None, batch_size: int = 500
                 ) -> tuple[Tensor, dict[str, Tensor], dict[str, float | None]]:
    """Logits ``(N, K)``, every score of :func:`ood_scores` ``(N,)`` and the experts' weights
    ``{"reference": beta, "features": gamma}`` (``None`` for an expert not given), for images
    ``x`` ``(N, C, H, W)`` in the model's units [-1, 1]: with ``weights`` ``None`` they are set
    from these images (:func:`reference_weight`); pass those set on other images (the training
    examples', a checkpoint's :attr:`ClassifierModel.weights`, or the inliers') to score these
    with them.

    Raises:
        FloatingPointError: non-finite logits, energies or feature densities.
        ValueError: inliers too few or too alike to weigh an expert, or ``weights`` that are
            not ``{"reference": w, "features": w}`` with each ``w`` ``None`` or a number >= 0.
    """
    # Else a missing key failed as a KeyError after the network's pass, and a NaN weight
    # scored every image NaN.
    if weights is not None and not _expert_weights(weights):
        raise ValueError(f'weights must be {{"reference": w, "features": w}} with each w None '
                         f"or a number >= 0, got {weights!r}")
    logits, energies, feature_log_r = classifier_outputs(
        energy, x, feature_reference=feature_reference, batch_size=batch_size)
    log_q = None if reference is None else reference_log_prob(reference, x, batch_size=batch_size)
    if weights is None:
        weights = {"reference": None, "features": None}
        product = -energies
        if log_q is not None:
            weights["reference"] = reference_weight(product, log_q)
            product = product + weights["reference"] * log_q
        if feature_log_r is not None:
            weights["features"] = reference_weight(product, feature_log_r, share=FEATURE_SHARE)
    scores = ood_scores(logits, energies, log_q, weight=weights["reference"],
                        feature_log_r=feature_log_r, feature_weight=weights["features"])
    return logits, scores, weights


def _test_labels(path: str | Path) -> Tensor | None:
    """``y_test`` of the ``.npz`` at ``path``, or ``None`` when it has none."""
    with open_npz(path) as archive:
        has_labels = "y_test" in archive.files
    return load_npz_labels(path, key="y_test", images="x_test") if has_labels else None


def eval_ood(checkpoint: str | Path, inliers: str | Path, outliers: str | Path | None = None, *,
             json_path: str | Path | None = None, device: str = "auto", batch_size: int = 500
             ) -> dict[str, Any]:
    """Out-of-distribution detection by a classifier model's scores (module docstring).

    ``inliers`` and ``outliers`` are ``.npz`` files with ``x_test``, uint8 ``(N, H, W)`` or
    ``(N, H, W, C)`` (C 1 to 4: alpha composited over white), converted to the model's input
    as its training data were (:func:`stgconv.data.image.load_npz_images`: channels repeated
    or made grey by luma, centre-cropped to a square and resized).
    The inliers' optional ``y_test`` ``(N,)`` (classes ``0 .. K - 1``) adds the accuracy and
    ECE; the outliers' labels are not read. Without ``outliers``, ``"auroc"`` is ``None`` and
    only the inliers' accuracy and ECE are scored (they need ``y_test`` then).

    Returns (and writes to ``json_path``) ``{"auroc": {"stgconv": a, "max_softmax": b,
    "max_logit": c, "energy": d, "reference": e, "features": f}, "accuracy": acc, "ece":
    e}``, ``accuracy`` and ``ece`` ``None`` (JSON ``null``) without inlier labels (``ece`` of
    the class probabilities at the checkpoint's ``"temperature"``, also in the JSON, and
    ``"ece_uncalibrated"`` at 1), plus ``"reference_weight"`` and ``"feature_weight"``
    (``beta`` and ``gamma`` of the recommended score; ``None``, and no ``"reference"`` /
    ``"features"`` AUROC, for a model without that fitted expert), ``"weights_from"``
    (``"training data"``: the checkpoint's; ``"inliers"``: set on them, for a checkpoint
    without its own; ``None`` for a model with neither expert), ``"n_inliers"``,
    ``"n_outliers"``, ``"checkpoint"``, ``"inliers"``, ``"outliers"`` (the paths scored;
    ``None`` without ``outliers``), ``"seconds"``.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: an unreadable file, no ``x_test``, images of another type or
            shape, no images, labels that do not match the images or the model's classes, or a
            checkpoint that is not a classifier, inliers too few or too alike to weigh
            the experts, no ``outliers`` and no inlier labels (nothing to score), or
            ``batch_size`` not an int >= 1.
        FloatingPointError: non-finite logits, energies or feature densities.
    """
    started = time.perf_counter()
    batch_size = as_int(batch_size, "batch_size", minimum=1)  # before the files are read
    check_path(inliers, "inliers")
    if outliers is not None:
        check_path(outliers, "outliers")
    check_outputs(json_path=json_path)
    model = load_classifier(checkpoint, device=device)
    config = model.config
    n_classes = config.model.n_classes
    images = {}
    for name, path in (("inliers", inliers), ("outliers", outliers)):
        if path is not None:
            with reading(path):
                images[name] = load_npz_images(path, key="x_test", size=config.data.size,
                                               channels=config.data.channels)
    with reading(inliers):
        labels = _test_labels(inliers)
    if outliers is None and labels is None:
        raise ValueError(f"{inliers} holds no y_test and no outliers were given: there is "
                         "nothing to score (give --outliers for the AUROC, or labelled "
                         "inliers for the accuracy and ECE)")
    if labels is not None and labels.max() >= n_classes:
        raise ValueError(f"{inliers}: y_test has class {int(labels.max())}, but the model has "
                         f"{n_classes} classes (0 .. {n_classes - 1})")
    inlier_logits, inlier_scores, weights = score_images(
        model.energy, model.reference, images["inliers"],
        feature_reference=model.feature_reference, weights=model.weights, batch_size=batch_size)
    aurocs = None
    if outliers is not None:
        _, outlier_scores, _ = score_images(model.energy, model.reference, images["outliers"],
                                            feature_reference=model.feature_reference,
                                            weights=weights, batch_size=batch_size)
        aurocs = {score: auroc(inlier_scores[score], outlier_scores[score])
                  for score in inlier_scores}
    table: dict[str, Any] = {
        "auroc": aurocs,
        "accuracy": None, "ece": None, "ece_uncalibrated": None,
        "temperature": model.temperature, "reference_weight": weights["reference"],
        "feature_weight": weights["features"],
        "weights_from": (None if weights["reference"] is None and weights["features"] is None
                         else "training data" if model.weights is not None else "inliers"),
        "n_inliers": len(images["inliers"]), "n_outliers": len(images.get("outliers", ())),
        # What was scored, as every other evaluation's table names its inputs: tables of a
        # sweep over checkpoints or outlier sets could not be told apart.
        "checkpoint": str(checkpoint), "inliers": str(inliers),
        "outliers": None if outliers is None else str(outliers),
    }
    if labels is not None:
        probabilities = torch.softmax(inlier_logits / model.temperature, dim=1)
        table["accuracy"] = float((probabilities.argmax(1) == labels).double().mean())
        table["ece"] = expected_calibration_error(probabilities, labels, bins=ECE_BINS)
        table["ece_uncalibrated"] = expected_calibration_error(
            torch.softmax(inlier_logits, dim=1), labels, bins=ECE_BINS)
    table["seconds"] = time.perf_counter() - started
    if json_path is not None:
        atomic_write_json(json_path, table)
    return table


def format_ood_table(table: dict[str, Any]) -> str:
    """The table of :func:`eval_ood` as text."""
    terms, experts = ["-E(x)"], []
    # Only the experts the score holds are named: one left out (fitted to examples too alike
    # to have a density) must not appear in the legend as if it were part of the score.
    if table["reference_weight"] is not None:
        terms.append(f"{table['reference_weight']:.3g} log q(x)")
        experts.append("q the Gaussians fitted to the training data")
    if table["feature_weight"] is not None:
        terms.append(f"{table['feature_weight']:.3g} log r(phi(x))")
        experts.append("r those fitted to the network's features of it" if experts
                       else "r the Gaussians fitted to the network's features of the training "
                       "data")
    recommended = " + ".join(terms) + (
        f"; {', '.join(experts)}, weights set on the {table['weights_from']}" if experts else "")
    if table["auroc"] is None:
        lines = [f"{table['n_inliers']} inliers, no outliers given: no AUROC"]
    else:
        lines = [f"OOD detection: {table['n_inliers']} inliers vs {table['n_outliers']} "
                 f"outliers (AUROC, 1 = separated; 'stgconv' = {recommended})",
                 f"{'score':<14}{'AUROC':>8}"]
        lines += [f"{name:<14}{value:>8.4f}" for name, value in table["auroc"].items()]
    if table["accuracy"] is not None:
        lines.append(f"inliers: accuracy {table['accuracy']:.4f}, ECE ({ECE_BINS} bins) "
                     f"{table['ece']:.4f} at the checkpoint's temperature "
                     f"{table['temperature']:.3g} ({table['ece_uncalibrated']:.4f} at 1)")
    else:
        lines.append("inliers: no y_test, so no accuracy or ECE")
    return "\n".join(lines)


__all__ = ["SCORES", "REFERENCE_SHARE", "FEATURE_SHARE", "ClassifierModel", "scoring_expert",
           "load_classifier", "classifier_outputs", "reference_log_prob", "reference_weight",
           "ood_scores", "score_images", "eval_ood", "format_ood_table"]
