"""Read the cases of an indexed volume source (:mod:`~tf_medseg.data.sources.volume_index`):
images and label maps checked against their headers and the declared classes.

Volumes keep the file's voxel order and resolution (the pipeline cuts slices and resamples,
:mod:`tf_medseg.data.geometry`). Images are read as float32 (NIfTI scaling applied), labels as
integers. A 2D image is a volume of one slice: (rows, columns, 1).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tf_medseg.data import orientation
from tf_medseg.data.images import read_2d, require_regular
from tf_medseg.data.sources import volume_index
from tf_medseg.data.sources.volume_index import (  # noqa: F401  (read through this module too)
    ENDINGS,
    FORMATS,
    IMAGE_ENDINGS,
    NIFTI_ENDINGS,
    CaseFiles,
    SourceIndex,
    file_ending,
    fingerprint,
    read_json,
    strip_ending,
)
from tf_medseg.dicom import studies as dicom_studies
from tf_medseg.errors import DataError

AFFINE_TOLERANCE = 1e-3  # of the affines of an image's channels and its label map
MAX_PIXELS = 2 ** 31 // 4  # a larger volume could not be one float32 record


def index_source(fmt: str, root, group_pattern: str | None = None, roi_map=None,
                 modality: str | None = None) -> SourceIndex:
    """The checked index of a data set folder of any volume source (``dicom`` with its
    ``roi_map`` and ``modality``)."""
    if fmt == "dicom":
        return volume_index.index_source(fmt, root, group_pattern, indexer=lambda r: (
            dicom_studies.index_dicom(r, roi_map, group_pattern, modality)))
    return volume_index.index_source(fmt, root, group_pattern)


# ------------------------------------------------------------------------------------- reading

@dataclasses.dataclass
class Header:
    """What a volume's header says, without reading its voxels."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]  # mm per voxel axis
    affine: np.ndarray | None


def _load_nifti(path: Path):
    import nibabel as nib  # noqa: PLC0415 (only the NIfTI sources need it)
    require_regular(path)
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DataError(f"{path}: not a readable NIfTI file ({str(exc).splitlines()[0]})") \
            from None


def nifti_header(path: Path) -> Header:
    """The header of a NIfTI file (its voxels are not read); a volume beyond
    :data:`MAX_PIXELS` voxels is refused here, before anything is decompressed."""
    img = _load_nifti(path)
    zooms = tuple(float(z) for z in img.header.get_zooms())
    shape = tuple(int(n) for n in img.shape)
    if not all(math.isfinite(z) and z > 0 for z in zooms[:3]):
        raise DataError(f"{path}: the header's voxel spacing (pixdim) is "
                        f"{', '.join(f'{z:g}' for z in zooms[:3])}; spacings must be positive "
                        f"and finite: fix the header")
    if 0 in shape:
        raise DataError(f"{path}: an empty volume ({' x '.join(map(str, shape))} voxels)")
    if math.prod(shape) > MAX_PIXELS:
        raise DataError(f"{path}: {' x '.join(map(str, shape))} voxels, more than the "
                        f"{MAX_PIXELS:,} a case may have; not read")
    return Header(shape, zooms, np.asarray(img.affine))


def _nifti_data(path: Path, label: bool) -> np.ndarray:
    img = _load_nifti(path)
    try:
        if label:
            data = np.asanyarray(img.dataobj)
        else:
            data = img.get_fdata(dtype=np.float32)
    except Exception as exc:
        raise DataError(f"{path}: the voxel data cannot be read ({str(exc).splitlines()[0]})") \
            from None
    return np.asarray(data)


