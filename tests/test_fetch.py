"""Tests for stages.lib.fetch against a scripted HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from stages.lib.fetch import DownloadError, download
from stages.lib.files import sha256_file

BODY = bytes(range(256)) * 1000  # 256 kB, several chunks at the chunk size used below
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()
FAST = {"backoff_seconds": 0.01, "progress": False, "chunk_bytes": 64 * 1024}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. A content_length above len(body) makes a truncated response."""

    status: int = 200
    body: bytes = BODY
    content_length: int | None = None  # None: len(body)
    delay_seconds: float = 0.0  # wait before answering, to run into the client's read timeout


class ScriptedServer(ThreadingHTTPServer):
    """Answers each GET with the next scripted Reply and counts the requests it got."""

    daemon_threads = True

    def __init__(self, replies: tuple[Reply, ...]) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.replies = list(replies)
        self.request_count = 0
        self._lock = threading.Lock()

    def next_reply(self) -> Reply:
        with self._lock:
            self.request_count += 1
            # Past the script: a non-retried status, so a runaway client shows up in request_count.
            return self.replies.pop(0) if self.replies else Reply(status=410, body=b"script exhausted")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/cats_and_dogs_filtered.zip"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout, truncation) makes our writes fail; that is expected


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_GET(self) -> None:
        reply = self.server.next_reply()
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        self.send_response(reply.status)
        length = len(reply.body) if reply.content_length is None else reply.content_length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        # HTTP/1.0 (the handler's default) closes the connection after this: a short body stays short.
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured for package registries must not swallow requests to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(*replies: Reply) -> ScriptedServer:
        server = ScriptedServer(replies)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.part"))


def free_port() -> int:
    """A port nothing listens on (bound then released), so connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_writes_dest_and_returns_its_sha256(tmp_path: Path, serve: Callable[..., ScriptedServer]) -> None:
    server = serve(Reply())
    dest = tmp_path / "raw" / "archive.zip"  # the parent folder does not exist yet

    digest = download(server.url, dest, sha256=BODY_SHA256.upper(), **FAST)

    assert digest == BODY_SHA256
    assert dest.read_bytes() == BODY
    assert sha256_file(dest, chunk_bytes=1000) == BODY_SHA256
    assert server.request_count == 1
    assert leftovers(dest.parent) == []


@pytest.mark.parametrize(
    "first_reply",
    [
        Reply(status=500),
        Reply(status=503),
        Reply(status=429),
        Reply(content_length=len(BODY) + 10),
        Reply(delay_seconds=1.0),  # longer than the read_timeout below
    ],
    ids=["500", "503", "429", "truncated-body", "read-timeout"],
)
def test_transient_failure_is_retried(tmp_path: Path, serve: Callable[..., ScriptedServer], first_reply: Reply) -> None:
    server = serve(first_reply, Reply())
    dest = tmp_path / "archive.zip"

    digest = download(server.url, dest, read_timeout=0.2, **FAST)

    assert digest == BODY_SHA256
    assert dest.read_bytes() == BODY
    assert server.request_count == 2
    assert leftovers(tmp_path) == []


def test_retries_stop_after_the_last_attempt_with_exponential_backoff(
    tmp_path: Path, serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    server = serve(Reply(status=500), Reply(status=502), Reply(status=503), Reply())
    dest = tmp_path / "archive.zip"
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)

    with pytest.raises(DownloadError) as caught:
        download(server.url, dest, retries=2, **FAST)

    assert sleeps == [0.01, 0.02]  # backoff_seconds * 2**attempt, none after the last attempt
    retried = capsys.readouterr().err.splitlines()  # each retry a warning line of the stage that downloads
    assert [line.split(" failed (")[0] for line in retried] == [f"download: warning: download of {server.url}"] * 2
    assert retried[1].endswith("; retrying in 0.02 s")
    message = str(caught.value)
    assert server.url in message
    assert "3 attempt(s)" in message and "HTTP 503" in message
    assert "data.source" not in message  # the server answered: this is not an offline problem
    assert server.request_count == 3
    assert not dest.exists()


@pytest.mark.parametrize("status", [404, 403])
def test_client_error_is_not_retried(tmp_path: Path, serve: Callable[..., ScriptedServer], status: int) -> None:
    server = serve(Reply(status=status), Reply())
    dest = tmp_path / "archive.zip"

    with pytest.raises(DownloadError) as caught:
        download(server.url, dest, **FAST)

    assert server.url in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert server.request_count == 1
    assert not dest.exists()


def test_truncated_body_is_never_accepted(tmp_path: Path, serve: Callable[..., ScriptedServer]) -> None:
    short = Reply(body=BODY[:1000], content_length=len(BODY))
    server = serve(short, short)
    dest = tmp_path / "archive.zip"

    with pytest.raises(DownloadError, match="truncated") as caught:
        download(server.url, dest, retries=1, **FAST)

    assert server.url in str(caught.value)
    assert server.request_count == 2
    assert not dest.exists()
    assert leftovers(tmp_path) == []


class ShortBodyAdapter(requests.adapters.BaseAdapter):
    """Serves a body shorter than its Content-Length without complaining, unlike urllib3."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response.headers["Content-Length"] = "100"
        response.raw = io.BytesIO(b"x" * 10)
        return response

    def close(self) -> None:
        pass


