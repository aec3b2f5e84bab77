"""Cross-validation: ``python train.py --config X --folds all`` (or ``--folds 0 2``).

Every fold trains as an ordinary run into ``RUN_DIR/fold_K/`` (``data.fold`` K; resumable, a
finished fold is kept), then ``RUN_DIR/cv/`` is written from the folds' exports::

    cv/metrics.json          out-of-fold figures over every case of the folds (the competition
                             score for uwmgi and phantom; per class Dice and HD95 in mm for
                             the other sources), before and after post-processing; each
                             fold's own validation figures with minutes and epochs; their mean
                             and standard deviation
    cv/folds.csv             the table per fold, then mean and sd
    cv/case_days.csv         out-of-fold figures per case-day (cases.csv for other sources)
    cv/postprocessing.json   the rules chosen out of fold (:mod:`tf_medseg.inference.postprocess`),
                             applied by predict and evaluate
    cv/oof/NAME.npz          out-of-fold probabilities of each scan: ``probabilities`` uint8
                             (D, H, W, K), probability x 255 rounded; ``truth`` (bits packed
                             by ``np.packbits``), ``shape``, ``spacing``, ``fold``

``RUN_DIR/folds.json`` records the training minutes of each fold (summed over resumes). A
rerun trains the folds that are not finished and writes ``cv/`` again; over a finished
cross-validation it refuses unless ``--overwrite`` (every named fold is trained again, each
earlier fold kept in its ``previous/`` until the new one finishes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from tf_medseg.config import Config, load_config
from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.files import atomic_dir, atomic_write
from tf_medseg.run_dir import (
    RESUMABLE_KEYS,
    RunDir,
    RunLock,
    check_run_dir,
    flat,
    fold_dir,
    remove_partials,
)

CV_DIR = "cv"
PROGRESS = "folds.json"
SINGLE_RUN = ("metrics.json", "saved_model", "checkpoints", "history.csv")


def parse_folds(values: list[str], num_folds: int) -> list[int]:
    """``--folds all`` or fold numbers, checked against ``data.num_folds``."""
    if values == ["all"]:
        return list(range(num_folds))
    if "all" in values:
        raise ConfigError(f"--folds: 'all' stands alone (every fold); got "
                          f"{' '.join(values)}: give 'all' or fold numbers")
    folds = []
    for v in values:
        if not v.isdigit() or int(v) >= num_folds:
            raise ConfigError(f"--folds: {v!r} is not 'all' or a fold number from 0 to "
                              f"{num_folds - 1} (data.num_folds {num_folds})")
        if int(v) not in folds:
            folds.append(int(v))
    return sorted(folds)


def fold_config(config: Config, fold: int) -> Config:
    """``config`` for one fold: ``data.fold`` and ``train.run_dir`` = RUN_DIR/fold_K."""
    root = Path(config.train.run_dir)
    return dataclasses.replace(
        config, data=dataclasses.replace(config.data, fold=fold),
        train=dataclasses.replace(config.train, run_dir=str(fold_dir(root, fold))))


def _check_same_config(path: Path, config: Config) -> None:
    """A finished fold was trained with this config (resumable keys aside)."""
    saved = path / "config.yaml"
    if not saved.is_file():
        return
    theirs = flat(load_config(str(saved)).to_dict())
    ours = flat(config.to_dict())
    for key in sorted(ours):
        if key in RESUMABLE_KEYS or key.split(".")[0] in RESUMABLE_KEYS:
            continue
        if key in theirs and theirs[key] != ours[key]:
            raise ConfigError(f"{key}: {path} was trained with {theirs[key]!r}, this config "
                              f"has {ours[key]!r}; rerun with the same config, or add "
                              f"--overwrite to train every fold again")


def _read_progress(root: Path) -> dict:
    path = root / PROGRESS
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}  # only timings: a damaged file loses them, nothing else


def cross_validate(config: Config, folds: list[int], overwrite: bool = False) -> dict:
    """Train ``folds`` into RUN_DIR/fold_K/ and write RUN_DIR/cv/; returns cv/metrics.json."""
    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training import train
    config = planned_config(config)  # data.plan auto: every fold trains the same plan
    root = check_run_dir(config.train.run_dir)
    single = [n for n in SINGLE_RUN if (root / n).exists()]
    if single:
        raise MedsegError(f"{root}: holds a single training run ({', '.join(single)}); "
                          f"--folds writes fold_K/ folders and cv/: set train.run_dir to "
                          f"another folder")
    if not config.export.saved_model:
        raise ConfigError("export.saved_model: --folds needs every fold's export (out-of-fold "
                          "predictions, the ensemble); set it true")
    done = root / CV_DIR / "metrics.json"
    if done.is_file() and not overwrite:
        try:
            earlier = json.loads(done.read_text()).get("folds")
        except (OSError, ValueError):
            earlier = None  # damaged: written again
        if earlier == folds and all(RunDir(fold_dir(root, k)).finished() for k in folds):
            raise MedsegError(f"{root} holds a finished cross-validation of folds "
                              f"{folds} ({done}); add --overwrite to train them again, or "
                              f"set train.run_dir to another folder")
        if isinstance(earlier, list) and not set(earlier) <= set(folds):
            raise MedsegError(f"{done}: the cross-validation of folds {earlier}, which "
                              f"--folds {' '.join(map(str, folds))} would replace; name "
                              f"those folds too (e.g. --folds all), or set train.run_dir to "
                              f"another folder")
    root.mkdir(parents=True, exist_ok=True)
    with RunLock(root):
        remove_partials(root)  # what a killed cross-validation left (cv/, folds.json)
        progress = _read_progress(root)
        for i, k in enumerate(folds):
            fc = fold_config(config, k)
            path = fold_dir(root, k)
            print(f"\n=== Fold {k} ({i + 1} of {len(folds)}) -> {path}", flush=True)
            run = RunDir(path)
            if run.finished() and not overwrite:
                _check_same_config(path, fc)
                print(f"Fold {k}: finished earlier, kept", flush=True)
                continue
            prior = (progress.get(str(k), {}).get("minutes", 0.0)
                     if run.has_backup() and not overwrite else 0.0)
            start = time.perf_counter()
            train(fc, overwrite=overwrite)
            progress[str(k)] = {"minutes": prior + (time.perf_counter() - start) / 60}
            atomic_write(root / PROGRESS, json.dumps(progress, indent=2) + "\n")
        print(f"\n=== Cross-validation of folds {folds}: out-of-fold predictions and "
              f"post-processing -> {root / CV_DIR}", flush=True)
        return write_cv(config, root, folds, progress)


def _fold_row(k: int, path: Path, progress: dict) -> dict:
    from tf_medseg.run_dir import read_json
    m = read_json(path / "metrics.json", "fold metrics", "rerun train.py with --folds")
    row = {"fold": k}
    for key in ("dice", "hausdorff", "hd95", "score", "dice_pooled"):
        if key in m:
            row[key] = m[key]
    row["epochs"] = m.get("epochs_trained")
    row["minutes"] = progress.get(str(k), {}).get("minutes")
    return row


def _mean_sd(rows: list[dict]) -> tuple[dict, dict]:
    keys = [k for k in rows[0] if k != "fold"]
    mean, sd = {}, {}
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))
                  and not (isinstance(r[key], float) and math.isnan(r[key]))]
        if values:
            mean[key] = float(np.mean(values))
            sd[key] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return mean, sd


def write_cv(config: Config, root: Path, folds: list[int], progress: dict | None = None
             ) -> dict:
    """``RUN_DIR/cv/`` from the finished folds' exports (see the module docstring)."""
    from tqdm.auto import tqdm

    from tf_medseg.evaluation.evaluate import evaluate
    from tf_medseg.evaluation.scoring import Scoring, json_safe, write_report
    from tf_medseg.inference import postprocess
    from tf_medseg.inference.predictor import Predictor
    from tf_medseg.training.experiment import Experiment
    from tf_medseg.workflows import postprocessing

    progress = progress if progress is not None else _read_progress(root)
    experiment = Experiment(config)
    labels, head = experiment.labels, experiment.head
    competition = labels.metric == "competition"
    threshold = config.train.threshold
    classes = list(labels.classes)
    with atomic_dir(root / CV_DIR) as tmp:
        oof = tmp / "oof"
        oof.mkdir()
        tolerance = config.eval.surface_tolerance_mm
        scoring, fold_rows = Scoring(labels, tolerance=tolerance), []
        for k in folds:
            fold = experiment.configured(fold_config(config, k))
            predictor = Predictor.load(fold_dir(root, k) / "saved_model",
                                       batch_size=config.data.batch_size, postprocessing=False)
            fold_rows.append(_fold_row(k, fold_dir(root, k), progress))

            def store(name, probs, true, spacing, k=k):
                q = np.round(probs * 255).astype(np.uint8)
                np.savez_compressed(oof / f"{name}.npz", probabilities=q,
                                    truth=np.packbits(true), shape=np.array(true.shape),
                                    spacing=np.array(spacing), fold=k)
                return dequantize(q)  # scored as stored (the choice below reads them back)
            evaluate(predictor, fold.dataset, "val", on_scan=store, scoring=scoring,
                     progress=True)
        before, rows = scoring.result("out-of-fold")

        passes = iter(("thresholds", "component rules"))

        def read_all():
            paths = sorted(oof.glob("*.npz"))
            for path in tqdm(paths, desc=f"Post-processing: {next(passes)}", unit="scan"):
                yield _read_oof(path)[:2]
        print("Choosing post-processing out of fold (per class: threshold, then component "
              "rule)...", flush=True)
        choice = postprocessing.choose(read_all, classes, output=head, competition=competition,
                                       threshold=threshold)
        after_scoring = Scoring(labels, tolerance=tolerance)
        for path in sorted(oof.glob("*.npz")):
            probs, true, spacing = _read_oof(path)
            after_scoring.add(path.stem, postprocess.masks(probs, choice["rules"], classes,
                                                           head), true, spacing)
        after, _ = after_scoring.result("out-of-fold")
        postprocessing.write(tmp / postprocess.FILE, choice, classes)
        mean, sd = _mean_sd(fold_rows)
        report = json_safe({
            "folds": folds, "classes": classes,
            "out_of_fold": before, "out_of_fold_postprocessed": after,
            "postprocessing": postprocessing.to_json(choice, classes),
            "per_fold": fold_rows, "mean": mean, "sd": sd,
            "note": "out_of_fold: every case scored by the fold model that did not train on "
                    "it; per_fold: each fold's validation figures (train.keep model)"})
        write_report(before, rows, tmp, labels)  # case_days.csv / cases.csv
        atomic_write(tmp / "metrics.json", json.dumps(report, indent=2) + "\n")
        _write_fold_table(tmp / "folds.csv", fold_rows, mean, sd)
    _print_summary(report, competition, root)
    return report


