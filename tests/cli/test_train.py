"""``train.py`` / ``tf-medseg train``: one-line config errors, and the options that do not
combine."""

from tf_medseg.cli import train_main

from conftest import cli


def test_cli_config_error_is_one_line():
    proc = cli("train.py", "--config", "tiny.yaml", "--set", "train.epocs=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: train.epocs: unknown key; did you mean train.epochs? (allowed: "
        + proc.stderr.split("(allowed: ")[1].strip())
    assert "Traceback" not in proc.stderr


def test_folds_tune_and_overwrite_that_do_not_combine(tmp_path, capsys):
    base = ["--config", "tiny.yaml", "--set", f"train.run_dir={tmp_path / 'r'}"]
    assert train_main([*base, "--folds", "all", "--tune"]) == 2
    assert capsys.readouterr().err.startswith("error: --folds: not with --tune")
    assert train_main([*base, "--tune", "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("error: --overwrite: not with --tune")
    assert train_main([*base, "--folds", "7"]) == 2
    assert "--folds: '7' is not 'all' or a fold number from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
