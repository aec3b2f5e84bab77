"""Surface Dice and added path length on shapes whose values are worked out by hand."""

import numpy as np
import pytest

from tf_medseg.evaluation.surfaces import added_path_length, surface_dice


def _row(cells, n=10):
    """A (1, 1, n, 1) volume true on ``cells``: every voxel of it is surface."""
    v = np.zeros((1, 1, n, 1), bool)
    v[0, 0, list(cells), 0] = True
    return v


def test_surface_dice_by_hand():
    true, pred = _row(range(0, 5)), _row(range(2, 7))
    # pred -> true: x = 2, 3, 4 at 0, x = 5 at 1, x = 6 at 2 (voxels); true -> pred: the mirror
    assert surface_dice(pred, true, (1, 1, 1), 0.0)[0] == pytest.approx(6 / 10)
    assert surface_dice(pred, true, (1, 1, 1), 1.0)[0] == pytest.approx(8 / 10)
    assert surface_dice(pred, true, (1, 1, 1), 2.0)[0] == pytest.approx(1.0)
    # in mm: 2 mm voxels along the row, so 2 mm is one voxel
    assert surface_dice(pred, true, (1, 1, 2), 2.0)[0] == pytest.approx(8 / 10)
    # one tolerance per class; empty in both: NaN; in one: 0
    two = np.concatenate([pred, np.zeros_like(pred)], -1), np.concatenate([true, true], -1)
    np.testing.assert_allclose(surface_dice(*two, (1, 1, 1), [1.0, 5.0]), [0.8, 0.0])
    empty = np.zeros_like(pred)
    assert np.isnan(surface_dice(empty, empty, (1, 1, 1))[0])
    # a solid cube against itself
    cube = np.zeros((6, 6, 6, 1), bool)
    cube[1:5, 1:5, 1:5] = True
    assert surface_dice(cube, cube, (1, 1, 1), 0.0)[0] == 1.0


def test_added_path_length_by_hand():
    # slice 0: a 4 x 4 square (contour: a ring of 12 pixels) against the same square one column
    # to the right; 6 of the reference ring's pixels are not on the predicted ring: its left
    # column (4) and (3, 5), (4, 5); all of them within one pixel of it.
    true = np.zeros((2, 10, 10, 1), bool)
    pred = np.zeros_like(true)
    true[0, 2:6, 2:6] = True
    pred[0, 2:6, 3:7] = True
    # slice 1: a 2 x 2 square (4 contour pixels) that the prediction misses; a false positive
    # elsewhere on it adds nothing to draw
    true[1, 6:8, 6:8] = True
    pred[1, 0:2, 0:2] = True
    apl, rel = added_path_length(pred, true, (3.0, 0.5, 0.5), axis=0, tolerance=0.0)
    assert apl[0] == pytest.approx((6 + 4) * 0.5) and rel[0] == pytest.approx(10 / 16)
    apl, rel = added_path_length(pred, true, (3.0, 0.5, 0.5), axis=0, tolerance=0.5)
    assert apl[0] == pytest.approx(4 * 0.5) and rel[0] == pytest.approx(4 / 16)
    # the same volume with the slices along the last axis
    moved = [np.moveaxis(v, 0, 2) for v in (pred, true)]
    apl2, rel2 = added_path_length(*moved, (0.5, 0.5, 3.0), axis=2, tolerance=0.5)
    assert apl2[0] == pytest.approx(apl[0]) and rel2[0] == pytest.approx(rel[0])
    # a perfect contour adds nothing; no reference: nothing to add, relative undefined
    apl, rel = added_path_length(true, true, (3.0, 0.5, 0.5))
    assert apl[0] == 0 and rel[0] == 0
    apl, rel = added_path_length(pred, np.zeros_like(true), (3.0, 0.5, 0.5))
    assert apl[0] == 0 and np.isnan(rel[0])
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        added_path_length(pred, true, (1, 1, 1), tolerance=-1)
