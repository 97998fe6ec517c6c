"""Every ``bench run`` setting declared once: its type, default, role, checks, help and command-line flag.

A setting is a field of :class:`bench.config.TrainSettings` or :class:`bench.config.SweepConfig` made with
:func:`setting`. From that one declaration come

- the command line: :func:`add_arguments` builds ``bench run``'s (and ``bench resume``'s) options;
- validation: :func:`check_fields` checks every value, from the command line or a config file, against its
  declared type and range before anything starts (exit 2 naming the key, the value and what is expected);
- resume: :func:`names_with_role` tells which settings a resumed sweep may change (``runtime``);
- the trial key: settings with the role ``trial`` define what a trial computes (``bench.config``);
- the options table of docs/options.md: :func:`markdown_table` (a test keeps it equal).

Roles:

``trial``    what a trial computes (model, data, budget): part of every trial's key;
``sweep``    which trials the sweep holds and how it is named and recorded: fixed once the sweep has run;
``runtime``  where and how trials run (Ray, resources, where the data files are): a resumed sweep may change it.

Adding an option is one ``setting(...)`` field; nothing else has to list it. No torch import here.
"""
from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

TRIAL, SWEEP, RUNTIME = "trial", "sweep", "runtime"
ROLES = (TRIAL, SWEEP, RUNTIME)
# the help's option groups, in the order `bench run --help` and docs/options.md's table show them
WHAT, BUDGET, WHERE = "what to compare", "model, data and training budget", "where it runs and where it is recorded"
GROUPS = (WHAT, BUDGET, WHERE)
PRECISIONS = ("fp32", "bf16")   # --precision of bench run (config.py) and bench perf (cli.py)


def quote(text: str, limit: int = 80) -> str:
    """A user's value as an error message quotes it: ``repr`` of its first ``limit`` characters, and its length
    when it is longer (a 10 kB name is not echoed whole)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _shown(value: Any) -> str:
    return quote(value) if isinstance(value, str) else repr(value)


class ConfigError(ValueError):
    """A configuration value that cannot be used; raised before any work starts (``bench.config`` exports it)."""


class SettingError(ValueError):
    """A setting's value has the wrong type or is out of range."""


