"""The dicom builder: DICOM studies (image series + RTSTRUCT) into records of the series'
grid, the ROIs mapped to classes as bit-packed masks, the orientation in the fingerprint."""

import numpy as np
import tensorflow_datasets as tfds
from synthetic_dicom import write_study

from tf_medseg.config import DataConfig
from tf_medseg.data import records


def test_records_hold_the_series_and_its_mapped_rois(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_MEDSEG_WORKERS", "2")  # read in worker processes, as a user's build
    shape = (4, 12, 10)
    volume = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    liver = np.zeros(shape, bool)
    liver[1:3, 2:8, 3:7] = True
    write_study(tmp_path / "archive" / "s1", volume, {"LIVER": liver}, patient="P7")
    config = DataConfig(source="dicom", root=str(tmp_path / "archive"),
                        data_dir=str(tmp_path / "tfds"), roi_map={"liver": ["Liver", "Leber"]})
    builder = records.build_records(config)
    assert builder.info.full_name.startswith("dicom_studies/src_")
    meta = builder.info.metadata
    assert meta["labels"]["classes"] == ["liver"] and meta["groups"] == ["P7"]
    (case,) = tfds.as_numpy(builder.as_dataset(split="train"))
    assert case["scan"].decode() == "P7_2" and case["image"].shape == (*shape, 1)
    np.testing.assert_array_equal(case["image"][..., 0], volume)
    np.testing.assert_array_equal(case["mask"] > 0, liver)
    assert meta["scans"]["P7_2"]["axcodes"] == "SPL"
    assert meta["scans"]["P7_2"]["class_voxels"] == [int(liver.sum())]
    # another ROI map names other records
    other = records.get_builder(DataConfig(source="dicom", root=str(tmp_path / "archive"),
                                           data_dir=str(tmp_path / "tfds"),
                                           roi_map={"liver": "Liver", "spleen": "Spleen"}))
    assert other.info.full_name != builder.info.full_name


def test_records_of_the_modality_asked_for(tmp_path):
    """An archive with a patient's MR and CT, each with its structure set: data.modality
    chooses the series the records hold."""
    import pydicom
    from pydicom.uid import CTImageStorage
    shape = (3, 8, 8)
    liver = np.zeros(shape, bool)
    liver[1:3, 2:6, 2:6] = True
    for kind, seed in (("mr", 0), ("ct", 1)):
        write_study(tmp_path / "archive" / kind, np.full(shape, 10 * (seed + 1), np.uint16),
                    {"Liver": liver}, patient="P7", seed=seed)
    for path in (tmp_path / "archive" / "ct" / "images").iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality, ds.SOPClassUID = "CT", CTImageStorage
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.save_as(path)
    config = DataConfig(source="dicom", root=str(tmp_path / "archive"),
                        data_dir=str(tmp_path / "tfds"), roi_map={"liver": "Liver"},
                        modality="CT")
    builder = records.build_records(config)
    assert builder.info.metadata["labels"]["channels"] == ["CT"]
    (case,) = tfds.as_numpy(builder.as_dataset(split="train"))
    assert np.all(case["image"] == 20)  # the CT series (rescale 1, intercept 0)
