"""Which way a volume's axes face, and turning a volume to face the way a model's training data
did.

A model learns its slices the way its records stored them: NIfTI volumes in their file's voxel
order, whatever anatomical direction each axis runs in. Its records note every scan's
orientation as nibabel's axis codes (``"LAS"``: the first axis runs to the patient's Left, the
second to Anterior, the third to Superior; RAS+ world, as NIfTI affines are), and its export
states the codes most of them share (``Contract.orientation``). A DICOM series, read as
(slices, rows, columns) in patient LPS coordinates, is turned to face those codes before the
model sees it (axes permuted and flipped, never resampled), and its answer turned back onto the
series' grid (:class:`Reorientation`).

An export that does not state an orientation (records built before it was noted) takes DICOM
in dcm2niix's voxel order (columns, rows bottom-up, slices), the converter behind most NIfTI
data sets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# dcm2niix: NIfTI axis 0 = the columns, axis 1 = the rows from the last up, axis 2 = slices.
DCM2NIIX = np.array([[2, 1], [1, -1], [0, 1]], float)  # nibabel ornt of (slice, row, col)


def axcodes(affine) -> str:
    """The axis codes (``"LAS"``) of a voxel-to-RAS ``affine``; the nearest axis where the
    axes are oblique."""
    from nibabel.orientations import aff2axcodes
    return "".join(aff2axcodes(np.asarray(affine, float)))


def common_axcodes(codes) -> str | None:
    """The codes most scans share (the first in sorted order on a tie), None for none."""
    counts = Counter(c for c in codes if c)
    if not counts:
        return None
    best = max(counts.values())
    return sorted(c for c, n in counts.items() if n == best)[0]


@dataclasses.dataclass(frozen=True)
class Reorientation:
    """Permutations and flips between a volume's stored axes and a model's axes.

    ``ornt`` is nibabel's orientation transform from the stored axes to the model's: row i
    says which model axis stored axis i becomes and whether it is flipped (-1)."""

    ornt: np.ndarray
    shape: tuple[int, int, int]  # the stored volume's

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Stored (A, B, C, ...) -> the model's axes (trailing axes kept)."""
        from nibabel.orientations import apply_orientation
        return np.ascontiguousarray(apply_orientation(array, self.ornt))

    def inverse(self, array: np.ndarray) -> np.ndarray:
        """The model's axes -> stored (trailing axes kept)."""
        from nibabel.orientations import apply_orientation
        back = np.empty_like(self.ornt)
        for i, (axis, flip) in enumerate(self.ornt):
            back[int(axis)] = (i, flip)
        return np.ascontiguousarray(apply_orientation(array, back))

    def spacing(self, spacing) -> np.ndarray:
        """Stored per-axis spacing -> the model's axes."""
        out = np.empty(3, np.float32)
        for i, (axis, _) in enumerate(self.ornt):
            out[int(axis)] = spacing[i]
        return out

    def affine(self, affine) -> np.ndarray:
        """The model-axes voxel-to-world affine of a stored volume's ``affine``."""
        from nibabel.orientations import inv_ornt_aff
        return np.asarray(affine, float) @ inv_ornt_aff(self.ornt, self.shape)


def dicom_reorientation(affine_lps, shape, codes: str | None) -> Reorientation:
    """How a DICOM volume of ``shape`` (slices, rows, columns), voxel-to-LPS ``affine_lps``,
    turns to face ``codes`` (dcm2niix's order where ``codes`` is None)."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform
    if codes is None:
        return Reorientation(DCM2NIIX.copy(), tuple(int(n) for n in shape[:3]))
    stored = io_orientation(LPS_TO_RAS @ np.asarray(affine_lps, float))
    ornt = ornt_transform(stored, axcodes2ornt(tuple(codes)))
    return Reorientation(ornt, tuple(int(n) for n in shape[:3]))
