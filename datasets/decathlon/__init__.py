"""Medical Segmentation Decathlon task folders."""

from datasets.decathlon.decathlon_dataset_builder import Decathlon

__all__ = ["Decathlon"]
