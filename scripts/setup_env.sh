#!/usr/bin/env bash
# Create ./.venv and install the requirements (add "dev" for the test tools). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_BIN:-python3}
if [ ! -x .venv/bin/python ]; then
    "${PY}" -m venv .venv
fi
. .venv/bin/activate

if [ "${1:-}" = "dev" ]; then
    python -m pip install -q -r requirements-dev.txt
else
    python -m pip install -q -r requirements.txt
fi
python -c "import torch, clip, yacs; print(f'environment ready: torch {torch.__version__}')" 2>&1 | grep -v Warning | grep -v pkg_resources || true
