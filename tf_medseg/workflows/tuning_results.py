"""What a search shows and writes: one line per trial (:class:`TrialLines`), the results
table, ``results.csv`` / ``results.json`` / ``best_config.yaml``, the TensorBoard HParams
config, and KerasTuner's own state files, written atomically (:func:`keras_tuner_state`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from datetime import datetime
from pathlib import Path

import keras_tuner
import tensorflow as tf
from keras_tuner.src.engine.oracle import Display

from tf_medseg.config import Config, dump_config, improves
from tf_medseg.config.search_space import SpaceEntry, apply_values
from tf_medseg.errors import TrainingError
from tf_medseg.files import atomic_open, atomic_write
from tf_medseg.run_dir import read_json

#: Logged per epoch and kept per trial (at its best epoch) in the results.
RESULT_METRICS = ("val_score", "val_hausdorff", "val_dice", "val_iou", "val_loss", "loss")


def objective_of(config: Config) -> keras_tuner.Objective:
    tune = config.tune
    direction = improves(tune.objective) if tune.direction == "auto" else tune.direction
    return keras_tuner.Objective(tune.objective, direction)


def values_text(trial, entries: list[SpaceEntry]) -> str:
    values = trial.hyperparameters.values
    parts = [f"{e.key}={short(values[e.key])}" for e in entries if e.key in values]
    if "tuner/epochs" in values:
        parts.append(f"epochs {values['tuner/initial_epoch']}-{values['tuner/epochs']}")
    return ", ".join(parts) or "the base config"


def short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def best_epoch(trial) -> int | None:
    """The 1-based epoch of a completed trial's best value (a Hyperband trial that continues
    an earlier round's model starts at ``tuner/initial_epoch``)."""
    if trial.status != "COMPLETED" or trial.best_step is None:
        return None
    return int(trial.best_step) + 1 + int(trial.hyperparameters.values.get(
        "tuner/initial_epoch", 0))


def trial_number(trial_id: str) -> int:
    return int(trial_id) + 1 if str(trial_id).isdigit() else 0


class TrialLines(Display):
    """KerasTuner's progress display, one line per trial start and end, on the process that
    holds the oracle (a single process, or the chief). It also keeps each trial's duration in
    the oracle's state, and calls ``on_end(seconds)`` after every trial (to write the
    results)."""

    def __init__(self, oracle, entries: list[SpaceEntry], on_end, seconds: dict):
        super().__init__(oracle, verbose=1)
        self.entries, self.on_end, self.seconds = entries, on_end, dict(seconds)

    def get_state(self):
        return {**super().get_state(), "seconds": self.seconds}

    def set_state(self, state):
        super().set_state(state)
        self.seconds = dict(state.get("seconds", {}))

    def _total(self) -> str:
        total = self.oracle.max_trials
        return f"/{total}" if total else ""

    def on_trial_begin(self, trial):
        now = datetime.now()
        self.trial_start[trial.trial_id] = now
        self.search_start = self.search_start or now
        print(f"Trial {trial_number(trial.trial_id)}{self._total()} started: "
              f"{values_text(trial, self.entries)}", flush=True)

    def on_trial_end(self, trial):
        start = self.trial_start.get(trial.trial_id)
        seconds = (datetime.now() - start).total_seconds() if start else math.nan
        self.seconds[trial.trial_id] = seconds
        name = self.oracle.objective.name
        head = f"Trial {trial_number(trial.trial_id)}{self._total()} {trial.status.lower()}"
        if trial.status == "COMPLETED":
            best = self.oracle.get_best_trials(1)
            best_text = (f"; best so far {best[0].score:.4f} "
                         f"(trial {trial_number(best[0].trial_id)})" if best else "")
            print(f"{head} in {duration(seconds)}: {name} {trial.score:.4f} at epoch "
                  f"{best_epoch(trial)}{best_text}", flush=True)
        else:
            reason = (trial.message or "").strip().splitlines()
            print(f"{head} after {duration(seconds)}: {reason[-1] if reason else 'no reason'}",
                  flush=True)
        self.on_end(self.seconds)


def trial_rows(oracle, entries: list[SpaceEntry], seconds: dict) -> list[dict]:
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": trial_number(trial_id), "trial_id": trial_id, "status": trial.status}
        for entry in entries:
            row[entry.key] = values.get(entry.key)
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
        row["objective"] = trial.score if trial.status == "COMPLETED" else None
        row["best_epoch"] = best_epoch(trial)
        for name in RESULT_METRICS:
            metric = trial.metrics.metrics.get(name)
            row[name] = metric.get_history()[-1].value[0] if (
                metric and metric.get_history()) else None
        row["seconds"] = round(seconds[trial_id], 1) if trial_id in seconds else None
        rows.append(row)
    return rows


def ranked(rows: list[dict], direction: str) -> list[dict]:
    done = [r for r in rows if r["objective"] is not None and math.isfinite(r["objective"])]
    done.sort(key=lambda r: r["objective"], reverse=direction == "max")
    return done + [r for r in rows if r not in done]


