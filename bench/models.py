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
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            shapes[name] = tuple(x.shape[1:])
    model.train(was_training)
    return shapes
