"""benchmarks/units.py: a table measured one unit (variant x fold) at a time, each result in
its own file, units already recorded skipped, units that do not fit the minutes left not
started, a variant's other folds trained for the steps its first fold's budget fixed, the
document's table generated from the files alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, tiny_overrides


def units(home, *args, module="benchmarks.units"):
    env = {**os.environ, "TF_MEDSEG_UNITS_DIR": str(home)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_units_are_recorded_skipped_and_reported(tmp_path):
    home = tmp_path / "units"
    home.mkdir()
    common = [o for o in tiny_overrides(tmp_path) if not o.startswith("train.run_dir")]
    (home / "tables.yaml").write_text(yaml.safe_dump({"tiny": {
        "config": "configs/tiny.yaml", "folds": [0, 1],
        "set": [*common, "train.epochs=20", "train.max_minutes=0.05",
                "train.overlay_slices=0", "export.saved_model=false"],
        "variants": {"base": {"set": ["export.saved_model=true"], "minutes": 2},
                     "long": {"minutes": 500},
                     "base_longer": {"set": ["export.saved_model=true", "train.max_minutes=0.15"],
                                     "rate_from": "base", "minutes": 2},
                     "both": {"members": ["base", "base_longer"], "minutes": 1}}}},
        sort_keys=False))
    (home / "measurements.md").write_text(
        "# M\n\nbefore\n<!-- units:tiny -->\nold\n<!-- /units:tiny -->\nafter\n")

    proc = units(home, "run", "tiny", "--folds", "0", "--only", "base", "long",
                 "--budget-minutes", "30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"tiny long fold 0: expected 500 min, \d+ left: not started", proc.stdout)
    rows = {}
    rows["base"] = row = json.loads((home / "results" / "tiny" / "base" / "fold_0.json")
                                    .read_text())
    assert row["variant"] == "base" and row["fold"] == 0 and row["side"] == "ours"
    assert 0 <= row["dice"] <= 1 and "dice_stomach" in row and "hd95" not in row
    assert row["epochs"] >= 1 and row["steps"] == row["epochs"] * row["steps_per_epoch"]
    assert row["budget"]["epochs"] == row["epochs"] and row["minutes"] > 0
    assert len(row["config_digest"]) == 16 and row["machine"]["cores"] >= 1
    assert row["commit"] and "date" in row
    assert not (home / "results" / "tiny" / "long").exists()

    again = units(home, "run", "tiny", "--folds", "0", "--only", "base")
    assert again.returncode == 0 and "==" not in again.stdout  # nothing left to start

    # fold 1 trains the epochs fold 0's budget fixed (no budget of its own)
    other = units(home, "run", "tiny", "--folds", "1", "--only", "base")
    assert other.returncode == 0, other.stderr[-3000:]
    row = json.loads((home / "results" / "tiny" / "base" / "fold_1.json").read_text())
    assert row["budget"] == {**rows["base"]["budget"], "fixed_by_fold": 0}
    assert row["epochs"] == rows["base"]["epochs"] and row["steps"] == rows["base"]["steps"]
    assert not (home / "runs" / "tiny" / "base" / "fold_1" / "budget.json").exists()

    # a longer budget of the same configuration takes base's measured rate: its epochs are
    # fixed before it starts, and its other folds repeat them
    longer = units(home, "run", "tiny", "--folds", "0", "--only", "base_longer")
    made = home / "results" / "tiny" / "base_longer" / "fold_0.json"
    assert longer.returncode == 0 and made.is_file(), (longer.stdout + longer.stderr)[-3000:]
    made = json.loads(made.read_text())
    plan = rows["base"]["budget"]
    outside = max(0.0, plan["budget_minutes"] * 60 - plan["epochs"] * plan["seconds_per_epoch"])
    fits = max(1, int((0.15 * 60 - outside) // plan["seconds_per_epoch"]))
    assert made["budget"]["rate_from"] == {"variant": "base", "fold": 0}
    assert made["budget"]["epochs"] == made["epochs"] == min(20, fits)
    assert made["budget"]["budget_minutes"] == 0.15 and "fixed_by_fold" not in made["budget"]
    assert made["overrides"][-1] == "train.max_minutes=0.15"  # the variant's own settings last
    assert not (home / "runs" / "tiny" / "base_longer" / "fold_0" / "budget.json").exists()

    # an ensemble row trains nothing: it scores the mean of its members' exports of the fold
    both = units(home, "run", "tiny", "--folds", "0", "--only", "both")
    made_both = home / "results" / "tiny" / "both" / "fold_0.json"
    assert both.returncode == 0 and made_both.is_file(), (both.stdout + both.stderr)[-3000:]
    ens = json.loads(made_both.read_text())
    assert ens["members"] == ["base", "base_longer"] and 0 <= ens["dice"] <= 1
    assert ens["steps"] == rows["base"]["steps"] + made["steps"]
    assert ens["train_minutes"] == round(rows["base"]["train_minutes"] + made["train_minutes"], 2)
    assert ens["budget"] == {"budget_minutes": 0.05 + 0.15}
    assert not (home / "runs" / "tiny" / "both").exists()
    from benchmarks.ensembles import MeanOf
    from tf_medseg.config import load_config
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.inference.predictor import Predictor
    runs = [home / "runs" / "tiny" / v / "fold_0" for v in ("base", "base_longer")]
    example = next(iter(DataSet.open(load_config(str(runs[0] / "config.yaml")).data)
                        .records("val")))
    image, spacing = example["image"].numpy(), example["spacing"].numpy()
    members = [Predictor.load(r / "saved_model") for r in runs]
    alone = [p.probabilities(image, spacing) for p in members]
    mean = MeanOf(members).probabilities(image, spacing)
    np.testing.assert_allclose(mean, (alone[0] + alone[1]) / 2, atol=1e-6)
    missing = units(home, "unit", "tiny", "both", "1")  # base_longer has no fold 1
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "error: tiny both fold 1: member base_longer has no unit on fold 1; run it first (the "
        "runner does, declared before both)")

    report = units(home, "tiny", module="benchmarks.unit_report")
    assert report.returncode == 0, report.stderr[-2000:]
    doc = (home / "measurements.md").read_text()
    assert doc.startswith("# M\n\nbefore\n<!-- units:tiny -->\n| configuration | folds |")
    assert doc.endswith("<!-- /units:tiny -->\nafter\n") and "\nold\n" not in doc
    base_line = next(line for line in doc.splitlines() if line.startswith("| base | 0,1 |"))
    dice = [rows["base"]["dice"], row["dice"]]
    assert f"**{np.mean(dice):.3f}** ± {np.std(dice, ddof=1):.3f} |" in base_line
    longer_line = next(line for line in doc.splitlines()
                       if line.startswith("| base_longer | 0 |"))
    assert f"**{made['dice']:.3f}** |" in longer_line

    bad = units(home, "run", "tiny", "--only", "nope")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: --only: table tiny has no variant 'nope' (there are base, long, base_longer, both)")


def test_a_row_is_compared_with_the_peer_it_names(tmp_path, monkeypatch):
    """``versus: PEER``: the "vs peer" column of a row with the wide augmentation compares it
    with the peer trained with the same augmentation, not the table's first peer; a name that
    is not a peer row of the table is refused in one line."""
    from benchmarks import records, unit_report
    from benchmarks import units as runner
    from tf_medseg.errors import MedsegError
    monkeypatch.setattr(records, "RESULTS", tmp_path / "results")
    dice = {"peer": [0.80, 0.70], "peer_wide": [0.85, 0.75], "ours": [0.86, 0.78],
            "ours_wide": [0.90, 0.80]}
    for variant, values in dice.items():
        for fold, value in enumerate(values):
            path = records.result_path("t", variant, fold)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"dice": value, "dice_organ": value, "minutes": 1.0,
                                        "steps": 10, "budget": {"budget_minutes": 5}}))
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "ours": {}, "ours_wide": {"versus": "peer_wide"}, "peer": {"side": "peer"},
        "peer_wide": {"side": "peer"}}}}))
    table = runner.read_tables(tmp_path / "tables.yaml")["t"]
    rows = {line.split(" | ")[0][2:]: line for line in
            unit_report.markdown("t", table).splitlines()[2:]}
    assert "| +0.070 (2) |" in rows["ours"]  # against peer, the first
    assert "| +0.050 (2) |" in rows["ours_wide"]  # against peer_wide, as it says
    # a probe (declared on fewer folds): run on its folds only, reported under the rows
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "folds": [0, 1],
        "variants": {"ours": {}, "probe": {"folds": [1]}, "peer": {"side": "peer"}}}},
        sort_keys=False))
    table = runner.read_tables(tmp_path / "tables.yaml")["t"]
    assert runner.pending("t", table, None, None) == [("probe", 1)]
    assert runner.pending("t", table, ["probe"], [0]) == []
    path = records.result_path("t", "probe", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dice": 0.5, "dice_organ": 0.5, "minutes": 1.0, "steps": 10,
                                "budget": {"budget_minutes": 5}}))
    lines = unit_report.markdown("t", table).splitlines()
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ")] == [
        "| configuration", "| ours", "| peer", "| configuration", "| probe"]
    assert lines[5].startswith("Probes, each declared on fewer folds than the table's 2")
    assert "| probe | 1 | 0.500 | **0.500** | -0.200 (1) |" in lines[-1]
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "ours": {"folds": [5]}}}}))
    with pytest.raises(MedsegError, match=r"variant 'ours' must be .* folds \(some of the "
                                          r"table's \[0, 1, 2, 3, 4\]\)"):
        runner.read_tables(tmp_path / "tables.yaml")
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "ours": {"versus": "ours"}}}}))
    with pytest.raises(MedsegError, match=r"variant 'ours' must be .* versus \(a peer variant"):
        runner.read_tables(tmp_path / "tables.yaml")
    # the units left, variant by variant; fold by fold where an ensemble needs its members'
    # exports of the fold from the same sitting
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "ours": {}, "a": {}, "b": {}, "ab": {"members": ["a", "b"]}}}}, sort_keys=False))
    table = runner.read_tables(tmp_path / "tables.yaml")["t"]
    assert runner.pending("t", table, ["a", "ours"], [1, 2]) == [
        ("ours", 2), ("a", 1), ("a", 2)]  # ours fold 1 is recorded (above)
    assert runner.pending("t", table, ["ab", "b", "a"], [0, 1]) == [
        ("a", 0), ("b", 0), ("ab", 0), ("a", 1), ("b", 1), ("ab", 1)]
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "ours": {}, "both": {"members": ["ours", "later"]}, "later": {}}}}, sort_keys=False))
    with pytest.raises(MedsegError, match=r"variant 'both': members must list two or more "
                                          r"different variants of ours declared before it"):
        runner.read_tables(tmp_path / "tables.yaml")
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"t": {"config": "c.yaml", "variants": {
        "a": {"folds": [0]}, "b": {}, "ab": {"members": ["a", "b"]}}}}, sort_keys=False))
    with pytest.raises(MedsegError, match=r"variant 'ab': .* \(not ensembles\) on its folds"):
        runner.read_tables(tmp_path / "tables.yaml")  # a has no unit on folds 1-4


def test_every_declared_variant_loads_as_a_config():
    """The shipped ``benchmarks/tables.yaml``: each variant's overrides on its table's config
    load (a misspelt key or value is caught here, not minutes into a unit), each with a time
    budget, and a longer budget's rate_from names a row of the same network."""
    from benchmarks import units as runner
    from tf_medseg.config import load_config
    tables = runner.read_tables(ROOT / "benchmarks" / "tables.yaml")
    for name, table in tables.items():
        for variant in table["variants"]:
            config = load_config(str(ROOT / table["config"]), runner.overrides(table, variant))
            assert config.train.max_minutes, (name, variant)
            source = table["variants"][variant].get("rate_from")
            if source:
                assert table["variants"][source]["side"] == table["variants"][variant]["side"]
