"""The out-of-fold choice of post-processing rules (tf_medseg.workflows.postprocessing), on
hand-built volumes with scores worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tf_medseg.evaluation import metrics
from tf_medseg.inference import postprocess as pp
from tf_medseg.workflows import postprocessing

CLASSES = ["organ"]


def competition_score(pred, true):
    return metrics.summarize([metrics.slice_dice(pred, true)], [metrics.hausdorff(pred, true)],
                             CLASSES)


def _volume(shape=(4, 8, 8)):
    return np.zeros((*shape, 1), np.float32), np.zeros((*shape, 1), bool)


def _cube(vol, value):
    """The true organ: slices 0-1, rows 2-3, columns 2-3 (8 voxels)."""
    vol[0:2, 2:4, 2:4, 0] = value
    return vol


def _choose(scans, **kw):
    return postprocessing.choose(lambda: iter(scans), CLASSES, **kw)


def test_a_small_component_is_removed():
    probs, truth = _volume()
    _cube(probs, 0.9)
    _cube(truth, True)
    probs[3, 7, 7, 0] = 0.9  # a stray voxel, alone in slice 3
    # Before: slice Dice 1, 1, (slice 2 skipped), 0 -> 2/3; Hausdorff from (3, 7, 7) to
    # (1, 3, 3) = 6 over the diagonal sqrt(4^2 + 8^2 + 8^2) = 12 -> 0.5.
    before = 0.4 * 2 / 3 + 0.6 * (1 - 0.5)
    assert competition_score(probs > 0.5, truth)["score"] == pytest.approx(before)
    choice = _choose([(probs, truth)], min_sizes=(2, 100), thresholds=(0.4, 0.6))
    assert choice["score_before"] == pytest.approx(before)
    assert choice["score_after"] == pytest.approx(1.0)
    assert choice["rules"]["organ"] == pp.Rule(threshold=0.5, min_size=2)  # 100: drops all
    masks = pp.masks(probs, choice["rules"], CLASSES, "sigmoid")
    np.testing.assert_array_equal(masks, truth)


def test_the_largest_component_is_kept():
    probs, truth = _volume((4, 12, 12))
    _cube(probs, 0.9)
    _cube(truth, True)
    probs[2:4, 8:11, 8:10, 0] = 0.8  # a false organ of 12 voxels in slices 2-3
    # Before: slices 0, 1 Dice 1; slices 2, 3 Dice 0 -> 0.5. Hausdorff from (3, 10, 9) to
    # (1, 3, 3) = sqrt(4 + 49 + 36) over sqrt(16 + 144 + 144).
    hd = np.sqrt(4 + 49 + 36) / np.sqrt(16 + 144 + 144)
    before = 0.4 * 0.5 + 0.6 * (1 - hd)
    # min_size 5 keeps both (8 and 12 voxels); 10 keeps only the false one; largest too.
    choice = _choose([(probs, truth)], min_sizes=(5,), thresholds=())
    assert choice["score_before"] == pytest.approx(before)
    assert choice["score_after"] == pytest.approx(before)  # nothing raised it: kept as is
    assert choice["rules"]["organ"] == pp.Rule()
    # Make the true organ the larger one: keep-largest now removes the false one.
    probs[0:2, 2:5, 2:5, 0] = 0.9
    truth[0:2, 2:5, 2:5, 0] = True  # 18 voxels
    choice = _choose([(probs, truth)], min_sizes=(5,), thresholds=())
    assert choice["score_after"] == pytest.approx(1.0)
    assert choice["rules"]["organ"] == pp.Rule(largest=True)


def test_the_threshold_is_moved():
    probs, truth = _volume()
    _cube(probs, 0.45)  # the model is under-confident
    _cube(truth, True)
    probs[3, 0, 0, 0] = 0.35  # noise that a 0.3 threshold would let in
    # Before (0.5): nothing predicted: slices 0, 1 Dice 0, Hausdorff 1 -> score 0.
    # 0.4: exact -> 1.0. 0.3 adds the noise voxel: Dice (1 + 1 + 0) / 3, Hausdorff from
    # (3, 0, 0) to (1, 2, 2) = sqrt(4 + 4 + 4) / 12.
    choice = _choose([(probs, truth)], min_sizes=())
    assert choice["score_before"] == pytest.approx(0.0)
    assert choice["score_after"] == pytest.approx(1.0)
    assert choice["rules"]["organ"] == pp.Rule(threshold=0.4)
    at_03 = competition_score(probs > 0.3, truth)["score"]
    assert at_03 == pytest.approx(0.4 * 2 / 3 + 0.6 * (1 - np.sqrt(12) / 12))


def test_classes_are_chosen_each_on_its_own():
    probs = np.zeros((4, 8, 8, 2), np.float32)
    truth = np.zeros((4, 8, 8, 2), bool)
    for k in (0, 1):
        _cube(probs[..., k:k + 1], 0.9)
        _cube(truth[..., k:k + 1], True)
    probs[3, 7, 7, 1] = 0.9  # a stray voxel in the second class only
    choice = postprocessing.choose(lambda: iter([(probs, truth)]), ["a", "b"], min_sizes=(2,),
                       thresholds=())
    assert choice["rules"] == {"a": pp.Rule(), "b": pp.Rule(min_size=2)}
    assert choice["score_after"] == pytest.approx(1.0)


def test_mean_dice_objective_for_volume_sources():
    probs, truth = _volume()
    _cube(probs, 0.9)
    _cube(truth, True)
    probs[3, 7, 7, 0] = 0.9
    choice = _choose([(probs, truth)], competition=False, min_sizes=(2,), thresholds=())
    assert choice["objective"] == "mean Dice"
    assert choice["score_before"] == pytest.approx(2 * 8 / (9 + 8))
    assert choice["score_after"] == pytest.approx(1.0)


def test_softmax_takes_no_threshold():
    probs = np.zeros((2, 4, 4, 2), np.float32)
    probs[..., 0] = 0.6  # class a wins everywhere over b (0.3) and the background (0.1)
    probs[..., 1] = 0.3
    truth = np.zeros((2, 4, 4, 2), bool)
    truth[..., 0] = True
    choice = postprocessing.choose(lambda: iter([(probs, truth)]), ["a", "b"], output="softmax",
                       min_sizes=(), competition=False)
    assert choice["candidates"]["thresholds"] == []
    assert choice["score_before"] == pytest.approx(1.0)
    out = pp.masks(probs, None, ["a", "b"], "softmax")
    assert out[..., 0].all() and not out[..., 1].any()
