"""Filters on Ray's and Tune's loggers for what bench says itself (installed when ``bench.sweep`` is imported):
the advice to ``Tuner.restore``, every failed trial's traceback, the local token-authentication notice."""
from __future__ import annotations

import logging


class _NoTuneRestoreHint(logging.Filter):
    """Tune suggests ``Tuner.restore`` after an interruption, warns that it stops on a signal, lists the trials
    that did not complete and those that left no result: bench says all of it itself (the summary's statuses,
    ``interrupted ...; continue with `bench resume NAME```)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in ("Tuner.restore", "Stop signal received",
                                                    "Trials did not complete", "Failed to fetch metrics"))


for _name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
    logging.getLogger(_name).addFilter(_NoTuneRestoreHint())


class _NoTrialTraceback(logging.Filter):
    """Tune logs every failed trial's traceback on the driver; bench prints one line for it (``FAILED NAME
    ...; error in FOLDER``, the folder's error.txt holds the traceback) and the error in the summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial task failed for trial")


logging.getLogger("ray.tune.execution.tune_controller").addFilter(_NoTrialTraceback())


class _NoLocalAuthNotice(logging.Filter):
    """A new local Ray turns on Ray's token authentication (its default; the token is kept in
    ``~/.ray/auth_token``) and says so at every start. That Ray lives and dies with the command, so the notice
    is dropped; the authentication stays on, and a cluster's own settings are not touched (it is not started
    here; ``RAY_AUTH_MODE`` set by the user is honoured by Ray as always)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_NoLocalAuthNotice())
