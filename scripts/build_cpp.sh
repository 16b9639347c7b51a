#!/usr/bin/env bash
# Build the C++ runtime (cpp/) and run its CTest suite. Idempotent and incremental: dependencies
# are installed/fetched only when missing (scripts/cpp_deps.sh) and cpp/build is reused, so a
# second run only re-links what changed. Called by scripts/test.sh before pytest; the Python
# tests in tests/cpp/ then compare the built fcn-segment-cpp with the Python runtime.
#
#   FCN_CPP_BUILD_DIR  build folder (default cpp/build)
#   FCN_CPP_JOBS       parallel compile jobs (default: number of cores)
#   ONNXRUNTIME_ROOT   use this ONNX Runtime (include/ + lib/) instead of fetching one
#   TENSORRT_ROOT      build the native TensorRT backend too (needs TensorRT and the CUDA toolkit)
#   FCN_SKIP_CPP=1     do nothing (a quick Python-only run of scripts/test.sh)
set -euo pipefail
if [ "${FCN_SKIP_CPP:-0}" = 1 ]; then
  echo "[build_cpp] skipped (FCN_SKIP_CPP=1)"
  exit 0
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/cpp_deps.sh"
build="${FCN_CPP_BUILD_DIR:-$root/cpp/build}"
jobs="${FCN_CPP_JOBS:-$(nproc)}"

args=(-DONNXRUNTIME_ROOT="$ONNXRUNTIME_ROOT")
[ -n "${TENSORRT_ROOT:-}" ] && args+=(-DTENSORRT_ROOT="$TENSORRT_ROOT")
if [ ! -f "$build/CMakeCache.txt" ]; then
  command -v ninja >/dev/null && args+=(-G Ninja)
  args+=(-DCMAKE_BUILD_TYPE=Release)
fi
echo "[build_cpp] configuring $build"
cmake -S "$root/cpp" -B "$build" "${args[@]}" >/dev/null
echo "[build_cpp] building ($jobs jobs)"
cmake --build "$build" --parallel "$jobs"
echo "[build_cpp] running ctest"
ctest --test-dir "$build" --output-on-failure
