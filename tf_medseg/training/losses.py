"""Segmentation losses on logits, computed in float32 under any precision policy.

Every loss takes ``(y_true, logits)``, y_true (B, H, W, K) 0/1 masks of the K classes, and
returns a scalar. The logits are (B, H, W, K), one independent sigmoid channel per class, or
with ``softmax=True`` (B, H, W, K + 1), a softmax over background and the classes (exclusive
classes): then ``bce`` is the categorical cross-entropy against background + classes, and the
overlap losses are computed on the K class probabilities, as nnU-Net's Dice + CE.
``train.loss`` picks one by name or weights several::

    train:
      loss: {bce: 0.5, tversky: 0.5}     # 0.5 * BCE + 0.5 * Tversky

The overlap losses (Dice, Tversky, focal Tversky) are computed per class over the whole batch
(the batch's pixels pooled, so slices without an organ do not each count as a perfect or a
failed case) with smoothing 1, and averaged over the classes present in the batch's truth
(``train.overlap_absent: skip``, the default). A class absent from the batch has no overlap to
score: counted (``count``), its index is 1 / (1 + FP), which is perfect only when not one
pixel is predicted, and its steepest near there, so every batch without a small organ pushes
hard against predicting it, and in a data set where most batches lack it the network learns to
predict it nowhere (the head-and-neck organs at risk: docs/training.md). nnU-Net's Dice, with
its smoothing of 1e-5, gives such a class a constant and no gradient; skipping it does the same.
The Lovasz hinge is computed per image and class, as Berman et al. 2018 recommend for per-image
IoU, and averaged.
"""

from __future__ import annotations

from typing import Callable, Mapping

import keras
from keras import ops

from tf_medseg.config import LOSS_TERMS as NAMES
from tf_medseg.config import loss_weights  # noqa: F401  (public here too)
from tf_medseg.models import outputs

SMOOTH = 1.0


def _float32(y_true, logits):
    return ops.cast(y_true, "float32"), ops.cast(logits, "float32")


def bce(y_true, logits):
    """Mean binary cross-entropy over pixels and classes."""
    y_true, logits = _float32(y_true, logits)
    return ops.mean(keras.losses.binary_crossentropy(y_true, logits, from_logits=True))


def categorical_ce(y_true, logits):
    """Mean categorical cross-entropy over pixels of a softmax over background + classes."""
    y_true, logits = _float32(y_true, logits)
    target = ops.concatenate([1.0 - ops.sum(y_true, axis=-1, keepdims=True), y_true], axis=-1)
    return ops.mean(keras.losses.categorical_crossentropy(target, logits, from_logits=True))


def probabilities(logits, softmax: bool = False):
    """Class probabilities (B, H, W, K), float32: sigmoid per channel, or the softmax's class
    channels (background dropped); :func:`tf_medseg.models.outputs.probabilities`."""
    return outputs.probabilities(logits, "softmax" if softmax else "sigmoid",
                                 logits.shape[-1] - int(softmax))


def _soft_counts(y_true, logits, softmax: bool = False):
    """Per-class soft TP, FN, FP over the batch (class probabilities, float32)."""
    y_true, logits = _float32(y_true, logits)
    prob = probabilities(logits, softmax)
    axes = tuple(range(len(y_true.shape) - 1))  # all but the classes (2D and 3D)
    tp = ops.sum(prob * y_true, axis=axes)
    fn = ops.sum((1.0 - prob) * y_true, axis=axes)
    fp = ops.sum(prob * (1.0 - y_true), axis=axes)
    return tp, fn, fp


def _class_mean(per_class, y_true, skip_absent: bool):
    """The mean over classes of a per-class loss; with ``skip_absent`` over the classes with
    a pixel in ``y_true`` only (0 when none has)."""
    if not skip_absent:
        return ops.mean(per_class)
    axes = tuple(range(len(y_true.shape) - 1))
    present = ops.cast(ops.sum(ops.cast(y_true, "float32"), axis=axes) > 0, "float32")
    return ops.sum(per_class * present) / ops.maximum(ops.sum(present), 1.0)


