"""What each part of the recipe buys: config variants trained on the same folds with the same
seed, each scored with the same 3-D metrics on its validation fold, in one table.

::

    python -m benchmarks.ablation --config plans.yaml --out runs/ablation [--folds 0 1 2 3 4]
        [--variants variants.yaml] [--only base deep_supervision] [--set KEY=VALUE ...]

``--variants`` is a YAML mapping of a variant's name to its ``--set`` overrides (a list of
``KEY=VALUE``); without it, :data:`VARIANTS`: the base config, + deep supervision, + test-time
mirroring (along the rows, which training then flips too: a left-right mirror would swap the
kidneys), nnU-Net's blocks and optimiser (instance norm, leaky ReLU, Nesterov SGD 0.01 / 0.99,
poly, weight decay 3e-5, clipping at 12), and all of them together.

Every fold trains into ``OUT/VARIANT/fold_K`` (a normal run folder) with ``train.keep: last``,
so that no figure is chosen on the fold it is reported on. ``OUT/ablation.json`` holds per
variant and fold the 3-D Dice per class, HD95 and the wall time, and is written after every
fold: a rerun of the same command skips the folds it holds (a killed ablation continues).
``OUT/ablation.md`` is the table: mean over the folds per organ, mean Dice, mean HD95, the
wall time per fold, and the difference to the base.
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

NNUNET_BLOCKS = ["model.norm=instance", "model.activation=leaky_relu", "train.optimizer=sgd",
                 "train.learning_rate=0.01", "train.momentum=0.99", "train.weight_decay=3e-5",
                 "train.schedule=poly", "train.warmup_epochs=0", "train.clipnorm=12"]
MIRRORING = ["augment.flip_ud=0.5", "predict.tta=flips"]
VARIANTS = {
    "base": [],
    "deep_supervision": ["model.deep_supervision=true"],
    "mirroring": MIRRORING,
    "nnunet_blocks": NNUNET_BLOCKS,
    "all": ["model.deep_supervision=true", *MIRRORING, *NNUNET_BLOCKS],
}


def _parser() -> argparse.ArgumentParser:
    from tf_medseg.cli.common import add_set_argument
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the base config (e.g. a written plan)")
    p.add_argument("--out", required=True, help="folder for the runs, ablation.json and .md")
    p.add_argument("--folds", nargs="+", type=int, help="folds to run (default: all)")
    p.add_argument("--variants", help="YAML: variant name -> list of KEY=VALUE overrides "
                                      "(default: the built-in five)")
    p.add_argument("--only", nargs="+", help="run only these variants")
    add_set_argument(p)
    return p


def read_variants(path: str | None) -> dict[str, list[str]]:
    """The variants of ``--variants`` (one-line errors naming the file and the entry)."""
    if path is None:
        return dict(VARIANTS)
    import yaml
    try:
        raw = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MedsegError(f"--variants {path}: cannot be read as YAML "
                          f"({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(raw, dict) or not raw:
        raise MedsegError(f"--variants {path}: must map variant names to lists of KEY=VALUE")
    variants = {}
    for name, overrides in raw.items():
        if overrides is None:
            overrides = []
        if (not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum()
                or not isinstance(overrides, list)
                or not all(isinstance(o, str) and "=" in o for o in overrides)):
            raise MedsegError(f"--variants {path}: entry {name!r} must be a name of letters, "
                              f"digits, _ or - and a list of KEY=VALUE strings")
        variants[name] = overrides
    return variants


def run(args) -> dict:
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    variants = read_variants(args.variants)
    if args.only:
        unknown = [v for v in args.only if v not in variants]
        if unknown:
            raise MedsegError(f"--only: no variant {unknown[0]!r} (there are "
                              f"{', '.join(variants)})")
        variants = {k: v for k, v in variants.items() if k in args.only}
    # Every variant's config is checked before the first fold trains.
    configs = {name: load_config(args.config, [*(args.set or []), *overrides])
               for name, overrides in variants.items()}
    first = next(iter(configs.values()))
    folds = args.folds if args.folds is not None else list(range(first.data.num_folds))
    out = Path(args.out).expanduser()
    table_path = out / "ablation.json"
    table = {"variants": {}, "overrides": variants}
    if table_path.is_file():
        from tf_medseg.run_dir import read_json
        table = read_json(table_path, "ablation table",
                          "delete it (or use another --out) to start the ablation over")
        table.setdefault("overrides", {}).update(variants)
    for name, base in configs.items():
        per_fold = table["variants"].setdefault(name, {})
        for fold in folds:
            if str(fold) in per_fold:
                print(f"== {name}, fold {fold}: in {table_path} already ==", flush=True)
                continue
            config = fold_config(base, fold, out / name / f"fold_{fold}")
            print(f"== {name}, fold {fold} ==", flush=True)
            start = time.perf_counter()
            result = train(config, verbose=2)
            per_fold[str(fold)] = fold_row(result, time.perf_counter() - start)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(table_path, json.dumps(table, indent=2) + "\n")
            atomic_write(out / "ablation.md", markdown(table))
    print(markdown(table), flush=True)
    return table


def markdown(table: dict) -> str:
    """The table: per variant the mean over its folds of each organ's 3-D Dice, the mean
    Dice, the mean HD95 and the wall time per fold, and the mean Dice minus the base's."""
    variants = {k: v for k, v in table["variants"].items() if v}
    if not variants:
        return "(no fold finished yet)\n"
    classes = sorted({k[5:] for rows in variants.values() for r in rows.values()
                      for k in r if k.startswith("dice_")})

    def mean(rows, key):
        values = [r[key] for r in rows.values() if r.get(key) is not None]
        return float(np.mean(values)) if values else float("nan")
    base = mean(variants["base"], "dice") if "base" in variants else None
    head = ["variant", "folds", *classes, "mean Dice", "vs base", "HD95 mm", "min per fold"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in variants.items():
        dice = mean(rows, "dice")
        cells = [name, ",".join(sorted(rows, key=int)),
                 *(f"{mean(rows, f'dice_{c}'):.3f}" for c in classes), f"**{dice:.3f}**",
                 "" if base is None or name == "base" else f"{dice - base:+.3f}",
                 f"{mean(rows, 'hd95'):.1f}", f"{mean(rows, 'seconds') / 60:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return command(_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