def _check_label(label: np.ndarray, path: Path, declared: frozenset[int]) -> np.ndarray:
    if label.ndim == 4:  # (X, Y, Z, 1): other 4-D maps were refused from the header
        label = label[..., 0]
    if not np.issubdtype(label.dtype, np.integer):
        if np.issubdtype(label.dtype, np.floating) and np.all(np.isfinite(label)) and \
                np.array_equal(label, np.round(label)):
            label = label.astype(np.int64)
        else:
            raise DataError(f"{path}: the label map holds non-integer values; a label map "
                            f"holds the class values of dataset.json's labels")
    values = np.unique(label)
    bad = [int(v) for v in values if int(v) not in declared]
    if bad:
        hint = (" (a binary mask saved as 0/255? declare the value 255 in labels)"
                if bad == [255] else "")
        raise DataError(f"{path}: label value {bad[0]} is not declared in labels (declared: "
                        f"{', '.join(str(v) for v in sorted(declared))}){hint}")
    return label.astype(np.uint16)


def _check_image(image: np.ndarray, path: Path) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if not np.all(np.isfinite(image)):
        raise DataError(f"{path}: the image holds NaN or infinite values, or values beyond "
                        f"float32's range (+-3.4e38, what records hold); fix or rescale them")
    return image


def _check_channels(case: CaseFiles, headers: Sequence[Header]) -> None:
    """The channel files of a case share one grid (shape and affine, from their headers)."""
    first = headers[0]
    for p, h in zip(case.images[1:], headers[1:]):
        if h.shape[:3] != first.shape[:3]:
            raise DataError(f"{p}: shape {h.shape} differs from {case.images[0].name}'s "
                            f"{first.shape}; the channels of case {case.case} must share "
                            f"one grid")
        if not np.allclose(h.affine, first.affine, atol=AFFINE_TOLERANCE):
            raise DataError(f"{p}: its affine differs from {case.images[0].name}'s by more "
                            f"than {AFFINE_TOLERANCE}; the channels of case {case.case} "
                            f"must share one grid")


def _check_label_header(path: Path, label: Header, image: Header) -> None:
    """A NIfTI label map is 2-D or 3-D and on its image's grid (shape and affine)."""
    shape = label.shape
    if len(shape) == 4 and shape[3] != 1 or len(shape) > 4:
        raise DataError(f"{path}: a {len(shape)}-D label map {shape}; label maps must be 2-D "
                        f"or 3-D integer volumes")
    if shape[:3] != image.shape[:3]:
        raise DataError(f"{path}: shape {shape[:3]} differs from the image's "
                        f"{image.shape[:3]}; image and label must share one grid")
    if not np.allclose(label.affine, image.affine, atol=AFFINE_TOLERANCE):
        raise DataError(f"{path}: its affine differs from the image's by more than "
                        f"{AFFINE_TOLERANCE}; image and label must share one grid")


def check_headers(index: SourceIndex) -> None:
    """Every NIfTI case's headers agree (channel shapes and affines, label shape, affine and
    dimensions), checked before a build reads any voxel: cheap (headers only), so that most
    bad cases stop the build before it starts. Reading a case checks the same."""
    if index.ending not in NIFTI_ENDINGS:
        return
    for case in index.cases:
        headers = [nifti_header(p) for p in case.images]
        _check_channels(case, headers)
        if case.label is not None:
            _check_label_header(case.label, nifti_header(case.label), headers[0])


