"""The count VAE as a pure ``nn.Module``: encoder on log1p counts, count-likelihood decoder, covariates.

Batch tensors (built once by :mod:`scivae.cells.data`, sliced by the core's data module):

* ``x``: counts, ``(B, n_genes)`` float32;
* ``batch``: batch codes, ``(B,)`` int64 (when ``n_batches > 1``);
* ``cat``: further categorical covariate codes, ``(B, n_cat)`` int64;
* ``cont``: standardised continuous covariates, ``(B, n_cont)`` float32.

Covariates are one-hot encoded and injected into every decoder layer (and, with ``encode_covariates``,
every encoder layer), which makes it a conditional VAE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scivae.cells.labels import (
    CLASSIFICATION_RATIO,
    LABELS,
    LabelClassifier,
    classification_loss,
    unlabelled_entropy,
)
from scivae.cells.likelihoods import (
    LIKELIHOODS,
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    nb_count_terms,
)
from scivae.core import Batch, GaussianHead, GaussianPosterior, KLConfig, LossOutput, VAEModule
from scivae.core.data.device import LOG_FACTORIAL, NZ_COLS, NZ_ROWS, NZ_VALUES
from scivae.core.options import positive_float, positive_int
from scivae.errors import ScivaeInputError

DISPERSIONS = ("gene", "gene-batch", "gene-cell")
NORMS = ("layer", "batch")
LIBRARIES = ("observed", "latent")
_LOG_2PI = math.log(2.0 * math.pi)
# Keys under which inference() leaves q(log library | x) in the batch dict for the likelihood terms.
_QL_MU, _QL_LOGVAR = "_ql_mu", "_ql_logvar"
# Key under which inference() leaves the label classifier's input (with gradients) for its loss (see
# CellVAEModule.classifier_input), the posterior mean outside training.
_QZ_CLASSIFIER = "_qz_classifier"
#: What the label classifier trains on: a reparameterised posterior sample (default), one whose spread passes no
#: gradient, or the posterior mean (scANVI's choice).
CLASSIFIER_INPUTS = ("sample", "sample-detached-spread", "mean")
# Key of the NB count terms that importance_constants() computes once for the samples of iwae().
_COUNT_TERMS = "_nb_count_terms"


def _one_hot(codes: Tensor, n: int) -> Tensor:
    """Float one-hot rows of ``codes``: rows of an identity matrix (``F.one_hot`` also checks the codes' range,
    two host syncs per call; the codes come from the covariate encoder, already in range)."""
    return torch.eye(n, device=codes.device).index_select(0, codes)


class _BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that normalises a one-cell training batch with its running statistics (no batch variance)."""

    def forward(self, h: Tensor) -> Tensor:
        if self.training and h.shape[0] < 2:
            return F.batch_norm(h, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(h)


class _InjectedMLP(nn.Module):
    """Linear -> norm -> ReLU -> Dropout blocks; the covariate vector is concatenated to every input.

    ``norm="batch"`` uses BatchNorm (momentum 0.01, eps 1e-3, as scvi-tools), ``"layer"`` LayerNorm.
    """

    def __init__(self, n_in: int, n_cov: int, n_hidden: int, n_layers: int, dropout: float, norm: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            self.layers.append(
                nn.Sequential(
                    nn.Linear((n_in if i == 0 else n_hidden) + n_cov, n_hidden),
                    _BatchNorm(n_hidden, momentum=0.01, eps=1e-3) if norm == "batch" else nn.LayerNorm(n_hidden),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                )
            )

    def forward(self, h: Tensor, cov: Tensor | None) -> Tensor:
        for layer in self.layers:
            if cov is None:
                h = layer(h)
                continue
            # the product with [h, cov] as two products: no copy of the (genes-wide) input to concatenate it
            linear = layer[0]
            n_own = h.shape[-1]
            h = F.linear(h, linear.weight[:, :n_own], linear.bias) + F.linear(cov, linear.weight[:, n_own:])
            for module in islice(layer, 1, None):
                h = module(h)
        return h


class CellVAEModule(VAEModule):
    """Conditional count VAE (scVI-like) on the core's :class:`~scivae.core.VAEModule`.

    Parameters
    ----------
    n_genes
        Number of genes (input and output width).
    n_latent, n_hidden, n_layers, dropout
        Architecture.
    likelihood
        ``"nb"``, ``"zinb"`` or ``"poisson"``.
    dispersion
        NB inverse dispersion ``theta``: one per gene, per gene and batch, or predicted per gene and cell.
    library
        ``"observed"``: the library size is the cell's total count. ``"latent"``: a log-normal latent
        variable with a per-batch prior (mean and variance of the training cells' log library size), whose
        KL is added to the objective.
    n_batches
        Number of batches (1: no batch key).
    n_cats_per_covariate
        Number of categories of each further categorical covariate.
    n_continuous
        Number of continuous covariates.
    norm
        Normalisation in the encoder and decoder hidden layers: ``"layer"`` (LayerNorm) or ``"batch"``
        (BatchNorm, as scvi-tools).
    encode_covariates
        Also condition the encoder on the covariates.
    library_log_mean, library_log_var
        Per-batch prior of the latent log library size (length ``n_batches``); required for ``"latent"``.
    kl_config
        The core's collapse controls (beta, free bits, capacity).
    n_labels
        Number of cell labels of a semi-supervised model (0: none): a :class:`~scivae.cells.labels.LabelClassifier`
        on z, trained on posterior samples of the labelled cells (:mod:`scivae.cells.labels`).
    classification_ratio
        Weight of the classification loss in the objective.

    Attributes
    ----------
    classifier_input
        What the classifier trains on (:data:`CLASSIFIER_INPUTS`): ``"sample"`` (default), a reparameterised
        posterior sample, so that the classifier sees the posterior's spread (it then extrapolates better to
        shifted query cells); ``"sample-detached-spread"``, the same with ``sigma`` detached (the classification
        loss then moves the posterior means only); ``"mean"``, the posterior mean (scANVI). Chosen on validation
        cells, ``benchmarks/cells/label_transfer_validation.py``.
    entropy_ratio
        Weight of the entropy of the classifier's labels of the unlabelled cells in the objective: 0, except in a
        query model of reference mapping, where it is ``classification_ratio`` (:mod:`scivae.cells.mapping`).
    """

    def __init__(
        self,
        n_genes: int,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        likelihood: str = "nb",
        dispersion: str = "gene",
        library: str = "observed",
        n_batches: int = 1,
        n_cats_per_covariate: Sequence[int] = (),
        n_continuous: int = 0,
        norm: str = "layer",
        encode_covariates: bool = False,
        library_log_mean: Sequence[float] | None = None,
        library_log_var: Sequence[float] | None = None,
        kl_config: KLConfig | None = None,
        n_labels: int = 0,
        classification_ratio: float = CLASSIFICATION_RATIO,
    ) -> None:
        super().__init__(n_latent, kl_config)
        if likelihood not in LIKELIHOODS:
            raise ScivaeInputError(f"unknown likelihood {likelihood!r}: use one of {', '.join(LIKELIHOODS)}")
        if dispersion not in DISPERSIONS:
            raise ScivaeInputError(f"unknown dispersion {dispersion!r}: use one of {', '.join(DISPERSIONS)}")
        if library not in LIBRARIES:
            raise ScivaeInputError(f"unknown library {library!r}: use one of {', '.join(LIBRARIES)}")
        if norm not in NORMS:
            raise ScivaeInputError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
        if dispersion == "gene-batch" and n_batches < 2:
            raise ScivaeInputError("dispersion='gene-batch' needs a batch key with >= 2 batches: pass {batch_key}")
        for name, value in (("n_latent", n_latent), ("n_hidden", n_hidden), ("n_layers", n_layers)):
            positive_int(value, name)
        positive_int(n_labels, "n_labels", minimum=0)
        positive_float(classification_ratio, "classification_ratio", allow_zero=True)
        self.n_genes = n_genes
        self.n_hidden, self.n_layers, self.dropout = n_hidden, n_layers, dropout
        self.likelihood = likelihood
        self.dispersion = dispersion
        self.library = library
        self.n_batches = n_batches
        self.n_cats_per_covariate = list(n_cats_per_covariate)
        self.n_continuous = n_continuous
        self.encode_covariates = encode_covariates
        self.norm = norm
        n_cov = (n_batches if n_batches > 1 else 0) + sum(self.n_cats_per_covariate) + n_continuous
        self.n_cov = n_cov

        self.encoder = _InjectedMLP(n_genes, n_cov if encode_covariates else 0, n_hidden, n_layers, dropout, norm)
        self.z_head = GaussianHead(n_hidden, n_latent)
        if library == "latent":
            if library_log_mean is None or library_log_var is None:
                raise ValueError("library='latent' needs library_log_mean and library_log_var")
            self.l_head = GaussianHead(n_hidden, 1)
            self.register_buffer("library_log_mean", torch.as_tensor(library_log_mean, dtype=torch.float32))
            self.register_buffer("library_log_var", torch.as_tensor(library_log_var, dtype=torch.float32))
        # The decoder has no dropout: it would add noise to the likelihood, not regularise the code.
        self.decoder = _InjectedMLP(n_latent, n_cov, n_hidden, n_layers, 0.0, norm)
        self.scale_head = nn.Linear(n_hidden, n_genes)
        if likelihood != "poisson":
            if dispersion == "gene":
                self.log_theta = nn.Parameter(torch.zeros(n_genes))
            elif dispersion == "gene-batch":
                self.log_theta = nn.Parameter(torch.zeros(n_batches, n_genes))
            else:
                self.theta_head = nn.Linear(n_hidden, n_genes)
        if likelihood == "zinb":
            self.zi_head = nn.Linear(n_hidden, n_genes)
        self.n_labels = int(n_labels)
        self.classification_ratio = float(classification_ratio)
        self.classifier_input = "sample"
        self.entropy_ratio = 0.0
        # built last, so that a model without labels draws the same initial weights as before the option existed
        self.classifier = LabelClassifier(n_latent, n_hidden, self.n_labels, dropout) if self.n_labels else None

    # ------------------------------------------------------------------------------------------------------
    def covariates(self, batch: Batch) -> Tensor | None:
        """One-hot batch and categorical covariates and the continuous ones, concatenated; None if none."""
        parts = []
        if self.n_batches > 1:
            parts.append(_one_hot(batch["batch"], self.n_batches))
        for i, n in enumerate(self.n_cats_per_covariate):
            parts.append(_one_hot(batch["cat"][:, i], n))
        if self.n_continuous:
            parts.append(batch["cont"].float())
        return torch.cat(parts, dim=-1) if parts else None

    def _batch_codes(self, batch: Batch) -> Tensor:
        if self.n_batches > 1:
            return batch["batch"]
        return torch.zeros(batch["x"].shape[0], dtype=torch.long, device=batch["x"].device)

    def inference(self, batch: Batch) -> GaussianPosterior:
        x = batch["x"]
        cov = self.covariates(batch) if self.encode_covariates else None
        h = self.encoder(torch.log1p(x), cov)
        if self.library == "latent":
            ql = self.l_head(h)
            batch[_QL_MU], batch[_QL_LOGVAR] = ql.mu, ql.logvar
        qz = self.z_head(h)
        if self.classifier is not None:
            batch[_QZ_CLASSIFIER] = self._classifier_input(qz)
        return qz

    def _classifier_input(self, qz: GaussianPosterior) -> Tensor:
        if self.classifier_input not in CLASSIFIER_INPUTS:
            raise ValueError(f"classifier_input={self.classifier_input!r}: use one of {CLASSIFIER_INPUTS}")
        if not self.training or self.classifier_input == "mean":
            return qz.mu
        if self.classifier_input == "sample-detached-spread":
            return qz.mu + qz.std.detach() * torch.randn_like(qz.mu)
        return qz.rsample()

    def loss(self, batch: Batch, kl_weight: float = 1.0, step: int = 0, n_samples: int = 1) -> LossOutput:
        """The core's objective, plus ``classification_ratio`` times the label classifier's cross-entropy on the
        labelled cells (when the model and the batch have labels), plus ``entropy_ratio`` times the mean entropy of
        its labels of the unlabelled cells (query models only)."""
        out = super().loss(batch, kl_weight=kl_weight, step=step, n_samples=n_samples)
        if self.classifier is None:
            return out
        labels = batch.get(LABELS)
        if labels is not None or self.entropy_ratio:
            logits = self.classifier(batch[_QZ_CLASSIFIER])
        if labels is not None:
            out.loss = out.loss + self.classification_ratio * classification_loss(logits, labels)
        if self.entropy_ratio:
            unlabelled = torch.ones_like(logits[:, 0]) if labels is None else (labels < 0).to(logits.dtype)
            out.loss = out.loss + self.entropy_ratio * unlabelled_entropy(logits, unlabelled)
        return out

    def _library_posterior(self, batch: Batch) -> tuple[Tensor, Tensor]:
        if _QL_MU not in batch:
            self.inference(batch)
        return batch[_QL_MU], batch[_QL_LOGVAR]

    def observed_log_library(self, batch: Batch) -> Tensor:
        """log of the total count, ``(B, 1)``; cells with no count get log(1) = 0 (their likelihood is 0)."""
        return torch.log(batch["x"].sum(-1, keepdim=True).clamp_min(1.0))

    def decode(self, z: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Decoder features and the log expression fractions ``log_softmax``, ``(B, n_genes)`` each."""
        h = self.decoder(z, self.covariates(batch))
        return h, F.log_softmax(self.scale_head(h), dim=-1)

    def expression_fractions(self, z: Tensor, batch: Batch) -> Tensor:
        """The decoder's expression fractions ``softmax`` (rows sum to 1), ``(B, n_genes)``: one pass fewer over
        the genes than ``decode(...)[1].exp()``."""
        return F.softmax(self.scale_head(self.decoder(z, self.covariates(batch))), dim=-1)

    def generative(self, z: Tensor, batch: Batch, log_library: Tensor | None = None):
        """p(x | z, covariates, library) as a count distribution.

        ``log_library`` defaults to the observed one (``library="observed"``) or a sample of q(l|x).
        """
        if log_library is None:
            if self.library == "observed":
                log_library = self.observed_log_library(batch)
            else:
                mu, logvar = self._library_posterior(batch)
                log_library = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        h, log_scale = self.decode(z, batch)
        log_mu = log_scale + log_library
        if self.likelihood == "poisson":
            return Poisson(log_mu)
        log_theta = self._log_theta(batch, h)
        if self.likelihood == "zinb":
            return ZeroInflatedNegativeBinomial(log_mu, log_theta, self.zi_head(h))
        return NegativeBinomial(log_mu, log_theta)

    def _log_theta(self, batch: Batch, h: Tensor | None) -> Tensor:
        """The NB log inverse dispersion of the batch's cells (``h``: decoder features, for ``"gene-cell"``)."""
        if self.dispersion == "gene":
            log_theta = self.log_theta
        elif self.dispersion == "gene-batch":
            log_theta = self.log_theta[self._batch_codes(batch)]
        else:
            log_theta = self.theta_head(h)
        # Bounded so that one bad step cannot drive theta to 0 or inf (exp overflow, lgamma(0) = inf).
        return log_theta.clamp(-12.0, 18.0)

    @staticmethod
    def _nonzeros(batch: Batch) -> tuple[Tensor, Tensor, Tensor] | None:
        """The non-zero entries the device data path hands over with the batch, if any."""
        if "x" + NZ_ROWS in batch:
            return batch["x" + NZ_ROWS], batch["x" + NZ_COLS], batch["x" + NZ_VALUES]
        return None

    @classmethod
    def _rows_log_prob(cls, dist, batch: Batch) -> Tensor:
        """``dist.log_prob(x).sum(-1)``, from the non-zero entries the device data path hands over if any."""
        return dist.log_prob_rows(
            batch["x"], cls._nonzeros(batch), batch.get("x" + LOG_FACTORIAL), batch.get(_COUNT_TERMS)
        )

    def importance_constants(self, batch: Batch) -> Batch:
        """The batch with the NB's count terms (:func:`~scivae.cells.likelihoods.nb_count_terms`) computed once:
        they depend on the counts and the dispersion, not on z, so the samples of :meth:`iwae` share them."""
        if self.likelihood != "nb" or self.dispersion == "gene-cell":
            return batch
        terms = nb_count_terms(
            batch["x"], self._log_theta(batch, None), self._nonzeros(batch), batch.get("x" + LOG_FACTORIAL)
        )
        return {**batch, _COUNT_TERMS: terms}

    def log_likelihood(self, batch: Batch, z: Tensor) -> Tensor:
        """log p(x | z, covariates, library) summed over genes, ``(B,)``."""
        return self._rows_log_prob(self.generative(z, batch), batch)

    # ------------------------------------------------------------------------------------------------------
    def _library_prior(self, batch: Batch) -> tuple[Tensor, Tensor]:
        codes = self._batch_codes(batch)
        return self.library_log_mean[codes].unsqueeze(-1), self.library_log_var[codes].unsqueeze(-1)

    def auxiliary_kl(self, batch: Batch) -> Tensor | None:
        """KL(q(log l | x) || N(prior mean, prior var of the cell's batch)) for a latent library."""
        if self.library != "latent":
            return None
        mu, logvar = self._library_posterior(batch)
        p_mu, p_var = self._library_prior(batch)
        kl = 0.5 * (torch.log(p_var) - logvar + (logvar.exp() + (mu - p_mu) ** 2) / p_var - 1.0)
        return kl.sum(-1)

    def importance_log_likelihood(self, batch: Batch, z: Tensor) -> Tensor:
        """``log p(x|z,l) + log p(l) - log q(l|x)`` for one sample of l (latent library), else log p(x|z)."""
        if self.library != "latent":
            return self.log_likelihood(batch, z)
        mu, logvar = self._library_posterior(batch)
        l_sample = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        p_mu, p_var = self._library_prior(batch)
        log_p = -0.5 * (_LOG_2PI + torch.log(p_var) + (l_sample - p_mu) ** 2 / p_var)
        log_q = -0.5 * (_LOG_2PI + logvar + (l_sample - mu) ** 2 / logvar.exp())
        lp = self._rows_log_prob(self.generative(z, batch, log_library=l_sample), batch)
        return lp + (log_p - log_q).sum(-1)
