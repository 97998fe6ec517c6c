"""Names of the metrics every trial logs, shared by the trainer, tracking, the summary and the report.

Kept apart from ``metrics.py`` (which measures them with torch) so that the report, which reads them
back from MLflow, never imports torch.
"""
from __future__ import annotations

from typing import Mapping

TEST_ACCURACY = "test_accuracy"
VAL_ACCURACY = "val_accuracy"          # on the examples --val-split holds out of the training split
TRAIN_LOSS = "train_loss"
PENALTY = "penalty"
LR = "lr"                             # the learning rate of the epoch (bench/recipe.py)
TOTAL_SPARSITY = "total_sparsity"
PARAMS = "params"
FLOPS = "flops"
PARAMS_REDUCTION = "params_reduction"   # 1 - params / the dense model's (what a --target-params-reduction reads)
FLOPS_REDUCTION = "flops_reduction"     # 1 - flops / the dense model's
PRUNE_STEP_TARGET = "prune_step_target"       # a pruning step's goal (its fraction of the trial's target), at its epoch
PRUNE_STEP_ACHIEVED = "prune_step_achieved"   # what the step's removal reached of that metric
FILTERS_ALIVE = "filters_alive/{}"
SPARSITY = "sparsity/{}"

# Measured once per trial, on its final model (compact.measure), logged with the last epoch.
COMPACT_METRICS = ("compact_params", "compact_flops", "compact_macs", "latency_ms_b1", "latency_ms_b64", "dense_latency_ms_b1",
                   "dense_latency_ms_b64", "speedup_b1", "speedup_b64", "gpu_latency_ms_b1", "gpu_latency_ms_b64",
                   "gpu_dense_latency_ms_b1", "gpu_dense_latency_ms_b64", "gpu_speedup_b1", "gpu_speedup_b64")


def filters_by_layer(values: Mapping[str, float]) -> dict[str, int]:
    """The ``filters_alive/<layer>`` entries of a metrics mapping, as {layer: alive filters}."""
    prefix = FILTERS_ALIVE.format("")
    return {k[len(prefix):]: int(v) for k, v in values.items() if k.startswith(prefix)}

def filters_line(values: Mapping[str, float], sep: str = " ", most: int = 8) -> str:
    """Filters alive per layer for a progress or summary line: every layer when there are at most ``most``;
    else the total and the layers that lost filters (the first five)."""
    alive = filters_by_layer(values)
    if len(alive) <= most:
        return " ".join(f"{layer}{sep}{n}" for layer, n in alive.items())
    thinned = [layer for layer in alive if values.get(SPARSITY.format(layer), 0) > 0]
    shown = " ".join(f"{layer}{sep}{alive[layer]}" for layer in thinned[:5])
    more = f" and {len(thinned) - 5} more" if len(thinned) > 5 else ""
    return (f"{sum(alive.values())} in {len(alive)} layers; thinned: {shown}{more}" if thinned
            else f"{sum(alive.values())} in {len(alive)} layers, none removed")


# Keys a trial reports to Ray Tune beside its metrics (the sweep's summary reads them back).
RUN_ID_KEY = "mlflow_run_id"
TARGETS_ARTIFACT = "targets.json"    # a target search's records, on the sweep's run (bench/targets.py)
LATENCY_ARTIFACT = "latency.json"   # bench report --latency: compact against dense after the sweep (bench/latency.py)
TRIAL_KEY = "trial_key"
PHASE_SPLIT = "phase_split"          # a shared phase's last result: the epoch S it ended inside (bench/phases.py)

# MLflow tags of bench's runs (bench/tracking/ writes them; the report and the benchmarks read them).
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "bench.kind"               # "sweep" or "trial"
TRIAL_KEY_TAG = "bench.trial_key"
SWEEP_KEY_TAG = "bench.sweep_key"
ERROR_TAG = "bench.error"
RESUMED_TAG = "bench.resumed"
GROWN_TAG = "bench.grown"            # a sweep grown by seeds, methods, targets or controls: what each growth added
OVERSHOOT_TAG = "bench.overshoot"     # a target search's probe stopped early: past every target (why, at which epoch)
SHARED_TAG = "bench.shared_phase"     # a branch's run: the epochs it took from its shared phase's run
CONTINUED_TAG = "bench.continued"     # a trial run continued from a checkpoint: "from epoch N"
FILTERS_REMOVED_TAG = "bench.filters_removed"
MODEL_ERROR_TAG = "bench.model_error"  # why a finished trial's compact model is not an MLflow Model
PROVENANCE_PREFIX = "bench."          # bench.torch, bench.python, bench.host, bench.device, ...
GIT_COMMIT_TAG = "mlflow.source.git.commit"   # the project's commit (sweeps before it: bench.git_commit)
USER_TAG, SOURCE_NAME_TAG, SOURCE_TYPE_TAG = "mlflow.user", "mlflow.source.name", "mlflow.source.type"
NOTE_TAG = "mlflow.note.content"      # the command that made a sweep: its run's description in the UI
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"   # on the experiment: "custom_model_development" (MLflow 3's UI)

# Artifacts.
SWEEP_CONFIG = "sweep.json"           # a sweep's config, on its parent run
TRIAL_CONFIG = "config.json"          # a trial's resolved config, on its run
COMPACT_MODEL = "compact_model.pt"    # a finished trial's compact model (compact.save_compact)
COMPACT_PROGRAM = "compact_model.pt2"  # the same as a torch.export program, for models not rebuilt from widths
KEPT_GROUPS = "kept_groups.json"   # a finished trial's alive groups by unit (the report's stability of the choice)
FIRST_FILTERS = "first_conv_filters.npy"  # a finished trial's first conv weights (compact.save_first_filters)
REPORT_FOLDER = "report"              # bench report's output, attached to each sweep's run
