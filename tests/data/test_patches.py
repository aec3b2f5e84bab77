import numpy as np
import tensorflow as tf

from tf_medseg.data.patches import pad_to, random_patch


def _slice():
    """A 2-channel 48 x 64 slice whose pixels hold their own position; class 0 (bit 1) in a
    4 x 4 square at the top left, class 1 (bit 2) in one at the bottom right."""
    rows, cols = np.meshgrid(np.arange(48), np.arange(64), indexing="ij")
    image = np.stack([rows, cols]).astype(np.float16)
    packed = np.zeros((48, 64), np.uint8)
    packed[2:6, 2:6] = 1
    packed[40:44, 56:60] = 2
    return tf.constant(image), tf.constant(packed)


def _corner(crop):
    return int(crop[0, 0, 0]), int(crop[1, 0, 0])


def test_patches_around_each_class_and_anywhere():
    image, packed = _slice()
    shows = {1: 0, 2: 0}
    for s in range(60):
        crop, masks = random_patch(image, packed, tf.constant([s, 7]), (16, 16), 1.0, 2)
        assert crop.shape == (2, 16, 16) and masks.shape == (16, 16)
        y, x = _corner(crop)
        assert np.array_equal(masks.numpy(), packed.numpy()[y:y + 16, x:x + 16])
        values = set(np.unique(masks.numpy())) - {0}
        assert len(values) == 1  # the squares are 50 pixels apart: one class a patch
        shows[values.pop()] += 1
    assert min(shows.values()) >= 18  # the class is drawn first: about half each
    corners = {_corner(random_patch(image, packed, tf.constant([s, 1]), (16, 16), 0.0, 2)[0])
               for s in range(40)}
    assert len(corners) > 30 and all(0 <= y <= 32 and 0 <= x <= 48 for y, x in corners)


def test_the_same_seed_gives_the_same_patch():
    image, packed = _slice()
    a = random_patch(image, packed, tf.constant([3, 4]), (16, 24), 0.5, 2)
    b = random_patch(image, packed, tf.constant([3, 4]), (16, 24), 0.5, 2)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))


def test_a_slice_smaller_than_the_patch_is_padded_evenly():
    image = tf.ones((1, 5, 20), tf.float16)
    packed = tf.ones((5, 20), tf.uint8)
    padded, masks = pad_to(image, packed, (8, 16))
    assert padded.shape == (1, 8, 20) and masks.shape == (8, 20)
    assert np.array_equal(masks.numpy()[:, 0], [0, 1, 1, 1, 1, 1, 0, 0])
    crop, masks = random_patch(image, packed, tf.constant([0, 0]), (8, 16), 1.0, 1)
    assert crop.shape == (1, 8, 16) and int(masks.numpy().sum()) == 5 * 16


def test_3d_patches_of_a_volume():
    # 2 channels x 10 slices x 20 x 24; class 0 in one voxel block near the far corner
    depth, rows, cols = np.meshgrid(np.arange(10), np.arange(20), np.arange(24), indexing="ij")
    image = tf.constant(np.stack([depth, rows * 100 + cols]).astype(np.float16))
    packed = np.zeros((10, 20, 24), np.uint8)
    packed[7:9, 15:17, 20:22] = 1
    for s in range(20):
        crop, masks = random_patch(image, tf.constant(packed), tf.constant([s, 3]),
                                   (4, 8, 8), 1.0, 1)
        assert crop.shape == (2, 4, 8, 8) and masks.shape == (4, 8, 8)
        z, yx = int(crop[0, 0, 0, 0]), int(crop[1, 0, 0, 0])
        y, x = divmod(yx, 100)
        assert np.array_equal(masks.numpy(), packed[z:z + 4, y:y + 8, x:x + 8])
        assert masks.numpy().any()  # every patch is centred on the class
    # a volume thinner than the patch is padded evenly along that axis
    crop, masks = random_patch(image[:, :3], tf.constant(packed[:3]), tf.constant([0, 1]),
                               (4, 8, 8), 0.0, 1)
    assert crop.shape == (2, 4, 8, 8)
    padded, _ = pad_to(image[:, :3], tf.constant(packed[:3]), (4, 8, 8))
    assert padded.shape == (2, 4, 20, 24)
    assert float(tf.reduce_sum(padded[0, 3])) == 0 and float(padded[0, 2, 0, 0]) == 2
