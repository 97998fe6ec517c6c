"""A sweep's lifecycle (bench/session.py) without a subprocess: a real sqlite MLflow store, and the trials run
by a stand-in for Ray that opens and closes real trial runs the way sweep.py's trainable does."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from bench import names as N
from bench import growth, session
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.outcomes import TrialOutcome
from bench.tracking import Store, TrialRun
from helpers import empty_store

SETTINGS = {"methods": ["none", "l1l2"], "lambdas": [0.1], "dataset": "synthetic", "epochs": 1, "device": "cpu"}


def outcome(o: str) -> TrialOutcome:
    return TrialOutcome("t", o)


@pytest.mark.parametrize("statuses,expected", [
    (["FINISHED", "FINISHED"], ("FINISHED", 0, None)),
    (["FINISHED", "FAILED"], ("FINISHED", 1, "1 failed of 2 trials")),
    (["FAILED", "FAILED"], ("FAILED", 1, "2 failed of 2 trials")),
    (["FINISHED", "KILLED", "FAILED"], ("KILLED", 130, "1 failed, 1 killed of 3 trials")),
    ([], ("FINISHED", 0, None)),
])
def test_ending_turns_trial_outcomes_into_the_sweeps_status_and_exit_code(statuses, expected):
    assert session.ending([outcome(s) for s in statuses]) == expected


def runner_with(results: dict[str, str], calls: list):
    """Runs each trial as a real MLflow child run that ends with ``results[method]`` (default FINISHED);
    ``RUNNING`` leaves the run open, as a driver killed outright would."""
    def run(sweep, todo, data, tracking, run_name=None):
        calls.append([t.name for t in todo])
        out = []
        for trial in todo:
            run = TrialRun(tracking, trial.name, {"method": trial.method}, {"trial": trial.to_dict()}, trial.key, "cpu")
            status = results.get(trial.method, "FINISHED")
            metrics = {N.TEST_ACCURACY: 0.5, N.TOTAL_SPARSITY: 0.25, "epoch": 1, N.RUN_ID_KEY: run.run_id}
            if status == "FINISHED":
                run.log_epoch(1, {N.TEST_ACCURACY: 0.5, N.TOTAL_SPARSITY: 0.25})
            if status != "RUNNING":
                run.finish(status)
            out.append(TrialOutcome(trial.name, "KILLED" if status == "RUNNING" else status, metrics, key=trial.key))
        return out
    return run


def start(tmp_path, settings=SETTINGS, resume=False, record=None, results=None, calls=None):
    sweep = build_sweep({**settings, "name": "s1"} if record is None and not resume else settings)
    uri = empty_store(tmp_path)
    trials = sweep.trials()
    lines: list[str] = []
    located = session.locate(sweep, trials, uri, resume=resume, record=record, write=lines.append)
    code = session.execute(sweep, trials, None, located, runner=runner_with(results or {}, calls if calls is not None
                                                                             else []), write=lines.append)
    return code, uri, located, "\n".join(lines)


def statuses(uri: str) -> dict[str, list[str]]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("lenet5-synthetic").experiment_id])
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r.info.run_name, []).append(r.info.status)
    return {k: sorted(v) for k, v in out.items()}


def test_a_new_sweep_opens_and_closes_its_parent_run(tmp_path):
    code, uri, located, text = start(tmp_path)
    assert code == 0 and located.record is None
    assert statuses(uri) == {"s1": ["FINISHED"], "none-s0": ["FINISHED"], "l1l2-lam0.1-s0": ["FINISHED"]}
    assert "none-s0" in text and "0.5000" in text and "25.0%" in text   # the summary


def test_a_failed_trial_gives_exit_1_and_a_resume_runs_only_the_rest(tmp_path):
    calls: list = []
    code, uri, _, text = start(tmp_path, results={"l1l2": "FAILED"}, calls=calls)
    assert code == 1 and statuses(uri)["s1"] == ["FINISHED"]   # one of two failed: the sweep finished
    sweep = build_sweep(SETTINGS)
    code, uri, located, text = start(tmp_path, resume=True, calls=calls)
    assert located.record.name == "s1" and list(located.done) == [t.key for t in sweep.trials() if t.method == "none"]
    assert calls[-1] == ["l1l2-lam0.1-s0"] and code == 0
    assert statuses(uri) == {"s1": ["FINISHED"], "none-s0": ["FINISHED"], "l1l2-lam0.1-s0": ["FAILED", "FINISHED"]}


def test_controls_skipped_after_a_failed_trial_are_said(tmp_path):
    settings = {**SETTINGS, "methods": ["taylor"], "lambdas": [], "protocol": "prune-to-target", "epochs": 2,
                "target_flops_reduction": [0.5], "controls": ["scratch"]}
    code, uri, _, text = start(tmp_path, settings, results={"taylor": "FAILED"})
    assert code == 1 and "controls skipped: 1 of 1 trial did not finish, and the --controls (scratch) run once " \
        "every trial has; `bench resume s1` runs what is left, then them" in text


def test_an_errors_line_names_its_type_and_where_it_was_raised():
    from bench.outcomes import error_text

    def fails():
        return {}["epoch"]
    try:
        fails()
    except KeyError as err:
        line = error_text(err)
    assert line.startswith("KeyError: 'epoch' (at test_session.py:") and line.endswith(" in fails)")

    class RayLike(Exception):   # a worker's error as Ray hands it to the driver: the traceback as text
        cause = KeyError("epoch")
    remote = RayLike('Traceback (most recent call last):\n  File "/venv/lib/python3.11/site-packages/bench/'
                     'recording.py", line 126, in __init__\n    x\nKeyError: \'epoch\'')
    assert error_text(remote) == "KeyError: 'epoch' (at bench/recording.py:126 in __init__)"
    assert error_text(ValueError("a\nlast line")) == "ValueError: last line"


def test_the_resume_advice_is_given_only_where_a_resume_can_succeed():
    def failed(error):
        return TrialOutcome("t", "FAILED", error=error)
    refused = failed("CheckpointError: refusing to resume from a checkpoint: ... delete the folder /x ...")
    diverged = failed("TrialDiverged: training loss is nan at epoch 2 of t")
    other = failed("RuntimeError: boom (at methods/x.py:3 in f)")
    assert session.resume_advice([other], "s") == "1 trial(s) failed; `bench resume s` runs them again (an error " \
        "of the code or the data fails again until it is fixed; the summary's error says where it was raised)"
    both = session.resume_advice([refused, diverged], "s")
    assert "1 refused a checkpoint: delete the folder its error names, then `bench resume s`" in both
    assert "1 diverged" in both and "diverges again" in both and "runs them again" not in both
    assert "runs the other 1 again" in session.resume_advice([refused, other], "s")


def test_runs_left_running_by_a_killed_driver_are_closed_on_resume(tmp_path):
    code, uri, _, _ = start(tmp_path, results={"l1l2": "RUNNING"})
    assert code == 130 and statuses(uri)["l1l2-lam0.1-s0"] == ["KILLED"]   # the driver closes what is open
    client = MlflowClient(uri)   # a driver killed outright (SIGKILL) leaves its runs RUNNING instead
    for run in client.search_runs([client.get_experiment_by_name("lenet5-synthetic").experiment_id]):
        if run.info.status == "KILLED":
            client.update_run(run.info.run_id, status="RUNNING")
    assert statuses(uri)["l1l2-lam0.1-s0"] == ["RUNNING"] and statuses(uri)["s1"] == ["RUNNING"]
    code, uri, _, text = start(tmp_path, resume=True)
    assert code == 0 and "1 run(s) of the interrupted sweep were still RUNNING; marked KILLED" in text
    assert statuses(uri)["l1l2-lam0.1-s0"] == ["FINISHED", "KILLED"]
    code, uri, _, text = start(tmp_path, resume=True)   # every trial finished: nothing to run
    assert code == 0 and "nothing to run: every trial of sweep 's1' finished" in text


def test_a_new_sweep_cannot_take_an_existing_name_and_a_resume_needs_the_same_trials(tmp_path):
    start(tmp_path)
    with pytest.raises(ConfigError, match="a sweep named 's1' exists in experiment 'lenet5-synthetic'"):
        start(tmp_path)
    with pytest.raises(ConfigError, match="no sweep with these trials to resume"):
        start(tmp_path, settings={**SETTINGS, "seeds": [1]}, resume=True)


def test_bench_resume_takes_the_saved_settings_and_only_runtime_overrides(tmp_path):
    start(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep, record = session.saved_sweep(uri, "s1", None, {"max_concurrent": 3, "epochs": 7, "data_dir": "/d"})
    assert record.name == "s1" and sweep.max_concurrent == 3 and sweep.train.data_dir == "/d"
    assert sweep.train.epochs == 1   # what a trial computes is the saved sweep's
    assert set(session.runtime_keys()) == {"tracking_uri", "storage_path", "ray_address", "ray_cpus", "cpus_per_trial",
                                           "gpus_per_trial", "max_concurrent", "max_failures", "data_dir",
                                           "download", "latency_time", "system_metrics_interval", "share"}
    experiment_id = MlflowClient(uri).get_experiment_by_name("lenet5-synthetic").experiment_id
    assert Store(uri).find_sweeps(experiment_id, name="s1")[0].key == sweep.key   # the same trials as saved
    # `bench resume NAME --tracking-uri URI` (the README's form): the store given wins, once
    sweep, _ = session.saved_sweep(uri, "s1", None, {"tracking_uri": uri, "experiment": "x", "max_concurrent": 2})
    assert sweep.tracking_uri == uri and sweep.experiment == "lenet5-synthetic" and sweep.max_concurrent == 2


def test_a_sweep_that_is_running_cannot_be_resumed_a_second_time(tmp_path):
    """While a sweep's driver runs it (here: inside its trials), a second resume of it is refused before it
    touches a run, naming the driver; once that driver is done, a resume goes ahead."""
    refusals: list[str] = []
    inner = runner_with({}, [])

    def runner(sweep, todo, data, tracking, run_name=None):
        with pytest.raises(ConfigError) as err:
            start(tmp_path, resume=True)
        refusals.append(str(err.value))
        return inner(sweep, todo, data, tracking, run_name)

    sweep = build_sweep({**SETTINGS, "name": "s1"})
    uri = empty_store(tmp_path)
    located = session.locate(sweep, sweep.trials(), uri, write=lambda line: None)
    assert session.execute(sweep, sweep.trials(), None, located, runner=runner, write=lambda line: None) == 0
    assert len(refusals) == 1 and refusals[0].startswith("sweep 's1' is running now (bench pid ")
    assert statuses(uri)["s1"] == ["FINISHED"] and statuses(uri)["none-s0"] == ["FINISHED"]
    code, _, _, text = start(tmp_path, resume=True)
    assert code == 0 and "nothing to run" in text


def grow_with(tmp_path, asked: dict, calls: list):
    """``bench run ... --name s1 --resume`` with ``asked``: the sweep s1 grown by it, run by the stand-in."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep, record = growth.grown_sweep(uri, build_sweep({**asked, "name": "s1"}))
    lines: list[str] = []
    located = session.locate(sweep, sweep.trials(), uri, resume=True, record=record, write=lines.append)
    code = session.execute(sweep, sweep.trials(), None, located, runner=runner_with({}, calls), write=lines.append)
    return code, sweep, record, "\n".join(lines)


