"""Bad inputs and faults against `bench`, one at a time: each case's exit code, time and first line of output.

    python benchmarks/probe_inputs.py            # every case (a few minutes: the fault cases run real sweeps)
    python benchmarks/probe_inputs.py --quick    # only the cases that stop before any trial (about a minute)
    python benchmarks/probe_inputs.py -k config  # the cases whose label contains "config"

Each case runs `python -m bench.cli ...` in a fresh empty folder (with BENCH_NO_DOWNLOAD=1), after writing the
files it names there and running its set-up commands (``before``); a ``disk`` case's folder is a small tmpfs
(root only; skipped elsewhere), a ``stale_ray`` case leaves a `ray_current_cluster` file pointing nowhere. A case with ``fault`` starts the command, waits until a trial is training, then does
something to it (a signal to the process group, say). The expected exit code is printed beside the real one;
a row marked `!!` is a case that does not behave (another exit code, a traceback in its output, or a failed
``check``: what the case looks at after the command, a file a link pointed to, say). ``setup`` prepares what
a command-line option cannot (a planted link, a foreign checkpoint). Add a case by adding a row to CASES.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SYNTH = ["--dataset", "synthetic", "--epochs", "1", "--device", "cpu"]


def _png(shade: int = 128) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buf, format="PNG")
    return buf.getvalue()


def _folder(classes=("a", "b"), val=("a", "b"), extra=None) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {f"imgs/train/{c}/0.png": _png() for c in classes}
    files.update({f"imgs/val/{c}/0.png": _png() for c in val})
    files.update(extra or {})
    return files


FOLDER = ["run", "--dataset", "imagefolder:imgs", "--image-size", "16", "--model", "lenet5", "--epochs", "1",
          "--device", "cpu", "--methods", "l1l2"]


def _idx(shape: tuple[int, ...]) -> bytes:
    """An IDX file (MNIST's format) of zeros with this shape."""
    import struct
    size = 1
    for n in shape:
        size *= n
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + b"\0" * size


def _png16() -> bytes:
    import io

    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


NETS = ("import torch\nfrom torch import nn\n"
        "class Pair(nn.Module):\n"
        "    def __init__(self, num_classes=10):\n"
        "        super().__init__()\n"
        "        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, num_classes)\n"
        "    def forward(self, x):\n"
        "        f = torch.relu(self.conv(x)).mean((2, 3))\n"
        "        return self.fc(f), f\n"
        "class Nan(Pair):\n"
        "    def forward(self, x):\n"
        "        return super().forward(x)[0] * float('nan')\n")
TINY = ["--methods", "l1l2", "--lambdas", "0.1", "--limit-train", "128", "--limit-test", "64", "--latency-time", "0"]


FAIL_PLUGIN = ("from pathlib import Path\n"
               "from bench.recording import TrialRecorder\n"
               "_keep = TrialRecorder.keep\n"
               "def keep(self, epoch, state):\n"
               "    _keep(self, epoch, state)\n"
               "    if epoch == 1 and Path(__file__).with_name('fail').exists():\n"
               "        raise RuntimeError('planted failure after the checkpoint of epoch 1')\n"
               "TrialRecorder.keep = keep\n")
FAILING = ["--plugin", "fail_plugin.py", "--latency-time", "0", "--limit-train", "128", "--limit-test", "64"]


def _bench(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_NO_DOWNLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)


def _links(folder: Path) -> str | None:
    """OUT/index.html and OUT/report.md: links to files outside OUT that hold "keep"."""
    (folder / "OUT").mkdir()
    for name, victim in (("index.html", "victim.txt"), ("report.md", "victim2.txt")):
        (folder / victim).write_text("keep")
        (folder / "OUT" / name).symlink_to(Path("..") / victim)
    return None


def _victims_kept(folder: Path, output: str) -> str | None:
    changed = [v for v in ("victim.txt", "victim2.txt") if (folder / v).read_text() != "keep"]
    return f"written through the link: {', '.join(changed)}" if changed else None


def _foreign_checkpoint(folder: Path) -> str | None:
    """A sweep whose trial failed after its epoch-1 checkpoint; that checkpoint's state replaced by a
    well-formed torch.save of something else, its size and SHA-256 written into its record."""
    import hashlib
    import json

    (folder / "fail").write_text("")
    done = _bench(folder, "run", *SYNTH[:2], "--epochs", "3", "--device", "cpu", "--methods", "l1l2", "--lambdas",
                  "0.1", "--name", "s", *FAILING)
    (folder / "fail").unlink()
    states = sorted(folder.glob("ray_results/*/*/checkpoint_*/trial_state.pt"))
    if done.returncode != 1 or not states:
        return f"(its set-up sweep exited {done.returncode} with {len(states)} checkpoint(s))"
    code = ("import sys, torch; torch.save({'foo': torch.randn(3, 3), 'bar': torch.zeros(5)}, sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(states[-1])], check=True)
    record = states[-1].with_name("bench_checkpoint.json")
    info = json.loads(record.read_text())
    info.update(size=states[-1].stat().st_size, sha256=hashlib.sha256(states[-1].read_bytes()).hexdigest())
    record.write_text(json.dumps(info))
    return None


def _refused_then_resumed(folder: Path, output: str) -> str | None:
    """The refusal names the state file; once the folder it names is deleted, the resume finishes the sweep."""
    (state,) = sorted(folder.glob("ray_results/*/*/checkpoint_*/trial_state.pt"))[-1:]
    if str(state) not in output or f"delete the folder {state.parent}" not in output:
        return "the refusal does not name the checkpoint and its folder"
    import shutil
    shutil.rmtree(state.parent)
    again = _bench(folder, "resume", "s")
    return None if again.returncode == 0 else f"after deleting the folder, the resume exited {again.returncode}"


def _nothing_under(name: str):
    def check(folder: Path, output: str) -> str | None:
        made = sorted(p.name for p in (folder / name).rglob("*")) if (folder / name).exists() else []
        return f"created under {name}: {', '.join(made)}" if made else None
    return check


def _said(*texts: str):
    def check(folder: Path, output: str) -> str | None:
        missing = [t for t in texts if t not in output]
        return f"does not say {missing[0]!r}" if missing else None
    return check


def _short_output(folder: Path, output: str) -> str | None:
    return f"{len(output)} characters of output" if len(output) > 2000 else None


def _no_raw_html(folder: Path, output: str) -> str | None:
    import re
    md = (folder / "OUT" / "report.md").read_text()
    return "raw HTML in report.md" if "<b>" in re.sub(r"`[^`]*`", "", md) else None


LOAD = ("import sys, bench\ntry:\n    bench.load_results('nope', tracking_uri='sqlite:///NEW/none.db')\n"
        "except Exception as err:\n    print(f'error: {err}')\n    sys.exit(2)\n")
P2T = ["run", "--protocol", "prune-to-target", "--methods", "taylor", "--dataset", "synthetic", "--epochs", "2",
       "--device", "cpu"]


@dataclass
class Case:
    label: str
    argv: list[str]
    expect: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)
    fault: str | None = None          # "sigterm-group", "sigint": sent once `ready` is printed
    timeout: float = 300
    before: list[list[str]] = field(default_factory=list)   # bench commands run first in the same folder
    disk: str | None = None           # the folder is a tmpfs of this size ("12m"; needs root)
    ready: str = " epoch "            # the line a fault waits for
    stale_ray: bool = False           # a ray_current_cluster file pointing nowhere, as a dead `ray start` leaves
    setup: Callable[[Path], str | None] | None = None           # more set-up (after ``before``); a text: it failed
    check: Callable[[Path, str], str | None] | None = None      # after the command: a text says what went wrong


CASES = [
    Case("unknown method", ["run", "--methods", "l1l2,foo", *SYNTH]),
    Case("unknown model", ["run", "--model", "resnet9", *SYNTH]),
    Case("unknown dataset", ["run", "--dataset", "svhn"]),
    Case("unknown torchvision model", ["run", "--model", "torchvision:resnet19", *SYNTH]),
    Case("timm model (without timm)", ["run", "--model", "timm:resnet18", *SYNTH]),
    Case("model file without the callable", ["run", "--model", "net.py:Net", *SYNTH],
         files={"net.py": "from torch import nn\nclass Other(nn.Module):\n    pass\n"}),
    Case("model that does not run", ["run", "--model", "net.py:Net", "--methods", "l1l2", *SYNTH],
         files={"net.py": "from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self, num_classes=10):\n"
                "        super().__init__(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(10, num_classes))\n"}),
    Case("model with nothing to prune", ["run", "--model", "net.py:Net", "--methods", "l1l2", *SYNTH],
         files={"net.py": "from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self, num_classes=10):\n"
                "        super().__init__(nn.Conv2d(3, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n"}),
    Case("init-from missing", ["run", "--init-from", "nowhere.pt", "--methods", "l1l2", *SYNTH]),
    Case("init-from not a torch file", ["run", "--init-from", "w.pt", "--methods", "l1l2", *SYNTH],
         files={"w.pt": b"junk"}),
    Case("negative lambda", ["run", "--methods", "l1l2", "--lambdas", "-0.5", *SYNTH]),
    Case("ratio of 1", ["run", "--methods", "nisp", "--ratios", "1.0", *SYNTH, "--epochs", "2"]),
    Case("lambda that is not a number", ["run", "--methods", "l1l2", "--lambdas", "abc", *SYNTH]),
    Case("epochs 0", ["run", "--methods", "l1l2", *SYNTH, "--epochs", "0"]),
    Case("option for the swept value", ["run", "--methods", "l1l2", *SYNTH, "--option", "l1l2.lam=0.3"]),
    Case("unknown method option", ["run", "--methods", "l1l2", *SYNTH, "--option", "l1l2.gamma=2"]),
    Case("zeroing rule that does not parse", ["run", "--methods", "l1l2", *SYNTH, "--zeroing", "cumulative"]),
    Case("config: epochs a string", ["run", "--config", "c.toml"], files={"c.toml": 'epochs = "ten"\n'}),
    Case("config: epochs 1.5", ["run", "--config", "c.toml"], files={"c.toml": "epochs = 1.5\n"}),
    Case("config: lr a string", ["run", "--config", "c.toml"], files={"c.toml": 'lr = "0.1"\n'}),
    Case("config: seeds a string", ["run", "--config", "c.toml"], files={"c.toml": 'seeds = "a"\n'}),
    Case("config: limit_train a string", ["run", "--config", "c.toml"], files={"c.toml": 'limit_train = "x"\n'}),
    Case("config: unknown key", ["run", "--config", "c.toml"], files={"c.toml": "epoch = 3\n"}),
    Case("config: not TOML", ["run", "--config", "c.toml"], files={"c.toml": "epochs = = 3\n"}),
    Case("config: a folder", ["run", "--config", "."]),
    Case("config: missing", ["run", "--config", "nowhere.toml"]),
    Case("cpus per trial beyond the machine", ["run", "--methods", "l1l2", *SYNTH, "--cpus-per-trial", "4096"]),
    Case("gpus per trial without GPUs", ["run", "--methods", "l1l2", *SYNTH, "--gpus-per-trial", "0.5"]),
    Case("device cuda without CUDA (dry run)", ["run", "--methods", "l1l2", "--dataset", "synthetic", "--device",
                                                "cuda", "--dry-run"]),
    Case("unreachable tracking server", ["run", "--methods", "l1l2", *SYNTH, "--tracking-uri",
                                         "http://127.0.0.1:9"]),
    Case("unreachable Ray address", ["run", "--methods", "l1l2", *SYNTH, "--ray-address", "127.0.0.1:9"]),
    Case("store that is not sqlite", ["report"], files={"mlflow.db": b"not a database" * 20}),
    Case("missing data files", ["run", "--methods", "l1l2", "--dataset", "mnist", "--data-dir", "nowhere"]),
    Case("corrupt data file", ["run", "--methods", "l1l2", "--dataset", "mnist", "--data-dir", "d"],
         files={"d/train-images-idx3-ubyte": b"\x00\x00\x08\x03" + b"\x00" * 20}),
    Case("image folder empty", FOLDER, files={"imgs/.keep": ""}),
    Case("image folder missing", FOLDER),
    Case("image class folder without images", FOLDER,
         files=_folder(classes=("a", "b", "c"), extra={"imgs/val/c/notes.txt": "no images"})),
    Case("image that cannot be read", FOLDER, files=_folder(extra={"imgs/train/b/0.png": b"junk"})),
    Case("image classes differ between splits", FOLDER, files=_folder(val=("a",))),
    Case("torchvision dataset without its files", ["run", "--dataset", "torchvision:SVHN", "--data-dir", "d", "--methods", "l1l2",
                                                    *SYNTH[2:]]),
    Case("torchvision class that does not exist", ["run", "--dataset", "torchvision:SVNH", *SYNTH[2:]]),
    Case("unknown schedule", ["run", "--methods", "l1l2", *SYNTH, "--schedule", "linear"]),
    Case("unknown optimizer", ["run", "--methods", "l1l2", *SYNTH, "--optimizer", "lbfgs"]),
    Case("schedule milestone beyond the epochs", ["run", "--methods", "l1l2", *SYNTH, "--schedule", "step:5"]),
    Case("normalize that does not parse", ["run", "--methods", "l1l2", *SYNTH, "--normalize", "0.5"]),
    Case("export to a path under a file", ["export", "0123", "--out", "afile/m.pt"], files={"afile": "x"}),
    Case("resume of a sweep that does not exist", ["resume", "nosuch"]),
    Case("report with no store", ["report"]),
    Case("a sweep that runs", ["run", "--methods", "l1l2", "--lambdas", "0.2", *SYNTH], expect=0),
    # -- reliability and security, third probe ----------------------------------------------------------------
    Case("resume NAME --tracking-uri of another folder", ["resume", "s", "--tracking-uri", "sqlite:///elsewhere/mlflow.db"],
         expect=0, before=[["run", *SYNTH, *TINY, "--name", "s", "--tracking-uri", "sqlite:///elsewhere/mlflow.db"]]),
    Case("report --out . beside a file it did not write", ["report", "--out", "."], expect=0,
         files={"secret.txt": "not for the tracking server"}, before=[["run", *SYNTH, *TINY]]),
    Case("experiment named ..", ["run", *SYNTH, "--methods", "l1l2", "--experiment", ".."]),
    Case("experiment name of 300 characters", ["run", *SYNTH, "--methods", "l1l2", "--experiment", "x" * 300]),
    Case("sweep named .", ["run", *SYNTH, "--methods", "l1l2", "--name", "."]),
    Case("stale ray_current_cluster file", ["run", *SYNTH, *TINY], expect=0, stale_ray=True),
    Case("torchvision:googlenet (aux logits)", ["run", "--model", "torchvision:googlenet", "--dataset", "synthetic",
                                                "--image-size", "64", "--epochs", "1", "--device", "cpu", *TINY],
         expect=0),
    Case("model returning (logits, features)", ["run", "--model", "nets.py:Pair", *SYNTH, *TINY], expect=0,
         files={"nets.py": NETS}),
    Case("model returning NaN", ["run", "--model", "nets.py:Nan", *SYNTH, "--methods", "l1l2"], files={"nets.py": NETS}),
    Case("torchvision:shufflenet_v2_x0_5 (untraceable)", ["run", "--model", "torchvision:shufflenet_v2_x0_5",
                                                          "--image-size", "32", *SYNTH, "--methods", "l1l2"]),
    Case("MNIST files with 0 training examples", ["run", "--dataset", "mnist", "--data-dir", "d", "--methods", "l1l2"],
         files={"d/train-images-idx3-ubyte": _idx((0, 28, 28)), "d/train-labels-idx1-ubyte": _idx((0,)),
                "d/t10k-images-idx3-ubyte": _idx((4, 28, 28)), "d/t10k-labels-idx1-ubyte": _idx((4,))}),
    Case("image folder with one class", FOLDER, files=_folder(classes=("a",), val=("a",))),
    Case("16-bit grey PNGs", FOLDER, expect=0,
         files={f"imgs/{split}/{c}/0.png": _png16() for split in ("train", "val") for c in ("a", "b")}),
    Case("target sparsity beyond the structure", ["run", *SYNTH, "--methods", "l1l2", "--target-sparsity", "0.999"]),
    Case("methods none with a target", ["run", *SYNTH, "--methods", "none", "--target-sparsity", "0.5"]),
    Case("unreachable PostgreSQL tracking URI", ["run", *SYNTH, "--methods", "l1l2", "--tracking-uri",
                                                "postgresql://u:pw@127.0.0.1:9/mlflow"]),
    Case("config: /dev/zero", ["run", "--config", "/dev/zero"]),
    Case("storage path under a file", ["run", *SYNTH, "--methods", "l1l2", "--storage-path", "afile/runs"],
         files={"afile": "x"}),
    Case("disk full mid-sweep (12 MiB tmpfs)", ["run", *SYNTH, "--methods", "l1l2", "--lambdas", "0.1,0.5", "--seeds",
                                                "0,1", "--epochs", "3", "--limit-train", "256", "--latency-time", "0"],
         expect=1, disk="12m"),
    Case("Ctrl-C of bench ui", ["ui", "--port", "5931"], expect=0, fault="sigint-group", ready="Ctrl-C to stop",
         before=[["run", *SYNTH, *TINY]]),
    # -- reliability and security, fourth probe -----------------------------------------------------------------
    Case("report --out OUT whose files are links outside it", ["report", "--no-attach", "--out", "OUT"], expect=0,
         before=[["run", *SYNTH, *TINY]], setup=_links, check=_victims_kept),
    Case("resume from a foreign checkpoint (hash rewritten)", ["resume", "s"], files={"fail_plugin.py": FAIL_PLUGIN},
         setup=_foreign_checkpoint, check=_refused_then_resumed, timeout=600),
    *[Case(f"prune-to-target with target {t}", [*P2T, "--target-flops-reduction", t]) for t in ("1.5", "0", "-0.1",
                                                                                                "0.5,0.5")],
    Case("prune-to-target with --target-sparsity 1.2", [*P2T, "--target-sparsity", "1.2"]),
    Case("resume of a store that does not exist", ["resume", "x", "--tracking-uri", "sqlite:///NEW/none.db"],
         check=_nothing_under("NEW")),
    Case("load_results of a store that does not exist", ["-c", LOAD], check=_nothing_under("NEW")),
    Case("sweep named with 10 kB", ["run", *SYNTH, "--methods", "l1l2", "--name", "n" * 10_000 + "/"],
         check=_short_output),
    Case("experiment named with HTML, then its report", ["report", "--no-attach", "--out", "OUT", "--experiment",
                                                         "<b>x</b>"], expect=0,
         before=[["run", *SYNTH, *TINY, "--experiment", "<b>x</b>"]], check=_no_raw_html),
    Case("batch larger than the training split", ["run", *SYNTH, "--methods", "l1l2", "--limit-train", "256",
                                                  "--batch-size", "100000", "--dry-run"], expect=0,
         check=_said("one step per epoch")),
    Case("controls after a failed trial", [*P2T, "--target-flops-reduction", "0.5", "--controls", "scratch",
                                           *FAILING], expect=1, files={"fail_plugin.py": FAIL_PLUGIN, "fail": ""},
         check=_said("controls skipped", "RuntimeError: planted failure")),
    Case("SIGTERM to the process group mid-sweep", ["run", "--methods", "l1l2", "--lambdas", "0.1",
                                                    "--dataset", "synthetic", "--epochs", "200", "--device", "cpu"],
         expect=130, fault="sigterm-group"),
    Case("Ctrl-C mid-sweep", ["run", "--methods", "l1l2", "--lambdas", "0.1", "--dataset", "synthetic",
                              "--epochs", "200", "--device", "cpu"], expect=130, fault="sigint"),
]


def run_case(case: Case) -> tuple[int | None, float, str]:
    with tempfile.TemporaryDirectory(prefix="probe") as folder:
        if case.disk and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={case.disk}", "tmpfs", folder],
                                        capture_output=True).returncode != 0:
            return None, 0.0, "(skipped: cannot mount a tmpfs here)"
        try:
            return _run_in(case, folder)
        finally:
            if case.disk:
                subprocess.run(["umount", "-l", folder], capture_output=True)


