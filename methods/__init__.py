"""The plugin registry of sparsity methods.

``register_method`` is a class decorator that refuses duplicate names; ``get_method(name)`` returns the
class (``get_method("l1l2")()`` builds one with default options); ``list_methods()`` lists the names.
Every plugin module is imported at the bottom of this file: adding a method is one file plus one
import line, and the contract tests (which loop over ``list_methods()``) enrol it automatically.
"""
from __future__ import annotations

from .base import (HparamsBase, Method, MethodError, MethodState, PruneThenFinetune, eligible_convs, eval_mode,
                   following_batchnorms, option)

_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` subclass to the registry under ``cls.name``."""
    if not isinstance(cls, type) or not issubclass(cls, Method):
        raise TypeError(f"register_method expects a Method subclass, got {cls!r}")
    if not cls.name or not cls.name.replace("_", "").replace("-", "").isalnum() or cls.name != cls.name.lower() \
            or not cls.name[0].isalpha():
        raise ValueError(f"method name must be lowercase letters, digits, '_' and '-', starting with a letter, got "
                         f"{cls.name!r}")
    if cls.name in _REGISTRY:
        raise ValueError(f"a method named {cls.name!r} is already registered ({_REGISTRY[cls.name].__module__})")
    if cls.sweep_axis is not None and cls.sweep_axis not in {f for f in cls.Hparams.__dataclass_fields__}:
        raise ValueError(f"{cls.name}: sweep_axis {cls.sweep_axis!r} is not a field of its Hparams")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The registered method class called ``name``; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; valid methods: {', '.join(list_methods())}") from None


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return sorted(_REGISTRY)


# Plugins: one import line each.
from . import none  # noqa: E402,F401
from . import l1  # noqa: E402,F401
from . import l2  # noqa: E402,F401
from . import l1l2  # noqa: E402,F401
from . import ssl  # noqa: E402,F401
from . import nisp  # noqa: E402,F401
from . import l0sgl  # noqa: E402,F401
from . import hgsr  # noqa: E402,F401
from . import slimming  # noqa: E402,F401
from . import criteria  # noqa: E402,F401
from . import group_reg  # noqa: E402,F401

__all__ = [
    "HparamsBase",
    "Method",
    "MethodError",
    "MethodState",
    "PruneThenFinetune",
    "eligible_convs",
    "eval_mode",
    "following_batchnorms",
    "get_method",
    "list_methods",
    "option",
    "register_method",
]
