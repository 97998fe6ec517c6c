"""Shared fixtures (the shared helpers are in tests/helpers.py). Tests never download: BENCH_NO_DOWNLOAD=1 and
HOME points at an empty folder."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    torch.set_num_threads(1)


@pytest.fixture
def registry_snapshot():
    """The method registry (and plugin modules), restored after the test: for methods registered by one test."""
    import sys

    from methods import registry
    saved, modules = dict(registry._REGISTRY), set(sys.modules)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("bench_plugin_"):
            del sys.modules[name]

