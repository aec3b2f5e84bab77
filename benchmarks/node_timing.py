"""The DICOM node timed as a department would run it: a CT series of 512 x 512 x 150 sent to
``serve-dicom`` with dcmtk's ``storescu``, the structure set sent on to dcmtk's ``storescp``
(the planning system), and the node's peak memory.

::

    python -m benchmarks.node_timing --model EXPORT [--slices 150] [--size 512]
        [--series-timeout 5] [--output benchmarks/results/node/node_timing.json]

EXPORT is a SavedModel folder of a CT model (its channel must be CT: the node refuses a CT
series for an MR model); the figures in docs/inference.md used the CHAOS recipe
(``configs/chaos_t2.yaml``) trained for 6 minutes on the OpenKBP head-and-neck CTs, so the
network has the CHAOS model's size and contours organs rather than noise. The series is an
OpenKBP CT resampled to a scanner's grid (:func:`write_ct`), written to the system's temporary
folder with everything else the run makes.

Prints, and writes to ``--output``: seconds to send the series, seconds from the last
instance stored to the structure set stored by storescp (which includes ``--series-timeout``:
the node waits that long for more instances), the node's own contouring seconds from its log,
and its peak resident memory (VmHWM). Needs dcmtk (``apt-get install dcmtk``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def dcmtk(tool: str) -> str:
    """The dcmtk program ``tool`` (pynetdicom installs apps of the same names)."""
    for candidate in (f"/usr/bin/{tool}", shutil.which(tool)):
        if candidate and Path(candidate).is_file():
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return candidate
    sys.exit(f"error: dcmtk's {tool} is not installed (apt-get install dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_ct(folder: Path, slices: int, size: int, case: Path | None = None) -> str:
    """A CT series of ``slices`` x ``size`` x ``size``: an OpenKBP planning CT (``case``, a
    NIfTI of 128^3 voxels of about 3.9 x 3.9 x 2.5 mm, axes L P I) resampled to the grid a
    scanner writes (trilinear), its values kept as OpenKBP stores them (HU + 1000, rescale
    intercept 0: what a model trained on OpenKBP reads); without ``case`` a water-filled body
    with a denser organ and noise. Returns the SeriesInstanceUID."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    from scipy import ndimage
    folder.mkdir(parents=True)
    if case is not None:
        import nibabel as nib
        image = nib.load(case)
        volume = np.asarray(image.dataobj, np.float32)  # (i: to L, j: to P, k: to I)
        fov = np.abs(np.diag(image.affine)[:3]) * volume.shape
        volume = ndimage.zoom(volume, (size / volume.shape[0], size / volume.shape[1],
                                       slices / volume.shape[2]), order=1)
        pixel, gap = float(fov[0] / size), float(fov[2] / slices)
        frames = [volume[:, :, k].T for k in range(slices)]  # rows along j, columns along i
        intercept = 0
    else:
        rng = np.random.default_rng(0)
        rows, cols = np.mgrid[:size, :size] / size - 0.5
        body = (rows / 0.4) ** 2 + (cols / 0.45) ** 2 < 1
        frames = []
        for k in range(slices):
            z = k / max(slices - 1, 1) - 0.5
            organ = ((rows - 0.1) / 0.12) ** 2 + ((cols + 0.1) / 0.15) ** 2 + (z / 0.3) ** 2 < 1
            hu = np.where(body, 40.0, -1000.0) + np.where(organ, 30.0, 0.0)
            frames.append(hu + 1024 + rng.normal(0, 15, hu.shape) * body)
        pixel, gap, intercept = 0.98, 2.5, -1024
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k, values in enumerate(frames):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "BENCH01", "Bench^Node"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, -gap * k]  # slices go inferior
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [pixel, pixel], gap
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = intercept, 1
        ds.PixelData = np.clip(np.rint(values), -32768, 32767).astype(np.int16).tobytes()
        ds.save_as(folder / f"CT{k:04d}.dcm", enforce_file_format=True)
    return series


