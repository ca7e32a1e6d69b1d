"""`stgconv eval ood`: the scores (and the recommended product with the fitted Gaussians) on
hand-made numbers, the JSON contract end to end on tiny arrays (grey inliers with labels, RGB
outliers of another size) with the tiny trained JEM run, with and without fitted Gaussians, and
every bad input ending in exit 2 with one line naming it."""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import JEM_CONFIG, JEM_TINY
from torch import Tensor

from stgconv.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stgconv.cli import main
from stgconv.data.image import load_npz_images
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.evaluation import ood
from stgconv.evaluation.ood import (FEATURE_SHARE, REFERENCE_SHARE, SCORES, ood_scores,
                                    reference_weight, score_images, scoring_expert)
from stgconv.mcmc import DataGaussian
from stgconv.metrics import auroc, expected_calibration_error


@pytest.mark.parametrize("weights", [{"reference": 0.5}, {"reference": math.nan,
                                                         "features": 1.0},
                                     {"reference": -1.0, "features": None}, [0.5, None]])
def test_weights_that_are_not_the_experts_are_named(weights) -> None:
    """A missing key failed as a KeyError, a NaN weight scored every image NaN."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8),
                                                  torch.nn.SiLU(), torch.nn.Linear(8, 3)))
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = DataGaussian.fit(energy.features(x).detach(), rank=1)
    with pytest.raises(ValueError, match=r'^weights must be \{"reference": w, "features": w\} '
                                         r"with each w None or a number >= 0, got "):
        ood.score_images(energy, DataGaussian.fit(x, rank=1), x, feature_reference=features,
                         weights=weights)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_a_batch_size_that_is_not_a_positive_int_is_named(batch_size, tmp_path: Path) -> None:
    """torch's split failed in its own words ("split_size can only be 0 if ..."); eval ood
    only after reading the checkpoint and both files (none exist here)."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8),
                                                  torch.nn.SiLU(), torch.nn.Linear(8, 3)))
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reference = DataGaussian.fit(x, rank=1)
    message = rf"^batch_size must be an int >= 1, got {batch_size}$"
    for call in (lambda: ood.classifier_outputs(energy, x, batch_size=batch_size),
                 lambda: ood.reference_log_prob(reference, x, batch_size=batch_size),
                 lambda: ood.score_images(energy, reference, x, batch_size=batch_size),
                 lambda: ood.eval_ood(tmp_path / "run", tmp_path / "in.npz",
                                      tmp_path / "out.npz", batch_size=batch_size)):
        with pytest.raises(ValueError, match=message):
            call()
    # No images: torch's "cannot reshape tensor of 0 elements" before.
    with pytest.raises(ValueError, match=r"^images must be \(N, C, H, W\) with N >= 1, got "
                                         r"\(0, 1, 2, 2\)$"):
        ood.score_images(energy, reference, x[:0], weights={"reference": 1.0, "features": None})


def test_scores_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)
    energies = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    scores = ood_scores(logits, energies)
    assert list(scores) == list(SCORES[:-2])  # no fitted expert
    assert torch.equal(scores["stgconv"], -energies) and torch.equal(scores["energy"], -energies)
    assert torch.allclose(scores["max_softmax"], torch.tensor([0.5, 0.75], dtype=torch.float64))
    assert torch.allclose(scores["max_logit"], torch.tensor([0.0, math.log(3.0)],
                                                            dtype=torch.float64))


def test_the_recommended_score_adds_the_weighted_reference() -> None:
    logits = torch.zeros(3, 2, dtype=torch.float64)
    energies = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    log_q = torch.tensor([-30.0, -10.0, 10.0], dtype=torch.float64)
    weight = reference_weight(energies, log_q)
    # beta log q spreads REFERENCE_SHARE times as widely as -E: std 1 against std 20.
    assert REFERENCE_SHARE == 4.0  # measured on MNIST's outliers (bench/README.md, "jem.py")
    assert weight == pytest.approx(REFERENCE_SHARE / 20)
    # Two different inliers are enough to weigh an expert.
    assert reference_weight(energies[:2], log_q[:2]) == pytest.approx(REFERENCE_SHARE / 20)
    # Flat scores beside varying log-densities weigh the expert at 0; only its own spread
    # must not be 0.
    assert reference_weight(torch.zeros(3), log_q) == 0.0
    scores = ood_scores(logits, energies, log_q, weight=weight)
    assert list(scores) == list(SCORES[:-1])
    assert torch.allclose(scores["stgconv"], -energies + weight * log_q)
    assert torch.equal(scores["energy"], -energies) and torch.equal(scores["reference"], log_q)


