#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the project and its test tools, and, on Debian,
# the package dataset-fashion-mnist (the offline default dataset) when it can be installed.
#   PYTHON=python3.12 ./setup.sh    picks another interpreter (3.11 or newer)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_install() {  # apt_install PACKAGE...: quiet, refreshing the package lists once if needed
  command -v apt-get >/dev/null || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
  as_root apt-get update -q >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1
}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if apt_install dataset-fashion-mnist; then
    echo "setup: installed Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)"
  else
    echo "setup: could not install dataset-fashion-mnist (not Debian, or no root); Fashion-MNIST will be" \
         "looked up in --data-dir, \$BENCH_DATA_DIR or ~/.cache/bench, or downloaded on first use"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv || { echo "setup: '$PYTHON -m venv' failed; install python3-venv" >&2; exit 1; }
    "$PYTHON" -m venv .venv
  fi
fi
.venv/bin/python - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python 3.11 or newer is needed, .venv has {sys.version.split()[0]}; "
             "remove .venv and run PYTHON=python3.11 ./setup.sh")
PY
echo "setup: installing the project and its dependencies into .venv (torch is large: a few minutes)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
echo "setup: done. Run .venv/bin/bench --help, or 'source .venv/bin/activate' and then bench run ..."
