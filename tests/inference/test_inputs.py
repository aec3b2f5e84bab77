"""New inputs found and read as volumes in their stored order with their spacing: Kaggle-layout
folders and slice PNGs for 16-bit models, NIfTI and 2D images for the others."""

import dataclasses

import numpy as np
import pytest

from tf_medseg.data import normalization
from tf_medseg.data.labels import LabelSchema
from tf_medseg.errors import DataError
from tf_medseg.export.contract import Contract
from tf_medseg.inference.inputs import find_cases, find_inputs, find_scans

from synthetic_volumes import write_nnunet

VOLUMES = Contract(
    labels=normalization.resolve(LabelSchema(classes=("ball", "box"), exclusive=True,
                                             channels=("T1", "T2"), metric="volume",
                                             encoding="labels", values=((1,), (2,))),
                                 "zscore", None),
    head="softmax", context=(0,), input_size=(32, 32), image_dtype="float32")


def test_kaggle_layout_and_case_day_folders_find_the_same_scan(sample_dir):
    root = sample_dir / "case139_day0_8bit"
    day = root / "train" / "case139" / "case139_day0"
    found = [find_scans(p) for p in (root, day.parent, day, day / "scans")]
    for scans in found:
        assert len(scans) == 1 and scans[0].name == "case139_day0"
        assert scans[0].ids == found[0][0].ids and len(scans[0].ids) == 108
    volume, spacing = found[0][0].read(None)
    assert volume.shape == (108, 234, 234, 1) and volume.dtype == np.uint16
    assert spacing.tolist() == [3.0, 1.5, 1.5]


def test_nifti_cases_with_nnunet_channel_naming(tmp_path):
    root = write_nnunet(tmp_path / "Dataset001_T", cases=2)
    cases = find_inputs(root / "imagesTr", VOLUMES)
    assert [c.name for c in cases] == ["case_000", "case_001"]
    assert cases[0].form == "nifti" and [p.name for p in cases[0].paths] == [
        "case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    image, spacing = cases[0].read(VOLUMES)
    assert image.shape == (32, 28, 6, 2) and spacing.tolist() == [1.5, 1.5, 4.0]
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case_001_0001.nii.gz: missing: the model takes 2 "
                                        r"channel\(s\)"):
        find_inputs(root / "imagesTr", VOLUMES)
    with pytest.raises(DataError, match="no NIfTI"):
        find_cases(tmp_path, 2)


def test_plain_names_need_one_channel(tmp_path):
    import cv2
    folder = tmp_path / "pngs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match="the model takes 2 channels; name the files"):
        find_inputs(folder, VOLUMES)
    one = dataclasses.replace(VOLUMES, labels=dataclasses.replace(
        VOLUMES.labels, channels=("grey",), normalization=("zscore",), stats=(None,)))
    (case,) = find_inputs(folder, one)
    image, spacing = case.read(one)
    assert case.form == "image" and image.shape == (4, 5, 1, 1) and spacing.tolist() == [1, 1, 1]


ONE_CHANNEL = dataclasses.replace(VOLUMES, labels=dataclasses.replace(VOLUMES.labels,
                                                                      channels=("T2",)))


def test_dicom_folders_are_found_at_any_depth_and_turned_to_the_models_axes(tmp_path):
    from synthetic_dicom import write_series

    from tf_medseg.inference.inputs import holds_dicom
    volume = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    info = write_series(tmp_path / "dicom" / "patient" / "study", volume, (3.0, 0.7, 0.8),
                        tilt=0.0)
    (tmp_path / "dicom" / "notes.txt").write_text("not DICOM")
    assert holds_dicom(tmp_path / "dicom")
    assert not holds_dicom(write_nnunet(tmp_path / "nnunet") / "imagesTr")
    one = ONE_CHANNEL
    with pytest.raises(DataError, match="a DICOM series is one channel, but the model takes 2"):
        find_inputs(tmp_path / "dicom", VOLUMES)
    by_codes = {}
    for codes in ("LPS", "SPL", None):
        (case,) = find_inputs(tmp_path / "dicom", dataclasses.replace(one, orientation=codes))
        assert case.form == "dicom" and case.name == info["series"]
        image, spacing = case.read(one)
        by_codes[codes] = (image[..., 0], spacing)
    # LPS: the series' own axes (columns, rows, slices) with their spacings
    np.testing.assert_array_equal(by_codes["LPS"][0], np.transpose(volume, (2, 1, 0)))
    np.testing.assert_allclose(by_codes["LPS"][1], (0.8, 0.7, 3.0))
    np.testing.assert_array_equal(by_codes["SPL"][0], np.transpose(volume, (0, 1, 2)))
    # no codes (an export of records built before they were noted): dcm2niix's order
    np.testing.assert_array_equal(by_codes[None][0], np.flip(np.transpose(volume, (2, 1, 0)), 1))
    # a 16-bit slice model takes the series' own (slices, rows, columns)
    uint16 = dataclasses.replace(one, image_dtype="uint16")
    (case,) = find_inputs(tmp_path / "dicom", uint16)
    image, spacing = case.read(uint16)
    assert image.dtype == np.uint16 and image.shape == (4, 6, 5, 1)
    np.testing.assert_array_equal(image[..., 0], volume)


def test_a_dicom_folder_without_image_series_says_what_it_skipped(tmp_path):
    from synthetic_dicom import write_series
    write_series(tmp_path / "one", np.zeros((1, 6, 5), np.uint16))  # a single slice
    import pydicom
    path = next((tmp_path / "one").iterdir())
    ds = pydicom.dcmread(path)
    ds.Modality = "SR"
    ds.save_as(path)
    with pytest.raises(DataError, match="no DICOM image series to predict"):
        find_inputs(tmp_path, ONE_CHANNEL)
    write_series(tmp_path / "big", np.zeros((2, 6, 5), np.uint16))
    for path in (tmp_path / "big").iterdir():  # headers that promise a huge image
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 65535
        ds.save_as(path)
    with pytest.raises(DataError, match="2 x 65535 x 65535 voxels; a case may have 1 to"):
        find_inputs(tmp_path / "big", ONE_CHANNEL)
