#!/usr/bin/env bash
# The GPU check of the TensorRT path (scripts/gpu_check.py): on a machine with an NVIDIA GPU,
# installs the GPU extra into the venv, builds and checks FP32/FP16/INT8 plans, the C++ TensorRT
# backend and every `-m tensorrt` test, and writes runs/gpu_check/gpu_check.{md,json}; the last
# lines are `PASS|FAIL name value`. Aim: under 10 minutes. `--dry-run` runs it on a CPU with ONNX
# Runtime standing in for TensorRT (the test suite does, so the script cannot rot).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec python scripts/gpu_check.py "$@"
