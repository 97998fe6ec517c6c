"""`bench perf` on a tiny workload: every number it promises is there and sane (speed targets are met in its
own output on a real run, never asserted here)."""
from __future__ import annotations

import json

import pytest
import torch

from bench import perf
from helpers import bench
from methods import get_method, list_methods

pytestmark = pytest.mark.slow   # it trains every method for an epoch, and runs a subprocess


def test_perf_reports_every_ratio_for_every_method():
    tiny = [perf.Workload("lenet5", "synthetic", (1, 28, 28), 256, 128)]
    lines: list[str] = []
    out = perf.run_perf(device="cpu", log=lines.append, only=tiny, matmul_n=512)
    for key in ("reference_ratio", "compute_limit_ratio", "zeroing_metrics_fraction", "flops_utilization",
                "peak_rss_mb", "device"):
        assert key in out, key
    assert out["device"] == "cpu" and out["peak_rss_mb"] > out["dataset_mb"] > 0
    penalised = [m for m in list_methods() if "regularize" in get_method(m).protocols]
    assert sorted(out["penalty_overhead"]) == penalised and out["penalty_overhead"]["none"] == 1.0
    w = out["workloads"]["lenet5"]
    # each overhead is the method's step time over its paired none epoch's, both measured (and positive)
    for method, steps in w["penalty_step_s"].items():
        assert steps["method"] > 0 and steps["none"] > 0
        assert w["penalty_overhead"][method] == pytest.approx(steps["method"] / steps["none"])
    assert set(w["penalty_step_s"]) == set(penalised) - {"none"}
    assert out["penalty_overhead"] == w["penalty_overhead"]   # one workload: the worst case is its own
    assert w["reference_ratio"] == pytest.approx(w["trainer_images_per_s"] / w["reference_images_per_s"])
    assert w["compute_limit_ratio"] == pytest.approx(w["trainer_images_per_s"] / w["compute_limit_images_per_s"])
    # alternating rounds: each round's ratio is printed as a range; the best-over-best ratio is not below them all
    rounds = w["compute_limit_ratio_rounds"]
    assert len(rounds) == perf.PERF_ROUNDS and all(r > 0 for r in rounds)
    assert w["compute_limit_ratio"] >= min(rounds) * (1 - 1e-9)
    assert any(f"(rounds {min(rounds):.2f}-{max(rounds):.2f})" in line for line in lines)
    assert 0 <= w["zeroing_metrics_fraction"] < 1
    # training FLOPs per image: forward (conv and linear layers, FlopCounterMode's 2 per multiply-add) and a
    # backward pass that costs twice the forward, except for conv1's input gradient, which is not computed
    forward = 2 * (20 * 25 * 24 * 24 + 50 * 20 * 25 * 8 * 8 + 500 * 800 + 10 * 500)
    conv1_input_grad = 2 * 20 * 25 * 24 * 24
    assert w["train_flops_per_image"] == 3 * forward - conv1_input_grad
    assert any("trainer / reference" in line for line in lines)
    paths = out["data_paths"]
    for model in ("resnet20", "lenet5"):
        d = paths[model]
        assert d["stream_ratio"] == pytest.approx(d["stream_images_per_s"] / d["memory_images_per_s"])
        assert d["loader_images_per_s"] > 0 and d["images"] > 0
    assert 0 < paths["resnet20"]["crop_flip_fraction"] < 1
    assert any("stream / memory" in line for line in lines)


def test_perf_json_on_a_missing_device_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = bench(tmp_path, "perf", "--json", "--device", "cuda", timeout=120)
    assert out.returncode == 2 and "CUDA is not available" in out.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.stdout or "x")
