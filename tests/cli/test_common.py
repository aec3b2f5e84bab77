"""What every command shares: its program name, ``--set``, quiet TensorFlow, and one-line errors
with exit status 2."""

import argparse

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


def test_set_argument_and_program_name(monkeypatch):
    parser = argparse.ArgumentParser()
    common.add_set_argument(parser)
    args = parser.parse_args(["--set", "train.epochs=1", "data.image_size=[64,64]"])
    assert args.set == ["train.epochs=1", "data.image_size=[64,64]"]
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
