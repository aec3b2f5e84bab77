"""Random patches of slices (``data.sampling: patch``), as nnU-Net samples them: a share
(``data.foreground_share``) centred on a labelled pixel, a class drawn first among those the
slice shows and then one of its pixels, the rest anywhere in the slice; a slice smaller than
the patch is padded with zeros, split evenly before and after.

Stateless random ops with a seed per slice: the same seeds give the same patches (the
validation set's are fixed, the training set's drawn anew every epoch).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def pad_to(image: tf.Tensor, packed: tf.Tensor, patch: Sequence[int]):
    """(C, h, w) image and (h, w) packed masks padded with zeros to at least ``patch``."""
    h, w = tf.shape(packed)[0], tf.shape(packed)[1]
    pad_h, pad_w = tf.maximum(patch[0] - h, 0), tf.maximum(patch[1] - w, 0)
    rows = [pad_h // 2, pad_h - pad_h // 2]
    cols = [pad_w // 2, pad_w - pad_w // 2]
    return (tf.pad(image, [[0, 0], rows, cols]), tf.pad(packed, [rows, cols]))


def _foreground_centre(packed: tf.Tensor, num_classes: int, seed: tf.Tensor) -> tf.Tensor:
    """(row, column) of a random pixel of a random class the slice shows."""
    bits = tf.cast(packed, tf.int32)
    shows = tf.stack([tf.reduce_any(tf.bitwise.bitwise_and(bits, 1 << k) > 0)
                      for k in range(num_classes)])
    present = tf.cast(tf.where(shows)[:, 0], tf.int32)
    pick = tf.random.stateless_uniform([], seed, 0, tf.shape(present)[0], tf.int32)
    cls = present[pick]
    pixels = tf.cast(tf.where(tf.bitwise.bitwise_and(bits, tf.bitwise.left_shift(1, cls)) > 0),
                     tf.int32)
    k = tf.random.stateless_uniform([], seed + 1, 0, tf.shape(pixels)[0], tf.int32)
    return pixels[k]


def random_patch(image: tf.Tensor, packed: tf.Tensor, seed: tf.Tensor, patch: Sequence[int],
                 foreground_share: float, num_classes: int):
    """A (C, ph, pw) patch of a (C, h, w) slice and its (ph, pw) packed masks."""
    ph, pw = int(patch[0]), int(patch[1])
    image, packed = pad_to(image, packed, (ph, pw))
    h, w = tf.shape(packed)[0], tf.shape(packed)[1]
    seed = tf.cast(seed, tf.int64)
    wants = tf.random.stateless_uniform([], seed) < foreground_share
    labelled = tf.reduce_any(packed > 0)

    def around_foreground():
        centre = _foreground_centre(packed, num_classes, seed + 2)
        return tf.stack([tf.clip_by_value(centre[0] - ph // 2, 0, h - ph),
                         tf.clip_by_value(centre[1] - pw // 2, 0, w - pw)])

    def anywhere():
        return tf.stack([tf.random.stateless_uniform([], seed + 4, 0, h - ph + 1, tf.int32),
                         tf.random.stateless_uniform([], seed + 5, 0, w - pw + 1, tf.int32)])

    corner = tf.cond(tf.logical_and(wants, labelled), around_foreground, anywhere)
    y, x = corner[0], corner[1]
    crop = image[:, y:y + ph, x:x + pw]
    crop.set_shape([image.shape[0], ph, pw])
    masks = packed[y:y + ph, x:x + pw]
    masks.set_shape([ph, pw])
    return crop, masks
