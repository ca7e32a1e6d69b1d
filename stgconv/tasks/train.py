"""``stgconv train``: fit the configured model (one net, or one per grid) and write its run
folder."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from stgconv import distributed
from stgconv.build import (
    build_chain_start,
    grid_samplers,
    grid_sizes,
    model_clamp,
    model_sampler,
    multigrid_section,
    seeded_weights,
)
from stgconv.checkpoint import FILENAME, CheckpointError, forked_global_rng, previous_path
from stgconv.checks import check_output, reading
from stgconv.config import (
    ExperimentConfig,
    ModelConfig,
    config_to_dict,
    example_shape,
    fill_model,
    initializer_factors,
    resolve_device,
    save_config,
)
from stgconv.cooperative import CooperativeTrainer
from stgconv.data.image import load_npz_labels
from stgconv.distributed import World, digest
from stgconv.energy.base import ConvNetEnergy
from stgconv.energy.classifier import CLASSIFIER_ARCHS
from stgconv.generator import ConvGenerator
from stgconv.initializer import Initializer, InitializerTrainer
from stgconv.io.atomic import WriteError, remove_temporaries, write_error
from stgconv.jem import HybridTrainer
from stgconv.mcmc import DataGaussian
from stgconv.modalities import Modality, modality_of
from stgconv.ops import pyramid
from stgconv.train import MultiGridTrainer, Trainer

try:
    import fcntl
except ImportError:  # Windows: msvcrt locks the run folder instead (_lock)
    fcntl = None
    import msvcrt

# What a run writes into its folder: `overwrite` removes exactly these, and any of them marks
# the folder as holding a run. The pictures by their exact names (observed.png,
# samples_000100.gif, samples_pyramid.png, ...): a user's own samples_cat.png is not the run's.
RUN_FILES = (FILENAME, previous_path(FILENAME).name, "config.yaml", "tb")
RUN_PICTURES = re.compile(r"(observed|samples)(_pyramid|_[0-9]{6,})?\.(png|gif|mp4|npy)")
# Where the other commands write into a run folder by default (`stgconv synthesize RUN` writes
# RUN/synthesis, ...), by command: the model's outputs, removed with it by `overwrite` so that
# none is taken for the new model's.
RUN_OUTPUTS = {"synthesize": "synthesis", "reconstruct": "reconstruction",
               "interpolate": "interpolation", "super-resolve": "super_resolution",
               "recover-shape": "recovered_shapes"}
LOCK = ".lock"


def train(config: ExperimentConfig, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train the configured model; returns the run folder.

    The folder gets ``config.yaml`` (resolved), ``checkpoint.pt``, ``observed``, ``samples_<it>``
    every ``train.sample_every`` iterations and ``samples`` (the final chains) as the modality
    shows them (PNG grids for images, GIFs and a final MP4 for videos, renders and ``.npy``
    occupancy for voxels), and TensorBoard logs under ``tb/``. A multi-grid experiment
    (``multigrid`` section) trains one model per grid; ``observed``/``samples`` then show the
    finest grid, and ``observed_pyramid``/``samples_pyramid`` every grid. With ``resume``,
    training continues from the folder's checkpoint up to ``train.n_iterations`` (a run already
    there is refused: nothing would train); it rewrites ``config.yaml`` and ``observed`` only
    once it has written a checkpoint, so a resume that fails leaves the folder as it was; a new
    run that fails before its first checkpoint or sample removes what it wrote, for the same
    reason. A folder that already holds a run is
    refused (:class:`ExistingRun`) unless ``resume`` or ``overwrite`` (which first removes the
    old run's files and what the other commands wrote there by default, ``RUN_OUTPUTS``) is set.

    The folder has one owner at a time: ``.lock`` names the process training into it, and a
    second run into the same folder is refused while that process lives (the lock is an
    ``flock``, which the system drops however its process ends, so a killed run's folder is
    free at once). Temporary files a killed run left behind are removed on the next run.
    Checkpoints keep the one they replace as ``checkpoint_previous.pt``, and a run that
    diverges stops without saving the diverged model (:meth:`stgconv.train.FitLoop.fit`).

    Launched by ``torchrun`` (several processes), the processes train one model together
    (:mod:`stgconv.distributed`): ``train.batch_size`` is each process's batch, and rank 0
    writes the folder, shows ``samples`` from its own chains and draws the progress bar.
    """
    if resume and overwrite:
        raise ValueError("resume continues the run in the folder and overwrite replaces it: "
                         "choose one")
    world = distributed.from_environment(config.device)
    try:
        with _terminated_as_exit(world is not None):
            out = _train(config, world, resume=resume, overwrite=overwrite, progress=progress)
    except BaseException:
        # Not shutdown's barrier: after a failure torchrun stops the other processes, and it
        # would wait for them forever.
        distributed.abandon(world)
        raise
    distributed.shutdown(world)
    return out


