"""Read the field's data set formats: nnU-Net v2 raw, Medical Segmentation Decathlon, and
folders of 2D image/mask pairs. Everything is checked; bad input is a one-line
:class:`~tf_medseg.errors.DataError` naming the file, case or key.

nnU-Net v2 raw (``data.source: nnunet``, ``data.root`` = ``DatasetXXX_Name/``)::

    dataset.json            channel_names {"0": "T2", ...}, labels {"background": 0, "liver": 1,
                            ...} (a list value is a region: overlapping classes), numTraining,
                            file_ending (.nii.gz, .nii, .png, .tif)
    imagesTr/CASE_0000.nii.gz   channel 0 of CASE (_0001 channel 1, ...)
    labelsTr/CASE.nii.gz        its integer label map

Medical Segmentation Decathlon (``decathlon``)::

    dataset.json            modality {"0": "FLAIR", ...}, labels {"0": "background", "1": ...},
                            training [{"image": "./imagesTr/X.nii.gz", "label": "./labelsTr/
                            X.nii.gz"}, ...]; several modalities are the 4th axis of the image

Image folder (``folder``)::

    labels.json             {"background": 0, "lesion": 1, ...} for label maps, or a list of
                            class names for one binary mask per class
    images/NAME.png         8- or 16-bit grey, or colour (three channels R, G, B; as the first
                            image is, all are)
    masks/NAME.png          its integer label map, or
    masks/CLASS/NAME.png    one binary mask per class (any non-zero value is the class)

Volumes keep the file's voxel order. Training slices are cut across ``data.slice_axis``: a
volume (X, Y, Z) cut across axis 2 becomes (Z, X, Y). Images are read as float32 (NIfTI scaling
applied), labels as integers. A 2D image is a volume of one slice.

Which cases share a patient (for folds): ``data.group_pattern``, a regular expression on the
case name; its first group (or the whole match) names the patient.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from tf_medseg.data.task import MAX_CLASSES, Task
from tf_medseg.data.images import png_header, require_regular
from tf_medseg.errors import DataError

FORMATS = ("nnunet", "decathlon", "folder")
NIFTI_ENDINGS = (".nii.gz", ".nii")
IMAGE_ENDINGS = (".png", ".tif", ".tiff")
ENDINGS = NIFTI_ENDINGS + IMAGE_ENDINGS
AFFINE_TOLERANCE = 1e-3
MAX_PIXELS = 2 ** 31 // 4  # a larger volume could not be one float32 record


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """The files of one case."""

    case: str
    group: str  # the patient: cases of one group share a fold
    images: tuple[Path, ...]  # one per channel, or one 4-D file (decathlon)
    label: Path | None = None  # integer label map
    masks: tuple[Path, ...] = ()  # one binary mask per class (folder, per-class masks)


@dataclasses.dataclass(frozen=True)
class SourceIndex:
    """A checked data set folder: what it declares and the files of every case."""

    format: str
    root: Path
    task: Task
    declared: frozenset[int]  # label values the label maps may hold
    cases: tuple[CaseFiles, ...]
    ending: str
    four_d: bool = False  # decathlon: channels on the 4th image axis

    @property
    def groups(self) -> list[str]:
        return sorted({c.group for c in self.cases})


def _ending(name: str) -> str | None:
    lower = name.lower()
    return next((e for e in ENDINGS if lower.endswith(e)), None)


def _stem(name: str, ending: str) -> str:
    return name[:-len(ending)]


def read_json(path: Path, what: str) -> dict | list:
    if not path.is_file():
        raise DataError(f"{path}: not found; {what}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _group_of(name: str, pattern: str | None, where: Path) -> str:
    if not pattern:
        return name
    match = re.search(pattern, name)
    if match is None:
        raise DataError(f"{where}: data.group_pattern {pattern!r} does not match the case "
                        f"name {name!r}; change the pattern so that it finds the patient in "
                        f"every name")
    group = match.group(1) if match.groups() else match.group(0)
    if not group:
        raise DataError(f"{where}: data.group_pattern {pattern!r} finds an empty patient name "
                        f"in {name!r}")
    return group


def _int_label(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
        raise DataError(f"{where}: label values must be whole numbers from 0 to 65535, got "
                        f"{value!r}")
    return value


def _classes_from_labels(labels: dict, path: Path, nnunet: bool,
                         regions_order=None) -> tuple[Task, frozenset[int]]:
    """(partial task, declared values) of an nnU-Net ``labels`` mapping name -> value(s)."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: 'labels' must be a mapping of class names to label values")
    names, values, declared = [], [], {0}
    region = False
    for name, value in labels.items():
        where = f"{path}: labels.{name}"
        if isinstance(value, list):
            if not nnunet or not value:
                raise DataError(f"{where}: a list of label values (a region) needs at least "
                                f"one value")
            vals = tuple(_int_label(v, where) for v in value)
            region = True
        else:
            vals = (_int_label(value, where),)
        if name == "ignore":
            raise DataError(f"{where}: nnU-Net's ignore label is not supported; relabel those "
                            f"voxels or leave them out")
        if vals == (0,):
            continue  # background
        if 0 in vals:
            raise DataError(f"{where}: value 0 is the background and cannot be part of a "
                            f"class")
        names.append(str(name))
        values.append(vals)
        declared.update(vals)
    if not names:
        raise DataError(f"{path}: 'labels' declares no class besides the background")
    if not region and len({v[0] for v in values}) != len(values):
        raise DataError(f"{path}: two classes in 'labels' share a label value")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} classes; tf_medseg supports up to {MAX_CLASSES}")
    paint = tuple(v[0] for v in values) if not region else tuple(
        int(x) for x in regions_order) if regions_order else tuple(range(1, len(names) + 1))
    if region and len(paint) != len(names):
        raise DataError(f"{path}: regions_class_order has {len(paint)} entries for "
                        f"{len(names)} regions")
    task = Task(classes=tuple(names), exclusive=not region, encoding="labels",
                values=tuple(values), paint=paint, kind="volumes")
    return task, frozenset(declared)


