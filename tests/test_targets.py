"""The strength search of an equal-sparsity target (bench/targets.py) on methods whose final sparsity is a
known function of their strength: every probe's result comes from that function."""
from __future__ import annotations

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
