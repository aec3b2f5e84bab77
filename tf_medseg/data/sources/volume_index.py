"""Index the field's data set formats: nnU-Net v2 raw, Medical Segmentation Decathlon, and
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
import os
import re
from pathlib import Path

from tf_medseg.data.images import read_2d, require_regular
from tf_medseg.data.labels import MAX_CLASSES, LabelSchema
from tf_medseg.data.sources.declarations import channel_names, classes_from_labels
from tf_medseg.errors import DataError

FORMATS = ("nnunet", "decathlon", "folder")
NIFTI_ENDINGS = (".nii.gz", ".nii")
IMAGE_ENDINGS = (".png", ".tif", ".tiff")
ENDINGS = NIFTI_ENDINGS + IMAGE_ENDINGS


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
    labels: LabelSchema
    declared: frozenset[int]  # label values the label maps may hold
    cases: tuple[CaseFiles, ...]
    ending: str
    four_d: bool = False  # decathlon: channels on the 4th image axis
    roi_map: tuple = ()  # dicom: ((class, (folded ROI name, ...)), ...)

    @property
    def groups(self) -> list[str]:
        return sorted({c.group for c in self.cases})


def file_ending(name: str) -> str | None:
    lower = name.lower()
    return next((e for e in ENDINGS if lower.endswith(e)), None)


def strip_ending(name: str, ending: str) -> str:
    return name[:-len(ending)]


def read_json(path: Path, what: str) -> dict | list:
    if not path.is_file():
        raise DataError(f"{path}: not found; {what}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to be a {path.name}; a data set's "
                        f"description is a few levels deep") from None


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
    channels = channel_names(meta["channel_names"], path, "channel_names")
    schema, declared = classes_from_labels(meta["labels"], path, nnunet=True,
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
        case = strip_ending(label.name, ending)
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
    if isinstance(n, str):
        raise DataError(f"{path}: numTraining is the string {n!r}; write it as a number "
                        f"({len(cases)}, without quotes)")
    if not isinstance(n, int) or isinstance(n, bool) or n != len(cases):
        raise DataError(f"{path}: numTraining is {n!r} but labelsTr/ holds {len(cases)} "
                        f"case(s); correct numTraining")
    schema = dataclasses.replace(schema, channels=channels)
    return SourceIndex("nnunet", root, schema, declared, tuple(cases), ending.lower())


def _unsupported_files(folder: Path, ending: str) -> None:
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if not p.name.endswith(ending):
            found = file_ending(p.name) or (p.suffix or p.name)
            raise DataError(f"{p}: unexpected file ending {found!r}; dataset.json's "
                            f"file_ending is {ending!r} (supported: {', '.join(ENDINGS)})")


def _inside(root: Path, rel, where: str) -> Path:
    """``rel`` as written in dataset.json must stay inside ``root`` (no ``..`` out of it, no
    absolute path). A file there that is a symlink is followed, as in the nnU-Net and folder
    sources: the case keeps the link's name, and nothing is ever written through it."""
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{where}: expected a path relative to {root}")
    path = Path(os.path.normpath(root / rel))
    if not path.is_relative_to(root):
        raise DataError(f"{where}: {rel!r} points outside the data set folder {root}; "
                        f"dataset.json names files inside it (a symlink inside it may point "
                        f"elsewhere)")
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
    channels = channel_names(meta["modality"], path, "modality")
    labels = meta["labels"]
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must map label values to names, e.g. "
                        f"{{\"0\": \"background\", \"1\": \"tumour\"}}")
    by_name = {}
    for value, name in labels.items():
        try:
            number = int(value)
        except ValueError:
            raise DataError(f"{path}: labels.{value}: the keys of 'labels' are label values "
                            f"(0, 1, ...)") from None
        if str(name).lower() == "background" and number != 0:
            raise DataError(f"{path}: labels.{value}: 'background' names label value 0 only; "
                            f"give label value {number} the name of its structure")
        if str(name) in by_name:
            raise DataError(f"{path}: labels.{value}: the name {name!r} is also label value "
                            f"{by_name[str(name)]}; every label value needs its own name")
        by_name[str(name)] = number
    schema, declared = classes_from_labels(by_name, path, nnunet=False)
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
        if image.resolve() == label.resolve():
            raise DataError(f"{where}: the image and the label are the same file "
                            f"({item['image']}); the label is the structure's label map")
        for p in (image, label):
            if file_ending(p.name) not in NIFTI_ENDINGS:
                raise DataError(f"{p}: unsupported file ending; Decathlon images and labels "
                                f"are NIfTI (.nii.gz or .nii)")
            if not p.is_file():
                raise DataError(f"{p}: missing ({where} names it)")
        case = strip_ending(image.name, file_ending(image.name))
        if case in seen:
            raise DataError(f"{where}: case {case} is listed twice")
        seen.add(case)
        cases.append(CaseFiles(case, _group_of(case, group_pattern, image), (image,), label))
    schema = dataclasses.replace(schema, channels=channels)
    return SourceIndex("decathlon", root, schema, declared, tuple(cases), ".nii.gz",
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
        if not labels or not all(isinstance(n, str) and n.strip(".") and "/" not in n
                                 and "\\" not in n for n in labels):
            raise DataError(f"{path}: a list of class names (one masks/CLASS/ folder each) "
                            f"expected")
        if len(set(labels)) != len(labels) or len(labels) > MAX_CLASSES:
            raise DataError(f"{path}: class names must be unique, at most {MAX_CLASSES}")
        for name in labels:
            if not (masks_dir / name).is_dir():
                raise DataError(f"{masks_dir / name}: not found; labels.json lists class "
                                f"{name!r}, whose masks go in masks/{name}/")
        schema = LabelSchema(classes=tuple(labels), exclusive=False, channels=(),
                             metric="volume", encoding="bits")
        declared = frozenset()
    elif isinstance(labels, dict):
        schema, declared = classes_from_labels(labels, path, nnunet=False)
    else:
        raise DataError(f"{path}: expected {{\"background\": 0, \"CLASS\": 1, ...}} (label "
                        f"maps) or [\"CLASS\", ...] (one mask folder per class)")
    files = sorted(p for p in images_dir.iterdir() if not p.is_dir()
                   and not p.name.startswith("."))
    if not files:
        raise DataError(f"{images_dir}: no images")
    cases = []
    for image in files:
        ending = file_ending(image.name)
        if ending not in IMAGE_ENDINGS:
            raise DataError(f"{image}: unsupported file ending; images/ holds 2D "
                            f"{', '.join(IMAGE_ENDINGS)} files")
        name = strip_ending(image.name, ending)
        if per_class:
            masks = tuple(_mask_file(masks_dir / c, name, image) for c in schema.classes)
            label = None
        else:
            masks, label = (), _mask_file(masks_dir, name, image)
        cases.append(CaseFiles(name, _group_of(name, group_pattern, image), (image,), label,
                               masks))
    by_case: dict[str, Path] = {}
    for case in cases:
        if case.case in by_case:
            raise DataError(f"{by_case[case.case]} and {case.images[0].name}: two images of "
                            f"one name {case.case!r} with different endings; keep one of them")
        by_case[case.case] = case.images[0]
    first = read_2d(cases[0].images[0], label=False)
    channels = ("R", "G", "B") if first.ndim == 3 else ("grey",)
    schema = dataclasses.replace(schema, channels=channels)
    if not per_class:
        stray = sorted(p.name for p in masks_dir.iterdir() if p.is_file()
                       and not p.name.startswith(".") and file_ending(p.name)
                       and strip_ending(p.name, file_ending(p.name)) not in {c.case for c in cases})
        if stray:
            raise DataError(f"{masks_dir / stray[0]}: a mask without its image in images/")
    return SourceIndex("folder", root, schema, declared, tuple(cases), ".png")


def _mask_file(folder: Path, name: str, image: Path) -> Path:
    found = [folder / (name + e) for e in IMAGE_ENDINGS if (folder / (name + e)).is_file()]
    if not found:
        raise DataError(f"{image}: no mask {folder / (name + '.png')} for this image")
    if len(found) > 1:
        raise DataError(f"{found[0]} and {found[1].name}: two masks for the image "
                        f"{image.name}; keep one of them")
    return found[0]


def index_source(fmt: str, root: str | Path, group_pattern: str | None = None,
                 indexer=None) -> SourceIndex:
    """The checked index of a data set folder of ``fmt`` (or of ``indexer(root)``: the
    dicom source, :func:`tf_medseg.data.sources.volumes.index_source`)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root}: not a folder")
    root = root.resolve()
    if indexer is not None:
        index = indexer(root)
    else:
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
                         "labels": index.labels.to_dict(), "options": options},
                        sort_keys=True).encode())
    files = [index.root / "dataset.json", index.root / "labels.json"]
    for c in index.cases:
        files += [*c.images, *([c.label] if c.label else []), *c.masks]
    for path in files:
        if path.is_file():
            st = path.stat()
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
