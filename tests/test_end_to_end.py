"""`bench run` end to end: a real local Ray runs the trials, a real sqlite MLflow store records them."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from bench import metrics as M
from bench import names as N
from bench.data import DEBIAN_FASHION_MNIST
from bench.models import build_model
from bench.structure import derive as describe
from helpers import bench, free_port, read_until, start_bench, wait_until_closed

pytestmark = pytest.mark.slow

HAVE_FASHION = DEBIAN_FASHION_MNIST.is_dir()
DATASET = ["--limit-train", "1000", "--limit-test", "300"] if HAVE_FASHION else ["--dataset", "synthetic"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    proc = bench(cwd, "run", "--methods", "none,l1l2,l1,l2,ssl,nisp", "--lambdas", "0.5", "--ratios", "0.5",
                 "--epochs", "2",
                 "--device", "cpu", *DATASET)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lenet5-fashion-mnist" if HAVE_FASHION else "lenet5-synthetic")
    runs = client.search_runs([experiment.experiment_id])
    return cwd, proc, client, runs


def test_one_child_run_per_trial_under_one_parent(sweep):
    cwd, proc, client, runs = sweep
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["method"] for c in children) == ["l1", "l1l2", "l2", "nisp", "none", "ssl"]
    assert all(c.info.status == "FINISHED" for c in children)
    sweep_json = json.loads(Path(client.download_artifacts(parent.info.run_id, "sweep.json")).read_text())
    assert sweep_json["methods"] == ["none", "l1l2", "l1", "l2", "ssl", "nisp"] and sweep_json["train"]["epochs"] == 2


def test_params_tags_and_config_artifact(sweep):
    cwd, proc, client, runs = sweep
    child = next(r for r in runs if r.data.params.get("method") == "l1l2")
    p = child.data.params
    assert p["lam"] == "0.5" and p["seed"] == "0" and p["model"] == "lenet5" and p["epochs"] == "2"
    assert p["dataset"] == ("fashion-mnist" if HAVE_FASHION else "synthetic") and p["zeroing"] == "cumulative:0.01"
    for tag in ("bench.torch", "bench.ray", "bench.mlflow", "bench.version", "bench.device", "bench.trial_key"):
        assert child.data.tags.get(tag), tag
    config = json.loads(Path(client.download_artifacts(child.info.run_id, "config.json")).read_text())
    assert config["trial"]["method"] == "l1l2" and config["trial"]["options"]["lam"] == 0.5
    assert config["trial_key"] == child.data.tags["bench.trial_key"]
    assert (cwd / "mlartifacts").is_dir()  # artifacts beside the database, not in a trial's folder


def test_per_epoch_metrics_at_step_epoch(sweep):
    cwd, proc, client, runs = sweep
    model = build_model("lenet5", (1, 28, 28), 10)
    structure = describe(model, (1, 28, 28))
    for run in (r for r in runs if r.data.tags.get("bench.kind") == "trial"):
        rid = run.info.run_id
        for key in (N.TEST_ACCURACY, N.TRAIN_LOSS, N.PENALTY, N.TOTAL_SPARSITY, N.PARAMS, N.FLOPS,
                    "filters_alive/conv1", "filters_alive/conv2", "sparsity/conv1", "sparsity/conv2"):
            history = client.get_metric_history(rid, key)
            assert sorted(m.step for m in history) == [1, 2], (run.data.params["method"], key)
        last = run.data.metrics
        alive = {"conv1": int(last["filters_alive/conv1"]), "conv2": int(last["filters_alive/conv2"])}
        assert last[N.FLOPS] == M.structural_flops(structure, alive)
        assert last[N.PARAMS] == M.structural_params(structure, alive)
        assert last[N.TOTAL_SPARSITY] == pytest.approx(1 - sum(alive.values()) / 70)
        assert 0.0 <= last[N.TEST_ACCURACY] <= 1.0
        if run.data.params["method"] in ("none", "l1l2"):
            assert last[N.TEST_ACCURACY] > 0.3  # 10 classes: these learn well above chance in 2 epochs


def test_nisp_halves_every_layer_and_records_accuracy_after_pruning(sweep):
    cwd, proc, client, runs = sweep
    run = next(r for r in runs if r.data.params.get("method") == "nisp")
    assert run.data.params["ratio"] == "0.5" and run.data.params["sweep_axis"] == "ratio"
    assert run.data.metrics["filters_alive/conv1"] == 10 and run.data.metrics["filters_alive/conv2"] == 25
    pruned = client.get_metric_history(run.info.run_id, "accuracy_after_pruning")
    assert [m.step for m in pruned] == [1]  # 2 epochs: pre-train 1, prune, fine-tune 1
    after = {m.step: m.value for m in client.get_metric_history(run.info.run_id, N.TEST_ACCURACY)}
    assert pruned[0].value == after[1]
    ssl = next(r for r in runs if r.data.params.get("method") == "ssl")
    assert ssl.data.params["zeroing"] == "threshold:0.0001" and ssl.data.params["groups"] == "filter+channel"


def test_progress_and_summary_on_stdout(sweep):
    cwd, proc, client, runs = sweep
    out = proc.stdout
    assert "epoch   1/2" in out and "epoch   2/2" in out and "filters conv1" in out
    assert "(6/6 trials)" in out
    assert "l1l2-lam0.5-s0" in out and "FINISHED" in out and "bench ui" in out
    # not a terminal: a plain progress line after each trial's end, with the time left once epochs are seen
    status = [line for line in out.splitlines() if "] progress " in line]
    assert len(status) >= 6 and status[-1].endswith("progress 6/6 trials done, 0 running, 0 to start; about "
                                                    "0:00:00 left")
    assert any(re.search(r"progress [1-5]/6 trials done, \d running, \d to start; about \d:\d\d:\d\d left", line)
               for line in status)


# SIGTERM to the driver alone (`kill PID`) runs bench's SIGTERM handler, which hands over to the SIGINT handler
# (Tune's graceful stop): the group case runs that handler, the SIGINT case what follows it
@pytest.mark.parametrize("signame,group", [("SIGINT", False), ("SIGTERM", True)])
def test_ctrl_c_or_sigterm_leaves_no_run_running(tmp_path, signame, group):
    """SIGINT (Ctrl-C) to the driver once trials are training, or SIGTERM to its whole process group (what
    `timeout`, systemd and batch schedulers send): the sweep stops gracefully within seconds with exit 130, its
    summary and no traceback, every run ends KILLED, none stays RUNNING. The local Ray lives in a session of
    its own, so the group's signal reaches the driver alone, which stops Ray itself."""
    import signal
    import time

    import shutil
    import tempfile

    # the group case also leaves Ray's address file of a `ray start` cluster that is gone (RAY_TMPDIR/ray/
    # ray_current_cluster, a short folder: Ray's socket paths have a length limit): a local sweep starts its own
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    (Path(ray_tmp) / "ray").mkdir()
    (Path(ray_tmp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")
    proc = start_bench(tmp_path, "run", "--methods", "l1l2,l1", "--lambdas", "0.1", "--dataset", "synthetic",
                       "--epochs", "200", "--device", "cpu", group=group, env={"RAY_TMPDIR": ray_tmp} if group else None)
    lines = read_until(proc, lambda lines: "epoch   1/200" in lines[-1] or "bench: error" in lines[-1])
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(getattr(signal, signame))
    out, _ = proc.communicate(timeout=180)
    took = time.monotonic() - sent
    shutil.rmtree(ray_tmp, ignore_errors=True)
    text = "".join(lines) + out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = wait_until_closed(client, "lenet5-synthetic")
    assert proc.returncode == 130, text[-3000:]
    assert "interrupted" in text and "continue with `bench resume sweep-" in text
    assert "l1l2-lam0.1-s0                 KILLED" in text   # the summary
    assert "Traceback" not in text and "WARNING" not in text, text[-3000:]
    assert took < 15, took
    statuses = sorted((r.data.tags.get("bench.kind"), r.info.status) for r in runs)
    assert ("sweep", "KILLED") in statuses
    assert all(status != "RUNNING" for _, status in statuses), statuses
    assert sum(kind == "trial" for kind, _ in statuses) >= 1


def test_bench_ui_serves_the_sweeps_store(tmp_path):
    import signal
    import time
    import urllib.request

    port = free_port()
    from bench.tracking import Store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = Store(uri).prepare_experiment("ui-check")
    Store(uri).start_sweep_run(experiment, "s", {}, {}, "k")
    proc = start_bench(tmp_path, "ui", "--tracking-uri", uri, "--port", str(port), group=True)
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                                            "?experiment_name=ui-check", timeout=2) as resp:
                    body = json.loads(resp.read())
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(1)
        assert body is not None and body["experiment"]["name"] == "ui-check"
        assert body["experiment"]["tags"] == [{"key": "mlflow.experimentKind", "value": "custom_model_development"}]
    finally:   # Ctrl-C as a terminal sends it: SIGINT to the foreground process group
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    # the address opens the experiment's training runs, and the server's start says nothing to ignore
    assert f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning" in out
    assert not [line for line in out.splitlines() if "warning" in line.lower() or "deprecat" in line.lower()], out
    # Ctrl-C stops the server (in a session of its own) quietly within seconds, and nothing keeps its port
    assert proc.returncode == 0 and "Traceback" not in out and out.rstrip().endswith("MLflow UI stopped"), out
    assert took < 10, took
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_every_trial_saves_its_compact_model_and_bench_export_writes_it(sweep):
    from bench.compact import load_compact

    cwd, proc, client, runs = sweep
    trials = {r.data.params["method"]: r for r in runs if r.data.tags.get("bench.kind") == "trial"}
    for method, run in trials.items():
        m = run.data.metrics
        assert m["compact_params"] == m[N.PARAMS] and m["compact_flops"] == m[N.FLOPS], method
        for b in (1, 64):
            assert m[f"speedup_b{b}"] == pytest.approx(m[f"dense_latency_ms_b{b}"] / m[f"latency_ms_b{b}"])
        assert [x.step for x in client.get_metric_history(run.info.run_id, "compact_params")] == [2]
    nisp = trials["nisp"]
    assert nisp.data.tags["bench.filters_removed"] == "35"
    filters = np.load(client.download_artifacts(nisp.info.run_id, "first_conv_filters.npy", str(cwd)))
    assert filters.shape == (20, 1, 5, 5)  # lenet5's conv1, removed filters kept as zeros
    assert int((np.abs(filters).reshape(20, -1).max(1) == 0).sum()) == 10
    out = bench(cwd, "export", nisp.info.run_id, "--out", str(cwd / "exports" / "nisp.pt"))
    assert out.returncode == 0, out.stderr
    assert "conv widths 10, 25" in out.stdout and "removed filters: conv1 10, conv2 25" in out.stdout
    model, info = load_compact(cwd / "exports" / "nisp.pt")
    assert info["widths"] == (10, 25) and sum(p.numel() for p in model.parameters()) == nisp.data.metrics[N.PARAMS]
    out = bench(cwd, "export", trials["none"].info.run_id, "--out", str(cwd / "none.pt"))
    assert out.returncode == 0 and "no filter was removed in this run: this is the dense model" in out.stdout
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    out = bench(cwd, "export", parent.info.run_id, "--out", str(cwd / "x.pt"))
    assert out.returncode == 2 and "give one of its trials' run ids" in out.stderr


def test_mlflow_records_models_datasets_sources_and_a_summary_without_warnings(sweep, monkeypatch):
    """MLflow's own conventions: each trial's compact model is a logged model of the experiment (pt2, with its
    metrics, loadable by MLflow alone and equal to the exported compact model), the dataset is a run input
    with a content digest, the source tags are MLflow's, the sweep run holds the command and a summary; and
    the run's output has no warning in it."""
    import mlflow
    import torch

    from bench.compact import load_compact
    from bench.data import dataset_record, load_dataset

    cwd, proc, client, runs = sweep
    noisy = [line for line in (proc.stdout + proc.stderr).splitlines()
             if "warning" in line.lower() or "deprecat" in line.lower()]
    assert not noisy, noisy
    experiment = client.get_experiment(runs[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    trials = {r.data.params["method"]: r for r in runs if r.data.tags.get("bench.kind") == "trial"}
    # MLflow's fluent calls read the global tracking URI, and setting it exports MLFLOW_TRACKING_URI, which later
    # tests' subprocesses would inherit: set through monkeypatch, which puts the environment back
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlflow.db'}")
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in trials.values())
    l1l2 = trials["l1l2"]
    model = next(m for m in models if m.source_run_id == l1l2.info.run_id)
    assert model.name == "l1l2-lam0_5-s0" and model.status == "READY"   # the trial's name, '.' -> '_'
    assert len({m.name for m in models}) == len(models)                   # one name per trial
    for trial in trials.values():   # MLflow's system metrics, at least the sample taken as each trial started
        metrics = client.get_run(trial.info.run_id).data.metrics
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert {m.key: m.value for m in model.metrics if m.step == 2}[N.TEST_ACCURACY] == \
        l1l2.data.metrics[N.TEST_ACCURACY]
    out = bench(cwd, "export", l1l2.info.run_id, "--out", str(cwd / "l1l2.pt"), "--register", "lenet-l1l2")
    assert out.returncode == 0 and "registered lenet-l1l2 version 1" in out.stdout, out.stdout + out.stderr
    x = torch.randn(3, 1, 28, 28)
    compact, _ = load_compact(cwd / "l1l2.pt")
    with torch.no_grad():
        want = compact.eval()(x).numpy()
    for uri in (f"models:/{model.model_id}", "models:/lenet-l1l2/1"):
        got = mlflow.pyfunc.load_model(uri).predict(x.numpy())
        assert np.allclose(got, want, atol=1e-5), uri

    (dataset,) = l1l2.inputs.dataset_inputs
    name = "fashion-mnist" if HAVE_FASHION else "synthetic"
    data = load_dataset(name, None, 1000 if HAVE_FASHION else None, 300 if HAVE_FASHION else None,
                        input_shape=(1, 28, 28), download=False)
    assert dataset.dataset.name == name and dataset.dataset.digest == dataset_record(data, name)["digest"]
    assert json.loads(dataset.dataset.profile) == {"train": data.n_train, "test": data.n_test}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    parent = next(r for r in runs if r.data.tags.get("bench.kind") == "sweep")
    for run in (l1l2, parent):
        assert run.data.tags["mlflow.source.name"] == "bench" and run.data.tags["mlflow.user"]
        if commit.returncode == 0:
            assert run.data.tags["mlflow.source.git.commit"] == commit.stdout.strip()
    assert parent.data.tags["mlflow.note.content"].startswith("bench run --methods none,l1l2,l1,l2,ssl,nisp")
    summary = parent.data.metrics
    assert summary["l1l2/trials_finished"] == 1 and summary["l1l2/trials_failed"] == 0
    assert summary["nisp/best_test_accuracy"] == trials["nisp"].data.metrics[N.TEST_ACCURACY]


def test_a_users_model_file_runs_end_to_end_and_exports_as_a_program(tmp_path):
    """`bench run --model my_net.py:MyNet` (a residual add, a depthwise conv), then `bench export --out net.pt2`:
    the program loads with plain torch and runs a 3x32x32 batch."""
    import shutil

    import torch

    shutil.copy(Path(__file__).with_name("nets.py"), tmp_path / "my_net.py")
    proc = bench(tmp_path, "run", "--model", "my_net.py:MyNet", "--dataset", "synthetic", "--methods", "l1l2",
                 "--lambdas", "1", "--epochs", "2", "--limit-train", "256", "--limit-test", "128", "--device", "cpu",
                 "--ray-cpus", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ray    1 node, 1 CPUs, 0 GPUs (local)" in proc.stdout   # --ray-cpus sizes the local Ray
    assert "kept   stem.0: coupled channels (a residual stream or a gate)" in proc.stdout and "model  my_net.py:MyNet: 3 prunable layers" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("my_net.py:MyNet-synthetic")
    trial = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("bench.kind") == "trial")
    assert trial.info.status == "FINISHED"
    assert trial.data.metrics[N.PARAMS] == trial.data.metrics["compact_params"]
    proc = bench(tmp_path, "export", trial.info.run_id, "--out", "net.pt2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    program = torch.export.load(str(tmp_path / "net.pt2")).module()
    assert program(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    proc = bench(tmp_path, "export", trial.info.run_id, "--out", "net.pt")
    assert proc.returncode == 2 and "export it as FILE.pt2" in proc.stderr


def test_an_image_folder_runs_end_to_end_on_the_streaming_path(tmp_path):
    """`bench run --dataset imagefolder:DIR --image-size 32 --model vgg11 --methods none,l1l2 --lambdas 0.2
    --epochs 4` on 10 separable classes of 40x40 PNGs (30 train, 10 val each), streamed through DataLoader
    workers inside the Ray trials, with the default `standard` augmentation. The rate is 0.01: at 0.05 the 20 SGD
    steps of this budget leave VGG11 near chance on 300 images (train accuracy 0.2-0.6, test 0.1-0.3 over six
    seeds and data designs), at 0.01 it reaches 0.8-1.0."""
    from helpers import write_image_folder

    write_image_folder(tmp_path / "shapes")
    proc = bench(tmp_path, "run", "--dataset", "imagefolder:shapes", "--image-size", "32", "--model", "vgg11",
                 "--methods", "none,l1l2", "--lambdas", "0.2", "--epochs", "4", "--lr", "0.01", "--data-path",
                 "stream", "--device", "cpu", "--latency-time", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stream path: DataLoader, 2 workers (--data-path stream)" in proc.stdout
    assert "recipe augment standard" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vgg11-imagefolder:shapes")
    trials = {r.data.params["method"]: r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("bench.kind") == "trial"}
    assert {m: r.info.status for m, r in trials.items()} == {"none": "FINISHED", "l1l2": "FINISHED"}
    assert trials["none"].data.metrics[N.TEST_ACCURACY] >= 0.5   # chance is 0.1
    assert trials["none"].data.params["augment"] == "standard"
