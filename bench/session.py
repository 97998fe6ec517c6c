"""A sweep's lifecycle, from a validated config to an exit status: ``bench run`` and ``bench resume``.

1. :func:`prepare`: the trials, the Ray address and the resources one trial needs, the device, the data and
   every method against the model, all checked before any run is created (exit 2 on a problem);
2. :func:`locate`: a new sweep (its name must be free), or the sweep to continue (``--resume``: by name, else
   the latest with the same trials; ``bench resume NAME``: by name, with the settings its record saved) and
   the trials of it that already finished;
3. :func:`execute`: the sweep's parent run created or reopened (runs a killed driver left RUNNING are closed
   KILLED first), the remaining trials run, every unfinished run closed, the parent run ended with a status
   that says what happened, the summary printed; the exit status: 0 all finished, 1 some failed, 130
   interrupted (:func:`ending`).

The CLI only parses arguments and calls :func:`run`. Ray is reached through ``sweep.py`` and MLflow through
``bench/tracking/`` only (what each run records: ``recording.py``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from methods import MethodError

from . import growth, guard, phases
from . import names as N
from .checkpoints import CheckpointError, Expected, check_sweep
from .config import ConfigError, SweepConfig, TrainSettings, TrialConfig, redact
from .config_layers import from_saved
from .console import describe_path, describe_structure, plan_lines, print_summary, print_targets, print_where
from .data import load_dataset
from .metrics import reachable
from .models import ModelError, default_input, display_name
from .outcomes import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_TRIALS_FAILED, NO_SPACE,  # noqa: F401
                       TrialOutcome, ending, finished_outcome)
from .protocols import first as first_protocol
from .protocols.prune_to_target import control_kind
from .recording import summary_metrics, sweep_params, tracking_info
from .settings import RUNTIME, names_with_role, quote
from .structure import StructureError, TraceError
from .sweep import LOCAL_RAY_GROUPS, check_local_resources, check_ray_address, ray_session, run_sweep
from .tracking import Store, source_tags
from .trainer import build_trial_model, preflight, resolve_device
from .weights import WeightsError
from .zeroing import FilterMasks


@dataclass
class Located:
    """Where a sweep's runs go: a new sweep (``record`` None) or the one being continued, with the trials of
    it that finished already (trial key -> their MLflow run)."""

    uri: str
    experiment_id: str
    record: Any = None
    done: dict[str, Any] = field(default_factory=dict)


def runtime_keys() -> tuple[str, ...]:
    """The settings a resumed sweep may change: where and how it runs (declared with role ``runtime``)."""
    return names_with_role(RUNTIME, SweepConfig, TrainSettings)


def run(sweep: SweepConfig, uri: str, *, resume: bool = False, record=None, dry_run: bool = False,
        write: Callable[[str], None] = print, command: str | None = None, ended: dict | None = None) -> int:
    """``bench run`` (``record`` None) or ``bench resume`` (the saved sweep's record): prepare, locate and
    execute; returns the exit status. ``command`` (the command line) becomes the sweep run's description;
    ``ended``, a dict, receives the sweep's ``name`` and ``run_id`` once known (``bench.run``)."""
    if resume and record is None:
        sweep, record = growth.grown_sweep(uri, sweep)
    trials, data = prepare(sweep, write)
    if sweep.searching:   # a target search: the trials known in advance are the baselines
        trials = [t for t in trials if t.sweep_axis is None]
    if dry_run:
        for trial in trials:
            write(f"  {trial.name:<32} {trial.key}  options {dict(trial.options)}  zeroing {trial.zeroing}")
        return EXIT_OK
    located = locate(sweep, trials, uri, resume=resume, record=record, write=write)
    return execute(sweep, trials, data, located, write=write, command=command, ended=ended)


def check_writable(folder: str, flag: str) -> None:
    """A folder bench will write into (and create if need be): refused before any work when it cannot be.
    Nothing is created here: the nearest existing folder on its path must be a writable folder."""

    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    problem = None if existing.is_dir() else f"{existing} is not a folder"
    if problem is None and not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user" + (" (a read-only file system)" if os.access(
            existing, os.R_OK) and os.statvfs(existing).f_flag & os.ST_RDONLY else "")
    if problem:
        raise ConfigError(f"{flag} {folder}: cannot write there: {problem}; pick a folder this user can write"
                          + (" (one every node of the cluster reaches)" if "storage" in flag else ""))


