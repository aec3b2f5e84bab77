"""Indexing the nnunet, decathlon and folder sources: bad folders and declarations are each a
one-line DataError that names the file, case or key, before anything is read."""

from __future__ import annotations

import json

import pytest

from tf_medseg.data.sources import volumes

from synthetic_volumes import error_of, write_decathlon, write_folder


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


def test_missing_channel_file(nnunet):
    (nnunet / "imagesTr" / "case_001_0001.nii.gz").unlink()
    message = error_of(volumes.index_source, "nnunet", nnunet)
    assert "case_001_0001.nii.gz: missing: case case_001 needs one file per channel" in message


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


def test_group_pattern_that_does_not_match(tmp_path):
    root = write_folder(tmp_path / "pngs", images=2)
    message = error_of(volumes.index_source, "folder", root, group_pattern=r"^(patient\d+)")
    assert "data.group_pattern" in message and "p00_slice0" in message


def test_decathlon_names_and_entries_that_cannot_be_right(tmp_path):
    root = write_decathlon(tmp_path / "Task02", cases=2)
    meta = json.loads((root / "dataset.json").read_text())
    for labels, message in (
            ({"0": "background", "1": "background"},
             "'background' names label value 0 only"),
            ({"0": "background", "1": "tumor", "2": "tumor"},
             "labels.2: the name 'tumor' is also label value 1")):
        (root / "dataset.json").write_text(json.dumps({**meta, "labels": labels}))
        assert message in error_of(volumes.index_source, "decathlon", root)
    entry = meta["training"][0]
    own = [{"image": entry["image"], "label": entry["image"]}, *meta["training"][1:]]
    (root / "dataset.json").write_text(json.dumps({**meta, "training": own}))
    assert "the image and the label are the same file" in error_of(
        volumes.index_source, "decathlon", root)


@pytest.mark.parametrize("name", [".", "..", "a\\b"])
def test_a_class_name_that_is_not_a_folder_name(tmp_path, name):
    root = write_folder(tmp_path / "f", per_class=True, images=2)
    (root / "labels.json").write_text(json.dumps(["ball", name]))
    assert "a list of class names" in error_of(volumes.index_source, "folder", root)


def test_num_training_as_a_string_says_so(nnunet):
    meta = json.loads((nnunet / "dataset.json").read_text())
    (nnunet / "dataset.json").write_text(json.dumps({**meta, "numTraining": "2"}))
    assert "numTraining is the string '2'; write it as a number (2, without quotes)" in \
        error_of(volumes.index_source, "nnunet", nnunet)


def test_symlinked_files_are_followed_and_keep_the_link_name(tmp_path, nnunet):
    """A symlink inside the folder may point anywhere (data kept elsewhere to save disk), in
    every source; only a path in dataset.json that leaves the folder is refused."""
    root = write_decathlon(tmp_path / "Task03", cases=2)
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    kept = root / "imagesTr" / "TASK_001.nii.gz"
    kept.rename(elsewhere / "other_name.nii.gz")
    kept.symlink_to(elsewhere / "other_name.nii.gz")
    index = volumes.index_source("decathlon", root)
    assert [c.case for c in index.cases] == ["TASK_000", "TASK_001"]
    assert index.cases[1].images[0] == kept
    label = nnunet / "labelsTr" / "case_000.nii.gz"
    label.rename(elsewhere / "label.nii.gz")
    label.symlink_to(elsewhere / "label.nii.gz")
    assert volumes.index_source("nnunet", nnunet).cases[0].label == label
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][1]["image"] = "../store/other_name.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    message = error_of(volumes.index_source, "decathlon", root)
    assert "'../store/other_name.nii.gz' points outside the data set folder" in message
    assert "symlink" in message


def test_one_name_with_two_endings_names_both_files(tmp_path):
    root = write_folder(tmp_path / "pngs", images=2)
    (root / "images" / "p00_slice0.tif").write_bytes((root / "images" / "p00_slice0.png")
                                                      .read_bytes())
    message = error_of(volumes.index_source, "folder", root)
    assert "p00_slice0.png and p00_slice0.tif: two images of one name" in message
    (root / "images" / "p00_slice0.tif").unlink()
    (root / "masks" / "p00_slice1.tif").write_bytes(b"x")
    message = error_of(volumes.index_source, "folder", root)
    assert "p00_slice1.png and p00_slice1.tif: two masks for the image p00_slice1.png" in message
