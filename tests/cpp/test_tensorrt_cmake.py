"""The C++ TensorRT build logic that runs without TensorRT: FindTensorRT.cmake's search on folder
layouts of empty, versioned files, and the compile-only check of the TensorRT sources against
NVIDIA's 10.16 and 11.1 headers (scripts/build_cpp.sh, every run of scripts/test.sh).

Nothing here links or runs TensorRT; the files laid out below only have TensorRT's names.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "cpp" / "tests" / "find_tensorrt"
BUILD = Path(os.environ.get("FCN_CPP_BUILD_DIR", ROOT / "cpp" / "build"))

if shutil.which("cmake") is None:
    pytest.skip("cmake is not installed (scripts/cpp_deps.sh installs it)", allow_module_level=True)


def headers_root() -> Path:
    """Where scripts/build_cpp.sh looks for TensorRT header sets (same rule)."""
    env = os.environ.get("FCN_TENSORRT_HEADERS")
    return Path(env) if env else ROOT.parent / "shared" / "third_party" / "tensorrt-headers"


def _version_header(folder: Path, major: int, minor: int, patch: int) -> Path:
    """NvInferVersion.h as TensorRT 10/11 write it, and an empty NvInferRuntime.h."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "NvInferVersion.h").write_text(
        f"#define TRT_MAJOR_ENTERPRISE {major}\n#define TRT_MINOR_ENTERPRISE {minor}\n"
        f"#define TRT_PATCH_ENTERPRISE {patch}\n#define TRT_BUILD_ENTERPRISE 7\n"
        "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n")
    (folder / "NvInferRuntime.h").write_text("")
    return folder


