"""DICOM image series read as volumes: grouped, ordered along the slice normal, spaced and
rescaled from the headers; what is not an image stack skipped with a note."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from synthetic_dicom import write_enhanced, write_series

from tf_medseg.dicom.reader import find_series
from tf_medseg.errors import DataError


def _volume(shape=(5, 6, 7), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


def test_a_series_is_ordered_spaced_and_rescaled_from_its_headers(tmp_path):
    volume = _volume()
    info = write_series(tmp_path / "in" / "deep" / "er", volume, (2.5, 0.8, 0.9), tilt=20.0,
                        slope=2.0, intercept=-10.0)
    series, notes = find_series(tmp_path / "in")
    assert notes == [] and len(series) == 1
    s = series[0]
    assert s.uid == info["series"] and s.modality == "MR" and len(s.frames) == 5
    # ordered along the normal, whatever the file names and InstanceNumbers say
    assert [f.sop_uid for f in s.frames] == info["sop_uids"]
    np.testing.assert_allclose(s.spacing, (2.5, 0.8, 0.9), rtol=1e-6)
    np.testing.assert_allclose(s.affine, info["affine"], atol=1e-6)
    # voxel (k, j, i) lies at origin + k * 2.5 normal + j * 0.8 columns + i * 0.9 rows
    np.testing.assert_allclose((s.affine @ [2, 3, 4, 1])[:3], info["affine"][:3, 3]
                               + 2 * info["affine"][:3, 0] + 3 * info["affine"][:3, 1]
                               + 4 * info["affine"][:3, 2])
    assert s.study_uid == info["study"] and s.frame_of_reference == info["frame_of_reference"]
    got = s.read()
    assert got.dtype == np.float32 and got.shape == volume.shape
    np.testing.assert_allclose(got, np.round((volume - -10.0) / 2.0) * 2.0 - 10.0)


def test_what_is_not_an_image_stack_is_skipped_with_a_note(tmp_path):
    from pydicom.data import get_testdata_file
    root = tmp_path / "in"
    write_series(root / "good", _volume(seed=1))
    (root / "notes.txt").write_text("not DICOM")
    shutil.copy(get_testdata_file("rtstruct.dcm", download=False), root / "rs.dcm")
    # a localiser: the same series in two orientations
    write_series(root / "loc", _volume((2, 6, 7)), tilt=0.0, series="1.2.3.4.5")
    write_series(root / "loc2", _volume((2, 6, 7)), tilt=90.0, series="1.2.3.4.5", seed=2)
    # a slice missing from a series
    gap = write_series(root / "gap", _volume((4, 6, 7), seed=3))
    next(p for p in sorted((root / "gap").iterdir())
         if pydicom.dcmread(p).SOPInstanceUID == gap["sop_uids"][1]).unlink()
    series, notes = find_series(root)
    assert len(series) == 1 and len(series[0].frames) == 5
    text = "\n".join(notes)
    assert "skipped 1 file(s) that are not DICOM" in text and "notes.txt" in text
    assert "it is an RT structure set (RTSTRUCT), not images" in text
    assert "series 1.2.3.4.5" in text and "do not share one orientation (a localiser?)" in text
    assert f"series {gap['series']}" in text and "not evenly spaced" in text
    assert len(notes) == 4


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "MR_small_RLE.dcm"])
def test_pydicoms_own_encodings_read_as_the_plain_file(tmp_path, name):
    from pydicom.data import get_testdata_file
    for folder, source in (("plain", "MR_small.dcm"), ("odd", name)):
        (tmp_path / folder).mkdir()
        shutil.copy(get_testdata_file(source, download=False), tmp_path / folder / "x")
    plain, odd = (find_series(tmp_path / f)[0][0] for f in ("plain", "odd"))
    assert odd.spacing == plain.spacing and odd.frames[0].position == plain.frames[0].position
    np.testing.assert_array_equal(odd.read(), plain.read())


def test_a_file_without_meta_header_and_a_codec_not_installed(tmp_path):
    """pydicom's JPEG-LS MR file has no file meta header (no DICM prefix): it is still found
    by its SOP UIDs; its pixels need a JPEG-LS decoder, and without one the read is one line."""
    from pydicom.data import get_testdata_file
    for folder, source in (("plain", "MR_small.dcm"), ("jls", "MR_small_jpeg_ls_lossless.dcm")):
        (tmp_path / folder).mkdir()
        shutil.copy(get_testdata_file(source, download=False), tmp_path / folder / "x")
    series, notes = find_series(tmp_path / "jls")
    assert notes == [] and len(series) == 1
    try:
        got = series[0].read()
    except DataError as exc:
        assert "x: its pixel data cannot be decoded" in str(exc) and "\n" not in str(exc)
    else:  # a decoder is installed: lossless, so the plain file's pixels
        np.testing.assert_array_equal(got, find_series(tmp_path / "plain")[0][0].read())


def test_an_enhanced_multi_frame_image_is_ordered_by_its_functional_groups(tmp_path):
    volume = _volume((4, 5, 6), seed=4)
    write_enhanced(tmp_path / "in" / "mf.dcm", volume, (3.0, 1.0, 1.0), order=[2, 0, 3, 1])
    series, notes = find_series(tmp_path / "in")
    assert notes == [] and len(series) == 1 and len(series[0].frames) == 4
    assert [f.index for f in series[0].frames] == [1, 3, 0, 2]  # file frames, by position
    np.testing.assert_allclose(series[0].spacing, (3.0, 1.0, 1.0))
    np.testing.assert_array_equal(series[0].read(), volume.astype(np.float32))


def test_not_a_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"--input .*nope: not a folder"):
        find_series(tmp_path / "nope")


@pytest.mark.parametrize("tag, value, reason", [
    ("PixelSpacing", [0.0, 1.0], "PixelSpacing [0.0, 1.0] mm is not two sizes in (0, 100] mm"),
    ("PixelSpacing", [-0.8, 0.9], "PixelSpacing [-0.8, 0.9] mm is not two sizes"),
    ("PixelSpacing", [500.0, 0.9], "PixelSpacing [500.0, 0.9] mm is not two sizes"),
    ("PixelSpacing", ["inf", 0.9], "is not 2 finite number(s)"),
    ("PixelSpacing", ["nan", 0.9], "is not 2 finite number(s)"),
    ("PixelSpacing", [0.9], "PixelSpacing '0.9' is not 2 finite number(s)"),
    ("ImagePositionPatient", ["nan", 0, 0], "ImagePositionPatient"),
    ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0], "is not two orthogonal unit directions"),
    ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0], "is not two orthogonal unit directions"),
    ("RescaleSlope", 0, "RescaleSlope 0 (every pixel would be the intercept)"),
    ("RescaleSlope", "nan", "RescaleSlope 'nan' is not 1 finite number(s)"),
    ("RescaleIntercept", "inf", "RescaleIntercept 'inf' is not 1 finite number(s)"),
    ("PhotometricInterpretation", "RGB", "colour images (RGB, 1 samples a pixel)"),
])
def test_geometry_and_rescale_that_cannot_be_right_are_refused_naming_the_tag(
        tmp_path, tag, value, reason):
    """One broken slice: the series is skipped with a note naming the file and the value, never
    a traceback or a volume placed or scaled wrongly."""
    write_series(tmp_path / "in", np.ones((3, 8, 8), np.uint16), tilt=0.0)
    path = sorted((tmp_path / "in").iterdir())[1]
    ds = pydicom.dcmread(path)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the invalid DS values we write
        setattr(ds, tag, value)
        ds.save_as(path)
    series, notes = find_series(tmp_path / "in")
    assert series == [] and len(notes) == 1, notes
    assert f"{path.name}: " in notes[0] and reason in notes[0], notes[0]


def test_a_jpeg_lossless_series_reads_as_its_uncompressed_twin(tmp_path):
    """JPEG Lossless, Process 14 SV1 (what many PACS store and send), transcoded with GDCM:
    the same volume as the uncompressed series (python-gdcm decodes it for pydicom)."""
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm is in requirements.txt")
    volume = np.random.default_rng(0).integers(0, 3000, (3, 16, 16)).astype(np.uint16)
    write_series(tmp_path / "raw", volume)
    (tmp_path / "jpeg").mkdir()
    for path in sorted((tmp_path / "raw").iterdir()):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(tmp_path / "jpeg" / path.name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    (series,), notes = find_series(tmp_path / "jpeg")
    assert notes == [] and pydicom.dcmread(series.frames[0].path).file_meta.TransferSyntaxUID \
        == "1.2.840.10008.1.2.4.70"
    (raw,), _ = find_series(tmp_path / "raw")
    np.testing.assert_array_equal(series.read(), raw.read())
