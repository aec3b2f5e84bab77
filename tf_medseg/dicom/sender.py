"""The DICOM node's sending (:mod:`tf_medseg.dicom.node`): the structure sets in its
outbox go to one destination with C-STORE, and the destination's status decides what becomes of
each: Success and Warning deliver it, a failure that a retry will not change moves it to the
undeliverable folder after :data:`REFUSALS` tries, anything else is retried with backoff."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tf_medseg.dicom.settings import first_line
from tf_medseg.files import atomic_write

LOG = logging.getLogger("tf_medseg.dicom_node")
BACKOFF = (1.0, 60.0)  # first retry after 1 s, doubling up to 60 s
REFUSALS = 3  # failures that will not change before a file goes to undeliverable/


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


class Sender:
    """Sends what lies in ``outbox`` to ``destination`` (an ``AE@HOST:PORT``) as ``ae_title``
    until ``stop`` is set; :attr:`wake` says something new is there."""

    def __init__(self, outbox: Path, undeliverable: Path, ae_title: str, destination,
                 stop: threading.Event):
        self.outbox, self.undeliverable = Path(outbox), Path(undeliverable)
        self.ae_title, self.destination, self.stop = ae_title, destination, stop
        self.wake = threading.Event()
        self.sent: list[str] = []  # the files delivered, in order

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
        assoc = ae.associate(self.destination.host, self.destination.port,
                             ae_title=self.destination.ae_title)
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
                outcome, answer = "retry", first_line(exc)
            if outcome == "delivered":
                path.unlink()
                tries.pop(path.name, None)
                self.sent.append(path.name)
                LOG.info("%s sent to %s in %.1f s (%s)", path.name, self.destination,
                         time.perf_counter() - start, answer)
                continue
            refusals += outcome == "refused"
            if refusals >= REFUSALS:
                self._undeliverable(path, answer)
                tries.pop(path.name, None)
                continue
            LOG.warning("%s: %s did not take it (%s); retrying in %.0f s (kept in %s)",
                        path.name, self.destination, answer, delay, self.outbox)
            tries[path.name] = (time.monotonic() + delay, min(delay * 2, BACKOFF[1]), refusals)

    def _undeliverable(self, path: Path, answer: str) -> None:
        """A file the destination refused REFUSALS times with a failure that will not change:
        moved to ``undeliverable/`` beside the reason, never retried."""
        folder = self.undeliverable
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{path.name}.reason.txt",
                     f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.destination} refused "
                     f"{path.name} {REFUSALS} times: {answer}\n")
        path.rename(folder / path.name)
        LOG.error("%s: %s refused it %d times (%s): moved to %s, not retried", path.name,
                  self.destination, REFUSALS, answer, folder)

    def run(self) -> None:
        tries: dict[str, tuple[float, float, int]] = {}
        while not self.stop.is_set():
            try:
                self.send_due(tries)
            except Exception as exc:  # noqa: BLE001  the sender must not die (a full disk, ...)
                LOG.error("sending from %s: %s; trying again", self.outbox, first_line(exc))
            self.wake.wait(0.5)
            self.wake.clear()
