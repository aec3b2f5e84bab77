"""Training: one experiment object (:mod:`~tf_medseg.training.experiment`), the custom loop,
the optimiser, the runtime (precision, XLA, strategy), the callbacks, the checkpoints and the
losses; :func:`train` runs a whole training session (:mod:`~tf_medseg.training.session`).

``train``, ``resolve_runtime`` and ``Experiment`` are imported lazily, so that importing one
light module of this package does not load TensorFlow.
"""

_LAZY = {"train": "session", "resolve_runtime": "runtime", "Experiment": "experiment"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"tf_medseg.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tf_medseg.training' has no attribute {name!r}")


__all__ = list(_LAZY)
