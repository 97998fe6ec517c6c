"""Frozen configuration: defaults < config file < command line.

A sweep (:class:`SweepConfig`) expands into trials (:class:`TrialConfig`), one per method x swept value x
seed. Everything is validated here, before any data is loaded or any trial starts: unknown methods,
models or datasets (listing the valid names), bad method options (a negative lambda, a ratio outside
(0, 1)), zeroing specs that do not parse, epochs < 1, and so on. Each trial's resolved config is saved
with its run as ``config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from methods import MethodError, get_method, load_plugins

from .data import get_dataset_spec
from .models import get_model_spec
from .zeroing import parse_zeroing


class ConfigError(ValueError):
    """A configuration value that cannot be used; raised before any work starts."""


@dataclass(frozen=True)
class TrainSettings:
    """What every trial of a sweep shares: model, data and the training budget."""

    model: str = "lenet5"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool | None = None   # None: allowed unless BENCH_NO_DOWNLOAD=1
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    limit_train: int | None = None
    limit_test: int | None = None
    eval_batch_size: int = 1000
    device: str = "auto"
    precision: str = "fp32"        # "bf16": bfloat16 autocast for forward and loss (weights stay float32)
    channels_last: bool = False    # conv weights and inputs in channels-last memory layout

    # settings added after sweeps were recorded: left out of a trial's key while at these defaults, so the
    # keys (and resume) of earlier sweeps stay valid
    LATER_DEFAULTS = {"precision": "fp32", "channels_last": False}

    def __post_init__(self) -> None:
        get_model_spec(self.model)
        get_dataset_spec(self.dataset)
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}")
        _check(math.isfinite(self.lr) and self.lr > 0, f"learning rate must be > 0, got {self.lr}")
        _check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        for flag in ("limit_train", "limit_test"):
            value = getattr(self, flag)
            _check(value is None or value >= 1, f"{flag.replace('_', '-')} must be >= 1, got {value}")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")


@dataclass(frozen=True)
class TrialConfig:
    """One training run: a method with its options (the swept value included), a zeroing rule and a seed."""

    method: str
    options: Mapping[str, Any]
    zeroing: str
    seed: int
    train: TrainSettings = field(default_factory=TrainSettings)

    @property
    def sweep_axis(self) -> str | None:
        return get_method(self.method).sweep_axis

    @property
    def swept_value(self) -> float | None:
        axis = self.sweep_axis
        return None if axis is None else self.options[axis]

    @property
    def name(self) -> str:
        """Readable and unique within a sweep: ``l1l2-lam0.5-s0``; a non-default zeroing rule is spelled out."""
        parts = [self.method]
        if self.sweep_axis is not None:
            parts.append(f"{self.sweep_axis}{self.swept_value:g}")
        if self.zeroing != parse_zeroing(get_method(self.method).default_zeroing).spec:
            parts.append(f"z{self.zeroing.replace(':', '')}")
        return "-".join(parts + [f"s{self.seed}"])

    @property
    def key(self) -> str:
        """A stable hash of everything that defines what the trial computes (for finding it again, e.g. on
        resume); where the data files are and whether they may be downloaded are not part of it."""
        d = self.to_dict()
        for where in ("data_dir", "download"):
            d["train"].pop(where)
        for later, default in TrainSettings.LATER_DEFAULTS.items():
            if d["train"].get(later) == default:
                d["train"].pop(later)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialConfig":
        return cls(d["method"], dict(d["options"]), d["zeroing"], int(d["seed"]), TrainSettings(**d["train"]))

    def build_method(self):
        return get_method(self.method)(**self.options)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: which methods, which values of each method's sweep axis, which seeds; and where it runs."""

    methods: tuple[str, ...] = field(default_factory=lambda: _all_methods())
    # values of the sweep axes: method (or "*" for every method on that axis) -> values; absent: default grid
    lambdas: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    ratios: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    zeroing: Mapping[str, str] = field(default_factory=dict)   # method (or "*") -> spec
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> option -> value
    train: TrainSettings = field(default_factory=TrainSettings)
    experiment: str | None = None
    name: str | None = None          # the sweep's name (its MLflow parent run); default: sweep-<date-time>
    preset: str | None = None        # the preset the settings came from (bench/presets.py), if any
    plugins: tuple[str, ...] = ()    # modules or .py files registering more methods
    tracking_uri: str | None = None
    storage_path: str = "ray_results"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int = 0
    max_failures: int = 0

    # settings that say where and how a sweep runs, not what it computes: a resumed sweep may change them
    RUNTIME_KEYS = ("tracking_uri", "storage_path", "ray_address", "cpus_per_trial", "gpus_per_trial",
                    "max_concurrent", "max_failures")

    def __post_init__(self) -> None:
        _check(len(self.methods) > 0, "no method given")
        _check(len(set(self.methods)) == len(self.methods), f"a method is listed twice: {','.join(self.methods)}")
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
        _check(len(self.seeds) > 0, "no seed given")
        _check(len(set(self.seeds)) == len(self.seeds), "a seed is listed twice")
        _check(self.cpus_per_trial > 0, f"cpus per trial must be > 0, got {self.cpus_per_trial}")
        _check(self.gpus_per_trial is None or self.gpus_per_trial >= 0,
               f"gpus per trial must be >= 0, got {self.gpus_per_trial}")
        _check(self.max_concurrent >= 0, f"max concurrent must be >= 0, got {self.max_concurrent}")
        _check(self.max_failures >= 0, f"max failures must be >= 0, got {self.max_failures}")
        _check(self.name is None or (0 < len(self.name) <= 100 and all(c.isalnum() or c in "._-"
                                                                          for c in self.name)),
               f"sweep name must be 1-100 letters, digits, '.', '_' or '-', got {self.name!r}")
        self.trials()  # validates every method option, swept value and zeroing spec

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"{self.train.model}-{self.train.dataset}"

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
        return self.zeroing.get(method) or self.zeroing.get("*") or _method(method).default_zeroing

    def trials(self) -> list[TrialConfig]:
        """Every trial of the sweep, validated: method x swept value x seed."""
        out = []
        for name in self.methods:
            cls = _method(name)
            for value in self.grid(name):
                opts = dict(self.options.get(name, {}))
                if cls.sweep_axis is not None:
                    opts[cls.sweep_axis] = value
                try:
                    method = cls(cls.Hparams.from_options(opts))
                    method.check_budget(self.train.epochs)
                except MethodError as err:
                    raise ConfigError(f"method {name!r}: {err}") from None
                spec = self.zeroing_for(name)
                try:
                    rule = parse_zeroing(spec, method.kernel_norm_scale)
                except ValueError as err:
                    raise ConfigError(f"method {name!r}: {err}") from None
                for seed in self.seeds:
                    out.append(TrialConfig(name, method.hparams.as_dict(), rule.spec, int(seed), self.train))
        return out

    @property
    def key(self) -> str:
        """A stable hash of the sweep's set of trials: a resumed sweep must have the same one."""
        blob = json.dumps(sorted(t.key for t in self.trials()))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "SweepConfig":
        """The inverse of :meth:`to_dict` (as saved in a sweep's ``sweep.json``), with runtime overrides."""
        flat = {k: v for k, v in d.items() if k != "train"}
        flat.update(d.get("train", {}))
        return build_sweep(flat, overrides)