def _tversky_index(y_true, logits, fn_weight: float, fp_weight: float, softmax: bool = False):
    """Per-class Tversky index TP / (TP + fn_weight * FN + fp_weight * FP), soft, smoothed."""
    tp, fn, fp = _soft_counts(y_true, logits, softmax)
    return (tp + SMOOTH) / (tp + fn_weight * fn + fp_weight * fp + SMOOTH)


def soft_dice(y_true, logits, softmax: bool = False, skip_absent: bool = True):
    """1 - soft Dice (2 TP + 1) / (2 TP + FN + FP + 1) per class over the batch, averaged over
    the classes present in the batch (``skip_absent``) or over all."""
    tp, fn, fp = _soft_counts(y_true, logits, softmax)
    return _class_mean(1.0 - (2.0 * tp + SMOOTH) / (2.0 * tp + fn + fp + SMOOTH), y_true,
                       skip_absent)


def tversky(fn_weight: float = 0.7, fp_weight: float = 0.3, softmax: bool = False,
            skip_absent: bool = True) -> Callable:
    """1 - Tversky index (Salehi et al. 2017), averaged over classes.

    ``fn_weight`` > ``fp_weight`` penalises missed organ pixels more than false alarms, which
    raises recall on small structures; 0.5 and 0.5 is the soft Dice loss (with the smoothing
    term doubled).
    """
    def tversky_loss(y_true, logits):
        ti = _tversky_index(y_true, logits, fn_weight, fp_weight, softmax)
        return _class_mean(1.0 - ti, y_true, skip_absent)
    return tversky_loss


def focal_tversky(fn_weight: float = 0.7, fp_weight: float = 0.3,
                  gamma: float = 4 / 3, softmax: bool = False,
                  skip_absent: bool = True) -> Callable:
    """Focal Tversky loss (Abraham & Khan 2019): mean over classes of (1 - TI) ** (1 / gamma).

    With gamma > 1 a class already segmented well (TI near 1) contributes a larger gradient
    than with plain Tversky, so training keeps working on the hard, small classes.
    """
    def focal_tversky_loss(y_true, logits):
        ti = _tversky_index(y_true, logits, fn_weight, fp_weight, softmax)
        return _class_mean(ops.power(ops.maximum(1.0 - ti, 1e-7), 1.0 / gamma), y_true,
                           skip_absent)
    return focal_tversky_loss


def lovasz_hinge(y_true, logits):
    """Lovasz hinge (Berman et al. 2018): a convex surrogate of 1 - IoU, per image and class.

    Errors ``1 - logit * sign`` are sorted in decreasing order and weighted by the gradient
    of the Lovasz extension of the Jaccard loss; images without the class count too (their
    loss is the largest hinge error, pushing every logit below -1).
    """
    y_true, logits = _float32(y_true, logits)
    # (B, H, W, C) -> (B * C, H * W): one row per image and class.
    labels = ops.reshape(ops.transpose(y_true, (0, 3, 1, 2)), (-1, ops.shape(logits)[1] *
                                                                ops.shape(logits)[2]))
    scores = ops.reshape(ops.transpose(logits, (0, 3, 1, 2)), ops.shape(labels))
    errors = 1.0 - scores * (2.0 * labels - 1.0)
    order = ops.flip(ops.argsort(errors, axis=-1), axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    labels_sorted = ops.take_along_axis(labels, order, axis=-1)
    positives = ops.sum(labels_sorted, axis=-1, keepdims=True)
    intersection = positives - ops.cumsum(labels_sorted, axis=-1)
    union = positives + ops.cumsum(1.0 - labels_sorted, axis=-1)
    jaccard = 1.0 - intersection / union
    grad = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
    per_row = ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(grad), axis=-1)
    return ops.mean(per_row)


