"""CLI smoke tests on tiny CPU settings: every command runs in-process through ``main``, once
through a real ``python -m stgconv.cli`` process, and user errors exit 2 with a clear message (a
write failing part-way, a disk filled meanwhile, exits 1).
Run folders: one owner at a time, never replaced without ``--resume`` or ``--overwrite``, left as
they were by a resume that fails."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _tiny import ROOT, SR_CONFIG, fill, tiny_texture_run, write_y_up_post
from _tiny import TINY as VOXEL_TINY
from PIL import Image

from stgconv import checkpoint, cli, tasks
from stgconv.checkpoint import load_checkpoint, save_checkpoint
from stgconv.checks import FLOAT32_MAX
from stgconv.cli import DefaultsFormatter, main
from stgconv.config import QUICK_RECOVERY_CONFIG, _merged, config_yaml, load_config
from stgconv.distributed import PeerFailedError
from stgconv.tasks.train import Terminated

REPO = Path(__file__).resolve().parent.parent


def prog(args: list[str]) -> str:
    """How the command of ``args`` names itself: ``stgconv train``, ``stgconv eval ood``."""
    return " ".join(["stgconv", *args[:2 if args[0] == "eval" else 1]])


TINY = [
    "--set", "data.path=builtin:brick",
    "--set", "data.size=32",
    "--set", "model.layers=[[8, 5, 2], [8, 3, 1]]",
    "--set", "train.n_iterations=2",
    "--set", "sampler.n_steps=3",
    "--set", "chains.chains_per_example=2",
    "--set", "device=cpu",
]

# A short-run model: chains from uniform noise every iteration, no Gaussian reference term,
# and a fully connected head (so only 32x32 images).
SHORT_RUN = [
    *TINY,
    "--set", "model.arch=object",
    "--set", "model.reference_sigma=null",
    "--set", "chains.mode=noise",
    "--set", "chains.init=uniform",
    "--set", "chains.init_scale=1.0",
]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_png(path: Path, size: tuple[int, int] | None = None) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        if size is not None:
            assert image.size == size


@pytest.fixture(scope="module")
def texture_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("texture") / "run"
    assert main(["train", *TINY, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shortrun") / "run"
    assert main(["train", *SHORT_RUN, "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_the_run_folder(texture_run: Path) -> None:
    for name in ("checkpoint.pt", "config.yaml", "samples.png", "observed.png"):
        assert (texture_run / name).is_file(), name
    assert_png(texture_run / "observed.png", (32, 32))
    # 2 chains of 32x32 in a grid with 2 px padding.
    assert_png(texture_run / "samples.png", (2 * 34 + 2, 34 + 2))
    state = load_checkpoint(texture_run / "checkpoint.pt")
    assert state["iteration"] == 2
    assert state["config"]["model"]["layers"] == [[8, 5, 2], [8, 3, 1]]
    assert state["chains"]["chains"].shape == (1, 2, 1, 32, 32)
    assert "model:" in (texture_run / "config.yaml").read_text()


def test_train_resume_continues(texture_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    before = load_checkpoint(run)
    code, out, err = run_main(["train", *TINY, "--set", "train.n_iterations=3", "--out", str(run),
                               "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert "wrote" in out
    after = load_checkpoint(run)
    assert after["iteration"] == 3
    assert not torch.equal(after["chains"]["chains"], before["chains"]["chains"])
    # Without a config file or TINY's settings, the run's own config.yaml is the base: not the
    # defaults (another image, size and network, which it refused or trained on instead).
    code, out, err = run_main(["train", "--set", "train.n_iterations=4", "--out", str(run),
                               "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 4
    assert load_config(run / "config.yaml").model.layers == ((8, 5, 2), (8, 3, 1))
    # The same with the folder given as --set out_dir=..., which --out is short for (it looked
    # for the run's config.yaml in the default folder and took the defaults).
    code, out, err = run_main(["train", "--set", "train.n_iterations=5", "--set",
                               f"out_dir={run}", "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 5
    # An emptied config.yaml is named, not read as the defaults (refused as "another network
    # ... resume with the run's own config.yaml", the empty file).
    written = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("")
    resume = ["train", "--set", "train.n_iterations=6", "--out", str(run), "--resume", "--quiet"]
    code, out, err = run_main(resume, capsys)
    assert code == 2 and f"{run / 'config.yaml'} is empty" in err, err
    assert f"remove it to resume from the settings {run / 'checkpoint.pt'} holds" in err, err
    assert load_checkpoint(run)["iteration"] == 5
    # A run whose config.yaml is gone resumes with the settings its checkpoint holds, not the
    # defaults (it was refused, the checkpoint's settings not mentioned), and writes them back.
    (run / "config.yaml").unlink()
    code, out, err = run_main(resume, capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 6
    assert (run / "config.yaml").read_text() == written.replace("n_iterations: 5",
                                                                "n_iterations: 6")


def test_a_resume_whose_config_yaml_and_checkpoint_settings_are_gone_asks_for_the_file(
        texture_run: Path, tmp_path: Path, capsys) -> None:
    """A checkpoint without settings (a Trainer given no config) is not resumed from the
    defaults either: the run's config file is asked for."""
    run = tmp_path / "run"
    run.mkdir()
    state = load_checkpoint(texture_run / "checkpoint.pt")
    del state["config"]
    save_checkpoint(state, run / "checkpoint.pt")
    code, _, err = run_main(["train", "--out", str(run), "--resume", "--quiet"], capsys)
    assert code == 2, err
    assert (f"{run / 'config.yaml'} not found, and {run / 'checkpoint.pt'} holds no settings: "
            "give the run's config file") in err, err


def test_a_resume_from_checkpoint_settings_of_a_newer_version_says_so(
        texture_run: Path, tmp_path: Path, capsys) -> None:
    """Its config.yaml gone, a run resumed from its checkpoint's settings named a key of a newer
    stgconv as an unknown key alone, where reading the checkpoint for a model gives the hint;
    a --set's own unknown key is the user's, without it."""
    run = tmp_path / "run"
    run.mkdir()
    state = load_checkpoint(texture_run / "checkpoint.pt")
    state["config"]["sampler"]["tempering"] = 2.0  # a later version's setting
    save_checkpoint(state, run / "checkpoint.pt")
    resume = ["train", "--out", str(run), "--resume", "--quiet"]
    code, _, err = run_main(resume, capsys)
    assert code == 2, err
    assert (f"checkpoint {run / 'checkpoint.pt'} holds a config this stgconv cannot read "
            "(written by a newer version?): ") in err, err
    assert "unknown config key(s) sampler.tempering" in err, err
    del state["config"]["sampler"]["tempering"]
    save_checkpoint(state, run / "checkpoint.pt")
    code, _, err = run_main([*resume, "--set", "train.lrr=1"], capsys)
    assert code == 2 and "--set train.lrr=1: unknown config key(s) train.lrr" in err, err
    assert "newer version" not in err, err


