"""A predictor scored on a split: every scan whole, by the predictor predict uses, with the data
set's metric; the out-of-fold pass sees (and may replace) each scan's probabilities."""

import numpy as np
import pytest

from tf_medseg.config import load_config
from tf_medseg.data.dataset import DataSet
from tf_medseg.evaluation.evaluate import evaluate
from tf_medseg.evaluation.scoring import Scoring
from tf_medseg.inference.predictor import Predictor

from conftest import kaggle_contract, network, tiny_overrides


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = load_config("tiny.yaml", tiny_overrides(tmp_path_factory.mktemp("ev")))
    import keras
    keras.utils.set_random_seed(0)
    return config, DataSet.open(config.data), network(config)


def test_every_validation_scan_is_scored(tiny):
    config, data, model = tiny
    predictor = Predictor.of_model(model, kaggle_contract(config))
    seen = {}

    def store(name, probs, true, spacing):
        seen[name] = (probs.shape, true.shape, tuple(spacing))
        return np.zeros_like(probs)  # score these instead: nothing predicted
    result, rows = evaluate(predictor, data, "val", on_scan=store)
    assert sorted(seen) == sorted(s.name for s in data.split_scans("val"))
    shape = next(iter(seen.values()))
    assert shape[0] == shape[1] and shape[0][-1] == 3 and shape[2][0] == 3.0
    assert result["dice"] == 0.0 and result["hausdorff"] == 1.0 and len(rows) == 4


def test_scans_of_several_calls_add_up(tiny):
    config, data, model = tiny
    predictor = Predictor.of_model(model, kaggle_contract(config))
    shared = Scoring(data.labels)
    truth = lambda name, probs, true, spacing: true.astype(np.float32)  # noqa: E731
    _, rows = evaluate(predictor, data, "val", scoring=shared, on_scan=truth)
    assert len(rows) == 4
    other_fold = data.configured(
        load_config("tiny.yaml", [f"data.data_dir={config.data.data_dir}", "data.fold=1"]).data)
    both, rows = evaluate(predictor, other_fold, "val", scoring=shared, on_scan=truth)
    assert sorted(r["case_day"] for r in rows) == sorted(s.name for s in data.scans)
    assert both["score"] == 1.0 and sum(r["slices"] for r in rows) == 96
