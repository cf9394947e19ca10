"""nngraph.io: atomic writes leave files with the permissions the user's umask gives, like ``open``."""
from __future__ import annotations

import os
import stat

import pytest

from nngraph.io import atomic_write


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
def test_atomic_write_follows_the_umask(tmp_path, umask, mask):
    umask(mask)
    path = tmp_path / "sub" / "file.json"
    atomic_write(str(path), b"{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
    atomic_write(str(path), b"[]")  # overwriting: the same mode, the new content
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask and path.read_bytes() == b"[]"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert stat.S_IMODE(os.stat(plain).st_mode) == stat.S_IMODE(os.stat(path).st_mode)  # as open() does


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_checkpoints_and_zoo_files_follow_the_umask(tmp_path, umask):
    """The writers built on atomic_write (a zoo's settings, a training checkpoint) inherit it."""
    from torch import nn

    from nngraph.train import save_checkpoint
    from nngraph.zoo.storage import write_config
    umask(0o022)
    write_config(str(tmp_path / "zoo"), {"kind": "test"})
    save_checkpoint(str(tmp_path / "run"), "best", nn.Linear(2, 1), {"epoch": 1})
    files = [os.path.join(d, n) for d, _, names in os.walk(tmp_path) for n in names]
    assert len(files) >= 3
    assert {oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files} == {"0o644"}, files
