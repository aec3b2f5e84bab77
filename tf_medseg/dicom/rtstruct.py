"""RT Structure Sets: written from masks on a DICOM image series, and read back onto its grid.

:func:`structure_set` makes the RTSTRUCT of (slices, rows, columns, K) masks on a
:class:`~tf_medseg.dicom.reader.DicomSeries`: one ROI per class (its name and display colour),
on every slice that holds the class closed planar contours along the pixel edges in patient
coordinates (:func:`tf_medseg.dicom.contours.mask_polygons`: islands each a contour, holes
contours of their own, filled by the even-odd rule), each contour referencing its image's SOP
Instance UID; the patient and study modules and the Frame of Reference copied from the series,
new UIDs for the structure set, and an approval status of UNAPPROVED with a description that
says the contours are automatic and unreviewed. Every Type 2 attribute is present (empty
where the series lacks it), SpecificCharacterSet is copied with the names it encodes, and a
structure set whose ContourData would overflow explicit VR's 16-bit length (a contour of more
than about 2,000 vertices) is written in Implicit VR Little Endian, never as UN.

:func:`read_structure_set` and :func:`rasterize_structure` read one back: the contours of each
ROI, then a mask on the series' grid (each contour on the frame it references, else the frame
at its position; even-odd at the pixel centres), as a planning system means them.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from tf_medseg.dicom.contours import mask_polygons, rasterize
from tf_medseg.dicom.reader import DicomSeries, write_dicom
from tf_medseg.errors import DataError

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as TPSs reference it
UNREVIEWED = ("Automatic contours by tf_medseg, not reviewed: a proposal for a clinician to "
              "check and edit before any clinical use.")
# Type 2 attributes of the RT Structure Set IOD's patient, study and frame of reference
# modules: copied from the series, present and empty where it lacks them (PS3.3 A.19).
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "StudyID", "AccessionNumber", "ReferringPhysicianName", "PositionReferenceIndicator")
COPIED = TYPE2 + ("SpecificCharacterSet", "StudyInstanceUID", "StudyDescription",
                  "FrameOfReferenceUID")
MAX_EXPLICIT = 0xFFFE  # bytes a DS value may hold in explicit VR (a 16-bit length)
# Contours a structure set may hold: a body, the organs and every bowel loop of a 500-slice
# scan stay far below it; a model answering noise makes hundreds of thousands (one 512 x 512 x
# 150 CT: 381,000 contours, 7 minutes and 12 GB to write), refused before any is traced.
MAX_CONTOURS = 50_000


def structure_set(series: DicomSeries, masks: np.ndarray, classes, colours=None, *,
                  label: str = "tf_medseg", description: str = UNREVIEWED):
    """The RTSTRUCT dataset (pydicom) of boolean (slices, rows, columns, K) ``masks`` on
    ``series``'s grid; ``colours``: K (r, g, b) display colours (0-255)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    masks = np.asarray(masks, bool)
    if masks.shape[:1] != (len(series.frames),) or masks.shape[-1] != len(classes):
        raise ValueError(f"masks {masks.shape} for {len(series.frames)} frames and "
                         f"{len(classes)} classes")
    colours = colours or [(255, 0, 0)] * len(classes)
    _check_islands(series, masks, classes)
    now = datetime.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
    header = series.header
    for key in COPIED:
        if header is not None and key in header:
            setattr(ds, key, getattr(header, key))
    for key in TYPE2:
        if key not in ds:
            setattr(ds, key, "")
    ds.OperatorsName = ""  # Type 2 of the RT Series module: nobody operated
    ds.StudyInstanceUID = ds.get("StudyInstanceUID", series.study_uid) or generate_uid()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 999
    ds.SeriesDescription = "tf_medseg automatic contours (unreviewed)"
    ds.Manufacturer, ds.InstanceNumber = "tf_medseg", 1
    ds.StructureSetLabel, ds.StructureSetName = label[:16], label[:64]
    ds.StructureSetDescription = description[:1024]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ApprovalStatus = "UNAPPROVED"

    def image_ref(frame):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = series.sop_class, frame.sop_uid
        if frame.index is not None:  # a frame of a multi-frame image
            ref.ReferencedFrameNumber = frame.index + 1
        return ref
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = series.uid
    series_ref.ContourImageSequence = Sequence([image_ref(f) for f in series.frames])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID, study_ref.ReferencedSOPInstanceUID = (STUDY_COMPONENT,
                                                                           ds.StudyInstanceUID)
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = ds.get("FrameOfReferenceUID", series.frame_of_reference)
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])
    rois, roi_contours, observations, longest = [], [], [], 0
    for k, name in enumerate(classes):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = k + 1, str(name)
        roi.ReferencedFrameOfReferenceUID = frame_ref.FrameOfReferenceUID
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = "tf_medseg"
        rois.append(roi)
        contours = []
        for z, frame in enumerate(series.frames):
            for poly in mask_polygons(masks[z, ..., k]):
                contour = Dataset()
                contour.ContourImageSequence = Sequence([image_ref(frame)])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(poly)
                points = series.to_patient(poly, z)
                contour.ContourData = values = [f"{v:.4f}" for v in points.ravel()]
                longest = max(longest, len("\\".join(values)))
                contours.append(contour)
        item = Dataset()
        item.ReferencedROINumber = k + 1
        item.ROIDisplayColor = [int(c) for c in colours[k]]
        item.ContourSequence = Sequence(contours)
        roi_contours.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = k + 1, k + 1
        obs.RTROIInterpretedType, obs.ROIInterpreter = "ORGAN", ""
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(roi_contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    if longest > MAX_EXPLICIT:  # a body-sized contour: implicit VR has 32-bit lengths
        from pydicom.uid import ImplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def _check_islands(series: DicomSeries, masks: np.ndarray, classes) -> None:
    """A one-line error naming the series where ``masks`` hold more separate islands (each at
    least one contour) than :data:`MAX_CONTOURS`."""
    from scipy import ndimage
    counts = [sum(ndimage.label(masks[z, ..., k])[1] for z in range(masks.shape[0]))
              for k in range(masks.shape[-1])]
    if sum(counts) > MAX_CONTOURS:
        worst = int(np.argmax(counts))
        raise DataError(f"series {series.uid}: the masks hold {sum(counts):,} separate islands "
                        f"({counts[worst]:,} of {classes[worst]}), more contours than a "
                        f"structure set holds here ({MAX_CONTOURS:,}): the model's output "
                        "looks like noise; check that the model fits this series (modality, "
                        "anatomy), or write --output-format seg")


def write_structure_set(ds, path: Path) -> Path:
    """``ds`` saved at ``path`` atomically (:func:`tf_medseg.dicom.reader.write_dicom`)."""
    return write_dicom(ds, path)


def read_structure_set(path) -> dict[str, list[tuple[str | None, np.ndarray]]]:
    """{ROI name: [(referenced SOP Instance UID or None, (n, 3) points in mm), ...]} of an
    RTSTRUCT file (one-line DataError naming it if it is not one)."""
    import pydicom
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # a damaged or foreign file raises many kinds
        raise DataError(f"{path}: not a readable DICOM file "
                        f"({(str(exc).splitlines() or [''])[0][:120]})") from None
    if ds.get("Modality") != "RTSTRUCT" or "ROIContourSequence" not in ds:
        raise DataError(f"{path}: not an RT Structure Set (Modality {ds.get('Modality')})")
    names: dict[int, str] = {}
    for k, roi in enumerate(ds.get("StructureSetROISequence", []), 1):
        number, name = _integer(roi.get("ROINumber")), str(roi.get("ROIName", "") or "")
        if number is None or not name.strip():
            raise DataError(f"{path}: StructureSetROISequence item {k} has no ROINumber or no "
                            f"ROIName; the file is damaged")
        if number in names:
            raise DataError(f"{path}: ROINumber {number} is given twice ({names[number]!r} "
                            f"and {name!r}); the file is damaged")
        names[number] = name
    out: dict[str, list] = {}
    for item in ds.ROIContourSequence:
        number = _integer(item.get("ReferencedROINumber"))
        name = names.get(number, f"ROI {number}")
        contours = out.setdefault(name, [])
        not_areas = []
        for n, contour in enumerate(item.get("ContourSequence", []), 1):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":  # a line or points encloses nothing
                not_areas.append(kind)
                continue
            try:
                data = np.asarray([float(v) for v in contour.ContourData], float)
            except (AttributeError, TypeError, ValueError):
                data = np.asarray([np.nan])
            if data.size == 0 or data.size % 3 or not np.isfinite(data).all():
                raise DataError(f"{path}: ROI {name!r}, contour {n}: ContourData of {data.size} "
                                f"value(s) is not finite x, y, z triples; the file is damaged")
            refs = contour.get("ContourImageSequence", [])
            contours.append((str(refs[0].ReferencedSOPInstanceUID) if refs else None,
                             data.reshape(-1, 3)))
        if not_areas:
            import sys
            print(f"warning: {path}: ROI {name!r}: {len(not_areas)} "
                  f"{'/'.join(sorted(set(not_areas)))} contour(s) left out: they are not "
                  f"areas (only CLOSED_PLANAR contours enclose one)", file=sys.stderr)
    return out


def _integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def rasterize_structure(series: DicomSeries, contours) -> np.ndarray:
    """The (slices, rows, columns) boolean mask of one ROI's ``contours`` (as
    :func:`read_structure_set` gives them) on ``series``' grid, even-odd per slice."""
    by_uid = {f.sop_uid: z for z, f in enumerate(series.frames)}
    per_frame: dict[int, list[np.ndarray]] = {}
    for uid, points in contours:
        z = by_uid.get(uid) if uid is not None else None
        if z is None:
            z = series.frame_at(points.mean(axis=0))
        if z is None:
            continue  # off the series: a planning system ignores it too
        per_frame.setdefault(z, []).append(series.to_pixels(points))
    shape = (int(series.header.Rows), int(series.header.Columns))
    out = np.zeros((len(series.frames), *shape), bool)
    for z, polygons in per_frame.items():
        out[z] = rasterize(polygons, shape)
    return out

