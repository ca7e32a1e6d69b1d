"""Fuzzing with hypothesis: the config loader, the mask and voxel loaders and the CLI's numeric
options, fed arbitrary input, end in a clear error (ValueError / OSError, or exit 2 with one
line) or a correct result, never another exception. A small example budget here; a larger one
is ``HYPOTHESIS_PROFILE=long`` (bench/README.md, "fuzz"). Each example records its outcome as a
hypothesis event ("refused: ValueError", "accepted", "exit 2" ...), so
``--hypothesis-show-statistics`` prints how the inputs ended."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency")
from hypothesis import HealthCheck, assume, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stgconv.cli import main  # noqa: E402
import yaml  # noqa: E402

from stgconv.config import (  # noqa: E402
    ExperimentConfig,
    apply_overrides,
    load_config,
    save_config,
)
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


# Any shape of --set: dotted paths through sections, list entries by index (a.0.b or a[0].b),
# and values that are whole YAML structures, over a file that has a multigrid section to reach.
PARTS = st.sampled_from([*SECTIONS, "multigrid", "grids", "sampler", "model", "size", "n_steps",
                         "arch", "layers", "completion", "learned", "name", "0", "1", "7", ""])
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.floats(allow_nan=True),
              st.sampled_from(["st", "mala", "voxels", "1e3", "&a [*a]"]), st.text(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(PARTS, inner, max_size=3)),
    max_leaves=8)
MULTIGRID_FILE = {"data": {"size": 16},
                  "multigrid": {"grids": [{"size": 4, "sampler": {"n_steps": 3}}, {"size": 16}]}}


def flow(value: object) -> str:
    """``value`` as a one-line YAML value, what a user types after ``--set key=``."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


def dotted(parts: list[str], brackets: bool) -> str:
    return "".join(f"[{part}]" if brackets and part.isdigit() and i else f"{'.' * bool(i)}{part}"
                   for i, part in enumerate(parts))


OVERRIDES = st.builds(lambda parts, brackets, value: f"{dotted(parts, brackets)}={flow(value)}",
                      st.lists(PARTS, min_size=1, max_size=4), st.booleans(), YAML_VALUES)


@settings(derandomize=True)
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_set_of_any_shape_loads_or_names_the_problem(tmp_path_factory, overrides: list[str]
                                                     ) -> None:
    """Never a TypeError, KeyError, IndexError or RecursionError; the file's dict is not
    changed; an override given twice is the override once (a mapping merges, it does not
    accumulate)."""
    data = yaml.safe_load(yaml.safe_dump(MULTIGRID_FILE))
    try:
        merged = apply_overrides(data, overrides)
    except ValueError as err:
        refused(err)
        return
    finally:
        assert data == MULTIGRID_FILE
    assert apply_overrides(data, [o for o in overrides for _ in range(2)]) == merged
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(MULTIGRID_FILE))
    try:
        config = load_config(path, overrides)
    except ValueError as err:
        refused(err)
        return
    event("accepted")
    assert load_config(path, [o for o in overrides for _ in range(2)]) == config


@settings(derandomize=True)
@given(section=st.sampled_from(["sampler", "data", "multigrid", "recovery"]), key=PARTS,
       value=YAML_VALUES)
def test_set_a_dotted_key_or_a_mapping_of_it_is_the_same(section: str, key: str,
                                                         value: object) -> None:
    """``--set a.b=v`` and ``--set a={b: v}`` where ``a`` exists: the same dict, or both refused."""
    # Under a section the file lacks, a digit is an entry of a list in the dotted form (refused
    # here: set the whole list) but a key in the mapping (refused by load_config as unknown).
    assume(not (key.isdigit() and section not in MULTIGRID_FILE))
    outcomes = []
    for override in (f"{section}.{key}={flow(value)}", f"{section}={flow({key: value})}"):
        try:
            outcomes.append(apply_overrides(MULTIGRID_FILE, [override]))
        except ValueError as err:
            outcomes.append(type(err))
    assert outcomes[0] == outcomes[1]


VALID_OVERRIDES = st.lists(st.sampled_from([
    "sampler.n_steps=3", "sampler={kind: hmc, n_leapfrog: 7}", "sampler.clamp=null",
    "multigrid={grids: [{size: 4, sampler: {n_steps: 2}}, {size: 16, model: {arch: descriptor4}}]}",
    "multigrid.grids[0].sampler.step_size=0.5", "multigrid.base_frames=null", "data.size=16",
    "model.layers=[[2, [3, 3], 1, [1, 1]]]", "recovery.completion={n_steps: 2}",
    "data={kind: voxels, categories: [chair, 1e3]}", "model.arch=desc32_small",
]), max_size=6)


@settings(derandomize=True)
@given(overrides=VALID_OVERRIDES,
       names=st.lists(st.sampled_from(["1e3", "-2E+5", "1_0e5", "null", "~/x", "a: b", "é"]),
                      min_size=2, max_size=2))
def test_a_saved_config_loads_back_the_same(tmp_path_factory, overrides: list[str],
                                            names: list[str]) -> None:
    """save_config -> load_config, plain and as a run's own config.yaml: multigrid grids (each
    keeping only what differs from the shared sampler), tuples, and names YAML could misread."""
    try:
        config = load_config(None, overrides, {"name": names[0], "data.path": names[1]})
    except ValueError as err:
        refused(err)
        return
    event("accepted")
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert load_config(path, saved=True) == config


@settings(derandomize=True)
@given(text=st.one_of(st.text(max_size=40), st.builds(
    lambda data: yaml.safe_dump(data), st.dictionaries(PARTS, YAML_VALUES, max_size=4))),
       saved=st.booleans())
def test_config_files_of_any_content_load_or_name_the_problem(tmp_path_factory, text: str,
                                                              saved: bool) -> None:
    """A user's file, or a run's own config.yaml whose unread settings are reset first."""
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reset settings are named in a warning
            config = load_config(path, saved=saved)
    except ValueError as err:
        refused(err)
        return
    event("accepted")
    assert isinstance(config, ExperimentConfig)


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
