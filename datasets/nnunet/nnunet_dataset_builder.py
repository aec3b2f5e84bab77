"""TFDS builder for a data set in nnU-Net v2 raw format (``data.source: nnunet``).

``data.root`` is a ``DatasetXXX_Name/`` folder (dataset.json, imagesTr/, labelsTr/); see
``tf_medseg.data.sources.volumes`` for what is read and checked, ``datasets.volume_layout`` for the
records.
"""

from __future__ import annotations

from ..volume_layout import VolumeBuilder


class Nnunet(VolumeBuilder):
    """nnU-Net v2 raw: NIfTI volumes (one file per channel) or 2D PNG/TIF images."""

    FORMAT = "nnunet"
