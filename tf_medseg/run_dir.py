"""The run directory's safety rules: nothing a user made is lost to a rerun.

* A run folder holds only what tf_medseg writes (:data:`OURS`); a folder with anything else in
  it (a project folder, a data folder, ``train.run_dir=.``) is refused.
* One process at a time: :class:`RunLock` (``.lock``, an ``flock`` the system drops when the
  process dies, so a stale lock of a killed run is simply taken over).
* A finished run (``metrics.json`` and no backup) is never replaced without ``--overwrite``;
  an unfinished one with a backup is resumed, after checking that the config still means the
  same weights (:data:`RESUMABLE_KEYS` are the only keys that may change).
* ``--overwrite`` moves the earlier run's outputs into ``previous/`` and removes that folder
  only once the new run's outputs are complete: a crash of the new run leaves the old one
  whole in ``previous/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

from tf_medseg.errors import ConfigError, MedsegError
from tf_medseg.files import PARTIAL, check_output_path

LOCK = ".lock"
PREVIOUS = "previous"
# What a training run writes (moved into previous/ by --overwrite).
BUDGET = "budget.json"  # train.max_minutes: the epochs it fixed (a resumed run keeps them)
OUTPUTS = ("config.yaml", "runtime.json", BUDGET, "logs", "checkpoints", "history.csv",
           "metrics.json", "saved_model", "evaluation")
OURS = (*OUTPUTS, "tuning", PREVIOUS, LOCK, "cv", "folds.json", "ensemble")  # --folds

# Keys that may differ when a run is resumed: they change how long or how loudly it trains,
# or what is written after it, not what its weights mean (the learning rate and clipping: to
# continue after a NaN loss with gentler steps). Every other key must match.
RESUMABLE_KEYS = ("train.learning_rate", "train.clipnorm", "train.epochs", "train.max_minutes",
                  "train.val_steps",
                  "train.early_stopping",
                  "train.run_dir", "train.overlay_slices", "train.keep", "train.strategy",
                  "train.monitor", "train.deterministic", "data.data_dir", "data.cache",
                  "export.saved_model", "predict.tta", "predict.mirror_axes", "eval", "tune")


def flat(config_dict: dict) -> dict:
    """{"section.key": value} of a config's dict."""
    return {f"{section}.{key}": value for section, keys in config_dict.items()
            if isinstance(keys, dict) for key, value in keys.items()}


def identity(config, policy: str) -> dict:
    """What a backup's weights mean: every key but :data:`RESUMABLE_KEYS`, with the precision
    policy as resolved on this machine."""
    keys = {k: v for k, v in flat(config.to_dict()).items()
            if k not in RESUMABLE_KEYS and k.split(".")[0] not in RESUMABLE_KEYS}
    keys["train.precision"] = policy
    return keys


