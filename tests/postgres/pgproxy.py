"""A tiny transaction-mode "pooler": every client shares ONE server connection.

It speaks just enough of the PostgreSQL wire protocol for psycopg (3) and libpq: it answers
each client's startup itself (no SSL, no password check, the server's parameters replayed),
then forwards each client's messages up to a Sync or simple Query, and the server's replies
up to ReadyForQuery. A client keeps the server while its transaction is open (as PgBouncer's
``pool_mode = transaction``), and a client's Terminate is never forwarded: the server session,
and any session-level advisory lock in it, outlives the client. That is the hazard the runner
must detect.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
BATCH_ENDS = {b"S", b"Q"}  # Sync, simple Query: the server answers with ReadyForQuery


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed message: (type byte, whole message bytes)."""
    kind = recv_exact(sock, 1)
    length = recv_exact(sock, 4)
    body = recv_exact(sock, struct.unpack("!I", length)[0] - 4)
    return kind, kind + length + body


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


class SharedConnectionProxy:
    """Listens on 127.0.0.1; all clients share one server connection through the unix socket."""

    def __init__(self, socket_path: Path, user: str, database: str) -> None:
        self.server = socket.socket(socket.AF_UNIX)
        self.server.connect(str(socket_path))
        self.greeting = self._start_server_session(user, database)
        self.owner_lock = threading.Lock()  # held by the client whose transaction is open
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.clients = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _start_server_session(self, user: str, database: str) -> bytes:
        """Log in (trust on the unix socket); keep what a client needs to hear at startup."""
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", user), ("database", database))
        )
        body = struct.pack("!I", PROTOCOL_3) + params + b"\0"
        self.server.sendall(struct.pack("!I", len(body) + 4) + body)
        greeting = b""
        while True:
            kind, data = read_message(self.server)
            if kind == b"E":
                raise RuntimeError(f"the server refused the proxy: {data!r}")
            if kind in (b"R", b"S", b"K"):
                greeting += data
            if kind == b"Z":
                return greeting + message(b"Z", b"I")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        owning = False
        try:
            if not self._handshake(client):
                return
            batch = b""
            while True:
                kind, data = read_message(client)
                if kind == b"X":  # Terminate: the shared server session lives on
                    return
                batch += data
                if kind not in BATCH_ENDS:
                    continue
                if not owning:
                    self.owner_lock.acquire()
                owning = self._exchange(batch, client)
                if not owning:
                    self.owner_lock.release()
                batch = b""
        except (ConnectionError, OSError):
            pass
        finally:
            if owning:  # the client left inside a transaction: end it, as a pooler does
                self._exchange(message(b"Q", b"ROLLBACK\0"), None)
                self.owner_lock.release()
            client.close()

    def _handshake(self, client: socket.socket) -> bool:
        """Answer SSL/GSS requests with 'N' and a startup with the server's greeting."""
        while True:
            length, code = struct.unpack("!II", recv_exact(client, 8))
            recv_exact(client, length - 8)
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                client.sendall(b"N")
                continue
            if code != PROTOCOL_3:  # a cancel request: not supported here
                return False
            client.sendall(self.greeting)
            return True

    def _exchange(self, batch: bytes, client: socket.socket | None) -> bool:
        """Send a batch, relay the replies; True if the server is now inside a transaction."""
        self.server.sendall(batch)
        while True:
            kind, data = read_message(self.server)
            if client is not None:
                client.sendall(data)
            if kind == b"Z":
                return data[-1:] != b"I"

    def close(self) -> None:
        self.listener.close()
        self.server.close()


@contextlib.contextmanager
def shared_connection_proxy(socket_path: Path, user: str, database: str) -> Iterator[int]:
    """Run the proxy for the block; yield its port."""
    proxy = SharedConnectionProxy(socket_path, user, database)
    try:
        yield proxy.port
    finally:
        proxy.close()
