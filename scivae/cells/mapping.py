"""Reference mapping by architecture surgery (scArches): a query model that adds the query's batches to a trained
reference and trains only their new weights.

:func:`load_query_data` builds the query model from a trained reference (a :class:`~scivae.CellVAE` or its folder):

* the batch categories of the query that the reference does not know are appended to its batch categories; every
  layer that receives the batch one-hot (the decoder's, and the encoder's with ``encode_covariates``) gets one new
  input column per new batch, initialised to the mean of the reference batches' columns (the query starts decoded
  as an average reference batch), and a per-batch dispersion (``"gene-batch"``) one new row each, likewise;
* every other weight is frozen: ``requires_grad`` off, and the frozen entries of the widened weights get a zero
  gradient (a hook), which Adam without weight decay turns into an exactly zero step. So a fit on the query cannot
  move what the reference learnt, and reference cells keep their latent and predicted labels;
* normalisation layers stay frozen too: LayerNorm has no statistics, and BatchNorm layers are kept in eval mode
  during the fit (their running statistics would otherwise drift to the query and change the reference cells'
  latent, which scvi-tools' ``freeze_batchnorm`` also avoids);
* the label classifier of a semi-supervised reference is frozen and the query cells are unlabelled: each
  contributes its ELBO plus ``classification_ratio`` times the entropy of the frozen classifier's labels of its
  latent (:func:`~scivae.cells.labels.unlabelled_entropy`), so that the query's batch weights place the query
  among labelled reference cells rather than between them; :meth:`~scivae.CellVAE.predict` then transfers the
  reference labels. On validation cells (IFN-beta PBMCs not in the benchmark,
  ``benchmarks/cells/label_transfer_validation.py``) this raised label-transfer accuracy from 0.928 to 0.943
  (mean of 9 fits, classifier trained on samples in both) without changing the reference cells' latent;
* reference genes missing from the query are zero-padded (with a warning naming how many), extra genes dropped.

The query model saves and loads like any cell model; its ``adapter_state`` records the number of reference
batches (``reference_mapping``), so a loaded query model is frozen the same way again.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from scivae.cells.data import MIN_CELLS, CovariateEncoder, _categories, align, counts_matrix, unique_gene_names
from scivae.core.seeding import seeded
from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from scivae.cells.model import CellVAE
    from scivae.cells.module import CellVAEModule
    from scivae.core.options import TrainingOptions

#: Attribute marking a module whose reference weights are frozen (the hooks are registered once).
_FROZEN_FLAG = "_scivae_query_frozen"


def pad_genes(adata: ad.AnnData, genes: list[str], layer: str | None = None, warn: bool = True) -> ad.AnnData:
    """The counts of ``adata`` over ``genes``: genes it lacks are zero columns, genes it has beyond them dropped.

    Parameters
    ----------
    adata
        Cells with raw counts (in ``layers[layer]``, else ``raw``, else ``X``); not modified.
    genes
        The model's genes, in order.
    layer
        Layer holding the counts.
    warn
        Warn (``UserWarning``) when genes are missing, naming how many.

    Returns
    -------
    anndata.AnnData
        ``X``: float32 CSR counts, ``var_names``: ``genes``; ``obs`` a copy of the input's.
    """
    matrix, names, source = counts_matrix(adata, layer)
    names = unique_gene_names(names, warn=False)
    position = pd.Index(names).get_indexer(pd.Index(genes))
    present = np.flatnonzero(position >= 0)
    n_missing = len(genes) - present.size
    if present.size == 0:
        raise ScivaeInputError(
            f"none of the reference's {len(genes)} genes is among the query's {len(names)} gene names in {source} "
            f"(reference genes e.g. {', '.join(genes[:3])}; query e.g. {', '.join(map(str, names[:3]))}): pass query "
            "data with the same kind of gene names as var_names"
        )
    if sp.issparse(matrix):
        taken = sp.csc_matrix(matrix)[:, position[present]].tocoo()
    else:
        taken = sp.coo_matrix(np.asarray(matrix)[:, position[present]])
    # the query's columns land at their genes' places among the reference's; the missing genes stay empty
    padded = sp.csr_matrix(
        (taken.data.astype(np.float32), (taken.row, present[taken.col])), shape=(adata.n_obs, len(genes))
    )
    padded.sum_duplicates()
    if n_missing and warn:
        warnings.warn(
            f"{n_missing} of the reference's {len(genes)} genes are missing from the query data: their counts are "
            "set to 0 (zero-padded)",
            UserWarning,
            stacklevel=3,
        )
    out = ad.AnnData(X=padded, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(list(genes))))
    out.uns["scivae_genes_padded"] = int(n_missing)
    return out


@dataclass
class QueryMapping:
    """What makes a cell model a query model: the batches below ``n_reference_batches`` (codes) are the reference's.

    Attributes
    ----------
    n_reference_batches
        Number of batch categories of the reference; the query's new batches follow them.
    """

    n_reference_batches: int

    def trainable_batches(self, n_batches: int) -> list[int]:
        """Codes of the query's own batches, whose weights train."""
        return list(range(self.n_reference_batches, n_batches))

    def pad(self, adata: ad.AnnData, genes: list[str], layer: str | None) -> ad.AnnData:
        """New cells over the model's genes, missing ones zero-padded (as the query was)."""
        return pad_genes(adata, genes, layer)

    def check_options(self, options: TrainingOptions) -> TrainingOptions:
        """Refuse weight decay: Adam adds it to every gradient, so it would move the frozen reference weights."""
        if options.weight_decay:
            raise ScivaeInputError(
                f"{{weight_decay}}={options.weight_decay:g} would move the reference's frozen weights of a query model "
                "(Adam adds the decay to their zero gradients): leave it at 0"
            )
        return options

    def to_dict(self) -> dict[str, Any]:
        return {"n_reference_batches": self.n_reference_batches}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueryMapping:
        return cls(n_reference_batches=int(d["n_reference_batches"]))


