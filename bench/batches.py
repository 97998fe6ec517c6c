"""The two data paths behind one interface: how the trainer gets its uint8 batches onto the device.

- **memory** (:class:`MemoryBatches`): the whole dataset is one uint8 tensor on the training device; an epoch's
  batches are slices of a permutation of it. No per-example Python, no worker process.
- **stream** (:class:`StreamBatches`): examples are read per batch by a torch ``DataLoader`` (worker processes,
  persistent across epochs, pinned memory on CUDA) from a :class:`bench.sources.Items`: image files decoded on
  the fly, a user's torch dataset, or arrays.

Which one runs: ``bench.data.load_dataset`` returns arrays (memory) or items (stream); with ``--data-path auto``
arrays for the built-in datasets and for any source whose decoded uint8 splits fit in
``bench.data.MEMORY_LIMIT_BYTES``.

Both take the epoch's permutation from the trainer (drawn from the trial's generator) and batch it the same way,
and both hand uint8 batches to the same normalisation and the same on-device augmentation (``flip``,
``crop-flip``), so that on CPU the same trial gives the same metrics on either path (tested). ``standard``
augmentation is the exception: on the streaming path it runs per image in the workers (``bench.recipe``), each
batch's crops drawn from a seed of (trial seed, epoch, batch number), so the same trial gives the same metrics
whatever the number of workers and when continued from a checkpoint.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from .datatypes import Dataset, Items, StreamData
from .sources import _stack


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor over ``array`` without copying on CPU (arrays from Ray's object store are read-only;
    the trainer only reads them), copied once onto another device."""
    if not array.flags.writeable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(array)
    else:
        t = torch.from_numpy(array)
    return t.to(device)


class _Normalise:
    """(x / 255 - mean) / std per channel, on the device, for uint8 (or float [0, 255]) batches."""

    def __init__(self, mean, std, device: torch.device) -> None:
        c = len(mean)
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device))).view(1, c, 1, 1)
        self.shift = (-torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, c, 1, 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)


