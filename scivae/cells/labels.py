"""Semi-supervised cell labels (scANVI-like): a classifier on the latent, trained with the ELBO on labelled cells.

``CellVAE(adata, labels_key="cell_type", unlabeled_category="Unknown")`` reads the labels of ``obs[labels_key]``;
cells whose label is ``unlabeled_category`` or missing are unlabelled. The training arrays get a ``label`` column
of codes (``-1``: unlabelled) and the module a :class:`LabelClassifier` on z; its cross-entropy on a posterior
sample of each labelled cell of a minibatch, times ``classification_ratio``, is added to the objective (as
scANVI's classification loss), so unlabelled cells of a reference contribute to the ELBO only. The unlabelled
cells of a query model (:mod:`scivae.cells.mapping`) also contribute the entropy of their labels
(:func:`unlabelled_entropy`). :func:`predict` classifies the posterior means of any cells with the model's genes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    import anndata as ad

    from scivae.cells.model import CellVAE

#: Key of the label codes in the training arrays and minibatches (``-1``: unlabelled cell).
LABELS = "label"
#: Default weight of the classification loss (scvi-tools' scANVI default ``classification_ratio``).
CLASSIFICATION_RATIO = 50.0


@dataclass
class LabelEncoder:
    """The label column of ``obs`` and its categories, in code order (saved with the model).

    Attributes
    ----------
    key
        ``obs`` column of the labels.
    unlabeled_category
        The value that marks unlabelled cells (missing values are unlabelled too).
    categories
        The labels the classifier predicts.
    """

    key: str
    unlabeled_category: str
    categories: list[str] = field(default_factory=list)

    @property
    def n_labels(self) -> int:
        return len(self.categories)

    def _labelled(self, obs: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
        if self.key not in obs.columns:
            cols = ", ".join(map(repr, obs.columns[:12])) + (", ..." if obs.shape[1] > 12 else "") or "none"
            raise ScivaeInputError(
                f"labels key {self.key!r} is not a column of adata.obs (columns: {cols}): pass an existing column "
                "to {labels_key}"
            )
        col = obs[self.key]
        text = col.astype(str)
        labelled = ~(col.isna().to_numpy() | (text == str(self.unlabeled_category)).to_numpy())
        return text, labelled

    @classmethod
    def fit(cls, obs: pd.DataFrame, key: str, unlabeled_category: str) -> LabelEncoder:
        """Categories of the labelled cells (categorical order, else sorted); at least two are needed."""
        enc = cls(key=str(key), unlabeled_category=str(unlabeled_category))
        text, labelled = enc._labelled(obs)
        col = obs[key]
        used = set(text[labelled])
        if isinstance(col.dtype, pd.CategoricalDtype):
            enc.categories = [str(c) for c in col.cat.categories if str(c) in used]
        else:
            enc.categories = sorted(used)
        if len(enc.categories) < 2:
            raise ScivaeInputError(
                f"labels key {key!r} has {len(enc.categories)} label(s) besides {unlabeled_category!r} and missing "
                f"values ({int(labelled.sum())} labelled cells): a classifier needs at least 2; label more cells, "
                "or set {unlabeled_category} to the value that marks unlabelled cells"
            )
        return enc

    def codes(self, obs: pd.DataFrame) -> np.ndarray:
        """Label codes of these cells, int64; ``-1`` for unlabelled cells and labels the model does not know."""
        text, labelled = self._labelled(obs)
        codes = pd.Categorical(text.where(labelled), categories=self.categories).codes.astype(np.int64)
        return np.where(labelled, codes, -1)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "unlabeled_category": self.unlabeled_category, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelEncoder:
        return cls(key=str(d["key"]), unlabeled_category=str(d["unlabeled_category"]), categories=list(d["categories"]))


class LabelClassifier(nn.Module):
    """Logits of the labels from a latent point: Linear -> ReLU -> Dropout -> Linear (scANVI's classifier)."""

    def __init__(self, n_latent: int, n_hidden: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_latent, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, n_labels)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled rows (``labels >= 0``); zero for a batch without labelled cells.

    Computed over every row with the unlabelled ones masked out, so that no host sync picks the rows.
    """
    labelled = labels >= 0
    per_row = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
    n = labelled.sum()
    return (per_row * labelled).sum() / n.clamp_min(1)


def unlabelled_entropy(logits: Tensor, weights: Tensor) -> Tensor:
    """Mean entropy (nats) of the label distributions of the rows with weight 1 (``weights``: 0/1 per row); zero
    when no row has weight.

    Minimised for a query model's cells (entropy minimisation, Grandvalet and Bengio 2005): the query's batch
    weights then place its cells where the frozen reference classifier is confident, i.e. among labelled
    reference cells, rather than between them.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    per_row = -(log_p.exp() * log_p).sum(-1)
    return (per_row * weights).sum() / weights.sum().clamp_min(1)


def attach_labels(
    data: Any, adata: Any, labels_key: str | None, unlabeled_category: str, backed: bool
) -> LabelEncoder | None:
    """Read the labels of ``adata`` into ``data.arrays[LABELS]``; ``None`` without a labels key."""
    if labels_key is None:
        return None
    if backed:
        raise ScivaeInputError(
            "{labels_key} needs the cells in memory: leave {backed} off (read the file with anndata first)"
        )
    encoder = LabelEncoder.fit(adata.obs, labels_key, unlabeled_category)
    data.arrays[LABELS] = encoder.codes(adata.obs)
    return encoder


def restore_labels(model: CellVAE, state: dict[str, Any], adata: Any) -> None:
    """Labels of a loaded model (``state["labels"]``); cells given with the label column get their codes, so that
    a further ``fit`` stays semi-supervised."""
    saved = state.get("labels")
    model.labels = LabelEncoder.from_dict(saved) if isinstance(saved, dict) else None
    data = getattr(model, "data", None)
    if model.labels is None or data is None or getattr(model, "mapping", None) is not None:
        return
    obs = getattr(adata, "obs", None)
    if isinstance(getattr(data, "arrays", None), dict) and obs is not None and model.labels.key in obs.columns:
        data.arrays[LABELS] = model.labels.codes(obs)


def _cell_names(model: CellVAE, adata: ad.AnnData | str | None, n: int) -> pd.Index:
    source = adata if adata is not None else getattr(model, "adata", None)
    if isinstance(source, (str, Path)):  # a streamed .h5ad: its obs names, without loading X
        import anndata

        source = anndata.read_h5ad(source, backed="r")
    names = getattr(source, "obs_names", None)
    if names is not None and len(names) == n:
        return pd.Index([str(x) for x in names])
    return pd.RangeIndex(n).astype(str)


@torch.no_grad()
def predict(
    model: CellVAE, adata: ad.AnnData | str | None = None, soft: bool = False, batch_size: int = 1024
) -> np.ndarray | pd.DataFrame:
    """Labels (or their probabilities) of cells from the classifier on their posterior means.

    See :meth:`scivae.CellVAE.predict`.
    """
    labels = getattr(model, "labels", None)
    if labels is None or getattr(model.module, "classifier", None) is None:
        raise ScivaeInputError(
            "this model was trained without labels: make it with {labels_key} (and {unlabeled_category}) to predict"
        )
    mu = model.get_latent(adata, batch_size=batch_size)
    device = model._ready()
    classifier = model.module.classifier
    probs = []
    for start in range(0, len(mu), batch_size):
        z = torch.as_tensor(mu[start : start + batch_size], device=device)
        probs.append(torch.softmax(classifier(z).float(), dim=-1).cpu().numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, labels.n_labels), dtype=np.float32)
    if soft:
        return pd.DataFrame(p, index=_cell_names(model, adata, len(p)), columns=list(labels.categories))
    return np.asarray(labels.categories, dtype=object)[p.argmax(1)] if len(p) else np.array([], dtype=object)
