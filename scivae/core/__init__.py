"""The domain-free VAE core: posterior, objective, schedules, diagnostics, training and persistence.

Adapters subclass :class:`VAEModule` and :class:`BaseModel` and register themselves (see ``README.md``);
nothing here knows about AnnData or SMILES, or names an adapter.
"""

from scivae.core.callbacks import BestWeights, CollapseMonitor, KLAnnealing, WarmupAwareEarlyStopping
from scivae.core.data import ArrayDataModule, GroupedBatchSampler, iterate_batches, split_indices, take_rows
from scivae.core.diagnostics import (
    CollapseReport,
    active_unit_variance,
    active_units,
    collapse_report,
    kl_per_dimension,
)
from scivae.core.fit import FitResult, fit_module, posterior_over
from scivae.core.model import BaseModel, load
from scivae.core.module import Batch, LossOutput, VAEModule
from scivae.core.objective import KLConfig, kl_term
from scivae.core.persistence import FORMAT_VERSION, load_model_dir, save_model_dir
from scivae.core.posterior import GaussianHead, GaussianPosterior, standard_normal_log_prob
from scivae.core.report import write_fit_report
from scivae.core.schedules import SCHEDULES, KLSchedule, make_schedule
from scivae.core.training_plan import VAETrainingPlan

__all__ = [
    "FORMAT_VERSION",
    "SCHEDULES",
    "ArrayDataModule",
    "GroupedBatchSampler",
    "BaseModel",
    "Batch",
    "BestWeights",
    "CollapseMonitor",
    "CollapseReport",
    "FitResult",
    "GaussianHead",
    "GaussianPosterior",
    "KLAnnealing",
    "KLConfig",
    "KLSchedule",
    "LossOutput",
    "VAEModule",
    "VAETrainingPlan",
    "WarmupAwareEarlyStopping",
    "active_unit_variance",
    "active_units",
    "collapse_report",
    "fit_module",
    "iterate_batches",
    "kl_per_dimension",
    "kl_term",
    "load",
    "load_model_dir",
    "make_schedule",
    "posterior_over",
    "save_model_dir",
    "split_indices",
    "standard_normal_log_prob",
    "take_rows",
    "write_fit_report",
]