@pytest.mark.parametrize("which", ["scores", "log_q"])
def test_a_reference_weight_is_not_set_from_non_finite_values(which: str) -> None:
    """A NaN score made a NaN weight without a word (kept with the model, it scored every
    image NaN); a NaN log-density was named as log-densities that "do not vary"."""
    values = {"scores": torch.tensor([-1.0, 0.0, 1.0]), "log_q": torch.tensor([-3.0, 1.0, 2.0])}
    values[which][1] = math.nan
    with pytest.raises(ValueError, match=f"^{which} holds 1 NaN or infinite values"):
        reference_weight(values["scores"], values["log_q"])


def test_the_feature_expert_adds_to_the_pixel_product_at_its_share() -> None:
    logits = torch.zeros(3, 2, dtype=torch.float64)
    energies = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    log_q = torch.tensor([-30.0, -10.0, 10.0], dtype=torch.float64)
    log_r = torch.tensor([4.0, 0.0, -2.0], dtype=torch.float64)
    beta = reference_weight(-energies, log_q)
    product = -energies + beta * log_q
    gamma = reference_weight(product, log_r, share=FEATURE_SHARE)
    assert FEATURE_SHARE == 1.0  # measured on MNIST's outliers (bench/README.md, "jem.py")
    assert gamma == pytest.approx(FEATURE_SHARE * float(product.std() / log_r.std()))
    scores = ood_scores(logits, energies, log_q, weight=beta, feature_log_r=log_r,
                        feature_weight=gamma)
    assert list(scores) == list(SCORES)
    assert torch.allclose(scores["stgconv"], product + gamma * log_r)
    assert torch.equal(scores["features"], log_r) and torch.equal(scores["reference"], log_q)
    with pytest.raises(ValueError, match="features expert's log-densities need its weight"):
        ood_scores(logits, energies, feature_log_r=log_r)


@pytest.mark.parametrize("log_q", [torch.tensor([5.0]), torch.tensor([5.0, 5.0])])
def test_inliers_that_cannot_weigh_the_reference_are_named(log_q: Tensor) -> None:
    with pytest.raises(ValueError, match="log-densities under an expert of the score do not "
                                         "vary"):
        reference_weight(torch.zeros(len(log_q)), log_q)


def test_an_expert_without_a_density_is_left_out() -> None:
    """Gaussians fitted to examples too alike have no density: they leave the score instead of
    failing it, and the pixel expert is the run's own fit before its chains' start."""
    alike = torch.ones(4, 1, 3, 3)
    flat = DataGaussian.fit(alike, rank=0)
    spread = DataGaussian.fit(torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0)),
                              rank=1)
    assert not flat.has_density and spread.has_density
    assert scoring_expert(flat) is None and scoring_expert(flat, spread) is None
    assert scoring_expert(None, spread) is spread and scoring_expert(None, None) is None


@pytest.fixture
def arrays(trained_jem_run: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """The run, its training bars as labelled inliers, and 5 RGB 32x32 noise outliers."""
    with np.load(trained_jem_run["data"]) as bars:
        x, y = bars["x_train"], bars["y_train"]
    rng = np.random.default_rng(0)
    paths = {"run": trained_jem_run["run"], "tmp": tmp_path}
    files = {
        "inliers": {"x_test": x, "y_test": y},
        "unlabelled": {"x_test": x},
        "outliers": {"x_test": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)},
        "no_x_test": {"x_train": x},
        "float": {"x_test": x.astype(np.float32)},
        "five_channels": {"x_test": np.zeros((2, 28, 28, 5), np.uint8)},
        "empty": {"x_test": np.zeros((0, 28, 28), np.uint8)},
        "zero_side": {"x_test": np.zeros((3, 0, 28), np.uint8)},
        "class_9": {"x_test": x, "y_test": np.full(len(x), 9)},
        "class_3": {"x_test": x, "y_test": np.full(len(x), 3)},
        "short_labels": {"x_test": x, "y_test": y[:2]},
    }
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], **content)
    return {key: str(value) for key, value in paths.items()}


def test_eval_ood_json_contract(arrays: dict[str, str], capsys) -> None:
    out = Path(arrays["tmp"]) / "ood.json"
    started = time.perf_counter()
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 0
    took = time.perf_counter() - started
    table = json.loads(out.read_text())
    assert 0 < table["seconds"] <= took
    assert list(table["auroc"]) == list(SCORES)
    assert all(0 <= a <= 1 for a in table["auroc"].values())
    assert 0 <= table["accuracy"] <= 1 and 0 <= table["ece"] <= 1
    assert 0 <= table["ece_uncalibrated"] <= 1 and table["temperature"] > 0
    assert table["reference_weight"] > 0 and table["feature_weight"] > 0
    assert (table["n_inliers"], table["n_outliers"]) == (9, 5)
    # The inputs scored, as the other evaluations' tables name theirs.
    assert [table[key] for key in ("checkpoint", "inliers", "outliers")] == [
        arrays["run"], arrays["inliers"], arrays["outliers"]]
    assert "AUROC" in capsys.readouterr().out


