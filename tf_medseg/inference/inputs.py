"""New inputs to predict: ``--input`` found, checked and read into volumes in their stored order
with their spacing, as the records hold them (:mod:`tf_medseg.data.features`).

A model of 16-bit slices (``uint16`` in its contract: the Kaggle layout and the phantom) takes
one of:

* a Kaggle-layout folder: ``test/caseN/caseN_dayM/scans/slice_*.png`` (or ``train/...``);
* one ``caseN`` folder, one ``caseN_dayM`` folder, or its ``scans/`` folder;
* any folder of slice PNGs (8- or 16-bit grayscale, one size): they are taken as one scan in
  the order of their names (slice number for Kaggle names), and each row's id is the file name
  without ``.png``.

Its inputs have the form ``kaggle``: (D, H, W, 1) uint16, one submission id per slice.

A model of float images (nnunet, decathlon and folder data) takes a folder of:

* NIfTI volumes (``.nii.gz`` / ``.nii``): nnU-Net naming ``CASE_0000.nii.gz`` (one file per
  channel, ``_0001`` ...), or for a one-channel model any ``CASE.nii.gz`` (a Decathlon image
  with its modalities on the 4th axis is one file too): form ``nifti``, (X, Y, Z, C) float32
  in the file's voxel order;
* 2D images (``.png``, ``.tif``; nnU-Net 2D naming ``CASE_0000.png`` or plain ``NAME.png``,
  or an image folder's root holding ``images/``; a colour model takes colour images): form
  ``image``, (H, W, 1, C) float32.

Any model takes a folder of DICOM files (any depth, any names; :mod:`tf_medseg.dicom.reader`):
form ``dicom``, one case per image series, read as (slices, rows, columns) and turned to face
the model's training volumes (:mod:`tf_medseg.data.orientation`; a 16-bit slice model takes
the series' own slices, clipped to 0-65535). Series that are not image stacks are skipped
with a note on stderr.

Every file is checked before it is read (one-line errors naming it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import cv2
import numpy as np

from tf_medseg.data.images import png_header
from tf_medseg.data.sources import kaggle, volumes
from tf_medseg.data.sources.volume_index import NIFTI_ENDINGS, file_ending, strip_ending
from tf_medseg.errors import DataError
from tf_medseg.export.contract import Contract

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
FORMS = ("kaggle", "nifti", "image", "dicom")
IDENTITY = np.array([[0, 1], [1, 1], [2, 1]], float)  # a DICOM series in its own axes


@dataclasses.dataclass(frozen=True)
class InputCase:
    """One case (scan) to predict, found in ``--input``."""

    name: str
    form: str  # kaggle | nifti | image
    paths: tuple[Path, ...]  # kaggle: one per slice; else one per channel (or one 4-D file)
    ids: tuple[str, ...] = ()  # kaggle: the submission id of each slice
    slices: tuple[kaggle.SliceFile, ...] | None = None  # Kaggle slice names: sizes to check
    ending: str = ".png"
    series: object = None  # dicom: the DicomSeries
    turn: object = None  # dicom: its Reorientation to the model's axes

    def read(self, contract: Contract) -> tuple[np.ndarray, np.ndarray]:
        """(volume (A0, A1, A2, C) in the records' dtype, spacing (3,) mm)."""
        if self.form == "dicom":
            volume = self.turn.forward(self.series.read())
            if contract.image_dtype == "uint16":
                volume = np.clip(np.rint(volume), 0, 65535).astype(np.uint16)
            return volume[..., None], self.turn.spacing(self.series.spacing)
        if self.form == "kaggle":
            volume = read_slices(self)
            # Slices without Kaggle names: 1 mm pixels, slices the layout's thickness apart
            # (what decides that they are cut across their first axis).
            pixel = self.slices[0].spacing if self.slices else (1.0, 1.0)
            spacing = (kaggle.SLICE_THICKNESS_MM, pixel[1], pixel[0])
            return volume[..., None], np.asarray(spacing, np.float32)
        four_d = contract.modalities > 1 and len(self.paths) == 1
        index = volumes.SourceIndex("predict", self.paths[0].parent, contract.labels,
                                    frozenset(), (), self.ending, four_d=four_d)
        image, header = volumes.read_images(index, volumes.CaseFiles(self.name, self.name,
                                                                     self.paths))
        return image, np.asarray(header.spacing[:3], np.float32)


def find_inputs(input_dir, contract: Contract) -> list[InputCase]:
    """The cases of ``--input`` for a model of ``contract`` (see the module docstring)."""
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--input {root}: not a folder")
    if holds_dicom(root):
        return find_dicom(root, contract)
    if contract.image_dtype == "uint16":
        return find_scans(root)
    return find_cases(root, contract.modalities, contract.labels.channels == ("R", "G", "B"))


# ---------------------------------------------------------------- Kaggle layout and slices

def _from_case_day(scan: kaggle.ScanFiles) -> InputCase:
    return InputCase(scan.case_day, "kaggle", tuple(s.path for s in scan.slices),
                     tuple(scan.slice_id(s) for s in scan.slices), scan.slices)


def find_scans(root: Path) -> list[InputCase]:
    """The scans of a Kaggle-layout or slice folder, in case, day, slice order.

    Raises:
        DataError: if the folder holds no PNG slices, naming what it expected.
    """
    for split in ("test", "train"):
        if (root / split).is_dir():
            return [_from_case_day(s) for s in kaggle.index_folder(root, split=split)]
    day_dir = root.parent if root.name == "scans" else root
    scan = kaggle.case_day_files(day_dir)
    if scan is not None:
        return [_from_case_day(scan)]
    days = [kaggle.case_day_files(d) for d in sorted(root.iterdir()) if d.is_dir()]
    days = sorted((d for d in days if d is not None), key=lambda s: (s.case, s.day))
    if days:
        return [_from_case_day(d) for d in days]
    pngs = list(root.glob("*.png"))  # each one's header is checked before it is read
    if not pngs:
        raise DataError(f"--input {root}: no PNG slices found (expected a Kaggle folder with "
                        f"test/ or train/, a caseN_dayM folder, or a folder of slice PNGs)")
    try:
        files = sorted((kaggle.parse_slice_filename(p) for p in pngs),
                       key=lambda s: s.slice_number)
        pngs = [s.path for s in files]
    except DataError:  # not Kaggle slice names: name order
        files, pngs = None, sorted(pngs)
    return [InputCase(root.name, "kaggle", tuple(pngs), tuple(p.stem for p in pngs),
                      tuple(files) if files else None)]


def read_slices(case: InputCase) -> np.ndarray:
    """The slices of a scan as a (D, H, W) uint16 volume.

    Raises:
        DataError: naming the file, for an unreadable PNG, a colour or float image, a size
            that differs from the scan's other slices or from its file name.
    """
    if case.slices is not None:
        slices = [kaggle.read_png(f) for f in case.slices]
    else:
        slices = []
        for path in case.paths:
            png_header(path)  # an ordinary PNG within the pixel limit, not decoded yet
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DataError(f"{path}: not a readable PNG")
            if image.ndim == 3:
                if not (np.array_equal(image[..., 0], image[..., 1])
                        and np.array_equal(image[..., 0], image[..., 2])):
                    raise DataError(f"{path}: a colour image; expected a grayscale MRI slice")
                image = image[..., 0]
            if image.dtype not in (np.uint8, np.uint16):
                raise DataError(f"{path}: expected an 8- or 16-bit grayscale PNG, got "
                                f"{image.dtype}")
            slices.append(image.astype(np.uint16))
    first = slices[0].shape
    for path, image in zip(case.paths, slices):
        if image.shape != first:
            raise DataError(f"{path}: the image is {image.shape[1]}x{image.shape[0]} (WxH) but "
                            f"{case.paths[0].name} is {first[1]}x{first[0]}; the slices of "
                            f"one scan must share a size")
    return np.stack(slices)


# ------------------------------------------------------------------ NIfTI and 2D images

def find_cases(root: Path, channels: int, colour: bool = False) -> list[InputCase]:
    """The cases of a folder of NIfTI volumes or 2D images; ``colour``: the model's channels
    are one colour image's R, G, B."""
    if (root / "images").is_dir() and not any(file_ending(p.name) for p in root.iterdir()
                                              if p.is_file()):
        root = root / "images"
    # Every file the readers open is checked to be a regular file first (no FIFO blocks).
    files = sorted(p for p in root.iterdir() if not p.is_dir() and not p.name.startswith("."))
    found = [(p, file_ending(p.name)) for p in files]
    found = [(p, e) for p, e in found if e]
    if not found:
        raise DataError(f"--input {root}: no NIfTI (.nii.gz, .nii) or image (.png, .tif) "
                        f"files")
    endings = {e for _, e in found}
    if len(endings) > 1:
        raise DataError(f"--input {root}: files of several kinds ({', '.join(sorted(endings))});"
                        f" keep one kind per folder")
    ending = endings.pop()
    form = "nifti" if ending in NIFTI_ENDINGS else "image"
    groups: dict[str, dict[int, Path]] = {}
    plain = []
    for path, _ in found:
        stem = strip_ending(path.name, ending)
        m = CHANNEL_RE.match(stem)
        if m:
            groups.setdefault(m["case"], {})[int(m["channel"])] = path
        else:
            plain.append(path)
    if plain and groups:
        raise DataError(f"{plain[0]}: not named CASE_0000{ending} like the other files; use "
                        f"nnU-Net's channel naming for every file, or for none")
    if plain:
        if channels != 1 and form == "image" and not colour:
            raise DataError(f"{plain[0]}: the model takes {channels} channels; name the files "
                            f"CASE_0000{ending}, CASE_0001{ending}, ...")
        return [InputCase(strip_ending(p.name, ending), form, (p,), ending=ending) for p in plain]
    cases = []
    for case, by_channel in sorted(groups.items()):
        missing = [k for k in range(channels) if k not in by_channel]
        if missing:
            raise DataError(f"{root / f'{case}_{missing[0]:04d}{ending}'}: missing: the model "
                            f"takes {channels} channel(s), _0000 to _{channels - 1:04d}")
        extra = sorted(set(by_channel) - set(range(channels)))
        if extra:
            raise DataError(f"{by_channel[extra[0]]}: channel {extra[0]}, but the model takes "
                            f"{channels} channel(s)")
        cases.append(InputCase(case, form, tuple(by_channel[k] for k in range(channels)),
                               ending=ending))
    return cases


# ------------------------------------------------------------------------- DICOM series

def holds_dicom(root: Path, probe: int = 64) -> bool:
    """Whether ``root`` is a DICOM folder: no NIfTI, PNG or TIFF files and no Kaggle or image
    folder layout at its top, and a DICOM file among the first ``probe`` files below it."""
    from tf_medseg.dicom.reader import is_dicom
    if any((root / d).is_dir() for d in ("test", "train", "images", "scans")):
        return False
    if any(p.is_file() and (file_ending(p.name) or p.suffix.lower() == ".png")
           for p in root.iterdir()):
        return False
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("."))
    return any(is_dicom(p) for _, p in zip(range(probe), files))


