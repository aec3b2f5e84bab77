"""Training: runtime choice (precision, XLA, strategy), optimisation, survival, outputs.

Run directory (``train.run_dir``)::

    config.yaml     the resolved config
    runtime.json    precision policy, jit_compile, strategy and loop picked, and why
    logs/           TensorBoard: train/ and validation/ (scalars per class, learning rate, the
                    config as text, overlays of fixed validation slices)
    checkpoints/    best.weights.h5 + best.json (the kept model: best train.monitor) and
                    backup/ (the last finished epoch, for resuming after a crash)
    history.csv     one row per finished epoch
    metrics.json    competition metric of the kept model on the validation cases
    saved_model/    the export, with metadata.json

Only the chief (the one process of single-machine training, or the chief of a multi-worker
cluster) writes the run directory; other workers keep their backups in a temporary folder.
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
import numpy as np
import tensorflow as tf

from tf_medseg.config import Config, dump_config, improves
from tf_medseg.errors import ConfigError, TrainingError
from tf_medseg.files import atomic_open, atomic_write, temporary_path
from tf_medseg.run_dir import RunDir, check_run_dir, identity, read_json


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


# --------------------------------------------------------------------------------- optimiser

@keras.saving.register_keras_serializable("tf_medseg")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``peak / warmup_steps`` to ``peak`` over ``warmup_steps``, then
    ``after`` (evaluated from 0 at the end of the warm-up)."""

    def __init__(self, peak: float, warmup_steps: int, after=None):
        self.peak, self.warmup_steps, self.after = float(peak), int(warmup_steps), after

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rest = (self.after(keras.ops.maximum(step - self.warmup_steps, 0.0))
                if self.after is not None else self.peak)
        if self.warmup_steps <= 0:
            return keras.ops.cast(rest, "float32")
        warm = self.peak * (step + 1.0) / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm, rest)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.optimizers.schedules.serialize(self.after)
                if self.after is not None else None}

    @classmethod
    def from_config(cls, config):
        after = config.get("after")
        return cls(config["peak"], config["warmup_steps"],
                   keras.optimizers.schedules.deserialize(after) if after else None)


class PlateauWarmup(keras.callbacks.Callback):
    """Linear warm-up of a variable learning rate (the plateau schedule, where
    ReduceLROnPlateau owns the rate afterwards)."""

    def __init__(self, peak: float, warmup_steps: int):
        super().__init__()
        self.peak, self.warmup_steps = peak, warmup_steps

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations)
        if step < self.warmup_steps:
            self.model.optimizer.learning_rate = self.peak * (step + 1) / self.warmup_steps
        elif step == self.warmup_steps:
            self.model.optimizer.learning_rate = self.peak


def learning_rate_schedule(train_config, steps_per_epoch: int):
    """The learning rate ``train.schedule`` describes, warm-up included: a Keras schedule, or
    the peak as a number for ``plateau`` (a callback warms it up and lowers it)."""
    t = train_config
    warmup = int(round(t.warmup_epochs * steps_per_epoch))
    rest = max(1, t.epochs * steps_per_epoch - warmup)
    schedules = keras.optimizers.schedules
    if t.schedule == "plateau":
        return float(t.learning_rate)
    if t.schedule == "cosine":
        after = schedules.CosineDecay(t.learning_rate, decay_steps=rest,
                                      alpha=t.min_lr_fraction)
    elif t.schedule == "step":
        after = schedules.ExponentialDecay(t.learning_rate, t.step_epochs * steps_per_epoch,
                                           t.step_factor, staircase=True)
    else:
        after = None
    return Warmup(t.learning_rate, warmup, after)


