"""The writer chosen from the input's form, and what --output must be for a model."""

import dataclasses

from tf_medseg.config import load_config
from tf_medseg.inference.writers import target_of, writer_for
from tf_medseg.inference.writers.nifti import NiftiWriter
from tf_medseg.inference.writers.png import PngWriter
from tf_medseg.inference.writers.submission import SubmissionWriter

from conftest import kaggle_contract


def test_one_writer_per_input_form(tmp_path):
    contract = kaggle_contract(load_config("tiny.yaml"))
    csv = writer_for("kaggle", tmp_path / "s.csv", contract)
    assert isinstance(csv, SubmissionWriter) and csv.target == "file"
    csv.abort()
    assert isinstance(writer_for("nifti", tmp_path / "o", contract), NiftiWriter)
    assert isinstance(writer_for("image", tmp_path / "o", contract), PngWriter)
    assert target_of(contract) == "file"
    assert target_of(dataclasses.replace(contract, image_dtype="float32")) == "folder"
    assert not list(tmp_path.iterdir())  # nothing written until something is