def test_the_score_is_weighed_on_training_examples_not_on_the_inliers(
        arrays: dict[str, str], tmp_path: Path, monkeypatch) -> None:
    """The trained run's last checkpoint keeps beta and gamma (set on its training examples),
    so the score is one function of an image: other inliers leave the weights as they are. A
    checkpoint without them (saved before they were kept, or an earlier iteration's) has them
    set on the inliers, the outliers are scored with those, and the table says so."""
    tables = []
    for inliers in (arrays["inliers"], arrays["outliers"]):
        out = tmp_path / f"{len(tables)}.json"
        assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", inliers,
                     "--outliers", arrays["outliers"], "--json", str(out),
                     "--device", "cpu"]) == 0
        tables.append(json.loads(out.read_text()))
    stored = torch.load(Path(arrays["run"]) / "checkpoint.pt", weights_only=True)["ood_weights"]
    for table in tables:
        assert table["weights_from"] == "training data"
        assert (table["reference_weight"], table["feature_weight"]) == (
            stored["reference"], stored["features"])
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    del state["ood_weights"]
    older = save_checkpoint(state, tmp_path / "older" / "checkpoint.pt")
    out = tmp_path / "older.json"
    calls = []  # (weights given, weights used) per call; the AUROCs here are all 1

    def recording(*args, **kwargs):
        logits, scores, weights = score_images(*args, **kwargs)
        calls.append((kwargs["weights"], dict(weights)))
        return logits, scores, weights

    monkeypatch.setattr(ood, "score_images", recording)
    assert main(["eval", "ood", "--checkpoint", str(older), "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["weights_from"] == "inliers" and table["reference_weight"] > 0
    (inliers_given, inliers_used), (outliers_given, outliers_used) = calls
    assert inliers_given is None and outliers_given == inliers_used == outliers_used
    assert inliers_used["reference"] == table["reference_weight"]


def test_a_model_without_fitted_gaussians_scores_its_energy_alone(
        trained_jem_run: dict[str, Path], arrays: dict[str, str], tmp_path: Path) -> None:
    """Chains from uniform noise, no jem.reference_components and no jem.feature_rank keep no
    fitted Gaussians: "stgconv" is -E(x), no "reference" or "features"."""
    run, out = tmp_path / "run", tmp_path / "ood.json"
    assert main(["train", str(JEM_CONFIG), "--data", str(trained_jem_run["data"]), "--out",
                 str(run), *JEM_TINY, "--set", "chains.init=uniform",
                 "--set", "jem.reference_components=0", "--set", "jem.reference_rank=64",
                 "--set", "jem.feature_rank=0"]) == 0
    assert main(["eval", "ood", "--checkpoint", str(run), "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["reference_weight"] is None and table["feature_weight"] is None
    assert table["weights_from"] is None  # nothing was weighed
    assert "reference" not in table["auroc"] and "features" not in table["auroc"]
    assert table["auroc"]["stgconv"] == table["auroc"]["energy"]


def test_a_model_with_feature_gaussians_alone_weighs_them_against_its_energy(
        trained_jem_run: dict[str, Path], arrays: dict[str, str], tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "ood.json"
    assert main(["train", str(JEM_CONFIG), "--data", str(trained_jem_run["data"]), "--out",
                 str(run), *JEM_TINY, "--set", "chains.init=uniform",
                 "--set", "jem.reference_components=0", "--set", "jem.reference_rank=64"]) == 0
    assert main(["eval", "ood", "--checkpoint", str(run), "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["reference_weight"] is None and table["feature_weight"] > 0
    assert "reference" not in table["auroc"] and 0 <= table["auroc"]["features"] <= 1
    assert table["weights_from"] == "training data"  # one expert weighed is weighed


def test_eval_ood_json_over_the_run_folders_checkpoint_is_refused(arrays: dict[str, str],
                                                                   capsys) -> None:
    checkpoint = Path(arrays["run"]) / "checkpoint.pt"
    before = checkpoint.read_bytes()
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(checkpoint),
                 "--device", "cpu"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


def test_eval_ood_refuses_a_json_folder_before_loading_the_model(tmp_path, monkeypatch) -> None:
    """A library caller's JSON path that is a folder failed after the scoring
    (IsADirectoryError)."""
    monkeypatch.setattr(ood, "load_classifier", None)  # reached, a TypeError
    with pytest.raises(ValueError, match=r"^json_path .* is a folder, not a file$"):
        ood.eval_ood("run", "in.npz", "out.npz", json_path=tmp_path)


def test_eval_ood_without_json_prints_the_table_and_claims_no_file(arrays: dict[str, str],
                                                                    capsys) -> None:
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "wrote" not in out
    assert "stgconv eval ood: done (nothing written" in out


def test_eval_ood_without_labels_has_null_accuracy(arrays: dict[str, str]) -> None:
    out = Path(arrays["tmp"]) / "ood.json"
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["unlabelled"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["accuracy"] is None and table["ece"] is None


def test_eval_ood_without_outliers_scores_the_labelled_inliers(arrays: dict[str, str],
                                                                 capsys) -> None:
    """--outliers was required even for the inliers' accuracy and ECE alone; left out, the
    AUROC is null and the table says why. Without labels either there is nothing to score."""
    out = Path(arrays["tmp"]) / "inliers.json"
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["inliers"],
                 "--json", str(out), "--device", "cpu"]) == 0
    table = json.loads(out.read_text())
    assert table["auroc"] is None and table["n_outliers"] == 0 and table["outliers"] is None
    assert 0 <= table["accuracy"] <= 1 and 0 <= table["ece"] <= 1
    printed = capsys.readouterr().out
    assert "9 inliers, no outliers given: no AUROC" in printed and "accuracy" in printed
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["unlabelled"],
                 "--device", "cpu"]) == 2
    assert (f"{arrays['unlabelled']} holds no y_test and no outliers were given: there is "
            "nothing to score") in capsys.readouterr().err


def test_a_score_that_is_not_a_number_is_reported_not_written(arrays: dict[str, str], capsys,
                                                               monkeypatch) -> None:
    """An undefined score (NaN here) was written as a bare NaN, which strict JSON readers (jq,
    JSON.parse) reject: one line naming it, exit 2, and no file."""
    monkeypatch.setattr(ood, "expected_calibration_error", lambda *_, **__: math.nan)
    out = Path(arrays["tmp"]) / "nan.json"
    code = main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot write {out}: ece is not a finite number" in err
    assert not out.exists()


@pytest.mark.parametrize("inliers, outliers, message", [
    ("{tmp}/missing.npz", "{outliers}", ".npz file not found: {tmp}/missing.npz"),
    ("{inliers}", "{no_x_test}", "{no_x_test}: no array 'x_test' (it has x_train)"),
    ("{float}", "{outliers}",
     "x_test must be uint8 (N, H, W) or (N, H, W, C) with C 1 to 4, got float32"),
    ("{inliers}", "{five_channels}", "got uint8 (2, 28, 28, 5)"),
    ("{inliers}", "{empty}", "{empty}: x_test holds no images"),
    ("{inliers}", "{zero_side}", "{zero_side}: x_test's images have no pixels"),
    ("{class_9}", "{outliers}", "y_test has class 9, but the model has 3 classes"),
    ("{class_3}", "{outliers}", "y_test has class 3, but the model has 3 classes (0 .. 2)"),
    ("{short_labels}", "{outliers}", "{short_labels}"),
])
def test_bad_input_exits_2_with_one_line(arrays: dict[str, str], capsys, inliers: str,
                                         outliers: str, message: str) -> None:
    code = main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers",
                 inliers.format(**arrays), "--outliers", outliers.format(**arrays),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("stgconv eval ood: error: ") and err.count("\n") == 1, err
    assert message.format(**arrays) in err


def test_a_descriptor_checkpoint_exits_2(arrays: dict[str, str], trained_voxel_run, capsys
                                         ) -> None:
    code = main(["eval", "ood", "--checkpoint", str(trained_voxel_run["run"]), "--inliers",
                 arrays["inliers"], "--outliers", arrays["outliers"], "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "not a classifier" in err, err


def test_the_feature_weight_is_set_against_the_energy_plus_weighted_reference() -> None:
    """beta spreads log q against -E (at REFERENCE_SHARE), and gamma the feature density
    against -E + beta log q, not against -E alone."""
    from torch import nn

    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2))
    energy = ClassifierEnergy(network).double()
    x = torch.randn(12, 1, 2, 2, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    pixels = DataGaussian.fit(torch.randn(12, 1, 2, 2,
                                          generator=torch.Generator().manual_seed(1)), rank=1)
    features = DataGaussian.fit(torch.randn(12, 3, generator=torch.Generator().manual_seed(2)),
                                rank=1)
    _, scores, weights = score_images(energy, pixels, x, feature_reference=features)
    assert weights["reference"] == pytest.approx(
        reference_weight(scores["energy"], scores["reference"], share=REFERENCE_SHARE))
    product = scores["energy"] + weights["reference"] * scores["reference"]
    assert weights["features"] == pytest.approx(
        reference_weight(product, scores["features"], share=FEATURE_SHARE))
    # The recommended score weighs each expert with its own weight.
    torch.testing.assert_close(scores["stgconv"],
                               product + weights["features"] * scores["features"])


def test_raw_pixels_are_refused_not_scored_as_model_values() -> None:
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    pixels = DataGaussian.fit(torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1)),
                              rank=1)
    raw = torch.full((3, 1, 2, 2), 200, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"floating point in the model's units .* torch\.uint8"):
        score_images(energy, pixels, raw)
    with pytest.raises(ValueError, match="floating point"):
        ood.reference_log_prob(pixels, raw)
    with pytest.raises(ValueError, match=r"floating point in the model's units .* torch\.int64"):
        score_images(energy, pixels, raw.long())
    with pytest.raises(ValueError, match=r"^images must be a torch.Tensor, got ndarray"):
        score_images(energy, pixels, raw.float().numpy())  # an AttributeError before


def test_classifier_outputs_are_the_models_own_in_float64_batch_by_batch() -> None:
    """Float64 images through a float32 model, 2 at a time: every image's logits, marginal
    energy E(x) and feature density, as float64; uint8 pixels and non-finite outputs are
    refused even without a pixel reference."""
    torch.manual_seed(0)
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3),
                                                  torch.nn.Linear(3, 2)))
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    features = DataGaussian.fit(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)),
                                rank=1)
    logits, energies, log_r = ood.classifier_outputs(energy, x, feature_reference=features,
                                                     batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(logits, energy.logits(x.float()).double())
        torch.testing.assert_close(energies, energy(x.float()).double())
        torch.testing.assert_close(log_r, features.log_prob(energy.features(x.float()).double()))
    assert {logits.dtype, energies.dtype, log_r.dtype} == {torch.float64}
    with pytest.raises(ValueError, match="floating point"):
        ood.classifier_outputs(energy, x.to(torch.uint8))
    with pytest.raises(FloatingPointError, match="non-finite logits for 1 of 5 images"):
        ood.classifier_outputs(energy, torch.cat([x[:4], torch.full_like(x[:1], math.inf)]))


def test_the_table_spells_out_the_recommended_score() -> None:
    table = {"reference_weight": 0.5, "feature_weight": None, "weights_from": "inliers",
             "n_inliers": 2, "n_outliers": 3, "auroc": {"stgconv": 0.75}, "accuracy": None}
    assert ("'stgconv' = -E(x) + 0.5 log q(x); q the Gaussians fitted to the training data, "
            "weights set on the inliers)" in ood.format_ood_table(table))
    both = ood.format_ood_table({**table, "feature_weight": 0.25})
    assert ("'stgconv' = -E(x) + 0.5 log q(x) + 0.25 log r(phi(x)); q the Gaussians fitted to "
            "the training data, r those fitted to the network's features of it, weights set on "
            "the inliers)" in both)
    # A pixel expert left out (no density): the legend names r alone, never a missing q.
    features_only = ood.format_ood_table({**table, "reference_weight": None,
                                          "feature_weight": 0.25})
    assert ("'stgconv' = -E(x) + 0.25 log r(phi(x)); r the Gaussians fitted to the network's "
            "features of the training data, weights set on the inliers)" in features_only)
    alone = ood.format_ood_table({**table, "reference_weight": None, "weights_from": None})
    assert "'stgconv' = -E(x))" in alone
    # Three significant digits of each weight, four decimals of each AUROC.
    exact = ood.format_ood_table({**table, "reference_weight": 0.125})
    assert "-E(x) + 0.125 log q(x);" in exact and "stgconv         0.7500" in exact


def test_max_softmax_normalises_each_example_over_its_classes() -> None:
    """max_softmax is each example's top class probability, softmax taken over the classes
    of that example (not across the examples)."""
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [5.0, 5.0, 5.0]],
                          dtype=torch.float64)
    scores = ood_scores(logits, torch.zeros(3, dtype=torch.float64))
    expected = torch.tensor([1 / 3, 0.5, 1 / 3], dtype=torch.float64)
    torch.testing.assert_close(scores["max_softmax"], expected)