def test_a_sweep_grown_by_a_seed_runs_only_the_new_trials_in_the_same_parent_run(tmp_path):
    calls: list = []
    start(tmp_path, calls=calls)
    code, sweep, record, text = grow_with(tmp_path, {**SETTINGS, "seeds": [0, 1]}, calls)
    assert code == 0 and record.name == "s1" and sweep.seeds == (0, 1)
    assert calls[-1] == ["none-s1", "l1l2-lam0.1-s1"]   # the seed-0 trials are not run again
    assert "grow   sweep 's1' gains seeds 1: 2 trial(s) to run" in text
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = MlflowClient(uri).get_experiment_by_name("lenet5-synthetic").experiment_id
    (saved,) = Store(uri).find_sweeps(experiment_id, name="s1")   # one sweep, its record the grown one's
    assert saved.key == sweep.key and saved.config["seeds"] == [0, 1]
    assert MlflowClient(uri).get_run(saved.run_id).data.tags[N.GROWN_TAG].endswith(": seeds 1")
    children = [r for r in MlflowClient(uri).search_runs([experiment_id]) if r.data.tags.get(N.PARENT_TAG)]
    assert sorted(r.info.run_name for r in children) == ["l1l2-lam0.1-s0", "l1l2-lam0.1-s1", "none-s0", "none-s1"]
    code, _, record, text = grow_with(tmp_path, {**SETTINGS, "seeds": [0, 1]}, calls)   # the same trials now
    assert code == 0 and record is None and "nothing to run" in text


