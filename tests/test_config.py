"""Configuration: defaults in code, YAML files and ``--set`` overrides change only what they say,
unknown keys and wrong types are errors naming the key, and every shipped config loads. A bad
multigrid section is refused, by ``load_config`` and by ``stgconv train`` (exit 2), naming the
problem; a grid's sampler overrides the experiment's key by key."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from _tiny import run_cli, write_config

from stgconv.checks import FLOAT32_MAX, SEED_LIMIT
from stgconv.config import (
    CooperativeConfig,
    DataConfig,
    ExperimentConfig,
    InitializerConfig,
    JEMConfig,
    ModelConfig,
    ModelOfOtherData,
    MultiGridConfig,
    RecoveryConfig,
    SamplerConfig,
    TrainConfig,
    UnknownKeys,
    UnreadSetting,
    WithdrawnSetting,
    WrongType,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    fill_model,
    initializer_factors,
    load_config,
    parse_override,
    read_yaml,
    resolve_device,
    save_config,
    without_unread_settings,
)

REPO = Path(__file__).resolve().parent.parent
# configs/ and the package's own (the recovery default, package data).
# configs/video/recovery_quick.yaml links to the package's copy: each file once.
SHIPPED_CONFIGS = sorted({path.resolve() for path in [*REPO.glob("configs/**/*.yaml"),
                                                      *REPO.glob("stgconv/configs/*.yaml")]})


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def changed(a: ExperimentConfig, b: ExperimentConfig) -> dict[str, tuple]:
    """Flattened ``{"section.key": (a_value, b_value)}`` of the fields that differ."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    fa, fb = flat(config_to_dict(a)), flat(config_to_dict(b))
    return {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k]}


def test_defaults_load() -> None:
    config = load_config()
    assert config == ExperimentConfig()
    assert config.model.arch == "texture"
    assert config.data.path == "builtin:brick"
    assert config.sampler.clamp == (-1.0, 1.0)
    # The quick start's model and chains (README "Quick start" trains with them).
    assert (config.model.reference_sigma, config.chains.chains_per_example) == (0.05, 8)


def test_empty_yaml_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == ExperimentConfig()


def test_yaml_override_changes_only_what_it_says(tmp_path: Path) -> None:
    path = write(tmp_path, "name: bricks\ntrain:\n  lr: 0.002\n"
                           "model:\n  layers: [[8, 5, 2], [8, 3, 1]]\n")
    config = load_config(path)
    assert changed(ExperimentConfig(), config) == {
        "name": ("experiment", "bricks"),
        "train.lr": (0.01, 0.002),
        "model.layers": (None, [[8, 5, 2], [8, 3, 1]]),
    }
    assert config.model.layers == ((8, 5, 2), (8, 3, 1))  # tuples inside the frozen config


def test_set_overrides_apply_on_top_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr: 0.002\n  batch_size: 4\n")
    config = load_config(path, ["train.lr=0.001", "sampler.clamp=null", "data.size=32",
                                "device=cpu"])
    assert changed(ExperimentConfig(), config) == {
        "train.lr": (0.01, 0.001),
        "train.batch_size": (16, 4),
        "sampler.clamp": ([-1.0, 1.0], None),
        "data.size": (64, 32),
        "device": ("auto", "cpu"),
    }


def test_a_home_folder_heads_every_path_a_config_file_gives(tmp_path: Path, monkeypatch) -> None:
    """data.path and out_dir took "~" for the home folder; recovery.learned.prior, the third
    path a config names, was looked for in a folder named "~"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(write(tmp_path, "data: {path: ~/clip.mp4}\nout_dir: ~/run\n"
                                         "recovery: {init: learned, learned: {prior: "
                                         "~/prior.pt}}\n"))
    assert (config.data.path, config.out_dir, config.recovery.learned.prior) == (
        str(tmp_path / "clip.mp4"), str(tmp_path / "run"), str(tmp_path / "prior.pt"))
    assert load_config(None, ['out_dir="~"']).out_dir == str(tmp_path)  # the home folder itself
    assert load_config().recovery.learned.prior is None
    # An empty name is refused (it failed only once the clip had loaded, "fill prior not
    # found: "), not taken for no prior at all.
    with pytest.raises(ValueError, match="recovery.learned.prior must name a file written by "
                                         "stgconv fill-prior, or be null"):
        load_config(None, ['recovery.learned.prior=""'])


def test_exponent_floats_without_a_dot() -> None:
    """PyYAML alone reads ``1e-4`` as a string; config values must read it as a number."""
    assert load_config(None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    assert load_config(None, ["train.betas=[0.5, 9.99e-1]"]).train.betas == (0.5, 0.999)
    for text in ("2e2", "2E+2", "2.e2"):  # unsigned and plus-signed exponents too
        assert load_config(None, [f"sampler.step_size={text}"]).sampler.step_size == 200.0


def test_one_override_string_is_refused_as_a_missing_list() -> None:
    """load_config(None, "train.lr=0.1") read the string as overrides of one character each
    and refused the first, "t", as not looking like key=value."""
    with pytest.raises(ValueError, match=r"^overrides must be a list of key=value strings, got "
                                         r"the string 'train.lr=0.1': give \['train.lr=0.1'\]$"):
        load_config(None, "train.lr=0.1")


def test_apply_overrides_does_not_modify_its_input() -> None:
    data = {"train": {"lr": 0.5}}
    merged = apply_overrides(data, ["train.lr=0.25", "model.layers=[[4, 3, 1]]"])
    assert merged == {"train": {"lr": 0.25}, "model": {"layers": [[4, 3, 1]]}}
    assert data == {"train": {"lr": 0.5}}


def test_apply_overrides_copies_what_it_puts_in() -> None:
    """A later override changed an earlier value in place: the caller's ``values`` mapping, or
    every entry a YAML alias (``*g``) had put in the same list."""
    grids = [{"size": 4}]
    apply_overrides({}, [], {"multigrid.grids": grids, "multigrid.grids.0.size": 8})
    assert grids == [{"size": 4}]
    merged = apply_overrides({}, ["multigrid.grids=[&g {size: 4}, *g]", "multigrid.grids.0.size=2"])
    assert merged["multigrid"]["grids"] == [{"size": 2}, {"size": 4}]


def test_a_list_that_holds_itself_is_refused_by_name() -> None:
    """YAML builds ``&a [*a]`` as a list inside itself: copied as it is, not copied forever."""
    with pytest.raises(ValueError, match=r"model\.layers\[0\]\[0\] must be an integer"):
        load_config(None, ["model.layers=&a [*a]"])


def test_parse_override() -> None:
    assert parse_override("train.lr=0.001") == (["train", "lr"], 0.001)
    assert parse_override("name=a=b") == (["name"], "a=b")
    assert parse_override(" train.lr =0.5") == (["train", "lr"], 0.5)  # spaces around the key
    for bad in ("train.lr", "=3"):
        with pytest.raises(ValueError, match="key=value"):
            parse_override(bad)


@pytest.mark.parametrize("text", [".train.lr=1", "train..lr=1", "train.=1"])
def test_an_override_key_with_an_empty_part_is_refused(text: str) -> None:
    """Refused as an unknown key "" ("unknown config key(s) ; valid keys: ...") or "train."."""
    key = text.partition("=")[0]
    with pytest.raises(ValueError, match=rf"^override '{re.escape(text)}': the key "
                                         rf"'{re.escape(key)}' has an empty part between its "
                                         r"dots; keys look like train.lr$"):
        load_config(None, [text])


@pytest.mark.parametrize("text, comment", [("data.path=/runs/a #2/x.png", "#2/x.png"),
                                           ("train.lr=0.1 # was 0.01", "# was 0.01"),
                                           ("out_dir=# where?", "# where?")])
def test_an_override_that_yaml_would_cut_at_a_comment_is_refused(text: str, comment: str) -> None:
    with pytest.raises(ValueError, match=f"YAML reads '{re.escape(comment)}' as a comment"):
        parse_override(text)
    # quoted, or without the space before '#', the whole value is kept
    key, _, raw = text.partition("=")
    assert parse_override(f"{key}='{raw}'")[1] == raw
    assert parse_override("data.path=/runs/a#2/x.png")[1] == "/runs/a#2/x.png"


def test_invalid_yaml_is_named_with_its_line_and_column(tmp_path: Path) -> None:
    # One line, counted from 1 as editors do: the unclosed list runs into 'seed:' on line 4.
    path = write(tmp_path, "train:\n  lr: 0.1\n  betas: [0.5, 0.9\nseed: 1\n")
    with pytest.raises(ValueError, match=r"c\.yaml is not valid YAML: expected ',' or ']', but "
                                         r"got ':' at line 4, column 5$"):
        read_yaml(path)


def test_override_into_a_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="'lr' is not a config section"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])


@pytest.mark.parametrize(
    "override, key",
    [("bogus=1", "bogus"), ("train.lrr=0.1", "train.lrr"),
     ("model.layer=[[4, 3, 1]]", "model.layer")],
)
def test_unknown_keys(override: str, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("saved, override", [
    ({}, "recovery.learned.redraw_every=3"),
    ({"recovery": {"learned": 5}}, "recovery.learned={redraw_every: 3}"),
])
def test_a_withdrawn_setting_an_override_puts_where_the_saved_config_has_none_is_refused(
        saved: dict, override: str) -> None:
    """A saved config (a hand-edited config.yaml) without the section, or with a value for it,
    that an override puts the withdrawn key in: the override's own, refused by name, not a
    KeyError or AttributeError traceback from leaving it out of the saved config."""
    with pytest.raises(WithdrawnSetting, match=r"^recovery\.learned\.redraw_every is a setting "):
        without_unread_settings(saved, "saved", [override])


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError,
                       match=r"unknown config key\(s\) sampler\.n_step\b.*valid keys:.*n_steps"):
        load_config(write(tmp_path, "sampler:\n  n_step: 3\n"))


@pytest.mark.parametrize("text, overrides, source", [
    ("sampler:\n  n_step: 3\n", ["train.lr=0.1"], r"\S+c\.yaml"),
    ("train:\n  lr: 0.1\n", ["sampler.n_step=3", "train.lr=0.2"],
     r"--set sampler\.n_step=3"),
    ("train:\n  lr: 0.1\n", ["sampler={n_step: 3}"], r"--set sampler=\{n_step: 3\}"),
    ("sampler:\n  n_step: 3\n", ["sampler={n_step: 3, bogus: 1}"],
     r"\S+c\.yaml and --set sampler=\{n_step: 3, bogus: 1\}"),
])
def test_unknown_key_names_its_source(tmp_path: Path, text: str, overrides: list[str],
                                      source: str) -> None:
    """"unknown config key(s) bogus" did not say whether the file (a hand-edited config.yaml)
    or a --set held it."""
    keys = r"(sampler\.bogus, )?sampler\.n_step"
    with pytest.raises(ValueError, match=rf"^{source}: unknown config key\(s\) {keys} "):
        load_config(write(tmp_path, text), overrides)


@pytest.mark.parametrize("text, held", [
    ("- train: {lr: 1}\n", "a list"),
    ("train.lr=0.002\n", r"'train\.lr=0\.002' \(key=value is --set's form; a file writes "
                         r"key: value\)"),
    ("3\n", "3")])
def test_a_file_of_no_mapping_says_what_it_holds(tmp_path: Path, text: str, held: str) -> None:
    """"must hold a mapping at the top level" did not say what the file held instead."""
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^config file {re.escape(str(path))} must hold a "
                                         rf"mapping \(key: value lines\) at the top level, got "
                                         rf"{held}$"):
        load_config(path)


@pytest.mark.parametrize("line", ["lr:0.002", "lr 0.002"])
def test_a_key_without_its_colon_and_space_is_explained(tmp_path: Path, line: str) -> None:
    """``lr:0.002`` (no space) or ``lr 0.002`` is text to YAML: the section was refused as
    "must be a mapping, got 'lr:0.002'", not saying why."""
    with pytest.raises(ValueError, match=rf"^config section train must be a mapping, got "
                                         rf"'{line}' \(YAML reads it as text: write each key as "
                                         r"key: value, a space after the colon,"):
        load_config(write(tmp_path, f"train:\n  {line}\n"))


def test_a_dotted_key_in_a_file_is_told_to_nest(tmp_path: Path) -> None:
    """``train.lr: 0.002``, a --set copied into a file, is one key to YAML: it was refused as an
    unknown key, not saying how a file writes it."""
    with pytest.raises(UnknownKeys, match=r"unknown config key\(s\) recovery\.learned\.lr "
                                          r"in section 'recovery'; valid keys: .* \(learned\.lr "
                                          r"is how --set names it; in YAML, nest it: learned: "
                                          r"and, indented beneath, lr:\)$"):
        load_config(write(tmp_path, "recovery:\n  learned.lr: 0.002\n"))
    with pytest.raises(UnknownKeys, match=r"valid keys: [a-z_, ]*$"):
        load_config(write(tmp_path, "trian.lr: 0.002\n"))


@pytest.mark.parametrize("text, message", [
    # PyYAML keeps the last of a repeated key: the first section's lr and n_iterations vanished.
    ("train:\n  lr: 0.1\n  n_iterations: 7\ntrain:\n  batch_size: 4\n",
     r"config key 'train' is given twice \(line 4\)"),
    ("sampler:\n  n_steps: 3\n  n_steps: 4\n", r"config key 'n_steps' is given twice \(line 3\)"),
    # Keys YAML reads as numbers or booleans are named, not a TypeError.
    ("train:\n  1: 2\n", r"unknown config key\(s\) train\.1 in"),
    ("train:\n  on: 3\n  1e-3: 4\n", r"unknown config key\(s\) train\.0\.001, train\.True in"),
    # 1 and true are equal in Python, but two keys in the file: not "given twice".
    ("train:\n  1: 2\n  true: 3\n", r"unknown config key\(s\) train\.1\b"),
    # A key YAML reads as a list or a mapping could not be looked up: a TypeError, a traceback.
    ("? [a]\n: 1\n", r"not valid YAML: found a key that is not a name \(\['a'\]\) at line 1"),
    ("train: {? {lr: 1} : 2}\n", r"found a key that is not a name \(\{'lr': 1\}\) at line 1"),
])
def test_repeated_and_non_text_keys_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("value, read_as, kind", [
    ("1:30", 90, "base 60"), ("010", 8, "octal"), ("-0_10", -8, "octal"),
    ("1:30.5", 90.5, "base 60")])
def test_numbers_yaml_1_1_reads_as_another_number_are_refused(tmp_path: Path, value: str,
                                                               read_as: float, kind: str) -> None:
    """PyYAML follows YAML 1.1, where seed: 010 is 8 and train.n_iterations=1:30 is 90, both
    silently; refused in a file and in a --set, naming the value; 07, 0 and a quoted "1:30"
    read as typed."""
    said = (rf"the value {value} \(line 2\) reads as {read_as} \({kind}, as YAML 1\.1 has "
            r"it\): write the number in decimal, or quote it for text")
    path = write(tmp_path, f"# a comment\nseed: {value}\n")
    with pytest.raises(ValueError, match=rf"^config file {re.escape(str(path))}: {said}$"):
        load_config(path)
    with pytest.raises(ValueError, match=rf"^override 'seed={value}': "
                                         + said.replace("line 2", "line 1")):
        load_config(None, [f"seed={value}"])
    assert load_config(None, ["seed=07"]).seed == 7 and load_config(None, ["seed=0"]).seed == 0
    assert load_config(None, ['name="1:30"']).name == "1:30"


def test_aliases_repeated_inside_one_another_are_refused_before_they_expand(
        tmp_path: Path) -> None:
    """A "billion laughs": each line ten aliases of the one before. Copied for the overrides,
    every alias its own copy, nine such lines (400 bytes) took time and memory without end
    before any check; here six (a million values, seconds to copy), refused at once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    with pytest.raises(ValueError, match=r"config file .*: the config holds more than 100000 "
                                         r"values once each value it repeats"):
        load_config(write(tmp_path, "\n".join(lines) + "\n"))
    # The same in a --set value names the override, as the file's message names the file.
    value = "[" + ", ".join(line.split(": ", 1)[1] for line in lines) + "]"
    with pytest.raises(ValueError, match=r"^override of model\.layers: the config holds more "
                                         r"than 100000 values"):
        load_config(None, [f"model.layers={value}"])


