"""The house by concern: a folder per stage, the few shared modules at the top, every module's
tests where a newcomer looks for them, the README a front door with docs/ behind it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# The modules that stay at the package's top: run folders, files, errors, where the package's
# files are, the version, the entry point and DESIGN.md's public alias tf_medseg.metrics.
TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "files.py", "run_dir.py",
             "resources.py", "metrics.py"}
NO_TESTS = {"tf_medseg/__main__.py", "tf_medseg/metrics.py"}  # an entry point, an alias


def expected_test(path: Path) -> Path:
    """Where the tests of a module live: tests/<folder>/test_<module>.py, mirroring the
    package (the TFDS builders: tests/datasets/test_<builder>.py)."""
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "datasets":
        name = path.stem.removesuffix("_dataset_builder")
        return TESTS / "datasets" / f"test_{name}.py"
    return TESTS.joinpath(*rel.parts[1:-1]) / f"test_{path.stem}.py"


def sources() -> list[Path]:
    return sorted(p for folder in ("tf_medseg", "datasets") for p in (ROOT / folder).rglob("*.py")
                  if p.name != "__init__.py" and str(p.relative_to(ROOT)) not in NO_TESTS)


def test_only_the_shared_modules_sit_at_the_top():
    top = {p.name for p in (ROOT / "tf_medseg").glob("*.py")}
    assert top <= TOP_LEVEL, sorted(top - TOP_LEVEL)
    folders = {p.name for p in (ROOT / "tf_medseg").iterdir()
               if p.is_dir() and p.name != "__pycache__"}
    assert folders == {"cli", "config", "data", "dicom", "evaluation", "export", "inference",
                       "models", "planning", "training", "workflows"}


def test_package_inits_only_re_export():
    """Code lives in named modules; a package's __init__ imports and re-exports (lazily where
    the import is heavy), so that its tests have a file of their own."""
    for init in (ROOT / "tf_medseg").rglob("__init__.py"):
        text = init.read_text()
        defs = re.findall(r"^(?:def|class) (\w+)", text, re.M)
        assert set(defs) <= {"__getattr__"}, (init, defs)


def test_every_module_has_its_test_file():
    missing = sorted(str(expected_test(p).relative_to(ROOT)) for p in sources()
                     if not expected_test(p).is_file())
    assert missing == []


def test_no_test_file_is_orphaned():
    """Every test file mirrors a module, or is a scenario suite (tests/scenarios/)."""
    wanted = {expected_test(p) for p in sources()}
    found = {p for p in TESTS.rglob("test_*.py") if "scenarios" not in p.parts}
    assert sorted(str(p.relative_to(ROOT)) for p in found - wanted) == []


def test_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for line in ("pip install -r requirements.txt", "python train.py --config configs/unet.yaml",
                 "python -m pytest -q"):
        assert line in readme, line
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs
    for doc in docs:
        assert f"docs/{doc.name}" in readme, f"README links docs/{doc.name}"
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
