"""``bench perf``: the harness's own speed, as ratios measured side by side in one run.

1. Trainer throughput (images/s over an epoch, :func:`bench.trainer.train` itself running method ``none``,
   the best of ``PERF_ROUNDS`` epochs) against a reference loop written the usual way, a torchvision dataset read
   through a DataLoader (``REFERENCE_LOOP`` below), with the same model, optimizer and batch size. The
   throughput with ``l1l2`` and its zeroing rule is printed beside it; what penalties cost is item 3.
2. Trainer throughput against the pure compute limit: forward, backward and optimizer step of the same model
   on one pre-made batch, repeated (no data handling at all; blocks of half an epoch). Trainer epochs and
   compute blocks alternate, ``PERF_ROUNDS`` of each, so that a shared machine's drift reaches both; the ratio
   is best over best, printed with the range of the per-round ratios (the measurement's own spread: on a
   shared 2-core machine single rounds range over +-10 %, so only a ratio below that range is a regression).
3. Penalty overhead: the trainer's time per step with each registered method against ``none``
   (one-off end-of-epoch hooks, NISP's scoring and HGSR's loss-based selection, reported separately).
4. The per-epoch overhead of zeroing and of the filter / parameter / FLOP metrics, as a fraction of the
   epoch; and ``flops_utilization``, the trainer's training FLOP/s over the FLOP/s of a large float32
   matrix multiply measured in the same run.
5. The data paths (:func:`data_paths`): the streaming path (DataLoader, 2 workers) against the memory path,
   trainer throughput for ResNet-20 on CIFAR-sized data and for LeNet on Fashion-MNIST-sized data, with the
   loader's own throughput (no training) that bounds the stream; and what ``crop-flip`` on the device costs
   as a fraction of a ResNet-20 epoch.

The workloads are LeNet on Fashion-MNIST (the real files when found, else generated data of the same shape)
and VGG11 on CIFAR-shaped generated data (torchvision's ``FakeData`` for the reference loop). Training
FLOPs are counted by ``FlopCounterMode`` over one forward and backward pass.
"""
from __future__ import annotations

import gzip
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets
from torchvision import transforms as T

from methods import MethodError, get_method, list_methods

from .batches import StreamBatches
from .config import TrainSettings, TrialConfig
from .data import DEBIAN_FASHION_MNIST, as_stream, load_dataset, make_synthetic
from .datatypes import DataError, Dataset, StreamData
from .models import build_model
from .protocols import DEFAULT_PROTOCOL, get_protocol
from .recipe import Augment
from .trainer import resolve_device, train

PERF_ROUNDS = 3   # alternating trainer epochs and compute blocks (item 2)

REFERENCE_LOOP = '''
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms as T

    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    dataset = datasets.FashionMNIST(root, train=True, transform=tf)      # FakeData(...) for VGG11
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=W, pin_memory=on_cuda)
    model.train()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
'''
__doc__ += "\nThe reference loop (W = 0 on CPU, 4 on CUDA):\n" + REFERENCE_LOOP


@dataclass(frozen=True)
class Workload:
    model: str
    dataset: str            # what the trainer reads: fashion-mnist or synthetic
    input_shape: tuple[int, int, int]
    train_examples: int     # examples per measured epoch
    penalty_examples: int   # examples per epoch of each method's penalty measurement
    # one-off hooks (NISP's scoring, HGSR's selection: one forward pass over the samples per filter) see this
    # many samples; None: the methods' defaults. VGG11's 4224 filters would make HGSR's selection take an
    # hour on a CPU, so there they are cut short and not reported
    hook_samples: int | None = None


def workloads(quick: bool, gpu: bool = False) -> list[Workload]:
    """LeNet on Fashion-MNIST and VGG11 on CIFAR-shaped data. On a GPU the epochs are the real ones (60000 and
    50000 images: the GPU variant reports their epoch times); on a CPU VGG11's epoch is cut to what runs in
    about a minute."""
    if gpu:
        if quick:
            return [Workload("lenet5", "fashion-mnist", (1, 28, 28), 20000, 6400),
                    Workload("vgg11", "synthetic", (3, 32, 32), 10000, 2560, 64)]
        return [Workload("lenet5", "fashion-mnist", (1, 28, 28), 60000, 19200),
                Workload("vgg11", "synthetic", (3, 32, 32), 50000, 6400, 64)]
    if quick:
        return [Workload("lenet5", "fashion-mnist", (1, 28, 28), 20000, 6400),
                Workload("vgg11", "synthetic", (3, 32, 32), 512, 256, 2)]
    return [Workload("lenet5", "fashion-mnist", (1, 28, 28), 60000, 12800),
            Workload("vgg11", "synthetic", (3, 32, 32), 2048, 640, 2)]   # 10 steps per penalty epoch


