"""The gi_phantom builder: the phantom generated in the Kaggle layout, read by the Kaggle reader
into the one record format; the caller's random generators left as they were."""

import os
import random
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records
from tf_medseg.data.features import pack_mask
from tf_medseg.data.sources import kaggle_inventory

ROOT = Path(__file__).resolve().parents[2]


def _records(builder):
    return sorted(p.name for p in builder.data_path.iterdir() if ".tfrecord" in p.name)


def test_gi_phantom_builder(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_MEDSEG_WORKERS", "2")  # read in worker processes, as a user's build
    config = DataConfig(data_dir=str(tmp_path), phantom_cases=2, phantom_days=2,
                        phantom_slices=8, phantom_seed=1)
    random.seed(0)
    np.random.seed(0)
    states = random.getstate(), np.random.get_state()
    builder = records.build_records(config)
    # Building leaves the caller's generators where they were (TFDS draws from random).
    assert random.getstate() == states[0]
    np.testing.assert_equal(np.random.get_state(), states[1])
    assert builder.info.full_name == "gi_phantom/c2_d2_s8_seed1_g1/3.0.0"
    assert _records(builder) and str(builder.data_path).startswith(str(tmp_path))
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    # Records are in TFDS's hashed order (fixed for the data set), one per case-day.
    by_case_day = {e["scan"].decode(): e for e in examples}
    assert sorted(by_case_day) == sorted(builder.info.metadata["case_days"])
    assert examples[0]["image"].dtype == np.uint16 and examples[0]["image"].shape[0] == 8
    assert examples[0]["image"].shape[3] == 1 and examples[0]["spacing"][0] == 3.0
    # The records hold exactly what the Kaggle-layout files say.
    source = builder.info.metadata["source"]
    first = next(kaggle_inventory.iter_scans(source))
    np.testing.assert_array_equal(by_case_day[first.case_day]["image"][..., 0], first.image)
    np.testing.assert_array_equal(by_case_day[first.case_day]["mask"], pack_mask(first.mask))
    # The metadata holds the label schema and every scan's fingerprint.
    meta = builder.info.metadata
    assert meta["labels"]["classes"] == ["large_bowel", "small_bowel", "stomach"]
    facts = meta["scans"][first.case_day]
    assert facts["shape"] == list(first.image.shape) and facts["case"] == first.case
    assert facts["class_voxels"] == [int(n) for n in first.mask.sum(axis=(0, 1, 2))]
    assert meta["intensity_stats"][0]["voxels"] > 0
    # Second use reuses the records.
    mtime = os.stat(builder.data_path).st_mtime_ns
    assert os.stat(records.build_records(config).data_path).st_mtime_ns == mtime
