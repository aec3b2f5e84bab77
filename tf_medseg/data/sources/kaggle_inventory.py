"""Take stock of a Kaggle-layout folder before anything is written: every slice's header,
every RLE string, slices matched with the rows of ``train.csv`` (:func:`take_inventory`), and
what was left out, and why (never silently). :mod:`tf_medseg.data.sources.kaggle` reads the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

from tf_medseg.data import rle
from tf_medseg.data.sources.kaggle import (
    Scan,
    ScanFiles,
    check_slice_header,
    index_folder,
    read_labels,
    read_scan,
)
from tf_medseg.errors import DataError

UNMATCHED = ("error", "drop")


@dataclasses.dataclass(frozen=True)
class Inventory:
    """A checked Kaggle-layout folder: the scans to read, their labels, and what was left out.

    Attributes:
        dropped: ``{case-day or slice id: why}`` for everything left out by ``drop_case_days``
            or by the ``unmatched="drop"`` rule; reported, never silent.
    """

    scans: tuple[ScanFiles, ...]
    labels: dict[str, dict[str, str]]
    dropped: dict[str, str]

    @property
    def num_slices(self) -> int:
        return sum(len(s.slices) for s in self.scans)

    def organ_slices(self, scan: ScanFiles) -> int:
        """Slices of ``scan`` with at least one non-empty mask."""
        return sum(any(self.labels[scan.slice_id(f)].values()) for f in scan.slices)


def check_headers(scans: Sequence[ScanFiles]) -> None:
    """Every slice is an 8- or 16-bit PNG of the size its file name says.

    Reads 26 bytes a file, so a 38,496-slice folder is checked in seconds, before any record
    is written.

    Raises:
        DataError: naming the first bad file.
    """
    for scan in scans:
        for s in scan.slices:
            check_slice_header(s)


def check_masks(scans: Sequence[ScanFiles], labels: dict[str, dict[str, str]],
                csv_path: str | os.PathLike) -> None:
    """Every RLE string of every slice is valid for that slice's size (see :func:`rle.parse`).

    Raises:
        DataError: naming train.csv, the id and the class.
    """
    for scan in scans:
        for s in scan.slices:
            sid = scan.slice_id(s)
            for cls, mask in labels[sid].items():
                if mask:
                    try:
                        rle.parse(mask, s.height, s.width)
                    except DataError as exc:
                        raise DataError(f"{csv_path}: {sid} {cls}: {exc}") from None


def match(scans: Sequence[ScanFiles], labels: dict[str, dict[str, str]],
          csv_path: str | os.PathLike, drop_case_days: Sequence[str] = (),
          unmatched: str = "error") -> tuple[list[ScanFiles], dict[str, str]]:
    """Pair slice files with train.csv ids.

    Rule for what does not pair up (``unmatched``):

    * ``error`` (default): a train.csv id without an image, or an image without rows, stops
      with a message naming it;
    * ``drop``: an id without an image is left out; an image without rows, or a hole in a
      scan's slice numbers, leaves out its whole case-day (a scan with a hole would give its
      neighbours wrong 2.5D context).
      Both are reported in the returned ``dropped``.

    Ids of the case-days in ``drop_case_days`` are not expected to have images.

    Returns:
        (scans kept, {id or case-day: why it was dropped}).
    """
    if unmatched not in UNMATCHED:
        raise ValueError(f"unmatched must be one of {UNMATCHED}, got {unmatched!r}")
    dropped: dict[str, str] = {}
    kept = []
    for scan in scans:
        missing = [s for s in scan.slices if scan.slice_id(s) not in labels]
        if not missing:
            kept.append(scan)
        elif unmatched == "error":
            more = f" (and {len(missing) - 1} more slices)" if len(missing) > 1 else ""
            raise DataError(f"{missing[0].path}: no rows for {scan.slice_id(missing[0])} in "
                            f"{csv_path}{more}; add its rows, remove the image, or set "
                            f"data.unmatched: drop")
        else:
            dropped[scan.case_day] = (f"{len(missing)} of its {len(scan.slices)} slices have "
                                      f"no rows in train.csv")
    have = {scan.slice_id(s) for scan in scans for s in scan.slices}
    skip = tuple(f"{cd}_slice_" for cd in drop_case_days)
    orphans = sorted(i for i in labels if i not in have and not i.startswith(skip))
    if orphans and unmatched == "error":
        more = f" (and {len(orphans) - 1} more ids)" if len(orphans) > 1 else ""
        raise DataError(f"{csv_path}: id {orphans[0]}{more} has no image under train/; restore "
                        f"the image, remove its rows, or set data.unmatched: drop")
    dropped.update((i, "no image under train/") for i in orphans)
    # A hole in a scan's slice numbers (an image gone with its rows, or without them): 2.5D
    # context and the 3-D metric would take the slices around it for neighbours.
    for scan in list(kept):
        gap = next(((a, b) for a, b in zip(scan.slices, scan.slices[1:])
                    if b.slice_number != a.slice_number + 1), None)
        if gap is None:
            continue
        a, b = gap
        if unmatched == "error":
            raise DataError(f"{a.path.parent}: slice {a.slice_number + 1} of {scan.case_day} "
                            f"is missing (between {a.path.name} and {b.path.name}); restore "
                            f"it, leave the case-day out (data.drop_case_days), or set "
                            f"data.unmatched: drop")
        kept.remove(scan)
        dropped[scan.case_day] = (f"slice {a.slice_number + 1} is missing (its neighbours "
                                  f"would be taken as adjacent)")
    dropped.update((cd, "listed in data.drop_case_days") for cd in drop_case_days
                   if any(i.startswith(f"{cd}_slice_") for i in labels))
    return kept, dropped


def take_inventory(root: str | os.PathLike, drop_case_days: Sequence[str] = (),
                   unmatched: str = "error") -> Inventory:
    """Index and check a whole Kaggle-layout folder before anything is read or written.

    Checks, in order: the folder and train.csv exist; every file name parses; train.csv's
    columns, ids, classes and no duplicate rows; images and ids pair up (``unmatched`` rule,
    see :func:`match`); every PNG's header (size as named, 8/16-bit grayscale); every RLE
    string against its image size.

    Raises:
        DataError: one line naming the file, row or id, and how to fix it.
    """
    root = Path(root).expanduser()
    scans = index_folder(root, drop_case_days)
    csv_path = root / "train.csv"
    labels = read_labels(csv_path)
    scans, dropped = match(scans, labels, csv_path, drop_case_days, unmatched)
    if not scans:
        raise DataError(f"{root}: no case-day left to read ({len(dropped)} dropped, e.g. "
                        f"{next(iter(dropped.items()))})")
    check_headers(scans)
    check_masks(scans, labels, csv_path)
    return Inventory(tuple(scans), labels, dropped)


def iter_scans(root: str | os.PathLike, drop_case_days: Sequence[str] = (),
               unmatched: str = "error") -> Iterator[Scan]:
    """Index, check and read every scan of a Kaggle-layout folder."""
    inventory = take_inventory(root, drop_case_days, unmatched)
    for scan in inventory.scans:
        yield read_scan(scan, inventory.labels)


def fingerprint(root: str | os.PathLike, drop_case_days: Sequence[str] = (),
                unmatched: str = "error") -> str:
    """A digest of a folder's train.csv and slice files (names, sizes, modification times).

    Prepared records carry it, so that records built from one folder, or from an earlier state
    of it, are never reused for another.
    """
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode())
    csv_path = root / "train.csv"
    if not csv_path.is_file():
        raise DataError(f"{csv_path} is missing; the Kaggle folder must hold train.csv")
    digest.update(csv_path.read_bytes())
    digest.update(repr((sorted(drop_case_days), unmatched)).encode())
    for scan in index_folder(root, drop_case_days):
        for s in scan.slices:
            st = s.path.stat()
            digest.update(f"{s.path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
