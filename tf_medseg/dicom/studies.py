"""``data.source: dicom``: a clinic's archive as a data set. ``data.root`` is a folder (any
depth, any file names) of studies, each an image series (MR or CT, :mod:`tf_medseg.dicom.reader`)
with an RT Structure Set or a DICOM SEG that references it.

Classes are the keys of ``data.roi_map``, each mapped from one or several ROI (or segment) names
matched without regard to case or surrounding spaces, e.g. ``{stomach: [Stomach, STOMACH_1]}``.
Structures are rasterised onto the image grid (:func:`tf_medseg.dicom.rtstruct.
rasterize_structure`: pixel centres inside the contours, holes by the even-odd rule); a study
without a ROI of a class counts as empty there, with a warning; ROIs that overlap give
overlapping classes (bit-packed masks, one sigmoid per class). A case is a series with its
structure set, stored as (slices, rows, columns) with the series' spacing and its orientation
noted (the axis codes its predictions are turned to); a case's patient is its PatientID (or
``data.group_pattern`` over the case name), so a patient's studies share a fold.

Image series without a structure set, structure sets of a series that is not there and what is
not an image stack are skipped with a note; two structure sets of one series stop the build
(keep one).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from tf_medseg.data.labels import LabelSchema
from tf_medseg.data.sources.volume_index import CaseFiles, SourceIndex, _group_of
from tf_medseg.dicom import reader, tg263
from tf_medseg.errors import ConfigError, DataError
from tf_medseg.files import plain_name

STRUCTURES = ("RTSTRUCT", "SEG")
SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def fold(name: str) -> str:
    """A ROI or segment name as data.roi_map matches it (:func:`tf_medseg.dicom.tg263.key`):
    case, spaces, underscores and hyphens left out, laterality and the local names of TG-263
    structures read as TG-263's (``Bowel_Small``, ``small bowel`` and ``BOWEL-SMALL`` are one
    name; ``Parotid_L``, ``L Parotid`` and ``Left parotid gland`` another)."""
    return tg263.key(name)
MAX_BITS = 16  # classes bit-packed in a uint16 mask


def roi_names(roi_map) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``data.roi_map`` as ((class, (name, ...)), ...) with names folded (case, spaces)."""
    if not roi_map:
        raise ConfigError("data.roi_map: data.source dicom needs it: the ROI names of each "
                          "class, e.g. {stomach: [Stomach, STOMACH_1], liver: Liver}")
    if len(roi_map) > MAX_BITS:
        raise ConfigError(f"data.roi_map: {len(roi_map)} classes; at most {MAX_BITS}")
    out = []
    for cls, names in dict(roi_map).items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, (list, tuple)) or not names or not all(
                isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"data.roi_map.{cls}: expected a ROI name or a list of them, got "
                              f"{names!r}")
        out.append((str(cls), tuple(fold(n) for n in names)))
    return tuple(out)


def _referenced_series(ds) -> str | None:
    """The SeriesInstanceUID a structure set (or SEG) references."""
    try:
        if ds.Modality == "RTSTRUCT":
            study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
            return str(study.RTReferencedSeriesSequence[0].SeriesInstanceUID)
        return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError, KeyError):
        return None


def _series_by_images(ds, series_of_image: dict) -> str | None:
    """The series whose images most of a structure set's contours (header ``ds``) reference
    (its ContourImageSequence), for a file that names no series."""
    import collections
    try:
        refs = [str(image.ReferencedSOPInstanceUID) for item in ds.get("ROIContourSequence", [])
                for contour in item.get("ContourSequence", [])
                for image in contour.get("ContourImageSequence", [])]
    except (AttributeError, TypeError):  # a damaged file is reported where it is read
        return None
    votes = collections.Counter(series_of_image[r] for r in refs if r in series_of_image)
    return votes.most_common(1)[0][0] if votes else None


def _other_patient(ds, series: reader.DicomSeries) -> str | None:
    """Why the structure set whose header is ``ds`` does not belong to ``series`` (another
    patient, or another frame of reference), or None."""
    ours, theirs = str(ds.get("PatientID", "") or ""), str(series.header.get("PatientID", "")
                                                           or "")
    if ours and theirs and ours != theirs:
        return f"it is of patient {ours!r}, the series of patient {theirs!r}"
    frames = {str(r.FrameOfReferenceUID) for r in ds.get("ReferencedFrameOfReferenceSequence",
                                                         []) if "FrameOfReferenceUID" in r}
    frames |= {str(r.ReferencedFrameOfReferenceUID) for r in ds.get("StructureSetROISequence",
                                                                    [])
               if r.get("ReferencedFrameOfReferenceUID")}
    if frames and series.frame_of_reference and series.frame_of_reference not in frames:
        return (f"its frame of reference {sorted(frames)[0]} is not the series' "
                f"{series.frame_of_reference}")
    return None


