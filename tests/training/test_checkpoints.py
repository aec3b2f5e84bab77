"""history.csv and the best checkpoint across a resume; epochs numbered from 1."""

import json

import keras
import numpy as np


def test_history_drops_epochs_after_the_backup_and_keeps_new_columns(tmp_path):
    from tf_medseg.training.checkpoints import HistoryLog, read_history
    path = tmp_path / "history.csv"
    first = HistoryLog(path, initial_epoch=0)
    first.on_train_begin()
    for epoch in range(3):  # epoch 3 was logged, then the process died before its backup
        first.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10, "val_dice": epoch / 10})
    assert [r["epoch"] for r in read_history(path)] == ["1", "2", "3"]  # as the console
    resumed = HistoryLog(path, initial_epoch=2)
    resumed.on_train_begin()
    assert [r["epoch"] for r in read_history(path)] == ["1", "2"]
    resumed.on_epoch_end(2, {"loss": 0.5, "val_dice": 0.6, "val_score": 0.8})  # new monitor
    rows = read_history(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["val_score"] == "" and rows[2]["val_score"] == "0.8"


def test_a_best_of_a_discarded_epoch_gives_way_to_the_backups_epoch(tmp_path):
    """kill -9 during the epoch-2 backup: best.json holds the pre-crash epoch 2 (0.4843), the
    resume trains epoch 2 again; the kept model must be an epoch history.csv holds."""
    from tf_medseg.training.checkpoints import BestCheckpoint, best_record
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (tmp_path / "history.csv").write_text("epoch,val_score\n1,0.4627\n2,0.4843\n")
    (ckpt / "best.weights.h5").write_bytes(b"weights of the discarded epoch 2")
    (ckpt / "best.json").write_text(json.dumps({"epoch": 2, "monitor": "val_score",
                                                "value": 0.4843}))
    assert best_record(ckpt, "val_score", initial_epoch=2) == (0.4843, None)  # backup had it
    best, seed = best_record(ckpt, "val_score", initial_epoch=1)
    assert (best, seed) == (None, (1, 0.4627))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = BestCheckpoint(ckpt / "best.weights.h5", "val_score", best, seed)
    callback.set_model(model)
    callback.on_train_begin()
    assert json.loads((ckpt / "best.json").read_text()) == {
        "epoch": 1, "monitor": "val_score", "value": 0.4627}
    restored = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored.load_weights(str(ckpt / "best.weights.h5"))  # the backup's (epoch 1) weights
    assert np.array_equal(restored.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())
    callback.on_epoch_end(1, {"val_score": 0.47})  # the retrained epoch 2 beats epoch 1
    assert json.loads((ckpt / "best.json").read_text())["epoch"] == 2
