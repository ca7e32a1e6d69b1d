"""Initial states for chains: Gaussian or uniform noise, Gaussians fitted to the data, or data
plus noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor

from stgconv.checks import as_int, check_classes, check_finite_number, check_generator
from stgconv.mcmc.base import at_least_float32


@dataclass(frozen=True)
class NoiseInit:
    """Fresh chain starts: ``"gaussian"`` N(0, scale^2) or ``"uniform"`` U(-scale, scale).

    ``scale = 0`` starts every chain at zero, the reference mean (Xie et al. start texture
    chains there).
    """

    kind: Literal["gaussian", "uniform"] = "gaussian"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("gaussian", "uniform"):
            raise ValueError(f"noise kind must be 'gaussian' or 'uniform', got {self.kind!r}")
        check_finite_number(self.scale, "noise scale")

    def sample(
        self,
        shape: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A tensor of ``shape`` (any, e.g. ``(B, *S)``) drawn from this distribution;
        ``dtype`` floating point (noise has no integer form)."""
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"noise is drawn in a floating point dtype, got {dtype}")
        check_generator(generator, "NoiseInit.sample")
        if self.kind == "gaussian":
            return self.scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.scale * (
            2 * torch.rand(shape, generator=generator, device=device, dtype=dtype) - 1)


def check_init(init: object, owner: str) -> None:
    """``ValueError`` naming ``owner`` unless ``init`` draws fresh chain starts (a
    :class:`NoiseInit`, a :class:`DataGaussian`, or another object with their ``sample``): a
    config's kind given in its place (``PersistentChains(n, "gaussian")``) was kept until the
    first start failed on "'str' object has no attribute 'sample'"."""
    if not callable(getattr(init, "sample", None)):
        kind = f" (for chains.init's kind: NoiseInit({init!r}))" if isinstance(init, str) else ""
        raise ValueError(f"{owner}: init must draw fresh chain starts (NoiseInit, DataGaussian), "
                         f"got {type(init).__name__} {init!r}{kind}")


