"""Command line: ``tf-medseg COMMAND ...`` (``python -m tf_medseg COMMAND``); ``train.py`` is a
shortcut for ``train``. User errors print one line and exit with status 2, never a traceback.

:mod:`~tf_medseg.cli.commands` maps the commands to their entry points; a command that is more
than a call has a module of its own (``train``, ``phantom``, ``evaluate``, ``predict``);
:mod:`~tf_medseg.cli.common` holds what they share.
"""

from tf_medseg.cli.commands import (
    benchmark_main,
    evaluate_main,
    export_ensemble_main,
    main,
    phantom_main,
    predict_main,
    train_main,
)

__all__ = ["main", "train_main", "phantom_main", "evaluate_main", "predict_main",
           "export_ensemble_main", "benchmark_main"]
