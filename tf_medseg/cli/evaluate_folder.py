"""``tf-medseg evaluate-folder``: label maps against ground truth, with no training config."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import add_verbose_argument, figure, prog, quiet_tensorflow, run_command


def evaluate_folder_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("evaluate-folder"),
        description="Score a folder of predicted label maps against a folder of ground truth "
                    "(NIfTI CASE.nii.gz or PNG NAME.png, paired by name; CLASS/NAME.png for "
                    "overlapping 2D classes), or an export on a labelled test folder, with no "
                    "training config: per case and class 3-D Dice, HD95, surface Dice and "
                    "added path length (mm from the NIfTI header, pixels for PNG) in "
                    "metrics.json and cases.csv. For a "
                    "Kaggle-layout model use evaluate --config.")
    parser.add_argument("--labels", required=True,
                        help="the ground-truth folder (e.g. Dataset/labelsTs)")
    parser.add_argument("--predictions",
                        help="the predicted label maps (e.g. predict's --output folder)")
    parser.add_argument("--model", nargs="+",
                        help="RUN_DIR/saved_model (or a CV RUN_DIR): with --images, predict "
                             "them first (into OUTPUT/predictions/); with --predictions, what "
                             "the label values mean")
    parser.add_argument("--images", help="the test images to predict with --model "
                                         "(e.g. Dataset/imagesTs)")
    parser.add_argument("--dataset-json",
                        help="what the label values mean, without a model: an nnU-Net or "
                             "Decathlon dataset.json, or a folder data set's labels.json "
                             "(default: the model's metadata, else one beside --labels)")
    parser.add_argument("--output", help="report folder (new, empty, or an earlier report; "
                                         "default: evaluation/ beside --predictions; required "
                                         "with --images)")
    parser.add_argument("--tolerance-mm", type=float, nargs="+", default=[2.0],
                        metavar="MM", help="surface Dice and added path length: the tolerance "
                                           "in mm, one value or one per class (default 2)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _evaluate_folder(args))


def _tolerance(values: list[float]):
    from tf_medseg.errors import MedsegError
    if any(not 0 <= v <= 100 for v in values):
        raise MedsegError(f"--tolerance-mm: each value must be 0 to 100 mm, got {values}")
    return values[0] if len(values) == 1 else tuple(values)


def _evaluate_folder(args) -> None:
    from tf_medseg.workflows.evaluate_folder import evaluate_folder
    result, out = evaluate_folder(args.labels, predictions=args.predictions, model=args.model,
                                  images=args.images, out_dir=args.output,
                                  dataset_json=args.dataset_json,
                                  tolerance=_tolerance(args.tolerance_mm))

    def shown(key):
        return figure(result, key)
    print(f"Scored {result['scored_cases']} case(s): " + ", ".join(
        shown(k) for k in ("dice", "hd95", "sdice", "apl")) + "; " +
        ", ".join(shown(f"dice_{c}") for c in result["classes"]) + f"; report in {out}")
