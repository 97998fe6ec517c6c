"""`bench` commands: bad input is a clear error before any work starts; `bench list`; dry runs."""
from __future__ import annotations

import socket

import pytest

from bench.cli import main
from helpers import free_port, write_faulty_plugin, write_mnist
from bench.models import list_models
from bench.presets import PRESETS
from methods import list_methods

QUICK = ["--epochs", "1", "--dataset", "synthetic", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_nothing_started(tmp_path):
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize("argv,message", [
    (["--methods", "l1l2,foo"], f"unknown method 'foo'; valid methods: {', '.join(list_methods())}"),
    (["--model", "resnet9"], f"unknown model 'resnet9'; valid models: {', '.join(list_models())}"),
    (["--preset", "table9"], f"unknown preset 'table9'; valid presets: {', '.join(sorted(PRESETS))}"),
    (["--model", "lenet5", "--methods", "slimming", "--epochs", "2"],
     "method 'slimming' cannot run on model 'lenet5': LeNet5 has no BatchNorm on the channels of conv1, conv2"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'; valid datasets: cifar10, fashion-mnist, mnist, synthetic"),
    (["--lambdas", "0.1,-0.5"], "method 'l1l2': option 'lam' must be >= 0.0, got -0.5"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--zeroing", "cumulative"], "cannot parse zeroing rule 'cumulative'"),
    (["--zeroing", "cumulative:1.5"], "cumulative threshold t must be in (0, 1)"),
    (["--zeroing", "l9=none"], "not among the methods of this sweep"),
    (["--option", "l1l2.gamma=2"], "method 'l1l2': unknown option(s) gamma; valid options: eps, lam, norm_scale"),
    (["--lr", "-1"], "learning rate must be > 0"),
    (["--methods", "nisp", "--epochs", "2", "--ratios", "0.5,1.0"], "method 'nisp': option 'ratio' must be in (0.0, 1.0), got 1.0"),
    (["--methods", "ssl", "--option", "ssl.groups=kernel"], "option 'groups' must be one of"),
    (["--methods", "nisp"], "nisp needs at least one pre-training epoch: finetune_epochs=1 with 1 epochs in all"),
    (["--methods", "l1,l1"], "a method is listed twice"),
    (["--primary", "ssl"], "--primary ssl: not among the methods of this sweep (l1l2)"),
    (["--model", "vgg11", "--dataset", "mnist"], "dataset 'mnist' not found"),
    (["--target-sparsity", "0.999"], "--target-sparsity 0.999 cannot be reached: at most 97.1% (sparsity) of lenet5"),
    (["--methods", "none", "--target-sparsity", "0.5"], "a target search needs a method with a strength to search"),
    # a target out of range or listed twice: one line under either protocol, before anything
    *[([*protocol, "--target-flops-reduction", value], f"--target-flops-reduction must be in (0, 1) (each value; "
       f"{float(value):g}" if value != "0.5,0.5" else "--target-flops-reduction must not list a value twice (0.5")
      for protocol in ([], ["--protocol", "prune-to-target", "--methods", "taylor", "--epochs", "2"])
      for value in ("0", "1", "-0.1", "1.5", "0.5,0.5")],
    (["--protocol", "prune-to-target", "--methods", "taylor", "--epochs", "2", "--target-sparsity", "1.2"],
     "--target-sparsity must be in (0, 1) (each value; 1.2 is not)"),
    (["--name", "n" * 10_000 + "/"], "sweep name must be 1-100 letters, digits, '.', '_' or '-', not only dots, got "
                                     f"{'n' * 80!r}... (10001 characters)"),
])
def test_bad_input_is_a_clear_error_before_any_work(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, "run", "--methods", "l1l2", *QUICK, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err) < 1000, err[:2000]
    assert_nothing_started(tmp_path)


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_report_detect_must_be_a_positive_size(capsys, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "report", "--detect", value)
    assert code == 2 and err.startswith(f"bench: error: --detect {value}: give a difference in accuracy points")
    assert list(tmp_path.iterdir()) == []   # refused before the store is looked at


def test_model_that_cannot_take_the_dataset(capsys, tmp_path):
    write_mnist(tmp_path / "data")
    code, _, err = run_cli(capsys, "run", "--methods", "l1", "--model", "vgg11", "--dataset", "mnist",
                           "--data-dir", str(tmp_path / "data"), "--epochs", "1")
    assert code == 2 and "model 'vgg11' cannot take 'mnist' inputs" in err and "32x32" in err


def test_missing_and_corrupt_data_files_are_named(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--methods", "l1", "--dataset", "mnist", "--data-dir",
                           str(tmp_path / "nowhere"), "--epochs", "1")
    assert code == 2 and str(tmp_path / "nowhere") in err and "not found" in err
    write_mnist(tmp_path / "d", compress=False)
    bad = tmp_path / "d" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "run", "--methods", "l1", "--dataset", "mnist", "--data-dir",
                           str(tmp_path / "d"), "--epochs", "1")
    assert code == 2 and str(bad) in err and "truncated" in err
    assert_nothing_started(tmp_path)


def test_no_download_env_is_honoured_by_bench_run(capsys, tmp_path, monkeypatch):
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    code, _, err = run_cli(capsys, "run", "--methods", "l1", "--dataset", "mnist", "--epochs", "1")
    assert code == 2 and "Downloads are disabled" in err
    monkeypatch.delenv("BENCH_NO_DOWNLOAD")
    code, _, err = run_cli(capsys, "run", "--methods", "l1", "--dataset", "mnist", "--epochs", "1", "--no-download")
    assert code == 2 and "Downloads are disabled" in err


def test_unparseable_numbers_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--lambdas", "0.1,abc"])
    assert exc.value.code == 2
    assert "expected comma-separated numbers" in capsys.readouterr().err


def test_unreachable_tracking_server(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # free, and nothing listens on it once closed
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK, "--tracking-uri", f"http://127.0.0.1:{port}")
    assert code == 2 and f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}" in err


def test_config_file_sits_between_defaults_and_command_line(capsys, tmp_path):
    (tmp_path / "sweep.toml").write_text('methods = ["l1", "l1l2"]\nlambdas = [0.3, 0.7]\nepochs = 3\n'
                                         'dataset = "synthetic"\n[options.l1l2]\nnorm_scale = "none"\n')
    code, out, _ = run_cli(capsys, "run", "--config", "sweep.toml", "--lambdas", "0.9", "--dry-run")
    assert code == 0
    assert "4 trials" not in out and "2 trials" in out
    assert "l1l2-lam0.9-s0" in out and "'norm_scale': 'none'" in out and "3 epochs" in out
    (tmp_path / "bad.toml").write_text("epoch = 3\n")
    code, _, err = run_cli(capsys, "run", "--config", "bad.toml")
    assert code == 2 and "unknown key(s) epoch" in err


def test_dry_run_lists_method_x_value_x_seed(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run", "--methods", "none,l1l2,l1", "--lambdas", "0.1,0.2", "--seeds", "0,1",
                           "--zeroing", "l1=threshold:1e-4", *QUICK, "--dry-run")
    assert code == 0 and "10 trials" in out
    assert "l1-lam0.2-zthreshold0.0001-s1" in out and "none-s1" in out and "l1l2-lam0.1-s0" in out
    assert_nothing_started(tmp_path)


def test_per_method_sweep_values(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run", "--methods", "l1l2,ssl,nisp", "--lambdas", "0.05,0.2", "--lambdas",
                           "ssl=0.01", "--ratios", "0.5", *QUICK, "--epochs", "2", "--dry-run")
    assert code == 0 and "4 trials" in out
    assert "l1l2-lam0.05-s0" in out and "l1l2-lam0.2-s0" in out and "ssl-lam0.01-s0" in out
    assert "nisp-ratio0.5-s0" in out and "ssl-lam0.05" not in out
    code, _, err = run_cli(capsys, "run", "--methods", "l1l2,nisp", "--lambdas", "nisp=0.1", *QUICK, "--dry-run")
    assert code == 2 and "lambdas given for 'nisp', which is swept over ratio" in err
    (tmp_path / "grid.toml").write_text('methods = ["l1", "ssl"]\ndataset = "synthetic"\n'
                                        '[lambdas]\n"*" = [0.3]\nssl = [0.02, 0.04]\n')
    code, out, _ = run_cli(capsys, "run", "--config", "grid.toml", "--dry-run")
    assert code == 0 and "3 trials" in out and "l1-lam0.3-s0" in out and "ssl-lam0.04-s0" in out


def test_presets_layer_under_config_and_command_line(capsys, tmp_path):
    write_mnist(tmp_path / "data")
    code, out, _ = run_cli(capsys, "run", "--preset", "mnist-lenet", "--data-dir", "data", "--dry-run")
    # Table I: none, l1/l2/l1l2 at the paper's 0.5, SSL at three strengths, NISP at p = 0.5; 30 epochs
    assert code == 0 and "8 trials" in out and "experiment mnist-lenet (preset mnist-lenet)" in out
    for trial in ("none-s0", "l1-lam0.5-s0", "l2-lam0.5-s0", "l1l2-lam0.5-s0", "ssl-lam0.01-s0", "nisp-ratio0.5-s0"):
        assert f"  {trial} " in out
    assert "lenet5, 30 epochs" in out
    # picking methods keeps the preset's values for them; a device, epochs and data from the command line win
    code, out, _ = run_cli(capsys, "run", "--preset", "cifar10-vgg11", "--methods", "l1l2", *QUICK, "--dry-run")
    assert code == 0 and "2 trials" in out and "l1l2-lam0.005-s0" in out and "l1l2-lam0.001-s0" in out
    assert "'norm_scale': 'none'" in out and "vgg11, 1 epochs" in out
    # the user's lambdas replace the preset's grids
    code, out, _ = run_cli(capsys, "run", "--preset", "fashion-mnist-lenet", "--methods", "l1,l0sgl", "--lambdas",
                           "0.1", *QUICK, "--dry-run")
    assert code == 0 and "2 trials" in out and "l1-lam0.1-s0" in out and "l0sgl-lam0.1-s0" in out
    assert_nothing_started(tmp_path)


def test_list_shows_methods_models_datasets_and_presets(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in (*list_methods(), "lenet5", "lenet5-bn", "vgg11", "resnet20", "resnet56", "fashion-mnist", "mnist",
                 "cifar10", "synthetic", "fashion-mnist-lenet", "mnist-lenet", "cifar10-lenet", "cifar10-vgg11"):
        assert f"  {name} " in out
    assert "report quotes Table III: VGG11 on CIFAR-10" in out
    assert "cumulative:0.01" in out and ".norm_scale='filters'" in out


def test_unreachable_ray_address_is_an_error_before_any_work(capsys, tmp_path, monkeypatch):
    port = free_port()
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK, "--ray-address", f"127.0.0.1:{port}")
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "ray start --head" in err
    assert_nothing_started(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK)
    assert code == 2 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK, "--ray-address", "headnode")
    assert code == 2 and "is not HOST:PORT" in err
    assert_nothing_started(tmp_path)


