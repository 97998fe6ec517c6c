"""offline/pack.py, the pieces an offline node's wheels travel in: cut, joined, checked (no network here; the
download itself is measured in README's offline section)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "offline" / "pack.py"


def _pack(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACK), *argv], capture_output=True, text=True)


def _load():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pack", PACK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_over_the_piece_size_are_cut_and_joined_back_byte_for_byte(tmp_path):
    """A 2.5-piece file becomes pieces 000-002 of 1000, 1000 and 500 bytes (the file gone), a small one stays
    whole; the manifest holds sizes and SHA-256; `join` (as the node runs it) gives the same bytes back and
    removes the pieces."""
    pack = _load()
    big, small = os.urandom(2500), os.urandom(300)
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(big)
    (tmp_path / "small-1.0-py3-none-any.whl").write_bytes(small)
    manifest = pack.split(tmp_path, 1000)
    assert manifest["big-1.0-py3-none-any.whl"]["pieces"] == [f"big-1.0-py3-none-any.whl.part-00{i}" for i in range(3)]
    assert [(tmp_path / p).stat().st_size for p in manifest["big-1.0-py3-none-any.whl"]["pieces"]] == [1000, 1000, 500]
    assert not (tmp_path / "big-1.0-py3-none-any.whl").exists() and manifest["small-1.0-py3-none-any.whl"]["pieces"] == []
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    done = _pack("join", str(tmp_path))
    assert done.returncode == 0 and "2 wheels whole and checked" in done.stdout, done.stderr
    assert (tmp_path / "big-1.0-py3-none-any.whl").read_bytes() == big
    assert (tmp_path / "small-1.0-py3-none-any.whl").read_bytes() == small
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big-1.0-py3-none-any.whl", "manifest.json",
                                                          "small-1.0-py3-none-any.whl"]
    assert _pack("join", str(tmp_path)).returncode == 0   # joining again checks and keeps them


@pytest.mark.parametrize("fault, message", [
    ("missing", "big-1.0-py3-none-any.whl: piece(s) missing: big-1.0-py3-none-any.whl.part-001"),
    ("altered", "big-1.0-py3-none-any.whl does not match the manifest (size or SHA-256)"),
])
def test_a_missing_or_altered_piece_stops_the_join_naming_the_wheel(tmp_path, fault, message):
    pack = _load()
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(os.urandom(2500))
    pack.split(tmp_path, 1000)
    piece = tmp_path / "big-1.0-py3-none-any.whl.part-001"
    if fault == "missing":
        piece.unlink()
    else:
        piece.write_bytes(b"\0" + piece.read_bytes()[1:])
    done = _pack("join", str(tmp_path))
    assert done.returncode == 1 and done.stderr.strip() == f"pack: {message}" + (
        " (copy every piece of it)" if fault == "missing" else ": copy it, or its pieces, again")
