"""The one base class of errors in what a user gave: a file, a flag, a config value.

Why a base class: the console scripts print these as one line (``prog: error: ...``)
and exit with status 2, while anything else is a bug and keeps its traceback. Each
module keeps its own error class (``ConfigValueError``, ``CreativeFileError``, ...),
derived from this one and from the builtin it has always been (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` in user code still catches them.
"""


class UserError(Exception):
    """Raised for bad input; the message names the file, field or value and what is expected."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A path the user gave (or a default one) does not exist."""


class InvalidInputError(UserError, ValueError):
    """A value, flag or file content that is not what is expected."""
