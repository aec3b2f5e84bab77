"""Build the configured data set's TFRecord shards (once).

:class:`tf_medseg.data.dataset.DataSet` calls :func:`build_records` (its one caller) before
anything else is done with a data set: the first time it runs the TFDS builder
(``gi_phantom``, ``uw_madison_gi``, ``nnunet``, ``decathlon`` or ``segmentation_folder``),
which validates the source and writes versioned TFRecord shards under ``data.data_dir``; later
runs find them and reuse them.

A build killed at any point (even with kill -9) leaves nothing that is reused: TFDS writes into
an ``incomplete.*`` folder and renames it only when complete. The next build takes a lock on the
dataset's folder, removes such leftovers (they hold up to the size of the data set) and builds
again; a second process preparing the same data meanwhile waits for the first, but a reader
process re-running the user's script while it starts (a script without a main guard) is
refused in one line: it would wait for ever on the lock of the parent that waits for it.

Preparing leaves the process's random generators as it found them: whether a run built the
records or found them changes nothing it draws.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock, leftovers are still never trusted
    fcntl = None

import numpy as np
import tensorflow_datasets as tfds

from tf_medseg.config import DataConfig
from tf_medseg.errors import DataError
from tf_medseg.resources import builders


def _volume_class(source: str) -> type:
    """The builder of a volume source; only its module is imported."""
    if source == "nnunet":
        return builders("nnunet").Nnunet
    if source == "decathlon":
        return builders("decathlon").Decathlon
    if source == "dicom":
        return builders("dicom").DicomStudies
    return builders("folder").SegmentationFolder


def _volume_builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    wanted = builders("volume_layout").volume_config(config.source, config.root,
                                                     config.group_pattern, config.roi_map,
                                                     config.modality)
    if config.source == "folder" and not config.group_pattern:
        print("Note: data.group_pattern is not set, so every image counts as its own patient "
              "in the folds; set it if several images come from one patient", flush=True)
    return _volume_class(config.source)(config=wanted, data_dir=data_dir(config))


def data_dir(config: DataConfig) -> str:
    return os.path.expanduser(config.data_dir)


def get_builder(config: DataConfig) -> tfds.core.DatasetBuilder:
    """The TFDS builder of the configured source (not yet prepared)."""
    if config.source == "phantom":
        phantom = builders("gi_phantom")
        wanted = phantom.phantom_config(config.phantom_cases, config.phantom_days,
                                        config.phantom_slices, config.phantom_seed)
        # TFDS wants a registered config by name, and any other as an object.
        known = wanted.name in phantom.GiPhantom.builder_configs
        return phantom.GiPhantom(config=wanted.name if known else wanted,
                                 data_dir=data_dir(config))
    if config.source in ("nnunet", "decathlon", "folder", "dicom"):
        return _volume_builder(config)
    root = Path(config.root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data.root {root} {what}; set it to the Kaggle folder holding "
                        f"train.csv and train/")
    kaggle = builders("uw_madison_gi")
    return kaggle.UwMadisonGi(config=kaggle.source_config(str(root), config.drop_case_days,
                                                          config.unmatched),
                              data_dir=data_dir(config))


@contextlib.contextmanager
def _exclusive(folder: Path):
    """Hold an exclusive lock on ``folder`` (released by the OS if the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".prepare.lock", "a") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"Waiting for another process preparing {folder} ...", flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _caller_random_state():
    """Python's and NumPy's global random states as the caller left them, after the build:
    TFDS names its temporary folder with ``random.choice``, so a build would otherwise move
    the generator a caller seeded, and the first run of a script (the one that builds) would
    draw other weights than every later run."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _remove_leftovers(folder: Path) -> None:
    for leftover in sorted(folder.glob("incomplete.*")):
        print(f"Removing {leftover.name}, left by an interrupted build", flush=True)
        shutil.rmtree(leftover, ignore_errors=True)


def build_records(config: DataConfig) -> tfds.core.DatasetBuilder:
    """Build the records if they are not there yet; return the ready builder."""
    builder = get_builder(config)
    if builder.is_prepared():
        return builder
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A reader process re-running the user's script while it starts (spawn): it would
        # wait for ever on the lock its parent holds while the parent waits for it.
        raise DataError(f"{builder.info.full_name}: records are being prepared, and this is a "
                        f"reader process starting up, re-running the script that asked for "
                        f"them; put the script's top-level code under "
                        f"if __name__ == '__main__':")
    config_dir = Path(builder.data_dir).parent  # data_dir/name/config/version
    with _exclusive(config_dir):
        if not builder.is_prepared():  # another process may have built it meanwhile
            _remove_leftovers(config_dir)
            print(f"Preparing {builder.info.full_name} in {builder.data_dir} (first use only)",
                  flush=True)
            download_config = tfds.download.DownloadConfig(
                manual_dir=config.root if config.source == "uwmgi" else None,
                try_download_gcs=False,  # custom data sets: never look on the network
            )
            # One progress bar of our own (scans and slices, with a total); TFDS's own bars
            # count examples without a total and interleave with it.
            tfds.disable_progress_bar()
            if not os.environ.get("TF_MEDSEG_VERBOSE"):
                # TFDS's "Downloading and preparing dataset Unknown size (download: Unknown
                # size, ...)" and "... downloaded and prepared" speak of a download that a
                # local folder never has; the line above and the progress bar say it.
                builder._log_download_bytes = builder._log_download_done = lambda: None
            with _caller_random_state():
                builder.download_and_prepare(download_config=download_config)
            return builder
    # Another process built it meanwhile: a new builder reads the finished records' info
    # (this one was made before they existed and has no metadata).
    return get_builder(config)
