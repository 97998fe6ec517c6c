"""Shared phases (bench/phases.py): which trials share, how many trial-epochs that saves, and that a branch
started from its phase's checkpoint ends exactly where the same trial run straight through ends."""
from __future__ import annotations

import pytest
import torch

from bench import checkpoints
from bench import names as N
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.phases import branch_snapshot, epochs_trained, groups, shared, trains_plain
from bench.trainer import train
from methods import get_method

SHAPE = (1, 28, 28)
STUDY = {"methods": ["none", "l1l2", "magnitude-l1", "taylor", "random"], "protocol": "prune-to-target",
         "target_flops_reduction": [0.5, 0.75], "seeds": [0, 1, 2], "epochs": 6, "sparse_epochs": 3,
         "dataset": "synthetic", "device": "cpu"}


def test_criteria_and_the_dense_reference_share_one_phase_per_seed_and_a_penalty_method_one_per_strength():
    trials = build_sweep(STUDY).trials()
    found = groups(trials)
    assert len(found) == 6 and all(g.split == 3 for g in found)   # per seed: the plain phase, l1l2's
    by_seed = {}
    for g in found:
        by_seed.setdefault(g.phase.seed, []).append(sorted(b.name for b in g.branches))
    assert sorted(by_seed[1]) == [
        ["l1l2-lam0.5-flops0.5-s1", "l1l2-lam0.5-flops0.75-s1"],
        ["magnitude-l1-flops0.5-s1", "magnitude-l1-flops0.75-s1", "none-s1", "random-flops0.5-s1",
         "random-flops0.75-s1", "taylor-flops0.5-s1", "taylor-flops0.75-s1"]]
    # 27 trials of 6 epochs straight through: 162; shared: per seed two phases of 3 epochs and 9 branches of 3
    assert epochs_trained(trials) == (99, 81) and sum(t.train.epochs for t in trials) == 162
    assert trains_plain(get_method("taylor")()) and not trains_plain(get_method("l1l2")(lam=0.1))
    phases, marked = shared(trials)
    assert [t.key for t in marked] == [t.key for t in trials]   # a branch is the same trial: the same key
    assert {t.shared for t in marked} == {p.key for p in phases} and len({p.key for p in phases}) == 6
    # a control, another strength or another seed does not join; a sweep grown later finds the same phases
    again = groups(build_sweep({**STUDY, "seeds": [1], "lambdas": [0.1, 0.2]}).trials())
    assert sorted(len(g.branches) for g in again) == [2, 2, 7]
    assert {g.phase.key for g in groups(build_sweep({**STUDY, "seeds": [1, 4]}).trials())} >= \
        {g.phase.key for g in found if g.phase.seed == 1}


def _straight_and_branched(trials, data, tmp_path):
    """Each trial's last metrics run straight through, and run as a branch of its group's phase (whose split
    checkpoint goes through bench/checkpoints.py's write, verification and safe load)."""
    [group] = groups(trials)
    split: list = []
    train(group.phase, data, split=(group.split, split.append))
    folder = tmp_path / "sweep" / "trial" / "checkpoint_000001"   # where Tune keeps a trial's checkpoints
    folder.mkdir(parents=True)
    checkpoints.write(folder, split[0], {"trial_key": group.phase.key, "epoch": split[0]["epoch"], "split": True,
                                         "run_id": "r", "parent_run_id": "p"})
    snapshot, record = checkpoints.latest(tmp_path, group.phase.key, "p", map_location="cpu")
    assert record["split"] and "part" in snapshot
    plain = bool(group.phase.phase["plain"])
    out = {}
    for branch in group.branches:
        straight = train(next(t for t in trials if t.key == branch.key), data)
        branched = train(branch, data, resume=branch_snapshot(snapshot, plain))
        out[branch.name] = (straight, branched)
    return group, out


KEYS = (N.TEST_ACCURACY, N.TRAIN_LOSS, "train_accuracy", N.PENALTY, N.FLOPS_REDUCTION, N.TOTAL_SPARSITY,
        "accuracy_after_pruning")


def test_a_criterions_branch_ends_bit_for_bit_where_the_trial_run_straight_through_ends(tmp_path):
    data = make_synthetic(SHAPE, n_train=96, n_test=48)
    trials = build_sweep({**STUDY, "methods": ["none", "taylor", "magnitude-l1"], "seeds": [0], "epochs": 3,
                          "sparse_epochs": 2, "target_flops_reduction": [0.5], "batch_size": 32}).trials()
    group, out = _straight_and_branched(trials, data, tmp_path)
    assert group.split == 2 and sorted(out) == ["magnitude-l1-flops0.5-s0", "none-s0", "taylor-flops0.5-s0"]
    for name, (straight, branched) in out.items():
        assert {k: branched.get(k) for k in KEYS} == {k: straight.get(k) for k in KEYS}, name
    assert out["taylor-flops0.5-s0"][0][N.FLOPS_REDUCTION] >= 0.5   # pruned: the branch did prune


