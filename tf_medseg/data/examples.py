"""One record's content read from a source item: the functions the TFDS builders in
``datasets/`` run in their worker processes (:mod:`tf_medseg_datasets.reading` spawns them, so
they live in the package, importable in any process).
"""

from __future__ import annotations

import numpy as np

from tf_medseg.data import features, kaggle, volumes


def scan_example(scan: kaggle.ScanFiles, labels: dict) -> tuple[str, dict]:
    """(key, example) of one Kaggle-layout scan (a case-day) and its RLE rows."""
    return features.to_example(kaggle.read_scan(scan, labels))


def case_example(index: volumes.SourceIndex, case: volumes.CaseFiles, case_index: int,
                 slice_axis, spacing) -> tuple[tuple[str, dict], int, np.ndarray]:
    """((key, example), slices showing a class, foreground intensity sample) of one case of a
    volume source."""
    volume = volumes.read_case(index, case, slice_axis, spacing)
    masks = volumes.class_masks(volume.label, index.task)
    organ_slices = int(masks.reshape(len(masks), -1).any(axis=1).sum())
    sample = volumes.foreground_sample(volume, index.task)
    return features.volume_example(volume, case_index), organ_slices, sample
