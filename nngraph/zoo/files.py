"""Files of a zoo, read safely: paths that stay inside the zoo, and checksums.

Below both :mod:`~nngraph.zoo.storage` (manifests, the :class:`~nngraph.zoo.storage.Zoo` reader) and
:mod:`~nngraph.zoo.architectures` (which reads a program's ``.pt2`` by its sha256), so that neither imports the other
for them.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

__all__ = ["inside", "read_with_sha256", "sha256_bytes", "sha256_file"]


def inside(root: str, relative: Any, what: str = "file") -> str:
    """``root/relative`` if it is a relative path that resolves (symlinks included) inside ``root``.

    Raises:
        ValueError: naming ``what`` if ``relative`` is absolute, empty, climbs out of ``root`` or leads
            out of it through a symlink. No file is opened, so nothing outside ``root`` is read.
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise ValueError(f"{what} {relative!r} is not a path (an empty or non-string value)")
    if os.path.isabs(relative):
        raise ValueError(f"{what} {relative!r} is absolute; it must be relative to {root}")
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, path]) != base or path == base:
        raise ValueError(f"{what} {relative!r} resolves to {path}, outside {root}")
    return os.path.join(root, relative)


def sha256_bytes(data: bytes) -> str:
    """The sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """The sha256 hex digest of the file ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_with_sha256(path: str) -> tuple[bytes, str]:
    """A file's bytes and their sha256 hex digest, from one read (what is checked is what is then used).

    Raises:
        OSError: if the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()
