"""The data set's fingerprint: per-scan facts and the foreground intensity statistics."""

import numpy as np
import pytest

from tf_medseg.data import fingerprint
from tf_medseg.data.labels import LabelSchema

LABEL_MAP = LabelSchema(classes=("a", "b"), exclusive=True, channels=("T2",), metric="volume",
                        encoding="labels", values=((1,), (2, 3)))


def test_class_masks_of_label_maps_and_bits():
    label = np.array([[0, 1], [2, 3]], np.uint16)
    masks = fingerprint.class_masks(label, LABEL_MAP)
    assert masks[..., 0].tolist() == [[False, True], [False, False]]
    assert masks[..., 1].tolist() == [[False, False], [True, True]]
    bits = LabelSchema(classes=("x", "y"), exclusive=False, channels=("MRI",),
                       metric="competition")
    assert fingerprint.class_masks(np.array([3, 2], np.uint8), bits).tolist() == [
        [True, True], [False, True]]


def test_scan_facts_count_slices_along_every_axis():
    masks = np.zeros((4, 5, 6, 2), bool)
    masks[1, 2, 3, 0] = masks[2, 2, 4, 1] = True
    facts = fingerprint.scan_facts(7, (3.0, 1.5, 1.25), masks)
    assert facts == {"case": 7, "shape": [4, 5, 6], "spacing": [3.0, 1.5, 1.25],
                     "organ_slices": [2, 1, 2], "class_voxels": [1, 1]}


def test_foreground_sample_is_seeded_by_the_scan_and_stats_pool_it():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (20, 20, 20, 1)).astype(np.float32)
    masks = np.zeros((20, 20, 20, 1), bool)
    masks[5:15, 5:15, 5:15] = True  # 1000 voxels
    a = fingerprint.foreground_sample("case1", image, masks, size=100)
    assert a.shape == (100, 1)
    np.testing.assert_array_equal(a, fingerprint.foreground_sample("case1", image, masks, 100))
    assert not np.array_equal(a, fingerprint.foreground_sample("case2", image, masks, 100))
    stats = fingerprint.intensity_stats([a, a], 1)
    assert stats[0]["voxels"] == 200 and stats[0]["mean"] == pytest.approx(a.mean(), rel=1e-6)
    assert stats[0]["p0_5"] <= stats[0]["mean"] <= stats[0]["p99_5"]
    assert fingerprint.intensity_stats([], 2) == [None, None]
