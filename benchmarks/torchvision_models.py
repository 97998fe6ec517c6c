"""Every torchvision classification model through one prune-to-target trial: which pass, which are refused and why.

    python benchmarks/torchvision_models.py                    # every model; writes docs/models.md
    python benchmarks/torchvision_models.py -k vit,convnext    # the models whose name holds one of these
    python benchmarks/torchvision_models.py --timeout 300      # seconds per model (default 600)
    python benchmarks/torchvision_models.py --memory-gb 8      # address space per model (default 16 GiB)
    python benchmarks/torchvision_models.py --records r.jsonl  # each model's record appended there as it ends;
                                                               # run again: the models it holds are not redone
    python benchmarks/torchvision_models.py --records r.jsonl --render   # the table from the records only

Each model runs in a process of its own (a crash or the time limit costs that model only) as a user would run it:
`bench run --model torchvision:NAME --image-size S --dataset synthetic --limit-train 16 --limit-test 16 --protocol
prune-to-target --methods l1l2 --target-flops-reduction 0.3 --epochs 2 --sparse-epochs 1 --prune-coupled`, in
process (``bench.session.prepare``, then ``bench.trainer.train``), on CPU. Where the constructor takes a smaller
configuration (ViT's ``image_size``), the model comes from a one-line model file calling
``torchvision.models.get_model(NAME, **kwargs)``, named in the table. After the trial the compact model is built
and its outputs compared with the masked model's on a batch. A model passes when the trial finishes within one
group of the target and the compact model gives the masked outputs; it is refused when bench stops it before
training (the reason as bench prints it); anything else is a failure, with its error. Where bench refuses 30 %
as beyond what the model's prunable units hold ("at most X %"), the trial runs at the multiple of 5 % below X
instead, said in its row.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = 64                # the image size of every model not listed below
#: per model: the image size, and constructor arguments for a smaller configuration (said in the table)
SMALLER: dict[str, dict] = {
    **{f"vit_{s}_{p}": {"image": 32, "kwargs": {"image_size": 32}} for s in "bl" for p in (16, 32)},
    "vit_h_14": {"image": 28, "kwargs": {"image_size": 28}},
    "inception_v3": {"image": 96, "kwargs": {"aux_logits": False, "init_weights": False}},   # its aux head needs 299
    "maxvit_t": {"image": 224, "kwargs": {}},     # its attention partitions need 224 (7 x 32)
}
TARGET = 0.3


def _settings(name: str, folder: Path, target: float = TARGET) -> dict:
    small = SMALLER.get(name, {})
    model = f"torchvision:{name}"
    if small.get("kwargs"):
        path = folder / f"{name}_small.py"
        path.write_text("import torchvision\n\n\ndef build(num_classes=10):\n"
                        f"    return torchvision.models.get_model({name!r}, num_classes=num_classes, "
                        f"**{small['kwargs']!r})\n")
        model = f"{path}:build"
    return {"model": model, "methods": ["l1l2"], "dataset": "synthetic", "epochs": 2, "sparse_epochs": 1,
            "device": "cpu", "image_size": small.get("image", IMAGE), "limit_train": 16, "limit_test": 16,
            "batch_size": 16, "protocol": "prune-to-target", "target_flops_reduction": (target,),
            "prune_coupled": True}


def _base(name: str) -> dict:
    """What every record of ``name`` holds: the model, its image size and constructor arguments."""
    small = SMALLER.get(name, {})
    return {"model": name, "image": small.get("image", IMAGE), "kwargs": small.get("kwargs", {})}


def one(name: str) -> dict:
    """One model's trial, in this process: its record for the table."""
    import warnings
    warnings.filterwarnings("ignore")
    import torch

    from bench import names as N
    from bench.config import ConfigError
    from bench.config_layers import build_sweep
    from bench.session import prepare
    from bench.structure import compact
    from bench.trainer import train

    torch.manual_seed(0)
    out: dict = _base(name)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        target, t0 = TARGET, time.monotonic()
        try:
            trials, data = prepare(build_sweep(_settings(name, Path(folder))), write=lines.append)
        except ConfigError as err:
            why = str(err).splitlines()[0]
            most = re.search(r"cannot be reached: at most ([\d.]+)%", why)
            if most is None or float(most.group(1)) < 10:
                return {**out, "result": "refused", "why": why}
            # the target is beyond what its prunable units hold: the trial at a multiple of 5 % below that
            target, out["beyond"] = math.floor((float(most.group(1)) - 1) / 5) * 5 / 100, float(most.group(1))
            lines.clear()
            trials, data = prepare(build_sweep(_settings(name, Path(folder), target)), write=lines.append)
        out["target"] = target
        out["units"] = next((line.rsplit(": ", 1)[1].split(" [")[0].strip() for line in lines
                             if line.startswith("model ")), "")
        out["kept"] = [line[len("kept   "):] for line in lines if line.startswith("kept ")]
        rows: dict = {}
        checked: dict = {}

        def finish(model, structure):
            small = compact(model, structure).eval()
            model.eval()
            example = torch.randn(4, *data.input_shape, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                want, got = model(example), small(example)
            checked["diff"] = float((got - want).abs().max() / max(1.0, float(want.abs().max())))
            return {}

        train(trials[0], data, report=lambda e, m: rows.__setitem__(e, dict(m)), finish=finish)
        last = rows[max(rows)]
        reached = float(last.get(N.FLOPS_REDUCTION, 0.0))
        out.update(reached=reached, seconds=round(time.monotonic() - t0, 1), diff=checked.get("diff"))
        ok = reached >= target and checked.get("diff", 1.0) <= 1e-4
        out["result"] = "passes" if ok else "fails"
        if not ok:
            out["why"] = (f"reached {reached:.3f} of the FLOPs" if reached < target else
                          f"compact outputs differ from the masked model's by {checked.get('diff'):.2e}")
    return out


def _why_kept(line: str) -> str:
    """A unit bench left out, in a few words: ``features.6.1: touches LayerNorm a, b ...`` -> ``touches
    LayerNorm``."""
    reason = line.split(": ", 1)[1] if ": " in line else line
    if reason.startswith("touches "):
        kinds = [part.strip().split(" into ")[0] if part.strip().startswith("a ") else part.strip().split(" ")[0]
                 for part in reason[len("touches "):].split(";")]
        return "touches " + " and ".join(dict.fromkeys(kinds))
    for short in ("produces the logits", "coupled", "excluded", "changes the outputs of the compact model",
                  "attention heads not rebuilt"):
        if short in reason:
            return short
    return reason[:60]


def _row(r: dict) -> str:
    config = f"{r['image']} px" + (f", `{', '.join(f'{k}={v}' for k, v in r['kwargs'].items())}`" if r["kwargs"] else "")
    if r["result"] == "passes":
        reasons: dict[str, int] = {}
        for line in r.get("kept", []):   # "a, b, c and 4 more: reason"
            names, _, more = line.split(": ", 1)[0].partition(" and ")
            reason = _why_kept(line)
            reasons[reason] = reasons.get(reason, 0) + len(names.split(", ")) + int(more.split()[0] if more else 0)
        kept = (f"; not pruned: {sum(reasons.values())} unit(s) ("
                + ", ".join(f"{why}: {n}" for why, n in reasons.items()) + ")") if reasons else ""
        beyond = (f" (target {100 * r['target']:g} %: {100 * TARGET:g} % is beyond its prunable units, at most "
                  f"{r['beyond']:g} %)") if "beyond" in r else ""
        detail = f"{r['units']}; {100 * r['reached']:.1f} % fewer FLOPs{beyond}; compact = masked{kept}"
    else:
        detail = r.get("why", "").replace("|", "\\|")
        if "allocate memory" in detail or "MemoryError" in detail:
            detail = "out of memory within the survey's per-model limit (--memory-gb): " + detail[:160]
    return f"| `{r['model']}` | {config} | **{r['result']}** | {detail} |"


def write_table(records: list[dict], path: Path, command: str, names: list[str]) -> None:
    import torch
    import torchvision
    counts = {k: sum(r["result"] == k for r in records) for k in ("passes", "refused", "fails", "timeout")}
    done = {r["model"] for r in records}
    missing = [n for n in names if n not in done]
    pending = (f" Not run yet: {len(missing)} models ({', '.join(f'`{n}`' for n in missing)}); `{command}` runs "
               "them." if missing else "")
    text = [
        "# Which torchvision models run",
        "",
        "Every classification model of `torchvision.models.list_models(module=torchvision.models)` through one "
        "prune-to-target trial: `l1l2`, 30 % fewer FLOPs (where bench says 30 % is beyond what the model's "
        "prunable units hold, the multiple of 5 % below what they hold, said in the row), `--prune-coupled`, 2 "
        "epochs (1 sparse), 16 synthetic images, on CPU; then the compact model against the masked one on a "
        "batch. A model *passes* when the "
        "trial lands within one group of the target and the compact model gives the masked outputs; it is "
        "*refused* when bench stops it before training, with the reason it prints; *fails* or *timeout* is "
        "anything else. What is pruned is what the channel structure allows (docs/methods.md, \"Prunable "
        "units\"): conv filters, the MLP channels of transformer blocks, the heads of `nn.MultiheadAttention`; "
        "the units left out are listed by "
        "`bench run` with their reasons (a residual stream through LayerNorm or attention, for one).",
        "",
        f"{len(records)} of {len(names)} models: {counts['passes']} pass, {counts['refused']} refused, "
        f"{counts['fails']} fail, {counts['timeout']} over the time limit. torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}; made by `{command}` on a 2-core CPU.{pending}",
        "",
        "| model | configuration | result | units; FLOPs removed, or the reason |",
        "|---|---|---|---|",
        *(_row(r) for r in records),
        "",
    ]
    path.write_text("\n".join(text))


def _limit(gib: float):
    def apply() -> None:
        import resource
        size = int(gib * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    return apply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the models whose name holds one of these (comma separated)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per model (default 600)")
    parser.add_argument("--memory-gb", type=float, default=16, help="address space per model's process (default 16 "
                        "GiB): a model that needs more fails with MemoryError instead of starving the machine")
    parser.add_argument("--out", default=str(ROOT / "docs" / "models.md"), help="the table (default docs/models.md)")
    parser.add_argument("--records", help="a JSON-lines file: each model's record appended as it ends; the models "
                        "it already holds are not run again")
    parser.add_argument("--render", action="store_true", help="write the table from --records, running nothing")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    import torchvision.models
    names = [n for n in torchvision.models.list_models(module=torchvision.models)
             if not args.k or any(k in n for k in args.k.split(","))]
    records: list[dict] = []
    if args.records and Path(args.records).exists():
        held = [json.loads(line) for line in Path(args.records).read_text().splitlines() if line.strip()]
        records = [r for r in held if r["model"] in names]
    command = "python benchmarks/torchvision_models.py" + (f" -k {args.k}" if args.k else "") + \
        f" --timeout {args.timeout:g} --memory-gb {args.memory_gb:g}" + (f" --records {args.records}" if args.records else "")
    if args.render:
        write_table(sorted(records, key=lambda r: names.index(r["model"])), Path(args.out), command, names)
        print(f"wrote {args.out}")
        return 0
    finished = {r["model"] for r in records}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    for i, name in enumerate(names, 1):
        if name in finished:
            continue
        t0 = time.monotonic()
        try:
            done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                                  timeout=args.timeout, env=env, preexec_fn=_limit(args.memory_gb))
            last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            record = json.loads(last) if last.startswith("{") else {
                **_base(name), "result": "fails", "why": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        except subprocess.TimeoutExpired:
            record = {**_base(name), "result": "timeout", "why": f"over {args.timeout:.0f} s on this CPU (2 cores)"}
        records.append(record)
        if args.records:
            with open(args.records, "a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"[{i}/{len(names)}] {name}: {record['result']} ({time.monotonic() - t0:.0f} s) "
              f"{record.get('why', '')[:160]}", flush=True)
    write_table(sorted(records, key=lambda r: names.index(r["model"])), Path(args.out), command, names)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
