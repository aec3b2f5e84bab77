"""Segmentation losses on logits, computed in float32 under any precision policy."""

from __future__ import annotations

import keras
from keras import ops

SMOOTH = 1.0


def bce(y_true, logits):
    """Mean binary cross-entropy over pixels and classes."""
    y_true, logits = ops.cast(y_true, "float32"), ops.cast(logits, "float32")
    return ops.mean(keras.losses.binary_crossentropy(y_true, logits, from_logits=True))


def soft_dice(y_true, logits):
    """1 - soft Dice, per class over the whole batch, averaged over classes."""
    y_true, logits = ops.cast(y_true, "float32"), ops.cast(logits, "float32")
    prob = ops.sigmoid(logits)
    axes = (0, 1, 2)
    inter = ops.sum(prob * y_true, axis=axes)
    total = ops.sum(prob, axis=axes) + ops.sum(y_true, axis=axes)
    return 1.0 - ops.mean((2.0 * inter + SMOOTH) / (total + SMOOTH))


def bce_dice(y_true, logits):
    """BCE + soft Dice, weighted equally (the usual choice in the competition's notebooks)."""
    return bce(y_true, logits) + soft_dice(y_true, logits)


LOSSES = {"bce": bce, "dice": soft_dice, "bce_dice": bce_dice}


def get_loss(name: str):
    """The loss function for ``train.loss``."""
    return LOSSES[name]