def _train(config: ExperimentConfig, world: World | None, *, resume: bool, overwrite: bool,
           progress: bool) -> Path:
    out = Path(config.out_dir)
    if world is not None and not world.is_main:  # rank 0 owns and writes the folder
        return _fit(config, world, out, resume=resume, progress=progress)
    check_output(config.out_dir, "out_dir")  # the text: Path made "" the working folder
    if not config.data.path:  # as "" for out_dir: the working folder's images became the data
        raise ValueError("data.path is empty (''), which would be the working folder: give "
                         "the data's path ('.' for that folder)")
    _check_apart_from_data(out, config.data.path)
    with _owned(out) as still_ours:
        remove_temporaries(out)
        found = set(_run_files(out))  # files this run did not make

        def replace_old_run() -> None:
            # All of it or none: stopped part way, a run would be left without its checkpoint,
            # say, and `found` would keep the removed files' names.
            with _sigterm_held():
                _remove_run_files(out)
                found.clear()

        replaces = _check_clear(out, resume=resume, overwrite=overwrite,
                                data=config.data.path)
        trained = False

        def iteration_done() -> None:
            nonlocal trained
            trained = True

        try:
            return _fit(config, world, out, resume=resume, progress=progress,
                        replace_old_run=replace_old_run if replaces else None,
                        still_ours=still_ours, iteration_done=iteration_done)
        except BaseException as err:
            # A new run that fails before its first checkpoint or sample (a refused input, an
            # early divergence) has made nothing to keep or resume: without its config, observed
            # data and logs, the folder is as it was. Samples of a longer run stay to be looked
            # at, and so do the logs of one the user stopped (Ctrl-C) once it had trained: with
            # checkpoint_every 0 and no samples yet, an hour's TensorBoard curves went.
            # Only what this run made goes: not an old run it was to replace but had not
            # yet started to, nor a file of a run's name the user keeps there.
            # Nor anything of another run, where the folder was removed and made again.
            stopped_by_user = trained and isinstance(err, KeyboardInterrupt)
            if not resume and not stopped_by_user and not _taken(out, still_ours) and (
                    not (out / FILENAME).exists()) and (
                    not any(path.name.startswith("samples") for path in _run_files(out))):
                with _sigterm_held():
                    _remove(set(_run_files(out)) - found)
            raise


class Terminated(SystemExit):
    """SIGTERM stopped a training process under torchrun (``code`` 143). Its ``__context__``
    is the error the process was handling when the signal came, if any: torchrun stops the
    other processes when one fails, and a failing one may be stopped while cleaning up."""


