"""Protocols as one unit (bench/protocols/): the phase schedule a trial runs, ``--protocol iterative``'s steps
against hand-computed targets and its equivalence with prune-to-target at one step, the settings each protocol
takes and refuses, and a protocol registered by a plugin file."""
from __future__ import annotations

import re

import pytest
import torch

from bench import names as N
from bench.config import ConfigError
from bench.config_layers import build_sweep
from bench.data import make_synthetic
from bench.protocols import FINETUNE, SPARSE, TRAIN, Plan, Step, get_protocol, list_protocols, owners
from bench.trainer import train

SHAPE = (1, 28, 28)
TIMED = ("epoch_time_s", "steps_time_s", "method_hook_time_s", "zeroing_metrics_time_s")


def _trials(method="l1l2", **settings):
    return build_sweep({"methods": [method], "epochs": 6, "sparse_epochs": 4, "dataset": "synthetic",
                        "device": "cpu", "batch_size": 32, "protocol": "iterative",
                        "target_flops_reduction": (0.6,), **settings}).trials()


def _rows(trial, n_train=128):
    torch.set_num_threads(1)
    rows: dict[int, dict] = {}
    train(trial, make_synthetic(SHAPE, n_train=n_train, n_test=64),
          report=lambda e, m: rows.__setitem__(e, {k: v for k, v in m.items() if k not in TIMED}))
    return rows


def test_a_plan_gives_each_epoch_its_phase_and_its_steps():
    plan = Plan(((1, SPARSE), (5, FINETUNE)), (Step(2, 0.5), Step(4)), defer_pruning=True)
    assert [plan.phase(e) for e in (1, 4, 5, 6)] == [(1, SPARSE), (1, SPARSE), (5, FINETUNE), (5, FINETUNE)]
    assert plan.steps_at(2) == [Step(2, 0.5)] and plan.steps_at(3) == [] and plan.steps_at(4) == [Step(4, 1.0)]
    assert Plan().phase(7) == (1, TRAIN) and TRAIN.penalty and TRAIN.removal and not FINETUNE.hooks
    trial = _trials(prune_steps=4)[0]
    iterative = get_protocol("iterative").plan(trial)
    assert iterative.steps == (Step(1, 0.25), Step(2, 0.5), Step(3, 0.75), Step(4, 1.0))
    assert get_protocol("iterative").plan(_trials(prune_steps=3, sparse_epochs=5, epochs=7)[0]).steps == (
        Step(2, 1 / 3), Step(4, 2 / 3), Step(5, 1.0))   # ceil(k * 5 / 3)
    assert get_protocol("prune-to-target").plan(_trials(protocol="prune-to-target")[0]).steps == (Step(4),)


def test_iterative_steps_meet_rising_fractions_of_the_target_and_the_last_meets_it():
    """4 steps over 4 sparse epochs to 60 % fewer FLOPs: each epoch logs its step's target (k/4 of 0.6) and what
    it reached (at least that, and the FLOPs reduction of that epoch); the network keeps what each step
    removed; the fine-tuning epochs remove nothing more; every unit within the layer bound over all steps."""
    rows = _rows(_trials(prune_steps=4, max_layer_ratio=0.8)[0])
    assert [rows[e][N.PRUNE_STEP_TARGET] for e in (1, 2, 3, 4)] == pytest.approx([0.15, 0.3, 0.45, 0.6])
    for e in (1, 2, 3, 4):
        assert rows[e][N.PRUNE_STEP_ACHIEVED] >= rows[e][N.PRUNE_STEP_TARGET] - 1e-12
        assert rows[e][N.FLOPS_REDUCTION] == pytest.approx(rows[e][N.PRUNE_STEP_ACHIEVED])
        assert "accuracy_before_pruning" in rows[e] and "accuracy_after_pruning" in rows[e]
    reductions = [rows[e][N.FLOPS_REDUCTION] for e in range(1, 7)]
    assert reductions == sorted(reductions) and reductions[4] == reductions[3] == reductions[5]
    assert N.PRUNE_STEP_TARGET not in rows[5] and N.PRUNE_STEP_TARGET not in rows[6]
    alive = N.filters_by_layer(rows[6])
    assert alive["conv1"] >= 20 - int(0.8 * 20) and alive["conv2"] >= 50 - int(0.8 * 50)


def test_iterative_at_one_step_is_prune_to_target():
    """One step at the end of the sparse epochs: the same phases and the same step, so the same numbers."""
    one = _rows(_trials("taylor", prune_steps=1, epochs=4, sparse_epochs=2)[0])
    shot = _rows(_trials("taylor", protocol="prune-to-target", epochs=4, sparse_epochs=2)[0])
    assert one == shot


