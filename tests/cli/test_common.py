"""What every command shares: its program name, ``--set``, quiet TensorFlow, and one-line errors
with exit status 2."""

import argparse

import pytest

from tf_medseg.cli import common
from tf_medseg.errors import ConfigError


def test_run_command_turns_user_errors_into_one_line(capsys):
    def fail():
        raise ConfigError("train.epochs: must be >= 1, got 0")
    assert common.run_command(fail) == 2
    assert capsys.readouterr().err == "error: train.epochs: must be >= 1, got 0\n"

    def interrupted():
        raise KeyboardInterrupt
    assert common.run_command(interrupted) == 130
    assert common.run_command(lambda: None) == 0

    def full():
        import errno
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/history.csv")
    capsys.readouterr()
    assert common.run_command(full) == 2
    assert capsys.readouterr().err == (
        "error: cannot write /data/run/history.csv: No space left on device; free space or "
        "choose another location\n")

    def other():
        raise FileNotFoundError(2, "No such file")
    with pytest.raises(FileNotFoundError):  # a bug, not a full disk: the traceback stays
        common.run_command(other)


def test_set_argument_and_program_name(monkeypatch):
    parser = argparse.ArgumentParser()
    common.add_set_argument(parser)
    args = parser.parse_args(["--set", "train.epochs=1", "data.image_size=[64,64]"])
    assert args.set == ["train.epochs=1", "data.image_size=[64,64]"]
    assert parser.parse_args([]).set == []
    repeated = parser.parse_args(["--set", "plan.dims=3", "--set", "train.epochs=2"])
    assert repeated.set == ["plan.dims=3", "train.epochs=2"]
    assert parser.parse_args([]).set == []
    monkeypatch.setattr("sys.argv", ["/usr/bin/tf-medseg"])
    assert common.prog("predict") == "tf-medseg predict"
    monkeypatch.setattr("sys.argv", ["-m"])
    assert common.prog("predict") == "python -m tf_medseg predict"


def test_quiet_tensorflow_keeps_a_users_choice(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    common.quiet_tensorflow()
    import os
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def _start(*flags):
    """A fresh process as a command starts it: TensorFlow imported and its devices listed."""
    import os
    import subprocess
    import sys
    code = ("import sys; from tf_medseg.cli.common import quiet_tensorflow; "
            "quiet_tensorflow('--verbose' in sys.argv); import tensorflow as tf; "
            "tf.config.list_physical_devices(); import tensorflow_datasets")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", common.VERBOSE_ENV)}
    return subprocess.run([sys.executable, "-c", code, *flags], capture_output=True,
                          text=True, env=env, timeout=120)


def test_a_start_prints_no_cuda_or_onednn_lines_and_verbose_brings_them_back():
    quiet = _start()
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = _start("--verbose")
    assert loud.returncode == 0
    if "cuda" not in loud.stderr.lower():  # a TensorFlow build that does not probe CUDA
        pytest.skip("this TensorFlow prints no CUDA lines")
    assert "cuda" in loud.stderr.lower()


def test_a_failing_import_shows_what_was_held(tmp_path, monkeypatch, capfd):
    import sys
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\nos.write(2, b'held line\\n')\nraise ImportError('broken build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setitem(sys.modules, "absl.logging", __import__("absl.logging").logging)
    sys.meta_path.insert(0, common._QuietImport())
    with pytest.raises(ImportError, match="broken build"):
        __import__("tensorflow")
    assert "held line" in capfd.readouterr().err
