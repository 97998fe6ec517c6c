"""Per-epoch trial checkpoints: a trial continued from an epoch's snapshot ends exactly where the same trial
run without a stop ends (every metric, train loss included), for every method: their own state, the masks,
the optimizer, the random streams of data order and augmentation."""
from __future__ import annotations

import io

import pytest
import torch

from bench import names as N
from bench.config import SweepConfig, TrainSettings
from bench.data import load_dataset
from bench.trainer import train
from methods import list_methods

from helpers import CRITERION, trained_methods

TIMED = ("epoch_time_s", "steps_time_s", "method_hook_time_s", "zeroing_metrics_time_s")


def _trial(method: str, augment: str = "none", **settings):
    protocol = settings.pop("protocol", None) or ("prune-to-target" if method == CRITERION else "regularize")
    targets = {"target_flops_reduction": (0.5,)} if protocol == "prune-to-target" else {}
    train_settings = TrainSettings(model="lenet5-bn", dataset="synthetic", epochs=3, limit_train=256,
                                   limit_test=128, device="cpu", augment=augment, batch_size=32, protocol=protocol,
                                   **settings)
    options = {"hgsr": {"samples": 2}, "nisp": {"samples": 16}}.get(method)   # their cost, not their logic
    return SweepConfig(methods=(method,), train=train_settings, options={method: options} if options else {},
                       **targets).trials()[-1]   # its strongest default


def _bytes(snapshot):
    """A snapshot as a checkpoint file holds it: written and read back by torch's safe loader (tensors and
    plain data only, as bench.checkpoints reads them)."""
    buf = io.BytesIO()
    torch.save(snapshot, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method,protocol", [(m, None) for m in trained_methods(list_methods())]
                         + [("l0sgl", "prune-to-target")])
def test_a_trial_continued_from_any_epoch_ends_exactly_as_an_uninterrupted_one(method, protocol):
    torch.set_num_threads(1)
    trial = _trial(method, augment="crop-flip", protocol=protocol)
    data = load_dataset("synthetic", limit_train=256, limit_test=128, input_shape=(1, 28, 28))
    whole: dict[int, dict] = {}
    snapshots: dict[int, dict] = {}
    last = train(trial, data, report=lambda e, m: whole.__setitem__(e, dict(m)),
                 keep=lambda e, snap: snapshots.__setitem__(e, _bytes(snap)))
    assert sorted(snapshots) == [1, 2]   # every epoch but the last
    for epoch in (1,):   # across NISP's and slimming's pruning (end of epoch 2) and l0sgl's U / W swap
        again: dict[int, dict] = {}
        out = train(trial, data, report=lambda e, m: again.__setitem__(e, dict(m)), resume=snapshots[epoch])
        assert sorted(again) == list(range(epoch + 1, 4))
        for e, metrics in again.items():
            want = {k: v for k, v in whole[e].items() if k not in TIMED}
            assert {k: v for k, v in metrics.items() if k not in TIMED} == want, (method, epoch, e)
        assert out[N.TRAIN_LOSS] == last[N.TRAIN_LOSS] and out[N.TEST_ACCURACY] == last[N.TEST_ACCURACY]


def _epochs(trial, data, **kwargs) -> dict[int, dict]:
    """Every reported epoch's metrics but the timings, by epoch."""
    rows: dict[int, dict] = {}
    train(trial, data, report=lambda e, m: rows.__setitem__(e, {k: v for k, v in m.items() if k not in TIMED}),
          **kwargs)
    return rows


def test_streamed_standard_augmentation_is_the_same_with_any_workers_and_after_a_restart():
    """The streaming path's per-image crops and flips (in the loader's workers) are seeded per batch from the
    trial seed and the epoch: 2 workers, no worker, and a trial continued from epoch 1 all give the same epochs."""
    torch.set_num_threads(1)
    data = load_dataset("synthetic", limit_train=256, limit_test=128, input_shape=(1, 28, 28), data_path="stream")
    snapshots: dict[int, dict] = {}
    whole = _epochs(_trial("l1l2", augment="standard", data_path="stream", loader_workers=2), data,
                    keep=lambda e, snap: snapshots.__setitem__(e, _bytes(snap)))
    assert _epochs(_trial("l1l2", augment="standard", data_path="stream", loader_workers=0), data) == whole
    again = _epochs(_trial("l1l2", augment="standard", data_path="stream", loader_workers=2), data,
                    resume=snapshots[1])
    assert sorted(again) == [2, 3] and again == {e: m for e, m in whole.items() if e > 1}
    plain = _epochs(_trial("l1l2", data_path="stream", loader_workers=0), data)   # the augmentation did act
    assert plain[1][N.TRAIN_LOSS] != whole[1][N.TRAIN_LOSS]


