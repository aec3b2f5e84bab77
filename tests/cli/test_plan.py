from tf_medseg.cli.commands import main

from synthetic_volumes import write_folder


def test_plan_prints_reasons_and_writes_the_config(tmp_path, capsys):
    root = write_folder(tmp_path / "folder")
    args = ["plan", "--config", "tiny.yaml", "--set", "data.source=folder", f"data.root={root}",
            f"data.data_dir={tmp_path / 'tfds'}", "data.num_folds=2"]
    out = tmp_path / "plans.yaml"
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "data.image_size: [32, 28]" in printed and "2D configuration" in printed
    assert f"train it with: python train.py --config {out}" in printed and out.is_file()
    assert main([*args, "--out", str(tmp_path)]) == 2  # a folder
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --out") and "folder" in error and "\n" not in error


def test_plan_is_listed():
    from tf_medseg.cli.commands import SUMMARIES
    assert "plan" in SUMMARIES
