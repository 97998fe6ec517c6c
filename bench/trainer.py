"""THE training loop: one loop for every method, which it knows only through the method interface.

Per epoch, first: the method's ``on_epoch_start`` hook. Per step: forward,
``task_loss + method.penalty_weight * method.penalty(model)``, backward (a method with ``closed_form_grad``
adds its penalty's gradient directly instead: the same gradient with fewer operations), gradient masks,
optimizer step, the zeroing rule's per-step part, filter masks re-applied (removed filters stay exactly
zero, momentum included) and the method's ``after_step`` hook.

Per epoch: the method's ``on_epoch_end`` hook, the zeroing rule's epoch part (before evaluation, as in
Berthelier et al.), then the metrics of ``metrics.py`` and the test accuracy, handed to ``report``.

Precision: ``precision="bf16"`` runs the forward pass and the task loss under bfloat16 autocast (weights,
gradients, penalty, optimizer step and evaluation stay float32); ``channels_last`` stores conv weights and
inputs channels-last. Both are off by default: on a 2-core CPU neither helps LeNet.

Data path (``bench/batches.py``, docs/architecture.md): each epoch draws a permutation from the trial's generator;
the memory path slices the uint8 dataset held on the device with it, the streaming path reads the same batches
through a DataLoader; both normalise on the device. A trial is a pure function of its config and seed: on CPU
the same config and seed give identical metrics, on either path.
"""
from __future__ import annotations

import copy
import math
import random
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as M
from . import names as N
from .batches import MemoryBatches, StreamBatches, make_batches
from .config import TrialConfig
from .datatypes import Dataset, StreamData
from .models import build_model
from .protocols import Step, get_protocol
from .pruning import plan
from .recipe import Augment, build_optimizer, parse_schedule, rate
from .structure import Structure, derive, removed_channels
from .targets import KINDS
from .weights import load_initial_weights
from .zeroing import FilterMasks, parse_zeroing


class TrialDiverged(RuntimeError):
    """The training loss or the penalty became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available here")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrialState:
    """What a method's hooks may use: implements ``methods.base.MethodState`` (checked by mypy in CI)."""

    def __init__(self, model: nn.Module, masks: FilterMasks, batches: MemoryBatches | StreamBatches,
                 config: TrialConfig) -> None:
        self.model = model
        self.masks = masks
        self.config = config
        self.epoch = 0
        self.epochs = config.train.epochs
        self.step = 0
        self.device = batches.device
        self.input_shape = batches.input_shape
        self._batches = batches
        self.seed = config.seed
        # the method's own draws (NISP's and HGSR's samples, Taylor's batches): a generator apart from the one that
        # orders the epochs, so trials of one seed see the same batches whatever their method
        self.draws = torch.Generator().manual_seed(method_seed(config.seed))
        self.removal_open = True   # False under prune-to-target: only its pruning step removes groups
        self.extra_metrics: dict[str, float] = {}

    @property
    def layers(self) -> tuple[str, ...]:
        """Eligible conv layers, model order."""
        return self.masks.layers

    def draw_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n random training examples (normalised) from the method's own generator (``draws``)."""
        x, y = self._batches.take(torch.randint(self._batches.n, (n,), generator=self.draws))
        return self._batches.normalise(x), y

    def remove(self, layer: str, filters) -> list[int]:
        """Remove filters of ``layer`` through the masks (they stay zero); returns the indices removed. Under
        prune-to-target nothing but its pruning step removes groups: a method's removal is ignored there."""
        return self.masks.remove(layer, filters) if self.removal_open else []

    def alive(self, layer: str) -> torch.Tensor:
        """Boolean vector over the filters of ``layer``: which are alive."""
        return self.masks.alive(layer)

    def filter_parameters(self, layer: str) -> Sequence[torch.Tensor]:
        """The parameters a removal of one of ``layer``'s filters zeroes, each indexed by filter along its
        first dimension: conv weight, bias, and the following BatchNorm's weight and bias."""
        return self.masks.parameters(layer)

    def evaluate(self) -> float:
        """Test accuracy of the model as it is now."""
        return M.accuracy(self.model, self._batches.test(self.config.train.eval_batch_size))

    def log(self, **values: float) -> None:
        """Extra metrics recorded with this epoch (e.g. accuracy right after a pruning step)."""
        self.extra_metrics.update({k: float(v) for k, v in values.items()})


