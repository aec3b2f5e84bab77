"""The TFRecord feature spec: the one place that defines what a prepared record holds.

One record is one scan (a case-day): its slices as a (D, H, W) uint16 volume and its masks as a
(D, H, W) uint8 volume with one bit per class (bit k set = class k, in ``CLASSES`` order).
Keeping whole scans lets the pipeline choose the 2.5D context and normalise per scan without
rebuilding records.

Why these encodings (measured on a 144 x 266 x 266 phantom scan): zlib shrinks noisy 16-bit MRI
only to 52% and takes about 2 s a scan, which alone would make a full build (274 scans) take
over 9 minutes, so images are stored raw (about 20 MB a scan, 5.5 GB for the whole Kaggle set).
Masks are mostly zeros: bit-packed and zlib-compressed they take about 0.1% of their raw size.

The TFDS builders in ``datasets/`` write with :data:`FEATURES` and :func:`to_example`; the
pipeline reads through the same builder and unpacks masks with :func:`unpack_mask`.

The volume sources (nnunet, decathlon, folder) write :data:`VOLUME_FEATURES` with
:func:`volume_example`: one case a record, its (D, H, W, C) float32 image and its (D, H, W)
uint16 mask, a label map or bit-packed per-class masks as the metadata's task says.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import CLASSES

CLASS_BITS = tuple(1 << k for k in range(len(CLASSES)))

FEATURES = tfds.features.FeaturesDict({
    "case_day": tfds.features.Text(doc="caseN_dayM"),
    "case": tfds.features.Scalar(np.int32, doc="case (patient) number"),
    "day": tfds.features.Scalar(np.int32, doc="scan day"),
    "slice_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int32,
                                          doc="Kaggle slice number of each of the D slices"),
    "spacing": tfds.features.Tensor(shape=(2,), dtype=np.float32,
                                    doc="pixel (width, height) in mm"),
    "image": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint16,
                                  encoding=tfds.features.Encoding.BYTES,
                                  doc="(D, H, W) raw intensities"),
    "mask": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint8,
                                 encoding=tfds.features.Encoding.ZLIB,
                                 doc=f"(D, H, W) masks, bit k set = class k of "
                                     f"{', '.join(CLASSES)}"),
})


# The records of the volume sources (nnunet, decathlon, folder): one case a record.
VOLUME_FEATURES = tfds.features.FeaturesDict({
    "scan": tfds.features.Text(doc="case name (the file name without channel and ending)"),
    "case": tfds.features.Scalar(np.int32, doc="patient number: index into the metadata's "
                                               "'groups' (cases of one patient share a fold)"),
    "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32,
                                    doc="mm across slices, rows, columns"),
    "image": tfds.features.Tensor(shape=(None, None, None, None), dtype=np.float32,
                                  encoding=tfds.features.Encoding.BYTES,
                                  doc="(D, H, W, C) intensities, one channel per modality"),
    "mask": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint16,
                                 encoding=tfds.features.Encoding.ZLIB,
                                 doc="(D, H, W) the label map, or bit k set = class k (the "
                                     "metadata's task says which)"),
})


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """(..., K) 0/1 masks -> (...) uint8 with bit k set where class k is."""
    mask = np.asarray(mask) != 0
    packed = np.zeros(mask.shape[:-1], np.uint8)
    for k, bit in enumerate(CLASS_BITS):
        packed |= mask[..., k].astype(np.uint8) * np.uint8(bit)
    return packed


def unpack_mask(packed, num_classes: int = len(CLASSES)):
    """(...) bit-packed masks (uint8, or uint16 for more than 8 classes) -> (..., K) uint8 0/1
    masks (a TensorFlow op)."""
    import tensorflow as tf  # noqa: PLC0415 (the writers do not need TensorFlow)
    bits = tf.constant([1 << k for k in range(num_classes)], packed.dtype)
    return tf.cast(tf.bitwise.bitwise_and(packed[..., None], bits) > 0, tf.uint8)


def volume_example(volume, case_index: int) -> tuple[str, dict]:
    """(key, feature dict) of a :class:`tf_medseg.data.volumes.Volume`."""
    return volume.case, {"scan": volume.case, "case": np.int32(case_index),
                         "spacing": volume.spacing, "image": volume.image,
                         "mask": volume.label}


def to_example(scan) -> tuple[str, dict]:
    """(key, feature dict) of a :class:`tf_medseg.data.kaggle.Scan`."""
    return scan.case_day, {
        "case_day": scan.case_day,
        "case": np.int32(scan.case),
        "day": np.int32(scan.day),
        "slice_numbers": scan.slice_numbers.astype(np.int32),
        "spacing": np.asarray(scan.spacing, np.float32),
        "image": scan.image,
        "mask": pack_mask(scan.mask),
    }
