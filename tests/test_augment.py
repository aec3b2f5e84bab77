import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data import augment


def _batch():
    image = np.zeros((2, 32, 32, 3), np.float32)
    mask = np.zeros((2, 32, 32, 3), np.float32)
    image[:, 10:20, 12:22, :] = 1.0
    mask[:, 10:20, 12:22, 1] = 1.0
    return tf.constant(image), tf.constant(mask)


def _run(mode, seed):
    image, mask = _batch()
    if mode == "eager":
        return augment.augment(image, mask, tf.constant(seed))
    ds = tf.data.Dataset.from_tensors((image, mask)).map(
        lambda i, m: augment.augment(i, m, tf.constant(seed)))
    return next(iter(ds))


@pytest.mark.parametrize("mode", ["eager", "tf.data"])
def test_image_and_mask_move_together(mode):
    image, mask = _run(mode, [3, 4])
    assert image.shape == mask.shape == (2, 32, 32, 3)
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    inside = mask.numpy()[..., 1] > 0
    assert inside.sum() > 40
    # The bright square and the mask stay aligned under the same transform (intensity aside).
    img = image.numpy()[..., 0]
    assert img[inside].mean() > 2 * img[~inside].mean()


def test_deterministic_and_seed_dependent():
    a_img, a_mask = _run("eager", [1, 2])
    b_img, b_mask = _run("tf.data", [1, 2])
    np.testing.assert_allclose(a_img.numpy(), b_img.numpy(), atol=1e-5)
    np.testing.assert_array_equal(a_mask.numpy(), b_mask.numpy())
    c_img, _ = _run("eager", [1, 3])
    assert not np.allclose(a_img.numpy(), c_img.numpy())


def test_identity_transform_when_ranges_are_zero(monkeypatch):
    for name, value in [("ROTATION_DEG", 0.0), ("SCALE", (1.0, 1.0)), ("SHIFT", 0.0)]:
        monkeypatch.setattr(augment, name, value)
    image, mask = _batch()
    m = augment.affine_matrices(tf.constant([0, 1], tf.int64), 2, 32, 32)
    np.testing.assert_allclose(m.numpy(), [[1, 0, 0, 0, 1, 0, 0, 0]] * 2, atol=1e-5)
    np.testing.assert_array_equal(augment.transform(mask, m, "NEAREST").numpy(), mask.numpy())
