"""Read a folder in the Kaggle UW-Madison GI Tract layout.

::

    ROOT/train.csv                          id,class,segmentation (RLE, see rle.py)
    ROOT/train/caseN/caseN_dayM/scans/slice_XXXX_W_H_PW_PH.png

In ``slice_0057_360_310_1.50_1.50.png`` the first number is the WIDTH: the array is (310, 360).
Slices are 16-bit grayscale PNGs (8-bit copies are accepted and kept as they are; intensity is
normalised per scan later, so the bit depth does not matter).

The unit of reading is a scan (one case-day): its slices sorted by number, stacked into a
(D, H, W) uint16 volume with a (D, H, W, 3) uint8 mask, so that 2.5D context and per-scan
normalisation can be chosen later without re-reading files. Its voxels are
:data:`SLICE_THICKNESS_MM` apart across slices (the competition's data page: "Physical pixel
thickness in superior-inferior direction is 3mm") and as the file name says in-plane.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd

from tf_medseg.data import rle
from tf_medseg.data.images import PNG_GRAY_TYPES, png_header, require_regular
from tf_medseg.data.labels import LabelSchema
from tf_medseg.errors import DataError

# The UW-Madison organs, in train.csv's class names.
CLASSES = ("large_bowel", "small_bowel", "stomach")
# What the Kaggle layout (and the phantom written in it) declares: overlapping organs stored as
# bits, one MRI channel, scored by the competition metric.
LABELS = LabelSchema(classes=CLASSES, exclusive=False, channels=("MRI",), metric="competition",
                     encoding="bits")
SLICE_THICKNESS_MM = 3.0

SLICE_RE = re.compile(r"^slice_(\d{4})_(\d+)_(\d+)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.png$")
CASE_DAY_RE = re.compile(r"^case(\d+)_day(\d+)$")
ID_RE = re.compile(r"^case(\d+)_day(\d+)_slice_(\d{4})$")


@dataclasses.dataclass(frozen=True)
class SliceFile:
    """One slice PNG and what its name says about it."""

    path: Path
    slice_number: int
    width: int
    height: int
    spacing: tuple[float, float]  # (pixel width, pixel height) in mm


@dataclasses.dataclass(frozen=True)
class ScanFiles:
    """The slice files of one case-day, sorted by slice number."""

    case: int
    day: int
    slices: tuple[SliceFile, ...]

    @property
    def case_day(self) -> str:
        return f"case{self.case}_day{self.day}"

    def slice_id(self, s: SliceFile) -> str:
        return f"{self.case_day}_slice_{s.slice_number:04d}"


@dataclasses.dataclass(frozen=True)
class Scan:
    """One case-day read into memory."""

    case: int
    day: int
    slice_numbers: np.ndarray  # (D,) int32
    image: np.ndarray  # (D, H, W) uint16
    mask: np.ndarray  # (D, H, W, 3) uint8, channels in CLASSES order
    spacing: tuple[float, float]  # (pixel width, pixel height) in mm, from the file names

    @property
    def case_day(self) -> str:
        return f"case{self.case}_day{self.day}"

    @property
    def voxel_spacing(self) -> tuple[float, float, float]:
        """mm across slices, rows and columns."""
        return (SLICE_THICKNESS_MM, self.spacing[1], self.spacing[0])


def parse_slice_filename(path: str | os.PathLike) -> SliceFile:
    """Parse ``slice_XXXX_W_H_PW_PH.png`` (first number is the width)."""
    path = Path(path)
    m = SLICE_RE.match(path.name)
    if not m:
        raise DataError(f"{path}: file name does not match slice_XXXX_W_H_PW_PH.png")
    number, width, height, pw, ph = m.groups()
    return SliceFile(path, int(number), int(width), int(height), (float(pw), float(ph)))


def index_folder(root: str | os.PathLike, drop_case_days: Sequence[str] = (),
                 split: str = "train") -> list[ScanFiles]:
    """List every scan under ``ROOT/train`` (or ``ROOT/test``: ``split``) with its slices,
    sorted by case, day and slice.

    Raises:
        DataError: if the folder or ``train/`` is missing, holds no slices, or a scan mixes
            image sizes or repeats a slice number.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist; set data.root to the Kaggle "
                        f"folder holding train.csv and train/")
    train = root / split
    if not train.is_dir():
        raise DataError(f"{train} is missing; data.root must hold {split}/caseN/caseN_dayM/"
                        f"scans/")
    scans, folders = [], {}
    for case_dir in sorted(train.iterdir()):
        if not case_dir.is_dir():
            continue
        for day_dir in sorted(case_dir.iterdir()):
            if day_dir.name in drop_case_days or not day_dir.is_dir():
                continue
            scan = case_day_files(day_dir)
            if scan is not None:
                other = folders.setdefault((scan.case, scan.day), day_dir)
                if other != day_dir:
                    raise DataError(f"{day_dir}: the same case-day as {other} "
                                    f"({scan.case_day}); keep one of the two folders")
                scans.append(scan)
    if not scans:
        raise DataError(f"{train} holds no slice PNGs (expected "
                        f"{split}/caseN/caseN_dayM/scans/slice_*.png)")
    scans.sort(key=lambda s: (s.case, s.day))
    return scans


