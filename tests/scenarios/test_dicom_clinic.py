"""The clinical path: a model trained on NIfTI volumes predicts DICOM MR series (written with
pydicom the way a scanner sends them, and from the real CHAOS sample), answering with RT
Structure Sets, DICOM SEGs and NIfTI label maps that read back as the label map it predicts."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from synthetic_dicom import dciodvfy_errors, write_from_nifti

from tf_medseg.data.orientation import axcodes, dicom_reorientation
from tf_medseg.dicom.reader import find_series
from tf_medseg.dicom.rtstruct import rasterize_structure, read_structure_set
from tf_medseg.inference.predict import predict

from conftest import ROOT, cli_here
from synthetic_volumes import write_nnunet

CHAOS = ROOT.parent / "shared" / "data" / "chaos_t2" / "Dataset001_CHAOST2"


@pytest.fixture(scope="module")
def ball_model(tmp_path_factory):
    """A tiny 2D model trained on one-channel NIfTI balls and boxes until it finds them
    (validation Dice about 0.84): (export, data set root)."""
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    tmp = tmp_path_factory.mktemp("dicom_clinic")
    root = write_nnunet(tmp / "Dataset009_Balls", cases=4, channels=("T2",), shape=(48, 40, 12))
    config = load_config("tiny.yaml", [
        "data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp / 'tfds'}",
        "data.image_size=[48,48]", "data.batch_size=4", "data.num_folds=2", "data.context=[0]",
        "train.epochs=4", "train.steps_per_epoch=30", "train.learning_rate=0.01",
        f"train.run_dir={tmp / 'run'}",
        "train.overlay_slices=0", "export.roi_names={ball: Ball_Auto}"])
    result = train(config, verbose=0)
    assert result["dice"] > 0.5, result["dice"]
    meta = json.loads((tmp / "run" / "saved_model" / "metadata.json").read_text())
    assert meta["orientation"] == "RAS" and meta["roi_names"] == ["Ball_Auto", "box"]
    return tmp / "run" / "saved_model", root


def _on_series(series, labels, affine):
    """A NIfTI label map (``affine``) on the series' own grid (slices in the reader's order
    along the normal, rows, columns)."""
    return dicom_reorientation(series.affine, series.shape, axcodes(affine)).inverse(labels)


def _dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def test_a_dicom_series_is_predicted_as_the_nifti_it_came_from(ball_model, tmp_path):
    import highdicom as hd
    export, root = ball_model
    source = nib.load(root / "imagesTr" / "case_001_0000.nii.gz")
    (tmp_path / "nifti_in").mkdir()
    nifti = tmp_path / "nifti_in" / "case_001_0000.nii.gz"  # what a scanner stores: integers
    nib.save(nib.Nifti1Image(np.rint(source.get_fdata()).astype(np.uint16), source.affine),
             nifti)
    info = write_from_nifti(tmp_path / "scanner" / "study" / "series", nifti)
    (tmp_path / "scanner" / "README.txt").write_text("not DICOM")  # skipped with a note
    predict(export, tmp_path / "nifti_in", tmp_path / "from_nifti", progress=False)
    expected = np.asarray(nib.load(tmp_path / "from_nifti" / "case_001.nii.gz").dataobj)
    assert set(np.unique(expected)) == {0, 1, 2}  # it finds both classes
    uid = info["series"]
    # NIfTI out: the same label map, voxel for voxel, on the same grid
    summary = predict(export, tmp_path / "scanner", tmp_path / "nii", output_format="nifti",
                      progress=False)
    assert summary["files"] == [f"{uid}.nii.gz"] and summary["scans"] == 1
    ours = nib.load(tmp_path / "nii" / f"{uid}.nii.gz")
    np.testing.assert_array_equal(np.asarray(ours.dataobj), expected)
    np.testing.assert_allclose(ours.affine, nib.load(nifti).affine, atol=1e-4)
    (series,), _ = find_series(tmp_path / "scanner")
    on_series = _on_series(series, expected, ours.affine)
    np.testing.assert_array_equal(_on_series(series, np.asarray(nib.load(nifti).dataobj),
                                             ours.affine), series.read())
    # RTSTRUCT (the default): one ROI per class, named by export.roi_names
    predict(export, tmp_path / "scanner", tmp_path / "rs", progress=False)
    structures = read_structure_set(tmp_path / "rs" / f"RS_{uid}.dcm")
    assert sorted(structures) == ["Ball_Auto", "box"]
    sops = set(info["sop_uids"])
    for value, name in ((1, "Ball_Auto"), (2, "box")):
        assert all(ref in sops for ref, _ in structures[name])
        back = rasterize_structure(series, structures[name])
        assert _dice(back, on_series == value) >= 0.97
    # SEG: BINARY segments (what every SEG reader takes), or on request one Label Map of the
    # exclusive classes; each equals the label map exactly
    for fmt, kind in (("seg", "BINARY"), ("seg-labelmap", "LABELMAP")):
        predict(export, tmp_path / "scanner", tmp_path / fmt, output_format=fmt,
                progress=False)
        seg = hd.seg.segread(tmp_path / fmt / f"SEG_{uid}.dcm")
        assert seg.SegmentationType == kind
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[f.sop_uid for f in series.frames], segment_numbers=[1, 2],
            combine_segments=False).astype(bool)
        for k in range(2):
            np.testing.assert_array_equal(pixels[..., k], on_series == k + 1)
        assert [seg.get_segment_description(k).segment_label for k in (1, 2)] == [
            "Ball_Auto", "box"]
    if shutil.which("dciodvfy"):  # the default SEG: no Error from the standard's validator
        assert dciodvfy_errors(tmp_path / "seg" / f"SEG_{uid}.dcm") == []


def test_a_series_uid_that_is_not_a_uid_names_nothing(ball_model, tmp_path, capfd):
    """A series whose SeriesInstanceUID climbs out of --output (or is empty) is skipped with a
    note naming its folder; the honest series beside it is contoured; nothing is written
    outside --output, and --overwrite then removes nothing above it."""
    import pydicom
    export, root = ball_model
    source = nib.load(root / "imagesTr" / "case_001_0000.nii.gz")
    nifti = tmp_path / "case_001_0000.nii.gz"
    nib.save(nib.Nifti1Image(np.rint(source.get_fdata()).astype(np.uint16), source.affine),
             nifti)
    good = write_from_nifti(tmp_path / "in" / "good", nifti)
    for name, uid in (("climbs", "../../outside"), ("absolute", "/tmp/x"), ("empty", "")):
        write_from_nifti(tmp_path / "in" / name, nifti)
        for path in (tmp_path / "in" / name).iterdir():
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = uid
            ds.save_as(path)
    out = tmp_path / "deep" / "out"
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "keep.txt").write_text("a user's file")
    for overwrite in (False, True):
        summary = predict(export, tmp_path / "in", out, progress=False, overwrite=overwrite)
        assert summary["files"] == [f"RS_{good['series']}.dcm"], summary
    err = capfd.readouterr().err
    assert "climbs: a series skipped, its SeriesInstanceUID '../../outside' is not a UID" in err
    assert "absolute: a series skipped, its SeriesInstanceUID '/tmp/x' is not a UID" in err
    assert "empty: a series skipped, it has no SeriesInstanceUID" in err
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["keep.txt", "out"]
    assert sorted(p.name for p in out.iterdir()) == ["RS_" + good["series"] + ".dcm",
                                                     "prediction.json"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "outside.dcm").exists()


def test_a_ct_series_is_not_given_to_an_mr_model(ball_model, tmp_path):
    """The export states its channel (T2): a CT series is refused in one line naming it,
    never contoured into an empty structure set."""
    import pydicom

    from tf_medseg.errors import DataError
    from tf_medseg.inference.inputs import expected_modality
    assert [expected_modality(c) for c in ("CT", "ct", "T2", "t1-ce", "MRI", "FLAIR", "0",
                                           "image")] == ["CT", "CT", "MR", "MR", "MR", "MR",
                                                         None, None]
    export, root = ball_model
    source = nib.load(root / "imagesTr" / "case_001_0000.nii.gz")
    nifti = tmp_path / "case_001_0000.nii.gz"
    nib.save(nib.Nifti1Image(np.rint(source.get_fdata()).astype(np.uint16), source.affine),
             nifti)
    info = write_from_nifti(tmp_path / "ct", nifti)
    for path in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality = "CT"
        ds.save_as(path)
    with pytest.raises(DataError, match=rf"no DICOM image series to predict \(series "
                                        rf"{info['series']} \(.*ct\): skipped, it is CT but "
                                        rf"the model was trained on MR \(channel T2\)\)"):
        predict(export, tmp_path / "ct", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_output_formats_that_do_not_fit_the_input_are_refused(ball_model, tmp_path):
    from tf_medseg.errors import MedsegError
    export, root = ball_model
    with pytest.raises(MedsegError, match="--output-format rtstruct: not for nifti input"):
        predict(export, root / "imagesTr", tmp_path / "out", output_format="rtstruct",
                progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not CHAOS.is_dir(), reason="the shared CHAOS sample is not here")
def test_real_chaos_scan_as_dicom_through_the_command_line(ball_model, tmp_path):
    """The real CHAOS geometry (256 x 256 x 37, LAS, 1.25 x 1.25 x 7.7 mm) written as a DICOM
    series, contoured by ``predict``: the RTSTRUCT read back by our rasteriser and by
    plastimatch (where installed) against the label map of the same series."""
    export, _ = ball_model
    info = write_from_nifti(tmp_path / "in", CHAOS / "imagesTr" / "chaos_001_0000.nii.gz")
    uid = info["series"]
    proc = cli_here("-m", "tf_medseg", "predict", "--model", str(export), "--input",
                    str(tmp_path / "in"), "--output", str(tmp_path / "rtstruct"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Predicted 37 slices of 1 scan(s)" in proc.stdout and "label map(s)" in proc.stdout
    predict(export, tmp_path / "in", tmp_path / "nifti", output_format="nifti", progress=False)
    labels = nib.load(tmp_path / "nifti" / f"{uid}.nii.gz")
    (series,), _ = find_series(tmp_path / "in")
    on_series = _on_series(series, np.asarray(labels.dataobj), labels.affine)
    structures = read_structure_set(tmp_path / "rtstruct" / f"RS_{uid}.dcm")
    found = [v for v in (1, 2) if (on_series == v).any()]
    assert found, "the model predicts nothing on the CHAOS scan"
    for value in found:
        name = ("Ball_Auto", "box")[value - 1]
        assert _dice(rasterize_structure(series, structures[name]), on_series == value) >= 0.97
    if shutil.which("plastimatch") is None:
        pytest.skip("plastimatch is not installed (.ci/run installs it from apt)")
    for args in (["--input", str(tmp_path / "in"), "--output-img", str(tmp_path / "img.nii.gz")],
                 ["--input", str(tmp_path / "rtstruct" / f"RS_{uid}.dcm"), "--fixed",
                  str(tmp_path / "img.nii.gz"), "--output-prefix", str(tmp_path / "pm"),
                  "--prefix-format", "nii.gz"]):
        proc = subprocess.run(["plastimatch", "convert", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for value in found:
        name = ("Ball_Auto", "box")[value - 1]
        theirs = np.asarray(nib.load(tmp_path / "pm" / f"{name}.nii.gz").dataobj) > 0
        theirs = np.transpose(theirs, (2, 1, 0))  # plastimatch: (columns, rows, slices)
        assert _dice(theirs, on_series == value) >= 0.97, name


def test_a_clinics_archive_trains_and_contours(tmp_path, capfd):
    """data.source dicom: studies (an MR series and its RTSTRUCT) whose stomach is named
    Stomach in some and STOMACH_1 in others, one without a bowel ROI; one tiny epoch, then a
    series predicted into a structure set with the data's classes."""
    from synthetic_dicom import write_study

    from tf_medseg.config import load_config
    from tf_medseg.training import train
    shape = (6, 32, 32)
    z, r, c = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    for k in range(4):
        rng = np.random.default_rng(k)
        volume = rng.normal(100, 10, shape)
        stomach = (r - 12 - k) ** 2 + (c - 14) ** 2 < 30
        bowel = (abs(r - 22) < 4) & (abs(c - 18 - k) < 6) & (z > 0)
        volume = np.clip(volume + 300 * stomach + 150 * bowel, 0, None).astype(np.uint16)
        rois = {("Stomach", "STOMACH_1")[k % 2]: stomach}
        if k != 3:
            rois["Bowel"] = bowel
        write_study(tmp_path / "archive" / f"study{k}", volume, rois, patient=f"P{k}", seed=k)
    config = load_config("tiny.yaml", [
        "data.source=dicom", f"data.root={tmp_path / 'archive'}",
        "data.roi_map={stomach: [Stomach, STOMACH_1], bowel: Bowel}",
        f"data.data_dir={tmp_path / 'tfds'}", "data.image_size=[32,32]", "data.batch_size=4",
        "data.context=[0]", "train.epochs=1", f"train.run_dir={tmp_path / 'run'}",
        "train.overlay_slices=0"])
    result = train(config, verbose=0)
    out = capfd.readouterr().out  # the records are read in worker processes
    assert "no ROI named bowel (class bowel); case P3_2 counts as empty" in out
    assert result["classes"] == ["stomach", "bowel"] and len(result["cases"]) == 2
    summary = predict(tmp_path / "run" / "saved_model", tmp_path / "archive" / "study0" / "images",
                      tmp_path / "rs", progress=False)
    (name,) = summary["files"]
    assert sorted(read_structure_set(tmp_path / "rs" / name)) == ["bowel", "stomach"]