def test_the_ece_is_of_the_class_probabilities_at_the_checkpoints_temperature(
        arrays: dict[str, str], tmp_path: Path) -> None:
    """eval ood reports the ECE of softmax(f(x) / T) with the checkpoint's T, and at T = 1; a
    checkpoint without one (saved before runs kept it) is read at T = 1."""
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    tables = {}
    for name, temperature in (("sharp", 0.25), ("none", None)):
        if temperature is None:
            del state["temperature"]
        else:
            state["temperature"] = temperature
        run = save_checkpoint(state, tmp_path / name / "checkpoint.pt")
        out = tmp_path / f"{name}.json"
        assert main(["eval", "ood", "--checkpoint", str(run), "--inliers", arrays["inliers"],
                     "--outliers", arrays["outliers"], "--json", str(out),
                     "--device", "cpu"]) == 0
        tables[name] = json.loads(out.read_text())
    model = ood.load_classifier(arrays["run"], device="cpu")
    with np.load(arrays["inliers"]) as archive:
        x = torch.from_numpy(archive["x_test"]).float()[:, None] / 255 * 2 - 1
        y = torch.from_numpy(archive["y_test"]).long()
    noise = load_npz_images(arrays["outliers"], key="x_test", size=model.config.data.size,
                            channels=model.config.data.channels)
    with torch.no_grad():
        logits = model.energy.logits(x).double()
        largest = model.energy.logits(noise).double().max(1).values
    # The inliers' scores against the outliers' (the other way round scores 1 - AUROC).
    max_logit = auroc(logits.max(1).values, largest)
    assert max_logit != 0.5
    for name, t in (("sharp", 0.25), ("none", 1.0)):
        assert tables[name]["auroc"]["max_logit"] == pytest.approx(max_logit)
        assert tables[name]["accuracy"] == pytest.approx(
            (logits.argmax(1) == y).double().mean().item())
        assert tables[name]["temperature"] == t
        assert tables[name]["ece"] == pytest.approx(
            expected_calibration_error(torch.softmax(logits / t, 1), y, bins=15))
        assert tables[name]["ece_uncalibrated"] == pytest.approx(
            expected_calibration_error(torch.softmax(logits, 1), y, bins=15))
    assert tables["sharp"]["ece"] != tables["sharp"]["ece_uncalibrated"]
    assert tables["none"]["ece"] == tables["none"]["ece_uncalibrated"]


