"""JEM training (Grathwohl et al., ICLR 2020) on the same engine as the descriptors: a classifier
read as an energy learns ``p(y | x)`` by cross-entropy and ``p(x)`` (optionally ``p(x, y)``) by
the contrastive term, its negative samples drawn by the experiment's sampler from the chain
starts of the ``chains`` section (JEM's own setting: the replay buffer, 95% stored chains and 5%
fresh uniform noise, SGLD with gradient step 1 and noise 0.01).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stgconv.checks import as_int, check_classes, check_tensor
from stgconv.config import (ExperimentConfig, JEMConfig, TrainConfig, check_px_batch,
                            check_shift, section_or_default)
from stgconv.distributed import World
from stgconv.energy.classifier import ClassifierEnergy
from stgconv.evaluation.ood import score_images, scoring_expert
from stgconv.losses import hybrid_loss
from stgconv.mcmc.base import Sampler
from stgconv.mcmc.init import DataGaussian
from stgconv.mcmc.starts import ChainStart
from stgconv.ops import random_shift
from stgconv.train import DivergenceError, Trainer

# What to change when the p(x) term runs away, from the JEM paper's own advice on its
# instability: smaller steps, longer chains (so the samples keep up with the model), and the
# energy penalty that keeps energies near zero.
JEM_ADVICE = ("lower train.lr, raise sampler.n_steps or set train.energy_l2 (e.g. 0.1); "
              "jem.px_weight 0 trains the plain classifier")

FEATURE_FIT_PER_CLASS = 500
"""Examples of each class that :func:`fit_feature_reference` reads: enough for 64 principal
directions of a class, and the fit of MNIST's 6272 features then costs about 10 CPU seconds."""


def class_examples(labels: Tensor, per_class: int, *, skip: int = 0,
                   order: Tensor | None = None, or_first: bool = False) -> Tensor:
    """Indices ``(M,)`` of up to ``per_class`` examples of each class of ``labels`` ``(N,)``
    (``0 .. K - 1``), each class's ``skip`` first passed over, taken in ``order`` (a
    permutation ``(N,)`` of the examples; default the data's own order). ``or_first``: a class
    with no example after its ``skip`` gives its first ones instead.

    Raises:
        ValueError: ``per_class`` not an int >= 1 or ``skip`` not an int >= 0 (slices of a
            negative one took all but the last examples, or none, without a word).
    """
    per_class = as_int(per_class, "per_class", minimum=1)
    skip = as_int(skip, "skip", minimum=0)
    order = torch.arange(len(labels), device=labels.device) if order is None else order
    ordered = labels[order]
    picked = []
    for k in range(int(labels.max()) + 1):
        members = order[torch.nonzero(ordered == k)[:, 0]]
        start = 0 if or_first and len(members) <= skip else skip
        picked.append(members[start:start + per_class])
    return torch.cat(picked)


@torch.no_grad()
def fit_feature_reference(energy: ClassifierEnergy, data: Tensor, labels: Tensor, *, rank: int,
                          per_class: int = FEATURE_FIT_PER_CLASS, order: Tensor | None = None,
                          batch_size: int = 500) -> DataGaussian:
    """One Gaussian per class over the penultimate features (:meth:`ClassifierEnergy.features`)
    of ``per_class`` examples of each class of ``data`` ``(N, *S)``, ``labels`` ``(N,)``
    (``0 .. K - 1``; the first in ``order``, :func:`class_examples`), with ``rank`` principal
    directions each: a density ``(F,)`` of what the trained network has learnt to tell apart,
    for eval ood's score.

    Raises:
        ValueError: a classifier without features, a class with fewer than 2 examples, or
            ``batch_size`` not an int >= 1.
    """
    batch_size = as_int(batch_size, "batch_size", minimum=1)  # else torch's split, unnamed
    picked = class_examples(labels, per_class, order=order)
    features = torch.cat([energy.features(batch) for batch in data[picked].split(batch_size)])
    return DataGaussian.fit(features, labels[picked], rank=rank)


