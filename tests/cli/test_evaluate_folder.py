"""``python -m tf_medseg evaluate-folder`` as a user runs it: a summary line, and bad input as
one line with exit status 2."""

from tf_medseg.cli import main

from synthetic_volumes import write_nnunet


def test_summary_line_and_one_line_errors(tmp_path, capsys):
    import shutil
    root = write_nnunet(tmp_path / "Dataset001_Tiny", cases=2)
    labels = root / "labelsTr"
    copy = shutil.copytree(labels, tmp_path / "copy")
    assert main(["evaluate-folder", "--labels", str(labels), "--predictions", str(copy),
                 "--output", str(tmp_path / "report")]) == 0  # a copy of the truth scores 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Scored 2 case(s): dice 1.0000, hd95 0.0000, sdice 1.0000, "
                           "apl 0.0000; dice_ball 1.0000")
    assert main(["evaluate-folder", "--labels", str(labels), "--predictions", str(copy),
                 "--output", str(tmp_path / "report"), "--tolerance-mm", "0.5"]) == 0
    import json
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["surface_tolerance_mm"] == 0.5 and report["sdice_ball"] == 1.0
    assert main(["evaluate-folder", "--labels", str(labels), "--predictions", str(copy),
                 "--output", str(tmp_path / "report"), "--tolerance-mm", "-1"]) == 2
    assert "--tolerance-mm: each value must be 0 to 100 mm" in capsys.readouterr().err
    for args, message in (
            (["--labels", str(labels)], "give --predictions PRED, or --model MODEL with "
                                        "--images IMAGES"),
            (["--labels", str(tmp_path / "none"), "--predictions", str(labels), "--output",
              str(tmp_path / "r2")], f"--labels {tmp_path / 'none'}: not a folder"),
            (["--labels", str(labels), "--predictions", str(copy), "--output",
              str(labels / "out")], "inside --labels"),
            (["--labels", str(labels), "--predictions", str(labels), "--output",
              str(tmp_path / "r3")], "is --labels: a folder scored against itself")):
        assert main(["evaluate-folder", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and message in err.strip().splitlines()[-1], err
