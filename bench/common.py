"""What the bench scripts share: the two Langevin loops they compare, FLOP counting, interleaved
timing, the shared command-line options and the environment a table was measured in.

Import it before torch (``from bench import common`` as a script's first import): it sets
``OMP_WAIT_POLICY``, which libgomp reads only once, when torch loads it.
"""

from __future__ import annotations

import os
import sys

# Measured on 2 shared CPU cores: OpenMP worker threads that spin while idle (libgomp's
# default) fight other processes and each other for the cores, which made every step 1.5-3.4x
# slower and the timings erratic. libgomp reads OMP_WAIT_POLICY once, when `import torch` loads
# it, so setting it here, before that import, is enough (no re-exec needed); an explicit value
# in the environment wins. When a bench's main() is called in a process that has already
# imported torch (a test), setting it would change nothing, so the inherited policy is left and
# reported.
TORCH_ALREADY_LOADED = "torch" in sys.modules
if not TORCH_ALREADY_LOADED:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, NamedTuple, Sequence, TypeVar  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from stgconv.checks import MAX_STEP_SIZE, check_output, npz_array, open_npz  # noqa: E402
from stgconv.cli import DefaultsFormatter, seed_number  # noqa: E402
from stgconv.config import ExperimentConfig, load_config  # noqa: E402
from stgconv.distributed import launched_world_size  # noqa: E402
from stgconv.evaluation import quality  # noqa: E402
from stgconv.io.atomic import atomic_write_json  # noqa: E402
from stgconv.io.image import from_levels  # noqa: E402
from stgconv.mcmc import Langevin  # noqa: E402
from stgconv.mcmc.execution import Execution  # noqa: E402
from stgconv.modalities import Modality, modality_of  # noqa: E402
from stgconv.types import EnergyFn  # noqa: E402

CLAMP = (-1.0, 1.0)


def eager_langevin(
    energy: EnergyFn, x0: Tensor, *, n_steps: int, step_size: float, generator: torch.Generator
) -> Tensor:
    """The reference: the Langevin loop written out by hand, ``x0`` ``(B, *S)`` -> ``(B, *S)``."""
    x = x0.detach().clone()
    for _ in range(n_steps):
        x.requires_grad_(True)
        e = energy(x)
        (grad,) = torch.autograd.grad(e.sum(), x)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = (x - 0.5 * step_size**2 * grad + step_size * noise).detach().clamp(*CLAMP)
    return x


def stgconv_langevin(
    energy: EnergyFn, x0: Tensor, *, n_steps: int, step_size: float, generator: torch.Generator,
    precision: str = "auto",
) -> Tensor:
    """The library sampler with the same settings as :func:`eager_langevin` (``precision`` as
    :class:`stgconv.mcmc.Langevin` takes it; the eager loop always stays fp32)."""
    sampler = Langevin(n_steps=n_steps, step_size=step_size, clamp=CLAMP, precision=precision)
    return sampler.run(energy, x0, generator=generator)


Variant = Callable[..., Tensor]
VARIANTS: dict[str, Variant] = {"stgconv": stgconv_langevin, "eager": eager_langevin}


def step_flops(energy: EnergyFn, x: Tensor) -> int:
    """FLOPs of one Langevin step's network work: energy forward + gradient w.r.t. ``x`` only."""
    x = x.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        e = energy(x)
        # backward(inputs=) prunes to the input gradient just as autograd.grad does;
        # autograd.grad on a leaf trips FlopCounterMode's module hooks (torch 2.14).
        e.sum().backward(inputs=[x])
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Result = TypeVar("Result")


