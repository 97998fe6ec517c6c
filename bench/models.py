"""Model sources: the registered models, torchvision and timm models, and the user's own code.

``--model`` (and the config file's ``model``) takes:

- a registered name (``bench list``): the built-in models below, and any model a ``--plugin`` file registers
  with :func:`register_model`;
- ``torchvision:NAME``: a classification model of ``torchvision.models`` (``resnet18``, ``mobilenet_v2``, ...),
  built with the dataset's number of classes and random weights. torchvision builders assume 3 input channels:
  on a dataset with another count, the model's first conv is rebuilt for it (same kernel, stride and padding,
  fresh weights) and ``bench run`` says so;
- ``timm:NAME``: a ``timm`` model (the optional extra ``pip install -e ".[timm]"``), built with ``num_classes``
  and ``in_chans``;
- ``FILE.py:CALLABLE`` or ``MODULE:CALLABLE``: a class or function of the user's own code; it receives those of
  ``num_classes``, ``in_channels`` and ``input_size`` that it accepts as keyword arguments. A trial's key holds a
  digest of the file's content, not its path (:func:`model_key`).

Built-in models
---------------
- ``lenet5``: the Caffe LeNet used by Berthelier et al. (conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
  fc 500, ReLU, fc 10). As in Caffe there is no nonlinearity after the convolutions. ``lenet5-bn`` adds a
  BatchNorm after each conv.
- ``vgg11``: the CIFAR variant with BatchNorm (8 convs 64-128-256-256-512-512-512-512, 3x3, padding 1,
  each followed by BN and ReLU; five 2x2 max-pools; one linear classifier on the 512-d feature).
- ``resnet20``, ``resnet56``: He et al.'s CIFAR ResNets with option-A shortcuts; ``resnet20b``, ``resnet56b``: the
  same with option-B shortcuts (Torch-Pruning's benchmark models), whose residual streams can be pruned.

Their module names (``conv1``, ``bn1``, ``layer1.0.conv1``...) are the layer names in every metric
(``filters_alive/conv1``), and they take their conv ``widths``, so a compact model is the same class with fewer
filters. Which channels can be removed, and with which others, is derived from any model by
``bench/structure.py``.
"""
from __future__ import annotations

import difflib
import inspect
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import torch
import torchvision
from torch import nn

from .usercode import UserCodeError, display_name, load_callable, source_key  # noqa: F401 (display_name: public here)


class ModelError(ValueError):
    """Unknown model name or a model that cannot take the dataset's input."""


# -- the models ----------------------------------------------------------------------------------------

class LeNet5(nn.Sequential):
    """Caffe LeNet (Caffe's ``examples/mnist/lenet_train_test.prototxt``), any input size >= 16."""

    default_widths = (20, 50)

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 widths: Sequence[int] = default_widths, hidden: int = 500, batchnorm: bool = False) -> None:
        c1, c2 = widths
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ModelError(f"lenet5 needs inputs of at least 16x16, got {input_size}x{input_size}")
        bn = (lambda k, c: [(f"bn{k}", nn.BatchNorm2d(c))]) if batchnorm else (lambda k, c: [])
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, c1, 5)),
            *bn(1, c1),
            ("pool1", nn.MaxPool2d(2, 2)),
            ("conv2", nn.Conv2d(c1, c2, 5)),
            *bn(2, c2),
            ("pool2", nn.MaxPool2d(2, 2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(c2 * side * side, hidden)),
            ("relu1", nn.ReLU(inplace=True)),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]))
        self.widths = (c1, c2)


