"""Analysis by synthesis: the maximum-likelihood training loop of descriptor models.

Each iteration draws a batch of observed examples, starts chains for it (noise, data, persistent
chains or a replay buffer), runs the sampler on the *current* energy, and takes one Adam step on
``mean E(data) - mean E(samples)``. Everything random flows from one ``torch.Generator``, whose
state is checkpointed, so a resumed run takes exactly the step an uninterrupted run would.

Given a :class:`~stgconv.distributed.World`, each process trains on its shard of the examples and
the gradients are averaged over the processes before every step (:mod:`stgconv.distributed`).
"""

from __future__ import annotations

import math
import warnings
from contextlib import closing, nullcontext
from functools import partial, wraps
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from stgconv.checkpoint import (
    CheckpointError,
    check_finite_chains,
    check_finite_weights,
    load_checkpoint,
    load_weights,
    rebuild,
    save_checkpoint,
)
from stgconv.checks import (
    as_int,
    check_dtype,
    check_entries,
    check_generator,
    check_not_meta,
    check_output,
    check_tensor,
    differing_keys,
    refuse_inference_mode,
)
from stgconv.config import ExperimentConfig, TrainConfig, section_or_default, trainer_settings
from stgconv.console import progress_bar
from stgconv.distributed import (
    World,
    gather_generators,
    interleave,
    merge_chain_states,
    shard_chain_state,
    take_generator,
)
from stgconv.energy.base import EnergyModel
from stgconv.energy.rbm import RBM
from stgconv.io.tensorboard import summary_writer
from stgconv.losses import contrastive_divergence
from stgconv.mcmc.base import NonFiniteEnergyError, Sampler, check_sampler, on_grid
from stgconv.mcmc.buffer import ReplayBuffer
from stgconv.mcmc.init import DataGaussian, NoiseInit
from stgconv.mcmc.persistent import PersistentChains
from stgconv.mcmc.starts import ChainStart, CoarseStart, SuperResolutionStart
from stgconv.ops import factor_between, pyramid
from stgconv.types import EnergyFn

# Past these bounds a run has diverged: a healthy one stays orders of magnitude below them
# (Adam moves a weight by about lr per step, so even lr=0.1 needs 10^7 steps to reach 10^6;
# energies, sums over every entry, stay far under 10^20), while a run with too large a learning
# rate or step size passes them within a few iterations (lr=1e6 reached weights of 9e7 and
# energies of 1e32 while every value stayed finite).
MAX_ABS_WEIGHT = 1e6
MAX_ABS_ENERGY = 1e20


# What to change when the descriptor's training diverges.
DESCRIPTOR_ADVICE = "lower train.lr or sampler.step_size"
# A multigrid run's, where a grid's own sampler section, when it sets step_size, leaves the
# shared sampler.step_size unread for that grid.
MULTIGRID_ADVICE = ("lower train.lr or the grids' step size (sampler.step_size, or "
                    "multigrid.grids[i].sampler.step_size for a grid that sets its own)")

# What to do when a checkpoint is not of the run a config builds. Under `train --resume` the
# config is already the run's own config.yaml, changed by the --set values given beside it.
RESUME_ADVICE = ("resume with the run's own config.yaml and no --set that changes it, or train "
                 "a new run")


class DivergenceError(FloatingPointError):
    """Training diverged: a loss, mean energy or weight is non-finite or past its bound
    (:data:`MAX_ABS_ENERGY`, :data:`MAX_ABS_WEIGHT`). ``advice`` says what setting to change
    (``None``: the descriptor's learning rate or step size)."""

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        super().__init__(message)
        self.advice = advice