def _library(folder: Path, name: str, *links: str) -> Path:
    """An empty file ``name`` and symlinks to it (libnvinfer.so -> libnvinfer.so.10 -> ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"")
    target = name
    for link in links:
        (folder / link).symlink_to(target)
        target = link
    return folder / name


def find(tmp_path: Path, *defines: str, pythonpath: Path | None = None) -> dict[str, str]:
    """Configure the probe project with ``-D`` defines; the system paths are left out so a real
    TensorRT installed on the machine cannot be found instead."""
    build = tmp_path / f"probe{len(list(tmp_path.glob('probe*')))}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TENSORRT_ROOT", "TensorRT_INCLUDE_DIR", "TensorRT_LIBRARY_DIR")}
    env["PYTHONPATH"] = str(pythonpath) if pythonpath else ""
    args = ["cmake", "-S", str(PROBE), "-B", str(build), f"-DTensorRT_PYTHON={sys.executable}",
            "-DFCN_PROBE_ISOLATED=ON", *(f"-D{d}" for d in defines)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (build / "result.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_tarball_with_versioned_library_symlinks(tmp_path):
    root = tmp_path / "TensorRT-10.16.0.72"
    _version_header(root / "include", 10, 16, 0)
    _library(root / "lib", "libnvinfer.so.10.16.0", "libnvinfer.so.10", "libnvinfer.so")
    r = find(tmp_path, f"TENSORRT_ROOT={root}")
    assert (r["found"], r["version"], r["library_major"]) == ("TRUE", "10.16.0", "10")
    assert r["include"] == str(root / "include") and r["library"] == str(root / "lib" / "libnvinfer.so")


def test_pip_wheel_library_with_headers_from_elsewhere(tmp_path):
    """tensorrt_libs holds libnvinfer.so.<major> only; its folder comes from Python."""
    site = tmp_path / "site-packages"
    wheel = site / "tensorrt_libs"
    _library(wheel, "libnvinfer.so.11")
    (wheel / "__init__.py").write_text("")
    headers = _version_header(tmp_path / "TensorRT-v11.1" / "include", 11, 1, 0)
    r = find(tmp_path, f"TensorRT_INCLUDE_DIR={headers}", pythonpath=site)
    assert r["wheel"] == str(wheel)
    assert (r["found"], r["version"], r["library_major"]) == ("TRUE", "11.1.0", "11")
    assert r["library"] == str(wheel / "libnvinfer.so.11") and r["include"] == str(headers)


def test_library_dir_hint_with_only_a_versioned_name(tmp_path):
    headers = _version_header(tmp_path / "inc", 10, 16, 0)
    lib = _library(tmp_path / "libs", "libnvinfer.so.10")
    r = find(tmp_path, f"TensorRT_INCLUDE_DIR={headers}", f"TensorRT_LIBRARY_DIR={lib.parent}")
    assert (r["found"], r["library"]) == ("TRUE", str(lib))


def test_header_major_must_equal_library_major(tmp_path):
    headers = _version_header(tmp_path / "inc", 11, 1, 0)
    lib = _library(tmp_path / "libs", "libnvinfer.so.10")
    r = find(tmp_path, f"TensorRT_INCLUDE_DIR={headers}", f"TensorRT_LIBRARY_DIR={lib.parent}")
    assert r["found"] == "FALSE"
    assert r["reason"] == (f"header major 11 ({headers}) differs from library major 10 ({lib}). "
                           "Use headers of the library's version")


def test_not_found_says_why(tmp_path):
    r = find(tmp_path)
    assert r["found"] == "FALSE" and r["reason"].startswith(
        "no NvInferRuntime.h under TensorRT_INCLUDE_DIR/TENSORRT_ROOT or the system (the pip "
        "wheels ship no headers")
    headers = _version_header(tmp_path / "inc", 10, 16, 0)
    r = find(tmp_path, f"TensorRT_INCLUDE_DIR={headers}")
    assert r["found"] == "FALSE" and r["reason"].startswith(
        f"headers 10.16.0 in {headers}, but no libnvinfer (looked for nvinfer, libnvinfer.so.10, "
        "nvinfer_10, libnvinfer.so.11, nvinfer_11 under TensorRT_LIBRARY_DIR")


def test_versions_of_nvidias_header_sets(tmp_path):
    root = headers_root()
    sets = {"10.16": "10.16.0", "11.1": "11.1.0"}
    if not all((root / name / "include" / "NvInferRuntime.h").is_file() for name in sets):
        pytest.skip(f"NVIDIA's TensorRT header sets are absent under {root} (set "
                    "FCN_TENSORRT_HEADERS to a folder with <version>/include)")
    for name, version in sets.items():
        r = find(tmp_path, f"TensorRT_INCLUDE_DIR={root / name / 'include'}")
        assert r["version"] == version and r["found"] == "FALSE"  # headers, never a library


def test_tensorrt_sources_were_compiled_against_both_header_sets():
    """scripts/build_cpp.sh (run by scripts/test.sh before pytest) compiles every TensorRT source
    against each header set; the objects must be there and newer than the sources."""
    root = headers_root()
    sets = sorted(p.parent for p in root.glob("*/include/NvInferRuntime.h"))
    if not sets:
        pytest.skip(f"no TensorRT header sets under {root}: the compile check cannot run (set "
                    "FCN_TENSORRT_HEADERS to a folder of NVIDIA/TensorRT release headers)")
    cache = BUILD / "CMakeCache.txt"
    if not cache.is_file():
        pytest.skip(f"no C++ build in {BUILD}; scripts/test.sh builds it before pytest")
    passed = [line.split("=", 1)[1].split(";") for line in cache.read_text().splitlines()
              if line.startswith("FCN_TENSORRT_CHECK_HEADERS:")]
    assert passed and {Path(p).resolve() for p in passed[0] if p} == {s.resolve() for s in sets}, \
        "build_cpp.sh did not pass the header sets to CMake"
    sources = [ROOT / "cpp" / "src" / "tensorrt_backend.cpp", ROOT / "cpp" / "src" / "segmenter.cpp"]
    for include in sets:
        version = ".".join(
            line.split()[-1] for line in (include / "NvInferVersion.h").read_text().splitlines()
            if line.startswith(("#define TRT_MAJOR_ENTERPRISE", "#define TRT_MINOR_ENTERPRISE",
                                "#define TRT_PATCH_ENTERPRISE")))
        folder = BUILD / "CMakeFiles" / f"fcn_trt_check_{version.replace('.', '_')}.dir" / "src"
        for src in sources:
            obj = folder / f"{src.name}.o"
            assert obj.is_file(), f"{obj} missing: the compile check against {include} did not run"
            assert obj.stat().st_mtime >= src.stat().st_mtime, f"{obj} is older than {src}"


def _object_flags(build: Path, target: str, source: str) -> str | None:
    """The compiler flags CMake wrote for ``target``'s object of ``source`` (Ninja or Makefiles)."""
    ninja = build / "build.ninja"
    if ninja.is_file():
        lines = ninja.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"build CMakeFiles/{target}.dir/src/{source}.o:"):
                for follow in lines[i + 1:i + 12]:
                    if follow.strip().startswith("FLAGS = "):
                        return follow.split("=", 1)[1]
        return None
    make = build / "CMakeFiles" / f"{target}.dir" / "flags.make"
    if make.is_file():
        return " ".join(line.split("=", 1)[1] for line in make.read_text().splitlines()
                        if line.startswith("CXX_FLAGS"))
    return None


def test_the_tensorrt_compile_check_turns_warnings_into_errors():
    """The compile-only check exists to catch what would break on a GPU machine; a warning in the
    TensorRT backend (an unused result, a narrowing, a deprecated call) must fail the build there
    too, so its targets compile with -Wall -Wextra -Werror (TensorRT's own headers are -isystem)."""
    targets = sorted(p.name[:-len(".dir")] for p in (BUILD / "CMakeFiles").glob("fcn_trt_check_*.dir"))
    if not targets:
        pytest.skip(f"no TensorRT compile check in {BUILD} (no header sets, or no build)")
    for target in targets:
        for source in ("tensorrt_backend.cpp", "segmenter.cpp"):
            flags = _object_flags(BUILD, target, source)
            assert flags is not None, f"no compile flags for {target}'s {source}"
            assert {"-Wall", "-Wextra", "-Werror"} <= set(flags.split()), f"{target}: {flags}"