@contextlib.contextmanager
def keras_tuner_state(folder: Path):
    """While it lasts, KerasTuner's own state files (``oracle.json``, ``tuner_*.json``,
    ``trial_*/trial.json``, ...) are written atomically, as every other output (KerasTuner
    writes them in place: a kill mid-write would leave a file no later run can read), and a
    damaged one is reported in one line naming it. KerasTuner reads and writes them all
    through ``keras_tuner.src.utils.save_json`` / ``load_json``, replaced here and restored
    after."""
    from keras_tuner.src import utils as kt_utils

    def save_json(path, obj):
        text = json.dumps(obj)
        atomic_write(path, text)
        return text

    def load_json(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrainingError(f"{path}: damaged search state ({str(exc).splitlines()[0][:80]}"
                                f"); delete {folder} to search again (or use another "
                                f"train.run_dir)") from None

    saved = kt_utils.save_json, kt_utils.load_json
    kt_utils.save_json, kt_utils.load_json = save_json, load_json
    try:
        yield
    finally:
        kt_utils.save_json, kt_utils.load_json = saved


def write_results(oracle, config: Config, entries: list[SpaceEntry], folder: Path,
                  seconds: dict) -> list[dict]:
    """results.csv, results.json and best_config.yaml (once a trial has completed), each
    written atomically; the rows, best first."""
    objective = objective_of(config)
    rows = trial_rows(oracle, entries, seconds)
    fields = list(rows[0]) if rows else ["trial"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    order = ranked(rows, objective.direction)
    best = order[0] if order and order[0]["objective"] is not None else None
    summary = {"tuner": config.tune.tuner, "objective": objective.name,
               "direction": objective.direction,
               "space": {e.key: e.describe() for e in entries},
               "best_trial": best["trial"] if best else None, "trials": rows}
    atomic_write(folder / "results.json", json.dumps(summary, indent=2, default=str) + "\n")
    if best is not None:
        trial = oracle.trials[best["trial_id"]]
        values = {e.key: e.config_value(trial.hyperparameters.values[e.key])
                  for e in entries if e.key in trial.hyperparameters.values}
        dump_config(apply_values(config, values), folder / "best_config.yaml", header=(
            f"Best trial ({best['trial']}) of the search in {folder}: {objective.name} "
            f"{best['objective']:.4f} at epoch {best['best_epoch']}.\n"
            f"Train it with: python train.py --config {folder / 'best_config.yaml'}"))
    return order


def format_table(rows: list[dict], entries: list[SpaceEntry], objective: str) -> str:
    """The trials as a text table, best first."""
    columns = (["trial"] + [e.key for e in entries]
               + (["epochs"] if any("epochs" in r for r in rows) else [])
               + [objective, "best_epoch"]
               + [m for m in ("val_score", "val_dice", "val_loss") if m != objective]
               + ["seconds", "status"])
    metrics = {objective, "val_score", "val_dice", "val_loss"}

    def cell(row, column):
        value = row.get("objective" if column == objective else column)
        if value is None:
            return "-"
        if isinstance(value, float):
            if column == "seconds":
                return f"{value:.0f}"
            return f"{value:.4f}" if column in metrics else f"{value:.4g}"
        return str(value)

    table = [columns] + [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(text.rjust(w) for text, w in zip(line, widths)) for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def hparams_config(entries: list[SpaceEntry], log_dir: Path, objective: str) -> None:
    """The HParams dashboard's experiment: one column per entry, the validation metrics."""
    from tensorboard.plugins.hparams import api as hp_api
    hparams = []
    for entry in entries:
        if entry.type == "choice":
            domain = hp_api.Discrete(entry.hp_values())
        elif entry.type == "int" and not entry.step:
            domain = hp_api.IntInterval(int(entry.min), int(entry.max))
        elif entry.type in ("int", "float") and not entry.step:
            domain = hp_api.RealInterval(float(entry.min), float(entry.max))
        else:
            domain = None
        hparams.append(hp_api.HParam(entry.key, domain))
    names = ["score", "dice", "hausdorff", "loss"] if objective == "val_score" else [
        "dice", "loss"]
    metrics = [hp_api.Metric(f"epoch_{n}", group="validation", display_name=f"val_{n}")
               for n in names] + [hp_api.Metric("epoch_loss", group="train",
                                                display_name="loss")]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)


# ------------------------------------------------------------------------------------- search


def show_trials(oracle, config: Config, entries: list[SpaceEntry], folder: Path) -> None:
    """Replace KerasTuner's display by the trial lines, which also write the results after
    every trial; trial durations carry over from an interrupted run."""
    saved = folder / "oracle.json"
    state = (read_json(saved, "search state", f"delete {folder} to search again (or use "
                       f"another train.run_dir)") if saved.is_file() else {})
    seconds = state.get("display", {}).get("seconds", {})
    if not isinstance(seconds, dict):
        seconds = {}
    lines = TrialLines(oracle, entries, lambda durations: write_results(
        oracle, config, entries, folder, durations), seconds)
    lines.set_state({**oracle._display.get_state(), "seconds": seconds})
    oracle._display = lines
