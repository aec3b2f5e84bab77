"""The DICOM node on 127.0.0.1: a scanner (pynetdicom client) sends series, the node contours
them and sends each RT Structure Set to a planning system (a second pynetdicom SCP) that is down
at first; a broken instance and a refused AE title do not stop it; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pydicom
import pytest
from synthetic_dicom import write_series

from tf_medseg.dicom.node import Destination

from conftest import ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(ae_title: str, port: int, contexts):
    from pynetdicom import AE
    ae = AE(ae_title=ae_title)
    for context in contexts:
        ae.add_requested_context(context)
    # 30 s, as dcmtk's storescu: a loaded machine (the node contouring beside a busy test
    # run) answered a C-STORE in over 10 s once
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae.associate("127.0.0.1", port, ae_title="NODE")


def _echoes(port: int) -> bool:
    """Whether the node on ``port`` answers a C-ECHO with Success."""
    from pynetdicom.sop_class import Verification
    assoc = _client("SCANNER", port, [Verification])
    ok = assoc.is_established and assoc.send_c_echo().Status == 0
    if assoc.is_established:
        assoc.release()
    return ok


def _wait(condition, seconds: float, what: str, log=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log.read_text()[-3000:]}"
                                                            if log else ""))


def test_the_node_contours_each_series_once_and_never_loses_one(tiny_export, tmp_path):
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import MRImageStorage, RTStructureSetStorage
    node_port, dest_port = _free_port(), _free_port()
    rng = np.random.default_rng(0)
    series = {}
    for name, slices in (("a", 40), ("b", 12)):
        volume = rng.integers(0, 3000, (slices, 32, 32)).astype(np.uint16)
        series[name] = write_series(tmp_path / "scanner" / name, volume, (3.0, 1.2, 1.2),
                                    seed=len(name))
    log = tmp_path / "node.log"
    out = tmp_path / "node"
    with open(log, "w") as f:
        node = subprocess.Popen(
            [sys.executable, "-m", "tf_medseg", "serve-dicom", "--model", str(tiny_export),
             "--ae-title", "NODE", "--host", "127.0.0.1", "--port", str(node_port),
             "--output", str(out), "--send-to", f"TPS@127.0.0.1:{dest_port}",
             "--series-timeout", "1.5", "--allow", "SCANNER"],
            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _echoes(node_port), 120, "the node to listen", log)
        # a refused AE title: the association is rejected
        intruder = _client("INTRUDER", node_port, [MRImageStorage])
        assert not intruder.is_established
        start = time.monotonic()
        assoc = _client("SCANNER", node_port, [MRImageStorage])
        assert assoc.is_established
        for path in sorted((tmp_path / "scanner" / "a").iterdir()):
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
        # a broken instance (no position, no pixels): refused with a failure status
        broken = pydicom.dcmread(next((tmp_path / "scanner" / "a").iterdir()))
        del broken.ImagePositionPatient, broken.PixelData
        broken.SOPInstanceUID = pydicom.uid.generate_uid()
        assert assoc.send_c_store(broken).Status != 0
        assoc.release()
        sent_a = time.monotonic() - start
        # series b arrives while a is contoured (a is complete 1.5 s after its last image)
        time.sleep(1.7)
        assoc = _client("SCANNER", node_port, [MRImageStorage])
        assert assoc.is_established, log.read_text()[-2000:]
        for path in sorted((tmp_path / "scanner" / "b").iterdir()):
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
        assoc.release()
        # the planning system is down: the structure set waits in the outbox, retried
        _wait(lambda: "retrying" in log.read_text(), 120, "a failed first attempt", log)
        assert list((out / "outbox").glob("RS_*.dcm"))
        received, lock = [], threading.Lock()

        def store(event):
            with lock:
                received.append(event.dataset)
            return 0x0000
        tps = AE(ae_title="TPS")
        tps.add_supported_context(RTStructureSetStorage)
        server = tps.start_server(("127.0.0.1", dest_port), block=False,
                                  evt_handlers=[(evt.EVT_C_STORE, store)])
        try:
            _wait(lambda: len(received) >= 2, 120, "both structure sets at the TPS", log)
            time.sleep(1.0)  # nothing more comes
        finally:
            server.shutdown()
        assert node.poll() is None  # still serving
    finally:
        node.send_signal(signal.SIGTERM)
        code = node.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    referenced = sorted(
        str(ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
            .RTReferencedSeriesSequence[0].SeriesInstanceUID) for ds in received)
    assert referenced == sorted(s["series"] for s in series.values())  # each once
    assert all(ds.Modality == "RTSTRUCT" and ds.ApprovalStatus == "UNAPPROVED"
               for ds in received)
    assert not list((out / "outbox").iterdir())  # all sent
    for s in series.values():
        assert (out / f"RS_{s['series']}.dcm").is_file()
        assert len(list((out / "received" / s["series"]).iterdir())) in (12, 40)
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
    assert "refused instance" in text and "no ImagePositionPatient" in text
    assert "40 slices (40 instance(s) received over" in text
    assert "12 slices (12 instance(s) received over" in text
    assert text.count(f"sent to TPS@127.0.0.1:{dest_port} in") == 2 and "stopped" in text
    print(f"series a sent in {sent_a:.1f} s")
    print("\n".join(line for line in text.splitlines() if "contoured in" in line
                    or "sent to" in line))


def test_destinations_are_checked():
    assert Destination.parse("TPS@10.0.0.5:104") == Destination("TPS", "10.0.0.5", 104)
    from tf_medseg.errors import MedsegError
    for bad in ("TPS", "TPS@host", "@h:1", "TPS@h:0", "A_TITLE_TOO_LONG_X@h:1"):
        with pytest.raises(MedsegError, match="expected AE@HOST:PORT"):
            Destination.parse(bad)


def test_an_answer_the_model_cannot_fill_is_refused_at_start(tiny_export, tmp_path):
    """A Label Map SEG of a sigmoid model's overlapping classes: refused before the node
    takes its folder, not once per series."""
    from tf_medseg.dicom.node import DicomNode
    from tf_medseg.errors import MedsegError
    with pytest.raises(MedsegError, match="--output-format seg-labelmap: this model's"):
        DicomNode(tiny_export, tmp_path / "out", output_format="seg-labelmap")
    assert not (tmp_path / "out").exists()


def test_a_restarted_node_queues_what_it_left_and_sends_its_outbox(tiny_export, tmp_path):
    """What an earlier run left: a series in incoming/ is contoured once the series timeout
    has passed from the restart, a structure set in outbox/ is sent as soon as the destination
    takes it."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import RTStructureSetStorage

    from tf_medseg.dicom.node import DicomNode
    from tf_medseg.dicom.rtstruct import structure_set, write_structure_set
    write_series(tmp_path / "node" / "incoming" / "1.2.3", np.zeros((3, 8, 8), np.uint16))
    from tf_medseg.dicom.reader import find_series
    (series,), _ = find_series(tmp_path / "node" / "incoming")
    write_structure_set(structure_set(series, np.zeros((3, 8, 8, 1), bool), ["x"]),
                        tmp_path / "node" / "outbox" / "RS_1.2.3.dcm")
    port = _free_port()
    node = DicomNode(tiny_export, tmp_path / "node", series_timeout=0.5,
                     send_to=Destination("TPS", "127.0.0.1", port))
    node.resume()  # arriving again: complete after the series timeout from the restart
    node._complete()
    assert node.jobs.empty()
    time.sleep(0.6)
    node._complete()
    assert node.jobs.get_nowait() == "1.2.3"
    received = []
    tps = AE(ae_title="TPS")
    tps.add_supported_context(RTStructureSetStorage)
    server = tps.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda event: received.append(event.dataset) or 0x0000)])
    sender = threading.Thread(target=node.sender.run)
    sender.start()
    try:
        _wait(lambda: node.sender.sent == ["RS_1.2.3.dcm"], 60, "the outbox to be sent")
    finally:
        node.stop.set()
        sender.join(timeout=30)
        server.shutdown()
    assert len(received) == 1 and received[0].Modality == "RTSTRUCT"
    assert not list((tmp_path / "node" / "outbox").iterdir())


