"""The user's own code and files, as source strings: ``FILE.py:CALLABLE``, ``MODULE:CALLABLE`` and ``--plugin``.

A leaf module (it imports nothing of bench): models.py and the dataset sources load the user's callables
through :func:`load_callable` and translate :class:`UserCodeError` into their own errors; a trial's key records
a file by its content (:func:`source_key`, :func:`file_digest`), and people read it by its name
(:func:`display_name`). :func:`load_plugins` imports the modules and files that register methods, models and
datasets of their own.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

PREFIXED = ("torchvision:", "timm:")   # sources of another kind whose names hold a colon


class UserCodeError(ValueError):
    """A source string that names no loadable file, module or callable; the message names it."""


def file_source(source: str) -> tuple[str, str] | None:
    """(path, callable) of a ``FILE.py:CALLABLE`` source (its path ends in .py or names a folder), else None."""
    if source.startswith(PREFIXED):
        return None
    path, _, attr = source.rpartition(":")
    return (path, attr) if path and attr and (path.endswith(".py") or os.sep in path) else None


def absolute(source: str) -> str:
    """A ``FILE.py:CALLABLE`` source with its file as an absolute path (trials and ``bench resume`` find it from
    anywhere); any other source unchanged."""
    found = file_source(source)
    return f"{os.path.abspath(found[0])}:{found[1]}" if found else source


def file_digest(path: str) -> str:
    """``sha256:<first 16 hex digits>`` of a file's content (what a trial's key records of a file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def source_key(source: str) -> str:
    """What a trial's key records of a source: the source itself, except for a file, whose content digest
    replaces its path (moving the file keeps the key; editing it changes the key)."""
    found = file_source(source)
    if found is None:
        return source
    try:
        return f"file-{file_digest(found[0])}:{found[1]}"
    except OSError:
        return source


def display_name(source: str) -> str:
    """A source as people say it: a file's name without its folder (``my_net.py:MyNet``)."""
    found = file_source(source)
    return f"{os.path.basename(found[0])}:{found[1]}" if found else source


def import_file(path: str, prefix: str) -> ModuleType:
    """The module of a ``.py`` file, imported once per absolute path (under ``prefix`` + a digest of the path in
    ``sys.modules``); a failed import leaves nothing behind. Raises what the file's code raises."""
    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no such file {file}")
    key = prefix + hashlib.sha256(file.encode()).hexdigest()[:12]
    module = sys.modules.get(key)
    if module is None:
        spec = importlib.util.spec_from_file_location(key, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return module


def load_callable(source: str, what: str = "model", hint: Callable[[ModuleType], str] | None = None
                  ) -> tuple[Callable[..., Any], str]:
    """(the callable, where it came from) of ``FILE.py:CALLABLE`` or ``MODULE:CALLABLE``; ``what`` names the kind
    of source in the error (``model source 'net.py:Net': ...``), ``hint(module)`` is added to the error when the
    module has no such callable."""
    path, _, attr = source.rpartition(":")
    if not path or not attr:
        raise UserCodeError(f"{what} source {source!r}: expected FILE.py:CALLABLE or MODULE:CALLABLE")
    if file_source(source):
        file = os.path.abspath(path)
        if not os.path.isfile(file):
            raise UserCodeError(f"{what} source {source!r}: no such file {file}")
        try:
            module = import_file(file, "bench_model_")
        except Exception as err:
            raise UserCodeError(f"{what} source {source!r}: importing {file} failed: {type(err).__name__}: {err}"
                                ) from None
        where = file
    else:
        try:
            module = importlib.import_module(path)
        except Exception as err:
            raise UserCodeError(f"{what} source {source!r}: cannot import module {path!r}: {type(err).__name__}: "
                                f"{err}") from None
        where = f"module {path}"
    builder = getattr(module, attr, None)
    if builder is None or not callable(builder):
        raise UserCodeError(f"{what} source {source!r}: {where} has no callable {attr!r}"
                            + (hint(module) if hint else ""))
    return builder, where


def load_plugins(specs: Iterable[str]) -> None:
    """Import the modules that register methods, models or datasets of their own: ``package.module`` names
    (importable where the trials run) or paths to ``.py`` files. Importing one twice is a no-op."""
    for spec in specs:
        try:
            if spec.endswith(".py") or os.sep in spec:
                import_file(spec, "bench_plugin_")
            else:
                importlib.import_module(spec)
        except Exception as err:
            raise UserCodeError(f"cannot load method plugin {spec!r}: {type(err).__name__}: {err}") from None
