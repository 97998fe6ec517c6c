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
import math
import json
import shlex
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .config import ConfigError, SweepConfig, TrainSettings, redact
from .config_layers import sweep_from_sources
from .outcomes import EXIT_BAD_INPUT
from .protocols import owners
from .settings import GROUPS, PRECISIONS, WHAT, add_arguments, declared, markdown_table
from .usercode import load_plugins
from .version import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _setting_classes():
    return SweepConfig, TrainSettings


# bench run's options that are not settings: (flag, add_argument keywords)
RUN_OWN_OPTIONS = (
    ("--resume", {"action": "store_true", "help": "continue the sweep of the same trials (the one named by --name, "
                  "else the latest) in this experiment: finished trials are kept, the others run"}),
    ("--config", {"metavar": "FILE", "help": "TOML file with any of these options (underscored keys); the command "
                  "line wins over it"}),
    ("--dry-run", {"action": "store_true", "help": "validate, load the data, list the trials and stop"}),
)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``bench run``'s options: one per declared setting (bench/settings.py), plus the command's own."""
    groups = {title: p.add_argument_group(title) for title in GROUPS}
    add_arguments(p, _setting_classes(), groups=groups)
    for flag, kwargs in RUN_OWN_OPTIONS:
        groups[GROUPS[2]].add_argument(flag, **kwargs)


def options_table() -> str:
    """The table of ``bench run``'s options in docs/options.md, generated from the declarations (tests keep them equal):
    ``python -c "from bench.cli import options_table; print(options_table())"``."""
    rows = [(f"{flag} {kw['metavar']}" if "metavar" in kw else flag, "", kw["help"]) for flag, kw in RUN_OWN_OPTIONS]
    return markdown_table(_setting_classes(), rows, GROUPS, owners())


def add_store_arguments(g) -> None:
    g.add_argument("--tracking-uri", help="the MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite at "
                   "<cwd>/mlflow.db)")


# what each command's exit status means: the end of its --help
EXIT_SWEEP = ("exit status: 0 every trial finished; 1 some trial failed (or a full disk stopped the sweep: free "
              "space, then resume it); 2 bad input, refused before any work, with one line saying why; 130 "
              "interrupted (Ctrl-C, SIGTERM to the command or its process group): `bench resume NAME` continues it")
EXIT_DONE = "exit status: 0 done; 2 bad input or an unusable store, with one line saying why"
EXIT_UI = "exit status: 0 stopped with Ctrl-C or SIGTERM; 2 bad input (a port in use, say)"
EXIT_MAIN = ("exit status: 0 success; 1 some trial of a sweep failed; 2 bad input, refused before any work; 130 "
             "interrupted (`bench COMMAND --help` says what each command returns)")


class _Version(argparse.Action):
    """``bench --version``: the project's version and those of the libraries a result depends on (read from
    the installed packages' metadata: nothing is imported)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the versions of bench, torch, torchvision, "
                         "ray, mlflow and torch-pruning, and exit")

    def __call__(self, parser, namespace, values, option_string=None):

        def of(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"
        libraries = ", ".join(f"{n} {of(n)}" for n in ("torch", "torchvision", "ray", "mlflow", "torch-pruning"))
        print(f"bench {__version__} ({libraries}; Python {sys.version.split()[0]})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark structured-sparsity regularizers "
                                     "for CNNs: one trainer, Ray Tune sweeps, MLflow records.", epilog=EXIT_MAIN)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sweep (methods x swept values x seeds)",
                         description="Run a sweep on Ray Tune; every trial is an MLflow run.", epilog=EXIT_SWEEP)
    add_run_arguments(run)
    resume = sub.add_parser("resume", help="continue an interrupted sweep by name", epilog=EXIT_SWEEP,
                            description="Continue a sweep: its finished trials are kept, the others (interrupted, "
                            "failed or never started) run again. The sweep's own settings come from its MLflow "
                            "record; only where it runs can change, and it can grow by seeds, methods, targets and controls.")
    resume.add_argument("sweep_name", metavar="NAME", help="the sweep's name, as `bench run` printed it")
    where = resume.add_argument_group("where it is recorded and where it runs (each unless given: the sweep's)")
    grows = resume.add_argument_group("what it grows by (merged with the sweep's own: only the new trials run)")
    add_arguments(resume, _setting_classes(), keep=lambda f: f.metadata["resume"], defaults=False,
                  groups={title: grows if title == WHAT else where for title in GROUPS})
    export = sub.add_parser("export", help="write a trial's compact model (removed filters deleted)", epilog=EXIT_DONE,
                            description="Write the compact model a trial saved when it finished: every removed "
                            "filter deleted, with its bias, BatchNorm channel and the next layer's inputs. "
                            "FILE.pt: a state dict with the per-layer widths, reloaded by "
                            "bench.compact.load_compact(FILE); FILE.pt2: a torch.export program, reloaded with "
                            "plain torch: torch.export.load(FILE).module().")
    export.add_argument("run_id", metavar="RUN_ID", help="a trial's MLflow run id (the MLflow UI shows it)")
    export.add_argument("--out", metavar="FILE", help="where to write it: FILE.pt or FILE.pt2 (models "
                        "not rebuilt from widths, such as torchvision and your own, are written as FILE.pt2)")
    export.add_argument("--register", metavar="NAME", help="register the trial's compact model (the MLflow Model "
                        "it logged) in the MLflow Model Registry under NAME, a new version each time; with or "
                        "without --out")
    export.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                        help="a plugin that registers the run's model")
    add_store_arguments(export)
    report = sub.add_parser("report", help="write the trade-off report of an experiment", epilog=EXIT_DONE,
                            description="Read an experiment's sweeps from MLflow and write reports/<experiment>/: "
                            "index.html (self-contained, opens offline), report.md, the figures as PNG and SVG, "
                            "results.csv (one row per trial and epoch); the folder is also attached to each "
                            "sweep's MLflow parent run (artifacts, report/).")
    report.add_argument("--experiment", help="the experiment to report (default: the store's only experiment "
                        "with sweeps)")
    add_store_arguments(report)
    report.add_argument("--out", metavar="DIR", help="output folder (default: reports/<experiment>)")
    report.add_argument("--sweep", metavar="NAME", help="only this sweep of the experiment (default: all of them)")
    report.add_argument("--no-attach", dest="attach", action="store_false",
                        help="do not attach the report to the sweeps' MLflow parent runs")
    report.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                        help="a plugin whose methods the experiment used (for the methods section)")
    report.add_argument("--detect", type=float, metavar="D", help="add, for every paired comparison of the "
                        "equal-target tables, the seeds it would need to detect a difference of D accuracy points "
                        "80 %% of the time (each table always states what it could detect)")
    report.add_argument("--primary", metavar="METHOD", help="compare METHOD with every other method and its own "
                        "controls only (one Holm family of M+1), the design of a study of one new method "
                        "(default: the sweeps' --primary, else every method against the best and random)")
    report.add_argument("--latency", action="store_true", help="first time every finished trial's compact model "
                        "against the dense model, one at a time with nothing else running (a few seconds a trial; "
                        "recorded on the sweeps' runs as latency.json)")
    perf = sub.add_parser("perf", help="measure the harness's speed against a reference loop and the machine",
                          epilog=EXIT_DONE,
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
    lst = sub.add_parser("list", help="list registered methods, models and datasets", epilog=EXIT_DONE)
    lst.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE|FILE.py",
                     help="also list the methods and models a plugin registers")
    ui = sub.add_parser("ui", help="start the MLflow UI on the sweeps' store", epilog=EXIT_UI,
                        description="Serve the MLflow UI on the store `bench run` used (one worker, on "
                        "127.0.0.1 unless --host says otherwise) and print the address of the experiment's "
                        "training runs (MLflow 3 otherwise opens its GenAI view).")
    add_store_arguments(ui)
    ui.add_argument("--experiment", help="the experiment whose runs the printed address opens (default: the one "
                    "a sweep wrote last)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = redact("bench " + shlex.join(sys.argv[1:] if argv is None else list(argv)))
    from methods import MethodError  # lazy: keeps bench --help free of torch

    from .datatypes import DataError  # lazy: keeps bench --help free of torch
    from .models import ModelError  # lazy: keeps bench --help free of torch
    from .zeroing import ZeroingSpecError  # lazy: keeps bench --help free of torch
    handled: tuple[type[BaseException], ...] = (ConfigError, DataError, ModelError, MethodError, ZeroingSpecError)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "ui":
            return cmd_ui(args)
        if args.command == "perf":
            return cmd_perf(args)
        from .tracking import TrackingError  # lazy: keeps bench --help free of mlflow
        handled += (TrackingError,)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "report":
            from .report import ReportError  # lazy: keeps bench --help free of mlflow, pandas
            handled += (ReportError,)
            return cmd_report(args)
        from .sweep import ClusterError  # lazy: keeps bench --help free of torch, ray, mlflow
        handled += (ClusterError,)
        return cmd_run(args)
    except handled as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:   # an output path that cannot be written, a full disk: a message, not a traceback
        where = f" {err.filename}:" if err.filename else ""
        print(f"bench: error:{where} {err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT


# -- bench run / resume ------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    """Parse into a validated sweep and hand it to the session (bench/session.py), which runs it."""
    from . import session  # lazy: keeps bench --help free of torch, ray, mlflow
    # lazy: keeps bench --help free of mlflow
    from .tracking import check_tracking_uri, default_tracking_uri, normalize_uri

    values = {f.name: getattr(args, f.name, None) for cls in _setting_classes() for f in declared(cls)}
    if args.command == "resume":
        uri = normalize_uri(args.tracking_uri or default_tracking_uri())
        check_tracking_uri(uri, existing=True)   # reading the sweep's record creates no store
        sweep, record = session.saved_sweep(uri, args.sweep_name, args.experiment, values)
        return session.run(sweep, uri, record=record, command=args.command_line)
    sweep = sweep_from_sources(values, args.config)
    uri = normalize_uri(sweep.tracking_uri or default_tracking_uri())
    check_tracking_uri(uri, existing=bool(args.resume) and not args.dry_run)
    return session.run(sweep, uri, resume=args.resume, dry_run=args.dry_run, command=args.command_line)


# -- bench list / ui -----------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from .console import print_registry  # lazy: keeps bench --help free of torch, mlflow

    load_plugins(args.plugins or ())
    print_registry()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .api import export  # lazy: keeps bench --help free of mlflow, pandas, matplotlib

    done = export(args.run_id, args.out, args.tracking_uri, args.register, tuple(args.plugins or ()))
    if done["registered"] is not None:
        name, version = done["registered"]
        print(f"registered {name} version {version}: the compact model of run {done['run']} ({args.run_id}); "
              f"load it with mlflow.pyfunc.load_model('models:/{name}/{version}')")
    if done["path"] is None:
        return 0
    print(f"wrote {done['path']}: {done['model']} with conv widths {', '.join(map(str, done['widths']))}, "
          f"{done['params']:,} parameters (run {done['run']}, {done['status']})")
    if done["removed"]:
        print("removed filters: " + ", ".join(f"{layer} {n}" for layer, n in done["removed"].items()))
    else:
        print("no filter was removed in this run: this is the dense model")
    return 0


def cmd_report(args: argparse.Namespace) -> int:

    from methods import get_method, list_methods  # lazy: keeps bench --help free of torch

    # lazy: keeps bench --help free of mlflow, pandas, matplotlib
    from .report import MethodInfo, build_report, choose_experiment, choose_primary, read_store
    # lazy: keeps bench --help free of mlflow
    from .tracking import check_tracking_uri, default_tracking_uri, normalize_uri

    load_plugins(args.plugins or ())
    if args.detect is not None and not (math.isfinite(args.detect) and args.detect > 0):
        raise ConfigError(f"--detect {args.detect:g}: give a difference in accuracy points above 0, e.g. --detect 1")
    uri = normalize_uri(args.tracking_uri or default_tracking_uri())
    check_tracking_uri(uri, write=args.attach, existing=True)
    experiment = choose_experiment(uri, args.experiment)
    started = time.monotonic()
    print(f"reading experiment {experiment!r} from {redact(uri)}", flush=True)
    results = read_store(uri, experiment, args.sweep)
    results.detect = args.detect
    choose_primary(results, args.primary)
    if args.latency:
        from .latency import measure_sweeps  # lazy: keeps bench --help free of torch
        results.latency = measure_sweeps(uri, results.sweeps, results.trials, log=lambda t: print(t, flush=True))
    registry = {name: MethodInfo(name, cls.description, cls.paper, cls.formula)
                for name, cls in ((name, get_method(name)) for name in list_methods())}
    out = Path(args.out or Path("reports") / _safe_folder(experiment))
    index = build_report(results, out, registry, attach=args.attach)
    counts = results.trials["status"].value_counts().to_dict()
    print(f"{len(results.trials)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), "
          f"{len(results.epochs)} epoch rows, {len(results.sweeps)} sweep(s) [{time.monotonic() - started:.1f}s]")
    print(f"wrote {index} (self-contained), {out / 'report.md'}, {out / 'results.csv'} and the figures as PNG "
          "and SVG")
    if args.attach:
        print(f"attached to the sweeps' MLflow parent runs as artifacts under report/: "
              f"{', '.join(s['name'] for s in results.sweeps)}")
    return 0


def _safe_folder(name: str) -> str:
    """A folder name for an experiment: letters, digits, '.', '_', '-'; never '.' or '..', at most 128."""
    folder = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:128]
    return folder if folder.strip(".") else "experiment" + "_" * len(folder)


def cmd_perf(args: argparse.Namespace) -> int:

    from .perf import Format, run_perf  # lazy: keeps bench --help free of torch
    from .trainer import resolve_device  # lazy: keeps bench --help free of torch

    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(str(err)) from None
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else (
        lambda text: print(text, flush=True))
    result = run_perf(quick=args.quick, device=args.device, threads=args.threads, log=log,
                      fmt=Format(args.precision, args.channels_last))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from .ui import serve_ui  # lazy: keeps bench --help free of mlflow
    return serve_ui(args.tracking_uri, args.experiment, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
