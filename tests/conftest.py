"""Shared fixtures: tiny phantoms, the real sample (skipped where absent), tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "uwmgi_sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real competition sample in ../shared (absent on a user's machine)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"real sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    """4 cases x 2 days x 12 slices, both image sizes, in the Kaggle layout."""
    from tf_medseg.data.phantom import write_phantom
    return write_phantom(tmp_path_factory.mktemp("phantom") / "kaggle", cases=4, days=2,
                         slices=12, seed=3)


def tiny_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a run that takes seconds: 32x32 px, base_filters 4, depth 2."""
    return [f"data.data_dir={tmp_path / 'tfds'}", "data.phantom_cases=4",
            "data.phantom_days=2", "data.phantom_slices=12", "data.image_size=[32,32]",
            "data.batch_size=8", "data.num_folds=2", "model.base_filters=4", "model.depth=2",
            "train.epochs=2", f"train.run_dir={tmp_path / 'run'}", "train.max_minutes=null"]


def tiny_train_args(tmp_path: Path, *extra: str) -> list[str]:
    """``train.py`` arguments for a tiny run (see :func:`tiny_overrides`)."""
    return ["train.py", "--config", "unet.yaml", "--set", *tiny_overrides(tmp_path), *extra]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS`` run from the project folder, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny finished run, shared by the tests that only read it: (config, run folder,
    the metrics train() returned)."""
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    tmp = tmp_path_factory.mktemp("e2e")
    config = load_config("unet.yaml", tiny_overrides(tmp))
    result = train(config, verbose=0)
    return config, tmp / "run", result


@pytest.fixture(scope="session")
def tiny_cv(tiny_run, tmp_path_factory):
    """A tiny two-fold cross-validation (``--folds all``) whose fold 0 is the shared tiny run
    (the same config), its process killed (SIGKILL) between the folds and rerun in-process
    to the end: a dict with ``config``, ``run`` (the folder), ``report`` (cv/metrics.json),
    ``killed`` and ``resumed`` (the two outputs), ``fold0_before`` (fold_0/metrics.json at
    the kill) and ``returncode``."""
    import contextlib
    import io
    import shutil
    import signal

    from tf_medseg.config import load_config
    from tf_medseg.cv import cross_validate
    _, tiny_dir, _ = tiny_run
    tmp = tmp_path_factory.mktemp("cv")
    run = tmp / "run"
    shutil.copytree(tiny_dir, run / "fold_0", ignore=shutil.ignore_patterns(".lock"))
    # The records of the tiny run: the same data (data.data_dir may change between reruns).
    overrides = [*tiny_overrides(tmp), f"data.data_dir={tiny_dir.parent / 'tfds'}"]
    proc = subprocess.Popen([sys.executable, "train.py", "--config", "unet.yaml", "--set",
                             *overrides, "--folds", "all"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "=== Fold 1 (2 of 2)" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    fold0 = (run / "fold_0" / "metrics.json").read_bytes()
    config = load_config("unet.yaml", overrides)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = cross_validate(config, [0, 1])
    return {"config": config, "run": run, "report": report, "killed": "".join(lines),
            "resumed": out.getvalue(), "fold0_before": fold0, "returncode": proc.returncode}
