"""Image facts and content hashes on real files written with Pillow."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from dataproj.runtime import images
from dataproj.runtime.images import ContentHashes, ImageError, ImageInfo, file_hash, image_info, resolve_path


def write_image(path: Path, size: tuple[int, int], image_format: str) -> Path:
    # Noise rather than a flat colour, so the encoded file is large enough to cut in half meaningfully.
    width, height = size
    Image.frombytes("RGB", size, os.urandom(width * height * 3)).save(path, format=image_format)
    return path


@pytest.mark.parametrize(("name", "image_format", "mime_type"), [
    ("a.png", "PNG", "image/png"),
    ("b.jpg", "JPEG", "image/jpeg"),
    ("c.webp", "WEBP", "image/webp"),
])
def test_image_info_reads_size_mime_and_hash(tmp_path: Path, name: str, image_format: str, mime_type: str) -> None:
    path = write_image(tmp_path / name, (64, 32), image_format)
    info = image_info(path)
    assert info == ImageInfo(width=64, height=32, mime_type=mime_type,
                             content_hash=hashlib.sha256(path.read_bytes()).hexdigest())


def test_mime_type_comes_from_content_not_extension(tmp_path: Path) -> None:
    path = write_image(tmp_path / "actually-a-png.jpg", (3, 5), "PNG")
    info = image_info(path)
    assert (info.mime_type, info.width, info.height) == ("image/png", 3, 5)


def test_file_hash_matches_hashlib_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "CHUNK_SIZE", 1000)  # several chunks and a partial last one
    path = tmp_path / "blob.bin"
    data = os.urandom(4321)
    path.write_bytes(data)
    assert file_hash(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert file_hash(empty) == hashlib.sha256(b"").hexdigest()


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match=r"^missing file: .*nope\.png$") as raised:
        image_info(path)
    assert raised.value.path == path
    with pytest.raises(ImageError, match=r"missing file: .*nope\.png"):
        file_hash(path)
    with pytest.raises(ImageError, match=r"missing file: .*nope\.png"):
        ContentHashes().get(path)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a file"):
        image_info(tmp_path)


def test_truncated_png_is_detected(tmp_path: Path) -> None:
    whole = write_image(tmp_path / "whole.png", (128, 128), "PNG").read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match=r"^not an image or corrupt: .*half\.png \(.+\)$"):
        image_info(path)


def test_random_bytes_are_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ImageError, match=r"^not an image or corrupt: .*noise\.jpg \(.+\)$"):
        image_info(path)


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths ContentHashes actually read, via a spy on the module's file_hash."""
    reads: list[Path] = []
    real_file_hash = images.file_hash

    def spy(path: Path) -> str:
        reads.append(Path(path))
        return real_file_hash(path)

    monkeypatch.setattr(images, "file_hash", spy)
    return reads


def test_content_hashes_memo_sees_edits(tmp_path: Path, counted_reads: list[Path]) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"first")
    hashes = ContentHashes()
    first = hashes.get(path)
    assert first == hashlib.sha256(b"first").hexdigest()
    assert hashes.get(path) == first
    assert hashes.get(tmp_path / "." / "a.bin") == first  # the same file by another spelling
    assert len(counted_reads) == 1
    assert (hashes.hits, hashes.misses) == (2, 1)

    # Same size, and an mtime pushed forward explicitly so a coarse filesystem clock cannot hide the edit.
    stat = path.stat()
    path.write_bytes(b"secnd")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert hashes.get(path) == hashlib.sha256(b"secnd").hexdigest()
    assert len(counted_reads) == 2


def test_content_hashes_from_threads(tmp_path: Path, counted_reads: list[Path]) -> None:
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(bytes([i]) * 100)
    hashes = ContentHashes()
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for path in paths * 5:
            digest = hashes.get(path)
            with lock:
                results.append(digest)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(set(results)) == sorted(hashlib.sha256(bytes([i]) * 100).hexdigest() for i in range(4))
    assert len(results) == 80
    assert hashes.hits + hashes.misses == 80
    assert 4 <= len(counted_reads) <= 16  # a race may hash a file twice, never once per call


def test_resolve_path(tmp_path: Path) -> None:
    assert resolve_path("images/a.png", tmp_path) == tmp_path / "images" / "a.png"
    absolute = tmp_path / "elsewhere" / "b.png"
    assert resolve_path(str(absolute), Path("/some/root")) == absolute
    assert resolve_path("a.png", None) == Path("a.png")


def test_relative_paths_resolve_against_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "cat.png", (7, 9), "PNG")
    info = image_info(resolve_path("images/cat.png", tmp_path))
    assert (info.width, info.height) == (7, 9)
