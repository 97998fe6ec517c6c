"""Sweeps that scale and survive, with real components: a `ray start --head` cluster and an `mlflow server`
on 127.0.0.1 (free ports, stopped by process id), a killed driver and its resumed sweep, a failing trial."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench import names as N
from helpers import bench, free_port, read_until, start_bench, wait_until_closed, write_faulty_plugin

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
QUICK = ["--dataset", "synthetic", "--device", "cpu", "--latency-time", "0"]   # latency: test_compact, test_end_to_end


def stop_group(*procs: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop processes started with start_new_session=True and everything they started, by process group id:
    SIGTERM to every group at once, then SIGKILL to what is left after ``grace`` seconds (`ray start --block`
    takes ~30 s to wind down on SIGTERM)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left (Ray's workers, say)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.5)


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries (off PATH, in /usr/lib/postgresql/N/bin), the newest; None when absent."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (a free port, a temporary folder), run as an unprivileged
    user (`postgres` through runuser when the tests run as root: initdb refuses root); yields its database
    URI; stopped by process id and removed. Skipped, with the reason, where PostgreSQL or psycopg is absent."""
    import importlib.util
    import shutil

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; setup.sh does where it can)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg (SQLAlchemy's PostgreSQL driver) is not installed: pip install -e '.[server]'")
    folder = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no user 'postgres' to run PostgreSQL as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    server = subprocess.Popen([*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h",
                               "127.0.0.1", "-k", str(folder)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: subprocess.run([*as_user, str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                        capture_output=True).returncode == 0, "postgres", server, timeout=60)
        subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "mlflow"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop_group(server)
        shutil.rmtree(folder, ignore_errors=True)


def _ray_ports() -> list[str]:
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


@pytest.fixture
def cluster_and_server(tmp_path, postgres):
    """A two-node Ray cluster on 127.0.0.1 (`ray start --head` and `ray start --address`, one CPU each, each
    with its own ports) and an `mlflow server --workers 1` on PostgreSQL serving the artifacts, all on free
    ports, started side by side; yields (ray address, head process, server URI, server process); all stopped
    by process id (never `ray stop`, which would end every Ray on the machine)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 108 chars
    ray_port, server_port = free_port(), free_port()
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
              "--disable-usage-stats"]
    head_cmd = [str(BIN / "ray"), "start", "--head", "--port", str(ray_port), "--include-dashboard", "false",
                "--temp-dir", temp, *common, *_ray_ports()]
    worker_cmd = [str(BIN / "ray"), "start", "--address", f"127.0.0.1:{ray_port}", *common, *_ray_ports()]
    folder = tmp_path / "server"
    folder.mkdir()
    server_cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", postgres,
                  "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1",
                  "--port", str(server_port), "--workers", "1"]
    head_log, worker_log = open(Path(temp) / "head.log", "w+"), open(Path(temp) / "worker.log", "w+")
    head = subprocess.Popen(head_cmd, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    server = subprocess.Popen(server_cmd, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    worker = None
    uri = f"http://127.0.0.1:{server_port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(lambda: "Ray runtime started" in Path(head_log.name).read_text(), "ray start --head", head)
        worker = subprocess.Popen(worker_cmd, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "Ray runtime started" in Path(worker_log.name).read_text(), "ray start --address", worker)
        wait_for(healthy, "mlflow server", server)
        yield f"127.0.0.1:{ray_port}", head, uri, server
    finally:
        procs = [p for p in (worker, head, server) if p is not None]
        stop_group(*procs)
        head_log.close()
        worker_log.close()
        deadline = time.monotonic() + 10   # SIGKILLed processes take a moment to leave the table
        while any(group_alive(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(group_alive(p.pid) == [] for p in procs)


def test_sweep_on_a_ray_cluster_logging_to_an_mlflow_server(tmp_path, cluster_and_server):
    """The multi-user stack: a sweep on a two-node Ray cluster writes every trial to an `mlflow server` backed
    by PostgreSQL, with the artifacts served by the server; its trials branch from shared phases (a seed's
    criterion and dense reference train their first epoch once), the phases' checkpoints read through the storage
    path by whichever node runs a branch."""
    address, head, uri, server = cluster_and_server
    proc = bench(tmp_path, "run", "--methods", "none,taylor", "--protocol", "prune-to-target", "--target-flops-reduction",
                 "0.5", "--sparse-epochs", "1", "--seeds", "0,1", "--epochs", "2",
                 *QUICK, "--ray-address", address, "--tracking-uri", uri, "--experiment", "on-cluster",
                 "--name", "cluster-sweep")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"ray    2 nodes, 2 CPUs, 0 GPUs at {address}" in proc.stdout
    assert head.poll() is None  # joining a cluster does not stop it
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("on-cluster").experiment_id])
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.run_name == "cluster-sweep"
    assert parents[0].info.status == "FINISHED" and parents[0].data.params["seeds"] == "0,1"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted((c.data.params["method"], c.data.params["seed"]) for c in children) == [
        ("none", "0"), ("none", "1"), ("taylor", "0"), ("taylor", "1")]
    phases = [r for r in runs if r.data.tags.get("bench.kind") == "phase"]   # one per seed, not trials
    assert len(phases) == 2 and all(r.info.status == "FINISHED" and "phase" in r.data.params for r in phases)
    assert all(N.SHARED_TAG in c.data.tags for c in children)
    for child in children:
        for key in (N.TEST_ACCURACY, N.TOTAL_SPARSITY, "filters_alive/conv1"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [1, 2]
        assert Path(client.download_artifacts(child.info.run_id, "config.json")).is_file()
    taylor = {c.data.params["seed"]: c.data.metrics for c in children if c.data.params["method"] == "taylor"}
    assert taylor["0"][N.TRAIN_LOSS] != taylor["1"][N.TRAIN_LOSS]  # seeds are a real axis
    assert parents[0].data.metrics["trial_epochs_trained"] == 6 and parents[0].data.metrics["trial_epochs_shared"] == 4
    assert (tmp_path / "server" / "artifacts").is_dir()   # served by the tracking server, stored beside it
    models = client.search_logged_models(experiment_ids=[runs[0].info.experiment_id])
    assert len(models) == 4   # the compact models went through the server too
    # a trial no node of the cluster can hold is refused once joined, before any run is created
    started = time.monotonic()
    proc = bench(tmp_path, "run", "--methods", "l1l2", "--epochs", "1", *QUICK, "--ray-address", address,
                 "--tracking-uri", uri, "--experiment", "too-big", "--cpus-per-trial", "2", timeout=120)
    assert proc.returncode == 2 and time.monotonic() - started < 60, proc.stderr[-2000:]
    assert "no node of the Ray cluster fits one trial (2 CPUs, 0 GPUs per trial); its nodes have: 1 CPUs" in proc.stderr
    assert client.get_experiment_by_name("too-big") is None or not _runs(uri, "too-big")


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_a_killed_sweep_keeps_finished_trials_and_continues_the_interrupted_one_from_its_checkpoint(tmp_path):
    """`bench run`, its driver and everything it started killed with SIGKILL (its process group) once the first
    trial finished and the second reported epoch 2 of 4 (it pauses there: tests/pause_plugin.py): nothing is
    cleaned up by the killed process, its guardian (bench/guard.py) marks the open runs KILLED. `bench run ...
    --resume` keeps the finished trial (same run) and continues the other from epoch 3 in its own run, which ends
    FINISHED with each epoch logged once and exactly the metrics of the same trial run without a stop; `bench
    resume NAME` then has nothing left to do."""
    import torch

    from bench.config import SweepConfig, TrainSettings
    from bench.data import load_dataset
    from bench.trainer import train

    size = ["--limit-train", "512", "--limit-test", "256"]
    argv = ["run", "--methods", "none,l1l2", "--lambdas", "0.5", "--epochs", "4", *QUICK, *size,
            "--max-concurrent", "1", "--name", "killed", "--plugin", str(Path(__file__).with_name("pause_plugin.py"))]
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")   # Ray's session folder: its processes name it
    proc = start_bench(tmp_path, *argv, env={"BENCH_PAUSE_AFTER_EPOCH": "l1l2:2", "RAY_TMPDIR": ray_tmp}, group=True)
    lines = read_until(proc, lambda lines: "l1l2-lam0.5-s0" in lines[-1] and "epoch   2/4" in lines[-1])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert any("done   none-s0" in x for x in lines), "".join(lines)[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the killed driver closes nothing: its guardian does
    before = {r.info.run_name: r for r in wait_until_closed(MlflowClient(uri), "lenet5-synthetic")}
    assert before["none-s0"].info.status == "FINISHED"
    for name in ("killed", "l1l2-lam0.5-s0"):   # the sweep's run and the interrupted trial's
        assert before[name].info.status == "KILLED" and "driver ended without closing" in \
            before[name].data.tags["bench.error"], name
    # nothing of the local Ray outlives its driver (its processes die with it, the guardian ends the rest)
    deadline = time.monotonic() + 15
    while _processes_naming(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_naming(ray_tmp) == []

    # a checkpoint replaced by a pickle that would run code: `bench resume`, from another folder with the
    # store's --tracking-uri and the storage path, refuses it before any work and nothing runs
    import pickle

    from bench import checkpoints
    (planted,) = sorted((tmp_path / "ray_results").glob("killed-*/*/checkpoint_*/trial_state.pt"))[-1:]
    original = planted.read_bytes()
    planted.write_bytes(pickle.dumps({"epoch": _RunsCode(tmp_path / "pwned")}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = bench(elsewhere, "resume", "killed", "--tracking-uri", uri, "--storage-path",
                    str(tmp_path / "ray_results"))
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert refused.stderr.startswith("bench: error: refusing to resume from a checkpoint") and \
        str(planted) in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "pwned").exists() and not (elsewhere / "mlflow.db").exists()
    # a well-formed torch.save of something else, its size and hash written into the record: refused too
    import hashlib
    import json
    record = planted.with_name(checkpoints.INFO)
    info = json.loads(record.read_text())
    torch.save({"foo": torch.randn(3, 3), "bar": torch.zeros(5)}, planted)
    record.write_text(json.dumps({**info, "size": planted.stat().st_size,
                                  "sha256": hashlib.sha256(planted.read_bytes()).hexdigest()}))
    refused = bench(elsewhere, "resume", "killed", "--tracking-uri", uri, "--storage-path",
                    str(tmp_path / "ray_results"))
    assert refused.returncode == 2 and f"{planted} is not the state of a trial of this sweep: it lacks 'epoch'" \
        in refused.stderr and f"delete the folder {planted.parent}" in refused.stderr, refused.stderr[-3000:]
    assert "start " not in refused.stdout and "Traceback" not in refused.stderr
    planted.write_bytes(original)
    record.write_text(json.dumps(info))
    assert checkpoints.check_sweep(tmp_path / "ray_results", before["killed"].info.run_id) == []

    again = bench(tmp_path, *argv, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resume sweep 'killed' (KILLED): 1 of 2 trials finished, running the other 1" in again.stdout
    assert "start  none-s0" not in again.stdout and "epoch   1/4" not in again.stdout
    assert "epoch   3/4" in again.stdout
    after = _runs(uri, "lenet5-synthetic")
    assert sorted((r.info.run_name, r.info.status) for r in after) == [
        ("killed", "FINISHED"), ("l1l2-lam0.5-s0", "FINISHED"), ("none-s0", "FINISHED")]
    runs = {r.info.run_name: r for r in after}
    assert {name: runs[name].info.run_id for name in runs} == {name: before[name].info.run_id for name in runs}
    l1l2 = runs["l1l2-lam0.5-s0"]
    assert l1l2.data.tags["bench.continued"] == "from epoch 2" and "bench.error" not in l1l2.data.tags
    client = MlflowClient(uri)
    assert sorted(m.step for m in client.get_metric_history(l1l2.info.run_id, N.TEST_ACCURACY)) == [1, 2, 3, 4]
    assert "bench.resumed" in runs["killed"].data.tags

    torch.set_num_threads(1)   # as the trial ran (--cpus-per-trial 1)
    sweep = SweepConfig(methods=("l1l2",), lambdas={"l1l2": (0.5,)}, train=TrainSettings(
        dataset="synthetic", epochs=4, limit_train=512, limit_test=256, device="cpu"))
    whole = train(sweep.trials()[0], load_dataset("synthetic", limit_train=512, limit_test=256,
                                                  input_shape=(1, 28, 28)))
    for key in (N.TEST_ACCURACY, N.TOTAL_SPARSITY, N.TRAIN_LOSS):
        assert l1l2.data.metrics[key] == whole[key], key

    done = bench(elsewhere, "resume", "killed", "--tracking-uri", uri)   # the README's form, another folder
    assert done.returncode == 0 and "nothing to run: every trial of sweep 'killed' finished" in done.stdout
    assert len(_runs(uri, "lenet5-synthetic")) == len(after)


def _processes_naming(text: str) -> list[str]:
    """Live processes whose command line or environment holds ``text``, as "pid command" (Ray's workers and
    agents rename themselves, ray::..., but keep the environment they were started with)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            seen = b"".join((proc / part).read_bytes() for part in ("cmdline", "environ")).replace(b"\0", b" ")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            name = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if text.encode() in seen and state != "Z":
            found.append(f"{proc.name} {name}")
    return found


class _RunsCode:
    """Unpickled by an unsafe loader, creates a file: what a planted checkpoint would do."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    plugin = write_faulty_plugin(tmp_path)
    proc = bench(tmp_path, "run", "--plugin", str(plugin), "--methods", "none,faulty,l1l2", "--lambdas", "0.1",
                 "--option", "faulty.fail_at=2", "--epochs", "2", *QUICK, "--max-failures", "1", "--name", "f")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "retry  faulty-s0" in proc.stdout and "FAILED faulty-s0" in proc.stdout
    assert "faulty method fails on purpose at epoch 2" in proc.stdout  # the summary names the error
    runs = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "lenet5-synthetic")
    by_status = sorted((r.info.run_name, r.info.status) for r in runs)
    # 2 attempts (--max-failures 1), one run: the retry continued from epoch 1's checkpoint in the same run
    assert by_status == [("f", "FINISHED"), ("faulty-s0", "FAILED"), ("l1l2-lam0.1-s0", "FINISHED"),
                         ("none-s0", "FINISHED")]
    (run,) = [r for r in runs if r.info.status == "FAILED"]
    assert "RuntimeError: faulty method fails on purpose at epoch 2" in run.data.tags["bench.error"]
    assert run.data.tags["bench.continued"] == "from epoch 1"
    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(run.info.run_id, N.TEST_ACCURACY)
    assert [m.step for m in history] == [1]   # epoch 1 recorded once, before the failures
    errors = list((tmp_path / "ray_results").glob("f-*/*/error.txt"))
    assert len(errors) == 1 and "fails on purpose" in errors[0].read_text()  # Ray's record of the failure


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs at tmp_path/disk (mounted and unmounted by its path); skipped where mounting is not
    allowed (not root, or a container without the capability)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_stops_the_sweep_with_one_line_closes_every_run_and_a_resume_finishes(small_disk):
    """The store and the checkpoints on a disk that fills up mid-sweep: the trial that meets it fails, the others
    are stopped, every run is closed (space set aside at the start is freed for it), one line says what
    happened and no traceback is printed; once there is space, `bench resume` finishes the sweep, skipping a
    checkpoint whose copy the full disk cut short."""
    argv = ["run", "--methods", "l1l2", "--lambdas", "0.1,0.5", "--seeds", "0,1", "--epochs", "3", *QUICK,
            "--limit-train", "256", "--limit-test", "128", "--name", "full"]
    proc = bench(small_disk, *argv)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bench: error")]
    assert len(errors) == 1 and errors[0].startswith("bench: error: no space left on device on the disk of "), text
    assert "`bench resume full` continues it" in errors[0]
    assert "Traceback" not in text and " ERROR " not in text and "WARNING" not in text, text[-3000:]
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    runs = _runs(uri, "lenet5-synthetic")
    assert runs and all(r.info.status in ("FAILED", "KILLED", "FINISHED") for r in runs), \
        [(r.info.run_name, r.info.status) for r in runs]
    assert {r.info.status for r in runs if r.info.run_name == "full"} == {"FAILED"}
    assert not list(small_disk.glob(".bench-reserve-*"))   # the space set aside is given back
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    again = bench(small_disk, "resume", "full")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finished = {r.info.run_name for r in _runs(uri, "lenet5-synthetic") if r.info.status == "FINISHED"}
    assert finished == {"full", "l1l2-lam0.1-s0", "l1l2-lam0.1-s1", "l1l2-lam0.5-s0", "l1l2-lam0.5-s1"}


def test_trials_whose_workers_rays_memory_monitor_kills_start_again_and_the_sweep_finishes(tmp_path):
    """Ray's memory monitor kills a trial's worker while it trains (tests/hog_plugin.py takes memory past the
    kill threshold the test gives Ray, once): Tune cannot handle that loss itself and ends ``fit``; the sweep
    says so naming the memory, keeps the trial that finished (not run again) and starts the other again from its
    checkpoint of epoch 1 (its run continued to the end): exit 0."""
    import psutil

    memory = psutil.virtual_memory()   # far above what the tests beside this one take, far below the machine's
    if memory.available < 11 * 2 ** 30:
        pytest.skip(f"needs 11 GiB of free memory, {memory.available / 2 ** 30:.1f} GiB free")
    threshold = (memory.total - memory.available + 6 * 2 ** 30) / memory.total
    env = {"BENCH_HOG_AFTER_EPOCH": "l1l2:1", "BENCH_HOG_FLAG": str(tmp_path / "hogged"), "BENCH_HOG_GB": "9",
           "RAY_memory_usage_threshold": f"{threshold:.3f}", "RAY_memory_monitor_refresh_ms": "100"}
    argv = ["run", "--methods", "none,l1l2", "--lambdas", "0.5", "--epochs", "2", *QUICK, "--limit-train", "256",
            "--limit-test", "128", "--max-concurrent", "1", "--name", "oom",
            "--plugin", str(Path(__file__).with_name("hog_plugin.py"))]
    done = bench(tmp_path, *argv, env=env)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "hogged").exists()
    assert "lost trial workers (" in out and "memory" in out and \
        "1 unfinished trial(s) start again from their checkpoints (1 of at most 3)" in out, out[-3000:]
    assert out.count("start  none-s0") == 1 and out.count("start  l1l2-lam0.5-s0") == 2
    assert "l1l2-lam0.5-s0               epoch   1/2" in out.split("lost trial workers")[0]   # then killed
    assert "epoch   1/2" not in out.split("lost trial workers")[1]   # its restart continued from that checkpoint
    runs = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "lenet5-synthetic")
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("l1l2-lam0.5-s0", "FINISHED"), ("none-s0", "FINISHED"), ("oom", "FINISHED")], out[-4000:]
    continued = next(r for r in runs if r.info.run_name == "l1l2-lam0.5-s0")   # its run, closed KILLED, reopened
    assert continued.data.tags["bench.continued"] == "from epoch 1" and N.TOTAL_SPARSITY in continued.data.metrics


def test_a_trial_whose_worker_is_killed_as_it_starts_is_failed_with_rays_reason(tmp_path):
    """With Ray's kill threshold below what the machine already uses, the memory monitor kills each trial's worker
    as it starts: Tune returns that trial without its config; it is still found (by its folder) and recorded
    FAILED with Ray's first line, not KILLED "not run", and the sweep exits 1 with the resume advice."""
    env = {"RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "100"}
    done = bench(tmp_path, "run", "--methods", "none", "--epochs", "1", *QUICK, "--limit-train", "128",
                 "--limit-test", "64", "--name", "starved", env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("none-s0 "))
    assert row.split()[1] == "FAILED", done.stdout[-3000:]
    assert "killed due to the node running low on memory" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "not run" not in done.stdout
