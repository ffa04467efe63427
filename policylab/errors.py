"""Exceptions shared by every layer.

User mistakes (bad arguments, configs, data, files, a busy run directory, a diverged run)
raise subclasses of :class:`PolicylabError`. The command line turns exactly those into a
one-line message and exit code 2; any other exception is a bug and shows its traceback.
Each subclass stays a ``ValueError`` / ``FileNotFoundError`` / ``TypeError`` where callers
caught those before, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "InputError",
    "InputTypeError",
    "InvalidMDPError",
    "MissingFileError",
    "PolicylabError",
    "RunLockedError",
    "UsageError",
]


class PolicylabError(Exception):
    """Base class for policylab errors caused by the user's input (exit code 2 on the CLI)."""


class InputError(PolicylabError, ValueError):
    """An argument has a bad value; the message names the argument and the value."""


class InputTypeError(PolicylabError, TypeError):
    """An argument has the wrong type; the message names the argument."""


class MissingFileError(PolicylabError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class UsageError(InputError):
    """Bad command-line input detected by a subcommand (printed as one line, exit code 2)."""


class ConfigError(InputError):
    """A config field (hyperparameter) is unknown, does not coerce, or is out of range."""


class DataError(InputError):
    """A data set row or file is malformed; the message names the file, row and field."""


class InvalidMDPError(InputError):
    """An MDP's P, R, gamma, initial or terminal arrays are malformed.

    The message names the offending state/action and value.
    """


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, or was written for something else."""


class RunLockedError(PolicylabError, RuntimeError):
    """Another live process is writing the same run directory."""


class DivergenceError(PolicylabError, FloatingPointError):
    """A loss, gradient, reward or parameter became NaN/inf; the run stopped before saving it.

    The message names the step and the quantity. The last good checkpoint is untouched.
    """
