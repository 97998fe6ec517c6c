"""Benchmarking harness for structured sparsity in CNNs. The command is ``bench`` (bench/cli.py); the Python
API (bench/api.py) is importable from here without importing torch or Ray up front::

    import bench
    df = bench.load_results("lenet5-fashion-mnist")     # one row per trial: method, seed, lam, test_accuracy, ...
    summary = bench.run(methods=["l1l2", "l1"], dataset="synthetic", epochs=2)
"""
from __future__ import annotations

from typing import Any

from .version import __version__
__all__ = ["__version__", "export", "load_results", "load_targets", "run"]

_API = ("export", "load_results", "load_targets", "run", "Summary")


def __getattr__(name: str) -> Any:
    """The API's functions, imported on first use (``import bench`` stays light)."""
    if name in _API:
        from . import api  # lazy: `import bench` loads the API on first use
        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
