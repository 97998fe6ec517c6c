"""Datasets as in-memory uint8 arrays.

The whole dataset is held once, as uint8 arrays of shape (N, C, H, W) (labels int64); the trainer moves it
to the training device and normalises each batch there. No per-item DataLoader or PIL.

Where files are looked up (first hit wins), for ``mnist``, ``fashion-mnist`` and ``cifar10``:

1. ``--data-dir`` (when given), 2. ``$BENCH_DATA_DIR``, 3. ``~/.cache/bench``, and for ``fashion-mnist``
4. ``/usr/share/datasets/fashion-mnist`` (Debian's package ``dataset-fashion-mnist``).

In each root the files may sit directly, in a folder named after the dataset (``fashion-mnist/``,
``mnist/``, ``cifar10/``) or in torchvision's layout (``FashionMNIST/raw/``, ``MNIST/raw/``,
``cifar-10-batches-py/``). MNIST-family files are the IDX files (``train-images-idx3-ubyte`` etc.,
optionally ``.gz``); CIFAR-10 is the "python version" (``data_batch_1..5``, ``test_batch``).

When nothing is found, torchvision downloads the files into the first root (into a temporary folder that
is moved into place only when complete, so nothing is half-written). Offline, or with downloads disabled
(``--no-download`` or ``BENCH_NO_DOWNLOAD=1``), the error names every place searched and how to provide
the files. A corrupt or truncated file is an error that names the file.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torchvision.datasets as tvd
from torch.utils.data import Subset
from torchvision.transforms.v2 import functional as TF

from .datatypes import ArrayItems, DataError, Dataset, StreamData, try_download
from .sources import (
    DATASET_PLUGINS,
    cached_stats,
    channel_stats,
    decoded_bytes,
    folder_key,
    image_folder,
    materialise,
    parse_normalize,
    stratified,
    torchvision_class,
    torchvision_data,
    user_data,
)
from .usercode import display_name, file_source, source_key

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    loader: Callable[..., Dataset]


# -- IDX (MNIST family) --------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read ({err}); the file is corrupt or truncated: delete it and "
                        "provide a good copy") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), checking its header against its size."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number); the file is corrupt")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; the file is corrupt")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says shape {dims} ({expected} bytes) but the file holds "
                        f"{len(raw) - header} bytes; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_mnist_dir(roots: Sequence[Path], folder_names: Sequence[str]) -> Path | None:
    for root in roots:
        for sub in ("", *folder_names):
            d = root / sub if sub else root
            if all(_idx_path(d, stem) is not None for stem in _MNIST_FILES.values()):
                return d
    return None


def _idx_path(d: Path, stem: str) -> Path | None:
    for candidate in (d / stem, d / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_mnist_dir(name: str, d: Path, mean: float, std: float) -> Dataset:
    arrays = {key: read_idx(_idx_path(d, stem)) for key, stem in _MNIST_FILES.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        xf, yf = _idx_path(d, _MNIST_FILES[f"{split}_x"]), _idx_path(d, _MNIST_FILES[f"{split}_y"])
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{xf}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{yf}: expected {len(x)} labels to match {xf.name}, got shape {y.shape}")
        if len(x) == 0:
            raise DataError(f"{xf}: holds no image (its header says 0 examples): the {split} split is empty")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{yf}: labels must be in 0..9, found {int(y.min())}..{int(y.max())}")
    return Dataset(name, arrays["train_x"][:, None], arrays["train_y"].astype(np.int64),
                   arrays["test_x"][:, None], arrays["test_y"].astype(np.int64), 10, (mean,), (std,), str(d))


# -- CIFAR-10 ------------------------------------------------------------------------------------------

_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = "test_batch"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle CIFAR batches while refusing anything but numpy arrays and plain containers."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, IndexError) as err:
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(err).__name__}: {err}); the file is "
                        "corrupt or truncated") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, got {data.shape} and "
                        f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar_dir(roots: Sequence[Path]) -> Path | None:
    for root in roots:
        for sub in ("", "cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"):
            d = root / sub if sub else root
            if all((d / f).is_file() for f in (*_CIFAR_TRAIN, _CIFAR_TEST)):
                return d
    return None


def _load_cifar_dir(d: Path) -> Dataset:
    parts = [_read_cifar_batch(d / f) for f in _CIFAR_TRAIN]
    test_x, test_y = _read_cifar_batch(d / _CIFAR_TEST)
    return Dataset("cifar10", np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   test_x, test_y, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), str(d))


# -- lookup and download -------------------------------------------------------------------------------

def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The places searched, in order (the dataset-specific Debian folder is added by the loader)."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("BENCH_DATA_DIR"):
        roots.append(Path(os.environ["BENCH_DATA_DIR"]).expanduser())
    roots.append(Path.home() / ".cache" / "bench")
    return roots


def downloads_allowed(download: bool | None) -> bool:
    if download is not None:
        return download
    return os.environ.get("BENCH_NO_DOWNLOAD", "").lower() not in ("1", "true", "yes")


def _download(torchvision_class: str, root: Path, folder: str) -> Path:
    """Download with torchvision into a temp folder under ``root``, then move ``folder`` into place."""

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        getattr(tvd, torchvision_class)(root=tmp, train=True, download=True)
        target = root / folder
        if not target.exists():
            os.replace(Path(tmp) / folder, target)
    return target


def _missing(name: str, roots: Sequence[Path], files: str, reason: str) -> DataError:
    places = "\n  ".join(str(r) for r in roots)
    return DataError(
        f"dataset {name!r} not found. Searched:\n  {places}\n{reason}\n"
        f"Provide the files ({files}) in one of these places, or pass --data-dir DIR."
        + ("\nOn Debian: sudo apt-get install dataset-fashion-mnist" if name == "fashion-mnist" else ""))


def _mnist_family(name: str, tv_class: str, mean: float, std: float, extra_roots: Sequence[Path] = ()):
    def load(data_dir=None, download: bool | None = None, **_: object) -> Dataset:
        roots = search_roots(data_dir) + list(extra_roots)
        folders = (name, name.replace("-", "_"), f"{tv_class}/raw")
        found = _find_mnist_dir(roots, folders)
        if found is None:
            got, why = try_download(downloads_allowed(download), lambda: _download(tv_class, roots[0], tv_class))
            if got is None:
                raise _missing(name, roots, ", ".join(f"{s}[.gz]" for s in _MNIST_FILES.values()), why)
            found = got / "raw"
        return _load_mnist_dir(name, found, mean, std)
    return load


def _load_cifar10(data_dir=None, download: bool | None = None, **_: object) -> Dataset:
    roots = search_roots(data_dir)
    found = _find_cifar_dir(roots)
    if found is None:
        found, why = try_download(downloads_allowed(download),
                                  lambda: _download("CIFAR10", roots[0], "cifar-10-batches-py"))
        if found is None:
            raise _missing("cifar10", roots, "cifar-10-batches-py/data_batch_1..5 and test_batch", why)
    return _load_cifar_dir(found)


def make_synthetic(input_shape: Sequence[int] = (1, 28, 28), n_train: int = 1024, n_test: int = 512,
                   num_classes: int = 10, seed: int = 0) -> Dataset:
    """A small learnable dataset: each class is a smooth random pattern plus noise. Deterministic."""
    c, h, w = input_shape
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_classes, c, 4, 4))
    protos = np.kron(coarse, np.ones((1, 1, -(-h // 4), -(-w // 4))))[:, :, :h, :w]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n)
        x = 128 + 50 * protos[y] + 40 * rng.normal(size=(n, c, h, w))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    scaled = train_x.astype(np.float64) / 255
    mean = tuple(float(v) for v in scaled.mean(axis=(0, 2, 3)))
    std = tuple(float(v) for v in scaled.std(axis=(0, 2, 3)))
    return Dataset("synthetic", train_x, train_y, test_x, test_y, num_classes, mean, std, "generated (seed 0)")


def _load_synthetic(input_shape: Sequence[int] | None = None, **_: object) -> Dataset:
    return make_synthetic(tuple(input_shape) if input_shape else (1, 28, 28))


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec("fashion-mnist", "Fashion-MNIST, 60k/10k 28x28 grey (default; Debian package "
                                 "dataset-fashion-mnist)",
                                 _mnist_family("fashion-mnist", "FashionMNIST", 0.2860, 0.3530,
                                               (DEBIAN_FASHION_MNIST,))),
    "mnist": DatasetSpec("mnist", "MNIST, 60k/10k 28x28 grey digits", _mnist_family("mnist", "MNIST", 0.1307, 0.3081)),
    "cifar10": DatasetSpec("cifar10", "CIFAR-10, 50k/10k 32x32 colour (python batches)", _load_cifar10),
    "synthetic": DatasetSpec("synthetic", "tiny generated dataset (1024/512) shaped for the model, for tests",
                             _load_synthetic),
}


SOURCES = ("imagefolder:PATH", "torchvision:NAME[:KEY=VALUE,...]", "FILE.py:CALLABLE", "MODULE:CALLABLE")
DATA_PATHS = ("auto", "memory", "stream")
MEMORY_LIMIT_BYTES = 2 * 2 ** 30   # auto: decoded uint8 splits up to this size are held in memory


def list_datasets() -> list[str]:
    return sorted({*DATASETS, *DATASET_PLUGINS})


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}; or "
                        + ", ".join(SOURCES)) from None


def check_source(name: str) -> None:
    """A cheap check that ``name`` is a dataset or a source that may load (before any work starts)."""
    if name in DATASETS or name in DATASET_PLUGINS:
        return
    kind, _, rest = name.partition(":")
    if kind == "imagefolder":
        if not rest or not Path(rest).expanduser().is_dir():
            raise DataError(f"dataset {name}: no such folder {Path(rest).expanduser().absolute() if rest else '(none given)'}")
    elif kind == "torchvision":
        torchvision_class(rest.partition(":")[0])
    elif rest:
        found = file_source(name)
        if found and not Path(found[0]).expanduser().is_file():
            raise DataError(f"dataset source {name!r}: no such file {Path(found[0]).expanduser().absolute()}")
    else:
        get_dataset_spec(name)


def data_key(name: str) -> str:
    """What a trial's key records of its dataset: the name, except for a folder (its content fingerprint)
    and a file (its content digest)."""
    if name.startswith("imagefolder:"):
        return folder_key(name)
    return source_key(name) if not name.startswith("torchvision:") else name


def dataset_record(data: Dataset | StreamData, name: str) -> dict[str, Any]:
    """What a trial's run records of its dataset (MLflow's dataset input): the name as people say it, a
    digest of the content, where it came from and the split sizes. The digest covers the uint8 arrays a
    memory dataset holds (its examples and labels, every split: a changed file, or another --limit-train,
    gives another digest) and, for streamed data, the folder's content fingerprint or the file's digest of
    the trial key; computed once, on the driver."""
    h = hashlib.sha256()
    if isinstance(data, Dataset):
        for a in (data.train_x, data.train_y, data.val_x, data.val_y, data.test_x, data.test_y):
            if a is not None:
                h.update(np.ascontiguousarray(a).data)
    else:
        h.update(f"{data_key(name)} {data.n_train} {data.n_val} {data.n_test}".encode())
    record: dict[str, Any] = {"name": data_display(name), "digest": h.hexdigest()[:16], "source": data.source,
                              "train": data.n_train, "test": data.n_test}
    if data.n_val:
        record["val"] = data.n_val
    return record


def data_display(name: str) -> str:
    """A dataset as people say it: a folder or file by its name, not its path (``imagefolder:flowers``)."""
    if name.startswith("imagefolder:"):
        return f"imagefolder:{Path(name.partition(':')[2]).name}"
    return display_name(name) if not name.startswith("torchvision:") else name


def _source_data(name: str, data_dir, download, input_shape, image_size):
    """The full dataset of ``name``: built-in arrays, or what a source gives (arrays or items)."""
    if name in DATASETS:
        if name == "synthetic" and image_size and input_shape:
            input_shape = (input_shape[0], image_size, image_size)
        return DATASETS[name].loader(data_dir=data_dir, download=download, input_shape=input_shape)
    kind, _, rest = name.partition(":")
    if kind == "imagefolder":
        return image_folder(rest, image_size)
    if kind == "torchvision":
        return torchvision_data(rest, search_roots(data_dir), downloads_allowed(download), image_size)
    if name in DATASET_PLUGINS or rest:
        return user_data(name, data_dir, image_size)
    return get_dataset_spec(name).loader()


def _resized(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 images resized (shorter side, bilinear, antialiased) and centre-cropped to size x size."""
    if x.shape[2] == size and x.shape[3] == size:
        return x
    out = [TF.center_crop(TF.resize(torch.tensor(x[i:i + 1024]), [size], antialias=True), [size, size])
           for i in range(0, len(x), 1024)]
    return torch.cat(out).numpy()


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, limit_train: int | None = None,
                 limit_test: int | None = None, input_shape: Sequence[int] | None = None,
                 download: bool | None = None, image_size: int | None = None, data_path: str = "auto",
                 normalize: str | None = None, workers: int = 2, progress: Callable[[str], None] | None = None,
                 val_split: float | None = None):
    """Load a dataset: a :class:`Dataset` (arrays, the memory path) or a :class:`bench.sources.StreamData`
    (examples read per batch, the streaming path).

    ``limit_*`` keep the first N examples of a built-in dataset and a seeded class-stratified subset of any other
    source. ``input_shape`` is the model's preferred (C, H, W) (the synthetic dataset uses it); ``image_size``
    resizes every image to a square of that side (folders: the decoding size, default 224). ``data_path``:
    ``memory``, ``stream`` or ``auto`` (memory when the decoded uint8 splits take at most
    ``MEMORY_LIMIT_BYTES``); ``normalize`` replaces the mean/std (``bench.sources.parse_normalize``), which are
    otherwise the dataset's own or computed from its training split and cached.
    """
    for flag, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and value < 1:
            raise DataError(f"{flag} must be >= 1, got {value}")
    if data_path not in DATA_PATHS:
        raise DataError(f"data path {data_path!r}: valid values: {', '.join(DATA_PATHS)}")
    ds = _source_data(name, data_dir, download, input_shape, image_size)
    for split, n in (("training", ds.n_train), ("test", ds.n_test)):
        if n == 0:
            raise DataError(f"dataset {name}: its {split} split holds no example")
    if ds.num_classes < 2:
        raise DataError(f"dataset {name}: {ds.num_classes} class: a classifier needs at least two (an image folder "
                        "holds one sub-folder per class)")
    if isinstance(ds, Dataset) and image_size and name != "synthetic":
        ds.train_x, ds.test_x = _resized(ds.train_x, image_size), _resized(ds.test_x, image_size)
    if normalize:
        ds.mean, ds.std = parse_normalize(normalize)
    elif not ds.mean:
        train_items = ds.train if isinstance(ds, StreamData) else ArrayItems(ds.train_x, ds.train_y)
        places = [Path(ds.source) / ".bench"] if name.startswith("imagefolder:") else []
        key = json.dumps([data_key(name), ds.n_train, list(ds.input_shape)])
        ds.mean, ds.std = cached_stats(key, places + [Path.home() / ".cache" / "bench" / "stats"],
                                       lambda: channel_stats(train_items, workers))
    if len(ds.mean) != ds.input_shape[0]:
        raise DataError(f"dataset {name}: {len(ds.mean)} normalisation channels for {ds.input_shape[0]}-channel "
                        "images; give one mean and std per channel with --normalize")
    builtin = name in DATASETS
    if isinstance(ds, Dataset):
        for split, limit in (("train", limit_train), ("test", limit_test)):
            if limit is not None:
                x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
                keep = slice(None, limit) if builtin else stratified(y, limit)
                setattr(ds, f"{split}_x", x[keep])
                setattr(ds, f"{split}_y", y[keep])
        hold_out(ds, val_split)
        return as_stream(ds) if data_path == "stream" else ds
    for split, limit in (("train", limit_train), ("test", limit_test)):
        if limit is not None:
            items = getattr(ds, split)
            setattr(ds, split, _subset(items, stratified(items.labels, limit)))
    if data_path == "stream" or (data_path == "auto" and decoded_bytes(ds) > MEMORY_LIMIT_BYTES):
        return hold_out(ds, val_split)
    train_x, train_y = materialise(ds.train, workers, progress, f"{ds.name} train")
    test_x, test_y = materialise(ds.test, workers, progress, f"{ds.name} test")
    out = Dataset(ds.name, train_x, train_y, test_x, test_y, ds.num_classes, ds.mean, ds.std, ds.source, ds.info)
    return hold_out(out, val_split)


