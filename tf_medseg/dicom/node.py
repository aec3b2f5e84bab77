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
predictor and writer as ``predict`` (:mod:`tf_medseg.inference.predict`), one version at a
time (:mod:`tf_medseg.dicom.versions`: the images kept in ``DIR/received/SERIESUID/``,
never deleted; instances that arrive later open a version contoured with all of them):
``DIR/RS_SERIESUID.dcm`` (or a SEG), ``RS_SERIESUID.vN.dcm`` for a later version. With ``--send-
to``, each structure set is also placed in ``DIR/outbox/`` and sent there with C-STORE
(proposing the SOP class the file holds: RT Structure Set, Segmentation or Label Map
Segmentation). Success and Warning statuses deliver it (it leaves the outbox); a failure that a
retry will not change (:mod:`tf_medseg.dicom.sender`) three times moves it to
``DIR/undeliverable/`` beside a ``.reason.txt``; anything else (no association, out of
resources, a timeout) is retried with backoff (1 s doubling to 60 s). Nothing is dropped: a node
restarted over the same DIR takes the series left in ``incoming/`` as arriving again (complete
after ``--series-timeout`` from the restart, so the rest of a series a kill cut short joins it)
and sends what is left in ``outbox/``. SIGTERM or SIGINT stop it cleanly: no new
association, the series being contoured is finished, every file is written under a temporary
name and renamed, so nothing is half-written.

One log line per series: its slices and instances, the seconds over which they arrived, from
the last to the start of contouring, to contour it, and to send it.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from pathlib import Path

from tf_medseg.dicom.intake import OUT_OF_RESOURCES, Intake, calling, decodable
from tf_medseg.dicom.sender import Sender
from tf_medseg.dicom.settings import Destination, Limits, Tls, first_line
from tf_medseg.dicom.versions import SeriesStore, publish_version
from tf_medseg.errors import MedsegError
from tf_medseg.files import uid_problem

LOG = logging.getLogger("tf_medseg.dicom_node")
QUEUE_SIZE = 16  # complete series waiting to be contoured
STORAGE = ("MRImageStorage", "EnhancedMRImageStorage", "CTImageStorage",
           "EnhancedCTImageStorage")


