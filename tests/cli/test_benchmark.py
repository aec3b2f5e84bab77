"""``python -m tf_medseg benchmark``: one JSON line last; nonsense options refused in one line."""

import json

import pytest

from conftest import cli_here


@pytest.mark.slow
def test_benchmark_prints_one_json_line_last(tiny_phantom):
    proc = cli_here("-m", "tf_medseg", "benchmark", "--data-root", str(tiny_phantom),
                    "--image-size", "32", "32", "--seconds", "0.5", "--set",
                    "model.base_filters=4", "model.depth=2", "data.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("pipeline_slices_per_s", "train_images_per_s", "infer_images_per_s",
                "peak_rss_mb"):
        assert result[key] > 0, key
    assert result["image_size"] == [32, 32] and result["context"] == [-2, 0, 2]
    assert result["slices"] == 8 * 12


def test_nonsense_is_one_line(tmp_path, capsys):
    from tf_medseg.cli import benchmark_main
    assert benchmark_main(["--data-root", str(tmp_path), "--seconds", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --seconds: must be a number of seconds")
