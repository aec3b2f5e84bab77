"""Where the units of :mod:`benchmarks.units` keep their tables, results, runs and document,
and how a unit's result file is read, stamped, written and committed.

``TF_MEDSEG_UNITS_DIR`` moves them all under one folder (``tables.yaml``, ``results/``,
``runs/`` and ``measurements.md`` there: the tests' way).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from tf_medseg.errors import MedsegError
from tf_medseg.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
_HOME = os.environ.get("TF_MEDSEG_UNITS_DIR")
TABLES = Path(_HOME) / "tables.yaml" if _HOME else ROOT / "benchmarks" / "tables.yaml"
RESULTS = Path(_HOME) / "results" if _HOME else ROOT / "benchmarks" / "results"
RUNS = Path(_HOME) / "runs" if _HOME else ROOT / "runs" / "units"
DOC = Path(_HOME) / "measurements.md" if _HOME else ROOT / "docs" / "measurements.md"


def result_path(table: str, variant: str, fold: int) -> Path:
    return RESULTS / table / variant / f"fold_{fold}.json"


def recorded(table: str, variant: str) -> dict[int, dict]:
    """The committed (or at least written) results of one variant, by fold."""
    out = {}
    for path in sorted((RESULTS / table / variant).glob("fold_*.json")):
        try:
            out[int(path.stem.split("_")[1])] = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise MedsegError(f"{path}: damaged result ({exc}); delete it to measure the unit "
                              f"again") from None
    return out


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--", "tf_medseg", "benchmarks",
                              "configs"))}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    from tf_medseg.training import resolve_runtime
    policy, jit = resolve_runtime()
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "precision": policy,
            "jit_compile": jit}


def write_result(path: Path, row: dict, code: dict | None = None) -> dict:
    """Write a unit's ``row`` to ``path`` in one step, stamped with ``code`` (the commit the unit
    started from: :func:`git_state` then; now where None), the machine and the date; returns
    the stamped row."""
    row = {**row, **(code or git_state()), "machine": machine(),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(row, indent=2) + "\n")
    return row


def commit_result(path: Path, row: dict) -> None:
    """Commit ``path`` alone (whatever else is staged or changed stays as it is)."""
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        print(f"warning: {path} is outside the repository: not committed", flush=True)
        return
    message = (f"units: {row['table']} {row['variant']} fold {row['fold']}: Dice "
               f"{row.get('dice', float('nan')):.3f} in {row['minutes']:.1f} min")
    for attempt in range(5):  # another git command may hold the index for a moment
        status = subprocess.run(["git", "status", "--porcelain", "--", str(rel)], cwd=ROOT,
                                capture_output=True, text=True)
        if status.returncode == 0 and not status.stdout.strip():
            print(f"{rel}: committed already", flush=True)
            return
        add = subprocess.run(["git", "add", "--", str(rel)], cwd=ROOT, capture_output=True,
                             text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", str(rel)], cwd=ROOT,
            capture_output=True, text=True).returncode == 0
        if done:
            print(f"committed {rel}", flush=True)
            return
        time.sleep(2 + attempt * 3)
    print(f"warning: could not commit {rel}; commit it by hand", flush=True)
