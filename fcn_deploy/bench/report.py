"""Benchmark reports: flat JSON records, CSV, Markdown tables; every file written atomically.

A report is a list of flat records (``{name: number | str | bool | None}``, no nesting), each with
a ``kind`` ("timing", "peak", "table1", "ratio", "target", ...), so it loads straight into a
spreadsheet or ``pandas.DataFrame``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from fcn_deploy import __version__
from fcn_deploy.cpu import cpu_features
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_write_text, check_output_dir, ensure_output_folder

Record = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One Markdown column: record key, header, and how to format the value."""

    key: str
    header: str
    fmt: str | Callable[[Any], str] = "{}"

    def render(self, record: Mapping[str, Any]) -> str:
        value = record.get(self.key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if callable(self.fmt):
            return self.fmt(value)
        return self.fmt.format(value)


def _check_flat(record: Mapping[str, Any]) -> Record:
    out = {}
    for key, value in record.items():
        if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            out[key] = value
        elif isinstance(value, float):
            out[key] = value if math.isfinite(value) else None
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
            out[key] = value.item()
        else:
            raise TypeError(f"report record field {key!r} is a {type(value).__name__}; records "
                            "are flat (numbers, strings, booleans, None)")
    return out


def to_json(records: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps([_check_flat(r) for r in records], indent=1) + "\n"


def to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV with the union of all keys as columns (first-seen order)."""
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(_check_flat(r))
    return buf.getvalue()


def markdown_table(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    head = "| " + " | ".join(c.header for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(c.render(r).replace("|", "/") for c in columns) + " |"
            for r in records]
    return "\n".join([head, rule, *body])


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write atomically (fails with FCNError when the folder does not exist)."""
    return atomic_write_text(check_output_dir(path), text)


def write_json(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    return write_text(path, to_json(records))


def write_csv(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    return write_text(path, to_csv(records))


def read_json(path: str | os.PathLike) -> list[Record]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FCNError(f"{path} is not a readable benchmark report ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise FCNError(f"{path}: expected a JSON list of flat records")
    return data


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create the report folder (its parent must exist: we never guess folders)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FCNError(f"output folder {path} is a file; expected a folder for the reports")
    parent = path.parent if str(path.parent) else Path(".")
    if not path.is_dir() and not parent.is_dir():
        if parent.exists() or any(p.exists() and not p.is_dir() for p in parent.parents):
            ensure_output_folder(path, create=False)  # "... cannot be created: X is a file"
        raise FCNError(f"folder {parent} does not exist (for reports in {path}); create it first")
    return ensure_output_folder(path)  # created, and probed for writability


def environment(*, threads: int | None = None) -> Record:
    """Where the numbers were measured: host, CPU, cores, thread setting, library versions."""
    import sys

    import numpy

    cpu = cpu_features()
    env: Record = {
        "kind": "environment",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpu": cpu.name,
        "cpu_int8": cpu.describe_int8(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "fcn_deploy": __version__,
    }
    from importlib import metadata

    for module, dists in (("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
                          ("torch", ("torch",)), ("onnx", ("onnx",)), ("tensorrt", ("tensorrt",))):
        mod = sys.modules.get(module)  # never import a heavy module just to report it
        version = getattr(mod, "__version__", None) if mod is not None else None
        for dist in dists if version is None else ():
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        env[module] = version
    env["load_avg_1min_at_start"] = load_avg_1min()
    return env


def load_avg_1min() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
