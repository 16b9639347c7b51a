"""What pyproject installs: fcn_deploy and fcn_deploy.training; never top-level `training` or
`benchmarks` packages (they would collide with other projects' packages of those names)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_package_list_is_every_fcn_deploy_folder_plus_training():
    folders = sorted(".".join(p.parent.relative_to(ROOT).parts)
                     for p in (ROOT / "fcn_deploy").rglob("__init__.py"))
    assert sorted(CONFIG["packages"]) == sorted(folders + ["fcn_deploy.training"])
    assert CONFIG["package-dir"] == {"fcn_deploy.training": "training"}
    assert not {"training", "benchmarks"} & {p.split(".")[0] for p in CONFIG["packages"]}


def test_installed_names_outside_the_checkout(tmp_path):
    """From a folder that is not the checkout: fcn_deploy.training is the repo's training/,
    and no top-level `training` or `benchmarks` is importable."""
    code = ("import importlib.util as u, fcn_deploy.training.cli as c; print(c.__file__); "
            "print(u.find_spec('training'), u.find_spec('benchmarks'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert Path(out[0]) == ROOT / "training" / "cli.py"
    assert out[1] == "None None"