class LeNet5BN(LeNet5):
    """Caffe LeNet with a BatchNorm after each conv (for methods that act on BN scale factors, e.g. slimming)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 widths: Sequence[int] = LeNet5.default_widths, hidden: int = 500) -> None:
        super().__init__(in_channels, num_classes, input_size, widths, hidden, batchnorm=True)


class VGG11(nn.Sequential):
    """VGG11 for 32x32 inputs with BatchNorm (CIFAR variant: one linear classifier)."""

    default_widths = (64, 128, 256, 256, 512, 512, 512, 512)
    pool_after = (0, 1, 3, 5, 7)  # conv indices followed by a 2x2 max-pool

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 widths: Sequence[int] = default_widths) -> None:
        if input_size != 32:
            raise ModelError(f"vgg11 is the CIFAR variant and needs 32x32 inputs, got {input_size}x{input_size}")
        if len(widths) != 8:
            raise ModelError(f"vgg11 has 8 conv layers, got {len(widths)} widths")
        layers: list[tuple[str, nn.Module]] = []
        prev = in_channels
        for i, w in enumerate(widths):
            k = i + 1
            layers += [(f"conv{k}", nn.Conv2d(prev, w, 3, padding=1)), (f"bn{k}", nn.BatchNorm2d(w)),
                       (f"relu{k}", nn.ReLU(inplace=True))]
            if i in self.pool_after:
                layers.append((f"pool{len([p for p in self.pool_after if p <= i])}", nn.MaxPool2d(2, 2)))
            prev = w
        layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(prev, num_classes))]
        super().__init__(OrderedDict(layers))
        self.widths = tuple(widths)


class BasicBlock(nn.Module):
    """A CIFAR ResNet block: conv-BN-ReLU-conv-BN plus the shortcut, then ReLU. The shortcut is He et al.'s
    option A: identity, or when the shape changes, stride-2 subsampling and zero channels (no parameters)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.pad = (cout - cin) // 2, cout - cin - (cout - cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1:
            shortcut = shortcut[:, :, ::self.stride, ::self.stride]
        if self.pad != (0, 0):
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, *self.pad))
        return torch.relu(out + shortcut)


