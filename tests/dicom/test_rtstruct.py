"""RT Structure Sets written from masks on a DICOM series and read back: the masks exactly,
the references, the copied modules, and the caution that the contours are unreviewed."""

import numpy as np
import pydicom
import pytest
from synthetic_dicom import as_ct, dciodvfy_errors, write_series

from tf_medseg.dicom.reader import find_series
from tf_medseg.dicom.rtstruct import (
    rasterize_structure,
    read_structure_set,
    structure_set,
    write_structure_set,
)
from tf_medseg.errors import DataError


def _masks(shape):
    masks = np.zeros((*shape, 2), bool)
    masks[1:4, 2:9, 2:9, 0] = True
    masks[2, 4:6, 4:6, 0] = False  # a hole on one slice
    masks[1, 0:2, 10:12, 0] = True  # a second island
    masks[3:5, 5:8, 1:4, 1] = True  # the other class, overlapping the first on slice 3
    return masks


def test_a_structure_set_reads_back_onto_its_series_exactly(tmp_path):
    info = write_series(tmp_path / "series", np.zeros((6, 12, 13), np.uint16),
                        (3.0, 0.7, 0.8), tilt=15.0)
    (series,), _ = find_series(tmp_path / "series")
    masks = _masks((6, 12, 13))
    ds = structure_set(series, masks, ["stomach", "small_bowel"], [(0, 158, 115),
                                                                    (86, 180, 233)])
    out = write_structure_set(ds, tmp_path / "out" / "RS.dcm")
    assert [p.name for p in out.parent.iterdir()] == ["RS.dcm"]  # no temporary left
    back = pydicom.dcmread(out)
    assert back.Modality == "RTSTRUCT" and back.ApprovalStatus == "UNAPPROVED"
    assert "not reviewed" in back.StructureSetDescription
    assert back.PatientID == "TEST001" and back.StudyInstanceUID == info["study"]
    assert back.FrameOfReferenceUID == info["frame_of_reference"]
    assert back.SeriesInstanceUID != info["series"] and back.SOPInstanceUID not in info[
        "sop_uids"]
    assert [r.ROIName for r in back.StructureSetROISequence] == ["stomach", "small_bowel"]
    assert list(back.ROIContourSequence[0].ROIDisplayColor) == [0, 158, 115]
    refs = back.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    listed = [i.ReferencedSOPInstanceUID
              for i in refs.RTReferencedSeriesSequence[0].ContourImageSequence]
    assert listed == info["sop_uids"]
    # every contour on the image it references, its points in that image's plane
    for contour in back.ROIContourSequence[0].ContourSequence:
        uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
        z = info["sop_uids"].index(uid)
        points = np.asarray(contour.ContourData, float).reshape(-1, 3)
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        np.testing.assert_allclose((points - series.frames[z].position) @ series.normal, 0,
                                   atol=1e-3)
    contours = read_structure_set(out)
    assert set(contours) == {"stomach", "small_bowel"}
    assert len(contours["stomach"]) == 3 + 1 + 1  # 3 outlines, the hole, the island
    for k, name in enumerate(("stomach", "small_bowel")):
        np.testing.assert_array_equal(rasterize_structure(series, contours[name]),
                                      masks[..., k])
    # without image references the position finds the slice
    unreferenced = [(None, points) for _, points in contours["stomach"]]
    np.testing.assert_array_equal(rasterize_structure(series, unreferenced), masks[..., 0])


def test_what_is_not_a_structure_set_is_one_line(tmp_path):
    write_series(tmp_path / "s", np.zeros((2, 4, 4), np.uint16))
    image = next((tmp_path / "s").iterdir())
    with pytest.raises(DataError, match=r"not an RT Structure Set \(Modality MR\)"):
        read_structure_set(image)
    (tmp_path / "x.dcm").write_text("no")
    with pytest.raises(DataError, match=r"x\.dcm: not a readable DICOM file"):
        read_structure_set(tmp_path / "x.dcm")