def test_print_config_shows_what_train_would_run_and_writes_nothing(
        texture_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code, printed, err = run_main(["train", *TINY, "--set", "train.lr=0.002", "--out", str(out),
                                   "--print-config"], capsys)
    assert code == 0, err
    assert not out.exists()
    # Every key with its value, as YAML that train reads back to the same config.
    mine = tmp_path / "mine.yaml"
    mine.write_text(printed)
    shown = load_config(mine)
    overrides = [*TINY[1::2], "train.lr=0.002"]  # TINY's values, without its "--set"s
    assert shown == load_config(None, overrides, {"out_dir": str(out)})
    assert shown.train.lr == 0.002 and shown.out_dir == str(out)
    assert "sampler:" in printed and "done" not in printed
    assert printed == config_yaml(shown)  # the text a run's config.yaml holds, nothing more
    # A resume prints the run's own config.yaml under the new settings.
    code, printed, err = run_main(["train", "--set", "train.n_iterations=9", "--out",
                                   str(texture_run), "--resume", "--print-config"], capsys)
    assert code == 0, err
    assert yaml.safe_load(printed)["train"]["n_iterations"] == 9
    assert yaml.safe_load(printed)["model"]["layers"] == [[8, 5, 2], [8, 3, 1]]
    # Checked as train checks it.
    code, printed, err = run_main(["train", *TINY, "--set", "train.lrr=1", "--print-config"],
                                  capsys)
    assert code == 2 and printed == ""
    assert "unknown config key(s) train.lrr" in err
    # A resume's CONFIG that is not the run's is refused, as train refuses it.
    other = tmp_path / "other.yaml"
    other.write_text("sampler:\n  n_steps: 5\n")
    code, printed, err = run_main(["train", str(other), "--out", str(texture_run), "--resume",
                                   "--print-config"], capsys)
    assert code == 2 and printed == ""
    assert "is not the run's config" in err, err


def test_resume_ignores_a_setting_the_runs_config_yaml_holds_but_its_training_never_read(
        tmp_path: Path, capsys) -> None:
    """A run that an earlier stgconv trained with such a setting (accepted then, refused now)
    resumes without it, as its checkpoint loads, and says so: it was refused, one key a time."""
    run = tiny_texture_run(tmp_path)
    saved = run / "config.yaml"
    saved.write_text(saved.read_text().replace("buffer_capacity: 10000", "buffer_capacity: 77"))
    code, _, err = run_main(["train", "--set", "train.n_iterations=2", "--out", str(run),
                             "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert (f"warning: {saved} sets chains.buffer_capacity, which its training never read "
            "(an earlier stgconv accepted them): ignored") in err
    assert load_checkpoint(run)["iteration"] == 2
    assert load_config(saved).chains.buffer_capacity == 10000  # the run's own, now readable
    # A config file of the user's is still refused for it.
    user = tmp_path / "user.yaml"
    user.write_text(saved.read_text().replace("buffer_capacity: 10000", "buffer_capacity: 77"))
    code, _, err = run_main(["train", str(user), "--resume", "--quiet"], capsys)
    assert code == 2 and "chains.buffer_capacity is 77, but applies to" in err, err


def test_a_link_in_the_runs_own_output_folder_is_refused(tmp_path: Path, capsys) -> None:
    """A run folder from elsewhere whose synthesis/samples.png links to a file of the user's:
    synthesize, writing there by default, replaced that file. A linked synthesis/ folder is
    written into (a user's way to put outputs on another disk)."""
    run = tiny_texture_run(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's")
    (run / "synthesis").mkdir()
    (run / "synthesis" / "samples.png").symlink_to(notes)
    code, _, err = run_main(["synthesize", str(run), "--num", "1", "--steps", "1"], capsys)
    assert code == 2 and re.search(r"synthesis/samples\.png is a symbolic link to .*notes\.txt: "
                                   r"writing the outputs into the run's synthesis folder", err), err
    (run / "synthesis" / "samples.png").unlink()  # a link to nothing: written, it makes that file
    (run / "synthesis" / "samples.png").symlink_to(tmp_path / "nowhere.png")
    code, _, err = run_main(["synthesize", str(run), "--num", "1", "--steps", "1"], capsys)
    assert code == 2 and "samples.png is a symbolic link to" in err, err
    assert not (tmp_path / "nowhere.png").exists()
    (run / "synthesis" / "samples.png").unlink()
    (run / "synthesis").rmdir()
    (tmp_path / "disk").mkdir()
    (run / "synthesis").symlink_to(tmp_path / "disk")
    code, _, err = run_main(["synthesize", str(run), "--num", "1", "--steps", "1"], capsys)
    assert code == 0, err
    assert (tmp_path / "disk" / "synthesized.npy").is_file()
    assert notes.read_text() == "the user's"
    (tmp_path / "logs").mkdir()  # a linked folder inside it is no file written through
    (tmp_path / "disk" / "logs").symlink_to(tmp_path / "logs")
    code, _, err = run_main(["synthesize", str(run), "--num", "1", "--steps", "1"], capsys)
    assert code == 0, err


def test_a_file_where_the_runs_own_output_folder_goes_is_refused_before_the_work(
        tmp_path: Path, capsys) -> None:
    """Without --out, synthesize writes into the run's synthesis folder, checked up front as an
    --out is: a file of that name is refused, naming it, and stays as it was."""
    run = tiny_texture_run(tmp_path)
    (run / "synthesis").write_text("the user's")
    code, _, err = run_main(["synthesize", str(run), "--num", "1", "--steps", "1"], capsys)
    assert code == 2 and f"output folder {run / 'synthesis'} is a file, not a folder" in err, err
    assert (run / "synthesis").read_text() == "the user's"


def test_a_run_saved_with_a_since_withdrawn_setting_resumes_and_a_users_config_is_told(
        tmp_path: Path, capsys) -> None:
    """Runs of 2026-12-01 saved recovery.learned.redraw_every (every run saves every setting):
    a training never read it, so the run resumes without it, saying so (it was refused as an
    unknown key); a config file of the user's holding it is told what replaced it."""
    run = tiny_texture_run(tmp_path)
    saved = run / "config.yaml"
    data = yaml.safe_load(saved.read_text())
    data["recovery"]["learned"]["redraw_every"] = 40
    saved.write_text(yaml.safe_dump(data))
    code, _, err = run_main(["train", "--set", "train.n_iterations=2", "--out", str(run),
                             "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert (f"warning: {saved} sets recovery.learned.redraw_every, which its training never "
            "read (an earlier stgconv accepted them): ignored") in err
    assert load_checkpoint(run)["iteration"] == 2
    code, _, err = run_main(["train", "--set", "recovery.learned.redraw_every=3", "--out",
                             str(run), "--resume", "--quiet"], capsys)  # the user's own, refused
    assert code == 2 and "recovery.learned.redraw_every is a setting of an earlier" in err, err
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump(data))
    code, _, err = run_main(["train", str(user), "--out", str(tmp_path / "new"), "--quiet"],
                            capsys)
    assert code == 2 and err == (
        "stgconv train: error: recovery.learned.redraw_every is a setting of an earlier "
        "stgconv, withdrawn: since 2026-12-01 the learned fill draws its hidden patterns from a "
        "pool (recovery.learned.patterns); leave it out\n"), err


def test_only_the_runs_own_config_yaml_has_its_unread_settings_reset(tmp_path: Path,
                                                                     capsys) -> None:
    """The reset is for what an earlier stgconv saved: the run's config.yaml also where a
    CONFIG given to --resume is compared with it (it was refused there); not a --set of the
    user's, nor a CONFIG resuming a run whose config.yaml is gone."""
    run = tiny_texture_run(tmp_path)
    saved = run / "config.yaml"
    kept = tmp_path / "kept.yaml"  # the run's config as its user kept it
    kept.write_text(saved.read_text())
    saved.write_text(saved.read_text().replace("buffer_capacity: 10000", "buffer_capacity: 77"))
    code, _, err = run_main(["train", str(kept), "--set", "train.n_iterations=2", "--resume",
                             "--quiet"], capsys)
    assert code == 0 and f"warning: {saved} sets chains.buffer_capacity" in err, err
    code, _, err = run_main(["train", "--out", str(run), "--resume", "--quiet",
                             "--set", "chains.buffer_capacity=77"], capsys)
    assert code == 2 and "chains.buffer_capacity is 77, but applies to" in err, err
    user = tmp_path / "user.yaml"
    user.write_text(kept.read_text().replace("buffer_capacity: 10000", "buffer_capacity: 77"))
    saved.unlink()  # nothing to compare CONFIG with
    code, _, err = run_main(["train", str(user), "--out", str(run), "--resume", "--quiet"],
                            capsys)
    assert code == 2 and "chains.buffer_capacity is 77, but applies to" in err, err


def test_resume_refuses_a_config_file_that_is_not_the_runs(texture_run: Path, tmp_path: Path,
                                                           capsys) -> None:
    """`train CONFIG --resume`: a run's --data and --set values live only in its config.yaml,
    so a CONFIG that differs from it would silently continue the run on other settings; it is
    refused, naming what differs, and the same settings resume as before."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    settings = {"data": {"path": "builtin:brick", "size": 32},
                "model": {"layers": [[8, 5, 2], [8, 3, 1]]}, "sampler": {"n_steps": 3},
                "chains": {"chains_per_example": 2}, "train": {"n_iterations": 2}, "device": "cpu"}
    config = tmp_path / "tiny.yaml"
    changed = {**settings, "sampler": {"n_steps": 5}, "train": {"n_iterations": 3, "lr": 0.5}}
    config.write_text(yaml.safe_dump(changed))
    before = (run / "checkpoint.pt").read_bytes()
    code, _, err = run_main(["train", str(config), "--set", "train.n_iterations=3", "--resume",
                             "--out", str(run), "--quiet"], capsys)
    assert code == 2, err
    assert "is not the run's config" in err and "sampler.n_steps: 3 in the run, 5 in CONFIG" in err
    assert "train.lr: 0.01 in the run, 0.5 in CONFIG" in err
    assert (run / "checkpoint.pt").read_bytes() == before
    # How far to train is what a resume changes: a CONFIG differing only there continues.
    config.write_text(yaml.safe_dump({**settings, "train": {"n_iterations": 3}}))
    code, _, err = run_main(["train", str(config), "--resume", "--out", str(run), "--quiet"],
                            capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_resume_refuses_the_config_yaml_of_a_moved_or_copied_run(texture_run: Path,
                                                                  tmp_path: Path, capsys) -> None:
    """A run's config.yaml names the folder it was trained in: given as CONFIG from a copy,
    --resume continued the original run, and from a moved run it looked where the run was."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    shutil.copytree(texture_run, original)
    saved = (original / "config.yaml").read_text()
    (original / "config.yaml").write_text(saved.replace(str(texture_run), str(original)))
    shutil.copytree(original, copy)
    before = (original / "checkpoint.pt").read_bytes()
    for gone in (False, True):
        if gone:
            shutil.rmtree(original)
        code, _, err = run_main(["train", str(copy / "config.yaml"), "--set",
                                 "train.n_iterations=3", "--resume", "--quiet"], capsys)
        assert code == 2, err
        assert (f"{copy / 'config.yaml'} is the config of the run in {copy}, but its out_dir is "
                f"{original} (the run was moved or copied), where --resume would look instead: "
                f"stgconv train --out {copy} --resume") in err, err
        assert (copy / "checkpoint.pt").read_bytes() == before
        assert gone or (original / "checkpoint.pt").read_bytes() == before
    assert not original.exists()


def test_resume_from_another_folder_names_the_config_yaml_relative_out_dir(
        texture_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """config.yaml keeps out_dir as typed: a relative one, read from another working folder,
    names another folder, and the refusal said the run had moved though it never had."""
    run = tmp_path / "project" / "runs" / "a"
    shutil.copytree(texture_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(texture_run), "runs/a"))
    before = (run / "checkpoint.pt").read_bytes()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["train", "project/runs/a/config.yaml", "--resume", "--quiet"], capsys)
    assert code == 2, err
    assert ("project/runs/a/config.yaml is the config of the run in project/runs/a, but its "
            f"out_dir is runs/a, from this folder {tmp_path.resolve() / 'runs' / 'a'} (the run "
            "was moved or copied, or trained from another folder), where --resume would look "
            "instead: stgconv train --out project/runs/a --resume") in err, err
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("changes, shown", [
    # The first four in the order of their keys; train.lr is the one more.
    ({"train": {"lr": 0.5}, "sampler": {"n_steps": 5, "step_size": 0.5}},
     "seed: 0 in the run, 7 in CONFIG and 1 more; resume without CONFIG"),
    # Four in all, none more; a setting two sections deep by its whole key.
    ({"recovery": {"learned": {"iterations": 5}}, "sampler": {"n_steps": 5}},
     "'other' in CONFIG; recovery.learned.iterations: 800 in the run, 5 in CONFIG; "
     "sampler.n_steps: 3 in the run, 5 in CONFIG; seed: 0 in the run, 7 in CONFIG; "
     "resume without CONFIG"),
], ids=["five", "four"])
def test_a_refused_config_names_four_differences_and_counts_the_rest(
        texture_run: Path, tmp_path: Path, capsys, changes: dict, shown: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    config = tmp_path / "changed.yaml"
    config.write_text(yaml.safe_dump(_merged(saved, {"name": "other", "seed": 7, **changes})))
    code, _, err = run_main(["train", str(config), "--resume", "--out", str(run), "--quiet"],
                            capsys)
    assert code == 2, err
    assert "name: 'experiment' in the run, 'other' in CONFIG; " in err and "train.lr" not in err
    assert shown in err, err


def test_resume_without_a_folder_where_the_default_holds_no_run_says_to_name_it(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """Typed inside a run folder, `train --resume` looked for the default out_dir there and
    said only "checkpoint not found: runs/experiment/checkpoint.pt"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("name: mine\n")  # the run's, not the default's
    code, _, err = run_main(["train", "--resume", "--quiet"], capsys)
    assert code == 2 and err.strip().endswith(
        "--resume continues the run in a folder: name it with --out RUN (or give "
        "RUN/config.yaml); there is no runs/experiment here, the default out_dir"), err


@pytest.mark.parametrize("files", [(), ("config.yaml",), ("config.yaml", "tb")])
def test_resume_of_a_folder_without_a_run_names_the_missing_checkpoint(
        tmp_path: Path, capsys, files: tuple[str, ...]) -> None:
    """A config.yaml and tb/ alone, as other commands write them (a recovery's folder), are
    no sign of a run stopped before its first checkpoint."""
    if "config.yaml" in files:
        (tmp_path / "config.yaml").write_text("name: other\n")
    if "tb" in files:
        (tmp_path / "tb").mkdir()
    code, _, err = run_main(["train", "--resume", "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2 and err.strip().endswith(
        f"checkpoint not found: {tmp_path / 'checkpoint.pt'}"), err


def test_resume_of_a_run_stopped_before_its_first_checkpoint_says_so(
        tmp_path: Path, capsys) -> None:
    """Killed before its first checkpoint, a run leaves its config.yaml and observed data:
    --resume said only "checkpoint not found", as for a folder holding no run."""
    (tmp_path / "config.yaml").write_text("name: stopped\n")
    (tmp_path / "observed.png").write_bytes(b"")
    code, _, err = run_main(["train", "--resume", "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2 and (f"checkpoint not found: {tmp_path / 'checkpoint.pt'}; {tmp_path} holds "
                          "the files of a run stopped before its first checkpoint, so there is "
                          "nothing to resume: train afresh with --overwrite") in err, err
    assert (tmp_path / "config.yaml").read_text() == "name: stopped\n"


def test_the_advice_to_resume_without_config_resumes_the_run(texture_run: Path, tmp_path: Path,
                                                             capsys) -> None:
    """The refusal of a CONFIG that is not the run's advises resuming without it: taken as it
    is given, it continues the run, also one whose folder only CONFIG's out_dir named (`train
    --resume` alone looked for a checkpoint in the default's folder)."""
    run = tmp_path / "my run"
    shutil.copytree(texture_run, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    config = tmp_path / "changed.yaml"
    config.write_text(yaml.safe_dump({**saved, "out_dir": str(run),
                                      "sampler": {**saved["sampler"], "n_steps": 5}}))
    code, _, err = run_main(["train", str(config), "--resume", "--quiet"], capsys)
    assert code == 2 and "resume without CONFIG" in err, err
    command = re.search(r"\(stgconv (train [^;]*);", err)
    assert command is not None, err
    code, _, err = run_main([*shlex.split(command[1]), "--set", "train.n_iterations=3",
                             "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_a_resume_refused_for_its_set_values_names_them(texture_run: Path, tmp_path: Path,
                                                        capsys) -> None:
    """`train --out RUN --resume` reads the run's own config.yaml, which the refusal of a --set
    that changes the network advised as the remedy (taken, it was refused again): the advice
    names the --set, and the resume without it continues."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    resume = ["train", "--out", str(run), "--resume", "--set", "train.n_iterations=3", "--quiet"]
    code, _, err = run_main([*resume, "--set", "model.layers=[[4, 5, 2], [4, 3, 1]]"], capsys)
    assert code == 2 and "differing: layers" in err, err
    assert "resume with the run's own config.yaml and no --set that changes it" in err, err
    code, _, err = run_main(resume, capsys)
    assert code == 0, err


@pytest.mark.parametrize("setting, named", [("data.channels=3", "model.in_channels is 1"),
                                             ("data.size=48", "model.image_size is 32")])
def test_a_resume_on_data_of_another_shape_says_to_resume_on_the_runs_data(
        texture_run: Path, tmp_path: Path, capsys, setting: str, named: str) -> None:
    """The run's config.yaml holds the channels and size its data gave: the refusal advised
    leaving them out, which a resumed run's saved config cannot."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    code, _, err = run_main(["train", "--out", str(run), "--resume", "--set", setting,
                             "--set", "train.n_iterations=3", "--quiet"], capsys)
    assert code == 2 and named in err, err
    assert ("the run's network was built for the data it was trained on: resume with that data "
            "(its data.path, data.channels and data.size), or train a new run") in err, err
    assert "leave model" not in err, err


def test_synthesize(texture_run: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run_main(["synthesize", str(texture_run), "-n", "3", "--steps", "2",
                               "--out", str(tmp_path / "a"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert_png(tmp_path / "a" / "synthesized.png", (3 * 34 + 2, 34 + 2))
    # A stationary model samples at any size; the default output folder is inside the run.
    code, _, err = run_main(["synthesize", str(texture_run / "checkpoint.pt"), "-n", "1",
                             "--steps", "2", "--size", "48", "--device", "cpu"], capsys)
    assert code == 0, err
    assert_png(texture_run / "synthesis" / "synthesized.png", (48, 48))
    code, _, err = run_main(["synthesize", str(texture_run), "--start", "chains", "--steps",
                             "2", "--out", str(tmp_path / "c"), "--device", "cpu"], capsys)
    assert code == 0, err
    # A warning is one line naming the command, not Python's two quoting a source line.
    assert err.splitlines() == ["stgconv synthesize: warning: the checkpoint keeps 2 chains: 2 "
                                "samples, not the 16 asked for (--start noise makes any number)"]
    assert_png(tmp_path / "c" / "synthesized.png", (2 * 34 + 2, 34 + 2))


def test_synthesize_classes(trained_jem_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    run = str(trained_jem_run["run"])
    common = ["-n", "2", "--steps", "2", "--device", "cpu"]
    code, _, err = run_main(["synthesize", run, "--class", "0", "--class", "2", *common,
                             "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    samples = np.load(tmp_path / "a" / "synthesized.npy")
    assert samples.shape == (4, 1, 28, 28) and np.isfinite(samples).all()
    # Grey levels 0-255, the digits' own range (the chains' clamp at [-1, 1] reaches both ends).
    assert samples.min() == 0 and samples.max() == 255
    # One row per class, -n samples per row (28 px images, 2 px padding).
    assert_png(tmp_path / "a" / "synthesized.png", (2 * 30 + 2, 2 * 30 + 2))
    # Same seed, so the same starts and noise: only the class's energy differs.
    for name, classes in (("b", ["--class", "1"]), ("c", ["--class", "2"]), ("d", [])):
        code, _, err = run_main(["synthesize", run, *classes, *common,
                                 "--out", str(tmp_path / name)], capsys)
        assert code == 0, err
    b, c, d = (np.load(tmp_path / name / "synthesized.npy") for name in "bcd")
    assert not np.array_equal(b, c) and not np.array_equal(b, d)
    code, _, err = run_main(["synthesize", run, "--class", "1", "--start", "chains", *common,
                             "--out", str(tmp_path / "e")], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "e" / "synthesized.npy").shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    "model, option, message",
    [
        ("texture", ["--class", "0"], "is not a classifier (JEM) model"),
        ("jem", ["--class", "3"], "class 3 is out of range: the model has 3 classes, 0 .. 2"),
        ("jem", ["--class", "1", "--class", "-1"], "class must be an int >= 0, got -1"),
        ("jem", ["--class", "1", "-n", "100", "--start", "chains"], "fewer than the 100"),
    ],
)
def test_synthesize_classes_refused(texture_run: Path, trained_jem_run: dict[str, Path], capsys,
                                    model: str, option: list[str], message: str) -> None:
    run = texture_run if model == "texture" else trained_jem_run["run"]
    code, _, err = run_main(["synthesize", str(run), *option, "--steps", "1", "--device", "cpu"],
                            capsys)
    assert code == 2
    assert message in err and err.startswith("stgconv synthesize: error:")


def test_reconstruct_and_interpolate(short_run: Path, tmp_path: Path, capsys) -> None:
    image = tmp_path / "target.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)).save(image)
    code, _, err = run_main(["reconstruct", str(short_run), str(image), "--iterations", "1",
                             "--out", str(tmp_path / "rec"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert_png(tmp_path / "rec" / "reconstruction.png", (2 * 34 + 2, 34 + 2))
    scores = json.loads((tmp_path / "rec" / "reconstruction.json").read_text())
    # One step: mse holds the start's; mse_last is the written reconstruction's, after it.
    assert scores["mse"] == [scores["mse_first"]] and scores["mse_last"] != scores["mse_first"]
    code, _, err = run_main(["interpolate", str(short_run), "--points", "3",
                             "--out", str(tmp_path / "int"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert_png(tmp_path / "int" / "interpolation.png", (3 * 34 + 2, 34 + 2))
    path = np.load(tmp_path / "int" / "interpolation.npy")
    # Grey levels 0-255, the data's range, as synthesize writes samples.
    assert path.shape == (3, 1, 32, 32) and path.min() >= 0 and 1 < path.max() <= 255
    assert "warning" not in err  # trained from noise starts: the chain it learned


def test_reconstruct_warns_for_a_model_not_trained_from_noise(texture_run: Path,
                                                               tmp_path: Path, capsys) -> None:
    code, _, err = run_main(["reconstruct", str(texture_run), str(texture_run / "observed.png"),
                             "--iterations", "1", "--out", str(tmp_path / "rec"),
                             "--device", "cpu"], capsys)
    assert code == 0, err
    assert "trained with chains.mode 'persistent', not from noise starts" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["synthesize", "{short}", "--size", "48"], "tied to 32x32 inputs"),
        (["synthesize", "{short}", "--start", "chains"], "keeps no chains"),
    ],
)
def test_synthesize_user_errors(short_run: Path, capsys, args: list[str], message: str) -> None:
    args = [a.replace("{short}", str(short_run)) for a in args]
    code, _, err = run_main([*args, "--device", "cpu"], capsys)
    assert code == 2
    assert message in err and err.startswith("stgconv synthesize: error:")


def test_bad_input_exits_2(tmp_path: Path, texture_run: Path, capsys) -> None:
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not an image at all")
    cases = [
        (["train", str(tmp_path / "missing.yaml")], "config file not found"),
        (["train", *TINY, "--set", "train.lrr=0.1", "--out", str(tmp_path / "r1")], "train.lrr"),
        (["train", *TINY, "--set", "train.lr=fast", "--out", str(tmp_path / "r1")],
         "train.lr must be a number"),
        (["synthesize", str(tmp_path / "nothing")], "checkpoint not found"),
        (["synthesize", str(garbage)], "x.png"),
        (["reconstruct", str(texture_run), str(garbage), "--iterations", "1", "--device", "cpu",
          "--out", str(tmp_path / "r2")], "cannot read image"),
        (["train", *TINY, "--data", str(tmp_path / "nope.png"), "--out", str(tmp_path / "r3")],
         "image not found"),
        (["train", *TINY, "--set", "data.kind=objects", "--data", str(tmp_path / "no_dir"),
          "--out", str(tmp_path / "r4")], "image folder not found"),
        (["train", *TINY, "--data", str(garbage), "--out", str(tmp_path / "r5")],
         "cannot read image"),
        (["train", *TINY, "--resume", "--out", str(tmp_path / "r6")], "checkpoint not found"),
        # A path of the other kind is named as such, not as missing.
        (["train", *TINY, "--data", str(tmp_path), "--out", str(tmp_path / "r7")],
         f"{tmp_path} is a folder: data.kind texture learns from one image file; data.kind "
         "objects reads a folder of images"),
        (["train", *TINY, "--data", str(tmp_path / "digits.npz"), "--out", str(tmp_path / "r11")],
         f"{tmp_path / 'digits.npz'} is an .npz file: data.kind texture learns from one image "
         "file; data.kind objects reads an .npz file of images"),
        (["train", *TINY, "--set", "data.kind=objects", "--data", str(garbage), "--out",
          str(tmp_path / "r8")], f"{garbage} is a file: data.kind objects reads a folder of "
         "images or an .npz file whose x_train holds them; data.kind texture learns from one "
         "image file"),
        # Sizes typed a few digits too long are refused before the allocation fails.
        (["train", *TINY, "--set", "chains.chains_per_example=300000", "--out",
          str(tmp_path / "r9")], "a batch of 1 examples with 300000 chains each"),
        (["train", *TINY, "--set", "chains.mode=buffer", "--set",
          "chains.buffer_capacity=300000", "--out", str(tmp_path / "r10")],
         "chains.buffer_capacity=300000 makes a (300000, 1, 32, 32) tensor"),
    ]
    np.savez(tmp_path / "digits.npz", x_train=np.zeros((2, 8, 8), np.uint8))
    for args, message in cases:
        code, out, err = run_main(args, capsys)
        assert code == 2, (args, err)
        assert message in err, (args, err)
        assert err.startswith(f"{prog(args)}: error:"), err
        assert "Traceback" not in err
    for rejected in ("r1", "r9", "r10"):  # a rejected config writes nothing
        assert not (tmp_path / rejected).exists(), rejected


@pytest.mark.parametrize(
    "args, message",
    [
        (["synthesize", "{run}", "--steps", "-1"], "--steps must be >= 0, got -1"),
        (["synthesize", "{run}", "--steps", "0"], "0 steps (no chain) is for cooperative models"),
        (["synthesize", "{run}", "-n", "0"], "--num must be >= 1, got 0"),
        (["reconstruct", "{run}", "{run}/observed.png", "--iterations", "0"],
         "--iterations must be >= 1, got 0"),
        (["reconstruct", "{run}", "{run}/observed.png", "--lr", "nan"],
         "--lr must be a finite number > 0 and at most 3.403e+38 (float32's largest), got nan"),
        (["interpolate", "{run}", "--points", "1"], "--points must be >= 2, got 1"),
        (["synthesize", "{run}", "--size", "0"], "--size must be >= 1, got 0"),
        (["eval", "classification", "--checkpoint", "{run}", "--shapes", "x.npz",
          "--per-class", "0", "--json", "{out}"], "--per-class must be >= 1, got 0"),
        (["eval", "recovery-3d", "--checkpoint", "{run}", "--shapes", "x.npz",
          "--max-shapes", "0"], "--max-shapes must be >= 1, got 0"),
        (["recover", "--video", "{run}/observed.png", "--mask", "region:8", "--frames", "0"],
         "--frames must be >= 1, got 0"),
        (["eval", "super-resolution", "--checkpoint", "{run}", "--shapes", "x.npz",
          "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["eval", "classification", "--checkpoint", "{run}", "--shapes", "x.npz", "--folds",
          "1", "--json", "{out}"], "--folds must be >= 2, got 1"),
        # block_down(x, 1) is x: a perfect "super-resolution" by every method, a table of zeros.
        (["eval", "super-resolution", "--checkpoint", "{run}", "--shapes", "x.npz",
          "--factor", "1"], "--factor must be >= 2, got 1"),
        (["super-resolve", "{run}", "x.npy", "--factor", "1"], "--factor must be >= 2, got 1"),
        # synthesize's 0 (a cooperative model's generator alone) is no chain length elsewhere.
        (["super-resolve", "{run}", "x.npy", "--steps", "0"], "--steps must be >= 1, got 0"),
        # Sizes past the entry limit, refused before a clip is read or a path drawn (they ran
        # out of memory: killed, or a MemoryError traceback).
        (["recover", "--video", "{run}/observed.png", "--mask", "region:8", "--frames", "6",
          "--size", "100000"], "a clip of 6 frames of 100000x100000 makes a"),
        (["fill-prior", "{run}/observed.png", "--frames", "6", "--size", "100000", "--out",
          "{out}"], "a window of 6 frames of 100000x100000 makes a"),
        (["interpolate", "{run}", "--points", "100000000"], "100000000 points makes a"),
        (["synthesize", "{run}", "--seed", "-1"],
         "--seed must be an int in [0, 2^63 - 2^16), got -1"),
        (["super-resolve", "{run}", "x.npy", "--seed", "99999999999999999999"],
         "--seed must be an int in [0, 2^63 - 2^16), got 99999999999999999999"),
        (["synthesize", "{run}", "--seed", str(2**63 - 2**16)],
         f"--seed must be an int in [0, 2^63 - 2^16), got {2**63 - 2**16}"),
        (["reconstruct", "{run}", "x.png", "--lr", "inf"],
         "--lr must be a finite number > 0 and at most 3.403e+38 (float32's largest), got inf"),
        # Past float32's range: a traceback from Adam's step, after the model had loaded.
        (["reconstruct", "{run}", "{run}/observed.png", "--lr", "1e300"],
         "--lr must be a finite number > 0 and at most 3.403e+38 (float32's largest), "
         "got 1e+300"),
        # 0 in float32: the chain's start was optimised by nothing, without a word.
        (["reconstruct", "{run}", "{run}/observed.png", "--lr", "1e-50"],
         "--lr is 1e-50, which float32 (the tensors it scales) holds as 0.0: a setting other "
         "than 0 must be at least 1.175e-38 in size (float32's smallest normal number)"),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_option_typed(
        texture_run: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    """The refusal names the option (--steps), not the library parameter it becomes (n_steps),
    and comes before any work: nothing is written."""
    out = tmp_path / "out"
    args = [a.replace("{run}", str(texture_run)).replace("{out}", str(out)) for a in args]
    if "--json" not in args and "--out" not in args:
        args += ["--out", str(out)]
    before = sorted(texture_run.rglob("*"))
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert err.startswith(f"{prog(args)}: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(texture_run.rglob("*")) == before


@pytest.mark.parametrize("args, key, value", [
    (["recover", "--video", "{out}/clip.mkv", "--mask", "region:4", "--out", "{out}/rec"],
     "frames", 8),
    (["eval", "recovery", "--video", "{out}/clip.mkv", "--mask", "region:4", "--json",
      "{out}/table.json"], "size", 32),
    (["fill-prior", "{out}/clip.mkv", "--out", "{out}/prior.pt"], "frames", 8),
    # 16 and 64 are also the section's defaults: told apart by what the config names.
    (["recover", "--video", "{out}/clip.mkv", "--mask", "region:4", "--out", "{out}/rec"],
     "frames", 16),
    (["recover", "--video", "{out}/clip.mkv", "--mask", "region:4", "--out", "{out}/rec"],
     "size", 64),
])
def test_a_configs_clip_shape_that_a_left_out_flag_would_override_is_refused(
        tmp_path: Path, capsys, args: list[str], key: str, value: int) -> None:
    """These commands read the clip's frames and side from --frames and --size: --set
    data.frames=8 gave way to --frames' default 70 without a word (and failed later as 'asked
    for n_frames=70'). Refused before the clip is read; nothing written."""
    args = [a.replace("{out}", str(tmp_path)) for a in args] + ["--set", f"data.{key}={value}"]
    code, _, err = run_main(args, capsys)
    default = {"frames": 70, "size": 150}[key]
    assert code == 2 and err == (
        f"{prog(args)}: error: data.{key} is {value}, but this command takes the clip's {key} "
        f"from --{key}, not from the config: pass --{key} {value} (or --{key} {default}, its "
        "default)\n")
    assert list(tmp_path.iterdir()) == []


def test_the_clip_shape_flags_win_and_a_config_that_agrees_is_read() -> None:
    def clip_shape(overrides: list[str], frames: int | None, size: int | None) -> tuple:
        args = argparse.Namespace(config=None, overrides=overrides, device=None, frames=frames,
                                  size=size)
        return cli._recovery_config(args)[1:]

    assert clip_shape([], None, None) == (70, 150)
    # A config that names no clip shape leaves the section's defaults (16, 64) unread.
    assert clip_shape(["data.kind=video"], None, None) == (70, 150)
    assert clip_shape(["data.frames=8"], 8, None) == (8, 150)
    assert clip_shape(["data.frames=8"], 12, None) == (12, 150)  # the flag typed wins
    # A config as recover writes it (the clip's shape as run) is read back without a flag.
    assert clip_shape(["data.frames=70", "data.size=150"], None, 32) == (70, 32)


@pytest.mark.parametrize("command", ["recover", "eval"])
def test_recovery_into_a_training_run_is_refused(texture_run: Path, capsys,
                                                 command: str) -> None:
    """Recovery writes config.yaml into its folder: into a run's, it would replace the one the
    run's --resume reads. Refused before the clip is read, the run left as it was."""
    before = {path: path.read_bytes() for path in texture_run.rglob("*") if path.is_file()}
    args = [command, *(["recovery"] if command == "eval" else []), "--video",
            str(texture_run / "observed.png"), "--mask", "region:8", "--out", str(texture_run)]
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert re.search(rf"error: {re.escape(str(texture_run))} holds a training run "
                     r"\(checkpoint.*replace its config\.yaml", err), err
    assert {path: path.read_bytes() for path in texture_run.rglob("*")
            if path.is_file()} == before


@pytest.mark.parametrize("args, message", [
    (["eval", "super-resolution", "--checkpoint", "{voxels}", "--shapes", "{shapes}",
      "--json", "{out}/t.json", "--out", "{out}/t.json"], "--out {out}/t.json is --json"),
    (["eval", "recovery-3d", "--checkpoint", "{voxels}", "--shapes", "{shapes}",
      "--json", "{out}/t.json", "--out", "{out}/t.json/renders"],
     "--out {out}/t.json/renders lies under --json"),
    (["eval", "recovery", "--video", "{out}/clip.mkv", "--mask", "region:4",
      "--json", "{out}", "--tensorboard", "{out}"], "--tensorboard {out} is --json"),
])
def test_a_folder_output_where_the_json_goes_is_refused_before_the_work(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys, args: list[str],
        message: str) -> None:
    """Each option passed its own check: the evaluation ran, wrote the folder, then failed on
    the JSON file with the rename's error, the folder's files left behind."""
    paths = {"out": str(tmp_path / "out"), "voxels": str(trained_voxel_run["run"]),
             "shapes": str(trained_voxel_run["shapes"])}
    code, _, err = run_main([a.format(**paths) for a in args] + ["--device", "cpu"], capsys)
    assert code == 2
    assert err.startswith(f"{prog(args)}: error: {message.format(**paths)}"), err
    assert "give them different paths" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, name", [
    (["eval", "super-resolution", "--checkpoint", "{voxels}", "--shapes", "{shapes}"],
     "stgconv.npy"),
    (["eval", "recovery-3d", "--checkpoint", "{voxels}", "--shapes", "{shapes}"],
     "comparison.png"),
    (["eval", "recovery", "--video", "{out}/clip.mkv", "--mask", "region:4"], "metrics.json"),
])
def test_a_json_over_a_file_the_out_folder_gets_is_refused_before_the_work(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys, args: list[str],
        name: str) -> None:
    """--json OUT/stgconv.npy --out OUT: both were written to the one path, the JSON table
    over our grids (or the render, or recovery's metrics), and the run reported both written."""
    paths = {"out": str(tmp_path / "out"), "voxels": str(trained_voxel_run["run"]),
             "shapes": str(trained_voxel_run["shapes"])}
    argv = [*args, "--out", "{out}", "--json", f"{{out}}/{name}", "--device", "cpu"]
    code, _, err = run_main([a.format(**paths) for a in argv], capsys)
    assert code == 2
    assert err.startswith(f"{prog(args)}: error: --json {paths['out']}/{name} is the {name} "
                          f"that the command writes into --out {paths['out']}"), err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_json_over_a_file_the_out_folder_gets_is_refused_by_relative_paths_too(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys, monkeypatch) -> None:
    """The paths as typed, relative to the working folder: compared as they are, "out" and
    "./out/stgconv.npy" never matched the absolute path of the other."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["eval", "super-resolution", "--checkpoint",
                             str(trained_voxel_run["run"]), "--shapes",
                             str(trained_voxel_run["shapes"]), "--out", "out", "--json",
                             "./out/stgconv.npy", "--device", "cpu"], capsys)
    assert code == 2
    assert "error: --json ./out/stgconv.npy is the stgconv.npy that the command writes" in err
    assert list(tmp_path.iterdir()) == []


def test_open3d_without_its_system_library_is_one_line_saying_what_to_install(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys,
        open3d_without_libusb: None) -> None:
    """A user who installed stgconv with pip on an image without libusb-1.0 got a traceback
    ending in "ImportError: libusb-1.0.so.0: cannot open shared object file" from the first
    command that drew a shape."""
    code, _, err = run_main(["synthesize", str(trained_voxel_run["run"]), "-n", "1",
                             "--out", str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert code == 2, err
    assert err.startswith("stgconv synthesize: error: rendering voxel grids needs open3d, which "
                          "failed to import (libusb-1.0.so.0: cannot open shared object file"), err
    assert "apt-get install libusb-1.0-0 libgl1" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "synthesized.npy").exists()


@pytest.mark.parametrize("linked", ["--json", "--out"])
def test_a_json_over_a_file_the_out_folder_gets_is_refused_through_a_link_too(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys, linked: str) -> None:
    """--json LINK/stgconv.npy, LINK a link to the --out folder (or --out LINK, and --json in
    the folder it leads to): as absolute paths the two differed, and the JSON table was
    written over our grids."""
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    out, table = ((tmp_path / "out", tmp_path / "link/stgconv.npy") if linked == "--json"
                  else (tmp_path / "link", tmp_path / "out/stgconv.npy"))
    code, _, err = run_main(["eval", "recovery-3d", "--checkpoint", str(trained_voxel_run["run"]),
                             "--shapes", str(trained_voxel_run["shapes"]), "--out", str(out),
                             "--json", str(table), "--device", "cpu"], capsys)
    assert code == 2
    assert err.startswith(f"stgconv eval recovery-3d: error: --json {table} is the stgconv.npy "
                          f"that the command writes into --out {out}"), err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("evaluation", ["super-resolution", "recovery-3d"])
@pytest.mark.parametrize("spelt", ["./shapes", "link"])
def test_an_out_folder_that_is_the_shapes_folder_is_refused_before_the_work(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys, monkeypatch,
        evaluation: str, spelt: str) -> None:
    """--shapes DIR --out DIR: our stgconv.npy was written among the shapes, and the next run
    with them read it as more shapes (its table of 4 shapes became one of 6)."""
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    with np.load(trained_voxel_run["shapes"]) as archive:
        np.save(shapes / "a.npy", archive["X"][:4])
    (tmp_path / "link").symlink_to(shapes)
    monkeypatch.chdir(tmp_path)  # the one folder, named two ways: relative, or through a link
    code, _, err = run_main(["eval", evaluation, "--checkpoint", str(trained_voxel_run["run"]),
                             "--shapes", str(shapes), "--out", spelt, "--device", "cpu"],
                            capsys)
    assert code == 2
    assert err.startswith(f"stgconv eval {evaluation}: error: --out {spelt} is the --shapes "
                          f"folder {shapes}: the stgconv.npy written there would be read as "
                          "one of its shapes by the next run"), err
    assert len(err.strip().splitlines()) == 1
    assert sorted(path.name for path in shapes.iterdir()) == ["a.npy"]


def test_an_abbreviation_of_the_main_parsers_option_is_refused(capsys) -> None:
    """Not the subcommands' options only: ``stgconv --vers`` printed the version, as
    --version."""
    with pytest.raises(SystemExit) as info:
        main(["--vers"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == (
        "stgconv: error: the following arguments are required: command")


def test_a_shapes_folder_and_an_out_folder_not_yet_made_pass_the_check(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    """--shapes DIR with an --out that does not exist yet, or a --shapes that does not exist:
    the comparison of the two folders is for folders there; where one is not, each is checked
    as before (a shapes folder missing named so, not as an errno of the comparison)."""
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    with np.load(trained_voxel_run["shapes"]) as archive:
        np.save(shapes / "a.npy", archive["X"][:1])
    code, _, err = run_main(["eval", "recovery-3d", "--checkpoint", str(trained_voxel_run["run"]),
                             "--shapes", str(shapes), "--out", str(tmp_path / "out"),
                             "--steps", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "stgconv.npy").is_file()
    code, _, err = run_main(["eval", "recovery-3d", "--checkpoint", str(trained_voxel_run["run"]),
                             "--shapes", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "out"), "--steps", "1", "--device", "cpu"], capsys)
    assert code == 2
    assert "[Errno" not in err and "missing" in err, err


def test_eval_classification_of_a_shapes_folder_is_one_line(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    """eval classification has --shapes but no --out: the check of an --out that is the
    --shapes folder must not ask it for one (an AttributeError traceback)."""
    code, _, err = run_main(["eval", "classification", "--checkpoint",
                             str(trained_voxel_run["run"]), "--shapes", str(tmp_path),
                             "--device", "cpu"], capsys)
    assert code == 2
    assert err.startswith("stgconv eval classification: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_json_path_that_is_a_pipe_or_device_is_refused(tmp_path: Path, capsys) -> None:
    """--json /dev/null passed the checks, and the table, written beside it and renamed into
    place, replaced /dev/null itself (run as root); a named pipe stands in for it here."""
    os.mkfifo(tmp_path / "fifo")
    code, _, err = run_main(["eval", "ood", "--checkpoint", str(tmp_path / "run"), "--inliers",
                             str(tmp_path / "a.npz"), "--outliers", str(tmp_path / "b.npz"),
                             "--json", str(tmp_path / "fifo")], capsys)
    assert code == 2
    assert err.startswith(f"stgconv eval ood: error: --json {tmp_path / 'fifo'} is not a "
                          "regular file"), err
    assert (tmp_path / "fifo").is_fifo()


@pytest.mark.parametrize("command, option", [
    ("recover", "--config"), ("recover", "--device"), ("fill-prior", "--config"),
    ("fill-prior", "--device"), ("recover", "--out"), ("fill-prior", "videos"),
])
def test_an_empty_value_is_refused_not_taken_for_none_or_here(
        tmp_path: Path, capsys, monkeypatch, command: str, option: str) -> None:
    """An empty value (an unset shell variable, "--config $CONFIG"): --config '' ran the shipped
    config and --device '' the config's device without a word; as a path it is the current
    folder, so --out '' wrote there."""
    monkeypatch.chdir(tmp_path)
    clip, out = str(tmp_path / "clip.mkv"), str(tmp_path / "out")
    args = (["recover", "--video", clip, "--mask", "region:4", "--out", out]
            if command == "recover" else ["fill-prior", clip, "--out", f"{out}/prior.pt"])
    if option.startswith("--"):
        args += [option, ""]
    else:
        args[args.index(clip)] = ""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"stgconv {command}: error: {option}: an empty value; give one"
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synthesize"])  # argparse: missing checkpoint argument
    assert info.value.code == 2
    assert "checkpoint" in capsys.readouterr().err


def test_demo(tmp_path: Path, capsys) -> None:
    tiny = [a if a != "train.n_iterations=2" else "train.n_iterations=1" for a in TINY]
    code, _, err = run_main(["demo", "--out", str(tmp_path / "demo"), *tiny,
                             "--set", "chains.chains_per_example=1", "--quiet"], capsys)
    assert code == 0, err
    assert (tmp_path / "demo" / "checkpoint.pt").is_file()
    assert_png(tmp_path / "demo" / "synthesis" / "synthesized.png")


def test_demo_without_out_writes_where_a_set_out_dir_says(tmp_path: Path, capsys,
                                                         monkeypatch) -> None:
    """--set out_dir=DIR without --out was replaced by --out's default without a word: the run
    went to outputs/demo. --out still wins where both are given (test_tasks)."""
    monkeypatch.chdir(tmp_path)
    tiny = [a if a != "train.n_iterations=2" else "train.n_iterations=1" for a in TINY]
    code, _, err = run_main(["demo", "--set", f"out_dir={tmp_path / 'mine'}", *tiny,
                             "--set", "chains.chains_per_example=1", "--quiet"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert (tmp_path / "mine" / "checkpoint.pt").is_file()
    code, _, err = run_main(["demo", "--set", "out_dir=2024", *tiny], capsys)
    assert code == 2
    assert "out_dir must be a str, got 2024: quote it (out_dir='2024')" in err


@pytest.mark.parametrize("argv", [
    ["fill-prior", "clip.mp4", "--out", "prior.pt"],
    ["eval", "recovery", "--video", "v.mp4", "--mask", "region:8", "--out", "out"],
])
def test_a_set_out_dir_that_the_command_never_reads_is_refused(tmp_path: Path, capsys,
                                                               monkeypatch, argv) -> None:
    """fill-prior and eval recovery write to their --out: a --set out_dir=... did nothing."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main([*argv, "--set", "out_dir=mine"], capsys)
    assert code == 2
    assert "does not read out_dir: remove --set out_dir=..., and give --out" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting", [["--set", "chains.mode=noise"],
                                     ["--set", "cooperative={}"]])
def test_demo_refuses_a_run_without_stored_chains_before_training(tmp_path: Path, capsys,
                                                                   setting) -> None:
    """The demo's synthesis continues the run's stored chains; a setting that keeps none was
    refused only after the whole training, a complete run left behind with exit 2."""
    code, _, err = run_main(["demo", "--out", str(tmp_path / "demo"), *TINY, *setting,
                             "--quiet"], capsys)
    assert code == 2
    assert "the demo synthesizes by continuing the chains its run keeps" in err
    assert list(tmp_path.iterdir()) == []


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def test_module_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "stgconv.cli", "train", *TINY, "--out", str(out), "--quiet"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"stgconv train: wrote {out}" in result.stdout
    assert (out / "checkpoint.pt").is_file() and (out / "samples.png").is_file()


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_of_the_output_that_left_ends_the_command_quietly(tmp_path: Path,
                                                                   unbuffered: str) -> None:
    """`stgconv ... | head -1`: the report written to a pipe whose reader had gone ended, after
    the work, in Python's "Exception ignored ... BrokenPipeError" at exit (exit 120), or under
    PYTHONUNBUFFERED=1 in a traceback; now the command ends without a word (exit 1), as a
    program that SIGPIPE ends does, its files whole."""
    out = tmp_path / "run"
    read, write = os.pipe()
    os.close(read)  # gone before the command writes
    try:
        result = subprocess.run(
            [sys.executable, "-m", "stgconv.cli", "train", *TINY, "--out", str(out), "--quiet"],
            cwd=tmp_path, env={**subprocess_env(), "PYTHONUNBUFFERED": unbuffered},
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, "")
    assert (out / "checkpoint.pt").is_file()


def test_a_reader_that_left_during_the_work_ends_it_quietly(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    """The same during the work (a table printed under PYTHONUNBUFFERED=1, the progress bar
    into `2>&1 | head`): it was reported as the input's fault, 'error: [Errno 32] Broken
    pipe', exit 2."""

    def reader_gone(*_: object, **__: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(tasks, "train", reader_gone)
    assert run_main(["train", *TINY, "--out", str(tmp_path / "run")], capsys) == (1, "", "")


def test_what_stdout_cannot_encode_is_escaped(tmp_path: Path, monkeypatch) -> None:
    """Under PYTHONIOENCODING=ascii (or a Latin-1 locale) the report naming a folder outside
    that encoding ended in a UnicodeEncodeError traceback, after the work."""
    monkeypatch.setattr(tasks, "train", lambda config, **_: Path(config.out_dir))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["train", *TINY, "--out", str(tmp_path / "\u00fc\u00d7")]) == 0
    stdout.flush()
    assert f"wrote {tmp_path}/\\xfc\\xd7 (" in stdout.buffer.getvalue().decode()


def test_stdout_is_strict_again_when_main_returns(tmp_path: Path, monkeypatch) -> None:
    """The escaping is main's own, on its error paths too: a program calling main in-process
    had its own output escaped from then on, where it had asked for errors."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["synthesize", str(tmp_path / "nothing")]) == 2
    assert stdout.errors == "strict"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert stdout.errors == "strict"


def test_stdout_stays_escaped_until_the_last_of_two_threads_commands_ends(
        tmp_path: Path, monkeypatch) -> None:
    """Two commands of a program's threads overlap, the first ending first: it made stdout
    strict again while the second still wrote, whose report of a folder outside the encoding
    ended in a UnicodeEncodeError after the work."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    second_running, first_done = threading.Event(), threading.Event()
    folder = tmp_path / "\u00fc\u00d7"

    def train(config, **_) -> Path:
        if config.out_dir == str(folder):
            second_running.set()
            first_done.wait(timeout=5)
        else:
            second_running.wait(timeout=5)
        return Path(config.out_dir)

    monkeypatch.setattr(tasks, "train", train)
    codes: list[int | BaseException] = []

    def run(out: Path, done: threading.Event | None = None) -> None:
        try:
            codes.append(main(["train", *TINY, "--out", str(out)]))
        except BaseException as error:
            codes.append(error)
        if done is not None:
            done.set()

    threads = [threading.Thread(target=run, args=(tmp_path / "first", first_done)),
               threading.Thread(target=run, args=(folder,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [0, 0]
    assert stdout.errors == "strict"
    stdout.flush()
    assert f"wrote {tmp_path}/\\xfc\\xd7 (" in stdout.buffer.getvalue().decode()


def test_stdout_is_escaped_again_by_the_next_command(tmp_path: Path, monkeypatch) -> None:
    """A program calling main twice on one stdout: the second command's report of a folder
    outside the encoding is escaped as the first's was."""
    monkeypatch.setattr(tasks, "train", lambda config, **_: Path(config.out_dir))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    for name in ("\u00fc", "\u00d7"):
        assert main(["train", *TINY, "--out", str(tmp_path / name)]) == 0
        assert stdout.errors == "strict"
    stdout.flush()
    assert f"wrote {tmp_path}/\\xd7 (" in stdout.buffer.getvalue().decode()


def test_stdout_that_escapes_its_own_way_is_left_so(tmp_path: Path, monkeypatch) -> None:
    """Under the C locale stdout writes a path's undecodable bytes back as they were
    (surrogateescape); escaped as text, they would no longer name the file."""
    monkeypatch.setattr(tasks, "train", lambda config, **_: Path(config.out_dir))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    assert stdout.errors == "surrogateescape"


def test_a_closed_stdout_drops_the_report_only(tmp_path: Path, monkeypatch) -> None:
    """Under `>&-` sys.stdout is None: the report has nowhere to go, and the command ends as
    its work did."""
    monkeypatch.setattr(tasks, "train", lambda config, **_: Path(config.out_dir))
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0


def test_a_closed_stderr_trains_without_a_progress_bar(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    """Under `2>&-` Python's sys.stderr is None: the progress bar failed writing to it
    (AttributeError), and the run stopped and was removed without a word, its traceback having
    nowhere to go."""
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file()
    assert f"stgconv train: wrote {out}" in capsys.readouterr().out


def test_a_closed_stderr_keeps_warnings_and_errors_out_of_the_report(tmp_path: Path,
                                                                     monkeypatch, capsys) -> None:
    """Under `2>&-` sys.stderr is None, and print(file=None) writes to stdout: the warning and
    error lines went into the command's report (a table redirected to a file), where Python
    drops its own warnings and argparse its errors."""
    import warnings

    def warns(config, **_: object) -> Path:
        warnings.warn("a warning of the run", UserWarning)
        return Path(config.out_dir)

    monkeypatch.setattr(tasks, "train", warns)
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert re.fullmatch(rf"stgconv train: wrote {re.escape(str(out))} \(\d+ s\)\n",
                        capsys.readouterr().out)
    assert main(["train", *TINY, "--set", "train.n_iterations=two", "--out", str(out)]) == 2
    assert capsys.readouterr().out == ""

    def stopped_while_failing(*_: object, **__: object) -> None:
        try:
            raise RuntimeError("a bug")
        except RuntimeError:
            raise Terminated(143) from None

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    for stop, code in ((stopped_while_failing, 143), (interrupted, 130)):
        monkeypatch.setattr(tasks, "train", stop)
        assert main(["train", *TINY, "--out", str(out)]) == code
        assert capsys.readouterr().out == ""


@pytest.mark.skipif(not (REPO / "tools" / "train.py").is_file(), reason="no tools/train.py")
def test_tools_train_help() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--help"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


TOOLS = sorted((REPO / "tools").glob("*.py"))


@pytest.mark.parametrize("tool", TOOLS, ids=[t.name for t in TOOLS])
def test_tools_help_in_process(tool: Path, capsys, load_script) -> None:
    """Every tool is a thin ``main(argv) -> int`` script; ``--help`` prints usage and exits 0."""
    module = load_script(tool)
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("argv, prefix", [
    (["train", "--bogus"], "stgconv train"),
    (["train", "a.yaml", "b.yaml"], "stgconv train"),
    (["eval", "super-resolution", "--checkpoint", "c", "--shapes", "s", "--thresh", "0.5"],
     "stgconv eval super-resolution"),
])
def test_an_unknown_option_is_refused_by_its_own_command(argv, prefix, capsys) -> None:
    """As every other error of the command: "stgconv train: error: ...", not the top-level
    parser's usage and "stgconv: error"."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"{prefix}: error: unrecognized arguments: ")


@pytest.mark.parametrize("argv, prefix, given", [
    (["train", "--print"], "stgconv train", "--print"),
    (["eval", "super-resolution", "--checkpoint", "c", "--shapes", "s", "--fact", "2"],
     "stgconv eval super-resolution", "--fact 2"),
    (["synthesize", "run", "--dev", "cpu"], "stgconv synthesize", "--dev cpu"),
])
def test_an_abbreviated_option_is_refused(argv, prefix, given, capsys) -> None:
    """``train --print`` printed the config as --print-config: a script relying on an
    abbreviation breaks, or means another option, once a later version adds one of the same
    start."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{prefix}: error: unrecognized arguments: {given}")


@pytest.mark.parametrize("script, required", [
    ("datasets/voxel/prepare.py", []),
    ("datasets/video/prepare.py", ["--frames", "4", "--size", "8"]),
])
def test_the_prepare_scripts_refuse_an_abbreviated_option(script: str, required: list[str],
                                                          capsys, load_script) -> None:
    """The dataset scripts too: ``--overwr`` replaced the cache as --overwrite."""
    with pytest.raises(SystemExit) as info:
        load_script(script).build_parser().parse_args(["src", "out.h5", *required, "--overwr"])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: unrecognized arguments: --overwr")


# ------------------------------------------- every fault ends in one line naming it, exit 2

FAULTS = {
    "damaged .npz to train": (
        ["train", str(SR_CONFIG), "--data", "{truncated}", "--out", "{tmp}/run", *VOXEL_TINY],
        "cannot read {truncated}: the file is damaged or truncated"),
    "damaged .npz to eval classification": (
        ["eval", "classification", "--checkpoint", "{voxels}", "--shapes", "{corrupt}",
         "--device", "cpu"], "cannot read {corrupt}: the file is damaged or truncated"),
    "damaged --test to eval classification": (
        ["eval", "classification", "--checkpoint", "{voxels}", "--shapes", "{shapes}", "--test",
         "{corrupt}", "--device", "cpu"], "cannot read {corrupt}: the file is damaged or "
        "truncated"),
    "a config's placeholder data path": (
        ["train", str(REPO / "configs" / "image" / "objects_folder.yaml"), "--set", "device=cpu",
         "--out", "{tmp}/run"], "path/to/your/image_folder: give the training data with --data "
        "PATH (or the config's data.path)"),
    # Its data.path left at the default, a texture: "not found: builtin:brick" alone.
    "a video config without its data": (
        ["train", str(REPO / "configs" / "video" / "recovery_quick.yaml"), "--set",
         "device=cpu", "--out", "{tmp}/run"], "training video not found: builtin:brick (the "
        "built-in images are textures, for data.kind texture; data.kind video reads files of its "
        "own): give the training data with --data PATH"),
    "a Gaussian fitted to one image": (
        ["train", *TINY, "--set", "chains.mode=noise", "--set", "chains.init=data_gaussian",
         "--out", "{tmp}/run"], "chains.init 'data_gaussian' fits Gaussians to the training "
        "examples: a Gaussian fit needs at least 2 examples, got 1"),
    "huge --size": (["synthesize", "{texture}", "--size", "100000"], "over the limit of 2^28"),
    "huge -n": (["synthesize", "{texture}", "-n", "100000000"], "over the limit of 2^28"),
    "negative --size": (["synthesize", "{texture}", "--size", "-5"], "--size must be >= 1, got -5"),
    "huge data.size": (["train", *TINY, "--set", "data.size=100000", "--out", "{tmp}/run"],
                       "data.size=100000 makes a (1, 100000, 100000) tensor"),
    "override not YAML": (["train", *TINY, "--set", "train.lr=[", "--out", "{tmp}/run"],
                          "override 'train.lr=[': the value is not valid YAML"),
    "step size past its bound": (["train", *TINY, "--set", "sampler.step_size=1e30", "--out",
                                  "{tmp}/run"], "sampler.step_size must be at most"),
    "no iterations": (["train", *TINY, "--set", "train.n_iterations=0", "--out", "{tmp}/run"],
                      "train.n_iterations must be positive"),
    "NaN step size": (["train", *TINY, "--set", "sampler.step_size=.nan", "--out", "{tmp}/run"],
                      "sampler.step_size must be a finite number"),
    "diverging training": (["train", *TINY, "--set", "train.lr=1e30", "--out", "{tmp}/run"],
                           "training diverged at iteration 1"),
    "data smaller than the net": (["train", *TINY, "--set", "data.size=4", "--out", "{tmp}/run"],
                                  "the training examples, at data.size 4, do not fit model.arch "
                                  "'texture': input size (4, 4) is smaller than the network's "
                                  "receptive field: it needs at least (9, 9); raise data.size"),
    "train --out is a file": (["train", *TINY, "--out", "{file}"], "is a file, not a folder"),
    "synthesize --out under a file": (["synthesize", "{texture}", "--out", "{file}/samples"],
                                      "lies under {file}, which is a file"),
    "super-resolve --out is a file": (["super-resolve", "{voxels}", "{shapes}", "--out", "{file}"],
                                      "--out {file} is a file"),
    "no shapes to super-resolve": (["super-resolve", "{voxels}", "{no_shapes}"],
                                   "{no_shapes} holds no grids"),
    "resume with another network": (
        ["train", *TINY, "--set", "model.layers=[[4, 5, 2], [4, 3, 1]]", "--resume",
         "--out", "{texture_copy}"], "holds another network than this config builds"),
    "voxel model to reconstruct": (["reconstruct", "{voxels}", "{image}"],
                                   "holds a voxel model; reconstruct and interpolate take image"),
    "voxel model to interpolate": (["interpolate", "{voxels}"], "take image models"),
    "empty checkpoint": (["synthesize", "{empty}"],
                         "cannot read checkpoint {empty}: the file is empty"),
    "code-executing checkpoint": (["synthesize", "{pickle}"], "refusing to load {pickle}"),
    "not a checkpoint file": (["synthesize", "{image}"],
                              "cannot read checkpoint {image}: it is not a file torch.save wrote"),
    # Path() drops the final separator: the JSON was written as a file named res.
    "--json ending in a separator": (["eval", "super-resolution", "--checkpoint", "{voxels}",
                                      "--shapes", "{shapes}", "--json", "{tmp}/res/"],
                                     "--json {tmp}/res/ ends in '/', a folder: give the path of a file"),
    # Not "damaged, or another kind of file", which sent the user to look for the damage.
    "a run's config as its checkpoint": (["synthesize", "{texture}/config.yaml"],
                                         "{texture}/config.yaml is a config file (YAML), not a "
                                         "checkpoint: give the run folder, or the checkpoint.pt"),
}


class RunsCode:
    """Unpickles into a call: the kind of object a checkpoint must never hold."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture
def fault_paths(tmp_path: Path, texture_run: Path, trained_voxel_run: dict[str, Path]
                ) -> dict[str, str]:
    good = trained_voxel_run["shapes"].read_bytes()
    paths = {"tmp": tmp_path, "texture": texture_run, "voxels": trained_voxel_run["run"],
             "shapes": trained_voxel_run["shapes"], "truncated": tmp_path / "truncated.npz",
             "corrupt": tmp_path / "corrupt.npz", "file": tmp_path / "a_file",
             "texture_copy": tmp_path / "texture_copy", "image": tmp_path / "image.png",
             "empty": tmp_path / "empty.pt", "pickle": tmp_path / "pickle.pt",
             "no_shapes": tmp_path / "no_shapes.npy"}
    paths["truncated"].write_bytes(good[: len(good) // 2])  # zipfile.BadZipFile
    np.savez_compressed(paths["corrupt"], X=np.load(trained_voxel_run["shapes"])["X"],
                        y=np.arange(12))
    damaged = bytearray(paths["corrupt"].read_bytes())
    damaged[100:140] = bytes(40)  # inside the compressed X: zlib.error
    paths["corrupt"].write_bytes(bytes(damaged))
    paths["file"].write_text("not a folder")
    shutil.copytree(texture_run, paths["texture_copy"])
    Image.new("L", (32, 32)).save(paths["image"])
    paths["empty"].write_bytes(b"")
    np.save(paths["no_shapes"], np.zeros((0, 4, 4, 4), np.float32))
    torch.save({"format": "stgconv-checkpoint", "x": RunsCode()}, paths["pickle"])
    return {key: str(path) for key, path in paths.items()}


@pytest.mark.parametrize("case", FAULTS, ids=list(FAULTS))
def test_faults_end_in_one_line_naming_them(case: str, fault_paths: dict[str, str],
                                            capsys) -> None:
    args, message = FAULTS[case]
    args = [a.format(**fault_paths) for a in args]
    if args[0] == "train":
        args.append("--quiet")
    if args[0] in ("synthesize", "reconstruct", "interpolate", "super-resolve"):
        args += ["--device", "cpu"] + (["--out", f"{fault_paths['tmp']}/out"]
                                       if "--out" not in args else [])
    code, out, err = run_main(args, capsys)
    assert code == 2, err
    assert err.startswith(f"{prog(args)}: error: ") and err.count("\n") == 1, err
    assert message.format(**fault_paths) in err
    assert "Traceback" not in err and "weights_only" not in err
    assert "this ran" not in out
    # Nothing half-done is left to be mistaken for a result (nor a folder the next run would
    # be refused: a failed new run takes what it wrote before its first checkpoint with it).
    assert not (Path(fault_paths["tmp"]) / "run").exists()
    assert not (Path(fault_paths["tmp"]) / "out").exists()


# ------------------------------------------------------------------------------- run folders


def test_paths_given_as_options_are_taken_as_typed(tmp_path: Path, capsys) -> None:
    """--out and --data are strings whatever YAML would make of them: "2024" a number, "#" a
    comment (which trained into "run" instead of "run #2")."""
    out = tmp_path / "run #2"
    code, _, err = run_main(["train", *TINY, "--set", "train.n_iterations=1", "--out", str(out),
                             "--quiet"], capsys)
    assert code == 0, err
    assert (out / "checkpoint.pt").exists() and not (tmp_path / "run").exists()
    code, _, err = run_main(["train", *TINY, "--data", str(tmp_path / "a: b.png"),
                             "--out", str(tmp_path / "other"), "--quiet"], capsys)
    assert code == 2 and "a: b.png" in err  # not found, not a mapping


def test_resume_finds_its_run_without_checking_the_overrides_against_the_defaults(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """--resume with --set out_dir=...: the other overrides are checked against the run's own
    config (here a JEM run's jem.px_batch, which the defaults, with no classifier, refuse)."""
    from _tiny import JEM_CONFIG, JEM_TINY, labelled_bars

    data = labelled_bars(tmp_path / "bars.npz")
    run = tmp_path / "jem"
    assert main(["train", str(JEM_CONFIG), "--data", str(data), "--out", str(run),
                 *JEM_TINY]) == 0
    code, _, err = run_main(["train", "--resume", "--set", f"out_dir={run}", "--set",
                             "train.n_iterations=3", "--set", "jem.px_batch=2", "--quiet"],
                            capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


@pytest.mark.parametrize("command, task, line", [
    (["train", *TINY, "--quiet"], "train",
     "stgconv train: interrupted; outputs already written are whole (--resume continues from "
     "the last checkpoint, where one was written)\n"),
    (["synthesize", "run"], "synthesize",
     "stgconv synthesize: interrupted; outputs already written are whole\n"),
], ids=["train", "synthesize"])
def test_an_interrupted_command_says_so_in_one_line(monkeypatch, capsys, command: list[str],
                                                    task: str, line: str) -> None:
    """Only train, which has --resume, points at it."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, task, interrupted)
    code, _, err = run_main(command, capsys)
    assert code == 130 and err == line


def test_a_user_error_that_sigterm_stopped_is_named_before_the_stop(monkeypatch,
                                                                      capsys) -> None:
    """torchrun stops the other processes when one fails, and a failing one may be stopped
    while cleaning up after its own refusal: that refusal is its one error line, not lost."""
    def stopped_while_refusing(*_: object, **__: object) -> None:
        try:
            raise ValueError("a refusal whose text\n   runs over two lines")
        except ValueError:
            raise Terminated(143) from None

    monkeypatch.setattr(tasks, "train", stopped_while_refusing)
    code, _, err = run_main(["train", *TINY, "--quiet"], capsys)
    assert code == 143 and err.splitlines() == [
        "stgconv train: error: a refusal whose text runs over two lines",
        "stgconv train: stopped by SIGTERM: another training process failed, or the job was "
        "stopped"]


def test_a_run_is_replaced_only_with_overwrite(texture_run: Path, tmp_path: Path, dead_pid: int,
                                               capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    (run / "samples_000050.png").write_bytes(b"a sample of the old run")
    (run / "notes.txt").write_text("mine")
    (run / f".checkpoint.pt.{dead_pid}-k2j4.tmp").write_bytes(
        b"half a checkpoint, its writer killed")
    code, _, err = run_main(["synthesize", str(run), "-n", "1", "--steps", "1", "--device", "cpu"],
                            capsys)
    assert code == 0 and (run / "synthesis" / "synthesized.npy").exists(), err
    before = (run / "checkpoint.pt").read_bytes()
    code, _, err = run_main(["train", *TINY, "--out", str(run), "--quiet"], capsys)
    assert code == 2 and f"{run} already holds a run" in err and "--overwrite" in err
    assert (run / "checkpoint.pt").read_bytes() == before
    # A run refused at its start (a typo in its data) replaces nothing.
    code, _, err = run_main(["train", *TINY, "--data", str(tmp_path / "typo.png"),
                             "--out", str(run), "--overwrite", "--quiet"], capsys)
    assert code == 2 and "typo.png" in err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert (run / "samples_000050.png").exists() and (run / "synthesis").exists()
    # Training data among the old run's files (an image named as the run names a sample): it
    # would go.
    Image.new("RGB", (32, 32), (90, 60, 30)).save(run / "samples_000007.png")
    mine = (run / "samples_000007.png").read_bytes()
    code, _, err = run_main(["train", *TINY, "--data", str(run / "samples_000007.png"),
                             "--out", str(run), "--overwrite", "--quiet"], capsys)
    assert code == 2 and "--overwrite would remove" in err and "holds the training data" in err
    assert (run / "samples_000007.png").read_bytes() == mine
    (run / "samples_000007.png").unlink()
    # A picture only named like a run's is the user's, and stays.
    for name in ("samples_mine.png", "observed_cat.png", "samples.txt", "checkpoint_best.pt"):
        (run / name).write_text("mine")
    code, _, err = run_main(["train", *TINY, "--set", "train.n_iterations=1", "--out", str(run),
                             "--overwrite", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 1
    assert not (run / "samples_000050.png").exists()  # the old run's files went
    assert not (run / "synthesis").exists()  # and its samples, which would pass for the new one's
    assert (run / "notes.txt").read_text() == "mine"  # what no run writes stays
    for name in ("samples_mine.png", "observed_cat.png", "samples.txt", "checkpoint_best.pt"):
        assert (run / name).read_text() == "mine"
    assert not list(run.glob(".*.tmp"))


def test_a_folder_without_a_checkpoint_is_not_offered_for_resume(tmp_path: Path, capsys
                                                                  ) -> None:
    """A run killed before its first checkpoint leaves files that --resume cannot continue:
    the refusal offers --overwrite only; the demo's names its own options."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: killed\n")
    code, _, err = run_main(["train", *TINY, "--out", str(run), "--quiet"], capsys)
    assert code == 2 and "holds the files of a run that saved no checkpoint" in err
    assert "--overwrite" in err and "--resume" not in err
    code, _, err = run_main(["demo", "--out", str(run), "--quiet"], capsys)
    assert code == 2 and f"{run} holds an earlier run" in err and "--resume" not in err
    assert (run / "config.yaml").read_text() == "name: killed\n"


# Holds a run folder's lock the way a training run does, until killed.
LOCK_HOLDER = """
import fcntl, os, sys, time
lock = open(sys.argv[1], "w")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.write(f"process {os.getpid()} on this machine")
lock.flush()
print("locked", flush=True)
time.sleep(300)
"""


def test_a_run_folder_has_one_owner_and_a_killed_owner_is_replaced(tmp_path: Path,
                                                                   capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run / ".lock")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "locked"
        code, _, err = run_main(["train", *TINY, "--out", str(run), "--quiet"], capsys)
        assert code == 2 and f"run folder {run} is in use by process {owner.pid}" in err
        assert not (run / "checkpoint.pt").exists()
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
    assert f"process {owner.pid}" in (run / ".lock").read_text()  # stale: its owner is dead
    code, _, err = run_main(["train", *TINY, "--out", str(run), "--quiet"], capsys)
    assert code == 0, err
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.parametrize("change, message", [
    (["--set", "model.layers=[[4, 5, 2], [4, 3, 1]]", "--set", "train.n_iterations=4"],
     "cannot resume"),
    (["--set", "sampler.clamp=null", "--set", "sampler.step_size=1000", "--set",
      "train.n_iterations=4"], "non-finite energy"),
    ([], "already trained to iteration 2 (train.n_iterations = 2)"),
    (["--set", "train.n_iterations=1"], "already trained to iteration 2"),
], ids=["another network", "diverging chains", "finished", "past its end"])
def test_a_failed_resume_leaves_the_run_as_it_was(texture_run: Path, tmp_path: Path, capsys,
                                                  change: list[str], message: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    names = ("checkpoint.pt", "config.yaml", "observed.png", "samples.png")
    before = {name: (run / name).read_bytes() for name in names}
    code, _, err = run_main(["train", *TINY, *change, "--resume", "--out", str(run), "--quiet"],
                            capsys)
    assert code == 2 and message in err, err
    assert {name: (run / name).read_bytes() for name in names} == before


def test_a_finished_jem_run_names_its_own_schedule(trained_jem_run: dict[str, Path],
                                                   tmp_path: Path, capsys) -> None:
    """A JEM run's learning rate follows jem.lr_decay (train.lr_decay is refused for it): the
    resume of a finished one named train.lr_decay as the schedule a larger N stretches."""
    run = tmp_path / "run"
    shutil.copytree(trained_jem_run["run"], run)
    code, _, err = run_main(["train", "--out", str(run), "--resume", "--quiet"], capsys)
    assert code == 2 and "already trained to iteration 2" in err, err
    assert "a cosine jem.lr_decay is then stretched" in err, err


def _every_parser(parser):
    """The parser and every sub-command's parser, depth first."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _every_parser(child)


def test_every_option_of_every_command_states_its_default():
    """`stgconv <command> --help` answers what happens when an option is left out."""
    import argparse

    from stgconv.cli import _parser

    for parser in _every_parser(_parser()):
        text = " ".join(parser.format_help().split())
        # Not the checkout's path: a deep one is longer than a help line, which cuts it in two
        # (and this test with it).
        assert str(ROOT) not in text, parser.prog
        for action in parser._actions:
            if not action.option_strings or action.required or isinstance(
                    action, (argparse._HelpAction, argparse._VersionAction,
                             argparse._SubParsersAction)):
                continue
            assert action.help, (parser.prog, action.option_strings)
            help_line = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "default" in help_line, (parser.prog, action.option_strings, help_line)
            assert help_line in text


def test_version(capsys):
    from stgconv.cli import main
    from stgconv.version import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"stgconv {__version__}"


def test_python_m_stgconv_runs_the_command_and_importing_its_module_runs_nothing(
        capsys, monkeypatch) -> None:
    """``python -m stgconv`` is the command; an import of ``stgconv.__main__`` (a documentation
    tool's walk over the package, pdoc or Sphinx's autosummary) ran it too, with the tool's
    own arguments, and ended that process with argparse's usage error."""
    import importlib
    import runpy

    from stgconv.version import __version__

    monkeypatch.delitem(sys.modules, "stgconv.__main__", raising=False)
    monkeypatch.setattr(sys, "argv", ["pdoc", "stgconv"])
    importlib.import_module("stgconv.__main__")
    assert capsys.readouterr() == ("", "")
    monkeypatch.delitem(sys.modules, "stgconv.__main__")  # run afresh, as python -m does
    monkeypatch.setattr(sys, "argv", ["stgconv", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("stgconv", run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"stgconv {__version__}"


def test_a_run_that_fails_before_writing_leaves_no_debris(tmp_path: Path, capsys) -> None:
    """No lock file, and no folder when the run made it; a folder the user had keeps its
    contents and loses only the lock."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    (existing / "mine").mkdir(parents=True)
    for out in (fresh, existing):
        code, _, err = run_main(["train", *TINY, "--set", "data.kind=objects",
                                 "--data", str(bad), "--out", str(out), "--quiet"], capsys)
        assert code == 2 and "bad.npz" in err
    assert not fresh.exists()
    assert sorted(p.name for p in existing.iterdir()) == ["mine"]


# --------------------------------------- every output of every command is written atomically

# Each command with tiny inputs, writing everything under {out}. TensorBoard's event files
# (under tb/) are append-only logs, the one kind of output that cannot be renamed into place.
CPU = ["--device", "cpu"]
RECOVERY = ["--video", "{clip}", "--frames", "6", "--size", "16", "--set", "train.n_iterations=2",
            "--set", "recovery.warmup=0", "--set", "recovery.average_last=1",
            "--set", "device=cpu", "--set", "recovery.learned.iterations=2", "--quiet"]
OUTPUTS = {
    "train": ["train", *TINY, "--set", "train.sample_every=1", "--out", "{out}", "--quiet"],
    "synthesize": ["synthesize", "{texture}", "-n", "2", "--out", "{out}", *CPU],
    "reconstruct": ["reconstruct", "{short}", "{image}", "--iterations", "1", "--out", "{out}",
                    *CPU],
    "interpolate": ["interpolate", "{short}", "--points", "2", "--out", "{out}", *CPU],
    "super-resolve": ["super-resolve", "{voxels}", "{low}", "--out", "{out}", *CPU],
    "recover-shape": ["recover-shape", "{voxels}", "{partial}", "--known", "{known}",
                      "--out", "{out}", *CPU],
    "recover": ["recover", *RECOVERY, "--mask", "region:8", "--out", "{out}"],
    "eval recovery": ["eval", "recovery", *RECOVERY, "--mask", "missing_frames:0.5",
                      "--json", "{out}/table.json", "--tensorboard", "{out}/tb"],
    "eval super-resolution": ["eval", "super-resolution", "--checkpoint", "{voxels}",
                              "--shapes", "{shapes}", "--json", "{out}/table.json",
                              "--out", "{out}/renders", *CPU],
    "eval recovery-3d": ["eval", "recovery-3d", "--checkpoint", "{voxels}", "--shapes",
                         "{shapes}", "--json", "{out}/table.json", *CPU],
    "eval classification": ["eval", "classification", "--checkpoint", "{voxels}", "--shapes",
                            "{shapes}", "--json", "{out}/table.json", *CPU],
    "eval ood": ["eval", "ood", "--checkpoint", "{jem}", "--inliers", "{digits}",
                 "--outliers", "{noise}", "--json", "{out}/table.json", *CPU],
}


@pytest.fixture
def command_inputs(tmp_path: Path, texture_run: Path, short_run: Path,
                   trained_voxel_run: dict[str, Path], trained_jem_run: dict[str, Path]
                   ) -> dict[str, str]:
    from stgconv.io.video import save_video

    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = np.load(trained_voxel_run["shapes"])["X"][:2].astype(np.float32)
    known = (np.random.default_rng(0).random(shapes.shape) >= 0.5).astype(np.uint8)
    # The shapes' 4^3 block means, as super-resolve takes them (a binary grid, every 4th voxel,
    # draws its warning of blocks all empty or all occupied).
    np.save(inputs / "low.npy", shapes.reshape(2, 4, 4, 4, 4, 4, 4).mean(axis=(2, 4, 6)))
    np.save(inputs / "partial.npy", np.where(known > 0, shapes, 0.5).astype(np.float32))
    np.save(inputs / "known.npy", known)
    Image.new("L", (32, 32)).save(inputs / "image.png")
    save_video(torch.rand(3, 6, 16, 16) * 2 - 1, inputs / "clip.mkv")
    with np.load(trained_jem_run["data"]) as bars:
        np.savez(inputs / "digits.npz", x_test=bars["x_train"], y_test=bars["y_train"])
    np.savez(inputs / "noise.npz", x_test=np.full((3, 28, 28), 128, np.uint8))
    return {"out": str(tmp_path / "out"), "texture": str(texture_run), "short": str(short_run),
            "voxels": str(trained_voxel_run["run"]), "shapes": str(trained_voxel_run["shapes"]),
            "jem": str(trained_jem_run["run"]),
            **{p.stem: str(p) for p in inputs.iterdir()}}


@pytest.mark.parametrize("command", OUTPUTS, ids=list(OUTPUTS))
def test_every_output_file_is_renamed_into_place_whole(command: str, monkeypatch, capsys,
                                                       command_inputs: dict[str, str],
                                                       dead_pid: int) -> None:
    """Every file a command leaves reached its name by an atomic rename (so no reader ever sees
    it half-written), and the temporaries a killed earlier run left there are gone."""
    out = Path(command_inputs["out"])
    out.mkdir()
    debris = out / f".synthesized.npy.{dead_pid}-abc.tmp"
    debris.write_bytes(b"half an array, its writer killed")
    renamed: set[Path] = set()
    real_replace = os.replace

    def replace(source, target, **kwargs) -> None:
        real_replace(source, target, **kwargs)
        renamed.add(Path(target).resolve())

    monkeypatch.setattr(os, "replace", replace)
    args = [a.format(**command_inputs) for a in OUTPUTS[command]]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    written = [p for p in out.rglob("*")
               if p.is_file() and "tb" not in p.relative_to(out).parts and p.name != ".lock"]
    assert written, f"{command} wrote nothing under {out}"
    assert [p for p in written if p.resolve() not in renamed] == []
    assert not debris.exists()


# ------------------------------------ a write failing part-way: exit 1, one line, nothing half


@pytest.mark.parametrize("command", OUTPUTS, ids=list(OUTPUTS))
def test_a_disk_full_part_way_exits_1_naming_the_file(command: str, monkeypatch, capsys,
                                                      command_inputs: dict[str, str]) -> None:
    """A write that fails after the checks up front (the disk filled meanwhile) is not bad
    input: exit 1, not the 2 of a typo, in one line naming the file; nothing is left half
    written, nor a temporary."""
    def full_disk(fd: int) -> None:  # the data reaches the disk at fsync, and finds it full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    out = Path(command_inputs["out"])
    args = [a.format(**command_inputs) for a in OUTPUTS[command]]
    code, _, err = run_main(args, capsys)
    assert code == 1, err
    assert re.fullmatch(f"{prog(args)}: error: \\[Errno {errno.ENOSPC}\\] No space left on device: "
                        f"'{re.escape(str(out))}/[^']+'\n", err), err
    assert [p for p in out.rglob("*")
            if p.is_file() and "tb" not in p.relative_to(out).parts] == []


def test_a_resume_stopped_by_a_full_disk_keeps_its_checkpoint_for_the_next(tmp_path: Path,
                                                                          monkeypatch,
                                                                          capsys) -> None:
    """The checkpoint being replaced stays whole: a half-written one never takes its name."""
    run = tiny_texture_run(tmp_path)
    before = (run / "checkpoint.pt").read_bytes()

    def half_then_full(buffer, tmp: str) -> None:
        with open(tmp, "wb") as file:
            file.write(buffer.getbuffer()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_bytes", half_then_full)
    resume = ["train", "--resume", "--out", str(run), "--set", "train.n_iterations=2", "--quiet"]
    code, _, err = run_main(resume, capsys)
    assert code == 1 and f"No space left on device: '{run / 'checkpoint.pt'}'" in err, err
    assert (run / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    assert run_main(resume, capsys)[0] == 0
    assert load_checkpoint(run)["iteration"] == 2


@pytest.mark.parametrize(("room", "failing"), [(0, ".lock"), (8192, "checkpoint_previous.pt")])
def test_a_really_full_disk_stops_a_resume_in_one_line_and_frees_to_go_on(
        small_disk: Path, capsys, room: int, failing: str) -> None:
    """On a real file system: with no room the lock file's owner line fails (it named no file,
    and closing the file raised it again); with 8 KiB the lock file and TensorBoard's first
    events fit, the copy of the 12 KiB checkpoint to checkpoint_previous.pt does not (named
    by its temporary). Exit 1 in one line naming that file, the run as it was; once space is
    freed the same --resume goes on."""
    run = tiny_texture_run(small_disk)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    fill(small_disk / "filler", leaving=room)
    resume = ["train", "--resume", "--out", str(run), "--set", "train.n_iterations=2", "--quiet"]
    code, _, err = run_main(resume, capsys)
    assert code == 1 and err == ("stgconv train: error: [Errno 28] No space left on device: "
                                 f"'{run / failing}'\n"), err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    (small_disk / "filler").unlink()
    assert run_main(resume, capsys)[0] == 0
    assert load_checkpoint(run)["iteration"] == 2


def test_reconstruction_png_shows_the_target_left_of_its_reconstruction(tmp_path: Path) -> None:
    """reconstruction.png is the target image first, then the reconstruction (target | x)."""

    run = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=uniform",
                           "chains.init_scale=1.0")
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[:, :4] = 255  # left half white: a target no 1-step chain reproduces
    Image.fromarray(pixels).save(tmp_path / "target.png")
    out = tasks.reconstruct(run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                            device="cpu")
    grid = np.asarray(Image.open(out / "reconstruction.png").convert("L"))
    assert grid.shape == (12, 22)  # two 8x8 panels, 2 px padding
    np.testing.assert_array_equal(grid[2:10, 2:10], pixels)


def test_reconstruction_runs_its_chain_on_the_seeded_stream(short_run: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    """--seed fixes the chain's noise as well as its start: without the task's generator the
    chain would run on torch's default seed whatever --seed says."""
    from stgconv import shortrun

    optimise = shortrun.reconstruct
    seeds = []

    def recording(*args, generator=None, **kwargs):
        seeds.append(None if generator is None else generator.initial_seed())
        return optimise(*args, generator=generator, **kwargs)

    monkeypatch.setattr(shortrun, "reconstruct", recording)
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    tasks.reconstruct(short_run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                      seed=5, device="cpu")
    assert seeds == [5]


def test_reconstruct_and_interpolate_take_a_float64_model(tmp_path: Path) -> None:
    """A model saved in float64 loads in float64 (as synthesize samples it): its starts and
    target were drawn and read in float32, which the net refused ("expected x of dtype
    torch.float64"), advice a command's user cannot follow."""
    run = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=uniform",
                           "chains.init_scale=1.0")
    state = load_checkpoint(run)
    state["model"] = {name: weight.double() for name, weight in state["model"].items()}
    save_checkpoint(state, run / "checkpoint.pt")
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    out = tasks.reconstruct(run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                            device="cpu")
    assert json.loads((out / "reconstruction.json").read_text())["mse"]
    out = tasks.interpolate(run, tmp_path / "int", n_points=2, device="cpu")
    assert np.load(out / "interpolation.npy").shape == (2, 1, 8, 8)


def test_reconstruct_and_interpolate_start_from_the_models_noise_drawn_with_the_seed(
        tmp_path: Path, monkeypatch) -> None:
    """The starts are the model's chains.init noise at its scale (uniform, 0.5 here), drawn in
    order from the --seed generator: interpolate walks from its first draw to its second, its
    chain's noise from that generator too; and mse_last is the squared error of the
    reconstruction returned."""
    from stgconv import shortrun
    from stgconv.mcmc import NoiseInit

    run = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=uniform",
                           "chains.init_scale=0.5")
    reconstruct, interpolate, seen = shortrun.reconstruct, shortrun.interpolate, {}

    def recording_reconstruct(energy, sampler, target, *, z0, **kwargs):
        seen["reconstruct"] = (z0, target, reconstruct(energy, sampler, target, z0=z0, **kwargs))
        return seen["reconstruct"][2]

    def recording_interpolate(energy, sampler, z_start, z_end, generator=None, **kwargs):
        seen["interpolate"] = (z_start, z_end)
        seen["init"] = kwargs.get("init")
        seen["chain seed"] = None if generator is None else generator.initial_seed()
        return interpolate(energy, sampler, z_start, z_end, generator=generator, **kwargs)

    monkeypatch.setattr(shortrun, "reconstruct", recording_reconstruct)
    monkeypatch.setattr(shortrun, "interpolate", recording_interpolate)
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    out = tasks.reconstruct(run, tmp_path / "target.png", tmp_path / "rec", n_iterations=1,
                            seed=4, device="cpu")
    tasks.interpolate(run, tmp_path / "int", n_points=2, seed=4, device="cpu")
    init = NoiseInit("uniform", 0.5)
    z0, target, (_, x, _) = seen["reconstruct"]
    assert torch.equal(z0, init.sample((1, 1, 8, 8), generator=torch.Generator().manual_seed(4)))
    scores = json.loads((out / "reconstruction.json").read_text())
    assert scores["mse_last"] == float((x - target).pow(2).mean())
    generator = torch.Generator().manual_seed(4)
    ends = [init.sample((1, 8, 8), generator=generator) for _ in range(2)]
    assert all(map(torch.equal, seen["interpolate"], ends)) and seen["chain seed"] == 4
    assert seen["init"] == init  # the path walked is the uniform noise's


def test_the_warning_for_a_model_not_trained_from_noise_names_the_callers_line(
        texture_run: Path, tmp_path: Path) -> None:
    """A RuntimeWarning at the line that called the task (not inside the package), naming the
    length of the chain that reconstruct runs from noise."""
    with pytest.warns(RuntimeWarning, match="the 3-step chain from noise") as record:
        tasks.reconstruct(texture_run, texture_run / "observed.png", tmp_path / "rec",
                          n_iterations=1, device="cpu")
    assert [warning.filename for warning in record] == [__file__]


@pytest.mark.parametrize("task, last", [("reconstruct", "atomic_write_json"),
                                        ("interpolate", "save_image_grid")])
def test_a_task_whose_last_file_cannot_be_written_puts_none_of_its_files_in_place(
        short_run: Path, tmp_path: Path, monkeypatch, task: str, last: str) -> None:
    """A full disk at the last file: the earlier one (the PNG, the .npy) is not left behind
    as if the run had written its result."""
    import importlib

    def full_disk(*_, **__) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(importlib.import_module("stgconv.tasks.shortrun"), last, full_disk)
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    with pytest.raises(OSError, match="No space left on device"):
        if task == "reconstruct":
            tasks.reconstruct(short_run, tmp_path / "target.png", tmp_path / "out",
                              n_iterations=1, device="cpu")
        else:
            tasks.interpolate(short_run, tmp_path / "out", n_points=2, device="cpu")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_reconstruct_steps_its_start_at_the_rate_given(short_run: Path, tmp_path: Path) -> None:
    """--lr reaches the optimiser: at a rate of 0 the start never moves, so every iteration and
    the reconstruction written have the error of the first."""
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    out = tasks.reconstruct(short_run, tmp_path / "target.png", tmp_path / "rec", n_iterations=2,
                            lr=0.0, device="cpu")
    scores = json.loads((out / "reconstruction.json").read_text())
    assert scores["mse"] == [scores["mse_first"]] * 2
    assert scores["mse_last"] == pytest.approx(scores["mse_first"], rel=1e-6)


def test_the_seed_alone_fixes_what_reconstruct_and_interpolate_write(short_run: Path,
                                                                     tmp_path: Path) -> None:
    """--seed draws the starts as well as the chain's noise: one seed writes the same numbers
    whatever the global RNG holds, another seed other ones; mse_first is the first
    iteration's error."""
    Image.new("L", (8, 8)).save(tmp_path / "target.png")
    written = []
    for seed, global_seed in [(5, 1), (5, 2), (6, 1)]:
        torch.manual_seed(global_seed)
        out = tmp_path / f"{seed}-{global_seed}"
        tasks.reconstruct(short_run, tmp_path / "target.png", out / "rec", n_iterations=2,
                          seed=seed, device="cpu")
        scores = json.loads((out / "rec" / "reconstruction.json").read_text())
        assert scores["mse_first"] == scores["mse"][0] != scores["mse"][1]
        tasks.interpolate(short_run, out / "int", n_points=2, seed=seed, device="cpu")
        written.append((scores["mse"], np.load(out / "int" / "interpolation.npy")))
    assert written[0][0] == written[1][0] and np.array_equal(written[0][1], written[1][1])
    assert written[0][0] != written[2][0] and not np.array_equal(written[0][1], written[2][1])


def test_interpolation_of_a_model_started_at_zero_still_moves(tmp_path: Path) -> None:
    """A model whose chains start at exactly zero (chains.init_scale 0, the default) still gets
    two different noise starts to interpolate between (a floor on the scale), so the points of
    the path differ."""

    run = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=gaussian",
                           "chains.init_scale=0.0")
    out = tasks.interpolate(run, tmp_path / "int", n_points=2, device="cpu")
    path = np.load(out / "interpolation.npy")
    assert path.shape == (2, 1, 8, 8)
    assert not np.array_equal(path[0], path[1])


def test_interpolation_npy_holds_the_pngs_points_in_order_in_the_datas_range(
        tmp_path: Path) -> None:
    """interpolation.npy is every point of the path in path order (the PNG's panels, left to
    right) in grey levels 0-255, the data's range, also for a model whose chain has no clamp
    (its points overshoot [-1, 1] and must come back in it, as synthesize's samples do)."""
    run = tiny_texture_run(tmp_path, "chains.mode=noise", "chains.init=gaussian",
                           "chains.init_scale=3.0", "sampler.clamp=null")
    # 9 points: past the 8 a grid row holds by default, still one row.
    out = tasks.interpolate(run, tmp_path / "int", n_points=9, device="cpu")
    path = np.load(out / "interpolation.npy")
    assert path.shape == (9, 1, 8, 8) and path.min() == 0 and path.max() == 255
    grid = np.asarray(Image.open(out / "interpolation.png").convert("L"), dtype=np.float64)
    assert grid.shape == (8 + 4, 9 * 10 + 2)
    for point in range(9):  # 8 px panels, 2 px padding
        panel = grid[2:10, 2 + point * 10:10 + point * 10]
        np.testing.assert_allclose(panel, path[point, 0], atol=0.51)


def test_interpolate_refuses_a_model_sampled_by_another_chain_than_langevin(
        tmp_path: Path) -> None:
    run = tiny_texture_run(tmp_path, "chains.mode=noise", "sampler.kind=mala")
    with pytest.raises(ValueError, match="need a Langevin short-run model, this one was "
                                         "trained with 'mala'"):
        tasks.interpolate(run, tmp_path / "int", n_points=2, device="cpu")


def test_a_zero_learning_rate_is_refused_by_its_option(tmp_path: Path, capsys) -> None:
    # --lr 0 is refused before any work, naming the option (not a later missing checkpoint).
    assert main(["reconstruct", str(tmp_path / "none"), str(tmp_path / "x.png"),
                 "--lr", "0"]) == 2
    assert "--lr must be a finite number > 0" in capsys.readouterr().err


def test_float32s_largest_learning_rate_passes_its_option_check(tmp_path: Path, capsys) -> None:
    # The range's top is inclusive: the error is the missing checkpoint's, not the option's.
    assert main(["reconstruct", str(tmp_path / "none"), str(tmp_path / "x.png"),
                 "--lr", repr(FLOAT32_MAX)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "--lr" not in err


@pytest.mark.parametrize("given, read", [("checkpoint.pt", "checkpoint.pt"), ("", "config.yaml")],
                         ids=["the checkpoint file", "the run folder's config"])
def test_a_json_table_over_a_file_the_command_reads_is_refused(texture_run: Path, capsys,
                                                               given: str, read: str) -> None:
    """A run folder given as the checkpoint is read for its config.yaml too; the same file by
    another spelling of its path is refused as well, and stays as it was."""
    checkpoint, target = texture_run / given, texture_run / read
    before = target.read_bytes()
    for spelling in (target, texture_run / ".." / texture_run.name / read):
        code, _, err = run_main(["eval", "ood", "--checkpoint", str(checkpoint), "--inliers",
                                 "x.npz", "--outliers", "y.npz", "--json", str(spelling)], capsys)
        assert code == 2 and f"--json {spelling} is the input {target}" in err, err
    assert target.read_bytes() == before


def test_a_prior_written_over_one_of_its_clips_is_refused(tmp_path: Path, capsys) -> None:
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for clip in clips:
        clip.write_bytes(b"a clip")
    code, _, err = run_main(["fill-prior", *map(str, clips), "--out", str(clips[1])], capsys)
    assert code == 2 and f"--out {clips[1]} is the input {clips[1]}" in err, err
    assert clips[1].read_bytes() == b"a clip"


@pytest.mark.parametrize("argv, read", [
    (["reconstruct", "{run}", "{out}/reconstruction.png", "--out", "{out}"],
     "reconstruction.png"),
    (["reconstruct", "{run}", "{run}/reconstruction/reconstruction.png"], "reconstruction.png"),
    (["recover-shape", "{run}", "{run}/recovered_shapes/recovered.npy", "--known", "{run}/k.npy"],
     "recovered.npy"),
], ids=["reconstruct --out", "reconstruct into the run", "recover-shape into the run"])
def test_an_input_named_as_an_output_of_the_output_folder_is_refused(
        tmp_path: Path, capsys, argv: list[str], read: str) -> None:
    """An input where the command writes a file of its name, in --out or (without --out) in
    the run's output folder: the input was replaced by the output once the work was done."""
    run, out = tmp_path / "run", tmp_path / "out"
    argv = [arg.format(run=run, out=out) for arg in argv]
    target = Path(argv[2])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the user's")
    code, _, err = run_main(argv, capsys)
    assert code == 2 and f"is the input {target}: writing it would replace it" in err, err
    assert target.read_bytes() == b"the user's"


def test_a_config_that_overwrites_a_run_is_not_checked_against_the_old_runs(
        texture_run: Path, tmp_path: Path, capsys) -> None:
    """Only a resumed run must keep its config; --overwrite replaces the run with CONFIG's."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": "builtin:brick", "size": 8},
                                      "model": {"arch": "texture", "layers": [[2, 3, 1]]},
                                      "sampler": {"n_steps": 1}, "train": {"n_iterations": 1,
                                                                           "sample_every": 0},
                                      "chains": {"chains_per_example": 1}, "device": "cpu"}))
    code, _, err = run_main(["train", str(config), "--overwrite", "--out", str(run), "--quiet"],
                            capsys)
    assert code == 0, err
    assert load_config(run / "config.yaml").data.size == 8
    assert load_checkpoint(run)["iteration"] == 1


def stopped_before_the_work(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> dict:
    """Replace ``owner.name`` (a task) by one that records what it was given (its positional
    arguments under ``"args"``) and refuses with "stopped before the work": the command exits
    2 having done nothing."""
    asked: dict = {}

    def stops(*args, **kwargs):
        asked.update(args=args, **kwargs)
        raise ValueError("stopped before the work")

    monkeypatch.setattr(owner, name, stops)
    return asked


@pytest.mark.parametrize("argv, task, given", [
    (["synthesize", "{run}", "--seed", "7", "--frames", "3", "--steps", "2"], "synthesize",
     {"seed": 7, "frames": 3, "n_steps": 2}),
    (["reconstruct", "{run}", "{run}/observed.png", "--lr", "0.5", "--seed", "3"], "reconstruct",
     {"lr": 0.5, "seed": 3}),
    (["interpolate", "{run}", "--seed", "4"], "interpolate", {"seed": 4}),
    (["demo", "--out", "~/demo", "--overwrite", "--quiet"], "demo",
     {"args": ("{home}/demo",), "overwrite": True, "progress": False}),
    (["demo"], "demo", {"args": ("outputs/demo",)}),
    (["demo", "--set", "train.n_iterations=1"], "demo", {"overrides": ["train.n_iterations=1"]}),
    # Without --out, a --set out_dir=... is the folder (it was replaced by --out's default).
    (["demo", "--set", "out_dir=~/mine"], "demo", {"args": ("{home}/mine",)}),
    (["train", "--device", "cpu", "--out", "{home}/run", "--quiet"], "train",
     {"config.device": "cpu", "progress": False}),
    (["recover-shape", "{run}", "x.npy", "--known", "k.npy", "--init", "mean", "--seed", "5",
      "--steps", "2"], "recover_shape", {"init": "mean", "seed": 5, "n_steps": 2}),
    (["super-resolve", "{run}", "x.npy", "--out", "sr", "--batch-size", "3", "--soft"],
     "super_resolve", {"batch_size": 3, "binary": False}),
    (["eval", "recovery-3d", "--checkpoint", "{run}", "--shapes", "s.npz", "--max-shapes", "2",
      "--seed", "6"], "voxel.eval_recovery_3d", {"max_shapes": 2, "seed": 6}),
    (["eval", "classification", "--checkpoint", "{run}", "--shapes", "s.npz", "--test", "t.npz",
      "--folds", "3", "--per-class", "2", "--l2", "0.5"], "classification.eval_classification",
     {"test": "t.npz", "folds": 3, "per_class": 2, "l2": 0.5}),
    (["eval", "recovery", "--video", "v.mp4", "--mask", "region:8", "--quiet"],
     "video_recovery.eval_recovery", {"progress": False}),
    (["recover", "--video", "v.mp4", "--mask", "region:8", "--quiet", "--device", "cpu"],
     "recover_video", {"progress": False, "config.device": "cpu", "frames": 70,
                       "out_dir": "outputs/recovery"}),
    (["recover", "--video", "v.mp4", "--mask", "region:8", "--set", "out_dir=mine"],
     "recover_video", {"out_dir": "mine"}),
    (["recover", "--video", "v.mp4", "--mask", "region:8", "--set", "out_dir=mine", "--out",
      "out"], "recover_video", {"out_dir": "out"}),
    (["fill-prior", "~/clip.mp4", "--out", "{home}/prior.pt"], "train_fill_prior",
     {"args": (["{home}/clip.mp4"],), "seed": 0}),
    (["fill-prior", "clip.mp4", "--out", "prior.pt", "--set", "seed=3"], "train_fill_prior",
     {"seed": 3}),
    (["fill-prior", "clip.mp4", "--out", "prior.pt", "--set", "seed=3", "--seed", "5"],
     "train_fill_prior", {"seed": 5}),
    # A seed of 0 is a seed given, not none.
    (["fill-prior", "clip.mp4", "--out", "prior.pt", "--set", "seed=3", "--seed", "0"],
     "train_fill_prior", {"seed": 0}),
], ids=["synthesize --seed --frames --steps", "reconstruct --lr --seed", "interpolate --seed",
        "demo --out ~ --overwrite --quiet",
        "demo's --out", "demo --set", "demo --set out_dir", "train --device --quiet",
        "recover-shape --init --seed --steps", "super-resolve --batch-size --soft",
        "eval recovery-3d --max-shapes --seed",
        "eval classification --test --folds --per-class --l2", "eval recovery --quiet",
        "recover --quiet --device", "recover --set out_dir", "recover --out wins",
        "fill-prior ~", "fill-prior's seed is the config's",
        "fill-prior --seed", "fill-prior --seed 0"])
def test_a_command_passes_its_options_to_its_task(texture_run: Path, tmp_path: Path, capsys,
                                                  monkeypatch, argv, task, given) -> None:
    """(A quoted "~" is home too, as the shell would have made it.)"""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    owner, _, task = task.rpartition(".")  # an evaluation's module, or the tasks
    asked = stopped_before_the_work(monkeypatch, getattr(cli, owner) if owner else tasks, task)
    code, _, err = run_main([arg.format(run=texture_run, home=tmp_path) for arg in argv], capsys)
    assert code == 2 and "stopped before the work" in err, err
    for key, value in given.items():
        if key.startswith("config."):
            assert getattr(asked["args"][0], key.removeprefix("config.")) == value
        elif key == "args":  # paths, or lists of paths
            def as_paths(given):
                return [as_paths(v) for v in given] if isinstance(given, (list, tuple)) else Path(
                    str(given).format(home=tmp_path))
            assert as_paths(asked["args"][:len(value)]) == as_paths(value)
        else:
            assert asked[key] == value, key


@pytest.mark.parametrize("argv, where, task", [
    (["synthesize", "run"], "tasks", "synthesize"),
    (["reconstruct", "run", "image.png"], "tasks", "reconstruct"),
    (["interpolate", "run"], "tasks", "interpolate"),
    (["recover", "--video", "v.mp4", "--mask", "region:8"], "tasks", "recover_video"),
    (["fill-prior", "clip.mp4", "--out", "prior.pt"], "tasks", "train_fill_prior"),
    (["super-resolve", "run", "low.npy"], "tasks", "super_resolve"),
    (["recover-shape", "run", "x.npy", "--known", "k.npy"], "tasks", "recover_shape"),
    (["eval", "recovery", "--video", "v.mp4", "--mask", "region:8"], "video_recovery",
     "eval_recovery"),
    (["eval", "super-resolution", "--checkpoint", "run", "--shapes", "s.npz"], "voxel",
     "eval_super_resolution"),
    (["eval", "recovery-3d", "--checkpoint", "run", "--shapes", "s.npz"], "voxel",
     "eval_recovery_3d"),
    (["eval", "classification", "--checkpoint", "run", "--shapes", "s.npz"], "classification",
     "eval_classification"),
    (["demo"], "tasks", "demo"),
], ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None)
def test_an_option_left_out_is_its_tasks_own_default(tmp_path: Path, capsys, monkeypatch, argv,
                                                      where, task) -> None:
    """A command and the library function it calls mean the same thing by an option left out
    (but where the command writes, its progress bar, which a command shows by default, its
    device and the recovery commands' learned-fill settings, which come from their config)."""
    import inspect

    from stgconv.evaluation import classification, video_recovery, voxel

    module = {"tasks": tasks, "video_recovery": video_recovery, "voxel": voxel,
              "classification": classification}[where]
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(getattr(module, task)).parameters.items()
                if parameter.default is not inspect.Parameter.empty
                and name not in ("out_dir", "progress", "device", "settings")}
    monkeypatch.chdir(tmp_path)
    asked = stopped_before_the_work(monkeypatch, module, task)
    code, _, err = run_main(argv, capsys)
    assert code == 2 and "stopped before the work" in err, err

    def plain(value):  # a tuple default and the list argparse makes of it are the same
        return list(value) if isinstance(value, tuple) else value

    passed = {name: plain(value) for name, value in asked.items() if name in defaults}
    assert len(passed) >= 2, passed
    assert passed == {name: plain(defaults[name]) for name in passed}


def test_fill_prior_trains_as_long_as_told_on_the_device_its_config_names(
        tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "resolve_device", lambda name: f"the device {name}")
    asked = stopped_before_the_work(monkeypatch, tasks, "train_fill_prior")
    code, _, err = run_main(["fill-prior", "clip.mp4", "--out", str(tmp_path / "prior.pt"),
                             "--iterations", "2", "--device", "cpu"], capsys)
    assert code == 2 and "stopped before the work" in err, err
    assert (asked["iterations"], asked["device"]) == (2, "the device cpu")


def test_recover_prints_its_error_and_its_starting_fills_and_names_its_folder(
        tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tasks, "recover_video",
                        lambda *args, **kwargs: {"error": 1.5, "init_error": 7.25})
    code, out, err = run_main(["recover", "--video", "v.mp4", "--mask", "region:8", "--out",
                               str(tmp_path / "rec")], capsys)
    assert code == 0, err
    printed, report = out.splitlines()
    assert printed == "error on the missing pixels (0-255): 1.50 (starting fill: 7.25)"
    assert report.startswith(f"stgconv recover: wrote {tmp_path / 'rec'} ("), report


@pytest.mark.parametrize("fault", [
    ValueError("a refusal whose text\n   runs over two lines"),
    PeerFailedError("process 1 of 2 stopped"),
], ids=["a message of two lines", "another process failed"])
def test_a_tasks_fault_is_one_line_and_exit_2(texture_run: Path, tmp_path: Path, capsys,
                                              monkeypatch, fault) -> None:
    def fails(*args, **kwargs):
        raise fault

    monkeypatch.setattr(tasks, "synthesize", fails)
    code, _, err = run_main(["synthesize", str(texture_run), "--out", str(tmp_path)], capsys)
    assert code == 2 and err == f"stgconv synthesize: error: {' '.join(str(fault).split())}\n"


def test_a_tasks_warning_is_one_line_naming_the_command(texture_run: Path, tmp_path: Path,
                                                       capsys, monkeypatch) -> None:
    import warnings

    def warns(*args, **kwargs):
        warnings.warn("a warning whose text\n   runs over two lines")
        return tmp_path

    monkeypatch.setattr(tasks, "synthesize", warns)
    code, _, err = run_main(["synthesize", str(texture_run), "--out", str(tmp_path)], capsys)
    assert code == 0
    assert err.splitlines()[0] == ("stgconv synthesize: warning: a warning whose text runs over "
                                   "two lines")


def test_commands_run_in_two_threads_at_once_name_their_own_warnings(capsys,
                                                                     monkeypatch) -> None:
    """Two commands of a program's threads overlap, the first ending first: each warning names
    its own command, a warning of the program's own thread meanwhile is the program's, and the
    program's warnings are its own again after (the first command's function was left
    installed, naming it in every later warning of the process)."""
    seen: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *_: seen.append(str(message)))
    second_running, first_done = threading.Event(), threading.Event()

    def run(args):
        if args.command == "train":
            second_running.wait(timeout=5)
            warnings.warn("from the first")
        else:
            second_running.set()
            first_done.wait(timeout=5)
            warnings.warn("from the second")

    def first() -> None:
        main(["train"])
        first_done.set()

    monkeypatch.setattr(cli, "_run", run)
    threads = [threading.Thread(target=first),
               threading.Thread(target=main, args=(["synthesize", "run"],))]
    for thread in threads:
        thread.start()
    second_running.wait(timeout=5)
    warnings.warn("the program's own, meanwhile")
    for thread in threads:
        thread.join()
    warnings.warn("the program's own, after")
    assert sorted(line for line in capsys.readouterr().err.splitlines() if "warning" in line) == [
        "stgconv synthesize: warning: from the second", "stgconv train: warning: from the first"]
    assert seen == ["the program's own, meanwhile", "the program's own, after"]


def test_a_program_gets_its_own_warning_function_back_and_each_run_its_warnings(
        capsys, monkeypatch) -> None:
    """After main, warnings.showwarning is the program's own function again, and the warning
    filters a run changes are put back; a warning a run repeats from one line is shown in each
    run, not once in the process."""
    def shown(message, *_: object) -> None:
        pass

    monkeypatch.setattr(warnings, "showwarning", shown)
    filters = list(warnings.filters)

    def run(args) -> None:
        warnings.warn("the same line each run")
        warnings.simplefilter("error")

    monkeypatch.setattr(cli, "_run", run)
    for _ in range(2):
        main(["train"])
    assert warnings.showwarning is shown
    assert warnings.filters == filters
    assert capsys.readouterr().err.splitlines() == [
        "stgconv train: warning: the same line each run"] * 2


def test_a_program_whose_default_dtype_is_float64_is_told_to_set_it_back(tmp_path: Path,
                                                                           capsys) -> None:
    """A notebook that set torch.set_default_dtype(torch.float64) for its own work: train made
    a float64 net for its float32 data and failed on that ("expected x of dtype torch.float64
    (the network's)", advice a command's caller cannot follow), reconstruct, interpolate and
    recover alike. Refused up front, naming the setting, which stays the program's."""
    out = tmp_path / "run"
    torch.set_default_dtype(torch.float64)
    try:
        code, _, err = run_main(["train", *TINY, "--out", str(out), "--quiet"], capsys)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert code == 2 and err == (
        "stgconv train: error: torch's default dtype is torch.float64 (set by "
        "torch.set_default_dtype), and the commands run in float32: call "
        "torch.set_default_dtype(torch.float32) before stgconv.cli.main\n")
    assert not out.exists()
    torch.set_default_dtype(torch.bfloat16)  # any other than float32
    try:
        code, _, err = run_main(["train", *TINY, "--out", str(out), "--quiet"], capsys)
    finally:
        torch.set_default_dtype(torch.float32)
    assert code == 2 and "torch's default dtype is torch.bfloat16" in err, err
    assert not out.exists()


def test_a_new_run_without_a_config_starts_from_the_defaults_not_the_old_runs(
        texture_run: Path, tmp_path: Path, capsys) -> None:
    """Only --resume reads the run's own config.yaml."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "name: experiment", "name: the-old-run"))
    code, _, err = run_main(["train", *TINY, "--out", str(run), "--overwrite", "--quiet"], capsys)
    assert code == 0, err
    assert load_config(run / "config.yaml").name == "experiment"


def test_resume_reads_the_config_of_the_last_out_dir_given(texture_run: Path, tmp_path: Path,
                                                          capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    code, _, err = run_main(["train", "--resume", "--set", f"out_dir={tmp_path / 'elsewhere'}",
                             "--set", f"out_dir={run}", "--set", "train.n_iterations=3",
                             "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_resume_finds_a_run_set_as_out_dir_under_the_home_folder(texture_run: Path, tmp_path: Path,
                                                                 capsys, monkeypatch) -> None:
    """--resume --set out_dir=~/run looked for the run's config.yaml in a folder named "~",
    took the defaults and refused the run for them; --set out_dir=2024 (or 1.5) was a
    TypeError's traceback."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(texture_run, tmp_path / "run")
    code, _, err = run_main(["train", "--resume", "--set", "out_dir=~/run", "--set",
                             "train.n_iterations=3", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "run")["iteration"] == 3
    # Refused as the number it is, also where a folder of that name holds a checkpoint (which,
    # taken as the run, would be "2024/config.yaml not found").
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "checkpoint.pt").touch()
    for value in ("2024", "1.5"):
        code, _, err = run_main(["train", "--resume", "--set", f"out_dir={value}", "--quiet"],
                                capsys)
        assert code == 2 and f"out_dir must be a str, got {value}" in err, err


def test_resume_with_the_runs_config_file_may_change_its_device(texture_run: Path,
                                                                tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    config = tmp_path / "config.yaml"
    config.write_text((run / "config.yaml").read_text().replace("device: cpu", "device: auto"))
    code, _, err = run_main(["train", str(config), "--resume", "--out", str(run),
                             "--set", "train.n_iterations=3", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_resume_with_a_config_of_data_mean_auto_takes_the_mean_the_run_learnt(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_voxel_run["run"], run)
    learnt = load_config(run / "config.yaml").data.mean
    code, _, err = run_main(["train", str(SR_CONFIG), "--data", str(trained_voxel_run["shapes"]),
                             "--out", str(run), *VOXEL_TINY, "--set", "train.n_iterations=3",
                             "--resume"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3
    assert load_config(run / "config.yaml").data.mean == learnt


def test_resume_with_a_config_file_of_a_run_on_a_y_up_cache(
        trained_voxel_run: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A run trained on a cache of y-up meshes records data.up_axis 1 (the modality's
    fit_units); the config file leaves the default 2, which is not a differing config."""
    from stgconv.data.voxel import build_modelnet_cache

    post = write_y_up_post(tmp_path / "tree" / "chair" / "train" / "chair_0001.obj")
    cache = build_modelnet_cache(post.parents[2], tmp_path / "y_up.h5", resolution=16, up_axis=1)
    run = tmp_path / "run"
    shutil.copytree(trained_voxel_run["run"], run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"].update(path=str(cache), up_axis=1)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    code, _, err = run_main(["train", str(SR_CONFIG), "--data", str(cache), "--out", str(run),
                             *VOXEL_TINY, "--set", "train.n_iterations=3", "--resume"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3
    assert load_config(run / "config.yaml").data.up_axis == 1


def test_resume_with_a_config_file_of_a_run_that_lost_its_own(texture_run: Path,
                                                              tmp_path: Path, capsys) -> None:
    """Nothing to check the config file against: the run continues on it."""
    run = tmp_path / "run"
    shutil.copytree(texture_run, run)
    config = tmp_path / "config.yaml"
    (run / "config.yaml").rename(config)
    code, _, err = run_main(["train", str(config), "--resume", "--out", str(run),
                             "--set", "train.n_iterations=3", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(run)["iteration"] == 3


def test_eval_recovery_3d_hides_the_share_its_help_says_by_default(capsys,
                                                                    monkeypatch) -> None:
    from stgconv.evaluation import voxel

    asked = stopped_before_the_work(monkeypatch, voxel, "eval_recovery_3d")
    code, _, err = run_main(["eval", "recovery-3d", "--checkpoint", "run", "--shapes", "x.npz"],
                            capsys)
    assert code == 2 and "stopped before the work" in err
    assert asked["missing"] == 0.7


def test_the_package_alone_reads_its_default_recovery_config(tmp_path: Path) -> None:
    """The package copied away from the checkout, as a wheel installs it: `recover` without
    --config looked for the checkout's configs/video/recovery_quick.yaml and refused ("the quick
    recovery config ... is not here"); now it reads its own and gets as far as the video."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "stgconv", site / "stgconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys, stgconv.cli; print(stgconv.cli.__file__); sys.exit(stgconv.cli.main("
            "['recover', '--video', 'missing.mp4', '--mask', 'region:8']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(site)})
    assert result.stdout.startswith(str(site)), result.stdout  # the copy, not the checkout
    assert result.returncode == 2 and "error: video not found: missing.mp4" in result.stderr, (
        result.stderr)


def test_a_help_text_that_states_its_default_gets_no_second_one(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(same as --set data.path=...; default: the config's) --out" in text


def test_a_tensorboard_folder_that_is_a_file_is_refused_before_the_work(tmp_path: Path,
                                                                        capsys) -> None:
    (tmp_path / "tb").write_text("a file")
    code, _, err = run_main(["eval", "recovery", "--video", str(tmp_path / "missing.mp4"),
                             "--mask", "region:8", "--tensorboard", str(tmp_path / "tb")], capsys)
    assert code == 2 and f"--tensorboard {tmp_path / 'tb'} is a file, not a folder" in err


def test_a_tensorboard_folder_named_not_in_utf8_is_refused_before_the_work(tmp_path: Path,
                                                                           capsys) -> None:
    """TensorBoard's writer encodes its folder as UTF-8: a Latin-1 name failed after all the
    evaluation's work, naming no folder ("'utf-8' codec can't encode character")."""
    tb = tmp_path / os.fsdecode(b"caf\xe9")
    code, _, err = run_main(["eval", "recovery", "--video", str(tmp_path / "missing.mp4"),
                             "--mask", "region:8", "--tensorboard", str(tb)], capsys)
    assert code == 2 and (f"--tensorboard {tmp_path}/caf\\xe9 cannot be written: TensorBoard "
                          "takes only") in err
    assert not tb.exists()


def test_an_override_longer_than_a_file_name_is_no_file_name(tmp_path: Path, capsys) -> None:
    """Every option's text was looked for as an input file: a --set longer than 255 bytes (a
    deep network's model.layers) stopped the command with "File name too long"."""
    (tmp_path / "run").mkdir()  # an --out that exists is compared with every input file
    code, _, err = run_main(["train", "--set", "name=" + "x" * 300, "--set",
                             "train.n_iterations=0", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "train.n_iterations must be positive, got 0" in err, err


@pytest.mark.parametrize("command", [["recover"], ["eval", "recovery"], ["fill-prior"]])
def test_the_help_names_the_shipped_recovery_config_where_it_is(command: list[str],
                                                                capsys) -> None:
    """The file these commands read without --config, by its place in the source tree."""
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = "".join(capsys.readouterr().out.split())
    assert f"(default:theshipped{QUICK_RECOVERY_CONFIG.relative_to(REPO).as_posix()})" in text


def test_help_and_version_state_no_default(capsys) -> None:
    """-h and --version have nothing left out to tell of: their help is argparse's own."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.endswith("-h, --help show this help message and exit --version show program's "
                         "version number and exit")


@pytest.mark.parametrize("command, shown", [
    (["train"], "--quiet no progress bar (default: off)"),
    # Its text names the "defaults" a config is built from, which is no default of its own.
    (["train"], "(the channels and size the data decides stay unset) (default: off)"),
    # The clip is read at data.channels (it was read in colour whatever data.channels said,
    # as this help still told after recover, eval recovery and fill-prior had come to read it
    # at data.channels).
    (["recover"], "--video VIDEO a video file or a folder of frames, read at the config's "
                  "data.channels (the shipped config's 3: in colour, a grey clip as three equal "
                  "channels; 1: in grey, by luma) --mask"),
    (["eval", "recovery"], "read at the config's data.channels"),
    # A required option is never left out: its help ends where the next option's begins.
    (["eval", "ood"], "accuracy and ECE) --outliers OUTLIERS .npz with x_test"),
])
def test_a_flag_left_out_reads_off_and_a_required_option_states_no_default(
        capsys, command: list[str], shown: str) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert shown in " ".join(capsys.readouterr().out.split())


def test_the_formatter_shows_the_default_of_an_option_without_help_and_a_negative_flag_off(
) -> None:
    """The bench scripts' parsers use it too: an option with no help text printed no default
    (argparse prints nothing for it), and a store_false flag (True when left out) read "on"."""
    parser = argparse.ArgumentParser(prog="p", formatter_class=DefaultsFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip it")
    text = " ".join(parser.format_help().split())
    assert "--kills KILLS (default: 20)" in text
    assert "--no-memory skip it (default: off)" in text


def test_a_repeatable_option_left_out_shows_not_set_in_the_help(capsys) -> None:
    # `--set` (a list, empty by default) reads "not set" in the help, not a Python "[]".
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: not set)" in text and "(default: [])" not in text


def test_outputs_default_into_the_run_folder_given(trained_voxel_run: dict[str, Path],
                                                   tmp_path: Path) -> None:
    # Without --out, a command given a run folder writes into <run folder>/<task>, not beside.
    run = tmp_path / "run"
    shutil.copytree(trained_voxel_run["run"], run)
    np.save(tmp_path / "low.npy", np.full((4, 4, 4), 0.5, np.float32))
    assert main(["super-resolve", str(run), str(tmp_path / "low.npy"), "--steps", "1",
                 "--device", "cpu"]) == 0
    assert (run / "super_resolution" / "super_resolved.npy").is_file()


def test_a_quoted_home_folder_is_the_home_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """'--out "~/runs/a"' trained into a folder named '~' under the working folder while saying
    it wrote ~/runs/a; so did a config's out_dir or data.path."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    Image.new("RGB", (32, 32), (90, 60, 30)).save(home / "mine.png")
    code, _, err = run_main(["train", *TINY, "--data", "~/mine.png", "--out", "~/runs/a",
                             "--set", "train.n_iterations=1", "--quiet"], capsys)
    assert code == 0, err
    assert (home / "runs" / "a" / "checkpoint.pt").is_file()
    config = load_config(None, ["out_dir=~/runs/b", "data.path=~/mine.png"])
    assert (config.out_dir, config.data.path) == (str(home / "runs" / "b"), str(home / "mine.png"))
    assert list(work.iterdir()) == []


def test_a_refused_run_leaves_none_of_the_folders_it_made(tmp_path: Path, capsys) -> None:
    """--out a/b/run of a run refused at its start left the empty a/b behind."""
    (tmp_path / "kept").mkdir()
    code, _, err = run_main(["train", *TINY, "--data", str(tmp_path / "typo.png"), "--out",
                             str(tmp_path / "kept" / "a" / "b" / "run"), "--quiet"], capsys)
    assert code == 2 and "typo.png" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"] and not any(
        (tmp_path / "kept").iterdir())
