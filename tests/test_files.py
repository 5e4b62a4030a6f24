"""Atomic writes: the file appears whole or not at all, with the permissions a plain open() gives."""

import os
import stat

import pytest

from gibbsdream.files import _UMASK, atomic_folder, atomic_write_bytes, atomic_write_text


def test_atomic_write_gives_the_usual_permissions_not_owner_only(tmp_path):
    path = tmp_path / "deep" / "report.html"
    atomic_write_text(path, "<p>hi</p>")
    plain = tmp_path / "plain.html"
    plain.write_text("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~_UMASK
    assert path.read_text() == "<p>hi</p>"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_bytes(path, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "export"
    with atomic_folder(out) as staged:
        (staged / "a.png").write_bytes(b"first")
        assert not out.exists()  # nothing to see until the block ends
    assert [p.name for p in out.iterdir()] == ["a.png"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_UMASK
    with pytest.raises(OSError), atomic_folder(out) as staged:
        (staged / "b.png").write_bytes(b"second")
        raise OSError("disk full")
    assert [p.name for p in out.iterdir()] == ["a.png"]  # the old folder, untouched
    with atomic_folder(out) as staged:
        (staged / "b.png").write_bytes(b"second")
    assert [p.name for p in out.iterdir()] == ["b.png"]  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary or old folders left


def test_json_numbers_turns_what_json_cannot_hold_into_null():
    from gibbsdream.files import json_numbers

    values = [1.23456789, float("nan"), float("inf"), float("-inf"), None, -2.0, 3]
    assert json_numbers(values, 3) == [1.235, None, None, None, None, -2.0, 3]
