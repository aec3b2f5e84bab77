"""The nnunet builder: an nnU-Net v2 raw folder into records of the cases at their stored grid,
in the file's voxel order, with the label schema and fingerprint in the metadata."""

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records

from synthetic_volumes import write_nnunet


def test_records_hold_the_files_voxels(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_MEDSEG_WORKERS", "2")  # read in worker processes, as a user's build
    root = write_nnunet(tmp_path / "Dataset001_Tiny", cases=2)
    builder = records.build_records(DataConfig(source="nnunet", root=str(root),
                                               data_dir=str(tmp_path / "tfds")))
    assert builder.info.full_name.startswith("nnunet/src_") and builder.VERSION == "2.1.0"
    meta = builder.info.metadata
    assert meta["labels"]["classes"] == ["ball", "box"] and meta["labels"]["metric"] == "volume"
    assert meta["labels"]["channels"] == ["T1", "T2"] and meta["groups"] == ["case_000",
                                                                              "case_001"]
    examples = {e["scan"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    case = examples["case_000"]
    assert case["image"].shape == (32, 28, 6, 2) and case["image"].dtype == np.float32
    assert case["mask"].shape == (32, 28, 6) and case["mask"].dtype == np.uint8
    assert case["spacing"].tolist() == [1.5, 1.5, 4.0]
    np.testing.assert_allclose(case["image"][..., 1], 2 * case["image"][..., 0])
    facts = meta["scans"]["case_000"]
    assert facts["shape"] == [32, 28, 6] and facts["spacing"] == [1.5, 1.5, 4.0]
    assert facts["class_voxels"] == [int((case["mask"] == v).sum()) for v in (1, 2)]
    assert [s["voxels"] > 0 for s in meta["intensity_stats"]] == [True, True]
