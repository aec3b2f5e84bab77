"""plan with train.max_minutes (tf_medseg/workflows/budget.py): the planned 2D and 3D networks
timed here, and what the budget buys each."""

import pytest

from tf_medseg.workflows.plan import plan

from synthetic_volumes import write_nnunet


@pytest.fixture
def anisotropic(tmp_path):
    return write_nnunet(tmp_path / "Dataset002_Aniso", cases=4, channels=("T2",),
                        shape=(48, 40, 8), spacings=[(0.8, 0.8, z) for z in (3.0, 4.0, 5.0, 6.0)])


def _settings(tmp_path, root):
    return ["data.source=nnunet", f"data.root={root}", f"data.data_dir={tmp_path / 'tfds'}",
            "model.base_filters=4", "data.num_folds=2"]


def test_a_budget_reports_what_each_network_fits(tmp_path, anisotropic):
    """train.max_minutes: a few steps of the planned 2D and 3D networks timed here, and the
    steps and epochs each would train in the budget, printed and written with the plan."""
    out = tmp_path / "plans.yaml"
    result, _ = plan("tiny.yaml", _settings(tmp_path, anisotropic) + [
        "train.max_minutes=2"], str(out))
    lines = result.lines()
    start = lines.index("with train.max_minutes 2, measured on this machine (training steps "
                        "only; validation and scoring come on top):")
    two, three, verdict = lines[start + 1:start + 4]
    assert two.startswith("  2D: patch 48 x 40, batch 2: ") and " s a step, about " in two
    assert three.startswith("  3D: patch ") and "epochs of its training set)" in three
    steps = int(two.split("about ")[1].split(" steps")[0])
    seconds = float(two.split(": ")[2].split(" s a step")[0])
    assert steps == pytest.approx(120 / seconds, rel=0.05, abs=1)
    assert "network sees more voxels in the budget; the written config trains plan.dims 2" in (
        verdict)
    assert two.strip() in out.read_text()  # the written plan's header says it too
