"""Shared fixtures: tiny phantoms, the real sample (skipped where absent), tiny configs."""

from __future__ import annotations

import os
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
