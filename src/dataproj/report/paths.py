"""Where a project's exports live, found from any file inside the project (e.g. a Python model's __file__)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def project_root(start: Path) -> Path:
    """The nearest folder at or above `start` that holds project.yml."""
    for folder in [start, *start.resolve().parents]:
        if (folder / "project.yml").is_file():
            return folder
    raise ConfigError("no project.yml above this file", path=start,
                      hint="run from inside a dataproj project, or pass --project-dir")


def exports_dir(start: Path) -> Path:
    from ..config import load_project_config

    root = project_root(start)
    config, _ = load_project_config(root)
    return root / config.paths.exports
