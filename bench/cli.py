"""The ``bench`` command: argument parsing only; the work is done by the modules it calls.

    bench run --methods l1l2,l1,l2     # a sweep: Ray Tune trials, each an MLflow run
    bench run ... --resume             # continue an interrupted sweep (also: bench resume NAME)
    bench export RUN_ID --out m.pt     # a trial's compact model (removed filters deleted)
    bench report                       # the trade-off report: reports/<experiment>/index.html
    bench perf [--quick] [--json]      # the harness's speed against a reference loop and the machine
    bench list                         # registered methods, models and datasets
    bench ui                           # the MLflow UI on the store the sweeps used
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Any, Sequence

EXIT_BAD_INPUT = 2
PRECISIONS = ("fp32", "bf16")   # --precision of bench run and bench perf (TrainSettings checks the same)
EXIT_TRIALS_FAILED = 1
EXIT_INTERRUPTED = 130


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _per_method_floats(text: str) -> tuple[str, tuple[float, ...]]:
    """``V1,V2`` (every method on the axis) or ``METHOD=V1,V2`` (one method)."""
    method, sep, values = text.partition("=")
    return (method.strip(), _floats(values)) if sep else ("*", _floats(text))


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _items(text: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected at least one value")
    return items


def _zeroing(text: str) -> dict[str, str]:
    """``SPEC`` for every method, or ``METHOD=SPEC`` entries (comma separated), e.g. ``l1=threshold:1e-4``."""
    out: dict[str, str] = {}
    for item in _items(text):
        method, sep, spec = item.partition("=")
        out[method.strip() if sep else "*"] = spec.strip() if sep else item
    return out


def _option(text: str) -> tuple[str, str, str]:
    method_key, sep, value = text.partition("=")
    method, dot, key = method_key.partition(".")
    if not (sep and dot and method and key):
        raise argparse.ArgumentTypeError(f"expected METHOD.OPTION=VALUE (e.g. l1l2.norm_scale=none), got {text!r}")
    return method.strip(), key.strip(), value.strip()


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_runtime_arguments(g) -> None:
    """Where and how trials run: the options a resumed sweep may change."""
    g.add_argument("--ray-address", help="join an existing Ray cluster, HOST:PORT as printed by `ray start "
                   "--head` (also RAY_ADDRESS); default: start a local Ray for this command")
    g.add_argument("--cpus-per-trial", type=float, help="CPUs reserved per trial; torch threads follow it "
                   "(default: 1)")
    g.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions pack trials on one GPU, "
                   "e.g. 0.25 runs four per GPU (default: 1 when the cluster has GPUs and --device is not cpu, "
                   "else 0)")
    g.add_argument("--max-concurrent", type=_positive_int, help="at most N trials at once (default: as "
                   "resources allow)")
    g.add_argument("--max-failures", type=_positive_int, help="retry a trial that raised up to N times, each "
                   "attempt its own MLflow run (default: 0, a failed trial is recorded and the sweep goes on)")
    g.add_argument("--storage-path", help="folder of Ray Tune's trial records (default: ./ray_results; on a "
                   "cluster of several machines, a folder every node can reach)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``bench run``'s options. Every default is None here so that a config file can sit between the
    built-in defaults (config.py) and the command line."""
    g = p.add_argument_group("what to compare")
    g.add_argument("--preset", help="start from a preset: the paper's setups (mnist-lenet = Table I, "
                   "cifar10-lenet = Table II, cifar10-vgg11 = Table III) or fashion-mnist-lenet (the offline "
                   "default study); the options below and --config override it; see `bench list`")
    g.add_argument("--methods", type=_items, help="comma-separated methods (default: every registered method; "
                   "see `bench list`)")
    g.add_argument("--lambdas", type=_per_method_floats, action="append", metavar="[METHOD=]V1,V2,...",
                   help="penalty strengths for every method swept over lam, or with METHOD= for one method "
                   "(repeatable: --lambdas 0.05,0.2 --lambdas ssl=0.01,0.03; default: each method's own grid)")
    g.add_argument("--ratios", type=_per_method_floats, action="append", metavar="[METHOD=]V1,V2,...",
                   help="pruning ratios in (0, 1) for methods swept over ratio, or with METHOD= for one method "
                   "(repeatable; default: each method's own grid)")
    g.add_argument("--seeds", type=_ints, help="comma-separated seeds; each point of the sweep runs once per "
                   "seed (default: 0)")
    g.add_argument("--zeroing", type=_zeroing, help="zeroing rule for every method (none, cumulative:T[:layer], "
                   "threshold:EPS), or METHOD=RULE entries, comma separated (default: each method's own)")
    g.add_argument("--option", dest="option_list", action="append", type=_option, metavar="METHOD.KEY=VALUE",
                   help="a method option, e.g. l1l2.norm_scale=none (repeatable; see `bench list`)")
    g.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                   help="import a module or .py file that registers more methods with "
                   "methods.register_method (repeatable; loaded in every trial too)")
    g = p.add_argument_group("model, data and training budget")
    g.add_argument("--model", help="model (default: lenet5)")
    g.add_argument("--dataset", help="dataset (default: fashion-mnist)")
    g.add_argument("--data-dir", help="folder searched first for dataset files (then $BENCH_DATA_DIR, "
                   "~/.cache/bench, and Debian's /usr/share/datasets/fashion-mnist)")
    g.add_argument("--no-download", dest="download", action="store_const", const=False,
                   help="never download a missing dataset (also BENCH_NO_DOWNLOAD=1)")
    g.add_argument("--epochs", type=_positive_int, help="training epochs per trial (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, help="training batch size (default: 64)")
    g.add_argument("--lr", type=float, help="SGD learning rate (default: 0.01)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default: 0.9)")
    g.add_argument("--weight-decay", type=float, help="SGD weight decay, the same for every method "
                   "(default: 5e-4, Caffe's LeNet solver)")
    g.add_argument("--limit-train", type=_positive_int, help="use only the first N training examples")
    g.add_argument("--limit-test", type=_positive_int, help="use only the first N test examples")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto = cuda when available)")
    g.add_argument("--precision", choices=PRECISIONS, help="bf16: bfloat16 autocast for the forward pass "
                   "and task loss, weights and optimizer in float32 (default: fp32)")
    g.add_argument("--channels-last", dest="channels_last", action="store_const", const=True,
                   help="channels-last memory layout for conv weights and inputs (default: off)")
    g = p.add_argument_group("where it runs and where it is recorded")
    add_store_arguments(g)
    g.add_argument("--name", help="the sweep's name, its MLflow parent run (default: sweep-DATE-TIME)")
    g.add_argument("--resume", action="store_true", help="continue the sweep of the same trials (the one "
                   "named by --name, else the latest) in this experiment: finished trials are kept, the others "
                   "run")
    add_runtime_arguments(g)
    g.add_argument("--config", help="TOML file with any of these options (underscored keys); the command "
                   "line wins over it")
    g.add_argument("--dry-run", action="store_true", help="validate, load the data, list the trials and stop")


