"""The configured data set: folds by patient, splits, slices counted from the metadata."""

import pytest

from tf_medseg.config import load_config
from tf_medseg.data import dataset as dataset_module
from tf_medseg.data.dataset import DataSet
from tf_medseg.errors import ConfigError, DataError

from conftest import tiny_overrides


def test_folds_are_grouped_by_case_and_cover_everything():
    cases = [3, 5, 8, 13, 21, 34, 55]
    seen = []
    for fold in range(3):
        train, val = dataset_module.fold_cases(cases, fold, 3)
        assert not set(train) & set(val) and sorted(train + val) == cases
        seen += val
    assert sorted(seen) == cases
    with pytest.raises(DataError, match="fewer than data.num_folds"):
        dataset_module.fold_cases([1, 2], 0, 3)


def test_splits_and_counts_come_from_the_metadata(tmp_path):
    config = load_config("tiny.yaml", tiny_overrides(tmp_path))
    data = DataSet.open(config.data)
    assert data.cases == [1, 2, 3, 4] and data.labels.metric == "competition"
    train, val = data.split_cases("train"), data.split_cases("val")
    assert sorted(train + val) == data.cases and not set(train) & set(val)
    assert {s.case for s in data.split_scans("val")} == set(val)
    assert data.slices("all") == (4 * 2 * 12, sum(s.organ_slices[0] for s in data.scans))
    # 3D patches an epoch draws: per scan as many as tile its slices x rows x columns
    tiles = [-(-12 // 8) * -(-s.shape[1] // 32) * -(-s.shape[2] // 32) for s in data.scans]
    assert data.patches("all", (8, 32, 32)) == sum(tiles) and len(set(tiles)) > 1
    scan = data.scans[0]
    assert scan.spacing[0] == 3.0 and data.axis(scan) == 0  # cut across the slices
    assert str(data.image_dtype) == "uint16"
    names = [ex["scan"].numpy().decode() for ex in data.records("val")]
    assert sorted(names) == sorted(s.name for s in data.split_scans("val"))


def test_configured_keeps_the_records_and_refuses_other_sources(tmp_path):
    config = load_config("tiny.yaml", tiny_overrides(tmp_path))
    data = DataSet.open(config.data)
    other = load_config("tiny.yaml", tiny_overrides(tmp_path) + ["data.fold=1",
                                                                  "data.normalization=zscore"])
    refold = data.configured(other.data)
    assert refold.builder is data.builder and refold.labels.normalization == ("zscore",)
    assert refold.split_cases("val") == data.split_cases("train")
    moved = load_config("tiny.yaml", tiny_overrides(tmp_path) + ["data.phantom_seed=5"])
    with pytest.raises(ConfigError, match="^data.phantom_seed: 5 names other records"):
        data.configured(moved.data)


def test_a_fine_spacing_that_would_blow_slices_up_is_one_line(tmp_path):
    config = load_config("tiny.yaml", tiny_overrides(tmp_path))
    data = DataSet.open(config.data)
    scan = data.scans[0]
    fine = load_config("tiny.yaml", tiny_overrides(tmp_path) + ["data.spacing=[0.01,0.01]"])
    with pytest.raises(ConfigError) as err:
        data.configured(fine.data)
    message = str(err.value)
    assert message.startswith("data.spacing [0.01, 0.01]: scan ") and "over 4096" in message
    rows = round(scan.shape[1] * scan.spacing[1] / 0.01)
    assert f"would become {rows} x " in message and "median" in message
    coarse = load_config("tiny.yaml", tiny_overrides(tmp_path) + ["data.spacing=[3,3]"])
    assert data.configured(coarse.data).config.spacing == (3.0, 3.0)
