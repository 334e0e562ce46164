import json

import pytest
import torch
from torch import nn

from scivae.core import load_model_dir, save_model_dir
from scivae.errors import ModelFormatError


def _saved(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = save_model_dir(tmp_path / "m", module, model_type="toy", config={"a": 1}, adapter_state={"genes": ["X"]})
    return module, path


def test_round_trip(tmp_path):
    module, path = _saved(tmp_path)
    state, meta = load_model_dir(path)
    assert meta["model_type"] == "toy" and meta["config"] == {"a": 1} and meta["adapter_state"] == {"genes": ["X"]}
    for k, v in module.state_dict().items():
        assert torch.equal(state[k], v)
    # the weights file is plain safetensors: no pickle opcodes
    raw = (path / "model.safetensors").read_bytes()
    assert not raw.startswith(b"\x80") and b"PK" not in raw[:4]


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    _, path = _saved(tmp_path)
    _saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_errors(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ModelFormatError, match="'toy' model, not a 'cell'"):
        load_model_dir(path, "cell")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 99
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version 99"):
        load_model_dir(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="no model.safetensors"):
        load_model_dir(path)


def test_tampered_folders_are_refused(tmp_path):
    import os
    import pickle

    _, path = _saved(tmp_path)
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "loader": "x"}))
    with pytest.raises(ModelFormatError, match="unknown keys \\('loader'\\)"):
        load_model_dir(path)
    (path / "config.json").write_text(json.dumps(meta))
    (path / "notes.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ModelFormatError, match="holds notes.pkl, a pickle"):
        load_model_dir(path)
    (path / "notes.pkl").unlink()
    (path / "payload").write_bytes(pickle.dumps({"a": 1}))  # a pickle without the name
    with pytest.raises(ModelFormatError, match="holds payload, a pickle"):
        load_model_dir(path)
    (path / "payload").unlink()
    outside = tmp_path / "elsewhere.safetensors"
    os.replace(path / "model.safetensors", outside)
    os.symlink(outside, path / "model.safetensors")
    with pytest.raises(ModelFormatError, match="points outside the model folder"):
        load_model_dir(path)


def test_a_configuration_is_checked_against_the_weights_before_anything_is_allocated(tmp_path):
    from scivae.core.model.persistence import check_saved_shapes

    module, path = _saved(tmp_path)
    state, _ = load_model_dir(path)
    check_saved_shapes(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), state)
    # 10^12 x 10^6 parameters would need 4 exabytes: refused on the meta device without allocating them
    with pytest.raises(ModelFormatError, match="do not match config.json .* of another shape"):
        check_saved_shapes(lambda: nn.Sequential(nn.Linear(3, 10**6), nn.ReLU(), nn.Linear(10**6, 2)), state)
    with pytest.raises(ModelFormatError, match="does not describe a model"):
        check_saved_shapes(lambda: nn.Linear(3, 4, bias="maybe", device="nowhere"), state)


def test_wrong_types_deep_nesting_and_non_finite_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, path = _saved(tmp_path)
    config = path / "config.json"
    good = config.read_text()
    for version in ("1", True, 1.0, None):
        meta = json.loads(good)
        meta["format_version"] = version
        config.write_text(json.dumps(meta))
        with pytest.raises(ModelFormatError, match=r"format_version is .*not an integer"):
            load_model_dir(path)
    config.write_text('{"config": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(ModelFormatError, match="nested too deeply"):
        load_model_dir(path)
    config.write_text(good)
    weights = load_file(str(path / "model.safetensors"))
    weights["0.weight"][0, 0] = float("nan")
    save_file(weights, str(path / "model.safetensors"))
    with pytest.raises(ModelFormatError, match=r"not finite \(NaN or infinite in 1 tensors, e.g. 0.weight\)"):
        load_model_dir(path)
