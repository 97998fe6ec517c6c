"""The plugin registry of sparsity methods.

``register_method`` is a class decorator that refuses duplicate names; ``get_method(name)`` returns the
class (``get_method("l1l2")()`` builds one with default options); ``list_methods()`` lists the names.
Every plugin module is imported at the bottom of this file: adding a method is one file plus one
import line, and the contract tests (which loop over ``list_methods()``) enrol it automatically.
"""
from __future__ import annotations

from .base import (HparamsBase, Method, MethodError, MethodState, PruneThenFinetune, eligible_convs, eval_mode,
                   following_batchnorms, option)
from .registry import get_method, list_methods, register_method

# Plugins: one import line each.
from . import none  # noqa: F401
from . import l1  # noqa: F401
from . import l2  # noqa: F401
from . import l1l2  # noqa: F401
from . import ssl  # noqa: F401
from . import nisp  # noqa: F401
from . import l0sgl  # noqa: F401
from . import hgsr  # noqa: F401
from . import slimming  # noqa: F401
from . import criteria  # noqa: F401
from . import group_reg  # noqa: F401

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