def fit_ood_weights(energy: ClassifierEnergy, data: Tensor, labels: Tensor, *,
                    reference: DataGaussian | None, feature_reference: DataGaussian | None,
                    per_class: int = FEATURE_FIT_PER_CLASS,
                    fit_per_class: int = FEATURE_FIT_PER_CLASS, order: Tensor | None = None
                    ) -> dict[str, float | None]:
    """The weights ``{"reference": beta, "features": gamma}`` of eval ood's recommended score
    (:func:`stgconv.evaluation.ood.score_images`; ``None`` for an expert not given), set on
    training examples ``data`` ``(N, *S)``, ``labels`` ``(N,)``: the ``per_class`` of each
    class after the ``fit_per_class`` that :func:`fit_feature_reference` read in the same
    ``order`` (so ``log r`` spreads over them as over new data, not as over its own fit), or
    for a class with no others, those (:func:`held_examples`). So the score is one fixed
    function of an image, the same whichever inliers it is later compared on.

    Raises:
        ValueError: examples too few or too alike to weigh an expert.
    """
    picked = held_examples(labels, per_class, skip=fit_per_class, order=order)
    return score_images(energy, reference, data[picked], feature_reference=feature_reference)[2]


def held_examples(labels: Tensor, per_class: int, *, skip: int, order: Tensor | None = None
                  ) -> Tensor:
    """:func:`class_examples` after each class's ``skip`` first (those a fit read), or for a
    class with none after them its first ones: indices ``(M,)`` into ``labels`` ``(N,)``.
    Every class weighs in: with only the classes larger than ``skip``, a temperature or weight
    set on them would be another set's."""
    return class_examples(labels, per_class, skip=skip, order=order, or_first=True)


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The temperature ``T`` for which ``softmax(logits / T)`` has the least negative
    log-likelihood of ``labels`` ``(N,)`` (``0 .. K - 1``) given ``logits`` ``(N, K)``
    (temperature scaling, Guo et al., ICML 2017): one factor on the logits, so the classes'
    order, the accuracy and every energy stay as they are. Searched on a grid of ratio 1.01
    from 1/20 to 20 (the likelihood has at most one minimum in ``T``). Where the likelihood
    still falls past an end of the grid (every example classified right: it falls as ``T``
    goes to 0), that end is returned with a warning saying so.

    Raises:
        ValueError: shapes that do not match, no examples, labels that are not integers in
            ``0 .. K - 1``, or a logit that is not finite (every temperature's likelihood would
            be NaN, and the grid's end would win).
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1] or len(labels) == 0:
        raise ValueError(f"logits must be (N, K) and labels (N,) with N > 0, got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    # cross_entropy takes int64 and uint8 classes only ("expected target dtype to be Long or
    # Byte, but got Int"), and names no argument for a class past K ("Target 3 is out of
    # bounds").
    check_classes(labels, "labels", n_classes=logits.shape[1])
    labels = labels.long()
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(1).sum())
        raise ValueError(f"the logits of {bad} of {len(logits)} examples are not finite: no "
                         "temperature can be fitted to them")
    # Inside the function, not as a decorator: its wrapper's frame would take the warning's
    # stacklevel, which must name the caller.
    with torch.no_grad():
        logits = logits.double()
        temperatures = torch.logspace(-1.301, 1.301, 603, dtype=torch.float64)  # 1/20 .. 20
        nll = torch.stack([F.cross_entropy(logits / t, labels) for t in temperatures])
    best = int(nll.argmin())
    if best in (0, len(temperatures) - 1):
        reason = ("every example is classified right, so sharper is always likelier"
                  if best == 0 and bool((logits.argmax(1) == labels).all()) else
                  "the logits are far from calibrated")
        warnings.warn(f"the calibration temperature is the end of its search, T = "
                      f"{float(temperatures[best]):.3g}, where the likelihood still improves "
                      f"past it ({reason}; {len(labels)} examples): p(y | x) at that T",
                      stacklevel=2)
    return float(temperatures[best])


