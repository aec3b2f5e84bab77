"""Prepare the configured data set as TFRecord shards (once), and open it.

``train.py`` calls :func:`prepare` before training: the first time it runs the TFDS builder
(``gi_phantom`` or ``uw_madison_gi``), which validates the source and writes versioned TFRecord
shards under ``data.data_dir``; later runs find them and reuse them. TFDS writes into a
temporary folder and renames it when complete, so a killed build leaves nothing that is reused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.errors import DataError

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _import_builders():
    # The builders live in the top-level datasets/ folder beside the package.
    if str(_PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(_PROJECT_ROOT))
    from datasets.gi_phantom import GiPhantom, phantom_config
    from datasets.uw_madison_gi import UwMadisonGi, source_config
    return GiPhantom, phantom_config, UwMadisonGi, source_config


def data_dir(config: DataConfig) -> str:
    return os.path.expanduser(config.data_dir)


def get_builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    """The TFDS builder of the configured source (not yet prepared)."""
    GiPhantom, phantom_config, UwMadisonGi, source_config = _import_builders()
    if config.source == "phantom":
        wanted = phantom_config(config.phantom_cases, config.phantom_days,
                                config.phantom_slices, config.phantom_seed)
        # TFDS wants a registered config by name, and any other as an object.
        known = wanted.name in GiPhantom.builder_configs
        return GiPhantom(config=wanted.name if known else wanted, data_dir=data_dir(config))
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} does not exist; set it to the Kaggle folder "
                        f"holding train.csv and train/")
    return UwMadisonGi(config=source_config(str(root), config.drop_case_days),
                       data_dir=data_dir(config))


def prepare(config: DataConfig) -> tfds.core.DatasetBuilder:
    """Build the records if they are not there yet; return the ready builder."""
    builder = get_builder(config)
    if not builder.is_prepared():
        print(f"Preparing {builder.info.full_name} in {builder.data_dir} (first use only)",
              flush=True)
    download_config = tfds.download.DownloadConfig(
        manual_dir=config.root if config.source == "uwmgi" else None,
        try_download_gcs=False,  # custom data sets: never look on the network
    )
    builder.download_and_prepare(download_config=download_config)
    return builder
