"""The data set's fingerprint, measured while its records are built and stored in their
metadata: per scan its patient, shape, spacing, slices showing a class along each axis and
voxels per class (:func:`scan_facts`); per channel the intensity statistics of the labelled
voxels (:func:`intensity_stats` of :func:`foreground_sample`).

The pipeline counts slices and organ slices from it without reading records, and
``data.normalization: ct`` uses the statistics (nnU-Net's CT scheme).
"""

from __future__ import annotations

import hashlib

import numpy as np

from tf_medseg.data.labels import LabelSchema

SAMPLE_SIZE = 10000  # foreground voxels sampled per scan


def class_masks(mask: np.ndarray, labels: LabelSchema) -> np.ndarray:
    """(..., K) boolean masks of a stored mask (label map or bit-packed)."""
    if labels.encoding == "bits":
        return np.stack([(mask >> k) & 1 > 0 for k in range(labels.num_classes)], axis=-1)
    return np.stack([np.isin(mask, v) for v in labels.values], axis=-1)


def scan_facts(case: int, spacing, masks: np.ndarray) -> dict:
    """One scan's entry in the metadata: its patient, shape and spacing, the slices showing a
    class along each axis (what the pipeline counts) and the voxels of each class, from its
    (A0, A1, A2, K) boolean ``masks``."""
    any_class = masks.any(axis=-1)
    return {"case": int(case), "shape": [int(n) for n in masks.shape[:3]],
            "spacing": [float(s) for s in spacing],
            "organ_slices": [int(any_class.any(axis=tuple(a for a in range(3) if a != axis))
                                 .sum()) for axis in range(3)],
            "class_voxels": [int(n) for n in masks.reshape(-1, masks.shape[-1]).sum(0)]}


def foreground_sample(name: str, image: np.ndarray, masks: np.ndarray,
                      size: int = SAMPLE_SIZE) -> np.ndarray:
    """(n, C) intensities of up to ``size`` voxels showing a class, drawn with a seed made from
    the scan's name (the same sample in every build)."""
    values = image[masks.any(axis=-1)]
    if len(values) > size:
        seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        values = values[np.sort(np.random.default_rng(seed).choice(len(values), size,
                                                                    replace=False))]
    return values


def intensity_stats(samples: list[np.ndarray], channels: int) -> list[dict | None]:
    """Per channel: mean, sd and the 0.5 / 99.5 percentiles of the pooled foreground samples
    (None where the data set has no foreground)."""
    pooled = np.concatenate([s.reshape(-1, channels) for s in samples]) if samples else \
        np.zeros((0, channels), np.float32)
    out = []
    for c in range(channels):
        v = pooled[:, c].astype(np.float64)
        if not v.size:
            out.append(None)
            continue
        out.append({"mean": float(v.mean()), "sd": float(v.std()),
                    "p0_5": float(np.percentile(v, 0.5)),
                    "p99_5": float(np.percentile(v, 99.5)), "voxels": int(v.size)})
    return out