def setting(default: Any = None, help: str = "", *, role: str, default_factory: Callable[[], Any] | None = None,
            flag: str | None = None, cli: dict[str, Any] | None = None, group: str = "model, data and training budget",
            label: str | None = None, shown_default: str | None = None, key_default: Any = dataclasses.MISSING,
            resume: bool | None = None, **checks: Any) -> Any:
    """A dataclass field that declares one setting.

    ``role``: ``trial``, ``sweep`` or ``runtime`` (module docstring). ``checks``: ``min`` / ``max``
    (inclusive), ``open_min`` / ``open_max`` (exclusive), ``choices``. ``flag``: the command-line flag
    (default ``--name-with-dashes``; ``""`` for a setting with no flag); ``cli``: extra ``add_argument``
    keywords (``type``, ``action``, ``metavar``, ``dest``...). ``label``: how messages name it (default: the
    name with spaces). ``shown_default``: the default as the help and docs/options.md print it. ``key_default``: a
    ``trial`` setting added after sweeps were recorded is left out of the trial key while it has this value,
    so the keys (and resume) of earlier sweeps stay valid. ``resume``: offered by ``bench resume`` (default:
    runtime settings).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    metadata = {"help": help, "role": role, "flag": flag, "cli": cli or {}, "group": group, "label": label,
                "shown_default": shown_default, "key_default": key_default,
                "resume": role == RUNTIME if resume is None else resume, "checks": checks}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are settings, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "role" in f.metadata]


def names_with_role(role: str, *classes: type) -> tuple[str, ...]:
    return tuple(f.name for cls in classes for f in declared(cls) if f.metadata["role"] == role)


def label_of(f: dataclasses.Field) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ")


def flag_of(f: dataclasses.Field) -> str | None:
    flag = f.metadata.get("flag")
    if flag == "":
        return None
    return flag or "--" + f.name.replace("_", "-")


# -- types and ranges ----------------------------------------------------------------------------------

def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0]).split(' ', 1)[1]}s"
    # lazy: keeps bench --help, the report, import bench.api free of torch
    from methods.checks import describe   # imported when used: `import methods` imports torch
    return describe(kind)


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    origin = typing.get_origin(kind)
    if origin is tuple:
        inner = typing.get_args(kind)[0]
        return isinstance(value, (tuple, list)) and all(_matches(v, inner) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if origin is not None and isinstance(origin, type):
        return isinstance(value, origin)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _non_none(kind: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return kind, False


def coerce(f: dataclasses.Field, kind: Any, value: Any) -> Any:
    """``value`` as the setting's declared type, or a :class:`SettingError` naming the key and the value.

    Lists become tuples, an integer is a valid float, a single value is a one-item list; nothing else is
    converted (the string ``"0.1"`` is not a number, ``1.5`` is not an integer)."""
    base, optional = _non_none(kind)
    if value is None:
        if optional:
            return None
        raise SettingError(f"{f.name}: expected {_describe(base)}, got nothing")
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)[0]
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(_matches(v, inner) for v in items):
            raise SettingError(f"{f.name}: expected {_describe(base)}, got {_shown(value)}")
        return tuple(float(v) if inner is float else v for v in items)
    if not _matches(value, base):
        raise SettingError(f"{f.name}: expected {_describe(base)}, got {_shown(value)}"
                           + (" (a string)" if isinstance(value, str) and base in (int, float) else ""))
    if base is float and isinstance(value, int):
        return float(value)
    return value


def check_range(f: dataclasses.Field, value: Any) -> None:
    """The declared bounds and choices of a setting (methods/checks.py); messages name it by its label."""
    from methods.checks import range_problem  # lazy: keeps bench --help, the report, import bench.api free of torch

    problem = range_problem(value, f.metadata.get("checks", {}))
    if problem:
        raise SettingError(f"{label_of(f)} {problem}, got {_shown(value)}")


def check_fields(obj: Any) -> None:
    """Type and range of every declared setting of a dataclass instance; values are normalised in place
    (lists to tuples, integers to floats where a float is declared)."""
    hints = typing.get_type_hints(type(obj))
    for f in declared(type(obj)):
        value = getattr(obj, f.name)
        if typing.get_origin(_non_none(hints[f.name])[0]) is collections.abc.Mapping:
            continue   # nested tables (lambdas, zeroing, options) are checked by their owners
        value = coerce(f, hints[f.name], value)
        check_range(f, value)
        object.__setattr__(obj, f.name, value)


# -- the command line ----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, classes: Iterable[type],
                  keep: Callable[[dataclasses.Field], bool] = lambda f: True,
                  groups: dict[str, Any] | None = None, defaults: bool = True) -> None:
    """One option per declared setting of ``classes`` that ``keep`` accepts, in argument groups by the
    setting's ``group``. Every default is None, so that a config file can sit between the declared defaults
    and the command line. ``defaults`` False leaves the declared defaults out of the help (``bench resume``,
    whose settings default to the sweep's own)."""
    groups = {} if groups is None else groups
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in declared(cls):
            flag = flag_of(f)
            if flag is None or not keep(f):
                continue
            group = f.metadata["group"]
            if group not in groups:
                groups[group] = parser.add_argument_group(group)
            kwargs: dict[str, Any] = {"default": None, "help": _help_line(f) if defaults else f.metadata["help"]}
            base, _ = _non_none(hints[f.name])
            if base is bool and "action" not in f.metadata["cli"]:
                kwargs.update(action="store_const", const=True)
            elif base in (int, float) and "type" not in f.metadata["cli"] and "action" not in f.metadata["cli"]:
                kwargs["type"] = _argparse_number(base)
            if "choices" in f.metadata["checks"] and base is str:
                kwargs["choices"] = f.metadata["checks"]["choices"]
            kwargs.update(f.metadata["cli"], dest=f.name)
            groups[group].add_argument(flag, **kwargs)


def _argparse_number(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        from methods.checks import from_text  # lazy: keeps bench --help, the report, import bench.api free of torch
        try:
            return from_text(text, kind)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = kind.__name__
    return parse


def _help_line(f: dataclasses.Field) -> str:
    shown = default_text(f)
    return f.metadata["help"] + (f" (default: {shown})" if shown else "")


def default_text(f: dataclasses.Field) -> str:
    if f.metadata.get("shown_default") is not None:
        return f.metadata["shown_default"]
    if f.default is dataclasses.MISSING or f.default is None or f.default == ():
        return ""
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def markdown_table(classes: Iterable[type], extra: Iterable[tuple[str, str, str]] = (),
                   group_order: Sequence[str] = (), owners: Mapping[str, str] | None = None) -> str:
    """The options table (docs/options.md): flag, default, role, the protocols it belongs to (``owners``: setting name ->
    protocol names; empty: every protocol), meaning, grouped in ``group_order``; ``extra`` rows for options that
    are not settings (``--config``, ``--dry-run``...)."""
    owners = owners or {}
    fields = [f for cls in classes for f in declared(cls) if flag_of(f) is not None]
    order = {group: i for i, group in enumerate(group_order)}
    fields.sort(key=lambda f: order.get(f.metadata["group"], len(order)))
    rows = ["| option | default | role | protocol | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        metavar = f.metadata["cli"].get("metavar")
        shown = f"{flag_of(f)} {metavar}" if metavar else flag_of(f)
        rows.append(f"| `{_md(shown)}` | {_md(default_text(f))} | {f.metadata['role']} | {owners.get(f.name, '')} | "
                    f"{_md(f.metadata['help'])} |")
    for flag, default, meaning in extra:
        rows.append(f"| `{flag}` | {default} | | | {_md(meaning)} |")
    return "\n".join(rows)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


# -- parsers of list-valued options (argparse ``type`` functions) ---------------------------------------

def parse_items(text: str) -> tuple[str, ...]:
    """``a,b,c``: comma-separated names."""
    items = tuple(v.strip() for v in text.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected at least one value")
    return items


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in parse_items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in parse_items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_per_method_floats(text: str) -> tuple[str, tuple[float, ...]]:
    """``V1,V2`` (every method on the axis: ``*``) or ``METHOD=V1,V2`` (one method)."""
    method, sep, values = text.partition("=")
    return (method.strip(), parse_floats(values)) if sep else ("*", parse_floats(text))


def parse_zeroing(text: str) -> dict[str, str]:
    """``SPEC`` for every method, or ``METHOD=SPEC`` entries (comma separated), e.g. ``l1=threshold:1e-4``."""
    out: dict[str, str] = {}
    for item in parse_items(text):
        method, sep, spec = item.partition("=")
        out[method.strip() if sep else "*"] = spec.strip() if sep else item
    return out


def parse_option(text: str) -> tuple[str, str, str]:
    """``METHOD.KEY=VALUE``."""
    method_key, sep, value = text.partition("=")
    method, dot, key = method_key.partition(".")
    if not (sep and dot and method and key):
        raise argparse.ArgumentTypeError(f"expected METHOD.OPTION=VALUE (e.g. l1l2.norm_scale=none), got {text!r}")
    return method.strip(), key.strip(), value.strip()


class MergeDict(argparse.Action):
    """A repeatable option whose values merge into one dict: ``(key, value)`` pairs, ``(outer, key, value)``
    triples (nested), or dicts."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        merged = dict(getattr(namespace, self.dest) or {})
        if isinstance(values, dict):
            merged.update(values)
        elif len(values) == 2:
            merged[values[0]] = values[1]
        else:
            outer, key, value = values
            merged[outer] = {**merged.get(outer, {}), key: value}
        setattr(namespace, self.dest, merged)


class Extend(argparse.Action):
    """A repeatable option whose values collect into one tuple."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, (*(getattr(namespace, self.dest) or ()), values))


_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:/@\s]*):[^@\s/]+@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it masked: ``postgresql://user:***@host/db``."""
    return _PASSWORD.sub(r"\1:***@", text)


MAX_EXPERIMENT_NAME = 128   # an experiment names the report's folder: file systems take 255 bytes a name


def check_experiment_name(name: str) -> None:
    """An experiment name bench can create and report: 1-128 printable characters, not only dots or spaces."""
    if not (0 < len(name) <= MAX_EXPERIMENT_NAME and bool(name.strip(". ")) and name.isprintable()):
        raise ConfigError(f"experiment name must be 1-{MAX_EXPERIMENT_NAME} printable characters, not only dots or "
                          f"spaces (it names the report's folder), got {quote(name)}")
