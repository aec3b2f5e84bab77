"""Random patches of slices, or 3D patches of a volume's slices (``data.sampling: patch``), as
nnU-Net samples them: a share (``data.foreground_share``) centred on a labelled voxel, a class
drawn first among those the source shows and then one of its voxels, the rest anywhere; a
source smaller than the patch is padded with zeros, split evenly before and after.

Stateless random ops with a seed per slice: the same seeds give the same patches (the
validation set's are fixed, the training set's drawn anew every epoch).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def pad_to(image: tf.Tensor, packed: tf.Tensor, patch: Sequence[int]):
    """(C, *spatial) image and (*spatial) packed masks padded with zeros to at least
    ``patch`` along every spatial axis."""
    pads = []
    for axis, n in enumerate(patch):
        short = tf.maximum(int(n) - tf.shape(packed)[axis], 0)
        pads.append([short // 2, short - short // 2])
    return tf.pad(image, [[0, 0], *pads]), tf.pad(packed, pads)


def _foreground_centre(packed: tf.Tensor, num_classes: int, seed: tf.Tensor) -> tf.Tensor:
    """The coordinates of a random voxel of a random class the patch's source shows."""
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
    """A (C, *patch) patch of a (C, *spatial) image (a slice, or a volume's slices) and its
    (*patch) packed masks."""
    patch = [int(n) for n in patch]
    image, packed = pad_to(image, packed, patch)
    size = tf.shape(packed)
    seed = tf.cast(seed, tf.int64)
    wants = tf.random.stateless_uniform([], seed) < foreground_share
    labelled = tf.reduce_any(packed > 0)

    def around_foreground():
        centre = _foreground_centre(packed, num_classes, seed + 2)
        return tf.stack([tf.clip_by_value(centre[a] - n // 2, 0, size[a] - n)
                         for a, n in enumerate(patch)])

    def anywhere():
        return tf.stack([tf.random.stateless_uniform([], seed + 4 + a, 0, size[a] - n + 1,
                                                     tf.int32)
                         for a, n in enumerate(patch)])

    corner = tf.cond(tf.logical_and(wants, labelled), around_foreground, anywhere)
    crop = tf.slice(image, tf.concat([[0], corner], 0), [-1, *patch])
    crop.set_shape([image.shape[0], *patch])
    masks = tf.slice(packed, corner, patch)
    masks.set_shape(patch)
    return crop, masks
