"""Device-resident data: CSR counts held as torch tensors on the training device, rows gathered there.

:class:`ArrayDataModule` slices scipy matrices on the host for every batch (one scipy fancy-index and one
densification per batch, then a copy to the device). Here the arrays are converted once (on the CPU this
shares memory with the scipy matrix: no copy), moved to the device once, and every batch is gathered and
densified on the device with torch ops: no host round trip per batch and no per-batch scipy call. On the
CPU itself scipy's one-pass row slicing over the same buffers was measured faster than the torch gather
(``benchmarks/cells/microbench.py``), so there :meth:`DeviceCSR.gather` slices with scipy; the torch
gather (:meth:`DeviceCSR.gather_torch`) is what runs on a GPU, and the tests compare the two.

A gathered sparse array ``k`` also hands its non-zero entries to the batch, as ``k + NZ_ROWS``,
``k + NZ_COLS`` and ``k + NZ_VALUES`` (coordinates within the batch), and the per-row sum of
``lgamma(value + 1)`` as ``k + LOG_FACTORIAL``: a count likelihood can then evaluate its terms that vanish
at zero counts on the non-zero entries only, without searching the dense batch for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from scivae.core.data.arrays import ArrayDataModule, ArrayLike, RankShardedBatchSampler, _n_rows, iterate_batches

#: Suffixes of the extra batch keys that describe a gathered sparse array's non-zero entries.
NZ_ROWS, NZ_COLS, NZ_VALUES, LOG_FACTORIAL = "__nz_rows", "__nz_cols", "__nz_values", "__log_factorial"


def _row_log_factorial(indptr: Tensor, values: Tensor, block: int = 1 << 16) -> Tensor:
    """Per-row sum of ``lgamma(value + 1)`` (float64 sums, float32 result), in blocks of rows (bounded memory)."""
    n = indptr.shape[0] - 1
    out = torch.zeros(n, dtype=torch.float64, device=values.device)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        lo, hi = int(indptr[r0]), int(indptr[r1])
        counts = indptr[r0 + 1 : r1 + 1] - indptr[r0:r1]
        rows = torch.repeat_interleave(torch.arange(r0, r1, device=values.device), counts, output_size=hi - lo)
        out.index_add_(0, rows, torch.lgamma(values[lo:hi].double() + 1.0))
    return out.float()


def head_rows(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` rows of a batch: row-aligned tensors sliced, a sparse array's non-zero entries
    (``NZ_*`` keys) kept where their row is among them, anything else as it is."""
    nz = (NZ_ROWS, NZ_COLS, NZ_VALUES)
    size = next(v.shape[0] for k, v in batch.items() if isinstance(v, Tensor) and v.dim() and not k.endswith(nz))
    if n >= size:
        return dict(batch)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key.endswith(NZ_ROWS):
            base = key[: -len(NZ_ROWS)]
            keep = value < n
            for suffix in (NZ_ROWS, NZ_COLS, NZ_VALUES):
                out[base + suffix] = batch[base + suffix][keep]
        elif key.endswith(nz):
            continue  # taken with their rows
        elif isinstance(value, Tensor) and value.dim() and value.shape[0] == size:
            out[key] = value[:n]
        else:
            out[key] = value
    return out


