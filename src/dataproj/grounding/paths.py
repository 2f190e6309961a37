"""Where a Python model's files are: the project root (found from the model file), paths the vars give
relative to it, and the exports folder."""

from __future__ import annotations

from pathlib import Path

from ..config import load_project_config
from ..errors import ConfigError


def project_root(model_file: str | Path) -> Path:
    """The folder holding project.yml above a model file (Python models get their `__file__`)."""
    for folder in Path(model_file).resolve().parents:
        if (folder / "project.yml").is_file():
            return folder
    raise ConfigError("no project.yml above this model", path=model_file)


def resolve_in(root: Path, path: str) -> Path:
    """A path from the vars: absolute as given, relative to the project root otherwise."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def project_relative(root: Path, path: Path) -> str:
    """A path as the pipeline stores it: relative to the project root when inside it (SQL functions resolve
    those against the root), absolute otherwise."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def exports_dir(root: Path) -> Path:
    config, _ = load_project_config(root)
    return root / config.paths.exports
