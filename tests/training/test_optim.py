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