@contextmanager
def _terminated_as_exit(active: bool) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (``SystemExit(143)``) when
    ``active``. torchrun stops the other processes of a run one of which failed by SIGTERM,
    whose default ends Python without unwinding: rank 0 would leave a new run's first files
    behind, refusing the next run."""
    # Off the main thread (a program's thread pool) signal.signal raises ValueError, and Python
    # runs handlers in the main thread only: SIGTERM keeps the action the program gave it.
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _: object) -> None:
        if _held.depth:  # raised when the held block ends
            _held.signal = signum
            return
        # A second SIGTERM after the holds have ended: the one they kept is delivered with it,
        # not left for a later hold in this process to raise.
        _held.signal = None
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Held:
    """How many :func:`_sigterm_held` blocks are open, and the SIGTERM that came meanwhile."""

    depth: int = 0
    signal: int | None = None


_held = _Held()


@contextmanager
def _sigterm_held() -> Iterator[None]:
    """SIGTERM waits until the block has run; one that came meanwhile is delivered at its end
    (raising :class:`Terminated` under torchrun, its ``__context__`` the error being cleaned up
    after). A cleanup stopped part way would leave a new run's files, which make the next run
    ask for --overwrite; the removal of an old run (--overwrite) part of it.

    Under torchrun, :func:`_terminated_as_exit`'s handler keeps the signal until then: blocking
    it in this thread alone does not, as the system gives it to another thread that does not
    block it (gloo's, the progress bar's) and Python runs the handler here all the same. The
    block holds SIGTERM's other actions (the default: ending the process) where no other thread
    takes it."""
    # Counted before the mask changes: Python may run a pending handler as soon as the call
    # that masks returns, and raised there it would leave SIGTERM masked in this thread.
    _held.depth += 1
    try:
        # Windows has no signal masks: there the handler alone holds SIGTERM (under torchrun).
        if not hasattr(signal, "pthread_sigmask"):
            yield
            return
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            yield
        finally:
            # A SIGTERM the mask kept pending reaches the handler here, still held.
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
        _held.depth -= 1
        if not _held.depth and _held.signal is not None:
            signum, _held.signal = _held.signal, None
            raise Terminated(128 + signum)


@contextmanager
def _owned(out: Path) -> Iterator[Callable[[], bool]]:
    """Hold ``out``'s lock for the block (see :func:`train`); the lock file names the owner
    while it is held. A run that fails before writing anything leaves no debris: the lock
    file goes, and the folder too when this run made it, with the folders above it it made.

    Yields ``still_ours()``: whether ``out``'s lock file is still the one held, not gone with
    its folder, nor another run's in a folder made again."""
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    with _locked(out) as file:

        def still_ours() -> bool:
            return _is_at(file, out / LOCK)

        try:
            # A killed owner's words may still be here: the flock was free, so they are stale.
            file.truncate(0)
            try:
                file.write(f"process {os.getpid()} on {socket.gethostname()}\n".encode())
            except OSError as err:  # the disk full already: the run's first write
                raise write_error(err.errno, err.strerror, out / LOCK) from err
            yield still_ours
        except BaseException:
            if not _taken(out, still_ours) and not _run_files(out):
                with _sigterm_held():
                    # Both already gone when the run folder was removed while training; a file
                    # made in its place has no lock file in it to remove (unlinking one there
                    # raised NotADirectoryError, which hid why the run stopped).
                    # Windows removes no file while it is open, and the lock file is held
                    # open here: left there, which keeps the folder too (its error hid why
                    # the run stopped).
                    if out.is_dir() and fcntl is not None:
                        (out / LOCK).unlink(missing_ok=True)
                    for folder in made:
                        if not folder.is_dir():
                            continue
                        if any(folder.iterdir()):
                            break
                        folder.rmdir()
            raise
        finally:
            file.truncate(0)


def _locked(out: Path) -> BinaryIO:
    """``out``'s lock file (the folder made first), open and locked (:func:`_lock`); ``ValueError``
    naming the owner while another run holds it."""
    while True:
        out.mkdir(parents=True, exist_ok=True)
        try:
            # Unbuffered: a write refused by a full disk is not tried again, unnamed, on closing.
            # 0o666 less the umask, as the run's other files: under a group's umask (002) a
            # member of the group must open it to --resume the run.
            file = os.fdopen(os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666), "r+b", 0)
        except FileNotFoundError:
            if out.is_dir():  # not the race below: a lock file linking into a missing folder
                raise
            continue  # removed since it was made, by a failed run's cleanup: made again
        try:
            _lock(file)
        except BlockingIOError:
            owner = file.read().decode(errors="replace").strip() or "another process"
            file.close()
            raise ValueError(f"run folder {out} is in use by {owner} ({out / LOCK}); wait for "
                             "that run to end or train into another folder") from None
        except BaseException:  # no flock there (ENOLCK: NFS without its lock manager)
            file.close()  # not kept open by the error's frame, as above
            raise
        if _is_at(file, out / LOCK):
            return file
        # A run failing at its start removed the file between its open here and the flock,
        # and only then let the flock through: held, it would lock no file a later run opens,
        # and that run would own the folder too.
        file.close()


# The byte msvcrt locks (Windows), far past the owner's line: no other process may read a
# locked byte there, and a refused run reads the line to name the owner.
_LOCKED_BYTE = 1 << 30


def _lock(file: BinaryIO) -> None:
    """Lock the open ``file`` for as long as it is open, or ``BlockingIOError`` while another
    process holds it: ``flock``; on Windows, which has none, msvcrt's lock of one byte."""
    if fcntl is not None:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    file.seek(_LOCKED_BYTE)
    try:
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    except PermissionError as err:  # EACCES: locked by another
        raise BlockingIOError(err.errno, err.strerror, err.filename) from err
    finally:
        file.seek(0)