def test_plastimatch_reads_the_structure_set_onto_the_series(tmp_path):
    """An independent reader: plastimatch (system package; .ci/run installs it) rasterises
    the RTSTRUCT onto the series. It unions a hole's contour with the outline instead of
    cutting it out (planning systems cut it: even-odd), so the ring's Dice is just under 1."""
    import shutil
    import subprocess

    import nibabel as nib
    if shutil.which("plastimatch") is None:
        pytest.skip("plastimatch is not installed (.ci/run installs it from apt)")
    write_series(tmp_path / "series", np.zeros((6, 12, 13), np.uint16), (3.0, 0.7, 0.8),
                 tilt=0.0)
    (series,), _ = find_series(tmp_path / "series")
    masks = _masks((6, 12, 13))
    write_structure_set(structure_set(series, masks, ["stomach", "small_bowel"]),
                        tmp_path / "RS.dcm")
    for args in (["--input", str(tmp_path / "series"), "--output-img",
                  str(tmp_path / "image.nii.gz")],
                 ["--input", str(tmp_path / "RS.dcm"), "--fixed", str(tmp_path / "image.nii.gz"),
                  "--output-prefix", str(tmp_path / "out"), "--prefix-format", "nii.gz"]):
        proc = subprocess.run(["plastimatch", "convert", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for k, name in enumerate(("stomach", "small_bowel")):
        theirs = np.asarray(nib.load(tmp_path / "out" / f"{name}.nii.gz").dataobj) > 0
        theirs = np.transpose(theirs, (2, 1, 0))  # (columns, rows, slices) as DICOM orders them
        ours = masks[..., k]
        dice = 2 * (theirs & ours).sum() / (theirs.sum() + ours.sum())
        assert dice >= 0.97, (name, dice)
        assert (ours & ~theirs).sum() == 0  # nothing of ours missing; only the hole filled


def test_the_standards_validator_accepts_what_is_written(tmp_path):
    """dciodvfy (the DICOM standard's IOD validator) finds no Error: a source series without
    the optional patient and study attributes, one with a Japanese patient name (its
    SpecificCharacterSet copied, the name kept), a body-sized contour of over 3,000
    vertices (written in implicit VR: explicit VR's 16-bit length would not hold it), and a
    CT source."""
    write_series(tmp_path / "bare", np.zeros((4, 12, 13), np.uint16), (3.0, 0.7, 0.8))
    (bare,), _ = find_series(tmp_path / "bare")
    out = write_structure_set(structure_set(bare, _masks((4, 12, 13))[:4], ["a", "b"]),
                              tmp_path / "RS_bare.dcm")
    assert dciodvfy_errors(out) == []

    for path in (tmp_path / "bare").iterdir():
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "山田^太郎"
        ds.save_as(path)
    (named,), _ = find_series(tmp_path / "bare")
    out = write_structure_set(structure_set(named, _masks((4, 12, 13))[:4], ["a", "b"]),
                              tmp_path / "RS_named.dcm")
    assert dciodvfy_errors(out) == []
    assert str(pydicom.dcmread(out).PatientName) == "山田^太郎"

    write_series(tmp_path / "body", np.zeros((1, 900, 900), np.uint16), (3.0, 0.9, 0.9),
                 origin=(-400.0, -400.0, -100.0))
    (body,), _ = find_series(tmp_path / "body")
    rows, cols = np.mgrid[:900, :900]
    masks = ((cols > 100 + (rows % 2) * 2) & (cols < 700 + (rows % 2) * 2) & (rows > 20)
             & (rows < 880))[None, ..., None]
    ds = structure_set(body, masks, ["BODY"])
    assert ds.ROIContourSequence[0].ContourSequence[0].NumberOfContourPoints > 3000
    out = write_structure_set(ds, tmp_path / "RS_body.dcm")
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert dciodvfy_errors(out) == []
    np.testing.assert_array_equal(rasterize_structure(body, read_structure_set(out)["BODY"]),
                                  masks[..., 0])

    as_ct(tmp_path / "bare")  # a planning CT
    (ct,), _ = find_series(tmp_path / "bare")
    assert ct.modality == "CT"
    out = write_structure_set(structure_set(ct, _masks((4, 12, 13))[:4], ["a", "b"]),
                              tmp_path / "RS_ct.dcm")
    assert dciodvfy_errors(out) == []
    assert pydicom.dcmread(out).ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[
        0].RTReferencedSeriesSequence[0].ContourImageSequence[0].ReferencedSOPClassUID == (
        pydicom.uid.CTImageStorage)


def test_damaged_and_non_area_contours_are_said_so(tmp_path, capsys):
    """ContourData of 3n-1 values or NaN, a ROI without a name, a ROINumber given twice: one
    line naming the file (never a traceback); OPEN_PLANAR and POINT contours enclose nothing:
    left out with a warning, never filled as areas."""
    write_series(tmp_path / "s", np.zeros((6, 12, 13), np.uint16), (3.0, 0.7, 0.8))
    (series,), _ = find_series(tmp_path / "s")
    masks = _masks((6, 12, 13))

    def broken(change):
        ds = structure_set(series, masks, ["stomach", "bowel"])
        change(ds)
        return write_structure_set(ds, tmp_path / "RS.dcm")

    def short(ds):
        ds.ROIContourSequence[0].ContourSequence[0].ContourData = [1.0] * 11
    with pytest.raises(DataError, match=r"RS\.dcm: ROI 'stomach', contour 1: ContourData of 11 "
                                        r"value\(s\) is not finite x, y, z triples"):
        read_structure_set(broken(short))

    def nan(ds):
        ds.ROIContourSequence[1].ContourSequence[0].ContourData = ["nan"] * 12
    with pytest.raises(DataError, match=r"ROI 'bowel', contour 1: ContourData of 12"):
        read_structure_set(broken(nan))

    def unnamed(ds):
        del ds.StructureSetROISequence[1].ROIName
    with pytest.raises(DataError, match=r"StructureSetROISequence item 2 has no ROINumber or "
                                        r"no ROIName"):
        read_structure_set(broken(unnamed))

    def twice(ds):
        ds.StructureSetROISequence[1].ROINumber = 1
    with pytest.raises(DataError, match=r"ROINumber 1 is given twice \('stomach' and 'bowel'\)"):
        read_structure_set(broken(twice))

    def lines(ds):
        for contour in ds.ROIContourSequence[1].ContourSequence:
            contour.ContourGeometricType = "OPEN_PLANAR"
        ds.ROIContourSequence[0].ContourSequence[0].ContourGeometricType = "POINT"
    back = read_structure_set(broken(lines))
    assert back["bowel"] == [] and len(back["stomach"]) == len(
        structure_set(series, masks, ["stomach", "bowel"]).ROIContourSequence[0]
        .ContourSequence) - 1
    err = capsys.readouterr().err
    assert "ROI 'bowel': 2 OPEN_PLANAR contour(s) left out: they are not areas" in err
    assert "ROI 'stomach': 1 POINT contour(s) left out" in err
    assert not rasterize_structure(series, back["bowel"]).any()


def test_a_noise_answer_is_refused_before_it_is_traced(tmp_path, monkeypatch):
    """Masks of more separate islands than a structure set may hold (a model answering noise)
    are a one-line error naming the series and the class with the most, before any contour is
    traced; at the limit they are written."""
    from tf_medseg.dicom import rtstruct
    info = write_series(tmp_path / "series", np.zeros((2, 8, 8), np.uint16), (3.0, 0.7, 0.8))
    (series,), _ = find_series(tmp_path / "series")
    masks = np.zeros((2, 8, 8, 2), bool)
    masks[:, ::2, ::2, 1] = True  # 16 separate pixels a slice: 32 islands
    masks[0, 2:5, 2:5, 0] = True  # one island
    monkeypatch.setattr(rtstruct, "MAX_CONTOURS", 33)
    ds = structure_set(series, masks, ["Liver", "Noise"])
    assert [len(item.ContourSequence) for item in ds.ROIContourSequence] == [1, 32]
    monkeypatch.setattr(rtstruct, "MAX_CONTOURS", 32)
    monkeypatch.setattr(rtstruct, "mask_polygons", None)  # nothing traced
    with pytest.raises(DataError, match=rf"^series {info['series']}: the masks hold 33 "
                       r"separate islands \(32 of Noise\), more contours than a structure set "
                       r"holds here \(32\): .* or write --output-format seg$"):
        structure_set(series, masks, ["Liver", "Noise"])
