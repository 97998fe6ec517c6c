"""The protocol registry: ``register_protocol`` (a class decorator), ``get_protocol``, ``list_protocols``. The
protocol files import it; bench/protocols/__init__.py imports them (no loop back into the package)."""
from __future__ import annotations

from typing import TypeVar

from ..settings import ConfigError
from .base import Protocol

DEFAULT = "regularize"   # --protocol's default
_REGISTRY: dict[str, Protocol] = {}
P = TypeVar("P", bound=type[Protocol])


def register_protocol(cls: P) -> P:
    """Register a protocol class under its ``name`` (one instance serves every trial)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    existing = _REGISTRY.get(cls.name)   # the same class again (a plugin file loaded twice) replaces itself
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"protocol {cls.name!r} is registered already")
    _REGISTRY[cls.name] = cls()
    return cls


def get_protocol(name: str) -> Protocol:
    """The protocol registered as ``name``; a :class:`ConfigError` listing the protocols otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; protocols: {', '.join(list_protocols())} (`bench list`; a "
                          "--plugin file may register more)") from None


def list_protocols() -> list[str]:
    return list(_REGISTRY)
