"""``tf-medseg serve-dicom``: a DICOM node that contours the series it receives
(:mod:`tf_medseg.dicom.node`)."""

from __future__ import annotations

import argparse
from typing import Sequence

from tf_medseg.cli.common import add_verbose_argument, prog, quiet_tensorflow, run_command


def serve_dicom_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("serve-dicom"),
        description="A DICOM Storage SCP that contours every MR or CT series it receives with "
                    "an exported model and writes (and with --send-to sends) an RT Structure "
                    "Set per series. The contours are unreviewed proposals (UNAPPROVED).")
    parser.add_argument("--model", required=True, nargs="+",
                        help="RUN_DIR/saved_model (or RUN_DIR, several exports, a "
                             "cross-validation RUN_DIR), as predict takes")
    parser.add_argument("--ae-title", default="TF_MEDSEG", help="this node's AE title "
                                                                "(default TF_MEDSEG)")
    parser.add_argument("--port", type=int, default=11112, help="port to listen on "
                                                                "(default 11112)")
    parser.add_argument("--host", "--bind", dest="host", default="0.0.0.0",
                        help="address to listen on (default 0.0.0.0: every interface; "
                             "127.0.0.1 for this machine only)")
    parser.add_argument("--output", required=True,
                        help="folder of the node: incoming/, received/, failed/, outbox/ and "
                             "the RS_SERIESUID.dcm structure sets")
    parser.add_argument("--send-to", metavar="AE@HOST:PORT",
                        help="send each structure set there with C-STORE (retried with backoff "
                             "until it is taken; kept in OUTPUT/outbox/ until then)")
    parser.add_argument("--series-timeout", type=float, default=30.0,
                        help="seconds without a new instance after which a series is complete "
                             "(default 30, as clinical nodes wait; instances that come later "
                             "open a new version of the series)")
    parser.add_argument("--allow", nargs="+", default=[], metavar="AE",
                        help="accept associations only from these calling AE titles")
    from tf_medseg.inference.writers.registry import WRITERS
    parser.add_argument("--output-format",  # the DICOM objects of predict's, the node sends
                        choices=[f for f, w in WRITERS["dicom"].items() if w.ending == ".dcm"],
                        default="rtstruct", help="what each series is answered with: rtstruct "
                        "(the default), seg (BINARY segments) or seg-labelmap (one Label Map "
                        "of a softmax model's classes)")
    from tf_medseg.dicom.node import Limits
    limits = Limits()
    for name, kind, what in (
            ("max-associations", int, "associations at once, every caller together; more are "
                                      "rejected (transient)"),
            ("idle-timeout", float, "seconds a connection may stay silent (before or within an "
                                    "association) before it is closed"),
            ("max-instances", int, "instances a series may have; more are refused with 0xA700"),
            ("min-free-mb", float, "free space kept on --output's disk; below it instances are "
                                   "refused with 0xA700"),
            ("max-instance-mb", float, "size of one instance as received; larger ones are "
                                       "refused with 0xA700 (a sender still sending past it "
                                       "is aborted)"),
            ("max-associations-per-peer", int, "associations at once from one calling AE "
                                               "title at one address; more are rejected "
                                               "(transient)")):
        default = getattr(limits, name.replace("-", "_"))
        parser.add_argument(f"--{name}", type=kind, default=default,
                            help=f"{what} (default {default:g})")
    for name, what in (("cert", "this node's certificate (PEM)"),
                       ("key", "its private key (PEM)"),
                       ("ca", "the CA certificates (PEM) whose callers are accepted")):
        parser.add_argument(f"--tls-{name}", help=f"DICOM TLS: {what}; give all three "
                                                  f"--tls-* options or none")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return run_command(lambda: _serve(args))


def _serve(args) -> None:
    import logging
    import signal

    from tf_medseg.dicom.node import Destination, DicomNode, Limits
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # not a line per instance
    if not 0 < args.port < 65536:
        from tf_medseg.errors import MedsegError
        raise MedsegError(f"--port {args.port}: must be 1-65535")
    node = DicomNode(args.model, args.output, ae_title=args.ae_title, host=args.host,
                     port=args.port, series_timeout=args.series_timeout, allow=args.allow,
                     send_to=Destination.parse(args.send_to) if args.send_to else None,
                     output_format=args.output_format, limits=Limits(
                         args.max_associations, args.idle_timeout, args.max_instances,
                         args.min_free_mb, args.max_instance_mb,
                         args.max_associations_per_peer), tls=_tls(args))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: node.stop.set())
    node.run()


def _tls(args):
    from tf_medseg.dicom.settings import Tls
    from tf_medseg.errors import MedsegError
    given = [args.tls_cert, args.tls_key, args.tls_ca]
    if not any(given):
        return None
    if not all(given):
        raise MedsegError("--tls-cert, --tls-key and --tls-ca: give all three (DICOM TLS) "
                          "or none")
    tls = Tls(*given)
    tls.server_context()  # unreadable files stop here, before "listening"
    return tls
