"""Orientation: axis codes, and DICOM volumes turned to face a model's training data."""

import numpy as np
import pytest

from tf_medseg.data import orientation


def _nifti_as_dicom(volume, affine_ras):
    """A NIfTI (X, Y, Z) volume as a DICOM series would hold it: (slices, rows, columns) and
    its voxel-to-LPS affine (as the scanner wrote it, dcm2niix's way round)."""
    # dcm2niix: X = columns, Y = rows from the last up, Z = slices.
    stored = np.flip(np.transpose(volume, (2, 1, 0)), axis=1)
    to_index = np.zeros((4, 4))
    ny = volume.shape[1]
    to_index[0, 2] = to_index[2, 0] = 1.0  # (s, r, c) -> (x = c, y = ny - 1 - r, z = s)
    to_index[1, 1], to_index[1, 3], to_index[3, 3] = -1.0, ny - 1, 1.0
    return stored, orientation.LPS_TO_RAS @ affine_ras @ to_index


@pytest.mark.parametrize("affine", [
    np.diag([-1.25, 1.25, 7.7, 1.0]),  # LAS, as dcm2niix writes an axial scan
    np.array([[0, 0, 2.0, 0], [1.5, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]]),  # a sagittal one
])
def test_a_dicom_volume_comes_back_in_the_nifti_order_it_was_made_from(affine):
    volume = np.random.default_rng(0).random((5, 6, 4)).astype(np.float32)
    stored, affine_lps = _nifti_as_dicom(volume, affine)
    codes = orientation.axcodes(affine)
    turn = orientation.dicom_reorientation(affine_lps, stored.shape, codes)
    np.testing.assert_array_equal(turn.forward(stored), volume)
    np.testing.assert_array_equal(turn.inverse(turn.forward(stored)), stored)
    np.testing.assert_allclose(turn.affine(orientation.LPS_TO_RAS @ affine_lps), affine,
                               atol=1e-9)
    spacing = np.sqrt((affine_lps[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(turn.spacing(spacing), np.sqrt((affine[:3, :3] ** 2).sum(0)))
    # with trailing channels too
    both = np.stack([stored, stored + 1], axis=-1)
    np.testing.assert_array_equal(turn.forward(both)[..., 1], volume + 1)


def test_without_codes_dicom_takes_dcm2niix_order():
    volume = np.arange(5 * 6 * 4, dtype=np.float32).reshape(5, 6, 4)
    stored, affine_lps = _nifti_as_dicom(volume, np.diag([-1.25, 1.25, 7.7, 1.0]))
    turn = orientation.dicom_reorientation(affine_lps, stored.shape, None)
    np.testing.assert_array_equal(turn.forward(stored), volume)


def test_axis_codes_and_the_codes_most_scans_share():
    assert orientation.axcodes(np.diag([-1.0, 1.0, 3.0, 1.0])) == "LAS"
    assert orientation.axcodes(np.diag([1.0, 1.0, 1.0, 1.0])) == "RAS"
    assert orientation.common_axcodes(["LAS", "RAS", "LAS", None]) == "LAS"
    assert orientation.common_axcodes(["RAS", "LAS"]) == "LAS"  # a tie: sorted first
    assert orientation.common_axcodes([None, ""]) is None
