"""Sweep overhead: how much longer a Ray Tune sweep takes than its trials' own work.

Runs one real `bench run` (a fresh process: Python and library imports, Ray start and stop, MLflow store
creation, every trial, the summary) and compares its wall time with the ideal schedule, the sum of the
trials' own times divided by the parallelism:

    ratio = wall / (sum of trial times / parallel trials)

A trial's time is its MLflow child run's duration (from the run's creation in the trial to its end: model
building, training, evaluation, per-epoch logging). The same ratio against the sum of the trials' epoch
times (training and evaluation alone) is printed too, as the stricter reading.

    .venv/bin/python benchmarks/sweep_overhead.py                 # 12 trials of LeNet on 2 CPUs
    .venv/bin/python benchmarks/sweep_overhead.py --limit-train 5000 --epochs 1

Target: ratio under 1.25 for 12 short LeNet trials on a 2-core machine.

The time outside the trials is almost all a fixed cost of one `bench run` command (about 17-19 s on a
2-core machine: Python imports 3 s, MLflow store creation and Ray start 4-5 s, Tune's start and the first
actors' imports of torch and MLflow 5 s, Ray's stop 3-4 s), the same for 2 trials or 200; between trials
the slots stay busy (idle under 1 s per slot). So the ratio falls as trials grow:
1 + fixed / ideal. The default trial (2 epochs of 20000 examples, about 14 s) is a short LeNet trial;
`--limit-train 10000` (about 8 s trials) shows the fixed cost's weight on very short ones.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="l1l2,l1", help="methods swept (default: l1l2,l1)")
    p.add_argument("--lambdas", default="0.05,0.2,1.0", help="lambdas per method (default: 0.05,0.2,1.0)")
    p.add_argument("--seeds", default="0,1", help="seeds (default: 0,1; with the defaults: 12 trials)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=20000, help="training examples per epoch (default: 20000)")
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--dataset", default=None, help="default: fashion-mnist when found, else synthetic")
    p.add_argument("--cpus", type=int, default=2, help="parallel trials, one CPU each (default: 2)")
    p.add_argument("--keep", help="keep the sweep's folder here instead of a temporary one")
    args = p.parse_args()

    from bench.data import DEBIAN_FASHION_MNIST
    dataset = args.dataset or ("fashion-mnist" if DEBIAN_FASHION_MNIST.is_dir() else "synthetic")
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="sweep-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.cli", "run", "--methods", args.methods, "--lambdas", args.lambdas,
           "--seeds", args.seeds, "--epochs", str(args.epochs), "--dataset", dataset,
           "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test), "--device", "cpu",
           "--cpus-per-trial", "1", "--max-concurrent", str(args.cpus), "--experiment", "overhead",
           "--no-download"]
    print("$ " + " ".join(cmd[2:]).replace("bench.cli", "bench"), flush=True)
    t0 = time.monotonic()
    t0_epoch = time.time()
    proc = subprocess.run(cmd, cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode

    from mlflow.tracking import MlflowClient

    from bench.names import KIND_TAG
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("overhead").experiment_id])
    trials = [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    sweep = next(r for r in runs if r.data.tags.get(KIND_TAG) == "sweep")
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in trials]
    epoch_times = [sum(m.value for m in client.get_metric_history(r.info.run_id, "epoch_time_s")) for r in trials]
    sweep_run = (sweep.info.end_time - sweep.info.start_time) / 1000
    ideal = sum(durations) / args.cpus
    ideal_epochs = sum(epoch_times) / args.cpus

    print(f"trials               {len(trials)} ({dataset}, {args.limit_train} examples x {args.epochs} epochs, "
          f"{args.cpus} at a time)")
    print(f"trial time           mean {sum(durations) / len(durations):.1f} s "
          f"(min {min(durations):.1f}, max {max(durations):.1f}); epochs alone mean "
          f"{sum(epoch_times) / len(epoch_times):.1f} s")
    print(f"ideal                {ideal:.1f} s  (sum of trial times / {args.cpus})")
    print(f"sweep run            {sweep_run:.1f} s  (MLflow parent run: Ray up, all trials, Ray results)")
    print(f"wall                 {wall:.1f} s  (the whole `bench run` process)")
    # Where the time outside the trials goes (seconds of wall time; gaps are idle trial slots).
    starts = sorted(r.info.start_time / 1000 for r in trials)
    ends = sorted(r.info.end_time / 1000 for r in trials)
    span = ends[-1] - starts[0]
    idle = (args.cpus * span - sum(durations)) / args.cpus
    print(f"  start-up           {sweep.info.start_time / 1000 - t0_epoch:5.1f} s  (imports, data, MLflow store, "
          "Ray start)")
    print(f"  first trial        {starts[0] - sweep.info.start_time / 1000:5.1f} s  (Tune start, first actors, "
          "worker imports)")
    print(f"  idle slots         {idle:5.1f} s  (between trials and at the tail, per slot)")
    print(f"  wind-down          {t0_epoch + wall - ends[-1]:5.1f} s  (results, summary, Ray stop, exit)")
    print(f"ratio                {wall / ideal:.3f}  wall / ideal   (target < 1.25)")
    print(f"ratio (sweep run)    {sweep_run / ideal:.3f}  sweep run / ideal")
    print(f"ratio (epochs only)  {wall / ideal_epochs:.3f}  wall / (sum of epoch times / {args.cpus})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
