import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.models.sliding_window import gaussian_weights, sliding_window, window_starts


@pytest.mark.parametrize("size, patch, overlap, starts", [
    (110, 64, 0.5, [0, 23, 46]),  # nnU-Net's own example
    (64, 64, 0.5, [0]), (40, 64, 0.5, [0]),
    (100, 32, 0.0, [0, 23, 45, 68]),  # 68 / 32 -> 4 windows, 22.67 apart
    (48, 16, 0.5, [0, 8, 16, 24, 32]),
])
def test_window_starts(size, patch, overlap, starts):
    assert window_starts(size, patch, overlap) == starts


def test_gaussian_by_hand():
    w = gaussian_weights((8, 6))  # sd 1 and 0.75 pixels, peak at (4, 3)
    assert w.shape == (8, 6) and w.dtype == np.float32 and w[4, 3] == 1.0
    assert w.argmax() == 4 * 6 + 3
    assert np.isclose(w[0, 3], np.exp(-8)) and np.isclose(w[4, 0], np.exp(-8))
    assert np.isclose(w[0, 0], np.exp(-16)) and w.min() > 0


def test_overlap_and_weights_by_hand():
    # one 2 x 6 image, windows of 2 x 4 at columns 0 and 2; each window's output is its input
    # minus the window's mean, weighted 1, 2, 3, 4 across the window's columns
    image = tf.constant(np.tile(np.arange(6, dtype=np.float32), (2, 1))[None, :, :, None])
    weights = np.tile(np.arange(1, 5, dtype=np.float32), (2, 1))
    out = sliding_window(lambda x: x - tf.reduce_mean(x), image, (2, 4), overlap=0.5,
                         weights=weights).numpy()[0, 0, :, 0]
    # columns 0, 1: the first window only; 4, 5: the second; 2: (0.5*3 - 1.5*1) / 4,
    # 3: (1.5*4 - 0.5*2) / 6
    assert np.allclose(out, [-1.5, -0.5, 0.0, 5 / 6, 0.5, 1.5])


def test_a_small_image_is_padded_and_cropped_back():
    image = tf.random.uniform((3, 5, 3, 2))
    out = sliding_window(lambda x: x * 2, image, (8, 8))
    assert out.shape == (3, 5, 3, 2) and np.allclose(out, image.numpy() * 2, atol=1e-6)


def test_the_saved_model_equals_windows_step_by_step(tmp_path):
    from tf_medseg.models import build_unet
    patch, overlap = (16, 16), 0.5
    model = build_unet((*patch, 1), 3, base_filters=4, depth=2)

    class Windows(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
        def __call__(self, image):
            return sliding_window(lambda x: self.model(x, training=False), image, patch,
                                  overlap)

    tf.saved_model.save(Windows(), str(tmp_path / "windows"))
    loaded = tf.saved_model.load(str(tmp_path / "windows"))
    image = np.random.default_rng(0).normal(size=(2, 40, 50, 1)).astype(np.float32)
    served = loaded(tf.constant(image)).numpy()

    w = gaussian_weights(patch)[None, :, :, None]
    total = np.zeros((2, 40, 50, 3))
    norm = np.zeros((1, 40, 50, 1))
    ys, xs = window_starts(40, 16, overlap), window_starts(50, 16, overlap)
    assert len(ys) * len(xs) == 4 * 6
    for y, x in itertools.product(ys, xs):
        out = model(image[:, y:y + 16, x:x + 16], training=False).numpy()
        total[:, y:y + 16, x:x + 16] += out * w
        norm[:, y:y + 16, x:x + 16] += w
    assert served.shape == (2, 40, 50, 3)
    assert np.abs(served - total / norm).max() < 1e-4


def test_3d_windows_by_hand():
    # a 1 x 6 x 2 x 2 volume, windows of 4 x 2 x 2 at slices 0 and 2 (overlap 0.5), each
    # answering its input minus its mean, weighted 1, 2, 3, 4 along the slices
    volume = np.broadcast_to(np.arange(6, dtype=np.float32)[None, :, None, None, None],
                             (1, 6, 2, 2, 1))
    weights = np.broadcast_to(np.arange(1, 5, dtype=np.float32)[:, None, None], (4, 2, 2))
    out = sliding_window(lambda x: x - tf.reduce_mean(x), tf.constant(volume), (4, 2, 2),
                         overlap=0.5, weights=weights).numpy()
    assert out.shape == (1, 6, 2, 2, 1)
    # the same numbers as the 2D case above, along the slices
    assert np.allclose(out[0, :, 1, 0, 0], [-1.5, -0.5, 0.0, 5 / 6, 0.5, 1.5])


def test_3d_windows_pad_and_weigh_every_axis():
    volume = tf.random.uniform((1, 5, 20, 9, 2))
    out = sliding_window(lambda x: x * 3, volume, (8, 8, 8))  # smaller along slices
    assert out.shape == (1, 5, 20, 9, 2)
    assert np.allclose(out, volume.numpy() * 3, atol=1e-5)
    w = gaussian_weights((4, 8, 6))
    assert w.shape == (4, 8, 6) and w[2, 4, 3] == 1.0 and w.min() > 0
    assert np.isclose(w[0, 4, 3], np.exp(-0.5 * (2 / 0.5) ** 2))
