"""Fuzzing with hypothesis: the config loader, the mask and voxel loaders and the CLI's numeric
options, fed arbitrary input, end in a clear error (ValueError / OSError, or exit 2 with one
line) or a correct result, never another exception. A small example budget here; a larger one
is ``HYPOTHESIS_PROFILE=long`` (bench/README.md, "fuzz"). Each example records its outcome as a
hypothesis event ("refused: ValueError", "accepted", "exit 2" ...), so
``--hypothesis-show-statistics`` prints how the inputs ended."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stgconv.cli import main  # noqa: E402
from stgconv.config import ExperimentConfig, load_config  # noqa: E402
from stgconv.data.voxel import VoxelShapes  # noqa: E402
from stgconv.tasks.recover_video import load_known  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


SECTIONS = {"model", "sampler", "chains", "data", "train", "recovery"}
KEYS = sorted({f"{section}.{f.name}" for section in SECTIONS
               for f in dataclasses.fields(type(getattr(ExperimentConfig(), section)))}
              | {"name", "seed", "device", "out_dir", "nonsense", "train.nonsense"})
VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", ".nan", "1e400", "[", "{", "]", "null", "~", "true",
                     "[1, 2]", "[[1, 2, 3]]", "{a: 1}", "''", "0", "-0", "1e-400", "0x10"]),
    st.text(max_size=12),
)


def refused(err: Exception) -> None:
    """A refusal must say what is wrong; counted per exception type."""
    assert str(err).strip()
    event(f"refused: {type(err).__name__}")


# Settings that must be positive (or null where null is allowed) in any config that loads.
POSITIVE = ["train.n_iterations", "train.batch_size", "train.accumulate", "train.lr",
            "chains.chains_per_example", "chains.buffer_capacity", "chains.factor", "data.size",
            "data.frames", "data.max_images", "model.reference_sigma", "sampler.n_steps",
            "sampler.task_steps", "sampler.step_size", "sampler.grad_clip", "sampler.n_leapfrog",
            "recovery.average_last"]


@given(key=st.sampled_from(KEYS), value=VALUES)
def test_config_overrides_load_or_name_the_problem(key: str, value: str) -> None:
    try:
        config = load_config(None, [f"{key}={value}"])
    except ValueError as err:
        refused(err)
        assert key.split(".")[-1] in str(err), err  # the refusal names the setting
        return
    event("accepted")
    assert isinstance(config, ExperimentConfig)
    for name in POSITIVE:
        section, field = name.split(".")
        setting = getattr(getattr(config, section), field)
        assert setting is None or setting > 0, (name, setting)


MASK_KINDS = st.sampled_from(["missing_frames", "region", "salt_and_pepper", "other", ""])


@given(kind=MASK_KINDS, value=st.one_of(st.floats(allow_nan=True).map(repr), st.text(max_size=6),
                                        st.integers(-5, 500).map(str)))
def test_generated_masks_are_right_or_refused(kind: str, value: str) -> None:
    shape = (6, 8, 8)
    try:
        known = load_known(f"{kind}:{value}", shape, seed=0)
    except (ValueError, OSError) as err:
        refused(err)
        return
    event("accepted")
    assert known.dtype == torch.bool and known.shape[-3:] == shape


@given(content=st.binary(max_size=300), suffix=st.sampled_from([".npz", ".mat", ".npy", ".h5"]))
def test_damaged_shape_files_are_refused_by_name(tmp_path_factory, content: bytes,
                                                 suffix: str) -> None:
    """Random bytes are never a shape file: refused, with a message naming it."""
    path = tmp_path_factory.mktemp("fuzz") / f"shapes{suffix}"
    path.write_bytes(content)
    with pytest.raises((ValueError, OSError)) as refusal:
        VoxelShapes(path)
    assert path.name in str(refusal.value)
    refused(refusal.value)


@pytest.mark.parametrize("arrays, refusal", [
    ("2d", r"expected a voxel grid \(R, R, R\) or a batch"),
    ("negative", r"expected occupancy in \[0, 1\]"),
    ("labels_short", "y must hold N=3"),
])
def test_odd_shape_arrays_are_refused_by_name(tmp_path: Path, arrays: str, refusal: str) -> None:
    path = tmp_path / "shapes.npz"
    grids = {"2d": np.zeros((4, 4), np.uint8), "negative": -np.ones((2, 4, 4, 4)),
             "labels_short": np.zeros((3, 4, 4, 4), np.uint8)}[arrays]
    extra = {"y": np.zeros(1)} if arrays == "labels_short" else {}
    np.savez(path, X=grids, **extra)
    with pytest.raises(ValueError, match=f"shapes.npz: {refusal}"):
        VoxelShapes(path)


def test_soft_and_empty_shape_arrays_are_read_as_they_are(tmp_path: Path) -> None:
    """Occupancy fractions are shapes (a down-sampled grid); no shapes is an empty set, which
    training refuses where it takes its examples."""
    np.savez(tmp_path / "soft.npz", X=np.full((2, 4, 4, 4), 0.5))
    assert len(VoxelShapes(tmp_path / "soft.npz")) == 2
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 4, 4, 4), np.uint8))
    assert len(VoxelShapes(tmp_path / "empty.npz")) == 0


@pytest.fixture(scope="module")
def tiny_texture_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("texture") / "run"
    assert main(["train", "--set", "data.path=builtin:brick", "--set", "data.size=16",
                 "--set", "model.layers=[[4, 5, 2]]", "--set", "train.n_iterations=1",
                 "--set", "sampler.n_steps=1", "--set", "chains.chains_per_example=1",
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    return out


# Valid values are kept small: a huge but valid --steps or -n is a correct run that takes
# hours. Huge sizes and counts past the allocation bound must be refused, so they are in.
NUMBERS = st.one_of(st.integers(-10**9, 8).map(str), st.floats(allow_nan=True).map(repr),
                    st.text(max_size=5))
BOUNDED_NUMBERS = st.one_of(NUMBERS, st.sampled_from(["100000000000", "10" * 12]))


@settings(max_examples=15)
@given(data=st.data(), option=st.sampled_from(["-n", "--steps", "--size", "--seed", "--class"]))
def test_synthesize_numeric_options_run_or_exit_2(tiny_texture_run: Path, trained_jem_run,
                                                  tmp_path_factory, capsys, data,
                                                  option: str) -> None:
    value = data.draw(BOUNDED_NUMBERS if option in ("-n", "--size", "--class") else NUMBERS)
    out = tmp_path_factory.mktemp("synth")
    # --class on the JEM run (3 classes), where 0 .. 2 sample and the rest are refused.
    run = trained_jem_run["run"] if option == "--class" else tiny_texture_run
    argv = ["synthesize", str(run), "--out", str(out), "--device", "cpu",
            "--steps", "1", "-n", "1", option, value]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse refuses a value that is not a number
        code = exit_info.code
    err = capsys.readouterr().err
    assert code in (0, 2), err
    event(f"exit {code}")
    if code == 2:
        assert "Traceback" not in err and err.strip()
