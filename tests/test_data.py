"""Datasets from files in their real formats, the lookup order, and clear errors for missing or corrupt files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.data import DEBIAN_FASHION_MNIST, DataError, load_dataset, make_synthetic, read_idx
from helpers import write_cifar10, write_idx, write_mnist


@pytest.mark.parametrize("compress", [True, False])
def test_idx_roundtrip(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, compress)
    assert np.array_equal(read_idx(path), arr)


@pytest.mark.parametrize("layout", ["", "mnist", "MNIST/raw"])
def test_mnist_layouts_and_limits(tmp_path, layout):
    arrays = write_mnist(tmp_path / layout if layout else tmp_path, n_train=50, n_test=20)
    ds = load_dataset("mnist", data_dir=tmp_path, limit_train=30, limit_test=7)
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (7, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0], arrays["train-images-idx3-ubyte"][:30])
    assert np.array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"][:7].astype(np.int64))
    assert ds.num_classes == 10 and ds.mean == (0.1307,)


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    first, env, cache = tmp_path / "first", tmp_path / "env", Path(os.environ["HOME"]) / ".cache" / "bench"
    write_mnist(env, n_train=11)
    write_mnist(cache, n_train=12)
    monkeypatch.setenv("BENCH_DATA_DIR", str(env))
    assert len(load_dataset("mnist").train_x) == 11
    write_mnist(first, n_train=10)
    assert len(load_dataset("mnist", data_dir=first).train_x) == 10
    monkeypatch.delenv("BENCH_DATA_DIR")
    assert len(load_dataset("mnist").train_x) == 12


def test_missing_dataset_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "mine")
    text = str(err.value)
    for place in (tmp_path / "mine", tmp_path / "env", Path(os.environ["HOME"]) / ".cache" / "bench"):
        assert str(place) in text
    assert "train-images-idx3-ubyte" in text and "Downloads are disabled" in text


def test_truncated_idx_file_is_named(tmp_path):
    write_mnist(tmp_path, compress=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_gzip_file_is_named(tmp_path):
    write_mnist(tmp_path, compress=True)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 3)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_bad_magic_and_mismatched_labels(tmp_path):
    write_mnist(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 8)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*magic"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="expected 64 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))   # a well-formed empty split
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: holds no image .* the train split is empty"):
        load_dataset("mnist", data_dir=tmp_path)


def test_cifar10_python_batches(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=8)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train_x.shape == (40, 3, 32, 32) and ds.test_x.shape == (8, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # a row holds the 1024 red, then green, then blue values of one image, row-major
    assert ds.train_x[8, 1, 0, 5] == data[0, 1024 + 5]
    assert ds.train_x[9, 2, 31, 31] == data[1, 3071]
    assert ds.train_y[8:16].tolist() == labels
    assert ds.input_shape == (3, 32, 32)


def test_cifar10_corrupt_batch_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, per_batch=4)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:50])
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_refuses_pickled_code(tmp_path):
    import pickle
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, per_batch=4)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": os.system, b"labels": []}, f)
    with pytest.raises(DataError, match="test_batch.*refusing"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_synthetic_is_deterministic_and_shaped_for_the_model():
    a, b = make_synthetic((3, 32, 32)), make_synthetic((3, 32, 32))
    assert a.train_x.shape == (1024, 3, 32, 32) and np.array_equal(a.train_x, b.train_x)
    assert load_dataset("synthetic", input_shape=(1, 28, 28), limit_train=100).train_x.shape == (100, 1, 28, 28)
    assert len(set(a.train_y.tolist())) == 10


def test_unknown_dataset_and_bad_limits():
    with pytest.raises(DataError, match="valid datasets: cifar10, fashion-mnist, mnist, synthetic"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="limit_train must be >= 1"):
        load_dataset("synthetic", limit_train=0)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist", limit_test=100)
    assert ds.train_x.shape == (60000, 1, 28, 28) and len(ds.test_x) == 100
    assert ds.source == str(DEBIAN_FASHION_MNIST)
    assert abs(ds.train_x.mean() / 255 - ds.mean[0]) < 1e-3  # the constant is the data's mean
    assert np.bincount(ds.train_y).tolist() == [6000] * 10