def test_a_config_of_the_most_values_is_copied_and_one_more_refused() -> None:
    from stgconv.config import MOST_CONFIG_VALUES, _deep_copy

    values = ["x"] * (MOST_CONFIG_VALUES - 1)  # and the list holding them
    assert _deep_copy(values) == values
    with pytest.raises(ValueError, match=rf"holds more than {MOST_CONFIG_VALUES} values"):
        _deep_copy([*values, "x"])


def test_values_nested_too_deeply_to_read_are_named(tmp_path: Path) -> None:
    """PyYAML reads nesting by recursion: 2,000 brackets stopped it with a RecursionError (a
    traceback); the copy of a checkpoint's config as well."""
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(ValueError, match=r"config file .* nests lists or mappings inside one "
                                         r"another too deeply"):
        load_config(write(tmp_path, f"train:\n  lr: {deep}\n"))
    # Named by its key: the 4,000 brackets of the value filled the message's line.
    with pytest.raises(ValueError, match=r"^override of train\.lr: the value nests lists") as err:
        load_config(None, [f"train.lr={deep}"])
    assert len(str(err.value)) < 200
    with pytest.raises(ValueError, match=r"^override of train\.lr: the value nests lists"):
        load_config(None, [f" train.lr ={deep}"])  # the key as the config knows it
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(ValueError, match=r"^saved: the config nests lists"):
        without_unread_settings({"train": {"lr": nested}}, "saved")


def test_a_merged_section_may_override_what_it_merges(tmp_path: Path) -> None:
    """YAML's merge key copies a section (``<<: *shared``); keys given beside it replace the
    copied ones. They were refused as 'given twice'."""
    config = load_config(write(tmp_path, "sampler: &shared\n  n_steps: 5\n  step_size: 0.02\n"
                                         "recovery:\n  completion:\n    <<: *shared\n"
                                         "    n_steps: 2\n"))
    assert (config.recovery.completion.n_steps, config.recovery.completion.step_size) == (2, 0.02)
    with pytest.raises(ValueError, match=r"config key 'n_steps' is given twice \(line 7\)"):
        load_config(write(tmp_path, "sampler: &shared\n  n_steps: 5\nrecovery:\n  completion:\n"
                                    "    <<: *shared\n    n_steps: 2\n    n_steps: 3\n"))

    # Two mappings merged giving a key: YAML keeps the first's, PyYAML 6.0.4 the last's.
    merges = ("fast: &fast\n  lr: 0.1\nbase: &base\n  lr: 0.001\n  batch_size: 4\n"
              "train:\n  <<: [*fast, *base]\n")
    with pytest.raises(ValueError, match=r"config key 'lr' is given by two of the mappings "
                                         r"merged on line 7; .* give the key beside the <<"):
        read_yaml(write(tmp_path, merges))
    with pytest.raises(ValueError, match=r"config key 'lr' is given by two of the mappings "
                                         r"merged on line 8; "):
        read_yaml(write(tmp_path, merges.replace("[*fast, *base]", "*fast\n  <<: *base")))
    data = read_yaml(write(tmp_path, merges.replace("*base]", "*base]\n  lr: 0.01")
                           .replace("  lr: 0.001\n", "")))
    assert data["train"] == {"lr": 0.01, "batch_size": 4}


def test_a_tab_is_named_with_its_fix(tmp_path: Path) -> None:
    """A tab an editor put in was "found character '\\t' that cannot start any token", which does
    not say what to do."""
    said = (r"found character '\\t' that cannot start any token at line 2, column 1; write "
            r"spaces instead of the tab$")
    path = write(tmp_path, "train:\n\tlr: 0.002\n")
    with pytest.raises(ValueError, match=rf"^config file {re.escape(str(path))} is not valid "
                                         rf"YAML: {said}"):
        load_config(path)
    with pytest.raises(ValueError, match=r"line 1, column 8; write spaces instead of the tab\)$"):
        load_config(None, ["train={lr: 1,\tbatch_size: 2}"])


def test_a_date_is_text(tmp_path: Path) -> None:
    """YAML 1.1 reads 2026-12-07 as a date, which no setting takes: a run named for its day was
    refused as "got datetime.date(2026, 12, 7)". It is text, in a file, a --set and a run's saved
    config.yaml, which reads it back."""
    config = load_config(write(tmp_path, "name: 2026-12-07\nout_dir: 2026-12-07 10:00:00\n"))
    assert (config.name, config.out_dir) == ("2026-12-07", "2026-12-07 10:00:00")
    assert load_config(None, ["name=2026-12-07"]).name == "2026-12-07"
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config
    with pytest.raises(ValueError, match=r"^--set train\.lr=2026-12-07: train\.lr must be a "
                                         r"number, got '2026-12-07'$"):
        load_config(None, ["train.lr=2026-12-07"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.n_iterations=ten", r"train\.n_iterations must be an integer"),
        ("train.batch_size=2.0", r"train\.batch_size must be an integer"),
        # A count in exponent notation is a float to YAML: the integer to write is named.
        ("train.n_iterations=1e4", r"^train\.n_iterations must be an integer, got 10000\.0 "
                                   r"\(YAML reads 1e4 or 10000\.0 as a float: write 10000\)$"),
        ("train.batch_size=true", r"train\.batch_size must be an integer"),
        # The reader's own check: no later one looks at the sampler's integers again.
        ("sampler.n_steps=true", r"sampler\.n_steps must be an integer, got True"),
        ("sampler.step_size=true", r"sampler\.step_size must be a number"),
        ("sampler.step_size='0.1'", r"sampler\.step_size must be a number"),
        ("sampler.kind=gibbs", r"sampler\.kind must be one of \['langevin', 'mala', 'hmc'\]"),
        ("data.channels=2", r"data\.channels must be one of \[1, 3\]"),
        ("data.channels=true", r"data\.channels must be one of \[1, 3\]"),
        ("data.channels=1.0", r"data\.channels must be one of \[1, 3\]"),
        ("sampler.clamp=[0, 1, 2]", r"sampler\.clamp must have 2 entries"),
        ("train.betas=0.5", r"train\.betas must be a list"),
        ("model.layers=[[8, x, 1]]", r"model\.layers\[0\]\[1\] must be an integer"),
        # A null where no null is allowed: past the reader, a TypeError from the layer check.
        ("model.layers=[[8, null, 1]]", r"model\.layers\[0\]\[1\] must be an integer, got None"),
        # An empty value (--set train.lr=$LR, LR unset) is null to YAML: said so.
        ("train.lr=", r"^train\.lr must be a number, got None \(YAML reads an empty value, ~ or "
                      r"null as None\)$"),
        ("name=", r"^name must be a str, got None \(YAML reads an empty value"),
        ("sampler.cuda_graph=", r"^sampler\.cuda_graph must be a bool, got None \(YAML reads"),
        ("name=5", r"name must be a str"),
        ("name=true", r"name must be a str, got True"),
        # A number where a word goes: 007 and 1e3 were refused as "got 7", "got 1000.0".
        ("name=007", r"^name must be a str, got 7 \(YAML reads a bare number as a number: "
                     r"quote it for text\)$"),
        ("sampler.kind=1e3", r"got 1000\.0 \(YAML reads a bare number as a number: quote it"),
        # A bare yes/no/on/off is a boolean to YAML 1.1: where a word is expected, said so.
        ("name=off", r"name must be a str, got False \(YAML reads a bare yes, no, on, off, true "
                     r"or false as a boolean: quote the word\)$"),
        ("sampler.kind=yes", r"sampler\.kind must be one of \['langevin', 'mala', 'hmc'\], got "
                             r"True \(YAML reads a bare yes, no, on, off, true or false as a "
                             r"boolean: quote the word\)$"),
        ("data.channels=on", r"data\.channels must be one of \[1, 3\], got True$"),
        ("model=3", r"config section model must be a mapping"),
    ],
)
def test_wrong_types(override: str, message: str) -> None:
    # A message anchored at its start follows the name of the --set that gave the value.
    given = message.replace("^", "^" + re.escape(f"--set {override}: "), 1)
    with pytest.raises(ValueError, match=given):
        load_config(None, [override])


