"""A network applied to images (or volumes) larger than its patch: overlapping windows of the
patch size,
each window's output weighted by a Gaussian centred on it, summed and divided by the summed
weights (nnU-Net's sliding-window inference). TensorFlow ops, in the graph of a SavedModel
as eagerly; images of any size, padded where smaller than the patch.

Windows along an axis of ``size`` pixels (after padding): ``n = ceil((size - patch) /
(patch * (1 - overlap))) + 1`` of them, starting at ``round(i * (size - patch) / (n - 1))``,
so the first is at 0, the last ends at the border and neighbours overlap by at least
``overlap`` of the patch (:func:`window_starts`).

The Gaussian (:func:`gaussian_weights`) has a standard deviation of 1/8 of the patch per axis
and its peak at the centre pixel (``n // 2``), scaled to a maximum of 1, and no weight under
the smallest non-zero one (so the division never meets 0). nnU-Net filters a delta with
``scipy.ndimage.gaussian_filter``; this is the same bell in closed form.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

SIGMA_SCALE = 1.0 / 8


def gaussian_weights(patch: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """The importance of each pixel of a window of ``patch`` (float32, peak 1, never 0)."""
    bells = [np.exp(-0.5 * ((np.arange(n) - n // 2) / (n * sigma_scale)) ** 2)
             for n in patch]
    weights = functools.reduce(np.multiply.outer, bells)
    weights = weights / weights.max()
    return np.maximum(weights, weights[weights > 0].min()).astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Where the windows along an axis of ``size`` (at least ``patch``) pixels start."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    span = size - patch
    if span <= 0:
        return [0]
    count = math.ceil(span / (patch * (1 - overlap))) + 1
    return [int(np.round(i * (span / (count - 1)))) for i in range(count)]


def _starts(size: tf.Tensor, patch: int, overlap: float) -> tf.Tensor:
    """:func:`window_starts` as TensorFlow ops (``size`` a scalar tensor)."""
    span = tf.cast(size - patch, tf.float64)
    count = tf.cast(tf.math.ceil(span / (patch * (1 - overlap))), tf.int32) + 1
    step = span / tf.cast(tf.maximum(count - 1, 1), tf.float64)
    return tf.cast(tf.round(tf.cast(tf.range(count), tf.float64) * step), tf.int32)


def sliding_window(fn: Callable[[tf.Tensor], tf.Tensor], image: tf.Tensor,
                   patch: Sequence[int], overlap: float = 0.5,
                   weights: np.ndarray | None = None) -> tf.Tensor:
    """``fn`` (B, *patch, C) -> (B, *patch, K) applied to ``image`` (B, *spatial, C) of any
    size in overlapping windows of ``patch`` ((ph, pw) for a 2D network, (pd, ph, pw) for a
    3D one); float32 (B, *spatial, K).

    An image smaller than the patch is padded with zeros (split evenly before and after, as
    nnU-Net) and the result cropped back. ``weights`` (``patch``) default to
    :func:`gaussian_weights`; ones give the plain mean of the windows.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    patch = [int(n) for n in patch]
    dims = len(patch)
    weights = gaussian_weights(patch) if weights is None else weights
    weight = tf.constant(np.asarray(weights, np.float32)[None, ..., None])
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    sizes = [tf.shape(image)[1 + a] for a in range(dims)]
    shorts = [tf.maximum(n - size, 0) for n, size in zip(patch, sizes)]
    befores = [short // 2 for short in shorts]
    x = tf.pad(image, [[0, 0], *[[b, s - b] for b, s in zip(befores, shorts)], [0, 0]])
    padded = [size + short for size, short in zip(sizes, shorts)]
    grid = tf.reshape(tf.stack(tf.meshgrid(*[_starts(n, p, overlap)
                                             for n, p in zip(padded, patch)], indexing="ij"),
                               -1), [-1, dims])

    def window(k):
        corner = grid[k]
        crop = tf.ensure_shape(tf.slice(x, tf.concat([[0], corner, [0]], 0), [-1, *patch, -1]),
                               [None, *patch, channels])
        out = tf.cast(fn(crop), tf.float32) * weight
        paddings = tf.concat([[[0, 0]],
                              tf.stack([corner, tf.stack(padded) - corner - patch], 1),
                              [[0, 0]]], 0)
        return tf.pad(out, paddings), tf.pad(weight, paddings)

    total, norm = window(0)

    def body(k, total, norm):
        out, w = window(k)
        return k + 1, total + out, norm + w

    _, total, norm = tf.while_loop(lambda k, *_: k < tf.shape(grid)[0], body,
                                   (tf.constant(1), total, norm))
    return tf.slice(total / norm, [0, *befores, 0], [-1, *sizes, -1])
