"""Stopping on SIGTERM: a deleted, evicted or drained pod must let go of the database at once.

A Job's runner is its container's PID 1, and the kernel delivers a signal to a PID 1 only if
it has a handler for it: without one, the kubelet's SIGTERM was lost and the pod was SIGKILLed
when the grace period ran out, its statement still running in PostgreSQL.

``StopOnSigterm`` installs that handler: it raises ``Terminated`` in the main thread, and
psycopg (3), asyncpg and time.sleep give way to it at once. psycopg2 does not: libpq waits
for the server in C and retries an interrupted wait itself, so a Python handler runs only
once the statement returns (a revision blocked on a lock: never). For those connections a
helper thread, woken by the signal through ``signal.set_wakeup_fd``, sends PostgreSQL a
cancel request; the statement fails, Python runs again, and the handler's exception follows
(``start_canceller``, once the run goes past the quick path).
Closing the connections then rolls back the unfinished migration and frees the advisory lock.

Stdlib and SQLAlchemy only, Python >= 3.9.
"""

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Any, Optional

from .errors import Terminated

TERMINATED_MESSAGE = (
    "stopped by SIGTERM (the pod was deleted, evicted or drained): PostgreSQL rolls back"
    " an unfinished migration and releases the lock; retry"
)

# DBAPI modules whose waits a Python signal handler cannot interrupt: their statements
# are cancelled from the helper thread instead.
UNINTERRUPTIBLE_DRIVERS = ("psycopg2",)


class StopOnSigterm:
    """While active, SIGTERM raises Terminated in the main thread (once; later ones only count)
    and cancels the statements of psycopg2 connections opened meanwhile (by the runner or by
    env.py, through any SQLAlchemy pool). On exit the previous handler and wakeup fd return.
    Outside the main thread (an embedding program) signals are left alone.
    """

    def __init__(self) -> None:
        self.received = False
        self.raising = True  # False once there is nothing left to stop
        self.connections: list[Any] = []  # DBAPI connections of UNINTERRUPTIBLE_DRIVERS
        self._previous: Any = None
        self._installed = False
        self._wakeup: Optional[int] = None  # the pipe's write end, once the helper runs
        self._previous_wakeup = -1

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        first = not self.received
        self.received = True
        if first and self.raising:  # a second one must not cut the clean-up short
            raise Terminated(TERMINATED_MESSAGE)

    def __enter__(self) -> "StopOnSigterm":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            return self
        self._installed = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._installed:
            return
        signal.signal(signal.SIGTERM, self._previous)
        if self._wakeup is not None:
            from sqlalchemy import event
            from sqlalchemy.pool import Pool

            signal.set_wakeup_fd(self._previous_wakeup)
            event.remove(Pool, "connect", self.track)
            os.close(self._wakeup)  # the helper reads EOF and ends
            self._wakeup = None

    # -- psycopg2: cancel from a helper thread ---------------------------------------------

    def start_canceller(self) -> None:
        """Track the psycopg2 connections SQLAlchemy's pools open from now on, and cancel their
        statements on SIGTERM. The full path calls it; the quick path opens none of those."""
        if not self._installed or self._wakeup is not None:
            return
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        try:
            self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except (ValueError, OSError):  # cannot be woken: the Python handler has to do
            os.close(read_end)
            os.close(write_end)
            return
        self._wakeup = write_end
        event.listen(Pool, "connect", self.track)
        helper = threading.Thread(
            target=self._watch, args=(read_end,), name="migrategate-sigterm", daemon=True
        )
        helper.start()

    def track(self, dbapi_connection: Any, connection_record: Any = None) -> None:
        """A pool opened a connection: keep it if its driver needs cancelling from outside."""
        module = type(dbapi_connection).__module__ or ""
        if module.split(".")[0] in UNINTERRUPTIBLE_DRIVERS:
            self.connections.append(dbapi_connection)

    def _watch(self, read_end: int) -> None:
        """The helper thread: each byte is a signal's number, written by the C-level handler
        even while the main thread is stuck in libpq (which releases the GIL)."""
        try:
            while True:
                data = os.read(read_end, 64)
                if not data:
                    return
                if signal.SIGTERM in data:
                    self.cancel_statements()
        finally:
            os.close(read_end)

    def cancel_statements(self) -> None:
        """Ask the server to cancel whatever each open tracked connection runs."""
        for connection in list(self.connections):
            if getattr(connection, "closed", 1):  # psycopg2: 0 while open
                continue
            with contextlib.suppress(Exception):  # gone meanwhile: nothing to cancel
                connection.cancel()
