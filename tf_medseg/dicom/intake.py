"""What the DICOM node (:mod:`tf_medseg.dicom.node`) lets in: the associations a
peer may hold, the transfer syntaxes it accepts, the size of an instance, and the check of
each instance before it is kept, byte for byte as it was sent.

The node receives in pynetdicom's chunked mode (``STORE_RECV_CHUNKED_DATASET``): an instance
is written to a file in the system's temporary folder as its fragments arrive, never held in
memory whole, and the node reads only its header (the pixel data is deferred) before it keeps
the file. An association whose instance passes ``max_instance_mb`` while it is still being sent
is aborted and its partial file removed, so that neither memory nor the temporary folder takes
a peer's word for how much it sends.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from tf_medseg.dicom.settings import Limits, first_line
from tf_medseg.files import uid_problem

LOG = logging.getLogger("tf_medseg.dicom_node")
FAILURE_CANNOT_UNDERSTAND = 0xC210
FAILURE_NOT_IMAGE = 0xA900  # dataset does not match SOP class
OUT_OF_RESOURCES = 0xA700
P_DATA_TF = 0x04
SLACK = 2**20  # bytes of command sets and PDU headers beside an instance's own


def decodable(syntaxes) -> list[str]:
    """The transfer syntaxes whose pixels the installed decoders read (an image the node could
    not decode is refused at negotiation, so the sender offers another, never acknowledged
    and failed later)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID
    out = []
    for uid in syntaxes:
        try:
            if not UID(uid).is_compressed or get_decoder(UID(uid)).is_available:
                out.append(uid)
        except NotImplementedError:  # no decoder exists for it in pydicom
            pass
    return out


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


def calling(assoc) -> str:
    """The peer as a log names it: its calling AE title at its address."""
    requestor = assoc.requestor
    return f"{str(getattr(requestor, 'ae_title', '')).strip()}@{getattr(requestor, 'address', '')}"


class Intake:
    """The node's door: association limits per peer, the size of an instance, and the keeping
    of a checked instance under ``incoming/SERIES/SOP.dcm``."""

    def __init__(self, incoming: Path, limits: Limits):
        self.incoming, self.limits = incoming, limits
        self._lock = threading.Lock()
        self._bytes: dict[int, int] = {}  # association -> P-DATA bytes since its last instance
        self._aborted: set[int] = set()

    @property
    def max_bytes(self) -> int:
        return int(self.limits.max_instance_mb * 2**20)

    def handlers(self) -> list:
        from pynetdicom import evt
        return [(evt.EVT_REQUESTED, self.requested), (evt.EVT_DATA_RECV, self.data),
                (evt.EVT_CONN_CLOSE, self.closed)]

    def requested(self, event) -> None:
        """An association request: rejected (transient, local limit exceeded) when its peer
        already holds ``max_associations_per_peer``."""
        me = event.assoc
        # the request is not negotiated yet: its calling AE title is in the primitive
        title = str(getattr(me.requestor.primitive, "calling_ae_title", "") or "").strip()
        peer = (title, me.requestor.address)
        held = sum(1 for a in list(me.ae.active_associations)
                   if a is not me and a.is_acceptor and a.is_established
                   and (str(a.requestor.ae_title).strip(), a.requestor.address) == peer)
        if held >= self.limits.max_associations_per_peer:
            LOG.warning("rejected an association from %s@%s: it holds %d already "
                        "(--max-associations-per-peer %d)", *peer, held,
                        self.limits.max_associations_per_peer)
            me.acse.send_reject(0x02, 0x03, 0x02)
            me.kill()  # as pynetdicom's own rejection: wait until the rejection is sent

    def data(self, event) -> None:
        """Bytes of a PDU: an instance still arriving past the size limit aborts its
        association (before it fills memory or the temporary folder)."""
        if not event.data or event.data[0] != P_DATA_TF:
            return
        key = id(event.assoc)
        with self._lock:
            total = self._bytes[key] = self._bytes.get(key, 0) + len(event.data)
            if total <= self.max_bytes + SLACK or key in self._aborted:
                return
            self._aborted.add(key)
        LOG.warning("aborted the association from %s: an instance past %.1f MB is still "
                    "arriving (--max-instance-mb %g)", calling(event.assoc),
                    total / 2**20, self.limits.max_instance_mb)
        event.assoc.abort()

    def closed(self, event) -> None:
        """A connection closed: its counters go, and the partial file of an aborted instance
        is removed from the temporary folder (pynetdicom keeps it: it was never handled)."""
        key = id(event.assoc)
        with self._lock:
            self._bytes.pop(key, None)
            aborted = key in self._aborted
            self._aborted.discard(key)
        if aborted:
            message = getattr(getattr(event.assoc, "dimse", None), "message", None)
            partial = getattr(message, "_data_set_file", None)
            if partial is not None:
                try:
                    partial.close()
                    os.unlink(partial.name)
                except OSError:
                    pass

    def receive(self, event):
        """C-STORE: the status to answer and, when the instance may be kept, its header (the
        pixel data left on disk). The file as received is checked: its size, then its
        header."""
        import pydicom
        who = calling(event.assoc)
        with self._lock:
            self._bytes[id(event.assoc)] = 0
        path = _spooled(event)
        try:
            size = path.stat().st_size if path is not None else 0
            if size > self.max_bytes:
                LOG.warning("refused an instance of %.1f MB from %s: --max-instance-mb %g",
                            size / 2**20, who, self.limits.max_instance_mb)
                return OUT_OF_RESOURCES, None
            if path is not None:
                ds = pydicom.dcmread(path, defer_size="64 KB")  # pixel data left on disk
            else:
                ds = event.dataset
                ds.file_meta = event.file_meta
            why = check_instance(ds)
            if why is None and str(ds.SOPInstanceUID) != str(
                    event.request.AffectedSOPInstanceUID):
                why = "its SOPInstanceUID is not the one its C-STORE request names"
        except Exception as exc:  # noqa: BLE001  undecodable data from the network
            LOG.warning("refused an instance from %s: it cannot be decoded (%s)", who,
                        first_line(exc)[:120])
            return FAILURE_CANNOT_UNDERSTAND, None
        if why:
            LOG.warning("refused instance %s from %s: %s",
                        str(ds.get("SOPInstanceUID", "?"))[:64], who, why)
            return FAILURE_NOT_IMAGE, None
        return 0x0000, ds

    def keep(self, event, ds) -> None:
        """Keep the instance whose header :meth:`receive` accepted (after the node's own
        checks) under incoming/SERIES/SOP.dcm, atomically: the bytes as sent, else (not
        chunked) the dataset written with its file meta."""
        from tf_medseg.dicom.reader import write_dicom
        from tf_medseg.files import atomic_open
        target = self.incoming / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        path = _spooled(event)
        if path is None:
            write_dicom(ds, target)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src, atomic_open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 2**20)


def _spooled(event) -> Path | None:
    """The file pynetdicom wrote a C-STORE's data set to (chunked mode), or None."""
    try:
        return Path(event.dataset_path)
    except AttributeError:  # not received in chunked mode (the node sets it on start)
        return None
