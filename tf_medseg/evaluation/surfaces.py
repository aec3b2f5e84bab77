"""The metrics radiotherapy judges contours by: how much of a contour a clinician must edit.

* Surface Dice at a tolerance (Nikolov et al. 2018): the share of both surfaces that lies within
  ``tolerance`` mm of the other, over the same spacing-aware voxel surfaces as HD95 (MONAI's
  ``compute_surface_dice`` without sub-voxel areas): 1 for surfaces that agree within the
  tolerance everywhere, 0 for surfaces apart by more.
* Added path length (Vaassen et al. 2020): per 2D slice of the acquisition (across the scan's
  slice axis), the length in mm of the reference contour that lies farther than ``tolerance`` mm
  from the predicted contour, the part a clinician would draw by hand; summed over the slices.
  Its relative form divides by the whole reference contour's length. A contour pixel counts
  the mean in-plane pixel size.

Both per class of boolean (A0, A1, A2, K) volumes with the voxel ``spacing`` (mm along the three
axes); NaN where the class is empty in both (surface Dice) or in the reference (relative APL).
The PyPI ``surface-distance`` package is not used: it breaks on NumPy 2.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FAR = 1e9  # mm between slices: in-plane distances only


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box (one slice per axis) holding every true voxel of ``mask``."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of a mask with a face-neighbour outside it (outside the array counts)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _tolerances(tolerance, classes: int) -> np.ndarray:
    values = np.broadcast_to(np.asarray(tolerance, float), (classes,))
    if (values < 0).any():
        raise ValueError(f"tolerance must be >= 0 mm, got {tolerance}")
    return values


def surface_metrics(pred: np.ndarray, true: np.ndarray, spacing,
                    tolerance=2.0) -> tuple[np.ndarray, np.ndarray]:
    """(HD95 in mm, surface Dice at ``tolerance`` mm) per class, from one pair of distance
    transforms per class. Empty in both: NaN, NaN; in one: the volume's diagonal in mm, 0."""
    pred, true = pred.astype(bool), true.astype(bool)
    spacing = tuple(float(s) for s in spacing)
    tolerances = _tolerances(tolerance, pred.shape[-1])
    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape[:3], spacing))))
    hd95, sdice = np.empty(pred.shape[-1]), np.empty(pred.shape[-1])
    for c in range(pred.shape[-1]):
        p, t = pred[..., c], true[..., c]
        if not p.any() and not t.any():
            hd95[c] = sdice[c] = np.nan
        elif not p.any() or not t.any():
            hd95[c], sdice[c] = diagonal, 0.0
        else:
            box = bounding_box(p | t)  # exact: every surface voxel lies inside it
            ps, ts = surface(p[box]), surface(t[box])
            to_t = ndimage.distance_transform_edt(~ts, sampling=spacing)[ps]
            to_p = ndimage.distance_transform_edt(~ps, sampling=spacing)[ts]
            hd95[c] = max(np.percentile(to_t, 95), np.percentile(to_p, 95))
            near = np.count_nonzero(to_t <= tolerances[c]) + np.count_nonzero(
                to_p <= tolerances[c])
            sdice[c] = near / (to_t.size + to_p.size)
    return hd95, sdice


def surface_dice(pred: np.ndarray, true: np.ndarray, spacing, tolerance=2.0) -> np.ndarray:
    """Surface Dice per class at ``tolerance`` mm (one value, or one per class)."""
    return surface_metrics(pred, true, spacing, tolerance)[1]


def _contours(mask: np.ndarray) -> np.ndarray:
    """Per slice (axis 0), the pixels with a 4-neighbour outside the slice's mask."""
    inner = ndimage.binary_erosion(mask, structure=np.array(
        [[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
         [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], bool), border_value=0)
    return mask & ~inner


def added_path_length(pred: np.ndarray, true: np.ndarray, spacing, axis: int = 0,
                      tolerance=2.0) -> tuple[np.ndarray, np.ndarray]:
    """(added path length in mm, relative added path length) per class, slice by slice
    across ``axis`` (the scan's slice axis) at ``tolerance`` mm (one value, or one per
    class)."""
    pred = np.moveaxis(pred.astype(bool), axis, 0)
    true = np.moveaxis(true.astype(bool), axis, 0)
    in_plane = tuple(float(s) for i, s in enumerate(spacing) if i != axis)
    pixel = float(np.mean(in_plane))
    tolerances = _tolerances(tolerance, pred.shape[-1])
    added, relative = np.zeros(pred.shape[-1]), np.full(pred.shape[-1], np.nan)
    for c in range(pred.shape[-1]):
        p, t = pred[..., c], true[..., c]
        if not t.any():
            continue  # nothing to draw (removing a false contour is not drawing)
        box = bounding_box(p | t)
        pc, tc = _contours(p[box]), _contours(t[box])
        reference = np.count_nonzero(tc)
        if pc.any():
            # One transform for every slice: the slices FAR apart, so the nearest predicted
            # contour pixel is always in the same slice (or FAR away where it has none).
            to_p = ndimage.distance_transform_edt(~pc, sampling=(FAR, *in_plane))[tc]
            missing = np.count_nonzero(to_p > tolerances[c])
        else:
            missing = reference
        added[c] = missing * pixel
        relative[c] = missing / reference
    return added, relative
