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
