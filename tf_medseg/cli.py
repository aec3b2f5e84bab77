"""Command line: ``tf-medseg COMMAND ...`` (train, phantom, evaluate, predict,
export-ensemble, benchmark; installed with ``pip install .``), the same as
``python -m tf_medseg ...``; ``train.py`` is a shortcut for ``train``.

User errors (bad config, bad data) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tf_medseg.commands import add_set_argument, prog, quiet_tensorflow, run_command
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
    args = parser.parse_args(argv)
    quiet_tensorflow()
    return run_command(lambda: _train(args))


def _train(args) -> None:
    from tf_medseg.config import load_config
    config = load_config(args.config, args.set)
    if args.folds:
        if args.tune:
            raise MedsegError("--folds: not with --tune; search first, then cross-validate "
                              "the best config")
        from tf_medseg.cv import cross_validate, parse_folds
        cross_validate(config, parse_folds(args.folds, config.data.num_folds),
                       overwrite=args.overwrite)
        return
    if args.tune:
        if args.overwrite:
            raise MedsegError("--overwrite: not with --tune; a search resumes when rerun, and "
                              "starts again in another train.run_dir (or once RUN_DIR/tuning "
                              "is deleted)")
        from tf_medseg.tuning import tune
        tune(config)
        return
    from tf_medseg.run_dir import RunDir, check_run_dir
    RunDir(check_run_dir(config.train.run_dir)).precheck(args.overwrite)  # before TensorFlow
    from tf_medseg.training import train
    train(config, overwrite=args.overwrite)


def phantom_main(argv: Sequence[str] | None = None) -> int:
    from tf_medseg.config import DataConfig
    d = DataConfig()
    parser = argparse.ArgumentParser(
        prog=prog("phantom"),
        description="Write the synthetic abdominal MRI data set in the Kaggle layout.")
    parser.add_argument("--out", required=True, help="destination folder (new or empty)")
    parser.add_argument("--cases", type=int, default=d.phantom_cases)
    parser.add_argument("--days", type=int, default=d.phantom_days)
    parser.add_argument("--slices", type=int, default=d.phantom_slices)
    parser.add_argument("--seed", type=int, default=d.phantom_seed)
    parser.add_argument("--kaggle-scale", action="store_true",
                        help="the size and shape of the real training set instead: 85 cases, "
                             "274 case-days, 38,496 slices in all four image sizes "
                             "(ignores --cases/--days/--slices; about 5 GB)")
    args = parser.parse_args(argv)
    return run_command(lambda: _phantom(args))


def _phantom(args) -> None:
    from tqdm.auto import tqdm

    from tf_medseg.data.phantom import check_out, kaggle_scale_plan, plan, write_phantom
    from tf_medseg.files import check_output_path
    for name in ("cases", "days", "slices"):
        if not 1 <= getattr(args, name) <= 10_000:
            raise MedsegError(f"--{name} must be from 1 to 10000")
    if not 0 <= args.seed < 2**31:
        raise MedsegError(f"--seed must be from 0 to {2**31 - 1}")
    try:
        check_out(check_output_path(args.out, "--out", "folder"))  # before the progress bar
    except FileExistsError as exc:
        raise MedsegError(str(exc)) from None
    scans = (kaggle_scale_plan(args.seed) if args.kaggle_scale
             else plan(args.cases, args.days, args.slices, args.seed))
    with tqdm(total=len(scans), desc="Writing phantom scans", unit="scan") as bar:
        out = write_phantom(args.out, seed=args.seed, scans=scans,
                            progress=lambda done, total: bar.update(1))
    print(f"Wrote {len(scans)} scans ({sum(s.slices for s in scans)} slices) to {out}")


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("evaluate"),
        description="Score an exported model on the validation fold with the competition "
                    "metric (per case-day and per class); writes metrics.json and "
                    "case_days.csv.")
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
                        help="which cases to score (default: the validation fold)")
    parser.add_argument("--both-empty", default="skip", choices=["skip", "one", "zero"],
                        help="a (slice, class) pair empty in prediction and truth: skipped "
                             "(default), or scored as 1 or 0")
    parser.add_argument("--output", help="report folder (default: evaluation/ beside the "
                                         "SavedModel, in the run directory; required for "
                                         "several --model exports)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    return run_command(lambda: _evaluate(args))


def _evaluate(args) -> None:
    from tf_medseg.config import load_config
    config = load_config(args.config, args.set)
    from tf_medseg.evaluate import evaluate_saved_model
    result, out = evaluate_saved_model(args.model, config, split=args.split,
                                       both_empty=args.both_empty, out_dir=args.output,
                                       postprocess=not args.no_postprocess)

    def shown(key):
        value = result.get(key)
        return f"{key} {value:.4f}" if value is not None and value == value else f"{key} n/a"
    classes = [k[5:] for k in result if k.startswith("dice_") and not
               k.startswith("dice_pooled")]
    print(f"{args.split}: " + ", ".join(
        shown(k) for k in ("dice", "hausdorff", "hd95", "score") if k in result) + "; " +
        ", ".join(shown(f"dice_{c}") for c in classes)
        + (f"; {len(result['models'])} models averaged" if len(result["models"]) > 1 else "")
        + ("; post-processed" if result["postprocessing"] else "") + f"; report in {out}")


def predict_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("predict"),
        description="Predict new scans with an exported model; write a Kaggle submission "
                    "(id,class,predicted), or for NIfTI / image input label maps in the "
                    "input's form, and optionally contour overlays.")
    parser.add_argument("--model", required=True, nargs="+",
                        help="RUN_DIR/saved_model (or RUN_DIR); several exports, or a "
                             "cross-validation RUN_DIR (its folds), are averaged, and a CV "
                             "folder's post-processing is applied")
    parser.add_argument("--no-postprocess", action="store_true",
                        help="leave out the post-processing a cross-validation chose")
    parser.add_argument("--input", required=True,
                        help="a Kaggle-layout folder (test/ or train/), a caseN or caseN_dayM "
                             "folder, or a folder of slice PNGs; for a model trained on "
                             "nnunet, decathlon or folder data: a folder of NIfTI volumes "
                             "(CASE_0000.nii.gz, ...) or 2D images")
    parser.add_argument("--output", default="submission.csv",
                        help="the submission CSV (default: submission.csv); for NIfTI or "
                             "image input a folder of label maps (CASE.nii.gz or NAME.png)")
    parser.add_argument("--probabilities", action="store_true",
                        help="NIfTI / image input: also write CASE.npz with the class "
                             "probabilities")
    parser.add_argument("--overlays", help="also write one PNG per slice with the predicted "
                                           "contours to this folder")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average with the predictions of the "
                             "slice zoomed by 0.9 and 1.1 (three forward passes)")
    parser.add_argument("--threshold", type=float,
                        help="probability above which a pixel is the organ, every class "
                             "(default: the post-processing's per class, else the model's, "
                             "from metadata.json)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="slices per forward pass (default 16)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    return run_command(lambda: _predict(args))


def _predict(args) -> None:
    from tf_medseg.predict import predict
    result = predict(args.model, args.input, args.output, overlays=args.overlays,
                     tta=args.tta, threshold=args.threshold, batch_size=args.batch_size,
                     probabilities=args.probabilities, postprocess=not args.no_postprocess)
    what = (f"{len(result['files'])} label map(s)" if "files" in result
            else f"{result['rows']} rows")
    print(f"Predicted {result['slices']} slices of {result['scans']} scan(s) in "
          f"{result['predict_seconds']:.1f} s (+{result['load_seconds']:.1f} s loading the "
          f"model{'s' if result['models'] > 1 else ''}): {what} in {result['output']}"
          + (f"; {result['models']} models averaged" if result["models"] > 1 else "")
          + ("; post-processed" if result["postprocessing"] else "")
          + (f"; overlays in {args.overlays}" if args.overlays else ""))


def export_ensemble_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("export-ensemble"),
        description="Write one SavedModel that averages the fold exports of a "
                    "cross-validation run inside the graph (signatures as a single export's), "
                    "with metadata.json listing the members and the post-processing.")
    parser.add_argument("run_dir", nargs="+", metavar="RUN_DIR",
                        help="a cross-validation run folder (train.py --folds), or exports")
    parser.add_argument("--out", required=True,
                        help="the new SavedModel folder (e.g. RUN_DIR/ensemble)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    return run_command(lambda: _export_ensemble(args))


def _export_ensemble(args) -> None:
    from tf_medseg.ensemble import export_ensemble
    out = export_ensemble(args.run_dir, args.out)
    print(f"Wrote the ensemble SavedModel to {out}")


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    from tf_medseg.benchmark import main as benchmark
    return benchmark(argv)


COMMANDS = {"train": train_main, "phantom": phantom_main, "evaluate": evaluate_main,
            "predict": predict_main, "export-ensemble": export_ensemble_main,
            "benchmark": benchmark_main}
SUMMARIES = {
    "train": "train (or --tune: search) as a YAML config says; the same as train.py",
    "phantom": "write the built-in synthetic data set in the Kaggle layout",
    "evaluate": "score an exported model on the validation cases (3-D metrics, JSON, CSV)",
    "predict": "predict new scans: a Kaggle submission, or label maps for NIfTI/image input",
    "export-ensemble": "one SavedModel averaging the folds of a cross-validation run",
    "benchmark": "measure input pipeline, training and inference speed (one JSON line)",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    return (f"usage: {prog()} COMMAND [options]   (COMMAND --help for its options)"
            "\n\ncommands:\n" + "".join(f"  {name:<{width}}  {SUMMARIES[name]}\n"
                                        for name in COMMANDS))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        wrong = f"error: unknown command {argv[0]!r}\n" if argv else ""
        print(wrong + _usage(), end="", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])
