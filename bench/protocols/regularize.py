"""``--protocol regularize`` (the default): each method trains with its penalty and its own zeroing rule or
pruning step over every epoch; its strengths are swept on a grid, or searched per seed for the ``--target-*``
values (bench/targets.py)."""
from __future__ import annotations

from typing import Any

from .base import Protocol, check
from .registry import get_protocol, list_protocols, register_protocol


@register_protocol
class Regularize(Protocol):
    name = "regularize"
    description = ("each method's penalty with its own zeroing or pruning over every epoch; its strengths swept "
                   "on a grid, or searched per seed for the --target-* values (a target search)")
    settings = ("zeroing", "ratios", "target_tolerance", "max_probes", "stop_overshoots")
    accepts = ("regularize",)

    def check_sweep(self, sweep: Any) -> None:
        from methods import get_method  # lazy: keeps bench --help, the report, import bench.api free of torch

        for name in sweep.methods:
            cls = get_method(name)
            others = [p for p in list_protocols() if get_protocol(p).runs(cls)]
            check(self.runs(cls), f"method {name!r} ranks groups for one pruning step and adds nothing to training: "
                  f"run it with --protocol {' or '.join(others)} and a --target-* value")
        check(not sweep.target_values or any(get_method(m).sweep_axis for m in sweep.methods),
              f"a target search needs a method with a strength to search (lam or ratio), and --methods "
              f"{','.join(sweep.methods)} names none ('none' is the baseline): add one, e.g. --methods none,l1l2")
