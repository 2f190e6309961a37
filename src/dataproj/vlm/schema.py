"""Output schemas: pydantic models from an inline JSON schema, strict JSON schemas for the APIs, and JSON
found in free text (for servers without structured output)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

_PRIMITIVES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


class SchemaError(ValueError):
    """An inline JSON schema uses something this converter does not support."""


def model_from_json_schema(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model for an object schema (properties, required, enum, arrays, nested objects, bounds)."""
    if schema.get("type") != "object" or "properties" not in schema:
        raise SchemaError(f"{name}: the output schema must be an object with properties")
    required = set(schema.get("required", schema["properties"]))
    fields: dict[str, Any] = {}
    for prop, spec in schema["properties"].items():
        hint = _hint(f"{name}_{prop}", spec)
        constraints = _constraints(spec)
        if prop in required:
            fields[prop] = (hint, Field(..., **constraints))
        else:
            fields[prop] = (Optional[hint], Field(None, **constraints))  # noqa: UP045 - runtime type object
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def _hint(name: str, spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        kind = next((k for k in kind if k != "null"), None)
    if "enum" in spec:
        hint: Any = Literal[tuple(spec["enum"])]
    elif kind in _PRIMITIVES:
        hint = _PRIMITIVES[kind]
    elif kind == "array":
        hint = list[_hint(name + "_item", spec.get("items", {"type": "string"}))]
    elif kind == "object":
        hint = model_from_json_schema(_camel(name), spec)
    else:
        raise SchemaError(f"{name}: unsupported schema type {kind!r}")
    return Optional[hint] if nullable else hint  # noqa: UP045


def _constraints(spec: dict[str, Any]) -> dict[str, Any]:
    mapping = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
               "minItems": "min_length", "maxItems": "max_length", "minLength": "min_length",
               "maxLength": "max_length"}
    found = {mapping[k]: v for k, v in spec.items() if k in mapping}
    if "description" in spec:
        found["description"] = spec["description"]
    return found


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9a-zA-Z]+", name) if part)


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as strict structured output wants it: no $refs, every property required,
    no additional properties, no defaults."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return _strictify(_inline(schema, defs))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(copy.deepcopy(defs[node["$ref"].split("/")[-1]]), defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _strictify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strictify(v) for k, v in node.items() if k not in ("default", "title")}
        if "anyOf" in node:  # Optional[X] -> {"type": [X, "null"]} where X is a simple type
            variants = node["anyOf"]
            simple = [v for v in variants if set(v) <= {"type"}]
            if len(simple) == len(variants):
                node = {**{k: v for k, v in node.items() if k != "anyOf"}, "type": [v["type"] for v in variants]}
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strictify(v) for v in node]
    return node


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a model's text: the whole text, a fenced block, or the first balanced {...} / [...]."""
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        while start != -1:
            end = _balanced_end(text, start, opener, closer)
            if end is not None:
                try:
                    return json.loads(text[start:end + 1])
                except json.JSONDecodeError:
                    pass
            start = text.find(opener, start + 1)
    raise ValueError("no JSON object found in the response")


def _balanced_end(text: str, start: int, opener: str, closer: str) -> int | None:
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return i
    return None
