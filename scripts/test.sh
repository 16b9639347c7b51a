#!/usr/bin/env bash
# The test command from the README: set up (idempotent) and run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
bash "$root/scripts/build_cpp.sh"
cd "$root"
python -m pytest "$@"