def method_seed(seed: int) -> int:
    """The seed of a trial's method draws (``TrialState.draws``), apart from the data order's ``seed``."""
    return (seed * 0x9E3779B97F4A7C15 + 0x5DEECE66D) % 2**63


def build_trial_model(config: TrialConfig, input_shape: Sequence[int], num_classes: int,
                      notes: Callable[[str], None] | None = None) -> tuple[nn.Module, Structure]:
    """The trial's model (its initial weights loaded from ``--init-from`` when given) and its checked channel
    structure; ``notes`` receives what was adapted (a first conv rebuilt, a classifier head re-initialised)."""

    tc = config.train
    model = build_model(tc.model, input_shape, num_classes)
    messages = list(getattr(model, "bench_notes", ()))
    if tc.init_from:
        messages += load_initial_weights(model, tc.init_from, num_classes, strict_head=tc.strict_head)
    structure = derive(model, input_shape, tc.prune_coupled, tc.exclude_layers, check=True)
    if notes is not None:
        for message in messages:
            notes(message)
    return model, structure


def preflight(model: nn.Module, input_shape: Sequence[int], num_classes: int) -> None:
    """One training step's forward, task loss and backward on two random examples, in train mode, on the
    model's device: what every trial does first, tried once before any trial starts. Raises ``ValueError``
    naming what is wrong (outputs that are not logits of the right shape, NaN or infinite outputs)."""
    param = next(model.parameters())
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
    model.train()
    try:
        out = model(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"in training mode it gives {shape} for 2 examples, not logits of shape (2, {num_classes})")
        if not bool(torch.isfinite(out).all()):
            raise ValueError("in training mode its output holds NaN or infinite values (on 2 random inputs)")
        F.cross_entropy(out, torch.zeros(2, dtype=torch.long, device=out.device)).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


