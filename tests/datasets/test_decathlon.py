"""The decathlon builder: a Medical Segmentation Decathlon task folder, its modalities on the
4th axis of each image, into records of every modality."""

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records

from synthetic_volumes import write_decathlon


def test_modalities_become_channels(tmp_path):
    root = write_decathlon(tmp_path / "Task01_Tiny", cases=2)
    builder = records.build_records(DataConfig(source="decathlon", root=str(root),
                                               data_dir=str(tmp_path / "tfds")))
    assert builder.info.full_name.startswith("decathlon/src_")
    assert builder.info.metadata["labels"]["channels"] == ["FLAIR", "T1w"]
    (first, *_) = tfds.as_numpy(builder.as_dataset(split="train"))
    assert first["image"].shape[-1] == 2 and first["image"].ndim == 4
    assert first["mask"].shape == first["image"].shape[:3]
    assert set(np.unique(first["mask"])) <= {0, 1, 2}
