"""The strength search of an equal-sparsity target (bench/targets.py) on methods whose final sparsity is a
known function of their strength: every probe's result comes from that function."""
from __future__ import annotations

import dataclasses

import math

import pytest

from bench import names as N
from bench.targets import Search, Target, parse_targets


def run(search: Search, sparsity, limit: int = 50, fail_above: float | None = None) -> list[float]:
    """Drive ``search`` to the end with ``sparsity(value)`` as every probe's outcome, one probe at a time."""
    asked = []
    for _ in range(limit):
        value = search.propose()
        if value is None:
            assert search.finished
            break
        asked.append(value)
        if fail_above is not None and value > fail_above:
            search.record(value, None, failed=True)
        else:
            s = sparsity(value)
            search.record(value, {N.TOTAL_SPARSITY: s, N.FLOPS_REDUCTION: s ** 2, N.TEST_ACCURACY: 1 - s / 2},
                          run_id=f"run-{len(asked)}")
    return asked


def monotone(c: float):
    return lambda lam: lam / (lam + c)   # 50 % at lam = c


@pytest.mark.parametrize("c", [0.2, 3.0, 300.0, 0.0007])   # inside the grid, past it, far past it, far below it
def test_a_monotone_method_reaches_every_target_within_tolerance_in_at_most_5_probes_each(c):
    targets = parse_targets({"sparsity": [0.5, 0.8]})
    search = Search("mono", 0, "lam", (0.05, 0.2, 0.5), targets, tolerance=0.02, max_probes=12)
    asked = run(search, monotone(c))
    results = search.results()
    assert [r["status"] for r in results] == ["reached", "reached"]
    for r in results:
        assert abs(r["achieved"] - r["target"]) <= 0.02
        assert abs(monotone(c)(r["value"]) - r["achieved"]) < 1e-12 and r["run_id"].startswith("run-")
    assert len(asked) <= 5 * len(targets), asked   # the probes are shared by the targets
    assert r["probes"] == len(asked)


def test_targets_share_probes_and_a_flops_target_reads_its_own_metric():
    targets = parse_targets({"sparsity": [0.5], "flops": [0.25]})   # flops reduction = sparsity ** 2 here
    search = Search("mono", 0, "lam", (0.05, 0.2, 0.5), targets, max_probes=10)
    run(search, monotone(0.2))
    sparsity, flops = search.results()
    assert sparsity["status"] == flops["status"] == "reached"
    assert flops["kind"] == "flops" and abs(flops["achieved"] - 0.25) <= 0.02
    assert abs(sparsity["value"] - flops["value"]) / sparsity["value"] < 0.2   # the same lambda, about


def test_a_non_monotone_method_is_unreachable_with_the_closest_point():
    # sparsity rises to 0.45 at lam 1, falls back, then rises again past 0.5 only where training collapses
    def bumpy(lam: float) -> float:
        return 0.45 * math.exp(-math.log(lam) ** 2) if lam < 30 else 1.0

    search = Search("bumpy", 0, "lam", (0.1, 1.0, 10.0), [Target("sparsity", 0.5)], max_probes=8)
    run(search, bumpy)
    (r,) = search.results()
    assert r["status"] == "unreachable" and r["achieved"] == pytest.approx(0.45, abs=0.02)
    assert r["value"] == pytest.approx(1.0) and "reason" in r


def test_a_curve_that_turns_down_is_not_chased_to_ever_stronger_penalties():
    # what l1 does on LeNet: sparsity rises to 0.67 near lam 0.2, then falls (conv1 collapses onto one filter)
    def turning(lam: float) -> float:
        return 0.67 * math.exp(-math.log(lam / 0.2) ** 2 / 2)

    search = Search("l1ish", 0, "lam", (0.02, 0.0632, 0.2), [Target("sparsity", 0.8)], max_probes=8)
    asked = run(search, turning)
    (r,) = search.results()
    assert r["status"] == "unreachable" and "not monotone: the sparsity peaks at 0.670 near lam 0.2" in r["reason"]
    assert max(asked) <= 2.0 and len(asked) <= 5, asked   # never x100 past the peak
    assert r["value"] == pytest.approx(0.2) and r["achieved"] == pytest.approx(0.67)


def test_the_search_does_not_step_to_a_grid_value_next_to_its_start():
    # ssl's grid: the start, its geometric middle 0.0095, lies next to the grid value 0.01
    search = Search("sslish", 0, "lam", (0.003, 0.01, 0.03), [Target("sparsity", 0.5)], max_probes=8)
    asked = run(search, monotone(1.0))
    assert asked[0] == pytest.approx(0.0094868, rel=1e-4) and asked[1] == 0.03, asked