def interleaved(
    runs: dict[str, Callable[[], Result]], *, repeats: int, warmup: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, Result]]:
    """Seconds of each of ``repeats`` timed calls of every run (device-synchronised), after
    ``warmup`` untimed calls of each, and what each run returned last."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    last: dict[str, Result] = {}
    names = list(runs)
    for rep in range(repeats):
        # Interleaved, the order flipped every repeat (A B, B A, A B, ...): a burst of load from
        # another process lands on neighbouring runs of both variants, and a slow drift in the
        # machine's speed does not always favour the one that runs first.
        for name in names if rep % 2 == 0 else names[::-1]:
            synchronize(device)
            start = time.perf_counter()
            last[name] = runs[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds, last


def timing_summary(ms: dict[str, list[float]], unit: str) -> dict:
    """Median, best and every run of ``ms["stgconv"]`` and ``ms["eager"]`` (ms per ``unit``)."""
    return {
        f"ms_per_{unit}": statistics.median(ms["stgconv"]),
        f"eager_ms_per_{unit}": statistics.median(ms["eager"]),
        # Best-of: on a machine shared with other work, the run least disturbed by it.
        f"ms_per_{unit}_min": min(ms["stgconv"]),
        f"eager_ms_per_{unit}_min": min(ms["eager"]),
        f"ms_per_{unit}_runs": ms["stgconv"],
        f"eager_ms_per_{unit}_runs": ms["eager"],
    }


def speedups(ms: dict[str, list[float]]) -> tuple[float, float]:
    """eager / stgconv: the ratio of the medians, and the median of the per-repeat ratios of the
    two runs timed back to back (less sensitive to load that changes between repeats)."""
    ratio = statistics.median(ms["eager"]) / statistics.median(ms["stgconv"])
    paired = statistics.median([e / s for e, s in zip(ms["eager"], ms["stgconv"])])
    return ratio, paired


@dataclass(frozen=True)
class Timing:
    """How every pair of variants is timed: chains of ``n_steps`` Langevin steps of
    ``step_size``; ``warmup`` untimed, then ``repeats`` timed runs of each; on ``device``;
    ``seed`` for the weights, the inputs and the noise."""

    n_steps: int
    step_size: float
    repeats: int
    warmup: int
    device: torch.device
    seed: int
    precision: str = "auto"


def langevin_step_stats(energy: EnergyFn, x0: Tensor, timing: Timing) -> dict:
    """Both Langevin variants on ``energy`` from ``x0`` ``(B, *S)``, repeats interleaved: the
    settings, ms per step, GFLOP/s, the speedups and how far apart the two final states are."""
    flops = step_flops(energy, x0)
    generators = {name: torch.Generator(device=x0.device) for name in VARIANTS}

    def chain(name: str) -> Callable[[], Tensor]:
        def run() -> Tensor:
            generator = generators[name].manual_seed(timing.seed)
            extra = {"precision": timing.precision} if name == "stgconv" else {}
            return VARIANTS[name](
                energy, x0, n_steps=timing.n_steps, step_size=timing.step_size,
                generator=generator, **extra,
            )

        return run

    seconds, finals = interleaved(
        {name: chain(name) for name in VARIANTS},
        repeats=timing.repeats, warmup=timing.warmup, device=timing.device,
    )
    ms = {name: [1e3 * t / timing.n_steps for t in ts] for name, ts in seconds.items()}
    times = timing_summary(ms, "step")
    speedup, paired = speedups(ms)
    sampler = Langevin(n_steps=timing.n_steps, step_size=timing.step_size, clamp=CLAMP,
                       precision=timing.precision)
    return {
        "n_steps": timing.n_steps,
        "step_size": timing.step_size,
        "precision": timing.precision,
        # What "auto" chose for this net, shape and device (the others choose themselves).
        "ran_in": describe_execution(sampler.execution(energy, x0)),
        "cuda_graph": x0.device.type == "cuda",
        "repeats": timing.repeats,
        **times,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / 1e9 / (times["ms_per_step"] / 1e3),
        "eager_gflops": flops / 1e9 / (times["eager_ms_per_step"] / 1e3),
        "speedup_vs_eager": speedup,
        "speedup_paired": paired,
        # Same seed, same noise stream: the two chains must agree up to float rounding, which
        # shows both variants did the same work.
        "max_abs_diff": float((finals["stgconv"] - finals["eager"]).abs().max()),
    }


def describe_execution(execution: Execution) -> str:
    """``"fp32"``, ``"bf16"`` or ``"bf16+channels_last"``."""
    text = "bf16" if execution.bf16 else "fp32"
    return text if execution.layout is None else f"{text}+channels_last"


class _Repeatable(argparse.Action):
    """An option of several values that a repeat adds to, its default standing only where the
    option is left out: argparse's own ``nargs="+"`` kept the last, so ``--clips flag --clips
    fire_pot`` ran fire_pot alone without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        earlier = getattr(namespace, self.dest, None)
        earlier = [] if earlier is None or earlier is self.default else list(earlier)
        setattr(namespace, self.dest, earlier + list(values))


