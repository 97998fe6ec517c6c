"""A study over protocols (``--protocol prune-to-target,iterative``, ``--finetune standard,rewind``): per target,
each method under every protocol and fine-tuning against the first one, paired by seed and Holm-corrected
across the table, and which matters more, the criterion or the protocol. No torch."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .equal import (ALPHA, TEST, _cell, _fmt_ci, _seeds, _verdict, holm, mean_ci, paired, panels, power_sentence,
                    powered)
from .load import Results

RESAMPLES = 2000   # bootstrap resamples of the seeds for the spreads' intervals


def protocol_comparison(results: Results) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """Per (sweep, target) with several variants: (label, table, sentences). A row per method: its accuracy
    under each variant (mean [95 % CI]) and each variant against the first, paired by seed."""
    rows = results.protocol
    if rows.empty or "variant" not in rows:
        return []
    keys = panels(rows)
    out = []
    for sweep, target in dict.fromkeys((s, t) for s, t, v in keys if v is not None):
        variants = [v for s, t, v in keys if (s, t) == (sweep, target) and v is not None]
        here = rows[(rows["sweep"] == sweep) & (rows["target"] == target) & rows["control"].isna()]
        methods = [m for m in results.methods if (here["method"] == m).any()]
        acc = {(m, v): _seeds(here[(here["method"] == m) & (here["variant"].fillna("") == v)], TEST)
               for m in methods for v in variants}
        first = variants[0]
        comparisons = [(m, v, paired(acc[(m, v)], acc[(m, first)])) for m in methods for v in variants[1:]]
        adjusted = holm([r["p"] for *_, r in comparisons])
        powered([r for *_, r in comparisons], adjusted, results.detect)
        table = []
        for m in methods:
            row: dict[str, str] = {"method": m}
            for v in variants:
                row[v] = _fmt_ci(*mean_ci(list(acc[(m, v)].values())))
            for (cm, v, r), p in zip(comparisons, adjusted):
                if cm == m:
                    row[f"{v} vs {first}"] = _cell(r, p)
            table.append(row)
        verdicts = [_verdict(f"{m} under {v}", f"{m} under {first}", r, p)
                    for (m, v, r), p in zip(comparisons, adjusted) if not math.isnan(p) and p < ALPHA]
        label = f"{target}" + ("" if rows["sweep"].nunique() == 1 else f", sweep {sweep}")
        tested = sum(not math.isnan(p) for p in adjusted)
        said = ("; ".join(verdicts) + "." if verdicts else "no difference is beyond seed noise.") if tested else \
            "none could be tested (one seed, or the same difference on every seed)."
        power = power_sentence([r for *_, r in comparisons], results.detect)
        if tested and power:
            said = said.rstrip(".") + "; " + power + "."
        text = [f"At {label}: of the {len(comparisons)} paired comparisons of a protocol against {first}"
                + (f" ({tested} tested)" if 0 < tested < len(comparisons) else "")
                + f", after Holm's correction at {ALPHA:g}: {said}", what_matters(acc, methods, variants)]
        out.append((label, pd.DataFrame(table), text))
    return out


def what_matters(acc: Mapping[tuple[str, str], Mapping[int, float]], methods: list[str], variants: list[str],
                 resamples: int = RESAMPLES) -> str:
    """Which moves the accuracy more: the criterion (the range of the methods' mean accuracies within a
    protocol, averaged over protocols) or the protocol (the range of a method's mean accuracies over protocols,
    averaged over methods), each with a 95 % bootstrap interval over the seeds (resampled together, so every
    cell keeps its pairing), and the difference's."""
    seeds = sorted(set.intersection(*(set(acc[k]) for k in acc))) if acc else []
    if len(methods) < 2 or len(variants) < 2 or len(seeds) < 2:
        return ("Criterion or protocol: not answered here (it needs two methods, two protocols and two seeds "
                "common to every cell).")
    cube = np.array([[[acc[(m, v)][s] for s in seeds] for v in variants] for m in methods]) * 100

    def spreads(c: np.ndarray) -> tuple[float, float]:
        means = c.mean(axis=2)   # method x variant
        return float(np.ptp(means, axis=0).mean()), float(np.ptp(means, axis=1).mean())

    crit, prot = spreads(cube)
    rng = np.random.default_rng(0)
    boot = np.array([spreads(cube[:, :, rng.integers(0, len(seeds), len(seeds))]) for _ in range(resamples)])
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    d_lo, d_hi = np.percentile(boot[:, 0] - boot[:, 1], [2.5, 97.5])
    verdict = ("the criterion matters more" if d_lo > 0 else "the protocol matters more" if d_hi < 0 else
               f"neither is shown to matter more with {len(seeds)} seeds")
    return (f"Criterion or protocol: the methods' mean accuracies span {crit:.2f} points within a protocol "
            f"(95 % bootstrap CI [{lo[0]:.2f}, {hi[0]:.2f}]; the range across methods, averaged over the "
            f"{len(variants)} protocols) and a method's span {prot:.2f} points across protocols ([{lo[1]:.2f}, "
            f"{hi[1]:.2f}]; averaged over the {len(methods)} methods); the difference, {crit - prot:.2f} points "
            f"[{d_lo:.2f}, {d_hi:.2f}]: {verdict}. The intervals resample the {len(seeds)} seeds together "
            f"({RESAMPLES} resamples); a range grows with seed noise, so both spreads are biased upward alike.")
