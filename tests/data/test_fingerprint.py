"""The data set's fingerprint: per-scan facts from the stored mask and the foreground intensity
statistics."""

import numpy as np
import pytest

from tf_medseg.data import fingerprint
from tf_medseg.data.labels import LabelSchema

LABEL_MAP = LabelSchema(classes=("a", "b"), exclusive=True, channels=("T2",), metric="volume",
                        encoding="labels", values=((1,), (2, 3)))
BITS = LabelSchema(classes=("x", "y"), exclusive=False, channels=("MRI",), metric="competition")


def test_scan_facts_of_a_label_map_count_slices_along_every_axis():
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1, 2, 3] = 1
    mask[2, 2, 4] = 3  # class b (values 2 and 3)
    facts, foreground = fingerprint.scan_facts(7, (3.0, 1.5, 1.25), mask, LABEL_MAP)
    assert facts == {"case": 7, "shape": [4, 5, 6], "spacing": [3.0, 1.5, 1.25],
                     "organ_slices": [2, 1, 2], "class_voxels": [1, 1]}
    assert foreground.sum() == 2 and foreground[2, 2, 4]


def test_scan_facts_of_bits_count_overlaps_in_both_classes():
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[0, 0, 0] = 3  # x and y
    mask[1, 1, 1] = 2  # y
    facts, foreground = fingerprint.scan_facts(1, (1, 1, 1), mask, BITS)
    assert facts["class_voxels"] == [1, 2] and facts["organ_slices"] == [2, 2, 2]
    empty, none = fingerprint.scan_facts(1, (1, 1, 1), np.zeros((2, 2, 2), np.uint8), BITS)
    assert empty["class_voxels"] == [0, 0] and not none.any()


def test_foreground_sample_is_seeded_by_the_scan_and_stats_pool_it():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (20, 20, 20, 1)).astype(np.float32)
    foreground = np.zeros((20, 20, 20), bool)
    foreground[5:15, 5:15, 5:15] = True  # 1000 voxels
    a = fingerprint.foreground_sample("case1", image, foreground, size=100)
    assert a.shape == (100, 1)
    np.testing.assert_array_equal(a, fingerprint.foreground_sample("case1", image, foreground,
                                                                   100))
    assert not np.array_equal(a, fingerprint.foreground_sample("case2", image, foreground, 100))
    stats = fingerprint.intensity_stats([a, a], 1)
    assert stats[0]["voxels"] == 200 and stats[0]["mean"] == pytest.approx(a.mean(), rel=1e-6)
    assert stats[0]["p0_5"] <= stats[0]["mean"] <= stats[0]["p99_5"]
    assert fingerprint.intensity_stats([], 2) == [None, None]
