"""The domain-free VAE core, in four floors (see ``ARCHITECTURE.md`` at the top of the repository):

* :mod:`scivae.core.module` -- the ``nn.Module`` side: :class:`VAEModule` (inference / generative / loss), the
  Gaussian posterior, the objective (beta, free bits, capacity) and the latent priors;
* :mod:`scivae.core.data` -- data modules: arrays in memory, arrays on the training device, streamed chunks;
* :mod:`scivae.core.train` -- Lightning: :func:`fit_module`, the training plan, callbacks (KL annealing, collapse
  monitor, best weights, resumable checkpoints, divergence guard), schedules, precision, DDP helpers;
* :mod:`scivae.core.model` -- the user-facing base class :class:`BaseModel` and model folders.

Beside them: :mod:`scivae.core.options` (:class:`TrainingOptions` and the option checks),
:mod:`scivae.core.diagnostics` (posterior collapse) and :mod:`scivae.core.seeding`.

Adapters subclass :class:`VAEModule` and :class:`BaseModel` and register themselves; nothing here knows about
AnnData or SMILES, or names an adapter. The names below load on first use, so importing one floor does not
import Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it.
_WHERE = {
    "ArrayDataModule": "scivae.core.data.arrays",
    "GroupedBatchSampler": "scivae.core.data.arrays",
    "iterate_batches": "scivae.core.data.arrays",
    "split_indices": "scivae.core.data.arrays",
    "take_rows": "scivae.core.data.arrays",
    "CollapseReport": "scivae.core.diagnostics",
    "active_unit_variance": "scivae.core.diagnostics",
    "active_units": "scivae.core.diagnostics",
    "collapse_report": "scivae.core.diagnostics",
    "kl_per_dimension": "scivae.core.diagnostics",
    "BaseModel": "scivae.core.model.base",
    "load": "scivae.core.model.base",
    "FORMAT_VERSION": "scivae.core.model.persistence",
    "load_model_dir": "scivae.core.model.persistence",
    "save_model_dir": "scivae.core.model.persistence",
    "Batch": "scivae.core.module.base",
    "LossOutput": "scivae.core.module.base",
    "VAEModule": "scivae.core.module.base",
    "KLConfig": "scivae.core.module.objective",
    "kl_term": "scivae.core.module.objective",
    "GaussianHead": "scivae.core.module.posterior",
    "GaussianPosterior": "scivae.core.module.posterior",
    "standard_normal_log_prob": "scivae.core.module.posterior",
    "TrainingOptions": "scivae.core.options",
    "BestWeights": "scivae.core.train.callbacks",
    "CollapseMonitor": "scivae.core.train.callbacks",
    "KLAnnealing": "scivae.core.train.callbacks",
    "WarmupAwareEarlyStopping": "scivae.core.train.callbacks",
    "FitResult": "scivae.core.train.fit",
    "fit_module": "scivae.core.train.fit",
    "posterior_over": "scivae.core.train.fit",
    "VAETrainingPlan": "scivae.core.train.plan",
    "SCHEDULES": "scivae.core.train.schedules",
    "KLSchedule": "scivae.core.train.schedules",
    "make_schedule": "scivae.core.train.schedules",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'scivae.core' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return [*__all__, "data", "diagnostics", "model", "module", "options", "seeding", "train"]
