"""The interface every sparsity method implements.

A method is one small class registered with :func:`methods.register_method`. The trainer in
``bench/trainer.py`` knows methods only through this interface, so adding a method never touches the
harness: one file in ``methods/`` plus one import line in ``methods/__init__.py``.

What a method provides
----------------------
- ``name``, ``description``, ``paper`` and ``formula`` (one line each; `bench list` and the report print them);
- ``Hparams``: a frozen dataclass of its options with defaults. Each field may carry metadata
  (``help``, ``choices``, ``min``, ``max``, ``open_max``) that :meth:`HparamsBase.__post_init__` checks,
  so a bad value is a clear error before any training starts;
- ``penalty(model)``: a 0-dim tensor added to the loss as ``penalty_weight * penalty``;
- ``default_zeroing``: the zeroing rule spec from docs/methods.md (``"cumulative:0.01"``, ``"threshold:1e-4"``,
  ``"none"``), overridable from the command line;
- ``sweep_axis`` (``"lam"``, ``"ratio"`` or ``None``) and ``default_grid``;
- optional hooks ``on_epoch_start(model, state)``, ``after_step(model, state)`` and
  ``on_epoch_end(model, state)``. ``state`` is what the trainer offers, typed by :class:`MethodState`
  (epoch, epochs, input_shape, layers, a way to draw training batches, ``remove(layer, filter_indices)``,
  ``alive(layer)``, ``filter_parameters(layer)``, ``evaluate()``, ``log(**metrics)``): methods never import
  ``bench``, and CI checks statically (mypy) that the trainer's state and the tests' stand-in implement it;
- ``check_budget(epochs)``: raises if the method cannot run in that many epochs (checked before training);
- ``check_model(model)``: raises if the method cannot work on that model (for example ``slimming`` needs a
  BatchNorm after every eligible conv); checked when the sweep's model is first built, before any trial.

Methods that train, then prune once, then fine-tune (``nisp``, ``hgsr``, ``slimming``) derive from
:class:`PruneThenFinetune`, which owns the split of the epochs and switches the penalty off for fine-tuning.
The learning-rate schedule (``bench/recipe.py``) is a function of the epoch over the whole budget: the cut does
not restart it, and the fine-tuning epochs run at the rates the schedule gives them.

The math of every method and zeroing rule: docs/methods.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol

import torch
from torch import nn

from .checks import from_text, range_problem
from .groups import Unit, kernel_norms, single_units


class MethodError(ValueError):
    """A method name or option that cannot be used; raised before any training starts."""


class MethodState(Protocol):
    """What a method's hooks may use of the running trial: the trainer passes an object with exactly this
    (``bench.trainer.TrialState``), and methods never import ``bench``. Layers are the prunable units of groups
    (``methods/groups.py``), named by their first conv's module name (``conv1``, ``layer1.0.conv1``), in model
    order; a "filter" index is a group index."""

    epoch: int                         # the current epoch, from 1
    epochs: int                        # the trial's epochs in all
    input_shape: tuple[int, ...]       # one example's shape, (C, H, W)
    seed: int                          # the trial's seed (a method's own random draws start from it)

    @property
    def layers(self) -> tuple[str, ...]:
        """The prunable units (what a method regularizes and a rule may prune); ``Method.units`` gives them."""
        ...

    def draw_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random training examples, normalised, with their labels, from a generator of the method's own
        (seeded by the trial's seed): drawing them never moves the order of the training batches, so trials of
        one seed see the same batches whatever their method."""
        ...

    def remove(self, layer: str, filters: Sequence[int] | torch.Tensor) -> list[int]:
        """Remove filters of ``layer`` (indices or a boolean vector); they stay exactly zero to the end.
        Returns the indices removed (the last alive filter of a layer is never removed)."""
        ...

    def alive(self, layer: str) -> torch.Tensor:
        """Boolean vector over the filters of ``layer``: which are alive."""
        ...

    def filter_parameters(self, layer: str) -> Sequence[torch.Tensor]:
        """The parameters a removal of one of ``layer``'s groups zeroes, each indexed by group along its first
        dimension (views): member convs' weights and biases, member BatchNorms' weights and biases."""
        ...

    def evaluate(self) -> float:
        """Test accuracy of the model as it is now."""
        ...

    def log(self, **values: float) -> None:
        """Extra metrics recorded with this epoch (e.g. the accuracy right after pruning)."""
        ...


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode for the block (BatchNorm on running statistics, no dropout), then back in
    the mode it was in, whatever happens inside."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def option(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with a default, a help line and declarative checks.

    ``checks`` may hold ``choices`` (allowed values), ``min`` / ``max`` (inclusive bounds) and
    ``open_min`` / ``open_max`` (exclusive bounds): methods/checks.py, the settings' vocabulary too.
    """
    return field(default=default, metadata={"help": help, **checks})


@dataclass(frozen=True)
class HparamsBase:
    """Base of every method's ``Hparams``: validates each field against its metadata."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = range_problem(value, f.metadata)
            if problem:
                raise MethodError(f"option {f.name!r} {problem}, got {value!r}")

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
        return from_text(value, kind)
    except ValueError as err:
        raise MethodError(f"option {key!r}: {err}") from None