def _channel_names(mapping, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{path}: '{key}' must be a mapping of channel numbers to names, "
                        f"e.g. {{\"0\": \"T2\"}}")
    try:
        order = sorted(int(k) for k in mapping)
    except ValueError:
        raise DataError(f"{path}: the keys of '{key}' must be channel numbers 0, 1, ...") \
            from None
    if order != list(range(len(order))):
        raise DataError(f"{path}: '{key}' must number the channels 0 to {len(order) - 1} "
                        f"without gaps, got {sorted(mapping)}")
    return tuple(str(mapping[str(k)] if str(k) in mapping else mapping[k]) for k in order)


def index_nnunet(root: Path, group_pattern: str | None = None) -> SourceIndex:
    """Check an nnU-Net v2 raw folder and list its cases."""
    path = root / "dataset.json"
    meta = read_json(path, "an nnU-Net v2 raw folder (DatasetXXX_Name/) holds dataset.json")
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in meta:
            raise DataError(f"{path}: '{key}' missing (nnU-Net v2 needs channel_names, "
                            f"labels, numTraining and file_ending)")
    channels = _channel_names(meta["channel_names"], path, "channel_names")
    task, declared = _classes_from_labels(meta["labels"], path, nnunet=True,
                                          regions_order=meta.get("regions_class_order"))
    ending = meta["file_ending"]
    if not isinstance(ending, str) or ending.lower() not in ENDINGS:
        raise DataError(f"{path}: file_ending {ending!r} is not supported (tf_medseg reads "
                        f"{', '.join(ENDINGS)})")
    for folder in ("imagesTr", "labelsTr"):
        if not (root / folder).is_dir():
            raise DataError(f"{root / folder}: not found (an nnU-Net v2 raw folder holds "
                            f"imagesTr/ and labelsTr/)")
    _unsupported_files(root / "labelsTr", ending)
    _unsupported_files(root / "imagesTr", ending)
    labels = sorted(p for p in (root / "labelsTr").iterdir() if p.name.endswith(ending))
    cases = []
    for label in labels:
        case = _stem(label.name, ending)
        images = tuple(root / "imagesTr" / f"{case}_{k:04d}{ending}" for k in range(len(channels)))
        for k, image in enumerate(images):
            if not image.is_file():
                raise DataError(f"{image}: missing: case {case} needs one file per channel "
                                f"({channels[k]} is channel {k}, file {image.name})")
        cases.append(CaseFiles(case, _group_of(case, group_pattern, label), images, label))
    known = {f"{c.case}_{k:04d}{ending}" for c in cases for k in range(len(channels))}
    strays = sorted(p.name for p in (root / "imagesTr").iterdir()
                    if p.name.endswith(ending) and p.name not in known)
    if strays:
        raise DataError(f"{root / 'imagesTr' / strays[0]}: no label map in labelsTr/ for this "
                        f"image (or a channel number beyond channel_names)")
    n = meta["numTraining"]
    if not isinstance(n, int) or isinstance(n, bool) or n != len(cases):
        raise DataError(f"{path}: numTraining is {n!r} but labelsTr/ holds {len(cases)} "
                        f"case(s); correct numTraining")
    task = dataclasses.replace(task, channels=channels)
    return SourceIndex("nnunet", root, task, declared, tuple(cases), ending.lower())