def _run_in(case: Case, folder: str) -> tuple[int | None, float, str]:
    for name, content in case.files.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_NO_DOWNLOAD": "1"}
    for argv in case.before:
        done = subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=folder, env=env, capture_output=True)
        if done.returncode != 0:
            return None, 0.0, f"(its set-up `bench {' '.join(argv[:3])} ...` exited {done.returncode})"
    stale = Path("/tmp/ray/ray_current_cluster")   # where Ray looks for a running `ray start` cluster
    saved = stale.read_bytes() if case.stale_ray and stale.exists() else None
    if case.stale_ray:
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_text("127.0.0.1:9\n")
    if case.setup is not None:
        failed = case.setup(Path(folder))
        if failed:
            return None, 0.0, failed
    try:
        code, took, first, output = _watch(case, folder, env)
        wrong = case.check(Path(folder), output) if case.check is not None and code is not None else None
        return code, took, f"(check) {wrong}; {first}" if wrong else first
    finally:
        if case.stale_ray and saved is not None:
            stale.write_bytes(saved)
        elif case.stale_ray:
            stale.unlink(missing_ok=True)


def _watch(case: Case, folder: str, env: dict[str, str]) -> tuple[int | None, float, str, str]:
    """Run the case's command (with its fault), return its exit code, time, first meaningful line and output.
    An ``argv`` that starts with ``-c`` is Python code run as ``python -c`` (the Python API's cases)."""
    start = time.monotonic()
    command = [sys.executable, *case.argv] if case.argv[:1] == ["-c"] else [sys.executable, "-m", "bench.cli",
                                                                           *case.argv]
    proc = subprocess.Popen(command, cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        if case.fault:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if case.ready in line:
                    break
            if case.fault == "sigint-group":   # Ctrl-C in a terminal: SIGINT to the foreground group
                time.sleep(5)
                os.killpg(proc.pid, signal.SIGINT)
            elif case.fault == "sigterm-group":
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=case.timeout)
        lines += out.splitlines(keepends=True)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None, time.monotonic() - start, "(timed out)", "".join(lines)
    took = time.monotonic() - start
    noise = ("INFO", "WARNING", "[20", "20", "data ", "sweep ", "experiment", "budget", "ray ", "mlflow ", "note ")
    first = next((ln.strip() for ln in lines if ln.strip().startswith("bench: error")), None)
    first = first or next((ln.strip() for ln in lines if ln.strip() and not ln.startswith(noise)), "")
    if any("Traceback" in ln for ln in lines):
        first = "(traceback) " + first
    return proc.returncode, took, first, "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the cases that stop before any trial")
    parser.add_argument("-k", help="only the cases whose label contains this")
    args = parser.parse_args()
    cases = [c for c in CASES if (not args.quick or c.expect == 2) and (not args.k or args.k in c.label)]
    bad = skipped = 0
    print(f"{'case':<44} {'exit':>4} {'want':>4} {'time':>6}  first line")
    for case in cases:
        code, took, first = run_case(case)
        skip = first.startswith("(skipped")
        ok = code == case.expect and not first.startswith(("(traceback)", "(check)"))   # nor does a failed check
        bad += not ok and not skip
        skipped += skip
        print(f"{case.label:<44} {code if code is not None else '-':>4} {case.expect:>4} {took:>5.1f}s  "
              f"{'' if ok or skip else '!! '}{first[:160]}", flush=True)
    print(f"\n{len(cases) - bad - skipped} of {len(cases)} cases behave" + (f", {skipped} skipped" if skipped else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