class Method:
    """Base class of all sparsity methods (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    default_zeroing: ClassVar[str] = "none"
    sweep_axis: ClassVar[str | None] = "lam"
    default_grid: ClassVar[tuple[float, ...]] = ()
    #: what the method can do, by the kinds of protocol that need it (each protocol in bench/protocols/ says
    #: which kinds it accepts): ``regularize`` (it trains: its penalty and its own zeroing or pruning, the
    #: strength searched or swept) and ``prune-to-target`` (it scores groups by :meth:`importance` for a pruning
    #: step: prune-to-target, iterative). Criteria that only rank groups declare the second only
    protocols: ClassVar[tuple[str, ...]] = ("regularize", "prune-to-target")
    #: how the pruning step makes :meth:`importance` comparable across units before its one global ranking
    #: (``bench/pruning.py``): ``mean`` (each unit's scores divided by their mean, Torch-Pruning's default),
    #: ``lamp`` (LAMP's normalisation within each unit), ``sum`` or ``none`` (raw scores on one scale already)
    importance_normalizer: ClassVar[str] = "mean"
    #: the dense reference (``none``): under prune-to-target it runs once per seed, unpruned, beside the targets
    reference: ClassVar[bool] = False

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

    #: True when :meth:`add_penalty_grad` gives the penalty's gradient in closed form: the trainer then
    #: calls it after the task loss's backward pass instead of differentiating ``penalty`` with autograd
    #: (fewer, larger operations per step; ``penalty`` itself is then only evaluated once per epoch)
    closed_form_grad: ClassVar[bool] = False

    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        """Add ``weight * d penalty / d parameter`` to each parameter's ``.grad`` in place, without autograd.

        Only called when ``closed_form_grad`` is True; it must equal autograd's gradient of
        :meth:`penalty` (the contract tests compare the two on every registered method that has it).
        """
        raise NotImplementedError

    def per_model(self, model: nn.Module, key: str, compute):
        """``compute()``, remembered under ``key`` for the last model seen: what a method derives from the
        model's layout once instead of at every step."""
        cache = self.__dict__.setdefault("_per_model", {})
        hit = cache.get(key)
        if hit is None or hit[0] is not model:
            hit = cache[key] = (model, compute())
        return hit[1]

    def bind(self, units: Sequence[Unit]) -> None:
        """The model's prunable units (``bench.structure`` derives them from the dependency graph); the trainer
        calls this before training. Unbound, a method treats every eligible conv as its own unit."""
        self.__dict__["_units"] = tuple(units)

    def units(self, model: nn.Module) -> tuple[Unit, ...]:
        """The units this method regularizes and scores: the bound ones, else one per eligible conv (with the
        BatchNorm that follows it), remembered for the last model seen (called at every step)."""
        bound = self.__dict__.get("_units")
        if bound is not None:
            return bound
        return self.per_model(model, "units", lambda: tuple(single_units(model, eligible_convs(model),
                                                                         following_batchnorms(model))))

    def layer_sum(self, model: nn.Module, term) -> torch.Tensor:
        """The sum of ``term(unit)`` over the units (a per-layer penalty); an error without any."""
        terms = [term(unit) for unit in self.units(model)]
        if not terms:
            raise ValueError(f"{type(model).__name__} has no eligible Conv2d layer to regularize")
        return torch.stack(terms).sum() if len(terms) > 1 else terms[0]

    def check_budget(self, epochs: int) -> None:
        """Raise :class:`MethodError` if the method cannot run in ``epochs`` epochs (checked before training)."""

    def importance(self, model: nn.Module, state: MethodState) -> dict[str, torch.Tensor]:
        """A score per group of every unit in ``state.layers`` (higher: kept first), what the pruning step of
        ``--protocol prune-to-target`` ranks after :attr:`importance_normalizer`. The default: each group's kernel
        pseudo-norm (the l1 norm of its filter, the mean over a coupled group's filters), the measure the l1/l2
        family regularizes; methods with another measure override it."""
        units = {unit.name: unit for unit in self.units(model)}
        with torch.no_grad():
            return {layer: kernel_norms(units[layer], "none").detach().float() for layer in state.layers}

    def defer_pruning(self) -> None:
        """Called once before training under ``--protocol prune-to-target``: the protocol's pruning step replaces
        a pruning step of the method's own (:class:`PruneThenFinetune`); nothing to do for the others."""

    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`MethodError` if the method cannot work on ``model`` (checked before any training)."""

    # The three hooks run in every epoch the method trains in: every epoch under --protocol regularize; under
    # --protocol prune-to-target the sparse epochs only (up to and including the pruning epoch, whose
    # on_epoch_end runs before the pruning step), not the fine-tuning epochs, which are plain training.

    def on_epoch_start(self, model: nn.Module, state: MethodState) -> None:
        """Called at the start of every epoch the method trains in (see above), before its first step."""

    def after_step(self, model: nn.Module, state: MethodState) -> None:
        """Called after every optimizer step of an epoch the method trains in (after the masks are re-applied)."""

    def on_epoch_end(self, model: nn.Module, state: MethodState) -> None:
        """Called at the end of every epoch the method trains in (under prune-to-target not in fine-tuning),
        before the zeroing rule and the evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """What the method itself changes while training (beyond the model, the optimizer and the masks, which
        the trainer saves): a trial's per-epoch checkpoint holds it, and :meth:`load_state_dict` puts it back
        when the trial continues from that epoch. Tensors, numbers, strings and containers of them. The
        default: nothing (most methods keep no state between epochs)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (tensors already on the trial's device)."""

    def swept_value(self) -> float | None:
        """The value of this trial's sweep axis (``lam`` or ``ratio``), or None."""
        return None if self.sweep_axis is None else getattr(self.hparams, self.sweep_axis)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.hparams.as_dict().items())
        return f"{type(self).__name__}({opts})"