def prepare(sweep: SweepConfig, write: Callable[[str], None] = print):
    """Everything checked before any run is created: returns the trials and the loaded data."""

    trials = sweep.trials()
    check_writable(sweep.storage_path, "--storage-path")
    address = check_ray_address(sweep.ray_address)
    t = sweep.train
    if not address:   # a cluster's resources and devices are checked once joined (sweep.ray_session)
        try:
            resolve_device(t.device)
        except (RuntimeError, ValueError) as err:
            raise ConfigError(f"--device {t.device}: {err}") from None
        check_local_resources(sweep.cpus_per_trial, sweep.gpus_per_trial, sweep.ray_cpus)
    t0 = time.monotonic()
    data = load_dataset(t.dataset, t.data_dir, t.limit_train, t.limit_test, input_shape=default_input(t.model),
                        download=t.download, image_size=t.image_size, data_path=t.data_path, normalize=t.normalize,
                        workers=t.loader_workers, progress=write, val_split=t.val_split)
    write(f"data   {data.describe()} [{time.monotonic() - t0:.1f}s]")
    write(f"       {describe_path(data, t)}")
    t1 = time.monotonic()
    try:
        model, structure = build_trial_model(trials[0], data.input_shape, data.num_classes, notes=write)
    except WeightsError as err:
        raise ConfigError(str(err)) from None
    except TraceError as err:
        raise ConfigError(f"model {display_name(t.model)!r}: {err}") from None
    except (StructureError, ValueError) as err:
        raise ConfigError(f"model {display_name(t.model)!r} cannot take {t.dataset!r} inputs: {err}") from None
    for line in describe_structure(structure):
        write(line)
    if not structure.units:
        raise ConfigError(f"nothing in {display_name(t.model)} can be pruned: " + "; ".join(
            f"{name} {reason}" for name, reason in structure.skipped.items()) if structure.skipped else
            f"nothing in {display_name(t.model)} can be pruned: it has no conv layer with output channels to remove")
    for trial in {trial.method: trial for trial in trials}.values():
        try:
            method = trial.build_method()
            method.bind(structure.units)
            method.check_model(model)
        except MethodError as err:
            raise ConfigError(f"method {trial.method!r} cannot run on model {display_name(t.model)!r}: {err}") from None
    try:   # a trial's first step, once, here: what fails in training fails before Ray starts
        preflight(model, data.input_shape, data.num_classes)
    except Exception as err:
        raise ConfigError(f"model {display_name(t.model)!r} fails a training step (forward, loss, backward on 2 "
                          f"random inputs): {err if isinstance(err, (ValueError, ModelError)) else repr(err)}") from None
    if sweep.target_values:
        bound = first_protocol(t).layer_bound(t)   # a pruning step's layer bound, or None
        most = reachable(structure, bound)
        for target in sweep.targets:
            if target.value > most[target.metric]:
                flag = {"sparsity": "--target-sparsity", "flops": "--target-flops-reduction",
                        "params": "--target-params-reduction"}[target.kind]
                why = (f"when the pruning step takes at most --max-layer-ratio {bound:g} of every "
                       "prunable layer's filters (groups); ask for less, or raise the ratio") if bound is not None else \
                    "when every prunable layer keeps one filter (group); ask for less"
                raise ConfigError(f"{flag} {target.value:g} cannot be reached: at most {most[target.metric]:.1%} "
                                  f"({target.kind}) of {display_name(t.model)} can be removed, {why}")
    write(f"model  {display_name(t.model)}: {len(structure.units)} prunable layer{'s' * (len(structure.units) != 1)}, "
          f"{sum(structure.filters().values())} filters [{time.monotonic() - t1:.1f}s]")
    for line in plan_lines(sweep, trials, data.n_train):
        write(line)
    return trials, data


