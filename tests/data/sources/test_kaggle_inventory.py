"""Every bad input the Kaggle reader refuses, checked before any record is written.

Each case edits a copy of the tiny phantom and expects one DataError naming the file, row or id.
"""

import re
import shutil

import cv2
import numpy as np
import pytest

from tf_medseg.data.sources import kaggle, kaggle_inventory
from tf_medseg.errors import DataError


@pytest.fixture
def root(tiny_phantom, tmp_path):
    return shutil.copytree(tiny_phantom, tmp_path / "kaggle")


def _rows(root):
    return (root / "train.csv").read_text().splitlines()


def _write_rows(root, rows):
    (root / "train.csv").write_text("\n".join(rows) + "\n")


def _set_rle(root, value):
    """Give the first non-empty mask row the RLE ``value``; return (id, class)."""
    rows = _rows(root)
    i = next(i for i, r in enumerate(rows) if i and not r.endswith(","))
    sid, cls, _ = rows[i].split(",")
    rows[i] = f"{sid},{cls},{value}"
    _write_rows(root, rows)
    return sid, cls


def _refused(root, pattern, **kwargs):
    with pytest.raises(DataError, match=pattern):
        kaggle_inventory.take_inventory(root, **kwargs)


@pytest.mark.parametrize("rle, why", [
    ("5 3 9", "odd number of values"),
    ("5 x", "'x' is not a non-negative integer"),
    ("70750 10", "past the end of the 266x266 image"),
    ("50 3 10 3", "unsorted or overlap"),
    ("10 5 12 3", "unsorted or overlap"),
])
def test_malformed_rle_names_id_and_class(root, rle, why):
    sid, cls = _set_rle(root, rle)
    _refused(root, rf"train.csv: {sid} {cls}: RLE .*{re.escape(why)}")


def test_unknown_class_and_duplicate_rows_name_the_line(root):
    rows = _rows(root)
    _write_rows(root, rows[:2] + [rows[1]] + rows[2:])
    _refused(root, r"train.csv line 3: duplicate row for case1_day0_slice_0001 large_bowel")
    _write_rows(root, [rows[0], rows[1].replace("large_bowel", "liver"), *rows[2:]])
    _refused(root, r"train.csv line 2: unknown class 'liver'")


def test_id_without_image_follows_the_unmatched_rule(root):
    png = sorted((root / "train" / "case2").rglob("slice_0005_*.png"))[0]
    png.unlink()
    sid = f"{png.parts[-3]}_slice_0005"
    _refused(root, rf"id {sid} has no image under train/; .*data.unmatched: drop")
    inv = kaggle_inventory.take_inventory(root, unmatched="drop")
    case_day = png.parts[-3]  # its scan now has a hole: the whole case-day goes
    assert inv.dropped == {sid: "no image under train/", case_day: "slice 5 is missing (its "
                           "neighbours would be taken as adjacent)"}
    assert inv.num_slices == 7 * 12


def test_a_slice_gone_with_its_rows_leaves_a_hole_that_is_refused(root):
    png = sorted((root / "train" / "case2").rglob("slice_0005_*.png"))[0]
    png.unlink()
    sid = f"{png.parts[-3]}_slice_0005"
    _write_rows(root, [r for r in _rows(root) if not r.startswith(sid + ",")])
    _refused(root, rf"slice 5 of {png.parts[-3]} is missing \(between slice_0004_.*\.png and "
                   rf"slice_0006_.*\.png\)")


def test_image_without_rows_follows_the_unmatched_rule(root):
    rows = _rows(root)
    _write_rows(root, [r for r in rows if not r.startswith("case3_day0_slice_0007,")])
    _refused(root, r"slice_0007_\d+_\d+_1.50_1.50.png: no rows for case3_day0_slice_0007")
    inv = kaggle_inventory.take_inventory(root, unmatched="drop")
    # The whole case-day goes: a scan with a hole would give wrong 2.5D neighbours.
    assert list(inv.dropped) == ["case3_day0"] and "1 of its 12 slices" in inv.dropped["case3_day0"]
    assert "case3_day0" not in [s.case_day for s in inv.scans] and inv.num_slices == 7 * 12


def test_faulty_case_days_are_dropped_by_name(root):
    inv = kaggle_inventory.take_inventory(root, drop_case_days=("case2_day0",))
    assert "case2_day0" not in [s.case_day for s in inv.scans]
    assert inv.dropped == {"case2_day0": "listed in data.drop_case_days"}


def test_unreadable_or_wrongly_sized_png(root):
    pngs = sorted(root.rglob("*.png"))
    pngs[3].write_bytes(b"not a png at all, just some bytes")
    _refused(root, rf"{re.escape(pngs[3].name)}: not a PNG file")
    pngs[3].write_bytes(b"")
    _refused(root, rf"{re.escape(pngs[3].name)}: not a PNG file")
    cv2.imwrite(str(pngs[3]), np.zeros((10, 12), np.uint16))
    _refused(root, rf"{re.escape(pngs[3].name)}: image is 12x10 \(WxH\) but its name says")
    cv2.imwrite(str(pngs[3]), np.zeros((266, 266, 4), np.uint8))
    _refused(root, rf"{re.escape(pngs[3].name)}: expected an 8- or 16-bit grayscale PNG, got "
                   r"8-bit RGBA")


def test_truncated_png_is_caught_when_read(root):
    png = sorted(root.rglob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:200])  # header intact, pixels cut off
    inv = kaggle_inventory.take_inventory(root)
    with pytest.raises(DataError, match=rf"{re.escape(png.name)}: not a readable PNG"):
        kaggle.read_scan(inv.scans[0], inv.labels)


def test_missing_csv_root_or_names(root, tmp_path):
    _refused(tmp_path / "nowhere", r"data root .*nowhere does not exist; set data.root")
    shutil.move(root / "train.csv", tmp_path / "elsewhere.csv")
    _refused(root, r"train.csv is missing; the Kaggle folder must hold train.csv")
    shutil.move(tmp_path / "elsewhere.csv", root / "train.csv")
    png = sorted(root.rglob("*.png"))[0]
    png.rename(png.with_name("slice_1.png"))
    _refused(root, r"slice_1.png: file name does not match slice_XXXX_W_H_PW_PH.png")
