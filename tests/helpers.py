"""Helpers the tests share: files in the real formats of MNIST, CIFAR-10 and image folders, a failing method
plugin, free ports, ``bench`` run as a subprocess, and training helpers that check what every trial must hold
(removed filters exactly zero, a closed-form penalty gradient equal to autograd's). Imported as ``helpers``
(pytest puts tests/ on the path); fixtures are in conftest.py."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write an IDX file exactly as the MNIST distribution does (big-endian header, uint8 payload)."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def write_mnist(folder: Path, n_train: int = 64, n_test: int = 32, compress: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(folder / stem, arr, compress)
    return arrays


def write_cifar10(folder: Path, per_batch: int = 20, seed: int = 0) -> dict:
    """Write CIFAR-10 'python version' batches: pickled dicts with bytes keys, rows of R, G, B planes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    return batches


def write_image_folder(root: Path, classes: int = 10, size: int = 40, n_train: int = 30, n_val: int = 10,
                       seed: int = 0, split: str = "val") -> Path:
    """An image folder (root/train/CLASS/*.png, root/<split>/CLASS/*.png) of RGB PNGs whose classes are separable:
    each class has its own colour and stripe direction, plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    palette = rng.integers(40, 216, (classes, 3))
    yy, xx = np.mgrid[:size, :size]
    for split_name, n in (("train", n_train), (split, n_val)):
        for k in range(classes):
            folder = root / split_name / f"class_{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            stripes = np.sin((xx if k % 2 else yy) * (0.3 + 0.1 * (k // 2)))[..., None] * 30
            for i in range(n):
                image = palette[k] + stripes + rng.normal(0, 12, (size, size, 3))
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


FAULTY_PLUGIN = '''"""A method plugin that raises at the end of epoch ``fail_at`` (for failure handling tests)."""
from dataclasses import dataclass

from methods import HparamsBase, option, register_method
from methods.base import PostHocMethod


@register_method
class Faulty(PostHocMethod):
    name = "faulty"
    description = "raises at the end of epoch fail_at"

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        fail_at: int = option(1, "the epoch at whose end it raises", min=1)

    def on_epoch_end(self, model, state):
        if state.epoch >= self.hparams.fail_at:
            raise RuntimeError(f"faulty method fails on purpose at epoch {state.epoch}")
'''


def write_faulty_plugin(folder: Path) -> Path:
    path = folder / "faulty_plugin.py"
    path.write_text(FAULTY_PLUGIN)
    return path


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- `bench` as a user runs it: a subprocess of this interpreter --------------------------------------------

_EMPTY_STORE: list[Path] = []


def empty_store(folder: Path) -> str:
    """An empty MLflow sqlite store as ``folder/mlflow.db`` (what bench creates in an empty folder), copied from
    one made once per test process: creating a store runs MLflow's schema migrations, about 3 s of CPU, which
    every test that runs a sweep would otherwise pay. Kept as it is when the folder has one. Returns its URI."""
    import shutil
    import tempfile

    if not _EMPTY_STORE:
        from mlflow.tracking import MlflowClient

        made = Path(tempfile.mkdtemp(prefix="bench-empty-store-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{made}").search_experiments(max_results=1)
        _EMPTY_STORE.append(made)
    target = Path(folder) / "mlflow.db"
    if not target.exists():
        shutil.copyfile(_EMPTY_STORE[0], target)
    return f"sqlite:///{target}"


def _store_for(cwd: Path, argv: tuple[str, ...], env: dict | None) -> None:
    """`bench run` writing to the default store of ``cwd`` starts with an empty store there (:func:`empty_store`);
    a command given another store, or told one by the environment, is left as it is."""
    if argv[:1] == ("run",) and "--tracking-uri" not in argv and "--dry-run" not in argv \
            and "MLFLOW_TRACKING_URI" not in (env or {}) and not any(a.startswith("--config") for a in argv):
        empty_store(cwd)


def _command(argv: tuple[str, ...], env: dict | None) -> dict:
    """The keywords that run ``bench ARGV...`` under this interpreter, output unbuffered."""
    return {"args": [sys.executable, "-m", "bench.cli", *argv], "text": True,
            "env": {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}}


def bench(cwd: Path, *argv: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``bench ARGV...`` run to its end in ``cwd``; stdout and stderr captured."""
    _store_for(cwd, argv, env)
    return subprocess.run(**_command(argv, env), cwd=cwd, capture_output=True, timeout=timeout)


