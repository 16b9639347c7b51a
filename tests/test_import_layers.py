"""The import graph of fcn_deploy points down and has no cycle (docs/architecture.md).

Every module is parsed (not imported), function-local imports included, so a lazy import
cannot hide an upward arrow or a cycle. Lazy imports remain allowed for heavy optional
third-party dependencies; this test only looks at imports of fcn_deploy's own modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fcn_deploy"

#: Floors, bottom first. A module may import its own floor or a lower one (and never form a
#: cycle); the most specific prefix decides a module's floor.
LAYERS: list[tuple[str, ...]] = [
    ("fcn_deploy.errors", "fcn_deploy.constants", "fcn_deploy.meta", "fcn_deploy.fileio",
     "fcn_deploy.imageio", "fcn_deploy.preprocess", "fcn_deploy.metrics", "fcn_deploy.cuda",
     "fcn_deploy.cpu", "fcn_deploy.devices", "fcn_deploy.contract", "fcn_deploy.tiling",
     "fcn_deploy.ortsession", "fcn_deploy.timing"),
    ("fcn_deploy.onnxgraph",),
    ("fcn_deploy.models", "fcn_deploy.datasets", "fcn_deploy.export", "fcn_deploy.quantize"),
    ("fcn_deploy.engine", "fcn_deploy.tensorrt"),
    ("fcn_deploy.runtime",),
    # Measurements that run artifacts through the runtime. quantize.sensitivity lives in
    # quantize/ for discoverability but evaluates INT8 variants with fcn_deploy.evaluate.
    ("fcn_deploy.bench", "fcn_deploy.serve", "fcn_deploy.evaluate", "fcn_deploy.quantize.sensitivity"),
    ("fcn_deploy.cli",),
]

#: Upward imports that are deliberate, each with its reason. Keep this list short.
ALLOWED: dict[tuple[str, str], str] = {
    ("fcn_deploy.meta", "fcn_deploy.onnxgraph"):
        "compatibility: meta.read_onnx_meta/write_onnx_meta moved to onnxgraph (PEP 562 alias)",
}

#: Upward imports not fixed yet (issue 12), each with the fix; none are left now. An entry would
#: name the import and its fix; remove it when the import is gone
#: (test_known_violations_are_still_real fails on a stale entry, so the list only shrinks).
KNOWN: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def own_imports(path: Path) -> set[str]:
    """The fcn_deploy modules ``path`` imports anywhere in its body (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fcn_deploy")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fcn_deploy":
                continue
            for alias in node.names:  # "from fcn_deploy.export import graph" names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    found.discard(here)
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def floor(name: str) -> int | None:
    best, best_len = None, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def unit(name: str) -> str:
    """The package (or top-level module) a module belongs to: the unit cycles are checked on."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): own_imports(p) for p in sorted(ROOT.rglob("*.py"))}


GRAPH = import_graph()


def test_every_module_has_a_floor():
    unplaced = sorted(m for m in GRAPH if m != "fcn_deploy" and floor(m) is None)
    assert unplaced == [], f"add these modules to LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_point_down():
    upward = []
    for src, targets in GRAPH.items():
        if src == "fcn_deploy":
            continue
        for dst in sorted(targets):
            if (src, dst) in ALLOWED or (src, dst) in KNOWN or dst == "fcn_deploy":
                continue
            if floor(dst) > floor(src):
                upward.append(f"{src} (floor {floor(src)}) imports {dst} (floor {floor(dst)})")
    assert upward == [], "upward imports:\n  " + "\n  ".join(upward)


def test_known_violations_are_still_real():
    stale = [f"{a} -> {b}" for a, b in KNOWN if b not in GRAPH.get(a, set())]
    assert stale == [], f"fixed: remove from KNOWN: {stale}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("granularity", ["module", "package"])
def test_no_import_cycle(granularity):
    edges: dict[str, set[str]] = {}
    for src, targets in GRAPH.items():
        for dst in targets:
            if (src, dst) in ALLOWED or (src, dst) in KNOWN or "fcn_deploy" in (src, dst):
                continue
            a, b = (src, dst) if granularity == "module" else (unit(src), unit(dst))
            if a != b:
                edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


def test_the_checker_sees_local_and_relative_imports(tmp_path, monkeypatch):
    """The parser finds an import inside a function and resolves a relative one."""
    pkg = tmp_path / "fcn_deploy" / "runtime"
    pkg.mkdir(parents=True)
    (tmp_path / "fcn_deploy" / "__init__.py").write_text("")
    (tmp_path / "fcn_deploy" / "cli").mkdir()
    (tmp_path / "fcn_deploy" / "cli" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("")
    mod = pkg / "thing.py"
    mod.write_text("def f():\n    from fcn_deploy.cli import main\n    from . import base\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "fcn_deploy")
    assert own_imports(mod) == {"fcn_deploy.cli", "fcn_deploy.runtime.base"}
    assert floor("fcn_deploy.cli") > floor("fcn_deploy.runtime.thing")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
