"""Initial states for chains: Gaussian or uniform noise, Gaussians fitted to the data, or data
plus noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor


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
        if self.scale < 0:
            raise ValueError(f"noise scale must be >= 0, got {self.scale}")

    def sample(
        self,
        shape: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A tensor of ``shape`` drawn from this distribution."""
        if self.kind == "gaussian":
            return self.scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.scale * (2 * torch.rand(shape, generator=generator, device=device, dtype=dtype) - 1)


def data_plus_noise(x: Tensor, *, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + std * eps``, ``eps ~ N(0, I)``; ``x`` ``(B, *S)`` -> ``(B, *S)``."""
    if std == 0:
        return x.clone()
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class DataGaussian:
    """Fresh chain starts drawn from Gaussians fitted to the training data, one per class when
    labels are given: JEM++'s informative initialisation (Yang & Ji, ICCV 2021), which starts
    short chains near the data instead of in uniform noise that a few steps cannot leave.

    Each component ``k`` is the maximum-likelihood probabilistic PCA of its class: the class
    mean, its ``rank`` leading principal directions, and one isotropic standard deviation for
    the variance they leave out (which the kept directions carry too). A draw is
    ``mean[k] + sum_i factors[k, i] * z_i + residual_std[k] * eps``.

    Args:
        means: ``(K, *S)`` component means.
        factors: ``(K, r, *S)`` principal directions times the standard deviations the
            isotropic part leaves to them.
        residual_std: ``(K,)`` standard deviation of the variance the factors leave out.
        weights: ``(K,)`` mixture weights (the classes' shares of the data), summing to 1.
        noise: the share of draws of no given class that are uniform noise
            ``U(-noise_scale, noise_scale)`` instead, so that some chains also explore far from
            the data (where a model that never saw samples may put its lowest energies).
    """

    def __init__(self, means: Tensor, factors: Tensor, residual_std: Tensor, weights: Tensor,
                 *, noise: float = 0.0, noise_scale: float = 1.0) -> None:
        if not 0.0 <= noise <= 1.0 or noise_scale < 0:
            raise ValueError(f"noise must be in [0, 1] and noise_scale >= 0, got {noise}, "
                             f"{noise_scale}")
        self.noise, self.noise_scale = noise, noise_scale
        k = means.shape[0]
        if (factors.shape[0] != k or factors.shape[2:] != means.shape[1:]
                or residual_std.shape != (k,) or weights.shape != (k,)):
            raise ValueError(
                f"a data Gaussian needs means (K, *S), factors (K, r, *S), residual_std (K,) and "
                f"weights (K,), got {tuple(means.shape)}, {tuple(factors.shape)}, "
                f"{tuple(residual_std.shape)}, {tuple(weights.shape)}")
        self.means, self.factors = means, factors
        self.residual_std, self.weights = residual_std, weights

    @classmethod
    def fit(cls, data: Tensor, labels: Tensor | None = None, *, rank: int = 64,
            noise: float = 0.0, noise_scale: float = 1.0) -> DataGaussian:
        """Fit to ``data`` ``(N, *S)``, one component per class of ``labels`` ``(N,)``
        (``0 .. K - 1``, each class present) or one for all of it; ``noise``, ``noise_scale``
        as the constructor's.

        Every component keeps ``min(rank, n - 2)`` directions, ``n`` the smallest class's
        examples: ``n`` examples span ``n - 1`` directions, and keeping all of them would leave
        no variance for the isotropic rest (no density, :meth:`log_prob`)."""
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        flat = data.detach().flatten(1).double()
        labels = (torch.zeros(len(flat), dtype=torch.long, device=flat.device) if labels is None
                  else labels.long().to(flat.device))
        n_classes = int(labels.max()) + 1
        counts = torch.bincount(labels, minlength=n_classes)
        if int(counts.min()) < 2:
            k = int(counts.argmin())
            raise ValueError(f"class {k} has {int(counts[k])} examples; a Gaussian fit needs "
                             "at least 2 of every class")
        r = max(0, min(rank, int(counts.min()) - 2, flat.shape[1] - 1))
        means, factors, residual, weights = [], [], [], []
        for k in range(n_classes):
            members = flat[labels == k]
            mean = members.mean(0)
            _, singular, directions = torch.linalg.svd(members - mean, full_matrices=False)
            variances = singular**2 / (len(members) - 1)
            # Past the class's examples - 1 directions the SVD leaves rounding error, not
            # variance; kept, it would be a reference density's near-singular direction.
            variances = torch.where(variances > 1e-12 * variances[0], variances, 0)
            isotropic = variances[r:].sum() / (flat.shape[1] - r)
            means.append(mean)
            # The isotropic noise adds to the kept directions too, so they keep the rest of
            # their variance (the maximum-likelihood PPCA fit, Tipping & Bishop 1999).
            factors.append(directions[:r] * (variances[:r, None] - isotropic).clamp(min=0).sqrt())
            residual.append(isotropic.sqrt())
            weights.append(len(members) / len(flat))
        shape = data.shape[1:]
        return cls(torch.stack(means).reshape(n_classes, *shape).to(data.dtype),
                   torch.stack(factors).reshape(n_classes, r, *shape)
                   .to(data.dtype),
                   torch.stack(residual).to(data.dtype),
                   torch.tensor(weights, dtype=data.dtype, device=data.device),
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
        """``shape`` = ``(B, *S)`` draws, of the given ``classes`` ``(B,)`` or of components
        picked by the mixture weights (a share ``noise`` of these uniform noise instead). A
        ``shape`` with extra leading dims (persistent chains' ``(N, k, *S)``) is filled the
        same way."""
        sample_shape = tuple(self.means.shape[1:])
        if tuple(shape[-len(sample_shape):]) != sample_shape:
            raise ValueError(f"the data Gaussian makes samples of shape {sample_shape}, asked "
                             f"for {tuple(shape)}")
        n = math.prod(shape[: len(shape) - len(sample_shape)])
        device = device if device is not None else self.means.device
        of_no_class = classes is None
        if classes is None:
            classes = torch.multinomial(self.weights.to(device), n, replacement=True,
                                        generator=generator)
        elif classes.shape != (n,):
            raise ValueError(f"classes must be ({n},), one per sample, got {tuple(classes.shape)}")
        elif len(classes) and not 0 <= int(classes.min()) <= int(classes.max()) < len(self.weights):
            raise ValueError(f"classes must be in 0 .. {len(self.weights) - 1} (the fitted "
                             f"components), got {int(classes.min())} .. {int(classes.max())}")
        classes = classes.to(device)
        means, factors = self.means.to(device), self.factors.to(device)
        z = torch.randn((n, factors.shape[1]), generator=generator, device=device,
                        dtype=means.dtype)
        eps = torch.randn((n, *sample_shape), generator=generator, device=device,
                          dtype=means.dtype)
        x = (means[classes] + torch.einsum("nr,nr...->n...", z, factors[classes])
             + self.residual_std.to(device)[classes].reshape(-1, *[1] * len(sample_shape)) * eps)
        if of_no_class and self.noise > 0:
            noise = NoiseInit("uniform", self.noise_scale).sample(
                x.shape, device=device, dtype=x.dtype, generator=generator)
            is_noise = torch.rand(n, device=device, generator=generator) < self.noise
            x = torch.where(is_noise.reshape(-1, *[1] * len(sample_shape)), noise, x)
        return x.reshape(tuple(shape)).to(dtype if dtype is not None else means.dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log q(x)`` ``(B,)`` of ``x`` ``(B, *S)`` under the mixture ``q = sum_k weights[k]
        N(means[k], C_k)``, ``C_k = F_k F_k^T + residual_std[k]^2 I`` (the ``noise`` share of
        :meth:`sample` is a way of starting chains, not part of the density); differentiable in
        ``x``.

        Each component's Gaussian is computed through its ``r x r`` factor space (the Woodbury
        identity), never the ``D x D`` covariance.

        Raises:
            ValueError: a component without residual variance (its examples span no more
                directions than it keeps), whose covariance is singular.
        """
        if not bool((self.residual_std > 0).all()):
            raise ValueError("a data Gaussian with zero residual variance has no density (a "
                             "class whose examples span no more directions than it keeps)")
        sample_shape = tuple(self.means.shape[1:])
        if tuple(x.shape[1:]) != sample_shape:
            raise ValueError(f"the data Gaussian scores samples of shape {sample_shape}, got "
                             f"{tuple(x.shape)}")
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
        return torch.logsumexp(self.weights.to(x.dtype).log() + log_normal, dim=1)

    def state_dict(self) -> dict[str, Tensor]:
        return {"means": self.means, "factors": self.factors,
                "residual_std": self.residual_std, "weights": self.weights}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], *, noise: float = 0.0, noise_scale: float = 1.0
                   ) -> DataGaussian:
        """The fit of :meth:`state_dict` (the noise share is a setting, not part of it)."""
        missing = {"means", "factors", "residual_std", "weights"} - set(state)
        if missing:
            raise ValueError(f"a data Gaussian's state lacks {sorted(missing)}")
        return cls(state["means"], state["factors"], state["residual_std"], state["weights"],
                   noise=noise, noise_scale=noise_scale)
