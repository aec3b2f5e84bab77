"""Cutting stored volumes into slices and back: the slice axis, resampling to a spacing."""

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data import geometry


def test_slice_axis_rule():
    assert geometry.slice_axis((10, 20, 30), (1.0, 1.0, 4.0)) == 2  # the coarsest
    assert geometry.slice_axis((10, 20, 30), (3.0, 1.5, 1.5)) == 0  # Kaggle: across slices
    assert geometry.slice_axis((10, 20, 30), (2.0, 2.0, 1.0)) == 1  # the last on a tie
    assert geometry.slice_axis((10, 20, 30), (1.0, 1.0, 4.0), wanted=0) == 0
    assert geometry.slice_axis((10, 20, 1), (1.0, 1.0, 4.0), wanted=0) == 2  # a 2D image


@pytest.mark.parametrize("run", ["eager", "tf.data"])
@pytest.mark.parametrize("spacing, axis", [((1.0, 1.0, 4.0), 2), ((3.0, 1.5, 1.5), 0),
                                           ((1.0, 5.0, 1.0), 1)])
def test_cut_and_uncut_are_inverse(run, spacing, axis):
    volume = np.arange(4 * 5 * 6 * 2, dtype=np.float32).reshape(4, 5, 6, 2)

    def fn(v):
        return geometry.cut(v, spacing)
    slices, got = fn(volume) if run == "eager" else next(iter(
        tf.data.Dataset.from_tensors(volume).map(fn)))
    assert int(got) == axis
    np.testing.assert_array_equal(slices.numpy(), np.moveaxis(volume, axis, 0))
    back = geometry.uncut(slices, got, geometry.in_plane_size(volume.shape, axis))
    np.testing.assert_array_equal(back.numpy(), volume)


def test_resampling_to_a_spacing_keeps_integer_images_integer():
    volume = (np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8, 1) * 10)
    slices, axis = geometry.cut(volume, (3.0, 1.0, 1.0), target=(2.0, 0.5))
    assert int(axis) == 0 and slices.shape == (2, 4, 16, 1) and slices.dtype == tf.uint16
    labels = np.zeros((2, 8, 8, 1), np.uint8)
    labels[:, 2:6, 2:6] = 3
    cut, _ = geometry.cut(labels, (3.0, 1.0, 1.0), target=(2.0, 2.0), nearest=True)
    assert set(np.unique(cut.numpy())) == {0, 3}  # never interpolated
    probs = tf.random.uniform((2, 4, 4, 3))
    back = geometry.uncut(probs, axis, (8, 8))
    assert back.shape == (2, 8, 8, 3)


def test_planar_sizes_and_the_oversized_bound_agree_with_cut():
    volume = np.zeros((5, 40, 30, 1), np.float32)  # cut across axis 0 (the coarsest)
    stored, mm, size = geometry.planar_sizes(volume.shape, (4, 1, 2), "auto", (0.5, 1))
    assert (stored, mm, size) == ((40, 30), (1.0, 2.0), (80, 60))
    slices, _ = geometry.cut(volume, (4, 1, 2), "auto", (0.5, 1))
    assert tuple(slices.shape[1:3]) == size
    assert geometry.oversized(volume.shape, (4, 1, 2), "auto", (0.5, 1)) is None
    assert geometry.oversized(volume.shape, (4, 1, 2), "auto", None) is None
    assert geometry.oversized(volume.shape, (4, 1, 2), "auto", (0.005, 1)) == (
        "(40 x 30 pixels of 1 x 2 mm) would become 8000 x 60 pixels a slice, over 4096")
