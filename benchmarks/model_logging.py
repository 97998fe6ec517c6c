"""What logging a trial's compact model as an MLflow Model costs, per trial, against the budget of a second.

Each trial ends with ``TrialRun.log_model`` (bench/tracking/runs.py): a logged model with a signature, an input
example and explicit pip requirements, serialized as a torch.export program. This script times that call in
one process, as a trial's reused Ray worker makes it: the first call (torch.export's own warm-up included)
and the median of the next ones, for LeNet-5 and ResNet-20, against two references: the same call letting
MLflow infer the pip requirements (what a call without them costs) and the pickle serialization.

    .venv/bin/python benchmarks/model_logging.py            # prints one line per model and variant
    .venv/bin/python benchmarks/model_logging.py --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="warm calls per variant (default: 3)")
    p.add_argument("--models", default="lenet5:1x28,resnet20:3x32", help="MODEL:CxSIDE,... (default: %(default)s)")
    args = p.parse_args()

    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    from bench.models import build_model
    from bench.tracking import Store, TrackingInfo, TrialRun

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        experiment = Store(uri).prepare_experiment("model-logging")
        info = TrackingInfo(uri, experiment, "none")
        requirements = [f"torch=={torch.__version__.split('+')[0]}"]
        print(f"{'model':<10} {'variant':<28} {'first s':>8} {'warm s (median)':>16}")
        for spec in args.models.split(","):
            name, shape = spec.split(":")
            c, side = (int(v) for v in shape.split("x"))
            model = build_model(name, (c, side, side), 10).eval()
            example = np.random.default_rng(0).standard_normal((2, c, side, side)).astype(np.float32)
            with torch.no_grad():
                output = model(torch.from_numpy(example)).numpy()

            def bench_log(log) -> tuple[float, float]:
                times = []
                for _ in range(1 + args.repeats):
                    run = TrialRun(info, "t", {"model": name}, {}, "key", "cpu")
                    t0 = time.perf_counter()
                    log(run)
                    times.append(time.perf_counter() - t0)
                return times[0], statistics.median(times[1:])

            rows = {
                "pt2, explicit requirements": lambda run: run.log_model(model, example, output, 1, requirements),
                "pickle, explicit requirements": lambda run: mlflow.pytorch.log_model(
                    model, name="m", run_id=run.run_id, input_example=example, pip_requirements=requirements,
                    serialization_format="pickle"),
                "pt2, inferred requirements": lambda run: mlflow.pytorch.log_model(
                    model, name="m", run_id=run.run_id, input_example=example, serialization_format="pt2"),
            }
            import logging
            logging.getLogger("mlflow").setLevel(logging.ERROR)   # the pickle variant's safety advice
            for variant, log in rows.items():
                first, warm = bench_log(log)
                print(f"{name:<10} {variant:<28} {first:>8.2f} {warm:>16.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
