"""YAML loading that remembers the line of every mapping key, for errors that name a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A mapping loaded from YAML; `lines[key]` is the 1-based line where the key stands."""

    lines: dict[Any, int]
    start_line: int


class _LineLoader(_Loader):  # type: ignore[misc, valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        self.flatten_mapping(node)
        mapping = LineDict()
        mapping.lines = {}
        mapping.start_line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in mapping:
                raise ConfigError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse a YAML file; a syntax error becomes a ConfigError with the file and line."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(err.message, path=path, line=err.line) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"invalid YAML: {problem}", path=path, line=line,
                          hint="fix the YAML syntax (indentation, quotes, colons)") from None


def line_of(mapping: Any, key: Any) -> int | None:
    """The line of `key` in a mapping loaded by load_yaml, if known."""
    if isinstance(mapping, LineDict):
        return mapping.lines.get(key, mapping.start_line)
    return None
