"""Every script in ``examples/`` runs its ``--smoke`` mode as a user would run it: a fresh
process, from another folder, with ``--data`` pointing nowhere (a smoke run makes its own tiny
data and must not need ``../shared``), and writes the numbers it prints as finite JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import runpy
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import stgconv
from stgconv.metrics import auroc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Each example and the numbers its JSON must hold.
EXPECTED = {
    "video_recovery.py": {"error_stgconv", "error_temporal_interpolation", "best_classical",
                          "ratio_to_best_classical"},
    "voxel_super_resolution.py": {"iou_stgconv", "iou_trilinear", "iou_trilinear_binary"},
    "compose_experts.py": {"smoothness_langevin_A_plus_B", "energy_A_hmc", "hmc_acceptance"},
    "jem_ood.py": {"accuracy", "auroc_energy", "auroc_max_softmax", "auroc_stgconv"},
}


def test_every_example_is_covered():
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_smoke_run_writes_its_numbers(script, tmp_path):
    out = tmp_path / "report" / "numbers.json"  # its folder made, as --out's is (was a traceback)
    # This checkout's stgconv, not whichever clone the environment's editable install names;
    # one thread: a few processes' worth of torch threads on 2 shared cores slowed each run.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(EXAMPLES / script), "--smoke", "--json", str(out),
               "--data", str(tmp_path / "no_such_data")]
    if "--out" in (EXAMPLES / script).read_text():
        command += ["--out", str(tmp_path / "outputs")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    numbers = json.loads(out.read_text())
    assert EXPECTED[script] <= set(numbers)
    for name, value in numbers.items():
        assert isinstance(value, str) or math.isfinite(value), (name, value)
        assert name in done.stdout  # what it writes is what it printed


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_without_its_data_says_so_in_one_line(script, tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    missing = tmp_path / "no_such_data"
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(missing), "--json", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: {missing} not found: pass --data PATH, or --smoke")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def digits_without_a_test_split(folder: Path) -> list[str]:
    np.savez(folder / "digits.npz", x_train=np.zeros((4, 28, 28), np.uint8),
             y_train=np.arange(4))
    return ["--data", str(folder / "digits.npz")]


def digits_as_floats(folder: Path) -> list[str]:
    np.savez(folder / "digits.npz", x_train=np.zeros((4, 28, 28), np.float32))
    return ["--data", str(folder / "digits.npz")]


def digits_grey(folder: Path, *, n: int, alike: bool) -> list[str]:
    pixels = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    np.savez(folder / "digits.npz", x_train=np.full_like(pixels, 200) if alike else pixels)
    return ["--data", str(folder / "digits.npz")]


def clip_and_mask(folder: Path, *, frames: int, mask: tuple[int, int, int]) -> list[str]:
    from stgconv.io.video import save_video
    save_video(torch.zeros(3, frames, 16, 16), folder / "clip.mkv", fps=10)
    np.save(folder / "mask.npy", np.zeros(mask, np.uint8))
    return ["--data", str(folder / "clip.mkv"), "--mask", str(folder / "mask.npy"),
            "--out", str(folder / "outputs")]


def shapes_as_text(folder: Path) -> list[str]:
    (folder / "shapes.txt").write_text("chairs")
    return ["--data", str(folder / "shapes.txt")]


def shapes(folder: Path, *, n: int, side: int) -> list[str]:
    np.savez(folder / "shapes.npz", X=np.ones((n, side, side, side), np.uint8))
    return ["--data", str(folder / "shapes.npz"), "--out", str(folder / "outputs")]


def digits_labelled(folder: Path, train: list[int], test: list[int]) -> list[str]:
    np.savez(folder / "digits.npz", x_train=np.zeros((len(train), 28, 28), np.uint8),
             y_train=train, x_test=np.zeros((len(test), 28, 28), np.uint8), y_test=test)
    return ["--data", str(folder / "digits.npz")]


# A user's own file each example cannot use, and the end of the line that says why.
UNUSABLE_DATA = [
    ("jem_ood.py", digits_without_a_test_split, "digits.npz: no array 'x_test' (it has x_train, "
     "y_train)"),
    ("compose_experts.py", digits_as_floats, "digits.npz: x_train must be uint8 (N, H, W) or "
     "(N, H, W, C) with C 1 to 4, got float32 (4, 28, 28); save levels 0-255 as uint8 (floats "
     "in [0, 1]: (images * 255).round().astype(numpy.uint8))"),
    ("video_recovery.py", partial(clip_and_mask, frames=5, mask=(70, 150, 150)),
     "clip.mkv has 5 frames (5 available from start_frame)"),
    ("video_recovery.py", partial(clip_and_mask, frames=70, mask=(70, 16, 16)),
     "mask.npy is a mask of (70, 16, 16) (T, H, W); this example reads the clip as "
     "(70, 150, 150)"),
    ("voxel_super_resolution.py", shapes_as_text, "suffix must be one of .mat, .binvox, .npy, "
     ".npz, .h5, .hdf5, got '.txt'"),
    # Each of these ended in a traceback: after the training (a side not divisible by the
    # factor), at its start (no shape left to train on: a NaN clamp), at the chains' start
    # (a label past 9, a digit of one image), at the Gaussian's fit or the sampler's step
    # (fewer than 4 digits, digits all alike: a step size of 0), or at the net's construction
    # (grids too small for it).
    ("voxel_super_resolution.py", partial(shapes, n=1, side=8), "shapes.npz holds 1 shape; the "
     "example needs at least 2 (one to learn from, one to score)"),
    ("voxel_super_resolution.py", partial(shapes, n=44, side=6), "shapes.npz holds shapes of "
     "side 6; this example super-resolves 4x blocks: give a side divisible by 4"),
    ("compose_experts.py", partial(digits_grey, n=3, alike=False), "digits.npz holds 3 "
     "image(s); this example needs at least 4 (half to fit expert A to, half held out)"),
    ("compose_experts.py", partial(digits_grey, n=8, alike=True), "digits.npz: the images "
     "expert A is fitted to (the first half) are all alike, which leaves its Gaussian no spread "
     "to sample"),
    ("voxel_super_resolution.py", partial(shapes, n=5, side=4), "shapes.npz holds shapes of "
     "side 4: input_size (4, 4, 4) is too small for these layers: they need at least (8, 8, 8)"),
    ("jem_ood.py", partial(digits_labelled, train=[*range(11)] * 2, test=[0, 1]),
     "digits.npz: y_train holds the label 10; this example classifies digits 0 to 9"),
    ("jem_ood.py", partial(digits_labelled, train=[*range(10)] * 2, test=[0, 10]),
     "digits.npz: y_test holds the label 10; this example classifies digits 0 to 9"),
    ("jem_ood.py", partial(digits_labelled, train=[*range(10), *range(1, 10)], test=[0, 1]),
     "digits.npz: y_train labels 1 image(s) as digit 0; this example needs at least 2 of each "
     "digit"),
]


@pytest.mark.parametrize("script, make, says", UNUSABLE_DATA)
def test_example_refuses_data_it_cannot_use_in_one_line(script, make, says, tmp_path, capsys):
    """A file that is there but of another layout or length: exit 2 and the loader's own line
    (each was a traceback, the mask of another size one from broadcasting); nothing written."""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    (tmp_path / "inputs").mkdir()
    argv = make(tmp_path / "inputs")
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--json", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert ": error: " in last and last.endswith(says)
    assert [p.name for p in tmp_path.iterdir()] == ["inputs"]


def test_example_help_gives_the_docstrings_whole_first_paragraph(capsys):
    """Not its first line, which ended jem_ood's mid-sentence ("... and how well its")."""
    main = runpy.run_path(str(EXAMPLES / "jem_ood.py"))["main"]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert " ".join(capsys.readouterr().out.split()).endswith(
        "A tiny JEM: a digit classifier that is also an energy model; its accuracy, and how "
        "well its scores tell MNIST test digits from inverted ones (white strokes become black "
        "on white). options: -h, --help show this help message and exit --smoke tiny synthetic "
        f"run (default: off) --data DATA MNIST .npz (Keras layout) (default: {ROOT}/../shared/"
        "data/image/mnist.npz) --json FILE write the printed numbers here (default: not set) "
        "--seed SEED (default: 0)")


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_help_states_the_defaults_the_readme_promises(script, capsys):
    """README: --data "by default the development data in ../shared/data", --json FILE; the help
    said neither where the data is looked for nor what --out and --seed are when left out."""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(rf"--data DATA [^-]*\(default: {re.escape(str(ROOT))}/\.\./shared/data/", text)
    assert "--json FILE write the printed numbers here (default: not set)" in text
    assert "--seed SEED (default: 0)" in text
    assert "--out OUT" not in text or "--out OUT (default: outputs/examples/" in text


