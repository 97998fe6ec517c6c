"""Names of the metrics every trial logs, shared by the trainer, tracking, the summary and the report.

Kept apart from ``metrics.py`` (which measures them with torch) so that the report, which reads them
back from MLflow, never imports torch.
"""
from __future__ import annotations

from typing import Mapping

TEST_ACCURACY = "test_accuracy"
TRAIN_LOSS = "train_loss"
PENALTY = "penalty"
TOTAL_SPARSITY = "total_sparsity"
PARAMS = "params"
FLOPS = "flops"
FILTERS_ALIVE = "filters_alive/{}"
SPARSITY = "sparsity/{}"

# Measured once per trial, on its final model (compact.measure), logged with the last epoch.
COMPACT_METRICS = ("compact_params", "compact_flops", "latency_ms_b1", "latency_ms_b64", "dense_latency_ms_b1",
                   "dense_latency_ms_b64", "speedup_b1", "speedup_b64")


def filters_by_layer(values: Mapping[str, float]) -> dict[str, int]:
    """The ``filters_alive/<layer>`` entries of a metrics mapping, as {layer: alive filters}."""
    prefix = FILTERS_ALIVE.format("")
    return {k[len(prefix):]: int(v) for k, v in values.items() if k.startswith(prefix)}
