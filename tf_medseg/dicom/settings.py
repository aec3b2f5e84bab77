"""What a site sets for the DICOM node (:mod:`tf_medseg.dicom.node`): where
structure sets go (:class:`Destination`), the limits it keeps (:class:`Limits`) and DICOM TLS
(:class:`Tls`)."""

from __future__ import annotations

import dataclasses

from tf_medseg.errors import MedsegError


def first_line(exc: BaseException) -> str:
    """An exception as one log line (its first line, at most 200 characters)."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a site bounds (``serve-dicom`` options of the same names)."""

    max_associations: int = 10  # at once, every caller together (then rejected, transient)
    idle_timeout: float = 30.0  # s: a connection silent this long is closed (ARTIM, idle)
    max_instances: int = 5000  # a series: more are refused with 0xA700
    min_free_mb: float = 1024.0  # free space kept on --output: below it 0xA700
    max_instance_mb: float = 512.0  # one instance as received: larger is refused (0xA700),
    # and an association still sending one past it is aborted
    max_associations_per_peer: int = 5  # at once from one calling AE title at one address

    def check(self) -> None:
        for name, value, low in (("max-associations", self.max_associations, 1),
                                 ("idle-timeout", self.idle_timeout, 0.1),
                                 ("max-instances", self.max_instances, 1),
                                 ("min-free-mb", self.min_free_mb, 0),
                                 ("max-instance-mb", self.max_instance_mb, 0.001),
                                 ("max-associations-per-peer", self.max_associations_per_peer,
                                  1)):
            if not value >= low:
                raise MedsegError(f"--{name} {value}: must be at least {low}")


@dataclasses.dataclass(frozen=True)
class Tls:
    """DICOM TLS (PS3.15 B.1): the node's certificate and key, and the CA whose certificates
    callers must present (``--tls-cert``, ``--tls-key``, ``--tls-ca``)."""

    cert: str
    key: str
    ca: str

    def server_context(self):
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED  # callers prove who they are
        try:
            context.load_cert_chain(self.cert, self.key)
            context.load_verify_locations(self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise MedsegError(f"--tls-cert {self.cert} / --tls-key {self.key} / --tls-ca "
                              f"{self.ca}: cannot be loaded ({first_line(exc)})") from None
        return context


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
