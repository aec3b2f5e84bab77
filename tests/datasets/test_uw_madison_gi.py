"""The uw_madison_gi builder: a Kaggle-layout folder into records keyed to its files; the real
competition slices and masks read back exactly."""

import shutil
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records

ROOT = Path(__file__).resolve().parents[2]


def _records(builder):
    return sorted(p.name for p in builder.data_path.iterdir() if ".tfrecord" in p.name)


def test_uw_madison_gi_builder_keyed_to_source(tiny_phantom, tmp_path):
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_phantom, root)
    config = DataConfig(source="uwmgi", root=str(root), data_dir=str(tmp_path / "tfds"))
    builder = records.build_records(config)
    assert builder.info.full_name.startswith("uw_madison_gi/src_")
    assert len(builder.info.metadata["case_days"]) == 8 and _records(builder)
    # Changing a file in the folder gives another config: old records are never reused.
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("case1_day0_slice_0001,stomach,",
                                           "case1_day0_slice_0001,stomach,1 3"))
    assert records.get_builder(config).info.full_name != builder.info.full_name


def test_uw_madison_gi_on_real_slices(sample_dir, tmp_path):
    config = DataConfig(source="uwmgi", root=str(sample_dir / "case139_day0_8bit"),
                        data_dir=str(tmp_path))
    builder = records.build_records(config)
    (example,) = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert example["scan"] == b"case139_day0"
    assert example["image"].shape == (108, 234, 234, 1)
    # Masks are bit-packed: bit k is class k; 117 (slice, class) pairs are not empty.
    unpacked = (example["mask"][..., None] & np.array([1, 2, 4], np.uint8)) > 0
    assert int(unpacked.any(axis=(1, 2)).sum()) == 117
