"""Measurements that survive a stop: a table (a data set's cross-validation beside the peer, an
ablation) cut into units of one variant x one fold, each short enough to finish in one sitting,
each recorded in a result file committed to the repository the moment it lands.

::

    python -m benchmarks.units run TABLE [--budget-minutes N] [--only VARIANT ...]
        [--folds K ...] [--commit] [--dry-run]
    python -m benchmarks.units status [TABLE ...]
    python -m benchmarks.unit_report [TABLE ...]      # docs/measurements.md + docs/*.png
The tables and their variants are declared in ``benchmarks/tables.yaml`` (a base config, the
folds, and per variant its ``--set`` overrides, its side (``ours`` or ``peer``:
keras-unet-collection's ``unet_2d``, ``pip install keras-unet-collection``) and an estimate
of one unit's minutes, used until a unit of it has been measured).

``run`` starts, one at a time and each in its own process, the units whose result file is not
there yet and whose expected minutes (the median of that variant's recorded units, else the
declared estimate) fit in what is left of ``--budget-minutes``; it starts nothing it does not
expect to finish. A unit trains into ``runs/units/TABLE/VARIANT/fold_K`` (resumed if an
earlier attempt was interrupted) with the last epoch kept. A variant's first unit plans the
table's time budget (``train.max_minutes``: the epochs that fit, measured on this machine); its
other folds train the same epochs and schedule (``train.epochs``, no budget), so that the folds
of a row are alike and a unit that shares the machine with other work takes longer instead of
training less (``--measure``: every unit plans its own). A variant with ``rate_from: OTHER``
(the same configuration on a longer budget) plans nothing: its epochs are what its budget fits
at the step rate OTHER's first unit measured; one with ``members: [A, B]`` averages
their models (:mod:`benchmarks.ensembles`); one with ``folds: [K, ...]`` is a probe, run and
reported on those folds only (under its table's rows, not among them). The units go variant
by variant in declared order, each over the folds; where an ensemble is selected, fold by fold
(its members, then it).
Each unit writes ``benchmarks/results/TABLE/VARIANT/fold_K.json``: per class 3-D Dice and
HD95, the minutes (training and in all), the epochs and steps trained, the time budget's plan,
the config's digest, the commit and the machine (:mod:`benchmarks.records`). With ``--commit``
each result file is committed on its own as soon as it is written.

``benchmarks.unit_report`` regenerates every table of ``docs/measurements.md`` between its markers
``<!-- units:TABLE -->`` and ``<!-- /units:TABLE -->`` from the committed files alone (means
over the folds present, per class, HD95, minutes, the difference to the peer on the same folds)
and, where matplotlib is installed, ``docs/units_TABLE.png``: mean Dice against training
minutes per configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.folds import command, fold_config, unit_figures
from benchmarks.records import (
    ROOT,
    RUNS,
    TABLES,
    commit_result,
    git_state,
    recorded,
    result_path,
    write_result,
)
from tf_medseg.errors import MedsegError

# Tables --------------------------------------------------------------------------------

def read_tables(path: Path = TABLES) -> dict:
    """The declared tables, checked (one-line errors naming the file and the entry)."""
    import yaml
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MedsegError(f"{path}: cannot be read as YAML ({str(exc).splitlines()[0][:120]})"
                          ) from None
    if not isinstance(raw, dict) or not raw:
        raise MedsegError(f"{path}: must map table names to tables")
    for name, table in raw.items():
        where = f"{path}: table {name!r}"
        if not isinstance(table, dict) or not isinstance(table.get("config"), str) or \
                not isinstance(table.get("variants"), dict) or not table["variants"]:
            raise MedsegError(f"{where} needs a config (a file) and variants (a mapping)")
        table.setdefault("folds", [0, 1, 2, 3, 4])
        table.setdefault("set", [])
        for vname, v in table["variants"].items():
            if v is None:
                v = table["variants"][vname] = {}
            if (not isinstance(v, dict) or not str(vname).replace("_", "").isalnum()
                    or not all(isinstance(o, str) and "=" in o for o in v.get("set", []))
                    or v.get("side", "ours") not in ("ours", "peer")
                    or not isinstance(v.get("minutes", 10), (int, float))
                    or v.get("rate_from", vname) not in table["variants"]
                    or (v.get("versus") is not None and (table["variants"].get(
                        v["versus"]) or {}).get("side") != "peer")
                    or not _folds_of(v.get("folds", table["folds"]), table["folds"])):
                raise MedsegError(f"{where}: variant {vname!r} must be a name of letters, "
                                  f"digits and _, with set (a list of KEY=VALUE), side (ours "
                                  f"or peer), minutes (a number), rate_from (a variant "
                                  f"of the table), versus (a peer variant of the table) and "
                                  f"folds (some of the table's {table['folds']})")
            v.setdefault("folds", list(table["folds"]))
            v.setdefault("set", [])
            v.setdefault("side", "ours")
            v.setdefault("minutes", 10)
        from benchmarks.ensembles import check
        check(where, table)  # members: [A, B] (benchmarks/ensembles.py)
    return raw


def _folds_of(folds, table_folds) -> bool:
    """Whether a variant's ``folds`` (a probe declared on fewer folds than its table) is a
    non-empty list of the table's folds."""
    return (isinstance(folds, list) and bool(folds)
            and all(isinstance(k, int) and k in table_folds for k in folds))


