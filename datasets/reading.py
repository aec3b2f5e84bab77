"""Read items in worker processes, a few at a time, and hand the results over in order.

Reading is CPU-bound (PNG and gzip decoding, RLE decoding, mask packing), so the builders read
in worker processes; at most ``_IN_FLIGHT`` items per worker are pending, so that memory stays
bounded, and results come back in the order of the items, whatever order the workers finish
in. One progress bar with a total.
"""

from __future__ import annotations

import collections
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

from tqdm.auto import tqdm

# Items in flight per worker: enough to keep workers busy while the main process writes.
_IN_FLIGHT = 2


def in_order(fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int], *, desc: str,
             unit: str, workers: int | None = None) -> Iterator:
    """``fn(*job)`` of every job, in order, with a progress bar advancing by ``sizes``.

    Args:
        fn: A module-level function (workers are spawned: it must be importable).
        workers: Reader processes (default: :func:`tf_medseg.data.workers.count`, one per CPU
            core up to 8 or ``TF_MEDSEG_WORKERS``; 0 reads in this process).
    """
    from tf_medseg.data import workers as processes
    workers = processes.count(len(jobs), 8, workers)
    bar = tqdm(total=sum(sizes), desc=desc, unit=unit, unit_scale=True, smoothing=0.1)
    with bar:
        with processes.executor(workers) as pool:
            todo = iter(zip(jobs, sizes))
            pending = collections.deque()

            def submit():
                item = next(todo, None)
                if item is not None:
                    pending.append((item[1], pool.submit(fn, *item[0])))
            for _ in range(_IN_FLIGHT * max(1, workers)):
                submit()
            try:
                while pending:
                    size, job = pending.popleft()
                    submit()
                    yield job.result()
                    bar.update(size)
            except BrokenProcessPool:
                from tf_medseg.errors import DataError
                raise DataError(
                    f"{desc}: a reader process ended abruptly (killed, out of memory, or failed "
                    f"while starting: its error is above; a script without if __name__ == "
                    f"'__main__': runs again in every reader)") from None
            finally:  # on an error, do not wait for items nobody will write
                for _, job in pending:
                    job.cancel()


def records(fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int], metadata,
            labels, *, desc: str, unit: str, workers: int | None = None) -> Iterator:
    """(key, example) of every job read by ``fn`` (a :mod:`tf_medseg.data.examples` function),
    in order; once all are read, the data set's fingerprint goes into ``metadata``: the label
    schema, every scan's facts and the channels' foreground intensity statistics."""
    from tf_medseg.data.fingerprint import intensity_stats
    facts, samples = {}, []
    for (key, example), scan, sample in in_order(fn, jobs, sizes, desc=desc, unit=unit,
                                                 workers=workers):
        facts[key] = scan
        samples.append(sample)
        yield key, example
    print(f"Writing TFRecord shards of {len(facts)} scans ...", flush=True)
    metadata["labels"] = labels.to_dict()
    metadata["scans"] = facts
    metadata["intensity_stats"] = intensity_stats(samples, labels.num_channels)
