"""Shared fixtures: tiny phantoms, the real sample (skipped where absent), tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Records are read and the phantom rendered in the calling process (TF_MEDSEG_WORKERS=0, here
# and in the processes tests start): the suite's scans are a few and small, and spawning a
# worker costs about a second of importing each time, some 130 workers a run. Worker processes
# are tested where they are the point: tests/datasets/test_reading.py, test_gi_phantom.py,
# test_nnunet.py and test_dicom.py, tests/data/test_phantom.py and test_workers.py.
os.environ.setdefault("TF_MEDSEG_WORKERS", "0")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "uwmgi_sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real competition sample in ../shared (absent on a user's machine)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"real sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture
def nnunet(tmp_path) -> Path:
    """A 2-case synthetic nnU-Net v2 raw folder (two channels, ball and box), to break."""
    from synthetic_volumes import write_nnunet
    return write_nnunet(tmp_path / "Dataset001_Bad", cases=2)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    """4 cases x 2 days x 12 slices, both image sizes, in the Kaggle layout."""
    from tf_medseg.data.phantom import write_phantom
    return write_phantom(tmp_path_factory.mktemp("phantom") / "kaggle", cases=4, days=2,
                         slices=12, seed=3)


SHARED_RECORDS = "TF_MEDSEG_TEST_RECORDS"  # environment: the session's shared data.data_dir


@pytest.fixture(scope="session", autouse=True)
def shared_records(tmp_path_factory, worker_id) -> Path:
    """One data.data_dir for the whole session (its pytest-xdist workers and the processes
    tests start), so that the tiny phantom's records are built once, by the first test that
    needs them (the builder's lock makes another process wait for it); a test that is about
    building records takes its own (``own_records=True``)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if worker_id != "master" else base) / "tfds_shared"
    folder.mkdir(exist_ok=True)
    os.environ[SHARED_RECORDS] = str(folder)
    return folder


# The shared tiny run (and the cross-validation and copies made of it) keeps its best epoch by
# the whole-scan score, as a real run does (tiny.yaml itself monitors val_dice, to stay quick).
TINY_RUN = ("train.monitor=val_score",)


def tiny_overrides(tmp_path: Path, own_records: bool = False) -> list[str]:
    """configs/tiny.yaml (the shared smoke run: 32x32 px, base_filters 4, depth 2, 2 epochs)
    with its run folder in ``tmp_path``, and its records in the session's shared folder (or,
    ``own_records``, in ``tmp_path`` too)."""
    data_dir = tmp_path / "tfds" if own_records else Path(os.environ[SHARED_RECORDS])
    return [f"data.data_dir={data_dir}", f"train.run_dir={tmp_path / 'run'}"]


