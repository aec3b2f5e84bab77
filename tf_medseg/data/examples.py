"""One record read from a source item, with its part of the fingerprint: the functions the TFDS
builders in ``datasets/`` run in their worker processes (:mod:`tf_medseg_datasets.reading` spawns
them, so they live in the package, importable in any process).

Each returns ``((key, example), facts, sample)``: the record (:func:`tf_medseg.data.features.
record`), the scan's facts and a sample of its foreground intensities
(:mod:`tf_medseg.data.fingerprint`).
"""

from __future__ import annotations

import numpy as np

from tf_medseg.data import features, fingerprint
from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.sources import kaggle, volumes


def _finish(name: str, case: int, spacing, image: np.ndarray, mask: np.ndarray,
            labels: LabelSchema, axcodes: str | None = None):
    facts, foreground = fingerprint.scan_facts(case, spacing, mask, labels, axcodes)
    return (features.record(name, case, spacing, image, mask), facts,
            fingerprint.foreground_sample(name, image, foreground))


def scan_example(scan: kaggle.ScanFiles, labels: dict):
    """One Kaggle-layout scan (a case-day) and its RLE rows: (D, H, W, 1) uint16 slices, rows,
    columns; bit-packed masks."""
    read = kaggle.read_scan(scan, labels)
    return _finish(read.case_day, read.case, read.voxel_spacing, read.image[..., None],
                   features.pack_mask(read.mask), kaggle.LABELS)


def case_example(index: volumes.SourceIndex, case: volumes.CaseFiles, case_index: int,
                 mask_dtype: str):
    """One case of a volume source, in the file's voxel order: (X, Y, Z, C) float32, its label
    map (or bit-packed masks) as ``mask_dtype``."""
    volume = volumes.read_case(index, case)
    return _finish(volume.case, case_index, volume.spacing, volume.image,
                   volume.label.astype(mask_dtype), index.labels, volume.axcodes)