def test_a_wrong_type_names_the_file_or_the_set_that_gave_it(tmp_path: Path) -> None:
    """"train.lr must be a number, got 'fast'" named the key alone: the user had to look for
    it in the file and in every --set. The one that gave the value refused is named; a
    command's own option (values) is named by the command, and the message left as it was."""
    path = write(tmp_path, "train:\n  lr: fast\n")
    with pytest.raises(WrongType, match=rf"^{re.escape(str(path))}: train\.lr must be a number, "
                                        r"got 'fast'$"):
        load_config(path, ["sampler.n_steps=3"])
    # The last to set it gave the value: a --set over the file's, a later --set over an earlier.
    with pytest.raises(WrongType, match=r"^--set train\.lr=slow: train\.lr must be a number"):
        load_config(path, ["train.lr=0.1", "train.lr=slow"])
    with pytest.raises(WrongType, match=r"^--set train={lr: slow}: train\.lr must be"):
        load_config(None, ["train={lr: slow}", "sampler.n_steps=3"])
    with pytest.raises(WrongType, match=r"^--set multigrid\.grids\[1\]\.size=big: "
                                        r"multigrid\.grids\[1\]\.size must be an integer"):
        load_config(REPO / "configs/video/multigrid_flag_quick.yaml",
                    ["multigrid.grids[1].size=big"])
    with pytest.raises(WrongType, match=r"^train\.lr must be a number, got 'quick'$"):
        load_config(path, values={"train.lr": "quick"})


@pytest.mark.parametrize(
    "override, key",
    [
        ("sampler.n_steps=0", "sampler.n_steps"),
        ("sampler.task_steps=0", "sampler.task_steps"),
        # Checked when the config is read, not first when recovery builds its sampler.
        ("recovery.completion.n_steps=0", "recovery.completion.n_steps"),
        ("sampler.step_size=-0.1", "sampler.step_size"),
        ("chains.buffer_fresh=1.5", "chains.buffer_fresh"),
        ("chains.chains_per_example=0", "chains.chains_per_example"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.accumulate=0", "train.accumulate"),
        ("data.size=0", "data.size"),
        # Values that used to pass and give a silent wrong result: no iterations, no checkpoint.
        ("train.n_iterations=0", "train.n_iterations"),
        ("train.n_iterations=-3", "train.n_iterations"),
        # No float setting means anything at NaN or infinity.
        ("sampler.step_size=.nan", "sampler.step_size"),
        ("sampler.step_size=.inf", "sampler.step_size"),
        # Refused as it is read: no later range check of chains.init_scale sees infinity.
        ("chains.init_scale=.inf", "chains.init_scale must be a finite number, got inf"),
        ("train.lr=1e400", "train.lr"),
        # Finite, but infinite in float32: Adam's first step failed with a traceback.
        ("train.lr=1e300", "train.lr must be within float32's range (at most 3.403e+38 in size), "
         "got 1e+300"),
        ("chains.init_scale=-1e39", "chains.init_scale must be within float32's range"),
        # Finite, but 0 in float32: Adam stepped by nothing, and the run learnt nothing.
        ("train.lr=1e-50", "train.lr is 1e-50, which float32 (the tensors it scales) holds as "
         "0.0: a setting other than 0 must be at least 1.175e-38 in size (float32's smallest "
         "normal number)"),
        ("cooperative.lr=1e-40", "cooperative.lr is 1e-40, which float32"),
        ("initializer.lr=-1e-45", "initializer.lr is -1e-45, which float32"),
        ("sampler.clamp=[-.inf, 1]", r"sampler.clamp[0]"),
        ("sampler.clamp=[1, -1]", "sampler.clamp must be [low, high] with low < high"),
        ("sampler.clamp=[1, 1]", "sampler.clamp must be [low, high] with low < high"),
        ("train.energy_l2=-0.1", "train.energy_l2"),
        # Each names its own key and value (one message for both named neither).
        ("chains.data_noise=-0.1", "chains.data_noise must be >= 0, got -0.1"),
        ("chains.init_scale=-2", "chains.init_scale must be >= 0, got -2"),
        # Refused as out of range, not only as a setting that Langevin leaves unread.
        ("sampler.n_leapfrog=0", "sampler.n_leapfrog must be positive"),
        ("sampler.step_jitter=1", "sampler.step_jitter must be in [0, 1) (a share of the "
                                  "step size), got 1.0"),
        ("sampler.step_jitter=.nan", "sampler.step_jitter must be a finite number, got nan"),
        ("data.frames=0", "data.frames must be positive"),
        ("chains.buffer_capacity=0", "chains.buffer_capacity must be positive"),
        ("recovery.average_last=0", "recovery.average_last must be positive"),
        ("recovery.learned.patterns=0", "recovery.learned.patterns must be positive"),
        ("recovery.learned.lr=0", "recovery.learned.lr must be positive"),
        ("chains.missing=.nan", "chains.missing"),
        ("sampler.noise_scale=-1", "sampler.noise_scale"),
        # Finite, but the noise overflowed float32 in the first step (a traceback).
        ("sampler.noise_scale=1e37", "sampler.noise_scale times sampler.step_size (each "
         "step's noise) must be at most 1000, got 1e+37 x 0.015"),
        ("train.betas=[0.5, 1.0]", "train.betas"),
        ("train.checkpoint_every=-1", "train.checkpoint_every"),
        # A negative one dropped images from the end ([:-1]), 0 crashed in the trainer.
        ("data.max_images=0", "data.max_images"),
        ("data.max_images=-1", "data.max_images"),
        ("sampler.grad_clip=0", "sampler.grad_clip"),
        ("recovery.step_scale_power=-1", "recovery.step_scale_power"),
        ("recovery.holdout=1", "recovery.holdout"),
        ("model.reference_sigma=0", "model.reference_sigma"),
        # Shown valid by --print-config, refused only once the data had loaded.
        ("model.in_channels=0", "model.in_channels must be positive, got 0"),
        ("model.image_size=-1", "model.image_size must be positive, got -1"),
        ("chains.missing=1", "chains.missing must be in (0, 1)"),
        ("data.mean=1.5", "data.mean must be in [0, 1]"),
        ("recovery.learned.starts=[median]", "recovery.learned.starts: unknown fill(s)"),
        ("recovery.learned.fills=[]", "recovery.learned.fills must name at least one"),
        ("recovery.learned.hide_fraction=0", "recovery.learned.hide_fraction must be in (0, 1]"),
        ("recovery.learned.loss=absolute", "recovery.learned.loss must be one of ['squared'"),
        ("recovery.learned.precision=fp16", "recovery.learned.precision must be one of"),
        # Its own range, not the refusal of a setting that chains.init leaves unread.
        ("chains.init_rank=-1", "chains.init_rank must be >= 0, got -1"),
        # Sizes whose tensors would not fit in memory are refused before any allocation.
        ("data.size=100000", "data.size=100000"),
    ],
)
def test_invalid_values(override: str, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.start_frame=-1", "data.start_frame must be >= 0, got -1"),
        ("data.fps=0", "data.fps must be a finite number of at least 1e-6 frames per second, "
         "got 0.0"),
        ("data.fps=-25", "data.fps must be a finite number of at least 1e-6 frames per second"),
        ("data.fps=1e-9", "data.fps must be a finite number of at least 1e-6 frames per second"),
    ],
)
def test_clip_settings_are_checked_with_the_config(override: str, message: str) -> None:
    """Refused as the config is read (train --print-config showed them as valid), naming the
    config's key, where the clip's reader named its own argument (fps)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, ["data.kind=video", "model.arch=st_small", override])


def test_range_limits_that_are_allowed() -> None:
    config = load_config(None, ["recovery.learned.hide_fraction=1", "data.kind=voxels",
                                "model.arch=desc32_small", "data.mean=1.0",
                                f"train.lr={FLOAT32_MAX!r}",
                                "recovery.step_scale=interpolation_spread",
                                "recovery.step_scale_power=0"])
    assert (config.recovery.learned.hide_fraction, config.recovery.step_scale_power) == (1.0, 0.0)
    assert config.train.lr == FLOAT32_MAX  # float32's largest is within its range
    config = load_config(None, ["chains.mode=buffer", "chains.buffer_fresh=0",
                                "chains.init=data_gaussian", "chains.init_noise=1",
                                f"seed={SEED_LIMIT - 1}"])
    assert (config.chains.buffer_fresh, config.chains.init_noise, config.seed) == (
        0.0, 1.0, SEED_LIMIT - 1)
    # A video_frames example is one frame: 16 frames of this size would pass the entry limit.
    assert load_config(None, ["data.kind=video_frames", "data.size=5000"]).data.size == 5000
    # Each range's closed end: an isotropic base Gaussian, the whole batch in the contrastive
    # terms, a first Adam moment of no memory; and an .NPZ file is an .npz.
    for overrides in ([*MULTIGRID, "multigrid.base_rank=0"], [*JEM, "jem.px_batch=16"],
                      [*JEM, "data.path=X.NPZ"], ["cooperative={betas: [0, 0.5]}"]):
        load_config(None, overrides)


@pytest.mark.parametrize("value, shown", [("3", "3"), ("-1", "-1"), ("y", "'y'"),
                                          ("1.0", "1.0"), ("true", "True")])
def test_an_up_axis_other_than_0_1_or_2_is_refused_naming_the_key(value: str, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^--set data\.up_axis={re.escape(value)}: "
                                         rf"data\.up_axis must be one of \[0, 1, 2\], "
                                         rf"got {re.escape(shown)}$"):
        load_config(None, ["data.kind=voxels", "model.arch=desc32_small", f"data.up_axis={value}"])
    # Built in Python, where the file's reader does not check it.
    with pytest.raises(ValueError, match=rf"^data\.up_axis must be 0, 1 or 2, got "
                                         rf"{re.escape(repr(yaml.safe_load(value)))} \(the "):
        ExperimentConfig(data=DataConfig(kind="voxels", up_axis=yaml.safe_load(value)),
                         model=ModelConfig(arch="desc32_small"))


def test_the_up_axis_is_saved_with_the_run_config(tmp_path: Path) -> None:
    """A resumed run reads its config.yaml: it must voxelize the meshes as the run began."""
    config = load_config(None, ["data.kind=voxels", "model.arch=desc32_small", "data.up_axis=1"])
    save_config(config, tmp_path / "config.yaml")
    assert read_yaml(tmp_path / "config.yaml")["data"]["up_axis"] == 1
    assert load_config(tmp_path / "config.yaml", saved=True) == config


def test_a_string_given_for_a_list_is_refused_not_split_into_letters() -> None:
    with pytest.raises(ValueError, match=r"^--set data\.categories=chair: "
                                         r"data\.categories must be a list, got 'chair'$"):
        load_config(None, ["data.kind=voxels", "model.arch=desc32_small", "data.categories=chair"])


def test_a_nan_given_in_python_is_refused() -> None:
    # Files and --set refuse NaN when they are read; a config built in Python is checked too.
    with pytest.raises(ValueError, match="train.lr must be positive, got nan"):
        dataclasses.replace(ExperimentConfig(), train=dataclasses.replace(
            ExperimentConfig().train, lr=float("nan")))


@pytest.mark.parametrize("settings, message", [
    # Trained, then refused by PyYAML when config.yaml was written ("cannot represent an
    # object"), or by the checkpoint's writer.
    (lambda: {"out_dir": Path("runs/a")},
     r"^out_dir must be a str, got PosixPath\('runs/a'\): give str\(path\)$"),
    (lambda: {"data": dataclasses.replace(ExperimentConfig().data, path=Path("cat.png"))},
     r"^data.path must be a str, got PosixPath\('cat.png'\): give str\(path\)$"),
    # Failed on a missing attribute ("'dict' object has no attribute 'lr_decay'").
    (lambda: {"train": {"n_iterations": 2}},
     r"^train must be a TrainConfig, got dict \{'n_iterations': 2\}$"),
    (lambda: {"recovery": RecoveryConfig(completion={"n_steps": 2})},
     r"^recovery.completion must be a SamplerConfig, got dict"),
    (lambda: {"multigrid": MultiGridConfig(grids=({"size": 64},)),
              "data": dataclasses.replace(ExperimentConfig().data, kind="objects")},
     r"^multigrid.grids\[0\] must be a GridConfig, got dict \{'size': 64\}$"),
], ids=["out_dir", "data.path", "train", "recovery.completion", "multigrid.grids"])
def test_sections_and_text_settings_built_in_python_are_checked(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**settings())


def test_an_infinite_power_given_in_python_is_refused() -> None:
    # The file's reader refuses infinity; a recovery section built in Python is checked too.
    recovery = RecoveryConfig(step_scale="interpolation_spread", step_scale_power=float("inf"))
    with pytest.raises(ValueError, match="recovery.step_scale_power must be a finite number"):
        ExperimentConfig(recovery=recovery)


@pytest.mark.parametrize(("section", "settings", "message"), [
    (TrainConfig, {"lr": -1.0}, "train.lr must be positive, got -1.0"),
    # recover() took this one, and refused it, as its own n_iterations.
    (TrainConfig, {"n_iterations": 0}, "train.n_iterations must be positive, got 0"),
    (TrainConfig, {"lr": float("inf")}, "train.lr must be a finite number, got inf"),
    (TrainConfig, {"lr": 1e300}, "train.lr must be within float32's range"),
    (TrainConfig, {"lr": 1e-50}, "train.lr is 1e-50, which float32 (the tensors it scales) "
                                 "holds as 0.0"),
    (CooperativeConfig, {"lr": 1e-39}, "cooperative.lr is 1e-39, which float32"),
    (InitializerConfig, {"lr": 1e-50}, "initializer.lr is 1e-50, which float32"),
    (TrainConfig, {"energy_l2": float("nan")}, "train.energy_l2 must be >= 0, got nan"),
    (TrainConfig, {"accumulate": 0}, "train.accumulate must be positive, got 0"),
    (TrainConfig, {"betas": (0.5, 1.0)}, "train.betas must be in [0, 1)"),
    # Adam's two: one failed in Adam with an IndexError, three at the first step.
    (TrainConfig, {"betas": (0.5,)}, "train.betas must have 2 entries, got [0.5]"),
    (CooperativeConfig, {"betas": (0.5, 0.9, 0.9)},
     "cooperative.betas must have 2 entries, got [0.5, 0.9, 0.9]"),
    (JEMConfig, {"px_weight": -1.0}, "jem.px_weight must be >= 0, got -1.0"),
    (JEMConfig, {"pxy_weight": float("nan")}, "jem.pxy_weight must be >= 0, got nan"),
    (JEMConfig, {"max_energy_gap": float("inf")}, "jem.max_energy_gap must be a finite number"),
    (CooperativeConfig, {"lr": 0.0}, "cooperative.lr must be positive, got 0.0"),
    (CooperativeConfig, {"inference_steps": -1}, "cooperative.inference_steps must be >= 0"),
    (InitializerConfig, {"steps": 0}, "initializer.steps must be positive, got 0"),
    (InitializerConfig, {"lr": float("inf")}, "initializer.lr must be a finite number"),
    # Every key of each list, each its own case: one left out of a list passed unseen.
    (TrainConfig, {"sample_every": -1}, "train.sample_every must be >= 0, got -1"),
    (CooperativeConfig, {"width": 0}, "cooperative.width must be positive, got 0"),
    (CooperativeConfig, {"inference_steps": 2, "inference_step_size": 0.0},
     "cooperative.inference_step_size must be positive, got 0.0"),
    # Its Langevin chain refuses a step past the bound a sampler's has: built only with the
    # trainer, its error named no setting of the config.
    (CooperativeConfig, {"inference_steps": 2, "inference_step_size": 1e30},
     "cooperative.inference_step_size must be at most 1000, got 1e+30"),
    (CooperativeConfig, {"lr": float("inf")}, "cooperative.lr must be a finite number"),
    (InitializerConfig, {"batch_size": 0}, "initializer.batch_size must be positive, got 0"),
    (InitializerConfig, {"lr": 0.0}, "initializer.lr must be positive, got 0.0"),
    # HybridTrainer's first step failed as random_shift's "max_shift must be an int >= 0".
    (JEMConfig, {"shift": -1}, "jem.shift must be >= 0, got -1"),
    # Counts are integers, as a file's are: 2.5 failed in the first step in Python's words
    # ("slice indices must be integers"), True ran as 1.
    (TrainConfig, {"batch_size": 2.5}, "train.batch_size must be an integer, got 2.5"),
    (TrainConfig, {"accumulate": True}, "train.accumulate must be an integer, got True"),
    (CooperativeConfig, {"inference_steps": 1.5},
     "cooperative.inference_steps must be an integer, got 1.5"),
    (InitializerConfig, {"crop": 2.5}, "initializer.crop must be an integer, got 2.5"),
    (JEMConfig, {"feature_rank": 1.5}, "jem.feature_rank must be an integer, got 1.5"),
    # Numbers are numbers: a string failed in the range check's comparison ("'>' not supported
    # between instances of 'str' and 'int'").
    (TrainConfig, {"lr": "0.1"}, "train.lr must be a number, got '0.1'"),
    (TrainConfig, {"lr": True}, "train.lr must be a number, got True"),
    (CooperativeConfig, {"lr": None}, "cooperative.lr must be a number, got None"),
    (JEMConfig, {"px_weight": "1"}, "jem.px_weight must be a number, got '1'"),
    (JEMConfig, {"feature_rank": -1}, "jem.feature_rank must be >= 0, got -1"),
    (JEMConfig, {"max_energy_gap": 0.0}, "jem.max_energy_gap must be positive, got 0.0"),
    (InitializerConfig, {"depth": 1}, "initializer.depth must be >= 2, got 1"),
    (InitializerConfig, {"fold": 0}, "initializer.fold must be positive, got 0"),
    (InitializerConfig, {"crop": 0}, "initializer.crop must be positive, got 0"),
])
def test_a_section_built_in_python_is_checked_as_a_file_is(section, settings, message) -> None:
    """The trainers take these sections built in Python, where accumulate=0 made steps that
    learnt nothing, lr=inf NaN weights, a generator lr=0 or inference_steps=-1 no learning or
    no inference, and px_weight=-1 failed in the first step as a contrastive term that "needs 1
    to 6 samples". The key is named as a file's is."""
    with pytest.raises(ValueError, match=re.escape(message)):
        section(**settings)


