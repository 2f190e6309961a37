"""YAML property files beside models and seeds: descriptions, columns, tests and config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from .config import _Strict, validate
from .errors import ConfigError
from .nodes import GenericTest
from .yamlio import line_of, load_yaml

GENERIC_TESTS = {
    "not_null": (),
    "unique": (),
    "accepted_values": ("values", "quote"),
    "relationships": ("to", "field"),
    "expression": ("expression",),
}
_TEST_CONFIG_KEYS = {"severity", "where", "enabled", "tags", "store_failures_limit"}
_REF_ARG = re.compile(r"""^\s*ref\(\s*['"]([^'"]+)['"]\s*\)\s*$""")


class ColumnProps(_Strict):
    name: str
    description: str = ""
    data_type: str | None = None
    tests: list[Any] = Field(default_factory=list)
    data_tests: list[Any] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class NodeProps(_Strict):
    name: str
    description: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    columns: list[ColumnProps] = Field(default_factory=list)
    tests: list[Any] = Field(default_factory=list)
    data_tests: list[Any] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class PropertiesFile(_Strict):
    version: int | None = None
    models: list[NodeProps] = Field(default_factory=list)
    seeds: list[NodeProps] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        return {} if data is None else data


def load_properties(path: Path, rel_path: str) -> tuple[PropertiesFile, Any]:
    """Parse one property file; returns the validated model and the raw mapping (for line numbers)."""
    raw = load_yaml(path)
    props = validate(PropertiesFile, raw, path=Path(rel_path))
    return props, raw


def generic_tests(props: NodeProps, raw_entry: Any, rel_path: str) -> list[GenericTest]:
    """The generic tests an entry declares, on its columns and on the model itself."""
    found: list[GenericTest] = []
    raw_columns = raw_entry.get("columns", []) if isinstance(raw_entry, dict) else []
    for index, column in enumerate(props.columns):
        raw_column = raw_columns[index] if index < len(raw_columns) else {}
        line = line_of(raw_column, "tests") or line_of(raw_column, "data_tests") or line_of(raw_column, "name")
        for spec in [*column.tests, *column.data_tests]:
            found.append(_parse_test(spec, props.name, column.name, rel_path, line))
    line = line_of(raw_entry, "tests") or line_of(raw_entry, "data_tests")
    for spec in [*props.tests, *props.data_tests]:
        found.append(_parse_test(spec, props.name, None, rel_path, line))
    return found


def _parse_test(spec: Any, model: str, column: str | None, rel_path: str, line: int | None) -> GenericTest:
    if isinstance(spec, str):
        kind, args = spec, {}
    elif isinstance(spec, dict) and len(spec) == 1:
        kind, args = next(iter(spec.items()))
        if kind == "expression" and isinstance(args, str):
            args = {"expression": args}
        args = dict(args or {})
    else:
        raise ConfigError(f"a test must be a name or a one-key mapping, got {spec!r}", path=rel_path, line=line,
                          hint="e.g. `- unique` or `- accepted_values: {values: [0, 1]}`")
    if kind not in GENERIC_TESTS:
        raise ConfigError(f"unknown test {kind!r} on {model}" + (f".{column}" if column else ""),
                          path=rel_path, line=line, hint="generic tests: " + ", ".join(GENERIC_TESTS))
    config = dict(args.pop("config", None) or {})
    for key in list(args):
        if key in _TEST_CONFIG_KEYS:
            config[key] = args.pop(key)
    unknown = set(args) - set(GENERIC_TESTS[kind])
    if unknown:
        raise ConfigError(f"test {kind!r} on {model}: unknown argument(s) {sorted(unknown)}", path=rel_path,
                          line=line, hint=f"{kind} takes: {', '.join(GENERIC_TESTS[kind]) or 'no arguments'}")
    _check_required(kind, args, model, column, rel_path, line)
    return GenericTest(kind=kind, model=model, column=column, args=args, config=config,
                       source_path=rel_path, line=line)


def _check_required(kind: str, args: dict[str, Any], model: str, column: str | None, rel_path: str,
                    line: int | None) -> None:
    where = f"{kind} test on {model}" + (f".{column}" if column else "")
    if kind in {"not_null", "unique", "accepted_values", "relationships"} and column is None:
        raise ConfigError(f"{where}: this test belongs under a column", path=rel_path, line=line)
    if kind == "accepted_values" and not isinstance(args.get("values"), list):
        raise ConfigError(f"{where}: needs `values: [...]`", path=rel_path, line=line)
    if kind == "relationships":
        if not args.get("to") or not args.get("field"):
            raise ConfigError(f"{where}: needs `to: ref('model')` and `field: column`", path=rel_path, line=line)
        match = _REF_ARG.match(str(args["to"]))
        args["to"] = match.group(1) if match else str(args["to"])
    if kind == "expression" and not args.get("expression"):
        raise ConfigError(f"{where}: needs `expression: <SQL boolean>`", path=rel_path, line=line)
