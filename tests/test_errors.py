"""User errors: one family the command lines print as one line (exit status 2)."""

import pytest

from tf_medseg.errors import ConfigError, DataError, MedsegError, TrainingError


@pytest.mark.parametrize("kind", [ConfigError, DataError, TrainingError])
def test_every_user_error_is_a_medseg_error(kind):
    assert issubclass(kind, MedsegError) and not issubclass(MedsegError, kind)
    with pytest.raises(MedsegError, match="^data.root: x$"):
        raise kind("data.root: x")