def make_optimizer(train_config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW (weight decay off for biases and batch-norm parameters) or Adam, with the
    schedule and optional global-norm gradient clipping."""
    t = train_config
    lr = learning_rate_schedule(t, steps_per_epoch)
    if t.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=t.weight_decay,
                                           global_clipnorm=t.clipnorm)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer
    return keras.optimizers.Adam(lr, global_clipnorm=t.clipnorm)


def compiled_model(config: Config, policy: str, jit: bool, steps_per_epoch: int,
                   task=None, build=None) -> keras.Model:
    """The configured model built under ``policy`` and compiled with the configured optimiser,
    schedule and loss (a LossScaleOptimizer wraps the optimiser under mixed_float16). Call it
    inside the strategy's scope. The initial weights depend on ``train.seed`` alone: the
    global generators are seeded with it first.

    With ``model.deep_supervision`` the heads are concatenated on the channel axis into one
    output and the loss weights them; :func:`tf_medseg.models.main_output` recovers the
    full-resolution head.

    ``task`` (:func:`tf_medseg.data.pipeline.task_for`) gives the classes, channels and the
    output (``model.output``); default: the UW-Madison task. ``build(config, task)`` replaces
    :func:`tf_medseg.models.build_model` (another network trained the same way, as
    :mod:`tf_medseg.peer_cv` does).
    """
    from tf_medseg.data.task import KAGGLE, output_of
    from tf_medseg.losses import deep_supervision, get_loss
    from tf_medseg.models import build_model

    task = task or KAGGLE

    # Keras seeds every unseeded initializer and dropout layer from Python's global
    # ``random`` when the layer is made: seeded here, the weights are a function of
    # train.seed whatever the process drew before (building TFDS records did: TFDS names its
    # temporary folder with ``random.choice``).
    keras.utils.set_random_seed(config.train.seed)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = (build or build_model)(config, task)
        loss = get_loss(config.train, output_of(config, task))
        if len(model.outputs) > 1:
            loss = deep_supervision(loss, len(model.outputs))
            model = keras.Model(model.inputs, keras.layers.Concatenate(
                dtype="float32", name="deep_supervision")(model.outputs), name=model.name)
        model.compile(optimizer=make_optimizer(config.train, steps_per_epoch), loss=loss,
                      jit_compile=jit)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


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
    """Stops training at the first NaN/inf loss and remembers where."""

    def __init__(self):
        super().__init__()
        self.epoch, self.batch = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.batch = batch
            self.model.stop_training = True


class ValidationScore(keras.callbacks.Callback):
    """Adds ``val_score`` and ``val_hausdorff`` (the competition metric on whole validation
    scans at their native size, as metrics.json) to every epoch's logs; for the volume
    sources ``val_score`` is the mean 3-D Dice over validation cases and classes (the
    distances are computed once, for metrics.json). Runs on every worker, so that they all
    take the same early-stopping decisions."""

    def __init__(self, config: Config, builder):
        super().__init__()
        self.config, self.builder = config, builder

    def on_train_begin(self, logs=None):
        from tf_medseg.models import main_output
        model = main_output(self.model)
        self.predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def on_epoch_end(self, epoch, logs=None):
        from tf_medseg.evaluate import evaluate_scans
        result, _ = evaluate_scans(self.predict, self.config, "val", builder=self.builder,
                                   distances=False)
        if logs is not None:
            logs["val_score"] = result["score"]
            if "hausdorff" in result:
                logs["val_hausdorff"] = result["hausdorff"]


class HistoryLog(keras.callbacks.Callback):
    """``history.csv``: one row per finished epoch. On resume the rows of epochs that are
    about to be trained again (finished after the last backup) are dropped first, so every
    epoch is listed once whatever the moment of a crash."""

    def __init__(self, path: Path, initial_epoch: int):
        super().__init__()
        self.path, self.initial_epoch = path, initial_epoch

    def on_train_begin(self, logs=None):
        rows = read_history(self.path)
        kept = [r for r in rows if int(r["epoch"]) < self.initial_epoch]
        if len(kept) != len(rows) or not self.initial_epoch:
            self._write(kept, list(rows[0]) if rows else None)

    def _write(self, rows: list[dict], fields: list[str] | None) -> None:
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        with atomic_open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: logs[k] for k in sorted(logs)}}
        if self.path.is_file():
            with self.path.open() as f:
                header = next(csv.reader(f), [])
            complete = self.path.read_bytes().endswith(b"\n")
            if header != list(row) or not complete:  # columns changed on resume
                # (train.monitor), or a half-written last row: rewrite
                rows = read_history(self.path) + [row]
                header = header if header and header[0] == "epoch" else []
                fields = header + [k for k in row if k not in header]
                self._write([{k: r.get(k, "") for k in fields} for r in rows], fields)
                return
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def read_history(path: Path) -> list[dict]:
    """The rows of ``history.csv``; a half-written last row (a kill while appending) is
    dropped. Raises a one-line error for a file that is not a history."""
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: unreadable ({exc}); delete it to start the history "
                            f"over") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # the row being appended when the process died
    rows = list(csv.DictReader(lines))
    if lines and (not rows and len(lines) > 1 or lines[0].split(",")[0].strip() != "epoch"):
        raise TrainingError(f"{path}: damaged (no epoch column); delete it to start the "
                            f"history over")
    good = []
    for row in rows:
        if None in row.values() or None in row:  # too few or too many fields
            continue
        try:
            int(row["epoch"])
        except ValueError:
            continue
        good.append(row)
    return good


def monitor_mode(monitor: str) -> str:
    """"min" for a loss, "max" for a score: which way ``train.monitor`` improves."""
    return improves(monitor)


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the best epoch by ``monitor`` in ``best.weights.h5`` (written
    atomically) with ``best.json`` (epoch and value) beside it."""

    def __init__(self, path: Path, monitor: str, best: float | None = None):
        super().__init__()
        self.path, self.monitor = path, monitor
        self.mode = monitor_mode(monitor)
        self.best = best

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or not self.better(value):
            return
        self.best = float(value)
        with temporary_path(self.path, suffix=".weights.h5") as tmp:
            self.model.save_weights(str(tmp))
        atomic_write(self.path.with_name("best.json"), json.dumps(
            {"epoch": epoch, "monitor": self.monitor, "value": self.best}) + "\n")


def best_record(ckpt_dir: Path, monitor: str) -> float | None:
    """The best value of a run being resumed (None if it has none, or kept another monitor)."""
    path = ckpt_dir / "best.json"
    if not path.is_file() or not (ckpt_dir / "best.weights.h5").is_file():
        return None
    record = read_json(path, "record of the best epoch", f"delete {path} and "
                       f"{ckpt_dir / 'best.weights.h5'} to keep the best epoch from now on")
    try:
        return float(record["value"]) if record.get("monitor") == monitor else None
    except (KeyError, TypeError, ValueError):
        raise TrainingError(f"{path}: damaged record of the best epoch (no value); delete it "
                            f"and {ckpt_dir / 'best.weights.h5'}") from None


class TensorBoardExtras(keras.callbacks.Callback):
    """The resolved config as text (once), and after every epoch an image panel of fixed
    validation slices: true contours on the left, predicted on the right."""

    def __init__(self, log_dir: Path, config: Config, slices: tuple | None, task=None,
                 output: str = "sigmoid"):
        from tf_medseg.data.task import KAGGLE
        super().__init__()
        self.log_dir, self.config, self.slices = log_dir, config, slices
        self.task, self.output = task or KAGGLE, output

    def on_train_begin(self, logs=None):
        import yaml
        self.writer = tf.summary.create_file_writer(str(self.log_dir / "validation"))
        text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        with tf.summary.create_file_writer(str(self.log_dir / "train")).as_default():
            tf.summary.text("config", "```yaml\n" + text + "```", step=0)

    def on_epoch_end(self, epoch, logs=None):
        if self.slices is None:
            return
        from tf_medseg.metrics import predicted_masks
        from tf_medseg.models import main_output
        from tf_medseg.overlay import side_by_side
        images, masks = self.slices
        logits = main_output(self.model)(images, training=False)
        threshold = self.config.train.threshold
        pred = np.asarray(predicted_masks(tf.cast(logits, tf.float32), self.task.num_classes,
                                          self.output,
                                          math.log(threshold / (1 - threshold))))
        centre = self.config.data.context.index(0)  # of the first channel (modality)
        panels = [side_by_side(img[..., centre], true, p, self.task.classes)
                  for img, true, p in zip(images.numpy(), masks.numpy() > 0.5, pred)]
        with self.writer.as_default():
            tf.summary.image("overlays (true | predicted)", np.stack(panels), step=epoch,
                             max_outputs=len(panels))
        self.writer.flush()


def overlay_slices(config: Config, builder):
    """``train.overlay_slices`` fixed validation slices to watch: those showing the most organ
    classes, then the largest organ area, among the first validation batches."""
    import dataclasses

    from tf_medseg.data.pipeline import make_dataset
    count = config.train.overlay_slices
    if not count:
        return None
    # Uncached: partly reading a cached data set would make tf.data drop its cache.
    uncached = dataclasses.replace(config, data=dataclasses.replace(config.data, cache=False))
    images, masks = [], []
    for x, y in make_dataset(uncached, "val", builder=builder).take(64):
        images.append(x.numpy())
        masks.append(y.numpy())
    if not images:
        return None
    images, masks = np.concatenate(images), np.concatenate(masks)
    classes = (masks.sum(axis=(1, 2)) > 0).sum(axis=1)
    order = np.lexsort((-masks.sum(axis=(1, 2, 3)), -classes))[:count]
    order.sort()
    return tf.constant(images[order]), tf.constant(masks[order])


# ------------------------------------------------------------------------------------ backup

class Backup:
    """The state of the last finished epoch (model, optimiser with its step, the epoch), as a
    TensorFlow checkpoint: written to a new file, then published, so a kill during a save
    leaves the previous backup intact. Non-chief workers write theirs to a temporary folder;
    every worker restores from the chief's."""

    def __init__(self, model: keras.Model, directory: Path, chief: bool, identity: dict):
        import tempfile
        self.directory, self.chief, self.identity = directory, chief, identity
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              epoch=self.epoch)
        self.write_dir = directory if chief else Path(tempfile.mkdtemp(prefix="medseg-backup-"))
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.write_dir),
                                                  max_to_keep=1)

    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(str(self.directory))

    def trained(self) -> bool:
        """True once training has ended (only scoring and export were left to do)."""
        return (self.directory / "trained.json").is_file()

    def mark_trained(self) -> None:
        if self.chief:
            atomic_write(self.directory / "trained.json", "{}\n")

    def restore(self) -> int:
        """Load the latest backup; the number of epochs it finished."""
        path = self.latest()
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise TrainingError(f"{path}: the backup does not fit this model or is damaged "
                                f"({str(exc).splitlines()[0][:160]}); rerun with --overwrite "
                                f"to start over") from None
        return int(self.epoch.numpy())

    def save(self, epoch: int) -> None:
        self.epoch.assign(epoch + 1)
        if self.chief:
            self.directory.mkdir(parents=True, exist_ok=True)
            identity = self.directory / "identity.json"
            if not identity.is_file():
                atomic_write(identity, json.dumps(self.identity, indent=1) + "\n")
        self.manager.save()

    def close(self, finished: bool) -> None:
        if not self.chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        elif finished:
            shutil.rmtree(self.directory, ignore_errors=True)