def test_a_method_keeps_its_own_state_through_a_checkpoint():
    from methods import get_method
    l0 = get_method("l0sgl")(lam=0.01, beta_every=1)
    l0.beta = 3.5
    l0._u = {"conv1": torch.ones(2, 2)}
    again = get_method("l0sgl")(lam=0.01)
    again.load_state_dict(_bytes(l0.state_dict()))
    assert again.beta == 3.5 and torch.equal(again._u["conv1"], torch.ones(2, 2)) and again._w == {}
    nisp = get_method("nisp")(ratio=0.5)
    nisp.pruned = True
    fresh = get_method("nisp")(ratio=0.5)
    fresh.load_state_dict(nisp.state_dict())
    assert fresh.pruned and get_method("l1l2")(lam=0.1).state_dict() == {}



class _RunsCode:
    """A pickle that, unpickled by an unsafe loader, creates a file (as a planted checkpoint would run code)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _state(epoch: int, **parts):
    """A trial's state as the trainer's snapshot lays it out (a 64 x 64 weight, one unit of 64 groups)."""
    state = {"epoch": epoch, "step": 10 * epoch, "model": {"conv.weight": torch.full((64, 64), float(epoch))},
             "optimizer": {"state": {}, "param_groups": []}, "masks": {"masks": {"conv": torch.ones(64)},
                                                                      "dirty": {"conv": False}},
             "method": {}, "rng": {"generator": torch.zeros(8, dtype=torch.uint8), "torch": torch.zeros(8),
                                   "numpy": ("MT19937", torch.zeros(4), 0, 0, 0.0), "python": (3, (1, 2), None)},
             "last": {}}
    state.update(parts)
    return state


def _checkpoint(storage, epoch: int, key: str = "k", parent: str = "sweep-run", state=None):
    """A checkpoint laid out as Ray Tune stores it: <storage>/<tuner run>/<trial>/checkpoint_NNNNNN/."""
    from bench import checkpoints
    folder = storage / "tuner" / "trial_1" / f"checkpoint_{epoch:06d}"
    folder.mkdir(parents=True)
    checkpoints.write(folder, _state(epoch) if state is None else state,
                      {"trial_key": key, "epoch": epoch, "run_id": "r", "parent_run_id": parent})
    return folder


def _expected(epochs: int = 4, method=("beta",)):
    from bench import checkpoints
    return checkpoints.Expected({"conv.weight": (64, 64)}, {"conv": (64,)}, {"k": method}, {"k": epochs})


@pytest.mark.parametrize("foreign,why", [
    ({"foo": torch.randn(3, 3), "bar": torch.zeros(5)}, "lacks 'epoch', 'step'"),
    (_state(1), "state of epoch 1, its record says epoch 2"),
    (_state(2, model={"conv.weight": torch.zeros(32, 64)}), "conv.weight has shape (32, 64), not (64, 64)"),
    (_state(2, model={"fc.weight": torch.zeros(64, 64)}), "its model lacks conv.weight and has fc.weight"),
    (_state(2, masks={"masks": {"conv": torch.ones(64), "conv2": torch.ones(8)}, "dirty": {}}), "has conv2"),
    (_state(2, method={"growth": {}}), "method state holds ['growth'], the trial's method keeps ['beta']"),
    (_state(2, step=2.5), "its 'step' is a float"),
])
def test_a_well_formed_state_that_is_not_this_sweeps_trial_is_refused_before_any_work(tmp_path, foreign, why):
    """A foreign torch.save (its size and hash written into the record, so it passes the integrity check) or a
    state of another model, epoch or method: the driver's check refuses it naming the file and the folder to
    delete, and so does the trial's own lookup where it can tell without the model."""
    import hashlib
    import json

    from bench import checkpoints
    storage = tmp_path / "ray_results"
    folder = _checkpoint(storage, 2)
    path = folder / checkpoints.STATE
    torch.save(foreign, path)
    info = json.loads((folder / checkpoints.INFO).read_text())
    info.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (folder / checkpoints.INFO).write_text(json.dumps(info))
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.check_sweep(storage, "sweep-run", _expected)
    text = str(err.value)
    assert why in text and str(path) in text and f"delete the folder {folder}" in text, text
    if "lacks 'epoch'" in why or "record says" in why or "'step'" in why:
        with pytest.raises(checkpoints.CheckpointError, match="is not a trial's state"):
            checkpoints.latest(storage, "k", "sweep-run")
    assert checkpoints.check_sweep(storage, "another-sweep", _expected) == []


