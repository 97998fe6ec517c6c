"""The method registry: ``register_method`` (a class decorator that refuses duplicate names), ``get_method`` and
``list_methods``. The plugins import it; methods/__init__.py imports the plugins and re-exports these, so no
plugin imports the package back."""
from __future__ import annotations

from .base import Method, MethodError

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
