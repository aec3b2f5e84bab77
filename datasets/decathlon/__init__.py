"""Medical Segmentation Decathlon task folders."""

from .decathlon_dataset_builder import Decathlon

__all__ = ["Decathlon"]