def peak_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.node_timing",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a SavedModel folder of a CT model")
    p.add_argument("--slices", type=int, default=150)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--series-timeout", type=float, default=5.0)
    p.add_argument("--case", type=Path, default=ROOT.parent / "shared" / "data" / "openkbp_hn"
                   / "Dataset010_OpenKBPHN" / "imagesTr" / "openkbp_002_0000.nii.gz",
                   help="an OpenKBP CT (NIfTI) the series is made from (default: case 002 of "
                        "../shared/data/openkbp_hn; 'none': a synthetic body)")
    p.add_argument("--output", type=Path,
                   default=ROOT / "benchmarks" / "results" / "node" / "node_timing.json")
    args = p.parse_args(argv)
    storescu, storescp = dcmtk("storescu"), dcmtk("storescp")
    work = Path(tempfile.mkdtemp(prefix="tf_medseg_node_"))
    node = tps = None
    try:
        print(f"writing a {args.size} x {args.size} x {args.slices} CT series ...", flush=True)
        case = None if str(args.case) == "none" else args.case
        series = write_ct(work / "scan", args.slices, args.size, case)
        tps_port, node_port = free_port(), free_port()
        (work / "tps").mkdir()
        tps = subprocess.Popen([storescp, "-aet", "TPS", "-od", str(work / "tps"),
                                str(tps_port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        log = open(work / "node.log", "w")
        node = subprocess.Popen(
            [sys.executable, "-m", "tf_medseg", "serve-dicom", "--model", args.model,
             "--ae-title", "NODE", "--host", "127.0.0.1", "--port", str(node_port),
             "--output", str(work / "node"), "--send-to", f"TPS@127.0.0.1:{tps_port}",
             "--series-timeout", str(args.series_timeout)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 180
        while "listening" not in (work / "node.log").read_text():
            if node.poll() is not None or time.monotonic() > end:
                sys.exit("error: the node did not start:\n" + (work / "node.log").read_text())
            time.sleep(0.2)
        print("sending with storescu ...", flush=True)
        start = time.monotonic()
        sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", "NODE", "+sd", "127.0.0.1",
                               str(node_port), str(work / "scan")], capture_output=True,
                              text=True)
        last, last_wall = time.monotonic(), time.time()
        if sent.returncode != 0:
            sys.exit(f"error: storescu failed ({sent.returncode}): {sent.stderr[-2000:]}")
        end = last + 600
        while not list((work / "tps").iterdir()):
            if node.poll() is not None or time.monotonic() > end:
                sys.exit("error: no structure set arrived:\n" +
                         (work / "node.log").read_text()[-3000:])
            time.sleep(0.05)
        (received,) = list((work / "tps").iterdir())
        contours = _contours(received)  # read once storescp has written all of it
        stored = received.stat().st_mtime  # when storescp wrote its last byte
        memory = peak_mb(node.pid)
        text = (work / "node.log").read_text()
        contoured = re.search(r"contoured in ([\d.]+) s", text)
        row = {
            "series": f"CT {args.size} x {args.size} x {args.slices}",
            "made_from": case.name if case else "synthetic body", "contours": contours,
            "send_seconds": round(last - start, 2),
            "last_instance_to_stored_seconds": round(stored - last_wall, 2),
            "series_timeout": args.series_timeout,
            "contour_seconds": float(contoured.group(1)) if contoured else None,
            "node_peak_rss_mb": round(memory, 1) if memory else None,
            "stored_by_storescp": received.name.split(".")[0],
            "model": str(args.model), "series_uid": series,
            "cpu": _cpu(), "cores": __import__("os").cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    finally:
        for proc in (node, tps):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(row, indent=2) + "\n")
    return 0


def _contours(path: Path) -> dict:
    """Contours per ROI of the structure set storescp stored (read once it is complete)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    end = time.monotonic() + 60
    while True:
        try:
            ds = pydicom.dcmread(path)
            break
        except (InvalidDicomError, OSError, EOFError, ValueError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    return {names[int(c.ReferencedROINumber)]: len(c.get("ContourSequence", []))
            for c in ds.ROIContourSequence}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
