"""Is the tracking server there? Answered quickly, so a dead server costs seconds, not minutes.

MLflow's own client retries with back-off and a 20 s timeout per try (``cli.py``'s defaults):
right for a busy server, but 20 s for a closed port and ~100 s for a server that accepts and
never answers. Before training and while a run is buffering, a plain ``GET <uri>/health`` with
a short timeout says whether anything answers; any HTTP answer (even 401 or 404 behind a proxy)
counts as "there", so only a connection that fails or stays silent is called an outage.
"""

import http.client
import logging
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

PROBE_SECONDS = 2.0
# Metric, tag and param writes during training: one quick retry, then buffer (replayed later).
# A server answers these in milliseconds; one slower than 5 s costs a replay, not a point.
WRITE_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": 5, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 1,
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1}


def probe(uri: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when something answers HTTP at ``uri`` (or it is not an http(s) URI), else why not.

    No credentials are sent (userinfo is dropped) and the certificate is not checked: this only
    asks whether a server is there; MLflow's own requests verify TLS as configured.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health",
                                   "", ""))
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    try:
        with opener.open(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as exc:
        reason = exc.reason
    except (OSError, http.client.HTTPException) as exc:
        reason = exc
    if isinstance(reason, ssl.SSLError):
        return None  # something speaks TLS there: MLflow's request will say what is wrong
    return describe(reason, netloc, timeout)


def describe(reason: object, netloc: str, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused: nothing listens on {netloc}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return (f"no answer from {netloc} within {timeout:g} s (a hung server, or a firewall"
                " dropping the connection)")
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host of {netloc}"
    if isinstance(reason, http.client.RemoteDisconnected):
        return f"{netloc} closed the connection without an answer"
    return f"cannot connect to {netloc}: {reason}"


_OUTAGE_TYPES: tuple[type, ...] = (ConnectionError, TimeoutError, socket.timeout,
                                   http.client.HTTPException)
try:  # MLflow's REST client is requests/urllib3; both are its dependencies
    import requests
    import urllib3

    _OUTAGE_TYPES += (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                      requests.exceptions.RetryError, requests.exceptions.ChunkedEncodingError,
                      urllib3.exceptions.HTTPError)
except ImportError:  # pragma: no cover
    pass
_GATEWAY = re.compile(r"\b(error code|status code|HTTP) ?:? ?(502|503|504)\b|too many 50[234] ")


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the server could not be reached or answered
    502/503/504: worth buffering and retrying. A refused request (bad value, no permission)
    is not an outage and keeps failing as before."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _OUTAGE_TYPES) or _GATEWAY.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def kept_environment(names) -> Iterator[dict[str, str | None]]:
    """MLflow reads its settings from the environment: a block may change ``names`` for the
    calls inside, and finds them as they were (set, or unset) afterwards. Yields what they were."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield saved
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def http_limits(limits: dict[str, int]) -> Iterator[None]:
    """MLflow's HTTP timeout/retry settings lowered for the calls inside (never raised above
    what the user set); MLflow reads them per request, so they apply at once. urllib3's
    "Retrying ..." warnings are muted meanwhile: a failure ends in our own one-line warning."""
    retries = logging.getLogger("urllib3.connectionpool")
    level = retries.level
    retries.setLevel(logging.ERROR)
    with kept_environment(limits) as saved:
        for name, value in limits.items():
            current = saved[name]
            if current is not None and current.isdigit():
                value = min(value, int(current))
            os.environ[name] = str(value)
        try:
            yield
        finally:
            retries.setLevel(level)
