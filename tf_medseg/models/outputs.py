"""What a network's logits mean: the one place that turns them into class probabilities and
masks, for the training metrics, the export's graph, the predictor and post-processing.

A network ends in logits (no final nonlinearity): one channel per class for a ``sigmoid`` head
(independent, overlapping classes), or background + classes for a ``softmax`` head (exclusive
classes). Probabilities always have one channel per class (a softmax's background left out);
a class's mask is where its probability passes the threshold (sigmoid) or where it is the most
probable class and beats the background, 1 - the classes' sum (softmax: :func:`winner`).

The functions take TensorFlow tensors (in a graph or eagerly) and NumPy arrays alike (through
``keras.ops``; NumPy in, NumPy out).
"""

from __future__ import annotations

import numpy as np
from keras import ops


def _numpy_like(result, *inputs):
    return ops.convert_to_numpy(result) if all(isinstance(x, np.ndarray) for x in inputs) \
        else result


def probabilities(logits, head: str, num_classes: int):
    """(..., K) class probabilities of logits (only their first K, or K + 1, channels are
    read)."""
    channels = num_classes + int(head == "softmax")
    # Sliced only where there is more to leave out: the loss's graph (and its gradients, to
    # the last bit) stays that of the plain head.
    x = logits if logits.shape[-1] == channels else logits[..., :channels]
    x = ops.cast(x, "float32")
    out = ops.softmax(x, axis=-1)[..., 1:] if head == "softmax" else ops.sigmoid(x)
    return _numpy_like(out, logits)


CHUNK_BYTES = 64 * 2**20  # a volume's probabilities go through winner this much at a time


def winner(probs):
    """(..., K) boolean: each class where it is the most probable, background (1 - the sum of
    the class probabilities) included; at most one class per pixel. A large NumPy volume goes
    through in chunks of its first axis (the same operations on each pixel), so that the
    temporaries of a CT's probabilities stay small."""
    if isinstance(probs, np.ndarray) and probs.ndim > 1 and probs.nbytes > CHUNK_BYTES:
        out = np.empty(probs.shape, bool)
        step = max(1, int(CHUNK_BYTES // (probs.nbytes // probs.shape[0])))
        for begin in range(0, probs.shape[0], step):
            out[begin:begin + step] = _winner(probs[begin:begin + step])
        return out
    return _winner(probs)


def _winner(probs):
    background = 1.0 - ops.sum(probs, axis=-1, keepdims=True)
    best = ops.argmax(ops.concatenate([background, probs], axis=-1), axis=-1)
    out = ops.equal(ops.expand_dims(best, -1), ops.arange(1, probs.shape[-1] + 1,
                                                          dtype=best.dtype))
    return _numpy_like(out, probs)


def masks(probs, head: str, thresholds):
    """(..., K) boolean class masks of class probabilities: above ``thresholds`` (one number,
    or one per class) for a sigmoid head, the :func:`winner` for a softmax head."""
    if head == "softmax":
        return winner(probs)
    if isinstance(probs, np.ndarray):
        return probs > np.asarray(thresholds, probs.dtype)
    return ops.greater(probs, ops.cast(thresholds, probs.dtype))
