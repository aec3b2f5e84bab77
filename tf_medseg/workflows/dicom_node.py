"""``tf-medseg serve-dicom``: a DICOM node that contours the series it receives.

::

    python -m tf_medseg serve-dicom --model M --ae-title AE --port P --output DIR
        [--send-to AE@HOST:PORT] [--series-timeout S] [--allow AE ...] [--host H]

A Storage SCP (pynetdicom) accepts MR and CT images (single-frame and enhanced) from the calling
AE titles in ``--allow`` (any where it is not given). Each instance is checked (an image with
its series, instance, position and orientation) and stored under ``DIR/incoming/SERIESUID/``;
anything else is refused with a failure status and a logged reason, and the node keeps
serving. A series is complete when no new instance of it has arrived for ``--series-timeout``
seconds; complete series wait in a bounded queue and are contoured one at a time by the same
predictor and writer as ``predict`` (:mod:`tf_medseg.inference.predict`): ``DIR/RS_SERIESUID.dcm``
(or a SEG), after which the images move to ``DIR/received/SERIESUID/``. With ``--send-to``, each
structure set is also placed in ``DIR/outbox/`` and sent there with C-STORE (proposing the SOP
class the file holds: RT Structure Set, Segmentation or Label Map Segmentation). Success and
Warning statuses deliver it (it leaves the outbox); a failure that a retry will not change
(:func:`store_outcome`) three times moves it to ``DIR/undeliverable/`` beside a
``.reason.txt``; anything else (no association, out of resources, a timeout) is retried with
backoff (1 s doubling to 60 s). Nothing is dropped: a node restarted over the same DIR
contours the series left in ``incoming/`` and sends what is left in ``outbox/``. SIGTERM or
SIGINT stop it cleanly: no new association, the series being contoured is finished, every
file is written under a temporary name and renamed, so nothing is half-written.

One log line per series: its slices and instances, the seconds over which they arrived, from
the last to the start of contouring, to contour it, and to send it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
from pathlib import Path

from tf_medseg.errors import MedsegError
from tf_medseg.files import uid_problem

LOG = logging.getLogger("tf_medseg.dicom_node")
QUEUE_SIZE = 16  # complete series waiting to be contoured
BACKOFF = (1.0, 60.0)  # first retry after 1 s, doubling up to 60 s
REFUSALS = 3  # failures that will not change before a file goes to undeliverable/
FAILURE_CANNOT_UNDERSTAND = 0xC210
FAILURE_NOT_IMAGE = 0xA900  # dataset does not match SOP class
STORAGE = ("MRImageStorage", "EnhancedMRImageStorage", "CTImageStorage",
           "EnhancedCTImageStorage")


def store_outcome(status: int) -> tuple[str, str]:
    """What a C-STORE response status means for the file sent (PS3.4 Annex B.2.3, PS3.7 C):
    ``delivered`` for Success and Warning (0x0001, 0xB000-0xBFFF: stored, perhaps coerced),
    ``refused`` for a failure that a retry will not change (0xA900-0xA9FF: the data set does
    not match its SOP class; 0xC000-0xCFFF: cannot understand; 0x0122 SOP class not
    supported; 0x0124 not authorised), ``retry`` for the rest (0xA700-0xA7FF: out of
    resources, and any other)."""
    code = f"0x{status:04X}"
    if status == 0x0000:
        return "delivered", "Success"
    if status == 0x0001 or 0xB000 <= status <= 0xBFFF:
        return "delivered", f"Warning {code}: stored"
    if 0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF or status in (0x0122,
                                                                               0x0124):
        return "refused", f"Failure {code}"
    if 0xA700 <= status <= 0xA7FF:
        return "retry", f"Failure {code}: out of resources"
    return "retry", f"status {code}"


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where structure sets go: ``AE@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Destination":
        ae, _, address = text.partition("@")
        host, _, port = address.rpartition(":")
        if not ae or not host or not port.isdigit() or not 0 < int(port) < 65536 or len(ae) > 16:
            raise MedsegError(f"--send-to {text}: expected AE@HOST:PORT (an AE title of up to "
                              f"16 characters, a host, a port 1-65535), e.g. TPS@10.0.0.5:104")
        return cls(ae, host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_instance(ds) -> str | None:
    """Why ``ds`` is not an image instance the node can contour, or None."""
    for key in ("SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns"):
        if not str(ds.get(key, "") or ""):
            return f"no {key}"
    if ds.get("Modality") not in ("MR", "CT"):
        return f"modality {ds.get('Modality')!r}, not MR or CT"
    if "PerFrameFunctionalGroupsSequence" not in ds and not (
            "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds):
        return "no ImagePositionPatient / ImageOrientationPatient"
    if "PixelData" not in ds:
        return "no pixel data"
    for key in ("SOPInstanceUID", "SeriesInstanceUID"):  # they name files: nothing but a UID
        problem = uid_problem(ds.get(key))
        if problem:
            return f"{key} {problem}"
    return None


class DicomNode:
    """The node's state: received series, the contouring queue, the outbox."""

    def __init__(self, model, output, *, ae_title: str = "TF_MEDSEG", host: str = "0.0.0.0",
                 port: int = 11112, send_to: Destination | None = None,
                 series_timeout: float = 5.0, allow=(), output_format: str = "rtstruct"):
        from tf_medseg.inference.predictor import Models
        if not 0 < len(ae_title) <= 16:
            raise MedsegError(f"--ae-title {ae_title!r}: an AE title has 1 to 16 characters")
        if series_timeout <= 0:
            raise MedsegError(f"--series-timeout {series_timeout}: must be positive")
        from tf_medseg.files import check_outside
        self.models = Models.read(model)
        self.output = Path(output).expanduser()
        check_outside(self.output, "--output", {f"--model {m}": m for m in self.models.exports})
        self.incoming, self.received = self.output / "incoming", self.output / "received"
        self.outbox = self.output / "outbox"
        self.ae_title, self.host, self.port = ae_title, host, port
        self.send_to, self.series_timeout = send_to, series_timeout
        self.allow = tuple(allow)
        self.output_format = output_format
        self.stop = threading.Event()
        self.jobs: queue.Queue[str] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        # series: (first arrival, last arrival, instances)
        self._arrived: dict[str, tuple[float, float, int]] = {}
        self._queued: set[str] = set()
        self._wake = threading.Event()  # the sender: something new in the outbox
        self.server = None
        self.sent: list[str] = []  # structure sets sent, in order (for the tests)

    # ------------------------------------------------------------------ receiving

    def handle_store(self, event) -> int:
        """C-STORE: check the instance and store it atomically under incoming/SERIES/."""
        from tf_medseg.data.dicom import write_dicom
        calling = str(getattr(event.assoc.requestor, "ae_title", "")).strip()
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # noqa: BLE001  undecodable data from the network
            LOG.warning("refused an instance from %s: it cannot be decoded (%s)", calling,
                        str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
            return FAILURE_CANNOT_UNDERSTAND
        why = check_instance(ds)
        if why:
            LOG.warning("refused instance %s from %s: %s", str(ds.get("SOPInstanceUID", "?"))[:64],
                        calling, why)
            return FAILURE_NOT_IMAGE
        series = str(ds.SeriesInstanceUID)
        write_dicom(ds, self.incoming / series / f"{ds.SOPInstanceUID}.dcm")
        now = time.monotonic()
        with self._lock:
            first, _, count = self._arrived.get(series, (now, now, 0))
            self._arrived[series] = (first, now, count + 1)
        return 0x0000

    def _complete(self) -> None:
        """Queue the series that have been quiet for series_timeout seconds."""
        now = time.monotonic()
        with self._lock:
            ready = [s for s, (_, last, _) in self._arrived.items()
                     if now - last >= self.series_timeout and s not in self._queued]
            for series in ready:
                self._queued.add(series)
        for series in ready:
            try:
                self.jobs.put_nowait(series)
            except queue.Full:  # the images wait on disk; asked again at the next tick
                with self._lock:
                    self._queued.discard(series)

    # ------------------------------------------------------------------ contouring

    def _contour(self, predictor, series: str) -> None:
        from tf_medseg.inference.inputs import find_dicom
        from tf_medseg.inference.writers.registry import writer_for
        folder = self.incoming / series
        with self._lock:
            first, last, count = self._arrived.pop(series, (0.0, 0.0, 0))
            self._queued.discard(series)
        start, waited = time.perf_counter(), time.monotonic() - last
        try:
            cases = [c for c in find_dicom(folder, self.models.contract) if c.name == series]
            if not cases:
                raise MedsegError("its images are not one image stack")
            case = cases[0]
            image, spacing = case.read(self.models.contract)
            probs = predictor.probabilities(image, spacing, name=f"series {series}")
            masks = predictor.masks(probs)
            writer = writer_for("dicom", self.output, self.models.contract,
                                output_format=self.output_format)
            writer.write(case, image, probs, masks)
            (name,) = writer.close()["files"]
        except Exception as exc:  # noqa: BLE001  one series must not stop the node
            LOG.error("series %s (%d instance(s)): not contoured: %s", series, count,
                      str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            self._move(folder, self.output / "failed" / series)
            return
        seconds = time.perf_counter() - start
        self._move(folder, self.received / series)
        if self.send_to is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.output / name, self.outbox / f".partial-{name}")
            (self.outbox / f".partial-{name}").rename(self.outbox / name)
            self._wake.set()
        LOG.info("series %s: %d slices (%d instance(s) received over %.1f s, contouring began "
                 "%.1f s after the last) contoured in %.1f s -> %s", series,
                 len(case.series.frames), count, last - first, waited, seconds,
                 self.output / name)

    @staticmethod
    def _move(folder: Path, target: Path) -> None:
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)

    def _worker(self) -> None:
        from tf_medseg.inference.predictor import Predictor
        predictor = Predictor.load(self.models)
        while not self.stop.is_set():  # what is queued at a stop waits in incoming/
            try:
                series = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self._contour(predictor, series)

    # ------------------------------------------------------------------ sending

    def _send(self, path: Path) -> tuple[str, str]:
        """C-STORE ``path`` to the destination, proposing the SOP class the file holds:
        (``delivered`` | ``refused`` | ``retry``, what the destination answered)."""
        import pydicom
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE
        sop_class = str(pydicom.dcmread(path, stop_before_pixels=True,
                                        specific_tags=["SOPClassUID"]).SOPClassUID)
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        assoc = ae.associate(self.send_to.host, self.send_to.port,
                             ae_title=self.send_to.ae_title)
        refused = f"it accepts no presentation context for SOP class {sop_class}"
        if not assoc.is_established:
            if assoc.rejected_contexts and not assoc.accepted_contexts:
                return "refused", refused  # it answered, refusing the class (then aborted)
            return "retry", "no association (unreachable, rejected or aborted)"
        try:
            if not any(c.abstract_syntax == sop_class for c in assoc.accepted_contexts):
                return "refused", refused
            status = assoc.send_c_store(path)
            if not status or "Status" not in status:
                return "retry", "no C-STORE response (timeout or abort)"
            return store_outcome(int(status.Status))
        finally:
            if assoc.is_established:
                assoc.release()

    def send_due(self, tries: dict) -> None:
        """One pass over the outbox: send each file whose retry is due. ``tries`` (kept by the
        caller) maps a file to (next attempt, delay, failures that will not change)."""
        pending = sorted(self.outbox.glob("*.dcm")) if self.outbox.is_dir() else []
        for path in pending:
            due, delay, refusals = tries.get(path.name, (0.0, BACKOFF[0], 0))
            if time.monotonic() < due or self.stop.is_set():
                continue
            start = time.perf_counter()
            try:
                outcome, answer = self._send(path)
            except Exception as exc:  # noqa: BLE001  network and file errors of many kinds
                outcome, answer = "retry", str(exc).splitlines()[0][:200] if str(exc) else (
                    type(exc).__name__)
            if outcome == "delivered":
                path.unlink()
                tries.pop(path.name, None)
                self.sent.append(path.name)
                LOG.info("%s sent to %s in %.1f s (%s)", path.name, self.send_to,
                         time.perf_counter() - start, answer)
                continue
            refusals += outcome == "refused"
            if refusals >= REFUSALS:
                self._undeliverable(path, answer)
                tries.pop(path.name, None)
                continue
            LOG.warning("%s: %s did not take it (%s); retrying in %.0f s (kept in %s)",
                        path.name, self.send_to, answer, delay, self.outbox)
            tries[path.name] = (time.monotonic() + delay, min(delay * 2, BACKOFF[1]), refusals)

    def _undeliverable(self, path: Path, answer: str) -> None:
        """A file the destination refused REFUSALS times with a failure that will not change:
        moved to ``undeliverable/`` beside the reason, never retried."""
        from tf_medseg.files import atomic_write
        folder = self.output / "undeliverable"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{path.name}.reason.txt",
                     f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.send_to} refused "
                     f"{path.name} {REFUSALS} times: {answer}\n")
        path.rename(folder / path.name)
        LOG.error("%s: %s refused it %d times (%s): moved to %s, not retried", path.name,
                  self.send_to, REFUSALS, answer, folder)

    def _sender(self) -> None:
        tries: dict[str, tuple[float, float, int]] = {}
        while not self.stop.is_set():
            self.send_due(tries)
            self._wake.wait(0.5)
            self._wake.clear()

    # ------------------------------------------------------------------ running

    def resume(self) -> None:
        """Series an earlier run left in incoming/ count as complete (the outbox is sent as
        it is found)."""
        done = time.monotonic() - self.series_timeout
        for folder in sorted(self.incoming.iterdir()) if self.incoming.is_dir() else ():
            if folder.is_dir() and uid_problem(folder.name) is None:
                self._arrived[folder.name] = (done, done, sum(1 for _ in folder.iterdir()))

    def start(self) -> None:
        """Start listening, contouring and sending (returns at once)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt, sop_class
        self.output.mkdir(parents=True, exist_ok=True)
        self.resume()
        ae = AE(ae_title=self.ae_title)
        for name in STORAGE:
            ae.add_supported_context(getattr(sop_class, name), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(sop_class.Verification)
        if self.allow:
            ae.require_calling_aet = list(self.allow)
        self.server = ae.start_server((self.host, self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        self._threads = [threading.Thread(target=self._worker, name="contour", daemon=True)]
        if self.send_to is not None:
            self._threads.append(threading.Thread(target=self._sender, name="send",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        LOG.info("listening as %s on %s:%d%s; series complete after %.1f s without a new "
                 "instance; contours in %s%s", self.ae_title, self.host, self.port,
                 f" (calling AE titles {', '.join(self.allow)})" if self.allow else "",
                 self.series_timeout, self.output,
                 f"; sent to {self.send_to}" if self.send_to else "")

    def run(self) -> None:
        """Serve until :attr:`stop` is set (SIGTERM / SIGINT in the command)."""
        self.start()
        try:
            while not self.stop.wait(0.2):
                self._complete()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.stop.set()
        if self.server is not None:
            self.server.shutdown()
        for thread in getattr(self, "_threads", ()):
            thread.join(timeout=600)
        LOG.info("stopped")
