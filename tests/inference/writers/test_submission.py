"""The submission CSV: one row per slice and class, canonical RLE, published only when closed."""

import csv

import numpy as np
import pytest

from tf_medseg.config import load_config
from tf_medseg.data import rle
from tf_medseg.errors import MedsegError
from tf_medseg.inference.inputs import InputCase
from tf_medseg.inference.writers.submission import SubmissionWriter

from conftest import kaggle_contract


def test_rows_and_atomic_publication(tmp_path):
    contract = kaggle_contract(load_config("tiny.yaml"))
    out = tmp_path / "submission.csv"
    writer = SubmissionWriter(out, contract)
    masks = np.zeros((2, 4, 5, 3), bool)
    masks[1, 1:3, 2, 2] = True
    case = InputCase("case1_day0", "kaggle", (), ("case1_day0_slice_0001",
                                                  "case1_day0_slice_0002"))
    writer.write(case, None, None, masks)
    assert not out.exists()  # not before it is closed
    assert writer.close() == {"rows": 6}
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["id"][-4:], r["class"]) for r in rows[:3]] == [
        ("0001", "large_bowel"), ("0001", "small_bowel"), ("0001", "stomach")]
    assert rows[5]["predicted"] == rle.encode(masks[1, ..., 2]) and rows[0]["predicted"] == ""


def test_abort_leaves_nothing_and_probabilities_are_refused(tmp_path):
    contract = kaggle_contract(load_config("tiny.yaml"))
    out = tmp_path / "s.csv"
    out.write_text("an earlier submission")
    writer = SubmissionWriter(out, contract)
    writer.abort()
    assert out.read_text() == "an earlier submission" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(MedsegError, match="^--probabilities: for NIfTI and image-folder"):
        SubmissionWriter(out, contract, probabilities=True)