def add_store_arguments(g) -> None:
    g.add_argument("--experiment", help="MLflow experiment name (default: MODEL-DATASET)")
    g.add_argument("--tracking-uri", help="MLflow store: sqlite:///PATH.db or http://HOST:PORT of an `mlflow "
                   "server` (default: $MLFLOW_TRACKING_URI, else sqlite at <cwd>/mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark structured-sparsity regularizers "
                                     "for CNNs: one trainer, Ray Tune sweeps, MLflow records.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sweep (methods x swept values x seeds)",
                         description="Run a sweep on Ray Tune; every trial is an MLflow run.")
    add_run_arguments(run)
    resume = sub.add_parser("resume", help="continue an interrupted sweep by name",
                            description="Continue a sweep: its finished trials are kept, the others (interrupted, "
                            "failed or never started) run again. The sweep's own settings come from its MLflow "
                            "record; only where it runs can change.")
    resume.add_argument("sweep_name", metavar="NAME", help="the sweep's name, as `bench run` printed it")
    g = resume.add_argument_group("where it is recorded and where it runs")
    add_store_arguments(g)
    g.add_argument("--data-dir", help="folder searched first for dataset files")
    g.add_argument("--no-download", dest="download", action="store_const", const=False,
                   help="never download a missing dataset (also BENCH_NO_DOWNLOAD=1)")
    add_runtime_arguments(g)
    export = sub.add_parser("export", help="write a trial's compact model (removed filters deleted)",
                            description="Write the compact model a trial saved when it finished: every removed "
                            "filter deleted, with its bias, BatchNorm channel and the next layer's inputs. "
                            "FILE.pt: a state dict with the per-layer widths, reloaded by "
                            "bench.compact.load_compact(FILE); FILE.pt2: a torch.export program, reloaded with "
                            "plain torch: torch.export.load(FILE).module().")
    export.add_argument("run_id", metavar="RUN_ID", help="a trial's MLflow run id (the MLflow UI shows it)")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write it: FILE.pt or FILE.pt2")
    export.add_argument("--tracking-uri", help="the store (default: as for bench run)")
    report = sub.add_parser("report", help="write the trade-off report of an experiment",
                            description="Read an experiment's sweeps from MLflow and write reports/<experiment>/: "
                            "index.html (self-contained, opens offline), report.md, the figures as PNG and "
                            "results.csv (one row per trial and epoch); the folder is also attached to each "
                            "sweep's MLflow parent run (artifacts, report/).")
    report.add_argument("--experiment", help="the experiment to report (default: the store's only experiment "
                        "with sweeps)")
    report.add_argument("--tracking-uri", help="the store (default: as for bench run)")
    report.add_argument("--out", metavar="DIR", help="output folder (default: reports/<experiment>)")
    report.add_argument("--sweep", metavar="NAME", help="only this sweep of the experiment (default: all of them)")
    report.add_argument("--no-attach", dest="attach", action="store_false",
                        help="do not attach the report to the sweeps' MLflow parent runs")
    report.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                        help="a plugin whose methods the experiment used (for the methods section)")
    perf = sub.add_parser("perf", help="measure the harness's speed against a reference loop and the machine",
                          description="Trainer throughput against a torchvision DataLoader loop and against the "
                          "pure compute of one repeated batch, each method's penalty overhead, the per-epoch cost "
                          "of zeroing and metrics, FLOP utilisation and peak memory; LeNet on Fashion-MNIST and "
                          "VGG11 on CIFAR-shaped data. Ratios are measured side by side in one run.")
    perf.add_argument("--quick", action="store_true", help="smaller epochs: under two minutes on a 2-core CPU")
    perf.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    perf.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    perf.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, one per core)")
    perf.add_argument("--precision", choices=PRECISIONS, default="fp32", help="the trainer's and compute "
                      "loop's precision, as bench run --precision (default: fp32)")
    perf.add_argument("--channels-last", action="store_true", help="channels-last layout for the trainer and the "
                      "compute loop, as bench run --channels-last")
    lst = sub.add_parser("list", help="list registered methods, models and datasets")
    lst.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                     help="also list the methods a plugin registers")
    ui = sub.add_parser("ui", help="start the MLflow UI on the sweeps' store")
    ui.add_argument("--tracking-uri", help="the store (default: as for bench run)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from methods import MethodError

    from .config import ConfigError
    from .data import DataError
    from .models import ModelError
    from .zeroing import ZeroingSpecError
    handled: tuple[type[BaseException], ...] = (ConfigError, DataError, ModelError, MethodError, ZeroingSpecError)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "ui":
            return cmd_ui(args)
        if args.command == "perf":
            return cmd_perf(args)
        from .tracking import TrackingError
        handled += (TrackingError,)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "report":
            from .report import ReportError
            handled += (ReportError,)
            return cmd_report(args)
        from .sweep import ClusterError
        handled += (ClusterError,)
        return cmd_run(args)
    except handled as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


# -- bench run ---------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from .config import ConfigError, build_sweep, load_config_file
    from .tracking import check_tracking_uri, default_tracking_uri, normalize_uri

    if args.command == "resume":
        uri = normalize_uri(args.tracking_uri or default_tracking_uri())
        check_tracking_uri(uri)
        sweep, record = _saved_sweep(uri, args)
    else:
        file_values = load_config_file(args.config) if args.config else {}
        preset = args.preset or file_values.get("preset")
        preset_values = {}
        if preset:
            from .presets import PresetError, preset_settings
            try:
                preset_values = preset_settings(preset, args.methods or file_values.get("methods"))
            except PresetError as err:
                raise ConfigError(str(err)) from None
            for key in ("lambdas", "ratios"):   # values given by the user replace the preset's grids
                if getattr(args, key) or key in file_values:
                    preset_values.pop(key, None)
        skip = ("command", "config", "dry_run", "option_list", "resume")
        cli = {k: v for k, v in vars(args).items() if k not in skip}
        options: dict[str, dict[str, str]] = {}
        for method, key, value in args.option_list or []:
            options.setdefault(method, {})[key] = value
        cli["options"] = options or None
        for key in ("lambdas", "ratios"):
            cli[key] = dict(cli[key]) if cli[key] else None
        sweep = build_sweep(preset_values, file_values, cli)
        uri = normalize_uri(sweep.tracking_uri or default_tracking_uri())
        check_tracking_uri(uri)
        record = None
    trials = sweep.trials()

    from .sweep import check_ray_address
    check_ray_address(sweep.ray_address)
    data = _load_data(sweep)
    print(f"sweep  {len(trials)} trial{'s' * (len(trials) != 1)}: " + ", ".join(
        f"{m} ({len(sweep.grid(m))} x {len(sweep.seeds)} seed{'s' * (len(sweep.seeds) > 1)}, "
        f"zeroing {sweep.zeroing_for(m)})" for m in sweep.methods))
    print(f"experiment {sweep.experiment_name}" + (f" (preset {sweep.preset})" if sweep.preset else ""))
    t = sweep.train
    print(f"budget {t.model}, {t.epochs} epochs, batch {t.batch_size}, lr {t.lr}, momentum {t.momentum}, "
          f"weight decay {t.weight_decay}, device {t.device}" + (", bf16 autocast" if t.precision == "bf16" else "")
          + (", channels-last" if t.channels_last else ""))
    if getattr(args, "dry_run", False):
        for trial in trials:
            print(f"  {trial.name:<32} {trial.key}  options {dict(trial.options)}  zeroing {trial.zeroing}")
        return 0

    from .tracking import finished_trials, prepare_experiment
    experiment_id = prepare_experiment(uri, sweep.experiment_name)
    if args.command == "run":
        record = _sweep_to_resume(uri, experiment_id, sweep) if args.resume else None
        if not args.resume:
            _refuse_existing_name(uri, experiment_id, sweep)
    done: dict = {}
    if record is not None:
        done = {k: r for k, r in finished_trials(uri, experiment_id, record.run_id).items()
                if k in {t.key for t in trials}}
        print(f"resume sweep {record.name!r} ({record.status}): {len(done)} of {len(trials)} trials finished, "
              f"running the other {len(trials) - len(done)}")
    return _execute(sweep, trials, data, uri, experiment_id, record, done)


def _load_data(sweep):
    from methods import MethodError

    from .config import ConfigError
    from .data import load_dataset
    from .models import build_model, describe, get_model_spec

    t = sweep.train
    t0 = time.monotonic()
    data = load_dataset(t.dataset, t.data_dir, t.limit_train, t.limit_test,
                        input_shape=get_model_spec(t.model).default_input, download=t.download)
    try:
        model = build_model(t.model, data.input_shape, data.num_classes)
        describe(model, data.input_shape)
    except ValueError as err:
        raise ConfigError(f"model {t.model!r} cannot take {t.dataset!r} inputs: {err}") from None
    for trial in {trial.method: trial for trial in sweep.trials()}.values():
        try:
            trial.build_method().check_model(model)
        except MethodError as err:
            raise ConfigError(f"method {trial.method!r} cannot run on model {t.model!r}: {err}") from None
    print(f"data   {data.describe()} [{time.monotonic() - t0:.1f}s]")
    return data


def _runtime_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("ray_address", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "storage_path",
            "data_dir", "download")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _saved_sweep(uri: str, args: argparse.Namespace):
    """``bench resume NAME``: the sweep's config as its parent run saved it, with runtime overrides."""
    from .config import ConfigError, SweepConfig
    from .tracking import experiment_id_of, experiment_names, find_sweeps

    name = args.sweep_name
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"{name!r} is not a sweep name (letters, digits, '.', '_' and '-')")
    experiments = [args.experiment] if args.experiment else experiment_names(uri)
    found = []
    for experiment in experiments:
        experiment_id = experiment_id_of(uri, experiment)
        if experiment_id is not None:
            found += [(experiment, r) for r in find_sweeps(uri, experiment_id, name=name)]
    if not found:
        where = f"experiment {args.experiment!r}" if args.experiment else "any experiment"
        raise ConfigError(f"no sweep named {name!r} in {where} of {uri}"
                          + _known_sweeps(uri, args.experiment))
    if len({e for e, _ in found}) > 1:
        raise ConfigError(f"sweeps named {name!r} exist in several experiments "
                          f"({', '.join(sorted({e for e, _ in found}))}); say which with --experiment")
    experiment, record = found[0]
    overrides = _runtime_overrides(args)
    overrides.update(tracking_uri=uri, experiment=experiment, name=record.name)
    sweep = SweepConfig.from_dict(record.config, **overrides)
    if record.key and sweep.key != record.key:
        raise ConfigError(f"sweep {name!r}: its saved config no longer gives the same trials (the methods' "
                          "defaults or the registry changed since it ran); start a new sweep")
    return sweep, record


