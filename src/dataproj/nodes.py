"""The things a project is made of: models, seeds and data tests, as discovered from files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ResourceType = Literal["model", "seed", "test"]


@dataclass(frozen=True)
class GenericTest:
    """A test declared in YAML: `unique`, `not_null`, `accepted_values`, `relationships`, `expression`."""

    kind: str
    model: str
    column: str | None
    args: dict[str, Any]
    config: dict[str, Any]
    source_path: str
    line: int | None


@dataclass(frozen=True)
class Node:
    """A model, seed or test as found on disk, with its resolved config (a plain dict)."""

    unique_id: str
    name: str
    resource_type: ResourceType
    path: str  # POSIX, relative to the project root
    fqn: tuple[str, ...]
    config: dict[str, Any]
    language: Literal["sql", "python", "csv", "json", "jsonl", "parquet", "images", "generic"] = "sql"
    raw_code: str = ""
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    generic_test: GenericTest | None = None
    static_refs: tuple[str, ...] = ()  # refs known without rendering (python models, generic tests)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.config.get("tags", ()))

    @property
    def materialized(self) -> str:
        if self.resource_type == "seed":
            return "seed"
        if self.resource_type == "test":
            return "test"
        return self.config.get("materialized", "view")

    @property
    def is_relation(self) -> bool:
        """True when building the node leaves a table or view in the warehouse."""
        return self.resource_type == "seed" or (
            self.resource_type == "model" and self.materialized != "ephemeral")
