"""Data: the sources (:mod:`~tf_medseg.data.sources`: Kaggle layout, nnU-Net, Decathlon, image
folders), the label schema, the record format and its fingerprint, the records' build
(:mod:`~tf_medseg.data.records`) and the configured data set (:mod:`~tf_medseg.data.dataset`),
geometry and normalisation, augmentation, the phantom, RLE, and the tf.data pipeline.

``make_dataset`` is imported lazily so that the light modules (``rle``, ``sources.kaggle``,
``phantom``) do not pull in TensorFlow.
"""


def __getattr__(name):
    if name == "make_dataset":
        from tf_medseg.data.pipeline import make_dataset
        return make_dataset
    raise AttributeError(f"module 'tf_medseg.data' has no attribute {name!r}")


__all__ = ["make_dataset"]