class MemoryBatches(_Normalise):
    """The memory path (module docstring)."""

    path = "memory"

    def __init__(self, data: Dataset, device: torch.device) -> None:
        super().__init__(data.mean, data.std, device)
        self.device = device
        self.train_x = as_tensor(data.train_x, device)
        self.train_y = as_tensor(data.train_y, device)
        self.test_x = as_tensor(data.test_x, device)
        self.test_y = as_tensor(data.test_y, device)
        self.val_x = as_tensor(data.val_x, device) if data.val_x is not None else None
        self.val_y = as_tensor(data.val_y, device) if data.val_y is not None else None
        self.n = len(self.train_x)
        self.input_shape = tuple(self.train_x.shape[1:])

    def epoch(self, perm: torch.Tensor, batch_size: int, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 training batches in the order of ``perm`` (``epoch`` matters only to the streaming path)."""
        perm = perm.to(self.device)
        for i in range(0, self.n, batch_size):
            idx = perm[i:i + batch_size]
            yield self.train_x[idx], self.train_y[idx]

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        return self.train_x[idx], self.train_y[idx]

    def test(self, batch_size: int, split: str = "test"):
        """Normalised batches of the test split (or of the validation split held out of training)."""
        x, y = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        assert x is not None and y is not None, "no validation split (--val-split)"
        for i in range(0, len(x), batch_size):
            yield self.normalise(x[i:i + batch_size]), y[i:i + batch_size]

    @property
    def has_val(self) -> bool:
        return self.val_x is not None

    def close(self) -> None:
        pass


class _Plan:
    """The batch sampler of the streaming loader: the index lists of the current pass, set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Seeded(list):
    """A training batch's indices with the seed its per-image augmentation draws from. The seed is a function of
    the trial seed, the epoch and the batch's place in it, so the crops do not depend on which worker reads the
    batch, on the number of workers, or on whether the trial was continued from a checkpoint."""

    def __init__(self, indices: list[int], seed: int) -> None:
        super().__init__(indices)
        self.seed = seed


class _Joined(torch.utils.data.Dataset):
    """Splits one after another in one index space (train items at [0, n_train), then test, then validation):
    one loader and one set of workers serve training and evaluation."""

    def __init__(self, *parts: Items) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def _where(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return k, i - self.starts[k]

    def __getitem__(self, i: int):
        k, j = self._where(i)
        return self.parts[k][j]

    def __getitems__(self, idx: list[int]):
        seed = getattr(idx, "seed", None)
        if seed is None:
            return self._fetch(idx)
        with torch.random.fork_rng(devices=[]):   # the process's own stream is left as it was
            torch.manual_seed(seed)
            return self._fetch(idx)

    def _fetch(self, idx: list[int]):
        k, _ = self._where(idx[0])
        part = self.parts[k]
        if hasattr(part, "__getitems__") and all(self.starts[k] <= i < self.starts[k + 1] for i in idx):
            return part.__getitems__([i - self.starts[k] for i in idx])
        return [self[i] for i in idx]


class StreamBatches(_Normalise):
    """The streaming path (module docstring); ``standard`` turns on per-image RandomResizedCrop + flip of the
    training examples in the workers, drawn from seeds derived from ``seed``, the epoch and the batch."""

    path = "stream"

    def __init__(self, data: StreamData, device: torch.device, workers: int = 2, standard: bool = False,
                 seed: int = 0) -> None:

        super().__init__(data.mean, data.std, device)
        self.device = device
        self.data = data
        self.n = data.n_train
        self.input_shape = tuple(data.input_shape)
        self.standard, self.seed = standard, seed
        train = data.train.augmented(self.input_shape[-1]) if standard else data.train
        self.plan = _Plan()
        cuda = device.type == "cuda"
        parts = (train, data.test) + ((data.val,) if data.val is not None else ())
        self.loader = DataLoader(_Joined(*parts), batch_sampler=self.plan, num_workers=workers,
                                 collate_fn=_stack, pin_memory=cuda, persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers > 0 else None,
                                 generator=torch.Generator().manual_seed(seed))

    def _pass(self, batches: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.plan.batches = batches
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def epoch(self, perm: torch.Tensor, batch_size: int, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = perm.tolist()
        batches = [order[i:i + batch_size] for i in range(0, self.n, batch_size)]
        if self.standard:   # each batch's crops and flips drawn from its own seed (see _Seeded)
            seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(len(batches), np.uint64)
            batches = [_Seeded(b, int(s) >> 1) for b, s in zip(batches, seeds)]
        return self._pass(batches)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _stack([self.data.train[i] for i in idx.tolist()])
        return x.to(self.device), y.to(self.device)

    def test(self, batch_size: int, split: str = "test"):
        """Normalised batches of the test split (or of the validation split held out of training)."""
        start, m = (self.n + self.data.n_test, len(self.data.val)) if split == "val" and self.data.val is not None \
            else (self.n, self.data.n_test)
        for x, y in self._pass([list(range(start + i, start + min(i + batch_size, m))) for i in range(0, m, batch_size)]):
            yield self.normalise(x), y

    @property
    def has_val(self) -> bool:
        return self.data.val is not None

    def close(self) -> None:
        """Stop the persistent workers now rather than when the loader is collected."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


def make_batches(data: Dataset | StreamData, device: torch.device, augment: str, workers: int = 2, seed: int = 0
                 ) -> tuple[MemoryBatches | StreamBatches, str]:
    """The data path for ``data`` and the augmentation left to run on the device (``standard`` runs in the
    streaming path's workers)."""
    if isinstance(data, Dataset):
        return MemoryBatches(data, device), augment
    standard = augment == "standard"
    return StreamBatches(data, device, workers, standard, seed), "none" if standard else augment


__all__ = ["MemoryBatches", "StreamBatches", "as_tensor", "make_batches"]
