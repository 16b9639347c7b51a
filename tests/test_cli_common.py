"""run_main: what reaches the user when a command fails on the environment, not on its input."""
from __future__ import annotations

import errno
import signal
import warnings

import pytest

from fcn_deploy.cli.common import run_main


def _raising(exc):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize("exc, line", [
    (MemoryError(), "error: out of memory; use smaller inputs or batches, or a machine with more "
                    "memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                  "you tried to allocate 99 bytes.\nsecond line"),
     "error: out of memory ([enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
     "memory: you tried to allocate 99 bytes.); use smaller inputs or batches, or a machine with "
     "more memory"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out.onnx"),
     "error: /data/out.onnx: no space left on the device (disk full)"),
])
def test_environment_failures_are_one_line_exit_2(exc, line, capsys):
    assert run_main(_raising(exc)) == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(RuntimeError, match="index out of range"):
        run_main(_raising(RuntimeError("index out of range")))


def test_sigterm_is_handled_like_ctrl_c_and_the_handler_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def main(argv):
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the command")

    assert run_main(main) == 143
    assert capsys.readouterr().err == "terminated\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_warnings_are_one_line(capsys):
    def main(argv):
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("--threads 9 is more than the 2 CPU cores available here")
        return 0

    assert run_main(main) == 0
    assert capsys.readouterr().err == \
        "warning: --threads 9 is more than the 2 CPU cores available here\n"


def test_sigterm_turned_into_another_error_still_ends_as_terminated(capsys):
    """SIGTERM landing in an import became numpy's ImportError, and fcn-triton then said
    'install tritonclient' (exit 2): the command was terminated, and says so."""
    from fcn_deploy.errors import FCNError

    def main(argv):
        try:
            signal.raise_signal(signal.SIGTERM)
        except BaseException:
            raise ImportError("_multiarray_umath failed to import") from None
        raise AssertionError("SIGTERM did not interrupt the command")

    def main_fcn(argv):
        try:
            main(argv)
        except ImportError as exc:
            raise FCNError(f"Triton's model-config schema comes with tritonclient ({exc})") \
                from None

    for command in (main, main_fcn):
        assert run_main(command) == 143
        assert capsys.readouterr().err == "terminated\n"
    # the next command in this process is not taken for terminated
    assert run_main(lambda argv: 0) == 0
    with pytest.raises(RuntimeError, match="index out of range"):
        run_main(_raising(RuntimeError("index out of range")))
