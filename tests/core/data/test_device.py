"""Device-resident data path: rows gathered and densified with torch on the arrays' device."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import gammaln

from scivae.core import ArrayDataModule, fit_module, iterate_batches
from scivae.core.data.device import (
    LOG_FACTORIAL,
    NZ_COLS,
    NZ_ROWS,
    NZ_VALUES,
    DeviceArrays,
    DeviceCSR,
    DeviceDataModule,
    TrainingDevice,
    iterate_device_batches,
)
from scivae.dense import GaussianVAEModule


def _counts(n=120, g=30, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.4, size=(n, g)).astype(np.float32)
    dense[5] = 0  # an empty row
    m = sp.csr_matrix(dense)
    m.data[:3] = 0  # explicit zeros stored in the matrix
    return m, m.toarray()


@pytest.mark.parametrize("path", ["gather_torch", "gather_host"])
def test_gather_matches_scipy_rows_with_repeats_and_empty_rows(path):
    """Both gathers (torch ops: the GPU path; scipy slicing: the CPU path) give the rows and their entries."""
    m, dense = _counts()
    csr = DeviceCSR(m)
    rows = torch.tensor([7, 5, 0, 7, 119, 3])
    x, r, c, v = getattr(csr, path)(rows)
    assert x.dtype == torch.float32 and r.dtype == c.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), dense[rows.numpy()])
    # the non-zero entries handed over point at the right cells of the dense batch
    np.testing.assert_array_equal(x[r, c].numpy(), v.numpy())
    assert int((x != 0).sum()) == int((v != 0).sum())
    ref = csr.gather_torch(rows)
    order = np.lexsort((c.numpy(), r.numpy()))
    ref_order = np.lexsort((ref[2].numpy(), ref[1].numpy()))
    np.testing.assert_array_equal(v.numpy()[order], ref[3].numpy()[ref_order])
    expected = gammaln(dense + 1).sum(1)
    np.testing.assert_allclose(csr.log_factorial.numpy(), expected, rtol=1e-6)


def test_csr_on_the_cpu_shares_the_scipy_buffers():
    m, _ = _counts()
    csr = DeviceCSR(m)
    assert csr.values.data_ptr() == m.data.__array_interface__["data"][0]
    assert csr.indices.data_ptr() == m.indices.__array_interface__["data"][0]


def test_take_gives_every_array_and_the_nonzero_keys():
    m, dense = _counts()
    codes = np.arange(120) % 3
    data = DeviceArrays({"x": sp.csc_matrix(dense), "batch": codes, "cont": np.ones((120, 2))})
    b = data.take(torch.tensor([4, 9, 11]))
    np.testing.assert_array_equal(b["x"].numpy(), dense[[4, 9, 11]])
    assert b["batch"].dtype == torch.int64 and b["cont"].dtype == torch.float32
    for k in (NZ_ROWS, NZ_COLS, NZ_VALUES, LOG_FACTORIAL):
        assert "x" + k in b
    assert b["x" + LOG_FACTORIAL].shape == (3,)
    # passes that only encode skip the per-row constant, and the matrix then never computes it
    encode_only = DeviceArrays({"x": m}, log_factorial=False)
    b = next(iterate_device_batches(encode_only, batch_size=50))
    assert "x" + NZ_VALUES in b and "x" + LOG_FACTORIAL not in b
    assert encode_only.sparse["x"]._log_factorial is None


def test_iterate_device_batches_equals_the_host_path():
    m, _ = _counts()
    arrays = {"x": m, "i": np.arange(120)}
    host = list(iterate_batches(arrays, batch_size=50))
    dev = list(iterate_device_batches(arrays, batch_size=50))
    assert len(host) == len(dev) == 3
    for a, b in zip(host, dev, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["i"], b["i"])


def _epoch_rows(dm):
    return torch.cat([b["i"] for b in dm.train_dataloader()]).numpy()


def test_device_datamodule_split_cover_and_seeds():
    m, dense = _counts()
    arrays = {"x": m, "i": np.arange(120)}
    dm = DeviceDataModule(arrays, batch_size=16, validation_fraction=0.2, seed=1)
    ref = ArrayDataModule(arrays, batch_size=16, validation_fraction=0.2, seed=1)
    assert np.array_equal(dm.train_indices, ref.train_indices)
    loader = dm.train_dataloader()
    assert len(loader) == -(-len(dm.train_indices) // 16)
    epochs = [torch.cat([b["i"] for b in loader]).numpy() for _ in range(2)]
    for rows in epochs:
        assert np.array_equal(np.sort(rows), dm.train_indices)  # every training row once per epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    for b in loader:
        np.testing.assert_array_equal(b["x"].numpy(), dense[b["i"].numpy()])
    again = DeviceDataModule(arrays, batch_size=16, validation_fraction=0.2, seed=1)
    assert np.array_equal(_epoch_rows(again), epochs[0])  # seeded
    val = torch.cat([b["i"] for b in dm.val_dataloader()]).numpy()
    assert np.array_equal(val, dm.validation_indices)
    with pytest.raises(ValueError, match="group"):
        DeviceDataModule(arrays, group_by="i")


def test_device_datamodule_shards_disjointly_across_processes():
    arrays = {"i": np.arange(101)}
    dm = DeviceDataModule(arrays, batch_size=8, validation_fraction=0.0, seed=0)
    dm.setup("fit")
    rows = torch.as_tensor(dm.train_indices)
    from scivae.core.data.device import _EpochBatches

    batches = [
        [b["i"] for b in _EpochBatches(dm.data, rows, 8, torch.Generator().manual_seed(3), r, 2)] for r in range(2)
    ]
    shares = [torch.cat(b) for b in batches]
    assert len(set(shares[0].tolist()) & set(shares[1].tolist())) == 0
    assert sorted(shares[0].tolist() + shares[1].tolist()) == list(range(101))
    # each process holds half of every global batch of 8: as many steps as one process (13), the same batches
    one = [b["i"] for b in _EpochBatches(dm.data, rows, 8, torch.Generator().manual_seed(3))]
    assert len(batches[0]) == len(batches[1]) == len(one) == 13
    for a, b, whole in zip(*batches, one, strict=True):
        assert torch.equal(torch.cat([a, b]), whole)


def test_fit_on_device_data_records_the_training_device(digits):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=3, n_hidden=16, n_layers=1)
    dm = DeviceDataModule({"x": digits[:400]}, batch_size=64, validation_fraction=0.2, seed=0)
    result = fit_module(module, dm, max_epochs=2, progress_bar=False, early_stopping=False, accelerator="cpu")
    assert result.metrics["device"] == "cpu" and result.metrics["precision"] == "32-true"
    assert np.isfinite(result.metrics["elbo_validation"])


def test_training_device_callback_and_the_move_back_after_fit(digits, monkeypatch):
    """fit_module returns the module on the device the callback saw in training (Lightning moves it to the
    CPU after a GPU fit). Without a second device here, the recorded device is replaced by the meta device."""
    seen = {}

    def record(self, trainer, pl_module):
        seen["device"] = pl_module.device
        self.device = torch.device("meta")

    monkeypatch.setattr(TrainingDevice, "on_train_start", record)
    import scivae.core.train.fit as core_fit

    class Stop(Exception):
        pass

    after = {}

    def stop(tensors):  # the first thing fit_module does with the weights after training: are they finite?
        after["device"] = next(iter(tensors)).device
        raise Stop

    monkeypatch.setattr(core_fit, "all_finite", stop)
    module = GaussianVAEModule(64, n_latent=2, n_hidden=8, n_layers=1)
    dm = ArrayDataModule({"x": digits[:128]}, batch_size=64, validation_fraction=0.25)
    with pytest.raises(Stop):
        fit_module(module, dm, max_epochs=1, progress_bar=False, early_stopping=False, accelerator="cpu")
    assert seen["device"] == torch.device("cpu")
    assert after["device"].type == "meta"


def test_head_rows_keeps_the_first_rows_and_their_nonzero_entries():
    """A batch cut to its first rows keeps exactly the non-zero entries of those rows (what a count likelihood
    reads), the row-aligned tensors sliced, and gives the same values as gathering those rows alone."""
    from scivae.core.data.device import head_rows

    m, dense = _counts()
    arrays = {"x": m, "batch": np.arange(120) % 3}
    batch = next(iter(iterate_device_batches(arrays, batch_size=50)))
    head = head_rows(batch, 7)
    alone = next(iter(iterate_device_batches({"x": m[:7], "batch": np.arange(7) % 3}, batch_size=50)))
    assert set(head) == set(batch)
    for key in alone:
        torch.testing.assert_close(head[key], alone[key])
    assert head["x"].shape == (7, dense.shape[1]) and int((head["x" + NZ_ROWS] >= 7).sum()) == 0
    assert head_rows(batch, 50).keys() == batch.keys() and head_rows(batch, 80)["x"].shape[0] == 50
