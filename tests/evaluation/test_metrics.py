import math

import numpy as np
import pytest

from tf_medseg.data.sources import kaggle_inventory
from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.evaluation import metrics


def _volume(d=4, h=20, w=30):
    return np.zeros((d, h, w, len(CLASSES)), bool)


def test_identical_volumes_score_one():
    true = _volume()
    true[1:3, 5:10, 5:12, 0] = True
    true[0:4, 2:4, 20:25, 1] = True
    true[2, 10:15, 3:8, 2] = True
    result = metrics.competition_score(true, true.copy())
    assert result["dice"] == 1.0 and result["hausdorff"] == 0.0 and result["score"] == 1.0


def test_both_empty_option():
    empty = _volume()
    assert math.isnan(metrics.competition_score(empty, empty)["score"])
    one = metrics.competition_score(empty, empty, both_empty="one")
    assert (one["dice"], one["hausdorff"], one["score"]) == (1.0, 0.0, 1.0)
    zero = metrics.competition_score(empty, empty, both_empty="zero")
    assert (zero["dice"], zero["hausdorff"], zero["score"]) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="both_empty"):
        metrics.competition_score(empty, empty, both_empty="maybe")


def test_one_empty_scores_zero_dice_and_worst_hausdorff():
    true, pred = _volume(), _volume()
    true[1, 5:10, 5:10, 0] = True
    result = metrics.competition_score(pred, true, classes=CLASSES)
    # Only class 0 of slice 1 is not skipped: Dice 0 there, Hausdorff 1 for class 0.
    assert (result["dice"], result["hausdorff"], result["score"]) == (0.0, 1.0, 0.0)
    assert result["dice_large_bowel"] == 0.0 and math.isnan(result["dice_stomach"])


def test_shift_by_k_voxels():
    """A cube shifted by k columns: hand-computed Dice per slice and Hausdorff k / diagonal."""
    d, h, w, k = 4, 20, 30, 3
    true, pred = _volume(d, h, w), _volume(d, h, w)
    true[1:3, 5:11, 5:11, 2] = True  # 6x6 squares on slices 1 and 2
    pred[1:3, 5:11, 5 + k:11 + k, 2] = True
    result = metrics.competition_score(pred, true)
    dice = 2 * 6 * (6 - k) / (36 + 36)
    hd = k / math.sqrt(d * d + h * h + w * w)
    assert result["dice"] == pytest.approx(dice)
    assert result["hausdorff"] == pytest.approx(hd)
    assert result["score"] == pytest.approx(0.4 * dice + 0.6 * (1 - hd))


def test_aggregate_over_case_days_weights_pairs():
    a = np.array([[1.0, np.nan, np.nan]])  # one scored pair
    b = np.array([[0.0, 0.0, np.nan], [0.0, np.nan, np.nan]])  # three scored pairs
    result = metrics.summarize([a, b], [np.array([0.0, np.nan, np.nan]),
                                        np.array([1.0, 1.0, np.nan])], CLASSES)
    assert result["dice"] == pytest.approx(0.25)
    assert result["hausdorff"] == pytest.approx(2 / 3)


