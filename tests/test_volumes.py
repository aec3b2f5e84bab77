"""Bad input to the nnunet, decathlon and folder sources: each a one-line DataError that names
the file, case or key; nothing half-written (``tf_medseg.data.volumes``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tf_medseg.data import volumes
from tf_medseg.errors import DataError

from synthetic_volumes import AFFINE, _nifti, scene, write_decathlon, write_folder, write_nnunet


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def read_all(root: Path, fmt: str = "nnunet"):
    index = volumes.index_source(fmt, root)
    for case in index.cases:
        volumes.read_case(index, case)


@pytest.fixture
def nnunet(tmp_path) -> Path:
    return write_nnunet(tmp_path / "Dataset001_Bad", cases=2)


def test_dataset_json_missing_or_unparsable(nnunet):
    (nnunet / "dataset.json").unlink()
    assert "dataset.json: not found" in error_of(volumes.index_source, "nnunet", nnunet)
    (nnunet / "dataset.json").write_text("{not json")
    assert "dataset.json: not valid JSON" in error_of(volumes.index_source, "nnunet", nnunet)


@pytest.mark.parametrize("key", ["channel_names", "labels", "numTraining", "file_ending"])
def test_required_field_missing(nnunet, key):
    meta = json.loads((nnunet / "dataset.json").read_text())
    del meta[key]
    (nnunet / "dataset.json").write_text(json.dumps(meta))
    assert f"'{key}' missing" in error_of(volumes.index_source, "nnunet", nnunet)


def test_decathlon_field_missing(tmp_path):
    root = write_decathlon(tmp_path / "Task01", cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    del meta["training"]
    (root / "dataset.json").write_text(json.dumps(meta))
    assert "'training' missing" in error_of(volumes.index_source, "decathlon", root)
    meta["training"] = [{"image": "../../etc/passwd", "label": "./labelsTr/TASK_000.nii.gz"}]
    (root / "dataset.json").write_text(json.dumps(meta))
    assert "outside the data set folder" in error_of(volumes.index_source, "decathlon", root)


def test_undeclared_label_value(nnunet):
    image, label = scene(0)
    label[0, 0, 0] = 7
    _nifti(nnunet / "labelsTr" / "case_000.nii.gz", label)
    message = error_of(read_all, nnunet)
    assert "case_000.nii.gz: label value 7 is not declared" in message


def test_image_and_label_shapes_differ(nnunet):
    _nifti(nnunet / "labelsTr" / "case_001.nii.gz", np.zeros((32, 28, 5), np.uint8))
    assert "case_001.nii.gz: shape (32, 28, 5) differs from the image's" in error_of(
        read_all, nnunet)


def test_affines_differ(nnunet):
    _, label = scene(1)
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.01
    _nifti(nnunet / "labelsTr" / "case_001.nii.gz", label, shifted)
    assert "case_001.nii.gz: its affine differs" in error_of(read_all, nnunet)
    # and before a build reads any voxel:
    index = volumes.index_source("nnunet", nnunet)
    assert "case_001.nii.gz: its affine differs" in error_of(volumes.check_headers, index)


def test_missing_channel_file(nnunet):
    (nnunet / "imagesTr" / "case_001_0001.nii.gz").unlink()
    message = error_of(volumes.index_source, "nnunet", nnunet)
    assert "case_001_0001.nii.gz: missing: case case_001 needs one file per channel" in message


def test_channels_of_different_shapes(nnunet):
    _nifti(nnunet / "imagesTr" / "case_000_0001.nii.gz", np.zeros((30, 28, 6), np.float32))
    assert "case_000_0001.nii.gz: shape (30, 28, 6) differs" in error_of(read_all, nnunet)
    index = volumes.index_source("nnunet", nnunet)
    assert "case_000_0001.nii.gz: shape (30, 28, 6) differs" in error_of(
        volumes.check_headers, index)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_image(nnunet, bad):
    image, _ = scene(0)
    image[3, 3, 3] = bad
    _nifti(nnunet / "imagesTr" / "case_000_0000.nii.gz", image)
    assert "case_000_0000.nii.gz: the image holds NaN or infinite" in error_of(read_all, nnunet)


def test_non_integer_and_4d_label_maps(nnunet):
    _, label = scene(0)
    _nifti(nnunet / "labelsTr" / "case_000.nii.gz", label.astype(np.float32) + 0.5)
    assert "non-integer values" in error_of(read_all, nnunet)
    _nifti(nnunet / "labelsTr" / "case_000.nii.gz", np.stack([label, label], axis=-1))
    assert "a 4-D label map" in error_of(read_all, nnunet)


def test_unsupported_file_ending(nnunet):
    meta = json.loads((nnunet / "dataset.json").read_text())
    (nnunet / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".mha"}))
    assert "file_ending '.mha' is not supported" in error_of(volumes.index_source, "nnunet",
                                                             nnunet)
    (nnunet / "dataset.json").write_text(json.dumps(meta))
    (nnunet / "imagesTr" / "case_000_0002.nrrd").write_bytes(b"x")
    assert "case_000_0002.nrrd: unexpected file ending" in error_of(
        volumes.index_source, "nnunet", nnunet)


def test_folder_image_without_mask(tmp_path):
    root = write_folder(tmp_path / "pngs", images=3)
    (root / "masks" / "p00_slice1.png").unlink()
    assert "p00_slice1.png: no mask" in error_of(volumes.index_source, "folder", root)
    per_class = write_folder(tmp_path / "per_class", per_class=True, images=3)
    (per_class / "masks" / "box" / "p01_slice0.png").unlink()
    message = error_of(volumes.index_source, "folder", per_class)
    assert "p01_slice0.png: no mask" in message and "box" in message


def test_folder_binary_mask_saved_as_255_gets_a_hint(tmp_path):
    root = write_folder(tmp_path / "pngs", images=2)
    cv2.imwrite(str(root / "masks" / "p00_slice0.png"), np.full((32, 28), 255, np.uint8))
    assert "declare the value 255" in error_of(read_all, root, "folder")


def test_group_pattern_that_does_not_match(tmp_path):
    root = write_folder(tmp_path / "pngs", images=2)
    message = error_of(volumes.index_source, "folder", root, group_pattern=r"^(patient\d+)")
    assert "data.group_pattern" in message and "p00_slice0" in message


def test_bad_case_stops_the_build_and_leaves_nothing(tmp_path, nnunet):
    from tf_medseg.config import load_config
    from tf_medseg.records import build_records
    image, _ = scene(1)
    image[0, 0, 0] = np.nan
    _nifti(nnunet / "imagesTr" / "case_001_0000.nii.gz", image)
    config = load_config(None, ["data.source=nnunet", f"data.root={nnunet}",
                                f"data.data_dir={tmp_path / 'tfds'}"])
    message = error_of(build_records, config.data)
    assert "case_001_0000.nii.gz: the image holds NaN" in message
    left = [p for p in (tmp_path / "tfds").rglob("*") if p.is_file() and
            p.name != ".prepare.lock"]
    assert left == []


def test_all_empty_label_maps_warn(tmp_path, capsys):
    from tf_medseg.config import load_config
    from tf_medseg.records import build_records
    root = write_nnunet(tmp_path / "Dataset002_Empty", cases=2, channels=("MR",))
    for case in ("case_000", "case_001"):
        _nifti(root / "labelsTr" / f"{case}.nii.gz", np.zeros((32, 28, 6), np.uint8))
    config = load_config(None, ["data.source=nnunet", f"data.root={root}",
                                f"data.data_dir={tmp_path / 'tfds'}"])
    builder = build_records(config.data)
    out = capsys.readouterr().out
    assert "warning: every label map of" in out and "is empty" in out
    assert builder.info.metadata["organ_slices_per_scan"] == {"case_000": 0, "case_001": 0}


def test_records_are_keyed_to_files_and_options(nnunet):
    import os

    from tf_medseg.resources import builders
    volume_config = builders("volume_layout").volume_config
    first = volume_config("nnunet", str(nnunet)).name
    assert volume_config("nnunet", str(nnunet)).name == first  # stable
    assert volume_config("nnunet", str(nnunet), slice_axis=0).name != first
    assert volume_config("nnunet", str(nnunet), spacing=(2.0, 2.0)).name != first
    label = nnunet / "labelsTr" / "case_000.nii.gz"
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert volume_config("nnunet", str(nnunet)).name != first
