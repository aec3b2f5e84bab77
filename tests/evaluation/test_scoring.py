"""Scoring scan by scan with the data set's metric family, and the report files."""

import csv
import json
import math

import numpy as np
import pytest

from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.sources.kaggle import LABELS as KAGGLE
from tf_medseg.errors import MedsegError
from tf_medseg.evaluation.scoring import Scoring, case_day_key, json_safe, write_report

ORGANS = LabelSchema(classes=("liver", "spleen"), exclusive=True, channels=("T2",),
                     metric="volume", encoding="labels", values=((1,), (2,)))


def _pair(shape=(3, 8, 8, 3)):
    true = np.zeros(shape, bool)
    true[1, 2:5, 2:5, 0] = True
    return true.copy(), true


def test_the_competition_family_per_case_day(tmp_path):
    scoring = Scoring(KAGGLE)
    pred, true = _pair()
    scoring.add("case10_day2", pred, true)
    pred[0, 0, 0, 1] = True  # a false positive where there is nothing
    scoring.add("case2_day0", pred, true)
    result, rows = scoring.result()
    assert [r["case_day"] for r in rows] == ["case2_day0", "case10_day2"]  # by number
    assert rows[1]["score"] == 1.0 and rows[0]["hausdorff_small_bowel"] == 1.0
    assert result["both_empty"] == "skip" and 0 < result["score"] < 1
    out = write_report(result, rows, tmp_path, KAGGLE)
    assert json.loads((out / "metrics.json").read_text())["case_days"][0]["case_day"] == \
        "case2_day0"
    with (out / "case_days.csv").open() as f:
        header = next(csv.reader(f))
    assert header[:5] == ["case_day", "slices", "dice", "hausdorff", "score"]


def test_the_volume_family_per_case(tmp_path):
    scoring = Scoring(ORGANS)
    pred, true = _pair((3, 8, 8, 2))
    scoring.add("b", pred, true, spacing=(3.0, 1.0, 1.0))
    scoring.add("a", np.zeros_like(pred), true, spacing=(3.0, 1.0, 1.0))
    result, rows = scoring.result()
    assert [r["case"] for r in rows] == ["a", "b"] and result["classes"] == ["liver", "spleen"]
    assert result["dice_liver"] == pytest.approx(0.5) and math.isnan(result["dice_spleen"])
    assert result["score"] == result["dice"] and rows[0]["hd95_liver"] > 0
    # the contour metrics beside them: a perfect case, and a case with nothing predicted
    # (its 3 x 3 square's 8 contour pixels all to draw, 1 mm each)
    assert rows[1]["sdice_liver"] == 1.0 and rows[1]["apl_liver"] == 0.0
    assert rows[0]["sdice_liver"] == 0.0 and rows[0]["apl_liver"] == 8.0
    assert rows[0]["apl_rel_liver"] == 1.0 and math.isnan(rows[0]["apl_rel_spleen"])
    assert result["sdice_liver"] == 0.5 and result["apl_liver"] == 4.0
    assert result["surface_tolerance_mm"] == 2.0
    write_report(json_safe(result), rows, tmp_path, ORGANS)
    header = (tmp_path / "cases.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["case", "slices", "dice", "hd95", "sdice", "apl", "apl_rel"]
    assert "apl_rel_spleen" in header and "sdice_liver" in header
    with pytest.raises(MedsegError, match="the val split holds no cases"):
        Scoring(ORGANS).result()
    with pytest.raises(MedsegError, match=r"eval\.surface_tolerance_mm: 3 values for 2 "
                                          r"classes \(liver, spleen\)"):
        Scoring(ORGANS, tolerance=(1.0, 2.0, 3.0))
    # one tolerance per class
    per_class = Scoring(ORGANS, tolerance=(0.5, 4.0))
    per_class.add("b", pred, true, spacing=(3.0, 1.0, 1.0))
    assert per_class.result()[0]["surface_tolerance_mm"] == [0.5, 4.0]


def test_helpers():
    assert case_day_key("case12_day3") == (12, 3)
    assert json_safe({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}
