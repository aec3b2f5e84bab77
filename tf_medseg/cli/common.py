"""What every command line shares: the program's name as it was called, the ``--set``
argument, quiet TensorFlow start-up logs (``--verbose`` shows them), and running a command so
that a user error is one line on stderr and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from tf_medseg.errors import MedsegError


def prog(command: str = "") -> str:
    """``tf-medseg COMMAND`` when run as the installed command, else ``python -m tf_medseg
    COMMAND``."""
    name = "tf-medseg" if Path(sys.argv[0]).name == "tf-medseg" else "python -m tf_medseg"
    return f"{name} {command}".strip()


#: OSError numbers that mean "this location cannot take the output" (one line, exit 2).
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                errno.ELOOP, errno.EFBIG}

#: Set by ``--verbose`` (and inherited by worker processes): TensorFlow's and TFDS's own
#: start-up lines are shown.
VERBOSE_ENV = "TF_MEDSEG_VERBOSE"


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and TFDS's own log lines (CUDA probing, "
                             "oneDNN notices, dataset preparation), hidden by default")


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """File descriptor 2 (where TensorFlow's C++ start-up logs go, before any log level
    applies) held in a temporary file; replayed if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` with its C++ start-up lines held back ("Could not find cuda
    drivers", CPU feature notices), whenever the first import happens: commands that fail on
    a config error never pay for TensorFlow."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            with _stderr_held():
                run(module)
        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow(verbose: bool = False) -> None:
    """TensorFlow's C++ logs below errors (failed cuInit on a machine without a GPU, oneDNN
    notices), its import-time lines and absl notices are hidden, since they drown the progress
    output and look like failures; ``verbose`` shows them all. A user's own
    ``TF_CPP_MIN_LOG_LEVEL`` is kept."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.pop(VERBOSE_ENV, None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...``: config overrides, parsed as YAML by ``load_config``."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys; values are YAML, e.g. train.epochs=1 "
                             "data.image_size=[64,64]; --set may be repeated")


def figure(result: dict, key: str) -> str:
    """``KEY 0.1234`` for a summary line, ``KEY n/a`` where the value is missing or NaN."""
    value = result.get(key)
    return f"{key} {value:.4f}" if value is not None and value == value else f"{key} n/a"


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
    except OSError as exc:
        # A full disk, a read-only or forbidden location: the outputs were written atomically,
        # so nothing is half-written; say which path and why, in one line.
        if exc.errno not in WRITE_ERRORS:
            raise
        where = exc.filename or "an output"
        print(f"error: cannot write {where}: {exc.strerror or exc}; free space or choose "
              f"another location", file=sys.stderr)
        return 2
    return 0
