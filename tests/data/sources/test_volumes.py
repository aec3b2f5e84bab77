"""Reading the cases of the nnunet, decathlon and folder sources: bad files are each a one-line
DataError that names the file or case (``tf_medseg.data.sources.volumes``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tf_medseg.data.sources import volumes

from synthetic_volumes import AFFINE, _nifti, error_of, read_all, scene, write_folder


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


def test_folder_binary_mask_saved_as_255_gets_a_hint(tmp_path):
    root = write_folder(tmp_path / "pngs", images=2)
    cv2.imwrite(str(root / "masks" / "p00_slice0.png"), np.full((32, 28), 255, np.uint8))
    assert "declare the value 255" in error_of(read_all, root, "folder")


def test_nan_spacing_in_a_header(nnunet):
    import nibabel as nib
    image, _ = scene(0)
    img = nib.Nifti1Image(image, AFFINE)
    img.header["pixdim"][1:4] = [np.nan, 1.0, 1.0]
    nib.save(img, str(nnunet / "imagesTr" / "case_000_0000.nii.gz"))
    assert "case_000_0000.nii.gz: the header's voxel spacing (pixdim) is nan, 1, 1" in \
        error_of(volumes.nifti_header, nnunet / "imagesTr" / "case_000_0000.nii.gz")


def test_regions_class_order_and_a_deep_dataset_json(tmp_path):
    import json

    from synthetic_volumes import write_nnunet
    root = write_nnunet(tmp_path / "Dataset010_Regions", cases=2, regions=True)
    meta = json.loads((root / "dataset.json").read_text())
    for order in (["2", "1"], [2.5, 1], 3):
        (root / "dataset.json").write_text(json.dumps({**meta, "regions_class_order": order}))
        assert "regions_class_order must be a list of label values" in error_of(
            volumes.index_source, "nnunet", root)
    (root / "dataset.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in error_of(volumes.index_source, "nnunet", root)
