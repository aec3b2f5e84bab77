"""``tf-medseg phantom``: write the built-in synthetic data set in the Kaggle layout."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import add_verbose_argument, prog, quiet_tensorflow, run_command
from tf_medseg.errors import MedsegError


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
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
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