def _read_oof(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(probabilities, truth, spacing or None) of one out-of-fold file."""
    with np.load(path) as z:
        shape = tuple(int(n) for n in z["shape"])
        truth = np.unpackbits(z["truth"], count=int(np.prod(shape))).reshape(shape)
        spacing = z["spacing"] if z["spacing"].size else None
        return dequantize(z["probabilities"]), truth.astype(bool), spacing


def dequantize(q: np.ndarray) -> np.ndarray:
    """Stored uint8 probabilities (x 255, rounded) as float32, the one way cv/ reads them:
    thresholds such as 0.6 = 153 / 255 compare alike everywhere."""
    return q.astype(np.float32) / np.float32(255)


def _write_fold_table(path: Path, rows: list[dict], mean: dict, sd: dict) -> None:
    fields = list(rows[0])
    lines = [",".join(fields)]
    for row in [*rows, {"fold": "mean", **mean}, {"fold": "sd", **sd}]:
        lines.append(",".join("" if row.get(f) is None else
                              f"{row[f]:.6f}" if isinstance(row[f], float) else str(row[f])
                              for f in fields))
    atomic_write(path, "\n".join(lines) + "\n")


def _print_summary(report: dict, competition: bool, root: Path) -> None:
    keys = ("dice", "hausdorff", "score") if competition else ("dice", "hd95")
    print(f"{'fold':>6} " + " ".join(f"{k:>9}" for k in keys) + f" {'epochs':>7} {'minutes':>8}")
    for row in report["per_fold"]:
        print(f"{row['fold']:>6} " + " ".join(_fmt(row.get(k)) for k in keys)
              + f" {row.get('epochs') or '':>7} {_fmt(row.get('minutes'), 8, 1)}")
    for label in ("mean", "sd"):
        print(f"{label:>6} " + " ".join(_fmt(report[label].get(k)) for k in keys))
    for label, key in (("out-of-fold", "out_of_fold"),
                       ("+ post-processing", "out_of_fold_postprocessed")):
        print(f"{label}: " + ", ".join(f"{k} {_fmt(report[key].get(k), 0)}" for k in keys))
    for cls, rule in report["postprocessing"]["classes"].items():
        from tf_medseg.inference.postprocess import Rule
        print(f"  {cls}: {Rule(**rule).describe()}")
    print(f"Cross-validation outputs in {root / CV_DIR}", flush=True)


def _fmt(value, width: int = 9, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'n/a':>{width}}"
    return f"{value:>{width}.{digits}f}"