def training_step(step: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
    """``step``, a trainer's update, with autograd on even inside ``torch.no_grad()``, as the
    samplers have it: a caller who wraps a training loop or a recovery in no_grad otherwise got
    autograd's "element 0 of tensors does not require grad" from the backward pass.
    ``torch.inference_mode()``, which no block can turn autograd back on in, is refused before
    the step changes anything (chains stored under it could never be updated again)."""
    @wraps(step)
    def with_grad(trainer: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        refuse_inference_mode("a training step needs gradients", "train")
        with torch.enable_grad():
            return step(trainer, *args, **kwargs)
    return with_grad


class FitLoop:
    """The outer loop shared by :class:`Trainer` and :class:`MultiGridTrainer`: iterations,
    progress, TensorBoard scalars and periodic checkpoints around their ``step``, and the
    divergence check that keeps a diverged model out of every checkpoint."""

    iteration: int
    world: World | None
    # What to change when the training diverges and no weight of a network with its own
    # setting (advice_for) tells otherwise.
    divergence_advice: str = DESCRIPTOR_ADVICE
    # The newest checkpoint this trainer wrote or resumed from, and its iteration: what a
    # divergence names as the last good model (not fit's checkpoint_path, which a run resumed
    # from another file may not have written yet).
    saved_path: Path | None = None
    saved_iteration: int | None = None

    def step(self) -> dict[str, float]:
        raise NotImplementedError

    def check_length(self, n_iterations: int) -> None:
        """``ValueError`` where training up to iteration ``n_iterations`` cannot follow this
        trainer's schedule; :meth:`fit` checks before its first step."""

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        """Every trained weight tensor with its name (``grid<k>/`` before a grid's)."""
        raise NotImplementedError

    def log_norms(self, writer: Any) -> None:
        """The L2 norm of every weight tensor and of its gradient (from the last step) as
        TensorBoard scalars ``weights/<name>`` and ``gradients/<name>``."""
        for name, parameter in self.named_parameters():
            writer.add_scalar(f"weights/{name}", parameter.detach().norm().item(), self.iteration)
            if parameter.grad is not None:
                writer.add_scalar(f"gradients/{name}", parameter.grad.norm().item(),
                                  self.iteration)

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Atomically write :meth:`state_dict` as a checkpoint (plain data and tensors), first
        keeping the one it replaces as ``<stem>_previous<suffix>``. With several processes
        every rank must call it (the state is gathered); rank 0 writes."""
        state = self.state_dict()
        if self.world is None or self.world.is_main:
            save_checkpoint(state, path, keep_previous=True)
        if self.world is not None:
            self.world.barrier()  # nobody reads the checkpoint before it is whole
        self.saved_path, self.saved_iteration = Path(path), self.iteration
        return Path(path)

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :meth:`save`.

        Raises:
            CheckpointError: the file is no checkpoint, or one of another model or setup.
        """
        # Loaded as plain tensors even inside torch.inference_mode(): chains and Adam's state
        # read there were inference tensors, and the next fit, outside it, failed at their
        # first in-place update ("Inplace update to inference tensor outside InferenceMode").
        with torch.inference_mode(False):
            state = load_checkpoint(path, map_location=self.device)
            # Else resumed, and the first step's NaN energies blamed the sampler's step size.
            check_finite_weights(self.saved_weights(state), path)
            check_finite_chains(state.get("chains"), path)
            try:
                self.load_state_dict(state)
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(f"cannot resume from {path}: {err}") from err
        self.saved_path, self.saved_iteration = Path(path), self.iteration

    def saved_weights(self, state: dict[str, Any]) -> dict[str, Any]:
        """Every weight tensor of every network :meth:`state_dict`'s ``state`` holds, named as
        :meth:`named_parameters` names them (what a malformed ``state`` lacks is left out: its
        load names it)."""
        raise NotImplementedError

    def check_divergence(self, stats: dict[str, float]) -> None:
        """Raise :class:`DivergenceError` when a value of ``stats`` (a step's loss and mean
        energies) or any weight is non-finite or past its bound."""
        for key, value in stats.items():
            if not abs(value) <= MAX_ABS_ENERGY:  # NaN too
                raise DivergenceError(f"training diverged at iteration {self.iteration}: {key} is "
                                      f"{value:.3g}, past the bound of {MAX_ABS_ENERGY:.0e}")
        named = self.named_parameters()
        with torch.no_grad():
            sizes = torch.stack([p.detach().abs().max() for _, p in named])
        largest = sizes.max().item()  # one synchronisation a step; NaN if any weight is
        if not largest <= MAX_ABS_WEIGHT:
            name = named[int(sizes.nan_to_num(nan=math.inf).argmax())][0]
            raise DivergenceError(f"training diverged at iteration {self.iteration}: weight "
                                  f"{name} is {largest:.4g}, past the bound of "
                                  f"{MAX_ABS_WEIGHT:.0e}", advice=self.advice_for(name))

    def advice_for(self, weight: str) -> str:
        """What to change when ``weight`` (a name of :meth:`named_parameters`) diverges."""
        return self.divergence_advice

    def probes(self) -> list[tuple[EnergyFn, Tensor]]:
        """The last step's data and samples (``(B, *S)`` each) with the energy of each, where
        :meth:`check_saved_model` evaluates the updated model."""
        raise NotImplementedError

    def check_saved_model(self) -> None:
        """Raise :class:`DivergenceError` when the model as it is now (after the last step's
        update) gives a non-finite energy, or one past its bound, at the last step's data or
        samples: the step's statistics were measured before its update, so without this a
        checkpoint could keep a model that had already diverged."""
        with torch.no_grad():
            largest = max((energy(x).abs().max().item() for energy, x in self.probes()),
                          default=0.0)
        if self.world is not None:  # every rank decides alike; the sum bounds each rank's
            largest = self.world.average({"largest": largest})["largest"] * self.world.size
        if not largest <= MAX_ABS_ENERGY:  # NaN too
            raise DivergenceError(f"training diverged at iteration {self.iteration}: the updated "
                                  f"model's energy at the step's data or samples is "
                                  f"{largest:.3g}, past the bound of {MAX_ABS_ENERGY:.0e}")

    def fit(
        self,
        n_iterations: int,
        *,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        log_dir: str | Path | None = None,
        progress: bool = True,
        on_iteration: Callable[[Any, dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[Any], None] | None = None,
        on_log: Callable[[Any, Any], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``self.iteration == n_iterations`` (so a resumed trainer continues).

        Writes a checkpoint every ``checkpoint_every`` iterations and at the end when
        ``checkpoint_path`` is set (then calls ``on_checkpoint(self)``), and TensorBoard scalars
        when ``log_dir`` is set, and then also calls ``on_log(writer, self)`` after every
        iteration (pictures, norms). With several processes only rank 0 logs and draws progress.

        Returns every iteration's statistics (:meth:`step`'s), in order; ``on_iteration(self,
        stats)`` is called with each as it comes, so a caller who collects them there keeps
        those of a fit that raises.

        Raises:
            DivergenceError: a step's loss or mean energies, or the weights after it, are
                non-finite or past their bounds (:meth:`check_divergence`); the diverged model
                is never saved, so ``checkpoint_path`` keeps the last good one, and the message
                names the checkpoint that holds it and its iteration (the file the trainer
                resumed from, while this fit has written none). A chain that diverges inside a
                step raises the sampler's own ``FloatingPointError`` with the same guarantee.
                So does a companion network's non-finite loss (a cooperative generator's, an
                initializer's), a ``DivergenceError`` naming its learning rate.
            WriteError: a checkpoint or a TensorBoard event could not be written (a full disk,
                its folder removed); the checkpoint it was replacing stays whole.
            ValueError: before the first step, ``n_iterations`` below :attr:`iteration`, a
                ``checkpoint_path`` that cannot be written as a file (a folder, or in a folder
                that takes no new file), or ``checkpoint_every`` without ``checkpoint_path``.
        """
        # Whole numbers: fit(2.5) trained 3 iterations, fit(-1) none and a negative
        # checkpoint_every no periodic checkpoint, each without a word.
        as_int(n_iterations, "n_iterations", minimum=0)
        as_int(checkpoint_every, "checkpoint_every", minimum=0)
        if checkpoint_every and checkpoint_path is None:
            # Else the fit trained to the end and saved nothing on the way, without a word.
            raise ValueError(f"checkpoint_every={checkpoint_every} writes checkpoints to "
                             "checkpoint_path, which is None: give checkpoint_path, or leave "
                             "checkpoint_every at 0")
        if n_iterations < self.iteration:
            # Else nothing trained and nothing saved, without a word: a resumed trainer asked
            # for fewer iterations than it holds, taken for a number of further ones.
            raise ValueError(f"fit trains up to iteration n_iterations, and this trainer is at "
                             f"iteration {self.iteration}, past n_iterations={n_iterations}: "
                             f"for {n_iterations} more, fit({self.iteration + n_iterations})")
        self.check_length(n_iterations)
        main = self.world is None or self.world.is_main
        if checkpoint_path is not None and main:
            # Else a folder given there (a run's out_dir) failed at the first checkpoint, after
            # the training up to it: IsADirectoryError, the whole fit's with checkpoint_every 0.
            check_output(checkpoint_path, "checkpoint_path", folder=False)
        progress = progress and main
        # A resumed run hides what a killed one logged after its checkpoint: those iterations
        # are taken again, and TensorBoard would show two curves over them.
        logging = (summary_writer(log_dir, purge_step=self.iteration + 1 if self.iteration > 0
                                  else None)
                   if log_dir is not None and main else nullcontext())
        history = []
        with logging as writer, closing(progress_bar(total=n_iterations, initial=self.iteration,
                                                     disable=not progress, desc="train")) as bar:
            while self.iteration < n_iterations:
                # A step's own DivergenceError (a companion's loss) is told what is kept too.
                stats = self._diverged_saying_what_is_kept(self.step)
                self._diverged_saying_what_is_kept(partial(self.check_divergence, stats))
                history.append(stats)
                # A JEM step without its contrastive term has no e_pos / e_neg.
                # Shown at the bar's next redraw: refreshed here, it redrew every iteration,
                # whatever the bar's mininterval. Set before the update, whose redraw (when
                # mininterval is up) showed this iteration's count with the last one's values.
                bar.set_postfix({key: f"{stats[key]:.3g}" for key in ("loss", "e_pos", "e_neg")
                                 if key in stats}, refresh=False)
                bar.update(1)
                if writer is not None:
                    for key, value in stats.items():
                        writer.add_scalar(f"train/{key}", value, self.iteration)
                    if on_log is not None:
                        on_log(writer, self)
                if on_iteration is not None:
                    on_iteration(self, stats)
                due = checkpoint_every > 0 and self.iteration % checkpoint_every == 0
                if checkpoint_path is not None and (due or self.iteration == n_iterations):
                    self._diverged_saying_what_is_kept(self.check_saved_model)
                    self.save(checkpoint_path)
                    if on_checkpoint is not None:
                        on_checkpoint(self)
        return history

    def _diverged_saying_what_is_kept(self, check: Callable[[], Any]) -> Any:
        """Run ``check`` and return what it returns; its :class:`DivergenceError` gains which
        checkpoint holds the last good model and what to change."""
        try:
            return check()
        except DivergenceError as err:
            kept = ("no checkpoint was written" if self.saved_path is None else
                    f"{self.saved_path} keeps iteration {self.saved_iteration}, the last good "
                    "model")
            advice = err.advice or self.divergence_advice
            raise DivergenceError(f"{err}; {kept} ({advice})", advice=advice) from None


def cosine_lr(lr: float, iteration: int, n_iterations: int) -> float:
    """The cosine schedule's rate for ``iteration`` of ``n_iterations``, ``lr * (1 + cos(pi *
    iteration / n_iterations)) / 2``: from the iteration count, so a resumed run continues the
    same schedule (a run resumed with a larger ``n_iterations`` follows the schedule stretched
    to it, so its rate rises again)."""
    return lr * 0.5 * (1 + math.cos(math.pi * iteration / n_iterations))


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any],
                   settings: dict[str, Any]) -> None:
    """Continue ``optimizer``'s moments from a checkpoint's ``state`` with this run's
    ``settings`` (a resume with ``--set train.lr=...`` must use that rate, not silently keep
    the checkpoint's)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group.update(settings)
        # torch keeps a plain (neither capturable nor fused) Adam's step counts on the host
        # and reads them there at every update; a checkpoint loaded onto a GPU leaves them on
        # it, one synchronisation per parameter per step.
        if group.get("capturable") or group.get("fused"):
            continue
        for param in group["params"]:
            moments = optimizer.state.get(param, {})
            if isinstance(moments.get("step"), Tensor):
                moments["step"] = moments["step"].cpu()


class Companion:
    """A second network a trainer optimises beside its energy (a cooperative generator, a
    learned initializer): its own Adam, and its weights, config and optimizer state in the
    trainer's checkpoints under ``<name>_model``, ``<name>_config`` and ``<name>_optimizer``.

    Args:
        name: the keys' prefix, and what messages call the network.
        net: the network; its ``config`` (plain data) must rebuild it.
        lr_setting: the config key of its learning rate, which a divergence of its weights
            names.
        missing: the message of a resume from a checkpoint that holds no such network.
        adam: Adam's settings (``lr``, ``betas``); a resumed run keeps these, not the
            checkpoint's, as :class:`Trainer` does.
    """

    def __init__(self, name: str, net: torch.nn.Module, *, lr_setting: str, missing: str,
                 **adam: Any) -> None:
        self.name, self.net, self.missing, self.settings = name, net, missing, adam
        self.lr_setting = lr_setting
        self.optimizer = torch.optim.Adam(net.parameters(), **adam)

    def state_dict(self) -> dict[str, Any]:
        return {f"{self.name}_model": self.net.state_dict(),
                f"{self.name}_config": self.net.config,
                f"{self.name}_optimizer": self.optimizer.state_dict()}

    def check(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` holds this same network (before the trainer
        loads anything, so a refused resume changes nothing)."""
        if f"{self.name}_model" not in state:
            raise ValueError(self.missing)
        held = state.get(f"{self.name}_config")
        if held != self.net.config:
            raise ValueError(f"the checkpoint's {self.name} {held} is not the one this config "
                             f"builds ({self.net.config}); {RESUME_ADVICE}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state[f"{self.name}_model"])
        load_optimizer(self.optimizer, state[f"{self.name}_optimizer"], self.settings)

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        """The network's weights, each named ``<name>/<its own name>``."""
        return [(f"{self.name}/{key}", p) for key, p in self.net.named_parameters()]


def companion_from_state(state: dict[str, Any], name: str, build: Callable[[Any], Any],
                         checkpoint: str | Path, *, missing: str) -> Any:
    """The :class:`Companion` network ``name`` of a loaded checkpoint, rebuilt by
    ``build(config)`` (eval mode, on CPU).

    Raises:
        CheckpointError: ``missing`` when the checkpoint holds none, or a message saying it is
            not loadable.
    """
    if f"{name}_model" not in state:
        raise CheckpointError(missing)
    check_finite_weights(state[f"{name}_model"], checkpoint)
    try:
        net = rebuild(build, state[f"{name}_config"])
        load_weights(net, state[f"{name}_model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds no loadable {name}: {err}"
                              ) from err
    return net.eval()


def _weights_in(state: dict[str, Any], key: str) -> dict[str, Any]:
    """The ``state_dict`` a checkpoint ``state`` holds under ``key`` (``{}`` where it holds
    none, or no dict)."""
    weights = state.get(key)
    return weights if isinstance(weights, dict) else {}


def _check_data(data: Tensor) -> None:
    """``ValueError`` unless the training examples ``data`` are floating point and finite: an
    integer dtype failed in the first step naming the chains' start or noise, not the data; a
    NaN or infinite entry stopped it as a chain that "diverged at step 0" (chains started from
    the data or its coarser grids), advising a smaller step size."""
    if not data.is_floating_point():
        raise ValueError(f"data must be floating point examples, got {data.dtype} (convert "
                         f"it first, e.g. data.float())")
    check_not_meta(data, "data")  # which holds no values to check
    finite = torch.isfinite(data)  # one mask of the data's size, for the whole check
    if not bool(finite.all()):
        bad = data.numel() - int(finite.sum())
        raise ValueError(f"data holds {bad} NaN or infinite values (of {data.numel()}): "
                         "training examples must be finite")


def _check_trainable(energy: object) -> None:
    """``ValueError`` unless ``energy`` is a module with parameters, which Adam can learn: a
    plain function failed in ``energy.parameters()`` ("'function' object has no attribute
    'parameters'"), a module without any in Adam ("optimizer got an empty parameter list")."""
    if not (isinstance(energy, torch.nn.Module) and next(energy.parameters(), None) is not None):
        what = ("an nn.Module without parameters" if isinstance(energy, torch.nn.Module)
                else type(energy).__name__)
        raise ValueError(f"the energy to train must be an nn.Module with parameters, got {what} "
                         "(a fixed energy needs no training: sample it with sampler.run)")


def _check_pieces(sampler: object, chains: object) -> None:
    """``ValueError`` unless ``sampler`` has a ``run`` and ``chains`` is a chain start (what
    every step reads of a :class:`~stgconv.mcmc.starts.ChainStart`; a start of the caller's
    own that keeps nothing for checkpoints still trains): a ``NoiseInit`` given for
    ``NoiseStart(NoiseInit())``, or the two swapped, failed as "'NoiseInit' object has no
    attribute 'chains_per_example'"."""
    check_sampler(sampler, "sampler")
    methods = ("start", "constraint", "keep")
    if not (all(callable(getattr(chains, name, None)) for name in methods)
            and hasattr(chains, "chains_per_example")):
        name = type(chains).__name__
        wrap = (f" (which says where fresh chains start: pass NoiseStart({name}(...)), or "
                f"PersistentChains or ReplayBuffer built with it)"
                if isinstance(chains, (NoiseInit, DataGaussian)) else "")
        raise ValueError(f"chains must be a chain start (NoiseStart, DataStart, PersistentChains, "
                         f"ReplayBuffer, ...), got {name}{wrap}")


def _model_config(energy: torch.nn.Module) -> dict[str, Any]:
    """What rebuilds ``energy`` (its ``config``, plain data), stored in checkpoints; ``{}`` for
    a module of the caller's own, which has none (its trainer failed at the first checkpoint,
    after the training): its checkpoints resume into the same module, which the caller
    builds."""
    return getattr(energy, "config", {})


class Trainer(FitLoop):
    """Fits ``energy`` to ``data`` by maximum likelihood with MCMC samples.

    Args:
        energy: the model, an ``nn.Module`` ``(B, *S) -> (B,)``; its parameters are optimised
            with Adam. Its ``config`` (plain data, where it has one) is stored in checkpoints.
        sampler: any sampler (``Langevin``, ``MALA``, ``HMC``).
        chains: where each iteration's chains start (:mod:`stgconv.mcmc.starts`).
        data: ``(N, *S)`` all training examples (floating point), on the training device;
            kept detached, as data and not part of a graph.
        train: how the parameters learn: Adam's ``lr`` and ``betas``, ``batch_size`` examples
            per micro-batch (capped at ``N``), ``accumulate`` micro-batches whose gradients are
            averaged before each optimizer step, and ``energy_l2``, the weight of the
            ``mean(E^2)`` penalty that keeps energies near zero; ``n_iterations``, the run's
            length, sets the cosine schedule (``lr_decay``) and when
            :class:`~stgconv.jem.HybridTrainer` fits its out-of-distribution experts. How far
            one :meth:`fit` call trains, and the saving intervals, are the caller's.
        generator: the single source of randomness (batches, chain starts, sampler noise).
            ``None``: a new ``torch.Generator`` on the data's device at torch's fixed default
            seed, never the global one, so ``torch.manual_seed`` does not reach it and runs
            without a generator repeat each other; pass one seeded for another run.
        config: the run's settings, stored in checkpoints (``--resume`` and ``load_model``
            read them back): an ``ExperimentConfig``, or a dict of its settings as a
            config file holds them, checked as one (:func:`~stgconv.config.trainer_settings`).
        world: set when several processes train the model: ``data`` (and ``chains``) are
            then this rank's shard (:meth:`stgconv.distributed.World.shard`), the gradients are
            averaged over the ranks before each step, and checkpoints gather every rank's
            chains and generator.
    """

    def __init__(
        self,
        energy: EnergyModel,
        sampler: Sampler,
        chains: ChainStart,
        data: Tensor,
        *,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: ExperimentConfig | dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        check_tensor(data, "data")
        if data.dim() < 2 or data.shape[0] < 1:
            raise ValueError(f"data must be (N, *S) with N >= 1, got {tuple(data.shape)}")
        _check_data(data)
        _check_trainable(energy)
        _check_pieces(sampler, chains)
        if isinstance(energy, RBM):
            energy.check_training_data(data)
        if isinstance(chains, PersistentChains) and chains.n_examples != data.shape[0]:
            # More were kept without a word, never run; fewer failed at the first start whose
            # batch drew an example past them ("indices must be in 0 .. 1").
            raise ValueError(f"the persistent chains are kept for {chains.n_examples} examples, "
                             f"the data has {data.shape[0]}: build PersistentChains("
                             f"{data.shape[0]}, ...), one set of chains per training example")
        self.energy = energy
        self.sampler = sampler
        self.chains = chains
        # Detached: data that required grad (computed from a tensor of the caller's that did)
        # failed in the second step's backward ("Trying to backward through the graph a second
        # time"), and a leaf of the caller's gathered every step's gradient in its .grad.
        self.data = data.detach()
        train = section_or_default(train, TrainConfig, "train")
        self.batch_size = min(train.batch_size, data.shape[0])
        check_entries((self.batch_size * chains.chains_per_example, *data.shape[1:]),
                      f"a batch of {self.batch_size} examples with {chains.chains_per_example} "
                      "chains each (train.batch_size, chains.chains_per_example)")
        self.accumulate = train.accumulate
        self.energy_l2 = train.energy_l2
        check_generator(generator, type(self).__name__)  # kept: else it failed in a later step
        self.generator = generator if generator is not None else torch.Generator(data.device)
        self.optimizer = torch.optim.Adam(energy.parameters(), lr=train.lr, betas=train.betas)
        self.optimizer_settings = {"lr": train.lr, "betas": tuple(train.betas)}
        self.lr, self.n_iterations, self.lr_decay = train.lr, train.n_iterations, train.lr_decay
        self.config = trainer_settings(config, type(self).__name__)
        self.world = world
        self.iteration = 0
        self.last_samples: Tensor | None = None
        self.last_data: Tensor | None = None

    def draw_batches(self) -> list[Tensor]:
        """Dataset indices ``(batch_size,)`` of each of the ``accumulate`` micro-batches."""
        return [
            torch.randperm(self.data.shape[0], generator=self.generator,
                           device=self.generator.device)[: self.batch_size].to(self.data.device)
            for _ in range(self.accumulate)
        ]

    def check_batches(self, batches: Sequence[Any]) -> list[Tensor]:
        """``batches`` given to :meth:`step` as :meth:`draw_batches` makes them: a list of
        micro-batches, each dataset indices ``(batch_size,)`` (a tensor, array or list of
        integers) in ``[0, N)``, as int64 tensors on the data's device; ``ValueError`` naming
        what is not. One tensor of indices instead of a list of them was taken as that many
        micro-batches of one example, each failing as an input "of shape (1, 16, 16)", and an
        index past the data failed in torch's indexing words."""
        if isinstance(batches, Tensor) or not isinstance(batches, Sequence) or not batches:
            got = "an empty list" if isinstance(batches, list) else type(batches).__name__
            raise ValueError(f"batches must be a non-empty list of micro-batches, each dataset "
                             f"indices (batch_size,) (e.g. [indices]), got {got}")
        checked, n = [], len(self.data)
        for number, indices in enumerate(batches):
            indices = torch.as_tensor(indices, device=self.data.device)
            if (indices.dim() != 1 or len(indices) == 0 or indices.is_floating_point()
                    or indices.dtype == torch.bool):
                raise ValueError(f"micro-batch {number} must be integer dataset indices of "
                                 f"shape (batch_size,), got {indices.dtype} of shape "
                                 f"{tuple(indices.shape)}")
            if not bool(((indices >= 0) & (indices < n)).all()):
                raise ValueError(f"micro-batch {number} holds indices outside [0, {n}) (the "
                                 f"training data's {n} examples)")
            checked.append(indices.long())
        return checked

    @training_step
    def step(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """One optimizer update; returns the loss and mean energies of data and samples.

        A step stopped part way (a chain that diverged, an interrupt) leaves the weights, Adam's
        state and :attr:`iteration` as they were, so it can be taken again (with a smaller step
        size, say); the generator has moved on, so the retry draws afresh, and the chains of the
        micro-batches already sampled are kept.

        Args:
            batches: dataset indices ``(batch_size,)`` of each micro-batch (default:
                :meth:`draw_batches`).
        """
        totals = self.compute_gradients(batches)
        self.apply_gradients()
        return totals

    def compute_gradients(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """The first half of :meth:`step`: samples every micro-batch of ``batches`` (as
        :meth:`step`'s) and leaves the loss's gradient in the weights' ``.grad``, the weights,
        Adam's state and :attr:`iteration` untouched; returns :meth:`step`'s statistics. Needs
        autograd on (:func:`training_step`)."""
        # Else the net refused the chains, an x never passed (clips read as numpy's float64
        # beside a float32 net). At each step, not when built: a model may be converted since.
        check_dtype(self.data, next(self.energy.parameters()).dtype, "data")
        batches = self.draw_batches() if batches is None else self.check_batches(batches)
        self.optimizer.zero_grad(set_to_none=True)
        totals = {"loss": 0.0, "e_pos": 0.0, "e_neg": 0.0}
        for indices in batches:
            x_pos = self.data[indices]
            x0 = self.chains.start(x_pos, indices, generator=self.generator)
            x_neg = self.sampler.run(self.energy, x0, constraint=self.chains.constraint(x_pos),
                                     generator=self.generator)
            self.chains.keep(x_neg)
            loss, stats = contrastive_divergence(self.energy, x_pos, x_neg,
                                                 energy_l2=self.energy_l2)
            (loss / len(batches)).backward()
            totals["loss"] += loss.item() / len(batches)
            totals["e_pos"] += stats["e_pos"].item() / len(batches)
            totals["e_neg"] += stats["e_neg"].item() / len(batches)
            self.last_samples, self.last_data = x_neg, x_pos
        if self.world is not None:
            self.world.average_gradients(self.energy.parameters(), weight=self.batch_size)
            totals = self.world.average(totals, weight=self.batch_size)
        return totals

    def apply_gradients(self) -> None:
        """The second half of :meth:`step`: one Adam step (at the schedule's rate) with the
        gradients :meth:`compute_gradients` left, and :attr:`iteration` counted on."""
        self.check_length(self.iteration + 1)
        if self.lr_decay == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = cosine_lr(self.lr, self.iteration, self.n_iterations)
        self.optimizer.step()
        self.iteration += 1

    def check_length(self, n_iterations: int) -> None:
        """``ValueError`` past :attr:`n_iterations` under the cosine schedule, which ends there
        at rate 0: past it ``cos`` climbs again, and ``fit(4)`` of a trainer built for 2
        iterations took its last steps at rates rising back to ``lr``, without a word."""
        if self.lr_decay == "cosine" and n_iterations > self.n_iterations:
            raise ValueError(
                f"training to iteration {n_iterations} runs past n_iterations="
                f"{self.n_iterations}, where the cosine learning-rate schedule (lr_decay) ends "
                f"at rate 0 and past which it would rise again: build the trainer with "
                f"n_iterations={n_iterations} (a resumed run then follows the schedule stretched "
                "to it)")

    def state_dict(self, *, random_state: bool = True) -> dict[str, Any]:
        """Everything a resume needs; ``random_state=False`` leaves out the generator's state
        (a grid of a :class:`MultiGridTrainer`, which shares its trainer's generator, saved
        once)."""
        chains = self.chains.state_dict()
        if self.world is not None:
            every_rank = self.world.gather(chains)
            chains = merge_chain_states(every_rank) if every_rank is not None else {}
        init = getattr(self.chains, "init", None)
        return {
            "iteration": self.iteration,
            "model": self.energy.state_dict(),
            "model_config": _model_config(self.energy),
            "optimizer": self.optimizer.state_dict(),
            "chains": chains,
            # Synthesis starts where training's fresh chains did.
            **({"init": init.state_dict()} if isinstance(init, DataGaussian) else {}),
            **(gather_generators(self.generator, self.world) if random_state else {}),
            "config": self.config,
        }

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless :meth:`state_dict`'s ``state`` is of this trainer's
        networks and examples; changes nothing."""
        if "grids" in state:  # else "another network (differing: model_config)", of none
            raise ValueError(f"the checkpoint is a multi-grid run's (one model per grid), this "
                             f"run trains one model: {RESUME_ADVICE}")
        own = getattr(self, "companion", None)
        dropped = [key.removesuffix("_model") for key in state
                   if key.endswith("_model") and key != "model"
                   and (own is None or key != f"{own.name}_model")]
        if dropped:
            raise ValueError(f"the checkpoint also holds a trained {dropped[0]} net, which this "
                             f"run does not train (its next checkpoint would lose it): "
                             f"{RESUME_ADVICE}")
        own_config = _model_config(self.energy)
        if state.get("model_config") != own_config:
            keys = differing_keys(state.get("model_config"), own_config)
            raise ValueError(
                f"the checkpoint holds another network than this config builds (differing: "
                f"{', '.join(keys) or 'model_config'}); {RESUME_ADVICE}"
            )
        chains = state["chains"].get("chains", state["chains"].get("samples"))
        example = tuple(self.data.shape[1:])
        held = None if chains is None else tuple(chains.shape[chains.dim() - len(example):])
        if held is not None and held != example:
            raise ValueError(
                f"the checkpoint's chains are of shape {held}, this run's examples {example} "
                f"(another data.size, data.frames or data set than the run's): {RESUME_ADVICE}")
        # Else the resume went through and the first step failed: a network's dtype check
        # named an x the caller never passed, a replay buffer refused the chains it had run.
        if chains is not None and chains.dtype != self.data.dtype:
            raise ValueError(f"the checkpoint's chains are {chains.dtype}, this run's examples "
                             f"{self.data.dtype}: train on examples of the checkpoint's dtype "
                             f"(data.to({chains.dtype})), or start a new run")

    def load_state_dict(self, state: dict[str, Any], *, random_state: bool = True) -> None:
        """Continue from :meth:`state_dict`'s ``state``; ``random_state=False`` leaves the
        generator as it is."""
        self.check_state(state)
        # The chains first: they check their count against this run's examples and change
        # nothing when they refuse, so a refused resume leaves the weights as they were.
        capacity = self.chains.capacity if isinstance(self.chains, ReplayBuffer) else None
        self.chains.load_state_dict(shard_chain_state(state["chains"], self.world,
                                                      capacity=capacity))
        if state["chains"] and not self.chains.state_dict():
            warnings.warn(f"the checkpoint's training chains ({', '.join(state['chains'])}) are "
                          "not of this run's chains.mode: its chains start afresh", stacklevel=3)
        self.energy.load_state_dict(state["model"])
        load_optimizer(self.optimizer, state["optimizer"], self.optimizer_settings)
        if random_state:
            take_generator(self.generator, state, self.world)
        self.iteration = int(state["iteration"])

    def probes(self) -> list[tuple[EnergyFn, Tensor]]:
        return [(self.energy, x) for x in (self.last_data, self.last_samples) if x is not None]

    def saved_weights(self, state: dict[str, Any]) -> dict[str, Any]:
        return _weights_in(state, "model")

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        return list(self.energy.named_parameters())

    @property
    def device(self) -> torch.device:
        return self.data.device


class CompanionTrainer(Trainer):
    """A :class:`Trainer` that optimises a second network beside its energy: subclasses set
    ``self.companion`` (a :class:`Companion`) in their ``__init__``; checkpoints, resumes and
    the parameter checks then cover both networks."""

    companion: Companion

    def state_dict(self, *, random_state: bool = True) -> dict[str, Any]:
        return {**super().state_dict(random_state=random_state), **self.companion.state_dict()}

    def load_state_dict(self, state: dict[str, Any], *, random_state: bool = True) -> None:
        self.companion.check(state)  # before anything is loaded: a refused resume changes nothing
        super().load_state_dict(state, random_state=random_state)
        self.companion.load_state_dict(state)

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        return [*self.energy.named_parameters(), *self.companion.named_parameters()]

    def saved_weights(self, state: dict[str, Any]) -> dict[str, Any]:
        own = self.companion.name
        return {**super().saved_weights(state),
                **{f"{own}/{key}": w for key, w in _weights_in(state, f"{own}_model").items()}}

    def advice_for(self, weight: str) -> str:
        if weight.startswith(f"{self.companion.name}/"):
            return f"lower {self.companion.lr_setting}"
        return super().advice_for(weight)


class MultiGridTrainer(FitLoop):
    """Multi-grid learning (Gao et al. 2018): one energy per grid of a block-average pyramid.

    Every iteration draws one batch of examples; each grid's model takes one :class:`Trainer`
    step on the examples at its own grid, with chains started from the nearest up-sampling of
    their next coarser grid (:class:`stgconv.mcmc.starts.CoarseStart`; with ``consistent``,
    :class:`~stgconv.mcmc.starts.SuperResolutionStart`, whose chains keep that grid's block
    means). The grids learn independently, which is what lets the coarse-to-fine sampler chain
    them.

    Args:
        energies: one model per modelled grid, coarse to fine.
        samplers: one sampler per modelled grid.
        data: ``(N, *lead, *S)`` training examples at the finest grid.
        grid_sizes: trailing sizes of the base grid and of every modelled grid, coarse to fine
            (``len(energies) + 1`` entries, the last equal to ``S``), e.g.
            ``[(1, 1), (4, 4), (16, 16), (64, 64)]``.
        consistent: each grid learns to refine its coarser grid without moving its block
            means (``multigrid.consistent``; sample with a consistent
            :class:`~stgconv.mcmc.MultiGridSampler`).
        train, generator, config, world: as :class:`Trainer` (every grid learns with ``train``;
            with a ``world``, ``data`` is this rank's shard).
    """

    divergence_advice = MULTIGRID_ADVICE

    def __init__(
        self,
        energies: Sequence[EnergyModel],
        samplers: Sequence[Sampler],
        data: Tensor,
        grid_sizes: Sequence[Sequence[int]],
        *,
        consistent: bool = False,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: ExperimentConfig | dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        if not energies:  # else accepted, and the first step indexed an empty list of trainers
            raise ValueError("a multi-grid trainer needs at least one modelled grid (one energy "
                             "and one sampler)")
        if not len(energies) == len(samplers) == len(grid_sizes) - 1:
            raise ValueError(f"{len(energies)} energies, {len(samplers)} samplers and "
                             f"{len(grid_sizes)} grid sizes: expected one energy and one sampler "
                             "per modelled grid and the base grid's size first")
        for i, size in enumerate(grid_sizes):  # a bare 4 failed: "'int' is not iterable"
            if not hasattr(size, "__iter__"):  # lists, tuples, arrays of sizes pass
                raise ValueError(f"grid_sizes[{i}] must be the trailing sizes of a grid, one per "
                                 f"dim, e.g. (4, 4) for images, got {size!r}")
        # as_int, not int(): a size of 4.5 was truncated to 4, a grid nobody asked for.
        grid_sizes = [tuple(as_int(n, f"grid_sizes[{i}] {tuple(size)}: a size", minimum=1)
                            for n in size) for i, size in enumerate(grid_sizes)]
        for k in range(1, len(grid_sizes)):
            # Else its chains started at the examples themselves (the nearest up-sampling of
            # their own block means), and its model learned from chains that never left them;
            # a config's multigrid section is refused alike.
            if grid_sizes[k] == grid_sizes[k - 1]:
                raise ValueError(f"grid_sizes[{k}] {grid_sizes[k]} is no finer than the grid "
                                 f"below it: each modelled grid must refine the last")
        check_tensor(data, "data")
        _check_data(data)  # else block_down refused it, naming its own argument x
        if data.dim() < 2 or tuple(data.shape[-len(grid_sizes[-1]):]) != grid_sizes[-1]:
            raise ValueError(f"data {tuple(data.shape)} must be (N, ..., {grid_sizes[-1]}) at the "
                             "finest grid")
        # Detached as Trainer detaches its data: every grid's level shared one graph, and the
        # second grid's backward failed through it in the first step.
        levels = pyramid(data.detach(), grid_sizes)
        self.grid_sizes = grid_sizes
        self.base = levels[0]
        check_generator(generator, "MultiGridTrainer")  # kept: else it failed in a later step
        self.generator = generator if generator is not None else torch.Generator(data.device)
        self.config = trainer_settings(config, "MultiGridTrainer")
        self.world = world
        start = partial(SuperResolutionStart, upsample="nearest") if consistent else CoarseStart
        self.trainers = [
            Trainer(energy, sampler, start(factor_between(fine, coarse)), level,
                    train=train, generator=self.generator, world=world)
            for energy, sampler, coarse, fine, level
            in zip(energies, samplers, grid_sizes[:-1], grid_sizes[1:], levels[1:])
        ]
        self.iteration = 0

    @property
    def energies(self) -> list[EnergyModel]:
        return [trainer.energy for trainer in self.trainers]

    def check_length(self, n_iterations: int) -> None:
        """As every grid's :meth:`Trainer.check_length`: without it, ``fit(4)`` of a trainer
        built for 2 iterations under the cosine schedule took 2 steps, then refused the third
        as each grid's update checks it, advising ``n_iterations=3``."""
        for trainer in self.trainers:
            trainer.check_length(n_iterations)

    @property
    def last_samples(self) -> list[Tensor] | None:
        """Every modelled grid's chains of the last step that finished, coarse to fine:
        ``(M, *S_k)`` on grid ``k`` (``M`` chains of the step's last micro-batch)."""
        samples = [trainer.last_samples for trainer in self.trainers]
        return None if any(x is None for x in samples) else samples  # type: ignore[misc]

    @training_step
    def step(self) -> dict[str, float]:
        """One update of every grid's model on the same examples. Returns the finest grid's
        ``loss``, ``e_pos``, ``e_neg`` and every grid's under ``grid<k>/``.

        No grid's model moves until every grid's chains have run: a step stopped part way (a
        chain that diverged on one grid, an interrupt) leaves every grid as it was, as
        :meth:`Trainer.step` does. Stepped grid by grid, the grids before a diverging one had
        taken their update, and a retried step gave them a second: their models, Adam's state
        and iteration counts stayed one step ahead of the others from then on."""
        batches = self.trainers[0].draw_batches()
        stats: dict[str, float] = {}
        last = [(trainer.last_samples, trainer.last_data) for trainer in self.trainers]
        try:
            for k, trainer in enumerate(self.trainers, start=1):
                try:
                    grid_stats = trainer.compute_gradients(batches)
                except NonFiniteEnergyError as err:
                    raise on_grid(err, k, self.grid_sizes[k]) from err
                stats.update({f"grid{k}/{key}": value for key, value in grid_stats.items()})
        except BaseException:
            # The last finished step's chains on every grid, as its weights: last_samples held
            # the stopped step's on the grids before the one that stopped it, older ones after.
            for trainer, (samples, data) in zip(self.trainers, last):
                trainer.last_samples, trainer.last_data = samples, data
            raise
        # The same update as stepping the grids one by one: a grid's update changes nothing
        # that another grid's chains or gradients read.
        for trainer in self.trainers:
            trainer.apply_gradients()
        stats.update(grid_stats)
        self.iteration += 1
        return stats

    def state_dict(self) -> dict[str, Any]:
        base = self.base
        if self.world is not None:  # synthesis draws from every example's base value
            every_rank = self.world.gather(base)
            base = interleave(every_rank).to(base.device) if every_rank is not None else base
        return {
            "iteration": self.iteration,
            "grids": [trainer.state_dict(random_state=False) for trainer in self.trainers],
            "grid_sizes": [list(size) for size in self.grid_sizes],
            "base": base,
            **gather_generators(self.generator, self.world),
            "config": self.config,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        grids = state.get("grids")
        if not isinstance(grids, list) or len(grids) != len(self.trainers):
            held = len(grids) if isinstance(grids, list) else "no"
            raise ValueError(f"the checkpoint holds {held} grids, "
                             f"this run has {len(self.trainers)}")
        held_sizes = [tuple(size) for size in state.get("grid_sizes", [])]
        if held_sizes != self.grid_sizes:  # stationary nets would load onto other grids
            raise ValueError(f"the checkpoint's grids are {held_sizes}, this run's "
                             f"{self.grid_sizes} (multigrid.base_size and each "
                             f"multigrid.grids[i].size): {RESUME_ADVICE}")
        # Every grid checked before any loads: a resume refused on a finer grid had loaded the
        # coarser grids' weights, Adam's state and iteration already.
        for trainer, grid in zip(self.trainers, grids):
            trainer.check_state(grid)
        for trainer, grid in zip(self.trainers, grids):
            trainer.load_state_dict(grid, random_state=False)
        take_generator(self.generator, state, self.world)
        self.iteration = int(state["iteration"])

    def probes(self) -> list[tuple[EnergyFn, Tensor]]:
        return [probe for trainer in self.trainers for probe in trainer.probes()]

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        return [(f"grid{k}/{name}", p) for k, trainer in enumerate(self.trainers, start=1)
                for name, p in trainer.named_parameters()]

    def saved_weights(self, state: dict[str, Any]) -> dict[str, Any]:
        grids = state.get("grids")
        if not isinstance(grids, list):
            return {}
        return {f"grid{k}/{key}": w
                for k, (trainer, grid) in enumerate(zip(self.trainers, grids), start=1)
                if isinstance(grid, dict) for key, w in trainer.saved_weights(grid).items()}

    @property
    def device(self) -> torch.device:
        return self.base.device
