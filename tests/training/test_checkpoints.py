"""history.csv across a resume."""

def test_history_drops_epochs_after_the_backup_and_keeps_new_columns(tmp_path):
    from tf_medseg.training.checkpoints import HistoryLog, read_history
    path = tmp_path / "history.csv"
    first = HistoryLog(path, initial_epoch=0)
    first.on_train_begin()
    for epoch in range(3):  # epoch 2 was logged, then the process died before its backup
        first.on_epoch_end(epoch, {"loss": 1.0 - epoch / 10, "val_dice": epoch / 10})
    resumed = HistoryLog(path, initial_epoch=2)
    resumed.on_train_begin()
    assert [r["epoch"] for r in read_history(path)] == ["0", "1"]
    resumed.on_epoch_end(2, {"loss": 0.5, "val_dice": 0.6, "val_score": 0.8})  # new monitor
    rows = read_history(path)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["val_score"] == "" and rows[2]["val_score"] == "0.8"
