"""The custom training loop: metrics from counts, and the distributed step on 2 logical CPUs."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.data.sources.kaggle import CLASSES
from tf_medseg.evaluation.metrics import DiceScore, IoUScore
from tf_medseg.training.loop import scores_from_counts

from conftest import ROOT


def test_scores_from_counts_match_the_streaming_metrics():
    rng = np.random.default_rng(0)
    y = (rng.random((4, 16, 16, 3)) > 0.7).astype("float32")
    y[..., 2] = 0  # stomach absent in truth ...
    logits = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    logits[..., 2] = -5  # ... and in prediction: scores 1
    pred = logits > 0
    inter = (pred * y).sum(axis=(0, 1, 2))
    total = pred.sum(axis=(0, 1, 2)) + y.sum(axis=(0, 1, 2))
    logs = scores_from_counts(inter, total, CLASSES, "val_")
    for kind, metric_class in (("dice", DiceScore), ("iou", IoUScore)):
        for index, name in [(None, kind)] + [(c, f"{kind}_{n}") for c, n in enumerate(CLASSES)]:
            metric = metric_class(len(CLASSES), class_index=index)
            metric.update_state(y, logits)
            assert abs(logs[f"val_{name}"] - float(metric.result())) < 1e-6, name
    assert logs["val_dice_stomach"] == 1.0 and logs["val_iou_stomach"] == 1.0


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tf_medseg.config import load_config
    from tf_medseg.training.runtime import get_strategy
    from tf_medseg.training import train
    sys.path.insert(0, "tests")
    from conftest import compiled, kaggle_trainer, tiny_overrides
    from pathlib import Path

    tmp = Path(sys.argv[1])
    overrides = tiny_overrides(tmp) + ["model.batch_norm=false", "train.loss=bce",
                                       "train.precision=float32"]
    config = load_config("tiny.yaml", overrides + ["train.strategy=mirrored"])
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3)).astype("float32")
    y = (rng.random((8, 32, 32, 3)) > 0.8).astype("float32")

    def one_step(strategy):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = compiled(config, "float32", False, steps=10)
        trainer = kaggle_trainer(model, config, strategy)
        batch = next(iter(strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors((x, y)))))
        val = [v.numpy().tolist() for v in trainer.val_step(batch)]
        loss = trainer.train_step(batch)[0].numpy() / 8
        return model.get_weights(), val, float(loss)

    mirrored = get_strategy(config)
    w2, val2, loss2 = one_step(mirrored)
    w1, val1, loss1 = one_step(tf.distribute.get_strategy())
    report = {"replicas": mirrored.num_replicas_in_sync,
              "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)),
              "val_equal": np.allclose(val1[0], val2[0], rtol=1e-5) and val1[1:] == val2[1:],
              "loss": [loss1, loss2]}
    result = train(load_config("tiny.yaml", overrides + [
        "train.strategy=mirrored", "train.epochs=1", "export.saved_model=false",
        "train.overlay_slices=0"]), verbose=0)
    report["runtime"] = json.loads((tmp / "run" / "runtime.json").read_text())
    report["score"] = result["score"]
    print("REPORT " + json.dumps(report))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """One step on 2 replicas (4 + 4 images) equals one step on 8 images on one device,
    and train() runs under MirroredStrategy end to end."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT ")[-1])
    assert report["replicas"] == 2
    assert report["max_weight_diff"] < 1e-5 and report["val_equal"]
    assert abs(report["loss"][0] - report["loss"][1]) < 1e-5
    assert report["runtime"]["strategy"] == "MirroredStrategy"
    assert report["runtime"]["replicas"] == 2 and len(report["runtime"]["devices"]) == 2
    assert 0 <= report["score"] <= 1


def test_float16_steps_go_through_loss_scaling(tmp_path):
    import keras

    from tf_medseg.config import load_config

    from conftest import compiled, kaggle_trainer, tiny_overrides
    config = load_config("tiny.yaml", tiny_overrides(tmp_path))
    model = compiled(config, "mixed_float16", False, steps=10)
    trainer = kaggle_trainer(model, config)
    assert trainer.scaled and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.random((4, 32, 32, 3)), tf.float32),
             tf.constant(rng.random((4, 32, 32, 3)) > 0.8, tf.float32))
    before = [w.copy() for w in model.get_weights()]
    for _ in range(2):
        loss_sum, n, inter, total = trainer.train_step(batch)
    assert np.isfinite(loss_sum.numpy()) and float(n) == 4
    assert int(model.optimizer.iterations) == 2
    assert float(model.optimizer.dynamic_scale) > 1  # the loss was scaled up
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert all(np.isfinite(w).all() for w in model.get_weights())
