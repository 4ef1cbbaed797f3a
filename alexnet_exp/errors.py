"""The one exception type the command line turns into a one-line message and exit code 2.

Everything a user can fix (a bad key, a missing folder, no network for the download) raises a
subclass with a message that says what was wrong, where, and how to fix it. Anything else is a
bug and keeps its traceback.
"""

import re


class UserError(Exception):
    """A mistake in the user's input or environment, explained in one line."""


class ConfigError(UserError, ValueError):
    """An out-of-range or inconsistent config value; the message names the key."""


class DataError(UserError):
    """The data set cannot be found, fetched or used; the message names the path."""


def exit_with(message: str, program: str = "alexnet-exp", code: int = 2) -> None:
    """The one-line ending of every entry point (and of the sweep callback, which runs before
    any job): ``<program>: error: <message>`` on stderr (logged, so a training job's log file
    keeps it too), then exit ``code``."""
    import logging
    import sys

    logging.getLogger(__name__).error(redact(f"{program}: error: {message}"))
    sys.exit(code)


def first_line(exc: BaseException) -> str:
    """What a one-line message quotes of an error from a library (MLflow, TensorFlow, the
    network): its first line, or its type when it has no text."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


# ``\:`` too: Hydra escapes the colons of an override when it lists a sweep's jobs.
CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*\\?://)[^/@\s]+@")


def redact(text: str) -> str:
    """``https://user:token@host`` -> ``https://***@host``: what leaves the process must not
    hold secrets (a tracking URI with credentials can reach params, tags, run and model names,
    the config files). Here, at the bottom, so every layer redacts the same way."""
    return CREDENTIALS.sub(r"\g<scheme>***@", text)
