"""Dense against compact: parameters, FLOPs and CPU latency of every finished trial of an experiment.

Trials measure their compact model's latency while other trials train beside them; this script measures
again on a quiet machine, one model at a time, with a fixed number of torch threads. For each trial it loads
the saved ``compact_model.pt``, builds the dense model of the same architecture (full widths), and times
both with ``torch.utils.benchmark`` (median over blocks after a warm-up), at batch 1 and 64.

    .venv/bin/python benchmarks/compact_latency.py --experiment compact-fmnist
    .venv/bin/python benchmarks/compact_latency.py --experiment lenet5-fashion-mnist --threads 2 --markdown
"""
from __future__ import annotations

import argparse
import sys
import tempfile


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", required=True)
    p.add_argument("--tracking-uri", help="default: as for bench run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default: 1)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args()

    import torch

    from bench.compact import count_params, latency_ms, load_compact, measured_flops
    from bench.models import build_model
    from bench.names import COMPACT_MODEL
    from bench.tracking import Store, default_tracking_uri, normalize_uri

    torch.set_num_threads(args.threads)
    uri = normalize_uri(args.tracking_uri or default_tracking_uri())
    experiment_id = Store(uri).experiment_id_of(args.experiment)
    if experiment_id is None:
        print(f"no experiment {args.experiment!r} in {uri}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for run in Store(uri).trial_runs(experiment_id, status="FINISHED"):
            path = Store(uri).download_artifact(run.run_id, COMPACT_MODEL, f"{folder}/{run.run_id}")
            if path is None:
                continue
            small, info = load_compact(path)
            dense = build_model(info["model"], info["input_shape"], info["num_classes"]).eval()
            shape = info["input_shape"]
            row = {"trial": run.name, "widths": "/".join(map(str, info["widths"])),
                   "params": (count_params(dense), count_params(small)),
                   "flops": (measured_flops(dense, shape), measured_flops(small, shape))}
            for b in (1, 64):
                row[b] = (latency_ms(dense, shape, b, args.min_run_time), latency_ms(small, shape, b, args.min_run_time))
            rows.append(row)
            print(f"measured {run.name}", file=sys.stderr, flush=True)
    if not rows:
        print(f"no finished trial with a compact model in experiment {args.experiment!r}", file=sys.stderr)
        return 1
    header = ["trial", "conv widths", "params dense -> compact", "FLOPs dense -> compact",
              "b1 ms dense -> compact (speed-up)", "b64 ms dense -> compact (speed-up)"]
    lines = []
    for r in sorted(rows, key=lambda r: r["trial"]):
        cells = [r["trial"], r["widths"], f"{r['params'][0]:,} -> {r['params'][1]:,}",
                 f"{r['flops'][0] / 1e6:.2f}M -> {r['flops'][1] / 1e6:.2f}M"]
        for b in (1, 64):
            d, c = r[b]
            cells.append(f"{d:.3f} -> {c:.3f} ({d / c:.2f}x)")
        lines.append(cells)
    print(f"# {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, median of blocks, "
          f">= {args.min_run_time:g} s each")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in lines:
            print("| " + " | ".join(cells) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for cells in lines:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
