"""Cross-validation beside the peer: tf_medseg's U-Net and keras-unet-collection's ``unet_2d``
trained on the same folds, with the same data pipeline, loss, optimiser, schedule, precision,
epochs and seed, each scored with the same 3-D metrics on its validation fold.

::

    pip install keras-unet-collection      # the peer (never a tf_medseg dependency)
    python -m benchmarks.peer_cv --config chaos_t2 --out runs/chaos_t2_cv [--folds 0 1 2 3 4]
        [--side ours|peer|both] [--set KEY=VALUE ...]

Every fold trains into ``OUT/SIDE/fold_K`` (ours: a normal run directory; the peer:
``metrics.json`` and ``history.csv``), with ``train.keep: last`` so that no figure is chosen on
the fold it is reported on. ``OUT/summary.json`` and the last line printed hold per side the
mean and per-fold 3-D Dice per class and the wall time.

The peer is built as its users get it (``unet_2d`` defaults: two convolutions per level,
max-pooling, bilinear up-sampling), with batch norm, the same filters per level as
``model.base_filters`` and ``model.depth``, and logits out (its softmax/sigmoid left off: the
loss applies it, as for ours).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.folds import command, fold_config, fold_row
from tf_medseg.errors import MedsegError
from tf_medseg.files import atomic_write


def _parser() -> argparse.ArgumentParser:
    from tf_medseg.cli.common import add_set_argument
    p = argparse.ArgumentParser(prog="python -m benchmarks.peer_cv", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, help="folder for the folds' runs and summary.json")
    p.add_argument("--folds", nargs="+", type=int, help="folds to run (default: all)")
    p.add_argument("--side", choices=["ours", "peer", "both"], default="both")
    add_set_argument(p)
    return p


def peer_model(config, input_shape, num_outputs: int):
    """keras-unet-collection's ``unet_2d`` as its users get it, with our filters per level."""
    try:
        from keras_unet_collection import models
    except ImportError:
        raise MedsegError("the peer needs keras-unet-collection: pip install "
                          "keras-unet-collection (not a tf_medseg dependency)") from None
    m = config.model
    filters = [m.base_filters * 2 ** i for i in range(m.depth + 1)]
    return models.unet_2d(tuple(input_shape), filters, n_labels=num_outputs,
                          stack_num_down=2, stack_num_up=2, activation="ReLU",
                          output_activation=None, batch_norm=True, pool=True, unpool=True,
                          name="peer")


def train_peer(config, out: Path) -> dict:
    """Train the peer on ``config``'s fold through tf_medseg's experiment (the same data sets,
    loss, optimiser, loop and scoring as ours); its validation metrics."""
    import tensorflow as tf

    from tf_medseg.evaluation.scoring import json_safe
    from tf_medseg.training.checkpoints import HistoryLog
    from tf_medseg.training.experiment import Experiment
    from tf_medseg.training.loop import fit
    from tf_medseg.training.optim import building
    from tf_medseg.training.runtime import runtime_for
    strategy = tf.distribute.get_strategy()
    policy, jit = runtime_for(config)
    experiment = Experiment(config)
    train_ds, val_ds = experiment.datasets(strategy)
    steps = experiment.steps_per_epoch(train_ds)
    # Seeded, built under the policy and compiled as tf_medseg's own model is.
    with building(policy, config.train.seed):
        model = experiment.compile(peer_model(config, experiment.input_shape,
                                              experiment.num_outputs), jit, steps)
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [HistoryLog(out / "history.csv", 0)]
    if config.train.max_minutes:  # planned for the budget as ours is (budget.json)
        from tf_medseg.training.callbacks import TimeBudget, budget_recorder
        callbacks.append(TimeBudget(config.train.max_minutes, config.train.epochs, steps,
                                    record=budget_recorder(out)))
    fit(experiment.trainer(model, strategy), train_ds, val_ds, epochs=config.train.epochs,
        steps_per_epoch=config.train.steps_per_epoch, callbacks=callbacks, verbose=2)
    result, rows = experiment.score(model)
    from tf_medseg.training.checkpoints import read_history
    result = json_safe({**result, "cases": rows, "parameters": model.count_params(),
                        "epochs_trained": len(read_history(out / "history.csv"))})
    atomic_write(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result


def run(args) -> dict:
    from tf_medseg.config import load_config
    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training import train
    # data.plan auto or data.image_size auto: both sides train the same planned config
    base = planned_config(load_config(args.config, args.set))
    folds = args.folds if args.folds is not None else list(range(base.data.num_folds))
    out = Path(args.out).expanduser()
    sides = ["ours", "peer"] if args.side == "both" else [args.side]
    summary = {}
    summary_path = out / "summary.json"
    if summary_path.is_file():
        from tf_medseg.run_dir import read_json
        summary = read_json(summary_path, "cross-validation summary",
                            "delete it (or use another --out) to start the comparison over")
    for side in sides:
        per_fold = summary.setdefault(side, {}).setdefault("folds", {})
        for fold in folds:
            config = fold_config(base, fold, out / side / f"fold_{fold}")
            print(f"== {side}, fold {fold} ==", flush=True)
            start = time.perf_counter()
            if side == "ours":
                result = train(config, verbose=2)
            else:
                result = train_peer(config, Path(config.train.run_dir))
            per_fold[str(fold)] = fold_row(result, time.perf_counter() - start)
            summary[side]["mean"] = _mean(per_fold)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(summary_path, json.dumps(summary, indent=2) + "\n")
    print(json.dumps({side: summary[side]["mean"] for side in summary}), flush=True)
    return summary


def _mean(per_fold: dict) -> dict:
    keys = sorted({k for r in per_fold.values() for k in r})
    out = {}
    for k in keys:
        values = [r[k] for r in per_fold.values() if r.get(k) is not None]
        out[k] = round(float(np.sum(values) if k == "seconds" else np.mean(values)), 4) \
            if values else None
    out["folds"] = len(per_fold)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return command(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
