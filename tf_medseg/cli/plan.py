"""``tf-medseg plan``: the configuration planned from the data set's fingerprint."""

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


def plan_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("plan"),
        description="Derive the configuration from the data set's fingerprint (every scan's "
                    "shape and spacing, the channels and classes; stored with the records, "
                    "which are built first if needed), as nnU-Net plans its experiments: "
                    "target spacing, slice axis and in-plane spacing, patch (image) size, "
                    "batch size, network depth and normalisation, each printed with its "
                    "reason, and the 3D network for volume data. With --out, a config "
                    "(base: CONFIG plus the planned keys) that trains as it is. Every "
                    "source: Kaggle layout, phantom, nnU-Net, Decathlon, image folders.")
    parser.add_argument("--config", required=True, help="the YAML config whose data to plan")
    add_set_argument(parser)
    parser.add_argument("--out", help="write the plan to this new YAML file (e.g. "
                                      "plans.yaml); without it the plan is printed only")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds an earlier plan (never another file)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _plan(args))


def _plan(args) -> None:
    from tf_medseg.workflows.plan import plan
    result, out = plan(args.config, args.set, args.out, args.overwrite)
    print("\n".join(result.lines()))
    if out is not None:
        print(f"Wrote the plan to {out}; train it with: python train.py --config {out}")