def test_a_trial_epoch_past_the_last_checkpointed_one_is_refused_and_a_longer_control_is_not(tmp_path):
    """A known trial of 4 epochs keeps epochs 1-3; a control (a Scratch-B trains longer) is not known in advance
    and is checked without an upper bound."""
    from bench import checkpoints
    _checkpoint(tmp_path, 4)
    with pytest.raises(checkpoints.CheckpointError, match="epoch 4 is not one a trial of 4 epochs keeps"):
        checkpoints.check_sweep(tmp_path, "sweep-run", _expected)
    control = tmp_path / "control"
    _checkpoint(control, 6, key="scratch-b-key")
    assert checkpoints.check_sweep(control, "sweep-run", _expected) == []


def test_the_states_a_trial_wrote_pass_the_contents_check(tmp_path):
    from bench import checkpoints
    storage = tmp_path / "ray_results"
    _checkpoint(storage, 1, state=_state(1, method={"beta": 1.0}))
    assert checkpoints.check_sweep(storage, "sweep-run", _expected) == []
    snapshot, info = checkpoints.latest(storage, "k", "sweep-run")
    assert snapshot["method"] == {"beta": 1.0} and info["epoch"] == 1


@pytest.mark.parametrize("record", ["left as written", "rewritten to match"])
def test_a_checkpoint_replaced_by_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, record):
    """Whether or not the planter also rewrote the record's size and hash, the checkpoint is refused with a
    message naming it, by the driver's check and by the trial's lookup, and the pickle's code never runs."""
    import hashlib
    import json
    import pickle

    from bench import checkpoints
    storage, target = tmp_path / "ray_results", tmp_path / "pwned"
    _checkpoint(storage, 1)
    folder = _checkpoint(storage, 2)
    (folder / checkpoints.STATE).write_bytes(pickle.dumps({"epoch": _RunsCode(target)}))
    if record == "rewritten to match":
        info = json.loads((folder / checkpoints.INFO).read_text())
        data = (folder / checkpoints.STATE).read_bytes()
        info.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        (folder / checkpoints.INFO).write_text(json.dumps(info))
    with pytest.raises(checkpoints.CheckpointError, match="refusing to resume from a checkpoint") as err:
        checkpoints.check_sweep(storage, "sweep-run")
    assert str(folder) in str(err.value) and "delete the folder" in str(err.value)
    assert ("replaced or altered" if record == "left as written" else "more than tensors") in str(err.value)
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.latest(storage, "k", "sweep-run")
    assert not target.exists()
    assert checkpoints.check_sweep(storage, "another-sweep") == []   # other sweeps' checkpoints are not read


def test_a_checkpoint_cut_short_is_skipped_for_the_previous_one(tmp_path):
    """A full disk cut the newest state file's copy short (its record was written): the trial continues from the
    checkpoint before it, and the driver's check notes it; a record without a hash (an earlier bench) is
    skipped the same way."""
    from bench import checkpoints
    storage = tmp_path / "ray_results"
    _checkpoint(storage, 1)
    newest = _checkpoint(storage, 2) / checkpoints.STATE
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    notes: list[str] = []
    snapshot, info = checkpoints.latest(storage, "k", "sweep-run", note=notes.append)
    assert snapshot["epoch"] == 1 and info["epoch"] == 1 and \
        torch.equal(snapshot["model"]["conv.weight"], torch.ones(64, 64))
    assert len(notes) == 1 and "cut short" in notes[0] and "epoch 2" in notes[0]
    assert ["cut short" in n for n in checkpoints.check_sweep(storage, "sweep-run")] == [True]
    assert checkpoints.latest(storage, "other-trial", "sweep-run") is None
    (storage / "tuner" / "trial_1" / "checkpoint_000001" / checkpoints.INFO).write_text(
        '{"trial_key": "k", "epoch": 1, "run_id": "r", "parent_run_id": "sweep-run"}')
    assert checkpoints.latest(storage, "k", "sweep-run") is None
