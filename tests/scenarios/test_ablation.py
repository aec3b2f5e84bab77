"""benchmarks/ablation.py: config variants trained on the same folds into one table, resumed
where a rerun finds folds done, bad variant files refused in one line."""

from __future__ import annotations

import json

import pytest

from benchmarks import ablation
from tf_medseg.errors import MedsegError

from conftest import tiny_overrides


@pytest.mark.slow
def test_two_variants_on_one_fold_make_one_table(tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text("base: []\nmirrored:\n  - augment.flip_ud=0.5\n  - predict.tta=flips\n")
    out = tmp_path / "ablation"
    argv = ["--config", "tiny.yaml", "--out", str(out), "--folds", "1", "--variants",
            str(variants), "--set", *tiny_overrides(tmp_path), "train.epochs=1",
            "train.overlay_slices=0", "export.saved_model=false"]
    assert ablation.main(argv) == 0
    table = json.loads((out / "ablation.json").read_text())
    assert set(table["variants"]) == {"base", "mirrored"}
    for name in ("base", "mirrored"):
        row = table["variants"][name]["1"]
        assert 0 <= row["dice"] <= 1 and row["seconds"] > 0 and "dice_stomach" in row
        assert (out / name / "fold_1" / "metrics.json").is_file()
    # the mirrored variant's runs serve with the mirrors (its config, resolved)
    assert "tta: flips" in (out / "mirrored" / "fold_1" / "config.yaml").read_text()
    md = (out / "ablation.md").read_text().splitlines()
    assert md[0].startswith("| variant | folds | large_bowel | small_bowel | stomach |")
    assert md[2].startswith("| base | 1 |") and md[3].startswith("| mirrored | 1 |")
    delta = table["variants"]["mirrored"]["1"]["dice"] - table["variants"]["base"]["1"]["dice"]
    assert f"{delta:+.3f}" in md[3]
    capsys.readouterr()
    assert ablation.main(argv) == 0  # done already: nothing trains again
    assert capsys.readouterr().out.count("in " + str(out / "ablation.json") + " already") == 2


def test_variant_files_are_checked_in_one_line(tmp_path):
    assert list(ablation.read_variants(None)) == ["base", "deep_supervision", "mirroring",
                                                  "nnunet_blocks", "all"]
    bad = tmp_path / "v.yaml"
    for text, message in (("[1, 2]", "must map variant names"),
                          ("base: model.depth=3\n", "entry 'base' must be a name"),
                          ("'a b': []\n", "entry 'a b' must be a name"),
                          ("x: [1\n", "cannot be read as YAML")):
        bad.write_text(text)
        with pytest.raises(MedsegError, match=message) as info:
            ablation.read_variants(str(bad))
        assert "\n" not in str(info.value) and str(bad) in str(info.value)
