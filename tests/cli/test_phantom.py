"""``tf-medseg phantom``: the built-in data set written in the Kaggle layout, never over a
folder that holds something."""

import pytest

from tf_medseg.cli import phantom_main

from conftest import cli


@pytest.mark.slow
def test_cli_phantom(tmp_path):
    out = tmp_path / "ph"
    proc = cli("-m", "tf_medseg", "phantom", "--out", str(out), "--cases", "1", "--days", "2",
                "--slices", "8")
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.rglob("*.png"))) == 16 and (out / "train.csv").is_file()
    again = cli("-m", "tf_medseg", "phantom", "--out", str(out))
    assert again.returncode == 2 and again.stderr.strip() == (
        f"error: {out} exists and is not an empty folder; choose another --out")
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("args, message", [(["--cases", "0"], "--cases must be from 1"),
                                           (["--seed", "-1"], "--seed must be from 0")])
def test_bad_numbers_are_one_line(tmp_path, capsys, args, message):
    assert phantom_main(["--out", str(tmp_path / "p"), *args]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "p").exists()