class _Loop:
    """Everything one trial's loop works on, built once by :func:`train` (model, optimizer, masks, zeroing rule,
    batches, generator, the method and its state)."""

    def __init__(self, config: TrialConfig, data: Dataset | StreamData) -> None:
        tc = self.tc = config.train
        self.config = config
        seed_everything(config.seed)
        self.device = device = resolve_device(tc.device)
        self.method = method = config.build_method()
        self.rule = parse_zeroing(config.zeroing, method.kernel_norm_scale)
        model, self.structure = build_trial_model(config, data.input_shape, data.num_classes)
        model = model.to(device)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        method.bind(self.structure.units)
        method.check_model(model)
        self.optimizer = build_optimizer(tc.optimizer, model.parameters(), tc.lr, tc.momentum, tc.weight_decay,
                                         tc.nesterov)
        self.masks = FilterMasks(self.structure, self.optimizer)
        self.rule.prepare(self.masks)
        if config.control is not None:   # a scratch control: the source's widths, from the seed's initialisation
            self.narrow(config.control["widths"])
        self.schedule = parse_schedule(tc.schedule, tc.epochs)
        self.batches, on_device = make_batches(data, device, tc.augment, tc.loader_workers, config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.augment = Augment(on_device, self.generator)
        self.state = TrialState(model, self.masks, self.batches, config)
        # the protocol's phase schedule (bench/protocols/): per epoch the penalty, the hooks and the method's own
        # removals on or off, the learning-rate schedule running on or rewound, and the pruning steps
        self.plan = get_protocol(tc.protocol).plan(config)
        if self.plan.defer_pruning:
            method.defer_pruning()
        self.weight, self.closed_form, self.hooks = 0.0, False, True   # set per epoch from its phase
        self.autocast = tc.precision == "bf16"   # forward and task loss in bfloat16; weights, penalty, step in float32

    @torch.no_grad()
    def narrow(self, widths: Mapping[str, int]) -> None:
        """A scratch control's network: each unit keeps its first ``widths[unit]`` groups (the rest removed by
        the masks from the start), and every conv or linear layer that lost inputs has its weights and bias
        scaled by sqrt(inputs / inputs kept): what PyTorch's default initialisation (a bound of 1 / sqrt(fan-in))
        draws for the compact layer, so the narrower network starts at its own scale."""

        for unit, width in widths.items():
            size = self.masks.unit(unit).size
            if int(width) < size:
                self.masks.remove(unit, list(range(int(width), size)))
        gone = {unit.name: ~self.masks.alive(unit.name).cpu() for unit in self.structure.units}
        _, inputs = removed_channels(self.structure, gone)
        for layer, lost in inputs.items():
            module = self.structure.modules[layer]
            kept = int((~lost).sum())
            if kept and not (isinstance(module, nn.Conv2d) and module.groups > 1):
                scale = math.sqrt(lost.numel() / kept)
                for param in (module.weight, module.bias):
                    if isinstance(param, torch.Tensor):
                        param.mul_(scale)

    def restore(self, snapshot: Mapping[str, Any]) -> tuple[int, dict[str, float], dict[str, Any] | None]:
        """Continue from a snapshot (:meth:`snapshot`): returns the first epoch to run, the last metrics and,
        from a shared phase's snapshot, that epoch's training half (the epoch then continues from its pruning
        steps). A snapshot whose method state is None leaves the method as it was built (a phase shared by
        methods that do nothing while it trains: bench/phases.py)."""
        self.model.load_state_dict(snapshot["model"])
        # a copy: the optimizer takes the snapshot's tensors as its own state (momentum updated in place), and
        # one snapshot may start several trials (the branches of a shared phase)
        self.optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        self.masks.load_state_dict(snapshot["masks"])
        if snapshot["method"] is not None:
            self.method.load_state_dict(snapshot["method"])
        _set_random_states(snapshot["rng"], self.generator, self.device)
        if "draws" in snapshot["rng"]:
            self.state.draws.set_state(snapshot["rng"]["draws"].cpu())
        self.state.step = int(snapshot["step"])
        part = snapshot.get("part")
        return int(snapshot["epoch"]) + 1, dict(snapshot["last"]), dict(part) if part is not None else None

    def snapshot(self, epoch: int, last: dict[str, float], part: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the trial needs to continue after ``epoch`` (:func:`train`'s ``keep``); with ``part``, the next
        epoch's training half (a shared phase's end: :func:`train`'s ``split``)."""
        return {"epoch": epoch, "step": self.state.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "masks": self.masks.state_dict(),
                "method": self.method.state_dict(),
                "rng": {**_random_states(self.generator, self.device), "draws": self.state.draws.get_state()},
                "last": last, **({"part": part} if part is not None else {})}

    def steps(self, epoch: int) -> tuple[float, float]:
        """One epoch's training steps (module docstring); returns the mean task loss and the train accuracy."""
        tc, model, method, masks, batches = self.tc, self.model, self.method, self.masks, self.batches
        weight, closed_form, device = self.weight, self.closed_form, self.device
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x8, y in batches.epoch(torch.randperm(batches.n, generator=self.generator), tc.batch_size, epoch):
            x = batches.normalise(self.augment(x8))
            if tc.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = model(x)
                task = F.cross_entropy(out, y, label_smoothing=tc.label_smoothing)
            loss = task + weight * method.penalty(model) if weight and not closed_form else task
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if closed_form:
                method.add_penalty_grad(model, weight)
            masks.mask_grads()
            self.optimizer.step()
            self.rule.after_step(masks)   # may clear mask entries (threshold rule) ...
            masks.apply()                 # ... which this one in-place pass then enforces
            if self.hooks:
                method.after_step(model, self.state)
            self.state.step += 1
            loss_sum += task.detach() * len(y)
            correct += (out.detach().argmax(1) == y).sum()
        return float(loss_sum) / batches.n, float(correct) / batches.n   # waits for the device

    def prune_step(self, step: Step) -> None:
        """A pruning step of the trial's plan (bench/pruning.py): the method's importance on the network as it is,
        one global ranking of the alive groups, the shortest prefix that meets ``step.fraction`` of the trial's
        target removed; logged with the epoch: the step's target, what it reached, the accuracies before and
        after it."""

        state, masks = self.state, self.masks
        kind, value = self.config.target   # type: ignore[misc]
        goal = value * step.fraction
        before = state.evaluate()
        scores = self.method.importance(self.model, state)
        removal, achieved = plan(self.structure, scores, self.method.importance_normalizer, KINDS[kind], goal,
                                 self.tc.max_layer_ratio, {layer: masks.alive(layer) for layer in masks.layers})
        for layer, idx in removal.items():
            masks.remove(layer, idx)
        state.log(accuracy_before_pruning=before, accuracy_after_pruning=state.evaluate(),
                  **{N.PRUNE_STEP_TARGET: goal, N.PRUNE_STEP_ACHIEVED: achieved})

    def epoch(self, epoch: int, part: Mapping[str, Any] | None = None) -> dict[str, float]:
        """One epoch: the method's hooks, the steps, then (:meth:`measure`) the pruning steps, the zeroing rule's
        epoch part and the measurements. ``part``: the epoch's training half as a shared phase left it."""
        return self.measure(epoch, self.train_half(epoch) if part is None else part)

    def enter(self, epoch: int) -> tuple[float, bool]:
        """Set up ``epoch``'s phase (its learning rate, penalty, hooks, removals); returns (lr, rewound)."""
        tc, method, state = self.tc, self.method, self.state
        state.epoch = epoch
        first, phase = self.plan.phase(epoch)
        lr = rate(tc.lr, epoch - first + 1 if phase.rewind else epoch, self.schedule, tc.warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.weight = method.penalty_weight if phase.penalty else 0.0
        self.closed_form = bool(self.weight) and method.closed_form_grad   # the penalty's gradient without autograd
        self.hooks = phase.hooks
        state.removal_open = phase.removal
        return lr, phase.rewind

    def train_half(self, epoch: int) -> dict[str, Any]:
        """``epoch`` up to its pruning steps: the hooks and the training steps. What a shared phase ends with
        (bench/phases.py): everything before it is the same for every trial that branches from it."""
        method, model, state = self.method, self.model, self.state
        lr, _ = self.enter(epoch)
        state.extra_metrics = {}
        start = time.perf_counter()
        if self.hooks:
            method.on_epoch_start(model, state)
        train_loss, train_accuracy = self.steps(epoch)   # so the times below are the real ones
        steps_end = time.perf_counter()
        if self.hooks:
            method.on_epoch_end(model, state)
        return {"lr": lr, "train_loss": train_loss, "train_accuracy": train_accuracy, "steps_time": steps_end - start,
                "hooks_time": time.perf_counter() - steps_end, "extra": dict(state.extra_metrics)}

    def measure(self, epoch: int, part: Mapping[str, Any]) -> dict[str, float]:
        """The rest of ``epoch`` after :meth:`train_half`: its pruning steps, the zeroing rule's epoch part, the
        measurements."""
        tc, config, method, model, state = self.tc, self.config, self.method, self.model, self.state
        lr, _ = self.enter(epoch)
        state.extra_metrics = dict(part["extra"])
        train_loss, train_accuracy = float(part["train_loss"]), float(part["train_accuracy"])
        start = time.perf_counter()
        for step in self.plan.steps_at(epoch):
            self.prune_step(step)
        hook_end = time.perf_counter()
        self.rule.on_epoch_end(self.masks)
        zeroing_time = time.perf_counter() - hook_end
        train_time = part["steps_time"] + part["hooks_time"] + (hook_end - start) + zeroing_time
        if not math.isfinite(train_loss):
            raise TrialDiverged(f"training loss is {train_loss} at epoch {epoch} of {config.name}; "
                                "lower the learning rate or the penalty")
        metrics_start = time.perf_counter()
        with torch.no_grad():
            penalty = float(method.penalty(model)) if method.has_penalty else 0.0
        if not math.isfinite(penalty):   # a diverged penalty, even where its gradient stayed finite
            raise TrialDiverged(f"penalty is {penalty} at epoch {epoch} of {config.name}; lower the penalty "
                                "strength or the learning rate")
        filters = M.filter_metrics(self.structure)
        metrics_time = time.perf_counter() - metrics_start
        return {
            N.TEST_ACCURACY: state.evaluate(),
            **({N.VAL_ACCURACY: M.accuracy(model, self.batches.test(tc.eval_batch_size, "val"))}
               if self.batches.has_val else {}),
            "train_accuracy": train_accuracy,
            N.TRAIN_LOSS: train_loss,
            N.PENALTY: penalty,
            N.LR: lr,
            **filters,
            "epoch_time_s": train_time,
            "steps_time_s": part["steps_time"],
            "method_hook_time_s": part["hooks_time"] + (hook_end - start),
            "zeroing_metrics_time_s": zeroing_time + metrics_time,
            **state.extra_metrics,
        }


def train(config: TrialConfig, data: Dataset | StreamData,
          report: Callable[[int, dict[str, float]], None] | None = None,
          finish: Callable[[nn.Module, Structure], dict[str, float]] | None = None,
          keep: Callable[[int, dict[str, Any]], None] | None = None,
          resume: Mapping[str, Any] | None = None,
          split: tuple[int, Callable[[dict[str, Any]], None]] | None = None) -> dict[str, float]:
    """Train one trial; ``report(epoch, metrics)`` is called after every epoch. Returns the last metrics.

    A target search's probe stops after the first epoch past every target of its search
    (``TrialConfig.overshoot``): it returns that epoch's metrics, without ``finish``.

    ``finish(model, structure)``, when given, runs after the last epoch's measurements and before its report;
    the metrics it returns join that report (the trial's compact model and its measured speed, say).

    ``keep(epoch, snapshot)``, when given, receives after every epoch's report but the last what the trial
    needs to continue from there: the epoch and step count, the model's, the optimizer's, the masks' and the
    method's state (``Method.state_dict``), the random states (the trial generator's, which orders the data and
    draws the augmentation, torch's, CUDA's, numpy's and Python's) and the epoch's metrics; the learning-rate
    schedule is a function of the epoch and the zeroing rules keep no state beyond the masks. ``resume``, such
    a snapshot, continues the trial from the epoch after it: on CPU with the same threads the remaining epochs
    give exactly the metrics of an uninterrupted trial, on either data path (the streaming path's per-image
    crops are drawn from seeds of the trial seed, the epoch and the batch: ``bench.batches``).

    ``split``, (epoch S, hand): a shared phase (bench/phases.py) trains up to the training half of epoch S (its
    steps and hooks, before its pruning steps), hands that snapshot to ``hand`` and returns the metrics of epoch
    S - 1. A trial resumed from that snapshot continues epoch S from its pruning steps, exactly as it would have
    run straight through.
    """
    loop = _Loop(config, data)
    first, last, part = loop.restore(resume) if resume is not None else (1, {}, None)
    epochs = config.train.epochs
    try:
        for epoch in range(first, epochs + 1):
            if split is not None and epoch == split[0]:   # a shared phase ends inside this epoch
                split[1](loop.snapshot(epoch - 1, last, loop.train_half(epoch)))
                break
            last, part = loop.epoch(epoch, part), None
            if finish is not None and epoch == epochs:
                last.update(finish(loop.model, loop.structure))
            if report is not None:
                report(epoch, last)
            if keep is not None and epoch < epochs:
                keep(epoch, loop.snapshot(epoch, last))
            if epoch < epochs and config.overshoot({**last, "epoch": epoch}) is not None:
                break   # a target search's probe past every target: it can only overshoot (TrialConfig.overshoot)
    finally:
        loop.batches.close()
    return last


def _random_states(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state as tensors and plain data, which torch's safe loader reads back (numpy's own state
    holds an array: its key goes as a tensor)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)   # type: ignore[misc]
    assert isinstance(key, np.ndarray)
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": (str(name), torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "python": random.getstate()}


def _set_random_states(states: Mapping[str, Any], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(states["generator"].cpu())
    torch.set_rng_state(states["torch"].cpu())
    if states.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)
    name, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(key.cpu().numpy(), dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
