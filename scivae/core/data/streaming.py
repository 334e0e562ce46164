"""Out-of-core training batches: rows streamed from a chunked source, with flat memory.

A *chunked source* (:class:`ChunkedSource`, e.g. the backed ``.h5ad`` file or ``.zarr`` store of
:mod:`scivae.cells.streaming`) reads contiguous row ranges as blocks of arrays (``"x"`` sparse CSR or dense, the
rest dense, rows first). Training batches mix the rows of a window of chunks drawn in a shuffled order every
epoch; under DDP each process keeps its share of every global batch (as :mod:`scivae.core.data.arrays` does).
Every block read is checked for a sound sparse structure (:func:`checked_block`) before scipy slices it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from scivae.core.data.arrays import shard_batch
from scivae.core.data.sparse import sparse_problem
from scivae.core.distributed import rank_world
from scivae.errors import ScivaeInputError

#: Chunks whose rows are shuffled together: chunk_rows * WINDOW_CHUNKS rows in memory at a time.
WINDOW_CHUNKS = 8


class ChunkedSource(Protocol):
    """What :class:`StreamingDataModule` streams from."""

    #: Rows in the source.
    n_obs: int
    #: Rows per contiguous read.
    chunk_rows: int

    def block(self, start: int, stop: int, rows: np.ndarray | None = None) -> dict[str, Any]:
        """Rows ``start:stop`` (or the sorted ``rows`` among them) as arrays, ``"x"`` sparse or dense."""

    def subset(self, rows: np.ndarray) -> Any:
        """A batch source (``n_obs`` and ``batches(batch_size)``) over the sorted ``rows``."""


def stack_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Blocks of rows stacked into one (sparse arrays stay CSR)."""
    if len(blocks) == 1:
        return blocks[0]
    return {
        k: sp.vstack([b[k] for b in blocks], format="csr")
        if sp.issparse(blocks[0][k])
        else np.concatenate([b[k] for b in blocks])
        for k in blocks[0]
    }


def checked_block(block: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """``block`` (rows ``start:stop`` of a source) after a check of its sparse arrays' structure: a source that
    hands over a damaged ``indptr``/``indices`` is refused here, before scipy indexes with them."""
    for key, value in block.items():
        problem = sparse_problem(value) if sp.issparse(value) else None
        if problem is not None:
            raise ScivaeInputError(
                f"rows {start}-{stop - 1} of the streamed data have a damaged sparse structure in {key!r} ({problem}): "
                "the source is corrupt; write it again from the original data"
            )
    return block


def take_block(block: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    """The rows ``idx`` of a block."""
    return {k: v[idx] for k, v in block.items()}


def to_tensors(block: dict[str, Any], idx: np.ndarray) -> dict[str, Tensor]:
    """The rows ``idx`` of a block as tensors: sparse arrays densified to float32, the rest float32 or int64."""
    out = {}
    for k, v in block.items():
        part = v[idx]
        if sp.issparse(part):
            out[k] = torch.from_numpy(part.toarray().astype(np.float32, copy=False))
        else:
            t = torch.from_numpy(np.ascontiguousarray(part))
            out[k] = t.float() if t.is_floating_point() else t.long()
    return out


class _ChunkStream(IterableDataset):
    """Global batches cut from windows of chunks; each process yields its share of every batch.

    Training: the chunk order is shuffled every epoch, the rows of ``window_chunks`` chunks are shuffled
    together and cut into batches; rows left over at the end of a window open the next one, so an epoch has
    ``ceil(rows / batch_size)`` batches whatever the chunk order (Lightning and DDP need a fixed count).
    """

    def __init__(
        self,
        data: ChunkedSource,
        rows: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int,
        window_chunks: int = WINDOW_CHUNKS,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        self.rank, self.world = rank, world  # default: read from torch.distributed when iterating
        self.data, self.rows, self.batch_size = data, np.sort(rows), batch_size
        self.shuffle, self.seed, self.window_chunks = shuffle, seed, window_chunks
        bounds = np.arange(0, data.n_obs + data.chunk_rows, data.chunk_rows).clip(max=data.n_obs)
        cut = np.searchsorted(self.rows, bounds)
        self.chunk_rows = [(int(bounds[i]), int(bounds[i + 1]), cut[i], cut[i + 1]) for i in range(len(bounds) - 1)]
        self.chunk_rows = [c for c in self.chunk_rows if c[3] > c[2]]
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        rank, world = (self.rank, self.world) if self.world is not None else rank_world()
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.chunk_rows)) if self.shuffle else np.arange(len(self.chunk_rows))
        pending: dict[str, Any] | None = None
        for w in range(0, len(order), self.window_chunks):
            blocks = [] if pending is None else [pending]
            fresh = []
            for c in order[w : w + self.window_chunks]:
                start, stop, lo, hi = self.chunk_rows[c]
                fresh.append(checked_block(self.data.block(start, stop, self.rows[lo:hi]), start, stop))
            fresh_block = stack_blocks(fresh)
            n_fresh = fresh_block["x"].shape[0]
            perm = rng.permutation(n_fresh) if self.shuffle else np.arange(n_fresh)
            blocks.append(take_block(fresh_block, perm))
            window = stack_blocks(blocks)
            n = window["x"].shape[0]
            last = w + self.window_chunks >= len(order)
            n_full = n if last else n - n % self.batch_size
            starts = list(range(0, n_full, self.batch_size))
            if last and len(starts) > 1 and n_full - starts[-1] < world:
                starts.pop()  # a final batch with fewer rows than processes joins the one before
            for i, b in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else n_full
                yield to_tensors(window, np.sort(shard_batch(np.arange(b, end), rank, world)))
            pending = None if n_full == n else take_block(window, np.arange(n_full, n))


class StreamingDataModule(L.LightningDataModule):
    """Training and validation batches streamed from a chunked source (flat memory).

    A batch mixes the rows of one window of ``window_chunks`` chunks drawn at random from the whole file;
    for a file sorted by sample a larger window (or a file written in shuffled order) mixes better.

    Parameters
    ----------
    data
        The chunked source (e.g. :class:`scivae.cells.streaming.BackedCellData`).
    train_rows, validation_rows
        File rows of the training and validation cells.
    batch_size
        Global minibatch size (under DDP each process takes its share of every batch).
    seed
        Seed of the chunk order and of the shuffling within windows.
    window_chunks
        Chunks shuffled together: more mixes better and holds more rows in memory.
    """

    def __init__(
        self,
        data: ChunkedSource,
        train_rows: np.ndarray,
        validation_rows: np.ndarray,
        batch_size: int = 128,
        seed: int = 0,
        window_chunks: int = WINDOW_CHUNKS,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ScivaeInputError(f"batch size must be >= 1, got {batch_size}")
        self.data = data
        self.train_indices, self.validation_indices = np.sort(train_rows), np.sort(validation_rows)
        self.batch_size, self.seed, self.window_chunks = int(batch_size), seed, window_chunks
        self._train = _ChunkStream(data, self.train_indices, self.batch_size, True, seed, window_chunks)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._train, batch_size=None)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.validation_indices) == 0:
            return []
        stream = _ChunkStream(self.data, self.validation_indices, self.batch_size, False, self.seed, self.window_chunks)
        return DataLoader(stream, batch_size=None)

    def validation_arrays(self) -> Any:
        """The validation cells (or the training cells without a validation set) as a batch source."""
        return self.data.subset(self.validation_indices if len(self.validation_indices) else self.train_indices)