@pytest.mark.parametrize("key, value, named", [
    *(("temperature", t, "temperature")
      for t in (0.0, -1.0, float("nan"), float("inf"), "warm", True)),
    *(("ood_weights", w, "experts' weights") for w in (
        {"reference": float("nan"), "features": None}, {"reference": -1.0, "features": None},
        {"reference": 1.0, "features": math.inf}, {"reference": True, "features": None},
        {"reference": 1.0}, {"reference": 1.0, "features": 1.0, "temperature": 1.0},
        "heavy", [1.0, 2.0], ["reference", "features"])),
])
def test_a_damaged_fitted_value_exits_2_naming_it(arrays: dict[str, str], tmp_path: Path,
                                                  capsys, key, value, named) -> None:
    """A checkpoint's temperature or experts' weights that training never writes: named in one
    line, nothing written (they failed later as non-finite scores or probabilities)."""
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    state[key] = value
    run = save_checkpoint(state, tmp_path / "bad" / "checkpoint.pt")
    out = tmp_path / "ood.json"
    assert main(["eval", "ood", "--checkpoint", str(run), "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("key, part, value", [
    ("reference", "factors", math.nan), ("init", "residual_std", math.inf),
    ("feature_reference", "means", math.nan)])
def test_damaged_fitted_gaussians_exit_2_naming_them(arrays: dict[str, str], tmp_path: Path,
                                                     capsys, key, part, value) -> None:
    """NaN or infinite values in a checkpoint's fitted Gaussians: a traceback from torch's
    Cholesky (the pixel expert), or non-finite densities blamed on the classifier (the
    feature expert). Now the checkpoint and the fit are named, and nothing is written."""
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    assert key in state
    state[key][part].fill_(value)
    run = save_checkpoint(state, tmp_path / "bad" / "checkpoint.pt")
    out = tmp_path / "ood.json"
    assert main(["eval", "ood", "--checkpoint", str(run), "--inliers", arrays["inliers"],
                 "--outliers", arrays["outliers"], "--json", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(rf"bad/checkpoint.pt: its fitted Gaussians '{key}' are damaged: a data "
                     rf"Gaussian's {part} hold NaN or infinite values$", err)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and not out.exists()


def test_expert_weights_of_zero_or_whole_numbers_are_read(arrays: dict[str, str],
                                                          tmp_path: Path) -> None:
    # Numbers >= 0 of either kind, as a checkpoint written by hand or another tool holds them.
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    state["ood_weights"] = {"reference": 0, "features": 2}
    run = save_checkpoint(state, tmp_path / "int" / "checkpoint.pt")
    assert ood.load_classifier(run, device="cpu").weights == {"reference": 0, "features": 2}


def test_a_whole_number_temperature_is_read_as_a_float(arrays: dict[str, str],
                                                         tmp_path: Path) -> None:
    """A stored temperature of 2 (an int: a checkpoint written by hand or by another tool) is a
    positive number like 2.0, not a damaged checkpoint; the model holds it as a float."""
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    state["temperature"] = 2
    run = save_checkpoint(state, tmp_path / "int" / "checkpoint.pt")
    model = ood.load_classifier(run, device="cpu")
    assert model.temperature == 2.0 and isinstance(model.temperature, float)


def test_an_infinite_temperature_is_refused_by_load_classifier(arrays: dict[str, str],
                                                               tmp_path: Path) -> None:
    """Not left to the JSON writer: without --json an infinite temperature made every class
    probability 1/K, and the accuracy and ECE were reported of them."""
    state = load_checkpoint(Path(arrays["run"]) / "checkpoint.pt")
    state["temperature"] = math.inf
    run = save_checkpoint(state, tmp_path / "inf" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="its temperature inf is not a positive number"):
        ood.load_classifier(run, device="cpu")


class _LogOfFirstPixel(torch.nn.Module):
    """Logits ``(B, 2)``: the pixels' sum and the log of the first pixel (``-inf`` at 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([x.flatten(1).sum(1), x.flatten(1)[:, 0].log()], dim=1)


def test_a_non_finite_feature_density_is_reported() -> None:
    """Features of 1e200 have finite logits and energies, yet a squared distance past the
    float64 range under the feature Gaussians: reported, not scored."""
    torch.manual_seed(0)
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3),
                                                  torch.nn.Linear(3, 2))).double()
    features = DataGaussian.fit(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)),
                                rank=1)
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    x[1] = 1e200
    with pytest.raises(FloatingPointError, match="non-finite feature densities for 1 of 3"):
        ood.classifier_outputs(energy, x, feature_reference=features)


def test_one_infinite_logit_among_finite_ones_is_reported() -> None:
    """A logit of -inf leaves the marginal energy and every score finite, yet the classifier
    broke on that image: it is reported as the NaN logits are, not scored."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Identity(), _LogOfFirstPixel()))
    energy.register_parameter("unused", torch.nn.Parameter(torch.zeros(1)))
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0)) + 0.5
    x[1, 0, 0, 0] = 0.0
    with pytest.raises(FloatingPointError, match="non-finite logits for 1 of 3 images"):
        ood.classifier_outputs(energy, x)


