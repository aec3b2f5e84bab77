"""TFDS builder for the UW-Madison GI Tract Image Segmentation data (Kaggle).

The data cannot be downloaded automatically: point ``manual_dir`` (``data.root`` in a config)
at the unpacked Kaggle folder holding ``train.csv`` and ``train/``. Each builder config is keyed
to its source: the config name carries a fingerprint of the folder path, train.csv and the list of
slice files (sizes and modification times), so records built from one folder, or from an earlier
state of it, are never reused for another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import tensorflow_datasets as tfds

from tf_medseg.data.sources import kaggle_inventory

from .. import kaggle_layout


class SourceConfig(tfds.core.BuilderConfig):
    """A builder config tied to one Kaggle-layout folder."""

    def __init__(self, *, root: str, drop_case_days: Sequence[str], unmatched: str, **kwargs):
        super().__init__(**kwargs)
        self.root = root
        self.drop_case_days = tuple(drop_case_days)
        self.unmatched = unmatched


def source_config(root: str, drop_case_days: Sequence[str] = (),
                  unmatched: str = "error") -> SourceConfig:
    """The config for a folder: its name is a fingerprint of the folder's contents and of the
    rules that choose what is read (``drop_case_days``, ``unmatched``)."""
    root = str(Path(root).expanduser().resolve())
    digest = kaggle_inventory.fingerprint(root, drop_case_days, unmatched)
    return SourceConfig(name=f"src_{digest}", description=f"Kaggle-layout folder {root}",
                        root=root, drop_case_days=drop_case_days, unmatched=unmatched)


class UwMadisonGi(tfds.core.GeneratorBasedBuilder):
    """One example per scan (case-day); see ``tf_medseg.data.features``."""

    VERSION = tfds.core.Version("3.0.0")
    RELEASE_NOTES = {
        "1.0.0": "One record per scan: uint16 volume + 3-class masks.",
        "2.0.0": "Raw (not zlib) uint16 volume, bit-packed masks; scans read in parallel.",
        "3.0.0": "The one record format of every source: (D, H, W, 1) uint16 image with its "
                 "3-D spacing, the data set's label schema and fingerprint in the metadata.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download and unzip https://www.kaggle.com/competitions/uw-madison-gi-tract-image-segmentation
    and set data.root (manual_dir) to the folder that holds train.csv and train/.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=kaggle_layout.features(),
            homepage="https://www.kaggle.com/competitions/uw-madison-gi-tract-image-segmentation",
            metadata=tfds.core.MetadataDict(),
            # Shuffled (hashed) record order on purpose: kaggle_layout.py says why.
        )

    def _root(self, dl_manager) -> Path:
        config = self.builder_config
        return Path(getattr(config, "root", None) or dl_manager.manual_dir)

    def _split_generators(self, dl_manager):
        root = self._root(dl_manager)
        config = self.builder_config
        inv = kaggle_layout.inventory(self.info, root, getattr(config, "drop_case_days", ()),
                                      getattr(config, "unmatched", "error"))
        return {"train": self._generate_examples(inv)}

    def _generate_examples(self, inv):
        yield from kaggle_layout.examples(inv, self.info.metadata)