def _known_sweeps(uri: str, experiment: str | None) -> str:
    from .tracking import experiment_id_of, experiment_names, find_sweeps
    lines = []
    for name in [experiment] if experiment else experiment_names(uri):
        experiment_id = experiment_id_of(uri, name)
        if experiment_id is None:
            continue
        for r in find_sweeps(uri, experiment_id)[:10]:
            lines.append(f"  {r.name:<28} {r.status:<9} experiment {name!r}")
    return "; sweeps there:\n" + "\n".join(lines) if lines else "; it has no sweep yet"


def _sweep_to_resume(uri: str, experiment_id: str, sweep):
    """``bench run ... --resume``: the sweep named ``--name``, else the latest sweep with the same trials."""
    from .config import ConfigError
    from .tracking import find_sweeps

    if sweep.name:
        records = find_sweeps(uri, experiment_id, name=sweep.name)
        if not records:
            raise ConfigError(f"no sweep named {sweep.name!r} to resume in experiment {sweep.experiment_name!r}"
                              + _known_sweeps(uri, sweep.experiment_name))
        if records[0].key != sweep.key:
            raise ConfigError(f"sweep {sweep.name!r} was started with other trials (methods, values, seeds or "
                              "training settings differ); resume it with the same options, or with "
                              f"`bench resume {sweep.name}`")
        return records[0]
    records = find_sweeps(uri, experiment_id, key=sweep.key)
    if not records:
        raise ConfigError(f"no sweep with these trials to resume in experiment {sweep.experiment_name!r} "
                          "(same methods, values, seeds and training settings)" + _known_sweeps(uri, sweep.experiment_name))
    return records[0]