MR_CHANNELS = ("MR", "MRI", "T1", "T2", "T1W", "T2W", "T1GD", "T1CE", "T1C", "FLAIR", "ADC",
               "DWI", "PD", "SPIR", "DIXON", "CINE")


def expected_modality(channel: str) -> str | None:
    """The DICOM modality a model's channel name says it was trained on (``CT`` for a channel
    named CT, as the normalisation reads it; ``MR`` for MR sequence names), None where the
    name does not say (``0``, ``image``)."""
    name = str(channel).strip().upper().replace("-", "").replace(" ", "")
    if name == "CT":
        return "CT"
    if name in MR_CHANNELS or name.startswith(("MR", "T1", "T2")):
        return "MR"
    return None


def find_dicom(root: Path, contract: Contract) -> list[InputCase]:
    """One case per image series under ``root``, turned to face ``contract``'s training
    volumes; what is skipped is noted on stderr.

    Raises:
        DataError: if no image series is found, or the model takes several channels.
    """
    import sys

    from tf_medseg.data import orientation
    from tf_medseg.dicom import reader
    if contract.modalities != 1:
        raise DataError(f"--input {root}: a DICOM series is one channel, but the model takes "
                        f"{contract.modalities} ({', '.join(contract.labels.channels)})")
    series, notes = reader.find_series(root)
    channel = contract.labels.channels[0]
    wanted = expected_modality(channel)
    for s in [s for s in series if wanted and s.modality != wanted]:
        notes.append(f"series {s.uid} ({s.frames[0].path.parent}): skipped, it is {s.modality} "
                     f"but the model was trained on {wanted} (channel {channel})")
    series = [s for s in series if not wanted or s.modality == wanted]
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not series:
        raise DataError(f"--input {root}: no DICOM image series to predict"
                        + (f" ({notes[-1]})" if notes else ""))
    cases = []
    for s in series:
        if math.prod(s.shape) > volumes.MAX_PIXELS or min(s.shape) < 1:
            raise DataError(f"series {s.uid} ({s.frames[0].path.parent}): "
                            f"{' x '.join(map(str, s.shape))} voxels; a case may have 1 to "
                            f"{volumes.MAX_PIXELS:,}: not read")
        if contract.image_dtype == "uint16":
            turn = orientation.Reorientation(IDENTITY.copy(), s.shape)
        else:
            turn = orientation.dicom_reorientation(s.affine, s.shape, contract.orientation)
        paths = tuple(dict.fromkeys(f.path for f in s.frames))
        cases.append(InputCase(s.uid, "dicom", paths, series=s, turn=turn))
    return cases