def test_bench_resume_grows_a_sweep_by_methods_seeds_and_keeps_what_it_had(tmp_path):
    start(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the lists are merged: seed 0 and the methods none, l1l2 stay; ssl takes the sweep's --lambdas 0.1
    sweep, record = session.saved_sweep(uri, "s1", None, {"methods": ("ssl",), "seeds": (2,), "max_concurrent": 3,
                                                          "epochs": 9})
    assert sweep.methods == ("none", "l1l2", "ssl") and sweep.seeds == (0, 2) and sweep.max_concurrent == 3
    assert sweep.train.epochs == 1 and sweep.grid("ssl") == (0.1,) and record.name == "s1"
    assert sorted(t.name for t in sweep.trials()) == sorted(f"{m}-s{s}" for m in ("none", "l1l2-lam0.1", "ssl-lam0.1")
                                                            for s in (0, 2))


def test_growing_a_sweep_refuses_any_other_changed_setting_naming_both_values(tmp_path):
    start(tmp_path)
    with pytest.raises(ConfigError) as err:
        grow_with(tmp_path, {**SETTINGS, "seeds": [0, 1], "epochs": 2, "lr": 0.5}, [])
    assert "sweep 's1' grows only by --methods, --seeds, --target-* and --controls; these settings differ: " \
        "--epochs 1 in the sweep, 2 here; --lr 0.01 in the sweep, 0.5 here (keep" in str(err.value)
    with pytest.raises(ConfigError, match="l1l2's values 0.1 in the sweep, 0.2 here"):
        grow_with(tmp_path, {**SETTINGS, "lambdas": [0.2], "seeds": [0, 1]}, [])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = MlflowClient(uri).get_experiment_by_name("lenet5-synthetic").experiment_id
    assert len(MlflowClient(uri).search_runs([experiment_id])) == 3   # refused before any run was made


def test_a_resume_without_a_name_grows_the_latest_sweep_whose_other_settings_are_these(tmp_path):
    start(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep, record = growth.grown_sweep(uri, build_sweep({**SETTINGS, "seeds": [0, 1]}))
    assert record.name == "s1" and sweep.seeds == (0, 1) and sweep.name == "s1"
    # another training setting: not a growth of s1, so nothing is found to resume (and locate says so)
    assert growth.grown_sweep(uri, build_sweep({**SETTINGS, "seeds": [0, 1], "epochs": 2})) [1] is None