def _refuse_existing_name(uri: str, experiment_id: str, sweep) -> None:
    from .config import ConfigError
    from .tracking import find_sweeps

    if sweep.name and find_sweeps(uri, experiment_id, name=sweep.name):
        raise ConfigError(f"a sweep named {sweep.name!r} exists in experiment {sweep.experiment_name!r}; continue "
                          f"it with --resume (or `bench resume {sweep.name}`) or pick another --name")
    unfinished = [r for r in find_sweeps(uri, experiment_id, key=sweep.key) if r.status != "FINISHED"]
    if unfinished:
        print(f"note   sweep {unfinished[0].name!r} has the same trials and ended {unfinished[0].status}; "
              "add --resume to continue it instead of starting anew")


def _execute(sweep, trials, data, uri: str, experiment_id: str, record, done: dict) -> int:
    from .sweep import TrialOutcome, cluster_summary, ray_session, run_sweep
    from .tracking import (TrackingInfo, close_open_children, end_run, reopen_run, start_sweep_run)

    todo = [t for t in trials if t.key not in done]
    previous = [TrialOutcome(t.name, "FINISHED", {**done[t.key].data.metrics, "mlflow_run_id": done[t.key].info.run_id},
                             key=t.key) for t in trials if t.key in done]
    if record is not None and not todo:
        if record.status != "FINISHED":
            end_run(uri, record.run_id, "FINISHED")
        print(f"nothing to run: every trial of sweep {record.name!r} finished")
        print_summary(previous)
        return 0
    with ray_session(sweep.ray_address):
        print(f"ray    {cluster_summary()}" + (f" at {sweep.ray_address}" if sweep.ray_address else " (local)"))
        if record is None:
            name = sweep.name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
            parent = start_sweep_run(uri, experiment_id, name, _sweep_params(sweep, len(trials)),
                                     {**sweep.to_dict(), "name": name}, sweep.key)
        else:
            name, parent = record.name, record.run_id
            # runs left RUNNING by a driver that was killed outright: their trials did not finish
            closed = close_open_children(uri, experiment_id, parent, "KILLED",
                                         "the sweep's driver stopped before this trial finished")
            if closed:
                print(f"note   {closed} run(s) of the interrupted sweep were still RUNNING; marked KILLED")
            reopen_run(uri, parent)
        print(f"mlflow {uri}  experiment {sweep.experiment_name!r}  sweep {name!r} (run {parent})")
        tracking = TrackingInfo(uri, experiment_id, parent)
        try:
            outcomes = run_sweep(sweep, todo, data, tracking, run_name=f"{name}-{time.strftime('%H%M%S')}")
        except BaseException as err:
            close_open_children(uri, experiment_id, parent)
            interrupted = isinstance(err, KeyboardInterrupt)
            end_run(uri, parent, "KILLED" if interrupted else "FAILED", "interrupted" if interrupted else
                    f"{type(err).__name__}: {err}")
            if interrupted:
                print(f"\ninterrupted; continue with `bench resume {name}`", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise
        close_open_children(uri, experiment_id, parent)
    outcomes = previous + outcomes
    counts = {s: sum(o.status == s for o in outcomes) for s in ("FINISHED", "FAILED", "KILLED")}
    if counts["KILLED"]:
        status = "KILLED"
    else:
        status = "FAILED" if counts["FAILED"] == len(outcomes) else "FINISHED"
    problems = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if s != "FINISHED" and n)
    end_run(uri, parent, status, f"{problems} of {len(outcomes)} trials" if problems else None)
    print_summary(outcomes)
    from .tracking import default_tracking_uri, normalize_uri
    print(f"\nresults in MLflow: {uri} (experiment {sweep.experiment_name!r}, sweep {name!r}); browse them with "
          "`bench ui" + (f" --tracking-uri {uri}`" if uri != normalize_uri(default_tracking_uri()) else "`"))
    if counts["KILLED"]:
        print(f"interrupted: {counts['FINISHED']} of {len(outcomes)} trials finished; continue with "
              f"`bench resume {name}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    if counts["FAILED"]:
        print(f"{counts['FAILED']} trial(s) failed; `bench resume {name}` runs them again", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return 0


def _sweep_params(sweep, n_trials: int) -> dict[str, Any]:
    t = sweep.train
    return {"methods": ",".join(sweep.methods), "trials": n_trials, "seeds": ",".join(map(str, sweep.seeds)),
            "model": t.model, "dataset": t.dataset, "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
            "limit_train": t.limit_train, "limit_test": t.limit_test}


def print_summary(outcomes) -> None:
    from . import metrics as M
    print(f"\n{'trial':<30} {'status':<9} {'test acc':>8} {'sparsity':>9}  {'MLflow run':<32}  filters alive")
    for o in sorted(outcomes, key=lambda o: o.name):
        m = o.metrics
        run = str(m.get("mlflow_run_id", "-"))
        if o.status != "FINISHED" or M.TEST_ACCURACY not in m:
            reached = f" (after epoch {int(m['epoch'])})" if "epoch" in m else ""
            print(f"{o.name:<30} {o.status:<9} {'-':>8} {'-':>9}  {run:<32}  {o.error or ''}{reached}")
            continue
        filters = " ".join(f"{layer}={n}" for layer, n in M.filters_by_layer(m).items())
        print(f"{o.name:<30} {o.status:<9} {m[M.TEST_ACCURACY]:>8.4f} {m[M.TOTAL_SPARSITY]:>9.1%}  {run:<32}  {filters}")
    print("`bench export RUN --out FILE.pt` writes a trial's compact model")


# -- bench list / ui -----------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from methods import get_method, list_methods, load_plugins

    load_plugins(args.plugins or ())

    from .data import DATASETS
    from .models import MODELS
    print("methods (name, swept parameter and default grid, default zeroing: description)")
    for name in list_methods():
        cls = get_method(name)
        axis = f"{cls.sweep_axis}={','.join(f'{v:g}' for v in cls.default_grid)}" if cls.sweep_axis else "-"
        print(f"  {name:<10} {axis:<22} {cls.default_zeroing:<16} {cls.description}")
        for f in cls.Hparams.__dataclass_fields__.values():
            print(f"  {'':<10}   .{f.name}={f.default!r}: {f.metadata.get('help', '')}")
    print("models")
    for name, spec in sorted(MODELS.items()):
        print(f"  {name:<10} {spec.description}")
    print("datasets")
    for name, spec in sorted(DATASETS.items()):
        print(f"  {name:<14} {spec.description}")
    from .presets import PRESETS
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
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from .compact import export_program, load_compact
    from .config import ConfigError
    from .tracking import check_tracking_uri, default_tracking_uri, download_artifact, get_run, normalize_uri

    out = Path(args.out)
    if out.suffix not in (".pt", ".pt2"):
        raise ConfigError(f"--out {out}: name the file FILE.pt (state dict and widths) or FILE.pt2 (torch.export)")
    uri = normalize_uri(args.tracking_uri or default_tracking_uri())
    check_tracking_uri(uri)
    run = get_run(uri, args.run_id)
    if run.kind == "sweep":
        raise ConfigError(f"run {run.run_id} is the sweep {run.name!r}; give one of its trials' run ids")
    with tempfile.TemporaryDirectory() as folder:
        path = download_artifact(uri, run.run_id, "compact_model.pt", folder)
        if path is None:
            raise ConfigError(f"run {run.run_id} ({run.name}, {run.status}) has no compact model: a trial saves "
                              "it when it finishes")
        model, info = load_compact(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".pt2":
            export_program(model, info["input_shape"], out)
        else:
            shutil.copyfile(path, out)
    removed = {k: v for k, v in info["removed"].items() if v}
    widths = ", ".join(str(w) for w in info["widths"])
    print(f"wrote {out}: {info['model']} with conv widths {widths}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters (run {run.name}, {run.status})")
    if removed:
        print("removed filters: " + ", ".join(f"{layer} {n}" for layer, n in removed.items()))
    else:
        print("no filter was removed in this run: this is the dense model")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from methods import get_method, list_methods, load_plugins

    from .report import MethodInfo, build_report, choose_experiment, load_results
    from .tracking import check_tracking_uri, default_tracking_uri, normalize_uri

    load_plugins(args.plugins or ())
    uri = normalize_uri(args.tracking_uri or default_tracking_uri())
    check_tracking_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        from .report import ReportError
        raise ReportError(f"no tracking database at {uri[len('sqlite:///'):]}: run `bench run` here first, or "
                          "pass the --tracking-uri the sweeps used")
    experiment = choose_experiment(uri, args.experiment)
    started = time.monotonic()
    print(f"reading experiment {experiment!r} from {uri}", flush=True)
    results = load_results(uri, experiment, args.sweep)
    registry = {name: MethodInfo(name, cls.description, cls.paper, cls.formula)
                for name, cls in ((name, get_method(name)) for name in list_methods())}
    out = Path(args.out or Path("reports") / _safe_folder(experiment))
    index = build_report(results, out, registry, attach=args.attach)
    counts = results.trials["status"].value_counts().to_dict()
    print(f"{len(results.trials)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), "
          f"{len(results.epochs)} epoch rows, {len(results.sweeps)} sweep(s) [{time.monotonic() - started:.1f}s]")
    print(f"wrote {index} (self-contained), {out / 'report.md'}, {out / 'results.csv'} and the figures as PNG")
    if args.attach:
        print(f"attached to the sweeps' MLflow parent runs as artifacts under report/: "
              f"{', '.join(s['name'] for s in results.sweeps)}")
    return 0


def _safe_folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "experiment"


def cmd_perf(args: argparse.Namespace) -> int:
    import json

    from .perf import Format, run_perf
    from .trainer import resolve_device

    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        from .config import ConfigError
        raise ConfigError(str(err)) from None
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else (
        lambda text: print(text, flush=True))
    result = run_perf(quick=args.quick, device=args.device, threads=args.threads, log=log,
                      fmt=Format(args.precision, args.channels_last))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from .tracking import default_tracking_uri, normalize_uri
    uri = normalize_uri(args.tracking_uri or default_tracking_uri())
    if uri.startswith(("http://", "https://")):
        print(f"the store is an MLflow server: open {uri} in a browser")
        return 0
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    print(f"MLflow UI on {uri}: http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)])
    return 0  # not reached: the process is now MLflow's


if __name__ == "__main__":
    sys.exit(main())