def test_a_penalty_methods_branches_end_bit_for_bit_at_every_target(tmp_path):
    data = make_synthetic(SHAPE, n_train=96, n_test=48)
    trials = build_sweep({**STUDY, "methods": ["l1l2"], "lambdas": [0.01], "seeds": [1], "epochs": 3,
                          "sparse_epochs": 2, "batch_size": 32}).trials()
    group, out = _straight_and_branched(trials, data, tmp_path)
    assert not group.phase.phase["plain"] and len(out) == 2
    for name, (straight, branched) in out.items():
        assert {k: branched.get(k) for k in KEYS} == {k: straight.get(k) for k in KEYS}, name
    assert torch.isfinite(torch.tensor(out["l1l2-lam0.01-flops0.75-s1"][1][N.PENALTY]))


def test_an_iterative_trial_splits_at_its_first_pruning_step():
    trials = build_sweep({**STUDY, "protocol": "iterative", "prune_steps": 3, "methods": ["taylor", "random"],
                          "seeds": [0]}).trials()
    [group] = groups(trials)
    assert group.split == 1 and len(group.branches) == 4   # steps at the ends of epochs 1, 2 and 3


@pytest.mark.parametrize("methods", [["l1l2"], ["none", "l1l2", "ssl"]])
def test_trials_that_train_differently_before_the_pruning_step_share_nothing(methods):
    trials = build_sweep({**STUDY, "methods": methods, "seeds": [0], "target_flops_reduction": [0.5]}).trials()
    assert groups(trials) == [] and shared(trials)[0] == []


@pytest.mark.slow
def test_bench_run_shares_phases_resumes_after_a_kill_inside_one_and_ends_as_without_sharing(tmp_path):
    """A sweep with shared phases killed (SIGKILL to its process group) while a phase trains, then `bench
    resume`: every trial FINISHED once, each with exactly the final metrics of the same trial trained straight
    through (here, in this process), and fewer trial-epochs trained, as its sweep run records."""
    import os
    import signal

    from mlflow.tracking import MlflowClient

    from bench import session
    from helpers import bench, read_until, start_bench, wait_until_closed

    settings = {"protocol": "prune-to-target", "methods": ["none", "l1l2", "taylor"], "target_flops_reduction":
                [0.5], "epochs": 3, "sparse_epochs": 2, "dataset": "synthetic", "limit_train": 256,
                "limit_test": 64, "latency_time": 0, "device": "cpu"}
    argv = [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", ",".join(map(str, v))
                                                     if isinstance(v, list) else str(v))]
    run = start_bench(tmp_path, "run", *argv, "--experiment", "share", "--name", "s1", group=True)
    lines = read_until(run, lambda seen: any(" epoch   1/3" in line and "phase-" in line for line in seen))
    assert any(line.startswith("share  1 shared phase (1 to run) for 2 trials") and "7 trial-epochs instead of 9"
               in line for line in lines), lines   # none and taylor share one; l1l2 runs straight through
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    wait_until_closed(client, "share")   # the guardian marks the killed sweep's runs KILLED
    proc = bench(tmp_path, "resume", "s1", "--experiment", "share")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("share").experiment_id])
    trials = [r for r in runs if r.data.tags.get(N.KIND_TAG) == "trial"]
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)   # each trial once
    phases = [r for r in runs if r.data.tags.get(N.KIND_TAG) == "phase"]
    assert len(phases) == 1 and all(r.info.status == "FINISHED" for r in phases)
    sweep = next(r for r in runs if r.data.tags.get(N.KIND_TAG) == "sweep")
    assert (sweep.data.metrics["trial_epochs_trained"], sweep.data.metrics["trial_epochs_shared"]) == (7, 4)
    keys = (N.TEST_ACCURACY, N.TRAIN_LOSS, N.FLOPS_REDUCTION)
    recorded = {r.info.run_name: {k: r.data.metrics[k] for k in keys} for r in trials}
    _, data = session.prepare(build_sweep(settings), write=lambda line: None)
    for trial in build_sweep(settings).trials():   # straight through, as --no-share runs them
        straight = train(trial, data)
        assert recorded[trial.name] == {k: straight[k] for k in keys}, trial.name
        assert [m.step for m in client.get_metric_history(
            next(r.info.run_id for r in trials if r.info.run_name == trial.name), N.TEST_ACCURACY)] == [1, 2, 3]


def test_no_share_plans_no_phase_and_runs_every_trial_straight_through():
    from bench.phases import first

    sweep = build_sweep({**STUDY, "share": False})
    launched: list = []
    todo, outcomes = first(sweep, sweep.trials(), {}, launched.append, lambda line: None)
    assert launched == [] and outcomes is None and all(t.shared is None for t in todo)
    sweep = build_sweep(STUDY)
    todo, outcomes = first(sweep, sweep.trials(), {}, lambda batch: launched.append(batch) or [], lambda line: None)
    assert [len(b) for b in launched] == [6] and sum(t.shared is not None for t in todo) == 27
