"""Model-free facts about image files, behind the built-in SQL functions `image_info(path)` and `file_hash(path)`."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough for throughput, small enough to hash huge files in bounded memory

# Camera JPEGs often carry extra frames (Pillow calls them MPO) but are plain JPEG to every reader and model API,
# which reject "image/mpo".
_MIME_OVERRIDES = {"MPO": "image/jpeg"}


class ImageError(Exception):
    """A file is missing, unreadable or not a decodable image; the message names the file."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mime_type: str
    content_hash: str  # sha256 hex of the file bytes


def resolve_path(path: str, root: Path | None) -> Path:
    """A path from the data: relative paths are relative to the project root (not the process's cwd)."""
    candidate = Path(path)
    if candidate.is_absolute() or root is None:
        return candidate
    return root / candidate


def file_hash(path: Path) -> str:
    """sha256 hex of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with _open(path) as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class ContentHashes:
    """Thread-safe memo of file hashes, invalidated by (size, mtime_ns, inode) so edits are seen.

    Files are re-hashed only when their stat changes; a file rewritten in place within the filesystem's
    mtime resolution and to the same size would be missed, the same trade-off git and make accept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memo: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, path: Path) -> str:
        resolved = Path(path).resolve()
        stamp = _stamp(resolved)
        with self._lock:
            cached = self._memo.get(resolved)
            if cached is not None and cached[0] == stamp:
                self.hits += 1
                return cached[1]
            self.misses += 1
        # Hash outside the lock so threads hash different files in parallel. The stamp was taken before
        # reading: if the file changes meanwhile, the next get() sees a newer stamp and re-hashes.
        digest = file_hash(resolved)
        with self._lock:
            self._memo[resolved] = (stamp, digest)
        return digest


def image_info(path: Path) -> ImageInfo:
    """Width, height, MIME type and content hash of an image; ImageError if it is missing or corrupt."""
    path = Path(path)
    with _open(path) as handle:
        # One read serves both the hash and the decoder, so the facts describe the same bytes.
        data = handle.read()
    try:
        with Image.open(io.BytesIO(data)) as img:
            # Decode fully: a truncated file opens fine and only fails on load, which must happen here
            # and not later inside a model call.
            img.load()
            width, height = img.size
            image_format = img.format or ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not an image or corrupt: {path} ({exc})", path=path) from exc
    return ImageInfo(width=width, height=height, mime_type=_mime_type(image_format),
                     content_hash=hashlib.sha256(data).hexdigest())


def _mime_type(image_format: str) -> str:
    return _MIME_OVERRIDES.get(image_format) or Image.MIME.get(image_format) or f"image/{image_format.lower()}"


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:
        raise ImageError(f"missing file: {path}", path=path) from exc
    except OSError as exc:
        raise ImageError(f"cannot read file: {path} ({exc.strerror or exc})", path=path) from exc
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _open(path: Path) -> io.BufferedReader:
    """Open for reading, turning OS errors into ImageError messages that name the file."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller owns the handle
    except FileNotFoundError as exc:
        raise ImageError(f"missing file: {path}", path=path) from exc
    except IsADirectoryError as exc:
        raise ImageError(f"not a file: {path}", path=path) from exc
    except OSError as exc:
        raise ImageError(f"cannot read file: {path} ({exc.strerror or exc})", path=path) from exc
