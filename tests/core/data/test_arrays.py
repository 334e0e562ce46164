import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import BatchSampler, RandomSampler

from scivae.core import ArrayDataModule, GroupedBatchSampler, iterate_batches, split_indices
from scivae.core.data.arrays import RankShardedBatchSampler, RowOutputs, n_rows_of
from scivae.errors import ScivaeInputError


def test_split_is_seeded_and_disjoint():
    tr, va = split_indices(100, 0.1, seed=3)
    tr2, va2 = split_indices(100, 0.1, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert len(va) == 10 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert not np.array_equal(va, split_indices(100, 0.1, seed=4)[1])


def test_batches_cover_every_training_row_once_per_epoch_sparse_and_dense():
    rng = np.random.default_rng(0)
    dense = rng.poisson(1.0, size=(103, 7)).astype(np.float32)
    arrays = {"x": sp.csc_matrix(dense), "row": np.arange(103), "d": dense}
    dm = ArrayDataModule(arrays, batch_size=16, validation_fraction=0.2, seed=1)
    seen = []
    for batch in dm.train_dataloader():
        assert batch["x"].dtype == torch.float32 and batch["row"].dtype == torch.int64
        rows = batch["row"].numpy()
        assert np.array_equal(batch["x"].numpy(), dense[rows])  # sparse rows densified correctly
        assert np.array_equal(batch["d"].numpy(), dense[rows])
        seen.append(rows)
    seen = np.concatenate(seen)
    assert np.array_equal(np.sort(seen), dm.train_indices)
    val = np.concatenate([b["row"].numpy() for b in dm.val_dataloader()])
    assert np.array_equal(val, dm.validation_indices)


def test_shuffling_is_seeded():
    arrays = {"row": np.arange(50)}

    def order(seed):
        dm = ArrayDataModule(arrays, batch_size=8, validation_fraction=0.0, seed=seed)
        return np.concatenate([b["row"].numpy() for b in dm.train_dataloader()])

    assert np.array_equal(order(5), order(5))
    assert not np.array_equal(order(5), order(6))


def test_iterate_batches_in_order():
    arrays = {"x": sp.csr_matrix(np.eye(5, dtype=np.float32)), "i": np.arange(5)}
    out = list(iterate_batches(arrays, batch_size=2))
    assert [len(b["i"]) for b in out] == [2, 2, 1]
    assert np.array_equal(torch.cat([b["x"] for b in out]).numpy(), np.eye(5))


def _grouped_epochs(sizes, batch_size, seed, epochs=2):
    arrays = {"row": np.arange(len(sizes)), "size": sizes}
    dm = ArrayDataModule(arrays, batch_size=batch_size, validation_fraction=0.0, seed=seed, group_by="size")
    loader = dm.train_dataloader()
    return [[b["row"].numpy() for b in loader] for _ in range(epochs)], len(loader)


def test_grouped_batches_cover_every_row_once_and_hold_similar_sizes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(10, 60, size=2_000)
    epochs, n_batches = _grouped_epochs(sizes, batch_size=32, seed=0)
    for batches in epochs:
        assert len(batches) == n_batches
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(sizes)))
        spread = np.mean([np.ptp(sizes[b]) for b in batches])
        random_spread = np.mean([np.ptp(sizes[rng.permutation(len(sizes))[:32]]) for _ in range(50)])
        assert spread < random_spread / 4  # padding to the batch maximum wastes little
    # batch composition and order change between epochs, and a seed repeats the whole sequence
    assert [b.tolist() for b in epochs[0]] != [b.tolist() for b in epochs[1]]
    again, _ = _grouped_epochs(sizes, batch_size=32, seed=0)
    assert all(np.array_equal(a, b) for ea, eb in zip(epochs, again, strict=True) for a, b in zip(ea, eb, strict=True))
    other, _ = _grouped_epochs(sizes, batch_size=32, seed=1)
    assert [b.tolist() for b in other[0]] != [b.tolist() for b in epochs[0]]