def _unsupported_files(folder: Path, ending: str) -> None:
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if not p.name.endswith(ending):
            found = _ending(p.name) or (p.suffix or p.name)
            raise DataError(f"{p}: unexpected file ending {found!r}; dataset.json's "
                            f"file_ending is {ending!r} (supported: {', '.join(ENDINGS)})")


def _inside(root: Path, rel, where: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: expected a path relative to {root}")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"{where}: {rel!r} points outside the data set folder {root}")
    return path


def index_decathlon(root: Path, group_pattern: str | None = None) -> SourceIndex:
    """Check a Medical Segmentation Decathlon folder and list its training cases."""
    path = root / "dataset.json"
    meta = read_json(path, "a Decathlon task folder (TaskXX_Name/) holds dataset.json")
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise DataError(f"{path}: '{key}' missing (a Decathlon dataset.json has modality, "
                            f"labels and training)")
    channels = _channel_names(meta["modality"], path, "modality")
    labels = meta["labels"]
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must map label values to names, e.g. "
                        f"{{\"0\": \"background\", \"1\": \"tumour\"}}")
    by_name = {}
    for value, name in labels.items():
        try:
            by_name[str(name)] = int(value)
        except ValueError:
            raise DataError(f"{path}: labels.{value}: the keys of 'labels' are label values "
                            f"(0, 1, ...)") from None
    task, declared = _classes_from_labels(by_name, path, nnunet=False)
    training = meta["training"]
    if not isinstance(training, list) or not training:
        raise DataError(f"{path}: 'training' must be a non-empty list of "
                        f"{{\"image\": ..., \"label\": ...}}")
    cases, seen = [], set()
    for i, item in enumerate(training):
        where = f"{path}: training[{i}]"
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise DataError(f"{where}: expected {{\"image\": PATH, \"label\": PATH}}")
        image = _inside(root, item["image"], f"{where}.image")
        label = _inside(root, item["label"], f"{where}.label")
        for p in (image, label):
            if _ending(p.name) not in NIFTI_ENDINGS:
                raise DataError(f"{p}: unsupported file ending; Decathlon images and labels "
                                f"are NIfTI (.nii.gz or .nii)")
            if not p.is_file():
                raise DataError(f"{p}: missing ({where} names it)")
        case = _stem(image.name, _ending(image.name))
        if case in seen:
            raise DataError(f"{where}: case {case} is listed twice")
        seen.add(case)
        cases.append(CaseFiles(case, _group_of(case, group_pattern, image), (image,), label))
    task = dataclasses.replace(task, channels=channels)
    return SourceIndex("decathlon", root, task, declared, tuple(cases), ".nii.gz",
                       four_d=len(channels) > 1)


