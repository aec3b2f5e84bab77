"""Overlays: contours in each class's colour over the slice in grey, one PNG per slice."""

import cv2
import numpy as np

from tf_medseg.config import load_config
from tf_medseg.inference.inputs import InputCase
from tf_medseg.inference.writers.overlays import (
    COLOURS,
    OverlayWriter,
    colour,
    contours,
    side_by_side,
    to_grey,
)

from conftest import kaggle_contract


def test_contours_in_the_classes_colours():
    grey = to_grey(np.full((20, 20), 50.0), 100.0)
    assert grey.dtype == np.uint8 and grey[0, 0] == 128
    masks = np.zeros((20, 20, 2), bool)
    masks[5:15, 5:15, 1] = True
    rgb = contours(grey, masks, ["liver", "stomach"])
    assert tuple(rgb[5, 10]) == COLOURS["stomach"] and tuple(rgb[10, 10]) == (128, 128, 128)
    assert colour("liver", 0) == (230, 159, 0)
    panel = side_by_side(np.zeros((20, 20)), masks, masks, ["liver", "stomach"])
    assert panel.shape == (20, 42, 3)


def test_one_png_per_slice_named_by_id(tmp_path):
    writer = OverlayWriter(tmp_path / "ov", kaggle_contract(load_config("tiny.yaml")))
    image = np.random.default_rng(0).integers(0, 1000, (2, 8, 9, 1)).astype(np.uint16)
    masks = np.zeros((2, 8, 9, 3), bool)
    masks[1, 2:6, 2:6, 0] = True
    case = InputCase("case1_day0", "kaggle", (), ("case1_day0_slice_0001",
                                                  "case1_day0_slice_0002"))
    writer.write(case, image, (3.0, 1.5, 1.5), masks)
    files = sorted(p.name for p in (tmp_path / "ov").iterdir())
    assert files == ["case1_day0_slice_0001.png", "case1_day0_slice_0002.png"]
    second = cv2.imread(str(tmp_path / "ov" / files[1]))[..., ::-1]  # BGR -> RGB
    assert tuple(second[2, 3]) == COLOURS["large_bowel"]
