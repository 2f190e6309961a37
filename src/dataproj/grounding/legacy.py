"""The legacy per-image label files of image_referring_expression (the 2D Data Engine layout the reference keeps
for old consumers): labels/<stem>.txt.step0 (the regions as a JSON array of bbox_2d, type, color,
description), .txt.step1 (the caption), .txt.step2 and .txt.step3 (one `<phrase>: [[x1, y1, x2, y2], ...]` line
per expression that has boxes). Boxes are pixels, as everything this project stores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def region_file(regions: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([{"bbox_2d": list(r["bbox"]), "type": r.get("type") or "", "color": r.get("color") or "",
                        "description": r.get("description") or ""} for r in regions], ensure_ascii=False, indent=2)


def caption_file(caption: str | None) -> str:
    return caption or ""


def grounding_file(expressions: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for expression in expressions:
        boxes = [list(i["bbox"]) for i in expression.get("instances") or [] if i.get("bbox")]
        if boxes:
            lines.append(f"{(expression.get('text') or '').strip() or 'object'}: {json.dumps(boxes)}")
    return "\n".join(lines) + ("\n" if lines else "")


def replace_labels(labels_dir: Path, files: Iterable[tuple[str, str]]) -> list[tuple[str, int]]:
    """Write (file name, text) pairs as the new content of `labels_dir`, swapped in whole so that no reader sees
    a mix of two runs and no stale file survives; returns (name, bytes) per file."""
    labels_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=labels_dir.name + ".", dir=labels_dir.parent))
    written = []
    try:
        for name, text in files:
            data = text.encode("utf-8")
            (staging / name).write_bytes(data)
            written.append((name, len(data)))
        remove_labels(labels_dir)
        os.replace(staging, labels_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def remove_labels(labels_dir: Path) -> None:
    if labels_dir.exists():
        shutil.rmtree(labels_dir)
