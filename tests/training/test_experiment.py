"""The experiment: one config's data set, head, data sets, model, trainer, callbacks, contract
and scoring, written once; a trial or a fold reuses its records."""

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.training.experiment import Experiment
from tf_medseg.training.optim import building

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiment")
    return Experiment(load_config("tiny.yaml", tiny_overrides(tmp) + ["data.context=[-1,0,1]"]))


def test_shapes_head_and_contract(experiment):
    assert experiment.head == "sigmoid" and experiment.num_outputs == 3
    assert experiment.input_shape == (32, 32, 3)
    contract = experiment.contract
    assert contract.image_dtype == "uint16" and contract.context == (-1, 0, 1)
    assert contract.labels.normalization == ("percentile",) and contract.labels.stats[0]


def test_data_model_trainer_and_score(experiment):
    strategy = tf.distribute.get_strategy()
    train_ds, val_ds = experiment.datasets(strategy)
    steps = experiment.steps_per_epoch(train_ds)
    assert steps == 6  # 48 training slices in batches of 8
    model = experiment.model("float32", False, steps)
    assert model.output_shape == (None, 32, 32, 3) and model.optimizer is not None
    trainer = experiment.trainer(model, strategy)
    loss_sum, n, *_ = trainer.train_step(next(iter(train_ds)))
    assert np.isfinite(float(loss_sum)) and float(n) == 8
    result, rows = experiment.score(model, threshold=0.999)  # untrained: masks all but empty
    assert len(rows) == 4 and 0 <= result["score"] <= 1
    callbacks, guard = experiment.callbacks(steps, objective="val_score")
    assert type(callbacks[0]).__name__ == "ValidationScore" and guard in callbacks


def test_a_trial_reuses_the_records_and_a_network_of_your_own_compiles(experiment):
    trial = experiment.configured(load_config("tiny.yaml", [
        f"data.data_dir={experiment.config.data.data_dir}", "data.context=[0]",
        "model.output=sigmoid"]))
    assert trial.dataset.builder is experiment.dataset.builder and trial.input_shape[-1] == 1
    import keras
    with building("float32", 0):
        inputs = keras.Input(trial.input_shape)
        own = keras.Model(inputs, keras.layers.Conv2D(trial.num_outputs, 1)(inputs))
    compiled = trial.compile(own, False, 4)
    assert compiled.loss.__name__.startswith("1bce") and compiled.optimizer is not None


def test_val_steps_takes_every_kth_validation_batch(experiment, tmp_path):
    """train.val_steps: a spread sample of the validation batches (every k-th), the whole set
    when it is no longer than the cap."""
    strategy = tf.distribute.get_strategy()
    _, whole = experiment.datasets(strategy)
    batches = [y.numpy() for _, y in whole]
    capped = experiment.configured(load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "data.context=[-1,0,1]", "train.val_steps=2"]))
    _, sample = capped.datasets(strategy)
    taken = [y.numpy() for _, y in sample]
    k = -(-len(batches) // 2)
    assert len(batches) > 2 and len(taken) == len(batches[::k]) <= 2
    assert all(np.array_equal(a, b) for a, b in zip(taken, batches[::k]))
    wide = experiment.configured(load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "data.context=[-1,0,1]", f"train.val_steps={len(batches)}"]))
    assert len(list(wide.datasets(strategy)[1])) == len(batches)


def test_an_unsized_config_is_refused_in_one_line(tmp_path):
    from tf_medseg.errors import ConfigError
    config = load_config("tiny.yaml", tiny_overrides(tmp_path) + ["data.image_size=auto"])
    with pytest.raises(ConfigError, match=r"^data.image_size: auto is sized from the data set "
                                          r"by tf_medseg.planning.planner.planned_config"):
        Experiment(config)
