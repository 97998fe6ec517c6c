"""The ``bench`` command: argument parsing only; the work is done by the modules it calls.

    bench run --methods l1l2,l1,l2     # a sweep: Ray Tune trials, each an MLflow run
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
EXIT_TRIALS_FAILED = 1


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


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``bench run``'s options. Every default is None here so that a config file can sit between the
    built-in defaults (config.py) and the command line."""
    g = p.add_argument_group("what to compare")
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
    g = p.add_argument_group("where it runs and where it is recorded")
    g.add_argument("--experiment", help="MLflow experiment name (default: MODEL-DATASET)")
    g.add_argument("--tracking-uri", help="MLflow store: sqlite:///PATH.db or http://HOST:PORT "
                   "(default: $MLFLOW_TRACKING_URI, else sqlite at <cwd>/mlflow.db)")
    g.add_argument("--ray-address", help="join an existing Ray cluster (also RAY_ADDRESS); default: start a "
                   "local Ray for this command")
    g.add_argument("--cpus-per-trial", type=float, help="CPUs reserved per trial; torch threads follow it "
                   "(default: 1)")
    g.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions pack trials on one GPU "
                   "(default: 1 when the cluster has GPUs and --device is not cpu, else 0)")
    g.add_argument("--max-concurrent", type=_positive_int, help="at most N trials at once (default: as "
                   "resources allow)")
    g.add_argument("--storage-path", help="folder of Ray Tune's trial records (default: ./ray_results)")
    g.add_argument("--config", help="TOML file with any of these options (underscored keys); the command "
                   "line wins over it")
    g.add_argument("--dry-run", action="store_true", help="validate, load the data, list the trials and stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark structured-sparsity regularizers "
                                     "for CNNs: one trainer, Ray Tune sweeps, MLflow records.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sweep (methods x swept values x seeds)",
                         description="Run a sweep on Ray Tune; every trial is an MLflow run.")
    add_run_arguments(run)
    sub.add_parser("list", help="list registered methods, models and datasets")
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
            return cmd_list()
        if args.command == "ui":
            return cmd_ui(args)
        from .sweep import ClusterError
        from .tracking import TrackingError
        handled += (TrackingError, ClusterError)
        return cmd_run(args)
    except handled as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


# -- bench run ---------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from .config import ConfigError, build_sweep, load_config_file
    from .data import load_dataset
    from .models import build_model, describe, get_model_spec

    file_values = load_config_file(args.config) if args.config else {}
    cli = {k: v for k, v in vars(args).items() if k not in ("command", "config", "dry_run", "option_list")}
    options: dict[str, dict[str, str]] = {}
    for method, key, value in args.option_list or []:
        options.setdefault(method, {})[key] = value
    cli["options"] = options or None
    for key in ("lambdas", "ratios"):
        cli[key] = dict(cli[key]) if cli[key] else None
    sweep = build_sweep(file_values, cli)
    trials = sweep.trials()

    from .tracking import check_tracking_uri, default_tracking_uri, normalize_uri
    uri = normalize_uri(sweep.tracking_uri or default_tracking_uri())
    check_tracking_uri(uri)

    t = sweep.train
    t0 = time.monotonic()
    data = load_dataset(t.dataset, t.data_dir, t.limit_train, t.limit_test,
                        input_shape=get_model_spec(t.model).default_input, download=t.download)
    try:
        describe(build_model(t.model, data.input_shape, data.num_classes), data.input_shape)
    except ValueError as err:
        raise ConfigError(f"model {t.model!r} cannot take {t.dataset!r} inputs: {err}") from None
    print(f"data   {data.describe()} [{time.monotonic() - t0:.1f}s]")
    print(f"sweep  {len(trials)} trials: " + ", ".join(
        f"{m} ({len(sweep.grid(m))} x {len(sweep.seeds)} seed{'s' * (len(sweep.seeds) > 1)}, "
        f"zeroing {sweep.zeroing_for(m)})" for m in sweep.methods))
    print(f"budget {t.model}, {t.epochs} epochs, batch {t.batch_size}, lr {t.lr}, momentum {t.momentum}, "
          f"weight decay {t.weight_decay}, device {t.device}")
    if args.dry_run:
        for trial in trials:
            print(f"  {trial.name:<32} {trial.key}  options {dict(trial.options)}  zeroing {trial.zeroing}")
        return 0

    from .sweep import run_sweep
    from .tracking import TrackingInfo, close_open_children, end_run, prepare_experiment, start_sweep_run
    experiment_id = prepare_experiment(uri, sweep.experiment_name)
    parent = start_sweep_run(uri, experiment_id, f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                             _sweep_params(sweep, len(trials)), sweep.to_dict())
    print(f"mlflow {uri}  experiment {sweep.experiment_name!r}  sweep run {parent}")
    tracking = TrackingInfo(uri, experiment_id, parent)
    try:
        outcomes = run_sweep(sweep, trials, data, tracking)
    except BaseException as err:
        close_open_children(uri, experiment_id, parent)
        interrupted = isinstance(err, KeyboardInterrupt)
        end_run(uri, parent, "KILLED" if interrupted else "FAILED", "interrupted" if interrupted else
                f"{type(err).__name__}: {err}")
        if interrupted:
            print("\ninterrupted", file=sys.stderr)
            return 130
        raise
    close_open_children(uri, experiment_id, parent)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("FINISHED", "FAILED", "KILLED")}
    if counts["KILLED"]:
        status = "KILLED"
    else:
        status = "FAILED" if counts["FAILED"] == len(outcomes) else "FINISHED"
    problems = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if s != "FINISHED" and n)
    end_run(uri, parent, status, f"{problems} of {len(outcomes)} trials" if problems else None)
    print_summary(outcomes)
    print(f"\nresults in MLflow: {uri} (experiment {sweep.experiment_name!r}); browse them with `bench ui"
          + (f" --tracking-uri {uri}`" if uri != normalize_uri(default_tracking_uri()) else "`"))
    if counts["KILLED"]:
        print(f"interrupted: {counts['FINISHED']} of {len(outcomes)} trials finished", file=sys.stderr)
        return 130
    return EXIT_TRIALS_FAILED if counts["FAILED"] else 0


def _sweep_params(sweep, n_trials: int) -> dict[str, Any]:
    t = sweep.train
    return {"methods": ",".join(sweep.methods), "trials": n_trials, "seeds": ",".join(map(str, sweep.seeds)),
            "model": t.model, "dataset": t.dataset, "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
            "limit_train": t.limit_train, "limit_test": t.limit_test}


def print_summary(outcomes) -> None:
    from . import metrics as M
    print(f"\n{'trial':<30} {'status':<9} {'test acc':>8} {'sparsity':>9}  filters alive")
    for o in sorted(outcomes, key=lambda o: o.name):
        m = o.metrics
        if o.status != "FINISHED" or M.TEST_ACCURACY not in m:
            reached = f" (after epoch {int(m['epoch'])})" if "epoch" in m else ""
            print(f"{o.name:<30} {o.status:<9} {'-':>8} {'-':>9}  {o.error or ''}{reached}")
            continue
        filters = " ".join(f"{layer}={n}" for layer, n in M.filters_by_layer(m).items())
        print(f"{o.name:<30} {o.status:<9} {m[M.TEST_ACCURACY]:>8.4f} {m[M.TOTAL_SPARSITY]:>9.1%}  {filters}")


# -- bench list / ui -----------------------------------------------------------------------------------

def cmd_list() -> int:
    from methods import get_method, list_methods

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