def test_short_body_is_caught_even_if_the_http_layer_lets_it_through(tmp_path: Path) -> None:
    adapter = ShortBodyAdapter()
    session = requests.Session()
    session.mount("http://", adapter)
    dest = tmp_path / "archive.zip"

    with pytest.raises(DownloadError, match="received 10 of 100 bytes"):
        download("http://dataset-host.test/archive.zip", dest, session=session, retries=1, **FAST)

    assert adapter.sent == 2
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_sha256_mismatch_is_an_error_and_not_retried(tmp_path: Path, serve: Callable[..., ScriptedServer]) -> None:
    server = serve(Reply(), Reply())
    dest = tmp_path / "archive.zip"
    wrong = "0" * 64

    with pytest.raises(DownloadError) as caught:
        download(server.url, dest, sha256=wrong, **FAST)

    message = str(caught.value)
    assert server.url in message and wrong in message and BODY_SHA256 in message
    assert server.request_count == 1
    assert not dest.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("reply", "sha256"),
    [(Reply(status=404), None), (Reply(body=BODY[:10], content_length=len(BODY)), None), (Reply(), "f" * 64)],
    ids=["404", "truncated", "sha256-mismatch"],
)
def test_failure_leaves_a_previous_dest_untouched(
    tmp_path: Path, serve: Callable[..., ScriptedServer], reply: Reply, sha256: str | None
) -> None:
    server = serve(reply)
    dest = tmp_path / "archive.zip"
    dest.write_bytes(b"the previous complete download")

    with pytest.raises(DownloadError):
        download(server.url, dest, sha256=sha256, retries=0, **FAST)

    assert dest.read_bytes() == b"the previous complete download"
    assert leftovers(tmp_path) == []


def test_refused_connection_fails_fast_with_offline_advice(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/cats_and_dogs_filtered.zip"
    dest = tmp_path / "archive.zip"

    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        # Default retries and backoff on purpose: a refused connection must not wait for them.
        download(url, dest, progress=False)
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert message.startswith(f"could not download {url}: cannot connect")
    assert "offline" in message and "data.source" in message and "make demo" in message
    assert elapsed < 1.0
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_refused_proxy_fails_fast_with_offline_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "http://dataset-host.example/cats_and_dogs_filtered.zip"

    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download(url, tmp_path / "archive.zip", progress=False)

    message = str(caught.value)
    assert message.startswith(f"could not download {url}: cannot connect to the proxy")
    assert "model.weights" in message and "make demo" in message
    assert time.monotonic() - started < 1.0  # not retried with backoff
    assert list(tmp_path.iterdir()) == []


def test_dns_failure_fails_fast_with_offline_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []

    def failing_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # What an offline machine answers, without asking any real resolver.
    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    url = "http://dataset-host.invalid/cats_and_dogs_filtered.zip"

    with pytest.raises(DownloadError) as caught:
        download(url, tmp_path / "archive.zip", progress=False)

    message = str(caught.value)
    assert message.startswith(f"could not download {url}: cannot resolve the host name")
    assert "data.source" in message and "make demo" in message
    assert lookups == ["dataset-host.invalid"]  # not retried
    assert list(tmp_path.iterdir()) == []


def test_malformed_sha256_is_rejected_before_any_request(tmp_path: Path, serve: Callable[..., ScriptedServer]) -> None:
    server = serve(Reply())

    with pytest.raises(ValueError, match="64 hex digits"):
        download(server.url, tmp_path / "archive.zip", sha256="abc123", **FAST)

    assert server.request_count == 0
