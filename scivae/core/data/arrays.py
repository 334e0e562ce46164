"""Array-backed data for the core: whole batches sliced by index, no per-item collation.

Adapters turn their domain data into a ``dict`` of row-aligned arrays (numpy, scipy CSR/CSC or torch)
once; every batch is then one fancy-index per array. This keeps AnnData and RDKit out of the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from scivae.core.distributed import rank_world
from scivae.core.options import positive_int
from scivae.errors import ScivaeInputError

ArrayLike = Any  # np.ndarray | scipy.sparse matrix | torch.Tensor


def _n_rows(arrays: Mapping[str, ArrayLike]) -> int:
    sizes = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays must have the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def _to_tensor(a: ArrayLike) -> Tensor:
    if sp.issparse(a):
        a = a.toarray()
    t = a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    if t.is_floating_point():
        return t.float()
    if t.dtype == torch.bool:
        return t
    return t.long()


def take_rows(arrays: Mapping[str, ArrayLike], index: np.ndarray) -> dict[str, Tensor]:
    """Slice the same rows of every array into a batch of tensors (sparse rows are densified here)."""
    out = {}
    for key, a in arrays.items():
        if sp.issparse(a) and a.format != "csr":
            a = a.tocsr()
        out[key] = _to_tensor(a[index])
    return out


class _Rows(Dataset):
    """``dataset[list_of_indices]`` returns one batch; used with a BatchSampler and ``batch_size=None``."""

    def __init__(self, arrays: Mapping[str, ArrayLike], rows: np.ndarray) -> None:
        self.arrays = {k: (v.tocsr() if sp.issparse(v) else v) for k, v in arrays.items()}
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: Sequence[int]) -> dict[str, Tensor]:
        # Sorted rows make CSR slicing sequential; order inside a batch does not change the loss.
        return take_rows(self.arrays, np.sort(self.rows[np.asarray(positions)]))


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of positions whose ``sizes`` are close, so that padding per batch stays small.

    Each epoch the positions are shuffled, cut into pools of ``pool_batches`` batches, sorted by size inside
    each pool and cut into batches; the batches are then shuffled. Batch composition is random from epoch to
    epoch (as with plain shuffling), and a batch's sizes differ little (padded sequences: less wasted compute).

    Parameters
    ----------
    sizes
        One size per position (for example a sequence length).
    batch_size
        Positions per batch (the last batch of a pool may be smaller).
    generator
        Seeded generator; it advances every epoch, so a seed gives the same sequence of epochs.
    pool_batches
        Batches per sorting pool: larger pools pad less but mix less.
    """

    def __init__(self, sizes: np.ndarray, batch_size: int, generator: torch.Generator, pool_batches: int = 50) -> None:
        self.sizes = torch.as_tensor(np.asarray(sizes))
        self.batch_size = int(batch_size)
        self.generator = generator
        self.pool = self.batch_size * int(pool_batches)

    def __len__(self) -> int:
        n = len(self.sizes)
        full, rest = divmod(n, self.pool)
        return full * math.ceil(self.pool / self.batch_size) + math.ceil(rest / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(len(self.sizes), generator=self.generator)
        batches = []
        for start in range(0, len(perm), self.pool):
            chunk = perm[start : start + self.pool]
            chunk = chunk[torch.argsort(self.sizes[chunk], stable=True)]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


def shard_batch(batch: Sequence[int] | np.ndarray, rank: int, world: int) -> np.ndarray:
    """Part ``rank`` of ``world`` of one global batch: the batch cut into ``world`` contiguous near-equal parts."""
    batch = np.asarray(batch)
    size, extra = divmod(len(batch), world)
    start = rank * size + min(rank, extra)
    return batch[start : start + size + (rank < extra)]


class RankShardedBatchSampler(Sampler[list[int]]):
    """This process's share of every batch of another batch sampler, for distributed (DDP) training.

    Every process iterates the same seeded ``batch_sampler``, so all draw the same global batches, and each
    keeps its part of every batch (:func:`shard_batch`). Hence one epoch shows every row exactly once across
    the processes, every process makes the same number of steps (DDP requires it), and the gradient DDP
    averages is that of the global batch: ``batch_size`` means the same and training takes the same steps
    whatever the number of processes. A global batch with fewer rows than processes is merged into the
    batch before it. Any sampler that yields lists of positions can be wrapped.

    Parameters
    ----------
    batch_sampler
        Yields lists of positions (global batches); seeded identically on every process.
    rank, world
        This process's rank and the number of processes; default: read from ``torch.distributed`` when the
        iteration starts (Lightning builds the loaders after it has set up the process group).
    """

    def __init__(self, batch_sampler: Any, rank: int | None = None, world: int | None = None) -> None:
        self.batch_sampler = batch_sampler
        self.rank, self.world = rank, world

    def __len__(self) -> int:  # an upper bound when a last, tiny batch gets merged
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = (self.rank, self.world) if self.world is not None else rank_world()
        pending: list[int] | None = None
        for batch in self.batch_sampler:
            batch = list(batch)
            if pending is not None and len(batch) < world:
                pending += batch
                continue
            if pending is not None:
                yield shard_batch(pending, rank, world).tolist()
            pending = batch
        if pending is not None:
            if len(pending) < world:
                raise ScivaeInputError(f"{len(pending)} rows for {world} processes: use fewer devices or more data")
            yield shard_batch(pending, rank, world).tolist()


class ResumableBatchSampler(Sampler[list[int]]):
    """A shuffling batch sampler that can restart an epoch at any batch (for resumable fits).

    It wraps a batch sampler whose randomness all comes from ``generator`` (a :class:`RandomSampler` in a
    :class:`BatchSampler`, or :class:`GroupedBatchSampler`) and draws each epoch's batches when the epoch starts.
    Its state is the generator state at that moment plus the number of batches already trained on, so a resumed
    fit sees the same batches in the same order as an uninterrupted one.

    Parameters
    ----------
    inner
        The batch sampler to wrap.
    generator
        The generator ``inner`` draws from (it advances every epoch).
    """

    def __init__(self, inner: Sampler[list[int]], generator: torch.Generator) -> None:
        self.inner = inner
        self.generator = generator
        self._epoch_start: Tensor | None = None
        self._skip = 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[int]]:
        self._epoch_start = self.generator.get_state()
        batches = list(self.inner)  # the whole epoch's order is drawn now
        skip, self._skip = self._skip, 0
        yield from batches[skip:]

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """State to resume from: inside the current epoch after ``batches_done`` batches, or (``None``) at the
        start of the next epoch."""
        if batches_done is None or self._epoch_start is None:
            return {"generator": self.generator.get_state(), "skip": 0}
        return {"generator": self._epoch_start.clone(), "skip": int(batches_done)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next epoch drawn replays the saved one and skips its done batches."""
        self.generator.set_state(state["generator"])
        self._skip = int(state["skip"])


def _loader(
    arrays: Mapping[str, ArrayLike],
    rows: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
    group_by: str | None = None,
) -> DataLoader:
    dataset = _Rows(arrays, rows)
    sizes = None if group_by is None else np.asarray(arrays[group_by])[rows]
    # The loader's own generator only seeds (unused) workers; without it every new iterator would draw from the
    # global RNG, which a resumed fit could not replay.
    base_seed = torch.Generator().manual_seed(seed)
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        if sizes is not None:
            inner: Sampler[list[int]] = GroupedBatchSampler(sizes, batch_size, generator)
        else:
            inner = BatchSampler(RandomSampler(range(len(rows)), generator=generator), batch_size, drop_last=False)
        batches: Any = ResumableBatchSampler(inner, generator)
    elif sizes is not None:  # fixed order, sorted by size: the same batches every epoch, little padding
        batches = BatchSampler(np.argsort(sizes, kind="stable").tolist(), batch_size, drop_last=False)
    else:
        batches = BatchSampler(SequentialSampler(range(len(rows))), batch_size, drop_last=False)
    if rank_world()[1] > 1:
        batches = RankShardedBatchSampler(batches)
    return DataLoader(dataset, sampler=batches, batch_size=None, generator=base_seed)


def n_rows_of(arrays: Mapping[str, ArrayLike] | Any) -> int | None:
    """Rows of a dict of arrays or of a batch source (its ``n_obs``); None when a source does not say."""
    if isinstance(arrays, Mapping):
        return _n_rows(arrays)
    n = getattr(arrays, "n_obs", None)
    return None if n is None else int(n)


class RowOutputs:
    """Per-row results of a batch-wise pass (latents, ELBOs), written into float32 arrays allocated once.

    Appending one small tensor per batch while large batches are allocated and freed fragments glibc's heap:
    over a streamed 1M-cell latent pass the peak RSS grew by about 1.5 KB per cell, and with the output
    allocated up front it stayed flat (``benchmarks/scale/RESULTS.md``). Sources that do not say how many
    rows they have are collected in parts and concatenated at the end.

    Parameters
    ----------
    n_rows
        Rows the pass will produce (:func:`n_rows_of`), or None.
    """

    def __init__(self, n_rows: int | None) -> None:
        self.n_rows = n_rows
        self._arrays: list[np.ndarray] | None = None
        self._parts: list[list[np.ndarray]] = []
        self._filled = 0

    def add(self, *values: Tensor) -> None:
        """The next rows of each output, in order (tensors on any device)."""
        parts = [v.detach().float().cpu().numpy() for v in values]
        if self.n_rows is None:
            self._parts.append(parts)
            return
        if self._arrays is None:
            self._arrays = [np.empty((self.n_rows, *p.shape[1:]), dtype=np.float32) for p in parts]
        stop = self._filled + parts[0].shape[0]
        if stop > self.n_rows:
            raise RuntimeError(f"the batches gave more than the {self.n_rows} rows of the data")
        for out, part in zip(self._arrays, parts, strict=True):
            out[self._filled : stop] = part
        self._filled = stop

    def result(self) -> list[np.ndarray]:
        """One array per output, ``(n_rows, ...)``."""
        if self.n_rows is None:
            if not self._parts:
                raise ValueError("the pass produced no rows")
            return [np.concatenate(col) for col in zip(*self._parts, strict=True)]
        if self._arrays is None or self._filled != self.n_rows:
            raise RuntimeError(f"the batches gave {self._filled} of the {self.n_rows} rows of the data")
        return self._arrays


def iterate_batches(
    arrays: Mapping[str, ArrayLike] | Any, batch_size: int = 1024, device: torch.device | str = "cpu"
) -> Iterator[dict[str, Tensor]]:
    """Batches of all rows in order, already on ``device`` (for inference: latents, ELBO, sampling).

    ``arrays`` is a dict of row-aligned arrays, or a batch source: any object whose ``batches(batch_size)``
    yields its rows in order as dicts of tensors (an out-of-core data set streamed from disk).
    """
    positive_int(batch_size, "batch_size")
    if not isinstance(arrays, Mapping):
        for batch in arrays.batches(batch_size):
            yield {k: v.to(device) for k, v in batch.items()}
        return
    n = _n_rows(arrays)
    csr = {k: (v.tocsr() if sp.issparse(v) else v) for k, v in arrays.items()}
    for start in range(0, n, batch_size):
        batch = take_rows(csr, np.arange(start, min(start + batch_size, n)))
        yield {k: v.to(device) for k, v in batch.items()}


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split of ``n`` rows (at least one row on each side when n >= 2)."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ScivaeInputError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * validation_fraction))
    if validation_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class ArrayDataModule(L.LightningDataModule):
    """LightningDataModule over row-aligned arrays with a seeded train/validation split.

    Parameters
    ----------
    arrays
        Row-aligned arrays; each batch holds the same keys as tensors (floats as float32, integers as int64).
    batch_size
        Minibatch size. Under DDP this is the global batch: each process takes its share of every batch
        (:class:`RankShardedBatchSampler`), so results do not depend on the number of processes.
    validation_fraction
        Fraction of rows held out for validation (early stopping, diagnostics).
    seed
        Seed of the split and of the shuffling.
    train_indices, validation_indices
        Explicit split; overrides ``validation_fraction``.
    group_by
        Key of a 1-d size array (for example sequence lengths): batches then hold rows of similar size
        (:class:`GroupedBatchSampler`), which cuts padding for variable-length data.
    """

    def __init__(
        self,
        arrays: Mapping[str, ArrayLike],
        batch_size: int = 128,
        validation_fraction: float = 0.1,
        seed: int = 0,
        train_indices: np.ndarray | None = None,
        validation_indices: np.ndarray | None = None,
        group_by: str | None = None,
    ) -> None:
        super().__init__()
        self.arrays = dict(arrays)
        self.n_obs = _n_rows(self.arrays)
        if self.n_obs == 0:
            raise ScivaeInputError("no observations to train on: the input is empty after filtering")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ScivaeInputError(f"batch size must be >= 1, got {batch_size}")
        self.seed = seed
        if group_by is not None and group_by not in self.arrays:
            raise ValueError(f"group_by={group_by!r} is not one of the arrays {sorted(self.arrays)}")
        self.group_by = group_by
        if train_indices is None:
            train_indices, validation_indices = split_indices(self.n_obs, validation_fraction, seed)
        self.train_indices = np.asarray(train_indices)
        self.validation_indices = np.asarray(validation_indices if validation_indices is not None else [], dtype=int)
        self._train_sampler: ResumableBatchSampler | None = None
        self._sampler_resume: Mapping[str, Any] | None = None

    def train_dataloader(self) -> DataLoader:
        loader = _loader(
            self.arrays, self.train_indices, self.batch_size, shuffle=True, seed=self.seed, group_by=self.group_by
        )
        sampler = loader.sampler
        sampler = sampler.batch_sampler if isinstance(sampler, RankShardedBatchSampler) else sampler
        self._train_sampler = sampler if isinstance(sampler, ResumableBatchSampler) else None
        if self._train_sampler is not None and self._sampler_resume is not None:
            self._train_sampler.load_state_dict(self._sampler_resume)
        self._sampler_resume = None
        return loader

    def train_sampler_state(self, batches_done: int | None = None) -> dict[str, Any] | None:
        """The training sampler's resume state (see :meth:`ResumableBatchSampler.state_dict`)."""
        return None if self._train_sampler is None else self._train_sampler.state_dict(batches_done)

    def resume_train_sampler(self, state: Mapping[str, Any] | None) -> None:
        """Have the next training loader continue from a :meth:`train_sampler_state`."""
        self._sampler_resume = state

    def val_dataloader(self) -> DataLoader | list:
        if len(self.validation_indices) == 0:
            return []
        return _loader(
            self.arrays, self.validation_indices, self.batch_size, shuffle=False, seed=self.seed, group_by=self.group_by
        )

    def validation_arrays(self) -> dict[str, ArrayLike]:
        """The validation rows of every array (for diagnostics after fitting)."""
        idx = self.validation_indices if len(self.validation_indices) else self.train_indices
        return {k: v[idx] for k, v in self.arrays.items()}
