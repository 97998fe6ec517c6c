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
