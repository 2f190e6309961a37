"""`dataproj report`: the summary written from a built warehouse (with the complete call ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .built import built_project
from .summary import SummarySettings, write_summary


def report(project_dir: Path, cli_vars: dict[str, Any] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Write the summary CSVs and PNGs; returns the files written."""
    with built_project(project_dir, cli_vars) as built:
        settings = SummarySettings.from_vars(built.imsearch)
        return write_summary(built.con, out_dir or built.exports / "summary", settings, built.root)
