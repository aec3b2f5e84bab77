"""Where and how training runs: precision policy, XLA, the ``tf.distribute`` strategy, which
process is the chief, and the checks that a batch fits (replicas, memory).

``resolve_runtime`` is what ``auto`` picks on this machine (also reachable as
``tf_medseg.training.resolve_runtime``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tf_medseg.config import Config
from tf_medseg.errors import ConfigError


def _cpu_has_bf16() -> bool:
    """True where oneDNN runs bfloat16 natively (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_runtime() -> tuple[str, bool]:
    """(precision policy name, jit_compile) that ``auto`` picks on this machine.

    GPU of compute capability >= 7.0: mixed_float16 with XLA. CPU with AMX or AVX512-BF16:
    mixed_bfloat16 (1.6 times float32's training speed with oneDNN, measured), no XLA (1.5 to
    2.3 times slower on CPU, measured). Anything else: float32, no XLA.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability", (0, 0))
        return ("mixed_float16" if capability >= (7, 0) else "float32"), True
    return ("mixed_bfloat16" if _cpu_has_bf16() else "float32"), False


def runtime_for(config: Config) -> tuple[str, bool]:
    """The (policy, jit_compile) for a config: ``auto`` values resolved, others as given."""
    auto_policy, auto_jit = resolve_runtime()
    policy = auto_policy if config.train.precision == "auto" else config.train.precision
    jit = auto_jit if config.train.jit_compile == "auto" else bool(config.train.jit_compile)
    return policy, jit


def get_strategy(config: Config) -> tf.distribute.Strategy:
    """``train.strategy``: auto (MirroredStrategy over all GPUs when there are several, else
    the default strategy), default, mirrored (all GPUs, or all logical CPU devices on a machine
    without GPUs), multi_worker (MultiWorkerMirroredStrategy from ``TF_CONFIG``).

    Create it before any other TensorFlow work: MultiWorkerMirroredStrategy requires that.
    """
    name = config.train.strategy
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("train.strategy: multi_worker needs the TF_CONFIG environment "
                              "variable (cluster and task of this worker; see the README)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError("TF_CONFIG: not valid JSON (expected {\"cluster\": {...}, "
                              "\"task\": {\"type\": ..., \"index\": ...}})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default strategy"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the process that writes the run directory: the only one, or the chief of a
    multi-worker cluster (task ``chief``, or worker 0 when the cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def check_global_batch(config: Config, strategy: tf.distribute.Strategy) -> None:
    """Every replica needs at least one example of a global batch (else a one-line error)."""
    replicas = strategy.num_replicas_in_sync
    if config.data.batch_size < replicas:
        raise ConfigError(f"data.batch_size: the global batch ({config.data.batch_size}) must "
                          f"be at least the number of replicas ({replicas})")


# Activations kept for the backward pass, per pixel of the input and per base filter, of the
# U-Nets here (float32 bytes; about 40 tensors of base_filters * 2**l channels at 1/4**l of the
# pixels, summed over the levels), an upper bound that errs high.
_ACTIVATION_BYTES = 48 * 4


def batch_memory(config: Config) -> int:
    """Rough bytes a training batch needs on one device (activations of the forward pass)."""
    voxels = math.prod(config.data.image_size)
    return int(config.data.batch_size * voxels * config.model.base_filters * _ACTIVATION_BYTES)


def check_memory(config: Config) -> None:
    """An image size (or batch) whose training batch cannot fit in this machine's memory is
    refused up front with the estimate, instead of failing (or swapping) minutes later."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = batch_memory(config)
    if need > total:
        size = "x".join(map(str, config.data.image_size))
        raise ConfigError(f"data.image_size: a batch of {config.data.batch_size} at {size} "
                          f"with model.base_filters {config.model.base_filters} needs about "
                          f"{need / 2**30:,.0f} GiB, this machine has {total / 2**30:.0f} GiB; "
                          f"lower data.image_size, data.batch_size or model.base_filters")


def weights_fingerprint(model: keras.Model) -> float:
    """Sum of the absolute values of the trainable weights: equal on workers that trained in
    sync. (Batch-norm moving statistics are not in it: each worker averages its own
    batches.)"""
    return float(sum(np.abs(np.asarray(w, np.float64)).sum()
                     for w in model.trainable_weights))
