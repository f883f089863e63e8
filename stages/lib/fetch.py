"""Streaming HTTP download of the dataset archive: atomic, hashed, retried, and quick to fail offline.

The body is streamed into a temporary `<dest>.<random>.part` file next to `dest`, hashed on the
way, fsynced and only then renamed onto `dest`; a failed or interrupted download never leaves a
half file under the final name, and a previous complete `dest` survives any failure.

Retry policy, and why:
- HTTP 5xx and 429, timeouts, connections dropped mid-body and truncated bodies are hiccups on
  the server or the network path: retried up to `retries` times, sleeping
  backoff_seconds * 2**attempt in between.
- A refused connection or a failed DNS lookup means the machine is offline, the host name is
  wrong or a firewall says no. Waiting a few seconds does not change that, and a slow resolver
  would multiply its own timeout by the attempts, so it is NOT retried: the user gets the
  offline advice at once.
- Any other 4xx (404, 403, ...) and a sha256 mismatch are permanent: not retried either.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3.exceptions
from tqdm import tqdm

from stages.lib import files
from stages.lib.errors import PipelineError, warn
from stages.lib.redaction import redact

OFFLINE_ADVICE = (
    "This machine seems to be offline. Download the archive elsewhere and set data.source to its local path "
    "in params.yaml (the ImageNet weights likewise: model.weights takes a weights file path), "
    "or run `make demo` for the whole pipeline offline on generated sample data."
)
# Archives are already compressed; asking for the bytes as stored also keeps Content-Length
# equal to the number of bytes we write, which the truncation check and progress bar rely on.
_REQUEST_HEADERS = {"Accept-Encoding": "identity"}
# mkstemp creates 0o600; a downloaded dataset is no secret and other tools and users must read it.
_DOWNLOADED_FILE_MODE = 0o644
# How requests/urllib3/http.client report a body that ended before its Content-Length.
_TRUNCATED_BODY_ERRORS = (
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    http.client.IncompleteRead,
)


# A PipelineError so that a stage reports it as one line on stderr (no network is a user-fixable problem).
class DownloadError(PipelineError):
    """Download failed for good; the message names the URL and what went wrong."""


class _TransientError(Exception):
    """One attempt failed in a way that a later attempt may not."""

    def __init__(self, reason: str, *, host_unreachable: bool = False) -> None:
        super().__init__(reason)
        self.host_unreachable = host_unreachable  # worth the offline advice if it is the last failure


def keras_home() -> Path:
    """Where keras.utils.get_file caches downloads (datasets/, models/): $KERAS_HOME, default ~/.keras."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    retries: int = 3,
    backoff_seconds: float = 1.0,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    chunk_bytes: int = 1 << 20,
    progress: bool = True,
    session: requests.Session | None = None,
    stage: str = "download",
) -> str:
    """Stream `url` to `dest` atomically and return the file's sha256 hex digest.

    `sha256` (hex, any case), when given, must match or DownloadError is raised and `dest` is left
    as it was. `retries` is the number of extra attempts after the first (see the module
    docstring for what is retried), each a warning line of `stage`. Raises DownloadError for every download failure,
    its message naming the URL without credentials (redact).
    """
    try:
        return _download(url, dest, sha256, retries, backoff_seconds, (connect_timeout, read_timeout), chunk_bytes,
                         progress, session, stage)  # fmt: skip
    except DownloadError as exc:  # every message names the URL: never with its credentials
        raise DownloadError(redact(str(exc))) from exc.__cause__


def _download(
    url: str,
    dest: Path,
    sha256: str | None,
    retries: int,
    backoff_seconds: float,
    timeout: tuple[float, float],
    chunk_bytes: int,
    progress: bool,
    session: requests.Session | None,
    stage: str,
) -> str:
    expected_sha256 = _normalised_sha256(sha256)
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    http_session = session if session is not None else requests.Session()
    try:
        attempt = functools.partial(
            _download_once,
            http_session,
            url,
            dest,
            timeout=timeout,
            chunk_bytes=chunk_bytes,
            progress=progress,
        )
        with files.naming_a_full_disk(dest):
            part, digest = _with_retries(attempt, url, retries=retries, backoff_seconds=backoff_seconds, stage=stage)
    finally:
        if session is None:
            http_session.close()
    try:
        if expected_sha256 is not None and digest != expected_sha256:
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {expected_sha256}, got {digest}; "
                f"{dest} was left as it was"
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest


def _normalised_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return digest