# ----------------------------------------------------------------------------------------------------------
# Surgery and freezing of the module
# ----------------------------------------------------------------------------------------------------------


def _injected_linears(module: CellVAEModule) -> list[nn.Linear]:
    """The linear layers whose input ends with the covariates (the batch one-hot first), decoder then encoder."""
    mlps = [module.decoder] + ([module.encoder] if module.encode_covariates else [])
    return [layer[0] for mlp in mlps for layer in mlp.layers]


def _batch_width(module: CellVAEModule) -> int:
    """Width of the batch one-hot in the covariates (none for one batch)."""
    return module.n_batches if module.n_batches > 1 else 0


@torch.no_grad()
def extend_batches(reference: CellVAEModule, query: CellVAEModule) -> None:
    """Copy the reference's weights into the query module, which has the same architecture with more batches.

    Batch columns of the widened layers (and rows of a per-batch dispersion) keep the reference's values; the new
    batches' ones start at the mean of the reference batches' (zero when the reference had one batch, whose
    column is then zero too: reference cells are computed as before).
    """
    ref_state = reference.state_dict()
    own = query.state_dict()
    query.load_state_dict({k: v for k, v in ref_state.items() if k in own and own[k].shape == v.shape}, strict=False)
    old_w, new_w = _batch_width(reference), _batch_width(query)
    n_ref = reference.n_batches
    for old, new in zip(_injected_linears(reference), _injected_linears(query), strict=True):
        start = old.in_features - reference.n_cov  # the layer's own input comes first, then the covariates
        w = old.weight
        new.weight.zero_()
        new.weight[:, : start + old_w] = w[:, : start + old_w]
        new.weight[:, start + new_w :] = w[:, start + old_w :]
        if old_w:
            fill = w[:, start : start + old_w].mean(1, keepdim=True)
            new.weight[:, start + n_ref : start + new_w] = fill
        new.bias.copy_(old.bias)
    if reference.dispersion == "gene-batch" and reference.likelihood != "poisson":
        query.log_theta[:n_ref] = reference.log_theta
        query.log_theta[n_ref:] = reference.log_theta.mean(0, keepdim=True)


def _keep_eval(module: nn.Module, args: Any) -> None:
    module.train(False)  # frozen running statistics: normalise with the reference's, never update them


def _gradient_mask(mask: torch.Tensor) -> Any:
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * mask.to(device=grad.device, dtype=grad.dtype)

    return hook


def freeze_reference(module: CellVAEModule, trainable_batches: list[int]) -> list[str]:
    """Freeze every weight but those of ``trainable_batches`` (see the module docstring); returns what trains.

    Idempotent: a module frozen before is left as it is.
    """
    if getattr(module, _FROZEN_FLAG, False):
        return getattr(module, _FROZEN_FLAG + "_names")
    for p in module.parameters():
        p.requires_grad_(False)
    codes = torch.as_tensor(trainable_batches, dtype=torch.long)
    names = {id(p): n for n, p in module.named_parameters()}
    trained = []
    if _batch_width(module):
        for linear in _injected_linears(module):
            start = linear.in_features - module.n_cov
            mask = torch.zeros_like(linear.weight)
            mask[:, start + codes] = 1.0
            linear.weight.requires_grad_(True)
            linear.weight.register_hook(_gradient_mask(mask))
            trained.append(names[id(linear.weight)])
        if module.dispersion == "gene-batch" and module.likelihood != "poisson":
            mask = torch.zeros_like(module.log_theta)
            mask[codes] = 1.0
            module.log_theta.requires_grad_(True)
            module.log_theta.register_hook(_gradient_mask(mask))
            trained.append("log_theta")
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(_keep_eval)
    setattr(module, _FROZEN_FLAG, True)
    setattr(module, _FROZEN_FLAG + "_names", trained)
    return trained


