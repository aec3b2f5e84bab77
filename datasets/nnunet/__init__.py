"""Data sets in nnU-Net v2 raw format."""

from .nnunet_dataset_builder import Nnunet

__all__ = ["Nnunet"]
