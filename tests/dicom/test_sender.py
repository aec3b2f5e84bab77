"""The DICOM node's sending: the destination's C-STORE status decides (Success and Warning
deliver, a failure that will not change goes to undeliverable/ after three tries, the rest is
retried), against a pynetdicom destination on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

from tf_medseg.dicom.node import Destination
from tf_medseg.dicom.sender import Sender, store_outcome


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _object(path, sop_class: str) -> str:
    """A small object of ``sop_class`` (what the node's outbox holds), written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "RTSTRUCT", "TEST001"
    ds.save_as(path, enforce_file_format=True)
    return ds.SOPInstanceUID


def test_sending_follows_the_standards_statuses(tmp_path):
    """Success and Warning deliver; a failure that will not change goes to undeliverable/
    after three tries, with its reason; out of resources is retried; a Label Map SEG is sent
    with its own SOP class proposed; a destination that accepts no context for a class
    refuses it."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import LabelMapSegmentationStorage, RTStructureSetStorage

    assert store_outcome(0xB007) == ("delivered", "Warning 0xB007: stored")
    assert store_outcome(0xC123)[0] == store_outcome(0x0122)[0] == "refused"
    assert store_outcome(0xA700)[0] == store_outcome(0x0110)[0] == "retry"
    port = _free_port()
    node = Sender(tmp_path / "out" / "outbox", tmp_path / "out" / "undeliverable", "NODE",
                  Destination("PLAN", "127.0.0.1", port), threading.Event())
    node.outbox.mkdir(parents=True)
    statuses, received = {}, []
    for name, status, sop_class in (("RS_ok.dcm", 0x0000, RTStructureSetStorage),
                                    ("RS_warn.dcm", 0xB000, RTStructureSetStorage),
                                    ("RS_bad.dcm", 0xA900, RTStructureSetStorage),
                                    ("RS_busy.dcm", 0xA700, RTStructureSetStorage),
                                    ("SEG_map.dcm", 0x0000, LabelMapSegmentationStorage)):
        statuses[_object(node.outbox / name, sop_class)] = (name, status)

    def handle(event):
        name, status = statuses[event.request.AffectedSOPInstanceUID]
        received.append(name)
        return status
    ae = AE(ae_title="PLAN")
    ae.add_supported_context(RTStructureSetStorage)
    ae.add_supported_context(LabelMapSegmentationStorage)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, handle)])
    try:
        tries = {}
        for _ in range(4):  # four passes, each retry made due at once
            node.send_due(tries)
            tries = {k: (0.0, delay, refusals) for k, (_, delay, refusals) in tries.items()}
    finally:
        server.shutdown()
    assert sorted(node.sent) == ["RS_ok.dcm", "RS_warn.dcm", "SEG_map.dcm"]
    assert sorted(received) == ["RS_bad.dcm"] * 3 + ["RS_busy.dcm"] * 4 + [
        "RS_ok.dcm", "RS_warn.dcm", "SEG_map.dcm"]
    assert sorted(p.name for p in node.outbox.iterdir()) == ["RS_busy.dcm"]  # still tried
    dead = tmp_path / "out" / "undeliverable"
    assert sorted(p.name for p in dead.iterdir()) == ["RS_bad.dcm", "RS_bad.dcm.reason.txt"]
    assert "refused RS_bad.dcm 3 times: Failure 0xA900" in (
        dead / "RS_bad.dcm.reason.txt").read_text()

    # a destination without a context for the SEG's class: refused, never retried for ever
    ae = AE(ae_title="PLAN")
    ae.add_supported_context(RTStructureSetStorage)
    _object(node.outbox / "SEG_again.dcm", LabelMapSegmentationStorage)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, handle)])
    try:
        tries = {}
        for _ in range(3):
            node.send_due(tries)
            tries = {k: (0.0, delay, refusals) for k, (_, delay, refusals) in tries.items()}
    finally:
        server.shutdown()
    assert "it accepts no presentation context for SOP class 1.2.840.10008.5.1.4.1.1.66.7" in (
        dead / "SEG_again.dcm.reason.txt").read_text()
    assert sorted(p.name for p in node.outbox.iterdir()) == ["RS_busy.dcm"]
