"""Durable file primitives for datasets: atomic writes, fsync, chunked sha256, checksum lists."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 8 * 1024 * 1024


def fsync_dir(path: Path) -> None:
    """Flush a directory entry table, so a rename or a new file inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    Writes a temporary sibling, fsyncs it, renames it over ``path`` and fsyncs the directory.

    Args:
        path: Destination file; its parent directory must exist.
        data: The complete new content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks so arrays of any size fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """Return every regular file under ``root`` as a sorted POSIX path relative to ``root``."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def format_checksums(entries: dict[str, str]) -> str:
    """Render ``{relative path: sha256}`` as ``sha256sum`` lines (``<hex>  <path>``), sorted by path."""
    return "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))


def parse_checksums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` lines into ``{relative path: sha256}``.

    Raises:
        ValueError: A line is malformed, or a path is absolute or leaves the dataset root
            (a checksum list must never make a reader open files elsewhere).
    """
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        # sha256sum marks binary mode with "*" before the name; accept it as the tool does.
        name = name[1:] if name.startswith("*") else name
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"line {number} is not '<sha256>  <path>'")
        rel = PurePosixPath(name)
        if not name or rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"line {number} names a path outside the dataset: {name!r}")
        if name in entries:
            raise ValueError(f"line {number} repeats {name!r}")
        entries[name] = digest
    return entries


def hash_files(root: Path, names: Iterable[str]) -> dict[str, str]:
    """Return ``{name: sha256}`` for the given paths relative to ``root``."""
    return {name: sha256_file(Path(root) / name) for name in names}


def cache_root() -> Path:
    """Where trained teachers and matchers are cached: ``$ACKD_BENCH_CACHE``, else ``~/.cache/ackd-bench``."""
    return Path(os.environ.get("ACKD_BENCH_CACHE", Path.home() / ".cache" / "ackd-bench"))
