"""What ``predict`` may write over: nothing but its own earlier output, and that only with
``--overwrite``.

A folder of label maps or overlays that predict writes gets a ``prediction.json`` listing the
entries it wrote (and the models and input); a later predict may replace that folder's
entries when asked to, and refuses any other non-empty folder, so ``--output DS/labelsTr``
never replaces ground truth. The manifest's entries are plain names in the folder (anything
else makes it a stranger's folder), so a replacement removes nothing above it. A submission
CSV is recognised by its header (``id,class,predicted``); any other existing file, a symlink,
a device or a FIFO is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from tf_medseg.errors import MedsegError
from tf_medseg.files import PARTIAL, atomic_write, name_problem, plain_name

MARK = "prediction.json"
SUBMISSION_HEADER = "id,class,predicted"


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(PARTIAL))


def earlier_entries(folder: Path) -> list[str] | None:
    """The entries an earlier predict listed in ``folder/prediction.json``, or None if the
    folder holds no such (readable, tf_medseg-written) manifest."""
    try:
        data = json.loads((folder / MARK).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "tf_medseg predict":
        return None
    entries = data.get("entries")
    # each a plain name in the folder: a manifest naming "..", "/" or "a/b" is not predict's
    if not isinstance(entries, list) or any(name_problem(e) for e in entries):
        return None
    return entries


def check_replaceable(path: Path, option: str, target: str, overwrite: bool) -> None:
    """Before any work: ``path`` (``--output`` or ``--overlays``) is new, an empty folder, or
    predict's own earlier output and ``overwrite`` is given (one-line errors otherwise)."""
    if os.path.islink(path) and target == "file":
        raise MedsegError(f"{option} {path}: is a symlink; give the path of a new file (the "
                          f"file behind a symlink is never written)")
    if not os.path.lexists(path):
        return
    if target == "file":
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise MedsegError(f"{option} {path}: exists and is not a regular file (a device, "
                              f"FIFO or socket); give the path of a new file")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
        except OSError as exc:
            raise MedsegError(f"{option} {path}: cannot read it ({exc.strerror})") from None
        if first != SUBMISSION_HEADER:
            raise MedsegError(f"{option} {path}: exists and is not a submission (its first "
                              f"line is not {SUBMISSION_HEADER}); give a new file name")
        if not overwrite:
            raise MedsegError(f"{option} {path}: an earlier submission exists; pass "
                              f"--overwrite to replace it, or give a new file name")
        return
    entries = _entries(path)
    if not entries:
        return
    earlier = earlier_entries(path)
    if earlier is None:
        raise MedsegError(f"{option} {path}: holds files predict did not write "
                          f"({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); "
                          f"give a new or empty folder")
    foreign = [e for e in entries if e != MARK and e not in earlier]
    if foreign:
        raise MedsegError(f"{option} {path}: holds files the earlier prediction did not "
                          f"write ({', '.join(foreign[:3])}); give a new or empty folder")
    if not overwrite:
        raise MedsegError(f"{option} {path}: holds an earlier prediction ({MARK}); pass "
                          f"--overwrite to replace it, or give a new folder")


def publish(folder: Path, written: list[str], info: dict) -> None:
    """After a prediction into ``folder``: remove the entries an earlier prediction wrote that
    this one did not (so the folder holds one prediction), then write ``prediction.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = sorted({name.split("/")[0] for name in written})
    for name in entries:
        plain_name(name, f"output {folder}")
    for stale in sorted(set(earlier_entries(folder) or []) - set(entries) - {MARK}):
        target = folder / stale  # a plain child (earlier_entries): nothing above the folder
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
    atomic_write(folder / MARK, json.dumps({"written_by": "tf_medseg predict", **info,
                                             "entries": entries}, indent=1) + "\n")
