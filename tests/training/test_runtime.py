"""Strategies: two workers on the loopback, and the TF_CONFIG check."""

import csv
import json
import subprocess
import sys

import pytest

from conftest import ROOT, cli_here, tiny_train_args


def _free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_on_loopback(tmp_path):
    """Two worker processes on 127.0.0.1 train in sync; only the chief writes outputs."""
    import os
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = tiny_train_args(tmp_path, "train.strategy=multi_worker", "train.epochs=2",
                           "train.steps_per_epoch=2", "train.overlay_slices=0")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    prints = [[line for line in out.splitlines() if line.startswith("Weights fingerprint")]
              for out, _ in outs]
    assert prints[0] and prints[0] == prints[1]  # the same weights on both workers
    assert "the chief writes the outputs" in outs[1][0]
    run = tmp_path / "run"
    runtime = json.loads((run / "runtime.json").read_text())
    assert runtime["strategy"] == "MultiWorkerMirroredStrategy" and runtime["replicas"] == 2
    with (run / "history.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    assert (run / "saved_model" / "saved_model.pb").is_file()
    assert (run / "metrics.json").is_file()


@pytest.mark.slow
def test_multi_worker_without_tf_config_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    proc = cli_here(*tiny_train_args(tmp_path, "train.strategy=multi_worker"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: train.strategy: multi_worker needs the TF_CONFIG environment variable")
