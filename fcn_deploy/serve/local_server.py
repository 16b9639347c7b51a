"""Run a real ``tritonserver`` on localhost from nvidia-pytriton's wheel (tests, benchmarks, demos).

The wheel ships the server binary, its libraries and the Python backend (with one stub per
Python version), not the onnxruntime/tensorrt backends: it serves repositories written with
``fcn-triton --backend python``. ``python_env`` is a venv made with the interpreter whose
libpython the stub links (Debian's /usr/bin/python3.11 here; see docs/serve.md) holding
nvidia-pytriton, numpy<2 and onnxruntime. The server binds 127.0.0.1 only, runs in its own
process group, and :meth:`LocalTritonServer.stop` (also on ``with`` exit) ends it and all its
stubs; if the starting thread dies first, the kernel sends the server SIGTERM (PR_SET_PDEATHSIG),
so start it from a thread that lives as long as the server should.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fcn_deploy.errors import FCNError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process (thread) that started it dies, so a
    killed test run never leaves a server behind (Linux; elsewhere a no-op)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def find_pytriton(python_env: str | os.PathLike) -> tuple[Path, str]:
    """``(site-packages/pytriton/tritonserver, "3.11")`` inside ``python_env``; FCNError if absent."""
    env = Path(python_env)
    for site in sorted(env.glob("lib/python3*/site-packages")):
        server = site / "pytriton" / "tritonserver"
        if (server / "bin" / "tritonserver").is_file():
            return server, site.parent.name[len("python"):]
    raise FCNError(f"no tritonserver in {env}: expected a venv with nvidia-pytriton installed "
                   "(scripts/bootstrap.sh makes .venv-triton; see docs/serve.md)")


@dataclass
class LocalTritonServer:
    """A tritonserver process serving ``repository`` on free localhost ports."""

    repository: Path
    python_env: Path
    http_port: int | None = None
    grpc_port: int | None = None
    startup_timeout_s: float = 90.0
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    log_path: Path | None = field(default=None, init=False)
    _work: Path | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backend_dir(self, server: Path, version: str) -> Path:
        """A backends/ folder whose python/ holds the backend and the stub for ``version``."""
        assert self._work is not None
        python = self._work / "backends" / "python"
        python.mkdir(parents=True)
        for item in (server / "backends" / "python").iterdir():
            if item.is_file():
                os.symlink(item, python / item.name)
        stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise FCNError(f"nvidia-pytriton has no Python-backend stub for Python {version} "
                           f"({stub})")
        shutil.copy2(stub, python / "triton_python_backend_stub")
        return python.parent

    def start(self) -> "LocalTritonServer":
        if self.process is not None:
            raise FCNError("this tritonserver is already running")
        server, version = find_pytriton(self.python_env)
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self._work = Path(tempfile.mkdtemp(prefix="fcn-tritonserver-"))
        backends = self._backend_dir(server, version)
        self.log_path = self._work / "tritonserver.log"
        cmd = [str(server / "bin" / "tritonserver"),
               f"--model-repository={Path(self.repository).resolve()}",
               f"--backend-directory={backends}",
               f"--cache-directory={server / 'caches'}",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
               "--allow-metrics=false", "--allow-gpu-metrics=false", "--allow-cpu-metrics=false",
               "--exit-timeout-secs=5",
               # No GPU memory or pinned host buffers: the Python backend runs on the CPU.
               "--pinned-memory-pool-byte-size=0", *self.extra_args]
        env = dict(os.environ)
        libs = server.parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs)) if p)
        # The stub's embedded interpreter finds its venv (numpy, onnxruntime) through PATH.
        env["PATH"] = f"{Path(self.python_env).resolve() / 'bin'}:{env.get('PATH', '')}"
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FCNError(f"tritonserver exited with status {self.process.returncode} while "
                               f"starting:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.2)
        raise FCNError(f"tritonserver was not ready within {self.startup_timeout_s:.0f} s:\n"
                       f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        """End the server and its stub processes (the whole process group); idempotent."""
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # stubs left behind, or a hung server
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