def _with_retries(
    attempt: Callable[[], tuple[Path, str]], url: str, *, retries: int, backoff_seconds: float, stage: str
) -> tuple[Path, str]:
    """Run `attempt` until it succeeds, retrying only _TransientError, with exponential backoff."""
    for attempt_index in range(retries + 1):
        try:
            return attempt()
        except _TransientError as exc:
            failure = exc
            if attempt_index < retries:
                delay = backoff_seconds * 2**attempt_index
                warn(stage, f"download of {redact(url)} failed ({redact(str(exc))}); retrying in {delay:.2g} s")
                time.sleep(delay)
    message = f"could not download {url} after {retries + 1} attempt(s): {failure}"
    if failure.host_unreachable:
        message += f". {OFFLINE_ADVICE}"
    raise DownloadError(message) from failure


def _download_once(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    timeout: tuple[float, float],
    chunk_bytes: int,
    progress: bool,
) -> tuple[Path, str]:
    """One GET streamed to a .part file next to `dest`; returns (part file, sha256).

    Translates every requests/urllib3 failure into _TransientError (worth retrying) or
    DownloadError (not).
    """
    try:
        with session.get(url, stream=True, timeout=timeout, headers=_REQUEST_HEADERS) as response:
            _check_status(response, url)
            return _stream_to_part_file(response, dest, chunk_bytes=chunk_bytes, progress=progress)
    except requests.ConnectTimeout as exc:  # before ConnectionError, of which it is a subclass
        raise _TransientError(f"no answer from the server within {timeout[0]} s", host_unreachable=True) from exc
    except requests.ConnectionError as exc:
        unreachable = _unreachable_reason(exc)
        if unreachable is not None:
            raise DownloadError(f"could not download {url}: {unreachable}. {OFFLINE_ADVICE}") from exc
        # Reset or dropped connection, or a read timeout in the middle of the body.
        raise _TransientError(f"connection failed: {_innermost(exc)}") from exc
    except requests.Timeout as exc:
        raise _TransientError(f"no data from the server within {timeout[1]} s") from exc
    except _TRUNCATED_BODY_ERRORS as exc:
        raise _TransientError(f"truncated download, the connection closed early ({_innermost(exc)!r})") from exc
    except requests.RequestException as exc:  # invalid URL, too many redirects, ...
        raise DownloadError(f"could not download {url}: {exc}") from exc


def _innermost(exc: BaseException) -> BaseException:
    """requests wraps urllib3 which wraps http.client/socket errors; the innermost one reads best."""
    while exc.args and isinstance(exc.args[-1], BaseException):
        exc = exc.args[-1]
    return exc


def _unreachable_reason(exc: requests.ConnectionError) -> str | None:
    """Why the server could not be reached at all (DNS, refused, no route), or None."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3 keeps the underlying OSError ("[Errno 111] Connection refused") as the cause.
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve the host name ({reason.__cause__ or reason})"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return f"cannot connect to the server ({reason.__cause__ or reason})"
    # HTTPS_PROXY / HTTP_PROXY set, and the proxy itself refuses or cannot be resolved: just as permanent.
    if isinstance(reason, urllib3.exceptions.ProxyError) and isinstance(
        reason.original_error, urllib3.exceptions.NewConnectionError
    ):
        return f"cannot connect to the proxy ({reason.original_error.__cause__ or reason.original_error})"
    return None


def _check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    what = f"HTTP {status} {response.reason}"
    if status == 429 or status >= 500:
        raise _TransientError(what)
    raise DownloadError(f"could not download {url}: {what} (not retried: client errors are permanent)")


def _stream_to_part_file(
    response: requests.Response, dest: Path, *, chunk_bytes: int, progress: bool
) -> tuple[Path, str]:
    """Write the body to a fsynced temp file next to `dest`; remove it again on any failure."""
    expected_bytes = _expected_body_bytes(response)
    digest = hashlib.sha256()
    received = 0
    files.remove_stale(dest, "{name}.*.part")  # left by a killed download of the same file
    part = tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, prefix=dest.name + ".", suffix=".part")
    part_path = Path(part.name)
    try:
        with (
            part,
            tqdm(
                total=expected_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar,
        ):
            for chunk in response.iter_content(chunk_size=chunk_bytes):
                part.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            part.flush()
            os.fsync(part.fileno())
        # urllib3 normally raises on a short body already; this also covers a client that does not.
        if expected_bytes is not None and received != expected_bytes:
            raise _TransientError(f"truncated download, received {received} of {expected_bytes} bytes")
        os.chmod(part_path, _DOWNLOADED_FILE_MODE)
    except BaseException:
        part_path.unlink(missing_ok=True)
        raise
    return part_path, digest.hexdigest()


def _expected_body_bytes(response: requests.Response) -> int | None:
    """Content-Length as the number of bytes we will write, or None when unknown."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # the length then counts compressed bytes, which urllib3 checks itself
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
