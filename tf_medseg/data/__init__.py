"""Data: the Kaggle-layout reader, RLE, the phantom, TFDS preparation and the tf.data pipeline.

``make_dataset`` is imported lazily so that the light modules (``rle``, ``kaggle``, ``phantom``)
do not pull in TensorFlow.
"""


def __getattr__(name):
    if name == "make_dataset":
        from tf_medseg.data.pipeline import make_dataset
        return make_dataset
    raise AttributeError(f"module 'tf_medseg.data' has no attribute {name!r}")


__all__ = ["make_dataset"]