def test_one_node_a_folder_a_worker_that_survives_and_an_echo_that_tells(tiny_export, tmp_path,
                                                                          caplog, monkeypatch):
    import logging

    from pynetdicom.sop_class import Verification

    from tf_medseg.dicom.node import DicomNode
    from tf_medseg.errors import MedsegError
    caplog.set_level(logging.INFO, logger="tf_medseg.dicom_node")
    port = _free_port()
    node = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=port,
                     ae_title="NODE")
    node.start()
    try:
        other = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=_free_port())
        with pytest.raises(MedsegError, match=r"out: in use by process \d+ .*; wait for it to "
                                              r"finish \(or stop it\), or give another --output"):
            other.start()
        calls = []

        def full_disk(predictor, series):
            calls.append(series)
            raise OSError(28, "No space left on device")
        node._contour = full_disk
        node.jobs.put("1.2.3")
        node.jobs.put("1.2.4")
        _wait(lambda: calls == ["1.2.3", "1.2.4"], 60, "the worker to go on after a failure")
        assert node.working() is None
        assoc = _client("SCANNER", port, [Verification])
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        node.shutdown()
    assert "series 1.2.3: [Errno 28] No space left on device; its images stay in" in caplog.text

    # a model that cannot be loaded: the node answers, and its C-ECHO says it cannot work
    from tf_medseg.inference.predictor import Predictor

    def unloadable(models):
        raise OSError("saved_model.pb: truncated")
    monkeypatch.setattr(Predictor, "load", staticmethod(unloadable))
    node = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=port,
                     ae_title="NODE")
    node.start()  # the lock of the first node was released at its shutdown
    try:
        _wait(lambda: node.working() is not None, 30, "the worker to report")
        assoc = _client("SCANNER", port, [Verification])
        assert assoc.send_c_echo().Status == 0xC000
        assoc.release()
    finally:
        node.shutdown()
    assert "C-ECHO from SCANNER@127.0.0.1 answered with a failure: the model could not be loaded " \
           "(saved_model.pb: truncated)" in caplog.text


