"""The built-in synthetic abdominal MRI data set, generated in the Kaggle layout."""

from .gi_phantom_dataset_builder import GiPhantom, phantom_config

__all__ = ["GiPhantom", "phantom_config"]