def table_of(tables: dict, name: str) -> dict:
    if name not in tables:
        raise MedsegError(f"no table {name!r} in {TABLES} (there are {', '.join(tables)})")
    return tables[name]


def expected_minutes(table: str, variant: str, declared: float) -> float:
    """What one unit of ``variant`` is expected to take: the median of its recorded units
    (with 10% to spare), else the declared estimate."""
    done = [r["minutes"] for r in recorded(table, variant).values() if r.get("minutes")]
    return float(np.median(done)) * 1.1 if done else float(declared)


def overrides(table: dict, variant: str) -> list[str]:
    return [*table["set"], *table["variants"][variant]["set"]]


# One unit ------------------------------------------------------------------------------

def planned_unit(table: str, variant: str, fold: int) -> dict | None:
    """The recorded unit of ``variant`` whose time budget fixes the steps of its other folds:
    the lowest fold measured on its own (None before the first)."""
    for k, row in sorted(recorded(table, variant).items()):
        plan = row.get("budget") or {}
        if k != fold and "fixed_by_fold" not in plan and isinstance(plan.get("epochs"), int) \
                and plan.get("steps_per_epoch"):
            return row
    return None


def rate_plan(table: str, source: str, config) -> dict:
    """The plan of a variant that takes its step rate from ``source`` (``rate_from`` in
    tables.yaml: a longer budget of the same configuration): the epochs its own
    ``train.max_minutes`` fits at the rate ``source``'s first unit measured, less the time
    that unit spent outside its epochs (compiling, the last partial epoch). Its training then
    does not depend on what else the machine does while it starts."""
    src = planned_unit(table, source, -1)
    if src is None:
        raise MedsegError(f"{table}: rate_from {source!r}: no unit of {source} has measured its "
                          f"step rate yet; run {source} first")
    plan = src["budget"]
    if config.train.steps_per_epoch not in (None, plan["steps_per_epoch"]):
        raise MedsegError(f"{table}: rate_from {source!r}: its epochs have "
                          f"{plan['steps_per_epoch']} steps, this variant's "
                          f"{config.train.steps_per_epoch}; give both the same "
                          f"train.steps_per_epoch")
    per_epoch = plan["seconds_per_epoch"]
    outside = max(0.0, plan["budget_minutes"] * 60 - plan["epochs"] * per_epoch)
    fits = max(1, int((config.train.max_minutes * 60 - outside) // per_epoch))
    epochs = min(config.train.epochs, fits)
    budget = {"budget_minutes": float(config.train.max_minutes), "epochs": epochs,
              "steps_per_epoch": plan["steps_per_epoch"],
              "steps": epochs * plan["steps_per_epoch"],
              "seconds_per_step": plan["seconds_per_step"], "seconds_per_epoch": per_epoch,
              "capped_by_train_epochs": epochs < fits,
              "rate_from": {"variant": source, "fold": src["fold"]}}
    return {"budget": budget, "fold": src["fold"], "derived": True,
            "why": f"{source} fold {src['fold']}'s step rate ({per_epoch:g} s an epoch)"}


def run_unit(table_name: str, variant: str, fold: int, measure: bool = False) -> dict:
    """Train and score one unit (in this process) and write its result file. A variant's first
    unit plans its time budget (``train.max_minutes``: the epochs that fit on this machine);
    its other folds train those epochs (same steps, same schedule, whatever else the machine
    is doing), unless ``measure`` (each unit planned on its own)."""
    from tf_medseg.config import load_config
    from tf_medseg.planning.planner import planned_config
    from tf_medseg.training import train
    table = table_of(read_tables(), table_name)
    spec = table["variants"][variant]
    if spec.get("members"):  # an ensemble of other rows' units: scored, not trained
        from benchmarks.ensembles import score_unit
        rows = {m: recorded(table_name, m).get(fold) for m in spec["members"]}
        return score_unit(table_name, variant, fold, rows, RUNS / table_name,
                          result_path(table_name, variant, fold))
    code = git_state()  # the code the unit trains with, whatever lands while it does
    base = load_config(str(ROOT / table["config"]) if not Path(table["config"]).is_absolute()
                       else table["config"], overrides(table, variant))
    run_dir = RUNS / table_name / variant / f"fold_{fold}"
    config = fold_config(base, fold, run_dir)
    reference = None if measure else planned_unit(table_name, variant, fold)
    if reference is None and not measure and spec.get("rate_from") and config.train.max_minutes:
        reference = rate_plan(table_name, spec["rate_from"], config)
    if reference is not None and config.train.max_minutes:
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, max_minutes=None, epochs=reference["budget"]["epochs"],
            steps_per_epoch=reference["budget"]["steps_per_epoch"]))
        why = reference.get("why") or f"fold {reference['fold']}'s time budget"
        print(f"{table_name} {variant} fold {fold}: the {reference['budget']['epochs']} epochs "
              f"({reference['budget']['steps']} steps) {why} fixed", flush=True)
    start = time.perf_counter()
    if spec["side"] == "peer":
        from benchmarks.peer_cv import train_peer
        config = planned_config(config)
        result = train_peer(config, run_dir)
    else:
        result = train(config, verbose=2)
    minutes = (time.perf_counter() - start) / 60
    from tf_medseg.run_dir import BUDGET
    budget = {}
    if reference is not None and reference.get("derived"):
        budget = reference["budget"]
    elif reference is not None:
        budget = {**reference["budget"], "fixed_by_fold": reference["fold"]}
    elif (run_dir / BUDGET).is_file():
        budget = json.loads((run_dir / BUDGET).read_text())
    from tf_medseg.training.checkpoints import read_history
    history = read_history(run_dir / "history.csv")
    steps_per_epoch = budget.get("steps_per_epoch") or config.train.steps_per_epoch
    row = {
        "table": table_name, "variant": variant, "fold": fold, "side": spec["side"],
        "overrides": overrides(table, variant), "config": table["config"],
        "config_digest": config.digest(),
        **unit_figures(result),
        "minutes": round(minutes, 2),
        # the budget's measure: epochs x (steps at the measured rate + validation)
        "train_minutes": round(len(history) * budget["seconds_per_epoch"] / 60, 2)
        if budget else None,
        "epochs": len(history), "steps_per_epoch": steps_per_epoch,
        "steps": len(history) * steps_per_epoch if steps_per_epoch else None,
        "budget": budget or None, "seed": config.train.seed,
    }
    return write_result(result_path(table_name, variant, fold), row, code)


