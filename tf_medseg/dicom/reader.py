"""DICOM image series as volumes: found in a folder of any depth and any file names, grouped by
SeriesInstanceUID, ordered by ImagePositionPatient along the slice normal (the cross product of
ImageOrientationPatient's row and column directions; never by file name or InstanceNumber),
with pixel spacing and slice spacing from the headers and RescaleSlope / RescaleIntercept
applied. MR and CT, single-frame series and enhanced multi-frame images (per-frame positions
from the functional groups).

What is not an image stack is skipped with a note, never silently: files that are not DICOM,
structure sets, segmentations, reports, doses and plans, images without a position or an
orientation, series whose slices do not share one orientation (localisers), two slices at one
position, or slices not evenly spaced.

A volume is (slices, rows, columns) float32 in that order, with ``spacing`` (slice, row,
column) mm and ``affine``: the 4 x 4 map from a voxel index (slice, row, column) to patient
coordinates in mm (DICOM's LPS).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np

from tf_medseg.errors import DataError
from tf_medseg.files import uid_problem

IMAGE_MODALITIES = ("MR", "CT")
NOT_IMAGES = {"RTSTRUCT": "an RT structure set", "SEG": "a segmentation", "SR": "a report",
              "RTDOSE": "an RT dose", "RTPLAN": "an RT plan", "PR": "a presentation state",
              "KO": "a key object selection", "REG": "a registration"}
ORIENTATION_TOLERANCE = 1e-4  # direction cosines that differ by less are one orientation
SPACING_TOLERANCE = 0.01  # relative spread of the slice gaps still taken as even


@dataclasses.dataclass(frozen=True)
class Frame:
    """One 2D image of a series: a file, and the frame in it (multi-frame images)."""

    path: Path
    index: int | None  # None: the file's single frame
    sop_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, ...]  # row direction (3), column direction (3)
    pixel_spacing: tuple[float, float]  # between rows, between columns (mm)
    slope: float = 1.0
    intercept: float = 0.0


@dataclasses.dataclass(frozen=True)
class DicomSeries:
    """An image series, its frames ordered along the slice normal."""

    uid: str
    modality: str
    frames: tuple[Frame, ...]
    study_uid: str = ""
    frame_of_reference: str = ""
    description: str = ""
    sop_class: str = ""
    header: object = dataclasses.field(default=None, compare=False, repr=False)  # the first
    # image's header without pixels: the patient and study modules a structure set copies

    def frame_at(self, position) -> int | None:
        """The index of the frame whose plane holds ``position`` (patient mm) within half a
        slice, or None."""
        along = np.array([np.dot(f.position, self.normal) for f in self.frames])
        gap = np.abs(along - float(np.dot(position, self.normal)))
        k = int(np.argmin(gap))
        return k if gap[k] <= 0.5 * abs(self.spacing[0]) else None

    def to_pixels(self, points) -> np.ndarray:
        """(n, 3) patient mm -> (n, 2) (row, column) of the in-plane grid."""
        o = np.asarray(self.frames[0].orientation, float)
        rows, cols = self.frames[0].pixel_spacing
        d = np.asarray(points, float) - np.asarray(self.frames[0].position)
        return np.stack([d @ o[3:] / rows, d @ o[:3] / cols], axis=1)

    def to_patient(self, pixels, frame: int) -> np.ndarray:
        """(n, 2) (row, column) on frame ``frame`` -> (n, 3) patient mm."""
        o = np.asarray(self.frames[frame].orientation, float)
        rows, cols = self.frames[frame].pixel_spacing
        p = np.asarray(pixels, float)
        return (np.asarray(self.frames[frame].position)[None] + p[:, :1] * rows * o[None, 3:]
                + p[:, 1:2] * cols * o[None, :3])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        return (len(self.frames), int(getattr(self.header, "Rows", 0)),
                int(getattr(self.header, "Columns", 0)))

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.frames[0].orientation, float)
        return np.cross(o[:3], o[3:])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm."""
        rows, cols = self.frames[0].pixel_spacing
        return (slice_spacing(self.frames), float(rows), float(cols))

    @property
    def affine(self) -> np.ndarray:
        """(slice, row, column) index -> patient mm (LPS)."""
        o = np.asarray(self.frames[0].orientation, float)
        k, j, i = self.spacing
        out = np.eye(4)
        out[:3, 0] = self.normal * k
        out[:3, 1] = o[3:] * j  # down the rows: the column direction
        out[:3, 2] = o[:3] * i  # along a row: the row direction
        out[:3, 3] = self.frames[0].position
        return out

    def read(self) -> np.ndarray:
        """The (slices, rows, columns) float32 volume, rescaled to the modality's units."""
        import pydicom
        cache: dict[Path, np.ndarray] = {}
        planes = []
        for frame in self.frames:
            if frame.path not in cache:
                try:
                    cache[frame.path] = np.asarray(pydicom.dcmread(frame.path).pixel_array)
                except Exception as exc:  # decoders, truncated files: many kinds
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise DataError(f"{frame.path}: its pixel data cannot be decoded "
                                    f"({reason[:160]})") from None
            pixels = cache[frame.path]
            plane = pixels if frame.index is None else pixels[frame.index]
            planes.append(plane.astype(np.float32) * frame.slope + frame.intercept)
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise DataError(f"series {self.uid}: its images differ in size ({sorted(shapes)})")
        return np.stack(planes)