def case_day_files(day_dir: Path) -> ScanFiles | None:
    """The slices of one ``caseN_dayM`` folder (in its ``scans/``), or None if it is not one
    or holds no PNGs.

    Raises:
        DataError: if a file name is not a slice name, the slices differ in size or a slice
            number appears twice.
    """
    m = CASE_DAY_RE.match(day_dir.name)
    if not m:
        return None
    paths = sorted((day_dir / "scans").glob("*.png"))
    for p in paths:
        require_regular(p)
    files = [parse_slice_filename(p) for p in paths]
    if not files:
        return None
    files.sort(key=lambda s: s.slice_number)
    sizes = {(s.width, s.height) for s in files}
    if len(sizes) > 1:
        raise DataError(f"{day_dir}: slices of one scan have different sizes {sizes}")
    for a, b in zip(files, files[1:]):
        if a.slice_number == b.slice_number:
            raise DataError(f"{day_dir}: slice {a.slice_number} appears twice ({a.path.name} "
                            f"and {b.path.name}); keep one")

    return ScanFiles(int(m.group(1)), int(m.group(2)), tuple(files))


def read_labels(csv_path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Read train.csv into ``{slice id: {class: rle}}`` (every class present, '' if empty).

    Raises:
        DataError: for a missing file, missing columns, a malformed id, an unknown class or a
            duplicated (id, class) row, naming the row.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DataError(f"{csv_path} is missing; the Kaggle folder must hold train.csv")
    require_regular(csv_path)
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{csv_path}: empty; expected the header id,class,segmentation and "
                        f"one row per slice and class (from the Kaggle download)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV ({str(exc).splitlines()[0]})")
    missing = {"id", "class", "segmentation"} - set(frame.columns)
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {sorted(missing)}; expected "
                        f"id,class,segmentation")
    if frame.empty:
        raise DataError(f"{csv_path}: no rows, only the header; expected one row per slice "
                        f"and class (from the Kaggle download)")
    labels: dict[str, dict[str, str]] = {}
    for row, (sid, cls, seg) in enumerate(zip(frame["id"], frame["class"],
                                              frame["segmentation"]), start=2):
        if not ID_RE.match(sid):
            raise DataError(f"{csv_path} line {row}: id {sid!r} is not caseN_dayM_slice_XXXX")
        if cls not in CLASSES:
            raise DataError(f"{csv_path} line {row}: unknown class {cls!r} "
                            f"(expected one of {', '.join(CLASSES)})")
        entry = labels.setdefault(sid, {})
        if cls in entry:
            raise DataError(f"{csv_path} line {row}: duplicate row for {sid} {cls}")
        entry[cls] = seg.strip()
    for entry in labels.values():
        for cls in CLASSES:
            entry.setdefault(cls, "")
    return labels


def read_png(s: SliceFile) -> np.ndarray:
    """Read one slice as a (H, W) uint16 array, checking its header (size against the file
    name, pixel limit, grey) before decoding it."""
    check_slice_header(s)
    image = cv2.imread(str(s.path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{s.path}: not a readable PNG")
    if image.ndim == 3:  # some copies are saved as gray RGB; then the channels are equal
        if not all(np.array_equal(image[..., 0], image[..., k]) for k in (1, 2)):
            raise DataError(f"{s.path}: a colour image; expected a grayscale MRI slice "
                            f"(8- or 16-bit)")
        image = image[..., 0]
    if image.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{s.path}: expected an 8- or 16-bit grayscale PNG, got {image.dtype}")
    if image.shape != (s.height, s.width):
        raise DataError(f"{s.path}: image is {image.shape[1]}x{image.shape[0]} (WxH) but its "
                        f"name says {s.width}x{s.height}")
    return image.astype(np.uint16)


def read_scan(scan: ScanFiles, labels: dict[str, dict[str, str]]) -> Scan:
    """Read the slices and decode the masks of one case-day.

    Raises:
        DataError: if a slice has no rows in train.csv, or an RLE string is malformed (the
            message names the slice id and class).
    """
    first = scan.slices[0]
    depth = len(scan.slices)
    image = np.empty((depth, first.height, first.width), np.uint16)
    mask = np.zeros((depth, first.height, first.width, len(CLASSES)), np.uint8)
    for i, s in enumerate(scan.slices):
        image[i] = read_png(s)
        sid = scan.slice_id(s)
        if sid not in labels:
            raise DataError(f"{s.path}: no rows for {sid} in train.csv")
        for c, cls in enumerate(CLASSES):
            try:
                mask[i, ..., c] = rle.decode(labels[sid][cls], s.height, s.width)
            except DataError as exc:
                raise DataError(f"train.csv {sid} {cls}: {exc}") from None
    numbers = np.array([s.slice_number for s in scan.slices], np.int32)
    return Scan(scan.case, scan.day, numbers, image, mask, first.spacing)


def check_slice_header(s: SliceFile) -> None:
    """One slice's PNG header: its size as its name says, 8 or 16 bits, grey."""
    width, height, depth, colour = png_header(s.path)
    if (width, height) != (s.width, s.height):
        raise DataError(f"{s.path}: image is {width}x{height} (WxH) but its name says "
                        f"{s.width}x{s.height}")
    if depth not in (8, 16) or colour not in (0, 2):
        raise DataError(f"{s.path}: expected an 8- or 16-bit grayscale PNG, got "
                        f"{depth}-bit {PNG_GRAY_TYPES.get(colour, colour)}")