def test_limits_a_hospital_sets(tiny_export, tmp_path):
    """Idle connections closed after the idle timeout (a flood does not shut callers out),
    instances past --max-instances and past the free-space floor refused with 0xA700, an
    association for another AE title rejected."""
    import dataclasses

    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage, Verification

    from tf_medseg.dicom.node import DicomNode, Limits
    port = _free_port()
    node = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=port, ae_title="NODE",
                     series_timeout=600, limits=Limits(max_associations=2, idle_timeout=1.0,
                                                       max_instances=2, min_free_mb=0))
    series = write_series(tmp_path / "scan", np.zeros((3, 8, 8), np.uint16))["series"]
    files = sorted((tmp_path / "scan").iterdir())
    node.start()
    flood = []
    try:
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
        time.sleep(2.0)  # the idle timeout closes them
        assoc = _client("SCANNER", port, [MRImageStorage, Verification])
        assert assoc.is_established
        statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in files]
        assert statuses == [0x0000, 0x0000, 0xA700]
        assert len(list((tmp_path / "out" / "incoming" / series).iterdir())) == 2
        node.limits = dataclasses.replace(node.limits, max_instances=100, min_free_mb=1e12)
        assert assoc.send_c_store(pydicom.dcmread(files[2])).Status == 0xA700
        assoc.release()
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = 10
        assert ae.associate("127.0.0.1", port, ae_title="SOMEONE_ELSE").is_rejected
        # only transfer syntaxes the node can decode are accepted: JPEG Lossless (GDCM) is,
        # High-Throughput JPEG 2000 (no decoder installed) is not, so a sender offers another
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(MRImageStorage, ["1.2.840.10008.1.2.4.70"])
        ae.add_requested_context(MRImageStorage, ["1.2.840.10008.1.2.4.201"])
        assoc = ae.associate("127.0.0.1", port, ae_title="NODE")
        assert [c.transfer_syntax[0] for c in assoc.accepted_contexts] == [
            "1.2.840.10008.1.2.4.70"]
        assoc.release()
    finally:
        for s in flood:
            s.close()
        node.shutdown()
    assert len(list((tmp_path / "out" / "incoming" / series).iterdir())) == 2


