"""Writing files so that nothing half-written is ever trusted and nothing else is hit.

Every output of tf_medseg goes through :func:`atomic_open` (or :func:`atomic_write`,
:func:`atomic_dir`): the data is written to a temporary file created *exclusively* in the target
folder (``O_CREAT | O_EXCL``: a symlink planted under that name is never followed), flushed to
disk, given the permissions an ordinary new file gets (the umask's), then renamed over the
target. A file that exists is complete; a symlink at the target is replaced, never written
through, so the file behind it is untouched.

:func:`check_outside` keeps outputs off inputs: an output equal to, or inside, an input folder
is refused before any work.

Names that come from data (a series' UID, a case's name, an entry of an earlier manifest) name a
file or folder only through :func:`plain_name` (one path component, nothing that climbs out of
the folder) and, for DICOM UIDs, :func:`uid_problem` (digits and dots, at most 64 characters):
the one rule predict, the DICOM node, the training sources and the writers share.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from tf_medseg.errors import MedsegError

PARTIAL = ".partial-"  # prefix of every temporary name (never trusted, safe to remove)
# A DICOM UID as it may name a file: digits in components separated by dots (PS3.5 9.1; leading
# zeros, which the standard forbids but archives hold, are let through: they name nothing
# dangerous), at most 64 characters.
UID = re.compile(r"[0-9]+(\.[0-9]+)*")
MAX_NAME = 255  # bytes in one path component (ext4, XFS, APFS, NTFS in UTF-16 units)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets from ``open``/``mkdir`` under the umask
    (``mkstemp``/``mkdtemp`` give 0600/0700, too tight for shared outputs)."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def _new_beside(path: Path, suffix: str = "") -> Iterator[tuple[int, str]]:
    """(descriptor, name) of a file created exclusively beside ``path``; on a clean exit it
    gets ordinary permissions and is renamed to ``path``, on an error removed."""
    fd, tmp = tempfile.mkstemp(prefix=PARTIAL + path.name + "-", suffix=suffix,
                               dir=path.parent)
    try:
        yield fd, tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a new temporary file beside ``path`` for writing; on a clean exit it is synced
    and renamed to ``path``, on an error removed (``path`` stays as it was)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise MedsegError(f"{path}: is a folder; give a file name")
    with _new_beside(path) as (fd, _), os.fdopen(fd, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def temporary_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A new, exclusively created file name beside ``path`` for a writer that wants a file
    name (Keras weights, nibabel); renamed to ``path`` on a clean exit, removed on an error."""
    with _new_beside(Path(path), suffix) as (fd, tmp):
        os.close(fd)
        yield Path(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A new temporary folder beside ``path`` to fill; on a clean exit it replaces ``path``
    (an earlier folder there is removed only then), on an error it is removed."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL + path.name + "-", dir=path.parent))
    try:
        yield tmp
        for folder, dirs, files in os.walk(tmp):
            os.chmod(folder, default_mode(directory=True))
            for name in files:
                os.chmod(os.path.join(folder, name), default_mode())
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            old = Path(tempfile.mkdtemp(prefix=PARTIAL + path.name + "-old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_png(path: str | os.PathLike, image) -> None:
    """Write an array (grey or OpenCV's BGR order) as PNG, atomically."""
    import cv2
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write(path, data.tobytes())


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True if ``path`` is ``folder`` or lies inside it (symlinks resolved)."""
    path = os.path.realpath(os.path.expanduser(path))
    folder = os.path.realpath(os.path.expanduser(folder))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outside(output: str | os.PathLike, option: str, inputs: dict) -> None:
    """Refuse (one line) an ``output`` that is, or lies inside, one of the ``inputs``
    ({option name: folder}) or contains one of them."""
    for name, folder in inputs.items():
        if folder is None:
            continue
        if is_within(output, folder):
            raise MedsegError(f"{option} {output}: inside {name} {folder}; write outputs "
                              f"outside the input folder")
        if Path(folder).expanduser().exists() and is_within(folder, output):
            raise MedsegError(f"{option} {output}: holds {name} {folder}; write outputs "
                              f"outside the input folder")


def check_output_path(path: str | os.PathLike, option: str, kind: str) -> Path:
    """A path given for an output ``kind`` ("file" or "folder"): one line if it is empty,
    the file-system root, or of the other kind."""
    text = os.fspath(path)
    if not text.strip():
        raise MedsegError(f"{option}: empty; give a {kind} name")
    resolved = Path(text).expanduser()
    if os.path.realpath(resolved) == os.path.realpath(os.sep):
        raise MedsegError(f"{option} {text}: the file-system root; give a {kind} of its own")
    if kind == "file" and resolved.is_dir():
        raise MedsegError(f"{option} {text}: is a folder; give a file name")
    if kind == "folder" and resolved.exists() and not resolved.is_dir():
        raise MedsegError(f"{option} {text}: is a file; give a folder")
    if kind == "file" and resolved.parent.exists() and not resolved.parent.is_dir():
        raise MedsegError(f"{option} {text}: {resolved.parent} is a file, not a folder")
    return resolved


def regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (a symlink to one counts); False for folders, FIFOs, devices,
    sockets, and missing files: those are never opened as input."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def uid_problem(value) -> str | None:
    """Why ``value`` (a received UID) is not a DICOM UID that may name a file, or None."""
    text = "" if value is None else str(value)
    if not text:
        return "is empty"
    if len(text) > 64 or not UID.fullmatch(text):
        shown = text if len(text) <= 70 else text[:67] + "..."
        return f"{shown!r} is not a UID (digits and dots, at most 64 characters)"
    return None


def name_problem(name) -> str | None:
    """Why ``name`` may not name an entry of a folder (a value from data, a manifest or a
    peer), or None: it must be one plain path component, not hidden, not a temporary."""
    if not isinstance(name, str) or not name:
        return "is empty" if name == "" else f"{name!r} is not a name"
    shown = repr(name if len(name) <= 70 else name[:67] + "...")
    if "/" in name or "\\" in name or "\0" in name:
        return f"{shown} holds a path separator or NUL"
    if name.startswith("."):
        return f"{shown} starts with a dot (., .. and hidden names are never written)"
    if any(ord(c) < 32 for c in name):
        return f"{shown} holds a control character"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return f"{shown} is longer than {MAX_NAME} bytes"
    return None


def plain_name(name, what: str) -> str:
    """``name`` if it may name an entry of a folder (:func:`name_problem`); a one-line
    MedsegError naming ``what`` otherwise."""
    problem = name_problem(name)
    if problem:
        raise MedsegError(f"{what}: the name {problem}; it would name a file: refused")
    return name