def index_folder(root: Path, group_pattern: str | None = None) -> SourceIndex:
    """Check an image/mask folder and list its pairs."""
    path = root / "labels.json"
    labels = read_json(path, "an image folder holds labels.json naming its classes")
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: not found (an image folder holds images/, masks/ and "
                            f"labels.json)")
    per_class = isinstance(labels, list)
    if per_class:
        if not labels or not all(isinstance(n, str) and n and "/" not in n for n in labels):
            raise DataError(f"{path}: a list of class names (one masks/CLASS/ folder each) "
                            f"expected")
        if len(set(labels)) != len(labels) or len(labels) > MAX_CLASSES:
            raise DataError(f"{path}: class names must be unique, at most {MAX_CLASSES}")
        for name in labels:
            if not (masks_dir / name).is_dir():
                raise DataError(f"{masks_dir / name}: not found; labels.json lists class "
                                f"{name!r}, whose masks go in masks/{name}/")
        task = Task(classes=tuple(labels), exclusive=False, encoding="bits", kind="volumes")
        declared = frozenset()
    elif isinstance(labels, dict):
        task, declared = _classes_from_labels(labels, path, nnunet=False)
    else:
        raise DataError(f"{path}: expected {{\"background\": 0, \"CLASS\": 1, ...}} (label "
                        f"maps) or [\"CLASS\", ...] (one mask folder per class)")
    files = sorted(p for p in images_dir.iterdir() if not p.is_dir()
                   and not p.name.startswith("."))
    if not files:
        raise DataError(f"{images_dir}: no images")
    cases = []
    for image in files:
        ending = _ending(image.name)
        if ending not in IMAGE_ENDINGS:
            raise DataError(f"{image}: unsupported file ending; images/ holds 2D "
                            f"{', '.join(IMAGE_ENDINGS)} files")
        name = _stem(image.name, ending)
        if per_class:
            masks = tuple(_mask_file(masks_dir / c, name, image) for c in task.classes)
            label = None
        else:
            masks, label = (), _mask_file(masks_dir, name, image)
        cases.append(CaseFiles(name, _group_of(name, group_pattern, image), (image,), label,
                               masks))
    if len({c.case for c in cases}) != len(cases):
        raise DataError(f"{images_dir}: two images share a name with different endings")
    first = _read_2d(cases[0].images[0], label=False)
    channels = ("R", "G", "B") if first.ndim == 3 else ("grey",)
    task = dataclasses.replace(task, channels=channels)
    if not per_class:
        stray = sorted(p.name for p in masks_dir.iterdir() if p.is_file()
                       and not p.name.startswith(".") and _ending(p.name)
                       and _stem(p.name, _ending(p.name)) not in {c.case for c in cases})
        if stray:
            raise DataError(f"{masks_dir / stray[0]}: a mask without its image in images/")
    return SourceIndex("folder", root, task, declared, tuple(cases), ".png")


def _mask_file(folder: Path, name: str, image: Path) -> Path:
    for ending in IMAGE_ENDINGS:
        if (folder / (name + ending)).is_file():
            return folder / (name + ending)
    raise DataError(f"{image}: no mask {folder / (name + '.png')} for this image")


def index_source(fmt: str, root: str | Path, group_pattern: str | None = None) -> SourceIndex:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root}: not a folder")
    root = root.resolve()
    index = {"nnunet": index_nnunet, "decathlon": index_decathlon,
             "folder": index_folder}[fmt](root, group_pattern)
    if not index.cases:
        raise DataError(f"{root}: no cases found")
    for case in index.cases:  # never open a FIFO or device named like a case
        for path in (*case.images, *([case.label] if case.label else []), *case.masks):
            require_regular(path)
    return index