@pytest.mark.parametrize("argv,message", [
    (["--max-failures", "-1"], "max failures must be >= 0, got -1"),
    (["--name", "my sweep"], "sweep name must be 1-100 letters"),
    (["--name", ".."], "not only dots, got '..'"),
    (["--experiment", ".."], "experiment name must be 1-128 printable characters, not only dots"),
    (["--experiment", "x" * 300], "(300 characters)"),
    (["--experiment", "a\nb"], "experiment name must be 1-128 printable characters"),
    (["--cpus-per-trial", "0"], "cpus per trial must be > 0"),
    (["--latency-time", "-0.1"], "latency time must be >= 0, got -0.1"),
    (["--plugin", "nowhere/plugin.py"], "cannot load method plugin"),
])
def test_bad_runtime_options(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK, *argv)
    assert code == 2 and message in err
    assert_nothing_started(tmp_path)


def test_plugin_methods_join_the_registry(capsys, tmp_path, registry_snapshot):
    code, _, err = run_cli(capsys, "run", "--methods", "faulty", *QUICK, "--dry-run")
    assert code == 2 and "unknown method 'faulty'" in err
    plugin = write_faulty_plugin(tmp_path)
    code, out, _ = run_cli(capsys, "list", "--plugin", str(plugin))
    assert code == 0 and "  faulty " in out and ".fail_at=1" in out
    code, out, _ = run_cli(capsys, "run", "--plugin", plugin.name, "--methods", "none,faulty", *QUICK, "--dry-run")
    assert code == 0 and "2 trials" in out and "faulty-s0" in out
    code, out, _ = run_cli(capsys, "run", "--plugin", str(plugin), "--methods", "faulty", *QUICK, "--dry-run")
    assert code == 0 and "1 trial: faulty" in out  # loading the same file again is a no-op, not a duplicate