def test_aggregate_score_over_volumes():
    """Two case-days: pairs pooled over both for Dice, (case-day, class) pairs for Hausdorff."""
    a_true = _volume(2, 10, 10)
    a_true[0, 2:4, 2:4, 0] = True
    b_true, b_pred = _volume(2, 10, 10), _volume(2, 10, 10)
    b_true[1, 5:7, 5:7, 1] = True
    b_pred[1, 5:7, 6:8, 1] = True  # shifted one column: Dice 1/2
    b_pred[0, 0, 0, 2] = True  # a false positive: Dice 0, Hausdorff 1 for class 2
    result = metrics.aggregate_score([(a_true, a_true), (b_pred, b_true)], classes=CLASSES)
    assert result["dice"] == pytest.approx((1 + 0.5 + 0) / 3)
    hd_b1 = 1 / math.sqrt(2 * 2 + 10 * 10 + 10 * 10)
    assert result["hausdorff"] == pytest.approx((0 + hd_b1 + 1) / 3)
    assert result["dice_small_bowel"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no case-day"):
        metrics.aggregate_score([])


def test_per_class_keys_are_the_channel_numbers_without_names():
    true = _volume()
    true[1, 2:4, 2:4, 1] = True
    result = metrics.competition_score(true, true)
    assert result["dice_1"] == 1.0 and math.isnan(result["dice_0"])
    with pytest.raises(ValueError, match="2 class names for 3 channels"):
        metrics.competition_score(true, true, classes=["a", "b"])


def test_real_case_day_volume(sample_dir):
    (scan,) = list(kaggle_inventory.iter_scans(sample_dir / "case139_day0_8bit"))
    true = scan.mask.astype(bool)
    assert metrics.competition_score(true, true)["score"] == 1.0
    shifted = np.roll(true, 2, axis=2)  # two rows down
    result = metrics.competition_score(shifted, true)
    d, h, w = true.shape[:3]
    assert result["hausdorff"] == pytest.approx(2 / math.sqrt(d * d + h * h + w * w))
    assert 0.5 < result["dice"] < 1.0


def test_streaming_iou_metric_per_class():
    y = np.zeros((1, 4, 4, 3), "float32")
    y[0, :2, :, 0] = 1  # 8 pixels
    logits = np.full_like(y, -5.0)
    logits[0, :3, :, 0] = 5.0  # 12 predicted: intersection 8, union 12
    logits[0, 0, 0, 1] = 5.0  # class 1: a false positive only -> IoU 0
    per_class = [metrics.IoUScore(3, class_index=i) for i in range(3)]
    mean = metrics.IoUScore(3)
    for metric in (*per_class, mean):
        metric.update_state(y, logits)
    assert [float(m.result()) for m in per_class] == pytest.approx([8 / 12, 0.0, 1.0])
    assert float(mean.result()) == pytest.approx((8 / 12 + 0 + 1) / 3)
    # Deep supervision: channels after the first num_classes (auxiliary heads) are ignored.
    extra = np.concatenate([logits, np.full_like(logits, 5.0)], axis=-1)
    mean.reset_state()
    mean.update_state(y, extra)
    assert float(mean.result()) == pytest.approx((8 / 12 + 0 + 1) / 3)
    names = [m.name for m in metrics.training_metrics(CLASSES)]
    assert names == ["dice", "dice_large_bowel", "dice_small_bowel", "dice_stomach",
                     "iou", "iou_large_bowel", "iou_small_bowel", "iou_stomach"]


def test_streaming_dice_metric():
    metric = metrics.DiceScore(num_classes=2, class_index=None)
    y = np.zeros((2, 4, 4, 2), "float32")
    y[0, :2, :, 0] = 1
    logits = np.full_like(y, -5.0)
    logits[0, :1, :, 0] = 5.0  # half of class 0 found; class 1 empty in both -> 1
    metric.update_state(y, logits)
    assert float(metric.result()) == pytest.approx((2 * 4 / (4 + 8) + 1.0) / 2)
    metric.reset_state()
    metric.update_state(y, np.where(y > 0, 5.0, -5.0))
    assert float(metric.result()) == pytest.approx(1.0)


def test_hausdorff_with_the_truths_distance_map_given_is_the_same():
    rng = np.random.default_rng(3)
    true = rng.random((6, 20, 24, 3)) > 0.97
    true[..., 2] = False  # a class absent from the truth
    pred = rng.random((6, 20, 24, 3)) > 0.95
    to_true = [metrics.distance_to(true[..., c]) for c in range(3)]
    assert to_true[2] is None and to_true[0].shape == (6, 20, 24)
    np.testing.assert_array_equal(metrics.hausdorff(pred, true, to_true=to_true),
                                  metrics.hausdorff(pred, true))
