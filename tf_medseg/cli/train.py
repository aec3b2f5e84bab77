"""``tf-medseg train`` (and ``train.py``): train, cross-validate (``--folds``) or search
(``--tune``) as a YAML config says."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tf_medseg.cli.common import (
    add_set_argument,
    add_verbose_argument,
    prog,
    quiet_tensorflow,
    run_command,
)
from tf_medseg.errors import MedsegError


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train.py" if sys.argv[0].endswith("train.py") else prog("train"),
        description="Train a U-Net / Attention U-Net as a YAML config says.")
    parser.add_argument("--config", required=True,
                        help="YAML config (a name such as unet.yaml is also looked up in "
                             "configs/)")
    add_set_argument(parser)
    parser.add_argument("--tune", action="store_true",
                        help="run the KerasTuner search of the config's tune: section instead "
                             "(results in RUN_DIR/tuning/); rerun to resume it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the finished (or unfinished) run in train.run_dir; the "
                             "earlier run is kept in RUN_DIR/previous/ until the new run's "
                             "outputs are complete. Without it a finished run is never "
                             "replaced, and an unfinished one is resumed")
    parser.add_argument("--folds", nargs="+", metavar="FOLD",
                        help="cross-validation: 'all' (every fold of data.num_folds) or fold "
                             "numbers; each fold trains into RUN_DIR/fold_K/ (resumable), "
                             "then RUN_DIR/cv/ gets the out-of-fold figures and the "
                             "post-processing chosen on them")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _train(args))


def _train(args) -> None:
    from tf_medseg.config import load_config
    config = load_config(args.config, args.set)
    if args.folds:
        if args.tune:
            raise MedsegError("--folds: not with --tune; search first, then cross-validate "
                              "the best config")
        from tf_medseg.workflows.cv import cross_validate, parse_folds
        cross_validate(config, parse_folds(args.folds, config.data.num_folds),
                       overwrite=args.overwrite)
        return
    if args.tune:
        if args.overwrite:
            raise MedsegError("--overwrite: not with --tune; a search resumes when rerun, and "
                              "starts again in another train.run_dir (or once RUN_DIR/tuning "
                              "is deleted)")
        from tf_medseg.workflows.tune import tune
        tune(config)
        return
    from tf_medseg.run_dir import RunDir, check_run_dir
    RunDir(check_run_dir(config.train.run_dir)).precheck(args.overwrite)  # before TensorFlow
    from tf_medseg.training import train
    train(config, overwrite=args.overwrite)
