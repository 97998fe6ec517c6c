"""Presets: the paper's setups and the offline default study, as layers of ``bench run`` settings.

``bench run --preset NAME`` puts a preset between the built-in defaults and a ``--config`` file (the command
line wins over both). A preset names the model, data, budget, methods and their swept values, and the
experiment (the preset's name), and may carry the paper's published numbers for that setup, which
``bench report`` prints beside the run's own, labelled as quoted.

Berthelier et al. do not state their epochs or learning-rate schedule; the presets use the project's
budget (SGD lr 0.01, momentum 0.9, weight decay 5e-4 as Caffe's LeNet solver, batch 64) with the epochs
given here. No torch import: the report (bench/report/) reads this module too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .protocols.prune_to_target import PruneToTarget

PAPER = "Berthelier et al. 2020, arXiv 2007.10022"


@dataclass(frozen=True)
class PaperRow:
    """One row of a published table: method (the project's name when it has one), lam, test error in %,
    filters left per conv layer, total filter sparsity in %."""

    label: str
    method: str | None
    lam: float | None
    error: float
    filters: tuple[int, ...]
    sparsity: float


@dataclass(frozen=True)
class PaperTable:
    title: str
    source: str
    rows: tuple[PaperRow, ...]
    note: str = ""


@dataclass(frozen=True)
class FieldRow:
    """One row of a pruning benchmark's table: a method's test accuracy (%) before and after pruning to a
    speed-up in MACs (dense MACs / pruned MACs), and the project's method that computes its criterion (None:
    not implemented here)."""

    label: str
    method: str | None
    base: float
    pruned: float
    speedup: float


@dataclass(frozen=True)
class FieldTable:
    title: str
    source: str
    rows: tuple[FieldRow, ...]
    note: str = ""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    settings: Mapping[str, Any]
    paper: PaperTable | None = None
    paper_note: str = ""       # how the quoted table relates to this preset's run
    field: FieldTable | None = None   # a pruning benchmark's table at this preset's target (prune-to-target)


TABLE_I = PaperTable(
    "Table I: LeNet on MNIST", PAPER,
    (PaperRow("baseline", "none", None, 0.9, (20, 50), 0.0),
     PaperRow("l1", "l1", 0.5, 1.2, (4, 5), 87.1),
     PaperRow("l2", "l2", 0.5, 1.2, (3, 5), 88.6),
     PaperRow("SSL 1", "ssl", None, 0.8, (5, 19), 65.7),
     PaperRow("SSL 2", "ssl", None, 1.0, (3, 12), 78.6),
     PaperRow("NISP", "nisp", None, 0.8, (10, 25), 50.0),
     PaperRow("GAL", None, None, 1.0, (2, 15), 75.7),
     PaperRow("l1/l2", "l1l2", 0.5, 0.7, (5, 18), 67.1)),
    "SSL, NISP and GAL rows are the paper's quotes of those methods' own publications.")

TABLE_II = PaperTable(
    "Table II: LeNet on CIFAR-10", PAPER,
    (PaperRow("baseline", "none", None, 28.4, (20, 50), 0.0),
     PaperRow("l1", "l1", 0.7, 35.4, (7, 14), 70.0),
     PaperRow("l2", "l2", 0.7, 29.8, (12, 24), 48.6),
     PaperRow("l1/l2", "l1l2", 0.7, 30.1, (10, 25), 50.0),
     PaperRow("l1/l2", "l1l2", 0.7, 29.3, (14, 30), 37.1)),
    "Both l1/l2 rows read lambda 0.7 in the extracted text (the text calls 0.7 the best trade-off for both); "
    "they are two runs at different points of training or thresholds, not two lambdas.")

TABLE_III = PaperTable(
    "Table III: VGG11 on CIFAR-10 (no augmentation)", PAPER,
    (PaperRow("baseline", "none", None, 17.6, (64, 128, 256, 256, 512, 512, 512, 512), 0.0),
     PaperRow("l1", "l1", 0.0001, 19.3, (52, 128, 255, 256, 175, 147, 97, 123), 55.2),
     PaperRow("l2", "l2", 0.005, 18.2, (64, 128, 256, 256, 511, 474, 434, 299), 12.0),
     PaperRow("l1/l2", "l1l2", 0.005, 18.8, (35, 115, 238, 176, 354, 195, 190, 175), 46.3),
     PaperRow("l1/l2", "l1l2", 0.001, 16.8, (64, 128, 256, 256, 512, 512, 510, 380), 5.0)),
    "Kernel pseudo-norms not normalised by the filter count (norm_scale=none), hence the small lambdas.")

_FAMILY_PLAIN = {m: {"norm_scale": "none"} for m in ("l1", "l2", "l1l2")}

TORCH_PRUNING_RESNET56 = FieldTable(
    "ResNet-56 on CIFAR-10 at about 2.1x fewer MACs (Torch-Pruning's benchmark table)",
    "Fang et al. 2023, DepGraph: Towards Any Structural Pruning (CVPR); the benchmarks README of Torch-Pruning's repository",
    (FieldRow("Group-L1", "magnitude-l1", 93.53, 92.93, 2.12),
     FieldRow("Group-BN", "slimming", 93.53, 93.29, 2.12),
     FieldRow("Group-GReg", "growing-reg", 93.53, 93.55, 2.12),
     FieldRow("DepGraph w/o sparse learning (group l2)", "magnitude-l2", 93.53, 93.46, 2.11),
     FieldRow("DepGraph (group sparse learning)", "group-norm", 93.53, 93.77, 2.13)),
    "Their protocol: a ResNet-56 (option-B shortcuts) pre-trained 200 epochs (SGD 0.1, x0.1 at 120, 150, 180), "
    "then, for the sparse-learning rows, sparse training without weight decay, progressive global pruning in "
    "many small steps to the speed-up, and 100 epochs of fine-tuning (SGD 0.01, x0.1 at 60 and 80); one run each, "
    "the best epoch on the test set. This preset trains from scratch in one budget (200 sparse epochs, one "
    "pruning step, 100 fine-tuning epochs on one cosine schedule), weight decay throughout, three seeds, the "
    "final epoch; FLOPs here are the structural count (convs and linears), the speed-up column Torch-Pruning's "
    "own MACs count (`compact_macs`).")


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("fashion-mnist-lenet",
           "the offline default study: every method that runs on Caffe LeNet, full Fashion-MNIST, 10 epochs",
           {"model": "lenet5", "dataset": "fashion-mnist", "epochs": 10,
            "methods": ["none", "l1", "l2", "l1l2", "ssl", "nisp", "l0sgl", "hgsr"],
            "lambdas": {"l1": [0.05, 0.2, 0.5], "l2": [0.5, 2.0, 8.0], "l1l2": [0.05, 0.2, 0.5],
                        "ssl": [0.003, 0.01, 0.03], "l0sgl": [5e-5, 1.5e-4, 5e-4, 1e-3, 2e-3],
                        "hgsr": [1e-5, 3e-5, 1e-4, 2e-4, 4e-4]},
            "ratios": {"nisp": [0.5, 0.8]}},
           TABLE_I, "The paper has no Fashion-MNIST results: Table I (MNIST, same network) is quoted for "
           "orientation only; errors are not comparable across the datasets."),
    Preset("mnist-lenet", "Table I: Caffe LeNet on MNIST, the paper's lambdas (0.5), SSL and NISP beside them",
           {"model": "lenet5", "dataset": "mnist", "epochs": 30,
            "methods": ["none", "l1", "l2", "l1l2", "ssl", "nisp"],
            "lambdas": {"l1": [0.5], "l2": [0.5], "l1l2": [0.5], "ssl": [0.003, 0.01, 0.03]},
            "ratios": {"nisp": [0.5]}},
           TABLE_I),
    Preset("cifar10-lenet", "Table II: Caffe LeNet on CIFAR-10 (32x32x3), the paper's lambda 0.7",
           {"model": "lenet5", "dataset": "cifar10", "epochs": 30,
            "methods": ["none", "l1", "l2", "l1l2"], "lambdas": {"l1": [0.7], "l2": [0.7], "l1l2": [0.7]}},
           TABLE_II),
    Preset("cifar10-vgg11", "Table III: VGG11 (BN) on CIFAR-10 without augmentation, plain kernel l1 norms "
           "(norm_scale=none) and the paper's lambdas; a GPU job",
           {"model": "vgg11", "dataset": "cifar10", "epochs": 30,
            "methods": ["none", "l1", "l2", "l1l2"],
            "lambdas": {"l1": [0.0001], "l2": [0.005], "l1l2": [0.005, 0.001]}, "options": _FAMILY_PLAIN},
           TABLE_III),
    # He et al. 2016 (arXiv 1512.03385), sec. 4.2: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, the rate
    # divided by 10 at 32k and 48k iterations of 64k (epochs 82 and 123 of 164 at 391 steps per epoch), 4-pixel
    # padding, random 32x32 crops and horizontal flips; published test error 8.75 % (ResNet-20), 6.97 % (ResNet-56)
    *(Preset(f"cifar10-{model}", f"{model} on CIFAR-10 with He et al.'s recipe (SGD 0.1, x0.1 at epochs 82 and "
             f"123 of 164, weight decay 1e-4, batch 128, crop-flip; published baseline {acc} % test accuracy); a "
             "GPU job", {"model": model, "dataset": "cifar10", "epochs": 164, "batch_size": 128, "lr": 0.1,
                         "weight_decay": 1e-4, "schedule": "step:82,123", "augment": "crop-flip",
                         "methods": ["none", "l1", "l2", "l1l2", "ssl", "nisp"]})
      for model, acc in (("resnet20", 91.25), ("resnet56", 93.03))),
    Preset("cifar10-resnet56b-2x", "the field's headline comparison: ResNet-56 (option B) on CIFAR-10 pruned to "
           "2.11x fewer FLOPs (--protocol prune-to-target, residual streams included), every method and criterion "
           "against random and scratch controls over 3 seeds, Torch-Pruning's published numbers beside; a GPU job",
           {"model": "resnet56b", "dataset": "cifar10", "protocol": PruneToTarget.name, "prune_coupled": True,
            "target_flops_reduction": [0.526], "epochs": 300, "sparse_epochs": 200, "batch_size": 128, "lr": 0.1,
            "weight_decay": 5e-4, "schedule": "cosine", "augment": "crop-flip", "seeds": [0, 1, 2],
            "controls": ["scratch"],
            "methods": ["none", "l1", "l2", "l1l2", "ssl", "nisp", "l0sgl", "hgsr", "slimming", "group-norm",
                        "growing-reg", "magnitude-l1", "magnitude-l2", "lamp", "fpgm", "bn-scale", "taylor", "hessian",
                        "random"]},
           field=TORCH_PRUNING_RESNET56),
)}


class PresetError(ValueError):
    """An unknown preset name."""


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}") from None


def preset_settings(name: str, methods: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The preset's ``bench run`` settings (plus ``preset`` and ``experiment``). With ``methods`` (the user
    picked other methods), per-method entries are kept for those methods only."""
    preset = get_preset(name)
    out: dict[str, Any] = {"experiment": name, **{k: v for k, v in preset.settings.items()}, "preset": name}
    if methods is not None:
        out["methods"] = list(methods)
        for key in ("lambdas", "ratios", "options", "zeroing"):
            if key in out:
                out[key] = {m: v for m, v in out[key].items() if m in methods or m == "*"}
    return out


def field_table(name: str | None) -> FieldTable | None:
    """The pruning benchmark's table a preset quotes, if it has one."""
    return PRESETS[name].field if name in PRESETS else None


def paper_table(name: str | None) -> tuple[PaperTable, str] | None:
    """The quoted table of a preset and the note on how it relates to the run, if it has one."""
    if name is None or name not in PRESETS or PRESETS[name].paper is None:
        return None
    return PRESETS[name].paper, PRESETS[name].paper_note
