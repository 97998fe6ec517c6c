"""What the channel structure costs a trial, against an epoch of training on the same machine.

Per trial, once: the dependency-graph derivation with its check (``bench.structure.derive(..., check=True)``).
Per epoch: the metrics (filters alive per conv, sparsity, parameters and FLOPs of the compact network). Both are
timed on a model with a random part of every unit removed, and compared with one training epoch of the trainer's
own step (forward, loss, backward, SGD step, mask application) over ``--train`` examples (CIFAR-10's 50 000 by
default), timed over ``--steps`` steps and scaled to the epoch. Ratios, not absolute times, are the point: the
machine is shared and noisy.

    .venv/bin/python benchmarks/structure_cost.py                          # torchvision:resnet18 at 32x32
    .venv/bin/python benchmarks/structure_cost.py --model torchvision:mobilenet_v2 --threads 2
"""
from __future__ import annotations

import argparse
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="torchvision:resnet18")
    p.add_argument("--size", type=int, default=32, help="input side (default: 32)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train", type=int, default=50000, help="examples per epoch (default: CIFAR-10's 50 000)")
    p.add_argument("--steps", type=int, default=10, help="training steps timed (default: 10)")
    p.add_argument("--repeat", type=int, default=5, help="repetitions of the per-epoch metrics (default: 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--prune-coupled", action="store_true")
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    from bench import metrics as M
    from bench.models import build_model
    from bench.structure import derive
    from bench.zeroing import FilterMasks

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (3, args.size, args.size)
    torch.manual_seed(0)
    model = build_model(args.model, shape, 10)
    start = time.perf_counter()
    structure = derive(model, shape, args.prune_coupled, check=True)
    derive_s = time.perf_counter() - start

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    masks = FilterMasks(structure, optimizer)
    g = torch.Generator().manual_seed(0)
    for unit in structure.units:
        masks.remove(unit.name, torch.randperm(unit.size, generator=g)[:unit.size // 4])
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, 10, (args.batch,))
    model.train()

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        masks.mask_grads()
        optimizer.step()
        masks.apply()

    step()   # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - start) / args.steps
    epoch_s = step_s * -(-args.train // args.batch)

    M.filter_metrics(structure)   # warm-up
    start = time.perf_counter()
    for _ in range(args.repeat):
        metrics = M.filter_metrics(structure)
    metrics_s = (time.perf_counter() - start) / args.repeat

    print(f"{args.model} at {args.size}x{args.size}, batch {args.batch}, {torch.get_num_threads()} threads: "
          f"{len(structure.units)} prunable units, {sum(structure.filters().values())} filters, "
          f"{metrics[M.PARAMS]:,.0f} params and {metrics[M.FLOPS] / 1e6:,.1f} MFLOPs after removal")
    print(f"  training step             {step_s * 1e3:9.1f} ms  -> epoch of {args.train} examples {epoch_s:8.1f} s")
    print(f"  structure (once a trial)  {derive_s * 1e3:9.1f} ms  = {100 * derive_s / epoch_s:6.3f} % of an epoch")
    print(f"  metrics (every epoch)     {metrics_s * 1e3:9.1f} ms  = {100 * metrics_s / epoch_s:6.3f} % of an epoch")
    print(f"  both, one-epoch trial     {100 * (derive_s + metrics_s) / epoch_s:6.3f} % (target < 2 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