# -- the three loops ---------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Format:
    """Numerics of the trainer and compute loops: bfloat16 autocast and channels-last layout (for GPUs)."""

    precision: str = "fp32"
    channels_last: bool = False


class _Stop(Exception):
    """Ends a measured trial after the epochs that are timed (a pruning method's fine-tuning is not)."""


def trainer_epoch(data: Dataset | StreamData, model: str, method: str, device: torch.device, epochs: int = 1,
                  batch_size: int = 64, options: dict[str, Any] | None = None, fmt: Format = Format(),
                  stop_after: int | None = None, **settings: Any) -> list[dict[str, float]]:
    """The harness's trainer on ``data`` (one trial, ``method`` with its default options and the first value
    of its grid, updated by ``options``): each epoch's metrics; ``stop_after``: only that many epochs run."""
    cls = get_method(method)
    options = {**({cls.sweep_axis: cls.default_grid[0]} if cls.sweep_axis else {}), **(options or {})}
    settings = TrainSettings(model=model, dataset=data.name, epochs=epochs, batch_size=batch_size, limit_test=1000,
                             device=str(device), precision=fmt.precision, channels_last=fmt.channels_last,
                             **settings)
    trial = TrialConfig(method, options, cls.default_zeroing, 0, settings)
    trial.build_method().check_budget(epochs)
    rows: list[dict[str, float]] = []

    def report(epoch: int, values: dict[str, float]) -> None:
        rows.append({**values, "rss_mb": _rss_mb()})
        if stop_after is not None and epoch >= stop_after:
            raise _Stop
    try:
        train(trial, data, report)
    except _Stop:
        pass
    return rows