def test_a_single_inlier_is_refused_before_its_spread_is_taken() -> None:
    """One inlier has no spread: refused by its count, not by the NaN (and the warning) that
    torch's std of one value gives."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="the 1 inliers' log-densities"):
            reference_weight(torch.zeros(1), torch.tensor([5.0]))


def test_a_checkpoint_with_both_fits_scores_with_its_reference_fit(monkeypatch) -> None:
    """A run that fitted jem.reference_components and started its chains at data_gaussian
    keeps both: the pixel expert is the reference fit, not the chains' start."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    data = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    reference, start = DataGaussian.fit(data, rank=1), DataGaussian.fit(data + 5, rank=1)
    state = {"reference": reference.state_dict(), "init": start.state_dict()}
    monkeypatch.setattr(ood, "load_model", lambda *_, **__: (energy, None, state))
    model = ood.load_classifier("run")
    assert torch.equal(model.reference.means, reference.means)
    assert model.feature_reference is None  # no jem.feature_rank fit: no pixel fit stands in


def test_a_feature_fit_without_a_density_is_left_out_of_the_score(monkeypatch) -> None:
    """A jem.feature_rank fit of features too alike has no density: the model loads without
    it, as with no fit, instead of failing every score."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    flat = DataGaussian.fit(torch.ones(4, 3), rank=0)
    assert not flat.has_density
    state = {"feature_reference": flat.state_dict()}
    monkeypatch.setattr(ood, "load_model", lambda *_, **__: (energy, None, state))
    model = ood.load_classifier("run")
    assert model.feature_reference is None and model.reference is None


def test_a_checkpoint_with_only_its_chains_fitted_start_scores_with_it(monkeypatch) -> None:
    """A run whose chains started at data_gaussian without a jem.reference_components fit keeps
    the start alone: that fit is the pixel expert."""
    energy = ClassifierEnergy(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    start = DataGaussian.fit(torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)),
                             rank=1)
    state = {"init": start.state_dict()}
    monkeypatch.setattr(ood, "load_model", lambda *_, **__: (energy, None, state))
    assert torch.equal(ood.load_classifier("run").reference.means, start.means)


def test_reference_log_probs_are_float64_of_float32_images_batch_by_batch() -> None:
    pixels = DataGaussian.fit(torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(1)),
                              rank=1)
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    log_q = ood.reference_log_prob(pixels, x, batch_size=2)
    assert log_q.dtype == torch.float64
    torch.testing.assert_close(log_q, pixels.log_prob(x.double()))  # every batch, in order


class _BatchSizes(torch.nn.Module):
    """Passes its input on, noting each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(len(x))
        return x


