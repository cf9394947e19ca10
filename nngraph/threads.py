"""How many threads torch and OpenMP / BLAS use: the one choice every ``nngraph`` command and example makes.

One thread unless told otherwise. The models nngraph converts and learns from are small, so a second thread gains
little; and on a machine whose cores are shared (other users, other jobs) OpenMP's threads spin at barriers waiting
for a thread the system has not scheduled: on a 2-core machine with the other core busy, ``examples/edit_cnn.py``
took 203 s with two threads against 9.4 s with one, ``nngraph embed --epochs 5`` 119 s against 7 s.
"""
from __future__ import annotations

import os

__all__ = ["THREADS_ENV", "pick_threads", "set_threads"]

#: The thread count when none is given (``--threads``): ``NNGRAPH_THREADS=4`` on a machine of one's own.
THREADS_ENV = "NNGRAPH_THREADS"


def pick_threads(requested: int | None = None) -> int:
    """The thread count to use: ``requested`` if given, else :data:`THREADS_ENV` if set, else 1; ``0`` means
    "keep the libraries' defaults" (torch: one thread per core).

    Raises:
        ValueError: for a negative count, or a :data:`THREADS_ENV` that is not a whole number >= 0.
    """
    if requested is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return 1
        try:
            requested = int(text)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={text!r} is not a number of threads (a whole number, 0 keeps the "
                             "libraries' defaults)") from None
        source = f"{THREADS_ENV}={requested}"
    else:
        source = f"--threads {requested}"
    if requested < 0:
        raise ValueError(f"{source}: give a positive number of threads (0 keeps the libraries' defaults)")
    return requested


def set_threads(requested: int | None = None) -> int:
    """Use :func:`pick_threads` ``(requested)`` threads in torch (``torch.set_num_threads``) and in OpenMP / BLAS
    (``threadpoolctl``, if installed: scikit-learn's gradient boosting, numpy); returns the count torch now uses.

    Raises:
        ValueError: as :func:`pick_threads`.
    """
    import torch

    threads = pick_threads(requested)
    if threads == 0:
        return torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return threads
    threadpool_limits(threads)
    return threads