@pytest.mark.parametrize("settings,message", [
    ({"prune_steps": 0}, "prune steps must be >= 1"),
    ({"prune_steps": 5}, "--prune-steps 5: at most one step per sparse epoch, and there are 4 (--sparse-epochs)"),
    ({"prune_steps": 2, "protocol": "prune-to-target"}, "--prune-steps applies to --protocol iterative (this "
                                                        "sweep's protocol is prune-to-target)"),
    ({"prune_steps": 2, "protocol": "regularize", "target_flops_reduction": (), "sparse_epochs": None},
     "--prune-steps applies to --protocol iterative"),
    ({"controls": ("scratch",), "protocol": "regularize", "target_flops_reduction": (),
      "sparse_epochs": None}, "--controls applies to --protocol prune-to-target or iterative"),
    ({"protocol": "one-shot"}, "unknown protocol 'one-shot'; protocols: regularize, prune-to-target, iterative"),
    ({"max_probes": 3}, "--max-probes belongs to the regularize protocol's target search; iterative runs"),
])
def test_a_protocols_settings_are_refused_under_the_others(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _trials(**settings)


def test_every_protocol_setting_names_its_owners_and_list_shows_them(capsys):
    assert list_protocols()[:3] == ["regularize", "prune-to-target", "iterative"]
    own = owners()
    assert own["prune_steps"] == "iterative" and own["sparse_epochs"] == "prune-to-target, iterative"
    assert own["max_probes"] == "regularize" and "epochs" not in own
    from bench.console import print_registry
    print_registry()
    out = capsys.readouterr().out
    assert "protocols (bench run --protocol NAME" in out
    assert "  iterative        [--sparse-epochs, --max-layer-ratio, --finetune, --controls, --scratch-b-max-factor, "\
           "--prune-steps]" in out


@pytest.mark.slow
def test_a_protocol_registered_by_a_plugin_file_runs_through_bench_run(tmp_path):
    """tests/protocol_plugin.py registers ``dense-then-prune`` without touching bench/: `bench run` takes it, its
    trials prune to the target at the end of the sparse epochs and finish, recorded under that protocol, and
    l1l2's first epoch trains without its penalty, as the plugin's plan says. (A
    subprocess, as a user runs it: a Ray started inside pytest's process would outlive the test.)"""
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from helpers import bench

    plugin = str(Path(__file__).with_name("protocol_plugin.py"))
    proc = bench(tmp_path, "run", "--plugin", plugin, "--protocol", "dense-then-prune", "--methods", "l1l2,taylor",
                 "--target-flops-reduction", "0.5", "--epochs", "2", "--sparse-epochs", "1", "--dataset", "synthetic",
                 "--limit-train", "128", "--limit-test", "64", "--device", "cpu", "--latency-time", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "dense-then-prune flops 0.5: 2 trials" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lenet5-synthetic").experiment_id])
    trials = {r.info.run_name: r for r in runs if r.data.tags.get("bench.kind") == "trial"}
    assert sorted(trials) == ["l1l2-lam0.5-flops0.5-s0", "taylor-flops0.5-s0"]
    for run in trials.values():
        assert run.info.status == "FINISHED" and run.data.params["protocol"] == "dense-then-prune"
        assert run.data.metrics[N.FLOPS_REDUCTION] >= 0.5
    # the plan's dense phase: l1l2 trains without its penalty, so its first epoch is taylor's (same seed, batches)
    first = {name: [m.value for m in client.get_metric_history(run.info.run_id, N.TRAIN_LOSS) if m.step == 1]
             for name, run in trials.items()}
    assert first["l1l2-lam0.5-flops0.5-s0"] == first["taylor-flops0.5-s0"]
    target = client.get_metric_history(trials["taylor-flops0.5-s0"].info.run_id, N.PRUNE_STEP_TARGET)
    assert [(m.step, m.value) for m in target] == [(1, 0.5)]


def test_rewinding_replays_the_schedule_from_its_start_over_the_fine_tuning_epochs():
    """Cosine over 4 epochs, 2 sparse: standard fine-tunes at the rates of epochs 3 and 4, rewind at those of
    epochs 1 and 2 (Renda et al.); the sparse epochs are the same either way."""
    common = {"epochs": 4, "sparse_epochs": 2, "schedule": "cosine", "protocol": "prune-to-target"}
    standard = _rows(_trials("magnitude-l1", **common)[0], n_train=64)
    rewound = _rows(_trials("magnitude-l1", **common, finetune="rewind")[0], n_train=64)
    lrs = [standard[e][N.LR] for e in (1, 2, 3, 4)]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[3]
    assert [rewound[e][N.LR] for e in (1, 2, 3, 4)] == [lrs[0], lrs[1], lrs[0], lrs[1]]
    assert rewound[2] == standard[2] and rewound[4][N.TRAIN_LOSS] != standard[4][N.TRAIN_LOSS]
    with pytest.raises(ConfigError, match=re.escape("--finetune applies to --protocol prune-to-target or iterative")):
        _trials(protocol="regularize", finetune="rewind", sparse_epochs=None, target_flops_reduction=())


def test_scratch_b_trains_the_pruned_widths_for_the_same_compute_capped():
    """Scratch-B (Liu et al.): round(epochs x dense FLOPs / pruned FLOPs) epochs, the factor capped at
    --scratch-b-max-factor (the cap recorded when it bit); scratch-e is scratch under its first name (the same
    trial, the same key)."""
    from bench.session import control_trial

    sweep = build_sweep({"methods": ["l1l2"], "epochs": 6, "dataset": "synthetic", "protocol": "prune-to-target",
                         "target_flops_reduction": (0.6,), "controls": ("scratch-e", "scratch-b")})
    source, widths = sweep.trials()[0], {"conv1": 8, "conv2": 20}
    b = control_trial(sweep, source, widths, "scratch-b", 0.6)   # 1 / 0.4 = 2.5x, capped at 2
    assert b.train.epochs == 12 and b.control["capped"] and b.control["factor"] == 2.5
    assert b.name == f"scratch-b-{source.name}" and b.train.prune_epoch == 6
    assert control_trial(sweep, source, widths, "scratch-b", 0.25).train.epochs == 8   # round(6 x 4/3)
    wide = build_sweep({"methods": ["l1l2"], "epochs": 6, "dataset": "synthetic", "protocol": "prune-to-target",
                        "target_flops_reduction": (0.6,), "controls": ("scratch-b",), "scratch_b_max_factor": 10})
    assert control_trial(wide, source, widths, "scratch-b", 0.6).train.epochs == 15
    e, old = control_trial(sweep, source, widths, "scratch-e"), control_trial(sweep, source, widths, "scratch")
    assert e.key == old.key and e.train.epochs == 6 and e.name == f"scratch-{source.name}" and b.key != e.key


def test_with_a_primary_method_controls_are_built_for_its_trials_only(tmp_path):
    """--primary l1l2 --controls scratch: the report compares l1l2 with its own scratch control only, so only l1l2's
    finished trials get one (without --primary, every finished pruned trial does); widths read from kept_groups."""
    from bench.outcomes import TrialOutcome
    from bench.session import control_trials
    from bench.tracking import Store
    from tests.helpers import empty_store

    store = Store(empty_store(tmp_path))
    run_id, _ = store.start_sweep_run(store.prepare_experiment("c"), "s", {}, {}, "k")
    store.log_json_artifact(run_id, N.KEPT_GROUPS, {"conv1": [0, 1, 2], "conv2": [0, 4]})
    settings = {"methods": ["l1l2", "random"], "epochs": 4, "dataset": "synthetic", "protocol": "prune-to-target",
                "target_flops_reduction": (0.5,), "controls": ("scratch",)}
    for primary, expected in ((None, ["l1l2", "random"]), ("l1l2", ["l1l2"])):
        sweep = build_sweep({**settings, "primary": primary})
        outcomes = [TrialOutcome(t.name, "FINISHED", {N.RUN_ID_KEY: run_id, N.FLOPS_REDUCTION: 0.5}, trial=t)
                    for t in sweep.trials() if t.target is not None]
        controls = control_trials(sweep, outcomes, store)
        assert [c.control["method"] for c in controls] == expected
        assert all(c.control["widths"] == {"conv1": 3, "conv2": 2} and c.method == "none" for c in controls)


@pytest.mark.parametrize("settings,message", [
    ({"controls": ("scratch", "scratch-e")}, "--controls scratch,scratch-e names a control twice"),
    ({"controls": ("scratch-c",)}, "unknown control 'scratch-c'; controls: scratch-e, scratch-b, scratch"),
    ({"controls": ("scratch-b",), "protocol": "regularize", "target_flops_reduction": (), "sparse_epochs": None},
     "--controls applies to --protocol prune-to-target or iterative"),
    ({"scratch_b_max_factor": 0.5}, "scratch b max factor must be >= 1"),
])
def test_bad_controls_are_refused_before_any_work(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _trials(**settings)


def test_a_study_over_protocols_pairs_every_variant_and_keeps_each_protocols_keys():
    """--protocol prune-to-target,iterative --finetune standard,rewind: one trial per (protocol, fine-tuning,
    method, target, seed), names of their own, the dense reference once per seed; the prune-to-target
    trials have the keys of a sweep of that protocol alone (iterative's --prune-steps left out of them)."""
    axis = _trials("taylor", protocol="prune-to-target,iterative", finetune="standard,rewind", prune_steps=2,
                   seeds=(0, 1), methods=["none", "taylor"])
    names = [t.name for t in axis]
    assert len(names) == len(set(names)) == 2 + 4 * 2
    assert {"taylor-flops0.6-s0", "taylor-flops0.6-rw-s1", "taylor-flops0.6-it2-s0", "taylor-flops0.6-it2-rw-s1",
            "none-s0", "none-s1"} <= set(names)
    alone = _trials("taylor", protocol="prune-to-target", seeds=(0, 1), methods=["none", "taylor"])
    assert [t.key for t in alone] == [t.key for t in axis if t.train.protocol == "prune-to-target"
                                      and t.train.finetune == "standard"]
    assert all(t.train.prune_steps is None for t in axis if t.train.protocol == "prune-to-target")


@pytest.mark.parametrize("settings,message", [
    ({"protocol": "regularize,prune-to-target"}, "a study over protocols compares protocols that prune to a target"),
    ({"protocol": "prune-to-target,prune-to-target"}, "--protocol prune-to-target,prune-to-target lists a value twice"),
    ({"finetune": "standard,rewnd"}, "--finetune must be one of standard, rewind, got 'rewnd'"),
])
def test_a_bad_study_axis_is_refused(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _trials(**settings)


def test_the_protocol_comparison_pairs_each_variant_with_the_first_and_says_what_matters_more():
    import pandas as pd

    from bench import report as R
    from bench.report.axis import protocol_comparison, what_matters

    acc = {("a", "p"): [0.90, 0.91, 0.92], ("a", "q"): [0.905, 0.915, 0.918], ("b", "p"): [0.80, 0.81, 0.82],
           ("b", "q"): [0.80, 0.812, 0.818]}
    rows = pd.DataFrame([{"sweep": "s", "trial": f"{m}-{v}-s{s}", "run_id": f"{m}{v}{s}", "status": "FINISHED",
                          "method": m, "seed": s, "target": "flops 0.5", "control": None, "variant": v,
                          "test_accuracy": a, "flops_reduction": 0.5} for (m, v), values in acc.items()
                         for s, a in enumerate(values)])
    results = R.Results("x", "sqlite:///x.db", [], rows, rows, ["conv1"], {"conv1": 20})
    [(label, table, text)] = protocol_comparison(results)
    assert label == "flops 0.5" and list(table.columns) == ["method", "p", "q", "q vs p"]
    assert table.iloc[0]["p"].startswith("91.00 [") and "pts" in table.iloc[0]["q vs p"]
    assert "of the 2 paired comparisons of a protocol against p" in text[0]
    # by hand: means a 91.00 / 91.27, b 81.00 / 81.00: within a protocol (10.00 + 10.27) / 2 = 10.13 points,
    # across protocols (0.27 + 0.00) / 2 = 0.13
    assert "span 10.13 points within a protocol" in text[1] and "span 0.13 points across protocols" in text[1]
    assert "the criterion matters more" in text[1]
    same = {k: dict(enumerate(v)) for k, v in acc.items()}
    assert "not answered" in what_matters({k: {0: v[0]} for k, v in same.items()}, ["a", "b"], ["p", "q"])


def test_an_iterative_trial_continued_between_its_steps_ends_exactly_as_an_uninterrupted_one():
    """Checkpoints after step 1 and after step 2 of 4: the continued trial takes the remaining steps at the same
    epochs and ends with the same numbers (the masks, the phase and the steps come from the snapshot and the
    plan)."""
    import io

    torch.set_num_threads(1)
    trial = _trials("l1l2", prune_steps=4, epochs=5)[0]
    data = make_synthetic(SHAPE, n_train=128, n_test=64)
    whole: dict[int, dict] = {}
    snapshots: dict[int, dict] = {}

    def keep(epoch, snap):
        buf = io.BytesIO()
        torch.save(snap, buf)
        buf.seek(0)
        snapshots[epoch] = torch.load(buf, weights_only=True)
    train(trial, data, report=lambda e, m: whole.__setitem__(e, {k: v for k, v in m.items() if k not in TIMED}),
          keep=keep)
    for epoch in (1, 2):
        again: dict[int, dict] = {}
        train(trial, data, report=lambda e, m: again.__setitem__(e, {k: v for k, v in m.items() if k not in TIMED}),
              resume=snapshots[epoch])
        assert again == {e: m for e, m in whole.items() if e > epoch}, epoch
