"""Latent priors to sample from: the standard normal of the ELBO, or a density fitted to the codes after a fit.

A VAE trained with ``beta < 1`` (so that its code carries the item) leaves an aggregate posterior
``q(z) = mean_i q(z | x_i)`` that does not fill ``N(0, I)``: points drawn from the standard normal fall between
the items and decode to atypical ones. Ex-post density estimation (Ghosh et al. 2020) fits a density to the
training codes after the fit and samples from it instead; the decoder is unchanged.

* :class:`StandardNormalPrior`: ``N(0, I)``.
* :class:`GaussianMixturePrior`: a full-covariance Gaussian mixture fitted by EM.
* :class:`FlowPrior`: a RealNVP flow (affine couplings) fitted by maximum likelihood, with early stopping on
  held-out codes.

Every prior samples on the CPU from a seeded generator (the same seed, the same points on every device),
scores points with :meth:`LatentPrior.log_prob`, and is saved as tensors plus a JSON description
(:meth:`LatentPrior.state`, :func:`prior_from_state`): no pickle.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from scivae.errors import ModelFormatError

_LOG_2PI = math.log(2.0 * math.pi)
#: What a model may sample from: ``"learned"`` (its fitted prior) or ``"standard"`` (``N(0, I)``).
PRIOR_CHOICES = ("learned", "standard")


class LatentPrior(ABC):
    """A density over the latent space that can be sampled and scored.

    Attributes
    ----------
    kind
        Name of the family (``"standard"``, ``"gmm"``, ``"flow"``).
    n_latent
        Dimensions of the latent space.
    summary
        JSON-serialisable figures of the fit (held-out log-likelihood of codes...), empty for the standard normal.
    """

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[LatentPrior]]] = {}

    def __init__(self, n_latent: int) -> None:
        self.n_latent = int(n_latent)
        self.summary: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            LatentPrior._registry[cls.kind] = cls

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` points ``(n, n_latent)``, float32 on the CPU, drawn with ``generator`` (a CPU generator)."""

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """log density of points ``(n, n_latent)``, shape ``(n,)``."""

    @abstractmethod
    def _tensors(self) -> dict[str, Tensor]:
        """The prior's parameters as named CPU tensors."""

    def _config(self) -> dict[str, Any]:
        """JSON-serialisable settings that rebuild the prior's structure (not its parameters)."""
        return {}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Tensors and a JSON description from which :func:`prior_from_state` rebuilds this prior."""
        meta = {"kind": self.kind, "n_latent": self.n_latent, "config": self._config(), "summary": self.summary}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        return tensors, meta

    @classmethod
    @abstractmethod
    def _from_tensors(cls, n_latent: int, config: dict[str, Any], tensors: dict[str, Tensor]) -> LatentPrior:
        """Rebuild from :meth:`state`'s output (shapes already checked against ``config``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_latent={self.n_latent}{self._repr_extra()})"

    def _repr_extra(self) -> str:
        return ""


class StandardNormalPrior(LatentPrior):
    """``N(0, I)``: the prior of the ELBO."""

    kind = "standard"

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(int(n), self.n_latent, generator=generator)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (_LOG_2PI * z.shape[-1] + (z.float() ** 2).sum(-1))

    def _tensors(self) -> dict[str, Tensor]:
        return {}

    @classmethod
    def _from_tensors(cls, n_latent: int, config: dict[str, Any], tensors: dict[str, Tensor]) -> LatentPrior:
        return cls(n_latent)


