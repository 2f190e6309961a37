"""The pipelines' input files, validated line by line: captions (image_grounding) and unified annotation records
(the resume input of image_referring_expression), as Arrow tables of a fixed schema.

A line that breaks the schema stops the run with the file, the line, the key and what to do. Reading the
unified schema accepts the names of the reference's code (`text`, `bbox_score`) and of its docs
(`expression`, `score`), and `bbox_2d` for `bbox`; missing expression and box ids are filled in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import DataprojError
from ..seeds import jsonl_objects as seed_jsonl_objects

# ---- schema -------------------------------------------------------------------------------------------------

BOX = pa.list_(pa.int32())
INSTANCE = pa.struct([("bbox_id", pa.string()), ("bbox", BOX), ("bbox_score", pa.float64())])
EXPRESSION = pa.struct([("expression_id", pa.string()), ("text", pa.string()), ("char_span", pa.list_(pa.int32())),
                        ("noun_chunk", pa.string()), ("instances", pa.list_(INSTANCE)), ("verified", pa.bool_())])
REGION = pa.struct([("bbox", BOX), ("type", pa.string()), ("color", pa.string()), ("description", pa.string())])
CAPTIONS = pa.schema([("line_no", pa.int32()), ("image_id", pa.string()), ("image_path", pa.string()),
                      ("width", pa.int32()), ("height", pa.int32()), ("caption", pa.string()),
                      ("cleaned_caption", pa.string()), ("expressions", pa.list_(EXPRESSION))])
ANNOTATIONS = pa.schema([("line_no", pa.int32()), ("image_id", pa.string()), ("image_path", pa.string()),
                         ("width", pa.int32()), ("height", pa.int32()), ("caption", pa.string()),
                         ("cleaned_caption", pa.string()), ("regions", pa.list_(REGION)),
                         ("expressions", pa.list_(EXPRESSION)), ("source", pa.string()),
                         ("pipeline_steps", pa.list_(pa.string()))])


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _box(value: list[float]) -> list[int]:
    if len(value) != 4:
        raise ValueError(f"a box is [x1, y1, x2, y2], got {len(value)} numbers")
    return [round(v) for v in value]


class InstanceIn(_Record):
    bbox_id: str | None = None
    bbox: list[int] = Field(validation_alias=AliasChoices("bbox", "bbox_2d"))
    bbox_score: float | None = Field(None, validation_alias=AliasChoices("bbox_score", "score"))

    @field_validator("bbox", mode="before")
    @classmethod
    def _four_numbers(cls, value: Any) -> Any:
        return _box(value) if isinstance(value, list) else value


class ExpressionIn(_Record):
    expression_id: str | None = None
    text: str = Field(validation_alias=AliasChoices("text", "expression"))
    char_span: list[int] | None = None
    noun_chunk: str | None = None
    instances: list[InstanceIn] = Field(default_factory=list)
    verified: bool | None = None


class CaptionLine(_Record):
    """One line of the image_grounding input: image_path and caption; the rest is filled in when missing.
    cleaned_caption and expressions, when present, are what a skipped step 0 passes through."""

    image_path: str = Field(min_length=1)
    caption: str
    image_id: str | None = None
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    cleaned_caption: str | None = None
    expressions: list[ExpressionIn] = Field(default_factory=list)


class RegionIn(_Record):
    bbox: list[int] = Field(validation_alias=AliasChoices("bbox", "bbox_2d"))
    type: str | None = None
    color: str | None = None
    description: str | None = None

    @field_validator("bbox", mode="before")
    @classmethod
    def _four_numbers(cls, value: Any) -> Any:
        return _box(value) if isinstance(value, list) else value


class AnnotationLine(_Record):
    """One unified annotation record (one image)."""

    image_path: str = Field(min_length=1)
    image_id: str | None = None
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    caption: str | None = None
    cleaned_caption: str | None = None
    regions: list[RegionIn] = Field(default_factory=list)
    expressions: list[ExpressionIn] = Field(default_factory=list)
    source: str | None = None
    pipeline_steps: list[str] = Field(default_factory=list)


# ---- reading ------------------------------------------------------------------------------------------------


def jsonl_objects(path: Path, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is no JSON object stops with its number."""
    if not path.is_file():
        raise DataprojError(f"input file not found: {path}", path=shown,
                            hint="fix the path in vars.grounding (relative paths start at the project root)")
    yield from seed_jsonl_objects(path, shown, DataprojError)


def validated(model: type[_Record], rows: Iterable[tuple[int, dict[str, Any]]], shown: str) -> list[tuple[int, Any]]:
    """Each row as `model`; the first invalid one stops the run naming its line and key."""
    records = []
    for number, value in rows:
        try:
            records.append((number, model.model_validate(value)))
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "(the record)"
            raise DataprojError(f"key {key!r}: {first['msg']}", path=shown, line=number,
                                hint=f"each line needs {_required(model)}") from None
    return records


def _required(model: type[_Record]) -> str:
    names = [name for name, field in model.model_fields.items() if field.is_required()]
    return " and ".join(f"{name!r}" for name in names)


# ---- tables -------------------------------------------------------------------------------------------------


def with_root(image_path: str, image_root: str) -> str:
    """image_path under image_root, unless it is absolute or there is no root."""
    if not image_root or Path(image_path).is_absolute():
        return image_path
    return f"{image_root.rstrip('/')}/{image_path}"


def captions_table(records: list[tuple[int, CaptionLine]], image_root: str) -> pa.Table:
    rows = [{"line_no": number, "image_id": r.image_id, "image_path": with_root(r.image_path, image_root),
             "width": r.width, "height": r.height, "caption": r.caption, "cleaned_caption": r.cleaned_caption,
             "expressions": _with_ids(r.expressions)} for number, r in records]
    return pa.Table.from_pylist(rows, schema=CAPTIONS)


def annotations_table(records: list[tuple[int, AnnotationLine]]) -> pa.Table:
    rows = [{"line_no": number, **_annotation_row(r)} for number, r in records]
    return pa.Table.from_pylist(rows, schema=ANNOTATIONS)


def _annotation_row(record: AnnotationLine) -> dict[str, Any]:
    row = record.model_dump(exclude={"expressions"})
    row["expressions"] = _with_ids(record.expressions)
    return row


def _with_ids(expressions: list[ExpressionIn]) -> list[dict[str, Any]]:
    """Expressions as dicts, with an id for every expression and box that lacks one (unused numbers)."""
    rows = [e.model_dump() for e in expressions]
    next_expression = _numbering("expr", {r["expression_id"] for r in rows})
    next_box = _numbering("box", {i["bbox_id"] for r in rows for i in r["instances"]})
    for row in rows:
        row["expression_id"] = row["expression_id"] or next(next_expression)
        for instance in row["instances"]:
            instance["bbox_id"] = instance["bbox_id"] or next(next_box)
    return rows


def _numbering(prefix: str, taken: set[str | None]) -> Iterator[str]:
    number = 0
    while True:
        candidate = f"{prefix}_{number:05d}"
        if candidate not in taken:
            yield candidate
        number += 1
