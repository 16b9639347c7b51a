#!/usr/bin/env bash
# The main job from the README: set up (idempotent), then train -> export -> FP16/INT8 ->
# evaluate -> benchmark -> segment -> report, all on the CPU. Extra arguments go to demo.py
# (--out DIR, --fresh, --max-iters N).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
python scripts/demo.py "$@"