# -- which sweep -------------------------------------------------------------------------------------------

def locate(sweep: SweepConfig, trials: list[TrialConfig], uri: str, *, resume: bool = False, record=None,
           write: Callable[[str], None] = print) -> Located:
    """The experiment (created once, here, on the driver), the sweep to continue if any and its finished
    trials. A new sweep's name must be free in the experiment."""

    store = Store(uri)
    experiment_id = store.prepare_experiment(sweep.experiment_name)
    if record is None and resume:
        record = sweep_to_resume(uri, experiment_id, sweep)
    elif record is None:
        refuse_existing_name(uri, experiment_id, sweep, write)
    located = Located(uri, experiment_id, record)
    if record is not None:
        keys = {t.key for t in trials}
        phase_keys = {p.key for p in phases.shared(trials)[0]} if sweep.share and not sweep.searching else set()
        located.done = {k: r for k, r in store.finished_trials(experiment_id, record.run_id).items()
                        if k in keys | phase_keys or sweep.searching or sweep.controls}   # probes, controls: as they come
        if sweep.searching:
            probes = len(set(located.done) - keys)
            write(f"resume sweep {record.name!r} ({record.status}): {len(set(located.done) & keys)} of {len(trials)} "
                  f"baseline trials and {probes} probes finished; the searches continue from those probes")
        else:
            main = len(set(located.done) & keys)
            controls = f" and {len(set(located.done) - keys - phase_keys)} controls" if sweep.controls else ""
            write(f"resume sweep {record.name!r} ({record.status}): {main} of {len(trials)} trials{controls} "
                  f"finished, running the other {len(trials) - main}" + (" and the missing controls"
                                                                          if sweep.controls else ""))
    return located


def saved_sweep(uri: str, name: str, experiment: str | None, overrides: Mapping[str, Any]):
    """``bench resume NAME``: the sweep's config as its parent run saved it, with runtime ``overrides``;
    returns (sweep, record)."""

    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"{quote(name)} is not a sweep name (letters, digits, '.', '_' and '-')")
    store = Store(uri)
    found = []
    for candidate in [experiment] if experiment else store.experiment_names():
        experiment_id = store.experiment_id_of(candidate)
        if experiment_id is not None:
            found += [(candidate, r) for r in store.find_sweeps(experiment_id, name=name)]
    if not found:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise ConfigError(f"no sweep named {name!r} in {where} of {uri}" + known_sweeps(uri, experiment))
    if len({e for e, _ in found}) > 1:
        raise ConfigError(f"sweeps named {name!r} exist in several experiments "
                          f"({', '.join(sorted({e for e, _ in found}))}); say which with --experiment")
    experiment, record = found[0]
    allowed = {k: v for k, v in overrides.items() if k in runtime_keys() and v is not None}
    allowed.update(tracking_uri=uri, experiment=experiment, name=record.name)   # where it was found wins
    sweep = growth.unchanged(from_saved(record.config, **allowed), record)
    more = {k: v for k, v in overrides.items() if k in growth.ASKABLE and v is not None}
    if more:   # bench resume NAME --seeds ...: the sweep grows by them
        sweep = growth.grow(sweep, from_saved(record.config, **allowed, **more))
    return sweep, record