class DicomNode:
    """The node's state: received series, the contouring queue, the outbox."""

    def __init__(self, model, output, *, ae_title: str = "TF_MEDSEG", host: str = "0.0.0.0",
                 port: int = 11112, send_to: Destination | None = None,
                 series_timeout: float = 30.0, allow=(), output_format: str = "rtstruct",
                 limits: Limits = Limits(), tls: Tls | None = None):
        from tf_medseg.inference.predictor import Models
        limits.check()
        self.tls = tls
        if not 0 < len(ae_title) <= 16:
            raise MedsegError(f"--ae-title {ae_title!r}: an AE title has 1 to 16 characters")
        if series_timeout <= 0:
            raise MedsegError(f"--series-timeout {series_timeout}: must be positive")
        from tf_medseg.files import check_outside
        self.models = Models.read(model)
        from tf_medseg.inference.writers.registry import writer_class
        writer_class("dicom", output_format).check(self.models.contract)  # refused at start
        self.output = Path(output).expanduser()
        check_outside(self.output, "--output", {f"--model {m}": m for m in self.models.exports})
        self.store = SeriesStore(self.output)
        self.incoming, self.received = self.store.incoming, self.store.received
        self.intake = Intake(self.incoming, limits)  # self.limits is the intake's
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
        self.server = None
        self.sender = Sender(self.outbox, self.output / "undeliverable", ae_title, send_to,
                             self.stop) if send_to is not None else None

    @property
    def limits(self) -> Limits:
        return self.intake.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        limits.check()
        self.intake.limits = limits

    # ------------------------------------------------------------------ receiving

    def handle_store(self, event) -> int:
        """C-STORE: check the instance (:class:`~tf_medseg.dicom.intake.Intake`) and
        keep it under incoming/SERIES/ unless a limit says no."""
        status, ds = self.intake.receive(event)
        if ds is None:
            return status
        series = str(ds.SeriesInstanceUID)
        full = self._full(series)
        if full:
            LOG.warning("refused an instance of series %s from %s: %s", series,
                        calling(event.assoc), full)
            return OUT_OF_RESOURCES
        self.intake.keep(event, ds)
        now = time.monotonic()
        with self._lock:
            first, _, count = self._arrived.get(series, (now, now, 0))
            self._arrived[series] = (first, now, count + 1)
        return 0x0000

    def _full(self, series: str) -> str | None:
        """Why one more instance of ``series`` cannot be kept (Limits), or None."""
        with self._lock:
            count = self._arrived.get(series, (0, 0, 0))[2]
        if count >= self.limits.max_instances:
            return f"the series has {count} instances, --max-instances {self.limits.max_instances}"
        try:
            free = shutil.disk_usage(self.output).free / 2**20
        except OSError as exc:
            return f"{self.output}: {exc.strerror}"
        if free < self.limits.min_free_mb:
            return (f"{free:.0f} MB free on {self.output}, under --min-free-mb "
                    f"{self.limits.min_free_mb:g}")
        return None

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
        """Contour the next version of ``series`` (:mod:`tf_medseg.dicom.versions`)
        from every instance received for it; a failure is logged and its reason kept in
        ``failed/SERIES.vN.txt`` (the images stay in ``received/``)."""
        from tf_medseg.files import atomic_write
        from tf_medseg.inference.inputs import find_dicom
        from tf_medseg.inference.writers.registry import writer_for
        with self._lock:
            first, last, count = self._arrived.pop(series, (0.0, 0.0, 0))
            self._queued.discard(series)
        start, waited = time.perf_counter(), time.monotonic() - last
        changed, total = self.store.gather(series)
        if changed == 0 and self.store.version(series):
            LOG.info("series %s: sent again unchanged (%d instance(s)): not contoured again",
                     series, count)
            return
        number, folder = self.store.open_version(series)
        out = self.store.work / f"{series}.out"
        try:
            cases = [c for c in find_dicom(folder, self.models.contract) if c.name == series]
            if not cases:
                raise MedsegError("its images are not one image stack")
            case = cases[0]
            image, spacing = case.read(self.models.contract)
            probs = predictor.probabilities(image, spacing, name=f"series {series}")
            masks = predictor.masks(probs)
            writer = writer_for("dicom", out, self.models.contract,
                                output_format=self.output_format)
            writer.write(case, image, probs, masks)
            (written,) = writer.close()["files"]
            name = publish_version(out / written, self.output, series, number, total)
        except Exception as exc:  # noqa: BLE001  one series must not stop the node
            reason = first_line(exc)
            LOG.error("series %s version %d (%d instance(s)): not contoured: %s", series,
                      number, total, reason)
            (self.output / "failed").mkdir(parents=True, exist_ok=True)
            atomic_write(self.output / "failed" / f"{series}.v{number}.txt",
                         f"series {series} version {number} ({total} instance(s) in "
                         f"{self.store.received / series}): {reason}\n")
            return
        finally:
            self.store.close_version(series)
            shutil.rmtree(out, ignore_errors=True)
        seconds = time.perf_counter() - start
        if self.send_to is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.output / name, self.outbox / f".partial-{name}")
            (self.outbox / f".partial-{name}").rename(self.outbox / name)
            self.sender.wake.set()
        LOG.info("series %s: %d slices (%d instance(s) received over %.1f s, contouring began "
                 "%.1f s after the last) contoured in %.1f s -> %s", series,
                 len(case.series.frames), count, last - first, waited, seconds,
                 self.output / name)

    def _worker(self) -> None:
        """Contour the queued series one at a time; nothing that goes wrong with one series
        stops it (it is logged, and the series' images stay where they are)."""
        from tf_medseg.inference.predictor import Predictor
        try:
            predictor = Predictor.load(self.models)
        except Exception as exc:  # noqa: BLE001  the node answers, and says it cannot contour
            self.trouble = f"the model could not be loaded ({first_line(exc)})"
            LOG.error("contouring stopped: %s", self.trouble)
            return
        while not self.stop.is_set():  # what is queued at a stop waits in incoming/
            try:
                series = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._contour(predictor, series)
            except Exception as exc:  # noqa: BLE001  a full disk, a vanished folder, ...
                LOG.error("series %s: %s; its images stay in %s (contoured again at the next "
                          "start)", series, first_line(exc), self.incoming / series)

    def working(self) -> str | None:
        """Why the node cannot do its work (contour, send), or None while it can."""
        if getattr(self, "trouble", None):
            return self.trouble
        for thread in getattr(self, "_threads", ()):
            if not thread.is_alive() and not self.stop.is_set():
                return f"its {thread.name} thread has stopped"
        return None

    def handle_echo(self, event) -> int:
        """C-ECHO: Success while the node can contour and send, else a failure (0xC000), so
        that a monitoring echo sees a node that only still answers."""
        trouble = self.working()
        if trouble:
            LOG.warning("C-ECHO from %s answered with a failure: %s", calling(event.assoc),
                        trouble)
            return 0xC000
        return 0x0000

    # ------------------------------------------------------------------ running

    def resume(self) -> None:
        """Series an earlier run left in incoming/ arrive again: each is complete once
        --series-timeout passes from now without a new instance, so a series a kill cut
        short is contoured once, with the instances its sender sends when the node is back
        (the outbox is sent as it is found)."""
        now = time.monotonic()
        for folder in sorted(self.incoming.iterdir()) if self.incoming.is_dir() else ():
            if folder.is_dir() and uid_problem(folder.name) is None:
                self._arrived[folder.name] = (now, now, sum(1 for _ in folder.iterdir()))

    def start(self) -> None:
        """Start listening, contouring and sending (returns at once)."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config, evt, sop_class

        from tf_medseg.run_dir import RunLock
        try:
            self.output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedsegError(f"--output {self.output}: cannot be created ({exc.strerror})"
                              ) from None
        # one node a folder (a second would contour and send the same series); a folder it
        # cannot write stops here, before "listening"
        self._folder_lock = RunLock(self.output, "give another --output")
        self._folder_lock.acquire()
        self.resume()
        # instances are written to a file as they arrive, not held in memory (dicom_intake)
        _config.STORE_RECV_CHUNKED_DATASET = True
        ae = AE(ae_title=self.ae_title)
        for name in STORAGE:
            ae.add_supported_context(getattr(sop_class, name), decodable(ALL_TRANSFER_SYNTAXES))
        ae.add_supported_context(sop_class.Verification)
        if self.allow:
            ae.require_calling_aet = list(self.allow)
        ae.require_called_aet = True  # an association for another AE title is rejected
        ae.maximum_associations = self.limits.max_associations
        # ARTIM (a connection that never asks for an association) and an association with
        # no traffic are both closed after the idle timeout
        ae.acse_timeout = ae.network_timeout = self.limits.idle_timeout
        self.server = ae.start_server((self.host, self.port), block=False,
                                      ssl_context=self.tls.server_context() if self.tls else None,
                                      evt_handlers=[(evt.EVT_C_STORE, self.handle_store),
                                                    (evt.EVT_C_ECHO, self.handle_echo),
                                                    *self.intake.handlers()])
        self._threads = [threading.Thread(target=self._worker, name="contour", daemon=True)]
        if self.send_to is not None:
            self._threads.append(threading.Thread(target=self.sender.run, name="send",
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
        if getattr(self, "_folder_lock", None) is not None:
            self._folder_lock.release()
        LOG.info("stopped")
