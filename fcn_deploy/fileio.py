"""Atomic file writes: a failed write leaves no half-written artifact and keeps the previous one."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

from fcn_deploy.errors import FCNError


def check_output_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that its folder exists (we never guess folders)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FCNError(f"output folder {parent} does not exist (for {path}); create it first")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = check_output_dir(path)
    # Created like a plain open() would (mode 0666 minus the umask), unlike mkstemp's 0600,
    # without touching the process-wide umask; O_EXCL makes the random name ours alone.
    while True:
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix or '.tmp'}"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
