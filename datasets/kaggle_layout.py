"""What both builders share: a checked Kaggle-layout folder read into one example per scan.

Scans are read and encoded in worker processes (:mod:`.reading`) and handed to TFDS in
order.

The builders let TFDS write records in its hashed order (``disable_shuffling`` is off): with it
on, TFDS keeps every example of the split in one bucket that it sorts in memory, which peaked at
7.7 GB for the full 38,496-slice set. Hashed, the examples spread over TFDS's on-disk buckets.
The order is still fixed for a given data set: TFDS sorts the examples by a hash of their key
(the case-day), not by the order the readers finish in, so every build of the same data, in any
process, gives the seeded shuffles of the pipeline the same sequence to start from (tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from tf_medseg.data import examples as examples_of
from tf_medseg.data.sources import kaggle, kaggle_inventory

from . import reading


def inventory(info: tfds.core.DatasetInfo, root: Path, drop_case_days: Sequence[str] = (),
              unmatched: str = "error") -> kaggle_inventory.Inventory:
    """Check the whole folder up front (before any record is written) and record what it
    holds, and what was dropped and why, in ``info.metadata``."""
    inv = kaggle_inventory.take_inventory(root, drop_case_days, unmatched)
    info.metadata["source"] = str(root)
    info.metadata["cases"] = sorted({s.case for s in inv.scans})
    info.metadata["case_days"] = [s.case_day for s in inv.scans]
    info.metadata["dropped"] = inv.dropped
    unexpected = {k: v for k, v in inv.dropped.items() if k not in drop_case_days}
    if unexpected:
        first = next(iter(unexpected.items()))
        print(f"warning: data.unmatched is drop: left out {len(unexpected)} id(s)/case-day(s) "
              f"of {root}, e.g. {first[0]} ({first[1]}); the full list is in the dataset's "
              f"metadata ('dropped')", flush=True)
    return inv


def examples(inv: kaggle_inventory.Inventory, metadata, workers: int | None = None
             ) -> Iterator[tuple[str, dict]]:
    """(key, example) of every scan, in order, with a progress bar; then the fingerprint in
    ``metadata`` (:func:`.reading.records`).

    Args:
        workers: Reader processes (default: one per CPU core, at most 8).
    """
    jobs = [(scan, {scan.slice_id(s): inv.labels[scan.slice_id(s)] for s in scan.slices})
            for scan in inv.scans]
    yield from reading.records(examples_of.scan_example, jobs,
                               [len(s.slices) for s in inv.scans], metadata, kaggle.LABELS,
                               desc=f"Reading {len(inv.scans)} scans", unit="slice",
                               workers=workers)


def features():
    """The records of the Kaggle layout: uint16 slices, bit-packed uint8 masks."""
    import numpy as np

    from tf_medseg.data.features import record_features
    return record_features(np.uint16, np.uint8)
