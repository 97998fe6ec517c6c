"""The interface every sparsity method implements.

A method is one small class registered with :func:`methods.register_method`. The trainer in
``bench/trainer.py`` knows methods only through this interface, so adding a method never touches the
harness: one file in ``methods/`` plus one import line in ``methods/__init__.py``.

What a method provides
----------------------
- ``name``, ``description``, ``paper`` and ``formula`` (one line each; the README and the report print them);
- ``Hparams``: a frozen dataclass of its options with defaults. Each field may carry metadata
  (``help``, ``choices``, ``min``, ``max``, ``open_max``) that :meth:`HparamsBase.__post_init__` checks,
  so a bad value is a clear error before any training starts;
- ``penalty(model)``: a 0-dim tensor added to the loss as ``penalty_weight * penalty``;
- ``default_zeroing``: the zeroing rule spec from METHODS.md (``"cumulative:0.01"``, ``"threshold:1e-4"``,
  ``"none"``), overridable from the command line;
- ``sweep_axis`` (``"lam"``, ``"ratio"`` or ``None``) and ``default_grid``;
- optional hooks ``after_step(model, state)`` and ``on_epoch_end(model, state)``. ``state`` is the small
  object the trainer passes (epoch, epochs, input_shape, a way to draw training batches,
  ``remove(layer, filter_indices)``, ``evaluate()``, ``log(**metrics)``): methods never import ``bench``;
- ``check_budget(epochs)``: raises if the method cannot run in that many epochs (checked before training).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn


class MethodError(ValueError):
    """A method name or option that cannot be used; raised before any training starts."""


def option(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with a default, a help line and declarative checks.

    ``checks`` may hold ``choices`` (allowed values), ``min`` / ``max`` (inclusive bounds) and
    ``open_min`` / ``open_max`` (exclusive bounds).
    """
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True)
class HparamsBase:
    """Base of every method's ``Hparams``: validates each field against its metadata."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            where = f"option {f.name!r}"
            if "choices" in meta and value not in meta["choices"]:
                raise MethodError(f"{where} must be one of {list(meta['choices'])}, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    raise MethodError(f"{where} must be a finite number, got {value!r}")
                if "min" in meta and value < meta["min"]:
                    raise MethodError(f"{where} must be >= {meta['min']}, got {value!r}")
                if "max" in meta and value > meta["max"]:
                    raise MethodError(f"{where} must be <= {meta['max']}, got {value!r}")
                if "open_min" in meta and value <= meta["open_min"]:
                    raise MethodError(f"{where} must be > {meta['open_min']}, got {value!r}")
                if "open_max" in meta and value >= meta["open_max"]:
                    raise MethodError(f"{where} must be < {meta['open_max']}, got {value!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "HparamsBase":
        """Build from a mapping whose values may be strings (command line, config file).

        Unknown keys and values that do not convert to the field's type are errors that name the
        valid options.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise MethodError(f"unknown option(s) {', '.join(unknown)}; valid options: {valid}")
        kwargs = {}
        for key, value in options.items():
            kwargs[key] = _coerce(value, type(fields[key].default), key)
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, kind: type, key: str) -> Any:
    if not isinstance(value, str) or kind is str:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        return kind(value)
    except ValueError:
        raise MethodError(f"option {key!r} expects a {kind.__name__}, got {value!r}") from None


class Method:
    """Base class of all sparsity methods (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    default_zeroing: ClassVar[str] = "none"
    sweep_axis: ClassVar[str | None] = "lam"
    default_grid: ClassVar[tuple[float, ...]] = ()

    @dataclass(frozen=True)
    class Hparams(HparamsBase):
        lam: float = option(0.0, "penalty strength: the loss is task_loss + lam * penalty", min=0.0)

    def __init__(self, hparams: HparamsBase | None = None, **options: Any) -> None:
        if hparams is not None and options:
            raise MethodError("pass either an Hparams instance or keyword options, not both")
        if hparams is None:
            hparams = self.Hparams.from_options(options)
        elif not isinstance(hparams, self.Hparams):
            raise MethodError(f"{self.name}: expected {self.Hparams.__qualname__}, got {type(hparams).__name__}")
        self.hparams = hparams

    # -- what the trainer asks -------------------------------------------------------------------
    @property
    def penalty_weight(self) -> float:
        """The factor of ``penalty(model)`` in the loss; 0 means the penalty is not computed per step."""
        return float(getattr(self.hparams, "lam", 0.0))

    @property
    def has_penalty(self) -> bool:
        """False for post-hoc criteria whose ``penalty`` is always 0 (nothing to log or optimise)."""
        return True

    @property
    def kernel_norm_scale(self) -> str:
        """How the cumulative zeroing rule scales kernel pseudo-norms: the method's ``norm_scale`` option
        when it has one (the l1/l2 family), else eq. 2's ``filters``."""
        return getattr(self.hparams, "norm_scale", "filters")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def check_budget(self, epochs: int) -> None:
        """Raise :class:`MethodError` if the method cannot run in ``epochs`` epochs (checked before training)."""

    def after_step(self, model: nn.Module, state: Any) -> None:
        """Called after every optimizer step (and after the masks are re-applied)."""

    def on_epoch_end(self, model: nn.Module, state: Any) -> None:
        """Called at the end of every epoch, before the zeroing rule and the evaluation."""

    def swept_value(self) -> float | None:
        """The value of this trial's sweep axis (``lam`` or ``ratio``), or None."""
        return None if self.sweep_axis is None else getattr(self.hparams, self.sweep_axis)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.hparams.as_dict().items())
        return f"{type(self).__name__}({opts})"


class PostHocMethod(Method):
    """Base of methods with no penalty term (a baseline, or a criterion applied by hooks)."""

    sweep_axis: ClassVar[str | None] = None

    @property
    def has_penalty(self) -> bool:
        return False

    def penalty(self, model: nn.Module) -> torch.Tensor:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)


def eligible_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The conv layers a method regularizes and a zeroing rule may prune, in model order.

    Every ``nn.Conv2d`` of the model, minus the names a model lists in its ``sparsity_exclude``
    attribute (for example the convs that feed a residual sum).
    """
    exclude = set(getattr(model, "sparsity_exclude", ()))
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in exclude]
