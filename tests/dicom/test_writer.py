"""The DICOM writers: what each names its files, and the answer turned back onto the series."""

import dataclasses

import numpy as np
import pytest
from synthetic_dicom import write_series

from tf_medseg.config import load_config
from tf_medseg.data.orientation import dicom_reorientation
from tf_medseg.dicom.reader import find_series
from tf_medseg.dicom.rtstruct import rasterize_structure, read_structure_set
from tf_medseg.dicom.writer import DicomNiftiWriter, RtstructWriter, SegWriter
from tf_medseg.errors import MedsegError
from tf_medseg.inference.inputs import InputCase
from tf_medseg.inference.writers import writer_for

from conftest import kaggle_contract


@pytest.fixture
def case(tmp_path):
    write_series(tmp_path / "series", np.zeros((4, 10, 12), np.uint16), (3.0, 0.7, 0.8))
    (series,), _ = find_series(tmp_path / "series")
    turn = dicom_reorientation(series.affine, series.shape, "LAS")
    return InputCase(series.uid, "dicom", (series.frames[0].path,), series=series, turn=turn)


def test_each_format_names_its_files_and_writes_the_series_grid(tmp_path, case):
    import nibabel as nib
    contract = dataclasses.replace(kaggle_contract(load_config("tiny.yaml")),
                                   roi_names=("LB", "SB", "ST"), orientation="LAS")
    on_series = np.zeros((4, 10, 12, 3), bool)
    on_series[1:3, 2:6, 3:9, 0] = True
    on_series[2, 4:8, 1:4, 2] = True
    masks = case.turn.forward(on_series)  # what the model answers, in its axes
    probs = masks.astype(np.float32)
    kinds = {"rtstruct": RtstructWriter, "seg": SegWriter, "nifti": DicomNiftiWriter}
    for fmt, kind in kinds.items():
        writer = writer_for("dicom", tmp_path / fmt, contract, probabilities=fmt == "nifti",
                            output_format=fmt)
        assert isinstance(writer, kind) and writer.target == "folder"
        writer.write(case, None, probs, masks)
        assert writer.close()["files"] == [
            {"rtstruct": f"RS_{case.name}.dcm", "seg": f"SEG_{case.name}.dcm",
             "nifti": f"{case.name}.nii.gz"}[fmt]]
    structures = read_structure_set(tmp_path / "rtstruct" / f"RS_{case.name}.dcm")
    assert sorted(structures) == ["LB", "SB", "ST"] and structures["SB"] == []  # empty: listed
    np.testing.assert_array_equal(rasterize_structure(case.series, structures["LB"]),
                                  on_series[..., 0])
    label = nib.load(tmp_path / "nifti" / f"{case.name}.nii.gz")
    assert label.shape == masks.shape[:3] and np.asarray(label.dataobj).max() == 3
    saved = np.load(tmp_path / "nifti" / f"{case.name}.npz")
    np.testing.assert_array_equal(np.moveaxis(saved["probabilities"], 0, -1), on_series)
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def test_a_label_map_seg_is_refused_for_overlapping_classes(tmp_path):
    """--output-format seg-labelmap holds one class a pixel: a sigmoid model (classes that may
    overlap) is refused in one line before anything is written; seg serves it."""
    contract = kaggle_contract(load_config("tiny.yaml"))  # sigmoid
    with pytest.raises(MedsegError, match="seg-labelmap: this model's classes may overlap "
                       r"\(a sigmoid head\).*use --output-format seg$"):
        writer_for("dicom", tmp_path / "out", contract, output_format="seg-labelmap")
    assert isinstance(writer_for("dicom", tmp_path / "out", contract, output_format="seg"),
                      SegWriter)
    assert not (tmp_path / "out").exists()
