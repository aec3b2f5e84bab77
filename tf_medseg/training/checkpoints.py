"""What a run keeps on disk while it trains: ``history.csv`` (one row per finished epoch),
the best epoch's weights (``checkpoints/best.weights.h5`` with ``best.json``) and the backup of
the last finished epoch (``checkpoints/backup/``) that a rerun resumes from.

Epochs are numbered from 1 in everything a user reads, as Keras's console counts them ("Epoch
3/40" is row ``epoch`` 3 of history.csv, ``"epoch": 3`` in best.json, ``kept_epoch: 3``).

Every file is published atomically (:mod:`tf_medseg.files`): a kill at any moment leaves the
previous version whole.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from tf_medseg.config import improves
from tf_medseg.errors import TrainingError
from tf_medseg.files import atomic_open, atomic_write, temporary_path
from tf_medseg.run_dir import read_json


class HistoryLog(keras.callbacks.Callback):
    """``history.csv``: one row per finished epoch. On resume the rows of epochs that are
    about to be trained again (finished after the last backup) are dropped first, so every
    epoch is listed once whatever the moment of a crash."""

    def __init__(self, path: Path, initial_epoch: int):
        super().__init__()
        self.path, self.initial_epoch = path, initial_epoch

    def on_train_begin(self, logs=None):
        rows = read_history(self.path)
        kept = [r for r in rows if int(r["epoch"]) <= self.initial_epoch]
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
        row = {"epoch": epoch + 1, **{k: logs[k] for k in sorted(logs)}}
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


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the best epoch by ``monitor`` in ``best.weights.h5`` (written
    atomically) with ``best.json`` (epoch and value) beside it.

    ``seed`` (epoch, value): on a resume whose best record was of an epoch being trained
    again (a kill after the best was saved and before the backup), the restored backup's
    weights, of that epoch of the history, become the best to beat; the kept model is always
    one of the epochs history.csv holds."""

    def __init__(self, path: Path, monitor: str, best: float | None = None,
                 seed: tuple[int, float] | None = None):
        super().__init__()
        self.path, self.monitor = path, monitor
        self.mode = improves(monitor)
        self.best, self.seed = best, seed

    def on_train_begin(self, logs=None):
        if self.seed is not None:
            epoch, value = self.seed
            self.best = None
            self._save(epoch, value)

    def _save(self, epoch: int, value: float) -> None:
        self.best = float(value)
        with temporary_path(self.path, suffix=".weights.h5") as tmp:
            self.model.save_weights(str(tmp))
        atomic_write(self.path.with_name("best.json"), json.dumps(
            {"epoch": epoch, "monitor": self.monitor, "value": self.best}) + "\n")

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or not self.better(value):
            return
        self._save(epoch + 1, value)


def best_record(ckpt_dir: Path, monitor: str, initial_epoch: int | None = None
                ) -> tuple[float | None, tuple[int, float] | None]:
    """(best value, seed) for :class:`BestCheckpoint` on a resume after ``initial_epoch``
    epochs: the recorded best (None if there is none, or of another monitor), or, when the
    record is of a later epoch than the backup's (that epoch is trained again), a seed from
    the backup's own epoch in history.csv."""
    path = ckpt_dir / "best.json"
    if not path.is_file() or not (ckpt_dir / "best.weights.h5").is_file():
        return None, None
    record = read_json(path, "record of the best epoch", f"delete {path} and "
                       f"{ckpt_dir / 'best.weights.h5'} to keep the best epoch from now on")
    try:
        value = float(record["value"]) if record.get("monitor") == monitor else None
        epoch = int(record["epoch"])
    except (KeyError, TypeError, ValueError):
        raise TrainingError(f"{path}: damaged record of the best epoch (no value); delete it "
                            f"and {ckpt_dir / 'best.weights.h5'}") from None
    if initial_epoch is None or epoch <= initial_epoch:
        return value, None
    rows = [r for r in read_history(ckpt_dir.parent / "history.csv")
            if int(r["epoch"]) == initial_epoch]
    try:
        seed = float(rows[0][monitor])
    except (IndexError, KeyError, ValueError):
        return None, None
    return None, ((initial_epoch, seed) if math.isfinite(seed) else None)


class Backup:
    """The state of the last finished epoch (model, optimiser with its step, the epoch), as a
    TensorFlow checkpoint: written to a new file, then published, so a kill during a save
    leaves the previous backup intact. Non-chief workers write theirs to a temporary folder;
    every worker restores from the chief's."""

    def __init__(self, model: keras.Model, directory: Path, chief: bool, identity: dict):
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
