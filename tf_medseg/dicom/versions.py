"""The DICOM node's series as units of work (:mod:`tf_medseg.dicom.node`): where their
instances are kept, and which version of a series a contouring answers.

Instances arrive in ``DIR/incoming/SERIES/SOP.dcm``. When the series is complete (quiet for
``--series-timeout``) :meth:`SeriesStore.gather` moves them into ``DIR/received/SERIES/``,
which keeps every instance the node was ever sent for the series: nothing there is deleted,
an instance sent again with other content keeps the earlier file beside it
(``SOP.dcm.earlier-N``), an identical one is the same instance. Each gathering that brings a
new or changed instance opens a version of the series (1, 2, ...), contoured from all its
current instances (hard links in ``DIR/work/``, removed after) and answered with a new
structure set: version 1 ``RS_SERIES.dcm``, later ``RS_SERIES.vN.dcm``, whose
SeriesDescription says which it revises. A series sent again unchanged opens no version. The
versions are recorded in ``DIR/versions/SERIES.json``.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

from tf_medseg.files import atomic_write, plain_name


class SeriesStore:
    """``incoming/``, ``received/``, ``work/`` and ``versions/`` of a node's folder."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.incoming, self.received = self.output / "incoming", self.output / "received"
        self.work, self.versions = self.output / "work", self.output / "versions"

    def version(self, series: str) -> int:
        """The versions of ``series`` contoured (or tried) so far."""
        path = self.versions / f"{plain_name(series, 'series')}.json"
        try:
            return int(json.loads(path.read_text())["versions"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def gather(self, series: str) -> tuple[int, int]:
        """Move ``incoming/series/`` into ``received/series/``: (instances new or changed,
        instances the series now has)."""
        source, kept = self.incoming / series, self.received / series
        kept.mkdir(parents=True, exist_ok=True)
        changed = 0
        for path in sorted(source.glob("*.dcm")) if source.is_dir() else []:
            target = kept / path.name
            if target.exists():
                if filecmp.cmp(path, target, shallow=False):
                    path.unlink()  # the same instance again: nothing is lost
                    continue
                n = 1
                while (kept / f"{path.name}.earlier-{n}").exists():
                    n += 1
                target.rename(kept / f"{path.name}.earlier-{n}")
            path.rename(target)
            changed += 1
        try:
            source.rmdir()  # only if empty: an instance that arrived meanwhile stays queued
        except OSError:
            pass
        return changed, len(list(kept.glob("*.dcm")))

    def open_version(self, series: str) -> tuple[int, Path]:
        """The next version of ``series`` and a work folder of its current instances (hard
        links, or copies across file systems)."""
        number = self.version(series) + 1
        self.versions.mkdir(parents=True, exist_ok=True)
        atomic_write(self.versions / f"{series}.json",
                     json.dumps({"series": series, "versions": number}) + "\n")
        folder = self.work / series
        if folder.exists():
            shutil.rmtree(folder)  # links of an interrupted version: the images stay
        folder.mkdir(parents=True)
        for path in sorted((self.received / series).glob("*.dcm")):
            try:
                os.link(path, folder / path.name)
            except OSError:
                shutil.copy2(path, folder / path.name)
        return number, folder

    def close_version(self, series: str) -> None:
        shutil.rmtree(self.work / series, ignore_errors=True)

    @staticmethod
    def versioned(name: str, number: int) -> str:
        """``RS_SERIES.dcm`` for version 1, ``RS_SERIES.vN.dcm`` after."""
        return name if number == 1 else f"{name[:-4]}.v{number}.dcm"


def publish_version(path: Path, output: Path, series: str, number: int, total: int) -> str:
    """Move the answer (``path``) of version ``number`` of ``series`` to its name in
    ``output``; a later version's SeriesDescription says which it revises, its
    StructureSetDescription names the file."""
    import pydicom

    from tf_medseg.dicom.reader import write_dicom
    name = SeriesStore.versioned(path.name, number)
    if number == 1:
        os.replace(path, output / name)
        return name
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = f"tf_medseg v{number}: revises v{number - 1} (unreviewed)"
    if "StructureSetDescription" in ds:
        ds.StructureSetDescription = (
            f"Version {number} of series {series} ({total} instances): revises "
            f"{SeriesStore.versioned(path.name, number - 1)}. {ds.StructureSetDescription}"
        )[:1024]
    write_dicom(ds, output / name)
    return name
