import shutil

import cv2
import numpy as np
import pytest

from tf_medseg.data import rle
from tf_medseg.data.sources import kaggle, kaggle_inventory
from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.errors import DataError


def test_file_name_first_number_is_width():
    s = kaggle.parse_slice_filename("x/slice_0057_360_310_1.50_1.50.png")
    assert (s.slice_number, s.width, s.height, s.spacing) == (57, 360, 310, (1.5, 1.5))
    with pytest.raises(DataError, match="does not match"):
        kaggle.parse_slice_filename("slice_57.png")


def test_original_16bit_slices(sample_dir):
    """The untouched 16-bit originals keep their full range (maxima 125 to 12,920)."""
    maxima = []
    for path in sorted((sample_dir / "png16").rglob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16
        maxima.append(int(image.max()))
    assert min(maxima) == 125 and max(maxima) == 12920
    scan = next(kaggle_inventory.iter_scans(sample_dir / "png16" / "kaggle_layout"))
    assert scan.image.dtype == np.uint16 and scan.image.shape == (1, 234, 234)
    assert scan.image.max() == 4997 and scan.mask.sum() == 0


def test_real_8bit_folder_reads_with_labels(sample_dir):
    (scan,) = list(kaggle_inventory.iter_scans(sample_dir / "case139_day0_8bit"))
    assert scan.case_day == "case139_day0"
    assert scan.image.shape == (108, 234, 234) and scan.image.dtype == np.uint16
    assert list(scan.slice_numbers[:2]) == [27, 28]
    labels = kaggle.read_labels(sample_dir / "case139_day0_8bit" / "train.csv")
    nonempty = sum(bool(v) for entry in labels.values() for v in entry.values())
    assert nonempty == 117
    assert sum(int(scan.mask[i, ..., c].any()) for i in range(108) for c in range(3)) == 117


def test_phantom_written_and_read_back(tiny_phantom):
    scans = list(kaggle_inventory.iter_scans(tiny_phantom))
    assert [s.case_day for s in scans][:2] == ["case1_day0", scans[1].case_day]
    assert len(scans) == 8 and all(len(s.slice_numbers) == 12 for s in scans)
    assert {s.image.shape[1:] for s in scans} == {(266, 266), (310, 360)}
    labels = kaggle.read_labels(tiny_phantom / "train.csv")
    s = scans[0]
    for i, number in enumerate(s.slice_numbers):
        sid = f"{s.case_day}_slice_{number:04d}"
        for c, cls in enumerate(CLASSES):
            assert rle.encode(s.mask[i, ..., c]) == labels[sid][cls]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_inputs_are_refused_with_the_file_named(tiny_phantom, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list(kaggle_inventory.iter_scans(tmp_path / "missing"))
    root = _copy(tiny_phantom, tmp_path / "a")
    (root / "train.csv").unlink()
    with pytest.raises(DataError, match="train.csv is missing"):
        list(kaggle_inventory.iter_scans(root))

    root = _copy(tiny_phantom, tmp_path / "b")
    text = (root / "train.csv").read_text().replace(",stomach,", ",liver,", 1)
    (root / "train.csv").write_text(text)
    with pytest.raises(DataError, match=r"train.csv line \d+: unknown class 'liver'"):
        list(kaggle_inventory.iter_scans(root))

    root = _copy(tiny_phantom, tmp_path / "c")
    png = sorted(root.rglob("*.png"))[0]
    cv2.imwrite(str(png), np.zeros((10, 12), np.uint16))
    with pytest.raises(DataError, match=r"slice_0001_266_266_1.50_1.50.png: image is 12x10 "
                                        r"\(WxH\) but its name says 266x266"):
        list(kaggle_inventory.iter_scans(root))


def test_fingerprint_follows_content(tiny_phantom, tmp_path):
    root = _copy(tiny_phantom, tmp_path / "d")
    before = kaggle_inventory.fingerprint(root)
    assert kaggle_inventory.fingerprint(root) == before
    png = sorted(root.rglob("*.png"))[0]
    cv2.imwrite(str(png), cv2.imread(str(png), cv2.IMREAD_UNCHANGED) + 1)
    assert kaggle_inventory.fingerprint(root) != before