def data_plus_noise(x: Tensor, *, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + std * eps``, ``eps ~ N(0, I)``; ``x`` ``(B, *S)`` -> ``(B, *S)``; ``std`` finite
    and ``>= 0`` (a NaN made every start NaN, reported later as a diverged chain); ``x``
    floating point unless ``std`` is 0."""
    check_finite_number(std, "std")
    check_generator(generator, "data_plus_noise")  # std 0 draws nothing: refused all the same
    if std == 0:
        return x.clone()
    if not x.is_floating_point():
        raise ValueError(f"noise is added to floating point data, got {x.dtype}")
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class DataGaussian:
    """Fresh chain starts drawn from Gaussians fitted to the training data, one per class when
    labels are given: JEM++'s informative initialisation (Yang & Ji, ICCV 2021), which starts
    short chains near the data instead of in uniform noise that a few steps cannot leave.

    Each component ``k`` is the probabilistic PCA of its examples (a class, or one k-means
    cluster of a class; Tipping & Bishop's maximum-likelihood solution applied to the unbiased
    sample covariance, divided by ``n - 1``): their mean, ``rank`` leading principal
    directions, and one isotropic standard deviation for the variance they leave out (which the
    kept directions carry too). A draw is
    ``mean[k] + sum_i factors[k, i] * z_i + residual_std[k] * eps``.

    Args:
        means: ``(K, *S)`` component means.
        factors: ``(K, r, *S)`` principal directions times the standard deviations the
            isotropic part leaves to them.
        residual_std: ``(K,)`` standard deviation of the variance the factors leave out.
        weights: ``(K,)`` mixture weights (the components' shares of the data), summing to 1.
        component_classes: ``(K,)`` the class of each component, every class ``0 .. C - 1``
            present (default: component ``k`` is class ``k``).
        noise: the share of draws of no given class that are uniform noise
            ``U(-noise_scale, noise_scale)`` instead, so that some chains also explore far from
            the data (where a model that never saw samples may put its lowest energies).
    """

    def __init__(self, means: Tensor, factors: Tensor, residual_std: Tensor, weights: Tensor,
                 *, component_classes: Tensor | None = None, noise: float = 0.0,
                 noise_scale: float = 1.0) -> None:
        # Written so NaN fails too: a NaN noise_scale made NaN chain starts.
        if not (0.0 <= noise <= 1.0 and math.isfinite(noise_scale) and noise_scale >= 0):
            raise ValueError(f"noise must be in [0, 1] and noise_scale finite and >= 0, got "
                             f"{noise}, {noise_scale}")
        self.noise, self.noise_scale = noise, noise_scale
        k = means.shape[0]
        if component_classes is None:
            component_classes = torch.arange(k, device=means.device)
        if (factors.shape[0] != k or factors.shape[2:] != means.shape[1:]
                or residual_std.shape != (k,) or weights.shape != (k,)
                or component_classes.shape != (k,)):
            raise ValueError(
                f"a data Gaussian needs means (K, *S), factors (K, r, *S), residual_std (K,), "
                f"weights (K,) and component_classes (K,), got {tuple(means.shape)}, "
                f"{tuple(factors.shape)}, {tuple(residual_std.shape)}, {tuple(weights.shape)}, "
                f"{tuple(component_classes.shape)}")
        # Else a NaN or infinite mean or direction (a damaged checkpoint's) drew NaN starts and
        # scored NaN densities, and an infinite residual_std failed in torch's Cholesky.
        for name, value in (("means", means), ("factors", factors)):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"a data Gaussian's {name} hold NaN or infinite values")
        # Else negative weights failed in the first draw inside torch.multinomial ("invalid
        # multinomial distribution"), weights of another sum drew as their shares but shifted
        # log_prob by log(sum), and a negative residual_std drew and scored as its size.
        total = float(weights.double().sum())
        tolerance = k * torch.finfo(weights.dtype).eps if weights.is_floating_point() else 0.0
        if k and not (bool((weights >= 0).all()) and abs(total - 1.0) <= tolerance):
            raise ValueError(f"weights must be >= 0 and sum to 1 (each component's share), got "
                             f"{weights.tolist()} (sum {total:.6g})")
        if not bool((residual_std >= 0).all()):  # NaN too
            raise ValueError(f"residual_std must be >= 0, got {residual_std.tolist()}")
        if not bool(torch.isfinite(residual_std).all()):
            raise ValueError("a data Gaussian's residual_std hold NaN or infinite values")
        component_classes = component_classes.long()
        n_classes = int(component_classes.max()) + 1 if k else 0
        if k and (int(component_classes.min()) < 0
                  or torch.bincount(component_classes, minlength=n_classes).min() == 0):
            raise ValueError(f"component_classes must cover every class 0 .. {n_classes - 1}, "
                             f"got {component_classes.tolist()}")
        self.means, self.factors = means, factors
        self.residual_std, self.weights = residual_std, weights
        self.component_classes, self.n_classes = component_classes, n_classes

    def __repr__(self) -> str:
        return (f"DataGaussian(components={len(self.means)}, classes={self.n_classes}, "
                f"rank={self.factors.shape[1]}, sample_shape={tuple(self.means.shape[1:])}, "
                f"noise={self.noise}, noise_scale={self.noise_scale})")

    @classmethod
    def fit(cls, data: Tensor, labels: Tensor | None = None, *, rank: int = 64,
            components: int = 1, noise: float = 0.0, noise_scale: float = 1.0,
            generator: torch.Generator | None = None) -> DataGaussian:
        """Fit to ``data`` ``(N, *S)``, ``components`` Gaussians per class of ``labels``
        ``(N,)`` (``0 .. C - 1``, each class present) or for all of it: with more than one,
        each fits one cluster of the class's k-means (seeded by ``generator``), so a class
        written in several ways gets a Gaussian per way instead of one blurred over them; a
        cluster of a single example joins its nearest neighbour's, so a class may get fewer.
        ``noise``, ``noise_scale`` as the constructor's.

        Each component keeps ``min(rank, n - 2)`` directions, ``n`` its examples (zero
        directions pad the others to the most kept): ``n`` examples span ``n - 1``
        directions, and keeping all of them would leave no variance for the isotropic rest
        (no density, :meth:`log_prob`).

        Raises:
            ValueError: data that is not floating point, fewer than 2 examples (of any
                class), NaN or infinite data, labels that are not ``(N,)`` integers from 0, a
                negative ``rank``, ``components < 1``.
        """
        # as_int: a float rank or count failed inside the fit ("slice indices must be
        # integers", "'float' object cannot be interpreted as an integer"), True stood for 1.
        rank = as_int(rank, "rank", minimum=0)
        components = as_int(components, "components", minimum=1)
        check_generator(generator, "DataGaussian.fit")  # only k-means draws: before any work
        if not data.is_floating_point():  # the fit is stored in data's dtype: cut to integers
            raise ValueError(f"data must be floating point, as the model sees it, got "
                             f"{data.dtype}")
        flat = data.detach().flatten(1).double()
        if len(flat) < 2:
            raise ValueError(f"a Gaussian fit needs at least 2 examples, got {len(flat)}")
        if not torch.isfinite(flat).all():  # else the SVD fails to converge, naming no input
            raise ValueError("data has NaN or infinite values")
        if labels is None:
            labels = torch.zeros(len(flat), dtype=torch.long, device=flat.device)
        elif labels.shape != flat.shape[:1]:  # else a class past the labels' end looks small
            raise ValueError(f"labels must be ({len(flat)},), one per example of data "
                             f"{tuple(data.shape)}, got {tuple(labels.shape)}")
        n_classes = int(labels.max()) + 1
        check_classes(labels, "labels", n_classes=n_classes)  # integers, none negative
        labels = labels.long().to(flat.device)
        counts = torch.bincount(labels, minlength=n_classes)
        if int(counts.min()) < 2:
            # Not reached without labels (one class of len(flat) >= 2 examples).
            k = int(counts.argmin())
            raise ValueError(f"class {k} has {int(counts[k])} examples; a Gaussian fit needs "
                             "at least 2 of every class")
        groups, component_classes = [], []
        for k in range(n_classes):
            members = flat[labels == k]
            clusters = (_kmeans(members, components, generator=generator) if components > 1
                        else torch.zeros(len(members), dtype=torch.long, device=flat.device))
            for c in range(int(clusters.max()) + 1):
                groups.append(members[clusters == c])
                component_classes.append(k)
        dims = flat.shape[1]
        ranks = [max(0, min(rank, len(group) - 2, dims - 1)) for group in groups]
        r = max(ranks)
        means, factors, residual, weights = [], [], [], []
        for members, kept in zip(groups, ranks):
            mean = members.mean(0)
            # LAPACK's SVD whatever the data's device: cuSOLVER's default driver failed to
            # converge on MNIST's classes on an H200 and redid them with another, warning each
            # time; a fit is made once, so moving a class to the CPU costs little.
            _, singular, directions = torch.linalg.svd((members - mean).cpu(),
                                                       full_matrices=False)
            singular, directions = singular.to(flat.device), directions.to(flat.device)
            variances = singular**2 / (len(members) - 1)
            # Past the component's examples - 1 directions the SVD leaves rounding error, not
            # variance; kept, it would be a reference density's near-singular direction.
            variances = torch.where(variances > 1e-12 * variances[0], variances, 0)
            isotropic = variances[kept:].sum() / (dims - kept)
            means.append(mean)
            # The isotropic noise adds to the kept directions too, so they keep the rest of
            # their variance (the PPCA solution of Tipping & Bishop 1999).
            factor = directions[:kept] * (variances[:kept, None] - isotropic).clamp(min=0).sqrt()
            factors.append(torch.cat([factor, factor.new_zeros(r - kept, dims)]))
            residual.append(isotropic.sqrt())
            weights.append(len(members) / len(flat))
        shape, n = data.shape[1:], len(groups)
        return cls(torch.stack(means).reshape(n, *shape).to(data.dtype),
                   torch.stack(factors).reshape(n, r, *shape).to(data.dtype),
                   torch.stack(residual).to(data.dtype),
                   torch.tensor(weights, dtype=data.dtype, device=data.device),
                   component_classes=torch.tensor(component_classes, device=data.device),
                   noise=noise, noise_scale=noise_scale)

    def sample(
        self,
        shape: Sequence[int],
        *,
        classes: Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``shape`` = ``(B, *S)`` draws, of the given ``classes`` ``(B,)`` (each from one of
        its class's components, picked by their weights) or of components picked by the
        mixture weights (a share ``noise`` of these uniform noise instead). A ``shape`` with
        extra leading dims (persistent chains' ``(N, k, *S)``) is filled the same way;
        ``dtype`` floating point, as :meth:`NoiseInit.sample`'s."""
        if dtype is not None and not dtype.is_floating_point:  # draws cut to integers
            raise ValueError(f"draws are made in a floating point dtype, got {dtype}")
        check_generator(generator, "DataGaussian.sample")
        sample_shape = tuple(self.means.shape[1:])
        if tuple(shape[-len(sample_shape):]) != sample_shape:
            raise ValueError(f"the data Gaussian makes samples of shape {sample_shape}, asked "
                             f"for {tuple(shape)}")
        n = math.prod(shape[: len(shape) - len(sample_shape)])
        device = device if device is not None else self.means.device
        of_no_class = classes is None
        if classes is None:
            # No draws for no samples: torch.multinomial refuses n = 0 ("cannot sample
            # n_sample <= 0 samples"), as a batch of no chains asks.
            picked = (torch.multinomial(self.weights.to(device), n, replacement=True,
                                        generator=generator)
                      if n else torch.zeros(0, dtype=torch.long, device=device))
        elif classes.shape != (n,):
            raise ValueError(f"classes must be ({n},), one per sample, got {tuple(classes.shape)}")
        elif len(classes) and not 0 <= int(classes.min()) <= int(classes.max()) < self.n_classes:
            raise ValueError(f"classes must be in 0 .. {self.n_classes - 1} (the fitted "
                             f"classes), got {int(classes.min())} .. {int(classes.max())}")
        else:
            check_classes(classes, "classes")
            # As int64: torch indexes with uint8 as with a mask (the components of the classes
            # that are not 0, a wrong count of draws), and refuses int8 or int16 indices.
            picked = self._component_of(classes.to(device, torch.long), generator)
        means, factors = self.means.to(device), self.factors.to(device)
        z = torch.randn((n, factors.shape[1]), generator=generator, device=device,
                        dtype=means.dtype)
        eps = torch.randn((n, *sample_shape), generator=generator, device=device,
                          dtype=means.dtype)
        x = (means[picked] + torch.einsum("nr,nr...->n...", z, factors[picked])
             + self.residual_std.to(device)[picked].reshape(-1, *[1] * len(sample_shape)) * eps)
        if of_no_class and self.noise > 0:
            noise = NoiseInit("uniform", self.noise_scale).sample(
                x.shape, device=device, dtype=x.dtype, generator=generator)
            is_noise = torch.rand(n, device=device, generator=generator) < self.noise
            x = torch.where(is_noise.reshape(-1, *[1] * len(sample_shape)), noise, x)
        return x.reshape(tuple(shape)).to(dtype if dtype is not None else means.dtype)

    def _component_of(self, classes: Tensor, generator: torch.Generator | None) -> Tensor:
        """One component of each class in ``classes`` ``(n,)``, by the weights within it."""
        owners = self.component_classes.to(classes.device)
        if len(owners) == self.n_classes:  # one component per class: no draw needed
            return torch.argsort(owners)[classes]
        within = torch.where(owners[None, :] == classes[:, None],
                             self.weights.to(classes.device)[None, :], 0)
        return torch.multinomial(within, 1, generator=generator)[:, 0]

    @property
    def has_density(self) -> bool:
        """Whether :meth:`log_prob` is defined: every component keeps some residual variance
        (one whose examples span no more directions than it keeps has a singular covariance)."""
        return bool((self.residual_std > 0).all())

    def log_prob(self, x: Tensor) -> Tensor:
        """``log q(x)`` ``(B,)`` of ``x`` ``(B, *S)`` under the mixture ``q = sum_k weights[k]
        N(means[k], C_k)``, ``C_k = F_k F_k^T + residual_std[k]^2 I`` (the ``noise`` share of
        :meth:`sample` is a way of starting chains, not part of the density); differentiable in
        ``x``.

        Each component's Gaussian is computed through its ``r x r`` factor space (the Woodbury
        identity), never the ``D x D`` covariance, in float64 whatever ``x``'s dtype; the result
        is in ``x``'s dtype, float32 at least (so that of float16 or bfloat16 ``x`` is float32).

        Raises:
            ValueError: a component without residual variance (its examples span no more
                directions than it keeps), whose covariance is singular; ``x`` of another
                sample shape or not floating point.
        """
        if not self.has_density:
            raise ValueError("a data Gaussian with zero residual variance has no density (a "
                             "class whose examples span no more directions than it keeps)")
        sample_shape = tuple(self.means.shape[1:])
        if tuple(x.shape[1:]) != sample_shape:
            raise ValueError(f"the data Gaussian scores samples of shape {sample_shape}, got "
                             f"{tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"the data Gaussian scores floating point samples, got {x.dtype}")
        # The quadratic form below is |d|^2 minus the kept directions' share of it, which
        # cancels to |d|^2 * residual variance / kept variance along each kept direction: in
        # float32, a fit with residual std 1e-3 (data near a subspace, as features can be) was
        # off by 3-17 nats, and by hundreds at 1e-4. Half precision has no Cholesky at all.
        result_dtype = at_least_float32(x.dtype)
        x = x.double()
        factors = self.factors.flatten(2).to(x.dtype)  # (K, r, D)
        variance = self.residual_std.to(x.dtype) ** 2  # (K,)
        rank, dims = factors.shape[1], factors.shape[2]
        # C^-1 = (I - F^T M^-1 F) / variance with M = F F^T + variance I = L L^T; so the
        # quadratic form is (|d|^2 - |L^-1 F d|^2) / variance and
        # log det C = (D - r) log variance + 2 sum log diag L.
        gram = factors @ factors.transpose(1, 2) + variance[:, None, None] * torch.eye(
            rank, dtype=x.dtype, device=x.device)
        cholesky = torch.linalg.cholesky(gram)  # (K, r, r)
        d = x.flatten(1)[:, None, :] - self.means.flatten(1).to(x.dtype)  # (B, K, D)
        projected = torch.linalg.solve_triangular(
            cholesky, torch.einsum("krd,bkd->krb", factors, d), upper=False)  # (K, r, B)
        quadratic = (d.pow(2).sum(2) - projected.pow(2).sum(1).T) / variance  # (B, K)
        log_det = ((dims - rank) * variance.log()
                   + 2 * cholesky.diagonal(dim1=1, dim2=2).log().sum(1))  # (K,)
        log_normal = -0.5 * (dims * math.log(2 * math.pi) + log_det + quadratic)
        return torch.logsumexp(self.weights.to(x.dtype).log() + log_normal,
                               dim=1).to(result_dtype)

    def state_dict(self) -> dict[str, Tensor]:
        """The fit as the constructor takes it: ``means`` ``(K, *S)``, ``factors``
        ``(K, r, *S)``, ``residual_std``, ``weights`` and ``component_classes`` ``(K,)``."""
        return {"means": self.means, "factors": self.factors,
                "residual_std": self.residual_std, "weights": self.weights,
                "component_classes": self.component_classes}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], *, noise: float = 0.0, noise_scale: float = 1.0
                   ) -> DataGaussian:
        """The fit of :meth:`state_dict` (the noise share is a setting, not part of it; a
        state without ``component_classes``, saved before fits had several components per
        class, has one per class)."""
        missing = {"means", "factors", "residual_std", "weights"} - set(state)
        if missing:
            raise ValueError(f"a data Gaussian's state lacks {sorted(missing)}")
        return cls(state["means"], state["factors"], state["residual_std"], state["weights"],
                   component_classes=state.get("component_classes"), noise=noise,
                   noise_scale=noise_scale)


def _kmeans(points: Tensor, k: int, *, iterations: int = 25,
            generator: torch.Generator | None = None) -> Tensor:
    """Cluster of each of ``points`` ``(n, D)``, ``(n,)`` in ``0 .. k' - 1``: Lloyd's
    iterations from a k-means++ start (Arthur & Vassilvitskii 2007), then each cluster of a
    single point (k-means++ seeds far points, an outlier may end alone) merged into the nearest
    other, so ``k' <= k``."""
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, one matrix product a round: torch.cdist takes its
    # slow elementwise path for so few centres (16 of the 26 CPU seconds of MNIST's fit).
    norms = points.pow(2).sum(1, keepdim=True)

    def squared_distances(centres: Tensor) -> Tensor:
        return (norms - 2 * points @ centres.T + centres.pow(2).sum(1)).clamp(min=0)

    first = torch.randint(len(points), (1,), generator=generator, device=points.device)
    centres = points[first]
    for _ in range(1, min(k, len(points))):
        # The next centre is drawn in proportion to the squared distance to the nearest one.
        nearest = squared_distances(centres).min(1).values
        if not nearest.sum() > 0:  # every point sits on a centre already
            break
        pick = torch.multinomial(nearest / nearest.sum(), 1, generator=generator)
        centres = torch.cat([centres, points[pick]])
    for _ in range(iterations):
        assignment = squared_distances(centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=len(centres))
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    while True:
        assignment = squared_distances(centres).argmin(1)
        counts = torch.bincount(assignment, minlength=len(centres))
        smallest = int(counts.argmin())
        if len(centres) == 1 or counts[smallest] >= 2:
            return assignment
        centres = torch.cat([centres[:smallest], centres[smallest + 1:]])