def _is_at(file: BinaryIO, path: Path) -> bool:
    """Whether the open ``file`` is the one at ``path``: not removed, nor replaced by another
    (an open file keeps its inode in use, so a new file cannot have it)."""
    held = os.fstat(file.fileno())
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


class ExistingRun(ValueError):
    """The run folder already holds a run, and neither resume nor overwrite was asked."""


def _run_files(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(path for path in out.iterdir()
                  if path.name in RUN_FILES or RUN_PICTURES.fullmatch(path.name))


def training_files(folder: str | Path) -> list[Path]:
    """The files in ``folder`` that only a training run writes (checkpoints, observed data,
    samples): not ``config.yaml`` or ``tb/``, which other commands write into their folders
    too (``eval recovery --out D --tensorboard D/tb``)."""
    return [path for path in _run_files(Path(folder)) if path.name not in ("config.yaml", "tb")]


def _replaced_files(out: Path) -> list[Path]:
    """What ``overwrite`` removes from ``out``: the old run's files and the other commands'
    default outputs there (``RUN_OUTPUTS``)."""
    return [*_run_files(out), *(out / name for name in RUN_OUTPUTS.values()
                                if (out / name).exists())]


def _remove_run_files(out: Path) -> None:
    _remove(_replaced_files(out))


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        # A link (tb/ linked to a shared log folder) goes, not what it leads to: rmtree refused
        # it, after the old run's checkpoint was gone.
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _check_apart_from_data(out: Path, data: str | None) -> None:
    """Refuse to train into the training data's folder: the run's pictures and arrays
    (``observed.png``, ``samples.png``, ...) written among the examples would be read as
    examples by a resumed or later run (one that then failed on its chains' count, or trained
    on its own samples)."""
    if (data is not None and os.path.isdir(data) and out.is_dir()
            and os.path.samefile(out, data)):
        raise ValueError(f"out_dir {out} is the training data folder {data}: the run's samples "
                         "written there would be read as training data by the next run; train "
                         "into another folder")


def _check_clear(out: Path, *, resume: bool, overwrite: bool, data: str | None = None) -> bool:
    """Whether ``out`` holds an earlier run that this one replaces (``overwrite``); refuses
    to train over one otherwise, or when the training ``data`` is among the files replacing
    it would remove. The caller removes it only once the new run has started, so a run
    refused at its start (a device, data or model setting) loses nothing."""
    old = _run_files(out)
    if resume:
        _refuse_linked_files(old)
        saved = (out / FILENAME, previous_path(out / FILENAME))
        # A run's observed data or samples, not its config.yaml or tb/ alone, which other
        # commands write too (a recovery's folder was said to hold a stopped run).
        if training_files(out) and not any(path.exists() for path in saved):
            raise CheckpointError(f"checkpoint not found: {out / FILENAME}; {out} holds the "
                                  "files of a run stopped before its first checkpoint, so "
                                  "there is nothing to resume: train afresh with --overwrite")
    if resume or not old:
        return False
    holder = None  # the file or folder overwrite would remove that holds the training data
    if data is not None and Path(data).exists():
        read = Path(data).resolve()
        # The other commands' outputs too: data synthesized into RUN/synthesis went with them.
        holder = next((path for path in _replaced_files(out) if path.resolve() == read
                       or read.is_relative_to(path.resolve())), None)
    if holder is not None and overwrite:
        raise ExistingRun(f"--overwrite would remove {holder}, which holds the training data "
                          f"{data}: move the data out of {out}, or train into another folder")
    if not overwrite:
        listed = f"{', '.join(p.name for p in old[:4])}{', ...' if len(old) > 4 else ''}"
        killed = not (out / FILENAME).exists()  # a killed run's files, before its checkpoint
        # Never advise --overwrite where it would be refused in turn.
        replace = (f"replace {'them' if killed else 'it'} with --overwrite" if holder is None
                   else f"move the training data {data} out of {holder} (--overwrite would "
                   "remove it with the run)")
        if killed:
            raise ExistingRun(f"{out} holds the files of a run that saved no checkpoint "
                              f"({listed}): {replace}, or train into another folder")
        raise ExistingRun(f"{out} already holds a run ({listed}): continue it with --resume, "
                          f"{replace}, or train into another folder")
    return True


def _refuse_linked_files(files: list[Path]) -> None:
    """A resume writes the run's files by their names, and a write follows a link (as an
    output the user named through a link should): a run folder from elsewhere holding
    ``samples.png -> ~/notes.txt`` had that file replaced by a picture. A linked folder
    (``tb/`` to a shared log folder) is left as a user sets it up."""
    for path in files:
        if path.is_symlink() and not path.is_dir():
            raise ValueError(f"{path} is a symbolic link to {os.readlink(path)}: resuming would "
                             "replace that file with the run's; remove the link (or put a copy "
                             "of the file in its place) to resume")


def _fit(config: ExperimentConfig, world: World | None, out: Path, *, resume: bool,
         progress: bool, replace_old_run: Callable[[], None] | None = None,
         still_ours: Callable[[], bool] | None = None,
         iteration_done: Callable[[], None] | None = None) -> Path:
    device = world.device if world is not None else resolve_device(config.device)
    main = world is None or world.is_main
    modality = modality_of(config)
    smallest_side = _smallest_side(modality, config)
    try:
        with reading(config.data.path):
            data = modality.load(config.data, smallest_side=smallest_side).to(device)
    except FileNotFoundError as err:  # often a config's placeholder path, never replaced
        # A run's config keeps data.path as typed: resumed from another folder, a relative
        # path was "not found" with no word of where it was looked for.
        if config.data.path.startswith("builtin:"):  # data.path's default, left unset
            where = (f" (the built-in images are textures, for data.kind texture; data.kind "
                     f"{config.data.kind} reads files of its own)")
        elif resume and not Path(config.data.path).is_absolute():
            where = f" (the run's relative data.path is read from the current folder {Path.cwd()})"
        else:
            where = ""
        raise FileNotFoundError(f"{err}{where}: give the training data with --data PATH (or "
                                "the config's data.path)") from err
    config = modality.fit_units(config, data)  # from every example, the same on every rank
    fps = modality.playback_fps(config.data)  # once: a folder's videos are opened to tell
    data = data - modality.offset(config)  # the model's units
    observed = data
    labels = _labels(config, config.jem.labels, len(data)) if config.jem is not None else None
    # Fitted to every example before sharding, so every rank starts chains from the same fit.
    init = (_gaussian_fit("chains.init 'data_gaussian'", data, labels,
                          rank=config.chains.init_rank, noise=config.chains.init_noise,
                          noise_scale=config.chains.init_scale)
            if config.chains.init == "data_gaussian" else None)
    reference = (_gaussian_fit("jem.reference_components", data, labels,
                               rank=config.jem.reference_rank,
                               components=config.jem.reference_components,
                               generator=torch.Generator(device).manual_seed(config.seed))
                 if config.jem is not None and config.jem.reference_components > 0 else None)
    if world is not None:
        shard = world.shard(len(data))
        data = data[shard.to(device)]
        labels = None if labels is None else labels[shard]
    rank = world.rank if world is not None else 0
    generator = torch.Generator(device).manual_seed(config.seed + rank)
    with seeded_weights(config.seed):  # parameter initialisation, the same on every rank
        trainer: Trainer | MultiGridTrainer
        if config.multigrid is not None:
            if config.multigrid.base_rank is not None and len(observed) < 2:
                # Else the run trains to the end and only its synthesis fails, in the fit.
                raise ValueError(f"multigrid.base_rank samples from a Gaussian fitted to the "
                                 f"training examples' base values, which needs at least 2; this "
                                 f"run has {len(observed)}: set multigrid.base_rank: null")
            config = _resolve_grid_models(config, channels=data.shape[1], resumed=resume)
            energies = _grid_energies(modality, config)
            trainer = MultiGridTrainer(
                [energy.to(device) for energy in energies],
                grid_samplers(config), data, grid_sizes(config),
                consistent=config.multigrid.consistent, train=config.train,
                generator=generator, config=config_to_dict(config), world=world,
            )
        else:
            model_config = fill_model(config.model, "model", in_channels=data.shape[1],
                                      image_size=data.shape[-1],
                                      size_of="the examples' width", resumed=resume)
            config = replace(config, model=model_config)
            energy = modality.energy(config.model).to(device)
            _check_examples_fit(energy, data, config)
            if config.jem is not None and labels is not None:
                trainer = HybridTrainer(
                    energy, model_sampler(config),
                    build_chain_start(config.chains, data.shape[0], spatial_dims=data.dim() - 2,
                                      init=init),
                    data, labels.to(device), jem=config.jem, reference=reference,
                    train=config.train, generator=generator, config=config_to_dict(config),
                    world=world,
                )
            elif config.cooperative is not None:
                generator_net = ConvGenerator(latent_dim=config.cooperative.latent_dim,
                                              out_shape=data.shape[1:],
                                              width=config.cooperative.width)
                trainer = CooperativeTrainer(
                    energy, generator_net.to(device), model_sampler(config), data,
                    cooperative=config.cooperative,
                    chains_per_example=config.chains.chains_per_example, clamp=model_clamp(config),
                    train=config.train,
                    generator=generator, config=config_to_dict(config), world=world,
                )
            elif config.initializer is not None:
                settings = config.initializer
                initializer = Initializer(initializer_factors(config),
                                          recovery=config.chains.mode == "recovery",
                                          fold=settings.fold, spatial_dims=data.dim() - 2,
                                          width=settings.width, depth=settings.depth)
                trainer = InitializerTrainer(
                    energy, initializer.to(device), model_sampler(config), data, settings=settings,
                    factor=config.chains.factor, missing=config.chains.missing,
                    offset=modality.offset(config), train=config.train, generator=generator,
                    config=config_to_dict(config), world=world,
                )
            else:
                trainer = Trainer(
                    energy, model_sampler(config),
                    build_chain_start(config.chains, data.shape[0], spatial_dims=data.dim() - 2,
                                      init=init),
                    data, train=config.train, generator=generator, config=config_to_dict(config),
                    world=world,
                )
    checkpoint = out / FILENAME
    if resume:
        trainer.resume(checkpoint)
        if trainer.iteration >= config.train.n_iterations:
            # Else the run would "train" no iteration and rewrite its samples as if it had.
            # A JEM run's schedule is its jem.lr_decay (train.lr_decay is refused there).
            decay = "jem.lr_decay" if config.jem is not None else "train.lr_decay"
            raise ValueError(f"{out} is already trained to iteration {trainer.iteration} "
                             f"(train.n_iterations = {config.train.n_iterations}): to train on, "
                             f"raise it with --set train.n_iterations=N (a cosine {decay} is "
                             "then stretched over the new N: its rate rises again)")
    if world is not None:
        # Every process read the data and the checkpoint on its own machine: one that read
        # other files (a stale copy) would train on shards of other examples, silently, or from
        # another iteration, saving at other iterations than the others until a collective
        # mismatch aborts it. A collective: every process has started when it returns, so one
        # refused at its start removes nothing.
        # Their settings and examples too: another config file or image trained a model of
        # mixed settings, or on shards of other examples, without a word. The paths and the
        # device are each machine's own.
        settings = config_to_dict(config)
        for key in ("out_dir", "device"):
            del settings[key]
        del settings["data"]["path"]
        world.check_same({"training examples": len(observed),
                          "iteration resumed from": trainer.iteration},
                         digests={"settings": digest(json.dumps(settings, sort_keys=True)
                                                     .encode()),
                                  "example values": digest(observed)})
    if replace_old_run is not None:  # the new run has started: the old one goes now, not before
        replace_old_run()
    # A resumed run writes these only once it has saved a checkpoint, so that a resume that
    # fails leaves the folder as it was.
    undescribed = main

    def describe_run(_: Trainer | MultiGridTrainer | None = None) -> None:
        nonlocal undescribed
        if undescribed:
            save_config(config, out / "config.yaml")
            modality.preview(modality.to_data(observed, config), out / "observed",
                             fps=fps)
            undescribed = False

    if not resume:
        describe_run()

    def save_samples(t: Trainer | MultiGridTrainer, _: dict[str, float]) -> None:
        if iteration_done is not None:
            iteration_done()
        if still_ours is not None:  # before this iteration's samples and checkpoint
            _check_not_removed(out, still_ours)
        every = config.train.sample_every
        if main and every > 0 and t.iteration % every == 0 and t.last_samples is not None:
            modality.preview(modality.to_data(_finest(t.last_samples), config),
                             out / f"samples_{t.iteration:06d}", fps=fps)

    def log_media(writer: object, t: Trainer | MultiGridTrainer) -> None:
        every = config.train.sample_every
        # At the end too, as samples.* are written: a run of 30 iterations sampled every 25
        # showed TensorBoard's curves to 30 beside the samples of 25.
        due = every > 0 and (t.iteration % every == 0 or t.iteration == config.train.n_iterations)
        if config.train.log_media and due and t.last_samples is not None:
            modality.log_samples(writer, "samples", modality.to_data(_finest(t.last_samples),
                                                                   config), t.iteration,
                                 fps=fps)
            t.log_norms(writer)

    try:
        trainer.fit(config.train.n_iterations, checkpoint_path=checkpoint,
                    checkpoint_every=config.train.checkpoint_every, log_dir=out / "tb",
                    progress=progress, on_iteration=save_samples, on_checkpoint=describe_run,
                    on_log=log_media)
    except WriteError:
        # TensorBoard's writer, whose thread re-raises its failure at the next event, may
        # meet a removed run folder before the run's own check does: the cause named, not
        # "No such file or directory (TensorBoard events)".
        if still_ours is not None:
            _check_not_removed(out, still_ours)
        raise
    if main and trainer.last_samples is not None:
        if still_ours is not None:
            _check_not_removed(out, still_ours)
        modality.preview(modality.to_data(_finest(trainer.last_samples), config), out / "samples",
                         formats=(".gif", ".mp4"), fps=fps)
    if main and isinstance(trainer, MultiGridTrainer):
        _save_pyramids(trainer, observed, modality, config, out, fps=fps)
    return out


def _gaussian_fit(setting: str, data: Tensor, labels: Tensor | None, **options: Any
                  ) -> DataGaussian:
    """:meth:`DataGaussian.fit` of ``data`` (``labels``: one fit per class), its refusal
    naming the ``setting`` that asked for it: a run of one training image with chains.init
    data_gaussian was told only "a Gaussian fit needs at least 2 examples, got 1"."""
    try:
        return DataGaussian.fit(data, labels, **options)
    except ValueError as err:
        raise ValueError(f"{setting} fits Gaussians to the training examples: {err}") from err


def _check_not_removed(out: Path, still_ours: Callable[[], bool]) -> None:
    """``WriteError`` when the run folder was removed (or its lock file with it) while
    training: the writers would make the folder again, holding a checkpoint without its
    ``config.yaml``, or write into another run's, made there since."""
    if not still_ours():
        raise write_error(errno.ENOENT, "the run folder was removed while training, its lock "
                         f"file {LOCK} with it (gone, or another run's now); stopped rather "
                         "than make it again or write into another run", out)


def _taken(out: Path, still_ours: Callable[[], bool]) -> bool:
    """Whether another run holds ``out`` now (the folder removed and made again meanwhile):
    a failed run's cleanup must then leave it alone."""
    return (out / LOCK).exists() and not still_ours()


def _labels(config: ExperimentConfig, key: str, n_images: int) -> Tensor:
    """The class of each of the ``n_images`` training images (JEM), from the data file's
    array ``key``."""
    with reading(config.data.path):
        try:
            labels = load_npz_labels(config.data.path, key=key,
                                     max_images=config.data.max_images)
        except ValueError as err:  # the setting named: another array may hold the labels
            raise ValueError(f"{err} (jem.labels names the labels array)") from err
    if len(labels) != n_images:
        raise ValueError(f"{config.data.path}: {len(labels)} labels for {n_images} images")
    if labels.max() >= config.model.n_classes:
        raise ValueError(f"{config.data.path}: {key} holds class "
                         f"{int(labels.max())}, past model.n_classes = {config.model.n_classes}")
    return labels


def _finest(samples: Tensor | list[Tensor]) -> Tensor:
    return samples[-1] if isinstance(samples, list) else samples


def _save_pyramids(trainer: MultiGridTrainer, observed: Tensor, modality: Modality,
                   config: ExperimentConfig, out: Path, *, fps: float | None) -> None:
    # Each grid's training chains start from the data's coarser grid, so the observed pyramid
    # is the picture to set beside the samples' (which has no base row: the base is data). Of
    # every example, as observed shows them: under torchrun the trainer holds rank 0's share.
    levels = pyramid(observed, trainer.grid_sizes)
    for name, grids in (("observed", levels), ("samples", trainer.last_samples)):
        if grids is not None:
            modality.save_pyramid([modality.to_data(g, config) for g in grids],
                                  out / f"{name}_pyramid", fps=fps)


def _check_examples_fit(energy: Any, data: Tensor, config: ExperimentConfig) -> None:
    """``ValueError`` naming ``data.size`` when the training examples ``data`` ``(N, C, *S)``
    are smaller than ``energy``'s receptive field: the net's own "input size (12, 12) is
    smaller ..." came once the progress bar had started, after a warning that advised just
    that data.size, and named no setting to change."""
    clips = config.data.kind == "video"  # (T, H, W): data.frames sets the first
    _check_net_fits(energy, data.shape[2:], "model", config.model,
                    examples="the training examples", frames=config.data.frames if clips else None,
                    frames_key="data.frames", size=config.data.size, size_key="data.size")


def _smallest_side(modality: Modality, config: ExperimentConfig) -> int:
    """The smallest data.size of examples that the run's net takes, which a warning of the
    data's loading may advise (:meth:`Modality.load`): it advised a texture's own side, 12,
    which the net then refused as smaller than its receptive field. 1 where not known before
    the data are read: a classifier's fixed size, a multigrid run's nets (one per grid), a net
    that data.size cannot build (its refusal, once the data are read, names it), and clips,
    whose reading advises no size (a probe of the paper's fc_s net cost 1.4 s for nothing)."""
    if (config.multigrid is not None or config.model.arch in CLASSIFIER_ARCHS
            or config.data.kind == "video"):
        return 1
    model = replace(config.model, in_channels=example_shape(config.data)[0],
                    image_size=config.data.size)
    try:
        with forked_global_rng():  # a probe: the caller's random stream stays as it was
            energy = modality.energy(model)
    except ValueError:
        return 1
    return max(energy.smallest_size())


def _grid_energies(modality: Modality, config: ExperimentConfig) -> list[ConvNetEnergy]:
    """Each modelled grid's energy net (its model filled in: :func:`_resolve_grid_models`),
    coarse to fine. ``ValueError`` naming the grid and its size when its examples are smaller
    than its net's receptive field: training refused them only at the grid's first chain, in
    the net's words ("input size (2, 2) is smaller ...", or "input_size (2, 2) is too small
    for these layers" as a head's net was built), naming no grid."""
    multigrid, energies = multigrid_section(config), []
    for i, (grid, shape) in enumerate(zip(multigrid.grids, grid_sizes(config)[1:])):
        key = f"multigrid.grids[{i}]"
        # A video grid's clip length: its own frames, else data.frames (grid_shape).
        frames = shape[0] if config.data.kind == "video" else None
        frames_key = f"{key}.frames" + (" (data.frames)" if grid.frames is None else "")
        try:
            energy = modality.energy(grid.model)
        except ValueError as err:  # a fully connected head is sized by the grid as it is built
            raise ValueError(f"{key}.model, at {key}.size {grid.size}: {err}") from None
        _check_net_fits(energy, shape, f"{key}.model", grid.model,
                        examples=f"the examples of {key}", frames=frames, frames_key=frames_key,
                        size=grid.size, size_key=f"{key}.size")
        energies.append(energy)
    return energies


def _check_net_fits(energy: Any, shape: Sequence[int], key: str, model: ModelConfig, *,
                    examples: str, frames: int | None, frames_key: str, size: int,
                    size_key: str) -> None:
    """``ValueError`` unless ``energy`` (the net of the model section at ``key``) takes
    ``examples`` of spatial ``shape``, which ``size_key`` (and, for clips, ``frames_key``) set
    to ``size`` (``frames``)."""
    if not isinstance(energy, ConvNetEnergy):  # a classifier's network takes its fixed size
        return
    try:
        energy.check_size(shape)
    except ValueError as err:
        settings = (f"{frames_key} {frames}, " if frames is not None else "") + size_key
        raise ValueError(f"{examples}, at {settings} {size}, do not fit {key}.arch "
                         f"{model.arch!r}: {err}; raise "
                         f"{f'{frames_key} or ' if frames is not None else ''}{size_key} or "
                         f"give {key}.layers with smaller filters or strides") from None


def _resolve_grid_models(config: ExperimentConfig, *, channels: int, resumed: bool = False
                         ) -> ExperimentConfig:
    """Fill every grid's model with the data's channels and the grid's size (``resumed``: as
    :func:`fill_model` takes it)."""
    multigrid = multigrid_section(config)
    grids = tuple(replace(grid, model=fill_model(
                      grid.model, f"multigrid.grids[{i}].model", in_channels=channels,
                      image_size=grid.size, size_of=f"multigrid.grids[{i}].size",
                      resumed=resumed))
                  for i, grid in enumerate(multigrid.grids))
    return replace(config, multigrid=replace(multigrid, grids=grids))
