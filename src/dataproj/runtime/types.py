"""Python type hints (and pydantic models) as DuckDB and Arrow types, and Python values as Arrow arrays."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NewType

import pyarrow as pa

ImagePath = NewType("ImagePath", str)
"""An argument holding an image file path: the call cache keys it by the file's content hash, not its path."""

# Fields every struct result carries, so a failed row says why instead of vanishing.
STATUS_FIELDS = (("status", "VARCHAR", pa.string()), ("error", "VARCHAR", pa.string()),
                 ("raw_response", "VARCHAR", pa.string()))

_SCALARS: dict[Any, tuple[str, pa.DataType]] = {
    str: ("VARCHAR", pa.string()),
    int: ("BIGINT", pa.int64()),
    float: ("DOUBLE", pa.float64()),
    bool: ("BOOLEAN", pa.bool_()),
    bytes: ("BLOB", pa.binary()),
}


@dataclass(frozen=True)
class SqlType:
    """A value type as DuckDB spells it and as Arrow holds it; `struct_of` is set for model/dataclass structs."""

    sql: str
    arrow: pa.DataType
    is_image: bool = False
    struct_of: Any = None

    @cached_property
    def is_struct(self) -> bool:
        return pa.types.is_struct(self.arrow)


def sql_type(hint: Any, *, where: str) -> SqlType:
    """Map a type hint to a SqlType; `where` names the function and argument for error messages."""
    if hint is ImagePath:
        return SqlType("VARCHAR", pa.string(), is_image=True)
    hint = _strip_optional(hint)
    if hint is ImagePath:
        return SqlType("VARCHAR", pa.string(), is_image=True)
    if hint in _SCALARS:
        return SqlType(*_SCALARS[hint])
    origin = typing.get_origin(hint)
    if origin is typing.Literal:  # an enum: the type of its values (all the same type)
        kinds = {type(v) for v in typing.get_args(hint)}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
            return SqlType(*_SCALARS[next(iter(kinds))])
        raise TypeError(f"{where}: a Literal's values must share one type, got {sorted(k.__name__ for k in kinds)}")
    args = typing.get_args(hint)
    if origin in (list, tuple) and args:
        item = sql_type(args[0], where=where)
        return SqlType(f"{item.sql}[]", pa.list_(item.arrow), is_image=item.is_image)
    if origin is dict and len(args) == 2:
        key, value = sql_type(args[0], where=where), sql_type(args[1], where=where)
        return SqlType(f"MAP({key.sql}, {value.sql})", pa.map_(key.arrow, value.arrow))
    fields = _struct_fields(hint)
    if fields is not None:
        mapped = [(name, sql_type(field_hint, where=f"{where}.{name}")) for name, field_hint in fields]
        sql = ", ".join(f'"{name}" {t.sql}' for name, t in mapped)
        return SqlType(f"STRUCT({sql})", pa.struct([(name, t.arrow) for name, t in mapped]), struct_of=hint)
    raise TypeError(f"{where}: type {hint!r} has no SQL equivalent; use str, int, float, bool, bytes, list[...], "
                    "dict[str, ...], a pydantic model or a dataclass")


def with_status_fields(result: SqlType) -> SqlType:
    """A struct result plus status / error / raw_response (unless the struct has them already)."""
    present = set(result.arrow.names)
    extra = [f for f in STATUS_FIELDS if f[0] not in present]
    if not extra:
        return result
    sql = result.sql[:-1] + ", " + ", ".join(f'"{name}" {sql}' for name, sql, _ in extra) + ")"
    arrow = pa.struct([*result.arrow, *[pa.field(name, arrow) for name, _, arrow in extra]])
    return SqlType(sql, arrow, struct_of=result.struct_of)


def _strip_optional(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _struct_fields(hint: Any) -> list[tuple[str, Any]] | None:
    if isinstance(hint, type) and hasattr(hint, "model_fields"):  # pydantic v2 model
        resolved = typing.get_type_hints(hint)
        return [(name, resolved.get(name, field.annotation)) for name, field in hint.model_fields.items()]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        resolved = typing.get_type_hints(hint)
        return [(f.name, resolved[f.name]) for f in dataclasses.fields(hint)]
    return None


def to_plain(value: Any) -> Any:
    """Pydantic models and dataclasses as dicts, recursively, so Arrow can convert them."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="python")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):  # a MAP entry (key, value) from Arrow: Arrow wants it back as a tuple
        return tuple(to_plain(v) for v in value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def to_arrow(values: list[Any], result: SqlType) -> pa.Array:
    """Python results (None for a failed scalar row) as an Arrow array of the function's result type."""
    if result.sql in ("VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "BLOB"):
        return pa.array(values, type=result.arrow)  # plain scalars need no conversion
    return pa.array([to_plain(v) for v in values], type=result.arrow)