def test_classifier_outputs_go_through_the_model_batch_size_images_at_a_time() -> None:
    sizes = _BatchSizes()
    energy = ClassifierEnergy(torch.nn.Sequential(sizes, torch.nn.Flatten(),
                                                  torch.nn.Linear(4, 2)))
    ood.classifier_outputs(energy, torch.zeros(5, 1, 2, 2), batch_size=2)
    assert sizes.sizes == [2, 2, 1]


def test_the_whole_table_with_zero_weights_and_zero_accuracy() -> None:
    """Weights of 0 are weights (the experts stay in the legend) and an accuracy of 0 is an
    accuracy; one line each, the scores in a column under the header."""
    table = {"reference_weight": 0.0, "feature_weight": 0, "weights_from": "training data",
             "n_inliers": 2, "n_outliers": 3, "auroc": {"stgconv": 0.75, "energy": 0.5},
             "accuracy": 0.0, "ece": 0.5, "ece_uncalibrated": 0.25, "temperature": 1.0}
    assert ood.format_ood_table(table) == (
        "OOD detection: 2 inliers vs 3 outliers (AUROC, 1 = separated; 'stgconv' = -E(x) + 0 "
        "log q(x) + 0 log r(phi(x)); q the Gaussians fitted to the training data, r those "
        "fitted to the network's features of it, weights set on the training data)\n"
        "score            AUROC\n"
        "stgconv         0.7500\n"
        "energy          0.5000\n"
        "inliers: accuracy 0.0000, ECE (15 bins) 0.5000 at the checkpoint's temperature 1 "
        "(0.2500 at 1)")
    unlabelled = ood.format_ood_table({**table, "accuracy": None})
    assert unlabelled.splitlines()[-1] == "inliers: no y_test, so no accuracy or ECE"