def index_dicom(root: Path, roi_map, group_pattern: str | None = None,
                modality: str | None = None) -> SourceIndex:
    """Check a folder of DICOM studies and list its cases (see the module docstring): the
    series of ``modality`` where it is given (``data.modality``), else those of the one
    modality the paired series have."""
    mapping = roi_names(roi_map)
    series, notes = reader.find_series(root)
    notes = [n for n in notes if not any(f"({k})" in n for k in STRUCTURES)]
    structures: dict[str, list[Path]] = {}
    series_of_image = {f.sop_uid: s.uid for s in series for f in s.frames}
    headers = {}  # each structure file's header, read once
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        header = reader._header(path)
        if header is None or header.get("Modality") not in STRUCTURES:
            continue
        ref = _referenced_series(header)
        if ref is None:  # a Varian export without ReferencedFrameOfReferenceSequence
            ref = _series_by_images(header, series_of_image)
            if ref is not None:
                notes.append(f"{path}: a {header.Modality} that names no series: paired with "
                             f"series {ref} by the images its contours reference")
        if ref is None:
            notes.append(f"{path}: a {header.Modality} that references no series: skipped")
            continue
        structures.setdefault(ref, []).append(path)
        headers[path] = header
    cases, names, modalities, other = [], set(), {}, {}
    for s in series:
        found = structures.pop(s.uid, [])
        if modality and s.modality != modality:
            other[s.modality] = other.get(s.modality, 0) + 1
            continue
        if not found:
            notes.append(f"series {s.uid} ({s.frames[0].path.parent}): no RTSTRUCT or SEG "
                         f"references it: skipped")
            continue
        if len(found) > 1:
            raise DataError(f"{found[0]} and {found[1]}: two structure sets of series {s.uid}; "
                            f"keep one of them in data.root")
        mismatch = _other_patient(headers[found[0]], s)
        if mismatch:
            notes.append(f"{found[0]}: not paired with series {s.uid} "
                         f"({s.frames[0].path.parent}): {mismatch}; skipped")
            continue
        patient = str(s.header.get("PatientID", "") or "anonymous")
        # the header's values, made a plain name (files.plain_name: no separator, no dot first)
        name = SAFE.sub("_", f"{patient}_{s.header.get('SeriesNumber', '') or 'series'}")
        name = name.lstrip(".")[:200] or "series"
        if name in names:
            name = f"{name}_{s.uid[-8:]}"
        names.add(plain_name(name, f"series {s.uid} ({s.frames[0].path.parent})"))
        group = _group_of(name, group_pattern, found[0]) if group_pattern else patient
        cases.append(CaseFiles(name, group, tuple(dict.fromkeys(f.path for f in s.frames)),
                               found[0]))
        modalities[s.modality] = modalities.get(s.modality, 0) + 1
    if other:
        notes.append(", ".join(f"{n} {m} series" for m, n in sorted(other.items())) +
                     f": skipped (data.modality is {modality})")
    for uid, paths in structures.items():
        notes.append(f"{paths[0]}: its series {uid} is not in data.root (or not an image "
                     f"stack): skipped")
    for note in notes:
        print(f"note: {note}", flush=True)
    if not cases:
        raise DataError(f"data.root {root}: no {modality + ' ' if modality else ''}image "
                        f"series with an RTSTRUCT or SEG that references it")
    if len(modalities) > 1:
        raise DataError(f"data.root {root}: its paired series are of several modalities ("
                        + ", ".join(f"{m} {n}" for m, n in sorted(modalities.items())) +
                        "); set data.modality to the one to train on")
    modality = modality or next(iter(modalities))
    schema = LabelSchema(classes=tuple(c for c, _ in mapping), exclusive=False,
                         channels=(modality,), metric="volume", encoding="bits")
    cases.sort(key=lambda c: c.case)
    return SourceIndex("dicom", root, schema, frozenset(), tuple(cases), ".dcm",
                       roi_map=mapping)


def _structure_masks(path: Path, series: reader.DicomSeries, mapping) -> dict[str, np.ndarray]:
    """{folded ROI or segment name: (slices, rows, columns) bool} of a structure file."""
    import pydicom
    modality = pydicom.dcmread(path, stop_before_pixels=True).get("Modality")
    if modality == "RTSTRUCT":
        from tf_medseg.dicom.rtstruct import rasterize_structure, read_structure_set
        out: dict[str, np.ndarray] = {}
        structures = read_structure_set(path)
        ours = {f.sop_uid for f in series.frames}
        elsewhere = sum(uid is not None and uid not in ours
                        for contours in structures.values() for uid, _ in contours)
        if elsewhere:  # images re-exported after contouring get new SOP Instance UIDs
            print(f"note: {path}: {elsewhere} contour(s) reference images not in series "
                  f"{series.uid}: each placed on the slice at its plane's position", flush=True)
        for name, contours in structures.items():
            mask = rasterize_structure(series, contours)
            key = fold(name)
            out[key] = out[key] | mask if key in out else mask
        return out
    import highdicom as hd
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
            numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[f.sop_uid for f in series.frames],
                segment_numbers=numbers, combine_segments=False).astype(bool)
    except Exception as exc:  # noqa: BLE001  highdicom raises many kinds for a bad SEG
        raise DataError(f"{path}: not a SEG of its series "
                        f"({(str(exc).splitlines() or [''])[0][:120]})") from None
    return {fold(s.SegmentLabel): pixels[..., k]
            for k, s in enumerate(seg.SegmentSequence)}


def read_case(index: SourceIndex, case: CaseFiles):
    """One study: (slices, rows, columns, 1) float32 image, bit-packed masks of the classes,
    its spacing and axis codes (:class:`tf_medseg.data.sources.volumes.Volume`'s fields)."""
    from tf_medseg.data import orientation
    series = reader.series_of(case.images)
    image = series.read()[..., None]
    by_name = _structure_masks(case.label, series, index.roi_map)
    packed = np.zeros(image.shape[:3], np.uint16)
    for k, (cls, names) in enumerate(index.roi_map):
        present = [n for n in names if n in by_name]
        if not present:
            print(f"warning: {case.label}: no ROI named {' or '.join(names)} (class {cls}); "
                  f"case {case.case} counts as empty for it", flush=True)
        for n in present:
            packed |= by_name[n].astype(np.uint16) << k
    codes = orientation.axcodes(orientation.LPS_TO_RAS @ series.affine)
    return image, packed, np.asarray(series.spacing, np.float32), codes
