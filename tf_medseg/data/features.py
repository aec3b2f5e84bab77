"""The TFRecord format: the one place that defines what a prepared record holds, for every
source (Kaggle layout, phantom, nnU-Net, Decathlon, image folders).

One record is one scan (a Kaggle case-day, or a case of the other sources), a volume at its
stored resolution in its stored voxel order, with its spacing:

* ``scan``: its name (``caseN_dayM``, or the case name);
* ``case``: the patient's number; the scans of one patient share a fold (Kaggle: the case
  number; other sources: the index into the metadata's ``groups``);
* ``spacing``: (3,) mm along the volume's three axes;
* ``image``: (A0, A1, A2, C) raw intensities, one channel per modality; uint16 where the data is
  integer (the Kaggle layout and the phantom: slices, rows, columns), float32 otherwise (NIfTI
  volumes in the file's voxel order, 2D images as (rows, columns, 1));
* ``mask``: (A0, A1, A2) the label map, or bit k set = class k, as the label schema's
  ``encoding`` says; uint8 where it fits, else uint16.

The pipeline cuts 2D slices across ``data.slice_axis`` and resamples them to ``data.spacing``
when it reads a record, so one build serves every such choice, and patches at another spacing
can be cut from the same records.

Why these encodings (measured on a 144 x 266 x 266 phantom scan): zlib shrinks noisy 16-bit MRI
only to 52% and takes about 2 s a scan, which alone would make a full build (274 scans) take
over 9 minutes, so images are stored raw (about 20 MB a scan, 5.5 GB for the whole Kaggle set).
Masks are mostly zeros: zlib-compressed they take about 0.1% of their raw size.

The builders in ``datasets/`` write with :func:`record_features` and :func:`record`, and store
the data set's fingerprint (:mod:`tf_medseg.data.fingerprint`) in the metadata; the pipeline
reads through the same builder and unpacks masks with :func:`unpack_mask`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.data.labels import MAX_CLASSES


def record_features(image_dtype, mask_dtype) -> tfds.features.FeaturesDict:
    """The features of a data set whose images are ``image_dtype`` and masks ``mask_dtype``."""
    return tfds.features.FeaturesDict({
        "scan": tfds.features.Text(doc="scan name: caseN_dayM, or the case name"),
        "case": tfds.features.Scalar(np.int32, doc="patient number (scans of one patient "
                                                   "share a fold)"),
        "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32,
                                        doc="mm along the volume's three axes"),
        "image": tfds.features.Tensor(shape=(None, None, None, None), dtype=image_dtype,
                                      encoding=tfds.features.Encoding.BYTES,
                                      doc="(A0, A1, A2, C) raw intensities at the stored "
                                          "resolution, one channel per modality"),
        "mask": tfds.features.Tensor(shape=(None, None, None), dtype=mask_dtype,
                                     encoding=tfds.features.Encoding.ZLIB,
                                     doc="(A0, A1, A2) the label map, or bit k set = class k "
                                         "(the label schema's encoding)"),
    })


def record(name: str, case: int, spacing, image: np.ndarray, mask: np.ndarray
           ) -> tuple[str, dict]:
    """(key, feature dict) of one scan: ``image`` (A0, A1, A2, C), ``mask`` (A0, A1, A2)."""
    return name, {"scan": name, "case": np.int32(case),
                  "spacing": np.asarray(spacing, np.float32),
                  "image": np.ascontiguousarray(image), "mask": np.ascontiguousarray(mask)}


def bits_dtype(num_classes: int):
    """The smallest unsigned integer that holds one bit per class."""
    if num_classes > MAX_CLASSES:
        raise ValueError(f"at most {MAX_CLASSES} classes fit in a bit-packed mask")
    return np.uint8 if num_classes <= 8 else np.uint16


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """(..., K) 0/1 masks -> (...) unsigned integers with bit k set where class k is (uint8 up
    to 8 classes, else uint16)."""
    mask = np.asarray(mask)
    dtype = bits_dtype(mask.shape[-1])
    packed = np.zeros(mask.shape[:-1], dtype)
    # One class at a time, through a boolean view: 0.03 s for a 144 x 266 x 266 x 3 scan,
    # where packbits or a weighted sum over the class axis took 0.2 s (strided).
    for k in range(mask.shape[-1]):
        packed |= (mask[..., k] != 0).view(np.uint8).astype(dtype, copy=False) << dtype(k)
    return packed


def unpack_mask(packed, num_classes: int):
    """(...) bit-packed masks (uint8, or uint16 for more than 8 classes) -> (..., K) uint8 0/1
    masks (a TensorFlow op)."""
    import tensorflow as tf  # noqa: PLC0415 (the writers do not need TensorFlow)
    bits = tf.constant([1 << k for k in range(num_classes)], packed.dtype)
    return tf.cast(tf.bitwise.bitwise_and(packed[..., None], bits) > 0, tf.uint8)