# Each example's output options: the option, a name under it, and what the message calls it.
OUTPUT_OPTIONS = [(script, "--json", "numbers.json", "the file") for script in sorted(EXPECTED)]
OUTPUT_OPTIONS += [(script, "--out", "outputs", "the folder")
                   for script in ("video_recovery.py", "voxel_super_resolution.py")]


@pytest.mark.parametrize("script, option, name, kind", OUTPUT_OPTIONS)
def test_example_refuses_an_output_it_cannot_write_before_its_run(script, option, name, kind,
                                                                  tmp_path, capsys):
    """Under a file: one line, exit 2, as the options are read (it ended the run in a
    FileExistsError traceback); nothing written. Checked before the data too."""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    (tmp_path / "a_file").write_text("kept")
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(tmp_path / "no_such_data"), option, str(tmp_path / "a_file" / name)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: argument {option}: {kind} {tmp_path / 'a_file' / name} lies under "
        f"{tmp_path / 'a_file'}, which is a file")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]
    assert (tmp_path / "a_file").read_text() == "kept"


@pytest.mark.parametrize("script", sorted(EXPECTED))
@pytest.mark.parametrize("seed", [str(2**64), "-1", "x"])
def test_example_refuses_a_seed_the_commands_refuse_as_the_options_are_read(script, seed,
                                                                         tmp_path, capsys):
    """Past 64 bits the seed ended the smoke run in torch's "Overflow when unpacking long long"
    traceback, once its data were made; a negative one was wrapped round, where `stgconv
    synthesize --seed -1` is refused."""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    with pytest.raises(SystemExit) as exit_:
        main(["--smoke", "--seed", seed, "--json", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    says = ("expected an integer, got 'x'" if seed == "x" else
            f"a seed must be an int in [0, 2^63 - 2^16), got {seed}")
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: argument --seed: {says}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_refuses_an_abbreviated_option(script, tmp_path, capsys):
    """``--smok`` or ``--jso`` would break, or mean another option, once the example gains one of
    the same start. (With the data missing, an example taking the abbreviation stops at once
    too, on the data.)"""
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    missing = tmp_path / "no_such_data"
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(missing), "--jso", str(tmp_path / "numbers.json")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: unrecognized arguments: --jso {tmp_path / 'numbers.json'}")
    assert list(tmp_path.iterdir()) == []


def load_example(script: str):
    """``examples/script`` as a module (not run), so a test can watch what its main calls."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_voxel_example_runs_the_chain_on_centred_occupancy_from_the_trilinear_start(
        tmp_path, monkeypatch):
    """The smoke run's numbers are finite whatever offset or start the script passes, so the
    call is watched: it passes the offset from the sampler's clamp and trilinear up-sampling."""
    example = load_example("voxel_super_resolution.py")
    calls = []

    def spy(energy, sampler, low, factor, **settings):
        calls.append((sampler, settings))
        return example_super_resolve(energy, sampler, low, factor, **settings)

    example_super_resolve = example.super_resolve_batch
    monkeypatch.setattr(example, "super_resolve_batch", spy)
    with torch.random.fork_rng(devices=[]):  # the script seeds torch's global generator
        example.main(["--smoke", "--json", str(tmp_path / "numbers.json"),
                      "--out", str(tmp_path / "outputs")])
    [(sampler, settings)] = calls
    # The sampler's clamp is occupancy's [0, 1] in the model's units: (-mean, 1 - mean).
    assert settings["offset"] == -sampler.clamp[0] > 0
    assert settings["upsample"] == "linear" and settings.get("binary", True)


def test_video_example_preconditions_its_completion_by_the_spread(tmp_path, monkeypatch):
    """The smoke run's numbers are finite without the step scale too, so the completion chain
    is watched: it is given ``step_scale``, the spread of the observed entries."""
    example = load_example("video_recovery.py")
    scales = []

    def spy(sampler, **settings):
        scales.append(settings.get("step_scale"))
        return example_chain(sampler, **settings)

    example_chain = example.CompletionChain
    monkeypatch.setattr(example, "CompletionChain", spy)
    with torch.random.fork_rng(devices=[]):  # the script seeds torch's global generator
        example.main(["--smoke", "--json", str(tmp_path / "numbers.json"),
                      "--out", str(tmp_path / "outputs")])
    [scale] = scales
    assert scale is not None and bool(scale.isfinite().all()) and scale.max() > 0


def watch(monkeypatch, owner, name: str) -> list[SimpleNamespace]:
    """Each call of ``owner.name`` from now on, as its ``args``, ``kwargs`` and ``result``."""
    calls, original = [], getattr(owner, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(SimpleNamespace(args=args, kwargs=kwargs, result=result))
        return result

    monkeypatch.setattr(owner, name, spy)
    return calls


def keep_first_weights(monkeypatch, owner, name: str) -> list[dict[str, torch.Tensor]]:
    """The weights of each net ``owner.name`` builds from now on, as they were when built."""
    weights, build = [], getattr(owner, name)

    def spy(*args, **kwargs):
        net = build(*args, **kwargs)
        weights.append({key: value.clone() for key, value in net.state_dict().items()})
        return net

    monkeypatch.setattr(owner, name, spy)
    return weights


def test_compose_smoothness_sums_the_squared_differences_along_both_axes():
    smoothness = load_example("compose_experts.py").smoothness
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]])[None, None]  # (1, 1, 2, 2)
    # Across: 1 and 2; down: 3 and 4.
    assert smoothness(x).tolist() == [1 + 4 + 9 + 16]