@pytest.mark.parametrize(("sets", "reader"), [
    (["cooperative.inference_step_size=0.5"], "cooperative.inference_steps=2"),
    (["cooperative.inference_sigma=0.5"], "cooperative.inference_steps=2"),
    (["jem.reference_rank=8"], "jem.reference_components=1"),  # the least that reads it
    (["recovery.step_scale_power=1.0"], "recovery.step_scale=interpolation_spread"),
])
def test_a_setting_that_nothing_reads_is_refused(sets: list[str], reader: str) -> None:
    """As chains.buffer_capacity is without a buffer: the latent inference's step and noise
    without inference steps, the reference Gaussians' rank without reference components, the
    spread's power without the spread."""
    jem = (["model.arch=digit_classifier", "data.kind=objects", "data.path=d.npz",
            "data.size=28", "chains.chains_per_example=1"]
           if sets[0].startswith("jem") else [])
    key = sets[0].partition("=")[0]
    with pytest.raises(UnreadSetting, match=re.escape(f"{key} is ")):
        load_config(None, [*jem, *sets])
    config = load_config(None, [*jem, *sets, reader])  # read there
    section, name = key.split(".")
    assert getattr(getattr(config, section), name) == float(sets[0].partition("=")[2])
    # Left at its default, it is no setting of the user's, and a Python-built section passes.
    CooperativeConfig(inference_step_size=0.1, inference_sigma=0.3)
    JEMConfig(reference_rank=64)


def test_a_runs_own_config_with_a_setting_that_nothing_reads_still_loads(
        tmp_path: Path) -> None:
    """An earlier stgconv accepted cooperative.inference_step_size without inference steps:
    the run's own config.yaml loads, the setting reset with a warning."""
    path = write(tmp_path, "cooperative:\n  inference_step_size: 0.5\n")
    with pytest.warns(UserWarning, match="sets cooperative.inference_step_size, which its"):
        config = load_config(path, saved=True)
    assert config.cooperative.inference_step_size == 0.1


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    config = load_config(None, ["model.layers=[[8, 5, 2], [8, 3, 1, 1]]", "sampler.clamp=[-2, 2]",
                                "chains.mode=buffer", "data.kind=objects", "data.max_images=3",
                                "train.lr=1e-3"])
    data = config_to_dict(config)
    assert config_from_dict(ExperimentConfig, data) == config
    # Plain data only (lists, not tuples), so it can live in a weights_only checkpoint.
    assert data["model"]["layers"] == [[8, 5, 2], [8, 3, 1, 1]]
    assert data["sampler"]["clamp"] == [-2.0, 2.0]
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_a_string_the_loader_reads_as_a_number_is_saved_quoted(tmp_path: Path) -> None:
    """The loader reads ``1e3`` as a float (YAML 1.2); PyYAML's dumper, following YAML 1.1,
    left such a string bare, and the run's config.yaml then failed to load."""
    config = load_config(None, [], {"name": "1e3", "out_dir": "1_0e5", "data.path": "-2E+5"})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_a_key_that_is_not_a_name_in_an_override_is_refused() -> None:
    with pytest.raises(ValueError, match=r"override 'model=\{\[a\]: 1\}': the value is not valid "
                                         r"YAML \(found a key that is not a name"):
        load_config(None, ["model={[a]: 1}"])


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExperimentConfig().train.lr = 1.0  # type: ignore[misc]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found: .*nope.yaml$"):
        load_config(tmp_path / "nope.yaml")


def test_a_folder_given_as_the_config_file_is_named_as_a_folder(tmp_path: Path) -> None:
    # Not "not found": the path is there. A run folder's own settings file is pointed to.
    with pytest.raises(FileNotFoundError, match=f"^config file {re.escape(str(tmp_path))} is a "
                                                "folder, not a YAML file$"):
        load_config(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 3\n")
    inside = re.escape(str(tmp_path / "config.yaml"))
    with pytest.raises(FileNotFoundError, match=f"is a folder, not a YAML file; the run's "
                                                f"settings are {inside}$"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "3\n"])
def test_non_mapping_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match="mapping"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("override", ["train.lr=[", "train.lr={a", "train.lr='x"])
def test_override_that_is_not_yaml_is_one_clear_line(override: str) -> None:
    with pytest.raises(ValueError, match=r"override .*train\.lr.*not valid YAML") as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [1, 2\n"))


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config section train must be a mapping"):
        load_config(write(tmp_path, "train: 3\n"))
    # Also where grids with a sampler section of their own would inherit from it.
    with pytest.raises(ValueError, match="config section sampler must be a mapping"):
        load_config(None, ["sampler=3", "multigrid={grids: [{size: 64, sampler: {n_steps: 2}}]}"])


def test_a_section_given_as_null_takes_the_defaults(tmp_path: Path) -> None:
    """A section whose keys are all commented out (YAML reads it as null) is the defaults, as a
    section left out is; and `--set sampler=null` alone, no longer refused, gives them too."""
    defaults = load_config(None)
    commented = write(tmp_path, "sampler:\n  # n_steps: 40\ntrain:\n  lr: 0.002\n")
    config = load_config(commented)
    assert config.sampler == defaults.sampler and config.train.lr == 0.002
    assert load_config(commented, ["sampler=null"]).sampler == defaults.sampler
    # An optional section's null still turns it off, and a grid's sampler null inherits.
    assert load_config(None, ["multigrid=null"]).multigrid is None
    grids = "multigrid={grids: [{size: 32, sampler: null}, {size: 64, sampler: null}]}"
    multigrid = load_config(None, ["sampler=null", "sampler.n_steps=7", grids]).multigrid
    assert [grid.sampler for grid in multigrid.grids] == [None, None]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS,
                         ids=[str(p.relative_to(REPO)) for p in SHIPPED_CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)


def test_voxel_paper_configs_keep_the_authors_settings() -> None:
    """jianwen-xie/3DDescriptorNet: refsig 0.5, 20 Langevin steps of 0.1, Adam 0.01 with beta1
    0.5, batches of 20 (train.py, config.py); sr_exp.py starts its noiseless chains at the
    nearest up-sampling (UpSampling3D) of the 16^3 block means."""
    for name in ("synthesis_paper", "super_resolution_paper"):
        config = load_config(REPO / "configs" / "voxel" / f"{name}.yaml")
        settings = (config.model.reference_sigma, config.sampler.step_size,
                    config.sampler.n_steps, config.train.lr, config.train.betas,
                    config.train.batch_size)
        assert settings == (0.5, 0.1, 20, 0.01, (0.5, 0.999), 20), name
    assert (config.chains.upsample, config.chains.factor, config.sampler.noise_scale) == (
        "nearest", 4, 0.0)


def test_a_sampler_section_built_in_python_with_three_bounds_is_named() -> None:
    """A file's reader refuses three bounds; built in Python they failed as "too many values
    to unpack (expected 2)"."""
    with pytest.raises(ValueError, match=re.escape(
            "sampler.clamp must be [low, high] with low < high, or null, got [-1.0, 0.0, 1.0]")):
        ExperimentConfig(sampler=SamplerConfig(clamp=(-1.0, 0.0, 1.0)))


def test_a_binary_file_or_an_outsized_seed_is_named(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"step": 1}, checkpoint)  # a zip archive, as every torch.save since 1.6
    with pytest.raises(ValueError, match="checkpoint.pt is a zip archive, not YAML text "
                                         r"\(a checkpoint\?"):
        load_config(checkpoint)
    # An accent in a comment, saved by an editor in cp1252: no checkpoint to suggest.
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: a\n# r\u00e9sum\u00e9\nseed: 1\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"latin.yaml is not UTF-8 text: byte 0xe9 on line 2 "
                                         r"\(save it as UTF-8\)$"):
        load_config(latin)
    for seed in ("-1", str(SEED_LIMIT), "100000000000000000000000"):
        with pytest.raises(ValueError, match="seed must be an int in"):
            load_config(None, [f"seed={seed}"])