# The runner ----------------------------------------------------------------------------

def pending(table_name: str, table: dict, only, folds) -> list[tuple[str, int]]:
    """The units not recorded yet, in declared order: fold by fold within each variant, or,
    where an ensemble row is among them, variant by variant within each fold (its members'
    exports of a fold live only in the sitting that trained them)."""
    names = only or list(table["variants"])
    unknown = [v for v in names if v not in table["variants"]]
    if unknown:
        raise MedsegError(f"--only: table {table_name} has no variant {unknown[0]!r} (there "
                          f"are {', '.join(table['variants'])})")
    declared = list(table["variants"])  # an ensemble's members are declared before it
    units = [(v, k) for v in sorted(set(names), key=declared.index)
             for k in (folds if folds is not None else table["folds"])
             if k in table["variants"][v]["folds"]]  # a probe: only the folds it declares
    if any(table["variants"][v].get("members") for v in names):
        units.sort(key=lambda unit: unit[1])  # stable: declared order within a fold
    return [(v, k) for v, k in units if not result_path(table_name, v, k).is_file()]


def run(args) -> list:
    tables = read_tables()
    table = table_of(tables, args.table)
    deadline = time.monotonic() + args.budget_minutes * 60 if args.budget_minutes else None
    done = []
    for variant, fold in pending(args.table, table, args.only, args.folds):
        expected = expected_minutes(args.table, variant, table["variants"][variant]["minutes"])
        left = (deadline - time.monotonic()) / 60 if deadline else float("inf")
        if expected > left:
            print(f"-- {args.table} {variant} fold {fold}: expected {expected:.0f} min, "
                  f"{left:.0f} left: not started", flush=True)
            continue
        print(f"== {args.table} {variant} fold {fold} (expected {expected:.0f} min) ==",
              flush=True)
        if args.dry_run:
            continue
        proc = subprocess.run([sys.executable, "-m", "benchmarks.units", "unit", args.table,
                               variant, str(fold), *(["--measure"] if args.measure else [])],
                              cwd=ROOT)
        path = result_path(args.table, variant, fold)
        if proc.returncode != 0 or not path.is_file():
            print(f"-- {args.table} {variant} fold {fold}: failed (exit {proc.returncode}); "
                  f"nothing recorded", flush=True)
            continue
        row = json.loads(path.read_text())
        done.append(row)
        print(f"-- {args.table} {variant} fold {fold}: Dice {row.get('dice', float('nan')):.3f}"
              f", {row['minutes']:.1f} min, {row['steps']} steps", flush=True)
        if args.commit:
            commit_result(path, row)
    return done


