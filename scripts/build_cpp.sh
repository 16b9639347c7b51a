#!/usr/bin/env bash
# Build the C++ runtime (cpp/) and run its CTest suite. Idempotent and incremental: dependencies
# are installed/fetched only when missing (scripts/cpp_deps.sh) and cpp/build is reused, so a
# second run only re-links what changed. Called by scripts/test.sh before pytest; the Python
# tests in tests/cpp/ then compare the built fcn-segment-cpp with the Python runtime.
#
#   FCN_CPP_BUILD_DIR  build folder (default cpp/build)
#   FCN_CPP_JOBS       parallel compile jobs (default: number of cores)
#   ONNXRUNTIME_ROOT   use this ONNX Runtime (include/ + lib/) instead of fetching one
#   TENSORRT_ROOT      build the native TensorRT backend too (needs TensorRT and the CUDA toolkit);
#                      TensorRT_INCLUDE_DIR / TensorRT_LIBRARY_DIR when headers and libnvinfer
#                      live apart (the pip wheel has no headers; see cpp/cmake/FindTensorRT.cmake)
#   FCN_WITH_TENSORRT  AUTO (default), ON (fail when TensorRT is not found, saying why) or OFF
#   FCN_TENSORRT_HEADERS  folder of TensorRT header sets <version>/include to compile (not link)
#                      the TensorRT sources against on every run (default ../shared/third_party/
#                      tensorrt-headers beside the checkout; NVIDIA's 10.16 and 11.1 headers)
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
[ -n "${FCN_WITH_TENSORRT:-}" ] && args+=(-DFCN_WITH_TENSORRT="$FCN_WITH_TENSORRT")
[ -n "${TensorRT_INCLUDE_DIR:-}" ] && args+=(-DTensorRT_INCLUDE_DIR="$TensorRT_INCLUDE_DIR")
[ -n "${TensorRT_LIBRARY_DIR:-}" ] && args+=(-DTensorRT_LIBRARY_DIR="$TensorRT_LIBRARY_DIR")
args+=(-DTensorRT_PYTHON="${FCN_VENV:-$root/.venv}/bin/python")
# TensorRT header sets for the compile-only check (every run; no GPU or library needed).
trt_headers="${FCN_TENSORRT_HEADERS:-$root/../shared/third_party/tensorrt-headers}"
trt_sets=()
for inc in "$trt_headers"/*/include; do
  [ -f "$inc/NvInferRuntime.h" ] && trt_sets+=("$(cd "$inc" && pwd)")
done
if [ ${#trt_sets[@]} -gt 0 ]; then
  args+=(-DFCN_TENSORRT_CHECK_HEADERS="$(IFS=';'; echo "${trt_sets[*]}")")
  echo "[build_cpp] TensorRT sources will be compiled (not linked) against: ${trt_sets[*]}"
else
  args+=(-DFCN_TENSORRT_CHECK_HEADERS=)
  echo "[build_cpp] TensorRT compile check skipped: no <version>/include/NvInferRuntime.h under" \
       "$trt_headers (set FCN_TENSORRT_HEADERS to NVIDIA/TensorRT release headers)"
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  command -v ninja >/dev/null && args+=(-G Ninja)
  args+=(-DCMAKE_BUILD_TYPE=Release)
fi
echo "[build_cpp] configuring $build"
mkdir -p "$build"
if ! cmake -S "$root/cpp" -B "$build" "${args[@]}" > "$build/configure.log" 2>&1; then
  cat "$build/configure.log" >&2
  exit 1
fi
grep -E "fcn_runtime:" "$build/configure.log" | sed 's/^-- /[build_cpp] /' || true
echo "[build_cpp] building ($jobs jobs)"
cmake --build "$build" --parallel "$jobs"
echo "[build_cpp] running ctest"
ctest --test-dir "$build" --output-on-failure
