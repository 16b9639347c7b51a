"""Run a command in a subprocess, send it a real SIGTERM mid-run, and list what it left behind.

Used by the runtime, export and quantize tests (their conftests put this folder on sys.path).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence


def terminate_mid_run(module: str, args: Sequence[str], *, ready: Callable[[], bool],
                      tmpdir: Path, settle: float = 0.0, timeout: float = 120.0) -> tuple[int, str]:
    """Start ``python -m module args`` with TMPDIR=tmpdir, SIGTERM it once ``ready()`` holds
    (plus ``settle`` seconds); return (exit status, stderr). Fails if it ended before that."""
    proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)],
                            env=dict(os.environ, TMPDIR=str(tmpdir)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready() and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(settle)
    assert proc.poll() is None, f"{module} ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def leftovers(tmpdir: Path) -> list[str]:
    """What a run left in its TMPDIR, less what other libraries make on import in every process
    (ONNX Runtime's '.ses' session id, torch's 'torchinductor_<user>' cache): not ours to clean."""
    return sorted(n for n in os.listdir(tmpdir)
                  if n != ".ses" and not n.startswith("torchinductor_"))