def test_every_shipped_config_trains_into_a_folder_of_its_own() -> None:
    """Eleven of them once shared runs/experiment: training a second refused (or, with the
    offered --overwrite, replaced) the first."""
    folders = [load_config(path).out_dir for path in SHIPPED_CONFIGS]
    assert len(set(folders)) == len(folders), folders


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="device 'bogus' is not a device"):
        resolve_device("bogus")
    # Not torch's TypeError listing the argument types torch.device takes.
    with pytest.raises(ValueError, match="device None is not a device: use cpu, cuda, cuda:N"):
        resolve_device(None)


@pytest.mark.parametrize("name", ["meta", "mps", "xla", "cpu:0", "cpu:5"])
def test_resolve_device_refuses_devices_torch_names_but_the_library_does_not_run_on(
        name: str) -> None:
    """torch.device takes these: train then failed with a traceback (meta, mps, xla), and the
    commands that load a checkpoint called it damaged (cpu:0 and the others)."""
    with pytest.raises(ValueError, match=f"device '{name}' is not a device: use cpu, cuda, "
                                         "cuda:N or auto"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_resolve_device_refuses_an_unavailable_cuda() -> None:
    # Not "(by --device or the config's device)": load_checkpoint(map_location=) comes here too.
    with pytest.raises(ValueError, match=r"'cuda:0' requested but CUDA is not available on this "
                       r"machine: use cpu or auto \(--device cpu, or device: cpu in a config\)"):
        resolve_device("cuda:0")


def test_resolve_device_refuses_a_gpu_index_past_the_last(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"'cuda:2' requested but this machine has 2 CUDA "
                                         r"device\(s\): cuda:0 \.\. cuda:1"):
        resolve_device("cuda:2")


# --------------------------------------------------------------------------- multigrid section


OBJECTS = {"kind": "objects", "path": "unused", "size": 8, "channels": 3}
VIDEO = {"kind": "video", "path": "unused", "size": 8, "frames": 4}
ST = {"arch": "st_small"}  # grid models the data's modality builds
DESC = {"arch": "desc32_small"}


@pytest.mark.parametrize(
    ("data", "multigrid", "message"),
    [
        pytest.param(OBJECTS, {"grids": []}, "multigrid.grids is empty", id="no-grids"),
        pytest.param(OBJECTS, {"grids": [{"size": 4}]},
                     r"multigrid.grids\[-1\].size = 4.*data.size = 8", id="finest-not-data-size"),
        pytest.param(OBJECTS, {"base_size": 2, "grids": [{"size": 4}, {"size": 8}, {"size": 16}]},
                     "data.size = 8", id="finest-beyond-data-size"),
        pytest.param(OBJECTS, {"grids": [{"size": 3}, {"size": 8}]},
                     r"every multigrid size must divide.*\[1, 3, 8\]", id="sizes-not-dividing"),
        pytest.param(OBJECTS, {"grids": [{"size": 0}, {"size": 8}]},
                     r"multigrid\.grids\[0\]\.size must be positive", id="size-zero"),
        pytest.param(OBJECTS, {"base_size": 0, "grids": [{"size": 8}]},
                     r"multigrid\.base_size must be positive", id="base-size-zero"),
        pytest.param(VIDEO, {"grids": [{"size": 4, "frames": 0, "model": ST},
                                       {"size": 8, "model": ST}]},
                     r"multigrid\.grids\[0\]\.frames must be positive", id="frames-zero"),
        pytest.param(OBJECTS, {"base_rank": -1, "grids": [{"size": 8}]},
                     r"multigrid\.base_rank must be >= 0 or null, got -1", id="base-rank-negative"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "frames": 2}]}, "videos only",
                     id="frames-on-images"),
        pytest.param(OBJECTS, {"base_frames": 1, "grids": [{"size": 8}]}, "videos only",
                     id="base-frames-on-images"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "steps": 3}]},
                     r"multigrid\.grids\[0\]\.steps", id="unknown-grid-key"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "model": {"arch": "nope"}}]},
                     r"multigrid\.grids\[0\]\.model\.arch", id="bad-grid-model"),
        pytest.param(OBJECTS, {"grid": [{"size": 8}]}, r"multigrid\.grid\b",
                     id="unknown-multigrid-key"),
        pytest.param(VIDEO, {"grids": [{"size": 8, "frames": 2, "model": ST}]},
                     "must keep every frame",
                     id="finest-drops-frames"),
        pytest.param(OBJECTS, {"grids": [{"size": 8, "sampler": {"clamp": [1, -1]}}]},
                     r"multigrid\.grids\[0\]\.sampler\.clamp must be \[low, high\]",
                     id="grid-clamp-reversed"),
        pytest.param(OBJECTS, {"base_size": 8, "grids": [{"size": 8}]},
                     r"multigrid grid 0 \(size 8\) is no finer", id="grid-no-finer"),
        pytest.param(VIDEO, {"grids": [{"size": 4, "frames": 3, "model": ST},
                                       {"size": 8, "model": ST}]},
                     r"every multigrid frames must divide the next finer one, got \[4, 3, 4\].*"
                     r"base_frames",
                     id="frames-not-dividing"),
        # The shipped config's base_frames 1 under another data.frames: the hint says where
        # the 6 came from, not that a null base_frames (it has none) keeps every frame.
        pytest.param({**VIDEO, "frames": 6},
                     {"base_size": 1, "base_frames": 1,
                      "grids": [{"size": 4, "frames": 4, "model": ST}, {"size": 8, "model": ST}]},
                     r"got \[1, 4, 6\] \(coarse to fine, base first\) \(a grid without frames "
                     r"keeps every frame, data.frames = 6\)$",
                     id="frames-not-dividing-data-frames"),
    ],
)
def test_bad_multigrid_config_exits_2_naming_the_problem(tmp_path: Path, capsys, data: dict,
                                                         multigrid: dict, message: str) -> None:
    config = write_config(tmp_path / "config.yaml", data, multigrid, out=tmp_path / "run")
    code, err = run_cli(["train", str(config), "--quiet"], capsys)
    assert code == 2
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_a_video_grid_may_refine_time_only(tmp_path: Path) -> None:
    # 8x8 frames at 2 frames, then 8x8 at every (4) frame: finer in time, not in space.
    config = load_config(write_config(tmp_path / "config.yaml", VIDEO,
                                      {"base_frames": 1,
                                       "grids": [{"size": 8, "frames": 2, "model": ST},
                                                 {"size": 8, "model": ST}]},
                                      out=tmp_path / "run"))
    assert [grid.frames for grid in config.multigrid.grids] == [2, None]


def test_a_multigrid_runs_saved_config_with_the_old_model_defaults_loads(tmp_path: Path
                                                                          ) -> None:
    """Earlier runs saved 1 and 64 as the unread top-level model's channels and size (their
    defaults then): not settings a multigrid run refuses."""
    path = write_config(tmp_path / "config.yaml", OBJECTS, {"grids": [{"size": 8}]},
                        out=tmp_path / "run")
    saved = {**yaml.safe_load(path.read_text()),
             "model": {"arch": "texture", "in_channels": 1, "image_size": 64}}
    path.write_text(yaml.safe_dump(saved))
    assert load_config(path).multigrid.grids[0].model.in_channels is None


