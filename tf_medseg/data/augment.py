"""Joint image/mask augmentation on batches, deterministic for a seed.

One random affine transform per slice (rotation, isotropic scale, shift) is applied to image
and mask by the same op (bilinear for the image, nearest for the mask, zeros outside), then an
intensity change on the image only (contrast, brightness, gamma). No flips by default: the
organs are lateralised (the stomach is on the patient's left), and a flip would teach the
model anatomy that does not exist.
"""

from __future__ import annotations

import math

import tensorflow as tf

ROTATION_DEG = 10.0
SCALE = (0.9, 1.1)
SHIFT = 0.06  # fraction of the image size
CONTRAST = (0.85, 1.15)
BRIGHTNESS = 0.1
GAMMA = (0.8, 1.25)


def affine_matrices(seed: tf.Tensor, batch: tf.Tensor, height, width) -> tf.Tensor:
    """(B, 8) projective transforms (output -> input pixel maps) about the image centre."""
    u = tf.random.stateless_uniform([batch, 4], seed=seed)
    angle = (2 * u[:, 0] - 1) * ROTATION_DEG * math.pi / 180
    scale = SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, 1]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    tx, ty = (2 * u[:, 2] - 1) * SHIFT * w, (2 * u[:, 3] - 1) * SHIFT * h
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # input = R/s (output - centre - shift) + centre
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - a0 * (cx + tx) - a1 * (cy + ty)
    b2 = cy - b0 * (cx + tx) - b1 * (cy + ty)
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def transform(images: tf.Tensor, matrices: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Apply (B, 8) transforms to (B, H, W, C) images."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=matrices, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT")


def intensity(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random contrast, brightness and gamma per slice, on normalised [0, CLIP] images."""
    batch = tf.shape(images)[0]
    u = tf.random.stateless_uniform([batch, 1, 1, 3], seed=seed)
    contrast = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u[..., 0:1]
    brightness = (2 * u[..., 1:2] - 1) * BRIGHTNESS
    gamma = tf.exp(math.log(GAMMA[0]) + (math.log(GAMMA[1]) - math.log(GAMMA[0])) * u[..., 2:3])
    images = tf.pow(tf.maximum(images, 0.0), gamma)
    return tf.maximum(images * contrast + brightness, 0.0)


def augment(images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor):
    """Augment a batch: (B, H, W, C) float images, (B, H, W, K) float 0/1 masks.

    Args:
        seed: int32/int64 tensor of shape [2] (stateless randomness: same seed, same output).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    shape = tf.shape(images)
    matrices = affine_matrices(seeds[0], shape[0], shape[1], shape[2])
    images = transform(images, matrices, "BILINEAR")
    masks = transform(masks, matrices, "NEAREST")
    return intensity(images, seeds[1]), masks