class GaussianMixturePrior(LatentPrior):
    """A Gaussian mixture with full covariances, ``sum_k w_k N(mu_k, L_k L_k^T)``.

    Parameters
    ----------
    weights
        Mixture weights ``(K,)``, summing to 1.
    means
        Component means ``(K, d)``.
    scale_tril
        Lower Cholesky factors of the component covariances ``(K, d, d)``.
    """

    kind = "gmm"

    def __init__(self, weights: Tensor, means: Tensor, scale_tril: Tensor) -> None:
        super().__init__(means.shape[1])
        self.weights = weights.double()
        self.means = means.double()
        self.scale_tril = scale_tril.double()

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    @classmethod
    def fit(
        cls,
        codes: np.ndarray,
        n_components: int = 10,
        *,
        seed: int = 0,
        max_iter: int = 200,
        reg_covar: float = 1e-4,
    ) -> GaussianMixturePrior:
        """EM on ``codes`` ``(n, d)`` (scikit-learn), k-means initialisation."""
        from sklearn.mixture import GaussianMixture

        codes = np.asarray(codes, dtype=np.float64)
        k = max(1, min(int(n_components), len(codes)))
        gm = GaussianMixture(k, covariance_type="full", random_state=seed, max_iter=max_iter, reg_covar=reg_covar)
        gm.fit(codes)
        cov = torch.as_tensor(gm.covariances_)
        return cls(torch.as_tensor(gm.weights_), torch.as_tensor(gm.means_), torch.linalg.cholesky(cov))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        comp = torch.multinomial(self.weights.float(), int(n), replacement=True, generator=generator)
        eps = torch.randn(int(n), self.n_latent, generator=generator, dtype=torch.float64)
        z = self.means[comp] + (self.scale_tril[comp] @ eps.unsqueeze(-1)).squeeze(-1)
        return z.float()

    def log_prob(self, z: Tensor) -> Tensor:
        z = z.double()
        diff = (z.unsqueeze(1) - self.means.unsqueeze(0)).unsqueeze(-1)  # (n, K, d, 1)
        sol = torch.linalg.solve_triangular(self.scale_tril.unsqueeze(0), diff, upper=False).squeeze(-1)
        log_det = torch.log(torch.diagonal(self.scale_tril, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        comp = -0.5 * (sol**2).sum(-1) - log_det - 0.5 * self.n_latent * _LOG_2PI
        return torch.logsumexp(comp + torch.log(self.weights), dim=1).float()

    def _tensors(self) -> dict[str, Tensor]:
        return {"weights": self.weights, "means": self.means, "scale_tril": self.scale_tril}

    def _config(self) -> dict[str, Any]:
        return {"n_components": self.n_components}

    @classmethod
    def _from_tensors(cls, n_latent: int, config: dict[str, Any], tensors: dict[str, Tensor]) -> LatentPrior:
        k = int(config["n_components"])
        _check_shapes(tensors, {"weights": (k,), "means": (k, n_latent), "scale_tril": (k, n_latent, n_latent)})
        weights = tensors["weights"].double()
        if bool((weights < 0).any()) or not math.isclose(float(weights.sum()), 1.0, abs_tol=1e-4):
            raise ModelFormatError("the saved mixture weights are not a distribution: the prior file is damaged")
        diag = torch.diagonal(tensors["scale_tril"], dim1=-2, dim2=-1)
        if not bool((diag > 0).all()):
            raise ModelFormatError("the saved mixture covariances are not positive definite: re-fit the prior")
        return cls(weights, tensors["means"], torch.tril(tensors["scale_tril"]))

    def _repr_extra(self) -> str:
        return f", n_components={self.n_components}"


class _Coupling(nn.Module):
    """Affine coupling: the dimensions where ``mask`` is 0 are scaled and shifted by functions of the others."""

    def __init__(self, mask: Tensor, hidden: int) -> None:
        super().__init__()
        d = mask.numel()
        self.register_buffer("mask", mask.float())
        self.net = nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2 * d)
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.net(kept).chunk(2, dim=-1)
        s = torch.tanh(s) * (1 - self.mask)  # bounded log-scales keep the flow stable
        return s, t * (1 - self.mask)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> base direction: ``u = z * exp(-s) - t * exp(-s)`` on the free dimensions; log |det|."""
        s, t = self._scale_shift(z * self.mask)
        return (z - t) * torch.exp(-s), -s.sum(-1)

    def inverse(self, u: Tensor) -> Tensor:
        s, t = self._scale_shift(u * self.mask)
        return u * torch.exp(s) + t


class _RealNVP(nn.Module):
    def __init__(self, n_latent: int, n_layers: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(n_latent))
        self.register_buffer("log_scale", torch.zeros(n_latent))
        masks = []
        g = torch.Generator().manual_seed(0)  # fixed, so the structure is rebuilt identically on load
        for i in range(n_layers):
            if i % 2 == 0:
                perm = torch.randperm(n_latent, generator=g)
                mask = torch.zeros(n_latent)
                mask[perm[: n_latent // 2]] = 1
            else:
                mask = 1 - masks[-1]
            masks.append(mask)
        self.layers = nn.ModuleList(_Coupling(m, hidden) for m in masks)

    def to_base(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = (z - self.loc) * torch.exp(-self.log_scale)
        log_det = -self.log_scale.sum().expand(z.shape[0])
        for layer in self.layers:
            u, ld = layer(u)
            log_det = log_det + ld
        return u, log_det

    def from_base(self, u: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            u = layer.inverse(u)
        return u * torch.exp(self.log_scale) + self.loc

    def log_prob(self, z: Tensor) -> Tensor:
        u, log_det = self.to_base(z)
        return -0.5 * (_LOG_2PI * u.shape[-1] + (u**2).sum(-1)) + log_det


class FlowPrior(LatentPrior):
    """A RealNVP normalising flow (affine coupling layers with bounded log-scales) over the latent space.

    Parameters
    ----------
    n_latent
        Latent dimensions.
    n_layers, hidden
        Coupling layers and the width of their two-layer networks.
    """

    kind = "flow"

    def __init__(self, n_latent: int, n_layers: int = 8, hidden: int = 256) -> None:
        super().__init__(n_latent)
        self.n_layers, self.hidden = int(n_layers), int(hidden)
        self.flow = _RealNVP(self.n_latent, self.n_layers, self.hidden)
        self.flow.eval()

    @classmethod
    def fit(
        cls,
        codes: np.ndarray,
        validation: np.ndarray | None = None,
        *,
        code_sd: np.ndarray | None = None,
        validation_sd: np.ndarray | None = None,
        n_layers: int = 8,
        hidden: int = 256,
        max_epochs: int = 100,
        batch_size: int = 512,
        lr: float = 1e-3,
        patience: int = 5,
        seed: int = 0,
    ) -> FlowPrior:
        """Maximum likelihood on ``codes`` ``(n, d)``; the weights of the best held-out epoch are kept.

        ``code_sd`` (posterior standard deviations, same shape) makes every epoch draw fresh points
        ``codes + code_sd * eps``: the flow then fits the aggregate posterior rather than the posterior means.
        ``validation`` (and ``validation_sd``) are held-out codes for early stopping; without them a tenth of
        ``codes`` is held out.
        """
        x = torch.as_tensor(np.asarray(codes), dtype=torch.float32)
        sd = None if code_sd is None else torch.as_tensor(np.asarray(code_sd), dtype=torch.float32)
        g = torch.Generator().manual_seed(int(seed))
        if validation is None:
            perm = torch.randperm(len(x), generator=g)
            n_val = max(1, len(x) // 10)
            vi, ti = perm[:n_val], perm[n_val:]
            xv, x = x[vi], x[ti]
            sdv, sd = (None, None) if sd is None else (sd[vi], sd[ti])
        else:
            xv = torch.as_tensor(np.asarray(validation), dtype=torch.float32)
            sdv = None if validation_sd is None else torch.as_tensor(np.asarray(validation_sd), dtype=torch.float32)
        if sdv is not None:  # one fixed draw of held-out points, so epochs are compared on the same points
            xv = xv + sdv * torch.randn(xv.shape, generator=g)
        prior = cls(x.shape[1], n_layers=n_layers, hidden=hidden)
        flow = prior.flow
        with torch.no_grad():
            flow.loc.copy_(x.mean(0))
            spread = x.var(0) if sd is None else x.var(0) + (sd**2).mean(0)
            flow.log_scale.copy_(0.5 * torch.log(spread + 1e-12))
        opt = torch.optim.Adam(flow.parameters(), lr=lr)
        best, best_state, bad, history = -math.inf, None, 0, []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for _ in range(int(max_epochs)):
                flow.train()
                order = torch.randperm(len(x), generator=g)
                for start in range(0, len(x), batch_size):
                    idx = order[start : start + batch_size]
                    xb = x[idx] if sd is None else x[idx] + sd[idx] * torch.randn(len(idx), x.shape[1], generator=g)
                    loss = -flow.log_prob(xb).mean()
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
                    opt.step()
                flow.eval()
                with torch.no_grad():
                    val = float(torch.cat([flow.log_prob(xv[i : i + 4096]) for i in range(0, len(xv), 4096)]).mean())
                history.append(round(val, 4))
                if val > best + 1e-3:
                    best, bad = val, 0
                    best_state = {k: v.clone() for k, v in flow.state_dict().items()}
                else:
                    bad += 1
                    if bad >= patience:
                        break
        if best_state is not None:
            flow.load_state_dict(best_state)
        flow.eval()
        prior.summary = {"validation_log_likelihood": round(best, 4), "epochs": len(history), "history": history}
        return prior

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        u = torch.randn(int(n), self.n_latent, generator=generator)
        return torch.cat([self.flow.from_base(u[i : i + 8192]) for i in range(0, len(u), 8192)]).float()

    @torch.no_grad()
    def log_prob(self, z: Tensor) -> Tensor:
        return self.flow.log_prob(z.float())

    def _tensors(self) -> dict[str, Tensor]:
        return dict(self.flow.state_dict())

    def _config(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "hidden": self.hidden}

    @classmethod
    def _from_tensors(cls, n_latent: int, config: dict[str, Any], tensors: dict[str, Tensor]) -> LatentPrior:
        prior = cls(n_latent, n_layers=int(config["n_layers"]), hidden=int(config["hidden"]))
        expected = {k: tuple(v.shape) for k, v in prior.flow.state_dict().items()}
        _check_shapes(tensors, expected)
        prior.flow.load_state_dict(tensors)
        prior.flow.eval()
        return prior

    def _repr_extra(self) -> str:
        return f", n_layers={self.n_layers}, hidden={self.hidden}"


class MidpointPrior(LatentPrior):
    """Points between neighbouring training codes: ``z = (1 - t) mu_i + t mu_j + noise * s * eps``.

    ``i`` is a training item drawn at random, ``j`` one of its ``k`` nearest neighbours in the latent space
    (distances scaled by the typical posterior standard deviation ``s`` of each dimension), ``t`` uniform in
    ``[t_low, t_high]`` and ``eps ~ N(0, I)``. A model whose code carries the item keeps its codes on a thin,
    curved set: a smooth density (a flow or a mixture) spreads its mass between the items, where the decoder
    has never been trained, while the segments between neighbouring codes stay on that set. As a density this
    is the mixture of Gaussians ``N(mid_ij, (noise * s)^2)`` over the ``n * k`` neighbour pairs (``t = 1/2``).

    Parameters
    ----------
    codes
        Training codes ``(n, d)`` (posterior means).
    scale
        Per-dimension scale ``s`` ``(d,)``: distances are measured and noise is drawn in these units.
    k, t_low, t_high, noise
        See above.
    """

    kind = "midpoints"

    def __init__(
        self, codes: Tensor, scale: Tensor, *, k: int = 20, t_low: float = 0.5, t_high: float = 0.5, noise: float = 1.0
    ) -> None:
        super().__init__(codes.shape[1])
        if len(codes) < 2:
            raise ValueError("a midpoint prior needs at least 2 codes")
        self.codes = codes.float().contiguous()
        self.scale = scale.float().clamp_min(1e-6)
        self.k = max(1, min(int(k), len(codes) - 1))
        self.t_low, self.t_high, self.noise = float(t_low), float(t_high), float(noise)
        self._index: Any = None

    @classmethod
    def fit(
        cls,
        codes: np.ndarray,
        code_sd: np.ndarray,
        *,
        k: int = 20,
        t_low: float = 0.5,
        t_high: float = 0.5,
        noise: float = 1.0,
        max_codes: int = 200_000,
        seed: int = 0,
    ) -> MidpointPrior:
        """Keep (at most ``max_codes``, drawn at random) training codes and their typical posterior sd."""
        codes = np.asarray(codes, dtype=np.float32)
        if len(codes) > max_codes:
            codes = codes[np.sort(np.random.default_rng(seed).choice(len(codes), max_codes, replace=False))]
        scale = np.asarray(code_sd, dtype=np.float64).mean(0)
        return cls(torch.as_tensor(codes), torch.as_tensor(scale), k=k, t_low=t_low, t_high=t_high, noise=noise)

    def set_k(self, k: int) -> None:
        """Use the ``k`` nearest neighbours from now on."""
        self.k = max(1, min(int(k), len(self.codes) - 1))
        self._index = None

    def _neighbours(self, rows: Tensor) -> Tensor:
        """The ``k`` nearest other codes of the codes at ``rows``, ``(len(rows), k)``."""
        if self._index is None:
            from sklearn.neighbors import NearestNeighbors

            self._index = NearestNeighbors(n_neighbors=self.k + 1).fit((self.codes / self.scale).numpy())
        _, nb = self._index.kneighbors((self.codes[rows] / self.scale).numpy())
        nb = torch.as_tensor(nb, dtype=torch.long)
        # drop the query itself (a duplicate code may come first instead: either way one of k + 1 goes)
        own = nb == rows.unsqueeze(1)
        first = torch.where(own.any(1), own.float().argmax(1), torch.zeros(len(rows), dtype=torch.long))
        keep = torch.ones_like(nb, dtype=torch.bool)
        keep[torch.arange(len(rows)), first] = False
        return nb[keep].view(len(rows), self.k)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        n = int(n)
        rows = torch.randint(0, len(self.codes), (n,), generator=generator)
        pick = torch.randint(0, self.k, (n,), generator=generator)
        t = self.t_low + (self.t_high - self.t_low) * torch.rand(n, 1, generator=generator)
        eps = torch.randn(n, self.n_latent, generator=generator)
        out = torch.empty(n, self.n_latent)
        for start in range(0, n, 8192):  # neighbour searches in blocks keep the distance matrices small
            sl = slice(start, min(start + 8192, n))
            other = self._neighbours(rows[sl])[torch.arange(sl.stop - sl.start), pick[sl]]
            a, b = self.codes[rows[sl]], self.codes[other]
            out[sl] = (1 - t[sl]) * a + t[sl] * b + self.noise * self.scale * eps[sl]
        return out

    def log_prob(self, z: Tensor, n_near: int = 5) -> Tensor:
        """The mixture density at ``z``, summed over the pairs of the ``n_near`` codes nearest to each point
        (the far pairs add nothing measurable); needs ``noise > 0``."""
        if self.noise <= 0:
            raise ValueError("the midpoint prior has no density without noise")
        z = z.float()
        if self._index is None:
            self._neighbours(torch.zeros(1, dtype=torch.long))
        m = min(int(n_near), len(self.codes))
        _, near = self._index.kneighbors((z / self.scale).numpy(), n_neighbors=m)
        near = torch.as_tensor(near, dtype=torch.long)  # (B, m)
        partners = self._neighbours(near.reshape(-1)).view(len(z), m, self.k)  # (B, m, k)
        mid = 0.5 * (self.codes[near].unsqueeze(2) + self.codes[partners])  # (B, m, k, d)
        sd = self.noise * self.scale
        comp = (-0.5 * ((z[:, None, None, :] - mid) / sd) ** 2 - torch.log(sd) - 0.5 * _LOG_2PI).sum(-1)
        total = len(self.codes) * self.k
        return torch.logsumexp(comp.reshape(len(z), -1), dim=1) - math.log(total)

    def _tensors(self) -> dict[str, Tensor]:
        return {"codes": self.codes, "scale": self.scale}

    def _config(self) -> dict[str, Any]:
        return {
            "n_codes": int(len(self.codes)),
            "k": self.k,
            "t_low": self.t_low,
            "t_high": self.t_high,
            "noise": self.noise,
        }

    @classmethod
    def _from_tensors(cls, n_latent: int, config: dict[str, Any], tensors: dict[str, Tensor]) -> LatentPrior:
        n = int(config["n_codes"])
        _check_shapes(tensors, {"codes": (n, n_latent), "scale": (n_latent,)})
        if not bool((tensors["scale"] > 0).all()):
            raise ModelFormatError("the saved prior's scale is not positive: the prior file is damaged; re-fit")
        t_low, t_high, noise = float(config["t_low"]), float(config["t_high"]), float(config["noise"])
        if not (0.0 <= t_low <= t_high <= 1.0 and math.isfinite(noise) and noise >= 0):
            raise ModelFormatError("the saved prior's settings are out of range: the prior file is damaged; re-fit")
        return cls(tensors["codes"], tensors["scale"], k=int(config["k"]), t_low=t_low, t_high=t_high, noise=noise)

    def _repr_extra(self) -> str:
        return f", n_codes={len(self.codes)}, k={self.k}, t=[{self.t_low}, {self.t_high}], noise={self.noise}"


def _check_shapes(tensors: dict[str, Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != {k: tuple(v) for k, v in expected.items()}:
        raise ModelFormatError("the saved prior's tensors do not match its description: the prior file is damaged")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFormatError(f"the saved prior's {name} is not finite: the prior file is damaged; re-fit")


def prior_from_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> LatentPrior:
    """Rebuild a prior from :meth:`LatentPrior.state`'s tensors and description."""
    if not isinstance(meta, dict):
        raise ModelFormatError("the prior description is not a JSON object: the model folder is damaged; re-fit")
    cls = LatentPrior._registry.get(meta.get("kind"))  # type: ignore[arg-type]
    if cls is None:
        raise ModelFormatError(f"unknown prior kind {meta.get('kind')!r}: the model folder is damaged; re-fit")
    try:
        n_latent = int(meta["n_latent"])
        config = dict(meta.get("config") or {})
        prior = cls._from_tensors(n_latent, config, tensors)
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"the prior description is damaged ({type(e).__name__}): re-fit the prior") from None
    summary = meta.get("summary")
    prior.summary = dict(summary) if isinstance(summary, dict) else {}
    return prior