def test_the_table_gives_the_accuracy_and_both_eces() -> None:
    table = {"reference_weight": None, "feature_weight": None, "weights_from": None,
             "n_inliers": 2, "n_outliers": 3, "auroc": {"stgconv": 0.75}, "accuracy": 0.5,
             "ece": 0.125, "ece_uncalibrated": 0.25, "temperature": 2.0}
    assert ood.format_ood_table(table).endswith(
        "inliers: accuracy 0.5000, ECE (15 bins) 0.1250 at the checkpoint's temperature 2 "
        "(0.2500 at 1)")


def test_the_accuracy_counts_the_inliers_labelled_with_their_most_likely_class(
        arrays: dict[str, str], tmp_path: Path) -> None:
    model = ood.load_classifier(arrays["run"], device="cpu")
    with np.load(arrays["inliers"]) as archive:
        x = archive["x_test"]
    with torch.no_grad():
        logits = model.energy.logits(torch.from_numpy(x).float()[:, None] / 127.5 - 1)
    np.savez(tmp_path / "own.npz", x_test=x, y_test=logits.argmax(1).numpy())
    out = tmp_path / "ood.json"
    assert main(["eval", "ood", "--checkpoint", arrays["run"], "--inliers",
                 str(tmp_path / "own.npz"), "--outliers", arrays["outliers"], "--json", str(out),
                 "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["accuracy"] == 1.0


def test_images_given_as_data_are_refused_by_name_before_the_model_loads(tmp_path) -> None:
    """An array of images failed in pathlib, naming neither inliers nor outliers."""
    images = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="^inliers must be a file's path"):
        ood.eval_ood(tmp_path / "no_run", images)
    with pytest.raises(ValueError, match="^outliers must be a file's path"):
        ood.eval_ood(tmp_path / "no_run", tmp_path / "inliers.npz", torch.as_tensor(images))
