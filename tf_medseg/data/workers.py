"""Worker processes for the CPU-bound work of building records (reading and decoding scans) and
of writing the phantom (rendering scans).

How many: one per CPU core up to a cap, never more than there are jobs; the environment
variable ``TF_MEDSEG_WORKERS`` sets the number (as nnU-Net's ``nnUNet_def_n_proc`` does), and
``TF_MEDSEG_WORKERS=0`` does the work in the calling process: for a machine where the few
seconds that spawning a worker costs are more than the work (a handful of small scans, the test
suite), or a debugger.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from concurrent import futures
from typing import Iterator

from tf_medseg.errors import ConfigError

ENV = "TF_MEDSEG_WORKERS"


def cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or ``taskset``'s
    share, not the whole machine's ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def count(jobs: int, cap: int, requested: int | None = None) -> int:
    """Worker processes for ``jobs`` jobs: ``requested`` (a caller's argument), else
    ``TF_MEDSEG_WORKERS``, else one per core this process may use (:func:`cores`) up to
    ``cap``; at most ``jobs``; 0 means the calling process."""
    if requested is None:
        value = os.environ.get(ENV, "").strip()
        if value:
            try:
                requested = int(value)
            except ValueError:
                requested = -1
            if requested < 0:
                raise ConfigError(f"{ENV}={value!r}: expected a whole number of worker "
                                  f"processes (0: work in this process); unset it for one "
                                  f"per CPU core")
        else:
            requested = min(cap, cores())
    return max(0, min(requested, jobs))


class _InProcess(futures.Executor):
    """The :class:`~concurrent.futures.Executor` interface, each job run at its submission."""

    def submit(self, fn, /, *args, **kwargs):
        future = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed over as a worker's would be, by result()
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def executor(workers: int) -> Iterator[futures.Executor]:
    """``workers`` spawned processes (spawn, not fork: the caller may have TensorFlow's
    threads running), or with 0 the calling process."""
    if workers <= 0:
        yield _InProcess()
        return
    with futures.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        yield pool