# ------------------------------------------------------------------------------------- train

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
    h, w = config.data.image_size
    return int(config.data.batch_size * h * w * config.model.base_filters * _ACTIVATION_BYTES)


def check_memory(config: Config) -> None:
    """An image size (or batch) whose training batch cannot fit in this machine's memory is
    refused up front with the estimate, instead of failing (or swapping) minutes later."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = batch_memory(config)
    if need > total:
        h, w = config.data.image_size
        raise ConfigError(f"data.image_size: a batch of {config.data.batch_size} at {h}x{w} "
                          f"with model.base_filters {config.model.base_filters} needs about "
                          f"{need / 2**30:,.0f} GiB, this machine has {total / 2**30:.0f} GiB; "
                          f"lower data.image_size, data.batch_size or model.base_filters")


def make_datasets(config: Config, strategy: tf.distribute.Strategy, builder
                  ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The training and validation data sets of ``config`` as ``strategy`` takes them; their
    shuffling, organ resampling and augmentation depend on ``train.seed`` alone."""
    from tf_medseg.data.pipeline import make_dataset
    # tf.data's seeded ops pair their seed with TensorFlow's global seed, read when they are
    # made: seeded here, whatever the process drew before (preparing data, another run).
    keras.utils.set_random_seed(config.train.seed)
    # Several replicas: whole training batches only, so that no replica gets an empty one.
    replicas = strategy.num_replicas_in_sync
    train_ds = make_dataset(config, "train", builder=builder, drop_remainder=replicas > 1)
    val_ds = make_dataset(config, "val", builder=builder)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Every worker reads the whole (small, cached) pipeline and keeps its share of each
        # batch: TFDS writes few shard files, too few to shard by file.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)
    return train_ds, val_ds