def _all_methods() -> tuple[str, ...]:
    """Every registered method, the baseline first."""
    from methods import list_methods
    names = list_methods()
    return tuple(["none"] * ("none" in names) + [n for n in names if n != "none"])


def _method(name: str):
    try:
        return get_method(name)
    except MethodError as err:
        raise ConfigError(str(err)) from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# -- building a sweep from layered sources --------------------------------------------------------------

_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}
_SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepConfig)} - {"train"}


def _plugin_spec(spec: str) -> str:
    """Plugin files are kept as absolute paths, so that ``bench resume`` finds them from anywhere."""
    return os.path.abspath(spec) if spec.endswith(".py") or os.sep in spec else spec


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config file whose keys are ``bench run``'s options (with underscores)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {p}: {err}") from None
    unknown = sorted(set(values) - _TRAIN_KEYS - _SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"config file {p}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(_TRAIN_KEYS | _SWEEP_KEYS))}")
    return values


def build_sweep(*layers: Mapping[str, Any]) -> SweepConfig:
    """Merge layers of settings (later wins; ``None`` values are skipped) into a validated SweepConfig."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key not in _TRAIN_KEYS | _SWEEP_KEYS:
                raise ConfigError(f"unknown setting {key!r}")
            if key in ("lambdas", "ratios"):
                value = _per_method_values(key, value)
            if key in ("options", "zeroing", "lambdas", "ratios") and key in merged:
                merged[key] = _merge_nested(merged[key], value)
            elif key == "plugins":
                merged[key] = tuple(dict.fromkeys([*merged.get(key, ()), *map(_plugin_spec, value)]))
            else:
                merged[key] = value
    try:
        load_plugins(merged.get("plugins", ()))  # before anything looks a method up
    except MethodError as err:
        raise ConfigError(str(err)) from None
    train = TrainSettings(**{k: v for k, v in merged.items() if k in _TRAIN_KEYS})
    sweep = {k: v for k, v in merged.items() if k in _SWEEP_KEYS}
    for key in ("methods", "seeds", "plugins"):
        if key in sweep:
            sweep[key] = tuple(sweep[key])
    for key in ("lambdas", "ratios"):
        if key in sweep:
            sweep[key] = _per_method_values(key, sweep[key])
    return SweepConfig(train=train, **sweep)


def _per_method_values(key: str, value: Any) -> dict[str, tuple[float, ...]]:
    """A list applies to every method on that axis ("*"); a table gives per-method lists."""
    if isinstance(value, Mapping):
        items = value.items()
    else:
        items = [("*", value)]
    out = {}
    for method, values in items:
        values = [values] if isinstance(values, (int, float)) else values
        try:
            out[method] = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected numbers for {method!r}, got {values!r}") from None
    return out


def _merge_nested(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out
