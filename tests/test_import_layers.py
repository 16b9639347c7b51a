"""The import graph of fcn_deploy points down and has no cycle (docs/architecture.md).

Every module is parsed (not imported), function-local imports included, so a lazy import
cannot hide an upward arrow or a cycle. Lazy imports remain allowed for heavy optional
third-party dependencies, and for a project module only where importing it at the top would
load a heavy dependency the importing module does not load yet (``test_own_imports_are_lazy_
only_to_keep_heavy_dependencies_out``).
"""
from __future__ import annotations

import ast
import subprocess
import sys
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


def from_target(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` statement in ``package`` reads (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


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
            target = from_target(node, package)
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


# -- function-local imports of the project's own modules ------------------------------------------
REPO = ROOT.parent
#: Third-party packages slow enough to import (or optional enough) that a module which does not
#: need them at import time must not load them: torch (~1-2 s), onnx and onnxruntime (the ONNX
#: path must not load torch, the runtime path not even onnx), and the optional GPU / serving /
#: plotting stacks.
HEAVY = frozenset({"torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "tensorrt",
                   "cuda", "ray", "tritonclient", "matplotlib"})
#: Function-local imports of our own modules kept for a reason other than a heavy dependency.
LAZY_OWN: dict[tuple[str, str], str] = {
    ("fcn_deploy.meta", "fcn_deploy.onnxgraph"):
        "compatibility alias (PEP 562 __getattr__): onnxgraph imports meta, so meta cannot "
        "import onnxgraph at its top",
}


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for path in ((REPO / rel).with_suffix(".py"), REPO / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def _own(name: str) -> bool:
    return name.split(".")[0] in ("fcn_deploy", "training")


def _import_targets(node: ast.AST, package: str) -> tuple[set[str], set[str]]:
    """(own modules, third-party top-level names) one import statement loads."""
    own: set[str] = set()
    third: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            (own if _own(alias.name) else third).add(alias.name if _own(alias.name)
                                                     else alias.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom):
        target = from_target(node, package)
        if not _own(target):
            third.add(target.split(".")[0])
        else:
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                own.add(sub if _module_file(sub) else target)
    return own, third


def _scan(path: Path, name: str) -> tuple[set[str], set[str], list[tuple[int, str]]]:
    """(own modules imported at import time, third-party names imported at import time,
    [(line, own module) imported inside a function])."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_own: set[str] = set()
    top_third: set[str] = set()
    local: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                continue  # never executed
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                own, third = _import_targets(child, package)
                if in_function:
                    local.extend((child.lineno, t) for t in sorted(own))
                else:
                    top_own.update(own)
                    top_third.update(third)
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    top_own.discard(name)
    return top_own, top_third, local


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _source_modules() -> dict[str, Path]:
    found = {}
    for top in ("fcn_deploy", "training"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


SOURCES = _source_modules()
SCANNED = {name: _scan(path, name) for name, path in SOURCES.items()}


def heavy_loaded(name: str) -> frozenset[str]:
    """The HEAVY packages importing module ``name`` loads: everything reachable through
    import-time imports, parent packages included (importing ``a.b`` runs ``a/__init__``)."""
    seen: set[str] = set()
    todo = _with_parents(name)
    got: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in SCANNED:
            continue
        seen.add(mod)
        top_own, top_third, _ = SCANNED[mod]
        got.update(top_third & HEAVY)
        for dep in top_own:
            todo.extend(_with_parents(dep))
    return frozenset(got)


def unjustified_local_imports() -> list[str]:
    bad = []
    for name, (_, _, local) in SCANNED.items():
        mine = heavy_loaded(name)
        for line, target in local:
            if (name, target) in LAZY_OWN:
                continue
            extra = heavy_loaded(target) - mine
            if not extra:
                bad.append(f"{SOURCES[name].relative_to(REPO)}:{line} imports {target} inside a "
                           f"function, though it loads nothing heavy {name} does not load already")
    return bad


def test_own_imports_are_lazy_only_to_keep_heavy_dependencies_out():
    """A project module is imported inside a function only where importing it at the top would
    load torch/onnx/... into a module that does not load them (e.g. fcn_deploy.runtime, the
    commands' start-up); anything else goes to the module's top, where the structure shows."""
    bad = unjustified_local_imports()
    assert bad == [], "import at module top:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("module", ["fcn_deploy.runtime", "fcn_deploy.cli.segment",
                                    "fcn_deploy.export.verify"])
def test_the_heavy_import_analysis_sees_what_python_loads(module):
    """The analysis agrees with a fresh interpreter, on light paths and on an ONNX one."""
    code = (f"import sys, {module}\n"
            f"print(' '.join(sorted(h for h in {sorted(HEAVY)!r} if h in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.split()
    assert set(loaded) == heavy_loaded(module)
    assert ("onnx" in loaded) == (module == "fcn_deploy.export.verify") and "torch" not in loaded


def test_lazy_exceptions_are_still_lazy_imports():
    assert set(LAZY_OWN) <= {(n, t) for n, (_, _, local) in SCANNED.items() for _, t in local}
