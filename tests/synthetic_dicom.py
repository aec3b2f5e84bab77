"""DICOM MR series written with pydicom for the tests: single-frame series (shuffled file
names, reversed InstanceNumbers, oblique orientations, rescaled pixels) and enhanced
multi-frame images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"


def _dataset(path: Path, sop_class: str, study: str, series: str, frame_of_reference: str):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "MR", "Test^Phantom", "TEST001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = frame_of_reference
    ds.SeriesDescription = "T2 test series"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def rotation(degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of slices tilted by ``degrees`` about the patient's x."""
    a = np.radians(degrees)
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(a), np.sin(a)])


def write_series(folder: Path, volume: np.ndarray, spacing=(2.5, 0.8, 0.9), *, tilt=20.0,
                 origin=(-40.0, 10.0, 5.0), slope=1.0, intercept=0.0, seed=0,
                 series=None) -> dict:
    """Write (slices, rows, columns) uint16 ``volume`` as one MR series in ``folder``: random
    file names, InstanceNumbers counting down, slices ``spacing[0]`` mm apart along the normal
    of rows and columns tilted by ``tilt`` degrees; stored values ``(v - intercept) / slope``.
    Returns the UIDs and geometry (``sop_uids`` in slice order, ``affine``)."""
    from pydicom.uid import generate_uid
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    row_dir, col_dir = rotation(tilt)
    normal = np.cross(row_dir, col_dir)
    study, series = generate_uid(), series or generate_uid()
    frame_of_reference = generate_uid()
    names = rng.permutation(len(volume))
    sop_uids = []
    for k, plane in enumerate(volume):
        path = folder / f"IM{names[k]:04d}"
        ds = _dataset(path, MR_STORAGE, study, series, frame_of_reference)
        ds.InstanceNumber = len(volume) - k
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[0]
                                   * normal]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0])
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.Rows, ds.Columns = plane.shape
        stored = np.round((plane.astype(float) - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(path, enforce_file_format=True)
        sop_uids.append(ds.SOPInstanceUID)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = (normal * spacing[0], col_dir * spacing[1],
                                                   row_dir * spacing[2])
    affine[:3, 3] = origin
    return {"study": study, "series": series, "frame_of_reference": frame_of_reference,
            "sop_uids": sop_uids, "affine": affine}


def write_enhanced(path: Path, volume: np.ndarray, spacing=(3.0, 1.0, 1.0), *, order=None):
    """One enhanced multi-frame MR file of ``volume`` (slices, rows, columns), its frames
    stored in ``order`` (a permutation of the slices), each placed by its functional groups."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _dataset(path, ENHANCED_MR_STORAGE, generate_uid(), generate_uid(), generate_uid())
    order = list(range(len(volume))) if order is None else list(order)
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = len(volume), volume.shape[1:]
    measures, orient = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing[1], spacing[2]], spacing[0]
    orient.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    groups = []
    for k in order:
        position, group = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, float(k * spacing[0])]
        group.PlanePositionSequence = Sequence([position])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.PixelData = np.ascontiguousarray(volume[order].astype(np.uint16)).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_from_nifti(folder: Path, nifti_path: Path, *, seed: int = 0) -> dict:
    """Write a NIfTI volume as the MR series a scanner would have sent before dcm2niix made the
    NIfTI: (slices, rows, columns) with X the columns, Y the rows from the last up and Z the
    slices, positions and directions in LPS from the NIfTI's RAS affine; random file names.
    Returns the UIDs, the stored (slices, rows, columns) volume and its LPS affine."""
    import nibabel as nib
    from pydicom.uid import generate_uid
    img = nib.load(str(nifti_path))
    data = np.asarray(img.dataobj)
    if data.min() < 0 or data.max() > 65535 or not np.array_equal(data, np.rint(data)):
        raise ValueError(f"{nifti_path}: values that are not 16-bit integers")
    ras = np.asarray(img.affine, float)
    ny = data.shape[1]
    # (s, r, c) -> (x, y, z) = (c, ny - 1 - r, s): the voxel-to-LPS affine of the series.
    to_index = np.zeros((4, 4))
    to_index[0, 2] = to_index[2, 0] = to_index[3, 3] = 1.0
    to_index[1, 1], to_index[1, 3] = -1.0, ny - 1
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras @ to_index
    volume = np.ascontiguousarray(np.flip(np.transpose(data, (2, 1, 0)), axis=1))
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))  # slice, row, column
    row_dir, col_dir = lps[:3, 2] / spacing[2], lps[:3, 1] / spacing[1]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    names = rng.permutation(len(volume))
    sop_uids = []
    for k, plane in enumerate(volume):
        path = folder / f"MR{names[k]:05d}.dcm"
        ds = _dataset(path, MR_STORAGE, study, series, frame_of_reference)
        ds.InstanceNumber = k + 1
        ds.SeriesNumber = 3
        ds.ImagePositionPatient = [float(v) for v in lps[:3, :3] @ [k, 0, 0] + lps[:3, 3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0])
        ds.Rows, ds.Columns = plane.shape
        ds.PixelData = plane.astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        sop_uids.append(ds.SOPInstanceUID)
    return {"study": study, "series": series, "sop_uids": sop_uids, "volume": volume,
            "affine": lps}


def write_study(folder: Path, volume: np.ndarray, rois: dict, *, patient: str = "P001",
                seed: int = 0, spacing=(3.0, 1.0, 1.0)) -> dict:
    """An MR series of (slices, rows, columns) ``volume`` and an RT Structure Set with one ROI
    per entry of ``rois`` (name: boolean mask of the volume's shape), as an archive exports a
    study: ``folder/images/`` and ``folder/RS.dcm``."""
    import pydicom

    from tf_medseg.dicom.reader import find_series
    from tf_medseg.dicom.rtstruct import structure_set, write_structure_set
    info = write_series(folder / "images", volume, spacing, tilt=0.0, seed=seed)
    for path in (folder / "images").iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.SeriesNumber = patient, 2
        ds.save_as(path)
    (series,), _ = find_series(folder / "images")
    names = list(rois)
    masks = np.stack([rois[n] for n in names], axis=-1) if names else np.zeros(
        (*volume.shape, 0), bool)
    write_structure_set(structure_set(series, masks, names), folder / "RS.dcm")
    return info


def as_ct(folder: Path) -> None:
    """The series in ``folder`` made a CT series in place (Modality, SOP class, the CT Image
    module's rescale and KVP), as a planning CT arrives."""
    import pydicom
    from pydicom.uid import CTImageStorage
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality, ds.SOPClassUID = "CT", CTImageStorage
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
        ds.save_as(path)


def dciodvfy_errors(path) -> list[str]:
    """The Error lines of dicom3tools' dciodvfy (the DICOM standard's IOD validator) on
    ``path``; the calling test is skipped where dciodvfy is not installed."""
    import shutil
    import subprocess

    import pytest
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed (.ci/run installs it from apt)")
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")]