def read_json(path: Path, what: str, fix: str) -> dict:
    """A JSON object from ``path``, or a one-line error naming it and what to do."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MedsegError(f"{path}: damaged {what} ({str(exc).splitlines()[0][:80]}); "
                          f"{fix}") from None
    if not isinstance(value, dict):
        raise MedsegError(f"{path}: damaged {what} (not a JSON object); {fix}")
    return value


def check_identity(path: Path, ours: dict, run_dir: Path) -> None:
    """The backup's ``identity.json`` against this config: one line naming the first key
    that differs (keys an older backup did not record are not compared)."""
    fix = (f"delete {path.parent} to start over (or rerun with --overwrite, or use another "
           f"train.run_dir)")
    theirs = read_json(path, "backup identity", fix)
    if "model" in theirs and isinstance(theirs["model"], dict):  # written by tf_medseg < 0.14
        theirs = {**{k: v for k, v in theirs.items() if k != "model"},
                  **{f"model.{k}": v for k, v in theirs["model"].items()}}
    for key in sorted(theirs):
        if key in ours and ours[key] != theirs[key]:
            raise ConfigError(
                f"{key}: {run_dir} holds an unfinished run with {key} {theirs[key]!r}, this "
                f"config has {ours[key]!r}; rerun with the same value to resume, or add "
                f"--overwrite to start over (the earlier run is kept until the new one "
                f"finishes)")


class RunLock:
    """An exclusive lock on a run folder (``RUN_DIR/.lock``, holding the owner's pid, host
    and command). A second process stops at once with one line naming the owner; the lock of a
    process that died is released by the system and taken over."""

    def __init__(self, run_dir: Path, elsewhere: str = "use another train.run_dir"):
        self.path, self.file, self.elsewhere = run_dir / LOCK, None, elsewhere

    def acquire(self) -> None:
        if fcntl is None:
            return
        for _ in range(5):  # the lock file may be removed by its owner as we open it
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if os.path.islink(self.path):
                    raise MedsegError(f"{self.path}: a symlink where the run's lock belongs; "
                                      f"remove it (its target is left alone)") from None
                raise MedsegError(f"{self.path}: cannot create the run's lock "
                                  f"({exc.strerror})") from None
            f = open(fd, "r+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = f.read().strip() or "another process"
                f.close()
                raise MedsegError(f"{self.path.parent}: in use by {owner}; wait for it to "
                                  f"finish (or stop it), or {self.elsewhere}") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                f.seek(0)
                f.truncate()
                command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:60]
                f.write(f"process {os.getpid()} on {socket.gethostname()} ({command}..., "
                        f"since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
                f.flush()
                self.file = f
                return
            f.close()
        raise MedsegError(f"{self.path}: could not take the lock; try again")

    def release(self) -> None:
        if self.file is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.file.close()
            self.file = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that tf_medseg does not write."""
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name not in OURS and not p.name.startswith(PARTIAL)
                  and not (p.name.startswith("fold_") and p.name[5:].isdigit()))


def check_run_dir(run_dir: str, option: str = "train.run_dir") -> Path:
    """``train.run_dir`` as a path, after refusing one that cannot be a run folder: empty,
    the root, a file, or a folder holding files tf_medseg did not write."""
    path = check_output_path(run_dir, option, "folder")
    if path.is_dir():
        foreign = foreign_entries(path)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(f"{option}: {path} holds files tf_medseg did not write "
                              f"({shown}); use a new or empty folder")
    return path


class RunDir:
    """The run folder of one training: checked, locked and prepared by :meth:`claim`."""

    def __init__(self, path: Path):
        self.path = path
        self.backup = path / "checkpoints" / "backup"
        self.lock = RunLock(path)
        self.created = not path.exists()

    def has_backup(self) -> bool:
        """A usable epoch backup: TensorFlow's ``checkpoint`` file names one whose index is
        there (an interrupted first save leaves none)."""
        try:
            text = (self.backup / "checkpoint").read_text()
        except (OSError, UnicodeDecodeError):
            return False
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model_checkpoint_path":
                name = Path(value.strip().strip('"')).name
                return bool(name) and (self.backup / (name + ".index")).is_file()
        return False

    def finished(self) -> bool:
        return (self.path / "metrics.json").is_file() and not self.has_backup()

    def outputs(self) -> list[Path]:
        return [self.path / n for n in OUTPUTS if (self.path / n).exists()
                or (self.path / n).is_symlink()]

    def valuable(self) -> list[str]:
        """Outputs of an earlier run that a fresh start would lose."""
        names = ("metrics.json", "saved_model", "history.csv", "checkpoints/best.weights.h5")
        return [n for n in names if (self.path / n).exists()]

    def claim(self, identity: dict, overwrite: bool) -> str:
        """Lock the folder and decide, changing nothing yet: "resume", "fresh" or "replace"
        (:meth:`begin` acts on it once the data and the model are ready).

        Raises:
            MedsegError: the folder is in use, holds a finished run (without ``overwrite``),
                or an unfinished run of another config (without ``overwrite``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self.mode = self._decide(identity, overwrite)
        except BaseException:
            self.release()
            raise
        return self.mode

    def begin(self) -> None:
        """Make room for the run :meth:`claim` decided on: a replaced run is moved into
        ``previous/``; the leftovers of a run killed in its first epoch are removed, and so
        are the temporaries (``.partial-*``) a killed run left (the lock is held: no other
        process is writing them)."""
        remove_partials(self.path)
        if self.mode == "replace":
            self._move_aside()
        elif self.mode == "fresh":
            for path in self.outputs():
                _remove(path)

    def precheck(self, overwrite: bool) -> None:
        """The refusals of :meth:`claim` that need no lock and no TensorFlow (a finished run
        without ``overwrite``), read-only: the command line calls it before importing
        TensorFlow, so that a rerun over a finished run stops at once."""
        if self.path.is_dir():
            self._decide(None, overwrite)

    def _decide(self, identity: dict | None, overwrite: bool) -> str:
        if self.has_backup() and not overwrite:
            saved = self.backup / "identity.json"
            if saved.exists() and identity is not None:
                check_identity(saved, identity, self.path)
            return "resume"
        valuable = self.valuable()
        if valuable and not overwrite:
            what = ("a finished run" if self.finished() else
                    "an interrupted run with no backup to resume from")
            raise MedsegError(
                f"{self.path} holds {what} ({', '.join(valuable)}); add --overwrite to replace "
                f"it (it is kept in {PREVIOUS}/ until the new run finishes), or set "
                f"train.run_dir to another folder")
        if overwrite and (valuable or self.has_backup()):
            return "replace"
        return "fresh"  # perhaps leftovers of a run killed in its first epoch: nothing of value

    def _move_aside(self) -> None:
        previous = self.path / PREVIOUS
        if previous.exists():
            # An earlier --overwrite did not finish: previous/ holds the last complete run,
            # unless the folder now holds a newer complete one.
            if not self.finished():
                print(f"Discarding the unfinished run in {self.path} (--overwrite); "
                      f"{previous} still holds the run before it", flush=True)
                for path in self.outputs():
                    _remove(path)
                return
            _remove(previous)
        previous.mkdir()
        for path in self.outputs():
            os.replace(path, previous / path.name)
        print(f"Moved the earlier run into {previous} (removed when this run's outputs are "
              f"complete)", flush=True)

    def completed(self) -> None:
        """The new run's outputs are complete: the replaced run goes."""
        previous = self.path / PREVIOUS
        if previous.exists():
            _remove(previous)
            print(f"Removed the replaced run ({previous})", flush=True)

    def release(self) -> None:
        self.lock.release()
        if self.created:
            try:
                self.path.rmdir()  # only if the run never wrote anything
            except OSError:
                pass


