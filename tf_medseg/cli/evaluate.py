"""``tf-medseg evaluate``: score exports on a split of a config's data set."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import (
    add_set_argument,
    add_verbose_argument,
    figure,
    prog,
    quiet_tensorflow,
    run_command,
)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("evaluate"),
        description="Score exported models on a split of the config's data set with the "
                    "predictor that predict uses: the competition metric per case-day for the "
                    "Kaggle layout and the phantom (metrics.json, case_days.csv), per case "
                    "and class 3-D Dice and HD95 in mm for nnunet, decathlon and folder data "
                    "(metrics.json, cases.csv).")
    parser.add_argument("--model", required=True, nargs="+",
                        help="RUN_DIR/saved_model (or RUN_DIR); several exports, or a "
                             "cross-validation RUN_DIR, are averaged")
    parser.add_argument("--no-postprocess", action="store_true",
                        help="leave out the post-processing a cross-validation chose "
                             "(RUN_DIR/cv/postprocessing.json)")
    parser.add_argument("--config", required=True,
                        help="the config the model was trained with (RUN_DIR/config.yaml)")
    add_set_argument(parser)
    parser.add_argument("--split", default="val", choices=["val", "train", "all"],
                        help="which cases to score: the validation fold (default; none with "
                             "data.fold all), the training cases or all; for a separate "
                             "labelled test set use evaluate-folder")
    parser.add_argument("--both-empty", default="skip", choices=["skip", "one", "zero"],
                        help="Kaggle layout and phantom (competition metric): a (slice, class) "
                             "pair empty in prediction and truth is skipped (default), or "
                             "scored as 1 or 0; volume data leaves a class empty in both out "
                             "of the means")
    parser.add_argument("--output", help="report folder (default: evaluation/ beside the "
                                         "SavedModel, in the run directory; required for "
                                         "several --model exports)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _evaluate(args))


def _evaluate(args) -> None:
    from tf_medseg.config import load_config
    config = load_config(args.config, args.set)
    from tf_medseg.workflows.evaluate import evaluate_saved_model
    result, out = evaluate_saved_model(args.model, config, split=args.split,
                                       both_empty=args.both_empty, out_dir=args.output,
                                       postprocess=not args.no_postprocess)

    def shown(key):
        return figure(result, key)
    classes = [k[5:] for k in result if k.startswith("dice_") and not
               k.startswith("dice_pooled")]
    print(f"{args.split}: " + ", ".join(
        shown(k) for k in ("dice", "hausdorff", "hd95", "score") if k in result) + "; " +
        ", ".join(shown(f"dice_{c}") for c in classes)
        + (f"; {len(result['models'])} models averaged" if len(result["models"]) > 1 else "")
        + ("; post-processed" if result["postprocessing"] else "") + f"; report in {out}")
