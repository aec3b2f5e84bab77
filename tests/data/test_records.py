"""Building records once: a killed build is never trusted and the next one starts clean, a
second process waits for the first, and the records of one source are found again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.data import records
from tf_medseg.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def _records(builder):
    return sorted(p.name for p in builder.data_path.iterdir() if ".tfrecord" in p.name)


@pytest.mark.slow
def test_build_killed_with_sigkill_is_never_trusted_and_reruns(tiny_phantom, tmp_path):
    """kill -9 mid-build leaves only an incomplete.* folder; the next prepare removes it and
    builds the records completely."""
    data_dir = tmp_path / "tfds"
    code = ("from tf_medseg.config import DataConfig; from tf_medseg.data import records; "
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


def test_records_are_found_again_and_data_dir_expands(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = DataConfig(data_dir="~/tfds", phantom_cases=2, phantom_days=1, phantom_slices=8)
    assert records.data_dir(config) == str(tmp_path / "tfds")
    builder = records.build_records(config)
    assert builder.is_prepared() and _records(builder)
    again = records.get_builder(config)
    assert again.is_prepared() and again.info.full_name == builder.info.full_name
    assert not list((tmp_path / "tfds").rglob("incomplete.*"))


def test_a_missing_kaggle_folder_is_one_line(tmp_path):
    from tf_medseg.errors import DataError
    with pytest.raises(DataError, match=r"data.root .*nowhere does not exist; set it to the "
                                        r"Kaggle folder"):
        records.get_builder(DataConfig(source="uwmgi", root=str(tmp_path / "nowhere")))


def test_a_reader_re_running_the_script_refuses_to_wait(tmp_path, monkeypatch):
    # What a spawned reader process is while it re-runs the user's script (CPython's own flag):
    # waiting on the lock its parent holds would hang both for ever.
    import multiprocessing
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    config = DataConfig(data_dir=str(tmp_path), phantom_cases=2, phantom_days=1, phantom_slices=8)
    with pytest.raises(DataError, match="put the script's top-level code under if __name__"):
        records.build_records(config)
    assert not list(tmp_path.rglob("*.tfrecord*"))