def _blocks_per_stage(depth: int, input_size: int, name: str) -> int:
    """n of a CIFAR ResNet of depth 6n+2; a :class:`ModelError` for another depth or inputs under 8x8."""
    if (depth - 2) % 6 or depth < 8:
        raise ModelError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, ...), got {depth}")
    if input_size < 8:
        raise ModelError(f"{name} needs inputs of at least 8x8, got {input_size}x{input_size}")
    return (depth - 2) // 6


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR (He et al. 2016, Sec. 4.2): a 3x3 conv of 16, three stages of n blocks with
    16, 32 and 64 channels (stride 2 at the start of stages 2 and 3, option A shortcuts), global average
    pooling, one linear classifier. ``resnet20``: n = 3; ``resnet56``: n = 9.

    Which convs may lose filters: a block's first conv (``layerS.B.conv1``) only. Its filters feed nothing but
    the block's second conv, so removing one deletes an input channel of that conv and nothing else, and the
    function is unchanged. The stem conv and every block's second conv feed the residual sums, whose
    channels are shared by every block of the stage (and the identity shortcuts): they are listed in
    ``sparsity_exclude``, so no method regularizes them and no rule removes their filters.

    ``widths``: every conv's output channels in definition order (what a compact model saves), or only the
    block-internal widths (one per block); the residual-stream widths are fixed.
    """

    stage_widths = (16, 32, 64)

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__()
        n = _blocks_per_stage(depth, input_size, f"resnet{depth}")
        stream = [w for w in self.stage_widths for _ in range(n)]   # each block's output width
        internal = list(stream) if widths is None else self._internal_widths(tuple(widths), stream)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        prev, k = 16, 0
        for stage, width in enumerate(self.stage_widths, start=1):
            blocks = []
            for b in range(n):
                stride = 2 if stage > 1 and b == 0 else 1
                blocks.append(BasicBlock(prev, internal[k], width, stride))
                prev, k = width, k + 1
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        self.depth = depth
        self.sparsity_exclude = ("conv1",) + tuple(f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in range(n))
        self.widths = tuple(m.out_channels for m in self.modules() if isinstance(m, nn.Conv2d))

    @staticmethod
    def _internal_widths(widths: tuple[int, ...], stream: list[int]) -> list[int]:
        if len(widths) == len(stream):
            return list(widths)
        if len(widths) != 1 + 2 * len(stream) or widths[0] != 16 or list(widths[2::2]) != stream:
            raise ModelError(f"resnet widths: give {len(stream)} block-internal widths or all "
                             f"{1 + 2 * len(stream)} conv widths with the residual stream unchanged, got {widths}")
        return list(widths[1::2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class BasicBlockB(nn.Module):
    """A CIFAR ResNet block with an option-B shortcut (Torch-Pruning's ``resnet_tiny``): a 1x1 conv and a
    BatchNorm when the shape changes, else the identity."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, shortcut: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if shortcut is not None:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, shortcut, 1, stride, bias=False), nn.BatchNorm2d(shortcut))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNetB(nn.Module):
    """ResNet-(6n+2) for CIFAR with option-B shortcuts, as Torch-Pruning's benchmarks build it (``resnet_tiny``):
    the stem conv of 16, three stages of n blocks (16, 32, 64 channels, stride 2 at the start of stages 2 and
    3), a 1x1 conv + BatchNorm shortcut where the shape changes. Every conv is prunable: a block's first conv
    on its own, and, with ``--prune-coupled``, each stage's residual stream (the stem or the stage's first
    shortcut, and every block's second conv: one coupled group per channel), which option A's zero-padded
    shortcuts do not allow. ``resnet20b``: n = 3; ``resnet56b``: n = 9.

    ``widths``: every conv's output channels in definition order (stem; per block conv1, conv2 and, for the
    first block of stages 2 and 3, the shortcut conv), what a compact model saves.
    """

    stage_widths = (16, 32, 64)

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__()
        n = _blocks_per_stage(depth, input_size, f"resnet{depth}b")
        plan = [(stage, b) for stage in range(3) for b in range(n)]
        with_shortcut = [stage > 0 and b == 0 for stage, b in plan]
        if widths is None:
            widths = [16]
            for (stage, _), sc in zip(plan, with_shortcut):
                widths += [self.stage_widths[stage]] * (3 if sc else 2)
        widths = [int(w) for w in widths]
        needed = 1 + 2 * len(plan) + sum(with_shortcut)
        if len(widths) != needed:
            raise ModelError(f"resnet{depth}b widths: give all {needed} conv widths in definition order, got "
                             f"{len(widths)}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        prev, k = widths[0], 1
        stages: list[list[nn.Module]] = [[], [], []]
        for (stage, b), sc in zip(plan, with_shortcut):
            mid, out = widths[k], widths[k + 1]
            shortcut = widths[k + 2] if sc else None
            if (shortcut if sc else prev) != out:
                raise ModelError(f"resnet{depth}b widths: block {stage + 1}.{b} adds {out} channels to a shortcut "
                                 f"of {shortcut if sc else prev}")
            stages[stage].append(BasicBlockB(prev, mid, out, 2 if sc else 1, shortcut))
            prev, k = out, k + (3 if sc else 2)
        for i, blocks in enumerate(stages, start=1):
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)
        self.depth = depth
        self.widths = tuple(m.out_channels for m in self.modules() if isinstance(m, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet20b(**kwargs) -> CifarResNetB:
    return CifarResNetB(20, **kwargs)


def resnet56b(**kwargs) -> CifarResNetB:
    return CifarResNetB(56, **kwargs)


def resnet20(**kwargs) -> CifarResNet:
    return CifarResNet(20, **kwargs)


def resnet56(**kwargs) -> CifarResNet:
    return CifarResNet(56, **kwargs)




# -- sources -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: Callable[..., nn.Module]
    default_input: tuple[int, int, int] | None = None  # (C, H, W) for the synthetic dataset; None: 3x32x32
    rebuildable: bool = True    # the builder takes ``widths`` (a compact model is rebuilt from its widths)


DEFAULT_INPUT = (3, 32, 32)

MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec("lenet5", "Caffe LeNet: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, ReLU, fc 10",
                        LeNet5, (1, 28, 28)),
    "lenet5-bn": ModelSpec("lenet5-bn", "lenet5 with a BatchNorm after each conv (for slimming)", LeNet5BN,
                           (1, 28, 28)),
    "vgg11": ModelSpec("vgg11", "VGG11 with BatchNorm for 32x32 inputs (8 convs 64-...-512)", VGG11, (3, 32, 32)),
    "resnet20": ModelSpec("resnet20", "CIFAR ResNet-20 (He et al.: 3x3 blocks of 16/32/64, option A shortcuts); "
                          "only block-internal convs are pruned", resnet20, (3, 32, 32)),
    "resnet56": ModelSpec("resnet56", "CIFAR ResNet-56 (9 blocks per stage); only block-internal convs are pruned",
                          resnet56, (3, 32, 32)),
    "resnet20b": ModelSpec("resnet20b", "CIFAR ResNet-20 with option-B shortcuts (1x1 conv + BN, Torch-Pruning's "
                           "benchmark model); its residual streams are pruned with --prune-coupled", resnet20b,
                           (3, 32, 32)),
    "resnet56b": ModelSpec("resnet56b", "CIFAR ResNet-56 with option-B shortcuts (Torch-Pruning's benchmark model); "
                           "its residual streams are pruned with --prune-coupled", resnet56b, (3, 32, 32)),
}

SOURCES = {
    "torchvision:NAME": "a classification model of torchvision.models, random init (e.g. torchvision:resnet18)",
    "timm:NAME": "a timm model (optional extra: pip install -e '.[timm]')",
    "FILE.py:CALLABLE": "a class or function in your file; gets num_classes, in_channels, input_size if it takes them",
    "MODULE:CALLABLE": "the same from an importable module",
}


def register_model(name: str | None = None, *, input_shape: Sequence[int] | None = None, description: str = ""):
    """Decorator: register a model class or builder function under ``name`` (default: its name in lower case),
    usable as ``--model NAME`` once its file is loaded with ``--plugin``. ``input_shape`` (C, H, W) is what the
    synthetic dataset generates for it (default 3x32x32). The builder receives those of ``num_classes``,
    ``in_channels``, ``input_size`` and ``widths`` that it accepts."""
    def decorate(builder):
        key = name or builder.__name__.lower()
        if key in MODELS and MODELS[key].builder is not builder:
            raise ValueError(f"a model named {key!r} is already registered")
        if ":" in key:
            raise ValueError(f"model name {key!r} must not contain ':' (it would read as a source)")
        MODELS[key] = ModelSpec(key, description or (inspect.getdoc(builder) or key).splitlines()[0], builder,
                                tuple(input_shape) if input_shape else None, "widths" in _accepted(builder, True))
        return builder
    return decorate


def list_models() -> list[str]:
    return sorted(MODELS)


def _accepted(builder: Callable, registered: bool = False) -> set[str]:
    """The keyword arguments among num_classes, in_channels, input_size, widths that ``builder`` takes (a
    ``**kwargs`` builder gets all of them when it is registered, else only ``num_classes``, as torchvision's
    builders pass their keyword arguments to the model class)."""
    wanted = {"num_classes", "in_channels", "input_size", "widths"}
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return set()
    named = wanted & {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return wanted if registered else named | {"num_classes"}
    return named


def _torchvision(name: str) -> ModelSpec:
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        raise ModelError(f"torchvision has no classification model {name!r}"
                         + (f"; close matches: {', '.join(close)}" if close else "")
                         + " (torchvision.models.list_models() lists them)")

    def build(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> nn.Module:
        with warnings.catch_warnings():   # GoogLeNet's and Inception's notice of a future default: not ours
            warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)
            model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        return _first_conv_for(model, in_channels, f"torchvision:{name}")

    return ModelSpec(f"torchvision:{name}", f"torchvision.models.{name}", build, None, False)


def _timm(name: str) -> ModelSpec:
    try:
        import timm  # lazy: timm is an optional extra
    except ImportError:
        raise ModelError(f"timm:{name} needs the optional extra 'timm': pip install -e '.[timm]' "
                         "(or pip install timm)") from None
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        raise ModelError(f"timm has no model {name!r}" + (f"; close matches: {', '.join(close)}" if close else ""))

    def build(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)

    return ModelSpec(f"timm:{name}", f"timm model {name}", build, None, False)


def _first_conv_for(model: nn.Module, in_channels: int, source: str) -> nn.Module:
    """``model`` with its first conv rebuilt for ``in_channels`` input channels when it expects another count."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first[1].in_channels == in_channels:
        return model
    name, conv = first
    if conv.groups != 1:
        raise ModelError(f"{source}: its first conv {name} is grouped; it cannot be rebuilt for "
                         f"{in_channels} input channels")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    model.set_submodule(name, new)
    model.bench_notes = [f"{source}: first conv {name} rebuilt for {in_channels} input channel"
                         f"{'s' * (in_channels != 1)} (it expects {conv.in_channels}; fresh weights)"]
    return model


def _module_classes(module: ModuleType) -> str:
    found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                   and v.__module__ == module.__name__)
    return f"; its nn.Module classes: {', '.join(found)}" if found else ""


def _user_code(source: str) -> ModelSpec:
    try:
        builder, where = load_callable(source, "model", _module_classes)
    except UserCodeError as err:
        raise ModelError(str(err)) from None
    return ModelSpec(source, f"{source.rpartition(':')[2]} from {where}", builder, None, False)


def get_model_spec(source: str) -> ModelSpec:
    """The spec of a model source (module docstring); an unknown one lists the valid names and sources."""
    if source in MODELS:
        return MODELS[source]
    if source.startswith("torchvision:"):
        return _torchvision(source.partition(":")[2])
    if source.startswith("timm:"):
        return _timm(source.partition(":")[2])
    if ":" in source:
        return _user_code(source)
    close = difflib.get_close_matches(source, list_models(), n=3, cutoff=0.6)
    raise ModelError(f"unknown model {source!r}; valid models: {', '.join(list_models())}"
                     + (f" (did you mean {', '.join(close)}?)" if close else "")
                     + "; or torchvision:NAME, timm:NAME, FILE.py:CALLABLE, MODULE:CALLABLE")


def rebuildable(source: str) -> bool:
    """True when a compact model of ``source`` is rebuilt from its conv widths (the registered models that
    take ``widths``)."""
    return source in MODELS and MODELS[source].rebuildable


def default_input(source: str) -> tuple[int, int, int]:
    """(C, H, W) the synthetic dataset generates for ``source``: its registered shape, else 3x32x32."""
    shape = get_model_spec(source).default_input
    return tuple(shape) if shape else DEFAULT_INPUT


model_key = source_key   # a trial's key records a model file by its content (bench.usercode.source_key)


def build_model(source: str, input_shape: Sequence[int], num_classes: int, widths: Sequence[int] | None = None
                ) -> nn.Module:
    """A fresh model for inputs of shape (C, H, W); ``widths`` gives fewer filters (compact registered models)."""
    spec = get_model_spec(source)
    c, h, w = input_shape
    accepted = _accepted(spec.builder, registered=source in MODELS)
    if source in MODELS and h != w and "input_size" in accepted:
        raise ModelError(f"{source} expects square inputs, got {h}x{w}")
    kwargs = {"num_classes": num_classes, "in_channels": c, "input_size": h}
    if widths is not None:
        kwargs["widths"] = tuple(widths)
    try:
        model = spec.builder(**{k: v for k, v in kwargs.items() if k in accepted})
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(f"building {source} failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{source} returned {type(model).__name__}, not an nn.Module")
    if source not in MODELS:   # torchvision, timm and your models may return more than the logits
        model.register_forward_hook(main_output)
    return model


def main_output(module: nn.Module, args: Any, output: Any) -> Any:
    """A model's forward hook: the logits of a forward that returns more than them. A tuple, list or namedtuple
    gives its first field (torchvision's GoogLeNet and Inception v3 return ``(logits, aux...)`` while
    training); a mapping its ``"logits"`` or ``"out"`` entry. Training, evaluation and the structure see the
    logits alone (auxiliary heads get no gradient). Anything else is refused, naming what came back."""
    if isinstance(output, torch.Tensor):
        return None
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    fields = f" with keys {', '.join(map(str, output))}" if isinstance(output, Mapping) else ""
    raise ModelError(f"{type(module).__name__}'s forward returns {type(output).__name__}{fields}, not a tensor of "
                     "logits: return the logits, or a tuple (or namedtuple) whose first field they are, or a "
                     "mapping with a 'logits' entry")
