"""``serve-dicom``'s command line: its options, and bad ones refused in one line before the
model is loaded or a port is opened."""

from tf_medseg.cli.serve_dicom import serve_dicom_main


def test_bad_options_are_one_line(tmp_path, capsys):
    for args, message in (
            (["--send-to", "TPS@host"], "--send-to TPS@host: expected AE@HOST:PORT"),
            (["--port", "0"], "--port 0: must be 1-65535"),
            (["--ae-title", "A_TITLE_LONGER_THAN_16"], "an AE title has 1 to 16 characters")):
        code = serve_dicom_main(["--model", str(tmp_path / "none"), "--output",
                                 str(tmp_path / "node"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "node").exists()


def test_the_node_never_writes_into_its_model(tiny_export, capsys):
    code = serve_dicom_main(["--model", str(tiny_export), "--output", str(tiny_export / "node")])
    err = capsys.readouterr().err
    assert code == 2 and "--output" in err and "inside --model" in err, err
    assert not (tiny_export / "node").exists()