def test_grouped_validation_batches_are_fixed_and_cover_the_split():
    sizes = np.random.default_rng(1).integers(1, 40, size=300)
    arrays = {"row": np.arange(300), "size": sizes}
    dm = ArrayDataModule(arrays, batch_size=16, validation_fraction=0.2, group_by="size")
    first = [b["row"].numpy() for b in dm.val_dataloader()]
    second = [b["row"].numpy() for b in dm.val_dataloader()]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(np.sort(np.concatenate(first)), dm.validation_indices)


def _epoch_by_rank(make_sampler, world):
    return [[list(b) for b in RankShardedBatchSampler(make_sampler(), rank=r, world=world)] for r in range(world)]


@pytest.mark.parametrize("kind", ["plain", "grouped"])
@pytest.mark.parametrize("n", [103, 97, 65])  # 65 rows, batch 16: a last batch of 1 row is merged
def test_rank_shards_partition_each_global_batch(kind, n):
    sizes = np.random.default_rng(0).integers(5, 60, size=n)

    def make_sampler():
        g = torch.Generator().manual_seed(7)
        if kind == "grouped":
            return GroupedBatchSampler(sizes, 16, g, pool_batches=2)
        return BatchSampler(RandomSampler(range(n), generator=g), 16, drop_last=False)

    single = [list(b) for b in make_sampler()]
    for world in (2, 3):
        parts = _epoch_by_rank(make_sampler, world)
        assert len({len(p) for p in parts}) == 1  # every rank makes the same number of steps (DDP needs it)
        seen = np.concatenate([np.concatenate(p) for p in parts])
        assert np.array_equal(np.sort(seen), np.arange(n))  # every row exactly once per epoch, over the ranks
        merged = [sorted(sum((p[i] for p in parts), [])) for i in range(len(parts[0]))]
        expected = []
        for b in single:  # a batch with fewer rows than ranks joins the one before it
            if expected and len(b) < world:
                expected[-1] = sorted(expected[-1] + b)
            else:
                expected.append(sorted(b))
        assert merged == expected  # the same global batches as one process, split between the ranks
        sizes_per_step = [[len(p[i]) for p in parts] for i in range(len(parts[0]))]
        assert all(max(s) - min(s) <= 1 for s in sizes_per_step)


def test_too_few_rows_for_the_ranks_is_refused():
    with pytest.raises(ScivaeInputError, match="fewer devices"):
        list(RankShardedBatchSampler([[0]], rank=0, world=2))


class _Source:
    """A batch source as a streamed data set is one: ``batches(batch_size)``, optionally ``n_obs``."""

    def __init__(self, x: np.ndarray, say_rows: bool) -> None:
        self.x = x
        if say_rows:
            self.n_obs = len(x)

    def batches(self, batch_size: int):
        for start in range(0, len(self.x), batch_size):
            yield {"x": torch.from_numpy(self.x[start : start + batch_size])}


@pytest.mark.parametrize("say_rows", [True, False])
def test_row_outputs_keep_the_rows_in_order_with_or_without_a_row_count(say_rows):
    x = np.random.default_rng(0).normal(size=(103, 4)).astype(np.float32)
    source = _Source(x, say_rows)
    assert n_rows_of(source) == (103 if say_rows else None)
    assert n_rows_of({"x": x}) == 103
    out = RowOutputs(n_rows_of(source))
    for batch in iterate_batches(source, 10):
        out.add(batch["x"] * 2, batch["x"].sum(1))
    doubled, sums = out.result()
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_allclose(sums, x.sum(1), rtol=1e-6)
    assert doubled.dtype == np.float32


def test_row_outputs_refuse_a_row_count_the_batches_do_not_match():
    out = RowOutputs(5)
    out.add(torch.zeros(3))
    with pytest.raises(RuntimeError, match="3 of the 5 rows"):
        out.result()
    with pytest.raises(RuntimeError, match="more than the 5 rows"):
        out.add(torch.zeros(3))
