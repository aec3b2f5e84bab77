"""From a stored volume to the 2D slices a network sees, and back: the axis slices are cut
across, the cut, and the in-plane resampling to ``data.spacing``.

Records hold volumes in their stored voxel order (:mod:`tf_medseg.data.features`). Slices are
cut across ``data.slice_axis``: a volume (X, Y, Z) cut across axis 2 becomes (Z, X, Y), the
other two axes keeping their order. ``auto`` takes the axis with the coarsest spacing (the last
on a tie), as nnU-Net's 2D configuration does; a single-slice (2D) image is cut across its
third axis. The Kaggle layout's scans (slices 3 mm apart, pixels about 1.5 mm) are cut across
their slices.

The training pipeline and the predictor both call :func:`cut` and (the predictor)
:func:`uncut`, TensorFlow ops that run in a ``tf.data`` graph and eagerly alike, so that what a
model is served is what it was trained on.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

# perms[axis]: the transposition that brings ``axis`` first (the others keep their order).
PERMS = ((0, 1, 2), (1, 0, 2), (2, 0, 1))
INVERSE = ((0, 1, 2), (1, 0, 2), (1, 2, 0))
ANISOTROPY = 3  # slices this many times coarser than their pixels are not interpolated across
MAX_RESAMPLED_SIDE = 4096  # pixels a side a slice may grow to when resampled to a spacing


def slice_axis(shape: Sequence[int], spacing: Sequence[float], wanted="auto") -> int:
    """The axis slices of a volume of ``shape`` (three axes first) and ``spacing`` (mm) are
    cut across: 2 for a single-slice image, else ``wanted`` or (``auto``) the coarsest axis,
    the last on a tie."""
    if int(shape[2]) == 1:
        return 2
    if wanted != "auto":
        return int(wanted)
    spacing = [float(s) for s in spacing[:3]]
    coarsest = max(spacing)
    return max(i for i, s in enumerate(spacing) if s == coarsest)


def planar_sizes(shape: Sequence[int], spacing: Sequence[float], wanted="auto",
                 target: Sequence[float] | None = None):
    """((rows, columns) stored, their spacing mm, (rows, columns) at ``target`` mm) of the
    slices of a volume of ``shape`` and ``spacing``: what :func:`cut` makes, in numpy."""
    rows, cols = PERMS[slice_axis(shape, spacing, wanted)][1:]
    stored = (int(shape[rows]), int(shape[cols]))
    mm = (float(spacing[rows]), float(spacing[cols]))
    if not target:
        return stored, mm, stored
    size = tuple(max(int(round(n * s / float(t))), 1)
                 for n, s, t in zip(stored, mm, tuple(target)[-2:]))
    return stored, mm, size


def cut_shape(shape: Sequence[int], spacing: Sequence[float], wanted="auto",
              target: Sequence[float] | None = None) -> tuple[int, int, int]:
    """(slices, rows, columns) that :func:`cut` makes of a volume of ``shape`` and
    ``spacing`` (in numpy; across the slices too for a three-value ``target``)."""
    axis = slice_axis(shape, spacing, wanted)
    depth = int(shape[axis])
    if target and len(target) == 3:
        depth = max(int(round(depth * float(spacing[axis]) / float(target[0]))), 1)
    return (depth, *planar_sizes(shape, spacing, wanted, target)[2])


def oversized(shape: Sequence[int], spacing: Sequence[float], wanted="auto",
              target: Sequence[float] | None = None) -> str | None:
    """Why slices of a volume of ``shape`` and ``spacing`` resampled to ``target`` mm would be
    too large (over MAX_RESAMPLED_SIDE pixels a side, or their stored size where larger), as
    the end of a message; None when they are not."""
    stored, mm, size = planar_sizes(shape, spacing, wanted, target)
    if all(n <= max(MAX_RESAMPLED_SIDE, m) for n, m in zip(size, stored)):
        return None
    return (f"({stored[0]} x {stored[1]} pixels of {mm[0]:g} x {mm[1]:g} mm) would become "
            f"{size[0]} x {size[1]} pixels a slice, over {MAX_RESAMPLED_SIDE}")


def _axis_tensor(shape: tf.Tensor, spacing: tf.Tensor, wanted) -> tf.Tensor:
    """:func:`slice_axis` as a TensorFlow op."""
    if wanted != "auto":
        chosen = tf.constant(int(wanted), tf.int32)
    else:
        spacing = tf.cast(spacing[:3], tf.float32)
        is_max = tf.cast(tf.equal(spacing, tf.reduce_max(spacing)), tf.int32)
        chosen = tf.reduce_max(is_max * tf.range(3))
    return tf.where(tf.equal(shape[2], 1), 2, chosen)


def resampled_size(size, spacing, target) -> tf.Tensor:
    """The sizes of axes of ``size`` voxels at ``spacing`` mm resampled to ``target`` mm."""
    size = tf.cast(size, tf.float32)
    out = tf.round(size * tf.cast(spacing, tf.float32) / tf.constant(target, tf.float32))
    return tf.maximum(tf.cast(out, tf.int32), 1)


def resize(volume: tf.Tensor, size, nearest: bool, method: str = "bilinear") -> tf.Tensor:
    """(D, H, W, C) resized in-plane: ``method`` (bilinear, or bicubic) for images (an integer
    volume stays integer, rounded and clipped to its range), nearest neighbour for labels
    (values are never mixed)."""
    if nearest:
        return tf.image.resize(volume, size, method="nearest")
    out = tf.image.resize(volume, size, method=method)
    if volume.dtype.is_integer:
        out = tf.cast(tf.clip_by_value(tf.round(out), volume.dtype.min, volume.dtype.max),
                      volume.dtype)
    return out


def resize_depth(volume: tf.Tensor, depth, nearest: bool) -> tf.Tensor:
    """(D, H, W, C) resampled to ``depth`` slices: linearly, or by nearest neighbour (labels,
    and images whose slices are too far apart to interpolate). Each slice keeps its H x W: the
    volume is resized as H images of (D, W), and a resize that keeps W is exact along it."""
    shape = tf.shape(volume)
    rows = tf.transpose(volume, [1, 0, 2, 3])  # (H, D, W, C)
    rows = resize(rows, tf.stack([depth, shape[2]]), nearest)
    return tf.transpose(rows, [1, 0, 2, 3])


def cut(volume, spacing, wanted="auto", target: Sequence[float] | None = None,
        nearest: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """(slices (D, H, W, C), the axis they were cut across) of a stored (A0, A1, A2, C)
    volume with ``spacing`` mm, resampled to ``target`` mm when given: [rows, columns]
    in-plane (bicubic for images, as nnU-Net's order 3; nearest for labels), or [between
    slices, rows, columns] also across the slices (:func:`resize_depth`: linear, nearest for
    labels and for images whose slices are over :data:`ANISOTROPY` times coarser than their
    pixels, as nnU-Net's separate z with order 0)."""
    volume = tf.convert_to_tensor(volume)
    spacing = tf.convert_to_tensor(spacing, tf.float32)
    axis = _axis_tensor(tf.shape(volume), spacing, wanted)
    perm = tf.gather(tf.constant(PERMS, tf.int32), axis)
    slices = tf.transpose(volume, tf.concat([perm, [3]], 0))
    if target:
        in_plane = tf.gather(spacing, perm[1:])
        slices = resize(slices, resampled_size(tf.shape(slices)[1:3], in_plane,
                                               tuple(target)[-2:]), nearest, "bicubic")
        if len(target) == 3:
            across = tf.gather(spacing, perm[0])
            depth = resampled_size(tf.shape(slices)[0], across, target[0])
            coarse = across > ANISOTROPY * tf.reduce_max(in_plane)
            slices = (resize_depth(slices, depth, True) if nearest else
                      tf.cond(coarse, lambda: resize_depth(slices, depth, True),
                              lambda: resize_depth(slices, depth, False)))
    return slices, axis


def uncut(slices, axis, size) -> tf.Tensor:
    """The inverse of :func:`cut` for (D, h, w, K) per-slice values (probabilities): resized
    bilinearly to the stored in-plane ``size`` (H, W), or to (D, H, W) also across the
    slices (linearly), then back in the stored order."""
    slices = tf.convert_to_tensor(slices)
    size = tf.convert_to_tensor(size, tf.int32)
    planar = size[-2:]
    slices = tf.cond(tf.reduce_all(tf.equal(tf.shape(slices)[1:3], planar)),
                     lambda: slices,
                     lambda: tf.cast(tf.image.resize(slices, planar, method="bilinear"),
                                     slices.dtype))
    if size.shape[0] == 3:
        slices = tf.cond(tf.equal(tf.shape(slices)[0], size[0]), lambda: slices,
                         lambda: tf.cast(resize_depth(slices, size[0], False), slices.dtype))
    inverse = tf.gather(tf.constant(INVERSE, tf.int32), axis)
    return tf.transpose(slices, tf.concat([inverse, [3]], 0))


def cut_size(shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """(D, H, W) of the slices of a stored volume of ``shape`` cut across ``axis``."""
    return tuple(int(shape[a]) for a in PERMS[axis])
