"""Finding the shipped configs and the TFDS builders without editing the import path."""

import subprocess
import sys

from conftest import ROOT


def test_builders_load_as_tf_medseg_datasets_from_a_checkout():
    from tf_medseg import resources
    assert resources.checkout() == ROOT
    module = resources.builders("gi_phantom")
    assert module.__name__ == "tf_medseg_datasets.gi_phantom"
    assert module.GiPhantom.name == "gi_phantom"  # TFDS's name (and data folder) unchanged
    assert resources.builders("gi_phantom") is module
    assert resources.configs_dir() == ROOT / "configs"


def test_a_hugging_face_style_datasets_package_is_neither_shadowed_nor_used(tmp_path):
    """A top-level ``datasets`` package elsewhere on the path (as Hugging Face's) stays the
    one ``import datasets`` finds, and the builders are still ours."""
    fake = tmp_path / "datasets"
    fake.mkdir()
    (fake / "__init__.py").write_text("OWNER = 'someone else'\n")
    code = ("import datasets; from tf_medseg.resources import builders; "
            "b = builders('uw_madison_gi'); print(datasets.OWNER, b.UwMadisonGi.name)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin",
                               "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == "someone else uw_madison_gi"
