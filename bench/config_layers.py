"""A sweep's settings from their layers: declared defaults < preset < config file < command line
(:func:`sweep_from_sources`), or as a sweep saved them (:func:`from_saved`); each layer's tables (per-method
grids, zeroing rules, options) in one shape, files and folders as absolute paths, the plugins loaded before
any method is looked up. The result is one validated :class:`bench.config.SweepConfig`."""
from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError, SweepConfig, TrainSettings
from .presets import PresetError, preset_settings
from .usercode import UserCodeError, absolute, load_plugins

_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}
_SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepConfig)} - {"train"}


def _dataset_spec(spec: str) -> str:
    """A dataset folder or file is kept as an absolute path, as a model file is."""
    if spec.startswith("imagefolder:"):
        return "imagefolder:" + os.path.abspath(os.path.expanduser(spec.partition(":")[2]))
    return absolute(spec) if not spec.startswith("torchvision:") else spec


def _plugin_spec(spec: str) -> str:
    """Plugin files are kept as absolute paths, so that ``bench resume`` finds them from anywhere."""
    return os.path.abspath(spec) if spec.endswith(".py") or os.sep in spec else spec


MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config file whose keys are ``bench run``'s options (with underscores)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)   # /dev/zero or a huge file: read no further than a config's size
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {p} is larger than {MAX_CONFIG_BYTES // 2 ** 20} MiB (or endless); give "
                              "a TOML file of bench run's options")
        values = tomllib.loads(text.decode())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a folder; give a TOML file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {p}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {p}: {err}") from None
    unknown = sorted(set(values) - _TRAIN_KEYS - _SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"config file {p}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(_TRAIN_KEYS | _SWEEP_KEYS))}")
    return values


def sweep_from_sources(command_line: Mapping[str, Any], config_file: str | None = None) -> SweepConfig:
    """``bench run``'s layers: declared defaults < preset < config file < command line.

    The preset comes from the command line or the file; the user's ``lambdas`` or ``ratios`` (from either)
    replace the preset's grids instead of merging into them."""
    file_values = load_config_file(config_file) if config_file else {}
    preset = command_line.get("preset") or file_values.get("preset")
    preset_values: dict[str, Any] = {}
    if preset:
        try:
            preset_values = dict(preset_settings(preset, command_line.get("methods") or file_values.get("methods")))
        except PresetError as err:
            raise ConfigError(str(err)) from None
        for key in ("lambdas", "ratios"):
            if command_line.get(key) or key in file_values:
                preset_values.pop(key, None)
    return build_sweep(preset_values, file_values, command_line)


def from_saved(d: Mapping[str, Any], **overrides: Any) -> SweepConfig:
    """A sweep as its ``sweep.json`` saved it (:meth:`SweepConfig.to_dict`), with runtime overrides."""
    flat = {k: v for k, v in d.items() if k != "train"}
    flat.update(d.get("train", {}))
    return build_sweep(flat, overrides)


def build_sweep(*layers: Mapping[str, Any]) -> SweepConfig:
    """Merge layers of settings (later wins; ``None`` values are skipped) into a validated SweepConfig."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key not in _TRAIN_KEYS | _SWEEP_KEYS:
                raise ConfigError(f"unknown setting {key!r}")
            value = _table(key, value)
            if key in _TABLES and key in merged:
                merged[key] = _merge_nested(merged[key], value)
            elif key == "model" and isinstance(value, str):
                merged[key] = absolute(value)
            elif key == "dataset" and isinstance(value, str):
                merged[key] = _dataset_spec(value)
            elif key == "init_from" and isinstance(value, str):
                merged[key] = os.path.abspath(value)
            elif key == "plugins":
                merged[key] = tuple(dict.fromkeys([*merged.get(key, ()), *map(_plugin_spec, value)]))
            else:
                merged[key] = value
    try:
        load_plugins(merged.get("plugins", ()))  # before anything looks a method up
    except UserCodeError as err:
        raise ConfigError(str(err)) from None
    train = TrainSettings(**{k: v for k, v in merged.items() if k in _TRAIN_KEYS})
    return SweepConfig(train=train, **{k: v for k, v in merged.items() if k in _SWEEP_KEYS})


_TABLES = ("lambdas", "ratios", "zeroing", "options")


def _table(key: str, value: Any) -> Any:
    """The per-method settings in one shape whatever their source: ``lambdas``/``ratios`` as {method: values}
    (a plain list applies to every method: ``*``), ``zeroing`` as {method: spec} (a plain spec: ``*``),
    ``options`` as {method: {option: value}}, ``plugins`` as a tuple."""
    if key in ("lambdas", "ratios"):
        return _per_method_values(key, value)
    if key == "zeroing":
        value = {"*": value} if isinstance(value, str) else value
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"zeroing: expected a rule (e.g. \"cumulative:0.01\") or a table of METHOD = RULE, "
                              f"got {value!r}")
    if key == "options" and not (isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values())):
        raise ConfigError(f"options: expected tables of method options ([options.l1l2] norm_scale = \"none\"), "
                          f"got {value!r}")
    if key == "plugins":
        value = (value,) if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"plugins: expected a list of modules or .py files, got {value!r}")
        return tuple(value)
    return value


def _per_method_values(key: str, value: Any) -> dict[str, tuple[float, ...]]:
    """A list applies to every method on that axis ("*"); a table gives per-method lists."""
    items = value.items() if isinstance(value, Mapping) else [("*", value)]
    out = {}
    for method, values in items:
        values = [values] if isinstance(values, (int, float)) else values
        if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{key}: expected numbers for {method!r}, got {values!r}")
        out[method] = tuple(float(v) for v in values)
    return out


def _merge_nested(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out
