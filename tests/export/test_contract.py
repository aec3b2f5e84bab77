"""The serving contract: metadata.json written and read back, damaged or old ones refused in
one line, what --model names, and members that must agree."""

import dataclasses
import json
from pathlib import Path

import pytest

from tf_medseg.config import load_config
from tf_medseg.errors import MedsegError
from tf_medseg.export.contract import Contract, check_members, read_contract, resolve_models

from conftest import kaggle_contract


def _export_folder(path: Path, contract: Contract) -> Path:
    """A folder that looks like an export (its graph is not read here)."""
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    (path / "metadata.json").write_text(json.dumps(contract.to_metadata()))
    return path


def test_round_trip(tmp_path):
    contract = kaggle_contract(load_config("tiny.yaml", ["data.context=[-2,0,2]"]))
    folder = _export_folder(tmp_path / "m", contract)
    back = read_contract(folder, "--model m")
    assert back == contract and back.channels == 3 and back.centre == 1
    meta = contract.to_metadata()
    assert meta["input"]["dtype"] == "uint16" and meta["signatures"][0] == "serving_default"
    mirrored = dataclasses.replace(contract, tta="flips+zoom", mirror_axes=(0, 1))
    assert read_contract(_export_folder(tmp_path / "f", mirrored), "--model f") == mirrored
    assert meta["orientation"] is None and meta["roi_names"] == list(contract.classes)
    named = dataclasses.replace(contract, orientation="LAS",
                                roi_names=("Bowel_Large", "Bowel_Small", "Stomach"))
    back = read_contract(_export_folder(tmp_path / "n", named), "--model n")
    assert back == named and back.roi_labels == ("Bowel_Large", "Bowel_Small", "Stomach")
    del meta["tta"], meta["mirror_axes"]  # an export written before predict.tta
    del meta["orientation"], meta["roi_names"]  # ... and before DICOM output
    (folder / "metadata.json").write_text(json.dumps(meta))
    back = read_contract(folder, "--model m")
    assert back.tta == "none" and back.orientation is None and back.roi_labels == back.classes


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("export_version"), "an export of an older tf_medseg (export_version 1"),
    (lambda m: m.update(model_output="relu"), "damaged export metadata (model_output 'relu'"),
    (lambda m: m.update(threshold=1.5), "damaged export metadata (threshold 1.5)"),
    (lambda m: m.pop("labels"), "damaged export metadata (KeyError"),
    (lambda m: m.update(tta="flips"), "damaged export metadata (tta 'flips', mirror_axes []"),
    (lambda m: m.update(tta="flips", mirror_axes=[2]), "damaged export metadata (tta 'flips'"),
    (lambda m: m.update(orientation="LAX"), "damaged export metadata (ValueError: orientation"),
    (lambda m: m.update(roi_names=["a"]), "damaged export metadata (roi_names ['a'] for 3"),
])
def test_damaged_or_old_metadata_is_one_line(tmp_path, edit, message):
    folder = _export_folder(tmp_path / "m", kaggle_contract(load_config("tiny.yaml")))
    meta = json.loads((folder / "metadata.json").read_text())
    edit(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(MedsegError) as info:
        read_contract(folder, "--model m")
    assert str(info.value).startswith(f"{folder / 'metadata.json'}: {message}")
    assert "\n" not in str(info.value)


def test_resolve_models_and_members(tmp_path):
    contract = kaggle_contract(load_config("tiny.yaml"))
    a = _export_folder(tmp_path / "run_a" / "saved_model", contract)
    b = _export_folder(tmp_path / "b", dataclasses.replace(contract, context=(-1, 0, 1)))
    assert resolve_models(tmp_path / "run_a") == ([a], None)  # a run folder holding one
    exports, rules = resolve_models([a, b])
    assert exports == [a, b] and rules is None
    with pytest.raises(MedsegError, match=r"context_offsets \[-1, 0, 1\], but .* must agree"):
        check_members([read_contract(p, str(p)) for p in exports], exports)
    with pytest.raises(MedsegError, match="named twice"):
        resolve_models([a, tmp_path / "run_a"])


def test_roi_names_by_mapping_or_tg263():
    from tf_medseg.errors import ConfigError
    from tf_medseg.export.contract import roi_names
    classes = ("large_bowel", "small_bowel", "stomach")
    assert roi_names(None, classes) == ()
    assert roi_names({"stomach": "ST"}, classes) == ("large_bowel", "small_bowel", "ST")
    assert roi_names("tg263", classes) == ("Bowel_Large", "Bowel_Small", "Stomach")
    with pytest.raises(ConfigError, match=r"^export\.roi_names: tg263 does not know class "
                                          r"'Anterior' .*e\.g\. \{Anterior: A_TG263_Name\}$"):
        roi_names("tg263", ("Anterior", "stomach"))
    config = load_config("tiny.yaml", ["export.roi_names=tg263"])
    assert config.export.roi_names == "tg263"
