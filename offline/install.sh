#!/usr/bin/env bash
# On the offline node, in the repository copied there: the wheels that offline/pack.py downloaded (copied into
# FOLDER, pieces included) whole and checked, then .venv on the node's own Python and torch (a venv with
# --system-site-packages), then the project and its dependencies from those wheels only (pip --no-index).
#
#   offline/install.sh FOLDER [EXTRAS]      # EXTRAS: the project's extras, default dev
#
# PYTHON=python3.12 offline/install.sh ... picks the interpreter (default python3). The node's torch and
# torchvision are used as they are; a package the node already has in a version the project accepts is kept.
set -euo pipefail
FOLDER=${1:?usage: offline/install.sh FOLDER [EXTRAS] (FOLDER: what offline/pack.py download filled)}
EXTRAS=${2:-dev}
PYTHON=${PYTHON:-python3}
cd "$(dirname "$0")/.."
start=$(date +%s)
if ! "$PYTHON" -c "import torch, torchvision" 2>/dev/null; then
  echo "install: $PYTHON has no torch and torchvision; this set-up uses the node's own (PYTHON=... picks another" \
       "interpreter; with internet, ./setup.sh installs everything)" >&2
  exit 2
fi
"$PYTHON" offline/pack.py join "$FOLDER"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv --system-site-packages .venv
fi
# the node's packages (its torch) seen from .venv even where PYTHON is itself a venv or a conda environment,
# after .venv's own: a .pth file naming PYTHON's package folders
"$PYTHON" -c "import site; print('\n'.join(site.getsitepackages()))" \
  > "$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_node_packages.pth"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links "$FOLDER" setuptools
.venv/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links "$FOLDER" \
  --no-build-isolation -e ".[$EXTRAS]"
.venv/bin/python -c "import torch, ray, mlflow, torch_pruning; print(f'install: torch {torch.__version__} (the node\'s, CUDA {torch.cuda.is_available()}), ray {ray.__version__}, mlflow {mlflow.__version__}')"
echo "install: done in $(( $(date +%s) - start )) s; .venv/bin/bench --help"
