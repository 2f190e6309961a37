"""SQL functions the engine ships that need no model."""

from __future__ import annotations

from pydantic import BaseModel

from .images import file_hash as _file_hash
from .images import image_info as _image_info
from .spec import udf
from .types import ImagePath


class ImageFacts(BaseModel):
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None
    content_hash: str | None = None


@udf(kind="io")
def image_info(path: ImagePath) -> ImageFacts:
    """Width, height, MIME type and sha256 of an image file; a missing or corrupt file fails its row."""
    from pathlib import Path

    info = _image_info(Path(path))
    return ImageFacts(width=info.width, height=info.height, mime_type=info.mime_type, content_hash=info.content_hash)


@udf(kind="io")
def file_hash(path: ImagePath) -> str:
    """sha256 (hex) of a file's bytes."""
    from pathlib import Path

    return _file_hash(Path(path))
