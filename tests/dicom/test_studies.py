"""data.source dicom: studies indexed from an archive folder, ROI names mapped to classes,
structures rasterised onto the series as bit-packed, possibly overlapping classes."""

import numpy as np
import pytest
from synthetic_dicom import write_series, write_study

from tf_medseg.dicom.studies import index_dicom, read_case, roi_names
from tf_medseg.errors import ConfigError, DataError

ROI_MAP = {"stomach": ["Stomach", "STOMACH_1"], "bowel": "Bowel"}


def _box(shape, z, r, c):
    mask = np.zeros(shape, bool)
    mask[z[0]:z[1], r[0]:r[1], c[0]:c[1]] = True
    return mask


def test_studies_become_cases_with_their_rois_mapped_to_classes(tmp_path, capsys):
    shape = (5, 16, 18)
    volume = np.random.default_rng(0).integers(0, 900, shape).astype(np.uint16)
    stomach = _box(shape, (1, 4), (2, 9), (3, 12))
    bowel = _box(shape, (2, 5), (6, 14), (8, 16))  # overlaps the stomach
    write_study(tmp_path / "a", volume, {"Stomach": stomach, "Bowel": bowel}, patient="P1")
    write_study(tmp_path / "b", volume, {" stomach_1 ": stomach}, patient="P2", seed=1)
    write_series(tmp_path / "c" / "images", volume, seed=2)  # no structure set: skipped
    index = index_dicom(tmp_path, ROI_MAP)
    notes = capsys.readouterr().out
    assert "no RTSTRUCT or SEG references it: skipped" in notes
    assert [c.case for c in index.cases] == ["P1_2", "P2_2"]
    assert [c.group for c in index.cases] == ["P1", "P2"]
    assert index.labels.classes == ("stomach", "bowel") and not index.labels.exclusive
    assert index.labels.encoding == "bits" and index.labels.channels == ("MR",)
    image, packed, spacing, codes = read_case(index, index.cases[0])
    assert image.shape == (*shape, 1) and image.dtype == np.float32
    np.testing.assert_array_equal(image[..., 0], volume)
    np.testing.assert_array_equal(packed & 1 > 0, stomach)
    np.testing.assert_array_equal(packed & 2 > 0, bowel)
    assert ((packed == 3).sum() == (stomach & bowel).sum() > 0)
    np.testing.assert_allclose(spacing, (3.0, 1.0, 1.0))
    assert codes == "SPL"  # slices to superior, rows posterior, columns to the patient's left
    # a study without a mapped ROI counts as empty for that class, with a warning
    _, packed, _, _ = read_case(index, index.cases[1])
    np.testing.assert_array_equal(packed & 1 > 0, stomach)
    assert not (packed & 2).any()
    assert "no ROI named bowel (class bowel); case P2_2 counts as empty" in capsys.readouterr().out


def test_bad_maps_and_archives_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="data.source dicom needs it"):
        roi_names(None)
    with pytest.raises(ConfigError, match="data.roi_map.stomach: expected a ROI name or a list"):
        roi_names({"stomach": []})
    assert roi_names({"a": " Liver ", "b": ["X", "y"]}) == (("a", ("liver",)), ("b", ("x", "y")))
    shape = (3, 8, 8)
    write_study(tmp_path / "a", np.zeros(shape, np.uint16), {"Stomach": _box(shape, (0, 2),
                                                                             (1, 4), (1, 4))})
    import shutil
    shutil.copy(tmp_path / "a" / "RS.dcm", tmp_path / "a" / "RS_copy.dcm")
    with pytest.raises(DataError, match="two structure sets of series"):
        index_dicom(tmp_path, ROI_MAP)
    (tmp_path / "a" / "RS_copy.dcm").unlink()
    shutil.rmtree(tmp_path / "a" / "images")
    with pytest.raises(DataError, match="no image series with an RTSTRUCT or SEG"):
        index_dicom(tmp_path, ROI_MAP)


def test_case_names_from_headers_are_plain_names(tmp_path):
    """PatientIDs that would climb out of a folder or hide a file name plain cases."""
    shape = (4, 8, 8)
    volume = np.random.default_rng(0).integers(0, 900, shape).astype(np.uint16)
    stomach = _box(shape, (1, 3), (2, 6), (2, 6))
    for k, patient in enumerate(("../../etc", "..", ".hidden/x")):
        write_study(tmp_path / str(k), volume, {"Stomach": stomach}, patient=patient, seed=k)
    names = sorted(c.case for c in index_dicom(tmp_path, {"stomach": "Stomach"}).cases)
    assert names == ["_.._etc_2", "_2", "hidden_x_2"], names  # no separator, no dot first


