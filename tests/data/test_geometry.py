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
    back = geometry.uncut(slices, got, geometry.cut_size(volume.shape, axis))
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


def test_resampling_across_the_slices_linear_or_nearest():
    # 4 slices 2 mm apart with values 0, 10, 20, 30 -> 1 mm: 8 slices, linear between the
    # slice centres (half-pixel: slice k of 8 sits at (k + 0.5) / 2 - 0.5 of the 4)
    volume = np.broadcast_to(np.array([0, 10, 20, 30], np.float32)[None, None, :, None],
                             (3, 3, 4, 1)).copy()
    slices, axis = geometry.cut(volume, (1.0, 1.0, 2.0), target=(1.0, 1.0, 1.0))
    assert int(axis) == 2 and slices.shape == (8, 3, 3, 1)
    np.testing.assert_allclose(slices[:, 1, 1, 0].numpy(),
                               [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30], atol=1e-4)
    # slices over 3x coarser than their pixels (4 mm against 1 mm) are not interpolated
    coarse, _ = geometry.cut(volume, (1.0, 1.0, 4.0), target=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(coarse[:, 1, 1, 0].numpy(), [0, 0, 10, 10, 20, 20, 30, 30])
    labels, _ = geometry.cut(volume.astype(np.uint8), (1.0, 1.0, 2.0), target=(1.0, 1.0, 1.0),
                             nearest=True)
    np.testing.assert_array_equal(labels[:, 1, 1, 0].numpy(), [0, 0, 10, 10, 20, 20, 30, 30])
    assert geometry.cut_shape(volume.shape, (1.0, 1.0, 2.0), target=(1.0, 1.0, 1.0)) == \
        (8, 3, 3)
    # and back: (8, 3, 3) per-slice values to the stored (3, 3, 4)
    back = geometry.uncut(slices, axis, geometry.cut_size(volume.shape, 2))
    assert back.shape == (3, 3, 4, 1)
    np.testing.assert_allclose(back[1, 1, :, 0].numpy(), [1.25, 10, 20, 28.75], atol=1e-4)


def test_in_plane_resampling_of_images_is_bicubic():
    volume = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    slices, _ = geometry.cut(volume, (3.0, 1.0, 1.0), target=(0.5, 0.5))
    np.testing.assert_allclose(slices.numpy(), tf.image.resize(
        volume, (16, 16), method="bicubic").numpy(), atol=1e-6)