def status(args) -> None:
    tables = read_tables()
    for name in args.tables or list(tables):
        table = table_of(tables, name)
        for variant, spec in table["variants"].items():
            have = sorted(recorded(name, variant))
            print(f"{name} {variant}: folds {have or 'none'} of {spec['folds']}; a unit "
                  f"~{expected_minutes(name, variant, spec['minutes']):.0f} min")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.units",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="run the units not recorded yet that fit the budget")
    r.add_argument("table")
    r.add_argument("--budget-minutes", type=float, help="start only units ending within N min")
    r.add_argument("--only", nargs="+", help="these variants only")
    r.add_argument("--folds", nargs="+", type=int, help="these folds only")
    r.add_argument("--commit", action="store_true", help="commit each result file as it lands")
    r.add_argument("--dry-run", action="store_true", help="say what would start")
    measure = ("plan every unit's time budget on its own (default: a variant's first unit "
               "plans it, its other folds train the same steps)")
    r.add_argument("--measure", action="store_true", help=measure)
    u = sub.add_parser("unit", help="train and record one unit in this process")
    u.add_argument("table")
    u.add_argument("variant")
    u.add_argument("fold", type=int)
    u.add_argument("--measure", action="store_true", help=measure)
    sub.add_parser("status").add_argument("tables", nargs="*")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def dispatch(args):
        if args.what == "run":
            return run(args)
        if args.what == "unit":
            return run_unit(args.table, args.variant, args.fold, args.measure)
        return status(args)
    return command(_parser(), dispatch, argv)


if __name__ == "__main__":
    raise SystemExit(main())
