"""How far floating-point order moves tests/test_pinned.py's numbers: its trials with 1 and 2 torch threads and
oneDNN on and off (four kernel orders on one machine), printed beside the pins, in float32 (as bench trains)
or float64 (``--float64``). A pin only holds on any CPU when these agree with it to within its tolerance.

    python benchmarks/pinned_spread.py            # about a minute on a 2-core CPU
    python benchmarks/pinned_spread.py --float64
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench import names as N  # noqa: E402
from bench.config_layers import build_sweep  # noqa: E402
from bench.data import make_synthetic  # noqa: E402
from bench.trainer import train  # noqa: E402
from test_pinned import CASES, RESNET20_FLOAT64  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float64", action="store_true", help="run in float64 (torch's default dtype)")
    args = parser.parse_args()
    if args.float64:
        torch.set_default_dtype(torch.float64)
    for (model, method, settings), pinned in CASES.items():
        shape = (1, 28, 28) if model.startswith("lenet") else (3, 32, 32)
        data = make_synthetic(shape, n_train=256, n_test=128)
        cfg = build_sweep({"methods": [method], "epochs": 3, "dataset": "synthetic", "device": "cpu",
                           "model": model, "batch_size": 32, **dict(settings)}).trials()[0]
        if args.float64 and model == "resnet20":
            pinned = RESNET20_FLOAT64
        print(f"{model} {method}: pinned (accuracy, loss) per epoch {[(p[0], p[1]) for p in pinned]}")
        for threads, onednn in itertools.product((1, 2), (True, False)):
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = onednn
            rows: list[dict] = []
            train(cfg, data, lambda epoch, m: rows.append(m))
            got = [(round(r[N.TEST_ACCURACY], 4), round(r[N.TRAIN_LOSS], 5), sum(N.filters_by_layer(r).values()),
                    r[N.FLOPS]) for r in rows]
            print(f"  {threads} thread(s), oneDNN {'on ' if onednn else 'off'}: {got}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
