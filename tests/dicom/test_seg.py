"""DICOM SEG written with highdicom from masks on a series, read back with highdicom: the
masks exactly, binary and labelmap, single- and multi-frame sources."""

import highdicom as hd
import numpy as np
import pytest
from synthetic_dicom import as_ct, dciodvfy_errors, write_enhanced, write_series

from tf_medseg.dicom.reader import find_series
from tf_medseg.dicom.seg import segmentation, write_segmentation


def _masks(shape, overlap=True):
    masks = np.zeros((*shape, 2), bool)
    masks[1:4, 2:9, 2:9, 0] = True
    masks[2, 4:6, 4:6, 0] = False
    masks[3:5, 5:8, 1:4, 1] = True
    if not overlap:
        masks[..., 0] &= ~masks[..., 1]
    return masks


def _read(path, series, segments=2):
    seg = hd.seg.segread(path)
    uids = [f.sop_uid for f in series.frames]
    return seg, seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=list(range(1, segments + 1)),
        combine_segments=False).astype(bool)


@pytest.mark.parametrize("exclusive", [False, True])
def test_seg_reads_back_exactly(tmp_path, exclusive):
    write_series(tmp_path / "series", np.zeros((6, 12, 13), np.uint16), (3.0, 0.7, 0.8),
                 tilt=10.0)
    (series,), _ = find_series(tmp_path / "series")
    masks = _masks((6, 12, 13), overlap=not exclusive)
    seg = segmentation(series, masks, ["stomach", "tumour"], exclusive=exclusive)
    out = write_segmentation(seg, tmp_path / "out" / "SEG.dcm")
    back, pixels = _read(out, series)
    np.testing.assert_array_equal(pixels, masks)
    assert back.SegmentationType == ("LABELMAP" if exclusive else "BINARY")
    described = [d for d in back.SegmentSequence if d.SegmentNumber > 0]  # labelmap: + 0
    assert [d.SegmentLabel for d in described] == ["stomach", "tumour"]
    assert described[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "69695003"
    assert described[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"
    assert described[0].SegmentAlgorithmType == "AUTOMATIC"
    assert back.StudyInstanceUID == series.study_uid and back.PatientID == "TEST001"
    assert [p.name for p in out.parent.iterdir()] == ["SEG.dcm"]


def test_seg_of_a_multi_frame_source_follows_its_frames(tmp_path):
    write_enhanced(tmp_path / "in" / "mf.dcm", np.zeros((4, 12, 13), np.uint16),
                   order=[2, 0, 3, 1])
    (series,), _ = find_series(tmp_path / "in")
    masks = _masks((4, 12, 13))
    seg = segmentation(series, masks, ["stomach", "tumour"])
    out = write_segmentation(seg, tmp_path / "SEG.dcm")
    back = hd.seg.segread(out)
    # frame by frame of the source file: the mask of the slice that frame is
    source = series.frames[0].sop_uid
    pixels = back.get_pixels_by_source_frame(
        source_sop_instance_uid=source, source_frame_numbers=[f.index + 1
                                                              for f in series.frames],
        segment_numbers=[1, 2], combine_segments=False).astype(bool)
    np.testing.assert_array_equal(pixels, masks)


def test_a_binary_seg_passes_the_standards_validator_with_a_category_of_cid_7150(tmp_path):
    """dciodvfy (dicom3tools) finds no Error in a BINARY SEG from an MR and a CT series
    without the optional patient and study attributes; an organ's category is Anatomical
    Structure (CID 7150), not the property type Organ. (The 2022 dicom3tools predates the Label Map
    Segmentation IOD, so a LABELMAP SEG, written only on request, is not judged by it.)"""
    write_series(tmp_path / "s", np.zeros((4, 12, 13), np.uint16), (3.0, 0.7, 0.8))
    (series,), _ = find_series(tmp_path / "s")
    masks = np.zeros((4, 12, 13, 2), bool)
    masks[1:3, 2:8, 2:8, 0] = True
    masks[2:4, 5:9, 6:10, 1] = True
    out = write_segmentation(segmentation(series, masks, ["liver", "lesion"]),
                             tmp_path / "SEG.dcm")
    seg = hd.seg.segread(out)
    assert seg.get_segment_description(1).segmented_property_category.value == "91723000"
    assert seg.get_segment_description(2).segmented_property_category.value == "85756007"
    assert dciodvfy_errors(out) == []
    as_ct(tmp_path / "s")  # and from a planning CT
    (ct,), _ = find_series(tmp_path / "s")
    out = write_segmentation(segmentation(ct, masks, ["liver", "lesion"]), tmp_path / "CT.dcm")
    assert hd.seg.segread(out).Modality == "SEG" and dciodvfy_errors(out) == []
