"""What ``bench run`` and ``bench resume`` print: the plan before a sweep starts (data path, what is not
pruned, the trials, the budget and recipe), and after it the summary of every trial, the target searches'
records and where the results are. Plain text for the terminal and logs; no work is done here."""
from __future__ import annotations

import math
from collections.abc import Callable

from methods import get_method, list_methods

from . import names as N
from .config import SweepConfig, TrialConfig, redact
from .data import DATASETS, MEMORY_LIMIT_BYTES
from .datatypes import Dataset
from .models import MODELS, SOURCES
from .presets import PRESETS
from .protocols import first as first_protocol
from .protocols import get_protocol, list_protocols, variants
from .sources import DATASET_PLUGINS, SOURCE_HELP
from .tracking import default_tracking_uri, normalize_uri
from .usercode import display_name


def describe_structure(structure) -> list[str]:
    """What is not pruned and why (coupled streams, the logits layer, a failed check), one line per reason."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in structure.skipped.items():
        by_reason.setdefault(reason if not reason.startswith("coupled") else "coupled channels (a residual "
                             "stream or a gate), pruned with --prune-coupled", []).append(name)
    return [f"kept   {', '.join(names[:4])}{f' and {len(names) - 4} more' if len(names) > 4 else ''}: {reason}"
            for reason, names in by_reason.items()]


def describe_path(data, t) -> str:
    """Which data path the trials take and why (bench/batches.py)."""
    mib = (data.n_train + data.n_test) * math.prod(data.input_shape) / 2 ** 20
    if isinstance(data, Dataset):
        why = "--data-path memory" if t.data_path == "memory" else (
            f"{mib:.0f} MiB decoded, within the {MEMORY_LIMIT_BYTES / 2 ** 30:g} GiB of --data-path auto")
        return f"memory path: uint8 tensor on the device ({why}); normalised with mean " \
               f"{_fmt(data.mean)}, std {_fmt(data.std)}"
    why = "--data-path stream" if t.data_path == "stream" else (
        f"{mib:.0f} MiB decoded, over the {MEMORY_LIMIT_BYTES / 2 ** 30:g} GiB of --data-path auto")
    return (f"stream path: DataLoader, {t.loader_workers} workers ({why}); normalised with mean {_fmt(data.mean)}, "
            f"std {_fmt(data.std)}" + ("; standard augmentation per image in the workers"
                                       if t.augment == "standard" else ""))


def _fmt(values) -> str:
    return ",".join(f"{v:.4f}" for v in values)


def plan_lines(sweep: SweepConfig, trials: list[TrialConfig], train_examples: int | None = None) -> list[str]:
    """What the sweep will run, said before it starts: the trials (or the target searches), the experiment,
    the training budget and the recipe where it is not the plain one."""
    t = sweep.train
    lines = []
    seeds = f"{len(sweep.seeds)} seed{'s' * (len(sweep.seeds) > 1)}"
    if sweep.searching:
        searched = [m for m in sweep.methods if any(s.method == m for s in sweep.searches())]
        baselines = [m for m in sweep.methods if m not in searched]
        lines.append(f"search targets {', '.join(tg.label for tg in sweep.targets)} (tolerance {sweep.target_tolerance:g}) "
              f"for {', '.join(f'{m} (zeroing {sweep.zeroing_for(m)})' for m in searched)}: one search per method "
              f"and seed, {seeds}, at most {sweep.max_probes} probes each"
              + (f"; baseline {', '.join(baselines)} once per seed" if baselines else ""))
    elif first_protocol(t).per_target:   # a line per protocol and fine-tuning of the sweep
        lines += [get_protocol(v.protocol).plan_line(sweep, [x for x in trials if x.train == v], v)
                  for v in variants(t)]
    else:
        lines.append(f"sweep  {len(trials)} trial{'s' * (len(trials) != 1)}: " + ", ".join(
            f"{m} ({len(sweep.grid(m))} x {seeds}, zeroing {sweep.zeroing_for(m)})" for m in sweep.methods))
    lines.append(f"experiment {sweep.experiment_name}" + (f" (preset {sweep.preset})" if sweep.preset else ""))
    batch = f"batch {t.batch_size}"
    if train_examples is not None and t.batch_size >= train_examples:   # said: a whole epoch is one step
        batch += (f" (not below the {train_examples} training examples: one step per epoch, "
                  f"{sweep.train.epochs} in all)")
    lines.append(f"budget {display_name(t.model)}, {t.epochs} epochs, {batch}, lr {t.lr}, momentum {t.momentum}, "
          f"weight decay {t.weight_decay}, device {t.device}" + (", bf16 autocast" if t.precision == "bf16" else "")
          + (", channels-last" if t.channels_last else ""))
    recipe = [f"{t.optimizer}" + (" (nesterov)" if t.nesterov else "")] * (t.optimizer != "sgd" or t.nesterov)
    recipe += [f"schedule {t.schedule}"] * (t.schedule != "constant")
    recipe += [f"warm-up {t.warmup_epochs} epochs"] * (t.warmup_epochs > 0)
    recipe += [f"label smoothing {t.label_smoothing:g}"] * (t.label_smoothing > 0)
    recipe += [f"augment {t.augment}"] * (t.augment != "none")
    if recipe:
        lines.append("recipe " + ", ".join(recipe))
    return lines


def print_summary(outcomes: list, write: Callable[[str], None] = print) -> None:
    """One line per trial: status, accuracy, sparsity, its MLflow run, filters alive (or its error)."""
    write(f"\n{'trial':<30} {'status':<9} {'test acc':>8} {'sparsity':>9}  {'MLflow run':<32}  filters alive")
    for o in sorted(outcomes, key=lambda o: o.name):
        m = o.metrics
        run_id = str(m.get(N.RUN_ID_KEY, "-"))
        if o.status != "FINISHED" or N.TEST_ACCURACY not in m:
            reached = f" (after epoch {int(m['epoch'])})" if "epoch" in m else ""
            write(f"{o.name:<30} {o.status:<9} {'-':>8} {'-':>9}  {run_id:<32}  {o.error or ''}{reached}")
            continue
        filters = N.filters_line(m, "=")
        write(f"{o.name:<30} {o.status:<9} {m[N.TEST_ACCURACY]:>8.4f} {m[N.TOTAL_SPARSITY]:>9.1%}  {run_id:<32}  "
              f"{filters}")
    write("`bench export RUN --out FILE.pt2` writes a trial's compact model (a torch.export program); "
          "`--register NAME` adds it to MLflow's Model Registry")


def print_targets(records: list[dict], write: Callable[[str], None] = print) -> None:
    """One line per method, seed and target: the strength found, what it reached, its accuracy, probes."""
    write(f"\n{'method':<10} {'seed':>4}  {'target':<16} {'status':<11} {'value':>10} {'achieved':>9} "
          f"{'test acc':>8} {'probes':>6}")
    for r in records:
        value = f"{r['value']:.4g}" if r["value"] is not None else "-"
        achieved = f"{r['achieved']:.3f}" if r["achieved"] is not None else "-"
        acc = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
        write(f"{r['method']:<10} {r['seed']:>4}  {r['kind'] + ' ' + format(r['target'], 'g'):<16} "
              f"{r['status']:<11} {value:>10} {achieved:>9} {acc:>8} {r['probes']:>6}"
              + (f"  ({r['reason']})" if r.get("reason") else ""))
    write("targets.json on the sweep's run holds these records; `bench report` compares the methods at each target")


def print_where(sweep: SweepConfig, uri: str, name: str, write: Callable[[str], None]) -> None:
    ui = "`bench ui" + (f" --tracking-uri {redact(uri)}`" if uri != normalize_uri(default_tracking_uri()) else "`")
    write(f"\nresults in MLflow: {redact(uri)} (experiment {sweep.experiment_name!r}, sweep {name!r}); browse them with {ui}")


def print_registry() -> None:
    """``bench list``: the registered methods with their options, models, datasets and presets, and the sources
    --model and --dataset accept."""

    print("protocols (bench run --protocol NAME; in brackets the settings that belong to it)")
    for name in list_protocols():
        protocol = get_protocol(name)
        shown = ", ".join("--" + s.replace("_", "-") for s in protocol.settings)
        print(f"  {name:<16} [{shown or 'no setting of its own'}] {protocol.description}")
    print("methods (name, swept parameter and default grid, default zeroing: description; [protocols]: a "
          "criterion that runs under those protocols only)")
    width = max(len(n) for n in list_methods())
    for name in list_methods():
        cls = get_method(name)
        axis = f"{cls.sweep_axis}={','.join(f'{v:g}' for v in cls.default_grid)}" if cls.sweep_axis else "-"
        runs = [p for p in list_protocols() if get_protocol(p).runs(cls)]
        only = "" if len(runs) == len(list_protocols()) else f"[{', '.join(runs)}] "
        print(f"  {name:<{width}} {axis:<24} {cls.default_zeroing:<16} {only}{cls.description}")
        for f in cls.Hparams.__dataclass_fields__.values():
            print(f"  {'':<{width}}   .{f.name}={f.default!r}: {f.metadata.get('help', '')}")
    print("models (registered names, then the sources --model accepts)")
    for name, spec in sorted(MODELS.items()):
        print(f"  {name:<18} {spec.description}")
    for name, description in SOURCES.items():
        print(f"  {name:<18} {description}")
    print("datasets (registered names, then the sources --dataset accepts)")
    for name, spec in sorted(DATASETS.items()):
        print(f"  {name:<18} {spec.description}")
    for name in sorted(DATASET_PLUGINS):
        print(f"  {name:<18} {(DATASET_PLUGINS[name].__doc__ or 'registered by a plugin').strip().splitlines()[0]}")
    for name, description in SOURCE_HELP.items():
        print(f"  {name:<18} {description}")
    print("presets (bench run --preset NAME; its experiment is NAME)")
    for name, preset in PRESETS.items():
        st = preset.settings
        print(f"  {name:<20} {preset.description}")
        grids = "; ".join(f"{m} {'lam' if m in st.get('lambdas', {}) else 'ratio'} "
                          f"{','.join(f'{v:g}' for v in {**st.get('lambdas', {}), **st.get('ratios', {})}[m])}"
                          for m in st["methods"] if m in {**st.get("lambdas", {}), **st.get("ratios", {})})
        print(f"  {'':<20} {st['model']} on {st['dataset']}, {st['epochs']} epochs; methods "
              f"{','.join(st['methods'])}" + (f"; {grids}" if grids else "")
              + (f"; options {dict(st['options'])}" if st.get("options") else ""))
        if preset.paper is not None:
            print(f"  {'':<20} report quotes {preset.paper.title} ({preset.paper.source})")
