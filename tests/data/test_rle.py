import cv2
import numpy as np
import pandas as pd
import pytest

from tf_medseg.data import rle
from tf_medseg.errors import DataError

# Golden mask PNGs as cv2 reads them (BGR): stomach, large_bowel, small_bowel.
BGR_CHANNEL = {"stomach": 0, "large_bowel": 1, "small_bowel": 2}


def test_decode_is_row_major_and_one_indexed():
    mask = rle.decode("1 2 6 1", 2, 4)
    assert mask.dtype == np.uint8 and mask.shape == (2, 4)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [0, 1, 0, 0]])
    assert rle.encode(mask) == "1 2 6 1"


@pytest.mark.parametrize("empty", ["", None, float("nan"), "   "])
def test_empty(empty):
    assert rle.decode(empty, 3, 5).sum() == 0
    assert rle.encode(np.zeros((3, 5))) == ""


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((31, 17)) > 0.7).astype(np.uint8)
        np.testing.assert_array_equal(rle.decode(rle.encode(mask), 31, 17), mask)


@pytest.mark.parametrize("text, message", [
    ("1 2 3", "odd number"),
    ("1 x", "'x' is not a non-negative integer"),
    ("0 2", "1-indexed"),
    ("1 0", "length 0"),
    ("19 3", "past the end of the 4x5 image"),
    ("5 2 1 2", "unsorted or overlap"),
    ("1 3 2 2", "unsorted or overlap"),
])
def test_malformed_rle_is_refused(text, message):
    with pytest.raises(DataError, match=message):
        rle.decode(text, 4, 5)


def test_official_strings_against_golden_masks(sample_dir):
    """Every official RLE string decodes to its independently decoded golden mask and
    re-encodes to the same string."""
    labels = pd.read_csv(sample_dir / "train_subset.csv")
    slices = pd.read_csv(sample_dir / "slices.csv").set_index("id")
    checked = 0
    for (sid, frame) in list(labels.groupby("id"))[::7]:  # every 7th slice keeps it fast
        info = slices.loc[sid]
        golden = cv2.imread(str(sample_dir / "masks" / info.rel_path))
        assert golden.shape[:2] == (info.height, info.width)
        for row in frame.itertuples():
            mask = rle.decode(row.segmentation, info.height, info.width)
            np.testing.assert_array_equal(mask, golden[..., BGR_CHANNEL[row[2]]] > 0)
            expected = row.segmentation if isinstance(row.segmentation, str) else ""
            assert rle.encode(mask) == expected
            checked += 1
    assert checked > 1000


def test_width_and_height_not_swapped_on_360x310(sample_dir):
    labels = pd.read_csv(sample_dir / "train_subset.csv").fillna("")
    rows = labels[labels.id == "case122_day0_slice_0057"].set_index("class").segmentation
    # The file name says 360_310: width 360, height 310.
    large = rle.decode(rows["large_bowel"], 310, 360)
    stomach = rle.decode(rows["stomach"], 310, 360)
    assert large.shape == (310, 360)
    assert (large.sum(), stomach.sum(), rle.decode(rows["small_bowel"], 310, 360).sum()) == (
        181, 4384, 0)
    golden = cv2.imread(str(next(sample_dir.glob(
        "masks/case122/case122_day0/scans/slice_0057_*.png"))))
    np.testing.assert_array_equal(stomach, golden[..., 0] > 0)