class _BenchParser(argparse.ArgumentParser):
    """A parser that refuses a launch by ``torchrun`` with several processes: each process ran
    the whole bench, on the same cores as the others (timing each other), printed its table
    and wrote the same ``--json``, the last writer's rows kept without a word. A ``--worker``
    (``bench/scaling.py``'s training process) is the one that torchrun is meant to start.
    Options of several values add up when repeated (:class:`_Repeatable`)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("nargs") in ("+", "*") and "action" not in kwargs:
            kwargs["action"] = _Repeatable
        return super().add_argument(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extra = super().parse_known_args(args, namespace)
        if not getattr(parsed, "worker", False):
            try:
                size = launched_world_size()
            except ValueError as err:
                self.error(str(err))
            if size > 1:
                self.error(f"a bench runs as one process, but torchrun started {size} "
                           f"(WORLD_SIZE={size}): run it with python, not torchrun")
        return parsed, extra


def argument_parser(doc: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of a bench script: described by its docstring's first paragraph, its
    ``--help`` giving every option's default as the ``stgconv`` command's does
    (:class:`~stgconv.cli.DefaultsFormatter`), and refusing an abbreviated option (as the
    ``stgconv`` command does), which would break, or mean another option, once a later version
    adds one of the same start, and a launch as several processes (:class:`_BenchParser`).
    ``kwargs`` go to the parser."""
    kwargs.setdefault("formatter_class", DefaultsFormatter)
    return _BenchParser(description=doc.split("\n\n")[0], allow_abbrev=False, **kwargs)


class RawDescriptionDefaultsFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """:func:`argument_parser`'s defaults in the help, for a description laid out by hand."""


def add_timing_arguments(parser: argparse.ArgumentParser, *, steps: int, repeats: int,
                         precision: bool = True) -> None:
    """The options every bench shares, after its own shape options; ``precision=False`` leaves
    out ``--precision``, for a bench that times every precision itself (``levers.py``), where
    the option was taken and ignored."""
    parser.add_argument("--steps", type=int, default=steps, help="K, Langevin steps per timed run")
    parser.add_argument("--step-size", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per variant first")
    parser.add_argument(
        "--threads", type=thread_count, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seed", type=seed_number, default=0)
    if precision:
        parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                            help="stgconv's Langevin precision (default: what a config without "
                            "the key runs; the eager loop is always fp32)")
    parser.add_argument("--json", metavar="FILE", type=json_path,
                        help="also write the rows as a JSON list")


def parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, quick: dict[str, Any],
    generated: Sequence[str] = (),
) -> argparse.Namespace:
    """``parser.parse_args(argv)``, for a parser with a ``--quick`` flag. With ``--quick``,
    ``quick``'s smoke-run settings (option name -> value) replace the defaults, so an option
    given explicitly still wins over them; ``generated`` names the options whose input
    ``--quick`` generates itself (``"data"``: its own data), and giving one of them
    with ``--quick`` exits through ``parser.error`` (it would be ignored)."""
    args = parser.parse_args(argv)
    if not args.quick:
        return args
    defaults = {name: parser.get_default(name) for name in generated}
    unset = object()  # no value given on the command line can be this object
    parser.set_defaults(**quick, **dict.fromkeys(generated, unset))
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in generated
             if getattr(args, name) is not unset]
    if given:
        parser.error(f"--quick generates its own inputs; {', '.join(given)} cannot go with it")
    vars(args).update(defaults)
    return args


def refuse_sets_of_options(parser: argparse.ArgumentParser, items: Sequence[str],
                           by_option: dict[str, str]) -> None:
    """Exit through ``parser.error`` on a ``--set KEY=VALUE`` of ``items`` whose key the bench
    sets for every run from one of its own options (``by_option``: key -> option): the two
    would fight, one silently replacing the other."""
    for item in items:
        key = item.partition("=")[0].strip()
        if key in by_option:
            parser.error(f"--set {item}: every run's {key} is {by_option[key]}'s; "
                         f"give {by_option[key]}")


def read_config(parser: argparse.ArgumentParser, path: str, sets: Sequence[str],
                own: Sequence[str] = (), *, modality: Modality) -> ExperimentConfig:
    """``load_config(path, [*sets, *own])`` for a bench's ``--config path``, its ``--set`` items
    ``sets`` and the bench's ``own`` overrides, or exit through ``parser.error`` naming what is
    at fault once. The file is read alone first, so that a bad value of a ``--set`` is not
    blamed on ``--config``. The library names the file where it is missing, a folder or holds
    an unknown key, and the ``--set`` of an unknown key: the file is added to the message only
    where it does not (it was named twice). A config of another modality than ``modality`` is
    refused: its network is no model of the bench's data (an image config in the video
    recovery was refused for the clips' --frames and --size)."""
    try:
        load_config(path)
    except (FileNotFoundError, ValueError) as err:
        # The path as a word of the message: a short name ("c") is inside many other words.
        named = re.search(rf"(^|\s){re.escape(path)}(:|\s|$)", str(err))
        parser.error(f"--config: {err}" if named else f"--config {path}: {err}")
    try:
        config = load_config(path, [*sets, *own])
    except ValueError as err:
        if str(err).startswith("--set "):
            parser.error(str(err))
        parser.error(f"--set {' '.join(sets)}: {err}" if sets else f"--config {path}: {err}")
    if modality_of(config) is not modality:
        parser.error(f"--config {path} has data.kind {config.data.kind!r} "
                     f"({modality_of(config).name} data); this bench needs data.kind "
                     f"{' or '.join(map(repr, modality.data_kinds))}")
    return config