class PostHocMethod(Method):
    """Base of methods with no penalty term (a baseline, or a criterion applied by hooks). Its hooks run as any
    method's do: every epoch under the regularize protocol, the sparse epochs only under prune-to-target."""

    sweep_axis: ClassVar[str | None] = None

    @property
    def has_penalty(self) -> bool:
        return False

    def penalty(self, model: nn.Module) -> torch.Tensor:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)


class PruneThenFinetune(Method):
    """Base of methods that train (with their penalty, if any), prune once at the end of epoch
    ``epochs - finetune_epochs``, then fine-tune the pruned network without the penalty.

    Subclasses give their ``Hparams`` a ``finetune_epochs`` field (0 = ``default_finetune(epochs)``) and
    implement :meth:`prune`, which removes filters through ``state.remove``. The accuracies right before and
    after pruning are recorded with that epoch as ``accuracy_before_pruning`` and ``accuracy_after_pruning``.
    """

    def __init__(self, hparams: HparamsBase | None = None, **options: Any) -> None:
        super().__init__(hparams, **options)
        self.pruned = False
        self.prunes_itself = True   # False under --protocol prune-to-target (:meth:`defer_pruning`)

    def defer_pruning(self) -> None:
        self.prunes_itself = False

    @staticmethod
    def default_finetune(epochs: int) -> int:
        return max(1, epochs // 2)

    def finetune_epochs(self, epochs: int) -> int:
        return getattr(self.hparams, "finetune_epochs", 0) or self.default_finetune(epochs)

    def prune_epoch(self, epochs: int) -> int:
        """The epoch at whose end the network is pruned."""
        return epochs - self.finetune_epochs(epochs)

    def check_budget(self, epochs: int) -> None:
        if self.prune_epoch(epochs) < 1:
            raise MethodError(f"{self.name} needs at least one pre-training epoch: finetune_epochs="
                              f"{self.finetune_epochs(epochs)} with {epochs} epochs in all")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        if self.pruned:  # fine-tuning is plain training
            return next(model.parameters()).new_zeros(())
        return self.training_penalty(model)

    def add_penalty_grad(self, model: nn.Module, weight: float) -> None:
        if not self.pruned:
            self.add_training_penalty_grad(model, weight)

    def add_training_penalty_grad(self, model: nn.Module, weight: float) -> None:
        """Closed-form gradient of :meth:`training_penalty` (see :meth:`Method.add_penalty_grad`)."""
        raise NotImplementedError

    def training_penalty(self, model: nn.Module) -> torch.Tensor:
        """The penalty of the training phase (before pruning)."""
        return next(model.parameters()).new_zeros(())

    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pruned = bool(state.get("pruned", False))

    def on_epoch_end(self, model: nn.Module, state: MethodState) -> None:
        if self.pruned or not self.prunes_itself or state.epoch != self.prune_epoch(state.epochs):
            return
        before = state.evaluate()
        self.prune(model, state)
        self.pruned = True
        state.log(accuracy_before_pruning=before, accuracy_after_pruning=state.evaluate())

    def prune(self, model: nn.Module, state: MethodState) -> None:
        raise NotImplementedError


def eligible_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The conv layers a method regularizes and a zeroing rule may prune, in model order.

    Every ``nn.Conv2d`` of the model, minus the names a model lists in its ``sparsity_exclude``
    attribute (for example the convs that feed a residual sum).
    """
    exclude = set(getattr(model, "sparsity_exclude", ()))
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in exclude]


def grad_of(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, created as zeros when the backward pass left it unset."""
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


def following_batchnorms(model: nn.Module, require: bool = False) -> dict[str, nn.BatchNorm2d]:
    """The BatchNorm that follows each eligible conv, by conv name: the next module in the model's
    definition order when it is a ``BatchNorm2d`` with as many channels (``conv, bn`` pairs, as in VGG,
    ResNet blocks and ``lenet5-bn``). With ``require``, a conv without one is a :class:`MethodError`."""
    modules = list(model.named_modules())
    convs = dict(eligible_convs(model))
    out: dict[str, nn.BatchNorm2d] = {}
    for (name, module), (_, nxt) in zip(modules, modules[1:]):
        if name in convs and isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == module.out_channels:
            out[name] = nxt
    missing = [name for name in convs if name not in out]
    if require and (missing or not convs):
        raise MethodError(f"{type(model).__name__} has no BatchNorm after conv(s) "
                          f"{', '.join(missing) or '(none eligible)'}: this method regularizes BN scale factors; "
                          "use a model with BatchNorm (vgg11, lenet5-bn, resnet20, resnet56)")
    return out
