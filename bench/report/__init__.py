"""The trade-off report: which method removes the most filters for the least accuracy, and where.

``bench report`` reads what the sweeps of one experiment recorded in MLflow and writes, in
``reports/<experiment>/`` (or ``--out``):

- ``index.html``: self-contained (figures embedded as data URIs, styles inline; opens offline);
- ``report.md``: the same tables, with the figures beside it as PNG files;
- ``results.csv``: one row per trial and epoch, every metric the trial logged (the compact model's
  measured parameters, FLOPs and latency on its last epoch's row);
- the figures as PNG: accuracy against filter sparsity and against FLOPs (final epochs, seed spread,
  Pareto fronts), trajectories over epochs in that plane, task loss and penalty over epochs (Berthelier
  et al. Fig. 4), the learned first-layer filters (Fig. 5).

It also attaches the files it wrote (nothing else the folder holds) to each reported sweep's MLflow parent
run (artifact path ``report/``).

Which run stands for a trial: a trial (one method, swept value and seed; MLflow tag ``bench.trial_key``)
may have several runs when it was retried or resumed. Its earliest FINISHED run stands for it; a trial
with no finished run is listed with its last attempt's status and error.

This package reads runs through bench/tracking/ and draws with pandas and seaborn; it never imports torch
or ray. Its modules: ``load`` (the store as tables), ``analysis`` (fronts, tests, tables), ``figures``, ``render``
(the files). Method descriptions (paper, formula) come from the registry, handed in by the caller.
"""
from __future__ import annotations

from .load import ID_COLUMNS, MethodInfo, ReportError, Results, TARGETS, TOLERANCES, choose_experiment, choose_primary, read_store  # noqa: F401
from .analysis import ALPHA, at_sparsity, baseline_accuracy, best_sparse_trial, best_table, best_within, compare, config_table, equal_sparsity, layer_table, method_table, notes, pareto_front, problem_table, quoted_table, settings  # noqa: F401
from .figures import fig_equal_sparsity, fig_filters, fig_losses, fig_tradeoff, fig_trajectories, palette  # noqa: F401
from .render import FIGURES, Section, build_report, markdown_table  # noqa: F401
from .analysis import dense_test, front_at, latency_table, training_noise  # noqa: F401
from .figures import informative_range  # noqa: F401
from .render import _sections, vector  # noqa: F401  (tests build the sections alone)