def remove_partials(folder: Path) -> None:
    """Remove the temporaries (``.partial-*``) a killed process left in ``folder``; call it
    only with the folder's lock held (no other process is writing them)."""
    from tf_medseg.files import PARTIAL
    for stale in sorted(folder.glob(PARTIAL + "*")):
        _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ------------------------------------------------------- cross-validation run folders

def fold_dir(root: Path, fold: int) -> Path:
    return root / f"fold_{fold}"


def is_cv_run(path: Path) -> bool:
    """A cross-validation run folder (holds fold_K/ folders)."""
    return path.is_dir() and any(p.is_dir() and p.name.startswith("fold_") and
                                 p.name[5:].isdigit() for p in path.iterdir())


def cv_exports(root: Path) -> list[Path]:
    """The fold exports of a cross-validation folder, in fold order (one-line error if a fold
    has none yet)."""
    folds = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("fold_")
                    and p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
    missing = [p for p in folds if not (p / "saved_model" / "saved_model.pb").is_file()]
    if missing:
        raise MedsegError(f"{missing[0]}: no export yet (an unfinished fold); rerun "
                          f"train.py with --folds to finish the cross-validation")
    return [p / "saved_model" for p in folds]


def check_records_outside_runs(data_dir: str, run_dir: Path) -> None:
    """``data.data_dir`` (the records' cache) outside every run folder: records inside one
    would go with it (``--overwrite`` moves a run aside) and make it impossible to replace.
    A run folder is recognised by its ``runtime.json`` beside ``config.yaml``."""
    from tf_medseg.files import is_within
    records = Path(os.path.realpath(os.path.expanduser(data_dir)))
    if is_within(records, run_dir):
        raise ConfigError(f"data.data_dir {data_dir}: inside train.run_dir {run_dir}; keep "
                          f"the records outside the run folder (e.g. the default "
                          f"~/tensorflow_datasets)")
    for folder in (records, *records.parents):
        if (folder / "runtime.json").is_file() and (folder / "config.yaml").is_file():
            raise ConfigError(f"data.data_dir {data_dir}: inside the run folder {folder}; "
                              f"keep the records outside run folders")
