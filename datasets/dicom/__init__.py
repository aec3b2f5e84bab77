"""DICOM studies: image series with their RT Structure Sets or SEGs."""

from .dicom_dataset_builder import DicomStudies

__all__ = ["DicomStudies"]
