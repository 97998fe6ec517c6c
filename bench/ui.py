"""``bench ui``: the MLflow UI on the store the sweeps used, in a session of its own so that Ctrl-C stops it
quietly (one worker, on 127.0.0.1 unless told otherwise); it prints the address of the experiment's training
runs (MLflow 3 otherwise opens its GenAI view)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

from .config import ConfigError, redact
from .tracking import Store, default_tracking_uri, normalize_uri


def serve_ui(tracking_uri: str | None, experiment: str | None, host: str, port: int) -> int:
    """``bench ui``: the MLflow UI on the store the sweeps used (module docstring); the exit status."""
    uri = normalize_uri(tracking_uri or default_tracking_uri())
    if uri.startswith(("http://", "https://")):
        print(f"the store is an MLflow server: open {uri} in a browser")
        return 0
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as err:
        raise ConfigError(f"cannot serve the MLflow UI on {host}:{port}: {err.strerror or err}; pick "
                          "another --port (or stop what listens there)") from None
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    base = f"http://{host}:{port}"
    print(f"MLflow UI on {redact(uri)}: {base}{Store(uri).runs_page(experiment)}  (Ctrl-C to stop)", flush=True)
    # the server's own imports warn about deprecations in its dependencies (starlette's WSGI middleware, a
    # UserWarning): nothing a user of the UI can act on
    quiet = "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated"
    env = {**os.environ, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS") or quiet}
    return serve([mlflow, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
                  "--workers", "1"], env)


def serve(argv: list[str], env: dict[str, str], grace: float = 5.0) -> int:
    """Run a server in a session of its own until it ends or this command is stopped (Ctrl-C or SIGTERM reach
    this process alone, not the server's workers, which would each print their traceback); then SIGTERM to the
    server's process group and SIGKILL to what is left after ``grace`` seconds. Exit 0 when stopped so."""

    server = subprocess.Popen(argv, env=env, start_new_session=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)   # its workers, whatever still runs
        except ProcessLookupError:
            pass
        server.wait()
        print("MLflow UI stopped", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
