"""Overlays a clinician can look at: the slice in grey with each class's contour in colour.

Colours (Okabe-Ito, readable with colour-vision deficiency): large bowel orange, small bowel
sky blue, stomach bluish green; other data sets' classes take the palette in their order.
Used by ``predict --overlays`` (:class:`OverlayWriter`: one PNG per slice) and by training's
TensorBoard image panel (true | predicted, :func:`side_by_side`).
"""

from __future__ import annotations

import cv2
import numpy as np

from tf_medseg.inference.writers.base import entry

COLOURS = {"large_bowel": (230, 159, 0), "small_bowel": (86, 180, 233),
           "stomach": (0, 158, 115)}  # RGB
# Other data sets' classes, in their order: the Okabe-Ito palette, then more.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (255, 255, 255))


def colour(name: str, index: int) -> tuple[int, int, int]:
    """A class's RGB colour: UW-Madison's organs by name, other classes by position."""
    return COLOURS.get(name, PALETTE[index % len(PALETTE)])


def to_grey(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A slice (any intensities) as uint8 grey: divided by ``scale`` (the scan's intensity
    scale; 1 for images already normalised to [0, 1]) and clipped to [0, 1]."""
    grey = np.clip(np.asarray(image, np.float32) / max(float(scale), 1e-6), 0.0, 1.0)
    return (grey * 255 + 0.5).astype(np.uint8)


def contours(grey: np.ndarray, masks: np.ndarray, classes, thickness: int = 1
             ) -> np.ndarray:
    """(H, W) uint8 grey and (H, W, K) boolean masks -> (H, W, 3) uint8 RGB with each class's
    outline drawn in its colour."""
    rgb = np.repeat(grey[..., None], 3, axis=-1).copy()
    for c, name in enumerate(classes):
        mask = np.ascontiguousarray(masks[..., c], dtype=np.uint8)
        if not mask.any():
            continue
        outlines, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, outlines, -1, colour(name, c), thickness)
    return rgb


def side_by_side(image: np.ndarray, true: np.ndarray, pred: np.ndarray, classes
                 ) -> np.ndarray:
    """A normalised slice with the true contours (left) and the predicted ones (right), as one
    (H, 2W + 2, 3) uint8 image. (Z-scored slices are shown over their own range.)"""
    image = np.asarray(image, np.float32)
    if image.min() < 0:
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    grey = to_grey(image)
    gap = np.full((grey.shape[0], 2, 3), 255, np.uint8)
    return np.concatenate([contours(grey, true, classes), gap,
                           contours(grey, pred, classes)], axis=1)


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG (atomically: a file that exists is complete)."""
    from tf_medseg.files import atomic_png
    atomic_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


class OverlayWriter:
    """``--overlays DIR``: one PNG per slice of every case, its predicted contours over the
    slice in grey (the scan divided by its 99.5th percentile). Kaggle-layout scans name
    theirs by submission id (``ID.png``), other cases ``CASE_sliceNNNN.png`` (slices cut across
    the model's slice axis)."""

    def __init__(self, folder, contract):
        from pathlib import Path
        self.folder, self.contract = Path(folder), contract
        self.written: list[str] = []

    def write(self, case, image: np.ndarray, spacing, masks: np.ndarray) -> None:
        from tf_medseg.data import geometry
        self.folder.mkdir(parents=True, exist_ok=True)
        axis = geometry.slice_axis(image.shape, spacing, self.contract.slice_axis)
        first = np.moveaxis(image[..., 0], axis, 0)
        masks = np.moveaxis(masks, axis, 0)
        scale = float(np.percentile(first, 99.5)) or 1.0
        for i in range(len(first)):
            name = case.ids[i] if case.ids else f"{case.name}_slice{i:04d}"
            write_png(entry(self.folder, f"{name}.png"),
                      contours(to_grey(first[i], scale), masks[i], self.contract.classes))
            self.written.append(f"{name}.png")
