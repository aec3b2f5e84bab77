"""The command table: ``python -m tf_medseg COMMAND`` and ``--help``."""

from tf_medseg.cli import commands


def test_every_command_has_a_summary_and_unknown_ones_are_refused(capsys):
    assert set(commands.COMMANDS) == set(commands.SUMMARIES) == {
        "train", "phantom", "evaluate", "evaluate-folder", "predict", "export-ensemble",
        "plan", "benchmark", "serve-dicom"}
    assert commands.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in commands.COMMANDS)
    assert commands.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert commands.main([]) == 2