def as_stream(ds: Dataset):
    """In-memory arrays served per example, for the streaming path."""
    return StreamData(ds.name, ArrayItems(ds.train_x, ds.train_y), ArrayItems(ds.test_x, ds.test_y),
                      ds.num_classes, ds.input_shape, ds.mean, ds.std, ds.source, ds.info,
                      val=ArrayItems(ds.val_x, ds.val_y) if ds.val_x is not None else None)


VAL_SEED = 1   # the held-out validation examples are the same for every trial and sweep


def hold_out(ds, fraction: float | None):
    """``fraction`` of the training split held out as a validation split, stratified by class and seeded
    (``VAL_SEED``), taken after ``--limit-train``; the rest stays the training split."""
    if not fraction:
        return ds
    labels = ds.train.labels if isinstance(ds, StreamData) else ds.train_y
    n = int(round(fraction * len(labels)))
    if n < 1 or n >= len(labels):
        raise DataError(f"--val-split {fraction} leaves {n} of {len(labels)} training examples for validation")
    val = np.zeros(len(labels), dtype=bool)
    val[stratified(labels, n, seed=VAL_SEED)] = True
    if isinstance(ds, StreamData):
        ds.val, ds.train = _subset(ds.train, np.flatnonzero(val)), _subset(ds.train, np.flatnonzero(~val))
    else:
        ds.val_x, ds.val_y = ds.train_x[val], ds.train_y[val]
        ds.train_x, ds.train_y = ds.train_x[~val], ds.train_y[~val]
    return ds


def _subset(items, keep: np.ndarray):
    """``items`` restricted to the examples ``keep``."""
    out = copy.copy(items)
    out.labels = items.labels[keep]
    if hasattr(items, "paths"):
        out.paths = [items.paths[i] for i in keep]
    elif hasattr(items, "x"):
        out.x = items.x[keep]
    else:
        out.dataset = Subset(items.dataset, keep.tolist())
    return out


__all__ = ["DATASETS", "DataError", "Dataset", "list_datasets", "load_dataset", "make_synthetic", "read_idx",
           "search_roots"]
