"""The tables of ``benchmarks/units.py``, generated from the committed result files alone:
the markdown of each table between its markers in ``docs/measurements.md`` and, where
matplotlib is installed, ``docs/units_TABLE.png`` (mean Dice against training minutes).

::

    python -m benchmarks.unit_report [TABLE ...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.folds import command
from benchmarks.records import DOC, recorded
from benchmarks.units import read_tables, table_of
from tf_medseg.errors import MedsegError
from tf_medseg.files import atomic_write


def _mean(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else float("nan")


def _cell(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "-"


def _spread(rows: list) -> str:
    """`` ± sd`` of the folds' mean Dice (the sample standard deviation), where there are two
    folds or more."""
    dice = [r["dice"] for r in rows if r.get("dice") is not None]
    return f" ± {np.std(dice, ddof=1):.3f}" if len(dice) > 1 else ""


def _budget(rows: dict):
    """The minutes of training a row's units were budgeted (None without a budget)."""
    budget = next(iter(rows.values())).get("budget") or {}
    return budget.get("budget_minutes")


def is_probe(table: dict, variant: str) -> bool:
    """Whether ``variant`` is declared on fewer folds than its table (``folds`` in
    tables.yaml): reported apart, drawn hollow."""
    return set(table["variants"][variant]["folds"]) < set(table["folds"])


def markdown(table_name: str, table: dict) -> str:
    """The table of one declared table, from its result files."""
    results = {v: recorded(table_name, v) for v in table["variants"]}
    results = {v: r for v, r in results.items() if r}
    if not results:
        return f"(no unit of {table_name} recorded yet)\n"
    classes = [k[5:] for k in next(iter(next(iter(results.values())).values()))
               if k.startswith("dice_")]
    peers = [v for v in results if table["variants"][v]["side"] == "peer"]
    head = ["configuration", "folds", *classes, "mean Dice ± sd of folds",
            "vs peer, same folds",
            "HD95 mm", "minutes a fold (training)", "steps"]
    header = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(variant: str) -> str:
        rows = results[variant]
        folds = sorted(rows)
        values = list(rows.values())
        versus = ""
        against = table["variants"][variant].get("versus") or (peers[0] if peers else None)
        if against in results and variant not in peers:
            peer = results[against]
            common = [k for k in folds if k in peer]
            if common and _budget(rows) == _budget(peer):  # a longer budget: not side by side
                diff = np.mean([rows[k]["dice"] - peer[k]["dice"] for k in common])
                versus = f"{diff:+.3f} ({len(common)})"
        label = table["variants"][variant].get("label", variant)
        cells = [label, ",".join(map(str, folds)),
                 *(f"{_mean(values, f'dice_{c}'):.3f}" for c in classes),
                 f"**{_mean(values, 'dice'):.3f}**" + _spread(values), versus,
                 _cell(_mean(values, 'hd95')),
                 f"{_mean(values, 'minutes'):.1f} ({_cell(_mean(values, 'train_minutes'))})",
                 f"{_mean(values, 'steps'):.0f}"]
        return "| " + " | ".join(cells) + " |"

    probes = [v for v in results if is_probe(table, v)]
    lines = [*header, *(row(v) for v in results if v not in probes)]
    if probes:  # under a head of their own
        lines += ["", f"Probes, each declared on fewer folds than the table's "
                  f"{len(table['folds'])} to answer one question (`folds` in tables.yaml); "
                  f"their means are not over the folds of the rows above:", "", *header,
                  *(row(v) for v in probes)]
    return "\n".join(lines) + "\n"


def plot(table_name: str, table: dict, out: Path) -> bool:
    """Mean Dice against training minutes, one point per configuration (matplotlib), a line
    from a longer budget to the configuration whose step rate it took (``rate_from``), a
    legend in place of labels; a point far below the rest drawn on the lower edge (v)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", flush=True)
        return False
    points = {}
    for variant, spec in table["variants"].items():
        rows = list(recorded(table_name, variant).values())
        if rows:
            x = _mean(rows, "train_minutes")
            dice = [r["dice"] for r in rows if r.get("dice") is not None]
            points[variant] = (x if np.isfinite(x) else _mean(rows, "minutes"),
                               _mean(rows, "dice"), np.std(dice, ddof=1) if len(dice) > 1
                               else 0.0, len(rows), spec)
    if not points:
        return False
    ys = [p[1] for p in points.values()]
    floor = min(y for y in ys if y >= np.median(ys) - 0.1) - 0.01
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, (variant, (x, y, sd, n, spec)) in enumerate(points.items()):
        colour, below = colours[i % len(colours)], y < floor
        marker = "v" if below else ("s" if spec["side"] == "peer" else "o")
        source = points.get(spec.get("rate_from"))
        if source is not None and abs(source[0] - x) > 1:  # a longer budget, not a twin
            ax.plot([source[0], x], [max(source[1], floor), max(y, floor)], color=colour,
                    alpha=0.4, lw=1)
        ax.errorbar([x], [max(y, floor)], yerr=None if below or not sd else [sd],
                    fmt=marker, color=colour, capsize=3,
                    mfc="none" if is_probe(table, variant) else colour,
                    label=f"{variant} ({n}): {y:.3f}" + (", below the axis" if below else ""))
    ax.set_ylim(bottom=floor - 0.005)
    ax.set_xlabel("training minutes per fold, as the budget planned them (this CPU)")
    ax.set_ylabel("mean 3-D Dice over the folds recorded")
    ax.set_title(f"{table_name}: what a budget buys (folds in brackets; squares: the peer; "
                 f"hollow: probes; bars: sd of folds)", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return True


def report(args) -> None:
    tables = read_tables()
    names = args.tables or list(tables)
    text = DOC.read_text()
    for name in names:
        table = table_of(tables, name)
        start, end = f"<!-- units:{name} -->", f"<!-- /units:{name} -->"
        if start not in text or end not in text:
            raise MedsegError(f"{DOC}: no markers {start} ... {end} for table {name}; add "
                              f"them where the table belongs")
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        body = markdown(name, table)
        if plot(name, table, DOC.parent / f"units_{name}.png"):
            body += f"\n![{name}: mean Dice against training minutes](units_{name}.png)\n"
        text = f"{before}{start}\n{body}{end}{after}"
        print(body, flush=True)
    atomic_write(DOC, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.unit_report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="the tables to regenerate (default: all)")
    return command(parser, report, argv)


if __name__ == "__main__":
    raise SystemExit(main())