def start_bench(cwd: Path, *argv: str, env: dict | None = None, group: bool = False) -> subprocess.Popen:
    """``bench ARGV...`` started in ``cwd``, stdout and stderr on one text pipe; ``group``: in its own process
    group (a session), so that a signal can reach it and everything it starts."""
    _store_for(cwd, argv, env)
    return subprocess.Popen(**_command(argv, env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=group)


def read_until(proc: subprocess.Popen, seen: Callable[[list[str]], bool], timeout: float = 300) -> list[str]:
    """The lines ``proc`` printed until ``seen(lines)`` holds (or it ended, or ``timeout`` seconds passed)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if seen(lines) or time.monotonic() > deadline:
            break
    return lines


def wait_until_closed(client, experiment: str, timeout: float = 30) -> list:
    """The experiment's runs once none is RUNNING any more (a killed driver's guardian closes them within
    seconds), or after ``timeout`` seconds, whichever comes first."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    deadline = time.monotonic() + timeout
    while True:
        runs = client.search_runs([experiment_id])
        if time.monotonic() > deadline or all(r.info.status != "RUNNING" for r in runs):
            return runs
        time.sleep(0.5)


def train_keeping(cfg, data):
    """Train a trial; returns its per-epoch metrics and its final model and structure (as ``finish`` sees them)."""
    from bench.trainer import train
    kept = {}

    def finish(model, structure):
        kept["model"], kept["structure"] = model, structure
        return {}

    rows: list[dict] = []
    train(cfg, data, lambda epoch, m: rows.append(m), finish=finish)
    return rows, kept["model"], kept["structure"]


def train_checking_removed_stay_zero(cfg, data) -> tuple[list[dict], int]:
    """Train a trial; at its end, every group its masks marked removed after any earlier epoch must have every
    parameter a removal zeroes (member convs' weights and biases, BatchNorms' weights and biases) exactly zero.
    Returns the per-epoch metrics and how many removed groups were checked (0: nothing was removed before the
    last epoch)."""
    from bench.structure import removed_groups
    from bench.trainer import train

    masks: dict[int, dict[str, torch.Tensor]] = {}
    checked = []

    def finish(model, structure):
        final = {u.name: removed_groups(u) for u in structure.units}
        for epoch, by_layer in masks.items():
            for layer, mask in by_layer.items():
                gone = mask.cpu() == 0
                assert bool(final[layer][gone].all()), f"{layer}: a group removed after epoch {epoch} is not zero"
                checked.append(int(gone.sum()))
        return {}

    rows: list[dict] = []
    train(cfg, data, lambda epoch, m: rows.append(dict(m)), finish=finish,
          keep=lambda epoch, snap: masks.__setitem__(epoch, {k: v.clone() for k, v in snap["masks"]["masks"].items()}))
    return rows, sum(checked)


def assert_closed_form_equals_autograd(method, model, weight: float = 0.7) -> None:
    """A method's closed-form penalty gradient (``add_penalty_grad``) against autograd's of ``penalty``."""
    params = list(model.parameters())
    (weight * method.penalty(model)).backward()
    expected = [None if p.grad is None else p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    method.add_penalty_grad(model, weight)
    for p, want in zip(params, expected):
        if want is None:
            assert p.grad is None or not p.grad.any()
        else:
            torch.testing.assert_close(p.grad, want, rtol=1e-9, atol=1e-12)


# The criteria (methods/criteria.py) share one code path (a Torch-Pruning importance on each unit's group, the
# protocol's pruning step): the loops that train every method on every model take ``taylor`` (gradients, the
# hardest) for all of them, and test_method_contract.py checks each criterion's scores on its own.
CRITERION = "taylor"


# growing-reg shares group-norm's code path (methods/group_reg.py) but for its coefficients' growth: the loops that
# train every method on every model take group-norm; growing-reg's own state is in the checkpoint test
SAME_PATH = {"growing-reg"}


def trained_methods(names, heavy: bool = False):
    """``names`` without the criteria other than the representative :data:`CRITERION` (and, for the ``heavy``
    loops over many models, without :data:`SAME_PATH`)."""
    from methods import get_method
    return [n for n in names if ("regularize" in get_method(n).protocols or n == CRITERION)
            and not (heavy and n in SAME_PATH)]


def protocol_settings(method: str, epochs: int = 2, target: float = 0.3) -> dict:
    """The settings that run ``method`` in a short sweep: none for a method of the regularize protocol; for a
    criterion, prune-to-target to ``target`` of the FLOPs after one epoch less than ``epochs``."""
    from methods import get_method
    if "regularize" in get_method(method).protocols:
        return {}
    return {"protocol": "prune-to-target", "target_flops_reduction": (target,), "sparse_epochs": epochs - 1}
