"""benchmarks/gpu_check.sh, the script a lent GPU machine runs, at tiny sizes on the CPU: the
cases copied for it, every step run, its summary written."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT

HIPPOCAMPUS = ROOT.parent / "shared" / "data" / "hippocampus" / "Task04_Hippocampus"


@pytest.mark.slow
def test_gpu_check_runs_every_step_at_tiny_sizes(tmp_path):
    if not HIPPOCAMPUS.is_dir():
        pytest.skip(f"the hippocampus data is not at {HIPPOCAMPUS}")
    env = {**os.environ, "GPU_CHECK_DATA": str(tmp_path / "data"), "GPU_CHECK_CASES": "6",
           "OUT": str(tmp_path / "out")}
    script = ["bash", "benchmarks/gpu_check.sh"]
    prepared = subprocess.run([*script, "--prepare"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert prepared.stdout.startswith("6 cases in ")
    assert len(list((tmp_path / "data" / "Task04_Hippocampus" / "imagesTr").iterdir())) == 6
    proc = subprocess.run([*script, "--tiny"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("gpu_check (tiny) on ") and " cores" in summary[0]
    assert any(line.startswith("3D planned: training ") and "3D patches/s" in line
               for line in summary)
    assert any(line.startswith("MirroredStrategy: MirroredStrategy with 1 replica(s)")
               and line.endswith("devices ['/device:CPU:0']") for line in summary)
    assert any(line.startswith("best configuration, fold 0, budget 0.05 min: ")
               for line in summary)
    assert (tmp_path / "out" / "best" / "budget.json").is_file()


def test_gpu_check_refuses_without_its_cases(tmp_path):
    env = {**os.environ, "GPU_CHECK_DATA": str(tmp_path / "none"), "OUT": str(tmp_path / "o")}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "run 'bash benchmarks/gpu_check.sh --prepare' first" in (
        proc.stderr)
    assert not (tmp_path / "o").exists()