def known_sweeps(uri: str, experiment: str | None) -> str:
    """A hint listing the sweeps of an experiment (of every experiment without one)."""

    store = Store(uri)
    lines = []
    for name in [experiment] if experiment else store.experiment_names():
        experiment_id = store.experiment_id_of(name)
        if experiment_id is None:
            continue
        for r in store.find_sweeps(experiment_id)[:10]:
            lines.append(f"  {r.name:<28} {r.status:<9} experiment {name!r}")
    return "; sweeps there:\n" + "\n".join(lines) if lines else "; it has no sweep yet"


def sweep_to_resume(uri: str, experiment_id: str, sweep: SweepConfig):
    """``bench run ... --resume``: the sweep named ``--name``, else the latest sweep with the same trials."""

    store = Store(uri)
    if sweep.name:
        records = store.find_sweeps(experiment_id, name=sweep.name)
        if not records:
            raise ConfigError(f"no sweep named {sweep.name!r} to resume in experiment {sweep.experiment_name!r}"
                              + known_sweeps(uri, sweep.experiment_name))
        if records[0].key != sweep.key:
            raise ConfigError(f"sweep {sweep.name!r} was started with other trials (methods, values, seeds or "
                              "training settings differ); resume it with the same options, or with "
                              f"`bench resume {sweep.name}`")
        return records[0]
    records = store.find_sweeps(experiment_id, key=sweep.key)
    if not records:
        raise ConfigError(f"no sweep with these trials to resume in experiment {sweep.experiment_name!r} "
                          "(same methods, values, seeds and training settings)"
                          + known_sweeps(uri, sweep.experiment_name))
    return records[0]


def refuse_existing_name(uri: str, experiment_id: str, sweep: SweepConfig,
                         write: Callable[[str], None] = print) -> None:

    store = Store(uri)
    if sweep.name and store.find_sweeps(experiment_id, name=sweep.name):
        raise ConfigError(f"a sweep named {sweep.name!r} exists in experiment {sweep.experiment_name!r}; continue "
                          f"it with --resume (or `bench resume {sweep.name}`) or pick another --name")
    unfinished = [r for r in store.find_sweeps(experiment_id, key=sweep.key) if r.status != "FINISHED"]
    if unfinished:
        write(f"note   sweep {unfinished[0].name!r} has the same trials and ended {unfinished[0].status}; "
              "add --resume to continue it instead of starting anew")


# -- running it --------------------------------------------------------------------------------------------

def execute(sweep: SweepConfig, trials: list[TrialConfig], data, located: Located, *,
            runner: Callable[..., list] | None = None, write: Callable[[str], None] = print,
            command: str | None = None, ended: dict | None = None) -> int:
    """Run the trials not yet finished under the sweep's parent run and close everything; the exit status.

    ``runner(sweep, todo, data, tracking, run_name=...)`` runs the trials and returns one outcome each
    (default: :func:`bench.sweep.run_sweep` inside a Ray session). One driver at a time runs a sweep
    (:func:`bench.guard.exclusive`); a resumed sweep's checkpoints are verified before anything else
    (:func:`bench.checkpoints.check_sweep`)."""

    with contextlib.ExitStack() as held:
        record = located.record
        if record is not None:
            held.enter_context(guard.exclusive(located.uri, record.run_id, record.name))
            try:
                for line in check_sweep(sweep.storage_path, record.run_id,
                                        lambda: expected_state(trials or sweep.trials(), data)):
                    write(f"note   {line}")
            except CheckpointError as err:
                raise ConfigError(str(err)) from None
        return _execute(sweep, trials, data, located, held, runner=runner, write=write, command=command,
                        ended=ended if ended is not None else {})


def expected_state(trials: list[TrialConfig], data):
    """What a checkpoint of these trials must hold (``bench.checkpoints.Expected``): the model's and the masks'
    state as the first trial builds them (every trial of a sweep trains the same model), each trial's method
    state keys (a target search's probes are not known in advance: their methods' states are not checked)."""

    model, structure = build_trial_model(trials[0], data.input_shape, data.num_classes)
    methods = {}
    for trial in trials:
        method = trial.build_method()
        method.bind(structure.units)
        methods[trial.key] = tuple(method.state_dict())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    masks = {k: tuple(v.shape) for k, v in FilterMasks(structure).state_dict()["masks"].items()}
    return Expected(shapes, masks, methods, {t.key: t.train.epochs for t in trials})