def fingerprint(index: SourceIndex, options: dict) -> str:
    """A digest of the files (names, sizes, modification times), what the data set declares
    and the reading options: records built from other files or options are never reused."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": index.format, "root": str(index.root.resolve()),
                         "task": index.task.to_dict(), "options": options},
                        sort_keys=True).encode())
    files = [index.root / "dataset.json", index.root / "labels.json"]
    for c in index.cases:
        files += [*c.images, *([c.label] if c.label else []), *c.masks]
    for path in files:
        if path.is_file():
            st = path.stat()
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


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


def _read_2d(path: Path, label: bool) -> np.ndarray:
    import cv2  # noqa: PLC0415
    if path.name.lower().endswith(".png"):
        png_header(path)  # within the pixel limit, before decoding (TIFFs: OpenCV's limit)
    else:
        require_regular(path)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DataError(f"{path}: not a readable image")
    if data.ndim == 3:
        if data.shape[2] == 4:
            data = data[..., :3]
        grey = all(np.array_equal(data[..., 0], data[..., k]) for k in (1, 2))
        if grey:
            data = data[..., 0]
        elif label:
            raise DataError(f"{path}: a colour image; masks must be single-channel integer "
                            f"label maps")
        else:
            data = data[..., ::-1]  # BGR -> RGB
    if label and not np.issubdtype(data.dtype, np.integer):
        raise DataError(f"{path}: the mask is {data.dtype}; masks must hold whole numbers")
    return data


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
        raise DataError(f"{path}: the image holds NaN or infinite values; fix or remove them")
    return image


def slice_axis_of(spacing: Sequence[float], slice_axis) -> int:
    """The axis training slices are cut across: the configured one, or (``auto``) the one
    with the coarsest spacing, the last on a tie."""
    if slice_axis != "auto":
        return int(slice_axis)
    spacing = list(spacing[:3])
    coarsest = max(spacing)
    return max(i for i, s in enumerate(spacing) if s == coarsest)


def resample_size(shape: Sequence[int], spacing: Sequence[float],
                  target: Sequence[float] | None) -> tuple[int, int]:
    """(rows, cols) of a slice of ``shape`` (rows, cols) at ``spacing`` resampled to
    ``target`` mm (unchanged without a target)."""
    if not target:
        return int(shape[0]), int(shape[1])
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample_slices(volume: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """(D, H, W[, C]) -> (D, h, w[, C]) in-plane: linear for images, nearest for labels."""
    import cv2  # noqa: PLC0415
    if volume.shape[1:3] == tuple(size):
        return volume
    method = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = [cv2.resize(s, (size[1], size[0]), interpolation=method) for s in volume]
    out = np.stack(out)
    if volume.ndim == 4 and out.ndim == 3:  # cv2 drops a single channel
        out = out[..., None]
    return out.astype(volume.dtype)


def case_axis(shape: Sequence[int], spacing: Sequence[float], slice_axis) -> int:
    """The file axis a case of (X, Y, Z[, C]) ``shape`` is cut across: 2 for a single-slice
    (2D) image, else :func:`slice_axis_of`. Training and predict both use it."""
    return 2 if shape[2] == 1 else slice_axis_of(spacing, slice_axis)


def cut(volume: np.ndarray, axis: int, spacing: Sequence[float],
        target: Sequence[float] | None, nearest: bool) -> tuple[np.ndarray, list[float]]:
    """(slices (D, H, W[, C]), their spacing [across, rows, columns] in mm) of a volume in
    file order with voxel ``spacing``, cut across ``axis`` and resampled in-plane to
    ``target`` mm if given (linear, or nearest for labels). Training and predict both use
    it."""
    slices = to_slices(volume, axis)
    sp = [spacing[axis]] + [s for i, s in enumerate(spacing[:3]) if i != axis]
    if target:
        slices = resample_slices(slices, resample_size(slices.shape[1:3], sp[1:], target),
                                 nearest)
        sp = [sp[0], *target]
    return slices, sp


def to_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """(X, Y, Z[, C]) in file order -> (D, H, W[, C]) with D along ``axis`` (the other two
    axes keep their order)."""
    return np.moveaxis(volume, axis, 0)


def from_slices(volume: np.ndarray, axis: int) -> np.ndarray:
    """The inverse of :func:`to_slices`."""
    return np.moveaxis(volume, 0, axis)


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
            if image.ndim == 3 and index.task.num_channels == 1:
                image = image[..., None]
            if image.ndim != 4 or image.shape[3] != index.task.num_channels:
                raise DataError(f"{case.images[0]}: expected a 4-D image with "
                                f"{index.task.num_channels} modalities on the last axis, got "
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
    arrays = [_check_image(_read_2d(p, label=False), p) for p in case.images]
    for p, a in zip(case.images[1:], arrays[1:]):
        if a.shape[:2] != arrays[0].shape[:2]:
            raise DataError(f"{p}: size {a.shape[:2]} differs from {case.images[0].name}'s "
                            f"{arrays[0].shape[:2]}; the channels of case {case.case} must "
                            f"share one size")
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    image = np.concatenate(arrays, axis=-1)[:, :, None, :]  # (H, W, 1, C)
    if image.shape[3] != index.task.num_channels:
        raise DataError(f"{case.images[0]}: {image.shape[3]} channel(s), but the data set has "
                        f"{index.task.num_channels}; all images must have the same channels")
    return image, Header(image.shape[:3], (1.0, 1.0, 1.0), None)


def read_label(index: SourceIndex, case: CaseFiles, header: Header,
               shape: tuple[int, ...]) -> np.ndarray:
    """The case's (X, Y, Z) uint16 mask in file order: its label map, or its per-class masks
    bit-packed (bit k = class k)."""
    if case.masks:
        packed = np.zeros(shape, np.uint16)
        for k, path in enumerate(case.masks):
            mask = _read_2d(path, label=True)
            if mask.shape != shape[:2]:
                raise DataError(f"{path}: size {mask.shape} differs from its image's "
                                f"{shape[:2]}")
            packed[..., 0] |= (mask != 0).astype(np.uint16) << k
        return packed
    if index.ending in NIFTI_ENDINGS:
        _check_label_header(case.label, nifti_header(case.label), header)
        label = _check_label(_nifti_data(case.label, label=True), case.label, index.declared)
        return label[:, :, None] if label.ndim == 2 else label
    label = _check_label(_read_2d(case.label, label=True), case.label, index.declared)
    if label.shape != tuple(shape[:2]):
        raise DataError(f"{case.label}: shape {label.shape} differs from the image's "
                        f"{tuple(shape[:2])}; image and label must share one grid")
    return label[:, :, None]


@dataclasses.dataclass
class Volume:
    """One case read and cut into slices: what a record holds."""

    case: str
    group: str
    image: np.ndarray  # (D, H, W, C) float32
    label: np.ndarray  # (D, H, W) uint16: label map or bit-packed masks
    spacing: np.ndarray  # (3,) float32: mm across slices, rows, columns
    axis: int  # the file axis the slices were cut across


def read_case(index: SourceIndex, case: CaseFiles, slice_axis="auto",
              spacing: Sequence[float] | None = None) -> Volume:
    """Read, check and slice one case (see the module docstring)."""
    image, header = read_images(index, case)
    if image.size > MAX_PIXELS:
        raise DataError(f"{case.images[0]}: {image.shape} is too large for one record")
    label = read_label(index, case, header, image.shape[:3])
    axis = case_axis(image.shape, header.spacing, slice_axis)
    image, sp = cut(image, axis, header.spacing, spacing, nearest=False)
    label, _ = cut(label, axis, header.spacing, spacing, nearest=True)
    return Volume(case.case, case.group, np.ascontiguousarray(image),
                  np.ascontiguousarray(label), np.asarray(sp, np.float32), axis)


def class_masks(label: np.ndarray, task: Task) -> np.ndarray:
    """(..., K) boolean masks of a stored label (label map or bit-packed)."""
    if task.encoding == "bits":
        return np.stack([(label >> k) & 1 > 0 for k in range(task.num_classes)], axis=-1)
    return np.stack([np.isin(label, v) for v in task.values], axis=-1)


def foreground_sample(volume: Volume, task: Task, size: int = 10000) -> np.ndarray:
    """(n, C) intensities of up to ``size`` foreground voxels, drawn with a seed made from
    the case name (the same sample in every build), for the data set's CT statistics."""
    fg = class_masks(volume.label, task).any(axis=-1)
    values = volume.image[fg]
    if len(values) > size:
        seed = int.from_bytes(hashlib.sha256(volume.case.encode()).digest()[:4], "little")
        values = values[np.sort(np.random.default_rng(seed).choice(len(values), size,
                                                                    replace=False))]
    return values
