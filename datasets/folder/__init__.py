"""Folders of 2D image/mask pairs."""

from .folder_dataset_builder import SegmentationFolder

__all__ = ["SegmentationFolder"]
