"""What every command line shares: the program's name as it was called, the ``--set``
argument, quiet TensorFlow start-up logs, and running a command so that a user error is one
line on stderr and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tf_medseg.errors import MedsegError


def prog(command: str = "") -> str:
    """``tf-medseg COMMAND`` when run as the installed command, else ``python -m tf_medseg
    COMMAND``."""
    name = "tf-medseg" if Path(sys.argv[0]).name == "tf-medseg" else "python -m tf_medseg"
    return f"{name} {command}".strip()


def quiet_tensorflow() -> None:
    """C++ info logs (oneDNN, CUDA probing) and absl notices drown the progress output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...``: config overrides, parsed as YAML by ``load_config``."""
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config keys; values are YAML, e.g. train.epochs=1 "
                             "data.image_size=[64,64]")


def run_command(fn) -> int:
    """``fn()``; its exit status: 0, 2 for a user error (printed as one line), 130 for ^C."""
    try:
        fn()
    except MedsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