def reference_epoch(loader, model_name: str, input_shape, device: torch.device) -> tuple[float, int]:
    """The usual loop (REFERENCE_LOOP) over one epoch of ``loader``: (seconds, images)."""
    torch.manual_seed(0)
    model = build_model(model_name, input_shape, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    seen = 0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    _sync(device)
    return time.perf_counter() - start, seen


def compute_limit(data: Dataset, model_name: str, device: torch.device, steps: int,
                  batch_size: int = 64, blocks: int = 1, fmt: Format = Format()) -> tuple[float, int, float]:
    """Forward, backward and step on one pre-made batch (the first ``batch_size`` training examples,
    normalised), ``steps`` times, the fastest of ``blocks`` such runs: (seconds, images, training FLOPs per
    image counted by FlopCounterMode)."""

    torch.manual_seed(0)
    input_shape = data.input_shape
    model = build_model(model_name, input_shape, data.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = ((torch.from_numpy(np.array(data.train_x[:batch_size])).float() / 255 - mean) / std).to(device)
    y = torch.from_numpy(np.array(data.train_y[:batch_size])).long().to(device)

    if fmt.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fmt.precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    flops_per_image = counter.get_total_flops() / batch_size
    for _ in range(3):  # warm-up
        step()
    _sync(device)
    best = math.inf
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, steps * batch_size, flops_per_image


def matmul_flops(device: torch.device, n: int = 4096, repeats: int = 3, blocks: int = 3) -> float:
    """FLOP/s of a large float32 matrix multiply, the best of ``blocks`` timings (the machine's practical
    single-precision limit)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    best = 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - start))
    return best


# -- data for the reference loop ---------------------------------------------------------------------------

def reference_loader(work: Workload, data: Dataset, device: torch.device, folder: Path):
    """A torchvision dataset and DataLoader as a user would write them, over the same examples."""

    tf = T.Compose([T.ToTensor(), T.Normalize(data.mean, data.std)])
    if work.dataset == "fashion-mnist" and data.name == "fashion-mnist":
        raw = folder / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"):
            source = _find_idx(name)
            with (gzip.open(source) if source.suffix == ".gz" else open(source, "rb")) as f, \
                    open(raw / name, "wb") as out:
                shutil.copyfileobj(f, out)
        dataset = datasets.FashionMNIST(str(folder), train=True, transform=tf, download=False)
    else:
        dataset = datasets.FakeData(size=work.train_examples, image_size=work.input_shape, num_classes=10,
                                    transform=tf, random_offset=0)
    if len(dataset) > work.train_examples:
        dataset = Subset(dataset, range(work.train_examples))
    cuda = device.type == "cuda"
    return DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4 if cuda else 0, pin_memory=cuda,
                      persistent_workers=False)


def _find_idx(name: str) -> Path:
    for candidate in (DEBIAN_FASHION_MNIST / name, DEBIAN_FASHION_MNIST / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST file {name} not found in {DEBIAN_FASHION_MNIST}")


def workload_data(work: Workload) -> Dataset:
    """The trainer's data: real Fashion-MNIST when it is on this machine, else generated of the same shape."""
    if work.dataset == "fashion-mnist":
        try:
            return load_dataset("fashion-mnist", limit_train=work.train_examples, limit_test=1000, download=False)
        except DataError:
            pass
    return make_synthetic(work.input_shape, n_train=work.train_examples, n_test=1000)


# -- the whole measurement ---------------------------------------------------------------------------------

def _rss_mb() -> float:
    """Current resident set size (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_perf(quick: bool = False, device: str = "auto", threads: int | None = None,
             log: Callable[[str], None] = print, only: list[Workload] | None = None, fmt: Format = Format(),
             matmul_n: int = 4096) -> dict[str, Any]:
    """Measure everything; returns the JSON object ``bench perf --json`` prints. ``only`` replaces the
    standard workloads (the first one is the LeNet trial whose memory is reported). ``fmt`` applies to the
    trainer and the compute loop (the reference loop stays float32, as users write it)."""
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                           "torch_threads": torch.get_num_threads(), "quick": quick, "workloads": {},
                           "precision": fmt.precision, "channels_last": fmt.channels_last}
    matmul = matmul_flops(dev, matmul_n)
    out["matmul_flops_per_s"] = matmul
    log(f"device {out['device']}, {out['torch_threads']} torch threads; float32 matmul {matmul_n}: "
        f"{matmul / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as folder:
        for i, work in enumerate(only or workloads(quick, gpu=dev.type == "cuda")):
            data = workload_data(work)
            log(f"\n{work.model} on {data.name} ({data.source}): {work.train_examples} images per epoch, batch 64")
            rss_before = _rss_mb()
            rows = trainer_epoch(data, work.model, "l1l2", dev, epochs=2, fmt=fmt)   # zeroing, metrics, memory
            if i == 0:  # the first workload: a LeNet trial, peak and growth of resident memory
                out["peak_rss_mb"] = _peak_rss_mb()
                out["dataset_mb"] = (data.train_x.nbytes + data.test_x.nbytes) / 2 ** 20
                out["rss_before_trial_mb"] = rss_before
                out["rss_growth_epoch2_mb"] = rows[1]["rss_mb"] - rows[0]["rss_mb"]
            # throughput: the trainer doing what the reference loops do (no penalty; the penalties' cost is
            # measured on its own below) against the compute loop, in alternating rounds (one trainer epoch, one
            # compute block of half an epoch): a shared machine's drift reaches both alike. Each is its best
            # round; the per-round ratios give the measurement's own spread.
            loader = reference_loader(work, data, dev, Path(folder))
            ref_s, ref_n = reference_epoch(loader, work.model, work.input_shape, dev)
            ref_ips = ref_n / ref_s
            steps = max(10, work.train_examples // 64 // (2 if dev.type == "cpu" else 1))
            plain, computes = [], []
            for _ in range(PERF_ROUNDS):
                plain += trainer_epoch(data, work.model, "none", dev, epochs=1, fmt=fmt)
                comp_s, comp_n, flops_per_image = compute_limit(data, work.model, dev, steps, fmt=fmt)
                computes.append(comp_n / comp_s)
            rounds = [work.train_examples / r["steps_time_s"] / c for r, c in zip(plain, computes)]
            trainer_ips = work.train_examples / min(r["steps_time_s"] for r in plain)
            l1l2_ips = work.train_examples / min(r["steps_time_s"] for r in rows)
            comp_ips = max(computes)
            epoch = rows[0]
            w = {"trainer_images_per_s": trainer_ips, "trainer_l1l2_images_per_s": l1l2_ips,
                 "reference_images_per_s": ref_ips,
                 "compute_limit_images_per_s": comp_ips, "reference_ratio": trainer_ips / ref_ips,
                 "compute_limit_ratio": trainer_ips / comp_ips, "compute_limit_ratio_rounds": rounds,
                 "train_flops_per_image": flops_per_image,
                 "flops_utilization": trainer_ips * flops_per_image / matmul,
                 "compute_limit_flops_utilization": comp_ips * flops_per_image / matmul,
                 "epoch_s": min(r["epoch_time_s"] for r in plain),
                 "zeroing_metrics_fraction": epoch["zeroing_metrics_time_s"] / epoch["epoch_time_s"]}
            log(f"  trainer      {trainer_ips:9.0f} img/s   (bench's trainer, method none; with l1l2 and its "
                f"zeroing {l1l2_ips:.0f} img/s)")
            log(f"  epoch        {w['epoch_s']:9.2f} s       ({work.train_examples} images, method none, "
                "evaluation apart)")
            log(f"  reference    {ref_ips:9.0f} img/s   (torchvision dataset + DataLoader)   "
                f"trainer / reference = {w['reference_ratio']:.2f}")
            log(f"  compute      {comp_ips:9.0f} img/s   (one pre-made batch, repeated)        "
                f"trainer / compute   = {w['compute_limit_ratio']:.2f}   (rounds {min(rounds):.2f}-{max(rounds):.2f})")
            log(f"  FLOPs        {flops_per_image / 1e6:.2f} MFLOP per training image: trainer at "
                f"{w['flops_utilization']:.1%} of the matmul FLOP/s (compute loop "
                f"{w['compute_limit_flops_utilization']:.1%})")
            log(f"  zeroing + metrics {epoch['zeroing_metrics_time_s'] * 1e3:.1f} ms per epoch = "
                f"{w['zeroing_metrics_fraction']:.2%} of the epoch ({epoch['epoch_time_s']:.2f} s)")
            w["penalty_overhead"], w["method_hook_s"], w["penalty_step_s"] = penalty_overheads(
                work, data, dev, log, fmt, rounds=1 if quick else 2)
            out["workloads"][work.model] = w
    sizes = {"resnet20": 256, "lenet5": 512} if only else (
        {"resnet20": 1024, "lenet5": 10000} if quick and dev.type == "cpu" else {"resnet20": 4096, "lenet5": 30000})
    out["data_paths"] = data_paths(dev, log, fmt, sizes)
    lenet = next(iter(out["workloads"].values()))
    out.update({k: lenet[k] for k in ("reference_ratio", "compute_limit_ratio", "flops_utilization",
                                      "zeroing_metrics_fraction")})
    out["penalty_overhead"] = {m: max(w["penalty_overhead"][m] for w in out["workloads"].values())
                               for m in lenet["penalty_overhead"]}  # the worse of the two models
    log(f"\npeak RSS {out['peak_rss_mb']:.0f} MB after a LeNet trial ({out['rss_before_trial_mb']:.0f} MB before "
        f"it; dataset {out['dataset_mb']:.0f} MB); resident memory grew {out['rss_growth_epoch2_mb']:+.1f} MB from "
        "epoch 1 to epoch 2 (the dataset is held once)")
    return out


def data_paths(device: torch.device, log: Callable[[str], None], fmt: Format, sizes: dict[str, int]
               ) -> dict[str, Any]:
    """Item 5 of the module docstring: per model, memory and stream trainer throughput (method none, the faster
    of two epochs; the stream with 2 workers over the same arrays), the loader alone, and for ResNet-20 the
    on-device crop-flip time per epoch over the epoch's step time."""

    out: dict[str, Any] = {}
    log("\ndata paths (method none, batch 64; stream = DataLoader with 2 workers over the same examples)")
    for model, shape in (("resnet20", (3, 32, 32)), ("lenet5", (1, 28, 28))):
        n = sizes[model]
        data = make_synthetic(shape, n_train=n, n_test=256)
        memory = trainer_epoch(data, model, "none", device, epochs=2, fmt=fmt)
        stream = trainer_epoch(as_stream(data), model, "none", device, epochs=2, fmt=fmt, data_path="stream",
                               loader_workers=2)
        memory_ips = n / min(r["steps_time_s"] for r in memory)
        stream_ips = n / min(r["steps_time_s"] for r in stream)
        batches = StreamBatches(as_stream(data), device, workers=2)
        try:
            loader_s = []
            for _ in range(2):
                start = time.perf_counter()
                for x, _y in batches.epoch(torch.randperm(n), 64):
                    pass
                _sync(device)
                loader_s.append(time.perf_counter() - start)
        finally:
            batches.close()
        w = {"images": n, "memory_images_per_s": memory_ips, "stream_images_per_s": stream_ips,
             "stream_ratio": stream_ips / memory_ips, "loader_images_per_s": n / min(loader_s)}
        log(f"  {model:<9} memory {memory_ips:8.0f} img/s   stream {stream_ips:8.0f} img/s   stream / memory = "
            f"{w['stream_ratio']:.2f}   (the loader alone: {w['loader_images_per_s']:.0f} img/s, {n} images)")
        if model == "resnet20":
            augment = Augment("crop-flip", torch.Generator().manual_seed(0))
            x = torch.from_numpy(data.train_x).to(device)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                for i in range(0, n, 64):
                    augment(x[i:i + 64])
                _sync(device)
                times.append(time.perf_counter() - start)
            w["crop_flip_s"] = min(times)
            w["crop_flip_fraction"] = min(times) / min(r["steps_time_s"] for r in memory)
            log(f"  crop-flip on the device: {w['crop_flip_s'] * 1e3:.1f} ms per epoch of {n} images = "
                f"{w['crop_flip_fraction']:.2%} of a ResNet-20 epoch's steps")
        out[model] = w
    return out


def penalty_overheads(work: Workload, data: Dataset, device: torch.device, log: Callable[[str], None],
                      fmt: Format = Format(), rounds: int = 2
                      ) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
    """Time per training step of every registered method with a penalty against ``none``, each method's end-of-epoch hook
    time (NISP's scoring, HGSR's selection), reported apart, and the epochs' step times the ratios come from
    (method -> {"method": its fastest, "none": the fastest paired none epoch}).

    Paired: each method's epoch runs right after an epoch of ``none`` on the same model, so a drift in the
    machine's speed hits both sides of a ratio alike; ``rounds`` rounds in alternating order, the fastest
    epoch of each side. A method that prunes and fine-tunes is timed on an epoch before its cut.
    """
    part = Dataset(data.name, data.train_x[:work.penalty_examples], data.train_y[:work.penalty_examples],
                   data.test_x[:256], data.test_y[:256], data.num_classes, data.mean, data.std, data.source)
    # the criteria (prune-to-target only) add nothing per step: no penalty, no hook before their pruning step
    default = get_protocol(DEFAULT_PROTOCOL)
    methods = [m for m in list_methods() if m != "none" and default.runs(get_method(m))]
    model_of = {m: _model_for(m, work) for m in methods}   # slimming needs BatchNorm: LeNet's BN variant
    trainer_epoch(part, work.model, "none", device, epochs=1, fmt=fmt)  # warm-up: allocator, kernels, caches
    timed: dict[str, list[float]] = {m: [] for m in methods}
    base: dict[str, list[float]] = {m: [] for m in methods}
    hooks: dict[str, float] = {}
    for r in range(rounds):
        for method in methods if r % 2 == 0 else methods[::-1]:
            base[method] += [row["steps_time_s"] for row in
                             trainer_epoch(part, model_of[method], "none", device, epochs=1, fmt=fmt)]
            options, epochs = {}, 1
            fields = get_method(method).Hparams.__dataclass_fields__
            if "finetune_epochs" in fields:   # epoch 1 trains with the penalty and cuts; its fine-tuning is not run
                options, epochs = {"finetune_epochs": 1}, 2
            if "samples" in fields and work.hook_samples is not None:
                options["samples"] = work.hook_samples
            rows = trainer_epoch(part, model_of[method], method, device, epochs=epochs, options=options, fmt=fmt,
                                 stop_after=1)
            timed[method].append(rows[0]["steps_time_s"])
            hooks[method] = max([hooks.get(method, 0.0)] + [row["method_hook_time_s"] for row in rows])
    steps = {m: {"method": min(timed[m]), "none": min(base[m])} for m in methods}
    ratios = {"none": 1.0, **{m: s["method"] / s["none"] for m, s in steps.items()}}
    log("  penalty overhead (time per step / none): " + ", ".join(
        f"{m} {r:.3f}" + (f" (on {model_of[m]})" if model_of.get(m, work.model) != work.model else "")
        for m, r in ratios.items()))
    slow = {m: h for m, h in hooks.items() if h > 0.01}
    if work.hook_samples is not None:
        log(f"  one-off end-of-epoch hooks run on {work.hook_samples} samples here: not reported")
        hooks = {}
    elif slow:
        log("  one-off end-of-epoch hooks: " + ", ".join(f"{m} {h:.2f} s" for m, h in slow.items()))
    return ratios, hooks, steps


def _model_for(method: str, work: Workload) -> str:
    """The workload's model, or its BatchNorm variant when the method refuses it (``slimming`` on LeNet)."""
    try:
        get_method(method)().check_model(build_model(work.model, work.input_shape, 10))
        return work.model
    except MethodError:
        return f"{work.model}-bn"


__all__ = ["Format", "REFERENCE_LOOP", "run_perf", "compute_limit", "matmul_flops", "reference_epoch", "trainer_epoch"]
