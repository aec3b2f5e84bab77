"""Rows of a units table that average other rows' models (nnU-Net's ensemble of
configurations: a 2D and a 3D network, each with its own input size, windows and
normalisation, whose probabilities are averaged on each whole scan before the argmax).

A variant of ``benchmarks/tables.yaml`` with ``members: [A, B, ...]`` trains nothing: its unit on
fold K scores, on fold K's validation scans, the mean of the probabilities that the exports of
its members' units on fold K give (``runs/units/TABLE/MEMBER/fold_K/saved_model``; a member
variant sets ``export.saved_model=true``). The members are declared before it, so that one
``run`` trains them first. An export lives in ``runs/``, which does not outlive a session: the
ensemble's unit must run in the sitting that trained its members' units of that fold, so a
``run`` that selects an ensemble goes fold by fold (the members and the ensemble of fold 0, then
of fold 1, ...).

Its result file has the members' figures summed where a sum is what the row costs: the
training minutes and budget (the plot's axis), the steps; ``minutes`` is the scoring alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.folds import unit_figures
from benchmarks.records import write_result
from tf_medseg.errors import MedsegError


def check(where: str, table: dict) -> None:
    """One-line errors for an ensemble variant whose members are not ours, not declared before
    it, or that sets anything of its own."""
    names = list(table["variants"])
    for vname, v in table["variants"].items():
        members = v.get("members")
        if members is None:
            continue
        earlier = names[:names.index(vname)]
        if (not isinstance(members, list) or len(members) < 2 or len(set(members)) < len(members)
                or any(m not in earlier or table["variants"][m].get("side", "ours") != "ours"
                       or table["variants"][m].get("members") for m in members)
                or v.get("set") or v.get("side", "ours") != "ours" or v.get("rate_from")
                or any(not set(v["folds"]) <= set(table["variants"][m]["folds"])
                       for m in members)):
            raise MedsegError(f"{where}: variant {vname!r}: members must list two or more "
                              f"different variants of ours declared before it (not "
                              f"ensembles) on its folds, and an ensemble has no set, side or "
                              f"rate_from")


class MeanOf:
    """Predictors (:class:`~tf_medseg.inference.predictor.Predictor`, each of its own contract)
    answering as one: the mean of their probabilities on the whole scan, the masks as the
    first one makes them (every member is checked to answer the same classes, the same way)."""

    def __init__(self, predictors):
        first = predictors[0].contract
        for p in predictors[1:]:
            if (p.contract.classes, p.contract.head) != (first.classes, first.head):
                raise MedsegError(f"the members answer {', '.join(first.classes)} "
                                  f"({first.head}) and {', '.join(p.contract.classes)} "
                                  f"({p.contract.head}): an ensemble's members must agree")
        self.predictors, self.contract = list(predictors), first

    def probabilities(self, image, spacing, **options) -> np.ndarray:
        total = None
        for p in self.predictors:
            probs = p.probabilities(image, spacing, **options)
            if total is not None and probs.shape != total.shape:
                raise MedsegError(f"the members' probabilities differ in shape ({total.shape} "
                                  f"and {probs.shape}) on scan {options.get('name')}")
            total = probs.astype(np.float32) if total is None else total + probs
        return total / len(self.predictors)

    def masks(self, probs, threshold=None) -> np.ndarray:
        return self.predictors[0].masks(probs, threshold)


def score_unit(table_name: str, variant: str, fold: int, members: dict, runs: Path,
               path: Path) -> dict:
    """Score ``variant``'s ``members`` ({variant: its recorded row of ``fold``, or None}; their
    run folders under ``runs``) together, and write the result to ``path`` (stamped with the
    commit and the machine by :func:`benchmarks.records.write_result`)."""
    from tf_medseg.config import load_config
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.evaluation.evaluate import evaluate
    from tf_medseg.inference.predictor import Predictor
    where = f"{table_name} {variant} fold {fold}"
    rows, configs, exports = [], [], []
    for member, row in members.items():
        run_dir = runs / member / f"fold_{fold}"
        if row is None:
            raise MedsegError(f"{where}: member {member} has no unit on fold {fold}; run it "
                              f"first (the runner does, declared before {variant})")
        if not (run_dir / "saved_model" / "saved_model.pb").is_file():
            raise MedsegError(
                f"{where}: member {member} has no export in {run_dir / 'saved_model'} (set "
                f"export.saved_model=true on it; runs/ does not outlive a session: delete "
                f"{path.parent.parent / member / path.name} to train it again)")
        rows.append(row)
        configs.append(load_config(str(run_dir / "config.yaml")))
        exports.append(run_dir / "saved_model")
    datasets = [DataSet.open(c.data) for c in configs]
    cases = [[s.name for s in d.split_scans("val")] for d in datasets]
    if any(c != cases[0] for c in cases[1:]):
        raise MedsegError(f"{where}: the members' fold {fold} validates on different scans; "
                          f"give them the same data.num_folds, data.seed and grouping")
    start = time.perf_counter()
    predictor = MeanOf([Predictor.load(e, batch_size=c.data.batch_size, postprocessing=False)
                        for e, c in zip(exports, configs)])
    result, _ = evaluate(predictor, datasets[0], "val",
                         tolerance=configs[0].eval.surface_tolerance_mm)

    def total(key):
        values = [r.get(key) for r in rows]
        return round(sum(values), 2) if all(v is not None for v in values) else None
    budgets = [(r.get("budget") or {}).get("budget_minutes") for r in rows]
    row = {
        "table": table_name, "variant": variant, "fold": fold, "side": "ours",
        "members": list(members), "config_digest": [r["config_digest"] for r in rows],
        **unit_figures(result),
        "minutes": round((time.perf_counter() - start) / 60, 2),
        "train_minutes": total("train_minutes"), "steps": total("steps"),
        "budget": {"budget_minutes": sum(budgets)} if None not in budgets else None,
    }
    return write_result(path, row)
