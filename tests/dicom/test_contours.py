"""Polygons along pixel edges and the even-odd fill: masks with holes, islands and pixels
touching at a corner come back exactly."""

import numpy as np

from tf_medseg.dicom.contours import mask_polygons, rasterize


def test_one_pixel_is_a_square_around_its_centre():
    mask = np.zeros((6, 6), bool)
    mask[2, 3] = True
    (square,) = mask_polygons(mask)
    np.testing.assert_array_equal(square, [[1.5, 2.5], [1.5, 3.5], [2.5, 3.5], [2.5, 2.5]])


def test_holes_islands_and_corner_touching_pixels_fill_back_exactly():
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False  # a hole
    ring[4, 4] = True  # an island in the hole
    polygons = mask_polygons(ring)
    assert [len(p) for p in polygons] == [4, 4, 4]  # outer, hole, island: corners only
    np.testing.assert_array_equal(rasterize(polygons, ring.shape), ring)
    diagonal = np.zeros((4, 4), bool)
    diagonal[1, 1] = diagonal[2, 2] = True
    assert len(mask_polygons(diagonal)) == 2  # two islands, not one figure of eight
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((12, 13)) > 0.5
        np.testing.assert_array_equal(rasterize(mask_polygons(mask), mask.shape), mask)
    assert mask_polygons(np.zeros((3, 3), bool)) == []


def test_rasterize_is_even_odd_at_pixel_centres():
    # a planning system's square through pixel centres (2, 2)-(6, 6): the centres strictly
    # inside, and those on its top and left edges (half-open), are in
    square = np.array([[2.0, 2.0], [2.0, 6.0], [6.0, 6.0], [6.0, 2.0]])
    want = np.zeros((9, 9), bool)
    want[2:6, 2:6] = True
    np.testing.assert_array_equal(rasterize([square], (9, 9)), want)
    # two overlapping squares: their overlap is outside (even-odd)
    other = square + 2
    both = rasterize([square, other], (11, 11))
    assert not both[4:6, 4:6].any() and both[2, 2] and both[7, 7]
    assert not rasterize([], (3, 3)).any()