def grid_sampler_config(tmp_path: Path) -> Path:
    """A two-grid voxel config whose coarse grid sets only its own chain length."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"kind": "voxels", "size": 8},
        "sampler": {"step_size": 0.1, "clamp": [0.0, 1.0], "n_steps": 20},
        "multigrid": {"grids": [{"size": 4, "sampler": {"n_steps": 5}, "model": DESC},
                                {"size": 8, "model": DESC}]},
    }))
    return path


def test_grid_sampler_overrides_the_experiment_sampler_key_by_key(tmp_path: Path) -> None:
    path = grid_sampler_config(tmp_path)
    config = load_config(path)
    coarse, fine = config.multigrid.grids
    assert coarse.sampler.n_steps == 5
    assert (coarse.sampler.step_size, coarse.sampler.clamp) == (0.1, (0.0, 1.0))
    assert fine.sampler is None  # the experiment's section as is


def test_a_wrong_shared_sampler_key_is_named_where_it_was_written(tmp_path: Path) -> None:
    path = write(tmp_path, "multigrid:\n  grids: [{size: 64, sampler: {n_steps: 2}}]\n"
                           "sampler:\n  n_step: 3\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) sampler\.n_step in section "
                                         r"'sampler'"):
        load_config(path)


def test_a_saved_multigrid_config_inherits_a_later_shared_sampler_change(tmp_path: Path) -> None:
    """A run's config.yaml keeps only what each grid set itself: resumed with
    --set sampler.step_size (the divergence advice), every grid takes the new step size, as
    when the run was first configured."""
    path = grid_sampler_config(tmp_path)
    config = load_config(path)
    save_config(config, tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == config
    # Equal to the shared section's, the clamp the grid inherited is left out too.
    saved = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert saved["multigrid"]["grids"][0]["sampler"] == {"n_steps": 5}
    first = load_config(path, ["sampler.step_size=0.01"])
    resumed = load_config(tmp_path / "run.yaml", ["sampler.step_size=0.01"])
    assert resumed == first
    assert resumed.multigrid.grids[0].sampler.step_size == 0.01
    assert resumed.multigrid.grids[0].sampler.n_steps == 5


def test_a_grid_of_another_sampler_kind_takes_only_the_shared_settings_its_kind_reads(
        tmp_path: Path) -> None:
    """An HMC grid beside Langevin ones took the shared Langevin-only precision (and a Langevin
    grid beside HMC ones the shared n_leapfrog) and was refused for a
    multigrid.grids[i].sampler setting nobody had written; the others read it."""
    config = load_config(None, ["data.size=8", "sampler.precision=bf16",
                                "sampler.noise_anneal=linear",
                                "multigrid={grids: [{size: 4, sampler: {kind: hmc}}, {size: 8}]}"])
    coarse, fine = config.multigrid.grids[0].sampler, config.sampler
    assert config.multigrid.grids[1].sampler is None
    assert (coarse.kind, coarse.precision, coarse.noise_anneal) == ("hmc", "auto", "none")
    assert (fine.precision, fine.noise_anneal) == ("bf16", "linear")
    save_config(config, tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == load_config(tmp_path / "run.yaml",
                                                             saved=True) == config
    config = load_config(None, ["data.size=8", "sampler={kind: hmc, n_leapfrog: 3}",
                                "multigrid={grids: [{size: 4, sampler: {kind: langevin}}, "
                                "{size: 8}]}"])
    assert config.multigrid.grids[0].sampler.n_leapfrog == 5
    assert config.sampler.n_leapfrog == 3
    # Where no grid's kind reads it, the shared setting is refused under its own key.
    with pytest.raises(UnreadSetting, match=r"sampler\.precision is 'bf16', but no multigrid "
                                            r"grid's sampler is 'langevin'"):
        load_config(None, ["data.size=8", "sampler.precision=bf16", "multigrid={grids: "
                           "[{size: 4, sampler: {kind: hmc}}, {size: 8, sampler: {kind: mala}}]}"])


def test_a_shared_sampler_setting_that_one_grid_inherits_is_read() -> None:
    """Refused only where every grid sets its own: one grid of its own section that keeps the
    shared value reads it, and so do drawn base grids the shared clamp."""
    grids = ("multigrid={grids: [{size: 4, sampler: {n_steps: 5}}, {size: 8, sampler: "
             "{step_size: 0.02, clamp: [-2, 2]}}]}")
    config = load_config(None, ["data.size=8", "sampler.step_size=0.001", grids])
    assert config.multigrid.grids[0].sampler.step_size == 0.001
    grids = ("multigrid={base_rank: 2, grids: [{size: 4, sampler: {clamp: [-1, 1]}}, "
             "{size: 8, sampler: {clamp: [-2, 2]}}]}")
    assert load_config(None, ["data.size=8", "sampler.clamp=[0, 1]", grids]).sampler.clamp == (
        0.0, 1.0)


def test_a_grid_sampler_that_sets_no_kind_takes_the_shared_kinds_settings() -> None:
    """Its kind is the shared section's: an HMC grid keeps the shared n_leapfrog, a Langevin
    grid the shared precision."""
    grids = "multigrid={grids: [{size: 4, sampler: {n_steps: 5}}, {size: 8}]}"
    coarse = load_config(None, ["data.size=8", "sampler={kind: hmc, n_leapfrog: 3}",
                                grids]).multigrid.grids[0].sampler
    assert (coarse.kind, coarse.n_leapfrog, coarse.n_steps) == ("hmc", 3, 5)
    coarse = load_config(None, ["data.size=8", "sampler.precision=bf16",
                                grids]).multigrid.grids[0].sampler
    assert (coarse.kind, coarse.precision, coarse.n_steps) == ("langevin", "bf16", 5)


def test_a_grid_no_finer_than_the_one_below_is_refused() -> None:
    with pytest.raises(ValueError, match="no finer than the grid below"):
        load_config(None, ["data.size=8", "multigrid={base_size: 8, grids: [{size: 8}]}"])


def test_lr_decay_is_for_single_grid_descriptor_training() -> None:
    """train.lr_decay schedules the single-grid Trainer; a multigrid run has one optimizer per
    grid and is refused rather than left unscheduled."""
    config = REPO / "configs" / "image" / "multigrid_animals_quick.yaml"
    with pytest.raises(ValueError, match="remove it with a multigrid section"):
        load_config(config, ["train.lr_decay=cosine"])
    assert load_config(REPO / "configs" / "voxel" / "recovery_chairs_quick.yaml"
                       ).train.lr_decay == "cosine"


VOXEL_SR = ["data.kind=voxels", "model.arch=desc32_small", "data.size=32",
            "chains.mode=super_resolution", "initializer={}"]


def test_an_initializer_proposes_the_chains_of_one_voxel_model() -> None:
    assert initializer_factors(load_config(None, VOXEL_SR)) == (4,)  # chains.factor's
    recovery = load_config(None, [*VOXEL_SR, "chains.mode=recovery"])
    assert initializer_factors(recovery) == ()  # a filler: no block sizes
    for other in (["data.kind=texture", "model.arch=texture"], ["cooperative={}"]):
        with pytest.raises(ValueError, match="initializer proposes the super-resolution"):
            load_config(None, [*VOXEL_SR, *other])


def test_a_replay_buffer_of_only_fresh_chains_is_a_valid_config() -> None:
    assert load_config(None, ["chains.mode=buffer", "chains.buffer_fresh=1.0"]
                       ).chains.buffer_fresh == 1.0


def test_data_gaussian_init_applies_only_to_noise_persistent_and_buffer_chains() -> None:
    with pytest.raises(ValueError, match="chains.init 'data_gaussian'"):
        load_config(None, ["chains.init=data_gaussian", "chains.mode=data"])
    for mode in ("noise", "persistent", "buffer"):
        load_config(None, ["chains.init=data_gaussian", f"chains.mode={mode}"])


@pytest.mark.parametrize("override, message", [
    ("sampler.noise_scale=0", r"sampler.noise_scale is 0\.0, but applies to Langevin only"),
    ("sampler.noise_anneal=cosine", "set sampler.noise_anneal=none"),
    ("sampler.grad_clip=1.0", "set sampler.grad_clip=null"),
    ("sampler.precision=bf16", "set sampler.precision=auto"),
    ("sampler.cuda_graph=false", "set sampler.cuda_graph=true"),
])
@pytest.mark.parametrize("kind", ["mala", "hmc"])
def test_langevin_settings_are_refused_for_exact_samplers(kind: str, override: str,
                                                         message: str) -> None:
    """MALA and HMC sample exp(-E) itself; a temperature, annealing or clipping would be
    ignored, so it is refused rather than dropped."""
    with pytest.raises(ValueError, match=message):
        load_config(None, [f"sampler.kind={kind}", override])
    assert load_config(None, [f"sampler.kind={kind}"]).sampler.kind == kind


def test_an_option_of_a_section_saved_as_null_can_be_set(tmp_path: Path) -> None:
    """A run's config.yaml writes unused optional sections as null; --set on one of their
    options works on it as on the defaults."""
    save_config(ExperimentConfig(), tmp_path / "run.yaml")
    assert "completion: null" in (tmp_path / "run.yaml").read_text()
    config = load_config(tmp_path / "run.yaml", ["recovery.completion.n_steps=5"])
    assert config.recovery.completion.n_steps == 5
    assert config.recovery.completion == load_config(
        None, ["recovery.completion.n_steps=5"]).recovery.completion


# --------------------------------------------------------------------------- settings never read

VOXELS = ["data.kind=voxels", "model.arch=desc32_small", "data.size=16"]
JEM = ["model.arch=digit_classifier", "jem={}", "data.kind=objects", "data.path=x.npz",
       "data.size=28", "chains.chains_per_example=1"]
MULTIGRID = ["data.size=8", "multigrid={grids: [{size: 8}]}"]
SUPER_RESOLUTION = [*VOXELS, "chains.mode=super_resolution"]


@pytest.mark.parametrize("overrides, message", [
    (["sampler.n_leapfrog=3"], "sampler.n_leapfrog is 3, but applies to HMC only: sampler.kind "
                               "'langevin' ignores it; set sampler.n_leapfrog=5"),
    (["sampler.kind=mala", "sampler.n_leapfrog=3"], "sampler.kind 'mala' ignores it"),
    (["sampler.step_jitter=0.2"], "sampler.step_jitter is 0.2, but applies to HMC only"),
    (["chains.buffer_capacity=5"], "chains.buffer_capacity is 5, but applies to chains.mode "
                                   "'buffer' only: chains.mode 'persistent' ignores it"),
    (["chains.buffer_fresh=0.5"], "chains.buffer_fresh is 0.5, but applies to chains.mode"),
    (["chains.mode=noise", "chains.data_noise=0.1"], "chains.data_noise is 0.1, but applies to "
                                                     "chains.mode 'data' only"),
    (["chains.factor=2"], "chains.factor is 2, but applies to chains.mode 'super_resolution'"),
    (["chains.missing=0.5"], "chains.missing is 0.5, but applies to chains.mode 'recovery'"),
    (["chains.init_rank=3"], "chains.init_rank is 3, but applies to chains.init 'data_gaussian'"),
    (["chains.init_noise=0.5"], "chains.init_noise is 0.5, but applies to chains.init"),
    ([*SUPER_RESOLUTION, "chains.chains_per_example=2"],
     "chains.chains_per_example is 2, but chains.mode 'super_resolution' ignores it"),
    ([*VOXELS, "chains.mode=recovery", "chains.missing=0.5", "chains.chains_per_example=2"],
     "chains.chains_per_example is 2, but chains.mode 'recovery' ignores it"),
    (["data.frames=4"], "data.frames is 4, but applies to videos only: data.kind 'texture'"),
    (["data.max_images=3"], "data.max_images is 3, but data.kind 'texture' learns from one "
                            "image; set data.max_images=null"),
    (["data.fps=10"], "data.fps is 10.0, but applies to videos only"),
    (["data.start_frame=2"], "data.start_frame is 2, but applies to videos only"),
    (["data.categories=[chair]"], "data.categories is ('chair',), but applies to voxels only"),
    (["data.split=train"], "data.split is 'train', but applies to voxels only"),
    (["data.mean=0.2"], "data.mean is 0.2, but applies to voxels only"),
    (["data.up_axis=1"], "data.up_axis is 1, but applies to voxels only"),
    ([*VOXELS, "data.channels=3"], "data.channels is 3, but voxel grids have one channel"),
    (["model.n_classes=5"], "model.n_classes is 5, but applies to classifier architectures"),
    ([*JEM, "model.layers=[[4, 3, 1]]"], "model.layers is ((4, 3, 1),), but model.arch "
                                         "'digit_classifier' is a classifier"),
    ([*JEM, "model.activation=relu"], "model.activation is 'relu', but model.arch"),
    ([*JEM, "model.reference_sigma=0.3"], "model.reference_sigma is 0.3, but model.arch"),
    # Away from its default (0.05) however it is set: null too.
    ([*JEM, "model.reference_sigma=null"], "model.reference_sigma is None, but model.arch"),
    ([*MULTIGRID, "model.arch=object"], "model.arch is 'object', but a multigrid run builds "
                                        "each grid's net from multigrid.grids[i].model"),
    # Accepted once their defaults became null (each grid's are the data's).
    ([*MULTIGRID, "model.in_channels=3"], "model.in_channels is 3, but a multigrid run builds "
                                          "each grid's net"),
    ([*MULTIGRID, "model.image_size=32"], "model.image_size is 32, but a multigrid run builds "
                                          "each grid's net"),
    ([*MULTIGRID, "chains.chains_per_example=2"], "chains.chains_per_example is 2, but a "
                                                  "multigrid run starts each grid's chains"),
    ([*MULTIGRID, "chains.mode=buffer"], "chains.mode is 'buffer', but a multigrid run starts "
                                         "each grid's chains from the grid below"),
    (["cooperative={}", "chains.mode=buffer"], "chains.mode is 'buffer', but a cooperative "
                                               "run's generator proposes every chain start"),
    (["cooperative={}", "chains.init_scale=0.5"], "chains.init_scale is 0.5, but a cooperative"),
    ([*SUPER_RESOLUTION, "initializer={fold: 4}"],
     "initializer.fold is 4, but applies to recovery (chains.mode recovery) only"),
    # MALA and HMC never clamp their chains: a voxel run's [0, 1] let them leave it unseen.
    ([*VOXELS, "sampler.kind=hmc", "sampler.clamp=[0, 1]"],
     "sampler.clamp is (0.0, 1.0), but sampler.kind 'hmc' never clamps its chains; set "
     "sampler.clamp=[-1.0, 1.0] (its default)"),
    ([*MULTIGRID, "sampler.kind=mala", "sampler.clamp=[0, 1]"],
     "sampler.clamp is (0.0, 1.0), but sampler.kind 'mala' never clamps"),
    (["data.size=8", "multigrid={grids: [{size: 4, sampler: {kind: hmc, clamp: [0, 1]}}, "
      "{size: 8}]}"], "multigrid.grids[0].sampler.clamp is [0.0, 1.0], but "
                      "multigrid.grids[0].sampler.kind 'hmc' never clamps its chains"),
    (["recovery.completion={kind: mala, clamp: [0, 1]}"],
     "recovery.completion.clamp is (0.0, 1.0), but recovery.completion.kind 'mala' never clamps"),
    # Read by none of them: a completion of its own, a Langevin grid with a clamp of its own.
    (["sampler.kind=mala", "sampler.clamp=[0, 1]", "recovery.step_scale=interpolation_spread",
      "recovery.completion={n_steps: 5}"],
     "sampler.clamp is (0.0, 1.0), but sampler.kind 'mala' never clamps"),
    (["data.size=8", "sampler.kind=hmc", "sampler.clamp=[0, 1]",
      "multigrid={grids: [{size: 4, sampler: {kind: langevin, clamp: [-2, 2]}}, {size: 8}]}"],
     "sampler.clamp is (0.0, 1.0), but sampler.kind 'hmc' never clamps"),
    # The grid named by its place among all the grids.
    (["data.size=8", "multigrid={grids: [{size: 4}, {size: 8, sampler: {kind: hmc, clamp: [0, "
      "1]}}]}"], "multigrid.grids[1].sampler.clamp is [0.0, 1.0]"),
    # An HMC-only setting of the shared section that no grid's kind reads.
    (["data.size=8", "sampler={kind: hmc, n_leapfrog: 3}", "multigrid={grids: [{size: 4, "
      "sampler: {kind: langevin}}, {size: 8, sampler: {kind: mala}}]}"],
     "sampler.n_leapfrog is 3, but no multigrid grid's sampler is 'hmc'"),
    # A shared setting that every grid's own section replaces.
    (["data.size=8", "sampler.step_size=0.001", "multigrid={grids: [{size: 4, sampler: "
      "{step_size: 0.01}}, {size: 8, sampler: {step_size: 0.02}}]}"],
     "sampler.step_size is 0.001, but every multigrid grid's sampler section sets its own"),
    (["data.size=8", "sampler.clamp=[0, 1]", "multigrid={grids: [{size: 4, sampler: "
      "{clamp: [-1, 1]}}, {size: 8, sampler: {clamp: [-2, 2]}}]}"],
     "sampler.clamp is (0.0, 1.0), but every multigrid grid's sampler section sets its own"),
    # The kind too, where no kind-only setting is set beside it.
    (["data.size=8", "sampler.kind=hmc", "multigrid={grids: [{size: 4, sampler: {kind: "
      "langevin}}, {size: 8, sampler: {kind: mala}}]}"],
     "sampler.kind is 'hmc', but every multigrid grid's sampler section sets its own"),
])
def test_a_setting_the_run_never_reads_is_refused(overrides: list[str], message: str) -> None:
    """These were accepted and silently ignored: the run went on as if they had not been set."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, overrides)


