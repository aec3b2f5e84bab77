"""``python -m tf_medseg predict`` as a user runs it: bad input is one line, exit status 2, and
no submission is left behind."""

import cv2
import numpy as np

from tf_medseg.cli import main


def test_the_summary_line(tiny_export, sample_dir, tmp_path, capsys):
    folder = sample_dir / "png16" / "unidentified"
    assert main(["predict", "--model", str(tiny_export), "--input", str(folder), "--output",
                 str(tmp_path / "s.csv")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Predicted 3 slices of 1 scan(s) in ") and "9 rows in" in line


def test_bad_input_is_one_line_and_writes_no_submission(tiny_export, tmp_path, capsys):
    def run(*args):  # the CLI in this process: exit status and last line of stderr
        capsys.readouterr()
        status = main(["predict", *map(str, args)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return status, err.strip().splitlines()[-1]

    folder = tmp_path / "pngs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 50), np.uint16))
    cv2.imwrite(str(folder / "b.png"), np.zeros((40, 60), np.uint16))
    out = tmp_path / "sub.csv"
    assert run("--model", tiny_export, "--input", folder, "--output", out) == (
        2, f"error: {folder / 'b.png'}: the image is 60x40 (WxH) but a.png is 50x40; the "
           f"slices of one scan must share a size")
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))

    colour = np.zeros((40, 50, 3), np.uint8)
    colour[..., 2] = 200
    cv2.imwrite(str(folder / "b.png"), colour)
    assert run("--model", tiny_export, "--input", folder, "--output", out) == (
        2, f"error: {folder / 'b.png'}: a colour image; expected a grayscale MRI slice")
    assert not out.exists()

    for args, message in (
            (("--input", tmp_path / "nothing"), f"--input {tmp_path / 'nothing'}: not a folder"),
            (("--input", tmp_path / "run"), f"--input {tmp_path / 'run'}: not a folder"),
            (("--input", folder, "--threshold", "1.5"),
             "--threshold: must be between 0 and 1 (exclusive), got 1.5")):
        assert run("--model", tiny_export, *args, "--output", out) == (2, f"error: {message}")
    empty = tmp_path / "empty"
    empty.mkdir()
    status, line = run("--model", tiny_export, "--input", empty, "--output", out)
    assert status == 2 and line.startswith(f"error: --input {empty}: no PNG slices found")
    status, line = run("--model", tmp_path, "--input", folder, "--output", out)
    assert status == 2 and "not a tf_medseg SavedModel" in line
