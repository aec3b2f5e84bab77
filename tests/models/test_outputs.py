"""What logits mean: class probabilities and masks, in a graph and on NumPy arrays alike."""

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.models import outputs


def _logits(channels, seed=0):
    return np.random.default_rng(seed).normal(size=(2, 5, 6, channels)).astype(np.float32)


def test_sigmoid_probabilities_and_thresholds_per_class():
    logits = _logits(3)
    probs = outputs.probabilities(logits, "sigmoid", 3)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-6)
    masks = outputs.masks(probs, "sigmoid", [0.3, 0.5, 0.7])
    assert isinstance(masks, np.ndarray) and masks.dtype == bool
    np.testing.assert_array_equal(masks, probs > np.array([0.3, 0.5, 0.7], np.float32))
    # Deep supervision: only the first K channels are the main head.
    np.testing.assert_allclose(outputs.probabilities(np.concatenate([logits, logits], -1),
                                                     "sigmoid", 3), probs)


def test_softmax_winner_is_the_argmax_with_the_background():
    logits = _logits(4)  # background + 3 classes
    probs = outputs.probabilities(logits, "softmax", 3)
    assert probs.shape == (2, 5, 6, 3) and (probs.sum(-1) < 1).all()
    winner = outputs.winner(probs)
    expected = np.stack([np.argmax(logits, -1) == k + 1 for k in range(3)], -1)
    np.testing.assert_array_equal(winner, expected)
    assert winner.sum(-1).max() <= 1


@pytest.mark.parametrize("head, channels", [("sigmoid", 3), ("softmax", 4)])
def test_the_same_in_a_graph(head, channels):
    logits = _logits(channels)

    @tf.function
    def graph(x):
        return outputs.masks(outputs.probabilities(x, head, 3), head, 0.5)
    eager = outputs.masks(outputs.probabilities(logits, head, 3), head, 0.5)
    np.testing.assert_array_equal(graph(tf.constant(logits)).numpy(), eager)


def test_a_plain_head_is_not_sliced():
    """The loss goes through ``probabilities``: for a head with exactly its channels the graph
    holds no slice, so training computes what the plain sigmoid did, to the last bit."""
    @tf.function
    def graph(x):
        return outputs.probabilities(x, "sigmoid", 3)
    ops = {op.type for op in graph.get_concrete_function(
        tf.TensorSpec((None, 8, 8, 3), tf.bfloat16)).graph.get_operations()}
    assert "StridedSlice" not in ops and "Sigmoid" in ops
    sliced = {op.type for op in graph.get_concrete_function(
        tf.TensorSpec((None, 8, 8, 6), tf.bfloat16)).graph.get_operations()}
    assert "StridedSlice" in sliced


def test_a_large_volume_goes_through_winner_in_chunks_with_the_same_answer(monkeypatch):
    import numpy as np

    from tf_medseg.models import outputs
    probs = np.random.default_rng(0).dirichlet(np.ones(4), (9, 5, 6))[..., 1:].astype(
        np.float32)
    whole = outputs.winner(probs)
    monkeypatch.setattr(outputs, "CHUNK_BYTES", probs.nbytes // 4)  # 3 slices a chunk
    chunked = outputs.winner(probs)
    view = outputs.winner(np.transpose(np.ascontiguousarray(np.transpose(probs, (1, 0, 2, 3))),
                                       (1, 0, 2, 3)))  # a volume as the predictor returns it
    assert chunked.dtype == bool and np.array_equal(chunked, whole)
    assert np.array_equal(view, whole) and whole.any(axis=-1).any()
