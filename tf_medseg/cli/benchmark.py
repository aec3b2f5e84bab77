"""``tf-medseg benchmark``: input pipeline, training and inference throughput on a data set
folder (:mod:`tf_medseg.workflows.benchmark`); one JSON line last."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import (
    add_set_argument,
    add_verbose_argument,
    prog,
    quiet_tensorflow,
    run_command,
)
from tf_medseg.workflows.benchmark import PARTS, SOURCES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("benchmark"),
        description="Measure input pipeline, training and inference throughput on a "
                    "data set folder; prints one JSON line last.")
    parser.add_argument("--data-root", required=True,
                        help="a Kaggle-layout folder (train.csv and train/), an nnU-Net or "
                             "Decathlon folder (dataset.json) or an image folder (labels.json)")
    parser.add_argument("--source", choices=SOURCES,
                        help="the data set's format (default: recognised from the folder)")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"),
                        help="model input size (default: the config's data.image_size)")
    parser.add_argument("--only", choices=PARTS, help="measure one part only")
    parser.add_argument("--config", default="unet.yaml",
                        help="config for model, context, batch size and augmentation "
                             "(default: configs/unet.yaml)")
    add_set_argument(parser)
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="how long to time each part (default 15)")
    parser.add_argument("--compare-runtimes", type=int, default=0, metavar="ROUNDS",
                        help="also time training under mixed_bfloat16 (mixed_float16 on a "
                             "GPU) and float32, each with and without XLA, in ROUNDS "
                             "alternating rounds of --seconds "
                             "(medians go to 'runtimes' in the JSON line)")
    add_verbose_argument(parser)
    return parser


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    from tf_medseg.workflows.benchmark import run
    return run_command(lambda: run(args))
