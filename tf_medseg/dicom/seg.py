"""DICOM Segmentation objects (highdicom) of masks on a DICOM image series: one segment per
class, BINARY (classes may overlap) or LABELMAP (exclusive classes), each frame referencing
its source image, the organ coded in SNOMED CT where the class name is a known organ (else a
generic tissue with the class name as its label), the algorithm named as automatic.

:func:`segmentation` makes it, :func:`write_segmentation` saves it atomically; highdicom reads
it back (``highdicom.seg.segread``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tf_medseg.dicom.reader import DicomSeries, write_dicom

# SNOMED CT codes of the organs tf_medseg's data sets name (class names, lower case).
ORGANS = {"stomach": ("69695003", "Stomach"), "small_bowel": ("30315005", "Small intestine"),
          "large_bowel": ("14742008", "Large intestine"), "liver": ("10200004", "Liver"),
          "right_kidney": ("9846003", "Right kidney"), "left_kidney": ("18639004",
                                                                       "Left kidney"),
          "kidney": ("64033007", "Kidney"), "spleen": ("78961009", "Spleen"),
          "pancreas": ("15776009", "Pancreas"), "heart": ("80891009", "Heart")}
TISSUE = ("85756007", "Tissue")


# Type 2 attributes of the patient and study modules (present, perhaps empty) that highdicom
# copies from the source images: an archive's files may leave them out.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
         "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _source_images(series: DicomSeries) -> list:
    """The series' headers (read again, the files untouched) as highdicom wants its sources,
    with the type 2 attributes it copies present."""
    import pydicom
    paths = list(dict.fromkeys(f.path for f in series.frames))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    for ds in sources:
        for key in TYPE2:
            if key not in ds:
                setattr(ds, key, "")
    return sources


def segmentation(series: DicomSeries, masks: np.ndarray, classes, *, exclusive: bool = False,
                 software: str = "tf_medseg"):
    """The highdicom Segmentation of boolean (slices, rows, columns, K) ``masks`` on
    ``series``; ``exclusive`` classes are written as one LABELMAP, else BINARY segments."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid
    masks = np.asarray(masks, bool)
    if masks.shape[:1] != (len(series.frames),) or masks.shape[-1] != len(classes):
        raise ValueError(f"masks {masks.shape} for {len(series.frames)} frames and "
                         f"{len(classes)} classes")
    sources = _source_images(series)
    if len(sources) == len(series.frames):  # single-frame images: the masks in their order
        by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
        sources = [by_uid[f.sop_uid] for f in series.frames]
    else:  # one multi-frame image: the masks in the order of its frames
        order = np.argsort([f.index for f in series.frames])
        masks = masks[order]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=software, family=codes.cid7162.ArtificialIntelligence, version="1")
    descriptions = []
    for k, name in enumerate(classes):
        code, meaning = ORGANS.get(str(name).lower(), TISSUE)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=k + 1, segment_label=str(name)[:64],
            segmented_property_category=codes.SCT.AnatomicalStructure if code != TISSUE[0]
            else codes.SCT.Tissue,
            segmented_property_type=hd.sr.CodedConcept(code, "SCT", meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    if exclusive:
        labels = np.zeros(masks.shape[:3], np.uint8)
        for k in range(masks.shape[-1]):
            labels[masks[..., k]] = k + 1
        pixels, kind = labels, hd.seg.SegmentationTypeValues.LABELMAP
    else:
        pixels, kind = masks.astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=998, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="tf_medseg", manufacturer_model_name=software, software_versions="1",
        device_serial_number="0", omit_empty_frames=False,
        content_description="automatic segmentation, not reviewed",
        content_label="TF_MEDSEG")


def write_segmentation(seg, path: Path) -> Path:
    """``seg`` saved at ``path`` atomically (:func:`tf_medseg.dicom.reader.write_dicom`)."""
    return write_dicom(seg, path)
