"""MLflow records: the only package that imports mlflow (bench/tracking/store.py: the store; runs.py: a
trial's run while it trains). What a sweep and a trial record is assembled in bench/recording.py.

Layout of what a sweep writes:
- one experiment (``--experiment``), created once by the driver before any trial starts (concurrent first
  creation breaks sqlite stores);
- one parent run per sweep (tag ``bench.kind=sweep``) with the sweep's settings as params and the full
  sweep config as ``sweep.json``;
- one nested child run per trial (tag ``mlflow.parentRunId``, ``bench.kind=trial``, ``bench.trial_key``)
  with short flat params (``method``, the swept parameter such as ``lam``, ``seed``, ``model``,
  ``dataset``, ``epochs``, ...), per-epoch metrics at ``step=epoch``, provenance tags (library versions,
  device), the resolved trial config as ``config.json``, the dataset as an MLflow dataset input (name,
  content digest, source, split sizes) and, once finished, the compact model as an MLflow Model (the
  experiment's logged models; :meth:`TrialRun.log_model`);
- MLflow's own tags where MLflow has one: ``mlflow.source.git.commit``, ``mlflow.source.name``,
  ``mlflow.source.type``, ``mlflow.user`` on every run, ``mlflow.note.content`` (the command) on the sweep's
  run, and ``mlflow.experimentKind = custom_model_development`` on the experiment (MLflow 3's UI then opens it
  on its runs, not on the GenAI overview).
"""
from __future__ import annotations

from .runs import TrackingInfo, TrialRun, dataset_input, model_name
from .store import (RunRecord, Store, SweepRecord, TrackingError, check_sqlite_store, check_tracking_uri,
                    default_tracking_uri, normalize_uri, provenance, source_tags)

__all__ = ["RunRecord", "Store", "SweepRecord", "TrackingError", "TrackingInfo", "TrialRun", "check_sqlite_store",
           "check_tracking_uri", "dataset_input", "default_tracking_uri", "model_name", "normalize_uri",
           "provenance", "source_tags"]
