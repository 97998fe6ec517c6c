"""Frozen configuration: defaults < config file < command line.

A sweep (:class:`SweepConfig`) expands into trials (:class:`TrialConfig`), one per method x swept value x seed.
Everything is validated here, before any data is loaded or any trial starts: unknown methods, models or datasets
(listing the valid names), bad method options, zeroing specs that do not parse, epochs < 1, and so on. Each
trial's resolved config is saved with its run as ``config.json``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import protocols as P
from . import settings as S
from .protocols import DEFAULT_PROTOCOL, get_protocol
from .settings import (PRECISIONS, RUNTIME, SWEEP, TRIAL, WHAT, WHERE, ConfigError, check_experiment_name,  # noqa: F401
                       redact, setting)
from .targets import Search, parse_targets
from .usercode import display_name, file_digest, source_key


def _checked(obj: Any) -> None:
    """Every declared setting of ``obj`` against its type and range (bench/settings.py)."""
    try:
        S.check_fields(obj)
    except S.SettingError as err:
        raise ConfigError(str(err)) from None


@dataclass(frozen=True)
class TrainSettings:
    """What every trial of a sweep shares: model, data and the training budget."""

    model: str = setting("lenet5", "model: a registered name (see `bench list`), torchvision:NAME, timm:NAME, "
                         "FILE.py:CALLABLE or MODULE:CALLABLE", role=TRIAL)
    dataset: str = setting("fashion-mnist", "dataset (see `bench list`)", role=TRIAL)
    data_dir: str | None = setting(None, "folder searched first for dataset files (then $BENCH_DATA_DIR, "
                                   "~/.cache/bench, and Debian's /usr/share/datasets/fashion-mnist)", role=RUNTIME)
    download: bool | None = setting(None, "never download a missing dataset (also BENCH_NO_DOWNLOAD=1)",
                                    role=RUNTIME, flag="--no-download", shown_default="downloads allowed",
                                    cli={"action": "store_const", "const": False})
    epochs: int = setting(10, "training epochs per trial (the same budget for every method)", role=TRIAL, min=1)
    protocol: str = setting(DEFAULT_PROTOCOL, "how a trial trains and prunes (bench/protocols/; `bench list` lists "
                            "them with their settings): regularize, each method's penalty with its own zeroing or "
                            "pruning, strengths swept or searched for the --target-* values; prune-to-target, per "
                            "(method, target, seed) --sparse-epochs with the penalty, one global pruning step to the "
                            "target by the method's importance, then fine-tuning; iterative, the same in "
                            "--prune-steps steps (docs/methods.md); a comma list of those that prune to a target is a "
                            "study axis, trials paired by seed across them", role=TRIAL, group=WHAT,
                            key_default=DEFAULT_PROTOCOL)
    sparse_epochs: int | None = setting(None, "epochs of training with the method's penalty before the (last) "
                                        "pruning step (the rest fine-tune)", role=TRIAL, group=WHAT, min=1,
                                        key_default=None, shown_default="half of the epochs", cli={"metavar": "E"})
    max_layer_ratio: float = setting(0.9, "a trial's pruning takes at most this fraction of any unit's "
                                     "groups (all steps together)", role=TRIAL, group=WHAT, open_min=0, open_max=1,
                                     key_default=0.9, cli={"metavar": "R"})
    finetune: str = setting("standard", "the fine-tuning's learning rate: standard, the schedule runs on over the "
                            "whole budget; rewind, it replays the schedule from its start over the fine-tuning "
                            "epochs (Renda et al. 2020's learning-rate rewinding); standard,rewind: both, a study axis",
                            role=TRIAL, group=WHAT,
                            key_default="standard")
    prune_steps: int | None = setting(None, "pruning steps over the sparse epochs, the k-th meeting k/N of the "
                                      "target (at most one per sparse epoch)", role=TRIAL, group=WHAT, min=1,
                                      key_default=None, shown_default="5, or the sparse epochs if fewer",
                                      cli={"metavar": "N"})
    batch_size: int = setting(64, "training batch size", role=TRIAL, min=1)
    lr: float = setting(0.01, "learning rate (the schedule's base rate)", role=TRIAL, open_min=0,
                        label="learning rate")
    momentum: float = setting(0.9, "SGD momentum", role=TRIAL, min=0, open_max=1)
    weight_decay: float = setting(5e-4, "weight decay, the same for every method (Caffe's LeNet solver)",
                                  role=TRIAL, min=0)
    optimizer: str = setting("sgd", "sgd (momentum, weight decay) or adamw (decoupled weight decay)", role=TRIAL,
                             choices=("sgd", "adamw"), key_default="sgd")
    schedule: str = setting("constant", "learning-rate schedule per epoch: constant, cosine, onecycle, or "
                            "step:E1,E2[,...][:GAMMA] (x GAMMA, default 0.1, after each of those epochs)",
                            role=TRIAL, key_default="constant", cli={"metavar": "SCHEDULE"})
    warmup_epochs: int = setting(0, "linear warm-up: epoch e <= W runs at e / (W + 1) of the scheduled rate",
                                 role=TRIAL, min=0, key_default=0, cli={"metavar": "W"})
    label_smoothing: float = setting(0.0, "label smoothing of the training cross-entropy", role=TRIAL, min=0,
                                     open_max=1, key_default=0.0)
    nesterov: bool = setting(False, "Nesterov momentum (sgd)", role=TRIAL, key_default=False)
    augment: str = setting("auto", "training augmentation: none, flip, crop-flip (pad 4, random crop, flip: the CIFAR "
                           "standard) or standard (RandomResizedCrop + flip)", role=TRIAL,
                           choices=("auto", "none", "flip", "crop-flip", "standard"), key_default="none",
                           shown_default="auto: none for the built-in datasets, standard for any other")
    limit_train: int | None = setting(None, "use only the first N training examples (quick runs)", role=TRIAL,
                                      min=1, shown_default="all", cli={"metavar": "N"}, label="limit-train")
    val_split: float | None = setting(None, "hold out this fraction of the training split (seeded, stratified by "
                                      "class) as a validation split: its accuracy is logged per epoch, and the "
                                      "report makes its choices on it instead of the test accuracy", role=TRIAL,
                                      open_min=0, max=0.5, key_default=None, shown_default="none",
                                      cli={"metavar": "F"})
    limit_test: int | None = setting(None, "use only the first N test examples", role=TRIAL, min=1,
                                     shown_default="all", cli={"metavar": "N"}, label="limit-test")
    eval_batch_size: int = setting(1000, "evaluation batch size", role=TRIAL, min=1, flag="",
                                   label="eval batch size")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", role=TRIAL)
    precision: str = setting("fp32", "bf16: forward pass and task loss under bfloat16 autocast; weights, "
                             "gradients, penalty, optimizer and evaluation stay float32", role=TRIAL,
                             choices=PRECISIONS, key_default="fp32")
    channels_last: bool = setting(False, "channels-last memory layout for conv weights and inputs", role=TRIAL,
                                  key_default=False)
    image_size: int | None = setting(None, "side of the square images: image folders and torchvision/file datasets "
                                     "are resized (shorter side) and centre-cropped to it, built-in ones resized, "
                                     "synthetic data generated at it; the model is built for it", role=TRIAL, min=1,
                                     key_default=None, shown_default="the data's own (folders 224)",
                                     cli={"metavar": "S"})
    data_path: str = setting("auto", "memory: the whole dataset as one uint8 tensor on the device; stream: a "
                             "DataLoader with worker processes; auto: memory when the decoded data takes at most "
                             "2 GiB", role=TRIAL, choices=("auto", "memory", "stream"), key_default="auto")
    loader_workers: int = setting(2, "DataLoader worker processes of the streaming path (and of decoding an image "
                                  "folder into memory)", role=TRIAL, min=0, key_default=2, cli={"metavar": "N"})
    normalize: str | None = setting(None, "per-channel mean/std on the [0, 1] scale, MEAN1,MEAN2,MEAN3/STD1,STD2,STD3 "
                                    "or imagenet", role=TRIAL, key_default=None,
                                    shown_default="the dataset's own, else computed from its training split and cached",
                                    cli={"metavar": "MEAN/STD"})
    prune_coupled: bool = setting(False, "also prune coupled channels (a residual stream: the same channel of "
                                  "every conv that writes into it), each as one group", role=TRIAL, key_default=False)
    exclude_layers: tuple[str, ...] = setting((), "keep layers matching these patterns (fnmatch on module names, "
                                              "e.g. 'features.0.*') out of pruning, comma separated", role=TRIAL,
                                              key_default=(), shown_default="none",
                                              cli={"type": S.parse_items, "metavar": "PATTERN,..."})
    init_from: str | None = setting(None, "start every trial from these weights: a state dict file (.pt of "
                                    "model.state_dict(), or a torchvision/timm checkpoint on disk)", role=TRIAL,
                                    key_default=None, shown_default="random init", cli={"metavar": "FILE"})
    strict_head: bool = setting(False, "refuse an --init-from file whose classifier has another class count "
                                "(by default that head is re-initialised, with a notice)", role=TRIAL,
                                key_default=False)
    latency_time: float = setting(0.3, "seconds each latency measurement of a trial's compact model runs (compact "
                                  "and dense, batch 1 and 64, on the CPU and on a GPU trial's device); 0 skips "
                                  "them (a long target search's probes, say)", role=RUNTIME, min=0,
                                  cli={"metavar": "S"})
    system_metrics_interval: float = setting(
        30.0, "seconds between the samples of a trial run's system metrics in MLflow (the machine's CPU and memory "
        "use, disk and network; the GPU's with nvidia-ml-py); 0 records none", role=RUNTIME, min=0,
        cli={"metavar": "S"})

    def __post_init__(self) -> None:
        _checked(self)
        from .data import DATASETS, check_source  # lazy: keeps bench --help, import bench.api free of torch
        from .models import ModelError, get_model_spec  # lazy: keeps bench --help, import bench.api free of torch
        try:
            get_model_spec(self.model)
        except ModelError as err:
            raise ConfigError(str(err)) from None
        check_source(self.dataset)   # a DataError naming the valid datasets or what is missing
        if self.augment == "auto":   # the built-in datasets keep what their sweeps and presets always meant
            object.__setattr__(self, "augment", "none" if self.dataset in DATASETS else "standard")
        if self.normalize is not None:
            from .sources import parse_normalize  # lazy: keeps bench --help, import bench.api free of torch
            try:
                parse_normalize(self.normalize)
            except ValueError as err:
                raise ConfigError(f"--normalize: {err}") from None
        _check(self.init_from is None or os.path.isfile(self.init_from),
               f"--init-from {self.init_from}: no such file")
        from .recipe import RecipeError, parse_schedule  # lazy: keeps bench --help, import bench.api free of torch
        try:
            parse_schedule(self.schedule, self.epochs)
        except RecipeError as err:
            raise ConfigError(f"--schedule: {err}") from None
        _check(self.warmup_epochs < self.epochs, f"--warmup-epochs {self.warmup_epochs} leaves no epoch at the "
               f"scheduled rate ({self.epochs} epochs)")
        _check(not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
               "--nesterov needs the sgd optimizer with a momentum > 0")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        P.check_train(self)   # its protocol (an unknown one: the protocols named), or each of a study axis

    @property
    def prune_epoch(self) -> int:
        """Under a protocol that prunes to a target, the last sparse epoch, at whose end its (last) pruning step
        runs (``--sparse-epochs``, by default half of the epochs, at least 1)."""
        return self.sparse_epochs or max(1, self.epochs // 2)


@dataclass(frozen=True)
class TrialConfig:
    """One training run: a method with its options (the swept value included), a zeroing rule and a seed."""

    method: str
    options: Mapping[str, Any]
    zeroing: str
    seed: int
    train: TrainSettings = field(default_factory=TrainSettings)
    #: under ``--protocol prune-to-target``: the target its pruning step meets, (kind, value): ("flops", 0.5)
    target: tuple[str, float] | None = None
    #: a control trial (``--controls scratch``): {"kind": "scratch", "of": the source trial's name, "method" and
    #: "target": the source's, "widths": {unit: groups kept}}; it trains the network at those widths from the
    #: seed's initialisation for the same epochs (the ``none`` method: plain training)
    control: Mapping[str, Any] | None = None
    #: a target search's probe stops at the first epoch where every one of these metrics is above its value (its
    #: search's highest target plus the tolerance): it can only overshoot from there. Not part of the key
    stop_above: Mapping[str, float] | None = None
    #: a shared phase (bench/phases.py), not a trial: {"name", "split": the epoch S it ends inside, "signature":
    #: what its branches share, "plain": shared by methods that do nothing while it trains}; its key is its own
    phase: Mapping[str, Any] | None = None
    #: a branch: the key of the shared phase it starts from (not part of the key: it computes the same trial)
    shared: str | None = None

    def overshoot(self, metrics: Mapping[str, Any]) -> str | None:
        """Why a probe with ``metrics`` (an epoch's) stops: every :attr:`stop_above` metric past its bound (the
        removed fractions never decrease during a trial); None to go on."""
        if not self.stop_above or not all(float(metrics.get(m, -math.inf)) > v for m, v in self.stop_above.items()):
            return None
        return "overshoot: " + ", ".join(f"{m} {float(metrics[m]):.4f} > {v:g}" for m, v in self.stop_above.items()) \
            + f" at epoch {int(metrics.get('epoch', 0)) or '?'} of {self.train.epochs}, past every target of its search"

    @property
    def sweep_axis(self) -> str | None:
        return _method(self.method).sweep_axis

    @property
    def swept_value(self) -> float | None:
        axis = self.sweep_axis
        return None if axis is None else self.options[axis]

    @functools.cached_property
    def name(self) -> str:
        """Readable and unique within a sweep: ``l1l2-lam0.5-s0``; a non-default zeroing rule is spelled out."""
        if self.control is not None:
            return f"{self.control['kind']}-{self.control['of']}"
        if self.phase is not None:
            return str(self.phase["name"])
        parts = [self.method]
        if self.sweep_axis == "lam" or (self.sweep_axis is not None and self.target is None):
            parts.append(f"{self.sweep_axis}{self.swept_value:g}")   # a ratio does nothing under prune-to-target
        if self.target is not None:   # and its protocol's tags: iterative's steps, a rewound fine-tuning
            parts += [f"{self.target[0]}{self.target[1]:g}", *get_protocol(self.train.protocol).tags(self.train)]
        from .zeroing import parse_zeroing  # lazy: keeps bench --help, import bench.api free of torch
        if self.target is None and self.zeroing != parse_zeroing(_method(self.method).default_zeroing).spec:
            parts.append(f"z{self.zeroing.replace(':', '')}")
        return "-".join(parts + [f"s{self.seed}"])

    @functools.cached_property
    def key(self) -> str:
        """A stable hash of everything that defines what the trial computes (for finding it again, e.g. on
        resume); where the data files are and whether they may be downloaded are not part of it. Computed once
        per trial (a folder's fingerprint reads its files), on the driver: :meth:`payload` carries it."""
        from .data import data_key  # lazy: keeps bench --help, import bench.api free of torch
        if self.phase is not None:   # found again by what its branches share, whichever trial it trains as
            return hashlib.sha256(f"phase:{self.phase['signature']}".encode()).hexdigest()[:16]
        d = self.to_dict()
        for later in ("target", "control"):   # the trials of the regularize protocol keep the keys they had
            if d[later] is None:
                del d[later]
        del d["stop_above"], d["phase"], d["shared"]   # when a probe stops, where a branch starts: the same trial
        for f in S.declared(TrainSettings):
            if f.metadata["role"] != TRIAL or d["train"][f.name] == f.metadata["key_default"]:
                d["train"].pop(f.name)
        d["train"]["model"] = source_key(self.train.model)
        d["train"]["dataset"] = data_key(self.train.dataset)
        if self.train.init_from is not None:
            d["train"]["init_from"] = file_digest(self.train.init_from)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        d["target"] = list(self.target) if self.target is not None else None
        d["control"] = json.loads(json.dumps(self.control)) if self.control is not None else None
        d["stop_above"] = dict(self.stop_above) if self.stop_above is not None else None
        d["phase"] = dict(self.phase) if self.phase is not None else None
        return d

    def payload(self) -> dict[str, Any]:
        """What a Tune trial's config carries: :meth:`to_dict` with the trial's ``name`` and ``key``."""
        return {**self.to_dict(), "name": self.name, "key": self.key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialConfig:
        """The trial of a :meth:`to_dict` (or :meth:`payload`) made from validated settings: not validated again.
        A payload's name and key are taken as they are."""
        train = object.__new__(TrainSettings)
        for f in dataclasses.fields(TrainSettings):
            if f.name in d["train"]:
                object.__setattr__(train, f.name, d["train"][f.name])
            else:   # a setting declared after the dict was made: its default
                object.__setattr__(train, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING
                                   else f.default)
        target = d.get("target")
        trial = cls(d["method"], dict(d["options"]), d["zeroing"], int(d["seed"]), train,
                    (str(target[0]), float(target[1])) if target else None, d.get("control"), d.get("stop_above"),
                    d.get("phase"), d.get("shared"))
        for cached in ("name", "key"):
            if d.get(cached):
                trial.__dict__[cached] = d[cached]
        return trial

    def build_method(self):
        return _method(self.method)(**self.options)


# a --target-* value: a fraction removed in (0, 1), each listed once (checked with every setting, whatever the
# protocol, before anything else; bench/targets.py)
TARGET_CHECKS: dict[str, Any] = {"open_min": 0, "open_max": 1, "distinct": True}


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: which methods, which values of each method's sweep axis, which seeds; and where it runs."""

    methods: tuple[str, ...] = setting(
        help="comma-separated methods (see `bench list`)", role=SWEEP, group=WHAT, resume=True, default_factory=lambda: _all_methods(),
        shown_default="every registered method but the criteria", cli={"type": S.parse_items})
    # values of the sweep axes: method (or "*" for every method on that axis) -> values; absent: default grid
    lambdas: Mapping[str, tuple[float, ...]] = setting(
        help="penalty strengths for every method swept over lam, or with METHOD= for one method (repeatable: "
        "--lambdas 0.05,0.2 --lambdas ssl=0.01,0.03)", role=SWEEP, group=WHAT, default_factory=dict,
        shown_default="each method's grid", cli={"type": S.parse_per_method_floats, "action": S.MergeDict,
                                                 "metavar": "[METHOD=]V1,V2,..."})
    ratios: Mapping[str, tuple[float, ...]] = setting(
        help="pruning ratios in (0, 1) for methods swept over ratio, or with METHOD= for one method (repeatable)",
        role=SWEEP, group=WHAT, default_factory=dict, shown_default="each method's grid",
        cli={"type": S.parse_per_method_floats, "action": S.MergeDict, "metavar": "[METHOD=]V1,V2,..."})
    seeds: tuple[int, ...] = setting((0,), "comma-separated seeds; every point of the sweep runs once per seed",
                                     role=SWEEP, group=WHAT, resume=True, shown_default="0", cli={"type": S.parse_ints})
    target_sparsity: tuple[float, ...] = setting(
        (), "search each method's strength for these filter sparsities instead of running a grid, per seed "
        "(bench/targets.py); --lambdas/--ratios become the search's starting points", role=SWEEP, group=WHAT, resume=True,
        shown_default="none", cli={"type": S.parse_floats, "metavar": "F1,F2,..."}, label="--target-sparsity",
        **TARGET_CHECKS)
    target_flops_reduction: tuple[float, ...] = setting(
        (), "the same for fractions of the FLOPs removed", role=SWEEP, group=WHAT, resume=True, shown_default="none",
        cli={"type": S.parse_floats, "metavar": "F1,F2,..."}, label="--target-flops-reduction", **TARGET_CHECKS)
    target_params_reduction: tuple[float, ...] = setting(
        (), "the same for fractions of the parameters removed", role=SWEEP, group=WHAT, resume=True, shown_default="none",
        cli={"type": S.parse_floats, "metavar": "F1,F2,..."}, label="--target-params-reduction", **TARGET_CHECKS)
    target_tolerance: float = setting(0.02, "a target is reached within this distance (absolute, as a fraction)",
                                      role=SWEEP, group=WHAT, open_min=0, open_max=0.5)
    max_probes: int = setting(8, "probes (trials) per method and seed of a target search, shared by its targets",
                              role=SWEEP, group=WHAT, min=1, cli={"metavar": "N"})
    stop_overshoots: bool = setting(False, "stop a target search's probe at the first epoch past every target plus "
                                    "the tolerance (its value then only a lower bound): saves that probe's "
                                    "remaining epochs, but the search knows less; measured in docs/comparing.md",
                                    role=SWEEP, group=WHAT)
    controls: tuple[str, ...] = setting(
        (), "add control trials, per finished trial, of the network at its final widths trained from the seed's "
        "initialisation (Liu et al. 2019): scratch-e (or scratch) for the same epochs; scratch-b for the same "
        "compute, epochs x dense FLOPs / pruned FLOPs rounded, at most --scratch-b-max-factor times the epochs; "
        "with --primary, of the primary method's trials only; `random` is a method", role=SWEEP, group=WHAT, resume=True, shown_default="none",
        cli={"type": S.parse_items, "metavar": "scratch-e,scratch-b"})
    primary: str | None = setting(None, "the method the study is about: the report compares it with every other method and "
                                  "its own controls (one Holm family of M+1), not every method with the best and random; "
                                  "--controls then run for its trials only",
                                  role=SWEEP, group=WHAT, resume=True, cli={"metavar": "METHOD"})
    scratch_b_max_factor: float = setting(2.0, "Scratch-B trains at most this many times the epochs (Liu et al.'s "
                                          "ImageNet cap; their CIFAR recipe caps nothing: a large value)",
                                          role=SWEEP, group=WHAT, min=1, cli={"metavar": "F"})
    zeroing: Mapping[str, str] = setting(
        help="zeroing rule for every method (none, cumulative:T[:layer], threshold:EPS), or METHOD=RULE entries, "
        "comma separated", role=SWEEP, group=WHAT, default_factory=dict, shown_default="each method's own",
        cli={"type": S.parse_zeroing, "action": S.MergeDict})
    options: Mapping[str, Mapping[str, Any]] = setting(
        help="a method option, e.g. l1l2.norm_scale=none (repeatable; see `bench list`)", role=SWEEP, group=WHAT,
        default_factory=dict, flag="--option", cli={"type": S.parse_option, "action": S.MergeDict,
                                                    "metavar": "METHOD.KEY=VALUE"})
    train: TrainSettings = field(default_factory=TrainSettings)
    preset: str | None = setting(None, "start from a preset: the paper's setups (mnist-lenet = Table I, "
                                 "cifar10-lenet = Table II, cifar10-vgg11 = Table III) or fashion-mnist-lenet (the "
                                 "offline default study); every other option and --config override it",
                                 role=SWEEP, group=WHAT, cli={"metavar": "NAME"})
    plugins: tuple[str, ...] = setting(
        (), "import a module or .py file that registers more methods (repeatable; loaded in every trial too)",
        role=SWEEP, group=WHAT, flag="--plugin", cli={"action": S.Extend, "metavar": "MODULE|FILE.py"})
    experiment: str | None = setting(None, "MLflow experiment name", role=SWEEP, group=WHERE, resume=True,
                                     shown_default="MODEL-DATASET")
    name: str | None = setting(None, "the sweep's name, its MLflow parent run, unique in the experiment",
                               role=SWEEP, group=WHERE, shown_default="sweep-DATE-TIME")
    tracking_uri: str | None = setting(
        None, "MLflow store: sqlite:///PATH.db or http://HOST:PORT of an `mlflow server` (checked before any work)",
        role=RUNTIME, group=WHERE, shown_default="$MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db")
    storage_path: str = setting("ray_results", "folder of Ray Tune's trial records (on a cluster of several "
                                "machines, a folder every node can reach)", role=RUNTIME, group=WHERE,
                                shown_default="./ray_results")
    ray_address: str | None = setting(None, "join a Ray cluster started with `ray start --head`, HOST:PORT (also "
                                      "RAY_ADDRESS; checked before any work)", role=RUNTIME, group=WHERE,
                                      shown_default="a local Ray for this command")
    ray_cpus: int | None = setting(None, "CPUs of the local Ray (without --ray-address): at most that many trials' "
                                   "CPUs at once", role=RUNTIME, group=WHERE, min=1, cli={"metavar": "N"},
                                   shown_default="the CPUs this process may use: the smaller of its CPU affinity "
                                   "and Ray's cgroup-aware count")
    cpus_per_trial: float = setting(1.0, "CPUs reserved per trial; torch threads follow it", role=RUNTIME,
                                    group=WHERE, open_min=0, shown_default="1")
    gpus_per_trial: float | None = setting(
        None, "GPUs per trial; fractions pack trials on one GPU (0.25 runs four per GPU)", role=RUNTIME,
        group=WHERE, min=0, shown_default="1 when there are GPUs and --device is not cpu, else 0")
    max_concurrent: int = setting(0, "at most N trials at once", role=RUNTIME, group=WHERE, min=0,
                                  shown_default="as resources allow", cli={"metavar": "N"})
    share: bool = setting(True, "train each shared phase once: trials that train alike up to their first pruning step "
                          "branch from one checkpoint (docs/comparing.md); --no-share runs every trial straight through",
                          role=RUNTIME, group=WHERE, flag="--no-share", shown_default="shared",
                          cli={"action": "store_const", "const": False})
    max_failures: int = setting(0, "retry a trial that raised up to N times, from its last checkpoint, in its MLflow run",
                                role=RUNTIME, group=WHERE, min=0, cli={"metavar": "N"})

    def __post_init__(self) -> None:
        _checked(self)
        _check(len(self.methods) > 0, "no method given")
        _check(self.ray_cpus is None or self.ray_address is None, "--ray-cpus sizes a local Ray; a cluster joined "
               "with --ray-address has the CPUs its nodes were started with (`ray start --num-cpus N`)")
        _check(len(set(self.methods)) == len(self.methods), f"a method is listed twice: {','.join(self.methods)}")
        _check(self.primary in (None, *self.methods), f"--primary {self.primary}: not among the methods of this "
                                                      f"sweep ({','.join(self.methods)})")
        for name in self.methods:
            _method(name)
        for what, given in (("options", self.options), ("zeroing", self.zeroing), ("lambdas", self.lambdas),
                            ("ratios", self.ratios)):
            for name in set(given) - {"*"}:
                _check(name in self.methods, f"{what} given for {name!r}, which is not among the methods of "
                                             f"this sweep ({','.join(self.methods)})")
        for what, axis, given in (("lambdas", "lam", self.lambdas), ("ratios", "ratio", self.ratios)):
            for name in set(given) - {"*"}:
                _check(_method(name).sweep_axis == axis, f"{what} given for {name!r}, which is swept over "
                                                         f"{_method(name).sweep_axis}")
        for name, opts in self.options.items():
            swept: str | None = _method(name).sweep_axis if name in self.methods else None
            values = {"lam": "lambdas", "ratio": "ratios"}.get(swept or "", "")
            _check(swept is None or swept not in opts, f"option {name}.{swept} is the value the sweep varies: give it "
                   f"with --{values} {name}=V1,V2,... (or {values} in a config file)")
        _check(len(self.seeds) > 0, "no seed given")
        _check(len(set(self.seeds)) == len(self.seeds), "a seed is listed twice")
        _check(self.name is None or (0 < len(self.name) <= 100 and all(c.isalnum() or c in "._-"
                                                                          for c in self.name)
                                     and bool(self.name.strip("."))),
               f"sweep name must be 1-100 letters, digits, '.', '_' or '-', not only dots, got "
               f"{S.quote(self.name or '')}")
        if self.experiment is not None:
            check_experiment_name(self.experiment)
        self.trials()  # validates every method option, swept value and zeroing spec
        try:
            parse_targets(self.target_values)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        P.check_sweep(self)

    @property
    def searching(self) -> bool:
        """A target search (--target-* values under a protocol that does not prune to them, regularize): probes
        proposed as results come."""
        return bool(self.target_values) and not P.first(self.train).per_target

    @property
    def target_values(self) -> dict[str, tuple[float, ...]]:
        return {k: v for k, v in (("sparsity", self.target_sparsity), ("flops", self.target_flops_reduction),
                                  ("params", self.target_params_reduction)) if v}

    @property
    def targets(self):
        """The equal-sparsity targets of this sweep (``bench.targets.Target``); empty for a grid sweep."""
        return parse_targets(self.target_values)

    def probe(self, method: str, value: float, seed: int) -> TrialConfig:
        """The trial of a target search that runs ``method`` at strength ``value`` with ``seed``."""
        from .zeroing import parse_zeroing  # lazy: keeps bench --help, import bench.api free of torch
        cls = _method(method)
        opts = {**self.options.get(method, {}), cls.sweep_axis: float(value)}
        hp = cls.Hparams.from_options(opts)
        rule = parse_zeroing(self.zeroing_for(method), cls(hp).kernel_norm_scale)
        return TrialConfig(method, hp.as_dict(), rule.spec, int(seed), self.train,
                           stop_above=self.stop_bounds if self.stop_overshoots else None)

    @property
    def stop_bounds(self) -> dict[str, float]:
        """Per target metric, the highest target plus the tolerance: a probe past all of them stops (it can only
        overshoot: the removed fractions never decrease during a trial)."""
        bounds: dict[str, float] = {}
        for t in self.targets:
            bounds[t.metric] = max(bounds.get(t.metric, 0.0), t.value + self.target_tolerance)
        return bounds

    def searches(self):
        """One ``bench.targets.Search`` per searched method and seed (siblings linked), nothing recorded yet."""
        out = []
        for name in self.methods:
            axis = _method(name).sweep_axis
            if axis is None:
                continue
            grid = tuple(float(v) for v in self.grid(name) if v is not None)
            group = [Search(name, int(seed), axis, grid, self.targets, self.target_tolerance,
                            self.max_probes) for seed in self.seeds]
            for s in group:
                s.siblings = [o for o in group if o is not s]
            out += group
        return out

    @property
    def experiment_name(self) -> str:
        from .data import data_display  # lazy: keeps bench --help, import bench.api free of torch
        return self.experiment or f"{display_name(self.train.model)}-{data_display(self.train.dataset)}"

    def grid(self, method: str) -> tuple[float | None, ...]:
        """The values of ``method``'s sweep axis in this sweep (its default grid when none was given)."""
        cls = _method(method)
        if cls.sweep_axis is None:
            return (None,)
        given = {"lam": self.lambdas, "ratio": self.ratios}.get(cls.sweep_axis, {})
        values = given.get(method) or given.get("*") or cls.default_grid
        _check(len(values) > 0, f"{method}: no value to sweep for {cls.sweep_axis}")
        return tuple(values)

    def zeroing_for(self, method: str) -> str:
        fixed = P.first(self.train).zeroing_for(self, method)
        if fixed is not None:   # prune-to-target: sparse training zeroes nothing, the pruning step removes
            return fixed
        return self.zeroing.get(method) or self.zeroing.get("*") or _method(method).default_zeroing

    def trials(self) -> list[TrialConfig]:
        """Every trial of the sweep, validated: method x swept value x seed (expanded once per sweep)."""
        return list(self._trials)

    @functools.cached_property
    def _trials(self) -> tuple[TrialConfig, ...]:
        from methods import MethodError  # lazy: keeps bench --help, import bench.api free of torch

        from .zeroing import parse_zeroing  # lazy: keeps bench --help, import bench.api free of torch
        out = []
        pruning = P.first(self.train).per_target
        targets = [(t.kind, t.value) for t in self.targets] if pruning else [None]
        for name in self.methods:
            cls = _method(name)
            for value in (self.sparse_strengths(name) if pruning else self.grid(name)):
                opts = dict(self.options.get(name, {}))
                if cls.sweep_axis is not None and value is not None:
                    opts[cls.sweep_axis] = value
                try:
                    method = cls(cls.Hparams.from_options(opts))
                    if not pruning:   # a protocol that prunes to a target splits the epochs itself
                        method.check_budget(self.train.epochs)
                except MethodError as err:
                    raise ConfigError(f"method {name!r}: {err}") from None
                spec = self.zeroing_for(name)
                try:
                    rule = parse_zeroing(spec, method.kernel_norm_scale)
                except ValueError as err:
                    raise ConfigError(f"method {name!r}: {err}") from None
                for i, train in enumerate(P.variants(self.train)):   # each protocol and fine-tuning of an axis
                    if cls.reference and i:   # the dense reference, never pruned: once, not per protocol
                        continue
                    for target in [None] if cls.reference else targets:
                        out += [TrialConfig(name, method.hparams.as_dict(), rule.spec, int(seed), train, target)
                                for seed in self.seeds]
        return tuple(out)

    def sparse_strengths(self, method: str) -> tuple[float | None, ...]:
        """Under prune-to-target, the strengths of ``method``'s sparse training: the ``--lambdas`` given for it
        (one trial each), else its option's default (None: the default, for methods without a lam)."""
        cls = _method(method)
        if cls.sweep_axis != "lam":
            return (None,)
        return tuple(self.lambdas.get(method) or self.lambdas.get("*") or (None,))

    @functools.cached_property
    def key(self) -> str:
        """A stable hash of the sweep's set of trials (and of a target search's targets): a resumed sweep must
        have the same one."""
        keys: list[Any] = sorted(t.key for t in self._trials)
        if self.target_values:
            keys.append({"targets": self.target_values, "tolerance": self.target_tolerance,
                         "max_probes": self.max_probes})
        blob = json.dumps(keys, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved with the sweep (``sweep.json``): a password in the tracking URI masked (a
        resume is told the store again)."""
        d = json.loads(json.dumps(dataclasses.asdict(self), default=list))
        if d.get("tracking_uri"):
            d["tracking_uri"] = redact(d["tracking_uri"])
        return d


def _all_methods() -> tuple[str, ...]:
    """Every registered method that runs under the default protocol, the baseline first (the criteria, which only
    rank groups for a pruning step, are named with --methods)."""
    from methods import get_method, list_methods  # lazy: keeps bench --help, import bench.api free of torch
    names = [n for n in list_methods() if get_protocol(DEFAULT_PROTOCOL).runs(get_method(n))]
    return tuple(["none"] * ("none" in names) + [n for n in names if n != "none"])


def _method(name: str):
    """The registered method class (methods/ imports torch: loaded on first use, so parsing stays fast)."""
    from methods import MethodError, get_method  # lazy: keeps bench --help, import bench.api free of torch
    try:
        return get_method(name)
    except MethodError as err:
        raise ConfigError(str(err)) from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
