"""The command lines: one-line errors, the phantom command."""

import pytest

from conftest import cli


def test_cli_config_error_is_one_line():
    proc = cli("train.py", "--config", "unet.yaml", "--set", "train.epocs=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: train.epocs: unknown key; did you mean train.epochs? (allowed: "
        + proc.stderr.split("(allowed: ")[1].strip())
    assert "Traceback" not in proc.stderr


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
