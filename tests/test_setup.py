"""setup.sh refuses bad options before it installs anything (the install itself is what CI runs)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parent.parent / "setup.sh"


def _setup(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv,message", [
    (["--wheelhouse"], "--wheelhouse needs a folder of .whl files, got ''"),
    (["--wheelhouse", "/nonexistent/wheels"], "--wheelhouse needs a folder of .whl files, got '/nonexistent/wheels'"),
    (["--frobnicate"], "unknown option --frobnicate"),
])
def test_bad_options_are_refused_before_any_work(argv, message):
    proc = _setup(*argv)
    assert proc.returncode == 2 and message in proc.stderr and "installing" not in proc.stdout


def test_cpu_and_a_wheelhouse_do_not_mix(tmp_path):
    (tmp_path / "torch-2.0.0-py3-none-any.whl").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "needs a folder of .whl files" in _setup("--wheelhouse", str(empty)).stderr
    proc = _setup("--cpu", "--wheelhouse", str(tmp_path))
    assert proc.returncode == 2 and "--cpu does not apply with --wheelhouse" in proc.stderr


def test_help_names_every_option():
    out = _setup("--help").stdout
    assert all(flag in out for flag in ("--cpu", "--newest", "--wheelhouse DIR", "--with-postgres", "PYTHON="))
