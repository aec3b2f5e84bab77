"""Training: runtime choice (precision, XLA, strategy), the Keras fit loop, outputs.

Run directory (``train.run_dir``)::

    config.yaml     the resolved config
    runtime.json    precision policy, jit_compile and strategy picked, and why
    logs/           TensorBoard (train/ and validation/)
    checkpoints/    best.weights.h5 (best validation Dice) and backup/ (crash recovery)
    history.csv     one row per epoch
    metrics.json    competition metric of the kept model on the validation cases
    saved_model/    the export, with metadata.json
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.config import Config, dump_config
from tf_medseg.errors import ConfigError, TrainingError


# ------------------------------------------------------------------------------------ runtime

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
    mixed_bfloat16 (about twice float32's speed with oneDNN), no XLA (not faster on CPU when
    measured). Anything else: float32, no XLA.
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
    """``train.strategy``: auto (mirrored over several GPUs, else default), default, mirrored."""
    name = config.train.strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        raise ConfigError("train.strategy: multi_worker is not supported yet (Keras fit fails "
                          "under MultiWorkerMirroredStrategy, keras-team/keras#20585); use "
                          "auto, default or mirrored")
    return tf.distribute.get_strategy()


# ----------------------------------------------------------------------------------- callbacks

class TimeBudget(keras.callbacks.Callback):
    """Stops training before an epoch that would end past ``train.max_minutes``.

    The next epoch is assumed to take as long as the slowest one so far.
    """

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds, self.start = minutes * 60, time.monotonic()
        self.epoch_start, self.longest = self.start, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.longest = max(self.longest, now - self.epoch_start)
        last = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if not last and now - self.start + self.longest > self.seconds:
            print(f"train.max_minutes ({self.seconds / 60:g}) would be exceeded by another "
                  f"epoch; stopping after epoch {epoch + 1}", flush=True)
            self.model.stop_training = True


class NanGuard(keras.callbacks.Callback):
    """Remembers a NaN/inf loss so that training ends with a clear error."""

    def __init__(self):
        super().__init__()
        self.batch = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.batch = batch
            self.model.stop_training = True


def _best_so_far(history: Path, monitor: str) -> float | None:
    if not history.is_file():
        return None
    with history.open() as f:
        values = [float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor)]
    return max(values) if values else None


# ------------------------------------------------------------------------------------- train

def compiled_model(config: Config, policy: str, jit: bool, total_steps: int) -> keras.Model:
    """The configured model built under ``policy`` and compiled for training (Adam with the
    learning rate cosine-decayed over ``total_steps`` to 5%, the configured loss, Dice and IoU).
    Call it inside the strategy's scope.

    With ``model.deep_supervision`` the heads are concatenated on the channel axis into one
    output (so the metrics keep their names) and the loss weights them;
    :func:`tf_medseg.models.main_output` recovers the full-resolution head.
    """
    from tf_medseg.losses import deep_supervision, get_loss
    from tf_medseg.metrics import training_metrics
    from tf_medseg.models import build_model

    schedule = keras.optimizers.schedules.CosineDecay(
        config.train.learning_rate, decay_steps=max(1, total_steps), alpha=0.05)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(config)
        loss = get_loss(config.train)
        if len(model.outputs) > 1:
            loss = deep_supervision(loss, len(model.outputs))
            model = keras.Model(model.inputs, keras.layers.Concatenate(
                dtype="float32", name="deep_supervision")(model.outputs), name=model.name)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                      metrics=training_metrics(config.train.threshold), jit_compile=jit)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def train(config: Config, verbose: int | None = None) -> dict:
    """Train, keep the best model, score it on the validation cases and export it.

    Rerunning with the same run directory after a crash resumes from the last epoch backup.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from tf_medseg.data.pipeline import make_dataset
    from tf_medseg.data.prepare import prepare
    from tf_medseg.evaluate import evaluate_scans, json_safe
    from tf_medseg.export import export_saved_model
    from tf_medseg.models import main_output

    keras.utils.set_random_seed(config.train.seed)
    policy, jit = runtime_for(config)
    strategy = get_strategy(config)
    # Data first: bad input stops here, before the run directory is touched. Prepared once
    # (the Kaggle source is fingerprinted once) for both splits and the final scoring.
    builder = prepare(config.data)
    train_ds = make_dataset(config, "train", builder=builder)
    val_ds = make_dataset(config, "val", builder=builder)

    run_dir = Path(config.train.run_dir).expanduser()
    ckpt_dir, backup_dir = run_dir / "checkpoints", run_dir / "checkpoints" / "backup"
    history = run_dir / "history.csv"
    resuming = backup_dir.is_dir() and any(backup_dir.iterdir())
    if not resuming:  # a fresh run must not mix with an earlier run's outputs
        for stale in (history, run_dir / "metrics.json", ckpt_dir / "best.weights.h5"):
            stale.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "saved_model", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    runtime = {"precision": policy, "jit_compile": jit,
               "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
               "devices": [d.name for d in tf.config.list_logical_devices()],
               "auto": dict(zip(("precision", "jit_compile"), resolve_runtime()))}
    (run_dir / "runtime.json").write_text(json.dumps(runtime, indent=2) + "\n")
    print(f"Runtime: precision {policy}, jit_compile {jit}, {runtime['strategy']} with "
          f"{runtime['replicas']} replica(s); "
          f"{'resuming from the last backup' if resuming else 'starting'} in {run_dir}",
          flush=True)

    steps = config.train.steps_per_epoch or int(train_ds.cardinality())
    with strategy.scope():
        model = compiled_model(config, policy, jit, steps * config.train.epochs)

    best_path = ckpt_dir / "best.weights.h5"
    nan_guard = NanGuard()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.ModelCheckpoint(
            str(best_path), monitor="val_dice", mode="max", save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=_best_so_far(history, "val_dice") if resuming else None),
        keras.callbacks.CSVLogger(str(history), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch"),
        nan_guard,
    ]
    if config.train.max_minutes:
        callbacks.append(TimeBudget(config.train.max_minutes))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(train_ds, validation_data=val_ds, epochs=config.train.epochs,
              steps_per_epoch=config.train.steps_per_epoch, callbacks=callbacks,
              verbose=verbose)
    if nan_guard.batch is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)
        raise TrainingError(f"loss became NaN at batch {nan_guard.batch}; lower "
                            f"train.learning_rate or use train.precision float32")
    if best_path.is_file():
        model.load_weights(str(best_path))
    model = main_output(model)

    print("Scoring the kept model on the validation cases (3-D competition metric)...",
          flush=True)
    result, per_case_day = evaluate_scans(lambda x: model(x, training=False), config, "val",
                                          builder=builder)
    result = json_safe({**result, "case_days": per_case_day})
    result["epochs_trained"] = _epochs_logged(history)
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, run_dir / "metrics.json")
    if config.export.saved_model:
        export_saved_model(model, config, run_dir / "saved_model",
                           extra_metadata={"validation": {k: result[k] for k in
                                                          ("dice", "hausdorff", "score")}})
    summary = ", ".join(f"{k} {result[k]:.4f}" if result[k] is not None else f"{k} n/a"
                        for k in ("dice_pooled", "dice", "hausdorff", "score"))
    print(f"Validation (kept model, whole scans): {summary}; outputs in {run_dir}", flush=True)
    return result


def _epochs_logged(history: Path) -> int:
    if not history.is_file():
        return 0
    with history.open() as f:
        return sum(1 for _ in csv.DictReader(f))
