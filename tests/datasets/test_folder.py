"""The segmentation_folder builder: 2D image/mask pairs into one-slice records; per-class masks
as bits, colour images as three channels."""

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records

from synthetic_volumes import write_folder


def test_per_class_masks_are_bits_of_one_slice_records(tmp_path):
    root = write_folder(tmp_path / "pngs", per_class=True, colour=True, images=2)
    builder = records.build_records(DataConfig(source="folder", root=str(root),
                                               data_dir=str(tmp_path / "tfds")))
    assert builder.info.full_name.startswith("segmentation_folder/src_")
    labels = builder.info.metadata["labels"]
    assert labels["encoding"] == "bits" and labels["channels"] == ["R", "G", "B"]
    (first, *_) = tfds.as_numpy(builder.as_dataset(split="train"))
    assert first["image"].shape == (32, 28, 1, 3) and first["mask"].shape == (32, 28, 1)
    assert first["mask"].dtype == np.uint8 and first["mask"].max() <= 3
    assert first["spacing"].tolist() == [1.0, 1.0, 1.0]