class HybridTrainer(Trainer):
    """Fits a :class:`~stgconv.energy.classifier.ClassifierEnergy` to labelled examples with
    :func:`stgconv.losses.hybrid_loss`.

    Args:
        energy: the classifier as an energy (its ``config`` is stored in checkpoints).
        sampler, chains, train, generator, config, world: as :class:`~stgconv.train.Trainer`;
            ``chains`` must run one chain per example.
        data: ``(N, *S)`` examples; ``labels``: ``(N,)`` their classes, ``0 .. K - 1``, on the
            data's device.
        jem: the loss weights, the contrastive sub-batch and the divergence bound.
        reference: Gaussians fitted to the data for the out-of-distribution score, kept in
            checkpoints as ``"reference"`` (``jem.reference_components``, which needs one:
            the trainer fits none); not trained.

    The checkpoint of the last iteration (``train.n_iterations``, not a shorter ``fit(n)``) also
    holds what eval ood scores with, fitted to the trained network: only then, since any later
    step would make it stale. ``"temperature"`` (:func:`fit_temperature` on training examples:
    what ``p(y | x)`` is reported with); with ``jem.feature_rank`` > 0 ``"feature_reference"``
    (:func:`fit_feature_reference`), and with it or fitted pixel Gaussians (``reference``, or
    the chains' start ``chains.init: data_gaussian``) ``"ood_weights"``
    (:func:`fit_ood_weights`). With several processes they are fitted to rank 0's share of the
    examples.
    """

    def __init__(
        self,
        energy: ClassifierEnergy,
        sampler: Sampler,
        chains: ChainStart,
        data: Tensor,
        labels: Tensor,
        *,
        jem: JEMConfig | None = None,
        reference: DataGaussian | None = None,
        train: TrainConfig | None = None,
        generator: torch.Generator | None = None,
        config: ExperimentConfig | dict[str, Any] | None = None,
        world: World | None = None,
    ) -> None:
        super().__init__(energy, sampler, chains, data, train=train,  # type: ignore[arg-type]
                         generator=generator, config=config, world=world)
        check_tensor(labels, "labels")
        # Else accepted: classes on another device than the data's met the logits only in the
        # first step's loss, inside torch; on the meta device the class count's read failed
        # first ("Tensor.item() cannot be called on meta tensors").
        if labels.device != data.device:
            raise ValueError(f"labels are on {labels.device}, the data on {data.device}: move "
                             "the labels to the data's device")
        if labels.shape != data.shape[:1]:
            raise ValueError(f"labels must be ({len(data)},), one per example, got "
                             f"{tuple(labels.shape)}")
        n_classes = energy.logits(data[:1]).shape[1]
        # As hybrid_loss checks them: .long() below truncated a float 1.5 to class 1, and
        # took bool labels for classes 0 and 1, without a word.
        check_classes(labels, "labels")
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"labels must be in 0 .. {n_classes - 1} (the classifier's "
                             f"{n_classes} classes), got {int(labels.min())} .. "
                             f"{int(labels.max())}")
        if chains.chains_per_example != 1:
            raise ValueError(f"JEM runs one chain per example, got chains_per_example "
                             f"{chains.chains_per_example}")
        self.labels = labels.long()
        self.jem = section_or_default(jem, JEMConfig, "jem")
        check_px_batch(self.jem, (train if train is not None else TrainConfig()).batch_size)
        if self.jem.shift > 0:  # only images are shifted (random_shift names other shapes)
            check_shift(self.jem, min(data.shape[2:]) if data.dim() == 4 else 0,
                        "the images' smaller side")
        # The schedule Trainer.apply_gradients follows: a JEM run sets it in its own section.
        # A train section's own was replaced by it without a word (TrainConfig(lr_decay=
        # "cosine") trained at a constant rate); a config file refuses it, and so does this.
        if train is not None and train.lr_decay != "none":
            raise ValueError(f"train.lr_decay is {train.lr_decay!r}, but a JEM run's schedule is "
                             f"jem.lr_decay: set JEMConfig(lr_decay={train.lr_decay!r}) instead")
        self.lr_decay = self.jem.lr_decay
        # Fitted when training ends, by rank 0 on its share: what would fail, fails now (only
        # there: another rank's share may lack a class that rank 0's holds).
        if self.jem.feature_rank > 0 and (world is None or world.is_main):
            counts = torch.bincount(self.labels, minlength=n_classes)
            if int(counts.min()) < 2:
                k = int(counts.argmin())
                held = ("" if world is None else f" in process 0's share of the examples "
                        f"(0, {world.size}, {2 * world.size}, ...)")
                # Data of fewer classes under a config's classifier (MNIST's 10): the fix is
                # more likely the class count than dropping the fit. Not for a share, which
                # may lack classes that other processes hold.
                top, fix = int(self.labels.max()), ""
                if world is None and k > top:
                    held = f", past the labels' last class {top} of model.n_classes = {n_classes}"
                    fix = f"model.n_classes: {top + 1} or "
                raise ValueError(f"jem.feature_rank fits a Gaussian to each class's features "
                                 f"when training ends, and class {k} has {int(counts[k])} "
                                 f"examples{held} (at least 2 needed): set {fix}"
                                 "jem.feature_rank: 0")
            with torch.no_grad():
                energy.features(data[:1])
        self.px_batch = min(self.jem.px_batch or self.batch_size, self.batch_size)
        if reference is None and self.jem.reference_components > 0:
            # The trainer fits no reference: jem.reference_components was dropped without a
            # word, and the run kept no pixel expert.
            raise ValueError(f"jem.reference_components is {self.jem.reference_components}, "
                             "but the trainer fits no reference: pass reference=DataGaussian"
                             ".fit(data, labels, rank=jem.reference_rank, components=jem."
                             "reference_components), as stgconv train does")
        # Read only when training ends (the experts' weights are set then, and every save keeps
        # it): another object failed at the first save, and a fit of examples of another shape
        # at the last one, after the whole run, whose last checkpoint was then never written.
        if reference is not None and not isinstance(reference, DataGaussian):
            raise ValueError(f"reference must be a DataGaussian (DataGaussian.fit of the "
                             f"training examples), got {type(reference).__name__}")
        if reference is not None and reference.means.shape[1:] != data.shape[1:]:
            raise ValueError(f"reference is a fit of examples {tuple(reference.means.shape[1:])}, "
                             f"the data's are {tuple(data.shape[1:])}: fit it to the training "
                             "examples (DataGaussian.fit(data, labels))")
        self.reference = reference
        self._final_fit: tuple[int, dict[str, Any]] | None = None  # (iteration, states)

    def state_dict(self, *, random_state: bool = True) -> dict[str, Any]:
        state = super().state_dict(random_state=random_state)
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        main = self.world is None or self.world.is_main
        if self.iteration >= self.n_iterations and main:
            if self._final_fit is None or self._final_fit[0] != self.iteration:
                self._final_fit = (self.iteration, self._fits_or_none())
            state.update(self._final_fit[1])
        return state

    def _fits_or_none(self) -> dict[str, Any]:
        """:meth:`_final_fits`, or none of them, with a warning saying why, where they fail
        (examples too alike to weigh the experts; logits that are not finite): the fits are
        taken in the last save, and a failure there lost the whole run's end (with
        ``checkpoint_every: 0``, the whole run). eval ood reads such a checkpoint at
        temperature 1 and weighs the experts on its inliers."""
        try:
            return self._final_fits()
        except (ValueError, FloatingPointError) as err:
            warnings.warn(f"the last checkpoint is saved without the fits eval ood scores with "
                          f"(temperature, score weights): {err}", RuntimeWarning, stacklevel=2)
            return {}

    def load_state_dict(self, state: dict[str, Any], *, random_state: bool = True) -> None:
        super().load_state_dict(state, random_state=random_state)
        # The final fits are of the weights: another state at the same iteration (a resume
        # into a trainer that has finished) saved the fits of the weights it replaced.
        self._final_fit = None

    def _ood_reference(self) -> DataGaussian | None:
        """The pixel Gaussians eval ood scores with (:func:`stgconv.evaluation.ood
        .scoring_expert`)."""
        init = getattr(self.chains, "init", None)
        return scoring_expert(self.reference, init if isinstance(init, DataGaussian) else None)

    def _final_fits(self) -> dict[str, Any]:
        """The temperature of ``p(y | x)``, the trained network's feature Gaussians (with
        ``jem.feature_rank``) and the weights of eval ood's score (with an expert), as
        checkpoint entries."""
        # A random draw of each class (seeded by the run's seed), not its first examples: a
        # file's order may follow its writers (MNIST's does), and the head of each class is
        # then one stretch of them.
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(
            int(self.config.get("seed", 0)))).to(self.labels.device)
        # The examples the score's weights are set on (those after the feature fit's).
        picked = held_examples(self.labels, FEATURE_FIT_PER_CLASS, skip=FEATURE_FIT_PER_CLASS,
                               order=order)
        with torch.no_grad():
            logits = torch.cat([self.energy.logits(batch)
                                for batch in self.data[picked].split(500)])
        fitted: dict[str, Any] = {"temperature": fit_temperature(logits, self.labels[picked])}
        if self._ood_reference() is None and self.jem.feature_rank == 0:
            return fitted
        features = (fit_feature_reference(self.energy, self.data, self.labels,
                                          rank=self.jem.feature_rank, order=order)
                    if self.jem.feature_rank > 0 else None)
        fitted["ood_weights"] = fit_ood_weights(
            self.energy, self.data, self.labels, reference=self._ood_reference(),
            feature_reference=scoring_expert(features), order=order)
        if features is not None:
            fitted["feature_reference"] = features.state_dict()
        return fitted

    def _samples(self, energy: Any, x_pos: Tensor, indices: Tensor) -> Tensor:
        """Chains ``(M, *S)`` for the sub-batch ``x_pos`` ``(M, *S)``, sampled from ``energy``
        and handed back to the chain start."""
        x0 = self.chains.start(x_pos, indices, generator=self.generator)
        x_neg = self.sampler.run(energy, x0, constraint=self.chains.constraint(x_pos),
                                 generator=self.generator)
        self.chains.keep(x_neg)
        return x_neg

    def _class_samples(self, x_pos: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
        """Chains ``(M, *S)`` of the class energies ``E(x, labels)`` for the sub-batch ``x_pos``,
        each from a fresh start of its own class: the fitted Gaussian's component of the class,
        the chains' noise, or (chains from the data) the example itself. Never from or into the
        chain store (persistent chains, replay buffer): it holds the marginal's chains, of any
        class, which a class's chain must neither start from nor overwrite."""
        init = getattr(self.chains, "init", None)
        place = {"device": x_pos.device, "dtype": x_pos.dtype, "generator": self.generator}
        if init is None:
            x0 = self.chains.start(x_pos, indices, generator=self.generator)
        elif isinstance(init, DataGaussian):
            x0 = init.sample(x_pos.shape, classes=labels, **place)
        else:
            x0 = init.sample(x_pos.shape, **place)
        return self.sampler.run(self.energy.conditional(labels), x0,
                                constraint=self.chains.constraint(x_pos),
                                generator=self.generator)

    def compute_gradients(self, batches: Sequence[Tensor] | None = None) -> dict[str, float]:
        """:meth:`Trainer.compute_gradients` of JEM's loss: returns the loss, the batch's
        cross-entropy and accuracy and the mean energies of each contrastive term's data and
        samples, what :meth:`step` returns. ``batches``: dataset indices ``(batch_size,)`` of
        each micro-batch (default: :meth:`draw_batches`)."""
        batches = self.draw_batches() if batches is None else self.check_batches(batches)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for indices in batches:
            x_pos = random_shift(self.data[indices], self.jem.shift, generator=self.generator)
            y_pos = self.labels[indices]
            sub, m = indices[: self.px_batch], self.px_batch
            x_neg = (self._samples(self.energy, x_pos[:m], sub)
                     if self.jem.px_weight > 0 else None)
            x_neg_y = (self._class_samples(x_pos[:m], y_pos[:m], sub)
                       if self.jem.pxy_weight > 0 else None)
            loss, stats = hybrid_loss(self.energy, x_pos, y_pos, x_neg, x_neg_y=x_neg_y,
                                      px_weight=self.jem.px_weight,
                                      pxy_weight=self.jem.pxy_weight, energy_l2=self.energy_l2)
            (loss / len(batches)).backward()
            for key, value in {"loss": loss.detach(), **stats}.items():
                totals[key] = totals.get(key, 0.0) + value.item() / len(batches)
            self.last_samples = x_neg if x_neg is not None else x_neg_y
            self.last_data = x_pos
        if self.world is not None:
            self.world.average_gradients(self.energy.parameters(), weight=self.batch_size)
            totals = self.world.average(totals, weight=self.batch_size)
        return totals

    def check_divergence(self, stats: dict[str, float]) -> None:
        """:meth:`Trainer.check_divergence`, and JEM's own failure: the samples' mean energy
        more than ``jem.max_energy_gap`` from the data's (either term)."""
        super().check_divergence(stats)
        for pos, neg in (("e_pos", "e_neg"), ("e_pos_y", "e_neg_y")):
            if pos in stats and not abs(stats[neg] - stats[pos]) <= self.jem.max_energy_gap:
                raise DivergenceError(
                    f"JEM's contrastive term diverged at iteration {self.iteration}: the samples' "
                    f"mean energy {stats[neg]:.3g} is {abs(stats[neg] - stats[pos]):.3g} from the "
                    f"data's {stats[pos]:.3g}, past jem.max_energy_gap = "
                    f"{self.jem.max_energy_gap:g}", advice=JEM_ADVICE)