def slice_spacing(frames) -> float:
    """The gap between consecutive ordered frames along their normal (mm)."""
    if len(frames) < 2:
        return 1.0
    o = np.asarray(frames[0].orientation, float)
    normal = np.cross(o[:3], o[3:])
    along = np.array([np.dot(f.position, normal) for f in frames])
    return float(np.median(np.diff(along)))


def find_series(root) -> tuple[list[DicomSeries], list[str]]:
    """(the image series under ``root``, notes on what was skipped and why)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    groups: dict[str, list] = defaultdict(list)
    notes, not_dicom = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        header = _header(path)
        if header is None:
            not_dicom.append(path)
            continue
        uid = str(getattr(header, "SeriesInstanceUID", "") or f"(no series UID) {path}")
        groups[uid].append((path, header))
    if not_dicom:
        notes.append(f"skipped {len(not_dicom)} file(s) that are not DICOM (e.g. "
                     f"{not_dicom[0]})")
    series = []
    for uid, members in sorted(groups.items()):
        problem = ("it has no SeriesInstanceUID" if uid.startswith("(no series UID)")
                   else f"its SeriesInstanceUID {uid_problem(uid)}" if uid_problem(uid)
                   else None)
        if problem:  # the UID names the case and its outputs: nothing but a UID may
            notes.append(f"{members[0][0].parent}: a series skipped, {problem}")
            continue
        result = _series(uid, members)
        if isinstance(result, str):
            notes.append(f"series {uid} ({members[0][0].parent}): skipped, {result}")
        else:
            series.append(result)
    return series, notes


def is_dicom(path) -> bool:
    """Whether ``path`` is a DICOM file (:func:`_header`)."""
    return _header(Path(path)) is not None


def series_of(paths) -> DicomSeries:
    """The one image series of the DICOM files ``paths`` (a data set's case, read again in a
    worker process); a one-line DataError if they are not one image stack."""
    members = []
    for path in map(Path, paths):
        header = _header(path)
        if header is None:
            raise DataError(f"{path}: not a readable DICOM file")
        members.append((path, header))
    uids = {str(getattr(h, "SeriesInstanceUID", "")) for _, h in members}
    if len(uids) != 1:
        raise DataError(f"{members[0][0].parent}: {len(uids)} series where one was expected")
    result = _series(uids.pop(), members)
    if isinstance(result, str):
        raise DataError(f"{members[0][0].parent}: not an image stack: {result}")
    return result


def _header(path: Path):
    """The DICOM header of ``path`` without its pixels, or None if it is not DICOM: a Part 10
    file (the ``DICM`` prefix), or a dataset without the file meta header (older archives)
    that names its SOP instance and class."""
    import warnings

    import pydicom
    try:
        with open(path, "rb") as f:
            part10 = f.read(132)[128:132] == b"DICM"
        with warnings.catch_warnings():  # a forced read of a foreign file warns as it goes
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=not part10)
        if not part10 and not ("SOPInstanceUID" in ds and "SOPClassUID" in ds):
            return None  # anything reads as a dataset with force: ask for what DICOM has
        return ds
    except Exception:  # noqa: BLE001  a damaged or foreign file raises many kinds
        return None


def _float(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _numbers(value, count: int, name: str) -> tuple[float, ...] | str:
    """``count`` finite numbers of a header value, or why it is not that."""
    try:
        values = tuple(float(v) for v in (value if hasattr(value, "__len__") and not
                                          isinstance(value, str) else [value]))
    except (TypeError, ValueError):
        values = ()
    if len(values) != count or not all(np.isfinite(values)):
        return f"{name} {str(value)[:60]!r} is not {count} finite number(s)"
    return values


def _frame(path: Path, n, sop_uid: str, position, orientation, spacing, slope, intercept
           ) -> Frame | str:
    """One frame with its geometry and rescale checked, or why they cannot place it: a
    position of 3 finite numbers, two orthogonal unit direction cosines, a pixel spacing of 2
    positive numbers up to 100 mm, a finite non-zero RescaleSlope and finite intercept."""
    position = _numbers(position, 3, "ImagePositionPatient")
    orientation = _numbers(orientation, 6, "ImageOrientationPatient")
    spacing = _numbers(spacing, 2, "PixelSpacing")
    slope, intercept = _numbers(slope, 1, "RescaleSlope"), _numbers(intercept, 1,
                                                                    "RescaleIntercept")
    for got in (position, orientation, spacing, slope, intercept):
        if isinstance(got, str):
            return got
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(column) - 1) > 0.01 or \
            abs(float(row @ column)) > 0.01:
        return (f"ImageOrientationPatient {list(orientation)} is not two orthogonal unit "
                f"directions")
    if not all(0 < v <= 100 for v in spacing):
        return f"PixelSpacing {list(spacing)} mm is not two sizes in (0, 100] mm"
    if slope[0] == 0:
        return "RescaleSlope 0 (every pixel would be the intercept)"
    return Frame(path, n, sop_uid, position, orientation, spacing, slope[0], intercept[0])


def _frames(path: Path, ds) -> list[Frame] | str:
    """The frames of one file, or why it holds none that can be placed in a volume."""
    if int(_float(getattr(ds, "SamplesPerPixel", 1), 1)) != 1 or str(getattr(
            ds, "PhotometricInterpretation", "MONOCHROME2")).upper() not in (
            "MONOCHROME1", "MONOCHROME2"):
        return (f"colour images ({getattr(ds, 'PhotometricInterpretation', '?')}, "
                f"{getattr(ds, 'SamplesPerPixel', '?')} samples a pixel), not grey values")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None:
        shared = getattr(ds, "SharedFunctionalGroupsSequence", [None])[0]
        frames = []
        for n, group in enumerate(per_frame):
            def item(name, attr, group=group):
                for source in (group, shared):
                    seq = getattr(source, name, None) if source is not None else None
                    if seq:
                        value = getattr(seq[0], attr, None)
                        if value is not None:
                            return value
                return None
            position = item("PlanePositionSequence", "ImagePositionPatient")
            orientation = item("PlaneOrientationSequence", "ImageOrientationPatient")
            spacing = item("PixelMeasuresSequence", "PixelSpacing")
            if position is None or orientation is None or spacing is None:
                return "a multi-frame image without per-frame positions and orientation"
            slope = item("PixelValueTransformationSequence", "RescaleSlope")
            intercept = item("PixelValueTransformationSequence", "RescaleIntercept")
            frame = _frame(path, n, f"{ds.SOPInstanceUID}", position, orientation, spacing,
                           1.0 if slope in (None, "") else slope,
                           0.0 if intercept in (None, "") else intercept)
            if isinstance(frame, str):
                return f"frame {n + 1}: {frame}"
            frames.append(frame)
        return frames
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    spacing = getattr(ds, "PixelSpacing", None)
    if position is None or orientation is None or spacing is None:
        return "images without ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
    frames = int(_float(getattr(ds, "NumberOfFrames", 1), 1))
    if frames != 1:
        return f"a {frames}-frame image without functional groups"
    slope, intercept = getattr(ds, "RescaleSlope", None), getattr(ds, "RescaleIntercept", None)
    frame = _frame(path, None, str(ds.SOPInstanceUID), position, orientation, spacing,
                   1.0 if slope in (None, "") else slope,
                   0.0 if intercept in (None, "") else intercept)
    return frame if isinstance(frame, str) else [frame]


def _series(uid: str, members) -> DicomSeries | str:
    """The ordered series of ``members`` [(path, header)], or why it is not an image stack."""
    first = members[0][1]
    modality = str(getattr(first, "Modality", "") or "")
    if modality in NOT_IMAGES:
        return f"it is {NOT_IMAGES[modality]} ({modality}), not images"
    if modality not in IMAGE_MODALITIES:
        return f"modality {modality or 'missing'} (images of {', '.join(IMAGE_MODALITIES)} " \
               f"only)"
    frames = []
    for path, header in members:
        got = _frames(path, header)
        if isinstance(got, str):
            return f"{path.name}: {got}"
        frames.extend(got)
    orientation = np.asarray(frames[0].orientation, float)
    if any(np.abs(np.asarray(f.orientation) - orientation).max() > ORIENTATION_TOLERANCE
           for f in frames):
        return "its images do not share one orientation (a localiser?)"
    if len({f.pixel_spacing for f in frames}) != 1:
        return "its images differ in pixel spacing"
    normal = np.cross(orientation[:3], orientation[3:])
    frames.sort(key=lambda f: float(np.dot(f.position, normal)))
    along = np.array([np.dot(f.position, normal) for f in frames])
    gaps = np.diff(along)
    if len(gaps) and gaps.min() <= 1e-3:
        k = int(np.argmin(gaps))
        return (f"two images at one position ({frames[k].path.name}, "
                f"{frames[k + 1].path.name}): several stacks in one series?")
    if len(gaps) and (gaps.max() - gaps.min()) > SPACING_TOLERANCE * np.median(gaps):
        return (f"its slices are not evenly spaced (gaps {gaps.min():.3g} to "
                f"{gaps.max():.3g} mm: missing slices?)")
    return DicomSeries(uid, modality, tuple(frames),
                       study_uid=str(getattr(first, "StudyInstanceUID", "")),
                       frame_of_reference=str(getattr(first, "FrameOfReferenceUID", "")),
                       description=str(getattr(first, "SeriesDescription", "")),
                       sop_class=str(getattr(first, "SOPClassUID", "")), header=first)


def write_dicom(ds, path) -> Path:
    """A pydicom (or highdicom) dataset saved at ``path`` atomically: a complete file or none,
    never a partial one a later run would trust."""
    from tf_medseg.files import atomic_open
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        ds.save_as(f, enforce_file_format=True)
    return path