def check_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, positive: Sequence[str]
) -> Timing:
    """Reject bad values (``positive`` names the options that must be >= 1), apply ``--threads``
    and return the timing settings; exits through ``parser.error`` on a bad value or a missing
    GPU."""
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if not 0 < args.step_size < math.inf:  # the sampler refuses it, after the networks are built
        parser.error(f"--step-size must be a positive number, got {args.step_size}")
    if args.step_size > MAX_STEP_SIZE:
        parser.error(f"--step-size must be at most {MAX_STEP_SIZE:g}, got {args.step_size}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return Timing(
        n_steps=args.steps,
        step_size=args.step_size,
        repeats=args.repeats,
        warmup=args.warmup,
        device=torch.device(args.device),
        seed=args.seed,
        precision=getattr(args, "precision", "auto"),  # absent where every one is timed
    )


def environment(timing: Timing) -> dict:
    """What a row was measured on; every row of a table gets these keys."""
    return {
        "device": str(timing.device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        # False when torch was imported before this module: the policy is then whatever the
        # process started with, and the value above may not be what libgomp read.
        "omp_wait_policy_set_by_script": not TORCH_ALREADY_LOADED,
        "cpu_count": os.cpu_count(),
    }


class Column(NamedTuple):
    """A table column: ``title`` over the values ``row[key]``, each written with the format spec
    ``number`` then ``suffix`` (a list as ``2x3x64``) and aligned by ``align`` (``"<13"``)."""

    title: str
    key: str
    align: str
    number: str = ""
    suffix: str = ""

    def cell(self, row: dict) -> str:
        value = row[self.key]
        if isinstance(value, list):
            text = "x".join(str(v) for v in value)
        else:
            text = f"{value:{self.number}}{self.suffix}"
        return f"{text:{self.align}}"


# The Langevin step columns of every bench's table.
STEP_COLUMNS = [
    Column("net", "net", "<13"),
    Column("batch", "batch", ">5"),
    Column("input shape", "shape", "<18"),
    Column("stgconv ms/step", "ms_per_step", ">15", ".2f"),
    Column("eager ms/step", "eager_ms_per_step", ">13", ".2f"),
    Column("GFLOP/s", "gflops", ">8", ".1f"),
    Column("speedup", "speedup_vs_eager", ">8", ".2f", "x"),
    Column("paired", "speedup_paired", ">7", ".2f", "x"),
]


def format_table(
    title: str, notes: str, columns: Sequence[Column], rows: Sequence[dict], env: dict
) -> str:
    """``# title, <environment>``, ``# notes``, the header, a rule and a line per row."""
    return text_table([f"# {title}, {describe(env)}", f"# {notes}"], columns, rows)


def text_table(comments: Sequence[str], columns: Sequence[Column], rows: Sequence[dict]) -> str:
    """The ``comments`` lines, the columns' header, a rule and a line per row."""
    header = " ".join(f"{column.title:{column.align}}" for column in columns)
    lines = [*comments, header, "-" * len(header)]
    lines += [" ".join(column.cell(row) for column in columns) for row in rows]
    return "\n".join(lines)


def describe(env: dict) -> str:
    """The table header's account of where it was measured."""
    if env["omp_wait_policy_set_by_script"]:
        policy = f"OMP_WAIT_POLICY={env['omp_wait_policy']} (the script sets PASSIVE unless given)"
    else:
        policy = f"OMP_WAIT_POLICY={env['omp_wait_policy']} (inherited: torch was loaded first)"
    return (
        f"{env['device']}, torch {env['torch']}, {env['threads']} threads, {policy}, "
        f"{env['cpu_count']} CPUs visible"
    )


def json_path(text: str) -> str:
    """``--json FILE``, checked when the options are read: a bench that runs for minutes must not
    fail at the end on its output (a folder or a named pipe there, a file above it: the
    commands' own :func:`~stgconv.checks.check_output`). Unlike the commands, a bench does not
    make the folder: one that does not exist is refused."""
    path = Path(text)
    try:
        # The text, not the Path: Path drops the final '/' by which check_output tells a folder
        # meant (--json out/ wrote the file out).
        check_output(text, "the file", folder=False)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {path.parent} does not exist")
    return text


def png_path(text: str) -> str:
    """A picture option (``--grid FILE``): as :func:`json_path`, and named ``.png``, which the
    picture writers refuse otherwise (after the bench's work)."""
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"a picture is written as PNG: its name must end in "
                                         f".png, got {text}")
    return json_path(text)


