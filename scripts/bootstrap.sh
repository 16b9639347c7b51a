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
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[torch,dev,serve,ray]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"

# The server side of the Triton tests (docs/serve.md): nvidia-pytriton's wheel ships a real
# tritonserver with the Python backend, whose stub links the system libpython3.11 (Debian's
# 3.11.2). A venv from another 3.11 build (pyenv's 3.11.7, our .venv) fails to load models
# ('_thread.RLock' object has no attribute '_recursion_count'), and the wheel needs numpy<2
# while .venv has numpy 2: so the server gets its own venv made by /usr/bin/python3.11.
# FCN_SKIP_TRITON=1 skips it (the triton tests then skip, saying why).
tvenv="${FCN_TRITON_VENV:-$root/.venv-triton}"
tpy="${FCN_TRITON_PYTHON:-/usr/bin/python3.11}"
tserver="nvidia-pytriton==0.7.0"
tdeps="numpy==1.26.4 onnxruntime==1.31.1"
if [ "${FCN_SKIP_TRITON:-0}" != "1" ]; then
  if [ ! -x "$tpy" ]; then
    echo "[bootstrap] $tpy not found: no tritonserver venv, the triton tests will skip" >&2
  else
    tstamp="$tvenv/.fcn-triton-installed"
    twant="$(echo "$tserver $tdeps $("$tpy" -c 'import sys; print(sys.version)')" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$tstamp" ] || [ "$(cat "$tstamp")" != "$twant" ]; then
      echo "[bootstrap] creating $tvenv for tritonserver's Python backend ($tpy)"
      rm -rf "$tvenv"
      # --no-deps for the wheel: the server side needs its binaries, numpy<2 and onnxruntime,
      # not pytriton's Python API (tritonclient, grpcio, ...). A failure here (no venv module,
      # no network) leaves no venv and the tritonserver tests skip, saying why.
      if "$tpy" -m venv "$tvenv" \
          && "$tvenv/bin/pip" install --quiet --disable-pip-version-check $tdeps \
          && "$tvenv/bin/pip" install --quiet --disable-pip-version-check --no-deps $tserver; then
        echo "$twant" > "$tstamp"
      else
        echo "[bootstrap] could not set up $tvenv; the tritonserver tests will skip" >&2
        rm -rf "$tvenv"
      fi
    fi
  fi
fi