def test_a_super_resolution_factor_of_1_is_refused() -> None:
    """block_down(x, 1) is x: every training chain stayed at its example, and the run learnt
    nothing."""
    with pytest.raises(ValueError, match=re.escape("chains.factor must be >= 2, got 1")):
        load_config(None, [*SUPER_RESOLUTION, "chains.factor=1"])
    assert load_config(None, [*SUPER_RESOLUTION, "chains.factor=2"]).chains.factor == 2


@pytest.mark.parametrize("overrides, sides", [
    ([*SUPER_RESOLUTION, "chains.factor=3"], "data.size 16"),
    (["data.kind=video", "model.arch=st_small", "data.frames=4", "data.size=12",
      "chains.mode=super_resolution",
      "chains.chains_per_example=8", "chains.factor=3"], "data.frames 4, data.size 12"),
])
def test_a_super_resolution_factor_that_does_not_divide_the_examples_is_refused(
        overrides: list[str], sides: str) -> None:
    """It was refused once training had started, as "trailing shape (4, 12, 12) is not
    divisible by block factor (3, 3, 3)", naming no setting."""
    with pytest.raises(ValueError, match=re.escape(
            f"chains.factor 3 must divide every side of the training examples ({sides})")):
        load_config(None, overrides)
    assert load_config(None, [*overrides[:-1], "chains.factor=2"]).chains.factor == 2


@pytest.mark.parametrize("overrides", [
    ["sampler.kind=hmc", "sampler.n_leapfrog=3"],
    ["chains.mode=buffer", "chains.buffer_capacity=5", "chains.buffer_fresh=0.5"],
    ["chains.mode=data", "chains.data_noise=0.1", "chains.init=uniform", "chains.init_scale=1"],
    ["chains.init=data_gaussian", "chains.init_rank=3", "chains.init_noise=0.5"],
    [*SUPER_RESOLUTION, "chains.factor=2", "initializer={factors: [2]}"],
    [*VOXELS, "chains.mode=recovery", "chains.missing=0.5", "initializer={fold: 4}"],
    [*VOXELS, "data.categories=[chair]", "data.split=train", "data.mean=0.2", "data.up_axis=1"],
    ["data.kind=video_frames", "data.frames=4", "data.fps=10", "data.start_frame=2"],
    [*JEM, "model.n_classes=5"],
    ["cooperative={}", "chains.chains_per_example=2"],
    # An exact sampler's clamp, read beside its chains: the generator's proposals, the drawn
    # base grids, a Langevin grid inheriting it, the preconditioned video completion.
    ["sampler.kind=mala", "sampler.clamp=[0, 1]", "cooperative={}"],
    [*MULTIGRID, "sampler.kind=hmc", "sampler.clamp=[0, 1]", "multigrid.base_rank=2"],
    ["data.size=8", "sampler.kind=hmc", "sampler.clamp=[0, 1]",
     "multigrid={grids: [{size: 4, sampler: {kind: langevin}}, {size: 8}]}"],
    ["sampler.kind=mala", "sampler.clamp=[0, 1]", "recovery.step_scale=interpolation_spread"],
    ["recovery.completion={kind: hmc, clamp: [0, 1]}", "recovery.step_scale=interpolation_spread"],
    # null, no clamp, is what they do.
    ["sampler.kind=mala", "sampler.clamp=null", "recovery.completion={kind: hmc, clamp: null}"],
    ["data.size=8", "multigrid={grids: [{size: 4, sampler: {kind: hmc, clamp: null}}, {size: 8}]}"],
    # A Langevin chain's own clamp.
    ["data.size=8", "multigrid={grids: [{size: 4, sampler: {clamp: [0, 0.5]}}, {size: 8}]}"],
    ["recovery.completion={clamp: [0, 1]}"],
])
def test_a_setting_its_run_reads_is_accepted(overrides: list[str]) -> None:
    load_config(None, overrides)


def test_a_setting_never_read_is_refused_by_train_before_anything_is_written(
        tmp_path: Path, capsys) -> None:
    code, err = run_cli(["train", "--set", "chains.buffer_capacity=500", "--out",
                         str(tmp_path / "run"), "--quiet"], capsys)
    assert code == 2
    assert err.startswith("stgconv train: error: chains.buffer_capacity is 500"), err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- model sections


@pytest.mark.parametrize("overrides, message", [
    (["model.arch=st"], "model.arch 'st' is not an architecture for data.kind 'texture'; "
                        "choose from ['texture', 'object'"),
    (["data.kind=voxels"], "model.arch 'texture' is not an architecture for data.kind "
                           "'voxels'; choose from ['desc32'"),
    (["data.kind=video"], "model.arch 'texture' is not an architecture for data.kind 'video'; "
                          "choose from ['st'"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {arch: fc_s}}]}"],
     "multigrid.grids[0].model.arch 'fc_s' is not an architecture for data.kind 'texture'"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {arch: digit_classifier}}]}"],
     "multigrid.grids[0].model.arch 'digit_classifier' is a classifier"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {reference_sigma: 0}}]}"],
     "multigrid.grids[0].model.reference_sigma must be positive, got 0.0"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {n_classes: 3}}]}"],
     "multigrid.grids[0].model.n_classes is 3, but applies to classifier architectures"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {density_scale: true}}]}"],
     "multigrid.grids[0].model.density_scale is True, but applies to classifier"),
    (["model.layers=[]"], "model.layers must hold at least one convolution"),
    (["model.layers=[[4, 3]]"], "model.layers[0] must be [out_channels, kernel, stride] or "
                                "[out_channels, kernel, stride, padding], got [4, 3]"),
    (["model.layers=[[4, 3, 1], [4, 3, 1, 0, 1]]"], "model.layers[1] must be"),
    (["model.layers=[[0, 3, 1]]"], "model.layers[0][0] (out_channels) must be >= 1, got 0"),
    (["model.layers=[[[4, 4], 3, 1]]"], "model.layers[0][0] (out_channels) must be one int, "
                                        "got [4, 4]"),
    (["model.layers=[[4, [3, 0], 1]]"], "model.layers[0][1] (kernel) must be >= 1, got (3, 0)"),
    (["model.layers=[[4, 3, 0]]"], "model.layers[0][2] (stride) must be >= 1, got 0"),
    (["model.layers=[[4, 3, 1, -1]]"], "model.layers[0][3] (padding) must be >= 0, got -1"),
    ([*VOXELS, "model.layers=[[4, [3, 3], 1]]"],
     "model.layers[0][1] (kernel) must be one int or 3 (one per dimension), got [3, 3]"),
    (["model.layers=[[4, 3, [1, 1, 1]]]"],
     "model.layers[0][2] (stride) must be one int or 2 (one per dimension), got [1, 1, 1]"),
    (["data.kind=video", "model.arch=st", "model.layers=[[4, [3, 3], 1]]"],
     "model.layers[0][1] (kernel) must be one int or 3 (one per dimension), got [3, 3]"),
    ([*MULTIGRID[:1], "multigrid={grids: [{size: 8, model: {layers: [[4, 3]]}}]}"],
     "multigrid.grids[0].model.layers[0] must be"),
])
def test_a_model_its_data_cannot_build_is_named_up_front(overrides: list[str],
                                                         message: str) -> None:
    """Found only once the data had loaded, if at all: another modality's arch as an "unknown
    ... architecture", a bad layer as "layer 1 ...", a per-dimension list of the wrong length as
    a traceback from inside torch; a grid's model was not checked at all."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, overrides)


@pytest.mark.parametrize("overrides, message", [
    # The entry limit names the setting that makes the example, or the buffer, too large.
    (["data.kind=video", "model.arch=st", "data.frames=100000"],
     "data.size=64, data.frames=100000 makes a (1, 100000, 64, 64) tensor"),
    (["chains.mode=buffer", "chains.buffer_capacity=100000"],
     "chains.buffer_capacity=100000 makes a (100000, 1, 64, 64) tensor"),
    (["chains.init=data_gaussian", "cooperative={}"],
     "this config has chains.mode 'persistent' and a cooperative section"),
    (["data.kind=video", "data.size=8",
      "multigrid={base_frames: 0, grids: [{size: 8, model: {arch: st}}]}"],
     "multigrid.base_frames must be positive, got 0"),
    ([*VOXELS, "chains.mode=recovery", "initializer={factors: [2]}"],
     "initializer.factors are super-resolution block sizes; a recovery run"),
    ([*VOXELS, "chains.mode=recovery", "initializer={fold: 3}"],
     "initializer.fold 3 must divide data.size 16"),
    ([*SUPER_RESOLUTION, "initializer={factors: [4, 4]}"],
     "initializer.factors must be distinct ints >= 2 dividing data.size 16, got [4, 4]"),
    ([*SUPER_RESOLUTION, "initializer={factors: [1, 4]}"],
     "initializer.factors must be distinct ints >= 2 dividing data.size 16, got [1, 4]"),
    ([*SUPER_RESOLUTION, "initializer={factors: [2]}"],
     "initializer.factors [2] must include chains.factor 4"),
    (["model.density_scale=true"], "model.density_scale applies to classifier architectures"),
    (JEM[:-1], "chains.chains_per_example must be 1, got 8"),
    ([*JEM, "jem.shift=14"], "jem.shift must be in [0, data.size / 2 = 14), got 14"),
])
def test_a_setting_out_of_its_range_for_the_rest_of_the_config_is_named(
        overrides: list[str], message: str) -> None:
    """Checks that read several sections: each refusal names its setting and the bound."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, overrides)


def test_fill_model_takes_the_datas_channels_and_size_and_refuses_others() -> None:
    model = fill_model(ModelConfig(), "model", in_channels=3, image_size=32, size_of="data.size")
    assert (model.in_channels, model.image_size) == (3, 32)
    for name, given in (("in_channels", 1), ("image_size", 64)):
        with pytest.raises(ValueError, match=rf"^model\.{name} is {given}, but the data give"):
            fill_model(ModelConfig(**{name: given}), "model", in_channels=3, image_size=32,
                       size_of="data.size")


