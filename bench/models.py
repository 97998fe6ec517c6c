"""Model registry and the channel structure that pruning needs.

Models
------
- ``lenet5``: the Caffe LeNet used by Berthelier et al. (conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
  fc 500, ReLU, fc 10). As in Caffe there is no nonlinearity after the convolutions.
- ``vgg11``: the CIFAR variant with BatchNorm (8 convs 64-128-256-256-512-512-512-512, 3x3, padding 1,
  each followed by BN and ReLU; five 2x2 max-pools; one linear classifier on the 512-d feature).

Both are ``nn.Sequential`` subclasses with readable module names (``conv1``, ``bn1``, ``fc1``...), which are
the layer names in every metric (``filters_alive/conv1``). Both take their conv ``widths``: a compact model
is the same class with fewer filters.

Structure
---------
:func:`describe` returns a :class:`Structure`: for every conv and linear layer, which eligible conv's
filters form its input channels, which BatchNorm follows each conv, and each layer's output size. It is
derived once per model from the ``Sequential`` order with one forward pass at batch 1, and is what
``metrics.py`` (structural params and FLOPs) and ``zeroing.py`` (BN channels of a removed filter) use.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from methods import eligible_convs
from methods.base import eval_mode


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
        if (depth - 2) % 6 or depth < 8:
            raise ModelError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, ...), got {depth}")
        if input_size < 8:
            raise ModelError(f"resnet{depth} needs inputs of at least 8x8, got {input_size}x{input_size}")
        n = (depth - 2) // 6
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

    def structure(self, input_shape: Sequence[int]) -> "Structure":
        """Each block's second conv takes its input channels from the block's first conv (eligible); every
        other conv and the classifier read the residual stream, whose channels are never removed."""
        hw = _conv_output_positions(self, input_shape)
        layers = [LayerInfo("conv1", "conv", self.conv1, None, 1, hw["conv1"], self.bn1)]
        for stage in (self.layer1, self.layer2, self.layer3):
            for block in stage:
                first, second = _name_in(self, block.conv1), _name_in(self, block.conv2)
                layers.append(LayerInfo(first, "conv", block.conv1, None, 1, hw[first], block.bn1))
                layers.append(LayerInfo(second, "conv", block.conv2, first, 1, hw[second], block.bn2))
        layers.append(LayerInfo("fc", "linear", self.fc, None, 1, 1))
        eligible = {n for n, _ in eligible_convs(self)}
        by_name = {info.name: info for info in layers}
        return Structure(tuple(layers), tuple(n for n in by_name if n in eligible), by_name)


def _name_in(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _conv_output_positions(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Output spatial positions (H*W) of every conv for one example, by a forward pass at batch 1."""
    out: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, y, name=name: out.__setitem__(name, y.shape[2] * y.shape[3]))
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    param = next(model.parameters())
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
    return out


def resnet20(**kwargs) -> CifarResNet:
    return CifarResNet(20, **kwargs)


def resnet56(**kwargs) -> CifarResNet:
    return CifarResNet(56, **kwargs)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: Callable[..., nn.Module]
    default_input: tuple[int, int, int]  # (C, H, W) for the synthetic dataset


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
}


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None


def build_model(name: str, input_shape: Sequence[int], num_classes: int, widths: Sequence[int] | None = None
                ) -> nn.Module:
    """A fresh model for inputs of shape (C, H, W); ``widths`` gives fewer filters (compact models)."""
    spec = get_model_spec(name)
    c, h, w = input_shape
    if h != w:
        raise ModelError(f"{name} expects square inputs, got {h}x{w}")
    kwargs = {} if widths is None else {"widths": tuple(widths)}
    return spec.builder(in_channels=c, num_classes=num_classes, input_size=h, **kwargs)


# -- structure -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerInfo:
    """One conv or linear layer: where its input channels come from and its output size."""

    name: str
    kind: str                 # "conv" or "linear"
    module: nn.Module
    source: str | None        # eligible conv whose filters are this layer's input channels; None: fixed
    per_channel: int          # input features per source channel (H*W for a linear after flatten)
    out_hw: int               # output spatial positions (1 for linear)
    bn: nn.BatchNorm2d | None = None  # the BatchNorm that follows this conv, if any


@dataclass(frozen=True)
class Structure:
    layers: tuple[LayerInfo, ...]
    eligible: tuple[str, ...]                 # eligible conv names, model order
    by_name: dict[str, LayerInfo] = field(repr=False)

    def bn_of(self, conv_name: str) -> nn.BatchNorm2d | None:
        return self.by_name[conv_name].bn


_PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity, nn.AdaptiveAvgPool2d,
                 nn.LeakyReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid)


def describe(model: nn.Module, input_shape: Sequence[int]) -> Structure:
    """The channel structure of a model, for params/FLOPs counting and BN linking.

    Works for any ``nn.Sequential`` of Conv2d, BatchNorm2d, pooling, activation, Flatten and Linear
    layers (both registered models). A model with another topology can provide its own
    ``structure(input_shape)`` method returning a :class:`Structure`.
    """
    if hasattr(model, "structure"):
        return model.structure(input_shape)
    if not isinstance(model, nn.Sequential):
        raise ModelError(f"cannot derive the channel structure of {type(model).__name__}: "
                         "give it a structure(input_shape) method")
    shapes = _output_shapes(model, input_shape)
    eligible = {n for n, _ in eligible_convs(model)}
    layers: list[LayerInfo] = []
    producer: str | None = None   # eligible conv whose filters are the current tensor's channels
    spatial = 1
    last_conv: LayerInfo | None = None
    in_shape: tuple[int, ...] = tuple(input_shape)
    for name, module in model.named_children():
        if isinstance(module, nn.Conv2d):
            out_shape = shapes[name]
            info = LayerInfo(name, "conv", module, producer, 1, out_shape[1] * out_shape[2])
            layers.append(info)
            last_conv = info
            producer = name if name in eligible else None
        elif isinstance(module, nn.BatchNorm2d):
            if last_conv is None:
                raise ModelError(f"BatchNorm {name!r} does not follow a conv layer")
            info = dataclasses.replace(last_conv, bn=module)
            layers[layers.index(last_conv)] = info
            last_conv = info
        elif isinstance(module, nn.Flatten):
            spatial = in_shape[1] * in_shape[2] if len(in_shape) == 3 else 1
            last_conv = None
        elif isinstance(module, nn.Linear):
            layers.append(LayerInfo(name, "linear", module, producer, spatial if producer else 1, 1))
            producer, spatial, last_conv = None, 1, None
        elif not isinstance(module, _PASS_THROUGH):
            raise ModelError(f"cannot derive the channel structure through {type(module).__name__} ({name!r})")
        in_shape = shapes[name]
    by_name = {info.name: info for info in layers}
    return Structure(tuple(layers), tuple(n for n in by_name if n in eligible), by_name)


def _output_shapes(model: nn.Sequential, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Each child's output shape (without batch) for one example, by a forward pass at batch 1."""
    shapes: dict[str, tuple[int, ...]] = {}
    param = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    with eval_mode(model), torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            shapes[name] = tuple(x.shape[1:])
    return shapes