def test_a_late_instance_opens_a_version_contoured_with_all_and_nothing_is_deleted(
        tiny_export, tmp_path):
    import shutil

    from tf_medseg.dicom.node import DicomNode
    from tf_medseg.inference.predictor import Predictor
    node = DicomNode(tiny_export, tmp_path / "node")
    predictor = Predictor.load(node.models)
    volume = np.random.default_rng(0).integers(0, 3000, (6, 32, 32)).astype(np.uint16)
    info = write_series(tmp_path / "scan", volume, (3.0, 1.2, 1.2))
    series = info["series"]
    by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
              for p in (tmp_path / "scan").iterdir()}

    def arrive(uids):
        folder = node.incoming / series
        folder.mkdir(parents=True, exist_ok=True)
        for uid in uids:
            shutil.copyfile(by_uid[uid], folder / f"{uid}.dcm")
        node._contour(predictor, series)

    def referenced(path):
        ds = pydicom.dcmread(path)
        study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
        return ds, len(study.RTReferencedSeriesSequence[0].ContourImageSequence)

    arrive(info["sop_uids"][:5])  # five slices, then the node contours
    ds1, n1 = referenced(tmp_path / "node" / f"RS_{series}.dcm")
    assert n1 == 5
    arrive(info["sop_uids"][5:])  # a late slice: version 2, with all six
    ds2, n2 = referenced(tmp_path / "node" / f"RS_{series}.v2.dcm")
    assert n2 == 6 and ds2.SOPInstanceUID != ds1.SOPInstanceUID
    assert ds2.SeriesDescription == "tf_medseg v2: revises v1 (unreviewed)"
    assert ds2.StructureSetDescription.startswith(
        f"Version 2 of series {series} (6 instances): revises RS_{series}.dcm. Automatic")
    arrive(info["sop_uids"])  # the whole series sent again, unchanged: no version 3
    assert sorted(p.name for p in (tmp_path / "node").glob("RS_*")) == [
        f"RS_{series}.dcm", f"RS_{series}.v2.dcm"]
    assert len(list((node.received / series).iterdir())) == 6
    assert not (tmp_path / "node" / "work" / series).exists()


def test_a_series_cut_short_by_kill_9_is_contoured_once_with_all_its_instances(tiny_export,
                                                                              tmp_path):
    """Half a series, then kill -9; the node started again over the same folder takes the
    rest (and a re-sent instance) as the same arrival: one version, every instance."""
    from pynetdicom.sop_class import MRImageStorage
    port = _free_port()
    files = sorted(write_series(tmp_path / "scan", np.random.default_rng(3).integers(
        0, 3000, (12, 16, 16)).astype(np.uint16))["sop_uids"])
    uid = pydicom.dcmread(next((tmp_path / "scan").iterdir())).SeriesInstanceUID
    paths = sorted((tmp_path / "scan").iterdir())
    out, log = tmp_path / "node", tmp_path / "node.log"

    def start():
        with open(log, "a") as f:
            node = subprocess.Popen(
                [sys.executable, "-m", "tf_medseg", "serve-dicom", "--model", str(tiny_export),
                 "--ae-title", "NODE", "--host", "127.0.0.1", "--port", str(port), "--output",
                 str(out), "--series-timeout", "4"], cwd=ROOT, stdout=f,
                stderr=subprocess.STDOUT)
        _wait(lambda: _echoes(port), 120, "the node to listen", log)
        return node

    def send(chosen):
        assoc = _client("SCANNER", port, [MRImageStorage])
        assert [assoc.send_c_store(pydicom.dcmread(p)).Status for p in chosen] == \
            [0] * len(chosen)
        assoc.release()
    node = start()
    try:
        send(paths[:6])
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=30)
        node = start()
        send(paths[5:])  # the sender's retry: the last one it had sent, then the rest
        _wait(lambda: (out / f"RS_{uid}.dcm").is_file(), 120, "the structure set", log)
        time.sleep(5)  # a second version would be opened by now
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    assert len(files) == 12
    assert sorted(p.name for p in (out / "received" / uid).iterdir()) == sorted(
        f"{sop}.dcm" for sop in files)  # every instance, each once
    assert [p.name for p in out.glob("RS_*")] == [f"RS_{uid}.dcm"]
    assert log.read_text().count("12 slices (") == 1
