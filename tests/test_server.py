"""The proxy's server protocol (proxy/server.py) against the real ``retention-proxy`` over loopback.

Each test starts the command with ``--demo`` and small bounds, then speaks raw HTTP/1.1 on a socket,
the way a hostile or broken client would. Assertions are about what the client gets (an answer, its
status, the connection closed) within a deadline far above the configured timeouts, never durations.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from support.proxy_process import ProxyProcess

DEADLINE = 15.0
CHAT = orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": "hello there"}]})


class RunningProxy(ProxyProcess):
    """``retention-proxy --demo`` with ``variables``, started; raw sockets to it and its memory."""

    def __init__(self, **variables: str) -> None:
        super().__init__("--demo", env=variables)
        self.wait_started()
        self.port = int(self.url.rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)

    def rss(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


@pytest.fixture
def start() -> Iterator[Any]:
    proxies: list[RunningProxy] = []

    def start_proxy(**variables: str) -> RunningProxy:
        proxy = RunningProxy(**variables)
        proxies.append(proxy)
        return proxy

    yield start_proxy
    for proxy in proxies:
        proxy.stop()


def read_answer(sock: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP response (status, headers, body by content-length); fails on EOF before it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer (got {data[:200]!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines)}
    while len(body) < int(headers.get(b"content-length", b"0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset); waits up to the deadline."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def error_code(body: bytes) -> str:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["code"])


# -- item 2: head limits -----------------------------------------------------------------------------


def test_a_64_mib_header_is_refused_with_431_without_being_buffered(start: Any) -> None:
    proxy = start(RETENTION_MAX_HEADER_BYTES="32KiB")
    before = proxy.rss()
    sock = proxy.connect()
    answers: list[tuple[int, dict[bytes, bytes], bytes]] = []
    reader = threading.Thread(target=lambda: answers.append(read_answer(sock)), daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-huge: ")
        piece = b"a" * 65536
        while sent < 64 * 1024**2:
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the proxy stopped reading and closed: the point
    reader.join(DEADLINE)
    assert answers, "no answer to the oversized head"
    status, headers, body = answers[0]
    assert status == 431 and error_code(body) == "request_header_fields_too_large"
    assert headers[b"connection"] == b"close"
    assert proxy.rss() - before < 32 * 1024**2  # the header was never held
    sock.close()
    with proxy.connect() as innocent:  # and the proxy serves the next client
        innocent.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_answer(innocent)[0] == 200


def test_too_many_headers_are_refused_with_431(start: Any) -> None:
    proxy = start(RETENTION_MAX_HEADERS="50")
    with proxy.connect() as sock:
        headers = b"".join(b"x-h%d: v\r\n" % number for number in range(51))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + headers + b"\r\n")
        status, _, body = read_answer(sock)
    assert status == 431 and error_code(body) == "request_header_fields_too_large"
    with proxy.connect() as sock:
        headers = b"".join(b"x-h%d: v\r\n" % number for number in range(40))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n" + headers + b"\r\n")
        assert read_answer(sock)[0] == 200


# -- item 13: requests that used to hang -------------------------------------------------------------


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_post_asking_to_upgrade_is_served_as_http(start: Any, upgrade: bytes, framing: str) -> None:
    proxy = start()
    if framing == "chunked":
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHAT), CHAT)
        framing_header = b"transfer-encoding: chunked\r\n"
    else:
        body, framing_header = CHAT, b"content-length: %d\r\n" % len(CHAT)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: " + upgrade + b"\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
        b"content-type: application/json\r\n" + framing_header + b"\r\n"
    )
    with proxy.connect() as sock:
        sock.sendall(head)
        sock.sendall(body)  # in its own packet, as curl sends it
        status, _, answer = read_answer(sock)
        assert status == 200
        assert orjson.loads(answer)["choices"][0]["message"]["content"] == "hello there"
        # The connection stays plain HTTP/1.1: a second request on it is served too.
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_answer(sock)[0] == 200


TIMEOUTS = {"RETENTION_HEADER_TIMEOUT": "1s", "RETENTION_BODY_TIMEOUT": "1s", "RETENTION_IDLE_TIMEOUT": "1s"}


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n" + CHAT[:20],
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n",
    ],
    ids=["short-content-length", "endless-chunked", "no-body-at-all"],
)
def test_a_body_that_stops_arriving_is_answered_408_within_the_body_timeout(start: Any, sent: bytes) -> None:
    proxy = start(**TIMEOUTS)
    with proxy.connect() as sock:
        sock.sendall(sent)
        status, headers, body = read_answer(sock)  # within DEADLINE, far above the 1 s configured
        assert status == 408 and error_code(body) == "request_timeout"
        assert headers[b"connection"] == b"close"
        assert closed(sock)


def test_a_slow_head_is_answered_408_and_closed_within_the_header_timeout(start: Any) -> None:
    proxy = start(**TIMEOUTS)
    with proxy.connect() as slow, proxy.connect() as silent:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-slow: ")
        status, _, body = read_answer(slow)
        assert status == 408 and error_code(body) == "request_timeout"
        assert closed(slow)
        assert closed(silent)  # connected and sent nothing: closed too


def test_an_idle_keep_alive_connection_is_closed_within_the_idle_timeout(start: Any) -> None:
    proxy = start(**TIMEOUTS)
    with proxy.connect() as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_answer(sock)[0] == 200
        # Four times the configured 1 s, and below uvicorn's fixed 5 s: the setting is what closed it.
        sock.settimeout(4.0)
        assert closed(sock)


def test_a_busy_connection_outlives_every_timeout_and_each_wait_starts_afresh(start: Any) -> None:
    # The waits are deadlines moved on per request (proxy/deadline.py): a timer armed for an earlier
    # request must not close a connection that has stayed busy for longer than any of the timeouts.
    proxy = start(**TIMEOUTS)
    with proxy.connect() as sock:
        for _ in range(8):  # some 2.4 s in all, each wait under the configured 1 s
            time.sleep(0.3)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(CHAT))
            time.sleep(0.3)  # between head and body: the body wait, not the head's
            sock.sendall(CHAT)
            assert read_answer(sock)[0] == 200
        # Then idle: closed by the idle timeout as before.
        sock.settimeout(4.0)
        assert closed(sock)


def test_connections_beyond_the_cap_are_answered_503_and_the_cap_frees_up(start: Any) -> None:
    proxy = start(RETENTION_MAX_CONNECTIONS="3", RETENTION_HEADER_TIMEOUT="30s")
    held = [proxy.connect() for _ in range(3)]
    try:
        for sock in held:  # each is accepted and served: the proxy has seen all three
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_answer(sock)[0] == 200
        with proxy.connect() as extra:
            extra.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            status, _, body = read_answer(extra)
            assert status == 503 and error_code(body) == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    for _ in range(100):  # the proxy notices the closed connections as it reads them
        with proxy.connect() as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            if read_answer(sock)[0] == 200:
                return
    pytest.fail("the cap never freed up after the held connections closed")
