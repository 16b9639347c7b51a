"""The paper's timing reproduction with the settings the README's table was measured with.

    python -m benchmarks.reproduce_paper                       # full run, about half an hour
    python -m benchmarks.reproduce_paper --models fcn_alexnet fcn8s_vgg16 --runs 5
    python -m benchmarks.reproduce_paper --quick               # seconds; checks the harness

Same as ``fcn-bench --paper`` with two defaults: reports go to benchmarks/results/<date>/ and the
exported graphs are kept in benchmarks/work/ so a second run skips the exports (both folders
are git-ignored). Any fcn-bench --paper option can be added. For the numbers to mean anything,
run it on an otherwise idle machine: every backend and the FP32 peak share the same cores.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    from fcn_deploy.cli.bench import main as fcn_bench

    args = list(sys.argv[1:] if argv is None else argv)
    if "--output-dir" not in args and "-o" not in args:
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        args += ["--output-dir", str(results / time.strftime("%Y%m%d-%H%M%S"))]
    if "--work-dir" not in args and "--quick" not in args:
        work = HERE / "work"
        work.mkdir(exist_ok=True)
        args += ["--work-dir", str(work)]
    return fcn_bench(["--paper", *args])


if __name__ == "__main__":
    sys.exit(main())