def read_images(index: SourceIndex, case: CaseFiles) -> tuple[np.ndarray, Header]:
    """(image (X, Y, Z, C) float32 in file order, header) of a case; 2D images are (H, W, 1,
    C) with spacing 1. Checks channel shapes and values."""
    if index.ending in NIFTI_ENDINGS:
        headers = [nifti_header(p) for p in case.images]
        _check_channels(case, headers)
        arrays = [_check_image(_nifti_data(p, label=False), p) for p in case.images]
        if index.four_d:
            image = arrays[0]
            if image.ndim == 3 and index.labels.num_channels == 1:
                image = image[..., None]
            if image.ndim != 4 or image.shape[3] != index.labels.num_channels:
                raise DataError(f"{case.images[0]}: expected a 4-D image with "
                                f"{index.labels.num_channels} modalities on the last axis, got "
                                f"shape {image.shape}")
        else:
            for p, a in zip(case.images, arrays):
                if a.ndim == 4 and a.shape[3] == 1:
                    a.shape = a.shape[:3]
                if a.ndim not in (2, 3):
                    raise DataError(f"{p}: a {a.ndim}-D image {a.shape}; nnU-Net keeps one "
                                    f"channel per file (_0000, _0001, ...), each 2-D or 3-D")
            arrays = [a if a.ndim == 3 else a[:, :, None] for a in arrays]
            image = np.stack(arrays, axis=-1)
        header = headers[0]
        header.spacing = tuple(header.spacing[:3]) + (1.0,) * (3 - len(header.spacing[:3]))
        return image, header
    arrays = [_check_image(read_2d(p, label=False), p) for p in case.images]
    for p, a in zip(case.images[1:], arrays[1:]):
        if a.shape[:2] != arrays[0].shape[:2]:
            raise DataError(f"{p}: size {a.shape[:2]} differs from {case.images[0].name}'s "
                            f"{arrays[0].shape[:2]}; the channels of case {case.case} must "
                            f"share one size")
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    image = np.concatenate(arrays, axis=-1)[:, :, None, :]  # (H, W, 1, C)
    if image.shape[3] != index.labels.num_channels:
        raise DataError(f"{case.images[0]}: {image.shape[3]} channel(s), but the data set has "
                        f"{index.labels.num_channels}; all images must have the same channels")
    return image, Header(image.shape[:3], (1.0, 1.0, 1.0), None)


def read_label(index: SourceIndex, case: CaseFiles, header: Header,
               shape: tuple[int, ...]) -> np.ndarray:
    """The case's (X, Y, Z) uint16 mask in file order: its label map, or its per-class masks
    bit-packed (bit k = class k)."""
    if case.masks:
        packed = np.zeros(shape, np.uint16)
        for k, path in enumerate(case.masks):
            mask = read_2d(path, label=True)
            if mask.shape != shape[:2]:
                raise DataError(f"{path}: size {mask.shape} differs from its image's "
                                f"{shape[:2]}")
            packed[..., 0] |= (mask != 0).astype(np.uint16) << k
        return packed
    if index.ending in NIFTI_ENDINGS:
        _check_label_header(case.label, nifti_header(case.label), header)
        label = _check_label(_nifti_data(case.label, label=True), case.label, index.declared)
        return label[:, :, None] if label.ndim == 2 else label
    label = _check_label(read_2d(case.label, label=True), case.label, index.declared)
    if label.shape != tuple(shape[:2]):
        raise DataError(f"{case.label}: shape {label.shape} differs from the image's "
                        f"{tuple(shape[:2])}; image and label must share one grid")
    return label[:, :, None]


@dataclasses.dataclass
class Volume:
    """One case read and checked: what a record holds."""

    case: str
    group: str
    image: np.ndarray  # (X, Y, Z, C) float32, the file's voxel order
    label: np.ndarray  # (X, Y, Z) uint16: label map or bit-packed masks
    spacing: np.ndarray  # (3,) float32: mm along X, Y, Z
    axcodes: str | None = None  # NIfTI: the affine's axis codes ("LAS"); 2D images: None


def read_case(index: SourceIndex, case: CaseFiles) -> Volume:
    """Read and check one case (see the module docstring)."""
    if index.format == "dicom":
        image, label, spacing, codes = dicom_studies.read_case(index, case)
        if image.size > MAX_PIXELS:
            raise DataError(f"{case.images[0].parent}: {image.shape} is too large for one "
                            f"record")
        return Volume(case.case, case.group, image, label, spacing, codes)
    image, header = read_images(index, case)
    if image.size > MAX_PIXELS:
        raise DataError(f"{case.images[0]}: {image.shape} is too large for one record")
    label = read_label(index, case, header, image.shape[:3])
    codes = None if header.affine is None else orientation.axcodes(header.affine)
    return Volume(case.case, case.group, np.ascontiguousarray(image),
                  np.ascontiguousarray(label), np.asarray(header.spacing[:3], np.float32),
                  codes)
