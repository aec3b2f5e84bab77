"""A synthetic abdominal MRI data set in exactly the Kaggle UW-Madison GI Tract layout.

``python -m tf_medseg phantom --out DIR`` writes ``DIR/train.csv`` (id,class,segmentation with
RLE masks) and ``DIR/train/caseN/caseN_dayM/scans/slice_XXXX_W_H_1.50_1.50.png`` (16-bit), so
that every part of tf_medseg runs on a machine with nothing downloaded.

What it models, per case (a patient) and day (a scan of that patient):

* anatomy in millimetres, coherent in 3D: slices run from the lower chest (lungs, heart, liver)
  through the abdomen to the pelvis; about half of them show no labelled organ;
* stomach: a deformed ellipsoid high on the patient's left (image right);
* large bowel: a thick tube framing the abdomen (caecum, ascending, transverse with a sag,
  descending, sigmoid, rectum);
* small bowel: a thinner, tortuous random-walk tube filling the middle of the lower abdomen;
* organs shift and deform a little between days, and may overlap;
* body outline, subcutaneous and visceral fat, abdominal wall and back muscles, spine, liver,
  spleen, kidneys, vessels and lungs, with intensities that overlap the organs' (bowel contents
  range from dark gas to bright fluid; the organs' only local cue is a thin dark wall);
* partial-volume blur, a smooth multiplicative bias field, Rician noise and a per-scan intensity
  scale with maxima from about 500 to 13,000.

Everything is deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent import futures
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from tf_medseg.data import rle
from tf_medseg.data import workers as processes
from tf_medseg.data.anatomy import PIXEL_MM, Anatomy, render_scan
from tf_medseg.data.sources.kaggle import CLASSES

# Bump when the generated images or masks change: prepared records are keyed to it.
GENERATOR_VERSION = 1
SIZES = ((266, 266), (360, 310))  # (width, height), as in the Kaggle file names


# ------------------------------------------------------------------------------------ writing

@dataclasses.dataclass(frozen=True)
class ScanPlan:
    """What one phantom scan will be: its ids, size, number of slices and pixel spacing."""

    case: int
    day: int
    width: int
    height: int
    slices: int
    spacing: float = PIXEL_MM


def _write_scan(tmp: Path, seed: int, scan: ScanPlan) -> list[str]:
    """Render one scan, write its PNGs under ``tmp``; return its train.csv rows."""
    case, day = scan.case, scan.day
    anatomy = Anatomy.sample(np.random.default_rng([seed, case]))
    day_rng = np.random.default_rng([seed, case, day])
    image, mask = render_scan(anatomy.for_day(day_rng), scan.slices, scan.width, scan.height,
                              day_rng, scan.spacing)
    scan_dir = tmp / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
    scan_dir.mkdir(parents=True)
    rows = []
    for i in range(scan.slices):
        name = (f"slice_{i + 1:04d}_{scan.width}_{scan.height}_"
                f"{scan.spacing:.2f}_{scan.spacing:.2f}.png")
        cv2.imwrite(str(scan_dir / name), image[i])
        sid = f"case{case}_day{day}_slice_{i + 1:04d}"
        rows += [f"{sid},{cls},{rle.encode(mask[i, ..., c])}" for c, cls in enumerate(CLASSES)]
    return rows


def _days(seed: int, case: int, days: int) -> list[int]:
    later = np.random.default_rng([seed, case, 10**6]).choice(
        np.arange(1, 30), days - 1, replace=False)
    return [0, *sorted(later.tolist())]


def plan(cases: int, days: int, slices: int, seed: int, sizes: tuple = SIZES) -> list[ScanPlan]:
    """Every scan of a small phantom: cases alternate sizes, day 0 first."""
    scans = []
    for case in range(1, cases + 1):
        width, height = sizes[(case - 1) % len(sizes)]
        scans += [ScanPlan(case, day, width, height, slices) for day in _days(seed, case, days)]
    return scans


# The real training set: 85 cases, 274 case-days, 38,496 slices, in these kinds of scan
# (checked on the real file names, ../shared/data/uwmgi_sample/slices.csv).
KAGGLE_SCANS = (  # (case-days, width, height, slices, spacing mm)
    (180, 266, 266, 144, 1.50),
    (78, 360, 310, 144, 1.50),
    (15, 276, 276, 80, 1.63),
    (1, 234, 234, 144, 1.50),
)
KAGGLE_CASES = 85


def kaggle_scale_plan(seed: int) -> list[ScanPlan]:
    """A phantom the size and shape of the real training set (38,496 slices in all four
    image sizes), for measuring ingestion at full scale."""
    kinds = [kind[1:] for kind in KAGGLE_SCANS for _ in range(kind[0])]
    total = len(kinds)
    kinds = [kinds[i] for i in np.random.default_rng([seed, 7]).permutation(total)]
    # 274 case-days over 85 cases: 19 cases with 4 days, 66 with 3.
    per_case = [total // KAGGLE_CASES + (c < total % KAGGLE_CASES) for c in range(KAGGLE_CASES)]
    scans, k = [], 0
    for case, days in enumerate(per_case, start=1):
        for day in _days(seed, case, days):
            scans.append(ScanPlan(case, day, *kinds[k]))
            k += 1
    return scans


def check_out(out: str | os.PathLike) -> Path:
    """The destination of :func:`write_phantom` as a path: new, or an empty folder.

    Raises:
        FileExistsError: it exists and is a file or a folder with something in it.
    """
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose another --out")
    return out


def write_phantom(out: str | os.PathLike, *, cases: int = 8, days: int = 2, slices: int = 80,
                  seed: int = 0, sizes: tuple = SIZES, scans: Sequence[ScanPlan] | None = None,
                  workers: int | None = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """Write the phantom in the Kaggle layout under ``out`` (atomically).

    Cases alternate between the ``sizes`` (width, height); case numbers start at 1 and day
    numbers increase from 0, as in the real data. The folder is written under a temporary name
    and renamed when complete, so an interrupted run never leaves a folder that looks whole.
    Each scan depends only on (seed, case, day), so scans render in parallel and the output is
    the same for any number of workers.

    Args:
        out: Destination folder; must not exist yet, or be empty.
        cases, days, slices: Patients, scan days per patient, slices per scan.
        seed: Everything is a deterministic function of it.
        sizes: (width, height) pairs used in turn.
        scans: An explicit plan (e.g. :func:`kaggle_scale_plan`) instead of cases, days,
            slices and sizes.
        workers: Processes rendering scans (default: one per CPU core up to 4, or
            ``TF_MEDSEG_WORKERS``; 0 renders in this process).
        progress: Called as ``progress(done, total)`` after every scan.

    Returns:
        The folder.
    """
    from tf_medseg.files import atomic_dir
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scans = list(scans) if scans is not None else plan(cases, days, slices, seed, sizes)
    workers = processes.count(len(scans), 4, workers)
    with atomic_dir(out) as tmp:  # a folder that exists is complete
        results = {}
        with processes.executor(workers) as pool:
            jobs = {pool.submit(_write_scan, tmp, seed, scan): scan for scan in scans}
            for job in futures.as_completed(jobs):
                results[jobs[job]] = job.result()
                if progress:
                    progress(len(results), len(scans))
        rows = ["id,class,segmentation"] + [r for scan in scans for r in results[scan]]
        (tmp / "train.csv").write_text("\n".join(rows) + "\n")
    return out