def _execute(sweep: SweepConfig, trials: list[TrialConfig], data, located: Located, held: contextlib.ExitStack,
             *, runner: Callable[..., list] | None, write: Callable[[str], None], command: str | None,
             ended: dict) -> int:

    uri, experiment_id, record, done = located.uri, located.experiment_id, located.record, located.done
    store = Store(uri)
    todo = [t for t in trials if t.key not in done]
    previous = [finished_outcome(t, done[t.key]) for t in trials if t.key in done]
    searches = None
    if sweep.searching:
        known = {t.key for t in trials}
        previous += [finished_outcome(_probe_trial(sweep, run), run) for key, run in done.items() if key not in known]
        searches = target_searches(sweep, previous)
    if record is not None:
        ended.update(name=record.name, run_id=record.run_id)
    # with every trial done, the controls are known now (their widths read once, here)
    known_controls = control_trials(sweep, previous, store) if sweep.controls and not todo else None
    controls_left = known_controls is not None and any(c.key not in done for c in known_controls)
    if record is not None and not todo and not controls_left and (searches is None or
                                                                 all(s.finished for s in searches)):
        if searches is not None:
            _log_targets(uri, record.run_id, searches)
        if record.status != "FINISHED":
            store.end_run(record.run_id, "FINISHED")
        write(f"nothing to run: every trial of sweep {record.name!r} finished")
        print_summary(previous, write)
        return EXIT_OK
    if runner is None:   # space set aside on the store's and the checkpoints' disks, freed if one fills up
        reserve = guard.Reserve(written_folders(sweep, uri))
        held.callback(reserve.release)
    session = ray_session(sweep) if runner is None else contextlib.nullcontext()
    with session as ray_info:
        if ray_info:
            write(f"ray    {ray_info}")
        if record is None:
            default = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
            parent, name = store.start_sweep_run(experiment_id, sweep.name or default, sweep_params(sweep, len(trials)),
                                                 sweep.to_dict(), sweep.key, unique=sweep.name is None, note=command,
                                                 tags=source_tags())
            held.enter_context(guard.exclusive(uri, parent, name))   # a resume of it is refused while it runs
        else:
            name, parent = record.name, record.run_id
            if record.key != sweep.key:   # grown: the sweep's record lists what it has now
                saved = from_saved(record.config, **growth.runtime_of(sweep))
                store.update_sweep(parent, sweep.to_dict(), sweep.key, growth.added(saved, sweep))
                write(f"grow   sweep {name!r} gains {growth.added(saved, sweep)}: {len(todo)} trial(s) to run")
            closed = store.close_open_children(experiment_id, parent, "KILLED",
                                               "the sweep's driver stopped before this trial finished")
            if closed:
                write(f"note   {closed} run(s) of the interrupted sweep were still RUNNING; marked KILLED")
            store.reopen_run(parent)
        ended.update(name=name, run_id=parent)
        write(f"mlflow {redact(uri)}  experiment {sweep.experiment_name!r}  sweep {name!r} (run {parent})")
        tracking = tracking_info(uri, experiment_id, parent, data, sweep.train.dataset)
        if runner is None:
            session.on_abort(lambda: _abort(tracking, name, trials, write))
            # closes the records if this process dies abruptly, and ends what is left of its local Ray
            guard.start(uri, experiment_id, parent, LOCAL_RAY_GROUPS)
        try:
            todo, outcomes = phases.first(sweep, todo, done, lambda batch: (runner or run_sweep)(
                sweep, batch, data, tracking, run_name=f"{name}-phases-{time.strftime('%H%M%S')}",
                **({"reserve": reserve} if runner is None else {})), write)
            outcomes = outcomes if outcomes is not None else (runner or run_sweep)(
                sweep, todo, data, tracking, run_name=f"{name}-{time.strftime('%H%M%S')}",
                **({"searches": searches} if searches is not None else {}),
                **({"reserve": reserve} if runner is None else {})) if todo or searches is not None else []
            if sweep.controls and all(o.status == "FINISHED" for o in outcomes):
                # the controls of every finished trial (their widths are known now), once all of them finished
                controls = known_controls if known_controls is not None else \
                    control_trials(sweep, previous + outcomes, store)
                missing = [c for c in controls if c.key not in done]
                previous += [finished_outcome(c, done[c.key]) for c in controls if c.key in done]
                if missing:
                    write(f"controls {len(missing)} trial{'s' * (len(missing) != 1)}: "
                          + ", ".join(sorted({c.control["kind"] for c in missing if c.control})) + " of every finished "
                          "trial")
                    outcomes += (runner or run_sweep)(sweep, missing, data, tracking,
                                                      run_name=f"{name}-controls-{time.strftime('%H%M%S')}",
                                                      **({"reserve": reserve} if runner is None else {}))
            elif sweep.controls:   # said, so that a sweep with no control is not read as one whose controls ran
                unfinished = sum(o.status != "FINISHED" for o in outcomes)
                write(f"controls skipped: {unfinished} of {len(outcomes)} trial{'s' * (len(outcomes) != 1)} did not "
                      f"finish, and the --controls ({','.join(sweep.controls)}) run once every trial has; "
                      f"`bench resume {name}` runs what is left, then them")
        except BaseException as err:
            store.close_open_children(experiment_id, parent)
            # a whole process group terminated takes the local Ray with it: whatever Ray raises then (lost
            # objects, dead workers) is the interruption, not a failure of the sweep
            interrupted = isinstance(err, KeyboardInterrupt) or getattr(session, "terminated", False)
            store.end_run(parent, "KILLED" if interrupted else "FAILED", "interrupted" if interrupted else
                          f"{type(err).__name__}: {err}")
            if interrupted:
                print(f"\ninterrupted; continue with `bench resume {name}`", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise
        store.close_open_children(experiment_id, parent)
    outcomes = previous + outcomes
    if searches is not None:   # a probe that diverged is an overshoot, data of its search, not a failure
        for o in outcomes:
            if o.status == "FAILED" and o.trial is not None and o.trial.sweep_axis is not None and _diverged(o):
                o.status = "DIVERGED"
    status, code, note = ending(outcomes)
    full = [o for o in outcomes if (o.error or "").startswith(NO_SPACE)]
    if full:   # the sweep stopped on a full disk: a failure, resumable once space is back
        status, code, note = "FAILED", EXIT_TRIALS_FAILED, f"{NO_SPACE}: the sweep stopped; {note}"
    records: list[dict] | None = None
    if searches is not None:
        settled = target_searches(sweep, outcomes)
        records = _log_targets(uri, parent, settled)
        if not all(s.finished for s in settled):   # Tune stopped (Ctrl-C) before the searches were done
            status, code, note = "KILLED", EXIT_INTERRUPTED, "interrupted before the target searches finished"
    trained, shared = phases.epochs_trained(trials, set(done)) if sweep.share and not sweep.searching else \
        (sum(t.train.epochs for t in trials), 0)
    store.log_summary(parent, {**summary_metrics(outcomes, records), "trial_epochs_trained": trained,
                               "trial_epochs_shared": shared})
    store.end_run(parent, status, note)
    print_summary(outcomes, write)
    if records is not None:
        print_targets(records, write)
    print_where(sweep, uri, name, write)
    if code == EXIT_INTERRUPTED:
        finished = sum(o.status == "FINISHED" for o in outcomes)
        print(f"interrupted: {finished} of {len(outcomes)} trials finished; continue with "
              f"`bench resume {name}`", file=sys.stderr)
    elif full:
        print(f"bench: error: {NO_SPACE} on the disk of {where_full(sweep, uri)}: the sweep stopped and its runs are "
              f"closed; free space, then `bench resume {name}` continues it", file=sys.stderr)
    elif code == EXIT_TRIALS_FAILED:
        print(resume_advice([o for o in outcomes if o.status == "FAILED"], name), file=sys.stderr)
    return code


def resume_advice(failed: list, name: str) -> str:
    """What to do about failed trials, offering ``bench resume`` only where it can succeed: a trial refused
    its checkpoint is resumed once the folder its error names is deleted; a trial whose loss or penalty
    diverged diverges again with the same settings; any other error runs again."""
    refused = [o for o in failed if "refusing to resume from a checkpoint" in (o.error or "")]
    diverged = [o for o in failed if _diverged(o)]
    others = len(failed) - len(refused) - len(diverged)
    parts = []
    if refused:
        parts.append(f"{len(refused)} refused a checkpoint: delete the folder its error names, then "
                     f"`bench resume {name}` continues it")
    if diverged:
        parts.append(f"{len(diverged)} diverged (a NaN or infinite loss or penalty): a resume runs the same settings "
                     "and diverges again; run a new sweep with a lower strength or learning rate")
    if others:
        parts.append(f"`bench resume {name}` runs the other {others} again (an error of the code or the data "
                     "fails again until it is fixed)" if refused or diverged else
                     f"`bench resume {name}` runs them again (an error of the code or the data fails again "
                     "until it is fixed; the summary's error says where it was raised)")
    return f"{len(failed)} trial(s) failed; " + "; ".join(parts)


def written_folders(sweep: SweepConfig, uri: str) -> list[str]:
    """The folders a sweep writes on this machine: its storage path and its sqlite store's folder."""

    return [str(Path(sweep.storage_path).absolute())] + ([str(Path(uri[len("sqlite:///"):]).parent)]
                                                         if uri.startswith("sqlite:///") else [])


def where_full(sweep: SweepConfig, uri: str) -> str:
    """The sweep's folders on a disk with (almost) no space left, else all of them."""

    folders = written_folders(sweep, uri)
    full = [f for f in folders if shutil.disk_usage(f).free < 64 << 20]
    return " and ".join(dict.fromkeys(full or folders))


def _abort(tracking, name: str, trials: list[TrialConfig], write: Callable[[str], None]) -> None:
    """The sweep's end when its driver is terminated and Ray cannot stop it gracefully (the local Ray died
    with the process group): every open run KILLED, the summary from the store."""

    store = Store(tracking.uri)
    store.close_open_children(tracking.experiment_id, tracking.parent_run_id)
    finished = store.finished_trials(tracking.experiment_id, tracking.parent_run_id)
    outcomes = [finished_outcome(t, finished[t.key]) if t.key in finished else
                TrialOutcome(t.name, "KILLED", {}, "terminated", t.key) for t in trials]
    status, _, note = ending(outcomes)
    store.end_run(tracking.parent_run_id, status, f"terminated; {note}" if note else None)
    print_summary(outcomes, write)
    print(f"terminated: {sum(o.status == 'FINISHED' for o in outcomes)} of {len(outcomes)} trials finished; "
          f"continue with `bench resume {name}`", file=sys.stderr)


def control_trials(sweep: SweepConfig, outcomes: list, store) -> list[TrialConfig]:
    """The ``--controls`` trials of every finished prune-to-target trial among ``outcomes`` (of the ``--primary``
    method's trials only, where the sweep names one: its comparisons use no other control), in their order: its
    widths read from the groups its run kept (``kept_groups.json``)."""
    out = []
    for o in outcomes:
        t = o.trial
        if o.status != "FINISHED" or t is None or t.target is None or t.control is not None \
                or sweep.primary not in (None, t.method):
            continue
        kept = store.read_json_artifact(o.metrics[N.RUN_ID_KEY], N.KEPT_GROUPS)
        if kept is None:
            raise RuntimeError(f"trial {t.name} finished without its {N.KEPT_GROUPS}: its control cannot be built")
        out += [control_trial(sweep, t, {unit: len(idx) for unit, idx in kept.items()}, kind,
                              float(o.metrics.get(N.FLOPS_REDUCTION, 0.0)))
                for kind in sweep.controls]
    return out


def control_trial(sweep: SweepConfig, source: TrialConfig, widths: Mapping[str, int],
                  kind: str = "scratch", flops_reduction: float = 0.0) -> TrialConfig:
    """The ``kind`` control of a finished trial that pruned to a target, whose units kept ``widths`` groups and
    whose network has ``flops_reduction`` fewer FLOPs: the ``none`` method (plain training) at those widths from
    the seed's initialisation, for the sweep's epochs (``scratch``, ``scratch-e``: Scratch-E) or for the same
    compute (``scratch-b``: round(epochs x dense FLOPs / pruned FLOPs), the factor capped at
    ``--scratch-b-max-factor``; Liu et al. 2019's Scratch-B)."""

    kind = control_kind(kind)
    control: dict[str, Any] = {"kind": kind, "of": source.name, "method": source.method,
                               "target": list(source.target) if source.target else None,
                               "widths": {unit: int(n) for unit, n in sorted(widths.items())}}
    train = source.train   # its protocol and fine-tuning (a study axis); plain training whatever they are
    if kind == "scratch-b":
        factor = 1.0 / max(1.0 - flops_reduction, 1e-9)   # dense FLOPs / pruned FLOPs
        epochs = max(train.epochs, round(train.epochs * min(factor, sweep.scratch_b_max_factor)))
        control.update(factor=round(factor, 6), capped=factor > sweep.scratch_b_max_factor)
        train = replace(train, epochs=epochs)
    return TrialConfig("none", {}, "none", source.seed, train, None, control)


def _log_targets(uri: str, run_id: str, searches: list) -> list[dict]:
    """The searches' records as ``targets.json`` on the sweep's run; returns them."""
    records = [r for s in searches for r in s.results()]
    Store(uri).log_json_artifact(run_id, N.TARGETS_ARTIFACT, records)
    return records


def _diverged(outcome) -> bool:
    """A trial that failed because its loss or penalty became NaN or infinite (trainer.TrialDiverged)."""
    return any(word in (outcome.error or "") for word in ("TrialDiverged", "training loss is", "penalty is"))


def _probe_trial(sweep: SweepConfig, run) -> TrialConfig:
    """The probe of a target search that an MLflow run recorded (its method, seed and strength)."""
    p = run.data.params
    return sweep.probe(p["method"], float(p[p["sweep_axis"]]), int(p["seed"]))


def target_searches(sweep: SweepConfig, outcomes: list) -> list:
    """The sweep's searches holding every probe among ``outcomes`` (finished; stopped at an overshoot, its
    values lower bounds; or failed, a divergence: an overshoot of unknown value); a
    search is rebuilt from its probes alone, so a resumed sweep continues where the records stop."""
    searches = {(s.method, s.seed): s for s in sweep.searches()}
    for o in sorted(outcomes, key=lambda o: o.name):
        t = o.trial
        if t is None or t.sweep_axis is None or (t.method, t.seed) not in searches or o.status == "KILLED":
            continue
        kept = o.status in ("FINISHED", "OVERSHOT")   # an overshoot stopped early: its values are lower bounds
        searches[(t.method, t.seed)].record(float(t.swept_value), o.metrics if kept else None,
                                            o.metrics.get(N.RUN_ID_KEY), failed=not kept,
                                            bound=o.status == "OVERSHOT")
    return list(searches.values())