class DeviceCSR:
    """A CSR matrix as torch tensors on ``device``; :meth:`gather` densifies rows on that device.

    Parameters
    ----------
    matrix
        A scipy sparse matrix (converted to CSR, float32 values).
    device
        Where the tensors live. On the CPU, int32 indices and float32 values share the scipy buffers.
    """

    def __init__(self, matrix: Any, device: torch.device | str = "cpu") -> None:
        csr = matrix.tocsr() if matrix.format != "csr" else matrix
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        device = torch.device(device)
        self.shape = tuple(csr.shape)
        # On the CPU, scipy's row slicing (one C++ pass) was measured faster than the torch gather (several
        # passes over the non-zeros): the CPU keeps the scipy matrix, over the same buffers, for gather().
        self._host = csr if device.type == "cpu" and csr.dtype == np.float32 else None
        self.indptr = torch.from_numpy(np.ascontiguousarray(csr.indptr, dtype=np.int64)).to(device)
        self.indices = torch.from_numpy(np.ascontiguousarray(csr.indices)).to(device)
        self.values = torch.from_numpy(np.ascontiguousarray(csr.data, dtype=np.float32)).to(device)
        self._log_factorial: Tensor | None = None

    @property
    def log_factorial(self) -> Tensor:
        """Per-row sum of ``lgamma(value + 1)`` (the count likelihoods' constant), computed on first use: encoding
        cells needs none."""
        if self._log_factorial is None:
            self._log_factorial = _row_log_factorial(self.indptr, self.values)
        return self._log_factorial

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to(self, device: torch.device | str) -> DeviceCSR:
        out = object.__new__(DeviceCSR)
        out.shape = self.shape
        out._host = self._host if torch.device(device).type == "cpu" else None
        for name in ("indptr", "indices", "values"):
            setattr(out, name, getattr(self, name).to(device))
        out._log_factorial = None if self._log_factorial is None else self._log_factorial.to(device)
        return out

    def nbytes(self) -> int:
        """Bytes of the tensors, the per-row constant included (float32) whether computed yet or not."""
        return sum(t.numel() * t.element_size() for t in (self.indptr, self.indices, self.values)) + 4 * self.shape[0]

    def gather(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Dense ``(len(rows), n_cols)`` float32 rows and their non-zero entries (batch row, column, value).

        ``rows`` is a 1-d int64 tensor on this matrix's device. On the CPU the rows are sliced by scipy over
        the shared buffers (:meth:`gather_host`); on other devices they are gathered there with torch
        (:meth:`gather_torch`). Both give the same tensors.
        """
        if self._host is not None:
            return self.gather_host(rows)
        return self.gather_torch(rows)

    def gather_host(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`gather` by scipy row slicing (CPU only)."""
        assert self._host is not None, "gather_host needs the CPU copy"
        sub = self._host[rows.numpy()]
        batch_rows = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        return (
            torch.from_numpy(sub.toarray()),
            torch.from_numpy(batch_rows),
            torch.from_numpy(sub.indices.astype(np.int64)),
            torch.from_numpy(sub.data),
        )

    def gather_torch(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`gather` with torch ops on the matrix's device: no host round trip (the GPU path)."""
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        nnz = int(counts.sum())  # one scalar sync: the sizes of the outputs depend on it
        b = rows.shape[0]
        batch_rows = torch.repeat_interleave(torch.arange(b, device=rows.device), counts, output_size=nnz)
        first = torch.cumsum(counts, 0) - counts  # position of each row's first entry in the output
        src = torch.arange(nnz, device=rows.device) + (starts - first)[batch_rows]
        cols = self.indices[src].long()
        values = self.values[src]
        dense = torch.zeros(b * self.shape[1], dtype=torch.float32, device=rows.device)
        dense.scatter_(0, batch_rows * self.shape[1] + cols, values)
        return dense.view(b, self.shape[1]), batch_rows, cols, values


class DeviceArrays:
    """Row-aligned arrays on one device: sparse ones as :class:`DeviceCSR`, dense ones as tensors.

    Parameters
    ----------
    arrays
        Row-aligned arrays (numpy, scipy sparse or torch); floats become float32, integers int64.
    device
        Where to keep them.
    log_factorial
        Give every batch of a sparse array its rows' ``lgamma(x + 1)`` sums (``LOG_FACTORIAL``), which count
        likelihoods need; off for passes that only encode.
    """

    def __init__(
        self, arrays: Mapping[str, ArrayLike], device: torch.device | str = "cpu", log_factorial: bool = True
    ) -> None:
        self.n_obs = _n_rows(arrays)
        self.device = torch.device(device)
        self.with_log_factorial = log_factorial
        self.sparse: dict[str, DeviceCSR] = {}
        self.dense: dict[str, Tensor] = {}
        for key, a in arrays.items():
            if sp.issparse(a):
                self.sparse[key] = DeviceCSR(a, self.device)
            else:
                t = a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(a))
                if t.is_floating_point():
                    t = t.float()
                elif t.dtype != torch.bool:
                    t = t.long()
                self.dense[key] = t.to(self.device)

    def nbytes(self) -> int:
        dense = sum(t.numel() * t.element_size() for t in self.dense.values())
        return dense + sum(m.nbytes() for m in self.sparse.values())

    def take(self, rows: Tensor) -> dict[str, Tensor]:
        """One batch: the given rows of every array, gathered on the device."""
        rows = rows.to(self.device)
        out: dict[str, Tensor] = {}
        for key, m in self.sparse.items():
            dense, r, c, v = m.gather(rows)
            out[key] = dense
            out[key + NZ_ROWS], out[key + NZ_COLS], out[key + NZ_VALUES] = r, c, v
            if self.with_log_factorial:
                out[key + LOG_FACTORIAL] = m.log_factorial[rows]
        for key, t in self.dense.items():
            out[key] = t[rows]
        return out

    def batches(self, order: Tensor, batch_size: int) -> Iterator[dict[str, Tensor]]:
        """Consecutive batches of the rows listed in ``order``."""
        order = order.to(self.device)
        for start in range(0, order.shape[0], batch_size):
            yield self.take(order[start : start + batch_size])


def iterate_device_batches(
    arrays: Mapping[str, ArrayLike] | DeviceArrays,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    log_factorial: bool = True,
) -> Iterator[dict[str, Tensor]]:
    """Batches of all rows in order, gathered on ``device`` (the arrays are moved there once).

    A batch source that is not a dict of arrays (a data set streamed from disk) is read as it comes, see
    :func:`~scivae.core.data.arrays.iterate_batches`. ``log_factorial``: see :class:`DeviceArrays` (for arrays
    not yet on the device).
    """
    if not isinstance(arrays, (Mapping, DeviceArrays)):
        yield from iterate_batches(arrays, batch_size, device)
        return
    dev = arrays if isinstance(arrays, DeviceArrays) else DeviceArrays(arrays, device, log_factorial)
    yield from dev.batches(torch.arange(dev.n_obs), batch_size)


class _EpochBatches:
    """An iterable of batches for Lightning: a new seeded permutation per pass when ``generator`` is given."""

    def __init__(
        self,
        data: DeviceArrays,
        rows: Tensor,
        batch_size: int,
        generator: torch.Generator | None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.data, self.rows, self.batch_size, self.generator = data, rows, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self._epoch_start: Tensor | None = None
        self._skip = 0

    def _order(self) -> Tensor:
        rows = self.rows
        if self.generator is not None:
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
        return rows

    def __len__(self) -> int:  # global batches (an upper bound under DDP when a last, tiny batch gets merged)
        return -(-len(self.rows) // self.batch_size)

    def _shares(self, order: Tensor, skip: int) -> Iterator[Tensor]:
        """This process's part of every global batch of ``order`` after the first ``skip``, cut by
        :class:`~scivae.core.data.arrays.RankShardedBatchSampler` (as the host data path does): every process
        draws the same permutation, so the gradient DDP averages is the global batch's and a run takes the same
        steps whatever the number of processes."""
        n, size = len(order), self.batch_size
        global_batches = [range(start, min(start + size, n)) for start in range(0, n, size)]
        shares = RankShardedBatchSampler(global_batches, self.rank, self.world_size)
        for positions in itertools.islice(shares, skip, None):
            yield order[torch.as_tensor(positions, dtype=torch.long)]

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        # A generator: the epoch's order is drawn at the first batch, not when Lightning merely calls iter()
        # (it does so once while setting up), so resumed and uninterrupted runs draw the same orders.
        if self.generator is not None:
            self._epoch_start = self.generator.get_state()
        order = self._order()
        skip, self._skip = self._skip, 0  # a resumed epoch continues after the batches it had done
        if self.world_size == 1:
            yield from self.data.batches(order[skip * self.batch_size :], self.batch_size)
            return
        for share in self._shares(order, skip):
            yield self.data.take(share)

    # Not named state_dict / load_state_dict: Lightning would then save and restore this iterable itself, at
    # the wrong moment for scivae's checkpoints (ResumableCheckpoint restores the order through the datamodule).
    def sampler_state(self, batches_done: int | None = None) -> dict[str, Any]:
        """State to resume from, as :meth:`scivae.core.data.arrays.ResumableBatchSampler.state_dict`: inside the current
        epoch after ``batches_done`` batches, or (``None``) at the start of the next epoch."""
        if self.generator is None:
            return {"generator": None, "skip": int(batches_done or 0)}
        if batches_done is None or self._epoch_start is None:
            return {"generator": self.generator.get_state(), "skip": 0}
        return {"generator": self._epoch_start.clone(), "skip": int(batches_done)}

    def load_sampler_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`sampler_state`: the next pass replays the saved epoch, skipping its done batches."""
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])
        self._skip = int(state["skip"])


class DeviceDataModule(ArrayDataModule):
    """:class:`ArrayDataModule` whose batches are gathered on the training device (see the module docstring).

    The split, the seeds and :meth:`validation_arrays` are those of :class:`ArrayDataModule`; the arrays are
    moved to the trainer's device when Lightning sets the module up (or to ``device`` when given), so the
    device follows the ``accelerator`` of the fit. Training batches are a seeded random permutation per
    epoch (rows sorted within a batch are not needed: the gather does not scan); validation batches are in
    a fixed order. ``group_by`` is not supported (use :class:`ArrayDataModule` for variable-length data).
    """

    def __init__(self, arrays: Mapping[str, ArrayLike], *args: Any, device: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("group_by") is not None:
            raise ValueError("DeviceDataModule does not group by size: use ArrayDataModule for group_by")
        super().__init__(arrays, *args, **kwargs)
        self.device = device
        self.data: DeviceArrays | None = None
        self._generator = torch.Generator().manual_seed(self.seed)
        self._epoch_batches: _EpochBatches | None = None

    def _target_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        device = self._target_device()
        if self.data is None or self.data.device != device:
            self.data = DeviceArrays(self.arrays, device)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> _EpochBatches:  # type: ignore[override]
        if self.data is None:
            self.setup("fit")
        assert self.data is not None
        rank, world = self._world()
        rows = torch.as_tensor(self.train_indices, dtype=torch.long)
        batches = _EpochBatches(self.data, rows, self.batch_size, self._generator, rank, world)
        self._epoch_batches = batches
        if self._sampler_resume is not None:
            batches.load_sampler_state(self._sampler_resume)
        self._sampler_resume = None
        return batches

    def train_sampler_state(self, batches_done: int | None = None) -> dict[str, Any] | None:
        """The training order's resume state (see :meth:`ArrayDataModule.train_sampler_state`)."""
        return None if self._epoch_batches is None else self._epoch_batches.sampler_state(batches_done)

    def val_dataloader(self) -> _EpochBatches | list:  # type: ignore[override]
        if len(self.validation_indices) == 0:
            return []
        if self.data is None:
            self.setup("fit")
        assert self.data is not None
        rank, world = self._world()
        rows = torch.as_tensor(self.validation_indices, dtype=torch.long)
        return _EpochBatches(self.data, rows, self.batch_size, None, rank, world)


class TrainingDevice(L.Callback):
    """Records the device the module trained on (Lightning moves it back to the CPU after a GPU fit)."""

    def __init__(self) -> None:
        self.device: torch.device | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.device = pl_module.device
