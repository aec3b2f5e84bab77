"""What the DICOM node lets in, on 127.0.0.1: instances checked, kept byte for byte (private
elements included) without being held in memory, an instance over --max-instance-mb refused,
one still arriving past it aborted with nothing left in the temporary folder, and a peer held
to --max-associations-per-peer while others are served."""

from __future__ import annotations

import re
import socket
import tempfile
import time

import numpy as np
import pydicom
import pytest
from synthetic_dicom import write_series

from tf_medseg.dicom.intake import check_instance

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_an_instance_is_checked(tmp_path):
    write_series(tmp_path / "s", np.zeros((1, 4, 4), np.uint16))
    ds = pydicom.dcmread(next((tmp_path / "s").iterdir()))
    assert check_instance(ds) is None
    ds.SOPInstanceUID = "../../etc"
    assert "is not a UID" in check_instance(ds)
    ds.SOPInstanceUID, ds.Modality = "1.2.3", "SR"
    assert "modality 'SR'" in check_instance(ds)


def _caller(ae_title: str, port: int):
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(MRImageStorage)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 20
    return ae.associate("127.0.0.1", port, ae_title="NODE")


def test_sizes_and_peers_are_bounded_and_instances_kept_as_sent(tiny_export, tmp_path,
                                                                 monkeypatch, caplog):
    import logging

    from tf_medseg.dicom.node import DicomNode
    from tf_medseg.dicom.settings import Limits
    caplog.set_level(logging.INFO, logger="tf_medseg.dicom_node")
    spool = tmp_path / "spool"  # the system temporary folder, as pynetdicom finds it
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    small = write_series(tmp_path / "small", np.arange(2 * 16 * 16, dtype=np.uint16
                                                       ).reshape(2, 16, 16))["series"]
    write_series(tmp_path / "over", np.ones((1, 256, 256), np.uint16))  # 128 KB
    write_series(tmp_path / "huge", np.ones((1, 1024, 1024), np.uint16))  # 2 MB
    sent = [pydicom.dcmread(p) for p in sorted((tmp_path / "small").iterdir())]
    block = sent[0].private_block(0x0029, "SCANNER VENDOR", create=True)
    block.add_new(0x10, "LO", "a private value the scanner sent")
    port = _free_port()
    node = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=port,
                     ae_title="NODE", series_timeout=600,
                     limits=Limits(max_instance_mb=0.05, max_associations_per_peer=1,
                                   min_free_mb=0))
    node.start()
    try:
        first = _caller("SCANNER", port)
        assert first.is_established
        assert _caller("SCANNER", port).is_rejected  # the same peer, a second association
        other = _caller("CONSOLE", port)
        assert other.is_established  # another peer is served
        other.release()

        assert [first.send_c_store(ds).Status for ds in sent] == [0x0000, 0x0000]
        over = pydicom.dcmread(next((tmp_path / "over").iterdir()))
        assert first.send_c_store(over).Status == 0xA700
        first.release()

        huge = _caller("SCANNER", port)  # the peer's earlier association has ended
        assert huge.is_established
        status = huge.send_c_store(pydicom.dcmread(next((tmp_path / "huge").iterdir())))
        assert "Status" not in status  # no answer: the node aborted the association
        end = time.monotonic() + 10
        while huge.is_established and time.monotonic() < end:
            time.sleep(0.1)
        assert huge.is_aborted
        assert list(spool.iterdir()) == []  # the partial instance did not stay behind

        kept = {p.name: pydicom.dcmread(p) for p in (tmp_path / "out" / "incoming" / small
                                                     ).iterdir()}
        assert sorted(kept) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in sent)
        for ds in sent:
            got = kept[f"{ds.SOPInstanceUID}.dcm"]
            assert got.PixelData == ds.PixelData
            assert [e.tag for e in ds if not e.tag.is_private and got.get(e.tag) != e] == []
        # sent in implicit VR, the private element is kept as its bytes (its VR unknown)
        assert kept[f"{sent[0].SOPInstanceUID}.dcm"][0x0029, 0x1010].value == \
            b"a private value the scanner sent"
        again = _caller("SCANNER", port)  # the node goes on
        assert again.is_established and again.send_c_store(sent[1]).Status == 0x0000
        again.release()
    finally:
        node.shutdown()
    assert "rejected an association from SCANNER@127.0.0.1: it holds 1 already " \
           "(--max-associations-per-peer 1)" in caplog.text
    assert "refused an instance of 0.1 MB from SCANNER@127.0.0.1: --max-instance-mb 0.05" \
        in caplog.text
    assert re.search(r"aborted the association from SCANNER@127\.0\.0\.1: an instance past "
                     r"1\.\d MB is still arriving \(--max-instance-mb 0\.05\)", caplog.text)
