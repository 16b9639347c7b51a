#!/usr/bin/env bash
# Create .venv and install fcn-deploy with its CPU dependencies (idempotent: re-installs only
# when pyproject.toml changed). Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FCN_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.fcn-deploy-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing fcn-deploy and its CPU dependencies into $venv"
  # torch 2.13.0 CPU comes from the local wheel; installed first so nothing pulls a CUDA build.
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[torch,dev]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
