"""1. Layout and install: the package under src/, the `dataproj` console script, `python -m dataproj`."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO_ROOT, run_main, subprocess_env

import dataproj


def test_pyproject_declares_the_package_and_console_script() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "dataproj"
    assert pyproject["project"]["scripts"] == {"dataproj": "dataproj.cli:main"}
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert Path(dataproj.__file__).resolve().is_relative_to(REPO_ROOT / "src" / "dataproj")


def test_installed_distribution_exposes_the_console_script() -> None:
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["dataproj"] == "dataproj.cli:main"
    assert importlib.metadata.version("dataproj") == dataproj.__version__


def test_console_script_runs_and_prints_the_version() -> None:
    script = shutil.which("dataproj", path=str(Path(sys.executable).parent))
    assert script is not None, "the dataproj console script is not installed next to this Python"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"dataproj {dataproj.__version__}"


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dataproj", "--version"], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"dataproj {dataproj.__version__}"


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_main([])
    assert result.code == 2
    for command in ("init", "seed", "run", "test", "build", "compile", "ls", "show", "query", "export", "clean"):
        assert command in result.out
