#!/usr/bin/env bash
# Set-up used by `make run` and `make test`: a virtual environment in .venv that shares the
# system's site-packages (so a torch the user already has is kept), the local CPU build
# torch==2.13.0 only when no torch can be imported, then gradwire itself (editable) with
# its test tools. Re-running is cheap: the install step runs again only when pyproject.toml
# changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_BIN=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "gradwire set-up: creating .venv (system site-packages visible)"
  "$PYTHON_BIN" -m venv --system-site-packages .venv
fi
VPY=.venv/bin/python
log=.venv/install.log
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "gradwire set-up: no torch found, installing torch==2.13.0 (CPU build)"
  "$VPY" -m pip install -q "torch==2.13.0" >"$log" 2>&1 || { tail -n 30 "$log"; exit 1; }
else
  echo "gradwire set-up: keeping torch $("$VPY" -c 'import torch; print(torch.__version__)')"
fi
stamp=.venv/.gradwire-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "gradwire set-up: installing gradwire and its dependencies into .venv"
  "$VPY" -m pip install -q -e ".[dev]" >"$log" 2>&1 || { tail -n 30 "$log"; exit 1; }
  touch "$stamp"
fi
