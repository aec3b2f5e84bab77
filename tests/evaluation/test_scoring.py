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
    write_report(json_safe(result), rows, tmp_path, ORGANS)
    assert (tmp_path / "cases.csv").read_text().startswith("case,slices,dice,hd95")
    with pytest.raises(MedsegError, match="the val split holds no cases"):
        Scoring(ORGANS).result()


def test_helpers():
    assert case_day_key("case12_day3") == (12, 3)
    assert json_safe({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}