def test_a_collapse_is_unreachable_once_the_bracket_is_narrow():
    step = lambda lam: 0.1 if lam < 4.0 else 0.97   # noqa: E731 - jumps over every target in between
    search = Search("cliff", 0, "lam", (0.5, 1.0, 2.0), [Target("sparsity", 0.5)], max_probes=30)
    asked = run(search, step)
    (r,) = search.results()
    assert r["status"] == "unreachable" and "collapses" in r["reason"]
    assert len(asked) < 30


def test_diverged_probes_are_overshoots_and_the_search_goes_on():
    search = Search("fragile", 0, "lam", (0.05, 0.2, 0.5), [Target("sparsity", 0.8)], max_probes=12)
    asked = run(search, monotone(3.0), fail_above=20.0)   # 80 % at lam 12; NaN loss past 20
    (r,) = search.results()
    assert r["status"] == "reached" and r["value"] < 20 and any(v > 20 for v in asked)


def test_ratio_methods_start_at_the_target_and_spent_budgets_are_reported():
    search = Search("nispish", 0, "ratio", (0.5, 0.8), parse_targets({"sparsity": [0.5, 0.8]}), max_probes=8)
    asked = run(search, lambda p: round(p * 20) / 20)   # the ratio, rounded to whole filters
    assert asked[:2] == [0.5, 0.8] and [r["status"] for r in search.results()] == ["reached", "reached"]

    tight = Search("mono", 0, "lam", (0.05,), [Target("sparsity", 0.5)], max_probes=2)
    run(tight, monotone(300.0))
    (r,) = tight.results()
    assert r["status"] == "unreachable" and r["probes"] == 2 and "--max-probes 2" in r["reason"]


def test_a_seed_starts_where_its_siblings_found_the_target():
    targets = [Target("sparsity", 0.5)]
    first = Search("mono", 0, "lam", (0.05, 0.2, 0.5), targets)
    run(first, monotone(40.0))
    second = Search("mono", 1, "lam", (0.05, 0.2, 0.5), targets, siblings=[first])
    asked = run(second, monotone(42.0))   # another seed: nearly the same curve
    assert asked[0] == pytest.approx(first.results()[0]["value"]) and len(asked) <= 2


def test_targets_must_be_fractions():
    with pytest.raises(ValueError, match=r"fraction removed in \(0, 1\), got 1.5"):
        parse_targets({"sparsity": [1.5]})


# -- the report's answer -----------------------------------------------------------------------------------

def _record(method, seed, acc, target=0.5, status="reached", achieved=None, kind="sparsity"):
    return {"method": method, "seed": seed, "target": target, "kind": kind, "value": 1.0,
            "achieved": target if achieved is None else achieved, "test_accuracy": acc, "probes": 3,
            "status": status, "run_id": f"{method}{seed}"}


def test_welchs_test_against_a_value_computed_by_hand():
    from bench.report import compare
    a, b = [0.90, 0.92, 0.91], [0.85, 0.88, 0.86]
    # by hand: means 0.91 and 0.86333, variances 1e-4 and 2.3333e-4, se = sqrt(1e-4/3 + 2.3333e-4/3) = 0.010541,
    # t = 0.046667 / 0.010541 = 4.4272, Welch df = se^4 / ((1e-4/3)^2/2 + (2.3333e-4/3)^2/2) = 3.4286
    beyond, text = compare(a, b)
    assert beyond and "t = 4.43" in text
    from scipy import stats
    p = stats.t.sf(4.4272, 3.4286)
    assert f"p = {p:.3f}" in text
    assert compare([0.9, 0.8], [0.85, 0.86])[0] is False                  # inside the noise
    assert compare([0.9, 0.9], [0.9, 0.9]) == (False, "no spread over seeds on either side")   # equal: a tie
    assert compare([0.91, 0.91], [0.9, 0.9])[0] is True
    assert compare([0.99], [0.5, 0.51])[0] is False                       # one seed: no noise estimate


def test_the_equal_sparsity_section_names_a_winner_only_beyond_noise():
    from tests.test_report import comparison_results
    from bench import report as R
    results = comparison_results()
    results.targets = ([_record("l1l2", s, a) for s, a in enumerate((0.90, 0.92, 0.91))]
                       + [_record("l1", s, a) for s, a in enumerate((0.85, 0.88, 0.86))]
                       + [_record("l1l2", s, a, target=0.8) for s, a in enumerate((0.80, 0.70, 0.75))]
                       + [_record("l1", s, a, target=0.8) for s, a in enumerate((0.74, 0.77))]
                       + [_record("l1", 2, 0.5, target=0.8, status="unreachable", achieved=0.6)])
    table, verdicts = R.equal_sparsity(results)
    rows = table.set_index("method")
    assert rows.loc["l1l2", "sparsity 50%"] == "91.00 +- 1.00 % (n = 3, achieved 50.0 %)"
    assert rows.loc["l1", "sparsity 80%"] == ("75.50 +- 2.12 % (n = 2, achieved 80.0 %); 1 seed(s) unreachable "
                                              "(closest 60.0 %)")
    assert rows.loc["none (no pruning)", "sparsity 50%"].startswith("90.00")
    assert verdicts[0].startswith("At 50% of filters removed, **`l1l2`** keeps the most accuracy, beyond seed noise")
    assert verdicts[1].startswith("At 80% of filters removed, tie within noise between `l1` and `l1l2`")
    sections = R._sections(results, {}, {})
    assert sections[1].title == "Accuracy at equal sparsity" and sections[1].table is not None


