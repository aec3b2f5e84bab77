"""The TFRecord feature spec: the one place that defines what a prepared record holds.

One record is one scan (a case-day): its slices as a (D, H, W) uint16 volume and its masks as a
(D, H, W, 3) uint8 volume, zlib-compressed. Keeping whole scans lets the pipeline choose the 2.5D
context and normalise per scan without rebuilding records. The TFDS builders in ``datasets/``
write with :data:`FEATURES` and :func:`to_example`; the pipeline reads through the same builder.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import CLASSES

FEATURES = tfds.features.FeaturesDict({
    "case_day": tfds.features.Text(doc="caseN_dayM"),
    "case": tfds.features.Scalar(np.int32, doc="case (patient) number"),
    "day": tfds.features.Scalar(np.int32, doc="scan day"),
    "slice_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                          doc="Kaggle slice number of each of the D slices"),
    "spacing": tfds.features.Tensor(shape=(2,), dtype=np.float32,
                                    doc="pixel (width, height) in mm"),
    "image": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint16,
                                  encoding=tfds.features.Encoding.ZLIB,
                                  doc="(D, H, W) raw intensities"),
    "mask": tfds.features.Tensor(shape=(None, None, None, len(CLASSES)), dtype=np.uint8,
                                 encoding=tfds.features.Encoding.ZLIB,
                                 doc=f"(D, H, W, 3) 0/1 masks, channels {', '.join(CLASSES)}"),
})


def to_example(scan) -> tuple[str, dict]:
    """(key, feature dict) of a :class:`tf_medseg.data.kaggle.Scan`."""
    return scan.case_day, {
        "case_day": scan.case_day,
        "case": np.int32(scan.case),
        "day": np.int32(scan.day),
        "slice_numbers": scan.slice_numbers.astype(np.int32),
        "spacing": np.asarray(scan.spacing, np.float32),
        "image": scan.image,
        "mask": scan.mask,
    }
