#!/usr/bin/env bash
# Dependencies of the C++ runtime (cpp/), idempotent: a second run changes nothing and takes a second.
#
#   1. Debian packages: a C++ compiler, cmake, libopencv-dev, nlohmann-json3-dev, zlib1g-dev
#      (apt-get runs only when one is missing).
#   2. ONNX Runtime for C++, assembled in third_party/onnxruntime/{include,lib} (git-ignored):
#      - headers from Debian 13's libonnxruntime-dev package, fetched with apt-get through a
#        private apt state (a temporary trixie source, nothing installed on this system) and
#        unpacked with dpkg -x;
#      - the library from the onnxruntime wheel in the project's venv (onnxruntime/capi/
#        libonnxruntime.so.1.x), linked there as libonnxruntime.so(.1).
#      The C API is versioned and backward compatible, so older headers work with the newer
#      library; the runtime checks the API version when it starts.
#
# Skip step 2 by exporting ONNXRUNTIME_ROOT (a folder with include/ and lib/, e.g. an official
# ONNX Runtime release, or /usr on Debian 13 with libonnxruntime-dev installed).
#
# Run it, or source it: sourcing exports ONNXRUNTIME_ROOT for scripts/build_cpp.sh.
set -euo pipefail
_fcn_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_fcn_log() { echo "[cpp_deps] $*"; }

_fcn_apt_packages() {
  local want=(g++ cmake ninja-build pkg-config libopencv-dev nlohmann-json3-dev zlib1g-dev)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  _fcn_log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The Debian mirror apt already uses here (first non-security URI), so no new host is contacted.
_fcn_debian_mirror() {
  local uri
  uri="$(grep -hsE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | grep -E '/debian/?$' | head -n1 || true)"
  if [ -z "$uri" ]; then
    uri="$(grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -v security | grep -E '/debian/?$' \
          | head -n1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Headers: Debian 13 (trixie) libonnxruntime-dev, downloaded through a private apt state dir.
_fcn_ort_headers() {
  local dest="$1" work="$_fcn_root/third_party/.apt-trixie"
  [ -f "$dest/include/onnxruntime_cxx_api.h" ] && return 0
  local mirror; mirror="$(_fcn_debian_mirror)"
  _fcn_log "fetching Debian 13 libonnxruntime-dev (headers) from $mirror"
  rm -rf "$work"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources" "$work/deb"
  : > "$work/status"
  cat > "$work/sources/trixie.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/sources"
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
              -o "Dir::State::status=$work/status" -o "Acquire::Languages=none"
              -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
  apt-get "${opts[@]}" -q update >/dev/null
  (cd "$work/deb" && apt-get "${opts[@]}" -q download libonnxruntime-dev >/dev/null)
  local deb; deb="$(ls "$work"/deb/libonnxruntime-dev_*.deb | head -n1)"
  dpkg -x "$deb" "$work/x"
  mkdir -p "$dest/include"
  cp -r "$work/x/usr/include/onnxruntime/." "$dest/include/"
  basename "$deb" > "$dest/include/DEBIAN_PACKAGE"
  rm -rf "$work"
  _fcn_log "headers from $(cat "$dest/include/DEBIAN_PACKAGE") in $dest/include"
}

# Library: the onnxruntime wheel's shared library from the project's venv.
_fcn_ort_library() {
  local dest="$1"
  local py="${FCN_VENV:-$_fcn_root/.venv}/bin/python"
  [ -x "$py" ] || py="$(command -v python3)"
  local capi
  capi="$("$py" -c 'import os, onnxruntime; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null)" || {
    echo "[cpp_deps] error: the onnxruntime Python package is not installed for $py;" \
         "run scripts/bootstrap.sh first, or export ONNXRUNTIME_ROOT=<ONNX Runtime release>" >&2
    return 1
  }
  local so; so="$(ls "$capi"/libonnxruntime.so.1.* 2>/dev/null | sort -V | tail -n1)"
  if [ -z "$so" ]; then
    echo "[cpp_deps] error: no libonnxruntime.so.1.* in $capi" >&2
    return 1
  fi
  mkdir -p "$dest/lib"
  if [ "$(readlink "$dest/lib/libonnxruntime.so.1" 2>/dev/null)" != "$so" ]; then
    ln -sfn "$so" "$dest/lib/libonnxruntime.so.1"
    ln -sfn "libonnxruntime.so.1" "$dest/lib/libonnxruntime.so"
    _fcn_log "library $so"
  fi
}

_fcn_apt_packages
if [ -n "${ONNXRUNTIME_ROOT:-}" ]; then
  _fcn_log "using ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT"
else
  _fcn_ort="$_fcn_root/third_party/onnxruntime"
  _fcn_ort_headers "$_fcn_ort"
  _fcn_ort_library "$_fcn_ort"
  export ONNXRUNTIME_ROOT="$_fcn_ort"
fi
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT"
fi
