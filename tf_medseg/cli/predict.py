"""``tf-medseg predict``: exported models on new inputs."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import add_verbose_argument, prog, quiet_tensorflow, run_command


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
                             "(CASE_0000.nii.gz, ...) or 2D images; any model: a folder of "
                             "DICOM files (any depth), one case per image series")
    parser.add_argument("--output", default="submission.csv",
                        help="the submission CSV (default: submission.csv); for NIfTI or "
                             "image input a folder of label maps (CASE.nii.gz or NAME.png)")
    from tf_medseg.inference.writers.registry import OUTPUT_FORMATS
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS,
                        help="what DICOM input is answered with: rtstruct (an RT Structure "
                             "Set per series, the default), seg (a DICOM SEG of BINARY "
                             "segments), seg-labelmap (one Label Map SEG, softmax models) or "
                             "nifti; other inputs have their own form's only (csv, nifti, png)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier prediction in --output / --overlays (a "
                             "submission CSV, or a folder with predict's prediction.json); "
                             "any other existing file or non-empty folder is always refused")
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
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _predict(args))


def _predict(args) -> None:
    from tf_medseg.inference.predict import predict
    result = predict(args.model, args.input, args.output, overlays=args.overlays,
                     tta=args.tta, threshold=args.threshold, batch_size=args.batch_size,
                     probabilities=args.probabilities, postprocess=not args.no_postprocess,
                     overwrite=args.overwrite, output_format=args.output_format)
    what = (f"{len(result['files'])} label map(s)" if "files" in result
            else f"{result['rows']} rows")
    print(f"Predicted {result['slices']} slices of {result['scans']} scan(s) in "
          f"{result['predict_seconds']:.1f} s (+{result['load_seconds']:.1f} s loading the "
          f"model{'s' if result['models'] > 1 else ''}): {what} in {result['output']}"
          + (f"; {result['models']} models averaged" if result["models"] > 1 else "")
          + ("; post-processed" if result["postprocessing"] else "")
          + (f"; overlays in {args.overlays}" if args.overlays else ""))
