"""``python -m tf_medseg predict``: folders in, a Kaggle submission and overlays out; bad input
is one line and leaves nothing behind."""

import csv

import cv2
import numpy as np
import pytest

from tf_medseg.data import rle
from tf_medseg.data.pipeline import stack_context
from tf_medseg.data.sources.kaggle import CLASSES

from conftest import cli_here


@pytest.fixture(scope="module")
def model_dir(tiny_export):
    return tiny_export


def _predict(*args):
    return cli_here("-m", "tf_medseg", "predict", *map(str, args))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_real_case_day_gives_324_rows_of_valid_rle(model_dir, sample_dir, tmp_path):
    folder = sample_dir / "case139_day0_8bit"
    out, overlays = tmp_path / "submission.csv", tmp_path / "overlays"
    proc = _predict("--model", model_dir, "--input", folder, "--output", out,
                    "--overlays", overlays, "--tta")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(out)
    assert len(rows) == 324 and list(rows[0]) == ["id", "class", "predicted"]
    truth = _rows(folder / "train.csv")
    assert [(r["id"], r["class"]) for r in rows] == [(r["id"], r["class"]) for r in truth]
    for row in rows:
        mask = rle.decode(row["predicted"], 234, 234)  # raises on invalid RLE
        assert rle.encode(mask) == row["predicted"]
    assert any(r["predicted"] for r in rows)
    pngs = sorted(overlays.glob("*.png"))
    assert len(pngs) == 108 and pngs[0].name == "case139_day0_slice_0027.png"
    image = cv2.imread(str(pngs[0]))
    assert image.shape == (234, 234, 3)
    assert "324 rows" in proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_folder_of_real_16_bit_pngs(model_dir, sample_dir, tmp_path):
    folder = sample_dir / "png16" / "unidentified"  # three 266x266 slices, odd names
    out = tmp_path / "sub.csv"
    proc = _predict("--model", model_dir, "--input", folder, "--output", out,
                    "--threshold", "0.4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(out)
    assert len(rows) == 9
    assert {r["id"] for r in rows} == {p.stem for p in folder.glob("*.png")}
    assert [r["class"] for r in rows[:3]] == list(CLASSES)


def test_context_of_raw_uint16_scans_is_clamped_at_the_ends():
    # predict stacks raw uint16 volumes with the training pipeline's stack_context.
    volume = (np.arange(4)[:, None, None] * np.ones((4, 2, 2))).astype(np.uint16)
    stacks = stack_context(volume, [-2, 0, 1]).numpy()
    assert stacks.shape == (4, 2, 2, 3) and stacks.dtype == np.uint16
    assert stacks[:, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [0, 2, 3], [1, 3, 3]]