def output_folder(text: str) -> str:
    """A folder option for outputs (``--samples DIR``), checked when the options are read: it
    is a folder, or one can be made there (no file in the way on the path to it)."""
    path = Path(text)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise argparse.ArgumentTypeError(f"{folder} is a file, not a folder")
            break
    return text


REPOSITORY = Path(__file__).resolve().parents[1]


def from_repository(path: str | Path) -> str:
    """``path`` relative to the repository, as a bench's ``--help`` shows a default file
    (``../shared/data/image/mnist.npz``): the absolute path showed where this checkout lies,
    which is nothing to a reader of the help on another machine, or of a log."""
    return os.path.relpath(path, REPOSITORY)


def count(minimum: int) -> Callable[[str], int]:
    """An integer option of at least ``minimum``, checked when the options are read."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def thread_count(text: str) -> int:
    """A ``--threads`` value: an integer from 1 to the machine's logical CPUs
    (``os.cpu_count()``), checked when the options are read, before any work. Threads beyond
    the CPUs only take turns on them, so they time nothing a bench wants to know; and a
    mistyped count (99999) ended in an out-of-memory traceback once torch started them."""
    threads = count(1)(text)
    cpus = os.cpu_count()  # None where the platform cannot tell: no bound then
    if cpus is not None and threads > cpus:
        raise argparse.ArgumentTypeError(
            f"must be at most {cpus}, this machine's logical CPUs (more threads only take "
            f"turns on them), got {threads}")
    return threads


def random_subset(data: Tensor, n: int, *, seed: int) -> Tensor:
    """``n`` items of ``data`` ``(N, ...)`` drawn at random without replacement (all of them,
    shuffled, when ``N <= n``), the same for the same ``seed``."""
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data[pick.to(data.device)]


def read_pixels(path: Path) -> Tensor:
    """Images or clips that ``stgconv synthesize`` wrote to ``path`` (``synthesized.npy``: grey
    levels 0-255, the data's range) as the models see them, in ``[-1, 1]``."""
    return from_levels(torch.from_numpy(np.load(path)))


def data_spread(data: Tensor, n: int, *, draws: int = 10) -> float:
    """The spread (:func:`stgconv.evaluation.quality.spread`) of ``n`` items of ``data`` drawn
    at random, averaged over ``draws`` draws (seeds 0, 1, ...): what ``n`` samples' spread is
    compared with. As many items as samples, since the spread grows with the count on sparse
    data (rare strokes or voxels show up: 32 chairs spread 0.06-0.07, 128 about 0.08); at
    random, since files come in order (the first half of the animal frames is five of the ten
    animals); averaged, since one draw of 32 animal frames spreads anywhere in 0.18-0.22."""
    return statistics.fmean(quality.spread(random_subset(data, n, seed=seed))
                            for seed in range(draws))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (never pickles); a ``ValueError`` naming the
    file when it is missing or not a readable archive (numpy's own suggests unpickling it)."""
    if path.is_dir():  # "not found" would send the user looking for a file that is there
        raise ValueError(f"{path} is a folder, not an .npz file")
    if not path.is_file():
        raise ValueError(f"{path} not found")
    with open_npz(path) as archive:
        return {key: npz_array(archive, key, path) for key in archive.files}


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a run as it resolved them (defaults and ``--quick``'s values filled in),
    for its JSON rows: two runs' files say how the runs differed (the rows of most benches held
    no seed, no --set, no clip size). Paths as text; a number JSON cannot hold (``--budget-s``'s
    default, inf: no limit) as its text; the JSON file's own name left out."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, Path) or isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value

    return {name: plain(value) for name, value in vars(args).items()
            if name not in ("json", "json_path")}


def report(table: str, rows: Sequence[dict], args: argparse.Namespace) -> None:
    """Write the rows as a JSON list to ``args.json`` when it is set, each with the run's
    :func:`options` (atomically: never half a table under the real name), and print the table,
    whichever of the two fails: a print that fails (a reader of the output gone, ``| head``
    under PYTHONUNBUFFERED=1) must not cost the run's rows, nor a write that fails (a full
    disk) its table."""
    try:
        if args.json:
            settings = options(args)
            atomic_write_json(args.json, [{**row, "options": settings} for row in rows])
    finally:
        print(table)
