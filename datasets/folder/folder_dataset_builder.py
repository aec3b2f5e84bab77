"""TFDS builder for a folder of 2D image/mask pairs (``data.source: folder``).

``data.root`` holds labels.json, images/NAME.png and masks/NAME.png (label maps) or
masks/CLASS/NAME.png (one binary mask per class). See ``tf_medseg.data.sources.volumes`` and
``datasets.volume_layout``. (Named segmentation_folder: TFDS has an ``image_folder`` of its own
for classification.)
"""

from __future__ import annotations

from ..volume_layout import VolumeBuilder


class SegmentationFolder(VolumeBuilder):
    """2D images with label maps or per-class masks."""

    FORMAT = "folder"
