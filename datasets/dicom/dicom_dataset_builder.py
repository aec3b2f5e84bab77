"""TFDS builder for a folder of DICOM studies (``data.source: dicom``).

``data.root`` holds image series, each with an RT Structure Set or DICOM SEG that references it;
``data.roi_map`` names each class's ROIs. See ``tf_medseg.dicom.studies`` for what
is read and checked, ``datasets.volume_layout`` for the records.
"""

from __future__ import annotations

from ..volume_layout import VolumeBuilder


class DicomStudies(VolumeBuilder):
    """DICOM image series with their structure sets: one record per series."""

    FORMAT = "dicom"