def combined(weights: Mapping[str, float], *, fn_weight: float = 0.7, fp_weight: float = 0.3,
             gamma: float = 4 / 3, softmax: bool = False, skip_absent: bool = True
             ) -> Callable:
    """The weighted sum of the named losses, e.g. ``{"bce": 0.5, "tversky": 0.5}``, for
    sigmoid logits or (``softmax``) logits of background + classes; the overlap losses over
    the classes present in the batch (``skip_absent``) or over all."""
    parts = {"bce": categorical_ce if softmax else bce,
             "dice": lambda y, x: soft_dice(y, x, softmax, skip_absent),
             "tversky": tversky(fn_weight, fp_weight, softmax, skip_absent),
             "focal_tversky": focal_tversky(fn_weight, fp_weight, gamma, softmax, skip_absent),
             "lovasz": lovasz_hinge}
    unknown = set(weights) - set(parts)
    if unknown:
        raise ValueError(f"unknown loss {sorted(unknown)}; choose from {NAMES}")
    if softmax and weights.get("lovasz"):
        from tf_medseg.errors import ConfigError
        raise ConfigError("train.loss: lovasz (the Lovasz hinge) needs sigmoid outputs; set "
                          "model.output sigmoid, or use bce, dice, tversky or focal_tversky")
    terms = [(parts[name], float(w)) for name, w in weights.items() if w]

    def loss(y_true, logits):
        return sum(w * fn(y_true, logits) for fn, w in terms)
    loss.__name__ = "_".join(f"{w:g}{name}" for name, w in weights.items() if w) or "zero"
    return loss


def deep_supervision(loss: Callable, factors) -> Callable:
    """``loss`` over the heads of a deep-supervision model, ``factors[i]`` the per-axis
    factor by which head ``i`` is coarser than the mask (the main head's all 1): each head is
    scored against the mask taken at its resolution by nearest neighbour (pixel centres
    aligned, as nnU-Net's ``nearest-exact``: every f-th pixel from f // 2), weights 1, 1/2, 1/4,
    ... normalised to sum to 1 (nnU-Net's)."""
    factors = [tuple(int(f) for f in head) for head in factors]
    raw = [0.5 ** i for i in range(len(factors))]
    weights = [w / sum(raw) for w in raw]

    def supervised(y_true, logits):
        total = 0.0
        for w, head, f in zip(weights, logits, factors):
            index = (slice(None), *(slice(k // 2, None, k) for k in f), slice(None))
            total += w * loss(y_true[index], head)
        return total
    supervised.__name__ = f"{loss.__name__}_deep"
    return supervised


def head_factors(model) -> list[tuple[int, ...]]:
    """Per output of ``model``, how much coarser than the first it is along each axis."""
    main = model.outputs[0].shape[1:-1]
    factors = []
    for out in model.outputs:
        shape = out.shape[1:-1]
        if None in main or None in shape or any(m % n for m, n in zip(main, shape)):
            raise ValueError(f"deep supervision needs outputs of known sizes that divide the "
                             f"main head's, got {tuple(shape)} and {tuple(main)}")
        factors.append(tuple(m // n for m, n in zip(main, shape)))
    return factors


def skips_absent(train_config, metric: str) -> bool:
    """``train.overlap_absent`` resolved for a data set scored by ``metric``: ``auto`` counts
    absent classes for the competition metric (every slice is scored, and an organ predicted
    on a slice without it costs that slice's Dice and the case's Hausdorff: the batch-level
    pressure against false positives pays there) and skips them for volume data (Dice per case
    and class: nnU-Net's way)."""
    mode = train_config.overlap_absent
    return mode == "skip" or (mode == "auto" and metric != "competition")


def get_loss(train_config, output: str = "sigmoid", *, metric: str) -> Callable:
    """The loss function ``train.loss`` (and the Tversky keys) of a ``train:`` section, for
    the model's ``output`` (sigmoid or softmax) and a data set scored by ``metric``
    (competition or volume: :func:`skips_absent`)."""
    t = train_config
    return combined(loss_weights(t.loss), fn_weight=t.tversky_fn_weight,
                    fp_weight=t.tversky_fp_weight, gamma=t.focal_tversky_gamma,
                    softmax=output == "softmax", skip_absent=skips_absent(t, metric))
