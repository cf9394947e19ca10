"""Resumable, shardable generation jobs.

A job is a list of :class:`Unit` s (the smallest piece of work that is computed as a whole, e.g. a
chunk of INRs fitted in one batch or one training run with its checkpoints). Shard ``i/n`` takes the
units with ``unit.index % n == i``. A unit whose models are all in the manifest is skipped, so a
killed job rerun with the same command continues where it stopped; the results never depend on the
sharding or on resumption because every model's seed derives from the global seed and its index.

A build of one shard holds a lock in the zoo directory (:func:`building`), so a second process building
the same shard there fails at once with the first one's pid, host and start time; different shards
build in parallel (each appends to its own manifest).
"""
from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from nngraph.errors import ZooError
from nngraph.io import LockHeld, clean_stale_temps, exclusive_lock
from nngraph.threads import set_threads
from nngraph.zoo.storage import WEIGHTS_DIR, append_manifest, manifest_name, read_manifests, save_weights

__all__ = ["Unit", "building", "parse_shard", "run_units"]

#: What a unit computes: one ``(entry, state_dict)`` per model; ``entry`` holds ``id`` and ``index``.
Result = tuple[dict[str, Any], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Unit:
    """A piece of work computed as a whole.

    Attributes:
        index: position of the unit in the job (decides its shard).
        model_ids: ids of the models the unit produces.
    """

    index: int
    model_ids: tuple[str, ...]


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i``) -> ``(i, n)``; ``None`` -> ``(0, 1)``."""
    if text is None:
        return (0, 1)
    if isinstance(text, tuple):
        i, n = text
    else:
        try:
            i, n = (int(t) for t in str(text).split("/"))
        except ValueError:
            raise ValueError(f"shard must look like 'i/n' with 0 <= i < n, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard must look like 'i/n' with 0 <= i < n, got {text!r}")
    return (i, n)


def _lock_path(root: str, shard: tuple[int, int]) -> str:
    return os.path.join(root, f".{manifest_name(shard)}.lock")


def _held_message(root: str, shard: tuple[int, int], err: LockHeld) -> str:
    h = err.holder
    who = (f"pid {h.get('pid')} on {h.get('host')}, started {h.get('started')}" if h
           else "a process that has not recorded itself yet")
    return (f"{root} (shard {shard[0]}/{shard[1]}) is being built by another process: {who}; wait for it to "
            f"finish or stop it, then rerun to resume (lock file {err.path})")


@contextmanager
def building(root: str, shard=None) -> Iterator[None]:
    """Hold the build lock of ``shard`` in the zoo directory ``root`` (created if needed), and delete the
    temporary files a killed build left there.

    A build that fails with an error before any model is in a manifest leaves no directory it created
    behind: a bad source or setting leaves nothing for a reader to mistake for a zoo. (An interrupted one,
    ``KeyboardInterrupt`` or a kill, leaves what it wrote, for the rerun to resume.)

    Raises:
        ZooError: if another process is building this shard of the zoo, naming its pid, host and start time.
    """
    shard = parse_shard(shard)
    fresh = not os.path.exists(root)
    os.makedirs(root, exist_ok=True)
    locked = False
    try:
        with ExitStack() as stack:
            try:
                stack.enter_context(exclusive_lock(_lock_path(root, shard)))
            except LockHeld as err:
                raise ZooError(_held_message(root, shard, err)) from None
            locked = True
            for directory in (root, os.path.join(root, WEIGHTS_DIR)):
                clean_stale_temps(directory)
            yield
    except Exception:
        if fresh and locked and not glob.glob(os.path.join(root, "manifest*.jsonl")):
            shutil.rmtree(root, ignore_errors=True)
        raise


def run_units(
    root: str,
    units: Sequence[Unit],
    compute: Callable[[Unit], list[Result]],
    shard=None,
    max_models: int | None = None,
    progress: bool = True,
    desc: str = "models",
    workers: int = 1,
) -> int:
    """Compute the missing units of this shard and store their models.

    Args:
        root: the zoo directory.
        units: every unit of the job (the same list for every shard).
        compute: maps a unit to its models; must be deterministic.
        shard: ``"i/n"`` or ``(i, n)``. (default: the whole job)
        max_models: stop after storing this many new models (for quick partial runs and tests).
        progress: show a tqdm progress bar.
        workers: compute units in this many processes (``compute`` must then be picklable); the
            calling process alone writes files, in unit order.

    Returns:
        The number of models stored by this call.

    Raises:
        ZooError: if another process is building the same shard in ``root`` (:func:`building`).
    """
    if max_models is not None and max_models <= 0:
        return 0
    with building(root, shard):
        return _run_units(root, units, compute, parse_shard(shard), max_models, progress, desc, workers)


def _run_units(root: str, units: Sequence[Unit], compute: Callable[[Unit], list[Result]], shard: tuple[int, int],
               max_models: int | None, progress: bool, desc: str, workers: int) -> int:
    """:func:`run_units` under the build lock."""
    i, n = shard
    manifest = os.path.join(root, manifest_name((i, n)))
    done = {e["id"] for e in read_manifests(root)}
    mine = [u for u in units if u.index % n == i]
    total = sum(len(u.model_ids) for u in mine)
    already = sum(m in done for u in mine for m in u.model_ids)
    written = 0
    todo = [u for u in mine if not all(m in done for m in u.model_ids)]
    pool = None
    if workers > 1 and len(todo) > 1:
        # a spawned worker starts with torch's default (a thread per core): it uses this process's count instead
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(todo)), initializer=set_threads,
                                                          initargs=(torch.get_num_threads(),))
        results = pool.imap(compute, todo)
    else:
        results = map(compute, todo)
    try:
        with tqdm(total=total, initial=already, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
            for unit, computed in zip(todo, results):
                stored = []
                for entry, state in computed:
                    if entry["id"] in done:
                        continue
                    if max_models is not None and written >= max_models:
                        break
                    entry = dict(entry)
                    entry["file"], entry["sha256"] = save_weights(root, entry["id"], state)
                    stored.append(entry)
                    written += 1
                append_manifest(manifest, stored)  # only after every weights file of the unit is complete
                done.update(e["id"] for e in stored)
                bar.update(len(stored))
                if max_models is not None and written >= max_models:
                    break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return written
