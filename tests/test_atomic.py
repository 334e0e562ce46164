"""Atomic outputs: a folder is replaced in one step, and a failure leaves the previous one intact."""

from __future__ import annotations

import os

import pytest

import scivae._atomic as atomic
from scivae._atomic import atomic_dir, exchange


def _make(path, **files):
    with atomic_dir(path) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_a_folder_is_replaced_whole_and_no_temporary_is_left(tmp_path):
    _make(tmp_path / "out", a="1", b="2")
    _make(tmp_path / "out", c="3")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failure_while_building_keeps_the_previous_folder(tmp_path):
    _make(tmp_path / "out", a="1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half").write_text("written")
            raise RuntimeError("disk full")
    assert (tmp_path / "out" / "a").read_text() == "1" and not (tmp_path / "out" / "half").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("from a")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (tmp_path / "b" / "x").read_text() == "from a" and not any((tmp_path / "a").iterdir())


def test_without_exchange_a_failed_second_rename_is_rolled_back(tmp_path, monkeypatch):
    _make(tmp_path / "out", a="1")
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        _make(tmp_path / "out", b="2")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
