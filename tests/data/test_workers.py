"""How many worker processes build records and render the phantom, and the calling process
doing the work itself (TF_MEDSEG_WORKERS=0)."""

import os

import pytest

from tf_medseg.data import workers
from tf_medseg.errors import ConfigError


def _pid_or_raise(fail):
    if fail:
        raise ValueError("unreadable scan")
    return os.getpid()


def test_count_follows_the_argument_then_the_environment_then_the_cores(monkeypatch):
    monkeypatch.delenv(workers.ENV, raising=False)
    assert workers.count(100, 8) == min(8, workers.cores())
    assert workers.count(1, 8) == 1  # never more than the jobs
    monkeypatch.setenv(workers.ENV, "3")
    assert workers.count(100, 8) == 3 and workers.count(2, 8) == 2
    monkeypatch.setenv(workers.ENV, "0")
    assert workers.count(100, 8) == 0
    assert workers.count(100, 8, requested=2) == 2  # a caller's argument first
    for bad in ("two", "-1"):
        monkeypatch.setenv(workers.ENV, bad)
        with pytest.raises(ConfigError, match=rf"^TF_MEDSEG_WORKERS='{bad}': expected a whole "
                                               r"number of worker processes \(0: work in this"):
            workers.count(4, 8)


def test_the_cores_are_those_this_process_may_run_on(monkeypatch):
    """A container or taskset that grants 2 of a machine's 64 cores gets 2 workers, not 64."""
    monkeypatch.delenv(workers.ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    assert workers.cores() == 2 and workers.count(100, 8) == 2
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the machine's count
    assert workers.cores() == 64 and workers.count(100, 8) == 8


def test_zero_workers_work_in_the_calling_process_and_hand_errors_over_like_a_pool():
    for n in (0, 1):
        with workers.executor(n) as pool:
            done, failed = pool.submit(_pid_or_raise, False), pool.submit(_pid_or_raise, True)
            assert (done.result() == os.getpid()) == (n == 0)
            with pytest.raises(ValueError, match="unreadable scan"):
                failed.result()
