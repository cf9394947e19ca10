"""Zoo builds: one process per shard of a zoo directory, and the leftovers of killed builds cleaned."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

import nngraph.io
from nngraph.errors import ZooError
from nngraph.io import _host
from nngraph.zoo import Zoo, build_inr_zoo
from nngraph.zoo.jobs import _lock_path, building
from tests.zoo.tiny import tiny_inr

#: Another process holding a lock with nngraph's own code (``nngraph/io.py`` needs only the standard
#: library, so it loads in milliseconds without torch).
_HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("nngraph_io", {io!r})
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
with io.exclusive_lock({path!r}):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def hold(tmp_path):
    """``hold(root, shard)`` starts a process that holds the build lock of ``shard`` in ``root``."""
    procs = []

    def start(root, shard=(0, 1)):
        os.makedirs(root, exist_ok=True)
        code = _HOLDER.format(io=nngraph.io.__file__, path=_lock_path(root, shard))
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_build_of_the_same_shard_fails_fast_naming_the_holder(tmp_path, hold):
    root = str(tmp_path / "zoo")
    proc = hold(root)
    with pytest.raises(ZooError, match=rf"being built by another process: pid {proc.pid} on "
                                       rf"{socket.gethostname()}, started 20\d\d-"):
        build_inr_zoo(root, tiny_inr(), progress=False)
    assert sorted(os.listdir(root)) == [".manifest.jsonl.lock"]  # nothing written, no work done
    proc.stdin.close()
    proc.wait()
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 12
    assert len(Zoo(root)) == 12
    with open(_lock_path(root, (0, 1))) as f:
        assert json.load(f)["pid"] == os.getpid()


def test_other_shards_build_while_one_is_held(tmp_path, hold):
    root = str(tmp_path / "zoo")
    hold(root, (0, 2))
    with pytest.raises(ZooError, match=r"shard 0/2"):
        build_inr_zoo(root, tiny_inr(), shard="0/2", progress=False)
    assert build_inr_zoo(root, tiny_inr(), shard="1/2", progress=False) > 0


def test_lock_of_a_killed_build_does_not_block(tmp_path, hold):
    root = str(tmp_path / "zoo")
    proc = hold(root)
    proc.kill()
    proc.wait()
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 12


def test_nested_holds_in_one_process(tmp_path):
    root = str(tmp_path / "zoo")
    with building(root):
        with building(root):
            pass
        assert build_inr_zoo(root, tiny_inr(), max_models=2, progress=False) == 2


def test_stale_temporary_files_of_a_killed_build_are_removed(tmp_path):
    root = str(tmp_path / "zoo")
    build_inr_zoo(root, tiny_inr(), max_models=4, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [os.path.join(d, f".tmp-{dead.pid}@{_host()}-x") for d in (root, os.path.join(root, "weights"))]
    live = os.path.join(root, "weights", f".tmp-{os.getpid()}@{_host()}-y")  # a writer at work
    for path in stale + [live]:
        open(path, "wb").write(b"partial")
    assert build_inr_zoo(root, tiny_inr(), progress=False) == 8
    assert not any(os.path.exists(p) for p in stale) and os.path.exists(live)
