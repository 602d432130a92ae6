"""The errors hepflow raises on bad input: one family, one-line messages.

Every message names the file, key, config entry or option involved, says what was expected
and ends with ``Received: ...`` as Keras errors do. The ``hepflow`` command prints any
:class:`HepflowError` as one line on stderr and exits with status 2 (a traceback only with
``--debug`` or ``HEPFLOW_DEBUG=1``).

Model and layer constructors keep Keras's convention and raise ``ValueError`` for bad
arguments; building them from a config turns that into a :class:`ConfigError`.
"""
from __future__ import annotations

__all__ = ["HepflowError", "DataError", "ConfigError", "RunError", "carried_message"]


class HepflowError(Exception):
    """The root of hepflow's errors: bad input that the user can fix, explained in one line."""


class DataError(HepflowError, ValueError):
    """Bad input to a data pipeline: missing or corrupt files, wrong keys, bad shapes, bad options."""


class ConfigError(HepflowError, ValueError):
    """A bad configuration: an unknown key, a wrong type, a value out of range, in a config file,
    a ``--set`` override, a command-line option or the arguments of a generator."""


class RunError(HepflowError):
    """A run directory that cannot be used as asked: a finished or interrupted run in the way,
    nothing to resume, an unfinished run to evaluate or export, an unsafe run name."""


def _names(cls: type) -> set[str]:
    return {cls.__name__}.union(*(_names(sub) for sub in cls.__subclasses__()))


def carried_message(text: str) -> str | None:
    """The one-line message of a hepflow error inside another error's text, or ``None``.

    A hepflow error raised where TensorFlow runs Python (a pipeline reading rows mid-epoch)
    reaches the caller inside a ``tf.errors.OpError`` whose text holds ``"DataError: <message>"``.
    """
    for name in sorted(_names(HepflowError)):
        marker = f"{name}: "
        if marker in text:
            return " ".join(text.split(marker, 1)[1].splitlines()[0].split())
    return None
