"""Datasets beyond the built-in four: image folders, torchvision dataset classes and users' own code, and the
per-example form every dataset takes on the streaming data path.

Sources (``--dataset`` / TOML ``dataset``):

- ``imagefolder:PATH``: ``PATH/train`` and ``PATH/val`` (or ``PATH/test``), one subfolder per class, images in
  any format Pillow reads (other files are ignored). Each image is decoded as RGB, its shorter side resized to
  ``--image-size S`` (bilinear, antialiased; default 224) and centre-cropped to S x S: that is what evaluation sees,
  and what training sees before augmentation. Classes are the sorted union of both splits' folder names; a class
  in one split only, a class folder without images, an empty split and an unreadable image are errors naming
  the folder or file. ``--limit-train N`` / ``--limit-test N`` take a seeded subset stratified by class. The trial
  key holds the folder's content fingerprint (every image's path inside the folder, its size and the SHA-256 of
  its first 4 KiB), not its path: a copied or moved folder keeps the key.
- ``torchvision:NAME[:KEY=VALUE,...]``: a class of ``torchvision.datasets`` (SVHN, CIFAR100, KMNIST, EMNIST, STL10,
  ...) whose files are under ``--data-dir`` (else ``$BENCH_DATA_DIR``, else ``~/.cache/bench``); ``KEY=VALUE``
  are extra constructor arguments (``torchvision:EMNIST:split=balanced``). The train/test split is chosen through
  the class's ``train=`` or ``split=`` argument. Missing files are an error listing what the class expects where;
  they are downloaded only when downloads are allowed (not ``--no-download``) and possible.
- ``FILE.py:CALLABLE`` or ``MODULE:CALLABLE``, and names registered with :func:`register_dataset` in a
  ``--plugin`` file: the callable (given those of ``data_dir`` and ``image_size`` it names) returns a
  :class:`bench.data.Dataset`, a mapping with ``train_x``, ``train_y``, ``test_x``, ``test_y`` (uint8 arrays
  (N, C, H, W) or (N, H, W), integer labels; optional ``num_classes``, ``mean``, ``std``) or a pair
  ``(train, test)`` of torch datasets whose items are ``(image, label)``, the image a PIL image, a uint8 array or
  tensor (H, W), (C, H, W) or (H, W, C).

Every dataset is served per example by an :class:`Items` (``items[i] -> (uint8 tensor (C, H, W), label)``),
which the streaming path reads through a DataLoader and the memory path decodes once into arrays.

Normalisation: the per-channel mean and std of the training split (of at most 10,000 of its images, a seeded
sample) are computed once and cached beside the data (``PATH/.bench/``, else ``~/.cache/bench/stats/``), unless
``--normalize MEAN/STD`` gives them.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import DataLoader, Subset

from .datatypes import (  # noqa: F401
    ArrayItems,
    DataError,
    Dataset,
    ImageFiles,
    Items,
    StreamData,
    TorchItems,
    as_uint8_chw,
    fit,
    open_image,
    rgb,
    try_download,
)
from .files import write_text
from .usercode import UserCodeError, display_name, load_callable

SOURCE_HELP = {
    "imagefolder:PATH": "PATH/train and PATH/val (or test), one folder per class; --image-size S (default 224)",
    "torchvision:NAME": "a torchvision.datasets class (SVHN, CIFAR100, KMNIST, ...) with its files under "
                        "--data-dir; torchvision:EMNIST:split=balanced passes arguments",
    "FILE.py:CALLABLE": "your function returning arrays, a bench Dataset or (train, test) torch datasets",
    "MODULE:CALLABLE": "the same from an importable module; @register_dataset names one in a --plugin file",
}
STATS_SAMPLE = 10_000            # images the mean/std are computed from, at most
FINGERPRINT_BYTES = 4096         # of each image file, hashed into the folder's fingerprint
DEFAULT_IMAGE_SIZE = 224


def decoded_bytes(data: StreamData) -> int:
    c, h, w = data.input_shape
    return (data.n_train + data.n_test) * c * h * w


def materialise(items: Items, workers: int = 2, progress: Callable[[str], None] | None = None, what: str = ""
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every example of ``items`` decoded into one uint8 array (N, C, H, W) and its labels (DataLoader workers)."""

    n = len(items)
    loader = DataLoader(items, batch_size=256, num_workers=min(workers, max(1, n // 256)), collate_fn=_stack)
    xs, ys, done, last = [], [], 0, time.monotonic()
    for x, y in loader:
        xs.append(x.numpy())
        ys.append(y.numpy())
        done += len(y)
        if progress is not None and time.monotonic() - last > 10:
            progress(f"data   decoding {what}: {done}/{n} images")
            last = time.monotonic()
    if not xs:
        return np.zeros((0, 3, 1, 1), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _stack(batch):
    """Collate (image, label) examples, or a batch already read by ``__getitems__``, into (uint8 x, int64 y)."""
    if len(batch) == 1 and isinstance(batch[0][1], torch.Tensor):
        return batch[0]
    try:
        x = torch.stack([b[0] for b in batch])
    except RuntimeError as err:
        raise DataError(f"images of different sizes in one batch ({err}); pass --image-size S") from None
    return x, torch.tensor([b[1] for b in batch], dtype=torch.int64)


# -- image folders -----------------------------------------------------------------------------------------

def _extensions() -> frozenset[str]:
    return frozenset(e.lower() for e in Image.registered_extensions())


def _split_dirs(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise DataError(f"imagefolder:{root}: no such folder")
    train = root / "train"
    test = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not train.is_dir() or test is None:
        raise DataError(f"imagefolder:{root}: expected {root}/train and {root}/val (or {root}/test), one subfolder "
                          "per class in each" + (f"; found {', '.join(sorted(p.name for p in root.iterdir()))}"
                                                 if any(root.iterdir()) else "; the folder is empty"))
    return train, test


def _scan_split(split: Path) -> dict[str, list[str]]:
    exts = _extensions()
    classes = sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split}: no class folders (expected one subfolder per class with its images)")
    out: dict[str, list[str]] = {}
    for c in classes:
        files = sorted(str(p) for p in c.rglob("*") if p.is_file() and p.suffix.lower() in exts
                       and not any(part.startswith(".") for part in p.relative_to(c).parts))
        if not files:
            raise DataError(f"{c}: class folder without images (formats read: {', '.join(sorted(exts)[:8])}, ...)")
        out[c.name] = files
    return out


@dataclass(frozen=True)
class FolderIndex:
    root: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, ...], tuple[int, ...]]
    test: tuple[tuple[str, ...], tuple[int, ...]]
    fingerprint: str


@lru_cache(maxsize=8)
def index_folder(path: str) -> FolderIndex:
    """The folder's classes, files and content fingerprint (module docstring); errors name what is wrong."""
    root = Path(path).expanduser().resolve()
    train_dir, test_dir = _split_dirs(root)
    train, test = _scan_split(train_dir), _scan_split(test_dir)
    for a, b, a_dir, b_dir in ((train, test, train_dir, test_dir), (test, train, test_dir, train_dir)):
        only = sorted(set(a) - set(b))
        if only:
            raise DataError(f"imagefolder:{root}: class{'es' * (len(only) > 1)} {', '.join(only)} in {a_dir.name}/ "
                              f"but not in {b_dir.name}/; both splits need the same class folders")
    classes = tuple(sorted(train))
    digest = hashlib.sha256()
    splits = []
    for files_of in (train, test):
        paths, labels = [], []
        for k, c in enumerate(classes):
            for f in files_of[c]:
                paths.append(f)
                labels.append(k)
                with open(f, "rb") as fh:
                    head = fh.read(FINGERPRINT_BYTES)
                digest.update(f"{os.path.relpath(f, root)}\0{os.path.getsize(f)}\0".encode())
                digest.update(hashlib.sha256(head).digest())
        splits.append((tuple(paths), tuple(labels)))
    return FolderIndex(str(root), classes, splits[0], splits[1], digest.hexdigest())


def stratified(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` examples, each class's share kept (largest remainders), chosen with ``seed``; sorted."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - take), kind="stable")[: n - int(take.sum())]:
        take[k] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def image_folder(path: str, image_size: int | None) -> StreamData:
    index = index_folder(path)
    size = image_size or DEFAULT_IMAGE_SIZE
    splits = [ImageFiles(paths, np.asarray(labels), size) for paths, labels in (index.train, index.test)]
    return StreamData(f"imagefolder:{Path(index.root).name}", splits[0], splits[1], len(index.classes),
                      (3, size, size), source=index.root,
                      info={"classes": list(index.classes), "fingerprint": index.fingerprint})


def folder_key(source: str) -> str:
    """What a trial key holds of ``imagefolder:PATH``: the content fingerprint instead of the path."""
    try:
        return f"imagefolder:sha256:{index_folder(source.partition(':')[2]).fingerprint}"
    except Exception:
        return source


# -- torchvision dataset classes ---------------------------------------------------------------------------

def _parse_extra(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise DataError(f"torchvision:{text}: expected KEY=VALUE after the class name, got {item!r}")
        kwargs[key.strip()] = _literal(value.strip())
    return name, kwargs


def _literal(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def torchvision_class(name: str):
    cls = getattr(tvd, name, None)
    if not isinstance(cls, type):
        valid = sorted(n for n, v in vars(tvd).items() if isinstance(v, type) and n[0].isupper()
                       and n not in ("VisionDataset", "DatasetFolder", "ImageFolder", "FakeData"))
        raise DataError(f"torchvision:{name}: torchvision.datasets has no class {name!r}; its classes: "
                          f"{', '.join(valid)}")
    return cls


def expected_files(cls: type, root: Path, kwargs: Mapping[str, Any]) -> list[str]:
    """What ``cls`` reads under ``root``, as far as its class attributes say."""
    files: list[str] = []
    base = getattr(cls, "base_folder", "")
    for attr in ("train_list", "test_list"):
        files += [str(root / base / entry[0]) for entry in getattr(cls, attr, ())]
    for entry in getattr(cls, "split_list", {}).values():
        files.append(str(root / base / entry[1]))
    for entry in getattr(cls, "resources", ()):
        url = entry[0] if isinstance(entry, (tuple, list)) else entry
        files.append(str(root / cls.__name__ / "raw" / os.path.basename(str(url))))
    if not files and getattr(cls, "filename", None):
        files.append(str(root / base / cls.filename))
    return files


def _split_kwargs(cls: type, train: bool, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    if "train" in params:
        return {**kwargs, "train": train}
    if "split" in params and "split" not in kwargs:
        return {**kwargs, "split": "train" if train else "test"}
    raise DataError(f"torchvision:{cls.__name__}: cannot tell how to ask it for the train and test splits (no "
                      "train= or split= argument); write a FILE.py:CALLABLE dataset for it")


def torchvision_data(spec: str, roots: Sequence[Path], download_ok: bool, image_size: int | None) -> StreamData | Any:
    """The train and test splits of a torchvision dataset class, as arrays when the class holds them, else as
    items (module docstring)."""
    name, kwargs = _parse_extra(spec)
    cls = torchvision_class(name)
    for root in roots:
        try:
            splits = [cls(root=str(root), download=False, **_split_kwargs(cls, t, kwargs)) for t in (True, False)]
            break
        except (RuntimeError, FileNotFoundError, OSError):
            continue
    else:
        def fetch() -> list:
            roots[0].mkdir(parents=True, exist_ok=True)
            return [cls(root=str(roots[0]), download=True, **_split_kwargs(cls, t, kwargs)) for t in (True, False)]

        splits, reason = try_download(download_ok, fetch)
        if splits is None:
            expected = expected_files(cls, roots[0], kwargs)
            raise DataError(
                f"dataset torchvision:{spec}: files not found. Searched:\n  " + "\n  ".join(map(str, roots))
                + f"\n{reason}\ntorchvision.datasets.{name} expects, under one of these folders"
                + (" (shown for the first):\n  " + "\n  ".join(expected) if expected else
                   ": see its documentation") + "\nPut the files there, or pass --data-dir DIR.")
    arrays = [_as_arrays(s) for s in splits]
    if all(a is not None for a in arrays) and not image_size:
        (trx, tr_y), (tex, te_y) = arrays  # type: ignore[misc]
        num = int(max(tr_y.max(initial=0), te_y.max(initial=0))) + 1
        return Dataset(f"torchvision:{spec}", trx, tr_y, tex, te_y, max(num, len(getattr(splits[0], "classes", ()))),
                       (), (), f"torchvision.datasets.{name} in {splits[0].root}")
    items = [TorchItems(s, image_size, f"torchvision:{spec}") for s in splits]
    c, h, w = items[0][0][0].shape
    num = max(int(items[0].labels.max(initial=0)) + 1, len(getattr(splits[0], "classes", ())))
    return StreamData(f"torchvision:{spec}", items[0], items[1], num, (c, h, w),
                      source=f"torchvision.datasets.{name} in {splits[0].root}")


def _as_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(uint8 (N, C, H, W), labels) straight from a torchvision dataset's ``data`` attribute, where it has one."""
    data = getattr(ds, "data", None)
    labels = next((getattr(ds, a) for a in ("targets", "labels") if getattr(ds, a, None) is not None), None)
    if data is None or labels is None or len(data) != len(ds) or len(labels) != len(ds):
        return None
    x = np.asarray(data)
    if x.dtype != np.uint8:
        return None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        return None
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


# -- users' own datasets -----------------------------------------------------------------------------------

DATASET_PLUGINS: dict[str, Callable[..., Any]] = {}


def register_dataset(name: str | None = None):
    """Decorator: make ``builder`` a dataset named ``name`` (its function name by default). The builder
    returns what a ``FILE.py:CALLABLE`` dataset returns (module docstring)."""
    def decorate(builder):
        DATASET_PLUGINS[name or builder.__name__] = builder
        return builder
    return decorate


def user_builder(source: str) -> Callable[..., Any]:
    """The callable of a registered plugin dataset or of ``FILE.py:CALLABLE`` / ``MODULE:CALLABLE``."""
    if source in DATASET_PLUGINS:
        return DATASET_PLUGINS[source]
    try:
        return load_callable(source, "dataset")[0]
    except UserCodeError as err:
        raise DataError(str(err)) from None


def user_data(source: str, data_dir: str | None, image_size: int | None) -> Any:
    builder = user_builder(source)
    accepted = set(inspect.signature(builder).parameters)
    try:
        out = builder(**{k: v for k, v in (("data_dir", data_dir), ("image_size", image_size)) if k in accepted})
    except Exception as err:
        raise DataError(f"dataset {source}: its builder failed: {type(err).__name__}: {err}") from None
    name = display_name(source)
    if isinstance(out, Dataset):
        return out
    if isinstance(out, Mapping):
        try:
            arrays = [np.asarray(out[k]) for k in ("train_x", "train_y", "test_x", "test_y")]
        except KeyError as err:
            raise DataError(f"dataset {source}: the mapping it returned lacks {err}") from None
        xs = []
        for key, x in zip(("train_x", "test_x"), arrays[::2]):
            if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] not in (1, 3)):
                raise DataError(f"dataset {source}: {key} must be uint8 (N, C, H, W) or (N, H, W), got {x.dtype} "
                                  f"{x.shape}")
            xs.append(x[:, None] if x.ndim == 3 else x)
        ys = [a.astype(np.int64) for a in arrays[1::2]]
        num = int(out.get("num_classes") or max(ys[0].max(initial=0), ys[1].max(initial=0)) + 1)
        return Dataset(name, xs[0], ys[0], xs[1], ys[1], num, tuple(out.get("mean", ())), tuple(out.get("std", ())),
                       source)
    if isinstance(out, (tuple, list)) and len(out) == 2:
        items = [TorchItems(d, image_size, name) for d in out]
        c, h, w = items[0][0][0].shape
        num = int(max(items[0].labels.max(initial=0), items[1].labels.max(initial=0))) + 1
        return StreamData(name, items[0], items[1], num, (c, h, w), source=source)
    raise DataError(f"dataset {source}: its builder returned {type(out).__name__}; expected a bench.data.Dataset, "
                      "a mapping of train_x/train_y/test_x/test_y arrays or a (train, test) pair of torch datasets")


# -- mean and std ------------------------------------------------------------------------------------------

def channel_stats(items: Items, workers: int = 2) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on [0, 1]) of at most STATS_SAMPLE examples of ``items`` (seeded sample)."""

    pick = np.sort(np.random.default_rng(0).choice(len(items), STATS_SAMPLE, replace=False)) \
        if len(items) > STATS_SAMPLE else np.arange(len(items))
    total = total_sq = None
    count = 0
    loader = DataLoader(Subset(items, pick.tolist()), batch_size=256, num_workers=min(workers, len(pick) // 256),
                        collate_fn=_stack)
    for x, _ in loader:
        f = x.double() / 255
        s, sq = f.sum(dim=(0, 2, 3)), (f * f).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += f.shape[0] * f.shape[2] * f.shape[3]
    assert total is not None and total_sq is not None
    mean = total / count
    std = torch.sqrt(torch.clamp(total_sq / count - mean * mean, min=1e-12))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def cached_stats(key: str, places: Sequence[Path], compute: Callable[[], tuple[tuple[float, ...], tuple[float, ...]]]
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The statistics stored under ``key`` in the first of ``places`` that has them, else computed and written
    to the first writable one."""
    name = f"stats-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    for place in places:
        try:
            saved = json.loads((place / name).read_text())
            if saved.get("key") == key:
                return tuple(saved["mean"]), tuple(saved["std"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    mean, std = compute()
    for place in places:
        try:
            place.mkdir(parents=True, exist_ok=True)
            write_text(place / name, json.dumps({"key": key, "mean": mean, "std": std}))
            break
        except OSError:
            continue
    return mean, std


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--normalize``: ``imagenet`` or ``MEAN1,MEAN2,MEAN3/STD1,STD2,STD3`` (one value each for grey)."""
    if text.strip().lower() == "imagenet":
        return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    mean, slash, std = text.partition("/")
    try:
        m = tuple(float(v) for v in mean.split(","))
        s = tuple(float(v) for v in std.split(","))
    except ValueError:
        m = s = ()
    if not slash or not m or len(m) != len(s) or any(v <= 0 for v in s):
        raise ValueError(f"cannot parse {text!r}; expected imagenet or MEAN1,MEAN2,MEAN3/STD1,STD2,STD3 with "
                         "positive stds, on the [0, 1] scale")
    return m, s


__all__ = ["ArrayItems", "ImageFiles", "Items", "StreamData", "TorchItems", "image_folder", "index_folder",
           "materialise", "parse_normalize", "register_dataset", "stratified", "torchvision_data"]