def test_real_archive_quirks_are_handled_or_refused_in_one_line(tmp_path, capsys):
    """A structure set without ReferencedFrameOfReferenceSequence is paired by the images its
    contours reference; one of another patient is not paired (naming both); contours whose
    images were re-exported under new SOP Instance UIDs are placed by plane position, and said
    so; ROI names match whatever their case, spaces and underscores."""
    import pydicom
    from pydicom.uid import generate_uid
    shape = (4, 10, 10)
    volume = np.random.default_rng(0).integers(0, 900, shape).astype(np.uint16)
    bowel = _box(shape, (1, 3), (2, 7), (3, 8))
    for k, patient in enumerate(("P1", "P2", "P3")):
        write_study(tmp_path / patient, volume, {"BOWEL_SMALL": bowel}, patient=patient, seed=k)
    rs = pydicom.dcmread(tmp_path / "P1" / "RS.dcm")
    del rs.ReferencedFrameOfReferenceSequence  # as a Varian export may leave it
    rs.save_as(tmp_path / "P1" / "RS.dcm")
    rs = pydicom.dcmread(tmp_path / "P2" / "RS.dcm")
    rs.PatientID = "SOMEONE"
    rs.save_as(tmp_path / "P2" / "RS.dcm")
    for path in (tmp_path / "P3" / "images").iterdir():  # re-exported after contouring
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(path)
    index = index_dicom(tmp_path, {"small_bowel": "Bowel small"})
    out = capsys.readouterr().out
    assert [c.case for c in index.cases] == ["P1_2", "P3_2"]
    assert "RS.dcm: a RTSTRUCT that names no series: paired with series" in out
    assert "P2/RS.dcm: not paired with series" in out and \
        "it is of patient 'SOMEONE', the series of patient 'P2'; skipped" in out
    for case in index.cases:
        _, packed, _, _ = read_case(index, case)
        np.testing.assert_array_equal(packed & 1 > 0, bowel)
    assert "contour(s) reference images not in series" in capsys.readouterr().out


def test_an_archive_of_several_modalities_trains_on_the_one_asked_for(tmp_path, capsys):
    """Each patient has an MR and a CT series, each with its own structure set: without
    data.modality the build stops in one line; with it, the other series are skipped."""
    import pydicom
    from pydicom.uid import CTImageStorage

    from tf_medseg.config import load_config
    shape = (3, 8, 8)
    stomach = _box(shape, (0, 2), (1, 4), (1, 4))
    for k, patient in enumerate(("P1", "P2")):
        write_study(tmp_path / patient / "mr", np.zeros(shape, np.uint16), {"Stomach": stomach},
                    patient=patient, seed=2 * k)
        write_study(tmp_path / patient / "ct", np.zeros(shape, np.uint16), {"Stomach": stomach},
                    patient=patient, seed=2 * k + 1)
        for path in (tmp_path / patient / "ct" / "images").iterdir():
            ds = pydicom.dcmread(path)
            ds.Modality, ds.SOPClassUID = "CT", CTImageStorage
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.save_as(path)
    with pytest.raises(DataError, match=r"^data\.root .*: its paired series are of several "
                                        r"modalities \(CT 2, MR 2\); set data\.modality to the "
                                        r"one to train on$"):
        index_dicom(tmp_path, ROI_MAP)
    capsys.readouterr()
    index = index_dicom(tmp_path, ROI_MAP, modality="CT")
    assert [c.group for c in index.cases] == ["P1", "P2"]
    assert all("/ct/" in str(c.images[0]) for c in index.cases)
    assert index.labels.channels == ("CT",)
    assert "note: 2 MR series: skipped (data.modality is CT)" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"no PT image series"):
        index_dicom(tmp_path, ROI_MAP, modality="PT")
    with pytest.raises(ConfigError, match=r"^data\.modality: only for data\.source dicom \(the "
                                          r"source is phantom\); remove it$"):
        load_config(None, ["data.modality=CT"])
