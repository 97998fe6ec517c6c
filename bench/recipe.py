"""The training recipe: optimizer, learning-rate schedule with warmup, and batched augmentation on the device.

Defaults are the paper's recipe (constant-rate SGD, momentum 0.9, weight decay 5e-4, no augmentation), and with
them a trial computes exactly what it computed before these options existed.

Schedules (``--schedule``), as a factor of ``--lr`` for epoch e = 1..E, constant within an epoch (the metric
``lr`` of epoch e is that rate):

- ``constant``: 1;
- ``step:E1,E2[,...][:GAMMA]``: multiplied by GAMMA (default 0.1) after each milestone epoch: with ``step:1,2``,
  epochs 1, 2, 3 run at lr, 0.1 lr, 0.01 lr;
- ``cosine``: ``(1 + cos(pi * (e - 1) / E)) / 2``, from 1 at the first epoch towards 0;
- ``onecycle``: torch's OneCycleLR shape per epoch (Smith 2018): from lr / 25 up to lr over the first 30 % of the
  epochs (cosine), then down to lr / 1e4 at the last.

``--warmup-epochs W`` multiplies epoch e <= W by e / (W + 1) (a linear ramp), on top of the schedule. The rate is
set on the optimizer's parameter groups at the start of each epoch: a pure function of the epoch, so a trial stays
a function of its config and seed (and resumes at any epoch) without a scheduler's state.

Augmentation (``--augment``), on the uint8 batch on the device, before normalisation, with the trial's own
generator, no per-image Python: ``flip`` (horizontal, probability 1/2) and ``crop-flip`` (zero-pad 4 pixels,
random crop back to the size, then ``flip``: the CIFAR standard, as torchvision's ``RandomCrop(size, padding=4)``
and ``RandomHorizontalFlip``) and ``standard`` (RandomResizedCrop, scale 0.08-1 and aspect ratio 3/4-4/3 as
torchvision samples them, resized back to the image's size with ``torchvision.ops.roi_align``'s bilinear
sampling, then ``flip``). On the streaming path ``standard`` runs per image in the DataLoader workers instead
(``torchvision.transforms.v2``, cropping from the full-size original of an image file). Evaluation never
augments.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torchvision.ops import roi_align

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "step:E1,E2[,...][:GAMMA]", "onecycle")
AUGMENTS = ("none", "flip", "crop-flip", "standard")


class RecipeError(ValueError):
    """A schedule, optimizer or augmentation that cannot be used."""


def parse_schedule(spec: str, epochs: int | None = None) -> Callable[[int], float]:
    """The factor of the base rate for epoch e (from 1) under ``spec`` (module docstring); ``epochs`` checks the
    milestones of a step schedule (each must come before the last epoch)."""
    text = spec.strip().lower()
    if text == "constant":
        return lambda e: 1.0
    if text == "cosine":
        if epochs is None:
            raise RecipeError("cosine needs the number of epochs")
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * (e - 1) / epochs))
    if text == "onecycle":
        if epochs is None:
            raise RecipeError("onecycle needs the number of epochs")
        return lambda e: _one_cycle((e - 1) / max(1, epochs - 1))
    if text.startswith("step:"):
        parts = text[len("step:"):].split(":")
        try:
            milestones = [int(v) for v in parts[0].split(",") if v.strip()]
            gamma = float(parts[1]) if len(parts) == 2 else 0.1
            if len(parts) > 2 or not milestones:
                raise ValueError(spec)
        except ValueError:
            raise RecipeError(f"cannot parse schedule {spec!r}; expected step:E1,E2[,...][:GAMMA], e.g. step:30,60 "
                              "or step:30,60:0.2") from None
        if sorted(set(milestones)) != milestones or milestones[0] < 1:
            raise RecipeError(f"schedule {spec!r}: milestones must be increasing epochs from 1")
        if not 0.0 < gamma:
            raise RecipeError(f"schedule {spec!r}: GAMMA must be > 0")
        if epochs is not None and milestones[-1] >= epochs:
            raise RecipeError(f"schedule {spec!r}: milestone {milestones[-1]} is not before the last epoch "
                              f"({epochs}), so it never changes the rate")
        return lambda e: gamma ** sum(e > m for m in milestones)
    raise RecipeError(f"unknown schedule {spec!r}; valid schedules: {', '.join(SCHEDULES)}")


def _one_cycle(t: float, up: float = 0.3, start: float = 1 / 25, end: float = 1e-4) -> float:
    if t <= up:
        return start + (1.0 - start) * (1.0 - math.cos(math.pi * t / up)) / 2.0
    return end + (1.0 - end) * (1.0 + math.cos(math.pi * (t - up) / (1.0 - up))) / 2.0


def rate(base: float, epoch: int, schedule: Callable[[int], float], warmup_epochs: int = 0) -> float:
    """The learning rate of ``epoch``: base x schedule factor x warmup ramp."""
    factor = schedule(epoch)
    if epoch <= warmup_epochs:
        factor *= epoch / (warmup_epochs + 1)
    return base * factor if factor != 1.0 else base


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
                    weight_decay: float, nesterov: bool = False) -> torch.optim.Optimizer:
    """``sgd`` (torch.optim.SGD with momentum, weight decay and optionally Nesterov) or ``adamw``
    (torch.optim.AdamW with decoupled weight decay; ``momentum`` does not apply)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise RecipeError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")


class Augment:
    """Batched augmentation of uint8 images (B, C, H, W) on their device (module docstring)."""

    def __init__(self, spec: str, generator: torch.Generator, pad: int = 4) -> None:
        if spec not in AUGMENTS:
            raise RecipeError(f"unknown augmentation {spec!r}; valid: {', '.join(AUGMENTS)}")
        self.spec = spec
        self.generator = generator
        self.pad = pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec == "none":
            return x
        b, _, h, w = x.shape
        if self.spec == "standard":
            return self._resized_crop(x)
        if self.spec == "crop-flip":
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (b,), generator=self.generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=self.generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]   # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]   # (B, 1, 1, W)
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, channel, rows, cols]
        flip = (torch.rand(b, generator=self.generator) < 0.5).to(x.device)
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def _resized_crop(self, x: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> torch.Tensor:
        """RandomResizedCrop + flip of every image of the batch at once: torchvision's sampling (``tries``
        candidate boxes per image, the first that fits, else the whole image), float output in [0, 255]."""

        b, _, h, w = x.shape
        g = self.generator
        area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(b, tries, generator=g))
        log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(b, tries, generator=g)
        aspect = torch.exp(log_r)
        cw = torch.sqrt(area * aspect).round()
        ch = torch.sqrt(area / aspect).round()
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = torch.where(fits.any(1), fits.int().argmax(1), -1)
        rows = torch.arange(b)
        cw = torch.where(first >= 0, cw[rows, first.clamp(min=0)], torch.tensor(float(w)))
        ch = torch.where(first >= 0, ch[rows, first.clamp(min=0)], torch.tensor(float(h)))
        top = torch.floor(torch.rand(b, generator=g) * (h - ch + 1))
        left = torch.floor(torch.rand(b, generator=g) * (w - cw + 1))
        boxes = torch.stack([rows.float(), left, top, left + cw, top + ch], 1).to(x.device)
        out = roi_align(x.float(), boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)
        flip = (torch.rand(b, generator=g) < 0.5).to(x.device)
        return torch.where(flip[:, None, None, None], out.flip(3), out)
