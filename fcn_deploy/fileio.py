"""Safe file output: atomic writes, and the check that a run never writes over its own inputs.

``atomic_path`` writes through a temp file in the destination folder and renames it on success:
a failed or interrupted write leaves no half-written artifact and keeps the previous one.
``RunFiles`` is the plan of a command's inputs and outputs, checked once before any work: no
output may be (or resolve to, through symlinks or hard links) an input, another output of the
same run, or land inside a folder the run reads. Environment failures (unwritable folder, a file
where a folder should be, a full disk) become FCNErrors naming the path and the cause.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from fcn_deploy.errors import FCNError


def os_error_reason(exc: OSError) -> str:
    """The cause of an OSError in words ('No space left on device'), without the path."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device (disk full)"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


#: Depth of open critical sections (main thread) and the interrupts that arrived meanwhile.
_critical_depth = 0
_deferred: list[Callable[[], None]] = []


def defer_interrupt(action: Callable[[], None]) -> bool:
    """For a signal handler: inside a critical section (a temporary file being created and
    named), run ``action`` (which raises) when the section ends and return True; else False.

    A blocked signal mask covers only the thread that set it: a SIGTERM delivered to another
    thread (ONNX Runtime's, torch's) still runs Python's handler in the main thread at the next
    bytecode, which is why handlers must ask here as well."""
    if _critical_depth:
        _deferred.append(action)
        return True
    return False


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back meanwhile (they are delivered right after), so a file created
    here is removed or recorded before an interrupt could leave it behind."""
    global _critical_depth
    masked = hasattr(signal, "pthread_sigmask")
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) \
        if masked else None
    _critical_depth += 1
    try:
        yield
    finally:
        _critical_depth -= 1
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if not _critical_depth and _deferred:
            action = _deferred[0]
            _deferred.clear()
            action()


def _probe_writable(folder: Path, *, what: str) -> None:
    """Create and remove a hidden file in ``folder``: the only test root and ACLs cannot fool."""
    probe = folder / f".fcn-write-test.{secrets.token_hex(6)}"
    with _signals_deferred():
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise FCNError(f"{what} {folder} is not writable: {os_error_reason(exc)}") from None
        with contextlib.suppress(OSError):
            probe.unlink()


def _check_folder(folder: Path, *, what: str, create: bool, probe: bool,
                  dry: bool = False) -> None:
    """``dry``: a missing folder is not created, only checked that it could be (its nearest
    existing folder is writable)."""
    if folder.is_dir():
        if probe:
            _probe_writable(folder, what=what)
        return
    ancestor = _existing_ancestor(folder)
    if ancestor.exists() and not ancestor.is_dir():
        raise FCNError(f"{what} {folder} cannot be created: {ancestor} is a file, not a folder")
    if not create:
        raise FCNError(f"{what} {folder} does not exist; create it first")
    if dry:
        if probe:
            _probe_writable(ancestor, what=f"{what} {folder} cannot be created: folder")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FCNError(f"{what} {folder} cannot be created: {os_error_reason(exc)}") from None
    if probe:
        _probe_writable(folder, what=what)


def check_output_dir(path: str | os.PathLike, *, probe: bool = True) -> Path:
    """Return ``path`` as a Path after checking that its folder exists and is writable.

    We never guess folders: a missing folder is an error, so is a file where it should be.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    _check_folder(parent, what="output folder", create=False, probe=probe)
    if path.is_dir():
        raise FCNError(f"output {path} is a folder; expected a file name")
    return path


def ensure_output_folder(path: str | os.PathLike, *, create: bool = True) -> Path:
    """Create (if ``create``) and check an output folder: writable, not a file, no file above it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FCNError(f"output folder {path} is a file; expected a folder")
    _check_folder(path, what="output folder", create=create, probe=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it onto ``path`` on success.

    On any exception (SIGTERM and Ctrl-C included: commands turn both into exceptions) the
    temporary file is removed and ``path`` is left as it was. An OSError while writing (disk
    full, permission) becomes an FCNError naming ``path``.
    """
    path = check_output_dir(path, probe=False)
    tmp_path = None
    try:
        with _signals_deferred():  # the temp file exists only once tmp_path names it
            tmp_path = _new_temp_file(path, suffix or ".tmp")
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        if isinstance(exc, OSError):
            raise FCNError(f"cannot write {path}: {os_error_reason(exc)}") from None
        raise


def _new_temp_file(path: Path, suffix: str) -> Path:
    # Created like a plain open() would (mode 0666 minus the umask), unlike mkstemp's 0600,
    # without touching the process-wide umask; O_EXCL makes the random name ours alone.
    while True:
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp_path
        except FileExistsError:
            continue


