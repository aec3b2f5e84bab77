"""Precision policies, loss scaling, XLA flags and the learning-rate schedules."""

import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_medseg.config import load_config
from tf_medseg.training import resolve_runtime

from conftest import compiled, tiny_overrides


def test_precision_policies_loss_scaling_and_jit_flags(tmp_path):
    import keras

    config = load_config("tiny.yaml", tiny_overrides(tmp_path))
    for policy, jit in (("mixed_float16", True), ("mixed_bfloat16", False),
                        ("float32", False)):
        model = compiled(config, policy, jit, steps=10)
        assert model.dtype_policy.name == policy and model.jit_compile is jit
        # float16 needs loss scaling (its range underflows small gradients); bfloat16 not.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
            policy == "mixed_float16")
        assert model.outputs[0].dtype == "float32"
    policy, jit = resolve_runtime()
    cpuinfo = open("/proc/cpuinfo").read() if sys.platform == "linux" else ""
    if not tf.config.list_physical_devices("GPU"):
        assert jit is False
        assert policy == ("mixed_bfloat16" if "amx_bf16" in cpuinfo or "avx512_bf16" in cpuinfo
                          else "float32")


def test_warmup_cosine_step_and_plateau_schedules(tmp_path):
    from tf_medseg.training.optim import Warmup, learning_rate_schedule, make_optimizer
    base = tiny_overrides(tmp_path) + ["train.learning_rate=0.01", "train.epochs=10",
                                       "train.warmup_epochs=2"]
    cosine = learning_rate_schedule(load_config("tiny.yaml", base).train, steps_per_epoch=5)
    values = [float(cosine(s)) for s in range(50)]
    assert values[0] == pytest.approx(0.001) and values[9] == pytest.approx(0.01)
    assert values[10] == pytest.approx(0.01)
    assert values[49] == pytest.approx(0.01 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * 39 / 40))),
                                       rel=1e-4)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))  # decays after the warm-up
    step = learning_rate_schedule(load_config("tiny.yaml", base + [
        "train.schedule=step", "train.step_epochs=3", "train.step_factor=0.1"]).train, 5)
    assert [round(float(step(s)), 6) for s in (10, 24, 25, 40)] == [0.01, 0.01, 0.001, 0.0001]
    config = load_config("tiny.yaml", base + ["train.schedule=plateau"])
    assert learning_rate_schedule(config.train, 5) == 0.01
    assert float(Warmup.from_config(cosine.get_config())(20)) == pytest.approx(values[20])
    # AdamW leaves biases and batch-norm parameters out of the weight decay.
    optimizer = make_optimizer(load_config("tiny.yaml", base).train, 5)
    import keras
    kernel, bias = keras.Variable(np.ones((2, 2)), name="kernel"), keras.Variable(
        np.ones(2), name="bias")
    optimizer.build([kernel, bias])
    assert optimizer._use_weight_decay(kernel) and not optimizer._use_weight_decay(bias)
    assert optimizer.weight_decay == pytest.approx(1e-4)


def test_poly_schedule_and_nesterov_sgd(tmp_path):
    import keras

    from tf_medseg.training.optim import Warmup, learning_rate_schedule, make_optimizer
    base = tiny_overrides(tmp_path) + ["train.learning_rate=0.01", "train.epochs=10",
                                       "train.schedule=poly"]
    # nnU-Net's poly: peak * (1 - step / steps) ** 0.9, no warm-up (100 steps)
    poly = learning_rate_schedule(load_config("tiny.yaml", base + [
        "train.warmup_epochs=0"]).train, steps_per_epoch=10)
    for s in (0, 1, 50, 99):
        assert float(poly(s)) == pytest.approx(0.01 * (1 - s / 100) ** 0.9, rel=1e-5)
    assert float(poly(100)) == 0.0
    # after a warm-up of 10 steps, from the peak over the 90 left
    warm = learning_rate_schedule(load_config("tiny.yaml", base + [
        "train.warmup_epochs=1"]).train, steps_per_epoch=10)
    assert float(warm(4)) == pytest.approx(0.005)
    assert float(warm(55)) == pytest.approx(0.01 * (1 - 45 / 90) ** 0.9, rel=1e-5)
    assert float(Warmup.from_config(warm.get_config())(55)) == pytest.approx(float(warm(55)))
    sgd = make_optimizer(load_config("tiny.yaml", base + [
        "train.optimizer=sgd", "train.momentum=0.99", "train.weight_decay=3e-5",
        "train.clipnorm=12"]).train, 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.99
    assert sgd.weight_decay == pytest.approx(3e-5) and sgd.global_clipnorm == 12
    kernel, gamma = keras.Variable(np.ones((2, 2)), name="kernel"), keras.Variable(
        np.ones(2), name="gamma")
    sgd.build([kernel, gamma])
    assert sgd._use_weight_decay(kernel) and not sgd._use_weight_decay(gamma)
    # One Nesterov step by hand (no decay, no clipping): v = m v - lr g; w += m v - lr g
    plain = make_optimizer(load_config("tiny.yaml", base + [
        "train.optimizer=sgd", "train.momentum=0.9", "train.weight_decay=0",
        "train.warmup_epochs=0", "train.schedule=constant"]).train, 10)
    w = keras.Variable(np.array([1.0, 2.0]), dtype="float32")
    plain.apply_gradients([(tf.constant([0.5, -1.0]), w)])
    np.testing.assert_allclose(w.numpy(), [1.0, 2.0] - 0.01 * 1.9 * np.array([0.5, -1.0]),
                               rtol=1e-6)


def test_nnunet_blocks_train_under_bfloat16_and_xla(tmp_path):
    """Instance norm, leaky ReLU, deep supervision, Nesterov SGD and poly compiled in
    mixed_bfloat16 with XLA: the loss falls and the learning rate follows the poly schedule
    step by step."""
    from conftest import kaggle_trainer
    config = load_config("tiny.yaml", tiny_overrides(tmp_path) + [
        "model.norm=instance", "model.activation=leaky_relu", "model.depth=3",
        "model.deep_supervision=true", "train.optimizer=sgd", "train.schedule=poly",
        "train.learning_rate=0.01", "train.warmup_epochs=0", "train.loss=bce"])
    model = compiled(config, "mixed_bfloat16", True, steps=10)  # 2 epochs: 20 steps
    assert {type(la).__name__ for la in model.layers} >= {"GroupNormalization", "LeakyReLU"}
    assert [tuple(o.shape[1:3]) for o in model.outputs] == [(32, 32), (16, 16)]
    trainer = kaggle_trainer(model, config)
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3)).astype("float32")
    y = (x > 0.7).astype("float32")  # learnable from the pixels themselves
    batch = (tf.constant(x), tf.constant(y))
    losses = [float(trainer.train_step(batch)[0]) for _ in range(8)]
    assert losses[-1] < losses[0]
    lr = model.optimizer.learning_rate
    assert int(model.optimizer.iterations) == 8
    assert float(lr) == pytest.approx(0.01 * (1 - 8 / 20) ** 0.9, rel=1e-4)
