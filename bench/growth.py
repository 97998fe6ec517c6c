"""Studies that grow: a sweep continued with more seeds, methods, targets or controls (``bench run ... --name N
--resume``, or ``bench resume N --seeds ...``) runs only the new trials, under the same MLflow parent run, so the
report pools them with the others as one study. The lists are merged, never shrunk: a seed, method, target or
control the sweep has stays in it. Every other setting must be the sweep's own; a changed one is refused before any
work, naming each setting that differs and its two values. No torch or Ray here."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import settings as S
from .config import ConfigError, SweepConfig, TrainSettings
from .config_layers import build_sweep, from_saved
from .settings import RUNTIME
from .tracking import Store

#: the lists a sweep grows by (a grown sweep has the union of its own and the new command's)
GROWS = ("methods", "seeds", "target_sparsity", "target_flops_reduction", "target_params_reduction", "controls",
         "plugins")
#: per-method settings: a new method brings its own, an existing method's must be the sweep's
PER_METHOD = ("lambdas", "ratios", "options", "zeroing")
#: settings that may change without changing any trial: the report's primary method, names, a preset's name
FREE = ("primary", "name", "experiment", "preset")
#: what ``bench resume NAME`` accepts beyond where the sweep runs
ASKABLE = ("methods", "seeds", "target_sparsity", "target_flops_reduction", "target_params_reduction", "controls",
           "primary")


def runtime_of(sweep: SweepConfig) -> dict[str, Any]:
    """The runtime settings of ``sweep`` (where and how it runs), flat."""
    return {f.name: getattr(obj, f.name) for obj, cls in ((sweep, SweepConfig), (sweep.train, TrainSettings))
            for f in S.declared(cls) if f.metadata["role"] == RUNTIME}


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True, default=list)


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_shown(v)}" for k, v in value.items()) or "none"
    return "unset" if value is None else str(value)


def differences(saved: SweepConfig, asked: SweepConfig) -> list[str]:
    """Each setting, other than the lists a sweep grows by, on which ``asked`` differs from the ``saved`` sweep:
    ``"--epochs 6 in the sweep, 8 here"``. A method both have must have the same values, options and zeroing."""
    out = []
    for (a, b, cls) in ((saved, asked, SweepConfig), (saved.train, asked.train, TrainSettings)):
        for f in S.declared(cls):
            if f.name in GROWS + PER_METHOD + FREE or f.metadata["role"] == RUNTIME:
                continue
            old, new = getattr(a, f.name), getattr(b, f.name)
            if not _same(old, new):
                out.append(f"{S.flag_of(f) or S.label_of(f)} {_shown(old)} in the sweep, {_shown(new)} here")
    for m in (m for m in saved.methods if m in asked.methods):
        for what, old, new in (("values", saved.grid(m), asked.grid(m)),
                               ("options", dict(saved.options.get(m, {})), dict(asked.options.get(m, {}))),
                               ("zeroing", saved.zeroing_for(m), asked.zeroing_for(m))):
            if not _same(old, new):
                out.append(f"{m}'s {what} {_shown(old)} in the sweep, {_shown(new)} here")
    return out


def within(saved: SweepConfig, asked: SweepConfig) -> bool:
    """Whether ``asked`` is ``saved`` grown: the same other settings, and every seed, method, target and control
    of ``saved`` in it (how ``bench run ... --resume`` without ``--name`` finds the sweep it grows)."""
    return not differences(saved, asked) and all(set(getattr(saved, k)) <= set(getattr(asked, k)) for k in GROWS)


def grow(saved: SweepConfig, asked: SweepConfig) -> SweepConfig:
    """The sweep ``saved`` grown by what ``asked`` adds (its seeds, methods, targets and controls merged in; the
    primary method ``asked``'s when it names one; where it runs ``asked``'s). Refused, naming every difference,
    when ``asked`` changes anything else."""
    changed = differences(saved, asked)
    if changed:
        raise ConfigError(f"sweep {saved.name!r} grows only by --methods, --seeds, --target-* and --controls; these "
                          f"settings differ: {'; '.join(changed)} (keep the sweep's, or start a new sweep)")
    d = saved.to_dict()
    flat: dict[str, Any] = {k: v for k, v in d.items() if k != "train"}
    flat.update(d["train"])
    for key in GROWS:
        mine = list(getattr(saved, key))
        flat[key] = mine + [x for x in getattr(asked, key) if x not in mine]
        if key.startswith("target_"):
            flat[key] = sorted(flat[key])
    for m in (m for m in asked.methods if m not in saved.methods):   # a new method's own values and options
        for key in ("lambdas", "ratios"):
            values = getattr(asked, key).get(m) or getattr(asked, key).get("*")
            if values:
                flat[key] = {**flat[key], m: list(values)}
        if m in asked.options:
            flat["options"] = {**flat["options"], m: dict(asked.options[m])}
        zeroing = asked.zeroing.get(m) or asked.zeroing.get("*")
        if zeroing:
            flat["zeroing"] = {**flat["zeroing"], m: zeroing}
    flat["primary"] = asked.primary or saved.primary
    return build_sweep(flat, runtime_of(asked))


def added(saved: SweepConfig, grown: SweepConfig) -> str:
    """What growing ``saved`` into ``grown`` adds, in words: ``seeds 3,4; methods ssl``."""
    parts = []
    for key, word in (("seeds", "seeds"), ("methods", "methods"), ("target_sparsity", "sparsity targets"),
                      ("target_flops_reduction", "FLOPs targets"), ("target_params_reduction", "params targets"),
                      ("controls", "controls")):
        new = [x for x in getattr(grown, key) if x not in getattr(saved, key)]
        if new:
            parts.append(f"{word} {_shown(new)}")
    return "; ".join(parts) or "nothing"


def unchanged(sweep: SweepConfig, record) -> SweepConfig:
    if record.key and sweep.key != record.key:
        raise ConfigError(f"sweep {record.name!r}: its saved config no longer gives the same trials (the methods' "
                          "defaults or the registry changed since it ran); start a new sweep")
    return sweep


def grown_sweep(uri: str, sweep: SweepConfig):
    """``bench run ... --resume`` with more seeds, methods, targets or controls than the sweep it continues (the
    one named ``--name``, else the latest whose other settings are these): that sweep grown by what this command
    adds, and its record; (``sweep``, None) where there is none or it has the same trials."""
    store = Store(uri)
    experiment_id = store.experiment_id_of(sweep.experiment_name)
    records = [] if experiment_id is None else store.find_sweeps(experiment_id, name=sweep.name)
    for record in records:
        if record.key == sweep.key:
            return sweep, None   # locate() resumes it
        saved = unchanged(from_saved(record.config, **runtime_of(sweep)), record)
        if sweep.name or within(saved, sweep):   # a named sweep grows or says why not
            return grow(saved, sweep), record
    return sweep, None   # locate() says there is nothing to resume
