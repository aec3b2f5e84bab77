"""Command line: ``tf-medseg COMMAND ...`` (train, phantom, evaluate, evaluate-folder, predict,
export-ensemble, plan, benchmark, serve-dicom; installed with ``pip install .``), the same as
``python -m tf_medseg ...``; ``train.py`` is a shortcut for ``train``.

User errors (bad config, bad data) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tf_medseg.cli.benchmark import benchmark_main
from tf_medseg.cli.common import add_verbose_argument, prog, quiet_tensorflow, run_command
from tf_medseg.cli.evaluate import evaluate_main
from tf_medseg.cli.evaluate_folder import evaluate_folder_main
from tf_medseg.cli.phantom import phantom_main
from tf_medseg.cli.plan import plan_main
from tf_medseg.cli.predict import predict_main
from tf_medseg.cli.serve_dicom import serve_dicom_main
from tf_medseg.cli.train import train_main


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
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _export_ensemble(args))


def _export_ensemble(args) -> None:
    from tf_medseg.export.ensemble import export_ensemble
    out = export_ensemble(args.run_dir, args.out)
    print(f"Wrote the ensemble SavedModel to {out}")


COMMANDS = {"train": train_main, "phantom": phantom_main, "evaluate": evaluate_main,
            "evaluate-folder": evaluate_folder_main,
            "predict": predict_main, "export-ensemble": export_ensemble_main,
            "plan": plan_main, "benchmark": benchmark_main, "serve-dicom": serve_dicom_main}
SUMMARIES = {
    "train": "train (or --tune: search) as a YAML config says; the same as train.py",
    "phantom": "write the built-in synthetic data set in the Kaggle layout",
    "evaluate": "score an exported model on a split of its config's data (3-D metrics)",
    "evaluate-folder": "score label maps against ground truth, or an export on a test folder",
    "predict": "predict new scans: a Kaggle submission, or label maps for NIfTI/image input",
    "export-ensemble": "one SavedModel averaging the folds of a cross-validation run",
    "plan": "derive the configuration from the data set's fingerprint, with reasons",
    "benchmark": "measure input pipeline, training and inference speed (one JSON line)",
    "serve-dicom": "a DICOM node: contours the series it receives, sends RT Structure Sets",
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