def apply_mapping(model: CellVAE) -> None:
    """Freeze a query model's module and make its fits decay-free (after building or loading it)."""
    mapping = model.mapping
    if mapping is None:
        return
    freeze_reference(model.module, mapping.trainable_batches(model.module.n_batches))
    if model.module.classifier is not None:
        model.module.entropy_ratio = model.module.classification_ratio
    # an instance attribute: the class's defaults (weight decay 1e-6) stay as they are for other models
    model.TRAINING_DEFAULTS = type(model).TRAINING_DEFAULTS.replace(weight_decay=0.0)


def restore_mapping(model: CellVAE, state: dict[str, Any]) -> None:
    """The mapping of a loaded model (``state["reference_mapping"]``), frozen again; ``None`` for other models."""
    saved = state.get("reference_mapping")
    model.mapping = QueryMapping.from_dict(saved) if isinstance(saved, dict) else None
    apply_mapping(model)


# ----------------------------------------------------------------------------------------------------------
# The query model
# ----------------------------------------------------------------------------------------------------------


def _library_prior(data: Any, n_batches: int) -> tuple[list[float], list[float]]:
    """Per-batch mean and variance of log total counts of the query's non-empty cells (NaN for no cells)."""
    x = data.arrays["x"][data.nonempty]
    log_lib = np.log(np.asarray(x.sum(1)).ravel())
    codes = data.arrays["batch"][data.nonempty]
    means, variances = [], []
    for b in range(n_batches):
        v = log_lib[codes == b]
        means.append(float(v.mean()) if v.size else float(log_lib.mean()))
        variances.append(max(float(v.var()) if v.size > 1 else float(log_lib.var()), 1e-2))
    return means, variances


def load_query_data(
    cls: type[CellVAE],
    query: ad.AnnData,
    reference: CellVAE | str | Path,
    *,
    batch_key: str | None = None,
    layer: str | None = None,
) -> CellVAE:
    """See :meth:`scivae.CellVAE.load_query_data`."""
    if isinstance(reference, (str, Path)):
        reference = cls.load(reference)
    if not isinstance(reference, cls):
        raise ScivaeInputError(
            f"reference must be a trained CellVAE or its model folder, got {type(reference).__name__}"
        )
    reference._require_trained()
    if not isinstance(query, ad.AnnData) or query.isbacked:
        raise ScivaeInputError("the query must be an AnnData in memory: read the file with anndata first (not backed)")
    ref_enc = reference.encoder
    if ref_enc.batch_key is None:
        raise ScivaeInputError(
            "the reference was trained without {batch_key}, so query cells can get no batch weights of their own: "
            "train the reference with a batch key, or embed the query with the reference's get_latent"
        )
    key = batch_key if batch_key is not None else ref_enc.batch_key
    CovariateEncoder.check_keys(query.obs, key, ref_enc.categorical_keys, ref_enc.continuous_keys)
    query_categories = _categories(query.obs, key, "batch key")
    new = [c for c in query_categories if c not in ref_enc.batch_categories]
    if not new:
        raise ScivaeInputError(
            f"every batch of the query ({', '.join(query_categories[:5])}) is a reference batch, so there is nothing "
            f"to train: embed and classify the query with the reference itself, or pass its own batch column to "
            "{batch_key}"
        )
    n_ref = len(ref_enc.batch_categories)
    encoder = dataclasses.replace(ref_enc, batch_key=key, batch_categories=[*ref_enc.batch_categories, *new])
    genes = list(reference.genes)
    src_layer = layer if layer is not None else reference.layer
    padded = pad_genes(query, genes, src_layer)
    data = align(padded, genes, encoder, None)
    if data.nonempty.size < MIN_CELLS:
        raise ScivaeInputError(
            f"the query has {data.nonempty.size} cell(s) with counts over the reference's genes: mapping needs at "
            f"least {MIN_CELLS}; pass more query cells"
        )

    config = reference._module_config()
    config["n_batches"] = encoder.n_batches
    if config.get("library") == "latent":
        means, variances = _library_prior(data, encoder.n_batches)
        config["library_log_mean"] = list(config["library_log_mean"]) + means[n_ref:]
        config["library_log_var"] = list(config["library_log_var"]) + variances[n_ref:]
    model = cls.__new__(cls)
    model.seed = reference.seed
    with seeded(model.seed):
        model.module = cls._new_module(**config)
    extend_batches(reference.module, model.module)
    model.module.to(reference.device)
    model.module.eval()
    model.genes = genes
    model.layer = src_layer
    model.encoder = encoder
    model.labels = reference.labels
    model.mapping = QueryMapping(n_reference_batches=n_ref)
    model.adata = query  # the user's AnnData, as for any model; methods that read it again pad it the same way
    model.data = data  # no label codes: query cells are unlabelled (the classifier is frozen anyway)
    model.data_summary = {
        **data.summary,
        "n_genes_zero_padded": padded.uns["scivae_genes_padded"],
        "query_batches": new,
    }
    model.fit_result = None
    model.saved_metrics = {}
    model.learned_prior = None
    model._fit_split = None
    apply_mapping(model)
    return model
