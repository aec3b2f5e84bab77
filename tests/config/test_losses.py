from tf_medseg.config.losses import _check_loss, improves, loss_weights


def test_loss_weights():
    assert loss_weights("bce_dice") == {"bce": 1.0, "dice": 1.0}
    assert loss_weights("tversky") == {"tversky": 1.0}
    assert loss_weights({"bce": 2, "lovasz": 0.5}) == {"bce": 2.0, "lovasz": 0.5}


def test_a_mapping_of_terms_is_checked():
    assert _check_loss({"dice": 1.0}) == (True, "")
    assert "unknown loss 'iou'" in _check_loss({"iou": 1.0})[1]
    assert not _check_loss({"dice": 0})[0] and not _check_loss({"dice": True})[0]


def test_which_way_a_metric_improves():
    assert improves("val_loss") == "min" and improves("val_score") == "max"
