"""What both builders share: reading a Kaggle-layout folder into one example per scan."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from tf_medseg.data import features, kaggle


def inventory(info: tfds.core.DatasetInfo, root: Path, drop_case_days: Sequence[str] = ()):
    """Validate the folder up front (before any record is written) and record what it holds
    in ``info.metadata``; return (scans, labels) for :func:`examples`."""
    scans = kaggle.index_folder(root, drop_case_days)
    labels = kaggle.read_labels(root / "train.csv")
    kaggle.check_complete(scans, labels, root / "train.csv", drop_case_days)
    info.metadata["source"] = str(root)
    info.metadata["cases"] = sorted({s.case for s in scans})
    info.metadata["case_days"] = [s.case_day for s in scans]
    info.metadata["slices_per_case_day"] = {s.case_day: len(s.slices) for s in scans}
    info.metadata["organ_slices_per_case_day"] = {
        s.case_day: sum(any(labels.get(s.slice_id(f), {}).values()) for f in s.slices)
        for s in scans}
    return scans, labels


def examples(scans, labels) -> Iterator[tuple[str, dict]]:
    """(key, example) of every scan."""
    for scan in scans:
        yield features.to_example(kaggle.read_scan(scan, labels))
