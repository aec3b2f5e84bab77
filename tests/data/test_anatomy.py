"""The phantom's anatomy: sampled from a seed, rendered into a scan of 16-bit slices and
overlapping organ masks."""

import numpy as np

from tf_medseg.data.anatomy import Anatomy, render_scan


def test_deterministic_for_a_seed():
    a = Anatomy.sample(np.random.default_rng(5))
    img1, mask1 = render_scan(a, 10, 266, 266, np.random.default_rng(1))
    img2, mask2 = render_scan(a, 10, 266, 266, np.random.default_rng(1))
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(mask1, mask2)


def test_a_rendered_scan_has_the_three_organs_on_an_abdomen():
    a = Anatomy.sample(np.random.default_rng(0))
    image, mask = render_scan(a, 24, 266, 266, np.random.default_rng(0))
    assert image.shape == (24, 266, 266) and image.dtype == np.uint16
    assert mask.shape == (24, 266, 266, 3) and mask.dtype == np.uint8
    assert all(mask[..., c].any() for c in range(3))
    inside = image[mask.any(-1)].mean()
    assert inside > image[:, :5, :5].mean()  # organs are brighter than the air at the corner