# -- a search rebuilt from its records continues where it stopped ----------------------------------------

def test_a_search_rebuilt_from_recorded_probes_asks_what_the_original_would():
    from bench.config_layers import build_sweep
    from bench.session import target_searches
    from bench.sweep import TrialOutcome

    sweep = build_sweep({"methods": ["l1l2"], "target_sparsity": [0.5, 0.8], "dataset": "synthetic",
                         "seeds": [0], "max_probes": 10})
    (live,) = sweep.searches()
    outcomes = []
    for _ in range(3):   # three probes, then the driver stops
        value = live.propose()
        metrics = {N.TOTAL_SPARSITY: monotone(30.0)(value), N.TEST_ACCURACY: 0.9, N.RUN_ID_KEY: f"r{value:g}"}
        live.record(value, metrics)
        trial = sweep.probe("l1l2", value, 0)
        outcomes.append(TrialOutcome(trial.name, "FINISHED", metrics, key=trial.key, trial=trial))
    (rebuilt,) = target_searches(sweep, outcomes)
    assert [p.value for p in rebuilt._done()] == [p.value for p in live._done()]
    assert rebuilt.propose() == pytest.approx(live.propose())
    assert sweep.probe("l1l2", outcomes[0].trial.swept_value, 0).key == outcomes[0].key


def test_a_search_stopped_before_it_settled_is_unfinished_not_unreachable():
    """An interrupted sweep's search (two probes, no bracket yet, probes left) records its targets as
    `unfinished`, with a reason that says how to continue; the same search driven to the end reaches them."""
    targets = parse_targets({"sparsity": [0.5]})
    search = Search("mono", 0, "lam", (0.05, 0.2, 0.5), targets, tolerance=0.02, max_probes=8)
    run(search, monotone(30.0), limit=2)
    (record,) = search.results()
    assert record["status"] == "unfinished" and "resuming the sweep continues it" in record["reason"]
    assert record["probes"] == 2 and record["achieved"] is not None
    run(search, monotone(30.0))
    assert [r["status"] for r in search.results()] == ["reached"]


def test_a_probe_past_every_target_stops_at_that_epoch_and_counts_as_an_overshoot():
    from bench.config_layers import build_sweep
    from bench.data import make_synthetic
    from bench.trainer import train

    sweep = build_sweep({"methods": ["l1l2"], "target_sparsity": (0.05, 0.1), "dataset": "synthetic", "epochs": 4,
                         "device": "cpu", "batch_size": 32, "target_tolerance": 0.02, "stop_overshoots": True})
    assert dataclasses.replace(sweep, stop_overshoots=False).probe("l1l2", 100.0, 0).stop_above is None   # opt-in
    probe = sweep.probe("l1l2", 100.0, 0)
    assert probe.stop_above == {"total_sparsity": pytest.approx(0.12)}
    assert probe.key == sweep.probe("l1l2", 100.0, 0).key == dataclasses.replace(probe, stop_above=None).key
    rows = {}
    last = train(probe, make_synthetic((1, 28, 28), n_train=256, n_test=64),
                 report=lambda e, m: rows.__setitem__(e, dict(m)))
    stopped = max(rows)
    assert stopped < 4 and rows[stopped]["total_sparsity"] > 0.12 and last == rows[stopped]
    assert all(rows[e]["total_sparsity"] <= 0.12 for e in rows if e < stopped)
    why = probe.overshoot({**last, "epoch": stopped})
    assert why.startswith("overshoot: total_sparsity") and f"at epoch {stopped} of 4" in why
    # the search takes its value as a lower bound: the upper end of a bracket, never a target reached nor the
    # closest point, interpolated at or above where its true value would put the next probe
    search = sweep.searches()[0]
    target = search.targets[1]   # 0.1
    search.probes = []
    search.record(1.0, {"total_sparsity": 0.02, "test_accuracy": 0.9})
    search.record(10.0, {"total_sparsity": 0.11, "test_accuracy": 0.9}, bound=True)   # stopped early
    assert search.reached(target) is None and search.closest(target).value == 1.0   # a bound reaches nothing
    lo, hi = search._bracket(target)
    assert (lo.value, hi.value) == (1.0, 10.0) and hi.bound
    # interpolated in log lambda with the bound: t = (0.1 - 0.02) / (0.11 - 0.02), kept in the middle 80 %
    assert search._next(target) == pytest.approx(math.exp(min(0.9, 0.08 / 0.09) * math.log(10.0)))