@pytest.mark.parametrize("overrides, message", [
    (["model.in_channels=1", "data.channels=3"],
     "model.in_channels is 1, but data.channels is 3: the net is built for the data; leave "
     "model.in_channels out (or null)"),
    (["model.in_channels=3", "data.kind=voxels", "model.arch=desc32_small", "data.size=32"],
     "model.in_channels is 3, but voxel grids have one channel"),
    (["multigrid={grids: [{size: 64, model: {in_channels: 1}}]}", "data.channels=3",
      "data.kind=objects", "model.arch=texture"],
     "multigrid.grids[0].model.in_channels is 1, but data.channels is 3"),
], ids=["image", "voxels", "grid"])
def test_a_model_of_other_channels_than_the_data_is_refused_as_the_config_is_read(
        overrides: list[str], message: str, tmp_path: Path, capsys) -> None:
    """train --print-config showed model.in_channels 1 beside data.channels 3 as valid, and
    train refused it only once the data had loaded."""
    with pytest.raises(ModelOfOtherData, match=re.escape(message)):
        load_config(None, overrides)
    sets = [part for override in overrides for part in ("--set", override)]
    code, err = run_cli(["train", *sets, "--print-config"], capsys)
    assert code == 2 and message in err, err
    # The data's own channels, or none given, are a config train reads.
    assert load_config(None, ["model.in_channels=3", "data.channels=3"]).model.in_channels == 3


def test_a_layer_list_of_the_wrong_length_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    code, err = run_cli(["train", "--set", "model.layers=[[4, [3, 3, 3], 1]]", "--out",
                         str(tmp_path / "run"), "--quiet"], capsys)
    assert code == 2
    assert "model.layers[0][1] (kernel) must be one int or 2" in err, err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- --set into lists


def test_set_reaches_an_entry_of_a_list_by_its_index() -> None:
    """How errors and a refused resume name a grid's key (multigrid.grids[1].size,
    multigrid.grids.1.size): --set refused both ("'grids' is not a config section")."""
    data = {"data": {"size": 8},
            "multigrid": {"grids": [{"size": 2}, {"size": 8, "model": {"layers": [[4, 3, 1]]}}]}}
    merged = apply_overrides(data, ["multigrid.grids.0.size=4",
                                    "multigrid.grids[1].model.layers[0][0]=6"])
    assert merged["multigrid"]["grids"] == [{"size": 4},
                                            {"size": 8, "model": {"layers": [[6, 3, 1]]}}]
    assert data["multigrid"]["grids"][0]["size"] == 2  # the input's lists are copied
    assert data["multigrid"]["grids"][1]["model"]["layers"] == [[4, 3, 1]]
    # A mapping given for an entry merges into it, as into a section.
    assert apply_overrides(data, ["multigrid.grids.1={size: 16}"])["multigrid"]["grids"][1] == {
        "size": 16, "model": {"layers": [[4, 3, 1]]}}
    config = load_config(None, ["data.size=8", "multigrid={grids: [{size: 2}, {size: 8}]}",
                                "multigrid.grids.0.sampler.n_steps=3"])
    assert config.multigrid.grids[0].sampler.n_steps == 3
    for override in ("multigrid.grids.2.size=4", "multigrid.grids.size=4"):
        with pytest.raises(ValueError, match=r"multigrid\.grids is a list of 2 entries, indexed "
                                             r"from 0 \(multigrid\.grids\.0\.\.\.\)"):
            apply_overrides(data, [override])


def test_an_entry_of_a_list_the_config_does_not_give_names_what_is_missing() -> None:
    """Said "multigrid.grids must be a list, got {'0': {'size': 3}}": the path was made of
    sections, and the entry's index taken for a key."""
    with pytest.raises(ValueError, match=r"^override 'multigrid\.grids\.0\.size=3': the config "
                                         r"gives no multigrid section, so there is no "
                                         r"multigrid\.grids entry 0 to change; set the whole list "
                                         r"\(multigrid\.grids=\[\.\.\.\]\)$"):
        load_config(None, ["multigrid.grids.0.size=3"])
    with pytest.raises(ValueError, match=r"'multigrid\.grids\[1\]\.size=3': the config gives no "
                                         r"multigrid\.grids, so there is no multigrid\.grids "
                                         r"entry 1 "):
        load_config(None, ["multigrid.base_size=4", "multigrid.grids[1].size=3"])


def test_a_section_given_whole_to_set_changes_only_the_keys_it_gives(tmp_path: Path) -> None:
    """``--set sampler={n_steps: 40}`` replaced the file's whole section: its step size, noise
    and clamp went back to the defaults without a word."""
    path = write(tmp_path, "sampler:\n  step_size: 0.1\n  noise_scale: 0.0\n  clamp: [0.0, 1.0]\n"
                           "recovery:\n  completion:\n    n_steps: 5\n    step_size: 0.05\n")
    config = load_config(path, ["sampler={n_steps: 40}", "recovery={completion: {n_steps: 2}}"])
    assert (config.sampler.n_steps, config.sampler.step_size, config.sampler.noise_scale,
            config.sampler.clamp) == (40, 0.1, 0.0, (0.0, 1.0))
    # Merged at every depth: the nested section keeps the file's step size too.
    assert config.recovery.completion == load_config(
        None, ["recovery.completion.n_steps=2", "recovery.completion.step_size=0.05"]
    ).recovery.completion
    # null first clears a section, for one given whole.
    assert load_config(path, ["sampler=null", "sampler={n_steps: 40}"]).sampler == load_config(
        None, ["sampler.n_steps=40"]).sampler


# --------------------------------------------------------------------------- a run's own config


def test_a_runs_own_config_keeps_what_its_grids_take_from_the_experiments_sampler(
        tmp_path: Path) -> None:
    """A grid's n_leapfrog is read where the experiment's sampler, which the grid's inherits,
    is HMC: looked for unread settings without that inheritance, the grid seemed a Langevin
    one and its setting was reset, with a warning, in a run that had read it."""
    path = write(tmp_path, yaml.safe_dump({
        "data": {"path": "builtin:brick", "size": 8}, "sampler": {"kind": "hmc"},
        "multigrid": {"grids": [{"size": 4, "sampler": {"n_leapfrog": 7}}, {"size": 8}]}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(path, saved=True)
    assert config.multigrid.grids[0].sampler.n_leapfrog == 7


def test_a_runs_own_config_with_a_clamp_its_exact_sampler_never_read_loads_without_it(
        tmp_path: Path) -> None:
    """An earlier stgconv accepted a clamp for MALA or HMC and trained without it: the run
    resumes as it trained, told so."""
    path = write(tmp_path, yaml.safe_dump({
        "data": {"path": "builtin:brick", "size": 8}, "sampler": {"kind": "hmc", "clamp": [0, 1]},
        "multigrid": {"grids": [{"size": 4, "sampler": {"kind": "mala", "clamp": [0, 0.5]}},
                                {"size": 8}]}}))
    with pytest.warns(UserWarning, match=r"sets sampler\.clamp, multigrid\.grids\[0\]\.sampler\."
                                         r"clamp, which its training never read"):
        config = load_config(path, saved=True)
    assert config.sampler.clamp == config.multigrid.grids[0].sampler.clamp == (-1.0, 1.0)


def test_an_exact_grids_unread_clamp_loads_as_the_shared_one_it_would_inherit(
        tmp_path: Path) -> None:
    """Where the shared clamp is read (a Langevin sampler), the MALA grid's own clamp is reset to
    it: the config then is the one that leaves the grid's clamp out."""
    grid = {"size": 4, "sampler": {"kind": "mala", "clamp": [0, 0.5]}}
    text = {"data": {"path": "builtin:brick", "size": 8}, "sampler": {"clamp": [0, 1]},
            "multigrid": {"grids": [grid, {"size": 8}]}}
    path = write(tmp_path, yaml.safe_dump(text))
    with pytest.warns(UserWarning, match=r"sets multigrid\.grids\[0\]\.sampler\.clamp, which"):
        config = load_config(path, saved=True)
    del grid["sampler"]["clamp"]
    assert config == load_config(write(tmp_path, yaml.safe_dump(text), "without.yaml"))
    assert config.multigrid.grids[0].sampler.clamp == (0.0, 1.0)


def test_an_exact_grid_built_in_python_keeps_the_default_clamp_beside_a_shared_one() -> None:
    """A grid's SamplerConfig made in Python holds the default clamp, not the shared section's:
    not a clamp of its own to refuse."""
    config = config_from_dict(ExperimentConfig, {
        "data": {"size": 8}, "sampler": {"clamp": [0, 1]},
        "multigrid": {"grids": [{"size": 4, "sampler": {"kind": "hmc"}}, {"size": 8}]}})
    assert config.multigrid.grids[0].sampler.clamp == (-1.0, 1.0)


def test_a_runs_own_config_that_a_set_corrects_loads(tmp_path: Path) -> None:
    """Other problems of a run's config.yaml are left for the load, after the --set values:
    one that a --set corrects is no error."""
    path = write(tmp_path, "train:\n  lr: -1\n")
    assert load_config(path, ["train.lr=0.01"], saved=True).train.lr == 0.01


def test_a_runs_own_config_with_an_unread_setting_and_an_error_a_set_corrects_loads(
        tmp_path: Path) -> None:
    """The unread setting was looked for before the --set applied: the error hid it, and the
    load, its error corrected, stopped at it (one more try, with a --set of its default)."""
    path = write(tmp_path, "train:\n  lr: -1\nchains:\n  buffer_capacity: 77\n")
    with pytest.warns(UserWarning, match="sets chains.buffer_capacity, which its training never"):
        config = load_config(path, ["train.lr=0.01"], saved=True)
    assert (config.train.lr, config.chains.buffer_capacity) == (0.01, 10000)
    # A command's own options (values) correct it as a --set does.
    with pytest.warns(UserWarning, match="sets chains.buffer_capacity, which its training never"):
        config = load_config(path, values={"train.lr": 0.01}, saved=True)
    assert (config.train.lr, config.chains.buffer_capacity) == (0.01, 10000)
    # A --set of an unread setting is the user's own, and refused as before.
    with pytest.raises(UnreadSetting, match="chains.buffer_capacity is 5, but applies to"):
        load_config(path, ["train.lr=0.01", "chains.buffer_capacity=5"], saved=True)
    # ... with no word of the run's file setting it, where it does not.
    plain = write(tmp_path, "train:\n  lr: 0.01\n", "plain.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreadSetting, match="chains.buffer_capacity is 5, but applies to"):
            load_config(plain, ["chains.buffer_capacity=5"], saved=True)


def test_a_users_config_file_with_a_setting_never_read_is_refused_not_reset(
        tmp_path: Path) -> None:
    """Only a run's own config.yaml (saved=True) has such settings reset with a warning."""
    path = write(tmp_path, "chains:\n  buffer_capacity: 77\n")
    with pytest.raises(UnreadSetting, match="chains.buffer_capacity is 77"):
        load_config(path)


def test_config_errors_cross_a_process_boundary_whole(tmp_path: Path) -> None:
    """A process pool sends its worker's exception pickled, which rebuilt these from their
    message alone: a TypeError (key and default missing) and a KeyError (the message taken for
    the withdrawn key), and the pool broke instead of raising them."""
    import copy
    import pickle

    with pytest.raises(UnreadSetting) as unread:
        load_config(write(tmp_path, "chains:\n  buffer_capacity: 77\n"))
    withdrawn = WithdrawnSetting("initializer.sr_loss")
    for err in (unread.value, withdrawn):
        for twin in (pickle.loads(pickle.dumps(err)), copy.deepcopy(err)):
            assert type(twin) is type(err) and str(twin) == str(err)
            assert vars(twin) == vars(err)
    assert vars(unread.value) == {"key": "chains.buffer_capacity", "default": 10000}


def test_the_warning_of_a_runs_own_config_points_at_the_caller(tmp_path: Path) -> None:
    path = write(tmp_path, "chains:\n  buffer_capacity: 77\n")
    with pytest.warns(UserWarning, match="sets chains.buffer_capacity, which") as warned:
        assert load_config(path, saved=True).chains.buffer_capacity == 10000
    assert [warning.filename for warning in warned] == [__file__]
