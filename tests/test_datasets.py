"""Both TFDS builders write real TFRecord shards into tmp_path and read back."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tf_medseg import records
from tf_medseg.config import DataConfig
from tf_medseg.data import kaggle_inventory
from tf_medseg.data.features import pack_mask

ROOT = Path(__file__).resolve().parents[1]


def _records(builder):
    return sorted(p.name for p in builder.data_path.iterdir() if ".tfrecord" in p.name)


def test_gi_phantom_builder(tmp_path):
    config = DataConfig(data_dir=str(tmp_path), phantom_cases=2, phantom_days=2,
                        phantom_slices=8, phantom_seed=1)
    random.seed(0)
    np.random.seed(0)
    states = random.getstate(), np.random.get_state()
    builder = records.build_records(config)
    # Building leaves the caller's generators where they were (TFDS draws from random).
    assert random.getstate() == states[0]
    np.testing.assert_equal(np.random.get_state(), states[1])
    assert builder.info.full_name == "gi_phantom/c2_d2_s8_seed1_g1/2.0.0"
    assert _records(builder) and str(builder.data_path).startswith(str(tmp_path))
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    # Records are in TFDS's hashed order (fixed for the data set), one per case-day.
    by_case_day = {e["case_day"].decode(): e for e in examples}
    assert sorted(by_case_day) == sorted(builder.info.metadata["case_days"])
    assert examples[0]["image"].dtype == np.uint16 and examples[0]["image"].shape[0] == 8
    # The records hold exactly what the Kaggle-layout files say.
    source = builder.info.metadata["source"]
    first = next(kaggle_inventory.iter_scans(source))
    np.testing.assert_array_equal(by_case_day[first.case_day]["image"], first.image)
    np.testing.assert_array_equal(by_case_day[first.case_day]["mask"], pack_mask(first.mask))
    # Second use reuses the records.
    mtime = os.stat(builder.data_path).st_mtime_ns
    assert os.stat(records.build_records(config).data_path).st_mtime_ns == mtime


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
    assert example["case_day"] == b"case139_day0"
    assert example["image"].shape == (108, 234, 234)
    # Masks are bit-packed: bit k is class k; 117 (slice, class) pairs are not empty.
    unpacked = (example["mask"][..., None] & np.array([1, 2, 4], np.uint8)) > 0
    assert int(unpacked.any(axis=(1, 2)).sum()) == 117


@pytest.mark.slow
def test_build_killed_with_sigkill_is_never_trusted_and_reruns(tiny_phantom, tmp_path):
    """kill -9 mid-build leaves only an incomplete.* folder; the next prepare removes it and
    builds the records completely."""
    data_dir = tmp_path / "tfds"
    code = ("from tf_medseg.config import DataConfig; from tf_medseg import records; "
            f"records.build_records(DataConfig(source='uwmgi', root={str(tiny_phantom)!r}, "
            f"data_dir={str(data_dir)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(data_dir.glob("uw_madison_gi/*/incomplete.*")) and time.time() < deadline:
        assert proc.poll() is None, "the build ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its reader processes
    proc.wait()
    config = DataConfig(source="uwmgi", root=str(tiny_phantom), data_dir=str(data_dir))
    assert not records.get_builder(config).is_prepared()
    leftovers = list(data_dir.glob("uw_madison_gi/*/incomplete.*"))
    assert leftovers
    builder = records.build_records(config)
    assert builder.is_prepared() and not any(p.exists() for p in leftovers)
    assert len(list(tfds.as_numpy(builder.as_dataset(split="train")))) == 8
