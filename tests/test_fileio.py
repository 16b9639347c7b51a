"""fileio: the run plan refuses outputs that would destroy inputs or each other; environment
failures (a file where a folder should be, an unwritable folder, a full disk) are FCNErrors that
name the path and the cause, and leave no temporary file."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fcn_deploy import fileio
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_path, atomic_write_text, check_output_dir


def _plan(tmp_path: Path, output: Path) -> RunFiles:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    plan = RunFiles("fcn-test")
    plan.read("model", model)
    plan.write("output", output)
    return plan


def test_output_equal_to_an_input_is_refused_through_symlinks_and_hard_links(tmp_path):
    with pytest.raises(FCNError, match=r"fcn-test: output .*m\.onnx is also the model .*m\.onnx: "
                                       r"writing it would destroy that input; choose another"):
        _plan(tmp_path, tmp_path / "m.onnx").check()
    (tmp_path / "alias").symlink_to(tmp_path)
    with pytest.raises(FCNError, match=r"output .*alias/m\.onnx \(which resolves to .*/m\.onnx\) "
                                       "is also the model"):
        _plan(tmp_path, tmp_path / "alias" / "m.onnx").check()
    (tmp_path / "m.onnx").write_bytes(b"model")
    os.link(tmp_path / "m.onnx", tmp_path / "hard.onnx")
    with pytest.raises(FCNError, match=r"output .*hard\.onnx is also the model"):
        _plan(tmp_path, tmp_path / "hard.onnx").check()
    assert (tmp_path / "m.onnx").read_bytes() == b"model"
    _plan(tmp_path, tmp_path / "other.onnx").check()  # a distinct path is fine


def test_two_outputs_on_one_file_and_outputs_inside_a_scanned_folder(tmp_path):
    plan = RunFiles("fcn-test")
    plan.write("mask of x.jpg", tmp_path / "x_overlay.png")
    plan.write("overlay of x.jpg", tmp_path / "sub" / ".." / "x_overlay.png")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FCNError, match=r"overlay of x\.jpg .* and mask of x\.jpg .*x_overlay\.png "
                                       "are the same file; one would overwrite the other"):
        plan.check()

    images = tmp_path / "images"
    (images / "deep").mkdir(parents=True)
    flat = RunFiles("fcn-test")
    flat.read_folder("input folder", images)
    flat.write("mask", images / "deep" / "a.png")  # not scanned without recursion
    assert flat.conflicts() == []
    flat.write("mask", images / "b.png")
    assert flat.conflicts() == [f"mask {images / 'b.png'} would be written in the input folder "
                                f"{images}, which this run reads"]
    deep = RunFiles("fcn-test")
    deep.read_folder("input folder", images, recursive=True)
    deep.write("mask", images / "deep" / "a.png")
    assert "would be written under the input folder" in deep.conflicts()[0]


def test_a_file_where_a_folder_should_be(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FCNError, match=r"output folder .*file\.txt/sub cannot be created: "
                                       r".*file\.txt is a file, not a folder"):
        check_output_dir(tmp_path / "file.txt" / "sub" / "out.onnx")
    plan = RunFiles("fcn-test")
    plan.write_folder("output folder", tmp_path / "file.txt")
    with pytest.raises(FCNError, match=r"output folder .*file\.txt is a file; expected a folder"):
        plan.check()


def test_unwritable_folder_is_named_before_any_work(tmp_path, monkeypatch):
    real_open = os.open

    def refuse(path, flags, *args):
        if Path(path).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(FCNError, match=rf"output folder {tmp_path} is not writable: "
                                       "Permission denied"):
        check_output_dir(tmp_path / "out.onnx")
    with pytest.raises(FCNError, match=r"cannot write .*out\.onnx: Permission denied"):
        atomic_write_text(tmp_path / "out.onnx", "x")


def test_disk_full_is_an_error_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "report.md").write_text("previous")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(FCNError, match=r"cannot write .*report\.md: no space left on the device "
                                       r"\(disk full\)"):
        atomic_write_text(tmp_path / "report.md", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temp file
    assert (tmp_path / "report.md").read_text() == "previous"


def test_interrupt_inside_atomic_path_removes_the_temp_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "x.onnx", suffix=".onnx") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_os_error_reason_words():
    assert fileio.os_error_reason(OSError(errno.ENOSPC, "x")) == \
        "no space left on the device (disk full)"
    assert fileio.os_error_reason(OSError(errno.EACCES, "Permission denied")) == "Permission denied"


def test_an_interrupt_inside_a_temp_file_creation_is_raised_after_it(tmp_path):
    """A signal mask covers one thread only: a SIGTERM that another thread receives still runs
    the Python handler in the main thread. The command's handler must then wait for the
    critical section (create + name/remove the temp file) and raise right after it."""
    import pytest

    from fcn_deploy.cli import common
    from fcn_deploy.fileio import _signals_deferred

    probe = tmp_path / ".probe"
    with pytest.raises(common.Terminated):
        with _signals_deferred():
            probe.write_text("x")
            common._raise_terminated(15, None)  # as the handler would run here
            assert probe.exists()  # not interrupted in the middle
            probe.unlink()
    assert not probe.exists()
    with pytest.raises(KeyboardInterrupt):
        with _signals_deferred():
            with _signals_deferred():
                common._raise_interrupted(2, None)
            assert True  # still inside the outer section: nothing raised yet
    common._term_received.clear()


def test_check_without_create_makes_no_folder_but_finds_what_would_fail(tmp_path):
    out = tmp_path / "a" / "b"
    plan = RunFiles("fcn-test")
    plan.write_folder("output folder", out)
    plan.write("output", out / "x.png")
    plan.check(create=False)
    assert not (tmp_path / "a").exists()  # nothing made, no probe file left behind
    assert list(tmp_path.iterdir()) == []
    plan.check()
    assert out.is_dir()
    (tmp_path / "file").write_text("x")
    blocked = RunFiles("fcn-test")
    blocked.write_folder("output folder", tmp_path / "file" / "out")
    with pytest.raises(FCNError, match=r"output folder .*file/out cannot be created: .*file is a "
                                       r"file, not a folder"):
        blocked.check(create=False)
