"""Data: the readers of every source (Kaggle layout, volumes, image folders), RLE, the phantom,
the record spec and the tf.data pipeline (the records are built by :mod:`tf_medseg.records`).

``make_dataset`` is imported lazily so that the light modules (``rle``, ``kaggle``, ``phantom``)
do not pull in TensorFlow.
"""


def __getattr__(name):
    if name == "make_dataset":
        from tf_medseg.data.pipeline import make_dataset
        return make_dataset
    raise AttributeError(f"module 'tf_medseg.data' has no attribute {name!r}")


__all__ = ["make_dataset"]
