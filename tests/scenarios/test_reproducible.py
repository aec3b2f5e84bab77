"""Same config, same seed, same run: whether the records were just built or reused, whatever
ran before in the process, in whatever order TFDS wrote the records."""

import random
import subprocess
import sys

import numpy as np
import pytest

from tf_medseg.config import load_config

from conftest import ROOT, cli_here, tiny_overrides

# Before training, the third run builds another data set and draws from every global
# generator, as a notebook or a script that did other work first would.
_BUSY_PROCESS = """
import random, sys
import numpy as np
import tensorflow as tf
from tf_medseg.cli import train_main
from tf_medseg.config import DataConfig
from tf_medseg.data.records import build_records

if __name__ == "__main__":
    random.seed(7); random.random(); np.random.rand(3); tf.random.uniform([3])
    build_records(DataConfig(data_dir=sys.argv[1], phantom_cases=2, phantom_days=1,
                       phantom_slices=4, phantom_seed=5))
    sys.exit(train_main(sys.argv[2:]))
"""


def _train(*args, prelude):
    command = [sys.executable, "-c", prelude, *args]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_same_run_whether_the_records_were_built_or_reused(tmp_path):
    """The first run builds the records (in this process, after whatever tests ran in it
    before); the second reuses them, in a new process that did other work first: the same
    history and metrics."""
    base = tiny_overrides(tmp_path, own_records=True) + ["export.saved_model=false",
                                                          "train.epochs=1",
                                                          "train.overlay_slices=0"]
    outputs = []
    for name in ("built", "busy"):
        args = ["--config", "tiny.yaml", "--set", *base, f"train.run_dir={tmp_path / name}"]
        if name == "busy":
            stdout = _train(str(tmp_path / "other_tfds"), *args, prelude=_BUSY_PROCESS)
            assert "Preparing gi_phantom/c2_d1_s4_seed5" in stdout  # it built the other set
        else:
            proc = cli_here("train.py", *args)
            assert proc.returncode == 0, proc.stderr[-3000:]
            stdout = proc.stdout
        assert ("Preparing gi_phantom/c4_d2_s12" in stdout) == (name == "built")
        outputs.append([(tmp_path / name / f).read_bytes()
                        for f in ("history.csv", "metrics.json")])
    assert outputs[0] == outputs[1]


def test_compiled_model_weights_depend_on_the_seed_alone(tmp_path):
    import keras

    from conftest import compiled

    def weights(seed):
        config = load_config("tiny.yaml", tiny_overrides(tmp_path) + [f"train.seed={seed}"])
        model = compiled(config, "float32", False, steps=4)
        return [np.asarray(w) for w in model.weights]

    first = weights(42)
    keras.utils.set_random_seed(1)  # what a caller did before must not matter
    random.random()
    np.random.rand()
    again = weights(42)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = weights(43)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_records_and_batches_do_not_depend_on_the_writing_order(tiny_phantom, tmp_path,
                                                                 monkeypatch):
    """TFDS orders the records by a hash of their keys, not by the order the builder yields
    them in, so the seeded shuffles start from the same sequence on every build."""
    from tf_medseg.resources import builders
    kaggle_layout = builders("kaggle_layout")
    from tf_medseg.data.dataset import DataSet
    from tf_medseg.data.pipeline import make_dataset

    examples, yielded = kaggle_layout.examples, {}

    def build(name, reverse):
        def recorded(inv, *args, **kwargs):
            items = list(examples(inv, *args, **kwargs))
            items = items[::-1] if reverse else items
            yielded[name] = [key for key, _ in items]
            return iter(items)
        monkeypatch.setattr(kaggle_layout, "examples", recorded)
        config = load_config("tiny.yaml", tiny_overrides(tmp_path / name, own_records=True) + [
            "data.source=uwmgi", f"data.root={tiny_phantom}"])
        data = DataSet.open(config.data)
        keys = [e["scan"].decode() for e in
                data.builder.as_dataset(split="train", shuffle_files=False).as_numpy_iterator()]
        batches = [x.numpy() for x, _ in make_dataset(config, "train", dataset=data)]
        return keys, batches

    keys_a, batches_a = build("a", reverse=False)
    keys_b, batches_b = build("b", reverse=True)
    assert yielded["a"] == yielded["b"][::-1]  # the builder really yielded another order
    assert keys_a == keys_b
    assert len(batches_a) == len(batches_b) > 1
    for a, b in zip(batches_a, batches_b):
        np.testing.assert_array_equal(a, b)
