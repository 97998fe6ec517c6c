"""The data types every dataset becomes, and the one error data raises.

:class:`Dataset` holds uint8 arrays (N, C, H, W) in memory; :class:`StreamData` serves its splits per example
through :class:`Items` (``items[i] -> (uint8 tensor (C, H, W), label)``): arrays, image files or a user's torch
dataset, which the streaming path reads through a DataLoader and the memory path decodes once into arrays.
Image decoding (:func:`open_image`, :func:`rgb`, :func:`fit`, :func:`as_uint8_chw`) lives here with the
examples that use it. Imports nothing of bench.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

T = TypeVar("T")


DOWNLOADS_OFF = "Downloads are disabled (--no-download or BENCH_NO_DOWNLOAD=1)."


def try_download(allowed: bool, fetch: Callable[[], T]) -> tuple[T | None, str]:
    """``(fetch(), "")`` when downloads are allowed and it succeeds, else ``(None, why not)``: the sentence a
    missing-files error gives (downloads disabled, or the download's own error)."""
    if not allowed:
        return None, DOWNLOADS_OFF
    try:
        return fetch(), ""
    except Exception as err:  # network errors come in many types
        return None, f"Download failed: {type(err).__name__}: {err}"


class DataError(ValueError):
    """A dataset that cannot be found or read; the message names the file or the places searched."""


# -- per-example datasets ----------------------------------------------------------------------------------

class Items:
    """A split as examples: ``len(items)``, ``items[i] -> (uint8 tensor (C, H, W), int label)``; ``labels`` is
    every example's label (int64 array). ``standard`` turns on RandomResizedCrop + flip per example (training
    on the streaming path); subclasses with a larger original (image files) crop from it."""

    labels: np.ndarray
    standard: bool = False
    size: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        raise NotImplementedError

    def augmented(self, size: int) -> Items:
        other = copy.copy(self)
        other.standard, other.size = True, size
        return other

    def _standard(self, image):
        return v2.RandomHorizontalFlip()(v2.RandomResizedCrop(self.size, antialias=True)(image))


class ArrayItems(Items):
    """uint8 arrays (N, C, H, W) as examples; batched reads (``__getitems__``) index the array once per batch."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.labels = x, np.asarray(y, dtype=np.int64)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.x[i]))
        return (self._standard(image) if self.standard else image), int(self.labels[i])

    def __getitems__(self, idx: list[int]):
        if self.standard:
            return [self[i] for i in idx]
        return [(torch.from_numpy(self.x[np.asarray(idx)]), torch.from_numpy(self.labels[np.asarray(idx)]))]


class ImageFiles(Items):
    """Image files decoded as RGB, shorter side resized to ``size`` and centre-cropped (module docstring)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, size: int) -> None:
        self.paths, self.labels, self.size = list(paths), np.asarray(labels, dtype=np.int64), size

    def __getitem__(self, i: int):
        image = open_image(self.paths[i])
        if self.standard:
            return TF.pil_to_tensor(self._standard(image)), int(self.labels[i])
        return TF.pil_to_tensor(fit(image, self.size)), int(self.labels[i])


class TorchItems(Items):
    """A user's torch dataset of ``(image, label)``, its images made uint8 (C, H, W) (and fitted to ``size``
    when given)."""

    def __init__(self, dataset: Any, size: int | None, name: str) -> None:
        self.dataset, self.size, self.name = dataset, size or 0, name
        self.labels = np.asarray(_labels_of(dataset), dtype=np.int64)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        t = as_uint8_chw(image, f"{self.name} item {i}")
        if self.standard:
            t = self._standard(t)
        elif self.size and tuple(t.shape[1:]) != (self.size, self.size):
            t = TF.center_crop(TF.resize(t, [self.size], antialias=True), [self.size, self.size])
        return t, int(label)


def _labels_of(dataset: Any) -> list[int]:
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def as_uint8_chw(image: Any, what: str):
    """A PIL image, array or tensor as a uint8 tensor (C, H, W)."""

    if isinstance(image, Image.Image):
        image = np.array(image if image.mode in ("L", "RGB") else rgb(image))   # writable: torch takes it
    t = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    if t.dtype != torch.uint8:
        if t.is_floating_point() and t.numel() and float(t.max()) <= 1.0:
            t = (t * 255).round()
        t = t.clamp(0, 255).to(torch.uint8)
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 3 and t.shape[0] not in (1, 3) and t.shape[2] in (1, 3):
        t = t.permute(2, 0, 1)
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise DataError(f"{what}: expected an image (H, W), (C, H, W) or (H, W, C) with 1 or 3 channels, got shape "
                          f"{tuple(t.shape)}")
    return t.contiguous()


def rgb(image):
    """A PIL image as 8-bit RGB. 16- and 32-bit integer greys (16-bit PNGs, TIFFs) are scaled to 8 bits by their
    type's range (PIL's own conversion clips them, turning most of a 16-bit image white)."""

    if image.mode.startswith("I"):   # I;16, I;16B, I;16L, I (32-bit; a 16-bit PNG may open as it)
        values = np.asarray(image).astype(np.int64)
        bits = 8 if values.size and int(values.max()) <= 255 else 16 if int(values.max()) <= 65535 else 32
        image = Image.fromarray((np.clip(values, 0, None) >> (bits - 8)).astype(np.uint8), "L")
    return image.convert("RGB")


def open_image(path: str):
    try:
        with Image.open(path) as im:
            return rgb(im)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"{path}: cannot read this image ({type(err).__name__}: {err}); delete or replace it"
                          ) from None


def fit(image, size: int):
    """Shorter side resized to ``size`` (bilinear, antialiased), then the centre ``size`` x ``size`` crop."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


# -- a streamed dataset ------------------------------------------------------------------------------------

class Described:
    """The one-line description both dataset forms (arrays, items) print: sizes, shape, classes, source."""

    name: str
    num_classes: int
    source: str
    n_train: int
    n_test: int
    n_val: int
    input_shape: tuple[int, int, int]

    def describe(self) -> str:
        held = f" / {self.n_val} validation" if self.n_val else ""
        return (f"{self.name}: {self.n_train} train{held} / {self.n_test} test, "
                f"{'x'.join(map(str, self.input_shape))}, {self.num_classes} classes ({self.source})")


@dataclass
class Dataset(Described):
    """A dataset held in memory: uint8 images (N, C, H, W), int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]   # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    source: str = ""
    info: dict = field(default_factory=dict)
    val_x: np.ndarray | None = None   # held out of the training split by --val-split
    val_y: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def n_train(self) -> int:  # type: ignore[override]
        return len(self.train_x)

    @property
    def n_test(self) -> int:  # type: ignore[override]
        return len(self.test_x)

    @property
    def n_val(self) -> int:  # type: ignore[override]
        return len(self.val_x) if self.val_x is not None else 0


@dataclass
class StreamData(Described):
    """A dataset read per example (:class:`Items`) rather than held as arrays; the streaming data path's input.
    Same descriptive surface as :class:`bench.data.Dataset`."""

    name: str
    train: Items
    test: Items
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    source: str = ""
    info: dict = field(default_factory=dict)
    val: Items | None = None   # held out of the training split by --val-split

    @property
    def n_train(self) -> int:  # type: ignore[override]
        return len(self.train)

    @property
    def n_test(self) -> int:  # type: ignore[override]
        return len(self.test)

    @property
    def n_val(self) -> int:  # type: ignore[override]
        return len(self.val) if self.val is not None else 0