def train(config: Config, verbose: int | None = None, overwrite: bool = False) -> dict:
    """Train, keep the best model, score it on the validation cases and export it.

    Rerunning with the same run directory after a crash resumes from the last epoch backup.
    A run directory holding a finished run is refused unless ``overwrite``; then the earlier
    run is kept in ``previous/`` until this one's outputs are complete
    (:mod:`tf_medseg.run_dir`).

    Returns:
        The metrics written to ``metrics.json`` (on a non-chief worker: the last epoch's logs).
    """
    strategy = get_strategy(config)  # first: MultiWorkerMirroredStrategy requires it
    chief = is_chief(strategy)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy, jit = runtime_for(config)
    check_global_batch(config, strategy)
    check_memory(config)
    # The run folder is checked and locked before any work (a second training into it, or a
    # finished run there, stops at once); it is changed only once the data and model are ready.
    run = RunDir(check_run_dir(config.train.run_dir)) if chief else None
    ours = identity(config, policy)
    if chief:
        run.claim(ours, overwrite)
    try:
        return _train(config, strategy, chief, policy, jit, run, ours, overwrite, verbose)
    finally:
        if run is not None:
            run.release()


def _train(config: Config, strategy, chief: bool, policy: str, jit: bool, run, ours: dict,
           overwrite: bool, verbose: int | None) -> dict:
    from tf_medseg.data.prepare import prepare
    from tf_medseg.evaluate import evaluate_scans, json_safe
    from tf_medseg.export import export_saved_model
    from tf_medseg.loop import Trainer, fit
    from tf_medseg.models import main_output

    replicas = strategy.num_replicas_in_sync
    # Data first: bad input stops here, before the run directory is changed. Prepared once
    # (the Kaggle source is fingerprinted once) for both splits and the final scoring.
    builder = prepare(config.data)
    from tf_medseg.data.pipeline import task_for
    from tf_medseg.data.task import output_of
    task = task_for(config, builder)
    output = output_of(config, task)
    train_ds, val_ds = make_datasets(config, strategy, builder)

    run_dir = Path(config.train.run_dir).expanduser()
    ckpt_dir = run_dir / "checkpoints"
    backup_dir, history = ckpt_dir / "backup", run_dir / "history.csv"
    steps = config.train.steps_per_epoch or int(train_ds.cardinality())
    with strategy.scope():
        model = compiled_model(config, policy, jit, steps, task)
    backup = Backup(model, backup_dir, chief, ours)
    if chief:
        resuming = run.mode == "resume"
        run.begin()  # an earlier run moved into previous/, or leftovers removed
    else:  # the chief decides; a worker follows its backup (none after --overwrite)
        resuming = backup.latest() is not None and not overwrite
    initial_epoch = backup.restore() if resuming else 0
    trained = resuming and backup.trained()

    runtime = {"precision": policy, "jit_compile": jit,
               "strategy": strategy_name(strategy), "replicas": replicas,
               "loop": "custom (strategy.run in a tf.function)",
               "loss_scaling": isinstance(model.optimizer,
                                          keras.optimizers.LossScaleOptimizer),
               "deterministic_ops": config.train.deterministic,
               "devices": [d.name for d in tf.config.list_logical_devices()],
               "auto": dict(zip(("precision", "jit_compile"), resolve_runtime()))}
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        dump_config(config, run_dir / "config.yaml")
        atomic_write(run_dir / "runtime.json", json.dumps(runtime, indent=2) + "\n")
    where = ("training had ended; scoring and exporting" if trained else
             f"resuming after epoch {initial_epoch} (the last backup)" if resuming
             else "starting")
    print(f"Runtime: precision {policy}, jit_compile {jit}, {runtime['strategy']} with "
          f"{replicas} replica(s), custom training loop; {where} in {run_dir}"
          + ("" if chief else " (worker: the chief writes the outputs)"), flush=True)

    monitor = config.train.monitor
    nan_guard = NanGuard()
    callbacks: list[keras.callbacks.Callback] = []
    if monitor == "val_score":
        callbacks.append(ValidationScore(config, builder))
    callbacks.append(nan_guard)
    if config.train.schedule == "plateau":
        warmup = int(round(config.train.warmup_epochs * steps))
        if warmup:
            callbacks.append(PlateauWarmup(config.train.learning_rate, warmup))
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=monitor_mode(monitor),
            factor=config.train.plateau_factor, patience=config.train.plateau_patience,
            verbose=1 if chief else 0))
    best_path = ckpt_dir / "best.weights.h5"
    if chief:
        callbacks += [
            HistoryLog(history, initial_epoch),
            BestCheckpoint(best_path, monitor,
                           best_record(ckpt_dir, monitor) if resuming else None),
            keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch",
                                        write_graph=False),
            TensorBoardExtras(run_dir / "logs", config,
                              overlay_slices(config, builder), task, output),
        ]
    if config.train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=monitor_mode(monitor),
            patience=config.train.early_stopping, verbose=1 if chief else 0))
    if config.train.max_minutes:
        callbacks.append(TimeBudget(config.train.max_minutes))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    trainer = Trainer.for_config(model, strategy, config, task)
    if not trained:
        fit(trainer, train_ds, val_ds, epochs=config.train.epochs,
            steps_per_epoch=config.train.steps_per_epoch, initial_epoch=initial_epoch,
            callbacks=callbacks, verbose=verbose, on_epoch_saved=backup.save)
    if nan_guard.batch is not None:
        backup.close(finished=False)
        kept = (f"the backup of epoch {int(backup.epoch.numpy())} is kept: lower "
                f"train.learning_rate (or set train.clipnorm) and rerun to continue from it, "
                f"or add --overwrite to start over (e.g. with train.precision float32)"
                if backup.latest() else
                "lower train.learning_rate (or set train.precision float32, or "
                "train.clipnorm) and rerun")
        raise TrainingError(f"loss became NaN in epoch {nan_guard.epoch + 1}, batch "
                            f"{nan_guard.batch + 1}; {kept}")
    # The backup stays until the outputs are complete: a crash while scoring or exporting
    # resumes here, with training marked as ended.
    if backup.latest():
        backup.mark_trained()
    # Every worker prints it: equal fingerprints show that the workers trained in sync.
    print(f"Weights fingerprint after training: {weights_fingerprint(model):.9e}", flush=True)
    if not chief:
        backup.close(finished=True)
        trainer.any_worker(False)  # wait for the chief's outputs, then leave together
        return {}
    if config.train.keep == "best" and best_path.is_file():
        model.load_weights(str(best_path))
    model = main_output(model)

    print("Scoring the kept model on the validation cases (" +
          ("3-D competition metric" if task.kind == "scans" else "3-D Dice and HD95 in mm") +
          ")...", flush=True)
    result, per_case_day = evaluate_scans(lambda x: model(x, training=False), config, "val",
                                          builder=builder)
    result = json_safe({**result, ("case_days" if task.kind == "scans" else "cases"):
                        per_case_day})
    result["epochs_trained"] = len(read_history(history))
    if config.train.keep == "last":
        result["kept_epoch"] = result["epochs_trained"] - 1
    elif (ckpt_dir / "best.json").is_file():
        result["kept_epoch"] = read_json(ckpt_dir / "best.json", "record of the best epoch",
                                         "delete it and rerun")["epoch"]
    if config.export.saved_model:
        export_saved_model(model, config, run_dir / "saved_model", task=task,
                           extra_metadata={"validation": {
                               k: result[k] for k in ("dice", "hausdorff", "hd95", "score")
                               if k in result}})
    # metrics.json last: it marks the run finished.
    atomic_write(run_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    backup.close(finished=True)
    run.completed()  # the run this one replaced (--overwrite) goes only now
    trainer.any_worker(False)  # the other workers wait for this: the outputs are complete
    summary = ", ".join(f"{k} {result[k]:.4f}" if result[k] is not None else f"{k} n/a"
                        for k in ("dice_pooled", "dice", "hausdorff", "hd95", "score")
                        if k in result)
    print(f"Validation (kept model, whole scans): {summary}; outputs in {run_dir}", flush=True)
    return result


def weights_fingerprint(model: keras.Model) -> float:
    """Sum of the absolute values of the trainable weights: equal on workers that trained in
    sync. (Batch-norm moving statistics are not in it: each worker averages its own
    batches.)"""
    return float(sum(np.abs(np.asarray(w, np.float64)).sum()
                     for w in model.trainable_weights))
