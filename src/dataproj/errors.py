"""Errors that stop a run: each names the file, line or key at fault and what to do."""

from __future__ import annotations

from pathlib import Path


class DataprojError(Exception):
    """A user-facing error; the CLI prints its message without a traceback."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        text = f"{where}{self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(DataprojError):
    """project.yml, a YAML properties file or a node config is invalid."""


class CompileError(DataprojError):
    """A model could not be rendered or its SQL is invalid."""


class GraphError(DataprojError):
    """The dependency graph is invalid (cycle, unknown ref, duplicate name)."""


class SelectorError(DataprojError):
    """A --select / --exclude expression could not be parsed."""


class SeedError(DataprojError):
    """A seed file could not be loaded."""


class WarehouseError(DataprojError):
    """The warehouse database could not be opened or used."""
