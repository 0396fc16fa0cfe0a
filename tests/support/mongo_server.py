"""A MongoDB server for tests: mockupdb's wire-protocol classes in front of mongomock.

The store has to be tested through the real driver (``AsyncMongoClient``: its pool, timeouts, error
classes, BSON codecs), and no mongod can be installed here. So this module listens on a loopback
port, decodes each message with mockupdb, runs the command with mongomock and answers in the
protocol the driver spoke. It is deliberately strict: a command or option it does not implement is
an error (code 59), never a silent ``ok``, so a test cannot pass by accident.

mockupdb's own ``MockupDB`` server is not used for the sockets: it binds ``localhost`` rather than
``127.0.0.1``, cannot listen again after ``stop()``, and lets a broken pipe escape its threads. The
socket handling here is small; parsing and reply framing stay mockupdb's.

Differences from mongod worth knowing: one global lock (commands run one at a time, connections are
still served concurrently); the TTL monitor runs every ``ttl_interval`` seconds instead of 60; TTL
indexes are kept out of mongomock, whose own TTL would delete on every read; no auth, TLS,
transactions, compression, change streams or server-side sessions beyond accepting ``endSessions``.

This module is the socket and connection layer (listening, one thread per connection, reply framing,
the fail point's delays and hang-ups, the TTL monitor thread). ``CommandBackend`` in
``mongo_server_commands`` dispatches each decoded command; ``mongo_server_documents`` and
``mongo_server_indexes`` implement the commands on the state kept in ``mongo_server_state``.
"""

from __future__ import annotations

import socket
import threading
import time
import traceback

import mockupdb

from .mongo_server_commands import CommandBackend
from .mongo_server_state import CommandError, Doc, unsupported

__all__ = ["CommandBackend", "MongoTestServer"]


class MongoTestServer:
    """A loopback MongoDB endpoint backed by :class:`CommandBackend`, with a TTL monitor thread.

    ``stop()`` closes the listener and every connection but keeps the data, like a mongod that
    went down; ``restart()`` listens again on the same port so clients built from ``uri`` reconnect.
    """

    def __init__(self, *, ttl_interval: float = 60.0, max_wire_version: int = 21) -> None:
        self.backend = CommandBackend(max_wire_version)
        self.ttl_interval = ttl_interval
        self.ttl_passes = 0
        self.ttl_deleted = 0
        self.port = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._closed = threading.Event()
        self._ttl_thread: threading.Thread | None = None

    @property
    def errors(self) -> list[str]:
        """Tracebacks of anything that went wrong inside the server; tests assert it stays empty."""
        return self.backend.errors

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> MongoTestServer:
        self._listen(0)
        self._ttl_thread = threading.Thread(target=self._ttl_monitor, name="mongo-test-ttl", daemon=True)
        self._ttl_thread.start()
        return self

    def restart(self) -> None:
        if self.running:
            raise RuntimeError("the test server is already listening")
        self._listen(self.port)

    def stop(self) -> None:
        """Stop listening and drop every connection; data, indexes and the TTL monitor remain."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with self._connections_lock:
            connections = dict(self._connections)
        # Wake the accept loop with a connection of our own: closing a socket does not reliably
        # interrupt a thread blocked in accept() on every platform.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        listener.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for conn, thread in connections.items():
            thread.join(5)
            conn.close()  # closed by its thread already, unless the join timed out: never left to the GC

    def close(self) -> None:
        self.stop()
        self._closed.set()
        if self._ttl_thread is not None:
            self._ttl_thread.join(5)

    def __enter__(self) -> MongoTestServer:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- threads -----------------------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR lets restart() take the same port back while old connections sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="mongo-test-accept", daemon=True
        )
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._connections_lock:
                if self._listener is not listener:  # stop() has begun: this is its wake-up call
                    conn.close()
                    return
                thread = threading.Thread(target=self._serve, args=(conn,), name="mongo-test-conn", daemon=True)
                self._connections[conn] = thread
                try:
                    # Started under the lock, so stop() never finds a thread it cannot join.
                    thread.start()
                except BaseException:
                    self._connections.pop(conn, None)
                    conn.close()
                    raise

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                request = mockupdb.mock_server_receive_request(conn, None)
                reply = self._answer(request)
                if reply is not None:
                    conn.sendall(reply)
        except OSError:
            pass  # the client hung up, or stop() closed the connection
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            with self._connections_lock:
                self._connections.pop(conn, None)
            conn.close()

    def _answer(self, request: mockupdb.Request) -> bytes | None:
        if isinstance(request, mockupdb.OpMsg):
            reply = self._failed(request.command_name) or self.backend.run(request.doc["$db"], request.doc)
            if request.flags & mockupdb.OP_MSG_FLAGS["moreToCome"]:
                return None  # an unacknowledged write (w=0): the client expects no answer
            return mockupdb.OpMsgReply(reply).reply_bytes(request)
        if isinstance(request, mockupdb.Command):
            # Legacy OP_QUERY is only used for the first handshake, before the driver knows OP_MSG works.
            name = request.command_name
            if name not in ("ismaster", "isMaster", "hello"):
                doc = unsupported(f"OP_QUERY command {name!r}").reply()
            else:
                doc = self.backend.run(request.namespace, request.doc)
            return mockupdb.OpReply(doc).reply_bytes(request)
        raise ValueError(f"legacy opcode {type(request).__name__} is not supported by the test server")

    def _failed(self, command_name: str) -> Doc | None:
        """Apply mongod's failCommand fail point: delay, hang up, or answer with an error code."""
        point = self.backend.fail_point_for(command_name)
        if point is None:
            return None
        if point.get("blockConnection"):
            time.sleep(point.get("blockTimeMS", 0) / 1000)  # outside the lock: other connections go on
        if point.get("closeConnection"):
            raise ConnectionAbortedError("failCommand closeConnection")  # an OSError: _serve hangs up
        if "errorCode" in point:
            code = int(point["errorCode"])
            return CommandError(code, "FailPoint", "Failing command via 'failCommand' failpoint").reply()
        return None

    def _ttl_monitor(self) -> None:
        while not self._closed.wait(self.ttl_interval):
            try:
                self.ttl_deleted += self.backend.expire()
            except Exception:
                self.errors.append(traceback.format_exc())
            self.ttl_passes += 1
