#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the project, its test tools and the PostgreSQL
# driver, and, on Debian, the package dataset-fashion-mnist (the offline default dataset) when it can be
# installed; with --with-postgres also Debian's postgresql server (for the multi-user stack's one test).
#   PYTHON=python3.12 ./setup.sh    picks another interpreter (3.11 or newer)
#   ./setup.sh --cpu                 CPU-only torch and torchvision from PyTorch's CPU wheel index (no CUDA
#                                    libraries: a far smaller .venv); TORCH_INDEX=URL names another index
#   ./setup.sh --newest              the newest versions the project allows instead of constraints.txt's
#   ./setup.sh --wheelhouse DIR      no network: every package from the wheel files in DIR (README: offline set-up)
#   ./setup.sh --with-postgres       also Debian's postgresql (a database server: asked for, never assumed)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
CPU=0
POSTGRES=0
CONSTRAINTS=(-c constraints.txt)
WHEELHOUSE=
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1 ;;
    --newest) CONSTRAINTS=() ;;
    --with-postgres) POSTGRES=1 ;;
    --wheelhouse)
      WHEELHOUSE=${2:-}
      if [ -z "$WHEELHOUSE" ] || ! ls "$WHEELHOUSE"/*.whl >/dev/null 2>&1; then
        echo "setup: --wheelhouse needs a folder of .whl files, got '${WHEELHOUSE}'" >&2; exit 2
      fi
      shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $1 (see ./setup.sh --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$WHEELHOUSE" ] && [ "$CPU" = 1 ]; then
  echo "setup: --cpu does not apply with --wheelhouse: the torch in the wheelhouse is installed (put the CPU" \
       "wheels there for a CPU-only set-up)" >&2
  exit 2
fi
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

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

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then   # the multi-user stack's test (README)
  :
elif [ "$POSTGRES" = 1 ]; then
  if apt_install postgresql; then
    echo "setup: installed Debian's postgresql (its test runs an mlflow server on a throwaway cluster)"
  else
    echo "setup: could not install postgresql (not Debian, or no root); the PostgreSQL server test is skipped"
  fi
else
  echo "setup: PostgreSQL is not installed: the multi-user stack's test (tests/test_sweep_lifecycle.py) will be" \
       "skipped; ./setup.sh --with-postgres installs Debian's postgresql server for it"
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
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then
  PIP+=(--no-index --find-links "$WHEELHOUSE")
  echo "setup: installing from the wheels in $WHEELHOUSE only (no package index)"
fi
if [ "$CPU" = 1 ]; then
  if ! .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=15)" \
       "$TORCH_INDEX" 2>/dev/null; then
    echo "setup: --cpu: cannot reach the CPU wheel index $TORCH_INDEX; run without --cpu (torch from PyPI," \
         "with CUDA libraries) or set TORCH_INDEX to an index you can reach" >&2
    exit 1
  fi
  echo "setup: installing CPU-only torch and torchvision from $TORCH_INDEX"
  "${PIP[@]}" "${CONSTRAINTS[@]}" --index-url "$TORCH_INDEX" torch torchvision
fi
echo "setup: installing the project and its dependencies into .venv (torch is large: a few minutes)" \
     "${CONSTRAINTS:+within constraints.txt}"
"${PIP[@]}" "${CONSTRAINTS[@]}" -e ".[dev,server]"
echo "setup: done. Run .venv/bin/bench --help, or 'source .venv/bin/activate' and then bench run ..."
