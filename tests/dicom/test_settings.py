"""What a site sets for the DICOM node: limits checked, destinations parsed, and DICOM TLS on
127.0.0.1 with certificates made by openssl (a caller without a certificate of the site's CA,
or without TLS, gets no association)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest

from tf_medseg.dicom.settings import Limits, Tls
from tf_medseg.errors import MedsegError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_limits_are_checked():
    Limits().check()
    with pytest.raises(MedsegError, match=r"^--max-associations 0: must be at least 1$"):
        Limits(max_associations=0).check()
    with pytest.raises(MedsegError, match=r"^--idle-timeout nan: must be at least 0\.1$"):
        Limits(idle_timeout=float("nan")).check()
    with pytest.raises(MedsegError, match=r"^--max-instance-mb 0: must be at least 0\.001$"):
        Limits(max_instance_mb=0).check()
    with pytest.raises(MedsegError, match=r"^--max-associations-per-peer 0: must be at least 1$"):
        Limits(max_associations_per_peer=0).check()


def _certificates(folder):
    """A CA, and a server and a client certificate it signed (openssl)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=site CA")
    for name in ("node", "scanner"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-copy_extensions", "copy")


def test_dicom_tls_admits_only_callers_with_the_sites_certificates(tiny_export, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test's certificates)")
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from tf_medseg.dicom.node import DicomNode
    _certificates(tmp_path)
    with pytest.raises(MedsegError, match=r"--tls-cert .*missing\.pem .*: cannot be loaded"):
        Tls(str(tmp_path / "missing.pem"), str(tmp_path / "node.key"),
            str(tmp_path / "ca.pem")).server_context()
    port = _free_port()
    node = DicomNode(tiny_export, tmp_path / "out", host="127.0.0.1", port=port,
                     ae_title="NODE", tls=Tls(str(tmp_path / "node.pem"),
                                              str(tmp_path / "node.key"),
                                              str(tmp_path / "ca.pem")))
    node.start()

    def caller(certificate: bool, tls: bool = True):
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 10
        if not tls:
            return ae.associate("127.0.0.1", port, ae_title="NODE")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(tmp_path / "ca.pem"))
        if certificate:
            context.load_cert_chain(tmp_path / "scanner.pem", tmp_path / "scanner.key")
        return ae.associate("127.0.0.1", port, ae_title="NODE",
                            tls_args=(context, "localhost"))
    try:
        assoc = caller(certificate=True)
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert not caller(certificate=False).is_established
        assert not caller(certificate=True, tls=False).is_established
    finally:
        node.shutdown()