def test_compose_smoke_digits_are_one_bright_blob_in_the_middle_half():
    example = load_example("compose_experts.py")
    digits = example.synthetic_digits(64, 8, torch.Generator().manual_seed(0))
    assert digits.shape == (64, 1, 8, 8)
    assert digits.amax().item() <= 1 and digits.amin().item() == pytest.approx(-1, abs=1e-3)
    peaks = digits.flatten(1).argmax(1)
    rows, columns = peaks // 8, peaks % 8
    assert all(2 <= i <= 6 for i in rows.tolist() + columns.tolist())
    assert (rows != columns).any()  # each centre's row and column drawn apart
    assert (digits.flatten(1).amax(1) > 0.5).all()
    # Each blob is 2 exp(-d^2 / 4) - 1 at squared distance d^2 from its centre, drawn in the
    # middle half of the image.
    centres = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 4 + 2
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    for digit, (row, column) in zip(digits[:, 0], centres):
        squared = (ys - row) ** 2 + (xs - column) ** 2
        assert torch.allclose(digit, 2 * torch.exp(-squared / 4) - 1, atol=1e-6)


@pytest.fixture(scope="module")
def compose_run(tmp_path_factory):
    """examples/compose_experts.py --smoke --seed 3, with its fit, samplers and HMC's
    acceptances watched."""
    example = load_example("compose_experts.py")
    with pytest.MonkeyPatch.context() as monkeypatch:
        fits = watch(monkeypatch, example.DataGaussian, "fit")
        langevin = watch(monkeypatch, stgconv.Langevin, "run")
        hmc = watch(monkeypatch, stgconv.HMC, "run")
        out = tmp_path_factory.mktemp("compose") / "numbers.json"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # seeded otherwise in a later run: only --seed may matter
            numbers = example.main(["--smoke", "--seed", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == numbers
    return SimpleNamespace(example=example, numbers=numbers, fits=fits, langevin=langevin,
                           hmc=hmc)


def test_compose_fits_expert_a_to_the_first_half_of_its_seeds_digits(compose_run):
    digits = compose_run.example.synthetic_digits(64, 8, torch.Generator().manual_seed(3))
    [fit] = compose_run.fits
    assert torch.equal(fit.args[0], digits[:32]) and fit.kwargs == {"rank": 16}


def test_compose_samples_a_and_the_product_by_langevin_and_a_by_hmc(compose_run):
    alone, both = compose_run.langevin
    [hmc] = compose_run.hmc
    sampler, expert, start = alone.args
    gaussian = compose_run.fits[0].result
    assert both.args[0] is sampler and both.args[2] is hmc.args[2] is start
    # Noise in [-1, 1], the digits' range.
    assert start.shape == (16, 1, 8, 8) and start.amin() < -0.5 and start.amax() <= 1
    assert sampler.step_size == pytest.approx(0.5 * float(gaussian.residual_std.min()))
    assert torch.equal(expert(start), -gaussian.log_prob(start))
    product = both.args[1]
    assert product.experts == [expert, compose_run.example.smoothness]
    assert product.weights == [1.0, 0.5]
    hmc_sampler = hmc.args[0]
    assert hmc.args[1] is expert and hmc_sampler.step_size == sampler.step_size
    assert (sampler.n_steps, hmc_sampler.n_steps, hmc_sampler.n_leapfrog) == (20, 10, 10)


def test_compose_reports_each_sets_smoothness_and_energy(compose_run):
    """Real digits are the held-out half; the others are the samples of each chain."""
    numbers, smoothness = compose_run.numbers, compose_run.example.smoothness
    digits = compose_run.example.synthetic_digits(64, 8, torch.Generator().manual_seed(3))
    held_out = digits[32:]
    alone, both = (call.result for call in compose_run.langevin)
    exact = compose_run.hmc[0].result
    expert = compose_run.langevin[0].args[1]
    expected = {"smoothness_real": smoothness(held_out), "smoothness_langevin_A": smoothness(alone),
                "smoothness_langevin_A_plus_B": smoothness(both),
                "energy_A_real": expert(held_out), "energy_A_langevin_A_plus_B": expert(both),
                "energy_A_hmc": expert(exact)}
    for name, values in expected.items():
        assert numbers[name] == pytest.approx(values.mean().item(), rel=1e-5), name
    assert numbers["smoothness_real"] != numbers["smoothness_langevin_A"]


def test_compose_reports_the_fraction_of_hmc_trajectories_accepted(compose_run, monkeypatch):
    """The mean over steps of each step's accepted fraction of the 16 chains."""
    example = compose_run.example
    fractions = []

    def run(self, energy, x, *, callback, **settings):
        def record(info):
            fractions.append(info.accepted.float().mean().item())
            callback(info)
        return original(self, energy, x, callback=record, **settings)

    original = stgconv.HMC.run
    monkeypatch.setattr(stgconv.HMC, "run", run)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # the same numbers: every chain draws from --seed's generator
        numbers = example.main(["--smoke", "--seed", "3"])
    assert len(fractions) == 10 and numbers == compose_run.numbers
    assert numbers["hmc_acceptance"] == pytest.approx(sum(fractions) / 10)
    assert 0 < numbers["hmc_acceptance"] <= 1


def test_jem_smoke_images_have_a_bar_across_for_class_0_and_down_for_class_1():
    images, labels = load_example("jem_ood.py").synthetic_digits(
        64, torch.Generator().manual_seed(0))
    assert images.shape == (64, 1, 28, 28) and sorted(set(labels.tolist())) == [0, 1]
    bright = images[:, 0] == 1
    for bar, label in zip(bright, labels.tolist()):
        rows, columns = bar.nonzero(as_tuple=True)
        extent = (int(rows.max() - rows.min()) + 1, int(columns.max() - columns.min()) + 1)
        assert len(rows) == 80 and extent == ((4, 20) if label == 0 else (20, 4))
        assert 4 <= min(rows.min(), columns.min()) and max(rows.max(), columns.max()) <= 23
    dark = images[:, 0][~bright]
    assert dark.amin() >= -1 and dark.amax() < -0.9


@pytest.fixture(scope="module")
def jem_run(tmp_path_factory):
    """examples/jem_ood.py --smoke --seed 3, with its classifier's first weights kept and its
    fits, training and scores watched."""
    example = load_example("jem_ood.py")
    with pytest.MonkeyPatch.context() as monkeypatch:
        first_weights = keep_first_weights(monkeypatch, example, "digit_classifier")
        fits = watch(monkeypatch, example.DataGaussian, "fit")
        training = watch(monkeypatch, example.HybridTrainer, "fit")
        scores = watch(monkeypatch, example, "score_images")
        out = tmp_path_factory.mktemp("jem") / "numbers.json"
        with torch.random.fork_rng(devices=[]):
            numbers = example.main(["--smoke", "--seed", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == numbers
    images, labels = example.synthetic_digits(96, torch.Generator().manual_seed(3))
    return SimpleNamespace(example=example, numbers=numbers, fits=fits, training=training,
                           scores=scores, first_weights=first_weights, images=images,
                           labels=labels)


def test_jem_trains_on_64_of_its_seeds_images_from_seeded_weights(jem_run):
    [fit] = jem_run.training
    trainer = fit.args[0]
    assert torch.equal(trainer.data, jem_run.images[:64])
    assert torch.equal(trainer.labels, jem_run.labels[:64])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        expected = jem_run.example.digit_classifier(2, width=16).state_dict()
    [weights] = jem_run.first_weights
    assert all(torch.equal(weights[name], value) for name, value in expected.items())


def test_jem_trains_with_sgld_from_a_replay_buffer_of_per_class_gaussians(jem_run):
    [fit] = jem_run.training
    trainer, sampler = fit.args[0], fit.args[0].sampler
    assert fit.args[1] == 10 and trainer.batch_size == 64
    assert fit.kwargs == {"progress": False}  # a smoke run draws no progress bar
    assert trainer.optimizer_settings == {"lr": 0.001, "betas": (0.9, 0.999)}
    assert trainer.energy_l2 == 0.1
    assert trainer.generator.initial_seed() == 3  # batches and chains drawn from --seed
    # SGLD: a gradient step of 1 (step_size^2 / 2), noise 0.01, kept in [-1, 1].
    assert sampler.step_size ** 2 / 2 == pytest.approx(1)
    assert sampler.step_size * sampler.noise_scale == pytest.approx(0.01)
    assert sampler.clamp == (-1.0, 1.0) and sampler.n_steps == 5
    buffer, per_class = trainer.chains, jem_run.fits[0]
    assert (buffer.capacity, buffer.fresh, buffer.init) == (2000, 0.05, per_class.result)
    assert torch.equal(per_class.args[0], trainer.data)
    assert torch.equal(per_class.args[1], jem_run.labels[:64])
    assert per_class.kwargs == {"rank": 16}
    jem = trainer.jem
    assert (jem.px_weight, jem.px_batch, jem.lr_decay) == (0.1, 16, "cosine")


def test_jem_scores_test_and_inverted_digits_with_weights_set_on_training_digits(jem_run):
    on_training, on_test, on_inverted = jem_run.scores
    reference = jem_run.fits[1]
    assert torch.equal(reference.args[0], jem_run.images[:64]) and reference.kwargs == {"rank": 32}
    energy = on_training.args[0]
    assert not energy.training  # scored as the model it is, not in training mode
    for call in jem_run.scores:
        assert call.args[:2] == (energy, reference.result)
    assert torch.equal(on_training.args[2], jem_run.images[:64])
    assert on_training.kwargs == {}
    weights = on_training.result[2]
    assert torch.equal(on_test.args[2], jem_run.images[64:])
    assert torch.equal(on_inverted.args[2], -jem_run.images[64:])
    assert on_test.kwargs == on_inverted.kwargs == {"weights": weights}


def test_jem_reports_test_accuracy_and_how_each_score_ranks_inverted_digits(jem_run):
    logits, inliers, _ = jem_run.scores[1].result
    outliers = jem_run.scores[2].result[1]
    assert logits.shape == (32, 2)
    accuracy = (logits.argmax(1) == jem_run.labels[64:]).float().mean().item()
    expected = {"accuracy": accuracy, **{f"auroc_{name}": auroc(inliers[name], outliers[name])
                                         for name in inliers}}
    assert jem_run.numbers == pytest.approx(expected)


def test_video_smoke_clip_is_a_travelling_wave_in_three_channels():
    clip = load_example("video_recovery.py").synthetic_clip(8, 16)
    assert clip.shape == (3, 8, 16, 16)
    assert 0.7 < clip.abs().amax().item() <= 0.8 + 1e-6  # within the model's [-1, 1]
    assert torch.allclose(clip[1], 0.5 * clip[0]) and torch.equal(clip[2], -clip[0])
    assert not torch.allclose(clip[:, 1], clip[:, 0], atol=0.1)  # it moves from frame to frame
    # 0.8 sin(0.6 x + 0.3 y - 0.5 t): at t=2, y=1, x=3 the phase is 1.8 + 0.3 - 1.0
    assert clip[0, 2, 1, 3].item() == pytest.approx(0.8 * math.sin(1.1), abs=1e-6)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """examples/video_recovery.py --smoke --seed 3, with its energy's first weights kept and its
    fills, recovery and comparison video watched."""
    example = load_example("video_recovery.py")
    folder = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as monkeypatch:
        first_weights = keep_first_weights(monkeypatch, stgconv, "video_energy")
        calls = {name: watch(monkeypatch, example, name) for name in (
            "learned_fill", "apply_fill", "CompletionChain", "recover", "save_comparison")}
        with torch.random.fork_rng(devices=[]):
            numbers = example.main(["--smoke", "--seed", "3", "--json",
                                    str(folder / "made" / "numbers" / "numbers.json"),
                                    "--out", str(folder / "made" / "out")])
    # both output folders are made, parents included
    assert json.loads((folder / "made" / "numbers" / "numbers.json").read_text()) == numbers
    truth = example.synthetic_clip(8, 16)
    known = example.occluded_region(8, 16, 16, size=6, generator=torch.Generator().manual_seed(3))
    return SimpleNamespace(example=example, numbers=numbers, folder=folder, truth=truth,
                           known=known, first_weights=first_weights,
                           **{name: call for name, [call] in calls.items()})


def test_video_recovers_its_seeds_region_from_the_observed_pixels_only(video_run):
    energy, sampler, observed, known = video_run.recover.args
    assert torch.equal(known, video_run.known) and not known.all()
    assert observed[:, ~known].isnan().all()
    assert torch.equal(observed[:, known], video_run.truth[:, known])
    assert energy.reference_sigma == 0.5 and sampler.step_size == 0.015
    settings = video_run.recover.kwargs
    assert (settings["n_chains"], settings["warmup"], settings["average_last"]) == (1, 2, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        expected = stgconv.video_energy("st_small", in_channels=3, reference_sigma=0.5)
    [weights] = video_run.first_weights
    assert all(torch.equal(weights[name], value)
               for name, value in expected.state_dict().items())


def test_video_chain_starts_from_the_learned_fill_and_moves_gently(video_run):
    example = video_run.example
    fills = video_run.learned_fill.args[2]
    shipped = example.load_config(example.QUICK_RECOVERY_CONFIG).recovery.learned.fills
    assert fills == [example.FILLS[name] for name in shipped]
    assert video_run.apply_fill.args[0] is video_run.learned_fill.result[0]
    observed, known = video_run.recover.args[2:]
    filled = video_run.apply_fill.args[3]  # in the order the net was trained on
    assert len(filled) == len(fills) and all(
        torch.equal(tensor, fill(observed, known)) for tensor, fill in zip(filled, fills))
    assert video_run.recover.kwargs["init"] is video_run.apply_fill.result
    completion = video_run.CompletionChain
    assert completion.kwargs["clamp"] == (-1.0, 1.0)
    assert completion.args[0].noise_scale == 0 and completion.args[0].grad_clip == 3000
    assert video_run.recover.kwargs["completion"] is completion.result


def test_video_reports_each_fills_error_on_the_hidden_pixels(video_run):
    example, truth, known = video_run.example, video_run.truth, video_run.known
    observed = video_run.recover.args[2]
    errors = {name: example.missing_mae_255(fill(observed, known), truth, known)
              for name, fill in example.FILLS.items()}
    best = min(errors, key=errors.get)
    stgconv_error = example.missing_mae_255(video_run.recover.result.recovered, truth, known)
    expected = {**{f"error_{name}": error for name, error in errors.items()},
                "error_learned_fill": example.missing_mae_255(video_run.apply_fill.result, truth,
                                                              known),
                "error_stgconv": stgconv_error, "best_classical": best,
                "ratio_to_best_classical": stgconv_error / errors[best]}
    assert video_run.numbers == pytest.approx(expected)
    assert errors[best] < max(errors.values())


def test_video_writes_the_occluded_recovered_and_true_clips_side_by_side(video_run):
    clips, path = video_run.save_comparison.args
    occluded, recovered, truth = clips
    assert torch.equal(occluded, video_run.truth.where(video_run.known, -1.0))
    assert recovered is video_run.recover.result.recovered
    assert torch.equal(truth, video_run.truth)
    assert video_run.save_comparison.kwargs == {"labels": ["occluded", "recovered", "truth"]}
    assert path == video_run.folder / "made" / "out" / "comparison.mp4"
    assert path.stat().st_size > 0


def test_video_learned_fill_and_recovery_draw_from_one_generator_seeded_by_seed(video_run):
    generator = video_run.learned_fill.kwargs["generator"]
    assert generator is video_run.recover.kwargs["generator"]
    assert generator.initial_seed() == 3


def test_video_smoke_trains_a_small_learned_fill_and_energy_briefly(video_run):
    example = video_run.example
    shipped = example.load_config(example.QUICK_RECOVERY_CONFIG).recovery.learned
    settings = video_run.learned_fill.kwargs["settings"]
    assert (settings.iterations, settings.patterns, settings.width, settings.crop_size,
            settings.batch) == (4, 2, 8, 8, 2)
    assert example.replace(settings, iterations=shipped.iterations, patterns=shipped.patterns,
                           width=shipped.width, crop_size=shipped.crop_size,
                           batch=shipped.batch) == shipped
    sampler, train = video_run.recover.args[1], video_run.recover.kwargs["train"]
    assert (sampler.n_steps, sampler.clamp) == (10, (-1.0, 1.0))
    assert (train.n_iterations, train.lr) == (4, 0.001)


class Stop(Exception):
    """Raised by a stubbed step of an example: the run stops there, with that step's arguments."""


def stop(*args, **kwargs):
    raise Stop(args, kwargs)


def test_video_example_reads_70_frames_of_150x150_and_trains_10_iterations(tmp_path,
                                                                           monkeypatch):
    """The data run, down to its settings: a small clip stands in for the file and the run
    stops at the recovery, so no fill is trained."""
    example = load_example("video_recovery.py")
    clip, mask = tmp_path / "clip.avi", tmp_path / "mask.npy"
    clip.write_bytes(b"")
    mask.write_bytes(b"")
    truth = example.synthetic_clip(4, 8)
    known = example.occluded_region(4, 8, 8, size=3, generator=torch.Generator().manual_seed(0))
    reads = []
    monkeypatch.setattr(example, "load_video", lambda *a, **kw: reads.append((a, kw)) or truth)
    monkeypatch.setattr(example, "load_mask",
                        lambda path, **kw: reads.append((path, kw)) or known)
    monkeypatch.setattr(example, "learned_fill", lambda *a, **kw: (None, None))
    monkeypatch.setattr(example, "apply_fill", lambda net, observed, *a: truth)
    monkeypatch.setattr(example, "recover", stop)
    with torch.random.fork_rng(devices=[]), pytest.raises(Stop) as stopped:
        example.main(["--data", str(clip), "--mask", str(mask), "--out", str(tmp_path / "out")])
    assert reads == [((clip,), {"n_frames": 70, "size": 150}),
                     (mask, {"frames": 70, "size": (150, 150)})]
    settings = stopped.value.args[1]
    assert (settings["train"].n_iterations, settings["warmup"], settings["average_last"]) == (
        10, 5, 5)


def test_video_example_learns_its_fill_under_a_logo_the_same_in_every_frame(tmp_path,
                                                                          monkeypatch):
    """One frame's mask (an image) holds in every frame: the learned fill moves it within the
    frame to learn from (stgconv recover's default does), where the example refused it and sent
    the user to a classical start."""
    example = load_example("video_recovery.py")
    clip, mask = tmp_path / "clip.avi", tmp_path / "logo.png"
    clip.write_bytes(b"")
    grey = np.zeros((30, 30), np.uint8)
    grey[3:9, 3:9] = 255
    Image.fromarray(grey).save(mask)
    monkeypatch.setattr(example, "load_video", lambda *a, **kw: torch.zeros(3, 70, 150, 150))
    # Each classical fill stands in as zeros: no minutes of fills before the learned one.
    monkeypatch.setattr(example, "FILLS", {name: lambda video, known: video.nan_to_num(0.0)
                                           for name in example.FILLS})
    monkeypatch.setattr(example, "learned_fill", stop)
    with pytest.raises(Stop) as stopped:
        example.main(["--data", str(clip), "--mask", str(mask), "--out", str(tmp_path / "out")])
    known = stopped.value.args[0][1]
    assert bool((known == known[:, :1]).all())  # the same pixels in every frame
    assert not bool(known[:, :, 15:45, 15:45].any()) and bool(known[:, :, 50:, 50:].all())


@pytest.mark.parametrize("hidden, says", [
    # Not "nothing to recover": all of it is to recover, from nothing observed.
    ((slice(None), slice(None)), "hides every pixel of the clip: there is nothing to recover "
     "it from"),
    ((slice(0, 0), slice(0, 0)), "hides no pixel of the clip: there is nothing to recover"),
    ((slice(5, 145), slice(5, 145)), "choose a classical recovery.init for it (stgconv recover "
     "--set recovery.init=biharmonic --set recovery.holdout=0)"),
])
def test_video_example_refuses_a_mask_its_learned_fill_cannot_learn_from(hidden, says, tmp_path,
                                                                         monkeypatch, capsys):
    """A mask hiding nothing or everything, or the same 140x140 of every 150x150 frame (no
    offset moves it onto observed pixels): one line before the classical fills' minutes; the
    first two were told they hide "the same pixels in every frame"."""
    example = load_example("video_recovery.py")
    clip, mask = tmp_path / "clip.avi", tmp_path / "mask.npy"
    clip.write_bytes(b"")
    missing = np.zeros((70, 150, 150), np.uint8)
    missing[:, hidden[0], hidden[1]] = 1
    np.save(mask, missing)
    monkeypatch.setattr(example, "load_video", lambda *a, **kw: torch.zeros(3, 70, 150, 150))
    monkeypatch.setattr(example, "FILLS", {"never": stop})
    with pytest.raises(SystemExit) as info:
        example.main(["--data", str(clip), "--mask", str(mask), "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(says)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("n_shapes, n_held_out", [(443, 43), (47, 4), (5, 1)])
def test_voxel_example_holds_out_43_shapes_or_a_tenth_and_trains_15_iterations(
        tmp_path, monkeypatch, n_shapes, n_held_out):
    """The shared 443 beds keep their last 43 held out; a user's file of 43 shapes or fewer
    left nothing to learn from (a NaN mean, a traceback)."""
    example = load_example("voxel_super_resolution.py")
    beds = tmp_path / "beds.npz"
    beds.write_bytes(b"")
    shapes = example.synthetic_shapes(n_shapes, 16, torch.Generator().manual_seed(0))
    monkeypatch.setattr(example, "load_voxels", lambda path: path)
    monkeypatch.setattr(example, "to_tensor", lambda path: shapes if path == beds else None)
    monkeypatch.setattr(stgconv.Trainer, "fit", stop)
    with torch.random.fork_rng(devices=[]), pytest.raises(Stop) as stopped:
        example.main(["--data", str(beds), "--out", str(tmp_path / "out")])
    trainer, iterations = stopped.value.args[0]
    learned_from = shapes[:n_shapes - n_held_out]
    assert iterations == 15 and torch.equal(trainer.data, learned_from - learned_from.mean())


def test_video_example_without_its_mask_says_so_in_one_line(tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLES / "video_recovery.py"))["main"]
    clip, missing = tmp_path / "clip.avi", tmp_path / "no_such_mask.npy"
    clip.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(clip), "--mask", str(missing), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"error: {missing} not found: pass --mask PATH, or --smoke")
    assert list(tmp_path.iterdir()) == [clip]


def test_voxel_smoke_shapes_are_solid_boxes_one_deeper_in_w_than_in_d():
    shapes = load_example("voxel_super_resolution.py").synthetic_shapes(
        64, 16, torch.Generator().manual_seed(0))
    assert shapes.shape == (64, 1, 16, 16, 16)
    assert set(shapes.unique().tolist()) == {0.0, 1.0}
    for shape in shapes[:, 0]:
        d, h, w = shape.nonzero(as_tuple=True)
        low, depth = int(d.min()), int(d.max() - d.min()) + 1
        assert (int(h.min()), int(h.max())) == (low, 15 - low)  # centred along H
        assert (int(w.min()), int(w.max())) == (1, depth + 1)
        assert len(d) == depth * (16 - 2 * low) * (depth + 1)  # solid


@pytest.fixture(scope="module")
def voxel_run(tmp_path_factory):
    """examples/voxel_super_resolution.py --smoke --seed 3, with its energy's first weights kept
    and its training and super-resolution watched."""
    example = load_example("voxel_super_resolution.py")
    folder = tmp_path_factory.mktemp("voxel")
    with pytest.MonkeyPatch.context() as monkeypatch:
        first_weights = keep_first_weights(monkeypatch, stgconv, "voxel_energy")
        training = watch(monkeypatch, stgconv.Trainer, "fit")
        resolved = watch(monkeypatch, example, "super_resolve_batch")
        with torch.random.fork_rng(devices=[]):
            numbers = example.main(["--smoke", "--seed", "3", "--json",
                                    str(folder / "made" / "numbers.json"),
                                    "--out", str(folder / "out")])
    assert json.loads((folder / "made" / "numbers.json").read_text()) == numbers
    shapes = example.synthetic_shapes(12, 16, torch.Generator().manual_seed(3))
    [training], [resolved] = training, resolved
    return SimpleNamespace(example=example, numbers=numbers, folder=folder, train=shapes[:8],
                           test=shapes[8:], first_weights=first_weights, training=training,
                           resolved=resolved)


def test_voxel_trains_on_centred_occupancy_from_seeded_weights(voxel_run):
    trainer, iterations = voxel_run.training.args
    mean = voxel_run.train.mean().item()
    assert iterations == 2 and torch.equal(trainer.data, voxel_run.train - mean)
    assert trainer.sampler.clamp == (-mean, 1 - mean) and trainer.sampler.noise_scale == 0
    assert trainer.chains.factor == (4, 4, 4)
    assert trainer.batch_size == 4
    assert trainer.optimizer_settings == {"lr": 0.01, "betas": (0.5, 0.999)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        expected = stgconv.voxel_energy("desc64_small", size=16)
    [weights] = voxel_run.first_weights
    assert all(torch.equal(weights[name], value)
               for name, value in expected.state_dict().items())


def test_voxel_super_resolves_the_held_out_shapes_block_means(voxel_run):
    energy, chain, low, factor = voxel_run.resolved.args
    assert factor == 4 and low.shape == (4, 1, 4, 4, 4)
    assert torch.equal(low, voxel_run.example.downsample(voxel_run.test, 4))
    assert chain.clamp == voxel_run.training.args[0].sampler.clamp and chain.noise_scale == 0
    assert chain.n_steps == 5


def test_voxel_training_and_super_resolution_draw_from_one_generator_seeded_by_seed(voxel_run):
    generator = voxel_run.training.args[0].generator
    assert generator is voxel_run.resolved.kwargs["generator"]
    assert generator.initial_seed() == 3


def test_voxel_scores_every_upsampler_and_the_chain_against_the_held_out_shapes(voxel_run):
    example, test = voxel_run.example, voxel_run.test
    low, ours = voxel_run.resolved.args[2], voxel_run.resolved.result
    expected = {f"iou_{name}": example.voxel_iou(up(low, 4), test).mean().item()
                for name, up in example.UPSAMPLERS.items()}
    expected |= {"iou_stgconv": example.voxel_iou(ours, test).mean().item(), "n_train": 8,
                 "n_test": 4}
    assert voxel_run.numbers == pytest.approx(expected)
    assert voxel_run.numbers["iou_stgconv"] < 1


def test_voxel_saves_every_super_resolved_shape(voxel_run):
    saved = np.load(voxel_run.folder / "out" / "super_resolved.npy")
    assert saved.shape == (4, 16, 16, 16)
    assert np.array_equal(saved, voxel_run.resolved.result[:, 0].numpy())


def test_jem_accuracy_is_the_share_of_test_images_whose_largest_logit_is_their_label(
        monkeypatch):
    """Scores made up (and no training): 24 of the 32 test images' largest logit is their
    label; the inverted images score higher than the test images on the one score."""
    example = load_example("jem_ood.py")
    labels = example.synthetic_digits(96, torch.Generator().manual_seed(0))[1][64:]
    logits = torch.nn.functional.one_hot(labels, 2).float()
    logits[24:] = 1 - logits[24:]
    made_up = iter([(logits, {"one": torch.zeros(64)}, {}),
                    (logits, {"one": torch.arange(32.0)}, {}),
                    (logits, {"one": torch.arange(32.0) + 16}, {})])
    monkeypatch.setattr(example.HybridTrainer, "fit", lambda self, iterations, **kw: None)
    monkeypatch.setattr(example, "score_images", lambda *args, **kwargs: next(made_up))
    with torch.random.fork_rng(devices=[]):
        numbers = example.main(["--smoke"])
    assert numbers == {"accuracy": 0.75,
                       "auroc_one": auroc(torch.arange(32.0), torch.arange(32.0) + 16)}
    assert numbers["auroc_one"] < 0.5