def tiny_train_args(tmp_path: Path, *extra: str, own_records: bool = False) -> list[str]:
    """``train.py`` arguments for a tiny run (see :func:`tiny_overrides`)."""
    return ["train.py", "--config", "tiny.yaml", "--set",
            *tiny_overrides(tmp_path, own_records), *extra]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS`` run from the project folder, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def cli_here(*args: str) -> subprocess.CompletedProcess:
    """:func:`cli`'s ``-m tf_medseg COMMAND ...`` or ``train.py ...`` run by the same entry
    point in this process, which has TensorFlow imported already (a new interpreter spends
    about nine seconds importing it): its exit status, stdout and stderr as the process would
    give them, an uncaught exception as a traceback on stderr and status 1. For commands whose
    test is about what they answer, not about being a process (a kill, a fresh interpreter's
    start-up lines, runtime settings made once per process)."""
    import contextlib
    import io
    import traceback

    from tf_medseg.cli import main, train_main
    if args[:2] == ("-m", "tf_medseg"):
        entry, argv = main, list(args[2:])
    elif args[:1] == ("train.py",):
        entry, argv = train_main, list(args[1:])
    else:
        raise ValueError(f"not a tf_medseg command line: {args}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = entry(argv)
        except SystemExit as exc:  # argparse's usage errors, --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # noqa: BLE001 - what the interpreter would print
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess([sys.executable, *args], code, out.getvalue(),
                                       err.getvalue())


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """A tiny untrained 2.5D export of the Kaggle layout's organs: for what is tested around a
    model (reading, batching, writing), not its figures."""
    from tf_medseg.config import load_config
    from tf_medseg.export.saved_model import export_saved_model
    tmp = tmp_path_factory.mktemp("export")
    config = load_config("tiny.yaml", tiny_overrides(tmp))
    return export_saved_model(network(config), kaggle_contract(config), tmp / "saved_model")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny finished run, shared by the tests that only read it: (config, run folder,
    the metrics train() returned)."""
    from tf_medseg.config import load_config
    from tf_medseg.training import train
    tmp = tmp_path_factory.mktemp("e2e")
    config = load_config("tiny.yaml", [*tiny_overrides(tmp), *TINY_RUN])
    result = train(config, verbose=0)
    return config, tmp / "run", result


@pytest.fixture(scope="session")
def tiny_cv(tiny_run, tmp_path_factory):
    """A tiny two-fold cross-validation (``--folds all``) whose fold 0 is the shared tiny run
    (the same config), its process killed (SIGKILL) between the folds (temporaries planted as
    a kill while writing cv/ leaves them) and rerun in-process to the end: a dict with
    ``config``, ``run`` (the folder), ``report`` (cv/metrics.json), ``killed`` and
    ``resumed`` (the two outputs), ``fold0_before`` (fold_0/metrics.json at the kill) and
    ``returncode``."""
    import contextlib
    import io
    import shutil
    import signal

    from tf_medseg.config import load_config
    from tf_medseg.workflows.cv import cross_validate
    _, tiny_dir, _ = tiny_run
    tmp = tmp_path_factory.mktemp("cv")
    run = tmp / "run"
    shutil.copytree(tiny_dir, run / "fold_0", ignore=shutil.ignore_patterns(".lock"))
    overrides = [*tiny_overrides(tmp), *TINY_RUN]  # the tiny run's config, records shared
    proc = subprocess.Popen([sys.executable, "train.py", "--config", "tiny.yaml", "--set",
                             *overrides, "--folds", "all"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "=== Fold 1 (2 of 2)" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    fold0 = (run / "fold_0" / "metrics.json").read_bytes()
    # What a kill while cv/ and folds.json were written leaves (removed by the rerun).
    (run / ".partial-cv-x1y2").mkdir()
    (run / ".partial-cv-x1y2" / "metrics.json").write_text("{}")
    (run / ".partial-folds.json-z3").write_text("{")
    config = load_config("tiny.yaml", overrides)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = cross_validate(config, [0, 1])
    return {"config": config, "run": run, "report": report, "killed": "".join(lines),
            "resumed": out.getvalue(), "fold0_before": fold0, "returncode": proc.returncode}


# ------------------------------------------------------------ models without a data set
# For tests of a model alone, as the experiment would make it for the Kaggle layout's three
# overlapping organs (sigmoid head), without building records.

def network(config, outputs: int = 3, modalities: int = 1):
    """The configured network for ``outputs`` logit channels (uncompiled)."""
    from tf_medseg.models import build_model
    d = config.data
    return build_model(config.model, (*d.image_size, modalities * len(d.context)), outputs)


def compiled(config, policy: str = "float32", jit: bool = False, steps: int = 10,
             head: str = "sigmoid", outputs: int = 3):
    """:func:`network` built under ``policy`` and compiled (as ``Experiment.model``)."""
    from tf_medseg.training.optim import building, compile_model
    with building(policy, config.train.seed):
        return compile_model(network(config, outputs), config.train, head, jit, steps,
                             metric="competition")


def kaggle_trainer(model, config, strategy=None):
    """The trainer of a model of the three organs (as ``Experiment.trainer``)."""
    import tensorflow as tf

    from tf_medseg.data.sources.kaggle import CLASSES
    from tf_medseg.training.loop import Trainer
    return Trainer(model, strategy or tf.distribute.get_strategy(), CLASSES, "sigmoid",
                   threshold=config.train.threshold,
                   freeze_encoder_epochs=config.train.freeze_encoder_epochs)


def kaggle_contract(config):
    """The serving contract of a model of the Kaggle layout's 16-bit slices."""
    from tf_medseg.data import normalization
    from tf_medseg.data.sources.kaggle import LABELS
    from tf_medseg.export.contract import Contract
    d = config.data
    return Contract(labels=normalization.resolve(LABELS, d.normalization, None),
                    head="sigmoid", context=tuple(d.context), input_size=tuple(d.image_size),
                    image_dtype="uint16", threshold=config.train.threshold)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``--dist loadgroup``, pytest.ini): the tests that read one trained
    fixture run on one worker, so that it is trained once: the shared tiny run and the tiny
    cross-validation made from it (about four minutes of tests: the other workers take the
    rest), the DICOM clinic's ball model.

    The slow tests first (in their order): the workers take the next test as they finish, so
    that the run ends on short tests, not on one worker's long one while the others wait (a
    minute of the run, measured with every slow test in its file's place)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "tiny_cv" in names or "tiny_run" in names:
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
        elif "ball_model" in names:
            item.add_marker(pytest.mark.xdist_group("ball_model"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
