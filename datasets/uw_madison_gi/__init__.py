"""The UW-Madison GI Tract Image Segmentation data (Kaggle, manual download)."""

from .uw_madison_gi_dataset_builder import UwMadisonGi, source_config

__all__ = ["UwMadisonGi", "source_config"]