@contextlib.contextmanager
def scratch_dir(output: str | os.PathLike) -> Iterator[Path]:
    """A private hidden folder next to ``output`` for a stage's temporary work; removed on every
    exit path (SIGTERM included), so nothing is left in the system's temporary folder."""
    import shutil
    import tempfile

    output = Path(output)
    folder = None
    try:
        with _signals_deferred():  # the folder exists only once ``folder`` names it
            folder = Path(tempfile.mkdtemp(prefix=f".{output.name}.",
                                           dir=output.parent if str(output.parent) else "."))
        yield folder
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# -- the plan of a run's files ---------------------------------------------------------------
def _key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _inode(path: Path) -> tuple[int, int] | None:
    """Device and inode of an existing file (catches hard links), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inside(path: Path, folder: Path, *, recursive: bool) -> bool:
    parent = Path(os.path.realpath(path)).parent
    root = Path(os.path.realpath(folder))
    return parent == root or (recursive and root in parent.parents)


def _shown(path: Path) -> str:
    real = os.path.realpath(path)
    return f"{path} (which resolves to {real})" if real != os.path.abspath(path) else str(path)


@dataclass
class RunFiles:
    """Every file a command reads and writes, checked once before the work starts.

    >>> plan = RunFiles("fcn-export")
    >>> plan.read("checkpoint", "x.pt"); plan.write("output", "x.pt")
    >>> plan.check()   # FCNError: fcn-export: output x.pt is also the checkpoint ...

    ``read_folder`` registers a folder the run scans (``recursive``: its subfolders too): no
    output may be written where the scan would find it. ``write_folder`` registers an output
    folder that ``check`` creates (if allowed) and probes for writability.
    """

    command: str
    inputs: list[tuple[str, Path]] = field(default_factory=list)
    folders: list[tuple[str, Path, bool]] = field(default_factory=list)
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    out_folders: list[tuple[str, Path, bool]] = field(default_factory=list)

    def read(self, what: str, path: str | os.PathLike | None) -> None:
        if path is not None:
            self.inputs.append((what, Path(path)))

    def read_model(self, what: str, path: str | os.PathLike | None) -> None:
        """A model file and, for ONNX, the ``<name>.data`` weight file that may sit next to it."""
        if path is not None:
            self.read(what, path)
            if Path(path).suffix.lower() == ".onnx":
                self.read(f"{what}'s weights", Path(path).parent / (Path(path).name + ".data"))

    def read_folder(self, what: str, path: str | os.PathLike, *, recursive: bool = False) -> None:
        self.folders.append((what, Path(path), recursive))

    def write(self, what: str, path: str | os.PathLike | None) -> None:
        if path is not None:
            self.outputs.append((what, Path(path)))

    def write_folder(self, what: str, path: str | os.PathLike, *, create: bool = True) -> None:
        self.out_folders.append((what, Path(path), create))

    def conflicts(self) -> list[str]:
        """Every way an output would destroy an input or another output, in words."""
        problems: list[str] = []
        by_key: dict[object, tuple[str, Path]] = {}
        for what, src in self.inputs:
            by_key.setdefault(_key(src), (what, src))
            by_key.setdefault(_inode(src), (what, src))
        by_key.pop(None, None)
        written: dict[object, tuple[str, Path]] = {}
        for what, out in self.outputs:
            keys = [k for k in (_key(out), _inode(out)) if k is not None]
            hit = next((by_key[k] for k in keys if k in by_key), None)
            if hit is not None:
                problems.append(f"{what} {_shown(out)} is also the {hit[0]} {hit[1]}: "
                                "writing it would destroy that input")
            for folder_what, folder, recursive in self.folders:
                if _inside(out, folder, recursive=recursive):
                    where = "under" if recursive else "in"
                    problems.append(f"{what} {_shown(out)} would be written {where} the "
                                    f"{folder_what} {folder}, which this run reads")
            other = next((written[k] for k in keys if k in written), None)
            if other is not None:
                problems.append(f"{what} {out} and {other[0]} {other[1]} are the same file; "
                                "one would overwrite the other")
            for k in keys:
                written.setdefault(k, (what, out))
        return problems

    def check(self, *, create: bool = True) -> None:
        """Refuse (FCNError) any conflict, then create/probe the output folders.

        ``create=False`` checks the same and creates nothing (a missing output folder: that it
        could be made), for a command that opens its model first and calls ``check()`` after:
        a model or server that fails then leaves no empty folder behind.
        """
        problems = self.conflicts()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise FCNError(f"{self.command}: {problems[0]}{more}; choose another output path")
        for what, folder, may_create in self.out_folders:
            if folder.exists() and not folder.is_dir():
                raise FCNError(f"{what} {folder} is a file; expected a folder")
            _check_folder(folder, what=what, create=may_create, probe=True, dry=not create)
        checked = {_key(f) for _, f, _ in self.out_folders}
        for what, out in self.outputs:
            parent = out.parent if str(out.parent) else Path(".")
            if out.is_dir():
                raise FCNError(f"{what} {out} is a folder; expected a file name")
            if _key(parent) not in checked and not any(
                    _inside(out, f, recursive=True) for _, f, _ in self.out_folders):
                _check_folder(parent, what="output folder", create=False, probe=True)
                checked.add(_key(parent))


def check_run_files(command: str, *, inputs: Sequence[tuple[str, str | os.PathLike | None]] = (),
                    outputs: Sequence[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """One-call form of :class:`RunFiles` for commands with a few named files."""
    plan = RunFiles(command)
    for what, path in inputs:
        plan.read(what, path)
    for what, path in outputs:
        plan.write(what, path)
    plan.check()


def url_scheme(location: str | os.PathLike) -> str | None:
    """The scheme of a model URL (``triton`` of ``triton://host:8000/fcn8s``); None for a path."""
    match = re.match(r"^([a-z][a-z0-9+.-]*)://", str(location)) if isinstance(location, str) else None
    return match.group(1) if match else None