def test_resume_without_a_sweep_to_resume(capsys, tmp_path):
    """No store: refused, and reading created nothing (no database, no lock, no folder); a store without the
    sweep: refused naming what it holds."""
    from bench.tracking import Store

    new = tmp_path / "new"
    for argv in (["run", "--methods", "l1", *QUICK, "--resume"], ["resume", "x"],
                 ["resume", "x", "--tracking-uri", f"sqlite:///{new}/none.db"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "no tracking database at" in err and "nothing was created there" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    Store(f"sqlite:///{tmp_path / 'mlflow.db'}").prepare_experiment("other")
    code, _, err = run_cli(capsys, "run", "--methods", "l1", *QUICK, "--resume")
    assert code == 2 and "no sweep with these trials to resume in experiment 'lenet5-synthetic'" in err
    assert "it has no sweep yet" in err
    code, _, err = run_cli(capsys, "resume", "nosuch")
    assert code == 2 and "no sweep named 'nosuch' in any experiment" in err


def test_sweep_key_ignores_where_the_data_is():
    from bench.config_layers import build_sweep
    a = build_sweep({"methods": ["l1", "l1l2"], "dataset": "synthetic"})
    b = build_sweep({"methods": ["l1", "l1l2"], "dataset": "synthetic", "data_dir": "/elsewhere", "download": False,
                     "max_concurrent": 3, "ray_address": "10.0.0.1:6379"})
    c = build_sweep({"methods": ["l1", "l1l2"], "dataset": "synthetic", "seeds": [1]})
    assert a.key == b.key and [t.key for t in a.trials()] == [t.key for t in b.trials()]
    assert a.key != c.key
    from bench.config_layers import from_saved

    again = from_saved(b.to_dict())
    assert again == b and again.key == a.key


def test_a_trial_that_cannot_fit_the_machine_is_refused_before_ray_starts(capsys, tmp_path):
    import torch
    code, _, err = run_cli(capsys, "run", "--methods", "l1l2", *QUICK, "--cpus-per-trial", "10000")
    assert code == 2 and "--cpus-per-trial 10000 does not fit this machine" in err and "CPU(s) available" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "run", "--methods", "l1l2", *QUICK, "--gpus-per-trial", "0.5")
        assert code == 2 and "--gpus-per-trial 0.5 does not fit this machine: 0 GPU(s)" in err
        code, _, err = run_cli(capsys, "run", "--methods", "l1l2", "--dataset", "synthetic", "--device", "cuda",
                               "--dry-run")
        assert code == 2 and "--device cuda" in err and "CUDA is not available" in err
    assert_nothing_started(tmp_path)


@pytest.mark.parametrize("toml,message", [
    ('epochs = "ten"', "epochs: expected an integer, got 'ten'"),
    ("epochs = 1.5", "epochs: expected an integer, got 1.5"),
    ('lr = "0.1"', "lr: expected a number, got '0.1' (a string)"),
    ('seeds = "a"', "seeds: expected a list of integers, got 'a'"),
    ("seeds = [0, 0.5]", "seeds: expected a list of integers, got [0, 0.5]"),
    ('limit_train = "x"', "limit_train: expected an integer, got 'x'"),
    ("channels_last = 1", "channels_last: expected true or false, got 1"),
    ('methods = ["l1", 3]', "methods: expected a list of strings"),
    ('lambdas = ["0.1"]', "lambdas: expected numbers for '*', got ['0.1']"),
    ('zeroing = 3', "zeroing: expected a rule"),
    ('options = "x"', "options: expected tables of method options"),
    ("cpus_per_trial = -1", "cpus per trial must be > 0, got -1"),
    ("momentum = 1.0", "momentum must be in [0, 1), got 1.0"),
])
def test_config_values_of_the_wrong_type_or_range_name_the_key(capsys, tmp_path, toml, message):
    (tmp_path / "c.toml").write_text(f'dataset = "synthetic"\nmethods = ["l1l2"]\n{toml}\n'
                                     if not toml.startswith("methods") else f'dataset = "synthetic"\n{toml}\n')
    code, _, err = run_cli(capsys, "run", "--config", "c.toml", "--dry-run")
    assert code == 2 and message in err, err
    assert_nothing_started(tmp_path)


def test_a_config_that_is_a_folder_is_named(capsys, tmp_path):
    (tmp_path / "conf").mkdir()
    code, _, err = run_cli(capsys, "run", "--config", "conf")
    assert code == 2 and "config file conf is a folder" in err


@pytest.mark.parametrize("value", ["abc", "0.3"])
def test_an_option_for_the_swept_value_points_to_lambdas(capsys, tmp_path, value):
    code, _, err = run_cli(capsys, "run", "--methods", "l1l2", *QUICK, "--option", f"l1l2.lam={value}")
    assert code == 2 and "option l1l2.lam is the value the sweep varies: give it with --lambdas l1l2=" in err
    code, _, err = run_cli(capsys, "run", "--methods", "nisp", *QUICK, "--epochs", "2", "--option", "nisp.ratio=0.5")
    assert code == 2 and "--ratios nisp=" in err


@pytest.mark.parametrize("content,message", [
    (b"this is not a database" * 10, "is not an sqlite file"),
    (None, "is incomplete"),
])
def test_a_broken_store_is_named_by_its_path(capsys, tmp_path, content, message):
    import sqlite3
    db = tmp_path / "mlflow.db"
    if content is None:   # an sqlite file whose MLflow tables were never all created
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE experiments (id INTEGER)")
    else:
        db.write_bytes(content)
    for argv in (["run", "--methods", "l1l2", *QUICK, "--dry-run"], ["report"], ["resume", "x"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and str(db) in err and message in err, (argv, err)


def test_bench_ui_on_a_port_in_use_fails(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_cli(capsys, "ui", "--port", str(port))
    assert code == 2 and f"cannot serve the MLflow UI on 127.0.0.1:{port}" in err


def test_export_to_a_path_that_cannot_be_written_is_a_message(capsys, tmp_path):
    import torch
    from mlflow.tracking import MlflowClient

    from bench.compact import save_compact
    from bench.models import build_model
    from bench.names import COMPACT_MODEL, KIND_TAG
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"), tags={KIND_TAG: "trial"})
    model = build_model("lenet5", (1, 28, 28), 10)
    client.log_artifact(run.info.run_id, str(save_compact(tmp_path / COMPACT_MODEL, model, "lenet5", (1, 28, 28),
                                                          10, {})))
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "export", run.info.run_id, "--out", str(tmp_path / "afile" / "m.pt"),
                           "--tracking-uri", uri)
    assert code == 2 and "bench: error:" in err and str(tmp_path / "afile") in err
    code, out, _ = run_cli(capsys, "export", run.info.run_id, "--out", str(tmp_path / "m.pt"), "--tracking-uri", uri)
    assert code == 0 and torch.load(tmp_path / "m.pt", weights_only=True)


@pytest.mark.parametrize("name,folder", [("lenet5-synthetic", "lenet5-synthetic"), ("..", "experiment__"),
                                         (".", "experiment_"), ("a/../b", "a_.._b"), ("x" * 300, "x" * 128)])
def test_an_experiment_names_a_report_folder_inside_reports(name, folder):
    from bench.cli import _safe_folder
    assert _safe_folder(name) == folder


def test_a_password_in_the_tracking_uri_is_masked_where_bench_prints_or_saves_it():
    from bench.config import redact
    from bench.config_layers import build_sweep
    assert redact("bench run --tracking-uri postgresql://me:s3cr%40t@db:5432/mlflow --x http://h:5000") == \
        "bench run --tracking-uri postgresql://me:***@db:5432/mlflow --x http://h:5000"
    sweep = build_sweep({"methods": ["l1l2"], "tracking_uri": "mysql+pymysql://me:pw@db/mlflow"})
    assert sweep.tracking_uri.endswith(":pw@db/mlflow") and sweep.to_dict()["tracking_uri"] == \
        "mysql+pymysql://me:***@db/mlflow"


def test_version_and_every_help_ending_with_its_exit_statuses(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("bench 0.") and f"torch {version('torch')}" in out
    assert f"ray {version('ray')}" in out and f"mlflow {version('mlflow')}" in out
    for command, last in ((["run"], "130 interrupted"), (["resume"], "130 interrupted"), (["report"], "2 bad input"),
                          (["export"], "2 bad input"), (["ui"], "0 stopped with Ctrl-C"), ([], "130 interrupted")):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert text[text.rindex("exit status: "):].count(last) == 1, command
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    groups = [line for line in capsys.readouterr().out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert len(groups) == len(set(groups)), groups   # no option group title twice


def test_a_batch_not_below_the_training_split_is_said_in_the_plan(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run", "--methods", "l1l2", "--dataset", "synthetic", "--limit-train", "256",
                           "--batch-size", "100000", "--epochs", "3", "--dry-run")
    assert code == 0 and "batch 100000 (not below the 256 training examples: one step per epoch, 3 in all)" in out
    code, out, _ = run_cli(capsys, "run", "--methods", "l1l2", "--dataset", "synthetic", "--limit-train", "256",
                           "--batch-size", "64", "--dry-run")
    assert code == 0 and "batch 64," in out and "training examples" not in out
