"""TFDS builder for a Medical Segmentation Decathlon task folder (``data.source: decathlon``).

``data.root`` holds dataset.json (modality, labels, training); several modalities are the 4th
axis of each image. See ``tf_medseg.data.sources.volumes`` and ``datasets.volume_layout``.
"""

from __future__ import annotations

from ..volume_layout import VolumeBuilder


class Decathlon(VolumeBuilder):
    """Medical Segmentation Decathlon: NIfTI volumes, 4-D for several modalities."""

    FORMAT = "decathlon"
